//! Bad input gets a typed error naming what is wrong; nothing lands at a final key; the
//! checkpoint does not move; the failed run is in the history.

use crate::common;

use arrow_array::{Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use std::sync::Arc;
use tributary::config::PipelineConfig;
use tributary::sources::MemoryExtractor;
use tributary::stores::{ObjectSink, ObjectStateStore, StateStore};
use tributary::warehouse::Warehouse;
use tributary::*;

fn no_env(_: &str) -> Option<String> {
    None
}

#[test]
fn config_errors_name_the_section_and_key() {
    let e = PipelineConfig::parse(
        "[mysql_config]\nhostname=h\nusername=u\npasword=x\n",
        "p.conf",
        no_env,
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("unknown key \"pasword\" in section [mysql_config]"),
        "{e}"
    );
    let e = PipelineConfig::parse("[mysql]\nhost=h\n", "p.conf", no_env).unwrap_err();
    assert!(e.to_string().contains("unknown section [mysql]"), "{e}");
    let e = PipelineConfig::parse("[store]\nurl=file:///tmp/x\n", "p.conf", no_env)
        .unwrap()
        .mysql()
        .unwrap_err();
    assert!(
        e.to_string().contains("missing section [mysql_config]"),
        "{e}"
    );
    let e = PipelineConfig::parse("[postgres_config]\nhost=h\nusername=u\n", "p.conf", no_env)
        .unwrap()
        .postgres()
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("missing key \"database\" in section [postgres_config]"),
        "{e}"
    );
    let e = PipelineConfig::parse(
        "[postgres_config]\nhost=h\nport=54x\nusername=u\ndatabase=d\n",
        "p.conf",
        no_env,
    )
    .unwrap()
    .postgres()
    .unwrap_err();
    assert!(e.to_string().contains("port \"54x\""), "{e}");
    let e = PipelineConfig::parse("[store]\nurl=ftp://x/y\n", "p.conf", no_env)
        .unwrap()
        .store()
        .unwrap_err();
    assert!(
        matches!(e, Error::Config { .. }) && e.to_string().contains("ftp"),
        "{e}"
    );
    let e = PipelineConfig::parse("[store]\nformat=xml\n", "p.conf", no_env)
        .unwrap()
        .format()
        .unwrap_err();
    assert!(e.to_string().contains("xml"), "{e}");
    let e = PipelineConfig::parse("[store]\nkey_template = x", "p.conf", no_env).unwrap_err();
    assert!(e.to_string().contains("key_template"), "{e}");
}

#[test]
fn config_reads_the_books_sections_redacts_secrets_and_takes_env_overrides() {
    let text = "[mysql_config]\nhostname = db.example\nport = 3306\nusername = etl\npassword = p@ss:w/rd\ndatabase = shop\n\
                [aws_boto_credentials]\naccess_key = AKIA\nsecret_key = SECRET\nbucket_name = landing\naccount_id = 1\n\
                [warehouse]\nurl = postgres://wh:whpass@h/db\n";
    let env =
        |k: &str| (k == "TRIBUTARY_MYSQL_CONFIG_HOSTNAME").then(|| "override.example".to_string());
    let c = PipelineConfig::parse(text, "p.conf", env).unwrap();
    let m = c.mysql().unwrap();
    assert_eq!(m.host, "override.example");
    assert_eq!(
        m.url("mysql", 3306),
        "mysql://etl:p%40ss%3Aw%2Frd@override.example:3306/shop"
    );
    assert_eq!(
        c.store_url().unwrap(),
        "s3://landing",
        "the book's bucket is the default store"
    );
    let shown = format!("{c} {m:?} {:?}", c.aws());
    for secret in ["p@ss", "SECRET", "AKIA", "whpass"] {
        assert!(!shown.contains(secret), "{secret} leaked in {shown}");
    }
}

fn one_batch() -> Batch {
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
    let rb = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2, 3]))]).unwrap();
    Batch::new(rb).with_checkpoint(Checkpoint::Lsn { lsn: 3 })
}

