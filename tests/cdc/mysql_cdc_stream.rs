//! Binlog CDC stream behaviour against the project's own MariaDB: no gap and no repeat at
//! the snapshot's switch to the stream under concurrent writes, big transactions in
//! bounded batches, binlog rotation, GTID resume, idle heartbeats, a duplicate server id,
//! a table dropped while streaming.

use crate::common;

use common::binlog::{connect, end, exec, lines, table};

use futures::StreamExt;
use sqlx::{Connection, Executor, MySqlConnection, Row};
use std::collections::BTreeMap;
use std::time::Duration;
use tributary::sources::mysql_cdc::{MySqlCdcConfig, MySqlCdcExtractor, SnapshotMode, StartAt};
use tributary::stores::{ObjectSink, ObjectStateStore};
use tributary::*;

/// The table's contents by replaying `op|id|v` lines in order (objects in commit order:
/// one run, one object per table here).
fn replay(lines: &[String]) -> BTreeMap<i64, String> {
    let mut m = BTreeMap::new();
    for l in lines {
        let f: Vec<&str> = l.split('|').collect();
        let id: i64 = f[1].parse().unwrap();
        match f[0] {
            "snapshot" | "insert" | "update" => {
                m.insert(id, f[2].to_string());
            }
            "delete" => {
                m.remove(&id);
            }
            other => panic!("op {other}"),
        }
    }
    m
}

async fn contents(conn: &mut MySqlConnection, t: &str) -> BTreeMap<i64, String> {
    sqlx::query(&format!("SELECT id, CAST(v AS CHAR) FROM {t}"))
        .fetch_all(&mut *conn)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get::<i32, _>(0) as i64, r.get::<String, _>(1)))
        .collect()
}

