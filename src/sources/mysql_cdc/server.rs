//! What the server says of itself: its settings, binlog files, privileges and tables.

use crate::model::{NameCase, TableFilter};
use crate::sources::mysql::types::{json_valid_column, text};
use crate::sources::sql::sqlx_error;
use crate::{Error, Result};
use sqlx::mysql::{MySqlConnection, MySqlRow};

use std::collections::{HashMap, HashSet};

const C: &str = "mysql-cdc";

/// Rows of a statement without parameters, over the text protocol: `SHOW` statements
/// send numbers as text there, which [`text`] reads whatever the column type.
async fn rows(conn: &mut MySqlConnection, sql: &str, what: &str) -> Result<Vec<MySqlRow>> {
    use sqlx::Executor;
    // A plain `&str` runs as COM_QUERY, without a prepared statement.
    conn.fetch_all(sql)
        .await
        .map_err(|e| sqlx_error(C, e, what))
}

/// The settings a binlog reader depends on.
#[derive(Clone, Debug)]
pub(crate) struct Facts {
    pub mariadb: bool,
    pub server_id: String,
    pub uuid: Option<String>,
    pub log_bin: bool,
    pub format: String,
    pub row_image: String,
    pub row_metadata: Option<String>,
    pub checksum_crc32: bool,
    pub case: NameCase,
    pub database: Option<String>,
}

impl Facts {
    /// The identity saved with a checkpoint, to refuse a resume against another server.
    pub fn identity(&self) -> String {
        match &self.uuid {
            Some(u) => format!("mysql:{u}"),
            None => format!("mariadb:server_id={}", self.server_id),
        }
    }

    /// What is missing for row-based capture, each with how to fix it.
    pub fn missing(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.log_bin {
            out.push("binary logging is off: start the server with log_bin".to_string());
        }
        if !self.format.eq_ignore_ascii_case("ROW") {
            out.push(format!(
                "binlog_format is {}: set binlog_format = ROW (statement and mixed formats \
                 carry SQL, not rows)",
                self.format
            ));
        }
        if !self.row_image.eq_ignore_ascii_case("FULL") {
            out.push(format!(
                "binlog_row_image is {}: set binlog_row_image = FULL (updates and deletes \
                 lose columns otherwise)",
                self.row_image
            ));
        }
        match &self.row_metadata {
            Some(m) if m.eq_ignore_ascii_case("FULL") => {}
            Some(m) => out.push(format!(
                "binlog_row_metadata is {m}: set binlog_row_metadata = FULL (column names and \
                 signedness are lost without it)"
            )),
            None => out.push(
                "the server has no binlog_row_metadata setting (MariaDB 10.5+ or MySQL 8.0.1+ \
                 needed for column names in the binlog)"
                    .to_string(),
            ),
        }
        out
    }
}

pub(crate) async fn facts(conn: &mut MySqlConnection) -> Result<Facts> {
    let vars = rows(
        conn,
        "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('version', 'server_id', 'server_uuid', \
         'log_bin', 'binlog_format', 'binlog_row_image', 'binlog_row_metadata', \
         'binlog_checksum', 'lower_case_table_names')",
        "reading the server's settings",
    )
    .await?;
    let v: HashMap<String, String> = vars
        .iter()
        .filter_map(|r| {
            Some((
                text(r, 0)?.to_ascii_lowercase(),
                text(r, 1).unwrap_or_default(),
            ))
        })
        .collect();
    let get = |k: &str| v.get(k).cloned().unwrap_or_default();
    let db = rows(conn, "SELECT DATABASE()", "reading the current database").await?;
    let version = get("version");
    Ok(Facts {
        mariadb: version.to_ascii_lowercase().contains("mariadb"),
        server_id: get("server_id"),
        uuid: v.get("server_uuid").filter(|u| !u.is_empty()).cloned(),
        log_bin: matches!(get("log_bin").to_ascii_uppercase().as_str(), "ON" | "1"),
        format: get("binlog_format"),
        row_image: get("binlog_row_image"),
        row_metadata: v.get("binlog_row_metadata").cloned(),
        checksum_crc32: get("binlog_checksum").eq_ignore_ascii_case("CRC32"),
        case: if get("lower_case_table_names").trim() == "0" {
            NameCase::Sensitive
        } else {
            NameCase::Insensitive
        },
        database: db.first().and_then(|r| text(r, 0)),
    })
}

