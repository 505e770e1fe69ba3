//! [`KafkaExtractor`]: a consumer group reading Debezium change events into change rows.
//! Offsets go to the group only through the [`Acker`](crate::Acker), after the pipeline
//! saved the checkpoint that covers them.
use super::config::{KafkaConfig, Tombstones};
use super::envelope::{self, Event, Message as Decoded};
use super::rows::Tables;
use crate::kafka::client::error as kerr;
use crate::model::{ChangeMeta, Op};
use crate::{
    Acker, Batch, BatchStream, Checkpoint, Error, ExtractContext, Extraction, Extractor, Result,
};
use async_trait::async_trait;
use futures::StreamExt;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Message};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

type Tp = (String, i32);

fn tp_key((t, p): &Tp) -> String {
    format!("{t}/{p}")
}

fn parse_tp(k: &str) -> Option<Tp> {
    let (t, p) = k.rsplit_once('/')?;
    Some((t.to_string(), p.parse().ok()?))
}

/// What the rebalance callback and the reader share.
#[derive(Default)]
struct Shared {
    /// The next offset to read per partition: from the checkpoint, then as read.
    next: HashMap<Tp, i64>,
    assigned: BTreeSet<Tp>,
    /// Set once the first assignment arrived.
    joined: bool,
}

/// The shared state, also after a panic elsewhere left the lock poisoned (its data is
/// still consistent: every update is a single insert or remove).
fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

struct Ctx {
    shared: Arc<Mutex<Shared>>,
    timeout: Duration,
}

impl ClientContext for Ctx {}

impl ConsumerContext for Ctx {
    // Starting offsets are set on the assignment itself: the larger of the saved
    // checkpoint and the group's committed offset (both written only after the data
    // was durable), so a crash between the two loses nothing and re-reads little.
    fn rebalance(&self, c: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let cooperative = matches!(
            c.rebalance_protocol(),
            rdkafka::consumer::RebalanceProtocol::Cooperative
        );
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let committed = c.committed_offsets(tpl.clone(), self.timeout).ok();
                let mut s = lock(&self.shared);
                let mut starts: Vec<(Tp, i64)> = Vec::new();
                for el in tpl.elements() {
                    let key = (el.topic().to_string(), el.partition());
                    let group = committed
                        .as_ref()
                        .and_then(|c| c.find_partition(&key.0, key.1))
                        .and_then(|e| e.offset().to_raw())
                        .filter(|n| *n >= 0);
                    s.assigned.insert(key.clone());
                    if let Some(n) = s.next.get(&key).copied().max(group) {
                        s.next.insert(key.clone(), n);
                        starts.push((key, n));
                    }
                }
                s.joined = true;
                drop(s);
                for ((t, p), n) in starts {
                    let _ = tpl.set_partition_offset(&t, p, Offset::Offset(n));
                }
                if cooperative {
                    c.incremental_assign(tpl)
                } else {
                    c.assign(tpl)
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let mut s = lock(&self.shared);
                for el in tpl.elements() {
                    s.assigned.remove(&(el.topic().to_string(), el.partition()));
                }
                drop(s);
                if cooperative {
                    c.incremental_unassign(tpl)
                } else {
                    c.unassign()
                }
            }
            other => {
                tracing::warn!(error = ?other, "kafka: rebalance error; dropping the assignment");
                lock(&self.shared).assigned.clear();
                c.unassign()
            }
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "kafka: applying a rebalance failed");
        }
    }
}

type Cons = StreamConsumer<Ctx>;

/// Reads Debezium change events from Kafka topics into change rows (feature `kafka`).
///
/// One consumer group member: `extract` subscribes, reads each message's Debezium
/// envelope (JSON converter with or without schemas, or the flattened form of
/// `ExtractNewRecordState`) and hands on one batch per table; the checkpoint is
/// [`Checkpoint::Offsets`] (`topic/partition` → next offset). Offsets are committed to
/// the group only after the pipeline saved a checkpoint covering them; a run resumes from
/// the larger of the saved checkpoint and the group's offsets. At least once: after a
/// crash, the events since the last saved checkpoint are read again.
///
/// Values are decoded by their Connect schema (see [`crate::kafka`]); events
/// without schemas get types from their JSON values (integers Int64, other numbers
/// Float64, booleans, text; anything else JSON text), kept across runs from the schemas
/// saved with the checkpoint.
#[derive(Debug)]
pub struct KafkaExtractor {
    config: KafkaConfig,
    stream: String,
}

