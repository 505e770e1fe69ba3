//! Retries in one place: [`RetryPolicy`] says how often and how long to wait, and the
//! one retry loop ([`Attempts`]) follows it for the pipeline's attempts, the REST
//! client's requests and the [`Retry`] wrapper, which gives the policy to any
//! [`Extractor`] or [`BatchSink`].
//!
//! Only an error whose [`Error::is_retryable`] says so is tried again. One that is still
//! failing when the policy's retries are spent comes back as
//! [`Error::RetriesExhausted`]: persistent, so an outer layer (the pipeline around a
//! wrapped sink, a run around a REST request) does not retry it a second time over.
//!
//! ```
//! use std::time::Duration;
//! use tributary::{Retry, RetryPolicy};
//! use tributary::stores::MemoryBatchSink;
//!
//! let sink = Retry::new(
//!     MemoryBatchSink::new(),
//!     RetryPolicy::new(3).with_base(Duration::from_millis(100)),
//! );
//! assert_eq!(sink.policy().max_retries(), 3);
//! ```

use crate::format::Format;
use crate::model::EncodedStream;
use crate::stores::PipelineState;
use crate::traits::{
    BatchSink, BatchTarget, BatchWriter, ExtractContext, Extraction, Extractor,
    ExtractorCapabilities, Leftover, ObjectReport, Plan, SinkCapabilities,
};
use crate::{Error, Result};
use crate::{Manifest, RunReport};
use async_trait::async_trait;
use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often a temporary failure is tried again, and how long to wait between: an
/// exponential backoff with full jitter (`base × 2^n`, a random wait up to that, at most
/// `max_wait`); a server's own hint (HTTP `Retry-After`) is waited instead, also at most
/// `max_wait`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    max_retries: u32,
    base: Duration,
    max_wait: Duration,
}

impl Default for RetryPolicy {
    /// Five retries, from 250 ms, waiting at most a minute.
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            base: Duration::from_millis(250),
            max_wait: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// `max_retries` retries after the first try, otherwise the defaults.
    pub fn new(max_retries: u32) -> Self {
        RetryPolicy {
            max_retries,
            ..RetryPolicy::default()
        }
    }

    /// No retries: the first failure is the answer.
    pub fn none() -> Self {
        RetryPolicy::new(0)
    }

    /// Retries after the first try.
    pub fn with_max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// The first backoff (default 250 ms); each retry doubles it.
    pub fn with_base(mut self, base: Duration) -> Self {
        self.base = base;
        self
    }

    /// The longest wait, a server's hint included (default 60 s).
    pub fn with_max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }

    /// Retries after the first try.
    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// The first backoff.
    pub fn base(&self) -> Duration {
        self.base
    }

    /// The longest wait.
    pub fn max_wait(&self) -> Duration {
        self.max_wait
    }

    /// The wait before retry `n` (1 for the first): `hint` if the server gave one, else a
    /// random wait up to `base × 2^(n-1)`; never more than `max_wait`.
    pub fn delay(&self, n: u32, hint: Option<Duration>) -> Duration {
        match hint {
            Some(h) => h.min(self.max_wait),
            None => jitter(
                self.base
                    .saturating_mul(2u32.saturating_pow(n.saturating_sub(1)))
                    .min(self.max_wait),
            ),
        }
    }

    /// Start counting the tries of `operation` (named in the error when they run out).
    pub(crate) fn attempts(&self, operation: impl Into<String>) -> Attempts<'_> {
        Attempts {
            policy: self,
            operation: operation.into(),
            tries: 1,
        }
    }

    /// Run `f` until it succeeds, fails with an error that is not retryable, or the
    /// retries are spent.
    pub(crate) async fn run<R, F, Fut>(&self, operation: &str, mut f: F) -> Result<R>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<R>>,
    {
        let mut attempts = self.attempts(operation);
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) => attempts.failed(e, None, &[]).await?,
            }
        }
    }
}

/// The one retry loop: count a failure, then either wait for the next try or give the
/// final error back.
pub(crate) struct Attempts<'a> {
    policy: &'a RetryPolicy,
    operation: String,
    tries: u32,
}

impl Attempts<'_> {
    /// Tries made so far, the one under way included.
    pub(crate) fn tries(&self) -> u32 {
        self.tries
    }

    /// The try under way failed with `error`. `Ok(())` after waiting when it is worth another try; else
    /// the final error: `error` itself when it is not retryable or nothing was retried,
    /// [`Error::RetriesExhausted`] when retries were spent on it, [`Error::Cancelled`]
    /// when one of `cancel` fired during the wait.
    pub(crate) async fn failed(
        &mut self,
        error: Error,
        hint: Option<Duration>,
        cancel: &[&CancellationToken],
    ) -> Result<()> {
        // A run being stopped or cancelled is not retried: its error is the answer.
        if !error.is_retryable() || cancel.iter().any(|c| c.is_cancelled()) {
            return Err(error);
        }
        if self.tries > self.policy.max_retries {
            return Err(if self.tries > 1 {
                Error::RetriesExhausted {
                    operation: self.operation.clone(),
                    attempts: self.tries,
                    last: Box::new(error),
                }
            } else {
                error
            });
        }
        let wait = self.policy.delay(self.tries, hint);
        tracing::warn!(operation = %self.operation, attempt = self.tries, error = %error,
            "retryable failure; trying again in {wait:?}");
        self.tries += 1;
        let cancelled = async {
            if cancel.is_empty() {
                std::future::pending::<()>().await;
            }
            futures::future::select_all(cancel.iter().map(|c| Box::pin(c.cancelled()))).await;
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => Ok(()),
            _ = cancelled => Err(Error::Cancelled),
        }
    }
}

