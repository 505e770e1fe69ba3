//! What a run did: [`RunReport`] (also the manifest's body and a history row), its
//! [`Outcome`], progress, and the [`RunLog`] that records it.

use crate::{Checkpoint, Error, ObjectReport, Result, ValidationOutcome};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every batch was committed and the checkpoint saved.
    Succeeded,
    /// The run stopped with an error; see [`RunReport::error`].
    Failed,
    /// The run was cancelled.
    Cancelled,
    /// The run is still going: the outcome of the manifest written before each mid-run
    /// checkpoint, listing every object committed so far.
    Running,
}

impl Outcome {
    /// `succeeded`, `failed`, `cancelled` or `running`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
            Outcome::Running => "running",
        }
    }
}

/// Where a failed run was when it failed: what it was doing and, when it had one
/// table's batch in hand, which table. Where it resumes from is the report's
/// [`checkpoint_to`](RunReport::checkpoint_to), the last checkpoint saved.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use tributary::{OnSchemaChange, Pipeline, PipelineOptions, stores::ObjectSink};
/// use tributary::sources::{ChangeEvent, MemoryChangeStream};
/// use tributary::arrow_array::{Int64Array, RecordBatch, StringArray};
/// use std::sync::Arc;
/// let ids = RecordBatch::try_from_iter([("id", Arc::new(Int64Array::from(vec![1])) as _)]).unwrap();
/// let wider = RecordBatch::try_from_iter([
///     ("id", Arc::new(Int64Array::from(vec![2])) as _),
///     ("note", Arc::new(StringArray::from(vec!["new"])) as _),
/// ]).unwrap();
/// let log = vec![ChangeEvent::rows(1, "orders", ids), ChangeEvent::rows(2, "orders", wider)];
/// let report = Pipeline::builder("cdc")
///     .extractor(MemoryChangeStream::new("mem", "shop", log).bounded())
///     .sink(ObjectSink::memory())
///     .options(PipelineOptions::new().with_on_schema_change(OnSchemaChange::Fail))
///     .build()?
///     .run()
///     .await;
/// let at = report.failed_at.as_ref().unwrap();
/// assert_eq!((at.operation.as_str(), at.table.as_deref()), ("compare schema", Some("orders")));
/// assert_eq!(at.to_string(), "compare schema, table orders");
/// # Ok::<(), tributary::Error>(()) }).unwrap();
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FailurePoint {
    /// What the run was doing: `check the sink`, `load the saved state`, `open the
    /// source`, `extract`, `validate`, `compare schema`, `write`, `commit`, `save the
    /// checkpoint`, `acknowledge`.
    pub operation: String,
    /// The table whose batch was in hand, if one was.
    pub table: Option<String>,
}

impl FailurePoint {
    pub(crate) fn new(operation: &str, table: Option<&str>) -> Self {
        FailurePoint {
            operation: operation.to_string(),
            table: table.map(str::to_string),
        }
    }
}

impl std::fmt::Display for FailurePoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.operation)?;
        match &self.table {
            Some(t) => write!(f, ", table {t}"),
            None => Ok(()),
        }
    }
}

/// What a run did. Also the body of the run's manifest and of a run history row.
///
/// `#[must_use]`: [`Pipeline::run`](crate::Pipeline::run) never returns an `Err`, its
/// failures are in the report, so dropping the report unread would hide them. Call
/// [`RunReport::into_result`] (`pipeline.run().await.into_result()?`) or look at
/// [`RunReport::outcome`].
#[derive(Debug, Serialize)]
#[must_use = "a run's failure is in its report: call .into_result()? or check .outcome"]
#[non_exhaustive]
pub struct RunReport {
    /// The pipeline's name.
    pub pipeline: String,
    /// The run id (in every key the run wrote).
    pub run_id: String,
    /// The extractor's source.
    pub source: String,
    /// The extractor's stream.
    pub stream: String,
    /// Where the data landed.
    pub sink: String,
    /// The format's extension.
    pub format: String,
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// How long it took.
    #[serde(rename = "duration_ms", with = "crate::util::duration_ms")]
    pub duration: Duration,
    /// How it ended.
    pub outcome: Outcome,
    /// Attempts made (1 without retries).
    pub attempts: u32,
    /// Rows in committed objects.
    pub rows: u64,
    /// Bytes in committed objects.
    pub bytes: u64,
    /// Committed objects, in order.
    pub objects: Vec<ObjectReport>,
    /// The checkpoint the run started from. Manifests and history rows hold its
    /// [`Checkpoint::summary`] (a watermark's `seen` list only counted).
    #[serde(serialize_with = "crate::model::checkpoint::serialize_summary")]
    pub checkpoint_from: Option<Checkpoint>,
    /// The last checkpoint whose data was committed (and saved, with a state store);
    /// equal to `checkpoint_from` if there was none. Serialized as its summary.
    #[serde(serialize_with = "crate::model::checkpoint::serialize_summary")]
    pub checkpoint_to: Option<Checkpoint>,
    /// The key of the run's manifest, if one was written.
    pub manifest: Option<String>,
    /// An unbounded stream's epoch manifest: its number (from 1). Each checkpoint save of
    /// an unbounded stream writes one, listing the objects committed since the previous
    /// one, so a commit costs the same at part 10,000 as at part 10. `None` in a run's
    /// own manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// Epoch manifests written so far by this run (0 for a bounded run, whose manifest
    /// lists every object). In an unbounded run's own manifest, `objects` holds only the
    /// objects after the last epoch; the epochs `1..=epochs` list the rest.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub epochs: u64,
    /// Batch validation outcomes, one per validator.
    pub validations: Vec<ValidationOutcome>,
    /// The error's message, when the run failed.
    pub error_message: Option<String>,
    /// Where the run was when it failed (not for a cancelled run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_at: Option<FailurePoint>,
    /// Things that went wrong without failing the run (e.g. a history row not written).
    pub warnings: Vec<String>,
    /// Whether the source encoded the output itself (PostgreSQL `COPY`) rather than
    /// handing over Arrow batches.
    pub source_encoded: bool,
    /// How many bytes of its log the source retained for this reader after the last
    /// acknowledgement (a PostgreSQL slot's lag; see
    /// [`Acker::retained_bytes`](crate::Acker::retained_bytes)); `None` for sources
    /// without a log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_lag_bytes: Option<u64>,
    /// The error, when the run failed.
    #[serde(skip)]
    pub error: Option<Error>,
}