impl KafkaExtractor {
    /// An extractor with these settings; no connection is made until it runs.
    pub fn new(config: KafkaConfig) -> Result<Self> {
        if config.topics.is_empty() || config.topics.iter().any(|t| t.trim().is_empty()) {
            return Err(Error::config(
                "kafka",
                "no topics to read: give at least one topic name or ^pattern",
            ));
        }
        if config.group_id.trim().is_empty() {
            return Err(Error::config("kafka", "the consumer group id is empty"));
        }
        let stream = config.group_id.clone();
        Ok(KafkaExtractor { config, stream })
    }

    fn consumer(&self, shared: Arc<Mutex<Shared>>) -> Result<Cons> {
        let mut c = self.config.client.client_config();
        c.set("group.id", &self.config.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000");
        if let Some(id) = &self.config.instance_id {
            c.set("group.instance.id", id);
        }
        let ctx = Ctx {
            shared,
            timeout: self.config.client.timeout(),
        };
        c.create_with_context(ctx)
            .map_err(|e| kerr("kafka", "creating the consumer", e))
    }
}

/// Commits the group's offsets once the pipeline says a checkpoint is durable.
struct OffsetAcker {
    consumer: Arc<Cons>,
    shared: Arc<Mutex<Shared>>,
}

#[async_trait]
impl Acker for OffsetAcker {
    async fn committed(&mut self, checkpoint: &Checkpoint) -> Result<()> {
        let Checkpoint::Offsets { offsets } = checkpoint else {
            return Ok(());
        };
        // Only partitions this member still owns: a revoked partition's new owner
        // commits its own progress, and ours must not move it back.
        let assigned = lock(&self.shared).assigned.clone();
        let mut tpl = TopicPartitionList::new();
        for (k, n) in offsets {
            if let Some(tp) = parse_tp(k).filter(|tp| assigned.contains(tp)) {
                tpl.add_partition_offset(&tp.0, tp.1, Offset::Offset(*n))
                    .map_err(|e| kerr("kafka", "committing offsets", e))?;
            }
        }
        if tpl.count() == 0 {
            return Ok(());
        }
        let c = self.consumer.clone();
        tokio::task::spawn_blocking(move || c.commit(&tpl, CommitMode::Sync))
            .await
            .map_err(|e| Error::connector("kafka", e, true))?
            .map_err(|e| kerr("kafka", "committing offsets to the consumer group", e))
    }
}

#[async_trait]
impl Extractor for KafkaExtractor {
    fn source(&self) -> &str {
        "kafka"
    }
    fn stream(&self) -> &str {
        &self.stream
    }
    fn capabilities(&self) -> crate::ExtractorCapabilities {
        crate::ExtractorCapabilities::bounded()
            .with_bounded(self.config.stop_at_end)
            .with_acknowledges(true)
            .with_graceful_stop(true)
    }

