use super::config::{Auth, Method, Pagination, RestSource};
use super::types::{Inferred, flatten, select, to_batch};
use crate::sources::channel_stream;
use crate::{Batch, BatchStream, Checkpoint, Error, Extractor, Result};
use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
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
///         .incremental(Incremental { param: "since".into(), field: "updated_at".into(), initial: None }),
/// )?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RestExtractor {
    source: RestSource,
    client: reqwest::Client,
    state: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    token: Mutex<Option<(String, Instant)>>,
    next_request: Mutex<Option<Instant>>,
}

fn http_err(message: String, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Connection {
        component: "rest".into(),
        message,
        source: Some(Box::new(e)),
    }
}

/// A jitter source without a dependency: xorshift seeded from the clock.
fn jitter(max: Duration) -> Duration {
    let mut x = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    let nanos = max.as_nanos().max(1) as u64;
    Duration::from_nanos(x % nanos)
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .to_string();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(&v).ok()?;
    (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .ok()
}

fn excerpt(body: &str) -> String {
    let t: String = body.chars().take(200).collect();
    if body.chars().count() > 200 {
        format!("{t}...")
    } else {
        t
    }
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

    async fn pace(&self) {
        let Some(rps) = self.source.rps.filter(|r| *r > 0.0) else {
            return;
        };
        let gap = Duration::from_secs_f64(1.0 / rps);
        let wait = {
            let mut next = self.state.next_request.lock().await;
            let now = Instant::now();
            let at = next.map_or(now, |n| n.max(now));
            *next = Some(at + gap);
            at.saturating_duration_since(now)
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    async fn token(&self, refresh: bool) -> Result<Option<String>> {
        let Auth::OAuth2ClientCredentials {
            token_url,
            client_id,
            client_secret,
            scope,
        } = &self.source.auth
        else {
            return Ok(None);
        };
        let mut cached = self.state.token.lock().await;
        if !refresh
            && let Some((t, until)) = cached.as_ref()
            && *until > Instant::now()
        {
            return Ok(Some(t.clone()));
        }
        let mut form = vec![
            ("grant_type", "client_credentials".to_string()),
            ("client_id", client_id.clone()),
            ("client_secret", client_secret.expose().to_string()),
        ];
        if let Some(s) = scope {
            form.push(("scope", s.clone()));
        }
        let resp = self
            .client
            .post(token_url)
            .form(&form)
            .send()
            .await
            .map_err(|e| http_err(format!("requesting a token from {token_url}"), e))?;
        let status = resp.status();
        let body = resp
            .text()
            .await
            .map_err(|e| http_err(format!("reading the token from {token_url}"), e))?;
        if !status.is_success() {
            return Err(Error::PermissionDenied {
                component: "rest".into(),
                message: format!(
                    "token endpoint {token_url} answered {status}: {}",
                    excerpt(&body)
                ),
                source: None,
            });
        }
        let v: Value = serde_json::from_str(&body).map_err(|e| {
            Error::type_error(
                "rest",
                format!("token response from {token_url} is not JSON: {e}"),
            )
        })?;
        let token = v
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                Error::type_error(
                    "rest",
                    format!("token response from {token_url} has no access_token"),
                )
            })?;
        let ttl = v.get("expires_in").and_then(Value::as_u64).unwrap_or(3600);
        *cached = Some((
            token.to_string(),
            Instant::now() + Duration::from_secs(ttl.saturating_sub(30).max(1)),
        ));
        Ok(Some(token.to_string()))
    }

    /// GET (or POST) one URL with the source's auth, headers, retries and pacing; the
    /// parsed JSON body.
    pub async fn fetch_json(&self, url: &str, query: &[(String, String)]) -> Result<Value> {
        self.fetch(url, query).await.map(|(v, _)| v)
    }

    /// One page: the parsed body and the headers, after retries.
    async fn fetch(&self, url: &str, query: &[(String, String)]) -> Result<(Value, HeaderMap)> {
        let policy = &self.source.retry;
        let mut refreshed = false;
        let mut attempt = 0u32;
        loop {
            self.pace().await;
            let mut req = match self.source.method {
                Method::Get => self.client.get(url),
                Method::Post => self
                    .client
                    .post(url)
                    .json(self.source.body.as_ref().unwrap_or(&Value::Null)),
            };
            req = req.query(&self.source.query).query(query);
            for (k, v) in &self.source.headers {
                let name = HeaderName::from_bytes(k.as_bytes())
                    .map_err(|e| Error::config("rest", format!("header {k:?}: {e}")))?;
                let value = HeaderValue::from_str(v)
                    .map_err(|e| Error::config("rest", format!("header {k:?}: {e}")))?;
                req = req.header(name, value);
            }
            req = match &self.source.auth {
                Auth::None => req,
                Auth::Bearer(t) => req.bearer_auth(t.expose()),
                Auth::Basic { user, password } => req.basic_auth(user, Some(password.expose())),
                Auth::ApiKeyHeader { name, key } => req.header(name.as_str(), key.expose()),
                Auth::ApiKeyQuery { name, key } => req.query(&[(name.as_str(), key.expose())]),
                Auth::OAuth2ClientCredentials { .. } => {
                    req.bearer_auth(self.token(false).await?.unwrap_or_default())
                }
            };
            let outcome: std::result::Result<(), (Error, Option<Duration>)> = match req.send().await
            {
                Err(e) => Err((http_err(format!("GET {url}"), e), None)),
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    match resp.text().await {
                        Err(e) => Err((http_err(format!("reading the body of {url}"), e), None)),
                        Ok(body) if status.is_success() => {
                            let v: Value = serde_json::from_str(&body).map_err(|e| {
                                Error::type_error(
                                    "rest",
                                    format!(
                                        "{url} returned malformed JSON ({e}): {}",
                                        excerpt(&body)
                                    ),
                                )
                            })?;
                            return Ok((v, headers));
                        }
                        Ok(body) => {
                            let message = format!("{url} answered {status}: {}", excerpt(&body));
                            match status.as_u16() {
                                401 if !refreshed
                                    && matches!(
                                        self.source.auth,
                                        Auth::OAuth2ClientCredentials { .. }
                                    ) =>
                                {
                                    refreshed = true;
                                    self.token(true).await?;
                                    continue;
                                }
                                429 | 500..=599 | 408 => Err((
                                    Error::Query {
                                        component: "rest".into(),
                                        message,
                                        retryable: true,
                                        source: None,
                                    },
                                    retry_after(&headers),
                                )),
                                401 | 403 => {
                                    return Err(Error::PermissionDenied {
                                        component: "rest".into(),
                                        message,
                                        source: None,
                                    });
                                }
                                404 => {
                                    return Err(Error::NotFound {
                                        component: "rest".into(),
                                        message,
                                        source: None,
                                    });
                                }
                                _ => {
                                    return Err(Error::Query {
                                        component: "rest".into(),
                                        message,
                                        retryable: false,
                                        source: None,
                                    });
                                }
                            }
                        }
                    }
                }
            };
            let (err, after) = outcome.expect_err("successes returned above");
            if attempt >= policy.max_retries {
                return Err(match err {
                    Error::Query {
                        component,
                        message,
                        source,
                        ..
                    } => Error::Query {
                        component,
                        message: format!("{message} (after {} attempts)", attempt + 1),
                        retryable: true,
                        source,
                    },
                    Error::Connection {
                        component,
                        message,
                        source,
                    } => Error::Connection {
                        component,
                        message: format!("{message} (after {} attempts)", attempt + 1),
                        source,
                    },
                    other => other,
                });
            }
            let backoff = policy
                .base
                .saturating_mul(2u32.saturating_pow(attempt))
                .min(policy.max_wait);
            let wait = after
                .map(|a| a.min(policy.max_wait))
                .unwrap_or_else(|| jitter(backoff));
            tracing::warn!(url, attempt = attempt + 1, error = %err, "request failed; retrying in {wait:?}");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
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

    async fn extract(&self, from: Option<Checkpoint>) -> Result<BatchStream> {
        let since = match (&from, &self.source.incremental) {
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
        };
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
            let mut query = page_query.clone();
            if let (Some(inc), Some(s)) = (&src.incremental, &since) {
                query.push((inc.param.clone(), s.clone()));
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
