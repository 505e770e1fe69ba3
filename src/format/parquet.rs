//! Apache Parquet output (feature `parquet`), on the `parquet` crate's Arrow writer.

use super::{Encoder, Format};
use crate::model::{EXTENSION_METADATA_KEY, EXTENSION_NAME_KEY, JSON_EXTENSION, is_json_field};
use crate::value::{BinaryEncoding, Column, TextStyle};
use crate::{Error, Result};
use arrow_array::builder::StringBuilder;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, IntervalUnit, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as Codec, ZstdLevel};
use parquet::file::properties::WriterProperties;
use std::sync::Arc;

/// Field metadata key set on a column that Parquet cannot hold in its Arrow type and that
/// was written as text instead; its value says which text (`iso8601-interval`, `json`).
pub const PARQUET_AS_TEXT_KEY: &str = "tributary.parquet_as_text";

/// Compression inside a Parquet file (per column chunk).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParquetCompression {
    /// Uncompressed pages.
    None,
    /// Snappy: fast, what Spark and pyarrow write by default.
    #[default]
    Snappy,
    /// Zstandard at a level from 1 to 22: smaller objects for more CPU.
    Zstd(i32),
}

/// The Parquet [`Format`]: one Parquet file per object, written row group by row group.
///
/// Each object is a complete Parquet file with the Arrow schema embedded, so Arrow,
/// DuckDB, Spark, pandas and Polars read back the same types: exact decimals, timestamps
/// with their time zone, lists, binary. Columns marked as JSON
/// ([`crate::model::json_field`]) get Parquet's `JSON` logical type and UUIDs its `UUID`
/// type. Parquet has no type for PostgreSQL's `interval` (months, days and nanoseconds
/// with their own signs): such columns are written as ISO 8601 text (as PostgreSQL prints
/// them with `intervalstyle = iso_8601`), and nested columns holding intervals as JSON
/// text; either way the field carries [`PARQUET_AS_TEXT_KEY`] metadata.
///
/// Memory stays bounded: a row group is closed after [`Parquet::with_row_group_rows`] rows
/// or when its encoded size passes [`Parquet::with_row_group_bytes`], and its bytes go to
/// the sink at once. Parquet compresses inside the file, so whole-object compression
/// ([`super::Compression::Gzip`]) is refused for it.
///
/// ```
/// use std::sync::Arc;
/// use arrow_array::{Int64Array, RecordBatch, StringArray};
/// use arrow_schema::{DataType, Field, Schema};
/// use tributary::format::{Encoder, Format, Parquet};
/// let schema = Arc::new(Schema::new(vec![
///     Field::new("id", DataType::Int64, false),
///     Field::new("status", DataType::Utf8, true),
/// ]));
/// let rb = RecordBatch::try_new(schema.clone(), vec![
///     Arc::new(Int64Array::from(vec![1, 2])),
///     Arc::new(StringArray::from(vec![Some("Shipped"), None])),
/// ]).unwrap();
/// let mut encoder = Parquet::default().encoder(&schema).unwrap();
/// let mut out = Vec::new();
/// encoder.begin(&mut out).unwrap();
/// encoder.encode(&rb, &mut out).unwrap();
/// encoder.finish(&mut out).unwrap();
/// assert_eq!(&out[..4], b"PAR1");
/// assert_eq!(&out[out.len() - 4..], b"PAR1");
/// ```
#[derive(Clone, Debug)]
pub struct Parquet {
    compression: ParquetCompression,
    row_group_rows: usize,
    row_group_bytes: usize,
}

impl Default for Parquet {
    fn default() -> Self {
        Parquet {
            compression: ParquetCompression::Snappy,
            row_group_rows: 128 * 1024,
            row_group_bytes: 32 * 1024 * 1024,
        }
    }
}

impl Parquet {
    /// Snappy pages, row groups of at most 131,072 rows or 32 MiB encoded.
    pub fn new() -> Self {
        Self::default()
    }

    /// Compression of the pages (Snappy by default).
    pub fn with_compression(mut self, compression: ParquetCompression) -> Self {
        self.compression = compression;
        self
    }

