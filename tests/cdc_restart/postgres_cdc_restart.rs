//! A PostgreSQL restart under a following WAL reader: the walsender's end is a retryable
//! error, the pipeline retries from the saved checkpoint, and every change lands. A test
//! binary of its own: the restart would break the connections of tests running beside it.

use crate::common;

use common::wal::{cleanup, connect, exec, name};
use sqlx::Connection;
use std::time::Duration;
use tributary::sources::postgres_cdc::{PostgresCdcConfig, PostgresCdcExtractor, SnapshotMode};
use tributary::stores::{ObjectSink, ObjectStateStore};
use tributary::*;

async fn ids(sink: &ObjectSink, table: &str) -> Vec<i64> {
    let mut out = Vec::new();
    for k in sink.list("").await.unwrap() {
        if !k.contains(table) || k.ends_with(".json") || k.starts_with("_state") {
            continue;
        }
        let body = sink.read(&k).await.unwrap();
        for l in std::str::from_utf8(&body).unwrap().lines() {
            if let Some(id) = l.split('|').nth(1).and_then(|v| v.parse().ok()) {
                out.push(id);
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn a_server_restart_is_retried_without_loss() {
    let Some((url, mut conn)) = connect().await else {
        return;
    };
    let t = name("pgcdc_restart");
    exec(&mut conn, &format!("CREATE TABLE {t} (id int PRIMARY KEY)")).await;
    let sink = ObjectSink::memory();
    let p = Pipeline::builder("restart")
        .extractor(
            PostgresCdcExtractor::connect_lazy(
                &url,
                PostgresCdcConfig::new(&t)
                    .with_tables([t.as_str()])
                    .with_snapshot(SnapshotMode::Never),
            )
            .unwrap(),
        )
        .sink(sink.clone())
        .state(ObjectStateStore::new(sink.clone(), "_state"))
        .options(
            PipelineOptions::new()
                .with_commit_interval(Duration::from_millis(200))
                .with_retry(tributary::RetryPolicy::new(30).with_base(Duration::from_millis(500))),
        )
        .build()
        .unwrap();
    let token = p.cancellation_token();
    let run = tokio::spawn(async move { p.run().await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    exec(
        &mut conn,
        &format!("INSERT INTO {t} SELECT g FROM generate_series(0, 99) g"),
    )
    .await;
    let wait = |n: usize| {
        let (sink, t) = (sink.clone(), t.clone());
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while ids(&sink, &t).await.len() < n && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    wait(100).await;
    drop(conn);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/services.sh");
    let st = std::process::Command::new("bash")
        .args([script, "restart-postgres"])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    // (With the reader connected, the server's shutdown waits for `wal_sender_timeout`:
    // its walsender waits for a confirmation of the WAL's end that the reader gives only
    // for positions the pipeline has saved.)
    assert!(st.success(), "PostgreSQL did not restart");
    let mut conn = None;
    for _ in 0..100 {
        if let Ok(c) = sqlx::PgConnection::connect(&url).await {
            conn = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut conn = conn.expect("PostgreSQL is back");
    exec(
        &mut conn,
        &format!("INSERT INTO {t} SELECT g FROM generate_series(100, 199) g"),
    )
    .await;
    wait(200).await;
    token.cancel();
    let report = run.await.unwrap();
    assert!(
        report.attempts >= 2,
        "the restart was noticed and retried: {:?}",
        report.error
    );
    assert_eq!(ids(&sink, &t).await, (0..200).collect::<Vec<i64>>());
    cleanup(&mut conn, &t).await;
    exec(&mut conn, &format!("DROP TABLE {t}")).await;
}
