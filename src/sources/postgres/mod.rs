//! PostgreSQL source (feature `postgres`): tables and queries, full or incremental.

mod copy;
mod extractor;
mod plan;
pub mod types;

pub use extractor::PostgresExtractor;
