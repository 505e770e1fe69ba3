//! Parquet output: types read back exactly, row groups stream out as they close, objects
//! land atomically on the S3-compatible server, and bad settings are typed errors.
#![cfg(feature = "parquet")]

use crate::common;

use arrow_array::builder::{Int32Builder, ListBuilder};
use arrow_array::types::IntervalMonthDayNanoType;
use arrow_array::*;
use arrow_schema::{DataType, Field, IntervalUnit, Schema, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::LogicalType;
use std::sync::Arc;
use tributary::format::{Compression, Format, PARQUET_AS_TEXT_KEY, Parquet};
use tributary::model::{Batch, Checkpoint, json_field, uuid_field};
use tributary::sources::MemoryExtractor;
use tributary::stores::ObjectSink;
use tributary::*;

fn read_back(bytes: bytes::Bytes) -> (Vec<RecordBatch>, parquet::file::metadata::ParquetMetaData) {
    let b = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .with_batch_size(1 << 20);
    let meta = b.metadata().as_ref().clone();
    let batches = b.build().unwrap().collect::<Result<Vec<_>, _>>().unwrap();
    (batches, meta)
}

fn sample() -> RecordBatch {
    let uuid = uuid_field("u", true);
    let mut list = ListBuilder::new(Int32Builder::new());
    list.append_value([Some(1), None, Some(3)]);
    list.append_null();
    list.append_value([]);
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("note", DataType::Utf8, true),
        Field::new("amount", DataType::Decimal128(38, 10), true),
        Field::new("big", DataType::Decimal256(76, 5), true),
        Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            true,
        ),
        Field::new("day", DataType::Date32, true),
        Field::new("tm", DataType::Time64(TimeUnit::Microsecond), true),
        Field::new("raw", DataType::Binary, true),
        uuid,
        json_field("payload", true),
        Field::new(
            "ints",
            DataType::List(Arc::new(Field::new_list_field(DataType::Int32, true))),
            true,
        ),
        Field::new("f", DataType::Float64, true),
        Field::new("ok", DataType::Boolean, true),
        Field::new("span", DataType::Duration(TimeUnit::Microsecond), true),
        Field::new("iv", DataType::Interval(IntervalUnit::MonthDayNano), true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(vec![1, 2, 3])),
            Arc::new(StringArray::from(vec![
                Some("a | \"quoted\"\nline"),
                Some(""),
                None,
            ])),
            Arc::new(
                Decimal128Array::from(vec![
                    Some(12345678901234567890123456789012345678i128),
                    Some(-1),
                    None,
                ])
                .with_precision_and_scale(38, 10)
                .unwrap(),
            ),
            Arc::new(
                Decimal256Array::from(vec![
                    Some(arrow_buffer::i256::from_string("-99999999999999999999999999999999999999999999999999999999999999999999999999").unwrap()),
                    None,
                    Some(arrow_buffer::i256::from_i128(5)),
                ])
                .with_precision_and_scale(76, 5)
                .unwrap(),
            ),
            Arc::new(
                TimestampMicrosecondArray::from(vec![Some(1_591_012_800_123_456), None, Some(-1)])
                    .with_timezone("+00:00"),
            ),
            Arc::new(Date32Array::from(vec![Some(-719_162), Some(0), None])),
            Arc::new(Time64MicrosecondArray::from(vec![
                Some(86_399_999_999),
                None,
                Some(0),
            ])),
            Arc::new(BinaryArray::from(vec![
                Some(&b"\x00\xff|"[..]),
                Some(&b""[..]),
                None,
            ])),
            Arc::new(
                FixedSizeBinaryArray::try_from_sparse_iter_with_size(
                    vec![Some([0x12u8; 16]), None, Some([0u8; 16])].into_iter(),
                    16,
                )
                .unwrap(),
            ),
            Arc::new(StringArray::from(vec![
                Some(r#"{"sku":"A1","n":[1,2]}"#),
                None,
                Some("[]"),
            ])),
            Arc::new(list.finish()),
            Arc::new(Float64Array::from(vec![Some(f64::NAN), Some(-0.0), None])),
            Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)])),
            Arc::new(DurationMicrosecondArray::from(vec![
                Some(-3_020_399_000_000),
                Some(0),
                None,
            ])),
            Arc::new(IntervalMonthDayNanoArray::from(vec![
                Some(IntervalMonthDayNanoType::make_value(14, 3, 14_706_500_000_000)),
                None,
                Some(IntervalMonthDayNanoType::make_value(0, -1, -14_706_000_000_000)),
            ])),
        ],
    )
    .unwrap()
}

