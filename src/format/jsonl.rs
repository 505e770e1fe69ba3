//! JSON Lines: one JSON object per row, values lossless.

use super::{Encoder, Format};
use crate::Result;
use crate::value::{BinaryEncoding, Column, TextStyle, push_json_str};
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

/// The JSON Lines [`Format`].
///
/// Keys follow the schema's column order. Decimals are written as JSON numbers with every
/// digit (or as strings, see [`JsonLines::with_decimal_as_string`]); timestamps as ISO 8601,
/// with their offset when the column has a time zone; binary as base64 (or hex); columns
/// marked as JSON ([`crate::model::json_field`]) are embedded as JSON, not as strings;
/// lists, structs and maps as JSON arrays and objects. NaN and infinities, which JSON
/// cannot hold as numbers, become the strings `"NaN"`, `"Infinity"`, `"-Infinity"`.
///
/// ```
/// use std::sync::Arc;
/// use arrow_array::{Decimal128Array, RecordBatch, StringArray};
/// use arrow_schema::{DataType, Field, Schema};
/// use tributary::format::{Format, JsonLines};
/// use tributary::model::json_field;
/// let schema = Arc::new(Schema::new(vec![
///     Field::new("amount", DataType::Decimal128(38, 2), true),
///     json_field("payload", true),
/// ]));
/// let rb = RecordBatch::try_new(schema.clone(), vec![
///     Arc::new(Decimal128Array::from(vec![Some(12345678901234567890123i128), None]).with_precision_and_scale(38, 2).unwrap()),
///     Arc::new(StringArray::from(vec![Some(r#"{"sku":"A1"}"#), None])),
/// ]).unwrap();
/// let mut out = Vec::new();
/// JsonLines::default().encoder(&schema).unwrap().encode(&rb, &mut out).unwrap();
/// assert_eq!(String::from_utf8(out).unwrap(),
///     "{\"amount\":123456789012345678901.23,\"payload\":{\"sku\":\"A1\"}}\n{\"amount\":null,\"payload\":null}\n");
/// ```
#[derive(Clone, Debug)]
pub struct JsonLines {
    binary: BinaryEncoding,
    decimal_as_string: bool,
}

impl Default for JsonLines {
    fn default() -> Self {
        JsonLines {
            binary: BinaryEncoding::Base64,
            decimal_as_string: false,
        }
    }
}

impl JsonLines {
    /// JSON Lines with the defaults described above.
    pub fn new() -> Self {
        Self::default()
    }

    /// How binary values are written (base64 by default).
    pub fn with_binary(mut self, binary: BinaryEncoding) -> Self {
        self.binary = binary;
        self
    }

    /// Write decimals as JSON strings, for readers that would parse numbers as floats.
    pub fn with_decimal_as_string(mut self, yes: bool) -> Self {
        self.decimal_as_string = yes;
        self
    }
}

impl Format for JsonLines {
    fn extension(&self) -> &str {
        "jsonl"
    }

    fn content_type(&self) -> &str {
        "application/x-ndjson"
    }

    fn encoder(&self, schema: &SchemaRef) -> Result<Box<dyn Encoder>> {
        let keys = schema
            .fields()
            .iter()
            .map(|f| {
                let mut k = Vec::new();
                push_json_str(&mut k, f.name());
                k.push(b':');
                k
            })
            .collect();
        Ok(Box::new(JsonEncoder {
            keys,
            style: TextStyle {
                date_time_sep: b'T',
                binary: self.binary,
                decimal_as_string: self.decimal_as_string,
                pg_text: false,
            },
        }))
    }
}

struct JsonEncoder {
    keys: Vec<Vec<u8>>,
    style: TextStyle,
}

impl Encoder for JsonEncoder {
    fn encode(&mut self, batch: &RecordBatch, out: &mut Vec<u8>) -> Result<()> {
        let schema = batch.schema();
        let cols = batch
            .columns()
            .iter()
            .zip(schema.fields())
            .map(|(a, f)| Column::new(a, f))
            .collect::<Result<Vec<_>>>()?;
        // Change rows: a value the source did not send is left out of the object, so
        // that absent and `null` differ (see `model::change`).
        let unsent = crate::model::change::unsent_index(&schema).map(|i| {
            use arrow_array::Array;
            let list = batch
                .column(i)
                .as_any()
                .downcast_ref::<arrow_array::ListArray>();
            (i, list.cloned())
        });
        for row in 0..batch.num_rows() {
            let skip: Vec<usize> = match &unsent {
                Some((_, Some(list))) if !arrow_array::Array::is_null(list, row) => {
                    let names = list.value(row);
                    let names = names
                        .as_any()
                        .downcast_ref::<arrow_array::StringArray>()
                        .map(|a| a.iter().flatten().map(str::to_string).collect::<Vec<_>>())
                        .unwrap_or_default();
                    schema
                        .fields()
                        .iter()
                        .enumerate()
                        .filter(|(_, f)| names.iter().any(|n| n == f.name()))
                        .map(|(i, _)| i)
                        .collect()
                }
                _ => Vec::new(),
            };
            out.push(b'{');
            let mut first = true;
            for (i, col) in cols.iter().enumerate() {
                if skip.contains(&i) {
                    continue;
                }
                if !first {
                    out.push(b',');
                }
                first = false;
                out.extend_from_slice(&self.keys[i]);
                col.write_json(row, out, &self.style)?;
            }
            out.extend_from_slice(b"}\n");
        }
        Ok(())
    }
}
