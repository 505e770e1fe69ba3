//! One change → one Kafka message: where each part of Debezium's envelope (`op`,
//! `before`, `after`, `source`, `ts_ms`, the key, the Connect schemas) comes from in a
//! change batch, and the messages of one row.

use super::config::KafkaSinkConfig;
use super::types::{self, Enc};
use crate::model::change::CHANGE_ROLE_KEY;
use crate::{BatchTarget, Error, Result};
use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use arrow_schema::{Field, SchemaRef};
use serde_json::{Map, Value, json};

/// Where each part of the envelope comes from in a change batch.
pub(super) struct Layout {
    op: usize,
    position: Option<usize>,
    commit_ts: Option<usize>,
    txid: Option<usize>,
    unsent: Option<usize>,
    data: Vec<(usize, Enc)>,
    before: Vec<(usize, Enc)>,
    keys: Vec<(usize, Enc)>,
    key_schema: Option<Value>,
    value_schema: Option<Value>,
    connector: String,
    prefix: String,
    db: Option<String>,
    name: String,
    schemas: bool,
    tombstones: bool,
}

fn role(f: &Field) -> Option<&str> {
    f.metadata().get(CHANGE_ROLE_KEY).map(String::as_str)
}

impl Layout {
    pub(super) fn new(
        config: &KafkaSinkConfig,
        target: &BatchTarget,
        schema: &SchemaRef,
    ) -> Result<Self> {
        let find = |r: &str| schema.fields().iter().position(|f| role(f) == Some(r));
        let op = find("op").ok_or_else(|| {
            Error::type_error(
                "kafka",
                format!("{}: the Kafka sink publishes change rows (an _op column); these rows have none", target.table),
            )
        })?;
        let mut data = Vec::new();
        let mut before = Vec::new();
        let mut row_schemas = Vec::new();
        for (i, f) in schema.fields().iter().enumerate() {
            match role(f) {
                None => {
                    let (enc, s) = types::encoding(f);
                    data.push((i, enc));
                    row_schemas.push(s);
                }
                Some("before") => before.push((i, types::encoding(f).0)),
                _ => {}
            }
        }
        let key_names = crate::model::key_columns(schema);
        let keys: Vec<(usize, Enc)> = key_names
            .iter()
            .filter_map(|k| schema.index_of(k).ok())
            .map(|i| (i, types::encoding(schema.field(i)).0))
            .collect();
        let connector = config
            .connector
            .clone()
            .unwrap_or_else(|| match target.source.as_str() {
                "postgres" => "postgresql".into(),
                other => other.into(),
            });
        let full = format!("{}.{}", config.prefix, target.table);
        let (db, name) = match target.table.split_once('.') {
            Some((d, n)) => (Some(d.to_string()), n.to_string()),
            None => (None, target.table.clone()),
        };
        let key_schema = (!keys.is_empty()).then(|| {
            let fields = keys
                .iter()
                .map(|(i, _)| {
                    let mut s =
                        types::encoding(&schema.field(*i).as_ref().clone().with_nullable(false)).1;
                    s["optional"] = Value::Bool(false);
                    s
                })
                .collect();
            types::struct_schema(&format!("{full}.Key"), false, fields, None)
        });
        let source_schema = source_schema(&connector);
        let value_schema = types::struct_schema(
            &format!("{full}.Envelope"),
            false,
            vec![
                types::struct_schema(
                    &format!("{full}.Value"),
                    true,
                    row_schemas.clone(),
                    Some("before"),
                ),
                types::struct_schema(&format!("{full}.Value"), true, row_schemas, Some("after")),
                source_schema,
                json!({"type": "string", "optional": false, "field": "op"}),
                json!({"type": "int64", "optional": true, "field": "ts_ms"}),
            ],
            None,
        );
        Ok(Layout {
            op,
            position: find("position"),
            commit_ts: find("commit_ts"),
            txid: find("txid"),
            unsent: find("unsent"),
            data,
            before,
            keys,
            key_schema,
            value_schema: Some(value_schema),
            connector,
            prefix: config.prefix.clone(),
            db,
            name,
            schemas: config.schemas,
            tombstones: config.tombstones,
        })
    }

