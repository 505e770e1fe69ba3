//! The connection sections of `pipeline.conf`: databases, MongoDB, AWS credentials.

use crate::Secret;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

/// A database connection section (`[mysql_config]`, `[postgres_config]`,
/// `[airflowdb_config]`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DbConfig {
    /// Host name.
    pub host: String,
    /// Port, if given.
    pub port: Option<u16>,
    /// User name.
    pub username: String,
    /// Password.
    pub password: Secret,
    /// Database name.
    pub database: String,
}

impl DbConfig {
    /// A sqlx URL for `scheme` (`mysql`, `postgres`), with user and password encoded.
    /// Contains the password: hand it to a client, never log it.
    pub fn url(&self, scheme: &str, default_port: u16) -> String {
        format!(
            "{scheme}://{}:{}@{}:{}/{}",
            utf8_percent_encode(&self.username, NON_ALPHANUMERIC),
            utf8_percent_encode(self.password.expose(), NON_ALPHANUMERIC),
            self.host,
            self.port.unwrap_or(default_port),
            utf8_percent_encode(&self.database, NON_ALPHANUMERIC),
        )
    }
}

/// `[mongo_config]`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MongoConfig {
    /// Host name.
    pub hostname: String,
    /// Port, if given.
    pub port: Option<u16>,
    /// User name.
    pub username: Option<String>,
    /// Password.
    pub password: Secret,
    /// Database.
    pub database: String,
    /// Collection.
    pub collection: Option<String>,
}

/// RFC 3986 unreserved characters stay as they are; everything else is encoded.
const URI_COMPONENT: &percent_encoding::AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

impl MongoConfig {
    /// A MongoDB connection string: `mongodb+srv://` when no port is given (the book
    /// connects to MongoDB Atlas that way), `mongodb://host:port` otherwise; user and
    /// password encoded when a user is set. Contains the password: hand it to a client,
    /// never log it.
    ///
    /// ```
    /// use tributary::config::PipelineConfig;
    /// let c = PipelineConfig::parse(
    ///     "[mongo_config]\nhostname = cluster0.abc.mongodb.net\nusername = ann\npassword = p@ss\ndatabase = events_db\n",
    ///     "test", |_| None).unwrap();
    /// assert_eq!(c.mongo().unwrap().uri(), "mongodb+srv://ann:p%40ss@cluster0.abc.mongodb.net/events_db");
    /// let c = PipelineConfig::parse(
    ///     "[mongo_config]\nhostname = 127.0.0.1\nport = 27017\ndatabase = events_db\n", "test", |_| None).unwrap();
    /// assert_eq!(c.mongo().unwrap().uri(), "mongodb://127.0.0.1:27017/events_db");
    /// ```
    pub fn uri(&self) -> String {
        let credentials = match self.username.as_deref() {
            Some(u) if !u.is_empty() => format!(
                "{}:{}@",
                utf8_percent_encode(u, URI_COMPONENT),
                utf8_percent_encode(self.password.expose(), URI_COMPONENT)
            ),
            _ => String::new(),
        };
        let db = utf8_percent_encode(&self.database, URI_COMPONENT);
        match self.port {
            Some(port) => format!("mongodb://{credentials}{}:{port}/{db}", self.hostname),
            None => format!("mongodb+srv://{credentials}{}/{db}", self.hostname),
        }
    }
}

/// `[aws_boto_credentials]`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AwsConfig {
    /// Access key id.
    pub access_key: Secret,
    /// Secret access key.
    pub secret_key: Secret,
    /// Bucket the book's scripts upload to.
    pub bucket_name: Option<String>,
    /// Account id (unused by tributary, accepted for compatibility).
    pub account_id: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Endpoint of an S3-compatible server.
    pub endpoint: Option<String>,
}
