//! Every sink tributary ships passes the same conformance suite.

mod common;

use tributary::stores::ObjectSink;
use tributary::testing::sink_suite;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_conforms() {
    sink_suite(&ObjectSink::memory(), "suite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_folder_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let sink = ObjectSink::local(dir.path()).unwrap();
    sink_suite(&sink, "suite").await;
    // No staging file survives anywhere in the folder.
    let leftovers: Vec<_> = walk(dir.path())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains('#'))
        .collect();
    assert!(
        leftovers.is_empty(),
        "staging files left behind: {leftovers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_compatible_server_conforms() {
    let Some((bucket, opts)) = common::s3_options() else {
        return;
    };
    let prefix = common::unique("conformance");
    let sink =
        ObjectSink::from_url_with_options(&format!("s3://{bucket}/{prefix}"), &opts).unwrap();
    sink_suite(&sink, "suite").await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

// The batch-level sinks: the object sink every pipeline uses, on each store, and rows in
// memory.

use tributary::format::{Compression, Csv, JsonLines};
use tributary::stores::{MemoryBatchSink, ObjectBatchSink};
use tributary::testing::batch_sink_suite;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_sinks_conform_on_memory_folder_and_rows() {
    let objects = ObjectSink::memory();
    batch_sink_suite(&ObjectBatchSink::csv(objects.clone()), &objects, "csv").await;
    let gz = ObjectBatchSink::new(objects.clone(), JsonLines::default())
        .unwrap()
        .with_compression(Compression::Gzip)
        .unwrap();
    batch_sink_suite(&gz, &objects, "jsonl-gz").await;
    let dir = tempfile::tempdir().unwrap();
    let folder = ObjectSink::local(dir.path()).unwrap();
    batch_sink_suite(
        &ObjectBatchSink::new(folder.clone(), Csv::default()).unwrap(),
        &folder,
        "dir",
    )
    .await;
    let rows = MemoryBatchSink::new();
    batch_sink_suite(&rows, &rows, "rows").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_sink_conforms_on_the_s3_compatible_server() {
    let Some((bucket, opts)) = common::s3_options() else {
        return;
    };
    let prefix = common::unique("batch-conformance");
    let sink =
        ObjectSink::from_url_with_options(&format!("s3://{bucket}/{prefix}"), &opts).unwrap();
    batch_sink_suite(&ObjectBatchSink::csv(sink.clone()), &sink, "s3").await;
}
