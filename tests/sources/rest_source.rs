//! The REST extractor against a real HTTP server on loopback, with injected faults.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tributary::sources::rest::*;
use tributary::stores::{ObjectSink, ObjectStateStore};
use tributary::*;

#[derive(Default)]
struct App {
    hits: Mutex<HashMap<String, u32>>,
    times: Mutex<Vec<Instant>>,
    failing: Mutex<bool>,
    tokens: Mutex<u32>,
}

type Shared = Arc<App>;

fn hit(app: &App, name: &str) -> u32 {
    let mut h = app.hits.lock().unwrap();
    let n = h.entry(name.to_string()).or_insert(0);
    *n += 1;
    *n
}

fn item(i: u64) -> Value {
    json!({"id": i, "name": format!("item {i}"), "meta": {"score": i as f64 / 2.0, "tags": ["a", "b"]},
           "updated_at": format!("2024-01-{:02}T00:00:00Z", 1 + i % 28)})
}

const N: u64 = 25;

async fn by_page(State(app): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    app.times.lock().unwrap().push(Instant::now());
    let page: u64 = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    if *app.failing.lock().unwrap() && page >= 2 {
        return (StatusCode::SERVICE_UNAVAILABLE, "down for maintenance").into_response();
    }
    let items: Vec<Value> = ((page - 1) * 10 + 1..=(page * 10).min(N))
        .map(item)
        .collect();
    Json(json!({"data": items})).into_response()
}

async fn by_offset(Query(q): Query<HashMap<String, String>>) -> Json<Value> {
    let offset: u64 = q["offset"].parse().unwrap();
    let limit: u64 = q["limit"].parse().unwrap();
    Json(json!({
        "results": (offset + 1..=(offset + limit).min(N)).map(item).collect::<Vec<_>>(),
        "meta": {"total": N},
    }))
}

async fn by_cursor(Query(q): Query<HashMap<String, String>>) -> Json<Value> {
    let start: u64 = q
        .get("cursor")
        .map_or(1, |c| c.trim_start_matches('c').parse().unwrap());
    let end = (start + 9).min(N);
    let next = if end < N {
        json!(format!("c{}", end + 1))
    } else {
        Value::Null
    };
    Json(json!({"data": (start..=end).map(item).collect::<Vec<_>>(), "meta": {"next": next}}))
}

async fn cursor_loop() -> Json<Value> {
    Json(json!({"data": [item(1)], "meta": {"next": "same"}}))
}

async fn by_next_url(Query(q): Query<HashMap<String, String>>) -> Json<Value> {
    let p: u64 = q.get("p").map_or(1, |p| p.parse().unwrap());
    let next = if p < 3 {
        json!(format!("/next?p={}", p + 1))
    } else {
        Value::Null
    };
    Json(
        json!({"items": (p * 10 - 9..=(p * 10).min(N)).map(item).collect::<Vec<_>>(), "next": next}),
    )
}

async fn by_link(Query(q): Query<HashMap<String, String>>) -> Response {
    let p: u64 = q.get("p").map_or(1, |p| p.parse().unwrap());
    let body = Json(json!(
        (p * 10 - 9..=(p * 10).min(N)).map(item).collect::<Vec<_>>()
    ));
    let mut h = HeaderMap::new();
    if p < 3 {
        h.insert(
            "link",
            format!(
                "</link?p={}>; rel=\"next\", </link?p=1>; rel=\"first\"",
                p + 1
            )
            .parse()
            .unwrap(),
        );
    }
    (h, body).into_response()
}

async fn flaky(State(app): State<Shared>) -> Response {
    if hit(&app, "flaky") <= 2 {
        (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response()
    } else {
        Json(json!([item(1)])).into_response()
    }
}

async fn throttled(State(app): State<Shared>) -> Response {
    app.times.lock().unwrap().push(Instant::now());
    if hit(&app, "throttled") == 1 {
        ([("retry-after", "1")], StatusCode::TOO_MANY_REQUESTS).into_response()
    } else {
        Json(json!([item(1)])).into_response()
    }
}

async fn slow() -> Json<Value> {
    tokio::time::sleep(Duration::from_secs(3)).await;
    Json(json!([]))
}

async fn malformed() -> Response {
    ([("content-type", "application/json")], "{\"data\": [1, 2").into_response()
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "no such collection: widgets").into_response()
}

