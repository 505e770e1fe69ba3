//! Change rows: the one convention every change source (binlog, WAL, Debezium topics)
//! lands in, so that a loader reads the changes of any of them the same way.
//!
//! A change batch is an Arrow batch of one table laid out as:
//!
//! | column | type | when |
//! |---|---|---|
//! | `_op` | Utf8: `insert`, `update`, `delete`, `snapshot`, `truncate` | always, first |
//! | `_position` | Utf8: binlog `file:pos` or GTID, LSN `0/16B3748`, `topic/partition@offset` | [`ChangeOptions::with_position`] |
//! | `_commit_ts` | Timestamp(µs, UTC): the source transaction's commit time | [`ChangeOptions::with_commit_ts`] |
//! | `_txid` | Utf8: the source transaction id | [`ChangeOptions::with_txid`] |
//! | `_seq` | UInt64: the change's sequence within its transaction, from 0 | [`ChangeOptions::with_seq`] |
//! | the table's columns | as the source types them, all nullable; key columns marked ([`key_field`](super::key_field)) | always |
//! | `_before_<column>` | the before-image of an update, one prefixed column per table column | [`ChangeOptions::with_before_image`] |
//! | `_unsent` | List(Utf8): the columns whose value the source did not send | [`ChangeOptions::with_unsent`] |
//!
//! The row image is the after-image of an `insert`, `update` or `snapshot` and the
//! before-image of a `delete` (with PostgreSQL's `REPLICA IDENTITY DEFAULT` only the key
//! columns of a delete are known; the others are null). A `truncate` has no row image.
//! Prefixed before-image columns (rather than a nested struct) keep CSV flat and the
//! columns readable by every warehouse loader; they are null for every op but `update`,
//! and for an update whose source sent no before-image.
//!
//! **A value the source did not send** (PostgreSQL's unchanged TOAST value) is never a
//! null or a magic string in its data column: its name is listed in `_unsent`, and its
//! data cell is empty. In JSON Lines the key is left out of the object altogether (so
//! absent and `null` differ) and `_unsent` is a JSON array; in CSV the cell is empty and
//! `_unsent` holds the names as text (`{payload}` in the PostgreSQL dialect,
//! `["payload"]` in the others); in Parquet the cell is null and `_unsent` is a list
//! column. A reader must consult `_unsent` before treating an empty cell as NULL.
//!
//! With no option set, a change in the book's CSV dialect is exactly the book's line:
//!
//! ```
//! use std::sync::Arc;
//! use arrow_array::{Int64Array, RecordBatch, StringArray};
//! use arrow_schema::{DataType, Field, Schema};
//! use tributary::format::{Csv, Format};
//! use tributary::model::{ChangeMeta, ChangeOptions, ChangeSchema, Op, key_field};
//!
//! let table = Arc::new(Schema::new(vec![
//!     key_field(Field::new("OrderId", DataType::Int64, false), 1),
//!     Field::new("OrderStatus", DataType::Utf8, true),
//!     Field::new("LastUpdated", DataType::Utf8, true),
//! ]));
//! let changes = ChangeSchema::new(table.clone(), ChangeOptions::new())?;
//! let rows = RecordBatch::try_new(table, vec![
//!     Arc::new(Int64Array::from(vec![1, 1])),
//!     Arc::new(StringArray::from(vec!["Backordered", "Shipped"])),
//!     Arc::new(StringArray::from(vec!["2020-06-01 12:00:00", "2020-06-09 12:00:25"])),
//! ]).unwrap();
//! let batch = changes.build(&[Op::Insert, Op::Update], &vec![ChangeMeta::default(); 2], &rows, None, &[])?;
//! let mut out = Vec::new();
//! let mut enc = Csv::default().encoder(changes.schema())?;
//! enc.encode(&batch, &mut out)?;
//! assert_eq!(String::from_utf8(out).unwrap(),
//!     "insert|1|Backordered|2020-06-01 12:00:00\nupdate|1|Shipped|2020-06-09 12:00:25\n");
//! # Ok::<(), tributary::Error>(())
//! ```

