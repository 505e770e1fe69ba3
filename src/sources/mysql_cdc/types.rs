//! Binlog row images to Arrow, with the same Arrow types as the typed SQL path
//! ([`sources::mysql::types`](crate::sources::mysql::types)) for the same table.
//!
//! Row images are decoded here from the raw bytes of the rows event, with every read
//! bounds-checked, rather than through `mysql_common`'s row decoder: that decoder panics
//! (debug) or returns garbage (release) on negative `TIME(1)`/`TIME(2)` values with a
//! fraction, and it builds an intermediate value per cell.
//!
//! | binlog column | Arrow |
//! |---|---|
//! | `TINY`…`LONGLONG`, signedness from the row metadata | Int8…Int64, UInt8…UInt64 |
//! | `NEWDECIMAL(p,s)` | Decimal128(p,s) for p ≤ 38, else Decimal256(p,s) |
//! | `FLOAT`, `DOUBLE` | Float32, Float64 |
//! | `DATE` | Date32 |
//! | `DATETIME`, `DATETIME2(fsp)` | Timestamp(µs) |
//! | `TIMESTAMP`, `TIMESTAMP2(fsp)` | Timestamp(µs, "+00:00") |
//! | `TIME`, `TIME2(fsp)` (negative too) | Duration(µs) |
//! | `YEAR` | Int16 |
//! | `BIT(n)` | UInt64 |
//! | `ENUM`, `SET` | Utf8, the member names (from the row metadata) |
//! | `CHAR`, `VARCHAR`, `TEXT`s in a character set | Utf8 (MariaDB's `JSON` marked `arrow.json`) |
//! | the same in the `binary` character set (`BINARY`, `VARBINARY`, `BLOB`s) | Binary |
//!
//! MySQL's binary `JSON` and spatial types are errors naming the column.

pub(crate) use super::layout::{Col, Kind, Layout};
use crate::Error;
use crate::sources::mysql::types::{Dec, zero_date};
use arrow_array::builder::*;
use arrow_buffer::i256;

/// The latin1 collations (MySQL's latin1 is stored byte per character).
const LATIN1: [u16; 8] = [5, 8, 15, 31, 47, 48, 49, 94];

/// A bounds-checked reader over a row image.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// A row image ended early or holds a value no column type allows.
#[derive(Debug)]
pub(crate) struct Malformed(pub String);

type R<T> = std::result::Result<T, Malformed>;

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(crate) fn take(&mut self, n: usize) -> R<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(Malformed(format!(
                "row image ends after {} bytes, {} more needed",
                self.buf.len(),
                n
            ))),
        }
    }

    fn le(&mut self, n: usize) -> R<u64> {
        Ok(self
            .take(n)?
            .iter()
            .rev()
            .fold(0u64, |a, b| (a << 8) | *b as u64))
    }

    fn be(&mut self, n: usize) -> R<u64> {
        Ok(self.take(n)?.iter().fold(0u64, |a, b| (a << 8) | *b as u64))
    }
}

/// Fractional seconds of a `DATETIME2`/`TIMESTAMP2`/`TIME2` with `fsp` digits, in µs.
fn frac_us(r: &mut Reader<'_>, fsp: u8) -> R<i64> {
    Ok(match fsp {
        0 => 0,
        1 | 2 => r.be(1)? as i64 * 10_000,
        3 | 4 => r.be(2)? as i64 * 100,
        _ => r.be(3)? as i64,
    })
}

/// `TIME2` as signed microseconds, following the server's `my_time_packed_from_binary`
/// (a negative value with a fraction borrows one second from the integer part).
fn time2_us(r: &mut Reader<'_>, fsp: u8) -> R<i64> {
    const INT_OFS: i64 = 0x80_0000;
    let packed: i64 = match fsp {
        0 => (r.be(3)? as i64 - INT_OFS) << 24,
        1 | 2 => {
            let mut int = r.be(3)? as i64 - INT_OFS;
            let mut frac = r.be(1)? as i64;
            if int < 0 && frac != 0 {
                int += 1;
                frac -= 0x100;
            }
            (int << 24) + frac * 10_000
        }
        3 | 4 => {
            let mut int = r.be(3)? as i64 - INT_OFS;
            let mut frac = r.be(2)? as i64;
            if int < 0 && frac != 0 {
                int += 1;
                frac -= 0x1_0000;
            }
            (int << 24) + frac * 100
        }
        _ => r.be(6)? as i64 - 0x8000_0000_0000,
    };
    let neg = packed < 0;
    let p = packed.unsigned_abs() as i64;
    let hms = p >> 24;
    let us = p & 0xFF_FFFF;
    let (h, m, s) = ((hms >> 12) & 0x3FF, (hms >> 6) & 0x3F, hms & 0x3F);
    let v = (h * 3600 + m * 60 + s) * 1_000_000 + us;
    Ok(if neg { -v } else { v })
}

