//! Land the Debezium change events of Kafka topics as files, the consumer side of the
//! book's streaming chapter: one folder per table, the book's lines
//! (`insert|1|Backordered|2020-06-01 12:00:00`: the op, then the row's columns).
//!
//! Usage: `cargo run --example kafka_debezium_to_files --features kafka -- [pipeline.conf] [--follow]`
//!
//! Reads `[kafka]`: `bootstrap_servers`, `group_id` (default `tributary`), `topics`
//! (comma-separated names or `^patterns`), and the security settings `security_protocol`,
//! `sasl_mechanism`, `sasl_username`, `sasl_password`, `ssl_ca_location`. Lands at
//! `[store] url`, keeps the offsets in `[warehouse]` when set, else in the store, and
//! commits them to the consumer group only after the objects and the checkpoint are
//! saved.
//!
//! Each run reads up to the topics' end offsets as of its start, commits and exits 0; the
//! next continues from the checkpoint. With `--follow` it keeps reading, committing every
//! `[cdc] commit_interval` seconds (default 5), until SIGINT or SIGTERM, then commits what
//! it has and exits 0.

use std::process::ExitCode;
use tributary::config::PipelineConfig;
use tributary::kafka::KafkaExtractor;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let follow = args.iter().any(|a| a == "--follow");
    let conf = args
        .iter()
        .find(|a| *a != "--follow")
        .map(String::as_str)
        .unwrap_or("pipeline.conf");
    match run(conf, follow).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kafka_debezium_to_files: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(conf: &str, follow: bool) -> tributary::Result<()> {
    let config = PipelineConfig::from_file(conf)?;
    let reader = config.kafka_reader()?;
    let name = format!("kafka_{}", reader.group_id());
    // A static member: a rerun after a crash takes the partitions back at once.
    let instance = format!(
        "{name}-{}",
        config.get("kafka", "instance_id").unwrap_or("1")
    );
    let reader = reader.with_instance_id(instance);
    // Without --follow a run drains what the topics hold now and exits.
    let reader = if follow {
        reader
    } else {
        reader.until_current_end()
    };
    let extractor = KafkaExtractor::new(reader)?;
    let mut options = config.pipeline_options()?;
    if follow {
        options = options.with_commit_interval(config.cdc_commit_interval()?);
    }
    let pipeline = config
        .pipeline_builder(&name)
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
