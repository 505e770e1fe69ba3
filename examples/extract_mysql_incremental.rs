//! The book's chapter 4 MySQL/MariaDB incremental extract (by a cursor column, default LastUpdated), as in `extract_mysql_incremental.py`.
//!
//! Usage: `cargo run --example extract_mysql_incremental --features mysql -- [pipeline.conf] [table] [cursor column]`
//!
//! Reads `[mysql_config]` from `pipeline.conf` (default `./pipeline.conf`), lands
//! `|`-delimited CSV at `[store] url`, and, when `[warehouse] url` is set, keeps the
//! checkpoint and a run history row there. Table default: `Orders`.

#[path = "support/progress.rs"]
mod progress;

use std::process::ExitCode;
use tributary::config::PipelineConfig;
use tributary::sources::mysql::MySqlExtractor;
use tributary::sources::sql::{Cursor, SqlSource};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let conf = args.get(1).map_or("pipeline.conf", String::as_str);
    let table = args.get(2).map_or("Orders", String::as_str);
    let cursor = args.get(3).map_or("LastUpdated", String::as_str);
    match run(conf, table, cursor).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("extract_mysql_incremental: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(conf: &str, table: &str, cursor: &str) -> tributary::Result<()> {
    let config = PipelineConfig::from_file(conf)?;
    let url = config.mysql()?.url("mysql", 3306);
    let extractor = MySqlExtractor::connect_lazy(
        &url,
        SqlSource::table(table).incremental(Cursor::new(cursor)),
    )?
    .with_timeouts(config.timeouts("mysql_config")?);
    let (builder, bar) = progress::with_bar(
        config
            .pipeline_builder(&format!("mysql_incremental_{table}"))
            .await?
            .extractor(extractor),
    );
    let pipeline = builder.build()?;
    pipeline.cancel_on_signals(); // Ctrl-C / SIGTERM: a recorded, cancelled run
    let report = pipeline.run().await;
    bar.done();
    let report = report.into_result()?;
    for o in &report.objects {
        println!("{}\t{} rows\t{} bytes", o.key, o.rows, o.bytes);
    }
    println!(
        "{} rows in {} object(s) at {}; checkpoint: {}",
        report.rows,
        report.objects.len(),
        report.sink,
        report
            .checkpoint_to
            .map(|c| serde_json::to_string(&c).unwrap_or_default())
            .unwrap_or_else(|| "none".into())
    );
    Ok(())
}
