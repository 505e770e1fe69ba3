//! PostgreSQL values (binary wire format) to Arrow, by type OID.
//!
//! | PostgreSQL | Arrow |
//! |---|---|
//! | `boolean` | Boolean |
//! | `smallint`, `integer`, `bigint` | Int16, Int32, Int64 |
//! | `oid` | UInt32 |
//! | `real`, `double precision` | Float32, Float64 |
//! | `numeric(p,s)`, p ≤ 38 / ≤ 76 | Decimal128(p,s) / Decimal256(p,s) |
//! | `numeric` unconstrained (or from a query whose scale is unknown) | Utf8, exact text (marked `tributary.numeric`) |
//! | `text`, `varchar`, `char(n)`, `name`, `"char"`, enums, `xml` | Utf8 (`char(n)` keeps its padding, as PostgreSQL prints it) |
//! | `json`, `jsonb` | Utf8 marked `arrow.json` |
//! | `bytea` | Binary |
//! | `date` | Date32 |
//! | `time` | Time64(µs) |
//! | `timetz` | Utf8 (`12:00:00+05:30`: Arrow has no time-with-zone type) |
//! | `timestamp` / `timestamptz` | Timestamp(µs) / Timestamp(µs, "+00:00") |
//! | `interval` | Interval(MonthDayNano) |
//! | `uuid` | FixedSizeBinary(16) marked `arrow.uuid` |
//! | `inet`, `cidr`, `macaddr`, `macaddr8`, `bit`, `varbit` | Utf8, as PostgreSQL prints them |
//! | one-dimensional arrays of any of these | List |
//! | domains | their base type |
//!
//! Anything else (ranges, composites, geometric types, `money`, multi-dimensional arrays,
//! `infinity` dates) is an error naming the column and its type; cast it in a custom query
//! (`SELECT col::text ...`).

use super::numeric::{numeric_text, numeric_unscaled_i128};
use crate::sources::sql::decimal::unscaled_i256;
use crate::{Error, Result};
use arrow_array::builder::*;
use arrow_array::types::IntervalMonthDayNanoType;
use arrow_buffer::i256;
use arrow_schema::{DataType, Field, IntervalUnit, TimeUnit};
use sqlx::TypeInfo;
use sqlx::postgres::{PgTypeInfo, PgTypeKind};
use std::sync::Arc;

const PG_EPOCH_DAYS: i32 = 10_957; // 2000-01-01 - 1970-01-01
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// How one column is decoded.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Dec {
    Bool,
    I16,
    I32,
    I64,
    Oid,
    F32,
    F64,
    Text,
    Char1,
    Json,
    Jsonb,
    Bytea,
    Date,
    Time,
    TimeTz,
    Ts,
    TsTz,
    Interval,
    Uuid,
    Decimal(u8, i8),
    NumericText,
    Inet,
    Mac,
    Bits,
    Array(Box<Dec>),
}

pub(crate) fn unsupported(column: &str, ty: &str) -> Error {
    Error::type_error(
        "postgres",
        format!(
            "column {column} has type {ty}, which cannot be converted losslessly; \
             cast it in a custom query, e.g. SELECT {column}::text"
        ),
    )
}

impl Dec {
    /// The decoder for a column of type `ti` (with type modifier `typmod`, -1 if unknown).
    pub(crate) fn for_type(ti: &PgTypeInfo, typmod: i32, column: &str) -> Result<Dec> {
        match ti.kind() {
            PgTypeKind::Domain(base) => return Dec::for_type(base, typmod, column),
            PgTypeKind::Enum(_) => return Ok(Dec::Text),
            PgTypeKind::Array(elem) => {
                let inner = Dec::for_type(elem, -1, column)?;
                if matches!(inner, Dec::Array(_)) {
                    return Err(unsupported(column, ti.name()));
                }
                return Ok(Dec::Array(Box::new(inner)));
            }
            PgTypeKind::Composite(_) | PgTypeKind::Range(_) | PgTypeKind::Pseudo => {
                return Err(unsupported(column, ti.name()));
            }
            PgTypeKind::Simple => {}
        }
        Dec::simple(
            ti.oid().map(|o| o.0).unwrap_or(0),
            ti.name(),
            typmod,
            column,
        )
    }

