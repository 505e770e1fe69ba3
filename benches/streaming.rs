//! What a commit costs as a run ages (issue 9, item 6): an unbounded change stream
//! committing one part per event (part, epoch manifest, checkpoint save, acknowledgement)
//! timed over parts 10-110 and the last 100 of 10,010; beside it, a bounded run of the same
//! shape, whose one manifest is rewritten with every object at every save (the cost
//! unbounded streams had before epoch manifests).
//!
//! Run: `cargo bench --bench streaming` (parts: `TRIBUTARY_BENCH_PARTS`, default 10,010;
//! the bounded comparison stops at 2,010 parts, its cost grows with every part).
//! In memory (store and state), so the figures are the pipeline's own work.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tributary::arrow_array::{Int64Array, RecordBatch};
use tributary::arrow_schema::{DataType, Field, Schema};
use tributary::model::{ChangeMeta, ChangeOptions, ChangeSchema, Op};
use tributary::sources::{ChangeEvent, MemoryChangeStream, MemoryExtractor};
use tributary::stores::{ObjectSink, ObjectStateStore};
use tributary::{Batch, Checkpoint, Extractor, Pipeline, PipelineOptions};

fn events(n: u64) -> Vec<ChangeEvent> {
    let row = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
    let cs = ChangeSchema::new(row.clone(), ChangeOptions::new()).unwrap();
    (1..=n)
        .map(|i| {
            let rows = RecordBatch::try_new(
                row.clone(),
                vec![Arc::new(Int64Array::from(vec![i as i64]))],
            )
            .unwrap();
            let b = cs
                .build(&[Op::Insert], &[ChangeMeta::default()], &rows, None, &[])
                .unwrap();
            ChangeEvent::rows(i, "t", b)
        })
        .collect()
}

/// Commit times (the moment each object was committed), from the progress callback.
async fn commit_times(extractor: impl Extractor, n: u64, bounded: bool) -> Vec<Instant> {
    let sink = ObjectSink::memory();
    let times = Arc::new(Mutex::new(Vec::with_capacity(n as usize)));
    let t = times.clone();
    let mut opts = PipelineOptions::new().with_part_max_rows(1);
    if !bounded {
        opts = opts.with_commit_interval(Duration::from_secs(3600));
    }
    let pipeline = Pipeline::builder("bench")
        .extractor(extractor)
        .sink(sink.clone())
        // The state on a store of its own: listing an in-memory store scans all of it,
        // which would time the test store, not the pipeline.
        .state(ObjectStateStore::new(ObjectSink::memory(), "_state"))
        .options(opts)
        .on_progress(move |p| {
            let mut t = t.lock().unwrap();
            if p.objects_committed as usize > t.len() {
                t.push(Instant::now());
            }
        })
        .build()
        .unwrap();
    let token = pipeline.cancellation_token();
    let run = tokio::spawn(async move { pipeline.run().await });
    while times.lock().unwrap().len() < n as usize {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    token.cancel();
    let _ = run.await;
    times.lock().unwrap().clone()
}

/// Mean time per commit over the 100 commits ending at `part` (1-based).
fn per_commit(t: &[Instant], part: usize) -> Duration {
    (t[part - 1] - t[part - 101]) / 100
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let n: u64 = std::env::var("TRIBUTARY_BENCH_PARTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_010);
    let t = commit_times(MemoryChangeStream::new("mem", "s", events(n)), n, false).await;
    let (early, late) = (per_commit(&t, 110), per_commit(&t, n as usize));
    println!(
        "unbounded stream, epoch manifests: parts 10-110 {early:?}/commit, parts {}-{} {late:?}/commit: {:.2}x",
        n - 100,
        n,
        late.as_secs_f64() / early.as_secs_f64()
    );

    let m = 2_010u64;
    let batches: Vec<Batch> = events(m)
        .into_iter()
        .map(|e| Batch::new(e.rows.unwrap()).with_checkpoint(Checkpoint::Lsn { lsn: e.position }))
        .collect();
    let t = commit_times(MemoryExtractor::new("mem", "s", batches), m, true).await;
    let (early, late) = (per_commit(&t, 110), per_commit(&t, m as usize));
    println!(
        "bounded run, one manifest rewritten per save: parts 10-110 {early:?}/commit, parts {}-{} {late:?}/commit: {:.2}x",
        m - 100,
        m,
        late.as_secs_f64() / early.as_secs_f64()
    );
}
