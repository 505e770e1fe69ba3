//! Object key templates.

use crate::{Error, Result};
use chrono::NaiveDate;

/// The values a key template can use.
#[derive(Clone, Debug)]
pub struct KeyVars<'a> {
    /// A fixed prefix (may be empty).
    pub prefix: &'a str,
    /// The pipeline's name.
    pub pipeline: &'a str,
    /// The source's short name (`sqlite`, `postgres`, ...).
    pub source: &'a str,
    /// The stream (table) name.
    pub stream: &'a str,
    /// The run's start date (UTC).
    pub date: NaiveDate,
    /// The run id.
    pub run_id: &'a str,
    /// The part number within the run.
    pub part: u32,
    /// The file extension, compression suffix included (`csv`, `csv.gz`).
    pub ext: &'a str,
}

/// A template for object keys, with placeholders `{prefix}`, `{pipeline}`, `{source}`,
/// `{stream}`, `{date}` (YYYY-MM-DD), `{run_id}`, `{part}` (or `{part:05}` zero-padded)
/// and `{ext}`.
///
/// A data key template must contain `{run_id}` and `{part}`, so that keys are unique per
/// run and per part, and the same on a retry of the same run (same run id). Empty path
/// segments (from an empty prefix) are dropped; values are made safe for object keys
/// (anything outside `A-Z a-z 0-9 . _ = -` becomes `_`).
///
/// ```
/// use tributary::stores::{KeyTemplate, KeyVars};
/// let t = KeyTemplate::default();
/// let key = t.render(&KeyVars {
///     prefix: "", pipeline: "orders", source: "mysql", stream: "Orders",
///     date: chrono::NaiveDate::from_ymd_opt(2026, 11, 22).unwrap(),
///     run_id: "20261122T031409Z-3f9a", part: 7, ext: "csv",
/// }).unwrap();
/// assert_eq!(key, "mysql/Orders/dt=2026-11-22/20261122T031409Z-3f9a-00007.csv");
/// ```
///
/// **Why the pipeline's name is not in the default**: a table's objects sit under one
/// folder per source and table, whatever pipeline wrote them, so that a warehouse loads
/// a table from one prefix (`COPY … FROM 's3://…/mysql/Orders/'`, as the book's jobs do),
/// and a pipeline renamed or split in two keeps landing where loaders look. Keys never
/// collide (each has its run id), but two pipelines landing one table would share that
/// folder: give them [`KeyTemplate::PER_PIPELINE`] (or a `{prefix}` each) to keep them
/// apart.
///
/// ```
/// use tributary::stores::{KeyTemplate, KeyVars};
/// let t = KeyTemplate::new(KeyTemplate::PER_PIPELINE)?;
/// let key = t.render(&KeyVars {
///     prefix: "", pipeline: "orders-backfill", source: "mysql", stream: "Orders",
///     date: chrono::NaiveDate::from_ymd_opt(2026, 11, 22).unwrap(),
///     run_id: "r1", part: 0, ext: "csv",
/// })?;
/// assert_eq!(key, "orders-backfill/mysql/Orders/dt=2026-11-22/r1-00000.csv");
/// # Ok::<(), tributary::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyTemplate(String);

impl Default for KeyTemplate {
    fn default() -> Self {
        KeyTemplate(Self::DEFAULT.into())
    }
}

const NAMES: &[&str] = &[
    "prefix", "pipeline", "source", "stream", "date", "run_id", "part", "ext",
];

impl KeyTemplate {
    /// `{prefix}/{source}/{stream}/dt={date}/{run_id}-{part:05}.{ext}`
    pub const DEFAULT: &'static str =
        "{prefix}/{source}/{stream}/dt={date}/{run_id}-{part:05}.{ext}";
    /// The default with the pipeline's name first, for pipelines that land one table
    /// side by side: `{prefix}/{pipeline}/{source}/{stream}/dt={date}/{run_id}-{part:05}.{ext}`
    pub const PER_PIPELINE: &'static str =
        "{prefix}/{pipeline}/{source}/{stream}/dt={date}/{run_id}-{part:05}.{ext}";
    /// Where a run's manifest goes by default: `{prefix}/{source}/{stream}/dt={date}/{run_id}.manifest.json`
    pub const MANIFEST: &'static str =
        "{prefix}/{source}/{stream}/dt={date}/{run_id}.manifest.json";

