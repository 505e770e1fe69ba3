//! What the server says of itself: its settings, the slot, the publication and the
//! selected tables; and the statements that change them.

use crate::sources::sql::{Dialect, sqlx_error};
use crate::{Error, Result};
use sqlx::postgres::PgConnection;

const C: &str = "postgres-cdc";

pub(crate) fn err(e: sqlx::Error, what: &str) -> Error {
    sqlx_error(C, e, what)
}

/// `0/16B3748` → 64-bit LSN.
pub(crate) fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.trim().split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// 64-bit LSN → `0/16B3748`, as PostgreSQL prints it.
pub(crate) fn lsn_text(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

/// The settings a WAL reader depends on.
#[derive(Clone, Debug)]
pub(crate) struct Facts {
    pub wal_level: String,
    pub version: i32,
    pub max_slots: i64,
    pub used_slots: i64,
    pub max_senders: i64,
    pub used_senders: i64,
    pub replication: bool,
    pub superuser: bool,
    pub user: String,
    pub database: String,
}

impl Facts {
    /// What is missing for logical replication, each with how to fix it. `new_slot`:
    /// a slot must be created (so one must be free).
    pub fn missing(&self, new_slot: bool) -> Vec<String> {
        let mut out = Vec::new();
        if self.wal_level != "logical" {
            out.push(format!(
                "wal_level is {}: set wal_level = logical and restart the server",
                self.wal_level
            ));
        }
        if self.version < 100000 {
            out.push("PostgreSQL 10 or newer is needed for pgoutput".into());
        }
        if !self.replication && !self.superuser {
            out.push(format!(
                "the user {} lacks the REPLICATION attribute: ALTER ROLE {} REPLICATION",
                self.user,
                Dialect::Postgres.quote_ident(&self.user)
            ));
        }
        if new_slot && self.used_slots >= self.max_slots {
            out.push(format!(
                "all {} replication slots are in use (max_replication_slots): drop an unused \
                 one (pg_drop_replication_slot) or raise the setting",
                self.max_slots
            ));
        }
        if self.used_senders >= self.max_senders {
            out.push(format!(
                "all {} WAL senders are busy (max_wal_senders): raise the setting",
                self.max_senders
            ));
        }
        out
    }
}

pub(crate) async fn facts(conn: &mut PgConnection) -> Result<Facts> {
    let row: (String, i32, i64, i64, i64, i64, bool, bool, String, String) = sqlx::query_as(
        "SELECT current_setting('wal_level'), current_setting('server_version_num')::int4, \
         current_setting('max_replication_slots')::int8, \
         (SELECT count(*) FROM pg_replication_slots), \
         current_setting('max_wal_senders')::int8, \
         (SELECT count(*) FROM pg_stat_replication), \
         r.rolreplication, r.rolsuper, current_user::text, current_database()::text \
         FROM pg_roles r WHERE r.rolname = current_user",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| err(e, "reading the server's replication settings"))?;
    Ok(Facts {
        wal_level: row.0,
        version: row.1,
        max_slots: row.2,
        used_slots: row.3,
        max_senders: row.4,
        used_senders: row.5,
        replication: row.6,
        superuser: row.7,
        user: row.8,
        database: row.9,
    })
}

/// A selected table as the catalog names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Table {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    /// `d` default, `n` nothing, `f` full, `i` index.
    pub identity: String,
    pub has_key: bool,
    pub owner_is_me: bool,
    pub partitioned: bool,
}

impl Table {
    /// `schema.table`: the name its changes land under.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// The name quoted for SQL.
    pub fn sql(&self) -> String {
        let q = |s: &str| Dialect::Postgres.quote_ident(s);
        format!("{}.{}", q(&self.schema), q(&self.name))
    }
}

const TABLE_COLUMNS: &str = "c.oid::int8, n.nspname::text, c.relname::text, \
     c.relreplident::text, \
     EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary), \
     pg_has_role(c.relowner, 'USAGE'), c.relkind = 'p'";

type TableRow = (i64, String, String, String, bool, bool, bool);

fn table_of(r: TableRow) -> Table {
    Table {
        oid: r.0 as u32,
        schema: r.1,
        name: r.2,
        identity: r.3,
        has_key: r.4,
        owner_is_me: r.5,
        partitioned: r.6,
    }
}

