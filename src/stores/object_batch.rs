//! [`ObjectBatchSink`]: the [`BatchSink`] that writes objects of a [`Format`] to a
//! [`Sink`], with whole-object compression, keys from a [`KeyTemplate`] and a manifest
//! per run. Every pipeline built with [`PipelineBuilder::sink`](crate::PipelineBuilder::sink)
//! uses one with the default layout; give one with a layout of your own (a prefix, key
//! and manifest templates, compression) to
//! [`PipelineBuilder::batch_sink`](crate::PipelineBuilder::batch_sink).

use super::compress::Compressor;
use super::{KeyTemplate, KeyVars};
use crate::format::{Compression, Csv, Encoder, Format};
use crate::model::{EncodedChunk, SchemaSummary};
use crate::{
    BatchSink, BatchTarget, BatchWriter, Error, Leftover, Manifest, ObjectReport, ObjectTarget,
    Result, RunReport, Sink, SinkCapabilities, SinkWriter,
};
use arrow_schema::SchemaRef;
use async_trait::async_trait;
use bytes::Bytes;
use std::sync::Arc;

/// Bytes handed to the sink in one `write` call.
const WRITE_CHUNK: usize = 1024 * 1024;

/// Objects of a format on a [`Sink`]: each [`BatchSink::begin`] opens one object at the
/// key the template renders, encodes batches into it (then compresses the whole
/// object), and hands the bytes to the sink in 1 MiB chunks.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use arrow_array::{Int64Array, RecordBatch};
/// use arrow_schema::{DataType, Field, Schema};
/// use tributary::{BatchSink, BatchTarget, format::Csv, stores::{ObjectBatchSink, ObjectSink}};
/// let objects = ObjectSink::memory();
/// let sink = ObjectBatchSink::new(objects.clone(), Csv::default());
/// let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
/// let rb = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![1, 2]))]).unwrap();
/// let mut w = sink.begin(&BatchTarget::new("p", "demo", "numbers", "r1", 0, Some(schema))).await?;
/// w.write(&rb).await?;
/// let report = w.commit().await?;
/// assert!(report.key.starts_with("demo/numbers/dt=") && report.key.ends_with("/r1-00000.csv"));
/// assert_eq!((report.rows, &objects.read(&report.key).await?[..]), (2, &b"1\n2\n"[..]));
/// # Ok::<(), tributary::Error>(()) }).unwrap();
/// ```
#[derive(Clone)]
pub struct ObjectBatchSink {
    sink: Arc<dyn Sink>,
    format: Arc<dyn Format>,
    compression: Compression,
    prefix: String,
    key_template: KeyTemplate,
    manifest_template: Option<KeyTemplate>,
    redshift_manifest: bool,
}

impl std::fmt::Debug for ObjectBatchSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectBatchSink")
            .field("sink", &self.sink.describe())
            .field("format", &self.format)
            .field("compression", &self.compression)
            .field("key_template", &self.key_template)
            .finish_non_exhaustive()
    }
}

impl ObjectBatchSink {
    /// Objects of `format` on `sink`, with the default key and manifest templates, no
    /// prefix, no compression.
    pub fn new(sink: impl Sink, format: impl Format) -> Self {
        Self::from_parts(Arc::new(sink), Arc::new(format))
    }

    pub(crate) fn from_parts(sink: Arc<dyn Sink>, format: Arc<dyn Format>) -> Self {
        ObjectBatchSink {
            sink,
            format,
            compression: Compression::None,
            prefix: String::new(),
            key_template: KeyTemplate::default(),
            manifest_template: Some(
                KeyTemplate::manifest(KeyTemplate::MANIFEST).expect("valid default"),
            ),
            redshift_manifest: false,
        }
    }

    /// Beside each manifest, write the one Redshift's `COPY ... MANIFEST` loads from,
    /// `{run_id}.redshift-manifest.json`: `{"entries": [{"url": "s3://bucket/key",
    /// "mandatory": true, "meta": {"content_length": bytes}}, ...]}` for the objects that
    /// manifest lists.
    pub fn with_redshift_manifest(mut self, yes: bool) -> Self {
        self.redshift_manifest = yes;
        self
    }

    /// The book's CSV on `sink`.
    pub fn csv(sink: impl Sink) -> Self {
        Self::from_parts(Arc::new(sink), Arc::new(Csv::default()))
    }

    /// Compress whole objects. A format that compresses its own contents (Parquet)
    /// refuses it with [`Error::Config`].
    pub fn with_compression(mut self, compression: Compression) -> Result<Self> {
        if self.format.compresses_itself() && compression != Compression::None {
            return Err(Error::config(
                "pipeline",
                format!(
                    "{} objects compress their own contents: set their compression on the \
                     format, not whole-object {:?}",
                    self.format.extension(),
                    compression
                ),
            ));
        }
        self.compression = compression;
        Ok(self)
    }

