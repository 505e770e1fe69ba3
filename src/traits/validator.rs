use crate::Result;
use arrow_array::RecordBatch;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt::Debug;
use std::time::Duration;

/// What a failed check does to the pipeline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Stop: the run fails and nothing after the check is committed.
    #[default]
    Halt,
    /// Warn: the failure is logged and recorded, the run goes on.
    Warn,
}

impl Severity {
    /// `"halt"` or `"warn"`, as the book's validator spells them.
    pub fn as_str(&self) -> &'static str {
        match self {
            Severity::Halt => "halt",
            Severity::Warn => "warn",
        }
    }
}

impl std::str::FromStr for Severity {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "halt" => Ok(Severity::Halt),
            "warn" => Ok(Severity::Warn),
            other => Err(crate::Error::config(
                "validator",
                format!("unknown severity {other:?}; expected one of: halt, warn"),
            )),
        }
    }
}

/// The result of one check, pass or fail, with what was compared.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ValidationOutcome {
    /// The check's name.
    pub name: String,
    /// Whether the check passed.
    pub passed: bool,
    /// What a failure does.
    pub severity: Severity,
    /// The left-hand value compared, rendered as text, when the check compares values.
    pub left: Option<String>,
    /// The right-hand value compared.
    pub right: Option<String>,
    /// The comparison operator (`equals`, `greater_equals`, ...), when there is one.
    pub operator: Option<String>,
    /// What produced the left value (the first SQL script, or its file name).
    #[serde(default)]
    pub script_1: Option<String>,
    /// What produced the right value.
    #[serde(default)]
    pub script_2: Option<String>,
    /// A human-readable summary (for a batch check that failed, its first failure).
    pub message: String,
    /// Batches a batch check failed on (0 for a warehouse check).
    #[serde(default)]
    pub failed_batches: u64,
    /// Rows in those batches.
    #[serde(default)]
    pub failed_rows: u64,
    /// The last failure's message, when a batch check failed more than once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_message: Option<String>,
    /// When the check started.
    pub started_at: DateTime<Utc>,
    /// How long it took.
    #[serde(
        rename = "duration_ms",
        alias = "duration",
        with = "crate::util::duration_ms"
    )]
    pub duration: Duration,
}

impl ValidationOutcome {
    /// The outcome of check `name`: passed or not, with `severity` and a summary; it
    /// started now and took no time (set both with [`with_timing`](Self::with_timing)).
    pub fn new(
        name: impl Into<String>,
        passed: bool,
        severity: Severity,
        message: impl Into<String>,
    ) -> Self {
        ValidationOutcome {
            name: name.into(),
            passed,
            severity,
            left: None,
            right: None,
            operator: None,
            script_1: None,
            script_2: None,
            message: message.into(),
            failed_batches: 0,
            failed_rows: 0,
            last_message: None,
            started_at: Utc::now(),
            duration: Duration::ZERO,
        }
    }

    /// The values compared: `left operator right` (`operator` as `equals`,
    /// `greater_equals`, ...).
    pub fn with_comparison(
        mut self,
        left: impl Into<String>,
        operator: impl Into<String>,
        right: impl Into<String>,
    ) -> Self {
        self.left = Some(left.into());
        self.operator = Some(operator.into());
        self.right = Some(right.into());
        self
    }

    /// What produced the left and the right value (scripts or their file names).
    pub fn with_scripts(mut self, left: impl Into<String>, right: Option<String>) -> Self {
        self.script_1 = Some(left.into());
        self.script_2 = right;
        self
    }

    /// When the check started and how long it took.
    pub fn with_timing(mut self, started_at: DateTime<Utc>, duration: Duration) -> Self {
        self.started_at = started_at;
        self.duration = duration;
        self
    }

    /// Whether this outcome should stop a pipeline: failed with severity `halt`.
    pub fn is_halting(&self) -> bool {
        !self.passed && self.severity == Severity::Halt
    }
}

