//! Acknowledgement: the slot's confirmed position moves to a checkpoint only after the
//! pipeline saved it. While the stream runs, the replication session reports it; after
//! the session ended (a bounded run), the slot is advanced directly.

use super::server;
use crate::sources::postgres::driver::PostgresDriver;
use crate::sources::sql::SqlDriver;
use crate::{Acker, Checkpoint, Error, Result};
use async_trait::async_trait;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Mutex, Notify};

/// What the acker and the stream share.
#[derive(Default)]
pub(crate) struct AckShared {
    acked: AtomicU64,
    notify: Notify,
    /// Set once the replication session is gone: acknowledgements then advance the slot
    /// with `pg_replication_slot_advance`.
    ended: Mutex<bool>,
}

impl AckShared {
    /// The greatest acknowledged LSN.
    pub(crate) fn acked(&self) -> u64 {
        self.acked.load(Ordering::Acquire)
    }

    /// Resolves when a new acknowledgement arrives.
    pub(crate) async fn changed(&self) {
        self.notify.notified().await
    }

    /// The session is gone; acknowledgements from now on go straight to the slot. Returns
    /// the greatest acknowledged LSN, which the session may not have reported.
    pub(crate) async fn end(&self) -> u64 {
        let mut ended = self.ended.lock().await;
        *ended = true;
        self.acked()
    }
}

/// The [`Acker`] of a WAL extraction.
pub(crate) struct SlotAcker {
    pub shared: Arc<AckShared>,
    pub sql: PostgresDriver,
    pub slot: String,
    /// A temporary slot is gone with its session: nothing to advance after it.
    pub temporary: bool,
    /// Where the slot's lag is read.
    pub lag_conn: Option<sqlx::postgres::PgConnection>,
}

/// Advance `slot` to `lsn`, waiting a little for the server to release it after the
/// session that held it ended.
pub(crate) async fn advance(sql: &PostgresDriver, slot: &str, lsn: u64) -> Result<()> {
    let mut conn = sql.connect().await?;
    let mut tries = 0;
    loop {
        match server::advance_slot(&mut conn, slot, lsn).await {
            Ok(()) => return Ok(()),
            // Already there (the session reported it before it ended).
            Err(e) if e.to_string().contains("minimum is") => return Ok(()),
            Err(e) if tries < 50 && e.to_string().contains("is active for PID") => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

#[async_trait]
impl Acker for SlotAcker {
    async fn committed(&mut self, checkpoint: &Checkpoint) -> Result<()> {
        let Checkpoint::Lsn { lsn } = checkpoint else {
            return Err(Error::config(
                "postgres-cdc",
                format!("a WAL reader acknowledges LSN checkpoints, not {checkpoint:?}"),
            ));
        };
        let ended = self.shared.ended.lock().await;
        self.shared.acked.fetch_max(*lsn, Ordering::AcqRel);
        if !*ended {
            self.shared.notify.notify_one();
            return Ok(());
        }
        drop(ended);
        if self.temporary {
            return Ok(());
        }
        advance(&self.sql, &self.slot, *lsn).await
    }

    async fn retained_bytes(&mut self) -> Option<u64> {
        if self.lag_conn.is_none() {
            self.lag_conn = self.sql.connect().await.ok();
        }
        let conn = self.lag_conn.as_mut()?;
        let lag = server::slot_lag(conn, &self.slot).await;
        if lag.is_none() {
            self.lag_conn = None; // a broken connection is made anew next time
        }
        lag.map(|l| l.max(0) as u64)
    }
}
