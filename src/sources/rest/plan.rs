//! The dry run's plan: the first request an extraction would send and, when the API says
//! so in a field of its first response ([`RestSource::total`](super::RestSource::total)),
//! how many records it will return.

use super::extractor::RestExtractor;
use super::types::select;
use crate::{Checkpoint, Plan, Result};
use serde_json::Value;

pub(crate) async fn plan(me: &RestExtractor, from: Option<&Checkpoint>) -> Result<Option<Plan>> {
    let src = me.source();
    let Some(selector) = &src.total else {
        return Ok(None);
    };
    let since = me.since(from)?;
    let query = me.request_query(&[], since.as_deref(), 0, 0);
    let (body, _) = me.fetch(&src.url, &query).await?;
    let total = match select(&body, selector) {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    let binds = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let method = match src.method {
        super::Method::Get => "GET",
        super::Method::Post => "POST",
    };
    Ok(Some(Plan::new(
        format!("{method} {}", src.url),
        binds,
        total,
    )))
}
