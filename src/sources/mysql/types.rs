//! MySQL / MariaDB values (binary protocol) to Arrow.
//!
//! | MySQL / MariaDB | Arrow |
//! |---|---|
//! | `TINYINT`…`BIGINT` (`BOOLEAN` is `TINYINT(1)`) | Int8…Int64 |
//! | the same `UNSIGNED` | UInt8…UInt64 |
//! | `DECIMAL(p,s)` of a table, p ≤ 38 / ≤ 65 | Decimal128(p,s) / Decimal256(p,s) |
//! | `DECIMAL` from a query (scale unknown) | Utf8, exact text (marked `tributary.numeric`) |
//! | `FLOAT`, `DOUBLE` | Float32, Float64 |
//! | `CHAR`, `VARCHAR`, `TEXT`s, `ENUM`, `SET` | Utf8 |
//! | `JSON` (MySQL), `LONGTEXT CHECK (json_valid(..))` (MariaDB's `JSON`) | Utf8 marked `arrow.json` |
//! | `BINARY`, `VARBINARY`, `BLOB`s | Binary |
//! | `DATE` | Date32 |
//! | `DATETIME(fsp)` | Timestamp(µs) |
//! | `TIMESTAMP(fsp)` | Timestamp(µs, "+00:00") (read in a UTC session) |
//! | `TIME(fsp)`, negative and over 24 h too | Duration(µs), written `-838:59:59` |
//! | `YEAR` | Int16 |
//! | `BIT(n)` | UInt64 |
//!
//! Zero dates (`0000-00-00`) and spatial types are errors naming the column; select them
//! as text (`CAST(col AS CHAR)`, `ST_AsText(col)`) in a custom query.
//!
//! The protocol marks text with a `_bin` collation as BINARY. For table sources the
//! column's `information_schema` type decides, so such text stays text; in a custom
//! query, `CAST(col AS CHAR)` it if it should be text.

use crate::sources::sql::decimal::{unscaled_i128, unscaled_i256};
use crate::{Error, Result};
use arrow_array::builder::*;
use arrow_schema::{DataType, Field, TimeUnit};
use sqlx::Decode;
use sqlx::mysql::{MySql, MySqlValueRef};

/// What `information_schema` says of a table column.
#[derive(Clone, Debug, Default)]
pub(crate) struct ColumnInfo {
    pub precision: Option<u32>,
    pub scale: Option<u32>,
    pub json: bool,
    /// `DATA_TYPE` (`varchar`, `longtext`, `blob`, ...).
    pub data_type: Option<String>,
}

