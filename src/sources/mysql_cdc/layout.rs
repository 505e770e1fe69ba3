//! A table's columns as a binlog table map event describes them, and the Arrow row
//! schema they make (the typed SQL path's types; see [`types`](super::types)).

use crate::sources::mysql::types::Dec;
use crate::{Error, Result};
use arrow_schema::{Field, Schema, SchemaRef};
use mysql_async::binlog::events::{OptionalMetaExtractor, OptionalMetadataField, TableMapEvent};
use mysql_async::consts::ColumnType;
use std::collections::HashSet;
use std::sync::Arc;

/// The `binary` character set: bytes, not text.
pub(crate) const BINARY_CHARSET: u16 = 63;

/// How one column's values are laid out in a row image.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Kind {
    Int {
        len: u8,
        unsigned: bool,
    },
    Float,
    Double,
    Decimal {
        precision: u8,
        scale: u8,
    },
    Date,
    DateTimeOld,
    DateTime2 {
        fsp: u8,
    },
    TimestampOld,
    Timestamp2 {
        fsp: u8,
    },
    TimeOld,
    Time2 {
        fsp: u8,
    },
    Year,
    Bit {
        bytes: u8,
    },
    Enum {
        size: u8,
        names: Arc<Vec<String>>,
    },
    Set {
        size: u8,
        names: Arc<Vec<String>>,
    },
    /// Length-prefixed bytes: `CHAR`, `VARCHAR`, `BLOB`/`TEXT`. `pad`: the length of a
    /// `BINARY(n)`, whose trailing zero bytes the binlog leaves out and a `SELECT` returns.
    Bytes {
        prefix: u8,
        charset: u16,
        pad: u16,
    },
    /// Known on the wire, but with no lossless Arrow value (binary JSON, spatial).
    Unsupported {
        prefix: u8,
        what: &'static str,
    },
}

/// One column of a table as a table map event describes it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Col {
    pub name: String,
    pub kind: Kind,
    pub dec: Dec,
    pub nullable: bool,
    /// 1-based position in the primary key.
    pub key: Option<u32>,
}

/// A table's layout in the binlog: its columns and the Arrow row schema they make.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    pub cols: Vec<Col>,
    pub row: SchemaRef,
}

impl Layout {
    pub(crate) fn new(cols: Vec<Col>) -> Layout {
        let fields: Vec<Field> = cols
            .iter()
            .map(|c| {
                let f = c.dec.field(&c.name, c.nullable);
                match c.key {
                    Some(k) => crate::model::key_field(f, k),
                    None => f,
                }
            })
            .collect();
        Layout {
            row: Arc::new(Schema::new(fields)),
            cols,
        }
    }
}

pub(crate) fn dec_of(kind: &Kind, json: bool) -> Dec {
    match kind {
        Kind::Int { len: 1, unsigned } => pick(*unsigned, Dec::U8, Dec::I8),
        Kind::Int { len: 2, unsigned } => pick(*unsigned, Dec::U16, Dec::I16),
        Kind::Int {
            len: 3 | 4,
            unsigned,
        } => pick(*unsigned, Dec::U32, Dec::I32),
        Kind::Int { unsigned, .. } => pick(*unsigned, Dec::U64, Dec::I64),
        Kind::Float => Dec::F32,
        Kind::Double => Dec::F64,
        Kind::Decimal { precision, scale } => Dec::Decimal(*precision, *scale as i8),
        Kind::Date => Dec::Date,
        Kind::DateTimeOld | Kind::DateTime2 { .. } => Dec::DateTime,
        Kind::TimestampOld | Kind::Timestamp2 { .. } => Dec::Timestamp,
        Kind::TimeOld | Kind::Time2 { .. } => Dec::Time,
        Kind::Year => Dec::Year,
        Kind::Bit { .. } => Dec::Bit,
        Kind::Enum { .. } | Kind::Set { .. } => Dec::Text,
        Kind::Bytes { charset, .. } if *charset == BINARY_CHARSET => Dec::Binary,
        Kind::Bytes { .. } if json => Dec::Json,
        Kind::Bytes { .. } | Kind::Unsupported { .. } => Dec::Text,
    }
}

fn pick(unsigned: bool, u: Dec, s: Dec) -> Dec {
    if unsigned { u } else { s }
}

fn meta_err(table: &str, what: impl std::fmt::Display) -> Error {
    Error::type_error(
        "mysql-cdc",
        format!("table {table}: cannot read its table map event: {what}"),
    )
}

