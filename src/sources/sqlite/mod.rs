//! SQLite source (feature `sqlite`): the embedded default, used by the quickstart.

mod driver;
mod extractor;
mod types;

pub use extractor::SqliteExtractor;