/// The missing replication privileges of the connected user, from its grants (privileges
/// that come through a role are not seen; the stream itself then reports them).
pub(crate) async fn missing_privileges(
    conn: &mut MySqlConnection,
    f: &Facts,
) -> Result<Vec<String>> {
    let grants = rows(
        conn,
        "SHOW GRANTS FOR CURRENT_USER()",
        "reading the user's grants",
    )
    .await?;
    let global: Vec<String> = grants
        .iter()
        .filter_map(|r| text(r, 0))
        .map(|g| g.to_ascii_uppercase())
        .filter(|g| g.contains(" ON *.* "))
        .collect();
    let has = |p: &str| {
        global
            .iter()
            .any(|g| g.contains("ALL PRIVILEGES") || g.contains(p))
    };
    let mut out = Vec::new();
    if !has("REPLICATION SLAVE") && !has("REPLICATION REPLICA") {
        out.push("the REPLICATION SLAVE privilege (to read the binlog)".to_string());
    }
    let client = if f.mariadb {
        has("BINLOG MONITOR") || has("REPLICATION CLIENT") || has("SUPER")
    } else {
        has("REPLICATION CLIENT") || has("SUPER")
    };
    if !client {
        out.push(if f.mariadb {
            "the BINLOG MONITOR privilege (to list binlog files and positions)".to_string()
        } else {
            "the REPLICATION CLIENT privilege (to list binlog files and positions)".to_string()
        });
    }
    Ok(out)
}

/// The binlog files the server still has, oldest first, with their sizes.
pub(crate) async fn binary_logs(conn: &mut MySqlConnection) -> Result<Vec<(String, u64)>> {
    let r = rows(conn, "SHOW BINARY LOGS", "listing the binlog files").await?;
    Ok(r.iter()
        .filter_map(|r| Some((text(r, 0)?, text(r, 1)?.parse().ok()?)))
        .collect())
}

/// The end of the binlog now: the file and the offset after its last event.
pub(crate) async fn current_end(conn: &mut MySqlConnection, f: &Facts) -> Result<(String, u64)> {
    let r = match rows(conn, "SHOW MASTER STATUS", "reading the binlog position").await {
        Ok(r) => r,
        // MySQL 8.4 renamed it.
        Err(_) if !f.mariadb => {
            rows(
                conn,
                "SHOW BINARY LOG STATUS",
                "reading the binlog position",
            )
            .await?
        }
        Err(e) => return Err(e),
    };
    let row = r.first().ok_or_else(|| Error::Prerequisite {
        component: C.into(),
        message: "the server reports no binlog position: binary logging is off".into(),
    })?;
    let file = text(row, 0).unwrap_or_default();
    let pos = text(row, 1).and_then(|p| p.parse().ok()).unwrap_or(4);
    Ok((file, pos))
}

/// The position at a binlog file and offset, with MariaDB's GTID position there.
pub(crate) async fn position_at(
    conn: &mut MySqlConnection,
    f: &Facts,
    file: String,
    pos: u64,
) -> super::position::Position {
    let gtids = if f.mariadb {
        gtid_at(conn, &file, pos)
            .await
            .and_then(|g| super::position::Gtids::parse(&g))
            .unwrap_or_default()
    } else {
        Default::default()
    };
    super::position::Position { file, pos, gtids }
}

/// MariaDB's GTID position at a binlog file and offset.
async fn gtid_at(conn: &mut MySqlConnection, file: &str, pos: u64) -> Option<String> {
    let row = sqlx::query("SELECT BINLOG_GTID_POS(?, ?)")
        .bind(file)
        .bind(pos)
        .fetch_one(&mut *conn)
        .await
        .ok()?;
    text(&row, 0)
}

