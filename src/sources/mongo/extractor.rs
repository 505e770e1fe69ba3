//! The MongoDB extractor.

use super::config::MongoSource;
use super::types::{Columns, flatten, json_of, lookup};
use crate::model::{Batch, BatchStream, Checkpoint, CursorValue, Watermark};
use crate::sources::channel_stream;
use crate::{Error, Extractor, Result};
use async_trait::async_trait;
use futures::StreamExt;
use mongodb::bson::{Bson, Document, doc};
use mongodb::error::ErrorKind;
use mongodb::options::ClientOptions;
use std::time::Duration;

pub(super) const COMPONENT: &str = "mongodb";

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
