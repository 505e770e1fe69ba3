//! WAL CDC against the project's own PostgreSQL: the same values as the typed SQL path for
//! every type (snapshot and stream), ops and before-images, TOAST, positions only at
//! transaction ends, resume without loss or repeat, DDL mid-stream, the slot advanced only
//! by acknowledgements.

use crate::common;

use common::assert_same_values;
use common::wal::{cleanup, confirmed, connect, drain, exec, last_checkpoint, name, reader};

use arrow_array::{Array, RecordBatch, StringArray};
use tributary::model::ChangeOptions;
use tributary::sources::postgres::PostgresExtractor;
use tributary::sources::sql::SqlSource;
use tributary::*;

/// The rows of `table` in the batches, change columns dropped, as one batch; and the ops.
fn rows_of(batches: &[Batch], table: &str) -> (Vec<String>, RecordBatch) {
    let mine: Vec<&Batch> = batches
        .iter()
        .filter(|b| b.table.as_deref() == Some(table))
        .collect();
    assert!(!mine.is_empty(), "no batch for {table}");
    let schema = mine[0].records.schema();
    let all =
        arrow_select::concat::concat_batches(&schema, mine.iter().map(|b| &b.records)).unwrap();
    (ops(&all), data(&all))
}

fn ops(b: &RecordBatch) -> Vec<String> {
    b.column_by_name("_op")
        .unwrap()
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap()
        .iter()
        .map(|v| v.unwrap().to_string())
        .collect()
}

fn data(b: &RecordBatch) -> RecordBatch {
    let schema = b.schema();
    let keep: Vec<usize> = (0..schema.fields().len())
        .filter(|i| !schema.field(*i).name().starts_with('_'))
        .collect();
    b.project(&keep).unwrap()
}

async fn typed(url: &str, query: &str) -> RecordBatch {
    let e = PostgresExtractor::connect_lazy(url, SqlSource::query(query)).unwrap();
    common::extract_all(&e).await
}

const TYPES: &str = "id int PRIMARY KEY, s smallint, i int, b bigint, o oid, bo boolean, \
  r real, d double precision, n1 numeric(12,2), n2 numeric(60,10), nu numeric, \
  t text, vc varchar(20), ch char(4), j json, jb jsonb, by bytea, \
  da date, tm time, tz timetz, ts timestamp, tsz timestamptz, iv interval, u uuid, \
  ip inet, ia int[], ta text[], mood {mood}, dom {dom}";

const VALUES: &str = "({id}, -3, 7, 9000000000, 42, true, 1.5, 2.25, 1234.56, \
  12345678901234567890.0123456789, 3.14159265358979323846264338327950288, 'héllo', 'v', 'ab', \
  '{{\"a\": 1}}', '{{\"b\": [1, 2]}}', '\\xdeadbeef', '2020-06-01', '12:00:01.5', '12:00:00+05:30', \
  '2020-06-01 12:00:00.123456', '2020-06-01 12:00:00+02', '1 year 2 months 3 days 04:05:06.7', \
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '10.0.0.1/8', '{{1,NULL,3}}', '{{\"x\",\"y\"}}', 'happy', 5), \
  ({id2}, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)";

