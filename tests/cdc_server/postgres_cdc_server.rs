//! WAL CDC bad input against the project's own PostgreSQL (port 5433, wal_level=logical):
//! each a typed error naming the cause, with no lost change and the checkpoint never
//! ahead of committed data.

use crate::common;

use common::wal::{cleanup, connect, drain, exec, last_checkpoint, name, reader};
use futures::StreamExt;
use std::time::Duration;
use tributary::sources::postgres_cdc::{PostgresCdcConfig, PostgresCdcExtractor, WhenPositionLost};
use tributary::*;

fn url_as(url: &str, user: &str, password: &str) -> String {
    let mut u = url::Url::parse(url).unwrap();
    u.set_username(user).unwrap();
    u.set_password(Some(password)).unwrap();
    u.to_string()
}

#[tokio::test]
async fn prerequisites_are_named_with_their_fix() {
    let Some((url, mut conn)) = connect().await else {
        return;
    };
    let t = name("pgcdc_pre");
    let role = name("pgcdc_role");
    exec(
        &mut conn,
        &format!(
            "CREATE TABLE {t} (a int, b text);\n\
             CREATE ROLE {role} LOGIN PASSWORD 'sentinel-pw-1'"
        ),
    )
    .await;
    // A table without a key under DEFAULT identity: updates and deletes cannot be keyed.
    let e = reader(&url, &t, &[&t], |c| c);
    let err = e.check().await.unwrap_err();
    assert!(matches!(err, Error::Prerequisite { .. }), "{err}");
    assert!(err.to_string().contains("no primary key"), "{err}");
    assert!(err.to_string().contains("REPLICA IDENTITY FULL"), "{err}");
    let err = drain(&e, None).await.unwrap_err();
    assert!(err.to_string().contains("no primary key"), "{err}");

    // No REPLICATION attribute, not the owner: both named; the password never shown.
    exec(
        &mut conn,
        &format!("ALTER TABLE {t} REPLICA IDENTITY FULL;\nGRANT SELECT ON {t} TO {role}"),
    )
    .await;
    let weak = reader(&url_as(&url, &role, "sentinel-pw-1"), &t, &[&t], |c| c);
    let err = weak.check().await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("REPLICATION"), "{text}");
    assert!(text.contains("does not own"), "{text}");
    assert!(!text.contains("sentinel-pw-1") && !format!("{err:?}").contains("sentinel-pw-1"));
    assert!(!format!("{weak:?}").contains("sentinel-pw-1"));

    // An existing publication without the table.
    let other = name("pgcdc_pub");
    exec(&mut conn, &format!("CREATE PUBLICATION {other}")).await;
    let e = reader(&url, &t, &[&t], |c| c.with_publication(other.clone()));
    let err = e.check().await.unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("ALTER PUBLICATION {other} ADD TABLE")),
        "{err}"
    );

    // Names PostgreSQL would refuse, and TLS this build cannot do.
    let bad = PostgresCdcExtractor::connect_lazy(&url, PostgresCdcConfig::new("Bad-Slot"));
    assert!(matches!(bad, Err(Error::Config { .. })));
    let tls = PostgresCdcExtractor::connect_lazy(
        &format!("{url}?sslmode=require"),
        PostgresCdcConfig::new("s"),
    );
    assert!(tls.unwrap_err().to_string().contains("sslmode=require"));
    exec(
        &mut conn,
        &format!("DROP PUBLICATION {other};\nDROP TABLE {t};\nDROP ROLE {role}"),
    )
    .await;
}

#[tokio::test]
async fn a_type_the_decoder_does_not_know_is_an_error_naming_column_and_type() {
    let Some((url, mut conn)) = connect().await else {
        return;
    };
    let t = name("pgcdc_range");
    exec(
        &mut conn,
        &format!("CREATE TABLE {t} (id int PRIMARY KEY, r int4range)"),
    )
    .await;
    let e = reader(&url, &t, &[&t], |c| {
        c.with_snapshot(sources::postgres_cdc::SnapshotMode::Never)
    });
    let cp = last_checkpoint(&drain(&e, None).await.unwrap()).unwrap();
    exec(&mut conn, &format!("INSERT INTO {t} VALUES (1, '[1,5)')")).await;
    let err = drain(&e, Some(cp.clone())).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Type { .. }), "{text}");
    assert!(
        text.contains("column r") && text.contains("int4range"),
        "{text}"
    );
    assert!(text.contains("ALTER TABLE"), "{text}");
    // The failed run saved nothing: after the fix the change arrives.
    exec(
        &mut conn,
        &format!("ALTER TABLE {t} ALTER COLUMN r TYPE text USING r::text"),
    )
    .await;
    let err = drain(&e, Some(cp.clone())).await.unwrap_err();
    assert!(
        err.to_string().contains("int4range"),
        "old rows keep their old type: {err}"
    );
    cleanup(&mut conn, &t).await;
    exec(&mut conn, &format!("DROP TABLE {t}")).await;
}

