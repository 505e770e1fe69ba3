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
//! ## The commit sequence
//! Each step (a part closed, or every open part on the commit interval):
//! 1. **intent**: the state store saves, beside the last checkpoint, the keys of the
//!    objects about to be committed and the manifest that will list them
//!    ([`PipelineState::leftover`](crate::stores::PipelineState::leftover));
//! 2. the objects are committed (on a local folder fsynced and renamed into place; this
//!    runs in the background while the next part is written);
//! 3. the run's manifest is rewritten listing every object so far (outcome `running`;
//!    an unbounded stream writes an epoch manifest of the objects since the last one);
//! 4. the checkpoint is saved, and the intent with it cleared;
//! 5. the checkpoint is acknowledged to the source.
//!
//! A kill between any two steps loses nothing and leaves no object that a reader would
//! count twice. Before step 4, the next run first removes what the intent lists
//! ([`BatchSink::discard`]: the manifest entries, then the objects) and reads those rows
//! again from the saved checkpoint; after it, the manifest already lists them. So after
//! any crash and the next run, every data object is listed in exactly one manifest, and
//! a reader of the folder (Athena, Spark, `pyarrow.dataset`, Redshift `COPY` from a
//! prefix) sees what a reader of the manifests sees. A run that fails or is cancelled
//! removes its own objects past the checkpoint at once. Duplicates remain only where the
//! source re-sends rows after the checkpoint (a part closed mid-batch carries the
//! checkpoint of the batch before), and on a sink that cannot remove what it committed
//! (a topic, whose [`SinkCapabilities`](crate::SinkCapabilities) say so). The final
//! manifest (outcome `succeeded`, `failed` or `cancelled`) is written at the end of the
//! run.

mod committer;
mod ledger;
mod options;
mod part;
mod report;
mod run;
mod run_loop;
mod signals;

pub use crate::traits::ObjectReport;
pub use options::{OnSchemaChange, PipelineOptions};
pub use report::{FailurePoint, Manifest, Outcome, Progress, RunLog, RunReport};

use crate::format::{Csv, Format};
use crate::stores::{ObjectBatchSink, StateStore};
use crate::{
    BatchSink, BatchValidator, Checkpoint, Error, ExtractContext, Extractor, Result, Sink,
};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Builds a [`Pipeline`].
pub struct PipelineBuilder {
    name: String,
    extractor: Option<Arc<dyn Extractor>>,
    sink: Option<Arc<dyn Sink>>,
    batch_sink: Option<Arc<dyn BatchSink>>,
    format: Arc<dyn Format>,
    /// Whether [`PipelineBuilder::format`] was called (it means nothing to a batch sink).
    format_set: bool,
    state: Option<Arc<dyn StateStore>>,
    run_log: Option<Arc<dyn RunLog>>,
    validators: Vec<Arc<dyn BatchValidator>>,
    options: PipelineOptions,
    progress: Option<ProgressFn>,
    cancel: CancellationToken,
    stop: CancellationToken,
}

impl PipelineBuilder {
    /// The source.
    pub fn extractor(mut self, e: impl Extractor) -> Self {
        self.extractor = Some(Arc::new(e));
        self
    }

    /// Where objects land: batches are encoded in the [`format`](Self::format) and keyed
    /// with the default layout (an [`ObjectBatchSink`] on `s`). For a prefix, other key
    /// or manifest templates or compression, give
    /// [`batch_sink`](Self::batch_sink)`(ObjectBatchSink::new(s, format).with_*(...))`.
    pub fn sink(mut self, s: impl Sink) -> Self {
        self.sink = Some(Arc::new(s));
        self
    }

    /// Where rows land, for a sink that takes Arrow batches itself (a warehouse loader,
    /// a topic, an [`ObjectBatchSink`] with its own layout), instead of
    /// [`sink`](Self::sink). The format is then the sink's own business:
    /// [`build`](Self::build) refuses a [`format`](Self::format) beside it.
    pub fn batch_sink(mut self, s: impl BatchSink) -> Self {
        self.batch_sink = Some(Arc::new(s));
        self
    }

