use super::config::{Pagination, RestSource};
use super::types::{Inferred, flatten, select, to_batch};
use crate::sources::channel_stream;
use crate::{Batch, BatchStream, Checkpoint, Error, Extractor, Result};
use async_trait::async_trait;
use reqwest::header::HeaderMap;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Mutex;

/// A page on its way from the fetching loop to the converter.
enum Msg {
    Page(Value),
    End,
}

/// Reads a REST API page by page into Arrow batches.
///
/// Responses are checked (a non-2xx status is an error with the status and the start of
/// the body), retried on 5xx, 429 and network errors with exponential backoff and
/// jitter (honouring `Retry-After`), paced by an optional request rate, and parsed as
/// JSON (malformed JSON is an error, never a silently empty page). A run that fails does
/// not advance its checkpoint; an incremental run's checkpoint is saved only at its end,
/// because an API's pages are not ordered by the incremental field.
///
/// ```no_run
/// # async fn f() -> tributary::Result<()> {
/// use tributary::sources::rest::{Incremental, Pagination, RestExtractor, RestSource};
/// let issues = RestExtractor::new(
///     RestSource::get("https://api.example.com/issues")
///         .records("/items")
///         .paginate(Pagination::LinkHeader)
///         .incremental(Incremental::new("since", "updated_at")),
/// )?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RestExtractor {
    pub(super) source: RestSource,
    pub(super) client: reqwest::Client,
    pub(super) state: Arc<Shared>,
}

/// What the requests of one extractor share: the OAuth token, the rate limit's clock.
#[derive(Debug, Default)]
pub(super) struct Shared {
    pub(super) token: Mutex<Option<(String, Instant)>>,
    pub(super) next_request: Mutex<Option<Instant>>,
}

/// The `rel="next"` URL of a `Link` header.
fn link_next(headers: &HeaderMap) -> Option<String> {
    for v in headers.get_all(reqwest::header::LINK) {
        for part in v.to_str().ok()?.split(',') {
            let (url, params) = part.split_once(';')?;
            if params.split(';').any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            }) {
                return Some(
                    url.trim()
                        .trim_start_matches('<')
                        .trim_end_matches('>')
                        .to_string(),
                );
            }
        }
    }
    None
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Larger of two incremental values: as numbers when both are, else as text (ISO 8601
/// timestamps order correctly as text).
fn later(a: &str, b: &str) -> bool {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x > y,
        _ => a > b,
    }
}

impl RestExtractor {
    /// An extractor for `source`. Checks the URL; does no I/O.
    pub fn new(source: RestSource) -> Result<Self> {
        reqwest::Url::parse(&source.url).map_err(|e| {
            Error::config(
                "rest",
                format!(
                    "invalid URL {:?}: {e}",
                    crate::util::redact_url(&source.url)
                ),
            )
        })?;
        let client = reqwest::Client::builder()
            .timeout(source.timeout)
            .user_agent(concat!("tributary/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::config("rest", format!("cannot build the HTTP client: {e}")))?;
        Ok(RestExtractor {
            source,
            client,
            state: Arc::new(Shared::default()),
        })
    }

    /// Rows of one page.
    fn rows(&self, body: &Value) -> Result<Vec<Vec<(String, Value)>>> {
        let src = &self.source;
        let records: Vec<&Value> = match select(body, &src.records) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a.iter().collect(),
            Some(one) => vec![one],
        };
        let parents: Vec<(String, Value)> = src
            .parent_fields
            .iter()
            .map(|(sel, col)| {
                (
                    col.clone(),
                    select(body, sel).cloned().unwrap_or(Value::Null),
                )
            })
            .collect();
        let mut rows = Vec::with_capacity(records.len());
        for r in records {
            match &src.explode {
                None => {
                    let mut row = parents.clone();
                    row.extend(flatten(r, src.max_depth));
                    rows.push(row);
                }
                Some((field, parent_key)) => {
                    let key = select(r, parent_key).cloned().unwrap_or(Value::Null);
                    if let Some(Value::Array(items)) = select(r, field) {
                        for item in items {
                            let mut row = parents.clone();
                            row.push((
                                format!(
                                    "_parent_{}",
                                    parent_key.trim_start_matches('/').replace('/', ".")
                                ),
                                key.clone(),
                            ));
                            row.extend(flatten(item, src.max_depth));
                            rows.push(row);
                        }
                    }
                }
            }
        }
        Ok(rows)
    }
}

#[async_trait]
impl Extractor for RestExtractor {
    fn source(&self) -> &str {
        "rest"
    }

