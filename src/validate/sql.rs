//! Warehouse checks in SQL: the book's two-scripts-and-an-operator validator, row counts,
//! freshness, NULLs and duplicates. Every check runs on a [`Warehouse`] (PostgreSQL,
//! MySQL/MariaDB or SQLite).

use crate::sources::sql::{Dialect, sqlx_error};
use crate::warehouse::Warehouse;
use crate::{Error, Result, Severity, ValidationOutcome, Validator};
use async_trait::async_trait;
use chrono::Utc;
use sqlx::{Column, Row, TypeInfo, ValueRef};
use std::time::{Duration, Instant};

/// The book's comparison operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operator {
    /// `==` (within the tolerance, for numbers)
    Equals,
    /// `>=`
    GreaterEquals,
    /// `>`
    Greater,
    /// `<=`
    LessEquals,
    /// `<`
    Less,
    /// `!=`
    NotEqual,
}

const OPERATORS: &str = "equals, greater_equals, greater, less_equals, less, not_equal";

impl std::str::FromStr for Operator {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "equals" => Operator::Equals,
            "greater_equals" => Operator::GreaterEquals,
            "greater" => Operator::Greater,
            "less_equals" => Operator::LessEquals,
            "less" => Operator::Less,
            "not_equal" => Operator::NotEqual,
            other => {
                return Err(Error::config(
                    "validator",
                    format!("unknown operator {other:?}; valid operators: {OPERATORS}"),
                ));
            }
        })
    }
}

impl Operator {
    /// The book's spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Operator::Equals => "equals",
            Operator::GreaterEquals => "greater_equals",
            Operator::Greater => "greater",
            Operator::LessEquals => "less_equals",
            Operator::Less => "less",
            Operator::NotEqual => "not_equal",
        }
    }

    fn ordering(&self) -> bool {
        !matches!(self, Operator::Equals | Operator::NotEqual)
    }

    /// Compare two values: numerically (within `tolerance` for (not-)equality) when both
    /// are numbers; as text for `equals`/`not_equal` otherwise; an ordering operator on a
    /// non-number is an error.
    pub fn compare(&self, left: &Value, right: &Value, tolerance: f64) -> Result<bool> {
        if let (Some(a), Some(b)) = (left.number(), right.number()) {
            let eq = (a - b).abs() <= tolerance;
            return Ok(match self {
                Operator::Equals => eq,
                Operator::NotEqual => !eq,
                Operator::GreaterEquals => a >= b || eq,
                Operator::Greater => a > b && !eq,
                Operator::LessEquals => a <= b || eq,
                Operator::Less => a < b && !eq,
            });
        }
        if self.ordering() {
            return Err(Error::type_error(
                "validator",
                format!(
                    "{} needs two numbers, got {} and {}; use equals or not_equal for text",
                    self.as_str(),
                    left.describe(),
                    right.describe()
                ),
            ));
        }
        let eq = left.text() == right.text();
        Ok(if *self == Operator::Equals { eq } else { !eq })
    }
}

/// The first cell of a query's result.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// No row, or NULL.
    Null,
    /// A number, with its text as the database gave it.
    Number(f64, String),
    /// Anything else, as text.
    Text(String),
}

impl Value {
    fn number(&self) -> Option<f64> {
        match self {
            Value::Number(n, _) => Some(*n),
            _ => None,
        }
    }

