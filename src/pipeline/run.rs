//! The run loop: attempts and retries, the bounded channel from the extractor, part
//! rotation, and the commit sequence (object, manifest, checkpoint).

use super::part::OpenPart;
use super::{ObjectReport, Outcome, Pipeline, RunReport};
use crate::model::EncodedChunk;
use crate::stores::PipelineState;
use crate::{Acker, Batch, Checkpoint, Error, Result, Resume, Severity, ValidationOutcome};
use arrow_schema::SchemaRef;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Mutable state of one attempt.
pub(super) struct Attempt {
    pub(super) version: Option<u64>,
    pub(super) saved: Option<Checkpoint>,
    pub(super) pending: Option<Checkpoint>,
    /// The source time of the newest change up to `pending`, when the rows carry one.
    pub(super) pending_time: Option<DateTime<Utc>>,
    pub(super) next_part: u32,
    /// Parts opened so far per source partition (see [`Batch::partition`]).
    pub(super) partition_parts: std::collections::HashMap<u32, u32>,
    pub(super) rows_extracted: u64,
    /// Where saved checkpoints are acknowledged (none on the pre-encoded path).
    pub(super) acker: Option<Box<dyn Acker>>,
    /// The last schema of each table's rows (this attempt's, or saved), to find changes.
    pub(super) seen_schemas: BTreeMap<String, SchemaRef>,
    /// The schema of each table's last committed object, saved with the checkpoint.
    pub(super) committed_schemas: BTreeMap<String, SchemaRef>,
    /// The part being committed in the background, if any.
    pub(super) inflight: Option<super::commit::Inflight>,
    /// The state as last saved (or loaded): what an intent before a commit starts from.
    pub(super) saved_state: Option<PipelineState>,
    /// Objects whose commit began since the last checkpoint save, as saved in the state
    /// before their commit (see [`Pipeline::intend`]).
    pub(super) leftover: crate::Leftover,
}

/// Where a batch goes: its table (`None`: the extractor's stream) and source partition.
pub(super) type Slot = (Option<String>, Option<u32>);

/// The open parts: one per table and source partition.
type Parts = BTreeMap<Slot, OpenPart>;

