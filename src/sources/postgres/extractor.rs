use super::rows::Builders;
use super::types::Dec;
use crate::sources::sql::{
    BuiltQuery, Deadlines, Dialect, Emitter, From, SqlSource, Timeouts, build_query,
    build_query_casts, channel_stream, lag_bound, resume_from, sqlx_error,
};
use crate::{Batch, BatchStream, Checkpoint, CursorValue, Error, Extractor, Result};
use arrow_schema::{Schema, SchemaRef};
use async_trait::async_trait;
use futures::TryStreamExt;
use sqlx::postgres::{PgArguments, PgConnection, PgPool};
use sqlx::{Arguments, Column, Executor, TypeInfo};
use std::sync::Arc;

pub(super) fn pg_err(e: sqlx::Error, what: &str) -> Error {
    sqlx_error("postgres", e, what)
}

/// A failed connect. A server of another kind on the port (MySQL sends its greeting
/// first) shows up as a protocol error: say what it means.
fn connect_err(e: sqlx::Error, at: &Deadlines) -> Error {
    if let sqlx::Error::Protocol(m) = &e {
        return Error::Connection {
            component: "postgres".into(),
            message: format!(
                "{} did not answer in the PostgreSQL protocol ({m}): this is not a PostgreSQL \
                 server, check host and port",
                at.addr()
            ),
            source: Some(Box::new(e)),
        };
    }
    pg_err(e, &format!("connecting to {}", at.addr()))
}

/// Extracts a PostgreSQL table or query, fully or incrementally, streaming with flat
/// memory inside one `REPEATABLE READ READ ONLY` transaction (one consistent snapshot).
///
/// Values are decoded from PostgreSQL's binary format without loss; see
/// [`types`](super::types) for the mapping to Arrow.
///
/// **COPY fast path.** For a full extraction to CSV in a dialect PostgreSQL can write
/// itself ([`CsvDialect::matches_postgres_copy`](crate::format::CsvDialect::matches_postgres_copy),
/// no header), the pipeline asks this extractor to run `COPY (SELECT ...) TO STDOUT` in
/// the same snapshot and streams its bytes straight to the sink: no Arrow, no decoding,
/// and the same bytes as the typed path (tested). Incremental extractions, batch
/// validators and other formats use the typed path.
///
/// ```no_run
/// # async fn f() -> tributary::Result<()> {
/// use tributary::sources::postgres::PostgresExtractor;
/// use tributary::sources::sql::{Cursor, SqlSource};
/// let orders = PostgresExtractor::connect_lazy(
///     "postgres://etl@db/shop",
///     SqlSource::table("public.orders").incremental(Cursor::new("last_updated").with_key(["id"])),
/// )?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PostgresExtractor {
    pool: PgPool,
    pub(crate) source: SqlSource,
    pub(super) copy: bool,
    timeouts: Timeouts,
}

/// What the query returns, learned before the stream starts.
pub(crate) struct Prepared {
    /// The source with names resolved against the catalog.
    pub(super) source: SqlSource,
    pub(crate) sql: String,
    pub(crate) binds: Vec<CursorValue>,
    pub(crate) decoders: Vec<Dec>,
    pub(crate) schema: SchemaRef,
}

impl PostgresExtractor {
    /// Read `source` through `pool`.
    pub fn new(pool: PgPool, source: SqlSource) -> Self {
        PostgresExtractor {
            pool,
            source,
            copy: true,
            timeouts: Timeouts::default(),
        }
    }

    /// The same connection settings reading another source.
    #[cfg(feature = "postgres-cdc")]
    pub(crate) fn with_source(&self, source: SqlSource) -> Self {
        PostgresExtractor {
            source,
            ..self.clone()
        }
    }

    /// Time limits for connecting and for each read (defaults: 30 s, 10 minutes).
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    pub(crate) fn deadlines(&self) -> Deadlines {
        let o = self.pool.connect_options();
        Deadlines::new(
            "postgres",
            "PostgreSQL",
            o.get_host(),
            o.get_port(),
            self.timeouts,
        )
    }