    /// The value as text (`NULL` for null).
    pub fn text(&self) -> String {
        match self {
            Value::Null => "NULL".into(),
            Value::Number(_, t) | Value::Text(t) => t.clone(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Value::Null => "NULL".into(),
            Value::Number(_, t) => format!("the number {t}"),
            Value::Text(t) => format!("the text {t:?}"),
        }
    }
}

/// Run `sql` and read the first column of its first row.
///
/// sqlx's `Any` driver cannot read PostgreSQL's NUMERIC or MySQL's DECIMAL; such a result
/// is read again through `WITH t(c) AS (sql) SELECT CAST(c AS TEXT)`, exactly, as a number.
pub async fn first_cell(wh: &Warehouse, sql: &str, what: &str) -> Result<Value> {
    match first_cell_as_is(wh, sql, what, false).await {
        Err(Error::Query { message, .. }) if message.contains("Any driver does not support") => {
            let cast = if wh.dialect() == Dialect::MySql {
                "CHAR"
            } else {
                "TEXT"
            };
            let wrapped = format!(
                "WITH tributary_v(c) AS ({}) SELECT CAST(c AS {cast}) FROM tributary_v",
                sql.trim().trim_end_matches(';')
            );
            first_cell_as_is(wh, &wrapped, what, true).await
        }
        other => other,
    }
}

async fn first_cell_as_is(
    wh: &Warehouse,
    sql: &str,
    what: &str,
    numeric_text: bool,
) -> Result<Value> {
    let row = sqlx::query(sql)
        .fetch_optional(wh.pool())
        .await
        .map_err(|e| match sqlx_error("validator", e, what) {
            Error::Query {
                component,
                message,
                retryable: false,
                source,
            } => Error::Query {
                component,
                message: format!("{message} (in {what})"),
                retryable: false,
                source,
            },
            other => other,
        })?;
    let Some(row) = row else {
        return Ok(Value::Null);
    };
    if row.columns().is_empty() {
        return Ok(Value::Null);
    }
    let raw = row
        .try_get_raw(0)
        .map_err(|e| sqlx_error("validator", e, what))?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let ty = row.column(0).type_info().name().to_ascii_uppercase();
    if let Ok(v) = row.try_get::<i64, _>(0) {
        return Ok(Value::Number(v as f64, v.to_string()));
    }
    if let Ok(v) = row.try_get::<i32, _>(0) {
        return Ok(Value::Number(v as f64, v.to_string()));
    }
    if let Ok(v) = row.try_get::<f64, _>(0) {
        return Ok(Value::Number(v, v.to_string()));
    }
    if let Ok(v) = row.try_get::<bool, _>(0) {
        return Ok(Value::Text(v.to_string()));
    }
    let text = match row.try_get::<String, _>(0) {
        Ok(t) => t,
        Err(_) => row
            .try_get::<Vec<u8>, _>(0)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|e| {
                Error::type_error(
                    "validator",
                    format!("{what}: cannot read a {ty} result: {e}"),
                )
            })?,
    };
    // Numeric types the Any driver hands over as text (NUMERIC, DECIMAL).
    let numeric_type = ["NUM", "DEC", "INT", "REAL", "DOUBLE", "FLOAT"]
        .iter()
        .any(|k| ty.contains(k));
    match text.trim().parse::<f64>() {
        Ok(n) if numeric_text || numeric_type => Ok(Value::Number(n, text.trim().to_string())),
        _ => Ok(Value::Text(text)),
    }
}

/// A SQL script: its text, and a label for history (a file name, or the text itself).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Script {
    /// The label recorded in `validation_run_history`.
    pub label: String,
    /// The SQL.
    pub sql: String,
}

impl Script {
    /// SQL given as text.
    pub fn text(sql: impl Into<String>) -> Self {
        let sql = sql.into();
        Script {
            label: sql.clone(),
            sql,
        }
    }

    /// SQL read from a file; the label is the file's path, as in the book.
    pub fn file(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let p = path.as_ref();
        let sql = std::fs::read_to_string(p).map_err(|e| {
            Error::config(
                "validator",
                format!("cannot read SQL script {}: {e}", p.display()),
            )
        })?;
        // Unusable input, not a failed check: an empty script compares nothing.
        if sql.trim().trim_matches(';').trim().is_empty() {
            return Err(Error::config(
                "validator",
                format!("SQL script {} is empty", p.display()),
            ));
        }
        Ok(Script {
            label: p.display().to_string(),
            sql,
        })
    }
}

