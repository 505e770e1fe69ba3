//! [`Pipeline`]: extractor → batch validators → format → sink → state store, with
//! bounded memory, cancellation, progress, and a [`RunReport`] for every run.
//!
//! ## Guarantees
//! - **Checkpoints trail committed data.** A checkpoint is saved only after every batch
//!   up to it is inside an object whose commit succeeded. A crash at any point re-reads
//!   from the last saved checkpoint: at-least-once delivery, and never a gap.
//! - **Objects are whole or absent.** Each part is one sink object; a failed or
//!   cancelled run aborts its open part, so nothing half-written appears at a final key.
//! - **Keys are unique per run and stable on retry.** Keys contain the run id and part
//!   number. Give a run id ([`PipelineOptions::with_run_id`]) to make a retry by your
//!   scheduler rewrite the same keys; the state store remembers the next part number so
//!   a retry that resumes mid-run never overwrites a part it has already checkpointed.
//! - **Bounded memory.** Batches pass through a bounded channel (extraction and upload
//!   overlap); encoded bytes go to the sink in chunks; parts rotate by rows or bytes.
//! - **Unbounded streams land continuously.** With [`PipelineOptions::with_commit_interval`]
//!   the open part is committed (and its checkpoint saved) every interval even when the
//!   source is idle, so CDC streams land data without ending.
//!
//! The manifest listing a run's objects is written at the end of the run (success or
//! failure) and after every mid-run checkpoint. Objects not listed in a manifest belong
//! to an attempt that did not finish and may be ignored by loaders.

use crate::format::{Compression, Csv, Encoder, Format};
use crate::model::EncodedChunk;
use crate::stores::{KeyTemplate, KeyVars, PipelineState, StateStore};
use crate::{
    Batch, BatchValidator, Checkpoint, Error, Extractor, ObjectTarget, Result, Severity, Sink,
    SinkWriter, ValidationOutcome,
};
use arrow_schema::SchemaRef;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Bytes handed to the sink in one `write` call.
const WRITE_CHUNK: usize = 1024 * 1024;

/// Knobs for a [`Pipeline`]. New options never break callers: build with
/// `PipelineOptions::new().with_*()`.
#[derive(Clone, Debug)]
pub struct PipelineOptions {
    prefix: String,
    key_template: KeyTemplate,
    manifest_template: Option<KeyTemplate>,
    part_max_rows: Option<u64>,
    part_max_bytes: Option<u64>,
    commit_interval: Option<Duration>,
    compression: Compression,
    channel_capacity: usize,
    run_id: Option<String>,
    start_from: Option<Checkpoint>,
    retries: u32,
    retry_backoff: Duration,
    encoded_path: bool,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            prefix: String::new(),
            key_template: KeyTemplate::default(),
            manifest_template: Some(
                KeyTemplate::manifest(KeyTemplate::MANIFEST).expect("valid default"),
            ),
            part_max_rows: None,
            part_max_bytes: Some(256 * 1024 * 1024),
            commit_interval: None,
            compression: Compression::None,
            channel_capacity: 4,
            run_id: None,
            start_from: None,
            retries: 0,
            retry_backoff: Duration::from_secs(1),
            encoded_path: true,
        }
    }
}

impl PipelineOptions {
    /// Defaults: default key template, no prefix, parts of at most 256 MiB, no row limit,
    /// no commit interval, no compression, no retries.
    pub fn new() -> Self {
        Self::default()
    }

    /// A prefix for every key (the `{prefix}` placeholder).
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The key template for data objects (see [`KeyTemplate`]).
    pub fn with_key_template(mut self, template: KeyTemplate) -> Self {
        self.key_template = template;
        self
    }

    /// The key template for the run manifest, or `None` to write no manifest.
    pub fn with_manifest_template(mut self, template: Option<KeyTemplate>) -> Self {
        self.manifest_template = template;
        self
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

    /// Compress objects.
    pub fn with_compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
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

    /// Retry a run that fails with a retryable error up to `n` times, resuming from the
    /// last saved checkpoint with the same run id, waiting `backoff × 2^attempt` between.
    pub fn with_retries(mut self, n: u32, backoff: Duration) -> Self {
        self.retries = n;
        self.retry_backoff = backoff;
        self
    }
}

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
}

