//! BSON documents to Arrow: flattening, inferring a schema across batches, converting.
//!
//! | BSON | Arrow |
//! |---|---|
//! | boolean | Boolean |
//! | int32 | Int32 |
//! | int64 | Int64 |
//! | double | Float64 |
//! | decimal128 | Utf8, exact digits, marked `tributary.numeric` (JSON Lines writes a number) |
//! | string, symbol | Utf8 |
//! | ObjectId | Utf8, 24 hex digits |
//! | date | Timestamp(ms, `+00:00`) |
//! | binary subtype 4 (UUID) | FixedSizeBinary(16) marked `arrow.uuid` |
//! | other binary | Binary |
//! | arrays, documents deeper than the flattening depth, timestamps, regexes, code, min/max keys | Utf8 marked `arrow.json` (relaxed Extended JSON) |
//!
//! A field whose values have several types widens: int32 and int64 → Int64; integers and
//! doubles → Float64; numbers and decimals → decimal text; UUID and other binary → Binary;
//! anything with an array or document → JSON; other mixes → Utf8 holding each value's text
//! (strings as they are, dates in RFC 3339, ObjectIds in hex).

use crate::model::{json_field, numeric_text_field, uuid_field};
use crate::{Error, Result};
use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, FixedSizeBinaryBuilder, Float64Builder, Int32Builder,
    Int64Builder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use base64::Engine;
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{Bson, Document};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Null,
    Bool,
    Int32,
    Int64,
    Double,
    Decimal,
    Text,
    ObjectId,
    DateTime,
    Uuid,
    Binary,
    Json,
}

pub(crate) fn kind_of(v: &Bson) -> Kind {
    match v {
        Bson::Null | Bson::Undefined => Kind::Null,
        Bson::Boolean(_) => Kind::Bool,
        Bson::Int32(_) => Kind::Int32,
        Bson::Int64(_) => Kind::Int64,
        Bson::Double(_) => Kind::Double,
        Bson::Decimal128(_) => Kind::Decimal,
        Bson::String(_) | Bson::Symbol(_) => Kind::Text,
        Bson::ObjectId(_) => Kind::ObjectId,
        Bson::DateTime(_) => Kind::DateTime,
        Bson::Binary(b) if b.subtype == BinarySubtype::Uuid && b.bytes.len() == 16 => Kind::Uuid,
        Bson::Binary(_) => Kind::Binary,
        _ => Kind::Json,
    }
}

fn widen(a: Kind, b: Kind) -> Kind {
    use Kind::*;
    let num = |k| matches!(k, Int32 | Int64 | Double | Decimal);
    match (a, b) {
        (x, y) if x == y => x,
        (Null, x) | (x, Null) => x,
        (Int32, Int64) | (Int64, Int32) => Int64,
        (Int32 | Int64, Double) | (Double, Int32 | Int64) => Double,
        (x, y) if num(x) && num(y) => Decimal,
        (Uuid, Binary) | (Binary, Uuid) => Binary,
        (Json, _) | (_, Json) => Json,
        _ => Text,
    }
}

/// The value at a dotted path: nested documents (and array indexes) first, then a
/// literal key with dots (some servers return projected paths flat).
pub(crate) fn lookup<'a>(doc: &'a Document, path: &str) -> Option<&'a Bson> {
    let nested = || {
        let mut parts = path.split('.');
        let first = doc.get(parts.next()?)?;
        parts.try_fold(first, |cur, part| match cur {
            Bson::Document(d) => d.get(part),
            Bson::Array(a) => a.get(part.parse::<usize>().ok()?),
            _ => None,
        })
    };
    nested().or_else(|| doc.get(path))
}

/// A document's columns in document order, nested documents flattened to `a.b.c`.
pub(crate) fn flatten(doc: &Document, max_depth: usize, out: &mut Vec<(String, Bson)>) {
    fn walk(prefix: &str, v: &Bson, depth: usize, max: usize, out: &mut Vec<(String, Bson)>) {
        match v {
            Bson::Document(d) if depth < max && !d.is_empty() => {
                for (k, child) in d {
                    walk(&format!("{prefix}.{k}"), child, depth + 1, max, out);
                }
            }
            other => out.push((prefix.to_string(), other.clone())),
        }
    }
    for (k, v) in doc {
        walk(k, v, 1, max_depth.max(1), out);
    }
}

/// Columns of the batch being built, column-major, and the kinds seen across batches.
#[derive(Debug, Default)]
pub(crate) struct Columns {
    names: Vec<String>,
    index: HashMap<String, usize>,
    kinds: Vec<Kind>,
    /// Whether the column has held an int64 beyond 2^53, which a Float64 cannot hold.
    big_ints: Vec<bool>,
    values: Vec<Vec<Bson>>,
    rows: usize,
    /// Columns are fixed (`fields` given): other names are ignored.
    fixed: bool,
    schema: Option<SchemaRef>,
}

