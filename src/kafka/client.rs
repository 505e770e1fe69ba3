//! Client settings shared by [`KafkaExtractor`](crate::kafka::KafkaExtractor) and
//! [`KafkaSink`](crate::kafka::KafkaSink).
use std::collections::BTreeMap;
use std::time::Duration;

/// How to reach the brokers: bootstrap servers, security (SASL/PLAIN, TLS) and timeouts,
/// plus any librdkafka property passed through with [`KafkaClientConfig::with_setting`].
///
/// `Debug` never shows a secret (any property whose name holds `password`, `secret`,
/// `key` or `token`), and neither does any error or log line of the crate.
///
/// ```
/// use tributary::kafka::KafkaClientConfig;
/// let c = KafkaClientConfig::new("127.0.0.1:9092")
///     .with_sasl_plain("app", "hunter2")
///     .with_tls(Some("/etc/ssl/ca.pem"));
/// let shown = format!("{c:?}");
/// assert!(shown.contains("SASL_SSL") && !shown.contains("hunter2"), "{shown}");
/// ```
#[derive(Clone)]
pub struct KafkaClientConfig {
    bootstrap_servers: String,
    settings: BTreeMap<String, String>,
    timeout: Duration,
}

/// Whether a librdkafka property holds a secret.
pub(crate) fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "secret", "key", "token", "jaas"]
        .iter()
        .any(|s| k.contains(s))
        && k != "ssl.key.location"
}

impl KafkaClientConfig {
    /// Brokers at `bootstrap_servers` (`host:port[,host:port…]`), plaintext, with a 30 s
    /// timeout for every request.
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        KafkaClientConfig {
            bootstrap_servers: bootstrap_servers.into(),
            settings: BTreeMap::new(),
            timeout: Duration::from_secs(30),
        }
    }

    /// SASL/PLAIN with these credentials (`security.protocol` `SASL_PLAINTEXT`, or
    /// `SASL_SSL` with [`KafkaClientConfig::with_tls`]).
    pub fn with_sasl_plain(
        mut self,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.settings
            .insert("sasl.mechanisms".into(), "PLAIN".into());
        self.settings
            .insert("sasl.username".into(), username.into());
        self.settings
            .insert("sasl.password".into(), password.into());
        self.set_protocol();
        self
    }

    /// TLS to the brokers, trusting the CA certificates in `ca_location` (a PEM file) or,
    /// with `None`, the system's.
    pub fn with_tls(mut self, ca_location: Option<&str>) -> Self {
        self.settings.insert("tributary.tls".into(), "true".into());
        if let Some(ca) = ca_location {
            self.settings.insert("ssl.ca.location".into(), ca.into());
        }
        self.set_protocol();
        self
    }

    fn set_protocol(&mut self) {
        let sasl = self.settings.contains_key("sasl.mechanisms");
        let tls = self.settings.contains_key("tributary.tls");
        let p = match (sasl, tls) {
            (true, true) => "SASL_SSL",
            (true, false) => "SASL_PLAINTEXT",
            (false, true) => "SSL",
            (false, false) => "PLAINTEXT",
        };
        self.settings.insert("security.protocol".into(), p.into());
    }

    /// Any librdkafka property (`client.id`, `ssl.certificate.location`,
    /// `sasl.mechanisms`, …), passed through as is.
    pub fn with_setting(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.insert(key.into(), value.into());
        self
    }

    /// The timeout of each request to the brokers (metadata, offsets, commits, delivery).
    /// Default 30 s.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The bootstrap servers.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap_servers
    }

    /// The request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The librdkafka configuration these settings make.
    pub(crate) fn client_config(&self) -> rdkafka::ClientConfig {
        let mut c = rdkafka::ClientConfig::new();
        let ms = self
            .timeout
            .as_millis()
            .clamp(1, i32::MAX as u128)
            .to_string();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("socket.timeout.ms", &ms)
            .set("socket.connection.setup.timeout.ms", &ms)
            // librdkafka logs through `log`; keep its own debug contexts off.
            .set("log.connection.close", "false");
        for (k, v) in &self.settings {
            if !k.starts_with("tributary.") {
                c.set(k, v);
            }
        }
        c
    }
}

impl std::fmt::Debug for KafkaClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: BTreeMap<&str, &str> = self
            .settings
            .iter()
            .filter(|(k, _)| !k.starts_with("tributary."))
            .map(|(k, v)| (k.as_str(), if is_secret(k) { "***" } else { v.as_str() }))
            .collect();
        f.debug_struct("KafkaClientConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("settings", &shown)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A Kafka client error as the crate's, naming what was being done; the message is
/// redacted of anything that looks like a credential.
pub(crate) fn error(
    component: &'static str,
    doing: &str,
    e: rdkafka::error::KafkaError,
) -> crate::Error {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode as C};
    let code = e.rdkafka_error_code();
    let message = crate::util::redact_text(&format!("{doing}: {e}"));
    match code {
        Some(
            C::SaslAuthenticationFailed
            | C::TopicAuthorizationFailed
            | C::GroupAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::Authentication,
        ) => crate::Error::PermissionDenied {
            component: component.into(),
            message,
            source: None,
        },
        Some(C::UnknownTopicOrPartition | C::UnknownTopic | C::UnknownPartition) => {
            crate::Error::NotFound {
                component: component.into(),
                message,
                source: None,
            }
        }
        _ if matches!(e, KafkaError::ClientConfig(..)) => crate::Error::config(component, message),
        _ => crate::Error::Connection {
            component: component.into(),
            message,
            source: None,
        },
    }
}
