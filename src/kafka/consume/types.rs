//! Debezium values to Arrow: each column's [`Kind`] from its Connect schema (or, for
//! events without schemas, from the JSON values themselves), and the arrays built from
//! the JSON cells. The table of encodings is in [`crate::kafka`].
use crate::kafka::debezium as dbz;
use crate::{Error, Result};
use arrow_array::builder::*;
use arrow_array::{ArrayRef, types::*};
use arrow_buffer::i256;
use arrow_schema::{DataType, Field, TimeUnit};
use base64::Engine;
use serde_json::Value;
use std::sync::Arc;

/// How one column's values are encoded and what Arrow type they become.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    I8,
    I16,
    I32,
    I64,
    F32,
    F64,
    Str,
    Json,
    Uuid,
    Bytes,
    Decimal(u8, i8),
    VarDecimal,
    Date,
    TimeMs,
    TimeUs,
    TimeNs,
    TsMs,
    TsUs,
    TsNs,
    TsMsUtc,
    ZonedTs,
    ZonedTime,
    DurationUs,
    /// Any other value, kept as its JSON text.
    Other,
}

impl Kind {
    /// The kind a Connect field schema (`{"type":…, "name":…, "parameters":…}`) names.
    pub(crate) fn from_connect(s: &Value) -> Kind {
        let ty = s.get("type").and_then(Value::as_str).unwrap_or("");
        let name = s.get("name").and_then(Value::as_str).unwrap_or("");
        match (ty, name) {
            ("bytes", dbz::DECIMAL) => {
                let param = |k: &str| {
                    s.get("parameters")
                        .and_then(|p| p.get(k))
                        .and_then(|v| {
                            v.as_str()
                                .map(str::to_string)
                                .or_else(|| Some(v.to_string()))
                        })
                        .and_then(|t| t.parse::<i64>().ok())
                };
                let scale = param("scale").unwrap_or(0).clamp(-76, 76) as i8;
                let precision = param("connect.decimal.precision")
                    .unwrap_or(38)
                    .clamp(1, 76) as u8;
                Kind::Decimal(precision.max(scale.max(0) as u8), scale)
            }
            ("struct", dbz::VARIABLE_SCALE_DECIMAL) => Kind::VarDecimal,
            ("int32", dbz::DATE | dbz::CONNECT_DATE) => Kind::Date,
            ("int32", dbz::TIME | dbz::CONNECT_TIME) => Kind::TimeMs,
            ("int64", dbz::MICRO_TIME) => Kind::TimeUs,
            ("int64", dbz::NANO_TIME) => Kind::TimeNs,
            ("int64", dbz::TIMESTAMP) => Kind::TsMs,
            ("int64", dbz::MICRO_TIMESTAMP) => Kind::TsUs,
            ("int64", dbz::NANO_TIMESTAMP) => Kind::TsNs,
            ("int64", dbz::CONNECT_TIMESTAMP) => Kind::TsMsUtc,
            ("int64", dbz::MICRO_DURATION) => Kind::DurationUs,
            ("string", dbz::ZONED_TIMESTAMP) => Kind::ZonedTs,
            ("string", dbz::ZONED_TIME) => Kind::ZonedTime,
            ("string", dbz::JSON) => Kind::Json,
            ("string", dbz::UUID) => Kind::Uuid,
            ("boolean", _) => Kind::Bool,
            ("int8", _) => Kind::I8,
            ("int16", _) => Kind::I16,
            ("int32", _) => Kind::I32,
            ("int64", _) => Kind::I64,
            ("float" | "float32", _) => Kind::F32,
            ("double" | "float64", _) => Kind::F64,
            ("string", _) => Kind::Str,
            ("bytes", _) => Kind::Bytes,
            _ => Kind::Other,
        }
    }

    /// The kind of one value of an event without schemas (`None` for null).
    pub(crate) fn infer(v: &Value) -> Option<Kind> {
        Some(match v {
            Value::Null => return None,
            Value::Bool(_) => Kind::Bool,
            Value::Number(n) if n.as_i64().is_some() => Kind::I64,
            Value::Number(_) => Kind::F64,
            Value::String(_) => Kind::Str,
            _ => Kind::Other,
        })
    }