#[tokio::test]
async fn snapshot_and_stream_values_match_the_typed_path() {
    let Some((url, mut conn)) = connect().await else {
        return;
    };
    let t = name("pgcdc_types");
    let (mood, dom) = (format!("{t}_mood"), format!("{t}_dom"));
    exec(
        &mut conn,
        &format!(
            "CREATE TYPE {mood} AS ENUM ('sad', 'happy');\n\
             CREATE DOMAIN {dom} AS int CHECK (VALUE > 0);\n\
             CREATE TABLE {t} ({})",
            TYPES.replace("{mood}", &mood).replace("{dom}", &dom)
        ),
    )
    .await;
    let values = |a: i32| {
        VALUES
            .replace("{id}", &a.to_string())
            .replace("{id2}", &(a + 1).to_string())
            .replace("{{", "{")
            .replace("}}", "}")
    };
    exec(&mut conn, &format!("INSERT INTO {t} VALUES {}", values(1))).await;
    let e = reader(&url, &t, &[&t], |c| c);
    let first = drain(&e, None).await.unwrap();
    let qualified = format!("public.{t}");
    let (ops1, snap) = rows_of(&first, &qualified);
    assert_eq!(ops1, ["snapshot", "snapshot"]);
    let expect = typed(&url, &format!("SELECT * FROM {t} WHERE id < 3 ORDER BY id")).await;
    assert_same_values(&snap, &expect);
    let cp = last_checkpoint(&first).expect("a checkpoint after the snapshot");

    // The same values again, through the WAL.
    exec(&mut conn, &format!("INSERT INTO {t} VALUES {}", values(3))).await;
    let second = drain(&e, Some(cp.clone())).await.unwrap();
    let (ops2, streamed) = rows_of(&second, &qualified);
    assert_eq!(ops2, ["insert", "insert"]);
    let expect = typed(
        &url,
        &format!("SELECT * FROM {t} WHERE id >= 3 ORDER BY id"),
    )
    .await;
    assert_same_values(&streamed, &expect);
    // One schema for snapshot and stream rows of a table.
    assert_eq!(first[0].records.schema(), second[0].records.schema());
    cleanup(&mut conn, &t).await;
    exec(
        &mut conn,
        &format!("DROP TABLE {t};\nDROP TYPE {mood};\nDROP DOMAIN {dom}"),
    )
    .await;
}

#[tokio::test]
async fn ops_before_images_truncate_and_positions_at_commits_only() {
    let Some((url, mut conn)) = connect().await else {
        return;
    };
    let t = name("pgcdc_ops");
    exec(
        &mut conn,
        &format!(
            "CREATE TABLE {t} (id int PRIMARY KEY, status text);\n\
             ALTER TABLE {t} REPLICA IDENTITY FULL"
        ),
    )
    .await;
    let e = reader(&url, &t, &[&t], |c| {
        c.with_change_options(ChangeOptions::new().with_before_image().with_all_metadata())
            .with_batch_rows(3)
    });
    let first = drain(&e, None).await.unwrap();
    let cp = last_checkpoint(&first).unwrap();
    exec(
        &mut conn,
        &format!(
            "BEGIN;\nINSERT INTO {t} SELECT g, 'new' FROM generate_series(1, 7) g;\n\
             UPDATE {t} SET status = 'shipped' WHERE id = 2;\nDELETE FROM {t} WHERE id = 3;\nCOMMIT;\n\
             UPDATE {t} SET id = 70 WHERE id = 7;\nTRUNCATE {t}"
        ),
    )
    .await;
    let batches = drain(&e, Some(cp.clone())).await.unwrap();
    let q = format!("public.{t}");
    let (ops, rows) = rows_of(&batches, &q);
    assert_eq!(
        ops,
        [
            "insert", "insert", "insert", "insert", "insert", "insert", "insert", "update",
            "delete", "update", "truncate"
        ]
    );
    // 11 changes in batches of 3: a checkpoint only on the last batch of each transaction.
    let with_rows: Vec<&Batch> = batches.iter().filter(|b| b.num_rows() > 0).collect();
    assert!(with_rows.len() >= 4, "{}", with_rows.len());
    assert!(with_rows[0].checkpoint.is_none() && with_rows[1].checkpoint.is_none());
    let all = arrow_select::concat::concat_batches(
        &with_rows[0].records.schema(),
        with_rows.iter().map(|b| &b.records),
    )
    .unwrap();
    let col = |n: &str| {
        arrow_cast::display::ArrayFormatter::try_new(
            all.column_by_name(n).unwrap().as_ref(),
            &Default::default(),
        )
        .map(|f| {
            (0..all.num_rows())
                .map(|i| f.value(i).to_string())
                .collect::<Vec<_>>()
        })
        .unwrap()
    };
    assert_eq!(col("status")[7], "shipped");
    assert_eq!(col("_before_status")[7], "new");
    assert_eq!(col("_before_id")[9], "7");
    assert_eq!(col("id")[9], "70");
    assert_eq!(col("id")[8], "3", "a delete carries the old row");
    assert_eq!(col("status")[8], "new", "FULL identity: the whole old row");
    assert_eq!(col("_txid")[0], col("_txid")[8], "one transaction");
    assert_ne!(col("_txid")[0], col("_txid")[9]);
    assert_eq!(col("_seq")[..3], ["0", "1", "2"]);
    assert!(all.column_by_name("_commit_ts").unwrap().is_valid(0));
    assert!(col("_position")[0].contains('/'));
    assert_eq!(rows.num_rows(), 11);

    // Resume from the end: nothing again; the slot is where the pipeline acknowledged.
    let end = last_checkpoint(&batches).unwrap();
    let again = drain(&e, Some(end.clone())).await.unwrap();
    assert_eq!(again.iter().map(Batch::num_rows).sum::<usize>(), 0);
    cleanup(&mut conn, &t).await;
    exec(&mut conn, &format!("DROP TABLE {t}")).await;
}

