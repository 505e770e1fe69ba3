//! A table's layout as a Relation message gives it, and the rows of one table gathered
//! for its next change batch.

use super::pgoutput::{Cell, Old, Relation};
use crate::model::{ChangeMeta, Op, key_field};
use crate::sources::cdc::ChangeRows;
use crate::sources::postgres::types::Dec;
use crate::{Error, Result};
use arrow_array::builder::ArrayBuilder;
use arrow_schema::{Schema, SchemaRef};
use std::sync::Arc;

const C: &str = "postgres-cdc";

/// One column: its name and decoder.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Col {
    pub name: String,
    pub dec: Dec,
}

/// A table's columns as of a point of the WAL.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Layout {
    /// `schema.table`.
    pub table: String,
    pub cols: Vec<Col>,
    /// The row schema (primary key marked), as the snapshot's typed path makes it.
    pub row: SchemaRef,
    /// `REPLICA IDENTITY` (`d`, `n`, `f`, `i`).
    pub identity: u8,
}

impl Layout {
    pub(crate) fn new(rel: &Relation, decs: Vec<Dec>, keys: &[String]) -> Layout {
        let cols: Vec<Col> = rel
            .columns
            .iter()
            .zip(decs)
            .map(|(c, dec)| Col {
                name: c.name.clone(),
                dec,
            })
            .collect();
        let row = row_schema(cols.iter().map(|c| c.dec.field(&c.name, true)), keys);
        Layout {
            table: format!("{}.{}", rel.schema, rel.name),
            cols,
            row,
            identity: rel.identity,
        }
    }
}

/// Fields with the primary key's columns marked, in key order.
pub(crate) fn row_schema(
    fields: impl Iterator<Item = arrow_schema::Field>,
    keys: &[String],
) -> SchemaRef {
    let fields: Vec<_> = fields
        .map(|f| match keys.iter().position(|k| k == f.name()) {
            Some(i) => key_field(f, i as u32 + 1),
            None => f,
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// The rows of one table gathered for the next batch.
pub(crate) type Acc = ChangeRows<Layout>;

impl Acc {
    pub(crate) fn for_layout(
        layout: Arc<Layout>,
        options: crate::model::ChangeOptions,
        n: usize,
    ) -> Result<Acc> {
        let row = layout.row.clone();
        ChangeRows::new(C, layout, &row, options, n)
    }

    fn mismatch(&self, n: usize) -> Error {
        Error::type_error(
            C,
            format!(
                "table {}: a change has {n} values, its Relation message {} columns",
                self.layout.table,
                self.layout.cols.len()
            ),
        )
    }

    /// Append one change. `new` is the row image (`None`: only `old` is known, a delete;
    /// a truncate passes neither), `old` the old image the server sent.
    pub(crate) fn push(
        &mut self,
        op: Op,
        meta: ChangeMeta,
        new: Option<&[Cell]>,
        old: Option<(Old, &[Cell])>,
    ) -> Result<()> {
        let n = self.layout.cols.len();
        for img in [new, old.map(|o| o.1)].into_iter().flatten() {
            if img.len() != n {
                return Err(self.mismatch(img.len()));
            }
        }
        let unsent_ok = self.change.options().unsent;
        let mut unsent = Vec::new();
        // The row image: the after-image, or the old image of a delete.
        let image = new.or(old.map(|o| o.1));
        for (i, col) in self.layout.cols.iter().enumerate() {
            let b = self.rows[i].as_mut();
            let cell = image.map(|img| &img[i]).unwrap_or(&Cell::Null);
            let cell = match cell {
                // An unchanged TOASTed value: the full old row holds it.
                Cell::Unchanged => match old {
                    Some((Old::Full, o)) if !matches!(o[i], Cell::Unchanged) => &o[i],
                    _ => cell,
                },
                c => c,
            };
            match cell {
                Cell::Unchanged => {
                    if !unsent_ok {
                        return Err(Error::type_error(
                            C,
                            format!(
                                "table {} column {}: the server did not send this unchanged \
                                 TOASTed value; turn on ChangeOptions::with_unsent (the change \
                                 lists it in _unsent) or set REPLICA IDENTITY FULL on the \
                                 table (the old row carries it)",
                                self.layout.table, col.name
                            ),
                        ));
                    }
                    col.dec.append(b, None, &col.name)?;
                    unsent.push(i);
                }
                c => append(col, b, c, &self.layout.table)?,
            }
        }
        if let Some(before) = self.before.as_mut() {
            let old_image = match (op, old) {
                (Op::Update, Some((_, o))) => Some(o),
                _ => None,
            };
            for (i, col) in self.layout.cols.iter().enumerate() {
                let cell = old_image.map(|o| &o[i]).unwrap_or(&Cell::Null);
                let cell = if matches!(cell, Cell::Unchanged) {
                    &Cell::Null
                } else {
                    cell
                };
                append(col, before[i].as_mut(), cell, &self.layout.table)?;
            }
        }
        self.record(op, meta, unsent);
        Ok(())
    }
}

fn append(col: &Col, b: &mut dyn ArrayBuilder, cell: &Cell, table: &str) -> Result<()> {
    match cell {
        Cell::Null | Cell::Unchanged => col.dec.append(b, None, &col.name),
        Cell::Binary(v) => col.dec.append(b, Some(v), &col.name),
        // A type without a binary send function arrives as text; text types read the same.
        Cell::Text(v) if matches!(col.dec, Dec::Text) => col.dec.append(b, Some(v), &col.name),
        Cell::Text(_) => Err(Error::type_error(
            C,
            format!(
                "table {table} column {}: the server sent the value as text, not in binary \
                 (its type has no binary send function); change the column's type",
                col.name
            ),
        )),
    }
}
