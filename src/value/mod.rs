//! Rendering Arrow values as text (for CSV) and as JSON (for JSON Lines).
//!
//! Arrays are downcast once per batch into a [`Column`]; rendering a value is then a
//! match and a few pushes, with no allocation for fixed-width types.

mod number;
pub(crate) mod time;

use crate::model::{is_json_field, is_uuid_field};
use crate::{Error, Result};
use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef};
use arrow_buffer::i256;
use arrow_schema::{DataType, Field, IntervalUnit, TimeUnit};
use chrono::FixedOffset;
use number::*;
use time::*;

/// How binary values are written as text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum BinaryEncoding {
    /// `\x` followed by lowercase hex, as PostgreSQL's `bytea` reads it.
    #[default]
    PostgresHex,
    /// Lowercase hex without prefix (Snowflake and Redshift `HEX`).
    Hex,
    /// Standard base64 with padding.
    Base64,
}

#[derive(Clone, Copy)]
pub(crate) struct TextStyle {
    /// Separator between date and time: `b' '` for CSV, `b'T'` for JSON.
    pub date_time_sep: u8,
    pub binary: BinaryEncoding,
    /// Write decimals as JSON strings instead of JSON numbers.
    pub decimal_as_string: bool,
    /// In text (CSV), write as PostgreSQL's text output does: booleans `t`/`f` (else
    /// `true`/`false`) and lists as array literals `{1,2,NULL}` (else JSON arrays).
    pub pg_text: bool,
}

enum Tz {
    Naive,
    Fixed(FixedOffset),
    /// A named zone this build cannot resolve: rendered in UTC with `+00:00`.
    Utc,
}

