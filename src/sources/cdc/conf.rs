//! `[cdc]` of `pipeline.conf`: the settings every change reader shares (each reader's
//! own keys are read in its `config.rs`).

use super::{CdcOptions, SnapshotMode, WhenPositionLost};
use crate::Result;
use crate::config::PipelineConfig;
use std::time::Duration;

impl PipelineConfig {
    /// `snapshot` and `when_position_lost` of `[cdc]` and the time limits of `[section]`
    /// into `common`; the `tables` of `[cdc]`.
    pub(crate) fn cdc_common(
        &self,
        default_table: &str,
        section: &str,
        common: &mut CdcOptions,
    ) -> Result<Vec<String>> {
        let mut tables = self.list("cdc", "tables");
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
