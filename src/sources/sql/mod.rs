//! The SQL extractor core shared by every sqlx database: what to read
//! ([`SqlSource`]), how to read it incrementally ([`Cursor`]), query building per
//! [`Dialect`], and the watermark logic that loses no row at the boundary.
//!
//! ## Incremental extraction without boundary loss
//! The book's `WHERE LastUpdated > last_max` loses rows that share the last value or
//! commit late with it. Here the next run reads `cursor >= last` (a closed bound) and
//! drops the rows already extracted at exactly `last`, recognised by a fingerprint of
//! their key columns (or of the whole row when no key is given) saved in the
//! [`Watermark`]. Rows are read in cursor order, so a run can also resume mid-way.
//! An optional lag ([`Cursor::with_lag`]) leaves the newest rows for the next run,
//! for sources whose transactions commit out of cursor order.
//!
//! Rows whose cursor is NULL cannot be tracked and are not extracted incrementally.

mod config;
mod deadlines;
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) mod decimal;
pub(crate) mod driver;
mod errors;
pub(crate) mod extract;
pub(crate) mod query;
// SQLite has no server: only the PostgreSQL and MySQL drivers hold one.
#[cfg(any(feature = "postgres", feature = "mysql"))]
mod server;
mod timeouts;
pub(crate) mod watermark;

pub(crate) use config::From;
pub use config::{Cursor, SqlSource};
pub(crate) use deadlines::Deadlines;
pub(crate) use driver::{ColumnDecoder, Columns, KeyKind, Out, Prepared, SqlDriver, read_rows};
pub(crate) use errors::sqlx_error;
pub(crate) use query::{BuiltQuery, build_query, partition_query, split_bounds};
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) use server::Server;
pub use timeouts::Timeouts;
pub(crate) use watermark::{WatermarkTracker, fingerprint_hex};

use crate::{Error, Result, Watermark};

/// `schema.table` split into its schema, if any, and the table.
#[cfg_attr(not(any(feature = "mysql", feature = "sqlite")), allow(dead_code))]
pub(crate) fn schema_and_table(name: &str) -> (Option<&str>, &str) {
    match name.split_once('.') {
        Some((schema, table)) => (Some(schema), table),
        None => (None, name),
    }
}

/// How a database spells identifiers and parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Dialect {
    /// SQLite: `` `ident` `` (never `"ident"`: SQLite reads an unknown double-quoted name
    /// as a string literal, so a misspelt column would silently become text), `?N`.
    Sqlite,
    /// PostgreSQL: `"ident"`, `$N`.
    Postgres,
    /// MySQL / MariaDB: `` `ident` ``, `?`.
    MySql,
}

impl Dialect {
    /// Quote an identifier, splitting `schema.table` on dots.
    ///
    /// ```
    /// use tributary::sources::sql::Dialect;
    /// assert_eq!(Dialect::Postgres.quote_ident("public.Orders"), r#""public"."Orders""#);
    /// assert_eq!(Dialect::MySql.quote_ident("a`b"), "`a``b`");
    /// ```
    pub fn quote_ident(&self, name: &str) -> String {
        let q = match self {
            Dialect::MySql | Dialect::Sqlite => '`',
            Dialect::Postgres => '"',
        };
        name.split('.')
            .map(|part| {
                let doubled = part.replace(q, &format!("{q}{q}"));
                format!("{q}{doubled}{q}")
            })
            .collect::<Vec<_>>()
            .join(".")
    }

    /// The `n`th (1-based) bind parameter.
    pub fn placeholder(&self, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => format!("${n}"),
            Dialect::MySql => "?".into(),
        }
    }
}

/// The watermark to resume from, refusing checkpoints of another kind.
pub(crate) fn resume_from(
    component: &'static str,
    source: &SqlSource,
    from: Option<&crate::Checkpoint>,
) -> Result<Option<Watermark>> {
    match (from, &source.cursor) {
        (None, _) => Ok(None),
        (Some(crate::Checkpoint::Watermark(w)), Some(_)) => Ok(Some(w.clone())),
        (Some(other), _) => Err(Error::config(
            component,
            format!(
                "cannot resume a {} extraction from checkpoint {other:?}",
                if source.cursor.is_some() {
                    "incremental"
                } else {
                    "full"
                }
            ),
        )),
    }
}

/// `now - lag` for the cursor's upper bound, when a lag is set.
pub(crate) fn lag_bound(source: &SqlSource) -> Option<chrono::DateTime<chrono::Utc>> {
    source
        .cursor
        .as_ref()
        .and_then(|c| c.lag)
        .map(|lag| chrono::Utc::now() - chrono::Duration::from_std(lag).unwrap_or_default())
}

/// Turns finished Arrow batches into [`crate::Batch`]es (dropping rows already seen at
/// the watermark, attaching checkpoints) and sends them to the consumer.
pub(crate) struct Emitter {
    pub(crate) tracker: Option<WatermarkTracker>,
    pub(crate) tx: tokio::sync::mpsc::Sender<Result<crate::Batch>>,
}

impl Emitter {
    pub(crate) fn new(
        source: &SqlSource,
        from: Option<&Watermark>,
        tx: tokio::sync::mpsc::Sender<Result<crate::Batch>>,
    ) -> Self {
        Emitter {
            tracker: source.cursor.as_ref().map(|c| {
                // Before keys were read from the catalog, a cursor without a key
                // fingerprinted all columns.
                let legacy: &[String] = if c.key_from_table { &[] } else { &c.key };
                WatermarkTracker::new(&c.column, &c.key, from, legacy)
            }),
            tx,
        }
    }

    /// Send one batch; `Ok(false)` when the consumer has gone away.
    pub(crate) async fn emit(&mut self, rb: arrow_array::RecordBatch) -> Result<bool> {
        let batch = match self.tracker.as_mut() {
            Some(t) => {
                let (rb, cp) = t.process(rb)?;
                let mut b = crate::Batch::new(rb);
                b.checkpoint = cp;
                b
            }
            None => crate::Batch::new(rb),
        };
        Ok(self.tx.send(Ok(batch)).await.is_ok())
    }

    /// Report a failure to the consumer.
    pub(crate) async fn fail(&self, e: Error) {
        let _ = self.tx.send(Err(e)).await;
    }
}

pub(crate) use super::channel_stream;
