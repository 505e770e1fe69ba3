//! Schemas as manifests and checkpoints record them: a readable summary with a short
//! fingerprint, key columns marked in field metadata, and the difference between two
//! schemas of one table (what a schema change is).

use arrow_schema::{DataType, Field, Schema};
use serde::{Deserialize, Serialize};

/// Field metadata key marking a key column; its value is the column's 1-based position
/// in the key (`"1"`, `"2"`, ... for a composite key).
pub const KEY_ORDINAL_KEY: &str = "tributary.key";

/// `field` marked as the `ordinal`-th (1-based) column of the table's key.
///
/// ```
/// use arrow_schema::{DataType, Field, Schema};
/// use tributary::model::{key_columns, key_field};
/// let s = Schema::new(vec![Field::new("name", DataType::Utf8, true),
///                          key_field(Field::new("id", DataType::Int64, false), 1)]);
/// assert_eq!(key_columns(&s), vec!["id".to_string()]);
/// ```
pub fn key_field(field: Field, ordinal: u32) -> Field {
    let mut md = field.metadata().clone();
    md.insert(KEY_ORDINAL_KEY.to_string(), ordinal.to_string());
    field.with_metadata(md)
}

/// The key columns of `schema`, in key order.
pub fn key_columns(schema: &Schema) -> Vec<String> {
    let mut keys: Vec<(u32, String)> = schema
        .fields()
        .iter()
        .filter_map(|f| {
            let n = f.metadata().get(KEY_ORDINAL_KEY)?.parse().ok()?;
            Some((n, f.name().clone()))
        })
        .collect();
    keys.sort();
    keys.into_iter().map(|(_, n)| n).collect()
}

/// One column of a [`SchemaSummary`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FieldSummary {
    /// The column's name.
    pub name: String,
    /// Its Arrow type as Arrow prints it (`Int64`, `Decimal128(12, 2)`,
    /// `Timestamp(µs, "UTC")`).
    #[serde(rename = "type")]
    pub data_type: String,
    /// Whether it may hold nulls.
    pub nullable: bool,
    /// Its position in the table's key, if it is a key column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<u32>,
    /// Its extension type (`arrow.json`, `arrow.uuid`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension: Option<String>,
}

/// A schema as a manifest records it for each object.
///
/// ```
/// use arrow_schema::{DataType, Field, Schema};
/// use tributary::model::SchemaSummary;
/// let a = SchemaSummary::of(&Schema::new(vec![Field::new("id", DataType::Int64, false)]));
/// let b = SchemaSummary::of(&Schema::new(vec![Field::new("id", DataType::Int32, false)]));
/// assert_eq!(a.fields[0].data_type, "Int64");
/// assert_eq!(a.fingerprint.len(), 16);
/// assert_ne!(a.fingerprint, b.fingerprint);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SchemaSummary {
    /// 16 hex digits of SHA-256 over the fields' names, types, nullability, key
    /// positions and extension types: equal fingerprints, same schema.
    pub fingerprint: String,
    /// The columns, in order.
    pub fields: Vec<FieldSummary>,
}

impl SchemaSummary {
    /// The summary of `schema`.
    pub fn of(schema: &Schema) -> Self {
        let fields: Vec<FieldSummary> = schema
            .fields()
            .iter()
            .map(|f| FieldSummary {
                name: f.name().clone(),
                data_type: f.data_type().to_string(),
                nullable: f.is_nullable(),
                key: f
                    .metadata()
                    .get(KEY_ORDINAL_KEY)
                    .and_then(|k| k.parse().ok()),
                extension: f.metadata().get(super::EXTENSION_NAME_KEY).cloned(),
            })
            .collect();
        let text = serde_json::to_string(&fields).unwrap_or_default();
        let fingerprint = crate::util::sha256_hex(text.as_bytes())[..16].to_string();
        SchemaSummary {
            fingerprint,
            fields,
        }
    }
}

/// How one column differs between two schemas of the same table.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ColumnChange {
    /// A column that was not there before.
    Added {
        /// The column.
        column: String,
        /// Its type.
        data_type: DataType,
    },
    /// A column that is gone.
    Dropped {
        /// The column.
        column: String,
        /// The type it had.
        data_type: DataType,
    },
    /// A column whose type changed (`Decimal128(12, 2)` → `Decimal128(14, 3)`).
    Retyped {
        /// The column.
        column: String,
        /// The type it had.
        old: DataType,
        /// The type it has now.
        new: DataType,
    },
}

impl std::fmt::Display for ColumnChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ColumnChange::Added { column, data_type } => {
                write!(f, "column {column} ({data_type}) was added")
            }
            ColumnChange::Dropped { column, data_type } => {
                write!(f, "column {column} ({data_type}) was dropped")
            }
            ColumnChange::Retyped { column, old, new } => {
                write!(f, "column {column} changed type from {old} to {new}")
            }
        }
    }
}

/// How `new` differs from `old` by column name and type (nullability and metadata
/// other than an extension type do not count). Empty: the same columns, same types.
///
/// ```
/// use arrow_schema::{DataType, Field, Schema};
/// use tributary::model::schema_changes;
/// let old = Schema::new(vec![Field::new("amount", DataType::Decimal128(12, 2), true)]);
/// let new = Schema::new(vec![Field::new("amount", DataType::Decimal128(14, 3), true),
///                            Field::new("note", DataType::Utf8, true)]);
/// let changes: Vec<String> = schema_changes(&old, &new).iter().map(|c| c.to_string()).collect();
/// assert_eq!(changes, ["column amount changed type from Decimal128(12, 2) to Decimal128(14, 3)",
///                      "column note (Utf8) was added"]);
/// ```
pub fn schema_changes(old: &Schema, new: &Schema) -> Vec<ColumnChange> {
    let ext = |f: &Field| f.metadata().get(super::EXTENSION_NAME_KEY).cloned();
    let mut out = Vec::new();
    for nf in new.fields() {
        match old.fields().iter().find(|of| of.name() == nf.name()) {
            None => out.push(ColumnChange::Added {
                column: nf.name().clone(),
                data_type: nf.data_type().clone(),
            }),
            Some(of) if of.data_type() != nf.data_type() || ext(of) != ext(nf) => {
                out.push(ColumnChange::Retyped {
                    column: nf.name().clone(),
                    old: of.data_type().clone(),
                    new: nf.data_type().clone(),
                })
            }
            Some(_) => {}
        }
    }
    for of in old.fields() {
        if new.field_with_name(of.name()).is_err() {
            out.push(ColumnChange::Dropped {
                column: of.name().clone(),
                data_type: of.data_type().clone(),
            });
        }
    }
    out
}
