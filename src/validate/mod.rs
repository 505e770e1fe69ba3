//! Checks. Batch-level ([`NotNull`], [`Unique`]) run by the pipeline on rows in flight;
//! warehouse-level ([`SqlComparison`], [`SqlCheck`]) run on their own or after a load,
//! with every result recorded by [`run_and_record`] in `validation_run_history`.

mod batch;
pub use batch::{NotNull, Unique};

#[cfg(feature = "sql")]
mod sql;
#[cfg(feature = "sql")]
#[cfg_attr(
    docsrs,
    doc(cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql")))
)]
pub use sql::{Operator, Script, SqlCheck, SqlComparison, Value, first_cell};

/// Run `validator` and append its result to `validation_run_history` in `wh`: passes,
/// failures, and checks that could not run (recorded as failed, with the error), then
/// return the outcome (or the error).
#[cfg(feature = "sql")]
#[cfg_attr(
    docsrs,
    doc(cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql")))
)]
pub async fn run_and_record(
    validator: &dyn crate::Validator,
    wh: &crate::warehouse::Warehouse,
) -> crate::Result<crate::ValidationOutcome> {
    let started = chrono::Utc::now();
    let t = std::time::Instant::now();
    match validator.validate().await {
        Ok(outcome) => {
            wh.record_validation(&outcome, None).await?;
            if !outcome.passed {
                tracing::warn!(
                    validator = validator.name(),
                    severity = outcome.severity.as_str(),
                    "{}",
                    outcome.message
                );
            }
            Ok(outcome)
        }
        Err(e) => {
            let (script_1, script_2) = validator.scripts();
            let failed = crate::ValidationOutcome {
                name: validator.name().to_string(),
                passed: false,
                severity: validator.severity(),
                left: None,
                right: None,
                operator: None,
                script_1,
                script_2,
                message: e.to_string(),
                failed_batches: 0,
                failed_rows: 0,
                last_message: None,
                started_at: started,
                duration: t.elapsed(),
            };
            wh.record_validation(&failed, Some(&e)).await?;
            Err(e)
        }
    }
}