impl Columns {
    /// Columns fixed to `names`, in that order.
    pub(crate) fn fixed(names: &[String]) -> Self {
        let mut c = Columns::default();
        for n in names {
            c.column(n);
        }
        c.fixed = true;
        c
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    fn column(&mut self, name: &str) -> Option<usize> {
        if let Some(&i) = self.index.get(name) {
            return Some(i);
        }
        if self.fixed {
            return None;
        }
        let i = self.names.len();
        self.names.push(name.to_string());
        self.index.insert(name.to_string(), i);
        self.kinds.push(Kind::Null);
        self.big_ints.push(false);
        self.values.push(vec![Bson::Null; self.rows]);
        Some(i)
    }

    /// Add one row of `(column, value)` pairs, draining `row` (its allocation stays for
    /// the next row); absent columns are NULL.
    pub(crate) fn push(&mut self, row: &mut Vec<(String, Bson)>) {
        for (name, v) in row.drain(..) {
            let Some(i) = self.column(&name) else {
                continue;
            };
            if matches!(v, Bson::Int64(x) if x.unsigned_abs() > 1 << 53) {
                self.big_ints[i] = true;
            }
            self.kinds[i] = match widen(self.kinds[i], kind_of(&v)) {
                // Doubles next to integers a double cannot hold exactly: decimal text.
                Kind::Double if self.big_ints[i] => Kind::Decimal,
                k => k,
            };
            let col = &mut self.values[i];
            if col.len() == self.rows {
                col.push(v);
            } else {
                // The same name twice in one row (a flattened `a.b` next to a literal
                // `a.b` key): the last one wins.
                *col.last_mut().expect("a value for this row") = v;
            }
        }
        self.rows += 1;
        for col in &mut self.values {
            if col.len() < self.rows {
                col.push(Bson::Null);
            }
        }
    }

    fn field(name: &str, kind: Kind) -> Field {
        match kind {
            Kind::Bool => Field::new(name, DataType::Boolean, true),
            Kind::Int32 => Field::new(name, DataType::Int32, true),
            Kind::Int64 => Field::new(name, DataType::Int64, true),
            Kind::Double => Field::new(name, DataType::Float64, true),
            Kind::Decimal => numeric_text_field(name, true),
            Kind::Null | Kind::Text | Kind::ObjectId => Field::new(name, DataType::Utf8, true),
            Kind::DateTime => Field::new(
                name,
                DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into())),
                true,
            ),
            Kind::Uuid => uuid_field(name, true),
            Kind::Binary => Field::new(name, DataType::Binary, true),
            Kind::Json => json_field(name, true),
        }
    }

    /// The rows added since the last call, as a batch with the schema inferred so far
    /// (the same `Arc` while nothing widened, so equal schemas stay in one part).
    pub(crate) fn take_batch(&mut self) -> Result<RecordBatch> {
        let fields: Vec<Field> = self
            .names
            .iter()
            .zip(&self.kinds)
            .map(|(n, k)| Self::field(n, *k))
            .collect();
        let schema = match &self.schema {
            Some(s) if s.fields().iter().map(|f| f.as_ref()).eq(fields.iter()) => s.clone(),
            _ => {
                let s = Arc::new(Schema::new(fields));
                self.schema = Some(s.clone());
                s
            }
        };
        let mut columns = Vec::with_capacity(self.names.len());
        for (i, kind) in self.kinds.iter().enumerate() {
            let values = std::mem::take(&mut self.values[i]);
            columns.push(build(&self.names[i], *kind, values)?);
        }
        self.rows = 0;
        let rows = columns.first().map_or(0, |c| c.len());
        RecordBatch::try_new_with_options(
            schema,
            columns,
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(rows)),
        )
        .map_err(|e| Error::type_error("mongodb", format!("building a batch: {e}")))
    }
}

/// A value's plain text, for a column of mixed scalar types.
pub(crate) fn text_of(v: &Bson) -> String {
    match v {
        Bson::String(s) | Bson::Symbol(s) => s.clone(),
        Bson::Boolean(b) => b.to_string(),
        Bson::Int32(n) => n.to_string(),
        Bson::Int64(n) => n.to_string(),
        Bson::Double(f) => f.to_string(),
        Bson::Decimal128(d) => d.to_string(),
        Bson::ObjectId(o) => o.to_hex(),
        Bson::DateTime(d) => match chrono_of(*d) {
            Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            None => json_of(v),
        },
        Bson::Binary(b) => base64::engine::general_purpose::STANDARD.encode(&b.bytes),
        other => json_of(other),
    }
}

/// A BSON date as a chrono date-time (`None` beyond chrono's range).
pub(crate) fn chrono_of(d: mongodb::bson::DateTime) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp_millis(d.timestamp_millis())
}

