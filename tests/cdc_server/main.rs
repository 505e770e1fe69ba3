//! Change data capture against a server this binary reconfigures (global binlog
//! settings, terminated walsenders, dropped slots): kept apart so that no other test
//! sees it.

#[path = "../common/mod.rs"]
mod common;

#[cfg(feature = "mysql-cdc")]
mod mysql_cdc_server;
#[cfg(feature = "postgres-cdc")]
mod postgres_cdc_server;
