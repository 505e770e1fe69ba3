//! Helpers of the binlog CDC tests: the project's MariaDB, its binlog end, what landed.
#![allow(dead_code)]

use sqlx::{Connection, Executor, MySqlConnection, Row};
use tributary::sources::mysql_cdc::StartAt;
use tributary::stores::ObjectSink;

/// A fresh table name with `prefix`.
pub fn table(prefix: &str) -> String {
    super::unique(prefix).replace('-', "_")
}

/// The test MariaDB's URL and a connection in a UTC session, or `None` (see
/// [`service`](super::service)).
pub async fn connect() -> Option<(String, MySqlConnection)> {
    let url = super::service("TRIBUTARY_TEST_MYSQL_URL", "MariaDB")?;
    let mut conn = MySqlConnection::connect(&url).await.unwrap();
    conn.execute("SET time_zone = '+00:00'").await.unwrap();
    Some((url, conn))
}

/// Run statements separated by `;\n`, panicking with the one that failed.
pub async fn exec(conn: &mut MySqlConnection, sql: &str) {
    for stmt in sql.split(";\n") {
        if !stmt.trim().is_empty() {
            conn.execute(stmt)
                .await
                .unwrap_or_else(|e| panic!("{stmt}: {e}"));
        }
    }
}

/// The binlog's end now: where a reader that should see only what follows starts.
pub async fn end(conn: &mut MySqlConnection) -> StartAt {
    let row = sqlx::query("SHOW MASTER STATUS")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    StartAt::Position {
        file: row.try_get(0).unwrap(),
        pos: row.try_get(1).unwrap(),
    }
}

/// Every landed line of `table`'s objects, object by object in key order.
pub async fn lines(sink: &ObjectSink, table: &str) -> Vec<String> {
    let mut keys: Vec<String> = sink
        .list("")
        .await
        .unwrap()
        .into_iter()
        .filter(|k| k.contains(table) && !k.ends_with(".json") && !k.starts_with("_state"))
        .collect();
    keys.sort();
    let mut out = Vec::new();
    for k in keys {
        let body = sink.read(&k).await.unwrap();
        out.extend(
            std::str::from_utf8(&body)
                .unwrap()
                .lines()
                .map(str::to_string),
        );
    }
    out
}
