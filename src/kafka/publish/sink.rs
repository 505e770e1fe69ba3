//! [`KafkaSink`]: change rows published as Debezium envelopes, one message per change.
use super::config::KafkaSinkConfig;
use super::types::{self, Enc};
use crate::kafka::client::error as kerr;
use crate::model::SchemaSummary;
use crate::model::change::CHANGE_ROLE_KEY;
use crate::{BatchSink, BatchTarget, BatchWriter, Error, ObjectReport, Result};
use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use arrow_schema::{Field, SchemaRef};
use async_trait::async_trait;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use serde_json::{Map, Value, json};
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

/// Where each part of the envelope comes from in a change batch.
struct Layout {
    op: usize,
    position: Option<usize>,
    commit_ts: Option<usize>,
    txid: Option<usize>,
    unsent: Option<usize>,
    data: Vec<(usize, Enc)>,
    before: Vec<(usize, Enc)>,
    keys: Vec<(usize, Enc)>,
    key_schema: Option<Value>,
    value_schema: Option<Value>,
    connector: String,
    prefix: String,
    db: Option<String>,
    name: String,
    schemas: bool,
    tombstones: bool,
}

fn role(f: &Field) -> Option<&str> {
    f.metadata().get(CHANGE_ROLE_KEY).map(String::as_str)
}

impl Layout {
    fn new(config: &KafkaSinkConfig, target: &BatchTarget, schema: &SchemaRef) -> Result<Self> {
        let find = |r: &str| schema.fields().iter().position(|f| role(f) == Some(r));
        let op = find("op").ok_or_else(|| {
            Error::type_error(
                "kafka",
                format!("{}: the Kafka sink publishes change rows (an _op column); these rows have none", target.table),
            )
        })?;
        let mut data = Vec::new();
        let mut before = Vec::new();
        let mut row_schemas = Vec::new();
        for (i, f) in schema.fields().iter().enumerate() {
            match role(f) {
                None => {
                    let (enc, s) = types::encoding(f);
                    data.push((i, enc));
                    row_schemas.push(s);
                }
                Some("before") => before.push((i, types::encoding(f).0)),
                _ => {}
            }
        }
        let key_names = crate::model::key_columns(schema);
        let keys: Vec<(usize, Enc)> = key_names
            .iter()
            .filter_map(|k| schema.index_of(k).ok())
            .map(|i| (i, types::encoding(schema.field(i)).0))
            .collect();
        let connector = config
            .connector
            .clone()
            .unwrap_or_else(|| match target.source.as_str() {
                "postgres" => "postgresql".into(),
                other => other.into(),
            });
        let full = format!("{}.{}", config.prefix, target.table);
        let (db, name) = match target.table.split_once('.') {
            Some((d, n)) => (Some(d.to_string()), n.to_string()),
            None => (None, target.table.clone()),
        };
        let key_schema = (!keys.is_empty()).then(|| {
            let fields = keys
                .iter()
                .map(|(i, _)| {
                    let mut s =
                        types::encoding(&schema.field(*i).as_ref().clone().with_nullable(false)).1;
                    s["optional"] = Value::Bool(false);
                    s
                })
                .collect();
            types::struct_schema(&format!("{full}.Key"), false, fields, None)
        });
        let source_schema = source_schema(&connector);
        let value_schema = types::struct_schema(
            &format!("{full}.Envelope"),
            false,
            vec![
                types::struct_schema(
                    &format!("{full}.Value"),
                    true,
                    row_schemas.clone(),
                    Some("before"),
                ),
                types::struct_schema(&format!("{full}.Value"), true, row_schemas, Some("after")),
                source_schema,
                json!({"type": "string", "optional": false, "field": "op"}),
                json!({"type": "int64", "optional": true, "field": "ts_ms"}),
            ],
            None,
        );
        Ok(Layout {
            op,
            position: find("position"),
            commit_ts: find("commit_ts"),
            txid: find("txid"),
            unsent: find("unsent"),
            data,
            before,
            keys,
            key_schema,
            value_schema: Some(value_schema),
            connector,
            prefix: config.prefix.clone(),
            db,
            name,
            schemas: config.schemas,
            tombstones: config.tombstones,
        })
    }

