//! DAG run history from a real Airflow 3 (installed from PyPI by scripts/services.sh):
//! its metadata database and its REST API v2.

use crate::common;

use sqlx::{Connection, Executor};
use tributary::monitor::airflow::{AirflowRuns, ApiVersion};
use tributary::warehouse::Warehouse;
use tributary::{Error, Secret};

struct Airflow {
    db: String,
    api: String,
    user: String,
    password: String,
}

fn airflow() -> Option<Airflow> {
    Some(Airflow {
        db: common::service("TRIBUTARY_TEST_AIRFLOW_DB_URL", "Airflow metadata database")?,
        api: common::service("TRIBUTARY_TEST_AIRFLOW_API", "Airflow API server")?,
        user: std::env::var("TRIBUTARY_TEST_AIRFLOW_USER").unwrap_or_else(|_| "admin".into()),
        password: std::env::var("TRIBUTARY_TEST_AIRFLOW_PASSWORD")
            .unwrap_or_else(|_| "admin".into()),
    })
}

/// The tests of this file share one Airflow: one of them triggers a new DAG run, which the
/// others would see appear between two syncs. They take turns.
static AIRFLOW: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn count(wh: &Warehouse, sql: &str) -> i64 {
    let v = tributary::validate::first_cell(wh, sql, "count")
        .await
        .unwrap();
    v.text().parse().unwrap()
}

