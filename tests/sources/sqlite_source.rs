//! The SQLite extractor and the shared SQL core: full and incremental extraction of the
//! book's Orders table, with no row lost or duplicated at the watermark boundary.

use crate::common;

use sqlx::SqlitePool;
use std::time::Duration;
use tributary::sources::sql::{Cursor, SqlSource};
use tributary::sources::sqlite::SqliteExtractor;
use tributary::stores::{ObjectSink, ObjectStateStore, StateStore};
use tributary::*;

async fn orders() -> SqlitePool {
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect("sqlite::memory:")
        .await
        .unwrap();
    sqlx::query(
        "CREATE TABLE Orders (OrderId INTEGER, OrderStatus VARCHAR(30), LastUpdated TIMESTAMP)",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool
}

async fn insert(pool: &SqlitePool, rows: &[(i64, &str, &str)]) {
    for (id, s, t) in rows {
        sqlx::query("INSERT INTO Orders VALUES (?1, ?2, ?3)")
            .bind(id)
            .bind(s)
            .bind(t)
            .execute(pool)
            .await
            .unwrap();
    }
}

async fn lines(sink: &ObjectSink, r: &RunReport) -> Vec<String> {
    let mut out = vec![];
    for o in &r.objects {
        out.extend(
            String::from_utf8_lossy(&sink.read(&o.key).await.unwrap())
                .lines()
                .map(str::to_string),
        );
    }
    out
}

fn incremental(
    pool: &SqlitePool,
    sink: &ObjectSink,
    cursor: Cursor,
    opts: PipelineOptions,
) -> Pipeline {
    Pipeline::builder("orders")
        .extractor(SqliteExtractor::new(
            pool.clone(),
            SqlSource::table("Orders")
                .incremental(cursor)
                .with_batch_rows(2),
        ))
        .sink(sink.clone())
        .state(ObjectStateStore::new(sink.clone(), "_state"))
        .options(opts)
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_books_orders_scenario_loses_and_duplicates_nothing() {
    let pool = orders().await;
    let sink = ObjectSink::memory();
    insert(
        &pool,
        &[
            (1, "Backordered", "2020-06-01 12:00:00"),
            (1, "Shipped", "2020-06-09 12:00:25"),
            (2, "Shipped", "2020-07-11 03:05:00"),
            (3, "Shipped", "2020-07-12 12:00:00"),
            (4, "Pending", "2020-07-12 12:00:00"),
        ],
    )
    .await;
    let p = incremental(
        &pool,
        &sink,
        Cursor::new("LastUpdated"),
        PipelineOptions::new(),
    );
    let first = p.run().await.into_result().unwrap();
    assert_eq!(first.rows, 5);
    // Rows that share the last value, commit late with it, or repeat an OrderId.
    insert(
        &pool,
        &[
            (0, "Late", "2020-07-12 12:00:00"),
            (1, "Returned", "2020-07-12 12:00:00"),
            (3, "Shipped", "2020-07-13 08:00:00"),
        ],
    )
    .await;
    let second = p.run().await.into_result().unwrap();
    let mut got = lines(&sink, &second).await;
    got.sort();
    assert_eq!(
        got,
        vec![
            "0|Late|2020-07-12 12:00:00",
            "1|Returned|2020-07-12 12:00:00",
            "3|Shipped|2020-07-13 08:00:00",
        ]
    );
    // A row equal to the new boundary value, after it was passed.
    insert(&pool, &[(9, "Late again", "2020-07-13 08:00:00")]).await;
    let third = p.run().await.into_result().unwrap();
    assert_eq!(
        lines(&sink, &third).await,
        vec!["9|Late again|2020-07-13 08:00:00"]
    );
    assert_eq!(p.run().await.into_result().unwrap().rows, 0);
}

#[tokio::test]
async fn with_a_key_rows_are_recognised_by_key_and_ordered_by_it() {
    let pool = orders().await;
    let sink = ObjectSink::memory();
    insert(
        &pool,
        &[
            (2, "A", "2020-01-01 00:00:00"),
            (1, "B", "2020-01-01 00:00:00"),
        ],
    )
    .await;
    let p = incremental(
        &pool,
        &sink,
        Cursor::new("LastUpdated").with_key(["OrderId"]),
        PipelineOptions::new(),
    );
    let r = p.run().await.into_result().unwrap();
    assert_eq!(
        lines(&sink, &r).await,
        vec!["1|B|2020-01-01 00:00:00", "2|A|2020-01-01 00:00:00"]
    );
    let Some(Checkpoint::Watermark(w)) = &r.checkpoint_to else {
        panic!()
    };
    assert_eq!(w.cursor, CursorValue::Text("2020-01-01 00:00:00".into()));
    assert_eq!(w.seen.len(), 2);
    insert(&pool, &[(0, "C", "2020-01-01 00:00:00")]).await;
    let r = p.run().await.into_result().unwrap();
    assert_eq!(lines(&sink, &r).await, vec!["0|C|2020-01-01 00:00:00"]);
}

#[tokio::test]
async fn parts_rotate_mid_table_with_checkpoints_and_no_duplicates() {
    let pool = orders().await;
    let sink = ObjectSink::memory();
    let rows: Vec<(i64, String, String)> = (0..20)
        .map(|i| (i, format!("s{i}"), format!("2020-01-01 00:00:{:02}", i / 3)))
        .collect();
    for (i, s, t) in &rows {
        insert(&pool, &[(*i, s.as_str(), t.as_str())]).await;
    }
    // Parts of 4 rows commit (and checkpoint) as the run goes, with many rows sharing
    // each cursor value across part boundaries.
    let opts = PipelineOptions::new()
        .with_part_max_rows(4)
        .with_run_id("r");
    let p = incremental(&pool, &sink, Cursor::new("LastUpdated"), opts.clone());
    let r = p.run().await.into_result().unwrap();
    assert_eq!(r.objects.len(), 5);
    assert_eq!(
        r.checkpoint_to
            .map(|c| serde_json::to_value(c).unwrap()["cursor"]["text"].clone()),
        Some(serde_json::json!("2020-01-01 00:00:06"))
    );
    let mut all = vec![];
    for k in sink
        .list("sqlite")
        .await
        .unwrap()
        .into_iter()
        .filter(|k| k.ends_with(".csv"))
    {
        all.extend(
            String::from_utf8_lossy(&sink.read(&k).await.unwrap())
                .lines()
                .map(str::to_string),
        );
    }
    assert_eq!(all.len(), 20);
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 20);
}

#[tokio::test]
async fn resuming_from_a_mid_boundary_checkpoint_skips_only_seen_rows() {
    // Simulate a crash after a part whose last rows share a value with the next part.
    let pool = orders().await;
    insert(
        &pool,
        &[
            (1, "a", "2020-01-01 00:00:01"),
            (2, "b", "2020-01-01 00:00:02"),
            (3, "c", "2020-01-01 00:00:02"),
            (4, "d", "2020-01-01 00:00:02"),
            (5, "e", "2020-01-01 00:00:03"),
        ],
    )
    .await;
    let source = SqlSource::table("Orders")
        .incremental(Cursor::new("LastUpdated").with_key(["OrderId"]))
        .with_batch_rows(2);
    let ex = SqliteExtractor::new(pool.clone(), source);
    let batches = model::collect(ex.extract(None).await.unwrap())
        .await
        .unwrap();
    // Batches of two rows: [1, 2] ends inside the run of rows at :02, [3, 4] ends it.
    let cp1 = batches[0].checkpoint.clone().unwrap();
    let Checkpoint::Watermark(w1) = &cp1 else {
        panic!()
    };
    assert_eq!(w1.cursor, CursorValue::Text("2020-01-01 00:00:02".into()));
    assert_eq!(
        w1.seen.len(),
        1,
        "only row 2 seen at :02 after the first batch"
    );
    let cp2 = batches[1].checkpoint.clone().unwrap();
    let Checkpoint::Watermark(w2) = &cp2 else {
        panic!()
    };
    assert_eq!(w2.seen.len(), 3, "rows 2, 3 and 4 seen at :02");
    let ids = |batches: Vec<Batch>| common::first_column_i64(&batches);
    // Resuming after the first batch re-reads :02 but skips only row 2.
    assert_eq!(
        ids(model::collect(ex.extract(Some(cp1)).await.unwrap())
            .await
            .unwrap()),
        vec![3, 4, 5]
    );
    assert_eq!(
        ids(model::collect(ex.extract(Some(cp2)).await.unwrap())
            .await
            .unwrap()),
        vec![5]
    );
}

#[tokio::test]
async fn lag_leaves_the_newest_rows_for_the_next_run() {
    let pool = orders().await;
    let sink = ObjectSink::memory();
    let now = chrono::Utc::now();
    let old = (now - chrono::Duration::hours(2))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    let recent = (now - chrono::Duration::seconds(5))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    insert(&pool, &[(1, "old", &old), (2, "recent", &recent)]).await;
    let p = incremental(
        &pool,
        &sink,
        Cursor::new("LastUpdated").with_lag(Duration::from_secs(3600)),
        PipelineOptions::new(),
    );
    let r = p.run().await.into_result().unwrap();
    assert_eq!(lines(&sink, &r).await, vec![format!("1|old|{old}")]);
    let p = incremental(
        &pool,
        &sink,
        Cursor::new("LastUpdated"),
        PipelineOptions::new(),
    );
    let r = p.run().await.into_result().unwrap();
    assert_eq!(lines(&sink, &r).await, vec![format!("2|recent|{recent}")]);
}

#[tokio::test]
async fn full_extract_columns_and_custom_queries() {
    let pool = orders().await;
    let sink = ObjectSink::memory();
    insert(
        &pool,
        &[
            (1, "x|y", "2020-01-01 00:00:00"),
            (2, "", "2020-01-02 00:00:00"),
        ],
    )
    .await;
    sqlx::query("INSERT INTO Orders VALUES (3, NULL, '2020-01-03 00:00:00')")
        .execute(&pool)
        .await
        .unwrap();
    let run = |source: SqlSource| {
        let sink = sink.clone();
        let pool = pool.clone();
        async move {
            let p = Pipeline::builder("full")
                .extractor(SqliteExtractor::new(pool, source))
                .sink(sink.clone())
                .build()
                .unwrap();
            let r = p.run().await.into_result().unwrap();
            lines(&sink, &r).await
        }
    };
    assert_eq!(
        run(SqlSource::table("Orders").columns(["OrderStatus", "OrderId"])).await,
        vec!["\"x|y\"|1", "\"\"|2", "|3"]
    );
    assert_eq!(
        run(SqlSource::query(
            "SELECT OrderId * 10 AS id, upper(OrderStatus) AS s FROM Orders WHERE OrderId > 1"
        ))
        .await,
        vec!["20|\"\"", "30|"]
    );
}

#[tokio::test]
async fn bad_sources_fail_before_the_stream_with_typed_errors() {
    let pool = orders().await;
    let ex = SqliteExtractor::new(pool.clone(), SqlSource::table("Missing"));
    let err = ex.extract(None).await.err().unwrap();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("Missing"), "{err}");
    let ex = SqliteExtractor::new(pool.clone(), SqlSource::table("Orders").columns(["Nope"]));
    assert!(matches!(ex.check().await, Err(Error::NotFound { .. })));
    // A value that does not fit its declared type names the column.
    sqlx::query("INSERT INTO Orders VALUES ('abc', 'x', '2020-01-01')")
        .execute(&pool)
        .await
        .unwrap();
    let ex = SqliteExtractor::new(pool.clone(), SqlSource::table("Orders"));
    let err = model::collect(ex.extract(None).await.unwrap())
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, Error::Type { .. }) && err.to_string().contains("OrderId"),
        "{err}"
    );
    // A checkpoint of another kind is refused, not misread.
    let ex = SqliteExtractor::new(
        pool,
        SqlSource::table("Orders").incremental(Cursor::new("LastUpdated")),
    );
    assert!(matches!(
        ex.extract(Some(Checkpoint::Lsn { lsn: 1 })).await,
        Err(Error::Config { .. })
    ));
}

