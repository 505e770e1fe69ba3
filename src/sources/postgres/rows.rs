//! Rows to Arrow batches: the typed path's builders, and one query read into a channel.

use super::extractor::pg_err;
use super::types::Dec;
use crate::sources::sql::Deadlines;
use crate::{Batch, Error, Result};
use arrow_array::builder::{ArrayBuilder, make_builder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::SchemaRef;
use futures::TryStreamExt;
use sqlx::postgres::{PgArguments, PgConnection};
use sqlx::{Row, ValueRef};

/// Rows to Arrow, one batch at a time.
pub(crate) struct Builders {
    schema: SchemaRef,
    decoders: Vec<Dec>,
    builders: Vec<Box<dyn ArrayBuilder>>,
    pub(crate) rows: usize,
    capacity: usize,
}

impl Builders {
    pub(crate) fn new(schema: SchemaRef, decoders: Vec<Dec>, capacity: usize) -> Self {
        let builders = schema
            .fields()
            .iter()
            .map(|f| make_builder(f.data_type(), capacity))
            .collect();
        Builders {
            schema,
            decoders,
            builders,
            rows: 0,
            capacity,
        }
    }

    pub(crate) fn push(&mut self, row: &sqlx::postgres::PgRow) -> Result<()> {
        for (i, (dec, b)) in self
            .decoders
            .iter()
            .zip(self.builders.iter_mut())
            .enumerate()
        {
            let name = self.schema.field(i).name();
            let raw = row
                .try_get_raw(i)
                .map_err(|e| pg_err(e, "reading a value"))?;
            let bytes =
                if raw.is_null() {
                    None
                } else {
                    Some(raw.as_bytes().map_err(|e| {
                        Error::type_error("postgres", format!("column {name}: {e}"))
                    })?)
                };
            dec.append(b.as_mut(), bytes, name)?;
        }
        self.rows += 1;
        Ok(())
    }

    pub(crate) fn finish(&mut self) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = self.builders.iter_mut().map(|b| b.finish()).collect();
        self.rows = 0;
        RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| Error::type_error("postgres", format!("building a batch: {e}")))
    }

    pub(crate) fn full(&self) -> bool {
        self.rows >= self.capacity
    }
}

/// Read `sql` on `conn` into batches of `batch_rows` rows, each made a [`Batch`] by
/// `wrap` and sent to `tx`. `Ok(false)` when the consumer went away.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn read_into(
    conn: &mut PgConnection,
    sql: &str,
    args: PgArguments,
    schema: SchemaRef,
    decoders: Vec<Dec>,
    batch_rows: usize,
    deadlines: &Deadlines,
    tx: &tokio::sync::mpsc::Sender<Result<Batch>>,
    wrap: &(dyn Fn(RecordBatch) -> Result<Batch> + Send + Sync),
) -> Result<bool> {
    let mut builders = Builders::new(schema, decoders, batch_rows);
    let mut rows = sqlx::query_with(sql, args).fetch(conn);
    while let Some(row) = deadlines
        .read(rows.try_next(), "reading rows")
        .await?
        .map_err(|e| pg_err(e, "reading rows"))?
    {
        builders.push(&row)?;
        if builders.full() && tx.send(Ok(wrap(builders.finish()?)?)).await.is_err() {
            return Ok(false);
        }
    }
    if builders.rows > 0 && tx.send(Ok(wrap(builders.finish()?)?)).await.is_err() {
        return Ok(false);
    }
    Ok(true)
}
