//! The [`RunLoop`] of one attempt: it opens the extraction (ahead in its own task, at
//! most `channel_capacity` items ahead), checks each batch, routes its rows to the open
//! part of their table and source partition, rotates parts by rows, bytes, schema and
//! interval, and hands every full part to its [`Committer`], which owns the commit
//! sequence. Data flows one way: extractor → loop → committer → sink, state store,
//! acknowledgement.

use super::committer::Committer;
use super::ledger::Ledger;
use super::part::{OpenPart, Slot};
use super::{OnSchemaChange, Pipeline, PipelineOptions};
use crate::model::EncodedChunk;
use crate::{Batch, Error, ExtractContext, Result, Severity, ValidationOutcome};
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::Receiver;

/// What flows from the extraction task to the loop.
enum Item {
    Batch(Batch),
    Encoded(EncodedChunk),
}

pub(super) struct RunLoop<'a> {
    p: &'a Pipeline,
    committer: Committer<'a>,
    /// The open parts: one per table and source partition.
    parts: BTreeMap<Slot, OpenPart>,
    /// The last schema of each table's rows (this attempt's, or saved), to find changes.
    seen_schemas: BTreeMap<String, SchemaRef>,
    /// When the open parts (or a position that moved without rows) are committed, for a
    /// pipeline with a commit interval.
    deadline: Option<tokio::time::Instant>,
}

impl<'a> RunLoop<'a> {
    /// One attempt of a run: load the saved state, extract from it to the end of the
    /// stream (or until cancelled), commit and save. On failure the open parts are
    /// aborted and what was committed past the last saved checkpoint is removed.
    pub(super) async fn attempt(p: &'a Pipeline, ledger: &'a mut Ledger) -> Result<()> {
        ledger.failed_at = None;
        let checked = p.sink.check().await;
        ledger.note(checked, "check the sink", None)?;
        ledger.rows_extracted = 0;
        let loaded = Committer::load(p, &mut *ledger).await;
        let committer = match loaded {
            Ok(c) => c,
            Err(e) => return ledger.note(Err(e), "load the saved state", None),
        };
        let mut l = RunLoop {
            p,
            seen_schemas: committer.saved_schemas().clone(),
            committer,
            parts: BTreeMap::new(),
            deadline: None,
        };
        let opened = l.open().await;
        let (mut rx, _producer) = l.noted(opened, "open the source", None)?;
        let mut result = l.consume(&mut rx).await;
        if result.is_ok() {
            let committed = l.commit_all().await;
            result = l.noted(committed, "commit", None);
        }
        if let Err(e) = result {
            for part in std::mem::take(&mut l.parts).into_values() {
                let key = part.writer.id().to_string();
                if let Err(abort_err) = part.writer.abort().await {
                    tracing::warn!(pipeline = %p.name, %key, error = %abort_err, "abort failed");
                }
            }
            l.committer.settle(!matches!(e, Error::Cancelled)).await;
            return Err(e);
        }
        Ok(())
    }

    /// `r`, noting where the run was if it failed (the report's `failed_at`); a step
    /// nearer the failure that noted it first is kept.
    fn noted<T>(&mut self, r: Result<T>, operation: &str, table: Option<&str>) -> Result<T> {
        self.committer.ledger.note(r, operation, table)
    }