#[tokio::test]
async fn identical_key_less_rows_at_the_boundary_are_each_landed() {
    // Issue 8.1(a): `(1,'click',T)`, run, then `(1,'click',T),(2,'click',T)`, run: three
    // source rows must be three landed rows, though two of them are identical.
    let pool = orders().await;
    let sink = ObjectSink::memory();
    let t = "2020-07-12 12:00:00";
    insert(&pool, &[(1, "click", t)]).await;
    let p = incremental(
        &pool,
        &sink,
        Cursor::new("LastUpdated"),
        PipelineOptions::new(),
    );
    assert_eq!(p.run().await.into_result().unwrap().rows, 1);
    insert(&pool, &[(1, "click", t), (2, "click", t)]).await;
    let second = p.run().await.into_result().unwrap();
    let mut got = lines(&sink, &second).await;
    got.sort();
    assert_eq!(got, vec![format!("1|click|{t}"), format!("2|click|{t}")]);
    assert_eq!(p.run().await.into_result().unwrap().rows, 0);
}

#[tokio::test]
async fn resuming_inside_a_group_of_identical_rows_skips_only_those_landed() {
    // Issue 8.1(b): a checkpoint saved after two of five identical rows resumes with three.
    let pool = orders().await;
    let t = "2020-01-01 00:00:02";
    insert(&pool, &[(7, "same", t); 5]).await;
    insert(&pool, &[(8, "after", "2020-01-01 00:00:03")]).await;
    let ex = SqliteExtractor::new(
        pool.clone(),
        SqlSource::table("Orders")
            .incremental(Cursor::new("LastUpdated"))
            .with_batch_rows(2),
    );
    let batches = model::collect(ex.extract(None).await.unwrap())
        .await
        .unwrap();
    let cp1 = batches[0].checkpoint.clone().unwrap();
    let Checkpoint::Watermark(w1) = &cp1 else {
        panic!()
    };
    assert_eq!(w1.seen.len(), 2, "two identical rows seen, both counted");
    let rest = model::collect(ex.extract(Some(cp1)).await.unwrap())
        .await
        .unwrap();
    let n: usize = rest.iter().map(|b| b.num_rows()).sum();
    assert_eq!(n, 4, "three identical rows left plus the later one");
}

