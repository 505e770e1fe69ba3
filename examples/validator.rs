//! The book's chapter 8 validator: `validator.py script_1.sql script_2.sql operator [severity]`.
//!
//! Usage: `cargo run --example validator -- script_1.sql script_2.sql equals [halt|warn]`
//!
//! Runs both scripts on `[warehouse] url` of `pipeline.conf` (in the current folder, or
//! the file named by `TRIBUTARY_CONFIG`), compares the first cell of each with the
//! operator (`equals`, `greater_equals`, `greater`, `less_equals`, `less`, `not_equal`)
//! and appends the result to `validation_run_history`. Exit status: 0 when the test
//! passes, 1 when it fails with severity `halt` (the default), 0 with a warning when it
//! fails with `warn`, 2 when it cannot run (bad arguments, bad SQL, no warehouse).

use std::process::ExitCode;
use tributary::config::PipelineConfig;
use tributary::validate::{Operator, Script, SqlComparison, run_and_record};
use tributary::{Severity, Validator};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 || args.len() > 4 {
        eprintln!("usage: validator script_1.sql script_2.sql operator [halt|warn]");
        return ExitCode::from(2);
    }
    match run(&args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("validator: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: &[String]) -> tributary::Result<ExitCode> {
    let operator: Operator = args[2].parse()?;
    let severity: Severity = args.get(3).map_or(Ok(Severity::Halt), |s| s.parse())?;
    let conf = std::env::var("TRIBUTARY_CONFIG").unwrap_or_else(|_| "pipeline.conf".into());
    let warehouse = PipelineConfig::from_file(&conf)?.warehouse().await?;
    let check = SqlComparison::new(
        warehouse.clone(),
        Script::file(&args[0])?,
        Script::file(&args[1])?,
        operator,
    )
    .with_severity(severity);
    let outcome = run_and_record(&check, &warehouse).await?;
    if outcome.passed {
        println!("passed: {}", outcome.message);
        Ok(ExitCode::SUCCESS)
    } else if check.severity() == Severity::Warn {
        eprintln!("warning: {} ({})", outcome.message, check.name());
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("failed: {} ({})", outcome.message, check.name());
        Ok(ExitCode::from(1))
    }
}
