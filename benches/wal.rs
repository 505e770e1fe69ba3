//! WAL CDC side by side with PostgreSQL's own `pg_recvlogical` (pgoutput and test_decoding)
//! over exactly the same changes (those of `../shared/bench/pg-cdc-anchor.sh`: 200k
//! inserts, 100k updates, 50k deletes of `orders` rows, REPLICA IDENTITY FULL), to
//! `|`-delimited CSV in a local folder; then one 1,000,000-row transaction; then the
//! initial load of a 1,000,000-row table beside `psql \copy`; then the latency from a
//! commit on the server to its object being visible, with a 1 s commit interval.
//!
//! Run: `cargo bench --bench wal --features postgres-cdc` with `scripts/services.sh`
//! started (its PostgreSQL on 5433 has `wal_level = logical`). Server:
//! `TRIBUTARY_BENCH_WAL_URL` (default `postgres://postgres@127.0.0.1:5433/test`); rows:
//! `TRIBUTARY_BENCH_WAL_N` (default 200000). Each tributary case runs in a child process
//! of its own, so its peak RSS is its own.

mod common;
use common::{peak_rss_kib, timed, walk};
use sqlx::{Connection, Executor, PgConnection};
use std::time::{Duration, Instant};
use tributary::ExtractorExt;
use tributary::sources::postgres_cdc::{PostgresCdcConfig, PostgresCdcExtractor, SnapshotMode};
use tributary::stores::ObjectSink;
use tributary::{Pipeline, PipelineOptions};

fn url() -> String {
    std::env::var("TRIBUTARY_BENCH_WAL_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5433/test".into())
}

fn port() -> String {
    url::Url::parse(&url())
        .unwrap()
        .port()
        .unwrap_or(5432)
        .to_string()
}

const SCHEMA: &str = "id bigint PRIMARY KEY, customer_id int NOT NULL, status varchar(30) NOT NULL, \
  amount numeric(12,2) NOT NULL, currency char(3) NOT NULL, note text, is_gift boolean NOT NULL, \
  created_at timestamp NOT NULL, last_updated timestamptz NOT NULL, payload jsonb";

const ROW: &str = "g, (g::int8*7919)%100000, (ARRAY['Backordered','Shipped','Pending','Cancelled'])[1+g%4], \
  ((g::int8*31)%1000000)/100.0, (ARRAY['USD','EUR','KRW'])[1+g%3], \
  CASE WHEN g%3=0 THEN NULL ELSE 'note for order '||g||' with | pipe, \"quote\" and comma' END, g%10=0, \
  timestamp '2020-01-01' + g * interval '1 second', timestamptz '2020-06-01 00:00:00+00' + g * interval '1 second', \
  CASE WHEN g%5=0 THEN NULL ELSE jsonb_build_object('sku','SKU-'||g%997,'qty',1+g%9,'tags',jsonb_build_array('a','b')) END";

async fn sql(c: &mut PgConnection, s: &str) {
    c.execute(s).await.unwrap_or_else(|e| panic!("{s}: {e}"));
}

/// A fresh table with slots `<table>_t` (ours), `<table>_po` and `<table>_td` (the
/// anchors') created before the changes are written. Returns the WAL end after them.
async fn write_changes(table: &str, n: u64, one_txn: bool) -> String {
    let mut c = PgConnection::connect(&url()).await.unwrap();
    for s in ["t", "po", "td"] {
        let _ = sqlx::query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1")
            .bind(format!("{table}_{s}"))
            .execute(&mut c)
            .await;
    }
    sql(&mut c, &format!("DROP PUBLICATION IF EXISTS {table}_t")).await;
    sql(&mut c, &format!("DROP TABLE IF EXISTS {table}")).await;
    sql(&mut c, &format!("CREATE TABLE {table} ({SCHEMA})")).await;
    sql(
        &mut c,
        &format!("ALTER TABLE {table} REPLICA IDENTITY FULL"),
    )
    .await;
    sql(
        &mut c,
        &format!("CREATE PUBLICATION {table}_t FOR TABLE {table}"),
    )
    .await;
    sql(&mut c, &format!("SELECT pg_create_logical_replication_slot('{table}_t', 'pgoutput'), pg_create_logical_replication_slot('{table}_po', 'pgoutput'), pg_create_logical_replication_slot('{table}_td', 'test_decoding')")).await;
    sql(
        &mut c,
        &format!("INSERT INTO {table} SELECT {ROW} FROM generate_series(1, {n}) g"),
    )
    .await;
    if !one_txn {
        sql(&mut c, &format!("UPDATE {table} SET status='Shipped', last_updated=last_updated + interval '1 day' WHERE id % 2 = 0")).await;
        sql(&mut c, &format!("DELETE FROM {table} WHERE id % 4 = 1")).await;
    }
    sqlx::query_scalar::<_, String>("SELECT pg_current_wal_lsn()::text")
        .fetch_one(&mut c)
        .await
        .unwrap()
}

