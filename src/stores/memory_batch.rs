//! [`MemoryBatchSink`]: a [`BatchSink`] that keeps committed batches in memory, for
//! tests and for code that consumes rows rather than files.

use crate::model::SchemaSummary;
use crate::stores::PipelineState;
use crate::{
    BatchSink, BatchTarget, BatchWriter, Error, Leftover, ObjectReport, Result, SinkCapabilities,
};
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Units by id (`{table}/{run_id}-{part:05}`): the table and its batches.
type Units = BTreeMap<String, (String, Vec<RecordBatch>)>;

/// Everything the sink holds, under one lock so that a transactional commit of units and
/// state is one step.
#[derive(Debug, Default)]
struct Held {
    /// Visible units.
    committed: Units,
    /// Units staged by their writers' commit, not yet visible (transactional mode).
    staged: Units,
    /// Each pipeline's state, stored with its data (transactional mode).
    states: BTreeMap<String, PipelineState>,
}

/// Rows kept in memory, visible (through [`MemoryBatchSink::committed`]) only once
/// their writer commits. Clones share the same rows.
///
/// [`MemoryBatchSink::transactional`] makes it a sink with a transactional checkpoint:
/// a writer's commit stages its rows, and the pipeline's
/// [`commit_state`](BatchSink::commit_state) makes them visible together with its
/// state, as a SQL or table-format sink does in one transaction.
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
    held: Arc<Mutex<Held>>,
    transactional: bool,
}

impl MemoryBatchSink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty sink that keeps each pipeline's state with its rows: a writer's commit
    /// stages, [`commit_state`](BatchSink::commit_state) publishes the staged units and
    /// the state at once.
    pub fn transactional() -> Self {
        MemoryBatchSink {
            transactional: true,
            ..Self::default()
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        // A panic while holding the lock cannot leave `Held` half-changed (every change
        // is one map operation), so a poisoned lock is still consistent.
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The batches of the committed unit `id`, if it is committed.
    pub fn committed(&self, id: &str) -> Option<Vec<RecordBatch>> {
        self.held().committed.get(id).map(|(_, b)| b.clone())
    }

    /// Every committed batch of `table`, in commit-id order.
    pub fn table(&self, table: &str) -> Vec<RecordBatch> {
        self.held()
            .committed
            .values()
            .filter(|(t, _)| t == table)
            .flat_map(|(_, b)| b.iter().cloned())
            .collect()
    }

    /// How many units are staged and not visible (transactional mode).
    pub fn staged(&self) -> usize {
        self.held().staged.len()
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
            .with_transactional_checkpoint(self.transactional)
    }

    async fn discard(&self, leftover: &Leftover) -> Result<()> {
        let mut h = self.held();
        for id in &leftover.objects {
            h.committed.remove(id);
        }
        Ok(())
    }

    async fn commit_state(
        &self,
        pipeline: &str,
        units: &[ObjectReport],
        state: &PipelineState,
    ) -> Result<()> {
        if !self.transactional {
            return Err(Error::config(
                "sink",
                "this memory sink is not transactional (MemoryBatchSink::transactional)",
            ));
        }
        let mut h = self.held();
        if let Some(missing) = units.iter().find(|u| !h.staged.contains_key(&u.key)) {
            return Err(Error::config(
                "sink",
                format!("unit {} is not staged: nothing to publish", missing.key),
            ));
        }
        for u in units {
            if let Some(unit) = h.staged.remove(&u.key) {
                h.committed.insert(u.key.clone(), unit);
            }
        }
        h.states.insert(pipeline.to_string(), state.clone());
        Ok(())
    }

    async fn load_state(&self, pipeline: &str) -> Result<Option<PipelineState>> {
        Ok(self.held().states.get(pipeline).cloned())
    }

    async fn delete_state(&self, pipeline: &str) -> Result<()> {
        self.held().states.remove(pipeline);
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
            sink: self.clone(),
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
    sink: MemoryBatchSink,
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
        let mut h = me.sink.held();
        let to = if me.sink.transactional {
            &mut h.staged
        } else {
            &mut h.committed
        };
        to.insert(me.id, (me.table, me.batches));
        Ok(report)
    }
    async fn abort(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}
