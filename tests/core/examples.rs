//! The book-job examples run as a user would run them: a `pipeline.conf`, a table name,
//! real PostgreSQL and MariaDB, a local folder store and a SQLite warehouse.

use crate::common;

use sqlx::{Connection, Executor};
use std::path::{Path, PathBuf};

use common::{example, run_example as run};

/// Every CSV line under `dir`, sorted.
fn csv_lines(dir: &Path) -> Vec<String> {
    let mut out = common::lines_of(&common::csv_files(dir));
    out.sort();
    out
}

const BOOK_ROWS: &str = "(1,'Backordered','2020-06-01 12:00:00'), (1,'Shipped','2020-06-09 12:00:25'),
    (2,'Shipped','2020-07-11 03:05:00'), (1,'Shipped','2020-06-09 11:50:00'), (3,'Shipped','2020-07-12 12:00:00')";

#[tokio::test]
async fn postgres_examples() {
    let Some(url) = common::service("TRIBUTARY_TEST_PG_URL", "PostgreSQL") else {
        return;
    };
    let s = common::unique("ex").replace('-', "_");
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    conn.execute(
        format!(
            "CREATE SCHEMA {s}; CREATE TABLE {s}.Orders (OrderId int, OrderStatus varchar(30), LastUpdated timestamp);
             INSERT INTO {s}.Orders VALUES {BOOK_ROWS}"
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
            "[postgres_config]\nhost = 127.0.0.1\nport = {port}\nusername = postgres\npassword =\ndatabase = test\n\
             [store]\nurl = file://{0}/out\n[warehouse]\nurl = sqlite://{0}/wh.db\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let conf = conf.to_str().unwrap();
    let table = format!("{s}.Orders");
    let out = run("extract_postgres_full", &[conf, &table]);
    assert!(out.contains("5 rows in 1 object(s)"), "{out}");
    let out = run("extract_postgres_incremental", &[conf, &table]);
    assert!(out.contains("5 rows in 1 object(s)"), "{out}");
    conn.execute(format!("INSERT INTO {s}.Orders VALUES (4,'Pending','2020-07-12 12:00:00'), (5,'Shipped','2020-07-13 00:00:00')").as_str())
        .await
        .unwrap();
    let out = run("extract_postgres_incremental", &[conf, &table]);
    assert!(
        out.contains("2 rows in 1 object(s)"),
        "only the new rows: {out}"
    );
    let lines = csv_lines(&dir.path().join("out"));
    assert_eq!(lines.len(), 5 + 5 + 2);
    // `[store] part_max_rows` from pipeline.conf rotates objects within one run, exactly
    // at the limit also on the COPY path (its chunks are cut at a row boundary).
    conn.execute(
        format!("CREATE TABLE {s}.many AS SELECT g AS id FROM generate_series(1, 20000) g")
            .as_str(),
    )
    .await
    .unwrap();
    let rotating = dir.path().join("rotating.conf");
    std::fs::write(
        &rotating,
        std::fs::read_to_string(conf)
            .unwrap()
            .replace("[store]\n", "[store]\npart_max_rows = 7000\n")
            + "[pipeline]\ncommit_interval = 30s\nretries = 2\n",
    )
    .unwrap();
    let out = run(
        "extract_postgres_full",
        &[rotating.to_str().unwrap(), &format!("{s}.many")],
    );
    assert!(out.contains("20000 rows in 3 object(s)"), "{out}");
    let sizes: Vec<&str> = out.lines().filter_map(|l| l.split('\t').nth(1)).collect();
    assert_eq!(sizes, ["7000 rows", "7000 rows", "6000 rows"], "{out}");
    assert!(lines.contains(&"4|Pending|2020-07-12 12:00:00".to_string()));
    // On a terminal (a pty from `script`), stderr shows a progress bar out of the
    // planner's estimate; in a pipe (every run above) nothing but the error, if any.
    let cmd = format!(
        "{} {} {s}.many",
        example("extract_postgres_full").display(),
        rotating.display()
    );
    let tty = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&tty.stdout);
    assert!(tty.status.success(), "{shown}");
    assert!(
        shown.contains("% ") && shown.contains("/~") && shown.contains(" rows, "),
        "a progress bar with a percentage on the terminal: {shown:?}"
    );
    assert!(shown.contains("20000 rows in 3 object(s)"), "{shown}");
    let piped = std::process::Command::new(example("extract_postgres_full"))
        .args([rotating.to_str().unwrap(), &format!("{s}.many")])
        .output()
        .unwrap();
    assert!(
        piped.stderr.is_empty(),
        "no bar into a pipe: {:?}",
        String::from_utf8_lossy(&piped.stderr)
    );
    // A missing table is a clear error and a non-zero exit.
    let bad = std::process::Command::new(example("extract_postgres_full"))
        .args([conf, "no_such_table"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no_such_table"));
    conn.execute(format!("DROP SCHEMA {s} CASCADE").as_str())
        .await
        .unwrap();
}

#[tokio::test]
async fn mysql_examples() {
    let Some(url) = common::service("TRIBUTARY_TEST_MYSQL_URL", "MariaDB") else {
        return;
    };
    let t = common::unique("ex").replace('-', "_");
    let mut conn = sqlx::MySqlConnection::connect(&url).await.unwrap();
    conn.execute(
        format!(
            "CREATE TABLE {t} (OrderId int, OrderStatus varchar(30), LastUpdated timestamp NULL)"
        )
        .as_str(),
    )
    .await
    .unwrap();
    conn.execute(format!("INSERT INTO {t} VALUES {BOOK_ROWS}").as_str())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("pipeline.conf");
    let port = url.rsplit(':').next().unwrap().split('/').next().unwrap();
    std::fs::write(
        &conf,
        format!(
            "[mysql_config]\nhostname = 127.0.0.1\nport = {port}\nusername = tributary\npassword = tributary\ndatabase = test\n\
             [store]\nurl = file://{0}/out\n[warehouse]\nurl = sqlite://{0}/wh.db\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let conf = conf.to_str().unwrap();
    let out = run("extract_mysql_full", &[conf, &t]);
    assert!(out.contains("5 rows in 1 object(s)"), "{out}");
    let out = run("extract_mysql_incremental", &[conf, &t]);
    assert!(out.contains("5 rows in 1 object(s)"), "{out}");
    conn.execute(format!("INSERT INTO {t} VALUES (4,'Pending','2020-07-12 12:00:00')").as_str())
        .await
        .unwrap();
    let out = run("extract_mysql_incremental", &[conf, &t]);
    assert!(out.contains("1 rows in 1 object(s)"), "{out}");
    conn.execute(format!("DROP TABLE {t}").as_str())
        .await
        .unwrap();
}

#[test]
fn rest_example() {
    let dir = tempfile::tempdir().unwrap();
    let out = run("extract_rest_api", &[dir.path().to_str().unwrap()]);
    assert!(out.contains("(5 rows)"), "{out}");
    let lines = csv_lines(dir.path());
    assert_eq!(lines.len(), 5);
    assert!(
        lines.iter().all(|l| l.starts_with("42.36|71.05|")),
        "{lines:?}"
    );
}

#[cfg(feature = "mongodb")]
#[tokio::test]
async fn mongodb_example() {
    use mongodb::bson::{DateTime, doc};
    let Some(url) = common::service("TRIBUTARY_TEST_MONGO_URL", "MongoDB wire-protocol server")
    else {
        return;
    };
    let coll = common::unique("events").replace('-', "_");
    let client = mongodb::Client::with_uri_str(&url).await.unwrap();
    let ms = |s: &str| {
        DateTime::from_millis(
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .timestamp_millis(),
        )
    };
    client
        .database("events_db")
        .collection(&coll)
        .insert_many(vec![
            doc! { "event_id": 1, "event_timestamp": ms("2020-06-01T23:59:59.999Z"), "event_name": "before" },
            doc! { "event_id": 2, "event_timestamp": ms("2020-06-02T00:00:00Z"), "event_name": "login" },
            doc! { "event_id": 3, "event_timestamp": ms("2020-06-02T13:30:00.5Z"), "event_name": "purchase" },
            doc! { "event_id": 4, "event_timestamp": ms("2020-06-03T00:00:00Z"), "event_name": "after" },
        ])
        .await
        .unwrap();
    let port = url
        .trim_start_matches("mongodb://")
        .split(['/', '?'])
        .next()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("pipeline.conf");
    std::fs::write(
        &conf,
        format!(
            "[mongo_config]\nhostname = 127.0.0.1\nport = {port}\ndatabase = events_db\ncollection = {coll}\n\
             [store]\nurl = file://{0}/out\n[warehouse]\nurl = sqlite://{0}/wh.db\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let out = run("extract_mongodb", &[conf.to_str().unwrap(), "2020-06-02"]);
    assert!(
        out.contains("2 events of 2020-06-02 in 1 object(s)"),
        "{out}"
    );
    assert_eq!(
        csv_lines(dir.path()),
        vec![
            "2|2020-06-02 00:00:00+00|login",
            "3|2020-06-02 13:30:00.5+00|purchase"
        ]
    );
    // A day that is not a date is refused before anything runs.
    let out = std::process::Command::new(example("extract_mongodb"))
        .args([conf.to_str().unwrap(), "June 2nd"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("YYYY-MM-DD"));
}

/// Every file under `dir`, skipping the staging folder.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.ends_with(tributary::stores::STAGING_DIR) {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test]
async fn sigterm_and_ctrl_c_cancel_the_run_and_leave_a_record() {
    // Issue 8.8: a signal killed the examples with no manifest, no history row and a
    // staged file left behind.
    let Some(url) = common::service("TRIBUTARY_TEST_PG_URL", "PostgreSQL") else {
        return;
    };
    let s = common::unique("sig").replace('-', "_");
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    conn.execute(
        format!(
            "CREATE SCHEMA {s}; CREATE TABLE {s}.big AS
             SELECT g AS id, repeat('x', 200) AS pad FROM generate_series(1, 3000000) g"
        )
        .as_str(),
    )
    .await
    .unwrap();
    let port = url.rsplit(':').next().unwrap().split('/').next().unwrap();
    for signal in ["TERM", "INT"] {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("pipeline.conf");
        std::fs::write(
            &conf,
            format!(
                "[postgres_config]\nhost = 127.0.0.1\nport = {port}\nusername = postgres\npassword =\ndatabase = test\n\
                 [store]\nurl = file://{0}/out\n[warehouse]\nurl = sqlite://{0}/wh.db\n",
                dir.path().display()
            ),
        )
        .unwrap();
        let mut child = std::process::Command::new(example("extract_postgres_full"))
            .args([conf.to_str().unwrap(), &format!("{s}.big")])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Signal once the first object is being written.
        let staging = dir.path().join("out").join(tributary::stores::STAGING_DIR);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !std::fs::read_dir(&staging).is_ok_and(|mut d| d.next().is_some()) {
            assert!(
                std::time::Instant::now() < deadline,
                "the run never started writing"
            );
            assert!(
                child.try_wait().unwrap().is_none(),
                "finished before the signal"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "SIG{signal}: exit status {}",
            out.status
        );
        assert_eq!(
            out.status.code(),
            Some(1),
            "SIG{signal}: exited by the signal, not by the run"
        );
        assert!(stderr.contains("cancelled"), "SIG{signal}: {stderr}");
        let landed = files(&dir.path().join("out"));
        assert!(
            landed
                .iter()
                .all(|p| !p.to_string_lossy().ends_with(".csv")),
            "SIG{signal}: data at a final key: {landed:?}"
        );
        let manifest = landed
            .iter()
            .find(|p| p.to_string_lossy().ends_with(".manifest.json"))
            .unwrap_or_else(|| panic!("SIG{signal}: no manifest in {landed:?}"));
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap();
        assert_eq!(m["outcome"], "cancelled", "SIG{signal}: {m}");
        let staged: Vec<_> = std::fs::read_dir(&staging).unwrap().collect();
        assert!(
            staged.is_empty(),
            "SIG{signal}: staged files left: {staged:?}"
        );
        let mut wh =
            sqlx::SqliteConnection::connect(&format!("sqlite://{}/wh.db", dir.path().display()))
                .await
                .unwrap();
        let outcome: String = sqlx::query_scalar("SELECT outcome FROM pipeline_run_history")
            .fetch_one(&mut wh)
            .await
            .unwrap();
        assert_eq!(outcome, "cancelled", "SIG{signal}");
    }
    conn.execute(format!("DROP SCHEMA {s} CASCADE").as_str())
        .await
        .unwrap();
}