    /// The decoder for a base (not array, domain or enum) type by OID and name.
    pub(crate) fn simple(oid: u32, name: &str, typmod: i32, column: &str) -> Result<Dec> {
        Ok(match oid {
            16 => Dec::Bool,
            17 => Dec::Bytea,
            18 => Dec::Char1,
            19 | 25 | 142 | 705 | 1042 | 1043 => Dec::Text,
            20 => Dec::I64,
            21 => Dec::I16,
            23 => Dec::I32,
            26 => Dec::Oid,
            114 => Dec::Json,
            3802 => Dec::Jsonb,
            700 => Dec::F32,
            701 => Dec::F64,
            1082 => Dec::Date,
            1083 => Dec::Time,
            1266 => Dec::TimeTz,
            1114 => Dec::Ts,
            1184 => Dec::TsTz,
            1186 => Dec::Interval,
            2950 => Dec::Uuid,
            650 | 869 => Dec::Inet,
            829 | 774 => Dec::Mac,
            1560 | 1562 => Dec::Bits,
            1700 => {
                // typmod = ((precision << 16) | scale) + 4
                if typmod >= 4 {
                    let p = ((typmod - 4) >> 16) & 0xffff;
                    let s = ((typmod - 4) & 0x7ff) as i16;
                    // Negative scales (PostgreSQL 15) are stored in 11 bits.
                    let s = if s > 1000 { s - 2048 } else { s };
                    if p <= 76 {
                        Dec::Decimal(p as u8, s as i8)
                    } else {
                        Dec::NumericText
                    }
                } else {
                    Dec::NumericText
                }
            }
            _ => {
                // Extension types like citext arrive as custom simple types whose binary
                // form is their text.
                if name.eq_ignore_ascii_case("citext") {
                    Dec::Text
                } else {
                    return Err(unsupported(column, name));
                }
            }
        })
    }

    pub(crate) fn data_type(&self) -> DataType {
        match self {
            Dec::Bool => DataType::Boolean,
            Dec::I16 => DataType::Int16,
            Dec::I32 => DataType::Int32,
            Dec::I64 => DataType::Int64,
            Dec::Oid => DataType::UInt32,
            Dec::F32 => DataType::Float32,
            Dec::F64 => DataType::Float64,
            Dec::Text
            | Dec::Char1
            | Dec::Json
            | Dec::Jsonb
            | Dec::TimeTz
            | Dec::NumericText
            | Dec::Inet
            | Dec::Mac
            | Dec::Bits => DataType::Utf8,
            Dec::Bytea => DataType::Binary,
            Dec::Date => DataType::Date32,
            Dec::Time => DataType::Time64(TimeUnit::Microsecond),
            Dec::Ts => DataType::Timestamp(TimeUnit::Microsecond, None),
            Dec::TsTz => DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            Dec::Interval => DataType::Interval(IntervalUnit::MonthDayNano),
            Dec::Uuid => DataType::FixedSizeBinary(16),
            Dec::Decimal(p, s) if *p <= 38 => DataType::Decimal128((*p).max(1), *s),
            Dec::Decimal(p, s) => DataType::Decimal256(*p, *s),
            Dec::Array(inner) => DataType::List(Arc::new(inner.field("item", true))),
        }
    }

    pub(crate) fn field(&self, name: &str, nullable: bool) -> Field {
        match self {
            Dec::Json | Dec::Jsonb => crate::model::json_field(name, nullable),
            Dec::Uuid => crate::model::uuid_field(name, nullable),
            Dec::NumericText => crate::model::numeric_text_field(name, nullable),
            _ => Field::new(name, self.data_type(), nullable),
        }
    }