/// A value as relaxed Extended JSON text.
pub(crate) fn json_of(v: &Bson) -> String {
    v.clone().into_relaxed_extjson().to_string()
}

fn mismatch(column: &str, v: &Bson, want: &str) -> Error {
    Error::type_error(
        "mongodb",
        format!("field {column}: value {v} is not {want} like the rest of the column"),
    )
}

fn build(name: &str, kind: Kind, values: Vec<Bson>) -> Result<ArrayRef> {
    let n = values.len();
    Ok(match kind {
        Kind::Bool => {
            let mut b = BooleanBuilder::with_capacity(n);
            for v in &values {
                match v {
                    Bson::Boolean(x) => b.append_value(*x),
                    Bson::Null | Bson::Undefined => b.append_null(),
                    other => return Err(mismatch(name, other, "a boolean")),
                }
            }
            Arc::new(b.finish())
        }
        Kind::Int32 => {
            let mut b = Int32Builder::with_capacity(n);
            for v in &values {
                match v {
                    Bson::Int32(x) => b.append_value(*x),
                    Bson::Null | Bson::Undefined => b.append_null(),
                    other => return Err(mismatch(name, other, "an int32")),
                }
            }
            Arc::new(b.finish())
        }
        Kind::Int64 => {
            let mut b = Int64Builder::with_capacity(n);
            for v in &values {
                match v {
                    Bson::Int32(x) => b.append_value(i64::from(*x)),
                    Bson::Int64(x) => b.append_value(*x),
                    Bson::Null | Bson::Undefined => b.append_null(),
                    other => return Err(mismatch(name, other, "an integer")),
                }
            }
            Arc::new(b.finish())
        }
        Kind::Double => {
            let mut b = Float64Builder::with_capacity(n);
            for v in &values {
                match v {
                    Bson::Int32(x) => b.append_value(f64::from(*x)),
                    // Integers beyond 2^53 make the column decimal text (see `push`).
                    Bson::Int64(x) if x.unsigned_abs() <= 1 << 53 => b.append_value(*x as f64),
                    Bson::Int64(x) => {
                        return Err(Error::type_error(
                            "mongodb",
                            format!(
                                "field {name}: int64 {x} next to doubles cannot be a Float64 exactly; \
                                 project it with $toDecimal or as a string"
                            ),
                        ));
                    }
                    Bson::Double(x) => b.append_value(*x),
                    Bson::Null | Bson::Undefined => b.append_null(),
                    other => return Err(mismatch(name, other, "a number")),
                }
            }
            Arc::new(b.finish())
        }
        Kind::DateTime => {
            let mut b = TimestampMillisecondBuilder::with_capacity(n).with_timezone("+00:00");
            for v in &values {
                match v {
                    Bson::DateTime(d) => b.append_value(d.timestamp_millis()),
                    Bson::Null | Bson::Undefined => b.append_null(),
                    other => return Err(mismatch(name, other, "a date")),
                }
            }
            Arc::new(b.finish())
        }
        Kind::Uuid => {
            let mut b = FixedSizeBinaryBuilder::with_capacity(n, 16);
            for v in &values {
                match v {
                    Bson::Binary(x) if x.bytes.len() == 16 => b
                        .append_value(&x.bytes)
                        .map_err(|e| Error::type_error("mongodb", format!("{name}: {e}")))?,
                    Bson::Null | Bson::Undefined => b.append_null(),
                    other => return Err(mismatch(name, other, "a UUID")),
                }
            }
            Arc::new(b.finish())
        }
        Kind::Binary => {
            let mut b = BinaryBuilder::with_capacity(n, n * 16);
            for v in &values {
                match v {
                    Bson::Binary(x) => b.append_value(&x.bytes),
                    Bson::Null | Bson::Undefined => b.append_null(),
                    other => return Err(mismatch(name, other, "binary")),
                }
            }
            Arc::new(b.finish())
        }
        Kind::Json => {
            let mut b = StringBuilder::with_capacity(n, n * 32);
            for v in &values {
                match v {
                    Bson::Null | Bson::Undefined => b.append_null(),
                    other => b.append_value(json_of(other)),
                }
            }
            Arc::new(b.finish())
        }
        Kind::Null | Kind::Text | Kind::ObjectId | Kind::Decimal => {
            let mut b = StringBuilder::with_capacity(n, n * 16);
            for v in &values {
                match v {
                    Bson::Null | Bson::Undefined => b.append_null(),
                    other => b.append_value(text_of(other)),
                }
            }
            Arc::new(b.finish())
        }
    })
}

