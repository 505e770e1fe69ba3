//! [`MemoryExtractor`]: batches held in memory, for tests, examples and the conformance
//! suites.

use crate::{Batch, BatchStream, Checkpoint, Extractor, Result};
use async_trait::async_trait;
use futures::StreamExt;

/// Replays a fixed list of batches. With a `from` checkpoint it skips every batch up to
/// and including the one that carries that checkpoint, so it resumes like a real source.
#[derive(Debug, Clone)]
pub struct MemoryExtractor {
    source: String,
    stream: String,
    batches: Vec<Batch>,
}

impl MemoryExtractor {
    /// Batches to replay under `source`/`stream`.
    pub fn new(source: impl Into<String>, stream: impl Into<String>, batches: Vec<Batch>) -> Self {
        MemoryExtractor {
            source: source.into(),
            stream: stream.into(),
            batches,
        }
    }
}

#[async_trait]
impl Extractor for MemoryExtractor {
    fn source(&self) -> &str {
        &self.source
    }

    fn stream(&self) -> &str {
        &self.stream
    }

    async fn extract(&self, from: Option<Checkpoint>) -> Result<BatchStream> {
        let skip = match &from {
            Some(cp) => self
                .batches
                .iter()
                .position(|b| b.checkpoint.as_ref() == Some(cp))
                .map_or(0, |i| i + 1),
            None => 0,
        };
        let batches: Vec<Result<Batch>> = self.batches[skip..].iter().cloned().map(Ok).collect();
        Ok(futures::stream::iter(batches).boxed())
    }
}
