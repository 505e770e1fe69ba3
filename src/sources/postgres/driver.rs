//! [`PostgresDriver`]: how the shared SQL extraction talks to PostgreSQL: a fixed
//! session (UTC, ISO dates), names resolved as PostgreSQL folds them, exact numeric
//! types from a probe view, binary rows, and snapshots exported to range readers.

use super::types::Dec;
use crate::sources::sql::extract::cursor_column;
use crate::sources::sql::query::build_query_casts;
use crate::sources::sql::{
    BuiltQuery, Columns, Deadlines, Dialect, From, KeyKind, Out, Prepared, Server, SqlDriver,
    SqlSource, build_query, lag_bound, read_rows, sqlx_error,
};
use crate::{CursorValue, Error, Result, Watermark};
use arrow_schema::Schema;
use async_trait::async_trait;
use sqlx::postgres::{PgArguments, PgConnection};
use sqlx::{Arguments, Column, Executor, Row, TypeInfo};
use std::sync::Arc;

const C: &str = "postgres";

pub(crate) fn pg_err(e: sqlx::Error, what: &str) -> Error {
    sqlx_error(C, e, what)
}

/// A PostgreSQL server's connection settings and time limits; the extractor, the COPY
/// path and the WAL reader's snapshot and acknowledgements read through it.
pub(crate) type PostgresDriver = Server<sqlx::Postgres>;

/// A pool that connects on first use to a `postgres://` URL.
pub(crate) fn connect_lazy(url: &str) -> Result<PostgresDriver> {
    Server::connect_lazy(
        C,
        url,
        sqlx::postgres::PgPoolOptions::new().acquire_timeout(std::time::Duration::from_secs(30)),
    )
}

#[async_trait]
impl SqlDriver for PostgresDriver {
    type Conn = PgConnection;
    type Dec = Dec;
    const COMPONENT: &'static str = C;
    const DIALECT: Dialect = Dialect::Postgres;

    fn deadlines(&self) -> Deadlines {
        let o = self.pool.connect_options();
        let addr = format!("{}:{}", o.get_host(), o.get_port());
        Deadlines::new(C, "PostgreSQL", addr, self.timeouts)
    }

    async fn connect(&self) -> Result<PgConnection> {
        // A connection of its own (not from the pool): it holds a long transaction, and an
        // unreachable server fails at once instead of after the pool's acquire timeout.
        use sqlx::ConnectOptions;
        let deadlines = self.deadlines();
        let opts = self.pool.connect_options();
        deadlines
            .connect(async {
                let mut conn = opts
                    .connect()
                    .await
                    .map_err(|e| connect_err(e, &deadlines))?;
                // Fixed session settings: values and text output do not depend on the
                // server's or the role's defaults.
                conn.execute(
                "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'iso_8601'; \
                      SET extra_float_digits = 1; SET bytea_output = 'hex'",
            )
            .await
            .map_err(|e| pg_err(e, "configuring the session"))?;
                Ok(conn)
            })
            .await?
    }

    async fn prepare(
        &self,
        conn: &mut PgConnection,
        source: &SqlSource,
        from: Option<&Watermark>,
    ) -> Result<Prepared<Dec>> {
        let resolved = resolve(conn, source).await?;
        let source = &resolved;
        // Describe the query without its bounds first: the columns, their types, and the
        // cursor's type (the bounds are bound as text and cast to it).
        let plain = build_query(source, Dialect::Postgres, None, None)?;
        let described = conn
            .describe(&plain.sql)
            .await
            .map_err(|e| pg_err(e, "preparing the query"))?;
        let columns = described.columns();
        let mods = typmods(conn, &plain.sql, columns.len()).await;
        let decoders = columns
            .iter()
            .zip(&mods)
            .map(|(c, m)| Dec::for_type(c.type_info(), *m, c.name()))
            .collect::<Result<Vec<_>>>()?;
        let fields: Vec<_> = columns
            .iter()
            .zip(&decoders)
            .enumerate()
            .map(|(i, (c, d))| d.field(c.name(), described.nullable(i).unwrap_or(true)))
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let cursor = cursor_column(C, source, columns, |c| c.name())?;
        let cast = match (cursor, &source.cursor) {
            (Some(i), Some(c)) => {
                let ty = columns[i].type_info().name().to_ascii_lowercase();
                if c.lag.is_some() && !matches!(ty.as_str(), "timestamp" | "timestamptz" | "date") {
                    return Err(Error::config(
                        C,
                        format!(
                            "a lag needs a date or timestamp cursor; {} is {ty}",
                            c.column
                        ),
                    ));
                }
                Some(ty)
            }
            _ => None,
        };
        // The key columns' types, for a keyset position's bounds.
        let key_casts: Vec<String> = source
            .cursor
            .iter()
            .flat_map(|c| &c.key)
            .map(|k| {
                columns
                    .iter()
                    .find(|x| x.name() == k)
                    .or_else(|| columns.iter().find(|x| x.name().eq_ignore_ascii_case(k)))
                    .map(|x| x.type_info().name().to_ascii_lowercase())
                    .unwrap_or_else(|| "text".into())
            })
            .collect();
        let upper = lag_bound(source).map(Self::lag_value);
        let BuiltQuery { sql, binds } = build_query_casts(
            source,
            Dialect::Postgres,
            from,
            upper,
            cast.as_deref(),
            &key_casts,
        )?;
        if from.is_some() || !binds.is_empty() {
            // The bounded query must prepare too (a bad cast shows up here).
            conn.describe(&sql)
                .await
                .map_err(|e| pg_err(e, "preparing the bounded query"))?;
        }
        Ok(Prepared {
            source: resolved.clone(),
            sql,
            binds,
            decoders,
            schema,
        })
    }