#[tokio::test]
async fn a_dropped_or_recreated_slot_is_a_lost_position_never_a_silent_skip() {
    let Some((url, mut conn)) = connect().await else {
        return;
    };
    let t = name("pgcdc_lost");
    exec(&mut conn, &format!("CREATE TABLE {t} (id int PRIMARY KEY)")).await;
    let e = reader(&url, &t, &[&t], |c| c);
    let cp = last_checkpoint(&drain(&e, None).await.unwrap()).unwrap();
    exec(&mut conn, &format!("INSERT INTO {t} VALUES (1)")).await;
    // Dropped: lost, naming the slot.
    assert!(e.drop_slot().await.unwrap());
    let err = drain(&e, Some(cp.clone())).await.unwrap_err();
    assert!(matches!(err, Error::PositionLost { .. }), "{err}");
    assert!(err.to_string().contains(&t), "{err}");
    // Recreated by someone else: the checkpoint is behind the new slot's position.
    sqlx::query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')")
        .bind(&t)
        .execute(&mut conn)
        .await
        .unwrap();
    let err = drain(&e, Some(cp.clone())).await.unwrap_err();
    assert!(matches!(err, Error::PositionLost { .. }), "{err}");
    assert!(err.to_string().contains("behind"), "{err}");
    // With resnapshot: a new snapshot has the row.
    let again = reader(&url, &t, &[&t], |c| {
        c.when_position_lost(WhenPositionLost::Resnapshot)
    });
    let batches = drain(&again, Some(cp)).await.unwrap();
    let snap: usize = batches.iter().map(Batch::num_rows).sum();
    assert_eq!(snap, 1);
    cleanup(&mut conn, &t).await;
    exec(&mut conn, &format!("DROP TABLE {t}")).await;
}

#[tokio::test]
async fn one_reader_per_slot_and_a_terminated_walsender_is_retryable() {
    let Some((url, mut conn)) = connect().await else {
        return;
    };
    let t = name("pgcdc_busy");
    exec(&mut conn, &format!("CREATE TABLE {t} (id int PRIMARY KEY)")).await;
    let first = PostgresCdcExtractor::connect_lazy(
        &url,
        PostgresCdcConfig::new(&t).with_tables([t.as_str()]),
    )
    .unwrap();
    let mut stream = first.extract(None).await.unwrap();
    // The snapshot's position arrives once the slot exists; then the stream holds it.
    let b = stream.next().await.unwrap().unwrap();
    assert!(b.checkpoint.is_some());
    let mut held = false;
    for _ in 0..50 {
        let active: Option<bool> =
            sqlx::query_scalar("SELECT active FROM pg_replication_slots WHERE slot_name = $1")
                .bind(&t)
                .fetch_optional(&mut conn)
                .await
                .unwrap();
        if active == Some(true) {
            held = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(held, "the first reader never started streaming");
    let second = reader(&url, &t, &[&t], |c| {
        c.with_slot_busy_wait(Duration::from_millis(300))
    });
    let err = drain(&second, b.checkpoint.clone()).await.unwrap_err();
    assert!(
        err.to_string().contains("in use by another reader"),
        "{err}"
    );
    // The walsender terminated: a retryable connection error ends the stream.
    sqlx::query(
        "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1",
    )
    .bind(&t)
    .execute(&mut conn)
    .await
    .unwrap();
    let err = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match stream.next().await {
                Some(Err(e)) => return e,
                Some(Ok(_)) => continue,
                None => panic!("the stream ended without an error"),
            }
        }
    })
    .await
    .expect("the stream noticed the terminated walsender");
    assert!(err.is_retryable(), "{err}");
    drop(stream);
    // A retry (the pipeline's) resumes from the checkpoint once the slot is released.
    exec(&mut conn, &format!("INSERT INTO {t} VALUES (7)")).await;
    let retry = reader(&url, &t, &[&t], |c| c);
    let batches = drain(&retry, b.checkpoint.clone()).await.unwrap();
    assert_eq!(batches.iter().map(Batch::num_rows).sum::<usize>(), 1);
    cleanup(&mut conn, &t).await;
    exec(&mut conn, &format!("DROP TABLE {t}")).await;
}
