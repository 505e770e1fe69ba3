//! Monitoring: Airflow run history, daily models, the report, the SQL warehouse.

#[path = "../common/mod.rs"]
mod common;

mod airflow;
mod monitor;
mod warehouse;
