//! The rows of one table gathered for its next change batch, and row images read into
//! them.

use super::extractor::Ctx;
use super::types::{CellError, Col, Layout, Reader, read_value};
use crate::Result;
use crate::sources::cdc::ChangeRows;
use arrow_array::builder::*;
use std::sync::Arc;

const C: &str = "mysql-cdc";

/// The rows of one table gathered for the next batch.
pub(crate) type Acc = ChangeRows<Layout>;

impl Acc {
    pub(crate) fn for_layout(layout: Arc<Layout>, ctx: &Ctx) -> Result<Acc> {
        let row = layout.row.clone();
        let n = ctx.config.cdc.batch_rows;
        ChangeRows::new(C, layout, &row, ctx.config.cdc.options, n)
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