    /// The narrowest kind holding values of both (schemaless inference).
    pub(crate) fn unify(a: &Kind, b: &Kind) -> Kind {
        match (a, b) {
            _ if a == b => a.clone(),
            (Kind::I64, Kind::F64) | (Kind::F64, Kind::I64) => Kind::F64,
            _ => Kind::Other,
        }
    }

    /// The Arrow field of a column of this kind (always nullable: change rows are).
    pub(crate) fn field(&self, name: &str) -> Field {
        let dt = match self {
            Kind::Bool => DataType::Boolean,
            Kind::I8 => DataType::Int8,
            Kind::I16 => DataType::Int16,
            Kind::I32 => DataType::Int32,
            Kind::I64 => DataType::Int64,
            Kind::F32 => DataType::Float32,
            Kind::F64 => DataType::Float64,
            Kind::Str | Kind::Other => DataType::Utf8,
            Kind::Json => return crate::model::json_field(name, true),
            Kind::Uuid => return crate::model::uuid_field(name, true),
            Kind::VarDecimal => return crate::model::numeric_text_field(name, true),
            Kind::Bytes => DataType::Binary,
            Kind::Decimal(p, s) if *p <= 38 => DataType::Decimal128(*p, *s),
            Kind::Decimal(p, s) => DataType::Decimal256(*p, *s),
            Kind::Date => DataType::Date32,
            Kind::TimeMs => DataType::Time32(TimeUnit::Millisecond),
            Kind::TimeUs | Kind::ZonedTime => DataType::Time64(TimeUnit::Microsecond),
            Kind::TimeNs => DataType::Time64(TimeUnit::Nanosecond),
            Kind::TsMs => DataType::Timestamp(TimeUnit::Millisecond, None),
            Kind::TsUs => DataType::Timestamp(TimeUnit::Microsecond, None),
            Kind::TsNs => DataType::Timestamp(TimeUnit::Nanosecond, None),
            Kind::TsMsUtc => DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into())),
            Kind::ZonedTs => DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            Kind::DurationUs => DataType::Duration(TimeUnit::Microsecond),
        };
        Field::new(name, dt, true)
    }
}

fn bad(column: &str, what: &str, v: &Value) -> Error {
    let mut shown = v.to_string();
    if shown.len() > 80 {
        shown.truncate(80);
        shown.push('…');
    }
    Error::type_error("kafka", format!("column {column}: {shown} is not {what}"))
}

fn b64(column: &str, v: &Value) -> Result<Vec<u8>> {
    let s = v.as_str().ok_or_else(|| bad(column, "base64 text", v))?;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|_| bad(column, "base64 text", v))
}

fn int(column: &str, v: &Value) -> Result<i64> {
    v.as_i64().ok_or_else(|| bad(column, "an integer", v))
}

/// A `VariableScaleDecimal` `{scale, value}` as exact text.
pub(crate) fn var_decimal(column: &str, v: &Value) -> Result<String> {
    let scale = v
        .get("scale")
        .and_then(Value::as_i64)
        .ok_or_else(|| bad(column, "a {scale, value} decimal", v))?;
    let raw = b64(column, v.get("value").unwrap_or(&Value::Null))?;
    Ok(dbz::decimal_text(
        dbz::decimal_from_bytes(&raw)?,
        scale as i32,
    ))
}

fn zoned_ts(column: &str, v: &Value) -> Result<i64> {
    let s = v
        .as_str()
        .ok_or_else(|| bad(column, "an ISO 8601 timestamp", v))?;
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_micros())
        .map_err(|_| bad(column, "an ISO 8601 timestamp", v))
}

