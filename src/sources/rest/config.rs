//! What to call and how: [`RestSource`] and its parts.

use crate::{RetryPolicy, Secret};
use std::time::Duration;

/// HTTP method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// GET.
    Get,
    /// POST with a JSON body.
    Post,
}

/// How to get from one page to the next.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Pagination {
    /// One request.
    None,
    /// `?page=N` from `start`, until a page has no records.
    PageNumber {
        /// The query parameter.
        param: String,
        /// The first page's number.
        start: u64,
    },
    /// `?offset=N&limit=L`, until a page has fewer than `limit` records.
    Offset {
        /// The offset parameter.
        offset_param: String,
        /// The limit parameter.
        limit_param: String,
        /// Records per page.
        limit: u64,
    },
    /// A cursor in the body (JSON pointer or dotted path) sent back as `param`, until it
    /// is missing, null or empty. The same cursor twice is an error, not a loop.
    Cursor {
        /// Where the next cursor is in the body.
        path: String,
        /// The query parameter that carries it.
        param: String,
    },
    /// The next page's URL in the body, until missing.
    NextUrl {
        /// Where the URL is in the body.
        path: String,
    },
    /// The `Link: <...>; rel="next"` header, until absent.
    LinkHeader,
}

/// Credentials.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Auth {
    /// None.
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
    /// HTTP basic.
    Basic {
        /// User name.
        user: String,
        /// Password.
        password: Secret,
    },
    /// An API key in a header.
    ApiKeyHeader {
        /// Header name.
        name: String,
        /// The key.
        key: Secret,
    },
    /// An API key in the query string.
    ApiKeyQuery {
        /// Parameter name.
        name: String,
        /// The key.
        key: Secret,
    },
    /// OAuth2 client credentials: a token fetched from `token_url`, cached until it
    /// expires, refreshed once on a 401.
    OAuth2ClientCredentials {
        /// The token endpoint.
        token_url: String,
        /// Client id.
        client_id: String,
        /// Client secret.
        client_secret: Secret,
        /// Scope, if any.
        scope: Option<String>,
    },
}

/// Incremental extraction: the largest `field` seen is the checkpoint, and the next run
/// sends it as query parameter `param` (e.g. `?since=2024-01-01T00:00:00Z`).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Incremental {
    /// The query parameter.
    pub param: String,
    /// The record field (after flattening, e.g. `updated_at` or `meta.updated`) whose
    /// largest value is saved. Values compare as numbers when both are, else as text.
    pub field: String,
    /// The value to send on the first run, if any.
    pub initial: Option<String>,
}

impl Incremental {
    /// Send the largest `field` seen as query parameter `param`; nothing on the first run.
    pub fn new(param: impl Into<String>, field: impl Into<String>) -> Self {
        Incremental {
            param: param.into(),
            field: field.into(),
            initial: None,
        }
    }

    /// The value to send on the first run.
    pub fn with_initial(mut self, value: impl Into<String>) -> Self {
        self.initial = Some(value.into());
        self
    }
}

/// A REST endpoint and everything needed to read it.
///
/// ```
/// use tributary::sources::rest::{Pagination, RestSource};
/// let src = RestSource::get("https://api.example.com/v1/items")
///     .records("/data")
///     .paginate(Pagination::Cursor { path: "/meta/next".into(), param: "cursor".into() })
///     .with_stream_name("items");
/// assert_eq!(src.stream_name(), "items");
/// ```
#[derive(Clone, Debug)]
pub struct RestSource {
    pub(crate) method: Method,
    pub(crate) url: String,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Option<serde_json::Value>,
    pub(crate) records: String,
    pub(crate) parent_fields: Vec<(String, String)>,
    pub(crate) max_depth: usize,
    pub(crate) explode: Option<(String, String)>,
    pub(crate) pagination: Pagination,
    pub(crate) max_pages: Option<u64>,
    pub(crate) auth: Auth,
    pub(crate) retry: RetryPolicy,
    pub(crate) timeout: Duration,
    pub(crate) rps: Option<f64>,
    pub(crate) incremental: Option<Incremental>,
    pub(crate) schema: Option<arrow_schema::SchemaRef>,
    pub(crate) name: Option<String>,
    pub(crate) total: Option<String>,
}

