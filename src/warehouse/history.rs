//! Run and validation history: `pipeline_run_history` ([`SqlRunLog`], [`RunRecord`])
//! and `validation_run_history` ([`ValidationRecord`]).

use super::{Warehouse, bind_err, int, parse_ts, text, text_required, ts_text};
use crate::pipeline::{RunLog, RunReport};
use crate::sources::sql::{Dialect, sqlx_error};
use crate::{Error, Result};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Arguments, Row};

impl Warehouse {
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
    pub(super) wh: Warehouse,
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