/// Resolve names as SQL would for unquoted ones (`Orders` is `orders`), exact names first.
pub(crate) async fn resolve_tables(
    conn: &mut PgConnection,
    names: &[String],
) -> Result<Vec<Table>> {
    let mut out: Vec<Table> = Vec::new();
    for name in names {
        let quoted = match name.split_once('.') {
            Some((s, t)) => format!(
                "{}.{}",
                Dialect::Postgres.quote_ident(s),
                Dialect::Postgres.quote_ident(t)
            ),
            None => Dialect::Postgres.quote_ident(name),
        };
        let row: Option<TableRow> = sqlx::query_as(&format!(
            "SELECT {TABLE_COLUMNS} FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.oid = coalesce(to_regclass($1), to_regclass($2)) AND c.relkind IN ('r', 'p')"
        ))
        .bind(&quoted)
        .bind(name.to_ascii_lowercase())
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| err(e, &format!("looking up table {name}")))?;
        let Some(row) = row else {
            return Err(Error::NotFound {
                component: C.into(),
                message: format!("table {name} does not exist (or is not a table)"),
                source: None,
            });
        };
        let t = table_of(row);
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

/// The tables a publication publishes (`None`: there is no such publication).
pub(crate) async fn publication_tables(
    conn: &mut PgConnection,
    publication: &str,
) -> Result<Option<Vec<Table>>> {
    let exists: Option<bool> =
        sqlx::query_scalar("SELECT puballtables FROM pg_publication WHERE pubname = $1")
            .bind(publication)
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| err(e, "looking up the publication"))?;
    if exists.is_none() {
        return Ok(None);
    }
    let rows: Vec<TableRow> = sqlx::query_as(&format!(
        "SELECT {TABLE_COLUMNS} FROM pg_publication_tables p \
         JOIN pg_namespace n ON n.nspname = p.schemaname \
         JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = p.tablename \
         WHERE p.pubname = $1 ORDER BY 2, 3"
    ))
    .bind(publication)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| err(e, "reading the publication's tables"))?;
    Ok(Some(rows.into_iter().map(table_of).collect()))
}

/// `CREATE PUBLICATION ... FOR TABLE ...`.
pub(crate) async fn create_publication(
    conn: &mut PgConnection,
    publication: &str,
    tables: &[Table],
) -> Result<()> {
    use sqlx::Executor;
    let list: Vec<String> = tables.iter().map(Table::sql).collect();
    let via_root = if tables.iter().any(|t| t.partitioned) {
        " WITH (publish_via_partition_root = true)"
    } else {
        ""
    };
    let sql = format!(
        "CREATE PUBLICATION {} FOR TABLE {}{via_root}",
        Dialect::Postgres.quote_ident(publication),
        list.join(", ")
    );
    conn.execute(sql.as_str()).await.map_err(|e| {
        let not_owner: Vec<String> = tables
            .iter()
            .filter(|t| !t.owner_is_me)
            .map(Table::qualified)
            .collect();
        let what = if not_owner.is_empty() {
            format!("creating publication {publication}")
        } else {
            format!(
                "creating publication {publication} (the user does not own {}: a table's \
                 owner or a superuser must create the publication)",
                not_owner.join(", ")
            )
        };
        err(e, &what)
    })?;
    Ok(())
}

/// A replication slot as `pg_replication_slots` shows it.
#[derive(Clone, Debug)]
pub(crate) struct Slot {
    pub plugin: Option<String>,
    pub database: Option<String>,
    pub active_pid: Option<i32>,
    pub confirmed_flush: Option<u64>,
    pub wal_status: Option<String>,
}

pub(crate) async fn slot(conn: &mut PgConnection, name: &str) -> Result<Option<Slot>> {
    type Row = (
        Option<String>,
        Option<String>,
        Option<i32>,
        Option<String>,
        Option<String>,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT plugin::text, database::text, active_pid, confirmed_flush_lsn::text, \
         wal_status::text FROM pg_replication_slots WHERE slot_name = $1",
    )
    .bind(name)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| err(e, "looking up the replication slot"))?;
    Ok(row.map(|r| Slot {
        plugin: r.0,
        database: r.1,
        active_pid: r.2,
        confirmed_flush: r.3.as_deref().and_then(parse_lsn),
        wal_status: r.4,
    }))
}