    fn wrap(&self, schema: Option<&Value>, payload: Value) -> Value {
        match (self.schemas, schema) {
            (true, Some(s)) => json!({"schema": s, "payload": payload}),
            _ => payload,
        }
    }

    fn image(
        &self,
        b: &RecordBatch,
        cols: &[(usize, Enc)],
        names_from: &[(usize, Enc)],
        row: usize,
        unsent: &[String],
    ) -> Result<Value> {
        let schema = b.schema();
        let mut m = Map::new();
        for ((i, enc), (ni, _)) in cols.iter().zip(names_from) {
            let name = schema.field(*ni).name();
            let v = if unsent.iter().any(|u| u == name) {
                Value::from(crate::kafka::debezium::UNAVAILABLE_VALUE)
            } else {
                types::value(*enc, b.column(*i), schema.field(*i), row)?
            };
            m.insert(name.clone(), v);
        }
        Ok(Value::Object(m))
    }

    /// The key and value messages of one row (a delete adds a tombstone).
    fn messages(&self, b: &RecordBatch, row: usize) -> Result<Vec<Msg>> {
        let text = |i: Option<usize>| -> Option<String> {
            let a = b.column(i?);
            (!a.is_null(row)).then(|| a.as_string::<i32>().value(row).to_string())
        };
        let op = text(Some(self.op)).unwrap_or_default();
        let code = match op.as_str() {
            "insert" => "c",
            "update" => "u",
            "delete" => "d",
            "snapshot" => "r",
            "truncate" => "t",
            other => {
                return Err(Error::type_error(
                    "kafka",
                    format!("_op {other:?} is not an op"),
                ));
            }
        };
        let unsent: Vec<String> = match self.unsent {
            Some(i) if !b.column(i).is_null(row) => {
                let l = b.column(i).as_list::<i32>().value(row);
                let s = l.as_string::<i32>();
                (0..s.len())
                    .filter(|j| !s.is_null(*j))
                    .map(|j| s.value(j).to_string())
                    .collect()
            }
            _ => Vec::new(),
        };
        let data = if code == "t" {
            Value::Null
        } else {
            self.image(b, &self.data, &self.data, row, &unsent)?
        };
        let before_image = if code == "u"
            && !self.before.is_empty()
            && self.before.iter().any(|(i, _)| !b.column(*i).is_null(row))
        {
            self.image(b, &self.before, &self.data, row, &[])?
        } else {
            Value::Null
        };
        let (before, after) = match code {
            "d" => (data, Value::Null),
            "t" => (Value::Null, Value::Null),
            "u" => (before_image, data),
            _ => (Value::Null, data),
        };
        let ts_ms = match self.commit_ts {
            Some(i) if !b.column(i).is_null(row) => b
                .column(i)
                .as_primitive::<arrow_array::types::TimestampMicrosecondType>()
                .value(row)
                .div_euclid(1000),
            _ => chrono::Utc::now().timestamp_millis(),
        };
        let position = text(self.position);
        let txid = text(self.txid);
        let mut source = Map::new();
        source.insert(
            "version".into(),
            Value::from(concat!("tributary-", env!("CARGO_PKG_VERSION"))),
        );
        source.insert("connector".into(), Value::from(self.connector.clone()));
        source.insert("name".into(), Value::from(self.prefix.clone()));
        source.insert("ts_ms".into(), Value::from(ts_ms));
        source.insert(
            "snapshot".into(),
            Value::from(if code == "r" { "true" } else { "false" }),
        );
        if self.connector == "postgresql" {
            source.insert("db".into(), Value::Null);
            source.insert("sequence".into(), Value::Null);
            source.insert("schema".into(), self.db.clone().into());
            source.insert("table".into(), Value::from(self.name.clone()));
            source.insert(
                "txId".into(),
                txid.as_deref().and_then(|t| t.parse::<i64>().ok()).into(),
            );
            let lsn = position.as_deref().and_then(|p| {
                let (hi, lo) = p.split_once('/')?;
                Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
            });
            source.insert("lsn".into(), lsn.into());
            source.insert("xmin".into(), Value::Null);
        } else {
            source.insert("db".into(), self.db.clone().into());
            source.insert("sequence".into(), Value::Null);
            source.insert("table".into(), Value::from(self.name.clone()));
            source.insert("server_id".into(), Value::from(0));
            let (file, pos) = match position.as_deref().and_then(|p| p.rsplit_once(':')) {
                Some((f, p)) if p.bytes().all(|c| c.is_ascii_digit()) && !f.contains('-') => {
                    (Some(f.to_string()), p.parse::<i64>().ok())
                }
                _ => (None, None),
            };
            source.insert("gtid".into(), txid.clone().into());
            source.insert("file".into(), Value::from(file.unwrap_or_default()));
            source.insert("pos".into(), Value::from(pos.unwrap_or(0)));
            source.insert("row".into(), Value::from(0));
            source.insert("thread".into(), Value::Null);
            source.insert("query".into(), Value::Null);
        }
        let payload = json!({
            "before": before,
            "after": after,
            "source": Value::Object(source),
            "op": code,
            "ts_ms": chrono::Utc::now().timestamp_millis(),
        });
        let key = if self.keys.is_empty() || code == "t" {
            None
        } else {
            let schema = b.schema();
            let mut m = Map::new();
            for (i, enc) in &self.keys {
                m.insert(
                    schema.field(*i).name().clone(),
                    types::value(*enc, b.column(*i), schema.field(*i), row)?,
                );
            }
            Some(
                serde_json::to_vec(&self.wrap(self.key_schema.as_ref(), Value::Object(m)))
                    .map_err(json_err)?,
            )
        };
        let value = serde_json::to_vec(&self.wrap(self.value_schema.as_ref(), payload))
            .map_err(json_err)?;
        let mut out = vec![(key.clone(), Some(value))];
        if code == "d" && self.tombstones && key.is_some() {
            out.push((key, None));
        }
        Ok(out)
    }
}