#[tokio::test]
async fn a_snapshot_taken_under_concurrent_writes_switches_to_the_stream_without_gap_or_repeat() {
    let Some((url, mut conn)) = connect().await else {
        return;
    };
    let t = table("cdcs");
    exec(
        &mut conn,
        &format!("CREATE TABLE {t} (id INT PRIMARY KEY, v INT)"),
    )
    .await;
    let values: Vec<String> = (0..20_000).map(|i| format!("({i}, 0)")).collect();
    exec(
        &mut conn,
        &format!("INSERT INTO {t} VALUES {}", values.join(",")),
    )
    .await;

    // A writer that inserts, updates and deletes while the snapshot reads.
    let (wurl, wt) = (url.clone(), t.clone());
    let writer = tokio::spawn(async move {
        let mut c = MySqlConnection::connect(&wurl).await.unwrap();
        for i in 0..300 {
            let id = 20_000 + i;
            c.execute(format!("INSERT INTO {wt} VALUES ({id}, 1)").as_str())
                .await
                .unwrap();
            c.execute(format!("UPDATE {wt} SET v = v + 1 WHERE id = {}", i * 37 % 20_000).as_str())
                .await
                .unwrap();
            c.execute(format!("DELETE FROM {wt} WHERE id = {}", i * 53 % 20_000 + 1).as_str())
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(30)).await;
    let sink = ObjectSink::memory();
    let state = ObjectStateStore::new(sink.clone(), "_state");
    let run = |config: MySqlCdcConfig| {
        Pipeline::builder("switch")
            .extractor(MySqlCdcExtractor::connect_lazy(&url, config).unwrap())
            .sink(sink.clone())
            .state(state.clone())
            .build()
            .unwrap()
    };
    let config = MySqlCdcConfig::new()
        .with_tables([t.clone()])
        .with_batch_rows(1000)
        .until_current_end();
    let r1 = run(config.clone()).run().await.into_result().unwrap();
    let first = lines(&sink, &t).await;
    writer.await.unwrap();
    // A second run drains what the writer did after the first run's end.
    let r2 = run(config).run().await.into_result().unwrap();
    assert_eq!(r2.checkpoint_from, r1.checkpoint_to);
    // The second run's lines: those not in the first run's objects (one object per run).
    let got = lines(&sink, &t).await;
    let mut left = first.clone();
    let second: Vec<String> = got
        .iter()
        .filter(|l| match left.iter().position(|x| x == *l) {
            Some(i) => {
                left.remove(i);
                false
            }
            None => true,
        })
        .cloned()
        .collect();
    let snapshots = got.iter().filter(|l| l.starts_with("snapshot|")).count();
    assert!(snapshots >= 19_000, "{snapshots}");
    // Replaying the first run (snapshot, then its changes) then the second gives exactly
    // the table: a change missed at the switch, or one applied twice, would show.
    let mut ordered = first.clone();
    ordered.extend(second);
    assert_eq!(replay(&ordered), contents(&mut conn, &t).await);
    // No insert of the writer both in the snapshot and in the stream.
    let mut seen = std::collections::HashSet::new();
    for l in &got {
        let f: Vec<&str> = l.split('|').collect();
        if f[0] == "snapshot" || f[0] == "insert" {
            assert!(
                seen.insert(f[1].to_string()),
                "row {} landed twice: {l}",
                f[1]
            );
        }
    }
}

#[tokio::test]
async fn a_big_transaction_streams_in_bounded_batches_with_one_checkpoint_at_its_end() {
    let Some((url, mut conn)) = connect().await else {
        return;
    };
    let t = table("cdcs");
    exec(
        &mut conn,
        &format!("CREATE TABLE {t} (id INT PRIMARY KEY, v INT)"),
    )
    .await;
    let start = end(&mut conn).await;
    exec(
        &mut conn,
        &format!(
            "INSERT INTO {t} SELECT seq, seq FROM seq_1_to_50000;\n\
             INSERT INTO {t} VALUES (0, 0)"
        ),
    )
    .await;
    let cdc = MySqlCdcExtractor::connect_lazy(
        &url,
        MySqlCdcConfig::new()
            .with_tables([t.clone()])
            .with_snapshot(SnapshotMode::Never)
            .with_start_at(start)
            .with_batch_rows(4096)
            .until_current_end(),
    )
    .unwrap();
    let mut s = cdc.extract(None).await.unwrap();
    let (mut rows, mut batches, mut cps) = (0, 0, Vec::new());
    while let Some(b) = s.next().await {
        let b = b.unwrap();
        assert!(b.num_rows() <= 4096);
        rows += b.num_rows();
        batches += 1;
        if let Some(cp) = b.checkpoint {
            cps.push((rows, cp));
        }
    }
    assert_eq!(rows, 50_001);
    assert!(batches >= 13, "{batches}");
    // A checkpoint after the whole 50,000-row transaction, none inside it.
    assert!(
        cps.iter().all(|(r, _)| *r == 50_000 || *r == 50_001),
        "{cps:?}"
    );
}

#[tokio::test]
async fn rotation_is_followed_and_a_gtid_resume_continues_at_the_same_transaction() {
    let Some((url, mut conn)) = connect().await else {
        return;
    };
    let t = table("cdcs");
    exec(
        &mut conn,
        &format!("CREATE TABLE {t} (id INT PRIMARY KEY, v INT)"),
    )
    .await;
    let start = end(&mut conn).await;
    exec(
        &mut conn,
        &format!(
            "INSERT INTO {t} VALUES (1, 1);\n\
             FLUSH BINARY LOGS;\n\
             INSERT INTO {t} VALUES (2, 2)"
        ),
    )
    .await;
    let config = MySqlCdcConfig::new()
        .with_tables([t.clone()])
        .with_snapshot(SnapshotMode::Never)
        .with_start_at(start.clone())
        .until_current_end();
    let sink = ObjectSink::memory();
    let state = ObjectStateStore::new(sink.clone(), "_state");
    let run = |config: MySqlCdcConfig| {
        Pipeline::builder("rot")
            .extractor(MySqlCdcExtractor::connect_lazy(&url, config).unwrap())
            .sink(sink.clone())
            .state(state.clone())
            .build()
            .unwrap()
    };
    let r1 = run(config.clone()).run().await.into_result().unwrap();
    let mut got = lines(&sink, &t).await;
    got.sort();
    assert_eq!(got, ["insert|1|1", "insert|2|2"]);
    let (StartAt::Position { file: f0, .. }, Some(Checkpoint::Binlog { file: f1, .. })) =
        (&start, &r1.checkpoint_to)
    else {
        panic!()
    };
    assert_ne!(f0, f1, "the checkpoint moved to the new file");

    // Resume by GTID: the next transaction and nothing before it.
    exec(&mut conn, &format!("INSERT INTO {t} VALUES (3, 3)")).await;
    let r2 = run(config.resume_by_gtid())
        .run()
        .await
        .into_result()
        .unwrap();
    assert_eq!(r2.rows, 1);
    let mut got = lines(&sink, &t).await;
    got.sort();
    assert_eq!(got, ["insert|1|1", "insert|2|2", "insert|3|3"]);
}

#[tokio::test]
async fn an_idle_stream_still_moves_its_checkpoint_past_other_tables_work() {
    let Some((url, mut conn)) = connect().await else {
        return;
    };
    let (t, other) = (table("cdcs"), table("cdcs"));
    exec(
        &mut conn,
        &format!(
            "CREATE TABLE {t} (id INT PRIMARY KEY);\nCREATE TABLE {other} (id INT PRIMARY KEY)"
        ),
    )
    .await;
    let sink = ObjectSink::memory();
    let state = ObjectStateStore::new(sink.clone(), "_state");
    let p = Pipeline::builder("idle")
        .extractor(
            MySqlCdcExtractor::connect_lazy(
                &url,
                MySqlCdcConfig::new()
                    .with_tables([t.clone()])
                    .with_snapshot(SnapshotMode::Never)
                    .with_heartbeat(Duration::from_millis(200))
                    .with_position_every(Duration::from_millis(100)),
            )
            .unwrap(),
        )
        .sink(sink.clone())
        .state(state.clone())
        .options(PipelineOptions::new().with_commit_interval(Duration::from_millis(100)))
        .build()
        .unwrap();
    let token = p.cancellation_token();
    let run = tokio::spawn(async move { p.run().await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Work on another table only; then the server is idle.
    exec(&mut conn, &format!("INSERT INTO {other} VALUES (1), (2)")).await;
    let target = match end(&mut conn).await {
        StartAt::Position { file, pos } => (file, pos),
        _ => unreachable!(),
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut reached = false;
    while std::time::Instant::now() < deadline && !reached {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(Some(v)) = tributary::stores::StateStore::load(&state, "idle").await
            && let Some(Checkpoint::Binlog { file, pos, .. }) = &v.value.checkpoint
        {
            reached = (file.as_str(), *pos) >= (target.0.as_str(), target.1);
        }
    }
    token.cancel();
    let _ = run.await.unwrap();
    assert!(
        reached,
        "the saved position reached {target:?} without a row of {t}"
    );
    assert!(lines(&sink, &t).await.is_empty());
}

#[tokio::test]
async fn a_second_reader_with_the_same_server_id_is_refused_naming_it() {
    let Some((url, mut conn)) = connect().await else {
        return;
    };
    let t = table("cdcs");
    exec(&mut conn, &format!("CREATE TABLE {t} (id INT PRIMARY KEY)")).await;
    let id = 4_200_000 + std::process::id() % 1000;
    let config = MySqlCdcConfig::new()
        .with_tables([t.clone()])
        .with_snapshot(SnapshotMode::Never)
        .with_server_id(id)
        .with_heartbeat(Duration::from_millis(200));
    let first = MySqlCdcExtractor::connect_lazy(&url, config.clone()).unwrap();
    let mut s1 = first.extract(None).await.unwrap();
    // Poll the first so that it registers, then try a second with its id.
    let poll = tokio::spawn(async move {
        while let Some(b) = s1.next().await {
            if b.is_err() {
                break;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = MySqlCdcExtractor::connect_lazy(&url, config).unwrap();
    let Err(e) = second.extract(None).await else {
        panic!("a second reader with server id {id} was let in")
    };
    assert!(matches!(e, Error::Config { .. }), "{e:?}");
    assert!(e.to_string().contains(&id.to_string()), "{e}");
    poll.abort();
}

#[tokio::test]
async fn a_table_dropped_while_streaming_ends_its_changes_and_the_rest_go_on() {
    let Some((url, mut conn)) = connect().await else {
        return;
    };
    let (a, b) = (table("cdcs"), table("cdcs"));
    exec(
        &mut conn,
        &format!("CREATE TABLE {a} (id INT PRIMARY KEY, v INT);\nCREATE TABLE {b} (id INT PRIMARY KEY, v INT)"),
    )
    .await;
    let start = end(&mut conn).await;
    exec(
        &mut conn,
        &format!(
            "INSERT INTO {a} VALUES (1, 1);\n\
             DROP TABLE {a};\n\
             INSERT INTO {b} VALUES (1, 1);\n\
             CREATE TABLE {a} (id INT PRIMARY KEY, w VARCHAR(5), v INT);\n\
             INSERT INTO {a} VALUES (2, 'x', 2)"
        ),
    )
    .await;
    let sink = ObjectSink::memory();
    let r = Pipeline::builder("drop")
        .extractor(
            MySqlCdcExtractor::connect_lazy(
                &url,
                MySqlCdcConfig::new()
                    .with_tables([a.clone(), b.clone()])
                    .with_snapshot(SnapshotMode::Never)
                    .with_start_at(start)
                    .until_current_end(),
            )
            .unwrap(),
        )
        .sink(sink.clone())
        .state(ObjectStateStore::new(sink.clone(), "_state"))
        .build()
        .unwrap()
        .run()
        .await
        .into_result()
        .unwrap();
    assert_eq!(r.rows, 3);
    let mut got = lines(&sink, &a).await;
    got.sort();
    assert_eq!(got, ["insert|1|1", "insert|2|x|2"]);
    assert_eq!(lines(&sink, &b).await, ["insert|1|1"]);
}

#[tokio::test]
async fn an_interrupted_snapshot_saves_no_position_and_the_next_run_takes_it_whole() {
    let Some((url, mut conn)) = connect().await else {
        return;
    };
    let t = table("cdcs");
    exec(
        &mut conn,
        &format!("CREATE TABLE {t} (id INT PRIMARY KEY, v INT)"),
    )
    .await;
    exec(
        &mut conn,
        &format!("INSERT INTO {t} SELECT seq, seq FROM seq_1_to_5000"),
    )
    .await;
    let sink = ObjectSink::memory();
    let state = ObjectStateStore::new(sink.clone(), "_state");
    let config = MySqlCdcConfig::new()
        .with_tables([t.clone()])
        .with_batch_rows(100)
        .until_current_end();
    // Stopped once two parts of the snapshot are committed.
    let stop: std::sync::Arc<std::sync::OnceLock<tokio_util::sync::CancellationToken>> =
        Default::default();
    let on = stop.clone();
    let p = Pipeline::builder("snap")
        .extractor(MySqlCdcExtractor::connect_lazy(&url, config.clone()).unwrap())
        .sink(sink.clone())
        .state(state.clone())
        .options(
            PipelineOptions::new()
                .with_part_max_rows(200)
                .with_channel_capacity(1),
        )
        .on_progress(move |pr| {
            if pr.objects_committed >= 2
                && let Some(t) = on.get()
            {
                t.cancel();
            }
        })
        .build()
        .unwrap();
    stop.set(p.cancellation_token()).unwrap();
    let r1 = p.run().await;
    assert_eq!(r1.outcome, Outcome::Cancelled, "{:?}", r1.error);
    // Two parts were committed (that is what stopped the run), but no checkpoint covers
    // them: the cancelled run removed them, so no reader counts those rows twice.
    assert!(
        lines(&sink, &t).await.is_empty(),
        "objects past the checkpoint remain"
    );
    assert_eq!((r1.rows, r1.objects.len()), (0, 0));
    // No position saved: the partial snapshot is not taken for done.
    assert_eq!(r1.checkpoint_to, None);
    assert!(
        tributary::stores::StateStore::load(&state, "snap")
            .await
            .unwrap()
            .is_none()
    );
    let r2 = Pipeline::builder("snap")
        .extractor(MySqlCdcExtractor::connect_lazy(&url, config).unwrap())
        .sink(sink.clone())
        .state(state.clone())
        .build()
        .unwrap()
        .run()
        .await
        .into_result()
        .unwrap();
    assert_eq!(r2.checkpoint_from, None);
    assert_eq!(r2.rows, 5000, "the whole table again");
    assert_eq!(lines(&sink, &t).await.len(), 5000, "each row once");
    assert!(matches!(r2.checkpoint_to, Some(Checkpoint::Binlog { .. })));
}
