//! # tributary
//!
//! Embeddable, streaming data ingestion pipelines: extract tables (full or incremental),
//! change streams (MySQL/MariaDB binlog, PostgreSQL WAL, Debezium topics), MongoDB
//! collections and REST APIs, land them as `|`-delimited CSV, JSON Lines or
//! Parquet on a local folder or object storage,
//! keep checkpoints that never run ahead of committed data, validate, and keep run
//! history. The jobs of *Data Pipelines Pocket Reference* as a typed Rust library.
//!
//! ```text
//!  Extractor ──batches──▶ BatchValidators ──▶ BatchSink (ObjectBatchSink: Format ─▶ Sink)
//!     ▲   each batch carries the Checkpoint it reaches (and its table)   │ commit
//!     │                                                                   ▼
//!  Acker ◀── acknowledged ◀── StateStore saves that Checkpoint only after the commit
//! ```
//!
//! Change streams (binlog, WAL, topics) are extractors whose batches name their table and
//! hold change rows ([`model::change`]); [`Extractor::open`] hands the pipeline an
//! [`Acker`] that hears of a checkpoint only once it is saved.
//!
//! ## Quick example
//! ```
//! # #[cfg(feature = "sqlite")]
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! use tributary::{Pipeline, PipelineOptions};
//! use tributary::sources::sqlite::SqliteExtractor;
//! use tributary::sources::sql::{Cursor, SqlSource};
//! use tributary::stores::{ObjectSink, ObjectStateStore};
//!
//! let pool = sqlx::SqlitePool::connect("sqlite::memory:").await.unwrap();
//! sqlx::query("CREATE TABLE Orders (OrderId INTEGER, OrderStatus TEXT, LastUpdated TEXT)")
//!     .execute(&pool).await.unwrap();
//! sqlx::query("INSERT INTO Orders VALUES (1,'Backordered','2020-06-01 12:00:00'),
//!                                        (1,'Shipped','2020-06-09 12:00:25')")
//!     .execute(&pool).await.unwrap();
//!
//! let sink = ObjectSink::memory();
//! let pipeline = Pipeline::builder("orders")
//!     .extractor(SqliteExtractor::new(pool, SqlSource::table("Orders").incremental(Cursor::new("LastUpdated"))))
//!     .sink(sink.clone())
//!     .state(ObjectStateStore::new(sink.clone(), "_state"))
//!     .build()?;
//! let report = pipeline.run().await.into_result()?;
//! assert_eq!(report.rows, 2);
//! let csv = sink.read(&report.objects[0].key).await?;
//! assert_eq!(&csv[..], b"1|Backordered|2020-06-01 12:00:00\n1|Shipped|2020-06-09 12:00:25\n");
//! // Nothing new: the next run lands no object and keeps the checkpoint.
//! assert_eq!(pipeline.run().await.into_result()?.rows, 0);
//! # Ok::<(), tributary::Error>(()) }).unwrap();
//! ```
//!
//! ## Cargo features
//! | feature | what it enables |
//! |---|---|
//! | `fs` (default) | local folder store |
//! | `sqlite` (default) | SQLite source and warehouse ([`sources::sqlite`], [`warehouse`]) |
//! | `postgres` | PostgreSQL source ([`sources::postgres`]: full, incremental, partitioned, `COPY` fast path) and warehouse |
//! | `mysql` | MySQL/MariaDB source ([`sources::mysql`]) and warehouse |
//! | `mysql-cdc` | MySQL/MariaDB binlog change data capture (`sources::mysql_cdc`; implies `mysql`) |
//! | `postgres-cdc` | PostgreSQL logical-replication change data capture (`sources::postgres_cdc`; implies `postgres`) |
//! | `kafka` | Debezium change events from Kafka topics, and change rows to topics as Debezium envelopes (`kafka`) |
//! | `mongodb` | MongoDB source (`sources::mongo`: collection, time window, incremental) |
//! | `rest` | REST API source ([`sources::rest`]) |
//! | `parquet` | Parquet output format (`format::Parquet`) |
//! | `zstd` | Zstandard whole-object compression (`format::Compression::Zstd`) |
//! | `airflow` | Airflow DAG run history ([`monitor::airflow`]) |
//! | `s3`, `gcs`, `azure` | cloud object stores for [`stores::ObjectSink`] |
//! | `test-util` | conformance suites in [`testing`] |
//!
//! (`sql` is internal: the shared SQL core every SQL backend turns on.)
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod config;
mod error;
pub mod format;
#[cfg(feature = "kafka")]
#[cfg_attr(docsrs, doc(cfg(feature = "kafka")))]
pub mod kafka;
pub mod metrics;
pub mod model;
mod pipeline;
mod retry;
pub mod sources;
pub mod stores;
mod traits;
mod util;
pub mod validate;
mod value;

#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod testing;

#[cfg(feature = "sql")]
#[cfg_attr(
    docsrs,
    doc(cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql")))
)]
pub mod monitor;

#[cfg(feature = "sql")]
#[cfg_attr(
    docsrs,
    doc(cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql")))
)]
pub mod warehouse;

pub use error::{BoxError, Error, ErrorStatus, Result};
pub use model::{Batch, BatchStream, Checkpoint, CursorValue, Watermark};
pub use pipeline::{
    DryRun, FailurePoint, Manifest, ObjectReport, OnSchemaChange, Outcome, Pipeline,
    PipelineBuilder, PipelineOptions, Progress, RunLog, RunReport,
};
pub use retry::{Retry, RetryPolicy};
pub use traits::{
    Acker, BatchSink, BatchTarget, BatchValidator, BatchWriter, ExtractContext, Extraction,
    Extractor, ExtractorCapabilities, ExtractorExt, Leftover, NoAck, ObjectTarget, Plan, Receipt,
    Severity, Sink, SinkCapabilities, SinkWriter, ValidationOutcome, Validator,
};
pub use util::{Secret, redact_url};

/// Re-exported so that callers name the same Arrow types tributary uses.
pub use arrow_array;
/// Re-exported so that callers name the same Arrow types tributary uses.
pub use arrow_schema;
/// Re-exported for implementors of the traits: `#[tributary::async_trait]`.
pub use async_trait::async_trait;
/// Re-exported for implementors: the stream types and combinators an extractor needs.
pub use futures;
/// Re-exported so that callers can build their own stores.
pub use object_store;
/// Re-exported so that callers use the same `CancellationToken`.
pub use tokio_util::sync::CancellationToken;
