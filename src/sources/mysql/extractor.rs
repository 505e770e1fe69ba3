use super::driver::MySqlDriver;
use crate::Result;
use crate::sources::sql::{SqlSource, Timeouts, extract};
use sqlx::mysql::MySqlPool;

/// Extracts a MySQL or MariaDB table or query, fully or incrementally, streaming with
/// flat memory inside one `REPEATABLE READ` transaction started `WITH CONSISTENT
/// SNAPSHOT`, in a UTC session (so `TIMESTAMP` values and bounds are UTC).
///
/// See [`types`](super::types) for the mapping to Arrow.
///
/// ```no_run
/// # async fn f() -> tributary::Result<()> {
/// use tributary::sources::mysql::MySqlExtractor;
/// use tributary::sources::sql::{Cursor, SqlSource};
/// let orders = MySqlExtractor::connect_lazy(
///     "mysql://etl:secret@db/shop",
///     SqlSource::table("Orders").incremental(Cursor::new("LastUpdated")),
/// )?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct MySqlExtractor {
    driver: MySqlDriver,
    source: SqlSource,
}

impl MySqlExtractor {
    /// Read `source` through `pool` (its connect options; each extraction opens its own
    /// connection for its snapshot).
    pub fn new(pool: MySqlPool, source: SqlSource) -> Self {
        MySqlExtractor {
            driver: MySqlDriver::new(pool),
            source,
        }
    }

    /// Connect on first use to a `mysql://` URL (MariaDB too).
    pub fn connect_lazy(url: &str, source: SqlSource) -> Result<Self> {
        Ok(MySqlExtractor {
            driver: crate::sources::mysql::driver::connect_lazy(url)?,
            source,
        })
    }

    /// Time limits for connecting and for each read (defaults: 30 s, 10 minutes). A
    /// MySQL client waits for the server's greeting, so a port where some other server
    /// waits for the client (PostgreSQL) fails on the connect limit.
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.driver = self.driver.with_timeouts(timeouts);
        self
    }
}

extract::sql_extractor!(MySqlExtractor, "mysql");
