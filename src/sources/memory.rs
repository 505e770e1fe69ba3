//! In-memory sources for tests, examples and the conformance suites: [`MemoryExtractor`]
//! replays batches; [`MemoryChangeStream`] is a many-table change log that acknowledges.

use crate::{
    Acker, Batch, BatchStream, Checkpoint, Error, ExtractContext, Extraction, Extractor,
    ExtractorCapabilities, Result,
};
use arrow_array::RecordBatch;
use async_trait::async_trait;
use futures::StreamExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Replays a fixed list of batches. With a `from` checkpoint it skips every batch up to
/// and including the one that carries that checkpoint, so it resumes like a real source.
#[derive(Debug, Clone)]
pub struct MemoryExtractor {
    source: String,
    stream: String,
    batches: Vec<Batch>,
}

impl MemoryExtractor {
    /// Batches to replay under `source`/`stream`.
    pub fn new(source: impl Into<String>, stream: impl Into<String>, batches: Vec<Batch>) -> Self {
        MemoryExtractor {
            source: source.into(),
            stream: stream.into(),
            batches,
        }
    }
}

#[async_trait]
impl Extractor for MemoryExtractor {
    fn source(&self) -> &str {
        &self.source
    }

    fn stream(&self) -> &str {
        &self.stream
    }

    async fn open(&self, cx: ExtractContext) -> Result<Extraction> {
        let skip = match &cx.checkpoint {
            Some(cp) => self
                .batches
                .iter()
                .position(|b| b.checkpoint.as_ref() == Some(cp))
                .map_or(0, |i| i + 1),
            None => 0,
        };
        let batches: Vec<Result<Batch>> = self.batches[skip..].iter().cloned().map(Ok).collect();
        Ok(Extraction::new(futures::stream::iter(batches).boxed()))
    }
}

/// One entry of a [`MemoryChangeStream`]'s log: the changes of one table at one
/// position, or a heartbeat (no rows, no table: the position moved past other work).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ChangeEvent {
    /// The log position after this event; strictly increasing along the log.
    pub position: u64,
    /// The table, `None` for a heartbeat.
    pub table: Option<String>,
    /// The changes (a change batch, see [`model::change`](crate::model::change)).
    pub rows: Option<RecordBatch>,
}

impl ChangeEvent {
    /// Changes of `table` at `position`.
    pub fn rows(position: u64, table: impl Into<String>, rows: RecordBatch) -> Self {
        ChangeEvent {
            position,
            table: Some(table.into()),
            rows: Some(rows),
        }
    }

    /// The position moved with nothing to land.
    pub fn heartbeat(position: u64) -> Self {
        ChangeEvent {
            position,
            table: None,
            rows: None,
        }
    }
}

type AckHook = Arc<dyn Fn(&Checkpoint) -> Result<()> + Send + Sync>;

/// An in-memory change log of many tables, for tests of the streaming core and for the
/// conformance suites: it behaves like a binlog or WAL reader. Its checkpoints are
/// [`Checkpoint::Lsn`] positions; it resumes after one, refuses a checkpoint of another
/// kind with [`Error::Config`], checks on resume that the schemas saved with the
/// checkpoint are those of its tables at that position (as a log reader decoding rows
/// written before a DDL needs), records every acknowledgement and refuses one that goes
/// backwards. Unbounded unless [`MemoryChangeStream::bounded`]: after the last event it
/// waits, like a quiet server.
#[derive(Clone)]
pub struct MemoryChangeStream {
    source: String,
    stream: String,
    events: Arc<Vec<ChangeEvent>>,
    bounded: bool,
    delay: Duration,
    acks: Arc<Mutex<Vec<Checkpoint>>>,
    hook: Option<AckHook>,
}

impl std::fmt::Debug for MemoryChangeStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryChangeStream")
            .field("source", &self.source)
            .field("stream", &self.stream)
            .field("events", &self.events.len())
            .field("bounded", &self.bounded)
            .finish_non_exhaustive()
    }
}

impl MemoryChangeStream {
    /// A log of `events` under `source`/`stream` (the stream names the run's manifest;
    /// each table lands under its own name).
    pub fn new(
        source: impl Into<String>,
        stream: impl Into<String>,
        events: Vec<ChangeEvent>,
    ) -> Self {
        MemoryChangeStream {
            source: source.into(),
            stream: stream.into(),
            events: Arc::new(events),
            bounded: false,
            delay: Duration::ZERO,
            acks: Arc::new(Mutex::new(Vec::new())),
            hook: None,
        }
    }

