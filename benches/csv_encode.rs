//! Arrow → CSV / JSON Lines encoding throughput on the 10-column `orders` shape of
//! `../shared/bench/seed.sh` (numeric, text with `|` and quotes, JSON, NULLs, timestamps),
//! side by side with arrow-csv's writer and the book's Python `csv.writer`.
//!
//! Run: `cargo bench --bench csv_encode` (rows: `TRIBUTARY_BENCH_ROWS`, default 1,000,000).
//! Batches are generated on the fly; only encoding is timed. Output goes to a buffer
//! that is drained like the pipeline drains it, so memory stays flat.

mod common;
use arrow_array::*;
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tributary::format::{Csv, Format, JsonLines};
use tributary::model::json_field;

const BATCH: usize = 8192;

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("customer_id", DataType::Int32, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("amount", DataType::Decimal128(12, 2), false),
        Field::new("currency", DataType::Utf8, false),
        Field::new("note", DataType::Utf8, true),
        Field::new("is_gift", DataType::Boolean, false),
        Field::new(
            "created_at",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new(
            "last_updated",
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            false,
        ),
        json_field("payload", true),
    ]))
}

/// Rows `start..start+n`, the same values as seed.sh gives row i.
fn batch(schema: &Arc<Schema>, start: i64, n: usize) -> RecordBatch {
    let ids: Vec<i64> = (start..start + n as i64).collect();
    let status = ["Backordered", "Shipped", "Pending", "Cancelled"];
    let currency = ["USD", "EUR", "KRW"];
    const T2020: i64 = 1_577_836_800_000_000; // 2020-01-01 in µs
    const T0601: i64 = 1_590_969_600_000_000; // 2020-06-01 in µs
    RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(ids.clone())),
            Arc::new(Int32Array::from_iter_values(
                ids.iter().map(|i| ((i * 7919) % 100_000) as i32),
            )),
            Arc::new(StringArray::from_iter_values(
                ids.iter().map(|i| status[(i % 4) as usize]),
            )),
            Arc::new(
                Decimal128Array::from_iter_values(
                    ids.iter().map(|i| ((i * 31) % 1_000_000) as i128),
                )
                .with_precision_and_scale(12, 2)
                .unwrap(),
            ),
            Arc::new(StringArray::from_iter_values(
                ids.iter().map(|i| currency[(i % 3) as usize]),
            )),
            Arc::new(StringArray::from_iter(ids.iter().map(|i| {
                (i % 3 != 0).then(|| format!("note for order {i} with | pipe, \"quote\" and comma"))
            }))),
            Arc::new(BooleanArray::from_iter(
                ids.iter().map(|i| Some(i % 10 == 0)),
            )),
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                ids.iter().map(|i| T2020 + i * 1_000_000),
            )),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(
                    ids.iter().map(|i| T0601 + i * 1_000_000),
                )
                .with_timezone("+00:00"),
            ),
            Arc::new(StringArray::from_iter(ids.iter().map(|i| {
                (i % 5 != 0).then(|| {
                    format!(
                        r#"{{"sku": "SKU-{}", "qty": {}, "tags": ["a", "b"]}}"#,
                        i % 997,
                        1 + i % 9
                    )
                })
            }))),
        ],
    )
    .unwrap()
}

fn peak_rss_mib() -> f64 {
    common::peak_rss_kib() as f64 / 1024.0
}

struct Figures {
    name: &'static str,
    secs: f64,
    bytes: usize,
}

fn run(
    name: &'static str,
    rows: usize,
    mut encode: impl FnMut(&RecordBatch, &mut Vec<u8>),
) -> Figures {
    let schema = schema();
    let mut buf = Vec::with_capacity(2 << 20);
    let mut bytes = 0;
    let mut timed = Duration::ZERO;
    let mut start = 1i64;
    while (start as usize) <= rows {
        let n = BATCH.min(rows + 1 - start as usize);
        let rb = batch(&schema, start, n);
        let t = Instant::now();
        encode(&rb, &mut buf);
        timed += t.elapsed();
        if buf.len() >= 1 << 20 {
            bytes += buf.len();
            buf.clear();
        }
        start += n as i64;
    }
    bytes += buf.len();
    Figures {
        name,
        secs: timed.as_secs_f64(),
        bytes,
    }
}

fn print(f: &Figures, rows: usize) {
    println!(
        "{:<28} {:>9.3} s {:>12.0} rows/s {:>9.1} MB/s {:>9.1} MB out",
        f.name,
        f.secs,
        rows as f64 / f.secs,
        f.bytes as f64 / 1e6 / f.secs,
        f.bytes as f64 / 1e6
    );
}

fn main() {
    let rows: usize = std::env::var("TRIBUTARY_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` support: nothing to list
    }
    println!("encoding {rows} rows of the 10-column orders shape, batches of {BATCH}");
    let csv = Csv::default();
    let mut enc = csv.encoder(&schema()).unwrap();
    print(
        &run("tributary csv (book dialect)", rows, |rb, out| {
            enc.encode(rb, out).unwrap()
        }),
        rows,
    );
    let mut enc = JsonLines::new().encoder(&schema()).unwrap();
    print(
        &run("tributary jsonl", rows, |rb, out| {
            enc.encode(rb, out).unwrap()
        }),
        rows,
    );
    let f = run("arrow-csv writer ('|')", rows, |rb, out| {
        let mut w = arrow_csv::WriterBuilder::new()
            .with_header(false)
            .with_delimiter(b'|')
            .build(&mut *out);
        w.write(rb).unwrap();
    });
    print(&f, rows);
    println!("peak RSS of this process: {:.1} MiB", peak_rss_mib());

    // Parquet (feature `parquet`): each row group's bytes leave the encoder when it closes,
    // and the footer at the end; the figure includes finishing the file.
    #[cfg(feature = "parquet")]
    for (name, compression) in [
        (
            "tributary parquet (snappy)",
            tributary::format::ParquetCompression::Snappy,
        ),
        (
            "tributary parquet (zstd 3)",
            tributary::format::ParquetCompression::Zstd(3),
        ),
    ] {
        let format = tributary::format::Parquet::new().with_compression(compression);
        let mut enc = format.encoder(&schema()).unwrap();
        let mut f = run(name, rows, |rb, out| enc.encode(rb, out).unwrap());
        let t = Instant::now();
        let mut tail = Vec::new();
        enc.finish(&mut tail).unwrap();
        f.secs += t.elapsed().as_secs_f64();
        f.bytes += tail.len();
        print(&f, rows);
        println!("peak RSS of this process: {:.1} MiB", peak_rss_mib());
    }

    // The book's approach: Python's csv.writer over the same rows (generation not timed).
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/anchors/book_csv_writer.py"
    );
    match std::process::Command::new("python3")
        .arg(script)
        .arg(rows.to_string())
        .output()
    {
        Ok(o) if o.status.success() => print!("{}", String::from_utf8_lossy(&o.stdout)),
        Ok(o) => println!(
            "python anchor failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => println!("python anchor skipped: {e}"),
    }
}
