//! Avro schemas of a table: the key record (primary-key columns) and the Debezium-style
//! envelope (`before`, `after`, `source`, `op`, `ts_ms`). Types follow the mapping in
//! docs/design.md.

use serde_json::{Value as Json, json};

use crate::model::{Column, ColumnType, TableSchema};
use crate::wire::envelope::{ENVELOPE_AVSC, MYSQL_TYPE, SOURCE_AVSC};

/// A table whose names cannot become Avro names.
#[derive(Debug, thiserror::Error)]
#[error(
    "table {table}: columns {first:?} and {second:?} both become the Avro field name {field:?}; rename one"
)]
pub struct NameClash {
    table: String,
    first: String,
    second: String,
    field: String,
}

/// The Avro schemas of one table version.
#[derive(Debug, Clone, PartialEq)]
pub struct TableAvro {
    /// Key record: the primary-key columns.
    pub key: Json,
    /// Envelope record.
    pub value: Json,
}

/// Builds the schemas of `table` in namespace `<prefix>.<db>.<table>`.
pub fn table_avro(prefix: &str, table: &TableSchema) -> Result<TableAvro, NameClash> {
    let namespace = [prefix, &table.id.db, &table.id.table]
        .iter()
        .map(|p| avro_name(p))
        .collect::<Vec<_>>()
        .join(".");
    let names = field_names(table)?;
    // A named type is defined at its first use in a schema document and referenced after.
    let field = |i: usize, geometry_defined: &mut bool| {
        let c = &table.columns[i];
        let ty = avro_type(&c.ty, geometry_defined);
        let mut f = if is_optional(c) {
            json!({"name": names[i], "type": ["null", ty], "default": null})
        } else {
            json!({"name": names[i], "type": ty})
        };
        f[MYSQL_TYPE] = json!(c.ty.sql_name());
        if let Some(comment) = &c.comment {
            f["doc"] = json!(comment);
        }
        f
    };
    let key = json!({
        "type": "record",
        "name": "Key",
        "namespace": namespace,
        "connect.name": format!("{namespace}.Key"),
        "fields": table.key.iter().map(|&i| field(i, &mut false)).collect::<Vec<_>>(),
    });
    let mut geometry_defined = false;
    let row = json!({
        "type": "record",
        "name": "Value",
        "connect.name": format!("{namespace}.Value"),
        "fields": (0..table.columns.len())
            .map(|i| field(i, &mut geometry_defined))
            .collect::<Vec<_>>(),
    });
    // The published envelope, instantiated: the table's row record for the placeholder, the
    // source block inline, the table's names.
    let mut value: Json = serde_json::from_str(ENVELOPE_AVSC).expect("proto/envelope.avsc is JSON");
    value["namespace"] = json!(namespace);
    value["connect.name"] = json!(format!("{namespace}.Envelope"));
    value["fields"][0]["type"][1] = row;
    value["fields"][2]["type"] =
        serde_json::from_str(SOURCE_AVSC).expect("proto/source.avsc is JSON");
    Ok(TableAvro { key, value })
}

/// Whether a column's Avro type is a union with null. Temporal columns always are: MySQL
/// stores zero dates even in NOT NULL columns and Sluice turns them into null.
pub fn is_optional(c: &Column) -> bool {
    c.nullable
        || matches!(
            c.ty,
            ColumnType::Date | ColumnType::DateTime { .. } | ColumnType::Timestamp { .. }
        )
}

/// Full name of the record GEOMETRY columns become (Debezium's shape).
const GEOMETRY: &str = "io.debezium.data.geometry.Geometry";

