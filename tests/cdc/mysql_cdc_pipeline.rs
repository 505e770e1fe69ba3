//! Binlog CDC through the pipeline against the project's own MariaDB: snapshot then
//! changes across runs with nothing lost or repeated, a DDL and a TRUNCATE mid-stream,
//! lost positions, missing privileges, statement-format and minimal-image events, a
//! killed replication connection.

use crate::common;

use common::binlog::{connect, exec, lines, table};

use sqlx::Executor;
use std::time::Duration;
use tributary::sources::mysql_cdc::{
    MySqlCdcConfig, MySqlCdcExtractor, SnapshotMode, WhenPositionLost,
};
use tributary::stores::{ObjectSink, ObjectStateStore, StateStore};
use tributary::*;

fn pipeline(url: &str, config: MySqlCdcConfig, sink: &ObjectSink) -> Pipeline {
    Pipeline::builder("orders-cdc")
        .extractor(MySqlCdcExtractor::connect_lazy(url, config).unwrap())
        .sink(sink.clone())
        .state(ObjectStateStore::new(sink.clone(), "_state"))
        .build()
        .unwrap()
}

/// The lines of `after` that are not in `before` (each line of `before` taken once).
fn new_lines(before: &[String], after: Vec<String>) -> Vec<String> {
    let mut left = before.to_vec();
    after
        .into_iter()
        .filter(|l| match left.iter().position(|x| x == l) {
            Some(i) => {
                left.remove(i);
                false
            }
            None => true,
        })
        .collect()
}

#[tokio::test]
async fn runs_continue_where_the_last_stopped_through_a_ddl_and_a_truncate() {
    let Some((url, mut conn)) = connect().await else {
        return;
    };
    let t = table("cdcp");
    exec(
        &mut conn,
        &format!(
            "CREATE TABLE {t} (id INT PRIMARY KEY, status VARCHAR(20), n INT);\n\
             INSERT INTO {t} VALUES (1, 'new', 10), (2, 'new', 20), (3, 'new', 30)"
        ),
    )
    .await;
    let sink = ObjectSink::memory();
    let config = MySqlCdcConfig::new()
        .with_tables([t.clone()])
        .until_current_end();

    // First run: the snapshot, and its position saved.
    let r1 = pipeline(&url, config.clone(), &sink)
        .run()
        .await
        .into_result()
        .unwrap();
    assert_eq!(r1.rows, 3);
    let snapshot = lines(&sink, &t).await;
    assert_eq!(
        snapshot,
        [
            "snapshot|1|new|10",
            "snapshot|2|new|20",
            "snapshot|3|new|30"
        ]
    );
    let Some(Checkpoint::Binlog { pos: p1, .. }) = r1.checkpoint_to.clone() else {
        panic!("{:?}", r1.checkpoint_to)
    };

    // Second run: exactly the changes since, nothing of the snapshot again.
    exec(
        &mut conn,
        &format!(
            "INSERT INTO {t} VALUES (4, 'new', 40);\n\
             UPDATE {t} SET status = 'shipped' WHERE id = 1;\n\
             DELETE FROM {t} WHERE id = 2"
        ),
    )
    .await;
    let r2 = pipeline(&url, config.clone(), &sink)
        .run()
        .await
        .into_result()
        .unwrap();
    assert_eq!(r2.checkpoint_from, r1.checkpoint_to);
    assert_eq!(r2.rows, 3);
    let before = lines(&sink, &t).await;
    assert_eq!(
        new_lines(&snapshot, before.clone()),
        ["insert|4|new|40", "update|1|shipped|10", "delete|2|new|20"]
    );
    let Some(Checkpoint::Binlog { pos: p2, .. }) = r2.checkpoint_to.clone() else {
        panic!()
    };
    assert!(p2 > p1);

    // A DDL: the rows after it carry the new column, in an object of their own.
    exec(
        &mut conn,
        &format!(
            "ALTER TABLE {t} ADD COLUMN note VARCHAR(10);\n\
             INSERT INTO {t} VALUES (5, 'new', 50, 'gift');\n\
             UPDATE {t} SET n = 31 WHERE id = 3;\n\
             TRUNCATE TABLE {t}"
        ),
    )
    .await;
    let r3 = pipeline(&url, config.clone(), &sink)
        .run()
        .await
        .into_result()
        .unwrap();
    assert_eq!(r3.rows, 3, "{r3:?}");
    assert_eq!(
        new_lines(&before, lines(&sink, &t).await),
        ["insert|5|new|50|gift", "update|3|new|31|", "truncate||||"]
    );
    assert_eq!(r3.objects.len(), 1, "one object for the new schema");

    // Nothing new: no rows, and the checkpoint stays or moves forward.
    let r4 = pipeline(&url, config, &sink)
        .run()
        .await
        .into_result()
        .unwrap();
    assert_eq!(r4.rows, 0);
    assert_eq!(lines(&sink, &t).await.len(), 9);
}

