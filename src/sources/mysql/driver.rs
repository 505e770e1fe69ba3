//! [`MySqlDriver`]: how the shared SQL extraction talks to MySQL and MariaDB: a UTC
//! session, `information_schema` for exact types and keys, `START TRANSACTION WITH
//! CONSISTENT SNAPSHOT`, rows decoded from the text and binary protocols.

use super::types::{ColumnInfo, Dec};
use crate::sources::sql::extract::cursor_column;
use crate::sources::sql::{
    BuiltQuery, ColumnDecoder, Columns, Deadlines, Dialect, From, KeyKind, Out, Prepared, Server,
    SqlDriver, SqlSource, build_query, lag_bound, read_rows, schema_and_table, sqlx_error,
};
use crate::{CursorValue, Error, Result, Watermark};
use arrow_array::builder::ArrayBuilder;
use arrow_schema::Schema;
use async_trait::async_trait;
use sqlx::mysql::{MySqlArguments, MySqlConnection, MySqlRow};
use sqlx::{Arguments, Column, ConnectOptions, Executor, Row, TypeInfo, ValueRef};
use std::collections::HashMap;
use std::sync::Arc;

const C: &str = "mysql";

fn my_err(e: sqlx::Error, what: &str) -> Error {
    sqlx_error(C, e, what)
}

/// A MySQL or MariaDB server's connection settings and time limits; the extractor and
/// the binlog reader's snapshot read through it.
pub(crate) type MySqlDriver = Server<sqlx::MySql>;

/// A pool that connects on first use to a `mysql://` URL (MariaDB too).
pub(crate) fn connect_lazy(url: &str) -> Result<MySqlDriver> {
    Server::connect_lazy(C, url, sqlx::mysql::MySqlPoolOptions::new())
}

#[async_trait]
impl SqlDriver for MySqlDriver {
    type Conn = MySqlConnection;
    type Dec = Dec;
    const COMPONENT: &'static str = C;
    const DIALECT: Dialect = Dialect::MySql;

    /// A MySQL client waits for the server's greeting, so a port where some other
    /// server waits for the client (PostgreSQL) fails on the connect limit.
    fn deadlines(&self) -> Deadlines {
        let o = self.pool.connect_options();
        let addr = format!("{}:{}", o.get_host(), o.get_port());
        Deadlines::new(C, "MySQL/MariaDB", addr, self.timeouts)
    }

    async fn connect(&self) -> Result<MySqlConnection> {
        let deadlines = self.deadlines();
        let opts = self.pool.connect_options();
        deadlines
            .connect(async {
                let mut conn = opts
                    .connect()
                    .await
                    .map_err(|e| my_err(e, &format!("connecting to {}", deadlines.addr())))?;
                // UTC, so TIMESTAMP values and bounds mean the same instant everywhere; a
                // long write timeout, so a slow sink does not make the server abort the stream.
                for stmt in [
                    "SET time_zone = '+00:00', SESSION net_write_timeout = 3600",
                    "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
                ] {
                    conn.execute(stmt)
                        .await
                        .map_err(|e| my_err(e, "configuring the session"))?;
                }
                Ok(conn)
            })
            .await?
    }

