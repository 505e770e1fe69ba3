//! The commit sequence: open a part, commit it, write the manifest, save the checkpoint,
//! and only then acknowledge it to the source. Also schema tracking per table.

use super::part::OpenPart;
use super::run::{Attempt, RunState, Slot};
use super::{OnSchemaChange, Outcome, Pipeline, Progress, RunReport};
use crate::stores::PipelineState;
use crate::{BatchTarget, Checkpoint, Error, Leftover, ObjectReport, Result};
use arrow_schema::SchemaRef;
use chrono::{DateTime, Utc};
use std::time::Instant;

/// A part whose commit runs in the background while the next part is written.
pub(super) struct Inflight {
    handle: tokio::task::JoinHandle<Result<ObjectReport>>,
    schema: Option<SchemaRef>,
    /// Saved once the commit is done: the checkpoint pending when the part was closed,
    /// if no other part was open then.
    checkpoint: Option<Checkpoint>,
    /// The source time of the newest change up to `checkpoint` (for the lag metric).
    source_time: Option<DateTime<Utc>>,
}

impl Pipeline {
    /// Write the run's manifest, if the sink keeps one.
    pub(super) async fn write_manifest(&self, report: &mut RunReport) -> Result<()> {
        self.sink.write_manifest(report).await
    }

    /// Save the pending checkpoint if it moved, then acknowledge it to the source. Called
    /// only right after a commit with no other part open, so every batch up to it is in
    /// a committed object. The order (intent → objects → manifest → checkpoint →
    /// acknowledgement, see the module docs) is what makes a crash at any step safe: a
    /// kill before the checkpoint leaves an intent, and the next run removes the objects
    /// it names before reading their rows again; a kill after it leaves every object in
    /// a manifest; the source never forgets what is not saved.
    pub(super) async fn save_checkpoint(&self, run: &mut RunState, a: &mut Attempt) -> Result<()> {
        self.finish_inflight(run, a).await?;
        let Some(cp) = a.pending.clone() else {
            return Ok(());
        };
        let time = a.pending_time;
        self.save_checkpoint_at(run, a, cp, time).await
    }

    /// Save `cp`, whose data is all in committed objects, if it is not saved yet.
    /// `source_time` is the source time of the newest change up to it, if known.
    async fn save_checkpoint_at(
        &self,
        run: &mut RunState,
        a: &mut Attempt,
        cp: Checkpoint,
        source_time: Option<DateTime<Utc>>,
    ) -> Result<()> {
        if a.saved.as_ref() == Some(&cp) {
            return Ok(());
        }
        if let Some(state) = &self.state {
            let value = PipelineState {
                checkpoint: Some(cp.clone()),
                leftover: Leftover::default(),
                run_id: run.run_id.clone(),
                next_part: a.next_part,
                // The epoch manifest written just below is this save's.
                epochs: run.epochs + u64::from(!self.extractor.bounded()),
                updated_at: Utc::now(),
                schemas: a
                    .committed_schemas
                    .iter()
                    .map(|(t, s)| (t.clone(), s.as_ref().clone()))
                    .collect(),
            };
            super::run::readable(&value)?;
            self.write_running_manifest(run, &cp).await?;
            a.version = Some(state.save(&self.name, a.version, &value).await?);
            a.saved_state = Some(value);
            a.leftover = Leftover::default();
            tracing::debug!(pipeline = %self.name, checkpoint = ?cp, "checkpoint saved");
            let time = source_time.or_else(|| watermark_time(&cp));
            let lag = time.map(|t| (Utc::now() - t).as_seconds_f64().max(0.0));
            self.meter.checkpoint_saved(lag);
        } else if self.options.commit_interval.is_some() {
            // No checkpoint to protect, but keep a long-running stream's manifest current.
            if let Err(e) = self.write_running_manifest(run, &cp).await {
                tracing::warn!(pipeline = %self.name, error = %e, "manifest not updated");
            }
        }
        a.saved = Some(cp.clone());
        run.checkpoint_to = Some(cp.clone());
        if let Some(acker) = a.acker.as_mut() {
            acker.committed(&cp).await?;
            tracing::debug!(pipeline = %self.name, checkpoint = ?cp, "checkpoint acknowledged to the source");
            if let Some(lag) = acker.retained_bytes().await {
                run.source_lag_bytes = Some(lag);
                self.meter.source_lag(lag);
                tracing::debug!(pipeline = %self.name, lag_bytes = lag, "source log retained");
            }
        }
        Ok(())
    }