/// The Avro type of a column (docs/design.md's type table). `geometry_defined` says whether the
/// schema document already defined the named geometry record.
fn avro_type(ty: &ColumnType, geometry_defined: &mut bool) -> Json {
    match ty {
        ColumnType::Integer {
            bytes: 8,
            unsigned: true,
        } => {
            json!({"type": "bytes", "logicalType": "decimal", "precision": 20, "scale": 0})
        }
        ColumnType::Integer { bytes, unsigned } if *bytes < 4 || (*bytes == 4 && !unsigned) => {
            json!("int")
        }
        ColumnType::Integer { .. } => json!("long"),
        ColumnType::Decimal { precision, scale } => {
            json!({"type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale})
        }
        ColumnType::Float => json!("float"),
        ColumnType::Double => json!("double"),
        ColumnType::Bit { bits: 1 } => json!("boolean"),
        ColumnType::Bit { bits } => json!({
            "type": "bytes",
            "connect.name": "io.debezium.data.Bits",
            "connect.parameters": {"length": bits.to_string()},
        }),
        ColumnType::Text => json!("string"),
        ColumnType::Bytes => json!("bytes"),
        ColumnType::Enum(labels) => json!({
            "type": "string",
            "connect.name": "io.debezium.data.Enum",
            "connect.parameters": {"allowed": labels.join(",")},
        }),
        ColumnType::Set(labels) => json!({
            "type": "string",
            "connect.name": "io.debezium.data.EnumSet",
            "connect.parameters": {"allowed": labels.join(",")},
        }),
        ColumnType::Json => json!({"type": "string", "connect.name": "io.debezium.data.Json"}),
        ColumnType::Geometry if *geometry_defined => json!(GEOMETRY),
        ColumnType::Geometry => {
            *geometry_defined = true;
            json!({
                "type": "record",
                "name": GEOMETRY,
                "connect.name": GEOMETRY,
                "fields": [
                    {"name": "wkb", "type": "bytes"},
                    {"name": "srid", "type": ["null", "int"], "default": null},
                ],
            })
        }
        ColumnType::Date => json!({"type": "int", "logicalType": "date"}),
        ColumnType::Year => json!("int"),
        ColumnType::Time { .. } => {
            json!({"type": "long", "connect.name": "io.debezium.time.MicroTime"})
        }
        ColumnType::DateTime { .. } => {
            json!({"type": "long", "logicalType": "local-timestamp-micros"})
        }
        ColumnType::Timestamp { .. } => json!({"type": "long", "logicalType": "timestamp-micros"}),
        ColumnType::Vector { .. } => json!({"type": "array", "items": "float"}),
    }
}

/// Avro field names of the columns: characters Avro names cannot hold become `_`.
pub fn field_names(table: &TableSchema) -> Result<Vec<String>, NameClash> {
    let names: Vec<String> = table.columns.iter().map(|c| avro_name(&c.name)).collect();
    for (i, a) in names.iter().enumerate() {
        if let Some(j) = names[..i].iter().position(|b| b == a) {
            return Err(NameClash {
                table: table.id.to_string(),
                first: table.columns[j].name.clone(),
                second: table.columns[i].name.clone(),
                field: a.clone(),
            });
        }
    }
    Ok(names)
}

/// `[A-Za-z_][A-Za-z0-9_]*`, Avro's name grammar, by replacing what does not fit.
fn avro_name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TableId;

    fn table() -> TableSchema {
        TableSchema {
            id: TableId::new("shop", "order-items"),
            columns: vec![
                Column::new(
                    "id",
                    ColumnType::Integer {
                        bytes: 8,
                        unsigned: true,
                    },
                    false,
                ),
                Column::new(
                    "qty",
                    ColumnType::Integer {
                        bytes: 4,
                        unsigned: true,
                    },
                    false,
                ),
                Column::new(
                    "price",
                    ColumnType::Decimal {
                        precision: 12,
                        scale: 4,
                    },
                    true,
                ),
                Column::new("1st name", ColumnType::Text, false),
                Column::new("at", ColumnType::DateTime { fsp: 6 }, false),
            ],
            key: vec![0],
        }
    }

    #[test]
    fn schemas_parse_as_avro_and_follow_the_type_table() {
        let s = table_avro("sluice", &table()).unwrap();
        apache_avro::Schema::parse(&s.key).unwrap();
        apache_avro::Schema::parse(&s.value).unwrap();
        assert_eq!(s.value["namespace"], "sluice.shop.order_items");
        let fields = &s.value["fields"][0]["type"][1]["fields"];
        assert_eq!(fields[0]["type"]["logicalType"], "decimal");
        assert_eq!(fields[0]["type"]["precision"], 20);
        assert_eq!(fields[0][MYSQL_TYPE], "BIGINT UNSIGNED");
        assert_eq!(fields[1]["type"], "long");
        assert_eq!(fields[2]["type"][1]["scale"], 4);
        assert_eq!(fields[3]["name"], "_1st_name");
        assert_eq!(
            fields[4]["type"][1]["logicalType"],
            "local-timestamp-micros"
        );
        assert_eq!(s.key["fields"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn value_schemas_are_the_published_envelope_and_source_block() {
        let s = table_avro("sluice", &table()).unwrap();
        let source: Json = serde_json::from_str(SOURCE_AVSC).unwrap();
        let envelope: Json = serde_json::from_str(ENVELOPE_AVSC).unwrap();
        assert_eq!(s.value["fields"][2]["type"], source);
        // Everything but the names and the two placeholders is the published contract.
        let mut generic = s.value.clone();
        generic["namespace"] = envelope["namespace"].clone();
        generic.as_object_mut().unwrap().remove("connect.name");
        generic["fields"][0]["type"][1] = envelope["fields"][0]["type"][1].clone();
        generic["fields"][2]["type"] = envelope["fields"][2]["type"].clone();
        assert_eq!(generic, envelope);
        // The contract parses as Avro, the envelope with the source block as its reference.
        apache_avro::Schema::parse(&source).unwrap();
        apache_avro::Schema::parse_str_with_list(ENVELOPE_AVSC, [SOURCE_AVSC]).unwrap();
    }

    #[test]
    fn clashing_field_names_are_an_error() {
        let mut t = table();
        t.columns[2].name = "1st-name".into();
        let e = table_avro("sluice", &t).unwrap_err().to_string();
        assert!(
            e.contains("\"1st-name\" and \"1st name\"") || e.contains("\"1st name\""),
            "{e}"
        );
    }
}