    /// Close a row group after this many rows (at least 1).
    pub fn with_row_group_rows(mut self, rows: usize) -> Self {
        self.row_group_rows = rows.max(1);
        self
    }

    /// Close a row group once its encoded size passes this many bytes: the bound on the
    /// memory one open object holds.
    pub fn with_row_group_bytes(mut self, bytes: usize) -> Self {
        self.row_group_bytes = bytes.max(1);
        self
    }

    fn properties(&self) -> Result<WriterProperties> {
        let codec = match self.compression {
            ParquetCompression::None => Codec::UNCOMPRESSED,
            ParquetCompression::Snappy => Codec::SNAPPY,
            ParquetCompression::Zstd(level) => Codec::ZSTD(
                ZstdLevel::try_new(level)
                    .map_err(|e| Error::config("parquet", format!("zstd level {level}: {e}")))?,
            ),
        };
        Ok(WriterProperties::builder()
            .set_compression(codec)
            .set_max_row_group_row_count(Some(self.row_group_rows))
            .set_max_row_group_bytes(Some(self.row_group_bytes))
            .set_created_by(format!("tributary {}", env!("CARGO_PKG_VERSION")))
            .build())
    }
}

/// How one column is written.
#[derive(Clone, Copy)]
enum Plan {
    AsIs,
    /// Rendered as text: ISO 8601 (`json` false) or JSON (`json` true).
    Text {
        json: bool,
    },
}

/// Whether `t`, or any type nested in it, satisfies `is`.
fn contains(t: &DataType, is: &dyn Fn(&DataType) -> bool) -> bool {
    is(t)
        || match t {
            DataType::List(f)
            | DataType::LargeList(f)
            | DataType::ListView(f)
            | DataType::LargeListView(f)
            | DataType::FixedSizeList(f, _)
            | DataType::Map(f, _) => contains(f.data_type(), is),
            DataType::Struct(fs) => fs.iter().any(|f| contains(f.data_type(), is)),
            DataType::Dictionary(_, v) => contains(v, is),
            DataType::RunEndEncoded(_, v) => contains(v.data_type(), is),
            _ => false,
        }
}

fn is_interval_mdn(t: &DataType) -> bool {
    matches!(t, DataType::Interval(IntervalUnit::MonthDayNano))
}

/// A union: a type the Parquet writer has no mapping for (its schema converter would not
/// return an error for it but panic).
fn is_union(t: &DataType) -> bool {
    matches!(t, DataType::Union(..))
}

fn parquet_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::type_error("parquet", format!("{what}: {e}"))
}

/// As [`parquet_err`], keeping the writer's error as the source.
fn parquet_cause(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Type {
        component: "parquet".into(),
        message: format!("{what}: {e}"),
        source: Some(Box::new(e)),
    }
}

impl Format for Parquet {
    fn extension(&self) -> &str {
        "parquet"
    }

    fn content_type(&self) -> &str {
        "application/vnd.apache.parquet"
    }

    fn compresses_itself(&self) -> bool {
        true
    }