/// A random wait in `[0, max)`, from the clock: spreads retries without an RNG crate.
fn jitter(max: Duration) -> Duration {
    let mut x = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    let nanos = max.as_nanos().max(1) as u64;
    Duration::from_nanos(x % nanos)
}

/// Any [`Extractor`] or [`BatchSink`] with a [`RetryPolicy`]: each call that fails with
/// a retryable error is made again, up to the policy's retries, and then fails with
/// [`Error::RetriesExhausted`].
///
/// What is retried is each call that can safely be made twice: an extractor's `check`,
/// `plan`, `open` and `open_encoded`; a sink's `check`, `begin`, `write_manifest`,
/// `discard`, `commit_state`, `load_state` and `delete_state`. A stream that breaks
/// after it opened, or a writer whose append failed, is not resumed here: the pipeline
/// starts its next attempt from the last saved checkpoint
/// ([`PipelineOptions::with_retry`](crate::PipelineOptions::with_retry)), which is the
/// only place that knows what was committed.
#[derive(Clone, Debug)]
pub struct Retry<T> {
    inner: T,
    policy: RetryPolicy,
}

impl<T> Retry<T> {
    /// `inner`, retried as `policy` says.
    pub fn new(inner: T, policy: RetryPolicy) -> Self {
        Retry { inner, policy }
    }

    /// The wrapped extractor or sink.
    pub fn inner(&self) -> &T {
        &self.inner
    }

    /// The policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// The wrapped extractor or sink, unwrapped.
    pub fn into_inner(self) -> T {
        self.inner
    }
}

#[async_trait]
impl<E: Extractor> Extractor for Retry<E> {
    fn source(&self) -> &str {
        self.inner.source()
    }

    fn stream(&self) -> &str {
        self.inner.stream()
    }

    fn capabilities(&self) -> ExtractorCapabilities {
        self.inner.capabilities()
    }

    async fn check(&self) -> Result<()> {
        self.policy.run("check", || self.inner.check()).await
    }

    async fn open(&self, cx: ExtractContext) -> Result<Extraction> {
        self.policy
            .run("open", || self.inner.open(cx.clone()))
            .await
    }

    async fn open_encoded(
        &self,
        cx: ExtractContext,
        format: &dyn Format,
    ) -> Result<Option<EncodedStream>> {
        self.policy
            .run("open_encoded", || {
                self.inner.open_encoded(cx.clone(), format)
            })
            .await
    }

    async fn plan(&self, cx: &ExtractContext) -> Result<Option<Plan>> {
        self.policy.run("plan", || self.inner.plan(cx)).await
    }
}

#[async_trait]
impl<S: BatchSink> BatchSink for Retry<S> {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn format(&self) -> Option<&dyn Format> {
        self.inner.format()
    }

    fn capabilities(&self) -> SinkCapabilities {
        self.inner.capabilities()
    }

    async fn check(&self) -> Result<()> {
        self.policy.run("check", || self.inner.check()).await
    }

    async fn begin(&self, target: &BatchTarget) -> Result<Box<dyn BatchWriter>> {
        self.policy.run("begin", || self.inner.begin(target)).await
    }

    async fn write_manifest(&self, key: &str, manifest: &Manifest) -> Result<()> {
        self.policy
            .run("write_manifest", || {
                self.inner.write_manifest(key, manifest)
            })
            .await
    }

    fn manifest_key(&self, report: &RunReport) -> Result<Option<String>> {
        self.inner.manifest_key(report)
    }

    async fn discard(&self, leftover: &Leftover) -> Result<()> {
        self.policy
            .run("discard", || self.inner.discard(leftover))
            .await
    }

    async fn commit_state(
        &self,
        pipeline: &str,
        units: &[ObjectReport],
        state: &PipelineState,
    ) -> Result<()> {
        self.policy
            .run("commit_state", || {
                self.inner.commit_state(pipeline, units, state)
            })
            .await
    }

    async fn load_state(&self, pipeline: &str) -> Result<Option<PipelineState>> {
        self.policy
            .run("load_state", || self.inner.load_state(pipeline))
            .await
    }

    async fn delete_state(&self, pipeline: &str) -> Result<()> {
        self.policy
            .run("delete_state", || self.inner.delete_state(pipeline))
            .await
    }
}