#[tokio::test]
async fn a_lost_position_is_an_error_naming_it_or_a_new_snapshot_when_asked() {
    let Some((url, mut conn)) = connect().await else {
        return;
    };
    let t = table("cdcp");
    exec(
        &mut conn,
        &format!("CREATE TABLE {t} (id INT PRIMARY KEY, v INT);\nINSERT INTO {t} VALUES (1, 1)"),
    )
    .await;
    let sink = ObjectSink::memory();
    let state = ObjectStateStore::new(sink.clone(), "_state");
    let config = MySqlCdcConfig::new()
        .with_tables([t.clone()])
        .until_current_end();
    let run = |config: MySqlCdcConfig| {
        Pipeline::builder("orders-cdc")
            .extractor(MySqlCdcExtractor::connect_lazy(&url, config).unwrap())
            .sink(sink.clone())
            .state(state.clone())
            .build()
            .unwrap()
    };
    let _ = run(config.clone()).run().await.into_result().unwrap();
    let saved = state.load("orders-cdc").await.unwrap().unwrap();
    let Some(Checkpoint::Binlog { server, gtid, .. }) = saved.value.checkpoint.clone() else {
        panic!()
    };

    // A purged file.
    let mut gone = saved.value.clone();
    gone.checkpoint = Some(Checkpoint::Binlog {
        file: "binlog.999999".into(),
        pos: 1234,
        gtid: gtid.clone(),
        server: server.clone(),
    });
    state
        .save("orders-cdc", Some(saved.version), &gone)
        .await
        .unwrap();
    let e = run(config.clone()).run().await.into_result().unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::PositionLost { .. }), "{e:?}");
    assert!(
        msg.contains("binlog.999999") && msg.contains("first available position is binlog."),
        "{msg}"
    );

    // An unknown GTID, resuming by GTID.
    let saved = state.load("orders-cdc").await.unwrap().unwrap();
    let mut unknown = saved.value.clone();
    unknown.checkpoint = Some(Checkpoint::Binlog {
        file: "binlog.999999".into(),
        pos: 4,
        gtid: Some("0-1-999999999".into()),
        server: server.clone(),
    });
    state
        .save("orders-cdc", Some(saved.version), &unknown)
        .await
        .unwrap();
    let e = run(config.clone().resume_by_gtid())
        .run()
        .await
        .into_result()
        .unwrap_err();
    assert!(matches!(e, Error::PositionLost { .. }), "{e:?}");
    assert!(e.to_string().contains("binlog.999999:4"), "{e}");

    // A checkpoint of another server.
    let saved = state.load("orders-cdc").await.unwrap().unwrap();
    let mut other = saved.value.clone();
    other.checkpoint = Some(Checkpoint::Binlog {
        file: "binlog.000001".into(),
        pos: 4,
        gtid,
        server: Some("mariadb:server_id=77".into()),
    });
    state
        .save("orders-cdc", Some(saved.version), &other)
        .await
        .unwrap();
    let e = run(config.clone()).run().await.into_result().unwrap_err();
    assert!(matches!(e, Error::PositionLost { .. }), "{e:?}");
    assert!(e.to_string().contains("server_id=77"), "{e}");

    // Asked to, it takes a new snapshot instead, and saves a good position.
    let r = run(config.when_position_lost(WhenPositionLost::Resnapshot))
        .run()
        .await
        .into_result()
        .unwrap();
    assert_eq!(r.rows, 1);
    assert_eq!(lines(&sink, &t).await, ["snapshot|1|1", "snapshot|1|1"]);
    let Some(Checkpoint::Binlog { server: s, .. }) = r.checkpoint_to else {
        panic!()
    };
    assert_eq!(s, server);
}

