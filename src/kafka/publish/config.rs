//! What a [`KafkaSink`](super::KafkaSink) publishes: topic names, the envelope's options.
use crate::kafka::KafkaClientConfig;

/// Settings of a [`KafkaSink`](super::KafkaSink).
///
/// ```
/// use tributary::kafka::KafkaClientConfig;
/// use tributary::kafka::KafkaSinkConfig;
/// let c = KafkaSinkConfig::new(KafkaClientConfig::new("127.0.0.1:9092"), "shop");
/// assert_eq!(c.topic_for("inventory.orders"), "shop.inventory.orders");
/// let c = c.with_topic_template("cdc-{name}");
/// assert_eq!(c.topic_for("inventory.orders"), "cdc-orders");
/// ```
#[derive(Clone, Debug)]
pub struct KafkaSinkConfig {
    pub(crate) client: KafkaClientConfig,
    pub(crate) prefix: String,
    pub(crate) template: String,
    pub(crate) schemas: bool,
    pub(crate) tombstones: bool,
    pub(crate) connector: Option<String>,
    pub(crate) compression: String,
    pub(crate) create_topics: Option<(i32, i32)>,
}

impl KafkaSinkConfig {
    /// Publish to `<prefix>.<db>.<table>` (Debezium's `topic.prefix`, also the
    /// envelope's `source.name`), JSON with schemas, a tombstone after each delete.
    pub fn new(client: KafkaClientConfig, prefix: impl Into<String>) -> Self {
        KafkaSinkConfig {
            client,
            prefix: prefix.into(),
            template: "{prefix}.{table}".into(),
            schemas: true,
            tombstones: true,
            connector: None,
            compression: "none".into(),
            create_topics: Some((1, 1)),
        }
    }

    /// The topic of each table: `{prefix}`, `{table}` (as the source names it,
    /// `db.table` / `schema.table`), `{db}` (its part before the dot) and `{name}` (after).
    pub fn with_topic_template(mut self, template: impl Into<String>) -> Self {
        self.template = template.into();
        self
    }

    /// JSON with schemas (`{"schema":…,"payload":…}`, Debezium's default) or the payload
    /// alone (`schemas.enable=false`).
    pub fn with_schemas(mut self, yes: bool) -> Self {
        self.schemas = yes;
        self
    }

    /// A tombstone (the key with a null value) after each delete, as Debezium's
    /// `tombstones.on.delete` (default on).
    pub fn with_tombstones(mut self, yes: bool) -> Self {
        self.tombstones = yes;
        self
    }

    /// The envelope's `source.connector` (`mysql`, `postgresql`). Default: from the
    /// pipeline's source (`mysql` → `mysql`, `postgres` → `postgresql`).
    pub fn with_connector(mut self, connector: impl Into<String>) -> Self {
        self.connector = Some(connector.into());
        self
    }

    /// The producer's `compression.type` (`none`, `gzip`, `lz4`, `zstd`). Default none.
    pub fn with_compression(mut self, codec: impl Into<String>) -> Self {
        self.compression = codec.into();
        self
    }

    /// Create each table's topic when missing, with this many partitions and replicas
    /// (Kafka Connect's `topic.creation`; default 1 and 1), or, with `None`, leave topics
    /// to the broker (auto-creation) or to their owners.
    pub fn with_topic_creation(mut self, partitions_replicas: Option<(i32, i32)>) -> Self {
        self.create_topics = partitions_replicas;
        self
    }

    /// The topic `table`'s changes go to.
    pub fn topic_for(&self, table: &str) -> String {
        let (db, name) = table.split_once('.').unwrap_or(("", table));
        self.template
            .replace("{prefix}", &self.prefix)
            .replace("{table}", table)
            .replace("{db}", db)
            .replace("{name}", name)
    }
}
