//! [`SqliteDriver`]: how the shared SQL extraction reads an embedded SQLite database:
//! one deferred read transaction, types from each column's declared affinity, and an
//! exact row count for plans (it is in-process, so counting is cheap).

use super::types::schema;
use crate::sources::sql::extract::cursor_column;
use crate::sources::sql::{
    BuiltQuery, Columns, Deadlines, Dialect, KeyKind, Out, Prepared, SqlDriver, SqlSource,
    Timeouts, build_query, lag_bound, read_rows, schema_and_table, sqlx_error,
};
use crate::{CursorValue, Error, Result, Watermark};
use arrow_schema::DataType;
use async_trait::async_trait;
use sqlx::sqlite::{Sqlite, SqliteArguments, SqlitePool};
use sqlx::{Arguments, Executor, Transaction};

const C: &str = "sqlite";

fn err(e: sqlx::Error, what: &str) -> Error {
    sqlx_error(C, e, what)
}

/// A SQLite database's pool.
#[derive(Debug, Clone)]
pub(crate) struct SqliteDriver {
    pub(crate) pool: SqlitePool,
}

/// An extraction's hold on the database: its read transaction once begun (dropping it
/// rolls back, so a stream that ends early leaves no transaction open on the pool).
pub(crate) struct SqliteConn {
    tx: Option<Transaction<'static, Sqlite>>,
}

#[async_trait]
impl SqlDriver for SqliteDriver {
    type Conn = SqliteConn;
    /// SQLite's values are decoded by their column's Arrow type (its declared affinity).
    type Dec = DataType;
    const COMPONENT: &'static str = C;
    const DIALECT: Dialect = Dialect::Sqlite;

    fn deadlines(&self) -> Deadlines {
        let path = self
            .pool
            .connect_options()
            .get_filename()
            .display()
            .to_string();
        Deadlines::new(C, "SQLite", path, Timeouts::default())
    }

    async fn connect(&self) -> Result<SqliteConn> {
        Ok(SqliteConn { tx: None })
    }

    async fn prepare(
        &self,
        _conn: &mut SqliteConn,
        source: &SqlSource,
        from: Option<&Watermark>,
    ) -> Result<Prepared<DataType>> {
        let source = keyed(&self.pool, source).await?;
        let upper = lag_bound(&source).map(Self::lag_value);
        let BuiltQuery { sql, binds } = build_query(&source, Dialect::Sqlite, from, upper)?;
        // Errors knowable up front (missing table or column, bad SQL) come from here,
        // before the stream starts.
        let described = self
            .pool
            .describe(&sql)
            .await
            .map_err(|e| err(e, "preparing the query"))?;
        let schema = schema(described.columns());
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        cursor_column(C, &source, &names, |n| n)?;
        Ok(Prepared {
            source,
            sql,
            binds,
            decoders: schema
                .fields()
                .iter()
                .map(|f| f.data_type().clone())
                .collect(),
            schema,
        })
    }

    async fn begin(&self, conn: &mut SqliteConn, _snapshot: Option<&str>) -> Result<()> {
        let tx = self
            .pool
            .begin()
            .await
            .map_err(|e| err(e, "starting a read transaction"))?;
        conn.tx = Some(tx);
        Ok(())
    }

    async fn commit(&self, conn: &mut SqliteConn) -> Result<()> {
        if let Some(tx) = conn.tx.take() {
            tx.commit()
                .await
                .map_err(|e| err(e, "ending the read transaction"))?;
        }
        Ok(())
    }

    async fn read(
        &self,
        conn: &mut SqliteConn,
        (sql, binds): (&str, &[CursorValue]),
        prep: &Prepared<DataType>,
        batch_rows: usize,
        out: &mut Out<'_>,
    ) -> Result<bool> {
        let Some(tx) = conn.tx.as_mut() else {
            return Err(Error::config(C, "read outside a transaction"));
        };
        let mut rows = Columns::new(C, prep, batch_rows);
        let deadlines = self.deadlines();
        let args = arguments(binds)?;
        read_rows(
            &mut **tx, sql, args, &mut rows, batch_rows, &deadlines, C, out,
        )
        .await
    }

    fn partition_kind(_dec: &DataType) -> Option<(KeyKind, Option<&'static str>)> {
        None
    }

    /// One process reads an embedded database: ranges would only compete for it.
    fn partitions(&self) -> bool {
        false
    }

    async fn range(
        &self,
        _conn: &mut SqliteConn,
        _column: &str,
        _plain: &str,
    ) -> Result<(Option<String>, Option<String>)> {
        Ok((None, None))
    }

    /// Exact: embedded, so counting is cheap enough for a dry run.
    async fn estimate(
        &self,
        _conn: &mut SqliteConn,
        prep: &Prepared<DataType>,
    ) -> Result<Option<u64>> {
        let count: i64 = sqlx::query_scalar_with(
            &format!("SELECT COUNT(*) FROM ({})", prep.sql),
            arguments(&prep.binds)?,
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| err(e, "counting the rows"))?;
        Ok(Some(count.max(0) as u64))
    }

    /// SQLite keeps date-times as text; the bound compares as text.
    fn lag_value(t: chrono::DateTime<chrono::Utc>) -> CursorValue {
        CursorValue::Text(t.format("%Y-%m-%d %H:%M:%S").to_string())
    }
}

/// `source`, its cursor keyed by the table's primary key when it names no key.
async fn keyed(pool: &SqlitePool, source: &SqlSource) -> Result<SqlSource> {
    let source = source.clone();
    let Some(table) = source.table_needing_key() else {
        return Ok(source);
    };
    let (schema, name) = schema_and_table(table);
    // `pk` is the column's place in the primary key, 0 for the other columns.
    let info: Vec<(String, i64)> =
        sqlx::query_as("SELECT name, pk FROM pragma_table_info(?1, ?2) ORDER BY pk")
            .bind(name)
            .bind(schema.unwrap_or("main"))
            .fetch_all(pool)
            .await
            .map_err(|e| err(e, "reading the table's primary key"))?;
    let key = info
        .iter()
        .filter(|(_, pk)| *pk > 0)
        .map(|(n, _)| n.clone())
        .collect();
    let names: Vec<String> = info.into_iter().map(|(n, _)| n).collect();
    Ok(source.keyed_by_table(key, &names))
}

/// Binds in SQLite's own storage classes: integers and reals as numbers, the rest as text.
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
        r.map_err(|e| Error::type_error(C, format!("binding {v}: {e}")))?;
    }
    Ok(args)
}