impl Outcome {
    /// `succeeded`, `failed` or `cancelled`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// One committed object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectReport {
    /// Its key.
    pub key: String,
    /// Rows in it.
    pub rows: u64,
    /// Its size in bytes.
    pub bytes: u64,
    /// SHA-256 of its bytes, hex.
    pub sha256: String,
}

/// What a run did. Also the body of the run's manifest and of a run history row.
#[derive(Debug, Serialize)]
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
    #[serde(with = "crate::util::duration_ms")]
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
    /// The checkpoint the run started from.
    pub checkpoint_from: Option<Checkpoint>,
    /// The last checkpoint whose data was committed (and saved, with a state store);
    /// equal to `checkpoint_from` if there was none.
    pub checkpoint_to: Option<Checkpoint>,
    /// The key of the run's manifest, if one was written.
    pub manifest: Option<String>,
    /// Batch validation outcomes, one per validator.
    pub validations: Vec<ValidationOutcome>,
    /// The error's message, when the run failed.
    pub error_message: Option<String>,
    /// Things that went wrong without failing the run (e.g. a history row not written).
    pub warnings: Vec<String>,
    /// Whether the source encoded the output itself (PostgreSQL `COPY`) rather than
    /// handing over Arrow batches.
    pub source_encoded: bool,
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

/// Progress reported after each batch and each commit.
#[derive(Clone, Debug)]
pub struct Progress {
    /// Rows received from the extractor so far.
    pub rows_extracted: u64,
    /// Rows in committed objects so far.
    pub rows_committed: u64,
    /// Bytes in committed objects so far.
    pub bytes_committed: u64,
    /// Objects committed so far.
    pub objects_committed: u64,
}

/// Appends run reports somewhere durable (a `pipeline_run_history` table).
#[async_trait::async_trait]
pub trait RunLog: std::fmt::Debug + Send + Sync + 'static {
    /// Record one run, failed ones included.
    async fn append(&self, report: &RunReport) -> Result<()>;
}

type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Builds a [`Pipeline`].
pub struct PipelineBuilder {
    name: String,
    extractor: Option<Arc<dyn Extractor>>,
    sink: Option<Arc<dyn Sink>>,
    format: Arc<dyn Format>,
    state: Option<Arc<dyn StateStore>>,
    run_log: Option<Arc<dyn RunLog>>,
    validators: Vec<Arc<dyn BatchValidator>>,
    options: PipelineOptions,
    progress: Option<ProgressFn>,
    cancel: CancellationToken,
}

impl PipelineBuilder {
    /// The source.
    pub fn extractor(mut self, e: impl Extractor) -> Self {
        self.extractor = Some(Arc::new(e));
        self
    }

    /// Where objects land.
    pub fn sink(mut self, s: impl Sink) -> Self {
        self.sink = Some(Arc::new(s));
        self
    }

    /// The file format (default: [`Csv`] in the book's dialect).
    pub fn format(mut self, f: impl Format) -> Self {
        self.format = Arc::new(f);
        self
    }

    /// Where checkpoints are kept. Without one every run starts from the beginning
    /// (or from [`PipelineOptions::with_start_from`]).
    pub fn state(mut self, s: impl StateStore) -> Self {
        self.state = Some(Arc::new(s));
        self
    }

    /// Where run reports are appended.
    pub fn run_log(mut self, l: impl RunLog) -> Self {
        self.run_log = Some(Arc::new(l));
        self
    }

    /// A check run on every batch before it is written.
    pub fn validator(mut self, v: impl BatchValidator) -> Self {
        self.validators.push(Arc::new(v));
        self
    }

    /// Options.
    pub fn options(mut self, o: PipelineOptions) -> Self {
        self.options = o;
        self
    }