use crate::{Error, Result};
use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::{
    Array, ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Arc;

/// The operation column's name.
pub const OP_COLUMN: &str = "_op";
/// The source position column's name.
pub const POSITION_COLUMN: &str = "_position";
/// The commit timestamp column's name.
pub const COMMIT_TS_COLUMN: &str = "_commit_ts";
/// The transaction id column's name.
pub const TXID_COLUMN: &str = "_txid";
/// The sequence-within-transaction column's name.
pub const SEQ_COLUMN: &str = "_seq";
/// The column listing the values the source did not send.
pub const UNSENT_COLUMN: &str = "_unsent";
/// The prefix of before-image columns.
pub const BEFORE_PREFIX: &str = "_before_";
/// Field metadata key naming a change column's role (`op`, `position`, `commit_ts`,
/// `txid`, `seq`, `before`, `unsent`); table columns have none.
pub const CHANGE_ROLE_KEY: &str = "tributary.change";

/// What a change did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// A row was inserted.
    Insert,
    /// A row was updated.
    Update,
    /// A row was deleted.
    Delete,
    /// A row read by an initial snapshot (not a change in the log).
    Snapshot,
    /// The table was truncated.
    Truncate,
}

impl Op {
    /// The book's word: `insert`, `update`, `delete`, `snapshot`, `truncate`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Op::Insert => "insert",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::Snapshot => "snapshot",
            Op::Truncate => "truncate",
        }
    }

    /// The op a word names (the inverse of [`Op::as_str`]).
    pub fn parse(word: &str) -> Option<Op> {
        Some(match word {
            "insert" => Op::Insert,
            "update" => Op::Update,
            "delete" => Op::Delete,
            "snapshot" => Op::Snapshot,
            "truncate" => Op::Truncate,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which optional columns a change batch carries. Default: none (the book's lines).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChangeOptions {
    /// `_position`.
    pub position: bool,
    /// `_commit_ts`.
    pub commit_ts: bool,
    /// `_txid`.
    pub txid: bool,
    /// `_seq`.
    pub seq: bool,
    /// `_before_<column>` for every table column.
    pub before_image: bool,
    /// `_unsent`. Sources that can omit values (PostgreSQL TOAST) turn it on.
    pub unsent: bool,
}

impl ChangeOptions {
    /// No optional column.
    pub fn new() -> Self {
        Self::default()
    }
    /// Every metadata column: position, commit timestamp, transaction id, sequence.
    pub fn with_all_metadata(self) -> Self {
        self.with_position().with_commit_ts().with_txid().with_seq()
    }
    /// Add `_position`.
    pub fn with_position(mut self) -> Self {
        self.position = true;
        self
    }
    /// Add `_commit_ts`.
    pub fn with_commit_ts(mut self) -> Self {
        self.commit_ts = true;
        self
    }
    /// Add `_txid`.
    pub fn with_txid(mut self) -> Self {
        self.txid = true;
        self
    }
    /// Add `_seq`.
    pub fn with_seq(mut self) -> Self {
        self.seq = true;
        self
    }
    /// Add the before-image of updates as `_before_<column>` columns.
    pub fn with_before_image(mut self) -> Self {
        self.before_image = true;
        self
    }
    /// Add `_unsent`.
    pub fn with_unsent(mut self) -> Self {
        self.unsent = true;
        self
    }
}

/// The metadata of one change (each is written only if its column is on).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChangeMeta {
    /// Where in the source log the change is.
    pub position: Option<String>,
    /// When its transaction committed.
    pub commit_ts: Option<DateTime<Utc>>,
    /// Its transaction's id.
    pub txid: Option<String>,
    /// Its sequence within the transaction.
    pub seq: Option<u64>,
}

impl ChangeMeta {
    /// No metadata; add what the source knows with the `with_*` methods.
    pub fn new() -> Self {
        ChangeMeta::default()
    }

    /// Where in the source log the change is.
    pub fn with_position(mut self, position: impl Into<String>) -> Self {
        self.position = Some(position.into());
        self
    }

    /// When its transaction committed.
    pub fn with_commit_ts(mut self, at: DateTime<Utc>) -> Self {
        self.commit_ts = Some(at);
        self
    }

    /// Its transaction's id.
    pub fn with_txid(mut self, txid: impl Into<String>) -> Self {
        self.txid = Some(txid.into());
        self
    }

    /// Its sequence within the transaction.
    pub fn with_seq(mut self, seq: u64) -> Self {
        self.seq = Some(seq);
        self
    }
}

fn role(f: Field, role: &str) -> Field {
    let mut md = f.metadata().clone();
    md.insert(CHANGE_ROLE_KEY.to_string(), role.to_string());
    f.with_metadata(md)
}

/// The change layout of one table: its row schema plus the change columns.
#[derive(Clone, Debug, PartialEq)]
pub struct ChangeSchema {
    row: SchemaRef,
    options: ChangeOptions,
    schema: SchemaRef,
}

impl ChangeSchema {
    /// The change schema of a table whose rows have schema `row`. A table column whose
    /// name is one of the change columns is a [`Error::Config`] naming it.
    pub fn new(row: SchemaRef, options: ChangeOptions) -> Result<Self> {
        let o = options;
        let mut fields = vec![role(Field::new(OP_COLUMN, DataType::Utf8, false), "op")];
        if o.position {
            fields.push(role(
                Field::new(POSITION_COLUMN, DataType::Utf8, true),
                "position",
            ));
        }
        if o.commit_ts {
            fields.push(role(
                Field::new(
                    COMMIT_TS_COLUMN,
                    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                    true,
                ),
                "commit_ts",
            ));
        }
        if o.txid {
            fields.push(role(Field::new(TXID_COLUMN, DataType::Utf8, true), "txid"));
        }
        if o.seq {
            fields.push(role(Field::new(SEQ_COLUMN, DataType::UInt64, true), "seq"));
        }
        let reserved: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
        for f in row.fields() {
            if reserved.contains(&f.name().as_str())
                || f.name() == UNSENT_COLUMN
                || (o.before_image && f.name().starts_with(BEFORE_PREFIX))
            {
                return Err(Error::config(
                    "change",
                    format!(
                        "table column {:?} has the name of a change column; rename it in the \
                         source query or turn the option off",
                        f.name()
                    ),
                ));
            }
        }
        // Every table column is nullable: a delete may carry only its key, a truncate
        // no row at all.
        fields.extend(
            row.fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true)),
        );
        if o.before_image {
            for f in row.fields() {
                let mut md = f.metadata().clone();
                md.remove(super::KEY_ORDINAL_KEY);
                let b = Field::new(
                    format!("{BEFORE_PREFIX}{}", f.name()),
                    f.data_type().clone(),
                    true,
                )
                .with_metadata(md);
                fields.push(role(b, "before"));
            }
        }
        if o.unsent {
            fields.push(role(
                Field::new(
                    UNSENT_COLUMN,
                    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                    true,
                ),
                "unsent",
            ));
        }
        Ok(ChangeSchema {
            row,
            options,
            schema: Arc::new(Schema::new_with_metadata(fields, HashMap::new())),
        })
    }

    /// The full schema of a change batch.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The table's own row schema.
    pub fn row_schema(&self) -> &SchemaRef {
        &self.row
    }

    /// The options it was built with.
    pub fn options(&self) -> ChangeOptions {
        self.options
    }

    /// Put changes together: `ops[i]` and `meta[i]` describe row `i` of `rows` (the row
    /// image, in the table's row schema); `before` holds the update before-images (rows
    /// that have none are null), used when the option is on; `unsent[i]` lists the
    /// indexes of the columns of row `i` that the source did not send (their cells in
    /// `rows` must be null; an empty slice when nothing is unsent).
    pub fn build(
        &self,
        ops: &[Op],
        meta: &[ChangeMeta],
        rows: &RecordBatch,
        before: Option<&RecordBatch>,
        unsent: &[Vec<usize>],
    ) -> Result<RecordBatch> {
        let n = rows.num_rows();
        let bad = |what: String| Error::type_error("change", what);
        if ops.len() != n || meta.len() != n {
            return Err(bad(format!(
                "{} rows but {} ops and {} metadata entries",
                n,
                ops.len(),
                meta.len()
            )));
        }
        if rows.num_columns() != self.row.fields().len() {
            return Err(bad(format!(
                "rows have {} columns, the table has {}",
                rows.num_columns(),
                self.row.fields().len()
            )));
        }
        let o = self.options;
        let mut cols: Vec<ArrayRef> = vec![Arc::new(StringArray::from_iter_values(
            ops.iter().map(Op::as_str),
        ))];
        if o.position {
            cols.push(Arc::new(StringArray::from_iter(
                meta.iter().map(|m| m.position.as_deref()),
            )));
        }
        if o.commit_ts {
            cols.push(Arc::new(
                TimestampMicrosecondArray::from_iter(
                    meta.iter()
                        .map(|m| m.commit_ts.map(|t| t.timestamp_micros())),
                )
                .with_timezone("UTC"),
            ));
        }
        if o.txid {
            cols.push(Arc::new(StringArray::from_iter(
                meta.iter().map(|m| m.txid.as_deref()),
            )));
        }
        if o.seq {
            cols.push(Arc::new(UInt64Array::from_iter(meta.iter().map(|m| m.seq))));
        }
        cols.extend(rows.columns().iter().cloned());
        if o.before_image {
            match before {
                Some(b) if b.num_rows() == n && b.num_columns() == rows.num_columns() => {
                    cols.extend(b.columns().iter().cloned())
                }
                Some(b) => {
                    return Err(bad(format!(
                        "before-images have {} rows of {} columns, expected {n} of {}",
                        b.num_rows(),
                        b.num_columns(),
                        rows.num_columns()
                    )));
                }
                None => cols.extend(
                    rows.columns()
                        .iter()
                        .map(|c| arrow_array::new_null_array(c.data_type(), n)),
                ),
            }
        }
        if o.unsent {
            let mut lb = ListBuilder::new(StringBuilder::new());
            for i in 0..n {
                for &c in unsent.get(i).map(Vec::as_slice).unwrap_or(&[]) {
                    let col = rows.columns().get(c).ok_or_else(|| {
                        bad(format!("row {i}: unsent column index {c} out of range"))
                    })?;
                    if col.is_valid(i) {
                        return Err(bad(format!(
                            "row {i}: column {} is marked unsent but holds a value",
                            self.row.field(c).name()
                        )));
                    }
                    lb.values().append_value(self.row.field(c).name());
                }
                lb.append(true);
            }
            cols.push(Arc::new(lb.finish()));
        } else if unsent.iter().any(|u| !u.is_empty()) {
            return Err(bad(
                "values marked unsent, but the change schema has no _unsent column \
                 (ChangeOptions::with_unsent)"
                    .into(),
            ));
        }
        RecordBatch::try_new(self.schema.clone(), cols).map_err(|e| bad(e.to_string()))
    }
}

