//! `|`-delimited CSV (the book's format) and dialects that load cleanly with `COPY`.

use super::{Encoder, Format};
use crate::value::{BinaryEncoding, Column, TextStyle};
use crate::{Error, Result};
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

/// How CSV is written.
///
/// NULL and the empty string stay distinct: by default NULL is an empty unquoted field and
/// the empty string is `""`, which is how PostgreSQL's `COPY ... CSV` reads them. Fields
/// containing the delimiter, the quote, CR or LF (or equal to the NULL token, or `\.`
/// alone on a line) are quoted, with quotes doubled: exactly what PostgreSQL's
/// `COPY ... TO ... CSV` writes.
///
/// The writer does its own quoting rather than going through `csv::Writer`, because that
/// writer renders NULL and `""` the same way (the defect this crate exists to avoid); the
/// tests read its output back with the `csv` crate and with PostgreSQL's `COPY`.
///
/// ```
/// use tributary::format::CsvDialect;
/// let d = CsvDialect::book();
/// assert_eq!(d.delimiter(), b'|');
/// assert!(!d.has_header());
/// assert_eq!(d.postgres_copy_options(), "FORMAT csv, DELIMITER '|', NULL '', QUOTE '\"'");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsvDialect {
    delimiter: u8,
    quote: u8,
    header: bool,
    null: String,
    crlf: bool,
    binary: BinaryEncoding,
    preset: Preset,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Preset {
    Book,
    Postgres,
    Redshift,
    Snowflake,
}

impl Default for CsvDialect {
    fn default() -> Self {
        Self::book()
    }
}

impl CsvDialect {
    /// The book's format: `|` delimiter, no header, NULL as an empty field, `""` for the
    /// empty string, LF line ends, and every value as PostgreSQL prints it (booleans
    /// `t`/`f`, binary `\x...`, arrays `{...}`, floats shortest, intervals ISO 8601): the
    /// bytes of PostgreSQL's `COPY ... TO STDOUT WITH (FORMAT csv, DELIMITER '|')`. Loads
    /// with `COPY t FROM ... WITH (FORMAT csv, DELIMITER '|')`.
    pub fn book() -> Self {
        CsvDialect {
            delimiter: b'|',
            quote: b'"',
            header: false,
            null: String::new(),
            crlf: false,
            binary: BinaryEncoding::PostgresHex,
            preset: Preset::Book,
        }
    }

    /// PostgreSQL's own CSV defaults: `,` delimiter, with a header row.
    pub fn postgres() -> Self {
        CsvDialect {
            delimiter: b',',
            header: true,
            preset: Preset::Postgres,
            ..Self::book()
        }
    }

    /// Amazon Redshift: `|` delimiter, NULL as `\N`, binary as plain hex (VARBYTE),
    /// booleans `true`/`false`, lists as JSON.
    /// See [`CsvDialect::redshift_copy_options`].
    pub fn redshift() -> Self {
        CsvDialect {
            null: "\\N".into(),
            binary: BinaryEncoding::Hex,
            preset: Preset::Redshift,
            ..Self::book()
        }
    }

    /// Snowflake: `|` delimiter, NULL as `\N`, binary as hex, booleans `true`/`false`,
    /// lists as JSON.
    /// See [`CsvDialect::snowflake_file_format`].
    pub fn snowflake() -> Self {
        CsvDialect {
            null: "\\N".into(),
            binary: BinaryEncoding::Hex,
            preset: Preset::Snowflake,
            ..Self::book()
        }
    }

    /// Use another single-byte delimiter.
    pub fn with_delimiter(mut self, delimiter: u8) -> Self {
        self.delimiter = delimiter;
        self
    }

    /// Write (or not) a header row with the column names at the top of each object.
    pub fn with_header(mut self, header: bool) -> Self {
        self.header = header;
        self
    }

    /// The text written for NULL. Values equal to it are quoted so they stay distinct.
    pub fn with_null(mut self, null: impl Into<String>) -> Self {
        self.null = null.into();
        self
    }

    /// End lines with CRLF instead of LF.
    pub fn with_crlf(mut self, crlf: bool) -> Self {
        self.crlf = crlf;
        self
    }

    /// How binary values are written.
    pub fn with_binary(mut self, binary: BinaryEncoding) -> Self {
        self.binary = binary;
        self
    }

    /// The delimiter.
    pub fn delimiter(&self) -> u8 {
        self.delimiter
    }

    /// The quote byte.
    pub fn quote(&self) -> u8 {
        self.quote
    }

    /// Whether a header row is written.
    pub fn has_header(&self) -> bool {
        self.header
    }