async fn trigger(a: &Airflow, dag: &str) -> String {
    let client = reqwest::Client::new();
    let token: serde_json::Value = client
        .post(format!("{}/auth/token", a.api))
        .json(&serde_json::json!({"username": a.user, "password": a.password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let run: serde_json::Value = client
        .post(format!("{}/api/v2/dags/{dag}/dagRuns", a.api))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .json(&serde_json::json!({"logical_date": null}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    run["dag_run_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn from_the_metadata_database_late_finishers_included() {
    let Some(a) = airflow() else { return };
    let _turn = AIRFLOW.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::connect(&format!("sqlite://{}/wh.db", dir.path().display()))
        .await
        .unwrap();
    let source = AirflowRuns::connect_metadata_db(&a.db).await.unwrap();
    let first = source.sync(&wh).await.unwrap();
    assert!(first.runs >= 2 && first.since.is_none(), "{first:?}");
    let ok = count(
        &wh,
        "SELECT COUNT(*) FROM dag_run_history WHERE dag_id = 'tributary_ok' AND state = 'success'",
    )
    .await;
    let failed = count(
        &wh,
        "SELECT COUNT(*) FROM dag_run_history WHERE dag_id = 'tributary_fail' AND state = 'failed'",
    )
    .await;
    assert!(
        ok >= 1 && failed >= 1,
        "real runs that succeeded and failed: {ok} {failed}"
    );
    let total = count(&wh, "SELECT COUNT(*) FROM dag_run_history").await;

    // A new run (triggered through Airflow, so queued) is picked up by the next sync.
    let run_id = trigger(&a, "tributary_ok").await;
    let second = source.sync(&wh).await.unwrap();
    assert!(second.since.is_some(), "the second sync is incremental");
    assert_eq!(
        count(&wh, "SELECT COUNT(*) FROM dag_run_history").await,
        total + 1
    );
    let state = |wh: Warehouse, run_id: String| async move {
        tributary::validate::first_cell(
            &wh,
            &format!("SELECT state FROM dag_run_history WHERE run_id = '{run_id}'"),
            "state",
        )
        .await
        .unwrap()
        .text()
    };
    assert_eq!(state(wh.clone(), run_id.clone()).await, "queued");

    // It finishes later (state changed the way Airflow records it: updated_at moves): the
    // next sync updates it in place instead of losing it.
    let mut meta = sqlx::PgConnection::connect(&a.db).await.unwrap();
    meta.execute(
        format!(
            "UPDATE dag_run SET state = 'success', start_date = now() - interval '5 seconds', end_date = now(), updated_at = now()
             WHERE run_id = '{run_id}'"
        )
        .as_str(),
    )
    .await
    .unwrap();
    source.sync(&wh).await.unwrap();
    assert_eq!(
        state(wh.clone(), run_id.clone()).await,
        "success",
        "the late finisher is updated"
    );
    assert_eq!(
        count(&wh, "SELECT COUNT(*) FROM dag_run_history").await,
        total + 1,
        "and not duplicated"
    );
    // The daily models see it.
    assert!(
        wh.dag_success_rate()
            .await
            .unwrap()
            .iter()
            .any(|r| r.dag_id == "tributary_ok" && r.succeeded >= 1)
    );
}

#[tokio::test]
async fn from_the_rest_api() {
    let Some(a) = airflow() else { return };
    let _turn = AIRFLOW.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::connect(&format!("sqlite://{}/wh.db", dir.path().display()))
        .await
        .unwrap();
    let api = AirflowRuns::rest_api(
        &a.api,
        ApiVersion::V2,
        &a.user,
        Secret::new(a.password.clone()),
    );
    let report = api.sync(&wh).await.unwrap();
    assert!(report.runs >= 2, "{report:?}");
    // The same runs, one per page: pagination loses and repeats nothing.
    let dir2 = tempfile::tempdir().unwrap();
    let paged_wh = Warehouse::connect(&format!("sqlite://{}/wh.db", dir2.path().display()))
        .await
        .unwrap();
    let paged = AirflowRuns::rest_api(
        &a.api,
        ApiVersion::V2,
        &a.user,
        Secret::new(a.password.clone()),
    )
    .with_page_size(1);
    let paged_report = paged.sync(&paged_wh).await.unwrap();
    assert!(
        paged_report.runs >= report.runs,
        "{paged_report:?} vs {report:?}"
    );
    assert_eq!(
        count(
            &paged_wh,
            "SELECT COUNT(DISTINCT run_id) FROM dag_run_history"
        )
        .await,
        count(&paged_wh, "SELECT COUNT(*) FROM dag_run_history").await
    );
    let failed = count(
        &wh,
        "SELECT COUNT(*) FROM dag_run_history WHERE dag_id = 'tributary_fail' AND state = 'failed'",
    )
    .await;
    assert!(failed >= 1);
    let with_times = count(&wh, "SELECT COUNT(*) FROM dag_run_history WHERE dag_id = 'tributary_ok' AND end_date IS NOT NULL").await;
    assert!(with_times >= 1, "start and end dates come through");
    // A second sync asks only for what changed since, and duplicates nothing.
    let total = count(&wh, "SELECT COUNT(*) FROM dag_run_history").await;
    let again = api.sync(&wh).await.unwrap();
    assert!(again.since.is_some());
    assert_eq!(
        count(&wh, "SELECT COUNT(*) FROM dag_run_history").await,
        total
    );
    assert_eq!(
        count(&wh, "SELECT COUNT(DISTINCT run_id) FROM dag_run_history").await,
        total
    );

    // Typed errors.
    let bad = AirflowRuns::rest_api(&a.api, ApiVersion::V2, &a.user, Secret::new("wrong"));
    let e = bad.sync(&wh).await.unwrap_err();
    assert!(
        matches!(e, Error::PermissionDenied { .. }) && e.to_string().contains("401"),
        "{e}"
    );
    assert!(!e.to_string().contains("wrong\""), "{e}");
    // The v1 API against Airflow 3: a 404, with Airflow's own explanation.
    let v1 = AirflowRuns::rest_api(
        &a.api,
        ApiVersion::V1,
        &a.user,
        Secret::new(a.password.clone()),
    );
    let e = v1.sync(&wh).await.unwrap_err();
    assert!(
        matches!(e, Error::NotFound { .. }) && e.to_string().contains("/api/v1 has been removed"),
        "{e}"
    );
    let quick = tributary::RetryPolicy::new(1)
        .with_base(std::time::Duration::from_millis(10))
        .with_max_wait(std::time::Duration::from_millis(50));
    let down = AirflowRuns::rest_api(
        "http://127.0.0.1:1",
        ApiVersion::V2,
        &a.user,
        Secret::new("x"),
    )
    .with_retry(quick);
    let e = down.sync(&wh).await.unwrap_err();
    assert!(
        matches!(e, Error::RetriesExhausted { attempts: 2, .. })
            && matches!(e.last_failure(), Error::Connection { .. }),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_database_that_is_not_airflows_is_a_clear_error() {
    let Some(url) = common::service("TRIBUTARY_TEST_PG_URL", "PostgreSQL") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::connect(&format!("sqlite://{}/wh.db", dir.path().display()))
        .await
        .unwrap();
    let e = AirflowRuns::connect_metadata_db(&url)
        .await
        .unwrap()
        .sync(&wh)
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::NotFound { .. }) && e.to_string().contains("dag_run"),
        "{e}"
    );
}

#[tokio::test]
async fn from_the_v1_api_of_a_real_airflow_2() {
    let Some(api) = common::service("TRIBUTARY_TEST_AIRFLOW2_API", "Airflow 2 webserver") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::connect(&format!("sqlite://{}/wh.db", dir.path().display()))
        .await
        .unwrap();
    let v1 = |page: u32| {
        AirflowRuns::rest_api(&api, ApiVersion::V1, "admin", Secret::new("admin"))
            .with_page_size(page)
    };
    let report = v1(1).sync(&wh).await.unwrap();
    assert!(report.runs >= 2 && report.since.is_none(), "{report:?}");
    let ok = count(
        &wh,
        "SELECT COUNT(*) FROM dag_run_history WHERE dag_id = 'tributary_ok' AND state = 'success' AND end_date IS NOT NULL",
    )
    .await;
    let failed = count(
        &wh,
        "SELECT COUNT(*) FROM dag_run_history WHERE dag_id = 'tributary_fail' AND state = 'failed'",
    )
    .await;
    assert!(ok >= 1 && failed >= 1, "{ok} {failed}");
    // One run per page: nothing lost or repeated; a second sync asks from the first's time.
    let total = count(&wh, "SELECT COUNT(*) FROM dag_run_history").await;
    assert_eq!(
        count(&wh, "SELECT COUNT(DISTINCT run_id) FROM dag_run_history").await,
        total
    );
    assert_eq!(total as u64, report.runs);
    let again = v1(100).sync(&wh).await.unwrap();
    assert!(again.since.is_some());
    assert_eq!(
        count(&wh, "SELECT COUNT(*) FROM dag_run_history").await,
        total
    );
    // Wrong password: Airflow 2's 401, typed.
    let e = AirflowRuns::rest_api(&api, ApiVersion::V1, "admin", Secret::new("wrong"))
        .sync(&wh)
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::PermissionDenied { .. }) && e.to_string().contains("401"),
        "{e}"
    );
}

#[tokio::test]
async fn from_the_metadata_database_of_a_real_airflow_2() {
    // Airflow 2's dag_run has execution_date and external_trigger (Airflow 3 renamed and
    // dropped them): the book's own schema.
    let Some(db) = common::service(
        "TRIBUTARY_TEST_AIRFLOW2_DB_URL",
        "Airflow 2 metadata database",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let wh = Warehouse::connect(&format!("sqlite://{}/wh.db", dir.path().display()))
        .await
        .unwrap();
    let source = AirflowRuns::connect_metadata_db(&db).await.unwrap();
    let first = source.sync(&wh).await.unwrap();
    assert!(first.runs >= 2, "{first:?}");
    let with_dates = count(
        &wh,
        "SELECT COUNT(*) FROM dag_run_history WHERE execution_date IS NOT NULL AND start_date IS NOT NULL AND end_date IS NOT NULL",
    )
    .await;
    assert_eq!(
        with_dates as u64, first.runs,
        "execution_date read from Airflow 2"
    );
    // `airflow dags test` runs are not externally triggered.
    assert_eq!(
        count(
            &wh,
            "SELECT COUNT(*) FROM dag_run_history WHERE external_trigger = 0"
        )
        .await as u64,
        first.runs
    );
    assert!(
        count(
            &wh,
            "SELECT COUNT(*) FROM dag_run_history WHERE dag_id = 'tributary_fail' AND state = 'failed'"
        )
        .await
            >= 1
    );
    let again = source.sync(&wh).await.unwrap();
    assert!(again.since.is_some());
    assert_eq!(
        count(&wh, "SELECT COUNT(*) FROM dag_run_history").await as u64,
        first.runs
    );
}
