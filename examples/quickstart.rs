//! The book's chapter 4 job on embedded defaults: no server needed.
//!
//! Creates a SQLite database with the book's `Orders` table (repeated OrderIds: a
//! history of status changes), runs a full extract and an incremental extract to
//! `|`-delimited CSV under `./tributary-out/`, adds rows that share the last
//! `LastUpdated` value (where the book's `>` watermark loses rows), runs the
//! incremental extract again, and prints every object, its rows and the run history.
//!
//! Run with: `cargo run --example quickstart`

use tributary::sources::sql::{Cursor, SqlSource};
use tributary::sources::sqlite::SqliteExtractor;
use tributary::stores::ObjectSink;
use tributary::warehouse::Warehouse;
use tributary::{Pipeline, RunReport};

const OUT: &str = "tributary-out";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Start clean: this folder belongs to the quickstart.
    let base = std::path::Path::new(OUT).join("quickstart");
    if base.exists() {
        std::fs::remove_dir_all(&base)?;
    }
    std::fs::create_dir_all(&base)?;

    // The source: the book's Orders table, in SQLite.
    let source_url = format!("sqlite://{}/source.db?mode=rwc", base.display());
    let source = sqlx::SqlitePool::connect(&source_url).await?;
    sqlx::query(
        "CREATE TABLE Orders (OrderId INTEGER, OrderStatus VARCHAR(30), LastUpdated TIMESTAMP)",
    )
    .execute(&source)
    .await?;
    insert(
        &source,
        &[
            (1, "Backordered", "2020-06-01 12:00:00"),
            (1, "Shipped", "2020-06-09 12:00:25"),
            (2, "Shipped", "2020-07-11 03:05:00"),
            (1, "Shipped", "2020-06-09 11:50:00"),
            (3, "Shipped", "2020-07-12 12:00:00"),
        ],
    )
    .await?;

    // Where data lands, and where checkpoints and run history live.
    let store = ObjectSink::local(base.join("data"))?;
    let warehouse =
        Warehouse::connect(&format!("sqlite://{}/warehouse.db", base.display())).await?;

    // Both pipelines land `Orders` in one folder, `sqlite/Orders/dt=…/`: one folder per
    // table whatever pipeline wrote it, so a loader reads the table from one prefix (run
    // ids keep the keys apart). To keep pipelines apart instead, give them
    // `.batch_sink(ObjectBatchSink::csv(sink).with_key_template(KeyTemplate::new(KeyTemplate::PER_PIPELINE)?))`.
    let full = Pipeline::builder("orders_full")
        .extractor(SqliteExtractor::new(
            source.clone(),
            SqlSource::table("Orders"),
        ))
        .sink(store.clone())
        .run_log(warehouse.run_log())
        .build()?;
    let incremental = Pipeline::builder("orders_incremental")
        .extractor(SqliteExtractor::new(
            source.clone(),
            SqlSource::table("Orders").incremental(Cursor::new("LastUpdated")),
        ))
        .sink(store.clone())
        .state(warehouse.state_store())
        .run_log(warehouse.run_log())
        .build()?;

    println!("== full extract of Orders");
    show(&store, full.run().await.into_result()?).await?;

    println!("\n== incremental extract, first run (everything so far)");
    show(&store, incremental.run().await.into_result()?).await?;

    // New rows: two share the last LastUpdated value (12:00:00), one of them committed
    // "late"; the book's `WHERE LastUpdated > '2020-07-12 12:00:00'` would miss both.
    insert(
        &source,
        &[
            (4, "Backordered", "2020-07-12 12:00:00"),
            (3, "Returned", "2020-07-13 09:00:00"),
            (5, "Pending", "2020-07-12 12:00:00"),
        ],
    )
    .await?;
    let book_would_get: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM Orders WHERE LastUpdated > '2020-07-12 12:00:00'")
            .fetch_one(&source)
            .await?;

    println!("\n== incremental extract, second run (3 new rows)");
    let second = incremental.run().await.into_result()?;
    println!(
        "   {} new rows landed; the book's `LastUpdated > last max` query would have found {}",
        second.rows, book_would_get
    );
    show(&store, second).await?;

    println!("\n== incremental extract, third run (nothing new)");
    show(&store, incremental.run().await.into_result()?).await?;

    println!(
        "\n== run history (pipeline_run_history in {})",
        warehouse.describe()
    );
    println!(
        "   {:<20} {:<27} {:<10} {:>5} {:>7} {:>8}",
        "pipeline", "run_id", "outcome", "rows", "objects", "ms"
    );
    for r in warehouse.run_history(None, 20).await?.iter().rev() {
        println!(
            "   {:<20} {:<27} {:<10} {:>5} {:>7} {:>8}",
            r.pipeline, r.run_id, r.outcome, r.rows, r.objects, r.duration_ms
        );
    }
    println!(
        "\nCSV objects and manifests are under {}/",
        base.join("data").display()
    );
    Ok(())
}

async fn insert(pool: &sqlx::SqlitePool, rows: &[(i64, &str, &str)]) -> Result<(), sqlx::Error> {
    for (id, status, at) in rows {
        sqlx::query("INSERT INTO Orders VALUES (?1, ?2, ?3)")
            .bind(id)
            .bind(status)
            .bind(at)
            .execute(pool)
            .await?;
    }
    Ok(())
}

async fn show(store: &ObjectSink, report: RunReport) -> Result<(), Box<dyn std::error::Error>> {
    println!(
        "   run {} {}: {} rows in {} object(s), checkpoint -> {}",
        report.run_id,
        report.outcome.as_str(),
        report.rows,
        report.objects.len(),
        report
            .checkpoint_to
            .as_ref()
            .map(|c| serde_json::to_string(c).unwrap_or_default())
            .unwrap_or_else(|| "(none)".into())
    );
    for o in &report.objects {
        println!("   {} ({} rows, {} bytes)", o.key, o.rows, o.bytes);
        for line in String::from_utf8_lossy(&store.read(&o.key).await?).lines() {
            println!("     {line}");
        }
    }
    Ok(())
}
