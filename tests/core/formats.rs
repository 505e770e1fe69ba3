//! CSV and JSON Lines output: NULL vs empty string, quoting, every Arrow type, and
//! PostgreSQL's `COPY ... CSV` reading back exactly what was written.

use crate::common;

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::types::Int32Type;
use arrow_array::*;
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use std::sync::Arc;
use tributary::format::{BinaryEncoding, Csv, CsvDialect, Format, JsonLines};
use tributary::model::json_field;

fn encode(format: &dyn Format, rb: &RecordBatch) -> String {
    let mut out = Vec::new();
    let mut enc = format.encoder(&rb.schema()).unwrap();
    enc.begin(&mut out).unwrap();
    enc.encode(rb, &mut out).unwrap();
    enc.finish(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

/// Awkward strings: every one must survive a round trip.
const TRICKY: &[Option<&str>] = &[
    Some("plain"),
    Some(""),
    None,
    Some("with | pipe"),
    Some("with \"quotes\""),
    Some("line\nbreak"),
    Some("crlf\r\nbreak"),
    Some("\\."),
    Some("\\N"),
    Some(" leading and trailing "),
    Some("comma, here"),
    Some("unicode: 한국어 ✓"),
];

fn tricky_batch() -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("s", DataType::Utf8, true),
    ]));
    let ids: Vec<i64> = (0..TRICKY.len() as i64).collect();
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(StringArray::from(TRICKY.to_vec())),
        ],
    )
    .unwrap()
}

#[test]
fn csv_keeps_null_and_empty_string_apart() {
    let csv = encode(&Csv::default(), &tricky_batch());
    let lines: Vec<&str> = csv.split('\n').collect();
    assert_eq!(lines[0], "0|plain");
    assert_eq!(lines[1], "1|\"\"", "empty string is a quoted empty field");
    assert_eq!(lines[2], "2|", "NULL is an empty unquoted field");
    assert_eq!(lines[3], "3|\"with | pipe\"");
    assert_eq!(lines[4], "4|\"with \"\"quotes\"\"\"");
}

#[test]
fn csv_round_trips_through_the_csv_crate() {
    for dialect in [
        CsvDialect::book(),
        CsvDialect::postgres(),
        CsvDialect::redshift(),
        CsvDialect::snowflake(),
    ] {
        let text = encode(&Csv::new(dialect.clone()), &tricky_batch());
        let mut rdr = csv::ReaderBuilder::new()
            .delimiter(dialect.delimiter())
            .has_headers(dialect.has_header())
            .from_reader(text.as_bytes());
        let mut rows = 0;
        for (i, rec) in rdr.byte_records().enumerate() {
            let rec = rec.unwrap();
            let pos = rec.position().unwrap().byte() as usize;
            let raw_line = &text[pos..];
            let raw_field = &raw_line[raw_line.find(dialect.delimiter() as char).unwrap() + 1..];
            match TRICKY[i] {
                // NULL: the null token, unquoted.
                None => {
                    assert_eq!(
                        &rec[1],
                        dialect.null().as_bytes(),
                        "{}",
                        dialect.preset_name()
                    );
                    assert!(!raw_field.starts_with('"'), "NULL must not be quoted");
                }
                Some(v) => {
                    assert_eq!(&rec[1], v.as_bytes(), "{} row {i}", dialect.preset_name());
                    if v.is_empty() || v == dialect.null() {
                        assert!(
                            raw_field.starts_with('"'),
                            "{v:?} must be quoted to differ from NULL"
                        );
                    }
                }
            }
            rows += 1;
        }
        assert_eq!(rows, TRICKY.len());
    }
}

#[test]
fn csv_header_and_bad_dialects() {
    let text = encode(&Csv::new(CsvDialect::postgres()), &tricky_batch());
    assert!(text.starts_with("id,s\n0,plain\n"));
    let schema = tricky_batch().schema();
    let err = Csv::new(CsvDialect::book().with_delimiter(b'"'))
        .encoder(&schema)
        .err()
        .unwrap();
    assert!(matches!(err, tributary::Error::Config { .. }), "{err}");
    let err = Csv::new(CsvDialect::book().with_null("a|b"))
        .encoder(&schema)
        .err()
        .unwrap();
    assert!(err.to_string().contains("NULL token"), "{err}");
}

