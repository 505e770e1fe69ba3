//! The pipeline's guarantees: checkpoints never run ahead of committed data, failed or
//! cancelled runs leave nothing at final keys, retries never overwrite checkpointed
//! parts, unbounded streams land continuously.

use arrow_array::{Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use async_trait::async_trait;
use futures::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tributary::format::{Compression, JsonLines};
use tributary::stores::{ObjectSink, ObjectStateStore, PipelineState, StateStore};
use tributary::validate::{NotNull, Unique};
use tributary::*;

fn rows(ids: std::ops::Range<i64>) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
    RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from_iter_values(ids))]).unwrap()
}

fn lsn(n: u64) -> Checkpoint {
    Checkpoint::Lsn { lsn: n }
}

/// Batches of `per` rows with checkpoints 1, 2, 3...; optionally an error after `fail_after`
/// batches, or an endless stream.
#[derive(Debug, Clone)]
struct Numbers {
    batches: u64,
    per: i64,
    fail_after: Option<u64>,
    endless_every: Option<Duration>,
    calls: Arc<AtomicUsize>,
}

impl Numbers {
    fn new(batches: u64, per: i64) -> Self {
        Numbers {
            batches,
            per,
            fail_after: None,
            endless_every: None,
            calls: Arc::new(AtomicUsize::new(0)),
        }
    }
}

#[async_trait]
impl Extractor for Numbers {
    fn source(&self) -> &str {
        "test"
    }
    fn stream(&self) -> &str {
        "numbers"
    }
    async fn open(&self, cx: ExtractContext) -> Result<Extraction> {
        let from = cx.checkpoint;
        let batches: Result<BatchStream> = async {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let start = match from {
                Some(Checkpoint::Lsn { lsn }) => lsn,
                None => 0,
                Some(other) => panic!("unexpected checkpoint {other:?}"),
            };
            let me = self.clone();
            let s = futures::stream::unfold(start, move |n| {
                let me = me.clone();
                async move {
                    if let Some(every) = me.endless_every {
                        tokio::time::sleep(every).await;
                    } else if n >= me.batches {
                        return None;
                    }
                    if me.fail_after == Some(n) {
                        let e = Error::Connection {
                            component: "test".into(),
                            message: "server went away".into(),
                            source: None,
                        };
                        return Some((Err(e), u64::MAX));
                    }
                    if n == u64::MAX {
                        return None;
                    }
                    let b = Batch::new(rows(n as i64 * me.per..(n as i64 + 1) * me.per))
                        .with_checkpoint(lsn(n + 1));
                    Some((Ok(b), n + 1))
                }
            });
            Ok(s.boxed())
        }
        .await;
        Ok(Extraction::new(batches?))
    }
}

/// All `id`s in the run's committed objects.
async fn ids_in(sink: &ObjectSink, report: &RunReport) -> Vec<i64> {
    let mut out = vec![];
    for o in &report.objects {
        let text = sink.read(&o.key).await.unwrap();
        out.extend(
            String::from_utf8_lossy(&text)
                .lines()
                .map(|l| l.parse::<i64>().unwrap()),
        );
    }
    out
}

async fn data_keys(sink: &ObjectSink) -> Vec<String> {
    sink.list("")
        .await
        .unwrap()
        .into_iter()
        .filter(|k| k.ends_with(".csv") || k.ends_with(".gz"))
        .collect()
}

fn pipeline(sink: &ObjectSink, e: impl Extractor, opts: PipelineOptions) -> Pipeline {
    Pipeline::builder("numbers")
        .extractor(e)
        .sink(sink.clone())
        .state(ObjectStateStore::new(sink.clone(), "_state"))
        .options(opts)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_run_lands_every_row_once_and_saves_the_checkpoint() {
    let sink = ObjectSink::memory();
    let p = pipeline(
        &sink,
        Numbers::new(5, 3),
        PipelineOptions::new().with_run_id("r1"),
    );
    let r = p.run().await.into_result().unwrap();
    assert_eq!(r.rows, 15);
    assert_eq!(ids_in(&sink, &r).await, (0..15).collect::<Vec<_>>());
    assert_eq!(r.checkpoint_to, Some(lsn(5)));
    let state = ObjectStateStore::new(sink.clone(), "_state")
        .load("numbers")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.value.checkpoint, Some(lsn(5)));
    // The manifest lists the run's objects, rows and checksums.
    let manifest: serde_json::Value =
        serde_json::from_slice(&sink.read(r.manifest.as_ref().unwrap()).await.unwrap()).unwrap();
    assert_eq!(manifest["rows"], 15);
    assert_eq!(manifest["objects"][0]["sha256"], r.objects[0].sha256);
    assert_eq!(manifest["checkpoint_to"]["lsn"], 5);
    // Nothing new: no object, checkpoint unchanged.
    let again = p.run().await.into_result().unwrap();
    assert_eq!((again.rows, again.objects.len()), (0, 0));
    assert_eq!(again.checkpoint_to, Some(lsn(5)));
}