    /// End the stream at the last event instead of waiting for more.
    pub fn bounded(mut self) -> Self {
        self.bounded = true;
        self
    }

    /// Wait this long before each event (a slow source).
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Call `hook` with every acknowledgement before it is recorded; an error from it is
    /// the acknowledgement's error (a dropped slot).
    pub fn on_ack(
        mut self,
        hook: impl Fn(&Checkpoint) -> Result<()> + Send + Sync + 'static,
    ) -> Self {
        self.hook = Some(Arc::new(hook));
        self
    }

    /// Every acknowledgement received so far, in order.
    pub fn acks(&self) -> Vec<Checkpoint> {
        self.acks.lock().expect("not poisoned").clone()
    }

    /// The schema of `table` as of `position`: that of its last event at or before it.
    fn schema_at(&self, table: &str, position: u64) -> Option<arrow_schema::SchemaRef> {
        self.events
            .iter()
            .take_while(|e| e.position <= position)
            .filter(|e| e.table.as_deref() == Some(table))
            .filter_map(|e| e.rows.as_ref().map(|r| r.schema()))
            .last()
    }
}

#[async_trait]
impl Extractor for MemoryChangeStream {
    fn source(&self) -> &str {
        &self.source
    }

    fn stream(&self) -> &str {
        &self.stream
    }

    /// Acknowledges, and ends gracefully between events when asked to stop.
    fn capabilities(&self) -> ExtractorCapabilities {
        ExtractorCapabilities::bounded()
            .with_bounded(self.bounded)
            .with_acknowledges(true)
            .with_graceful_stop(true)
    }

    async fn open(&self, from: ExtractContext) -> Result<Extraction> {
        let after = match &from.checkpoint {
            None => None,
            Some(Checkpoint::Lsn { lsn }) => Some(*lsn),
            Some(other) => {
                return Err(Error::config(
                    "memory-changes",
                    format!("a change log resumes from an LSN checkpoint, not {other:?}"),
                ));
            }
        };
        if let Some(at) = after {
            for (table, saved) in &from.schemas {
                if let Some(log) = self.schema_at(table, at)
                    && log.fields() != saved.fields()
                {
                    return Err(Error::type_error(
                        "memory-changes",
                        format!(
                            "table {table}: the schema saved with the checkpoint at {at} is not \
                             the table's schema there"
                        ),
                    ));
                }
            }
        }
        let events: Vec<ChangeEvent> = self
            .events
            .iter()
            .filter(|e| after.is_none_or(|a| e.position > a))
            .cloned()
            .collect();
        let delay = self.delay;
        let batches = futures::stream::iter(events).then(move |e| async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let cp = Checkpoint::Lsn { lsn: e.position };
            let mut b = match e.rows {
                Some(rows) => Batch::new(rows).with_checkpoint(cp),
                None => Batch::position(cp),
            };
            if let Some(t) = e.table {
                b = b.with_table(t);
            }
            Ok(b)
        });
        // Every event is whole with its position, so any point between two is a
        // consistent place to stop.
        let stop = from.stop.clone().cancelled_owned();
        let batches: BatchStream = if self.bounded {
            batches.take_until(stop).boxed()
        } else {
            batches
                .chain(futures::stream::pending())
                .take_until(stop)
                .boxed()
        };
        Ok(Extraction::with_acker(
            batches,
            MemoryAcker {
                acks: self.acks.clone(),
                hook: self.hook.clone(),
            },
        ))
    }
}

struct MemoryAcker {
    acks: Arc<Mutex<Vec<Checkpoint>>>,
    hook: Option<AckHook>,
}

#[async_trait]
impl Acker for MemoryAcker {
    async fn committed(&mut self, checkpoint: &Checkpoint) -> Result<()> {
        let Checkpoint::Lsn { lsn } = checkpoint else {
            return Err(Error::config(
                "memory-changes",
                format!("acknowledged a checkpoint of another kind: {checkpoint:?}"),
            ));
        };
        let mut acks = self.acks.lock().expect("not poisoned");
        if let Some(Checkpoint::Lsn { lsn: last }) = acks.last()
            && lsn < last
        {
            return Err(Error::PositionLost {
                component: "memory-changes".into(),
                message: format!("acknowledgement went backwards: {lsn} after {last}"),
                source: None,
            });
        }
        if let Some(h) = &self.hook {
            h(checkpoint)?;
        }
        acks.push(checkpoint.clone());
        Ok(())
    }
}
