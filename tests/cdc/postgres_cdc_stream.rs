//! WAL CDC over time against the project's own PostgreSQL: an interrupted snapshot
//! starts over cleanly, a temporary slot leaves nothing behind, heartbeats move the slot
//! over other tables' work while the selected tables are idle, a graceful stop commits
//! the transaction in progress.

use crate::common;

use common::wal::{cleanup, confirmed, connect, drain, exec, last_checkpoint, name, reader};
use futures::StreamExt;
use std::time::Duration;
use tributary::sources::postgres_cdc::{PostgresCdcConfig, PostgresCdcExtractor, SnapshotMode};
use tributary::stores::{ObjectSink, ObjectStateStore, StateStore};
use tributary::*;

#[tokio::test]
async fn an_interrupted_snapshot_starts_over_with_every_row() {
    let Some((url, mut conn)) = connect().await else {
        return;
    };
    let t = name("pgcdc_isnap");
    exec(
        &mut conn,
        &format!(
            "CREATE TABLE {t} (id int PRIMARY KEY, v text);\n\
             INSERT INTO {t} SELECT g, 'v' || g FROM generate_series(1, 5000) g"
        ),
    )
    .await;
    let e = reader(&url, &t, &[&t], |c| c.with_batch_rows(100));
    // The consumer goes away after the first batch: nothing was saved, the slot remains.
    let mut s = e.extract(None).await.unwrap();
    let first = s.next().await.unwrap().unwrap();
    assert_eq!(first.num_rows(), 100);
    assert!(
        first.checkpoint.is_none(),
        "no position inside the snapshot"
    );
    drop(s);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A rerun without a checkpoint recreates the slot and reads everything.
    exec(&mut conn, &format!("INSERT INTO {t} VALUES (5001, 'late')")).await;
    let batches = drain(&e, None).await.unwrap();
    let rows: usize = batches.iter().map(Batch::num_rows).sum();
    assert_eq!(rows, 5001);
    let cp = last_checkpoint(&batches).unwrap();
    // ...and streams from the new snapshot's point: the late row is not repeated.
    exec(
        &mut conn,
        &format!("INSERT INTO {t} VALUES (5002, 'after')"),
    )
    .await;
    let next = drain(&e, Some(cp)).await.unwrap();
    assert_eq!(next.iter().map(Batch::num_rows).sum::<usize>(), 1);
    cleanup(&mut conn, &t).await;
    exec(&mut conn, &format!("DROP TABLE {t}")).await;
}

#[tokio::test]
async fn a_temporary_slot_is_gone_after_the_run_and_cannot_be_resumed() {
    let Some((url, mut conn)) = connect().await else {
        return;
    };
    let t = name("pgcdc_temp");
    exec(
        &mut conn,
        &format!("CREATE TABLE {t} (id int PRIMARY KEY);\nINSERT INTO {t} VALUES (1), (2)"),
    )
    .await;
    let e = reader(&url, &t, &[&t], |c| c.with_temporary_slot(true));
    let batches = drain(&e, None).await.unwrap();
    assert_eq!(batches.iter().map(Batch::num_rows).sum::<usize>(), 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        confirmed(&mut conn, &t).await,
        None,
        "the temporary slot is gone"
    );
    let err = drain(&e, last_checkpoint(&batches)).await.unwrap_err();
    assert!(matches!(err, Error::PositionLost { .. }), "{err}");
    cleanup(&mut conn, &t).await;
    exec(&mut conn, &format!("DROP TABLE {t}")).await;
}

