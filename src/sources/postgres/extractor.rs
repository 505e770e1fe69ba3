use super::driver::PostgresDriver;
use crate::Result;
use crate::sources::sql::{SqlSource, Timeouts, extract};
use sqlx::postgres::PgPool;

/// Extracts a PostgreSQL table or query, fully or incrementally, streaming with flat
/// memory inside one `REPEATABLE READ READ ONLY` transaction (one consistent snapshot).
///
/// Values are decoded from PostgreSQL's binary format without loss; see
/// [`types`](super::types) for the mapping to Arrow.
///
/// **COPY fast path.** For a full extraction to CSV in a dialect PostgreSQL can write
/// itself ([`CsvDialect::matches_postgres_copy`](crate::format::CsvDialect::matches_postgres_copy),
/// no header), the pipeline asks this extractor to run `COPY (SELECT ...) TO STDOUT` in
/// the same snapshot and streams its bytes straight to the sink: no Arrow, no decoding,
/// and the same bytes as the typed path (tested). Incremental extractions, batch
/// validators and other formats use the typed path.
///
/// ```no_run
/// # async fn f() -> tributary::Result<()> {
/// use tributary::sources::postgres::PostgresExtractor;
/// use tributary::sources::sql::{Cursor, SqlSource};
/// let orders = PostgresExtractor::connect_lazy(
///     "postgres://etl@db/shop",
///     SqlSource::table("public.orders").incremental(Cursor::new("last_updated").with_key(["id"])),
/// )?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PostgresExtractor {
    pub(super) driver: PostgresDriver,
    pub(super) source: SqlSource,
    pub(super) copy: bool,
}

impl PostgresExtractor {
    /// Read `source` through `pool`.
    pub fn new(pool: PgPool, source: SqlSource) -> Self {
        PostgresExtractor {
            driver: PostgresDriver::new(pool),
            source,
            copy: true,
        }
    }

    /// A pool that connects on first use to a `postgres://` URL.
    pub fn connect_lazy(url: &str, source: SqlSource) -> Result<Self> {
        Ok(PostgresExtractor {
            driver: crate::sources::postgres::driver::connect_lazy(url)?,
            source,
            copy: true,
        })
    }

    /// Time limits for connecting and for each read (defaults: 30 s, 10 minutes).
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.driver = self.driver.with_timeouts(timeouts);
        self
    }

    /// Allow (default) or forbid the `COPY` fast path for CSV output.
    pub fn with_copy(mut self, yes: bool) -> Self {
        self.copy = yes;
        self
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.driver.pool
    }
}

extract::sql_extractor!(
    PostgresExtractor,
    "postgres",
    crate::ExtractorCapabilities::bounded()
        .with_plans(true)
        .with_encodes(true),
    {
        async fn open_encoded(
            &self,
            cx: crate::ExtractContext,
            format: &dyn crate::format::Format,
        ) -> crate::Result<Option<crate::model::EncodedStream>> {
            super::copy::extract_copy(self, cx.checkpoint.as_ref(), format).await
        }
    }
);
