//! The warehouse: a SQL database (PostgreSQL, MySQL/MariaDB or SQLite, any sqlx URL)
//! where tributary keeps checkpoints ([`SqlStateStore`]) and run history
//! ([`SqlRunLog`], table `pipeline_run_history`).
//!
//! Tables are created on first use. Timestamps are stored in UTC: `TIMESTAMPTZ` on
//! PostgreSQL, `DATETIME(6)` on MySQL, ISO 8601 text on SQLite.

use crate::pipeline::{RunLog, RunReport};
use crate::sources::sql::{Dialect, sqlx_error};
use crate::stores::{PipelineState, StateStore, Versioned};
use crate::{Error, Result};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
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

    /// A [`StateStore`] keeping checkpoints in table `tributary_state`.
    pub fn state_store(&self) -> SqlStateStore {
        SqlStateStore { wh: self.clone() }
    }

    /// A [`RunLog`] appending to table `pipeline_run_history`.
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

    async fn ensure_history(&self) -> Result<()> {
        let ts = self.ts_type();
        let text = if self.dialect() == Dialect::MySql {
            "LONGTEXT"
        } else {
            "TEXT"
        };
        self.ensure(
            &self.inner.history_table,
            format!(
                "CREATE TABLE IF NOT EXISTS pipeline_run_history (
                    run_id VARCHAR(200) NOT NULL, pipeline VARCHAR(255) NOT NULL,
                    source VARCHAR(100) NOT NULL, stream VARCHAR(255) NOT NULL, sink VARCHAR(1000) NOT NULL,
                    started_at {ts} NOT NULL, finished_at {ts} NOT NULL, duration_ms BIGINT NOT NULL,
                    outcome VARCHAR(20) NOT NULL, attempts INTEGER NOT NULL,
                    rows_written BIGINT NOT NULL, bytes_written BIGINT NOT NULL, objects INTEGER NOT NULL,
                    checkpoint_from {text}, checkpoint_to {text}, manifest VARCHAR(1000), error {text})"
            ),
        )
        .await
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

    async fn ensure_validation(&self) -> Result<()> {
        let (ts, boolean) = match self.dialect() {
            Dialect::Postgres => ("TIMESTAMPTZ", "BOOLEAN"),
            Dialect::MySql => ("DATETIME(6)", "BOOLEAN"),
            _ => ("TEXT", "INTEGER"),
        };
        self.ensure(
            &self.inner.validation_table,
            format!(
                "CREATE TABLE IF NOT EXISTS validation_run_history (
                    script_1 TEXT, script_2 TEXT, comp_operator VARCHAR(32), test_result {boolean} NOT NULL,
                    test_run_at {ts} NOT NULL, validator VARCHAR(1000) NOT NULL, left_value TEXT, right_value TEXT,
                    severity VARCHAR(10) NOT NULL, duration_ms BIGINT NOT NULL, error TEXT)"
            ),
        )
        .await
    }

    /// Append one validation result to `validation_run_history` (created if missing),
    /// with the book's columns (`script_1, script_2, comp_operator, test_result,
    /// test_run_at`) plus both compared values, the severity, the duration and, for a
    /// check that could not run, its error.
    pub async fn record_validation(
        &self,
        o: &crate::ValidationOutcome,
        error: Option<&Error>,
    ) -> Result<()> {
        self.ensure_validation().await?;
        let mut args = AnyArguments::default();
        args.add(o.script_1.clone()).map_err(bind_err)?;
        args.add(o.script_2.clone()).map_err(bind_err)?;
        args.add(o.operator.clone()).map_err(bind_err)?;
        args.add(o.passed && error.is_none()).map_err(bind_err)?;
        args.add(ts_text(o.started_at)).map_err(bind_err)?;
        args.add(o.name.clone()).map_err(bind_err)?;
        args.add(o.left.clone()).map_err(bind_err)?;
        args.add(o.right.clone()).map_err(bind_err)?;
        args.add(o.severity.as_str().to_string())
            .map_err(bind_err)?;
        args.add(o.duration.as_millis() as i64).map_err(bind_err)?;
        args.add(error.map(|e| e.to_string())).map_err(bind_err)?;
        let params: Vec<String> = (1..=11)
            .map(|n| if n == 5 { self.ts_param(n) } else { self.ph(n) })
            .collect();
        let sql = format!(
            "INSERT INTO validation_run_history (script_1, script_2, comp_operator, test_result, test_run_at, validator,
                left_value, right_value, severity, duration_ms, error) VALUES ({})",
            params.join(", ")
        );
        sqlx::query_with(&sql, args)
            .execute(self.pool())
            .await
            .map_err(|e| sqlx_error("warehouse", e, "appending to validation_run_history"))?;
        Ok(())
    }

    /// The most recent validation results, newest first.
    pub async fn validation_history(&self, limit: u32) -> Result<Vec<ValidationRecord>> {
        self.ensure_validation().await?;
        let sql = format!(
            "SELECT script_1, script_2, comp_operator, {} AS test_result, {} AS test_run_at, validator, left_value,
                    right_value, severity, duration_ms, error
             FROM validation_run_history ORDER BY test_run_at DESC LIMIT {limit}",
            // sqlx's Any driver cannot read MySQL's TINYINT (BOOLEAN).
            if self.dialect() == Dialect::MySql { "CAST(test_result AS SIGNED)" } else { "test_result" },
            self.ts_select("test_run_at")
        );
        let rows = sqlx::query(&sql)
            .fetch_all(self.pool())
            .await
            .map_err(|e| sqlx_error("warehouse", e, "reading validation_run_history"))?;
        rows.iter()
            .map(|r| {
                let g =
                    |e: sqlx::Error| sqlx_error("warehouse", e, "decoding validation_run_history");
                let passed = r
                    .try_get::<bool, _>("test_result")
                    .or_else(|_| r.try_get::<i64, _>("test_result").map(|v| v != 0))
                    .or_else(|_| r.try_get::<i32, _>("test_result").map(|v| v != 0))
                    .or_else(|_| r.try_get::<i16, _>("test_result").map(|v| v != 0))
                    .map_err(g)?;
                Ok(ValidationRecord {
                    script_1: text(r, "script_1")?,
                    script_2: text(r, "script_2")?,
                    comp_operator: text(r, "comp_operator")?,
                    test_result: passed,
                    test_run_at: parse_ts(&text_required(r, "test_run_at")?)?,
                    validator: text_required(r, "validator")?,
                    left_value: text(r, "left_value")?,
                    right_value: text(r, "right_value")?,
                    severity: text_required(r, "severity")?,
                    duration_ms: r.try_get::<i64, _>("duration_ms").map_err(g)?,
                    error: text(r, "error")?,
                })
            })
            .collect()
    }

    /// The most recent runs, newest first, optionally of one pipeline.
    pub async fn run_history(&self, pipeline: Option<&str>, limit: u32) -> Result<Vec<RunRecord>> {
        self.ensure_history().await?;
        let mut args = AnyArguments::default();
        let filter = match pipeline {
            Some(p) => {
                args.add(p.to_string()).map_err(bind_err)?;
                format!("WHERE pipeline = {}", self.ph(1))
            }
            None => String::new(),
        };
        let sql = format!(
            "SELECT run_id, pipeline, source, stream, sink, {} AS started_at, {} AS finished_at, duration_ms,
                    outcome, attempts, rows_written, bytes_written, objects, checkpoint_from, checkpoint_to,
                    manifest, error
             FROM pipeline_run_history {filter} ORDER BY started_at DESC, finished_at DESC LIMIT {limit}",
            self.ts_select("started_at"),
            self.ts_select("finished_at"),
        );
        let rows = sqlx::query_with(&sql, args)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(|e| sqlx_error("warehouse", e, "reading pipeline_run_history"))?;
        rows.iter().map(RunRecord::from_row).collect()
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

/// One row of `validation_run_history`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ValidationRecord {
    /// The first script (or the check's query).
    pub script_1: Option<String>,
    /// The second script (or the expected value).
    pub script_2: Option<String>,
    /// The operator.
    pub comp_operator: Option<String>,
    /// Whether it passed.
    pub test_result: bool,
    /// When it ran (UTC).
    pub test_run_at: DateTime<Utc>,
    /// The check's name.
    pub validator: String,
    /// The left value compared.
    pub left_value: Option<String>,
    /// The right value compared.
    pub right_value: Option<String>,
    /// `halt` or `warn`.
    pub severity: String,
    /// How long it took.
    pub duration_ms: i64,
    /// Why it could not run, if it could not.
    pub error: Option<String>,
}