    async fn begin(&self, conn: &mut PgConnection, snapshot: Option<&str>) -> Result<()> {
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await
            .map_err(|e| pg_err(e, "starting a snapshot"))?;
        if let Some(id) = snapshot {
            // The name comes from the server (hex digits and dashes); checked all the same.
            if !id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
                return Err(Error::type_error(
                    C,
                    format!("unexpected snapshot name {id:?}"),
                ));
            }
            conn.execute(format!("SET TRANSACTION SNAPSHOT '{id}'").as_str())
                .await
                .map_err(|e| pg_err(e, "importing the snapshot"))?;
        }
        Ok(())
    }

    async fn commit(&self, conn: &mut PgConnection) -> Result<()> {
        conn.execute("COMMIT")
            .await
            .map_err(|e| pg_err(e, "ending the snapshot"))?;
        Ok(())
    }

    async fn read(
        &self,
        conn: &mut PgConnection,
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
        Some(match dec {
            Dec::I16 | Dec::I32 | Dec::I64 => (KeyKind::Int, Some("int8")),
            Dec::Date => (KeyKind::Date, Some("date")),
            Dec::Ts => (KeyKind::Timestamp, Some("timestamp")),
            Dec::TsTz => (KeyKind::Timestamp, Some("timestamptz")),
            _ => return None,
        })
    }

    async fn range(
        &self,
        conn: &mut PgConnection,
        column: &str,
        plain: &str,
    ) -> Result<(Option<String>, Option<String>)> {
        let q = Dialect::Postgres.quote_ident(column);
        sqlx::query_as(&format!(
            "SELECT MIN(q.{q})::text, MAX(q.{q})::text FROM ({plain}) AS q"
        ))
        .fetch_one(conn)
        .await
        .map_err(|e| pg_err(e, "finding the partition range"))
    }

    /// Every range reads the coordinator's snapshot: one consistent extraction.
    async fn share_snapshot(&self, coord: &mut PgConnection) -> Result<Option<String>> {
        self.begin(coord, None).await?;
        let id: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
            .fetch_one(coord)
            .await
            .map_err(|e| pg_err(e, "exporting the snapshot"))?;
        Ok(Some(id))
    }

    async fn estimate(&self, conn: &mut PgConnection, prep: &Prepared<Dec>) -> Result<Option<u64>> {
        let explain = format!("EXPLAIN (FORMAT JSON) {}", prep.sql);
        let row = self
            .deadlines()
            .read(
                sqlx::query_with(&explain, text_args(&prep.binds)?).fetch_one(conn),
                "planning the query",
            )
            .await?
            .map_err(|e| pg_err(e, "planning the query"))?;
        // `json` comes as its text; read it unchecked rather than need sqlx's json feature.
        let text: String = row
            .try_get_unchecked(0)
            .map_err(|e| pg_err(e, "reading the plan"))?;
        Ok(serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v[0]["Plan"]["Plan Rows"].as_f64())
            .map(|r| r.max(0.0).round() as u64))
    }
}

