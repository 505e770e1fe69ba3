//! The pgoutput logical replication messages (protocol version 1) that carry rows:
//! Relation, Type, Origin, Insert, Update, Delete, Truncate. Begin, Commit and Message
//! are parsed by the replication client.
//!
//! Every read is bounds-checked: a short or malformed message is an error naming what
//! was being read, never a panic.

use bytes::Bytes;

/// A malformed message: what was being read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Malformed(pub &'static str);

type R<T> = std::result::Result<T, Malformed>;

/// One column of a Relation message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RelColumn {
    /// Part of the replica identity (the key, or every column with `FULL`).
    pub key: bool,
    pub name: String,
    pub type_oid: u32,
    pub typmod: i32,
}

/// A table's definition as of this point of the WAL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Relation {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    /// `d` default, `n` nothing, `f` full, `i` index.
    pub identity: u8,
    pub columns: Vec<RelColumn>,
}

/// One value of a tuple.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Cell {
    Null,
    /// An unchanged TOASTed value the server did not send.
    Unchanged,
    Text(Bytes),
    Binary(Bytes),
}

/// Which old image an Update or Delete carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Old {
    /// `K`: the replica identity key only.
    Key,
    /// `O`: the whole old row (`REPLICA IDENTITY FULL`).
    Full,
}

/// A decoded message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Message {
    Relation(Relation),
    Type,
    Origin,
    Insert {
        rel: u32,
        new: Vec<Cell>,
    },
    Update {
        rel: u32,
        old: Option<(Old, Vec<Cell>)>,
        new: Vec<Cell>,
    },
    Delete {
        rel: u32,
        old: (Old, Vec<Cell>),
    },
    Truncate {
        rels: Vec<u32>,
    },
    /// Begin, Commit, logical messages and anything newer that this reader does not use.
    Other(u8),
}

struct Cur {
    b: Bytes,
    at: usize,
}

