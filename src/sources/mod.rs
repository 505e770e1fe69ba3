//! Extractors, one module per source, each behind its own cargo feature.

mod memory;
pub use memory::{ChangeEvent, MemoryChangeStream, MemoryExtractor};

/// A stream over a channel of batches (for sources that produce in a task of their own).
#[cfg(any(feature = "sql", feature = "rest", feature = "mongodb"))]
pub(crate) fn channel_stream(
    mut rx: tokio::sync::mpsc::Receiver<crate::Result<crate::Batch>>,
) -> crate::BatchStream {
    use futures::StreamExt;
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}

#[cfg(feature = "sql")]
#[cfg_attr(
    docsrs,
    doc(cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql")))
)]
pub mod sql;

#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub mod sqlite;

#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;

#[cfg(feature = "mysql")]
#[cfg_attr(docsrs, doc(cfg(feature = "mysql")))]
pub mod mysql;

#[cfg(any(feature = "mysql-cdc", feature = "postgres-cdc"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "mysql-cdc", feature = "postgres-cdc"))))]
pub mod cdc;

#[cfg(feature = "mysql-cdc")]
#[cfg_attr(docsrs, doc(cfg(feature = "mysql-cdc")))]
pub mod mysql_cdc;

#[cfg(feature = "postgres-cdc")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres-cdc")))]
pub mod postgres_cdc;

#[cfg(feature = "rest")]
#[cfg_attr(docsrs, doc(cfg(feature = "rest")))]
pub mod rest;

#[cfg(feature = "mongodb")]
#[cfg_attr(docsrs, doc(cfg(feature = "mongodb")))]
pub mod mongo;
