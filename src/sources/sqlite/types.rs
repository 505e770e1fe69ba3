//! SQLite values to Arrow.
//!
//! SQLite stores each value as NULL, INTEGER, REAL, TEXT or BLOB whatever the column's
//! declared type. The Arrow type comes from the declared type's affinity:
//! INTEGER → Int64, REAL → Float64, BOOLEAN → Boolean, BLOB → Binary, and everything
//! else (TEXT, NUMERIC, DATE, TIME, DATETIME) → Utf8, which keeps date-times exactly as
//! stored. A value that does not fit its column's type (text in an INTEGER column) is an
//! error naming the column, never a silent NULL.

use crate::{Error, Result};
use arrow_array::builder::{
    ArrayBuilder, BinaryBuilder, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use sqlx::sqlite::{SqliteRow, SqliteValueRef};
use sqlx::{Column, Decode, Row, TypeInfo, ValueRef};
use std::sync::Arc;

/// The Arrow type for a SQLite declared type name as sqlx reports it.
pub(crate) fn arrow_type(sqlite_type: &str) -> DataType {
    match sqlite_type {
        "INTEGER" => DataType::Int64,
        "REAL" => DataType::Float64,
        "BOOLEAN" => DataType::Boolean,
        "BLOB" => DataType::Binary,
        _ => DataType::Utf8,
    }
}

/// Schema of a described statement.
pub(crate) fn schema(columns: &[sqlx::sqlite::SqliteColumn]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(c.name(), arrow_type(c.type_info().name()), true))
            .collect::<Vec<_>>(),
    ))
}

enum Builder {
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
    Bin(BinaryBuilder),
    Text(StringBuilder),
}

/// Accumulates rows into Arrow arrays.
pub(crate) struct BatchBuilder {
    schema: SchemaRef,
    builders: Vec<Builder>,
}

fn mismatch(field: &Field, got: &str, detail: impl std::fmt::Display) -> Error {
    Error::type_error(
        "sqlite",
        format!(
            "column {} is declared {} but holds a {got} value ({detail}); CAST it in a custom query",
            field.name(),
            field.data_type()
        ),
    )
}

impl BatchBuilder {
    pub(crate) fn new(schema: SchemaRef, capacity: usize) -> Self {
        let builders = schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Int64 => Builder::Int(Int64Builder::with_capacity(capacity)),
                DataType::Float64 => Builder::Float(Float64Builder::with_capacity(capacity)),
                DataType::Boolean => Builder::Bool(BooleanBuilder::with_capacity(capacity)),
                DataType::Binary => {
                    Builder::Bin(BinaryBuilder::with_capacity(capacity, capacity * 16))
                }
                _ => Builder::Text(StringBuilder::with_capacity(capacity, capacity * 16)),
            })
            .collect();
        BatchBuilder { schema, builders }
    }

    pub(crate) fn len(&self) -> usize {
        match self.builders.first() {
            Some(Builder::Int(b)) => b.len(),
            Some(Builder::Float(b)) => b.len(),
            Some(Builder::Bool(b)) => b.len(),
            Some(Builder::Bin(b)) => b.len(),
            Some(Builder::Text(b)) => b.len(),
            None => 0,
        }
    }

    pub(crate) fn push(&mut self, row: &SqliteRow) -> Result<()> {
        for (i, (b, field)) in self
            .builders
            .iter_mut()
            .zip(self.schema.fields())
            .enumerate()
        {
            let raw = row.try_get_raw(i).map_err(|e| {
                Error::type_error("sqlite", format!("column {}: {e}", field.name()))
            })?;
            if raw.is_null() {
                match b {
                    Builder::Int(b) => b.append_null(),
                    Builder::Float(b) => b.append_null(),
                    Builder::Bool(b) => b.append_null(),
                    Builder::Bin(b) => b.append_null(),
                    Builder::Text(b) => b.append_null(),
                }
                continue;
            }
            let storage = raw.type_info().name().to_string();
            match (b, storage.as_str()) {
                (Builder::Int(b), "INTEGER" | "BOOLEAN") => {
                    b.append_value(decode::<i64>(raw, field)?)
                }
                (Builder::Int(b), "TEXT") => {
                    let s = decode::<&str>(raw, field)?;
                    b.append_value(
                        s.trim()
                            .parse()
                            .map_err(|e| mismatch(field, "TEXT", format!("{s:?}: {e}")))?,
                    )
                }
                (Builder::Float(b), "REAL" | "INTEGER") => {
                    b.append_value(decode::<f64>(raw, field)?)
                }
                (Builder::Bool(b), "INTEGER" | "BOOLEAN") => {
                    b.append_value(decode::<i64>(raw, field)? != 0)
                }
                (Builder::Bin(b), "BLOB" | "TEXT") => b.append_value(decode::<&[u8]>(raw, field)?),
                (Builder::Text(b), "TEXT") => b.append_value(decode::<&str>(raw, field)?),
                (Builder::Text(b), "INTEGER" | "BOOLEAN") => {
                    b.append_value(decode::<i64>(raw, field)?.to_string())
                }
                (Builder::Text(b), "REAL") => {
                    let v = decode::<f64>(raw, field)?;
                    b.append_value(ryu::Buffer::new().format(v))
                }
                (_, other) => return Err(mismatch(field, other, "no lossless conversion")),
            }
        }
        Ok(())
    }

    pub(crate) fn finish(&mut self) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = self
            .builders
            .iter_mut()
            .map(|b| match b {
                Builder::Int(b) => Arc::new(b.finish()) as ArrayRef,
                Builder::Float(b) => Arc::new(b.finish()),
                Builder::Bool(b) => Arc::new(b.finish()),
                Builder::Bin(b) => Arc::new(b.finish()),
                Builder::Text(b) => Arc::new(b.finish()),
            })
            .collect();
        RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| Error::type_error("sqlite", format!("building a batch: {e}")))
    }
}

fn decode<'r, T: Decode<'r, sqlx::Sqlite>>(raw: SqliteValueRef<'r>, field: &Field) -> Result<T> {
    T::decode(raw).map_err(|e| Error::type_error("sqlite", format!("column {}: {e}", field.name())))
}
