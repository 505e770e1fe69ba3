use crate::model::row_fingerprints;
use crate::{Checkpoint, CursorValue, Error, Result, Watermark};
use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use std::collections::HashMap;

/// Rows at one cursor value a keyed watermark lists before it keeps a keyset position.
pub(crate) const KEYED_SEEN_LIMIT: usize = 1000;
/// Rows at one cursor value a key-less watermark lists before the extraction stops.
pub(crate) const KEYLESS_SEEN_LIMIT: usize = 100_000;

/// Follows the cursor through an ordered result: drops rows already extracted at the
/// starting value and computes the [`Watermark`] after each batch.
#[derive(Debug)]
pub(crate) struct WatermarkTracker {
    column: String,
    /// The columns that identify a row at a new cursor value (empty: all columns).
    key: Vec<String>,
    start: Option<CursorValue>,
    /// The columns the saved watermark's fingerprints were taken over: the rows at
    /// `start` are recognised (and any new ones listed) by these, so that a checkpoint
    /// saved before the cursor had a key still reads right; a new value uses `key`.
    start_key: Vec<String>,
    /// Rows already extracted at `start`, counted: two identical rows of a key-less
    /// table have one fingerprint, and each one seen skips exactly one row.
    skip: HashMap<String, usize>,
    current: Option<Watermark>,
}

impl WatermarkTracker {
    /// Track `column` (rows identified by `key`, or all columns when empty), starting
    /// from `from`. A saved watermark that does not say which columns its fingerprints
    /// are of is read as fingerprints of `legacy` (all columns when empty).
    pub(crate) fn new(
        column: &str,
        key: &[String],
        from: Option<&Watermark>,
        legacy: &[String],
    ) -> Self {
        let start_key = from
            .and_then(|w| w.key.clone())
            .unwrap_or_else(|| legacy.to_vec());
        WatermarkTracker {
            column: column.to_string(),
            key: key.to_vec(),
            start: from.map(|w| w.cursor.clone()),
            start_key: start_key.clone(),
            skip: from.map(|w| counts(&w.seen)).unwrap_or_default(),
            current: from.cloned().map(|mut w| {
                w.key = Some(start_key);
                w
            }),
        }
    }

