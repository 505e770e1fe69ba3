use super::ack::{AckShared, SlotAcker};
use super::config::{PostgresCdcConfig, SnapshotMode, WhenPositionLost};
use super::server::{self, Facts, Slot, Table, lsn_text};
use super::session::{Begin, Conn, Ctx, run};
use crate::sources::postgres::driver::PostgresDriver;
use crate::sources::sql::SqlDriver;
use crate::{Batch, Checkpoint, Error, ExtractContext, Extraction, Extractor, Result, Secret};
use async_trait::async_trait;
use sqlx::postgres::PgConnection;
use std::sync::Arc;
use std::time::{Duration, Instant};

const C: &str = "postgres-cdc";

/// Reads PostgreSQL changes from a logical replication slot (feature `postgres-cdc`): a
/// snapshot of the selected tables in the snapshot the slot exported when it was created,
/// then every insert, update, delete and truncate from exactly the slot's consistent
/// point, as [change rows](crate::model::change) of one table per batch (each table lands
/// under its own `schema.table` name).
///
/// - **Checkpoints** are [`Checkpoint::Lsn`] positions at transaction ends (the commit's
///   end LSN), or where the WAL moved past other tables' work. The slot's confirmed
///   position advances only through the [`Acker`](crate::Acker), after the pipeline saved
///   the checkpoint, so a crash never loses a change: a rerun resumes from the saved LSN.
/// - **Position safety**: a slot that is gone, lost its WAL, or was advanced past the
///   saved checkpoint (recreated, or read by another reader) is
///   [`Error::PositionLost`] with both positions, or a new snapshot with
///   [`WhenPositionLost::Resnapshot`].
/// - **Schema changes** need no DDL: pgoutput sends a table's Relation message again after
///   it changed, and the next batch has the new schema (the pipeline starts a new object).
/// - **Memory** stays bounded: a big transaction is handed on in batches of
///   [`PostgresCdcConfig::with_batch_rows`] rows, only the last with the checkpoint.
///
/// The user needs the `REPLICATION` attribute (or superuser), `SELECT` on the tables, and
/// to create a missing publication, ownership of the tables. Values come in binary
/// (pgoutput's `binary` option, PostgreSQL 14+) and decode to the typed SQL path's Arrow
/// types. Known limits: protocol version 1 only (a big transaction is decoded by the server
/// after its commit, not streamed while in progress); no TLS on the replication
/// connection (`sslmode=disable` or `prefer` without TLS).
///
/// ```no_run
/// # async fn f() -> tributary::Result<()> {
/// use tributary::sources::postgres_cdc::{PostgresCdcConfig, PostgresCdcExtractor};
/// let orders = PostgresCdcExtractor::connect_lazy(
///     "postgres://repl:secret@db/shop",
///     PostgresCdcConfig::new("tributary_orders").with_tables(["Orders"]),
/// )?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresCdcExtractor {
    sql: PostgresDriver,
    conn: Conn,
    config: PostgresCdcConfig,
}

impl std::fmt::Debug for PostgresCdcExtractor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresCdcExtractor")
            .field("host", &self.conn.host)
            .field("port", &self.conn.port)
            .field("database", &self.conn.database)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Every missing prerequisite, with its fix, in one [`Error::Prerequisite`].
fn prerequisites(missing: Vec<String>) -> Result<()> {
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::Prerequisite {
        component: C.into(),
        message: missing.join("; "),
    })
}

impl PostgresCdcExtractor {
    /// Connect on first use to a `postgres://` URL; its database is the one replicated.
    pub fn connect_lazy(url: &str, config: PostgresCdcConfig) -> Result<Self> {
        config.validate()?;
        let bad =
            |m: &str| Error::config(C, format!("invalid URL {}: {m}", crate::redact_url(url)));
        let u = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        if !matches!(u.scheme(), "postgres" | "postgresql") {
            return Err(bad("the scheme must be postgres://"));
        }
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let query = |k: &str| {
            u.query_pairs()
                .find(|(q, _)| q == k)
                .map(|(_, v)| v.into_owned())
        };
        if let Some(mode) = query("sslmode")
            && !matches!(mode.as_str(), "disable" | "allow" | "prefer")
        {
            return Err(bad(&format!(
                "sslmode={mode}: the replication connection has no TLS in this build; use \
                 sslmode=disable or prefer on a trusted network"
            )));
        }
        let user = match u.username() {
            "" => "postgres".to_string(),
            n => decode(n),
        };
        let host = query("host")
            .or_else(|| u.host_str().map(|h| h.trim_matches(['[', ']']).to_string()))
            .unwrap_or_else(|| "localhost".into());
        let database = match u.path().trim_start_matches('/') {
            "" => user.clone(),
            d => decode(d),
        };
        let conn = Conn {
            host,
            port: u.port().unwrap_or(5432),
            password: Secret::new(u.password().map(decode).unwrap_or_default()),
            user,
            database,
        };
        let sql =
            crate::sources::postgres::driver::connect_lazy(url)?.with_timeouts(config.cdc.timeouts);
        Ok(PostgresCdcExtractor { sql, conn, config })
    }

