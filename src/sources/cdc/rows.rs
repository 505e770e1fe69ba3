//! The change rows of one table gathered for its next batch, shared by every change
//! reader: each reader appends a change's values in its own wire format, then records
//! the change here; [`ChangeRows::finish`] makes the batch.

use crate::model::{ChangeMeta, ChangeOptions, ChangeSchema, Op};
use crate::{Error, Result};
use arrow_array::builder::{ArrayBuilder, make_builder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{Schema, SchemaRef};
use std::sync::Arc;

/// The rows of one table gathered for the next batch, with the table's layout `L` (its
/// columns as the reader decodes them).
pub(crate) struct ChangeRows<L> {
    pub(crate) layout: Arc<L>,
    component: &'static str,
    /// The row schema with every column nullable (a truncate has no values, a
    /// non-update no before-image).
    loose: SchemaRef,
    pub(crate) change: ChangeSchema,
    /// The row images, a builder per column.
    pub(crate) rows: Vec<Box<dyn ArrayBuilder>>,
    /// The before-images of updates, when asked for.
    pub(crate) before: Option<Vec<Box<dyn ArrayBuilder>>>,
    ops: Vec<Op>,
    meta: Vec<ChangeMeta>,
    /// Per change, the columns the server did not send (unchanged TOASTed values).
    unsent: Vec<Vec<usize>>,
    any_unsent: bool,
}

fn builders(schema: &SchemaRef, n: usize) -> Vec<Box<dyn ArrayBuilder>> {
    schema
        .fields()
        .iter()
        .map(|f| make_builder(f.data_type(), n))
        .collect()
}

impl<L> ChangeRows<L> {
    /// Room for `n` changes of a table whose rows have schema `row`.
    pub(crate) fn new(
        component: &'static str,
        layout: Arc<L>,
        row: &SchemaRef,
        options: ChangeOptions,
        n: usize,
    ) -> Result<Self> {
        let change = ChangeSchema::new(row.clone(), options)?;
        let loose = Arc::new(Schema::new(
            row.fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ));
        Ok(ChangeRows {
            rows: builders(&loose, n),
            before: options.before_image.then(|| builders(&loose, n)),
            loose,
            change,
            layout,
            component,
            ops: Vec::with_capacity(n),
            meta: Vec::with_capacity(n),
            unsent: Vec::new(),
            any_unsent: false,
        })
    }

    /// The changes gathered.
    pub(crate) fn len(&self) -> usize {
        self.ops.len()
    }

    /// Record the change whose values were just appended to [`rows`](Self::rows) (and
    /// [`before`](Self::before)); `unsent` lists the columns the server did not send.
    pub(crate) fn record(&mut self, op: Op, meta: ChangeMeta, unsent: Vec<usize>) {
        self.any_unsent |= !unsent.is_empty();
        self.unsent.push(unsent);
        self.ops.push(op);
        self.meta.push(meta);
    }

    /// The gathered changes of `table` as one change batch; the rows start over.
    pub(crate) fn finish(&mut self, table: &str) -> Result<RecordBatch> {
        let bad = |e: arrow_schema::ArrowError| {
            Error::type_error(
                self.component,
                format!("table {table}: building a batch: {e}"),
            )
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
        let unsent: &[Vec<usize>] = if self.any_unsent { &self.unsent } else { &[] };
        let out = self
            .change
            .build(&self.ops, &self.meta, &rows, before.as_ref(), unsent)?;
        self.ops.clear();
        self.meta.clear();
        self.unsent.clear();
        self.any_unsent = false;
        Ok(out)
    }
}
