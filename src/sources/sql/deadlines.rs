//! [`Deadlines`]: a deadline on each wait for a database: a PostgreSQL or MySQL
//! server, or a SQLite file another process holds locked.

use super::Timeouts;
use crate::{Error, Result};
use std::future::Future;
use std::time::Duration;

/// One server's address and limits, to put a deadline on each wait.
#[derive(Clone, Debug)]
pub(crate) struct Deadlines {
    component: &'static str,
    server: &'static str,
    addr: String,
    limits: Timeouts,
}

// SQLite connects to no server: `addr` and `connect` are for PostgreSQL and MySQL.
#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
impl Deadlines {
    pub(crate) fn new(
        component: &'static str,
        server: &'static str,
        addr: String,
        limits: Timeouts,
    ) -> Self {
        Deadlines {
            component,
            server,
            addr,
            limits,
        }
    }

    /// `host:port` (a server) or the path (SQLite).
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// `fut`, which connects and sets up a session, within the connect limit.
    pub(crate) async fn connect<T>(&self, fut: impl Future<Output = T>) -> Result<T> {
        self.within(self.limits.connect(), fut, "connecting").await
    }

    /// `fut`, one read while a query runs, within the read limit.
    pub(crate) async fn read<T>(&self, fut: impl Future<Output = T>, what: &str) -> Result<T> {
        self.within(self.limits.read(), fut, what).await
    }

    async fn within<T>(
        &self,
        limit: Duration,
        fut: impl Future<Output = T>,
        what: &str,
    ) -> Result<T> {
        tokio::time::timeout(limit, fut)
            .await
            .map_err(|_| Error::Connection {
                component: self.component.into(),
                message: format!(
                    "no answer from {} within {limit:?} while {what} (is a {} server listening \
                 there, and reachable?)",
                    self.addr, self.server
                ),
                source: None,
            })
    }
}
