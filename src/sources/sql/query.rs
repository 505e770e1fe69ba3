//! Query building per [`Dialect`]: the extraction query with its closed lower bound at
//! the watermark (and a keyset position past it), and the partition bounds and queries
//! of a partitioned read.

use super::{Dialect, From, KeyKind, SqlSource};
use crate::{CursorValue, Error, Result, Watermark};

/// A query and the values to bind to it, in order.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct BuiltQuery {
    /// The SQL text.
    pub(crate) sql: String,
    /// Values for the placeholders.
    pub(crate) binds: Vec<CursorValue>,
}

/// Build the extraction query: `SELECT cols FROM src [WHERE cursor >= ? [AND cursor < ?]]
/// [ORDER BY cursor, key]`.
pub(crate) fn build_query(
    source: &SqlSource,
    dialect: Dialect,
    from: Option<&Watermark>,
    upper: Option<CursorValue>,
) -> Result<BuiltQuery> {
    build_query_casts(source, dialect, from, upper, None, &[])
}

/// Like [`build_query`], with cursor parameters written as `CAST(? AS cast)` so that
/// they can be bound as text (PostgreSQL's strict typing needs this), and the types of
/// the key columns too (for a keyset
/// position, [`Watermark::after`]).
pub(crate) fn build_query_casts(
    source: &SqlSource,
    dialect: Dialect,
    from: Option<&Watermark>,
    upper: Option<CursorValue>,
    cast: Option<&str>,
    key_casts: &[String],
) -> Result<BuiltQuery> {
    let cast_param = |n: usize, ty: Option<&str>| match ty {
        // Through text first, so the parameter's own type is always text.
        Some(t) => format!("CAST(CAST({} AS TEXT) AS {t})", dialect.placeholder(n)),
        None => dialect.placeholder(n),
    };
    let param = |n: usize| cast_param(n, cast);
    let cols = select_list(source, dialect);
    let from_sql = match &source.from {
        From::Query(q) if source.cursor.is_none() && source.columns.is_empty() => {
            return Ok(BuiltQuery {
                sql: q.trim().trim_end_matches(';').to_string(),
                binds: Vec::new(),
            });
        }
        _ => from_clause(source, dialect)?,
    };
    let mut sql = format!("SELECT {cols} FROM {from_sql}");
    let mut binds = Vec::new();
    if let Some(c) = &source.cursor {
        let col = dialect.quote_ident(&c.column);
        let mut conds = vec![format!("{col} IS NOT NULL")];
        let lower = from.map(|w| w.cursor.clone()).or_else(|| c.initial.clone());
        match (lower, from.and_then(|w| w.after.as_ref())) {
            // A keyset position: `(cursor, key) > (value, after)`, spelt out so that every
            // database can use an index on the cursor.
            (Some(v), Some(after)) => {
                let saved = from.and_then(|w| w.key.as_ref());
                if after.len() != c.key.len()
                    || c.key.is_empty()
                    || saved.is_some_and(|k| k != &c.key)
                {
                    return Err(Error::config(
                        "sql",
                        format!(
                            "the checkpoint's keyset position is over {} ({} values), but the \
                             cursor's key is {:?}: keep the key the checkpoint was made with",
                            saved
                                .map_or_else(|| "an unnamed key".to_string(), |k| format!("{k:?}")),
                            after.len(),
                            c.key
                        ),
                    ));
                }
                binds.push(v.clone());
                let gt = param(binds.len());
                binds.push(v);
                let eq = param(binds.len());
                let mut keys = Vec::new();
                for (i, k) in after.iter().enumerate() {
                    binds.push(k.clone());
                    keys.push(cast_param(
                        binds.len(),
                        key_casts.get(i).map(String::as_str),
                    ));
                }
                let names: Vec<String> = c.key.iter().map(|k| dialect.quote_ident(k)).collect();
                conds.push(format!(
                    "({col} > {gt} OR ({col} = {eq} AND ({}) > ({})))",
                    names.join(", "),
                    keys.join(", ")
                ));
            }
            (Some(v), None) => {
                binds.push(v);
                conds.push(format!("{col} >= {}", param(binds.len())));
            }
            (None, _) => {}
        }
        if let Some(v) = upper {
            binds.push(v);
            conds.push(format!("{col} < {}", param(binds.len())));
        }
        sql.push_str(" WHERE ");
        sql.push_str(&conds.join(" AND "));
        sql.push_str(" ORDER BY ");
        let mut order = vec![col];
        order.extend(c.key.iter().map(|k| dialect.quote_ident(k)));
        sql.push_str(&order.join(", "));
    }
    Ok(BuiltQuery { sql, binds })
}

