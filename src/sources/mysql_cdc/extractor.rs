use super::config::{MySqlCdcConfig, SnapshotMode, StartAt, WhenPositionLost};
use super::server::{self, Facts};
use super::snapshot::snapshot;
use super::stream::{Gtids, Plan, Position, stream};
use crate::model::TableFilter;
use crate::sources::mysql::driver::MySqlDriver;
use crate::sources::sql::SqlDriver;
use crate::{Batch, Checkpoint, Error, ExtractContext, Extraction, Extractor, Result};
use async_trait::async_trait;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

const C: &str = "mysql-cdc";

/// Reads MySQL/MariaDB changes from the binlog (feature `mysql-cdc`): a consistent
/// snapshot of the selected tables, then every insert, update and delete from exactly
/// the snapshot's binlog position, as [change rows](crate::model::change) of one table
/// per batch (each table lands under its own name).
///
/// - **Checkpoints** are [`Checkpoint::Binlog`] positions taken only at transaction ends,
///   with MariaDB's GTID position and the server's identity; the pipeline saves one only
///   after the data up to it is committed. A purged file or a checkpoint of another
///   server is [`Error::PositionLost`] (or a new snapshot, with
///   [`WhenPositionLost::Resnapshot`]).
/// - **Schema changes** need no DDL parsing: every transaction's table map event carries
///   the table's definition as of that point of the log (with `binlog_row_metadata =
///   FULL`), so a batch after an `ALTER TABLE` has the new schema and the pipeline starts
///   a new object for it.
/// - **Memory** stays bounded: a big transaction is handed on in batches of
///   [`MySqlCdcConfig::with_batch_rows`] rows, only the last with the checkpoint.
///
/// ```no_run
/// # async fn f() -> tributary::Result<()> {
/// use tributary::sources::mysql_cdc::{MySqlCdcConfig, MySqlCdcExtractor};
/// let orders = MySqlCdcExtractor::connect_lazy(
///     "mysql://repl:secret@db/shop",
///     MySqlCdcConfig::new().with_tables(["Orders"]).with_server_id(5001),
/// )?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MySqlCdcExtractor {
    opts: mysql_async::Opts,
    sql: MySqlDriver,
    config: MySqlCdcConfig,
}

impl std::fmt::Debug for MySqlCdcExtractor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MySqlCdcExtractor")
            .field("host", &self.opts.ip_or_hostname())
            .field("port", &self.opts.tcp_port())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What one extraction knows: the connections' settings and the server's facts.
pub(crate) struct Ctx {
    pub opts: mysql_async::Opts,
    pub sql: MySqlDriver,
    pub config: MySqlCdcConfig,
    pub facts: Facts,
    pub filter: TableFilter,
    pub json: HashMap<String, HashSet<String>>,
    pub server_id: u32,
    pub stop: tokio_util::sync::CancellationToken,
}

impl Ctx {
    pub fn addr(&self) -> String {
        format!("{}:{}", self.opts.ip_or_hostname(), self.opts.tcp_port())
    }
}

impl MySqlCdcExtractor {
    /// Connect on first use to a `mysql://` URL (MariaDB too); its database is where
    /// unqualified table names live.
    pub fn connect_lazy(url: &str, config: MySqlCdcConfig) -> Result<Self> {
        let bad = |e: String| {
            Error::config(
                C,
                format!(
                    "invalid URL {}: {}",
                    crate::redact_url(url),
                    crate::util::redact_text(&e)
                ),
            )
        };
        let opts = mysql_async::Opts::from_url(url).map_err(|e| bad(e.to_string()))?;
        let opts: mysql_async::Opts = mysql_async::OptsBuilder::from_opts(opts)
            .prefer_socket(false)
            .into();
        let sql =
            crate::sources::mysql::driver::connect_lazy(url)?.with_timeouts(config.cdc.timeouts);
        Ok(MySqlCdcExtractor { opts, sql, config })
    }

    /// Its settings.
    pub fn config(&self) -> &MySqlCdcConfig {
        &self.config
    }

    async fn context(&self) -> Result<(Ctx, sqlx::mysql::MySqlConnection)> {
        let mut conn = self.sql.connect().await?;
        let facts = server::facts(&mut conn).await?;
        let db = facts.database.clone();
        let qualify = |names: &[String]| -> Vec<String> {
            names
                .iter()
                .map(|n| match (&db, n.contains('.')) {
                    (Some(d), false) => format!("{d}.{n}"),
                    _ => n.clone(),
                })
                .collect()
        };
        let t = &self.config.tables;
        let mut include = qualify(t.included());
        if include.is_empty() {
            include.push(match &db {
                Some(d) => format!("{d}.*"),
                None => "*".into(),
            });
        }
        let filter = TableFilter::new()
            .include(include)
            .exclude(qualify(t.excluded()))
            .with_case(facts.case);
        let json = if facts.mariadb {
            server::json_columns(&mut conn).await
        } else {
            HashMap::new()
        };
        let server_id = self
            .config
            .server_id
            .unwrap_or_else(|| 1_000_000 + (rand_u32() % 3_000_000_000));
        Ok((
            Ctx {
                opts: self.opts.clone(),
                sql: self.sql.clone(),
                config: self.config.clone(),
                facts,
                filter,
                json,
                server_id,
                stop: tokio_util::sync::CancellationToken::new(),
            },
            conn,
        ))
    }

