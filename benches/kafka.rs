//! Kafka side by side with the Python a user would otherwise write (`confluent-kafka`
//! from PyPI, `benches/anchors/kafka_anchor.py`) on the tansu broker of
//! `scripts/services.sh`, N change rows of the `orders` shape (default 200,000):
//!
//! - publish: `KafkaSink` encodes N change rows as Debezium envelopes (with schemas) and
//!   waits for every acknowledgement, beside a Python producer sending the same
//!   envelopes already encoded (so it does no encoding at all);
//! - land: `KafkaExtractor` reads the topic to its end, decodes every envelope by its
//!   schema and lands `|` CSV, beside a Python consumer writing `op|values` with
//!   `csv.writer` (no decoding of decimals or timestamps).
//!
//! (`kcat` from Debian cannot be the anchor: its librdkafka 2.0.2 fails the handshake
//! with tansu.) Run: `cargo bench --bench kafka --all-features` (`TRIBUTARY_BENCH_KAFKA`,
//! default `127.0.0.1:9092`; `TRIBUTARY_BENCH_KAFKA_N`; Python: `ANCHORS_VENV`, default
//! `~/.cache/tributary-anchors-venv`). Each tributary case runs in a child process of its
//! own, so its peak RSS is its own.

mod common;
use arrow_array::{
    Decimal128Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use common::{peak_rss_kib, timed, walk};
use std::sync::Arc;
use std::time::Instant;
use tributary::kafka::KafkaClientConfig;
use tributary::kafka::{KafkaConfig, KafkaExtractor};
use tributary::kafka::{KafkaSink, KafkaSinkConfig};
use tributary::model::{ChangeMeta, ChangeOptions, ChangeSchema, Op, key_field};
use tributary::sources::MemoryExtractor;
use tributary::stores::ObjectSink;
use tributary::{Batch, Pipeline};

fn servers() -> String {
    std::env::var("TRIBUTARY_BENCH_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

fn batches(n: u64) -> Vec<Batch> {
    let row = Arc::new(Schema::new(vec![
        key_field(Field::new("id", DataType::Int64, false), 1),
        Field::new("status", DataType::Utf8, true),
        Field::new("amount", DataType::Decimal128(12, 2), true),
        Field::new("note", DataType::Utf8, true),
        Field::new(
            "created_at",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            true,
        ),
    ]));
    let cs = ChangeSchema::new(row.clone(), ChangeOptions::new()).unwrap();
    let mut out = Vec::new();
    let mut start = 0i64;
    while (start as u64) < n {
        let end = (start + 8192).min(n as i64);
        let ids: Vec<i64> = (start..end).collect();
        let rows = RecordBatch::try_new(
            row.clone(),
            vec![
                Arc::new(Int64Array::from(ids.clone())),
                Arc::new(StringArray::from_iter_values(
                    ids.iter()
                        .map(|i| ["Backordered", "Shipped", "Pending"][*i as usize % 3]),
                )),
                Arc::new(
                    Decimal128Array::from_iter_values(
                        ids.iter().map(|i| (*i as i128 * 31) % 1_000_000),
                    )
                    .with_precision_and_scale(12, 2)
                    .unwrap(),
                ),
                Arc::new(StringArray::from_iter(ids.iter().map(|i| {
                    (i % 3 != 0).then(|| format!("note for order {i} with | pipe"))
                }))),
                Arc::new(TimestampMicrosecondArray::from_iter_values(
                    ids.iter().map(|i| 1_577_836_800_000_000 + i * 1_000_000),
                )),
            ],
        )
        .unwrap();
        let k = ids.len();
        let b = cs
            .build(
                &vec![Op::Insert; k],
                &vec![ChangeMeta::default(); k],
                &rows,
                None,
                &[],
            )
            .unwrap();
        out.push(Batch::new(b).with_table("shop.orders"));
        start = end;
    }
    out
}

async fn publish(prefix: &str, n: u64) {
    let started = Instant::now();
    let r = Pipeline::builder("bench")
        .extractor(MemoryExtractor::new("mysql", "orders", batches(n)))
        .batch_sink(
            KafkaSink::new(
                KafkaSinkConfig::new(KafkaClientConfig::new(servers()), prefix)
                    .with_tombstones(false),
            )
            .unwrap(),
        )
        .build()
        .unwrap()
        .run()
        .await
        .into_result()
        .unwrap();
    let wall = started.elapsed().as_secs_f64();
    println!(
        "tributary KafkaSink     {n} rows  wall {wall:6.2} s  peak {:4} MiB  {:9.0} rows/s",
        peak_rss_kib() / 1024,
        r.rows as f64 / wall
    );
}

async fn land(topic: &str, n: u64) {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let r = Pipeline::builder("bench")
        .extractor(
            KafkaExtractor::new(
                KafkaConfig::new(
                    KafkaClientConfig::new(servers()),
                    format!("{topic}-land-{}", std::process::id()),
                    [topic],
                )
                .until_current_end(),
            )
            .unwrap(),
        )
        .sink(ObjectSink::local(dir.path()).unwrap())
        .build()
        .unwrap()
        .run()
        .await
        .into_result()
        .unwrap();
    let wall = started.elapsed().as_secs_f64();
    let bytes: u64 = walk(dir.path())
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    assert_eq!(r.rows, n, "landed {} of {n}", r.rows);
    println!(
        "tributary KafkaExtractor {n} rows  wall {wall:6.2} s  peak {:4} MiB  {:9.0} rows/s  out {} MiB",
        peak_rss_kib() / 1024,
        r.rows as f64 / wall,
        bytes / 1_048_576
    );
}

/// Create `topic` (tansu creates none by itself).
async fn create_topic(topic: &str) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", servers())
        .create()
        .unwrap();
    admin
        .create_topics(
            [&NewTopic::new(topic, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
}

/// The topic's message values, one per line (they hold no newline: JSON escapes it).
async fn dump_values(topic: &str, path: &std::path::Path, n: u64) {
    use rdkafka::Message;
    use rdkafka::consumer::{Consumer, StreamConsumer};
    let c: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", servers())
        .set("group.id", format!("dump-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    let mut seen = 0;
    while seen < n {
        let m = c.recv().await.unwrap();
        if let Some(v) = m.payload() {
            out.extend_from_slice(v);
            out.push(b'\n');
            seen += 1;
        }
    }
    std::fs::write(path, out).unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let n: u64 = std::env::var("TRIBUTARY_BENCH_KAFKA_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    if let Ok(case) = std::env::var("TRIBUTARY_BENCH_CASE") {
        let (kind, name) = case.split_once(',').unwrap();
        match kind {
            "publish" => rt.block_on(publish(name, n)),
            _ => rt.block_on(land(name, n)),
        }
        return;
    }
    let child = |kind: &str, name: &str| {
        let st = std::process::Command::new(&args[0])
            .env("TRIBUTARY_BENCH_CASE", format!("{kind},{name}"))
            .status()
            .expect("run the case");
        if !st.success() {
            println!("tributary {kind} FAILED");
        }
    };
    let run = format!("bench{}", std::process::id());
    let topic = format!("{run}.shop.orders");
    println!(
        "== {n} change rows of orders, Debezium JSON with schemas, broker {}",
        servers()
    );
    child("publish", &run);
    // The anchors: the book-style Python consumer and producer (confluent-kafka), and a
    // raw dump of the envelopes for the producer to send again.
    let py = std::env::var("ANCHORS_VENV")
        .map(|v| format!("{v}/bin/python"))
        .unwrap_or_else(|_| {
            format!(
                "{}/.cache/tributary-anchors-venv/bin/python",
                std::env::var("HOME").unwrap_or_default()
            )
        });
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/anchors/kafka_anchor.py"
    );
    let csv_out = tempfile::NamedTempFile::new().unwrap();
    let (wall, mib, out) = timed(
        std::process::Command::new(&py)
            .args([script, "consume", &servers(), &topic])
            .arg(csv_out.path()),
    );
    let size = std::fs::metadata(csv_out.path())
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "python confluent-kafka consume {} rows  wall {wall:6.2} s  peak {mib:4} MiB  out {} MiB",
        out.trim(),
        size / 1_048_576
    );
    child("land", &topic);
    // The envelopes as lines, for the producer anchor: dumped by the land case's reader
    // would add its own cost, so render them again here, untimed.
    let dump = tempfile::NamedTempFile::new().unwrap();
    rt.block_on(dump_values(&topic, dump.path(), n));
    let copy = format!("{topic}.py");
    rt.block_on(create_topic(&copy));
    let (wall, mib, _) = timed(
        std::process::Command::new(&py)
            .args([script, "produce", &servers(), &copy])
            .arg(dump.path()),
    );
    println!(
        "python confluent-kafka produce (pre-encoded) {n} rows  wall {wall:6.2} s  peak {mib:4} MiB"
    );
}
