//! Dates, times, timestamps, durations and intervals as text.

use super::TextStyle;
use super::Tz;
use super::number::{push_2, push_int};
use crate::{Error, Result};
use arrow_schema::TimeUnit;
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

pub(super) fn date_from_days(days: i64, column: &str) -> Result<NaiveDate> {
    NaiveDate::from_num_days_from_ce_opt((days + 719_163).try_into().unwrap_or(i32::MAX))
        .ok_or_else(|| {
            Error::type_error(
                "format",
                format!("column {column}: date out of range ({days} days)"),
            )
        })
}

/// `YYYY-MM-DD`. With `pg`, a year before 1 AD is written as PostgreSQL writes it, the
/// year counted back from 1 BC (`4713-01-01` for chrono's year -4712), and `true` is
/// returned: the caller appends ` BC` after the whole value, as PostgreSQL does. Without
/// `pg`, ISO 8601's expanded years (`-4712-01-01`).
pub(super) fn push_date(out: &mut Vec<u8>, d: NaiveDate, pg: bool) -> bool {
    let y = d.year();
    if pg && y <= 0 {
        let bc = 1 - y;
        if bc <= 9999 {
            push_2(out, (bc / 100) as u32);
            push_2(out, (bc % 100) as u32);
        } else {
            out.extend_from_slice(bc.to_string().as_bytes());
        }
        out.push(b'-');
        push_2(out, d.month());
        out.push(b'-');
        push_2(out, d.day());
        return true;
    }
    if (0..=9999).contains(&y) {
        push_2(out, (y / 100) as u32);
        push_2(out, (y % 100) as u32);
    } else {
        out.extend_from_slice(format!("{y:+05}").as_bytes());
    }
    out.push(b'-');
    push_2(out, d.month());
    out.push(b'-');
    push_2(out, d.day());
    false
}

/// ` BC` after a value whose date was before 1 AD (see [`push_date`]).
pub(super) fn push_era(out: &mut Vec<u8>, bc: bool) {
    if bc {
        out.extend_from_slice(b" BC");
    }
}

/// Fractional seconds, trailing zeros trimmed, nothing when zero.
pub(super) fn push_fraction(out: &mut Vec<u8>, nanos: u32) {
    if nanos == 0 {
        return;
    }
    let mut digits = [0u8; 9];
    let mut n = nanos;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
    let mut len = 9;
    while digits[len - 1] == b'0' {
        len -= 1;
    }
    out.push(b'.');
    out.extend_from_slice(&digits[..len]);
}

pub(super) fn push_time(out: &mut Vec<u8>, t: NaiveTime) {
    push_2(out, t.hour());
    out.push(b':');
    push_2(out, t.minute());
    out.push(b':');
    // A leap second shows as second 59 with nanos >= 1e9; print it as :60.
    let (sec, nanos) = if t.nanosecond() >= 1_000_000_000 {
        (60, t.nanosecond() - 1_000_000_000)
    } else {
        (t.second(), t.nanosecond())
    };
    push_2(out, sec);
    push_fraction(out, nanos);
}

pub(crate) fn push_time_nanos(out: &mut Vec<u8>, nanos: i64) {
    let secs = nanos.div_euclid(1_000_000_000);
    let frac = nanos.rem_euclid(1_000_000_000) as u32;
    match NaiveTime::from_num_seconds_from_midnight_opt(secs as u32, frac) {
        Some(t) if (0..86_400).contains(&secs) => push_time(out, t),
        _ => push_duration(out, nanos, TimeUnit::Nanosecond),
    }
}

pub(super) fn split_unit(v: i64, unit: TimeUnit) -> (i64, u32) {
    let per_sec: i64 = match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    };
    let nanos_per = 1_000_000_000 / per_sec;
    (
        v.div_euclid(per_sec),
        (v.rem_euclid(per_sec) * nanos_per) as u32,
    )
}

/// Date and time; `true` when ` BC` is owed at the end (see [`push_date`]).
pub(super) fn push_naive_datetime(out: &mut Vec<u8>, dt: NaiveDateTime, sep: u8, pg: bool) -> bool {
    let bc = push_date(out, dt.date(), pg);
    out.push(sep);
    push_time(out, dt.time());
    bc
}

