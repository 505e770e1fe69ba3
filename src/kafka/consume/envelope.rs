//! One Kafka message → one change: the Debezium envelope with schemas
//! (`{"schema":…,"payload":…}`) or without, or the flattened row of Debezium's
//! `ExtractNewRecordState` transform (`__op`, `__table`, `__deleted`, …).
use super::types::Kind;
use crate::model::{ChangeMeta, Op};
use crate::{Error, Result};
use serde_json::{Map, Value};

/// A decoded message.
#[derive(Debug)]
pub(crate) enum Message {
    /// A row change.
    Change(Box<Event>),
    /// A null value: the tombstone after a delete (key columns, when the key has them).
    Tombstone {
        table: String,
        key: Map<String, Value>,
    },
    /// Nothing to land (a transaction marker, a heartbeat, a schema-change event).
    Skip,
}

/// One change, before it is put into Arrow.
#[derive(Debug)]
pub(crate) struct Event {
    pub table: String,
    pub op: Op,
    /// The row image: after for insert/update/snapshot, before for delete.
    pub row: Map<String, Value>,
    /// An update's before-image, when sent.
    pub before: Option<Map<String, Value>>,
    /// The columns and their kinds, from the Connect schema (`None`: no schema sent).
    pub columns: Option<Vec<(String, Kind)>>,
    /// The key's column names, in key order.
    pub keys: Vec<String>,
    pub meta: ChangeMeta,
    /// `source` fields as text: db, schema, table, lsn, file, pos, gtid, ts_ms.
    pub source: [Option<String>; 8],
}

/// The `source` fields that become `_source_<name>` columns, in order.
pub(crate) const SOURCE_FIELDS: [&str; 8] = [
    "db", "schema", "table", "lsn", "file", "pos", "gtid", "ts_ms",
];

fn parse_json(what: &str, bytes: &[u8], topic: &str, partition: i32, offset: i64) -> Result<Value> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::type_error(
            "kafka",
            format!("{topic}/{partition}@{offset}: the {what} is not JSON ({e}); tributary reads Debezium's JSON converter (with or without schemas)"),
        )
    })
}

/// Split `{"schema":…,"payload":…}` into its parts; anything else is a payload alone.
fn split(v: Value) -> (Option<Value>, Value) {
    match v {
        Value::Object(mut o)
            if o.len() == 2 && o.contains_key("schema") && o.contains_key("payload") =>
        {
            let payload = o.remove("payload").unwrap_or(Value::Null);
            (o.remove("schema"), payload)
        }
        other => (None, other),
    }
}

fn struct_columns(schema: &Value) -> Option<Vec<(String, Kind)>> {
    let fields = schema.get("fields")?.as_array()?;
    Some(
        fields
            .iter()
            .filter_map(|f| Some((f.get("field")?.as_str()?.to_string(), Kind::from_connect(f))))
            .collect(),
    )
}

fn as_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn lsn_text(v: Option<&Value>) -> Option<String> {
    let n = v?.as_u64()?;
    Some(format!("{:X}/{:X}", n >> 32, n & 0xffff_ffff))
}

fn table_name(
    db: Option<String>,
    schema: Option<String>,
    table: Option<String>,
    topic: &str,
) -> String {
    match (schema.or(db), table) {
        (Some(s), Some(t)) => format!("{s}.{t}"),
        (None, Some(t)) => t,
        _ => topic.to_string(),
    }
}

