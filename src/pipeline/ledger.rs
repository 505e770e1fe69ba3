//! The [`Ledger`]: what one run has done so far, carried across its attempts, and the
//! reports, manifests and progress made from it. A leaf: it calls into no other part of
//! the run loop.

use super::{FailurePoint, ObjectReport, Outcome, Pipeline, Progress, RunReport};
use crate::{Checkpoint, Error, Result, ValidationOutcome};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::time::Instant;

/// What a run has committed, checked and noticed, across its attempts.
#[derive(Clone)]
pub(super) struct Ledger {
    pub(super) run_id: String,
    pub(super) started_at: DateTime<Utc>,
    /// Where the run started (set by its first attempt).
    pub(super) from: Option<Checkpoint>,
    /// Committed objects not yet in an epoch manifest (all of them, for a bounded run).
    pub(super) objects: BTreeMap<String, ObjectReport>,
    pub(super) validations: BTreeMap<String, ValidationOutcome>,
    /// The last checkpoint saved (or, without a state store, reached by committed data).
    pub(super) checkpoint_to: Option<Checkpoint>,
    pub(super) source_encoded: bool,
    /// The source's retained log after the last acknowledgement.
    pub(super) source_lag_bytes: Option<u64>,
    pub(super) warnings: Vec<String>,
    /// Running totals, so progress costs the same at the millionth object as the first.
    pub(super) rows_committed: u64,
    pub(super) bytes_committed: u64,
    pub(super) objects_committed: u64,
    /// Rows received from the extractor by the current attempt.
    pub(super) rows_extracted: u64,
    /// Epoch manifests written (unbounded streams; see [`RunReport::epochs`]).
    pub(super) epochs: u64,
    /// The source's estimate of the rows this run reads (see [`Progress::rows_estimated`]).
    pub(super) rows_estimated: Option<u64>,
    /// Whether the estimate was asked for already (once per run, not per attempt).
    pub(super) estimated: bool,
    /// Where the current attempt failed, the innermost step that knew first.
    pub(super) failed_at: Option<FailurePoint>,
}

impl Ledger {
    pub(super) fn new(run_id: String, started_at: DateTime<Utc>) -> Self {
        Ledger {
            run_id,
            started_at,
            from: None,
            objects: BTreeMap::new(),
            validations: BTreeMap::new(),
            checkpoint_to: None,
            source_encoded: false,
            source_lag_bytes: None,
            warnings: Vec::new(),
            rows_committed: 0,
            bytes_committed: 0,
            objects_committed: 0,
            rows_extracted: 0,
            epochs: 0,
            rows_estimated: None,
            estimated: false,
            failed_at: None,
        }
    }

    /// A committed object, counted.
    pub(super) fn record(&mut self, obj: ObjectReport) {
        self.rows_committed += obj.rows;
        self.bytes_committed += obj.bytes;
        self.objects_committed += 1;
        self.objects.insert(obj.key.clone(), obj);
    }

    /// A committed object that was removed again, no longer counted.
    pub(super) fn forget(&mut self, key: &str) {
        if let Some(obj) = self.objects.remove(key) {
            self.rows_committed -= obj.rows;
            self.bytes_committed -= obj.bytes;
            self.objects_committed -= 1;
        }
    }

    /// A warning for the report, once.
    pub(super) fn warn(&mut self, w: String) {
        if !self.warnings.contains(&w) {
            self.warnings.push(w);
        }
    }

    /// Tell the pipeline's progress callback, if any, where the run stands.
    pub(super) fn notify(&self, p: &Pipeline) {
        if let Some(f) = &p.progress {
            f(&Progress {
                rows_extracted: self.rows_extracted,
                rows_committed: self.rows_committed,
                bytes_committed: self.bytes_committed,
                objects_committed: self.objects_committed,
                source_lag_bytes: self.source_lag_bytes,
                rows_estimated: self.rows_estimated,
            });
        }
    }

    /// The manifest of the next checkpoint save, as far as it is known now: outcome
    /// `running`, every object so far; for an unbounded stream, the next epoch's.
    pub(super) fn step_report(&self, p: &Pipeline) -> RunReport {
        let mut report = self.clone().report(p, 1, Instant::now(), Ok(()));
        report.outcome = Outcome::Running;
        if !p.extractor.capabilities().bounded {
            report.epoch = Some(self.epochs + 1);
        }
        report
    }

    /// `r`, noting where the run was if it failed (the report's `failed_at`) unless a
    /// step nearer the failure noted it first. Cancelling is no failure and notes nothing.
    pub(super) fn note<T>(
        &mut self,
        r: Result<T>,
        operation: &str,
        table: Option<&str>,
    ) -> Result<T> {
        if let Err(e) = &r
            && !matches!(e, Error::Cancelled)
        {
            self.failed_at
                .get_or_insert_with(|| FailurePoint::new(operation, table));
        }
        r
    }

    /// The run's report (and manifest body) as it ended with `result`.
    pub(super) fn report(
        self,
        p: &Pipeline,
        attempts: u32,
        started: Instant,
        result: Result<()>,
    ) -> RunReport {
        let (outcome, error) = match result {
            Ok(()) => (Outcome::Succeeded, None),
            Err(Error::Cancelled) => (Outcome::Cancelled, Some(Error::Cancelled)),
            Err(e) => (Outcome::Failed, Some(e)),
        };
        let failed_at = match outcome {
            Outcome::Failed => self.failed_at,
            _ => None,
        };
        RunReport {
            pipeline: p.name.clone(),
            run_id: self.run_id,
            source: p.extractor.source().to_string(),
            stream: p.extractor.stream().to_string(),
            sink: p.sink.describe(),
            format: p
                .sink
                .format()
                .map_or_else(|| "rows".to_string(), |f| f.extension().to_string()),
            started_at: self.started_at,
            finished_at: Utc::now(),
            duration: started.elapsed(),
            outcome,
            attempts,
            rows: self.rows_committed,
            bytes: self.bytes_committed,
            objects: self.objects.into_values().collect(),
            epoch: None,
            epochs: self.epochs,
            checkpoint_to: self.checkpoint_to.or_else(|| self.from.clone()),
            checkpoint_from: self.from,
            manifest: None, // set when the committer writes the manifest
            validations: self.validations.into_values().collect(),
            error_message: error.as_ref().map(|e| e.to_string()),
            failed_at,
            warnings: self.warnings,
            source_encoded: self.source_encoded,
            source_lag_bytes: self.source_lag_bytes,
            error,
        }
    }
}
