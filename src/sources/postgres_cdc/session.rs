//! One replication session: where it connects ([`Ctx`]), what it does first
//! ([`Begin`]), and the task that creates the slot, snapshots and streams ([`run`]).

use super::ack::{AckShared, advance};
use super::config::PostgresCdcConfig;
use super::server::{self, Table};
use super::snapshot::snapshot;
use super::stream::{UNTIL_PREFIX, stream};
use crate::sources::postgres::driver::PostgresDriver;
use crate::sources::sql::SqlDriver;
use crate::{Batch, Checkpoint, Error, Result, Secret};
use pgwire_replication::{Lsn, PgWireError, ReplicationClient, ReplicationConfig};
use std::sync::Arc;
use std::time::Duration;

const C: &str = "postgres-cdc";

/// Where the replication session connects.
#[derive(Clone)]
pub(crate) struct Conn {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) user: String,
    pub(crate) password: Secret,
    pub(crate) database: String,
}

/// What one extraction knows.
pub(crate) struct Ctx {
    pub sql: PostgresDriver,
    pub(crate) conn: Conn,
    pub config: PostgresCdcConfig,
    pub tables: Vec<Table>,
    pub stop: tokio_util::sync::CancellationToken,
}

impl Ctx {
    pub fn addr(&self) -> String {
        format!("{}:{}", self.conn.host, self.conn.port)
    }

    fn replication(&self, start: u64) -> ReplicationConfig {
        let c = &self.conn;
        let mut r = ReplicationConfig::new(
            c.host.clone(),
            c.user.clone(),
            c.password.expose(),
            c.database.clone(),
            self.config.slot.clone(),
            self.config.publication.clone(),
        )
        .with_port(c.port)
        .with_binary(true)
        .with_start_lsn(Lsn::from_u64(start))
        .with_status_interval(self.config.status_interval)
        .with_wakeup_interval(self.config.status_interval.max(Duration::from_millis(500)))
        .with_buffer_size(1024)
        .with_application_name(format!("tributary-{}", self.config.slot))
        // Fixed session settings, as on the typed path's connections.
        .with_options(
            "-c DateStyle=ISO,YMD -c TimeZone=UTC -c IntervalStyle=iso_8601 \
             -c extra_float_digits=3",
        );
        if start > 0 {
            r = r.with_ack_lsn(Lsn::from_u64(start));
        }
        r
    }
}

/// A replication-protocol error as the crate's own, secrets left out.
pub(crate) fn wire_err(e: PgWireError, ctx: &Ctx) -> Error {
    let text = crate::util::redact_text(&e.to_string()).replace(ctx.conn.password.expose(), "***");
    let addr = ctx.addr();
    let slot = &ctx.config.slot;
    match &e {
        PgWireError::Auth(_) => Error::PermissionDenied {
            component: C.into(),
            message: format!("replication connection to {addr}: {text}"),
            source: None,
        },
        PgWireError::Server(m) if m.contains("is active for PID") => Error::config(
            C,
            format!(
                "replication slot {slot} is in use by another reader ({text}); one slot has one \
                 reader"
            ),
        ),
        PgWireError::Server(m)
            if m.contains("replication slot") && m.contains("does not exist") =>
        {
            Error::PositionLost {
                component: C.into(),
                message: format!("replication slot {slot} was dropped while reading: {text}"),
                // The wire error's own text is not redacted: only `text` is kept.
                source: None,
            }
        }
        PgWireError::Server(m) if m.contains("publication") && m.contains("does not exist") => {
            Error::NotFound {
                component: C.into(),
                message: format!("publication {}: {text}", ctx.config.publication),
                source: None,
            }
        }
        PgWireError::Server(m)
            if m.contains("permission denied") || m.contains("must be superuser") =>
        {
            Error::PermissionDenied {
                component: C.into(),
                message: text,
                source: None,
            }
        }
        PgWireError::Server(m)
            if m.contains("terminating connection")
                || m.contains("shutting down")
                || m.contains("57P0") =>
        {
            Error::Connection {
                component: C.into(),
                message: format!("{addr}: {text}"),
                source: None,
            }
        }
        PgWireError::Server(_) => Error::Query {
            component: C.into(),
            message: text,
            retryable: false,
            source: None,
        },
        _ => Error::Connection {
            component: C.into(),
            message: format!("replication connection to {addr}: {text}"),
            source: None,
        },
    }
}

/// What the task does first.
pub(crate) enum Begin {
    /// Create the slot with an exported snapshot, read the tables in it.
    Snapshot {
        then_stream: bool,
    },
    /// Create the slot, stream from its consistent point.
    NewSlot,
    /// Stream from this LSN (0: the slot's confirmed position).
    Stream(u64),
    Done,
}

