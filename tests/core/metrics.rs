//! Every named metric fires, with its labels, as `tributary::metrics` documents; the run and
//! object spans open; progress carries the source's row estimate.
//!
//! One process-wide recorder and one span collector serve every test here; each test
//! reads only the series of its own pipeline name.

use crate::common;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use tributary::stores::{ObjectSink, ObjectStateStore};
use tributary::*;

/// `(name, labels)` → value, as the recorder saw them.
type Seen = BTreeMap<(String, BTreeMap<String, String>), f64>;

fn snapshotter() -> &'static Snapshotter {
    static S: OnceLock<Snapshotter> = OnceLock::new();
    S.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let s = recorder.snapshotter();
        recorder
            .install()
            .expect("the only recorder of this test binary");
        s
    })
}

/// The series whose `pipeline` label is `pipeline`. A histogram reads as its sample count.
///
/// A snapshot of the debugging recorder drains it (counters and gauges are swapped to
/// zero), and the tests of this binary run at once: every snapshot is added to one
/// running total, so a test that looks does not take the counts of another.
fn seen(pipeline: &str) -> Seen {
    static TOTAL: OnceLock<Mutex<Seen>> = OnceLock::new();
    let mut total = TOTAL.get_or_init(Default::default).lock().unwrap();
    for (key, _, _, value) in snapshotter().snapshot().into_vec() {
        let labels: BTreeMap<String, String> = key
            .key()
            .labels()
            .map(|l| (l.key().to_string(), l.value().to_string()))
            .collect();
        let slot = total
            .entry((key.key().name().to_string(), labels))
            .or_insert(0.0);
        match value {
            DebugValue::Counter(c) => *slot += c as f64,
            DebugValue::Histogram(h) => *slot += h.len() as f64,
            // A drained gauge reads 0 until it is set again: keep the last value set.
            DebugValue::Gauge(g) if g.into_inner() != 0.0 => *slot = g.into_inner(),
            DebugValue::Gauge(_) => {}
        }
    }
    total
        .iter()
        .filter(|((_, labels), _)| labels.get("pipeline").map(String::as_str) == Some(pipeline))
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

fn value(seen: &Seen, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    seen.get(&(name.to_string(), want)).copied()
}

/// Names of the spans opened in this process, with their `pipeline` field.
#[derive(Default)]
struct Spans(Mutex<Vec<(String, String)>>);

static SPANS: OnceLock<Arc<Spans>> = OnceLock::new();

struct Collector(Arc<Spans>);

impl tracing::Subscriber for Collector {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        struct Field(String);
        impl tracing::field::Visit for Field {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                if f.name() == "pipeline" {
                    self.0 = format!("{v:?}");
                }
            }
        }
        let mut field = Field(String::new());
        span.record(&mut field);
        let mut spans = self.0.0.lock().unwrap();
        spans.push((span.metadata().name().to_string(), field.0));
        tracing::span::Id::from_u64(spans.len() as u64)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

fn spans_of(pipeline: &str) -> Vec<String> {
    let spans = SPANS.get_or_init(|| {
        let s = Arc::new(Spans::default());
        tracing::subscriber::set_global_default(Collector(s.clone()))
            .expect("the only subscriber of this test binary");
        s
    });
    spans
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, p)| p == pipeline)
        .map(|(n, _)| n.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_run_fires_every_metric_and_span() {
    snapshotter();
    spans_of("");
    let pool = sqlx::SqlitePool::connect("sqlite::memory:").await.unwrap();
    sqlx::query("CREATE TABLE t (id INTEGER, v TEXT)")
        .execute(&pool)
        .await
        .unwrap();
    for i in 0..2500 {
        sqlx::query("INSERT INTO t VALUES (?1, 'x')")
            .bind(i)
            .execute(&pool)
            .await
            .unwrap();
    }
    let sink = ObjectSink::memory();
    let name = "metrics_batch";
    let progress: Arc<Mutex<Vec<Progress>>> = Default::default();
    let p2 = progress.clone();
    let pipeline = Pipeline::builder(name)
        .extractor(tributary::sources::sqlite::SqliteExtractor::new(
            pool,
            tributary::sources::sql::SqlSource::table("t")
                .incremental(tributary::sources::sql::Cursor::new("id"))
                .with_batch_rows(1000),
        ))
        .sink(sink.clone())
        .state(ObjectStateStore::new(sink.clone(), "_state"))
        .options(PipelineOptions::new().with_part_max_rows(1000))
        .on_progress(move |p| p2.lock().unwrap().push(p.clone()))
        .build()
        .unwrap();
    let report = pipeline.run().await.into_result().unwrap();
    assert_eq!((report.rows, report.objects.len()), (2500, 3));

    let s = seen(name);
    let stream = [("pipeline", name), ("source", "sqlite"), ("stream", "t")];
    assert_eq!(
        value(&s, metrics::ROWS_EXTRACTED, &stream),
        Some(2500.0),
        "{s:?}"
    );
    assert_eq!(value(&s, metrics::ROWS_COMMITTED, &stream), Some(2500.0));
    assert_eq!(value(&s, metrics::OBJECTS_COMMITTED, &stream), Some(3.0));
    assert_eq!(
        value(&s, metrics::BYTES_WRITTEN, &stream),
        Some(report.bytes as f64)
    );
    let run = [
        ("pipeline", name),
        ("source", "sqlite"),
        ("stream", "t"),
        ("outcome", "succeeded"),
    ];
    assert_eq!(value(&s, metrics::RUNS, &run), Some(1.0));
    assert_eq!(value(&s, metrics::RUN_DURATION, &run), Some(1.0));
    let plain = stream;
    assert!(value(&s, metrics::CHECKPOINTS_SAVED, &plain).unwrap_or(0.0) >= 1.0);
    // An integer cursor has no time: no lag is claimed.
    assert_eq!(value(&s, metrics::CHECKPOINT_LAG, &plain), None);

    // A failed run is counted as failed.
    let bad = Pipeline::builder(name)
        .extractor(tributary::sources::sqlite::SqliteExtractor::new(
            sqlx::SqlitePool::connect("sqlite::memory:").await.unwrap(),
            tributary::sources::sql::SqlSource::table("missing"),
        ))
        .sink(ObjectSink::memory())
        .build()
        .unwrap();
    assert!(bad.run().await.into_result().is_err());
    let s = seen(name);
    let failed = [
        ("pipeline", name),
        ("source", "sqlite"),
        ("stream", "missing"),
        ("outcome", "failed"),
    ];
    assert_eq!(value(&s, metrics::RUNS, &failed), Some(1.0));

    // Spans: one per run (two runs), one per object commit (three objects).
    let spans = spans_of(name);
    let count = |n: &str| spans.iter().filter(|s| *s == n).count();
    assert_eq!(count("tributary.run"), 2, "{spans:?}");
    assert_eq!(count("tributary.object"), 3, "{spans:?}");

    // Progress: SQLite counts the rows the query will read (exact, it is embedded), and
    // every progress event carries that total.
    let progress = progress.lock().unwrap();
    assert!(progress.iter().all(|p| p.rows_estimated == Some(2500)));
    assert_eq!(progress.last().unwrap().rows_committed, 2500);
}

/// A change stream: the checkpoint lag comes from the rows' commit times, the source lag
/// from the slot, and progress carries the snapshot's estimate.
#[cfg(feature = "postgres-cdc")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_stream_reports_checkpoint_and_source_lag() {
    use common::wal::{cleanup, connect, exec, name, reader};
    use tributary::model::change::ChangeOptions;
    use tributary::sources::cdc::SnapshotMode;
    snapshotter();
    let Some((url, mut conn)) = connect().await else {
        return;
    };
    let t = name("metrics_wal");
    exec(
        &mut conn,
        &format!(
            "CREATE TABLE {t} (id int PRIMARY KEY, v text);\n\
             INSERT INTO {t} SELECT g, 'x' FROM generate_series(1, 5000) g;\n\
             ANALYZE {t}"
        ),
    )
    .await;
    let sink = ObjectSink::memory();
    let state = ObjectStateStore::new(sink.clone(), "_state");
    let progress: Arc<Mutex<Vec<Progress>>> = Default::default();
    let p2 = progress.clone();
    let build = |p2: Arc<Mutex<Vec<Progress>>>| {
        Pipeline::builder(&t)
            .extractor(reader(&url, &t, &[t.as_str()], |c| {
                c.with_snapshot(SnapshotMode::Initial)
                    .with_change_options(ChangeOptions::new().with_all_metadata())
            }))
            .sink(sink.clone())
            .state(state.clone())
            .on_progress(move |p| p2.lock().unwrap().push(p.clone()))
            .build()
            .unwrap()
    };
    let first = build(p2.clone()).run().await.into_result().unwrap();
    assert_eq!(first.rows, 5000);
    // The snapshot's estimate (pg_class.reltuples after ANALYZE) reached progress.
    let estimated = progress
        .lock()
        .unwrap()
        .iter()
        .find_map(|p| p.rows_estimated);
    assert_eq!(estimated, Some(5000), "the snapshot's estimate in progress");

    // Changes after the snapshot: their commit times give the lag.
    exec(&mut conn, &format!("UPDATE {t} SET v = 'y' WHERE id <= 10")).await;
    let second = build(p2).run().await.into_result().unwrap();
    assert_eq!(second.rows, 10);
    let s = seen(&t);
    let plain = [
        ("pipeline", t.as_str()),
        ("source", "postgres-cdc"),
        ("stream", "wal"),
    ];
    let lag = value(&s, metrics::CHECKPOINT_LAG, &plain).expect("a checkpoint lag");
    assert!((0.0..120.0).contains(&lag), "lag {lag} s");
    assert!(
        value(&s, metrics::SOURCE_LAG_BYTES, &plain).is_some(),
        "{s:?}"
    );
    let stream = [
        ("pipeline", t.as_str()),
        ("source", "postgres-cdc"),
        ("stream", &format!("public.{t}")),
    ];
    assert_eq!(
        value(&s, metrics::ROWS_COMMITTED, &stream),
        Some(5010.0),
        "{s:?}"
    );
    cleanup(&mut conn, &t).await;
    exec(&mut conn, &format!("DROP TABLE {t}")).await;
}
