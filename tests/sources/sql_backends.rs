//! The table extractors' shared behaviour, written once and run on MariaDB and
//! PostgreSQL: incremental runs lose and repeat nothing, a connection killed mid-stream
//! fails the run and a retry lands every row once, `testing::extractor_suite` keyed,
//! key-less, by primary key and full, and a dry run gives the query and an estimate.
//! What only one server has (its types, COPY, its catalog quirks) stays in
//! `mysql_source.rs` and `postgres_source.rs`.

use crate::common;

use sqlx::{Connection, Executor, MySqlConnection, PgConnection};
use std::time::Duration;
use tributary::sources::mysql::MySqlExtractor;
use tributary::sources::postgres::PostgresExtractor;
use tributary::sources::sql::{Cursor, SqlSource};
use tributary::stores::{ObjectSink, ObjectStateStore};
use tributary::*;

#[derive(Clone, Copy, Debug)]
enum Backend {
    MariaDb,
    Postgres,
}

/// A connection of the test's own, to set tables up and to kill the extractor's.
enum Conn {
    My(MySqlConnection),
    Pg(PgConnection),
}

impl Conn {
    async fn exec(&mut self, sql: &str) {
        match self {
            Conn::My(c) => c.execute(sql).await.map(|_| ()),
            Conn::Pg(c) => c.execute(sql).await.map(|_| ()),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Kill the session running the extraction query of `table` (a keyed read, so
    /// `ORDER BY`) once it has run 20 ms; whether one was found.
    async fn kill_reader(&mut self, table: &str) -> bool {
        match self {
            Conn::My(c) => {
                let ids: Vec<i64> = sqlx::query_scalar(
                    "SELECT ID FROM information_schema.PROCESSLIST \
                     WHERE INFO LIKE CONCAT('%', ?, '%ORDER BY%') \
                     AND INFO NOT LIKE '%PROCESSLIST%' AND TIME_MS > 20",
                )
                .bind(table)
                .fetch_all(&mut *c)
                .await
                .unwrap();
                let Some(id) = ids.first() else {
                    return false;
                };
                c.execute(format!("KILL CONNECTION {id}").as_str())
                    .await
                    .unwrap();
                true
            }
            Conn::Pg(c) => {
                let n: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE state = 'active' AND pid <> pg_backend_pid() \
                       AND query LIKE '%' || $1 || '%ORDER BY%' \
                       AND query NOT LIKE '%pg_attribute%' AND query NOT LIKE '%pg_stat_activity%' \
                       AND now() - query_start > interval '20 ms') t",
                )
                .bind(table)
                .fetch_one(&mut *c)
                .await
                .unwrap();
                n > 0
            }
        }
    }
}

impl Backend {
    /// The server's URL and a connection with a UTC session; `None` (the test is
    /// skipped) where the server is not configured, outside CI.
    async fn connect(self) -> Option<(String, Conn)> {
        Some(match self {
            Backend::MariaDb => {
                let url = common::service("TRIBUTARY_TEST_MYSQL_URL", "MariaDB")?;
                let mut c = MySqlConnection::connect(&url).await.unwrap();
                c.execute("SET time_zone = '+00:00'").await.unwrap();
                (url, Conn::My(c))
            }
            Backend::Postgres => {
                let url = common::service("TRIBUTARY_TEST_PG_URL", "PostgreSQL")?;
                let mut c = PgConnection::connect(&url).await.unwrap();
                c.execute("SET TimeZone = 'UTC'").await.unwrap();
                (url, Conn::Pg(c))
            }
        })
    }

    /// Connect, then run `sql` (statements separated by `;\n`).
    async fn setup(self, sql: &str) -> Option<(String, Conn)> {
        let (url, mut conn) = self.connect().await?;
        for stmt in sql.split(";\n").filter(|s| !s.trim().is_empty()) {
            conn.exec(stmt).await;
        }
        Some((url, conn))
    }

    /// A fresh table name, the same spelled quoted or not (lower case).
    fn table(self) -> String {
        common::unique("sq").replace('-', "_")
    }

    /// The extractor of this server for `source`.
    fn extractor(self, url: &str, source: SqlSource) -> Box<dyn Extractor> {
        match self {
            Backend::MariaDb => Box::new(MySqlExtractor::connect_lazy(url, source).unwrap()),
            Backend::Postgres => Box::new(PostgresExtractor::connect_lazy(url, source).unwrap()),
        }
    }

    /// The first folder of the keys the extractor's objects land at.
    fn source_name(self) -> &'static str {
        match self {
            Backend::MariaDb => "mysql",
            Backend::Postgres => "postgres",
        }
    }

