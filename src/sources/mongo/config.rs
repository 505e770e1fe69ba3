//! [`MongoSource`]: what to read from one collection (filter, fields, time window,
//! incremental field, lag), and the filter, sort and projection it makes.

use super::extractor::COMPONENT;
use crate::model::{CursorValue, Watermark};
use crate::{Error, Result};
use chrono::{DateTime, Utc};
use mongodb::bson::{Bson, Document, doc};
use std::time::Duration;

/// What to read from one collection.
///
/// Incremental runs read in the cursor field's order (give the field an index); other
/// runs in the server's natural order. Every mode flattens nested documents to `a.b` columns (depth 3 by default; deeper documents
/// and arrays are JSON text). The [module docs](crate::sources::mongo) give the type mapping.
#[derive(Clone, Debug)]
pub struct MongoSource {
    pub(super) database: String,
    pub(super) collection: String,
    pub(super) filter: Document,
    pub(super) fields: Option<Vec<String>>,
    pub(super) window: Option<(String, DateTime<Utc>, DateTime<Utc>)>,
    pub(super) cursor: Option<String>,
    pub(super) lag: Option<Duration>,
    pub(super) initial: Option<CursorValue>,
    pub(super) batch_rows: usize,
    pub(super) flatten_depth: usize,
    pub(super) name: Option<String>,
    pub(super) server_projection: bool,
}

impl MongoSource {
    /// Every document of `database.collection`.
    pub fn collection(database: impl Into<String>, collection: impl Into<String>) -> Self {
        MongoSource {
            database: database.into(),
            collection: collection.into(),
            filter: Document::new(),
            fields: None,
            window: None,
            cursor: None,
            lag: None,
            initial: None,
            batch_rows: 8192,
            flatten_depth: 3,
            name: None,
            server_projection: true,
        }
    }

    /// Only documents matching this query filter (combined with `$and` with the window
    /// and the watermark).
    pub fn filter(mut self, filter: Document) -> Self {
        self.filter = filter;
        self
    }