    /// The byte offset just past the `rows`-th record of `bytes` (records of this
    /// dialect, without a header), or `None` if `bytes` holds fewer. A line break inside
    /// a quoted field is data, not a record's end (doubled quotes toggle twice).
    ///
    /// ```
    /// use tributary::format::CsvDialect;
    /// let d = CsvDialect::book();
    /// let rows = b"1|\"a\nb\"\n2|c\n3|d\n";
    /// assert_eq!(d.row_end(rows, 1), Some(8));
    /// assert_eq!(&rows[..d.row_end(rows, 2).unwrap()], b"1|\"a\nb\"\n2|c\n");
    /// assert_eq!(d.row_end(rows, 4), None);
    /// ```
    pub fn row_end(&self, bytes: &[u8], rows: usize) -> Option<usize> {
        if rows == 0 {
            return Some(0);
        }
        let (mut quoted, mut seen) = (false, 0);
        for (i, &b) in bytes.iter().enumerate() {
            if b == self.quote {
                quoted = !quoted;
            } else if b == b'\n' && !quoted {
                seen += 1;
                if seen == rows {
                    return Some(i + 1);
                }
            }
        }
        None
    }

    /// The NULL token.
    pub fn null(&self) -> &str {
        &self.null
    }

    fn validate(&self) -> Result<()> {
        let d = self.delimiter;
        if d == self.quote || d == b'\r' || d == b'\n' || d.is_ascii_alphanumeric() || !d.is_ascii()
        {
            return Err(Error::config(
                "csv",
                format!(
                    "delimiter {:?} is not usable: choose a punctuation byte other than the quote",
                    d as char
                ),
            ));
        }
        if self
            .null
            .contains(['\r', '\n', d as char, self.quote as char])
        {
            return Err(Error::config(
                "csv",
                "the NULL token must not contain the delimiter, the quote, CR or LF",
            ));
        }
        Ok(())
    }

    fn sql_quote(b: &str) -> String {
        b.replace('\'', "''")
    }

    /// Options for PostgreSQL's `COPY ... WITH (...)` that read this dialect back exactly.
    pub fn postgres_copy_options(&self) -> String {
        let mut s = format!(
            "FORMAT csv, DELIMITER '{}', NULL '{}', QUOTE '{}'",
            Self::sql_quote(&(self.delimiter as char).to_string()),
            Self::sql_quote(&self.null),
            Self::sql_quote(&(self.quote as char).to_string()),
        );
        if self.header {
            s.push_str(", HEADER true");
        }
        s
    }

    /// Options for Amazon Redshift's `COPY` that read this dialect back.
    pub fn redshift_copy_options(&self) -> String {
        let mut s = format!(
            "CSV QUOTE AS '{}' DELIMITER '{}' NULL AS '{}'",
            Self::sql_quote(&(self.quote as char).to_string()),
            Self::sql_quote(&(self.delimiter as char).to_string()),
            Self::sql_quote(&self.null.replace('\\', "\\\\")),
        );
        if self.header {
            s.push_str(" IGNOREHEADER 1");
        }
        s
    }

    /// [`redshift_copy_options`](Self::redshift_copy_options) for objects compressed
    /// whole with `compression`: `GZIP` or `ZSTD` added, so `COPY` decompresses them.
    ///
    /// ```
    /// use tributary::format::{Compression, CsvDialect};
    /// let o = CsvDialect::redshift().redshift_copy_options_with(Compression::Gzip);
    /// assert!(o.ends_with(" GZIP"), "{o}");
    /// ```
    pub fn redshift_copy_options_with(&self, compression: super::Compression) -> String {
        let mut s = self.redshift_copy_options();
        match compression {
            super::Compression::None => {}
            super::Compression::Gzip => s.push_str(" GZIP"),
            super::Compression::Zstd(_) => s.push_str(" ZSTD"),
        }
        s
    }

    /// A Snowflake `FILE_FORMAT = (...)` clause that reads this dialect back.
    pub fn snowflake_file_format(&self) -> String {
        format!(
            "TYPE = CSV FIELD_DELIMITER = '{}' FIELD_OPTIONALLY_ENCLOSED_BY = '{}' NULL_IF = ('{}') \
             EMPTY_FIELD_AS_NULL = {} SKIP_HEADER = {} BINARY_FORMAT = {}",
            Self::sql_quote(&(self.delimiter as char).to_string()),
            Self::sql_quote(&(self.quote as char).to_string()),
            Self::sql_quote(&self.null.replace('\\', "\\\\")),
            if self.null.is_empty() {
                "TRUE"
            } else {
                "FALSE"
            },
            u8::from(self.header),
            match self.binary {
                BinaryEncoding::Base64 => "BASE64",
                _ => "HEX",
            }
        )
    }

    /// Whether values are written exactly as PostgreSQL's `COPY ... TO ... CSV` prints
    /// them with the same options (PostgreSQL hex for binary, array literals, LF line
    /// ends), so PostgreSQL can produce this dialect itself.
    pub fn matches_postgres_copy(&self) -> bool {
        matches!(self.preset, Preset::Book | Preset::Postgres)
            && self.binary == BinaryEncoding::PostgresHex
            && !self.crlf
    }

    /// A one-line description of the preset this dialect started from.
    pub fn preset_name(&self) -> &'static str {
        match self.preset {
            Preset::Book => "book",
            Preset::Postgres => "postgres",
            Preset::Redshift => "redshift",
            Preset::Snowflake => "snowflake",
        }
    }
}