    /// A timestamp without a time zone, to microseconds.
    fn timestamp(self) -> &'static str {
        match self {
            Backend::MariaDb => "DATETIME(6)",
            Backend::Postgres => "timestamp",
        }
    }

    /// `FROM` a series `n` = 1..=`count`.
    fn series(self, count: u32) -> String {
        match self {
            Backend::MariaDb => format!("(SELECT seq AS n FROM seq_1_to_{count}) s"),
            Backend::Postgres => format!("generate_series(1, {count}) AS s(n)"),
        }
    }

    /// `2020-01-01` plus `seconds` (an SQL expression) seconds.
    fn plus_seconds(self, seconds: &str) -> String {
        match self {
            Backend::MariaDb => format!("TIMESTAMPADD(SECOND, {seconds}, '2020-01-01')"),
            Backend::Postgres => {
                format!("timestamp '2020-01-01' + ({seconds}) * interval '1 second'")
            }
        }
    }

    /// Whole-number division.
    fn div(self, a: &str, b: u32) -> String {
        match self {
            Backend::MariaDb => format!("({a} DIV {b})"),
            Backend::Postgres => format!("({a} / {b})"),
        }
    }

    /// Refresh the planner's statistics of `table`.
    fn analyze(self, table: &str) -> String {
        match self {
            Backend::MariaDb => format!("ANALYZE TABLE {table}"),
            Backend::Postgres => format!("ANALYZE {table}"),
        }
    }
}

/// Every line of every object of `report`, sorted.
async fn lines(sink: &ObjectSink, report: RunReport) -> Vec<String> {
    let mut v = vec![];
    for o in &report.objects {
        v.extend(
            common::read_text(sink, &o.key)
                .await
                .lines()
                .map(str::to_string),
        );
    }
    v.sort();
    v
}

/// The book's incremental job: rows at the last run's cursor value that arrive later
/// (`0|Late`, `1|Returned`) land, and nothing lands twice.
async fn incremental_orders_lose_and_duplicate_nothing(b: Backend) {
    let t = b.table();
    let ts = b.timestamp();
    let Some((url, mut conn)) = b
        .setup(&format!(
            "CREATE TABLE {t} (orderid int, orderstatus varchar(30), lastupdated {ts});\n\
             INSERT INTO {t} VALUES (1,'Backordered','2020-06-01 12:00:00'), (1,'Shipped','2020-06-09 12:00:25'),
               (2,'Shipped','2020-07-11 03:05:00'), (3,'Shipped','2020-07-12 12:00:00'), (4,'Pending','2020-07-12 12:00:00')"
        ))
        .await
    else {
        return;
    };
    let sink = ObjectSink::memory();
    let p = Pipeline::builder("orders")
        .extractor(
            b.extractor(
                &url,
                SqlSource::table(t.clone())
                    .incremental(Cursor::new("lastupdated"))
                    .with_batch_rows(2),
            ),
        )
        .sink(sink.clone())
        .state(ObjectStateStore::new(sink.clone(), "_state"))
        .build()
        .unwrap();
    let run = || async { lines(&sink, p.run().await.into_result().unwrap()).await };
    assert_eq!(run().await.len(), 5);
    conn.exec(&format!(
        "INSERT INTO {t} VALUES (0,'Late','2020-07-12 12:00:00'), (1,'Returned','2020-07-12 12:00:00'), \
         (3,'Shipped','2020-07-13 08:00:00')"
    ))
    .await;
    assert_eq!(
        run().await,
        vec![
            "0|Late|2020-07-12 12:00:00",
            "1|Returned|2020-07-12 12:00:00",
            "3|Shipped|2020-07-13 08:00:00"
        ]
    );
    assert_eq!(run().await, Vec::<String>::new());
    conn.exec(&format!("DROP TABLE {t}")).await;
}

