//! The crate's one error type, [`Error`], and its [`Result`] alias.
//!
//! Variants are chosen by what a caller can do about them: fix configuration, wait and
//! retry, grant a permission, re-snapshot after a lost position, and so on. Every variant
//! names the component (connector or store) it came from. Whether an error is worth
//! retrying is decided in one place, [`Error::is_retryable`].

use std::borrow::Cow;

/// A boxed error from a dependency, kept as the [`std::error::Error::source`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in tributary.
///
/// ```
/// use tributary::Error;
/// let e = Error::config("csv", "delimiter must be one byte");
/// assert!(!e.is_retryable());
/// assert_eq!(e.to_string(), "csv: invalid configuration: delimiter must be one byte");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is wrong or incomplete. Fix it; retrying will not help.
    #[error("{component}: invalid configuration: {message}")]
    Config {
        /// What was being configured (`pipeline.conf`, `csv`, `s3`, ...).
        component: Cow<'static, str>,
        /// What is wrong, naming the offending key or value.
        message: String,
        /// The underlying error (a store's refusal of a path or key), when there is one.
        #[source]
        source: Option<BoxError>,
    },
    /// A server or store could not be reached, or the connection broke. Usually temporary.
    #[error("{component}: connection failed: {message}")]
    Connection {
        /// The connector or store.
        component: Cow<'static, str>,
        /// What failed.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// Wrong credentials or missing privileges.
    #[error("{component}: permission denied: {message}")]
    PermissionDenied {
        /// The connector or store.
        component: Cow<'static, str>,
        /// What was denied.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// A table, column, bucket, object or other named thing does not exist.
    #[error("{component}: not found: {message}")]
    NotFound {
        /// The connector or store.
        component: Cow<'static, str>,
        /// What is missing.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// The source is reachable but not set up as required (e.g. `binlog_format` is not `ROW`).
    #[error("{component}: prerequisite not met: {message}")]
    Prerequisite {
        /// The connector.
        component: Cow<'static, str>,
        /// Which prerequisite, and how to meet it.
        message: String,
    },
    /// A saved position can no longer be resumed from (purged binlog, dropped slot).
    /// A new snapshot is needed.
    #[error("{component}: position lost: {message}")]
    PositionLost {
        /// The connector.
        component: Cow<'static, str>,
        /// Which position, and why it is gone.
        message: String,
        /// The server's error, when there is one.
        #[source]
        source: Option<BoxError>,
    },
    /// A value or type cannot be represented losslessly, or a schema does not match.
    #[error("{component}: {message}")]
    Type {
        /// The connector or format.
        component: Cow<'static, str>,
        /// The column, its type and what to do about it.
        message: String,
        /// The underlying error (Arrow's, Parquet's), when there is one.
        #[source]
        source: Option<BoxError>,
    },
    /// A query or request failed on the server side.
    #[error("{component}: query failed: {message}")]
    Query {
        /// The connector.
        component: Cow<'static, str>,
        /// The server's message.
        message: String,
        /// Whether retrying the same call may succeed (deadlock, serialization failure, ...).
        retryable: bool,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// Writing to or reading from a store failed.
    #[error("{component}: storage error: {message}")]
    Storage {
        /// The store.
        component: Cow<'static, str>,
        /// What failed.
        message: String,
        /// Whether retrying may succeed.
        retryable: bool,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// Someone else changed shared state first (e.g. two runners advancing one checkpoint).
    #[error("{component}: conflict: {message}")]
    Conflict {
        /// The state store or object store.
        component: Cow<'static, str>,
        /// What conflicted.
        message: String,
        /// The store's error, when there is one.
        #[source]
        source: Option<BoxError>,
    },
    /// A validator with severity `halt` failed.
    #[error("validation {name} failed: {message}")]
    Validation {
        /// The validator's name.
        name: String,
        /// What was found.
        message: String,
    },
    /// A table's schema changed and the pipeline is set to fail on schema changes
    /// ([`OnSchemaChange::Fail`](crate::OnSchemaChange::Fail)).
    #[error("table {table}: schema changed: {change}")]
    SchemaChanged {
        /// The table.
        table: String,
        /// What changed: the column and its old and new type.
        change: String,
    },
    /// The run was cancelled by its caller.
    #[error("run cancelled")]
    Cancelled,
    /// A temporary failure that was still failing when its retries
    /// ([`RetryPolicy`](crate::RetryPolicy)) were spent. It is persistent now: not
    /// retryable, so no outer layer retries it again. [`Error::last_failure`] is the
    /// error of the last try.
    #[error("{last} (gave up on {operation} after {attempts} attempts)")]
    RetriesExhausted {
        /// What was tried (`open`, `commit_state`, `GET https://...`, `run`).
        operation: String,
        /// Tries made, the first included.
        attempts: u32,
        /// The last try's error.
        #[source]
        last: Box<Error>,
    },
}

/// Whether trying again can help, as OpenDAL says it: an error is permanent (trying
/// again cannot help), temporary (it may pass) or persistent (it was temporary, but
/// outlasted its retries).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorStatus {
    /// Fix something first (configuration, permissions, the data).
    Permanent,
    /// It may pass: try again later.
    Temporary,
    /// It was temporary, and still failed after every retry.
    Persistent,
}

impl Error {
    /// Whether the same operation may succeed if tried again later.
    ///
    /// Connection failures are retryable; so are queries and storage errors that their
    /// connector marked as temporary (timeouts, throttling, deadlocks). Configuration,
    /// permission, missing objects, type errors, conflicts and lost positions are not.
    pub fn is_retryable(&self) -> bool {
        self.status() == ErrorStatus::Temporary
    }

    /// Permanent, temporary, or persistent after its retries were spent.
    ///
    /// ```
    /// use tributary::{Error, ErrorStatus};
    /// let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out");
    /// let e = Error::connector("myapi", io, true);
    /// assert_eq!(e.status(), ErrorStatus::Temporary);
    /// let given_up = Error::RetriesExhausted { operation: "open".into(), attempts: 3, last: Box::new(e) };
    /// assert_eq!(given_up.status(), ErrorStatus::Persistent);
    /// assert!(!given_up.is_retryable());
    /// assert_eq!(given_up.last_failure().component(), Some("myapi"));
    /// ```
    pub fn status(&self) -> ErrorStatus {
        match self {
            Error::Connection { .. } => ErrorStatus::Temporary,
            Error::Query { retryable, .. } | Error::Storage { retryable, .. } if *retryable => {
                ErrorStatus::Temporary
            }
            Error::RetriesExhausted { .. } => ErrorStatus::Persistent,
            _ => ErrorStatus::Permanent,
        }
    }

    /// The error of the last try: for [`Error::RetriesExhausted`] the error it gave up
    /// on, for any other the error itself. Match on this to ask what went wrong.
    pub fn last_failure(&self) -> &Error {
        match self {
            Error::RetriesExhausted { last, .. } => last.last_failure(),
            other => other,
        }
    }

    /// The component (connector or store) the error came from, if any.
    pub fn component(&self) -> Option<&str> {
        match self {
            Error::Config { component, .. }
            | Error::Connection { component, .. }
            | Error::PermissionDenied { component, .. }
            | Error::NotFound { component, .. }
            | Error::Prerequisite { component, .. }
            | Error::PositionLost { component, .. }
            | Error::Type { component, .. }
            | Error::Query { component, .. }
            | Error::Storage { component, .. }
            | Error::Conflict { component, .. } => Some(component),
            Error::RetriesExhausted { last, .. } => last.component(),
            Error::Validation { .. } | Error::SchemaChanged { .. } | Error::Cancelled => None,
        }
    }

    /// A [`Error::Config`] error.
    pub fn config(component: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Error::Config {
            component: component.into(),
            message: message.into(),
            source: None,
        }
    }

    /// A connector's failure from its driver's error, without spelling out a variant:
    /// retryable failures (a dropped connection, a timeout) are [`Error::Connection`],
    /// the others [`Error::Query`]. The message is the source's, with any password in a
    /// URL in it redacted.
    ///
    /// ```
    /// let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
    /// let e = tributary::Error::connector("myapi", io, true);
    /// assert!(e.is_retryable());
    /// assert_eq!(e.to_string(), "myapi: connection failed: reset by peer");
    /// ```
    pub fn connector(
        component: impl Into<Cow<'static, str>>,
        source: impl Into<BoxError>,
        retryable: bool,
    ) -> Self {
        let source = source.into();
        let message = crate::util::redact_text(&source.to_string());
        if retryable {
            Error::Connection {
                component: component.into(),
                message,
                source: Some(source),
            }
        } else {
            Error::Query {
                component: component.into(),
                message,
                retryable: false,
                source: Some(source),
            }
        }
    }

    /// A [`Error::Type`] error.
    pub fn type_error(component: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Error::Type {
            component: component.into(),
            message: message.into(),
            source: None,
        }
    }

    /// A local file operation's failure: [`Error::PermissionDenied`] when access was
    /// refused, else a storage error that retrying will not mend (a full disk, a file
    /// where a folder should be).
    pub(crate) fn from_local_io(
        component: impl Into<Cow<'static, str>>,
        message: String,
        e: std::io::Error,
    ) -> Self {
        let component = component.into();
        let denied = e.kind() == std::io::ErrorKind::PermissionDenied;
        let source = Some(Box::new(e) as BoxError);
        if denied {
            Error::PermissionDenied {
                component,
                message,
                source,
            }
        } else {
            Error::Storage {
                component,
                message,
                retryable: false,
                source,
            }
        }
    }

    /// Convert an `object_store` error, naming the store it came from.
    pub(crate) fn from_object_store(
        store: impl Into<Cow<'static, str>>,
        e: object_store::Error,
    ) -> Self {
        use object_store::Error as E;
        let component = store.into();
        let message = e.to_string();
        match e {
            E::NotFound { .. } => Error::NotFound {
                component,
                message,
                source: Some(Box::new(e)),
            },
            E::PermissionDenied { .. } | E::Unauthenticated { .. } => Error::PermissionDenied {
                component,
                message,
                source: Some(Box::new(e)),
            },
            E::AlreadyExists { .. } | E::Precondition { .. } => Error::Conflict {
                component,
                message,
                source: Some(Box::new(e)),
            },
            E::InvalidPath { .. }
            | E::UnknownConfigurationKey { .. }
            | E::NotSupported { .. }
            | E::NotImplemented { .. } => Error::Config {
                component,
                message,
                source: Some(Box::new(e)),
            },
            other => {
                let (retryable, kind) = classify_remote(&other);
                let source = Some(Box::new(other) as BoxError);
                match kind {
                    Remote::Denied => Error::PermissionDenied {
                        component,
                        message,
                        source,
                    },
                    Remote::Missing => Error::NotFound {
                        component,
                        message,
                        source,
                    },
                    Remote::Transport if retryable => Error::Connection {
                        component,
                        message,
                        source,
                    },
                    Remote::Transport | Remote::Other => Error::Storage {
                        component,
                        message,
                        retryable,
                        source,
                    },
                }
            }
        }
    }
}

/// What an object_store failure it did not give a variant of comes down to.
enum Remote {
    Denied,
    Missing,
    Transport,
    Other,
}

/// Classify a failure object_store left generic, from what its error chain holds, in
/// this order: a local `std::io::Error` (its kind), object_store's `HttpError` (its
/// kind: connect, timeout, decode...), or an HTTP status. Returns (retryable, what).
///
/// The status is the one thing read from text: object_store 0.14 keeps the error that
/// carries it (`client::retry::RetryError`, with its `status()`) in a crate-private
/// module, so it cannot be downcast to; its message spells `status code: NNN`.
fn classify_remote(e: &(dyn std::error::Error + 'static)) -> (bool, Remote) {
    if let Some(kind) = first_in_chain::<std::io::Error>(e).map(std::io::Error::kind) {
        return local_io(kind);
    }
    if let Some(retryable) = http_transport(e) {
        return (retryable, Remote::Transport);
    }
    match http_status(&e.to_string()) {
        Some(401 | 403) => (false, Remote::Denied),
        Some(404) => (false, Remote::Missing),
        Some(s) if (400..500).contains(&s) && s != 408 && s != 429 => (false, Remote::Other),
        // 5xx, 408, 429 that outlived the client's own retries: a later try may pass.
        _ => (true, Remote::Other),
    }
}

/// The first error of type `T` in `e`'s source chain.
fn first_in_chain<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<T>() {
            return Some(t);
        }
        cur = err.source();
    }
    None
}

/// Whether an object_store `HttpError` in the chain (a request that got no usable
/// answer) is worth retrying: connect, request, timeout and interrupted failures are;
/// a response that could not be decoded is not. `None` without one.
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
fn http_transport(e: &(dyn std::error::Error + 'static)) -> Option<bool> {
    use object_store::client::{HttpError, HttpErrorKind as K};
    first_in_chain::<HttpError>(e).map(|h| {
        matches!(
            h.kind(),
            K::Connect | K::Request | K::Timeout | K::Interrupted
        )
    })
}

/// Without a cloud store there is no HTTP client, so no `HttpError`.
#[cfg(not(any(feature = "s3", feature = "gcs", feature = "azure")))]
fn http_transport(_: &(dyn std::error::Error + 'static)) -> Option<bool> {
    None
}

/// What a local I/O failure means: (retryable, what).
fn local_io(kind: std::io::ErrorKind) -> (bool, Remote) {
    use std::io::ErrorKind as K;
    match kind {
        K::PermissionDenied | K::ReadOnlyFilesystem => (false, Remote::Denied),
        K::ConnectionRefused
        | K::ConnectionReset
        | K::ConnectionAborted
        | K::NotConnected
        | K::TimedOut
        | K::BrokenPipe
        | K::Interrupted => (true, Remote::Transport),
        // A file where a folder should be, a full disk: trying again will not help.
        _ => (false, Remote::Other),
    }
}

/// The HTTP status in an object_store error message (`... status code: 403 Forbidden ...`).
fn http_status(message: &str) -> Option<u16> {
    let rest = &message[message.find("status code: ")? + "status code: ".len()..];
    rest.get(..3)?.parse().ok()
}

/// Arrow's errors (a batch that does not match its schema, a failed cast) are
/// [`Error::Type`].
impl From<arrow_schema::ArrowError> for Error {
    /// A [`Error::Type`] whose message is Arrow's and whose source is the error itself.
    fn from(e: arrow_schema::ArrowError) -> Self {
        Error::Type {
            component: "arrow".into(),
            message: e.to_string(),
            source: Some(Box::new(e)),
        }
    }
}
