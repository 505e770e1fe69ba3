//! Debezium's envelope vocabulary: the Connect schema names of its value encodings, and
//! the byte codings of decimals, shared by the reader and the writer so that both agree.
//! The table of encodings is in the [`kafka`](crate::kafka) module's documentation.
use crate::{Error, Result};
use arrow_buffer::i256;

/// The value Debezium sends for a column it did not read (unchanged TOAST).
pub(crate) const UNAVAILABLE_VALUE: &str = "__debezium_unavailable_value";

/// Connect's decimal.
pub(crate) const DECIMAL: &str = "org.apache.kafka.connect.data.Decimal";
/// Debezium's unconstrained numeric.
pub(crate) const VARIABLE_SCALE_DECIMAL: &str = "io.debezium.data.VariableScaleDecimal";
/// Days since 1970-01-01.
pub(crate) const DATE: &str = "io.debezium.time.Date";
/// Milliseconds since midnight.
pub(crate) const TIME: &str = "io.debezium.time.Time";
/// Microseconds since midnight.
pub(crate) const MICRO_TIME: &str = "io.debezium.time.MicroTime";
/// Nanoseconds since midnight.
pub(crate) const NANO_TIME: &str = "io.debezium.time.NanoTime";
/// Milliseconds since the epoch, no zone.
pub(crate) const TIMESTAMP: &str = "io.debezium.time.Timestamp";
/// Microseconds since the epoch, no zone.
pub(crate) const MICRO_TIMESTAMP: &str = "io.debezium.time.MicroTimestamp";
/// Nanoseconds since the epoch, no zone.
pub(crate) const NANO_TIMESTAMP: &str = "io.debezium.time.NanoTimestamp";
/// ISO 8601 timestamp with its offset.
pub(crate) const ZONED_TIMESTAMP: &str = "io.debezium.time.ZonedTimestamp";
/// ISO 8601 time with its offset.
pub(crate) const ZONED_TIME: &str = "io.debezium.time.ZonedTime";
/// Microseconds of a duration.
pub(crate) const MICRO_DURATION: &str = "io.debezium.time.MicroDuration";
/// JSON text.
pub(crate) const JSON: &str = "io.debezium.data.Json";
/// UUID text.
pub(crate) const UUID: &str = "io.debezium.data.Uuid";
/// A set's labels, comma-separated.
/// Bit strings, bytes.
/// Connect's date (days).
pub(crate) const CONNECT_DATE: &str = "org.apache.kafka.connect.data.Date";
/// Connect's time (ms).
pub(crate) const CONNECT_TIME: &str = "org.apache.kafka.connect.data.Time";
/// Connect's timestamp (ms since the epoch, UTC).
pub(crate) const CONNECT_TIMESTAMP: &str = "org.apache.kafka.connect.data.Timestamp";

/// The unscaled integer of a Connect decimal: big-endian two's complement, any length up
/// to 32 bytes.
pub(crate) fn decimal_from_bytes(b: &[u8]) -> Result<i256> {
    if b.is_empty() || b.len() > 32 {
        return Err(Error::type_error(
            "kafka",
            format!("a decimal of {} bytes (1 to 32 expected)", b.len()),
        ));
    }
    let fill = if b[0] & 0x80 != 0 { 0xff } else { 0 };
    let mut le = [fill; 32];
    for (i, byte) in b.iter().rev().enumerate() {
        le[i] = *byte;
    }
    Ok(i256::from_le_bytes(le))
}

/// The shortest big-endian two's complement bytes of `v` (what Connect writes).
pub(crate) fn decimal_to_bytes(v: i256) -> Vec<u8> {
    let le = v.to_le_bytes();
    let neg = v < i256::ZERO;
    let fill = if neg { 0xff } else { 0 };
    let mut n = 32;
    // Drop leading fill bytes while the next byte still carries the sign.
    while n > 1 && le[n - 1] == fill && ((le[n - 2] & 0x80 != 0) == neg) {
        n -= 1;
    }
    le[..n].iter().rev().copied().collect()
}

/// `unscaled × 10^-scale` as exact decimal text (`-12.340`).
pub(crate) fn decimal_text(unscaled: i256, scale: i32) -> String {
    let neg = unscaled < i256::ZERO;
    let digits = unscaled.wrapping_abs().to_string();
    let digits = digits.trim_start_matches('-');
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if scale <= 0 {
        out.push_str(digits);
        if digits != "0" {
            out.extend(std::iter::repeat_n('0', (-scale) as usize));
        }
    } else {
        let s = scale as usize;
        if digits.len() <= s {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', s - digits.len()));
            out.push_str(digits);
        } else {
            out.push_str(&digits[..digits.len() - s]);
            out.push('.');
            out.push_str(&digits[digits.len() - s..]);
        }
    }
    out
}

/// Exact decimal text (`-12.340`, `1e3` not accepted) as its unscaled integer and scale.
pub(crate) fn parse_decimal_text(t: &str) -> Option<(i256, i32)> {
    let t = t.trim();
    let (neg, body) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let digits = format!("{int}{frac}");
    let v = i256::from_string(if digits.is_empty() { "0" } else { &digits })?;
    Some((if neg { v.wrapping_neg() } else { v }, frac.len() as i32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_bytes_round_trip_and_match_connect() {
        // Debezium's documentation: AJw= is 156, i.e. 1.56 at scale 2.
        assert_eq!(
            decimal_from_bytes(&[0x00, 0x9c]).unwrap(),
            i256::from_i128(156)
        );
        assert_eq!(decimal_to_bytes(i256::from_i128(156)), vec![0x00, 0x9c]);
        for v in [
            0i128,
            1,
            -1,
            127,
            128,
            -128,
            -129,
            255,
            256,
            i64::MAX as i128,
            -(1i128 << 100),
        ] {
            let b = decimal_to_bytes(i256::from_i128(v));
            assert_eq!(
                decimal_from_bytes(&b).unwrap(),
                i256::from_i128(v),
                "{v}: {b:?}"
            );
        }
        assert_eq!(decimal_to_bytes(i256::from_i128(-1)), vec![0xff]);
        assert_eq!(decimal_to_bytes(i256::from_i128(128)), vec![0x00, 0x80]);
        assert!(decimal_from_bytes(&[]).is_err());
    }

    #[test]
    fn decimal_text_both_ways() {
        assert_eq!(decimal_text(i256::from_i128(156), 2), "1.56");
        assert_eq!(decimal_text(i256::from_i128(-5), 3), "-0.005");
        assert_eq!(decimal_text(i256::from_i128(12), 0), "12");
        assert_eq!(decimal_text(i256::from_i128(12), -2), "1200");
        assert_eq!(
            parse_decimal_text("-12.340"),
            Some((i256::from_i128(-12340), 3))
        );
        assert_eq!(parse_decimal_text("7"), Some((i256::from_i128(7), 0)));
        assert_eq!(parse_decimal_text("1e3"), None);
        assert_eq!(parse_decimal_text("NaN"), None);
    }
}
