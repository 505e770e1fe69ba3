//! Checkpoints: where an extractor is, so that the next run resumes there.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A position in a source, saved by a [`StateStore`](crate::stores::StateStore) only after
/// the data up to it has been committed by the sink.
///
/// Serialized as JSON with a `kind` tag, so saved states stay readable and stable:
///
/// ```
/// use tributary::{Checkpoint, CursorValue, Watermark};
/// let cp = Checkpoint::Watermark(Watermark::new(CursorValue::Int(42)));
/// let json = serde_json::to_string(&cp).unwrap();
/// assert_eq!(json, r#"{"kind":"watermark","cursor":{"int":42},"seen":[]}"#);
/// assert_eq!(serde_json::from_str::<Checkpoint>(&json).unwrap(), cp);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Checkpoint {
    /// An incremental SQL extraction's high-water mark.
    Watermark(Watermark),
    /// A MySQL/MariaDB binlog position, taken at a transaction boundary.
    Binlog {
        /// Binlog file name.
        file: String,
        /// Byte offset of the next event to read.
        pos: u64,
        /// Executed GTID set (MySQL) or GTID position (MariaDB), when GTIDs are on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gtid: Option<String>,
        /// The server's UUID or server id, to detect a resume against another server.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        server: Option<String>,
    },
    /// A PostgreSQL log sequence number (commit end LSN of the last transaction).
    Lsn {
        /// The LSN as a 64-bit integer.
        lsn: u64,
    },
    /// Kafka partition offsets: the next offset to read per `topic/partition`.
    Offsets {
        /// `"topic/partition"` → next offset.
        offsets: BTreeMap<String, i64>,
    },
    /// Any connector-specific position, as JSON (a page cursor, a resume token, ...).
    Custom {
        /// The connector's own representation.
        value: serde_json::Value,
    },
}

impl Checkpoint {
    /// The checkpoint as JSON for manifests and run history: the same as its saved form,
    /// except that a watermark's `seen` list (which can hold a fingerprint for every row
    /// at the last cursor value) is replaced by its length, `seen_rows`.
    ///
    /// ```
    /// use tributary::{Checkpoint, CursorValue, Watermark};
    /// let mut w = Watermark::new(CursorValue::Int(7));
    /// w.seen = vec!["00000000000000aa".into(); 3];
    /// let s = Checkpoint::Watermark(w).summary();
    /// assert_eq!(s.to_string(), r#"{"kind":"watermark","cursor":{"int":7},"seen_rows":3}"#);
    /// ```
    pub fn summary(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let (Checkpoint::Watermark(w), Some(o)) = (self, v.as_object_mut()) {
            o.remove("seen");
            o.insert("seen_rows".into(), w.seen.len().into());
        }
        v
    }
}

/// Serializes an optional checkpoint as its [`Checkpoint::summary`].
pub(crate) fn serialize_summary<S: serde::Serializer>(
    c: &Option<Checkpoint>,
    s: S,
) -> Result<S::Ok, S::Error> {
    c.as_ref().map(Checkpoint::summary).serialize(s)
}

/// The high-water mark of an incremental extraction by a cursor column.
///
/// `cursor` is the greatest cursor value extracted so far. The next run reads rows with
/// `cursor >= cursor` (a closed bound, so rows that share the last value or commit late
/// with an equal value are not lost) and drops the rows whose fingerprints are in `seen`
/// (the rows already extracted *at* that value, counted: two identical rows are two
/// entries, so nothing is duplicated and nothing dropped).
///
/// When more rows share one value than a checkpoint should list (a bulk load stamped with
/// one `now()`), a cursor with a key keeps a keyset position instead: `after` holds the
/// key of the last row extracted at `cursor`, `seen` is empty, and the next run reads
/// rows with `(cursor, key) > (cursor, after)`. The size stays constant whatever the
/// number of rows at one value. A row written later with that same cursor value and a
/// smaller key is then not read: where writers commit late, give the cursor a lag
/// (`Cursor::with_lag`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Watermark {
    /// The greatest cursor value extracted so far.
    pub cursor: CursorValue,
    /// Fingerprints of the rows already extracted whose cursor equals `cursor`.
    #[serde(default)]
    pub seen: Vec<String>,
    /// The key of the last row extracted at `cursor`, in key order, once the rows at
    /// that value outgrew `seen`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Vec<CursorValue>>,
    /// The columns whose fingerprints `seen` lists and whose values `after` holds: empty
    /// for all the row's columns (a cursor with no key). `None` in checkpoints saved before
    /// this was recorded; they are read with the cursor's own key, or all columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Vec<String>>,
}

