//! Metrics every pipeline emits through the [`metrics`](https://docs.rs/metrics) facade,
//! and the `tracing` spans around its work.
//!
//! A host installs any `metrics` recorder (a Prometheus exporter, StatsD, OpenTelemetry);
//! without one, recording costs a branch. Names and labels are fixed and listed here, so
//! dashboards and alerts can be written against them:
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `tributary_rows_extracted_total` | counter | `pipeline`, `source`, `stream` | rows received from the extractor |
//! | `tributary_rows_committed_total` | counter | `pipeline`, `source`, `stream` | rows in committed objects |
//! | `tributary_bytes_written_total` | counter | `pipeline`, `source`, `stream` | bytes in committed objects |
//! | `tributary_objects_committed_total` | counter | `pipeline`, `source`, `stream` | objects committed (whole at their final key) |
//! | `tributary_runs_total` | counter | `pipeline`, `source`, `stream`, `outcome` | runs ended: `succeeded`, `failed`, `cancelled` |
//! | `tributary_run_duration_seconds` | histogram | `pipeline`, `source`, `stream`, `outcome` | wall time of each run, retries included |
//! | `tributary_checkpoints_saved_total` | counter | `pipeline`, `source`, `stream` | checkpoints saved (each after the data up to it is committed) |
//! | `tributary_checkpoint_lag_seconds` | gauge | `pipeline`, `source`, `stream` | at each checkpoint save, now minus the source time of the newest change it covers: the largest `_commit_ts` of the change rows up to it, or a timestamp watermark's cursor; not set when the source gives no time |
//! | `tributary_source_lag_bytes` | gauge | `pipeline`, `source`, `stream` | the source's retained log after an acknowledgement (a PostgreSQL slot's lag) |
//!
//! `pipeline` is the pipeline's name, `source` the extractor's [`source`](crate::Extractor::source)
//! (`postgres`, `postgres-cdc`, …), `stream` the table a batch or an object belongs to
//! (for the run, checkpoint and lag metrics: the extractor's
//! [`stream`](crate::Extractor::stream), which for a change stream of many tables names
//! the stream, not one table).
//!
//! Spans: `tributary.run` around each run (fields `pipeline`, `run_id`) and
//! `tributary.object` around each object's commit (fields `pipeline`, `key`); the log
//! events of a run are inside them.
//!
//! ```
//! assert_eq!(tributary::metrics::ROWS_EXTRACTED, "tributary_rows_extracted_total");
//! ```

use ::metrics::{counter, gauge, histogram};

/// Counter: rows received from the extractor.
pub const ROWS_EXTRACTED: &str = "tributary_rows_extracted_total";
/// Counter: rows in committed objects.
pub const ROWS_COMMITTED: &str = "tributary_rows_committed_total";
/// Counter: bytes in committed objects.
pub const BYTES_WRITTEN: &str = "tributary_bytes_written_total";
/// Counter: objects committed.
pub const OBJECTS_COMMITTED: &str = "tributary_objects_committed_total";
/// Counter: runs ended, by `outcome`.
pub const RUNS: &str = "tributary_runs_total";
/// Histogram: each run's wall time in seconds, by `outcome`.
pub const RUN_DURATION: &str = "tributary_run_duration_seconds";
/// Counter: checkpoints saved.
pub const CHECKPOINTS_SAVED: &str = "tributary_checkpoints_saved_total";
/// Gauge: seconds between a checkpoint save and the source time of the newest change it
/// covers.
pub const CHECKPOINT_LAG: &str = "tributary_checkpoint_lag_seconds";
/// Gauge: the source's retained log in bytes after an acknowledgement.
pub const SOURCE_LAG_BYTES: &str = "tributary_source_lag_bytes";

/// Every metric name above, for hosts that describe or pre-register them.
pub const ALL: [&str; 9] = [
    ROWS_EXTRACTED,
    ROWS_COMMITTED,
    BYTES_WRITTEN,
    OBJECTS_COMMITTED,
    RUNS,
    RUN_DURATION,
    CHECKPOINTS_SAVED,
    CHECKPOINT_LAG,
    SOURCE_LAG_BYTES,
];

/// One pipeline's labels; cheap to clone into each recording.
#[derive(Debug, Clone)]
pub(crate) struct Meter {
    pipeline: String,
    source: String,
    stream: String,
}

impl Meter {
    pub(crate) fn new(pipeline: &str, source: &str, stream: &str) -> Self {
        Meter {
            pipeline: pipeline.to_string(),
            source: source.to_string(),
            stream: stream.to_string(),
        }
    }

    fn labels(&self) -> [(&'static str, String); 3] {
        self.stream_labels(&self.stream)
    }

    fn stream_labels(&self, stream: &str) -> [(&'static str, String); 3] {
        [
            ("pipeline", self.pipeline.clone()),
            ("source", self.source.clone()),
            ("stream", stream.to_string()),
        ]
    }

    pub(crate) fn extracted(&self, stream: &str, rows: u64) {
        counter!(ROWS_EXTRACTED, &self.stream_labels(stream)).increment(rows);
    }

    pub(crate) fn committed(&self, stream: &str, rows: u64, bytes: u64) {
        let labels = self.stream_labels(stream);
        counter!(ROWS_COMMITTED, &labels).increment(rows);
        counter!(BYTES_WRITTEN, &labels).increment(bytes);
        counter!(OBJECTS_COMMITTED, &labels).increment(1);
    }

    pub(crate) fn run_ended(&self, outcome: &str, seconds: f64) {
        let [p, s, t] = self.labels();
        let labels = [p, s, t, ("outcome", outcome.to_string())];
        counter!(RUNS, &labels).increment(1);
        histogram!(RUN_DURATION, &labels).record(seconds);
    }

    pub(crate) fn checkpoint_saved(&self, lag_seconds: Option<f64>) {
        let labels = self.labels();
        counter!(CHECKPOINTS_SAVED, &labels).increment(1);
        if let Some(lag) = lag_seconds {
            gauge!(CHECKPOINT_LAG, &labels).set(lag);
        }
    }

    pub(crate) fn source_lag(&self, bytes: u64) {
        gauge!(SOURCE_LAG_BYTES, &self.labels()).set(bytes as f64);
    }
}
