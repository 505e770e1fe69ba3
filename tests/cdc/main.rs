//! Change data capture: the MariaDB binlog and PostgreSQL WAL readers, their pipelines and examples.

#[path = "../common/mod.rs"]
mod common;

#[cfg(all(feature = "mysql-cdc", feature = "postgres-cdc"))]
mod cdc_example;
#[cfg(any(feature = "mysql-cdc", feature = "postgres-cdc"))]
mod cdc_suite;
#[cfg(feature = "mysql-cdc")]
mod mysql_cdc;
#[cfg(all(feature = "mysql-cdc", feature = "postgres-cdc"))]
mod mysql_cdc_example;
#[cfg(feature = "mysql-cdc")]
mod mysql_cdc_pipeline;
#[cfg(feature = "mysql-cdc")]
mod mysql_cdc_stream;
#[cfg(feature = "postgres-cdc")]
mod postgres_cdc;
#[cfg(all(feature = "mysql-cdc", feature = "postgres-cdc"))]
mod postgres_cdc_example;
#[cfg(feature = "postgres-cdc")]
mod postgres_cdc_stream;