/// One row of every Arrow type tributary's sources produce, plus NULLs.
fn all_types() -> RecordBatch {
    let mut tags = ListBuilder::new(StringBuilder::new());
    tags.values().append_value("a");
    tags.values().append_value("b|c");
    tags.append(true);
    tags.append(false);
    let uuid_field = Field::new("u", DataType::FixedSizeBinary(16), true).with_metadata(
        std::collections::HashMap::from([(
            "ARROW:extension:name".to_string(),
            "arrow.uuid".to_string(),
        )]),
    );
    let schema = Arc::new(Schema::new(vec![
        Field::new("i8", DataType::Int8, true),
        Field::new("u64", DataType::UInt64, true),
        Field::new("f32", DataType::Float32, true),
        Field::new("f64", DataType::Float64, true),
        Field::new("dec", DataType::Decimal128(38, 9), true),
        Field::new("neg_dec", DataType::Decimal128(10, 2), true),
        Field::new("b", DataType::Boolean, true),
        Field::new("d", DataType::Date32, true),
        Field::new("t", DataType::Time64(TimeUnit::Microsecond), true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        Field::new(
            "tstz",
            DataType::Timestamp(TimeUnit::Microsecond, Some("+09:00".into())),
            true,
        ),
        Field::new("dur", DataType::Duration(TimeUnit::Microsecond), true),
        Field::new("bin", DataType::Binary, true),
        uuid_field,
        json_field("j", true),
        Field::new(
            "tags",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
        Field::new(
            "dict",
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            true,
        ),
    ]));
    let dict: DictionaryArray<Int32Type> = vec![Some("x"), None].into_iter().collect();
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int8Array::from(vec![Some(-8), None])),
            Arc::new(UInt64Array::from(vec![Some(u64::MAX), None])),
            Arc::new(Float32Array::from(vec![Some(0.1f32), None])),
            Arc::new(Float64Array::from(vec![
                Some(f64::NAN),
                Some(f64::NEG_INFINITY),
            ])),
            Arc::new(
                Decimal128Array::from(vec![Some(12345678901234567890123456789i128), None])
                    .with_precision_and_scale(38, 9)
                    .unwrap(),
            ),
            Arc::new(
                Decimal128Array::from(vec![Some(-5i128), Some(0)])
                    .with_precision_and_scale(10, 2)
                    .unwrap(),
            ),
            Arc::new(BooleanArray::from(vec![Some(true), None])),
            Arc::new(Date32Array::from(vec![Some(18_414), None])), // 2020-06-01
            Arc::new(Time64MicrosecondArray::from(vec![
                Some(43_200_500_000),
                None,
            ])),
            Arc::new(TimestampMicrosecondArray::from(vec![
                Some(1_591_012_800_000_000),
                None,
            ])),
            Arc::new(
                TimestampMicrosecondArray::from(vec![Some(1_591_012_800_123_456), None])
                    .with_timezone("+09:00"),
            ),
            Arc::new(DurationMicrosecondArray::from(vec![
                Some(-3_020_399_000_000),
                None,
            ])), // -838:59:59
            Arc::new(BinaryArray::from(vec![Some(&b"\x00\xff|"[..]), None])),
            Arc::new(
                FixedSizeBinaryArray::try_from_sparse_iter_with_size(
                    vec![
                        Some(*b"\x12\x34\x56\x78\x9a\xbc\xde\xf0\x12\x34\x56\x78\x9a\xbc\xde\xf0"),
                        None,
                    ]
                    .into_iter(),
                    16,
                )
                .unwrap(),
            ),
            Arc::new(StringArray::from(vec![
                Some(r#"{"sku": "A|1", "qty": 2}"#),
                None,
            ])),
            Arc::new(tags.finish()),
            Arc::new(dict),
        ],
    )
    .unwrap()
}

#[test]
fn csv_renders_every_type() {
    let csv = encode(&Csv::default(), &all_types());
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "-8|18446744073709551615|0.1|NaN|12345678901234567890.123456789|-0.05|t|2020-06-01|12:00:00.5|\
         2020-06-01 12:00:00|2020-06-01 21:00:00.123456+09|-838:59:59|\\x00ff7c|12345678-9abc-def0-1234-56789abcdef0|\
         \"{\"\"sku\"\": \"\"A|1\"\", \"\"qty\"\": 2}\"|\"{a,b|c}\"|x"
    );
    assert_eq!(lines[1], "|||-Infinity||0.00|||||||||||");
}

