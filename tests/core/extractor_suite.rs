//! `testing::extractor_suite` on the in-memory extractors and on SQLite (the server
//! sources run it in their own test files, beside their services).

use std::sync::Arc;
use tributary::arrow_array::{Int64Array, RecordBatch};
use tributary::arrow_schema::{DataType, Field, Schema};
use tributary::sources::sql::{Cursor, SqlSource};
use tributary::sources::sqlite::SqliteExtractor;
use tributary::sources::{MemoryChangeStream, MemoryExtractor};
use tributary::testing::extractor_suite;
use tributary::{Batch, Checkpoint};

use crate::common::changes;

#[tokio::test]
async fn memory_extractor() {
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
    let batches = (0..20)
        .map(|i| {
            let rb = RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(Int64Array::from(vec![i, i + 100]))],
            )
            .unwrap();
            Batch::new(rb).with_checkpoint(Checkpoint::Lsn { lsn: i as u64 })
        })
        .collect();
    let r = extractor_suite(&MemoryExtractor::new("m", "s", batches), 25).await;
    assert_eq!((r.rows, r.checkpoints, r.resumes), (40, 20, 20));
}

#[tokio::test]
async fn memory_change_stream_with_three_tables_and_a_ddl() {
    let log = changes::log(150, 2);
    let r = extractor_suite(&MemoryChangeStream::new("mem", "shop", log).bounded(), 30).await;
    assert_eq!(r.checkpoints, 150);
    assert_eq!(r.resumes, 30);
    assert_eq!(r.rows, changes::expected(150, 2, 150).len());
}

#[tokio::test]
async fn the_suite_catches_an_extractor_that_resumes_wrongly() {
    // Resuming a MemoryExtractor from a checkpoint that two batches share repeats rows:
    // the suite must notice.
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
    let b = |i: i64, lsn: u64| {
        Batch::new(
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![i]))])
                .unwrap(),
        )
        .with_checkpoint(Checkpoint::Lsn { lsn })
    };
    let e = MemoryExtractor::new("m", "s", vec![b(1, 1), b(2, 2), b(3, 3), b(4, 2)]);
    let caught = tokio::spawn(async move { extractor_suite(&e, 10).await }).await;
    assert!(caught.is_err(), "a wrong resume went unnoticed");
}

async fn sqlite(rows: &[(i64, i64, &str)]) -> sqlx::SqlitePool {
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect("sqlite::memory:")
        .await
        .unwrap();
    sqlx::query("CREATE TABLE ev (id INTEGER, u INTEGER, at TEXT)")
        .execute(&pool)
        .await
        .unwrap();
    for (id, u, at) in rows {
        sqlx::query("INSERT INTO ev VALUES (?1, ?2, ?3)")
            .bind(id)
            .bind(u)
            .bind(at)
            .execute(&pool)
            .await
            .unwrap();
    }
    pool
}

#[tokio::test]
async fn sqlite_incremental_keyed_key_less_and_full() {
    let owned: Vec<(i64, i64, String)> = (0..47)
        .map(|i| (i, i % 2, format!("2020-01-01 00:{:02}:00", i / 6)))
        .collect();
    let rows: Vec<(i64, i64, &str)> = owned.iter().map(|(a, b, c)| (*a, *b, c.as_str())).collect();
    let pool = sqlite(&rows).await;
    let keyed = SqlSource::table("ev")
        .incremental(Cursor::new("at").with_key(["id"]))
        .with_batch_rows(4);
    let r = extractor_suite(&SqliteExtractor::new(pool.clone(), keyed), 20).await;
    assert!(r.rows == 47 && r.resumes > 5, "{r:?}");
    // Key-less, on rows that repeat within a cursor value.
    let repeated: Vec<(i64, i64, &str)> =
        owned.iter().map(|(_, b, c)| (0, *b, c.as_str())).collect();
    let pool = sqlite(&repeated).await;
    let keyless = SqlSource::query("SELECT u, at FROM ev")
        .incremental(Cursor::new("at"))
        .with_batch_rows(3);
    let r = extractor_suite(&SqliteExtractor::new(pool.clone(), keyless), 20).await;
    assert!(r.rows == 47 && r.resumes > 5, "{r:?}");
    let full = SqlSource::table("ev").with_batch_rows(10);
    let r = extractor_suite(&SqliteExtractor::new(pool, full), 20).await;
    assert_eq!((r.rows, r.checkpoints), (47, 0));
}

#[tokio::test]
async fn a_checkpoint_of_another_kind_is_a_config_error_for_every_in_process_extractor() {
    use tributary::{Error, ExtractContext, Extractor};
    let pool = sqlite(&[(1, 1, "2020-01-01 00:00:00")]).await;
    let sql = SqliteExtractor::new(pool, SqlSource::table("ev").incremental(Cursor::new("at")));
    let lsn = ExtractContext::from_checkpoint(Some(Checkpoint::Lsn { lsn: 7 }));
    let err = sql.open(lsn).await.unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err}");
    let wm = ExtractContext::from_checkpoint(Some(Checkpoint::Watermark(
        tributary::Watermark::new(tributary::CursorValue::Int(1)),
    )));
    let err = MemoryChangeStream::new("mem", "s", vec![])
        .open(wm)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err}");
}
