//! A process killed in the middle of a run (`abort()`, as on OOM or SIGKILL) leaves
//! nothing at a final key and no checkpoint; the next run lands every row once.
//!
//! The test re-runs its own binary as a child that crashes mid-write.

use crate::common;

use arrow_array::{Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use async_trait::async_trait;
use futures::StreamExt;
use std::sync::Arc;
use tributary::stores::{ObjectSink, ObjectStateStore, StateStore};
use tributary::*;

#[derive(Debug)]
struct CrashAfter {
    batches: i64,
    crash_at: Option<i64>,
}

#[async_trait]
impl Extractor for CrashAfter {
    fn source(&self) -> &str {
        "crash"
    }
    fn stream(&self) -> &str {
        "numbers"
    }
    async fn open(&self, cx: ExtractContext) -> Result<Extraction> {
        let _from = cx.checkpoint;
        let batches: Result<BatchStream> = async {
            let (n, crash) = (self.batches, self.crash_at);
            let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
            Ok(futures::stream::iter(0..n)
                .then(move |i| {
                    let schema = schema.clone();
                    async move {
                        if Some(i) == crash {
                            // Let the pipeline push the earlier batches to the store first.
                            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                            std::process::abort();
                        }
                        let ids = Int64Array::from_iter_values(i * 100_000..(i + 1) * 100_000);
                        let rb = RecordBatch::try_new(schema, vec![Arc::new(ids)]).unwrap();
                        Ok(Batch::new(rb).with_checkpoint(Checkpoint::Lsn { lsn: i as u64 + 1 }))
                    }
                })
                .boxed())
        }
        .await;
        Ok(Extraction::new(batches?))
    }
}

fn pipeline(sink: ObjectSink, crash_at: Option<i64>) -> Pipeline {
    let mut options = PipelineOptions::new();
    if let Ok(id) = std::env::var("TRIBUTARY_CRASH_RUN_ID") {
        options = options.with_run_id(id);
    }
    Pipeline::builder("crash")
        .options(options)
        .extractor(CrashAfter {
            batches: 30,
            crash_at,
        })
        .sink(sink.clone())
        .state(ObjectStateStore::new(sink, "_state"))
        .build()
        .unwrap()
}

fn sink_for(target: &str) -> ObjectSink {
    match target.strip_prefix("s3:") {
        Some(prefix) => {
            let (bucket, opts) = common::s3_options().expect("s3 configured in the parent");
            ObjectSink::from_url_with_options(&format!("s3://{bucket}/{prefix}"), &opts).unwrap()
        }
        None => ObjectSink::local(target).unwrap(),
    }
    // Small upload parts, so that the crash happens with parts already uploaded.
    .with_part_size(5 * 1024 * 1024)
}

/// The child: runs until it aborts. Only run by `crash_leaves_nothing_*`.
#[tokio::test]
#[ignore = "run as a child process by the crash tests"]
async fn crash_child() {
    let target = std::env::var("TRIBUTARY_CRASH_TARGET").expect("set by the parent");
    let _ = pipeline(sink_for(&target), Some(25)).run().await;
    unreachable!("the child must abort before the run ends");
}

async fn crash_then_recover(target: &str) {
    crash_then_recover_as(target, None).await
}

/// Crash a child (with `run_id`, when given, else a new one per run) and recover with a
/// run in this process (the same `run_id`).
async fn crash_then_recover_as(target: &str, run_id: Option<&str>) {
    let mut child = std::process::Command::new(std::env::current_exe().unwrap());
    child
        .args(["crash::crash_child", "--exact", "--ignored", "--nocapture"])
        .env("TRIBUTARY_CRASH_TARGET", target);
    if let Some(id) = run_id {
        child.env("TRIBUTARY_CRASH_RUN_ID", id);
    }
    let status = child.status().unwrap();
    assert!(!status.success(), "the child should have crashed");
    let sink = sink_for(target);
    let visible: Vec<String> = sink.list("").await.unwrap();
    assert!(
        visible.iter().all(|k| !k.ends_with(".csv")),
        "a crashed run left data at a final key: {visible:?}"
    );
    assert!(
        ObjectStateStore::new(sink.clone(), "_state")
            .load("crash")
            .await
            .unwrap()
            .is_none()
    );
    // The next run lands everything, once.
    let mut recover = Pipeline::builder("crash")
        .extractor(CrashAfter {
            batches: 30,
            crash_at: None,
        })
        .sink(sink.clone())
        .state(ObjectStateStore::new(sink.clone(), "_state"));
    if let Some(id) = run_id {
        recover = recover.options(PipelineOptions::new().with_run_id(id));
    }
    let r = recover.build().unwrap().run().await.into_result().unwrap();
    assert_eq!(r.rows, 3_000_000);
    let text = sink.read(&r.objects[0].key).await.unwrap();
    assert_eq!(text.iter().filter(|b| **b == b'\n').count(), 3_000_000);
    let csv: Vec<String> = sink
        .list("")
        .await
        .unwrap()
        .into_iter()
        .filter(|k| k.ends_with(".csv"))
        .collect();
    assert_eq!(csv.len(), 1, "{csv:?}");
}

#[tokio::test]
async fn crash_leaves_nothing_in_a_local_folder() {
    let dir = tempfile::tempdir().unwrap();
    crash_then_recover(&dir.path().display().to_string()).await;
    // The crash really happened mid-object: its staged file is in the hidden staging
    // folder (not beside the final keys, where a folder reader would take it for data),
    // holding the parts written before the crash, and was never listed as an object.
    let sink = ObjectSink::local(dir.path()).unwrap();
    let staged = sink.list_staged().await.unwrap();
    assert_eq!(staged.len(), 1, "expected the crashed upload's staged file");
    assert!(
        staged[0].bytes >= 5 * 1024 * 1024,
        "at least one part was written before the crash: {staged:?}"
    );
    assert!(
        staged[0]
            .path
            .starts_with(dir.path().join(tributary::stores::STAGING_DIR))
    );
    let mut stack = vec![dir.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.ends_with(tributary::stores::STAGING_DIR) {
                continue;
            }
            assert!(
                !p.to_string_lossy().contains('#'),
                "a staged file beside the data: {p:?}"
            );
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    assert_eq!(
        sink.clean_staged(std::time::Duration::ZERO).await.unwrap(),
        1
    );
}

#[tokio::test]
async fn a_rerun_of_the_same_run_id_removes_the_dead_writers_staged_file() {
    let dir = tempfile::tempdir().unwrap();
    let sink = ObjectSink::local(dir.path()).unwrap();
    crash_then_recover_as(&dir.path().display().to_string(), Some("run-7")).await;
    // The rerun wrote the same keys, so it found and removed the crashed child's file.
    assert_eq!(sink.list_staged().await.unwrap(), vec![]);
}

#[tokio::test]
async fn crash_leaves_nothing_on_s3() {
    if common::s3_options().is_none() {
        return;
    }
    crash_then_recover(&format!("s3:{}", common::unique("crash"))).await;
}

/// The same on S3: the crashed child's multipart upload is listed while it is left, and a
/// rerun of the same run id (an orchestrator's retry), writing the same key, aborts it.
#[tokio::test]
async fn a_rerun_of_the_same_run_id_aborts_the_dead_writers_upload_on_s3() {
    if common::s3_options().is_none() {
        return;
    }
    let target = format!("s3:{}", common::unique("crash-rerun"));
    let sink = sink_for(&target);
    let mut child = std::process::Command::new(std::env::current_exe().unwrap());
    child
        .args(["crash::crash_child", "--exact", "--ignored", "--nocapture"])
        .env("TRIBUTARY_CRASH_TARGET", &target)
        .env("TRIBUTARY_CRASH_RUN_ID", "run-8");
    assert!(!child.status().unwrap().success());
    let left = sink.list_staged().await.unwrap();
    assert_eq!(left.len(), 1, "the crashed upload is listed: {left:?}");
    assert!(
        left[0]
            .upload
            .as_deref()
            .is_some_and(|k| k.ends_with(".csv")),
        "{left:?}"
    );
    crash_then_recover_as(&target, Some("run-8")).await;
    assert_eq!(sink.list_staged().await.unwrap(), vec![]);
}

#[tokio::test]
async fn a_local_state_store_refuses_a_second_save_of_one_version_and_stages_out_of_sight() {
    let dir = tempfile::tempdir().unwrap();
    let sink = ObjectSink::local(dir.path()).unwrap();
    let state = ObjectStateStore::new(sink.clone(), "_state");
    let s = tributary::stores::PipelineState::new(Some(Checkpoint::Lsn { lsn: 1 }), "r");
    let v1 = state.save("p", None, &s).await.unwrap();
    let again = state.save("p", None, &s).await;
    assert!(matches!(again, Err(Error::Conflict { .. })), "{again:?}");
    state.save("p", Some(v1), &s).await.unwrap();
    assert_eq!(state.load("p").await.unwrap().unwrap().version, 2);
    assert!(sink.list_staged().await.unwrap().is_empty());
    sink.put("x/y.json", bytes::Bytes::from_static(b"{}"))
        .await
        .unwrap();
    sink.put("x/y.json", bytes::Bytes::from_static(b"[]"))
        .await
        .unwrap();
    assert_eq!(&sink.read("x/y.json").await.unwrap()[..], b"[]");
    assert!(sink.list_staged().await.unwrap().is_empty());
}

/// What a killed run left between committing an object and saving the checkpoint that
/// covers it (the state's leftover: the object, and the manifest already listing it) is
/// removed by the next run before it reads: the object goes, the manifest no longer
/// lists it (nor its rows and bytes), and its rows land once, in the new run's object.
#[tokio::test]
async fn the_next_run_removes_what_a_killed_run_committed_past_its_checkpoint() {
    let sink = ObjectSink::memory();
    let state = ObjectStateStore::new(sink.clone(), "_state");
    let numbers = |n: i64| {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let rb = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from_iter_values(0..n))])
            .unwrap();
        sources::MemoryExtractor::new(
            "crash",
            "numbers",
            vec![Batch::new(rb).with_checkpoint(Checkpoint::Lsn { lsn: 1 })],
        )
    };
    let run = |run_id: &str| {
        Pipeline::builder("leftover")
            .extractor(numbers(3))
            .sink(sink.clone())
            .state(state.clone())
            .options(PipelineOptions::new().with_run_id(run_id))
            .build()
            .unwrap()
    };
    // The killed run's traces, as its intent described them: an object holding the
    // rows, a manifest that lists it beside an earlier object, and the state's record.
    let dead = "crash/numbers/dt=2026-01-01/dead-00001.csv";
    let kept = "crash/numbers/dt=2026-01-01/dead-00000.csv";
    let manifest = "crash/numbers/dt=2026-01-01/dead.manifest.json";
    sink.put(dead, bytes::Bytes::from_static(b"0\n1\n2\n"))
        .await
        .unwrap();
    sink.put(kept, bytes::Bytes::from_static(b"9\n"))
        .await
        .unwrap();
    let listed = serde_json::json!({
        "run_id": "dead", "outcome": "running", "rows": 4, "bytes": 8,
        "objects": [
            {"key": kept, "rows": 1, "bytes": 2, "sha256": "", "table": "numbers"},
            {"key": dead, "rows": 3, "bytes": 6, "sha256": "", "table": "numbers"},
        ],
    });
    sink.put(manifest, serde_json::to_vec(&listed).unwrap().into())
        .await
        .unwrap();
    let left = stores::PipelineState::new(None, "dead")
        .with_next_part(2)
        .with_leftover(Leftover::new(vec![dead.into()], Some(manifest.into())));
    state.save("leftover", None, &left).await.unwrap();

    let report = run("next").run().await.into_result().unwrap();
    assert_eq!(report.rows, 3);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.starts_with("removed 1 object(s) that run dead committed")),
        "{:?}",
        report.warnings
    );
    assert!(matches!(sink.read(dead).await, Err(Error::NotFound { .. })));
    let m: serde_json::Value = serde_json::from_slice(&sink.read(manifest).await.unwrap()).unwrap();
    assert_eq!(m["objects"].as_array().unwrap().len(), 1);
    assert_eq!(m["objects"][0]["key"], kept);
    assert_eq!(
        (m["rows"].as_u64(), m["bytes"].as_u64()),
        (Some(1), Some(2))
    );
    let saved = state.load("leftover").await.unwrap().unwrap().value;
    assert!(saved.leftover.is_empty());
    assert_eq!(saved.checkpoint, Some(Checkpoint::Lsn { lsn: 1 }));
    // Every data object is listed by some manifest, and the rows are there once.
    let mut data = vec![];
    for k in sink.list("").await.unwrap() {
        if k.ends_with(".csv") {
            data.push(String::from_utf8(sink.read(&k).await.unwrap().to_vec()).unwrap());
        }
    }
    data.sort();
    assert_eq!(data, ["0\n1\n2\n", "9\n"]);
}

