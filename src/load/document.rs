//! Decoded Avro records -> index actions: the document `_id` from the key, the version and
//! operation from the envelope, the document from its `after` image plus `_sluice.version`.

use apache_avro::Schema;
use apache_avro::schema::{RecordField, RecordSchema};
use apache_avro::types::Value as Avro;
use base64::Engine;
use num_bigint::{BigInt, Sign};
use serde_json::{Map, Value as Json};

use crate::config::{JsonMapping, LoaderConfig, MappingConfig};
use crate::model::{TableId, time};
use crate::wire::envelope::{field, is_bits, mysql_type, source_field};

/// What to do in the index for one record.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create or replace the document.
    Index {
        /// Index name.
        index: String,
        /// Document id.
        id: String,
        /// External version.
        version: u64,
        /// The row.
        doc: Json,
    },
    /// Delete the document.
    Delete {
        /// Index name.
        index: String,
        /// Document id.
        id: String,
        /// External version.
        version: u64,
    },
}

/// What one record asks of the index.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// Write one document.
    Document(Action),
    /// Delete every document older than the truncate. Such a record arrives on each partition
    /// after that partition's earlier changes, so once all have been applied no row from
    /// before the TRUNCATE is left, whatever order the partitions were read in.
    Truncate {
        /// Index name.
        index: String,
        /// Version of the TRUNCATE.
        version: u64,
    },
}

impl Record {
    /// The index the record applies to.
    pub fn index(&self) -> &str {
        match self {
            Record::Document(Action::Index { index, .. } | Action::Delete { index, .. })
            | Record::Truncate { index, .. } => index,
        }
    }
}

/// Every document carries the version of the change that wrote it here, so a truncate can
/// delete exactly the older documents. The mapping keeps it out of `_source`.
pub const META_FIELD: &str = "_sluice";

/// A record that does not have the shape Sluice writes.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ShapeError(String);

fn shape(m: impl Into<String>) -> ShapeError {
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
fn fill(template: &str, db: &str, table: &str) -> String {
    template
        .replace("{db}", db)
        .replace("{table}", table)
        .to_lowercase()
}

/// A record, its table, and the alias its index is to have.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutedRecord {
    /// What to do in the index.
    pub record: Record,
    /// The source table.
    pub table: TableId,
    /// The alias of the index, if configured.
    pub alias: Option<String>,
    /// When Sluice read the change (the envelope's `ts_ms`), for commit-to-indexed latency.
    pub read_ms: Option<i64>,
}

/// What a record with a non-null value asks (tombstones carry nothing to apply); `key` is
/// `None` only for truncates.
///
/// Every document carries `_sluice.version` (truncates query it); with `metadata` also
/// `_sluice.ts_ms` (the change's time in the database) and `_sluice.op`.
pub fn record(
    key: Option<(&Avro, &Schema)>,
    value: &Avro,
    value_schema: &Schema,
    options: &Options,
) -> Result<RoutedRecord, ShapeError> {
    let alias = |db: &str, table: &str| options.alias.as_deref().map(|a| fill(a, db, table));
    let (Avro::Record(fields), Schema::Record(envelope)) = (value, value_schema) else {
        return Err(shape("the value is not an envelope record"));
    };
    let get = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .ok_or_else(|| shape(format!("the envelope has no `{name}` field")))
    };
    let Avro::Record(source) = get(field::SOURCE)? else {
        return Err(shape("`source` is not a record"));
    };
    let get_source = |name: &str| source.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    let version = match get_source(source_field::CHANGE_VERSION) {
        Some(Avro::Long(v)) if *v > 0 => *v as u64,
        _ => {
            return Err(shape(
                "`source.change_version` is missing or not a positive long",
            ));
        }
    };
    let db = match get_source(source_field::DB) {
        Some(Avro::String(s)) => s.as_str(),
        _ => return Err(shape("`source.db` is missing")),
    };
    let table = match get_source(source_field::TABLE) {
        Some(Avro::Union(_, t)) => match t.as_ref() {
            Avro::String(s) => s.as_str(),
            _ => return Err(shape("`source.table` is null")),
        },
        _ => return Err(shape("`source.table` is missing")),
    };
    let index = fill(&options.index, db, table);
    let alias = alias(db, table);
    let table = TableId::new(db, table);
    let convert = |f: &RecordField| options.conversion(&table, f);
    let read_ms = match get(field::TS_MS) {
        Ok(Avro::Union(_, t)) => match t.as_ref() {
            Avro::Long(ms) => Some(*ms),
            _ => None,
        },
        _ => None,
    };
    let shaped = |record| {
        Ok(RoutedRecord {
            record,
            table: table.clone(),
            alias,
            read_ms,
        })
    };
    let op = match get(field::OP)? {
        Avro::String(op) => op.as_str(),
        _ => return Err(shape("`op` is not a string")),
    };
    if op == "t" {
        return shaped(Record::Truncate { index, version });
    }
    let (key, key_schema) = key.ok_or_else(|| shape(format!("op {op:?} without a key")))?;
    let id = document_id(key, key_schema)?;
    match op {
        "c" | "u" | "r" => {
            let row_schema = row_schema(envelope)?;
            let mut doc = match get(field::AFTER)? {
                Avro::Union(_, row) => row_json(row, row_schema, &convert)?,
                _ => return Err(shape("`after` is not a union")),
            };
            let Json::Object(row) = &mut doc else {
                return Err(shape(format!("op {op:?} without an `after` image")));
            };
            let meta = if options.metadata {
                let ts_ms = match get_source(source_field::TS_MS) {
                    Some(Avro::Long(t)) => Json::from(*t),
                    _ => Json::Null,
                };
                serde_json::json!({"version": version, "ts_ms": ts_ms, "op": op})
            } else {
                serde_json::json!({"version": version})
            };
            row.insert(META_FIELD.into(), meta);
            shaped(Record::Document(Action::Index {
                index,
                id,
                version,
                doc,
            }))
        }
        "d" => shaped(Record::Document(Action::Delete { index, id, version })),
        other => Err(shape(format!("unknown op {other:?}"))),
    }
}

