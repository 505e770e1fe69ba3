//! The replication loop: pgoutput messages of the selected tables into change batches, a
//! checkpoint only at transaction ends (or where the WAL moved past other work), and the
//! acknowledged position reported to the server.

use super::ack::AckShared;
use super::pgoutput::{Message, Relation, decode};
use super::rows::{Acc, Layout};
use super::server::{self, lsn_text};
use super::session::{Ctx, wire_err};
use super::types::Types;
use crate::model::{ChangeMeta, Op};
use crate::sources::cdc::{Handed, Handoff};
use crate::sources::sql::SqlDriver;
use crate::{Batch, Checkpoint, Error, Result};
use pgwire_replication::{Lsn, ReplicationClient, ReplicationEvent};
use sqlx::postgres::PgConnection;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::Sender;

const C: &str = "postgres-cdc";
/// The prefix of the logical message that marks the end of a bounded run.
pub(crate) const UNTIL_PREFIX: &str = "tributary.until";
/// The prefix of heartbeat messages.
pub(crate) const HEARTBEAT_PREFIX: &str = "tributary.heartbeat";
/// Microseconds from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

struct State<'a> {
    ctx: &'a Ctx,
    handoff: Handoff<'a>,
    side: PgConnection,
    types: Types,
    selected: HashSet<u32>,
    relations: HashMap<u32, Option<Arc<Layout>>>,
    accs: BTreeMap<String, Acc>,
    /// The last safe resume point (outside any transaction).
    at: u64,
    /// The last position handed on.
    emitted: u64,
    in_txn: bool,
    txid: u32,
    commit_ts: i64,
    seq: u64,
}

/// `Ok(false)`: stop (the consumer went away).
type Go = Result<bool>;

impl State<'_> {
    /// A transaction ended or the position moved outside one: every table's rows, the
    /// last batch with the checkpoint; with no rows a position-only batch, at most every
    /// status interval (or now, when `force`). A due position goes on when the interval
    /// is up, even if no other message comes (a server shutting down waits for the
    /// reader to confirm the WAL's end).
    async fn boundary(&mut self, force: bool) -> Go {
        if self.accs.values().all(|a| a.len() == 0) && self.at <= self.emitted {
            return Ok(true);
        }
        let cp = Checkpoint::Lsn { lsn: self.at };
        match self.handoff.boundary(&mut self.accs, cp, force).await? {
            Handed::Sent => {
                self.emitted = self.at;
                Ok(true)
            }
            Handed::Deferred => Ok(true),
            Handed::Gone => Ok(false),
        }
    }

    fn meta(&mut self, lsn: u64) -> ChangeMeta {
        let o = self.ctx.config.cdc.options;
        let m = ChangeMeta {
            position: o.position.then(|| lsn_text(lsn)),
            commit_ts: o
                .commit_ts
                .then(|| chrono::DateTime::from_timestamp_micros(self.commit_ts + PG_EPOCH_MICROS))
                .flatten(),
            txid: o.txid.then(|| self.txid.to_string()),
            seq: o.seq.then_some(self.seq),
        };
        self.seq += 1;
        m
    }

    async fn on_relation(&mut self, rel: Relation) -> Go {
        if !self.selected.contains(&rel.oid) {
            self.relations.insert(rel.oid, None);
            return Ok(true);
        }
        let table = format!("{}.{}", rel.schema, rel.name);
        let mut decs = Vec::with_capacity(rel.columns.len());
        for c in &rel.columns {
            decs.push(
                self.types
                    .decoder(&mut self.side, &table, &c.name, c.type_oid, c.typmod)
                    .await?,
            );
        }
        let keys = server::primary_key(&mut self.side, rel.oid).await?;
        let layout = Arc::new(Layout::new(&rel, decs, &keys));
        self.relations.insert(rel.oid, Some(layout.clone()));
        if let Some(acc) = self.accs.get(&table)
            && acc.layout.row == layout.row
        {
            return Ok(true);
        }
        // A new definition (a DDL): what was gathered under the old one goes first.
        if let Some(mut old) = self.accs.remove(&table)
            && !self.handoff.rows(&table, &mut old).await?
        {
            return Ok(false);
        }
        let acc = Acc::for_layout(
            layout,
            self.ctx.config.cdc.options,
            self.ctx.config.cdc.batch_rows,
        )?;
        self.accs.insert(table, acc);
        Ok(true)
    }

    fn layout(&self, rel: u32) -> Result<Option<Arc<Layout>>> {
        match self.relations.get(&rel) {
            Some(l) => Ok(l.clone()),
            None => Err(Error::type_error(
                C,
                format!("a change of relation {rel} arrived before its Relation message"),
            )),
        }
    }

    /// Hand on a full table's rows mid-transaction (no checkpoint: not a resume point).
    async fn flush_full(&mut self, table: &str) -> Go {
        let n = self.ctx.config.cdc.batch_rows;
        self.handoff.rows_when_full(&mut self.accs, table, n).await
    }

    async fn on_data(&mut self, wal_start: u64, data: bytes::Bytes) -> Go {
        let msg = decode(data).map_err(|m| {
            Error::type_error(
                C,
                format!(
                    "a malformed pgoutput message at {}: {}",
                    lsn_text(wal_start),
                    m.0
                ),
            )
        })?;
        let (rel, op, new, old) = match msg {
            Message::Relation(r) => return self.on_relation(r).await,
            Message::Insert { rel, new } => (rel, Op::Insert, Some(new), None),
            Message::Update { rel, old, new } => (rel, Op::Update, Some(new), old),
            Message::Delete { rel, old } => (rel, Op::Delete, None, Some(old)),
            Message::Truncate { rels } => {
                for rel in rels {
                    let Some(layout) = self.layout(rel).ok().flatten() else {
                        continue;
                    };
                    let meta = self.meta(wal_start);
                    if let Some(acc) = self.accs.get_mut(&layout.table) {
                        acc.push(Op::Truncate, meta, None, None)?;
                    }
                    if !self.flush_full(&layout.table).await? {
                        return Ok(false);
                    }
                }
                return Ok(true);
            }
            Message::Type | Message::Origin | Message::Other(_) => return Ok(true),
        };
        let Some(layout) = self.layout(rel)? else {
            return Ok(true);
        };
        let meta = self.meta(wal_start);
        let acc = self
            .accs
            .get_mut(&layout.table)
            .expect("made with the layout");
        acc.push(
            op,
            meta,
            new.as_deref(),
            old.as_ref().map(|(k, c)| (*k, c.as_slice())),
        )?;
        self.flush_full(&layout.table).await
    }
}