#[tokio::test]
async fn an_error_mid_stream_leaves_nothing_at_final_keys_and_no_checkpoint() {
    let sink = ObjectSink::memory();
    let mut e = Numbers::new(5, 3);
    e.fail_after = Some(3);
    let r = pipeline(&sink, e, PipelineOptions::new()).run().await;
    assert_eq!(r.outcome, Outcome::Failed);
    assert!(matches!(r.error, Some(Error::Connection { .. })));
    assert!(r.error.as_ref().unwrap().is_retryable());
    assert!(r.objects.is_empty());
    assert!(
        data_keys(&sink).await.is_empty(),
        "a half-written part became visible"
    );
    assert!(
        ObjectStateStore::new(sink.clone(), "_state")
            .load("numbers")
            .await
            .unwrap()
            .is_none()
    );
    // The failure is in the manifest too.
    let m: serde_json::Value =
        serde_json::from_slice(&sink.read(r.manifest.as_ref().unwrap()).await.unwrap()).unwrap();
    assert_eq!(m["outcome"], "failed");
    assert!(
        m["error_message"]
            .as_str()
            .unwrap()
            .contains("server went away")
    );
}

#[tokio::test]
async fn a_retry_resumes_after_the_last_committed_part_without_overwriting_it() {
    let sink = ObjectSink::memory();
    let mut e = Numbers::new(6, 2);
    e.fail_after = Some(4);
    let opts = PipelineOptions::new()
        .with_run_id("job-42")
        .with_part_max_rows(3);
    let first = pipeline(&sink, e, opts.clone()).run().await;
    assert_eq!(first.outcome, Outcome::Failed);
    // Batches of 2 rows, parts of exactly 3 rows: two parts (ids 0..3 and 3..6)
    // committed; the second ends with batch 3, whose checkpoint it carries.
    assert_eq!(first.objects.len(), 2);
    assert_eq!(first.checkpoint_to, Some(lsn(3)));
    let committed: Vec<(String, bytes::Bytes)> = {
        let mut v = vec![];
        for o in &first.objects {
            v.push((o.key.clone(), sink.read(&o.key).await.unwrap()));
        }
        v
    };
    // The same run again (an orchestrator's retry): resumes at lsn 3, next part number.
    let second = pipeline(&sink, Numbers::new(6, 2), opts)
        .run()
        .await
        .into_result()
        .unwrap();
    assert_eq!(second.checkpoint_from, Some(lsn(3)));
    assert_eq!(ids_in(&sink, &second).await, vec![6, 7, 8, 9, 10, 11]);
    for (key, bytes) in committed {
        assert!(
            !second.objects.iter().any(|o| o.key == key),
            "retry reused {key}"
        );
        assert_eq!(sink.read(&key).await.unwrap(), bytes, "retry changed {key}");
    }
    let mut all = vec![];
    for k in data_keys(&sink).await {
        all.extend(
            String::from_utf8_lossy(&sink.read(&k).await.unwrap())
                .lines()
                .map(|l| l.parse::<i64>().unwrap()),
        );
    }
    all.sort();
    assert_eq!(
        all,
        (0..12).collect::<Vec<_>>(),
        "every row exactly once across attempts"
    );
}

#[tokio::test]
async fn built_in_retries_continue_the_same_run() {
    let sink = ObjectSink::memory();
    // Fails once at batch 2; the retry starts from the saved checkpoint.
    #[derive(Debug)]
    struct FlakyOnce(Numbers, AtomicUsize);
    #[async_trait]
    impl Extractor for FlakyOnce {
        fn source(&self) -> &str {
            "test"
        }
        fn stream(&self) -> &str {
            "numbers"
        }
        async fn open(&self, cx: ExtractContext) -> Result<Extraction> {
            let from = cx.checkpoint;
            let batches: Result<BatchStream> = async {
                let mut inner = self.0.clone();
                if self.1.fetch_add(1, Ordering::SeqCst) == 0 {
                    inner.fail_after = Some(2);
                }
                inner.extract(from).await
            }
            .await;
            Ok(Extraction::new(batches?))
        }
    }
    let p = pipeline(
        &sink,
        FlakyOnce(Numbers::new(4, 1), AtomicUsize::new(0)),
        PipelineOptions::new()
            .with_part_max_rows(1)
            .with_retry(tributary::RetryPolicy::new(2).with_base(Duration::from_millis(10))),
    );
    let r = p.run().await.into_result().unwrap();
    assert_eq!(r.attempts, 2);
    assert_eq!(ids_in(&sink, &r).await, vec![0, 1, 2, 3]);
    assert_eq!(r.objects.len(), 4);
}