#[tokio::test]
async fn missing_privileges_are_named_and_the_stream_refuses_politely() {
    let Some((url, mut conn)) = connect().await else {
        return;
    };
    let user = format!("np{}", std::process::id());
    exec(
        &mut conn,
        &format!(
            "DROP USER IF EXISTS '{user}'@'127.0.0.1';\n\
             CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'sentinel-pw-731';\n\
             GRANT SELECT ON test.* TO '{user}'@'127.0.0.1'"
        ),
    )
    .await;
    let mut u = url::Url::parse(&url).unwrap();
    u.set_username(&user).unwrap();
    u.set_password(Some("sentinel-pw-731")).unwrap();
    let cdc = MySqlCdcExtractor::connect_lazy(
        u.as_str(),
        MySqlCdcConfig::new().with_snapshot(SnapshotMode::Never),
    )
    .unwrap();
    let e = cdc.check().await.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Prerequisite { .. }), "{e:?}");
    assert!(
        msg.contains("REPLICATION SLAVE") && msg.contains("BINLOG MONITOR"),
        "{msg}"
    );
    // Streaming anyway fails with the server's refusal, typed, and never with the password.
    let e = match cdc.extract(None).await {
        Err(e) => e,
        Ok(mut s) => {
            use futures::StreamExt;
            let mut first = None;
            while let Some(b) = s.next().await {
                if let Err(e) = b {
                    first = Some(e);
                    break;
                }
            }
            first.expect("an error")
        }
    };
    assert!(matches!(e, Error::PermissionDenied { .. }), "{e:?}");
    assert!(!format!("{e} {e:?} {cdc:?}").contains("sentinel-pw-731"));
    exec(&mut conn, &format!("DROP USER '{user}'@'127.0.0.1'")).await;
}