/// What is carried across attempts of one run.
#[derive(Clone)]
pub(super) struct RunState {
    pub(super) run_id: String,
    pub(super) started_at: DateTime<Utc>,
    from: Option<Checkpoint>,
    pub(super) objects: BTreeMap<String, ObjectReport>,
    validations: BTreeMap<String, ValidationOutcome>,
    pub(super) checkpoint_to: Option<Checkpoint>,
    source_encoded: bool,
    /// The source's retained log after the last acknowledgement.
    pub(super) source_lag_bytes: Option<u64>,
    pub(super) warnings: Vec<String>,
    /// Running totals, so progress costs the same at the millionth object as the first.
    pub(super) rows_committed: u64,
    pub(super) bytes_committed: u64,
    pub(super) objects_committed: u64,
    /// Epoch manifests written (unbounded streams; see [`RunReport::epochs`]).
    pub(super) epochs: u64,
    /// The source's estimate of the rows this run reads (see [`Progress::rows_estimated`](super::Progress::rows_estimated)).
    pub(super) rows_estimated: Option<u64>,
    /// Whether the estimate was asked for already (once per run, not per attempt).
    estimated: bool,
}

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
        let run = RunState {
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
            epochs: 0,
            rows_estimated: None,
            estimated: false,
        };
        let span =
            tracing::info_span!("tributary.run", pipeline = %self.name, run_id = %run.run_id);
        tracing::Instrument::instrument(self.run_in(run, started), span).await
    }

    async fn run_in(&self, mut run: RunState, started: Instant) -> RunReport {
        let mut attempts = 0;
        let result = loop {
            attempts += 1;
            let r = self.attempt(&mut run).await;
            match r {
                Err(e)
                    if e.is_retryable()
                        && attempts <= self.options.retries
                        && !self.cancel.is_cancelled() =>
                {
                    let wait = self.options.retry_backoff * 2u32.saturating_pow(attempts - 1);
                    tracing::warn!(pipeline = %self.name, run_id = %run.run_id, attempt = attempts, error = %e,
                        "run failed with a retryable error; retrying in {wait:?}");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.cancel.cancelled() => break Err(Error::Cancelled),
                    }
                }
                other => break other,
            }
        };
        let mut report = self.report(run, attempts, started, result);
        // The manifest describes the run as it ended, failures included.
        if let Err(e) = self.write_manifest(&mut report).await {
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
                error = report.error_message.as_deref().unwrap_or(""), "run {}", report.outcome.as_str()),
        }
        self.meter
            .run_ended(report.outcome.as_str(), report.duration.as_secs_f64());
        report
    }

    pub(super) fn report(
        &self,
        run: RunState,
        attempts: u32,
        started: Instant,
        result: Result<()>,
    ) -> RunReport {
        let objects: Vec<ObjectReport> = run.objects.into_values().collect();
        let (outcome, error) = match result {
            Ok(()) => (Outcome::Succeeded, None),
            Err(Error::Cancelled) => (Outcome::Cancelled, Some(Error::Cancelled)),
            Err(e) => (Outcome::Failed, Some(e)),
        };
        RunReport {
            pipeline: self.name.clone(),
            run_id: run.run_id,
            source: self.extractor.source().to_string(),
            stream: self.extractor.stream().to_string(),
            sink: self.sink.describe(),
            format: self
                .sink
                .format()
                .map_or_else(|| "rows".to_string(), |f| f.extension().to_string()),
            started_at: run.started_at,
            finished_at: Utc::now(),
            duration: started.elapsed(),
            outcome,
            attempts,
            rows: run.rows_committed,
            bytes: run.bytes_committed,
            objects,
            epoch: None,
            epochs: run.epochs,
            checkpoint_to: run.checkpoint_to.or_else(|| run.from.clone()),
            checkpoint_from: run.from,
            manifest: None, // set by `write_manifest`
            validations: run.validations.into_values().collect(),
            error_message: error.as_ref().map(|e| e.to_string()),
            warnings: run.warnings,
            source_encoded: run.source_encoded,
            source_lag_bytes: run.source_lag_bytes,
            error,
        }
    }

    /// Run the batch checks that apply to `table` on a batch of its rows.
    fn validate(&self, run: &mut RunState, table: &str, batch: &Batch) -> Result<()> {
        for v in &self.validators {
            if !crate::traits::applies_to(v.tables(), table) {
                continue;
            }
            let started = Utc::now();
            let t = Instant::now();
            let problem = v.check(&batch.records)?;
            let entry = run
                .validations
                .entry(v.name().to_string())
                .or_insert_with(|| ValidationOutcome {
                    name: v.name().to_string(),
                    passed: true,
                    severity: v.severity(),
                    left: None,
                    right: None,
                    operator: None,
                    script_1: None,
                    script_2: None,
                    message: "passed".into(),
                    failed_batches: 0,
                    failed_rows: 0,
                    last_message: None,
                    started_at: started,
                    duration: Duration::ZERO,
                });
            entry.duration += t.elapsed();
            if let Some(mut problem) = problem {
                // On a many-table stream, say whose rows failed.
                if batch.table.is_some() {
                    problem = format!("table {table}: {problem}");
                }
                // Every failure counted; the first and the last message kept.
                if entry.passed {
                    entry.passed = false;
                    entry.message = problem.clone();
                } else {
                    entry.last_message = Some(problem.clone());
                }
                entry.failed_batches += 1;
                entry.failed_rows += batch.num_rows() as u64;
                match v.severity() {
                    Severity::Halt => {
                        return Err(Error::Validation {
                            name: v.name().to_string(),
                            message: problem,
                        });
                    }
                    Severity::Warn => {
                        tracing::warn!(pipeline = %self.name, validator = v.name(), %problem, "validation warning")
                    }
                }
            }
        }
        Ok(())
    }

    async fn attempt(&self, run: &mut RunState) -> Result<()> {
        self.sink.check().await?;
        let loaded = match &self.state {
            Some(s) => s.load(&self.name).await?,
            None => None,
        };
        // A retry of this run (same run id, another process) continues its epochs.
        if let Some(v) = loaded.as_ref().filter(|v| v.value.run_id == run.run_id) {
            run.epochs = run.epochs.max(v.value.epochs);
        }
        let mut a = Attempt {
            version: loaded.as_ref().map(|v| v.version),
            saved: loaded.as_ref().and_then(|v| v.value.checkpoint.clone()),
            pending: None,
            pending_time: None,
            // Continue a run's numbering if its own checkpoint is what we resume from.
            next_part: loaded
                .as_ref()
                .filter(|v| v.value.run_id == run.run_id)
                .map_or(0, |v| v.value.next_part),
            partition_parts: std::collections::HashMap::new(),
            rows_extracted: 0,
            acker: None,
            seen_schemas: BTreeMap::new(),
            committed_schemas: BTreeMap::new(),
            inflight: None,
            saved_state: loaded.as_ref().map(|v| v.value.clone()),
            leftover: crate::Leftover::default(),
        };
        // What a stopped run committed past its checkpoint goes before anything is read.
        self.recover(run, &mut a).await?;
        let saved_schemas: BTreeMap<String, SchemaRef> = loaded
            .as_ref()
            .map(|v| {
                v.value
                    .schemas
                    .iter()
                    .map(|(t, s)| (t.clone(), std::sync::Arc::new(s.clone())))
                    .collect()
            })
            .unwrap_or_default();
        a.seen_schemas = saved_schemas.clone();
        a.committed_schemas = saved_schemas.clone();
        let from = self.options.start_from.clone().or_else(|| a.saved.clone());
        // A backfill from a given checkpoint has no schemas of its own to hand over.
        let resume = Resume::from_checkpoint(from.clone()).with_schemas(
            if self.options.start_from.is_some() {
                BTreeMap::new()
            } else {
                saved_schemas
            },
        );
        if run.from.is_none() && run.objects.is_empty() {
            run.from = from.clone();
        }
        a.pending = from.clone();
        // An estimate for progress, asked once per run and only if someone watches.
        if self.progress.is_some() && !run.estimated {
            run.estimated = true;
            match self.extractor.plan(&resume).await {
                Ok(plan) => run.rows_estimated = plan.and_then(|p| p.estimated_rows),
                Err(e) => {
                    tracing::debug!(pipeline = %self.name, error = %e, "no row estimate for progress")
                }
            }
        }
        // The source may encode the format itself (PostgreSQL's COPY for CSV), when no
        // batch check needs the rows.
        let encoded = match self.sink.format() {
            Some(format) if self.validators.is_empty() && self.options.encoded_path => {
                self.extractor.extract_encoded(from.clone(), format).await?
            }
            _ => None,
        };
        let stream: futures::stream::BoxStream<'static, Result<Item>> = match encoded {
            Some(chunks) => {
                tracing::info!(pipeline = %self.name, "the source encodes the output itself");
                run.source_encoded = true;
                chunks.map(|c| c.map(Item::Encoded)).boxed()
            }
            None => {
                let extraction = self.extractor.open(resume).await?;
                a.acker = Some(extraction.acker);
                extraction.batches.map(|b| b.map(Item::Batch)).boxed()
            }
        };

        // Extraction runs ahead in its own task, at most `channel_capacity` items ahead.
        let (tx, mut rx) =
            tokio::sync::mpsc::channel::<Result<Item>>(self.options.channel_capacity);
        let producer = tokio::spawn(async move {
            let mut stream = stream;
            while let Some(item) = stream.next().await {
                let stop = item.is_err();
                if tx.send(item).await.is_err() || stop {
                    break;
                }
            }
        });
        let _abort_producer = AbortOnDrop(producer);

        let mut parts = Parts::new();
        let mut result = self.consume(run, &mut a, &mut rx, &mut parts).await;
        if result.is_ok() {
            result = self.commit_all(&mut parts, run, &mut a).await;
        }
        if let Err(e) = result {
            let cancelled = matches!(e, Error::Cancelled);
            self.settle_inflight(run, &mut a, !cancelled).await;
            for p in std::mem::take(&mut parts).into_values() {
                let key = p.writer.id().to_string();
                if let Err(abort_err) = p.writer.abort().await {
                    tracing::warn!(pipeline = %self.name, %key, error = %abort_err, "abort failed");
                }
            }
            self.undo_leftover(run, &mut a).await;
            return Err(e);
        }
        Ok(())
    }

    /// Commit every open part, then save the checkpoint (also when there was no part:
    /// the position may have moved without rows, e.g. CDC events of other tables).
    async fn commit_all(
        &self,
        parts: &mut Parts,
        run: &mut RunState,
        a: &mut Attempt,
    ) -> Result<()> {
        // One intent for every part of this step, not one state save per part.
        let ids: Vec<String> = parts.values().map(|p| p.writer.id().to_string()).collect();
        self.intend(run, a, ids).await?;
        while let Some((_, p)) = parts.pop_first() {
            let others = !parts.is_empty();
            self.commit_part(p, run, a, others).await?;
        }
        // Waits for the last commit, saves its checkpoint, then the newest one.
        self.save_checkpoint(run, a).await
    }

    async fn consume(
        &self,
        run: &mut RunState,
        a: &mut Attempt,
        rx: &mut tokio::sync::mpsc::Receiver<Result<Item>>,
        parts: &mut Parts,
    ) -> Result<()> {
        let interval = self.options.commit_interval;
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let wait_deadline = deadline;
            let item = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Err(Error::Cancelled),
                _ = async { tokio::time::sleep_until(wait_deadline.expect("guarded")).await }, if wait_deadline.is_some() => {
                    self.commit_all(parts, run, a).await?;
                    deadline = None;
                    continue;
                }
                item = rx.recv() => item,
            };
            let (slot, checkpoint) = match item {
                None => return Ok(()),
                Some(Err(e)) => return Err(e),
                Some(Ok(Item::Batch(batch))) => {
                    let slot: Slot = (batch.table.clone(), batch.partition);
                    a.rows_extracted += batch.num_rows() as u64;
                    self.meter.extracted(
                        batch.table.as_deref().unwrap_or(self.extractor.stream()),
                        batch.num_rows() as u64,
                    );
                    if batch.checkpoint.is_some()
                        && let Some(t) = super::commit::newest_commit_ts(&batch.records)
                    {
                        a.pending_time = a.pending_time.max(Some(t));
                    }
                    if batch.num_rows() > 0 {
                        let table = batch.table.as_deref().unwrap_or(self.extractor.stream());
                        self.validate(run, table, &batch)?;
                        let schema = batch.records.schema();
                        self.track_schema(run, a, table, &schema)?;
                        // A schema change (a new column in a REST source, a DDL in CDC)
                        // starts a new part: every object has one schema and one header.
                        if parts
                            .get(&slot)
                            .is_some_and(|p| p.schema.as_ref() != Some(&schema))
                        {
                            let p = parts.remove(&slot).expect("checked");
                            let others = !parts.is_empty();
                            self.commit_part(p, run, a, others).await?;
                        }
                        // Split the batch where the part is full, so no object exceeds
                        // the limit; the batch's checkpoint applies only after its last
                        // row, so a part closed mid-batch carries the one before it.
                        let mut rest = batch.records.clone();
                        loop {
                            if !parts.contains_key(&slot) {
                                let part = self.open_part(run, a, Some(&schema), &slot).await?;
                                parts.insert(slot.clone(), part);
                                deadline = deadline
                                    .or_else(|| interval.map(|i| tokio::time::Instant::now() + i));
                            }
                            let part = parts.get_mut(&slot).expect("opened above");
                            let (fit, full) = self.rows_that_fit(part, rest.num_rows());
                            if fit >= rest.num_rows() {
                                part.writer.write(&rest).await?;
                                break;
                            }
                            if fit > 0 {
                                part.writer.write(&rest.slice(0, fit)).await?;
                                rest = rest.slice(fit, rest.num_rows() - fit);
                            }
                            if !full {
                                continue; // a first slice, to learn the row size
                            }
                            let p = parts.remove(&slot).expect("checked");
                            let others = !parts.is_empty();
                            self.commit_part(p, run, a, others).await?;
                        }
                    }
                    (slot, batch.checkpoint)
                }
                Some(Ok(Item::Encoded(chunk))) => {
                    let checkpoint = chunk.checkpoint.clone();
                    a.rows_extracted += chunk.rows;
                    self.meter.extracted(self.extractor.stream(), chunk.rows);
                    let slot: Slot = (None, None);
                    if !chunk.bytes.is_empty() {
                        if let Some(schema) = &chunk.schema {
                            self.track_schema(run, a, self.extractor.stream(), schema)?;
                        }
                        if !parts.contains_key(&slot) {
                            let part = self.open_part(run, a, None, &slot).await?;
                            parts.insert(slot.clone(), part);
                            deadline = deadline
                                .or_else(|| interval.map(|i| tokio::time::Instant::now() + i));
                        }
                        self.write_chunk(run, a, parts, &slot, chunk).await?;
                    }
                    (slot, checkpoint)
                }
            };
            if let Some(cp) = checkpoint {
                a.pending = Some(cp);
            }
            let full = parts.get(&slot).is_some_and(|p| {
                self.options
                    .part_max_rows
                    .is_some_and(|m| p.writer.rows() >= m)
                    || self
                        .options
                        .part_max_bytes
                        .is_some_and(|m| p.writer.size() >= m)
            });
            if full {
                let p = parts.remove(&slot).expect("checked");
                let others = !parts.is_empty();
                self.commit_part(p, run, a, others).await?;
            }
            self.poll_inflight(run, a).await?;
            if parts.is_empty() {
                // Nothing open: a commit still running, or a position that moved without
                // rows, is saved on the interval (an idle stream has no next batch).
                deadline = if a.inflight.is_some() || a.pending != a.saved {
                    deadline.or_else(|| interval.map(|i| tokio::time::Instant::now() + i))
                } else {
                    None
                };
            }
            self.report_progress(run, a);
        }
    }
}

