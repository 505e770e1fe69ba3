use super::driver::SqliteDriver;
use crate::sources::sql::{SqlSource, extract};
use crate::{Error, Extractor, Result};
use async_trait::async_trait;
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

#[async_trait]
impl Extractor for SqliteExtractor {
    fn source(&self) -> &str {
        "sqlite"
    }

    fn stream(&self) -> &str {
        self.source.stream_name()
    }

    async fn check(&self) -> Result<()> {
        extract::check(&self.driver, &self.source).await
    }

    async fn plan(&self, cx: &crate::ExtractContext) -> Result<Option<crate::Plan>> {
        extract::plan(&self.driver, &self.source, cx.checkpoint.as_ref())
            .await
            .map(Some)
    }

    fn capabilities(&self) -> crate::ExtractorCapabilities {
        crate::ExtractorCapabilities::bounded().with_plans(true)
    }

    async fn open(&self, cx: crate::ExtractContext) -> Result<crate::Extraction> {
        let batches = extract::batches(&self.driver, &self.source, cx.checkpoint).await?;
        Ok(crate::Extraction::new(batches))
    }
}