/// The book's validator: run two scripts, compare the first cell of each with an
/// operator.
///
/// ```
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// use tributary::Validator;
/// use tributary::validate::{Operator, Script, SqlComparison};
/// let wh = tributary::warehouse::Warehouse::connect("sqlite::memory:").await?;
/// let check = SqlComparison::new(wh, Script::text("SELECT 41 + 1"), Script::text("SELECT 42"), Operator::Equals);
/// assert!(check.validate().await?.passed);
/// # Ok::<(), tributary::Error>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct SqlComparison {
    wh: Warehouse,
    name: String,
    script_1: Script,
    script_2: Script,
    operator: Operator,
    severity: Severity,
    tolerance: f64,
}

impl SqlComparison {
    /// Compare the first cells of `script_1` and `script_2` with `operator` (severity
    /// `halt`, no tolerance).
    pub fn new(wh: Warehouse, script_1: Script, script_2: Script, operator: Operator) -> Self {
        let name = format!(
            "{} {} {}",
            script_1.label,
            operator.as_str(),
            script_2.label
        );
        SqlComparison {
            wh,
            name,
            script_1,
            script_2,
            operator,
            severity: Severity::Halt,
            tolerance: 0.0,
        }
    }

    /// What a failure does.
    pub fn with_severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }

    /// Numbers within this distance count as equal.
    pub fn with_tolerance(mut self, tolerance: f64) -> Self {
        self.tolerance = tolerance.abs();
        self
    }

    /// A name of your own for history.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
}

fn outcome(
    name: &str,
    severity: Severity,
    (left, right): (&Value, &Value),
    op: Operator,
    scripts: (&str, &str),
    passed: bool,
    started: (chrono::DateTime<Utc>, Instant),
) -> ValidationOutcome {
    ValidationOutcome {
        name: name.to_string(),
        passed,
        severity,
        left: Some(left.text()),
        right: Some(right.text()),
        operator: Some(op.as_str().to_string()),
        script_1: Some(scripts.0.to_string()),
        script_2: Some(scripts.1.to_string()),
        message: format!(
            "{} {} {}: {}",
            left.text(),
            op.as_str(),
            right.text(),
            if passed { "passed" } else { "failed" }
        ),
        failed_batches: 0,
        failed_rows: 0,
        last_message: None,
        started_at: started.0,
        duration: started.1.elapsed(),
    }
}

#[async_trait]
impl Validator for SqlComparison {
    fn name(&self) -> &str {
        &self.name
    }
    fn severity(&self) -> Severity {
        self.severity
    }
    fn scripts(&self) -> (Option<String>, Option<String>) {
        (
            Some(self.script_1.label.clone()),
            Some(self.script_2.label.clone()),
        )
    }
    async fn validate(&self) -> Result<ValidationOutcome> {
        let started = (Utc::now(), Instant::now());
        let left = first_cell(
            &self.wh,
            &self.script_1.sql,
            &format!("script_1 {}", self.script_1.label),
        )
        .await?;
        let right = first_cell(
            &self.wh,
            &self.script_2.sql,
            &format!("script_2 {}", self.script_2.label),
        )
        .await?;
        let passed = self.operator.compare(&left, &right, self.tolerance)?;
        Ok(outcome(
            &self.name,
            self.severity,
            (&left, &right),
            self.operator,
            (&self.script_1.label, &self.script_2.label),
            passed,
            started,
        ))
    }
}

/// One SQL query whose first cell is compared with a fixed value: the shape of row count,
/// freshness, NULL and duplicate checks.
#[derive(Debug, Clone)]
pub struct SqlCheck {
    wh: Warehouse,
    name: String,
    sql: String,
    operator: Operator,
    expected: Value,
    severity: Severity,
}

impl SqlCheck {
    fn new(wh: Warehouse, name: String, sql: String, operator: Operator, expected: f64) -> Self {
        SqlCheck {
            wh,
            name,
            sql,
            operator,
            expected: Value::Number(expected, fmt_num(expected)),
            severity: Severity::Halt,
        }
    }

    /// `table` has between `min` and `max` rows.
    pub fn row_count_at_least(wh: Warehouse, table: &str, min: u64) -> Self {
        let t = wh.dialect().quote_ident(table);
        Self::new(
            wh,
            format!("row_count({table}) >= {min}"),
            format!("SELECT COUNT(*) FROM {t}"),
            Operator::GreaterEquals,
            min as f64,
        )
    }