/// The row record schema, defined inline in the `before` field of the envelope.
pub fn row_schema(envelope: &RecordSchema) -> Result<&RecordSchema, ShapeError> {
    let before = envelope
        .fields
        .iter()
        .find(|f| f.name == field::BEFORE)
        .ok_or_else(|| shape("the envelope schema has no `before` field"))?;
    match &before.schema {
        Schema::Union(u) => u.variants().iter().find_map(|s| match s {
            Schema::Record(r) => Some(r),
            _ => None,
        }),
        _ => None,
    }
    .ok_or_else(|| shape("the envelope's `before` is not a union with a row record"))
}

fn row_json(
    row: &Avro,
    schema: &RecordSchema,
    convert: &dyn Fn(&RecordField) -> Conversion,
) -> Result<Json, ShapeError> {
    match row {
        Avro::Null => Ok(Json::Null),
        Avro::Record(fields) => {
            let mut doc = Map::with_capacity(fields.len());
            for ((name, v), f) in fields.iter().zip(&schema.fields) {
                let value = field_json(v, f)
                    .and_then(|j| converted(j, convert(f)))
                    .map_err(|e| shape(format!("field `{name}`: {e}")))?;
                doc.insert(name.clone(), value);
            }
            Ok(Json::Object(doc))
        }
        _ => Err(shape("the row image is not a record")),
    }
}

/// A column's document value after `conversion`.
fn converted(value: Json, conversion: Conversion) -> Result<Json, ShapeError> {
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

/// The document id: the key's single value as text, or a JSON array of a composite key's
/// values, which cannot collide with a single value's text.
pub fn document_id(key: &Avro, schema: &Schema) -> Result<String, ShapeError> {
    let (Avro::Record(fields), Schema::Record(rs)) = (key, schema) else {
        return Err(shape("the key is not a record"));
    };
    let parts = fields
        .iter()
        .zip(&rs.fields)
        .map(|((_, v), f)| field_json(v, f))
        .collect::<Result<Vec<_>, _>>()?;
    match parts.as_slice() {
        [Json::String(s)] => Ok(s.clone()),
        [single] => Ok(single.to_string()),
        _ => Ok(Json::Array(parts).to_string()),
    }
}

/// One column value as the document stores it. BIT(n) columns, bytes in Avro, become the
/// unsigned number they spell.
fn field_json(v: &Avro, field: &RecordField) -> Result<Json, ShapeError> {
    let bits = match v {
        Avro::Union(_, inner) => inner.as_ref(),
        v => v,
    };
    match bits {
        Avro::Bytes(b) if is_bits(mysql_type(field)) && b.len() <= 8 => Ok(Json::from(
            b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)),
        )),
        _ => scalar_json(v, &field.schema),
    }
}

