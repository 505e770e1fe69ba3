//! [`BatchSink`]: where batches land as rows, not bytes: objects of a format (the
//! [`ObjectBatchSink`](crate::stores::ObjectBatchSink) every pipeline uses for a
//! [`Sink`](crate::Sink)), a warehouse table, a topic. The pipeline keeps only the run
//! loop; encoding lives in the sink.

use crate::format::Format;
use crate::model::{EncodedChunk, SchemaSummary};
use crate::stores::PipelineState;
use crate::{Error, Manifest, Result, RunReport};
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use async_trait::async_trait;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::fmt::Debug;
use std::sync::Arc;

/// One committed unit of output (an object): what manifests and reports list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ObjectReport {
    /// Its key (for a sink that is not an object store, its id).
    pub key: String,
    /// Rows in it.
    pub rows: u64,
    /// Its size in bytes.
    pub bytes: u64,
    /// SHA-256 of its bytes, hex (empty when the sink writes no bytes).
    pub sha256: String,
    /// The table its rows belong to (the extractor's stream, or the batch's table in a
    /// many-table stream).
    #[serde(default)]
    pub table: String,
    /// The schema of its rows (every object has exactly one), when known: always for
    /// Arrow batches, and for rows a source encoded itself when it says what they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<SchemaSummary>,
}

impl ObjectReport {
    /// A unit at `key` of `rows` rows and `bytes` bytes, whose SHA-256 is `sha256` (empty
    /// for a sink that writes no bytes); no table, no schema.
    pub fn new(key: impl Into<String>, rows: u64, bytes: u64, sha256: impl Into<String>) -> Self {
        ObjectReport {
            key: key.into(),
            rows,
            bytes,
            sha256: sha256.into(),
            table: String::new(),
            schema: None,
        }
    }

    /// The table its rows belong to.
    pub fn with_table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// The schema of its rows.
    pub fn with_schema(mut self, schema: SchemaSummary) -> Self {
        self.schema = Some(schema);
        self
    }
}

/// What one unit of output is for: the pipeline, source, table, run and part it
/// belongs to, and the schema of its rows (`None`: the source encodes the bytes itself).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct BatchTarget {
    /// The pipeline's name.
    pub pipeline: String,
    /// The extractor's source (`postgres`, `mysql`, ...).
    pub source: String,
    /// The table (the extractor's stream, or a batch's table).
    pub table: String,
    /// The run's start date (UTC).
    pub date: NaiveDate,
    /// The run id.
    pub run_id: String,
    /// The part number, unique within the run (stable on a retry of the same run).
    pub part: u32,
    /// The schema of every batch written to it.
    pub schema: Option<SchemaRef>,
}

impl BatchTarget {
    /// A target for `table` rows of `schema`, in part `part` of run `run_id` (dated
    /// today, UTC).
    pub fn new(
        pipeline: impl Into<String>,
        source: impl Into<String>,
        table: impl Into<String>,
        run_id: impl Into<String>,
        part: u32,
        schema: Option<SchemaRef>,
    ) -> Self {
        BatchTarget {
            pipeline: pipeline.into(),
            source: source.into(),
            table: table.into(),
            date: chrono::Utc::now().date_naive(),
            run_id: run_id.into(),
            part,
            schema,
        }
    }

    /// The run's date.
    pub fn with_date(mut self, date: NaiveDate) -> Self {
        self.date = date;
        self
    }
}

/// What a [`BatchSink`] can promise, declared rather than implied: the pipeline builds
/// its commit protocol on these, and the conformance suite checks what is declared.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SinkCapabilities {
    /// Nothing a writer wrote is visible before [`BatchWriter::commit`] returns `Ok`; an
    /// abort, a dropped writer or a crash leaves nothing (object stores: yes; a topic:
    /// no, a sent message cannot be taken back).
    pub atomic_visibility: bool,
    /// The sink records each run in a manifest ([`BatchSink::write_manifest`]).
    pub manifests: bool,
    /// The sink can remove committed units again ([`BatchSink::discard`]): what a run
    /// committed after its last saved checkpoint is removed by the run that resumes
    /// from that checkpoint, so a reader sees each row once per saved checkpoint.
    pub discard: bool,
    /// The sink stores the pipeline's state (its checkpoint) in the same commit as the
    /// data up to it ([`BatchSink::commit_state`]), so a crash can neither lose nor
    /// repeat a row: exactly once, with no separate state store needed. For such a sink a
    /// writer's [`commit`](BatchWriter::commit) only *stages* its unit (durable, not
    /// visible); `commit_state` makes the staged units visible together with the state,
    /// and [`BatchSink::load_state`] reads the state back. A staged unit never published
    /// stays invisible.
    pub transactional_checkpoint: bool,
}

