//! WAL CDC across a PostgreSQL restart: alone in its binary, because every other test
//! against that server would see the restart.

#[path = "../common/mod.rs"]
mod common;

#[cfg(feature = "postgres-cdc")]
mod postgres_cdc_restart;
