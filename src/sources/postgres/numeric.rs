//! PostgreSQL's binary `numeric` (base-10000 digits, a weight, a sign and a display
//! scale) as exact text, or straight as the unscaled i128 of an Arrow decimal: the typed
//! path does the latter once per value of every `numeric(p ≤ 38, s)` column, so it builds
//! no text and allocates nothing.

use crate::{Error, Result};
use std::fmt::Write;

const NEGATIVE: u16 = 0x4000;

/// A binary numeric's header and digits, checked for length.
struct Numeric<'a> {
    weight: i32,
    sign: u16,
    dscale: usize,
    /// `ndigits` big-endian i16 base-10000 digits, the first of weight `weight`.
    digits: &'a [u8],
}

fn malformed(column: &str) -> Error {
    Error::type_error(
        "postgres",
        format!("column {column}: malformed numeric value"),
    )
}

impl<'a> Numeric<'a> {
    fn parse(x: &'a [u8], column: &str) -> Result<Self> {
        let rd = |i: usize| u16::from_be_bytes([x[i], x[i + 1]]);
        if x.len() < 8 {
            return Err(malformed(column));
        }
        let ndigits = rd(0) as usize;
        let digits = x.get(8..8 + 2 * ndigits).ok_or_else(|| malformed(column))?;
        Ok(Numeric {
            weight: rd(2) as i16 as i32,
            sign: rd(4),
            dscale: rd(6) as usize,
            digits,
        })
    }

    fn ndigits(&self) -> usize {
        self.digits.len() / 2
    }

    /// The digit of weight `weight - i` (0 outside the stored ones).
    fn digit(&self, i: i32) -> i16 {
        if i >= 0 && (i as usize) < self.ndigits() {
            let i = 2 * i as usize;
            i16::from_be_bytes([self.digits[i], self.digits[i + 1]])
        } else {
            0
        }
    }

    fn special(&self) -> Option<&'static str> {
        match self.sign {
            0xC000 => Some("NaN"),
            0xD000 => Some("Infinity"),
            0xF000 => Some("-Infinity"),
            _ => None,
        }
    }
}

/// The exact decimal text of a binary `numeric`.
pub(crate) fn numeric_text(x: &[u8], column: &str) -> Result<String> {
    let n = Numeric::parse(x, column)?;
    if let Some(s) = n.special() {
        return Ok(s.into());
    }
    let mut s = String::with_capacity(4 * (n.ndigits() + 2));
    if n.sign == NEGATIVE {
        s.push('-');
    }
    // Writing to a String cannot fail.
    if n.weight < 0 {
        s.push('0');
    } else {
        let _ = write!(s, "{}", n.digit(0));
        for i in 1..=n.weight {
            let _ = write!(s, "{:04}", n.digit(i));
        }
    }
    if n.dscale > 0 {
        s.push('.');
        let start = s.len();
        let mut i = n.weight + 1;
        while s.len() - start < n.dscale {
            let _ = write!(s, "{:04}", n.digit(i));
            i += 1;
        }
        s.truncate(start + n.dscale);
    }
    Ok(s)
}