    /// The file format of a [`sink`](Self::sink) (default: [`Csv`] in the book's dialect).
    pub fn format(mut self, f: impl Format) -> Self {
        self.format = Arc::new(f);
        self.format_set = true;
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

    /// A token that ends the run gracefully ([`Pipeline::stop_token`]); by default the
    /// pipeline makes its own.
    pub fn stop(mut self, token: CancellationToken) -> Self {
        self.stop = token;
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
        let sink: Arc<dyn BatchSink> = match (self.sink, self.batch_sink) {
            (Some(_), Some(_)) => {
                return Err(Error::config(
                    "pipeline",
                    "both .sink(...) and .batch_sink(...) given: choose one",
                ));
            }
            (None, None) => {
                return Err(Error::config("pipeline", "no sink: call .sink(...)"));
            }
            (None, Some(b)) => {
                if self.format_set {
                    return Err(Error::config(
                        "pipeline",
                        "PipelineBuilder::format applies to objects written through \
                         .sink(...); a .batch_sink(...) encodes its own output, so give the \
                         format to the sink itself (ObjectBatchSink::new(sink, format))",
                    ));
                }
                b
            }
            (Some(s), None) => Arc::new(ObjectBatchSink::from_parts(s, self.format)),
        };
        if self.options.exactly_once
            && let Some(why) = not_exactly_once(&*sink, self.state.is_some(), &self.options)
        {
            return Err(Error::config(
                "pipeline",
                format!("exactly-once delivery cannot be promised: {why}"),
            ));
        }
        if !extractor.capabilities().bounded && self.options.commit_interval.is_none() {
            return Err(Error::config(
                "pipeline",
                format!(
                    "{}/{} is an unbounded stream: set a commit interval \
                     (PipelineOptions::with_commit_interval, or commit_interval in \
                     pipeline.conf), or nothing would ever be committed",
                    extractor.source(),
                    extractor.stream()
                ),
            ));
        }
        Ok(Pipeline {
            meter: crate::metrics::Meter::new(&self.name, extractor.source(), extractor.stream()),
            name: self.name,
            extractor,
            sink,
            state: self.state,
            run_log: self.run_log,
            validators: self.validators,
            options: self.options,
            progress: self.progress,
            cancel: self.cancel,
            stop: self.stop,
        })
    }
}

/// Why `sink` (with or without a state store) cannot deliver every row exactly once.
fn not_exactly_once(sink: &dyn BatchSink, state: bool, o: &PipelineOptions) -> Option<String> {
    let caps = sink.capabilities();
    let sink = sink.describe();
    if o.start_from.is_some() {
        Some(
            "with_start_from reads again from a given position, so rows after it that \
             landed before land again"
                .into(),
        )
    } else if caps.transactional_checkpoint {
        None
    } else if !caps.atomic_visibility {
        Some(format!(
            "{sink} shows what it writes before the commit (a sent message cannot be taken \
             back), so the rows of a failed step are seen and then sent again"
        ))
    } else if !caps.discard {
        Some(format!(
            "{sink} cannot remove what a stopped run committed past its checkpoint, so \
             those rows would land twice"
        ))
    } else if !state {
        Some(
            "there is no state store, so every run starts from the beginning and lands \
             every row again: give .state(...), or use a sink that stores the checkpoint \
             with its data"
                .into(),
        )
    } else {
        None
    }
}

/// What [`Pipeline::dry_run`] found.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct DryRun {
    /// Where the run would start.
    pub from: Option<Checkpoint>,
    /// What it would read, if the source can say.
    pub plan: Option<crate::Plan>,
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
    sink: Arc<dyn BatchSink>,
    state: Option<Arc<dyn StateStore>>,
    run_log: Option<Arc<dyn RunLog>>,
    validators: Vec<Arc<dyn BatchValidator>>,
    options: PipelineOptions,
    progress: Option<ProgressFn>,
    cancel: CancellationToken,
    /// Ends the run gracefully: handed to the extractor ([`ExtractContext::stop`]).
    stop: CancellationToken,
    /// Labels of this pipeline's metrics.
    meter: crate::metrics::Meter,
}

