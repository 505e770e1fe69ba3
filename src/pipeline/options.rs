//! [`PipelineOptions`]: the knobs of a run (parts, commits, retries, start point,
//! delivery). How objects are laid out (prefix, key and manifest templates,
//! compression) is the object sink's business:
//! [`ObjectBatchSink`](crate::stores::ObjectBatchSink).

use super::Checkpoint;
use crate::RetryPolicy;
use std::time::Duration;

/// Knobs for a [`Pipeline`](super::Pipeline) run. New options never break callers:
/// build with `PipelineOptions::new().with_*()`. Object layout (prefix, key and
/// manifest templates, compression, Redshift manifests) is set on the
/// [`ObjectBatchSink`](crate::stores::ObjectBatchSink) given to
/// [`PipelineBuilder::batch_sink`](super::PipelineBuilder::batch_sink).
#[derive(Clone, Debug)]
pub struct PipelineOptions {
    pub(super) part_max_rows: Option<u64>,
    pub(super) part_max_bytes: Option<u64>,
    pub(super) commit_interval: Option<Duration>,
    pub(super) channel_capacity: usize,
    pub(super) run_id: Option<String>,
    pub(super) start_from: Option<Checkpoint>,
    pub(super) retry: RetryPolicy,
    pub(super) encoded_path: bool,
    pub(super) on_schema_change: OnSchemaChange,
    pub(super) exactly_once: bool,
}

/// What a schema change does: a table gains or loses a column or a column changes type
/// (`numeric(12,2)` → `numeric(14,3)`), within a run (a DDL in a change stream) or
/// between two runs (the schema saved with the checkpoint differs from the new rows').
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnSchemaChange {
    /// Start a new object with the new schema and record a warning in the report
    /// (every object has one schema; the manifest records each object's).
    #[default]
    NewObject,
    /// Fail the run with [`Error::SchemaChanged`](crate::Error::SchemaChanged) naming the table, the column and its
    /// old and new type. Nothing with the new schema is committed.
    Fail,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            part_max_rows: None,
            part_max_bytes: Some(256 * 1024 * 1024),
            commit_interval: None,
            channel_capacity: 4,
            run_id: None,
            start_from: None,
            retry: RetryPolicy::none(),
            encoded_path: true,
            on_schema_change: OnSchemaChange::NewObject,
            exactly_once: false,
        }
    }
}

impl PipelineOptions {
    /// Defaults: parts of at most 256 MiB, no row limit, no commit interval, no retries,
    /// at-least-once delivery.
    pub fn new() -> Self {
        Self::default()
    }

    /// Commit the open part once it holds this many rows (checked between batches).
    pub fn with_part_max_rows(mut self, rows: u64) -> Self {
        self.part_max_rows = Some(rows.max(1));
        self
    }

    /// Commit the open part once it holds this many bytes (checked between batches).
    pub fn with_part_max_bytes(mut self, bytes: u64) -> Self {
        self.part_max_bytes = Some(bytes.max(1));
        self
    }

    /// Commit the open part (and save its checkpoint) at least this often, also while the
    /// source is idle. For unbounded streams such as CDC.
    pub fn with_commit_interval(mut self, every: Duration) -> Self {
        self.commit_interval = Some(every);
        self
    }

    /// Batches buffered between extraction and upload (default 4).
    pub fn with_channel_capacity(mut self, n: usize) -> Self {
        self.channel_capacity = n.max(1);
        self
    }

    /// A run id of your own (an orchestrator's run id), so that a retry of the same run
    /// writes the same keys. Default: a new id per run, `YYYYMMDDTHHMMSSZ-xxxxxxxx`.
    pub fn with_run_id(mut self, run_id: impl Into<String>) -> Self {
        self.run_id = Some(run_id.into());
        self
    }

    /// Start from this checkpoint instead of the saved one (a backfill or a reset).
    pub fn with_start_from(mut self, checkpoint: Checkpoint) -> Self {
        self.start_from = Some(checkpoint);
        self
    }

    /// Let sources that can encode the output themselves do so (PostgreSQL `COPY` for
    /// CSV; default `true`). The bytes are the same either way; turn it off to compare.
    pub fn with_encoded_path(mut self, yes: bool) -> Self {
        self.encoded_path = yes;
        self
    }

    /// Require that every row is delivered exactly once, across crashes and reruns:
    /// [`PipelineBuilder::build`](super::PipelineBuilder::build) then refuses a composition that cannot promise it,
    /// saying why. It can with a sink that stores the checkpoint in the same commit as
    /// the data ([`SinkCapabilities::transactional_checkpoint`](crate::SinkCapabilities)),
    /// or with a sink whose commits are atomic and that can remove what a stopped run
    /// committed past its checkpoint (the object sinks), given a state store: a reader
    /// of the manifests, or of the folder, then sees each row once. A topic cannot (a
    /// sent message cannot be taken back), nor can any pipeline given
    /// [`with_start_from`](Self::with_start_from). Default: off (at least once).
    pub fn with_exactly_once(mut self, yes: bool) -> Self {
        self.exactly_once = yes;
        self
    }

    /// What a schema change does (default [`OnSchemaChange::NewObject`]).
    pub fn with_on_schema_change(mut self, what: OnSchemaChange) -> Self {
        self.on_schema_change = what;
        self
    }

    /// Retry a run that fails with a retryable error as `policy` says, each attempt
    /// resuming from the last saved checkpoint with the same run id (default: no
    /// retries). When the retries are spent the run fails with
    /// [`Error::RetriesExhausted`](crate::Error::RetriesExhausted).
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }
}
