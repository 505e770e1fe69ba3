use super::types::{ColumnInfo, Dec};
use crate::sources::sql::{
    BuiltQuery, Deadlines, Dialect, Emitter, From, SqlSource, Timeouts, build_query,
    channel_stream, lag_bound, resume_from, schema_and_table, sqlx_error,
};
use crate::{Batch, BatchStream, Checkpoint, CursorValue, Error, Extractor, Result};
use arrow_array::builder::{ArrayBuilder, make_builder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{Schema, SchemaRef};
use async_trait::async_trait;
use futures::TryStreamExt;
use sqlx::mysql::{MySqlArguments, MySqlConnection, MySqlPool};
use sqlx::{Arguments, Column, ConnectOptions, Executor, Row, TypeInfo, ValueRef};
use std::collections::HashMap;
use std::sync::Arc;

fn my_err(e: sqlx::Error, what: &str) -> Error {
    sqlx_error("mysql", e, what)
}

/// Extracts a MySQL or MariaDB table or query, fully or incrementally, streaming with
/// flat memory inside one `REPEATABLE READ` transaction started `WITH CONSISTENT
/// SNAPSHOT`, in a UTC session (so `TIMESTAMP` values and bounds are UTC).
///
/// See [`types`](super::types) for the mapping to Arrow.
///
/// ```no_run
/// # async fn f() -> tributary::Result<()> {
/// use tributary::sources::mysql::MySqlExtractor;
/// use tributary::sources::sql::{Cursor, SqlSource};
/// let orders = MySqlExtractor::connect_lazy(
///     "mysql://etl:secret@db/shop",
///     SqlSource::table("Orders").incremental(Cursor::new("LastUpdated")),
/// )?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct MySqlExtractor {
    pool: MySqlPool,
    pub(super) source: SqlSource,
    timeouts: Timeouts,
}

pub(crate) struct Prepared {
    source: SqlSource,
    pub(crate) sql: String,
    pub(crate) binds: Vec<CursorValue>,
    pub(crate) decoders: Vec<Dec>,
    pub(crate) schema: SchemaRef,
}

impl MySqlExtractor {
    /// Read `source` through `pool` (its connect options; each extraction opens its own
    /// connection for its snapshot).
    pub fn new(pool: MySqlPool, source: SqlSource) -> Self {
        MySqlExtractor {
            pool,
            source,
            timeouts: Timeouts::default(),
        }
    }

    /// Time limits for connecting and for each read (defaults: 30 s, 10 minutes). A
    /// MySQL client waits for the server's greeting, so a port where some other server
    /// waits for the client (PostgreSQL) fails on the connect limit.
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    pub(crate) fn deadlines(&self) -> Deadlines {
        let o = self.pool.connect_options();
        Deadlines::new(
            "mysql",
            "MySQL/MariaDB",
            o.get_host(),
            o.get_port(),
            self.timeouts,
        )
    }

    /// The same connection settings reading another source.
    #[cfg(feature = "mysql-cdc")]
    pub(crate) fn with_source(&self, source: SqlSource) -> Self {
        MySqlExtractor {
            pool: self.pool.clone(),
            source,
            timeouts: self.timeouts,
        }
    }

    /// Connect on first use to a `mysql://` URL (MariaDB too).
    pub fn connect_lazy(url: &str, source: SqlSource) -> Result<Self> {
        let pool = sqlx::mysql::MySqlPoolOptions::new()
            .max_connections(4)
            .connect_lazy(url)
            .map_err(|e| {
                Error::config(
                    "mysql",
                    format!("invalid URL {}: {e}", crate::redact_url(url)),
                )
            })?;
        Ok(Self::new(pool, source))
    }

    pub(crate) async fn connection(&self) -> Result<MySqlConnection> {
        let deadlines = self.deadlines();
        let opts = self.pool.connect_options();
        deadlines
            .connect(async {
                let mut conn = opts
                    .connect()
                    .await
                    .map_err(|e| my_err(e, &format!("connecting to {}", deadlines.addr())))?;
                // UTC, so TIMESTAMP values and bounds mean the same instant everywhere; a
                // long write timeout, so a slow sink does not make the server abort the stream.
                for stmt in [
                    "SET time_zone = '+00:00', SESSION net_write_timeout = 3600",
                    "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
                ] {
                    conn.execute(stmt)
                        .await
                        .map_err(|e| my_err(e, "configuring the session"))?;
                }
                Ok(conn)
            })
            .await?
    }

