//! Helpers of the WAL CDC tests: the project's PostgreSQL (port 5433, wal_level=logical),
//! fresh tables and slots that are dropped afterwards.
#![allow(dead_code)]

use futures::StreamExt;
use sqlx::{Connection, Executor, PgConnection};
use tributary::ExtractorExt;
use tributary::sources::postgres_cdc::{PostgresCdcConfig, PostgresCdcExtractor};
use tributary::{Batch, Checkpoint, Result};

/// A fresh lower-case name with `prefix` (tables, slots, publications).
pub fn name(prefix: &str) -> String {
    super::unique(prefix).replace('-', "_").to_ascii_lowercase()
}

/// The test PostgreSQL's URL and a connection, or `None` (see [`service`](super::service)).
pub async fn connect() -> Option<(String, PgConnection)> {
    let url = super::service("TRIBUTARY_TEST_PG_URL", "PostgreSQL")?;
    let mut conn = PgConnection::connect(&url).await.unwrap();
    conn.execute("SET TimeZone = 'UTC'").await.unwrap();
    Some((url, conn))
}

/// Run statements separated by `;\n`, panicking with the one that failed.
pub async fn exec(conn: &mut PgConnection, sql: &str) {
    for stmt in sql.split(";\n") {
        if !stmt.trim().is_empty() {
            conn.execute(stmt)
                .await
                .unwrap_or_else(|e| panic!("{stmt}: {e}"));
        }
    }
}

/// A reader of `tables` through slot and publication `slot`, stopping at the WAL's
/// current end.
pub fn reader(
    url: &str,
    slot: &str,
    tables: &[&str],
    f: impl FnOnce(PostgresCdcConfig) -> PostgresCdcConfig,
) -> PostgresCdcExtractor {
    let config = f(PostgresCdcConfig::new(slot)
        .with_tables(tables.iter().copied())
        .until_current_end());
    PostgresCdcExtractor::connect_lazy(url, config).unwrap()
}

/// Every batch of a bounded extraction.
pub async fn drain(e: &PostgresCdcExtractor, from: Option<Checkpoint>) -> Result<Vec<Batch>> {
    let mut s = e.extract(from).await?;
    let mut out = Vec::new();
    while let Some(b) = s.next().await {
        out.push(b?);
    }
    Ok(out)
}

/// The last checkpoint of the batches.
pub fn last_checkpoint(batches: &[Batch]) -> Option<Checkpoint> {
    batches.iter().rev().find_map(|b| b.checkpoint.clone())
}

/// Drop slot and publication `name` (a test's cleanup).
pub async fn cleanup(conn: &mut PgConnection, name: &str) {
    for _ in 0..50 {
        let r = sqlx::query(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
             WHERE slot_name = $1",
        )
        .bind(name)
        .execute(&mut *conn)
        .await;
        if r.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = conn
        .execute(format!("DROP PUBLICATION IF EXISTS {name}").as_str())
        .await;
}

/// The slot's confirmed position.
pub async fn confirmed(conn: &mut PgConnection, slot: &str) -> Option<u64> {
    let s: Option<String> = sqlx::query_scalar(
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
    )
    .bind(slot)
    .fetch_optional(&mut *conn)
    .await
    .unwrap()
    .flatten();
    s.map(|s| {
        let (hi, lo) = s.split_once('/').unwrap();
        (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap()
    })
}
