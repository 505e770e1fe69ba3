use crate::Result;
use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::fmt::Debug;

/// Where one object goes: its final key and content type.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ObjectTarget {
    /// The final key (path inside the store), e.g. `sqlite/Orders/dt=2026-11-22/r1-00000.csv`.
    pub key: String,
    /// MIME type, e.g. `text/csv`.
    pub content_type: String,
}

impl ObjectTarget {
    /// A target at `key` with `content_type`.
    pub fn new(key: impl Into<String>, content_type: impl Into<String>) -> Self {
        ObjectTarget {
            key: key.into(),
            content_type: content_type.into(),
        }
    }
}

/// What a committed object is: its key, size and checksum.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Receipt {
    /// The final key.
    pub key: String,
    /// Bytes written.
    pub bytes: u64,
    /// SHA-256 of the bytes written, lowercase hex.
    pub sha256: String,
    /// The store's entity tag, when it returns one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e_tag: Option<String>,
}

impl Receipt {
    /// `bytes` bytes committed at `key`, whose SHA-256 is `sha256` (lowercase hex).
    pub fn new(key: impl Into<String>, bytes: u64, sha256: impl Into<String>) -> Self {
        Receipt {
            key: key.into(),
            bytes,
            sha256: sha256.into(),
            e_tag: None,
        }
    }

    /// The store's entity tag.
    pub fn with_e_tag(mut self, e_tag: impl Into<String>) -> Self {
        self.e_tag = Some(e_tag.into());
        self
    }
}

/// Where data lands: an object store, a folder, a warehouse loader.
///
/// A sink opens one [`SinkWriter`] per object. Nothing may be visible at the final key
/// until [`SinkWriter::commit`] returns `Ok`; [`SinkWriter::abort`], dropping the writer,
/// or a crash must leave nothing there. The conformance suite in
/// [`testing`](crate::testing) (feature `test-util`) checks these rules for any sink.
///
/// ```
/// use tributary::{ObjectTarget, Sink, stores::ObjectSink};
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let sink = ObjectSink::memory();
/// let mut w = sink.open(&ObjectTarget::new("a/b.csv", "text/csv")).await?;
/// w.write(bytes::Bytes::from_static(b"1|x\n")).await?;
/// assert!(sink.read("a/b.csv").await.is_err()); // not visible before commit
/// let receipt = w.commit().await?;
/// assert_eq!(receipt.bytes, 4);
/// assert_eq!(&sink.read("a/b.csv").await?[..], b"1|x\n");
/// # Ok::<(), tributary::Error>(()) }).unwrap();
/// ```
#[async_trait]
pub trait Sink: Debug + Send + Sync + 'static {
    /// A short description of where data lands (`file:///data`, `s3://bucket/prefix`), for
    /// logs and run history. Must not contain secrets.
    fn describe(&self) -> String;

    /// Check that the sink is reachable and usable (bucket exists, credentials work),
    /// without writing anything. The pipeline calls it before extracting, so a bad
    /// store fails a run before any source work. The default does nothing.
    async fn check(&self) -> Result<()> {
        Ok(())
    }

    /// Start writing one object.
    async fn open(&self, target: &ObjectTarget) -> Result<Box<dyn SinkWriter>>;

    /// Read a committed object whole.
    async fn read(&self, key: &str) -> Result<Bytes>;

    /// Delete a committed object; one already gone is no error. The pipeline removes
    /// with it what a stopped run committed past its last saved checkpoint.
    async fn delete(&self, key: &str) -> Result<()>;
}

/// One object being written. See [`Sink`] for the visibility rules.
#[async_trait]
pub trait SinkWriter: Send {
    /// Append bytes. May upload in the background; memory stays bounded.
    async fn write(&mut self, data: Bytes) -> Result<()>;

    /// Make the object visible at its final key, whole.
    async fn commit(self: Box<Self>) -> Result<Receipt>;

    /// Discard everything written; nothing appears at the final key.
    async fn abort(self: Box<Self>) -> Result<()>;
}

super::forward::forward_impls!(Sink {
    fn describe(&self) -> String;
} {
    async fn check(&self) -> Result<()> => ();
    async fn open(&self, target: &ObjectTarget) -> Result<Box<dyn SinkWriter>> => (target);
    async fn read(&self, key: &str) -> Result<Bytes> => (key);
    async fn delete(&self, key: &str) -> Result<()> => (key);
});
