//! The dry run's plan: the query an extraction would run and PostgreSQL's estimate of
//! its rows (`EXPLAIN`, which reads no row).

use super::extractor::{PostgresExtractor, pg_err, text_args};
use crate::sources::sql::resume_from;
use crate::{Checkpoint, Plan, Result};
use sqlx::Row;

pub(crate) async fn plan(me: &PostgresExtractor, from: Option<&Checkpoint>) -> Result<Plan> {
    let watermark = resume_from("postgres", &me.source, from)?;
    let mut conn = me.connection().await?;
    let prep = me.prepare(&mut conn, watermark.as_ref()).await?;
    let explain = format!("EXPLAIN (FORMAT JSON) {}", prep.sql);
    let row = me
        .deadlines()
        .read(
            sqlx::query_with(&explain, text_args(&prep.binds)?).fetch_one(&mut conn),
            "planning the query",
        )
        .await?
        .map_err(|e| pg_err(e, "planning the query"))?;
    // `json` comes as its text; read it unchecked rather than need sqlx's json feature.
    let text: String = row
        .try_get_unchecked(0)
        .map_err(|e| pg_err(e, "reading the plan"))?;
    let estimate = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v[0]["Plan"]["Plan Rows"].as_f64())
        .map(|r| r.max(0.0).round() as u64);
    Ok(Plan::new(
        prep.sql,
        prep.binds.iter().map(ToString::to_string).collect(),
        estimate,
    ))
}
