//! [`MemoryBatchSink`]: a [`BatchSink`] that keeps committed batches in memory, for
//! tests and for code that consumes rows rather than files.

use crate::model::SchemaSummary;
use crate::{
    BatchSink, BatchTarget, BatchWriter, Leftover, ObjectReport, Result, SinkCapabilities,
};
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Committed units by id (`{table}/{run_id}-{part:05}`): the table and its batches.
type Committed = BTreeMap<String, (String, Vec<RecordBatch>)>;

/// Rows kept in memory, visible (through [`MemoryBatchSink::committed`]) only once
/// their writer commits. Clones share the same rows.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use arrow_array::{Int64Array, RecordBatch};
/// use arrow_schema::{DataType, Field, Schema};
/// use tributary::{BatchSink, BatchTarget, stores::MemoryBatchSink};
/// let sink = MemoryBatchSink::new();
/// let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
/// let rb = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![1, 2]))]).unwrap();
/// let mut w = sink.begin(&BatchTarget::new("p", "demo", "numbers", "r1", 0, Some(schema))).await?;
/// w.write(&rb).await?;
/// assert!(sink.committed("numbers/r1-00000").is_none());
/// w.commit().await?;
/// assert_eq!(sink.committed("numbers/r1-00000").unwrap()[0].num_rows(), 2);
/// # Ok::<(), tributary::Error>(()) }).unwrap();
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemoryBatchSink {
    committed: Arc<Mutex<Committed>>,
}

impl MemoryBatchSink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// The batches of the committed unit `id`, if it is committed.
    pub fn committed(&self, id: &str) -> Option<Vec<RecordBatch>> {
        let c = self.committed.lock().expect("not poisoned");
        c.get(id).map(|(_, b)| b.clone())
    }

    /// Every committed batch of `table`, in commit-id order.
    pub fn table(&self, table: &str) -> Vec<RecordBatch> {
        let c = self.committed.lock().expect("not poisoned");
        c.values()
            .filter(|(t, _)| t == table)
            .flat_map(|(_, b)| b.iter().cloned())
            .collect()
    }
}

#[async_trait]
impl BatchSink for MemoryBatchSink {
    fn describe(&self) -> String {
        "memory (rows)".into()
    }

    fn capabilities(&self) -> SinkCapabilities {
        SinkCapabilities::new()
            .with_atomic_visibility(true)
            .with_discard(true)
    }

    async fn discard(&self, leftover: &Leftover) -> Result<()> {
        let mut c = self.committed.lock().expect("not poisoned");
        for id in &leftover.objects {
            c.remove(id);
        }
        Ok(())
    }

    async fn begin(&self, target: &BatchTarget) -> Result<Box<dyn BatchWriter>> {
        Ok(Box::new(MemoryBatchWriter {
            id: format!("{}/{}-{:05}", target.table, target.run_id, target.part),
            table: target.table.clone(),
            schema: target.schema.clone(),
            batches: Vec::new(),
            rows: 0,
            size: 0,
            committed: self.committed.clone(),
        }))
    }
}

struct MemoryBatchWriter {
    id: String,
    table: String,
    schema: Option<SchemaRef>,
    batches: Vec<RecordBatch>,
    rows: u64,
    size: u64,
    committed: Arc<Mutex<Committed>>,
}

#[async_trait]
impl BatchWriter for MemoryBatchWriter {
    fn id(&self) -> &str {
        &self.id
    }
    fn rows(&self) -> u64 {
        self.rows
    }
    fn size(&self) -> u64 {
        self.size
    }
    async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        crate::traits::same_schema(&self.id, self.schema.as_ref(), batch)?;
        self.rows += batch.num_rows() as u64;
        self.size += batch.get_array_memory_size() as u64;
        self.batches.push(batch.clone());
        Ok(())
    }
    async fn commit(self: Box<Self>) -> Result<ObjectReport> {
        let me = *self;
        let report = ObjectReport {
            key: me.id.clone(),
            rows: me.rows,
            bytes: me.size,
            sha256: String::new(),
            table: me.table.clone(),
            schema: me.schema.as_deref().map(SchemaSummary::of),
        };
        me.committed
            .lock()
            .expect("not poisoned")
            .insert(me.id, (me.table, me.batches));
        Ok(report)
    }
    async fn abort(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}