    fn wrap(&self, schema: Option<&Value>, payload: Value) -> Value {
        match (self.schemas, schema) {
            (true, Some(s)) => json!({"schema": s, "payload": payload}),
            _ => payload,
        }
    }

    fn image(
        &self,
        b: &RecordBatch,
        cols: &[(usize, Enc)],
        names_from: &[(usize, Enc)],
        row: usize,
        unsent: &[String],
    ) -> Result<Value> {
        let schema = b.schema();
        let mut m = Map::new();
        for ((i, enc), (ni, _)) in cols.iter().zip(names_from) {
            let name = schema.field(*ni).name();
            let v = if unsent.iter().any(|u| u == name) {
                Value::from(crate::kafka::debezium::UNAVAILABLE_VALUE)
            } else {
                types::value(*enc, b.column(*i), schema.field(*i), row)?
            };
            m.insert(name.clone(), v);
        }
        Ok(Value::Object(m))
    }

    /// The key and value messages of one row (a delete adds a tombstone).
    pub(super) fn messages(&self, b: &RecordBatch, row: usize) -> Result<Vec<Msg>> {
        let text = |i: Option<usize>| -> Option<String> {
            let a = b.column(i?);
            (!a.is_null(row)).then(|| a.as_string::<i32>().value(row).to_string())
        };
        let op = text(Some(self.op)).unwrap_or_default();
        let code = match op.as_str() {
            "insert" => "c",
            "update" => "u",
            "delete" => "d",
            "snapshot" => "r",
            "truncate" => "t",
            other => {
                return Err(Error::type_error(
                    "kafka",
                    format!("_op {other:?} is not an op"),
                ));
            }
        };
        let unsent: Vec<String> = match self.unsent {
            Some(i) if !b.column(i).is_null(row) => {
                let l = b.column(i).as_list::<i32>().value(row);
                let s = l.as_string::<i32>();
                (0..s.len())
                    .filter(|j| !s.is_null(*j))
                    .map(|j| s.value(j).to_string())
                    .collect()
            }
            _ => Vec::new(),
        };
        let data = if code == "t" {
            Value::Null
        } else {
            self.image(b, &self.data, &self.data, row, &unsent)?
        };
        let before_image = if code == "u"
            && !self.before.is_empty()
            && self.before.iter().any(|(i, _)| !b.column(*i).is_null(row))
        {
            self.image(b, &self.before, &self.data, row, &[])?
        } else {
            Value::Null
        };
        let (before, after) = match code {
            "d" => (data, Value::Null),
            "t" => (Value::Null, Value::Null),
            "u" => (before_image, data),
            _ => (Value::Null, data),
        };
        let ts_ms = match self.commit_ts {
            Some(i) if !b.column(i).is_null(row) => b
                .column(i)
                .as_primitive::<arrow_array::types::TimestampMicrosecondType>()
                .value(row)
                .div_euclid(1000),
            _ => chrono::Utc::now().timestamp_millis(),
        };
        let position = text(self.position);
        let txid = text(self.txid);
        let mut source = Map::new();
        source.insert(
            "version".into(),
            Value::from(concat!("tributary-", env!("CARGO_PKG_VERSION"))),
        );
        source.insert("connector".into(), Value::from(self.connector.clone()));
        source.insert("name".into(), Value::from(self.prefix.clone()));
        source.insert("ts_ms".into(), Value::from(ts_ms));
        source.insert(
            "snapshot".into(),
            Value::from(if code == "r" { "true" } else { "false" }),
        );
        if self.connector == "postgresql" {
            source.insert("db".into(), Value::Null);
            source.insert("sequence".into(), Value::Null);
            source.insert("schema".into(), self.db.clone().into());
            source.insert("table".into(), Value::from(self.name.clone()));
            source.insert(
                "txId".into(),
                txid.as_deref().and_then(|t| t.parse::<i64>().ok()).into(),
            );
            let lsn = position.as_deref().and_then(|p| {
                let (hi, lo) = p.split_once('/')?;
                Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
            });
            source.insert("lsn".into(), lsn.into());
            source.insert("xmin".into(), Value::Null);
        } else {
            source.insert("db".into(), self.db.clone().into());
            source.insert("sequence".into(), Value::Null);
            source.insert("table".into(), Value::from(self.name.clone()));
            source.insert("server_id".into(), Value::from(0));
            let (file, pos) = match position.as_deref().and_then(|p| p.rsplit_once(':')) {
                Some((f, p)) if p.bytes().all(|c| c.is_ascii_digit()) && !f.contains('-') => {
                    (Some(f.to_string()), p.parse::<i64>().ok())
                }
                _ => (None, None),
            };
            source.insert("gtid".into(), txid.clone().into());
            source.insert("file".into(), Value::from(file.unwrap_or_default()));
            source.insert("pos".into(), Value::from(pos.unwrap_or(0)));
            source.insert("row".into(), Value::from(0));
            source.insert("thread".into(), Value::Null);
            source.insert("query".into(), Value::Null);
        }
        let payload = json!({
            "before": before,
            "after": after,
            "source": Value::Object(source),
            "op": code,
            "ts_ms": chrono::Utc::now().timestamp_millis(),
        });
        let key = if self.keys.is_empty() || code == "t" {
            None
        } else {
            let schema = b.schema();
            let mut m = Map::new();
            for (i, enc) in &self.keys {
                m.insert(
                    schema.field(*i).name().clone(),
                    types::value(*enc, b.column(*i), schema.field(*i), row)?,
                );
            }
            Some(
                serde_json::to_vec(&self.wrap(self.key_schema.as_ref(), Value::Object(m)))
                    .map_err(json_err)?,
            )
        };
        let value = serde_json::to_vec(&self.wrap(self.value_schema.as_ref(), payload))
            .map_err(json_err)?;
        let mut out = vec![(key.clone(), Some(value))];
        if code == "d" && self.tombstones && key.is_some() {
            out.push((key, None));
        }
        Ok(out)
    }
}

