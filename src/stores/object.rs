//! [`ObjectSink`]: a [`Sink`] on any `object_store` backend, writing each object with a
//! streaming multipart upload so that it appears whole at its final key or not at all.

use super::backends;
use super::local_writer::LocalWriter;
use super::staging::{STAGING_DIR, StagedFile, Staging};
use super::uploads::Uploads;
use crate::{Error, ObjectTarget, Receipt, Result, Sink, SinkWriter};
use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload, WriteMultipart};
use sha2::Digest;
use std::sync::Arc;

/// Default size of one uploaded part (S3's minimum is 5 MiB).
pub const DEFAULT_PART_SIZE: usize = 5 * 1024 * 1024;
/// Default number of parts uploading at once per object.
pub const DEFAULT_UPLOAD_CONCURRENCY: usize = 2;

/// A [`Sink`] that writes objects to an [`ObjectStore`]: local folder, memory, S3, GCS or
/// Azure.
///
/// Each object is a multipart upload: bytes are buffered up to the part size and uploaded
/// with bounded concurrency, so memory stays at about `part_size × (concurrency + 1)`
/// whatever the object's size. The object becomes visible only when the upload completes
/// in [`SinkWriter::commit`]. On a local folder it is written under the hidden folder
/// [`STAGING_DIR`] at the store's root, fsynced, and renamed into place (the folder fsynced
/// too), so readers of the data folders never see a partial or abandoned file and a commit
/// is on disk when it returns. On S3, GCS and Azure opened by URL each upload leaves a
/// small marker until it completes, so that one a crash left can be found and aborted.
/// [`SinkWriter::abort`] and dropping an uncommitted writer discard the upload; what a
/// crash leaves is listed by [`ObjectSink::list_staged`].
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use tributary::{ObjectTarget, Sink, stores::ObjectSink};
/// let dir = tempfile::tempdir().unwrap();
/// let sink = ObjectSink::from_url(&format!("file://{}", dir.path().display()))?;
/// let mut w = sink.open(&ObjectTarget::new("x/part-0.csv", "text/csv")).await?;
/// w.write("1|a\n".into()).await?;
/// w.abort().await?;                                   // nothing at the final key
/// assert!(!dir.path().join("x/part-0.csv").exists());
/// # Ok::<(), tributary::Error>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct ObjectSink {
    store: Arc<dyn ObjectStore>,
    prefix: Option<Path>,
    label: String,
    part_size: usize,
    concurrency: usize,
    /// A local folder's staging area; `None` for stores whose uploads are invisible
    /// until complete (S3, GCS, Azure multipart) or that do not persist (memory).
    staging: Option<Staging>,
    /// A cloud store opened by URL: its uploads leave markers so that unfinished ones
    /// can be found and aborted (see [`ObjectSink::list_staged`]).
    uploads: Option<Uploads>,
}

impl ObjectSink {
    /// Wrap any `ObjectStore`. `label` describes it in logs (never put secrets in it).
    pub fn new(store: Arc<dyn ObjectStore>, label: impl Into<String>) -> Self {
        ObjectSink {
            store,
            prefix: None,
            label: label.into(),
            part_size: DEFAULT_PART_SIZE,
            concurrency: DEFAULT_UPLOAD_CONCURRENCY,
            staging: None,
            uploads: None,
        }
    }

    /// An in-memory store, for tests and examples.
    pub fn memory() -> Self {
        Self::new(Arc::new(object_store::memory::InMemory::new()), "memory://")
    }

    /// A local folder (created if missing). Needs feature `fs`.
    pub fn local(dir: impl AsRef<std::path::Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let store = backends::local(dir)?;
        let abs = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let mut sink = Self::new(store, format!("file://{}", abs.display()));
        sink.staging = Some(Staging::new(&abs));
        Ok(sink)
    }

    /// A store from a URL, with credentials and settings from the environment (the
    /// `AWS_*`, `GOOGLE_*`, `AZURE_*` variables `object_store` reads):
    ///
    /// - `file:///abs/path` or a plain path: a local folder (feature `fs`)
    /// - `memory://`: in memory
    /// - `s3://bucket/prefix` (feature `s3`), `gs://bucket/prefix` (feature `gcs`),
    ///   `az://container/prefix` (feature `azure`)
    pub fn from_url(url: &str) -> Result<Self> {
        Self::from_url_with_options(url, &[])
    }