async fn bearer(headers: HeaderMap) -> Response {
    match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        Some("Bearer s3cret") => Json(json!([item(1)])).into_response(),
        _ => StatusCode::UNAUTHORIZED.into_response(),
    }
}

async fn basic(headers: HeaderMap) -> Response {
    // user:pass
    match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        Some("Basic dXNlcjpwYXNz") => Json(json!([item(1)])).into_response(),
        _ => StatusCode::UNAUTHORIZED.into_response(),
    }
}

async fn api_key(headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    let ok = headers.get("x-api-key").is_some_and(|v| v == "k1")
        || q.get("api_key").is_some_and(|v| v == "k1");
    if ok {
        Json(json!([item(1)])).into_response()
    } else {
        StatusCode::FORBIDDEN.into_response()
    }
}

async fn token(State(app): State<Shared>, Form(f): Form<HashMap<String, String>>) -> Response {
    if f.get("grant_type").map(String::as_str) != Some("client_credentials")
        || f.get("client_secret").map(String::as_str) != Some("cs")
    {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let mut n = app.tokens.lock().unwrap();
    *n += 1;
    Json(json!({"access_token": format!("tok-{n}"), "expires_in": 3600})).into_response()
}

async fn oauth_data(headers: HeaderMap) -> Response {
    match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        // The first token is "revoked": the extractor must refresh once.
        Some("Bearer tok-1") | None => StatusCode::UNAUTHORIZED.into_response(),
        Some(t) if t.starts_with("Bearer tok-") => Json(json!([item(1)])).into_response(),
        _ => StatusCode::UNAUTHORIZED.into_response(),
    }
}

async fn since(Query(q): Query<HashMap<String, String>>) -> Json<Value> {
    let s = q.get("since").cloned().unwrap_or_default();
    let all: Vec<Value> = (1..=N)
        .map(item)
        .filter(|v| v["updated_at"].as_str().unwrap() > s.as_str())
        .collect();
    Json(json!({"data": all}))
}

async fn growing(Query(q): Query<HashMap<String, String>>) -> Json<Value> {
    let page: u64 = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    Json(match page {
        1 => json!([{"id": 1, "a": 1}, {"id": 2, "a": 2}]),
        2 => json!([{"id": 3, "a": 3.5, "extra": "new"}]),
        _ => json!([]),
    })
}

async fn search(headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if headers.get("x-tenant").is_none_or(|v| v != "acme") {
        return (StatusCode::BAD_REQUEST, "missing X-Tenant").into_response();
    }
    // One object, not an array: a single record.
    Json(json!({"query": body["q"], "total": 3, "took_ms": 4})).into_response()
}

async fn iss() -> Json<Value> {
    Json(
        json!({"message": "success", "request": {"latitude": 41.5, "longitude": -81.7, "passes": 2},
                "response": [{"duration": 613, "risetime": 1603477200}, {"duration": 640, "risetime": 1603483000}]}),
    )
}