    async fn check(&self) -> Result<()> {
        let c = Arc::new(self.consumer(Arc::default())?);
        let timeout = self.config.client.timeout();
        let named: Vec<String> = self
            .config
            .topics
            .iter()
            .filter(|t| !t.starts_with('^'))
            .cloned()
            .collect();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let md = c
                .fetch_metadata(None, timeout)
                .map_err(|e| kerr("kafka", "reading the brokers' metadata", e))?;
            for t in named {
                if !md
                    .topics()
                    .iter()
                    .any(|m| m.name() == t && m.error().is_none())
                {
                    return Err(Error::NotFound {
                        component: "kafka".into(),
                        message: format!("topic {t:?} does not exist"),
                        source: None,
                    });
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| Error::connector("kafka", e, true))?
    }

    async fn open(&self, from: ExtractContext) -> Result<Extraction> {
        let mut shared = Shared::default();
        match &from.checkpoint {
            None => {}
            Some(Checkpoint::Offsets { offsets }) => {
                for (k, n) in offsets {
                    let tp = parse_tp(k).ok_or_else(|| {
                        Error::config(
                            "kafka",
                            format!("checkpoint entry {k:?} is not topic/partition"),
                        )
                    })?;
                    shared.next.insert(tp, *n);
                }
            }
            Some(other) => {
                return Err(Error::config(
                    "kafka",
                    format!(
                        "the saved checkpoint is a {:?} position, not Kafka offsets: this state belongs to another source",
                        other.summary()
                    ),
                ));
            }
        }
        let shared = Arc::new(Mutex::new(shared));
        let consumer = Arc::new(self.consumer(shared.clone())?);
        let topics: Vec<&str> = self.config.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| kerr("kafka", "subscribing", e))?;
        let mut tables = Tables::new(self.config.options, self.config.source_columns);
        for (t, s) in &from.schemas {
            tables.seed(t, s);
        }
        let (tx, rx) = mpsc::channel::<Result<Batch>>(4);
        let reader = Reader {
            consumer: consumer.clone(),
            shared: shared.clone(),
            config: self.config.clone(),
            tables,
            offsets: BTreeMap::new(),
            ends: HashMap::new(),
            dirty: false,
            stop: from.stop.clone(),
        };
        tokio::spawn(reader.run(tx));
        let batches = tokio_stream_from(rx);
        Ok(Extraction::with_acker(
            batches,
            OffsetAcker { consumer, shared },
        ))
    }
}

fn tokio_stream_from(mut rx: mpsc::Receiver<Result<Batch>>) -> BatchStream {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}

struct Reader {
    consumer: Arc<Cons>,
    shared: Arc<Mutex<Shared>>,
    config: KafkaConfig,
    tables: Tables,
    /// Next offsets of everything read so far (the checkpoint once handed on).
    offsets: BTreeMap<String, i64>,
    /// End offsets as of the first assignment of each partition (stop-at-end runs).
    ends: HashMap<Tp, i64>,
    dirty: bool,
    stop: tokio_util::sync::CancellationToken,
}

impl Reader {
    async fn run(mut self, tx: mpsc::Sender<Result<Batch>>) {
        if let Err(e) = self.read(&tx).await {
            let _ = tx.send(Err(e)).await;
        }
    }

    async fn read(&mut self, tx: &mpsc::Sender<Result<Batch>>) -> Result<()> {
        // Seed the checkpoint with the saved offsets: a run that reads nothing keeps them.
        for (tp, n) in lock(&self.shared).next.iter() {
            self.offsets.insert(tp_key(tp), *n);
        }
        let linger = self.config.linger;
        let mut first_buffered: Option<Instant> = None;
        let mut last_progress = Instant::now();
        loop {
            let wait = first_buffered
                .map_or(linger, |t| linger.saturating_sub(t.elapsed()))
                .max(Duration::from_millis(10));
            let got = tokio::select! {
                _ = tx.closed() => return Ok(()),
                _ = self.stop.cancelled() => {
                    self.hand_on(tx).await;
                    return Ok(());
                }
                r = tokio::time::timeout(wait, self.consumer.recv()) => r,
            };
            match got {
                Ok(Ok(m)) => {
                    last_progress = Instant::now();
                    let (topic, partition, offset) =
                        (m.topic().to_string(), m.partition(), m.offset());
                    let decoded =
                        envelope::decode(m.key(), m.payload(), &topic, partition, offset)?;
                    drop(m);
                    for b in self.take(decoded)? {
                        if tx.send(Ok(b)).await.is_err() {
                            return Ok(());
                        }
                    }
                    let tp = (topic, partition);
                    lock(&self.shared).next.insert(tp.clone(), offset + 1);
                    self.offsets.insert(tp_key(&tp), offset + 1);
                    self.dirty = true;
                    first_buffered.get_or_insert_with(Instant::now);
                }
                Ok(Err(e)) => return Err(kerr("kafka", "reading messages", e)),
                Err(_) => {}
            }
            let due = first_buffered.is_some_and(|t| t.elapsed() >= linger)
                || self.tables.rows() >= self.config.batch_rows;
            let done = self.config.stop_at_end && self.caught_up().await?;
            if due || done {
                if !self.hand_on(tx).await {
                    return Ok(());
                }
                first_buffered = None;
            }
            if done {
                return Ok(());
            }
            if self.config.stop_at_end && last_progress.elapsed() > self.config.client.timeout() * 2
            {
                let joined = lock(&self.shared).joined;
                return Err(Error::Connection {
                    component: "kafka".into(),
                    message: format!(
                        "no message and {} for {:?} while draining to the end offsets",
                        if joined {
                            "not caught up"
                        } else {
                            "no partition assigned"
                        },
                        last_progress.elapsed()
                    ),
                    source: None,
                });
            }
        }
    }