impl Cur {
    fn take(&mut self, n: usize, what: &'static str) -> R<&[u8]> {
        let end = self.at.checked_add(n).ok_or(Malformed(what))?;
        let s = self.b.get(self.at..end).ok_or(Malformed(what))?;
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self, what: &'static str) -> R<u8> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> R<u16> {
        let s = self.take(2, what)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }
    fn u32(&mut self, what: &'static str) -> R<u32> {
        let s = self.take(4, what)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn cstr(&mut self, what: &'static str) -> R<String> {
        let rest = self.b.get(self.at..).ok_or(Malformed(what))?;
        let n = rest.iter().position(|c| *c == 0).ok_or(Malformed(what))?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.at += n + 1;
        Ok(s)
    }
    fn bytes(&mut self, n: usize, what: &'static str) -> R<Bytes> {
        let end = self.at.checked_add(n).ok_or(Malformed(what))?;
        if end > self.b.len() {
            return Err(Malformed(what));
        }
        let s = self.b.slice(self.at..end);
        self.at = end;
        Ok(s)
    }
    fn tuple(&mut self) -> R<Vec<Cell>> {
        let n = self.u16("a tuple's column count")? as usize;
        let mut cells = Vec::with_capacity(n);
        for _ in 0..n {
            cells.push(match self.u8("a column's kind")? {
                b'n' => Cell::Null,
                b'u' => Cell::Unchanged,
                k @ (b't' | b'b') => {
                    let len = self.u32("a value's length")? as usize;
                    let v = self.bytes(len, "a value")?;
                    if k == b't' {
                        Cell::Text(v)
                    } else {
                        Cell::Binary(v)
                    }
                }
                _ => return Err(Malformed("a column's kind")),
            });
        }
        Ok(cells)
    }
}

/// Decode one pgoutput message (the payload of an XLogData).
pub(crate) fn decode(data: Bytes) -> R<Message> {
    let mut c = Cur { b: data, at: 0 };
    let tag = c.u8("the message type")?;
    Ok(match tag {
        b'R' => {
            let oid = c.u32("a relation's OID")?;
            let schema = c.cstr("a relation's schema")?;
            let name = c.cstr("a relation's name")?;
            let identity = c.u8("a relation's replica identity")?;
            let n = c.u16("a relation's column count")? as usize;
            let mut columns = Vec::with_capacity(n);
            for _ in 0..n {
                let flags = c.u8("a column's flags")?;
                let name = c.cstr("a column's name")?;
                let type_oid = c.u32("a column's type")?;
                let typmod = c.u32("a column's type modifier")? as i32;
                columns.push(RelColumn {
                    key: flags & 1 == 1,
                    name,
                    type_oid,
                    typmod,
                });
            }
            Message::Relation(Relation {
                oid,
                schema,
                name,
                identity,
                columns,
            })
        }
        b'Y' => Message::Type,
        b'O' => Message::Origin,
        b'I' => {
            let rel = c.u32("an insert's relation")?;
            if c.u8("an insert's tuple marker")? != b'N' {
                return Err(Malformed("an insert's tuple marker"));
            }
            Message::Insert {
                rel,
                new: c.tuple()?,
            }
        }
        b'U' => {
            let rel = c.u32("an update's relation")?;
            let mut marker = c.u8("an update's tuple marker")?;
            let mut old = None;
            if marker == b'K' || marker == b'O' {
                let kind = if marker == b'K' { Old::Key } else { Old::Full };
                old = Some((kind, c.tuple()?));
                marker = c.u8("an update's new tuple marker")?;
            }
            if marker != b'N' {
                return Err(Malformed("an update's new tuple marker"));
            }
            Message::Update {
                rel,
                old,
                new: c.tuple()?,
            }
        }
        b'D' => {
            let rel = c.u32("a delete's relation")?;
            let kind = match c.u8("a delete's tuple marker")? {
                b'K' => Old::Key,
                b'O' => Old::Full,
                _ => return Err(Malformed("a delete's tuple marker")),
            };
            Message::Delete {
                rel,
                old: (kind, c.tuple()?),
            }
        }
        b'T' => {
            let n = c.u32("a truncate's relation count")? as usize;
            let _options = c.u8("a truncate's options")?;
            let mut rels = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                rels.push(c.u32("a truncated relation")?);
            }
            Message::Truncate { rels }
        }
        other => Message::Other(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(cells: &[Option<&[u8]>]) -> Vec<u8> {
        let mut v = (cells.len() as u16).to_be_bytes().to_vec();
        for c in cells {
            match c {
                None => v.push(b'n'),
                Some(b"~") => v.push(b'u'),
                Some(x) => {
                    v.push(b'b');
                    v.extend((x.len() as u32).to_be_bytes());
                    v.extend(*x);
                }
            }
        }
        v
    }

    #[test]
    fn relation_and_rows() {
        let mut r = vec![b'R'];
        r.extend(16384u32.to_be_bytes());
        r.extend(b"public\0orders\0f");
        r.extend(2u16.to_be_bytes());
        r.extend(b"\x01id\0");
        r.extend(20u32.to_be_bytes());
        r.extend((-1i32).to_be_bytes());
        r.extend(b"\x00body\0");
        r.extend(25u32.to_be_bytes());
        r.extend((-1i32).to_be_bytes());
        let Message::Relation(rel) = decode(Bytes::from(r)).unwrap() else {
            panic!("not a relation")
        };
        assert_eq!(
            (rel.schema.as_str(), rel.name.as_str()),
            ("public", "orders")
        );
        assert_eq!(rel.identity, b'f');
        assert!(rel.columns[0].key && !rel.columns[1].key);
        assert_eq!(rel.columns[1].type_oid, 25);
        assert_eq!(rel.columns[1].typmod, -1);

        let mut u = vec![b'U'];
        u.extend(16384u32.to_be_bytes());
        u.push(b'O');
        u.extend(tuple(&[Some(&1i64.to_be_bytes()), None]));
        u.push(b'N');
        u.extend(tuple(&[Some(&1i64.to_be_bytes()), Some(b"~")]));
        let Message::Update { rel, old, new } = decode(Bytes::from(u)).unwrap() else {
            panic!("not an update")
        };
        assert_eq!(rel, 16384);
        let (kind, old) = old.unwrap();
        assert_eq!(kind, Old::Full);
        assert_eq!(old[1], Cell::Null);
        assert_eq!(new[1], Cell::Unchanged);
        assert_eq!(
            new[0],
            Cell::Binary(Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 1]))
        );

        let mut t = vec![b'T'];
        t.extend(2u32.to_be_bytes());
        t.push(0);
        t.extend(1u32.to_be_bytes());
        t.extend(2u32.to_be_bytes());
        assert_eq!(
            decode(Bytes::from(t)).unwrap(),
            Message::Truncate { rels: vec![1, 2] }
        );
    }

    #[test]
    fn truncated_messages_are_errors_not_panics() {
        let mut i = vec![b'I'];
        i.extend(7u32.to_be_bytes());
        i.push(b'N');
        i.extend(tuple(&[Some(b"hello")]));
        for n in 0..i.len() {
            assert!(
                decode(Bytes::copy_from_slice(&i[..n])).is_err(),
                "{n} bytes"
            );
        }
        assert!(decode(Bytes::from(i)).is_ok());
        // A length that points past the end.
        let mut bad = vec![b'I', 0, 0, 0, 7, b'N', 0, 1, b't'];
        bad.extend(u32::MAX.to_be_bytes());
        assert!(decode(Bytes::from(bad)).is_err());
    }
}