    /// Like [`ObjectSink::from_url`], plus `object_store` configuration keys such as
    /// `aws_endpoint`, `aws_allow_http`, `aws_access_key_id`, and two of tributary's own
    /// for cloud stores: `max_retries` (default 10) and `retry_timeout` (seconds, or with
    /// an `ms`/`s`/`m` suffix; default 3 minutes). An unknown key is an error.
    pub fn from_url_with_options(url: &str, options: &[(String, String)]) -> Result<Self> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Self::local(url);
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let (store, multipart) = match scheme {
            "file" => return Self::local(file_url_path(url)?),
            "memory" => return Ok(Self::memory().with_prefix(prefix)),
            "s3" | "s3a" => backends::s3(&format!("s3://{bucket}"), options)?,
            "gs" => backends::gcs(&format!("gs://{bucket}"), options)?,
            "az" | "abfs" | "abfss" | "azure" => {
                backends::azure(&format!("{scheme}://{bucket}"), options)?
            }
            other => {
                return Err(Error::config(
                    "store",
                    format!(
                        "unsupported URL scheme {other:?} in {:?}; use file, memory, s3, gs or az",
                        crate::util::redact_url(url)
                    ),
                ));
            }
        };
        let mut sink = Self::new(store.clone(), format!("{scheme}://{bucket}"));
        sink.uploads = Some(Uploads::new(store, multipart, None));
        Ok(sink.with_prefix(prefix))
    }

    /// Put every key under `prefix` (a folder inside the bucket).
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        let prefix = prefix.trim_matches('/');
        if !prefix.is_empty() {
            self.label = format!("{}/{}", self.label.trim_end_matches('/'), prefix);
            self.prefix = Some(Path::from(prefix));
            self.uploads = self.uploads.take().map(|u| u.under(self.prefix.as_ref()));
        }
        self
    }

    /// Size of each uploaded part (at least 5 MiB for S3; default 5 MiB).
    pub fn with_part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes.max(1);
        self
    }

    /// Parts uploaded at once per object (default 2).
    pub fn with_upload_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    fn path(&self, key: &str) -> Result<Path> {
        let full = match &self.prefix {
            Some(p) => format!("{p}/{}", key.trim_start_matches('/')),
            None => key.trim_start_matches('/').to_string(),
        };
        Path::parse(&full).map_err(|e| {
            Error::config(
                self.label.clone(),
                format!("invalid object key {key:?}: {e}"),
            )
        })
    }

    fn err(&self, e: object_store::Error) -> Error {
        Error::from_object_store(self.label.clone(), e)
    }

    /// Read a whole object.
    pub async fn read(&self, key: &str) -> Result<Bytes> {
        let path = self.path(key)?;
        let got = self.store.get(&path).await.map_err(|e| self.err(e))?;
        got.bytes().await.map_err(|e| self.err(e))
    }

    /// Keys (relative to this sink's prefix) of every object under `prefix`, sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let base = self.path(prefix)?;
        let strip = self.prefix.as_ref().map(|p| format!("{p}/"));
        let mut keys: Vec<String> = self
            .store
            .list(Some(&base))
            .map_ok(|m| {
                let k = m.location.to_string();
                match &strip {
                    Some(s) => k.strip_prefix(s.as_str()).unwrap_or(&k).to_string(),
                    None => k,
                }
            })
            .try_collect()
            .await
            .map_err(|e| self.err(e))?;
        keys.retain(|k| !k.starts_with(STAGING_DIR));
        keys.sort();
        Ok(keys)
    }

    /// The manifest at `key`, read back as a typed [`Manifest`](crate::Manifest). A body
    /// that is not one is an [`Error::Type`] naming the key.
    pub async fn read_manifest(&self, key: &str) -> Result<crate::Manifest> {
        let body = self.read(key).await?;
        serde_json::from_slice(&body).map_err(|e| {
            Error::type_error(
                "manifest",
                format!("{key} is not a tributary manifest: {e}"),
            )
        })
    }

    /// The keys of every run manifest under `prefix` (epoch manifests and warehouse
    /// manifests left out), sorted.
    pub async fn list_runs(&self, prefix: &str) -> Result<Vec<String>> {
        let mut keys = self.list(prefix).await?;
        keys.retain(|k| k.ends_with(".manifest.json") && !k.contains(".epoch-"));
        Ok(keys)
    }

    /// What writes that never committed (a crash or kill mid-object) left: on a local
    /// folder the files in its staging area; on S3, GCS or Azure opened by URL the
    /// unfinished multipart uploads this sink started (each upload leaves a small marker
    /// under `{prefix}/.tributary-staging/uploads/` until it completes or is aborted).
    /// Empty for memory and for stores given to [`ObjectSink::new`].
    ///
    /// A write of the same key aborts what dead writers on this machine left for it; a
    /// crash between starting an upload and writing its marker escapes both, so keep a
    /// bucket lifecycle rule as well, e.g. on S3:
    ///
    /// ```json
    /// {"Rules": [{"ID": "abort-incomplete-uploads", "Status": "Enabled",
    ///   "Filter": {"Prefix": ""},
    ///   "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}]}
    /// ```
    ///
    /// (`aws s3api put-bucket-lifecycle-configuration --bucket B --lifecycle-configuration
    /// file://rule.json`; GCS: a lifecycle rule `AbortIncompleteMultipartUpload` with
    /// `age: 1`; Azure drops uncommitted blocks by itself after 7 days.)
    pub async fn list_staged(&self) -> Result<Vec<StagedFile>> {
        match (&self.staging, &self.uploads) {
            (Some(s), _) => s.list(),
            (None, Some(u)) => u.list(&self.label).await,
            (None, None) => Ok(Vec::new()),
        }
    }

    /// Delete staged files not written to for `older_than` (choose it longer than any run,
    /// or a running write loses its file); returns how many were deleted. A retry of the
    /// same key removes its own leftovers without this.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use tributary::{ObjectTarget, Sink, stores::ObjectSink};
    /// let dir = tempfile::tempdir().unwrap();
    /// let sink = ObjectSink::local(dir.path())?;
    /// let mut w = sink.open(&ObjectTarget::new("t/part-0.csv", "text/csv")).await?;
    /// w.write(vec![b'x'; 6 << 20].into()).await?;     // one part reaches the disk
    /// std::mem::forget(w);                              // as if the process died here
    /// assert!(sink.list("").await?.is_empty());        // nothing a reader would see
    /// assert_eq!(sink.list_staged().await?.len(), 1);  // but the crashed write's file
    /// assert_eq!(sink.clean_staged(std::time::Duration::ZERO).await?, 1);
    /// assert!(sink.list_staged().await?.is_empty());
    /// # Ok::<(), tributary::Error>(()) }).unwrap();
    /// ```
    pub async fn clean_staged(&self, older_than: std::time::Duration) -> Result<usize> {
        match (&self.staging, &self.uploads) {
            (Some(s), _) => s.clean(older_than),
            (None, Some(u)) => u.clean(older_than, &self.label).await,
            (None, None) => Ok(0),
        }
    }

    /// Write a small object in one request, atomically, replacing any object there.
    pub async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        let path = self.path(key)?;
        let Some(staging) = &self.staging else {
            self.store
                .put(&path, PutPayload::from(data))
                .await
                .map_err(|e| self.err(e))?;
            return Ok(());
        };
        // Staged away from the final key, then renamed: a crash leaves nothing beside it.
        let staged = staging.path_for(&path);
        self.store
            .put(&staged, PutPayload::from(data))
            .await
            .map_err(|e| self.err(e))?;
        let moved = self.store.rename(&staged, &path).await;
        if moved.is_err() {
            let _ = self.store.delete(&staged).await;
        }
        moved.map_err(|e| self.err(e))
    }

    /// Write a small object only if nothing is at `key` yet. An existing object gives
    /// [`Error::Conflict`].
    pub async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<()> {
        let path = self.path(key)?;
        let Some(staging) = &self.staging else {
            self.store
                .put_opts(&path, PutPayload::from(data), PutMode::Create.into())
                .await
                .map_err(|e| self.err(e))?;
            return Ok(());
        };
        // Staged, then linked into place only if nothing is there (atomic, fsynced).
        let staged = staging.path_for(&path);
        self.store
            .put(&staged, PutPayload::from(data))
            .await
            .map_err(|e| self.err(e))?;
        let linked = self.store.copy_if_not_exists(&staged, &path).await;
        let _ = self.store.delete(&staged).await;
        linked.map_err(|e| self.err(e))
    }

    /// Delete an object (no error if it is already gone).
    pub async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(e)),
        }
    }
}

