//! What a WAL reader reads, through which slot and publication, until when.

use crate::sources::cdc::{CdcOptions, cdc_builders};
pub use crate::sources::cdc::{SnapshotMode, WhenPositionLost};
use crate::{Error, Result};
use std::time::Duration;

/// The settings of a [`PostgresCdcExtractor`](super::PostgresCdcExtractor). The stream
/// name defaults to `wal`.
///
/// Without a snapshot a new slot streams from where it was created, an existing one from
/// its confirmed position. The before-image of an update
/// ([`ChangeOptions::with_before_image`](crate::model::ChangeOptions::with_before_image))
/// needs `REPLICA IDENTITY FULL` on the table (otherwise only a changed key is sent);
/// [`ChangeOptions::with_unsent`](crate::model::ChangeOptions::with_unsent) lists unchanged
/// TOASTed values the server did not send. The read limit of
/// [`with_timeouts`](Self::with_timeouts) bounds silence on the stream (the server's
/// keepalives keep an idle one alive).
///
/// ```
/// use tributary::sources::postgres_cdc::{PostgresCdcConfig, SnapshotMode};
/// use tributary::model::ChangeOptions;
/// let config = PostgresCdcConfig::new("orders_cdc")
///     .with_tables(["Orders", "shop.customers"])
///     .with_snapshot(SnapshotMode::Initial)
///     .with_change_options(ChangeOptions::new().with_position().with_before_image())
///     .until_current_end();
/// assert_eq!(config.slot(), "orders_cdc");
/// assert_eq!(config.publication(), "orders_cdc");
/// assert!(PostgresCdcConfig::new("Bad-Name").validate().is_err());
/// ```
#[derive(Clone, Debug)]
pub struct PostgresCdcConfig {
    pub(crate) tables: Vec<String>,
    pub(crate) cdc: CdcOptions,
    pub(crate) slot: String,
    pub(crate) publication: String,
    pub(crate) temporary: bool,
    pub(crate) heartbeat: Option<Duration>,
    pub(crate) status_interval: Duration,
    pub(crate) snapshot_parallelism: usize,
    pub(crate) slot_busy_wait: Duration,
}

impl PostgresCdcConfig {
    cdc_builders!();

    /// Read through replication slot `name`, and a publication of the same name (each
    /// created when missing): every table of the publication, snapshot then stream, no
    /// metadata columns.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        PostgresCdcConfig {
            tables: Vec::new(),
            cdc: CdcOptions::new("wal"),
            publication: name.clone(),
            slot: name,
            temporary: false,
            heartbeat: None,
            status_interval: Duration::from_secs(1),
            snapshot_parallelism: 4,
            slot_busy_wait: Duration::from_secs(10),
        }
    }

    /// Read these tables (`table` in the search path, or `schema.table`; names fold to
    /// lower case unless an exact match exists, as in SQL). A missing publication is
    /// created `FOR TABLE` these; an existing one must include them. Default: every table
    /// of an existing publication.
    pub fn with_tables<I, S>(mut self, tables: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tables.extend(tables.into_iter().map(Into::into));
        self
    }

    /// Use publication `name` (default: the slot's name).
    pub fn with_publication(mut self, name: impl Into<String>) -> Self {
        self.publication = name.into();
        self
    }

    /// A temporary slot: dropped by the server when the run ends, so it never retains WAL,
    /// but a later run cannot continue from it (its checkpoint is a lost position: use
    /// [`WhenPositionLost::Resnapshot`] for runs that each start over).
    pub fn with_temporary_slot(mut self, yes: bool) -> Self {
        self.temporary = yes;
        self
    }

    /// Write a `pg_logical_emit_message` into the WAL this often while the selected
    /// tables are idle, so that the slot moves on even when the database writes nothing
    /// else (Debezium's `heartbeat.action.query`). Default: off; the slot still moves on
    /// over other tables' transactions without it.
    pub fn with_heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = Some(every.max(Duration::from_millis(100)));
        self
    }

    /// How often the acknowledged position is reported to the server (default 1 s).
    pub fn with_status_interval(mut self, every: Duration) -> Self {
        self.status_interval = every.max(Duration::from_millis(10));
        self
    }

    /// How many connections read one table's snapshot in page ranges at once, all in the
    /// slot's exported snapshot (default 4; 1 reads each table in one query).
    pub fn with_snapshot_parallelism(mut self, n: usize) -> Self {
        self.snapshot_parallelism = n.max(1);
        self
    }

    /// How long to wait for a slot that another session still holds (right after a
    /// reconnect the server can take a moment to release it) before failing with "in use"
    /// (default 10 s).
    pub fn with_slot_busy_wait(mut self, wait: Duration) -> Self {
        self.slot_busy_wait = wait;
        self
    }

    /// The replication slot's name.
    pub fn slot(&self) -> &str {
        &self.slot
    }

    /// The publication's name.
    pub fn publication(&self) -> &str {
        &self.publication
    }

    /// Slot and publication names are what PostgreSQL allows for slots (lower-case
    /// letters, digits, `_`; at most 63 bytes); anything else is an
    /// [`Error::Config`] naming it.
    pub fn validate(&self) -> Result<()> {
        for (what, name) in [("slot", &self.slot), ("publication", &self.publication)] {
            let ok = !name.is_empty()
                && name.len() <= 63
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !ok {
                return Err(Error::config(
                    "postgres-cdc",
                    format!(
                        "{what} name {name:?} must be 1 to 63 lower-case letters, digits or \
                         underscores"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Its section of `pipeline.conf`.
impl crate::config::PipelineConfig {
    /// `[cdc]` as a WAL reader's settings: `slot` and `publication` (default
    /// `tributary_<table>`, in lower case), `temporary_slot` (`true`/`false`), `tables`
    /// (comma-separated; default `default_table`), `snapshot`, `when_position_lost`, as for
    /// [`mysql_cdc`](Self::mysql_cdc). A value that does not parse is a configuration
    /// error naming the key.
    ///
    /// ```
    /// use tributary::config::PipelineConfig;
    /// let c = PipelineConfig::parse("[cdc]\nslot = orders_slot\n", "test", |_| None)?;
    /// let wal = c.postgres_cdc("Orders")?;
    /// assert_eq!((wal.slot(), wal.publication()), ("orders_slot", "tributary_orders"));
    /// let bad = PipelineConfig::parse("[cdc]\ntemporary_slot = maybe\n", "test", |_| None)?;
    /// assert!(bad.postgres_cdc("Orders").unwrap_err().to_string().contains("temporary_slot"));
    /// # Ok::<(), tributary::Error>(())
    /// ```
    pub fn postgres_cdc(&self, default_table: &str) -> Result<PostgresCdcConfig> {
        let fallback = format!(
            "tributary_{}",
            default_table
                .to_ascii_lowercase()
                .replace(['.', '-', ' '], "_")
        );
        let slot = self
            .get("cdc", "slot")
            .map(str::to_string)
            .unwrap_or_else(|| fallback.clone());
        let publication = self
            .get("cdc", "publication")
            .map(str::to_string)
            .unwrap_or(fallback);
        let mut c = PostgresCdcConfig::new(slot).with_publication(publication);
        if let Some(t) = self.parsed("cdc", "temporary_slot", "true or false", |v| {
            match v.trim() {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            }
        })? {
            c = c.with_temporary_slot(t);
        }
        let tables = self.cdc_common(default_table, "postgres_config", c.cdc_mut())?;
        c = c.with_tables(tables);
        c.validate()
            .map_err(|e| crate::Error::config("pipeline.conf", format!("[cdc]: {e}")))?;
        Ok(c)
    }
}