impl RunReport {
    /// `Ok(self)` if the run succeeded, else its error.
    pub fn into_result(mut self) -> Result<RunReport> {
        match self.error.take() {
            Some(e) => Err(e),
            None if self.outcome == Outcome::Cancelled => Err(Error::Cancelled),
            None => Ok(self),
        }
    }

    /// Whether the run succeeded.
    pub fn succeeded(&self) -> bool {
        self.outcome == Outcome::Succeeded
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A run's manifest: what the pipeline writes (built from the [`RunReport`] as it
/// stands) and what [`ObjectSink::read_manifest`](crate::stores::ObjectSink::read_manifest)
/// reads back, the same type both ways. Checkpoints are their [`Checkpoint::summary`] JSON.
///
/// ```
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// use tributary::{Batch, Checkpoint, Outcome, Pipeline, sources::MemoryExtractor, stores::ObjectSink};
/// # use std::sync::Arc; use arrow_array::{Int64Array, RecordBatch}; use arrow_schema::{DataType, Field, Schema};
/// # let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
/// # let rb = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2]))]).unwrap();
/// let sink = ObjectSink::memory();
/// let report = Pipeline::builder("demo")
///     .extractor(MemoryExtractor::new("m", "numbers", vec![Batch::new(rb)]))
///     .sink(sink.clone())
///     .build()?.run().await.into_result()?;
/// let m = sink.read_manifest(report.manifest.as_deref().unwrap()).await?;
/// // What was written reads back as the same value the run's report makes.
/// assert_eq!(m, tributary::Manifest::from(&report));
/// assert_eq!((m.outcome, m.rows, m.objects.len()), (Outcome::Succeeded, 2, 1));
/// assert_eq!(m.objects[0].schema.as_ref().unwrap().fields[0].name, "id");
/// assert_eq!(sink.list_runs("m/").await?, [report.manifest.unwrap()]);
/// # Ok::<(), tributary::Error>(()) }).unwrap();
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Manifest {
    /// The pipeline's name.
    pub pipeline: String,
    /// The run id.
    pub run_id: String,
    /// The extractor's source.
    pub source: String,
    /// The extractor's stream.
    pub stream: String,
    /// Where the data landed.
    pub sink: String,
    /// The format's extension (`rows` for a row-level sink).
    pub format: String,
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// When it ended (or, for outcome `running`, when this manifest was written).
    pub finished_at: DateTime<Utc>,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// Attempts made.
    pub attempts: u32,
    /// Rows in committed objects (the whole run's, also in an epoch manifest).
    pub rows: u64,
    /// Bytes in committed objects.
    pub bytes: u64,
    /// The objects this manifest lists.
    pub objects: Vec<ObjectReport>,
    /// The checkpoint the run started from, as its summary.
    pub checkpoint_from: Option<serde_json::Value>,
    /// The checkpoint its data reaches, as its summary.
    pub checkpoint_to: Option<serde_json::Value>,
    /// This manifest's own key.
    pub manifest: Option<String>,
    /// An epoch manifest's number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// Epoch manifests of the run so far.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub epochs: u64,
    /// Batch validation outcomes.
    #[serde(default)]
    pub validations: Vec<ValidationOutcome>,
    /// The error, when the run failed.
    pub error_message: Option<String>,
    /// Where the run was when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_at: Option<FailurePoint>,
    /// Warnings (schema changes, a history row not written, ...).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Whether the source encoded the output itself.
    #[serde(default)]
    pub source_encoded: bool,
    /// The source's retained log after the last acknowledgement, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_lag_bytes: Option<u64>,
}

impl From<&RunReport> for Manifest {
    /// The manifest of a run as it stands (the committer writes one before each
    /// checkpoint save and one at the end).
    fn from(r: &RunReport) -> Self {
        Manifest {
            pipeline: r.pipeline.clone(),
            run_id: r.run_id.clone(),
            source: r.source.clone(),
            stream: r.stream.clone(),
            sink: r.sink.clone(),
            format: r.format.clone(),
            started_at: r.started_at,
            finished_at: r.finished_at,
            duration_ms: u64::try_from(r.duration.as_millis()).unwrap_or(u64::MAX),
            outcome: r.outcome,
            attempts: r.attempts,
            rows: r.rows,
            bytes: r.bytes,
            objects: r.objects.clone(),
            checkpoint_from: r.checkpoint_from.as_ref().map(Checkpoint::summary),
            checkpoint_to: r.checkpoint_to.as_ref().map(Checkpoint::summary),
            manifest: r.manifest.clone(),
            epoch: r.epoch,
            epochs: r.epochs,
            validations: r.validations.clone(),
            error_message: r.error_message.clone(),
            failed_at: r.failed_at.clone(),
            warnings: r.warnings.clone(),
            source_encoded: r.source_encoded,
            source_lag_bytes: r.source_lag_bytes,
        }
    }
}

impl Manifest {
    /// The `FILES = (...)` clause of Snowflake's `COPY INTO <table> FROM @<stage>` that
    /// loads exactly this manifest's objects, their keys relative to the stage's location
    /// (`stage_prefix` is cut from the front of each key; quotes are doubled).
    ///
    /// ```
    /// # let mut m: tributary::Manifest = serde_json::from_value(serde_json::json!({
    /// #   "pipeline": "p", "run_id": "r1", "source": "m", "stream": "s", "sink": "s3://b/x",
    /// #   "format": "csv", "started_at": "2026-12-02T00:00:00Z", "finished_at": "2026-12-02T00:00:01Z",
    /// #   "duration_ms": 1000, "outcome": "succeeded", "attempts": 1, "rows": 2, "bytes": 4,
    /// #   "objects": [{"key": "m/s/dt=2026-12-02/r1-00000.csv", "rows": 2, "bytes": 4, "sha256": ""},
    /// #               {"key": "m/s/dt=2026-12-02/it's-00001.csv", "rows": 0, "bytes": 0, "sha256": ""}],
    /// #   "checkpoint_from": null, "checkpoint_to": null, "manifest": null, "error_message": null})).unwrap();
    /// assert_eq!(m.snowflake_files_clause("m/s/"),
    ///     "FILES = ('dt=2026-12-02/r1-00000.csv', 'dt=2026-12-02/it''s-00001.csv')");
    /// ```
    pub fn snowflake_files_clause(&self, stage_prefix: &str) -> String {
        let files: Vec<String> = self
            .objects
            .iter()
            .map(|o| {
                let k = o.key.strip_prefix(stage_prefix).unwrap_or(&o.key);
                format!("'{}'", k.replace('\'', "''"))
            })
            .collect();
        format!("FILES = ({})", files.join(", "))
    }
}

/// Progress reported after each batch and each commit.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Progress {
    /// Rows received from the extractor so far.
    pub rows_extracted: u64,
    /// Rows in committed objects so far.
    pub rows_committed: u64,
    /// Bytes in committed objects so far.
    pub bytes_committed: u64,
    /// Objects committed so far.
    pub objects_committed: u64,
    /// The source's retained log after the last acknowledgement, in bytes (a PostgreSQL
    /// slot's lag); `None` for sources without a log.
    pub source_lag_bytes: Option<u64>,
    /// The source's estimate of the rows this run reads, when it has one (PostgreSQL's
    /// planner, MySQL's `information_schema.TABLES.TABLE_ROWS`, a snapshot's tables):
    /// with `rows_extracted`, a percentage to show. Estimates can be off either way, and
    /// an unbounded stream has none after its snapshot.
    pub rows_estimated: Option<u64>,
}

/// Appends run reports somewhere durable (a `pipeline_run_history` table).
#[async_trait::async_trait]
pub trait RunLog: std::fmt::Debug + Send + Sync + 'static {
    /// Record one run, failed ones included.
    async fn append(&self, report: &RunReport) -> Result<()>;
}

crate::traits::forward_impls!(RunLog {
} {
    async fn append(&self, report: &RunReport) -> Result<()> => (report);
});

/// Write `report`'s manifest where the sink keeps it, if it keeps manifests, and record
/// the key in `report.manifest`. The one way a manifest is written: before a checkpoint
/// save (outcome `running`) and at the end of a run.
pub(super) async fn write_manifest(
    sink: &dyn crate::BatchSink,
    report: &mut crate::RunReport,
) -> Result<()> {
    let Some(key) = sink.manifest_key(report)? else {
        return Ok(());
    };
    report.manifest = Some(key.clone());
    sink.write_manifest(&key, &crate::Manifest::from(&*report))
        .await
}