    /// Exact column types of a table source from `information_schema` (DECIMAL precision
    /// and scale, MariaDB's JSON columns). Empty for query sources or if unreadable.
    async fn table_info(
        conn: &mut MySqlConnection,
        source: &SqlSource,
    ) -> HashMap<String, ColumnInfo> {
        let From::Table(table) = &source.from else {
            return HashMap::new();
        };
        let (schema, name) = schema_and_table(table);
        let mut out = HashMap::new();
        use super::types::{json_valid_column, text};
        let rows = sqlx::query(
            "SELECT COLUMN_NAME, CAST(NUMERIC_PRECISION AS CHAR), CAST(NUMERIC_SCALE AS CHAR), DATA_TYPE \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?",
        )
        .bind(schema)
        .bind(name)
        .fetch_all(&mut *conn)
        .await
        .unwrap_or_default();
        for row in &rows {
            let Some(c) = text(row, 0) else { continue };
            out.insert(
                c.to_ascii_lowercase(),
                ColumnInfo {
                    precision: text(row, 1).and_then(|v| v.parse().ok()),
                    scale: text(row, 2).and_then(|v| v.parse().ok()),
                    json: false,
                    data_type: text(row, 3).map(|t| t.to_ascii_lowercase()),
                },
            );
        }
        // MariaDB's JSON is LONGTEXT with CHECK (json_valid(`col`)).
        let rows = sqlx::query(
            "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS \
             WHERE CONSTRAINT_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?",
        )
        .bind(schema)
        .bind(name)
        .fetch_all(&mut *conn)
        .await
        .unwrap_or_default();
        for row in &rows {
            let Some(clause) = text(row, 0) else { continue };
            if let Some(col) = json_valid_column(&clause) {
                out.entry(col.to_ascii_lowercase()).or_default().json = true;
            }
        }
        out
    }

