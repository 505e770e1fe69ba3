//! The rows of one table gathered for its next change batch, and row images read into
//! them.

use super::extractor::Ctx;
use super::types::{CellError, Col, Layout, Reader, read_value};
use crate::model::{ChangeMeta, ChangeSchema, Op};
use crate::{Error, Result};
use arrow_array::builder::*;
use arrow_array::{ArrayRef, RecordBatch};
use std::sync::Arc;

const C: &str = "mysql-cdc";

/// The rows of one table gathered for the next batch.
pub(crate) struct Acc {
    pub(crate) layout: Arc<Layout>,
    /// The row schema with every column nullable (a truncate has no values, a
    /// non-update no before-image).
    pub(crate) loose: arrow_schema::SchemaRef,
    pub(crate) change: ChangeSchema,
    pub(crate) rows: Vec<Box<dyn ArrayBuilder>>,
    pub(crate) before: Option<Vec<Box<dyn ArrayBuilder>>>,
    pub(crate) ops: Vec<Op>,
    pub(crate) meta: Vec<ChangeMeta>,
}

fn builders(layout: &Layout, n: usize) -> Vec<Box<dyn ArrayBuilder>> {
    layout
        .row
        .fields()
        .iter()
        .map(|f| make_builder(f.data_type(), n))
        .collect()
}

impl Acc {
    pub(crate) fn new(layout: Arc<Layout>, ctx: &Ctx) -> Result<Acc> {
        let change = ChangeSchema::new(layout.row.clone(), ctx.config.options)?;
        let n = ctx.config.batch_rows;
        let loose = Arc::new(arrow_schema::Schema::new(
            layout
                .row
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ));
        Ok(Acc {
            loose,
            rows: builders(&layout, n),
            before: ctx
                .config
                .options
                .before_image
                .then(|| builders(&layout, n)),
            change,
            layout,
            ops: Vec::with_capacity(n),
            meta: Vec::with_capacity(n),
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.ops.len()
    }

    pub(crate) fn finish(&mut self, table: &str) -> Result<RecordBatch> {
        let bad = |e: arrow_schema::ArrowError| {
            Error::type_error(C, format!("table {table}: building a batch: {e}"))
        };
        let cols: Vec<ArrayRef> = self.rows.iter_mut().map(|b| b.finish()).collect();
        let rows = RecordBatch::try_new(self.loose.clone(), cols).map_err(bad)?;
        let before = match &mut self.before {
            Some(b) => {
                let cols: Vec<ArrayRef> = b.iter_mut().map(|b| b.finish()).collect();
                Some(RecordBatch::try_new(self.loose.clone(), cols).map_err(bad)?)
            }
            None => None,
        };
        let out = self
            .change
            .build(&self.ops, &self.meta, &rows, before.as_ref(), &[])?;
        self.ops.clear();
        self.meta.clear();
        Ok(out)
    }

    /// A row with every column null (a truncate, or the before-image of a non-update).
    pub(crate) fn nulls(cols: &[Col], b: &mut [Box<dyn ArrayBuilder>]) {
        for (c, b) in cols.iter().zip(b.iter_mut()) {
            c.dec.append_null(b.as_mut());
        }
    }
}

/// Read one row image (its null bitmap, then its present non-null values) into `out`,
/// or past it when `out` is `None`.
pub(crate) fn image(
    cols: &[Col],
    present: &[bool],
    r: &mut Reader<'_>,
    mut out: Option<&mut [Box<dyn ArrayBuilder>]>,
) -> std::result::Result<(), CellError> {
    let n = present.iter().filter(|p| **p).count();
    let nulls = r.take(n.div_ceil(8))?;
    let mut k = 0;
    for (i, col) in cols.iter().enumerate() {
        if !present.get(i).copied().unwrap_or(false) {
            continue;
        }
        let is_null = nulls[k / 8] >> (k % 8) & 1 == 1;
        k += 1;
        let b = out.as_deref_mut().map(|o| o[i].as_mut());
        if is_null {
            if let Some(b) = b {
                col.dec.append_null(b);
            }
        } else {
            read_value(col, r, b)?;
        }
    }
    Ok(())
}
