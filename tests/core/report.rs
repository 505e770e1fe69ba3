//! The pipeline report: numbers, self-contained HTML with SVG charts, Markdown, and the
//! page rendered by headless Chromium.

use std::path::PathBuf;

fn example() -> PathBuf {
    let p = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/pipeline_report");
    assert!(p.exists(), "build the examples: cargo test --all-features");
    p
}

fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH")?
                .to_str()?
                .split(':')
                .map(|d| PathBuf::from(d).join(name))
                .find(|p| p.exists())
        });
    if found.is_none() {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(!ci, "chromium is required in CI: run scripts/services.sh");
        eprintln!("SKIPPED: no chromium (scripts/services.sh installs it)");
    }
    found
}

#[test]
fn the_report_example_writes_a_page_that_renders() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(example())
        .args(["/no/such/pipeline.conf", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("demo data"),
        "says it used demo data: {stdout}"
    );
    let html = std::fs::read_to_string(dir.path().join("pipeline_report.html")).unwrap();
    let md = std::fs::read_to_string(dir.path().join("pipeline_report.md")).unwrap();
    assert_eq!(html.matches("<svg ").count(), 8, "eight charts");
    for title in [
        "DAG success rate per day",
        "Average runtime per DAG per day",
        "Validation tests per day",
        "Validation success rate per day",
        "Pipeline runs per day",
        "Failed pipeline runs per day",
        "Rows landed per pipeline per day",
        "Average pipeline run duration per day",
        "Latest failed runs",
    ] {
        assert!(html.contains(title), "{title}");
    }
    assert_eq!(
        html.matches("<polyline").count(),
        3 + 3 + 1 + 1 + 4 * 2,
        "one line per DAG in two charts, one each in the validation charts, one per pipeline in four"
    );
    // One unit per axis: the runtime axis, which reaches minutes, has no tick in seconds.
    let runtime = html
        .split(r#"aria-label="Average runtime per DAG per day""#)
        .nth(1)
        .unwrap();
    let runtime = runtime.split("</svg>").next().unwrap();
    assert!(
        runtime.contains(" min<") && !runtime.contains(" s<"),
        "{runtime}"
    );
    // The latest failed runs, newest first, with their errors.
    assert!(html.matches("demo failure on day").count() >= 10);
    assert!(
        md.contains("- Pipeline `orders_binlog` on 2026-11-14: 4 run(s), 1 failed,"),
        "{md}"
    );
    assert!(
        md.contains("- Latest failed run: `iss_passes` at 2026-11-14 19:00 UTC"),
        "{md}"
    );
    assert!(
        !html.contains("<script") && !html.contains("src=\"http"),
        "self-contained"
    );
    assert!(
        md.contains("`customers_full` on 2026-11-14: 4/4 runs succeeded (100%)"),
        "{md}"
    );
    assert!(md.contains("+47% week over week"), "{md}");
    assert!(md.contains("Over 14 day(s): 72/84 tests passed."), "{md}");

    let Some(browser) = chromium() else { return };
    let shot = dir.path().join("report.png");
    let profile = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=760,3000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!(
            "file://{}",
            dir.path().join("pipeline_report.html").display()
        ))
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    // A blank page compresses to a few KB; four charts and text do not.
    assert!(
        png.len() > 30_000,
        "the page rendered with content ({} bytes)",
        png.len()
    );
}

/// Real runs, one failing, recorded by the pipeline's run log, reach the report.
#[tokio::test]
async fn our_own_runs_and_their_failures_reach_the_report() {
    use tributary::sources::sql::SqlSource;
    use tributary::sources::sqlite::SqliteExtractor;
    use tributary::stores::ObjectSink;
    use tributary::warehouse::Warehouse;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/src.db?mode=rwc", dir.path().display());
    let src =
        SqliteExtractor::connect_lazy(&db, SqlSource::query("SELECT 1 AS a UNION ALL SELECT 2"))
            .unwrap();
    let missing = SqliteExtractor::connect_lazy(&db, SqlSource::table("no_such_table")).unwrap();
    let wh = Warehouse::connect(&format!("sqlite://{}/wh.db?mode=rwc", dir.path().display()))
        .await
        .unwrap();
    for (name, ex) in [("good", src), ("broken", missing)] {
        let _ = tributary::Pipeline::builder(name)
            .extractor(ex)
            .sink(ObjectSink::memory())
            .run_log(wh.run_log())
            .build()
            .unwrap()
            .run()
            .await;
    }
    let r = wh.report("ours").await.unwrap();
    let mut names: Vec<(&str, i64, i64, i64)> = r
        .pipelines
        .iter()
        .map(|p| (p.pipeline.as_str(), p.runs, p.failures, p.rows))
        .collect();
    names.sort();
    assert_eq!(names, [("broken", 1, 1, 0), ("good", 1, 0, 2)]);
    assert_eq!(r.failed_runs.len(), 1);
    let err = r.failed_runs[0].error.clone().unwrap();
    assert!(err.contains("no_such_table"), "{err}");
    let html = r.html();
    assert!(html.contains("no_such_table"), "the error is in the page");
    assert!(
        r.markdown().contains("- Pipeline `good` on "),
        "{}",
        r.markdown()
    );
}