#[tokio::test]
async fn every_column_reads_back_exactly() {
    let rb = sample();
    let sink = ObjectSink::memory();
    let report = Pipeline::builder("pq")
        .extractor(MemoryExtractor::new(
            "mem",
            "t",
            vec![Batch::new(rb.clone())],
        ))
        .sink(sink.clone())
        .format(Parquet::new())
        .build()
        .unwrap()
        .run()
        .await
        .into_result()
        .unwrap();
    assert_eq!(report.objects.len(), 1);
    let key = &report.objects[0].key;
    assert!(key.ends_with(".parquet"), "{key}");
    let (batches, meta) = read_back(sink.read(key).await.unwrap());
    assert_eq!(batches.len(), 1);
    let got = &batches[0];
    assert_eq!(got.num_rows(), 3);
    // Every column but the interval comes back as the same Arrow type and values.
    for (i, f) in rb.schema().fields().iter().enumerate() {
        if f.name() == "iv" {
            continue;
        }
        assert_eq!(
            got.schema().field(i).data_type(),
            f.data_type(),
            "type of {}",
            f.name()
        );
        if f.name() == "f" {
            // NaN != NaN: compare bits.
            let (a, b) = (
                rb.column(i)
                    .as_any()
                    .downcast_ref::<Float64Array>()
                    .unwrap(),
                got.column(i)
                    .as_any()
                    .downcast_ref::<Float64Array>()
                    .unwrap(),
            );
            for r in 0..3 {
                assert_eq!(a.is_null(r), b.is_null(r));
                assert_eq!(a.value(r).to_bits(), b.value(r).to_bits());
            }
            continue;
        }
        assert_eq!(got.column(i), rb.column(i), "values of {}", f.name());
    }
    // The interval, which Parquet cannot hold, is ISO 8601 text, marked as such.
    let iv = got.schema().field(14).clone();
    assert_eq!(iv.data_type(), &DataType::Utf8);
    assert_eq!(
        iv.metadata().get(PARQUET_AS_TEXT_KEY).map(String::as_str),
        Some("iso8601-interval")
    );
    let ivs = got
        .column(14)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    assert_eq!(ivs.value(0), "P1Y2M3DT4H5M6.5S");
    assert!(ivs.is_null(1));
    assert_eq!(ivs.value(2), "P-1DT-4H-5M-6S");
    // Parquet's own logical types, for readers that ignore the embedded Arrow schema.
    let schema = meta.file_metadata().schema_descr();
    let logical = |name: &str| {
        schema
            .columns()
            .iter()
            .find(|c| c.path().string() == name)
            .unwrap()
            .logical_type_ref()
            .cloned()
    };
    assert_eq!(logical("payload"), Some(LogicalType::Json));
    assert_eq!(logical("u"), Some(LogicalType::Uuid));
    assert_eq!(logical("note"), Some(LogicalType::String));
    assert!(
        matches!(
            logical("amount"),
            Some(LogicalType::Decimal(d)) if d.precision == 38 && d.scale == 10
        ),
        "{:?}",
        logical("amount")
    );
    assert!(
        meta.file_metadata()
            .created_by()
            .unwrap()
            .starts_with("tributary")
    );
}

#[test]
fn row_groups_stream_out_before_the_file_ends() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("s", DataType::Utf8, false),
    ]));
    let mut enc = Parquet::new()
        .with_row_group_rows(1_000)
        .encoder(&schema)
        .unwrap();
    let mut out = Vec::new();
    enc.begin(&mut out).unwrap();
    let mut sizes = vec![];
    for chunk in 0..10i64 {
        let ids: Vec<i64> = (chunk * 1_000..(chunk + 1) * 1_000).collect();
        let s: Vec<String> = ids.iter().map(|i| format!("row {i}")).collect();
        let rb = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(StringArray::from(s)),
            ],
        )
        .unwrap();
        enc.encode(&rb, &mut out).unwrap();
        sizes.push(out.len());
    }
    // Bytes leave the encoder row group by row group, not all at the end.
    assert!(sizes[0] > 0, "{sizes:?}");
    assert!(sizes.windows(2).all(|w| w[1] > w[0]), "{sizes:?}");
    enc.finish(&mut out).unwrap();
    let (batches, meta) = read_back(bytes::Bytes::from(out));
    assert_eq!(meta.num_row_groups(), 10);
    let ids: Vec<i64> = batches
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .values()
                .to_vec()
        })
        .collect();
    assert_eq!(ids, (0..10_000).collect::<Vec<_>>());
    // Finishing twice is an error, not a corrupt file.
    assert!(enc.finish(&mut Vec::new()).is_err());
}