fn zoned_time(column: &str, v: &Value) -> Result<i64> {
    let s = v
        .as_str()
        .ok_or_else(|| bad(column, "an ISO 8601 time with offset", v))?;
    let err = || bad(column, "an ISO 8601 time with offset", v);
    let (time, offset_s) = if let Some(t) = s.strip_suffix('Z') {
        (t, 0i64)
    } else {
        let i = s.rfind(['+', '-']).ok_or_else(err)?;
        let (t, off) = s.split_at(i);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let off = &off[1..];
        let (h, m) = off.split_once(':').unwrap_or((off, "0"));
        let secs =
            h.parse::<i64>().map_err(|_| err())? * 3600 + m.parse::<i64>().map_err(|_| err())? * 60;
        (t, sign * secs)
    };
    let t = chrono::NaiveTime::parse_from_str(time, "%H:%M:%S%.f").map_err(|_| err())?;
    use chrono::Timelike;
    let micros = t.num_seconds_from_midnight() as i64 * 1_000_000 + (t.nanosecond() as i64 / 1000)
        - offset_s * 1_000_000;
    Ok(micros.rem_euclid(86_400_000_000))
}

fn uuid(column: &str, v: &Value) -> Result<[u8; 16]> {
    let s = v.as_str().ok_or_else(|| bad(column, "a UUID", v))?;
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    let mut out = [0u8; 16];
    hex::decode_to_slice(&hex, &mut out).map_err(|_| bad(column, "a UUID", v))?;
    Ok(out)
}

/// The JSON text of a value (what `Other` columns hold); strings stay as they are.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

macro_rules! prim {
    ($b:ty, $cells:expr, $f:expr) => {{
        let mut b = <$b>::new();
        for c in $cells {
            match c {
                Some(v) => b.append_value($f(v)?),
                None => b.append_null(),
            }
        }
        Arc::new(b.finish()) as ArrayRef
    }};
}