impl ColumnInfo {
    /// A text column, whatever its collation: sqlx calls `_bin`-collated text BLOB or
    /// VARBINARY because the protocol marks it BINARY.
    fn is_text(&self) -> bool {
        self.data_type.as_deref().is_some_and(|t| {
            matches!(
                t,
                "char"
                    | "varchar"
                    | "tinytext"
                    | "text"
                    | "mediumtext"
                    | "longtext"
                    | "enum"
                    | "set"
                    | "json"
            )
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Dec {
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    F32,
    F64,
    Decimal(u8, i8),
    NumericText,
    Text,
    Json,
    Binary,
    Date,
    DateTime,
    Timestamp,
    Time,
    Year,
    Bit,
}

fn unsupported(column: &str, ty: &str, hint: &str) -> Error {
    Error::type_error(
        "mysql",
        format!("column {column} has type {ty}, which cannot be converted losslessly; {hint}"),
    )
}

impl Dec {
    pub(crate) fn for_type(
        type_name: &str,
        column: &str,
        info: Option<&ColumnInfo>,
    ) -> Result<Dec> {
        if info.is_some_and(|i| i.json) {
            return Ok(Dec::Json);
        }
        if info.is_some_and(ColumnInfo::is_text)
            && matches!(
                type_name,
                "BINARY" | "VARBINARY" | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB"
            )
        {
            return Ok(Dec::Text);
        }
        Ok(match type_name {
            "BOOLEAN" | "TINYINT" => Dec::I8,
            "SMALLINT" => Dec::I16,
            "MEDIUMINT" | "INT" => Dec::I32,
            "BIGINT" => Dec::I64,
            "TINYINT UNSIGNED" => Dec::U8,
            "SMALLINT UNSIGNED" => Dec::U16,
            "MEDIUMINT UNSIGNED" | "INT UNSIGNED" => Dec::U32,
            "BIGINT UNSIGNED" => Dec::U64,
            "FLOAT" => Dec::F32,
            "DOUBLE" => Dec::F64,
            "DECIMAL" => match info.and_then(|i| Some((i.precision?, i.scale?))) {
                Some((p, s)) if p <= 65 => Dec::Decimal(p as u8, s as i8),
                _ => Dec::NumericText,
            },
            "CHAR" | "VARCHAR" | "TINYTEXT" | "TEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM"
            | "SET" => Dec::Text,
            "JSON" => Dec::Json,
            "BINARY" | "VARBINARY" | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB" => Dec::Binary,
            "DATE" => Dec::Date,
            "DATETIME" => Dec::DateTime,
            "TIMESTAMP" => Dec::Timestamp,
            "TIME" => Dec::Time,
            "YEAR" => Dec::Year,
            "BIT" => Dec::Bit,
            "NULL" => Dec::Text,
            "GEOMETRY" => {
                return Err(unsupported(
                    column,
                    type_name,
                    &format!("select ST_AsText({column}) in a custom query"),
                ));
            }
            other => {
                return Err(unsupported(
                    column,
                    other,
                    &format!("select CAST({column} AS CHAR) in a custom query"),
                ));
            }
        })
    }

    pub(crate) fn data_type(&self) -> DataType {
        match self {
            Dec::I8 => DataType::Int8,
            Dec::I16 | Dec::Year => DataType::Int16,
            Dec::I32 => DataType::Int32,
            Dec::I64 => DataType::Int64,
            Dec::U8 => DataType::UInt8,
            Dec::U16 => DataType::UInt16,
            Dec::U32 => DataType::UInt32,
            Dec::U64 | Dec::Bit => DataType::UInt64,
            Dec::F32 => DataType::Float32,
            Dec::F64 => DataType::Float64,
            Dec::Decimal(p, s) if *p <= 38 => DataType::Decimal128((*p).max(1), *s),
            Dec::Decimal(p, s) => DataType::Decimal256(*p, *s),
            Dec::NumericText | Dec::Text | Dec::Json => DataType::Utf8,
            Dec::Binary => DataType::Binary,
            Dec::Date => DataType::Date32,
            Dec::DateTime => DataType::Timestamp(TimeUnit::Microsecond, None),
            Dec::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            Dec::Time => DataType::Duration(TimeUnit::Microsecond),
        }
    }

    pub(crate) fn field(&self, name: &str, nullable: bool) -> Field {
        match self {
            Dec::Json => crate::model::json_field(name, nullable),
            Dec::NumericText => crate::model::numeric_text_field(name, nullable),
            _ => Field::new(name, self.data_type(), nullable),
        }
    }

    /// Append a null to a builder made for this decoder.
    #[cfg(feature = "mysql-cdc")]
    pub(crate) fn append_null(&self, b: &mut dyn ArrayBuilder) {
        self.append(b, None, "")
            .expect("appending a null decodes nothing, so it cannot fail")
    }

    pub(crate) fn append(
        &self,
        b: &mut dyn ArrayBuilder,
        v: Option<MySqlValueRef<'_>>,
        column: &str,
    ) -> Result<()> {
        macro_rules! get {
            ($t:ty) => {
                b.as_any_mut()
                    .downcast_mut::<$t>()
                    .expect("builder matches the decoder")
            };
        }
        let dec_err = |e: sqlx::error::BoxDynError| {
            Error::type_error("mysql", format!("column {column}: {e}"))
        };
        macro_rules! simple {
            ($builder:ty, $rust:ty) => {{
                let bld = get!($builder);
                match v {
                    None => bld.append_null(),
                    Some(v) => {
                        bld.append_value(<$rust as Decode<MySql>>::decode(v).map_err(dec_err)?)
                    }
                }
            }};
        }
        // `Decode::decode` on `&[u8]` hands back the value's raw bytes whatever its type.
        let raw = |v: MySqlValueRef<'_>| -> Result<Vec<u8>> {
            <&[u8] as Decode<MySql>>::decode(v)
                .map(<[u8]>::to_vec)
                .map_err(dec_err)
        };
        match self {
            Dec::I8 => simple!(Int8Builder, i8),
            Dec::I16 => simple!(Int16Builder, i16),
            Dec::I32 => simple!(Int32Builder, i32),
            Dec::I64 => simple!(Int64Builder, i64),
            Dec::U8 => simple!(UInt8Builder, u8),
            Dec::U16 => simple!(UInt16Builder, u16),
            Dec::U32 => simple!(UInt32Builder, u32),
            Dec::U64 => simple!(UInt64Builder, u64),
            Dec::F32 => simple!(Float32Builder, f32),
            Dec::F64 => simple!(Float64Builder, f64),
            Dec::Year => simple!(Int16Builder, i16),
            Dec::Text | Dec::Json | Dec::NumericText => simple!(StringBuilder, &str),
            Dec::Binary => simple!(BinaryBuilder, &[u8]),
            Dec::Bit => {
                let bld = get!(UInt64Builder);
                match v {
                    None => bld.append_null(),
                    Some(v) => {
                        bld.append_value(raw(v)?.iter().fold(0u64, |acc, b| (acc << 8) | *b as u64))
                    }
                }
            }
            Dec::Decimal(p, s) => {
                let text = v
                    .map(|v| <&str as Decode<MySql>>::decode(v).map_err(dec_err))
                    .transpose()?;
                let want = (*s).max(0) as usize;
                let bad = |t: &str| {
                    Error::type_error(
                        "mysql",
                        format!("column {column}: {t:?} is not a DECIMAL({p},{s}) value"),
                    )
                };
                if *p <= 38 {
                    let bld = get!(Decimal128Builder);
                    match text {
                        None => bld.append_null(),
                        Some(t) => bld.append_value(unscaled_i128(t, want).ok_or_else(|| bad(t))?),
                    }
                } else {
                    let bld = get!(Decimal256Builder);
                    match text {
                        None => bld.append_null(),
                        Some(t) => bld.append_value(unscaled_i256(t, want).ok_or_else(|| bad(t))?),
                    }
                }
            }
            Dec::Date => {
                let bld = get!(Date32Builder);
                match v {
                    None => bld.append_null(),
                    Some(v) => {
                        let d = <chrono::NaiveDate as Decode<MySql>>::decode(v)
                            .map_err(|_| zero_date(column))?;
                        bld.append_value(
                            (d - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid"))
                                .num_days() as i32,
                        )
                    }
                }
            }
            Dec::DateTime | Dec::Timestamp => {
                let bld = get!(TimestampMicrosecondBuilder);
                match v {
                    None => bld.append_null(),
                    Some(v) => {
                        let t = <chrono::NaiveDateTime as Decode<MySql>>::decode(v)
                            .map_err(|_| zero_date(column))?;
                        bld.append_value(t.and_utc().timestamp_micros())
                    }
                }
            }
            Dec::Time => {
                let bld = get!(DurationMicrosecondBuilder);
                match v {
                    None => bld.append_null(),
                    Some(v) => {
                        let t = <sqlx::mysql::types::MySqlTime as Decode<MySql>>::decode(v)
                            .map_err(dec_err)?;
                        let micros = (t.hours() as i64 * 3600
                            + t.minutes() as i64 * 60
                            + t.seconds() as i64)
                            * 1_000_000
                            + t.microseconds() as i64;
                        // Not `t.is_negative()`: in sqlx 0.8.6 it returns the opposite.
                        bld.append_value(if t.sign().is_negative() {
                            -micros
                        } else {
                            micros
                        })
                    }
                }
            }
        }
        Ok(())
    }
}

/// A cell read as text through `Decode`, whatever its column type (information_schema
/// columns vary in type and collation between MySQL and MariaDB versions, and `SHOW`
/// statements send numbers as text); `None` for NULL.
pub(crate) fn text(row: &sqlx::mysql::MySqlRow, i: usize) -> Option<String> {
    use sqlx::{Row, ValueRef};
    let raw = row.try_get_raw(i).ok()?;
    if raw.is_null() {
        return None;
    }
    <&[u8] as Decode<MySql>>::decode(raw)
        .ok()
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

/// The column of MariaDB's `JSON` check clause (`json_valid(`col`)`): MariaDB's JSON
/// is `LONGTEXT` with that check.
pub(crate) fn json_valid_column(clause: &str) -> Option<&str> {
    clause
        .trim()
        .strip_prefix("json_valid(`")
        .and_then(|r| r.strip_suffix("`)"))
}

pub(crate) fn zero_date(column: &str) -> Error {
    Error::type_error(
        "mysql",
        format!(
            "column {column} holds a zero or invalid date ('0000-00-00'), which has no Arrow value; \
             select NULLIF({column}, '0000-00-00') or CAST({column} AS CHAR) in a custom query"
        ),
    )
}