#[tokio::test]
async fn heartbeats_move_the_slot_while_the_selected_tables_are_idle() {
    let Some((url, mut conn)) = connect().await else {
        return;
    };
    let t = name("pgcdc_idle");
    let busy = name("pgcdc_busy_other");
    exec(
        &mut conn,
        &format!("CREATE TABLE {t} (id int PRIMARY KEY);\nCREATE TABLE {busy} (id int)"),
    )
    .await;
    let cdc = PostgresCdcExtractor::connect_lazy(
        &url,
        PostgresCdcConfig::new(&t)
            .with_tables([t.as_str()])
            .with_snapshot(SnapshotMode::Never)
            .with_heartbeat(Duration::from_millis(200))
            .with_status_interval(Duration::from_millis(100)),
    )
    .unwrap();
    let stop = tributary::CancellationToken::new();
    let sink = ObjectSink::memory();
    let p = Pipeline::builder("idle")
        .extractor(cdc)
        .stop(stop.clone())
        .sink(sink.clone())
        .state(ObjectStateStore::new(sink.clone(), "_state"))
        .options(PipelineOptions::new().with_commit_interval(Duration::from_millis(200)))
        .build()
        .unwrap();
    let run = tokio::spawn(async move { p.run().await });
    // Wait for the slot, then write only to a table the reader does not select.
    let mut start = None;
    for _ in 0..100 {
        start = confirmed(&mut conn, &t).await;
        if start.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let start = start.expect("the slot was created");
    for i in 0..20 {
        exec(&mut conn, &format!("INSERT INTO {busy} VALUES ({i})")).await;
    }
    let wal: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let (hi, lo) = wal.split_once('/').unwrap();
    let wal = (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap();
    let mut at = start;
    for _ in 0..100 {
        at = confirmed(&mut conn, &t).await.unwrap();
        if at >= wal {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        at >= wal,
        "the slot stayed at {at:X} behind the WAL at {wal:X} (started at {start:X})"
    );
    stop.cancel();
    let report = run.await.unwrap().into_result().unwrap();
    assert_eq!(report.rows, 0);
    cleanup(&mut conn, &t).await;
    exec(&mut conn, &format!("DROP TABLE {t};\nDROP TABLE {busy}")).await;
}

#[tokio::test]
async fn a_graceful_stop_commits_the_transaction_in_progress() {
    let Some((url, mut conn)) = connect().await else {
        return;
    };
    let t = name("pgcdc_stop");
    exec(&mut conn, &format!("CREATE TABLE {t} (id int PRIMARY KEY)")).await;
    let cdc = PostgresCdcExtractor::connect_lazy(
        &url,
        PostgresCdcConfig::new(&t)
            .with_tables([t.as_str()])
            .with_snapshot(SnapshotMode::Never)
            .with_batch_rows(1000),
    )
    .unwrap();
    let stop = tributary::CancellationToken::new();
    let sink = ObjectSink::memory();
    let state = ObjectStateStore::new(sink.clone(), "_state");
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen2 = seen.clone();
    let p = Pipeline::builder("stop")
        .extractor(cdc)
        .stop(stop.clone())
        .sink(sink.clone())
        .state(state.clone())
        .on_progress(move |p| {
            seen2.store(p.rows_extracted, std::sync::atomic::Ordering::Relaxed);
        })
        .options(PipelineOptions::new().with_commit_interval(Duration::from_secs(60)))
        .build()
        .unwrap();
    let run = tokio::spawn(async move { p.run().await });
    for _ in 0..100 {
        if confirmed(&mut conn, &t).await.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    exec(
        &mut conn,
        &format!("INSERT INTO {t} SELECT g FROM generate_series(1, 100000) g"),
    )
    .await;
    // Stop once the transaction's first batch is read (its first 1,000 of 100,000 rows):
    // the rest of it is still read, and committed whole.
    for _ in 0..200 {
        if seen.load(std::sync::atomic::Ordering::Relaxed) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let at_stop = seen.load(std::sync::atomic::Ordering::Relaxed);
    assert!(at_stop > 0 && at_stop < 100000, "{at_stop}");
    stop.cancel();
    let report = run.await.unwrap().into_result().unwrap();
    assert_eq!(report.rows, 100000);
    let saved = state_checkpoint(&state).await;
    assert_eq!(
        confirmed(&mut conn, &t).await,
        Some(saved),
        "acknowledged exactly the saved"
    );
    cleanup(&mut conn, &t).await;
    exec(&mut conn, &format!("DROP TABLE {t}")).await;
}

async fn state_checkpoint(state: &ObjectStateStore) -> u64 {
    match state.load("stop").await.unwrap().unwrap().value.checkpoint {
        Some(Checkpoint::Lsn { lsn }) => lsn,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_cancelled_pipeline_releases_the_slot_at_once() {
    let Some((url, mut conn)) = connect().await else {
        return;
    };
    let t = name("pgcdc_cancel");
    exec(&mut conn, &format!("CREATE TABLE {t} (id int PRIMARY KEY)")).await;
    let cdc = PostgresCdcExtractor::connect_lazy(
        &url,
        PostgresCdcConfig::new(&t)
            .with_tables([t.as_str()])
            .with_snapshot(SnapshotMode::Never),
    )
    .unwrap();
    let sink = ObjectSink::memory();
    let p = Pipeline::builder("cancel")
        .extractor(cdc.clone())
        .sink(sink.clone())
        .options(PipelineOptions::new().with_commit_interval(Duration::from_secs(1)))
        .build()
        .unwrap();
    let token = p.cancellation_token();
    let run = tokio::spawn(async move { p.run().await });
    let mut held = false;
    for _ in 0..100 {
        held = slot_active(&mut conn, &t).await;
        if held {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(held, "the reader never held the slot");
    token.cancel();
    let _ = run.await.unwrap();
    let mut released = false;
    for _ in 0..40 {
        released = !slot_active(&mut conn, &t).await;
        if released {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        released,
        "the slot is still held after the run was cancelled"
    );
    assert!(cdc.drop_slot().await.unwrap());
    cleanup(&mut conn, &t).await;
    exec(&mut conn, &format!("DROP TABLE {t}")).await;
}

async fn slot_active(conn: &mut sqlx::PgConnection, slot: &str) -> bool {
    sqlx::query_scalar::<_, bool>("SELECT active FROM pg_replication_slots WHERE slot_name = $1")
        .bind(slot)
        .fetch_optional(conn)
        .await
        .unwrap()
        .unwrap_or(false)
}

/// Batch checks on a three-table change stream: each sees only its table's rows and no
/// position-only batch (a check of one table's column used to fail on every other table's
/// batch, and on the first batch that carried only a position).
#[tokio::test]
async fn validators_on_a_three_table_change_stream_see_only_their_tables_rows() {
    use tributary::validate::{NotNull, Unique};
    let Some((url, mut conn)) = connect().await else {
        return;
    };
    let t = name("pgcdc_valid");
    let (a, b, c, other) = (
        format!("{t}_a"),
        format!("{t}_b"),
        format!("{t}_c"),
        format!("{t}_other"),
    );
    exec(
        &mut conn,
        &format!(
            "CREATE TABLE {a} (id int PRIMARY KEY, name text);\n\
             CREATE TABLE {b} (id int PRIMARY KEY, code text);\n\
             CREATE TABLE {c} (id int PRIMARY KEY, note text);\n\
             CREATE TABLE {other} (id int PRIMARY KEY);\n\
             INSERT INTO {a} VALUES (1, 'one'), (2, 'two');\n\
             INSERT INTO {b} VALUES (1, 'x'), (2, NULL);\n\
             INSERT INTO {c} VALUES (1, NULL), (2, 'n')"
        ),
    )
    .await;
    let sink = ObjectSink::memory();
    let state = ObjectStateStore::new(sink.clone(), "_state");
    let pipeline = |slot: &str, halt_on_c: bool| {
        let mut p = Pipeline::builder("valid")
            .extractor(reader(&url, slot, &[&a, &b, &c], |c| c))
            .sink(sink.clone())
            .state(state.clone())
            // `name` is a column of table a only, and ids repeat across the tables.
            .validator(NotNull::new(["name"]).with_tables([a.as_str()]))
            .validator(Unique::new(["id"]).with_tables([format!("public.{b}")]))
            .validator(NotNull::new(["id"]));
        if halt_on_c {
            p = p.validator(NotNull::new(["note"]).with_tables([c.as_str()]));
        }
        p.options(PipelineOptions::new().with_commit_interval(Duration::from_secs(60)))
            .build()
            .unwrap()
    };
    // The snapshot, then changes of all three tables and of one outside the stream (a
    // transaction that moves the position with no row of ours).
    let first = pipeline(&t, false).run().await.into_result().unwrap();
    assert_eq!(first.rows, 6);
    exec(
        &mut conn,
        &format!(
            "INSERT INTO {other} VALUES (1);\n\
             BEGIN;\n\
             INSERT INTO {a} VALUES (3, 'three');\n\
             INSERT INTO {b} VALUES (3, 'z');\n\
             INSERT INTO {c} VALUES (3, NULL);\n\
             COMMIT;\n\
             INSERT INTO {other} VALUES (2)"
        ),
    )
    .await;
    let second = pipeline(&t, false).run().await.into_result().unwrap();
    assert_eq!(second.rows, 3);
    let names: Vec<(&str, bool)> = second
        .validations
        .iter()
        .map(|v| (v.name.as_str(), v.passed))
        .collect();
    assert_eq!(
        names,
        [
            ("not_null(id)", true),
            ("not_null(name)", true),
            ("unique(id)", true)
        ]
    );
    // A halting check scoped to table c stops a run that reads c's NULL notes, and says
    // whose rows failed.
    let slot2 = format!("{t}_2");
    state.delete("valid").await.unwrap();
    let err = pipeline(&slot2, true)
        .run()
        .await
        .into_result()
        .unwrap_err();
    match &err {
        Error::Validation { name, message } => {
            assert_eq!(name, "not_null(note)");
            assert_eq!(
                message,
                &format!("table public.{c}: column note has 2 NULL value(s)")
            );
        }
        other => panic!("{other}"),
    }
    cleanup(&mut conn, &t).await;
    cleanup(&mut conn, &slot2).await;
    exec(&mut conn, &format!("DROP TABLE {a}, {b}, {c}, {other}")).await;
}
