//! Conformance suites (feature `test-util`): run any [`Sink`] through the same checks
//! that tributary's own sinks pass, against memory, a local folder and real servers;
//! any [`BatchSink`](crate::BatchSink) through [`batch_sink_suite`]; and any bounded
//! [`Extractor`](crate::Extractor) through [`extractor_suite`].
//!
//! ```
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! use tributary::stores::ObjectSink;
//! tributary::testing::sink_suite(&ObjectSink::memory(), "suite").await;
//! # });
//! ```

mod batch_sink;
mod extractor;

pub use batch_sink::{BatchProbe, batch_sink_suite};
pub use extractor::{ExtractorSuiteReport, extractor_suite};
/// Rows at one cursor value a keyed SQL watermark lists before it keeps a keyset
/// position (for tests that go past it).
#[cfg(feature = "sql")]
pub const KEYED_SEEN_LIMIT: usize = crate::sources::sql::watermark::KEYED_SEEN_LIMIT;
/// Rows at one cursor value a key-less SQL watermark lists before the extraction stops
/// (for tests that go past it).
#[cfg(feature = "sql")]
pub const KEYLESS_SEEN_LIMIT: usize = crate::sources::sql::watermark::KEYLESS_SEEN_LIMIT;

use crate::stores::ObjectSink;
use crate::{ObjectTarget, Result, Sink};
use async_trait::async_trait;
use bytes::Bytes;
use std::time::Duration;

/// Read access to what a sink made visible, so the suite can check visibility rules.
#[async_trait]
pub trait SinkProbe: Send + Sync {
    /// The object at `key`, or `None` if nothing is visible there.
    async fn probe(&self, key: &str) -> Result<Option<Bytes>>;
    /// Keys visible under `prefix`.
    async fn probe_list(&self, prefix: &str) -> Result<Vec<String>>;
}

