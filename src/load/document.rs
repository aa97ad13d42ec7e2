//! How records become documents: the options from `[loader]`, the per-column conversions
//! they select, and the names of indexes. The reading itself is compiled per writer schema
//! (`plan`).

use apache_avro::schema::RecordField;
use serde_json::Value as Json;

use crate::config::{JsonMapping, LoaderConfig, MappingConfig};
use crate::model::TableId;
use crate::wire::envelope::mysql_type;

/// Every document carries the version of the change that wrote it here, so a truncate can
/// delete exactly the older documents. The mapping keeps it out of `_source`.
pub const META_FIELD: &str = "_sluice";

/// A record that does not have the shape Sluice writes.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ShapeError(String);

pub(super) fn shape(m: impl Into<String>) -> ShapeError {
    ShapeError(m.into())
}

/// How records become documents, from `[loader]`.
#[derive(Debug, Clone)]
pub struct Options {
    /// Show `_sluice.ts_ms` and `_sluice.op` besides `_sluice.version`.
    pub metadata: bool,
    /// Index name template over `{db}` and `{table}`.
    pub index: String,
    /// Alias template: every index Sluice creates gets this alias.
    pub alias: Option<String>,
    /// Field types where more than one fits, and the columns read as booleans or JSON.
    pub mapping: MappingConfig,
}

impl Default for Options {
    fn default() -> Self {
        Options::new(&LoaderConfig::default())
    }
}

/// How a column's value differs in the document from its Avro form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    /// As Avro has it.
    AsIs,
    /// An integer flag as `true`/`false` (`mapping.booleans`).
    Boolean,
    /// JSON text parsed into the value it spells (`mapping.json` = object or flattened).
    JsonObject,
}

impl Options {
    /// The options `[loader]` asks for.
    pub fn new(cfg: &LoaderConfig) -> Options {
        Options {
            metadata: cfg.metadata_fields,
            index: cfg.index.clone(),
            alias: cfg.alias.clone(),
            mapping: cfg.mapping.clone(),
        }
    }

    /// The index the rows of `table` are written to.
    pub fn index_name(&self, table: &TableId) -> String {
        fill(&self.index, &table.db, &table.table)
    }

    /// How column `field` of `table` is converted.
    pub fn conversion(&self, table: &TableId, field: &RecordField) -> Conversion {
        if self
            .mapping
            .booleans
            .iter()
            .any(|p| p.matches(table, &field.name))
        {
            Conversion::Boolean
        } else if self.mapping.json != JsonMapping::Text
            && (mysql_type(field) == "JSON"
                || self
                    .mapping
                    .json_columns
                    .iter()
                    .any(|p| p.matches(table, &field.name)))
        {
            Conversion::JsonObject
        } else {
            Conversion::AsIs
        }
    }
}

/// A template over `{db}` and `{table}`, lower-cased as index names must be.
pub(super) fn fill(template: &str, db: &str, table: &str) -> String {
    template
        .replace("{db}", db)
        .replace("{table}", table)
        .to_lowercase()
}

/// A column's document value after `conversion`.
pub(super) fn converted(value: Json, conversion: Conversion) -> Result<Json, ShapeError> {
    Ok(match (conversion, value) {
        (_, Json::Null) => Json::Null,
        (Conversion::AsIs, v) => v,
        (Conversion::Boolean, Json::Number(n)) => Json::Bool(n.as_f64() != Some(0.0)),
        (Conversion::Boolean, Json::Bool(b)) => Json::Bool(b),
        (Conversion::Boolean, v) => {
            return Err(shape(format!("{v} is not a number (mapping.booleans)")));
        }
        (Conversion::JsonObject, Json::String(text)) => serde_json::from_str(&text)
            .map_err(|e| shape(format!("JSON column holds invalid JSON: {e}")))?,
        (Conversion::JsonObject, v) => v,
    })
}