async fn a_connection_killed_mid_stream_fails_the_run_and_a_retry_lands_every_row_once(b: Backend) {
    let t = b.table();
    let Some((url, mut conn)) = b
        .setup(&format!(
            "CREATE TABLE {t} (id int primary key, v varchar(40), at {});\n\
             INSERT INTO {t} SELECT n, CONCAT('v', n), {} FROM {}",
            b.timestamp(),
            b.plus_seconds("n"),
            b.series(200_000)
        ))
        .await
    else {
        return;
    };
    let sink = ObjectSink::memory();
    let state = ObjectStateStore::new(sink.clone(), "_state");
    let mk = || {
        Pipeline::builder("big")
            .extractor(
                b.extractor(
                    &url,
                    SqlSource::table(t.clone())
                        .incremental(Cursor::new("at").with_key(["id"]))
                        .with_batch_rows(1000),
                ),
            )
            .sink(sink.clone())
            .state(state.clone())
            .options(
                PipelineOptions::new()
                    .with_part_max_rows(50_000)
                    .with_channel_capacity(1),
            )
            .build()
            .unwrap()
    };
    let killer = {
        let t = t.clone();
        let (_, mut c) = b.connect().await.unwrap();
        tokio::spawn(async move {
            for _ in 0..400 {
                if c.kill_reader(&t).await {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            false
        })
    };
    let r = mk().run().await;
    assert!(
        killer.await.unwrap(),
        "the extraction query was never seen running"
    );
    assert_eq!(r.outcome, Outcome::Failed, "{:?}", r.error);
    let e = r.error.as_ref().unwrap();
    assert!(
        e.is_retryable(),
        "a killed connection is worth retrying: {e:?}"
    );
    assert!(mk().run().await.into_result().unwrap().succeeded());
    let mut ids = vec![];
    for k in sink.list(b.source_name()).await.unwrap() {
        if k.ends_with(".csv") {
            ids.extend(
                common::read_text(&sink, &k)
                    .await
                    .lines()
                    .map(|l| l.split('|').next().unwrap().parse::<i64>().unwrap()),
            );
        }
    }
    ids.sort();
    let n = ids.len();
    ids.dedup();
    assert_eq!(
        ids.len(),
        n,
        "duplicates across attempts ({} parts committed before the kill)",
        r.objects.len()
    );
    assert_eq!(ids, (1..=200_000).collect::<Vec<_>>());
    conn.exec(&format!("DROP TABLE {t}")).await;
}

/// Groups of rows at one cursor value read in batches of 2 or 3, so checkpoints fall
/// inside the groups: keyed, by the primary key found in the catalog, key-less, and a
/// full read.
#[cfg(feature = "test-util")]
async fn the_extractor_suite_passes_keyed_by_primary_key_key_less_and_full(b: Backend) {
    let t = b.table();
    let ts = b.timestamp();
    let Some((url, mut conn)) = b
        .setup(&format!(
            "CREATE TABLE {t} (id int, u int, at {ts});\n\
             INSERT INTO {t} SELECT n, n % 3, {} FROM {};\n\
             CREATE TABLE {t}_dup (u int, at {ts});\n\
             INSERT INTO {t}_dup SELECT n % 2, {} FROM {};\n\
             CREATE TABLE {t}_pk (id int PRIMARY KEY, u int, at {ts});\n\
             INSERT INTO {t}_pk SELECT * FROM {t}",
            b.plus_seconds(&format!("60 * {}", b.div("n", 5))),
            b.series(53),
            b.plus_seconds(&format!("60 * {}", b.div("n", 7))),
            b.series(41),
        ))
        .await
    else {
        return;
    };
    let incremental = [
        SqlSource::table(t.clone())
            .incremental(Cursor::new("at").with_key(["id"]))
            .with_batch_rows(2),
        // No key given: the table's primary key is used.
        SqlSource::table(format!("{t}_pk"))
            .incremental(Cursor::new("at"))
            .with_batch_rows(2),
        SqlSource::table(format!("{t}_dup"))
            .incremental(Cursor::new("at"))
            .with_batch_rows(3),
    ];
    for (source, rows) in incremental.into_iter().zip([53, 53, 41]) {
        let r = tributary::testing::extractor_suite(&b.extractor(&url, source), 12).await;
        assert_eq!(r.rows, rows, "{r:?}");
        assert!(r.resumes > 0, "{r:?}");
    }
    let full = SqlSource::table(t.clone()).with_batch_rows(10);
    let r = tributary::testing::extractor_suite(&b.extractor(&url, full), 12).await;
    assert_eq!(r.rows, 53, "{r:?}");
    for table in [format!("{t}_pk"), format!("{t}_dup"), t] {
        conn.exec(&format!("DROP TABLE {table}")).await;
    }
}

async fn a_dry_run_gives_the_query_and_the_servers_estimate(b: Backend) {
    let t = b.table();
    let Some((url, mut conn)) = b
        .setup(&format!(
            "CREATE TABLE {t} (id int PRIMARY KEY, at {});\n\
             INSERT INTO {t} SELECT n, {} FROM {};\n\
             {}",
            b.timestamp(),
            b.plus_seconds("n"),
            b.series(3000),
            b.analyze(&t)
        ))
        .await
    else {
        return;
    };
    let p = Pipeline::builder("dry")
        .extractor(b.extractor(
            &url,
            SqlSource::table(t.clone()).incremental(Cursor::new("at")),
        ))
        .sink(ObjectSink::memory())
        .build()
        .unwrap();
    let plan = p.dry_run().await.unwrap().plan.unwrap();
    assert!(plan.query.contains(&t), "{}", plan.query);
    let n = plan.estimated_rows.unwrap();
    assert!((1000..=6000).contains(&n), "estimate {n} for 3000 rows");
    conn.exec(&format!("DROP TABLE {t}")).await;
}

/// Each test above, once per server: `sql_backends::mariadb::…` and
/// `sql_backends::postgres::…`.
macro_rules! on_both {
    ($($(#[$attr:meta])* $name:ident),* $(,)?) => {
        mod mariadb {
            $($(#[$attr])* #[tokio::test]
            async fn $name() {
                super::$name(super::Backend::MariaDb).await
            })*
        }
        mod postgres {
            $($(#[$attr])* #[tokio::test]
            async fn $name() {
                super::$name(super::Backend::Postgres).await
            })*
        }
    };
}

on_both!(
    incremental_orders_lose_and_duplicate_nothing,
    a_connection_killed_mid_stream_fails_the_run_and_a_retry_lands_every_row_once,
    #[cfg(feature = "test-util")]
    the_extractor_suite_passes_keyed_by_primary_key_key_less_and_full,
    a_dry_run_gives_the_query_and_the_servers_estimate,
);