async fn server() -> (String, Shared) {
    let app: Shared = Arc::new(App::default());
    let router = Router::new()
        .route("/items", get(by_page))
        .route("/offset", get(by_offset))
        .route("/cursor", get(by_cursor))
        .route("/cursor_loop", get(cursor_loop))
        .route("/next", get(by_next_url))
        .route("/link", get(by_link))
        .route("/flaky", get(flaky))
        .route("/throttled", get(throttled))
        .route("/slow", get(slow))
        .route("/malformed", get(malformed))
        .route("/missing", get(not_found))
        .route("/bearer", get(bearer))
        .route("/basic", get(basic))
        .route("/key", get(api_key))
        .route("/token", post(token))
        .route("/oauth", get(oauth_data))
        .route("/since", get(since))
        .route("/growing", get(growing))
        .route("/iss", get(iss))
        .route("/search", post(search))
        .with_state(app.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (format!("http://{addr}"), app)
}

async fn ids(src: RestSource) -> Result<Vec<i64>> {
    let batches = model::collect(RestExtractor::new(src)?.extract(None).await?).await?;
    let mut out = vec![];
    for b in batches {
        if let Some(c) = b.records.column_by_name("id") {
            out.extend(
                c.as_any()
                    .downcast_ref::<arrow_array::Int64Array>()
                    .unwrap()
                    .values()
                    .iter()
                    .copied(),
            );
        }
    }
    Ok(out)
}

fn fast() -> RetryPolicy {
    RetryPolicy::new(3)
        .with_base(Duration::from_millis(10))
        .with_max_wait(Duration::from_secs(2))
}

#[tokio::test]
async fn every_pagination_style_reads_every_item_once() {
    let (base, _) = server().await;
    let all: Vec<i64> = (1..=N as i64).collect();
    let styles = [
        RestSource::get(format!("{base}/items"))
            .records("/data")
            .paginate(Pagination::PageNumber {
                param: "page".into(),
                start: 1,
            }),
        RestSource::get(format!("{base}/offset"))
            .records("results")
            .paginate(Pagination::Offset {
                offset_param: "offset".into(),
                limit_param: "limit".into(),
                limit: 10,
            }),
        RestSource::get(format!("{base}/cursor"))
            .records("/data")
            .paginate(Pagination::Cursor {
                path: "/meta/next".into(),
                param: "cursor".into(),
            }),
        RestSource::get(format!("{base}/next"))
            .records("items")
            .paginate(Pagination::NextUrl {
                path: "next".into(),
            }),
        RestSource::get(format!("{base}/link")).paginate(Pagination::LinkHeader),
    ];
    for src in styles {
        let url = src.stream_name().to_string();
        assert_eq!(ids(src).await.unwrap(), all, "{url}");
    }
    let capped = RestSource::get(format!("{base}/items"))
        .records("/data")
        .paginate(Pagination::PageNumber {
            param: "page".into(),
            start: 1,
        })
        .max_pages(2);
    assert_eq!(
        ids(capped).await.unwrap().len(),
        20,
        "max_pages stops early"
    );
}

#[tokio::test]
async fn a_repeated_cursor_is_an_error_not_a_loop() {
    let (base, _) = server().await;
    let e = ids(RestSource::get(format!("{base}/cursor_loop"))
        .records("/data")
        .paginate(Pagination::Cursor {
            path: "/meta/next".into(),
            param: "cursor".into(),
        }))
    .await
    .unwrap_err();
    assert!(e.to_string().contains("same cursor twice"), "{e}");
}

#[tokio::test]
async fn faults_are_retried_or_reported() {
    let (base, app) = server().await;
    // Two 500s, then success.
    assert_eq!(
        ids(RestSource::get(format!("{base}/flaky")).with_retry(fast()))
            .await
            .unwrap(),
        vec![1]
    );
    assert_eq!(app.hits.lock().unwrap()["flaky"], 3);
    // 429 with Retry-After: 1 is honoured.
    assert_eq!(
        ids(RestSource::get(format!("{base}/throttled")).with_retry(fast()))
            .await
            .unwrap(),
        vec![1]
    );
    let t = app.times.lock().unwrap().clone();
    assert!(
        t[1] - t[0] >= Duration::from_millis(900),
        "waited {:?} for Retry-After: 1",
        t[1] - t[0]
    );
    // A response slower than the timeout is retried, then a retryable error.
    let e = ids(RestSource::get(format!("{base}/slow"))
        .timeout(Duration::from_millis(200))
        .with_retry(fast().with_max_retries(1)))
    .await
    .unwrap_err();
    // Retries spent: persistent, so the pipeline around it does not retry it again.
    assert!(
        matches!(e, Error::RetriesExhausted { attempts: 2, .. })
            && e.status() == tributary::ErrorStatus::Persistent
            && e.last_failure().is_retryable()
            && e.to_string().contains("after 2 attempts"),
        "{e:?}"
    );
    // Malformed JSON is an error, not an empty page.
    let e = ids(RestSource::get(format!("{base}/malformed")))
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::Type { .. }) && e.to_string().contains("malformed JSON"),
        "{e}"
    );
    // A 4xx is not retried and says what the server said.
    let e = ids(RestSource::get(format!("{base}/missing")).with_retry(fast()))
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::NotFound { .. })
            && e.to_string().contains("404")
            && e.to_string().contains("no such collection"),
        "{e}"
    );
    assert!(!e.is_retryable());
}

