//! The wire contract across both halves: what the encoder writes, the loader reads and maps.
//! Each half tests its own side; these tests join them, so neither half's tests import the
//! other.

use std::sync::Arc;

use apache_avro::Schema;
use apache_avro::types::Value as Avro;
use serde_json::{Value as Json, json};

use crate::config::VectorMapping;
use crate::encode::avro::tests::{envelope, sample_table};
use crate::encode::schema::table_avro;
use crate::load::document::Options;
use crate::load::mapping::mappings;
use crate::load::plan::{Effect, ValuePlan};
use crate::model::{Change, Column, ColumnType, Op, SourceInfo, TableId, TableSchema, Version};
use crate::wire::envelope::field;

fn decode(schema: &serde_json::Value, bytes: &[u8]) -> Avro {
    let schema = Schema::parse(schema).unwrap();
    #[allow(deprecated)]
    let v = apache_avro::from_avro_datum(&schema, &mut &bytes[..], None).unwrap();
    v
}

#[test]
fn a_truncate_envelope_has_no_rows_and_the_loader_reads_it_without_a_key() {
    let table = Arc::new(sample_table());
    let avro = table_avro("sluice", &table).unwrap();
    let change = Change {
        table: table.clone(),
        op: Op::Truncate,
        before: None,
        after: None,
        version: Version::at(4, 999),
        source: SourceInfo {
            ts_ms: 1_700_000_000_000,
            ..SourceInfo::at("binlog.000004", 999)
        },
    };
    let value = envelope(&change, 42);
    let schema = apache_avro::Schema::parse(&avro.value).unwrap();
    let decoded = decode(&avro.value, &value);
    let Avro::Record(fields) = &decoded else {
        panic!()
    };
    let get = |n: &str| fields.iter().find(|(k, _)| k == n).unwrap().1.clone();
    assert_eq!(get(field::OP), Avro::String("t".into()));
    assert_eq!(get(field::BEFORE), Avro::Union(0, Box::new(Avro::Null)));
    assert_eq!(get(field::AFTER), Avro::Union(0, Box::new(Avro::Null)));
    let mut plan = ValuePlan::new(&schema, &Options::default());
    let mut doc = Vec::new();
    let read = plan.read(&value, &mut doc).unwrap();
    assert_eq!(
        (read.effect, read.version, &*read.route.index),
        (Effect::Truncate, (4 << 32) | 999, "shop.orders")
    );
    assert!(doc.is_empty());
}

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
    let plan = ValuePlan::new(&Schema::parse(&avro.value).unwrap(), &Options::default());
    let row = plan.row().unwrap();
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
    let plan = ValuePlan::new(&Schema::parse(&avro.value).unwrap(), &Options::default());
    let row = plan.row().unwrap();
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
    let plan = ValuePlan::new(&Schema::parse(&avro.value).unwrap(), &Options::default());
    let row = plan.row().unwrap();
    let ty = |m: &Json, f: &str| m["properties"][f].clone();
    let defaults = mappings(row, &table.id, &Options::default());
    assert_eq!(ty(&defaults, "s")["fields"]["keyword"]["type"], "keyword");
    assert_eq!(ty(&defaults, "price")["type"], "keyword");
    assert_eq!(ty(&defaults, "doc")["type"], "text");
    assert_eq!(ty(&defaults, "flag")["type"], "long");
    let cfg = crate::config::sections::loader(
        "[mapping]\nstrings = \"keyword\"\ndecimals = \"scaled_float\"\njson = \"flattened\"\n\
         booleans = [\"db.*.flag\"]",
    );
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

