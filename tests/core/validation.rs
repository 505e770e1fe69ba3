//! Warehouse validators and `validation_run_history` on SQLite, PostgreSQL and MariaDB,
//! and the book-compatible validator CLI.

use crate::common;

use std::time::Duration;
use tributary::validate::*;
use tributary::warehouse::Warehouse;
use tributary::*;

async fn exercise(wh: Warehouse) {
    let t = common::unique("v").replace('-', "_");
    let now = match wh.dialect() {
        sources::sql::Dialect::Postgres => "now()::timestamp",
        sources::sql::Dialect::MySql => "UTC_TIMESTAMP()",
        _ => "datetime('now')",
    };
    wh.execute(&format!(
        "CREATE TABLE {t} (id INTEGER, status VARCHAR(30), at TIMESTAMP NULL)"
    ))
    .await
    .unwrap();
    wh.execute(&format!(
        "INSERT INTO {t} VALUES (1, 'a', {now}), (2, NULL, {now}), (2, 'c', {now})"
    ))
    .await
    .unwrap();
    let cmp = |a: &str, b: &str, op: &str| {
        SqlComparison::new(
            wh.clone(),
            Script::text(a),
            Script::text(b),
            op.parse().unwrap(),
        )
    };

    // The book's comparisons.
    let pass = run_and_record(
        &cmp(&format!("SELECT COUNT(*) FROM {t}"), "SELECT 3", "equals"),
        &wh,
    )
    .await
    .unwrap();
    assert!(pass.passed, "{pass:?}");
    assert_eq!(
        (pass.left.as_deref(), pass.right.as_deref()),
        (Some("3"), Some("3"))
    );
    let fail = run_and_record(
        &cmp(
            &format!("SELECT COUNT(*) FROM {t}"),
            "SELECT 5",
            "greater_equals",
        ),
        &wh,
    )
    .await
    .unwrap();
    assert!(!fail.passed && fail.is_halting());
    let within = cmp("SELECT 2.95", "SELECT 3", "equals")
        .with_tolerance(0.1)
        .validate()
        .await
        .unwrap();
    assert!(within.passed, "within the tolerance");
    assert!(
        !cmp("SELECT 2.5", "SELECT 3", "equals")
            .with_tolerance(0.1)
            .validate()
            .await
            .unwrap()
            .passed
    );
    assert!(
        cmp("SELECT 'x'", "SELECT 'y'", "not_equal")
            .validate()
            .await
            .unwrap()
            .passed,
        "text compares for (in)equality"
    );

    // Bad input.
    let bad = format!("SELEKT 1 /* {t} */");
    let e = run_and_record(&cmp(&bad, "SELECT 1", "equals"), &wh)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("script_1 SELEKT 1"),
        "names the script: {e}"
    );
    assert!(
        e.to_string().to_lowercase().contains("syntax"),
        "carries the database's message: {e}"
    );
    let e = cmp("SELECT 'abc'", "SELECT 1", "greater")
        .validate()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("greater needs two numbers"), "{e}");
    let e = "bigger".parse::<Operator>().unwrap_err();
    assert!(
        e.to_string()
            .contains("equals, greater_equals, greater, less_equals, less, not_equal"),
        "{e}"
    );

    // Table checks.
    assert!(
        !SqlCheck::not_null(wh.clone(), &t, "status")
            .validate()
            .await
            .unwrap()
            .passed
    );
    assert!(
        SqlCheck::not_null(wh.clone(), &t, "id")
            .validate()
            .await
            .unwrap()
            .passed
    );
    assert!(
        !SqlCheck::unique(wh.clone(), &t, &["id"])
            .validate()
            .await
            .unwrap()
            .passed
    );
    assert!(
        SqlCheck::unique(wh.clone(), &t, &["id", "status"])
            .validate()
            .await
            .unwrap()
            .passed
    );
    assert!(
        SqlCheck::row_count_at_least(wh.clone(), &t, 3)
            .validate()
            .await
            .unwrap()
            .passed
    );
    assert!(
        !SqlCheck::row_count_at_least(wh.clone(), &t, 4)
            .validate()
            .await
            .unwrap()
            .passed
    );
    let fresh = SqlCheck::freshness(wh.clone(), &t, "at", Duration::from_secs(3600))
        .validate()
        .await
        .unwrap();
    assert!(fresh.passed, "{fresh:?}");
    wh.execute(&format!("UPDATE {t} SET at = '2020-01-01 00:00:00'"))
        .await
        .unwrap();
    assert!(
        !SqlCheck::freshness(wh.clone(), &t, "at", Duration::from_secs(3600))
            .validate()
            .await
            .unwrap()
            .passed
    );
    let other = Warehouse::connect("sqlite::memory:").await.unwrap();
    other.execute("CREATE TABLE src (x INTEGER)").await.unwrap();
    other
        .execute("INSERT INTO src VALUES (1), (2), (3)")
        .await
        .unwrap();
    assert!(
        SqlCheck::row_count_matches(wh.clone(), &t, &other, "src")
            .await
            .unwrap()
            .validate()
            .await
            .unwrap()
            .passed
    );

    // History: every run above that went through run_and_record, passes, failures and errors.
    let h = wh.validation_history(100).await.unwrap();
    let mine: Vec<_> = h
        .iter()
        .filter(|r| r.script_1.as_deref().is_some_and(|s| s.contains(&t)))
        .collect();
    assert_eq!(mine.len(), 3, "{mine:#?}");
    let ge = mine
        .iter()
        .find(|r| r.comp_operator.as_deref() == Some("greater_equals"))
        .expect("greater_equals fits");
    assert!(!ge.test_result);
    assert_eq!(
        (ge.left_value.as_deref(), ge.right_value.as_deref()),
        (Some("3"), Some("5"))
    );
    assert_eq!(ge.severity, "halt");
    let err = mine
        .iter()
        .find(|r| r.error.is_some())
        .expect("the check that could not run is recorded");
    assert!(!err.test_result);
    wh.execute(&format!("DROP TABLE {t}")).await.unwrap();
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

#[tokio::test]
async fn the_books_validator_cli() {
    let exe = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/validator");
    assert!(
        exe.exists(),
        "build the examples: cargo test --all-features"
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("pipeline.conf"),
        format!("[warehouse]\nurl = sqlite://{}/wh.db\n", d.display()),
    )
    .unwrap();
    std::fs::write(d.join("count.sql"), "SELECT 3;").unwrap();
    std::fs::write(d.join("three.sql"), "SELECT 3;").unwrap();
    std::fs::write(d.join("four.sql"), "SELECT 4;").unwrap();
    std::fs::write(d.join("bad.sql"), "SELECT FROM nowhere;").unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(&exe)
            .current_dir(d)
            .args(args)
            .output()
            .unwrap()
    };
    let o = run(&["count.sql", "three.sql", "equals"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = run(&["count.sql", "four.sql", "equals", "halt"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a failed halt test exits non-zero"
    );
    let o = run(&["count.sql", "four.sql", "greater_equals", "warn"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("warning"),
        "a failed warn test warns"
    );
    let o = run(&["count.sql", "four.sql", "bigger"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("valid operators: equals, greater_equals"));
    let o = run(&["bad.sql", "four.sql", "equals"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("bad.sql"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let wh = Warehouse::connect(&format!("sqlite://{}/wh.db", d.display()))
        .await
        .unwrap();
    let h = wh.validation_history(10).await.unwrap();
    assert_eq!(h.len(), 4, "three results and one error recorded");
    assert_eq!(h.iter().filter(|r| r.test_result).count(), 1);
}