/// Stream from the slot (the client has started) into `tx` until stopped, or until
/// `until` when set; the checkpoint starts at `at`.
pub(crate) async fn stream(
    ctx: &Ctx,
    client: &mut ReplicationClient,
    at: u64,
    until: Option<u64>,
    ack: &AckShared,
    tx: &Sender<Result<Batch>>,
) -> Result<()> {
    let side = ctx.sql.connect().await?;
    let mut st = State {
        ctx,
        handoff: Handoff::new(tx, ctx.config.status_interval),
        side,
        types: Types::default(),
        selected: ctx.tables.iter().map(|t| t.oid).collect(),
        relations: HashMap::new(),
        accs: BTreeMap::new(),
        at,
        emitted: at,
        in_txn: false,
        txid: 0,
        commit_ts: 0,
        seq: 0,
    };
    let read = ctx.config.cdc.timeouts.read();
    let mut reported = 0u64;
    let mut stopping = false;
    let heartbeat = ctx.config.heartbeat;
    let mut next_beat = Instant::now() + heartbeat.unwrap_or(Duration::from_secs(3600));
    loop {
        let acked = ack.acked();
        if acked > reported {
            client.update_applied_lsn(Lsn::from_u64(acked));
            reported = acked;
        }
        if stopping && !st.in_txn {
            st.boundary(true).await?;
            return Ok(());
        }
        let ev = tokio::select! {
            biased;
            ev = tokio::time::timeout(read, client.recv()) => ev,
            _ = ack.changed() => continue,
            // The pipeline went away (cancelled, failed): end the session now, so the slot
            // is free for the next reader instead of held until the process exits.
            _ = tx.closed() => return Ok(()),
            _ = ctx.stop.cancelled(), if !stopping => {
                stopping = true;
                continue;
            }
            _ = tokio::time::sleep_until(st.handoff.next_due().into()),
                if st.handoff.due && !st.in_txn => {
                if !st.boundary(false).await? {
                    return Ok(());
                }
                continue;
            }
            _ = tokio::time::sleep_until(next_beat.into()), if heartbeat.is_some() && !st.in_txn => {
                server::emit_message(&mut st.side, HEARTBEAT_PREFIX).await;
                next_beat = Instant::now() + heartbeat.unwrap_or_default();
                continue;
            }
        };
        let ev = match ev {
            Err(_) => {
                return Err(Error::Connection {
                    component: C.into(),
                    message: format!(
                        "no message from {} for {read:?} (not even a keepalive)",
                        ctx.addr()
                    ),
                    source: None,
                });
            }
            Ok(Err(e)) => return Err(wire_err(e, ctx)),
            Ok(Ok(None)) => {
                return Err(Error::Connection {
                    component: C.into(),
                    message: format!("{} ended the replication stream", ctx.addr()),
                    source: None,
                });
            }
            Ok(Ok(Some(ev))) => ev,
        };
        let go = match ev {
            ReplicationEvent::Begin {
                xid,
                commit_time_micros,
                ..
            } => {
                st.in_txn = true;
                st.txid = xid;
                st.commit_ts = commit_time_micros;
                st.seq = 0;
                true
            }
            ReplicationEvent::XLogData {
                wal_start, data, ..
            } => st.on_data(wal_start.as_u64(), data).await?,
            ReplicationEvent::Commit { end_lsn, .. } => {
                st.in_txn = false;
                st.at = st.at.max(end_lsn.as_u64());
                next_beat = Instant::now() + heartbeat.unwrap_or(Duration::from_secs(3600));
                if !st.boundary(false).await? {
                    return Ok(());
                }
                if until.is_some_and(|u| end_lsn.as_u64() >= u) {
                    stopping = true;
                }
                true
            }
            ReplicationEvent::KeepAlive { wal_end, .. } if !st.in_txn => {
                st.at = st.at.max(wal_end.as_u64());
                if until.is_some_and(|u| wal_end.as_u64() >= u) {
                    stopping = true;
                }
                st.boundary(false).await?
            }
            ReplicationEvent::Message {
                transactional: false,
                lsn,
                prefix,
                ..
            } if !st.in_txn => {
                st.at = st.at.max(lsn.as_u64());
                if prefix == UNTIL_PREFIX && until.is_some_and(|u| lsn.as_u64() >= u) {
                    stopping = true;
                }
                st.boundary(false).await?
            }
            ReplicationEvent::StoppedAt { .. } => {
                stopping = true;
                true
            }
            _ => true,
        };
        if !go {
            return Ok(());
        }
    }
}
