use super::driver::SqliteDriver;
use crate::sources::sql::{SqlSource, extract};
use crate::{Error, Result};
use sqlx::sqlite::SqlitePool;

/// Extracts a SQLite table or query, fully or incrementally, inside one read
/// transaction (one consistent snapshot).
///
/// See the [crate docs](crate) for a complete example.
#[derive(Debug, Clone)]
pub struct SqliteExtractor {
    driver: SqliteDriver,
    source: SqlSource,
}

impl SqliteExtractor {
    /// Read `source` through `pool`.
    pub fn new(pool: SqlitePool, source: SqlSource) -> Self {
        SqliteExtractor {
            driver: SqliteDriver { pool },
            source,
        }
    }

    /// Connect lazily to a SQLite URL (`sqlite://path.db`, `sqlite::memory:`).
    pub fn connect_lazy(url: &str, source: SqlSource) -> Result<Self> {
        let pool = SqlitePool::connect_lazy(url)
            .map_err(|e| Error::config("sqlite", format!("invalid URL {url:?}: {e}")))?;
        Ok(Self::new(pool, source))
    }
}

extract::sql_extractor!(SqliteExtractor, "sqlite");