#[tokio::test]
async fn a_run_that_spends_its_retries_fails_persistent() {
    let sink = ObjectSink::memory();
    let mut always = Numbers::new(4, 1);
    always.fail_after = Some(1);
    let calls = always.calls.clone();
    let r = pipeline(
        &sink,
        always,
        PipelineOptions::new()
            .with_part_max_rows(1)
            .with_retry(RetryPolicy::new(2).with_base(Duration::from_millis(1))),
    )
    .run()
    .await;
    assert_eq!(r.outcome, Outcome::Failed);
    assert_eq!(r.attempts, 3);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let e = r.into_result().unwrap_err();
    assert!(
        matches!(&e, Error::RetriesExhausted { attempts: 3, operation, .. } if operation == "run"),
        "{e:?}"
    );
    assert_eq!(e.status(), ErrorStatus::Persistent);
    assert!(!e.is_retryable());
    assert!(
        matches!(e.last_failure(), Error::Connection { .. }),
        "{e:?}"
    );
}

/// An extractor whose `open` fails `fails` times with `error` (a server not up yet),
/// then opens four one-row batches.
#[derive(Debug)]
struct OpensLate {
    inner: Numbers,
    fails: usize,
    opens: AtomicUsize,
    error: fn() -> Error,
}

impl OpensLate {
    fn new(fails: usize, error: fn() -> Error) -> Self {
        OpensLate {
            inner: Numbers::new(4, 1),
            fails,
            opens: AtomicUsize::new(0),
            error,
        }
    }
    fn opens(&self) -> usize {
        self.opens.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Extractor for OpensLate {
    fn source(&self) -> &str {
        "test"
    }
    fn stream(&self) -> &str {
        "late"
    }
    async fn open(&self, cx: ExtractContext) -> Result<Extraction> {
        if self.opens.fetch_add(1, Ordering::SeqCst) < self.fails {
            return Err((self.error)());
        }
        self.inner.open(cx).await
    }
}

fn refused() -> Error {
    Error::Connection {
        component: "test".into(),
        message: "connection refused".into(),
        source: None,
    }
}

#[tokio::test]
async fn retry_wraps_an_extractor_or_a_sink() {
    let quick = RetryPolicy::new(3).with_base(Duration::from_millis(1));
    // Opened on the third try.
    let late = Retry::new(OpensLate::new(2, refused), quick.clone());
    assert_eq!(late.collect(None).await.unwrap().len(), 4);
    assert_eq!(late.inner().opens(), 3);
    // Retries spent: persistent, naming the operation and the tries.
    let down = Retry::new(
        OpensLate::new(9, refused),
        quick.clone().with_max_retries(1),
    );
    let e = down.collect(None).await.unwrap_err();
    assert!(
        matches!(&e, Error::RetriesExhausted { attempts: 2, operation, .. } if operation == "open"),
        "{e:?}"
    );
    assert_eq!(down.inner().opens(), 2);
    assert!(
        e.to_string().contains("gave up on open after 2 attempts"),
        "{e}"
    );
    // Not retryable: one try, the error as it was.
    let wrong = Retry::new(
        OpensLate::new(9, || Error::config("test", "no such table")),
        quick.clone(),
    );
    let e = wrong.collect(None).await.unwrap_err();
    assert!(matches!(e, Error::Config { .. }), "{e:?}");
    assert_eq!(wrong.inner().opens(), 1);
    // A wrapped sink keeps every promise of the one inside.
    let rows = Retry::new(tributary::stores::MemoryBatchSink::transactional(), quick);
    assert!(rows.capabilities().transactional_checkpoint);
    tributary::testing::batch_sink_suite(&rows, rows.inner(), "retry-rows-txn").await;
}

/// A sink that fails to commit: the checkpoint must not move.
#[derive(Debug)]
struct CommitFails(ObjectSink);

#[async_trait]
impl Sink for CommitFails {
    fn describe(&self) -> String {
        "commit-fails".into()
    }
    async fn read(&self, key: &str) -> Result<bytes::Bytes> {
        self.0.read(key).await
    }
    async fn delete(&self, key: &str) -> Result<()> {
        self.0.delete(key).await
    }
    async fn open(&self, target: &ObjectTarget) -> Result<Box<dyn SinkWriter>> {
        struct W(Box<dyn SinkWriter>);
        #[async_trait]
        impl SinkWriter for W {
            async fn write(&mut self, data: bytes::Bytes) -> Result<()> {
                self.0.write(data).await
            }
            async fn commit(self: Box<Self>) -> Result<Receipt> {
                self.0.abort().await?;
                Err(Error::Storage {
                    component: "test".into(),
                    message: "disk full".into(),
                    retryable: false,
                    source: None,
                })
            }
            async fn abort(self: Box<Self>) -> Result<()> {
                self.0.abort().await
            }
        }
        Ok(Box::new(W(self.0.open(target).await?)))
    }
}

#[tokio::test]
async fn a_failed_commit_never_advances_the_checkpoint() {
    let store = ObjectSink::memory();
    let p = Pipeline::builder("numbers")
        .extractor(Numbers::new(3, 2))
        .batch_sink(
            tributary::stores::ObjectBatchSink::csv(CommitFails(store.clone()))
                .with_manifest_template(None),
        )
        .state(ObjectStateStore::new(store.clone(), "_state"))
        .build()
        .unwrap();
    let r = p.run().await;
    assert_eq!(r.outcome, Outcome::Failed);
    assert!(r.error_message.unwrap().contains("disk full"));
    assert!(
        ObjectStateStore::new(store.clone(), "_state")
            .load("numbers")
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.list("").await.unwrap().is_empty());
}

#[tokio::test]
async fn cancellation_aborts_the_open_part() {
    let sink = ObjectSink::memory();
    let mut e = Numbers::new(0, 2);
    e.endless_every = Some(Duration::from_millis(10));
    let p = pipeline(&sink, e, PipelineOptions::new());
    let token = p.cancellation_token();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        token.cancel();
    });
    let r = p.run().await;
    assert_eq!(r.outcome, Outcome::Cancelled);
    assert!(matches!(r.into_result(), Err(Error::Cancelled)));
    assert!(data_keys(&sink).await.is_empty());
    assert!(
        ObjectStateStore::new(sink.clone(), "_state")
            .load("numbers")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn an_unbounded_stream_lands_data_every_interval() {
    let sink = ObjectSink::memory();
    let mut e = Numbers::new(0, 1);
    e.endless_every = Some(Duration::from_millis(20));
    let p = pipeline(
        &sink,
        e,
        PipelineOptions::new().with_commit_interval(Duration::from_millis(150)),
    );
    let token = p.cancellation_token();
    let handle = tokio::spawn(async move { p.run().await });
    // While the stream runs, objects and checkpoints appear (polled, with a deadline far
    // beyond the 150 ms interval so a loaded machine does not fail the test).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (landed, state) = loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The checkpoint is read first: every object it covers was committed before it.
        let state = ObjectStateStore::new(sink.clone(), "_state")
            .load("numbers")
            .await
            .unwrap();
        let landed = data_keys(&sink).await;
        if (landed.len() >= 2 && state.is_some()) || std::time::Instant::now() > deadline {
            break (landed, state);
        }
    };
    token.cancel();
    let r = handle.await.unwrap();
    assert!(
        landed.len() >= 2,
        "expected several committed parts while running, got {landed:?}"
    );
    let Some(state) = state else {
        panic!("no checkpoint saved while running")
    };
    // The saved checkpoint never covers rows that are not in a committed object.
    let Some(Checkpoint::Lsn { lsn: saved }) = state.value.checkpoint else {
        panic!()
    };
    let mut committed = vec![];
    for k in &landed {
        committed.extend(
            String::from_utf8_lossy(&sink.read(k).await.unwrap())
                .lines()
                .map(|l| l.parse::<u64>().unwrap()),
        );
    }
    assert!(
        (0..saved).all(|id| committed.contains(&id)),
        "checkpoint {saved} ahead of committed rows {committed:?}"
    );
    assert_eq!(r.outcome, Outcome::Cancelled);
}

#[tokio::test]
async fn a_schema_change_starts_a_new_part() {
    let sink = ObjectSink::memory();
    let s2 = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
    ]));
    let b2 = RecordBatch::try_new(
        s2,
        vec![
            Arc::new(Int64Array::from(vec![9])),
            Arc::new(StringArray::from(vec!["x"])),
        ],
    )
    .unwrap();
    let e = sources::MemoryExtractor::new("t", "s", vec![Batch::new(rows(0..2)), Batch::new(b2)]);
    let p = Pipeline::builder("schema")
        .extractor(e)
        .sink(sink.clone())
        .format(format::Csv::new(format::CsvDialect::postgres()))
        .build()
        .unwrap();
    let r = p.run().await.into_result().unwrap();
    assert_eq!(r.objects.len(), 2);
    assert_eq!(
        &sink.read(&r.objects[0].key).await.unwrap()[..],
        b"id\n0\n1\n"
    );
    assert_eq!(
        &sink.read(&r.objects[1].key).await.unwrap()[..],
        b"id,name\n9,x\n"
    );
}