/// Run one batch into `sink` with state and history elsewhere; return the report, the
/// state and the history.
async fn run_into(
    sink: impl Sink,
) -> (
    RunReport,
    Option<Checkpoint>,
    Vec<tributary::warehouse::RunRecord>,
) {
    let state_store = ObjectStateStore::new(ObjectSink::memory(), "_state");
    let wh = Warehouse::connect("sqlite::memory:").await.unwrap();
    let report = Pipeline::builder("bad")
        .extractor(MemoryExtractor::new("t", "s", vec![one_batch()]))
        .sink(sink)
        .state(state_store.clone())
        .run_log(wh.run_log())
        .build()
        .unwrap()
        .run()
        .await;
    let state = state_store
        .load("bad")
        .await
        .unwrap()
        .and_then(|v| v.value.checkpoint);
    (report, state, wh.run_history(None, 10).await.unwrap())
}

fn s3(bucket: &str, tweak: impl Fn(&mut Vec<(String, String)>)) -> Option<ObjectSink> {
    let (_, mut opts) = common::s3_options()?;
    tweak(&mut opts);
    Some(
        ObjectSink::from_url_with_options(
            &format!("s3://{bucket}/{}", common::unique("bad")),
            &opts,
        )
        .unwrap(),
    )
}

fn set(opts: &mut [(String, String)], key: &str, value: &str) {
    opts.iter_mut().find(|(k, _)| k == key).unwrap().1 = value.into();
}

#[tokio::test]
async fn unreachable_store() {
    let Some(sink) = s3("tributary-test", |o| {
        set(o, "aws_endpoint", "http://127.0.0.1:1");
        o.push(("max_retries".into(), "1".into()));
        o.push(("retry_timeout".into(), "2s".into()));
    }) else {
        return;
    };
    let (r, state, history) = run_into(sink).await;
    assert_eq!(r.outcome, Outcome::Failed);
    let e = r.error.unwrap();
    assert!(
        e.is_retryable(),
        "an unreachable store is worth retrying: {e:?}"
    );
    assert!(state.is_none(), "checkpoint advanced");
    assert_eq!(history[0].outcome, "failed");
}

#[tokio::test]
async fn missing_bucket() {
    // A bucket name no test ever creates.
    let bucket = common::unique("missing").to_lowercase();
    let Some(sink) = s3(&bucket, |_| {}) else {
        return;
    };
    let (r, state, history) = run_into(sink.clone()).await;
    assert_eq!(r.outcome, Outcome::Failed);
    let e = r.error.unwrap();
    assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
    assert!(
        e.to_string().contains(&bucket),
        "the error names the bucket: {e}"
    );
    assert!(state.is_none());
    assert!(history[0].error.as_deref().unwrap_or_default().len() > 10);
}

#[tokio::test]
async fn wrong_credentials() {
    let Some(sink) = s3("tributary-test", |o| {
        set(o, "aws_secret_access_key", "wrong")
    }) else {
        return;
    };
    let (r, state, _) = run_into(sink.clone()).await;
    assert_eq!(r.outcome, Outcome::Failed);
    let e = r.error.unwrap();
    assert!(matches!(e, Error::PermissionDenied { .. }), "{e:?}");
    assert!(!e.is_retryable());
    assert!(!format!("{e} {e:?}").contains("wrong\""), "secret leaked");
    assert!(state.is_none());
    // Nothing landed: look with the right credentials.
    let good = s3("tributary-test", |_| {}).unwrap();
    assert!(good.list("").await.unwrap().is_empty());
}

