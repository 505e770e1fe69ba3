use super::ack::Extraction;
use crate::format::Format;
use crate::model::EncodedStream;
use crate::{Batch, BatchStream, Checkpoint, Result};
use arrow_schema::SchemaRef;
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::fmt::Debug;
use tokio_util::sync::CancellationToken;

/// What an extraction would read ([`Extractor::plan`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Plan {
    /// What would run: the SQL query, the request, the collection filter.
    pub query: String,
    /// The values bound to its placeholders, as text.
    pub binds: Vec<String>,
    /// How many rows the source expects it to return (an estimate where the server
    /// gives one, e.g. PostgreSQL's and MySQL's `EXPLAIN`; exact for SQLite).
    pub estimated_rows: Option<u64>,
}

impl Plan {
    /// A plan running `query` with `binds`, of about `estimated_rows` rows.
    pub fn new(query: impl Into<String>, binds: Vec<String>, estimated_rows: Option<u64>) -> Self {
        Plan {
            query: query.into(),
            binds,
            estimated_rows,
        }
    }
}

/// What the pipeline hands an extractor when it opens it ([`Extractor::open`]): where to
/// start, the schemas saved with that point, and the token that asks the stream to end.
///
/// A log reader needs the schemas: rows written before a DDL that is still ahead in
/// the log must be decoded with the columns they were written with, not today's.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ExtractContext {
    /// The saved checkpoint to start after (`None`: from the beginning).
    pub checkpoint: Option<Checkpoint>,
    /// Table → the schema of the rows of that table last committed before `checkpoint`
    /// (as the pipeline landed them, change columns included).
    pub schemas: BTreeMap<String, SchemaRef>,
    /// Cancelled when the stream should end gracefully
    /// ([`Pipeline::stop_token`](crate::Pipeline::stop_token)). An extractor that declares
    /// [`ExtractorCapabilities::graceful_stop`] then finishes the transaction it is in,
    /// hands on everything up to its end with its checkpoint and ends the stream, so the
    /// pipeline commits it all and the run succeeds.
    pub stop: CancellationToken,
}

impl ExtractContext {
    /// Start from the beginning, knowing no schemas, never asked to stop.
    pub fn new() -> Self {
        Self::default()
    }

    /// Start after `checkpoint` (from the beginning when `None`).
    pub fn from_checkpoint(checkpoint: Option<Checkpoint>) -> Self {
        ExtractContext {
            checkpoint,
            ..Self::default()
        }
    }

    /// The schemas saved with the checkpoint.
    pub fn with_schemas(mut self, schemas: BTreeMap<String, SchemaRef>) -> Self {
        self.schemas = schemas;
        self
    }

    /// The token that ends the stream gracefully.
    pub fn with_stop(mut self, stop: CancellationToken) -> Self {
        self.stop = stop;
        self
    }
}

/// What an [`Extractor`] can do, declared rather than implied: the pipeline decides on
/// these (an unbounded stream needs a commit interval; a source that encodes for itself
/// is asked to; a stop request goes to a stream that can honour it, and otherwise
/// cancels the run), and [`testing::extractor_suite`](crate::testing::extractor_suite)
/// checks what is declared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExtractorCapabilities {
    /// The stream ends by itself (a table, a page cursor) rather than running until
    /// stopped (a change log, a topic).
    pub bounded: bool,
    /// The source keeps a position of its own (a replication slot, a consumer group)
    /// that it advances when told a checkpoint is durable (the [`Extraction`]'s
    /// [`Acker`](crate::Acker)).
    pub acknowledges: bool,
    /// [`Extractor::open_encoded`] can return the output's bytes for some format.
    pub encodes: bool,
    /// [`Extractor::plan`] can say what a run would read.
    pub plans: bool,
    /// The stream ends at a consistent point when [`ExtractContext::stop`] is cancelled,
    /// every batch up to it carrying its checkpoint.
    pub graceful_stop: bool,
}

