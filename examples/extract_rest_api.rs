//! The book's REST job: the ISS pass-times API flattened to `lat|lon|duration|risetime`
//! and landed as CSV.
//!
//! This machine has no internet, so the example starts a local HTTP server that answers
//! like the real API did, then extracts from it exactly as it would from the real one.
//!
//! Usage: `cargo run --example extract_rest_api --features rest -- [output folder]`
//! (default `./tributary-out/rest`).

use axum::{Json, Router, extract::Query, routing::get};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::process::ExitCode;
use tributary::Pipeline;
use tributary::RetryPolicy;
use tributary::sources::rest::{RestExtractor, RestSource};
use tributary::stores::ObjectSink;

/// What `http://api.open-notify.org/iss-pass.json?lat=..&lon=..` returned.
async fn iss_pass(Query(q): Query<HashMap<String, String>>) -> Json<Value> {
    let lat: f64 = q.get("lat").and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let lon: f64 = q.get("lon").and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let passes: Vec<Value> = (0..5)
        .map(|i| json!({"duration": 600 + 7 * i, "risetime": 1_603_477_200 + 5_800 * i}))
        .collect();
    Json(json!({
        "message": "success",
        "request": {"altitude": 100, "datetime": 1_603_470_000, "latitude": lat, "longitude": lon, "passes": passes.len()},
        "response": passes,
    }))
}

#[tokio::main]
async fn main() -> ExitCode {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "tributary-out/rest".into());
    match run(&out).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("extract_rest_api: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(out: &str) -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        axum::serve(
            listener,
            Router::new().route("/iss-pass.json", get(iss_pass)),
        )
        .await
    });

    // The book: lat = 42.36, lon = 71.05; each pass becomes [lat, lon, duration, risetime].
    let source = RestSource::get(format!("http://{addr}/iss-pass.json"))
        .query("lat", "42.36")
        .query("lon", "71.05")
        .records("/response")
        .parent_field("/request/latitude", "lat")
        .parent_field("/request/longitude", "lon")
        .with_retry(RetryPolicy::default())
        .with_stream_name("iss_passes");
    let store = ObjectSink::local(out)?;
    let report = Pipeline::builder("iss_passes")
        .extractor(RestExtractor::new(source)?)
        .sink(store.clone())
        .build()?
        .run()
        .await
        .into_result()?;
    for o in &report.objects {
        println!("{} ({} rows)", o.key, o.rows);
        print!("{}", String::from_utf8_lossy(&store.read(&o.key).await?));
    }
    Ok(())
}