/// The digits of a binary `DECIMAL(p,s)` as the unscaled integer, in 9-digit words.
fn decimal_words(r: &mut Reader<'_>, p: u8, s: u8) -> R<(bool, Vec<(u32, u32)>)> {
    const DIG2BYTES: [usize; 10] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];
    let (p, s) = (p as usize, s as usize);
    if s > p || p > 65 {
        return Err(Malformed(format!("DECIMAL({p},{s}) is not a valid type")));
    }
    let intg = p - s;
    let (intg0, intg0x, frac0, frac0x) = (intg / 9, intg % 9, s / 9, s % 9);
    let size = intg0 * 4 + DIG2BYTES[intg0x] + frac0 * 4 + DIG2BYTES[frac0x];
    let mut b = r.take(size)?.to_vec();
    if b.is_empty() {
        return Ok((false, Vec::new()));
    }
    let neg = b[0] & 0x80 == 0;
    b[0] ^= 0x80;
    if neg {
        b.iter_mut().for_each(|x| *x = !*x);
    }
    let mut rd = Reader::new(&b);
    let mut words = Vec::with_capacity(intg0 + frac0 + 2);
    let mut word = |rd: &mut Reader<'_>, bytes: usize, digits: u32| -> R<()> {
        let w = rd.be(bytes)? as u32;
        if w >= 10u32.pow(digits) {
            return Err(Malformed("a DECIMAL digit group is out of range".into()));
        }
        words.push((w, digits));
        Ok(())
    };
    if intg0x > 0 {
        word(&mut rd, DIG2BYTES[intg0x], intg0x as u32)?;
    }
    for _ in 0..intg0 {
        word(&mut rd, 4, 9)?;
    }
    for _ in 0..frac0 {
        word(&mut rd, 4, 9)?;
    }
    if frac0x > 0 {
        word(&mut rd, DIG2BYTES[frac0x], frac0x as u32)?;
    }
    Ok((neg, words))
}

fn days_since_epoch(y: i64, m: i64, d: i64) -> Option<i32> {
    let date = chrono::NaiveDate::from_ymd_opt(y as i32, m as u32, d as u32)?;
    Some((date - chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?).num_days() as i32)
}

fn datetime_us(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64, us: i64) -> Option<i64> {
    let date = chrono::NaiveDate::from_ymd_opt(y as i32, mo as u32, d as u32)?;
    let t = date.and_hms_micro_opt(h as u32, mi as u32, s as u32, us as u32)?;
    Some(t.and_utc().timestamp_micros())
}

/// What went wrong with one cell: the row image is malformed, or the value has no
/// Arrow form (a zero date). The caller adds the table and position.
pub(crate) enum CellError {
    Malformed(Malformed),
    Value(Error),
}

impl From<Malformed> for CellError {
    fn from(m: Malformed) -> Self {
        CellError::Malformed(m)
    }
}