#[tokio::test]
async fn unwritable_folder() {
    let dir = tempfile::tempdir().unwrap();
    let sink = ObjectSink::local(dir.path()).unwrap();
    // Where the pipeline needs a folder (`t/`, the source segment of the key) there is a file.
    std::fs::write(dir.path().join("t"), b"in the way").unwrap();
    let (r, state, history) = run_into(sink).await;
    assert_eq!(r.outcome, Outcome::Failed);
    let e = r.error.unwrap();
    assert!(
        matches!(
            e,
            Error::Storage {
                retryable: false,
                ..
            } | Error::PermissionDenied { .. }
        ),
        "{e:?}"
    );
    assert!(state.is_none());
    assert_eq!(history[0].outcome, "failed");
    assert_eq!(std::fs::read(dir.path().join("t")).unwrap(), b"in the way");
    // A folder that cannot be created at all.
    let e = ObjectSink::local("/proc/tributary-cannot-create").unwrap_err();
    assert!(
        matches!(
            e,
            Error::PermissionDenied { .. }
                | Error::Storage {
                    retryable: false,
                    ..
                }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("/proc/tributary-cannot-create"),
        "{e}"
    );
}

#[tokio::test]
async fn missing_table_is_recorded_as_a_failed_run() {
    use tributary::sources::sql::SqlSource;
    use tributary::sources::sqlite::SqliteExtractor;
    let wh = Warehouse::connect("sqlite::memory:").await.unwrap();
    let pool = sqlx::SqlitePool::connect("sqlite::memory:").await.unwrap();
    let r = Pipeline::builder("missing")
        .extractor(SqliteExtractor::new(pool, SqlSource::table("Orders")))
        .sink(ObjectSink::memory())
        .run_log(wh.run_log())
        .build()
        .unwrap()
        .run()
        .await;
    assert!(matches!(r.error, Some(Error::NotFound { .. })));
    let h = wh.run_history(Some("missing"), 1).await.unwrap();
    assert!(
        h[0].error
            .as_deref()
            .unwrap()
            .contains("no such table: Orders"),
        "{:?}",
        h[0].error
    );
}

#[test]
fn bad_key_templates_are_refused() {
    use tributary::stores::KeyTemplate;
    assert!(
        KeyTemplate::new("{source}/{stream}.csv")
            .unwrap_err()
            .to_string()
            .contains("{run_id}")
    );
    assert!(
        KeyTemplate::new("{run_id}-{part}-{tabel}")
            .unwrap_err()
            .to_string()
            .contains("{tabel}")
    );
    assert!(KeyTemplate::new("{run_id}-{part:5}").is_err());
    assert!(KeyTemplate::new("x/{run_id}-{part:03}.{ext}").is_ok());
}

#[tokio::test]
async fn a_conflict_and_a_refused_path_keep_the_stores_error_as_their_source() {
    use std::error::Error as _;
    let dir = tempfile::tempdir().unwrap();
    let sink = ObjectSink::local(dir.path()).unwrap();
    sink.put_if_absent("k.json", bytes::Bytes::from_static(b"{}"))
        .await
        .unwrap();
    let e = sink
        .put_if_absent("k.json", bytes::Bytes::from_static(b"{}"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Conflict { .. }), "{e:?}");
    let cause = e.source().expect("the store's error is kept");
    assert!(
        cause.downcast_ref::<object_store::Error>().is_some(),
        "{cause:?}"
    );
}

#[tokio::test]
async fn a_failed_rename_into_place_names_its_cause() {
    // Issue 8.11: an I/O error at the rename was reported as "Upload aborted".
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a"), b"a file where a folder should be").unwrap();
    let sink = ObjectSink::local(dir.path()).unwrap();
    let mut w = sink
        .open(&ObjectTarget::new("a/b.csv", "text/csv"))
        .await
        .unwrap();
    w.write(bytes::Bytes::from_static(b"1|x\n")).await.unwrap();
    let e = w.commit().await.unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, Error::Storage { .. }), "{e:?}");
    assert!(!text.contains("Upload aborted"), "{text}");
    assert!(
        text.to_lowercase().contains("directory") || text.contains("exists"),
        "{text}"
    );
    // The whole staged file is kept out of sight, listed for cleaning, not at the key.
    assert_eq!(sink.list("").await.unwrap(), vec!["a".to_string()]);
    assert_eq!(sink.list_staged().await.unwrap().len(), 1);
}
