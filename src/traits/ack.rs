//! What [`Extractor::open`](crate::Extractor::open) returns: the batches, and the
//! [`Acker`] through which the pipeline tells the source what is durable.

use crate::{BatchStream, Checkpoint, Result};
use async_trait::async_trait;

/// Told by the pipeline when a checkpoint is durable: every row up to it is in a
/// committed object and the state store has saved it. A PostgreSQL slot, a Kafka
/// consumer group or a binlog heartbeat advances here and nowhere else.
///
/// The pipeline's promise: `committed` is called only after the state store's save
/// returned (or, without a state store, after the objects were committed), with
/// checkpoints in the order they were saved, each different from the one before; never
/// after the run failed or was cancelled; never with a checkpoint that was not saved.
/// An error (slot dropped, consumer group rebalanced away) stops the run; the saved
/// checkpoint stays where it is, and the next run resumes from it.
#[async_trait]
pub trait Acker: Send {
    /// `checkpoint` and everything before it is durable downstream.
    async fn committed(&mut self, checkpoint: &Checkpoint) -> Result<()>;

    /// How many bytes of its log the source still retains for this reader, read after an
    /// acknowledgement (a PostgreSQL slot's lag: the server's WAL position minus the
    /// slot's confirmed one); the pipeline puts it in the [`RunReport`](crate::RunReport)
    /// and [`Progress`](crate::Progress). `None` (the default) where the source has no
    /// such measure.
    async fn retained_bytes(&mut self) -> Option<u64> {
        None
    }
}

#[async_trait]
impl<T: Acker + ?Sized> Acker for Box<T> {
    async fn committed(&mut self, checkpoint: &Checkpoint) -> Result<()> {
        (**self).committed(checkpoint).await
    }

    async fn retained_bytes(&mut self) -> Option<u64> {
        (**self).retained_bytes().await
    }
}

/// An [`Acker`] for sources that keep no position of their own (a table, an API).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoAck;

#[async_trait]
impl Acker for NoAck {
    async fn committed(&mut self, _checkpoint: &Checkpoint) -> Result<()> {
        Ok(())
    }
}

/// An extraction in progress: the batches, and where to acknowledge them.
#[non_exhaustive]
pub struct Extraction {
    /// The batches, each with the checkpoint it reaches.
    pub batches: BatchStream,
    /// Told what became durable.
    pub acker: Box<dyn Acker>,
}

impl Extraction {
    /// Batches with nothing to acknowledge ([`NoAck`]).
    pub fn new(batches: BatchStream) -> Self {
        Extraction {
            batches,
            acker: Box::new(NoAck),
        }
    }

    /// Batches whose checkpoints go to `acker` once durable.
    pub fn with_acker(batches: BatchStream, acker: impl Acker + 'static) -> Self {
        Extraction {
            batches,
            acker: Box::new(acker),
        }
    }
}

impl std::fmt::Debug for Extraction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extraction").finish_non_exhaustive()
    }
}
