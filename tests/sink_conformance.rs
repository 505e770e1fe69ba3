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
