//! Object stores (local, S3, GCS, Azure): the sink suite, manifests and staged uploads.

#[path = "../common/mod.rs"]
mod common;

mod manifests;
#[cfg(all(feature = "test-util", feature = "fs"))]
mod sink_conformance;
mod staged_uploads;