    fn lost(&self, message: String) -> Error {
        Error::PositionLost {
            component: C.into(),
            message,
            source: None,
        }
    }

    /// Where a resume from `cp` starts, or why it cannot.
    async fn resume_point(
        &self,
        ctx: &Ctx,
        conn: &mut sqlx::mysql::MySqlConnection,
        cp: &Checkpoint,
    ) -> Result<Position> {
        let Checkpoint::Binlog {
            file,
            pos,
            gtid,
            server,
        } = cp
        else {
            return Err(Error::config(
                C,
                format!("a binlog reader resumes from a binlog checkpoint, not {cp:?}"),
            ));
        };
        let me = ctx.facts.identity();
        if let Some(s) = server
            && *s != me
        {
            return Err(self.lost(format!(
                "the checkpoint {file}:{pos} was taken on server {s}, this is {me}; its \
                 positions mean nothing here"
            )));
        }
        let logs = server::binary_logs(conn).await?;
        let first = logs
            .first()
            .map(|(f, _)| format!("{f}:4"))
            .unwrap_or_else(|| "none".into());
        match logs.iter().find(|(f, _)| f == file) {
            Some((_, size)) if *pos <= *size => {}
            Some((_, size)) => {
                return Err(self.lost(format!(
                    "the checkpoint {file}:{pos} is past the end of that file ({size} bytes)"
                )));
            }
            None if self.config.resume_by_gtid && gtid.is_some() => {}
            None => {
                return Err(self.lost(format!(
                    "the checkpoint's binlog file {file} (position {pos}) is no longer on the \
                     server; the first available position is {first}"
                )));
            }
        }
        Ok(Position {
            file: file.clone(),
            pos: *pos,
            gtids: gtid.as_deref().and_then(Gtids::parse).unwrap_or_default(),
        })
    }

    async fn start_position(
        &self,
        ctx: &Ctx,
        conn: &mut sqlx::mysql::MySqlConnection,
    ) -> Result<Position> {
        let (file, pos) = match &self.config.start {
            StartAt::Current => server::current_end(conn, &ctx.facts).await?,
            StartAt::Position { file, pos } => (file.clone(), *pos),
        };
        Ok(server::position_at(conn, &ctx.facts, file, pos).await)
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

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish() as u32
}

/// What the task does first.
enum Begin {
    Snapshot { then_stream: bool },
    Stream(Position),
    Done,
}

#[async_trait]
impl Extractor for MySqlCdcExtractor {
    fn source(&self) -> &str {
        C
    }

    fn stream(&self) -> &str {
        &self.config.cdc.stream
    }

    fn capabilities(&self) -> crate::ExtractorCapabilities {
        crate::sources::cdc::capabilities(self.config.cdc.until_current, self.config.cdc.snapshot)
    }

    /// The server is set up for row-based capture and the user may read the binlog;
    /// every missing prerequisite is named, with its fix, in one
    /// [`Error::Prerequisite`].
    async fn check(&self) -> Result<()> {
        let (ctx, mut conn) = self.context().await?;
        let mut missing = ctx.facts.missing();
        missing.extend(
            server::missing_privileges(&mut conn, &ctx.facts)
                .await?
                .into_iter()
                .map(|p| format!("the user lacks {p}")),
        );
        prerequisites(missing)
    }

    /// What a run would do: the snapshot of which tables (with the server's row
    /// estimate) or the binlog position it would stream from, and until where.
    async fn plan(&self, from: &ExtractContext) -> Result<Option<crate::Plan>> {
        let (ctx, mut conn) = self.context().await?;
        let until = if self.config.cdc.until_current {
            let (f, p) = server::current_end(&mut conn, &ctx.facts).await?;
            format!(" until {f}:{p}")
        } else {
            " until stopped".to_string()
        };
        let snapshot =
            |tables: &[String]| format!("snapshot of {}, then the binlog", tables.join(", "));
        let (what, estimate) = match (&from.checkpoint, self.config.cdc.snapshot) {
            (None, SnapshotMode::Never) => {
                let p = self.start_position(&ctx, &mut conn).await?;
                (format!("the binlog from {}:{}{until}", p.file, p.pos), None)
            }
            (None, mode) => {
                let tables = server::tables(&mut conn, &ctx.filter).await?;
                let mut n = 0;
                for t in &tables {
                    n += server::estimated_rows(&mut conn, t).await.unwrap_or(0);
                }
                let what = if mode == SnapshotMode::InitialOnly {
                    format!("snapshot of {}", tables.join(", "))
                } else {
                    format!("{}{until}", snapshot(&tables))
                };
                (what, Some(n))
            }
            (Some(_), SnapshotMode::InitialOnly) => {
                ("nothing: the snapshot is saved".into(), Some(0))
            }
            (Some(cp), _) => {
                let p = self.resume_point(&ctx, &mut conn, cp).await?;
                (format!("the binlog from {}:{}{until}", p.file, p.pos), None)
            }
        };
        Ok(Some(crate::Plan::new(what, Vec::new(), estimate)))
    }

