//! `pipeline.conf`: the book's INI configuration, loadable as is, plus `[store]` (where
//! data lands) and `[warehouse]` (where checkpoints and history live).
//!
//! ```ini
//! [mysql_config]
//! hostname = localhost
//! port = 3306
//! username = etl
//! password = secret
//! database = shop
//!
//! [store]
//! url = file:///var/lib/tributary/out
//!
//! [warehouse]
//! url = sqlite://tributary.db
//! ```
//!
//! Every value can be overridden from the environment as
//! `TRIBUTARY_<SECTION>_<KEY>` in upper case, e.g. `TRIBUTARY_MYSQL_CONFIG_PASSWORD`,
//! `TRIBUTARY_STORE_URL`. An unknown section or key is an error naming it, so a typo
//! never silently falls back to a default. Passwords and keys are [`Secret`]s: `Debug`
//! prints `***`.

use crate::format::{Compression, Csv, CsvDialect, Format, JsonLines};
use crate::stores::ObjectSink;
use crate::{Error, Result, Secret};
use ini::Ini;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use std::collections::BTreeMap;
use std::path::Path;

const SECTIONS: &[(&str, &[&str])] = &[
    (
        "mysql_config",
        &["hostname", "port", "username", "password", "database"],
    ),
    (
        "postgres_config",
        &["host", "port", "username", "password", "database"],
    ),
    (
        "mongo_config",
        &[
            "hostname",
            "port",
            "username",
            "password",
            "database",
            "collection",
        ],
    ),
    (
        "aws_boto_credentials",
        &[
            "access_key",
            "secret_key",
            "bucket_name",
            "account_id",
            "region",
            "endpoint",
        ],
    ),
    (
        "airflowdb_config",
        &["host", "port", "username", "password", "database"],
    ),
    (
        "store",
        &["url", "prefix", "format", "dialect", "compression"],
    ),
    ("warehouse", &["url"]),
];

const SECRET_KEYS: &[&str] = &["password", "secret_key", "access_key"];

/// A database connection section (`[mysql_config]`, `[postgres_config]`,
/// `[airflowdb_config]`).
#[derive(Clone, Debug, PartialEq, Eq)]
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

