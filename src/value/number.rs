//! Numbers, decimals, binary and UUIDs as text.

use super::BinaryEncoding;
use base64::Engine;

#[inline]
pub(super) fn push_int<T: itoa::Integer>(out: &mut Vec<u8>, v: T) {
    let mut buf = itoa::Buffer::new();
    out.extend_from_slice(buf.format(v).as_bytes());
}

pub(super) fn push_f32(out: &mut Vec<u8>, v: f32, json: bool) {
    if !v.is_finite() {
        return push_non_finite(out, v as f64, json);
    }
    // ryu's f32 path gives the shortest text that reads back as the same f32.
    let mut buf = ryu::Buffer::new();
    let short = buf.format_finite(v);
    let bits = v.abs().to_bits();
    let (exp, frac) = ((bits >> 23) as i32, (bits & 0x7f_ffff) as u128);
    if exp >= 127 + 24 && is_tie(short, exp - 127 - 23, frac, 23) {
        return push_shortest(
            out,
            &no_tie(
                |n| format!("{v:.n$e}"),
                |t| t.parse::<f32>().ok() == Some(v),
                |t| is_tie(t, exp - 127 - 23, frac, 23),
            ),
            6,
        );
    }
    push_shortest(out, short, 6);
}

pub(super) fn push_float(out: &mut Vec<u8>, v: f64, json: bool) {
    if !v.is_finite() {
        return push_non_finite(out, v, json);
    }
    let mut buf = ryu::Buffer::new();
    let short = buf.format_finite(v);
    let bits = v.abs().to_bits();
    let (exp, frac) = ((bits >> 52) as i32, (bits & 0xf_ffff_ffff_ffff) as u128);
    if exp >= 1023 + 53 && exp - 1023 < 126 && is_tie(short, exp - 1023 - 52, frac, 52) {
        return push_shortest(
            out,
            &no_tie(
                |n| format!("{v:.n$e}"),
                |t| t.parse::<f64>().ok() == Some(v),
                |t| is_tie(t, exp - 1023 - 52, frac, 52),
            ),
            15,
        );
    }
    push_shortest(out, short, 15);
}

/// Whether decimal text `t` lies exactly on a rounding boundary of the float whose
/// magnitude is `(2^mbits + frac) * 2^shift` (an integer: `shift >= 1`). ryu accepts such
/// a boundary as "shortest"; PostgreSQL does not, and prints more digits.
pub(super) fn is_tie(t: &str, shift: i32, frac: u128, mbits: u32) -> bool {
    let Some(d) = decimal_to_u128(t.trim_start_matches('-')) else {
        return false;
    };
    let m = (1u128 << mbits) | frac;
    let v = m << shift;
    let half = 1u128 << (shift - 1);
    // Just below a power of two the lower neighbour is half as far.
    let lower_half = if frac == 0 { half / 2 } else { half };
    d == v + half || (lower_half > 0 && d == v - lower_half)
}

/// The value of decimal text like `3.603015064767306e16` if it is a whole number that
/// fits in a u128.
pub(super) fn decimal_to_u128(t: &str) -> Option<u128> {
    let (mant, exp) = match t.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().ok()?),
        None => (t, 0),
    };
    let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
    let frac = frac.trim_end_matches('0');
    let digits = format!("{int}{frac}");
    let scale = exp - frac.len() as i32;
    if scale < 0 {
        return None; // a fraction: not a boundary of an integer-valued float
    }
    let mut v: u128 = digits.parse().ok()?;
    for _ in 0..scale {
        v = v.checked_mul(10)?;
    }
    Some(v)
}

/// The shortest correctly rounded representation (17 digits at most) that reads back as
/// the value and is not a boundary: what PostgreSQL prints.
pub(super) fn no_tie(
    render: impl Fn(usize) -> String,
    reads_back: impl Fn(&str) -> bool,
    tie: impl Fn(&str) -> bool,
) -> String {
    for n in 1..17 {
        let t = render(n);
        if reads_back(&t) && !tie(&t) {
            return t;
        }
    }
    render(16)
}

pub(super) fn push_non_finite(out: &mut Vec<u8>, v: f64, json: bool) {
    let text: &[u8] = if v.is_nan() {
        b"NaN"
    } else if v > 0.0 {
        b"Infinity"
    } else {
        b"-Infinity"
    };
    if json {
        out.push(b'"');
        out.extend_from_slice(text);
        out.push(b'"');
    } else {
        out.extend_from_slice(text);
    }
}

