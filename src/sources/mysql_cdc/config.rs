//! What a binlog reader reads, from where, until when.

use crate::model::{ChangeOptions, TableFilter};
pub use crate::sources::cdc::{SnapshotMode, WhenPositionLost};
use crate::sources::sql::Timeouts;
use std::time::Duration;

/// Where a reader with no checkpoint and no snapshot starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartAt {
    /// The server's current end of the binlog (`SHOW MASTER STATUS`).
    #[default]
    Current,
    /// A binlog file and the offset of a transaction's first event (or of the event after
    /// a transaction's end).
    Position {
        /// Binlog file name (`binlog.000003`).
        file: String,
        /// Byte offset in it.
        pos: u64,
    },
}

/// The settings of a [`MySqlCdcExtractor`](super::MySqlCdcExtractor).
///
/// ```
/// use tributary::sources::mysql_cdc::{MySqlCdcConfig, SnapshotMode};
/// use tributary::model::ChangeOptions;
/// let config = MySqlCdcConfig::new()
///     .with_tables(["Orders", "shop.customers"])
///     .with_server_id(5001)
///     .with_snapshot(SnapshotMode::Initial)
///     .with_change_options(ChangeOptions::new().with_position().with_before_image())
///     .until_current_end();
/// assert!(config.stops_at_current_end());
/// ```
#[derive(Clone, Debug)]
pub struct MySqlCdcConfig {
    pub(crate) tables: TableFilter,
    pub(crate) server_id: Option<u32>,
    pub(crate) snapshot: SnapshotMode,
    pub(crate) start: StartAt,
    pub(crate) until_current: bool,
    pub(crate) when_position_lost: WhenPositionLost,
    pub(crate) options: ChangeOptions,
    pub(crate) resume_by_gtid: bool,
    pub(crate) heartbeat: Duration,
    pub(crate) position_every: Duration,
    pub(crate) timeouts: Timeouts,
    pub(crate) batch_rows: usize,
    pub(crate) stream: String,
}

impl Default for MySqlCdcConfig {
    fn default() -> Self {
        MySqlCdcConfig {
            tables: TableFilter::new(),
            server_id: None,
            snapshot: SnapshotMode::Initial,
            start: StartAt::Current,
            until_current: false,
            when_position_lost: WhenPositionLost::Fail,
            options: ChangeOptions::new(),
            resume_by_gtid: false,
            heartbeat: Duration::from_secs(5),
            position_every: Duration::from_secs(1),
            timeouts: Timeouts::default(),
            batch_rows: 8192,
            stream: "binlog".into(),
        }
    }
}

impl MySqlCdcConfig {
    /// Every table of the URL's database, snapshot then stream, no metadata columns.
    pub fn new() -> Self {
        Self::default()
    }

    /// Read only these tables (`table` in the URL's database, or `db.table`; `*` and `?`
    /// patterns). Names compare as the server compares them (`lower_case_table_names`).
    pub fn with_tables<I, S>(mut self, tables: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tables = self.tables.include(tables);
        self
    }

    /// Skip these tables (same forms as [`with_tables`](Self::with_tables)).
    pub fn without_tables<I, S>(mut self, tables: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tables = self.tables.exclude(tables);
        self
    }

    /// The replica id this reader registers with (each reader of a server needs its own;
    /// default: a random one in `1_000_000..4_000_000_000`).
    pub fn with_server_id(mut self, id: u32) -> Self {
        self.server_id = Some(id);
        self
    }

    /// Snapshot first, never, or only ([`SnapshotMode`]).
    pub fn with_snapshot(mut self, mode: SnapshotMode) -> Self {
        self.snapshot = mode;
        self
    }

    /// Where to start without a checkpoint when no snapshot is taken.
    pub fn starting_at(mut self, start: StartAt) -> Self {
        self.start = start;
        self
    }

    /// Stop at the binlog position the server reports when the run starts (a bounded run
    /// that drains what was written before it, then exits). Default: stream until
    /// cancelled.
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

    /// The metadata and before-image columns of the change rows.
    pub fn with_change_options(mut self, options: ChangeOptions) -> Self {
        self.options = options;
        self
    }

    /// Resume from the checkpoint's GTID position (MariaDB `@slave_connect_state`) rather
    /// than its file and offset. Either resumes exactly at a transaction boundary; the
    /// GTID form survives a server whose binlog files were renumbered.
    pub fn resume_by_gtid(mut self) -> Self {
        self.resume_by_gtid = true;
        self
    }

    /// How often an idle server sends a heartbeat (default 5 s); the read timeout is at
    /// least three of these.
    pub fn with_heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every.max(Duration::from_millis(100));
        self
    }

    /// How often at most a position that moved past transactions of other tables is
    /// handed on to be saved (default 1 s).
    pub fn with_position_every(mut self, every: Duration) -> Self {
        self.position_every = every;
        self
    }

    /// Time limits for connecting and for each read.
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

    /// The stream name (the run's manifest; each table lands under its own name).
    /// Default `binlog`.
    pub fn with_stream_name(mut self, name: impl Into<String>) -> Self {
        self.stream = name.into();
        self
    }
}
