//! What one database brings to the shared SQL extractor ([`SqlDriver`]), and the one
//! loop that reads a query's rows into Arrow batches ([`read_rows`]).
//!
//! The extraction itself (resume, snapshot transaction, watermark, partitions, plans) is
//! written once in [`extract`](super::extract); a driver only connects, describes a
//! query, decodes rows and spells its transactions.

use super::{Deadlines, Dialect, Emitter, SqlSource, sqlx_error};
use crate::{Batch, CursorValue, Error, Result, Watermark};
use arrow_array::builder::{ArrayBuilder, make_builder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::SchemaRef;
use async_trait::async_trait;
use futures::{FutureExt, TryStreamExt};

/// A query ready to run: the source with names resolved against the catalog (its cursor
/// may have the table's primary key as its key), the SQL and its binds, how to decode
/// each column, and the batches' schema.
pub(crate) struct Prepared<D> {
    pub(crate) source: SqlSource,
    pub(crate) sql: String,
    pub(crate) binds: Vec<CursorValue>,
    pub(crate) decoders: Vec<D>,
    pub(crate) schema: SchemaRef,
}

/// The kinds of column a full extraction can be partitioned on (none on SQLite).
#[cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyKind {
    Int,
    Date,
    Timestamp,
}

/// One database's part of an extraction. Every method that waits on the server does so
/// within the driver's [`Deadlines`].
#[async_trait]
pub(crate) trait SqlDriver: Clone + Send + Sync + 'static {
    /// A connection of the extraction's own (never shared: it holds a long transaction).
    type Conn: Send + 'static;
    /// How one column's values become Arrow values.
    type Dec: Clone + Send + Sync + 'static;

    /// The component named in errors (`mysql`).
    const COMPONENT: &'static str;
    /// How the database spells identifiers and parameters.
    const DIALECT: Dialect;

    /// The server's address and the time limits.
    fn deadlines(&self) -> Deadlines;

    /// A new connection with the session settings the decoders rely on (UTC, ISO dates).
    async fn connect(&self) -> Result<Self::Conn>;

    /// Describe `source` (after `from`, when resuming): columns, decoders, and the
    /// bounded query.
    async fn prepare(
        &self,
        conn: &mut Self::Conn,
        source: &SqlSource,
        from: Option<&Watermark>,
    ) -> Result<Prepared<Self::Dec>>;

    /// Start the read-only transaction every row of an extraction is read in; with
    /// `snapshot`, in that exported snapshot (see [`share_snapshot`](Self::share_snapshot)).
    async fn begin(&self, conn: &mut Self::Conn, snapshot: Option<&str>) -> Result<()>;

    /// End the transaction [`begin`](Self::begin) started.
    async fn commit(&self, conn: &mut Self::Conn) -> Result<()>;

    /// Read `sql` with `binds` in the connection's transaction into batches of
    /// `batch_rows` rows shaped by `prep`, handing each to `out`; `Ok(false)` when the
    /// consumer went away.
    async fn read(
        &self,
        conn: &mut Self::Conn,
        (sql, binds): (&str, &[CursorValue]),
        prep: &Prepared<Self::Dec>,
        batch_rows: usize,
        out: &mut Out<'_>,
    ) -> Result<bool>;

    /// [`read`](Self::read), then [`commit`](Self::commit) once every row went on;
    /// `Ok(false)` when the consumer went away (the dropped connection ends the
    /// transaction).
    async fn read_and_commit(
        &self,
        conn: &mut Self::Conn,
        query: (&str, &[CursorValue]),
        prep: &Prepared<Self::Dec>,
        batch_rows: usize,
        out: &mut Out<'_>,
    ) -> Result<bool> {
        let more = self.read(conn, query, prep, batch_rows, out).await?;
        if more {
            self.commit(conn).await?;
        }
        Ok(more)
    }

    /// How a column decoded by `dec` splits into ranges, and the type its bounds are cast
    /// to; `None` when it cannot be a partition column.
    fn partition_kind(dec: &Self::Dec) -> Option<(KeyKind, Option<&'static str>)>;

    /// Whether this database reads a partitioned extraction's ranges in parallel.
    /// Without, `partition_on` is ignored and the extraction is read as one range.
    fn partitions(&self) -> bool {
        true
    }

    /// The lowest and highest value of `column` in the rows of `plain`, as text.
    async fn range(
        &self,
        conn: &mut Self::Conn,
        column: &str,
        plain: &str,
    ) -> Result<(Option<String>, Option<String>)>;

    /// Open a transaction on `coord` whose snapshot the range readers import, and name
    /// it; `None` where snapshots cannot be shared (each range is then consistent on
    /// its own).
    async fn share_snapshot(&self, _coord: &mut Self::Conn) -> Result<Option<String>> {
        Ok(None)
    }

    /// The server's estimate of the rows `prep` reads, reading none (`EXPLAIN`), or
    /// the exact count where that is cheap.
    async fn estimate(
        &self,
        conn: &mut Self::Conn,
        prep: &Prepared<Self::Dec>,
    ) -> Result<Option<u64>>;

    /// The upper bound of a lagged time cursor, as the database compares it.
    fn lag_value(t: chrono::DateTime<chrono::Utc>) -> CursorValue {
        CursorValue::TimestampTz(t)
    }
}

