//! The MongoDB extractor.

use super::types::{Columns, flatten, json_of, lookup};
use crate::model::{Batch, BatchStream, Checkpoint, CursorValue, Watermark};
use crate::sources::channel_stream;
use crate::{Error, Extractor, Result};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use mongodb::bson::{Bson, Document, doc};
use mongodb::error::ErrorKind;
use mongodb::options::ClientOptions;
use std::time::Duration;

const COMPONENT: &str = "mongodb";

/// What to read from one collection.
///
/// Incremental runs read in the cursor field's order (give the field an index); other
/// runs in the server's natural order. Every mode flattens nested documents to `a.b` columns (depth 3 by default; deeper documents
/// and arrays are JSON text). The [module docs](crate::sources::mongo) give the type mapping.
#[derive(Clone, Debug)]
pub struct MongoSource {
    database: String,
    collection: String,
    filter: Document,
    fields: Option<Vec<String>>,
    window: Option<(String, DateTime<Utc>, DateTime<Utc>)>,
    cursor: Option<String>,
    lag: Option<Duration>,
    initial: Option<CursorValue>,
    batch_rows: usize,
    flatten_depth: usize,
    name: Option<String>,
    server_projection: bool,
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

    fn query(&self, from: Option<&Watermark>) -> Result<Document> {
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
    fn sort(&self) -> Option<Document> {
        self.cursor.as_ref().map(|f| doc! { f.as_str(): 1 })
    }

    /// Top-level fields to fetch (dotted paths by their root; some servers return
    /// projected dotted paths flat, which [`lookup`] also reads).
    fn projection(&self) -> Option<Document> {
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

/// A document's cursor value, or `None` when it has none of a usable type.
fn cursor_of(v: &Bson) -> Option<CursorValue> {
    Some(match v {
        Bson::Int32(n) => CursorValue::Int(i64::from(*n)),
        Bson::Int64(n) => CursorValue::Int(*n),
        Bson::Double(f) => CursorValue::Float(*f),
        Bson::Decimal128(d) => CursorValue::Decimal(d.to_string()),
        Bson::String(s) => CursorValue::Text(s.clone()),
        Bson::ObjectId(o) => CursorValue::ObjectId(o.to_hex()),
        Bson::DateTime(d) => CursorValue::TimestampTz(super::types::chrono_of(*d)?),
        _ => return None,
    })
}

/// The identity of a document in a watermark's `seen` list.
fn id_of(doc: &Document) -> String {
    match doc.get("_id") {
        Some(Bson::ObjectId(o)) => o.to_hex(),
        Some(other) => json_of(other),
        None => String::new(),
    }
}

pub(crate) fn mongo_error(e: mongodb::error::Error, what: &str) -> Error {
    let message = format!("{what}: {e}");
    let retryable_label = e.contains_label(mongodb::error::RETRYABLE_ERROR)
        || e.contains_label("TransientTransactionError");
    match e.kind.as_ref() {
        ErrorKind::Authentication { .. } => Error::PermissionDenied {
            component: COMPONENT.into(),
            message,
            source: Some(Box::new(e)),
        },
        ErrorKind::Command(c) if matches!(c.code, 13 | 18 | 8000) => Error::PermissionDenied {
            component: COMPONENT.into(),
            message,
            source: Some(Box::new(e)),
        },
        ErrorKind::Command(c) if c.code == 26 => Error::NotFound {
            component: COMPONENT.into(),
            message,
            source: Some(Box::new(e)),
        },
        ErrorKind::InvalidArgument { .. } | ErrorKind::InvalidTlsConfig { .. } => {
            Error::config(COMPONENT, message)
        }
        ErrorKind::ServerSelection { .. }
        | ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::DnsResolve { .. } => Error::Connection {
            component: COMPONENT.into(),
            message,
            source: Some(Box::new(e)),
        },
        ErrorKind::Command(c) => {
            // Interrupted, not primary, shutdown in progress, network timeouts, cursor
            // killed: transient server states a retry gets past.
            let transient = matches!(
                c.code,
                6 | 7 | 89 | 91 | 189 | 262 | 9001 | 10107 | 11600 | 11602 | 13435 | 13436
            );
            Error::Query {
                component: COMPONENT.into(),
                message,
                retryable: transient || retryable_label,
                source: Some(Box::new(e)),
            }
        }
        _ => Error::Query {
            component: COMPONENT.into(),
            message,
            retryable: retryable_label,
            source: Some(Box::new(e)),
        },
    }
}

/// Extracts one collection with the official `mongodb` driver.
pub struct MongoExtractor {
    client: mongodb::Client,
    source: MongoSource,
    target: String,
}

impl std::fmt::Debug for MongoExtractor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoExtractor")
            .field("target", &self.target)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl MongoExtractor {
    /// A client for `uri` (`mongodb://…` or `mongodb+srv://…`; parsing a `+srv` URI
    /// resolves DNS). Servers are contacted on first use ([`Extractor::check`] or a run);
    /// server selection gives up after 10 s unless the URI sets
    /// `serverSelectionTimeoutMS`.
    pub async fn connect(uri: &str, source: MongoSource) -> Result<Self> {
        let mut options = ClientOptions::parse(uri)
            .await
            .map_err(|e| mongo_error(e, &format!("parsing {}", crate::util::redact_url(uri))))?;
        if options.server_selection_timeout.is_none() {
            options.server_selection_timeout = Some(Duration::from_secs(10));
        }
        if options.app_name.is_none() {
            options.app_name = Some("tributary".into());
        }
        let client = mongodb::Client::with_options(options)
            .map_err(|e| mongo_error(e, "creating a client"))?;
        Ok(Self::from_client(client, source).with_target(crate::util::redact_url(uri)))
    }

    /// An extractor on a client you configured yourself.
    pub fn from_client(client: mongodb::Client, source: MongoSource) -> Self {
        MongoExtractor {
            client,
            target: String::new(),
            source,
        }
    }

    fn with_target(mut self, target: String) -> Self {
        self.target = target;
        self
    }

    fn namespace(&self) -> String {
        format!("{}.{}", self.source.database, self.source.collection)
    }

    async fn check_collection(&self) -> Result<()> {
        let db = self.client.database(&self.source.database);
        let names = db
            .list_collection_names()
            .filter(doc! { "name": &self.source.collection })
            // A user allowed to read the collection but not to list the database's
            // collections still sees it.
            .authorized_collections(true)
            .await
            .map_err(|e| {
                mongo_error(
                    e,
                    &format!("listing collections of {}", self.source.database),
                )
            })?;
        if names.iter().any(|n| n == &self.source.collection) {
            Ok(())
        } else {
            Err(Error::NotFound {
                component: COMPONENT.into(),
                message: format!("collection {} does not exist", self.namespace()),
                source: None,
            })
        }
    }
}

/// Tracks the watermark across the documents of one extraction.
struct Tracker {
    field: String,
    last: Option<CursorValue>,
    seen: Vec<String>,
    skip: std::collections::HashSet<String>,
    skip_at: Option<CursorValue>,
}

impl Tracker {
    /// Whether to keep the document (false: read at this value by an earlier run).
    fn keep(&mut self, doc: &Document) -> bool {
        let Some(v) = lookup(doc, &self.field).and_then(cursor_of) else {
            return true;
        };
        let id = id_of(doc);
        if self.skip_at.as_ref() == Some(&v) && self.skip.contains(&id) {
            return false;
        }
        if self.last.as_ref() != Some(&v) {
            self.last = Some(v);
            self.seen.clear();
        }
        self.seen.push(id);
        true
    }

    fn checkpoint(&self) -> Option<Checkpoint> {
        // Keep the ids an earlier run saw at the same value: they are still "seen".
        let mut seen = self.seen.clone();
        if self.last.is_some() && self.last == self.skip_at {
            seen.extend(self.skip.iter().cloned());
            seen.sort();
            seen.dedup();
        }
        self.last
            .as_ref()
            .map(|v| Checkpoint::Watermark(Watermark::with_seen(v.clone(), seen)))
    }
}

#[async_trait]
impl Extractor for MongoExtractor {
    fn source(&self) -> &str {
        "mongodb"
    }

    fn stream(&self) -> &str {
        self.source
            .name
            .as_deref()
            .unwrap_or(&self.source.collection)
    }

    async fn check(&self) -> Result<()> {
        self.client
            .database("admin")
            .run_command(doc! { "ping": 1 })
            .await
            .map_err(|e| mongo_error(e, &format!("connecting to {}", self.target)))?;
        self.check_collection().await
    }

    async fn open(&self, cx: crate::ExtractContext) -> Result<crate::Extraction> {
        Ok(crate::Extraction::new(self.batches(cx.checkpoint).await?))
    }
}

impl MongoExtractor {
    /// The batches after `from` (what [`Extractor::open`] hands on).
    async fn batches(&self, from: Option<Checkpoint>) -> Result<BatchStream> {
        let from = match from {
            None => None,
            Some(Checkpoint::Watermark(w)) if self.source.cursor.is_some() => Some(w),
            Some(other) => {
                return Err(Error::config(
                    COMPONENT,
                    format!(
                        "cannot resume {} from {other:?}: only an incremental source (with a \
                         cursor field) resumes, from a watermark",
                        self.namespace()
                    ),
                ));
            }
        };
        self.check_collection().await?;
        let query = self.source.query(from.as_ref())?;
        let coll = self
            .client
            .database(&self.source.database)
            .collection::<Document>(&self.source.collection);
        let batch_size = u32::try_from(self.source.batch_rows.min(100_000)).unwrap_or(8192);
        let mut find = coll.find(query).batch_size(batch_size);
        if let Some(sort) = self.source.sort() {
            find = find.sort(sort);
        }
        if let Some(p) = self.source.projection() {
            find = find.projection(p);
        }
        let what = format!("reading {}", self.namespace());
        let mut cursor = find.await.map_err(|e| mongo_error(e, &what))?;
        let source = self.source.clone();
        let mut tracker = source.cursor.clone().map(|field| Tracker {
            field,
            last: None,
            seen: Vec::new(),
            skip: from
                .as_ref()
                .map(|w| w.seen.iter().cloned().collect())
                .unwrap_or_default(),
            skip_at: from.as_ref().map(|w| w.cursor.clone()),
        });
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Batch>>(2);
        tokio::spawn(async move {
            let mut columns = match &source.fields {
                Some(f) => Columns::fixed(f),
                None => Columns::default(),
            };
            let mut row = Vec::new();
            let emit = |columns: &mut Columns, tracker: &Option<Tracker>| -> Result<Batch> {
                let rb = columns.take_batch()?;
                let b = Batch::new(rb);
                Ok(match tracker.as_ref().and_then(Tracker::checkpoint) {
                    Some(cp) => b.with_checkpoint(cp),
                    None => b,
                })
            };
            while let Some(next) = cursor.next().await {
                let doc = match next {
                    Ok(d) => d,
                    Err(e) => {
                        let _ = tx.send(Err(mongo_error(e, &what))).await;
                        return;
                    }
                };
                if let Some(t) = tracker.as_mut()
                    && !t.keep(&doc)
                {
                    continue;
                }
                match &source.fields {
                    Some(fields) => {
                        for f in fields {
                            row.push((f.clone(), lookup(&doc, f).cloned().unwrap_or(Bson::Null)));
                        }
                    }
                    None => flatten(&doc, source.flatten_depth, &mut row),
                }
                columns.push(&mut row);
                if columns.rows() >= source.batch_rows {
                    let b = emit(&mut columns, &tracker);
                    let failed = b.is_err();
                    if tx.send(b).await.is_err() || failed {
                        return;
                    }
                }
            }
            if columns.rows() > 0 {
                let _ = tx.send(emit(&mut columns, &tracker)).await;
            }
        });
        Ok(channel_stream(rx))
    }
}
