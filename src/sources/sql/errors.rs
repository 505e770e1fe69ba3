//! sqlx errors as typed [`Error`]s, classified by the driver's own codes (SQLSTATE,
//! MySQL error numbers, SQLite result codes) and sqlx's error kinds; message text only
//! where the driver gives no code (SQLite's missing table, a handshake's password).

use crate::{BoxError, Error};
use sqlx::error::DatabaseError;

/// What a caller can do about an error.
enum Kind {
    /// The connection broke or never formed: retry with a new one.
    Connection,
    /// A table, column or database that does not exist.
    NotFound,
    /// Authentication or privileges.
    Denied,
    /// The statement failed; some failures (deadlock, lock timeout) pass on retry.
    Query { retryable: bool },
    /// The connection settings are wrong.
    Config,
}

/// Turn a sqlx error into a typed [`Error`], naming the component and what was being done.
pub(crate) fn sqlx_error(component: &'static str, e: sqlx::Error, what: &str) -> Error {
    let message = format!("{what}: {e}");
    let kind = classify(&e);
    let source: Option<BoxError> = Some(Box::new(e));
    let component = component.into();
    match kind {
        Kind::Connection => Error::Connection {
            component,
            message,
            source,
        },
        Kind::NotFound => Error::NotFound {
            component,
            message,
            source,
        },
        Kind::Denied => Error::PermissionDenied {
            component,
            message,
            source,
        },
        Kind::Query { retryable } => Error::Query {
            component,
            message,
            retryable,
            source,
        },
        Kind::Config => Error::Config {
            component,
            message,
            source,
        },
    }
}

fn classify(e: &sqlx::Error) -> Kind {
    match e {
        sqlx::Error::Database(db) => {
            let code = code(db.as_ref());
            // SQLite reports a missing table or column as SQLITE_ERROR (1), the code of
            // every other SQL error too: only its message tells them apart.
            let m = db.message();
            if code == "1" && (m.starts_with("no such table") || m.starts_with("no such column")) {
                return Kind::NotFound;
            }
            classify_code(&code)
        }
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => Kind::Connection,
        sqlx::Error::Configuration(_) => Kind::Config,
        // A server that closes the handshake over a password says so only in words.
        sqlx::Error::Protocol(p) if p.to_ascii_lowercase().contains("password") => Kind::Denied,
        _ => Kind::Query { retryable: false },
    }
}

/// The code that decides: MySQL's error number (its SQLSTATE is 42000 for many different
/// errors), otherwise the SQLSTATE (PostgreSQL) or the extended result code (SQLite).
/// MySQL's numbers start at 1000 and SQLSTATEs have five characters, so none collide with
/// SQLite's small result codes.
fn code(db: &(dyn DatabaseError + 'static)) -> String {
    match mysql_number(db) {
        Some(n) => n.to_string(),
        None => db.code().map(|c| c.to_string()).unwrap_or_default(),
    }
}

#[cfg(feature = "mysql")]
fn mysql_number(db: &(dyn DatabaseError + 'static)) -> Option<u16> {
    db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
        .map(|e| e.number())
}

#[cfg(not(feature = "mysql"))]
fn mysql_number(_: &(dyn DatabaseError + 'static)) -> Option<u16> {
    None
}

fn classify_code(code: &str) -> Kind {
    // Connection class (08xxx), operator intervention (57P0x: terminated, shutting down),
    // MySQL's "server has gone away" and "lost connection" (2006, 2013), KILL (1927),
    // shutdown (1053), too many connections (1040), network errors (1158-1161).
    let dropped = code.starts_with("08")
        || matches!(
            code,
            "57P01"
                | "57P02"
                | "57P03"
                | "2006"
                | "2013"
                | "1927"
                | "1053"
                | "1040"
                | "1158"
                | "1159"
                | "1160"
                | "1161"
        );
    // Undefined table/column/schema/database (SQLSTATE), MySQL's unknown database, table
    // and column.
    let not_found = matches!(
        code,
        "42P01" | "42703" | "3F000" | "3D000" | "1049" | "1146" | "1054" | "42S02" | "42S22"
    );
    let denied = matches!(
        code,
        "28P01" | "28000" | "42501" | "1045" | "1044" | "1142" | "1143" | "1227"
    );
    // Serialization failure and deadlock (SQLSTATE), MySQL's lock wait timeout and
    // deadlock, and SQLite's BUSY and LOCKED with their extended forms.
    let retryable = matches!(
        code,
        "40001" | "40P01" | "1205" | "1213" | "5" | "261" | "517" | "773" | "6" | "262" | "518"
    );
    if dropped {
        Kind::Connection
    } else if not_found {
        Kind::NotFound
    } else if denied {
        Kind::Denied
    } else {
        Kind::Query { retryable }
    }
}