/// The selected base tables, as `db.table`, sorted.
pub(crate) async fn tables(
    conn: &mut MySqlConnection,
    filter: &TableFilter,
) -> Result<Vec<String>> {
    let r = rows(
        conn,
        "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES \
         WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN \
         ('mysql', 'information_schema', 'performance_schema', 'sys')",
        "listing the tables",
    )
    .await?;
    let mut out: Vec<String> = r
        .iter()
        .filter_map(|r| Some(format!("{}.{}", text(r, 0)?, text(r, 1)?)))
        .filter(|t| filter.matches(t))
        .collect();
    out.sort();
    Ok(out)
}

/// MariaDB's `JSON` columns (`LONGTEXT` with a `json_valid` check) by `db.table`, names
/// lowercased: the binlog cannot tell them from other text.
pub(crate) async fn json_columns(conn: &mut MySqlConnection) -> HashMap<String, HashSet<String>> {
    let mut out: HashMap<String, HashSet<String>> = HashMap::new();
    let Ok(r) = rows(
        conn,
        "SELECT CONSTRAINT_SCHEMA, TABLE_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS",
        "reading check constraints",
    )
    .await
    else {
        return out;
    };
    for row in &r {
        let (Some(db), Some(t), Some(clause)) = (text(row, 0), text(row, 1), text(row, 2)) else {
            continue;
        };
        if let Some(col) = json_valid_column(&clause) {
            out.entry(format!("{db}.{t}"))
                .or_default()
                .insert(col.to_ascii_lowercase());
        }
    }
    out
}

/// Primary key columns of `db.table`, in key order.
pub(crate) async fn primary_key(conn: &mut MySqlConnection, table: &str) -> Result<Vec<String>> {
    let (db, t) = table.split_once('.').unwrap_or(("", table));
    let r = sqlx::query(
        "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
         WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' \
         ORDER BY ORDINAL_POSITION",
    )
    .bind(db)
    .bind(t)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| sqlx_error(C, e, "reading the primary key"))?;
    Ok(r.iter().filter_map(|r| text(r, 0)).collect())
}

/// The replicas registered with the server, as `(server_id, host)`; empty when the user
/// may not list them.
pub(crate) async fn replicas(conn: &mut MySqlConnection) -> Vec<(u32, String)> {
    let Ok(r) = rows(conn, "SHOW SLAVE HOSTS", "listing replicas").await else {
        return Vec::new();
    };
    r.iter()
        .filter_map(|r| Some((text(r, 0)?.parse().ok()?, text(r, 1).unwrap_or_default())))
        .collect()
}

/// The server's row estimate (`information_schema.TABLES.TABLE_ROWS`) of `db.table`.
pub(crate) async fn estimated_rows(conn: &mut MySqlConnection, table: &str) -> Option<u64> {
    let (db, t) = table.split_once('.')?;
    let row = sqlx::query(
        "SELECT CAST(TABLE_ROWS AS CHAR) FROM information_schema.TABLES \
         WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
    )
    .bind(db)
    .bind(t)
    .fetch_one(&mut *conn)
    .await
    .ok()?;
    text(&row, 0)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_missing_setting_is_named_with_its_fix() {
        let f = Facts {
            mariadb: true,
            server_id: "1".into(),
            uuid: None,
            log_bin: false,
            format: "MIXED".into(),
            row_image: "MINIMAL".into(),
            row_metadata: Some("MINIMAL".into()),
            checksum_crc32: true,
            case: NameCase::Sensitive,
            database: None,
        };
        let m = f.missing().join("; ");
        for want in [
            "log_bin",
            "binlog_format = ROW",
            "binlog_row_image = FULL",
            "binlog_row_metadata = FULL",
        ] {
            assert!(m.contains(want), "{want} in {m}");
        }
        let ok = Facts {
            log_bin: true,
            format: "ROW".into(),
            row_image: "FULL".into(),
            row_metadata: Some("FULL".into()),
            ..f
        };
        assert!(ok.missing().is_empty());
        assert_eq!(ok.identity(), "mariadb:server_id=1");
    }
}