    /// A pool that connects on first use to a `postgres://` URL.
    pub fn connect_lazy(url: &str, source: SqlSource) -> Result<Self> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(std::time::Duration::from_secs(30))
            .connect_lazy(url)
            .map_err(|e| {
                Error::config(
                    "postgres",
                    format!("invalid URL {}: {e}", crate::redact_url(url)),
                )
            })?;
        Ok(Self::new(pool, source))
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub(crate) async fn connection(&self) -> Result<PgConnection> {
        // A connection of its own (not from the pool): it holds a long transaction, and an
        // unreachable server fails at once instead of after the pool's acquire timeout.
        use sqlx::ConnectOptions;
        let deadlines = self.deadlines();
        let opts = self.pool.connect_options();
        deadlines
            .connect(async {
                let mut conn = opts
                    .connect()
                    .await
                    .map_err(|e| connect_err(e, &deadlines))?;
                // Fixed session settings: values and text output do not depend on the
                // server's or the role's defaults.
                conn.execute(
                    "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'iso_8601'; \
                          SET extra_float_digits = 1; SET bytea_output = 'hex'",
                )
                .await
                .map_err(|e| pg_err(e, "configuring the session"))?;
                Ok(conn)
            })
            .await?
    }

    /// Type modifiers of the query's columns (numeric precision and scale), from a
    /// temporary view; `-1` each when the view cannot be made (e.g. on a hot standby).
    async fn typmods(conn: &mut PgConnection, sql: &str, n: usize) -> Vec<i32> {
        let view = format!(
            "tributary_probe_{}_{}",
            std::process::id(),
            chrono::Utc::now()
                .timestamp_nanos_opt()
                .unwrap_or_default()
                .rem_euclid(1 << 40)
        );
        let probe = async {
            conn.execute(format!("CREATE TEMP VIEW {view} AS {sql}").as_str())
                .await?;
            let mods: Vec<i32> = sqlx::query_scalar(
                "SELECT atttypmod FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 \
                 AND NOT attisdropped ORDER BY attnum",
            )
            .bind(format!("pg_temp.{view}"))
            .fetch_all(&mut *conn)
            .await?;
            conn.execute(format!("DROP VIEW pg_temp.{view}").as_str())
                .await?;
            Ok::<_, sqlx::Error>(mods)
        };
        match probe.await {
            Ok(m) if m.len() == n => m,
            _ => vec![-1; n],
        }
    }

    /// Resolve names as PostgreSQL would have if the user had typed them unquoted: the
    /// book's `Orders`/`LastUpdated` are `orders`/`lastupdated` in the catalog. Exact
    /// names win; otherwise the folded or the one case-insensitive match is used.
    async fn resolve(&self, conn: &mut PgConnection) -> Result<SqlSource> {
        let mut source = self.source.clone();
        if let From::Table(t) = &source.from {
            let quoted = Dialect::Postgres.quote_ident(t);
            let folded = t.to_ascii_lowercase();
            let found: (Option<String>, Option<String>) =
                sqlx::query_as("SELECT to_regclass($1)::text, to_regclass($2)::text")
                    .bind(&quoted)
                    .bind(&folded)
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap_or((None, None));
            if found.0.is_none() && found.1.is_some() {
                source.from = From::Table(folded);
            }
        }
        let everything = SqlSource {
            columns: vec![],
            cursor: None,
            ..source.clone()
        };
        let all = build_query(&everything, Dialect::Postgres, None, None)?;
        let Ok(described) = conn.describe(&all.sql).await else {
            return Ok(source);
        };
        let names: Vec<String> = described
            .columns()
            .iter()
            .map(|c| c.name().to_string())
            .collect();
        let fix = |n: &mut String| {
            if names.iter().any(|x| x == n) {
                return;
            }
            let matches: Vec<&String> =
                names.iter().filter(|x| x.eq_ignore_ascii_case(n)).collect();
            if let [one] = matches.as_slice() {
                *n = (*one).clone();
            }
        };
        source.columns.iter_mut().for_each(fix);
        if let Some(c) = source.cursor.as_mut() {
            fix(&mut c.column);
            c.key.iter_mut().for_each(fix);
        }
        if let Some(t) = source.table_needing_key() {
            let key = Self::primary_key(conn, t).await?;
            source = source.keyed_by_table(key, &names);
        }
        Ok(source)
    }

