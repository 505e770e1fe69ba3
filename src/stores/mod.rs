//! Where data and state land: [`ObjectSink`] (local folder, memory, S3, GCS, Azure),
//! [`ObjectBatchSink`] (objects of a format on it), object [`KeyTemplate`]s, and
//! [`StateStore`]s.

mod backends;
pub(crate) mod compress;
mod local_writer;
mod memory_batch;
mod object;
mod object_batch;
mod path;
mod staging;
mod state;
mod uploads;

pub use memory_batch::MemoryBatchSink;
pub use object::{DEFAULT_PART_SIZE, DEFAULT_UPLOAD_CONCURRENCY, ObjectSink};
pub use object_batch::ObjectBatchSink;
pub use path::{KeyTemplate, KeyVars};
pub use staging::{STAGING_DIR, StagedFile};
pub use state::{ObjectStateStore, PipelineState, StateStore, Versioned};