    /// Its settings.
    pub fn config(&self) -> &PostgresCdcConfig {
        &self.config
    }

    /// Drop the replication slot (it retains WAL until dropped). `Ok(false)` when there
    /// is none; an error when a reader holds it.
    pub async fn drop_slot(&self) -> Result<bool> {
        let mut conn = self.sql.connect().await?;
        server::drop_slot(&mut conn, &self.config.slot).await
    }

    /// Drop the publication. `Ok(false)` when there is none.
    pub async fn drop_publication(&self) -> Result<bool> {
        use sqlx::Executor;
        let mut conn = self.sql.connect().await?;
        let name = &self.config.publication;
        if server::publication_tables(&mut conn, name).await?.is_none() {
            return Ok(false);
        }
        let sql = format!(
            "DROP PUBLICATION {}",
            crate::sources::sql::Dialect::Postgres.quote_ident(name)
        );
        conn.execute(sql.as_str())
            .await
            .map_err(|e| server::err(e, &format!("dropping publication {name}")))?;
        Ok(true)
    }

    /// How many bytes of WAL the slot holds back from removal (the server's current
    /// position minus the slot's confirmed one); `None` when there is no slot.
    pub async fn slot_lag_bytes(&self) -> Result<Option<i64>> {
        let mut conn = self.sql.connect().await?;
        Ok(server::slot_lag(&mut conn, &self.config.slot).await)
    }

    /// The selected tables: the named ones, or the publication's.
    async fn tables(&self, conn: &mut PgConnection) -> Result<(Vec<Table>, Option<Vec<Table>>)> {
        let publication = server::publication_tables(conn, &self.config.publication).await?;
        let tables = if self.config.tables.is_empty() {
            match &publication {
                Some(t) => t.clone(),
                None => {
                    return Err(Error::config(
                        C,
                        format!(
                            "publication {} does not exist and no tables are named to create \
                             it with (PostgresCdcConfig::with_tables, [cdc] tables)",
                            self.config.publication
                        ),
                    ));
                }
            }
        } else {
            server::resolve_tables(conn, &self.config.tables).await?
        };
        Ok((tables, publication))
    }

