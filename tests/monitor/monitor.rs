//! dag_run_history upserts and the daily models on SQLite, PostgreSQL and MariaDB.

use crate::common;

use chrono::{TimeZone, Utc};
use tributary::monitor::DagRun;
use tributary::warehouse::Warehouse;
use tributary::{Severity, ValidationOutcome};

fn run(dag: &str, id: &str, day: u32, state: &str, secs: i64) -> DagRun {
    let start = Utc.with_ymd_and_hms(2026, 11, day, 10, 0, 0).unwrap();
    DagRun::new(dag, id, state)
        .with_execution_date(start)
        .with_dates(
            start,
            (state != "running").then(|| start + chrono::Duration::seconds(secs)),
        )
        .with_updated_at(start + chrono::Duration::seconds(secs))
}

async fn exercise(wh: Warehouse) {
    let dag = common::unique("dag");
    // Week 1: three successes of 60 s, one failure of 30 s; one run still running.
    let mut runs = vec![
        run(&dag, "a", 1, "success", 60),
        run(&dag, "b", 1, "success", 60),
        run(&dag, "c", 1, "success", 60),
        run(&dag, "d", 1, "failed", 30),
        run(&dag, "e", 8, "running", 0),
    ];
    assert_eq!(wh.upsert_dag_runs(&runs).await.unwrap(), 5);
    // The running run finishes and is read again: updated, not duplicated.
    runs = vec![
        run(&dag, "e", 8, "success", 105),
        run(&dag, "f", 8, "success", 105),
    ];
    wh.upsert_dag_runs(&runs).await.unwrap();

    let daily: Vec<_> = wh
        .dag_history_daily()
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.dag_id == dag)
        .collect();
    let day1 = chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
    let day8 = chrono::NaiveDate::from_ymd_opt(2026, 11, 8).unwrap();
    let find = |date, state: &str| {
        daily
            .iter()
            .find(|d| d.date == date && d.state == state)
            .cloned()
    };
    let s1 = find(day1, "success").unwrap();
    assert_eq!((s1.runs, s1.runtime_seconds.round()), (3, 180.0));
    assert_eq!(find(day1, "failed").unwrap().runs, 1);
    assert_eq!(
        find(day8, "success").unwrap().runs,
        2,
        "the late finisher was updated in place"
    );
    assert!(find(day8, "running").is_none());

    let rates: Vec<_> = wh
        .dag_success_rate()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.dag_id == dag)
        .collect();
    assert_eq!(rates[0].date, day1);
    assert!((rates[0].success_rate - 0.75).abs() < 1e-9);
    assert!((rates[1].success_rate - 1.0).abs() < 1e-9);

    let trend: Vec<_> = wh
        .runtime_trend()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.dag_id == dag)
        .collect();
    assert!(
        (trend[0].avg_runtime_seconds - 52.5).abs() < 1e-6,
        "{trend:?}"
    );
    assert_eq!(trend[0].week_over_week_change, None);
    assert!((trend[1].avg_runtime_seconds - 105.0).abs() < 1e-6);
    assert!(
        (trend[1].week_over_week_change.unwrap() - 1.0).abs() < 1e-6,
        "runtime doubled week over week"
    );

    // Validation volume and success rate per day.
    let label = common::unique("check");
    for (day, passed) in [(2, true), (2, true), (2, false), (3, true)] {
        let o = ValidationOutcome::new(&label, passed, Severity::Warn, "")
            .with_comparison("1", "equals", "1")
            .with_scripts(&label, Some("expected.sql".into()))
            .with_timing(
                Utc.with_ymd_and_hms(2026, 11, day, 12, 0, 0).unwrap(),
                std::time::Duration::from_millis(5),
            );
        wh.record_validation(&o, None).await.unwrap();
    }
    let summary: Vec<_> = wh
        .validator_summary_daily()
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.script_1.as_deref() == Some(label.as_str()))
        .collect();
    assert_eq!(summary.len(), 3, "{summary:?}");
    assert_eq!(
        summary
            .iter()
            .find(|s| s.test_result && s.date.to_string() == "2026-11-02")
            .unwrap()
            .tests,
        2
    );
    let days = wh.validation_daily().await.unwrap();
    let d2 = days
        .iter()
        .find(|d| d.date.to_string() == "2026-11-02")
        .unwrap();
    assert!(d2.tests >= 3 && d2.passed >= 2, "{d2:?}");
}

#[tokio::test]
async fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    exercise(
        Warehouse::connect(&format!("sqlite://{}/wh.db", dir.path().display()))
            .await
            .unwrap(),
    )
    .await;
}

#[tokio::test]
async fn postgres() {
    let Some(url) = common::service("TRIBUTARY_TEST_PG_URL", "PostgreSQL") else {
        return;
    };
    exercise(Warehouse::connect(&url).await.unwrap()).await;
}

#[tokio::test]
async fn mysql() {
    let Some(url) = common::service("TRIBUTARY_TEST_MYSQL_URL", "MariaDB") else {
        return;
    };
    exercise(Warehouse::connect(&url).await.unwrap()).await;
}