fn select_list(source: &SqlSource, dialect: Dialect) -> String {
    if source.columns.is_empty() {
        "*".to_string()
    } else {
        source
            .columns
            .iter()
            .map(|c| dialect.quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The FROM clause: a quoted table, or the custom query as a subquery.
fn from_clause(source: &SqlSource, dialect: Dialect) -> Result<String> {
    match &source.from {
        From::Table(t) if t.trim().is_empty() => Err(Error::config("sql", "table name is empty")),
        From::Table(t) => Ok(dialect.quote_ident(t)),
        From::Query(q) => Ok(format!(
            "({}) AS tributary_q",
            q.trim().trim_end_matches(';')
        )),
    }
}

fn parse_time(s: &str) -> Option<chrono::NaiveDateTime> {
    let s = s.trim();
    // PostgreSQL prints timestamptz as `... +00` in a UTC session; drop the offset.
    let s = s.strip_suffix("+00").unwrap_or(s);
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight"))
        })
}

/// The `partitions - 1` inner boundaries splitting `[lo, hi]` (as text the database
/// reads back), fewer when the range is too small to split that far.
pub(crate) fn split_bounds(
    kind: KeyKind,
    lo: &str,
    hi: &str,
    partitions: u32,
    column: &str,
) -> Result<Vec<String>> {
    let bad = || {
        Error::type_error(
            "sql",
            format!("partition column {column}: cannot read the range {lo} .. {hi}"),
        )
    };
    let n = partitions.max(1) as i128;
    let (lo_n, hi_n): (i128, i128) = match kind {
        KeyKind::Int => (
            lo.trim().parse().map_err(|_| bad())?,
            hi.trim().parse().map_err(|_| bad())?,
        ),
        KeyKind::Date | KeyKind::Timestamp => {
            let (a, b) = (
                parse_time(lo).ok_or_else(bad)?,
                parse_time(hi).ok_or_else(bad)?,
            );
            (
                a.and_utc().timestamp_micros() as i128,
                b.and_utc().timestamp_micros() as i128,
            )
        }
    };
    let unit: i128 = if kind == KeyKind::Date {
        86_400_000_000
    } else {
        1
    };
    let span = (hi_n - lo_n) / unit + 1;
    let mut out: Vec<String> = Vec::new();
    for i in 1..n {
        let b = lo_n + (span * i / n) * unit;
        let text = match kind {
            KeyKind::Int => b.to_string(),
            KeyKind::Date => chrono::DateTime::from_timestamp_micros(b as i64)
                .ok_or_else(bad)?
                .format("%Y-%m-%d")
                .to_string(),
            KeyKind::Timestamp => chrono::DateTime::from_timestamp_micros(b as i64)
                .ok_or_else(bad)?
                .format("%Y-%m-%d %H:%M:%S%.6f")
                .to_string(),
        };
        if b > lo_n && out.last() != Some(&text) {
            out.push(text);
        }
    }
    Ok(out)
}

/// The query of partition `i` of `bounds.len() + 1`: `[bounds[i-1], bounds[i])`, the first
/// open below and holding NULLs, the last open above.
pub(crate) fn partition_query(
    source: &SqlSource,
    dialect: Dialect,
    column: &str,
    bounds: &[String],
    i: usize,
    cast: Option<&str>,
) -> Result<BuiltQuery> {
    let col = dialect.quote_ident(column);
    let param = |n: usize| match cast {
        Some(t) => format!("CAST(CAST({} AS TEXT) AS {t})", dialect.placeholder(n)),
        None => dialect.placeholder(n),
    };
    let mut binds = Vec::new();
    let mut conds = Vec::new();
    if i > 0 {
        binds.push(CursorValue::Text(bounds[i - 1].clone()));
        conds.push(format!("{col} >= {}", param(binds.len())));
    }
    if let Some(b) = bounds.get(i) {
        binds.push(CursorValue::Text(b.clone()));
        conds.push(format!("{col} < {}", param(binds.len())));
    }
    let mut cond = if conds.is_empty() {
        "1 = 1".to_string()
    } else {
        conds.join(" AND ")
    };
    if i == 0 {
        cond = format!("({cond}) OR {col} IS NULL");
    }
    Ok(BuiltQuery {
        sql: format!(
            "SELECT {} FROM {} WHERE {cond}",
            select_list(source, dialect),
            from_clause(source, dialect)?
        ),
        binds,
    })
}