    /// Called after every batch and every commit.
    pub fn on_progress(mut self, f: impl Fn(&Progress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }

    /// A token that cancels the run: the open part is aborted, nothing more is saved.
    pub fn cancellation(mut self, token: CancellationToken) -> Self {
        self.cancel = token;
        self
    }

    /// Check the composition; does no I/O.
    pub fn build(self) -> Result<Pipeline> {
        if self.name.is_empty() || self.name.contains(['/', '#']) {
            return Err(Error::config(
                "pipeline",
                format!("invalid pipeline name {:?}", self.name),
            ));
        }
        let extractor = self
            .extractor
            .ok_or_else(|| Error::config("pipeline", "no extractor: call .extractor(...)"))?;
        let sink = self
            .sink
            .ok_or_else(|| Error::config("pipeline", "no sink: call .sink(...)"))?;
        if self.format.compresses_itself() && self.options.compression != Compression::None {
            return Err(Error::config(
                "pipeline",
                format!(
                    "{} objects compress their own contents: set their compression on the \
                     format, not whole-object {:?}",
                    self.format.extension(),
                    self.options.compression
                ),
            ));
        }
        Ok(Pipeline {
            name: self.name,
            extractor,
            sink,
            format: self.format,
            state: self.state,
            run_log: self.run_log,
            validators: self.validators,
            options: self.options,
            progress: self.progress,
            cancel: self.cancel,
        })
    }
}

/// A composed pipeline. Cheap to run again: each [`Pipeline::run`] is one run.
///
/// ```
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use arrow_array::{Int64Array, RecordBatch};
/// use arrow_schema::{DataType, Field, Schema};
/// use tributary::{Batch, Checkpoint, Pipeline, PipelineOptions};
/// use tributary::sources::MemoryExtractor;
/// use tributary::stores::{ObjectSink, ObjectStateStore};
///
/// let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
/// let rb = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2]))]).unwrap();
/// let source = MemoryExtractor::new("demo", "numbers", vec![
///     Batch::new(rb).with_checkpoint(Checkpoint::Lsn { lsn: 7 }),
/// ]);
/// let sink = ObjectSink::memory();
/// let pipeline = Pipeline::builder("numbers")
///     .extractor(source)
///     .sink(sink.clone())
///     .state(ObjectStateStore::new(sink.clone(), "_state"))
///     .options(PipelineOptions::new().with_run_id("r1"))
///     .build()?;
/// let report = pipeline.run().await.into_result()?;
/// assert_eq!(report.rows, 2);
/// assert_eq!(report.checkpoint_to, Some(Checkpoint::Lsn { lsn: 7 }));
/// let key = &report.objects[0].key;
/// assert!(key.starts_with("demo/numbers/dt=") && key.ends_with("/r1-00000.csv"));
/// assert_eq!(&sink.read(key).await?[..], b"1\n2\n");
/// # Ok::<(), tributary::Error>(()) }).unwrap();
/// ```
pub struct Pipeline {
    name: String,
    extractor: Arc<dyn Extractor>,
    sink: Arc<dyn Sink>,
    format: Arc<dyn Format>,
    state: Option<Arc<dyn StateStore>>,
    run_log: Option<Arc<dyn RunLog>>,
    validators: Vec<Arc<dyn BatchValidator>>,
    options: PipelineOptions,
    progress: Option<ProgressFn>,
    cancel: CancellationToken,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("name", &self.name)
            .field("extractor", &self.extractor)
            .field("sink", &self.sink.describe())
            .field("format", &self.format)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// A part being written.
struct OpenPart {
    writer: Box<dyn SinkWriter>,
    /// `None` for a part of pre-encoded bytes.
    encoder: Option<Box<dyn Encoder>>,
    schema: Option<SchemaRef>,
    key: String,
    buf: Vec<u8>,
    compressor: Option<Compressor>,
    rows: u64,
    bytes: u64,
}

impl OpenPart {
    fn pending(&self) -> &[u8] {
        match &self.compressor {
            Some(c) => c.get_ref(),
            None => &self.buf,
        }
    }

    fn size(&self) -> u64 {
        self.bytes + self.pending().len() as u64
    }

    /// Move freshly encoded bytes through compression; hand full chunks to the sink.
    async fn drain(&mut self, all: bool) -> Result<()> {
        if let Some(c) = &mut self.compressor {
            c.write_all(&self.buf)
                .map_err(|e| compress_err(&self.key, e))?;
            self.buf.clear();
        }
        let ready = self.pending().len();
        if ready >= WRITE_CHUNK || (all && ready > 0) {
            let chunk = match &mut self.compressor {
                Some(c) => std::mem::take(c.get_mut()),
                None => std::mem::replace(
                    &mut self.buf,
                    Vec::with_capacity(WRITE_CHUNK + WRITE_CHUNK / 4),
                ),
            };
            self.bytes += chunk.len() as u64;
            self.writer.write(Bytes::from(chunk)).await?;
        }
        Ok(())
    }

