//! The [`Committer`]: the one owner of an attempt's commit sequence. It opens parts,
//! commits them (one at a time in the background), records the intent before a commit,
//! writes the manifest, saves the checkpoint and only then acknowledges it to the
//! source; it also removes what a stopped run committed past its checkpoint. The order,
//! and why a kill between any two steps is safe, is in the [module docs](super).

use super::Pipeline;
use super::ledger::Ledger;
use super::part::{OpenPart, Slot};
use crate::stores::PipelineState;
use crate::{Acker, BatchTarget, Checkpoint, Error, Leftover, ObjectReport, Result};
use arrow_schema::SchemaRef;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A part whose commit runs in the background while the next part is written.
struct Inflight {
    handle: tokio::task::JoinHandle<Result<ObjectReport>>,
    schema: Option<SchemaRef>,
    /// Saved once the commit is done: the checkpoint pending when the part was closed,
    /// if no other part was open then.
    checkpoint: Option<Checkpoint>,
    /// The source time of the newest change up to `checkpoint` (for the lag metric).
    source_time: Option<DateTime<Utc>>,
    /// Told when the commit is done, so an idle loop records it (and saves and
    /// acknowledges its checkpoint) at once rather than at its next item.
    done: Arc<tokio::sync::Notify>,
}

pub(super) struct Committer<'a> {
    p: &'a Pipeline,
    /// The run's record, which every commit adds to.
    pub(super) ledger: &'a mut Ledger,
    /// The version of the state this attempt last saved or loaded.
    version: Option<u64>,
    /// That state (what an intent starts from).
    saved_state: Option<PipelineState>,
    /// The checkpoint last saved (or, without a state store, reached by committed data).
    saved: Option<Checkpoint>,
    /// The checkpoint of the last batch read.
    pending: Option<Checkpoint>,
    /// The source time of the newest change up to `pending`, when the rows carry one.
    pending_time: Option<DateTime<Utc>>,
    next_part: u32,
    /// Parts opened so far per source partition (see [`Batch::partition`](crate::Batch)).
    partition_parts: HashMap<u32, u32>,
    /// Where saved checkpoints are acknowledged (none on the pre-encoded path).
    acker: Option<Box<dyn Acker>>,
    /// The schema of each table's last committed object, saved with the checkpoint.
    committed_schemas: BTreeMap<String, SchemaRef>,
    inflight: Option<Inflight>,
    /// Objects whose commit began since the last checkpoint save, as the intent saved
    /// them (see [`Committer::intend`]).
    leftover: Leftover,
    /// The sink stores the state with the data
    /// ([`SinkCapabilities::transactional_checkpoint`](crate::SinkCapabilities)).
    transactional: bool,
    /// Units a transactional sink staged since its last state commit: visible, and in
    /// the ledger, only once published with a state.
    staged: Vec<ObjectReport>,
}

impl<'a> Committer<'a> {
    /// Load the saved state, and remove what a stopped run committed past it before
    /// anything is read.
    pub(super) async fn load(p: &'a Pipeline, ledger: &'a mut Ledger) -> Result<Self> {
        let loaded = match &p.state {
            Some(s) => s.load(&p.name).await?,
            None => None,
        };
        let version = loaded.as_ref().map(|v| v.version);
        let transactional = p.sink.capabilities().transactional_checkpoint;
        // A sink that commits the state with the data holds the truth; a state store's
        // copy is saved after that commit and may be one step behind.
        let from_sink = match transactional {
            true => p.sink.load_state(&p.name).await?,
            false => None,
        };
        let state = from_sink.or(loaded.map(|v| v.value));
        // A retry of this run (same run id, another process) continues its numbering.
        let own = state.as_ref().filter(|v| v.run_id == ledger.run_id);
        if let Some(v) = own {
            ledger.epochs = ledger.epochs.max(v.epochs);
        }
        let next_part = own.map_or(0, |v| v.next_part);
        let committed_schemas = state
            .as_ref()
            .map(|v| {
                v.schemas
                    .iter()
                    .map(|(t, s)| (t.clone(), Arc::new(s.clone())))
                    .collect()
            })
            .unwrap_or_default();
        let saved = state.as_ref().and_then(|v| v.checkpoint.clone());
        let mut c = Committer {
            p,
            ledger,
            version,
            saved_state: state,
            pending: p.options.start_from.clone().or_else(|| saved.clone()),
            saved,
            pending_time: None,
            next_part,
            partition_parts: HashMap::new(),
            acker: None,
            committed_schemas,
            inflight: None,
            leftover: Leftover::default(),
            transactional,
            staged: Vec::new(),
        };
        c.recover().await?;
        Ok(c)
    }

