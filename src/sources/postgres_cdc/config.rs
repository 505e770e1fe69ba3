//! What a WAL reader reads, through which slot and publication, until when.

use crate::model::ChangeOptions;
pub use crate::sources::cdc::{SnapshotMode, WhenPositionLost};
use crate::sources::sql::Timeouts;
use crate::{Error, Result};
use std::time::Duration;

/// The settings of a [`PostgresCdcExtractor`](super::PostgresCdcExtractor).
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
    pub(crate) slot: String,
    pub(crate) publication: String,
    pub(crate) temporary: bool,
    pub(crate) snapshot: SnapshotMode,
    pub(crate) until_current: bool,
    pub(crate) when_position_lost: WhenPositionLost,
    pub(crate) options: ChangeOptions,
    pub(crate) heartbeat: Option<Duration>,
    pub(crate) status_interval: Duration,
    pub(crate) timeouts: Timeouts,
    pub(crate) batch_rows: usize,
    pub(crate) snapshot_parallelism: usize,
    pub(crate) slot_busy_wait: Duration,
    pub(crate) stream: String,
}

impl PostgresCdcConfig {
    /// Read through replication slot `name`, and a publication of the same name (each
    /// created when missing): every table of the publication, snapshot then stream, no
    /// metadata columns.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        PostgresCdcConfig {
            tables: Vec::new(),
            publication: name.clone(),
            slot: name,
            temporary: false,
            snapshot: SnapshotMode::Initial,
            until_current: false,
            when_position_lost: WhenPositionLost::Fail,
            options: ChangeOptions::new(),
            heartbeat: None,
            status_interval: Duration::from_secs(1),
            timeouts: Timeouts::default(),
            batch_rows: 8192,
            snapshot_parallelism: 4,
            slot_busy_wait: Duration::from_secs(10),
            stream: "wal".into(),
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

    /// Snapshot first, never, or only ([`SnapshotMode`]). Without a snapshot a new slot
    /// streams from where it was created, an existing one from its confirmed position.
    pub fn with_snapshot(mut self, mode: SnapshotMode) -> Self {
        self.snapshot = mode;
        self
    }

    /// Stop at the WAL position current when the run starts (a bounded run that drains
    /// what was committed before it, then exits). Default: stream until stopped.
    pub fn until_current_end(mut self) -> Self {
        self.until_current = true;
        self
    }

    /// Whether [`until_current_end`](Self::until_current_end) is set.
    pub fn stops_at_current_end(&self) -> bool {
        self.until_current
    }

    /// What a lost position means ([`WhenPositionLost`]).
    pub fn when_position_lost(mut self, policy: WhenPositionLost) -> Self {
        self.when_position_lost = policy;
        self
    }

    /// The metadata and before-image columns of the change rows. The before-image of an
    /// update needs `REPLICA IDENTITY FULL` on the table (otherwise only a changed key is
    /// sent); `with_unsent` lists unchanged TOASTed values the server did not send.
    pub fn with_change_options(mut self, options: ChangeOptions) -> Self {
        self.options = options;
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

    /// Time limits for connecting and for each read (the stream itself is kept alive by
    /// the server's keepalives; silence longer than the read limit is a connection error).
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Rows per batch (default 8,192); a bigger transaction is handed on in batches of
    /// this size, so memory stays bounded.
    pub fn with_batch_rows(mut self, rows: usize) -> Self {
        self.batch_rows = rows.max(1);
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

    /// The stream name (the run's manifest; each table lands under its own name).
    /// Default `wal`.
    pub fn with_stream_name(mut self, name: impl Into<String>) -> Self {
        self.stream = name.into();
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
