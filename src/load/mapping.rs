//! Index mappings from the writer schema, so the index server never guesses a type from the
//! first value it sees (a BIGINT UNSIGNED above 2^63 is no `long`; a text that looks like a
//! date is no date).

use apache_avro::Schema;
use apache_avro::schema::RecordSchema;
use serde_json::{Map, Value as Json, json};

use super::document::{Conversion, META_FIELD, Options};
use crate::config::{DecimalMapping, JsonMapping, MappingConfig, StringMapping, VectorMapping};
use crate::model::TableId;
use crate::wire::envelope::{is_bits, mysql_type};

/// The `mappings` of an index for rows of `row` of `table`. Sluice's metadata is indexed
/// (truncates query it) but kept out of `_source`, which stays exactly the row, unless
/// `loader.metadata_fields` asks to see it.
pub fn mappings(row: &RecordSchema, table: &TableId, options: &Options) -> Json {
    let metadata = options.metadata;
    let mut properties = Map::new();
    for f in &row.fields {
        let m = match options.conversion(table, f) {
            Conversion::Boolean => Some(json!({"type": "boolean"})),
            Conversion::JsonObject => Some(match options.mapping.json {
                JsonMapping::Flattened => json!({"type": "flattened"}),
                JsonMapping::FlatObject => json!({"type": "flat_object"}),
                JsonMapping::Object | JsonMapping::Text => json!({"type": "object"}),
            }),
            Conversion::AsIs => field_mapping(&f.schema, mysql_type(f), &options.mapping),
        };
        if let Some(m) = m {
            properties.insert(f.name.clone(), m);
        }
    }
    let mut meta = json!({"version": {"type": "long"}});
    if metadata {
        meta["ts_ms"] = json!({"type": "date", "format": "epoch_millis"});
        meta["op"] = json!({"type": "keyword"});
    }
    properties.insert(META_FIELD.into(), json!({ "properties": meta }));
    let excludes: &[&str] = if metadata { &[] } else { &[META_FIELD] };
    json!({
        "_source": {"excludes": excludes},
        "date_detection": false,
        "numeric_detection": false,
        "properties": properties,
    })
}

fn field_mapping(schema: &Schema, mysql_type: &str, cfg: &MappingConfig) -> Option<Json> {
    Some(match schema {
        Schema::Union(u) => {
            let inner = u.variants().iter().find(|s| !matches!(s, Schema::Null))?;
            return field_mapping(inner, mysql_type, cfg);
        }
        Schema::Boolean => json!({"type": "boolean"}),
        Schema::Int | Schema::Long => json!({"type": "long"}),
        Schema::Float => json!({"type": "float"}),
        Schema::Double => json!({"type": "double"}),
        Schema::Decimal(_) if mysql_type == "BIGINT UNSIGNED" => json!({"type": "unsigned_long"}),
        Schema::Decimal(d) if d.scale == 0 && d.precision <= 18 => json!({"type": "long"}),
        Schema::Decimal(d) => match cfg.decimals {
            DecimalMapping::Keyword => json!({"type": "keyword"}),
            DecimalMapping::ScaledFloat => {
                json!({"type": "scaled_float", "scaling_factor": 10f64.powi(d.scale as i32)})
            }
            DecimalMapping::Double => json!({"type": "double"}),
        },
        Schema::Bytes if is_bits(mysql_type) => json!({"type": "unsigned_long"}),
        Schema::Bytes => json!({"type": "binary"}),
        Schema::String if mysql_type == "ENUM" || mysql_type == "SET" => {
            json!({"type": "keyword"})
        }
        Schema::String => match cfg.strings {
            StringMapping::TextAndKeyword => json!({"type": "text",
                "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}}),
            StringMapping::Text => json!({"type": "text"}),
            StringMapping::Keyword => json!({"type": "keyword"}),
        },
        Schema::Date | Schema::TimestampMicros | Schema::LocalTimestampMicros => {
            json!({"type": "date", "format": "strict_date_optional_time"})
        }
        Schema::Record(_) | Schema::Ref { .. } if mysql_type == "GEOMETRY" => json!({
            "properties": {"wkb": {"type": "binary"}, "srid": {"type": "integer"}}
        }),
        Schema::Array(_) => vector_mapping(mysql_type, cfg.vectors),
        _ => return None,
    })
}

/// A VECTOR(n) column: the server's vector type where `n` fits it, floats otherwise (and when
/// the binlog did not say `n`).
fn vector_mapping(mysql_type: &str, vectors: VectorMapping) -> Json {
    let dims: u32 = mysql_type
        .strip_prefix("VECTOR(")
        .and_then(|d| d.strip_suffix(')'))
        .and_then(|d| d.parse().ok())
        .unwrap_or(0);
    match vectors {
        VectorMapping::DenseVector if (1..=4096).contains(&dims) => {
            json!({"type": "dense_vector", "dims": dims, "element_type": "float"})
        }
        VectorMapping::KnnVector if (1..=16_000).contains(&dims) => {
            json!({"type": "knn_vector", "dimension": dims})
        }
        _ => json!({"type": "float"}),
    }
}
