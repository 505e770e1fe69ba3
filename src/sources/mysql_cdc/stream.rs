//! The binlog event loop: row events of the selected tables into change batches, a
//! checkpoint only at transaction ends.

use super::dump::open_stream;
use super::extractor::Ctx;
use super::layout::columns_of;
use super::position::my_err;
pub(crate) use super::position::{Gtids, Position};
use super::rows::{Acc, image};
use super::statements::{dml_table, truncated_table};
use super::types::{CellError, Col, Layout, Reader};
use crate::model::{ChangeMeta, Op};
use crate::sources::cdc::{Handed, Handoff};
use crate::sources::sql::SqlDriver;
use crate::{Batch, Checkpoint, Error, Result};
use futures::StreamExt;
use mysql_async::binlog::EventType;
use mysql_async::binlog::events::{EventData, RowsEventData, TableMapEvent};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::Sender;

const C: &str = "mysql-cdc";
/// MariaDB's own event types, which `mysql_common` does not parse.
const MARIADB_GTID: u8 = 162;
const MARIADB_GTID_STANDALONE: u8 = 1;

/// A table id's table map, and its layout when the table is selected.
struct Mapped {
    table: String,
    tme: TableMapEvent<'static>,
    layout: Option<Arc<Layout>>,
}

/// Where a run reads from and until when.
pub(crate) struct Plan {
    pub from: Position,
    pub until: Option<(String, u64)>,
    /// Resume by GTID (`@slave_connect_state`) rather than file and offset.
    pub by_gtid: bool,
}

impl Plan {
    /// Whether the dump starts from the GTID position rather than the file and offset.
    pub(crate) fn uses_gtid(&self, ctx: &Ctx) -> bool {
        self.by_gtid && ctx.facts.mariadb && self.from.gtids.text().is_some()
    }
}

struct State<'a> {
    ctx: &'a Ctx,
    handoff: Handoff<'a>,
    /// The last safe resume point (outside any transaction).
    at: Position,
    file: String,
    seen_fde: bool,
    in_txn: bool,
    began: bool,
    txid: Option<String>,
    txn_gtid: Option<(u32, u32, u64)>,
    seq: u64,
    maps: HashMap<u64, Mapped>,
    accs: BTreeMap<String, Acc>,
    layouts: HashMap<String, Arc<Layout>>,
}

/// `Ok(false)`: stop (the consumer went away or the end position was reached).
type Go = Result<bool>;

