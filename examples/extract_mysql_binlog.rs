//! The book's chapter 4 binary-log replication job (`extract_mysql_binlog.py`, on
//! python-mysql-replication), without its defects: the position is saved after every
//! commit, rotated files are followed, updates keep their rows, table names compare as the
//! server compares them.
//!
//! Usage: `cargo run --example extract_mysql_binlog --features mysql-cdc -- [pipeline.conf] [table] [--follow]`
//!
//! Reads `[mysql_config]` (a user with REPLICATION SLAVE and REPLICATION CLIENT / BINLOG
//! MONITOR), lands the book's lines (`insert|1|Backordered|2020-06-01 12:00:00`: the op,
//! then the row's columns in table order) at `[store] url`, and keeps the checkpoint in
//! `[warehouse]` when set, else in the store. Table default: `Orders`.
//!
//! The first run snapshots the table(s); each run then reads up to the binlog position the
//! server reported when it started, commits and exits 0, and the next continues from the
//! checkpoint. With `--follow` it keeps streaming, committing every `[cdc]
//! commit_interval` seconds (default 5), until SIGINT or SIGTERM, then commits what it has
//! and exits 0. `[cdc]` also takes `server_id`, `tables` (comma-separated; default: the
//! table argument), `snapshot` (`initial`, `never`, `initial_only`) and
//! `when_position_lost` (`fail`, `resnapshot`).

use std::process::ExitCode;
use tributary::config::PipelineConfig;
use tributary::sources::mysql_cdc::MySqlCdcExtractor;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let follow = args.iter().any(|a| a == "--follow");
    let rest: Vec<&str> = args
        .iter()
        .filter(|a| *a != "--follow")
        .map(String::as_str)
        .collect();
    let conf = rest.first().copied().unwrap_or("pipeline.conf");
    let table = rest.get(1).copied().unwrap_or("Orders");
    match run(conf, table, follow).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("extract_mysql_binlog: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(conf: &str, table: &str, follow: bool) -> tributary::Result<()> {
    let config = PipelineConfig::from_file(conf)?;
    let url = config.mysql()?.url("mysql", 3306);
    let mut cdc = config.mysql_cdc(table)?;
    if !follow {
        cdc = cdc.until_current_end();
    }
    let extractor = MySqlCdcExtractor::connect_lazy(&url, cdc)?;
    let mut options = config.pipeline_options()?;
    if follow {
        options = options.with_commit_interval(config.cdc_commit_interval()?);
    }
    let pipeline = config
        .pipeline_builder(&format!("mysql_binlog_{table}"))
        .await?
        .options(options)
        .extractor(extractor)
        .build()?;
    if follow {
        // A signal ends the stream after the current transaction: everything read is
        // committed and the run succeeds.
        pipeline.stop_on_signals();
    }
    let report = pipeline.run().await.into_result()?;
    for o in &report.objects {
        println!("{}\t{} rows\t{} bytes", o.key, o.rows, o.bytes);
    }
    println!(
        "{} changes in {} object(s) at {}; checkpoint: {}",
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
