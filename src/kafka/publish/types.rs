//! Arrow values → Debezium's JSON encodings and their Connect schemas (the table is in
//! [`crate::kafka`]), the inverse of the Kafka source's decoding.
use crate::kafka::debezium as dbz;
use crate::{Error, Result};
use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef};
use arrow_buffer::i256;
use arrow_schema::{DataType, Field, TimeUnit};
use base64::Engine;
use serde_json::{Map, Value, json};

/// How one column is written.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Enc {
    Bool,
    Int,
    Float,
    Str,
    NumericText,
    Bytes,
    Uuid,
    Decimal,
    DateDays,
    Date64,
    TimeMs(TimeUnit),
    TimeMicro,
    TimeNano,
    TsMs(TimeUnit),
    TsMicro,
    TsNano,
    Zoned(TimeUnit),
    DurationMicro,
    /// Anything else: its JSON rendering, as text.
    Text,
}

/// The encoding of a field and its Connect schema (`{"type", "optional", "field", …}`).
pub(crate) fn encoding(f: &Field) -> (Enc, Value) {
    let named = |ty: &str, name: &str| json!({"type": ty, "name": name, "version": 1});
    let (enc, mut s) = match f.data_type() {
        DataType::Boolean => (Enc::Bool, json!({"type": "boolean"})),
        DataType::Int8 => (Enc::Int, json!({"type": "int8"})),
        DataType::Int16 | DataType::UInt8 => (Enc::Int, json!({"type": "int16"})),
        DataType::Int32 | DataType::UInt16 => (Enc::Int, json!({"type": "int32"})),
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => {
            (Enc::Int, json!({"type": "int64"}))
        }
        DataType::Float16 | DataType::Float32 => (Enc::Float, json!({"type": "float"})),
        DataType::Float64 => (Enc::Float, json!({"type": "double"})),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            if crate::model::is_json_field(f) =>
        {
            (Enc::Str, named("string", dbz::JSON))
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            if f.metadata().contains_key(crate::model::NUMERIC_TEXT_KEY) =>
        {
            (
                Enc::NumericText,
                json!({"type": "struct", "name": dbz::VARIABLE_SCALE_DECIMAL, "version": 1, "doc": "Variable scaled decimal",
                   "fields": [{"type": "int32", "optional": false, "field": "scale"}, {"type": "bytes", "optional": false, "field": "value"}]}),
            )
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            (Enc::Str, json!({"type": "string"}))
        }
        DataType::FixedSizeBinary(16) if crate::model::is_uuid_field(f) => {
            (Enc::Uuid, named("string", dbz::UUID))
        }
        DataType::Binary
        | DataType::LargeBinary
        | DataType::FixedSizeBinary(_)
        | DataType::BinaryView => (Enc::Bytes, json!({"type": "bytes"})),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => (
            Enc::Decimal,
            json!({"type": "bytes", "name": dbz::DECIMAL, "version": 1,
                   "parameters": {"scale": s.to_string(), "connect.decimal.precision": p.to_string()}}),
        ),
        DataType::Date32 => (Enc::DateDays, named("int32", dbz::DATE)),
        DataType::Date64 => (Enc::Date64, named("int32", dbz::DATE)),
        DataType::Time32(u) => (Enc::TimeMs(*u), named("int32", dbz::TIME)),
        DataType::Time64(TimeUnit::Microsecond) => {
            (Enc::TimeMicro, named("int64", dbz::MICRO_TIME))
        }
        DataType::Time64(_) => (Enc::TimeNano, named("int64", dbz::NANO_TIME)),
        DataType::Timestamp(u, Some(_)) => (Enc::Zoned(*u), named("string", dbz::ZONED_TIMESTAMP)),
        DataType::Timestamp(u @ (TimeUnit::Second | TimeUnit::Millisecond), None) => {
            (Enc::TsMs(*u), named("int64", dbz::TIMESTAMP))
        }
        DataType::Timestamp(TimeUnit::Microsecond, None) => {
            (Enc::TsMicro, named("int64", dbz::MICRO_TIMESTAMP))
        }
        DataType::Timestamp(TimeUnit::Nanosecond, None) => {
            (Enc::TsNano, named("int64", dbz::NANO_TIMESTAMP))
        }
        DataType::Duration(TimeUnit::Microsecond) => {
            (Enc::DurationMicro, named("int64", dbz::MICRO_DURATION))
        }
        _ => (Enc::Text, json!({"type": "string"})),
    };
    if let Value::Object(o) = &mut s {
        o.insert("optional".into(), Value::Bool(f.is_nullable()));
        o.insert("field".into(), Value::String(f.name().clone()));
    }
    (enc, s)
}

fn b64(b: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(b))
}

