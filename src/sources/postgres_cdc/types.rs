//! WAL values to Arrow: the slot streams values in PostgreSQL's binary format (pgoutput's
//! `binary` option), which the typed SQL path's decoders read, so a table read by
//! [`PostgresExtractor`](crate::sources::postgres::PostgresExtractor) and by this reader
//! gives the same Arrow types and values (see
//! [`postgres::types`](crate::sources::postgres::types) for the mapping).
//!
//! A Relation message names each column's type by OID; domains, enums and arrays are
//! resolved through the catalog (cached per run). A type the decoders do not handle is an
//! error naming the column and its type, with what to do about it.

use super::server::err;
use crate::sources::postgres::types::Dec;
use crate::{Error, Result};
use sqlx::postgres::PgConnection;
use std::collections::HashMap;

const C: &str = "postgres-cdc";

/// What the catalog says of one type.
#[derive(Clone, Debug)]
struct TypeRow {
    name: String,
    /// `b` base, `d` domain, `e` enum, `c` composite, `r` range, `m` multirange, `p` pseudo.
    kind: String,
    base: u32,
    elem: u32,
    category: String,
}

/// Type OID → catalog facts, for the run.
#[derive(Default)]
pub(crate) struct Types {
    cache: HashMap<u32, TypeRow>,
}

fn unknown(table: &str, column: &str, ty: &str) -> Error {
    Error::type_error(
        C,
        format!(
            "table {table} column {column} has type {ty}, which the WAL reader cannot convert \
             losslessly; change the column's type (ALTER TABLE {table} ALTER COLUMN {column} \
             TYPE text USING {column}::text) or leave the column out of the publication \
             (CREATE PUBLICATION ... FOR TABLE {table} (col, ...))"
        ),
    )
}

impl Types {
    async fn row(&mut self, conn: &mut PgConnection, oid: u32) -> Result<TypeRow> {
        if let Some(r) = self.cache.get(&oid) {
            return Ok(r.clone());
        }
        let row: Option<(String, String, i64, i64, String)> = sqlx::query_as(
            "SELECT format_type(oid, NULL), typtype::text, typbasetype::int8, \
             typelem::int8, typcategory::text FROM pg_type WHERE oid = $1::int8::oid",
        )
        .bind(oid as i64)
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| err(e, "looking up a column type"))?;
        let Some(r) = row else {
            return Err(Error::type_error(
                C,
                format!("type OID {oid} is not in the catalog (dropped since?)"),
            ));
        };
        let t = TypeRow {
            name: r.0,
            kind: r.1,
            base: r.2 as u32,
            elem: r.3 as u32,
            category: r.4,
        };
        self.cache.insert(oid, t.clone());
        Ok(t)
    }

    /// The decoder of column `column` of `table`, of type `oid` with modifier `typmod`.
    pub(crate) async fn decoder(
        &mut self,
        conn: &mut PgConnection,
        table: &str,
        column: &str,
        oid: u32,
        typmod: i32,
    ) -> Result<Dec> {
        let (mut oid, mut typmod) = (oid, typmod);
        let mut array = false;
        for _ in 0..16 {
            let t = self.row(conn, oid).await?;
            match t.kind.as_str() {
                "d" => {
                    // The column's own type modifier, as the typed SQL path sees it.
                    oid = t.base;
                    continue;
                }
                "e" => return Ok(wrap(Dec::Text, array)),
                "b" if t.category == "A" && t.elem != 0 => {
                    if array {
                        return Err(unknown(table, column, &t.name));
                    }
                    array = true;
                    oid = t.elem;
                    typmod = -1;
                    continue;
                }
                "b" => {
                    let name = t.name.trim_matches('"').to_string();
                    let dec = Dec::simple(oid, &name, typmod, column)
                        .map_err(|_| unknown(table, column, &t.name))?;
                    return Ok(wrap(dec, array));
                }
                _ => return Err(unknown(table, column, &t.name)),
            }
        }
        Err(unknown(
            table,
            column,
            &format!("OID {oid} (nested domains)"),
        ))
    }
}

fn wrap(d: Dec, array: bool) -> Dec {
    if array { Dec::Array(Box::new(d)) } else { d }
}