#[tokio::test]
async fn halting_validators_stop_before_bad_rows_land_and_warnings_are_recorded() {
    let sink = ObjectSink::memory();
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
    let bad = RecordBatch::try_new(
        schema,
        vec![Arc::new(Int64Array::from(vec![Some(5), None]))],
    )
    .unwrap();
    let e = sources::MemoryExtractor::new("t", "s", vec![Batch::new(rows(0..2)), Batch::new(bad)]);
    let r = Pipeline::builder("v")
        .extractor(e.clone())
        .sink(sink.clone())
        .validator(NotNull::new(["id"]))
        .build()
        .unwrap()
        .run()
        .await;
    assert_eq!(r.outcome, Outcome::Failed);
    assert!(matches!(r.error, Some(Error::Validation { .. })));
    let at = r.failed_at.as_ref().expect("where it failed");
    assert_eq!(
        (at.operation.as_str(), at.table.as_deref()),
        ("validate", Some("s"))
    );
    assert!(data_keys(&sink).await.is_empty());
    assert!(!r.validations[0].passed);

    let r = Pipeline::builder("v")
        .extractor(sources::MemoryExtractor::new(
            "t",
            "s",
            vec![Batch::new(rows(0..3)), Batch::new(rows(2..4))],
        ))
        .sink(sink.clone())
        .validator(Unique::new(["id"]).with_severity(Severity::Warn))
        .build()
        .unwrap()
        .run()
        .await;
    assert!(r.succeeded());
    assert_eq!(r.failed_at, None);
    assert_eq!(r.rows, 5);
    assert!(!r.validations[0].passed);
    assert!(r.validations[0].message.contains("duplicate"));
}