    /// The primary key's columns of `table` (`schema.table` or the connection's
    /// database), in key order; empty when it has none.
    async fn primary_key(conn: &mut MySqlConnection, table: &str) -> Result<Vec<String>> {
        let (schema, name) = schema_and_table(table);
        let rows = sqlx::query(
            "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
             WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ? \
             AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION",
        )
        .bind(schema)
        .bind(name)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| my_err(e, "reading the table's primary key"))?;
        Ok(rows
            .iter()
            .filter_map(|r| super::types::text(r, 0))
            .collect())
    }

    pub(crate) async fn prepare(
        &self,
        conn: &mut MySqlConnection,
        from: Option<&crate::Watermark>,
    ) -> Result<Prepared> {
        let plain = build_query(&self.source, Dialect::MySql, None, None)?;
        let described = conn
            .describe(&plain.sql)
            .await
            .map_err(|e| my_err(e, "preparing the query"))?;
        let info = Self::table_info(conn, &self.source).await;
        let columns = described.columns();
        let mut source = self.source.clone();
        if let Some(t) = source.table_needing_key() {
            let key = Self::primary_key(conn, t).await?;
            let names: Vec<String> = columns.iter().map(|c| c.name().to_string()).collect();
            source = source.keyed_by_table(key, &names);
        }
        let decoders = columns
            .iter()
            .map(|c| {
                Dec::for_type(
                    c.type_info().name(),
                    c.name(),
                    info.get(&c.name().to_ascii_lowercase()),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let fields: Vec<_> = columns
            .iter()
            .zip(&decoders)
            .enumerate()
            .map(|(i, (c, d))| d.field(c.name(), described.nullable(i).unwrap_or(true)))
            .collect();
        if let Some(c) = &self.source.cursor {
            let col = columns
                .iter()
                .zip(&decoders)
                .find(|(x, _)| x.name().eq_ignore_ascii_case(&c.column))
                .ok_or_else(|| Error::NotFound {
                    component: "mysql".into(),
                    message: format!("cursor column {:?} is not in the result", c.column),
                    source: None,
                })?;
            if c.lag.is_some() && !matches!(col.1, Dec::Date | Dec::DateTime | Dec::Timestamp) {
                return Err(Error::config(
                    "mysql",
                    format!(
                        "a lag needs a DATE, DATETIME or TIMESTAMP cursor; {} is {}",
                        c.column,
                        col.0.type_info().name()
                    ),
                ));
            }
        }
        let upper = lag_bound(&source).map(CursorValue::TimestampTz);
        let BuiltQuery { sql, binds } = build_query(&source, Dialect::MySql, from, upper)?;
        Ok(Prepared {
            source,
            sql,
            binds,
            decoders,
            schema: Arc::new(Schema::new(fields)),
        })
    }
}

pub(crate) fn text_args(binds: &[CursorValue]) -> Result<MySqlArguments> {
    let mut args = MySqlArguments::default();
    for v in binds {
        // MySQL converts a text parameter to the column's type in the comparison.
        let text = match v {
            CursorValue::Timestamp(t) => t.format("%Y-%m-%d %H:%M:%S%.f").to_string(),
            CursorValue::TimestampTz(t) => t.format("%Y-%m-%d %H:%M:%S%.f").to_string(),
            other => other.to_string(),
        };
        args.add(text)
            .map_err(|e| Error::type_error("mysql", format!("binding {v}: {e}")))?;
    }
    Ok(args)
}

#[async_trait]
impl Extractor for MySqlExtractor {
    fn source(&self) -> &str {
        "mysql"
    }

    fn stream(&self) -> &str {
        self.source.stream_name()
    }

    async fn check(&self) -> Result<()> {
        let mut conn = self.connection().await?;
        self.prepare(&mut conn, None).await.map(|_| ())
    }

    async fn plan(&self, cx: &crate::ExtractContext) -> Result<Option<crate::Plan>> {
        super::plan::plan(self, cx.checkpoint.as_ref())
            .await
            .map(Some)
    }

    fn capabilities(&self) -> crate::ExtractorCapabilities {
        crate::ExtractorCapabilities::bounded().with_plans(true)
    }

    async fn open(&self, cx: crate::ExtractContext) -> Result<crate::Extraction> {
        Ok(crate::Extraction::new(self.batches(cx.checkpoint).await?))
    }
}

impl MySqlExtractor {
    /// The batches after `from` (what [`Extractor::open`] hands on).
    async fn batches(&self, from: Option<Checkpoint>) -> Result<BatchStream> {
        if let (Some((column, n)), None) = (&self.source.partition, &self.source.cursor) {
            if from.is_some() {
                return Err(Error::config(
                    "mysql",
                    "a partitioned full extraction cannot resume from a checkpoint",
                ));
            }
            return self.extract_partitioned(column, *n).await;
        }
        let watermark = resume_from("mysql", &self.source, from.as_ref())?;
        let mut conn = self.connection().await?;
        let Prepared {
            source,
            sql,
            binds,
            decoders,
            schema,
        } = self.prepare(&mut conn, watermark.as_ref()).await?;
        let args = text_args(&binds)?;
        let batch_rows = self.source.batch_rows;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Batch>>(2);
        // The prepared source: its cursor may have the table's primary key as its key.
        let mut emitter = Emitter::new(&source, watermark.as_ref(), tx);
        let deadlines = self.deadlines();
        tokio::spawn(async move {
            let shape = Shape {
                schema: &schema,
                decoders: &decoders,
                batch_rows,
            };
            let out = Out::Emitter(&mut emitter);
            let result = stream_rows(&mut conn, (&sql, args), shape, &deadlines, out).await;
            if let Err(e) = result {
                emitter.fail(e).await;
            }
        });
        Ok(channel_stream(rx))
    }
}

/// Where finished batches go.
pub(crate) enum Out<'a> {
    /// Through the watermark logic (plain and incremental extractions).
    Emitter(&'a mut Emitter),
    /// Straight to the consumer, tagged with a partition.
    Partition(tokio::sync::mpsc::Sender<Result<Batch>>, u32),
    /// Straight to the consumer, each batch made by a function of the rows (the change
    /// rows of a CDC snapshot).
    #[cfg(feature = "mysql-cdc")]
    Wrap(
        tokio::sync::mpsc::Sender<Result<Batch>>,
        &'a (dyn Fn(RecordBatch) -> Result<Batch> + Sync),
    ),
}

impl Out<'_> {
    /// `Ok(false)` when the consumer has gone away.
    async fn emit(&mut self, rb: RecordBatch) -> Result<bool> {
        match self {
            Out::Emitter(e) => e.emit(rb).await,
            Out::Partition(tx, p) => {
                Ok(tx.send(Ok(Batch::new(rb).with_partition(*p))).await.is_ok())
            }
            #[cfg(feature = "mysql-cdc")]
            Out::Wrap(tx, f) => Ok(tx.send(Ok(f(rb)?)).await.is_ok()),
        }
    }
}

/// What the rows look like and how many go in a batch.
pub(crate) struct Shape<'a> {
    pub(crate) schema: &'a SchemaRef,
    pub(crate) decoders: &'a [Dec],
    pub(crate) batch_rows: usize,
}

/// Stream the rows of `sql` in one consistent snapshot, handing each finished batch on.
async fn stream_rows(
    conn: &mut MySqlConnection,
    query: (&str, MySqlArguments),
    shape: Shape<'_>,
    deadlines: &Deadlines,
    out: Out<'_>,
) -> Result<()> {
    conn.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        .await
        .map_err(|e| my_err(e, "starting a snapshot"))?;
    if !read_rows(conn, query, shape, deadlines, out).await? {
        return Ok(());
    }
    conn.execute("COMMIT")
        .await
        .map_err(|e| my_err(e, "ending the snapshot"))?;
    Ok(())
}

