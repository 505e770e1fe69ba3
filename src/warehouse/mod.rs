//! The warehouse: a SQL database (PostgreSQL, MySQL/MariaDB or SQLite, any sqlx URL)
//! where tributary keeps checkpoints ([`SqlStateStore`]) and run history
//! ([`SqlRunLog`], table `pipeline_run_history`).
//!
//! Tables are created on first use. Timestamps are stored in UTC: `TIMESTAMPTZ` on
//! PostgreSQL, `DATETIME(6)` on MySQL, ISO 8601 text on SQLite.

mod history;
mod state;

pub use history::{RunRecord, SqlRunLog, ValidationRecord};
pub use state::SqlStateStore;

use crate::sources::sql::{Dialect, sqlx_error};
use crate::{Error, Result};
use chrono::{DateTime, Utc};
use sqlx::any::{AnyArguments, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Arguments, Row};
use std::sync::Arc;
use tokio::sync::OnceCell;

/// A connection pool to the warehouse and the dialect to speak to it.
///
/// ```
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// use tributary::warehouse::Warehouse;
/// let wh = Warehouse::connect("sqlite::memory:").await?;
/// assert_eq!(wh.dialect(), tributary::sources::sql::Dialect::Sqlite);
/// assert!(wh.run_history(None, 10).await?.is_empty());
/// # Ok::<(), tributary::Error>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Warehouse {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: AnyPool,
    dialect: Dialect,
    label: String,
    state_table: OnceCell<()>,
    history_table: OnceCell<()>,
    validation_table: OnceCell<()>,
}

pub use crate::util::redact_url;

