//! Output formats: [`Csv`] (the book's `|`-delimited default, with COPY dialects),
//! [`JsonLines`] and, with the `parquet` feature, `Parquet`. Encoders stream: they turn one
//! batch at a time into bytes.

mod csv;
mod jsonl;
#[cfg(feature = "parquet")]
mod parquet;

pub use self::csv::{Csv, CsvDialect};
#[cfg(feature = "parquet")]
#[cfg_attr(docsrs, doc(cfg(feature = "parquet")))]
pub use self::parquet::{PARQUET_AS_TEXT_KEY, Parquet, ParquetCompression};
pub use crate::value::BinaryEncoding;
pub use jsonl::JsonLines;

use crate::Result;
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use std::fmt::Debug;

/// A file format: how batches become the bytes of one object.
pub trait Format: Debug + Send + Sync + 'static {
    /// File name extension, without the dot (`csv`, `jsonl`).
    fn extension(&self) -> &str;

    /// MIME type of the objects.
    fn content_type(&self) -> &str;

    /// An encoder for one object whose batches have `schema`. Fails if the format cannot
    /// write a column of that schema.
    fn encoder(&self, schema: &SchemaRef) -> Result<Box<dyn Encoder>>;

    /// The CSV dialect, when this format is CSV (sources that encode CSV themselves ask).
    fn csv_dialect(&self) -> Option<&CsvDialect> {
        None
    }

    /// Whether the format compresses its own contents (Parquet), so that whole-object
    /// compression must not be added on top.
    fn compresses_itself(&self) -> bool {
        false
    }
}

crate::traits::forward_impls!(Format {
    fn extension(&self) -> &str;
    fn content_type(&self) -> &str;
    fn encoder(&self, schema: &SchemaRef) -> Result<Box<dyn Encoder>>;
    fn csv_dialect(&self) -> Option<&CsvDialect>;
    fn compresses_itself(&self) -> bool;
} {
});

/// Encodes the batches of one object, appending bytes to a buffer the caller drains.
pub trait Encoder: Send {
    /// Bytes at the start of the object (a header row). Called once, before any batch.
    fn begin(&mut self, _out: &mut Vec<u8>) -> Result<()> {
        Ok(())
    }

    /// Append one batch.
    fn encode(&mut self, batch: &RecordBatch, out: &mut Vec<u8>) -> Result<()>;

    /// Bytes at the end of the object (a footer). Called once, after the last batch.
    fn finish(&mut self, _out: &mut Vec<u8>) -> Result<()> {
        Ok(())
    }
}

/// Compression applied to whole objects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compression {
    /// None.
    #[default]
    None,
    /// gzip, at the default level; objects get a `.gz` suffix.
    Gzip,
    /// Zstandard at a level (1-22; 0 means the library's default, 3); objects get a
    /// `.zst` suffix. Needs feature `zstd`: without it, writing an object is an
    /// [`Error::Storage`](crate::Error::Storage) saying so, never an uncompressed object.
    Zstd(i32),
}

impl Compression {
    /// The suffix added to object keys (`""` or `".gz"`).
    pub fn suffix(&self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => ".gz",
            Compression::Zstd(_) => ".zst",
        }
    }

    /// The objects' content type (`None`: the format's own).
    pub fn content_type(&self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some("application/gzip"),
            Compression::Zstd(_) => Some("application/zstd"),
        }
    }
}