impl Pipeline {
    /// Start building a pipeline named `name` (the state store's key and `{pipeline}`).
    pub fn builder(name: impl Into<String>) -> PipelineBuilder {
        PipelineBuilder {
            name: name.into(),
            extractor: None,
            sink: None,
            batch_sink: None,
            format: Arc::new(Csv::default()),
            format_set: false,
            state: None,
            run_log: None,
            validators: Vec::new(),
            options: PipelineOptions::default(),
            progress: None,
            cancel: CancellationToken::new(),
            stop: CancellationToken::new(),
        }
    }

    /// The pipeline's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Check, moving no data, that the source, the sink and the state store are
    /// reachable and usable: [`Extractor::check`], [`BatchSink::check`] and a read of the
    /// saved state. The first failure is returned.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// use tributary::{Pipeline, sources::MemoryExtractor, stores::{ObjectSink, ObjectStateStore}};
    /// let sink = ObjectSink::memory();
    /// let p = Pipeline::builder("demo")
    ///     .extractor(MemoryExtractor::new("m", "s", vec![]))
    ///     .sink(sink.clone())
    ///     .state(ObjectStateStore::new(sink, "_state"))
    ///     .build()?;
    /// p.check().await?;
    /// assert!(p.checkpoint().await?.is_none()); // never run
    /// p.reset().await?; // nothing to forget
    /// # Ok::<(), tributary::Error>(()) }).unwrap();
    /// ```
    pub async fn check(&self) -> Result<()> {
        self.extractor.check().await?;
        self.sink.check().await?;
        self.checkpoint().await?;
        Ok(())
    }

    /// What the next run would read, reading no row: where it would start (the saved
    /// checkpoint, or [`PipelineOptions::with_start_from`]) and the extractor's
    /// [`Plan`](crate::Plan) from there (for SQL sources the query, its bound values and
    /// an estimate of its rows), `None` when the source cannot say.
    pub async fn dry_run(&self) -> Result<DryRun> {
        let loaded = self.checkpoint().await?;
        let from = self
            .options
            .start_from
            .clone()
            .or_else(|| loaded.and_then(|v| v.checkpoint));
        let plan = if self.extractor.capabilities().plans {
            self.extractor
                .plan(&ExtractContext::from_checkpoint(from.clone()))
                .await?
        } else {
            None
        };
        Ok(DryRun { from, plan })
    }

    /// The state the next run starts from (checkpoint, run, schemas), if any was saved:
    /// the sink's own, for a sink that stores it with its data, else the state store's.
    pub async fn checkpoint(&self) -> Result<Option<crate::stores::PipelineState>> {
        if self.sink.capabilities().transactional_checkpoint
            && let Some(state) = self.sink.load_state(&self.name).await?
        {
            return Ok(Some(state));
        }
        match &self.state {
            Some(s) => Ok(s.load(&self.name).await?.map(|v| v.value)),
            None => Ok(None),
        }
    }

    /// Forget the saved state ([`StateStore::delete`], and [`BatchSink::delete_state`] on a
    /// sink that stores it with its data), so that the next run starts from
    /// the beginning (or from [`PipelineOptions::with_start_from`]). Objects landed up to
    /// the checkpoint stay where they are; those a stopped run committed past it are
    /// removed, as the next run would have. Not while a run of this pipeline is going.
    pub async fn reset(&self) -> Result<()> {
        if self.sink.capabilities().transactional_checkpoint {
            self.sink.delete_state(&self.name).await?;
        }
        let Some(store) = &self.state else {
            return Ok(());
        };
        // What a killed run committed past its checkpoint is removed first: forgotten
        // with the state, it would stay at its final key, listed in a manifest, for good.
        if let Some(saved) = store.load(&self.name).await?
            && !saved.value.leftover.is_empty()
            && self.sink.capabilities().discard
        {
            self.sink.discard(&saved.value.leftover).await?;
        }
        store.delete(&self.name).await
    }