impl Warehouse {
    /// Connect to `url`: `postgres://…`, `mysql://…` (also MariaDB), `sqlite://file.db`
    /// (created if missing) or `sqlite::memory:`. Fails fast with a typed error when the
    /// server is unreachable or the credentials are wrong.
    pub async fn connect(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let dialect = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Dialect::Postgres
        } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            Dialect::MySql
        } else if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else {
            return Err(Error::config(
                "warehouse",
                format!(
                    "unsupported warehouse URL {}; use postgres://, mysql:// or sqlite://",
                    redact_url(url)
                ),
            ));
        };
        let mut url = url.replacen("mariadb://", "mysql://", 1);
        if dialect == Dialect::Sqlite && !url.contains(":memory:") && !url.contains("mode=") {
            url.push_str(if url.contains('?') {
                "&mode=rwc"
            } else {
                "?mode=rwc"
            });
        }
        let mut opts = AnyPoolOptions::new().acquire_timeout(std::time::Duration::from_secs(10));
        if dialect == Dialect::Sqlite && url.contains(":memory:") {
            // Each connection to `:memory:` is its own database: keep exactly one.
            opts = opts
                .max_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        } else {
            opts = opts.max_connections(4);
        }
        let label = redact_url(&url);
        // One plain connection first: an unreachable server or a wrong password fails at
        // once instead of after the pool's acquire timeout.
        {
            use sqlx::Connection;
            // A port that accepts TCP and never answers must not hang the run.
            let limit = std::time::Duration::from_secs(30);
            let conn = tokio::time::timeout(limit, sqlx::AnyConnection::connect(&url))
                .await
                .map_err(|_| Error::Connection {
                    component: "warehouse".into(),
                    message: format!("no answer from {label} within {limit:?} while connecting"),
                    source: None,
                })?
                .map_err(|e| sqlx_error("warehouse", e, &format!("connecting to {label}")))?;
            let _ = conn.close().await;
        }
        let pool = opts
            .connect(&url)
            .await
            .map_err(|e| sqlx_error("warehouse", e, &format!("connecting to {label}")))?;
        Ok(Warehouse {
            inner: Arc::new(Inner {
                pool,
                dialect,
                label,
                state_table: OnceCell::new(),
                history_table: OnceCell::new(),
                validation_table: OnceCell::new(),
            }),
        })
    }

    /// The SQL dialect.
    pub fn dialect(&self) -> Dialect {
        self.inner.dialect
    }

    /// The pool, for your own queries.
    pub fn pool(&self) -> &AnyPool {
        &self.inner.pool
    }

    /// The URL with its password redacted.
    pub fn describe(&self) -> String {
        self.inner.label.clone()
    }

    /// Run one statement.
    pub async fn execute(&self, sql: &str) -> Result<u64> {
        let r = sqlx::query(sql)
            .execute(&self.inner.pool)
            .await
            .map_err(|e| sqlx_error("warehouse", e, "executing a statement"))?;
        Ok(r.rows_affected())
    }

    /// A [`StateStore`](crate::stores::StateStore) keeping checkpoints in table `tributary_state`.
    pub fn state_store(&self) -> SqlStateStore {
        SqlStateStore { wh: self.clone() }
    }

    /// A [`RunLog`](crate::RunLog) appending to table `pipeline_run_history`.
    pub fn run_log(&self) -> SqlRunLog {
        SqlRunLog { wh: self.clone() }
    }

    fn ph(&self, n: usize) -> String {
        self.dialect().placeholder(n)
    }

    /// The column type for timestamps.
    fn ts_type(&self) -> &'static str {
        match self.dialect() {
            Dialect::Postgres => "TIMESTAMPTZ",
            Dialect::MySql => "DATETIME(6)",
            _ => "TEXT",
        }
    }

    /// A placeholder that accepts a timestamp bound as UTC text.
    fn ts_param(&self, n: usize) -> String {
        match self.dialect() {
            Dialect::Postgres => format!("CAST({} AS TIMESTAMPTZ)", self.ph(n)),
            _ => self.ph(n),
        }
    }

    /// A select expression reading a timestamp column back as UTC text.
    fn ts_select(&self, col: &str) -> String {
        match self.dialect() {
            Dialect::Postgres => {
                format!("to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')")
            }
            Dialect::MySql => format!("DATE_FORMAT({col}, '%Y-%m-%d %H:%i:%s.%f')"),
            _ => col.to_string(),
        }
    }

    async fn ensure(&self, cell: &OnceCell<()>, ddl: String) -> Result<()> {
        cell.get_or_try_init(|| async {
            self.execute(&ddl).await?;
            Ok::<(), Error>(())
        })
        .await?;
        Ok(())
    }

    /// The book's incremental strategy, done without its boundary loss: the watermark of
    /// the rows already loaded into `table` of this warehouse. The cursor value is
    /// `MAX(cursor)`; the rows at that value are recognised by their key columns
    /// (`cursor` must have [`Cursor::with_key`](crate::sources::sql::Cursor::with_key)),
    /// so the next extraction skips exactly them. `None` when the table is empty. Pass it
    /// to [`PipelineOptions::with_start_from`](crate::PipelineOptions::with_start_from).
    ///
    /// Key values are compared as text, so keys should be integers or text.
    pub async fn watermark(
        &self,
        table: &str,
        cursor: &crate::sources::sql::Cursor,
    ) -> Result<Option<crate::Checkpoint>> {
        match self.watermark_as_named(table, cursor).await {
            // PostgreSQL folds unquoted names to lower case: the book's `Orders` table
            // with `LastUpdated` is `orders`/`lastupdated` in the catalog.
            Err(Error::NotFound { .. }) if self.dialect() == Dialect::Postgres => {
                let mut folded = cursor.clone();
                folded.column = folded.column.to_ascii_lowercase();
                folded
                    .key
                    .iter_mut()
                    .for_each(|k| *k = k.to_ascii_lowercase());
                self.watermark_as_named(&table.to_ascii_lowercase(), &folded)
                    .await
            }
            other => other,
        }
    }

    async fn watermark_as_named(
        &self,
        table: &str,
        cursor: &crate::sources::sql::Cursor,
    ) -> Result<Option<crate::Checkpoint>> {
        if cursor.key.is_empty() {
            return Err(Error::config(
                "warehouse",
                "a watermark from the warehouse needs the cursor's key columns (Cursor::with_key) \
                 to recognise the rows already loaded at the last value",
            ));
        }
        let d = self.dialect();
        let as_text = |expr: String| match d {
            Dialect::MySql => format!("CAST({expr} AS CHAR)"),
            _ => format!("CAST({expr} AS TEXT)"),
        };
        let t = d.quote_ident(table);
        let col = d.quote_ident(&cursor.column);
        let max_sql = format!("SELECT {} AS m FROM {t}", as_text(format!("MAX({col})")));
        let row = sqlx::query(&max_sql)
            .fetch_one(&self.inner.pool)
            .await
            .map_err(|e| {
                sqlx_error(
                    "warehouse",
                    e,
                    &format!("reading MAX({}) from {table}", cursor.column),
                )
            })?;
        let Some(max) = text(&row, "m")? else {
            return Ok(None);
        };
        let keys = cursor
            .key
            .iter()
            .map(|k| as_text(d.quote_ident(k)))
            .collect::<Vec<_>>()
            .join(", ");
        let mut args = AnyArguments::default();
        args.add(max.clone()).map_err(bind_err)?;
        let rows = sqlx::query_with(
            &format!(
                "SELECT {keys} FROM {t} WHERE {} = {}",
                as_text(col.clone()),
                self.ph(1)
            ),
            args,
        )
        .fetch_all(&self.inner.pool)
        .await
        .map_err(|e| {
            sqlx_error(
                "warehouse",
                e,
                &format!("reading the keys at the last {} of {table}", cursor.column),
            )
        })?;
        let columns: Vec<arrow_array::ArrayRef> = (0..cursor.key.len())
            .map(|i| {
                let values = rows
                    .iter()
                    .map(|r| text(r, i))
                    .collect::<Result<Vec<Option<String>>>>()?;
                Ok(std::sync::Arc::new(arrow_array::StringArray::from(values))
                    as arrow_array::ArrayRef)
            })
            .collect::<Result<_>>()?;
        let seen = crate::model::row_fingerprints(&columns)?
            .into_iter()
            .map(crate::sources::sql::fingerprint_hex)
            .collect();
        Ok(Some(crate::Checkpoint::Watermark(
            crate::Watermark::with_seen(crate::CursorValue::Text(max), seen),
        )))
    }
}

