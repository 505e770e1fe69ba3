//! Rendering Arrow values as text (for CSV) and as JSON (for JSON Lines).
//!
//! Arrays are downcast once per batch into a [`Column`]; rendering a value is then a
//! match and a few pushes, with no allocation for fixed-width types.

use crate::model::{is_json_field, is_uuid_field};
use crate::{Error, Result};
use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef};
use arrow_buffer::i256;
use arrow_schema::{DataType, Field, IntervalUnit, TimeUnit};
use base64::Engine;
use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

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

#[inline]
fn push_int<T: itoa::Integer>(out: &mut Vec<u8>, v: T) {
    let mut buf = itoa::Buffer::new();
    out.extend_from_slice(buf.format(v).as_bytes());
}

fn push_f32(out: &mut Vec<u8>, v: f32, json: bool) {
    if !v.is_finite() {
        return push_non_finite(out, v as f64, json);
    }
    // ryu's f32 path gives the shortest text that reads back as the same f32.
    let mut buf = ryu::Buffer::new();
    let short = buf.format_finite(v);
    let bits = v.abs().to_bits();
    let (exp, frac) = ((bits >> 23) as i32, (bits & 0x7f_ffff) as u128);
    if exp >= 127 + 24 && is_tie(short, exp - 127 - 23, frac, 23) {
        return push_shortest(
            out,
            &no_tie(
                |n| format!("{v:.n$e}"),
                |t| t.parse::<f32>().ok() == Some(v),
                |t| is_tie(t, exp - 127 - 23, frac, 23),
            ),
            6,
        );
    }
    push_shortest(out, short, 6);
}

fn push_float(out: &mut Vec<u8>, v: f64, json: bool) {
    if !v.is_finite() {
        return push_non_finite(out, v, json);
    }
    let mut buf = ryu::Buffer::new();
    let short = buf.format_finite(v);
    let bits = v.abs().to_bits();
    let (exp, frac) = ((bits >> 52) as i32, (bits & 0xf_ffff_ffff_ffff) as u128);
    if exp >= 1023 + 53 && exp - 1023 < 126 && is_tie(short, exp - 1023 - 52, frac, 52) {
        return push_shortest(
            out,
            &no_tie(
                |n| format!("{v:.n$e}"),
                |t| t.parse::<f64>().ok() == Some(v),
                |t| is_tie(t, exp - 1023 - 52, frac, 52),
            ),
            15,
        );
    }
    push_shortest(out, short, 15);
}

/// Whether decimal text `t` lies exactly on a rounding boundary of the float whose
/// magnitude is `(2^mbits + frac) * 2^shift` (an integer: `shift >= 1`). ryu accepts such
/// a boundary as "shortest"; PostgreSQL does not, and prints more digits.
fn is_tie(t: &str, shift: i32, frac: u128, mbits: u32) -> bool {
    let Some(d) = decimal_to_u128(t.trim_start_matches('-')) else {
        return false;
    };
    let m = (1u128 << mbits) | frac;
    let v = m << shift;
    let half = 1u128 << (shift - 1);
    // Just below a power of two the lower neighbour is half as far.
    let lower_half = if frac == 0 { half / 2 } else { half };
    d == v + half || (lower_half > 0 && d == v - lower_half)
}

/// The value of decimal text like `3.603015064767306e16` if it is a whole number that
/// fits in a u128.
fn decimal_to_u128(t: &str) -> Option<u128> {
    let (mant, exp) = match t.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().ok()?),
        None => (t, 0),
    };
    let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
    let frac = frac.trim_end_matches('0');
    let digits = format!("{int}{frac}");
    let scale = exp - frac.len() as i32;
    if scale < 0 {
        return None; // a fraction: not a boundary of an integer-valued float
    }
    let mut v: u128 = digits.parse().ok()?;
    for _ in 0..scale {
        v = v.checked_mul(10)?;
    }
    Some(v)
}

/// The shortest correctly rounded representation (17 digits at most) that reads back as
/// the value and is not a boundary: what PostgreSQL prints.
fn no_tie(
    render: impl Fn(usize) -> String,
    reads_back: impl Fn(&str) -> bool,
    tie: impl Fn(&str) -> bool,
) -> String {
    for n in 1..17 {
        let t = render(n);
        if reads_back(&t) && !tie(&t) {
            return t;
        }
    }
    render(16)
}