enum Kind<'a> {
    Null,
    Bool(&'a arrow_array::BooleanArray),
    I8(&'a [i8]),
    I16(&'a [i16]),
    I32(&'a [i32]),
    I64(&'a [i64]),
    U8(&'a [u8]),
    U16(&'a [u16]),
    U32(&'a [u32]),
    U64(&'a [u64]),
    F16(&'a [half::f16]),
    F32(&'a [f32]),
    F64(&'a [f64]),
    D128(&'a [i128], i8),
    D256(&'a [i256], i8),
    Str(&'a arrow_array::StringArray),
    LargeStr(&'a arrow_array::LargeStringArray),
    StrView(&'a arrow_array::StringViewArray),
    Bin(&'a arrow_array::BinaryArray),
    LargeBin(&'a arrow_array::LargeBinaryArray),
    BinView(&'a arrow_array::BinaryViewArray),
    FixedBin(&'a arrow_array::FixedSizeBinaryArray, bool),
    Date32(&'a [i32]),
    Date64(&'a [i64]),
    /// Time of day in nanoseconds.
    Time(Vec<i64>),
    Timestamp(&'a [i64], TimeUnit, Tz),
    Duration(&'a [i64], TimeUnit),
    IntervalYm(&'a [i32]),
    IntervalDt(&'a [IntervalDayTime]),
    IntervalMdn(&'a [IntervalMonthDayNano]),
    Dict(Vec<usize>, Box<Column<'a>>),
    Nested(&'a dyn Array),
}

/// One column of one batch, ready to render.
pub(crate) struct Column<'a> {
    kind: Kind<'a>,
    array: &'a dyn Array,
    /// Text output may contain any byte, so CSV must check it for quoting.
    pub free_text: bool,
    json_text: bool,
    numeric_text: bool,
    name: &'a str,
}

fn prim<T: ArrowPrimitiveType>(a: &dyn Array) -> &[T::Native] {
    a.as_primitive::<T>().values()
}

impl<'a> Column<'a> {
    pub fn new(array: &'a ArrayRef, field: &'a Field) -> Result<Self> {
        let mut c = Self::from_dyn(
            array.as_ref(),
            field.name(),
            is_json_field(field),
            is_uuid_field(field),
        )?;
        c.numeric_text = field
            .metadata()
            .contains_key(crate::model::NUMERIC_TEXT_KEY);
        Ok(c)
    }

    fn from_dyn(array: &'a dyn Array, name: &'a str, json_text: bool, uuid: bool) -> Result<Self> {
        let a = array;
        let mut free_text = false;
        let kind = match a.data_type() {
            DataType::Null => Kind::Null,
            DataType::Boolean => Kind::Bool(a.as_boolean()),
            DataType::Int8 => Kind::I8(prim::<Int8Type>(a)),
            DataType::Int16 => Kind::I16(prim::<Int16Type>(a)),
            DataType::Int32 => Kind::I32(prim::<Int32Type>(a)),
            DataType::Int64 => Kind::I64(prim::<Int64Type>(a)),
            DataType::UInt8 => Kind::U8(prim::<UInt8Type>(a)),
            DataType::UInt16 => Kind::U16(prim::<UInt16Type>(a)),
            DataType::UInt32 => Kind::U32(prim::<UInt32Type>(a)),
            DataType::UInt64 => Kind::U64(prim::<UInt64Type>(a)),
            DataType::Float16 => Kind::F16(prim::<Float16Type>(a)),
            DataType::Float32 => Kind::F32(prim::<Float32Type>(a)),
            DataType::Float64 => Kind::F64(prim::<Float64Type>(a)),
            DataType::Decimal128(_, s) => Kind::D128(prim::<Decimal128Type>(a), *s),
            DataType::Decimal256(_, s) => Kind::D256(prim::<Decimal256Type>(a), *s),
            DataType::Utf8 => {
                free_text = true;
                Kind::Str(a.as_string::<i32>())
            }
            DataType::LargeUtf8 => {
                free_text = true;
                Kind::LargeStr(a.as_string::<i64>())
            }
            DataType::Utf8View => {
                free_text = true;
                Kind::StrView(a.as_string_view())
            }
            DataType::Binary => Kind::Bin(a.as_binary::<i32>()),
            DataType::LargeBinary => Kind::LargeBin(a.as_binary::<i64>()),
            DataType::BinaryView => Kind::BinView(a.as_binary_view()),
            DataType::FixedSizeBinary(n) => {
                Kind::FixedBin(a.as_fixed_size_binary(), uuid && *n == 16)
            }
            DataType::Date32 => Kind::Date32(prim::<Date32Type>(a)),
            DataType::Date64 => Kind::Date64(prim::<Date64Type>(a)),
            DataType::Time32(TimeUnit::Second) => Kind::Time(
                prim::<Time32SecondType>(a)
                    .iter()
                    .map(|v| *v as i64 * 1_000_000_000)
                    .collect(),
            ),
            DataType::Time32(_) => Kind::Time(
                prim::<Time32MillisecondType>(a)
                    .iter()
                    .map(|v| *v as i64 * 1_000_000)
                    .collect(),
            ),
            DataType::Time64(TimeUnit::Microsecond) => Kind::Time(
                prim::<Time64MicrosecondType>(a)
                    .iter()
                    .map(|v| v * 1_000)
                    .collect(),
            ),
            DataType::Time64(_) => Kind::Time(prim::<Time64NanosecondType>(a).to_vec()),
            DataType::Timestamp(unit, tz) => {
                let values = match unit {
                    TimeUnit::Second => prim::<TimestampSecondType>(a),
                    TimeUnit::Millisecond => prim::<TimestampMillisecondType>(a),
                    TimeUnit::Microsecond => prim::<TimestampMicrosecondType>(a),
                    TimeUnit::Nanosecond => prim::<TimestampNanosecondType>(a),
                };
                let tz = match tz.as_deref() {
                    None => Tz::Naive,
                    Some(s) => parse_offset(s).map(Tz::Fixed).unwrap_or(Tz::Utc),
                };
                Kind::Timestamp(values, *unit, tz)
            }
            DataType::Duration(unit) => {
                let values = match unit {
                    TimeUnit::Second => prim::<DurationSecondType>(a),
                    TimeUnit::Millisecond => prim::<DurationMillisecondType>(a),
                    TimeUnit::Microsecond => prim::<DurationMicrosecondType>(a),
                    TimeUnit::Nanosecond => prim::<DurationNanosecondType>(a),
                };
                Kind::Duration(values, *unit)
            }
            DataType::Interval(IntervalUnit::YearMonth) => {
                Kind::IntervalYm(prim::<IntervalYearMonthType>(a))
            }
            DataType::Interval(IntervalUnit::DayTime) => {
                Kind::IntervalDt(prim::<IntervalDayTimeType>(a))
            }
            DataType::Interval(IntervalUnit::MonthDayNano) => {
                Kind::IntervalMdn(prim::<IntervalMonthDayNanoType>(a))
            }
            DataType::Dictionary(_, _) => {
                let dict = a.as_any_dictionary();
                let values = Column::from_dyn(dict.values().as_ref(), name, json_text, uuid)?;
                free_text = values.free_text;
                // SAFETY of lifetimes: `values()` borrows from `a`, which lives for 'a.
                Kind::Dict(dict.normalized_keys(), Box::new(values))
            }
            DataType::List(_)
            | DataType::LargeList(_)
            | DataType::FixedSizeList(_, _)
            | DataType::ListView(_)
            | DataType::LargeListView(_)
            | DataType::Struct(_)
            | DataType::Map(_, _) => {
                free_text = true;
                Kind::Nested(a)
            }
            other => {
                return Err(Error::type_error(
                    "format",
                    format!(
                        "column {name}: Arrow type {other} cannot be written as text; cast it first"
                    ),
                ));
            }
        };
        Ok(Column {
            kind,
            array,
            free_text: free_text || json_text,
            json_text,
            numeric_text: false,
            name,
        })
    }

    #[inline]
    pub fn is_null(&self, row: usize) -> bool {
        match &self.kind {
            Kind::Dict(keys, values) => self.array.is_null(row) || values.is_null(keys[row]),
            _ => self.array.is_null(row),
        }
    }

    /// Render a non-null value as text (CSV), unquoted.
    pub fn write_text(&self, row: usize, out: &mut Vec<u8>, style: &TextStyle) -> Result<()> {
        match &self.kind {
            Kind::Null => {}
            Kind::Bool(a) => out.extend_from_slice(match (a.value(row), style.pg_text) {
                (true, true) => b"t",
                (false, true) => b"f",
                (true, false) => b"true",
                (false, false) => b"false",
            }),
            Kind::I8(v) => push_int(out, v[row]),
            Kind::I16(v) => push_int(out, v[row]),
            Kind::I32(v) => push_int(out, v[row]),
            Kind::I64(v) => push_int(out, v[row]),
            Kind::U8(v) => push_int(out, v[row]),
            Kind::U16(v) => push_int(out, v[row]),
            Kind::U32(v) => push_int(out, v[row]),
            Kind::U64(v) => push_int(out, v[row]),
            Kind::F16(v) => push_f32(out, v[row].to_f32(), false),
            Kind::F32(v) => push_f32(out, v[row], false),
            Kind::F64(v) => push_float(out, v[row], false),
            Kind::D128(v, s) => push_decimal(out, &v[row].to_string(), *s),
            Kind::D256(v, s) => push_decimal(out, &v[row].to_string(), *s),
            Kind::Str(a) => out.extend_from_slice(a.value(row).as_bytes()),
            Kind::LargeStr(a) => out.extend_from_slice(a.value(row).as_bytes()),
            Kind::StrView(a) => out.extend_from_slice(a.value(row).as_bytes()),
            Kind::Bin(a) => push_binary(out, a.value(row), style.binary),
            Kind::LargeBin(a) => push_binary(out, a.value(row), style.binary),
            Kind::BinView(a) => push_binary(out, a.value(row), style.binary),
            Kind::FixedBin(a, true) => push_uuid(out, a.value(row)),
            Kind::FixedBin(a, false) => push_binary(out, a.value(row), style.binary),
            Kind::Date32(v) => {
                let d = date_from_days(v[row] as i64, self.name)?;
                let bc = push_date(out, d, style.pg_text);
                push_era(out, bc);
            }
            Kind::Date64(v) => {
                let d = date_from_days(v[row].div_euclid(86_400_000), self.name)?;
                let bc = push_date(out, d, style.pg_text);
                push_era(out, bc);
            }
            Kind::Time(v) => push_time_nanos(out, v[row]),
            Kind::Timestamp(v, unit, tz) => {
                push_timestamp(out, v[row], *unit, tz, style, self.name)?
            }
            Kind::Duration(v, unit) => push_duration(out, v[row], *unit),
            Kind::IntervalYm(v) => push_interval(out, v[row], 0, 0),
            Kind::IntervalDt(v) => {
                push_interval(out, 0, v[row].days, v[row].milliseconds as i64 * 1_000_000)
            }
            Kind::IntervalMdn(v) => {
                push_interval(out, v[row].months, v[row].days, v[row].nanoseconds)
            }
            Kind::Dict(keys, values) => values.write_text(keys[row], out, style)?,
            Kind::Nested(a) if style.pg_text && is_list(a.data_type()) => {
                write_pg_array(*a, row, out, style, self.name)?
            }
            Kind::Nested(a) => write_nested_json(*a, row, out, style, self.name)?,
        }
        Ok(())
    }

    /// Render a value (null or not) as a JSON value.
    pub fn write_json(&self, row: usize, out: &mut Vec<u8>, style: &TextStyle) -> Result<()> {
        if self.is_null(row) {
            out.extend_from_slice(b"null");
            return Ok(());
        }
        match &self.kind {
            Kind::Null => out.extend_from_slice(b"null"),
            Kind::Bool(a) => out.extend_from_slice(if a.value(row) { b"true" } else { b"false" }),
            Kind::I8(_)
            | Kind::I16(_)
            | Kind::I32(_)
            | Kind::I64(_)
            | Kind::U8(_)
            | Kind::U16(_)
            | Kind::U32(_)
            | Kind::U64(_) => self.write_text(row, out, style)?,
            Kind::F16(v) => push_f32(out, v[row].to_f32(), true),
            Kind::F32(v) => push_f32(out, v[row], true),
            Kind::F64(v) => push_float(out, v[row], true),
            Kind::D128(..) | Kind::D256(..) => {
                if style.decimal_as_string {
                    out.push(b'"');
                    self.write_text(row, out, style)?;
                    out.push(b'"');
                } else {
                    self.write_text(row, out, style)?;
                }
            }
            Kind::Str(_) | Kind::LargeStr(_) | Kind::StrView(_) => {
                let s = match &self.kind {
                    Kind::Str(a) => a.value(row),
                    Kind::LargeStr(a) => a.value(row),
                    Kind::StrView(a) => a.value(row),
                    _ => unreachable!(),
                };
                if self.numeric_text
                    && !style.decimal_as_string
                    && s.parse::<f64>().is_ok_and(f64::is_finite)
                {
                    // Exact decimal text: a JSON number with every digit.
                    out.extend_from_slice(s.as_bytes());
                } else if self.json_text {
                    if serde_json::from_str::<serde::de::IgnoredAny>(s).is_err() {
                        return Err(Error::type_error(
                            "jsonl",
                            format!(
                                "column {} is marked as JSON but row {row} is not valid JSON",
                                self.name
                            ),
                        ));
                    }
                    out.extend_from_slice(s.as_bytes());
                } else {
                    push_json_str(out, s);
                }
            }
            Kind::Nested(a) => write_nested_json(*a, row, out, style, self.name)?,
            Kind::Dict(keys, values) => values.write_json(keys[row], out, style)?,
            _ => {
                out.push(b'"');
                self.write_text(row, out, style)?;
                out.push(b'"');
            }
        }
        Ok(())
    }
}

fn is_list(t: &DataType) -> bool {
    matches!(
        t,
        DataType::List(_)
            | DataType::LargeList(_)
            | DataType::FixedSizeList(_, _)
            | DataType::ListView(_)
            | DataType::LargeListView(_)
    )
}

fn list_values(a: &dyn Array, row: usize) -> ArrayRef {
    match a.data_type() {
        DataType::List(_) => a.as_list::<i32>().value(row),
        DataType::LargeList(_) => a.as_list::<i64>().value(row),
        DataType::FixedSizeList(_, _) => a.as_fixed_size_list().value(row),
        DataType::ListView(_) => a.as_list_view::<i32>().value(row),
        _ => a.as_list_view::<i64>().value(row),
    }
}

/// A PostgreSQL array literal: `{1,2,NULL}`, `{"a b","x\"y"}`, `{{1,2},{3,4}}`.
fn write_pg_array(
    a: &dyn Array,
    row: usize,
    out: &mut Vec<u8>,
    style: &TextStyle,
    name: &str,
) -> Result<()> {
    let values = list_values(a, row);
    let col = Column::from_dyn(values.as_ref(), name, false, false)?;
    let nested = is_list(values.data_type());
    let mut el = Vec::new();
    out.push(b'{');
    for i in 0..values.len() {
        if i > 0 {
            out.push(b',');
        }
        if col.is_null(i) {
            out.extend_from_slice(b"NULL");
        } else if nested {
            write_pg_array(values.as_ref(), i, out, style, name)?;
        } else {
            el.clear();
            col.write_text(i, &mut el, style)?;
            let quote = el.is_empty()
                || el.eq_ignore_ascii_case(b"null")
                || el.iter().any(|b| {
                    matches!(b, b'{' | b'}' | b',' | b'"' | b'\\') || b.is_ascii_whitespace()
                });
            if quote {
                out.push(b'"');
                for &b in &el {
                    if b == b'"' || b == b'\\' {
                        out.push(b'\\');
                    }
                    out.push(b);
                }
                out.push(b'"');
            } else {
                out.extend_from_slice(&el);
            }
        }
    }
    out.push(b'}');
    Ok(())
}

fn write_nested_json(
    a: &dyn Array,
    row: usize,
    out: &mut Vec<u8>,
    style: &TextStyle,
    name: &str,
) -> Result<()> {
    let mut json_style = *style;
    json_style.date_time_sep = b'T';
    let write_list = |values: ArrayRef, out: &mut Vec<u8>| -> Result<()> {
        let col = Column::from_dyn(values.as_ref(), name, false, false)?;
        out.push(b'[');
        for i in 0..values.len() {
            if i > 0 {
                out.push(b',');
            }
            col.write_json(i, out, &json_style)?;
        }
        out.push(b']');
        Ok(())
    };
    match a.data_type() {
        DataType::List(_) => write_list(a.as_list::<i32>().value(row), out),
        DataType::LargeList(_) => write_list(a.as_list::<i64>().value(row), out),
        DataType::FixedSizeList(_, _) => write_list(a.as_fixed_size_list().value(row), out),
        DataType::ListView(_) => write_list(a.as_list_view::<i32>().value(row), out),
        DataType::LargeListView(_) => write_list(a.as_list_view::<i64>().value(row), out),
        DataType::Struct(fields) => {
            let s = a.as_struct();
            out.push(b'{');
            for (i, (f, child)) in fields.iter().zip(s.columns()).enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                push_json_str(out, f.name());
                out.push(b':');
                let col =
                    Column::from_dyn(child.as_ref(), f.name(), is_json_field(f), is_uuid_field(f))?;
                col.write_json(row, out, &json_style)?;
            }
            out.push(b'}');
            Ok(())
        }
        DataType::Map(_, _) => {
            let m = a.as_map();
            let entries = m.value(row);
            let keys = Column::from_dyn(entries.column(0).as_ref(), name, false, false)?;
            let values = Column::from_dyn(entries.column(1).as_ref(), name, false, false)?;
            out.push(b'{');
            let mut key = Vec::new();
            for i in 0..entries.len() {
                if i > 0 {
                    out.push(b',');
                }
                key.clear();
                keys.write_text(i, &mut key, &json_style)?;
                push_json_str(out, &String::from_utf8_lossy(&key));
                out.push(b':');
                values.write_json(i, out, &json_style)?;
            }
            out.push(b'}');
            Ok(())
        }
        other => Err(Error::type_error(
            "format",
            format!("column {name}: nested type {other} is not supported"),
        )),
    }
}

fn parse_offset(tz: &str) -> Option<FixedOffset> {
    if tz.eq_ignore_ascii_case("utc") || tz == "Z" || tz == "Etc/UTC" {
        return FixedOffset::east_opt(0);
    }
    tz.parse::<FixedOffset>().ok()
}

pub(crate) fn push_json_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing JSON to a Vec cannot fail");
}
