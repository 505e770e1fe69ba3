//! Airflow's DAG run history into `dag_run_history`, from Airflow's metadata database or
//! its REST API (v2 for Airflow 3, v1 for Airflow 2).
//!
//! Runs are keyed by `(dag_id, run_id)` and read with a closed bound on the time Airflow
//! last changed them, so a run read while `queued` or `running` is read again when it
//! finishes and updated in place. The book's `id > last_id AND state <> 'running'` loses
//! runs that finish after a later run started; this does not.

use super::DagRun;
use crate::RetryPolicy;
use crate::sources::rest::{Auth, RestExtractor, RestSource};
use crate::sources::sql::{Dialect, sqlx_error};
use crate::warehouse::Warehouse;
use crate::{Error, Result, Secret};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::Row;

/// Where the runs come from.
#[derive(Debug, Clone)]
pub enum AirflowRuns {
    /// Airflow's metadata database (table `dag_run`).
    MetadataDb(Warehouse),
    /// Airflow's REST API.
    RestApi {
        /// e.g. `http://localhost:8080`.
        base_url: String,
        /// API version.
        version: ApiVersion,
        /// User name.
        username: String,
        /// Password.
        password: Secret,
        /// Retries of 5xx and network errors.
        retry: RetryPolicy,
        /// Runs per page (Airflow caps it at 100).
        page_size: u32,
    },
}

/// The Airflow REST API version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiVersion {
    /// `/api/v1`, Airflow 2: basic auth, `execution_date`.
    V1,
    /// `/api/v2`, Airflow 3: a JWT from `/auth/token`, `logical_date`.
    V2,
}

/// What a sync did.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct SyncReport {
    /// Runs read and upserted.
    pub runs: u64,
    /// The lower bound used (`None`: everything).
    pub since: Option<DateTime<Utc>>,
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%#z"))
        .map(|d| d.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
                .ok()
                .map(|n| n.and_utc())
        })
}

fn s(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_string)
}

impl AirflowRuns {
    /// Connect to the Airflow metadata database at `url` (PostgreSQL or MySQL) and read
    /// `dag_run` from it.
    pub async fn connect_metadata_db(url: &str) -> Result<Self> {
        Ok(AirflowRuns::MetadataDb(Warehouse::connect(url).await?))
    }

    /// Read through the REST API at `base_url`.
    pub fn rest_api(base_url: &str, version: ApiVersion, username: &str, password: Secret) -> Self {
        AirflowRuns::RestApi {
            base_url: base_url.trim_end_matches('/').to_string(),
            version,
            username: username.to_string(),
            password,
            retry: RetryPolicy::default(),
            page_size: 100,
        }
    }

    /// Runs per request (1 to 100; default 100).
    pub fn with_page_size(self, n: u32) -> Self {
        match self {
            AirflowRuns::RestApi {
                base_url,
                version,
                username,
                password,
                retry,
                ..
            } => AirflowRuns::RestApi {
                base_url,
                version,
                username,
                password,
                retry,
                page_size: n.clamp(1, 100),
            },
            other => other,
        }
    }

    /// The retry policy for the API (5xx, 429, network errors).
    pub fn with_retry(self, policy: RetryPolicy) -> Self {
        match self {
            AirflowRuns::RestApi {
                base_url,
                version,
                username,
                password,
                page_size,
                ..
            } => AirflowRuns::RestApi {
                base_url,
                version,
                username,
                password,
                retry: policy,
                page_size,
            },
            other => other,
        }
    }

    /// Copy the runs changed since the newest one already in `wh`'s `dag_run_history`
    /// (all runs the first time) into it.
    pub async fn sync(&self, wh: &Warehouse) -> Result<SyncReport> {
        wh.ensure_dag_run_history().await?;
        let since = latest_update(wh).await?;
        let runs = match self {
            AirflowRuns::MetadataDb(db) => read_db(db, since).await?,
            AirflowRuns::RestApi {
                base_url,
                version,
                username,
                password,
                retry,
                page_size,
            } => {
                read_api(
                    base_url, *version, username, password, retry, *page_size, since,
                )
                .await?
            }
        };
        let n = wh.upsert_dag_runs(&runs).await?;
        Ok(SyncReport { runs: n, since })
    }
}