fn push_non_finite(out: &mut Vec<u8>, v: f64, json: bool) {
    let text: &[u8] = if v.is_nan() {
        b"NaN"
    } else if v > 0.0 {
        b"Infinity"
    } else {
        b"-Infinity"
    };
    if json {
        out.push(b'"');
        out.extend_from_slice(text);
        out.push(b'"');
    } else {
        out.extend_from_slice(text);
    }
}

/// Re-lay ryu's shortest digits the way PostgreSQL prints floats: plain notation when
/// the decimal exponent is in `-4..precision` (6 for float4, 15 for float8), else
/// `d.ddde+XX` with at least two exponent digits; no trailing `.0`.
fn push_shortest(out: &mut Vec<u8>, ryu: &str, precision: i32) {
    let (neg, body) = match ryu.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, ryu),
    };
    let (mantissa, exp) = match body.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (body, 0),
    };
    let int_len = mantissa.find('.').unwrap_or(mantissa.len()) as i32;
    let all: Vec<u8> = mantissa.bytes().filter(|b| *b != b'.').collect();
    let lead = all.iter().take_while(|b| **b == b'0').count();
    let digits = all[lead..].to_vec();
    let trimmed_len = digits.len() - digits.iter().rev().take_while(|b| **b == b'0').count();
    let digits = &digits[..trimmed_len];
    if neg {
        out.push(b'-');
    }
    if digits.is_empty() {
        out.push(b'0');
        return;
    }
    // value = d1.d2d3... x 10^x
    let x = int_len - 1 - lead as i32 + exp;
    if (-4..precision).contains(&x) {
        if x >= 0 {
            let int_digits = (x + 1) as usize;
            for i in 0..int_digits {
                out.push(*digits.get(i).unwrap_or(&b'0'));
            }
            if digits.len() > int_digits {
                out.push(b'.');
                out.extend_from_slice(&digits[int_digits..]);
            }
        } else {
            out.extend_from_slice(b"0.");
            out.extend(std::iter::repeat_n(b'0', (-x - 1) as usize));
            out.extend_from_slice(digits);
        }
    } else {
        out.push(digits[0]);
        if digits.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.push(b'e');
        out.push(if x < 0 { b'-' } else { b'+' });
        let e = x.unsigned_abs();
        if e < 10 {
            out.push(b'0');
        }
        push_int(out, e);
    }
}

/// Insert the decimal point into an integer's digits.
fn push_decimal(out: &mut Vec<u8>, digits: &str, scale: i8) {
    let (neg, digits) = match digits.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, digits),
    };
    if neg {
        out.push(b'-');
    }
    if scale <= 0 {
        out.extend_from_slice(digits.as_bytes());
        if digits != "0" {
            out.extend(std::iter::repeat_n(b'0', (-scale) as usize));
        }
        return;
    }
    let scale = scale as usize;
    if digits.len() > scale {
        let (int, frac) = digits.split_at(digits.len() - scale);
        out.extend_from_slice(int.as_bytes());
        out.push(b'.');
        out.extend_from_slice(frac.as_bytes());
    } else {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', scale - digits.len()));
        out.extend_from_slice(digits.as_bytes());
    }
}

fn push_binary(out: &mut Vec<u8>, v: &[u8], enc: BinaryEncoding) {
    match enc {
        BinaryEncoding::PostgresHex => {
            out.extend_from_slice(b"\\x");
            push_hex(out, v);
        }
        BinaryEncoding::Hex => push_hex(out, v),
        BinaryEncoding::Base64 => {
            let start = out.len();
            out.resize(start + v.len().div_ceil(3) * 4, 0);
            let n = base64::engine::general_purpose::STANDARD
                .encode_slice(v, &mut out[start..])
                .expect("buffer sized for base64");
            out.truncate(start + n);
        }
    }
}

fn push_hex(out: &mut Vec<u8>, v: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(v.len() * 2);
    for b in v {
        out.push(HEX[(b >> 4) as usize]);
        out.push(HEX[(b & 0xf) as usize]);
    }
}

fn push_uuid(out: &mut Vec<u8>, v: &[u8]) {
    for (i, chunk) in [&v[0..4], &v[4..6], &v[6..8], &v[8..10], &v[10..16]]
        .iter()
        .enumerate()
    {
        if i > 0 {
            out.push(b'-');
        }
        push_hex(out, chunk);
    }
}

