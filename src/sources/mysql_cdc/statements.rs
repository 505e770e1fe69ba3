//! What a binlog query event's statement touches: the table of a `TRUNCATE`, the table
//! of a statement-format DML.

/// `TRUNCATE [TABLE] [db.]name` → the qualified table name.
pub(crate) fn truncated_table(query: &str, schema: &str) -> Option<String> {
    let q = query.trim();
    let head = q.get(..8)?;
    if !head.eq_ignore_ascii_case("truncate") {
        return None;
    }
    let mut rest = q[8..].trim_start();
    if rest.len() >= 5 && rest[..5].eq_ignore_ascii_case("table") {
        rest = rest[5..].trim_start();
    }
    qualified(rest.trim_end_matches(';').trim(), schema)
}

/// A statement's table name, backquotes dropped, qualified with the statement's default
/// database when it names none; `None` when empty.
fn qualified(name: &str, schema: &str) -> Option<String> {
    let name: String = name
        .split('.')
        .map(|p| p.trim().trim_matches('`'))
        .collect::<Vec<_>>()
        .join(".");
    if name.is_empty() {
        return None;
    }
    Some(if name.contains('.') {
        name
    } else {
        format!("{schema}.{name}")
    })
}

/// The table a statement-format `INSERT`/`UPDATE`/`DELETE`/`REPLACE` changes (its first
/// table), qualified; `Some(None)` when it is such a statement but the name cannot be
/// read; `None` for other statements.
pub(crate) fn dml_table(query: &str, schema: &str) -> Option<Option<String>> {
    const SKIP: [&str; 7] = [
        "low_priority",
        "delayed",
        "high_priority",
        "ignore",
        "into",
        "quick",
        "from",
    ];
    let mut words = query.split_whitespace();
    let verb = words.next()?.to_ascii_lowercase();
    if !matches!(verb.as_str(), "insert" | "update" | "delete" | "replace") {
        return None;
    }
    let name = words.find(|w| !SKIP.contains(&w.to_ascii_lowercase().as_str()));
    Some(name.and_then(|n| {
        let n = n
            .split('(')
            .next()
            .unwrap_or_default()
            .trim_end_matches(',');
        qualified(n, schema)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_names_its_table() {
        assert_eq!(
            truncated_table("TRUNCATE TABLE `Orders`", "test").as_deref(),
            Some("test.Orders")
        );
        assert_eq!(
            truncated_table("truncate shop.t;", "test").as_deref(),
            Some("shop.t")
        );
        assert_eq!(truncated_table("ALTER TABLE t", "test"), None);
    }

    #[test]
    fn statement_dml_names_its_table() {
        assert_eq!(
            dml_table("INSERT IGNORE INTO `t1`(id) VALUES (1)", "db"),
            Some(Some("db.t1".into()))
        );
        assert_eq!(
            dml_table("delete low_priority from shop.t where 1", "db"),
            Some(Some("shop.t".into()))
        );
        assert_eq!(
            dml_table("UPDATE t SET a = 1", "db"),
            Some(Some("db.t".into()))
        );
        assert_eq!(dml_table("SAVEPOINT a", "db"), None);
    }
}