#[tokio::test]
async fn a_concurrent_runner_cannot_advance_the_same_checkpoint() {
    let sink = ObjectSink::memory();
    let e = Numbers::new(5, 1);
    // Another runner saves state after this one loaded it.
    #[derive(Debug)]
    struct Slow(Numbers, ObjectSink);
    #[async_trait]
    impl Extractor for Slow {
        fn source(&self) -> &str {
            "test"
        }
        fn stream(&self) -> &str {
            "numbers"
        }
        async fn open(&self, cx: ExtractContext) -> Result<Extraction> {
            let from = cx.checkpoint;
            let batches: Result<BatchStream> = async {
                let other = PipelineState::new(Some(lsn(100)), "other");
                ObjectStateStore::new(self.1.clone(), "_state")
                    .save("numbers", None, &other)
                    .await?;
                self.0.extract(from).await
            }
            .await;
            Ok(Extraction::new(batches?))
        }
    }
    let r = pipeline(&sink, Slow(e, sink.clone()), PipelineOptions::new())
        .run()
        .await;
    assert_eq!(r.outcome, Outcome::Failed);
    assert!(
        matches!(r.error, Some(Error::Conflict { .. })),
        "{:?}",
        r.error
    );
    let st = ObjectStateStore::new(sink.clone(), "_state")
        .load("numbers")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        st.value.checkpoint,
        Some(lsn(100)),
        "the other runner's checkpoint stands"
    );
}

#[tokio::test]
async fn gzip_and_jsonl_objects() {
    let sink = ObjectSink::memory();
    let p = Pipeline::builder("gz")
        .extractor(Numbers::new(3, 1000))
        .batch_sink(
            tributary::stores::ObjectBatchSink::new(sink.clone(), JsonLines::new())
                .with_compression(Compression::Gzip)
                .unwrap()
                .with_prefix("landing"),
        )
        .build()
        .unwrap();
    let r = p.run().await.into_result().unwrap();
    let key = &r.objects[0].key;
    assert!(
        key.starts_with("landing/test/numbers/dt=") && key.ends_with(".jsonl.gz"),
        "{key}"
    );
    let gz = sink.read(key).await.unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut text).unwrap();
    assert_eq!(text.lines().count(), 3000);
    assert_eq!(text.lines().nth(2999).unwrap(), r#"{"id":2999}"#);
}

#[tokio::test]
async fn keys_are_unique_per_run_and_stable_for_the_same_run_id() {
    let sink = ObjectSink::memory();
    let e = sources::MemoryExtractor::new("t", "s", vec![Batch::new(rows(0..2))]);
    let p = Pipeline::builder("k")
        .extractor(e.clone())
        .sink(sink.clone())
        .build()
        .unwrap();
    let a = p.run().await.into_result().unwrap();
    let b = p.run().await.into_result().unwrap();
    assert_ne!(
        a.objects[0].key, b.objects[0].key,
        "two runs must not overwrite each other"
    );
    let fixed = Pipeline::builder("k")
        .extractor(e)
        .sink(sink.clone())
        .options(PipelineOptions::new().with_run_id("airflow-run-7"))
        .build()
        .unwrap();
    let c = fixed.run().await.into_result().unwrap();
    let d = fixed.run().await.into_result().unwrap();
    assert_eq!(
        c.objects[0].key, d.objects[0].key,
        "a retry of the same run writes the same keys"
    );
    assert!(c.objects[0].key.ends_with("/airflow-run-7-00000.csv"));
}

#[tokio::test]
async fn progress_is_reported_and_parts_rotate_by_bytes() {
    let sink = ObjectSink::memory();
    let seen = Arc::new(std::sync::Mutex::new(vec![]));
    let s2 = seen.clone();
    let p = Pipeline::builder("bytes")
        .extractor(Numbers::new(10, 100))
        .sink(sink.clone())
        .options(PipelineOptions::new().with_part_max_bytes(1000))
        .on_progress(move |p| s2.lock().unwrap().push(p.clone()))
        .build()
        .unwrap();
    let r = p.run().await.into_result().unwrap();
    assert_eq!(r.rows, 1000);
    assert!(
        r.objects.len() >= 3,
        "parts rotate by size: {}",
        r.objects.len()
    );
    let last = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.rows_extracted, 1000);
    assert_eq!(last.rows_committed, 1000);
    assert_eq!(last.objects_committed, r.objects.len() as u64);
}