/// One row of `pipeline_run_history`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RunRecord {
    /// Run id.
    pub run_id: String,
    /// Pipeline name.
    pub pipeline: String,
    /// Source.
    pub source: String,
    /// Stream.
    pub stream: String,
    /// Sink description.
    pub sink: String,
    /// Start (UTC).
    pub started_at: DateTime<Utc>,
    /// End (UTC).
    pub finished_at: DateTime<Utc>,
    /// Duration in milliseconds.
    pub duration_ms: i64,
    /// `succeeded`, `failed` or `cancelled`.
    pub outcome: String,
    /// Attempts made.
    pub attempts: i64,
    /// Rows committed.
    pub rows: i64,
    /// Bytes committed.
    pub bytes: i64,
    /// Objects committed.
    pub objects: i64,
    /// Checkpoint at the start, as JSON.
    pub checkpoint_from: Option<String>,
    /// Checkpoint at the end, as JSON.
    pub checkpoint_to: Option<String>,
    /// Manifest key.
    pub manifest: Option<String>,
    /// Error message of a failed run.
    pub error: Option<String>,
}

impl RunRecord {
    fn from_row(r: &AnyRow) -> Result<Self> {
        let int = |name: &str| int(r, name);
        Ok(RunRecord {
            run_id: text_required(r, "run_id")?,
            pipeline: text_required(r, "pipeline")?,
            source: text_required(r, "source")?,
            stream: text_required(r, "stream")?,
            sink: text_required(r, "sink")?,
            started_at: parse_ts(&text_required(r, "started_at")?)?,
            finished_at: parse_ts(&text_required(r, "finished_at")?)?,
            duration_ms: int("duration_ms")?,
            outcome: text_required(r, "outcome")?,
            attempts: int("attempts")?,
            rows: int("rows_written")?,
            bytes: int("bytes_written")?,
            objects: int("objects")?,
            checkpoint_from: text(r, "checkpoint_from")?,
            checkpoint_to: text(r, "checkpoint_to")?,
            manifest: text(r, "manifest")?,
            error: text(r, "error")?,
        })
    }
}