#[test]
fn jsonl_is_lossless() {
    let text = encode(&JsonLines::default(), &all_types());
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let r = &rows[0];
    assert_eq!(r["u64"].to_string(), "18446744073709551615");
    assert_eq!(
        r["dec"].to_string(),
        "12345678901234567890.123456789",
        "decimal digits all kept"
    );
    assert_eq!(r["f64"], "NaN");
    assert_eq!(r["ts"], "2020-06-01T12:00:00");
    assert_eq!(r["tstz"], "2020-06-01T21:00:00.123456+09:00");
    assert_eq!(r["bin"], "AP98", "base64 by default");
    assert_eq!(r["j"]["sku"], "A|1", "JSON columns are embedded as JSON");
    assert_eq!(r["tags"], serde_json::json!(["a", "b|c"]));
    assert_eq!(r["u"], "12345678-9abc-def0-1234-56789abcdef0");
    assert_eq!(rows[1]["dec"], serde_json::Value::Null);
    assert_eq!(rows[1]["tags"], serde_json::Value::Null);
    // Column order follows the schema.
    assert!(text.starts_with("{\"i8\":-8,\"u64\":"));
    let hex = encode(
        &JsonLines::new()
            .with_binary(BinaryEncoding::Hex)
            .with_decimal_as_string(true),
        &all_types(),
    );
    let r: serde_json::Value = serde_json::from_str(hex.lines().next().unwrap()).unwrap();
    assert_eq!(r["bin"], "00ff7c");
    assert_eq!(r["dec"], "12345678901234567890.123456789");
}

#[test]
fn jsonl_rejects_invalid_json_in_a_json_column() {
    let schema = Arc::new(Schema::new(vec![json_field("j", true)]));
    let rb = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(StringArray::from(vec!["{not json"]))],
    )
    .unwrap();
    let mut out = Vec::new();
    let err = JsonLines::default()
        .encoder(&schema)
        .unwrap()
        .encode(&rb, &mut out)
        .unwrap_err();
    assert!(
        err.to_string().contains("column j is marked as JSON"),
        "{err}"
    );
}

#[tokio::test]
async fn postgres_copy_reads_back_exactly_what_was_written() {
    use sqlx::Connection;
    let Some(url) = common::service("TRIBUTARY_TEST_PG_URL", "PostgreSQL") else {
        return;
    };
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let table = common::unique("copy").replace('-', "_");
    let cols = "id int8, s text, i8 int2, u64 numeric, f32 float4, f64 float8, dec numeric, neg_dec numeric(10,2), \
                b bool, d date, t time, ts timestamp, tstz timestamptz, dur interval, bin bytea, u uuid, j jsonb, \
                tags text[], dict text";
    for t in ["got", "expected"] {
        sqlx::query(&format!("CREATE TEMP TABLE {t}_{table} ({cols})"))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    // Our CSV: the tricky strings plus every type, side by side in one batch.
    let strings = tricky_batch();
    let types = all_types();
    let fields: Vec<_> = strings
        .schema()
        .fields()
        .iter()
        .chain(types.schema().fields())
        .cloned()
        .collect();
    let mut arrays: Vec<ArrayRef> = vec![];
    // A batch of TRICKY.len() rows: row i takes all_types' row i % 2.
    let take = UInt32Array::from((0..TRICKY.len() as u32).map(|i| i % 2).collect::<Vec<_>>());
    arrays.extend(strings.columns().iter().cloned());
    for c in types.columns() {
        arrays.push(arrow_select_take(c.as_ref(), &take));
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap();
    let dialect = CsvDialect::book();
    let text = encode(&Csv::new(dialect.clone()), &batch);
    let mut copy = conn
        .copy_in_raw(&format!(
            "COPY got_{table} FROM STDIN WITH ({})",
            dialect.postgres_copy_options()
        ))
        .await
        .unwrap();
    copy.send(text.as_bytes()).await.unwrap();
    assert_eq!(copy.finish().await.unwrap(), TRICKY.len() as u64);

    // The same values, inserted through PostgreSQL's own text input.
    let typed = [
        [
            Some("-8"),
            Some("18446744073709551615"),
            Some("0.1"),
            Some("NaN"),
            Some("12345678901234567890.123456789"),
            Some("-0.05"),
            Some("true"),
            Some("2020-06-01"),
            Some("12:00:00.5"),
            Some("2020-06-01 12:00:00"),
            Some("2020-06-01 12:00:00.123456+00"),
            Some("-838:59:59"),
            Some("\\x00ff7c"),
            Some("12345678-9abc-def0-1234-56789abcdef0"),
            Some(r#"{"sku": "A|1", "qty": 2}"#),
            Some("{a,b|c}"),
            Some("x"),
        ],
        [
            None,
            None,
            None,
            Some("-Infinity"),
            None,
            Some("0"),
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        ],
    ];
    let casts = [
        "int2",
        "numeric",
        "float4",
        "float8",
        "numeric",
        "numeric",
        "bool",
        "date",
        "time",
        "timestamp",
        "timestamptz",
        "interval",
        "bytea",
        "uuid",
        "jsonb",
        "text[]",
        "text",
    ];
    let placeholders: Vec<String> = (0..casts.len())
        .map(|i| format!("${}::{}", i + 3, casts[i]))
        .collect();
    for (i, s) in TRICKY.iter().enumerate() {
        let sql = format!(
            "INSERT INTO expected_{table} VALUES ($1, $2, {})",
            placeholders.join(", ")
        );
        let mut q = sqlx::query(&sql).bind(i as i64).bind(*s);
        for v in typed[i % 2] {
            q = q.bind(v);
        }
        q.execute(&mut conn).await.unwrap();
    }
    let diff: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM ((TABLE got_{table} EXCEPT ALL TABLE expected_{table})
                               UNION ALL (TABLE expected_{table} EXCEPT ALL TABLE got_{table})) d"
    ))
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        diff, 0,
        "PostgreSQL read back different values than were written:\n{text}"
    );
    let nulls: i64 =
        sqlx::query_scalar(&format!("SELECT count(*) FROM got_{table} WHERE s IS NULL"))
            .fetch_one(&mut conn)
            .await
            .unwrap();
    let empties: i64 =
        sqlx::query_scalar(&format!("SELECT count(*) FROM got_{table} WHERE s = ''"))
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(
        (nulls, empties),
        (1, 1),
        "NULL and empty string stay distinct through COPY"
    );
}