#[inline]
fn push_2(out: &mut Vec<u8>, v: u32) {
    out.push(b'0' + (v / 10) as u8);
    out.push(b'0' + (v % 10) as u8);
}

fn date_from_days(days: i64, column: &str) -> Result<NaiveDate> {
    NaiveDate::from_num_days_from_ce_opt((days + 719_163).try_into().unwrap_or(i32::MAX))
        .ok_or_else(|| {
            Error::type_error(
                "format",
                format!("column {column}: date out of range ({days} days)"),
            )
        })
}

/// `YYYY-MM-DD`. With `pg`, a year before 1 AD is written as PostgreSQL writes it, the
/// year counted back from 1 BC (`4713-01-01` for chrono's year -4712), and `true` is
/// returned: the caller appends ` BC` after the whole value, as PostgreSQL does. Without
/// `pg`, ISO 8601's expanded years (`-4712-01-01`).
fn push_date(out: &mut Vec<u8>, d: NaiveDate, pg: bool) -> bool {
    let y = d.year();
    if pg && y <= 0 {
        let bc = 1 - y;
        if bc <= 9999 {
            push_2(out, (bc / 100) as u32);
            push_2(out, (bc % 100) as u32);
        } else {
            out.extend_from_slice(bc.to_string().as_bytes());
        }
        out.push(b'-');
        push_2(out, d.month());
        out.push(b'-');
        push_2(out, d.day());
        return true;
    }
    if (0..=9999).contains(&y) {
        push_2(out, (y / 100) as u32);
        push_2(out, (y % 100) as u32);
    } else {
        out.extend_from_slice(format!("{y:+05}").as_bytes());
    }
    out.push(b'-');
    push_2(out, d.month());
    out.push(b'-');
    push_2(out, d.day());
    false
}

/// ` BC` after a value whose date was before 1 AD (see [`push_date`]).
fn push_era(out: &mut Vec<u8>, bc: bool) {
    if bc {
        out.extend_from_slice(b" BC");
    }
}

/// Fractional seconds, trailing zeros trimmed, nothing when zero.
fn push_fraction(out: &mut Vec<u8>, nanos: u32) {
    if nanos == 0 {
        return;
    }
    let mut digits = [0u8; 9];
    let mut n = nanos;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
    let mut len = 9;
    while digits[len - 1] == b'0' {
        len -= 1;
    }
    out.push(b'.');
    out.extend_from_slice(&digits[..len]);
}

fn push_time(out: &mut Vec<u8>, t: NaiveTime) {
    push_2(out, t.hour());
    out.push(b':');
    push_2(out, t.minute());
    out.push(b':');
    // A leap second shows as second 59 with nanos >= 1e9; print it as :60.
    let (sec, nanos) = if t.nanosecond() >= 1_000_000_000 {
        (60, t.nanosecond() - 1_000_000_000)
    } else {
        (t.second(), t.nanosecond())
    };
    push_2(out, sec);
    push_fraction(out, nanos);
}

pub(crate) fn push_time_nanos(out: &mut Vec<u8>, nanos: i64) {
    let secs = nanos.div_euclid(1_000_000_000);
    let frac = nanos.rem_euclid(1_000_000_000) as u32;
    match NaiveTime::from_num_seconds_from_midnight_opt(secs as u32, frac) {
        Some(t) if (0..86_400).contains(&secs) => push_time(out, t),
        _ => push_duration(out, nanos, TimeUnit::Nanosecond),
    }
}

fn split_unit(v: i64, unit: TimeUnit) -> (i64, u32) {
    let per_sec: i64 = match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    };
    let nanos_per = 1_000_000_000 / per_sec;
    (
        v.div_euclid(per_sec),
        (v.rem_euclid(per_sec) * nanos_per) as u32,
    )
}

/// Date and time; `true` when ` BC` is owed at the end (see [`push_date`]).
fn push_naive_datetime(out: &mut Vec<u8>, dt: NaiveDateTime, sep: u8, pg: bool) -> bool {
    let bc = push_date(out, dt.date(), pg);
    out.push(sep);
    push_time(out, dt.time());
    bc
}

