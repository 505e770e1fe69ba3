//! SQLite values to Arrow.
//!
//! SQLite stores each value as NULL, INTEGER, REAL, TEXT or BLOB whatever the column's
//! declared type. The Arrow type comes from the declared type's affinity:
//! INTEGER → Int64, REAL → Float64, BOOLEAN → Boolean, BLOB → Binary, and everything
//! else (TEXT, NUMERIC, DATE, TIME, DATETIME) → Utf8, which keeps date-times exactly as
//! stored. A value that does not fit its column's type (text in an INTEGER column) is an
//! error naming the column, never a silent NULL.

use crate::sources::sql::ColumnDecoder;
use crate::{Error, Result};
use arrow_array::builder::{
    ArrayBuilder, BinaryBuilder, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
};
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

fn mismatch(name: &str, ty: &DataType, got: &str, detail: impl std::fmt::Display) -> Error {
    Error::type_error(
        "sqlite",
        format!(
            "column {name} is declared {ty} but holds a {got} value ({detail}); CAST it in a custom query"
        ),
    )
}

/// The builder `make_builder` made for `T`'s type.
fn builder<'b, T: 'static>(b: &'b mut dyn ArrayBuilder, name: &str) -> Result<&'b mut T> {
    b.as_any_mut().downcast_mut::<T>().ok_or_else(|| {
        Error::type_error("sqlite", format!("column {name}: unexpected Arrow builder"))
    })
}

/// Each value by its storage class into its column's Arrow type (the declared affinity).
impl ColumnDecoder<SqliteRow> for DataType {
    fn append_from(
        &self,
        b: &mut dyn ArrayBuilder,
        row: &SqliteRow,
        i: usize,
        name: &str,
    ) -> Result<()> {
        let raw = row
            .try_get_raw(i)
            .map_err(|e| Error::type_error("sqlite", format!("column {name}: {e}")))?;
        let storage = if raw.is_null() {
            "NULL".to_string()
        } else {
            raw.type_info().name().to_string()
        };
        let bad = || mismatch(name, self, &storage, "no lossless conversion");
        match (self, storage.as_str()) {
            (DataType::Int64, "NULL") => builder::<Int64Builder>(b, name)?.append_null(),
            (DataType::Float64, "NULL") => builder::<Float64Builder>(b, name)?.append_null(),
            (DataType::Boolean, "NULL") => builder::<BooleanBuilder>(b, name)?.append_null(),
            (DataType::Binary, "NULL") => builder::<BinaryBuilder>(b, name)?.append_null(),
            (_, "NULL") => builder::<StringBuilder>(b, name)?.append_null(),
            (DataType::Int64, "INTEGER" | "BOOLEAN") => {
                builder::<Int64Builder>(b, name)?.append_value(decode::<i64>(raw, name)?)
            }
            (DataType::Int64, "TEXT") => {
                let s = decode::<&str>(raw, name)?;
                let v = s
                    .trim()
                    .parse()
                    .map_err(|e| mismatch(name, self, "TEXT", format!("{s:?}: {e}")))?;
                builder::<Int64Builder>(b, name)?.append_value(v)
            }
            (DataType::Float64, "REAL" | "INTEGER") => {
                builder::<Float64Builder>(b, name)?.append_value(decode::<f64>(raw, name)?)
            }
            (DataType::Boolean, "INTEGER" | "BOOLEAN") => {
                builder::<BooleanBuilder>(b, name)?.append_value(decode::<i64>(raw, name)? != 0)
            }
            (DataType::Binary, "BLOB" | "TEXT") => {
                builder::<BinaryBuilder>(b, name)?.append_value(decode::<&[u8]>(raw, name)?)
            }
            (DataType::Utf8, "TEXT") => {
                builder::<StringBuilder>(b, name)?.append_value(decode::<&str>(raw, name)?)
            }
            (DataType::Utf8, "INTEGER" | "BOOLEAN") => builder::<StringBuilder>(b, name)?
                .append_value(decode::<i64>(raw, name)?.to_string()),
            (DataType::Utf8, "REAL") => {
                let v = decode::<f64>(raw, name)?;
                builder::<StringBuilder>(b, name)?.append_value(ryu::Buffer::new().format(v))
            }
            _ => return Err(bad()),
        }
        Ok(())
    }
}

fn decode<'r, T: Decode<'r, sqlx::Sqlite>>(raw: SqliteValueRef<'r>, name: &str) -> Result<T> {
    T::decode(raw).map_err(|e| Error::type_error("sqlite", format!("column {name}: {e}")))
}