/// Read one non-null value of `col` from `r` into `b` (skip it when `b` is `None`).
pub(crate) fn read_value(
    col: &Col,
    r: &mut Reader<'_>,
    b: Option<&mut dyn ArrayBuilder>,
) -> std::result::Result<(), CellError> {
    macro_rules! put {
        ($t:ty, $v:expr) => {{
            let v = $v;
            if let Some(b) = b {
                b.as_any_mut()
                    .downcast_mut::<$t>()
                    .expect("builder matches the column")
                    .append_value(v);
            }
        }};
    }
    let name = col.name.as_str();
    let value = |m: String| {
        CellError::Value(Error::type_error(
            "mysql-cdc",
            format!("column {name}: {m}"),
        ))
    };
    match &col.kind {
        Kind::Int { len, unsigned } => {
            let raw = r.le(*len as usize)?;
            let bits = *len as u32 * 8;
            let signed = ((raw << (64 - bits)) as i64) >> (64 - bits);
            match (&col.dec, unsigned) {
                (Dec::U8, _) => put!(UInt8Builder, raw as u8),
                (Dec::U16, _) => put!(UInt16Builder, raw as u16),
                (Dec::U32, _) => put!(UInt32Builder, raw as u32),
                (Dec::U64, _) => put!(UInt64Builder, raw),
                (Dec::I8, _) => put!(Int8Builder, signed as i8),
                (Dec::I16, _) => put!(Int16Builder, signed as i16),
                (Dec::I32, _) => put!(Int32Builder, signed as i32),
                _ => put!(Int64Builder, signed),
            }
        }
        Kind::Float => put!(Float32Builder, f32::from_bits(r.le(4)? as u32)),
        Kind::Double => put!(Float64Builder, f64::from_bits(r.le(8)?)),
        Kind::Decimal { precision, scale } => {
            let (neg, words) = decimal_words(r, *precision, *scale)?;
            if *precision <= 38 {
                let mut v: i128 = 0;
                for (w, d) in &words {
                    v = v * 10i128.pow(*d) + *w as i128;
                }
                put!(Decimal128Builder, if neg { -v } else { v })
            } else {
                let mut v = i256::ZERO;
                for (w, d) in &words {
                    v = v
                        .wrapping_mul(i256::from_i128(10i128.pow(*d)))
                        .wrapping_add(i256::from_i128(*w as i128));
                }
                put!(Decimal256Builder, if neg { v.wrapping_neg() } else { v })
            }
        }
        Kind::Date => {
            let v = r.le(3)? as i64;
            let d = days_since_epoch(v >> 9, (v >> 5) & 15, v & 31)
                .ok_or_else(|| CellError::Value(zero_date(name)))?;
            put!(Date32Builder, d)
        }
        Kind::DateTime2 { fsp } => {
            let int = r.be(5)? as i64 - 0x80_0000_0000;
            let us = frac_us(r, *fsp)?;
            let (ymd, hms) = (int >> 17, int & 0x1_FFFF);
            let (ym, d) = (ymd >> 5, ymd & 31);
            let t = datetime_us(
                ym / 13,
                ym % 13,
                d,
                hms >> 12,
                (hms >> 6) & 63,
                hms & 63,
                us,
            )
            .ok_or_else(|| CellError::Value(zero_date(name)))?;
            put!(TimestampMicrosecondBuilder, t)
        }
        Kind::DateTimeOld => {
            let v = r.le(8)? as i64;
            let (date, time) = (v / 1_000_000, v % 1_000_000);
            let t = datetime_us(
                date / 10_000,
                (date / 100) % 100,
                date % 100,
                time / 10_000,
                (time / 100) % 100,
                time % 100,
                0,
            )
            .ok_or_else(|| CellError::Value(zero_date(name)))?;
            put!(TimestampMicrosecondBuilder, t)
        }
        Kind::Timestamp2 { fsp } => {
            let secs = r.be(4)? as i64;
            let us = frac_us(r, *fsp)?;
            if secs == 0 && us == 0 {
                return Err(CellError::Value(zero_date(name)));
            }
            put!(TimestampMicrosecondBuilder, secs * 1_000_000 + us)
        }
        Kind::TimestampOld => {
            let secs = r.le(4)? as i64;
            if secs == 0 {
                return Err(CellError::Value(zero_date(name)));
            }
            put!(TimestampMicrosecondBuilder, secs * 1_000_000)
        }
        Kind::Time2 { fsp } => put!(DurationMicrosecondBuilder, time2_us(r, *fsp)?),
        Kind::TimeOld => {
            let raw = r.le(3)? as i64;
            let v = (raw << 40) >> 40;
            let a = v.abs();
            let us = ((a / 10_000) * 3600 + ((a / 100) % 100) * 60 + a % 100) * 1_000_000;
            put!(DurationMicrosecondBuilder, if v < 0 { -us } else { us })
        }
        Kind::Year => {
            let v = r.le(1)? as i16;
            put!(Int16Builder, if v == 0 { 0 } else { 1900 + v })
        }
        Kind::Bit { bytes } => put!(UInt64Builder, r.be(*bytes as usize)?),
        Kind::Enum { size, names } => {
            let i = r.le(*size as usize)? as usize;
            let s = match i {
                0 => "",
                i => names
                    .get(i - 1)
                    .ok_or_else(|| value(format!("ENUM index {i} has no member name")))?,
            };
            put!(StringBuilder, s)
        }
        Kind::Set { size, names } => {
            let bits = r.le(*size as usize)?;
            if let Some(b) = b {
                let mut s = String::new();
                for (k, n) in names.iter().enumerate().take(64) {
                    if bits & (1 << k) != 0 {
                        if !s.is_empty() {
                            s.push(',');
                        }
                        s.push_str(n);
                    }
                }
                b.as_any_mut()
                    .downcast_mut::<StringBuilder>()
                    .expect("builder matches the column")
                    .append_value(s);
            }
        }
        Kind::Bytes {
            prefix,
            charset,
            pad,
        } => {
            let len = r.le(*prefix as usize)? as usize;
            let bytes = r.take(len)?;
            let Some(b) = b else { return Ok(()) };
            if col.dec == Dec::Binary {
                let bb = b
                    .as_any_mut()
                    .downcast_mut::<BinaryBuilder>()
                    .expect("builder matches the column");
                if bytes.len() < *pad as usize {
                    let mut v = bytes.to_vec();
                    v.resize(*pad as usize, 0);
                    bb.append_value(v);
                } else {
                    bb.append_value(bytes);
                }
            } else {
                let sb = b
                    .as_any_mut()
                    .downcast_mut::<StringBuilder>()
                    .expect("builder matches the column");
                match std::str::from_utf8(bytes) {
                    Ok(s) => sb.append_value(s),
                    Err(_) if LATIN1.contains(charset) => {
                        sb.append_value(bytes.iter().map(|&c| c as char).collect::<String>())
                    }
                    Err(_) => {
                        return Err(value(format!(
                            "text in character set {charset} is not UTF-8; only utf8, utf8mb4, \
                             ascii and latin1 text is decoded"
                        )));
                    }
                }
            }
        }
        Kind::Unsupported { prefix, what } => {
            let len = r.le(*prefix as usize)? as usize;
            r.take(len)?;
            if b.is_some() {
                return Err(value(format!("{what} has no lossless Arrow value")));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(kind: Kind) -> Col {
        let dec = super::super::layout::dec_of(&kind, false);
        Col {
            name: "c".into(),
            kind,
            dec,
            nullable: true,
            key: None,
        }
    }

    fn one(kind: Kind, bytes: &[u8]) -> arrow_array::ArrayRef {
        let c = col(kind);
        let mut b = make_builder(&c.dec.data_type(), 1);
        let mut r = Reader::new(bytes);
        assert!(read_value(&c, &mut r, Some(b.as_mut())).is_ok());
        assert!(r.is_empty(), "every byte read");
        b.finish()
    }

    #[test]
    fn negative_time_with_a_fraction() {
        use arrow_array::cast::AsArray;
        use arrow_array::types::DurationMicrosecondType;
        // -00:00:01.5 as TIME(1), encoded as the server's my_time_packed_to_binary does:
        // integer part nr >> 24 (floor: -2), fraction byte (nr % 2^24) / 10000 as a char.
        let nr: i64 = -((1i64 << 24) | 500_000);
        let ip = ((nr >> 24) + 0x80_0000) as u32;
        let frac = ((nr % (1 << 24)) / 10_000) as i8 as u8;
        let bytes = [(ip >> 16) as u8, (ip >> 8) as u8, ip as u8, frac];
        let a = one(Kind::Time2 { fsp: 1 }, &bytes);
        assert_eq!(
            a.as_primitive::<DurationMicrosecondType>().value(0),
            -1_500_000
        );
    }

    #[test]
    fn decimal_digits_in_words() {
        use arrow_array::cast::AsArray;
        use arrow_array::types::Decimal128Type;
        // 1234567890.1234 as DECIMAL(14,4): int part 10 digits = 1 digit (1 byte) + 9 (4
        // bytes); fraction 4 digits (2 bytes); sign bit set for positive.
        let mut b = vec![0x80 | 1];
        b.extend_from_slice(&234_567_890u32.to_be_bytes());
        b.extend_from_slice(&1234u16.to_be_bytes());
        let a = one(
            Kind::Decimal {
                precision: 14,
                scale: 4,
            },
            &b,
        );
        assert_eq!(
            a.as_primitive::<Decimal128Type>().value(0),
            12_345_678_901_234
        );
        // The negative is every byte inverted.
        let neg: Vec<u8> = b.iter().map(|x| !x).collect();
        let a = one(
            Kind::Decimal {
                precision: 14,
                scale: 4,
            },
            &neg,
        );
        assert_eq!(
            a.as_primitive::<Decimal128Type>().value(0),
            -12_345_678_901_234
        );
    }

    #[test]
    fn a_short_image_is_an_error_not_a_panic() {
        let c = col(Kind::Int {
            len: 8,
            unsigned: false,
        });
        let mut b = make_builder(&c.dec.data_type(), 1);
        let mut r = Reader::new(&[1, 2, 3]);
        assert!(matches!(
            read_value(&c, &mut r, Some(b.as_mut())),
            Err(CellError::Malformed(_))
        ));
        let c = col(Kind::Bytes {
            prefix: 2,
            charset: 45,
            pad: 0,
        });
        let mut r = Reader::new(&[0xff, 0xff, b'a']);
        assert!(matches!(
            read_value(&c, &mut r, None),
            Err(CellError::Malformed(_))
        ));
    }
}
