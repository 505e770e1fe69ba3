//! WAL CDC bad input against the project's own PostgreSQL.
mod common;