/// The columns of the table a table map event describes. `json` names the columns that
/// are MariaDB `JSON` (text with a `json_valid` check, which the binlog cannot tell).
/// Without `binlog_row_metadata = FULL` there are no column names: that is an
/// [`Error::Prerequisite`].
pub(crate) fn columns_of(tme: &TableMapEvent<'_>, json: &HashSet<String>) -> Result<Vec<Col>> {
    let table = format!("{}.{}", tme.database_name(), tme.table_name());
    let meta =
        OptionalMetaExtractor::new(tme.iter_optional_meta()).map_err(|e| meta_err(&table, e))?;
    let mut signed = meta.iter_signedness();
    let mut charsets = meta.iter_charset();
    let mut names = meta.iter_column_name();
    let mut keys = Vec::new();
    for k in meta.iter_primary_key() {
        keys.push(k.map_err(|e| meta_err(&table, e))? as usize);
    }
    let mut enums: Vec<Arc<Vec<String>>> = Vec::new();
    let mut sets: Vec<Arc<Vec<String>>> = Vec::new();
    for f in tme.iter_optional_meta() {
        match f.map_err(|e| meta_err(&table, e))? {
            OptionalMetadataField::EnumStrValue(v) => enums.extend(
                v.iter_values()
                    .map(|e| {
                        e.map(|x| {
                            Arc::new(x.values().iter().map(|s| s.value().into_owned()).collect())
                        })
                    })
                    .collect::<std::io::Result<Vec<_>>>()
                    .map_err(|e| meta_err(&table, e))?,
            ),
            OptionalMetadataField::SetStrValue(v) => sets.extend(
                v.iter_values()
                    .map(|e| {
                        e.map(|x| {
                            Arc::new(x.values().iter().map(|s| s.value().into_owned()).collect())
                        })
                    })
                    .collect::<std::io::Result<Vec<_>>>()
                    .map_err(|e| meta_err(&table, e))?,
            ),
            _ => {}
        }
    }
    let (mut enums, mut sets) = (enums.into_iter(), sets.into_iter());
    let n = tme.columns_count() as usize;
    let nulls = tme.null_bitmask();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let ty = tme
            .get_column_type(i)
            .map_err(|e| meta_err(&table, e))?
            .ok_or_else(|| meta_err(&table, format!("no type for column {i}")))?;
        let md = tme.get_column_metadata(i).unwrap_or(&[]);
        let unsigned = if ty.is_numeric_type() {
            signed.next().unwrap_or(false)
        } else {
            false
        };
        let charset = if ty.is_character_type() {
            charsets
                .next()
                .transpose()
                .map_err(|e| meta_err(&table, e))?
                .unwrap_or(BINARY_CHARSET)
        } else {
            0
        };
        let name = match names.next().transpose().map_err(|e| meta_err(&table, e))? {
            Some(n) => n.name().into_owned(),
            None => {
                return Err(Error::Prerequisite {
                    component: "mysql-cdc".into(),
                    message: format!(
                        "table {table}: the binlog carries no column names; set \
                         binlog_row_metadata = FULL on the server (names and signedness are \
                         lost without it)"
                    ),
                });
            }
        };
        let b = |k: usize| md.get(k).copied().unwrap_or(0);
        use ColumnType::*;
        let kind = match ty {
            MYSQL_TYPE_TINY => Kind::Int { len: 1, unsigned },
            MYSQL_TYPE_SHORT => Kind::Int { len: 2, unsigned },
            MYSQL_TYPE_INT24 => Kind::Int { len: 3, unsigned },
            MYSQL_TYPE_LONG => Kind::Int { len: 4, unsigned },
            MYSQL_TYPE_LONGLONG => Kind::Int { len: 8, unsigned },
            MYSQL_TYPE_FLOAT => Kind::Float,
            MYSQL_TYPE_DOUBLE => Kind::Double,
            MYSQL_TYPE_NEWDECIMAL => Kind::Decimal {
                precision: b(0),
                scale: b(1),
            },
            MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => Kind::Date,
            MYSQL_TYPE_DATETIME => Kind::DateTimeOld,
            MYSQL_TYPE_DATETIME2 => Kind::DateTime2 { fsp: b(0) },
            MYSQL_TYPE_TIMESTAMP => Kind::TimestampOld,
            MYSQL_TYPE_TIMESTAMP2 => Kind::Timestamp2 { fsp: b(0) },
            MYSQL_TYPE_TIME => Kind::TimeOld,
            MYSQL_TYPE_TIME2 => Kind::Time2 { fsp: b(0) },
            MYSQL_TYPE_YEAR => Kind::Year,
            MYSQL_TYPE_BIT => Kind::Bit {
                bytes: b(1) + u8::from(b(0) > 0),
            },
            MYSQL_TYPE_ENUM => Kind::Enum {
                size: b(1),
                names: enums.next().unwrap_or_default(),
            },
            MYSQL_TYPE_SET => Kind::Set {
                size: b(1),
                names: sets.next().unwrap_or_default(),
            },
            MYSQL_TYPE_VARCHAR | MYSQL_TYPE_VAR_STRING => {
                let max = u16::from_le_bytes([b(0), b(1)]);
                Kind::Bytes {
                    prefix: if max < 256 { 1 } else { 2 },
                    charset,
                    pad: 0,
                }
            }
            MYSQL_TYPE_STRING => {
                let (b0, b1) = (b(0) as u16, b(1) as u16);
                let max = if b0 & 0x30 != 0x30 {
                    b1 | (((b0 & 0x30) ^ 0x30) << 4)
                } else {
                    b1
                };
                Kind::Bytes {
                    prefix: if max < 256 { 1 } else { 2 },
                    charset,
                    pad: if charset == BINARY_CHARSET { max } else { 0 },
                }
            }
            MYSQL_TYPE_BLOB
            | MYSQL_TYPE_TINY_BLOB
            | MYSQL_TYPE_MEDIUM_BLOB
            | MYSQL_TYPE_LONG_BLOB => Kind::Bytes {
                prefix: b(0),
                charset,
                pad: 0,
            },
            MYSQL_TYPE_JSON => Kind::Unsupported {
                prefix: b(0),
                what: "MySQL binary JSON (select JSON columns with the SQL extractor)",
            },
            MYSQL_TYPE_GEOMETRY => Kind::Unsupported {
                prefix: b(0),
                what: "a spatial type",
            },
            other => {
                return Err(Error::type_error(
                    "mysql-cdc",
                    format!(
                        "table {table}: column {name} has binlog type {other:?}, which is not supported"
                    ),
                ));
            }
        };
        let key = keys.iter().position(|k| *k == i).map(|p| p as u32 + 1);
        let dec = dec_of(&kind, json.contains(&name.to_ascii_lowercase()));
        out.push(Col {
            nullable: nulls.get(i).is_some_and(|b| *b),
            name,
            kind,
            dec,
            key,
        });
    }
    Ok(out)
}
