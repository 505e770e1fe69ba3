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

mod sections;
mod store;

pub use sections::{AwsConfig, DbConfig, MongoConfig};

use crate::{Error, Result, Secret};
use ini::Ini;
use std::collections::BTreeMap;
use std::path::Path;

const SECTIONS: &[(&str, &[&str])] = &[
    (
        "mysql_config",
        &[
            "hostname",
            "port",
            "username",
            "password",
            "database",
            "connect_timeout",
            "read_timeout",
        ],
    ),
    (
        "postgres_config",
        &[
            "host",
            "port",
            "username",
            "password",
            "database",
            "connect_timeout",
            "read_timeout",
        ],
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
        &[
            "url",
            "prefix",
            "format",
            "dialect",
            "compression",
            "part_max_rows",
            "part_max_bytes",
        ],
    ),
    ("warehouse", &["url"]),
    (
        "pipeline",
        &[
            "commit_interval",
            "retries",
            "retry_backoff",
            "channel_capacity",
            "on_schema_change",
        ],
    ),
    (
        "cdc",
        &[
            "commit_interval",
            "server_id",
            "tables",
            "snapshot",
            "when_position_lost",
            "slot",
            "publication",
            "temporary_slot",
        ],
    ),
    (
        "kafka",
        &[
            "bootstrap_servers",
            "group_id",
            "instance_id",
            "topics",
            "topic_prefix",
            "schemas",
            "tombstones",
            "security_protocol",
            "sasl_mechanism",
            "sasl_username",
            "sasl_password",
            "ssl_ca_location",
            "timeout",
        ],
    ),
];

const SECRET_KEYS: &[&str] = &["password", "secret_key", "access_key", "sasl_password"];

/// A parsed `pipeline.conf`. `Debug` and `Display` show it with every secret redacted.
#[derive(Clone, Default)]
pub struct PipelineConfig {
    values: BTreeMap<(String, String), String>,
    origin: String,
}

/// A name from the file, quoted, when it looks like a name; otherwise `what`, so that a
/// malformed line (an unclosed `[section` swallowing the lines after it, passwords
/// included) is never echoed into an error message.
fn shown(name: &str, open: &str, close: &str, what: &str) -> String {
    let plain = name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ' '));
    if plain {
        format!("{open}{name}{close}")
    } else {
        what.to_string()
    }
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
                        "{origin}: unknown section {}; known sections: {}",
                        shown(
                            section,
                            "[",
                            "]",
                            "a section header that is not closed by `]` on its line"
                        ),
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
                            "{origin}: unknown key {} in section [{s}]; known keys: {}",
                            shown(&k, "\"", "\"", "a line that is not `key = value`"),
                            keys.join(", ")
                        ),
                    ));
                }
                if values
                    .insert((s.clone(), k.clone()), v.trim().to_string())
                    .is_some()
                {
                    return Err(Error::config(
                        "pipeline.conf",
                        format!("{origin}: key {k:?} is given twice in section [{s}]; keep one"),
                    ));
                }
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
        self.parsed(section, "port", "a port number", |p| p.parse().ok())
    }

    /// `[section] key` as a comma-separated list, blanks dropped (empty when unset).
    #[cfg_attr(
        not(any(feature = "kafka", feature = "mysql-cdc", feature = "postgres-cdc")),
        allow(dead_code)
    )]
    pub(crate) fn list(&self, section: &str, key: &str) -> Vec<String> {
        self.get(section, key)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `[section] key` read by `parse`, or a configuration error saying what was expected.
    pub(crate) fn parsed<T>(
        &self,
        section: &str,
        key: &str,
        expected: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<T>> {
        let Some(v) = self.get(section, key).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        parse(v).map(Some).ok_or_else(|| {
            Error::config(
                "pipeline.conf",
                format!("{}: [{section}] {key} {v:?} is not {expected}", self.origin),
            )
        })
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
            host: self.host(section, host_key)?,
            port: self.port(section)?,
            username: self.require(section, "username")?,
            password: Secret::new(self.get(section, "password").unwrap_or_default()),
            database: self.require(section, "database")?,
        })
    }

    /// A host name or address, checked: it is spliced into a URL, so a port, path or
    /// query in it (`127.0.0.1:5432/test?x#`) would silently change what is connected to.
    /// A bare IPv6 address is bracketed.
    fn host(&self, section: &str, key: &str) -> Result<String> {
        let host = self.require(section, key)?;
        if host.parse::<std::net::Ipv6Addr>().is_ok() {
            return Ok(format!("[{host}]"));
        }
        let bracketed = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .is_some_and(|h| h.parse::<std::net::Ipv6Addr>().is_ok());
        let ok = !host.is_empty()
            && (bracketed
                || host
                    .chars()
                    .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_')));
        if ok {
            return Ok(host);
        }
        let hint = if host.contains(':') {
            "; give the port as `port = ...`"
        } else {
            ""
        };
        Err(Error::config(
            "pipeline.conf",
            format!(
                "{}: [{section}] {key} {host:?} is not a host name or address (letters, digits, \
                 '.', '-', '_', or an IPv6 address){hint}",
                self.origin
            ),
        ))
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
}

impl std::fmt::Debug for PipelineConfig {
    /// The origin and the values, secrets redacted as in `Display`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineConfig")
            .field("origin", &self.origin)
            .field("values", &self.to_string())
            .finish()
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