/// Where finished batches go.
pub(crate) enum Out<'a> {
    /// Through the watermark logic (plain and incremental extractions).
    Emitter(&'a mut Emitter),
    /// Straight to the consumer, each batch made by a function of the rows (a partition's
    /// batches, or the change rows of a CDC snapshot).
    Wrap(
        tokio::sync::mpsc::Sender<Result<Batch>>,
        &'a (dyn Fn(RecordBatch) -> Result<Batch> + Send + Sync),
    ),
}

impl Out<'_> {
    /// `Ok(false)` when the consumer has gone away.
    pub(crate) async fn emit(&mut self, rb: RecordBatch) -> Result<bool> {
        match self {
            Out::Emitter(e) => e.emit(rb).await,
            Out::Wrap(tx, f) => Ok(tx.send(Ok(f(rb)?)).await.is_ok()),
        }
    }
}

/// Rows of one database to Arrow, a batch at a time.
pub(crate) trait RowBuilder<R>: Send {
    /// Append one row.
    fn push(&mut self, row: &R) -> Result<()>;
    /// Rows appended since the last [`finish`](Self::finish).
    fn rows(&self) -> usize;
    /// The rows appended so far as a batch; the builder starts over.
    fn finish(&mut self) -> Result<RecordBatch>;
}

/// How one column of a database's rows is appended to its Arrow builder.
pub(crate) trait ColumnDecoder<R>: Send + Sync {
    /// Append column `i` of `row` (named `name`, for errors) to `builder`.
    fn append_from(
        &self,
        builder: &mut dyn ArrayBuilder,
        row: &R,
        i: usize,
        name: &str,
    ) -> Result<()>;
}

/// Rows to Arrow through one [`ColumnDecoder`] per column.
pub(crate) struct Columns<D> {
    component: &'static str,
    schema: SchemaRef,
    decoders: Vec<D>,
    builders: Vec<Box<dyn ArrayBuilder>>,
    rows: usize,
}

impl<D: Clone> Columns<D> {
    /// Builders for `prep`'s columns, each with room for `capacity` rows.
    pub(crate) fn new(component: &'static str, prep: &Prepared<D>, capacity: usize) -> Self {
        let builders = prep
            .schema
            .fields()
            .iter()
            .map(|f| make_builder(f.data_type(), capacity))
            .collect();
        Columns {
            component,
            schema: prep.schema.clone(),
            decoders: prep.decoders.clone(),
            builders,
            rows: 0,
        }
    }
}

impl<R, D: ColumnDecoder<R>> RowBuilder<R> for Columns<D> {
    fn push(&mut self, row: &R) -> Result<()> {
        let columns = self.decoders.iter().zip(self.builders.iter_mut());
        for (i, (dec, b)) in columns.enumerate() {
            dec.append_from(b.as_mut(), row, i, self.schema.field(i).name())?;
        }
        self.rows += 1;
        Ok(())
    }

    fn rows(&self) -> usize {
        self.rows
    }

    fn finish(&mut self) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = self.builders.iter_mut().map(|b| b.finish()).collect();
        self.rows = 0;
        RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| Error::type_error(self.component, format!("building a batch: {e}")))
    }
}

/// The one read loop: run `sql` with `args` on `executor`, append each row to `builder`,
/// hand every `batch_rows` rows (and the rest at the end) to `out`, each wait within the
/// read limit. `Ok(false)` when the consumer went away (dropping the connection ends the
/// query).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn read_rows<'q, 'c, DB, E, A, B>(
    executor: E,
    sql: &'q str,
    args: A,
    builder: &mut B,
    batch_rows: usize,
    deadlines: &Deadlines,
    component: &'static str,
    out: &mut Out<'_>,
) -> Result<bool>
where
    DB: sqlx::Database,
    E: 'q + sqlx::Executor<'c, Database = DB>,
    'c: 'q,
    A: 'q + Send + sqlx::IntoArguments<'q, DB>,
    B: RowBuilder<DB::Row>,
{
    let mut rows = sqlx::query_with(sql, args).fetch(executor);
    loop {
        // A row already buffered needs no timer: arming one per row cost a clock read
        // and a timer-wheel entry for each of millions of rows. Only a wait is limited.
        let next = match rows.try_next().now_or_never() {
            Some(next) => next,
            None => deadlines.read(rows.try_next(), "reading rows").await?,
        };
        let Some(row) = next.map_err(|e| sqlx_error(component, e, "reading rows"))? else {
            break;
        };
        builder.push(&row)?;
        if builder.rows() >= batch_rows && !out.emit(builder.finish()?).await? {
            return Ok(false);
        }
    }
    if builder.rows() > 0 && !out.emit(builder.finish()?).await? {
        return Ok(false);
    }
    Ok(true)
}