#[test]
fn a_row_becomes_its_document_with_the_tables_conversions_and_metadata() {
    use crate::config::{ColumnPattern, JsonMapping, LoaderConfig};
    use crate::model::Value;

    let col = |name: &str, ty, nullable| Column::new(name, ty, nullable);
    let int = |bytes| ColumnType::Integer {
        bytes,
        unsigned: false,
    };
    let table = Arc::new(TableSchema {
        id: TableId::new("shop", "Flags"),
        columns: vec![
            col("id", int(8), false),
            col("flag", int(1), false),
            col("doc", ColumnType::Text, true),
            col("_sluice", ColumnType::Text, true),
            col("b9", ColumnType::Bit { bits: 9 }, false),
            col("g", ColumnType::Geometry, true),
            col("at", ColumnType::Timestamp { fsp: 6 }, true),
            col("note", ColumnType::Text, true),
        ],
        key: vec![0],
    });
    let row = vec![
        Value::Int(7),
        Value::Int(2),
        Value::String(r#"{"a": [1, "x"]}"#.into()),
        Value::String("shadowed".into()),
        Value::Bits(258),
        Value::Geometry {
            srid: 4326,
            wkb: vec![1, 2, 3],
        },
        Value::Timestamp(1_717_171_717_654_321),
        Value::String("tab\t\"quote\" ✓".into()),
    ];
    let change = Change {
        table: table.clone(),
        op: Op::Create,
        before: None,
        after: Some(row),
        version: Version::at(3, 77),
        source: SourceInfo {
            ts_ms: 1_700_000_000_000,
            ..SourceInfo::at("binlog.000003", 77)
        },
    };
    let avro = table_avro("sluice", &table).unwrap();
    let value = envelope(&change, 1);
    let mut cfg = LoaderConfig {
        metadata_fields: true,
        ..Default::default()
    };
    cfg.mapping.booleans = vec![ColumnPattern::parse("shop.Flags.flag").unwrap()];
    cfg.mapping.json_columns = vec![ColumnPattern::parse("*.*.doc").unwrap()];
    cfg.mapping.json = JsonMapping::Object;
    let schema = Schema::parse(&avro.value).unwrap();
    let mut plan = ValuePlan::new(&schema, &Options::new(&cfg));
    let mut doc = Vec::new();
    let read = plan.read(&value, &mut doc).unwrap();
    assert_eq!(read.effect, Effect::Write);
    assert_eq!(&*read.route.index, "shop.flags");
    let doc: Json = serde_json::from_slice(&doc).unwrap();
    assert_eq!(
        doc,
        json!({
            "id": 7,
            "flag": true,
            "doc": {"a": [1, "x"]},
            "b9": 258,
            "g": {"wkb": "AQID", "srid": 4326},
            "at": "2024-05-31T16:08:37.654321Z",
            "note": "tab\t\"quote\" ✓",
            "_sluice": {"version": (3u64 << 32) | 77, "ts_ms": 1_700_000_000_000u64, "op": "c"},
        })
    );
    // Without the options: no conversions, only the version.
    let mut doc = Vec::new();
    let mut plain = ValuePlan::new(&schema, &Options::default());
    plain.read(&value, &mut doc).unwrap();
    let doc: Json = serde_json::from_slice(&doc).unwrap();
    assert_eq!(doc["flag"], 2);
    assert_eq!(doc["doc"], r#"{"a": [1, "x"]}"#);
    assert_eq!(doc["_sluice"], json!({"version": (3u64 << 32) | 77}));
    // A flag that is not a number is refused with the column named.
    let mut bad = change.clone();
    bad.table = Arc::new(TableSchema {
        columns: table
            .columns
            .iter()
            .map(|c| match c.name.as_str() {
                "flag" => col("flag", ColumnType::Text, false),
                _ => c.clone(),
            })
            .collect(),
        ..(*table).clone()
    });
    bad.after.as_mut().unwrap()[1] = Value::String("yes".into());
    let avro = table_avro("sluice", &bad.table).unwrap();
    let value = envelope(&bad, 1);
    let mut plan = ValuePlan::new(&Schema::parse(&avro.value).unwrap(), &Options::new(&cfg));
    let err = plan.read(&value, &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("field `flag`"), "{err}");
}
