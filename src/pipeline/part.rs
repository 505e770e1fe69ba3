//! One object being written: encoding, whole-object compression, chunked hand-over to
//! the sink writer.

use super::ObjectReport;
use crate::format::{Compression, Encoder};
use crate::model::EncodedChunk;
use crate::{Error, Result, SinkWriter};
use arrow_schema::SchemaRef;
use bytes::Bytes;
use std::io::Write;

/// Bytes handed to the sink in one `write` call.
pub(super) const WRITE_CHUNK: usize = 1024 * 1024;

/// A part being written.
pub(super) struct OpenPart {
    pub(super) writer: Box<dyn SinkWriter>,
    /// `None` for a part of pre-encoded bytes.
    encoder: Option<Box<dyn Encoder>>,
    pub(super) schema: Option<SchemaRef>,
    pub(super) key: String,
    pub(super) table: String,
    buf: Vec<u8>,
    compressor: Option<Compressor>,
    pub(super) rows: u64,
    bytes: u64,
}

impl OpenPart {
    /// A part writing to `writer`: Arrow batches through `encoder`, or pre-encoded
    /// bytes when there is none; then whole-object `compression`.
    pub(super) fn new(
        writer: Box<dyn SinkWriter>,
        mut encoder: Option<Box<dyn Encoder>>,
        schema: Option<SchemaRef>,
        key: String,
        table: String,
        compression: Compression,
    ) -> Result<Self> {
        let mut buf = Vec::with_capacity(WRITE_CHUNK + WRITE_CHUNK / 4);
        if let Some(enc) = encoder.as_mut() {
            enc.begin(&mut buf)?;
        }
        let compressor = Compressor::new(compression).map_err(|e| compress_err(&key, e))?;
        Ok(OpenPart {
            writer,
            encoder,
            schema,
            key,
            table,
            buf,
            compressor,
            rows: 0,
            bytes: 0,
        })
    }

    fn pending(&self) -> &[u8] {
        match &self.compressor {
            Some(c) => c.get_ref(),
            None => &self.buf,
        }
    }

    pub(super) fn size(&self) -> u64 {
        self.bytes + self.pending().len() as u64
    }

    /// Move freshly encoded bytes through compression; hand full chunks to the sink.
    async fn drain(&mut self, all: bool) -> Result<()> {
        if let Some(c) = &mut self.compressor {
            c.write_all(&self.buf)
                .map_err(|e| compress_err(&self.key, e))?;
            self.buf.clear();
        }
        let ready = self.pending().len();
        if ready >= WRITE_CHUNK || (all && ready > 0) {
            let chunk = match &mut self.compressor {
                Some(c) => std::mem::take(c.get_mut()),
                None => std::mem::replace(
                    &mut self.buf,
                    Vec::with_capacity(WRITE_CHUNK + WRITE_CHUNK / 4),
                ),
            };
            self.bytes += chunk.len() as u64;
            self.writer.write(Bytes::from(chunk)).await?;
        }
        Ok(())
    }

    pub(super) async fn write(&mut self, batch: &arrow_array::RecordBatch) -> Result<()> {
        self.encoder
            .as_mut()
            .expect("a batch part has an encoder")
            .encode(batch, &mut self.buf)?;
        self.rows += batch.num_rows() as u64;
        self.drain(false).await
    }

    pub(super) async fn write_encoded(&mut self, chunk: EncodedChunk) -> Result<()> {
        self.rows += chunk.rows;
        if self.schema.is_none() {
            self.schema = chunk.schema.clone();
        }
        if self.compressor.is_none() && self.buf.is_empty() {
            // Already whole rows in the right format: hand them on without a copy.
            self.bytes += chunk.bytes.len() as u64;
            return self.writer.write(chunk.bytes).await;
        }
        self.buf.extend_from_slice(&chunk.bytes);
        self.drain(false).await
    }

    pub(super) async fn commit(mut self) -> Result<ObjectReport> {
        if let Some(enc) = self.encoder.as_mut() {
            enc.finish(&mut self.buf)?;
        }
        self.drain(false).await?;
        if let Some(c) = self.compressor.take() {
            let rest = c.finish().map_err(|e| compress_err(&self.key, e))?;
            self.buf = rest;
        }
        self.drain(true).await?;
        let receipt = self.writer.commit().await?;
        Ok(ObjectReport {
            key: receipt.key,
            rows: self.rows,
            bytes: receipt.bytes,
            sha256: receipt.sha256,
            schema: self.schema.as_deref().map(crate::model::SchemaSummary::of),
            table: self.table,
        })
    }
}

/// Whole-object compression of a part being written.
enum Compressor {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    #[cfg(feature = "zstd")]
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Compressor {
    fn new(c: Compression) -> std::io::Result<Option<Self>> {
        Ok(match c {
            Compression::None => None,
            Compression::Gzip => Some(Compressor::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::default(),
            ))),
            #[cfg(feature = "zstd")]
            Compression::Zstd(level) => Some(Compressor::Zstd(zstd::stream::write::Encoder::new(
                Vec::new(),
                level,
            )?)),
        })
    }

    fn get_ref(&self) -> &Vec<u8> {
        match self {
            Compressor::Gzip(g) => g.get_ref(),
            #[cfg(feature = "zstd")]
            Compressor::Zstd(z) => z.get_ref(),
        }
    }

    fn get_mut(&mut self) -> &mut Vec<u8> {
        match self {
            Compressor::Gzip(g) => g.get_mut(),
            #[cfg(feature = "zstd")]
            Compressor::Zstd(z) => z.get_mut(),
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Compressor::Gzip(g) => g.write_all(bytes),
            #[cfg(feature = "zstd")]
            Compressor::Zstd(z) => z.write_all(bytes),
        }
    }

    fn finish(self) -> std::io::Result<Vec<u8>> {
        match self {
            Compressor::Gzip(g) => g.finish(),
            #[cfg(feature = "zstd")]
            Compressor::Zstd(z) => z.finish(),
        }
    }
}

fn compress_err(key: &str, e: std::io::Error) -> Error {
    Error::Storage {
        component: "compression".into(),
        message: format!("compressing {key}: {e}"),
        retryable: false,
        source: Some(Box::new(e)),
    }
}