    /// Start the extraction from the committer's start point, in its own task.
    async fn open(&mut self) -> Result<(Receiver<Result<Item>>, AbortOnDrop)> {
        let p = self.p;
        let from = self.committer.start();
        // A backfill from a given checkpoint has no schemas of its own to hand over.
        let schemas = match p.options.start_from {
            Some(_) => BTreeMap::new(),
            None => self.committer.saved_schemas().clone(),
        };
        let cx = ExtractContext::from_checkpoint(from.clone())
            .with_schemas(schemas)
            .with_stop(p.stop.clone());
        let caps = p.extractor.capabilities();
        let ledger = &mut *self.committer.ledger;
        if ledger.from.is_none() && ledger.objects.is_empty() {
            ledger.from = from.clone();
        }
        // An estimate for progress, asked once per run and only if someone watches.
        if p.progress.is_some() && caps.plans && !ledger.estimated {
            ledger.estimated = true;
            match p.extractor.plan(&cx).await {
                Ok(plan) => ledger.rows_estimated = plan.and_then(|p| p.estimated_rows),
                Err(e) => {
                    tracing::debug!(pipeline = %p.name, error = %e, "no row estimate for progress")
                }
            }
        }
        // The source may encode the format itself (PostgreSQL's COPY for CSV), when no
        // batch check needs the rows.
        let encoded = match p.sink.format() {
            Some(format) if caps.encodes && p.validators.is_empty() && p.options.encoded_path => {
                p.extractor.open_encoded(cx.clone(), format).await?
            }
            _ => None,
        };
        let stream: futures::stream::BoxStream<'static, Result<Item>> = match encoded {
            Some(chunks) => {
                tracing::info!(pipeline = %p.name, "the source encodes the output itself");
                ledger.source_encoded = true;
                chunks.map(|c| c.map(Item::Encoded)).boxed()
            }
            None => {
                let extraction = p.extractor.open(cx).await?;
                self.committer.acknowledge_to(extraction.acker);
                extraction.batches.map(|b| b.map(Item::Batch)).boxed()
            }
        };
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Item>>(p.options.channel_capacity);
        let producer = tokio::spawn(async move {
            let mut stream = stream;
            while let Some(item) = stream.next().await {
                let stop = item.is_err();
                if tx.send(item).await.is_err() || stop {
                    break;
                }
            }
        });
        Ok((rx, AbortOnDrop(producer)))
    }

    /// Take items until the extraction ends, committing on the interval.
    async fn consume(&mut self, rx: &mut Receiver<Result<Item>>) -> Result<()> {
        // A stop request ends a stream that can stop at a consistent point by itself;
        // any other run it cancels (a table read halfway is no such point).
        let stop_cancels = !self.p.extractor.capabilities().graceful_stop;
        loop {
            let wait = self.deadline;
            let done = self.committer.commit_done();
            let item = tokio::select! {
                biased;
                _ = self.p.cancel.cancelled() => return Err(Error::Cancelled),
                _ = self.p.stop.cancelled(), if stop_cancels => return Err(Error::Cancelled),
                _ = async { if let Some(at) = wait { tokio::time::sleep_until(at).await } }, if wait.is_some() => {
                    let committed = self.commit_all().await;
                    self.noted(committed, "commit", None)?;
                    self.deadline = None;
                    continue;
                }
                // A commit that ends while the source is idle is recorded, and its
                // checkpoint saved and acknowledged, now rather than at the next item.
                _ = async { if let Some(d) = &done { d.notified().await } }, if done.is_some() => {
                    let finished = self.committer.finish_inflight().await;
                    self.noted(finished, "commit", None)?;
                    self.settle_deadline();
                    self.committer.ledger.notify(self.p);
                    continue;
                }
                item = rx.recv() => item,
            };
            let slot = match item {
                None => return Ok(()),
                Some(Err(e)) => return self.noted(Err(e), "extract", None),
                Some(Ok(Item::Batch(batch))) => self.on_batch(batch).await?,
                Some(Ok(Item::Encoded(chunk))) => {
                    let written = self.on_chunk(chunk).await;
                    self.noted(written, "write", Some(self.p.extractor.stream()))?
                }
            };
            if self.is_full(&slot) {
                let rotated = self.rotate(&slot).await;
                self.noted(rotated, "commit", slot.0.as_deref())?;
            }
            let polled = self.committer.poll().await;
            self.noted(polled, "commit", None)?;
            self.settle_deadline();
            self.committer.ledger.notify(self.p);
        }
    }

    /// With no part open, a position that moved without rows is saved on the interval
    /// (an idle stream has no next batch); with nothing to save, no deadline.
    fn settle_deadline(&mut self) {
        if self.parts.is_empty() {
            self.deadline = match self.committer.unsaved() {
                true => self.deadline.or_else(|| next_deadline(&self.p.options)),
                false => None,
            };
        }
    }

    /// A batch: checked, its schema compared with its table's, its rows written; its
    /// checkpoint applies after its last row. Returns the slot its rows went to.
    async fn on_batch(&mut self, batch: Batch) -> Result<Slot> {
        let p = self.p;
        let slot: Slot = (batch.table.clone(), batch.partition);
        let table = batch.table.as_deref().unwrap_or(p.extractor.stream());
        let rows = batch.num_rows();
        self.committer.ledger.rows_extracted += rows as u64;
        p.meter.extracted(table, rows as u64);
        if batch.checkpoint.is_some() {
            self.committer
                .reached(None, newest_commit_ts(&batch.records));
        }
        if rows > 0 {
            let checked = self.validate(table, &batch);
            self.noted(checked, "validate", Some(table))?;
            let schema = batch.records.schema();
            let tracked = self.track_schema(table, &schema);
            self.noted(tracked, "compare schema", Some(table))?;
            // A schema change (a new column in a REST source, a DDL in CDC) starts a new
            // part: every object has one schema and one header.
            if self
                .parts
                .get(&slot)
                .is_some_and(|p| p.schema.as_ref() != Some(&schema))
            {
                let rotated = self.rotate(&slot).await;
                self.noted(rotated, "commit", Some(table))?;
            }
            let written = self.write_rows(&slot, &schema, &batch.records).await;
            self.noted(written, "write", Some(table))?;
        }
        self.committer.reached(batch.checkpoint, None);
        Ok(slot)
    }

    /// Write rows into the slot's part, splitting them where the part is full so that
    /// no object exceeds the limit; the batch's checkpoint applies only after its last
    /// row, so a part closed mid-batch carries the one before it.
    async fn write_rows(
        &mut self,
        slot: &Slot,
        schema: &SchemaRef,
        rows: &RecordBatch,
    ) -> Result<()> {
        let mut rest = rows.clone();
        loop {
            let options = &self.p.options;
            let part = self.part(slot, Some(schema)).await?;
            let (fit, full) = rows_that_fit(options, part, rest.num_rows());
            if fit >= rest.num_rows() {
                return part.writer.write(&rest).await;
            }
            if fit > 0 {
                part.writer.write(&rest.slice(0, fit)).await?;
                rest = rest.slice(fit, rest.num_rows() - fit);
            }
            if full {
                self.rotate(slot).await?;
            } // else a first slice, to learn the row size
        }
    }

    /// Bytes a source encoded itself (the stream's only slot).
    async fn on_chunk(&mut self, chunk: EncodedChunk) -> Result<Slot> {
        let stream = self.p.extractor.stream();
        let checkpoint = chunk.checkpoint.clone();
        self.committer.ledger.rows_extracted += chunk.rows;
        self.p.meter.extracted(stream, chunk.rows);
        let slot: Slot = (None, None);
        if !chunk.bytes.is_empty() {
            if let Some(schema) = &chunk.schema {
                self.track_schema(stream, schema)?;
            }
            self.write_chunk(&slot, chunk).await?;
        }
        self.committer.reached(checkpoint, None);
        Ok(slot)
    }

    /// Write a pre-encoded chunk into the slot's open part, cutting it at a record
    /// boundary where the part reaches `part_max_rows` (the COPY path's chunks hold
    /// thousands of rows), so no object exceeds the limit. The rows after the cut go to
    /// the next part; the chunk's checkpoint stays with its last rows.
    async fn write_chunk(&mut self, slot: &Slot, mut chunk: EncodedChunk) -> Result<()> {
        let dialect = self.p.sink.format().and_then(|f| f.csv_dialect());
        let max_rows = self.p.options.part_max_rows;
        loop {
            let part = self.part(slot, None).await?;
            if part.schema.is_none() {
                part.schema = chunk.schema.clone();
            }
            let room = max_rows.map(|m| m.saturating_sub(part.writer.rows()));
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
            self.rotate(slot).await?;
        }
    }

    /// The slot's open part, opened (and the interval started) if there is none.
    async fn part(&mut self, slot: &Slot, schema: Option<&SchemaRef>) -> Result<&mut OpenPart> {
        let p = self.p;
        match self.parts.entry(slot.clone()) {
            Entry::Occupied(e) => Ok(e.into_mut()),
            Entry::Vacant(e) => {
                let part = self.committer.open(slot, schema).await?;
                self.deadline = self.deadline.or_else(|| next_deadline(&p.options));
                Ok(e.insert(part))
            }
        }
    }

    /// Whether the slot's part has reached `part_max_rows` or `part_max_bytes`.
    fn is_full(&self, slot: &Slot) -> bool {
        let o = &self.p.options;
        self.parts.get(slot).is_some_and(|p| {
            o.part_max_rows.is_some_and(|m| p.writer.rows() >= m)
                || o.part_max_bytes.is_some_and(|m| p.writer.size() >= m)
        })
    }

    /// Close the slot's part and hand it to the committer.
    async fn rotate(&mut self, slot: &Slot) -> Result<()> {
        if let Some(part) = self.parts.remove(slot) {
            let others_open = !self.parts.is_empty();
            self.committer.commit(part, others_open).await?;
        }
        Ok(())
    }

    /// Commit every open part, then save the checkpoint (also when there was no part:
    /// the position may have moved without rows, e.g. CDC events of other tables).
    async fn commit_all(&mut self) -> Result<()> {
        // One intent for every part of this step, not one state save per part.
        let ids: Vec<String> = self
            .parts
            .values()
            .map(|p| p.writer.id().to_string())
            .collect();
        self.committer.intend(ids).await?;
        while let Some((_, part)) = self.parts.pop_first() {
            let others_open = !self.parts.is_empty();
            self.committer.commit(part, others_open).await?;
        }
        self.committer.save_checkpoint().await
    }

    /// Run the batch checks that apply to `table` on a batch of its rows.
    fn validate(&mut self, table: &str, batch: &Batch) -> Result<()> {
        for v in &self.p.validators {
            if !crate::traits::applies_to(v.tables(), table) {
                continue;
            }
            let started = Utc::now();
            let t = Instant::now();
            let problem = v.check(&batch.records)?;
            let entry = self
                .committer
                .ledger
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
            let Some(mut problem) = problem else { continue };
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
                    tracing::warn!(pipeline = %self.p.name, validator = v.name(), %problem, "validation warning")
                }
            }
        }
        Ok(())
    }

    /// Compare a table's new rows with the schema last seen for it (in this run, or
    /// saved with the checkpoint by an earlier one): a change is a warning and a new
    /// object, or an error, as [`OnSchemaChange`] says.
    fn track_schema(&mut self, table: &str, schema: &SchemaRef) -> Result<()> {
        if let Some(old) = self.seen_schemas.get(table)
            && old != schema
        {
            let changes = crate::model::schema_changes(old, schema);
            if !changes.is_empty() {
                let change = changes
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                if self.p.options.on_schema_change == OnSchemaChange::Fail {
                    return Err(Error::SchemaChanged {
                        table: table.to_string(),
                        change,
                    });
                }
                let w = format!(
                    "table {table}: schema changed: {change}; objects from here on have the \
                     new schema"
                );
                tracing::warn!(pipeline = %self.p.name, %w);
                self.committer.ledger.warn(w);
            }
        }
        self.seen_schemas.insert(table.to_string(), schema.clone());
        Ok(())
    }
}

/// When a commit interval started now ends, if the pipeline has one.
fn next_deadline(options: &PipelineOptions) -> Option<tokio::time::Instant> {
    options
        .commit_interval
        .map(|i| tokio::time::Instant::now() + i)
}

/// How many of `n` more rows to write into the part, and whether it is full after
/// them: exactly up to `part_max_rows`; for `part_max_bytes`, as many as the part's
/// average encoded row so far says fit (into an empty part first a slice of 64 rows, to
/// learn that size; at least one row, so every batch makes progress).
fn rows_that_fit(options: &PipelineOptions, part: &OpenPart, n: usize) -> (usize, bool) {
    const PROBE: u64 = 64;
    let (rows, size) = (part.writer.rows(), part.writer.size());
    let n = n as u64;
    let mut fit = n;
    if let Some(m) = options.part_max_rows {
        fit = fit.min(m.saturating_sub(rows));
    }
    if let Some(m) = options.part_max_bytes {
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

/// The largest `_commit_ts` in a batch of change rows, if it has that column.
fn newest_commit_ts(records: &RecordBatch) -> Option<DateTime<Utc>> {
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

/// Stops the extraction task when the attempt ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