impl SinkCapabilities {
    /// No capability.
    pub fn new() -> Self {
        Self::default()
    }

    /// See [`SinkCapabilities::atomic_visibility`].
    pub fn with_atomic_visibility(mut self, yes: bool) -> Self {
        self.atomic_visibility = yes;
        self
    }

    /// See [`SinkCapabilities::manifests`].
    pub fn with_manifests(mut self, yes: bool) -> Self {
        self.manifests = yes;
        self
    }

    /// See [`SinkCapabilities::discard`].
    pub fn with_discard(mut self, yes: bool) -> Self {
        self.discard = yes;
        self
    }

    /// See [`SinkCapabilities::transactional_checkpoint`].
    pub fn with_transactional_checkpoint(mut self, yes: bool) -> Self {
        self.transactional_checkpoint = yes;
        self
    }
}

/// What a run left behind when it stopped between committing units and saving the
/// checkpoint that covers them ([`BatchSink::discard`]): the units' ids, and the manifest
/// that may already list them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Leftover {
    /// The ids ([`ObjectReport::key`]) of units whose commit may have happened.
    pub objects: Vec<String>,
    /// The manifest written for them, if the sink keeps manifests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
}

impl Leftover {
    /// Units `objects`, listed in `manifest` if that was written.
    pub fn new(objects: Vec<String>, manifest: Option<String>) -> Self {
        Leftover { objects, manifest }
    }

    /// Nothing left over.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
}

/// Where batches land. The same visibility rule as [`Sink`](crate::Sink): nothing a
/// writer wrote may be visible before [`BatchWriter::commit`] returns `Ok`; an abort, a
/// dropped writer or a crash leaves nothing. [`testing::batch_sink_suite`] checks it for
/// any implementation.
///
/// [`testing::batch_sink_suite`]: crate::testing
#[async_trait]
pub trait BatchSink: Debug + Send + Sync + 'static {
    /// Where data lands, for logs and run history. Must not contain secrets.
    fn describe(&self) -> String;

    /// The format objects are written in, if the sink writes bytes of one: the pipeline
    /// lets a source encode it itself ([`Extractor::open_encoded`](crate::Extractor::open_encoded)).
    fn format(&self) -> Option<&dyn Format> {
        None
    }

    /// What the sink promises. Default: nothing.
    fn capabilities(&self) -> SinkCapabilities {
        SinkCapabilities::default()
    }

    /// Check that the sink is reachable, writing nothing. Default: nothing to check.
    async fn check(&self) -> Result<()> {
        Ok(())
    }

    /// Start one unit of output (an object, a load, a transaction).
    async fn begin(&self, target: &BatchTarget) -> Result<Box<dyn BatchWriter>>;

    /// Store `manifest` at `key` (the key [`manifest_key`](Self::manifest_key) gave).
    /// The pipeline's committer writes one before each checkpoint save, outcome
    /// `running` and every unit committed so far, and one at the end. Default: nothing
    /// (a sink with no manifest key is never asked).
    async fn write_manifest(&self, _key: &str, _manifest: &Manifest) -> Result<()> {
        Ok(())
    }

    /// Where the manifest of `report` goes; `None`: this sink keeps no manifests.
    /// Default: `None`.
    fn manifest_key(&self, _report: &RunReport) -> Result<Option<String>> {
        Ok(None)
    }

    /// Remove what a stopped run committed past its last saved checkpoint: first the
    /// units from `leftover.manifest` if it lists them, then the units themselves (one
    /// already gone is no error). Only called on a sink whose
    /// [`capabilities`](Self::capabilities) declare `discard`. Default: refused.
    async fn discard(&self, _leftover: &Leftover) -> Result<()> {
        Err(Error::config(
            "sink",
            format!("{} cannot remove committed units", self.describe()),
        ))
    }

    /// Make the staged `units` (reports of writers whose `commit` staged them) visible
    /// and store `state` as `pipeline`'s, in one transaction: after a crash either both
    /// happened or neither did. `units` may be empty (the position moved without rows).
    /// Only called on a sink whose capabilities declare `transactional_checkpoint`.
    /// Default: refused.
    async fn commit_state(
        &self,
        _pipeline: &str,
        _units: &[ObjectReport],
        _state: &PipelineState,
    ) -> Result<()> {
        Err(Error::config(
            "sink",
            format!(
                "{} cannot commit a checkpoint with its data",
                self.describe()
            ),
        ))
    }

    /// The state last stored by [`commit_state`](Self::commit_state) for `pipeline`.
    /// Default: `None`.
    async fn load_state(&self, _pipeline: &str) -> Result<Option<PipelineState>> {
        Ok(None)
    }

    /// Forget `pipeline`'s stored state ([`Pipeline::reset`](crate::Pipeline::reset));
    /// the data stays. Default: nothing stored, nothing to do.
    async fn delete_state(&self, _pipeline: &str) -> Result<()> {
        Ok(())
    }
}