/// One column value as the document stores it: integers as numbers, decimals with a fraction
/// as exact strings, temporal values as ISO-8601 with microseconds (`Z` for instants), bytes
/// as base64 (Elasticsearch's `binary`), FLOAT as the shortest decimal that reads back as the
/// same single-precision number.
fn scalar_json(v: &Avro, schema: &Schema) -> Result<Json, ShapeError> {
    Ok(match (v, schema) {
        (Avro::Union(i, inner), Schema::Union(u)) => {
            let variant = u
                .variants()
                .get(*i as usize)
                .ok_or_else(|| shape(format!("union branch {i} does not exist")))?;
            return scalar_json(inner, variant);
        }
        (Avro::Null, _) => Json::Null,
        (Avro::Boolean(b), _) => Json::Bool(*b),
        (Avro::Int(i), _) => Json::from(*i),
        (Avro::Long(l), _) => Json::from(*l),
        (Avro::String(s), _) => Json::String(s.clone()),
        // f32's Display is the shortest text that reads back as the same f32.
        (Avro::Float(f), _) => float_json(f.to_string().parse().unwrap_or(f64::from(*f)))?,
        (Avro::Double(d), _) => float_json(*d)?,
        (Avro::Bytes(b), _) => Json::String(base64::engine::general_purpose::STANDARD.encode(b)),
        (Avro::Record(fields), _) => {
            // GEOMETRY, Sluice's only nested record: {wkb: bytes, srid: [null, int]}.
            let mut object = Map::with_capacity(fields.len());
            for (name, v) in fields {
                let v = match v {
                    Avro::Union(_, inner) => inner.as_ref(),
                    v => v,
                };
                let json = match v {
                    Avro::Bytes(b) => {
                        Json::String(base64::engine::general_purpose::STANDARD.encode(b))
                    }
                    Avro::Int(i) => Json::from(*i),
                    Avro::Null => Json::Null,
                    other => {
                        return Err(shape(format!(
                            "nested value {other:?} is not one Sluice writes"
                        )));
                    }
                };
                object.insert(name.clone(), json);
            }
            Json::Object(object)
        }
        // VECTOR: an array of floats.
        (Avro::Array(items), Schema::Array(inner)) => Json::Array(
            items
                .iter()
                .map(|v| scalar_json(v, &inner.items))
                .collect::<Result<_, _>>()?,
        ),
        (Avro::Decimal(d), Schema::Decimal(ds)) => decimal_json(&BigInt::from(d.clone()), ds.scale),
        (Avro::Date(d), _) => Json::String(time::format_date(i64::from(*d))),
        (Avro::LocalTimestampMicros(us), _) => Json::String(time::format_datetime_micros(*us)),
        (Avro::TimestampMicros(us), _) => {
            Json::String(format!("{}Z", time::format_datetime_micros(*us)))
        }
        (other, _) => {
            return Err(shape(format!(
                "Avro value {other:?} is not one Sluice writes"
            )));
        }
    })
}

fn float_json(d: f64) -> Result<Json, ShapeError> {
    serde_json::Number::from_f64(d)
        .map(Json::Number)
        .ok_or_else(|| shape(format!("{d} is not a finite number")))
}

fn decimal_json(unscaled: &BigInt, scale: usize) -> Json {
    if scale == 0 {
        if let Ok(i) = i64::try_from(unscaled) {
            return Json::from(i);
        }
        if let Ok(u) = u64::try_from(unscaled) {
            return Json::from(u);
        }
        return Json::String(unscaled.to_string());
    }
    let digits = unscaled.magnitude().to_string();
    let digits = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = digits.split_at(digits.len() - scale);
    let sign = if unscaled.sign() == Sign::Minus {
        "-"
    } else {
        ""
    };
    Json::String(format!("{sign}{int}.{frac}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_keep_every_digit() {
        let d = |s: &str, scale| decimal_json(&s.parse::<BigInt>().unwrap(), scale);
        assert_eq!(d("-123450", 4), Json::String("-12.3450".into()));
        assert_eq!(d("5", 2), Json::String("0.05".into()));
        assert_eq!(d("0", 2), Json::String("0.00".into()));
        assert_eq!(d("18446744073709551615", 0), Json::from(u64::MAX));
        assert_eq!(d("-7", 0), Json::from(-7));
        assert_eq!(
            d("99999999999999999999", 0),
            Json::String("99999999999999999999".into())
        );
    }

    #[test]
    fn vectors_are_arrays_of_their_shortest_floats() {
        let schema = Schema::parse_str(r#"{"type": "array", "items": "float"}"#).unwrap();
        let v = Avro::Array(vec![Avro::Float(1.1), Avro::Float(-0.5)]);
        assert_eq!(
            scalar_json(&v, &schema).unwrap(),
            serde_json::json!([1.1, -0.5])
        );
    }

    #[test]
    fn composite_ids_cannot_collide_with_single_ones() {
        let schema = |n: usize| {
            let fields: Vec<_> = (0..n)
                .map(|i| serde_json::json!({"name": format!("k{i}"), "type": "string"}))
                .collect();
            Schema::parse(&serde_json::json!({"type": "record", "name": "Key", "fields": fields}))
                .unwrap()
        };
        let rec = |vals: &[&str]| {
            Avro::Record(
                vals.iter()
                    .enumerate()
                    .map(|(i, v)| (format!("k{i}"), Avro::String(v.to_string())))
                    .collect(),
            )
        };
        assert_eq!(document_id(&rec(&["a"]), &schema(1)).unwrap(), "a");
        assert_eq!(
            document_id(&rec(&["a,b", "c"]), &schema(2)).unwrap(),
            r#"["a,b","c"]"#
        );
        assert_eq!(
            document_id(&rec(&["a", "b,c"]), &schema(2)).unwrap(),
            r#"["a","b,c"]"#
        );
    }
}
