//! A run: its attempts and retries, then its final manifest and history row. Each
//! attempt is a [`RunLoop`]; what the attempts did is kept in the run's [`Ledger`].

use super::ledger::Ledger;
use super::run_loop::RunLoop;
use super::{Outcome, Pipeline, RunReport};
use chrono::{DateTime, Utc};
use std::time::Instant;

impl Pipeline {
    /// Run once: extract from the saved checkpoint to the end of the stream (or until
    /// cancelled), commit, save the checkpoint, write the manifest and the history row.
    ///
    /// Never panics on bad input; failures are in the report
    /// ([`RunReport::into_result`] turns them into an `Err`).
    pub async fn run(&self) -> RunReport {
        let started = Instant::now();
        let started_at = Utc::now();
        let run_id = self
            .options
            .run_id
            .clone()
            .unwrap_or_else(|| new_run_id(started_at));
        let run = Ledger::new(run_id, started_at);
        let span =
            tracing::info_span!("tributary.run", pipeline = %self.name, run_id = %run.run_id);
        tracing::Instrument::instrument(self.run_in(run, started), span).await
    }

    async fn run_in(&self, mut run: Ledger, started: Instant) -> RunReport {
        let mut attempts = self.options.retry.attempts("run");
        let result = loop {
            match RunLoop::attempt(self, &mut run).await {
                Ok(v) => break Ok(v),
                // The next attempt resumes from the last saved checkpoint.
                Err(e) => {
                    if let Err(e) = attempts.failed(e, None, &[&self.cancel, &self.stop]).await {
                        break Err(e);
                    }
                }
            }
        };
        let attempts = attempts.tries();
        let mut report = run.report(self, attempts, started, result);
        // The manifest describes the run as it ended, failures included.
        if let Err(e) = super::report::write_manifest(&*self.sink, &mut report).await {
            report.warnings.push(format!("manifest not written: {e}"));
        }
        if let Some(log) = &self.run_log
            && let Err(e) = log.append(&report).await
        {
            tracing::warn!(pipeline = %self.name, error = %e, "run history row not written");
            report
                .warnings
                .push(format!("run history not written: {e}"));
        }
        match report.outcome {
            Outcome::Succeeded => tracing::info!(pipeline = %self.name, run_id = %report.run_id,
                rows = report.rows, bytes = report.bytes, objects = report.objects.len(), "run succeeded"),
            _ => tracing::error!(pipeline = %self.name, run_id = %report.run_id,
                error = report.error_message.as_deref().unwrap_or(""),
                failed_at = %report.failed_at.as_ref().map(|a| a.to_string()).unwrap_or_default(),
                "run {}", report.outcome.as_str()),
        }
        self.meter
            .run_ended(report.outcome.as_str(), report.duration.as_secs_f64());
        report
    }
}

fn new_run_id(at: DateTime<Utc>) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    // Unique across processes (pid, clock) and within one (counter); no RNG needed.
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let seed = format!(
        "{}-{}-{}",
        std::process::id(),
        at.timestamp_nanos_opt().unwrap_or_default(),
        n
    );
    let h = crate::util::sha256_hex(seed.as_bytes());
    format!("{}-{}", at.format("%Y%m%dT%H%M%SZ"), &h[..8])
}