/// A failed connect. A server of another kind on the port (MySQL sends its greeting
/// first) shows up as a protocol error: say what it means.
fn connect_err(e: sqlx::Error, at: &Deadlines) -> Error {
    if let sqlx::Error::Protocol(m) = &e {
        return Error::Connection {
            component: "postgres".into(),
            message: format!(
                "{} did not answer in the PostgreSQL protocol ({m}): this is not a PostgreSQL \
                 server, check host and port",
                at.addr()
            ),
            source: Some(Box::new(e)),
        };
    }
    pg_err(e, &format!("connecting to {}", at.addr()))
}

/// Type modifiers of the query's columns (numeric precision and scale), from a
/// temporary view; `-1` each when the view cannot be made (e.g. on a hot standby).
async fn typmods(conn: &mut PgConnection, sql: &str, n: usize) -> Vec<i32> {
    let view = format!(
        "tributary_probe_{}_{}",
        std::process::id(),
        chrono::Utc::now()
            .timestamp_nanos_opt()
            .unwrap_or_default()
            .rem_euclid(1 << 40)
    );
    let probe = async {
        conn.execute(format!("CREATE TEMP VIEW {view} AS {sql}").as_str())
            .await?;
        let mods: Vec<i32> = sqlx::query_scalar(
            "SELECT atttypmod FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 \
             AND NOT attisdropped ORDER BY attnum",
        )
        .bind(format!("pg_temp.{view}"))
        .fetch_all(&mut *conn)
        .await?;
        conn.execute(format!("DROP VIEW pg_temp.{view}").as_str())
            .await?;
        Ok::<_, sqlx::Error>(mods)
    };
    match probe.await {
        Ok(m) if m.len() == n => m,
        _ => vec![-1; n],
    }
}

/// Resolve names as PostgreSQL would have if the user had typed them unquoted: the
/// book's `Orders`/`LastUpdated` are `orders`/`lastupdated` in the catalog. Exact
/// names win; otherwise the folded or the one case-insensitive match is used.
async fn resolve(conn: &mut PgConnection, source: &SqlSource) -> Result<SqlSource> {
    let mut source = source.clone();
    if let From::Table(t) = &source.from {
        let quoted = Dialect::Postgres.quote_ident(t);
        let folded = t.to_ascii_lowercase();
        let found: (Option<String>, Option<String>) =
            sqlx::query_as("SELECT to_regclass($1)::text, to_regclass($2)::text")
                .bind(&quoted)
                .bind(&folded)
                .fetch_one(&mut *conn)
                .await
                .unwrap_or((None, None));
        if found.0.is_none() && found.1.is_some() {
            source.from = From::Table(folded);
        }
    }
    let everything = SqlSource {
        columns: vec![],
        cursor: None,
        ..source.clone()
    };
    let all = build_query(&everything, Dialect::Postgres, None, None)?;
    let Ok(described) = conn.describe(&all.sql).await else {
        return Ok(source);
    };
    let names: Vec<String> = described
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    let fix = |n: &mut String| {
        if names.iter().any(|x| x == n) {
            return;
        }
        let matches: Vec<&String> = names.iter().filter(|x| x.eq_ignore_ascii_case(n)).collect();
        if let [one] = matches.as_slice() {
            *n = (*one).clone();
        }
    };
    source.columns.iter_mut().for_each(fix);
    if let Some(c) = source.cursor.as_mut() {
        fix(&mut c.column);
        c.key.iter_mut().for_each(fix);
    }
    if let Some(t) = source.table_needing_key() {
        let key = primary_key(conn, t).await?;
        source = source.keyed_by_table(key, &names);
    }
    Ok(source)
}

/// The primary key's columns of `table`, in key order (empty when it has none).
async fn primary_key(conn: &mut PgConnection, table: &str) -> Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT a.attname::text FROM pg_index i \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
         WHERE i.indrelid = to_regclass($1) AND i.indisprimary \
         ORDER BY array_position(i.indkey::int2[], a.attnum)",
    )
    .bind(Dialect::Postgres.quote_ident(table))
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| pg_err(e, "reading the table's primary key"))
}

/// Binds as text, cast in the query to the column's type.
fn text_args(binds: &[CursorValue]) -> Result<PgArguments> {
    let mut args = PgArguments::default();
    for v in binds {
        let text = match v {
            CursorValue::Timestamp(t) => t.format("%Y-%m-%d %H:%M:%S%.f").to_string(),
            CursorValue::TimestampTz(t) => t.format("%Y-%m-%d %H:%M:%S%.f+00").to_string(),
            other => other.to_string(),
        };
        args.add(text)
            .map_err(|e| Error::type_error("postgres", format!("binding {v}: {e}")))?;
    }
    Ok(args)
}