fn push_timestamp(
    out: &mut Vec<u8>,
    v: i64,
    unit: TimeUnit,
    tz: &Tz,
    style: &TextStyle,
    column: &str,
) -> Result<()> {
    let (sep, pg) = (style.date_time_sep, style.pg_text);
    let (secs, nanos) = split_unit(v, unit);
    let utc = DateTime::from_timestamp(secs, nanos).ok_or_else(|| {
        Error::type_error(
            "format",
            format!("column {column}: timestamp {v} out of range"),
        )
    })?;
    let bc = match tz {
        Tz::Naive => push_naive_datetime(out, utc.naive_utc(), sep, pg),
        Tz::Utc => {
            let bc = push_naive_datetime(out, utc.naive_utc(), sep, pg);
            push_offset(out, 0, sep == b'T');
            bc
        }
        Tz::Fixed(off) => {
            let bc = push_naive_datetime(out, utc.with_timezone(off).naive_local(), sep, pg);
            push_offset(out, off.local_minus_utc(), sep == b'T');
            bc
        }
    };
    push_era(out, bc);
    Ok(())
}

/// A UTC offset: `+HH:MM` in ISO/RFC 3339 form (JSON), or as PostgreSQL prints it in
/// text (`+HH`, or `+HH:MM` when there are minutes).
pub(crate) fn push_offset(out: &mut Vec<u8>, seconds_east: i32, full: bool) {
    out.push(if seconds_east < 0 { b'-' } else { b'+' });
    let s = seconds_east.unsigned_abs();
    push_2(out, s / 3600);
    if full || !(s / 60).is_multiple_of(60) || !s.is_multiple_of(60) {
        out.push(b':');
        push_2(out, (s / 60) % 60);
    }
    if !s.is_multiple_of(60) {
        out.push(b':');
        push_2(out, s % 60);
    }
}

/// `[-]H:MM:SS[.fraction]`, hours unbounded (MySQL `TIME`, PostgreSQL `interval` input).
fn push_duration(out: &mut Vec<u8>, v: i64, unit: TimeUnit) {
    let (secs, nanos) = split_unit(v, unit);
    let neg = secs < 0;
    let (secs, nanos) = if neg && nanos > 0 {
        ((-secs - 1) as u64, 1_000_000_000 - nanos)
    } else {
        (secs.unsigned_abs(), nanos)
    };
    if neg {
        out.push(b'-');
    }
    let hours = secs / 3600;
    if hours < 10 {
        out.push(b'0');
    }
    push_int(out, hours);
    out.push(b':');
    push_2(out, ((secs / 60) % 60) as u32);
    out.push(b':');
    push_2(out, (secs % 60) as u32);
    push_fraction(out, nanos);
}

/// ISO 8601 duration as PostgreSQL prints it with `intervalstyle = iso_8601` (and reads
/// it back): `P[nY][nM][nD][T[nH][nM][n.nS]]`, each part with its own sign, `PT0S` for zero.
fn push_interval(out: &mut Vec<u8>, months: i32, days: i32, nanos: i64) {
    out.push(b'P');
    if months == 0 && days == 0 && nanos == 0 {
        out.extend_from_slice(b"T0S");
        return;
    }
    let (years, months) = (months / 12, months % 12);
    for (v, unit) in [
        (years as i64, b'Y'),
        (months as i64, b'M'),
        (days as i64, b'D'),
    ] {
        if v != 0 {
            push_int(out, v);
            out.push(unit);
        }
    }
    if nanos != 0 {
        out.push(b'T');
        let neg = nanos < 0;
        let abs = nanos.unsigned_abs();
        let (h, m) = (abs / 3_600_000_000_000, (abs / 60_000_000_000) % 60);
        let (sec, frac) = ((abs / 1_000_000_000) % 60, (abs % 1_000_000_000) as u32);
        for (v, unit) in [(h, b'H'), (m, b'M')] {
            if v != 0 {
                if neg {
                    out.push(b'-');
                }
                push_int(out, v);
                out.push(unit);
            }
        }
        if sec != 0 || frac != 0 {
            if neg {
                out.push(b'-');
            }
            push_int(out, sec);
            push_fraction(out, frac);
            out.push(b'S');
        }
    }
}

pub(crate) fn push_json_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing JSON to a Vec cannot fail");
}
