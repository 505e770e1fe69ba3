//! PostgreSQL source (feature `postgres`): tables and queries, full or incremental.

mod copy;
mod extractor;
pub mod types;

pub use extractor::PostgresExtractor;
