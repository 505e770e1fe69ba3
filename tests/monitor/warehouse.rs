//! The warehouse (checkpoints and run history) on SQLite, PostgreSQL and MariaDB.

use crate::common;

use tributary::sources::MemoryExtractor;
use tributary::stores::{ObjectSink, PipelineState, StateStore};
use tributary::warehouse::Warehouse;
use tributary::*;

fn state(n: u64) -> PipelineState {
    PipelineState::new(Some(Checkpoint::Lsn { lsn: n }), "r").with_next_part(3)
}

async fn exercise(wh: Warehouse) {
    let pipeline = common::unique("wh");
    // State: conditional saves.
    let st = wh.state_store();
    assert!(st.load(&pipeline).await.unwrap().is_none());
    let v1 = st.save(&pipeline, None, &state(1)).await.unwrap();
    assert!(matches!(
        st.save(&pipeline, None, &state(9)).await,
        Err(Error::Conflict { .. })
    ));
    let v2 = st.save(&pipeline, Some(v1), &state(2)).await.unwrap();
    assert!(matches!(
        st.save(&pipeline, Some(v1), &state(9)).await,
        Err(Error::Conflict { .. })
    ));
    let loaded = st.load(&pipeline).await.unwrap().unwrap();
    assert_eq!(
        (loaded.version, loaded.value.checkpoint),
        (v2, Some(Checkpoint::Lsn { lsn: 2 }))
    );
    assert_eq!(loaded.value.next_part, 3);
    // Delete: gone, and a new state starts again from version 1.
    st.delete(&pipeline).await.unwrap();
    assert!(st.load(&pipeline).await.unwrap().is_none());
    assert_eq!(st.save(&pipeline, None, &state(5)).await.unwrap(), 1);
    st.delete(&pipeline).await.unwrap();
    st.delete(&pipeline).await.unwrap(); // deleting nothing is fine

    // Run history: a success and a failure, both recorded.
    let schema = std::sync::Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(
        "id",
        arrow_schema::DataType::Int64,
        false,
    )]));
    let rb = arrow_array::RecordBatch::try_new(
        schema,
        vec![std::sync::Arc::new(arrow_array::Int64Array::from(vec![
            1, 2,
        ]))],
    )
    .unwrap();
    let sink = ObjectSink::memory();
    let ok = Pipeline::builder(pipeline.clone())
        .extractor(MemoryExtractor::new(
            "t",
            "s",
            vec![Batch::new(rb).with_checkpoint(Checkpoint::Lsn { lsn: 5 })],
        ))
        .sink(sink.clone())
        .run_log(wh.run_log())
        .build()
        .unwrap()
        .run()
        .await;
    assert!(ok.succeeded(), "{:?}", ok.error);
    assert!(ok.warnings.is_empty(), "{:?}", ok.warnings);
    #[derive(Debug)]
    struct Broken;
    #[async_trait::async_trait]
    impl Extractor for Broken {
        fn source(&self) -> &str {
            "t"
        }
        fn stream(&self) -> &str {
            "s"
        }
        async fn open(&self, cx: ExtractContext) -> Result<Extraction> {
            let _ = cx.checkpoint;
            let batches: Result<BatchStream> = async {
                Err(Error::NotFound {
                    component: "t".into(),
                    message: "table s does not exist".into(),
                    source: None,
                })
            }
            .await;
            Ok(Extraction::new(batches?))
        }
    }
    let failed = Pipeline::builder(pipeline.clone())
        .extractor(Broken)
        .sink(sink)
        .run_log(wh.run_log())
        .build()
        .unwrap()
        .run()
        .await;
    assert_eq!(failed.outcome, Outcome::Failed);
    let history = wh.run_history(Some(&pipeline), 10).await.unwrap();
    assert_eq!(history.len(), 2);
    let f = history
        .iter()
        .find(|h| h.outcome == "failed")
        .expect("failed run recorded");
    assert!(
        f.error
            .as_deref()
            .unwrap()
            .contains("table s does not exist")
    );
    let s = history.iter().find(|h| h.outcome == "succeeded").unwrap();
    assert_eq!((s.rows, s.objects), (2, 1));
    assert_eq!(
        s.checkpoint_to.as_deref(),
        Some(r#"{"kind":"lsn","lsn":5}"#)
    );
    assert_eq!(s.run_id, ok.run_id);
    assert!(
        (s.started_at - ok.started_at).num_milliseconds().abs() < 2,
        "timestamps round-trip in UTC"
    );
}

#[tokio::test]
async fn sqlite_warehouse() {
    let dir = tempfile::tempdir().unwrap();
    exercise(
        Warehouse::connect(&format!("sqlite://{}/wh.db", dir.path().display()))
            .await
            .unwrap(),
    )
    .await;
}

#[tokio::test]
async fn postgres_warehouse() {
    let Some(url) = common::service("TRIBUTARY_TEST_PG_URL", "PostgreSQL") else {
        return;
    };
    exercise(Warehouse::connect(&url).await.unwrap()).await;
}

#[tokio::test]
async fn mysql_warehouse() {
    let Some(url) = common::service("TRIBUTARY_TEST_MYSQL_URL", "MariaDB") else {
        return;
    };
    exercise(Warehouse::connect(&url).await.unwrap()).await;
}

#[tokio::test]
async fn unreachable_or_misconfigured_warehouses_give_typed_errors() {
    let err = Warehouse::connect("postgres://postgres@127.0.0.1:1/test")
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, Error::Connection { .. }) && err.is_retryable(),
        "{err}"
    );
    let err = Warehouse::connect("oracle://x").await.err().unwrap();
    assert!(matches!(err, Error::Config { .. }), "{err}");
    if let Some(url) = common::service("TRIBUTARY_TEST_MYSQL_URL", "MariaDB") {
        let bad = url.replace("tributary:tributary@", "tributary:wrong-password@");
        let err = Warehouse::connect(&bad).await.err().unwrap();
        assert!(matches!(err, Error::PermissionDenied { .. }), "{err}");
        assert!(
            !err.to_string().contains("wrong-password"),
            "password leaked: {err}"
        );
    }
}
