//! [`KafkaSink`]: change rows published as Debezium envelopes, one message per change.
use super::config::KafkaSinkConfig;
use super::envelope::Layout;
use crate::kafka::client::error as kerr;
use crate::model::SchemaSummary;
use crate::{BatchSink, BatchTarget, BatchWriter, Error, ObjectReport, Result};
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use async_trait::async_trait;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use std::collections::VecDeque;

/// Publishes change rows (see [`crate::model::change`]) as Debezium change events
/// (feature `kafka`): a [`BatchSink`] for [`PipelineBuilder::batch_sink`](crate::PipelineBuilder::batch_sink).
///
/// Each change becomes one message on `<prefix>.<db>.<table>` ([`KafkaSinkConfig::with_topic_template`]),
/// with a header `tributary.unit` naming the unit it was published in
/// (`<topic>@<run id>/<part>`, the id in the run's report):
/// the key is the primary key (`{"id":1}`; null without one), the value Debezium's
/// envelope `op`, `before`, `after`, `source`, `ts_ms`, with the Connect schemas when
/// [`KafkaSinkConfig::with_schemas`] is on, and values encoded as Debezium's defaults
/// do (decimals as base64 `Decimal`, times as `io.debezium.time.*`). A delete is
/// followed by a tombstone unless turned off. `source` carries `lsn`/`txId` or
/// `file`/`pos`/`gtid` from the rows' `_position` and `_txid` columns and `ts_ms` from
/// `_commit_ts`: turn those change columns on in the source for a complete `source`.
///
/// **Delivery is at least once.** The producer is idempotent (no duplicates from its own
/// retries), and [`BatchWriter::commit`] returns only when the broker acknowledged every
/// message, so the pipeline saves a checkpoint only after its changes are in the topic.
/// Messages are visible to consumers as soon as the broker has them, before the commit:
/// an aborted or crashed unit leaves its messages in the topic, and the rerun publishes
/// them again. Kafka transactions are not used: the only broker this crate is tested
/// against, tansu 0.6, does not offer `EndTxn` (librdkafka: "EndTxnRequest (KIP-98) not
/// supported by broker"), so a transactional path could not be tested. Consumers that
/// need exactly once deduplicate on the key and the `source` position (Debezium's own
/// advice for its at-least-once connectors).
pub struct KafkaSink {
    config: KafkaSinkConfig,
    producer: FutureProducer,
    admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext>,
    created: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl KafkaSink {
    /// A sink publishing with these settings (the producer connects lazily).
    pub fn new(config: KafkaSinkConfig) -> Result<Self> {
        let mut c = config.client.client_config();
        let ms = config
            .client
            .timeout()
            .as_millis()
            .clamp(1, i32::MAX as u128)
            .to_string();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", &ms)
            .set("request.timeout.ms", &ms)
            .set("compression.type", &config.compression)
            .set("linger.ms", "5");
        let producer = c
            .create()
            .map_err(|e| kerr("kafka", "creating the producer", e))?;
        let admin = config
            .client
            .client_config()
            .create()
            .map_err(|e| kerr("kafka", "creating the admin client", e))?;
        Ok(KafkaSink {
            config,
            producer,
            admin,
            created: Default::default(),
        })
    }

    /// Create `topic` unless it exists (or was created by this sink already).
    async fn ensure_topic(&self, topic: &str) -> Result<()> {
        let Some((partitions, replicas)) = self.config.create_topics else {
            return Ok(());
        };
        if self
            .created
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(topic)
        {
            return Ok(());
        }
        use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
        let opts = AdminOptions::new()
            .operation_timeout(Some(self.config.client.timeout()))
            .request_timeout(Some(self.config.client.timeout()));
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(replicas));
        let results = tokio::time::timeout(
            self.config.client.timeout() * 2,
            self.admin.create_topics([&new], &opts),
        )
        .await
        .map_err(|_| Error::Connection {
            component: "kafka".into(),
            message: format!("creating topic {topic}: timed out"),
            source: None,
        })?
        .map_err(|e| kerr("kafka", &format!("creating topic {topic}"), e))?;
        for r in results {
            match r {
                Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, code)) => {
                    return Err(kerr(
                        "kafka",
                        &format!("creating topic {t}"),
                        rdkafka::error::KafkaError::AdminOp(code),
                    ));
                }
            }
        }
        self.created
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(topic.to_string());
        Ok(())
    }
}

#[async_trait]
impl BatchSink for KafkaSink {
    fn describe(&self) -> String {
        format!(
            "kafka://{}/{}",
            self.config.client.bootstrap_servers(),
            self.config.topic_for("{table}")
        )
    }

    /// Nothing: a sent message cannot be taken back, so the sink is at-least-once and
    /// a reader may see a message of a step whose checkpoint was never saved.
    fn capabilities(&self) -> crate::SinkCapabilities {
        crate::SinkCapabilities::new()
    }