/// A warehouse-level check run on its own or after a load: two queries compared, a row
/// count, a freshness bound.
///
/// ```
/// use async_trait::async_trait;
/// use tributary::{Result, Severity, ValidationOutcome, Validator};
///
/// #[derive(Debug)]
/// struct AlwaysPasses;
///
/// #[async_trait]
/// impl Validator for AlwaysPasses {
///     fn name(&self) -> &str { "always_passes" }
///     fn severity(&self) -> Severity { Severity::Warn }
///     async fn validate(&self) -> Result<ValidationOutcome> {
///         Ok(ValidationOutcome::new(self.name(), true, self.severity(), "1 equals 1")
///             .with_comparison("1", "equals", "1"))
///     }
/// }
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let outcome = AlwaysPasses.validate().await?;
/// assert!(outcome.passed && !outcome.is_halting());
/// # Ok::<(), tributary::Error>(()) }).unwrap();
/// ```
#[async_trait]
pub trait Validator: Debug + Send + Sync + 'static {
    /// The check's name, as recorded in history.
    fn name(&self) -> &str;

    /// What a failure does.
    fn severity(&self) -> Severity;

    /// What the check runs (two SQL scripts, or a query and its expected value), for the
    /// history of a check that could not run. Default: nothing.
    fn scripts(&self) -> (Option<String>, Option<String>) {
        (None, None)
    }

    /// Run the check. `Err` means the check could not run (bad SQL, unreachable
    /// database); a check that ran and failed is `Ok` with `passed == false`.
    async fn validate(&self) -> Result<ValidationOutcome>;
}

super::forward::forward_impls!(Validator {
    fn name(&self) -> &str;
    fn severity(&self) -> Severity;
    fn scripts(&self) -> (Option<String>, Option<String>);
} {
    async fn validate(&self) -> Result<ValidationOutcome> => ();
});

/// A check on rows in flight, run by the pipeline on every batch of rows before it is
/// written. Batches that carry no row (a change stream's position-only batches) are not
/// checked, and a check scoped to some tables ([`BatchValidator::tables`]) sees only
/// theirs.
///
/// A failing `halt` check stops the run before the failing batch reaches the sink.
/// Checks see batches in order and may keep state across them (behind a lock).
///
/// ```
/// use std::sync::Arc;
/// use arrow_array::{Int64Array, RecordBatch};
/// use arrow_schema::{DataType, Field, Schema};
/// use tributary::{BatchValidator, validate::NotNull};
/// let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
/// let rb = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![Some(1), None]))]).unwrap();
/// let problem = NotNull::new(["id"]).check(&rb).unwrap();
/// assert_eq!(problem.as_deref(), Some("column id has 1 NULL value(s)"));
/// ```
pub trait BatchValidator: Debug + Send + Sync + 'static {
    /// The check's name.
    fn name(&self) -> &str;

    /// What a failure does.
    fn severity(&self) -> Severity;

    /// Check one batch: `Ok(None)` when it passes, `Ok(Some(problem))` when it fails,
    /// `Err` when the check cannot run (e.g. a named column does not exist).
    fn check(&self, batch: &RecordBatch) -> Result<Option<String>>;

    /// The tables whose batches this check applies to; `None` (the default) for every
    /// table. A change stream carries many tables, each with its own columns: a check of
    /// one table's column would fail on every other table's rows. A name without a dot
    /// (`orders`) also matches a qualified table (`public.orders`); one with a dot
    /// matches only itself.
    fn tables(&self) -> Option<&[String]> {
        None
    }
}

super::forward::forward_impls!(BatchValidator {
    fn name(&self) -> &str;
    fn severity(&self) -> Severity;
    fn check(&self, batch: &RecordBatch) -> Result<Option<String>>;
    fn tables(&self) -> Option<&[String]>;
} {
});

/// Whether a check scoped to `tables` applies to rows of `table` (see
/// [`BatchValidator::tables`]).
pub(crate) fn applies_to(tables: Option<&[String]>, table: &str) -> bool {
    let Some(tables) = tables else { return true };
    tables.iter().any(|t| {
        t == table
            || (!t.contains('.')
                && table
                    .rsplit_once('.')
                    .is_some_and(|(_, name)| name == t.as_str()))
    })
}
