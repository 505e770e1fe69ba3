//! The settings every change reader has, and their builder methods, written once.

use super::{SnapshotMode, WhenPositionLost};
use crate::model::ChangeOptions;
use crate::sources::sql::Timeouts;

/// What every change reader's settings hold besides where it reads from.
#[derive(Clone, Debug)]
pub(crate) struct CdcOptions {
    pub(crate) snapshot: SnapshotMode,
    pub(crate) until_current: bool,
    pub(crate) when_position_lost: WhenPositionLost,
    pub(crate) options: ChangeOptions,
    pub(crate) timeouts: Timeouts,
    pub(crate) batch_rows: usize,
    pub(crate) stream: String,
}

impl CdcOptions {
    /// The defaults: snapshot then stream until stopped, fail on a lost position, no
    /// metadata columns, batches of 8,192 rows, stream name `stream`.
    pub(crate) fn new(stream: &str) -> Self {
        CdcOptions {
            snapshot: SnapshotMode::Initial,
            until_current: false,
            when_position_lost: WhenPositionLost::Fail,
            options: ChangeOptions::new(),
            timeouts: Timeouts::default(),
            batch_rows: 8192,
            stream: stream.to_string(),
        }
    }
}

/// The builder methods of [`CdcOptions`] on a reader's config type with a `cdc` field,
/// so that every change reader spells them the same.
macro_rules! cdc_builders {
    () => {
        /// Snapshot first, never, or only ([`SnapshotMode`]).
        pub fn with_snapshot(mut self, mode: SnapshotMode) -> Self {
            self.cdc.snapshot = mode;
            self
        }

        /// Stop at the log position current when the run starts (a bounded run that
        /// drains what was committed before it, then exits). Default: stream until
        /// stopped.
        pub fn until_current_end(mut self) -> Self {
            self.cdc.until_current = true;
            self
        }

        /// Whether [`until_current_end`](Self::until_current_end) is set.
        pub fn stops_at_current_end(&self) -> bool {
            self.cdc.until_current
        }

        /// What a lost position means ([`WhenPositionLost`]).
        pub fn when_position_lost(mut self, policy: WhenPositionLost) -> Self {
            self.cdc.when_position_lost = policy;
            self
        }

        /// The metadata and before-image columns of the change rows
        /// ([`ChangeOptions`](crate::model::ChangeOptions)).
        pub fn with_change_options(mut self, options: crate::model::ChangeOptions) -> Self {
            self.cdc.options = options;
            self
        }

        /// Time limits for connecting and for each read.
        pub fn with_timeouts(mut self, timeouts: crate::sources::sql::Timeouts) -> Self {
            self.cdc.timeouts = timeouts;
            self
        }

        /// Rows per batch (default 8,192); a bigger transaction is handed on in batches
        /// of this size, so memory stays bounded.
        pub fn with_batch_rows(mut self, rows: usize) -> Self {
            self.cdc.batch_rows = rows.max(1);
            self
        }

        /// The stream name (the run's manifest; each table lands under its own name).
        pub fn with_stream_name(mut self, name: impl Into<String>) -> Self {
            self.cdc.stream = name.into();
            self
        }

        /// The settings every change reader has, for `pipeline.conf`.
        pub(crate) fn cdc_mut(&mut self) -> &mut crate::sources::cdc::CdcOptions {
            &mut self.cdc
        }
    };
}
pub(crate) use cdc_builders;