    async fn check(&self) -> Result<()> {
        let p = self.producer.clone();
        let timeout = self.config.client.timeout();
        tokio::task::spawn_blocking(move || {
            use rdkafka::producer::Producer;
            p.client().fetch_metadata(None, timeout).map(|_| ())
        })
        .await
        .map_err(|e| Error::connector("kafka", e, true))?
        .map_err(|e| kerr("kafka", "reading the brokers' metadata", e))
    }

    async fn begin(&self, target: &BatchTarget) -> Result<Box<dyn BatchWriter>> {
        let schema = target.schema.clone().ok_or_else(|| {
            Error::config(
                "kafka",
                "the Kafka sink takes change rows as Arrow batches, not pre-encoded bytes",
            )
        })?;
        let layout = Layout::new(&self.config, target, &schema)?;
        self.ensure_topic(&self.config.topic_for(&target.table))
            .await?;
        let id = format!(
            "{}@{}/{}",
            self.config.topic_for(&target.table),
            target.run_id,
            target.part
        );
        Ok(Box::new(KafkaWriter {
            producer: self.producer.clone(),
            topic: self.config.topic_for(&target.table),
            headers: OwnedHeaders::new().insert(Header {
                key: UNIT_HEADER,
                value: Some(id.as_bytes()),
            }),
            id,
            table: target.table.clone(),
            schema,
            layout,
            pending: VecDeque::new(),
            rows: 0,
            bytes: 0,
        }))
    }
}

struct KafkaWriter {
    producer: FutureProducer,
    topic: String,
    id: String,
    table: String,
    schema: SchemaRef,
    layout: Layout,
    pending: VecDeque<DeliveryFuture>,
    rows: u64,
    bytes: u64,
    /// The `tributary.unit` header every message of this unit carries.
    headers: OwnedHeaders,
}

/// The header naming the unit (`<topic>@<run>/<part>`) a message was published in: a
/// consumer can tell a unit a rerun published again, and find what one run published.
pub(crate) const UNIT_HEADER: &str = "tributary.unit";

/// Most messages in flight per writer before it waits for the oldest.
const MAX_IN_FLIGHT: usize = 10_000;

impl KafkaWriter {
    async fn settle_one(&mut self) -> Result<()> {
        let Some(f) = self.pending.pop_front() else {
            return Ok(());
        };
        match f.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((e, _))) => Err(kerr("kafka", &format!("publishing to {}", self.topic), e)),
            Err(_) => Err(Error::Connection {
                component: "kafka".into(),
                message: format!("publishing to {}: the producer went away", self.topic),
                source: None,
            }),
        }
    }

    async fn send(&mut self, key: Option<&[u8]>, value: Option<&[u8]>) -> Result<()> {
        loop {
            let mut rec: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&self.topic).headers(self.headers.clone());
            if let Some(k) = key {
                rec = rec.key(k);
            }
            if let Some(v) = value {
                rec = rec.payload(v);
            }
            match self.producer.send_result(rec) {
                Ok(f) => {
                    self.pending.push_back(f);
                    if self.pending.len() >= MAX_IN_FLIGHT {
                        self.settle_one().await?;
                    }
                    return Ok(());
                }
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    _,
                )) => {
                    if self.pending.is_empty() {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    } else {
                        self.settle_one().await?;
                    }
                }
                Err((e, _)) => {
                    return Err(kerr("kafka", &format!("publishing to {}", self.topic), e));
                }
            }
        }
    }
}

#[async_trait]
impl BatchWriter for KafkaWriter {
    fn id(&self) -> &str {
        &self.id
    }
    fn rows(&self) -> u64 {
        self.rows
    }
    fn size(&self) -> u64 {
        self.bytes
    }

    async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        crate::traits::same_schema(&self.id, Some(&self.schema), batch)?;
        for row in 0..batch.num_rows() {
            for (k, v) in self.layout.messages(batch, row)? {
                self.bytes +=
                    (k.as_ref().map_or(0, Vec::len) + v.as_ref().map_or(0, Vec::len)) as u64;
                self.send(k.as_deref(), v.as_deref()).await?;
            }
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<ObjectReport> {
        while !self.pending.is_empty() {
            self.settle_one().await?;
        }
        Ok(ObjectReport {
            key: self.id.clone(),
            rows: self.rows,
            bytes: self.bytes,
            sha256: String::new(),
            table: self.table.clone(),
            schema: Some(SchemaSummary::of(&self.schema)),
        })
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        // Sent messages cannot be taken back (see the type's docs); wait for them so the
        // producer is idle, and report nothing.
        while !self.pending.is_empty() {
            let _ = self.settle_one().await;
        }
        Ok(())
    }
}
