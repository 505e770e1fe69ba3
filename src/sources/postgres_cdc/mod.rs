//! PostgreSQL change data capture from the WAL by logical replication (feature
//! `postgres-cdc`).
//!
//! [`PostgresCdcExtractor`] reads a replication slot with the built-in `pgoutput` plugin
//! (`pgwire-replication` for the walsender protocol, an own decoder for the messages):
//! an optional snapshot in the slot's exported snapshot, then the stream, as [change
//! rows](crate::model::change). The server needs `wal_level = logical` and a free slot
//! and WAL sender; the user needs the `REPLICATION` attribute.
//! [`Extractor::check`](crate::Extractor::check) names whatever is missing.
//!
//! Values have the Arrow types of the typed SQL path for the same table (see
//! [`types`]), so a table read by
//! [`PostgresExtractor`](crate::sources::postgres::PostgresExtractor) and by this reader
//! gives equal arrays.
//!
//! A slot retains WAL until its reader confirms a position: drop slots that are no longer
//! read ([`PostgresCdcExtractor::drop_slot`]), watch
//! [`PostgresCdcExtractor::slot_lag_bytes`], and on a database whose selected tables are
//! idle turn on [`PostgresCdcConfig::with_heartbeat`].

mod ack;
mod config;
mod extractor;
mod pgoutput;
mod rows;
mod server;
mod session;
mod snapshot;
mod stream;
pub mod types;

pub use config::{PostgresCdcConfig, SnapshotMode, WhenPositionLost};
pub use extractor::PostgresCdcExtractor;
