//! State stores: where a pipeline keeps its checkpoint between runs.

use super::ObjectSink;
use crate::{Checkpoint, Error, Leftover, Result, Sink};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Debug;

/// What a pipeline saves after each commit, and before each commit what that commit
/// may leave behind.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PipelineState {
    /// The position up to which data is committed (`None`: none yet, the first run's
    /// first objects are being committed).
    pub checkpoint: Option<Checkpoint>,
    /// Objects whose commit began after `checkpoint` was saved, and the manifest that may
    /// list them. Their rows are read again from `checkpoint`, so the next run removes
    /// them first ([`BatchSink::discard`](crate::BatchSink::discard)): a reader of the
    /// store sees each row once per saved checkpoint. Empty once the checkpoint covering
    /// them is saved.
    #[serde(default, skip_serializing_if = "Leftover::is_empty")]
    pub leftover: Leftover,
    /// The run that saved it.
    pub run_id: String,
    /// The next part number of that run, so a retry of the same run never reuses a key.
    pub next_part: u32,
    /// Epoch manifests that run had written (unbounded streams), so a retry of the same
    /// run continues their numbering instead of overwriting them.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub epochs: u64,
    /// When it was saved.
    pub updated_at: DateTime<Utc>,
    /// The schema of every table committed up to `checkpoint`, as landed: handed back to
    /// the extractor on resume ([`ExtractContext::schemas`](crate::ExtractContext::schemas)) and compared with the
    /// next run's rows to find schema changes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub schemas: BTreeMap<String, arrow_schema::Schema>,
}

impl PipelineState {
    /// The state of run `run_id` committed up to `checkpoint`, saved now: part 0 next,
    /// nothing left over, no schemas.
    pub fn new(checkpoint: Option<Checkpoint>, run_id: impl Into<String>) -> Self {
        PipelineState {
            checkpoint,
            run_id: run_id.into(),
            updated_at: Utc::now(),
            ..PipelineState::default()
        }
    }

    /// What the commit under way may leave behind.
    pub fn with_leftover(mut self, leftover: Leftover) -> Self {
        self.leftover = leftover;
        self
    }

    /// The next part number of the run.
    pub fn with_next_part(mut self, next_part: u32) -> Self {
        self.next_part = next_part;
        self
    }

    /// Epoch manifests the run had written.
    pub fn with_epochs(mut self, epochs: u64) -> Self {
        self.epochs = epochs;
        self
    }

    /// When it was saved.
    pub fn with_updated_at(mut self, at: DateTime<Utc>) -> Self {
        self.updated_at = at;
        self
    }

    /// The schema of every table committed up to the checkpoint.
    pub fn with_schemas(mut self, schemas: BTreeMap<String, arrow_schema::Schema>) -> Self {
        self.schemas = schemas;
        self
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A saved value and its version, for conditional updates.
#[derive(Clone, Debug, PartialEq)]
pub struct Versioned<T> {
    /// Increases by one with every save, starting at 1.
    pub version: u64,
    /// The value.
    pub value: T,
}

/// Keeps one [`PipelineState`] per pipeline name, with optimistic concurrency: a save
/// names the version it read, and fails with [`Error::Conflict`] if another runner saved
/// in between, so two runners can never both advance one checkpoint.
#[async_trait]
pub trait StateStore: Debug + Send + Sync + 'static {
    /// Where the state lives, for logs (no secrets).
    fn describe(&self) -> String;

    /// The latest saved state, if any.
    async fn load(&self, pipeline: &str) -> Result<Option<Versioned<PipelineState>>>;

    /// Save `state` if the latest version is still `expected` (`None`: nothing saved yet).
    /// Returns the new version.
    async fn save(
        &self,
        pipeline: &str,
        expected: Option<u64>,
        state: &PipelineState,
    ) -> Result<u64>;

    /// Forget `pipeline`'s state, so that its next run starts from the beginning (see
    /// [`Pipeline::reset`](crate::Pipeline::reset)). Not while a run of it is going: a
    /// runner that loaded the old state could save over the reset. The default refuses
    /// with [`Error::Config`]; the stores of this crate implement it.
    async fn delete(&self, pipeline: &str) -> Result<()> {
        Err(Error::config(
            "state",
            format!(
                "{} cannot delete the state of {pipeline:?}",
                self.describe()
            ),
        ))
    }
}

crate::traits::forward_impls!(StateStore {
    fn describe(&self) -> String;
} {
    async fn load(&self, pipeline: &str) -> Result<Option<Versioned<PipelineState>>> => (pipeline);
    async fn save(&self, pipeline: &str, expected: Option<u64>, state: &PipelineState) -> Result<u64> => (pipeline, expected, state);
    async fn delete(&self, pipeline: &str) -> Result<()> => (pipeline);
});

/// A [`StateStore`] on an object store: each save creates a new object
/// `{prefix}/{pipeline}/{version:020}.json` with a create-if-absent put, so of two
/// runners saving the same next version only one succeeds. Works on local folders,
/// memory, S3 (`If-None-Match`), GCS and Azure. Keeps the last `keep` versions (default
/// 10) as a history.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use tributary::{Checkpoint, Error, stores::{ObjectSink, ObjectStateStore, PipelineState, StateStore}};
/// let state = ObjectStateStore::new(ObjectSink::memory(), "_state");
/// let s = PipelineState::new(Some(Checkpoint::Lsn { lsn: 42 }), "r1").with_next_part(1);
/// let v1 = state.save("orders", None, &s).await?;
/// assert!(matches!(state.save("orders", None, &s).await, Err(Error::Conflict { .. })));
/// let v2 = state.save("orders", Some(v1), &s).await?;
/// assert_eq!(state.load("orders").await?.unwrap().version, v2);
/// # Ok::<(), tributary::Error>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct ObjectStateStore {
    store: ObjectSink,
    prefix: String,
    keep: u64,
}

