//! Binlog CDC side by side with MariaDB's own `mariadb-binlog --base64-output=decode-rows`
//! and the book's python-mysql-replication script, over exactly the same events (those
//! of `../shared/bench/cdc-anchor.sh`: 200k inserts, 100k updates, 50k deletes of
//! `orders` rows), to `|`-delimited CSV in a local folder; then one 1,000,000-row
//! transaction; then the latency from a commit on the server to its object being
//! visible, with a 1 s commit interval.
//!
//! Run: `cargo bench --bench binlog --features mysql-cdc` with `scripts/services.sh`
//! started (its MariaDB on 3307 has the binlog on; the machine's own has it off).
//! Server: `TRIBUTARY_BENCH_BINLOG_URL` (default
//! `mysql://tributary:tributary@127.0.0.1:3307/test`); rows: `TRIBUTARY_BENCH_BINLOG_N`
//! (default 200000); Python: `ANCHORS_VENV` (default `~/.cache/tributary-anchors-venv`).
//! Each case runs in a child process of its own, so its peak RSS is its own.

mod common;
use common::{peak_rss_kib, timed, walk};
use sqlx::{Connection, Executor, MySqlConnection, Row};
use std::time::{Duration, Instant};
use tributary::sources::mysql_cdc::{MySqlCdcConfig, MySqlCdcExtractor, SnapshotMode, StartAt};
use tributary::stores::ObjectSink;
use tributary::{Pipeline, PipelineOptions};

fn url() -> String {
    std::env::var("TRIBUTARY_BENCH_BINLOG_URL")
        .unwrap_or_else(|_| "mysql://tributary:tributary@127.0.0.1:3307/test".into())
}

async fn position(c: &mut MySqlConnection) -> (String, u64) {
    let r = sqlx::query("SHOW MASTER STATUS")
        .fetch_one(&mut *c)
        .await
        .unwrap();
    (r.try_get(0).unwrap(), r.try_get(1).unwrap())
}

const SCHEMA: &str = "id bigint PRIMARY KEY, customer_id int NOT NULL, status varchar(30) NOT NULL, \
  amount decimal(12,2) NOT NULL, currency char(3) NOT NULL, note text, is_gift boolean NOT NULL, \
  created_at datetime NOT NULL, last_updated timestamp NOT NULL, payload json";

const ROW: &str = "seq, (seq*7919)%100000, ELT(1+seq%4,'Backordered','Shipped','Pending','Cancelled'), \
  ((seq*31)%1000000)/100.0, ELT(1+seq%3,'USD','EUR','KRW'), \
  IF(seq%3=0, NULL, CONCAT('note for order ',seq,' with | pipe, \"quote\" and comma')), seq%10=0, \
  TIMESTAMPADD(SECOND, seq, '2020-01-01 00:00:00'), TIMESTAMPADD(SECOND, seq, '2020-06-01 00:00:00'), \
  IF(seq%5=0, NULL, JSON_OBJECT('sku',CONCAT('SKU-',seq%997),'qty',1+seq%9,'tags',JSON_ARRAY('a','b')))";

/// Write the events; returns (from, to) positions around them.
async fn write_events(table: &str, n: u64, one_txn: bool) -> ((String, u64), (String, u64)) {
    let mut c = MySqlConnection::connect(&url()).await.unwrap();
    c.execute(format!("DROP TABLE IF EXISTS {table}").as_str())
        .await
        .unwrap();
    c.execute(format!("CREATE TABLE {table} ({SCHEMA})").as_str())
        .await
        .unwrap();
    let from = position(&mut c).await;
    if one_txn {
        c.execute(format!("INSERT INTO {table} SELECT {ROW} FROM seq_1_to_{n}").as_str())
            .await
            .unwrap();
    } else {
        for stmt in [
            format!("INSERT INTO {table} SELECT {ROW} FROM seq_1_to_{n}"),
            format!(
                "UPDATE {table} SET status='Shipped', last_updated=last_updated + INTERVAL 1 DAY WHERE id % 2 = 0"
            ),
            format!("DELETE FROM {table} WHERE id % 4 = 1"),
        ] {
            c.execute(stmt.as_str()).await.unwrap();
        }
    }
    (from, position(&mut c).await)
}

