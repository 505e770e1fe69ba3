//! JSON records to Arrow: selecting, flattening, inferring or enforcing a schema.
//!
//! Inferred types: booleans → Boolean, integers → Int64 (beyond 64 bits: exact text),
//! other numbers → Float64, strings → Utf8, arrays and objects deeper than the flattening
//! depth → Utf8 marked as JSON. A column that holds several kinds widens: integers and
//! floats → Float64; text with numbers or booleans → Utf8 (their JSON text); anything with
//! arrays or objects → JSON.

use crate::model::json_field;
use crate::{Error, Result};
use arrow_array::builder::{BooleanBuilder, Float64Builder, Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use serde_json::Value;
use std::sync::Arc;

/// A value by JSON pointer (`/a/b/0`) or dotted path (`a.b.0`); the whole value for `""`.
pub(crate) fn select<'a>(v: &'a Value, selector: &str) -> Option<&'a Value> {
    if selector.is_empty() || selector == "/" || selector == "." {
        return Some(v);
    }
    if selector.starts_with('/') {
        return v.pointer(selector);
    }
    selector.split('.').try_fold(v, |cur, part| match cur {
        Value::Object(m) => m.get(part),
        Value::Array(a) => a.get(part.parse::<usize>().ok()?),
        _ => None,
    })
}

/// A record's columns in document order, nested objects flattened to `a.b.c`.
pub(crate) fn flatten(record: &Value, max_depth: usize) -> Vec<(String, Value)> {
    fn walk(prefix: &str, v: &Value, depth: usize, max: usize, out: &mut Vec<(String, Value)>) {
        match v {
            Value::Object(m) if depth < max && !m.is_empty() => {
                for (k, child) in m {
                    let name = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&name, child, depth + 1, max, out);
                }
            }
            other => out.push((
                if prefix.is_empty() {
                    "value".into()
                } else {
                    prefix.to_string()
                },
                other.clone(),
            )),
        }
    }
    let mut out = Vec::new();
    match record {
        Value::Object(_) => walk("", record, 0, max_depth.max(1), &mut out),
        other => out.push(("value".into(), other.clone())),
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Null,
    Bool,
    Int,
    Float,
    Text,
    Json,
}

fn kind_of(v: &Value) -> Kind {
    match v {
        Value::Null => Kind::Null,
        Value::Bool(_) => Kind::Bool,
        Value::Number(n) if n.as_i64().is_some() => Kind::Int,
        // Integers beyond 64 bits keep their exact digits as text.
        Value::Number(n) if !n.to_string().contains(['.', 'e', 'E']) => Kind::Text,
        Value::Number(_) => Kind::Float,
        Value::String(_) => Kind::Text,
        Value::Array(_) | Value::Object(_) => Kind::Json,
    }
}

fn widen(a: Kind, b: Kind) -> Kind {
    use Kind::*;
    match (a, b) {
        (x, y) if x == y => x,
        (Null, x) | (x, Null) => x,
        (Int, Float) | (Float, Int) => Float,
        (Json, _) | (_, Json) => Json,
        _ => Text,
    }
}

/// The columns seen so far, in first-seen order, with their kinds.
#[derive(Debug, Default)]
pub(crate) struct Inferred {
    columns: Vec<(String, Kind)>,
    schema: Option<SchemaRef>,
}

impl Inferred {
    /// Widen with a page of rows; the schema to build this page with.
    pub(crate) fn update(&mut self, rows: &[Vec<(String, Value)>]) -> SchemaRef {
        for row in rows {
            for (name, v) in row {
                let k = kind_of(v);
                match self.columns.iter_mut().find(|(n, _)| n == name) {
                    Some((_, kind)) => *kind = widen(*kind, k),
                    None => self.columns.push((name.clone(), k)),
                }
            }
        }
        let fields: Vec<Field> = self
            .columns
            .iter()
            .map(|(n, k)| match k {
                Kind::Bool => Field::new(n, DataType::Boolean, true),
                Kind::Int => Field::new(n, DataType::Int64, true),
                Kind::Float => Field::new(n, DataType::Float64, true),
                Kind::Null | Kind::Text => Field::new(n, DataType::Utf8, true),
                Kind::Json => json_field(n, true),
            })
            .collect();
        let schema = Arc::new(Schema::new(fields));
        // Keep the same Arc while nothing changed, so equal schemas stay one part.
        match &self.schema {
            Some(s) if s.fields() == schema.fields() => s.clone(),
            _ => {
                self.schema = Some(schema.clone());
                schema
            }
        }
    }
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Build a batch with `schema` (inferred, or enforced when `strict`).
pub(crate) fn to_batch(
    schema: &SchemaRef,
    rows: &[Vec<(String, Value)>],
    strict: bool,
) -> Result<RecordBatch> {
    let mismatch = |field: &str, v: &Value, want: &DataType| {
        Error::type_error(
            "rest",
            format!("field {field}: value {v} does not match the schema's type {want}"),
        )
    };
    if strict {
        for row in rows {
            for (name, _) in row {
                if schema.field_with_name(name).is_err() {
                    return Err(Error::type_error(
                        "rest",
                        format!(
                            "field {name} is not in the schema (columns: {})",
                            schema
                                .fields()
                                .iter()
                                .map(|f| f.name().as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            }
        }
    }
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let name = field.name();
        let values = rows.iter().map(|r| {
            r.iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v)
                .filter(|v| !v.is_null())
        });
        let json = crate::model::is_json_field(field);
        let col: ArrayRef = match field.data_type() {
            DataType::Boolean => {
                let mut b = BooleanBuilder::with_capacity(rows.len());
                for v in values {
                    match v {
                        None => b.append_null(),
                        Some(Value::Bool(x)) => b.append_value(*x),
                        Some(other) => return Err(mismatch(name, other, field.data_type())),
                    }
                }
                Arc::new(b.finish())
            }
            DataType::Int64 => {
                let mut b = Int64Builder::with_capacity(rows.len());
                for v in values {
                    match v.map(|v| (v, v.as_i64())) {
                        None => b.append_null(),
                        Some((_, Some(x))) => b.append_value(x),
                        Some((other, None)) => {
                            return Err(mismatch(name, other, field.data_type()));
                        }
                    }
                }
                Arc::new(b.finish())
            }
            DataType::Float64 => {
                let mut b = Float64Builder::with_capacity(rows.len());
                for v in values {
                    match v.map(|v| (v, v.as_f64())) {
                        None => b.append_null(),
                        Some((_, Some(x))) => b.append_value(x),
                        Some((other, None)) => {
                            return Err(mismatch(name, other, field.data_type()));
                        }
                    }
                }
                Arc::new(b.finish())
            }
            DataType::Utf8 => {
                let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 16);
                for v in values {
                    match v {
                        None => b.append_null(),
                        Some(v) if json => b.append_value(v.to_string()),
                        Some(v @ (Value::Array(_) | Value::Object(_))) if strict => {
                            return Err(mismatch(name, v, field.data_type()));
                        }
                        Some(v) => b.append_value(text_of(v)),
                    }
                }
                Arc::new(b.finish())
            }
            other => {
                return Err(Error::config(
                    "rest",
                    format!(
                        "schema field {name} has type {other}; REST schemas support Boolean, Int64, Float64 and Utf8 (JSON)"
                    ),
                ));
            }
        };
        columns.push(col);
    }
    RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| Error::type_error("rest", format!("building a batch: {e}")))
}