/// One message: its key and value bytes (`None`: null).
type Msg = (Option<Vec<u8>>, Option<Vec<u8>>);

fn json_err(e: serde_json::Error) -> Error {
    Error::type_error("kafka", format!("encoding an envelope: {e}"))
}

fn source_schema(connector: &str) -> Value {
    let f = |name: &str, ty: &str, optional: bool| json!({"type": ty, "optional": optional, "field": name});
    let mut fields = vec![
        f("version", "string", false),
        f("connector", "string", false),
        f("name", "string", false),
        f("ts_ms", "int64", false),
        json!({"type": "string", "optional": true, "name": "io.debezium.data.Enum", "version": 1,
               "parameters": {"allowed": "true,first,first_in_data_collection,last_in_data_collection,last,false,incremental"},
               "default": "false", "field": "snapshot"}),
        f("db", "string", connector == "mysql"),
        f("sequence", "string", true),
    ];
    let (name, rest) = if connector == "postgresql" {
        (
            "io.debezium.connector.postgresql.Source",
            vec![
                f("schema", "string", false),
                f("table", "string", false),
                f("txId", "int64", true),
                f("lsn", "int64", true),
                f("xmin", "int64", true),
            ],
        )
    } else {
        (
            "io.debezium.connector.mysql.Source",
            vec![
                f("table", "string", true),
                f("server_id", "int64", false),
                f("gtid", "string", true),
                f("file", "string", false),
                f("pos", "int64", false),
                f("row", "int32", false),
                f("thread", "int64", true),
                f("query", "string", true),
            ],
        )
    };
    fields.extend(rest);
    types::struct_schema(name, false, fields, Some("source"))
}
