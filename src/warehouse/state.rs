//! [`SqlStateStore`]: checkpoints in the warehouse's `tributary_state` table.

use super::{Warehouse, bind_err, text_required};
use crate::sources::sql::{Dialect, sqlx_error};
use crate::stores::{PipelineState, StateStore, Versioned};
use crate::{Error, Result};
use async_trait::async_trait;
use sqlx::any::AnyArguments;
use sqlx::{Arguments, Row};

/// Keeps checkpoints in table `tributary_state`, one row per pipeline with a version
/// column for conditional updates.
#[derive(Debug, Clone)]
pub struct SqlStateStore {
    pub(super) wh: Warehouse,
}

impl SqlStateStore {
    async fn ensure(&self) -> Result<()> {
        let text = if self.wh.dialect() == Dialect::MySql {
            "LONGTEXT"
        } else {
            "TEXT"
        };
        self.wh
            .ensure(
                &self.wh.inner.state_table,
                format!(
                    "CREATE TABLE IF NOT EXISTS tributary_state (pipeline VARCHAR(255) NOT NULL PRIMARY KEY,
                        version BIGINT NOT NULL, state {text} NOT NULL, updated_at VARCHAR(40) NOT NULL)"
                ),
            )
            .await
    }
}

#[async_trait]
impl StateStore for SqlStateStore {
    fn describe(&self) -> String {
        format!("{} (table tributary_state)", self.wh.describe())
    }

    async fn load(&self, pipeline: &str) -> Result<Option<Versioned<PipelineState>>> {
        self.ensure().await?;
        let mut args = AnyArguments::default();
        args.add(pipeline.to_string()).map_err(bind_err)?;
        let sql = format!(
            "SELECT version, state FROM tributary_state WHERE pipeline = {}",
            self.wh.ph(1)
        );
        let row = sqlx::query_with(&sql, args)
            .fetch_optional(self.wh.pool())
            .await
            .map_err(|e| sqlx_error("warehouse", e, "reading tributary_state"))?;
        let Some(row) = row else { return Ok(None) };
        let g = |e: sqlx::Error| sqlx_error("warehouse", e, "decoding tributary_state");
        let version: i64 = row.try_get("version").map_err(g)?;
        let state = text_required(&row, "state")?;
        let value = serde_json::from_str(&state).map_err(|e| {
            Error::type_error(
                "state",
                format!("state of pipeline {pipeline:?} is not valid: {e}"),
            )
        })?;
        Ok(Some(Versioned {
            version: version as u64,
            value,
        }))
    }

    async fn save(
        &self,
        pipeline: &str,
        expected: Option<u64>,
        state: &PipelineState,
    ) -> Result<u64> {
        self.ensure().await?;
        let body = serde_json::to_string(state).expect("state serializes");
        let now = state.updated_at.to_rfc3339();
        let ph = |n| self.wh.ph(n);
        let conflict = |version: u64| Error::Conflict {
            component: "state".into(),
            message: format!(
                "state of pipeline {pipeline:?} was saved by another runner (expected version {version}); reload and retry"
            ),
            source: None,
        };
        match expected {
            None => {
                let mut args = AnyArguments::default();
                args.add(pipeline.to_string()).map_err(bind_err)?;
                args.add(body).map_err(bind_err)?;
                args.add(now).map_err(bind_err)?;
                let sql = format!(
                    "INSERT INTO tributary_state (pipeline, version, state, updated_at) VALUES ({}, 1, {}, {})",
                    ph(1),
                    ph(2),
                    ph(3)
                );
                match sqlx::query_with(&sql, args).execute(self.wh.pool()).await {
                    Ok(_) => Ok(1),
                    Err(sqlx::Error::Database(db)) if db.is_unique_violation() => Err(conflict(0)),
                    Err(e) => Err(sqlx_error("warehouse", e, "writing tributary_state")),
                }
            }
            Some(v) => {
                let mut args = AnyArguments::default();
                args.add(body).map_err(bind_err)?;
                args.add(now).map_err(bind_err)?;
                args.add(pipeline.to_string()).map_err(bind_err)?;
                args.add(v as i64).map_err(bind_err)?;
                let sql = format!(
                    "UPDATE tributary_state SET version = version + 1, state = {}, updated_at = {}
                     WHERE pipeline = {} AND version = {}",
                    ph(1),
                    ph(2),
                    ph(3),
                    ph(4)
                );
                let r = sqlx::query_with(&sql, args)
                    .execute(self.wh.pool())
                    .await
                    .map_err(|e| sqlx_error("warehouse", e, "writing tributary_state"))?;
                if r.rows_affected() == 1 {
                    Ok(v + 1)
                } else {
                    Err(conflict(v))
                }
            }
        }
    }

    async fn delete(&self, pipeline: &str) -> Result<()> {
        self.ensure().await?;
        let mut args = AnyArguments::default();
        args.add(pipeline.to_string()).map_err(bind_err)?;
        let sql = format!(
            "DELETE FROM tributary_state WHERE pipeline = {}",
            self.wh.ph(1)
        );
        sqlx::query_with(&sql, args)
            .execute(self.wh.pool())
            .await
            .map_err(|e| sqlx_error("warehouse", e, "deleting from tributary_state"))?;
        Ok(())
    }
}
