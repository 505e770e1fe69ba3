//! Decoded events → change batches, one table at a time: the columns come from the
//! events' Connect schemas or, without schemas, from their values, and stay what the
//! table had before unless the values need more.
use super::envelope::{Event, SOURCE_FIELDS};
use super::types::{self, Kind};
use crate::model::{ChangeOptions, ChangeSchema, key_field};
use crate::{Batch, Error, Result};
use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

struct Known {
    columns: Vec<(String, Kind)>,
    keys: Vec<String>,
    schema: ChangeSchema,
}

/// The events waiting to be landed, by table, and what each table looked like last.
pub(crate) struct Tables {
    options: ChangeOptions,
    source_columns: bool,
    known: HashMap<String, Known>,
    pending: Vec<(String, Vec<Event>)>,
    rows: usize,
}

/// The kind of a column restored from a saved schema (events without schemas).
fn kind_of(f: &Field) -> Kind {
    match f.data_type() {
        DataType::Boolean => Kind::Bool,
        DataType::Int64 => Kind::I64,
        DataType::Float64 => Kind::F64,
        _ => Kind::Str,
    }
}

impl Tables {
    pub(crate) fn new(options: ChangeOptions, source_columns: bool) -> Self {
        Tables {
            options,
            source_columns,
            known: HashMap::new(),
            pending: Vec::new(),
            rows: 0,
        }
    }

    /// Seed a table's columns from the schema saved with the checkpoint, so that events
    /// without schemas keep the types they landed with.
    pub(crate) fn seed(&mut self, table: &str, schema: &Schema) {
        let skip = |n: &str| n.starts_with('_');
        let columns: Vec<(String, Kind)> = schema
            .fields()
            .iter()
            .filter(|f| !skip(f.name()))
            .map(|f| (f.name().clone(), kind_of(f)))
            .collect();
        let keys = crate::model::key_columns(schema);
        if let Ok(k) = self.known_for(columns, keys) {
            self.known.insert(table.to_string(), k);
        }
    }

    /// Rows waiting.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Add an event; returns the batches that had to be cut first (its table's schema
    /// changed).
    pub(crate) fn push(&mut self, e: Event) -> Result<Vec<Batch>> {
        let mut out = Vec::new();
        let i = match self.pending.iter().position(|(t, _)| *t == e.table) {
            Some(i) => {
                let last = self.pending[i].1.last();
                if last.is_some_and(|l| l.columns != e.columns) {
                    let (t, events) = self.pending.remove(i);
                    self.rows -= events.len();
                    out.extend(self.build(&t, events)?);
                    self.pending.push((e.table.clone(), Vec::new()));
                    self.pending.len() - 1
                } else {
                    i
                }
            }
            None => {
                self.pending.push((e.table.clone(), Vec::new()));
                self.pending.len() - 1
            }
        };
        self.pending[i].1.push(e);
        self.rows += 1;
        Ok(out)
    }

    /// Every waiting event as batches, in table order of first arrival.
    pub(crate) fn flush(&mut self) -> Result<Vec<Batch>> {
        let mut out = Vec::new();
        for (t, events) in std::mem::take(&mut self.pending) {
            out.extend(self.build(&t, events)?);
        }
        self.rows = 0;
        Ok(out)
    }

    /// The key columns and known columns of `table` (for a tombstone read as a delete).
    pub(crate) fn keys_of(&self, table: &str) -> Option<Vec<String>> {
        self.known.get(table).map(|k| k.keys.clone())
    }

    fn known_for(&self, columns: Vec<(String, Kind)>, keys: Vec<String>) -> Result<Known> {
        let mut fields: Vec<Field> = columns
            .iter()
            .map(|(n, k)| {
                let f = k.field(n);
                match keys.iter().position(|x| x == n) {
                    Some(o) => key_field(f, o as u32 + 1),
                    None => f,
                }
            })
            .collect();
        if self.source_columns {
            fields.extend(
                SOURCE_FIELDS
                    .iter()
                    .map(|s| Field::new(format!("_source_{s}"), DataType::Utf8, true)),
            );
        }
        let schema = ChangeSchema::new(Arc::new(Schema::new(fields)), self.options)?;
        Ok(Known {
            columns,
            keys,
            schema,
        })
    }