    fn encoder(&self, schema: &SchemaRef) -> Result<Box<dyn Encoder>> {
        let mut plans = Vec::with_capacity(schema.fields().len());
        let mut fields = Vec::with_capacity(schema.fields().len());
        for f in schema.fields() {
            let (plan, field) = if contains(f.data_type(), &is_interval_mdn) {
                let json = !is_interval_mdn(f.data_type());
                let mut md = f.metadata().clone();
                md.insert(
                    PARQUET_AS_TEXT_KEY.to_string(),
                    if json { "json" } else { "iso8601-interval" }.to_string(),
                );
                if json {
                    md.insert(EXTENSION_NAME_KEY.to_string(), JSON_EXTENSION.to_string());
                }
                (
                    Plan::Text { json },
                    Field::new(f.name(), DataType::Utf8, f.is_nullable()).with_metadata(md),
                )
            } else {
                (Plan::AsIs, f.as_ref().clone())
            };
            // Arrow's canonical JSON extension wants its (empty) metadata present for the
            // Parquet `JSON` logical type to be written.
            let field = if is_json_field(&field) {
                let mut md = field.metadata().clone();
                if !md.contains_key(EXTENSION_METADATA_KEY) {
                    md.insert(EXTENSION_METADATA_KEY, "");
                }
                field.with_metadata(md)
            } else {
                field
            };
            plans.push(plan);
            fields.push(field);
        }
        let written = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
        // Name the first column Parquet cannot take, rather than the writer's generic error.
        for f in written.fields() {
            let cannot = |why: &dyn std::fmt::Display| {
                parquet_err(
                    &format!(
                        "column {:?} of type {} cannot be written to Parquet (cast it in the query)",
                        f.name(),
                        f.data_type()
                    ),
                    why,
                )
            };
            if contains(f.data_type(), &is_union) {
                return Err(cannot(&"Parquet has no union type"));
            }
            let one = Schema::new(vec![f.as_ref().clone()]);
            if let Err(e) = parquet::arrow::ArrowSchemaConverter::new().convert(&one) {
                return Err(cannot(&e));
            }
        }
        let writer = ArrowWriter::try_new(Vec::new(), written.clone(), Some(self.properties()?))
            .map_err(|e| parquet_cause("opening a Parquet writer", e))?;
        Ok(Box::new(ParquetEncoder {
            writer: Some(writer),
            written,
            plans,
        }))
    }
}

struct ParquetEncoder {
    writer: Option<ArrowWriter<Vec<u8>>>,
    written: SchemaRef,
    plans: Vec<Plan>,
}

fn as_text(array: &ArrayRef, field: &Field, json: bool) -> Result<ArrayRef> {
    let style = TextStyle {
        date_time_sep: b'T',
        binary: BinaryEncoding::Base64,
        decimal_as_string: false,
        pg_text: false,
    };
    let col = Column::new(array, field)?;
    let mut b = StringBuilder::with_capacity(array.len(), array.len() * 16);
    let mut buf = Vec::with_capacity(64);
    for row in 0..array.len() {
        if array.is_null(row) {
            b.append_null();
            continue;
        }
        buf.clear();
        if json {
            col.write_json(row, &mut buf, &style)?;
        } else {
            col.write_text(row, &mut buf, &style)?;
        }
        let s = std::str::from_utf8(&buf).map_err(|e| parquet_cause(field.name(), e))?;
        b.append_value(s);
    }
    Ok(Arc::new(b.finish()))
}

impl ParquetEncoder {
    fn writer(&mut self) -> Result<&mut ArrowWriter<Vec<u8>>> {
        self.writer
            .as_mut()
            .ok_or_else(|| parquet_err("writing", "the Parquet file is already finished"))
    }
}

impl Encoder for ParquetEncoder {
    fn encode(&mut self, batch: &RecordBatch, out: &mut Vec<u8>) -> Result<()> {
        if batch.num_columns() != self.plans.len() {
            return Err(parquet_err(
                "writing",
                format!(
                    "a batch of {} columns for a file of {}",
                    batch.num_columns(),
                    self.plans.len()
                ),
            ));
        }
        let schema = batch.schema();
        let mut columns = Vec::with_capacity(batch.num_columns());
        for (i, plan) in self.plans.iter().enumerate() {
            columns.push(match plan {
                Plan::AsIs => batch.column(i).clone(),
                Plan::Text { json } => as_text(batch.column(i), schema.field(i), *json)?,
            });
        }
        let rb = RecordBatch::try_new(self.written.clone(), columns)
            .map_err(|e| parquet_cause("a batch that does not match the file's schema", e))?;
        let w = self.writer()?;
        w.write(&rb).map_err(|e| parquet_cause("writing", e))?;
        // Row groups already flushed are final bytes of the file: hand them on.
        out.append(w.inner_mut());
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<()> {
        let mut w = self
            .writer
            .take()
            .ok_or_else(|| parquet_err("finishing", "the Parquet file is already finished"))?;
        w.finish().map_err(|e| parquet_cause("finishing", e))?;
        out.append(w.inner_mut());
        Ok(())
    }
}
