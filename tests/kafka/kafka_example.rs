//! The Kafka examples run as a user runs them, against the project's PostgreSQL, MariaDB
//! and tansu broker: `publish_debezium` publishes the WAL or binlog changes in Debezium's
//! envelope, `kafka_debezium_to_files` lands them as the book's lines; and kill -9 of
//! both at random moments while a writer commits: after final runs every row is landed.

use crate::common;

use sqlx::{Connection, Executor, MySqlConnection, PgConnection};
use std::path::Path;
use std::time::Duration;

fn csv_lines(dir: &Path) -> Vec<String> {
    common::lines_of(&common::csv_files(dir))
}

/// A folder with a pipeline.conf for `source` (the database section) and `[kafka]`.
fn conf(dir: &Path, source: &str, servers: &str, prefix: &str, topic: &str, extra: &str) -> String {
    let conf = dir.join("pipeline.conf");
    std::fs::write(
        &conf,
        format!(
            "{source}\n[kafka]\nbootstrap_servers = {servers}\ntopic_prefix = {prefix}\n\
             group_id = {prefix}-landing\ntopics = {topic}\n\
             [store]\nurl = file://{}/out\n{extra}",
            dir.display()
        ),
    )
    .unwrap();
    conf.to_str().unwrap().to_string()
}

fn pg_section(url: &str) -> String {
    let port = url.rsplit(':').next().unwrap().split('/').next().unwrap();
    format!(
        "[postgres_config]\nhost = 127.0.0.1\nport = {port}\nusername = postgres\ndatabase = test"
    )
}

/// A connection and a fresh, empty book `Orders` table in PostgreSQL.
async fn orders_table(url: &str) -> (PgConnection, String) {
    let mut c = PgConnection::connect(url).await.unwrap();
    let t = common::unique("orders")
        .replace('-', "_")
        .to_ascii_lowercase();
    c.execute(format!("CREATE TABLE {t} (OrderId INT PRIMARY KEY, OrderStatus VARCHAR(30), LastUpdated TIMESTAMP)").as_str())
        .await
        .unwrap();
    (c, t)
}

#[tokio::test]
async fn postgres_changes_published_then_landed_are_the_book_lines() {
    let Some(servers) = common::service("TRIBUTARY_TEST_KAFKA_BOOTSTRAP", "Kafka-protocol broker")
    else {
        return;
    };
    let Some(url) = common::service("TRIBUTARY_TEST_PG_URL", "PostgreSQL") else {
        return;
    };
    let (mut c, t) = orders_table(&url).await;
    c.execute(format!("INSERT INTO {t} VALUES (1, 'Backordered', '2020-06-01 12:00:00'), (2, 'Shipped', '2020-06-09 12:00:25')").as_str())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let conf = conf(
        dir.path(),
        &pg_section(&url),
        &servers,
        &t,
        &format!("{t}.public.{t}"),
        "",
    );
    let out = common::run_example("publish_debezium", &[&conf, &t]);
    assert!(out.contains("2 changes published"), "{out}");
    common::run_example("kafka_debezium_to_files", &[&conf]);
    assert_eq!(
        csv_lines(dir.path()),
        [
            "snapshot|1|Backordered|2020-06-01 12:00:00",
            "snapshot|2|Shipped|2020-06-09 12:00:25"
        ]
    );
    c.execute(format!("UPDATE {t} SET OrderStatus = 'Shipped', LastUpdated = '2020-06-09 12:00:25' WHERE OrderId = 1").as_str())
        .await
        .unwrap();
    c.execute(format!("DELETE FROM {t} WHERE OrderId = 2").as_str())
        .await
        .unwrap();
    common::run_example("publish_debezium", &[&conf, &t]);
    let out = common::run_example("kafka_debezium_to_files", &[&conf]);
    assert!(out.contains("2 changes"), "{out}");
    let lines = csv_lines(dir.path());
    assert_eq!(
        lines[2..],
        ["update|1|Shipped|2020-06-09 12:00:25", "delete|2||"]
    );
    common::wal::cleanup(&mut c, &format!("tributary_{t}")).await;
}

#[tokio::test]
async fn mysql_changes_published_then_landed_are_the_book_lines() {
    let Some(servers) = common::service("TRIBUTARY_TEST_KAFKA_BOOTSTRAP", "Kafka-protocol broker")
    else {
        return;
    };
    let Some(url) = common::service("TRIBUTARY_TEST_MYSQL_URL", "MariaDB") else {
        return;
    };
    let mut c = MySqlConnection::connect(&url).await.unwrap();
    let t = common::unique("Orders").replace('-', "_");
    c.execute(format!("CREATE TABLE {t} (OrderId INT PRIMARY KEY, OrderStatus VARCHAR(30), LastUpdated DATETIME)").as_str())
        .await
        .unwrap();
    let port = url.rsplit(':').next().unwrap().split('/').next().unwrap();
    let section = format!(
        "[mysql_config]\nhostname = 127.0.0.1\nport = {port}\nusername = tributary\npassword = tributary\ndatabase = test"
    );
    let dir = tempfile::tempdir().unwrap();
    let prefix = t.to_ascii_lowercase();
    let conf = conf(
        dir.path(),
        &section,
        &servers,
        &prefix,
        &format!("{prefix}.test.{t}"),
        "",
    );
    common::run_example("publish_debezium", &[&conf, &t]); // snapshot of an empty table
    c.execute(format!("INSERT INTO {t} VALUES (1, 'Backordered', '2020-06-01 12:00:00')").as_str())
        .await
        .unwrap();
    c.execute(format!("UPDATE {t} SET OrderStatus = 'Shipped' WHERE OrderId = 1").as_str())
        .await
        .unwrap();
    let out = common::run_example("publish_debezium", &[&conf, &t]);
    assert!(out.contains("2 changes published"), "{out}");
    common::run_example("kafka_debezium_to_files", &[&conf]);
    assert_eq!(
        csv_lines(dir.path()),
        [
            "insert|1|Backordered|2020-06-01 12:00:00",
            "update|1|Shipped|2020-06-01 12:00:00"
        ]
    );
}

