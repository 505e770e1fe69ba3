//! [`Batch`]: rows in flight, as an Arrow `RecordBatch`, with the checkpoint they reach.

use crate::{Checkpoint, Result};
use arrow_array::RecordBatch;
use futures::stream::BoxStream;

/// A stream of batches that owns its state (connections, cursors), as returned by
/// [`Extractor::open`](crate::Extractor::open).
pub type BatchStream = BoxStream<'static, Result<Batch>>;

/// Rows extracted together, and the position reached once they are durably written.
///
/// `checkpoint` is `None` when the batch ends somewhere that cannot be resumed from
/// (inside a source transaction, or in a full extraction that has no position). The
/// pipeline saves a checkpoint only after the sink committed every batch up to it.
///
/// ```
/// use std::sync::Arc;
/// use arrow_array::{Int64Array, RecordBatch};
/// use arrow_schema::{DataType, Field, Schema};
/// use tributary::Batch;
/// let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
/// let rb = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2, 3]))]).unwrap();
/// let batch = Batch::new(rb);
/// assert_eq!(batch.num_rows(), 3);
/// assert!(batch.checkpoint.is_none());
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Batch {
    /// The rows.
    pub records: RecordBatch,
    /// The position reached after these rows, if it is one that can be resumed from.
    pub checkpoint: Option<Checkpoint>,
    /// Which of a source's parallel partitions the rows come from. The pipeline writes
    /// each partition to objects of its own (its `k`-th numbered `k * 10000 + partition`).
    pub partition: Option<u32>,
    /// Which table of a many-table stream (a binlog, a WAL, a topic) the rows belong
    /// to; `None` for a single-table extractor, whose table is its
    /// [`stream`](crate::Extractor::stream). Each table lands in objects of its own,
    /// with `{stream}` in the key template standing for the table.
    pub table: Option<String>,
}

impl Batch {
    /// A batch with no checkpoint.
    pub fn new(records: RecordBatch) -> Self {
        Batch {
            records,
            checkpoint: None,
            partition: None,
            table: None,
        }
    }

    /// Mark the batch as coming from partition `p` of a parallel extraction.
    pub fn with_partition(mut self, p: u32) -> Self {
        self.partition = Some(p);
        self
    }

    /// Name the table of a many-table stream the rows belong to.
    pub fn with_table(mut self, table: impl Into<String>) -> Self {
        self.table = Some(table.into());
        self
    }

    /// Attach the checkpoint reached after these rows.
    pub fn with_checkpoint(mut self, checkpoint: Checkpoint) -> Self {
        self.checkpoint = Some(checkpoint);
        self
    }

    /// A batch with no rows that only moves the position to `checkpoint`: what a source
    /// hands on after its last rows (so the checkpoint is saved once they are committed)
    /// or when its log moved past work of no selected table.
    ///
    /// ```
    /// use tributary::{Batch, Checkpoint};
    /// let b = Batch::position(Checkpoint::Lsn { lsn: 42 });
    /// assert_eq!(b.num_rows(), 0);
    /// assert_eq!(b.checkpoint, Some(Checkpoint::Lsn { lsn: 42 }));
    /// ```
    pub fn position(checkpoint: Checkpoint) -> Self {
        Batch::new(RecordBatch::new_empty(std::sync::Arc::new(
            arrow_schema::Schema::empty(),
        )))
        .with_checkpoint(checkpoint)
    }

    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.records.num_rows()
    }
}

/// Collect a whole stream into memory. For tests and small extractions only: pipelines
/// never do this.
pub async fn collect(stream: BatchStream) -> Result<Vec<Batch>> {
    use futures::TryStreamExt;
    stream.try_collect().await
}

/// Bytes of the output format that a source encoded itself (see
/// [`Extractor::open_encoded`](crate::Extractor::open_encoded)). Every chunk ends
/// at a row boundary, so the pipeline may start a new object after any chunk.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EncodedChunk {
    /// Whole rows of the output format.
    pub bytes: bytes::Bytes,
    /// How many rows `bytes` holds.
    pub rows: u64,
    /// The position reached after these rows, if resumable.
    pub checkpoint: Option<Checkpoint>,
    /// The schema of the rows, when the source knows it (recorded in the manifest).
    pub schema: Option<arrow_schema::SchemaRef>,
}

impl EncodedChunk {
    /// `rows` whole rows of the output format, with no checkpoint and no schema.
    pub fn new(bytes: bytes::Bytes, rows: u64) -> Self {
        EncodedChunk {
            bytes,
            rows,
            checkpoint: None,
            schema: None,
        }
    }

    /// The position reached after these rows.
    pub fn with_checkpoint(mut self, checkpoint: Checkpoint) -> Self {
        self.checkpoint = Some(checkpoint);
        self
    }

    /// The schema of the rows.
    pub fn with_schema(mut self, schema: arrow_schema::SchemaRef) -> Self {
        self.schema = Some(schema);
        self
    }
}

/// A stream of pre-encoded chunks.
pub type EncodedStream = BoxStream<'static, Result<EncodedChunk>>;