fn arrow_select_take(a: &dyn Array, idx: &UInt32Array) -> ArrayRef {
    // Small local `take` so the test needs no compute crate.
    let data = a.to_data();
    let mut mutable = arrow_data::transform::MutableArrayData::new(vec![&data], true, idx.len());
    for i in idx.values() {
        mutable.try_extend(0, *i as usize, *i as usize + 1).unwrap();
    }
    make_array(mutable.freeze())
}

/// Floats, intervals and arrays are written exactly as PostgreSQL prints them, so the
/// COPY path and the typed path give the same bytes.
#[tokio::test]
async fn floats_intervals_and_arrays_render_like_postgres() {
    use sqlx::Connection;
    let Some(url) = common::service("TRIBUTARY_TEST_PG_URL", "PostgreSQL") else {
        return;
    };
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    // Deterministic spread of magnitudes, signs and digit counts.
    let mut f64s = vec![
        0.0,
        -0.0,
        1.0,
        0.1,
        1e14,
        1e15,
        1e16,
        1e-4,
        1e-5,
        123456789012345.6,
        5e-324,
        f64::MAX,
        f64::MIN_POSITIVE,
    ];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..3000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let exp = (x % 60) as i32 - 30;
        let mant = (x >> 20) as f64 / (1u64 << 44) as f64;
        f64s.push(if x.is_multiple_of(2) {
            mant * 10f64.powi(exp)
        } else {
            -mant * 10f64.powi(exp)
        });
    }
    let f32s: Vec<f32> = f64s
        .iter()
        .map(|v| *v as f32)
        .filter(|v| v.is_finite())
        .collect();
    let render = |a: ArrayRef| {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "v",
            a.data_type().clone(),
            true,
        )]));
        let rb = RecordBatch::try_new(schema, vec![a]).unwrap();
        encode(&Csv::default(), &rb)
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let ours = render(Arc::new(Float64Array::from(f64s.clone())));
    let theirs: Vec<String> = sqlx::query_scalar(
        "SELECT v::text FROM unnest($1::float8[]) WITH ORDINALITY AS t(v, i) ORDER BY i",
    )
    .bind(&f64s)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(a, b, "float8 #{i} ({:e})", f64s[i]);
    }
    let ours = render(Arc::new(Float32Array::from(f32s.clone())));
    let theirs: Vec<String> = sqlx::query_scalar(
        "SELECT v::text FROM unnest($1::float4[]) WITH ORDINALITY AS t(v, i) ORDER BY i",
    )
    .bind(&f32s)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(a, b, "float4 #{i} ({:e})", f32s[i]);
    }

    sqlx::query("SET intervalstyle = iso_8601")
        .execute(&mut conn)
        .await
        .unwrap();
    let intervals = [
        (14, 3, 14_706_500_000_000i64),
        (0, 0, 0),
        (0, -1, 0),
        (0, 0, -14_706_000_000_000),
        (1, -2, 10_800_000_000_000),
        (0, 0, 1_500_000_000),
        (0, 0, -1_500_000_000),
        (0, 0, 360_000_000_000_000),
    ];
    let arr = IntervalMonthDayNanoArray::from(
        intervals
            .iter()
            .map(|(m, d, n)| arrow_buffer::IntervalMonthDayNano::new(*m, *d, *n))
            .collect::<Vec<_>>(),
    );
    let ours = render(Arc::new(arr));
    for ((m, d, n), ours) in intervals.iter().zip(ours) {
        let pg: String = sqlx::query_scalar(
            "SELECT make_interval(months => $1, days => $2, secs => $3::float8 / 1e9)::text",
        )
        .bind(m)
        .bind(d)
        .bind(*n as f64)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(ours, pg, "interval ({m} months, {d} days, {n} ns)");
    }
}