#[tokio::test]
async fn default_identity_deletes_carry_the_key_and_unsent_toast_is_marked() {
    let Some((url, mut conn)) = connect().await else {
        return;
    };
    let t = name("pgcdc_toast");
    exec(
        &mut conn,
        &format!(
            "CREATE TABLE {t} (id int PRIMARY KEY, note text, big text);\n\
             ALTER TABLE {t} ALTER COLUMN big SET STORAGE EXTERNAL"
        ),
    )
    .await;
    let big: String = (0..5000)
        .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
        .collect();
    let e = reader(&url, &t, &[&t], |c| {
        c.with_change_options(ChangeOptions::new().with_unsent())
    });
    let cp = last_checkpoint(&drain(&e, None).await.unwrap()).unwrap();
    exec(
        &mut conn,
        &format!(
            "INSERT INTO {t} VALUES (1, 'a', '{big}');\nUPDATE {t} SET note = 'b' WHERE id = 1;\n\
             DELETE FROM {t} WHERE id = 1"
        ),
    )
    .await;
    let batches = drain(&e, Some(cp.clone())).await.unwrap();
    let q = format!("public.{t}");
    let (ops, rows) = rows_of(&batches, &q);
    assert_eq!(ops, ["insert", "update", "delete"]);
    let all = arrow_select::concat::concat_batches(
        &batches
            .iter()
            .find(|b| b.num_rows() > 0)
            .unwrap()
            .records
            .schema(),
        batches
            .iter()
            .filter(|b| b.num_rows() > 0)
            .map(|b| &b.records),
    )
    .unwrap();
    let unsent = arrow_cast::display::ArrayFormatter::try_new(
        all.column_by_name("_unsent").unwrap().as_ref(),
        &Default::default(),
    )
    .unwrap();
    assert_eq!(unsent.value(0).to_string(), "[]");
    assert_eq!(
        unsent.value(1).to_string(),
        "[big]",
        "the unchanged TOAST value is not sent"
    );
    let big_col = rows.column_by_name("big").unwrap();
    assert!(
        big_col.is_valid(0) && big_col.is_null(1),
        "not sent is not a value"
    );
    // DEFAULT identity: the delete has the key only.
    assert!(rows.column_by_name("id").unwrap().is_valid(2));
    assert!(rows.column_by_name("note").unwrap().is_null(2));

    // Without the _unsent column, an unsent value is an error naming it, never a NULL.
    let strict = reader(&url, &t, &[&t], |c| c);
    let err = drain(&strict, Some(cp)).await.unwrap_err();
    assert!(err.to_string().contains("big"), "{err}");
    assert!(err.to_string().contains("with_unsent"), "{err}");
    cleanup(&mut conn, &t).await;
    exec(&mut conn, &format!("DROP TABLE {t}")).await;
}

