//! Index mappings from the writer schema, so the index server never guesses a type from the
//! first value it sees (a BIGINT UNSIGNED above 2^63 is no `long`; a text that looks like a
//! date is no date).

use apache_avro::Schema;
use apache_avro::schema::RecordSchema;
use serde_json::{Map, Value as Json, json};

use super::document::{Conversion, META_FIELD, Options};
use crate::config::{DecimalMapping, JsonMapping, MappingConfig, StringMapping, VectorMapping};
use crate::encode::schema::{is_bits, mysql_type};
use crate::model::TableId;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::schema::table_avro;
    use crate::model::{Column, ColumnType, TableId, TableSchema};

    #[test]
    fn every_sluice_type_gets_an_explicit_mapping() {
        let col = |name: &str, ty| Column::new(name, ty, true);
        let table = TableSchema {
            id: TableId::new("db", "t"),
            columns: vec![
                col(
                    "u",
                    ColumnType::Integer {
                        bytes: 8,
                        unsigned: true,
                    },
                ),
                col(
                    "i",
                    ColumnType::Integer {
                        bytes: 4,
                        unsigned: true,
                    },
                ),
                col(
                    "p",
                    ColumnType::Decimal {
                        precision: 12,
                        scale: 2,
                    },
                ),
                col(
                    "n",
                    ColumnType::Decimal {
                        precision: 10,
                        scale: 0,
                    },
                ),
                col(
                    "w",
                    ColumnType::Decimal {
                        precision: 20,
                        scale: 0,
                    },
                ),
                col("s", ColumnType::Text),
                col("d", ColumnType::Date),
                col("dt", ColumnType::DateTime { fsp: 6 }),
                col("ts", ColumnType::Timestamp { fsp: 0 }),
            ],
            key: vec![1],
        };
        let avro = table_avro("x", &table).unwrap();
        let Schema::Record(envelope) = Schema::parse(&avro.value).unwrap() else {
            panic!()
        };
        let Schema::Union(before) = &envelope.fields[0].schema else {
            panic!()
        };
        let Schema::Record(row) = &before.variants()[1] else {
            panic!()
        };
        let m = mappings(row, &TableId::new("db", "t"), &Options::default());
        let ty = |f: &str| m["properties"][f]["type"].as_str().unwrap().to_string();
        assert_eq!(
            ["u", "i", "p", "n", "w", "s", "d", "dt", "ts"].map(ty),
            [
                "unsigned_long",
                "long",
                "keyword",
                "long",
                "keyword",
                "text",
                "date",
                "date",
                "date"
            ]
        );
        assert_eq!(m["date_detection"], false);
        // Sluice's version is searchable (truncates) but not part of the document.
        assert_eq!(
            m["properties"]["_sluice"]["properties"]["version"]["type"],
            "long"
        );
        assert_eq!(m["_source"]["excludes"], json!(["_sluice"]));
    }

    #[test]
    fn bits_labels_bytes_and_shapes_get_their_own_mappings() {
        let col = |name: &str, ty| Column::new(name, ty, true);
        let labels: std::sync::Arc<[String]> = ["a".to_string()].into();
        let table = TableSchema {
            id: TableId::new("db", "t"),
            columns: vec![
                col("f", ColumnType::Float),
                col("d", ColumnType::Double),
                col("b1", ColumnType::Bit { bits: 1 }),
                col("b9", ColumnType::Bit { bits: 9 }),
                col("raw", ColumnType::Bytes),
                col("e", ColumnType::Enum(labels.clone())),
                col("s", ColumnType::Set(labels)),
                col("g", ColumnType::Geometry),
                col("t", ColumnType::Time { fsp: 0 }),
            ],
            key: vec![0],
        };
        let avro = table_avro("x", &table).unwrap();
        let Schema::Record(envelope) = Schema::parse(&avro.value).unwrap() else {
            panic!()
        };
        let row = crate::load::document::row_schema(&envelope).unwrap();
        let options = Options::new(&crate::config::LoaderConfig {
            metadata_fields: true,
            ..Default::default()
        });
        let m = mappings(row, &TableId::new("db", "t"), &options);
        let ty = |f: &str| {
            m["properties"][f]["type"]
                .as_str()
                .unwrap_or("object")
                .to_string()
        };
        assert_eq!(
            ["f", "d", "b1", "b9", "raw", "e", "s", "g", "t"].map(ty),
            [
                "float",
                "double",
                "boolean",
                "unsigned_long",
                "binary",
                "keyword",
                "keyword",
                "object",
                "long"
            ]
        );
        assert_eq!(m["properties"]["g"]["properties"]["wkb"]["type"], "binary");
        // `loader.metadata_fields`: the metadata is typed and shown in `_source`.
        let meta = &m["properties"]["_sluice"]["properties"];
        assert_eq!(meta["ts_ms"]["format"], "epoch_millis");
        assert_eq!(meta["op"]["type"], "keyword");
        assert_eq!(m["_source"]["excludes"], json!([]));
    }

    #[test]
    fn vectors_map_to_the_servers_vector_type_where_their_dimensions_fit() {
        let table = TableSchema {
            id: TableId::new("db", "t"),
            columns: vec![
                Column::new("id", ColumnType::Vector { dims: 3 }, false),
                Column::new("big", ColumnType::Vector { dims: 5000 }, true),
            ],
            key: vec![0],
        };
        let avro = table_avro("x", &table).unwrap();
        let Schema::Record(envelope) = Schema::parse(&avro.value).unwrap() else {
            panic!()
        };
        let row = crate::load::document::row_schema(&envelope).unwrap();
        let with = |vectors| {
            let mut options = Options::default();
            options.mapping.vectors = vectors;
            mappings(row, &table.id, &options)["properties"].clone()
        };
        let es = with(VectorMapping::DenseVector);
        assert_eq!(
            es["id"],
            json!({"type": "dense_vector", "dims": 3, "element_type": "float"})
        );
        // Over Elasticsearch's 4,096 dimensions: plain floats.
        assert_eq!(es["big"], json!({"type": "float"}));
        let os = with(VectorMapping::KnnVector);
        assert_eq!(os["id"], json!({"type": "knn_vector", "dimension": 3}));
        assert_eq!(os["big"], json!({"type": "knn_vector", "dimension": 5000}));
        assert_eq!(with(VectorMapping::Float)["id"], json!({"type": "float"}));
    }

    #[test]
    fn the_mapping_options_choose_among_the_types_that_fit() {
        let col = |name: &str, ty| Column::new(name, ty, true);
        let table = TableSchema {
            id: TableId::new("db", "t"),
            columns: vec![
                col("s", ColumnType::Text),
                col(
                    "price",
                    ColumnType::Decimal {
                        precision: 10,
                        scale: 2,
                    },
                ),
                col("doc", ColumnType::Json),
                col(
                    "flag",
                    ColumnType::Integer {
                        bytes: 1,
                        unsigned: false,
                    },
                ),
            ],
            key: vec![0],
        };
        let avro = table_avro("x", &table).unwrap();
        let Schema::Record(envelope) = Schema::parse(&avro.value).unwrap() else {
            panic!()
        };
        let row = crate::load::document::row_schema(&envelope).unwrap();
        let ty = |m: &Json, f: &str| m["properties"][f].clone();
        let defaults = mappings(row, &table.id, &Options::default());
        assert_eq!(ty(&defaults, "s")["fields"]["keyword"]["type"], "keyword");
        assert_eq!(ty(&defaults, "price")["type"], "keyword");
        assert_eq!(ty(&defaults, "doc")["type"], "text");
        assert_eq!(ty(&defaults, "flag")["type"], "long");
        let cfg: crate::config::LoaderConfig = toml::from_str(
            "[mapping]\nstrings = \"keyword\"\ndecimals = \"scaled_float\"\njson = \"flattened\"\n\
             booleans = [\"db.*.flag\"]",
        )
        .unwrap();
        let chosen = mappings(row, &table.id, &Options::new(&cfg));
        assert_eq!(ty(&chosen, "s"), json!({"type": "keyword"}));
        assert_eq!(
            ty(&chosen, "price"),
            json!({"type": "scaled_float", "scaling_factor": 100.0})
        );
        assert_eq!(ty(&chosen, "doc"), json!({"type": "flattened"}));
        assert_eq!(ty(&chosen, "flag"), json!({"type": "boolean"}));
        // Another table's `flag` is not a boolean.
        let other = mappings(row, &TableId::new("other", "t"), &Options::new(&cfg));
        assert_eq!(ty(&other, "flag")["type"], "long");
    }
}