async fn tributary_case(table: &str, from: (String, u64)) {
    let dir = tempfile::tempdir().unwrap();
    let sink = ObjectSink::local(dir.path()).unwrap();
    let cdc = MySqlCdcExtractor::connect_lazy(
        &url(),
        MySqlCdcConfig::new()
            .with_tables([table])
            .with_snapshot(SnapshotMode::Never)
            .with_start_at(StartAt::Position {
                file: from.0,
                pos: from.1,
            })
            .until_current_end(),
    )
    .unwrap();
    let p = Pipeline::builder("bench")
        .extractor(cdc)
        .batch_sink(tributary::stores::ObjectBatchSink::csv(sink).with_manifest_template(None))
        .build()
        .unwrap();
    let t = Instant::now();
    let r = p.run().await.into_result().unwrap();
    let wall = t.elapsed().as_secs_f64();
    println!(
        "tributary binlog {:<16} wall {:6.2} s  peak {:6} MiB  ({} changes, {:.0}/s)",
        table,
        wall,
        peak_rss_kib() / 1024,
        r.rows,
        r.rows as f64 / wall
    );
}

fn anchors(table: &str, from: &(String, u64), to: &(String, u64), book: bool) {
    let u = url::Url::parse(&url()).unwrap();
    let (host, port) = (
        u.host_str().unwrap().to_string(),
        u.port().unwrap_or(3306).to_string(),
    );
    let (user, pw) = (
        u.username().to_string(),
        u.password().unwrap_or("").to_string(),
    );
    let out = tempfile::NamedTempFile::new().unwrap();
    let (wall, mib, _) = timed(
        std::process::Command::new("mariadb-binlog")
            .args(["-R", "-h", &host, "-P", &port, "-u", &user])
            .arg(format!("-p{pw}"))
            .arg(format!("--start-position={}", from.1))
            .arg(format!("--stop-position={}", to.1))
            .args(["--base64-output=decode-rows", "-v", "-r"])
            .arg(out.path())
            .arg(&from.0),
    );
    println!("mariadb-binlog decode-rows {table:<10} wall {wall:6.2} s  peak {mib:6} MiB");
    if !book {
        return;
    }
    let venv = std::env::var("ANCHORS_VENV").unwrap_or_else(|_| {
        format!(
            "{}/.cache/tributary-anchors-venv",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    let py = format!("{venv}/bin/python");
    if !std::path::Path::new(&py).exists() {
        println!("book python-mysql-replication: no venv at {venv} (see scripts/bench.sh)");
        return;
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/anchors/book_binlog.py"
    );
    let (wall, mib, stdout) = timed(
        std::process::Command::new(py)
            .arg(script)
            .args([
                &host,
                &port,
                &user,
                &pw,
                &from.0,
                &from.1.to_string(),
                table,
            ])
            .arg(out.path()),
    );
    println!(
        "book python-mysql-replication {table:<8} wall {wall:6.2} s  peak {mib:6} MiB  ({})",
        stdout.trim()
    );
}

/// Commit → visible object latency with a 1 s commit interval.
async fn latency() {
    let t = "bench_latency";
    let mut c = MySqlConnection::connect(&url()).await.unwrap();
    c.execute(format!("DROP TABLE IF EXISTS {t}").as_str())
        .await
        .unwrap();
    c.execute(format!("CREATE TABLE {t} (id INT PRIMARY KEY)").as_str())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sink = ObjectSink::local(dir.path()).unwrap();
    let cdc = MySqlCdcExtractor::connect_lazy(
        &url(),
        MySqlCdcConfig::new()
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
        let (table, file, pos) = {
            let mut it = case.split(',');
            (
                it.next().unwrap().to_string(),
                it.next().unwrap().to_string(),
                it.next().unwrap().parse().unwrap(),
            )
        };
        rt.block_on(tributary_case(&table, (file, pos)));
        return;
    }
    let n: u64 = std::env::var("TRIBUTARY_BENCH_BINLOG_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let child = |table: &str, from: &(String, u64)| {
        let st = std::process::Command::new(&args[0])
            .env(
                "TRIBUTARY_BENCH_CASE",
                format!("{table},{},{}", from.0, from.1),
            )
            .status()
            .expect("run the case");
        if !st.success() {
            println!("tributary {table} FAILED");
        }
    };
    let (from, to) = rt.block_on(write_events("orders_cdc", n, false));
    println!(
        "== {n} inserts, {} updates, {} deletes from {}:{}",
        n / 2,
        n / 4,
        from.0,
        from.1
    );
    anchors("orders_cdc", &from, &to, true);
    child("orders_cdc", &from);
    let (from, to) = rt.block_on(write_events("orders_big", 1_000_000, true));
    println!("== one transaction of 1,000,000 inserts");
    anchors("orders_big", &from, &to, false);
    child("orders_big", &from);
    rt.block_on(latency());
}
