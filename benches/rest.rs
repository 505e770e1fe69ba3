//! REST extraction throughput: 100,000 items served 1,000 per page (offset pagination)
//! by a local HTTP server, extracted to `|`-delimited CSV; side by side with the book's
//! approach (Python `requests` + `csv.writer`) against the same server in the same run.
//!
//! Run: `cargo bench --bench rest --features rest` (items: `TRIBUTARY_BENCH_ITEMS`).

use axum::{Router, extract::Query, routing::get};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tributary::Pipeline;
use tributary::sources::rest::{Pagination, RestExtractor, RestSource};
use tributary::stores::ObjectSink;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let items: u64 = std::env::var("TRIBUTARY_BENCH_ITEMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        // Pages are pre-rendered so that the server's cost is the same for both clients.
        let pages: Arc<Vec<String>> = Arc::new(
            (0..items.div_ceil(1000))
                .map(|p| {
                    let data: Vec<Value> = (p * 1000 + 1..=((p + 1) * 1000).min(items))
                        .map(|i| json!({"id": i, "name": format!("item {i} | \"quoted\""), "lat": 41.5 + i as f64 / 1e6,
                                        "lon": -81.7, "duration": 600 + i % 60, "risetime": 1_603_477_200 + i}))
                        .collect();
                    serde_json::to_string(&json!({ "data": data })).unwrap()
                })
                .collect(),
        );
        let pages2 = pages.clone();
        let router = Router::new().route(
            "/items",
            get(move |Query(q): Query<HashMap<String, String>>| {
                let pages = pages2.clone();
                async move {
                    let offset: usize = q.get("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
                    let body = pages.get(offset / 1000).cloned().unwrap_or_else(|| "{\"data\": []}".into());
                    ([("content-type", "application/json")], body)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

        let dir = tempfile::tempdir().unwrap();
        let t = Instant::now();
        let r = Pipeline::builder("rest")
            .extractor(
                RestExtractor::new(RestSource::get(format!("http://{addr}/items")).records("/data").paginate(Pagination::Offset {
                    offset_param: "offset".into(),
                    limit_param: "limit".into(),
                    limit: 1000,
                }))
                .unwrap(),
            )
            .sink(ObjectSink::local(dir.path()).unwrap())
            .build()
            .unwrap()
            .run()
            .await
            .into_result()
            .unwrap();
        let wall = t.elapsed().as_secs_f64();
        assert_eq!(r.rows, items);
        println!("tributary rest         wall {wall:6.2} s  {:9.0} items/s  out {:.1} MB", items as f64 / wall, r.bytes as f64 / 1e6);

        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/anchors/book_rest.py");
        let venv = std::env::var("ANCHORS_VENV").unwrap_or_else(|_| format!("{}/.cache/tributary-anchors-venv", std::env::var("HOME").unwrap_or_default()));
        let python = format!("{venv}/bin/python");
        let out = dir.path().join("book.csv");
        let url = format!("http://{addr}/items");
        let child = tokio::process::Command::new(&python).arg(script).arg(&url).arg(&out).output().await;
        match child {
            Ok(o) if o.status.success() => print!("{}", String::from_utf8_lossy(&o.stdout)),
            Ok(o) => println!("python anchor failed: {}", String::from_utf8_lossy(&o.stderr)),
            Err(e) => println!("python anchor skipped ({python}: {e})"),
        }
    });
}
