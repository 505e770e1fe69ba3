use crate::{BatchValidator, Error, Result, Severity};
use arrow_array::RecordBatch;
use std::collections::HashSet;
use std::sync::Mutex;

fn column<'a>(
    name: &str,
    batch: &'a RecordBatch,
    check: &str,
) -> Result<&'a arrow_array::ArrayRef> {
    batch.column_by_name(name).ok_or_else(|| {
        Error::config(
            "validator",
            format!(
                "{check}: column {name:?} is not in the batch (columns: {})",
                batch
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })
}

/// Fails when any of the named columns holds a NULL.
#[derive(Debug, Clone)]
pub struct NotNull {
    name: String,
    columns: Vec<String>,
    severity: Severity,
    tables: Option<Vec<String>>,
}

impl NotNull {
    /// Check that `columns` hold no NULL (severity `halt`).
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(columns: I) -> Self {
        let columns: Vec<String> = columns.into_iter().map(Into::into).collect();
        NotNull {
            name: format!("not_null({})", columns.join(",")),
            columns,
            severity: Severity::Halt,
            tables: None,
        }
    }

    /// Change the severity.
    pub fn with_severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }

    /// Check only the rows of these tables (of a change stream or a many-table
    /// extraction); see [`BatchValidator::tables`].
    pub fn with_tables<I: IntoIterator<Item = S>, S: Into<String>>(mut self, tables: I) -> Self {
        self.tables = Some(tables.into_iter().map(Into::into).collect());
        self
    }
}

impl BatchValidator for NotNull {
    fn name(&self) -> &str {
        &self.name
    }
    fn severity(&self) -> Severity {
        self.severity
    }
    fn tables(&self) -> Option<&[String]> {
        self.tables.as_deref()
    }
    fn check(&self, batch: &RecordBatch) -> Result<Option<String>> {
        for c in &self.columns {
            let n = column(c, batch, &self.name)?.null_count();
            if n > 0 {
                return Ok(Some(format!("column {c} has {n} NULL value(s)")));
            }
        }
        Ok(None)
    }
}

/// Fails when the named columns, taken together, repeat a value within one run.
///
/// Keeps a 64-bit fingerprint per distinct key seen in the run (8 bytes each).
#[derive(Debug)]
pub struct Unique {
    name: String,
    columns: Vec<String>,
    severity: Severity,
    tables: Option<Vec<String>>,
    seen: Mutex<HashSet<u64>>,
}

impl Unique {
    /// Check that `columns` are unique together (severity `halt`).
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(columns: I) -> Self {
        let columns: Vec<String> = columns.into_iter().map(Into::into).collect();
        Unique {
            name: format!("unique({})", columns.join(",")),
            columns,
            severity: Severity::Halt,
            tables: None,
            seen: Mutex::new(HashSet::new()),
        }
    }

    /// Change the severity.
    pub fn with_severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }

    /// Check only the rows of these tables (of a change stream or a many-table
    /// extraction); see [`BatchValidator::tables`].
    pub fn with_tables<I: IntoIterator<Item = S>, S: Into<String>>(mut self, tables: I) -> Self {
        self.tables = Some(tables.into_iter().map(Into::into).collect());
        self
    }
}

impl BatchValidator for Unique {
    fn name(&self) -> &str {
        &self.name
    }
    fn severity(&self) -> Severity {
        self.severity
    }
    fn tables(&self) -> Option<&[String]> {
        self.tables.as_deref()
    }
    fn check(&self, batch: &RecordBatch) -> Result<Option<String>> {
        let cols = self
            .columns
            .iter()
            .map(|c| column(c, batch, &self.name).cloned())
            .collect::<Result<Vec<_>>>()?;
        let prints = crate::model::row_fingerprints(&cols)?;
        let mut seen = self.seen.lock().expect("not poisoned");
        for (row, fp) in prints.into_iter().enumerate() {
            if !seen.insert(fp) {
                return Ok(Some(format!(
                    "duplicate value of ({}) at batch row {row}",
                    self.columns.join(", ")
                )));
            }
        }
        Ok(None)
    }
}
