use crate::sources::sql::{Dialect, sqlx_error};
use crate::warehouse::{Warehouse, bind_err, int, text, ts_text};
use crate::{Error, Result};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Arguments, Row};

/// One DAG run, as kept in `dag_run_history`: the book's columns, keyed by
/// `(dag_id, run_id)` rather than Airflow's integer id (which Airflow 3's REST API does
/// not have), with the run's `updated_at` so late finishers are re-read.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct DagRun {
    /// DAG id.
    pub dag_id: String,
    /// Run id.
    pub run_id: String,
    /// Airflow 2's `execution_date` / Airflow 3's `logical_date`.
    pub execution_date: Option<DateTime<Utc>>,
    /// `queued`, `running`, `success`, `failed`, ...
    pub state: String,
    /// Whether it was triggered by hand or by the API.
    pub external_trigger: bool,
    /// Start.
    pub start_date: Option<DateTime<Utc>>,
    /// End.
    pub end_date: Option<DateTime<Utc>>,
    /// When Airflow last changed the run.
    pub updated_at: Option<DateTime<Utc>>,
}

impl DagRun {
    /// Run `run_id` of DAG `dag_id`, in `state`; no dates, not triggered by hand.
    pub fn new(
        dag_id: impl Into<String>,
        run_id: impl Into<String>,
        state: impl Into<String>,
    ) -> Self {
        DagRun {
            dag_id: dag_id.into(),
            run_id: run_id.into(),
            execution_date: None,
            state: state.into(),
            external_trigger: false,
            start_date: None,
            end_date: None,
            updated_at: None,
        }
    }

    /// Its `execution_date` (`logical_date`).
    pub fn with_execution_date(mut self, at: DateTime<Utc>) -> Self {
        self.execution_date = Some(at);
        self
    }

    /// Whether it was triggered by hand or by the API.
    pub fn with_external_trigger(mut self, yes: bool) -> Self {
        self.external_trigger = yes;
        self
    }

    /// When it started and, if it has, ended.
    pub fn with_dates(mut self, start: DateTime<Utc>, end: Option<DateTime<Utc>>) -> Self {
        self.start_date = Some(start);
        self.end_date = end;
        self
    }

    /// When Airflow last changed it.
    pub fn with_updated_at(mut self, at: DateTime<Utc>) -> Self {
        self.updated_at = Some(at);
        self
    }
}

fn day_expr(d: Dialect, col: &str) -> String {
    match d {
        Dialect::Postgres => format!("to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD')"),
        Dialect::MySql => format!("DATE_FORMAT({col}, '%Y-%m-%d')"),
        _ => format!("substr({col}, 1, 10)"),
    }
}

fn seconds_expr(d: Dialect, start: &str, end: &str) -> String {
    match d {
        Dialect::Postgres => format!("EXTRACT(EPOCH FROM ({end} - {start}))::float8"),
        Dialect::MySql => format!("TIMESTAMPDIFF(MICROSECOND, {start}, {end}) / 1e6"),
        _ => format!("(unixepoch({end}, 'subsec') - unixepoch({start}, 'subsec'))"),
    }
}

/// The book's `dag_history_daily`: per day (of the run's start, UTC), DAG and state, the
/// number of runs and their total runtime in seconds.
pub fn dag_history_daily_sql(d: Dialect) -> String {
    format!(
        "SELECT {day} AS run_date, dag_id, state, COUNT(*) AS runs, CAST(COALESCE(SUM({secs}), 0) AS DOUBLE PRECISION) AS runtime_seconds
         FROM dag_run_history WHERE start_date IS NOT NULL
         GROUP BY {day}, dag_id, state ORDER BY run_date, dag_id, state",
        day = day_expr(d, "start_date"),
        secs = seconds_expr(d, "start_date", "end_date")
    )
    .replace("DOUBLE PRECISION", if d == Dialect::MySql { "DOUBLE" } else { "DOUBLE PRECISION" })
}