    fn stream(&self) -> &str {
        self.source.stream_name()
    }

    async fn check(&self) -> Result<()> {
        self.fetch(&self.source.url, &[]).await.map(|_| ())
    }

    async fn plan(&self, cx: &crate::ExtractContext) -> Result<Option<crate::Plan>> {
        super::plan::plan(self, cx.checkpoint.as_ref()).await
    }

    fn capabilities(&self) -> crate::ExtractorCapabilities {
        crate::ExtractorCapabilities::bounded().with_plans(self.source().total.is_some())
    }

    async fn open(&self, cx: crate::ExtractContext) -> Result<crate::Extraction> {
        Ok(crate::Extraction::new(self.batches(cx.checkpoint).await?))
    }
}

impl RestExtractor {
    /// The batches after `from` (what [`Extractor::open`] hands on).
    async fn batches(&self, from: Option<Checkpoint>) -> Result<BatchStream> {
        let since = self.since(from.as_ref())?;
        let me = self.clone();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Batch>>(2);
        tokio::spawn(async move {
            if let Err(e) = me.pages(since, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok(channel_stream(rx))
    }
}

impl RestExtractor {
    /// What this extractor requests.
    pub(super) fn source(&self) -> &RestSource {
        &self.source
    }

    /// The incremental lower bound to ask for, from the checkpoint or the initial value.
    pub(super) fn since(&self, from: Option<&Checkpoint>) -> Result<Option<String>> {
        Ok(match (from, &self.source.incremental) {
            (None, Some(inc)) => inc.initial.clone(),
            (None, None) => None,
            (Some(Checkpoint::Custom { value }), Some(_)) => {
                value.get("since").and_then(scalar_text)
            }
            (Some(other), _) => {
                return Err(Error::config(
                    "rest",
                    format!("cannot resume a REST extraction from checkpoint {other:?}"),
                ));
            }
        })
    }

    /// The query of one request: the page's own parameters, the incremental bound, and
    /// the page number or offset.
    pub(super) fn request_query(
        &self,
        page_query: &[(String, String)],
        since: Option<&str>,
        page_no: u64,
        offset: u64,
    ) -> Vec<(String, String)> {
        let src = &self.source;
        let mut query = page_query.to_vec();
        if let (Some(inc), Some(s)) = (&src.incremental, since) {
            query.push((inc.param.clone(), s.to_string()));
        }
        match &src.pagination {
            Pagination::PageNumber { param, start } => {
                query.push((param.clone(), (start + page_no).to_string()))
            }
            Pagination::Offset {
                offset_param,
                limit_param,
                limit,
            } => {
                query.push((offset_param.clone(), offset.to_string()));
                query.push((limit_param.clone(), limit.to_string()));
            }
            _ => {}
        }
        query
    }

    /// How many records a page holds (before any explode), for pagination.
    fn record_count(&self, body: &Value) -> u64 {
        match select(body, &self.source.records) {
            None | Some(Value::Null) => 0,
            Some(Value::Array(a)) => a.len() as u64,
            Some(_) => 1,
        }
    }

    /// Fetch pages in order and hand each body to a converter task, so the next request
    /// overlaps the conversion of the current page into Arrow.
    async fn pages(
        &self,
        since: Option<String>,
        tx: &tokio::sync::mpsc::Sender<Result<Batch>>,
    ) -> Result<()> {
        let (conv_tx, mut conv_rx) = tokio::sync::mpsc::channel::<Msg>(2);
        let converter = {
            let me = self.clone();
            let tx = tx.clone();
            let since = since.clone();
            tokio::spawn(async move {
                let src = &me.source;
                let mut inferred = Inferred::default();
                let mut max_inc = since;
                let result: Result<()> = async {
                    while let Some(msg) = conv_rx.recv().await {
                        let body = match msg {
                            Msg::Page(b) => b,
                            Msg::End => {
                                // The checkpoint goes with an empty batch after the last page,
                                // so it is saved only once every page's rows are committed.
                                if src.incremental.is_some()
                                    && let Some(m) = max_inc.take()
                                {
                                    let cp = Checkpoint::Custom {
                                        value: serde_json::json!({ "since": m }),
                                    };
                                    let _ = tx.send(Ok(Batch::position(cp))).await;
                                }
                                return Ok(());
                            }
                        };
                        let rows = me.rows(&body)?;
                        if let Some(inc) = &src.incremental {
                            for row in &rows {
                                if let Some(v) = row
                                    .iter()
                                    .find(|(k, _)| *k == inc.field)
                                    .and_then(|(_, v)| scalar_text(v))
                                    && max_inc.as_deref().is_none_or(|m| later(&v, m))
                                {
                                    max_inc = Some(v);
                                }
                            }
                        }
                        if !rows.is_empty() {
                            let (schema, strict) = match &src.schema {
                                Some(s) => (s.clone(), true),
                                None => (inferred.update(&rows), false),
                            };
                            let batch = to_batch(&schema, &rows, strict)?;
                            if tx.send(Ok(Batch::new(batch))).await.is_err() {
                                return Ok(());
                            }
                        }
                    }
                    // The fetching side stopped without `End` (it failed): no checkpoint.
                    Ok(())
                }
                .await;
                if let Err(e) = result {
                    let _ = tx.send(Err(e)).await;
                }
            })
        };
        let fetched = self.fetch_pages(since, &conv_tx).await;
        if fetched.is_ok() {
            let _ = conv_tx.send(Msg::End).await;
        }
        drop(conv_tx);
        let _ = converter.await;
        fetched
    }

    /// The fetching half of [`RestExtractor::pages`]: request pages in order, follow the
    /// pagination, pass each body on.
    async fn fetch_pages(
        &self,
        since: Option<String>,
        conv: &tokio::sync::mpsc::Sender<Msg>,
    ) -> Result<()> {
        let src = &self.source;
        let mut url = src.url.clone();
        let mut page_query: Vec<(String, String)> = Vec::new();
        let mut page_no = 0u64;
        let mut offset = 0u64;
        let mut seen: HashSet<String> = HashSet::new();
        loop {
            if src.max_pages.is_some_and(|m| page_no >= m) {
                break;
            }
            let query = self.request_query(&page_query, since.as_deref(), page_no, offset);
            let (body, headers) = self.fetch(&url, &query).await?;
            page_no += 1;
            let n = self.record_count(&body);
            // What the next request needs, read before the body goes to the converter.
            let next_cursor = match &src.pagination {
                Pagination::Cursor { path, .. } | Pagination::NextUrl { path } => {
                    select(&body, path).and_then(scalar_text)
                }
                Pagination::LinkHeader => link_next(&headers),
                _ => None,
            };
            if conv.send(Msg::Page(body)).await.is_err() {
                return Ok(()); // the converter stopped (consumer gone, or it failed)
            }
            let loop_error = |what: &str, value: &str| Error::Query {
                component: "rest".into(),
                message: format!(
                    "{url} returned the same {what} twice ({value}); stopping instead of looping"
                ),
                retryable: false,
                source: None,
            };
            match &src.pagination {
                Pagination::None => break,
                Pagination::PageNumber { .. } => {
                    if n == 0 {
                        break;
                    }
                }
                Pagination::Offset { limit, .. } => {
                    if n < *limit {
                        break;
                    }
                    offset += limit;
                }
                Pagination::Cursor { param, .. } => {
                    let Some(c) = next_cursor else { break };
                    if !seen.insert(c.clone()) {
                        return Err(loop_error("cursor", &c));
                    }
                    page_query = vec![(param.clone(), c)];
                }
                Pagination::NextUrl { .. } | Pagination::LinkHeader => {
                    let Some(next) = next_cursor else { break };
                    let next = reqwest::Url::parse(&url)
                        .and_then(|base| base.join(&next))
                        .map(|u| u.to_string())
                        .unwrap_or(next);
                    if !seen.insert(next.clone()) {
                        let what = if matches!(src.pagination, Pagination::LinkHeader) {
                            "next link"
                        } else {
                            "next URL"
                        };
                        return Err(loop_error(what, &next));
                    }
                    url = next;
                    page_query.clear();
                }
            }
        }
        Ok(())
    }
}