    /// The primary key's columns of `table`, in key order (empty when it has none).
    async fn primary_key(conn: &mut PgConnection, table: &str) -> Result<Vec<String>> {
        sqlx::query_scalar(
            "SELECT a.attname::text FROM pg_index i \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE i.indrelid = to_regclass($1) AND i.indisprimary \
             ORDER BY array_position(i.indkey::int2[], a.attnum)",
        )
        .bind(Dialect::Postgres.quote_ident(table))
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| pg_err(e, "reading the table's primary key"))
    }

    pub(crate) async fn prepare(
        &self,
        conn: &mut PgConnection,
        from: Option<&crate::Watermark>,
    ) -> Result<Prepared> {
        let resolved = self.resolve(conn).await?;
        let source = &resolved;
        // Describe the query without its bounds first: the columns, their types, and the
        // cursor's type (the bounds are bound as text and cast to it).
        let plain = build_query(source, Dialect::Postgres, None, None)?;
        let described = conn
            .describe(&plain.sql)
            .await
            .map_err(|e| pg_err(e, "preparing the query"))?;
        let columns = described.columns();
        let mods = Self::typmods(conn, &plain.sql, columns.len()).await;
        let decoders = columns
            .iter()
            .zip(&mods)
            .map(|(c, m)| Dec::for_type(c.type_info(), *m, c.name()))
            .collect::<Result<Vec<_>>>()?;
        let fields: Vec<_> = columns
            .iter()
            .zip(&decoders)
            .enumerate()
            .map(|(i, (c, d))| d.field(c.name(), described.nullable(i).unwrap_or(true)))
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let cast = match &source.cursor {
            Some(c) => {
                let col = columns
                    .iter()
                    .find(|x| x.name() == c.column)
                    .or_else(|| {
                        columns
                            .iter()
                            .find(|x| x.name().eq_ignore_ascii_case(&c.column))
                    })
                    .ok_or_else(|| Error::NotFound {
                        component: "postgres".into(),
                        message: format!("cursor column {:?} is not in the result", c.column),
                        source: None,
                    })?;
                let ty = col.type_info().name().to_ascii_lowercase();
                if c.lag.is_some() && !matches!(ty.as_str(), "timestamp" | "timestamptz" | "date") {
                    return Err(Error::config(
                        "postgres",
                        format!(
                            "a lag needs a date or timestamp cursor; {} is {ty}",
                            c.column
                        ),
                    ));
                }
                Some(ty)
            }
            None => None,
        };
        // The key columns' types, for a keyset position's bounds.
        let key_casts: Vec<String> = source
            .cursor
            .iter()
            .flat_map(|c| &c.key)
            .map(|k| {
                columns
                    .iter()
                    .find(|x| x.name() == k)
                    .or_else(|| columns.iter().find(|x| x.name().eq_ignore_ascii_case(k)))
                    .map(|x| x.type_info().name().to_ascii_lowercase())
                    .unwrap_or_else(|| "text".into())
            })
            .collect();
        let upper = lag_bound(source).map(CursorValue::TimestampTz);
        let BuiltQuery { sql, binds } = build_query_casts(
            source,
            Dialect::Postgres,
            from,
            upper,
            cast.as_deref(),
            &key_casts,
        )?;
        if from.is_some() || !binds.is_empty() {
            // The bounded query must prepare too (a bad cast shows up here).
            conn.describe(&sql)
                .await
                .map_err(|e| pg_err(e, "preparing the bounded query"))?;
        }
        Ok(Prepared {
            source: resolved.clone(),
            sql,
            binds,
            decoders,
            schema,
        })
    }
}

