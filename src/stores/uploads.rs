//! Multipart uploads on cloud stores that can be found again after a crash.
//!
//! An unfinished S3 or GCS multipart upload is invisible but kept (and billed) until it
//! is aborted, and none of the stores lists them through `object_store`. So each upload
//! this sink starts leaves a small marker object, `{prefix}/.tributary-staging/uploads/
//! {key hash}.{writer}`, naming its key and upload id, deleted when the upload completes
//! or is aborted. A crash leaves the marker: a later write of the same key aborts the
//! uploads of writers that are dead (same host, process gone or machine rebooted), and
//! [`ObjectSink::list_staged`](super::ObjectSink::list_staged) /
//! [`clean_staged`](super::ObjectSink::clean_staged) find and abort the rest. A crash
//! between starting an upload and writing its marker (one request) escapes this; a bucket
//! lifecycle rule covers that.

use super::staging::{STAGING_DIR, StagedFile, process_alive};
use crate::{Error, Receipt, Result, SinkWriter};
use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{MultipartId, ObjectStore, ObjectStoreExt, PutPayload, PutPayloadMut};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// What a marker says.
#[derive(Serialize, Deserialize)]
struct Marker {
    /// The object's full path in the store.
    path: String,
    upload_id: String,
    host: String,
    boot: String,
    pid: u32,
}

/// This machine's name and boot id: a marker from this host and boot whose process is
/// gone, or from an earlier boot, belongs to a dead writer.
fn host_and_boot() -> (String, String) {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    (
        read("/proc/sys/kernel/hostname"),
        read("/proc/sys/kernel/random/boot_id"),
    )
}

/// The tracked uploads of one cloud sink.
#[derive(Clone)]
pub(crate) struct Uploads {
    store: Arc<dyn ObjectStore>,
    multipart: Arc<dyn MultipartStore>,
    /// `{prefix}/.tributary-staging/uploads`.
    dir: Path,
}

