//! Stable row fingerprints: the same values give the same 64-bit number on every
//! machine and version, so they can be saved in checkpoints.

use crate::Result;
use crate::value::{BinaryEncoding, Column, TextStyle};
use arrow_array::ArrayRef;
use arrow_schema::Field;

const STYLE: TextStyle = TextStyle {
    date_time_sep: b' ',
    binary: BinaryEncoding::Hex,
    decimal_as_string: false,
    pg_text: false,
};

/// FNV-1a, 64 bit.
fn fnv1a(bytes: &[u8], mut h: u64) -> u64 {
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// One fingerprint per row over `columns`: each value's canonical text, with NULL and
/// column boundaries marked so that `("a","")` and `("","a")` differ.
pub(crate) fn row_fingerprints(columns: &[ArrayRef]) -> Result<Vec<u64>> {
    let fields: Vec<Field> = columns
        .iter()
        .map(|c| Field::new("c", c.data_type().clone(), true))
        .collect();
    let cols = columns
        .iter()
        .zip(&fields)
        .map(|(a, f)| Column::new(a, f))
        .collect::<Result<Vec<_>>>()?;
    let rows = columns.first().map_or(0, |c| c.len());
    let mut out = Vec::with_capacity(rows);
    let mut buf = Vec::with_capacity(64);
    for row in 0..rows {
        let mut h = 0xcbf2_9ce4_8422_2325;
        for col in &cols {
            if col.is_null(row) {
                h = fnv1a(&[0xff, 0x00], h);
            } else {
                buf.clear();
                col.write_text(row, &mut buf, &STYLE)?;
                h = fnv1a(&(buf.len() as u64).to_le_bytes(), h);
                h = fnv1a(&buf, h);
            }
        }
        out.push(h);
    }
    Ok(out)
}
