//! PostgreSQL source (feature `postgres`): tables and queries, full or incremental.

mod copy;
mod extractor;
mod plan;
mod rows;
pub mod types;

pub use extractor::PostgresExtractor;
#[cfg(feature = "postgres-cdc")]
pub(crate) use extractor::{Prepared, text_args};
#[cfg(feature = "postgres-cdc")]
pub(crate) use rows::read_into;