async fn latest_update(wh: &Warehouse) -> Result<Option<DateTime<Utc>>> {
    let expr = match wh.dialect() {
        Dialect::Postgres => {
            "to_char(MAX(updated_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"
        }
        Dialect::MySql => "DATE_FORMAT(MAX(updated_at), '%Y-%m-%d %H:%i:%s.%f')",
        _ => "MAX(updated_at)",
    };
    let row = sqlx::query(&format!("SELECT {expr} AS m FROM dag_run_history"))
        .fetch_one(wh.pool())
        .await
        .map_err(|e| sqlx_error("airflow", e, "reading the last update in dag_run_history"))?;
    let m: Option<String> = row.try_get("m").ok().flatten();
    Ok(m.as_deref().and_then(parse_time))
}

async fn read_db(db: &Warehouse, since: Option<DateTime<Utc>>) -> Result<Vec<DagRun>> {
    // Airflow 3 renamed execution_date to logical_date and dropped external_trigger.
    // `column_name` is PostgreSQL's `name` type, which sqlx's Any driver cannot read.
    let cast = if db.dialect() == Dialect::MySql {
        "CHAR"
    } else {
        "TEXT"
    };
    let cols: Vec<String> = sqlx::query(&format!(
        "SELECT CAST(column_name AS {cast}) AS c FROM information_schema.columns WHERE table_name = 'dag_run'"
    ))
    .fetch_all(db.pool())
    .await
    .map_err(|e| sqlx_error("airflow", e, "reading the columns of dag_run"))?
    .iter()
    .filter_map(|r| r.try_get::<String, _>("c").ok())
    .collect();
    if cols.is_empty() {
        return Err(Error::NotFound {
            component: "airflow".into(),
            message: "no table dag_run in the metadata database (is this Airflow's database?)"
                .into(),
            source: None,
        });
    }
    let has = |c: &str| cols.iter().any(|x| x == c);
    let date_col = if has("logical_date") {
        "logical_date"
    } else {
        "execution_date"
    };
    let manual = if has("external_trigger") {
        "external_trigger".to_string()
    } else {
        "(run_type = 'manual')".to_string()
    };
    let d = db.dialect();
    let txt = |c: &str| match d {
        Dialect::Postgres => format!("to_char({c} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"),
        _ => format!("DATE_FORMAT({c}, '%Y-%m-%d %H:%i:%s.%f')"),
    };
    let bound = match (since, d) {
        (Some(t), Dialect::Postgres) => format!(
            "WHERE updated_at >= '{}'::timestamptz",
            t.format("%Y-%m-%d %H:%M:%S%.6f+00")
        ),
        (Some(t), _) => format!(
            "WHERE updated_at >= '{}'",
            t.format("%Y-%m-%d %H:%M:%S%.6f")
        ),
        (None, _) => String::new(),
    };
    let sql = format!(
        "SELECT dag_id, run_id, {} AS logical, state, CASE WHEN {manual} THEN 1 ELSE 0 END AS manual, {} AS started,
                {} AS ended, {} AS updated FROM dag_run {bound} ORDER BY updated_at",
        txt(date_col),
        txt("start_date"),
        txt("end_date"),
        txt("updated_at")
    );
    let rows = sqlx::query(&sql)
        .fetch_all(db.pool())
        .await
        .map_err(|e| sqlx_error("airflow", e, "reading dag_run"))?;
    rows.iter()
        .map(|r| {
            let t = |c: &str| {
                r.try_get::<Option<String>, _>(c)
                    .ok()
                    .flatten()
                    .as_deref()
                    .and_then(parse_time)
            };
            let g = |e: sqlx::Error| sqlx_error("airflow", e, "decoding dag_run");
            Ok(DagRun {
                dag_id: r.try_get("dag_id").map_err(g)?,
                run_id: r.try_get("run_id").map_err(g)?,
                execution_date: t("logical"),
                state: r
                    .try_get::<Option<String>, _>("state")
                    .map_err(g)?
                    .unwrap_or_default(),
                external_trigger: r
                    .try_get::<i32, _>("manual")
                    .map(|v| v != 0)
                    .or_else(|_| r.try_get::<i64, _>("manual").map(|v| v != 0))
                    .map_err(g)?,
                start_date: t("started"),
                end_date: t("ended"),
                updated_at: t("updated"),
            })
        })
        .collect()
}

