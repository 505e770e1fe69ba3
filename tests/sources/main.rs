//! The table and API sources: SQLite, PostgreSQL, MySQL/MariaDB, REST, MongoDB.

#[path = "../common/mod.rs"]
mod common;

mod mongo_source;
mod mysql_source;
mod postgres_source;
mod rest_source;
mod sql_backends;
mod sqlite_source;