impl Watermark {
    /// A watermark at `cursor` with no row seen at that value yet
    /// (the next run reads every row with `cursor >=` it).
    pub fn new(cursor: CursorValue) -> Self {
        Watermark {
            cursor,
            seen: Vec::new(),
            after: None,
            key: None,
        }
    }

    /// A watermark at `cursor` with the rows already extracted at that value given by
    /// their fingerprints (tributary's row fingerprints in hex, as a saved checkpoint
    /// holds them).
    pub fn with_seen(cursor: CursorValue, seen: Vec<String>) -> Self {
        Watermark {
            cursor,
            seen,
            after: None,
            key: None,
        }
    }
}

/// A typed cursor value, so that it binds to the source with the column's own type.
#[derive(Clone, Debug, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CursorValue {
    /// A whole number.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// Exact decimal, as text.
    Decimal(String),
    /// Text (also date-times stored as text, as in SQLite).
    Text(String),
    /// A date.
    Date(chrono::NaiveDate),
    /// A date-time without time zone.
    Timestamp(chrono::NaiveDateTime),
    /// A date-time with time zone, in UTC.
    TimestampTz(chrono::DateTime<chrono::Utc>),
    /// A MongoDB ObjectId, as 24 hex digits.
    ObjectId(String),
}

impl CursorValue {
    /// This value as the same kind as `like`, when this is text read from somewhere that
    /// only speaks text (a warehouse's `MAX(col)::text`): `"2020-07-12 12:00:00"` becomes
    /// a timestamp when the source column is one. Unchanged when it cannot be read so.
    pub fn coerce_like(&self, like: &CursorValue) -> CursorValue {
        let CursorValue::Text(t) = self else {
            return self.clone();
        };
        let t = t.trim();
        let naive = |t: &str| {
            chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f")
                .or_else(|_| chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f"))
                .ok()
        };
        let coerced = match like {
            CursorValue::Int(_) => t.parse().ok().map(CursorValue::Int),
            CursorValue::Float(_) => t.parse().ok().map(CursorValue::Float),
            CursorValue::Decimal(_) => Some(CursorValue::Decimal(t.to_string())),
            CursorValue::Date(_) => chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
                .ok()
                .map(CursorValue::Date),
            CursorValue::Timestamp(_) => naive(t).map(CursorValue::Timestamp),
            CursorValue::TimestampTz(_) => {
                chrono::DateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f%#z")
                    .or_else(|_| chrono::DateTime::parse_from_rfc3339(t))
                    .map(|d| d.with_timezone(&chrono::Utc))
                    .ok()
                    .or_else(|| naive(t).map(|n| n.and_utc()))
                    .map(CursorValue::TimestampTz)
            }
            CursorValue::Text(_) => None,
            CursorValue::ObjectId(_) => (t.len() == 24 && t.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| CursorValue::ObjectId(t.to_ascii_lowercase())),
        };
        coerced.unwrap_or_else(|| self.clone())
    }
}

impl std::fmt::Display for CursorValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CursorValue::Int(v) => write!(f, "{v}"),
            CursorValue::Float(v) => write!(f, "{v}"),
            CursorValue::Decimal(v) | CursorValue::Text(v) => f.write_str(v),
            CursorValue::Date(v) => write!(f, "{v}"),
            CursorValue::Timestamp(v) => write!(f, "{v}"),
            CursorValue::TimestampTz(v) => write!(f, "{}", v.to_rfc3339()),
            CursorValue::ObjectId(v) => write!(f, "ObjectId({v})"),
        }
    }
}