    async fn write(&mut self, batch: &arrow_array::RecordBatch) -> Result<()> {
        self.encoder
            .as_mut()
            .expect("a batch part has an encoder")
            .encode(batch, &mut self.buf)?;
        self.rows += batch.num_rows() as u64;
        self.drain(false).await
    }

    async fn write_encoded(&mut self, chunk: EncodedChunk) -> Result<()> {
        self.rows += chunk.rows;
        if self.compressor.is_none() && self.buf.is_empty() {
            // Already whole rows in the right format: hand them on without a copy.
            self.bytes += chunk.bytes.len() as u64;
            return self.writer.write(chunk.bytes).await;
        }
        self.buf.extend_from_slice(&chunk.bytes);
        self.drain(false).await
    }

    async fn commit(mut self) -> Result<ObjectReport> {
        if let Some(enc) = self.encoder.as_mut() {
            enc.finish(&mut self.buf)?;
        }
        self.drain(false).await?;
        if let Some(c) = self.compressor.take() {
            let rest = c.finish().map_err(|e| compress_err(&self.key, e))?;
            self.buf = rest;
        }
        self.drain(true).await?;
        let receipt = self.writer.commit().await?;
        Ok(ObjectReport {
            key: receipt.key,
            rows: self.rows,
            bytes: receipt.bytes,
            sha256: receipt.sha256,
        })
    }
}

/// Whole-object compression of a part being written.
enum Compressor {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    #[cfg(feature = "zstd")]
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Compressor {
    fn new(c: Compression) -> std::io::Result<Option<Self>> {
        Ok(match c {
            Compression::None => None,
            Compression::Gzip => Some(Compressor::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::default(),
            ))),
            #[cfg(feature = "zstd")]
            Compression::Zstd(level) => Some(Compressor::Zstd(zstd::stream::write::Encoder::new(
                Vec::new(),
                level,
            )?)),
        })
    }

    fn get_ref(&self) -> &Vec<u8> {
        match self {
            Compressor::Gzip(g) => g.get_ref(),
            #[cfg(feature = "zstd")]
            Compressor::Zstd(z) => z.get_ref(),
        }
    }

    fn get_mut(&mut self) -> &mut Vec<u8> {
        match self {
            Compressor::Gzip(g) => g.get_mut(),
            #[cfg(feature = "zstd")]
            Compressor::Zstd(z) => z.get_mut(),
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Compressor::Gzip(g) => g.write_all(bytes),
            #[cfg(feature = "zstd")]
            Compressor::Zstd(z) => z.write_all(bytes),
        }
    }

    fn finish(self) -> std::io::Result<Vec<u8>> {
        match self {
            Compressor::Gzip(g) => g.finish(),
            #[cfg(feature = "zstd")]
            Compressor::Zstd(z) => z.finish(),
        }
    }
}

fn compress_err(key: &str, e: std::io::Error) -> Error {
    Error::Storage {
        component: "compression".into(),
        message: format!("compressing {key}: {e}"),
        retryable: false,
        source: Some(Box::new(e)),
    }
}

/// Mutable state of one attempt.
struct Attempt {
    version: Option<u64>,
    saved: Option<Checkpoint>,
    pending: Option<Checkpoint>,
    next_part: u32,
    /// Parts opened so far per source partition (see [`Batch::partition`]).
    partition_parts: std::collections::HashMap<u32, u32>,
    rows_extracted: u64,
}

/// The open parts: one per source partition (`None`: the unpartitioned stream).
type Parts = BTreeMap<Option<u32>, OpenPart>;

/// What is carried across attempts of one run.
#[derive(Clone)]
struct RunState {
    run_id: String,
    started_at: DateTime<Utc>,
    from: Option<Checkpoint>,
    objects: BTreeMap<String, ObjectReport>,
    validations: BTreeMap<String, ValidationOutcome>,
    checkpoint_to: Option<Checkpoint>,
    source_encoded: bool,
}

impl Pipeline {
    /// Start building a pipeline named `name` (the state store's key and `{pipeline}`).
    pub fn builder(name: impl Into<String>) -> PipelineBuilder {
        PipelineBuilder {
            name: name.into(),
            extractor: None,
            sink: None,
            format: Arc::new(Csv::default()),
            state: None,
            run_log: None,
            validators: Vec::new(),
            options: PipelineOptions::default(),
            progress: None,
            cancel: CancellationToken::new(),
        }
    }

