//! What to read ([`SqlSource`]: a table or a query, some columns, batch size,
//! partitions) and how to read it incrementally ([`Cursor`]).

use crate::CursorValue;
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
