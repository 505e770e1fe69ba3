//! Change rows in every format: the book's lines, metadata and before-image columns,
//! and a value the source did not send (never a null or a magic string in its column).

use std::sync::Arc;
use tributary::arrow_array::{Array, Int64Array, ListArray, RecordBatch, StringArray};
use tributary::arrow_schema::{DataType, Field, Schema, SchemaRef};
use tributary::format::{Csv, Format, JsonLines};
use tributary::model::{ChangeMeta, ChangeOptions, ChangeSchema, Op, change, key_field};

fn table() -> SchemaRef {
    Arc::new(Schema::new(vec![
        key_field(Field::new("id", DataType::Int64, false), 1),
        Field::new("status", DataType::Utf8, true),
        Field::new("payload", DataType::Utf8, true),
    ]))
}

fn rows(status: Vec<Option<&str>>, payload: Vec<Option<&str>>) -> RecordBatch {
    let n = status.len() as i64;
    RecordBatch::try_new(
        table(),
        vec![
            Arc::new(Int64Array::from((1..=n).collect::<Vec<_>>())),
            Arc::new(StringArray::from(status)),
            Arc::new(StringArray::from(payload)),
        ],
    )
    .unwrap()
}

fn encode(format: &dyn Format, batch: &RecordBatch) -> String {
    let mut out = Vec::new();
    let mut enc = format.encoder(&batch.schema()).unwrap();
    enc.begin(&mut out).unwrap();
    enc.encode(batch, &mut out).unwrap();
    enc.finish(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

/// An update whose `payload` was not sent (unchanged TOAST), a delete, a truncate.
fn sample(options: ChangeOptions) -> (ChangeSchema, RecordBatch) {
    let cs = ChangeSchema::new(table(), options).unwrap();
    let after = rows(
        vec![Some("Shipped"), Some("Shipped"), None],
        vec![None, Some("x"), None],
    );
    let before = rows(
        vec![Some("Backordered"), None, None],
        vec![None, None, None],
    );
    let meta = vec![
        ChangeMeta::new()
            .with_position("0/16B3748")
            .with_commit_ts("2020-06-09T12:00:25Z".parse().unwrap())
            .with_txid("731")
            .with_seq(0),
        ChangeMeta::new()
            .with_position("0/16B3800")
            .with_commit_ts("2020-06-09T12:00:26Z".parse().unwrap())
            .with_txid("732")
            .with_seq(0),
        ChangeMeta::default(),
    ];
    let unsent = if options.unsent {
        vec![vec![2], vec![], vec![]]
    } else {
        vec![]
    };
    let batch = cs
        .build(
            &[Op::Update, Op::Delete, Op::Truncate],
            &meta,
            &after,
            Some(&before),
            &unsent,
        )
        .unwrap();
    (cs, batch)
}

#[test]
fn metadata_and_before_image_columns_in_the_books_csv() {
    let (cs, batch) = sample(ChangeOptions::new().with_all_metadata().with_before_image());
    let names: Vec<&str> = cs
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(
        names,
        [
            "_op",
            "_position",
            "_commit_ts",
            "_txid",
            "_seq",
            "id",
            "status",
            "payload",
            "_before_id",
            "_before_status",
            "_before_payload"
        ]
    );
    assert_eq!(
        tributary::model::key_columns(cs.schema()),
        ["id"],
        "the key stays marked; before-image columns are not keys"
    );
    assert_eq!(
        encode(&Csv::default(), &batch),
        "update|0/16B3748|2020-06-09 12:00:25+00|731|0|1|Shipped||1|Backordered|\n\
         delete|0/16B3800|2020-06-09 12:00:26+00|732|0|2|Shipped|x|2||\n\
         truncate|||||3|||3||\n"
    );
    assert_eq!(
        change::ops(&batch).unwrap(),
        [Op::Update, Op::Delete, Op::Truncate]
    );
}

#[test]
fn a_value_not_sent_is_listed_in_unsent_in_every_format() {
    let (_, batch) = sample(ChangeOptions::new().with_unsent());
    // CSV: the cell is empty and `_unsent` names the column.
    let csv = encode(&Csv::default(), &batch);
    let first = csv.lines().next().unwrap();
    assert_eq!(first, "update|1|Shipped||{payload}");
    assert!(csv.lines().nth(1).unwrap().ends_with("|x|{}"), "{csv}");
    // JSON Lines: the key is absent (absent is not null) and `_unsent` is an array.
    let jsonl = encode(&JsonLines::default(), &batch);
    let lines: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines[0],
        serde_json::json!({"_op": "update", "id": 1, "status": "Shipped", "_unsent": ["payload"]})
    );
    assert!(lines[0].get("payload").is_none());
    assert_eq!(lines[1]["payload"], "x");
    assert_eq!(
        lines[2]["payload"],
        serde_json::Value::Null,
        "a real null stays null"
    );
    assert_eq!(lines[2]["_unsent"], serde_json::json!([]));
}

#[cfg(feature = "parquet")]
#[test]
fn a_value_not_sent_in_parquet_is_a_null_cell_and_a_list_entry() {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let (_, batch) = sample(ChangeOptions::new().with_unsent());
    let mut out = Vec::new();
    let f = tributary::format::Parquet::default();
    let mut enc = f.encoder(&batch.schema()).unwrap();
    enc.begin(&mut out).unwrap();
    enc.encode(&batch, &mut out).unwrap();
    enc.finish(&mut out).unwrap();
    let back = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(out))
        .unwrap()
        .build()
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let payload = back.column_by_name("payload").unwrap();
    assert!(payload.is_null(0));
    let unsent = back
        .column_by_name("_unsent")
        .unwrap()
        .as_any()
        .downcast_ref::<ListArray>()
        .unwrap()
        .value(0);
    let unsent = unsent.as_any().downcast_ref::<StringArray>().unwrap();
    assert_eq!(unsent.value(0), "payload");
}

