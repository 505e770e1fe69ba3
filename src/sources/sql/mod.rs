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

mod deadlines;
pub(crate) mod driver;
mod errors;
pub(crate) mod extract;
pub(crate) mod query;
mod timeouts;
pub(crate) mod watermark;

pub(crate) use deadlines::Deadlines;
pub(crate) use driver::{ColumnDecoder, Columns, KeyKind, Out, Prepared, SqlDriver, read_rows};
pub(crate) use errors::sqlx_error;
pub(crate) use query::{BuiltQuery, build_query, partition_query, split_bounds};
pub use timeouts::Timeouts;
pub(crate) use watermark::{WatermarkTracker, fingerprint_hex};

use crate::{CursorValue, Error, Result, Watermark};
use std::time::Duration;

/// What to read: a table (optionally some columns) or a custom query, fully or
/// incrementally.
///
/// ```
/// use tributary::sources::sql::{Cursor, SqlSource};
/// let s = SqlSource::table("Orders").incremental(Cursor::new("LastUpdated"));
/// assert_eq!(s.stream_name(), "Orders");
/// ```
#[derive(Clone, Debug)]
pub struct SqlSource {
    pub(crate) from: From,
    pub(crate) columns: Vec<String>,
    pub(crate) cursor: Option<Cursor>,
    pub(crate) batch_rows: usize,
    pub(crate) name: Option<String>,
    pub(crate) partition: Option<(String, u32)>,
}

#[derive(Clone, Debug)]
pub(crate) enum From {
    Table(String),
    Query(String),
}

impl SqlSource {
    /// A whole table (`schema.table` is allowed). Names are quoted as identifiers.
    pub fn table(name: impl Into<String>) -> Self {
        Self::new(From::Table(name.into()))
    }

    /// A custom `SELECT`. Incremental extraction wraps it as a subquery.
    pub fn query(sql: impl Into<String>) -> Self {
        Self::new(From::Query(sql.into()))
    }

    fn new(from: From) -> Self {
        SqlSource {
            from,
            columns: Vec::new(),
            cursor: None,
            batch_rows: 8192,
            name: None,
            partition: None,
        }
    }

    /// Read only these columns, in this order.
    pub fn columns<I: IntoIterator<Item = S>, S: Into<String>>(mut self, columns: I) -> Self {
        self.columns = columns.into_iter().map(Into::into).collect();
        self
    }

    /// Extract incrementally by `cursor`.
    pub fn incremental(mut self, cursor: Cursor) -> Self {
        self.cursor = Some(cursor);
        self
    }

    /// Rows per Arrow batch (default 8192).
    pub fn with_batch_rows(mut self, rows: usize) -> Self {
        self.batch_rows = rows.max(1);
        self
    }

    /// Read a full extraction in `partitions` parallel ranges of `column` (an integer,
    /// date or timestamp), like ConnectorX's `partition_on`. Each range is read on its own
    /// connection and written to objects of its own, all in one run and one manifest.
    /// Rows whose `column` is NULL go to the first range. Ignored for incremental
    /// extractions. PostgreSQL reads every range in one shared snapshot; MySQL has no
    /// shared snapshots, so each range is consistent on its own.
    pub fn partition_on(mut self, column: impl Into<String>, partitions: u32) -> Self {
        self.partition = Some((column.into(), partitions.max(1)));
        self
    }

    /// The stream name used in object keys (default: the table name, or `query`).
    pub fn with_stream_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The stream name used in object keys.
    pub fn stream_name(&self) -> &str {
        match (&self.name, &self.from) {
            (Some(n), _) => n,
            (None, From::Table(t)) => t,
            (None, From::Query(_)) => "query",
        }
    }

    /// The cursor, when incremental.
    pub fn cursor(&self) -> Option<&Cursor> {
        self.cursor.as_ref()
    }
}

/// The column an incremental extraction follows (e.g. `LastUpdated`), and how.
#[derive(Clone, Debug)]
pub struct Cursor {
    pub(crate) column: String,
    pub(crate) key: Vec<String>,
    /// `key` is the table's primary key, read from the catalog (the user named none).
    pub(crate) key_from_table: bool,
    pub(crate) lag: Option<Duration>,
    pub(crate) initial: Option<CursorValue>,
}

impl Cursor {
    /// Follow `column`.
    pub fn new(column: impl Into<String>) -> Self {
        Cursor {
            column: column.into(),
            key: Vec::new(),
            key_from_table: false,
            lag: None,
            initial: None,
        }
    }

    /// Columns that identify a row (a primary key). Rows at the boundary value are
    /// recognised by these, and past 1,000 of them the checkpoint keeps a
    /// keyset position, so its size does not grow with the rows at one value.
    ///
    /// Without this, a table source uses the table's primary key from the catalog. A
    /// table with none, or a query, is read by all columns: identical rows are counted,
    /// never merged, and past 100,000 rows at one value the extraction
    /// stops with an error asking for a key.
    pub fn with_key<I: IntoIterator<Item = S>, S: Into<String>>(mut self, key: I) -> Self {
        self.key = key.into_iter().map(Into::into).collect();
        self
    }

    /// Only read rows whose cursor is older than `now - lag` (a time cursor), leaving
    /// rows of transactions that may still be committing for the next run.
    pub fn with_lag(mut self, lag: Duration) -> Self {
        self.lag = Some(lag);
        self
    }

    /// Start from this value (inclusive) when there is no checkpoint yet.
    pub fn with_start_at(mut self, value: CursorValue) -> Self {
        self.initial = Some(value);
        self
    }

    /// The cursor column.
    pub fn column(&self) -> &str {
        &self.column
    }

    /// The key columns: the ones given to [`Cursor::with_key`], or, once an extraction
    /// has read the catalog, the table's primary key.
    pub fn key(&self) -> &[String] {
        &self.key
    }
}

impl SqlSource {
    /// This source with `primary_key` as its cursor's key, when the cursor names none,
    /// the source is a table, and every key column is among `columns` (the result's).
    pub(crate) fn keyed_by_table(mut self, primary_key: Vec<String>, columns: &[String]) -> Self {
        let selected = |k: &String| self.columns.is_empty() || self.columns.contains(k);
        let usable = self.table_needing_key().is_some()
            && !primary_key.is_empty()
            && primary_key
                .iter()
                .all(|k| columns.contains(k) && selected(k));
        if let Some(c) = self.cursor.as_mut().filter(|_| usable) {
            c.key = primary_key;
            c.key_from_table = true;
        }
        self
    }

    /// The table whose primary key an extraction should look up for the cursor: a table
    /// source whose cursor names no key.
    pub(crate) fn table_needing_key(&self) -> Option<&str> {
        match (&self.from, &self.cursor) {
            (From::Table(t), Some(c)) if c.key.is_empty() => Some(t),
            _ => None,
        }
    }
}

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
