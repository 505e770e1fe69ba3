//! Full extraction of the `orders` table of `../shared/bench/seed.sh` to a `|`-delimited
//! CSV object in a local folder, printed in the same format as
//! `../shared/bench/anchors.sh` so the two can be read side by side.
//!
//! Run: `scripts/bench.sh` (seeds, runs the anchors and this), or
//! `cargo bench --bench extract --all-features` against a seeded database.
//! Servers: `TRIBUTARY_BENCH_PG_URL` (default `postgres://postgres@127.0.0.1:5432/test`),
//! `TRIBUTARY_BENCH_MYSQL_URL` (default `mysql://root@127.0.0.1:3306/test`), table
//! `TRIBUTARY_BENCH_TABLE` (default `orders`).
//!
//! Each case runs in a child process of its own, so its peak RSS is its own.

mod common;
use common::peak_rss_kib;
use std::time::Instant;
use tributary::sources::mysql::MySqlExtractor;
use tributary::sources::postgres::PostgresExtractor;
use tributary::sources::sql::SqlSource;
use tributary::stores::ObjectSink;
use tributary::{Extractor, Pipeline, PipelineOptions};

async fn one(case: &str) {
    let pg = std::env::var("TRIBUTARY_BENCH_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let my = std::env::var("TRIBUTARY_BENCH_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
    let table = std::env::var("TRIBUTARY_BENCH_TABLE").unwrap_or_else(|_| "orders".into());
    let dir = tempfile::tempdir().unwrap();
    let sink = if case.ends_with("_nosync") {
        // The cost of durability: the same local folder as object_store gives it by
        // default, without fsync (what `psql \copy` does: it never fsyncs its file).
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        ObjectSink::new(std::sync::Arc::new(fs), "file (no fsync)")
    } else {
        ObjectSink::local(dir.path()).unwrap()
    };
    let label = case;
    let case = case.trim_end_matches("_nosync");
    let source = SqlSource::table(table);
    let (extractor, encoded): (Box<dyn Extractor>, bool) = match case {
        "pg_copy_path" => (
            Box::new(PostgresExtractor::connect_lazy(&pg, source).unwrap()),
            true,
        ),
        "pg_typed_path" => (
            Box::new(PostgresExtractor::connect_lazy(&pg, source).unwrap()),
            false,
        ),
        "my_typed_path" => (
            Box::new(MySqlExtractor::connect_lazy(&my, source).unwrap()),
            false,
        ),
        other => panic!("unknown case {other}"),
    };
    let p = Pipeline::builder("bench")
        .extractor(extractor)
        .batch_sink(
            tributary::stores::ObjectBatchSink::csv(sink.clone()).with_manifest_template(None),
        )
        .options(PipelineOptions::new().with_encoded_path(encoded))
        .build()
        .unwrap();
    let t = Instant::now();
    let r = p.run().await.into_result().unwrap();
    let wall = t.elapsed().as_secs_f64();
    assert_eq!(r.source_encoded, encoded);
    println!(
        "tributary {:<20} wall {:6.2} s  peak {:6} MiB  out {:5} MiB  ({} rows, {:.0} rows/s)",
        label,
        wall,
        peak_rss_kib() / 1024,
        r.bytes / 1_048_576,
        r.rows,
        r.rows as f64 / wall
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    if let Ok(case) = std::env::var("TRIBUTARY_BENCH_CASE") {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(one(&case));
        return;
    }
    let cases = std::env::var("TRIBUTARY_BENCH_CASES")
        .unwrap_or_else(|_| "pg_copy_path,pg_copy_path_nosync,pg_typed_path,my_typed_path".into());
    for case in cases.split(',') {
        let status = std::process::Command::new(&args[0])
            .env("TRIBUTARY_BENCH_CASE", case)
            .status()
            .expect("run the case");
        if !status.success() {
            println!("tributary {case:<14} FAILED");
        }
    }
}
