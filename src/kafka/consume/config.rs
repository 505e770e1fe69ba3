//! What a [`KafkaExtractor`](super::KafkaExtractor) reads: the topics, the consumer
//! group, the change columns, and when to stop.
use crate::kafka::KafkaClientConfig;
use crate::model::ChangeOptions;
use std::time::Duration;

/// What to do with a tombstone (a message with a key and a null value: Debezium sends one
/// after each delete so that compaction can drop the key).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Tombstones {
    /// Skip it (the delete before it already landed). The default.
    #[default]
    Skip,
    /// Land it as a `delete` whose row holds only the key's columns: for topics written
    /// with `delete.handling.mode=drop`, where the tombstone is the only sign of a delete.
    AsDelete,
}

/// Settings of a [`KafkaExtractor`](super::KafkaExtractor).
///
/// ```
/// use tributary::kafka::KafkaClientConfig;
/// use tributary::kafka::KafkaConfig;
/// let c = KafkaConfig::new(KafkaClientConfig::new("127.0.0.1:9092"), "landing", ["shop.inventory.orders"])
///     .until_current_end();
/// assert_eq!(c.group_id(), "landing");
/// ```
#[derive(Clone, Debug)]
pub struct KafkaConfig {
    pub(crate) client: KafkaClientConfig,
    pub(crate) group_id: String,
    pub(crate) topics: Vec<String>,
    pub(crate) options: ChangeOptions,
    pub(crate) source_columns: bool,
    pub(crate) tombstones: Tombstones,
    pub(crate) stop_at_end: bool,
    pub(crate) batch_rows: usize,
    pub(crate) linger: Duration,
    pub(crate) tables: Option<Vec<String>>,
    pub(crate) instance_id: Option<String>,
}

impl KafkaConfig {
    /// Read `topics` (names, or regular expressions starting with `^`) as consumer group
    /// `group_id`. Unbounded (runs until cancelled), book columns only (`_op` and the row).
    pub fn new<T: Into<String>>(
        client: KafkaClientConfig,
        group_id: impl Into<String>,
        topics: impl IntoIterator<Item = T>,
    ) -> Self {
        KafkaConfig {
            client,
            group_id: group_id.into(),
            topics: topics.into_iter().map(Into::into).collect(),
            options: ChangeOptions::new(),
            source_columns: false,
            tombstones: Tombstones::Skip,
            stop_at_end: false,
            batch_rows: 8192,
            linger: Duration::from_millis(500),
            tables: None,
            instance_id: None,
        }
    }

    /// Which change columns to add (`_position`: the source's LSN or `file:pos`, else
    /// `topic/partition@offset`; `_commit_ts` from `source.ts_ms`; `_txid` from
    /// `source.txId` or `source.gtid`; `_seq` from `transaction.total_order`; the
    /// before-image; `_unsent` for `__debezium_unavailable_value`).
    pub fn with_change_options(mut self, options: ChangeOptions) -> Self {
        self.options = options;
        self
    }

    /// Add the event's `source` fields as text columns `_source_db`, `_source_schema`,
    /// `_source_table`, `_source_lsn`, `_source_file`, `_source_pos`, `_source_gtid`,
    /// `_source_ts_ms` after the table's columns.
    pub fn with_source_columns(mut self, yes: bool) -> Self {
        self.source_columns = yes;
        self
    }

    /// What to do with tombstones. Default [`Tombstones::Skip`].
    pub fn with_tombstones(mut self, t: Tombstones) -> Self {
        self.tombstones = t;
        self
    }

    /// Stop once every assigned partition reached the end offset it had when the run
    /// started (a run drains the topics and exits). Default: run until cancelled. The
    /// same spelling as the binlog and WAL readers'.
    pub fn until_current_end(mut self) -> Self {
        self.stop_at_end = true;
        self
    }

    /// Whether [`until_current_end`](Self::until_current_end) is set.
    pub fn stops_at_current_end(&self) -> bool {
        self.stop_at_end
    }

    /// Only these tables (`db.table` / `schema.table`, or the topic name for events
    /// that do not say); the others' events are skipped, their offsets still committed.
    pub fn with_tables<T: Into<String>>(mut self, tables: impl IntoIterator<Item = T>) -> Self {
        self.tables = Some(tables.into_iter().map(Into::into).collect());
        self
    }

    /// Rows per batch (default 8192) and the longest a row waits to be handed on
    /// (default 500 ms).
    pub fn with_batching(mut self, rows: usize, linger: Duration) -> Self {
        self.batch_rows = rows.max(1);
        self.linger = linger;
        self
    }

    /// A static group member id (Kafka's `group.instance.id`): a restarted reader with the
    /// same id takes its partitions back at once instead of waiting for the group to
    /// expire the member that died (seconds to minutes after a kill -9). Each member of
    /// a group needs its own id.
    pub fn with_instance_id(mut self, id: impl Into<String>) -> Self {
        self.instance_id = Some(id.into());
        self
    }

    /// The consumer group.
    pub fn group_id(&self) -> &str {
        &self.group_id
    }
}
