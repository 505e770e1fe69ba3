//! The `extract_mysql_binlog` example run as a user runs it, against the project's own
//! MariaDB: the book's lines across runs, `--follow` stopped by SIGTERM with everything
//! committed, and kill -9 of the process at random moments while a writer commits:
//! after a final run every row is landed, with duplicates only from uncommitted steps.

use crate::common;

use sqlx::{Connection, Executor, MySqlConnection};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn example() -> PathBuf {
    common::example("extract_mysql_binlog")
}

fn run(args: &[&str]) -> String {
    common::run_example("extract_mysql_binlog", args)
}

/// Every line of every CSV object under `dir`, objects in name order.
fn csv_lines(dir: &Path) -> Vec<String> {
    common::lines_of(&common::csv_files(dir))
}

async fn setup(extra: &str) -> Option<(MySqlConnection, String, tempfile::TempDir, String)> {
    let url = common::service("TRIBUTARY_TEST_MYSQL_URL", "MariaDB")?;
    let mut conn = MySqlConnection::connect(&url).await.unwrap();
    let t = common::unique("Orders").replace('-', "_");
    conn.execute(
        format!(
            "CREATE TABLE {t} (OrderId INT PRIMARY KEY, OrderStatus VARCHAR(30), LastUpdated DATETIME)"
        )
        .as_str(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("pipeline.conf");
    let port = url.rsplit(':').next().unwrap().split('/').next().unwrap();
    std::fs::write(
        &conf,
        format!(
            "[mysql_config]\nhostname = 127.0.0.1\nport = {port}\nusername = tributary\npassword = tributary\ndatabase = test\n\
             [store]\nurl = file://{0}/out\n{extra}",
            dir.path().display()
        ),
    )
    .unwrap();
    let conf = conf.to_str().unwrap().to_string();
    Some((conn, t, dir, conf))
}

#[tokio::test]
async fn each_run_lands_the_book_lines_since_the_last() {
    let Some((mut conn, t, dir, conf)) = setup("").await else {
        return;
    };
    conn.execute(
        format!("INSERT INTO {t} VALUES (1, 'Backordered', '2020-06-01 12:00:00'), (2, 'Shipped', '2020-06-09 12:00:25')")
            .as_str(),
    )
    .await
    .unwrap();
    let out = run(&[&conf, &t]);
    assert!(out.contains("2 changes in 1 object(s)"), "{out}");
    assert_eq!(
        csv_lines(dir.path()),
        [
            "snapshot|1|Backordered|2020-06-01 12:00:00",
            "snapshot|2|Shipped|2020-06-09 12:00:25"
        ]
    );
    for stmt in [
        format!("INSERT INTO {t} VALUES (3, 'Pending', '2020-07-12 12:00:00')"),
        format!(
            "UPDATE {t} SET OrderStatus = 'Shipped', LastUpdated = '2020-06-10 09:00:00' WHERE OrderId = 1"
        ),
        format!("DELETE FROM {t} WHERE OrderId = 2"),
    ] {
        conn.execute(stmt.as_str()).await.unwrap();
    }
    let out = run(&[&conf, &t]);
    assert!(out.contains("3 changes in 1 object(s)"), "{out}");
    let lines = csv_lines(dir.path());
    let new: Vec<&String> = lines
        .iter()
        .filter(|l| !l.starts_with("snapshot"))
        .collect();
    assert_eq!(
        new,
        [
            "insert|3|Pending|2020-07-12 12:00:00",
            "update|1|Shipped|2020-06-10 09:00:00",
            "delete|2|Shipped|2020-06-09 12:00:25"
        ]
    );
    // Nothing new: nothing landed, exit 0.
    let out = run(&[&conf, &t]);
    assert!(out.contains("0 changes in 0 object(s)"), "{out}");
}

#[tokio::test]
async fn follow_commits_what_it_has_on_sigterm_and_exits_zero() {
    let Some((mut conn, t, dir, conf)) = setup("[cdc]\ncommit_interval = 60\n").await else {
        return;
    };
    let child = std::process::Command::new(example())
        .args([&conf, &t, "--follow"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for i in 0..10 {
        conn.execute(
            format!("INSERT INTO {t} VALUES ({i}, 'New', '2020-01-01 00:00:00')").as_str(),
        )
        .await
        .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The commit interval is a minute: only the stop commits these.
    let st = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Each row once, streamed, or read by the snapshot when the example started late
    // (the other tests of this binary load the server: seen once in a full run).
    let mut ids: Vec<i64> = csv_lines(dir.path())
        .iter()
        .map(|l| {
            let (op, rest) = l.split_once('|').unwrap();
            assert!(op == "insert" || op == "snapshot", "{l}");
            rest.split('|').next().unwrap().parse().unwrap()
        })
        .collect();
    ids.sort();
    assert_eq!(ids, (0..10).collect::<Vec<_>>());
}

#[tokio::test]
async fn kill_9_at_random_moments_loses_no_change() {
    let Some((conn, t, dir, conf)) = setup("[cdc]\ncommit_interval = 200ms\n").await else {
        return;
    };
    drop(conn);
    let url = common::service("TRIBUTARY_TEST_MYSQL_URL", "MariaDB").unwrap();
    // A writer: 2,000 rows in transactions of 1 to 20 rows, with updates.
    let (wurl, wt) = (url.clone(), t.clone());
    let writer = tokio::spawn(async move {
        let mut c = MySqlConnection::connect(&wurl).await.unwrap();
        let mut rng = common::Rng(0x9e37_79b9_7f4a_7c15);
        let mut id = 0;
        while id < 2000 {
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
            tx.execute(
                format!(
                    "UPDATE {wt} SET OrderStatus = 'Seen' WHERE OrderId = {}",
                    id - 1
                )
                .as_str(),
            )
            .await
            .unwrap();
            tx.commit().await.unwrap();
            tokio::time::sleep(Duration::from_millis(10 + rng.below(20))).await;
        }
        id
    });
    let mut rng = common::Rng(0x2545_f491_4f6c_dd1d);
    let mut kills = 0;
    while !writer.is_finished() {
        let mut child = std::process::Command::new(example())
            .args([&conf, &t, "--follow"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300 + rng.below(900))).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
    }
    let written = writer.await.unwrap();
    assert!(kills >= 2, "{kills}");
    // The killed runs committed most of it (a kill lands between commits, not only
    // before the first)...
    let before = csv_lines(dir.path()).len();
    assert!(before > 0, "nothing committed by {kills} followed runs");
    // ...and one last run without --follow drains to the end.
    run(&[&conf, &t]);
    let lines = csv_lines(dir.path());
    let mut inserted: Vec<i32> = lines
        .iter()
        .filter(|l| l.starts_with("insert|") || l.starts_with("snapshot|"))
        .map(|l| l.split('|').nth(1).unwrap().parse().unwrap())
        .collect();
    inserted.sort();
    let total = inserted.len();
    inserted.dedup();
    let missing: Vec<i32> = (0..written)
        .filter(|i| inserted.binary_search(i).is_err())
        .collect();
    assert!(
        missing.is_empty(),
        "after {kills} kills, rows never landed: {missing:?}"
    );
    assert_eq!(
        inserted.len(),
        written as usize,
        "no row that was never written"
    );
    eprintln!(
        "{kills} kills, {before} lines landed by the killed runs, {} duplicate inserts",
        total - inserted.len()
    );
    assert!(
        total - inserted.len() <= kills * 400,
        "duplicates only from uncommitted steps: {}",
        total - inserted.len()
    );
}
