//! The dry run's plan: the query an extraction would run and the server's estimate of
//! its rows (`EXPLAIN`, which reads no row).

use super::extractor::{MySqlExtractor, text_args};
use crate::sources::sql::resume_from;
use crate::{Checkpoint, Plan, Result};
use sqlx::Row;

pub(crate) async fn plan(me: &MySqlExtractor, from: Option<&Checkpoint>) -> Result<Plan> {
    let watermark = resume_from("mysql", &me.source, from)?;
    let mut conn = me.connection().await?;
    let prep = me.prepare(&mut conn, watermark.as_ref()).await?;
    let explain = format!("EXPLAIN {}", prep.sql);
    let rows = me
        .deadlines()
        .read(
            sqlx::query_with(&explain, text_args(&prep.binds)?).fetch_all(&mut conn),
            "planning the query",
        )
        .await?
        .map_err(|e| crate::sources::sql::sqlx_error("mysql", e, "planning the query"))?;
    // One row per table read; a plain table or query over one table has one.
    // MySQL types the column as a number, MariaDB as text.
    let estimate = rows.first().and_then(|r| {
        r.try_get::<Option<u64>, _>("rows")
            .ok()
            .flatten()
            .or_else(|| {
                r.try_get::<Option<i64>, _>("rows")
                    .ok()
                    .flatten()
                    .map(|n| n.max(0) as u64)
            })
            .or_else(|| {
                r.try_get_unchecked::<Option<String>, _>("rows")
                    .ok()
                    .flatten()
                    .and_then(|t| t.trim().parse().ok())
            })
    });
    Ok(Plan::new(
        prep.sql,
        prep.binds.iter().map(ToString::to_string).collect(),
        estimate,
    ))
}