impl Pipeline {
    /// Write a pre-encoded chunk into the slot's open part, cutting it at a record
    /// boundary where the part reaches `part_max_rows` (the COPY path's chunks hold
    /// thousands of rows), so no object exceeds the limit. The rows after the cut go to
    /// the next part; the chunk's checkpoint stays with its last rows.
    async fn write_chunk(
        &self,
        run: &mut RunState,
        a: &mut Attempt,
        parts: &mut Parts,
        slot: &Slot,
        mut chunk: EncodedChunk,
    ) -> Result<()> {
        let dialect = self.sink.format().and_then(|f| f.csv_dialect());
        loop {
            if !parts.contains_key(slot) {
                let part = self.open_part(run, a, None, slot).await?;
                parts.insert(slot.clone(), part);
            }
            let part = parts.get_mut(slot).expect("opened above");
            if part.schema.is_none() {
                part.schema = chunk.schema.clone();
            }
            let room = self
                .options
                .part_max_rows
                .map(|m| m.saturating_sub(part.writer.rows()));
            let cut = match (room, dialect) {
                (Some(room), Some(d)) if room > 0 && chunk.rows > room => {
                    d.row_end(&chunk.bytes, room as usize).map(|at| (room, at))
                }
                _ => None,
            };
            let Some((room, at)) = cut else {
                return part.writer.write_encoded(chunk).await;
            };
            let head = EncodedChunk {
                bytes: chunk.bytes.slice(..at),
                rows: room,
                checkpoint: None,
                schema: chunk.schema.clone(),
            };
            part.writer.write_encoded(head).await?;
            chunk.bytes = chunk.bytes.slice(at..);
            chunk.rows -= room;
            let p = parts.remove(slot).expect("checked");
            let others = !parts.is_empty();
            self.commit_part(p, run, a, others).await?;
        }
    }