async fn tributary_case(table: &str, snapshot: bool) {
    let dir = tempfile::tempdir().unwrap();
    let sink = ObjectSink::local(dir.path()).unwrap();
    let config = if snapshot {
        PostgresCdcConfig::new(format!("{table}_snap"))
            .with_tables([table])
            .with_snapshot(SnapshotMode::InitialOnly)
            .with_snapshot_parallelism(
                std::env::var("TRIBUTARY_BENCH_WAL_PAR")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(4),
            )
    } else {
        PostgresCdcConfig::new(format!("{table}_t"))
            .with_tables([table])
            .with_snapshot(SnapshotMode::Never)
            .until_current_end()
    };
    let cdc = PostgresCdcExtractor::connect_lazy(&url(), config).unwrap();
    if let Ok(how) = std::env::var("TRIBUTARY_BENCH_WAL_DRAIN") {
        use futures::StreamExt;
        let t = Instant::now();
        let mut s = if how == "typed" {
            tributary::sources::postgres::PostgresExtractor::connect_lazy(
                &url(),
                tributary::sources::sql::SqlSource::table(table),
            )
            .unwrap()
            .extract(None)
            .await
            .unwrap()
        } else {
            cdc.extract(None).await.unwrap()
        };
        let mut n = 0;
        while let Some(b) = s.next().await {
            if n == 0 {
                println!("first batch after {:.2} s", t.elapsed().as_secs_f64());
            }
            n += b.unwrap().num_rows();
        }
        println!("drain only: {n} rows in {:.2} s", t.elapsed().as_secs_f64());
        let _ = cdc.drop_slot().await;
        let _ = cdc.drop_publication().await;
        return;
    }
    let p = Pipeline::builder("bench")
        .extractor(cdc.clone())
        .batch_sink(tributary::stores::ObjectBatchSink::csv(sink).with_manifest_template(None))
        .build()
        .unwrap();
    let t = Instant::now();
    let r = p.run().await.into_result().unwrap();
    let wall = t.elapsed().as_secs_f64();
    println!(
        "tributary {} {:<12} wall {:6.2} s  peak {:6} MiB  ({} rows, {:.0}/s)",
        if snapshot { "snapshot" } else { "wal" },
        table,
        wall,
        peak_rss_kib() / 1024,
        r.rows,
        r.rows as f64 / wall
    );
    let _ = cdc.drop_slot().await;
    if snapshot {
        let _ = cdc.drop_publication().await;
    }
}

fn anchors(table: &str, end: &str) {
    for (slot, opts) in [("po", vec!["-o", "proto_version=1", "-o"]), ("td", vec![])] {
        let out = tempfile::NamedTempFile::new().unwrap();
        let mut cmd = std::process::Command::new("pg_recvlogical");
        cmd.args([
            "-h",
            "127.0.0.1",
            "-p",
            &port(),
            "-U",
            "postgres",
            "-d",
            "test",
        ])
        .arg("-S")
        .arg(format!("{table}_{slot}"))
        .args(["--start", "-E", end, "-f"])
        .arg(out.path())
        .args(&opts);
        if slot == "po" {
            cmd.arg(format!("publication_names={table}_t"));
        }
        let (wall, mib, _) = timed(&mut cmd);
        let size = std::fs::metadata(out.path()).map(|m| m.len()).unwrap_or(0);
        let name = if slot == "po" {
            "pgoutput"
        } else {
            "test_decoding"
        };
        println!(
            "pg_recvlogical {name:<13} {table:<12} wall {wall:6.2} s  peak {mib:6} MiB  out {} MiB",
            size / 1_048_576
        );
    }
}

/// `psql \copy` of the table: the anchor of the initial load.
fn copy_anchor(table: &str) {
    let out = tempfile::NamedTempFile::new().unwrap();
    let (wall, mib, _) = timed(
        std::process::Command::new("psql")
            .args([
                "-X",
                "-q",
                "-h",
                "127.0.0.1",
                "-p",
                &port(),
                "-U",
                "postgres",
                "-d",
                "test",
                "-c",
            ])
            .arg(format!(
                "\\copy {table} TO '{}' WITH (FORMAT csv, DELIMITER '|')",
                out.path().display()
            )),
    );
    println!("psql \\copy {table:<22} wall {wall:6.2} s  peak {mib:6} MiB");
}

async fn drop_slots(table: &str) {
    let mut c = PgConnection::connect(&url()).await.unwrap();
    let _ = sqlx::query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE $1")
        .bind(format!("{table}\\_%"))
        .execute(&mut c)
        .await;
}

