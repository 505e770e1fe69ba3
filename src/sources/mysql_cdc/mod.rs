//! MySQL and MariaDB change data capture from the binlog (feature `mysql-cdc`).
//!
//! [`MySqlCdcExtractor`] registers as a replica (`mysql_async`'s binlog stream), takes an
//! optional consistent snapshot, and turns row events into [change
//! rows](crate::model::change). The server needs `log_bin`, `binlog_format = ROW`,
//! `binlog_row_image = FULL` and `binlog_row_metadata = FULL`; the user needs
//! `REPLICATION SLAVE` and `REPLICATION CLIENT` (MariaDB 10.5+: `BINLOG MONITOR`).
//! [`Extractor::check`](crate::Extractor::check) names whatever is missing.
//!
//! Values have the Arrow types of the typed SQL path for the same table (see
//! [`types`]), so a table read by [`MySqlExtractor`](crate::sources::mysql::MySqlExtractor)
//! and by this reader gives equal arrays.
//!
//! Known limits: MySQL's binary `JSON` columns and spatial columns are errors naming the
//! column; MySQL (not MariaDB) checkpoints carry file and offset only, no GTID set; MySQL's
//! snapshot takes a `FLUSH TABLES WITH READ LOCK` for the moment its position is read.
//! The project's tests run against MariaDB.

mod config;
mod dump;
mod extractor;
mod layout;
mod position;
mod rows;
mod server;
mod snapshot;
mod statements;
mod stream;
pub mod types;

pub use config::{MySqlCdcConfig, SnapshotMode, StartAt, WhenPositionLost};
pub use extractor::MySqlCdcExtractor;
