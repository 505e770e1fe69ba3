//! MySQL and MariaDB source (feature `mysql`): tables and queries, full or incremental.

pub(crate) mod driver;
mod extractor;
pub mod types;

pub use extractor::MySqlExtractor;