#[test]
fn bad_change_input_is_a_typed_error() {
    // A table column named like a change column.
    let t = Arc::new(Schema::new(vec![Field::new("_op", DataType::Utf8, true)]));
    let e = ChangeSchema::new(t, ChangeOptions::new()).unwrap_err();
    assert!(matches!(e, tributary::Error::Config { .. }));
    assert!(e.to_string().contains("\"_op\""), "{e}");
    // A value marked unsent that holds a value.
    let cs = ChangeSchema::new(table(), ChangeOptions::new().with_unsent()).unwrap();
    let r = rows(vec![Some("a")], vec![Some("kept")]);
    let e = cs
        .build(
            &[Op::Update],
            &[ChangeMeta::default()],
            &r,
            None,
            &[vec![2]],
        )
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("column payload is marked unsent but holds a value"),
        "{e}"
    );
    // Unsent values without the column for them.
    let cs = ChangeSchema::new(table(), ChangeOptions::new()).unwrap();
    let r = rows(vec![Some("a")], vec![None]);
    let e = cs
        .build(
            &[Op::Update],
            &[ChangeMeta::default()],
            &r,
            None,
            &[vec![2]],
        )
        .unwrap_err();
    assert!(e.to_string().contains("no _unsent column"), "{e}");
    // Ops that do not match the rows.
    let e = cs.build(&[], &[], &r, None, &[]).unwrap_err();
    assert!(e.to_string().contains("1 rows but 0 ops"), "{e}");
    // An `_op` that is not an op.
    let bad = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("_op", DataType::Utf8, false)])),
        vec![Arc::new(StringArray::from(vec!["upsert"]))],
    )
    .unwrap();
    assert!(
        change::ops(&bad)
            .unwrap_err()
            .to_string()
            .contains("\"upsert\"")
    );
    assert!(Op::parse("insert") == Some(Op::Insert) && Op::Snapshot.to_string() == "snapshot");
}
