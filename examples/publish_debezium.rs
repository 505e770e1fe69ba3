//! Publish a database's changes to Kafka in Debezium's envelope, without a JVM or Kafka
//! Connect: the MySQL binlog or PostgreSQL WAL reader (whichever of `[mysql_config]` /
//! `[postgres_config]` the file has), each change one message on
//! `<topic_prefix>.<database>.<table>` with the primary key as its key.
//!
//! Usage: `cargo run --example publish_debezium --features kafka,mysql-cdc,postgres-cdc -- [pipeline.conf] [table] [--follow]`
//!
//! Reads `[kafka]` (`bootstrap_servers`, `topic_prefix` (default `tributary`), `schemas`,
//! `tombstones`, and the security settings), the source's section, and the CDC examples'
//! `[cdc]` keys (`tables`, `snapshot`, `slot`, `publication`, `server_id`, …). Keeps its
//! checkpoint in `[store] url` (`_state/`), saved only after the broker acknowledged every
//! message up to it: at least once (after a crash the changes since the last checkpoint
//! are published again). Table default: `Orders`.
//!
//! Each run publishes up to the log position current when it started and exits 0; with
//! `--follow` it keeps publishing until SIGINT or SIGTERM, then commits and exits 0.

use std::process::ExitCode;
use tributary::Pipeline;
use tributary::config::PipelineConfig;
use tributary::kafka::KafkaSink;
use tributary::model::ChangeOptions;
use tributary::sources::mysql_cdc::MySqlCdcExtractor;
use tributary::sources::postgres_cdc::PostgresCdcExtractor;
use tributary::stores::ObjectStateStore;

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
            eprintln!("publish_debezium: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Every metadata column, so that the envelope's `source` has the position, the
/// transaction and the commit time.
fn metadata() -> ChangeOptions {
    ChangeOptions::new().with_all_metadata()
}

async fn run(conf: &str, table: &str, follow: bool) -> tributary::Result<()> {
    let config = PipelineConfig::from_file(conf)?;
    let sink = KafkaSink::new(config.kafka_publisher()?)?;
    let mut options = config.pipeline_options()?;
    if follow {
        options = options.with_commit_interval(config.cdc_commit_interval()?);
    }
    let builder = Pipeline::builder(format!("publish_debezium_{table}"))
        .batch_sink(sink)
        .state(ObjectStateStore::new(config.store()?, "_state"))
        .options(options);
    let pipeline = if config.get("postgres_config", "host").is_some() {
        let url = config.postgres()?.url("postgres", 5432);
        let mut cdc = config.postgres_cdc(table)?.with_change_options(metadata());
        if !follow {
            cdc = cdc.until_current_end();
        }
        let e = PostgresCdcExtractor::connect_lazy(&url, cdc)?;
        builder.extractor(e).build()?
    } else if config.get("mysql_config", "hostname").is_some() {
        let url = config.mysql()?.url("mysql", 3306);
        let mut cdc = config.mysql_cdc(table)?.with_change_options(metadata());
        if !follow {
            cdc = cdc.until_current_end();
        }
        let e = MySqlCdcExtractor::connect_lazy(&url, cdc)?;
        builder.extractor(e).build()?
    } else {
        return Err(tributary::Error::config(
            conf.to_string(),
            "neither [postgres_config] host nor [mysql_config] hostname is set: which database to publish?",
        ));
    };
    if follow {
        pipeline.stop_on_signals();
    }
    let report = pipeline.run().await.into_result()?;
    for o in &report.objects {
        println!("{}\t{} messages", o.key, o.rows);
    }
    println!(
        "{} changes published; checkpoint: {}",
        report.rows,
        report
            .checkpoint_to
            .map(|c| serde_json::to_string(&c).unwrap_or_default())
            .unwrap_or_else(|| "none".into())
    );
    Ok(())
}