    /// A prefix for every key (`{prefix}`).
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The key template for data objects.
    pub fn with_key_template(mut self, template: KeyTemplate) -> Self {
        self.key_template = template;
        self
    }

    /// The key template for run manifests, or `None` for none.
    pub fn with_manifest_template(mut self, template: Option<KeyTemplate>) -> Self {
        self.manifest_template = template;
        self
    }

    async fn put(&self, key: &str, body: Vec<u8>) -> Result<()> {
        let mut w = self
            .sink
            .open(&ObjectTarget::new(key, "application/json"))
            .await?;
        w.write(Bytes::from(body)).await?;
        w.commit().await?;
        Ok(())
    }

    fn vars<'a>(&'a self, t: &'a BatchTarget, ext: &'a str) -> KeyVars<'a> {
        KeyVars {
            prefix: &self.prefix,
            pipeline: &t.pipeline,
            source: &t.source,
            stream: &t.table,
            date: t.date,
            run_id: &t.run_id,
            part: t.part,
            ext,
        }
    }
}

#[async_trait]
impl BatchSink for ObjectBatchSink {
    fn describe(&self) -> String {
        self.sink.describe()
    }

    fn format(&self) -> Option<&dyn Format> {
        Some(self.format.as_ref())
    }

    async fn check(&self) -> Result<()> {
        self.sink.check().await
    }

    async fn begin(&self, target: &BatchTarget) -> Result<Box<dyn BatchWriter>> {
        let ext = format!("{}{}", self.format.extension(), self.compression.suffix());
        let key = self.key_template.render(&self.vars(target, &ext))?;
        let encoder = target
            .schema
            .as_ref()
            .map(|s| self.format.encoder(s))
            .transpose()?;
        let content_type = self
            .compression
            .content_type()
            .unwrap_or_else(|| self.format.content_type());
        let writer = self
            .sink
            .open(&ObjectTarget::new(key.clone(), content_type))
            .await?;
        Ok(Box::new(OpenPart::new(
            writer,
            encoder,
            target.schema.clone(),
            key,
            target.table.clone(),
            self.compression,
        )?))
    }

    fn capabilities(&self) -> SinkCapabilities {
        SinkCapabilities::new()
            .with_atomic_visibility(true)
            .with_manifests(self.manifest_template.is_some())
            .with_discard(true)
    }

    fn manifest_key(&self, report: &RunReport) -> Result<Option<String>> {
        let Some(t) = &self.manifest_template else {
            return Ok(None);
        };
        let vars = KeyVars {
            prefix: &self.prefix,
            pipeline: &report.pipeline,
            source: &report.source,
            stream: &report.stream,
            date: report.started_at.date_naive(),
            run_id: &report.run_id,
            part: 0,
            ext: "json",
        };
        let mut key = t.render(&vars)?;
        if let Some(n) = report.epoch {
            // `…/r1.manifest.json` → `…/r1.epoch-000001.manifest.json`: beside the
            // run's own, and found by the same `.manifest.json` suffix.
            key = match key.strip_suffix(".manifest.json") {
                Some(stem) => format!("{stem}.epoch-{n:06}.manifest.json"),
                None => format!("{key}.epoch-{n:06}.json"),
            };
        }
        Ok(Some(key))
    }

    async fn write_manifest(&self, key: &str, manifest: &Manifest) -> Result<()> {
        let encode = |what: &str, e: serde_json::Error| Error::Storage {
            component: "manifest".into(),
            message: format!("encoding {what} {key}: {e}"),
            retryable: false,
            source: Some(Box::new(e)),
        };
        if self.redshift_manifest {
            // First, so that our manifest, which a loader may wait for, comes last.
            let entries: Vec<serde_json::Value> = manifest
                .objects
                .iter()
                .map(|o| {
                    serde_json::json!({
                        "url": self.redshift_url(&o.key),
                        "mandatory": true,
                        "meta": {"content_length": o.bytes},
                    })
                })
                .collect();
            let rkey = redshift_key(key);
            let body = serde_json::to_vec_pretty(&serde_json::json!({ "entries": entries }))
                .map_err(|e| encode("the Redshift manifest beside", e))?;
            self.put(&rkey, body).await?;
        }
        let body = serde_json::to_vec_pretty(manifest).map_err(|e| encode("manifest", e))?;
        self.put(key, body).await
    }

