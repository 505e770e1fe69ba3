//! What the change readers share: when to snapshot, and what a lost position means
//! (features `mysql-cdc`, `postgres-cdc`), and the parts of a reader that do not depend
//! on the database: the change-row accumulator and the hand-off at transaction
//! boundaries.

mod conf;
mod handoff;
mod options;
mod rows;

pub(crate) use handoff::{Handed, Handoff};
pub(crate) use options::{CdcOptions, cdc_builders};
pub(crate) use rows::ChangeRows;

/// Whether a first run reads the tables before streaming their changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SnapshotMode {
    /// Snapshot every selected table in one consistent read, then stream from exactly the
    /// log position of that read (the default; `initial` in `pipeline.conf`).
    #[default]
    Initial,
    /// Never snapshot: stream from the reader's start position (`never`).
    Never,
    /// Snapshot and stop, with the snapshot's position saved so that a later streaming
    /// reader continues from it (`initial_only`).
    InitialOnly,
}

/// What every change reader can do: acknowledge, plan and stop between transactions;
/// bounded when it stops at the log's current end (`until_current`) or takes only a
/// snapshot.
pub(crate) fn capabilities(
    until_current: bool,
    snapshot: SnapshotMode,
) -> crate::ExtractorCapabilities {
    crate::ExtractorCapabilities::bounded()
        .with_bounded(until_current || snapshot == SnapshotMode::InitialOnly)
        .with_acknowledges(true)
        .with_plans(true)
        .with_graceful_stop(true)
}

impl SnapshotMode {
    /// The mode a `pipeline.conf` word names: `initial`, `never`, `initial_only`.
    pub fn parse(word: &str) -> Option<Self> {
        Some(match word.trim() {
            "initial" => SnapshotMode::Initial,
            "never" => SnapshotMode::Never,
            "initial_only" => SnapshotMode::InitialOnly,
            _ => return None,
        })
    }
}

/// What to do when the saved position can no longer be read (a binlog file was purged, a
/// replication slot was dropped, the checkpoint comes from another server).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum WhenPositionLost {
    /// Fail with [`Error::PositionLost`](crate::Error::PositionLost) naming the saved
    /// position and the server's (the default; `fail`).
    #[default]
    Fail,
    /// Take a new snapshot and stream from its position (`resnapshot`). The tables are
    /// landed again in full: changes between the lost position and the new snapshot are
    /// not replayed, their net effect is in the snapshot.
    Resnapshot,
}

impl WhenPositionLost {
    /// The policy a `pipeline.conf` word names: `fail`, `resnapshot`.
    pub fn parse(word: &str) -> Option<Self> {
        Some(match word.trim() {
            "fail" => WhenPositionLost::Fail,
            "resnapshot" => WhenPositionLost::Resnapshot,
            _ => return None,
        })
    }
}