    /// The pipeline's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The token that cancels this pipeline's runs.
    pub fn cancellation_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Run once: extract from the saved checkpoint to the end of the stream (or until
    /// cancelled), commit, save the checkpoint, write the manifest and the history row.
    ///
    /// Never panics on bad input; failures are in the report
    /// ([`RunReport::into_result`] turns them into an `Err`).
    pub async fn run(&self) -> RunReport {
        let started = Instant::now();
        let started_at = Utc::now();
        let run_id = self
            .options
            .run_id
            .clone()
            .unwrap_or_else(|| new_run_id(started_at));
        let mut run = RunState {
            run_id,
            started_at,
            from: None,
            objects: BTreeMap::new(),
            validations: BTreeMap::new(),
            checkpoint_to: None,
            source_encoded: false,
        };
        let mut attempts = 0;
        let result = loop {
            attempts += 1;
            let r = self.attempt(&mut run).await;
            match r {
                Err(e)
                    if e.is_retryable()
                        && attempts <= self.options.retries
                        && !self.cancel.is_cancelled() =>
                {
                    let wait = self.options.retry_backoff * 2u32.saturating_pow(attempts - 1);
                    tracing::warn!(pipeline = %self.name, run_id = %run.run_id, attempt = attempts, error = %e,
                        "run failed with a retryable error; retrying in {wait:?}");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.cancel.cancelled() => break Err(Error::Cancelled),
                    }
                }
                other => break other,
            }
        };
        let mut report = self.report(run, attempts, started, result);
        // The manifest describes the run as it ended, failures included.
        if let Err(e) = self.write_manifest(&mut report).await {
            report.warnings.push(format!("manifest not written: {e}"));
        }
        if let Some(log) = &self.run_log
            && let Err(e) = log.append(&report).await
        {
            tracing::warn!(pipeline = %self.name, error = %e, "run history row not written");
            report
                .warnings
                .push(format!("run history not written: {e}"));
        }
        match report.outcome {
            Outcome::Succeeded => tracing::info!(pipeline = %self.name, run_id = %report.run_id,
                rows = report.rows, bytes = report.bytes, objects = report.objects.len(), "run succeeded"),
            _ => tracing::error!(pipeline = %self.name, run_id = %report.run_id,
                error = report.error_message.as_deref().unwrap_or(""), "run {}", report.outcome.as_str()),
        }
        report
    }

    fn report(
        &self,
        run: RunState,
        attempts: u32,
        started: Instant,
        result: Result<()>,
    ) -> RunReport {
        let objects: Vec<ObjectReport> = run.objects.into_values().collect();
        let (outcome, error) = match result {
            Ok(()) => (Outcome::Succeeded, None),
            Err(Error::Cancelled) => (Outcome::Cancelled, Some(Error::Cancelled)),
            Err(e) => (Outcome::Failed, Some(e)),
        };
        RunReport {
            pipeline: self.name.clone(),
            run_id: run.run_id,
            source: self.extractor.source().to_string(),
            stream: self.extractor.stream().to_string(),
            sink: self.sink.describe(),
            format: self.format.extension().to_string(),
            started_at: run.started_at,
            finished_at: Utc::now(),
            duration: started.elapsed(),
            outcome,
            attempts,
            rows: objects.iter().map(|o| o.rows).sum(),
            bytes: objects.iter().map(|o| o.bytes).sum(),
            objects,
            checkpoint_to: run.checkpoint_to.or_else(|| run.from.clone()),
            checkpoint_from: run.from,
            manifest: None, // set by `write_manifest`
            validations: run.validations.into_values().collect(),
            error_message: error.as_ref().map(|e| e.to_string()),
            warnings: Vec::new(),
            source_encoded: run.source_encoded,
            error,
        }
    }