    /// The manifest written before a checkpoint save, outcome `running`, up to `cp`. A
    /// bounded run rewrites its one manifest with every object so far; an unbounded
    /// stream writes the next epoch manifest with the objects since the last one and
    /// forgets them, so neither the write nor the memory grows with the run's age.
    async fn write_running_manifest(&self, run: &mut RunState, cp: &Checkpoint) -> Result<()> {
        let mut snapshot = self.step_report(run);
        snapshot.checkpoint_to = Some(cp.clone());
        self.write_manifest(&mut snapshot).await?;
        if snapshot.epoch.is_some() {
            run.epochs += 1;
            run.objects.clear();
        }
        Ok(())
    }

    /// The manifest of the next checkpoint save, as far as it is known now: outcome
    /// `running`, every object so far; for an unbounded stream, the next epoch's.
    fn step_report(&self, run: &RunState) -> RunReport {
        let mut report = self.report(run.clone(), 1, Instant::now(), Ok(()));
        report.outcome = Outcome::Running;
        if !self.extractor.bounded() {
            report.epoch = Some(run.epochs + 1);
        }
        report
    }

    /// Before committing objects `ids`: save, beside the last saved checkpoint, that
    /// they (and any committed since that checkpoint) may be committed without it, and
    /// in which manifest they will be listed. A run that stops before the checkpoint
    /// covering them is saved thus leaves a record of them, and the run that resumes
    /// removes them ([`Pipeline::recover`]) instead of landing their rows a second time.
    /// Nothing to do without a state store (every run starts over) or on a sink that
    /// cannot remove what it committed.
    pub(super) async fn intend(
        &self,
        run: &RunState,
        a: &mut Attempt,
        ids: impl IntoIterator<Item = String>,
    ) -> Result<()> {
        let Some(state) = &self.state else {
            return Ok(());
        };
        if !self.sink.capabilities().discard {
            return Ok(());
        }
        let mut objects = a.leftover.objects.clone();
        for id in ids {
            if !objects.contains(&id) {
                objects.push(id);
            }
        }
        if objects.len() == a.leftover.objects.len() {
            return Ok(());
        }
        let leftover = Leftover::new(objects, self.sink.manifest_key(&self.step_report(run))?);
        let value = PipelineState {
            run_id: run.run_id.clone(),
            next_part: a.next_part,
            epochs: run.epochs,
            updated_at: Utc::now(),
            leftover: leftover.clone(),
            ..a.saved_state.clone().unwrap_or_default()
        };
        // Only once saved: a commit whose intent was not saved does not happen.
        a.version = Some(state.save(&self.name, a.version, &value).await?);
        a.leftover = leftover;
        Ok(())
    }

    /// At the start of an attempt: remove what a stopped run committed past its last
    /// saved checkpoint (listed in the loaded state, see [`Pipeline::intend`]), then
    /// save the state without it. The rows of those objects are read again from the
    /// checkpoint.
    pub(super) async fn recover(&self, run: &mut RunState, a: &mut Attempt) -> Result<()> {
        let (Some(state), Some(saved)) = (&self.state, &a.saved_state) else {
            return Ok(());
        };
        if saved.leftover.is_empty() {
            return Ok(());
        }
        let left = &saved.leftover;
        let note = if self.sink.capabilities().discard {
            self.sink.discard(left).await?;
            format!(
                "removed {} object(s) that run {} committed after its last saved checkpoint;                  their rows are read again",
                left.objects.len(),
                saved.run_id
            )
        } else {
            format!(
                "{} object(s) that run {} committed after its last saved checkpoint stay:                  this sink cannot remove them, and their rows are read again",
                left.objects.len(),
                saved.run_id
            )
        };
        tracing::warn!(pipeline = %self.name, objects = ?left.objects, "{note}");
        run.warnings.push(note);
        let value = PipelineState {
            leftover: Leftover::default(),
            updated_at: Utc::now(),
            ..saved.clone()
        };
        a.version = Some(state.save(&self.name, a.version, &value).await?);
        a.saved_state = Some(value);
        Ok(())
    }

    /// After a failed or cancelled attempt: remove the objects it committed past its
    /// last saved checkpoint and take them out of the run's report, so that its final
    /// manifest lists only what a checkpoint covers. Best effort: what is not removed
    /// now stays recorded in the state for the next run.
    pub(super) async fn undo_leftover(&self, run: &mut RunState, a: &mut Attempt) {
        let Some(state) = &self.state else {
            return;
        };
        if a.leftover.is_empty() {
            return;
        }
        let left = std::mem::take(&mut a.leftover);
        if let Err(e) = self.sink.discard(&left).await {
            tracing::warn!(pipeline = %self.name, error = %e, "objects past the checkpoint not removed; the next run removes them");
            return;
        }
        for key in &left.objects {
            if let Some(obj) = run.objects.remove(key) {
                run.rows_committed -= obj.rows;
                run.bytes_committed -= obj.bytes;
                run.objects_committed -= 1;
            }
        }
        let Some(saved) = a.saved_state.clone() else {
            // Nothing was saved before the intent: a failed first run leaves no state,
            // unless another runner has saved since (its state is not ours to delete).
            let ours =
                matches!(state.load(&self.name).await, Ok(Some(v)) if Some(v.version) == a.version);
            if ours {
                match state.delete(&self.name).await {
                    Ok(()) => a.version = None,
                    Err(e) => {
                        tracing::warn!(pipeline = %self.name, error = %e, "state not cleared")
                    }
                }
            }
            return;
        };
        let value = PipelineState {
            leftover: Leftover::default(),
            updated_at: Utc::now(),
            ..saved
        };
        match state.save(&self.name, a.version, &value).await {
            Ok(v) => {
                a.version = Some(v);
                a.saved_state = Some(value);
            }
            Err(e) => tracing::warn!(pipeline = %self.name, error = %e, "state not cleared"),
        }
    }

