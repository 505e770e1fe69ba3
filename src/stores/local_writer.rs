//! The writer of one object on a local folder: a blocking thread appends the bytes to a
//! file in the staging folder and flushes them to disk as it goes, so that the fsync a
//! commit needs waits only for the last few megabytes instead of the whole object.
//!
//! `object_store`'s local multipart upload writes the staged file and syncs all of it at
//! completion: on a 160 MiB object that one flush was most of the gap to `mariadb
//! --quick` (BENCHMARKS.md). Here every [`WRITEBACK_BYTES`] written are flushed with
//! `fdatasync` on the writer thread while the pipeline goes on encoding, and the SHA-256
//! of the receipt is computed on that thread too.

use super::staging::Staging;
use crate::{Error, Receipt, Result, SinkWriter};
use async_trait::async_trait;
use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use sha2::Digest;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Bytes written between two flushes to disk.
const WRITEBACK_BYTES: u64 = 8 * 1024 * 1024;

/// What the writer thread hands back once the channel closes: the byte count and hash,
/// with every byte on disk.
type Written = std::io::Result<(u64, String)>;

/// A [`SinkWriter`] on a staged local file (see the module's docs). Bytes are buffered to
/// `part_size` and at most `concurrency` buffers wait for the thread, as with a multipart
/// upload.
pub(crate) struct LocalWriter {
    store: Arc<dyn ObjectStore>,
    /// `(staged, final)` paths in the store: renamed into place on commit.
    staged: Path,
    dest: Path,
    /// The staged file on disk, removed on abort or drop.
    file: Option<PathBuf>,
    tx: Option<mpsc::Sender<Vec<Bytes>>>,
    /// The thread's outcome, sent when it ends (a closed channel: it panicked).
    thread: Option<oneshot::Receiver<Written>>,
    buf: Vec<Bytes>,
    buffered: usize,
    part_size: usize,
    key: String,
    label: String,
}

impl LocalWriter {
    /// Create a staged file in `staging` for the object at `dest`.
    pub(crate) fn create(
        store: Arc<dyn ObjectStore>,
        staging: &Staging,
        dest: Path,
        key: &str,
        label: &str,
        part_size: usize,
        concurrency: usize,
    ) -> Result<Self> {
        let staged = staging.path_for(&dest);
        let file = staging.on_disk(&staged);
        let io = |e: std::io::Error| staging_err(label, &file, e);
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&file)
            .map_err(io)?;
        let (tx, rx) = mpsc::channel(concurrency.max(1));
        // A thread of its own rather than the runtime's blocking pool: a writer leaked
        // without being dropped (`mem::forget`, as a crash test does) leaves a parked
        // thread behind, where a blocking-pool task would hold up the runtime's shutdown.
        let (done_tx, done_rx) = oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("tributary-file-writer".into())
            .spawn(move || {
                let _ = done_tx.send(write_all(f, rx));
            });
        if let Err(e) = spawned {
            // No thread, no writer: the empty file goes too.
            let _ = std::fs::remove_file(&file);
            return Err(io(e));
        }
        let thread = done_rx;
        Ok(LocalWriter {
            store,
            staged,
            dest,
            file: Some(file),
            tx: Some(tx),
            thread: Some(thread),
            buf: Vec::new(),
            buffered: 0,
            part_size: part_size.max(1),
            key: key.to_string(),
            label: label.to_string(),
        })
    }

    fn err(&self, e: object_store::Error) -> Error {
        Error::from_object_store(self.label.clone(), e)
    }

    /// Hand the buffered bytes to the thread; a closed channel means the thread failed,
    /// and its error is what the caller sees.
    async fn send(&mut self) -> Result<()> {
        let part = std::mem::take(&mut self.buf);
        self.buffered = 0;
        let tx = self.tx.as_ref().expect("writer used after commit or abort");
        if tx.send(part).await.is_err() {
            return Err(self.finish().await.err().unwrap_or_else(|| self.stopped()));
        }
        Ok(())
    }

    /// Close the channel and wait for the thread: every byte written and on disk.
    async fn finish(&mut self) -> Result<(u64, String)> {
        self.tx = None;
        let thread = self
            .thread
            .take()
            .expect("writer used after commit or abort");
        let file = self.file.clone().unwrap_or_default();
        match thread.await {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(e)) => Err(staging_err(&self.label, &file, e)),
            Err(_) => Err(self.stopped()),
        }
    }

    fn stopped(&self) -> Error {
        Error::Storage {
            component: self.label.clone().into(),
            message: format!("{}: the file writer thread stopped", self.key),
            retryable: true,
            source: None,
        }
    }
}

/// The writer thread: append each part, flush every [`WRITEBACK_BYTES`], and flush the
/// rest (data and size) once the sender is gone.
fn write_all(mut f: std::fs::File, mut rx: mpsc::Receiver<Vec<Bytes>>) -> Written {
    let mut hasher = sha2::Sha256::new();
    let (mut bytes, mut unsynced) = (0u64, 0u64);
    while let Some(part) = rx.blocking_recv() {
        for b in part {
            hasher.update(&b);
            f.write_all(&b)?;
            bytes += b.len() as u64;
            unsynced += b.len() as u64;
        }
        if unsynced >= WRITEBACK_BYTES {
            f.sync_data()?;
            unsynced = 0;
        }
    }
    f.sync_all()?;
    Ok((bytes, hex::encode(hasher.finalize())))
}

fn staging_err(label: &str, file: &std::path::Path, e: std::io::Error) -> Error {
    let message = format!("staged file {}: {e}", file.display());
    Error::from_local_io(label.to_string(), message, e)
}

#[async_trait]
impl SinkWriter for LocalWriter {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        self.buffered += data.len();
        self.buf.push(data);
        if self.buffered >= self.part_size {
            self.send().await?;
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<Receipt> {
        if !self.buf.is_empty() {
            self.send().await?;
        }
        let (bytes, sha256) = self.finish().await?;
        // Whole and on disk from here: if the rename fails, the file stays in the staging
        // folder for `list_staged` and `clean_staged`, never at the final key.
        self.file = None;
        // The store's rename fsyncs the folder it lands in.
        self.store
            .rename(&self.staged, &self.dest)
            .await
            .map_err(|e| self.err(e))?;
        let e_tag = match self.store.head(&self.dest).await {
            Ok(meta) => meta.e_tag,
            Err(e) => return Err(self.err(e)),
        };
        Ok(Receipt {
            key: self.key.clone(),
            bytes,
            sha256,
            e_tag,
        })
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        self.buf.clear();
        // The thread's own failure does not matter: the file goes either way.
        let _ = self.finish().await;
        if let Some(file) = self.file.take() {
            match std::fs::remove_file(&file) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(staging_err(&self.label, &file, e)),
            }
        }
        Ok(())
    }
}

impl Drop for LocalWriter {
    fn drop(&mut self) {
        // Dropped without commit or abort: stop the thread and remove the staged file.
        self.tx = None;
        let Some(file) = self.file.take() else { return };
        match (self.thread.take(), tokio::runtime::Handle::try_current()) {
            (Some(thread), Ok(rt)) => drop(rt.spawn(async move {
                let _ = thread.await;
                let _ = std::fs::remove_file(file);
            })),
            _ => drop(std::fs::remove_file(file)),
        }
    }
}
