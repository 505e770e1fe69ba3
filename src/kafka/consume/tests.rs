//! The Debezium corpus in `tests/fixtures/debezium/`: events in the shapes of Debezium's
//! documentation, each with the book CSV lines it must land as.
use super::envelope::{Message, decode};
use super::rows::Tables;
use crate::format::{Csv, Format};
use crate::model::ChangeOptions;
use serde_json::Value;

fn bytes(v: &Value) -> Option<Vec<u8>> {
    (!v.is_null()).then(|| serde_json::to_vec(v).unwrap())
}

/// Land every case of a fixture file in order through one reader; compare each case's
/// lines (`key` picks `lines` or `metadata_lines`).
fn run(fixture: &str, options: ChangeOptions, key: &str) -> usize {
    let doc: Value = serde_json::from_str(fixture).unwrap();
    let mut tables = Tables::new(options, false);
    let mut checked = 0;
    for (i, case) in doc["cases"].as_array().unwrap().iter().enumerate() {
        let Some(want) = case.get(key) else { continue };
        let name = case["name"].as_str().unwrap();
        let m = decode(
            bytes(&case["key"]).as_deref(),
            bytes(&case["value"]).as_deref(),
            case["topic"].as_str().unwrap(),
            0,
            i as i64,
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        if let Message::Change(e) = m {
            assert_eq!(e.table, case["table"].as_str().unwrap(), "{name}");
            assert!(tables.push(*e).unwrap().is_empty(), "{name}");
        }
        let mut got = Vec::new();
        for b in tables.flush().unwrap_or_else(|e| panic!("{name}: {e}")) {
            let mut out = Vec::new();
            Csv::default()
                .encoder(&b.records.schema())
                .unwrap()
                .encode(&b.records, &mut out)
                .unwrap();
            got.extend(String::from_utf8(out).unwrap().lines().map(str::to_string));
        }
        let want: Vec<String> = want
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_string())
            .collect();
        assert_eq!(got, want, "{name}");
        checked += 1;
    }
    checked
}

#[test]
fn documented_envelopes_land_as_the_book_lines() {
    let f = include_str!("../../../tests/fixtures/debezium/envelopes.json");
    assert_eq!(run(f, ChangeOptions::new(), "lines"), 9);
}

#[test]
fn source_fields_become_the_change_metadata() {
    let f = include_str!("../../../tests/fixtures/debezium/envelopes.json");
    assert_eq!(
        run(
            f,
            ChangeOptions::new().with_all_metadata(),
            "metadata_lines"
        ),
        2
    );
}

#[test]
fn every_type_family_decodes_to_its_value() {
    let f = include_str!("../../../tests/fixtures/debezium/types.json");
    assert_eq!(run(f, ChangeOptions::new(), "lines"), 2);
}

fn event(after: Value, schema_fields: Option<Value>) -> Vec<u8> {
    let payload = serde_json::json!({"before": null, "after": after, "op": "u",
        "source": {"connector": "postgresql", "schema": "public", "table": "docs", "lsn": 1}});
    let v = match schema_fields {
        Some(f) => serde_json::json!({"schema": {"type": "struct", "fields": [
            {"field": "after", "type": "struct", "fields": f}]}, "payload": payload}),
        None => payload,
    };
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn the_unavailable_placeholder_is_not_sent_never_data() {
    let v = event(
        serde_json::json!({"id": 1, "body": "__debezium_unavailable_value"}),
        None,
    );
    let land = |o: ChangeOptions| {
        let mut t = Tables::new(o, false);
        let Message::Change(e) = decode(None, Some(&v), "t", 0, 0).unwrap() else {
            panic!()
        };
        t.push(*e).unwrap();
        t.flush()
    };
    let e = land(ChangeOptions::new()).unwrap_err().to_string();
    assert!(e.contains("body") && e.contains("with_unsent"), "{e}");
    let b = land(ChangeOptions::new().with_unsent()).unwrap();
    let mut out = Vec::new();
    Csv::default()
        .encoder(&b[0].records.schema())
        .unwrap()
        .encode(&b[0].records, &mut out)
        .unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), "update|1||{body}\n");
}

#[test]
fn schemaless_types_widen_and_schema_changes_cut_a_batch() {
    let mut t = Tables::new(ChangeOptions::new(), false);
    for (i, after) in [
        serde_json::json!({"id": 1, "x": 1}),
        serde_json::json!({"id": 2, "x": 2.5}),
    ]
    .into_iter()
    .enumerate()
    {
        let Message::Change(e) = decode(None, Some(&event(after, None)), "t", 0, i as i64).unwrap()
        else {
            panic!()
        };
        t.push(*e).unwrap();
    }
    let b = t.flush().unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(
        b[0].records
            .schema()
            .field_with_name("x")
            .unwrap()
            .data_type(),
        &arrow_schema::DataType::Float64
    );
    // With schemas: a new column is a new schema, so the waiting rows are cut first.
    let f1 = serde_json::json!([{"field": "id", "type": "int32"}]);
    let f2 =
        serde_json::json!([{"field": "id", "type": "int32"}, {"field": "y", "type": "string"}]);
    let mk = |a, f| decode(None, Some(&event(a, Some(f))), "t", 0, 0).unwrap();
    let Message::Change(e1) = mk(serde_json::json!({"id": 1}), f1) else {
        panic!()
    };
    let Message::Change(e2) = mk(serde_json::json!({"id": 2, "y": "new"}), f2) else {
        panic!()
    };
    assert!(t.push(*e1).unwrap().is_empty());
    let cut = t.push(*e2).unwrap();
    assert_eq!(cut.len(), 1);
    assert_eq!(cut[0].records.num_columns(), 2);
    assert_eq!(t.flush().unwrap()[0].records.num_columns(), 3);
}

#[test]
fn malformed_messages_are_typed_errors_naming_where() {
    let e = decode(None, Some(b"{not json"), "orders", 3, 42)
        .unwrap_err()
        .to_string();
    assert!(e.contains("orders/3@42") && e.contains("not JSON"), "{e}");
    let e = decode(None, Some(br#"{"op":"x","after":{}}"#), "orders", 0, 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"x\""), "{e}");
    let bad_decimal = event(
        serde_json::json!({"p": "%%%"}),
        Some(serde_json::json!([{"field": "p", "type": "bytes",
        "name": "org.apache.kafka.connect.data.Decimal", "parameters": {"scale": "2"}}])),
    );
    let Message::Change(ev) = decode(None, Some(&bad_decimal), "t", 0, 0).unwrap() else {
        panic!()
    };
    let mut t = Tables::new(ChangeOptions::new(), false);
    t.push(*ev).unwrap();
    let e = t.flush().unwrap_err().to_string();
    assert!(e.contains("column p") && e.contains("base64"), "{e}");
}