    /// Open the next part of `slot` (a table, a source partition). The `k`-th part of
    /// partition `p` is numbered `k * 10_000 + p`, so keys do not depend on how
    /// partitions interleave and never collide, however many parts (up to 10,000
    /// partitions); a table of a many-table stream is its key's `{stream}`.
    pub(super) async fn open_part(
        &self,
        run: &RunState,
        a: &mut Attempt,
        schema: Option<&SchemaRef>,
        slot: &Slot,
    ) -> Result<OpenPart> {
        let (table, partition) = slot;
        let number = match partition {
            None => a.next_part,
            Some(p) if *p >= 10_000 => {
                return Err(Error::config(
                    "pipeline",
                    format!("partition {p}: at most 10,000 partitions per extraction"),
                ));
            }
            Some(p) => a
                .partition_parts
                .get(p)
                .copied()
                .unwrap_or(0)
                .checked_mul(10_000)
                .and_then(|n| n.checked_add(*p))
                .ok_or_else(|| {
                    Error::config("pipeline", format!("partition {p}: part numbers exhausted"))
                })?,
        };
        let table = table.as_deref().unwrap_or(self.extractor.stream());
        let target = BatchTarget::new(
            self.name.clone(),
            self.extractor.source(),
            table,
            run.run_id.clone(),
            number,
            schema.cloned(),
        )
        .with_date(run.started_at.date_naive());
        let writer = self.sink.begin(&target).await?;
        match partition {
            None => a.next_part += 1,
            Some(p) => *a.partition_parts.entry(*p).or_insert(0) += 1,
        }
        Ok(OpenPart {
            writer,
            schema: schema.cloned(),
        })
    }

    /// Close a part: its commit (the upload's end; on a local folder the fsyncs and the
    /// rename) runs in the background while the next part is written, at most one at a
    /// time. If no other part is open (`others_open` false), the checkpoint pending now
    /// is saved once that commit is done: every batch up to it is in this part or an
    /// earlier one.
    pub(super) async fn commit_part(
        &self,
        part: OpenPart,
        run: &mut RunState,
        a: &mut Attempt,
        others_open: bool,
    ) -> Result<()> {
        self.finish_inflight(run, a).await?;
        let (checkpoint, source_time) = if others_open {
            (None, None)
        } else {
            (a.pending.clone(), a.pending_time)
        };
        self.intend(run, a, [part.writer.id().to_string()]).await?;
        let writer = part.writer;
        let span =
            tracing::info_span!("tributary.object", pipeline = %self.name, key = %writer.id());
        a.inflight = Some(Inflight {
            handle: tokio::spawn(tracing::Instrument::instrument(
                async move { writer.commit().await },
                span,
            )),
            schema: part.schema,
            checkpoint,
            source_time,
        });
        Ok(())
    }

    /// Wait for the background commit, if any: record its object, then save the
    /// checkpoint it carries.
    pub(super) async fn finish_inflight(&self, run: &mut RunState, a: &mut Attempt) -> Result<()> {
        let Some(f) = a.inflight.take() else {
            return Ok(());
        };
        let obj = f.handle.await.map_err(|e| Error::Storage {
            component: "pipeline".into(),
            message: format!("the task committing an object stopped: {e}"),
            retryable: false,
            source: None,
        })??;
        self.record(run, a, obj, f.schema);
        if let Some(cp) = f.checkpoint {
            self.save_checkpoint_at(run, a, cp, f.source_time).await?;
        }
        self.report_progress(run, a);
        Ok(())
    }

    /// Finish the background commit if it is done, without waiting.
    pub(super) async fn poll_inflight(&self, run: &mut RunState, a: &mut Attempt) -> Result<()> {
        if a.inflight.as_ref().is_some_and(|f| f.handle.is_finished()) {
            self.finish_inflight(run, a).await?;
        }
        Ok(())
    }