#[tokio::test]
async fn a_truncated_body_is_an_error() {
    // A raw server that promises 100 bytes and sends 10, then hangs up.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"data\": [").await;
        }
    });
    let e = ids(RestSource::get(format!("http://{addr}/x")).with_retry(fast().with_max_retries(1)))
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::RetriesExhausted { attempts: 2, .. })
            && matches!(e.last_failure(), Error::Connection { .. }),
        "a cut connection is retried, then given up on: {e:?}"
    );
}

#[tokio::test]
async fn every_kind_of_auth() {
    let (base, app) = server().await;
    assert_eq!(
        ids(RestSource::get(format!("{base}/bearer")).auth(Auth::Bearer(Secret::new("s3cret"))))
            .await
            .unwrap(),
        vec![1]
    );
    let e = ids(RestSource::get(format!("{base}/bearer")).auth(Auth::Bearer(Secret::new("wrong"))))
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::PermissionDenied { .. }) && !e.to_string().contains("wrong"),
        "{e}"
    );
    let basic = Auth::Basic {
        user: "user".into(),
        password: Secret::new("pass"),
    };
    assert_eq!(
        ids(RestSource::get(format!("{base}/basic")).auth(basic))
            .await
            .unwrap(),
        vec![1]
    );
    let header = Auth::ApiKeyHeader {
        name: "X-API-Key".into(),
        key: Secret::new("k1"),
    };
    assert_eq!(
        ids(RestSource::get(format!("{base}/key")).auth(header))
            .await
            .unwrap(),
        vec![1]
    );
    let query = Auth::ApiKeyQuery {
        name: "api_key".into(),
        key: Secret::new("k1"),
    };
    assert_eq!(
        ids(RestSource::get(format!("{base}/key")).auth(query))
            .await
            .unwrap(),
        vec![1]
    );
    let oauth = Auth::OAuth2ClientCredentials {
        token_url: format!("{base}/token"),
        client_id: "ci".into(),
        client_secret: Secret::new("cs"),
        scope: Some("read".into()),
    };
    assert_eq!(
        ids(RestSource::get(format!("{base}/oauth")).auth(oauth))
            .await
            .unwrap(),
        vec![1]
    );
    assert_eq!(
        *app.tokens.lock().unwrap(),
        2,
        "the rejected token was refreshed once"
    );
}

#[tokio::test]
async fn the_request_rate_is_limited() {
    let (base, app) = server().await;
    let src = RestSource::get(format!("{base}/items"))
        .records("/data")
        .paginate(Pagination::PageNumber {
            param: "page".into(),
            start: 1,
        })
        .rate_limit(10.0);
    assert_eq!(ids(src).await.unwrap().len(), 25);
    let t = app.times.lock().unwrap().clone();
    assert_eq!(t.len(), 4);
    for w in t.windows(2) {
        assert!(
            w[1] - w[0] >= Duration::from_millis(90),
            "requests {:?} apart at 10/s",
            w[1] - w[0]
        );
    }
}

#[tokio::test]
async fn flattening_arrays_new_columns_and_an_enforced_schema() {
    let (base, _) = server().await;
    let batches = model::collect(
        RestExtractor::new(
            RestSource::get(format!("{base}/items"))
                .records("/data")
                .max_pages(1),
        )
        .unwrap()
        .extract(None)
        .await
        .unwrap(),
    )
    .await
    .unwrap();
    let schema = batches[0].records.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        vec!["id", "name", "meta.score", "meta.tags", "updated_at"]
    );
    assert!(model::is_json_field(schema.field(3)), "arrays stay JSON");
    // A field that appears on page 2 is a new column from then on; a float widens ints.
    let batches = model::collect(
        RestExtractor::new(RestSource::get(format!("{base}/growing")).paginate(
            Pagination::PageNumber {
                param: "page".into(),
                start: 1,
            },
        ))
        .unwrap()
        .extract(None)
        .await
        .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(batches[0].records.schema().fields().len(), 2);
    let s2 = batches[1].records.schema();
    assert_eq!(
        s2.field_with_name("extra").unwrap().data_type(),
        &arrow_schema::DataType::Utf8
    );
    assert_eq!(
        s2.field_with_name("a").unwrap().data_type(),
        &arrow_schema::DataType::Float64
    );
    // An explicit schema is enforced with the offending field named.
    let strict = Arc::new(arrow_schema::Schema::new(vec![
        arrow_schema::Field::new("id", arrow_schema::DataType::Int64, false),
        arrow_schema::Field::new("a", arrow_schema::DataType::Int64, true),
    ]));
    let e = ids(RestSource::get(format!("{base}/growing"))
        .paginate(Pagination::PageNumber {
            param: "page".into(),
            start: 1,
        })
        .schema(strict))
    .await
    .unwrap_err();
    assert!(
        e.to_string().contains("field a") || e.to_string().contains("field extra"),
        "{e}"
    );
    // Explode an array into a child stream with its parent's key.
    let children = model::collect(
        RestExtractor::new(
            RestSource::get(format!("{base}/items"))
                .records("/data")
                .max_pages(1)
                .explode("meta.tags", "id"),
        )
        .unwrap()
        .extract(None)
        .await
        .unwrap(),
    )
    .await
    .unwrap();
    let rb = &children[0].records;
    let child_schema = rb.schema();
    let names: Vec<&str> = child_schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(names, vec!["_parent_id", "value"]);
    assert_eq!(rb.num_rows(), 20, "10 items with 2 tags each");
    let parents = rb
        .column(0)
        .as_any()
        .downcast_ref::<arrow_array::Int64Array>()
        .unwrap();
    assert_eq!(
        (parents.value(0), parents.value(1), parents.value(2)),
        (1, 1, 2)
    );
}