    /// The manifest first (rewritten without the leftover objects, Redshift's beside
    /// it too), so that no manifest ever lists a missing object; then the objects.
    async fn discard(&self, leftover: &Leftover) -> Result<()> {
        if let Some(key) = &leftover.manifest {
            let gone = |k: &str| leftover.objects.iter().any(|o| o == k);
            if self.redshift_manifest {
                let urls: Vec<String> = leftover
                    .objects
                    .iter()
                    .map(|k| self.redshift_url(k))
                    .collect();
                self.rewrite_json(&redshift_key(key), "entries", |e| {
                    e["url"]
                        .as_str()
                        .is_some_and(|u| urls.iter().any(|x| x == u))
                })
                .await?;
            }
            self.rewrite_json(key, "objects", |o| o["key"].as_str().is_some_and(gone))
                .await?;
        }
        for key in &leftover.objects {
            self.sink.delete(key).await?;
        }
        Ok(())
    }
}

/// Where Redshift's manifest goes beside ours.
fn redshift_key(key: &str) -> String {
    match key.strip_suffix(".manifest.json") {
        Some(stem) => format!("{stem}.redshift-manifest.json"),
        None => format!("{key}.redshift-manifest.json"),
    }
}

impl ObjectBatchSink {
    /// An object's URL in Redshift's manifest: the store's location, then its key.
    fn redshift_url(&self, key: &str) -> String {
        format!("{}/{}", self.sink.describe().trim_end_matches('/'), key)
    }

    /// Rewrite the JSON document at `key` without the entries of its array `field` that
    /// `drop` picks (and, for a manifest, its row and byte totals less theirs). Nothing
    /// to do if it is absent or lists none of them.
    async fn rewrite_json(
        &self,
        key: &str,
        field: &str,
        drop: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<()> {
        let body = match self.sink.read(key).await {
            Ok(b) => b,
            Err(Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut doc: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| Error::type_error("manifest", format!("{key} is not valid JSON: {e}")))?;
        let Some(entries) = doc.get_mut(field).and_then(|v| v.as_array_mut()) else {
            return Ok(());
        };
        let (dropped, kept): (Vec<_>, Vec<_>) = entries.drain(..).partition(|e| drop(e));
        *entries = kept;
        if dropped.is_empty() {
            return Ok(());
        }
        for total in ["rows", "bytes"] {
            let less: u64 = dropped.iter().filter_map(|e| e[total].as_u64()).sum();
            if let Some(n) = doc[total].as_u64() {
                doc[total] = n.saturating_sub(less).into();
            }
        }
        let body = serde_json::to_vec_pretty(&doc).expect("json serializes");
        self.put(key, body).await
    }
}

/// A part being written.
struct OpenPart {
    writer: Box<dyn SinkWriter>,
    /// `None` for a part of pre-encoded bytes.
    encoder: Option<Box<dyn Encoder>>,
    schema: Option<SchemaRef>,
    key: String,
    table: String,
    buf: Vec<u8>,
    compressor: Option<Compressor>,
    rows: u64,
    bytes: u64,
}

impl OpenPart {
    /// A part writing to `writer`: Arrow batches through `encoder`, or pre-encoded
    /// bytes when there is none; then whole-object `compression`.
    fn new(
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

    fn current_size(&self) -> u64 {
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

    async fn encode_batch(&mut self, batch: &arrow_array::RecordBatch) -> Result<()> {
        let Some(encoder) = self.encoder.as_mut() else {
            return crate::traits::same_schema(&self.key, None, batch);
        };
        crate::traits::same_schema(&self.key, self.schema.as_ref(), batch)?;
        encoder.encode(batch, &mut self.buf)?;
        self.rows += batch.num_rows() as u64;
        self.drain(false).await
    }

    async fn push_encoded(&mut self, chunk: EncodedChunk) -> Result<()> {
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

    async fn finish(mut self) -> Result<ObjectReport> {
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
            schema: self.schema.as_deref().map(SchemaSummary::of),
            table: self.table,
        })
    }
}

#[async_trait]
impl BatchWriter for OpenPart {
    fn id(&self) -> &str {
        &self.key
    }
    fn rows(&self) -> u64 {
        self.rows
    }
    fn size(&self) -> u64 {
        self.current_size()
    }
    async fn write(&mut self, batch: &arrow_array::RecordBatch) -> Result<()> {
        self.encode_batch(batch).await
    }
    async fn write_encoded(&mut self, chunk: EncodedChunk) -> Result<()> {
        if self.encoder.is_some() {
            return Err(Error::type_error(
                "sink",
                format!(
                    "{}: pre-encoded bytes written to an object of Arrow batches",
                    self.key
                ),
            ));
        }
        self.push_encoded(chunk).await
    }
    async fn commit(self: Box<Self>) -> Result<ObjectReport> {
        (*self).finish().await
    }
    async fn abort(self: Box<Self>) -> Result<()> {
        self.writer.abort().await
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