    async fn prepare(
        &self,
        conn: &mut MySqlConnection,
        source: &SqlSource,
        from: Option<&Watermark>,
    ) -> Result<Prepared<Dec>> {
        let plain = build_query(source, Dialect::MySql, None, None)?;
        let described = conn
            .describe(&plain.sql)
            .await
            .map_err(|e| my_err(e, "preparing the query"))?;
        let info = table_info(conn, source).await;
        let columns = described.columns();
        let mut source = source.clone();
        if let Some(t) = source.table_needing_key() {
            let key = primary_key(conn, t).await?;
            let names: Vec<String> = columns.iter().map(|c| c.name().to_string()).collect();
            source = source.keyed_by_table(key, &names);
        }
        let decoders = columns
            .iter()
            .map(|c| {
                Dec::for_type(
                    c.type_info().name(),
                    c.name(),
                    info.get(&c.name().to_ascii_lowercase()),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let fields: Vec<_> = columns
            .iter()
            .zip(&decoders)
            .enumerate()
            .map(|(i, (c, d))| d.field(c.name(), described.nullable(i).unwrap_or(true)))
            .collect();
        let cursor = cursor_column(C, &source, columns, |c| c.name())?;
        if let (Some(i), Some(c)) = (cursor, &source.cursor) {
            let time = matches!(decoders[i], Dec::Date | Dec::DateTime | Dec::Timestamp);
            if c.lag.is_some() && !time {
                return Err(Error::config(
                    C,
                    format!(
                        "a lag needs a DATE, DATETIME or TIMESTAMP cursor; {} is {}",
                        c.column,
                        columns[i].type_info().name()
                    ),
                ));
            }
        }
        let upper = lag_bound(&source).map(Self::lag_value);
        let BuiltQuery { sql, binds } = build_query(&source, Dialect::MySql, from, upper)?;
        Ok(Prepared {
            source,
            sql,
            binds,
            decoders,
            schema: Arc::new(Schema::new(fields)),
        })
    }

    async fn begin(&self, conn: &mut MySqlConnection, _snapshot: Option<&str>) -> Result<()> {
        conn.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            .await
            .map_err(|e| my_err(e, "starting a snapshot"))?;
        Ok(())
    }

    async fn commit(&self, conn: &mut MySqlConnection) -> Result<()> {
        conn.execute("COMMIT")
            .await
            .map_err(|e| my_err(e, "ending the snapshot"))?;
        Ok(())
    }

    async fn read(
        &self,
        conn: &mut MySqlConnection,
        (sql, binds): (&str, &[CursorValue]),
        prep: &Prepared<Dec>,
        batch_rows: usize,
        out: &mut Out<'_>,
    ) -> Result<bool> {
        let mut rows = Columns::new(C, prep, batch_rows);
        let deadlines = self.deadlines();
        let args = text_args(binds)?;
        read_rows(conn, sql, args, &mut rows, batch_rows, &deadlines, C, out).await
    }

    fn partition_kind(dec: &Dec) -> Option<(KeyKind, Option<&'static str>)> {
        let kind = match dec {
            Dec::I8 | Dec::I16 | Dec::I32 | Dec::I64 | Dec::U8 | Dec::U16 | Dec::U32 | Dec::U64 => {
                KeyKind::Int
            }
            Dec::Date => KeyKind::Date,
            Dec::DateTime | Dec::Timestamp => KeyKind::Timestamp,
            _ => return None,
        };
        Some((kind, None))
    }

    async fn range(
        &self,
        conn: &mut MySqlConnection,
        column: &str,
        plain: &str,
    ) -> Result<(Option<String>, Option<String>)> {
        let q = Dialect::MySql.quote_ident(column);
        let row = sqlx::query(&format!(
            "SELECT CAST(MIN(q.{q}) AS CHAR), CAST(MAX(q.{q}) AS CHAR) FROM ({plain}) AS q"
        ))
        .fetch_one(conn)
        .await
        .map_err(|e| my_err(e, "finding the partition range"))?;
        Ok((super::types::text(&row, 0), super::types::text(&row, 1)))
    }

    async fn estimate(
        &self,
        conn: &mut MySqlConnection,
        prep: &Prepared<Dec>,
    ) -> Result<Option<u64>> {
        let explain = format!("EXPLAIN {}", prep.sql);
        let rows = self
            .deadlines()
            .read(
                sqlx::query_with(&explain, text_args(&prep.binds)?).fetch_all(conn),
                "planning the query",
            )
            .await?
            .map_err(|e| my_err(e, "planning the query"))?;
        // One row per table read; a plain table or query over one table has one.
        // MySQL types the column as a number, MariaDB as text.
        Ok(rows.first().and_then(|r| {
            r.try_get::<Option<u64>, _>("rows")
                .ok()
                .flatten()
                .or_else(|| {
                    r.try_get::<Option<i64>, _>("rows")
                        .ok()
                        .flatten()
                        .map(|n| n.max(0) as u64)
                })
                .or_else(|| {
                    r.try_get_unchecked::<Option<String>, _>("rows")
                        .ok()
                        .flatten()
                        .and_then(|t| t.trim().parse().ok())
                })
        }))
    }
}

/// Binds as text: MySQL converts a text parameter to the column's type in the comparison.
fn text_args(binds: &[CursorValue]) -> Result<MySqlArguments> {
    let mut args = MySqlArguments::default();
    for v in binds {
        let text = match v {
            CursorValue::Timestamp(t) => t.format("%Y-%m-%d %H:%M:%S%.f").to_string(),
            CursorValue::TimestampTz(t) => t.format("%Y-%m-%d %H:%M:%S%.f").to_string(),
            other => other.to_string(),
        };
        args.add(text)
            .map_err(|e| Error::type_error(C, format!("binding {v}: {e}")))?;
    }
    Ok(args)
}

impl ColumnDecoder<MySqlRow> for Dec {
    fn append_from(
        &self,
        builder: &mut dyn ArrayBuilder,
        row: &MySqlRow,
        i: usize,
        name: &str,
    ) -> Result<()> {
        let raw = row
            .try_get_raw(i)
            .map_err(|e| my_err(e, "reading a value"))?;
        self.append(builder, (!raw.is_null()).then_some(raw), name)
    }
}

/// Exact column types of a table source from `information_schema` (DECIMAL precision
/// and scale, MariaDB's JSON columns). Empty for query sources or if unreadable.
async fn table_info(conn: &mut MySqlConnection, source: &SqlSource) -> HashMap<String, ColumnInfo> {
    let From::Table(table) = &source.from else {
        return HashMap::new();
    };
    let (schema, name) = schema_and_table(table);
    let mut out = HashMap::new();
    use super::types::{json_valid_column, text};
    let rows = sqlx::query(
            "SELECT COLUMN_NAME, CAST(NUMERIC_PRECISION AS CHAR), CAST(NUMERIC_SCALE AS CHAR), DATA_TYPE \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?",
        )
        .bind(schema)
        .bind(name)
        .fetch_all(&mut *conn)
        .await
        .unwrap_or_default();
    for row in &rows {
        let Some(c) = text(row, 0) else { continue };
        out.insert(
            c.to_ascii_lowercase(),
            ColumnInfo {
                precision: text(row, 1).and_then(|v| v.parse().ok()),
                scale: text(row, 2).and_then(|v| v.parse().ok()),
                json: false,
                data_type: text(row, 3).map(|t| t.to_ascii_lowercase()),
            },
        );
    }
    // MariaDB's JSON is LONGTEXT with CHECK (json_valid(`col`)).
    let rows = sqlx::query(
        "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS \
             WHERE CONSTRAINT_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?",
    )
    .bind(schema)
    .bind(name)
    .fetch_all(&mut *conn)
    .await
    .unwrap_or_default();
    for row in &rows {
        let Some(clause) = text(row, 0) else { continue };
        if let Some(col) = json_valid_column(&clause) {
            out.entry(col.to_ascii_lowercase()).or_default().json = true;
        }
    }
    out
}

/// The primary key's columns of `table` (`schema.table` or the connection's
/// database), in key order; empty when it has none.
async fn primary_key(conn: &mut MySqlConnection, table: &str) -> Result<Vec<String>> {
    let (schema, name) = schema_and_table(table);
    let rows = sqlx::query(
        "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
             WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ? \
             AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION",
    )
    .bind(schema)
    .bind(name)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| my_err(e, "reading the table's primary key"))?;
    Ok(rows
        .iter()
        .filter_map(|r| super::types::text(r, 0))
        .collect())
}