impl Default for ExtractorCapabilities {
    fn default() -> Self {
        Self::bounded()
    }
}

impl ExtractorCapabilities {
    /// A stream that ends by itself, with no other capability.
    pub fn bounded() -> Self {
        ExtractorCapabilities {
            bounded: true,
            acknowledges: false,
            encodes: false,
            plans: false,
            graceful_stop: false,
        }
    }

    /// A stream that runs until stopped, with no other capability.
    pub fn unbounded() -> Self {
        Self::bounded().with_bounded(false)
    }

    /// See [`ExtractorCapabilities::bounded`](#structfield.bounded).
    pub fn with_bounded(mut self, yes: bool) -> Self {
        self.bounded = yes;
        self
    }

    /// See [`ExtractorCapabilities::acknowledges`].
    pub fn with_acknowledges(mut self, yes: bool) -> Self {
        self.acknowledges = yes;
        self
    }

    /// See [`ExtractorCapabilities::encodes`].
    pub fn with_encodes(mut self, yes: bool) -> Self {
        self.encodes = yes;
        self
    }

    /// See [`ExtractorCapabilities::plans`].
    pub fn with_plans(mut self, yes: bool) -> Self {
        self.plans = yes;
        self
    }

    /// See [`ExtractorCapabilities::graceful_stop`].
    pub fn with_graceful_stop(mut self, yes: bool) -> Self {
        self.graceful_stop = yes;
        self
    }
}

/// A source of rows: a table, a change log, an API.
///
/// One entry point, [`open`](Self::open), takes an [`ExtractContext`] (where to start,
/// the saved schemas, the stop token) and returns the batches with the
/// [`Acker`](crate::Acker) to tell when a checkpoint is durable. What else the source
/// can do is declared in [`capabilities`](Self::capabilities). The conveniences
/// ([`ExtractorExt::extract`], [`ExtractorExt::collect`]) are in [`ExtractorExt`],
/// implemented for every extractor.
///
/// Implementations are cheap to share (`Send + Sync + 'static`) and usable as
/// `Arc<dyn Extractor>`. Errors that can be known before the first row (bad
/// configuration, unreachable server, missing table) are returned by `open` itself,
/// not from inside the stream. A checkpoint of a kind the extractor does not read (a
/// watermark handed to a log reader) is an [`Error::Config`](crate::Error::Config), not
/// a panic.
///
/// ```
/// use std::sync::Arc;
/// use arrow_array::{Int64Array, RecordBatch};
/// use arrow_schema::{DataType, Field, Schema};
/// use async_trait::async_trait;
/// use futures::StreamExt;
/// use tributary::{Batch, Checkpoint, CursorValue, ExtractContext, Extraction, Extractor,
///     ExtractorExt, Result, Watermark};
///
/// /// Counts from the last checkpoint to 10, five numbers per batch.
/// #[derive(Debug)]
/// struct Counter;
///
/// #[async_trait]
/// impl Extractor for Counter {
///     fn source(&self) -> &str { "counter" }
///     fn stream(&self) -> &str { "numbers" }
///     async fn open(&self, cx: ExtractContext) -> Result<Extraction> {
///         let start = match cx.checkpoint {
///             Some(Checkpoint::Watermark(w)) => match w.cursor { CursorValue::Int(n) => n + 1, _ => 0 },
///             _ => 0,
///         };
///         let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
///         let batches: Vec<Result<Batch>> = (start..10).collect::<Vec<_>>().chunks(5).map(|c| {
///             let rb = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(c.to_vec()))]).unwrap();
///             let last = *c.last().unwrap();
///             Ok(Batch::new(rb).with_checkpoint(Checkpoint::Watermark(Watermark::new(CursorValue::Int(last)))))
///         }).collect();
///         Ok(Extraction::new(futures::stream::iter(batches).boxed()))
///     }
/// }
///
/// # tokio_test_block_on(async {
/// let from = Some(Checkpoint::Watermark(Watermark::new(CursorValue::Int(4))));
/// let batches = Counter.collect(from).await?;
/// assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 5); // 5..=9
/// assert!(Counter.capabilities().bounded);
/// # Ok::<(), tributary::Error>(()) });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
/// # }
/// ```
#[async_trait]
pub trait Extractor: Debug + Send + Sync + 'static {
    /// The source system's short name (`sqlite`, `postgres`, `mysql`, ...), used in object keys.
    fn source(&self) -> &str;

    /// The stream's name (usually the table), used in object keys.
    fn stream(&self) -> &str;

    /// What the extractor can do. Default: [`ExtractorCapabilities::bounded`], nothing
    /// else. An unbounded extractor needs a commit interval
    /// ([`PipelineOptions::with_commit_interval`](crate::PipelineOptions::with_commit_interval)),
    /// or nothing would ever be committed; [`PipelineBuilder::build`](crate::PipelineBuilder::build)
    /// refuses one without.
    fn capabilities(&self) -> ExtractorCapabilities {
        ExtractorCapabilities::bounded()
    }

    /// Check that the source is reachable and set up as this extractor needs.
    ///
    /// The default does nothing; connectors override it to connect and check their
    /// prerequisites without reading data.
    async fn check(&self) -> Result<()> {
        Ok(())
    }

    /// Start extracting after `cx.checkpoint`, knowing the schemas saved with it, and
    /// return the batches with the [`Acker`](crate::Acker) to tell when a checkpoint is
    /// durable ([`Extraction::new`] for a source that keeps no position of its own).
    async fn open(&self, cx: ExtractContext) -> Result<Extraction>;

    /// What an extraction from `cx` would read, reading no row: for SQL sources the
    /// query and the server's estimate of its rows. `Ok(None)` (the default) when the
    /// source cannot say. See [`Pipeline::dry_run`](crate::Pipeline::dry_run).
    async fn plan(&self, _cx: &ExtractContext) -> Result<Option<Plan>> {
        Ok(None)
    }

    /// A fast path: the source encodes `format` itself (PostgreSQL's `COPY ... TO STDOUT`
    /// for CSV), producing exactly the bytes the pipeline would write from
    /// [`open`](Self::open)'s batches. `Ok(None)` (the default) when the source cannot
    /// for this format or this extraction; the pipeline then calls `open`. Only asked of
    /// an extractor whose capabilities declare [`encodes`](ExtractorCapabilities::encodes).
    async fn open_encoded(
        &self,
        _cx: ExtractContext,
        _format: &dyn Format,
    ) -> Result<Option<EncodedStream>> {
        Ok(None)
    }
}

