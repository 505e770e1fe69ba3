//! The initial snapshot: every selected table read in one consistent transaction whose
//! binlog position is known exactly, so that streaming from that position neither misses
//! nor repeats a change.

use super::extractor::Ctx;
use super::position::Position;
use super::server;
use crate::model::{ChangeMeta, ChangeSchema, Op, key_field};
use crate::sources::mysql::types::Dec;
use crate::sources::sql::{Out, Prepared, SqlDriver, SqlSource, sqlx_error};
use crate::{Batch, Error, Result};
use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use sqlx::{Executor, Row};
use std::sync::Arc;

fn err(e: sqlx::Error, what: &str) -> Error {
    sqlx_error("mysql-cdc", e, what)
}

/// Read `tables` as `snapshot` changes into `tx`. `Ok(None)` when the consumer went away.
///
/// MariaDB: `START TRANSACTION WITH CONSISTENT SNAPSHOT` and the `binlog_snapshot_file` /
/// `binlog_snapshot_position` status of that transaction, with no lock. MySQL has no such
/// status: `FLUSH TABLES WITH READ LOCK` is held only from before the transaction starts
/// until its position is read (milliseconds; it needs the `RELOAD` privilege).
pub(crate) async fn snapshot(
    ctx: &Ctx,
    tables: &[String],
    tx: &tokio::sync::mpsc::Sender<Result<Batch>>,
) -> Result<Option<Position>> {
    let mut conn = ctx.sql.connect().await?;
    if !ctx.facts.mariadb {
        conn.execute("FLUSH TABLES WITH READ LOCK")
            .await
            .map_err(|e| err(e, "locking tables for the snapshot's position"))?;
    }
    conn.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        .await
        .map_err(|e| err(e, "starting the snapshot"))?;
    let (file, pos) = if ctx.facts.mariadb {
        let rows = sqlx::query("SHOW STATUS LIKE 'binlog_snapshot_%'")
            .fetch_all(&mut conn)
            .await
            .map_err(|e| err(e, "reading the snapshot's binlog position"))?;
        let (mut file, mut pos) = (None, None);
        for r in &rows {
            let name: String = r.try_get(0).unwrap_or_default();
            let value: String = r.try_get(1).unwrap_or_default();
            match name.to_ascii_lowercase().as_str() {
                "binlog_snapshot_file" => file = Some(value),
                "binlog_snapshot_position" => pos = value.parse().ok(),
                _ => {}
            }
        }
        match (file, pos) {
            (Some(f), Some(p)) if !f.is_empty() => (f, p),
            _ => {
                return Err(Error::Prerequisite {
                    component: "mysql-cdc".into(),
                    message: "the server reports no binlog_snapshot_file/position: binary \
                              logging is off"
                        .into(),
                });
            }
        }
    } else {
        let at = server::current_end(&mut conn, &ctx.facts).await;
        conn.execute("UNLOCK TABLES")
            .await
            .map_err(|e| err(e, "unlocking tables"))?;
        at?
    };
    let meta = ChangeMeta {
        position: Some(format!("{file}:{pos}")),
        ..ChangeMeta::default()
    };
    let at = server::position_at(&mut conn, &ctx.facts, file, pos).await;
    for table in tables {
        let (prep, row) = typed(ctx, &mut conn, table).await?;
        let change = ChangeSchema::new(row.clone(), ctx.config.cdc.options)?;
        let wrap = |rb: RecordBatch| -> Result<Batch> {
            let rows = RecordBatch::try_new(row.clone(), rb.columns().to_vec()).map_err(|e| {
                Error::type_error("mysql-cdc", format!("table {table}: snapshot rows: {e}"))
            })?;
            let n = rows.num_rows();
            let b = change.build(
                &vec![Op::Snapshot; n],
                &vec![meta.clone(); n],
                &rows,
                None,
                &[],
            )?;
            Ok(Batch::new(b).with_table(table.clone()))
        };
        let query = (prep.sql.as_str(), prep.binds.as_slice());
        let mut out = Out::Wrap(tx.clone(), &wrap);
        if !ctx
            .sql
            .read(&mut conn, query, &prep, ctx.config.cdc.batch_rows, &mut out)
            .await?
        {
            return Ok(None);
        }
    }
    conn.execute("COMMIT")
        .await
        .map_err(|e| err(e, "ending the snapshot"))?;
    Ok(Some(at))
}

/// How the typed SQL path reads `table`: its prepared query and decoders, and the row
/// schema with the primary key marked.
pub(crate) async fn typed(
    ctx: &Ctx,
    conn: &mut sqlx::mysql::MySqlConnection,
    table: &str,
) -> Result<(Prepared<Dec>, SchemaRef)> {
    let prep = ctx
        .sql
        .prepare(conn, &SqlSource::table(table.to_string()), None)
        .await?;
    let keys = server::primary_key(conn, table).await?;
    let row = row_schema(&prep.schema, &keys);
    Ok((prep, row))
}

/// The typed path's row schema with the primary key marked, as the binlog's table map
/// marks it, so that snapshot and stream rows of a table have one schema.
fn row_schema(typed: &SchemaRef, keys: &[String]) -> SchemaRef {
    let fields: Vec<_> = typed
        .fields()
        .iter()
        .map(|f| {
            let f = f.as_ref().clone();
            match keys.iter().position(|k| k.eq_ignore_ascii_case(f.name())) {
                Some(i) => key_field(f, i as u32 + 1),
                None => f,
            }
        })
        .collect();
    Arc::new(Schema::new(fields))
}
