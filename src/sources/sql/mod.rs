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
mod timeouts;
pub(crate) mod watermark;

pub(crate) use deadlines::Deadlines;
pub(crate) use driver::{ColumnDecoder, Columns, KeyKind, Out, Prepared, SqlDriver, read_rows};
pub(crate) use errors::sqlx_error;
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

/// A query and the values to bind to it, in order.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct BuiltQuery {
    /// The SQL text.
    pub(crate) sql: String,
    /// Values for the placeholders.
    pub(crate) binds: Vec<CursorValue>,
}

/// Build the extraction query: `SELECT cols FROM src [WHERE cursor >= ? [AND cursor < ?]]
/// [ORDER BY cursor, key]`.
pub(crate) fn build_query(
    source: &SqlSource,
    dialect: Dialect,
    from: Option<&Watermark>,
    upper: Option<CursorValue>,
) -> Result<BuiltQuery> {
    build_query_cast(source, dialect, from, upper, None)
}

/// Like [`build_query`], with cursor parameters written as `CAST(? AS cast)` so that
/// they can be bound as text (PostgreSQL's strict typing needs this).
pub(crate) fn build_query_cast(
    source: &SqlSource,
    dialect: Dialect,
    from: Option<&Watermark>,
    upper: Option<CursorValue>,
    cast: Option<&str>,
) -> Result<BuiltQuery> {
    build_query_casts(source, dialect, from, upper, cast, &[])
}

/// Like [`build_query_cast`], with the types of the key columns too (for a keyset
/// position, [`Watermark::after`]).
pub(crate) fn build_query_casts(
    source: &SqlSource,
    dialect: Dialect,
    from: Option<&Watermark>,
    upper: Option<CursorValue>,
    cast: Option<&str>,
    key_casts: &[String],
) -> Result<BuiltQuery> {
    let cast_param = |n: usize, ty: Option<&str>| match ty {
        // Through text first, so the parameter's own type is always text.
        Some(t) => format!("CAST(CAST({} AS TEXT) AS {t})", dialect.placeholder(n)),
        None => dialect.placeholder(n),
    };
    let param = |n: usize| cast_param(n, cast);
    let cols = select_list(source, dialect);
    let from_sql = match &source.from {
        From::Query(q) if source.cursor.is_none() && source.columns.is_empty() => {
            return Ok(BuiltQuery {
                sql: q.trim().trim_end_matches(';').to_string(),
                binds: Vec::new(),
            });
        }
        _ => from_clause(source, dialect)?,
    };
    let mut sql = format!("SELECT {cols} FROM {from_sql}");
    let mut binds = Vec::new();
    if let Some(c) = &source.cursor {
        let col = dialect.quote_ident(&c.column);
        let mut conds = vec![format!("{col} IS NOT NULL")];
        let lower = from.map(|w| w.cursor.clone()).or_else(|| c.initial.clone());
        match (lower, from.and_then(|w| w.after.as_ref())) {
            // A keyset position: `(cursor, key) > (value, after)`, spelt out so that every
            // database can use an index on the cursor.
            (Some(v), Some(after)) => {
                let saved = from.and_then(|w| w.key.as_ref());
                if after.len() != c.key.len()
                    || c.key.is_empty()
                    || saved.is_some_and(|k| k != &c.key)
                {
                    return Err(Error::config(
                        "sql",
                        format!(
                            "the checkpoint's keyset position is over {} ({} values), but the \
                             cursor's key is {:?}: keep the key the checkpoint was made with",
                            saved
                                .map_or_else(|| "an unnamed key".to_string(), |k| format!("{k:?}")),
                            after.len(),
                            c.key
                        ),
                    ));
                }
                binds.push(v.clone());
                let gt = param(binds.len());
                binds.push(v);
                let eq = param(binds.len());
                let mut keys = Vec::new();
                for (i, k) in after.iter().enumerate() {
                    binds.push(k.clone());
                    keys.push(cast_param(
                        binds.len(),
                        key_casts.get(i).map(String::as_str),
                    ));
                }
                let names: Vec<String> = c.key.iter().map(|k| dialect.quote_ident(k)).collect();
                conds.push(format!(
                    "({col} > {gt} OR ({col} = {eq} AND ({}) > ({})))",
                    names.join(", "),
                    keys.join(", ")
                ));
            }
            (Some(v), None) => {
                binds.push(v);
                conds.push(format!("{col} >= {}", param(binds.len())));
            }
            (None, _) => {}
        }
        if let Some(v) = upper {
            binds.push(v);
            conds.push(format!("{col} < {}", param(binds.len())));
        }
        sql.push_str(" WHERE ");
        sql.push_str(&conds.join(" AND "));
        sql.push_str(" ORDER BY ");
        let mut order = vec![col];
        order.extend(c.key.iter().map(|k| dialect.quote_ident(k)));
        sql.push_str(&order.join(", "));
    }
    Ok(BuiltQuery { sql, binds })
}