/// One message: its key and value bytes (`None`: null).
type Msg = (Option<Vec<u8>>, Option<Vec<u8>>);

fn json_err(e: serde_json::Error) -> Error {
    Error::type_error("kafka", format!("encoding an envelope: {e}"))
}

fn source_schema(connector: &str) -> Value {
    let f = |name: &str, ty: &str, optional: bool| json!({"type": ty, "optional": optional, "field": name});
    let mut fields = vec![
        f("version", "string", false),
        f("connector", "string", false),
        f("name", "string", false),
        f("ts_ms", "int64", false),
        json!({"type": "string", "optional": true, "name": "io.debezium.data.Enum", "version": 1,
               "parameters": {"allowed": "true,first,first_in_data_collection,last_in_data_collection,last,false,incremental"},
               "default": "false", "field": "snapshot"}),
        f("db", "string", connector == "mysql"),
        f("sequence", "string", true),
    ];
    let (name, rest) = if connector == "postgresql" {
        (
            "io.debezium.connector.postgresql.Source",
            vec![
                f("schema", "string", false),
                f("table", "string", false),
                f("txId", "int64", true),
                f("lsn", "int64", true),
                f("xmin", "int64", true),
            ],
        )
    } else {
        (
            "io.debezium.connector.mysql.Source",
            vec![
                f("table", "string", true),
                f("server_id", "int64", false),
                f("gtid", "string", true),
                f("file", "string", false),
                f("pos", "int64", false),
                f("row", "int32", false),
                f("thread", "int64", true),
                f("query", "string", true),
            ],
        )
    };
    fields.extend(rest);
    types::struct_schema(name, false, fields, Some("source"))
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