impl State<'_> {
    fn checkpoint(&self) -> Checkpoint {
        self.at.checkpoint(self.ctx.facts.identity())
    }

    /// Hand on a full table's rows mid-transaction (no checkpoint: not a resume point).
    async fn flush_full(&mut self, table: &str) -> Go {
        let n = self.ctx.config.cdc.batch_rows;
        self.handoff.rows_when_full(&mut self.accs, table, n).await
    }

    /// A transaction ended (or the position moved outside one): hand on every table's
    /// rows, the last batch carrying the checkpoint; with no rows, a position-only batch
    /// at most every `position_every` (or now, when `force`).
    async fn boundary(&mut self, force: bool) -> Go {
        let cp = self.checkpoint();
        let handed = self.handoff.boundary(&mut self.accs, cp, force).await?;
        Ok(handed != Handed::Gone)
    }

    fn end_txn(&mut self, log_pos: u64) {
        if let Some((d, s, n)) = self.txn_gtid.take() {
            self.at.gtids.0.insert(d, (s, n));
        }
        self.in_txn = false;
        self.began = false;
        self.txid = None;
        self.seq = 0;
        if log_pos > 0 {
            self.at.file = self.file.clone();
            self.at.pos = log_pos;
        }
    }

    fn meta(&mut self, log_pos: u64, ts: u32) -> ChangeMeta {
        let o = self.ctx.config.cdc.options;
        let m = ChangeMeta {
            position: o.position.then(|| format!("{}:{}", self.file, log_pos)),
            commit_ts: o
                .commit_ts
                .then(|| chrono::DateTime::from_timestamp(ts as i64, 0))
                .flatten(),
            txid: if o.txid { self.txid.clone() } else { None },
            seq: o.seq.then_some(self.seq),
        };
        self.seq += 1;
        m
    }

    fn bad_event(&self, table: &str, log_pos: u64, what: impl std::fmt::Display) -> Error {
        Error::type_error(
            C,
            format!(
                "table {table}: the row event ending at {}:{log_pos} cannot be decoded with \
                 the table's known schema: {what}",
                self.file
            ),
        )
    }

    async fn layout_of(&mut self, table: &str) -> Result<Arc<Layout>> {
        if let Some(l) = self.layouts.get(table) {
            return Ok(l.clone());
        }
        // A table whose rows were never seen in this run (a truncate first): its current
        // definition, as the snapshot reads it.
        let mut conn = self.ctx.sql.connect().await?;
        let (prep, row) = super::snapshot::typed(self.ctx, &mut conn, table).await?;
        let cols = row
            .fields()
            .iter()
            .zip(prep.decoders)
            .map(|(f, dec)| Col {
                name: f.name().clone(),
                kind: super::types::Kind::Unsupported {
                    prefix: 0,
                    what: "a column known only from the server",
                },
                dec,
                nullable: f.is_nullable(),
                key: None,
            })
            .collect();
        let l = Arc::new(Layout { cols, row });
        self.layouts.insert(table.to_string(), l.clone());
        Ok(l)
    }

    async fn acc(&mut self, table: &str, layout: Arc<Layout>) -> Go {
        if let Some(acc) = self.accs.get(table)
            && acc.layout.row == layout.row
        {
            return Ok(true);
        }
        // A new definition (a DDL): what was gathered under the old one goes first.
        if let Some(mut old) = self.accs.remove(table)
            && !self.handoff.rows(table, &mut old).await?
        {
            return Ok(false);
        }
        self.accs
            .insert(table.to_string(), Acc::for_layout(layout, self.ctx)?);
        Ok(true)
    }

    async fn on_table_map(&mut self, tme: TableMapEvent<'_>) -> Result<()> {
        let id = tme.table_id();
        if let Some(m) = self.maps.get(&id)
            && m.tme == tme
        {
            return Ok(());
        }
        let table = format!("{}.{}", tme.database_name(), tme.table_name());
        let layout = if self.ctx.filter.matches(&table) {
            let json = self.ctx.json.get(&table).cloned().unwrap_or_default();
            let l = Arc::new(Layout::new(columns_of(&tme, &json)?));
            self.layouts.insert(table.clone(), l.clone());
            Some(l)
        } else {
            None
        };
        self.maps.insert(
            id,
            Mapped {
                table,
                tme: tme.into_owned(),
                layout,
            },
        );
        Ok(())
    }

    async fn on_rows(&mut self, ev: &RowsEventData<'_>, log_pos: u64, ts: u32) -> Go {
        let Some(m) = self.maps.get(&ev.table_id()) else {
            return Err(Error::type_error(
                C,
                format!(
                    "a row event at {}:{log_pos} for table id {} without its table map event",
                    self.file,
                    ev.table_id()
                ),
            ));
        };
        let Some(layout) = m.layout.clone() else {
            return Ok(true);
        };
        let table = m.table.clone();
        if !self.acc(&table, layout.clone()).await? {
            return Ok(false);
        }
        let n = layout.cols.len();
        macro_rules! bits {
            ($b:expr) => {{
                let b = $b;
                (0..n)
                    .map(|i| b.and_then(|b| b.get(i).map(|x| *x)).unwrap_or(false))
                    .collect::<Vec<bool>>()
            }};
        }
        let (op, before_cols, after_cols) = match ev {
            RowsEventData::WriteRowsEvent(_) | RowsEventData::WriteRowsEventV1(_) => {
                (Op::Insert, None, Some(bits!(ev.columns_after_image())))
            }
            RowsEventData::DeleteRowsEvent(_) | RowsEventData::DeleteRowsEventV1(_) => {
                (Op::Delete, Some(bits!(ev.columns_before_image())), None)
            }
            RowsEventData::UpdateRowsEvent(_) | RowsEventData::UpdateRowsEventV1(_) => (
                Op::Update,
                Some(bits!(ev.columns_before_image())),
                Some(bits!(ev.columns_after_image())),
            ),
            RowsEventData::PartialUpdateRowsEvent(_) => {
                return Err(self.bad_event(
                    &table,
                    log_pos,
                    "a partial JSON update; set binlog_row_value_options = '' on the server",
                ));
            }
        };
        for img in [&before_cols, &after_cols].into_iter().flatten() {
            if img.iter().any(|p| !p) {
                return Err(Error::Prerequisite {
                    component: C.into(),
                    message: format!(
                        "table {table}: the row event at {}:{log_pos} lacks columns; set \
                         binlog_row_image = FULL on the server",
                        self.file
                    ),
                });
            }
        }
        let data = ev.rows_data();
        let mut r = Reader::new(data);
        while !r.is_empty() {
            let meta = self.meta(log_pos, ts);
            let acc = self.accs.get_mut(&table).expect("made above");
            let cols = &acc.layout.cols;
            let res = match op {
                Op::Insert => image(
                    cols,
                    after_cols.as_deref().unwrap_or(&[]),
                    &mut r,
                    Some(&mut acc.rows),
                ),
                Op::Delete => image(
                    cols,
                    before_cols.as_deref().unwrap_or(&[]),
                    &mut r,
                    Some(&mut acc.rows),
                ),
                _ => image(
                    cols,
                    before_cols.as_deref().unwrap_or(&[]),
                    &mut r,
                    acc.before.as_deref_mut(),
                )
                .and_then(|_| {
                    image(
                        cols,
                        after_cols.as_deref().unwrap_or(&[]),
                        &mut r,
                        Some(&mut acc.rows),
                    )
                }),
            };
            match res {
                Ok(()) => {}
                Err(CellError::Value(e)) => {
                    return Err(Error::type_error(
                        C,
                        format!("table {table} at {}:{log_pos}: {e}", self.file),
                    ));
                }
                Err(CellError::Malformed(m)) => return Err(self.bad_event(&table, log_pos, m.0)),
            }
            if op != Op::Update
                && let Some(b) = acc.before.as_deref_mut()
            {
                Acc::nulls(cols, b);
            }
            acc.record(op, meta, Vec::new());
            if !self.flush_full(&table).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn on_truncate(&mut self, table: String, log_pos: u64, ts: u32) -> Go {
        let layout = self.layout_of(&table).await?;
        if !self.acc(&table, layout).await? {
            return Ok(false);
        }
        let meta = self.meta(log_pos, ts);
        let acc = self.accs.get_mut(&table).expect("made above");
        let cols = acc.layout.cols.clone();
        Acc::nulls(&cols, &mut acc.rows);
        if let Some(b) = acc.before.as_deref_mut() {
            Acc::nulls(&cols, b);
        }
        acc.record(Op::Truncate, meta, Vec::new());
        self.flush_full(&table).await
    }
}

/// Stream changes from `plan.from` into `tx` until `plan.until` (or forever).
pub(crate) async fn stream(ctx: &Ctx, plan: Plan, tx: &Sender<Result<Batch>>) -> Result<()> {
    let mut st = State {
        ctx,
        handoff: Handoff::new(tx, ctx.config.position_every),
        file: plan.from.file.clone(),
        at: plan.from.clone(),
        seen_fde: false,
        in_txn: false,
        began: false,
        txid: None,
        txn_gtid: None,
        seq: 0,
        maps: HashMap::new(),
        accs: BTreeMap::new(),
        layouts: HashMap::new(),
    };
    // Already at the end? (Not known before the server answers when resuming by GTID:
    // the saved file name may be one the server no longer has.)
    if let Some((f, p)) = &plan.until
        && !plan.uses_gtid(ctx)
        && st.at.reached(f, *p)
    {
        st.boundary(true).await?;
        return Ok(());
    }
    let mut events = open_stream(ctx, &plan).await?;
    let read_limit = (ctx.config.heartbeat * 4).max(Duration::from_secs(10));
    loop {
        // A graceful stop ends the stream between transactions, with the position saved.
        if !st.in_txn && ctx.stop.is_cancelled() {
            st.boundary(true).await?;
            return Ok(());
        }
        let next = tokio::select! {
            biased;
            _ = ctx.stop.cancelled(), if !st.in_txn => continue,
            // The pipeline dropped the stream (a cancelled run): end the session now
            // rather than at the next event.
            _ = tx.closed() => return Ok(()),
            n = tokio::time::timeout(read_limit, events.next()) => n,
        };
        let next = next.map_err(|_| Error::Connection {
            component: C.into(),
            message: format!(
                "no binlog event or heartbeat from {} for {read_limit:?}",
                ctx.addr()
            ),
            source: None,
        })?;
        let ev = match next {
            None => {
                return Err(Error::Connection {
                    component: C.into(),
                    message: format!("the server {} ended the binlog stream", ctx.addr()),
                    source: None,
                });
            }
            Some(Err(e)) => return Err(my_err(e, "reading the binlog", Some(&st.at))),
            Some(Ok(ev)) => ev,
        };
        let h = ev.header();
        let log_pos = h.log_pos() as u64;
        let ts = h.timestamp();
        if h.event_type_raw() == MARIADB_GTID {
            let d = ev.data();
            if d.len() >= 13 {
                let seq = u64::from_le_bytes(d[0..8].try_into().expect("8 bytes"));
                let domain = u32::from_le_bytes(d[8..12].try_into().expect("4 bytes"));
                st.txn_gtid = Some((domain, h.server_id(), seq));
                st.txid = Some(format!("{domain}-{}-{seq}", h.server_id()));
                st.in_txn = true;
                st.began = d[12] & MARIADB_GTID_STANDALONE == 0;
                st.seq = 0;
            }
            continue;
        }
        let data = ev
            .read_data()
            .map_err(|e| Error::type_error(C, format!("event at {}:{log_pos}: {e}", st.file)))?;
        let mut go = true;
        match data {
            Some(EventData::RotateEvent(r)) => {
                let mut name = r.name_raw().to_vec();
                // Before the format event the checksum is not known to the parser, so the
                // first (artificial) rotate keeps its 4 CRC bytes.
                if !st.seen_fde && ctx.facts.checksum_crc32 && name.len() > 4 {
                    name.truncate(name.len() - 4);
                }
                st.file = String::from_utf8_lossy(&name).into_owned();
                if !st.in_txn {
                    st.at.file = st.file.clone();
                    st.at.pos = r.position();
                }
                continue;
            }
            Some(EventData::FormatDescriptionEvent(_)) => st.seen_fde = true,
            Some(EventData::GtidEvent(g)) => {
                let h = hex::encode(g.sid());
                st.txid = Some(format!(
                    "{}-{}-{}-{}-{}:{}",
                    &h[0..8],
                    &h[8..12],
                    &h[12..16],
                    &h[16..20],
                    &h[20..32],
                    g.gno()
                ));
                st.in_txn = true;
                st.began = false;
                st.seq = 0;
                continue;
            }
            Some(EventData::QueryEvent(q)) => {
                let query = q.query();
                let word = query.trim();
                if word.eq_ignore_ascii_case("BEGIN") {
                    st.in_txn = true;
                    st.began = true;
                    st.seq = 0;
                    continue;
                }
                if word.eq_ignore_ascii_case("COMMIT") {
                    st.end_txn(log_pos);
                    go = st.boundary(false).await?;
                } else if st.began {
                    let ours = match dml_table(word, &q.schema()) {
                        None => false,
                        Some(None) => true,
                        Some(Some(t)) => ctx.filter.matches(&t),
                    };
                    if ours {
                        return Err(Error::Prerequisite {
                            component: C.into(),
                            message: format!(
                                "a statement-format change at {}:{log_pos}; set binlog_format = \
                                 ROW (globally, and for sessions that change it)",
                                st.file
                            ),
                        });
                    }
                } else {
                    // A statement of its own (DDL): it ends its transaction.
                    if let Some(t) = truncated_table(word, &q.schema())
                        && ctx.filter.matches(&t)
                    {
                        go = st.on_truncate(t, log_pos, ts).await?;
                    }
                    st.end_txn(log_pos);
                    if go {
                        go = st.boundary(false).await?;
                    }
                }
            }
            Some(EventData::XidEvent(_)) => {
                st.end_txn(log_pos);
                go = st.boundary(false).await?;
            }
            Some(EventData::TableMapEvent(t)) => st.on_table_map(t).await?,
            Some(EventData::RowsEvent(r)) => go = st.on_rows(&r, log_pos, ts).await?,
            Some(EventData::HeartbeatEvent) => {
                if !st.in_txn && st.handoff.due {
                    go = st.boundary(true).await?;
                }
            }
            _ => {
                if h.event_type()
                    .is_ok_and(|t| matches!(t, EventType::INCIDENT_EVENT))
                {
                    return Err(Error::Query {
                        component: C.into(),
                        message: format!(
                            "the server logged an incident at {}:{log_pos}: the binlog may miss changes there",
                            st.file
                        ),
                        retryable: false,
                        source: None,
                    });
                }
            }
        }
        if !go {
            return Ok(());
        }
        // Outside a transaction every event end is a safe place to resume.
        if !st.in_txn && log_pos > 0 && (st.at.file != st.file || st.at.pos < log_pos) {
            st.at.file = st.file.clone();
            st.at.pos = log_pos;
            st.handoff.due = true;
        }
        if let Some((f, p)) = &plan.until
            && !st.in_txn
            && st.at.reached(f, *p)
        {
            st.boundary(true).await?;
            return Ok(());
        }
    }
}
