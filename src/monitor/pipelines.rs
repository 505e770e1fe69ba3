//! tributary's own runs per pipeline and day, from `pipeline_run_history`.

use crate::Result;
use crate::sources::sql::{Dialect, sqlx_error};
use crate::warehouse::{Warehouse, int, text};
use chrono::NaiveDate;
use serde::Serialize;

/// One pipeline's runs on one day (of their start, UTC).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct PipelineDaily {
    /// Day.
    pub date: NaiveDate,
    /// Pipeline name.
    pub pipeline: String,
    /// Runs started that day.
    pub runs: i64,
    /// Of which failed.
    pub failures: i64,
    /// Rows committed by them.
    pub rows: i64,
    /// Their average duration, seconds.
    pub avg_duration_seconds: f64,
}

/// Per day (of the run's start, UTC) and pipeline: runs, failed runs, rows committed and
/// the average duration in seconds.
///
/// ```
/// use tributary::monitor::pipeline_runs_daily_sql;
/// use tributary::sources::sql::Dialect;
/// assert!(pipeline_runs_daily_sql(Dialect::Postgres).contains("FROM pipeline_run_history"));
/// ```
pub fn pipeline_runs_daily_sql(d: Dialect) -> String {
    let day = match d {
        Dialect::Postgres => "to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')".to_string(),
        Dialect::MySql => "DATE_FORMAT(started_at, '%Y-%m-%d')".to_string(),
        _ => "substr(started_at, 1, 10)".to_string(),
    };
    let float = if d == Dialect::MySql {
        "DOUBLE"
    } else {
        "DOUBLE PRECISION"
    };
    format!(
        "SELECT {day} AS run_date, pipeline, COUNT(*) AS runs, \
         SUM(CASE WHEN outcome = 'failed' THEN 1 ELSE 0 END) AS failures, \
         CAST(SUM(rows_written) AS BIGINT) AS rows_written, \
         CAST(AVG(duration_ms) / 1000.0 AS {float}) AS avg_seconds \
         FROM pipeline_run_history GROUP BY {day}, pipeline ORDER BY run_date, pipeline"
    )
    .replace(
        "AS BIGINT",
        if d == Dialect::MySql {
            "AS SIGNED"
        } else {
            "AS BIGINT"
        },
    )
}

impl Warehouse {
    /// [`pipeline_runs_daily_sql`] as typed rows (empty when nothing ran yet).
    pub async fn pipeline_daily(&self) -> Result<Vec<PipelineDaily>> {
        // Creates the table when missing, so an empty history reads as empty.
        let _ = self.run_history(None, 1).await?;
        let rows = sqlx::query(&pipeline_runs_daily_sql(self.dialect()))
            .fetch_all(self.pool())
            .await
            .map_err(|e| sqlx_error("monitor", e, "running pipeline_runs_daily"))?;
        rows.iter()
            .map(|r| {
                let day = text(r, "run_date")?.unwrap_or_default();
                Ok(PipelineDaily {
                    date: NaiveDate::parse_from_str(day.trim(), "%Y-%m-%d").map_err(|e| {
                        crate::Error::type_error("monitor", format!("run_date {day:?}: {e}"))
                    })?,
                    pipeline: text(r, "pipeline")?.unwrap_or_default(),
                    runs: int(r, "runs")?,
                    failures: int(r, "failures")?,
                    rows: int(r, "rows_written")?,
                    avg_duration_seconds: super::models::float(r, "avg_seconds")?,
                })
            })
            .collect()
    }
}
