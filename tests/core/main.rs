//! The pipeline, its run loop, crash recovery, formats, validators, reports and examples.

#[path = "../common/mod.rs"]
mod common;

mod bad_input;
mod bad_input_catalogue;
mod change_crash;
mod change_rows;
mod change_stream;
mod crash;
mod crash_trials;
mod ergonomics;
mod examples;
#[cfg(all(feature = "test-util", feature = "sqlite"))]
mod extractor_suite;
mod formats;
#[cfg(feature = "sqlite")]
mod metrics;
mod parquet;
mod pipeline;
mod quickstart;
mod report;
mod validation;
