//! Pipeline monitoring (chapter 10): DAG run history in `dag_run_history`, and the daily
//! models over it and over `validation_run_history`, as SQL that runs in the warehouse
//! and as typed rows.

#[cfg(feature = "airflow")]
#[cfg_attr(docsrs, doc(cfg(feature = "airflow")))]
pub mod airflow;
mod models;
mod pipelines;
mod report;

pub use pipelines::{PipelineDaily, pipeline_runs_daily_sql};
pub use report::Report;

pub use models::{
    DagDaily, DagRun, DagSuccessRate, RuntimeTrend, ValidationDaily, ValidatorSummary,
    dag_history_daily_sql, validator_summary_daily_sql,
};