    /// `column` of `table` has no NULL.
    pub fn not_null(wh: Warehouse, table: &str, column: &str) -> Self {
        let d = wh.dialect();
        let sql = format!(
            "SELECT COUNT(*) FROM {} WHERE {} IS NULL",
            d.quote_ident(table),
            d.quote_ident(column)
        );
        Self::new(
            wh,
            format!("not_null({table}.{column})"),
            sql,
            Operator::Equals,
            0.0,
        )
    }

    /// `columns` of `table` are unique together.
    pub fn unique(wh: Warehouse, table: &str, columns: &[&str]) -> Self {
        let d = wh.dialect();
        let cols = columns
            .iter()
            .map(|c| d.quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT COUNT(*) FROM (SELECT {cols} FROM {} GROUP BY {cols} HAVING COUNT(*) > 1) AS dup",
            d.quote_ident(table)
        );
        Self::new(
            wh,
            format!("unique({table}.{})", columns.join(",")),
            sql,
            Operator::Equals,
            0.0,
        )
    }

    /// The newest `column` of `table` (a timestamp, in UTC) is at most `max_age` old.
    pub fn freshness(wh: Warehouse, table: &str, column: &str, max_age: Duration) -> Self {
        let d = wh.dialect();
        let (t, c) = (d.quote_ident(table), d.quote_ident(column));
        let sql = match d {
            Dialect::Postgres => format!(
                "SELECT EXTRACT(EPOCH FROM (now() - MAX({c})::timestamptz))::float8 FROM {t}"
            ),
            Dialect::MySql => format!(
                "SELECT TIMESTAMPDIFF(MICROSECOND, MAX({c}), UTC_TIMESTAMP(6)) / 1e6 FROM {t}"
            ),
            _ => format!("SELECT (julianday('now') - julianday(MAX({c}))) * 86400.0 FROM {t}"),
        };
        Self::new(
            wh,
            format!("freshness({table}.{column}) <= {}s", max_age.as_secs()),
            sql,
            Operator::LessEquals,
            max_age.as_secs_f64(),
        )
    }

    /// The same number of rows as `other_table` in `other` (another database, or the same).
    pub async fn row_count_matches(
        wh: Warehouse,
        table: &str,
        other: &Warehouse,
        other_table: &str,
    ) -> Result<Self> {
        let t = other.dialect().quote_ident(other_table);
        let expected = first_cell(
            other,
            &format!("SELECT COUNT(*) FROM {t}"),
            &format!("counting {other_table}"),
        )
        .await?;
        let n = match expected {
            Value::Number(n, _) => n,
            other => {
                return Err(Error::type_error(
                    "validator",
                    format!("COUNT(*) of {other_table} gave {}", other.describe()),
                ));
            }
        };
        let d = wh.dialect();
        Ok(Self::new(
            wh,
            format!("row_count({table}) equals row_count({other_table})"),
            format!("SELECT COUNT(*) FROM {}", d.quote_ident(table)),
            Operator::Equals,
            n,
        ))
    }

    /// What a failure does.
    pub fn with_severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }
}

fn fmt_num(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

#[async_trait]
impl Validator for SqlCheck {
    fn name(&self) -> &str {
        &self.name
    }
    fn severity(&self) -> Severity {
        self.severity
    }
    fn scripts(&self) -> (Option<String>, Option<String>) {
        (Some(self.sql.clone()), Some(self.expected.text()))
    }
    async fn validate(&self) -> Result<ValidationOutcome> {
        let started = (Utc::now(), Instant::now());
        let left = first_cell(&self.wh, &self.sql, &self.name).await?;
        // An empty table has no newest row: not fresh.
        let passed = match left {
            Value::Null => false,
            _ => self.operator.compare(&left, &self.expected, 1e-9)?,
        };
        Ok(outcome(
            &self.name,
            self.severity,
            (&left, &self.expected),
            self.operator,
            (&self.sql, &self.expected.text()),
            passed,
            started,
        ))
    }
}
