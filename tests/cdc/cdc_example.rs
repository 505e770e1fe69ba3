//! The CDC examples (`extract_mysql_binlog`, `extract_postgres_wal`) run as a user runs
//! them, against the project's own servers, written once for both backends: the book's
//! lines across runs, `--follow` stopped by SIGTERM with everything committed, and kill
//! -9 of the process at random moments while a writer commits: after a final run every
//! row is landed, with duplicates only from uncommitted steps.

use crate::common;

use sqlx::{AnyConnection, Connection, Executor};
use std::path::Path;
use std::time::Duration;

/// What differs between the binlog and the WAL example.
#[derive(Clone, Copy)]
pub enum Backend {
    MySql,
    Postgres,
}

impl Backend {
    fn example(self) -> &'static str {
        match self {
            Backend::MySql => "extract_mysql_binlog",
            Backend::Postgres => "extract_postgres_wal",
        }
    }

    fn url(self) -> Option<String> {
        match self {
            Backend::MySql => common::service("TRIBUTARY_TEST_MYSQL_URL", "MariaDB"),
            Backend::Postgres => common::service("TRIBUTARY_TEST_PG_URL", "PostgreSQL"),
        }
    }

    async fn connect(self, url: &str) -> AnyConnection {
        sqlx::any::install_default_drivers();
        AnyConnection::connect(url).await.unwrap()
    }

    /// The table's name: PostgreSQL folds unquoted names to lower case.
    fn table(self) -> String {
        let t = common::unique("Orders").replace('-', "_");
        match self {
            Backend::MySql => t,
            Backend::Postgres => t.to_ascii_lowercase(),
        }
    }

    fn timestamp(self) -> &'static str {
        match self {
            Backend::MySql => "DATETIME",
            Backend::Postgres => "TIMESTAMP",
        }
    }

    /// The connection section of `pipeline.conf` for the server on `port`.
    fn section(self, port: &str) -> String {
        match self {
            Backend::MySql => format!(
                "[mysql_config]\nhostname = 127.0.0.1\nport = {port}\nusername = tributary\n\
                 password = tributary\ndatabase = test\n"
            ),
            Backend::Postgres => format!(
                "[postgres_config]\nhost = 127.0.0.1\nport = {port}\nusername = postgres\n\
                 database = test\n"
            ),
        }
    }

    /// The line a delete of order 2 lands as.
    fn deleted_line(self) -> &'static str {
        match self {
            Backend::MySql => "delete|2|Shipped|2020-06-09 12:00:25",
            // REPLICA IDENTITY DEFAULT: a delete carries the key only.
            Backend::Postgres => "delete|2||",
        }
    }

    /// The ops rows written while `--follow` starts may land as: on MariaDB the example
    /// may start late enough (the other tests load the server: seen once in a full
    /// run) that its snapshot reads them; the WAL example's slot exists before it reads.
    fn follow_ops(self) -> &'static [&'static str] {
        match self {
            Backend::MySql => &["insert", "snapshot"],
            Backend::Postgres => &["insert"],
        }
    }

    /// Drop what the example left on the server (the WAL example's slot and publication).
    async fn cleanup(self, url: &str, t: &str) {
        if let Backend::Postgres = self {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            common::wal::cleanup(&mut conn, &format!("tributary_{t}")).await;
        }
    }

    fn run(self, args: &[&str]) -> String {
        common::run_example(self.example(), args)
    }

    fn command(self) -> std::process::Command {
        std::process::Command::new(common::example(self.example()))
    }
}

/// Every line of every CSV object under `dir`, objects in name order.
fn csv_lines(dir: &Path) -> Vec<String> {
    common::lines_of(&common::csv_files(dir))
}

struct Setup {
    url: String,
    conn: AnyConnection,
    table: String,
    dir: tempfile::TempDir,
    conf: String,
}

async fn setup(b: Backend, extra: &str) -> Option<Setup> {
    let url = b.url()?;
    let mut conn = b.connect(&url).await;
    let t = b.table();
    conn.execute(
        format!(
            "CREATE TABLE {t} (OrderId INT PRIMARY KEY, OrderStatus VARCHAR(30), LastUpdated {})",
            b.timestamp()
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
            "{}[store]\nurl = file://{}/out\n{extra}",
            b.section(port),
            dir.path().display()
        ),
    )
    .unwrap();
    let conf = conf.to_str().unwrap().to_string();
    Some(Setup {
        url,
        conn,
        table: t,
        dir,
        conf,
    })
}

pub async fn each_run_lands_the_book_lines_since_the_last(b: Backend) {
    let Some(Setup {
        url,
        mut conn,
        table: t,
        dir,
        conf,
    }) = setup(b, "").await
    else {
        return;
    };
    conn.execute(
        format!("INSERT INTO {t} VALUES (1, 'Backordered', '2020-06-01 12:00:00'), (2, 'Shipped', '2020-06-09 12:00:25')")
            .as_str(),
    )
    .await
    .unwrap();
    let out = b.run(&[&conf, &t]);
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
    let out = b.run(&[&conf, &t]);
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
            b.deleted_line()
        ]
    );
    // Nothing new: nothing landed, exit 0.
    let out = b.run(&[&conf, &t]);
    assert!(out.contains("0 changes in 0 object(s)"), "{out}");
    b.cleanup(&url, &t).await;
}

pub async fn follow_commits_what_it_has_on_sigterm_and_exits_zero(b: Backend) {
    let Some(Setup {
        url,
        mut conn,
        table: t,
        dir,
        conf,
    }) = setup(b, "[cdc]\ncommit_interval = 60\n").await
    else {
        return;
    };
    let child = b
        .command()
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
    // Each row once.
    let mut ids: Vec<i64> = csv_lines(dir.path())
        .iter()
        .map(|l| {
            let (op, rest) = l.split_once('|').unwrap();
            assert!(b.follow_ops().contains(&op), "{l}");
            rest.split('|').next().unwrap().parse().unwrap()
        })
        .collect();
    ids.sort();
    assert_eq!(ids, (0..10).collect::<Vec<_>>());
    b.cleanup(&url, &t).await;
}

pub async fn kill_9_at_random_moments_loses_no_change(b: Backend) {
    let Some(Setup {
        url,
        conn,
        table: t,
        dir,
        conf,
    }) = setup(b, "[cdc]\ncommit_interval = 200ms\n").await
    else {
        return;
    };
    drop(conn);
    // A writer: 2,000 rows in transactions of 1 to 20 rows, with updates.
    let (wurl, wt) = (url.clone(), t.clone());
    let writer = tokio::spawn(async move {
        let mut c = b.connect(&wurl).await;
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
        let mut child = b
            .command()
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
    b.run(&[&conf, &t]);
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
    b.cleanup(&url, &t).await;
}