#[tokio::test]
async fn a_reset_removes_what_a_killed_run_committed_past_its_checkpoint() {
    let sink = ObjectSink::memory();
    let state = ObjectStateStore::new(sink.clone(), "_state");
    let p = Pipeline::builder("reset")
        .extractor(sources::MemoryExtractor::new("crash", "numbers", vec![]))
        .sink(sink.clone())
        .state(state.clone())
        .build()
        .unwrap();
    let dead = "crash/numbers/dt=2026-01-01/dead-00001.csv";
    let kept = "crash/numbers/dt=2026-01-01/dead-00000.csv";
    let manifest = "crash/numbers/dt=2026-01-01/dead.manifest.json";
    for key in [dead, kept] {
        sink.put(key, bytes::Bytes::from_static(b"1\n"))
            .await
            .unwrap();
    }
    let listed = serde_json::json!({
        "run_id": "dead", "outcome": "running", "rows": 2, "bytes": 4,
        "objects": [
            {"key": kept, "rows": 1, "bytes": 2, "sha256": "", "table": "numbers"},
            {"key": dead, "rows": 1, "bytes": 2, "sha256": "", "table": "numbers"},
        ],
    });
    sink.put(manifest, serde_json::to_vec(&listed).unwrap().into())
        .await
        .unwrap();
    let left = stores::PipelineState::new(Some(Checkpoint::Lsn { lsn: 1 }), "dead")
        .with_leftover(Leftover::new(vec![dead.into()], Some(manifest.into())));
    state.save("reset", None, &left).await.unwrap();

    p.reset().await.unwrap();
    assert!(state.load("reset").await.unwrap().is_none());
    assert!(matches!(sink.read(dead).await, Err(Error::NotFound { .. })));
    assert_eq!(&sink.read(kept).await.unwrap()[..], b"1\n");
    let m: serde_json::Value = serde_json::from_slice(&sink.read(manifest).await.unwrap()).unwrap();
    let keys: Vec<&str> = m["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, [kept]);
}