    /// Hand on every waiting row; the last batch carries the checkpoint of all offsets
    /// read (every message before them is in these batches or an earlier one).
    async fn hand_on(&mut self, tx: &mpsc::Sender<Result<Batch>>) -> bool {
        let mut batches = match self.tables.flush() {
            Ok(b) => b,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return false;
            }
        };
        if self.dirty {
            let cp = Checkpoint::Offsets {
                offsets: self.offsets.clone(),
            };
            match batches.pop() {
                Some(b) => batches.push(b.with_checkpoint(cp)),
                None => batches.push(Batch::position(cp)),
            }
            self.dirty = false;
        }
        for b in batches {
            if tx.send(Ok(b)).await.is_err() {
                return false;
            }
        }
        true
    }

    fn take(&mut self, m: Decoded) -> Result<Vec<Batch>> {
        let wanted = |t: &str| {
            self.config
                .tables
                .as_ref()
                .is_none_or(|ts| ts.iter().any(|x| x == t))
        };
        match m {
            Decoded::Change(e) if wanted(&e.table) => self.tables.push(*e),
            Decoded::Tombstone { table, key }
                if self.config.tombstones == Tombstones::AsDelete
                    && wanted(&table)
                    && !key.is_empty() =>
            {
                let keys = self
                    .tables
                    .keys_of(&table)
                    .filter(|k| !k.is_empty())
                    .unwrap_or_else(|| key.keys().cloned().collect());
                self.tables.push(Event {
                    table,
                    op: Op::Delete,
                    row: key,
                    before: None,
                    columns: None,
                    keys,
                    meta: ChangeMeta::default(),
                    source: Default::default(),
                })
            }
            _ => Ok(Vec::new()),
        }
    }

    /// Whether every assigned partition reached its end offset as of its assignment.
    async fn caught_up(&mut self) -> Result<bool> {
        let (assigned, joined, next) = {
            let s = lock(&self.shared);
            (s.assigned.clone(), s.joined, s.next.clone())
        };
        if !joined || assigned.is_empty() {
            return Ok(false);
        }
        let missing: Vec<Tp> = assigned
            .iter()
            .filter(|tp| !self.ends.contains_key(*tp))
            .cloned()
            .collect();
        if !missing.is_empty() {
            let c = self.consumer.clone();
            let timeout = self.config.client.timeout();
            let found = tokio::task::spawn_blocking(move || -> KafkaResult<Vec<(Tp, i64, i64)>> {
                missing
                    .into_iter()
                    .map(|tp| {
                        c.fetch_watermarks(&tp.0, tp.1, timeout)
                            .map(|(lo, hi)| (tp, lo, hi))
                    })
                    .collect()
            })
            .await
            .map_err(|e| Error::connector("kafka", e, true))?
            .map_err(|e| kerr("kafka", "reading end offsets", e))?;
            for (tp, _lo, hi) in found {
                self.ends.insert(tp, hi);
            }
        }
        let position = self.consumer.position().ok();
        Ok(assigned.iter().all(|tp| {
            let end = self.ends[tp];
            let at = next.get(tp).copied().or_else(|| {
                position
                    .as_ref()?
                    .find_partition(&tp.0, tp.1)?
                    .offset()
                    .to_raw()
                    .filter(|n| *n >= 0)
            });
            end == 0 || at.is_some_and(|n| n >= end)
        }))
    }
}