/// The book's `validator_summary_daily`: per day, test (`script_1, script_2,
/// comp_operator`) and result, the number of tests.
pub fn validator_summary_daily_sql(d: Dialect) -> String {
    let result = if d == Dialect::MySql {
        "CAST(test_result AS SIGNED)"
    } else {
        "CAST(test_result AS INTEGER)"
    };
    format!(
        "SELECT {day} AS test_date, script_1, script_2, comp_operator, {result} AS test_result, COUNT(*) AS tests
         FROM validation_run_history
         GROUP BY {day}, script_1, script_2, comp_operator, {result} ORDER BY test_date, script_1, script_2",
        day = day_expr(d, "test_run_at"),
    )
}

/// A row of `dag_history_daily`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct DagDaily {
    /// Day (UTC).
    pub date: NaiveDate,
    /// DAG id.
    pub dag_id: String,
    /// Run state.
    pub state: String,
    /// Runs.
    pub runs: i64,
    /// Total runtime, seconds.
    pub runtime_seconds: f64,
}

/// A row of `validator_summary_daily`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ValidatorSummary {
    /// Day (UTC).
    pub date: NaiveDate,
    /// First script.
    pub script_1: Option<String>,
    /// Second script.
    pub script_2: Option<String>,
    /// Operator.
    pub comp_operator: Option<String>,
    /// Passed or failed.
    pub test_result: bool,
    /// Tests.
    pub tests: i64,
}

/// DAG success rate per day.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct DagSuccessRate {
    /// Day.
    pub date: NaiveDate,
    /// DAG id.
    pub dag_id: String,
    /// Finished runs (success or failed).
    pub finished: i64,
    /// Successful runs.
    pub succeeded: i64,
    /// `succeeded / finished`.
    pub success_rate: f64,
}

/// Average runtime per DAG per day, and its change from the same day a week before.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RuntimeTrend {
    /// Day.
    pub date: NaiveDate,
    /// DAG id.
    pub dag_id: String,
    /// Average runtime of the day's finished runs, seconds.
    pub avg_runtime_seconds: f64,
    /// `avg / avg seven days earlier - 1`, when that day had runs.
    pub week_over_week_change: Option<f64>,
}

/// Validation volume and success rate per day.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ValidationDaily {
    /// Day.
    pub date: NaiveDate,
    /// Tests run.
    pub tests: i64,
    /// Tests passed.
    pub passed: i64,
    /// `passed / tests`.
    pub success_rate: f64,
}

pub(crate) fn float(r: &AnyRow, name: &str) -> Result<f64> {
    r.try_get::<f64, _>(name)
        .or_else(|_| r.try_get::<i64, _>(name).map(|v| v as f64))
        .or_else(|_| r.try_get::<f32, _>(name).map(f64::from))
        .map_err(|e| sqlx_error("monitor", e, &format!("reading {name}")))
}

fn date(r: &AnyRow, name: &str) -> Result<NaiveDate> {
    let t =
        text(r, name)?.ok_or_else(|| Error::type_error("monitor", format!("{name} is NULL")))?;
    NaiveDate::parse_from_str(t.trim(), "%Y-%m-%d")
        .map_err(|e| Error::type_error("monitor", format!("{name} {t:?}: {e}")))
}