impl ObjectStateStore {
    /// State objects go under `prefix` in `store`.
    pub fn new(store: ObjectSink, prefix: impl Into<String>) -> Self {
        ObjectStateStore {
            store,
            prefix: prefix.into().trim_matches('/').to_string(),
            keep: 10,
        }
    }

    /// How many versions to keep (at least 1).
    pub fn with_keep(mut self, keep: u64) -> Self {
        self.keep = keep.max(1);
        self
    }

    fn dir(&self, pipeline: &str) -> Result<String> {
        if pipeline.is_empty() || pipeline.contains(['/', '#']) {
            return Err(Error::config(
                "state",
                format!("pipeline name {pipeline:?} cannot contain '/' or '#'"),
            ));
        }
        Ok(if self.prefix.is_empty() {
            pipeline.to_string()
        } else {
            format!("{}/{pipeline}", self.prefix)
        })
    }

    async fn versions(&self, pipeline: &str) -> Result<Vec<(u64, String)>> {
        let dir = self.dir(pipeline)?;
        let keys = match self.store.list(&dir).await {
            Ok(k) => k,
            Err(Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut out: Vec<(u64, String)> = keys
            .into_iter()
            .filter_map(|k| {
                let name = k.rsplit('/').next()?;
                let v = name.strip_suffix(".json")?.parse().ok()?;
                Some((v, k))
            })
            .collect();
        out.sort();
        Ok(out)
    }
}

#[async_trait]
impl StateStore for ObjectStateStore {
    fn describe(&self) -> String {
        format!("{}/{}", self.store.describe(), self.prefix)
    }

    async fn load(&self, pipeline: &str) -> Result<Option<Versioned<PipelineState>>> {
        let Some((version, key)) = self.versions(pipeline).await?.pop() else {
            return Ok(None);
        };
        let bytes = self.store.read(&key).await?;
        let value = serde_json::from_slice(&bytes).map_err(|e| {
            Error::type_error(
                "state",
                format!("state object {key} is not a valid pipeline state: {e}"),
            )
        })?;
        Ok(Some(Versioned { version, value }))
    }

    async fn save(
        &self,
        pipeline: &str,
        expected: Option<u64>,
        state: &PipelineState,
    ) -> Result<u64> {
        let version = expected.unwrap_or(0) + 1;
        let key = format!("{}/{version:020}.json", self.dir(pipeline)?);
        let body = serde_json::to_vec_pretty(state).expect("state serializes");
        self.store.put_if_absent(&key, body.into()).await.map_err(|e| match e {
            Error::Conflict {
                component, source, ..
            } => Error::Conflict {
                component,
                message: format!(
                    "state of pipeline {pipeline:?} was saved by another runner (version {version} exists); \
                     reload and retry"
                ),
                source,
            },
            other => other,
        })?;
        // Prune old versions, best effort: a failure here loses only history.
        if version > self.keep {
            for (v, k) in self.versions(pipeline).await.unwrap_or_default() {
                if v + self.keep <= version {
                    let _ = self.store.delete(&k).await;
                }
            }
        }
        Ok(version)
    }

    async fn delete(&self, pipeline: &str) -> Result<()> {
        for (_, key) in self.versions(pipeline).await? {
            self.store.delete(&key).await?;
        }
        Ok(())
    }
}