    /// Append one value (`None` = NULL) to a builder made by `make_builder` for
    /// [`Dec::data_type`].
    pub(crate) fn append(
        &self,
        b: &mut dyn ArrayBuilder,
        v: Option<&[u8]>,
        column: &str,
    ) -> Result<()> {
        macro_rules! get {
            ($t:ty) => {
                b.as_any_mut()
                    .downcast_mut::<$t>()
                    .expect("builder matches the decoder")
            };
        }
        macro_rules! simple {
            ($t:ty, $conv:expr) => {{
                let bld = get!($t);
                match v {
                    None => bld.append_null(),
                    Some(bytes) => bld.append_value($conv(bytes)?),
                }
            }};
        }
        let bad = |what: &str| {
            Error::type_error(
                "postgres",
                format!("column {column}: malformed {what} value"),
            )
        };
        match self {
            Dec::Bool => simple!(BooleanBuilder, |x: &[u8]| Ok::<_, Error>(
                x.first().copied().unwrap_or(0) != 0
            )),
            Dec::I16 => simple!(Int16Builder, |x: &[u8]| x
                .try_into()
                .map(i16::from_be_bytes)
                .map_err(|_| bad("int2"))),
            Dec::I32 => simple!(Int32Builder, |x: &[u8]| x
                .try_into()
                .map(i32::from_be_bytes)
                .map_err(|_| bad("int4"))),
            Dec::I64 => simple!(Int64Builder, |x: &[u8]| x
                .try_into()
                .map(i64::from_be_bytes)
                .map_err(|_| bad("int8"))),
            Dec::Oid => simple!(UInt32Builder, |x: &[u8]| x
                .try_into()
                .map(u32::from_be_bytes)
                .map_err(|_| bad("oid"))),
            Dec::F32 => simple!(Float32Builder, |x: &[u8]| x
                .try_into()
                .map(f32::from_be_bytes)
                .map_err(|_| bad("float4"))),
            Dec::F64 => simple!(Float64Builder, |x: &[u8]| x
                .try_into()
                .map(f64::from_be_bytes)
                .map_err(|_| bad("float8"))),
            Dec::Bytea => {
                let bld = get!(BinaryBuilder);
                match v {
                    None => bld.append_null(),
                    Some(x) => bld.append_value(x),
                }
            }
            Dec::Date => simple!(Date32Builder, |x: &[u8]| {
                let d = i32::from_be_bytes(x.try_into().map_err(|_| bad("date"))?);
                if d == i32::MAX || d == i32::MIN {
                    return Err(infinite(column, "date"));
                }
                Ok(d + PG_EPOCH_DAYS)
            }),
            Dec::Time => simple!(Time64MicrosecondBuilder, |x: &[u8]| x
                .try_into()
                .map(i64::from_be_bytes)
                .map_err(|_| bad("time"))),
            Dec::Ts | Dec::TsTz => simple!(TimestampMicrosecondBuilder, |x: &[u8]| {
                let t = i64::from_be_bytes(x.try_into().map_err(|_| bad("timestamp"))?);
                if t == i64::MAX || t == i64::MIN {
                    return Err(infinite(column, "timestamp"));
                }
                t.checked_add(PG_EPOCH_MICROS)
                    .ok_or_else(|| bad("timestamp"))
            }),
            Dec::Interval => {
                let bld = get!(PrimitiveBuilder<IntervalMonthDayNanoType>);
                match v {
                    None => bld.append_null(),
                    Some(x) if x.len() == 16 => {
                        let micros = i64::from_be_bytes(x[0..8].try_into().expect("len"));
                        let days = i32::from_be_bytes(x[8..12].try_into().expect("len"));
                        let months = i32::from_be_bytes(x[12..16].try_into().expect("len"));
                        let nanos = micros.checked_mul(1000).ok_or_else(|| bad("interval"))?;
                        bld.append_value(arrow_buffer::IntervalMonthDayNano::new(
                            months, days, nanos,
                        ));
                    }
                    Some(_) => return Err(bad("interval")),
                }
            }
            Dec::Uuid => {
                let bld = get!(FixedSizeBinaryBuilder);
                match v {
                    None => bld.append_null(),
                    Some(x) => bld.append_value(x).map_err(|_| bad("uuid"))?,
                }
            }
            Dec::Decimal(p, s) => {
                let want = (*s).max(0) as usize;
                // NaN, ±Infinity, more fraction digits than the scale, or too many digits.
                let unfit = |x: &[u8]| {
                    let t = numeric_text(x, column).unwrap_or_default();
                    Error::type_error(
                        "postgres",
                        format!(
                            "column {column}: value {t} does not fit numeric({p},{s}); cast it to text"
                        ),
                    )
                };
                if *p <= 38 {
                    let bld = get!(Decimal128Builder);
                    match v {
                        None => bld.append_null(),
                        Some(x) => bld.append_value(
                            numeric_unscaled_i128(x, want, column)?.ok_or_else(|| unfit(x))?,
                        ),
                    }
                } else {
                    let bld = get!(Decimal256Builder);
                    match v {
                        None => bld.append_null(),
                        // Most values of a wide column fit an i128: text only for the rest.
                        Some(x) => match numeric_unscaled_i128(x, want, column)? {
                            Some(v) => bld.append_value(i256::from_i128(v)),
                            None => {
                                let t = numeric_text(x, column)?;
                                bld.append_value(unscaled_i256(&t, want).ok_or_else(|| unfit(x))?)
                            }
                        },
                    }
                }
            }
            Dec::Text
            | Dec::Json
            | Dec::Jsonb
            | Dec::Char1
            | Dec::TimeTz
            | Dec::NumericText
            | Dec::Inet
            | Dec::Mac
            | Dec::Bits => {
                let bld = get!(StringBuilder);
                match v {
                    None => bld.append_null(),
                    Some(x) => {
                        let text = self.text(x, column)?;
                        bld.append_value(&text);
                    }
                }
            }
            Dec::Array(inner) => {
                let bld = get!(ListBuilder<Box<dyn ArrayBuilder>>);
                match v {
                    None => bld.append_null(),
                    Some(x) => {
                        let elems = array_elements(x, column)?;
                        for e in elems {
                            inner.append(bld.values().as_mut(), e, column)?;
                        }
                        bld.append(true);
                    }
                }
            }
        }
        Ok(())
    }

