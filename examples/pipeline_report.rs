//! Chapter 10: a pipeline report a team can share. Writes `pipeline_report.html` (one
//! self-contained page with SVG charts: DAG success rate, runtime trend per DAG,
//! validation volume and success rate) and `pipeline_report.md` (a summary to paste into
//! chat) from `dag_run_history` and `validation_run_history` in the warehouse.
//!
//! Usage: `cargo run --example pipeline_report -- [pipeline.conf] [output folder]`
//!
//! With a `pipeline.conf` whose `[warehouse] url` is set, it reports on that warehouse.
//! Without one it reports on demo data it generates (and says so), so that it runs
//! anywhere. Output folder default: `./tributary-out/report`.

use chrono::{Duration, TimeZone, Utc};
use std::process::ExitCode;
use tributary::config::PipelineConfig;
use tributary::monitor::DagRun;
use tributary::warehouse::Warehouse;
use tributary::{Severity, ValidationOutcome};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let conf = args
        .first()
        .cloned()
        .unwrap_or_else(|| "pipeline.conf".into());
    let out = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "tributary-out/report".into());
    match run(&conf, &out).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pipeline_report: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(conf: &str, out: &str) -> Result<(), Box<dyn std::error::Error>> {
    let (warehouse, title) = if std::path::Path::new(conf).exists() {
        let wh = PipelineConfig::from_file(conf)?.warehouse().await?;
        let title = format!("Pipeline report: {}", wh.describe());
        (wh, title)
    } else {
        println!("{conf} not found: reporting on generated demo data");
        (demo().await?, "Pipeline report (demo data)".to_string())
    };
    let report = warehouse.report(&title).await?;
    std::fs::create_dir_all(out)?;
    let html = std::path::Path::new(out).join("pipeline_report.html");
    let md = std::path::Path::new(out).join("pipeline_report.md");
    std::fs::write(&html, report.html())?;
    std::fs::write(&md, report.markdown())?;
    println!("wrote {} and {}\n", html.display(), md.display());
    print!("{}", report.markdown());
    Ok(())
}

/// Two weeks of runs of three DAGs and of validation tests, in an in-memory warehouse.
async fn demo() -> tributary::Result<Warehouse> {
    let wh = Warehouse::connect("sqlite::memory:").await?;
    let start = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    let mut runs = Vec::new();
    for day in 0..14i64 {
        for (dag, base, fail_every) in [
            ("orders_incremental", 95, 5),
            ("customers_full", 240, 9),
            ("rest_iss_passes", 30, 4),
        ] {
            for hour in 0..4i64 {
                let t = start + Duration::days(day) + Duration::hours(hour * 6);
                let secs = base
                    + (day * 7 + hour * 3) % 25
                    + if day >= 7 && dag == "customers_full" {
                        120
                    } else {
                        0
                    };
                let failed = (day + hour) % fail_every == 0;
                let run_id = format!("scheduled__{}", t.format("%Y-%m-%dT%H:%M:%S"));
                let state = if failed { "failed" } else { "success" };
                runs.push(
                    DagRun::new(dag.to_string(), run_id, state)
                        .with_execution_date(t)
                        .with_dates(t, Some(t + Duration::seconds(secs)))
                        .with_updated_at(t + Duration::seconds(secs)),
                );
            }
        }
        for n in 0..6 {
            let passed = (day + n) % 7 != 0;
            let o = ValidationOutcome::new(format!("check_{n}"), passed, Severity::Halt, "")
                .with_comparison("100", "equals", "100")
                .with_scripts(format!("check_{n}_1.sql"), Some(format!("check_{n}_2.sql")))
                .with_timing(
                    start + Duration::days(day) + Duration::hours(7),
                    std::time::Duration::from_millis(40),
                );
            wh.record_validation(&o, None).await?;
        }
    }
    wh.upsert_dag_runs(&runs).await?;
    // tributary's own runs: two pipelines, four runs a day, some failing.
    let _ = wh.run_history(None, 1).await?; // creates pipeline_run_history
    for day in 0..14i64 {
        for (pipeline, rows, fail_every) in
            [("orders_binlog", 52_000i64, 6), ("iss_passes", 900, 11)]
        {
            for hour in 0..4i64 {
                let t = start + Duration::days(day) + Duration::hours(hour * 6 + 1);
                let failed = (day * 4 + hour) % fail_every == 0;
                let ms = 2_000 + (day * 37 + hour * 11) % 900;
                let fmt = |t: chrono::DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%S%.6f").to_string();
                sqlx::query(
                    "INSERT INTO pipeline_run_history (run_id, pipeline, source, stream, sink, \
                     started_at, finished_at, duration_ms, outcome, attempts, rows_written, \
                     bytes_written, objects, error) VALUES (?, ?, 'demo', 'orders', 'memory://', \
                     ?, ?, ?, ?, 1, ?, ?, ?, ?)",
                )
                .bind(format!("{pipeline}-{day}-{hour}"))
                .bind(pipeline)
                .bind(fmt(t))
                .bind(fmt(t + Duration::milliseconds(ms)))
                .bind(ms)
                .bind(if failed { "failed" } else { "succeeded" })
                .bind(if failed { 0 } else { rows + day * 100 })
                .bind(if failed { 0 } else { rows * 90 })
                .bind(if failed { 0 } else { 1 })
                .bind(
                    failed.then(|| {
                        format!("{pipeline}: connection failed: demo failure on day {day}")
                    }),
                )
                .execute(wh.pool())
                .await
                .map_err(|e| tributary::Error::connector("demo", e, false))?;
            }
        }
    }
    Ok(wh)
}