#[test]
fn compression_settings() {
    let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, false)]));
    let rb = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(StringArray::from(vec![
            "the same text again";
            5_000
        ]))],
    )
    .unwrap();
    let size = |f: Parquet| {
        let mut enc = f.encoder(&schema).unwrap();
        let mut out = Vec::new();
        enc.encode(&rb, &mut out).unwrap();
        enc.finish(&mut out).unwrap();
        let (b, meta) = read_back(bytes::Bytes::from(out.clone()));
        assert_eq!(b[0].column(0), rb.column(0));
        (out.len(), meta.row_group(0).column(0).compression())
    };
    use parquet::basic::Compression as C;
    use tributary::format::ParquetCompression as P;
    let (_, c) = size(Parquet::new());
    assert_eq!(c, C::SNAPPY);
    let (_, c) = size(Parquet::new().with_compression(P::Zstd(9)));
    assert!(matches!(c, C::ZSTD(_)), "{c:?}");
    let (_, c) = size(Parquet::new().with_compression(P::None));
    assert_eq!(c, C::UNCOMPRESSED);
    let e = Parquet::new()
        .with_compression(P::Zstd(99))
        .encoder(&schema)
        .err()
        .unwrap();
    assert!(e.to_string().contains("zstd level 99"), "{e}");
}

#[test]
fn a_type_parquet_cannot_hold_names_the_column() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new(
            "choice",
            DataType::Union(
                arrow_schema::UnionFields::try_new(
                    vec![0, 1],
                    vec![
                        Field::new("a", DataType::Int32, true),
                        Field::new("b", DataType::Utf8, true),
                    ],
                )
                .unwrap(),
                arrow_schema::UnionMode::Dense,
            ),
            true,
        ),
    ]));
    let e = Parquet::new().encoder(&schema).err().unwrap();
    assert!(matches!(e, Error::Type { .. }), "{e:?}");
    assert!(e.to_string().contains("\"choice\""), "{e}");
}

#[test]
fn gzip_on_top_of_parquet_is_refused() {
    let e = tributary::stores::ObjectBatchSink::new(ObjectSink::memory(), Parquet::new())
        .with_compression(Compression::Gzip)
        .err()
        .unwrap();
    assert!(matches!(e, Error::Config { .. }), "{e:?}");
    assert!(e.to_string().contains("parquet"), "{e}");
}

#[test]
fn pipeline_conf_selects_parquet_and_its_compression() {
    let conf =
        |body: &str| tributary::config::PipelineConfig::parse(body, "test", |_| None).unwrap();
    let c = conf("[store]\nurl = memory:///\nformat = parquet\ncompression = zstd:7\n");
    assert_eq!(c.format().unwrap().extension(), "parquet");
    assert_eq!(c.compression().unwrap(), Compression::None);
    let c = conf("[store]\nurl = memory:///\nformat = parquet\ncompression = gzip\n");
    let e = c.format().err().unwrap();
    assert!(e.to_string().contains("snappy, zstd"), "{e}");
    // Snappy is Parquet's own; CSV objects cannot have it.
    let c = conf("[store]\nurl = memory:///\nformat = csv\ncompression = snappy\n");
    assert!(c.compression().is_err());
}

#[tokio::test]
async fn parts_land_atomically_on_s3_and_roll_by_rows() {
    let Some((bucket, opts)) = common::s3_options() else {
        return;
    };
    let prefix = common::unique("parquet");
    let sink = ObjectSink::from_url_with_options(&format!("s3://{bucket}/{prefix}"), &opts)
        .unwrap()
        .with_part_size(5 * 1024 * 1024);
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("s", DataType::Utf8, false),
    ]));
    let batches: Vec<Batch> = (0..20i64)
        .map(|c| {
            let ids: Vec<i64> = (c * 10_000..(c + 1) * 10_000).collect();
            let s: Vec<String> = ids.iter().map(|i| format!("{i:x}-{}", i * 7919)).collect();
            Batch::new(
                RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(Int64Array::from(ids)),
                        Arc::new(StringArray::from(s)),
                    ],
                )
                .unwrap(),
            )
            .with_checkpoint(Checkpoint::Lsn {
                lsn: (c as u64 + 1) * 10_000,
            })
        })
        .collect();
    let report = Pipeline::builder("pq")
        .extractor(MemoryExtractor::new("mem", "t", batches))
        .sink(sink.clone())
        .format(Parquet::new().with_row_group_rows(25_000))
        .options(PipelineOptions::new().with_part_max_rows(100_000))
        .build()
        .unwrap()
        .run()
        .await
        .into_result()
        .unwrap();
    assert_eq!(report.rows, 200_000);
    assert_eq!(report.objects.len(), 2, "{:?}", report.objects);
    let mut all = vec![];
    for o in &report.objects {
        let bytes = sink.read(&o.key).await.unwrap();
        assert_eq!(bytes.len() as u64, o.bytes);
        let (b, meta) = read_back(bytes);
        assert_eq!(meta.num_row_groups(), 4);
        for rb in b {
            all.extend_from_slice(
                rb.column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .values(),
            );
        }
    }
    assert_eq!(all, (0..200_000).collect::<Vec<_>>());
}