    /// How many of `n` more rows to write into the part, and whether it is full after
    /// them: exactly up to `part_max_rows`; for `part_max_bytes`, as many as the part's
    /// average encoded row so far says fit (into an empty part first a slice of 64 rows,
    /// to learn that size; at least one row, so every batch makes progress).
    fn rows_that_fit(&self, part: &OpenPart, n: usize) -> (usize, bool) {
        const PROBE: u64 = 64;
        let (rows, size) = (part.writer.rows(), part.writer.size());
        let n = n as u64;
        let mut fit = n;
        if let Some(m) = self.options.part_max_rows {
            fit = fit.min(m.saturating_sub(rows));
        }
        if let Some(m) = self.options.part_max_bytes {
            if rows > 0 && size > 0 {
                fit = fit.min(m.saturating_sub(size) / size.div_ceil(rows));
            } else if fit > PROBE {
                return (PROBE as usize, false);
            }
        }
        if rows == 0 {
            fit = fit.max(1);
        }
        (fit.min(n) as usize, true)
    }
}

/// Refuse a checkpoint that would not read back as itself (a NaN cursor saved as `null`
/// would fail every later run): better this run fails, naming it, than all later ones.
pub(super) fn readable(state: &PipelineState) -> Result<()> {
    let unreadable = |why: String| {
        Error::type_error(
            "state",
            format!(
                "checkpoint {:?} cannot be saved: it would not read back ({why})",
                state.checkpoint
            ),
        )
    };
    let json = serde_json::to_vec(state).map_err(|e| unreadable(e.to_string()))?;
    let back: PipelineState =
        serde_json::from_slice(&json).map_err(|e| unreadable(e.to_string()))?;
    if back.checkpoint != state.checkpoint {
        return Err(unreadable(format!("reads back as {:?}", back.checkpoint)));
    }
    Ok(())
}

/// What flows from the extraction task to the writer.
enum Item {
    Batch(Batch),
    Encoded(EncodedChunk),
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
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
