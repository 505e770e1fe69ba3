//! `[kafka]`: the brokers, the consumer group and topics, and the published topics' prefix.

use super::{KafkaClientConfig, KafkaConfig, KafkaSinkConfig};
use crate::config::PipelineConfig;
use crate::{Error, Result};

impl PipelineConfig {
    /// `[kafka]` as client settings: `bootstrap_servers` (required), `security_protocol`
    /// (`plaintext`, `ssl`, `sasl_plaintext`, `sasl_ssl`), `sasl_mechanism` (default
    /// `PLAIN`), `sasl_username`, `sasl_password`, `ssl_ca_location`, `timeout` (a
    /// duration; default 30 s). The password never appears in a message or `Debug`.
    ///
    /// ```
    /// use tributary::config::PipelineConfig;
    /// let c = PipelineConfig::parse(
    ///     "[kafka]\nbootstrap_servers = 127.0.0.1:9092\nsecurity_protocol = sasl_ssl\nsasl_username = app\nsasl_password = s3cret\n",
    ///     "test", |_| None)?;
    /// let k = c.kafka_client()?;
    /// assert!(!format!("{k:?}").contains("s3cret"));
    /// assert!(PipelineConfig::parse("[kafka]\n", "test", |_| None)?.kafka_client().is_err());
    /// # Ok::<(), tributary::Error>(())
    /// ```
    pub fn kafka_client(&self) -> Result<KafkaClientConfig> {
        let servers = self
            .get("kafka", "bootstrap_servers")
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| {
                Error::config(
                    "pipeline.conf",
                    "[kafka] bootstrap_servers is missing (host:port[,host:port...])",
                )
            })?;
        let mut c = KafkaClientConfig::new(servers.trim());
        let protocol = self
            .get("kafka", "security_protocol")
            .map(|p| p.trim().to_ascii_lowercase());
        let (sasl, tls) = match protocol.as_deref() {
            None | Some("") | Some("plaintext") => (false, false),
            Some("ssl") => (false, true),
            Some("sasl_plaintext") => (true, false),
            Some("sasl_ssl") => (true, true),
            Some(other) => {
                return Err(Error::config(
                    "pipeline.conf",
                    format!(
                        "[kafka] security_protocol {other:?} is not one of plaintext, ssl, sasl_plaintext, sasl_ssl"
                    ),
                ));
            }
        };
        if sasl {
            let user = self.get("kafka", "sasl_username").unwrap_or_default();
            let password = self.get("kafka", "sasl_password").unwrap_or_default();
            if user.is_empty() {
                return Err(Error::config(
                    "pipeline.conf",
                    "[kafka] sasl_username is missing for a SASL security_protocol",
                ));
            }
            c = c.with_sasl_plain(user, password);
            if let Some(m) = self
                .get("kafka", "sasl_mechanism")
                .filter(|m| !m.is_empty())
            {
                c = c.with_setting("sasl.mechanisms", m.to_ascii_uppercase());
            }
        }
        if tls {
            c = c.with_tls(
                self.get("kafka", "ssl_ca_location")
                    .filter(|v| !v.is_empty()),
            );
        }
        if let Some(t) = self.parsed("kafka", "timeout", "a duration such as 30 or 500ms", |v| {
            crate::util::parse_duration(v).filter(|d| !d.is_zero())
        })? {
            c = c.with_timeout(t);
        }
        Ok(c)
    }

    /// `[kafka]` as a reader's settings: the client ([`kafka_client`](Self::kafka_client)),
    /// `group_id` (default `tributary`), `topics` (comma-separated names or `^patterns`,
    /// required).
    pub fn kafka_reader(&self) -> Result<KafkaConfig> {
        let topics = self.list("kafka", "topics");
        if topics.is_empty() {
            return Err(Error::config(
                "pipeline.conf",
                "[kafka] topics is missing (comma-separated topic names)",
            ));
        }
        let group = self
            .get("kafka", "group_id")
            .filter(|g| !g.is_empty())
            .unwrap_or("tributary");
        Ok(KafkaConfig::new(self.kafka_client()?, group, topics))
    }

    /// `[kafka]` as a publisher's settings: the client and `topic_prefix` (Debezium's
    /// `topic.prefix`; default `tributary`), so tables go to `<prefix>.<db>.<table>`;
    /// `schemas` (`true`/`false`, default true) and `tombstones` (default true).
    pub fn kafka_publisher(&self) -> Result<KafkaSinkConfig> {
        let prefix = self
            .get("kafka", "topic_prefix")
            .filter(|p| !p.is_empty())
            .unwrap_or("tributary");
        let flag = |key: &str| {
            self.parsed("kafka", key, "true or false", |v| match v.trim() {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            })
        };
        let mut c = KafkaSinkConfig::new(self.kafka_client()?, prefix);
        if let Some(s) = flag("schemas")? {
            c = c.with_schemas(s);
        }
        if let Some(t) = flag("tombstones")? {
            c = c.with_tombstones(t);
        }
        Ok(c)
    }
}