    /// The problems with the tables: not published, no replica identity.
    fn table_problems(&self, tables: &[Table], publication: &Option<Vec<Table>>) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(published) = publication {
            let missing: Vec<String> = tables
                .iter()
                .filter(|t| !published.iter().any(|p| p.oid == t.oid))
                .map(Table::sql)
                .collect();
            if !missing.is_empty() {
                out.push(format!(
                    "publication {} does not include {}: ALTER PUBLICATION {} ADD TABLE {}",
                    self.config.publication,
                    missing.join(", "),
                    self.config.publication,
                    missing.join(", ")
                ));
            }
        }
        for t in tables {
            let keyless = match t.identity.as_str() {
                "n" => true,
                "d" => !t.has_key,
                _ => false,
            };
            if keyless {
                out.push(format!(
                    "table {} has no primary key and REPLICA IDENTITY {}: its updates and \
                     deletes cannot be keyed (the server refuses them once the table is \
                     published); add a primary key or ALTER TABLE {} REPLICA IDENTITY FULL",
                    t.qualified(),
                    if t.identity == "n" {
                        "NOTHING"
                    } else {
                        "DEFAULT"
                    },
                    t.sql()
                ));
            } else if t.identity == "d" {
                tracing::warn!(
                    table = %t.qualified(),
                    "REPLICA IDENTITY DEFAULT: updates carry no before-image and deletes only \
                     the key; ALTER TABLE ... REPLICA IDENTITY FULL for whole old rows"
                );
            }
        }
        out
    }

    async fn facts(&self) -> Result<(Facts, PgConnection)> {
        let mut conn = self.sql.connect().await?;
        let facts = server::facts(&mut conn).await?;
        Ok((facts, conn))
    }

    /// The slot, once no other session holds it (waiting a little for one that is
    /// releasing it).
    async fn free_slot(&self, conn: &mut PgConnection) -> Result<Option<Slot>> {
        let give_up = Instant::now() + self.config.slot_busy_wait;
        loop {
            let s = server::slot(conn, &self.config.slot).await?;
            match s.as_ref().and_then(|s| s.active_pid) {
                Some(pid) if Instant::now() >= give_up => {
                    return Err(server::in_use(&self.config.slot, pid));
                }
                Some(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                None => return Ok(s),
            }
        }
    }

    fn lost(&self, message: String) -> Error {
        Error::PositionLost {
            component: C.into(),
            message,
            source: None,
        }
    }

    /// Where a resume from `lsn` starts, or why it cannot.
    fn resume_point(&self, facts: &Facts, slot: Option<&Slot>, lsn: u64) -> Result<u64> {
        let name = &self.config.slot;
        let Some(s) = slot else {
            return Err(self.lost(format!(
                "replication slot {name} does not exist (dropped, or a temporary slot of an \
                 earlier run); the checkpoint is at {}",
                lsn_text(lsn)
            )));
        };
        self.slot_fits(facts, s)?;
        if s.wal_status.as_deref() == Some("lost") {
            return Err(self.lost(format!(
                "replication slot {name} lost the WAL it needed (max_slot_wal_keep_size); the \
                 checkpoint is at {}",
                lsn_text(lsn)
            )));
        }
        match s.confirmed_flush {
            Some(f) if f > lsn => Err(self.lost(format!(
                "the checkpoint {} is behind replication slot {name}'s confirmed position {}: \
                 the changes between were acknowledged without being saved here (the slot \
                 was recreated, or another reader used it)",
                lsn_text(lsn),
                lsn_text(f)
            ))),
            _ => Ok(lsn),
        }
    }

    fn slot_fits(&self, facts: &Facts, s: &Slot) -> Result<()> {
        if s.plugin.as_deref() != Some("pgoutput") || s.database.as_deref() != Some(&facts.database)
        {
            return Err(Error::config(
                C,
                format!(
                    "replication slot {} is not a pgoutput slot of database {} (plugin {:?}, \
                     database {:?}); name another slot",
                    self.config.slot, facts.database, s.plugin, s.database
                ),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl Extractor for PostgresCdcExtractor {
    fn source(&self) -> &str {
        C
    }

    fn stream(&self) -> &str {
        &self.config.cdc.stream
    }

    fn capabilities(&self) -> crate::ExtractorCapabilities {
        crate::sources::cdc::capabilities(self.config.cdc.until_current, self.config.cdc.snapshot)
    }

    /// The server is set up for logical replication, the user may use it, and every
    /// selected table can be published with keyed updates; everything missing is named,
    /// with its fix, in one [`Error::Prerequisite`].
    async fn check(&self) -> Result<()> {
        let (facts, mut conn) = self.facts().await?;
        let slot = server::slot(&mut conn, &self.config.slot).await?;
        let mut missing = facts.missing(slot.is_none());
        let (tables, publication) = self.tables(&mut conn).await?;
        missing.extend(self.table_problems(&tables, &publication));
        if publication.is_none() && !facts.superuser {
            let foreign: Vec<String> = tables
                .iter()
                .filter(|t| !t.owner_is_me)
                .map(Table::qualified)
                .collect();
            if !foreign.is_empty() {
                missing.push(format!(
                    "the user does not own {} and cannot create publication {} for it: create \
                     it as the owner (CREATE PUBLICATION {} FOR TABLE ...)",
                    foreign.join(", "),
                    self.config.publication,
                    self.config.publication
                ));
            }
        }
        if let Some(s) = &slot {
            self.slot_fits(&facts, s)?;
            if let Some(pid) = s.active_pid {
                missing.push(server::in_use(&self.config.slot, pid).to_string());
            }
        }
        prerequisites(missing)
    }

    /// What a run would do: the snapshot of which tables (with the server's row
    /// estimate), or the LSN it would stream from, and until where.
    async fn plan(&self, from: &ExtractContext) -> Result<Option<crate::Plan>> {
        let (facts, mut conn) = self.facts().await?;
        let (tables, _) = self.tables(&mut conn).await?;
        let slot = server::slot(&mut conn, &self.config.slot).await?;
        let until = if self.config.cdc.until_current {
            format!(" until {}", lsn_text(server::current_lsn(&mut conn).await?))
        } else {
            " until stopped".into()
        };
        let names: Vec<String> = tables.iter().map(Table::qualified).collect();
        let (what, estimate) = match (&from.checkpoint, self.config.cdc.snapshot) {
            (Some(_), SnapshotMode::InitialOnly) => {
                ("nothing: the snapshot is saved".into(), Some(0))
            }
            (Some(Checkpoint::Lsn { lsn }), _) => {
                let at = self.resume_point(&facts, slot.as_ref(), *lsn)?;
                (
                    format!(
                        "the WAL of slot {} from {}{until}",
                        self.config.slot,
                        lsn_text(at)
                    ),
                    None,
                )
            }
            (Some(cp), _) => {
                return Err(Error::config(
                    C,
                    format!("a WAL reader resumes from an LSN checkpoint, not {cp:?}"),
                ));
            }
            (None, SnapshotMode::Never) => (
                format!(
                    "the WAL of slot {} from its current position{until}",
                    self.config.slot
                ),
                None,
            ),
            (None, mode) => {
                let mut n = 0u64;
                for t in &tables {
                    let est: f32 = sqlx::query_scalar(
                        "SELECT reltuples FROM pg_class WHERE oid = $1::int8::oid",
                    )
                    .bind(t.oid as i64)
                    .fetch_one(&mut conn)
                    .await
                    .unwrap_or(0.0);
                    n += est.max(0.0) as u64;
                }
                let then = if mode == SnapshotMode::InitialOnly {
                    String::new()
                } else {
                    format!(", then the WAL of slot {}{until}", self.config.slot)
                };
                (format!("snapshot of {}{then}", names.join(", ")), Some(n))
            }
        };
        Ok(Some(crate::Plan::new(what, Vec::new(), estimate)))
    }

    async fn open(&self, from: ExtractContext) -> Result<Extraction> {
        let (facts, mut conn) = self.facts().await?;
        let slot = self.free_slot(&mut conn).await?;
        prerequisites(facts.missing(slot.is_none()))?;
        let (tables, publication) = self.tables(&mut conn).await?;
        prerequisites(self.table_problems(&tables, &publication))?;
        let begin = match (&from.checkpoint, self.config.cdc.snapshot) {
            (Some(_), SnapshotMode::InitialOnly) => Begin::Done,
            (Some(Checkpoint::Lsn { lsn }), mode) => {
                match self.resume_point(&facts, slot.as_ref(), *lsn) {
                    Ok(at) => Begin::Stream(at),
                    Err(Error::PositionLost { message, .. })
                        if self.config.cdc.when_position_lost == WhenPositionLost::Resnapshot =>
                    {
                        tracing::warn!(%message, "WAL position lost; taking a new snapshot");
                        if slot.is_some() {
                            server::drop_slot(&mut conn, &self.config.slot).await?;
                        }
                        Begin::Snapshot {
                            then_stream: mode != SnapshotMode::InitialOnly,
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            (Some(cp), _) => {
                return Err(Error::config(
                    C,
                    format!("a WAL reader resumes from an LSN checkpoint, not {cp:?}"),
                ));
            }
            (None, SnapshotMode::Never) => match &slot {
                Some(s) => {
                    self.slot_fits(&facts, s)?;
                    Begin::Stream(0)
                }
                None => Begin::NewSlot,
            },
            (None, mode) => {
                if let Some(s) = &slot {
                    self.slot_fits(&facts, s)?;
                    // Nothing was saved from it: an earlier snapshot did not finish.
                    tracing::warn!(slot = %self.config.slot,
                        "no checkpoint, but the slot exists: recreating it for a new snapshot");
                    server::drop_slot(&mut conn, &self.config.slot).await?;
                }
                Begin::Snapshot {
                    then_stream: mode == SnapshotMode::Initial,
                }
            }
        };
        if publication.is_none() {
            server::create_publication(&mut conn, &self.config.publication, &tables).await?;
        }
        drop(conn);
        let ctx = Arc::new(Ctx {
            sql: self.sql.clone(),
            conn: self.conn.clone(),
            config: self.config.clone(),
            tables,
            stop: from.stop.clone(),
        });
        let shared = Arc::new(AckShared::default());
        let acker = SlotAcker {
            shared: shared.clone(),
            sql: self.sql.clone(),
            slot: self.config.slot.clone(),
            temporary: self.config.temporary,
            lag_conn: None,
        };
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Batch>>(4);
        tokio::spawn(async move {
            if let Err(e) = run(&ctx, begin, &shared, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok(Extraction::with_acker(
            crate::sources::channel_stream(rx),
            acker,
        ))
    }
}