#[cfg(feature = "zstd")]
#[tokio::test]
async fn zstd_objects_hold_exactly_the_uncompressed_bytes() {
    let run = |c: Compression| async move {
        let sink = ObjectSink::memory();
        let r = Pipeline::builder("z")
            .extractor(Numbers::new(5, 20_000))
            .batch_sink(
                tributary::stores::ObjectBatchSink::csv(sink.clone())
                    .with_compression(c)
                    .unwrap(),
            )
            .options(PipelineOptions::new().with_run_id("same"))
            .build()
            .unwrap()
            .run()
            .await
            .into_result()
            .unwrap();
        let mut all = Vec::new();
        for o in &r.objects {
            all.push((o.key.clone(), sink.read(&o.key).await.unwrap()));
        }
        all
    };
    let plain = run(Compression::None).await;
    let zst = run(Compression::Zstd(9)).await;
    assert_eq!(plain.len(), zst.len());
    for ((pk, pb), (zk, zb)) in plain.iter().zip(&zst) {
        assert_eq!(format!("{pk}.zst"), *zk);
        assert!(zb.len() < pb.len() / 2, "{} vs {}", zb.len(), pb.len());
        assert_eq!(zstd::decode_all(&zb[..]).unwrap(), pb.to_vec());
    }
    // pipeline.conf names it too.
    let c = tributary::config::PipelineConfig::parse(
        "[store]\nurl = memory:///\ncompression = zstd:19\n",
        "test",
        |_| None,
    )
    .unwrap();
    assert_eq!(c.compression().unwrap(), Compression::Zstd(19));
    let c = tributary::config::PipelineConfig::parse(
        "[store]\nurl = memory:///\ncompression = zstd:99\n",
        "test",
        |_| None,
    )
    .unwrap();
    assert!(c.compression().unwrap_err().to_string().contains("1 to 22"));
}

/// A state store that, at every save, checks the commit order: every data object in the
/// sink is listed by a manifest already written, and the manifest says `running`.
#[derive(Debug)]
struct ManifestFirst {
    inner: ObjectStateStore,
    sink: ObjectSink,
    saves: Arc<AtomicUsize>,
}

#[async_trait]
impl StateStore for ManifestFirst {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn load(
        &self,
        pipeline: &str,
    ) -> Result<Option<tributary::stores::Versioned<PipelineState>>> {
        self.inner.load(pipeline).await
    }
    async fn save(&self, pipeline: &str, expected: Option<u64>, s: &PipelineState) -> Result<u64> {
        // A save before a commit keeps the last checkpoint; only checkpoint saves count.
        if !s.leftover.is_empty() {
            return self.inner.save(pipeline, expected, s).await;
        }
        let keys = self.sink.list("").await?;
        let mut listed = std::collections::BTreeSet::new();
        for k in keys.iter().filter(|k| k.ends_with(".manifest.json")) {
            let m: serde_json::Value = serde_json::from_slice(&self.sink.read(k).await?).unwrap();
            assert_eq!(m["outcome"], "running", "{m}");
            for o in m["objects"].as_array().unwrap() {
                listed.insert(o["key"].as_str().unwrap().to_string());
            }
        }
        for k in keys.iter().filter(|k| k.ends_with(".csv")) {
            assert!(
                listed.contains(k),
                "checkpoint {:?} saved while {k} is in no manifest",
                s.checkpoint
            );
        }
        self.saves.fetch_add(1, Ordering::SeqCst);
        self.inner.save(pipeline, expected, s).await
    }
}

