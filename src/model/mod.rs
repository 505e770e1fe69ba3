//! The data model: [`Batch`], [`Checkpoint`], change rows ([`change`]), schema
//! summaries, table filters and the JSON column convention.

mod batch;
pub mod change;
pub(crate) mod checkpoint;
mod fingerprint;
mod schema;
mod table;

pub use batch::{Batch, BatchStream, EncodedChunk, EncodedStream, collect};
pub use change::{ChangeMeta, ChangeOptions, ChangeSchema, Op};
pub use checkpoint::{Checkpoint, CursorValue, Watermark};
pub(crate) use fingerprint::row_fingerprints;
pub use schema::{
    ColumnChange, FieldSummary, KEY_ORDINAL_KEY, SchemaSummary, key_columns, key_field,
    schema_changes,
};
pub use table::{NameCase, TableFilter};

/// Field metadata key marking a UTF-8 column as holding JSON text, so that JSON Lines
/// output embeds it as JSON rather than as a string (Arrow's canonical `arrow.json`
/// extension type).
pub const EXTENSION_NAME_KEY: &str = "ARROW:extension:name";
/// Field metadata key holding an extension type's parameters.
pub const EXTENSION_METADATA_KEY: &str = "ARROW:extension:metadata";
/// The extension name for JSON text columns.
pub const JSON_EXTENSION: &str = "arrow.json";
/// Field metadata key marking a UTF-8 column as exact decimal text (a `numeric` whose
/// precision or scale is unknown); JSON Lines writes it as a number with every digit.
pub const NUMERIC_TEXT_KEY: &str = "tributary.numeric";
/// The extension name for UUIDs stored as `FixedSizeBinary(16)`.
pub const UUID_EXTENSION: &str = "arrow.uuid";

/// A UTF-8 field that carries JSON text.
///
/// ```
/// let f = tributary::model::json_field("payload", true);
/// assert!(tributary::model::is_json_field(&f));
/// ```
pub fn json_field(name: &str, nullable: bool) -> arrow_schema::Field {
    arrow_schema::Field::new(name, arrow_schema::DataType::Utf8, nullable).with_metadata(
        std::collections::HashMap::from([
            (EXTENSION_NAME_KEY.to_string(), JSON_EXTENSION.to_string()),
            // Arrow's canonical JSON extension carries an empty metadata string.
            (EXTENSION_METADATA_KEY.to_string(), String::new()),
        ]),
    )
}

/// A `FixedSizeBinary(16)` field marked as a UUID (Arrow's canonical `arrow.uuid`).
///
/// ```
/// let f = tributary::model::uuid_field("id", false);
/// assert!(tributary::model::is_uuid_field(&f));
/// ```
pub fn uuid_field(name: &str, nullable: bool) -> arrow_schema::Field {
    arrow_schema::Field::new(name, arrow_schema::DataType::FixedSizeBinary(16), nullable)
        .with_metadata(std::collections::HashMap::from([(
            EXTENSION_NAME_KEY.to_string(),
            UUID_EXTENSION.to_string(),
        )]))
}

/// A UTF-8 field marked as exact decimal text ([`NUMERIC_TEXT_KEY`]), for decimals
/// whose precision or scale is unknown.
pub fn numeric_text_field(name: &str, nullable: bool) -> arrow_schema::Field {
    arrow_schema::Field::new(name, arrow_schema::DataType::Utf8, nullable).with_metadata(
        std::collections::HashMap::from([(NUMERIC_TEXT_KEY.to_string(), "true".to_string())]),
    )
}

/// Whether a field is marked as JSON text.
pub fn is_json_field(field: &arrow_schema::Field) -> bool {
    field.metadata().get(EXTENSION_NAME_KEY).map(String::as_str) == Some(JSON_EXTENSION)
}

/// Whether a field is marked as a UUID.
pub fn is_uuid_field(field: &arrow_schema::Field) -> bool {
    field.metadata().get(EXTENSION_NAME_KEY).map(String::as_str) == Some(UUID_EXTENSION)
}