    /// Text of a text-like value.
    fn text(&self, x: &[u8], column: &str) -> Result<String> {
        let utf8 = |b: &[u8]| {
            std::str::from_utf8(b).map(str::to_string).map_err(|_| {
                Error::type_error("postgres", format!("column {column}: text is not UTF-8"))
            })
        };
        let bad = |what: &str| {
            Error::type_error(
                "postgres",
                format!("column {column}: malformed {what} value"),
            )
        };
        Ok(match self {
            Dec::Jsonb => utf8(x.get(1..).ok_or_else(|| bad("jsonb"))?)?,
            Dec::Char1 => match x.first() {
                None | Some(0) => String::new(),
                Some(c) => (*c as char).to_string(),
            },
            Dec::NumericText => numeric_text(x, column)?,
            Dec::TimeTz => {
                if x.len() != 12 {
                    return Err(bad("timetz"));
                }
                let micros = i64::from_be_bytes(x[0..8].try_into().expect("len"));
                let west = i32::from_be_bytes(x[8..12].try_into().expect("len"));
                let mut out = Vec::new();
                crate::value::time::push_time_nanos(&mut out, micros * 1000);
                crate::value::time::push_offset(&mut out, -west, false);
                String::from_utf8(out).expect("ASCII")
            }
            Dec::Inet => inet_text(x).ok_or_else(|| bad("inet"))?,
            Dec::Mac => x
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":"),
            Dec::Bits => {
                let n = i32::from_be_bytes(
                    x.get(0..4)
                        .ok_or_else(|| bad("bit"))?
                        .try_into()
                        .expect("len"),
                ) as usize;
                let bytes = &x[4..];
                (0..n)
                    .map(|i| {
                        if bytes.get(i / 8).is_some_and(|b| b & (0x80 >> (i % 8)) != 0) {
                            '1'
                        } else {
                            '0'
                        }
                    })
                    .collect()
            }
            _ => utf8(x)?,
        })
    }
}

pub(super) fn infinite(column: &str, ty: &str) -> Error {
    Error::type_error(
        "postgres",
        format!(
            "column {column}: {ty} 'infinity' has no Arrow value; cast the column to text in a custom query"
        ),
    )
}

fn inet_text(x: &[u8]) -> Option<String> {
    let (family, bits, is_cidr, n) = (*x.first()?, *x.get(1)?, *x.get(2)?, *x.get(3)? as usize);
    let addr = x.get(4..4 + n)?;
    let (text, max) = match family {
        2 => (
            std::net::Ipv4Addr::from(<[u8; 4]>::try_from(addr).ok()?).to_string(),
            32,
        ),
        3 => (
            std::net::Ipv6Addr::from(<[u8; 16]>::try_from(addr).ok()?).to_string(),
            128,
        ),
        _ => return None,
    };
    Some(if is_cidr != 0 || bits != max {
        format!("{text}/{bits}")
    } else {
        text
    })
}

/// The elements of a one-dimensional binary array (`None` for NULL elements).
fn array_elements<'a>(x: &'a [u8], column: &str) -> Result<Vec<Option<&'a [u8]>>> {
    let bad = || {
        Error::type_error(
            "postgres",
            format!("column {column}: malformed array value"),
        )
    };
    let rd = |i: usize| -> Result<i32> {
        Ok(i32::from_be_bytes(
            x.get(i..i + 4).ok_or_else(bad)?.try_into().expect("len"),
        ))
    };
    let ndim = rd(0)?;
    if ndim == 0 {
        return Ok(Vec::new());
    }
    if ndim != 1 {
        return Err(Error::type_error(
            "postgres",
            format!(
                "column {column}: a {ndim}-dimensional array has no Arrow list form; cast it to text or jsonb"
            ),
        ));
    }
    let len = rd(12)? as usize;
    let mut pos = 20;
    let mut out = Vec::with_capacity(len);
    for _ in 0..len {
        let n = rd(pos)?;
        pos += 4;
        if n < 0 {
            out.push(None);
        } else {
            let n = n as usize;
            out.push(Some(x.get(pos..pos + n).ok_or_else(bad)?));
            pos += n;
        }
    }
    Ok(out)
}
