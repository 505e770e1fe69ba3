use super::types::{BatchBuilder, schema};
use crate::sources::sql::{
    BuiltQuery, Dialect, Emitter, SqlSource, build_query, channel_stream, lag_bound, resume_from,
    schema_and_table,
};
use crate::{Batch, BatchStream, Checkpoint, CursorValue, Error, Extractor, Result};
use async_trait::async_trait;
use futures::TryStreamExt;
use sqlx::sqlite::{SqliteArguments, SqlitePool};
use sqlx::{Arguments, Executor};

/// Extracts a SQLite table or query, fully or incrementally, inside one read
/// transaction (one consistent snapshot).
///
/// See the [crate docs](crate) for a complete example.
#[derive(Debug, Clone)]
pub struct SqliteExtractor {
    pool: SqlitePool,
    source: SqlSource,
}

impl SqliteExtractor {
    /// Read `source` through `pool`.
    pub fn new(pool: SqlitePool, source: SqlSource) -> Self {
        SqliteExtractor { pool, source }
    }

    /// Connect lazily to a SQLite URL (`sqlite://path.db`, `sqlite::memory:`).
    pub fn connect_lazy(url: &str, source: SqlSource) -> Result<Self> {
        let pool = SqlitePool::connect_lazy(url)
            .map_err(|e| Error::config("sqlite", format!("invalid URL {url:?}: {e}")))?;
        Ok(Self::new(pool, source))
    }
}

impl SqliteExtractor {
    /// The source, its cursor keyed by the table's primary key when it names no key.
    async fn keyed_source(&self) -> Result<SqlSource> {
        let source = self.source.clone();
        let Some(table) = source.table_needing_key() else {
            return Ok(source);
        };
        let (schema, name) = schema_and_table(table);
        // `pk` is the column's place in the primary key, 0 for the other columns.
        let info: Vec<(String, i64)> =
            sqlx::query_as("SELECT name, pk FROM pragma_table_info(?1, ?2) ORDER BY pk")
                .bind(name)
                .bind(schema.unwrap_or("main"))
                .fetch_all(&self.pool)
                .await
                .map_err(|e| sqlx_error(e, "reading the table's primary key"))?;
        let key = info
            .iter()
            .filter(|(_, pk)| *pk > 0)
            .map(|(n, _)| n.clone())
            .collect();
        let names: Vec<String> = info.into_iter().map(|(n, _)| n).collect();
        Ok(source.keyed_by_table(key, &names))
    }
}

fn sqlx_error(e: sqlx::Error, what: &str) -> Error {
    crate::sources::sql::sqlx_error("sqlite", e, what)
}

fn arguments(binds: &[CursorValue]) -> Result<SqliteArguments<'static>> {
    let mut args = SqliteArguments::default();
    for v in binds {
        let r = match v.clone() {
            CursorValue::Int(i) => args.add(i),
            CursorValue::Float(f) => args.add(f),
            CursorValue::Decimal(s) | CursorValue::Text(s) | CursorValue::ObjectId(s) => {
                args.add(s)
            }
            CursorValue::Date(d) => args.add(d.format("%Y-%m-%d").to_string()),
            CursorValue::Timestamp(t) => args.add(t.format("%Y-%m-%d %H:%M:%S%.f").to_string()),
            CursorValue::TimestampTz(t) => args.add(t.format("%Y-%m-%d %H:%M:%S%.f").to_string()),
        };
        r.map_err(|e| Error::type_error("sqlite", format!("binding {v}: {e}")))?;
    }
    Ok(args)
}

#[async_trait]
impl Extractor for SqliteExtractor {
    fn source(&self) -> &str {
        "sqlite"
    }

    fn stream(&self) -> &str {
        self.source.stream_name()
    }

    async fn check(&self) -> Result<()> {
        let q = build_query(&self.source, Dialect::Sqlite, None, None)?;
        self.pool
            .describe(&q.sql)
            .await
            .map_err(|e| sqlx_error(e, "checking the query"))?;
        Ok(())
    }

    async fn plan(&self, cx: &crate::ExtractContext) -> Result<Option<crate::Plan>> {
        let watermark = resume_from("sqlite", &self.source, cx.checkpoint.as_ref())?;
        let source = self.keyed_source().await?;
        let upper = lag_bound(&source)
            .map(|t| CursorValue::Text(t.format("%Y-%m-%d %H:%M:%S").to_string()));
        let BuiltQuery { sql, binds } =
            build_query(&source, Dialect::Sqlite, watermark.as_ref(), upper)?;
        // Embedded, so the count is exact and cheap enough for a dry run.
        let count: i64 =
            sqlx::query_scalar_with(&format!("SELECT COUNT(*) FROM ({sql})"), arguments(&binds)?)
                .fetch_one(&self.pool)
                .await
                .map_err(|e| sqlx_error(e, "counting the rows"))?;
        Ok(Some(crate::Plan::new(
            sql,
            binds.iter().map(ToString::to_string).collect(),
            Some(count.max(0) as u64),
        )))
    }

    fn capabilities(&self) -> crate::ExtractorCapabilities {
        crate::ExtractorCapabilities::bounded().with_plans(true)
    }

    async fn open(&self, cx: crate::ExtractContext) -> Result<crate::Extraction> {
        Ok(crate::Extraction::new(self.batches(cx.checkpoint).await?))
    }
}

impl SqliteExtractor {
    /// The batches after `from` (what [`Extractor::open`] hands on).
    async fn batches(&self, from: Option<Checkpoint>) -> Result<BatchStream> {
        let watermark = resume_from("sqlite", &self.source, from.as_ref())?;
        let source = self.keyed_source().await?;
        let upper = lag_bound(&source)
            .map(|t| CursorValue::Text(t.format("%Y-%m-%d %H:%M:%S").to_string()));
        let BuiltQuery { sql, binds } =
            build_query(&source, Dialect::Sqlite, watermark.as_ref(), upper)?;
        // Errors knowable up front (missing table or column, bad SQL) come from here,
        // before the stream starts.
        let described = self
            .pool
            .describe(&sql)
            .await
            .map_err(|e| sqlx_error(e, "preparing the query"))?;
        let schema = schema(described.columns());
        let args = arguments(&binds)?;
        let batch_rows = self.source.batch_rows;
        let pool = self.pool.clone();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Batch>>(2);
        let mut emitter = Emitter::new(&source, watermark.as_ref(), tx);
        tokio::spawn(async move {
            let result: Result<()> = async {
                let mut conn = pool
                    .begin()
                    .await
                    .map_err(|e| sqlx_error(e, "starting a read transaction"))?;
                let mut rows = sqlx::query_with(&sql, args).fetch(&mut *conn);
                let mut builder = BatchBuilder::new(schema.clone(), batch_rows);
                loop {
                    let row = rows
                        .try_next()
                        .await
                        .map_err(|e| sqlx_error(e, "reading rows"))?;
                    if let Some(row) = &row {
                        builder.push(row)?;
                    }
                    if (builder.len() >= batch_rows || (row.is_none() && builder.len() > 0))
                        && !emitter.emit(builder.finish()?).await?
                    {
                        return Ok(()); // the consumer went away
                    }
                    if row.is_none() {
                        return Ok(());
                    }
                }
            }
            .await;
            if let Err(e) = result {
                emitter.fail(e).await;
            }
        });
        Ok(channel_stream(rx))
    }
}