pub(super) fn push_timestamp(
    out: &mut Vec<u8>,
    v: i64,
    unit: TimeUnit,
    tz: &Tz,
    style: &TextStyle,
    column: &str,
) -> Result<()> {
    let (sep, pg) = (style.date_time_sep, style.pg_text);
    let (secs, nanos) = split_unit(v, unit);
    let utc = DateTime::from_timestamp(secs, nanos).ok_or_else(|| {
        Error::type_error(
            "format",
            format!("column {column}: timestamp {v} out of range"),
        )
    })?;
    let bc = match tz {
        Tz::Naive => push_naive_datetime(out, utc.naive_utc(), sep, pg),
        Tz::Utc => {
            let bc = push_naive_datetime(out, utc.naive_utc(), sep, pg);
            push_offset(out, 0, sep == b'T');
            bc
        }
        Tz::Fixed(off) => {
            let bc = push_naive_datetime(out, utc.with_timezone(off).naive_local(), sep, pg);
            push_offset(out, off.local_minus_utc(), sep == b'T');
            bc
        }
    };
    push_era(out, bc);
    Ok(())
}

/// A UTC offset: `+HH:MM` in ISO/RFC 3339 form (JSON), or as PostgreSQL prints it in
/// text (`+HH`, or `+HH:MM` when there are minutes).
pub(crate) fn push_offset(out: &mut Vec<u8>, seconds_east: i32, full: bool) {
    out.push(if seconds_east < 0 { b'-' } else { b'+' });
    let s = seconds_east.unsigned_abs();
    push_2(out, s / 3600);
    if full || !(s / 60).is_multiple_of(60) || !s.is_multiple_of(60) {
        out.push(b':');
        push_2(out, (s / 60) % 60);
    }
    if !s.is_multiple_of(60) {
        out.push(b':');
        push_2(out, s % 60);
    }
}

/// `[-]H:MM:SS[.fraction]`, hours unbounded (MySQL `TIME`, PostgreSQL `interval` input).
pub(super) fn push_duration(out: &mut Vec<u8>, v: i64, unit: TimeUnit) {
    let (secs, nanos) = split_unit(v, unit);
    let neg = secs < 0;
    let (secs, nanos) = if neg && nanos > 0 {
        ((-secs - 1) as u64, 1_000_000_000 - nanos)
    } else {
        (secs.unsigned_abs(), nanos)
    };
    if neg {
        out.push(b'-');
    }
    let hours = secs / 3600;
    if hours < 10 {
        out.push(b'0');
    }
    push_int(out, hours);
    out.push(b':');
    push_2(out, ((secs / 60) % 60) as u32);
    out.push(b':');
    push_2(out, (secs % 60) as u32);
    push_fraction(out, nanos);
}

/// ISO 8601 duration as PostgreSQL prints it with `intervalstyle = iso_8601` (and reads
/// it back): `P[nY][nM][nD][T[nH][nM][n.nS]]`, each part with its own sign, `PT0S` for zero.
pub(super) fn push_interval(out: &mut Vec<u8>, months: i32, days: i32, nanos: i64) {
    out.push(b'P');
    if months == 0 && days == 0 && nanos == 0 {
        out.extend_from_slice(b"T0S");
        return;
    }
    let (years, months) = (months / 12, months % 12);
    for (v, unit) in [
        (years as i64, b'Y'),
        (months as i64, b'M'),
        (days as i64, b'D'),
    ] {
        if v != 0 {
            push_int(out, v);
            out.push(unit);
        }
    }
    if nanos != 0 {
        out.push(b'T');
        let neg = nanos < 0;
        let abs = nanos.unsigned_abs();
        let (h, m) = (abs / 3_600_000_000_000, (abs / 60_000_000_000) % 60);
        let (sec, frac) = ((abs / 1_000_000_000) % 60, (abs % 1_000_000_000) as u32);
        for (v, unit) in [(h, b'H'), (m, b'M')] {
            if v != 0 {
                if neg {
                    out.push(b'-');
                }
                push_int(out, v);
                out.push(unit);
            }
        }
        if sec != 0 || frac != 0 {
            if neg {
                out.push(b'-');
            }
            push_int(out, sec);
            push_fraction(out, frac);
            out.push(b'S');
        }
    }
}