pub(crate) fn text_args(binds: &[CursorValue]) -> Result<PgArguments> {
    let mut args = PgArguments::default();
    for v in binds {
        let text = match v {
            CursorValue::Timestamp(t) => t.format("%Y-%m-%d %H:%M:%S%.f").to_string(),
            CursorValue::TimestampTz(t) => t.format("%Y-%m-%d %H:%M:%S%.f+00").to_string(),
            other => other.to_string(),
        };
        args.add(text)
            .map_err(|e| Error::type_error("postgres", format!("binding {v}: {e}")))?;
    }
    Ok(args)
}

impl PostgresExtractor {
    /// Allow (default) or forbid the `COPY` fast path for CSV output.
    pub fn with_copy(mut self, yes: bool) -> Self {
        self.copy = yes;
        self
    }
}

#[async_trait]
impl Extractor for PostgresExtractor {
    fn source(&self) -> &str {
        "postgres"
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

    async fn open_encoded(
        &self,
        cx: crate::ExtractContext,
        format: &dyn crate::format::Format,
    ) -> Result<Option<crate::model::EncodedStream>> {
        super::copy::extract_copy(self, cx.checkpoint.as_ref(), format).await
    }

    fn capabilities(&self) -> crate::ExtractorCapabilities {
        crate::ExtractorCapabilities::bounded()
            .with_plans(true)
            .with_encodes(true)
    }

    async fn open(&self, cx: crate::ExtractContext) -> Result<crate::Extraction> {
        Ok(crate::Extraction::new(self.batches(cx.checkpoint).await?))
    }
}

impl PostgresExtractor {
    /// The batches after `from` (what [`Extractor::open`] hands on).
    async fn batches(&self, from: Option<Checkpoint>) -> Result<BatchStream> {
        if let (Some((column, n)), None) = (&self.source.partition, &self.source.cursor) {
            if from.is_some() {
                return Err(Error::config(
                    "postgres",
                    "a partitioned full extraction cannot resume from a checkpoint",
                ));
            }
            return self.extract_partitioned(column, *n).await;
        }
        let watermark = resume_from("postgres", &self.source, from.as_ref())?;
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
            let result: Result<()> = async {
                conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    .await
                    .map_err(|e| pg_err(e, "starting a snapshot"))?;
                let mut builders = Builders::new(schema, decoders, batch_rows);
                {
                    let mut rows = sqlx::query_with(&sql, args).fetch(&mut conn);
                    while let Some(row) = deadlines
                        .read(rows.try_next(), "reading rows")
                        .await?
                        .map_err(|e| pg_err(e, "reading rows"))?
                    {
                        builders.push(&row)?;
                        if builders.full() && !emitter.emit(builders.finish()?).await? {
                            return Ok(()); // the consumer went away; dropping the connection ends the query
                        }
                    }
                }
                if builders.rows > 0 && !emitter.emit(builders.finish()?).await? {
                    return Ok(());
                }
                conn.execute("COMMIT")
                    .await
                    .map_err(|e| pg_err(e, "ending the snapshot"))?;
                Ok(())
            }
            .await;
            if let Err(e) = result {
                emitter.fail(e).await;
            }
        });
        Ok(channel_stream(rx))
    }
}

