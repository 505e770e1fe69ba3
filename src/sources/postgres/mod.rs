//! PostgreSQL source (feature `postgres`): tables and queries, full or incremental.

mod copy;
pub(crate) mod driver;
mod extractor;
mod numeric;
mod rows;
pub mod types;

pub use extractor::PostgresExtractor;
