//! `cargo run --example quickstart` does what the README says, and its CSV loads into
//! PostgreSQL with `COPY ... CSV DELIMITER '|'` giving back exactly the source rows.

use crate::common;

use sqlx::Connection;
use std::path::PathBuf;

fn quickstart_binary() -> PathBuf {
    // tests run from target/<profile>/deps; examples are built next to it by `cargo test`.
    let exe = std::env::current_exe().unwrap();
    let p = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("quickstart");
    assert!(
        p.exists(),
        "{} not built: run the tests with `cargo test --all-features`",
        p.display()
    );
    p
}

#[tokio::test]
async fn quickstart_runs_and_its_csv_loads_into_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(quickstart_binary())
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "quickstart failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(
            "3 new rows landed; the book's `LastUpdated > last max` query would have found 1"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("orders_incremental"));

    let base = dir.path().join("tributary-out/quickstart");
    // Every run's manifest; the data objects they list.
    let mut manifests = vec![];
    let mut stack = vec![base.join("data")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(".manifest.json") {
                manifests.push(
                    serde_json::from_slice::<serde_json::Value>(&std::fs::read(&p).unwrap())
                        .unwrap(),
                );
            }
        }
    }
    assert_eq!(manifests.len(), 4, "one manifest per run");
    let objects = |pipeline: &str| -> Vec<PathBuf> {
        manifests
            .iter()
            .filter(|m| m["pipeline"] == pipeline)
            .flat_map(|m| {
                m["objects"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|o| base.join("data").join(o["key"].as_str().unwrap()))
            })
            .collect()
    };

    let source = sqlx::SqlitePool::connect(&format!("sqlite://{}/source.db", base.display()))
        .await
        .unwrap();
    let mut want: Vec<(i64, String, String)> =
        sqlx::query_as("SELECT OrderId, OrderStatus, CAST(LastUpdated AS TEXT) FROM Orders")
            .fetch_all(&source)
            .await
            .unwrap();
    want.sort();
    assert_eq!(want.len(), 8);

    let Some(url) = common::service("TRIBUTARY_TEST_PG_URL", "PostgreSQL") else {
        return;
    };
    let load = |files: Vec<PathBuf>, table: &'static str| {
        let url = url.clone();
        async move {
            let mut pg = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::query(&format!("CREATE TEMP TABLE {table} (OrderId int, OrderStatus varchar(30), LastUpdated timestamp)"))
                .execute(&mut pg)
                .await
                .unwrap();
            for f in files {
                let mut copy = pg
                    .copy_in_raw(&format!(
                        "COPY {table} FROM STDIN WITH (FORMAT csv, DELIMITER '|')"
                    ))
                    .await
                    .unwrap();
                copy.send(std::fs::read(&f).unwrap()).await.unwrap();
                copy.finish().await.unwrap();
            }
            let mut got: Vec<(i32, String, String)> = sqlx::query_as(&format!(
                "SELECT OrderId, OrderStatus, to_char(LastUpdated, 'YYYY-MM-DD HH24:MI:SS') FROM {table}"
            ))
            .fetch_all(&mut pg)
            .await
            .unwrap();
            got.sort();
            got.into_iter()
                .map(|(a, b, c)| (a as i64, b, c))
                .collect::<Vec<_>>()
        }
    };
    // The incremental runs together land every source row exactly once.
    assert_eq!(
        load(objects("orders_incremental"), "incremental_run").await,
        want
    );
    // The full run landed the five rows that existed then.
    let full = load(objects("orders_full"), "full_run").await;
    assert_eq!(full.len(), 5);
    assert!(full.iter().all(|r| want.contains(r)));
}
