//! The book's chapter 4 MongoDB extract, as in `extract_mongodb.py`: one day of events
//! (`event_timestamp` in `[day, day + 1)`), the fields `event_id`, `event_timestamp` and
//! `event_name`, landed as `|`-delimited CSV.
//!
//! Usage: `cargo run --example extract_mongodb --features mongodb -- [pipeline.conf] [YYYY-MM-DD]`
//!
//! Reads `[mongo_config]` (hostname, port, username, password, database, collection) from
//! `pipeline.conf` (default `./pipeline.conf`) and lands the CSV at `[store] url`; when
//! `[warehouse] url` is set, a run history row goes there. The day defaults to yesterday
//! (UTC), as in the book.

#[path = "support/progress.rs"]
mod progress;

use chrono::{Duration, NaiveDate, Utc};
use std::process::ExitCode;
use tributary::config::PipelineConfig;
use tributary::sources::mongo::{MongoExtractor, MongoSource};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let conf = args.get(1).map_or("pipeline.conf", String::as_str);
    let day = match args
        .get(2)
        .map(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d"))
    {
        None => Utc::now().date_naive() - Duration::days(1),
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            eprintln!("extract_mongodb: the day must be YYYY-MM-DD: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(conf, day).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("extract_mongodb: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(conf: &str, day: NaiveDate) -> tributary::Result<()> {
    let config = PipelineConfig::from_file(conf)?;
    let mongo = config.mongo()?;
    let collection = mongo.collection.clone().ok_or_else(|| {
        tributary::Error::config("pipeline.conf", "[mongo_config] collection is required")
    })?;
    let start = day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc();
    let source = MongoSource::collection(&mongo.database, &collection)
        .fields(["event_id", "event_timestamp", "event_name"])
        .time_window("event_timestamp", start, start + Duration::days(1));
    let extractor = MongoExtractor::connect(&mongo.uri(), source).await?;
    let (builder, bar) = progress::with_bar(
        config
            .pipeline_builder(&format!("mongodb_{collection}"))
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
        "{} events of {day} in {} object(s) at {}",
        report.rows,
        report.objects.len(),
        report.sink
    );
    Ok(())
}
