//! How a change reader hands its transactions on: rows of a transaction may go in
//! several batches (a full batch mid-transaction, the rows under a table's old
//! definition), but only the last batch at a transaction boundary carries the
//! checkpoint; a position that moved past other tables' transactions goes as a
//! position-only batch, at most every interval.

use super::ChangeRows;
use crate::{Batch, Checkpoint, Result};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::Sender;

/// What [`Handoff::boundary`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Handed {
    /// The rows and the checkpoint went on.
    Sent,
    /// Nothing gathered and the interval not up: the position goes on later.
    Deferred,
    /// The consumer went away.
    Gone,
}

/// One reader's way to the pipeline.
pub(crate) struct Handoff<'a> {
    tx: &'a Sender<Result<Batch>>,
    every: Duration,
    last: Instant,
    /// The position moved on without being handed on: a position-only batch is due.
    pub(crate) due: bool,
}

impl<'a> Handoff<'a> {
    /// Hand on to `tx`, position-only batches at most every `every`.
    pub(crate) fn new(tx: &'a Sender<Result<Batch>>, every: Duration) -> Self {
        Handoff {
            tx,
            every,
            last: Instant::now(),
            due: false,
        }
    }

    /// `false` when the consumer went away.
    pub(crate) async fn send(&self, b: Batch) -> bool {
        self.tx.send(Ok(b)).await.is_ok()
    }

    /// When a due position-only batch goes on even if nothing else happens.
    pub(crate) fn next_due(&self) -> Instant {
        self.last + self.every
    }

    /// Hand on `table`'s gathered rows with no checkpoint (not a resume point);
    /// `Ok(false)` when the consumer went away.
    pub(crate) async fn rows<L>(&self, table: &str, acc: &mut ChangeRows<L>) -> Result<bool> {
        if acc.len() == 0 {
            return Ok(true);
        }
        let b = acc.finish(table)?;
        Ok(self.send(Batch::new(b).with_table(table.to_string())).await)
    }

    /// Hand on `table`'s rows mid-transaction once it holds `batch_rows` of them (no
    /// checkpoint: not a resume point); `Ok(false)` when the consumer went away.
    pub(crate) async fn rows_when_full<L>(
        &self,
        accs: &mut BTreeMap<String, ChangeRows<L>>,
        table: &str,
        batch_rows: usize,
    ) -> Result<bool> {
        match accs.get_mut(table) {
            Some(acc) if acc.len() >= batch_rows => self.rows(table, acc).await,
            _ => Ok(true),
        }
    }

    /// A transaction ended, or the position moved outside one: every table's rows, the
    /// last batch carrying `cp`; with no rows a position-only batch, at most every
    /// interval (or now, when `force`).
    pub(crate) async fn boundary<L>(
        &mut self,
        accs: &mut BTreeMap<String, ChangeRows<L>>,
        cp: Checkpoint,
        force: bool,
    ) -> Result<Handed> {
        let mut out = Vec::new();
        for (t, acc) in accs.iter_mut() {
            if acc.len() > 0 {
                out.push((t.clone(), acc.finish(t)?));
            }
        }
        if out.is_empty() && !force && Instant::now() < self.next_due() {
            self.due = true;
            return Ok(Handed::Deferred);
        }
        let last = out.len();
        if last == 0 && !self.send(Batch::position(cp.clone())).await {
            return Ok(Handed::Gone);
        }
        for (i, (t, b)) in out.into_iter().enumerate() {
            let mut batch = Batch::new(b).with_table(t);
            if i + 1 == last {
                batch = batch.with_checkpoint(cp.clone());
            }
            if !self.send(batch).await {
                return Ok(Handed::Gone);
            }
        }
        self.last = Instant::now();
        self.due = false;
        Ok(Handed::Sent)
    }
}