/// Appends every run, failures included, to `pipeline_run_history`.
#[derive(Debug, Clone)]
pub struct SqlRunLog {
    wh: Warehouse,
}

#[async_trait]
impl RunLog for SqlRunLog {
    async fn append(&self, r: &RunReport) -> Result<()> {
        let wh = &self.wh;
        wh.ensure_history().await?;
        let json = |c: &Option<crate::Checkpoint>| c.as_ref().map(|c| c.summary().to_string());
        let mut args = AnyArguments::default();
        args.add(r.run_id.clone()).map_err(bind_err)?;
        args.add(r.pipeline.clone()).map_err(bind_err)?;
        args.add(r.source.clone()).map_err(bind_err)?;
        args.add(r.stream.clone()).map_err(bind_err)?;
        args.add(r.sink.clone()).map_err(bind_err)?;
        args.add(ts_text(r.started_at)).map_err(bind_err)?;
        args.add(ts_text(r.finished_at)).map_err(bind_err)?;
        args.add(r.duration.as_millis() as i64).map_err(bind_err)?;
        args.add(r.outcome.as_str().to_string()).map_err(bind_err)?;
        args.add(r.attempts as i32).map_err(bind_err)?;
        args.add(r.rows as i64).map_err(bind_err)?;
        args.add(r.bytes as i64).map_err(bind_err)?;
        args.add(r.objects.len() as i32).map_err(bind_err)?;
        args.add(json(&r.checkpoint_from)).map_err(bind_err)?;
        args.add(json(&r.checkpoint_to)).map_err(bind_err)?;
        args.add(r.manifest.clone()).map_err(bind_err)?;
        args.add(r.error_message.clone()).map_err(bind_err)?;
        let params: Vec<String> = (1..=17)
            .map(|n| {
                if n == 6 || n == 7 {
                    wh.ts_param(n)
                } else {
                    wh.ph(n)
                }
            })
            .collect();
        let sql = format!(
            "INSERT INTO pipeline_run_history (run_id, pipeline, source, stream, sink, started_at, finished_at,
                duration_ms, outcome, attempts, rows_written, bytes_written, objects, checkpoint_from,
                checkpoint_to, manifest, error) VALUES ({})",
            params.join(", ")
        );
        sqlx::query_with(&sql, args)
            .execute(wh.pool())
            .await
            .map_err(|e| sqlx_error("warehouse", e, "appending to pipeline_run_history"))?;
        Ok(())
    }
}

/// Keeps checkpoints in table `tributary_state`, one row per pipeline with a version
/// column for conditional updates.
#[derive(Debug, Clone)]
pub struct SqlStateStore {
    wh: Warehouse,
}