async fn many_at_one_value(pool: &SqlitePool, ids: std::ops::Range<i64>, t: &str) {
    let mut tx = pool.begin().await.unwrap();
    for id in ids {
        sqlx::query("INSERT INTO Orders VALUES (?1, 'bulk', ?2)")
            .bind(id)
            .bind(t)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn a_keyed_watermark_stays_small_however_many_rows_share_a_value() {
    // Issue 8.10: every row at the last value was listed in the checkpoint.
    let pool = orders().await;
    let sink = ObjectSink::memory();
    let t = "2020-07-12 12:00:00";
    many_at_one_value(&pool, 0..5000, t).await;
    let p = incremental(
        &pool,
        &sink,
        Cursor::new("LastUpdated").with_key(["OrderId"]),
        PipelineOptions::new().with_part_max_rows(1000),
    );
    let first = p.run().await.into_result().unwrap();
    assert_eq!(first.rows, 5000);
    let Some(Checkpoint::Watermark(w)) = &first.checkpoint_to else {
        panic!("{:?}", first.checkpoint_to)
    };
    assert!(w.seen.is_empty(), "a keyset position, not a list");
    assert_eq!(w.after, Some(vec![CursorValue::Int(4999)]));
    let saved = ObjectStateStore::new(sink.clone(), "_state")
        .load("orders")
        .await
        .unwrap()
        .unwrap();
    // The position stays small; the table's schema saved beside it is one per table.
    let size = serde_json::to_string(&saved.value.checkpoint)
        .unwrap()
        .len();
    assert!(size < 500, "checkpoint of {size} bytes");
    assert_eq!(saved.value.schemas.len(), 1);
    // New rows at the same value and later ones; nothing twice.
    many_at_one_value(&pool, 5000..5002, t).await;
    insert(&pool, &[(1, "later", "2020-07-13 00:00:00")]).await;
    let second = p.run().await.into_result().unwrap();
    let mut got = lines(&sink, &second).await;
    got.sort();
    assert_eq!(
        got,
        vec![
            "1|later|2020-07-13 00:00:00".to_string(),
            format!("5000|bulk|{t}"),
            format!("5001|bulk|{t}"),
        ]
    );
    assert_eq!(p.run().await.into_result().unwrap().rows, 0);
}

#[tokio::test]
async fn resuming_from_a_keyset_position_reads_only_the_rows_after_it() {
    let pool = orders().await;
    let t = "2020-07-12 12:00:00";
    many_at_one_value(&pool, 0..3000, t).await;
    let ex = SqliteExtractor::new(
        pool.clone(),
        SqlSource::table("Orders")
            .incremental(Cursor::new("LastUpdated").with_key(["OrderId"]))
            .with_batch_rows(700),
    );
    let batches = model::collect(ex.extract(None).await.unwrap())
        .await
        .unwrap();
    // Batch 2 (rows 0..1400) is the first past the limit of 1000 listed rows.
    let Some(Checkpoint::Watermark(w)) = &batches[1].checkpoint else {
        panic!()
    };
    assert_eq!(w.after, Some(vec![CursorValue::Int(1399)]));
    let rest = model::collect(ex.extract(batches[1].checkpoint.clone()).await.unwrap())
        .await
        .unwrap();
    let ids = common::first_column_i64(&rest);
    assert_eq!(ids, (1400..3000).collect::<Vec<_>>());
}

#[tokio::test]
async fn too_many_identical_key_less_rows_at_one_value_is_an_error_naming_the_fix() {
    let pool = orders().await;
    many_at_one_value(
        &pool,
        0..(tributary::testing::KEYLESS_SEEN_LIMIT as i64 + 1),
        "2020-07-12 12:00:00",
    )
    .await;
    let sink = ObjectSink::memory();
    // Default-sized batches (the helper's two-row batches would copy the growing list
    // 50,000 times).
    let r = Pipeline::builder("orders")
        .extractor(SqliteExtractor::new(
            pool.clone(),
            SqlSource::table("Orders").incremental(Cursor::new("LastUpdated")),
        ))
        .sink(sink.clone())
        .state(ObjectStateStore::new(sink.clone(), "_state"))
        .build()
        .unwrap()
        .run()
        .await;
    let e = r.error.unwrap();
    assert!(matches!(e, Error::Config { .. }), "{e:?}");
    assert!(e.to_string().contains("Cursor::with_key"), "{e}");
    assert!(
        ObjectStateStore::new(sink.clone(), "_state")
            .load("orders")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_column_added_between_two_incremental_runs_is_a_warning_and_a_new_schema() {
    let pool = orders().await;
    insert(&pool, &[(1, "Backordered", "2020-06-01 12:00:00")]).await;
    let sink = ObjectSink::memory();
    let p = incremental(
        &pool,
        &sink,
        Cursor::new("LastUpdated"),
        PipelineOptions::new(),
    );
    let first = p.run().await.into_result().unwrap();
    assert!(first.warnings.is_empty());
    sqlx::query("ALTER TABLE Orders ADD COLUMN Note TEXT")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO Orders VALUES (2, 'Shipped', '2020-06-02 12:00:00', 'late')")
        .execute(&pool)
        .await
        .unwrap();
    let second = p.run().await.into_result().unwrap();
    assert_eq!(
        second.warnings,
        [
            "table Orders: schema changed: column Note (Utf8) was added; objects from here on have the new schema"
        ]
    );
    let names: Vec<&str> = second.objects[0]
        .schema
        .as_ref()
        .unwrap()
        .fields
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(names, ["OrderId", "OrderStatus", "LastUpdated", "Note"]);
    // The third run compares with the schema saved by the second: no warning.
    sqlx::query("INSERT INTO Orders VALUES (3, 'Shipped', '2020-06-03 12:00:00', NULL)")
        .execute(&pool)
        .await
        .unwrap();
    assert!(p.run().await.into_result().unwrap().warnings.is_empty());
}

#[tokio::test]
async fn a_dry_run_says_where_a_run_would_start_and_what_it_would_read() {
    let pool = orders().await;
    insert(
        &pool,
        &[
            (1, "Backordered", "2020-06-01 12:00:00"),
            (1, "Shipped", "2020-06-09 12:00:25"),
        ],
    )
    .await;
    let sink = ObjectSink::memory();
    let p = incremental(
        &pool,
        &sink,
        Cursor::new("LastUpdated"),
        PipelineOptions::new(),
    );
    let d = p.dry_run().await.unwrap();
    assert_eq!(d.from, None);
    let plan = d.plan.unwrap();
    assert!(plan.query.contains("FROM `Orders`"), "{}", plan.query);
    assert_eq!(plan.estimated_rows, Some(2));
    assert!(
        sink.list("").await.unwrap().is_empty(),
        "a dry run wrote something"
    );
    assert_eq!(p.run().await.into_result().unwrap().rows, 2);
    insert(&pool, &[(2, "Shipped", "2020-07-11 03:05:00")]).await;
    let d = p.dry_run().await.unwrap();
    assert!(matches!(d.from, Some(Checkpoint::Watermark(_))));
    let plan = d.plan.unwrap();
    // From the watermark on (`>=`: the row at the last value is read again and skipped).
    assert_eq!(plan.binds, ["2020-06-09 12:00:25"]);
    assert_eq!(plan.estimated_rows, Some(2));
}

/// The book's Orders table with `OrderId` as its primary key.
async fn orders_with_primary_key() -> SqlitePool {
    let pool = orders().await;
    sqlx::query("DROP TABLE Orders")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "CREATE TABLE Orders (OrderId INTEGER PRIMARY KEY, OrderStatus VARCHAR(30), LastUpdated TIMESTAMP)",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool
}

#[tokio::test]
async fn a_cursor_without_a_key_uses_the_tables_primary_key_and_stays_small() {
    // Issue 8.10 without `with_key`: more rows at one value than a key-less checkpoint may
    // list. The table's primary key makes it a keyset position, as if it had been given.
    let pool = orders_with_primary_key().await;
    let sink = ObjectSink::memory();
    let t = "2020-07-12 12:00:00";
    let n = tributary::testing::KEYLESS_SEEN_LIMIT as i64 + 1;
    many_at_one_value(&pool, 0..n, t).await;
    let p = common::pipeline(
        "orders",
        SqliteExtractor::new(
            pool.clone(),
            SqlSource::table("Orders").incremental(Cursor::new("LastUpdated")),
        ),
        &sink,
    );
    let first = p.run().await.into_result().unwrap();
    assert_eq!(first.rows, n as u64);
    let Some(Checkpoint::Watermark(w)) = &first.checkpoint_to else {
        panic!("{:?}", first.checkpoint_to)
    };
    assert!(w.seen.is_empty(), "a keyset position, not a list");
    assert_eq!(w.after, Some(vec![CursorValue::Int(n - 1)]));
    assert_eq!(w.key, Some(vec!["OrderId".to_string()]));
    let saved = ObjectStateStore::new(sink.clone(), "_state")
        .load("orders")
        .await
        .unwrap()
        .unwrap();
    let size = serde_json::to_string(&saved.value.checkpoint)
        .unwrap()
        .len();
    assert!(size < 500, "checkpoint of {size} bytes");
    // A late row at the same value, and a later one: each landed once.
    many_at_one_value(&pool, n..n + 1, t).await;
    insert(&pool, &[(n + 1, "later", "2020-07-13 00:00:00")]).await;
    let second = p.run().await.into_result().unwrap();
    let mut got = lines(&sink, &second).await;
    got.sort();
    assert_eq!(
        got,
        vec![
            format!("{n}|bulk|{t}"),
            format!("{}|later|2020-07-13 00:00:00", n + 1)
        ]
    );
    assert_eq!(p.run().await.into_result().unwrap().rows, 0);
}

#[tokio::test]
async fn a_checkpoint_saved_before_keys_were_read_from_the_catalog_still_resumes_exactly() {
    // A key-less cursor used to fingerprint every column. Such a checkpoint, saved inside
    // a group of rows at one value, is read that way; rows at later values use the key.
    let pool = orders_with_primary_key().await;
    let t = "2020-01-01 00:00:02";
    let group: Vec<_> = (1..=5).map(|id| (id, "same", t)).collect();
    insert(&pool, &group).await;
    insert(&pool, &[(6, "after", "2020-01-01 00:00:03")]).await;
    // A query source has no primary key: its checkpoint lists all-column fingerprints,
    // as every key-less checkpoint did.
    let old = SqliteExtractor::new(
        pool.clone(),
        SqlSource::query("SELECT * FROM Orders")
            .incremental(Cursor::new("LastUpdated"))
            .with_batch_rows(2),
    );
    let batches = model::collect(old.extract(None).await.unwrap())
        .await
        .unwrap();
    let Some(Checkpoint::Watermark(mut w)) = batches[0].checkpoint.clone() else {
        panic!()
    };
    assert_eq!(w.seen.len(), 2);
    assert_eq!(w.key, Some(vec![]), "all columns, said so");
    w.key = None; // as saved before the key was recorded
    let ex = SqliteExtractor::new(
        pool.clone(),
        SqlSource::table("Orders")
            .incremental(Cursor::new("LastUpdated"))
            .with_batch_rows(2),
    );
    let rest = model::collect(ex.extract(Some(Checkpoint::Watermark(w))).await.unwrap())
        .await
        .unwrap();
    let ids = common::first_column_i64(&rest);
    assert_eq!(
        ids,
        vec![3, 4, 5, 6],
        "the three not landed at the value, then the later row"
    );
    let Some(Checkpoint::Watermark(end)) = rest.last().unwrap().checkpoint.clone() else {
        panic!()
    };
    assert_eq!(end.cursor, CursorValue::Text("2020-01-01 00:00:03".into()));
    assert_eq!(
        end.key,
        Some(vec!["OrderId".to_string()]),
        "a new value uses the key"
    );
    // Resuming in the middle of the old group again: still exact, still all columns.
    let mid = rest
        .iter()
        .find_map(|b| match &b.checkpoint {
            Some(Checkpoint::Watermark(w)) if w.seen.len() == 4 => Some(w.clone()),
            _ => None,
        })
        .expect("a checkpoint after rows 3 and 4");
    assert_eq!(mid.key, Some(vec![]));
    let tail = model::collect(ex.extract(Some(Checkpoint::Watermark(mid))).await.unwrap())
        .await
        .unwrap();
    assert_eq!(
        tail.iter().map(|b| b.num_rows()).sum::<usize>(),
        2,
        "rows 5 and 6"
    );
}

#[tokio::test]
async fn a_database_locked_by_another_writer_is_a_retryable_query_error() {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
    use sqlx::{Connection, Executor};
    let dir = tempfile::tempdir().unwrap();
    let opts = SqliteConnectOptions::new()
        .filename(dir.path().join("locked.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Delete)
        .busy_timeout(Duration::ZERO);
    let mut writer = sqlx::SqliteConnection::connect_with(&opts).await.unwrap();
    writer
        .execute("CREATE TABLE t (id INTEGER PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    // The reader's connection is open (opening sets PRAGMAs, which need the lock too).
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await
        .unwrap();
    // Another process's write transaction: readers get SQLITE_BUSY at once.
    writer.execute("BEGIN EXCLUSIVE").await.unwrap();
    let err = SqliteExtractor::new(pool, SqlSource::table("t"))
        .collect(None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Query {
                retryable: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());
    writer.execute("ROLLBACK").await.unwrap();
}