/// One unit of output being written. See [`BatchSink`] for the visibility rule.
#[async_trait]
pub trait BatchWriter: Send {
    /// Its id: the key or name the [`ObjectReport`] of its commit will have.
    fn id(&self) -> &str;

    /// Rows written so far.
    fn rows(&self) -> u64;

    /// Bytes written so far (for rotation by size); 0 when the sink cannot tell.
    fn size(&self) -> u64;

    /// Append rows. Their schema is the target's; another is a [`Error::Type`].
    async fn write(&mut self, batch: &RecordBatch) -> Result<()>;

    /// Append rows a source encoded itself, in the sink's [`BatchSink::format`].
    /// Default: refused.
    async fn write_encoded(&mut self, _chunk: EncodedChunk) -> Result<()> {
        Err(Error::config(
            "sink",
            "this sink takes Arrow batches only, not pre-encoded bytes",
        ))
    }

    /// Make everything written visible, whole (on a sink with a
    /// [`transactional_checkpoint`](SinkCapabilities::transactional_checkpoint): stage
    /// it, whole, for [`BatchSink::commit_state`] to make visible).
    async fn commit(self: Box<Self>) -> Result<ObjectReport>;

    /// Discard everything written.
    async fn abort(self: Box<Self>) -> Result<()>;
}

super::forward::forward_impls!(BatchSink {
    fn describe(&self) -> String;
    fn format(&self) -> Option<&dyn Format>;
    fn capabilities(&self) -> SinkCapabilities;
    fn manifest_key(&self, report: &RunReport) -> Result<Option<String>>;
} {
    async fn check(&self) -> Result<()> => ();
    async fn begin(&self, target: &BatchTarget) -> Result<Box<dyn BatchWriter>> => (target);
    async fn write_manifest(&self, key: &str, manifest: &Manifest) -> Result<()> => (key, manifest);
    async fn discard(&self, leftover: &Leftover) -> Result<()> => (leftover);
    async fn commit_state(&self, pipeline: &str, units: &[ObjectReport], state: &PipelineState) -> Result<()> => (pipeline, units, state);
    async fn load_state(&self, pipeline: &str) -> Result<Option<PipelineState>> => (pipeline);
    async fn delete_state(&self, pipeline: &str) -> Result<()> => (pipeline);
});

/// The schema check every writer makes: the batch's schema is the target's.
pub(crate) fn same_schema(id: &str, target: Option<&SchemaRef>, batch: &RecordBatch) -> Result<()> {
    match target {
        Some(s) if Arc::ptr_eq(s, &batch.schema()) || **s == *batch.schema() => Ok(()),
        Some(s) => Err(Error::type_error(
            "sink",
            format!(
                "{id}: a batch with another schema than the object's ({}); every object has \
                 one schema",
                crate::model::schema_changes(s, &batch.schema())
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        )),
        None => Err(Error::type_error(
            "sink",
            format!("{id}: Arrow batches written to an object of pre-encoded bytes"),
        )),
    }
}