#[tokio::test]
async fn every_checkpoint_is_saved_after_a_manifest_listing_every_object() {
    // Issue 8.2: without a commit interval, mid-run checkpoints used to run ahead of the
    // only manifest, written at the end.
    let sink = ObjectSink::memory();
    let saves = Arc::new(AtomicUsize::new(0));
    let r = Pipeline::builder("numbers")
        .extractor(Numbers::new(10, 100))
        .sink(sink.clone())
        .state(ManifestFirst {
            inner: ObjectStateStore::new(sink.clone(), "_state"),
            sink: sink.clone(),
            saves: saves.clone(),
        })
        .options(PipelineOptions::new().with_part_max_rows(200))
        .build()
        .unwrap()
        .run()
        .await
        .into_result()
        .unwrap();
    assert_eq!(r.objects.len(), 5);
    assert_eq!(saves.load(Ordering::SeqCst), 5, "one checkpoint per part");
    let m: serde_json::Value =
        serde_json::from_slice(&sink.read(r.manifest.as_ref().unwrap()).await.unwrap()).unwrap();
    assert_eq!(m["outcome"], "succeeded");
    assert_eq!(m["objects"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn a_checkpoint_that_would_not_read_back_is_refused_and_nothing_is_wedged() {
    // Issue 8.4: a NaN cursor was saved as `{"float":null}`, failing every later run.
    let sink = ObjectSink::memory();
    let nan = Checkpoint::Watermark(Watermark::new(CursorValue::Float(f64::NAN)));
    let bad = sources::MemoryExtractor::new(
        "test",
        "numbers",
        vec![Batch::new(rows(0..3)).with_checkpoint(nan)],
    );
    let r = pipeline(&sink, bad, PipelineOptions::new()).run().await;
    assert_eq!(r.outcome, Outcome::Failed);
    let e = r.error.as_ref().unwrap();
    assert!(matches!(e, Error::Type { .. }), "{e:?}");
    assert!(e.to_string().contains("would not read back"), "{e}");
    let state = ObjectStateStore::new(sink.clone(), "_state");
    assert!(state.load("numbers").await.unwrap().is_none());
    // The next run is not wedged by an unreadable saved state.
    let r = pipeline(&sink, Numbers::new(2, 5), PipelineOptions::new())
        .run()
        .await
        .into_result()
        .unwrap();
    assert_eq!(r.rows, 10);
    assert_eq!(
        state
            .load("numbers")
            .await
            .unwrap()
            .unwrap()
            .value
            .checkpoint,
        Some(lsn(2))
    );
}

#[tokio::test]
async fn manifests_and_history_carry_a_summary_of_the_watermark_not_its_seen_list() {
    // Issue 8.10: a million rows at one cursor value made a 26 MB manifest.
    let sink = ObjectSink::memory();
    let mut w = Watermark::new(CursorValue::Int(5));
    w.seen = (0..1000).map(|i| format!("{i:016x}")).collect();
    let e = sources::MemoryExtractor::new(
        "test",
        "numbers",
        vec![Batch::new(rows(0..3)).with_checkpoint(Checkpoint::Watermark(w))],
    );
    let r = pipeline(&sink, e, PipelineOptions::new())
        .run()
        .await
        .into_result()
        .unwrap();
    let m: serde_json::Value =
        serde_json::from_slice(&sink.read(r.manifest.as_ref().unwrap()).await.unwrap()).unwrap();
    assert_eq!(m["checkpoint_to"]["seen_rows"], 1000, "{m}");
    assert!(m["checkpoint_to"].get("seen").is_none());
    // The state store keeps the whole list: it is what the next run needs.
    let saved = ObjectStateStore::new(sink.clone(), "_state")
        .load("numbers")
        .await
        .unwrap()
        .unwrap();
    let Some(Checkpoint::Watermark(w)) = saved.value.checkpoint else {
        panic!()
    };
    assert_eq!(w.seen.len(), 1000);
}

/// A state store that records every checkpoint it saves.
#[derive(Debug, Clone)]
struct Recording(ObjectStateStore, Arc<std::sync::Mutex<Vec<Checkpoint>>>);

#[async_trait]
impl StateStore for Recording {
    fn describe(&self) -> String {
        "recording".into()
    }
    async fn load(&self, p: &str) -> Result<Option<stores::Versioned<PipelineState>>> {
        self.0.load(p).await
    }
    async fn save(&self, p: &str, expected: Option<u64>, s: &PipelineState) -> Result<u64> {
        // Checkpoint saves only, not the saves before a commit that keep the last one.
        if s.leftover.is_empty() {
            self.1.lock().unwrap().extend(s.checkpoint.clone());
        }
        self.0.save(p, expected, s).await
    }
}

#[tokio::test]
async fn rotation_by_rows_is_exact_and_a_part_closed_mid_batch_carries_the_batch_before() {
    // 120,000 rows in batches of 8,192 (the last one smaller), parts of 50,000 rows.
    let sink = ObjectSink::memory();
    let saves = Arc::new(std::sync::Mutex::new(Vec::new()));
    let state = Recording(ObjectStateStore::new(sink.clone(), "_state"), saves.clone());
    let batches: Vec<Batch> = (0..120_000i64)
        .step_by(8192)
        .enumerate()
        .map(|(i, from)| {
            Batch::new(rows(from..(from + 8192).min(120_000))).with_checkpoint(lsn(i as u64 + 1))
        })
        .collect();
    let r = Pipeline::builder("exact")
        .extractor(sources::MemoryExtractor::new("test", "numbers", batches))
        .sink(sink.clone())
        .state(state)
        .options(PipelineOptions::new().with_part_max_rows(50_000))
        .build()
        .unwrap()
        .run()
        .await
        .into_result()
        .unwrap();
    let sizes: Vec<u64> = r.objects.iter().map(|o| o.rows).collect();
    assert_eq!(sizes, [50_000, 50_000, 20_000]);
    assert_eq!(ids_in(&sink, &r).await, (0..120_000).collect::<Vec<_>>());
    // Part 1 ends inside batch 7 (rows 49,152..57,344): its checkpoint is batch 6's, the
    // last one all of whose rows it holds; part 2 ends inside batch 13 → batch 12's.
    assert_eq!(*saves.lock().unwrap(), [lsn(6), lsn(12), lsn(15)]);
}

#[tokio::test]
async fn rotation_by_bytes_splits_a_batch_too() {
    // One batch of 100,000 rows, about 7 bytes each in CSV; parts of 100 kB.
    let sink = ObjectSink::memory();
    let r = Pipeline::builder("bytes")
        .extractor(sources::MemoryExtractor::new(
            "test",
            "numbers",
            vec![Batch::new(rows(1_000_000..1_100_000)).with_checkpoint(lsn(1))],
        ))
        .sink(sink.clone())
        .options(PipelineOptions::new().with_part_max_bytes(100_000))
        .build()
        .unwrap()
        .run()
        .await
        .into_result()
        .unwrap();
    assert!(r.objects.len() >= 7, "{} objects", r.objects.len());
    for o in &r.objects {
        // The first slice of each part is one row, then it is filled by its row size.
        assert!(o.bytes <= 100_000, "{} is {} bytes", o.key, o.bytes);
    }
    assert_eq!(
        ids_in(&sink, &r).await,
        (1_000_000..1_100_000).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_pipeline_can_be_checked_inspected_and_reset() {
    let sink = ObjectSink::memory();
    let p = pipeline(&sink, Numbers::new(3, 2), PipelineOptions::new());
    p.check().await.unwrap();
    assert!(p.checkpoint().await.unwrap().is_none());
    let first = p.run().await.into_result().unwrap();
    assert_eq!(first.rows, 6);
    let saved = p.checkpoint().await.unwrap().unwrap();
    assert_eq!(saved.checkpoint, Some(lsn(3)));
    assert_eq!(saved.run_id, first.run_id);
    // Reset: the next run starts from the beginning again.
    p.reset().await.unwrap();
    assert!(p.checkpoint().await.unwrap().is_none());
    let again = p.run().await.into_result().unwrap();
    assert_eq!((again.checkpoint_from, again.rows), (None, 6));

    // check() names the first part that is not usable, moving nothing.
    #[derive(Debug)]
    struct Down;
    #[async_trait]
    impl Extractor for Down {
        fn source(&self) -> &str {
            "down"
        }
        fn stream(&self) -> &str {
            "t"
        }
        async fn check(&self) -> Result<()> {
            Err(Error::Connection {
                component: "down".into(),
                message: "db.example:5432 refused the connection".into(),
                source: None,
            })
        }
        async fn open(&self, cx: ExtractContext) -> Result<Extraction> {
            let _ = cx.checkpoint;
            let batches: Result<BatchStream> = async { panic!("check must not extract") }.await;
            Ok(Extraction::new(batches?))
        }
    }
    let before = sink.list("").await.unwrap().len();
    let down = Pipeline::builder("down")
        .extractor(Down)
        .sink(sink.clone())
        .build()
        .unwrap();
    let err = down.check().await.unwrap_err();
    assert!(err.to_string().contains("refused the connection"), "{err}");
    assert_eq!(
        sink.list("").await.unwrap().len(),
        before,
        "check wrote something"
    );
    // A state store that cannot delete says so.
    #[derive(Debug)]
    struct NoDelete;
    #[async_trait]
    impl StateStore for NoDelete {
        fn describe(&self) -> String {
            "nodelete".into()
        }
        async fn load(&self, _: &str) -> Result<Option<stores::Versioned<PipelineState>>> {
            Ok(None)
        }
        async fn save(&self, _: &str, _: Option<u64>, _: &PipelineState) -> Result<u64> {
            Ok(1)
        }
    }
    let p = Pipeline::builder("x")
        .extractor(Numbers::new(1, 1))
        .sink(sink.clone())
        .state(NoDelete)
        .build()
        .unwrap();
    assert!(matches!(p.reset().await, Err(Error::Config { .. })));
}

#[tokio::test]
async fn warnings_are_counted_not_sampled() {
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
    // 15 batches of 2 rows; 12 of them hold a NULL id.
    let batches: Vec<Batch> = (0..15i64)
        .map(|i| {
            let second = if i % 5 == 4 { Some(i * 10 + 1) } else { None };
            let rb = RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(Int64Array::from(vec![Some(i * 10), second]))],
            )
            .unwrap();
            Batch::new(rb)
        })
        .collect();
    let r = Pipeline::builder("warn")
        .extractor(sources::MemoryExtractor::new("t", "s", batches))
        .sink(ObjectSink::memory())
        .validator(NotNull::new(["id"]).with_severity(Severity::Warn))
        .build()
        .unwrap()
        .run()
        .await
        .into_result()
        .unwrap();
    let v = &r.validations[0];
    assert!(!v.passed);
    assert_eq!((v.failed_batches, v.failed_rows), (12, 24));
    assert!(v.last_message.is_some(), "{v:?}");
    assert_eq!(r.rows, 30, "a warning lands the rows");
}