    async fn open(&self, from: ExtractContext) -> Result<Extraction> {
        let (mut ctx, mut conn) = self.context().await?;
        ctx.stop = from.stop.clone();
        prerequisites(ctx.facts.missing())?;
        let begin = match (&from.checkpoint, self.config.cdc.snapshot) {
            (None, SnapshotMode::Never) => {
                Begin::Stream(self.start_position(&ctx, &mut conn).await?)
            }
            (None, mode) => Begin::Snapshot {
                then_stream: mode == SnapshotMode::Initial,
            },
            // The snapshot is done and saved.
            (Some(_), SnapshotMode::InitialOnly) => Begin::Done,
            (Some(cp), mode) => match self.resume_point(&ctx, &mut conn, cp).await {
                Ok(p) => Begin::Stream(p),
                Err(Error::PositionLost { message, .. })
                    if self.config.cdc.when_position_lost == WhenPositionLost::Resnapshot =>
                {
                    tracing::warn!(%message, "binlog position lost; taking a new snapshot");
                    Begin::Snapshot {
                        then_stream: mode != SnapshotMode::InitialOnly,
                    }
                }
                Err(e) => return Err(e),
            },
        };
        // Another replica with our id would have one of us disconnected. A registration
        // of our own earlier connection (before a retry) goes when the server's dump
        // thread notices the socket closed, at its next heartbeat: wait that long.
        let mut clash;
        let give_up = std::time::Instant::now()
            + self.config.heartbeat * 2
            + std::time::Duration::from_secs(1);
        loop {
            clash = server::replicas(&mut conn)
                .await
                .into_iter()
                .find(|(id, _)| *id == ctx.server_id);
            if clash.is_none() || std::time::Instant::now() >= give_up {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        if let Some((_, host)) = clash {
            return Err(Error::config(
                C,
                format!(
                    "server id {} is in use by another replica of {} (host {host:?}); each \
                     reader needs its own (MySqlCdcConfig::with_server_id)",
                    ctx.server_id,
                    ctx.addr()
                ),
            ));
        }
        let until = if self.config.cdc.until_current {
            Some(server::current_end(&mut conn, &ctx.facts).await?)
        } else {
            None
        };
        let tables = match begin {
            Begin::Snapshot { .. } => server::tables(&mut conn, &ctx.filter).await?,
            _ => Vec::new(),
        };
        drop(conn);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Batch>>(4);
        let by_gtid = self.config.resume_by_gtid;
        let task = tokio::spawn(async move {
            let ctx = Arc::new(ctx);
            let result: Result<()> = async {
                let from = match begin {
                    Begin::Done => return Ok(()),
                    Begin::Stream(p) => p,
                    Begin::Snapshot { then_stream } => {
                        let Some(from) = snapshot(&ctx, &tables, &tx).await? else {
                            return Ok(());
                        };
                        // The snapshot is whole: its position is a resume point at once,
                        // before any event, so an idle stream saves it on the interval.
                        let cp = from.checkpoint(ctx.facts.identity());
                        if tx.send(Ok(Batch::position(cp))).await.is_err() || !then_stream {
                            return Ok(());
                        }
                        from
                    }
                };
                let plan = Plan {
                    from,
                    until,
                    by_gtid,
                };
                stream(&ctx, plan, &tx).await
            }
            .await;
            if let Err(e) = result {
                let _ = tx.send(Err(e)).await;
            }
        });
        // A panic in the protocol library (it unwraps some reads) is an error, not a hang.
        let (etx, erx) = tokio::sync::mpsc::channel::<Result<Batch>>(1);
        tokio::spawn(async move {
            if let Err(e) = task.await
                && e.is_panic()
            {
                let _ = etx
                    .send(Err(Error::Connection {
                        component: C.into(),
                        message: "the binlog reader failed on a malformed packet".into(),
                        source: None,
                    }))
                    .await;
            }
        });
        use futures::StreamExt;
        let batches = futures::stream::select(
            crate::sources::channel_stream(rx),
            crate::sources::channel_stream(erx),
        )
        .boxed();
        Ok(Extraction::new(batches))
    }
}