/// A binary `numeric` at `scale` as the unscaled i128 of a `Decimal128` (`123.45` at 2
/// is 12345). `Ok(None)` when it does not fit: NaN, ±Infinity, more fraction digits than
/// `scale`, or beyond i128.
pub(crate) fn numeric_unscaled_i128(x: &[u8], scale: usize, column: &str) -> Result<Option<i128>> {
    let n = Numeric::parse(x, column)?;
    if n.special().is_some() || n.dscale > scale {
        return Ok(None);
    }
    if n.sign != 0 && n.sign != NEGATIVE {
        return Err(malformed(column));
    }
    let mut acc: i128 = 0;
    for i in 0..n.ndigits() as i32 {
        let d = n.digit(i);
        if !(0..10_000).contains(&d) {
            return Err(malformed(column));
        }
        match acc
            .checked_mul(10_000)
            .and_then(|a| a.checked_add(d as i128))
        {
            Some(a) => acc = a,
            None => return Ok(None),
        }
    }
    if acc == 0 {
        return Ok(Some(0));
    }
    // `acc` is the value times 10^k; the decimal wants it times 10^scale.
    let k = 4 * (n.ndigits() as i64 - 1 - n.weight as i64);
    let shift = scale as i64 - k;
    let pow = |e: i64| u32::try_from(e).ok().and_then(|e| 10i128.checked_pow(e));
    let unscaled = if shift >= 0 {
        pow(shift).and_then(|p| acc.checked_mul(p))
    } else {
        // Zeros past the display scale in the last base-10000 digit (0.5 is 5000 at
        // weight -1): anything else there is a digit the scale cannot hold.
        pow(-shift).and_then(|p| (acc % p == 0).then(|| acc / p))
    };
    Ok(unscaled.map(|u| if n.sign == NEGATIVE { -u } else { u }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A binary numeric from its parts.
    fn enc(weight: i16, sign: u16, dscale: u16, digits: &[i16]) -> Vec<u8> {
        let mut x = Vec::new();
        x.extend_from_slice(&(digits.len() as u16).to_be_bytes());
        x.extend_from_slice(&weight.to_be_bytes());
        x.extend_from_slice(&sign.to_be_bytes());
        x.extend_from_slice(&dscale.to_be_bytes());
        for d in digits {
            x.extend_from_slice(&d.to_be_bytes());
        }
        x
    }

    #[test]
    fn binary_numerics_become_text_and_unscaled_values_that_agree() {
        let cases: &[(Vec<u8>, &str, usize, Option<i128>)] = &[
            (enc(0, 0, 2, &[123, 4500]), "123.45", 2, Some(12345)),
            (enc(-1, NEGATIVE, 2, &[500]), "-0.05", 2, Some(-5)),
            (enc(1, 0, 0, &[1]), "10000", 0, Some(10_000)),
            (enc(1, 0, 0, &[1]), "10000", 3, Some(10_000_000)),
            (enc(0, 0, 0, &[]), "0", 4, Some(0)),
            (enc(-1, 0, 1, &[5000]), "0.5", 1, Some(5)),
            (enc(-1, 0, 1, &[5000]), "0.5", 4, Some(5000)),
            (enc(0, 0, 3, &[7, 1230]), "7.123", 2, None), // more fraction digits than the scale
            (enc(0, 0xC000, 0, &[]), "NaN", 2, None),
            (enc(0, 0xF000, 0, &[]), "-Infinity", 2, None),
            // 10^40: beyond i128 at any scale.
            (
                enc(10, 0, 0, &[1]),
                &format!("1{}", "0".repeat(40)),
                0,
                None,
            ),
        ];
        for (x, text, scale, want) in cases {
            assert_eq!(numeric_text(x, "c").unwrap(), *text);
            assert_eq!(
                numeric_unscaled_i128(x, *scale, "c").unwrap(),
                *want,
                "{text}"
            );
            // The text path of the shared parser says the same.
            if text
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
            {
                assert_eq!(
                    crate::sources::sql::decimal::unscaled_i128(text, *scale),
                    *want
                );
            }
        }
        // 38 nines, the widest Decimal128.
        let nines: Vec<i16> = std::iter::once(99).chain([9999; 9]).collect();
        let x = enc(9, 0, 0, &nines);
        assert_eq!(
            numeric_unscaled_i128(&x, 0, "c").unwrap(),
            Some("9".repeat(38).parse().unwrap())
        );
    }

    #[test]
    fn malformed_numerics_are_type_errors() {
        for x in [
            vec![0u8; 5],
            enc(0, 0, 0, &[1])[..9].to_vec(),
            enc(0, 0, 0, &[12000]),
        ] {
            let e = numeric_unscaled_i128(&x, 2, "amount").unwrap_err();
            assert!(
                e.to_string().contains("column amount: malformed numeric"),
                "{e}"
            );
        }
        assert!(numeric_unscaled_i128(&enc(0, 0x1234, 0, &[1]), 0, "c").is_err());
    }
}