#[tokio::test]
async fn kill_9_of_publisher_and_lander_loses_no_change() {
    let Some(servers) = common::service("TRIBUTARY_TEST_KAFKA_BOOTSTRAP", "Kafka-protocol broker")
    else {
        return;
    };
    let Some(url) = common::service("TRIBUTARY_TEST_PG_URL", "PostgreSQL") else {
        return;
    };
    let (mut c, t) = orders_table(&url).await;
    let dir = tempfile::tempdir().unwrap();
    let conf = conf(
        dir.path(),
        &pg_section(&url),
        &servers,
        &t,
        &format!("{t}.public.{t}"),
        "[cdc]\ncommit_interval = 200ms\n",
    );
    // Create the slot first, so the writer's rows are all in the stream.
    common::run_example("publish_debezium", &[&conf, &t]);
    let (wurl, wt) = (url.clone(), t.clone());
    let writer = tokio::spawn(async move {
        let mut c = PgConnection::connect(&wurl).await.unwrap();
        let mut rng = common::Rng(0x9e37_79b9_7f4a_7c15);
        let mut id = 0;
        while id < 1500 {
            let n = 1 + rng.below(20) as i32;
            let mut tx = c.begin().await.unwrap();
            for _ in 0..n {
                tx.execute(
                    format!("INSERT INTO {wt} VALUES ({id}, 'New', '2020-01-01 00:00:00')")
                        .as_str(),
                )
                .await
                .unwrap();
                id += 1;
            }
            tx.commit().await.unwrap();
            tokio::time::sleep(Duration::from_millis(100 + rng.below(100))).await;
        }
        id
    });
    // Each child's stderr goes to a log of its own, shown if the test fails.
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let spawn = |name: &str, args: &[&str], n: u32| {
        let log = std::fs::File::create(logs.join(format!("{n:02}-{name}.log"))).unwrap();
        std::process::Command::new(common::example(name))
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    };
    let mut rng = common::Rng(0x2545_f491_4f6c_dd1d);
    let mut kills = 0;
    // Until the writer is done and some killed run has landed rows (on a loaded machine
    // the first runs may spend their time joining the group), at most 20 rounds.
    let mut round = 0;
    while round < 20 && (!writer.is_finished() || csv_lines(dir.path()).is_empty()) {
        round += 1;
        let mut publisher = spawn("publish_debezium", &[&conf, &t, "--follow"], round);
        let mut lander = spawn("kafka_debezium_to_files", &[&conf, "--follow"], round);
        tokio::time::sleep(Duration::from_millis(5000 + rng.below(7000))).await;
        // SIGKILL, one first and then the other at another moment.
        let (first, second) = if rng.below(2) == 0 {
            (&mut publisher, &mut lander)
        } else {
            (&mut lander, &mut publisher)
        };
        first.kill().unwrap();
        tokio::time::sleep(Duration::from_millis(rng.below(400))).await;
        second.kill().unwrap();
        publisher.wait().unwrap();
        lander.wait().unwrap();
        kills += 2;
    }
    let written = writer.await.unwrap();
    assert!(kills >= 4, "{kills}");
    let before = csv_lines(dir.path()).len();
    if before == 0 {
        let mut shown = String::new();
        for e in std::fs::read_dir(&logs).unwrap() {
            let p = e.unwrap().path();
            let text = std::fs::read_to_string(&p).unwrap();
            let tail: Vec<&str> = text.lines().rev().take(5).collect();
            shown.push_str(&format!("{}: {:?}\n", p.display(), tail));
        }
        panic!("nothing landed by {kills} killed runs; their logs:\n{shown}");
    }
    // Final runs drain both ends.
    common::run_example("publish_debezium", &[&conf, &t]);
    common::run_example("kafka_debezium_to_files", &[&conf]);
    let lines = csv_lines(dir.path());
    let mut ids: Vec<i32> = lines
        .iter()
        .filter(|l| l.starts_with("insert|"))
        .map(|l| l.split('|').nth(1).unwrap().parse().unwrap())
        .collect();
    ids.sort();
    let total = ids.len();
    ids.dedup();
    let missing: Vec<i32> = (0..written)
        .filter(|i| ids.binary_search(i).is_err())
        .collect();
    assert!(
        missing.is_empty(),
        "after {kills} kills, rows never landed: {missing:?}"
    );
    assert_eq!(ids.len(), written as usize, "no row that was never written");
    eprintln!(
        "{kills} kills, {before} lines landed by killed runs, {} duplicates",
        total - ids.len()
    );
    common::wal::cleanup(&mut c, &format!("tributary_{t}")).await;
}