#[cfg(test)]
mod tests {
    //! BSON types the test server (nx-27017) cannot store, with documents built here.
    use super::*;
    use crate::model::NUMERIC_TEXT_KEY;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int64Type, TimestampMillisecondType};
    use mongodb::bson::{Binary, Decimal128, Regex, Timestamp, doc};

    fn batch(docs: &[Document]) -> RecordBatch {
        let mut c = Columns::default();
        for d in docs {
            let mut row = Vec::new();
            flatten(d, 3, &mut row);
            c.push(&mut row);
        }
        c.take_batch().unwrap()
    }

    #[test]
    fn types_the_test_server_cannot_store() {
        let dec: Decimal128 = "12345678901234567890.000000000001".parse().unwrap();
        let rb = batch(&[
            doc! {
                "d": dec,
                "i": 5i64,
                "ts": Timestamp { time: 1_700_000_000, increment: 7 },
                "re": Regex { pattern: "^a".into(), options: "i".into() },
                "u": Binary { subtype: BinarySubtype::Uuid, bytes: vec![0xab; 16] },
                "at": mongodb::bson::DateTime::from_millis(-1),
            },
            doc! { "d": Bson::Null, "i": Bson::Null },
        ]);
        let s = rb.schema();
        let d = s.field_with_name("d").unwrap();
        assert_eq!(d.data_type(), &DataType::Utf8);
        assert_eq!(
            d.metadata().get(NUMERIC_TEXT_KEY).map(String::as_str),
            Some("true")
        );
        assert_eq!(
            rb.column(0).as_string::<i32>().value(0),
            "12345678901234567890.000000000001"
        );
        assert!(rb.column(0).is_null(1));
        assert_eq!(rb.column(1).as_primitive::<Int64Type>().value(0), 5);
        assert!(crate::model::is_json_field(
            s.field_with_name("ts").unwrap()
        ));
        assert_eq!(
            rb.column(2).as_string::<i32>().value(0),
            r#"{"$timestamp":{"t":1700000000,"i":7}}"#
        );
        assert_eq!(
            rb.column(3).as_string::<i32>().value(0),
            r#"{"$regularExpression":{"pattern":"^a","options":"i"}}"#
        );
        assert_eq!(
            s.field_with_name("u").unwrap().data_type(),
            &DataType::FixedSizeBinary(16)
        );
        assert!(crate::model::is_uuid_field(s.field_with_name("u").unwrap()));
        assert_eq!(
            rb.column(5)
                .as_primitive::<TimestampMillisecondType>()
                .value(0),
            -1
        );
    }

    #[test]
    fn mixed_kinds_widen_without_losing_digits() {
        // An int64 a double cannot hold, next to a double: exact decimal text.
        let rb = batch(&[doc! { "n": 9_007_199_254_740_993i64 }, doc! { "n": 0.5 }]);
        assert_eq!(rb.schema().field(0).data_type(), &DataType::Utf8);
        let n = rb.column(0).as_string::<i32>();
        assert_eq!(n.value(0), "9007199254740993");
        assert_eq!(n.value(1), "0.5");
        // The other order widens the same way.
        let rb = batch(&[doc! { "n": 0.5 }, doc! { "n": 9_007_199_254_740_993i64 }]);
        assert_eq!(rb.column(0).as_string::<i32>().value(1), "9007199254740993");
        // int32 + int64 → Int64; numbers + decimal128 → decimal text.
        let rb = batch(&[doc! { "n": 1i32 }, doc! { "n": 2i64 }]);
        assert_eq!(rb.schema().field(0).data_type(), &DataType::Int64);
        let rb = batch(&[
            doc! { "n": 1i32 },
            doc! { "n": "2.50".parse::<Decimal128>().unwrap() },
        ]);
        assert_eq!(rb.column(0).as_string::<i32>().value(1), "2.50");
        // UUID + other binary → Binary; an array among scalars → JSON.
        let rb = batch(&[
            doc! { "b": Binary { subtype: BinarySubtype::Uuid, bytes: vec![1; 16] }, "x": 1 },
            doc! { "b": Binary { subtype: BinarySubtype::Generic, bytes: vec![2] }, "x": [1] },
        ]);
        assert_eq!(rb.schema().field(0).data_type(), &DataType::Binary);
        assert!(crate::model::is_json_field(rb.schema().field(1)));
        assert_eq!(rb.column(1).as_string::<i32>().value(0), "1");
        assert_eq!(rb.column(1).as_string::<i32>().value(1), "[1]");
    }

    #[test]
    fn lookup_reads_nested_and_flat_paths() {
        let d = doc! { "a": { "b": [ { "c": 1 } ] }, "x.y": 2 };
        assert_eq!(lookup(&d, "a.b.0.c"), Some(&Bson::Int32(1)));
        assert_eq!(lookup(&d, "x.y"), Some(&Bson::Int32(2)));
        assert_eq!(lookup(&d, "a.z"), None);
    }
}