/// The array of one column from its JSON cells (`None`: null or not sent).
pub(crate) fn build(kind: &Kind, cells: &[Option<&Value>], column: &str) -> Result<ArrayRef> {
    let c = column;
    let narrow = |v: &Value, lo: i64, hi: i64, what: &str| -> Result<i64> {
        let n = int(c, v)?;
        if n < lo || n > hi {
            Err(bad(c, what, v))
        } else {
            Ok(n)
        }
    };
    Ok(match kind {
        Kind::Bool => prim!(BooleanBuilder, cells, |v: &Value| v
            .as_bool()
            .ok_or_else(|| bad(c, "a boolean", v))),
        Kind::I8 => prim!(Int8Builder, cells, |v: &Value| narrow(
            v,
            i8::MIN as i64,
            i8::MAX as i64,
            "an int8"
        )
        .map(|n| n as i8)),
        Kind::I16 => prim!(Int16Builder, cells, |v: &Value| narrow(
            v,
            i16::MIN as i64,
            i16::MAX as i64,
            "an int16"
        )
        .map(|n| n as i16)),
        Kind::I32 => prim!(Int32Builder, cells, |v: &Value| narrow(
            v,
            i32::MIN as i64,
            i32::MAX as i64,
            "an int32"
        )
        .map(|n| n as i32)),
        Kind::I64 => prim!(Int64Builder, cells, |v: &Value| int(c, v)),
        Kind::F32 => prim!(Float32Builder, cells, |v: &Value| float(c, v)
            .map(|f| f as f32)),
        Kind::F64 => prim!(Float64Builder, cells, |v: &Value| float(c, v)),
        Kind::Str | Kind::Json => prim!(StringBuilder, cells, |v: &Value| v
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| bad(c, "text", v))),
        Kind::Other => prim!(StringBuilder, cells, |v: &Value| Ok::<_, Error>(text(v))),
        Kind::VarDecimal => prim!(StringBuilder, cells, |v: &Value| var_decimal(c, v)),
        Kind::Bytes => prim!(BinaryBuilder, cells, |v: &Value| b64(c, v)),
        Kind::Uuid => {
            let mut b = FixedSizeBinaryBuilder::with_capacity(cells.len(), 16);
            for cell in cells {
                match cell {
                    Some(v) => b
                        .append_value(uuid(c, v)?)
                        .map_err(|e| Error::type_error("kafka", e.to_string()))?,
                    None => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        Kind::Decimal(p, s) => {
            let raw = |v: &Value| -> Result<i256> { dbz::decimal_from_bytes(&b64(c, v)?) };
            if *p <= 38 {
                let a = prim!(Decimal128Builder, cells, |v: &Value| raw(v).and_then(|x| x
                    .to_i128()
                    .ok_or_else(|| bad(c, "a decimal of 38 digits", v))));
                let a = a
                    .as_any()
                    .downcast_ref::<arrow_array::Decimal128Array>()
                    .cloned()
                    .expect("built above");
                Arc::new(
                    a.with_precision_and_scale(*p, *s)
                        .map_err(|e| Error::type_error("kafka", format!("column {c}: {e}")))?,
                )
            } else {
                let a = prim!(Decimal256Builder, cells, raw);
                let a = a
                    .as_any()
                    .downcast_ref::<arrow_array::Decimal256Array>()
                    .cloned()
                    .expect("built above");
                Arc::new(
                    a.with_precision_and_scale(*p, *s)
                        .map_err(|e| Error::type_error("kafka", format!("column {c}: {e}")))?,
                )
            }
        }
        Kind::Date => prim!(Date32Builder, cells, |v: &Value| narrow(
            v,
            i32::MIN as i64,
            i32::MAX as i64,
            "a day number"
        )
        .map(|n| n as i32)),
        Kind::TimeMs => prim!(Time32MillisecondBuilder, cells, |v: &Value| narrow(
            v,
            0,
            86_400_000,
            "milliseconds of a day"
        )
        .map(|n| n as i32)),
        Kind::TimeUs => prim!(Time64MicrosecondBuilder, cells, |v: &Value| int(c, v)),
        Kind::TimeNs => prim!(Time64NanosecondBuilder, cells, |v: &Value| int(c, v)),
        Kind::ZonedTime => prim!(Time64MicrosecondBuilder, cells, |v: &Value| zoned_time(
            c, v
        )),
        Kind::TsMs => prim!(TimestampMillisecondBuilder, cells, |v: &Value| int(c, v)),
        Kind::TsUs => prim!(TimestampMicrosecondBuilder, cells, |v: &Value| int(c, v)),
        Kind::TsNs => prim!(TimestampNanosecondBuilder, cells, |v: &Value| int(c, v)),
        Kind::TsMsUtc => {
            let mut b = PrimitiveBuilder::<TimestampMillisecondType>::with_capacity(cells.len())
                .with_timezone("+00:00");
            for cell in cells {
                match cell {
                    Some(v) => b.append_value(int(c, v)?),
                    None => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        Kind::ZonedTs => {
            let mut b = PrimitiveBuilder::<TimestampMicrosecondType>::with_capacity(cells.len())
                .with_timezone("+00:00");
            for cell in cells {
                match cell {
                    Some(v) => b.append_value(zoned_ts(c, v)?),
                    None => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        Kind::DurationUs => prim!(
            PrimitiveBuilder::<DurationMicrosecondType>,
            cells,
            |v: &Value| int(c, v)
        ),
    })
}

fn float(column: &str, v: &Value) -> Result<f64> {
    match v {
        Value::Number(n) => n.as_f64().ok_or_else(|| bad(column, "a number", v)),
        // Connect's JSON converter writes non-finite doubles as these strings.
        Value::String(s) if s == "NaN" => Ok(f64::NAN),
        Value::String(s) if s == "Infinity" => Ok(f64::INFINITY),
        Value::String(s) if s == "-Infinity" => Ok(f64::NEG_INFINITY),
        _ => Err(bad(column, "a number", v)),
    }
}

/// Whether a cell is Debezium's placeholder for a value it did not read, in the forms
/// its connectors send: the text, its bytes in base64, or a one-element array of it.
pub(crate) fn is_unavailable(kind: &Kind, v: &Value) -> bool {
    const B64: &str = "X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ==";
    match v {
        Value::String(s) => {
            s == dbz::UNAVAILABLE_VALUE || (matches!(kind, Kind::Bytes) && s == B64)
        }
        Value::Array(a) => a.len() == 1 && a[0].as_str() == Some(dbz::UNAVAILABLE_VALUE),
        _ => false,
    }
}