/// The CSV [`Format`].
///
/// ```
/// use std::sync::Arc;
/// use arrow_array::{Int64Array, RecordBatch, StringArray};
/// use arrow_schema::{DataType, Field, Schema};
/// use tributary::format::{Csv, Format};
/// let schema = Arc::new(Schema::new(vec![
///     Field::new("id", DataType::Int64, false),
///     Field::new("status", DataType::Utf8, true),
/// ]));
/// let rb = RecordBatch::try_new(schema.clone(), vec![
///     Arc::new(Int64Array::from(vec![1, 2, 3])),
///     Arc::new(StringArray::from(vec![Some("Shipped"), None, Some("")])),
/// ]).unwrap();
/// let mut out = Vec::new();
/// let mut enc = Csv::default().encoder(&schema).unwrap();
/// enc.encode(&rb, &mut out).unwrap();
/// assert_eq!(String::from_utf8(out).unwrap(), "1|Shipped\n2|\n3|\"\"\n");
/// ```
#[derive(Clone, Debug, Default)]
pub struct Csv {
    dialect: CsvDialect,
}

impl Csv {
    /// CSV in `dialect`.
    pub fn new(dialect: CsvDialect) -> Self {
        Csv { dialect }
    }

    /// The dialect.
    pub fn dialect(&self) -> &CsvDialect {
        &self.dialect
    }
}

impl Format for Csv {
    fn extension(&self) -> &str {
        "csv"
    }

    fn content_type(&self) -> &str {
        "text/csv"
    }

    fn csv_dialect(&self) -> Option<&CsvDialect> {
        Some(&self.dialect)
    }

    fn encoder(&self, schema: &SchemaRef) -> Result<Box<dyn Encoder>> {
        self.dialect.validate()?;
        Ok(Box::new(CsvEncoder {
            dialect: self.dialect.clone(),
            schema: schema.clone(),
            style: TextStyle {
                date_time_sep: b' ',
                binary: self.dialect.binary,
                decimal_as_string: false,
                pg_text: matches!(self.dialect.preset, Preset::Book | Preset::Postgres),
            },
            scratch: Vec::with_capacity(256),
        }))
    }
}

struct CsvEncoder {
    dialect: CsvDialect,
    schema: SchemaRef,
    style: TextStyle,
    scratch: Vec<u8>,
}

impl CsvEncoder {
    fn terminator(&self, out: &mut Vec<u8>) {
        if self.dialect.crlf {
            out.push(b'\r');
        }
        out.push(b'\n');
    }

    /// Append `field` to `out`, quoted when it must be.
    /// `alone`: the field is the whole line (a one-column row), where `\.` would read as
    /// PostgreSQL's end-of-data marker.
    fn push_field(&self, out: &mut Vec<u8>, field: &[u8], check: bool, alone: bool) {
        let d = &self.dialect;
        let needs_quotes = check
            && (field.is_empty()
                || field
                    .iter()
                    .any(|&b| b == d.delimiter || b == d.quote || b == b'\n' || b == b'\r')
                || field == d.null.as_bytes()
                || (alone && field == b"\\."));
        if !needs_quotes {
            out.extend_from_slice(field);
            return;
        }
        // Whole runs between quotes are copied at once (JSON fields are mostly quotes
        // apart): a push per byte was the encoder's largest cost.
        out.reserve(field.len() + 2);
        out.push(d.quote);
        for (i, run) in field.split(|&b| b == d.quote).enumerate() {
            if i > 0 {
                out.extend_from_slice(&[d.quote, d.quote]);
            }
            out.extend_from_slice(run);
        }
        out.push(d.quote);
    }
}

impl Encoder for CsvEncoder {
    fn begin(&mut self, out: &mut Vec<u8>) -> Result<()> {
        if self.dialect.header {
            for (i, f) in self.schema.fields().iter().enumerate() {
                if i > 0 {
                    out.push(self.dialect.delimiter);
                }
                self.push_field(
                    out,
                    f.name().as_bytes(),
                    true,
                    self.schema.fields().len() == 1,
                );
            }
            self.terminator(out);
        }
        Ok(())
    }

    fn encode(&mut self, batch: &RecordBatch, out: &mut Vec<u8>) -> Result<()> {
        let schema = batch.schema();
        let cols = batch
            .columns()
            .iter()
            .zip(schema.fields())
            .map(|(a, f)| Column::new(a, f))
            .collect::<Result<Vec<_>>>()?;
        // A value can only collide with the NULL token or `\.` if it can be any text, or if
        // the token is something a number or date could print as.
        let null_like = !self.dialect.null.is_empty();
        let mut scratch = std::mem::take(&mut self.scratch);
        for row in 0..batch.num_rows() {
            for (i, col) in cols.iter().enumerate() {
                if i > 0 {
                    out.push(self.dialect.delimiter);
                }
                if col.is_null(row) {
                    out.extend_from_slice(self.dialect.null.as_bytes());
                    continue;
                }
                scratch.clear();
                col.write_text(row, &mut scratch, &self.style)?;
                let check = col.free_text || null_like || scratch.is_empty();
                self.push_field(out, &scratch, check, cols.len() == 1);
            }
            self.terminator(out);
        }
        self.scratch = scratch;
        Ok(())
    }
}
