//! A server's DECIMAL/NUMERIC text (`-123.45`) as the unscaled integer of an Arrow
//! decimal at the column's scale (`-12345` at 2), for the MySQL and PostgreSQL drivers.
//! This runs once per value of every decimal column, so the 38-digit case allocates
//! nothing.

use arrow_buffer::i256;

/// The sign, integer digits and fraction digits of `text`, when it is a plain decimal
/// with at most `scale` fraction digits (`NaN`, `Infinity`, exponents and junk are not).
fn parts(text: &str, scale: usize) -> Option<(bool, &str, &str)> {
    let (neg, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let plain = int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit());
    (plain && frac.len() <= scale && int.len() + frac.len() > 0).then_some((neg, int, frac))
}

/// `text` at `scale` as an i128 (precision ≤ 38); `None` when it is not a plain decimal,
/// has more fraction digits than `scale`, or overflows.
pub(crate) fn unscaled_i128(text: &str, scale: usize) -> Option<i128> {
    let (neg, int, frac) = parts(text, scale)?;
    let mut acc: i128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        acc = acc.checked_mul(10)?.checked_add((b - b'0') as i128)?;
    }
    for _ in frac.len()..scale {
        acc = acc.checked_mul(10)?;
    }
    Some(if neg { -acc } else { acc })
}

/// `text` at `scale` as an i256 (precision above 38, up to MySQL's 65 and beyond);
/// `None` as for [`unscaled_i128`].
pub(crate) fn unscaled_i256(text: &str, scale: usize) -> Option<i256> {
    // Most values of a wide column fit 38 digits: those need no padded copy of the text.
    if let Some(v) = unscaled_i128(text, scale) {
        return Some(i256::from_i128(v));
    }
    let (neg, int, frac) = parts(text, scale)?;
    let sign = if neg { "-" } else { "" };
    i256::from_string(&format!(
        "{sign}{int}{frac}{}",
        "0".repeat(scale - frac.len())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_parse_to_their_unscaled_value() {
        assert_eq!(unscaled_i128("123.45", 2), Some(12345));
        assert_eq!(unscaled_i128("-123.45", 2), Some(-12345));
        assert_eq!(unscaled_i128("-0.05", 2), Some(-5));
        assert_eq!(unscaled_i128("7", 2), Some(700));
        assert_eq!(unscaled_i128("7.5", 3), Some(7500));
        assert_eq!(unscaled_i128("0", 0), Some(0));
        let max38 = "9".repeat(38);
        assert_eq!(unscaled_i128(&max38, 0), Some(max38.parse().unwrap()));
        let wide = format!("-{}.5", "9".repeat(60));
        let want = i256::from_string(&format!("-{}50", "9".repeat(60)));
        assert_eq!(unscaled_i256(&wide, 2), want);
        assert_eq!(unscaled_i256("7", 2), Some(i256::from_i128(700)));
    }

    #[test]
    fn malformed_or_too_precise_decimals_are_refused() {
        for f in [unscaled_i128, |t: &str, s| {
            unscaled_i256(t, s).map(|v| v.as_i128())
        }] {
            assert_eq!(f("1.234", 2), None);
            assert_eq!(f("", 2), None);
            assert_eq!(f("-", 2), None);
            assert_eq!(f("1e5", 2), None);
            assert_eq!(f("12a.00", 2), None);
            assert_eq!(f("NaN", 2), None);
            assert_eq!(f("-Infinity", 2), None);
        }
        assert_eq!(unscaled_i128(&"9".repeat(40), 0), None);
    }
}
