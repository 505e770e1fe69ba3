//! `testing::extractor_suite` on the binlog and WAL readers: a stream of several
//! transactions over two tables with an `ALTER TABLE` in the middle, resumed from every
//! checkpoint it emitted, yields exactly the rest; its acknowledgements are accepted in
//! order; opened already asked to stop, it ends on a checkpoint.

use crate::common;

#[cfg(feature = "mysql-cdc")]
#[tokio::test(flavor = "multi_thread")]
async fn the_extractor_suite_passes_on_the_binlog_across_a_ddl() {
    use common::binlog::{connect, end, exec, table};
    use tributary::sources::mysql_cdc::{MySqlCdcConfig, MySqlCdcExtractor, SnapshotMode};
    let Some((url, mut conn)) = connect().await else {
        return;
    };
    let (a, b) = (table("suite_a"), table("suite_b"));
    exec(
        &mut conn,
        &format!(
            "CREATE TABLE {a} (id INT PRIMARY KEY, v VARCHAR(20));\n\
             CREATE TABLE {b} (id INT PRIMARY KEY, n INT)"
        ),
    )
    .await;
    let start = end(&mut conn).await;
    exec(
        &mut conn,
        &format!(
            "INSERT INTO {a} VALUES (1, 'x'), (2, 'y');\n\
             INSERT INTO {b} VALUES (1, 10);\n\
             UPDATE {a} SET v = 'z' WHERE id = 1;\n\
             ALTER TABLE {a} ADD COLUMN w INT;\n\
             INSERT INTO {a} VALUES (3, 'w', 7);\n\
             DELETE FROM {b} WHERE id = 1;\n\
             BEGIN;\n\
             INSERT INTO {a} VALUES (4, 'q', 1);\n\
             INSERT INTO {b} VALUES (2, 20);\n\
             COMMIT"
        ),
    )
    .await;
    let config = MySqlCdcConfig::new()
        .with_tables([a.as_str(), b.as_str()])
        .with_snapshot(SnapshotMode::Never)
        .with_start_at(start)
        .until_current_end();
    let e = MySqlCdcExtractor::connect_lazy(&url, config).unwrap();
    let r = tributary::testing::extractor_suite(&e, 32).await;
    // 2 + 1 inserts, 1 update, 1 insert after the DDL, 1 delete, 2 in the last transaction.
    assert_eq!(r.rows, 8);
    // One checkpoint per transaction at least (other tests' transactions add
    // position-only ones), every one of them resumed from.
    assert!(r.checkpoints >= 6, "{r:?}");
    assert_eq!(r.resumes, r.checkpoints.min(32));
}

#[cfg(feature = "postgres-cdc")]
#[tokio::test(flavor = "multi_thread")]
async fn the_extractor_suite_passes_on_the_wal_across_a_ddl() {
    use common::wal::{cleanup, connect, drain, exec, name, reader};
    use tributary::sources::postgres_cdc::SnapshotMode;
    let Some((url, mut conn)) = connect().await else {
        return;
    };
    let (slot, a, b) = (name("suite"), name("suite_a"), name("suite_b"));
    exec(
        &mut conn,
        &format!(
            "CREATE TABLE {a} (id int PRIMARY KEY, v text);\n\
             CREATE TABLE {b} (id int PRIMARY KEY, n int)"
        ),
    )
    .await;
    let e = reader(&url, &slot, &[&a, &b], |c| {
        c.with_snapshot(SnapshotMode::Never)
    });
    // Creates the slot and the publication here: the stream starts after this point.
    drain(&e, None).await.unwrap();
    exec(
        &mut conn,
        &format!(
            "INSERT INTO {a} VALUES (1, 'x'), (2, 'y');\n\
             INSERT INTO {b} VALUES (1, 10);\n\
             UPDATE {a} SET v = 'z' WHERE id = 1;\n\
             ALTER TABLE {a} ADD COLUMN w int;\n\
             INSERT INTO {a} VALUES (3, 'w', 7);\n\
             DELETE FROM {b} WHERE id = 1;\n\
             BEGIN;\n\
             INSERT INTO {a} VALUES (4, 'q', 1);\n\
             INSERT INTO {b} VALUES (2, 20);\n\
             COMMIT"
        ),
    )
    .await;
    let r = tributary::testing::extractor_suite(&e, 32).await;
    cleanup(&mut conn, &slot).await;
    assert_eq!(r.rows, 8);
    assert!(r.checkpoints >= 6, "{r:?}");
    assert_eq!(r.resumes, r.checkpoints.min(32));
}