impl Warehouse {
    /// Create `dag_run_history` if missing.
    pub async fn ensure_dag_run_history(&self) -> Result<()> {
        let (ts, boolean) = match self.dialect() {
            Dialect::Postgres => ("TIMESTAMPTZ", "BOOLEAN"),
            Dialect::MySql => ("DATETIME(6)", "BOOLEAN"),
            _ => ("TEXT", "INTEGER"),
        };
        self.execute(&format!(
            "CREATE TABLE IF NOT EXISTS dag_run_history (
                dag_id VARCHAR(250) NOT NULL, run_id VARCHAR(250) NOT NULL, execution_date {ts} NULL,
                state VARCHAR(50) NOT NULL, external_trigger {boolean} NOT NULL, start_date {ts} NULL,
                end_date {ts} NULL, updated_at {ts} NULL, PRIMARY KEY (dag_id, run_id))"
        ))
        .await
        .map(|_| ())
    }

    /// Insert or update runs, keyed by `(dag_id, run_id)`: a run read while still
    /// running is updated when it is read again finished.
    pub async fn upsert_dag_runs(&self, runs: &[DagRun]) -> Result<u64> {
        self.ensure_dag_run_history().await?;
        let d = self.dialect();
        let p = |n: usize| match d {
            Dialect::Postgres => format!("CAST(${n} AS TIMESTAMPTZ)"),
            _ => d.placeholder(n),
        };
        let ph = |n: usize| d.placeholder(n);
        let values = format!(
            "({}, {}, {}, {}, {}, {}, {}, {})",
            ph(1),
            ph(2),
            p(3),
            ph(4),
            ph(5),
            p(6),
            p(7),
            p(8)
        );
        let cols = "dag_id, run_id, execution_date, state, external_trigger, start_date, end_date, updated_at";
        let sql = match d {
            Dialect::MySql => format!(
                "INSERT INTO dag_run_history ({cols}) VALUES {values} ON DUPLICATE KEY UPDATE execution_date = VALUES(execution_date),
                 state = VALUES(state), external_trigger = VALUES(external_trigger), start_date = VALUES(start_date),
                 end_date = VALUES(end_date), updated_at = VALUES(updated_at)"
            ),
            _ => format!(
                "INSERT INTO dag_run_history ({cols}) VALUES {values} ON CONFLICT (dag_id, run_id) DO UPDATE SET
                 execution_date = excluded.execution_date, state = excluded.state, external_trigger = excluded.external_trigger,
                 start_date = excluded.start_date, end_date = excluded.end_date, updated_at = excluded.updated_at"
            ),
        };
        let mut n = 0;
        for r in runs {
            let mut args = AnyArguments::default();
            args.add(r.dag_id.clone()).map_err(bind_err)?;
            args.add(r.run_id.clone()).map_err(bind_err)?;
            args.add(r.execution_date.map(ts_text)).map_err(bind_err)?;
            args.add(r.state.clone()).map_err(bind_err)?;
            args.add(r.external_trigger).map_err(bind_err)?;
            args.add(r.start_date.map(ts_text)).map_err(bind_err)?;
            args.add(r.end_date.map(ts_text)).map_err(bind_err)?;
            args.add(r.updated_at.map(ts_text)).map_err(bind_err)?;
            sqlx::query_with(&sql, args)
                .execute(self.pool())
                .await
                .map_err(|e| sqlx_error("monitor", e, "writing dag_run_history"))?;
            n += 1;
        }
        Ok(n)
    }

    /// The book's `dag_history_daily`, as typed rows.
    pub async fn dag_history_daily(&self) -> Result<Vec<DagDaily>> {
        self.ensure_dag_run_history().await?;
        let rows = sqlx::query(&dag_history_daily_sql(self.dialect()))
            .fetch_all(self.pool())
            .await
            .map_err(|e| sqlx_error("monitor", e, "running dag_history_daily"))?;
        rows.iter()
            .map(|r| {
                Ok(DagDaily {
                    date: date(r, "run_date")?,
                    dag_id: text(r, "dag_id")?.unwrap_or_default(),
                    state: text(r, "state")?.unwrap_or_default(),
                    runs: int(r, "runs")?,
                    runtime_seconds: float(r, "runtime_seconds")?,
                })
            })
            .collect()
    }

    /// The book's `validator_summary_daily`, as typed rows.
    pub async fn validator_summary_daily(&self) -> Result<Vec<ValidatorSummary>> {
        // The table exists once anything was recorded; an empty history reads as empty.
        let _ = self.validation_history(0).await?;
        let rows = sqlx::query(&validator_summary_daily_sql(self.dialect()))
            .fetch_all(self.pool())
            .await
            .map_err(|e| sqlx_error("monitor", e, "running validator_summary_daily"))?;
        rows.iter()
            .map(|r| {
                Ok(ValidatorSummary {
                    date: date(r, "test_date")?,
                    script_1: text(r, "script_1")?,
                    script_2: text(r, "script_2")?,
                    comp_operator: text(r, "comp_operator")?,
                    test_result: int(r, "test_result")? != 0,
                    tests: int(r, "tests")?,
                })
            })
            .collect()
    }

    /// DAG success rate per day (runs that finished, `success` or `failed`).
    pub async fn dag_success_rate(&self) -> Result<Vec<DagSuccessRate>> {
        Ok(success_rate(&self.dag_history_daily().await?))
    }

    /// Average runtime per DAG per day (runs that finished) and its week-over-week change.
    pub async fn runtime_trend(&self) -> Result<Vec<RuntimeTrend>> {
        Ok(runtime_trend(&self.dag_history_daily().await?))
    }

    /// Validation tests run and their success rate per day.
    pub async fn validation_daily(&self) -> Result<Vec<ValidationDaily>> {
        let mut out: Vec<ValidationDaily> = Vec::new();
        for s in self.validator_summary_daily().await? {
            let row = match out.iter_mut().find(|r| r.date == s.date) {
                Some(r) => r,
                None => {
                    out.push(ValidationDaily {
                        date: s.date,
                        tests: 0,
                        passed: 0,
                        success_rate: 0.0,
                    });
                    out.last_mut().expect("pushed")
                }
            };
            row.tests += s.tests;
            if s.test_result {
                row.passed += s.tests;
            }
            row.success_rate = row.passed as f64 / row.tests as f64;
        }
        Ok(out)
    }
}

