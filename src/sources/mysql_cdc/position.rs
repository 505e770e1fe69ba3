//! Binlog positions, MariaDB GTID positions, and the protocol library's errors as ours.

use crate::Error;
use std::collections::BTreeMap;

const C: &str = "mysql-cdc";

/// A binlog position: file, offset of the next event, and MariaDB's GTID state there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Position {
    pub file: String,
    pub pos: u64,
    pub gtids: Gtids,
}

impl Position {
    /// The checkpoint of this position, taken on the server `server` identifies.
    pub fn checkpoint(&self, server: String) -> crate::Checkpoint {
        crate::Checkpoint::Binlog {
            file: self.file.clone(),
            pos: self.pos,
            gtid: self.gtids.text(),
            server: Some(server),
        }
    }

    /// Whether this position is at or after `(file, pos)` (files compare by number).
    pub fn reached(&self, file: &str, pos: u64) -> bool {
        (file_number(&self.file), self.pos) >= (file_number(file), pos)
    }
}

/// The number at the end of a binlog file name (`binlog.000012` → 12).
pub(crate) fn file_number(file: &str) -> u64 {
    file.rsplit('.')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// MariaDB's GTID position: the last sequence number per replication domain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Gtids(pub(crate) BTreeMap<u32, (u32, u64)>);

impl Gtids {
    pub fn parse(s: &str) -> Option<Gtids> {
        let mut m = BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut it = part.split('-');
            let (d, sv, n) = (it.next()?, it.next()?, it.next()?);
            if it.next().is_some() {
                return None;
            }
            m.insert(d.parse().ok()?, (sv.parse().ok()?, n.parse().ok()?));
        }
        Some(Gtids(m))
    }

    pub fn text(&self) -> Option<String> {
        if self.0.is_empty() {
            return None;
        }
        Some(
            self.0
                .iter()
                .map(|(d, (s, n))| format!("{d}-{s}-{n}"))
                .collect::<Vec<_>>()
                .join(","),
        )
    }
}

/// A mysql_async error as ours, naming what was being done.
pub(crate) fn my_err(e: mysql_async::Error, what: &str, at: Option<&Position>) -> Error {
    use mysql_async::Error as E;
    let message = crate::util::redact_text(&format!("{what}: {e}"));
    match &e {
        E::Server(s) if s.code == 1236 => Error::PositionLost {
            component: C.into(),
            message: match at {
                Some(p) => format!(
                    "the server cannot send the binlog from {}:{} ({}); it was purged or the \
                     position is not an event boundary",
                    p.file, p.pos, s.message
                ),
                None => message,
            },
            source: Some(Box::new(e)),
        },
        E::Server(s) if matches!(s.code, 1044 | 1045 | 1142 | 1227 | 1370) => {
            Error::PermissionDenied {
                component: C.into(),
                message,
                source: Some(Box::new(e)),
            }
        }
        E::Server(s) => Error::Query {
            component: C.into(),
            message,
            // 1927: connection killed; 1053: server shutdown.
            retryable: matches!(s.code, 1053 | 1927 | 2013 | 1317),
            source: Some(Box::new(e)),
        },
        _ => Error::Connection {
            component: C.into(),
            message,
            source: Some(Box::new(e)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gtid_positions_round_trip() {
        let g = Gtids::parse("0-1-100,2-5-7").unwrap();
        assert_eq!(g.text().as_deref(), Some("0-1-100,2-5-7"));
        assert!(Gtids::parse("0-1").is_none());
        assert_eq!(Gtids::parse("").unwrap().text(), None);
    }

    #[test]
    fn positions_compare_by_file_number() {
        let p = Position {
            file: "binlog.000010".into(),
            pos: 4,
            gtids: Gtids::default(),
        };
        assert!(p.reached("binlog.000009", 900));
        assert!(!p.reached("binlog.000010", 5));
    }
}
