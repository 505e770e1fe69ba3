//! `[cdc]`: the settings of a change-data-capture reader.

use super::PipelineConfig;
use crate::Result;
use crate::sources::cdc::{CdcOptions, SnapshotMode, WhenPositionLost};
#[cfg(feature = "mysql-cdc")]
use crate::sources::mysql_cdc::MySqlCdcConfig;
#[cfg(feature = "postgres-cdc")]
use crate::sources::postgres_cdc::PostgresCdcConfig;
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
    #[cfg(feature = "mysql-cdc")]
    pub fn mysql_cdc(&self, default_table: &str) -> Result<MySqlCdcConfig> {
        let mut c = MySqlCdcConfig::new();
        if let Some(id) = self.parsed("cdc", "server_id", "a server id (1 to 4294967295)", |v| {
            v.parse::<u32>().ok().filter(|n| *n > 0)
        })? {
            c = c.with_server_id(id);
        }
        let tables = self.cdc_common(default_table, "mysql_config", c.cdc_mut())?;
        Ok(c.with_tables(tables))
    }

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
    #[cfg(feature = "postgres-cdc")]
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

    /// `snapshot` and `when_position_lost` of `[cdc]` and the time limits of `[section]`
    /// into `common`; the `tables` of `[cdc]`.
    fn cdc_common(
        &self,
        default_table: &str,
        section: &str,
        common: &mut CdcOptions,
    ) -> Result<Vec<String>> {
        let mut tables: Vec<String> = self
            .get("cdc", "tables")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        if tables.is_empty() {
            tables.push(default_table.to_string());
        }
        let snapshot = self.parsed(
            "cdc",
            "snapshot",
            "one of initial, never, initial_only",
            SnapshotMode::parse,
        )?;
        if let Some(m) = snapshot {
            common.snapshot = m;
        }
        let lost = self.parsed(
            "cdc",
            "when_position_lost",
            "one of fail, resnapshot",
            WhenPositionLost::parse,
        )?;
        if let Some(p) = lost {
            common.when_position_lost = p;
        }
        common.timeouts = self.timeouts(section)?;
        Ok(tables)
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