/// Read the rows of `sql` in the connection's current transaction, handing each finished
/// batch on; `Ok(false)` when the consumer went away.
pub(crate) async fn read_rows(
    conn: &mut MySqlConnection,
    (sql, args): (&str, MySqlArguments),
    shape: Shape<'_>,
    deadlines: &Deadlines,
    mut out: Out<'_>,
) -> Result<bool> {
    let Shape {
        schema,
        decoders,
        batch_rows,
    } = shape;
    let mut builders: Vec<Box<dyn ArrayBuilder>> = schema
        .fields()
        .iter()
        .map(|f| make_builder(f.data_type(), batch_rows))
        .collect();
    let finish = |builders: &mut Vec<Box<dyn ArrayBuilder>>| -> Result<RecordBatch> {
        let cols: Vec<ArrayRef> = builders.iter_mut().map(|b| b.finish()).collect();
        RecordBatch::try_new(schema.clone(), cols)
            .map_err(|e| Error::type_error("mysql", format!("building a batch: {e}")))
    };
    let mut n = 0;
    {
        let mut rows = sqlx::query_with(sql, args).fetch(&mut *conn);
        while let Some(row) = deadlines
            .read(rows.try_next(), "reading rows")
            .await?
            .map_err(|e| my_err(e, "reading rows"))?
        {
            for (i, (dec, b)) in decoders.iter().zip(builders.iter_mut()).enumerate() {
                let raw = row
                    .try_get_raw(i)
                    .map_err(|e| my_err(e, "reading a value"))?;
                let v = if raw.is_null() { None } else { Some(raw) };
                dec.append(b.as_mut(), v, schema.field(i).name())?;
            }
            n += 1;
            if n == batch_rows {
                n = 0;
                if !out.emit(finish(&mut builders)?).await? {
                    return Ok(false);
                }
            }
        }
    }
    if n > 0 && !out.emit(finish(&mut builders)?).await? {
        return Ok(false);
    }
    Ok(true)
}

impl MySqlExtractor {
    /// A full extraction in parallel ranges of `column`, each range in a consistent
    /// snapshot of its own (MySQL cannot share one between connections).
    async fn extract_partitioned(&self, column: &str, n: u32) -> Result<BatchStream> {
        use crate::sources::sql::{KeyKind, partition_query, split_bounds};
        let mut coord = self.connection().await?;
        let prep = self.prepare(&mut coord, None).await?;
        let (field, dec) = prep
            .schema
            .fields()
            .iter()
            .zip(&prep.decoders)
            .find(|(f, _)| f.name().eq_ignore_ascii_case(column))
            .ok_or_else(|| Error::NotFound {
                component: "mysql".into(),
                message: format!("partition column {column:?} is not in the result"),
                source: None,
            })?;
        let kind = match dec {
            Dec::I8 | Dec::I16 | Dec::I32 | Dec::I64 | Dec::U8 | Dec::U16 | Dec::U32 | Dec::U64 => {
                KeyKind::Int
            }
            Dec::Date => KeyKind::Date,
            Dec::DateTime | Dec::Timestamp => KeyKind::Timestamp,
            _ => {
                return Err(Error::config(
                    "mysql",
                    format!(
                        "partition column {column} must be an integer, date or timestamp column"
                    ),
                ));
            }
        };
        let column = field.name().clone();
        let plain = build_query(&prep.source, Dialect::MySql, None, None)?;
        let q = Dialect::MySql.quote_ident(&column);
        let row = sqlx::query(&format!(
            "SELECT CAST(MIN(q.{q}) AS CHAR), CAST(MAX(q.{q}) AS CHAR) FROM ({}) AS q",
            plain.sql
        ))
        .fetch_one(&mut coord)
        .await
        .map_err(|e| my_err(e, "finding the partition range"))?;
        let text = |i: usize| super::types::text(&row, i);
        let bounds = match (text(0), text(1)) {
            (Some(l), Some(h)) => split_bounds(kind, &l, &h, n, &column)?,
            _ => Vec::new(),
        };
        let parts = bounds.len() + 1;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Batch>>(2 * parts);
        for i in 0..parts {
            let BuiltQuery { sql, binds } =
                partition_query(&prep.source, Dialect::MySql, &column, &bounds, i, None)?;
            let args = text_args(&binds)?;
            let (me, tx) = (self.clone(), tx.clone());
            let (schema, decoders, batch_rows) = (
                prep.schema.clone(),
                prep.decoders.clone(),
                self.source.batch_rows,
            );
            tokio::spawn(async move {
                let result: Result<()> = async {
                    let mut conn = me.connection().await?;
                    let out = Out::Partition(tx.clone(), i as u32);
                    let shape = Shape {
                        schema: &schema,
                        decoders: &decoders,
                        batch_rows,
                    };
                    stream_rows(&mut conn, (&sql, args), shape, &me.deadlines(), out).await
                }
                .await;
                if let Err(e) = result {
                    let _ = tx.send(Err(e)).await;
                }
            });
        }
        drop(tx);
        Ok(channel_stream(rx))
    }
}