    fn column_of<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
        let schema = batch.schema();
        let idx = schema
            .fields()
            .iter()
            .position(|f| f.name() == name)
            .or_else(|| {
                schema
                    .fields()
                    .iter()
                    .position(|f| f.name().eq_ignore_ascii_case(name))
            })
            .ok_or_else(|| {
                Error::config(
                    "sql",
                    format!(
                        "cursor or key column {name:?} is not in the result (columns: {})",
                        schema
                            .fields()
                            .iter()
                            .map(|f| f.name().as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?;
        Ok(batch.column(idx))
    }

    /// The columns a fingerprint is taken over: `key`, or every column when it is empty.
    fn key_columns(batch: &RecordBatch, key: &[String]) -> Result<Vec<ArrayRef>> {
        if key.is_empty() {
            return Ok(batch.columns().to_vec());
        }
        key.iter()
            .map(|k| Self::column_of(batch, k).cloned())
            .collect()
    }

    /// Filter one batch (in cursor order) and return it with the checkpoint after it.
    pub fn process(&mut self, batch: RecordBatch) -> Result<(RecordBatch, Option<Checkpoint>)> {
        let n = batch.num_rows();
        let cursor = Self::column_of(&batch, &self.column)?.clone();
        let values = (0..n)
            .map(|i| cursor_value(&cursor, i, &self.column))
            .collect::<Result<Vec<_>>>()?;
        // A starting value read as text (from a warehouse) compares as the column's type.
        if let Some(first) = values.first() {
            if let Some(start) = self.start.as_mut() {
                *start = start.coerce_like(first);
            }
            if let Some(w) = self.current.as_mut() {
                w.cursor = w.cursor.coerce_like(first);
            }
        }
        let last = values.last().cloned();
        // Fingerprints are needed only for rows at the starting value (to drop the ones
        // already extracted, over the saved watermark's columns) and at the batch's last
        // value (to remember them, over the key).
        let at_start: Vec<bool> = values
            .iter()
            .map(|v| self.start.as_ref() == Some(v))
            .collect();
        let at_last: Vec<bool> = values
            .iter()
            .zip(&at_start)
            .map(|(v, s)| !s && last.as_ref() == Some(v))
            .collect();
        let mut prints: Vec<Option<String>> = vec![None; n];
        for (cols, wanted) in [(&self.start_key, &at_start), (&self.key, &at_last)] {
            if !wanted.iter().any(|b| *b) {
                continue;
            }
            let all = row_fingerprints(&Self::key_columns(&batch, cols)?)?;
            for ((slot, fp), want) in prints.iter_mut().zip(all).zip(wanted) {
                if *want {
                    *slot = Some(fingerprint_hex(fp));
                }
            }
        }
        let mut keep = Vec::with_capacity(n);
        for (v, fp) in values.iter().zip(&prints) {
            let already = self.start.as_ref() == Some(v)
                && fp
                    .as_ref()
                    .and_then(|f| self.skip.get_mut(f))
                    .is_some_and(|n| {
                        let hit = *n > 0;
                        *n = n.saturating_sub(1);
                        hit
                    });
            keep.push(!already);
            if already {
                continue;
            }
            match &mut self.current {
                // At a keyset position the query returns only rows after it: nothing to list.
                Some(w) if &w.cursor == v && w.after.is_some() => {}
                Some(w) if &w.cursor == v => {
                    if let Some(f) = fp {
                        w.seen.push(f.clone());
                    }
                }
                _ => {
                    let mut w = Watermark::with_seen(v.clone(), fp.iter().cloned().collect());
                    w.key = Some(self.key.clone());
                    self.current = Some(w);
                }
            }
        }
        self.bound_boundary(&batch, last.as_ref())?;
        // Rows at a value before the batch's last one were never fingerprinted; they
        // are not the boundary any more, so their (empty) seen lists do not matter.
        let filtered = if keep.iter().all(|k| *k) {
            batch
        } else {
            arrow_select::filter::filter_record_batch(&batch, &BooleanArray::from(keep))
                .map_err(|e| Error::type_error("sql", format!("filtering rows: {e}")))?
        };
        Ok((filtered, self.current.clone().map(Checkpoint::Watermark)))
    }

    /// Keep the checkpoint's size bounded when many rows share the last cursor value: with
    /// a key, past [`KEYED_SEEN_LIMIT`] rows the seen list becomes a keyset position (the
    /// last row's key, which is the greatest so far: rows come in `cursor, key` order);
    /// without one, past [`KEYLESS_SEEN_LIMIT`] rows the extraction stops with an error
    /// naming the fix, since no bounded form tells identical rows apart without losing one.
    fn bound_boundary(&mut self, batch: &RecordBatch, last: Option<&CursorValue>) -> Result<()> {
        let (Some(w), Some(last)) = (self.current.as_mut(), last) else {
            return Ok(());
        };
        if &w.cursor != last {
            return Ok(());
        }
        let key = w.key.clone().unwrap_or_else(|| self.key.clone());
        if key.is_empty() {
            if w.seen.len() > KEYLESS_SEEN_LIMIT {
                return Err(Error::config(
                    "sql",
                    format!(
                        "more than {KEYLESS_SEEN_LIMIT} rows share the value {} of cursor column {}, \
                         and the cursor has no key (none given, and no primary key of the table \
                         in the result), so the checkpoint would have to list every one of \
                         them: give the cursor columns that identify a row (Cursor::with_key) \
                         to keep a keyset position instead",
                        w.cursor, self.column
                    ),
                ));
            }
            return Ok(());
        }
        if w.after.is_none() && w.seen.len() <= KEYED_SEEN_LIMIT {
            return Ok(());
        }
        let row = batch.num_rows() - 1;
        let mut after = Vec::with_capacity(key.len());
        for k in &key {
            let col = Self::column_of(batch, k)?;
            match cursor_value(col, row, k) {
                Ok(v) => after.push(v),
                // A key of a type with no typed bound (or NULL): keep the exact list.
                Err(_) if w.after.is_none() => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        w.after = Some(after);
        w.seen.clear();
        Ok(())
    }
}

/// A float cursor value. NaN and ±Infinity have no place in `cursor >= ?` ordering that
/// every database agrees on, and JSON cannot hold them, so they are an error naming the row.
fn float_cursor(v: f64, i: usize, column: &str) -> Result<CursorValue> {
    if v.is_finite() {
        Ok(CursorValue::Float(v))
    } else {
        Err(Error::type_error(
            "sql",
            format!(
                "cursor column {column} is {v} at row {i}: a cursor must be a finite number \
                 (filter such rows out with a query, or use another cursor column)"
            ),
        ))
    }
}

/// How many times each fingerprint occurs.
fn counts(seen: &[String]) -> HashMap<String, usize> {
    let mut m = HashMap::with_capacity(seen.len());
    for f in seen {
        *m.entry(f.clone()).or_insert(0) += 1;
    }
    m
}

/// Read a cursor value from an Arrow column.
pub(crate) fn cursor_value(a: &ArrayRef, i: usize, column: &str) -> Result<CursorValue> {
    if a.is_null(i) {
        return Err(Error::type_error(
            "sql",
            format!("cursor column {column} is NULL at row {i}"),
        ));
    }
    Ok(match a.data_type() {
        DataType::Int8 => CursorValue::Int(a.as_primitive::<Int8Type>().value(i) as i64),
        DataType::Int16 => CursorValue::Int(a.as_primitive::<Int16Type>().value(i) as i64),
        DataType::Int32 => CursorValue::Int(a.as_primitive::<Int32Type>().value(i) as i64),
        DataType::Int64 => CursorValue::Int(a.as_primitive::<Int64Type>().value(i)),
        DataType::UInt8 => CursorValue::Int(a.as_primitive::<UInt8Type>().value(i) as i64),
        DataType::UInt16 => CursorValue::Int(a.as_primitive::<UInt16Type>().value(i) as i64),
        DataType::UInt32 => CursorValue::Int(a.as_primitive::<UInt32Type>().value(i) as i64),
        DataType::Float32 => {
            float_cursor(a.as_primitive::<Float32Type>().value(i) as f64, i, column)?
        }
        DataType::Float64 => float_cursor(a.as_primitive::<Float64Type>().value(i), i, column)?,
        DataType::Utf8 => CursorValue::Text(a.as_string::<i32>().value(i).to_string()),
        DataType::LargeUtf8 => CursorValue::Text(a.as_string::<i64>().value(i).to_string()),
        DataType::Utf8View => CursorValue::Text(a.as_string_view().value(i).to_string()),
        DataType::Decimal128(_, s) => {
            let v = a.as_primitive::<Decimal128Type>().value(i);
            CursorValue::Decimal(Decimal128Type::format_decimal(v, 38, *s))
        }
        DataType::Date32 => CursorValue::Date(
            a.as_primitive::<Date32Type>()
                .value_as_date(i)
                .ok_or_else(|| {
                    Error::type_error("sql", format!("cursor column {column}: date out of range"))
                })?,
        ),
        DataType::Timestamp(TimeUnit::Microsecond, tz) => {
            let v = a.as_primitive::<TimestampMicrosecondType>().value(i);
            let dt = chrono::DateTime::from_timestamp_micros(v).ok_or_else(|| {
                Error::type_error(
                    "sql",
                    format!("cursor column {column}: timestamp out of range"),
                )
            })?;
            match tz {
                Some(_) => CursorValue::TimestampTz(dt),
                None => CursorValue::Timestamp(dt.naive_utc()),
            }
        }
        other => {
            return Err(Error::type_error(
                "sql",
                format!(
                    "cursor column {column} has type {other}, which cannot be a cursor; use an integer, text, date or timestamp column"
                ),
            ));
        }
    })
}

/// A fingerprint as it is saved in a [`Watermark`]: 16 hex digits.
pub(crate) fn fingerprint_hex(fp: u64) -> String {
    format!("{fp:016x}")
}
