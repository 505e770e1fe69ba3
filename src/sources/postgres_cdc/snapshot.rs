//! The initial snapshot: every selected table read in the snapshot the slot exported when
//! it was created, so that streaming from the slot's consistent point neither misses nor
//! repeats a change. Big tables are read in page (`ctid`) ranges on parallel connections,
//! each inside the same snapshot.

use super::rows::row_schema;
use super::server::{self, Table, err, lsn_text};
use super::session::Ctx;
use crate::model::{ChangeMeta, ChangeSchema, Op};
use crate::sources::postgres::types::Dec;
use crate::sources::sql::{Out, Prepared, SqlDriver, SqlSource};
use crate::{Batch, Error, Result};
use arrow_array::RecordBatch;
use std::sync::Arc;
use tokio::sync::mpsc::Sender;

/// Tables smaller than this many pages per reader are read in one query.
const MIN_PAGES_PER_RANGE: i64 = 1024;

/// Read every table of `ctx` as `snapshot` changes into `tx`, in exported snapshot
/// `snapshot` taken at `lsn`. `Ok(false)` when the consumer went away.
pub(crate) async fn snapshot(
    ctx: &Arc<Ctx>,
    snapshot: &str,
    lsn: u64,
    tx: &Sender<Result<Batch>>,
) -> Result<bool> {
    for table in &ctx.tables {
        if !read_table(ctx, table, snapshot, lsn, tx).await? {
            return Ok(false);
        }
    }
    Ok(true)
}

async fn read_table(
    ctx: &Arc<Ctx>,
    table: &Table,
    snapshot: &str,
    lsn: u64,
    tx: &Sender<Result<Batch>>,
) -> Result<bool> {
    let source = SqlSource::table(table.qualified());
    // Prepared outside the snapshot's transaction: the typed path probes type modifiers
    // with a temporary view, which a read-only transaction refuses.
    let mut conn = ctx.sql.connect().await?;
    let prep = ctx.sql.prepare(&mut conn, &source, None).await?;
    let keys = server::primary_key(&mut conn, table.oid).await?;
    let row = row_schema(
        prep.schema.fields().iter().map(|f| f.as_ref().clone()),
        &keys,
    );
    let change = Arc::new(ChangeSchema::new(row.clone(), ctx.config.cdc.options)?);
    let pages: i64 = sqlx::query_scalar(
        "SELECT (pg_relation_size($1::int8::oid) / current_setting('block_size')::int8)::int8",
    )
    .bind(table.oid as i64)
    .fetch_one(&mut conn)
    .await
    .map_err(|e| err(e, "reading a table's size"))?;
    let n = ctx
        .config
        .snapshot_parallelism
        .min((pages / MIN_PAGES_PER_RANGE).max(1) as usize)
        .max(1);
    let meta = ChangeMeta {
        position: Some(lsn_text(lsn)),
        ..ChangeMeta::default()
    };
    let name = table.qualified();
    let wrap = {
        let (row, change, name) = (row.clone(), change.clone(), name.clone());
        Arc::new(move |rb: RecordBatch| -> Result<Batch> {
            let rows = RecordBatch::try_new(row.clone(), rb.columns().to_vec()).map_err(|e| {
                Error::type_error("postgres-cdc", format!("table {name}: snapshot rows: {e}"))
            })?;
            let k = rows.num_rows();
            let b = change.build(
                &vec![Op::Snapshot; k],
                &vec![meta.clone(); k],
                &rows,
                None,
                &[],
            )?;
            Ok(Batch::new(b).with_table(name.clone()))
        })
    };
    if n == 1 {
        return read_range(&mut conn, &prep, None, snapshot, ctx, tx, &*wrap).await;
    }
    drop(conn);
    let step = pages / n as i64;
    let prep = Arc::new(prep);
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let lo = i as i64 * step;
        let hi = (i + 1 < n).then(|| (i as i64 + 1) * step);
        let (ctx, prep, tx, wrap) = (ctx.clone(), prep.clone(), tx.clone(), wrap.clone());
        let snapshot = snapshot.to_string();
        tasks.push(tokio::spawn(async move {
            let mut conn = ctx.sql.connect().await?;
            read_range(
                &mut conn,
                &prep,
                Some((lo, hi)),
                &snapshot,
                &ctx,
                &tx,
                &*wrap,
            )
            .await
        }));
    }
    let mut all = true;
    for t in tasks {
        match t.await {
            Ok(Ok(more)) => all &= more,
            Ok(Err(e)) => return Err(e),
            Err(e) => {
                return Err(Error::Connection {
                    component: "postgres-cdc".into(),
                    message: format!("a snapshot reader of {name} failed: {e}"),
                    source: None,
                });
            }
        }
    }
    Ok(all)
}

/// Read pages `lo..hi` of the table (all of it for `None`) inside the exported snapshot.
async fn read_range(
    conn: &mut sqlx::postgres::PgConnection,
    prep: &Prepared<Dec>,
    range: Option<(i64, Option<i64>)>,
    snapshot: &str,
    ctx: &Ctx,
    tx: &Sender<Result<Batch>>,
    wrap: &(dyn Fn(RecordBatch) -> Result<Batch> + Send + Sync),
) -> Result<bool> {
    ctx.sql.begin(conn, Some(snapshot)).await?;
    let sql = match range {
        None => prep.sql.clone(),
        Some((lo, hi)) => {
            let upper = hi
                .map(|h| format!(" AND ctid < '({h},0)'::tid"))
                .unwrap_or_default();
            format!("{} WHERE ctid >= '({lo},0)'::tid{upper}", prep.sql)
        }
    };
    let mut out = Out::Wrap(tx.clone(), wrap);
    let query = (sql.as_str(), prep.binds.as_slice());
    ctx.sql
        .read_and_commit(conn, query, prep, ctx.config.cdc.batch_rows, &mut out)
        .await
}