/// A text column, by name or position. MySQL's TEXT types reach sqlx's Any driver as
/// BLOB, so bytes are accepted too (they must be UTF-8).
pub(crate) fn text<I>(r: &AnyRow, col: I) -> Result<Option<String>>
where
    I: sqlx::ColumnIndex<AnyRow> + std::fmt::Display + Copy,
{
    match r.try_get::<Option<String>, _>(col) {
        Ok(v) => Ok(v),
        Err(_) => {
            let bytes: Option<Vec<u8>> = r
                .try_get(col)
                .map_err(|e| sqlx_error("warehouse", e, &format!("decoding column {col}")))?;
            bytes
                .map(|b| {
                    String::from_utf8(b).map_err(|e| {
                        Error::type_error("warehouse", format!("column {col} is not UTF-8: {e}"))
                    })
                })
                .transpose()
        }
    }
}

/// An integer column of any width (databases disagree on the type of `COUNT(*)` and
/// of sums).
pub(crate) fn int(r: &AnyRow, name: &str) -> Result<i64> {
    r.try_get::<i64, _>(name)
        .or_else(|_| r.try_get::<i32, _>(name).map(i64::from))
        .or_else(|_| r.try_get::<f64, _>(name).map(|v| v as i64))
        .map_err(|e| sqlx_error("warehouse", e, &format!("decoding column {name}")))
}

fn text_required(r: &AnyRow, name: &str) -> Result<String> {
    text(r, name)?.ok_or_else(|| Error::type_error("warehouse", format!("column {name} is NULL")))
}

pub(crate) fn bind_err(e: sqlx::error::BoxDynError) -> Error {
    Error::type_error("warehouse", format!("binding a value: {e}"))
}

/// A UTC timestamp as the text the warehouse tables are written with.
pub(crate) fn ts_text(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

fn parse_ts(s: &str) -> Result<DateTime<Utc>> {
    chrono::NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M:%S%.f")
        .map(|n| n.and_utc())
        .map_err(|e| Error::type_error("warehouse", format!("bad timestamp {s:?} in history: {e}")))
}