/// Success rate per day and DAG from `dag_history_daily` rows.
pub(super) fn success_rate(daily: &[DagDaily]) -> Vec<DagSuccessRate> {
    let mut out: Vec<DagSuccessRate> = Vec::new();
    for d in daily {
        if d.state != "success" && d.state != "failed" {
            continue;
        }
        let row = match out
            .iter_mut()
            .find(|r| r.date == d.date && r.dag_id == d.dag_id)
        {
            Some(r) => r,
            None => {
                out.push(DagSuccessRate {
                    date: d.date,
                    dag_id: d.dag_id.clone(),
                    finished: 0,
                    succeeded: 0,
                    success_rate: 0.0,
                });
                out.last_mut().expect("pushed")
            }
        };
        row.finished += d.runs;
        if d.state == "success" {
            row.succeeded += d.runs;
        }
        row.success_rate = row.succeeded as f64 / row.finished as f64;
    }
    out
}

/// Average runtime per day and DAG, with the week-over-week change, from
/// `dag_history_daily` rows.
pub(super) fn runtime_trend(daily: &[DagDaily]) -> Vec<RuntimeTrend> {
    let mut acc: Vec<(NaiveDate, String, i64, f64)> = Vec::new();
    for d in daily
        .iter()
        .filter(|d| d.state == "success" || d.state == "failed")
    {
        match acc
            .iter_mut()
            .find(|(date, dag, ..)| *date == d.date && *dag == d.dag_id)
        {
            Some(a) => {
                a.2 += d.runs;
                a.3 += d.runtime_seconds;
            }
            None => acc.push((d.date, d.dag_id.clone(), d.runs, d.runtime_seconds)),
        }
    }
    let avgs: Vec<(NaiveDate, String, f64)> = acc
        .into_iter()
        .map(|(date, dag, n, secs)| (date, dag, secs / n.max(1) as f64))
        .collect();
    avgs.iter()
        .map(|(date, dag, avg)| {
            let week_ago = *date - chrono::Duration::days(7);
            let prev = avgs
                .iter()
                .find(|(d, g, a)| *d == week_ago && g == dag && *a > 0.0)
                .map(|(_, _, a)| *a);
            RuntimeTrend {
                date: *date,
                dag_id: dag.clone(),
                avg_runtime_seconds: *avg,
                week_over_week_change: prev.map(|p| avg / p - 1.0),
            }
        })
        .collect()
}
