//! The streaming core through the pipeline with the in-memory change log: three tables
//! interleaved in one stream, a DDL in the middle, acknowledgements, schema tracking,
//! cancellation, retries, and the bad inputs of a stream. The kill -9 trial is in
//! `change_crash.rs`.

use crate::common;

use async_trait::async_trait;
use common::changes::{self, DDL_AT, Landed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tributary::model::Op;
use tributary::sources::MemoryChangeStream;
use tributary::stores::{ObjectSink, ObjectStateStore, PipelineState, StateStore, Versioned};
use tributary::*;

/// A state store that, at every save, checks that every change of the log up to the
/// checkpoint is in a committed object, then records the checkpoint.
#[derive(Debug, Clone)]
struct Checking {
    inner: ObjectStateStore,
    sink: ObjectSink,
    n: u64,
    k: i64,
    saves: Arc<Mutex<Vec<Checkpoint>>>,
}

impl Checking {
    fn new(sink: &ObjectSink, n: u64, k: i64) -> Self {
        Checking {
            inner: ObjectStateStore::new(sink.clone(), "_state"),
            sink: sink.clone(),
            n,
            k,
            saves: Arc::new(Mutex::new(Vec::new())),
        }
    }
    fn saves(&self) -> Vec<Checkpoint> {
        self.saves.lock().unwrap().clone()
    }
}

async fn landed(sink: &ObjectSink) -> Vec<(String, Landed)> {
    let mut out = Vec::new();
    for key in sink.list("mem/").await.unwrap_or_default() {
        if key.ends_with(".json") {
            continue;
        }
        let body = sink.read(&key).await.unwrap();
        for line in std::str::from_utf8(&body).unwrap().lines() {
            out.push((key.clone(), changes::parse_line(line)));
        }
    }
    out
}

#[async_trait]
impl StateStore for Checking {
    fn describe(&self) -> String {
        "checking".into()
    }
    async fn load(&self, p: &str) -> Result<Option<Versioned<PipelineState>>> {
        self.inner.load(p).await
    }
    async fn save(&self, p: &str, expected: Option<u64>, state: &PipelineState) -> Result<u64> {
        // A save before a commit (its list of objects not yet covered) keeps the last
        // checkpoint: only checkpoint saves are checked and recorded.
        if !state.leftover.is_empty() {
            return self.inner.save(p, expected, state).await;
        }
        let Some(Checkpoint::Lsn { lsn }) = state.checkpoint else {
            panic!("not an LSN: {:?}", state.checkpoint)
        };
        let have: std::collections::HashSet<(String, i64)> = landed(&self.sink)
            .await
            .into_iter()
            .map(|(_, l)| (l.table, l.id))
            .collect();
        for (t, id, pos) in changes::expected(self.n, self.k, lsn) {
            assert!(
                have.contains(&(t.clone(), id)),
                "checkpoint {lsn} saved before change {t}/{id} (position {pos}) was committed"
            );
        }
        let v = self.inner.save(p, expected, state).await?;
        self.saves.lock().unwrap().extend(state.checkpoint.clone());
        Ok(v)
    }
}

/// Wait (up to 20 s) until the state store has saved position `at`.
async fn wait_for_save(state: &Checking, at: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while state.saves().last().map(lsn) != Some(at) {
        assert!(
            std::time::Instant::now() < deadline,
            "saves: {:?}",
            state.saves()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn lsn(c: &Checkpoint) -> u64 {
    match c {
        Checkpoint::Lsn { lsn } => *lsn,
        other => panic!("not an LSN: {other:?}"),
    }
}

#[tokio::test]
async fn three_tables_land_under_their_own_keys_with_one_checkpoint_acknowledged_after_it() {
    let (n, k) = (150, 3);
    let sink = ObjectSink::memory();
    let state = Checking::new(&sink, n, k);
    let source = MemoryChangeStream::new("mem", "shop", changes::log(n, k))
        .bounded()
        .with_delay(Duration::from_micros(300));
    let pipeline = Pipeline::builder("cdc")
        .extractor(source.clone())
        .sink(sink.clone())
        .state(state.clone())
        .options(
            PipelineOptions::new()
                .with_run_id("r1")
                .with_part_max_rows(20)
                .with_commit_interval(Duration::from_millis(5)),
        )
        .build()
        .unwrap();
    let report = pipeline.run().await.into_result().unwrap();
    assert_eq!(report.checkpoint_to, Some(Checkpoint::Lsn { lsn: n }));

    // Every change exactly once, each table's under its own key.
    let got = landed(&sink).await;
    let mut ids: Vec<(String, i64)> = got.iter().map(|(_, l)| (l.table.clone(), l.id)).collect();
    ids.sort();
    let mut want: Vec<(String, i64)> = changes::expected(n, k, n)
        .into_iter()
        .map(|(t, id, _)| (t, id))
        .collect();
    want.sort();
    assert_eq!(ids, want);
    for (key, l) in &got {
        assert!(
            key.starts_with(&format!("mem/{}/dt=", l.table)),
            "{key} holds a change of table {}",
            l.table
        );
        assert!(l.op == "insert" || l.op == "update");
        assert_eq!(l.note.is_some(), l.table == "b" && l.position >= DDL_AT);
    }

    // Several checkpoints were saved mid-run (the store checked each against what was
    // committed), and each was acknowledged after its save, in order, nothing else.
    let saves = state.saves();
    assert!(saves.len() > 2, "only {} saves", saves.len());
    assert_eq!(source.acks(), saves);
    assert!(saves.windows(2).all(|w| lsn(&w[0]) < lsn(&w[1])));

    // The schemas of the three tables are saved with the checkpoint, b's with the DDL.
    let saved = state.inner.load("cdc").await.unwrap().unwrap().value;
    assert_eq!(
        saved.schemas.keys().cloned().collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    assert!(saved.schemas["b"].field_with_name("note").is_ok());
    assert!(saved.schemas["a"].field_with_name("note").is_err());

    // The manifest records each object's table and schema; b's objects before and
    // after the DDL have different schemas; the change is a warning.
    let manifest: serde_json::Value =
        serde_json::from_slice(&sink.read(report.manifest.as_ref().unwrap()).await.unwrap())
            .unwrap();
    let mut b_prints = std::collections::BTreeSet::new();
    for o in manifest["objects"].as_array().unwrap() {
        let table = o["table"].as_str().unwrap();
        assert!(
            o["key"]
                .as_str()
                .unwrap()
                .starts_with(&format!("mem/{table}/"))
        );
        let names: Vec<&str> = o["schema"]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(&names[..4], ["_op", "_position", "id", "v"]);
        assert_eq!(o["schema"]["fields"][2]["key"], 1);
        if table == "b" {
            b_prints.insert(o["schema"]["fingerprint"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(
        b_prints.len(),
        2,
        "b has one schema before the DDL and one after"
    );
    assert_eq!(
        report.warnings,
        [
            "table b: schema changed: column note (Utf8) was added; objects from here on have the new schema"
        ]
    );
}

#[tokio::test]
async fn a_schema_change_can_fail_the_run_and_commits_nothing_of_the_new_schema() {
    let (n, k) = (150, 2);
    let sink = ObjectSink::memory();
    let state = Checking::new(&sink, n, k);
    let pipeline = Pipeline::builder("cdc")
        .extractor(MemoryChangeStream::new("mem", "shop", changes::log(n, k)).bounded())
        .sink(sink.clone())
        .state(state.clone())
        .options(
            PipelineOptions::new()
                .with_part_max_rows(6)
                .with_on_schema_change(OnSchemaChange::Fail),
        )
        .build()
        .unwrap();
    let report = pipeline.run().await;
    let msg = report.error_message.clone().unwrap();
    assert!(
        matches!(&report.error, Some(Error::SchemaChanged { table, change })
            if table == "b" && change == "column note (Utf8) was added"),
        "{msg}"
    );
    assert_eq!(msg, "table b: schema changed: column note (Utf8) was added");
    let at = report.failed_at.as_ref().expect("where it failed");
    assert_eq!(
        (at.operation.as_str(), at.table.as_deref()),
        ("compare schema", Some("b"))
    );
    let saved = state.saves().last().map(lsn).unwrap_or(0);
    assert!(saved < DDL_AT, "checkpoint {saved} is past the DDL");
    assert!(landed(&sink).await.iter().all(|(_, l)| l.note.is_none()));
}

#[tokio::test]
async fn an_unbounded_stream_needs_a_commit_interval() {
    let err = Pipeline::builder("cdc")
        .extractor(MemoryChangeStream::new("mem", "shop", changes::log(5, 1)))
        .sink(ObjectSink::memory())
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Config { .. }));
    let msg = err.to_string();
    assert!(msg.contains("mem/shop is an unbounded stream"), "{msg}");
    assert!(msg.contains("commit interval"), "{msg}");
}

#[tokio::test]
async fn an_unbounded_stream_lands_on_the_interval_and_cancel_stops_acknowledging() {
    let (n, k) = (60, 2);
    let sink = ObjectSink::memory();
    let state = Checking::new(&sink, n, k);
    let source = MemoryChangeStream::new("mem", "shop", changes::log(n, k));
    let pipeline = Pipeline::builder("cdc")
        .extractor(source.clone())
        .sink(sink.clone())
        .state(state.clone())
        .options(PipelineOptions::new().with_commit_interval(Duration::from_millis(20)))
        .build()
        .unwrap();
    let token = pipeline.cancellation_token();
    let run = tokio::spawn(async move { pipeline.run().await });
    // The source never ends; everything lands on the interval and the last position,
    // a heartbeat (60 is not a multiple of 17, but the log's end is saved anyway).
    wait_for_save(&state, n).await;
    let acks_before = source.acks();
    token.cancel();
    let report = run.await.unwrap();
    assert_eq!(report.outcome, Outcome::Cancelled);
    assert_eq!(report.checkpoint_to, Some(Checkpoint::Lsn { lsn: n }));
    assert_eq!(source.acks(), acks_before);
    assert_eq!(source.acks(), state.saves());
    assert_eq!(landed(&sink).await.len(), changes::expected(n, k, n).len());
}

#[tokio::test]
async fn a_stream_that_moves_without_rows_still_saves_on_the_interval() {
    // Only heartbeats after position 3: the checkpoint still follows them.
    let mut log = changes::log(3, 1);
    log.extend((4..=40).map(tributary::sources::ChangeEvent::heartbeat));
    let sink = ObjectSink::memory();
    let state = Checking::new(&sink, 3, 1);
    let source = MemoryChangeStream::new("mem", "shop", log);
    let pipeline = Pipeline::builder("cdc")
        .extractor(source.clone())
        .sink(sink.clone())
        .state(state.clone())
        .options(PipelineOptions::new().with_commit_interval(Duration::from_millis(10)))
        .build()
        .unwrap();
    let token = pipeline.cancellation_token();
    let run = tokio::spawn(async move { pipeline.run().await });
    wait_for_save(&state, 40).await;
    token.cancel();
    assert_eq!(run.await.unwrap().outcome, Outcome::Cancelled);
    assert_eq!(source.acks().last(), Some(&Checkpoint::Lsn { lsn: 40 }));
}

#[tokio::test]
async fn a_failed_acknowledgement_stops_the_run_and_the_next_run_resumes_from_the_save() {
    let (n, k) = (90, 2);
    let sink = ObjectSink::memory();
    let state = Checking::new(&sink, n, k);
    let calls = Arc::new(Mutex::new(0));
    let c = calls.clone();
    let failing = MemoryChangeStream::new("mem", "shop", changes::log(n, k))
        .bounded()
        .with_delay(Duration::from_micros(500))
        .on_ack(move |_| {
            let mut c = c.lock().unwrap();
            *c += 1;
            if *c == 2 {
                return Err(Error::PositionLost {
                    component: "memory-changes".into(),
                    message: "replication slot \"s1\" was dropped".into(),
                    source: None,
                });
            }
            Ok(())
        });
    let build = |source: MemoryChangeStream| {
        Pipeline::builder("cdc")
            .extractor(source)
            .sink(sink.clone())
            .state(state.clone())
            .options(PipelineOptions::new().with_commit_interval(Duration::from_millis(5)))
            .build()
            .unwrap()
    };
    let report = build(failing.clone()).run().await;
    let at = report.failed_at.as_ref().expect("where it failed");
    assert_eq!(
        (at.operation.as_str(), at.table.as_deref()),
        ("acknowledge", None)
    );
    assert!(
        matches!(report.error, Some(Error::PositionLost { .. })),
        "{:?}",
        report.error_message
    );
    assert!(
        report
            .error_message
            .unwrap()
            .contains("slot \"s1\" was dropped")
    );
    // Two saves, the second one's acknowledgement failed, and nothing after it.
    let saves = state.saves();
    assert_eq!(saves.len(), 2);
    assert_eq!(failing.acks(), saves[..1]);
    assert_eq!(report.checkpoint_to.as_ref(), saves.last());

    // The next run resumes from the last save and lands the rest.
    let healthy = MemoryChangeStream::new("mem", "shop", changes::log(n, k)).bounded();
    let report = build(healthy.clone()).run().await.into_result().unwrap();
    assert_eq!(report.checkpoint_from.as_ref(), saves.last());
    assert_eq!(report.checkpoint_to, Some(Checkpoint::Lsn { lsn: n }));
    let mut ids: Vec<(String, i64)> = landed(&sink)
        .await
        .into_iter()
        .map(|(_, l)| (l.table, l.id))
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), changes::expected(n, k, n).len());
}

/// Fails once, retryably, after `after` batches of its first extraction.
#[derive(Debug)]
struct FlakyOnce {
    inner: MemoryChangeStream,
    after: usize,
    failed: Arc<Mutex<bool>>,
}

#[async_trait]
impl Extractor for FlakyOnce {
    fn source(&self) -> &str {
        "mem"
    }
    fn stream(&self) -> &str {
        "shop"
    }
    async fn open(&self, from: ExtractContext) -> Result<Extraction> {
        use futures::StreamExt;
        let mut e = self.inner.open(from).await?;
        let first = !std::mem::replace(&mut *self.failed.lock().unwrap(), true);
        if first {
            let after = self.after;
            e.batches = e
                .batches
                .take(after)
                .chain(futures::stream::once(async {
                    Err(Error::Connection {
                        component: "mem".into(),
                        message: "connection reset".into(),
                        source: None,
                    })
                }))
                .boxed();
        }
        Ok(e)
    }
}

#[tokio::test]
async fn acknowledgements_stay_in_order_across_retries() {
    let (n, k) = (120, 2);
    let sink = ObjectSink::memory();
    let state = Checking::new(&sink, n, k);
    let inner = MemoryChangeStream::new("mem", "shop", changes::log(n, k))
        .bounded()
        .with_delay(Duration::from_micros(500));
    let pipeline = Pipeline::builder("cdc")
        .extractor(FlakyOnce {
            inner: inner.clone(),
            after: 70,
            failed: Arc::new(Mutex::new(false)),
        })
        .sink(sink.clone())
        .state(state.clone())
        .options(
            PipelineOptions::new()
                .with_commit_interval(Duration::from_millis(5))
                .with_retry(tributary::RetryPolicy::new(2).with_base(Duration::from_millis(1))),
        )
        .build()
        .unwrap();
    let report = pipeline.run().await.into_result().unwrap();
    assert_eq!(report.attempts, 2);
    // The first attempt's failure does not outlive the attempt that succeeded.
    assert_eq!(report.failed_at, None);
    assert_eq!(report.checkpoint_to, Some(Checkpoint::Lsn { lsn: n }));
    // The memory source refuses an acknowledgement that goes backwards, so the run
    // succeeding says they were monotone; and each was a saved checkpoint, in order.
    assert_eq!(inner.acks(), state.saves());
}

#[tokio::test]
async fn a_failed_run_says_where_it_failed() {
    let (n, k) = (20, 2);
    let sink = ObjectSink::memory();
    let pipeline = Pipeline::builder("cdc")
        .extractor(FlakyOnce {
            inner: MemoryChangeStream::new("mem", "shop", changes::log(n, k)).bounded(),
            after: 5,
            failed: Arc::new(Mutex::new(false)),
        })
        .sink(sink.clone())
        .build()
        .unwrap();
    let report = pipeline.run().await;
    assert!(matches!(report.error, Some(Error::Connection { .. })));
    let at = report.failed_at.clone().expect("where it failed");
    assert_eq!(
        (at.operation.as_str(), at.table.as_deref()),
        ("extract", None)
    );
    // The manifest of the failed run says the same, and reads back.
    let manifest = sink
        .read_manifest(report.manifest.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(manifest.failed_at, Some(at));
    let again = pipeline.run().await.into_result().unwrap();
    assert_eq!(again.failed_at, None);
}

#[tokio::test]
async fn a_checkpoint_of_another_kind_is_a_config_error() {
    let pipeline = Pipeline::builder("cdc")
        .extractor(MemoryChangeStream::new("mem", "shop", changes::log(5, 1)).bounded())
        .sink(ObjectSink::memory())
        .options(
            PipelineOptions::new()
                .with_start_from(Checkpoint::Watermark(Watermark::new(CursorValue::Int(3)))),
        )
        .build()
        .unwrap();
    let report = pipeline.run().await;
    assert!(matches!(report.error, Some(Error::Config { .. })));
    let at = report.failed_at.as_ref().expect("where it failed");
    assert_eq!(
        (at.operation.as_str(), at.table.as_deref()),
        ("open the source", None)
    );
    assert!(
        report
            .error_message
            .unwrap()
            .contains("resumes from an LSN checkpoint")
    );
}

#[tokio::test]
async fn a_resumed_stream_gets_the_schemas_saved_with_its_checkpoint() {
    let (n, k) = (150, 1);
    let sink = ObjectSink::memory();
    let state = ObjectStateStore::new(sink.clone(), "_state");
    let build = |source: MemoryChangeStream| {
        Pipeline::builder("cdc")
            .extractor(source)
            .sink(sink.clone())
            .state(state.clone())
            .build()
            .unwrap()
    };
    // A first run up to position 120 (past the DDL), then the log grows.
    let mut first = changes::log(n, k);
    first.truncate(120);
    let r = build(MemoryChangeStream::new("mem", "shop", first).bounded())
        .run()
        .await
        .into_result()
        .unwrap();
    assert_eq!(r.checkpoint_to, Some(Checkpoint::Lsn { lsn: 120 }));
    let saved = state.load("cdc").await.unwrap().unwrap();
    assert!(saved.value.schemas["b"].field_with_name("note").is_ok());
    // Resumed with the right schemas, the rest lands.
    let r = build(MemoryChangeStream::new("mem", "shop", changes::log(n, k)).bounded())
        .run()
        .await
        .into_result()
        .unwrap();
    assert_eq!(r.checkpoint_from, Some(Checkpoint::Lsn { lsn: 120 }));

    // Saved schemas that are not the log's at that position are noticed by the source:
    // proof that the pipeline hands them over.
    let mut wrong = state.load("cdc").await.unwrap().unwrap();
    // b as it was before the DDL (the same columns as a).
    let before_ddl = saved.value.schemas["a"].clone();
    wrong.value.schemas.insert("b".into(), before_ddl);
    state
        .save("cdc", Some(wrong.version), &wrong.value)
        .await
        .unwrap();
    let r = build(MemoryChangeStream::new("mem", "shop", changes::log(n + 10, k)).bounded())
        .run()
        .await;
    let msg = r.error_message.unwrap();
    assert!(
        msg.contains("table b: the schema saved with the checkpoint"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_row_level_sink_gets_the_rows_their_tables_and_their_ops() {
    use tributary::model::change;
    use tributary::stores::MemoryBatchSink;
    let (n, k) = (120, 2);
    let rows = MemoryBatchSink::new();
    let source = MemoryChangeStream::new("mem", "shop", changes::log(n, k)).bounded();
    let report = Pipeline::builder("cdc")
        .extractor(source.clone())
        .batch_sink(rows.clone())
        .options(PipelineOptions::new().with_part_max_rows(10))
        .build()
        .unwrap()
        .run()
        .await
        .into_result()
        .unwrap();
    assert_eq!(report.format, "rows");
    assert_eq!(
        report.manifest, None,
        "a row sink keeps no manifest by default"
    );
    let mut total = 0;
    for t in changes::TABLES {
        for b in rows.table(t) {
            let ops = change::ops(&b).unwrap();
            assert!(ops.iter().all(|o| matches!(o, Op::Insert | Op::Update)));
            let v = b
                .column_by_name("v")
                .unwrap()
                .as_any()
                .downcast_ref::<tributary::arrow_array::StringArray>()
                .unwrap()
                .clone();
            assert!(
                v.iter().all(|x| x == Some(t)),
                "a row of another table in {t}"
            );
            total += b.num_rows();
        }
    }
    assert_eq!(total, changes::expected(n, k, n).len());
    // Without a state store, a checkpoint is acknowledged once its data is committed.
    let acks: Vec<u64> = source.acks().iter().map(lsn).collect();
    assert!(
        acks.windows(2).all(|w| w[0] < w[1]) && acks.last() == Some(&n),
        "{acks:?}"
    );

    // One sink or the other, not both.
    let err = Pipeline::builder("cdc")
        .extractor(MemoryChangeStream::new("mem", "shop", vec![]).bounded())
        .batch_sink(rows)
        .sink(ObjectSink::memory())
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("choose one"), "{err}");
}

#[tokio::test]
async fn an_unbounded_stream_writes_an_epoch_manifest_per_checkpoint_listing_only_its_objects() {
    let (n, k) = (90, 2);
    let sink = ObjectSink::memory();
    let state = Checking::new(&sink, n, k);
    let source = MemoryChangeStream::new("mem", "shop", changes::log(n, k))
        .with_delay(Duration::from_micros(300));
    let pipeline = Pipeline::builder("cdc")
        .extractor(source)
        .sink(sink.clone())
        .state(state.clone())
        .options(
            PipelineOptions::new()
                .with_run_id("r1")
                .with_part_max_rows(8)
                .with_commit_interval(Duration::from_millis(5)),
        )
        .build()
        .unwrap();
    let token = pipeline.cancellation_token();
    let run = tokio::spawn(async move { pipeline.run().await });
    wait_for_save(&state, n).await;
    token.cancel();
    let report = run.await.unwrap();
    assert_eq!(report.outcome, Outcome::Cancelled);

    // One epoch manifest per save, numbered from 1, each with only its own objects.
    let keys = sink.list("mem/shop/").await.unwrap();
    let epochs: Vec<&String> = keys.iter().filter(|k| k.contains(".epoch-")).collect();
    assert_eq!(epochs.len(), state.saves().len());
    assert_eq!(report.epochs, epochs.len() as u64);
    let mut listed = Vec::new();
    for (i, key) in epochs.iter().enumerate() {
        assert!(
            key.ends_with(&format!("r1.epoch-{:06}.manifest.json", i + 1)),
            "{key}"
        );
        let m: serde_json::Value = serde_json::from_slice(&sink.read(key).await.unwrap()).unwrap();
        assert_eq!(m["epoch"], i as u64 + 1);
        assert_eq!(m["outcome"], "running");
        for o in m["objects"].as_array().unwrap() {
            listed.push(o["key"].as_str().unwrap().to_string());
        }
    }
    let mut unique = listed.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), listed.len(), "an object listed by two epochs");
    // Together with the run's own manifest (objects after the last epoch), they list
    // every data object, and the run's manifest says how many epochs there are.
    let own: serde_json::Value =
        serde_json::from_slice(&sink.read(report.manifest.as_ref().unwrap()).await.unwrap())
            .unwrap();
    assert_eq!(own["epochs"], report.epochs);
    assert!(own.get("epoch").is_none());
    for o in own["objects"].as_array().unwrap() {
        listed.push(o["key"].as_str().unwrap().to_string());
    }
    listed.sort();
    let mut data: Vec<String> = sink
        .list("mem/")
        .await
        .unwrap()
        .into_iter()
        .filter(|k| !k.ends_with(".json"))
        .collect();
    data.sort();
    assert_eq!(listed, data);
    assert_eq!(report.rows as usize, changes::expected(n, k, n).len());
}

#[tokio::test]
async fn part_numbers_never_collide_past_ten_thousand_parts() {
    use tributary::arrow_array::{Int64Array, RecordBatch};
    let schema = Arc::new(tributary::arrow_schema::Schema::new(vec![
        tributary::arrow_schema::Field::new("id", tributary::arrow_schema::DataType::Int64, false),
    ]));
    let batches: Vec<Batch> = (0..20_004i64)
        .map(|i| {
            let rb =
                RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![i]))])
                    .unwrap();
            Batch::new(rb).with_partition((i % 2) as u32)
        })
        .collect();
    let sink = ObjectSink::memory();
    let report = Pipeline::builder("parts")
        .extractor(tributary::sources::MemoryExtractor::new("m", "s", batches))
        .batch_sink(
            tributary::stores::ObjectBatchSink::csv(sink.clone()).with_manifest_template(None),
        )
        .options(
            PipelineOptions::new()
                .with_run_id("r1")
                .with_part_max_rows(1),
        )
        .build()
        .unwrap()
        .run()
        .await
        .into_result()
        .unwrap();
    assert_eq!(report.objects.len(), 20_004);
    let keys = sink.list("m/s/").await.unwrap();
    assert_eq!(keys.len(), 20_004, "keys collided");
    assert!(
        keys.iter().any(|k| k.ends_with("r1-100000.csv")),
        "partition 0, part 10"
    );
    assert!(
        keys.iter().any(|k| k.ends_with("r1-100010001.csv")),
        "partition 1, its last part (k = 10,001)"
    );
}

#[tokio::test]
async fn a_retry_of_the_same_run_continues_its_epoch_manifests() {
    let (n, k) = (60, 1);
    let sink = ObjectSink::memory();
    let state = Checking::new(&sink, n, k);
    let build = |log| {
        Pipeline::builder("cdc")
            .extractor(MemoryChangeStream::new("mem", "shop", log))
            .sink(sink.clone())
            .state(state.clone())
            .options(
                PipelineOptions::new()
                    .with_run_id("r1")
                    .with_commit_interval(Duration::from_millis(5)),
            )
            .build()
            .unwrap()
    };
    // The first attempt sees half the log, then stops (as a killed process would).
    let first = build(changes::log(30, k));
    let token = first.cancellation_token();
    let run = tokio::spawn(async move { first.run().await });
    wait_for_save(&state, 30).await;
    token.cancel();
    assert_eq!(run.await.unwrap().outcome, Outcome::Cancelled);
    let epochs = |keys: Vec<String>| keys.into_iter().filter(|k| k.contains(".epoch-")).count();
    let after_first = epochs(sink.list("mem/shop/").await.unwrap());
    assert!(after_first >= 1);
    let saved = state.inner.load("cdc").await.unwrap().unwrap().value;
    assert_eq!(saved.epochs, after_first as u64);
    // The retry, with the same run id, numbers its epochs on from there: none rewritten.
    let second = build(changes::log(n, k));
    let token = second.cancellation_token();
    let run = tokio::spawn(async move { second.run().await });
    wait_for_save(&state, n).await;
    token.cancel();
    let report = run.await.unwrap();
    let total = epochs(sink.list("mem/shop/").await.unwrap());
    assert_eq!(
        total,
        state.saves().len(),
        "one epoch manifest per save, none overwritten"
    );
    assert_eq!(report.epochs, total as u64);
}

#[tokio::test]
async fn a_stop_request_ends_a_stream_at_a_consistent_point_commits_it_all_and_succeeds() {
    let (n, k) = (400, 2);
    let sink = ObjectSink::memory();
    let state = Checking::new(&sink, n, k);
    let source = MemoryChangeStream::new("mem", "shop", changes::log(n, k))
        .with_delay(Duration::from_millis(2));
    let pipeline = Pipeline::builder("cdc")
        .extractor(source.clone())
        .sink(sink.clone())
        .state(state.clone())
        // Longer than the test: what lands, lands because of the stop.
        .options(PipelineOptions::new().with_commit_interval(Duration::from_secs(600)))
        .build()
        .unwrap();
    let stop = pipeline.stop_token();
    let run = tokio::spawn(async move { pipeline.run().await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    stop.cancel();
    let report = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("a stopped stream ends")
        .unwrap();
    assert_eq!(
        report.outcome,
        Outcome::Succeeded,
        "{:?}",
        report.error_message
    );
    let at = lsn(report.checkpoint_to.as_ref().expect("a checkpoint"));
    assert!(at > 0 && at < n, "stopped at {at} of {n}");
    // Exactly the changes up to the stop, each once; saved, then acknowledged.
    assert_eq!(ids_landed(&sink).await, ids_expected(n, k, at));
    assert_eq!(state.saves().last(), Some(&Checkpoint::Lsn { lsn: at }));
    assert_eq!(source.acks().last(), Some(&Checkpoint::Lsn { lsn: at }));

    // The next run resumes after the stop and lands the rest, nothing twice.
    let rest = Pipeline::builder("cdc")
        .extractor(source.clone().bounded())
        .sink(sink.clone())
        .state(state.clone())
        .build()
        .unwrap();
    let report = rest.run().await.into_result().unwrap();
    assert_eq!(report.checkpoint_from, Some(Checkpoint::Lsn { lsn: at }));
    assert_eq!(ids_landed(&sink).await, ids_expected(n, k, n));
}

#[tokio::test]
async fn a_stop_request_cancels_a_source_that_cannot_stop_at_a_consistent_point() {
    let rows = common::changes::log(10, 1)
        .into_iter()
        .filter_map(|e| e.rows)
        .map(Batch::new)
        .collect();
    let source = tributary::sources::MemoryExtractor::new("mem", "table", rows);
    assert!(!source.capabilities().graceful_stop);
    let sink = ObjectSink::memory();
    let pipeline = Pipeline::builder("full")
        .extractor(source)
        .sink(sink.clone())
        .state(ObjectStateStore::new(sink.clone(), "_state"))
        .build()
        .unwrap();
    pipeline.stop_token().cancel();
    let report = pipeline.run().await;
    assert_eq!(report.outcome, Outcome::Cancelled);
    assert!(matches!(report.into_result(), Err(Error::Cancelled)));
    // Only the manifest that records the cancelled run; no data.
    let keys = sink.list("mem/").await.unwrap();
    assert!(
        keys.iter().all(|k| k.ends_with(".manifest.json")),
        "{keys:?}"
    );
    assert_eq!(landed(&sink).await.len(), 0);
    assert!(pipeline.checkpoint().await.unwrap().is_none());
}

/// Every (table, id, position) landed, sorted.
async fn ids_landed(sink: &ObjectSink) -> Vec<(String, i64, u64)> {
    let mut got: Vec<_> = landed(sink)
        .await
        .into_iter()
        .map(|(_, l)| (l.table, l.id, l.position))
        .collect();
    got.sort();
    got
}

/// Every (table, id, position) of the log up to `upto`, sorted.
fn ids_expected(n: u64, k: i64, upto: u64) -> Vec<(String, i64, u64)> {
    let mut want = changes::expected(n, k, upto);
    want.sort();
    want
}

/// Every (table, id, position) a row sink holds visible, sorted (an id is its
/// position × 1000 + its index).
fn ids_held(rows: &tributary::stores::MemoryBatchSink) -> Vec<(String, i64, u64)> {
    use tributary::arrow_array::Int64Array;
    let mut got = Vec::new();
    for t in changes::TABLES {
        for b in rows.table(t) {
            let ids = b
                .column_by_name("id")
                .unwrap()
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .clone();
            got.extend(
                ids.values()
                    .iter()
                    .map(|id| (t.to_string(), *id, (*id / 1000) as u64)),
            );
        }
    }
    got.sort();
    got
}

#[tokio::test]
async fn a_transactional_sink_commits_the_checkpoint_with_the_rows_so_a_failed_run_repeats_nothing()
{
    use tributary::stores::MemoryBatchSink;
    let (n, k) = (300, 2);
    let rows = MemoryBatchSink::transactional();
    let inner = MemoryChangeStream::new("mem", "shop", changes::log(n, k))
        .bounded()
        .with_delay(Duration::from_micros(500));
    let failed = Arc::new(Mutex::new(false));
    // No state store: the sink is the only place the position is kept.
    let pipeline = |fails_after: usize| {
        Pipeline::builder("cdc")
            .extractor(FlakyOnce {
                inner: inner.clone(),
                after: fails_after,
                failed: failed.clone(),
            })
            .batch_sink(rows.clone())
            .options(
                PipelineOptions::new()
                    .with_part_max_rows(10)
                    .with_commit_interval(Duration::from_millis(5))
                    .with_exactly_once(true),
            )
            .build()
            .unwrap()
    };
    let first = pipeline(200).run().await;
    assert_eq!(first.outcome, Outcome::Failed);
    let stored = rows
        .load_state("cdc")
        .await
        .unwrap()
        .expect("a state stored with the rows");
    let at = lsn(stored.checkpoint.as_ref().unwrap());
    assert!(at > 0 && at < n, "stored {at}");
    // What is visible is exactly what the stored position covers: nothing past it,
    // though parts past it were committed (staged) before the failure.
    assert_eq!(ids_held(&rows), ids_expected(n, k, at));
    assert_eq!(first.checkpoint_to, Some(Checkpoint::Lsn { lsn: at }));

    // The next run resumes from the sink's position: every row once.
    let second = pipeline(usize::MAX).run().await.into_result().unwrap();
    assert_eq!(second.checkpoint_from, Some(Checkpoint::Lsn { lsn: at }));
    assert_eq!(ids_held(&rows), ids_expected(n, k, n));
    let stored = rows.load_state("cdc").await.unwrap().unwrap();
    assert_eq!(stored.checkpoint, Some(Checkpoint::Lsn { lsn: n }));
    // And the pipeline reads its checkpoint from the sink, and forgets it there.
    let p = pipeline(usize::MAX);
    assert_eq!(
        p.checkpoint().await.unwrap().and_then(|s| s.checkpoint),
        Some(Checkpoint::Lsn { lsn: n })
    );
    p.reset().await.unwrap();
    assert_eq!(rows.load_state("cdc").await.unwrap(), None);
}

#[tokio::test]
async fn exactly_once_is_refused_at_build_where_the_sink_cannot_keep_it() {
    use tributary::stores::{MemoryBatchSink, ObjectBatchSink};
    let source = || MemoryChangeStream::new("mem", "shop", vec![]).bounded();
    let options = PipelineOptions::new().with_exactly_once(true);
    let refused = |b: PipelineBuilder| b.build().unwrap_err().to_string();

    // Objects without a state store: every run lands everything again.
    let err = refused(
        Pipeline::builder("p")
            .extractor(source())
            .sink(ObjectSink::memory())
            .options(options.clone()),
    );
    assert!(err.contains("no state store"), "{err}");
    // A given start position lands again what was after it.
    let sink = ObjectSink::memory();
    let err = refused(
        Pipeline::builder("p")
            .extractor(source())
            .sink(sink.clone())
            .state(ObjectStateStore::new(sink.clone(), "_state"))
            .options(options.clone().with_start_from(Checkpoint::Lsn { lsn: 1 })),
    );
    assert!(err.contains("with_start_from"), "{err}");
    // A sink that shows rows before its commit.
    let err = refused(
        Pipeline::builder("p")
            .extractor(source())
            .batch_sink(Visible)
            .state(ObjectStateStore::new(sink.clone(), "_state"))
            .options(options.clone()),
    );
    assert!(
        err.contains("shows what it writes before the commit"),
        "{err}"
    );

    // What can keep it builds.
    Pipeline::builder("p")
        .extractor(source())
        .sink(sink.clone())
        .state(ObjectStateStore::new(sink.clone(), "_state"))
        .options(options.clone())
        .build()
        .unwrap();
    Pipeline::builder("p")
        .extractor(source())
        .batch_sink(ObjectBatchSink::csv(sink.clone()))
        .state(ObjectStateStore::new(sink.clone(), "_state"))
        .options(options.clone())
        .build()
        .unwrap();
    Pipeline::builder("p")
        .extractor(source())
        .batch_sink(MemoryBatchSink::transactional())
        .options(options)
        .build()
        .unwrap();
}

/// A sink that declares no capability (as a topic does).
#[derive(Debug)]
struct Visible;

#[async_trait]
impl BatchSink for Visible {
    fn describe(&self) -> String {
        "visible".into()
    }
    async fn begin(&self, _: &BatchTarget) -> Result<Box<dyn BatchWriter>> {
        Err(Error::config("visible", "not for writing"))
    }
}
