//! The replication connection: registered as a replica, dumping from a position.

use super::extractor::Ctx;
use super::position::my_err;
use super::stream::Plan;
use crate::{Error, Result};
use mysql_async::BinlogStreamRequest;
use mysql_async::prelude::Queryable;

const C: &str = "mysql-cdc";

/// Connect the replication connection and start the dump at `plan.from`.
pub(crate) async fn open_stream(ctx: &Ctx, plan: &Plan) -> Result<mysql_async::BinlogStream> {
    let from = &plan.from;
    let at = Some(from);
    let limit = ctx.config.cdc.timeouts.connect();
    let addr = ctx.addr();
    let timed_out = |what: &str| Error::Connection {
        component: C.into(),
        message: format!("{what} {addr} took longer than {limit:?}"),
        source: None,
    };
    let mut conn = tokio::time::timeout(limit, mysql_async::Conn::new(ctx.opts.clone()))
        .await
        .map_err(|_| timed_out("connecting to"))?
        .map_err(|e| my_err(e, &format!("connecting to {addr}"), None))?;
    let mut setup = vec![format!(
        "SET @master_heartbeat_period = {}",
        ctx.config.heartbeat.as_nanos()
    )];
    if ctx.facts.mariadb {
        // Without it MariaDB sends its GTID events as `BEGIN` queries.
        setup.push("SET @mariadb_slave_capability = 4".into());
    }
    let by_gtid = plan.uses_gtid(ctx);
    if by_gtid {
        let g = from.gtids.text().unwrap_or_default();
        setup.push(format!("SET @slave_connect_state = '{g}'"));
    }
    for s in &setup {
        tokio::time::timeout(limit, conn.query_drop(s.as_str()))
            .await
            .map_err(|_| timed_out("setting up the replication session on"))?
            .map_err(|e| my_err(e, "setting up the replication session", at))?;
    }
    let mut req = BinlogStreamRequest::new(ctx.server_id);
    req = if by_gtid {
        req.with_filename(b"").with_pos(4u64)
    } else {
        req.with_filename(from.file.as_bytes()).with_pos(from.pos)
    };
    tokio::time::timeout(limit, conn.get_binlog_stream(req))
        .await
        .map_err(|_| timed_out("requesting the binlog from"))?
        .map_err(|e| my_err(e, "requesting the binlog", at))
}