/// Run the session: create the slot and snapshot if asked, then stream.
pub(crate) async fn run(
    ctx: &Arc<Ctx>,
    begin: Begin,
    shared: &Arc<AckShared>,
    tx: &tokio::sync::mpsc::Sender<Result<Batch>>,
) -> Result<()> {
    let start = match begin {
        Begin::Done => return Ok(()),
        Begin::Stream(at) => at,
        _ => 0,
    };
    let limit = ctx.config.cdc.timeouts.connect();
    let timed_out = |what: &str| Error::Connection {
        component: C.into(),
        message: format!("{} did not answer {what} within {limit:?}", ctx.addr()),
        source: None,
    };
    let mut client = tokio::time::timeout(
        limit,
        ReplicationClient::connect_gated(ctx.replication(start)),
    )
    .await
    .map_err(|_| timed_out("the replication connection"))?
    .map_err(|e| wire_err(e, ctx))?;
    let started = std::sync::atomic::AtomicBool::new(false);
    let result: Result<()> = async {
        let at = match begin {
            Begin::Snapshot { then_stream } => {
                let (lsn, name) = create_slot(ctx, &mut client, true).await?;
                if !snapshot(ctx, &name, lsn, tx).await? {
                    return Ok(());
                }
                if tx
                    .send(Ok(Batch::position(Checkpoint::Lsn { lsn })))
                    .await
                    .is_err()
                    || !then_stream
                {
                    return Ok(());
                }
                lsn
            }
            Begin::NewSlot => {
                let (lsn, _) = create_slot(ctx, &mut client, false).await?;
                if tx
                    .send(Ok(Batch::position(Checkpoint::Lsn { lsn })))
                    .await
                    .is_err()
                {
                    return Ok(());
                }
                lsn
            }
            Begin::Stream(0) => {
                let mut conn = ctx.sql.connect().await?;
                server::slot(&mut conn, &ctx.config.slot)
                    .await?
                    .and_then(|s| s.confirmed_flush)
                    .unwrap_or(0)
            }
            Begin::Stream(at) => at,
            Begin::Done => return Ok(()),
        };
        let until = if ctx.config.cdc.until_current {
            let mut conn = ctx.sql.connect().await?;
            match server::emit_message(&mut conn, UNTIL_PREFIX).await {
                Some(l) => Some(l),
                None => Some(server::current_lsn(&mut conn).await?),
            }
        } else {
            None
        };
        started.store(true, std::sync::atomic::Ordering::Release);
        client.start().await.map_err(|e| wire_err(e, ctx))?;
        tokio::time::timeout(limit, client.wait_started())
            .await
            .map_err(|_| timed_out("START_REPLICATION"))?
            .map_err(|e| wire_err(e, ctx))?;
        stream(ctx, &mut client, at, until, shared, tx).await
    }
    .await;
    // End the session (one that never started replicating ends when dropped: it does
    // not listen for a stop); what was acknowledged and not yet reported goes to the
    // slot directly.
    if client.is_running() && started.load(std::sync::atomic::Ordering::Acquire) {
        let _ = tokio::time::timeout(Duration::from_secs(5), client.shutdown()).await;
    }
    client.abort();
    drop(client);
    let acked = shared.end().await;
    if acked > 0
        && !ctx.config.temporary
        && let Err(e) = advance(&ctx.sql, &ctx.config.slot, acked).await
    {
        tracing::warn!(error = %e, "could not advance the slot after the session ended");
    }
    result
}

/// `CREATE_REPLICATION_SLOT` on the session: the consistent point, and the exported
/// snapshot's name (valid while the session stays idle).
pub(crate) async fn create_slot(
    ctx: &Ctx,
    client: &mut ReplicationClient,
    export: bool,
) -> Result<(u64, String)> {
    let sql = format!(
        "CREATE_REPLICATION_SLOT {}{} LOGICAL pgoutput (SNAPSHOT '{}')",
        ctx.config.slot,
        if ctx.config.temporary {
            " TEMPORARY"
        } else {
            ""
        },
        if export { "export" } else { "nothing" }
    );
    let limit = ctx.config.cdc.timeouts.connect();
    let rows = tokio::time::timeout(limit, client.simple_query(&sql))
        .await
        .map_err(|_| Error::Connection {
            component: C.into(),
            message: format!("{} did not create the slot within {limit:?}", ctx.addr()),
            source: None,
        })?
        .map_err(|e| wire_err(e, ctx))?;
    let text = |i: usize| {
        rows.first()
            .and_then(|r| r.get(i).cloned().flatten())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    };
    let lsn = text(1)
        .as_deref()
        .and_then(server::parse_lsn)
        .ok_or_else(|| {
            Error::type_error(C, "CREATE_REPLICATION_SLOT returned no consistent point")
        })?;
    Ok((lsn, text(2).unwrap_or_default()))
}