    fn build(&mut self, table: &str, events: Vec<Event>) -> Result<Vec<Batch>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let keys = if events[0].keys.is_empty() {
            self.known
                .get(table)
                .map(|k| k.keys.clone())
                .unwrap_or_default()
        } else {
            events[0].keys.clone()
        };
        let columns = match &events[0].columns {
            Some(c) => c.clone(),
            None => {
                let mut cols: Vec<(String, Option<Kind>)> = self
                    .known
                    .get(table)
                    .map(|k| {
                        k.columns
                            .iter()
                            .map(|(n, k)| (n.clone(), Some(k.clone())))
                            .collect()
                    })
                    .unwrap_or_default();
                let images = events
                    .iter()
                    .flat_map(|e| std::iter::once(&e.row).chain(e.before.as_ref()));
                for m in images {
                    for (name, v) in m {
                        let i = match cols.iter().position(|(n, _)| n == name) {
                            Some(i) => i,
                            None => {
                                cols.push((name.clone(), None));
                                cols.len() - 1
                            }
                        };
                        if let Some(k) = Kind::infer(v).filter(|k| !types::is_unavailable(k, v)) {
                            cols[i].1 = Some(match &cols[i].1 {
                                Some(old) => Kind::unify(old, &k),
                                None => k,
                            });
                        }
                    }
                }
                cols.into_iter()
                    .map(|(n, k)| (n, k.unwrap_or(Kind::Str)))
                    .collect()
            }
        };
        let same = self
            .known
            .get(table)
            .is_some_and(|k| k.columns == columns && k.keys == keys);
        if !same {
            let k = self.known_for(columns, keys)?;
            self.known.insert(table.to_string(), k);
        }
        let known = &self.known[table];
        let n = events.len();
        let mut unsent: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut arrays = Vec::with_capacity(known.columns.len());
        let mut before_arrays = Vec::new();
        for (ci, (name, kind)) in known.columns.iter().enumerate() {
            let mut cells: Vec<Option<&Value>> = Vec::with_capacity(n);
            for (ri, e) in events.iter().enumerate() {
                match e.row.get(name) {
                    Some(v) if types::is_unavailable(kind, v) => {
                        unsent[ri].push(ci);
                        cells.push(None);
                    }
                    Some(Value::Null) | None => cells.push(None),
                    Some(v) => cells.push(Some(v)),
                }
            }
            arrays.push(types::build(kind, &cells, name)?);
            if self.options.before_image {
                let cells: Vec<Option<&Value>> = events
                    .iter()
                    .map(|e| {
                        e.before
                            .as_ref()
                            .filter(|_| e.op == crate::model::Op::Update)
                            .and_then(|b: &Map<String, Value>| b.get(name))
                            .filter(|v| !v.is_null() && !types::is_unavailable(kind, v))
                    })
                    .collect();
                before_arrays.push(types::build(kind, &cells, name)?);
            }
        }
        if self.source_columns {
            for i in 0..SOURCE_FIELDS.len() {
                let a = arrow_array::StringArray::from_iter(
                    events.iter().map(|e| e.source[i].as_deref()),
                );
                arrays.push(Arc::new(a));
                if self.options.before_image {
                    before_arrays.push(arrow_array::new_null_array(&DataType::Utf8, n));
                }
            }
        }
        let row_schema = known.schema.row_schema().clone();
        let rows = RecordBatch::try_new(row_schema.clone(), arrays)
            .map_err(|e| Error::type_error("kafka", format!("{table}: {e}")))?;
        let before = if self.options.before_image {
            Some(
                RecordBatch::try_new(row_schema, before_arrays)
                    .map_err(|e| Error::type_error("kafka", format!("{table}: {e}")))?,
            )
        } else {
            None
        };
        if !self.options.unsent
            && let Some((ri, ci)) = unsent
                .iter()
                .enumerate()
                .find_map(|(r, u)| u.first().map(|c| (r, *c)))
        {
            return Err(Error::type_error(
                "kafka",
                format!(
                    "{table}: column {} of the change at {} is Debezium's {:?} (the source did not send \
                         the value); turn on KafkaConfig::with_change_options(ChangeOptions::new().with_unsent()) \
                         so that it lands as not sent rather than as data",
                    known.columns[ci].0,
                    events[ri].meta.position.as_deref().unwrap_or("?"),
                    crate::kafka::debezium::UNAVAILABLE_VALUE
                ),
            ));
        }
        let ops: Vec<_> = events.iter().map(|e| e.op).collect();
        let meta: Vec<_> = events.iter().map(|e| e.meta.clone()).collect();
        let b = known
            .schema
            .build(&ops, &meta, &rows, before.as_ref(), &unsent)?;
        Ok(vec![Batch::new(b).with_table(table.to_string())])
    }
}