/// Drop slot `name` if it exists and no session holds it; `Ok(false)` if there was none.
pub(crate) async fn drop_slot(conn: &mut PgConnection, name: &str) -> Result<bool> {
    let Some(s) = slot(conn, name).await? else {
        return Ok(false);
    };
    if let Some(pid) = s.active_pid {
        return Err(in_use(name, pid));
    }
    sqlx::query("SELECT pg_drop_replication_slot($1)")
        .bind(name)
        .execute(&mut *conn)
        .await
        .map_err(|e| err(e, &format!("dropping replication slot {name}")))?;
    Ok(true)
}

pub(crate) fn in_use(slot: &str, pid: i32) -> Error {
    Error::config(
        C,
        format!(
            "replication slot {slot} is in use by another reader (server process {pid}); one \
             slot has one reader: stop the other one, or give this one its own slot"
        ),
    )
}

/// The server's current WAL insert position.
pub(crate) async fn current_lsn(conn: &mut PgConnection) -> Result<u64> {
    let s: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| err(e, "reading the current WAL position"))?;
    parse_lsn(&s).ok_or_else(|| Error::type_error(C, format!("unreadable LSN {s:?}")))
}

/// Write a non-transactional logical message (a heartbeat, or the end marker of a
/// bounded run) and return its LSN. `None` when the server refuses.
pub(crate) async fn emit_message(conn: &mut PgConnection, prefix: &str) -> Option<u64> {
    let s: Option<String> =
        sqlx::query_scalar("SELECT pg_logical_emit_message(false, $1, ''::text)::text")
            .bind(prefix)
            .fetch_one(&mut *conn)
            .await
            .ok();
    s.as_deref().and_then(parse_lsn)
}

/// How many bytes of WAL the slot holds back (`pg_current_wal_lsn` minus its confirmed
/// position).
pub(crate) async fn slot_lag(conn: &mut PgConnection, slot: &str) -> Option<i64> {
    sqlx::query_scalar(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::int8 \
         FROM pg_replication_slots WHERE slot_name = $1",
    )
    .bind(slot)
    .fetch_optional(&mut *conn)
    .await
    .ok()
    .flatten()
}

/// Move an idle slot to `lsn` (after the reader's session ended).
pub(crate) async fn advance_slot(conn: &mut PgConnection, slot: &str, lsn: u64) -> Result<()> {
    sqlx::query("SELECT pg_replication_slot_advance($1, $2::text::pg_lsn)")
        .bind(slot)
        .bind(lsn_text(lsn))
        .execute(&mut *conn)
        .await
        .map_err(|e| err(e, &format!("advancing replication slot {slot}")))?;
    Ok(())
}

/// The primary key's columns of table `oid`, in key order.
pub(crate) async fn primary_key(conn: &mut PgConnection, oid: u32) -> Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT a.attname::text FROM pg_index i \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
         WHERE i.indrelid = $1::int8::oid AND i.indisprimary \
         ORDER BY array_position(i.indkey::int2[], a.attnum)",
    )
    .bind(oid as i64)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| err(e, "reading a table's primary key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_read_and_print_as_postgres_does() {
        assert_eq!(parse_lsn("0/16B3748"), Some(0x16B3748));
        assert_eq!(parse_lsn("1A/0"), Some(0x1A << 32));
        assert_eq!(lsn_text(0x1_0000_00FF), "1/FF");
        assert_eq!(parse_lsn("nonsense"), None);
    }

    #[test]
    fn every_missing_prerequisite_is_named_with_its_fix() {
        let f = Facts {
            wal_level: "replica".into(),
            version: 150000,
            max_slots: 10,
            used_slots: 10,
            max_senders: 10,
            used_senders: 10,
            replication: false,
            superuser: false,
            user: "app".into(),
            database: "shop".into(),
        };
        let m = f.missing(true).join("; ");
        assert!(
            m.contains("wal_level is replica: set wal_level = logical"),
            "{m}"
        );
        assert!(m.contains("max_replication_slots"), "{m}");
        assert!(m.contains("max_wal_senders"), "{m}");
        assert!(m.contains("ALTER ROLE \"app\" REPLICATION"), "{m}");
        // An existing slot needs no free one.
        assert!(
            !f.missing(false)
                .join("; ")
                .contains("max_replication_slots")
        );
        let ok = Facts {
            wal_level: "logical".into(),
            used_slots: 0,
            used_senders: 0,
            replication: true,
            ..f
        };
        assert!(ok.missing(true).is_empty());
    }
}
