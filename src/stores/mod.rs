//! Where data and state land: [`ObjectSink`] (local folder, memory, S3, GCS, Azure),
//! object [`KeyTemplate`]s, and [`StateStore`]s.

mod backends;
mod object;
mod path;
mod staging;
mod state;

pub use object::{DEFAULT_PART_SIZE, DEFAULT_UPLOAD_CONCURRENCY, ObjectSink};
pub use path::{KeyTemplate, KeyVars};
pub use staging::{STAGING_DIR, StagedFile};
pub use state::{ObjectStateStore, PipelineState, StateStore, Versioned};