#[tokio::test]
async fn ddl_mid_stream_changes_the_schema_and_the_slot_follows_acknowledgements() {
    let Some((url, mut conn)) = connect().await else {
        return;
    };
    let t = name("pgcdc_ddl");
    exec(
        &mut conn,
        &format!("CREATE TABLE {t} (id int PRIMARY KEY, a text)"),
    )
    .await;
    let e = reader(&url, &t, &[&t], |c| {
        c.with_snapshot(tributary::sources::postgres_cdc::SnapshotMode::Never)
    });
    let start = drain(&e, None).await.unwrap();
    let cp = last_checkpoint(&start).unwrap();
    exec(
        &mut conn,
        &format!(
            "INSERT INTO {t} VALUES (1, 'x');\nALTER TABLE {t} ADD COLUMN b int;\n\
             INSERT INTO {t} VALUES (2, 'y', 5);\nALTER TABLE {t} DROP COLUMN a;\nINSERT INTO {t} VALUES (3, 6)"
        ),
    )
    .await;
    let Checkpoint::Lsn { lsn: from } = cp else {
        panic!("{cp:?}")
    };
    let batches = drain(&e, Some(cp.clone())).await.unwrap();
    let shapes: Vec<Vec<String>> = batches
        .iter()
        .filter(|b| b.num_rows() > 0)
        .map(|b| {
            data(&b.records)
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect()
        })
        .collect();
    assert_eq!(
        shapes,
        [vec!["id", "a"], vec!["id", "a", "b"], vec!["id", "b"]]
    );
    // Nothing acknowledged (no pipeline): the slot is at the checkpoint the run started
    // from (saved, as far as the reader knows), not at the end of what it read.
    let end = match last_checkpoint(&batches) {
        Some(Checkpoint::Lsn { lsn }) => lsn,
        other => panic!("{other:?}"),
    };
    assert!(end > from);
    assert_eq!(confirmed(&mut conn, &t).await.unwrap(), from);
    cleanup(&mut conn, &t).await;
    exec(&mut conn, &format!("DROP TABLE {t}")).await;
}

#[tokio::test]
async fn through_the_pipeline_the_slot_moves_only_to_saved_checkpoints() {
    use tributary::stores::{ObjectSink, ObjectStateStore, StateStore};
    let Some((url, mut conn)) = connect().await else {
        return;
    };
    let t = name("pgcdc_pipe");
    exec(
        &mut conn,
        &format!("CREATE TABLE {t} (id int PRIMARY KEY, v text);\nINSERT INTO {t} VALUES (1, 'a')"),
    )
    .await;
    let sink = ObjectSink::memory();
    let state = ObjectStateStore::new(sink.clone(), "_state");
    let run = || async {
        Pipeline::builder("wal")
            .extractor(reader(&url, &t, &[&t], |c| c))
            .sink(sink.clone())
            .state(state.clone())
            .build()
            .unwrap()
            .run()
            .await
            .into_result()
            .unwrap()
    };
    let r1 = run().await;
    assert_eq!(r1.rows, 1);
    exec(
        &mut conn,
        &format!("INSERT INTO {t} VALUES (2, 'b'), (3, 'c')"),
    )
    .await;
    let r2 = run().await;
    assert_eq!(r2.rows, 2);
    // The slot's lag after the acknowledgement is in the report.
    assert!(r2.source_lag_bytes.is_some(), "{:?}", r2.source_lag_bytes);
    let saved = state.load("wal").await.unwrap().unwrap().value.checkpoint;
    let Some(Checkpoint::Lsn { lsn }) = saved else {
        panic!("{saved:?}")
    };
    // The run acknowledged its saved checkpoint: the slot is exactly there, so it holds no
    // WAL before it and nothing after it was confirmed.
    let mut at = 0;
    for _ in 0..50 {
        at = confirmed(&mut conn, &t).await.unwrap();
        if at == lsn {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(at, lsn);
    let lag = reader(&url, &t, &[&t], |c| c)
        .slot_lag_bytes()
        .await
        .unwrap();
    assert!(lag.is_some_and(|l| l >= 0), "{lag:?}");
    let r3 = run().await;
    assert_eq!(r3.rows, 0);
    cleanup(&mut conn, &t).await;
    exec(&mut conn, &format!("DROP TABLE {t}")).await;
}