#[async_trait]
impl SinkProbe for ObjectSink {
    async fn probe(&self, key: &str) -> Result<Option<Bytes>> {
        match self.read(key).await {
            Ok(b) => Ok(Some(b)),
            Err(crate::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
    async fn probe_list(&self, prefix: &str) -> Result<Vec<String>> {
        match self.list(prefix).await {
            Ok(k) => Ok(k),
            Err(crate::Error::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}

fn target(key: &str) -> ObjectTarget {
    ObjectTarget::new(key, "text/csv")
}

/// Deterministic bytes of length `n` (not all equal, so misplaced parts are caught).
pub fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ ((i >> 8) as u8))
        .collect()
}

/// Every check, each under its own key below `prefix`. Panics on the first violation.
pub async fn sink_suite<S: Sink + SinkProbe>(sink: &S, prefix: &str) {
    commit_makes_whole_object_visible(sink, prefix).await;
    abort_leaves_nothing(sink, prefix).await;
    dropped_writer_leaves_nothing(sink, prefix).await;
    cancelled_task_leaves_nothing(sink, prefix).await;
    empty_object(sink, prefix).await;
    large_multipart_object(sink, prefix).await;
    concurrent_writers(sink, prefix).await;
    same_key_commits_are_whole(sink, prefix).await;
}

/// Bytes written in several calls are invisible until commit, then visible whole; the
/// receipt's size and SHA-256 match.
pub async fn commit_makes_whole_object_visible<S: Sink + SinkProbe>(sink: &S, prefix: &str) {
    let key = format!("{prefix}/commit/a.csv");
    let mut w = sink.open(&target(&key)).await.expect("open");
    let mut all = Vec::new();
    for i in 0..5u8 {
        let chunk = pattern(1000 + i as usize, i);
        all.extend_from_slice(&chunk);
        w.write(Bytes::from(chunk)).await.expect("write");
    }
    assert_eq!(
        sink.probe(&key).await.expect("probe"),
        None,
        "{key} visible before commit"
    );
    let receipt = w.commit().await.expect("commit");
    assert_eq!(receipt.key, key);
    assert_eq!(receipt.bytes, all.len() as u64);
    assert_eq!(receipt.sha256, crate::util::sha256_hex(&all));
    assert_eq!(
        sink.probe(&key).await.expect("probe").as_deref(),
        Some(&all[..])
    );
}

/// `abort` leaves nothing at the final key and nothing listed under it.
pub async fn abort_leaves_nothing<S: Sink + SinkProbe>(sink: &S, prefix: &str) {
    let key = format!("{prefix}/abort/a.csv");
    let mut w = sink.open(&target(&key)).await.expect("open");
    w.write(Bytes::from(pattern(10_000, 1)))
        .await
        .expect("write");
    w.abort().await.expect("abort");
    assert_eq!(sink.probe(&key).await.expect("probe"), None);
    assert_eq!(
        sink.probe_list(&format!("{prefix}/abort"))
            .await
            .expect("list"),
        Vec::<String>::new()
    );
}

/// A writer dropped without commit (a panic unwinding, a forgotten writer) leaves nothing.
pub async fn dropped_writer_leaves_nothing<S: Sink + SinkProbe>(sink: &S, prefix: &str) {
    let key = format!("{prefix}/dropped/a.csv");
    {
        let mut w = sink.open(&target(&key)).await.expect("open");
        w.write(Bytes::from(pattern(10_000, 2)))
            .await
            .expect("write");
    }
    tokio::time::sleep(Duration::from_millis(200)).await; // background clean-up
    assert_eq!(sink.probe(&key).await.expect("probe"), None);
    assert_eq!(
        sink.probe_list(&format!("{prefix}/dropped"))
            .await
            .expect("list"),
        Vec::<String>::new()
    );
}

/// A task killed in the middle of writing (as on shutdown) leaves nothing.
pub async fn cancelled_task_leaves_nothing<S: Sink + SinkProbe>(sink: &S, prefix: &str) {
    let key = format!("{prefix}/cancelled/a.csv");
    let w = sink.open(&target(&key)).await.expect("open");
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut w = w;
        w.write(Bytes::from(pattern(1000, 3))).await.expect("write");
        let _ = started_tx.send(());
        std::future::pending::<()>().await;
        w.commit().await
    });
    started_rx.await.expect("task started");
    task.abort();
    let _ = task.await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sink.probe(&key).await.expect("probe"), None);
}

/// A committed object with no bytes exists and is empty.
pub async fn empty_object<S: Sink + SinkProbe>(sink: &S, prefix: &str) {
    let key = format!("{prefix}/empty/a.csv");
    let w = sink.open(&target(&key)).await.expect("open");
    let r = w.commit().await.expect("commit");
    assert_eq!(r.bytes, 0);
    assert_eq!(
        sink.probe(&key).await.expect("probe").as_deref(),
        Some(&b""[..])
    );
}

/// An object larger than several upload parts arrives intact.
pub async fn large_multipart_object<S: Sink + SinkProbe>(sink: &S, prefix: &str) {
    let key = format!("{prefix}/large/a.csv");
    let mut w = sink.open(&target(&key)).await.expect("open");
    let mut all = Vec::with_capacity(12 << 20);
    for i in 0..48u8 {
        let chunk = pattern(256 * 1024 + i as usize, i);
        all.extend_from_slice(&chunk);
        w.write(Bytes::from(chunk)).await.expect("write");
    }
    let r = w.commit().await.expect("commit");
    assert_eq!(r.bytes, all.len() as u64);
    assert_eq!(r.sha256, crate::util::sha256_hex(&all));
    let got = sink
        .probe(&key)
        .await
        .expect("probe")
        .expect("object exists");
    assert_eq!(got.len(), all.len());
    assert!(got[..] == all[..], "large object corrupted");
}

/// Writers to different keys at the same time do not interfere.
pub async fn concurrent_writers<S: Sink + SinkProbe>(sink: &S, prefix: &str) {
    let mut writers = Vec::new();
    for i in 0..8u8 {
        let key = format!("{prefix}/concurrent/{i}.csv");
        writers.push((
            key.clone(),
            sink.open(&target(&key)).await.expect("open"),
            pattern(50_000, i),
        ));
    }
    let results =
        futures::future::join_all(writers.into_iter().map(|(key, mut w, data)| async move {
            for c in data.chunks(7_000) {
                w.write(Bytes::copy_from_slice(c)).await?;
            }
            w.commit().await.map(|_| (key, data))
        }))
        .await;
    for r in results {
        let (key, data) = r.expect("concurrent commit");
        assert_eq!(
            sink.probe(&key).await.expect("probe").as_deref(),
            Some(&data[..]),
            "{key}"
        );
    }
}

/// Two writers to one key (a retried run racing its first attempt): the object is one
/// of the two, whole, never a mix.
pub async fn same_key_commits_are_whole<S: Sink + SinkProbe>(sink: &S, prefix: &str) {
    let key = format!("{prefix}/same/a.csv");
    let a = pattern(100_000, 7);
    let b = pattern(100_000, 9);
    let mut wa = sink.open(&target(&key)).await.expect("open a");
    let mut wb = sink.open(&target(&key)).await.expect("open b");
    for (ca, cb) in a.chunks(10_000).zip(b.chunks(10_000)) {
        wa.write(Bytes::copy_from_slice(ca)).await.expect("write a");
        wb.write(Bytes::copy_from_slice(cb)).await.expect("write b");
    }
    wa.commit().await.expect("commit a");
    assert_eq!(
        sink.probe(&key).await.expect("probe").as_deref(),
        Some(&a[..])
    );
    wb.commit().await.expect("commit b");
    assert_eq!(
        sink.probe(&key).await.expect("probe").as_deref(),
        Some(&b[..])
    );
}