    /// The schema of every table as saved with the checkpoint.
    pub(super) fn saved_schemas(&self) -> &BTreeMap<String, SchemaRef> {
        &self.committed_schemas
    }

    /// Where the attempt starts: the given start, or the saved checkpoint.
    pub(super) fn start(&self) -> Option<Checkpoint> {
        self.pending.clone()
    }

    /// Where saved checkpoints are to be acknowledged.
    pub(super) fn acknowledge_to(&mut self, acker: Box<dyn Acker>) {
        self.acker = Some(acker);
    }

    /// The extraction reached `cp`, with changes up to `source_time`.
    pub(super) fn reached(&mut self, cp: Option<Checkpoint>, source_time: Option<DateTime<Utc>>) {
        if let Some(t) = source_time {
            self.pending_time = self.pending_time.max(Some(t));
        }
        if let Some(cp) = cp {
            self.pending = Some(cp);
        }
    }

    /// Whether anything is still to be saved: a commit under way, or a position that
    /// moved without rows.
    pub(super) fn unsaved(&self) -> bool {
        self.inflight.is_some() || self.pending != self.saved || !self.staged.is_empty()
    }

    /// Open the next part of `slot` (a table, a source partition). The `k`-th part of
    /// partition `p` is numbered `k * 10_000 + p`, so keys do not depend on how
    /// partitions interleave and never collide, however many parts (up to 10,000
    /// partitions); a table of a many-table stream is its key's `{stream}`.
    pub(super) async fn open(
        &mut self,
        slot: &Slot,
        schema: Option<&SchemaRef>,
    ) -> Result<OpenPart> {
        let (table, partition) = slot;
        let number = match partition {
            None => self.next_part,
            Some(p) if *p >= 10_000 => {
                return Err(Error::config(
                    "pipeline",
                    format!("partition {p}: at most 10,000 partitions per extraction"),
                ));
            }
            Some(p) => self
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
        let table = table.as_deref().unwrap_or(self.p.extractor.stream());
        let target = BatchTarget::new(
            self.p.name.clone(),
            self.p.extractor.source(),
            table,
            self.ledger.run_id.clone(),
            number,
            schema.cloned(),
        )
        .with_date(self.ledger.started_at.date_naive());
        let writer = self.p.sink.begin(&target).await?;
        match partition {
            None => self.next_part += 1,
            Some(p) => *self.partition_parts.entry(*p).or_insert(0) += 1,
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
    pub(super) async fn commit(&mut self, part: OpenPart, others_open: bool) -> Result<()> {
        self.finish_inflight().await?;
        let (checkpoint, source_time) = if others_open {
            (None, None)
        } else {
            (self.pending.clone(), self.pending_time)
        };
        self.intend([part.writer.id().to_string()]).await?;
        let writer = part.writer;
        let span =
            tracing::info_span!("tributary.object", pipeline = %self.p.name, key = %writer.id());
        let done = Arc::new(tokio::sync::Notify::new());
        let tell = done.clone();
        self.inflight = Some(Inflight {
            handle: tokio::spawn(tracing::Instrument::instrument(
                async move {
                    let r = writer.commit().await;
                    tell.notify_one();
                    r
                },
                span,
            )),
            schema: part.schema,
            checkpoint,
            source_time,
            done,
        });
        Ok(())
    }

    /// Before committing objects `ids`: save, beside the last saved checkpoint, that
    /// they (and any committed since that checkpoint) may be committed without it, and
    /// in which manifest they will be listed. A run that stops before the checkpoint
    /// covering them is saved thus leaves a record of them, and the run that resumes
    /// removes them ([`Committer::recover`]) instead of landing their rows a second
    /// time. Nothing to do without a state store (every run starts over) or on a sink
    /// that cannot remove what it committed.
    pub(super) async fn intend(&mut self, ids: impl IntoIterator<Item = String>) -> Result<()> {
        let Some(state) = &self.p.state else {
            return Ok(());
        };
        // A transactional sink leaves nothing behind: what it staged past its state is
        // never visible.
        if self.transactional || !self.p.sink.capabilities().discard {
            return Ok(());
        }
        let mut objects = self.leftover.objects.clone();
        for id in ids {
            if !objects.contains(&id) {
                objects.push(id);
            }
        }
        if objects.len() == self.leftover.objects.len() {
            return Ok(());
        }
        // The key depends on the run, not on its objects: leave them out of the copy.
        let objects_so_far = std::mem::take(&mut self.ledger.objects);
        let head = self.ledger.step_report(self.p);
        self.ledger.objects = objects_so_far;
        let manifest = self.p.sink.manifest_key(&head)?;
        let leftover = Leftover::new(objects, manifest);
        let value = PipelineState {
            run_id: self.ledger.run_id.clone(),
            next_part: self.next_part,
            epochs: self.ledger.epochs,
            updated_at: Utc::now(),
            leftover: leftover.clone(),
            ..self.saved_state.clone().unwrap_or_default()
        };
        // Only once saved: a commit whose intent was not saved does not happen.
        self.version = Some(state.save(&self.p.name, self.version, &value).await?);
        self.leftover = leftover;
        Ok(())
    }

    /// Remove what a stopped run committed past its last saved checkpoint (listed in the
    /// loaded state, see [`Committer::intend`]), then save the state without it. The
    /// rows of those objects are read again from the checkpoint.
    async fn recover(&mut self) -> Result<()> {
        let (Some(state), Some(saved)) = (&self.p.state, &self.saved_state) else {
            return Ok(());
        };
        if saved.leftover.is_empty() {
            return Ok(());
        }
        let left = &saved.leftover;
        let note = if self.p.sink.capabilities().discard {
            self.p.sink.discard(left).await?;
            format!(
                "removed {} object(s) that run {} committed after its last saved checkpoint; \
                 their rows are read again",
                left.objects.len(),
                saved.run_id
            )
        } else {
            format!(
                "{} object(s) that run {} committed after its last saved checkpoint stay: \
                 this sink cannot remove them, and their rows are read again",
                left.objects.len(),
                saved.run_id
            )
        };
        tracing::warn!(pipeline = %self.p.name, objects = ?left.objects, "{note}");
        self.ledger.warn(note);
        let value = PipelineState {
            leftover: Leftover::default(),
            updated_at: Utc::now(),
            ..saved.clone()
        };
        self.version = Some(state.save(&self.p.name, self.version, &value).await?);
        self.saved_state = Some(value);
        Ok(())
    }

    /// Save the pending checkpoint once every commit is done (also when there was no
    /// part: the position may have moved without rows, e.g. CDC events of other tables).
    pub(super) async fn save_checkpoint(&mut self) -> Result<()> {
        self.finish_inflight().await?;
        let Some(cp) = self.pending.clone() else {
            // Rows with no position (a full extraction) appear at the end, all at once.
            if !self.staged.is_empty() {
                let value = self.state_at(None);
                self.publish(&value).await?;
                self.saved_state = Some(value);
            }
            return Ok(());
        };
        let time = self.pending_time;
        self.save_checkpoint_at(cp, time).await
    }

    /// Save `cp`, whose data is all in committed objects, if it is not saved yet; then
    /// acknowledge it to the source. `source_time` is the source time of the newest
    /// change up to it, if known.
    async fn save_checkpoint_at(
        &mut self,
        cp: Checkpoint,
        source_time: Option<DateTime<Utc>>,
    ) -> Result<()> {
        if self.saved.as_ref() == Some(&cp) {
            return Ok(());
        }
        let value = self.state_at(Some(cp.clone()));
        if self.transactional || self.p.state.is_some() {
            readable(&value)?;
        }
        if self.transactional {
            self.publish(&value).await?;
            if self.p.state.is_none() {
                self.saved_state = Some(value.clone());
            }
        }
        if let Some(state) = &self.p.state {
            self.write_running_manifest(&cp).await?;
            let saved = state.save(&self.p.name, self.version, &value).await;
            self.version = Some(self.ledger.note(saved, "save the checkpoint", None)?);
            self.saved_state = Some(value);
            self.leftover = Leftover::default();
            tracing::debug!(pipeline = %self.p.name, checkpoint = ?cp, "checkpoint saved");
            let time = source_time.or_else(|| watermark_time(&cp));
            let lag = time.map(|t| (Utc::now() - t).as_seconds_f64().max(0.0));
            self.p.meter.checkpoint_saved(lag);
        } else if self.p.options.commit_interval.is_some() {
            // No checkpoint to protect, but keep a long-running stream's manifest current.
            if let Err(e) = self.write_running_manifest(&cp).await {
                tracing::warn!(pipeline = %self.p.name, error = %e, "manifest not updated");
            }
        }
        self.saved = Some(cp.clone());
        self.ledger.checkpoint_to = Some(cp.clone());
        if let Some(acker) = self.acker.as_mut() {
            let acked = acker.committed(&cp).await;
            self.ledger.note(acked, "acknowledge", None)?;
            tracing::debug!(pipeline = %self.p.name, checkpoint = ?cp, "checkpoint acknowledged to the source");
            if let Some(lag) = acker.retained_bytes().await {
                self.ledger.source_lag_bytes = Some(lag);
                self.p.meter.source_lag(lag);
                tracing::debug!(pipeline = %self.p.name, lag_bytes = lag, "source log retained");
            }
        }
        Ok(())
    }

    /// The state to save at `cp`: this run's, with the schemas of everything committed.
    fn state_at(&self, cp: Option<Checkpoint>) -> PipelineState {
        PipelineState {
            checkpoint: cp,
            leftover: Leftover::default(),
            run_id: self.ledger.run_id.clone(),
            next_part: self.next_part,
            // The epoch manifest written with the save is the save's.
            epochs: self.ledger.epochs + u64::from(!self.p.extractor.capabilities().bounded),
            updated_at: Utc::now(),
            schemas: self
                .committed_schemas
                .iter()
                .map(|(t, s)| (t.clone(), s.as_ref().clone()))
                .collect(),
        }
    }

    /// Make a transactional sink's staged units visible together with `value`, in the
    /// sink's one commit; only then are they the run's objects.
    async fn publish(&mut self, value: &PipelineState) -> Result<()> {
        let units = std::mem::take(&mut self.staged);
        self.p
            .sink
            .commit_state(&self.p.name, &units, value)
            .await?;
        tracing::debug!(pipeline = %self.p.name, checkpoint = ?value.checkpoint, units = units.len(), "data and state committed together");
        for u in units {
            self.published(u);
        }
        Ok(())
    }

    /// The manifest written before a checkpoint save, outcome `running`, up to `cp`. A
    /// bounded run rewrites its one manifest with every object so far; an unbounded
    /// stream writes the next epoch manifest with the objects since the last one and
    /// forgets them, so neither the write nor the memory grows with the run's age.
    async fn write_running_manifest(&mut self, cp: &Checkpoint) -> Result<()> {
        let mut snapshot = self.ledger.step_report(self.p);
        snapshot.checkpoint_to = Some(cp.clone());
        super::report::write_manifest(&*self.p.sink, &mut snapshot).await?;
        if snapshot.epoch.is_some() {
            self.ledger.epochs += 1;
            self.ledger.objects.clear();
        }
        Ok(())
    }

    /// What tells that the background commit is done, while there is one.
    pub(super) fn commit_done(&self) -> Option<Arc<tokio::sync::Notify>> {
        self.inflight.as_ref().map(|f| f.done.clone())
    }

    /// Wait for the background commit, if any: record its object, then save the
    /// checkpoint it carries.
    pub(super) async fn finish_inflight(&mut self) -> Result<()> {
        let Some(f) = self.inflight.take() else {
            return Ok(());
        };
        let obj = f.handle.await.map_err(|e| Error::Storage {
            component: "pipeline".into(),
            message: format!("the task committing an object stopped: {e}"),
            retryable: false,
            source: None,
        })??;
        self.record(obj, f.schema);
        if let Some(cp) = f.checkpoint {
            self.save_checkpoint_at(cp, f.source_time).await?;
        }
        self.ledger.notify(self.p);
        Ok(())
    }

    /// Finish the background commit if it is done, without waiting.
    pub(super) async fn poll(&mut self) -> Result<()> {
        if self
            .inflight
            .as_ref()
            .is_some_and(|f| f.handle.is_finished())
        {
            self.finish_inflight().await?;
        }
        Ok(())
    }

    /// After a failure: wait for a commit still running and record its object (it is
    /// whole at its key); save the checkpoint it carries too, unless the run was
    /// cancelled (a cancelled run saves and acknowledges nothing more). Then remove the
    /// objects committed past the last saved checkpoint and take them out of the
    /// ledger, so that the run's final manifest lists only what a checkpoint covers.
    /// Best effort: what is not removed now stays in the state for the next run.
    pub(super) async fn settle(&mut self, save: bool) {
        if let Some(f) = self.inflight.take() {
            match f.handle.await {
                Ok(Ok(obj)) => {
                    self.record(obj, f.schema);
                    if let (true, Some(cp)) = (save, f.checkpoint)
                        && let Err(e) = self.save_checkpoint_at(cp, f.source_time).await
                    {
                        tracing::warn!(pipeline = %self.p.name, error = %e, "checkpoint of a committed part not saved");
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(pipeline = %self.p.name, error = %e, "a part's commit failed")
                }
                Err(e) => {
                    tracing::warn!(pipeline = %self.p.name, error = %e, "a commit task stopped")
                }
            }
        }
        self.undo_leftover().await;
        if !self.staged.is_empty() {
            // Never published: invisible, and read again from the stored state.
            tracing::info!(pipeline = %self.p.name, units = self.staged.len(), "staged units past the stored state stay unpublished");
            self.staged.clear();
        }
    }

    async fn undo_leftover(&mut self) {
        let Some(state) = &self.p.state else {
            return;
        };
        if self.leftover.is_empty() {
            return;
        }
        let left = std::mem::take(&mut self.leftover);
        if let Err(e) = self.p.sink.discard(&left).await {
            tracing::warn!(pipeline = %self.p.name, error = %e, "objects past the checkpoint not removed; the next run removes them");
            return;
        }
        for key in &left.objects {
            self.ledger.forget(key);
        }
        let Some(saved) = self.saved_state.clone() else {
            // Nothing was saved before the intent: a failed first run leaves no state,
            // unless another runner has saved since (its state is not ours to delete).
            let ours = matches!(state.load(&self.p.name).await, Ok(Some(v)) if Some(v.version) == self.version);
            if ours {
                match state.delete(&self.p.name).await {
                    Ok(()) => self.version = None,
                    Err(e) => {
                        tracing::warn!(pipeline = %self.p.name, error = %e, "state not cleared")
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
        match state.save(&self.p.name, self.version, &value).await {
            Ok(v) => {
                self.version = Some(v);
                self.saved_state = Some(value);
            }
            Err(e) => tracing::warn!(pipeline = %self.p.name, error = %e, "state not cleared"),
        }
    }

    /// A part's commit is done: its object is visible, or (transactional sink) staged
    /// until its state is committed.
    fn record(&mut self, obj: ObjectReport, schema: Option<SchemaRef>) {
        if let Some(s) = schema {
            self.committed_schemas.insert(obj.table.clone(), s);
        }
        match self.transactional {
            true => self.staged.push(obj),
            false => self.published(obj),
        }
    }

    fn published(&mut self, obj: ObjectReport) {
        tracing::info!(pipeline = %self.p.name, key = %obj.key, rows = obj.rows, bytes = obj.bytes, "object committed");
        self.p.meter.committed(&obj.table, obj.rows, obj.bytes);
        self.ledger.record(obj);
    }
}

/// Refuse a checkpoint that would not read back as itself (a NaN cursor saved as `null`
/// would fail every later run): better this run fails, naming it, than all later ones.
fn readable(state: &PipelineState) -> Result<()> {
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