/// A `zstd` (level 3) or `zstd:LEVEL` setting: `None` if `v` is neither, `Some(None)` for a
/// level outside 1 to 22.
fn zstd_level(v: &str) -> Option<Option<i32>> {
    if v == "zstd" {
        return Some(Some(3));
    }
    let level = v.strip_prefix("zstd:")?;
    Some(level.parse().ok().filter(|l| (1..=22).contains(l)))
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

/// A parsed `pipeline.conf`.
#[derive(Clone, Debug, Default)]
pub struct PipelineConfig {
    values: BTreeMap<(String, String), String>,
    origin: String,
}

fn redacted(section: &str, key: &str, v: &str) -> String {
    if SECRET_KEYS.contains(&key) || (section == "warehouse" && key == "url") {
        crate::util::redact_url(v)
    } else {
        v.to_string()
    }
}

impl PipelineConfig {
    /// Read and check a file, then apply environment overrides.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::config(
                "pipeline.conf",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        Self::parse(&text, &path.display().to_string(), |k| {
            std::env::var(k).ok()
        })
    }

    /// Parse INI text, then apply environment overrides.
    pub fn from_str_with_env(text: &str) -> Result<Self> {
        Self::parse(text, "pipeline.conf", |k| std::env::var(k).ok())
    }

    /// Parse INI text, taking overrides from `env` (for tests: no process environment).
    ///
    /// ```
    /// use tributary::config::PipelineConfig;
    /// let c = PipelineConfig::parse("[warehouse]\nurl = sqlite://x.db\n", "test", |_| None).unwrap();
    /// assert_eq!(c.warehouse_url().unwrap(), "sqlite://x.db");
    /// let err = PipelineConfig::parse("[warehouse]\nurll = x\n", "test", |_| None).unwrap_err();
    /// assert!(err.to_string().contains("unknown key \"urll\" in section [warehouse]"));
    /// ```
    pub fn parse(text: &str, origin: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let ini = Ini::load_from_str(text)
            .map_err(|e| Error::config("pipeline.conf", format!("{origin}: not valid INI: {e}")))?;
        let mut values = BTreeMap::new();
        for (section, props) in ini.iter() {
            let Some(section) = section else {
                if let Some((k, _)) = props.iter().next() {
                    return Err(Error::config(
                        "pipeline.conf",
                        format!("{origin}: key {k:?} is outside any section"),
                    ));
                }
                continue;
            };
            let s = section.trim().to_ascii_lowercase();
            let Some((_, keys)) = SECTIONS.iter().find(|(name, _)| *name == s) else {
                return Err(Error::config(
                    "pipeline.conf",
                    format!(
                        "{origin}: unknown section [{section}]; known sections: {}",
                        SECTIONS
                            .iter()
                            .map(|(n, _)| format!("[{n}]"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            };
            for (k, v) in props.iter() {
                let k = k.trim().to_ascii_lowercase();
                if !keys.contains(&k.as_str()) {
                    return Err(Error::config(
                        "pipeline.conf",
                        format!(
                            "{origin}: unknown key {k:?} in section [{s}]; known keys: {}",
                            keys.join(", ")
                        ),
                    ));
                }
                values.insert((s.clone(), k), v.trim().to_string());
            }
        }
        for (section, keys) in SECTIONS {
            for key in *keys {
                let var = format!(
                    "TRIBUTARY_{}_{}",
                    section.to_ascii_uppercase(),
                    key.to_ascii_uppercase()
                );
                if let Some(v) = env(&var) {
                    values.insert((section.to_string(), key.to_string()), v);
                }
            }
        }
        Ok(PipelineConfig {
            values,
            origin: origin.to_string(),
        })
    }

    /// A raw value.
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.values
            .get(&(section.to_string(), key.to_string()))
            .map(String::as_str)
    }

    fn require(&self, section: &str, key: &str) -> Result<String> {
        self.get(section, key).map(str::to_string).ok_or_else(|| {
            Error::config(
                "pipeline.conf",
                format!(
                    "{}: missing key {key:?} in section [{section}]",
                    self.origin
                ),
            )
        })
    }

    fn port(&self, section: &str) -> Result<Option<u16>> {
        self.get(section, "port")
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.parse().map_err(|_| {
                    Error::config(
                        "pipeline.conf",
                        format!(
                            "{}: [{section}] port {p:?} is not a port number",
                            self.origin
                        ),
                    )
                })
            })
            .transpose()
    }

    fn has(&self, section: &str) -> bool {
        self.values.keys().any(|(s, _)| s == section)
    }

    fn db(&self, section: &str, host_key: &str) -> Result<DbConfig> {
        if !self.has(section) {
            return Err(Error::config(
                "pipeline.conf",
                format!("{}: missing section [{section}]", self.origin),
            ));
        }
        Ok(DbConfig {
            host: self.require(section, host_key)?,
            port: self.port(section)?,
            username: self.require(section, "username")?,
            password: Secret::new(self.get(section, "password").unwrap_or_default()),
            database: self.require(section, "database")?,
        })
    }

    /// `[mysql_config]`.
    pub fn mysql(&self) -> Result<DbConfig> {
        self.db("mysql_config", "hostname")
    }

    /// `[postgres_config]`.
    pub fn postgres(&self) -> Result<DbConfig> {
        self.db("postgres_config", "host")
    }

    /// `[airflowdb_config]`.
    pub fn airflow_db(&self) -> Result<DbConfig> {
        self.db("airflowdb_config", "host")
    }

    /// `[mongo_config]`.
    pub fn mongo(&self) -> Result<MongoConfig> {
        if !self.has("mongo_config") {
            return Err(Error::config(
                "pipeline.conf",
                format!("{}: missing section [mongo_config]", self.origin),
            ));
        }
        Ok(MongoConfig {
            hostname: self.require("mongo_config", "hostname")?,
            port: self.port("mongo_config")?,
            username: self.get("mongo_config", "username").map(str::to_string),
            password: Secret::new(self.get("mongo_config", "password").unwrap_or_default()),
            database: self.require("mongo_config", "database")?,
            collection: self.get("mongo_config", "collection").map(str::to_string),
        })
    }

    /// `[aws_boto_credentials]`, if present.
    pub fn aws(&self) -> Option<AwsConfig> {
        let s = "aws_boto_credentials";
        self.has(s).then(|| AwsConfig {
            access_key: Secret::new(self.get(s, "access_key").unwrap_or_default()),
            secret_key: Secret::new(self.get(s, "secret_key").unwrap_or_default()),
            bucket_name: self.get(s, "bucket_name").map(str::to_string),
            account_id: self.get(s, "account_id").map(str::to_string),
            region: self.get(s, "region").map(str::to_string),
            endpoint: self.get(s, "endpoint").map(str::to_string),
        })
    }

    /// Where data lands: `[store] url`, or else `s3://<bucket_name>` from
    /// `[aws_boto_credentials]` as the book's scripts do.
    pub fn store_url(&self) -> Result<String> {
        if let Some(u) = self.get("store", "url") {
            return Ok(u.to_string());
        }
        if let Some(b) = self.aws().and_then(|a| a.bucket_name) {
            return Ok(format!("s3://{b}"));
        }
        Err(Error::config(
            "pipeline.conf",
            format!(
                "{}: no [store] url (and no bucket_name in [aws_boto_credentials])",
                self.origin
            ),
        ))
    }

    /// The [`ObjectSink`] for `[store]`, with S3 credentials from
    /// `[aws_boto_credentials]` when the URL is `s3://`.
    pub fn store(&self) -> Result<ObjectSink> {
        let url = self.store_url()?;
        let mut opts = Vec::new();
        if url.starts_with("s3://")
            && let Some(a) = self.aws()
        {
            if !a.access_key.expose().is_empty() {
                opts.push((
                    "aws_access_key_id".to_string(),
                    a.access_key.expose().to_string(),
                ));
                opts.push((
                    "aws_secret_access_key".to_string(),
                    a.secret_key.expose().to_string(),
                ));
            }
            if let Some(r) = a.region {
                opts.push(("aws_region".to_string(), r));
            }
            if let Some(e) = a.endpoint {
                if e.starts_with("http://") {
                    opts.push(("aws_allow_http".to_string(), "true".to_string()));
                }
                opts.push(("aws_endpoint".to_string(), e));
            }
        }
        let sink = ObjectSink::from_url_with_options(&url, &opts)?;
        Ok(match self.get("store", "prefix") {
            Some(p) => sink.with_prefix(p),
            None => sink,
        })
    }

    /// The output format from `[store] format` (`csv`, default, `jsonl`, or `parquet`
    /// with the `parquet` feature) and `dialect` (`book`, default, `postgres`, `redshift`,
    /// `snowflake`). For Parquet, `[store] compression` names the page compression:
    /// `snappy` (default), `zstd`, `zstd:LEVEL` or `none`.
    pub fn format(&self) -> Result<Box<dyn Format>> {
        let dialect = match self.get("store", "dialect").unwrap_or("book") {
            "book" => CsvDialect::book(),
            "postgres" => CsvDialect::postgres(),
            "redshift" => CsvDialect::redshift(),
            "snowflake" => CsvDialect::snowflake(),
            other => {
                return Err(Error::config(
                    "pipeline.conf",
                    format!(
                        "[store] dialect {other:?}: expected book, postgres, redshift or snowflake"
                    ),
                ));
            }
        };
        match self.get("store", "format").unwrap_or("csv") {
            "csv" => Ok(Box::new(Csv::new(dialect))),
            "jsonl" | "json" => Ok(Box::new(JsonLines::new())),
            #[cfg(feature = "parquet")]
            "parquet" => Ok(Box::new(
                crate::format::Parquet::new().with_compression(self.parquet_compression()?),
            )),
            #[cfg(not(feature = "parquet"))]
            "parquet" => Err(Error::config(
                "pipeline.conf",
                "[store] format \"parquet\": this build lacks the `parquet` feature",
            )),
            other => Err(Error::config(
                "pipeline.conf",
                format!("[store] format {other:?}: expected csv, jsonl or parquet"),
            )),
        }
    }

    fn is_parquet(&self) -> bool {
        self.get("store", "format") == Some("parquet")
    }

    /// `[store] compression` for Parquet: `snappy` (default), `zstd`, `zstd:LEVEL` or `none`.
    #[cfg(feature = "parquet")]
    fn parquet_compression(&self) -> Result<crate::format::ParquetCompression> {
        use crate::format::ParquetCompression as P;
        let v = self.get("store", "compression").unwrap_or("snappy");
        let bad = || {
            Error::config(
                "pipeline.conf",
                format!(
                    "[store] compression {v:?} with format parquet: expected snappy, zstd, \
                     zstd:LEVEL (1-22) or none"
                ),
            )
        };
        match v {
            "snappy" | "" => Ok(P::Snappy),
            "none" => Ok(P::None),
            z => match zstd_level(z) {
                Some(Some(level)) => Ok(P::Zstd(level)),
                _ => Err(bad()),
            },
        }
    }

    /// `[store] compression` of whole objects: `none` (default), `gzip`, or `zstd` /
    /// `zstd:LEVEL` (feature `zstd`). With
    /// `format = parquet` the setting is Parquet's own (see [`PipelineConfig::format`]) and
    /// objects are not compressed again.
    pub fn compression(&self) -> Result<Compression> {
        if self.is_parquet() {
            return Ok(Compression::None);
        }
        match self.get("store", "compression").unwrap_or("none") {
            "none" | "" => Ok(Compression::None),
            "gzip" | "gz" => Ok(Compression::Gzip),
            #[cfg(feature = "zstd")]
            "zst" => Ok(Compression::Zstd(3)),
            other => match zstd_level(other) {
                #[cfg(feature = "zstd")]
                Some(Some(level)) => Ok(Compression::Zstd(level)),
                #[cfg(feature = "zstd")]
                Some(None) => Err(Error::config(
                    "pipeline.conf",
                    format!("[store] compression {other:?}: the zstd level must be 1 to 22"),
                )),
                #[cfg(not(feature = "zstd"))]
                Some(_) => Err(Error::config(
                    "pipeline.conf",
                    format!("[store] compression {other:?}: this build lacks the `zstd` feature"),
                )),
                None => Err(Error::config(
                    "pipeline.conf",
                    format!(
                        "[store] compression {other:?}: expected none, gzip, zstd or zstd:LEVEL"
                    ),
                )),
            },
        }
    }

    /// `[warehouse] url`.
    pub fn warehouse_url(&self) -> Result<String> {
        self.require("warehouse", "url")
    }

    /// A [`PipelineBuilder`](crate::PipelineBuilder) named `name` with everything
    /// `pipeline.conf` says: the sink from `[store]`, its format and compression, and —
    /// when `[warehouse] url` is set — checkpoints and run history in the warehouse.
    /// Add an extractor and build.
    #[cfg(feature = "sql")]
    #[cfg_attr(
        docsrs,
        doc(cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql")))
    )]
    pub async fn pipeline_builder(&self, name: &str) -> Result<crate::PipelineBuilder> {
        let mut b = crate::Pipeline::builder(name)
            .sink(self.store()?)
            .format(self.format()?)
            .options(crate::PipelineOptions::new().with_compression(self.compression()?));
        if self.get("warehouse", "url").is_some() {
            let wh = self.warehouse().await?;
            b = b.state(wh.state_store()).run_log(wh.run_log());
        }
        Ok(b)
    }

    /// Connect to `[warehouse] url`.
    #[cfg(feature = "sql")]
    #[cfg_attr(
        docsrs,
        doc(cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql")))
    )]
    pub async fn warehouse(&self) -> Result<crate::warehouse::Warehouse> {
        crate::warehouse::Warehouse::connect(&self.warehouse_url()?).await
    }
}

impl std::fmt::Display for PipelineConfig {
    /// The configuration with every secret redacted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut last = "";
        for ((s, k), v) in &self.values {
            if s != last {
                writeln!(f, "[{s}]")?;
                last = s;
            }
            let shown = if SECRET_KEYS.contains(&k.as_str()) {
                "***".to_string()
            } else {
                redacted(s, k, v)
            };
            writeln!(f, "{k} = {shown}")?;
        }
        Ok(())
    }
}
