//! A deterministic change log of three tables for the streaming-core tests: tables `a`,
//! `b`, `c` interleaved, `K` changes per event, a heartbeat every 17th position, and a
//! DDL on `b` (a new column `note`) at position `DDL_AT`. Every change carries its
//! position (`_position`) and the table's name in `v`, so what lands can be checked.
#![allow(dead_code)]

use std::sync::Arc;
use tributary::arrow_array::{Int64Array, RecordBatch, StringArray};
use tributary::arrow_schema::{DataType, Field, Schema, SchemaRef};
use tributary::model::{ChangeMeta, ChangeOptions, ChangeSchema, Op, key_field};
use tributary::sources::ChangeEvent;

pub const TABLES: [&str; 3] = ["a", "b", "c"];
pub const DDL_AT: u64 = 100;

pub fn row_schema(with_note: bool) -> SchemaRef {
    let mut f = vec![
        key_field(Field::new("id", DataType::Int64, false), 1),
        Field::new("v", DataType::Utf8, true),
    ];
    if with_note {
        f.push(Field::new("note", DataType::Utf8, true));
    }
    Arc::new(Schema::new(f))
}

/// Table name and whether it has the DDL's column at position `pos`.
pub fn table_at(pos: u64) -> Option<(&'static str, bool)> {
    if pos.is_multiple_of(17) {
        return None;
    }
    let t = TABLES[(pos % 3) as usize];
    Some((t, t == "b" && pos >= DDL_AT))
}

/// The change log: positions 1..=n, `k` changes per event.
pub fn log(n: u64, k: i64) -> Vec<ChangeEvent> {
    (1..=n)
        .map(|pos| match table_at(pos) {
            None => ChangeEvent::heartbeat(pos),
            Some((t, note)) => {
                let row = row_schema(note);
                let cs =
                    ChangeSchema::new(row.clone(), ChangeOptions::new().with_position()).unwrap();
                let ids: Vec<i64> = (0..k).map(|j| pos as i64 * 1000 + j).collect();
                let mut cols: Vec<Arc<dyn tributary::arrow_array::Array>> = vec![
                    Arc::new(Int64Array::from(ids.clone())),
                    Arc::new(StringArray::from(vec![t; k as usize])),
                ];
                if note {
                    cols.push(Arc::new(StringArray::from(vec!["n"; k as usize])));
                }
                let rows = RecordBatch::try_new(row, cols).unwrap();
                let ops: Vec<Op> = ids
                    .iter()
                    .map(|i| if i % 2 == 0 { Op::Insert } else { Op::Update })
                    .collect();
                let meta: Vec<ChangeMeta> = (0..k)
                    .map(|_| ChangeMeta::new().with_position(pos.to_string()))
                    .collect();
                ChangeEvent::rows(pos, t, cs.build(&ops, &meta, &rows, None, &[]).unwrap())
            }
        })
        .collect()
}

/// Every change the log holds up to position `upto`: (table, id, position).
pub fn expected(n: u64, k: i64, upto: u64) -> Vec<(String, i64, u64)> {
    (1..=n.min(upto))
        .filter_map(|pos| table_at(pos).map(|(t, _)| (t, pos)))
        .flat_map(|(t, pos)| (0..k).map(move |j| (t.to_string(), pos as i64 * 1000 + j, pos)))
        .collect()
}

/// One landed CSV line of the log: `op|position|id|v[|note]`, parsed.
pub struct Landed {
    pub op: String,
    pub position: u64,
    pub id: i64,
    pub table: String,
    pub note: Option<String>,
}

pub fn parse_line(line: &str) -> Landed {
    let f: Vec<&str> = line.split('|').collect();
    assert!(f.len() == 4 || f.len() == 5, "bad line {line:?}");
    Landed {
        op: f[0].to_string(),
        position: f[1].parse().unwrap(),
        id: f[2].parse().unwrap(),
        table: f[3].to_string(),
        note: f.get(4).map(|s| s.to_string()),
    }
}