/// Commit → visible object latency with a 1 s commit interval.
async fn latency() {
    let t = "bench_latency";
    let mut c = PgConnection::connect(&url()).await.unwrap();
    let _ = sqlx::query("SELECT pg_drop_replication_slot('bench_latency') FROM pg_replication_slots WHERE slot_name = 'bench_latency'").execute(&mut c).await;
    let _ = c.execute("DROP PUBLICATION IF EXISTS bench_latency").await;
    c.execute(format!("DROP TABLE IF EXISTS {t}").as_str())
        .await
        .unwrap();
    c.execute(format!("CREATE TABLE {t} (id INT PRIMARY KEY)").as_str())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sink = ObjectSink::local(dir.path()).unwrap();
    let cdc = PostgresCdcExtractor::connect_lazy(
        &url(),
        PostgresCdcConfig::new(t)
            .with_tables([t])
            .with_snapshot(SnapshotMode::Never),
    )
    .unwrap();
    let stop = tributary::CancellationToken::new();
    let p = Pipeline::builder("latency")
        .extractor(cdc)
        .stop(stop.clone())
        .sink(sink.clone())
        .options(PipelineOptions::new().with_commit_interval(Duration::from_secs(1)))
        .build()
        .unwrap();
    let run = tokio::spawn(async move { p.run().await });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let n = 60;
    let mut committed = Vec::new();
    let mut seen: Vec<Option<Instant>> = vec![None; n];
    let poll = |seen: &mut Vec<Option<Instant>>,
                files: &mut std::collections::HashSet<std::path::PathBuf>| {
        for e in walk(dir.path()) {
            if e.extension().is_some_and(|x| x == "csv") && files.insert(e.clone()) {
                let now = Instant::now();
                for l in std::fs::read_to_string(&e).unwrap_or_default().lines() {
                    if let Some(i) = l.split('|').nth(1).and_then(|v| v.parse::<usize>().ok())
                        && i < seen.len()
                    {
                        seen[i].get_or_insert(now);
                    }
                }
            }
        }
    };
    let mut files = std::collections::HashSet::new();
    for i in 0..n {
        c.execute(format!("INSERT INTO {t} VALUES ({i})").as_str())
            .await
            .unwrap();
        committed.push(Instant::now());
        let until = Instant::now() + Duration::from_millis(100);
        while Instant::now() < until {
            poll(&mut seen, &mut files);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until && seen.iter().any(Option::is_none) {
        poll(&mut seen, &mut files);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    stop.cancel();
    let _ = run.await;
    let _ = sqlx::query("SELECT pg_drop_replication_slot('bench_latency')")
        .execute(&mut c)
        .await;
    let _ = c.execute("DROP PUBLICATION IF EXISTS bench_latency").await;
    let mut ms: Vec<f64> = committed
        .iter()
        .zip(&seen)
        .filter_map(|(c, s)| s.map(|s| (s - *c).as_secs_f64() * 1000.0))
        .collect();
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let q = |p: f64| ms[((ms.len() - 1) as f64 * p).round() as usize];
    println!(
        "tributary commit-to-visible latency, 1 s commit interval: p50 {:.0} ms  p99 {:.0} ms  ({} of {n} seen)",
        q(0.5),
        q(0.99),
        ms.len()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if let Ok(case) = std::env::var("TRIBUTARY_BENCH_CASE") {
        let (table, kind) = case.split_once(',').unwrap();
        rt.block_on(tributary_case(table, kind == "snapshot"));
        return;
    }

    let n: u64 = std::env::var("TRIBUTARY_BENCH_WAL_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let child = |table: &str, kind: &str| {
        let st = std::process::Command::new(&args[0])
            .env("TRIBUTARY_BENCH_CASE", format!("{table},{kind}"))
            .status()
            .expect("run the case");
        if !st.success() {
            println!("tributary {table} {kind} FAILED");
        }
    };
    if std::env::var("TRIBUTARY_BENCH_WAL_ONLY").is_ok_and(|v| v == "snapshot") {
        copy_anchor("orders_big");
        child("orders_big", "snapshot");
        return;
    }
    let end = rt.block_on(write_changes("orders_cdc", n, false));
    println!(
        "== {n} inserts, {} updates, {} deletes, up to {end}",
        n / 2,
        n / 4
    );
    anchors("orders_cdc", &end);
    child("orders_cdc", "wal");
    rt.block_on(drop_slots("orders_cdc"));
    let end = rt.block_on(write_changes("orders_big", 1_000_000, true));
    println!("== one transaction of 1,000,000 inserts");
    anchors("orders_big", &end);
    child("orders_big", "wal");
    rt.block_on(drop_slots("orders_big"));
    println!("== initial load of the 1,000,000-row table");
    copy_anchor("orders_big");
    child("orders_big", "snapshot");
    rt.block_on(latency());
}