/// Decode one message.
pub(crate) fn decode(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<Message> {
    let mut key_table = None;
    let keys: (Vec<String>, Map<String, Value>) = match key {
        Some(k) if !k.is_empty() => {
            let (schema, payload) = split(parse_json("key", k, topic, partition, offset)?);
            // Debezium names the key schema `<prefix>.<db or schema>.<table>.Key`.
            key_table = schema
                .as_ref()
                .and_then(|s| {
                    s.get("name")?
                        .as_str()?
                        .strip_suffix(".Key")
                        .map(str::to_string)
                })
                .and_then(|n| {
                    let parts: Vec<&str> = n.split('.').collect();
                    (parts.len() >= 3).then(|| parts[parts.len() - 2..].join("."))
                });
            match payload {
                Value::Object(o) => (o.keys().cloned().collect(), o),
                _ => (Vec::new(), Map::new()),
            }
        }
        _ => (Vec::new(), Map::new()),
    };
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        let table = key_table.unwrap_or_else(|| topic.to_string());
        return Ok(Message::Tombstone { table, key: keys.1 });
    };
    let (schema, payload) = split(parse_json("value", value, topic, partition, offset)?);
    let Value::Object(mut p) = payload else {
        return Ok(Message::Skip);
    };
    let fallback_position = format!("{topic}/{partition}@{offset}");
    if p.contains_key("op")
        && (p.contains_key("after") || p.contains_key("before") || p.contains_key("source"))
    {
        let op = match p.get("op").and_then(Value::as_str) {
            Some("c") => Op::Insert,
            Some("u") => Op::Update,
            Some("d") => Op::Delete,
            Some("r") => Op::Snapshot,
            Some("t") => Op::Truncate,
            Some("m") => return Ok(Message::Skip),
            other => {
                return Err(Error::type_error(
                    "kafka",
                    format!(
                        "{topic}/{partition}@{offset}: op {other:?} is not a Debezium op (c, u, d, r, t, m)"
                    ),
                ));
            }
        };
        let source = match p.remove("source") {
            Some(Value::Object(s)) => s,
            _ => Map::new(),
        };
        let src: [Option<String>; 8] = SOURCE_FIELDS.map(|f| as_text(source.get(f)));
        let columns = schema.as_ref().and_then(|s| {
            let fields = s.get("fields")?.as_array()?;
            let pick = |name: &str| {
                fields
                    .iter()
                    .find(|f| f.get("field").and_then(Value::as_str) == Some(name))
            };
            struct_columns(pick("after").or_else(|| pick("before"))?)
        });
        let obj = |v: Option<Value>| match v {
            Some(Value::Object(o)) => Some(o),
            _ => None,
        };
        let after = obj(p.remove("after"));
        let before = obj(p.remove("before"));
        let (row, before) = match op {
            Op::Delete => (before.unwrap_or_default(), None),
            Op::Truncate => (Map::new(), None),
            _ => (after.unwrap_or_default(), before),
        };
        let position = lsn_text(source.get("lsn"))
            .or_else(
                || match (as_text(source.get("file")), as_text(source.get("pos"))) {
                    (Some(f), Some(pos)) if !f.is_empty() => Some(format!("{f}:{pos}")),
                    _ => None,
                },
            )
            .or(Some(fallback_position));
        let seq = p
            .get("transaction")
            .and_then(|t| t.get("total_order"))
            .and_then(Value::as_u64)
            .map(|n| n.saturating_sub(1));
        let meta = ChangeMeta {
            position,
            commit_ts: source
                .get("ts_ms")
                .and_then(Value::as_i64)
                .and_then(chrono::DateTime::from_timestamp_millis),
            txid: as_text(source.get("txId")).or_else(|| as_text(source.get("gtid"))),
            seq,
        };
        let table = table_name(src[0].clone(), src[1].clone(), src[2].clone(), topic);
        return Ok(Message::Change(Box::new(Event {
            table,
            op,
            row,
            before,
            columns,
            keys: keys.0,
            meta,
            source: src,
        })));
    }
    // Debezium's own non-change events on the same topics.
    if p.contains_key("databaseName") && p.contains_key("ddl")
        || p.contains_key("status") && p.contains_key("id") && p.len() <= 4
    {
        return Ok(Message::Skip);
    }
    // The flattened form: the row, with `__`-prefixed metadata fields.
    let mut meta_fields = Map::new();
    let names: Vec<String> = p.keys().filter(|k| k.starts_with("__")).cloned().collect();
    for k in names {
        if let Some(v) = p.remove(&k) {
            meta_fields.insert(k[2..].to_string(), v);
        }
    }
    let deleted = matches!(meta_fields.get("deleted"), Some(Value::String(s)) if s == "true")
        || meta_fields.get("deleted") == Some(&Value::Bool(true));
    let op = match meta_fields.get("op").and_then(Value::as_str) {
        _ if deleted => Op::Delete,
        Some("d") => Op::Delete,
        Some("u") => Op::Update,
        Some("r") => Op::Snapshot,
        Some("t") => Op::Truncate,
        _ => Op::Insert,
    };
    let columns = schema.as_ref().and_then(struct_columns).map(|c| {
        c.into_iter()
            .filter(|(n, _)| !n.starts_with("__"))
            .collect()
    });
    let get = |k: &str| as_text(meta_fields.get(k));
    let src: [Option<String>; 8] = [
        get("db"),
        get("schema"),
        get("table"),
        get("lsn"),
        get("file"),
        get("pos"),
        get("gtid"),
        get("source_ts_ms").or_else(|| get("ts_ms")),
    ];
    let position = lsn_text(meta_fields.get("lsn")).or(Some(fallback_position));
    let meta = ChangeMeta {
        position,
        commit_ts: meta_fields
            .get("source_ts_ms")
            .or_else(|| meta_fields.get("ts_ms"))
            .and_then(Value::as_i64)
            .and_then(chrono::DateTime::from_timestamp_millis),
        txid: get("txId").or_else(|| get("gtid")),
        seq: None,
    };
    let table = table_name(src[0].clone(), src[1].clone(), src[2].clone(), topic);
    Ok(Message::Change(Box::new(Event {
        table,
        op,
        row: p,
        before: None,
        columns,
        keys: keys.0,
        meta,
        source: src,
    })))
}
