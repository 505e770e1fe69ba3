//! Binlog CDC against server-wide changes of the project's own MariaDB, one at a time (its
//! own test binary, one test, so nothing else reads the binlog meanwhile): minimal row
//! metadata named by `check()` and by the stream, and a server restart mid-stream retried
//! from the saved position without loss.

use crate::common;

use common::binlog::{exec, lines};

use sqlx::{Connection, Executor, MySqlConnection};
use std::time::Duration;
use tributary::sources::mysql_cdc::{MySqlCdcConfig, MySqlCdcExtractor, SnapshotMode, StartAt};
use tributary::stores::{ObjectSink, ObjectStateStore};
use tributary::*;

async fn ids(sink: &ObjectSink, table: &str) -> Vec<i32> {
    let mut v: Vec<i32> = lines(sink, table)
        .await
        .iter()
        .map(|l| l.split('|').nth(1).unwrap().parse().unwrap())
        .collect();
    v.sort();
    v.dedup();
    v
}

async fn minimal_row_metadata_is_named(url: &str, conn: &mut MySqlConnection) {
    let t = common::unique("cdcm").replace('-', "_");
    exec(
        conn,
        &format!("CREATE TABLE {t} (id INT PRIMARY KEY, v INT)"),
    )
    .await;
    let row = sqlx::query("SHOW MASTER STATUS")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    use sqlx::Row;
    let start = StartAt::Position {
        file: row.try_get(0).unwrap(),
        pos: row.try_get(1).unwrap(),
    };
    exec(conn, "SET GLOBAL binlog_row_metadata = 'MINIMAL'").await;
    let _ = conn
        .execute(format!("INSERT INTO {t} VALUES (1, 1)").as_str())
        .await;
    let cdc = MySqlCdcExtractor::connect_lazy(
        url,
        MySqlCdcConfig::new()
            .with_tables([t.clone()])
            .with_snapshot(SnapshotMode::Never)
            .with_start_at(start.clone())
            .until_current_end(),
    )
    .unwrap();
    let checked = cdc.check().await;
    exec(conn, "SET GLOBAL binlog_row_metadata = 'FULL'").await;
    let e = checked.unwrap_err();
    assert!(matches!(e, Error::Prerequisite { .. }), "{e:?}");
    assert!(e.to_string().contains("binlog_row_metadata = FULL"), "{e}");
    // The events written meanwhile have no column names: the stream says so.
    let sink = ObjectSink::memory();
    let e = Pipeline::builder("minimal")
        .extractor(cdc)
        .sink(sink.clone())
        .build()
        .unwrap()
        .run()
        .await
        .into_result()
        .unwrap_err();
    assert!(matches!(e, Error::Prerequisite { .. }), "{e:?}");
    assert!(
        e.to_string().contains("binlog_row_metadata = FULL") && e.to_string().contains(&t),
        "{e}"
    );
}

async fn a_server_restart_is_retried_without_loss(url: &str, conn: &mut MySqlConnection) {
    let t = common::unique("cdcr").replace('-', "_");
    exec(conn, &format!("CREATE TABLE {t} (id INT PRIMARY KEY)")).await;
    let sink = ObjectSink::memory();
    let state = ObjectStateStore::new(sink.clone(), "_state");
    let p = Pipeline::builder("restart")
        .extractor(
            MySqlCdcExtractor::connect_lazy(
                url,
                MySqlCdcConfig::new()
                    .with_tables([t.clone()])
                    .with_heartbeat(Duration::from_millis(300)),
            )
            .unwrap(),
        )
        .sink(sink.clone())
        .state(state.clone())
        .options(
            PipelineOptions::new()
                .with_commit_interval(Duration::from_millis(200))
                .with_retry(tributary::RetryPolicy::new(10).with_base(Duration::from_millis(300))),
        )
        .build()
        .unwrap();
    let token = p.cancellation_token();
    let run = tokio::spawn(async move { p.run().await });
    let values = |a: i32, b: i32| {
        (a..b)
            .map(|i| format!("({i})"))
            .collect::<Vec<_>>()
            .join(",")
    };
    exec(conn, &format!("INSERT INTO {t} VALUES {}", values(0, 100))).await;
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
    // Stop the server and start it again.
    let _ = conn.execute("SHUTDOWN").await;
    // mariadbd removes its pid file when its shutdown is complete: a new server started
    // before that finds the datadir still locked (a fixed 2 s wait once was too short).
    let home = std::env::var("TRIBUTARY_SERVICES_HOME")
        .unwrap_or_else(|_| "/var/tmp/tributary-services".into());
    let pid_file = std::path::Path::new(&home).join("run/mariadbd.pid");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while pid_file.exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/services.sh");
    let st = std::process::Command::new("bash")
        .args([script, "start-mariadb"])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "MariaDB did not restart");
    let mut c2 = MySqlConnection::connect(url).await.unwrap();
    exec(
        &mut c2,
        &format!("INSERT INTO {t} VALUES {}", values(100, 200)),
    )
    .await;
    wait(200).await;
    // Cancelled once a saved checkpoint covers every object (a cancelled run removes
    // what it committed past its checkpoint: rows of the snapshot still in progress).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        use tributary::stores::StateStore;
        if let Ok(Some(v)) = state.load("restart").await
            && v.value.checkpoint.is_some()
            && v.value.leftover.is_empty()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    token.cancel();
    let report = run.await.unwrap();
    assert!(
        report.attempts >= 2,
        "the restart was noticed and retried: {:?}",
        report.error
    );
    assert_eq!(ids(&sink, &t).await, (0..200).collect::<Vec<_>>());
}

#[tokio::test]
async fn server_wide_changes_one_at_a_time() {
    let Some(url) = common::service("TRIBUTARY_TEST_MYSQL_URL", "MariaDB") else {
        return;
    };
    let mut conn = MySqlConnection::connect(&url).await.unwrap();
    minimal_row_metadata_is_named(&url, &mut conn).await;
    a_server_restart_is_retried_without_loss(&url, &mut conn).await;
}