super::forward::forward_impls!(Extractor {
    fn source(&self) -> &str;
    fn stream(&self) -> &str;
    fn capabilities(&self) -> ExtractorCapabilities;
} {
    async fn check(&self) -> Result<()> => ();
    async fn open(&self, cx: ExtractContext) -> Result<Extraction> => (cx);
    async fn open_encoded(&self, cx: ExtractContext, format: &dyn Format) -> Result<Option<EncodedStream>> => (cx, format);
    async fn plan(&self, cx: &ExtractContext) -> Result<Option<Plan>> => (cx);
});

/// Conveniences on every [`Extractor`] (as object_store's `ObjectStoreExt`): reading
/// without a pipeline, in tests and one-off scripts.
#[async_trait]
pub trait ExtractorExt: Extractor {
    /// The batches after `from`, acknowledging nothing (a replication slot or consumer
    /// group stays where it is).
    async fn extract(&self, from: Option<Checkpoint>) -> Result<BatchStream> {
        Ok(self
            .open(ExtractContext::from_checkpoint(from))
            .await?
            .batches)
    }

    /// Every batch after `from`, in memory (for a bounded extractor), acknowledging
    /// nothing.
    async fn collect(&self, from: Option<Checkpoint>) -> Result<Vec<Batch>> {
        crate::model::collect(self.extract(from).await?).await
    }
}

impl<T: Extractor + ?Sized> ExtractorExt for T {}
