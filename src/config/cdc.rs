//! `[cdc]`: the settings of a change-data-capture reader.

use super::PipelineConfig;
use crate::Result;
use crate::sources::mysql_cdc::{MySqlCdcConfig, SnapshotMode, WhenPositionLost};
use std::time::Duration;

impl PipelineConfig {
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
    pub fn mysql_cdc(&self, default_table: &str) -> Result<MySqlCdcConfig> {
        let mut c = MySqlCdcConfig::new();
        if let Some(id) = self.parsed("cdc", "server_id", "a server id (1 to 4294967295)", |v| {
            v.parse::<u32>().ok().filter(|n| *n > 0)
        })? {
            c = c.with_server_id(id);
        }
        let tables: Vec<String> = self
            .get("cdc", "tables")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        c = if tables.is_empty() {
            c.with_tables([default_table])
        } else {
            c.with_tables(tables)
        };
        if let Some(m) = self.parsed(
            "cdc",
            "snapshot",
            "one of initial, never, initial_only",
            SnapshotMode::parse,
        )? {
            c = c.with_snapshot(m);
        }
        if let Some(p) = self.parsed(
            "cdc",
            "when_position_lost",
            "one of fail, resnapshot",
            WhenPositionLost::parse,
        )? {
            c = c.when_position_lost(p);
        }
        Ok(c.with_timeouts(self.timeouts("mysql_config")?))
    }

    /// `[cdc] commit_interval`: how often a following reader commits (a duration, whole
    /// seconds by default; 5 s when unset).
    pub fn cdc_commit_interval(&self) -> Result<Duration> {
        Ok(self
            .parsed(
                "cdc",
                "commit_interval",
                "a duration such as 5 or 500ms",
                |v| crate::util::parse_duration(v).filter(|d| !d.is_zero()),
            )?
            .unwrap_or(Duration::from_secs(5)))
    }
}