#[tokio::test]
async fn statement_format_and_minimal_images_are_typed_errors_at_their_position() {
    let Some((url, mut conn)) = connect().await else {
        return;
    };
    for (session, want) in [
        (
            "SET SESSION binlog_format = 'STATEMENT'",
            "binlog_format = ROW",
        ),
        (
            "SET SESSION binlog_row_image = 'MINIMAL'",
            "binlog_row_image = FULL",
        ),
    ] {
        let t = table("cdcp");
        exec(
            &mut conn,
            &format!("CREATE TABLE {t} (id INT PRIMARY KEY, v INT)"),
        )
        .await;
        let row = sqlx::query("SHOW MASTER STATUS")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        use sqlx::Row;
        let start = tributary::sources::mysql_cdc::StartAt::Position {
            file: row.try_get(0).unwrap(),
            pos: row.try_get(1).unwrap(),
        };
        exec(
            &mut conn,
            &format!("{session};\nINSERT INTO {t} VALUES (1, 1);\nUPDATE {t} SET v = 2"),
        )
        .await;
        exec(
            &mut conn,
            "SET SESSION binlog_format = 'ROW';\nSET SESSION binlog_row_image = 'FULL'",
        )
        .await;
        let sink = ObjectSink::memory();
        let config = MySqlCdcConfig::new()
            .with_tables([t.clone()])
            .with_snapshot(SnapshotMode::Never)
            .with_start_at(start)
            .until_current_end();
        let e = pipeline(&url, config, &sink)
            .run()
            .await
            .into_result()
            .unwrap_err();
        assert!(matches!(e, Error::Prerequisite { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains(want) && msg.contains("binlog."), "{msg}");
    }
}

#[tokio::test]
async fn a_killed_replication_connection_is_retried_from_the_saved_position() {
    let Some((url, mut conn)) = connect().await else {
        return;
    };
    let t = table("cdcp");
    exec(&mut conn, &format!("CREATE TABLE {t} (id INT PRIMARY KEY)")).await;
    // A user of its own, so that the kill below hits only this test's dump thread.
    let user = format!("kl{}", std::process::id());
    exec(
        &mut conn,
        &format!(
            "DROP USER IF EXISTS '{user}'@'127.0.0.1';\n\
             CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'kill-pw';\n\
             GRANT SELECT, REPLICATION SLAVE, BINLOG MONITOR ON *.* TO '{user}'@'127.0.0.1'"
        ),
    )
    .await;
    let mut u = url::Url::parse(&url).unwrap();
    u.set_username(&user).unwrap();
    u.set_password(Some("kill-pw")).unwrap();
    let sink = ObjectSink::memory();
    let state = ObjectStateStore::new(sink.clone(), "_state");
    let p = Pipeline::builder("kill")
        .extractor(
            MySqlCdcExtractor::connect_lazy(
                u.as_str(),
                MySqlCdcConfig::new()
                    .with_tables([t.clone()])
                    .with_server_id(4_100_000 + std::process::id() % 1000)
                    .with_heartbeat(Duration::from_millis(200)),
            )
            .unwrap(),
        )
        .sink(sink.clone())
        .state(state.clone())
        .options(
            PipelineOptions::new()
                .with_commit_interval(Duration::from_millis(200))
                .with_retry(tributary::RetryPolicy::new(5).with_base(Duration::from_millis(100))),
        )
        .build()
        .unwrap();
    let token = p.cancellation_token();
    let run = tokio::spawn(async move { p.run().await });
    let ids = |from: i32, to: i32| {
        (from..to)
            .map(|i| format!("({i})"))
            .collect::<Vec<_>>()
            .join(",")
    };
    exec(
        &mut conn,
        &format!("INSERT INTO {t} VALUES {}", ids(0, 100)),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    // Kill our dump thread, as an operator or a failover would.
    use sqlx::Row;
    let threads = sqlx::query(
        "SELECT CAST(ID AS SIGNED) FROM information_schema.PROCESSLIST \
         WHERE COMMAND = 'Binlog Dump' AND USER = ?",
    )
    .bind(&user)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(!threads.is_empty());
    for th in &threads {
        let id: i64 = th.try_get(0).unwrap();
        let _ = conn.execute(format!("KILL {id}").as_str()).await;
    }
    exec(
        &mut conn,
        &format!("INSERT INTO {t} VALUES {}", ids(100, 200)),
    )
    .await;
    // Wait until everything is saved, then stop.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = lines(&sink, &t).await;
        let mut seen: Vec<i32> = got
            .iter()
            .map(|l| l.split('|').nth(1).unwrap().parse().unwrap())
            .collect();
        seen.sort();
        seen.dedup();
        if seen.len() == 200 || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    token.cancel();
    let report = run.await.unwrap();
    assert!(
        report.attempts >= 2,
        "the kill was noticed and retried: {report:?}"
    );
    let got = lines(&sink, &t).await;
    let mut seen: Vec<i32> = got
        .iter()
        .map(|l| l.split('|').nth(1).unwrap().parse().unwrap())
        .collect();
    seen.sort();
    let n = seen.len();
    seen.dedup();
    assert_eq!(seen, (0..200).collect::<Vec<_>>(), "every row landed");
    assert!(
        n - seen.len() <= 100,
        "duplicates only of the step in flight: {}",
        n - seen.len()
    );
    exec(&mut conn, &format!("DROP USER '{user}'@'127.0.0.1'")).await;
}
