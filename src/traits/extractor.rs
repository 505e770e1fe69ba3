use super::ack::{Extraction, Resume};
use crate::format::Format;
use crate::model::EncodedStream;
use crate::{BatchStream, Checkpoint, Result};
use async_trait::async_trait;
use std::fmt::Debug;

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

/// A source of rows: a table, a change log, an API.
///
/// Implementations are cheap to share (`Send + Sync + 'static`) and usable as
/// `Arc<dyn Extractor>`. Errors that can be known before the first row (bad
/// configuration, unreachable server, missing table) are returned by `extract` itself,
/// not from inside the stream.
///
/// ```
/// use std::sync::Arc;
/// use arrow_array::{Int64Array, RecordBatch};
/// use arrow_schema::{DataType, Field, Schema};
/// use async_trait::async_trait;
/// use futures::StreamExt;
/// use tributary::{Batch, BatchStream, Checkpoint, CursorValue, Extractor, Result, Watermark};
///
/// /// Counts from the last checkpoint to 10, five numbers per batch.
/// #[derive(Debug)]
/// struct Counter;
///
/// #[async_trait]
/// impl Extractor for Counter {
///     fn source(&self) -> &str { "counter" }
///     fn stream(&self) -> &str { "numbers" }
///     async fn extract(&self, from: Option<Checkpoint>) -> Result<BatchStream> {
///         let start = match from {
///             Some(Checkpoint::Watermark(w)) => match w.cursor { CursorValue::Int(n) => n + 1, _ => 0 },
///             _ => 0,
///         };
///         let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
///         let batches: Vec<Result<Batch>> = (start..10).collect::<Vec<_>>().chunks(5).map(|c| {
///             let rb = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(c.to_vec()))]).unwrap();
///             let last = *c.last().unwrap();
///             Ok(Batch::new(rb).with_checkpoint(Checkpoint::Watermark(Watermark::new(CursorValue::Int(last)))))
///         }).collect();
///         Ok(futures::stream::iter(batches).boxed())
///     }
/// }
///
/// # tokio_test_block_on(async {
/// let from = Some(Checkpoint::Watermark(Watermark::new(CursorValue::Int(4))));
/// let batches = tributary::model::collect(Counter.extract(from).await?).await?;
/// assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 5); // 5..=9
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

    /// Check that the source is reachable and set up as this extractor needs.
    ///
    /// The default does nothing; connectors override it to connect and check their
    /// prerequisites without reading data.
    async fn check(&self) -> Result<()> {
        Ok(())
    }

    /// Start extracting after `from` (or from the beginning when `None`).
    async fn extract(&self, from: Option<Checkpoint>) -> Result<BatchStream>;

    /// Whether the stream ends by itself (a table, a page cursor) or runs until
    /// cancelled (a change log, a topic). An unbounded extractor needs a commit interval
    /// ([`PipelineOptions::with_commit_interval`](crate::PipelineOptions::with_commit_interval)),
    /// or nothing would ever be committed; [`PipelineBuilder::build`](crate::PipelineBuilder::build)
    /// refuses one without. Default: bounded.
    fn bounded(&self) -> bool {
        true
    }

    /// What the pipeline calls: start after `from.checkpoint`, knowing the schemas saved
    /// with it, and return the batches with the [`Acker`](crate::Acker) to tell when a
    /// checkpoint is durable. The default calls [`Extractor::extract`] and acknowledges
    /// nothing; sources with a position on the server (a replication slot, a consumer
    /// group) override it.
    ///
    /// A checkpoint of a kind the extractor does not read (a watermark handed to a log
    /// reader) is an [`Error::Config`](crate::Error::Config), not a panic.
    async fn open(&self, from: Resume) -> Result<Extraction> {
        Ok(Extraction::new(self.extract(from.checkpoint).await?))
    }

    /// What an extraction from `from` would read, reading no row: for SQL sources the
    /// query and the server's estimate of its rows. `Ok(None)` (the default) when the
    /// source cannot say. See [`Pipeline::dry_run`](crate::Pipeline::dry_run).
    async fn plan(&self, _from: &Resume) -> Result<Option<Plan>> {
        Ok(None)
    }

    /// A fast path: the source encodes `format` itself (PostgreSQL's `COPY ... TO STDOUT`
    /// for CSV), producing exactly the bytes the pipeline would write from
    /// [`Extractor::extract`]'s batches. `Ok(None)` (the default) when the source cannot
    /// for this format or this extraction; the pipeline then uses `extract`.
    async fn extract_encoded(
        &self,
        _from: Option<Checkpoint>,
        _format: &dyn Format,
    ) -> Result<Option<EncodedStream>> {
        Ok(None)
    }
}

super::forward::forward_impls!(Extractor {
    fn source(&self) -> &str;
    fn stream(&self) -> &str;
    fn bounded(&self) -> bool;
} {
    async fn check(&self) -> Result<()> => ();
    async fn extract(&self, from: Option<Checkpoint>) -> Result<BatchStream> => (from);
    async fn open(&self, from: Resume) -> Result<Extraction> => (from);
    async fn extract_encoded(&self, from: Option<Checkpoint>, format: &dyn Format) -> Result<Option<EncodedStream>> => (from, format);
    async fn plan(&self, from: &Resume) -> Result<Option<Plan>> => (from);
});
