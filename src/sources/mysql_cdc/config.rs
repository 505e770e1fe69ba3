//! What a binlog reader reads, from where, until when.

use crate::model::TableFilter;
use crate::sources::cdc::{CdcOptions, cdc_builders};
pub use crate::sources::cdc::{SnapshotMode, WhenPositionLost};
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

/// The settings of a [`MySqlCdcExtractor`](super::MySqlCdcExtractor). The stream name
/// defaults to `binlog`; [`until_current_end`](Self::until_current_end) stops at the
/// binlog position `SHOW MASTER STATUS` reports when the run starts.
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
    pub(crate) cdc: CdcOptions,
    pub(crate) server_id: Option<u32>,
    pub(crate) start: StartAt,
    pub(crate) resume_by_gtid: bool,
    pub(crate) heartbeat: Duration,
    pub(crate) position_every: Duration,
}

impl Default for MySqlCdcConfig {
    fn default() -> Self {
        MySqlCdcConfig {
            tables: TableFilter::new(),
            cdc: CdcOptions::new("binlog"),
            server_id: None,
            start: StartAt::Current,
            resume_by_gtid: false,
            heartbeat: Duration::from_secs(5),
            position_every: Duration::from_secs(1),
        }
    }
}

impl MySqlCdcConfig {
    cdc_builders!();

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

    /// Where to start without a checkpoint when no snapshot is taken.
    pub fn with_start_at(mut self, start: StartAt) -> Self {
        self.start = start;
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
}

/// Its section of `pipeline.conf`.
impl crate::config::PipelineConfig {
    /// `[cdc]` as a binlog reader's settings: `server_id`, `tables` (comma-separated
    /// include list; default `default_table`), `snapshot` (`initial`, `never`,
    /// `initial_only`), `when_position_lost` (`fail`, `resnapshot`). A value that does not
    /// parse is a configuration error naming the key.
    ///
    /// ```
    /// use tributary::config::PipelineConfig;
    /// let c = PipelineConfig::parse("[cdc]\nserver_id = 7\nsnapshot = never\n", "test", |_| None)?;
    /// assert!(c.mysql_cdc("Orders").is_ok());
    /// let bad = PipelineConfig::parse("[cdc]\nsnapshot = sometimes\n", "test", |_| None)?;
    /// assert!(bad.mysql_cdc("Orders").unwrap_err().to_string().contains("snapshot"));
    /// # Ok::<(), tributary::Error>(())
    /// ```
    pub fn mysql_cdc(&self, default_table: &str) -> crate::Result<MySqlCdcConfig> {
        let mut c = MySqlCdcConfig::new();
        if let Some(id) = self.parsed("cdc", "server_id", "a server id (1 to 4294967295)", |v| {
            v.parse::<u32>().ok().filter(|n| *n > 0)
        })? {
            c = c.with_server_id(id);
        }
        let tables = self.cdc_common(default_table, "mysql_config", c.cdc_mut())?;
        Ok(c.with_tables(tables))
    }
}
