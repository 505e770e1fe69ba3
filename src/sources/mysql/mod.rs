//! MySQL and MariaDB source (feature `mysql`): tables and queries, full or incremental.

mod extractor;
mod plan;
pub mod types;

pub use extractor::MySqlExtractor;
#[cfg(feature = "mysql-cdc")]
pub(crate) use extractor::{Out, Prepared, Shape, read_rows, text_args};