    /// The token that cancels this pipeline's runs.
    pub fn cancellation_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// The token that ends this pipeline's runs gracefully, the one way every stream
    /// stops: it is handed to the extractor ([`ExtractContext::stop`]). A stream that
    /// declares [`ExtractorCapabilities::graceful_stop`](crate::ExtractorCapabilities::graceful_stop) (binlog and WAL CDC, Kafka)
    /// finishes the transaction it is in and ends; the pipeline commits everything read,
    /// saves the checkpoint and the run succeeds. For any other source a stop cancels the
    /// run (as [`cancellation_token`](Self::cancellation_token) does): a table read
    /// halfway is not a consistent point to stop at.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
    /// use tributary::{Pipeline, PipelineOptions, sources::MemoryChangeStream, stores::ObjectSink};
    /// let p = Pipeline::builder("follow")
    ///     .extractor(MemoryChangeStream::new("m", "changes", vec![]))
    ///     .sink(ObjectSink::memory())
    ///     .options(PipelineOptions::new().with_commit_interval(std::time::Duration::from_millis(50)))
    ///     .build()?;
    /// p.stop_token().cancel(); // e.g. from a signal handler: see stop_on_signals
    /// let report = p.run().await.into_result()?; // ends at once, and succeeds
    /// assert_eq!(report.rows, 0);
    /// # Ok::<(), tributary::Error>(()) }).unwrap();
    /// ```
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Stop this pipeline's runs gracefully on Ctrl-C (SIGINT) or SIGTERM, as a
    /// scheduler or `kill` sends them: see [`stop_token`](Self::stop_token). Call it
    /// inside a Tokio runtime, before [`Pipeline::run`]; the listener ends with the token.
    ///
    /// ```no_run
    /// # async fn f(pipeline: tributary::Pipeline) -> tributary::Result<()> {
    /// pipeline.stop_on_signals();
    /// let report = pipeline.run().await.into_result()?; // Ok after a signal, for CDC
    /// # Ok(()) }
    /// ```
    pub fn stop_on_signals(&self) {
        on_signal(self.stop.clone(), &self.name, "stopping the run gracefully");
    }

    /// Cancel this pipeline's run on Ctrl-C (SIGINT) or SIGTERM instead of dying with
    /// no record: the open part is aborted, the run is recorded as `cancelled` in its
    /// manifest and run history, and [`RunReport::into_result`] is [`Error::Cancelled`].
    /// Call it inside a Tokio runtime, before [`Pipeline::run`]. To commit what was read
    /// instead, use [`stop_on_signals`](Self::stop_on_signals).
    ///
    /// ```no_run
    /// # async fn f(pipeline: tributary::Pipeline) -> tributary::Result<()> {
    /// pipeline.cancel_on_signals();
    /// let report = pipeline.run().await.into_result()?; // Err(Cancelled) after a signal
    /// # Ok(()) }
    /// ```
    pub fn cancel_on_signals(&self) {
        on_signal(self.cancel.clone(), &self.name, "cancelling the run");
    }
}

/// Cancel `token` on the first SIGINT or SIGTERM; the listener ends with the token.
fn on_signal(token: CancellationToken, pipeline: &str, what: &'static str) {
    let name = pipeline.to_string();
    tokio::spawn(async move {
        let which = tokio::select! {
            s = signals::shutdown() => s,
            _ = token.cancelled() => return,
        };
        tracing::warn!(pipeline = %name, signal = which, "signal received; {what}");
        token.cancel();
    });
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("name", &self.name)
            .field("extractor", &self.extractor)
            .field("sink", &self.sink)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}