    /// Exactly these columns, in this order, by dotted path (`customer.address.city`);
    /// a document without a field gives NULL. Without it, columns are every field seen,
    /// in first-seen order, a field first seen later becoming a new column in later
    /// batches (and so a new part object).
    pub fn fields<I, S>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.fields = Some(fields.into_iter().map(Into::into).collect());
        self
    }

    /// Only documents whose date `field` is in `[start, end)`: the book's
    /// `{"$gte": start_date}, {"$lt": end_date}` window.
    pub fn time_window(
        mut self,
        field: impl Into<String>,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Self {
        self.window = Some((field.into(), start, end));
        self
    }

    /// Incremental by `field` (a date, number, string or ObjectId, such as `updated_at` or
    /// `_id`): each batch carries a [`Watermark`]; the next run reads `field >=` it and
    /// skips the documents already read at that value (by `_id`), so documents sharing
    /// the last value are neither lost nor duplicated. Documents are read sorted by the
    /// field: an index on it lets the server stream them without a blocking sort. Documents without the field, or
    /// with a value of another BSON type, are not matched (MongoDB compares within a type).
    pub fn incremental(mut self, field: impl Into<String>) -> Self {
        self.cursor = Some(field.into());
        self
    }

    /// With [`MongoSource::incremental`] on a date field: only read documents older than
    /// `now - lag`, leaving the newest for the next run, so a write that lands late with
    /// an earlier date (clock skew between application servers, a slow transaction) is
    /// still read.
    pub fn lag(mut self, lag: Duration) -> Self {
        self.lag = Some(lag);
        self
    }

    /// The lower bound of the first incremental run (default: everything).
    pub fn with_start_at(mut self, value: CursorValue) -> Self {
        self.initial = Some(value);
        self
    }

    /// Documents per batch (default 8,192).
    pub fn with_batch_rows(mut self, n: usize) -> Self {
        self.batch_rows = n.max(1);
        self
    }

    /// How many levels of nested documents become `a.b` columns (default 3, at least 1).
    pub fn flatten_depth(mut self, depth: usize) -> Self {
        self.flatten_depth = depth.max(1);
        self
    }

    /// With [`MongoSource::fields`], whether the server projects documents to those
    /// fields (default) or whole documents are fetched and the fields picked here. Turn it
    /// off only for a server whose projection is slower than sending whole documents.
    pub fn server_projection(mut self, yes: bool) -> Self {
        self.server_projection = yes;
        self
    }

    /// The stream name used in object keys (default: the collection).
    pub fn with_stream_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    pub(super) fn query(&self, from: Option<&Watermark>) -> Result<Document> {
        let mut and = Vec::new();
        if !self.filter.is_empty() {
            and.push(Bson::Document(self.filter.clone()));
        }
        if let Some((field, start, end)) = &self.window {
            if start >= end {
                return Err(Error::config(
                    COMPONENT,
                    format!("time window on {field}: start {start} is not before end {end}"),
                ));
            }
            and.push(Bson::Document(doc! { field.as_str(): {
                "$gte": bson_date(*start),
                "$lt": bson_date(*end),
            }}));
        }
        if let Some(field) = &self.cursor {
            let lower = from.map(|w| &w.cursor).or(self.initial.as_ref());
            if let Some(v) = lower {
                and.push(Bson::Document(
                    doc! { field.as_str(): { "$gte": to_bson(v, field)? } },
                ));
            }
            if let Some(lag) = self.lag {
                let lag = chrono::Duration::from_std(lag)
                    .map_err(|e| Error::config(COMPONENT, format!("lag of {field}: {e}")))?;
                and.push(Bson::Document(
                    doc! { field.as_str(): { "$lt": bson_date(Utc::now() - lag) } },
                ));
            }
        } else if self.lag.is_some() {
            return Err(Error::config(
                COMPONENT,
                "a lag needs an incremental source: call .incremental(field) first",
            ));
        }
        Ok(match and.len() {
            0 => Document::new(),
            1 => match and.pop() {
                Some(Bson::Document(d)) => d,
                _ => unreachable!("only documents are pushed"),
            },
            _ => doc! { "$and": and },
        })
    }

    /// Incremental runs read in cursor order (equal values in any order: the watermark
    /// keeps every `_id` read at its value), which an index on the field serves without a
    /// blocking sort; other runs read in the server's natural order, as the book does.
    pub(super) fn sort(&self) -> Option<Document> {
        self.cursor.as_ref().map(|f| doc! { f.as_str(): 1 })
    }

    /// Top-level fields to fetch (dotted paths by their root; some servers return
    /// projected dotted paths flat, which [`lookup`] also reads).
    pub(super) fn projection(&self) -> Option<Document> {
        let fields = self.fields.as_ref().filter(|_| self.server_projection)?;
        let mut p = Document::new();
        for f in fields {
            p.insert(f.split('.').next().unwrap_or(f), 1);
        }
        if let Some(c) = &self.cursor {
            p.insert(c.split('.').next().unwrap_or(c), 1);
        }
        p.insert("_id", 1);
        Some(p)
    }
}

/// A BSON date (whole milliseconds) for a bound: rounded up, so that `>=` and `<` against
/// stored millisecond dates mean what they mean for the exact instant.
fn bson_date(t: DateTime<Utc>) -> mongodb::bson::DateTime {
    let ms = t.timestamp_millis();
    let exact = t.timestamp_subsec_nanos().is_multiple_of(1_000_000);
    mongodb::bson::DateTime::from_millis(if exact { ms } else { ms + 1 })
}

/// A cursor value as the BSON to compare with.
fn to_bson(v: &CursorValue, field: &str) -> Result<Bson> {
    Ok(match v {
        CursorValue::Int(n) => Bson::Int64(*n),
        CursorValue::Float(f) => Bson::Double(*f),
        CursorValue::Decimal(d) => Bson::Decimal128(d.parse().map_err(|e| {
            Error::config(
                COMPONENT,
                format!("watermark of {field}: {d:?} is not a decimal: {e}"),
            )
        })?),
        CursorValue::Text(t) => Bson::String(t.clone()),
        CursorValue::ObjectId(hex) => Bson::ObjectId(
            mongodb::bson::oid::ObjectId::parse_str(hex)
                .map_err(|e| Error::config(COMPONENT, format!("watermark of {field}: {e}")))?,
        ),
        CursorValue::TimestampTz(t) => Bson::DateTime(bson_date(*t)),
        CursorValue::Timestamp(t) => Bson::DateTime(bson_date(t.and_utc())),
        CursorValue::Date(d) => Bson::DateTime(bson_date(
            d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc(),
        )),
    })
}