async fn read_api(
    base: &str,
    version: ApiVersion,
    username: &str,
    password: &Secret,
    retry: &RetryPolicy,
    page_size: u32,
    since: Option<DateTime<Utc>>,
) -> Result<Vec<DagRun>> {
    let (prefix, auth) = match version {
        ApiVersion::V1 => (
            "/api/v1",
            Auth::Basic {
                user: username.to_string(),
                password: password.clone(),
            },
        ),
        ApiVersion::V2 => {
            let token_client = RestExtractor::new(
                RestSource::post(
                    format!("{base}/auth/token"),
                    serde_json::json!({"username": username, "password": password.expose()}),
                )
                .with_retry(retry.clone()),
            )?;
            let v = token_client
                .fetch_json(&format!("{base}/auth/token"), &[])
                .await?;
            let token = s(&v, "access_token").ok_or_else(|| {
                Error::type_error(
                    "airflow",
                    format!("{base}/auth/token answered without access_token"),
                )
            })?;
            ("/api/v2", Auth::Bearer(Secret::new(token)))
        }
    };
    let url = format!("{base}{prefix}/dags/~/dagRuns");
    let client = RestExtractor::new(RestSource::get(&url).auth(auth).with_retry(retry.clone()))?;
    // The API has no updated_at in its answers: a run read now is known as of now.
    let read_at = Utc::now();
    let mut out = Vec::new();
    let mut offset = 0u64;
    loop {
        let mut q = vec![
            ("limit".to_string(), page_size.to_string()),
            ("offset".to_string(), offset.to_string()),
        ];
        if let Some(t) = since {
            q.push((
                "updated_at_gte".to_string(),
                t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
            ));
        }
        let page = client.fetch_json(&url, &q).await?;
        let runs = page
            .get("dag_runs")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                Error::type_error(
                    "airflow",
                    format!(
                        "{url} answered without dag_runs: {}",
                        page.to_string().chars().take(200).collect::<String>()
                    ),
                )
            })?;
        for r in runs {
            out.push(DagRun {
                dag_id: s(r, "dag_id").unwrap_or_default(),
                run_id: s(r, "dag_run_id").unwrap_or_default(),
                execution_date: s(r, "logical_date")
                    .or_else(|| s(r, "execution_date"))
                    .as_deref()
                    .and_then(parse_time),
                state: s(r, "state").unwrap_or_default(),
                external_trigger: r
                    .get("external_trigger")
                    .and_then(Value::as_bool)
                    .unwrap_or_else(|| s(r, "run_type").as_deref() == Some("manual")),
                start_date: s(r, "start_date").as_deref().and_then(parse_time),
                end_date: s(r, "end_date").as_deref().and_then(parse_time),
                updated_at: s(r, "updated_at")
                    .as_deref()
                    .and_then(parse_time)
                    .or(Some(read_at)),
            });
        }
        let total = page
            .get("total_entries")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        offset += runs.len() as u64;
        if runs.is_empty() || offset >= total {
            break;
        }
    }
    Ok(out)
}