    fn key_vars<'a>(&'a self, run: &'a RunState, part: u32, ext: &'a str) -> KeyVars<'a> {
        KeyVars {
            prefix: &self.options.prefix,
            pipeline: &self.name,
            source: self.extractor.source(),
            stream: self.extractor.stream(),
            date: run.started_at.date_naive(),
            run_id: &run.run_id,
            part,
            ext,
        }
    }

    async fn write_manifest(&self, report: &mut RunReport) -> Result<()> {
        let Some(t) = &self.options.manifest_template else {
            return Ok(());
        };
        let vars = KeyVars {
            prefix: &self.options.prefix,
            pipeline: &self.name,
            source: &report.source,
            stream: &report.stream,
            date: report.started_at.date_naive(),
            run_id: &report.run_id,
            part: 0,
            ext: "json",
        };
        let key = t.render(&vars)?;
        report.manifest = Some(key.clone());
        let body = serde_json::to_vec_pretty(&*report).expect("report serializes");
        let mut w = self
            .sink
            .open(&ObjectTarget::new(key, "application/json"))
            .await?;
        w.write(Bytes::from(body)).await?;
        w.commit().await?;
        Ok(())
    }

    /// Save the pending checkpoint if it moved. Called only right after a commit, so
    /// every batch up to it is in a committed object.
    async fn save_checkpoint(&self, run: &mut RunState, a: &mut Attempt) -> Result<()> {
        let Some(cp) = &a.pending else {
            return Ok(());
        };
        if a.saved.as_ref() == Some(cp) {
            return Ok(());
        }
        if let Some(state) = &self.state {
            let value = PipelineState {
                checkpoint: cp.clone(),
                run_id: run.run_id.clone(),
                next_part: a.next_part,
                updated_at: Utc::now(),
            };
            a.version = Some(state.save(&self.name, a.version, &value).await?);
            tracing::debug!(pipeline = %self.name, checkpoint = ?cp, "checkpoint saved");
        }
        a.saved = Some(cp.clone());
        run.checkpoint_to = Some(cp.clone());
        Ok(())
    }

    /// Open the next part. Parts of partition `p` are numbered `p * 10_000 + k`, so
    /// keys do not depend on how partitions interleave.
    async fn open_part(
        &self,
        run: &RunState,
        a: &mut Attempt,
        schema: Option<&SchemaRef>,
        partition: Option<u32>,
    ) -> Result<OpenPart> {
        let ext = format!(
            "{}{}",
            self.format.extension(),
            self.options.compression.suffix()
        );
        let number = match partition {
            None => a.next_part,
            Some(p) => p * 10_000 + a.partition_parts.get(&p).copied().unwrap_or(0),
        };
        let key = self
            .options
            .key_template
            .render(&self.key_vars(run, number, &ext))?;
        let mut encoder = schema.map(|s| self.format.encoder(s)).transpose()?;
        let content_type = match self.options.compression {
            Compression::Gzip => "application/gzip",
            #[cfg(feature = "zstd")]
            Compression::Zstd(_) => "application/zstd",
            Compression::None => self.format.content_type(),
        };
        let writer = self
            .sink
            .open(&ObjectTarget::new(key.clone(), content_type))
            .await?;
        match partition {
            None => a.next_part += 1,
            Some(p) => *a.partition_parts.entry(p).or_insert(0) += 1,
        }
        let mut buf = Vec::with_capacity(WRITE_CHUNK + WRITE_CHUNK / 4);
        if let Some(enc) = encoder.as_mut() {
            enc.begin(&mut buf)?;
        }
        let compressor =
            Compressor::new(self.options.compression).map_err(|e| compress_err(&key, e))?;
        Ok(OpenPart {
            writer,
            encoder,
            schema: schema.cloned(),
            key,
            buf,
            compressor,
            rows: 0,
            bytes: 0,
        })
    }

    /// Commit a part; then, if no other part is open (`others_open` false), save the
    /// pending checkpoint: every batch up to it is now in a committed object.
    async fn commit_part(
        &self,
        part: OpenPart,
        run: &mut RunState,
        a: &mut Attempt,
        others_open: bool,
    ) -> Result<()> {
        let obj = part.commit().await?;
        tracing::info!(pipeline = %self.name, key = %obj.key, rows = obj.rows, bytes = obj.bytes, "object committed");
        run.objects.insert(obj.key.clone(), obj);
        let before = a.saved.clone();
        if !others_open {
            self.save_checkpoint(run, a).await?;
        }
        self.report_progress(run, a);
        if a.saved != before && self.options.commit_interval.is_some() {
            // Keep the manifest current for long-running streams.
            let mut snapshot = self.report(run.clone(), 1, Instant::now(), Ok(()));
            snapshot.outcome = Outcome::Succeeded;
            if let Err(e) = self.write_manifest(&mut snapshot).await {
                tracing::warn!(pipeline = %self.name, error = %e, "manifest not updated");
            }
        }
        Ok(())
    }

    fn report_progress(&self, run: &RunState, a: &Attempt) {
        if let Some(f) = &self.progress {
            f(&Progress {
                rows_extracted: a.rows_extracted,
                rows_committed: run.objects.values().map(|o| o.rows).sum(),
                bytes_committed: run.objects.values().map(|o| o.bytes).sum(),
                objects_committed: run.objects.len() as u64,
            });
        }
    }

    fn validate(&self, run: &mut RunState, batch: &Batch) -> Result<()> {
        for v in &self.validators {
            let started = Utc::now();
            let t = Instant::now();
            let problem = v.check(&batch.records)?;
            let entry = run
                .validations
                .entry(v.name().to_string())
                .or_insert_with(|| ValidationOutcome {
                    name: v.name().to_string(),
                    passed: true,
                    severity: v.severity(),
                    left: None,
                    right: None,
                    operator: None,
                    script_1: None,
                    script_2: None,
                    message: "passed".into(),
                    started_at: started,
                    duration: Duration::ZERO,
                });
            entry.duration += t.elapsed();
            if let Some(problem) = problem {
                if entry.passed {
                    entry.passed = false;
                    entry.message = problem.clone();
                }
                match v.severity() {
                    Severity::Halt => {
                        return Err(Error::Validation {
                            name: v.name().to_string(),
                            message: problem,
                        });
                    }
                    Severity::Warn => {
                        tracing::warn!(pipeline = %self.name, validator = v.name(), %problem, "validation warning")
                    }
                }
            }
        }
        Ok(())
    }

    async fn attempt(&self, run: &mut RunState) -> Result<()> {
        self.sink.check().await?;
        let loaded = match &self.state {
            Some(s) => s.load(&self.name).await?,
            None => None,
        };
        let mut a = Attempt {
            version: loaded.as_ref().map(|v| v.version),
            saved: loaded.as_ref().map(|v| v.value.checkpoint.clone()),
            pending: None,
            // Continue a run's numbering if its own checkpoint is what we resume from.
            next_part: loaded
                .as_ref()
                .filter(|v| v.value.run_id == run.run_id)
                .map_or(0, |v| v.value.next_part),
            partition_parts: std::collections::HashMap::new(),
            rows_extracted: 0,
        };
        let from = self.options.start_from.clone().or_else(|| a.saved.clone());
        if run.from.is_none() && run.objects.is_empty() {
            run.from = from.clone();
        }
        a.pending = from.clone();
        // The source may encode the format itself (PostgreSQL's COPY for CSV), when no
        // batch check needs the rows.
        let encoded = if self.validators.is_empty() && self.options.encoded_path {
            self.extractor
                .extract_encoded(from.clone(), self.format.as_ref())
                .await?
        } else {
            None
        };
        let stream: futures::stream::BoxStream<'static, Result<Item>> = match encoded {
            Some(chunks) => {
                tracing::info!(pipeline = %self.name, "the source encodes the output itself");
                run.source_encoded = true;
                chunks.map(|c| c.map(Item::Encoded)).boxed()
            }
            None => self
                .extractor
                .extract(from)
                .await?
                .map(|b| b.map(Item::Batch))
                .boxed(),
        };

        // Extraction runs ahead in its own task, at most `channel_capacity` items ahead.
        let (tx, mut rx) =
            tokio::sync::mpsc::channel::<Result<Item>>(self.options.channel_capacity);
        let producer = tokio::spawn(async move {
            let mut stream = stream;
            while let Some(item) = stream.next().await {
                let stop = item.is_err();
                if tx.send(item).await.is_err() || stop {
                    break;
                }
            }
        });
        let _abort_producer = AbortOnDrop(producer);

        let mut parts = Parts::new();
        let result = self.consume(run, &mut a, &mut rx, &mut parts).await;
        if let Err(e) = result {
            for p in std::mem::take(&mut parts).into_values() {
                if let Err(abort_err) = p.writer.abort().await {
                    tracing::warn!(pipeline = %self.name, key = %p.key, error = %abort_err, "abort failed");
                }
            }
            return Err(e);
        }
        self.commit_all(&mut parts, run, &mut a).await
    }

    /// Commit every open part, then save the checkpoint (also when there was no part:
    /// the position may have moved without rows, e.g. CDC events of other tables).
    async fn commit_all(
        &self,
        parts: &mut Parts,
        run: &mut RunState,
        a: &mut Attempt,
    ) -> Result<()> {
        while let Some((_, p)) = parts.pop_first() {
            let others = !parts.is_empty();
            self.commit_part(p, run, a, others).await?;
        }
        self.save_checkpoint(run, a).await
    }

    async fn consume(
        &self,
        run: &mut RunState,
        a: &mut Attempt,
        rx: &mut tokio::sync::mpsc::Receiver<Result<Item>>,
        parts: &mut Parts,
    ) -> Result<()> {
        let interval = self.options.commit_interval;
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let wait_deadline = deadline;
            let item = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Err(Error::Cancelled),
                _ = async { tokio::time::sleep_until(wait_deadline.expect("guarded")).await }, if wait_deadline.is_some() => {
                    self.commit_all(parts, run, a).await?;
                    deadline = None;
                    continue;
                }
                item = rx.recv() => item,
            };
            let (slot, checkpoint) = match item {
                None => return Ok(()),
                Some(Err(e)) => return Err(e),
                Some(Ok(Item::Batch(batch))) => {
                    let slot = batch.partition;
                    a.rows_extracted += batch.num_rows() as u64;
                    self.validate(run, &batch)?;
                    if batch.num_rows() > 0 {
                        // A schema change (a new column in a REST source, a DDL in CDC)
                        // starts a new part: every object has one schema and one header.
                        let schema = batch.records.schema();
                        if parts
                            .get(&slot)
                            .is_some_and(|p| p.schema.as_ref() != Some(&schema))
                        {
                            let p = parts.remove(&slot).expect("checked");
                            let others = !parts.is_empty();
                            self.commit_part(p, run, a, others).await?;
                        }
                        if let std::collections::btree_map::Entry::Vacant(slot_entry) =
                            parts.entry(slot)
                        {
                            slot_entry.insert(self.open_part(run, a, Some(&schema), slot).await?);
                            deadline = deadline
                                .or_else(|| interval.map(|i| tokio::time::Instant::now() + i));
                        }
                        parts
                            .get_mut(&slot)
                            .expect("opened above")
                            .write(&batch.records)
                            .await?;
                    }
                    (slot, batch.checkpoint)
                }
                Some(Ok(Item::Encoded(chunk))) => {
                    let checkpoint = chunk.checkpoint.clone();
                    a.rows_extracted += chunk.rows;
                    if !chunk.bytes.is_empty() {
                        if let std::collections::btree_map::Entry::Vacant(slot_entry) =
                            parts.entry(None)
                        {
                            slot_entry.insert(self.open_part(run, a, None, None).await?);
                            deadline = deadline
                                .or_else(|| interval.map(|i| tokio::time::Instant::now() + i));
                        }
                        parts
                            .get_mut(&None)
                            .expect("opened above")
                            .write_encoded(chunk)
                            .await?;
                    }
                    (None, checkpoint)
                }
            };
            if let Some(cp) = checkpoint {
                a.pending = Some(cp);
            }
            let full = parts.get(&slot).is_some_and(|p| {
                self.options.part_max_rows.is_some_and(|m| p.rows >= m)
                    || self.options.part_max_bytes.is_some_and(|m| p.size() >= m)
            });
            if full {
                let p = parts.remove(&slot).expect("checked");
                let others = !parts.is_empty();
                self.commit_part(p, run, a, others).await?;
                if parts.is_empty() {
                    deadline = None;
                }
            } else if parts.is_empty() && deadline.is_none() && a.pending != a.saved {
                // The position moved without rows: save it on the interval too.
                deadline = interval.map(|i| tokio::time::Instant::now() + i);
            }
            self.report_progress(run, a);
        }
    }
}

/// What flows from the extraction task to the writer.
enum Item {
    Batch(Batch),
    Encoded(EncodedChunk),
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn new_run_id(at: DateTime<Utc>) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    // Unique across processes (pid, clock) and within one (counter); no RNG needed.
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let seed = format!(
        "{}-{}-{}",
        std::process::id(),
        at.timestamp_nanos_opt().unwrap_or_default(),
        n
    );
    let h = crate::util::sha256_hex(seed.as_bytes());
    format!("{}-{}", at.format("%Y%m%dT%H%M%SZ"), &h[..8])
}