impl SqlStateStore {
    async fn ensure(&self) -> Result<()> {
        let text = if self.wh.dialect() == Dialect::MySql {
            "LONGTEXT"
        } else {
            "TEXT"
        };
        self.wh
            .ensure(
                &self.wh.inner.state_table,
                format!(
                    "CREATE TABLE IF NOT EXISTS tributary_state (pipeline VARCHAR(255) NOT NULL PRIMARY KEY,
                        version BIGINT NOT NULL, state {text} NOT NULL, updated_at VARCHAR(40) NOT NULL)"
                ),
            )
            .await
    }
}

#[async_trait]
impl StateStore for SqlStateStore {
    fn describe(&self) -> String {
        format!("{} (table tributary_state)", self.wh.describe())
    }

    async fn load(&self, pipeline: &str) -> Result<Option<Versioned<PipelineState>>> {
        self.ensure().await?;
        let mut args = AnyArguments::default();
        args.add(pipeline.to_string()).map_err(bind_err)?;
        let sql = format!(
            "SELECT version, state FROM tributary_state WHERE pipeline = {}",
            self.wh.ph(1)
        );
        let row = sqlx::query_with(&sql, args)
            .fetch_optional(self.wh.pool())
            .await
            .map_err(|e| sqlx_error("warehouse", e, "reading tributary_state"))?;
        let Some(row) = row else { return Ok(None) };
        let g = |e: sqlx::Error| sqlx_error("warehouse", e, "decoding tributary_state");
        let version: i64 = row.try_get("version").map_err(g)?;
        let state = text_required(&row, "state")?;
        let value = serde_json::from_str(&state).map_err(|e| {
            Error::type_error(
                "state",
                format!("state of pipeline {pipeline:?} is not valid: {e}"),
            )
        })?;
        Ok(Some(Versioned {
            version: version as u64,
            value,
        }))
    }

    async fn save(
        &self,
        pipeline: &str,
        expected: Option<u64>,
        state: &PipelineState,
    ) -> Result<u64> {
        self.ensure().await?;
        let body = serde_json::to_string(state).expect("state serializes");
        let now = state.updated_at.to_rfc3339();
        let ph = |n| self.wh.ph(n);
        let conflict = |version: u64| Error::Conflict {
            component: "state".into(),
            message: format!(
                "state of pipeline {pipeline:?} was saved by another runner (expected version {version}); reload and retry"
            ),
        };
        match expected {
            None => {
                let mut args = AnyArguments::default();
                args.add(pipeline.to_string()).map_err(bind_err)?;
                args.add(body).map_err(bind_err)?;
                args.add(now).map_err(bind_err)?;
                let sql = format!(
                    "INSERT INTO tributary_state (pipeline, version, state, updated_at) VALUES ({}, 1, {}, {})",
                    ph(1),
                    ph(2),
                    ph(3)
                );
                match sqlx::query_with(&sql, args).execute(self.wh.pool()).await {
                    Ok(_) => Ok(1),
                    Err(sqlx::Error::Database(db)) if db.is_unique_violation() => Err(conflict(0)),
                    Err(e) => Err(sqlx_error("warehouse", e, "writing tributary_state")),
                }
            }
            Some(v) => {
                let mut args = AnyArguments::default();
                args.add(body).map_err(bind_err)?;
                args.add(now).map_err(bind_err)?;
                args.add(pipeline.to_string()).map_err(bind_err)?;
                args.add(v as i64).map_err(bind_err)?;
                let sql = format!(
                    "UPDATE tributary_state SET version = version + 1, state = {}, updated_at = {}
                     WHERE pipeline = {} AND version = {}",
                    ph(1),
                    ph(2),
                    ph(3),
                    ph(4)
                );
                let r = sqlx::query_with(&sql, args)
                    .execute(self.wh.pool())
                    .await
                    .map_err(|e| sqlx_error("warehouse", e, "writing tributary_state"))?;
                if r.rows_affected() == 1 {
                    Ok(v + 1)
                } else {
                    Err(conflict(v))
                }
            }
        }
    }

    async fn delete(&self, pipeline: &str) -> Result<()> {
        self.ensure().await?;
        let mut args = AnyArguments::default();
        args.add(pipeline.to_string()).map_err(bind_err)?;
        let sql = format!(
            "DELETE FROM tributary_state WHERE pipeline = {}",
            self.wh.ph(1)
        );
        sqlx::query_with(&sql, args)
            .execute(self.wh.pool())
            .await
            .map_err(|e| sqlx_error("warehouse", e, "deleting from tributary_state"))?;
        Ok(())
    }
}
