//! The book's MongoDB job (one time window, three fields, `|` CSV) over a seeded
//! collection, beside the book's own Python (`benches/anchors/book_mongo.py`: pymongo,
//! every event held in a list, then `csv.writer`), in one run.
//!
//! Run: `cargo bench --all-features --bench mongo` with `TRIBUTARY_BENCH_MONGO_URL`
//! (default: the test server of `scripts/services.sh`, `mongodb://127.0.0.1:27018`),
//! `TRIBUTARY_BENCH_ROWS` documents (default 200,000) and `ANCHORS_VENV` (a venv with
//! pymongo; default: the one `scripts/services.sh` makes for the MongoDB server).
//! Each case runs in a child process of its own, so its peak RSS is its own.
//!
//! On this machine the server is nx-27017 (Python over SQLite), not a real mongod: both
//! clients wait on the same server, so the figures compare client overhead and memory,
//! not what a real mongod would deliver.

mod common;
use chrono::{TimeZone, Utc};
use common::peak_rss_kib;
use mongodb::bson::{DateTime, doc};
use std::time::Instant;
use tributary::Pipeline;
use tributary::sources::mongo::{MongoExtractor, MongoSource};
use tributary::stores::ObjectSink;

const DB: &str = "tributary_bench";
const COLL: &str = "events";

fn uri() -> String {
    std::env::var("TRIBUTARY_BENCH_MONGO_URL")
        .unwrap_or_else(|_| "mongodb://127.0.0.1:27018/?directConnection=true".into())
}

async fn seed(rows: usize) {
    let client = mongodb::Client::with_uri_str(uri()).await.unwrap();
    let coll = client.database(DB).collection(COLL);
    if coll.estimated_document_count().await.unwrap_or(0) as usize == rows {
        return;
    }
    coll.drop().await.ok();
    let t0 = Utc
        .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
        .unwrap()
        .timestamp_millis();
    let mut i = 0;
    while i < rows {
        let chunk: Vec<_> = (i..(i + 10_000).min(rows))
            .map(|n| {
                let name = ["login", "purchase", "logout | \"quoted\""][n % 3];
                doc! {
                    "event_id": n as i64,
                    "event_timestamp": DateTime::from_millis(t0 + n as i64 * 1000),
                    "event_name": name,
                    "payload": { "sku": format!("SKU-{}", n % 997), "qty": (n % 9) as i32 },
                }
            })
            .collect();
        i += chunk.len();
        coll.insert_many(chunk).await.unwrap();
    }
}

async fn tributary_case(case: &str) {
    let dir = tempfile::tempdir().unwrap();
    let source = MongoSource::collection(DB, COLL)
        .server_projection(case == "tributary")
        .fields(["event_id", "event_timestamp", "event_name"])
        .time_window(
            "event_timestamp",
            Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap(),
        );
    let t = Instant::now();
    let p = Pipeline::builder("bench")
        .extractor(MongoExtractor::connect(&uri(), source).await.unwrap())
        .batch_sink(
            tributary::stores::ObjectBatchSink::csv(ObjectSink::local(dir.path()).unwrap())
                .with_manifest_template(None),
        )
        .build()
        .unwrap();
    let r = p.run().await.into_result().unwrap();
    let wall = t.elapsed().as_secs_f64();
    println!(
        "{case:<24} wall {:6.2} s  peak {:6} MiB  ({} rows, {:.0} rows/s)",
        wall,
        peak_rss_kib() / 1024,
        r.rows,
        r.rows as f64 / wall
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let rt = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    if let Ok(case) = std::env::var("TRIBUTARY_BENCH_CASE") {
        rt().block_on(tributary_case(&case));
        return;
    }
    let rows: usize = std::env::var("TRIBUTARY_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    println!("seeding {rows} documents in {DB}.{COLL} at {}", uri());
    rt().block_on(seed(rows));
    // With the server projecting to the three fields (the default), and without.
    for case in ["tributary", "tributary (no projection)"] {
        let status = std::process::Command::new(&args[0])
            .env("TRIBUTARY_BENCH_CASE", case)
            .status()
            .expect("run the case");
        if !status.success() {
            println!("{case} FAILED");
        }
    }
    let venv = std::env::var("ANCHORS_VENV").unwrap_or_else(|_| {
        format!(
            "{}/.cache/tributary-services/mongo-venv",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    let out = tempfile::NamedTempFile::new().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/anchors/book_mongo.py");
    match std::process::Command::new(format!("{venv}/bin/python"))
        .args([script, &uri(), DB, COLL, out.path().to_str().unwrap()])
        .output()
    {
        Ok(o) if o.status.success() => print!("{}", String::from_utf8_lossy(&o.stdout)),
        Ok(o) => println!("book python failed: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => println!("book python skipped ({venv}/bin/python): {e}"),
    }
}
