//! How long a SQL source waits for its server: a port that accepts TCP and never
//! answers, or a server of another kind on that port, must fail the run with a
//! retryable error naming host and port, never hang it.

use std::time::Duration;

/// Time limits for a SQL source's connection.
///
/// - `connect`: TCP connect, TLS, authentication and the session set-up together
///   (default 30 s).
/// - `read`: the longest wait for the next row or message while a query runs (default
///   10 minutes; raise it for queries that sort a big table before the first row).
///
/// Exceeding either is [`Error::Connection`](crate::Error::Connection) (retryable), naming host and port.
///
/// ```
/// use std::time::Duration;
/// use tributary::sources::sql::Timeouts;
/// let t = Timeouts::new().with_connect(Duration::from_secs(5));
/// assert_eq!(t.connect(), Duration::from_secs(5));
/// assert_eq!(t.read(), Duration::from_secs(600));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    connect: Duration,
    read: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(30),
            read: Duration::from_secs(600),
        }
    }
}

impl Timeouts {
    /// The defaults: 30 s to connect, 10 minutes between reads.
    pub fn new() -> Self {
        Self::default()
    }

    /// The connect (and handshake) limit.
    pub fn with_connect(mut self, limit: Duration) -> Self {
        self.connect = limit;
        self
    }

    /// The limit on waiting for the next row or message.
    pub fn with_read(mut self, limit: Duration) -> Self {
        self.read = limit;
        self
    }

    /// The connect limit.
    pub fn connect(&self) -> Duration {
        self.connect
    }

    /// The read limit.
    pub fn read(&self) -> Duration {
        self.read
    }
}