/// Re-lay ryu's shortest digits the way PostgreSQL prints floats: plain notation when
/// the decimal exponent is in `-4..precision` (6 for float4, 15 for float8), else
/// `d.ddde+XX` with at least two exponent digits; no trailing `.0`.
pub(super) fn push_shortest(out: &mut Vec<u8>, ryu: &str, precision: i32) {
    let (neg, body) = match ryu.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, ryu),
    };
    let (mantissa, exp) = match body.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (body, 0),
    };
    let int_len = mantissa.find('.').unwrap_or(mantissa.len()) as i32;
    let all: Vec<u8> = mantissa.bytes().filter(|b| *b != b'.').collect();
    let lead = all.iter().take_while(|b| **b == b'0').count();
    let digits = all[lead..].to_vec();
    let trimmed_len = digits.len() - digits.iter().rev().take_while(|b| **b == b'0').count();
    let digits = &digits[..trimmed_len];
    if neg {
        out.push(b'-');
    }
    if digits.is_empty() {
        out.push(b'0');
        return;
    }
    // value = d1.d2d3... x 10^x
    let x = int_len - 1 - lead as i32 + exp;
    if (-4..precision).contains(&x) {
        if x >= 0 {
            let int_digits = (x + 1) as usize;
            for i in 0..int_digits {
                out.push(*digits.get(i).unwrap_or(&b'0'));
            }
            if digits.len() > int_digits {
                out.push(b'.');
                out.extend_from_slice(&digits[int_digits..]);
            }
        } else {
            out.extend_from_slice(b"0.");
            out.extend(std::iter::repeat_n(b'0', (-x - 1) as usize));
            out.extend_from_slice(digits);
        }
    } else {
        out.push(digits[0]);
        if digits.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.push(b'e');
        out.push(if x < 0 { b'-' } else { b'+' });
        let e = x.unsigned_abs();
        if e < 10 {
            out.push(b'0');
        }
        push_int(out, e);
    }
}

/// Insert the decimal point into an integer's digits.
pub(super) fn push_decimal(out: &mut Vec<u8>, digits: &str, scale: i8) {
    let (neg, digits) = match digits.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, digits),
    };
    if neg {
        out.push(b'-');
    }
    if scale <= 0 {
        out.extend_from_slice(digits.as_bytes());
        if digits != "0" {
            out.extend(std::iter::repeat_n(b'0', (-scale) as usize));
        }
        return;
    }
    let scale = scale as usize;
    if digits.len() > scale {
        let (int, frac) = digits.split_at(digits.len() - scale);
        out.extend_from_slice(int.as_bytes());
        out.push(b'.');
        out.extend_from_slice(frac.as_bytes());
    } else {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', scale - digits.len()));
        out.extend_from_slice(digits.as_bytes());
    }
}

pub(super) fn push_binary(out: &mut Vec<u8>, v: &[u8], enc: BinaryEncoding) {
    match enc {
        BinaryEncoding::PostgresHex => {
            out.extend_from_slice(b"\\x");
            push_hex(out, v);
        }
        BinaryEncoding::Hex => push_hex(out, v),
        BinaryEncoding::Base64 => {
            let start = out.len();
            out.resize(start + v.len().div_ceil(3) * 4, 0);
            let n = base64::engine::general_purpose::STANDARD
                .encode_slice(v, &mut out[start..])
                .expect("buffer sized for base64");
            out.truncate(start + n);
        }
    }
}

pub(super) fn push_hex(out: &mut Vec<u8>, v: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(v.len() * 2);
    for b in v {
        out.push(HEX[(b >> 4) as usize]);
        out.push(HEX[(b & 0xf) as usize]);
    }
}

pub(super) fn push_uuid(out: &mut Vec<u8>, v: &[u8]) {
    for (i, chunk) in [&v[0..4], &v[4..6], &v[6..8], &v[8..10], &v[10..16]]
        .iter()
        .enumerate()
    {
        if i > 0 {
            out.push(b'-');
        }
        push_hex(out, chunk);
    }
}

#[inline]
pub(super) fn push_2(out: &mut Vec<u8>, v: u32) {
    out.push(b'0' + (v / 10) as u8);
    out.push(b'0' + (v % 10) as u8);
}