    /// A data key template; checks placeholders and that `{run_id}` and `{part}` appear.
    pub fn new(template: impl Into<String>) -> Result<Self> {
        let t = Self::parse(template.into())?;
        if !t.0.contains("{run_id}") || !(t.0.contains("{part}") || t.0.contains("{part:")) {
            return Err(Error::config(
                "key template",
                format!(
                    "{:?} must contain {{run_id}} and {{part}} so that keys are unique per run and part",
                    t.0
                ),
            ));
        }
        Ok(t)
    }

    /// A manifest key template; must contain `{run_id}`.
    pub fn manifest(template: impl Into<String>) -> Result<Self> {
        let t = Self::parse(template.into())?;
        if !t.0.contains("{run_id}") {
            return Err(Error::config(
                "key template",
                format!("manifest template {:?} must contain {{run_id}}", t.0),
            ));
        }
        Ok(t)
    }

    fn parse(template: String) -> Result<Self> {
        let mut rest = template.as_str();
        while let Some(start) = rest.find('{') {
            let end = rest[start..].find('}').ok_or_else(|| {
                Error::config("key template", format!("unclosed '{{' in {template:?}"))
            })?;
            let inner = &rest[start + 1..start + end];
            let (name, fmt) = inner.split_once(':').unwrap_or((inner, ""));
            if !NAMES.contains(&name) {
                return Err(Error::config(
                    "key template",
                    format!(
                        "unknown placeholder {{{inner}}} in {template:?}; known: {}",
                        NAMES.join(", ")
                    ),
                ));
            }
            if !fmt.is_empty()
                && (name != "part" || !fmt.starts_with('0') || fmt.parse::<u8>().is_err())
            {
                return Err(Error::config(
                    "key template",
                    format!("bad format {{{inner}}}: only {{part:0N}} takes a width"),
                ));
            }
            rest = &rest[start + end + 1..];
        }
        Ok(KeyTemplate(template))
    }

    /// The template text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Fill in the placeholders.
    pub fn render(&self, v: &KeyVars<'_>) -> Result<String> {
        let mut out = String::with_capacity(self.0.len() + 64);
        let mut rest = self.0.as_str();
        while let Some(start) = rest.find('{') {
            out.push_str(&rest[..start]);
            let end = start + rest[start..].find('}').expect("checked in parse");
            let inner = &rest[start + 1..end];
            let (name, fmt) = inner.split_once(':').unwrap_or((inner, ""));
            match name {
                "prefix" => out.push_str(v.prefix.trim_matches('/')),
                "pipeline" => out.push_str(&safe(v.pipeline)),
                "source" => out.push_str(&safe(v.source)),
                "stream" => out.push_str(&safe(v.stream)),
                "date" => out.push_str(&v.date.format("%Y-%m-%d").to_string()),
                "run_id" => out.push_str(&safe(v.run_id)),
                "ext" => out.push_str(&safe(v.ext)),
                "part" => {
                    let width: usize = fmt.parse().unwrap_or(0);
                    out.push_str(&format!("{:0width$}", v.part, width = width));
                }
                _ => unreachable!("checked in parse"),
            }
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        let key = out
            .split('/')
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("/");
        if key.is_empty() {
            return Err(Error::config(
                "key template",
                format!("{:?} renders an empty key", self.0),
            ));
        }
        Ok(key)
    }
}

/// Make a value safe as (part of) one key segment.
fn safe(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '=' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match out.as_str() {
        "" => "_".into(),
        "." | ".." => out.replace('.', "_"),
        _ => out,
    }
}
