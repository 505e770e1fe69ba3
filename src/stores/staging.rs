//! Where a local folder's objects are written before they appear: a hidden folder
//! `.tributary-staging/` at the store's root, away from the final keys, so that a folder or
//! glob reader (`*.csv`, Spark, DuckDB) never reads a half-written or abandoned file as
//! data. A committed object is fsynced there and renamed into place (the rename and its
//! folder are fsynced too); a crash leaves at most a file in this folder.

use crate::{Error, Result};
use object_store::path::Path;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// The staging folder's name, at the root of a local store.
pub const STAGING_DIR: &str = ".tributary-staging";

/// A file left in a store's staging folder by a write that never committed (a crash, a
/// kill, a power loss), or on a cloud store an unfinished multipart upload. Listed by [`ObjectSink::list_staged`](super::ObjectSink::list_staged).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StagedFile {
    /// Its path on disk.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// When it was last written.
    pub modified: SystemTime,
    /// For an unfinished multipart upload on a cloud store, the object it was writing
    /// (`path` is then its marker object, `bytes` 0: the parts are not listed).
    pub upload: Option<String>,
}

/// The staging area of one local store.
#[derive(Clone, Debug)]
pub(crate) struct Staging {
    dir: PathBuf,
}

impl Staging {
    /// The staging area of the local store rooted at `root`.
    pub(crate) fn new(root: &std::path::Path) -> Self {
        Staging {
            dir: root.join(STAGING_DIR),
        }
    }

    /// The part of a staging name that is the same on every write of `final_path`.
    fn key_part(final_path: &Path) -> String {
        crate::util::sha256_hex(final_path.as_ref().as_bytes())[..32].to_string()
    }

    /// Where one write of the object at `final_path` goes before it is renamed into
    /// place: `{key hash}.{pid}.{n}`, unique per writer (two writers of one key, such as a
    /// retry racing its first attempt, never share a file), and naming the process, so
    /// that a later write of the same key can tell a dead process's leftovers.
    pub(crate) fn path_for(&self, final_path: &Path) -> Path {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        Path::from(format!(
            "{STAGING_DIR}/{}.{}.{n}",
            Self::key_part(final_path),
            std::process::id()
        ))
    }

    /// Where a path from [`Staging::path_for`] is on disk.
    pub(crate) fn on_disk(&self, staged: &Path) -> PathBuf {
        let name = staged.filename().unwrap_or_default();
        self.dir.join(name)
    }

    /// Remove what earlier writes of the same key left when their process died (a crash
    /// or kill mid-object): staged files and the store's `name#N` upload files. Files of
    /// live processes, this one included, are left alone.
    pub(crate) fn clean_key(&self, final_path: &Path) {
        let prefix = format!("{}.", Self::key_part(final_path));
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(prefix.as_str())) else {
                continue;
            };
            let pid = rest.split('.').next().and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(|p| p != std::process::id() && !process_alive(p)) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// Every file in the staging folder.
    pub(crate) fn list(&self) -> Result<Vec<StagedFile>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&self.dir, e)),
        };
        let mut out = Vec::new();
        for e in entries {
            let e = e.map_err(|e| io_err(&self.dir, e))?;
            let meta = e.metadata().map_err(|err| io_err(&e.path(), err))?;
            if meta.is_file() {
                out.push(StagedFile {
                    path: e.path(),
                    bytes: meta.len(),
                    modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    upload: None,
                });
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Delete the staged files not written to for `older_than`; returns how many.
    pub(crate) fn clean(&self, older_than: Duration) -> Result<usize> {
        let now = SystemTime::now();
        let mut n = 0;
        for f in self.list()? {
            let age = now.duration_since(f.modified).unwrap_or_default();
            if age >= older_than {
                match std::fs::remove_file(&f.path) {
                    Ok(()) => n += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(&f.path, e)),
                }
            }
        }
        Ok(n)
    }
}

fn io_err(path: &std::path::Path, e: std::io::Error) -> Error {
    Error::Storage {
        component: "file".into(),
        message: format!("staging folder {}: {e}", path.display()),
        retryable: false,
        source: Some(Box::new(e)),
    }
}

/// Whether process `pid` is running. Where that cannot be known (no `/proc`), it is taken
/// to be running: a leftover is then removed only by [`Staging::clean`].
pub(crate) fn process_alive(pid: u32) -> bool {
    let proc = std::path::Path::new("/proc");
    !proc.is_dir() || proc.join(pid.to_string()).exists()
}