fn to_ms(v: i64, u: TimeUnit) -> i64 {
    match u {
        TimeUnit::Second => v * 1000,
        TimeUnit::Millisecond => v,
        TimeUnit::Microsecond => v.div_euclid(1000),
        TimeUnit::Nanosecond => v.div_euclid(1_000_000),
    }
}

fn iso_utc(v: i64, u: TimeUnit) -> Option<String> {
    let t = match u {
        TimeUnit::Second => chrono::DateTime::from_timestamp(v, 0),
        TimeUnit::Millisecond => chrono::DateTime::from_timestamp_millis(v),
        TimeUnit::Microsecond => chrono::DateTime::from_timestamp_micros(v),
        TimeUnit::Nanosecond => Some(chrono::DateTime::from_timestamp_nanos(v)),
    }?;
    Some(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

fn int_of(a: &dyn Array, i: usize) -> Option<i64> {
    Some(match a.data_type() {
        DataType::Int8 => a.as_primitive::<Int8Type>().value(i) as i64,
        DataType::Int16 => a.as_primitive::<Int16Type>().value(i) as i64,
        DataType::Int32 => a.as_primitive::<Int32Type>().value(i) as i64,
        DataType::Int64 => a.as_primitive::<Int64Type>().value(i),
        DataType::UInt8 => a.as_primitive::<UInt8Type>().value(i) as i64,
        DataType::UInt16 => a.as_primitive::<UInt16Type>().value(i) as i64,
        DataType::UInt32 => a.as_primitive::<UInt32Type>().value(i) as i64,
        DataType::UInt64 => i64::try_from(a.as_primitive::<UInt64Type>().value(i)).ok()?,
        DataType::Date32 => a.as_primitive::<Date32Type>().value(i) as i64,
        DataType::Date64 => a.as_primitive::<Date64Type>().value(i),
        DataType::Time32(TimeUnit::Second) => a.as_primitive::<Time32SecondType>().value(i) as i64,
        DataType::Time32(_) => a.as_primitive::<Time32MillisecondType>().value(i) as i64,
        DataType::Time64(TimeUnit::Microsecond) => {
            a.as_primitive::<Time64MicrosecondType>().value(i)
        }
        DataType::Time64(_) => a.as_primitive::<Time64NanosecondType>().value(i),
        DataType::Timestamp(TimeUnit::Second, _) => {
            a.as_primitive::<TimestampSecondType>().value(i)
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            a.as_primitive::<TimestampMillisecondType>().value(i)
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            a.as_primitive::<TimestampMicrosecondType>().value(i)
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            a.as_primitive::<TimestampNanosecondType>().value(i)
        }
        DataType::Duration(TimeUnit::Microsecond) => {
            a.as_primitive::<DurationMicrosecondType>().value(i)
        }
        _ => return None,
    })
}

fn text_of(a: &dyn Array, i: usize) -> Option<&str> {
    match a.data_type() {
        DataType::Utf8 => Some(a.as_string::<i32>().value(i)),
        DataType::LargeUtf8 => Some(a.as_string::<i64>().value(i)),
        DataType::Utf8View => Some(a.as_string_view().value(i)),
        _ => None,
    }
}

fn bytes_of(a: &dyn Array, i: usize) -> Option<&[u8]> {
    match a.data_type() {
        DataType::Binary => Some(a.as_binary::<i32>().value(i)),
        DataType::LargeBinary => Some(a.as_binary::<i64>().value(i)),
        DataType::BinaryView => Some(a.as_binary_view().value(i)),
        DataType::FixedSizeBinary(_) => Some(a.as_fixed_size_binary().value(i)),
        _ => None,
    }
}

/// The Debezium JSON value of row `i` of `a` (a column of `field`, encoded as `enc`).
pub(crate) fn value(enc: Enc, a: &ArrayRef, field: &Field, i: usize) -> Result<Value> {
    if a.is_null(i) {
        return Ok(Value::Null);
    }
    let bad = || {
        Error::type_error(
            "kafka",
            format!(
                "column {}: a {} value cannot be encoded",
                field.name(),
                a.data_type()
            ),
        )
    };
    let d = a.as_ref();
    Ok(match enc {
        Enc::Bool => Value::Bool(d.as_boolean().value(i)),
        Enc::Int
        | Enc::DateDays
        | Enc::TimeMicro
        | Enc::TimeNano
        | Enc::TsMicro
        | Enc::TsNano
        | Enc::DurationMicro => Value::from(int_of(d, i).ok_or_else(bad)?),
        Enc::Date64 => Value::from(int_of(d, i).ok_or_else(bad)?.div_euclid(86_400_000)),
        Enc::TimeMs(u) => Value::from(to_ms(int_of(d, i).ok_or_else(bad)?, u)),
        Enc::TsMs(u) => Value::from(to_ms(int_of(d, i).ok_or_else(bad)?, u)),
        Enc::Zoned(u) => Value::String(iso_utc(int_of(d, i).ok_or_else(bad)?, u).ok_or_else(bad)?),
        Enc::Float => {
            let f = match d.data_type() {
                DataType::Float16 => d.as_primitive::<Float16Type>().value(i).to_f64(),
                DataType::Float32 => d.as_primitive::<Float32Type>().value(i) as f64,
                _ => d.as_primitive::<Float64Type>().value(i),
            };
            // Connect's JSON converter writes non-finite doubles as these strings.
            if f.is_nan() {
                Value::from("NaN")
            } else if f.is_infinite() {
                Value::from(if f > 0.0 { "Infinity" } else { "-Infinity" })
            } else if d.data_type() == &DataType::Float64 {
                Value::from(f)
            } else {
                // The shortest text of the f32 itself, not of its widened f64.
                serde_json::from_str(&d.as_primitive::<Float32Type>().value(i).to_string())
                    .map_err(|_| bad())?
            }
        }
        Enc::Str => Value::String(text_of(d, i).ok_or_else(bad)?.to_string()),
        Enc::NumericText => {
            let t = text_of(d, i).ok_or_else(bad)?;
            let (unscaled, scale) = dbz::parse_decimal_text(t).ok_or_else(|| {
                Error::type_error(
                    "kafka",
                    format!("column {}: {t:?} cannot be a Debezium VariableScaleDecimal (only finite decimals can)", field.name()),
                )
            })?;
            json!({"scale": scale, "value": b64(&dbz::decimal_to_bytes(unscaled))})
        }
        Enc::Bytes => b64(bytes_of(d, i).ok_or_else(bad)?),
        Enc::Uuid => {
            let b = bytes_of(d, i).ok_or_else(bad)?;
            let h = hex::encode(b);
            Value::String(format!(
                "{}-{}-{}-{}-{}",
                &h[0..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..32]
            ))
        }
        Enc::Decimal => {
            let v = match d.data_type() {
                DataType::Decimal128(..) => {
                    i256::from_i128(d.as_primitive::<Decimal128Type>().value(i))
                }
                _ => d.as_primitive::<Decimal256Type>().value(i),
            };
            b64(&dbz::decimal_to_bytes(v))
        }
        Enc::Text => {
            let col = crate::value::Column::new(a, field)?;
            let mut out = Vec::new();
            col.write_json(
                i,
                &mut out,
                &crate::value::TextStyle {
                    date_time_sep: b'T',
                    binary: crate::value::BinaryEncoding::Base64,
                    decimal_as_string: true,
                    pg_text: false,
                },
            )?;
            let v: Value = serde_json::from_slice(&out).map_err(|_| bad())?;
            match v {
                Value::String(s) => Value::String(s),
                other => Value::String(other.to_string()),
            }
        }
    })
}

/// A struct's Connect schema from its field schemas.
pub(crate) fn struct_schema(
    name: &str,
    optional: bool,
    fields: Vec<Value>,
    field: Option<&str>,
) -> Value {
    let mut m = Map::new();
    m.insert("type".into(), "struct".into());
    m.insert("fields".into(), Value::Array(fields));
    m.insert("optional".into(), optional.into());
    m.insert("name".into(), name.into());
    if let Some(f) = field {
        m.insert("field".into(), f.into());
    }
    Value::Object(m)
}