#[async_trait]
impl Sink for ObjectSink {
    fn describe(&self) -> String {
        self.label.clone()
    }

    async fn check(&self) -> Result<()> {
        // One listing request: fails on a missing bucket, bad credentials or an
        // unreachable endpoint, and writes nothing.
        self.store
            .list_with_delimiter(self.prefix.as_ref())
            .await
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    async fn read(&self, key: &str) -> Result<Bytes> {
        ObjectSink::read(self, key).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        ObjectSink::delete(self, key).await
    }

    async fn open(&self, target: &ObjectTarget) -> Result<Box<dyn SinkWriter>> {
        let path = self.path(&target.key)?;
        if let Some(uploads) = &self.uploads {
            let w = uploads
                .begin(
                    &path,
                    &target.key,
                    &self.label,
                    self.part_size,
                    self.concurrency,
                )
                .await?;
            return Ok(Box::new(w));
        }
        if let Some(staging) = &self.staging {
            staging.clean_key(&path);
            let w = LocalWriter::create(
                self.store.clone(),
                staging,
                path,
                &target.key,
                &self.label,
                self.part_size,
                self.concurrency,
            )?;
            return Ok(Box::new(w));
        }
        let upload = self
            .store
            .put_multipart(&path)
            .await
            .map_err(|e| self.err(e))?;
        Ok(Box::new(ObjectWriter {
            upload: Some(WriteMultipart::new_with_chunk_size(upload, self.part_size)),
            key: target.key.clone(),
            label: self.label.clone(),
            concurrency: self.concurrency,
            bytes: 0,
            hasher: sha2::Sha256::new(),
        }))
    }
}

/// The writer on a store whose uploads are invisible until complete (memory, or any
/// store given to [`ObjectSink::new`]).
struct ObjectWriter {
    upload: Option<WriteMultipart>,
    key: String,
    label: String,
    concurrency: usize,
    bytes: u64,
    hasher: sha2::Sha256,
}

impl ObjectWriter {
    fn err(&self, e: object_store::Error) -> Error {
        Error::from_object_store(self.label.clone(), e)
    }
}

#[async_trait]
impl SinkWriter for ObjectWriter {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        let upload = self
            .upload
            .as_mut()
            .expect("writer used after commit or abort");
        // Wait for a free upload slot first, so that at most `concurrency` parts are in
        // flight and memory stays bounded.
        if let Err(e) = upload.wait_for_capacity(self.concurrency).await {
            return Err(self.err(e));
        }
        self.hasher.update(&data);
        self.bytes += data.len() as u64;
        upload.put(data);
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<Receipt> {
        let upload = self
            .upload
            .take()
            .expect("writer used after commit or abort");
        let put = upload.finish().await.map_err(|e| self.err(e))?;
        let sha256 = hex::encode(std::mem::take(&mut self.hasher).finalize());
        Ok(Receipt {
            key: self.key.clone(),
            bytes: self.bytes,
            sha256,
            e_tag: put.e_tag,
        })
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        let upload = self
            .upload
            .take()
            .expect("writer used after commit or abort");
        upload.abort().await.map_err(|e| self.err(e))
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        // Dropped without commit or abort: discard the upload so no part lingers
        // (on S3 an incomplete multipart upload is invisible but still billed).
        if let Some(upload) = self.upload.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                let _ = upload.abort().await;
            });
        }
    }
}

/// The folder a `file:` URL names (RFC 8089): `file:///abs/path` or
/// `file://localhost/abs/path`. Any other host (`file://tmp/x`, which means host `tmp`) is
/// an error rather than a folder under the current directory.
fn file_url_path(url: &str) -> Result<std::path::PathBuf> {
    let bad = |why: &str| {
        Error::config(
            "store",
            format!(
                "{}: {why}; write a local folder as file:///absolute/path",
                crate::util::redact_url(url)
            ),
        )
    };
    let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    match parsed.host_str() {
        None | Some("") | Some("localhost") => {}
        Some(h) => return Err(bad(&format!("host {h:?} is not this machine"))),
    }
    let mut parsed = parsed;
    // `Url::to_file_path` refuses any host, `localhost` included.
    let _ = parsed.set_host(None);
    parsed
        .to_file_path()
        .map_err(|()| bad("not an absolute local path"))
}