impl RestSource {
    fn new(method: Method, url: impl Into<String>) -> Self {
        RestSource {
            method,
            url: url.into(),
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
            records: String::new(),
            parent_fields: Vec::new(),
            max_depth: 3,
            explode: None,
            pagination: Pagination::None,
            max_pages: None,
            auth: Auth::None,
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(30),
            rps: None,
            incremental: None,
            schema: None,
            name: None,
            total: None,
        }
    }

    /// `GET url`.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new(Method::Get, url)
    }

    /// `POST url` with a JSON `body`.
    pub fn post(url: impl Into<String>, body: serde_json::Value) -> Self {
        let mut s = Self::new(Method::Post, url);
        s.body = Some(body);
        s
    }

    /// Add a query parameter.
    pub fn query(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.query.push((name.into(), value.into()));
        self
    }

    /// Add a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Where the records are: a JSON pointer (`/data/items`) or dotted path
    /// (`data.items`). Empty (the default): the whole body, an array of records or one
    /// record.
    pub fn records(mut self, selector: impl Into<String>) -> Self {
        self.records = selector.into();
        self
    }

    /// Copy a field of the response envelope into every record as column `as_column`
    /// (e.g. the book's `lat`/`lon` from `request.latitude`).
    pub fn parent_field(
        mut self,
        selector: impl Into<String>,
        as_column: impl Into<String>,
    ) -> Self {
        self.parent_fields.push((selector.into(), as_column.into()));
        self
    }

    /// Flatten nested objects into `a.b.c` columns up to this depth (default 3); deeper
    /// objects, and arrays, are kept as JSON text.
    pub fn max_depth(mut self, depth: usize) -> Self {
        self.max_depth = depth;
        self
    }

    /// Emit the elements of array `field` of each record instead of the records (a child
    /// stream), each with the parent's `parent_key` field as a column.
    pub fn explode(mut self, field: impl Into<String>, parent_key: impl Into<String>) -> Self {
        self.explode = Some((field.into(), parent_key.into()));
        self
    }

    /// How to page.
    pub fn paginate(mut self, p: Pagination) -> Self {
        self.pagination = p;
        self
    }

    /// Stop after this many pages.
    pub fn max_pages(mut self, n: u64) -> Self {
        self.max_pages = Some(n);
        self
    }

    /// Credentials.
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// Retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Timeout of one request, body included (default 30 s).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// At most this many requests per second.
    pub fn rate_limit(mut self, requests_per_second: f64) -> Self {
        self.rps = Some(requests_per_second);
        self
    }

    /// Extract incrementally (see [`Incremental`]).
    pub fn incremental(mut self, inc: Incremental) -> Self {
        self.incremental = Some(inc);
        self
    }

    /// Enforce this schema: a record with a field not in it, or a value of another type,
    /// is an error naming the field. Without it the schema is inferred, and a field that
    /// first appears on a later page becomes a new column from then on (the pipeline then
    /// starts a new object).
    pub fn schema(mut self, schema: arrow_schema::SchemaRef) -> Self {
        self.schema = Some(schema);
        self
    }

    /// The field of the first response that holds the number of records across every
    /// page (`total`, `meta.total_count`; dotted like [`RestSource::records`]): the
    /// extraction's row estimate in [`Progress`](crate::Progress) and
    /// [`Pipeline::dry_run`](crate::Pipeline::dry_run), which then request the first
    /// page once. A number or a numeric string; anything else is no estimate.
    pub fn total(mut self, selector: impl Into<String>) -> Self {
        self.total = Some(selector.into());
        self
    }

    /// The stream name in object keys (default: the URL's last path segment).
    pub fn with_stream_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The stream name in object keys.
    pub fn stream_name(&self) -> &str {
        if let Some(n) = &self.name {
            return n;
        }
        let path = self.url.split(['?', '#']).next().unwrap_or("");
        path.trim_end_matches('/')
            .rsplit('/')
            .next()
            .filter(|s| !s.is_empty() && !s.contains(':'))
            .unwrap_or("api")
    }
}