    /// After a failure: wait for a commit still running and list its object (it is
    /// whole at its key); save the checkpoint it carries too, unless the run was
    /// cancelled (a cancelled run saves and acknowledges nothing more).
    pub(super) async fn settle_inflight(&self, run: &mut RunState, a: &mut Attempt, save: bool) {
        let Some(f) = a.inflight.take() else {
            return;
        };
        match f.handle.await {
            Ok(Ok(obj)) => {
                self.record(run, a, obj, f.schema);
                if let (true, Some(cp)) = (save, f.checkpoint)
                    && let Err(e) = self.save_checkpoint_at(run, a, cp, f.source_time).await
                {
                    tracing::warn!(pipeline = %self.name, error = %e, "checkpoint of a committed part not saved");
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(pipeline = %self.name, error = %e, "a part's commit failed")
            }
            Err(e) => tracing::warn!(pipeline = %self.name, error = %e, "a commit task stopped"),
        }
    }

    fn record(
        &self,
        run: &mut RunState,
        a: &mut Attempt,
        obj: ObjectReport,
        schema: Option<SchemaRef>,
    ) {
        tracing::info!(pipeline = %self.name, key = %obj.key, rows = obj.rows, bytes = obj.bytes, "object committed");
        self.meter.committed(&obj.table, obj.rows, obj.bytes);
        if let Some(s) = schema {
            a.committed_schemas.insert(obj.table.clone(), s);
        }
        run.rows_committed += obj.rows;
        run.bytes_committed += obj.bytes;
        run.objects_committed += 1;
        run.objects.insert(obj.key.clone(), obj);
    }

    pub(super) fn report_progress(&self, run: &RunState, a: &Attempt) {
        if let Some(f) = &self.progress {
            f(&Progress {
                rows_extracted: a.rows_extracted,
                rows_committed: run.rows_committed,
                bytes_committed: run.bytes_committed,
                objects_committed: run.objects_committed,
                source_lag_bytes: run.source_lag_bytes,
                rows_estimated: run.rows_estimated,
            });
        }
    }

    /// Compare a table's new rows with the schema last seen for it (in this run, or
    /// saved with the checkpoint by an earlier one): a change is a warning and a new
    /// object, or an error, as [`OnSchemaChange`] says.
    pub(super) fn track_schema(
        &self,
        run: &mut RunState,
        a: &mut Attempt,
        table: &str,
        schema: &SchemaRef,
    ) -> Result<()> {
        if let Some(old) = a.seen_schemas.get(table)
            && old != schema
        {
            let changes = crate::model::schema_changes(old, schema);
            if !changes.is_empty() {
                let change = changes
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                match self.options.on_schema_change {
                    OnSchemaChange::Fail => {
                        return Err(Error::SchemaChanged {
                            table: table.to_string(),
                            change,
                        });
                    }
                    OnSchemaChange::NewObject => {
                        let w = format!(
                            "table {table}: schema changed: {change}; objects from here on \
                             have the new schema"
                        );
                        tracing::warn!(pipeline = %self.name, %w);
                        if !run.warnings.contains(&w) {
                            run.warnings.push(w);
                        }
                    }
                }
            }
        }
        a.seen_schemas.insert(table.to_string(), schema.clone());
        Ok(())
    }
}

/// A watermark's cursor as a time, when it is one (naive date-times read as UTC).
fn watermark_time(cp: &Checkpoint) -> Option<DateTime<Utc>> {
    match cp {
        Checkpoint::Watermark(w) => match &w.cursor {
            crate::CursorValue::TimestampTz(t) => Some(*t),
            crate::CursorValue::Timestamp(t) => Some(t.and_utc()),
            _ => None,
        },
        _ => None,
    }
}

/// The largest `_commit_ts` in a batch of change rows, if it has that column.
pub(super) fn newest_commit_ts(records: &arrow_array::RecordBatch) -> Option<DateTime<Utc>> {
    use arrow_array::types::{
        TimestampMicrosecondType as Us, TimestampMillisecondType as Ms,
        TimestampNanosecondType as Ns, TimestampSecondType as S,
    };
    use arrow_array::{Array, ArrowPrimitiveType, cast::AsArray};
    use arrow_schema::{DataType, TimeUnit};
    fn max<T: ArrowPrimitiveType<Native = i64>>(a: &dyn Array) -> Option<i64> {
        a.as_primitive::<T>().iter().flatten().max()
    }
    let col = records.column_by_name(crate::model::change::COMMIT_TS_COLUMN)?;
    let DataType::Timestamp(unit, _) = col.data_type() else {
        return None;
    };
    match unit {
        TimeUnit::Second => DateTime::from_timestamp(max::<S>(col)?, 0),
        TimeUnit::Millisecond => DateTime::from_timestamp_millis(max::<Ms>(col)?),
        TimeUnit::Microsecond => DateTime::from_timestamp_micros(max::<Us>(col)?),
        TimeUnit::Nanosecond => Some(DateTime::from_timestamp_nanos(max::<Ns>(col)?)),
    }
}