fn select_list(source: &SqlSource, dialect: Dialect) -> String {
    if source.columns.is_empty() {
        "*".to_string()
    } else {
        source
            .columns
            .iter()
            .map(|c| dialect.quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The FROM clause: a quoted table, or the custom query as a subquery.
fn from_clause(source: &SqlSource, dialect: Dialect) -> Result<String> {
    match &source.from {
        From::Table(t) if t.trim().is_empty() => Err(Error::config("sql", "table name is empty")),
        From::Table(t) => Ok(dialect.quote_ident(t)),
        From::Query(q) => Ok(format!(
            "({}) AS tributary_q",
            q.trim().trim_end_matches(';')
        )),
    }
}

fn parse_time(s: &str) -> Option<chrono::NaiveDateTime> {
    let s = s.trim();
    // PostgreSQL prints timestamptz as `... +00` in a UTC session; drop the offset.
    let s = s.strip_suffix("+00").unwrap_or(s);
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight"))
        })
}

/// The `partitions - 1` inner boundaries splitting `[lo, hi]` (as text the database
/// reads back), fewer when the range is too small to split that far.
pub(crate) fn split_bounds(
    kind: KeyKind,
    lo: &str,
    hi: &str,
    partitions: u32,
    column: &str,
) -> Result<Vec<String>> {
    let bad = || {
        Error::type_error(
            "sql",
            format!("partition column {column}: cannot read the range {lo} .. {hi}"),
        )
    };
    let n = partitions.max(1) as i128;
    let (lo_n, hi_n): (i128, i128) = match kind {
        KeyKind::Int => (
            lo.trim().parse().map_err(|_| bad())?,
            hi.trim().parse().map_err(|_| bad())?,
        ),
        KeyKind::Date | KeyKind::Timestamp => {
            let (a, b) = (
                parse_time(lo).ok_or_else(bad)?,
                parse_time(hi).ok_or_else(bad)?,
            );
            (
                a.and_utc().timestamp_micros() as i128,
                b.and_utc().timestamp_micros() as i128,
            )
        }
    };
    let unit: i128 = if kind == KeyKind::Date {
        86_400_000_000
    } else {
        1
    };
    let span = (hi_n - lo_n) / unit + 1;
    let mut out: Vec<String> = Vec::new();
    for i in 1..n {
        let b = lo_n + (span * i / n) * unit;
        let text = match kind {
            KeyKind::Int => b.to_string(),
            KeyKind::Date => chrono::DateTime::from_timestamp_micros(b as i64)
                .ok_or_else(bad)?
                .format("%Y-%m-%d")
                .to_string(),
            KeyKind::Timestamp => chrono::DateTime::from_timestamp_micros(b as i64)
                .ok_or_else(bad)?
                .format("%Y-%m-%d %H:%M:%S%.6f")
                .to_string(),
        };
        if b > lo_n && out.last() != Some(&text) {
            out.push(text);
        }
    }
    Ok(out)
}

/// The query of partition `i` of `bounds.len() + 1`: `[bounds[i-1], bounds[i])`, the first
/// open below and holding NULLs, the last open above.
pub(crate) fn partition_query(
    source: &SqlSource,
    dialect: Dialect,
    column: &str,
    bounds: &[String],
    i: usize,
    cast: Option<&str>,
) -> Result<BuiltQuery> {
    let col = dialect.quote_ident(column);
    let param = |n: usize| match cast {
        Some(t) => format!("CAST(CAST({} AS TEXT) AS {t})", dialect.placeholder(n)),
        None => dialect.placeholder(n),
    };
    let mut binds = Vec::new();
    let mut conds = Vec::new();
    if i > 0 {
        binds.push(CursorValue::Text(bounds[i - 1].clone()));
        conds.push(format!("{col} >= {}", param(binds.len())));
    }
    if let Some(b) = bounds.get(i) {
        binds.push(CursorValue::Text(b.clone()));
        conds.push(format!("{col} < {}", param(binds.len())));
    }
    let mut cond = if conds.is_empty() {
        "1 = 1".to_string()
    } else {
        conds.join(" AND ")
    };
    if i == 0 {
        cond = format!("({cond}) OR {col} IS NULL");
    }
    Ok(BuiltQuery {
        sql: format!(
            "SELECT {} FROM {} WHERE {cond}",
            select_list(source, dialect),
            from_clause(source, dialect)?
        ),
        binds,
    })
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
