//! PostgreSQL rows to Arrow: each column's binary value through its decoder.

use super::driver::pg_err;
use super::types::Dec;
use crate::sources::sql::ColumnDecoder;
use crate::{Error, Result};
use arrow_array::builder::ArrayBuilder;
use sqlx::postgres::PgRow;
use sqlx::{Row, ValueRef};

impl ColumnDecoder<PgRow> for Dec {
    fn append_from(
        &self,
        builder: &mut dyn ArrayBuilder,
        row: &PgRow,
        i: usize,
        name: &str,
    ) -> Result<()> {
        let raw = row
            .try_get_raw(i)
            .map_err(|e| pg_err(e, "reading a value"))?;
        let bytes = if raw.is_null() {
            None
        } else {
            Some(
                raw.as_bytes()
                    .map_err(|e| Error::type_error("postgres", format!("column {name}: {e}")))?,
            )
        };
        self.append(builder, bytes, name)
    }
}