impl PostgresExtractor {
    /// A full extraction in parallel ranges of `column`, every range in one snapshot
    /// exported by a coordinating transaction.
    async fn extract_partitioned(&self, column: &str, n: u32) -> Result<BatchStream> {
        use crate::sources::sql::{KeyKind, partition_query, split_bounds};
        let mut coord = self.connection().await?;
        let prep = self.prepare(&mut coord, None).await?;
        let (field, dec) = prep
            .schema
            .fields()
            .iter()
            .zip(&prep.decoders)
            .find(|(f, _)| f.name() == column)
            .or_else(|| {
                prep.schema
                    .fields()
                    .iter()
                    .zip(&prep.decoders)
                    .find(|(f, _)| f.name().eq_ignore_ascii_case(column))
            })
            .ok_or_else(|| Error::NotFound {
                component: "postgres".into(),
                message: format!("partition column {column:?} is not in the result"),
                source: None,
            })?;
        let (kind, cast) = match dec {
            Dec::I16 | Dec::I32 | Dec::I64 => (KeyKind::Int, "int8"),
            Dec::Date => (KeyKind::Date, "date"),
            Dec::Ts => (KeyKind::Timestamp, "timestamp"),
            Dec::TsTz => (KeyKind::Timestamp, "timestamptz"),
            _ => {
                return Err(Error::config(
                    "postgres",
                    format!(
                        "partition column {column} must be an integer, date or timestamp column"
                    ),
                ));
            }
        };
        let column = field.name().clone();
        coord
            .execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await
            .map_err(|e| pg_err(e, "starting a snapshot"))?;
        let snapshot: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
            .fetch_one(&mut coord)
            .await
            .map_err(|e| pg_err(e, "exporting the snapshot"))?;
        let plain = build_query(&prep.source, Dialect::Postgres, None, None)?;
        let q = Dialect::Postgres.quote_ident(&column);
        let (lo, hi): (Option<String>, Option<String>) = sqlx::query_as(&format!(
            "SELECT MIN(q.{q})::text, MAX(q.{q})::text FROM ({}) AS q",
            plain.sql
        ))
        .fetch_one(&mut coord)
        .await
        .map_err(|e| pg_err(e, "finding the partition range"))?;
        let bounds = match (lo, hi) {
            (Some(l), Some(h)) => split_bounds(kind, &l, &h, n, &column)?,
            _ => Vec::new(),
        };
        let parts = bounds.len() + 1;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Batch>>(2 * parts);
        let mut imported = Vec::with_capacity(parts);
        for i in 0..parts {
            let BuiltQuery { sql, binds } = partition_query(
                &prep.source,
                Dialect::Postgres,
                &column,
                &bounds,
                i,
                Some(cast),
            )?;
            let args = text_args(&binds)?;
            let (ready, ready_rx) = tokio::sync::oneshot::channel::<()>();
            imported.push(ready_rx);
            let (me, tx, snapshot) = (self.clone(), tx.clone(), snapshot.clone());
            let (schema, decoders, batch_rows) = (
                prep.schema.clone(),
                prep.decoders.clone(),
                self.source.batch_rows,
            );
            tokio::spawn(async move {
                let result: Result<()> = async {
                    let mut conn = me.connection().await?;
                    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                        .await
                        .map_err(|e| pg_err(e, "starting a snapshot"))?;
                    conn.execute(format!("SET TRANSACTION SNAPSHOT '{snapshot}'").as_str())
                        .await
                        .map_err(|e| pg_err(e, "importing the snapshot"))?;
                    let _ = ready.send(());
                    let part = i as u32;
                    let wrap = move |rb| Ok(Batch::new(rb).with_partition(part));
                    let deadlines = me.deadlines();
                    if !super::rows::read_into(
                        &mut conn, &sql, args, schema, decoders, batch_rows, &deadlines, &tx, &wrap,
                    )
                    .await?
                    {
                        return Ok(());
                    }
                    conn.execute("COMMIT")
                        .await
                        .map_err(|e| pg_err(e, "ending the snapshot"))?;
                    Ok(())
                }
                .await;
                if let Err(e) = result {
                    let _ = tx.send(Err(e)).await;
                }
            });
        }
        // The exported snapshot lives as long as the exporting transaction: end it once
        // every range has imported it (or failed to).
        tokio::spawn(async move {
            for r in imported {
                let _ = r.await;
            }
            let _ = coord.execute("COMMIT").await;
        });
        drop(tx);
        Ok(channel_stream(rx))
    }
}