impl std::fmt::Debug for Uploads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploads")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Uploads {
    pub(crate) fn new(
        store: Arc<dyn ObjectStore>,
        multipart: Arc<dyn MultipartStore>,
        prefix: Option<&Path>,
    ) -> Self {
        let dir = match prefix {
            Some(p) => Path::from(format!("{p}/{STAGING_DIR}/uploads")),
            None => Path::from(format!("{STAGING_DIR}/uploads")),
        };
        Uploads {
            store,
            multipart,
            dir,
        }
    }

    /// The same store's uploads under another prefix.
    pub(crate) fn under(self, prefix: Option<&Path>) -> Self {
        Uploads::new(self.store, self.multipart, prefix)
    }

    fn key_part(path: &Path) -> String {
        crate::util::sha256_hex(path.as_ref().as_bytes())[..32].to_string()
    }

    /// The markers whose names start with `name_prefix` (all: ""), with their bodies
    /// (`None`: unreadable) and when they were written. A marker deleted meanwhile (its
    /// upload finished) is left out.
    async fn markers(
        &self,
        name_prefix: &str,
    ) -> object_store::Result<Vec<(Path, SystemTime, Option<Marker>)>> {
        let metas: Vec<_> = self.store.list(Some(&self.dir)).try_collect().await?;
        let mut out = Vec::new();
        for m in metas {
            if !m.location.filename().unwrap_or("").starts_with(name_prefix) {
                continue;
            }
            let body = match self.store.get(&m.location).await {
                Ok(g) => g.bytes().await.ok(),
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            let marker = body.and_then(|b| serde_json::from_slice::<Marker>(&b).ok());
            out.push((m.location, m.last_modified.into(), marker));
        }
        Ok(out)
    }

    /// Abort the upload a marker names, and delete the marker. An upload the server no
    /// longer has (completed or aborted by a writer killed before it deleted its marker)
    /// is fine: S3 answers `NoSuchUpload`, s3s-fs `403 AccessDenied`. A `403` therefore
    /// drops the marker with a warning naming the key (on S3 it can also mean a missing
    /// `s3:AbortMultipartUpload` permission: the bucket lifecycle rule then expires the
    /// upload). Any other failure is an error and the marker stays.
    async fn discard(
        &self,
        marker_path: &Path,
        marker: Option<&Marker>,
    ) -> object_store::Result<()> {
        if let Some(m) = marker {
            let path = Path::from(m.path.as_str());
            match self.multipart.abort_multipart(&path, &m.upload_id).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e @ object_store::Error::PermissionDenied { .. }) => {
                    tracing::warn!(key = %path, error = %e,
                        "abort refused: taken for an upload the server no longer has");
                }
                Err(e) => return Err(e),
            }
        }
        match self.store.delete(marker_path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Abort what dead writers left for `path` (see the module's docs). Uploads of live
    /// writers (a retry racing its first attempt) are left alone.
    async fn clean_key(&self, path: &Path) -> object_store::Result<()> {
        let (host, boot) = host_and_boot();
        let name = format!("{}.", Self::key_part(path));
        for (location, _, marker) in self.markers(&name).await? {
            let Some(marker) = marker else { continue };
            let dead = marker.host == host
                && !host.is_empty()
                && (marker.boot != boot
                    || (marker.pid != std::process::id() && !process_alive(marker.pid)));
            if dead {
                self.discard(&location, Some(&marker)).await?;
            }
        }
        Ok(())
    }

    /// Start a tracked upload of `path`: dead writers' uploads of it are aborted first.
    pub(crate) async fn begin(
        &self,
        path: &Path,
        key: &str,
        label: &str,
        part_size: usize,
        concurrency: usize,
    ) -> Result<TrackedWriter> {
        let err = |e| Error::from_object_store(label.to_string(), e);
        // Cleaning up after dead writers must not stop this write; `clean_staged` retries.
        if let Err(e) = self.clean_key(path).await {
            tracing::warn!(key = %path, error = %e, "could not abort a dead writer's upload");
        }
        let id = self.multipart.create_multipart(path).await.map_err(err)?;
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let (host, boot) = host_and_boot();
        let marker_path = Path::from(format!(
            "{}/{}.{}.{}",
            self.dir,
            Self::key_part(path),
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let marker = Marker {
            path: path.to_string(),
            upload_id: id.clone(),
            host,
            boot,
            pid: std::process::id(),
        };
        let body = serde_json::to_vec(&marker).expect("a marker serialises");
        if let Err(e) = self.store.put(&marker_path, PutPayload::from(body)).await {
            let _ = self.multipart.abort_multipart(path, &id).await;
            return Err(err(e));
        }
        Ok(TrackedWriter {
            uploads: self.clone(),
            path: path.clone(),
            id: Some(id),
            marker: marker_path,
            key: key.to_string(),
            label: label.to_string(),
            part_size,
            concurrency,
            buf: PutPayloadMut::new(),
            next_part: 0,
            parts: Vec::new(),
            tasks: tokio::task::JoinSet::new(),
            bytes: 0,
            hasher: sha2::Sha256::new(),
        })
    }

    /// Every upload a marker names, unfinished.
    pub(crate) async fn list(&self, label: &str) -> Result<Vec<StagedFile>> {
        let markers = self
            .markers("")
            .await
            .map_err(|e| Error::from_object_store(label.to_string(), e))?;
        Ok(markers
            .into_iter()
            .map(|(p, modified, m)| StagedFile {
                path: p.to_string().into(),
                bytes: 0,
                modified,
                upload: m.map(|m| m.path),
            })
            .collect())
    }

    /// Abort the uploads whose markers are older than `older_than`; returns how many.
    pub(crate) async fn clean(&self, older_than: Duration, label: &str) -> Result<usize> {
        let err = |e| Error::from_object_store(label.to_string(), e);
        let now = SystemTime::now();
        let mut n = 0;
        for (p, modified, m) in self.markers("").await.map_err(err)? {
            if now.duration_since(modified).unwrap_or_default() >= older_than {
                self.discard(&p, m.as_ref()).await.map_err(err)?;
                n += 1;
            }
        }
        Ok(n)
    }
}

/// A [`SinkWriter`] on a tracked multipart upload: parts of about `part_size` bytes (the
/// written chunks are kept, not copied), at most `concurrency` in flight.
pub(crate) struct TrackedWriter {
    uploads: Uploads,
    path: Path,
    /// `None` once completed or aborted.
    id: Option<MultipartId>,
    marker: Path,
    key: String,
    label: String,
    part_size: usize,
    concurrency: usize,
    buf: PutPayloadMut,
    next_part: usize,
    parts: Vec<Option<PartId>>,
    tasks: tokio::task::JoinSet<(usize, object_store::Result<PartId>)>,
    bytes: u64,
    hasher: sha2::Sha256,
}

impl TrackedWriter {
    fn err(&self, e: object_store::Error) -> Error {
        Error::from_object_store(self.label.clone(), e)
    }

    fn id(&self) -> &MultipartId {
        self.id.as_ref().expect("writer used after commit or abort")
    }

    /// Wait for one part in flight and keep its id.
    async fn settle_one(&mut self) -> Result<()> {
        let Some(joined) = self.tasks.join_next().await else {
            return Ok(());
        };
        let (idx, r) = joined.map_err(|e| Error::Storage {
            component: self.label.clone().into(),
            message: format!("{}: a part's upload task stopped: {e}", self.key),
            retryable: true,
            source: None,
        })?;
        self.parts[idx] = Some(r.map_err(|e| self.err(e))?);
        Ok(())
    }

    /// Upload the buffered bytes as the next part.
    async fn flush_part(&mut self) -> Result<()> {
        while self.tasks.len() >= self.concurrency {
            self.settle_one().await?;
        }
        let payload = std::mem::take(&mut self.buf).freeze();
        let idx = self.next_part;
        self.next_part += 1;
        self.parts.push(None);
        let (mp, path, id) = (
            self.uploads.multipart.clone(),
            self.path.clone(),
            self.id().clone(),
        );
        self.tasks
            .spawn(async move { (idx, mp.put_part(&path, &id, idx, payload).await) });
        Ok(())
    }
}

#[async_trait]
impl SinkWriter for TrackedWriter {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        self.hasher.update(&data);
        self.bytes += data.len() as u64;
        self.buf.push(data);
        if self.buf.content_length() >= self.part_size {
            self.flush_part().await?;
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<Receipt> {
        if self.buf.content_length() > 0 {
            self.flush_part().await?;
        }
        while !self.tasks.is_empty() {
            self.settle_one().await?;
        }
        let parts: Vec<PartId> = std::mem::take(&mut self.parts)
            .into_iter()
            .map(|p| p.expect("every part settled"))
            .collect();
        let id = self.id().clone();
        let put = self
            .uploads
            .multipart
            .complete_multipart(&self.path, &id, parts)
            .await
            .map_err(|e| self.err(e))?;
        self.id = None;
        // The object is whole at its key; a marker left by a failure here only names a
        // finished upload, which aborting later does not touch.
        let _ = self.uploads.store.delete(&self.marker).await;
        let sha256 = hex::encode(std::mem::take(&mut self.hasher).finalize());
        Ok(Receipt {
            key: self.key.clone(),
            bytes: self.bytes,
            sha256,
            e_tag: put.e_tag,
        })
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        let id = self.id.take().expect("writer used after commit or abort");
        let aborted = self
            .uploads
            .multipart
            .abort_multipart(&self.path, &id)
            .await;
        if aborted.is_ok() {
            let _ = self.uploads.store.delete(&self.marker).await;
        }
        aborted.map_err(|e| self.err(e))
    }
}

impl Drop for TrackedWriter {
    fn drop(&mut self) {
        // Dropped without commit or abort: abort the upload and forget its marker.
        if let Some(id) = self.id.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            self.tasks.abort_all();
            let (uploads, path, marker) =
                (self.uploads.clone(), self.path.clone(), self.marker.clone());
            rt.spawn(async move {
                if uploads.multipart.abort_multipart(&path, &id).await.is_ok() {
                    let _ = uploads.store.delete(&marker).await;
                }
            });
        }
    }
}