#[tokio::test]
async fn incremental_runs_pass_the_watermark_and_land_each_item_once() {
    let (base, _) = server().await;
    let sink = ObjectSink::memory();
    let p = Pipeline::builder("rest")
        .extractor(
            RestExtractor::new(
                RestSource::get(format!("{base}/since"))
                    .records("/data")
                    .incremental(
                        Incremental::new("since", "updated_at").with_initial("2024-01-20"),
                    ),
            )
            .unwrap(),
        )
        .sink(sink.clone())
        .state(ObjectStateStore::new(sink.clone(), "_state"))
        .format(format::JsonLines::new())
        .build()
        .unwrap();
    let first = p.run().await.into_result().unwrap();
    assert!(first.rows > 0);
    assert_eq!(
        first.checkpoint_to,
        Some(Checkpoint::Custom {
            value: json!({"since": "2024-01-26T00:00:00Z"})
        })
    );
    let second = p.run().await.into_result().unwrap();
    assert_eq!(second.rows, 0, "nothing newer than the watermark");
}

#[tokio::test]
async fn a_failed_run_lands_nothing_and_its_retry_lands_each_item_once() {
    let (base, app) = server().await;
    *app.failing.lock().unwrap() = true;
    let sink = ObjectSink::memory();
    let p = Pipeline::builder("rest")
        .extractor(
            RestExtractor::new(
                RestSource::get(format!("{base}/items"))
                    .records("/data")
                    .paginate(Pagination::PageNumber {
                        param: "page".into(),
                        start: 1,
                    })
                    .with_retry(fast().with_max_retries(1)),
            )
            .unwrap(),
        )
        .sink(sink.clone())
        .options(PipelineOptions::new().with_run_id("r1"))
        .build()
        .unwrap();
    let r = p.run().await;
    assert_eq!(r.outcome, Outcome::Failed);
    assert!(r.error_message.unwrap().contains("503"));
    assert!(
        sink.list("")
            .await
            .unwrap()
            .iter()
            .all(|k| !k.ends_with(".csv")),
        "nothing at a final key"
    );
    *app.failing.lock().unwrap() = false;
    let r = p.run().await.into_result().unwrap();
    let text = String::from_utf8(sink.read(&r.objects[0].key).await.unwrap().to_vec()).unwrap();
    let mut got: Vec<i64> = text
        .lines()
        .map(|l| l.split('|').next().unwrap().parse().unwrap())
        .collect();
    got.sort();
    assert_eq!(got, (1..=N as i64).collect::<Vec<_>>());
}

#[tokio::test]
async fn the_books_iss_job() {
    let (base, _) = server().await;
    let sink = ObjectSink::memory();
    let src = RestSource::get(format!("{base}/iss"))
        .records("/response")
        .parent_field("/request/latitude", "lat")
        .parent_field("/request/longitude", "lon");
    let r = Pipeline::builder("iss")
        .extractor(RestExtractor::new(src).unwrap())
        .sink(sink.clone())
        .build()
        .unwrap()
        .run()
        .await
        .into_result()
        .unwrap();
    assert_eq!(
        &sink.read(&r.objects[0].key).await.unwrap()[..],
        b"41.5|-81.7|613|1603477200\n41.5|-81.7|640|1603483000\n"
    );
}

