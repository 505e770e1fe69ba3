//! [`Server`]: what the MySQL and PostgreSQL drivers hold, a lazy connection pool and
//! the time limits, written once for both.

use super::Timeouts;
use crate::{Error, Result};
use sqlx::pool::{Pool, PoolOptions};

/// A database server's pool (connect options; nothing connects until used) and time
/// limits. `MySqlDriver` and `PostgresDriver` are this with their database.
pub(crate) struct Server<DB: sqlx::Database> {
    pub(crate) pool: Pool<DB>,
    pub(crate) timeouts: Timeouts,
}

// By hand: a derive would ask `DB` itself to be `Clone` and `Debug`.
impl<DB: sqlx::Database> Clone for Server<DB> {
    fn clone(&self) -> Self {
        Server {
            pool: self.pool.clone(),
            timeouts: self.timeouts,
        }
    }
}

impl<DB: sqlx::Database> std::fmt::Debug for Server<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("pool", &self.pool)
            .field("timeouts", &self.timeouts)
            .finish()
    }
}

impl<DB: sqlx::Database> Server<DB> {
    pub(crate) fn new(pool: Pool<DB>) -> Self {
        Server {
            pool,
            timeouts: Timeouts::default(),
        }
    }

    /// A pool of at most four connections (a snapshot's and the range readers') that
    /// connects on first use to `url`; a URL that does not parse is a configuration
    /// error of `component`, quoted without its password.
    pub(crate) fn connect_lazy(
        component: &'static str,
        url: &str,
        options: PoolOptions<DB>,
    ) -> Result<Self> {
        let pool = options.max_connections(4).connect_lazy(url).map_err(|e| {
            Error::config(
                component,
                format!("invalid URL {}: {e}", crate::redact_url(url)),
            )
        })?;
        Ok(Self::new(pool))
    }

    /// These time limits.
    pub(crate) fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }
}
