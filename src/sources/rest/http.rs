//! The request half of the REST source: pacing, auth tokens, retries with backoff, and
//! responses checked and parsed.

use super::config::{Auth, Method};
use super::extractor::RestExtractor;
use crate::{Error, Result};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use std::time::{Duration, Instant};

fn http_err(message: String, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Connection {
        component: "rest".into(),
        message,
        source: Some(Box::new(e)),
    }
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

impl RestExtractor {
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
    pub(super) async fn fetch(
        &self,
        url: &str,
        query: &[(String, String)],
    ) -> Result<(Value, HeaderMap)> {
        let mut attempts = self.source.retry.attempts(format!("GET {url}"));
        let mut refreshed = false;
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
            attempts.failed(err, after, &[]).await?;
        }
    }
}