#[tokio::test]
async fn post_with_a_json_body_and_headers_returning_one_object() {
    let (base, _) = server().await;
    let src = RestSource::post(format!("{base}/search"), json!({"q": "widgets"}))
        .header("X-Tenant", "acme");
    let batches = model::collect(
        RestExtractor::new(src)
            .unwrap()
            .extract(None)
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    let rb = &batches[0].records;
    assert_eq!(rb.num_rows(), 1, "a single object is one record");
    let q = rb
        .column_by_name("query")
        .unwrap()
        .as_any()
        .downcast_ref::<arrow_array::StringArray>()
        .unwrap();
    assert_eq!(q.value(0), "widgets");
    // Without the header the server says 400: not retried, status and body in the error.
    let e = ids(RestSource::post(
        format!("{base}/search"),
        json!({"q": "x"}),
    ))
    .await
    .unwrap_err();
    assert!(
        e.to_string().contains("400") && e.to_string().contains("missing X-Tenant"),
        "{e}"
    );
    assert!(!e.is_retryable());
}

#[cfg(feature = "test-util")]
#[tokio::test]
async fn the_extractor_suite_passes_on_pages_and_on_a_watermark() {
    let (base, _) = server().await;
    let incremental = RestSource::get(format!("{base}/since"))
        .records("/data")
        .incremental(Incremental::new("since", "updated_at").with_initial("2024-01-20"));
    let r = tributary::testing::extractor_suite(&RestExtractor::new(incremental).unwrap(), 8).await;
    assert!(r.rows > 0 && r.resumes > 0, "{r:?}");
    let pages = RestSource::get(format!("{base}/items"))
        .records("/data")
        .paginate(Pagination::PageNumber {
            param: "page".into(),
            start: 1,
        });
    let r = tributary::testing::extractor_suite(&RestExtractor::new(pages).unwrap(), 8).await;
    assert!(r.rows > 0, "{r:?}");
}

/// An API that says how many records there are (`meta.total`): the dry run and progress
/// carry it as the row estimate; without `total` there is none.
#[tokio::test]
async fn the_apis_total_is_the_row_estimate_in_the_plan_and_progress() {
    let (base, _) = server().await;
    let src = || {
        RestSource::get(format!("{base}/offset"))
            .records("results")
            .paginate(Pagination::Offset {
                offset_param: "offset".into(),
                limit_param: "limit".into(),
                limit: 10,
            })
    };
    let seen: Arc<Mutex<Vec<Option<u64>>>> = Default::default();
    let s2 = seen.clone();
    let p = Pipeline::builder("rest_total")
        .extractor(RestExtractor::new(src().total("meta.total")).unwrap())
        .sink(tributary::stores::ObjectSink::memory())
        .on_progress(move |p| s2.lock().unwrap().push(p.rows_estimated))
        .build()
        .unwrap();
    let plan = p.dry_run().await.unwrap().plan.expect("a plan");
    assert_eq!(plan.estimated_rows, Some(N));
    assert_eq!(plan.binds, ["offset=0", "limit=10"]);
    let report = p.run().await.into_result().unwrap();
    assert_eq!(report.rows, N);
    let estimates = seen.lock().unwrap().clone();
    assert!(
        !estimates.is_empty() && estimates.iter().all(|e| *e == Some(N)),
        "{estimates:?}"
    );
    // No `total`: no plan and no estimate.
    let p = Pipeline::builder("rest_no_total")
        .extractor(RestExtractor::new(src()).unwrap())
        .sink(tributary::stores::ObjectSink::memory())
        .build()
        .unwrap();
    assert!(p.dry_run().await.unwrap().plan.is_none());
    // A total field that is not a number is no estimate, not an error.
    let p = Pipeline::builder("rest_bad_total")
        .extractor(RestExtractor::new(src().total("results")).unwrap())
        .sink(tributary::stores::ObjectSink::memory())
        .build()
        .unwrap();
    assert_eq!(
        p.dry_run().await.unwrap().plan.unwrap().estimated_rows,
        None
    );
}