/// The ops of a change batch (its `_op` column), for consumers such as a loader.
pub fn ops(batch: &RecordBatch) -> Result<Vec<Op>> {
    let col = batch
        .column_by_name(OP_COLUMN)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .ok_or_else(|| Error::type_error("change", "batch has no Utf8 _op column"))?;
    col.iter()
        .enumerate()
        .map(|(i, v)| {
            v.and_then(Op::parse).ok_or_else(|| {
                Error::type_error("change", format!("row {i}: _op {v:?} is not an op"))
            })
        })
        .collect()
}

/// The position of the `_unsent` column of a change schema, if it has one.
pub(crate) fn unsent_index(schema: &Schema) -> Option<usize> {
    schema.fields().iter().position(|f| {
        f.name() == UNSENT_COLUMN
            && f.metadata().get(CHANGE_ROLE_KEY).map(String::as_str) == Some("unsent")
    })
}

/// The change schemas of a stream's tables, by name: what a log reader keeps to decode
/// row events, restored on resume from the schemas saved with the checkpoint.
///
/// ```
/// use std::sync::Arc;
/// use arrow_schema::{DataType, Field, Schema};
/// use tributary::model::{ChangeOptions, ChangeSchema, change::TableSchemas};
/// let mut t = TableSchemas::new();
/// let row = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
/// t.insert("shop.orders", ChangeSchema::new(row, ChangeOptions::new())?);
/// assert!(t.get("shop.orders").is_ok());
/// let e = t.get("shop.refunds").unwrap_err().to_string();
/// assert!(e.contains("shop.refunds"), "{e}");
/// # Ok::<(), tributary::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct TableSchemas {
    tables: std::collections::BTreeMap<String, ChangeSchema>,
}

impl TableSchemas {
    /// No table known.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set `table`'s schema; returns the one it replaces (a DDL happened).
    pub fn insert(
        &mut self,
        table: impl Into<String>,
        schema: ChangeSchema,
    ) -> Option<ChangeSchema> {
        self.tables.insert(table.into(), schema)
    }

    /// `table`'s schema, or an [`Error::Type`] naming the table when none is known (a
    /// row event for a table whose definition was never seen).
    pub fn get(&self, table: &str) -> Result<&ChangeSchema> {
        self.tables.get(table).ok_or_else(|| {
            Error::type_error(
                "change",
                format!(
                    "a change for table {table:?}, whose schema is unknown (no table \
                     definition was read for it, and none was saved with the checkpoint)"
                ),
            )
        })
    }

    /// The tables known, by name.
    pub fn tables(&self) -> impl Iterator<Item = (&str, &ChangeSchema)> {
        self.tables.iter().map(|(k, v)| (k.as_str(), v))
    }
}
