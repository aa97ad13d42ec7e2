//! The type matrix: a table per type family with edge values, copied by the snapshot and then
//! changed in the stream; every field of every row in the index must equal what `SELECT`
//! returns for it, every index field must have the type docs/mapping.md documents, and
//! `sluice verify` finds the tables equal to their indexes.

mod common;

use common::families::FAMILIES;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_family_snapshots_and_streams_exactly() {
    let names: Vec<&str> = FAMILIES.iter().map(|f| f.0).collect();
    let (mut conn, setup) = fresh("it_types", &names).await;
    // Zero dates and invalid ENUM values need a permissive session.
    exec(&mut conn, &["SET SESSION sql_mode = ''"]).await;
    for (table, definition, rows, _) in FAMILIES {
        exec(
            &mut conn,
            &[
                &format!("CREATE TABLE {table} ({definition}) DEFAULT CHARSET utf8mb4"),
                &format!("INSERT INTO {table} VALUES {rows}"),
            ],
        )
        .await;
    }
    let config = setup.write_config("");
    fixed_metrics_port(&config);
    let mut sluice = setup.start("all");
    sluice.wait_for_log("streaming the binlog", PATIENCE);
    for (_, _, _, changes) in FAMILIES {
        exec(&mut conn, changes).await;
    }
    for table in &names {
        setup.assert_index_matches(&mut conn, table, CATCH_UP).await;
    }
    // The two tables whose column order once shifted table-map entries, spelled out.
    let y1 = index_docs(&format!("{}.y1", setup.db)).await;
    assert_eq!(
        y1["1"],
        serde_json::json!({"id": 1, "y": 2024, "a": -5, "b": 4_000_000_000u64, "c": -1})
    );
    let g1 = index_docs(&format!("{}.g1", setup.db)).await;
    assert_eq!(
        (&g1["1"]["c"], &g1["1"]["d"]),
        (&"crème".into(), &"ж 🌊".into())
    );
    for &(table, column, row, ty) in DOCUMENTED {
        let index = format!("{}.{table}", setup.db);
        let mapping = index_mapping(&index).await;
        let field = &mapping[&index]["mappings"]["properties"][column];
        let cells = documented(row);
        // The third cell is the index type; an object (GEOMETRY) names its fields' types.
        let (found, format) = match field["type"].as_str() {
            Some(found) => (found, field["format"].as_str()),
            None => ("object", None),
        };
        assert_eq!(found, ty, "{table}.{column}: {field}");
        assert!(cells[2].contains(&format!("`{ty}`")), "{row}: {cells:?}");
        if let Some(format) = format {
            assert!(cells[2].contains(format), "{row} lacks {format}: {cells:?}");
        }
        for (name, sub) in field["properties"].as_object().into_iter().flatten() {
            let sub = format!("`{name}` `{}`", sub["type"].as_str().unwrap());
            assert!(cells[2].contains(&sub), "{row} lacks {sub}: {cells:?}");
        }
        for (name, sub) in field["fields"].as_object().into_iter().flatten() {
            let named = format!("`.{name}`");
            assert!(cells[2].contains(&named), "{row} lacks {named}: {cells:?}");
            assert_eq!(sub["type"], "keyword", "{table}.{column}: {field}");
        }
    }
    // `sluice verify` makes each row's document by the pipeline's own steps from what SELECT
    // returns, so it agrees for every type too.
    let (status, out) = run_to_exit(&["verify", "--config", config.to_str().unwrap()], CATCH_UP);
    assert_eq!(status.code(), Some(0), "{out}");
    assert_eq!(
        out.matches("; 0 missing, 0 different, 0 extra, 0 unsettled")
            .count(),
        names.len(),
        "{out}"
    );
    // The snapshot's schemas (information_schema) and the stream's (TABLE_MAP) agree, so
    // every subject has one version.
    for table in &names {
        let subject = format!("{}-value", setup.topic(table));
        assert_eq!(subject_versions(&subject).await, vec![1], "{subject}");
    }
    assert!(sluice.terminate(PATIENCE).success());
}

/// (table, column, the docs/mapping.md row its type belongs to, the index type under the
/// default `[loader.mapping]`).
const DOCUMENTED: &[(&str, &str, &str, &str)] = &[
    ("ints", "t", "TINYINT..BIGINT", "long"),
    ("ints", "iu", "TINYINT..BIGINT", "long"),
    ("ints", "bu", "BIGINT UNSIGNED", "unsigned_long"),
    ("decimals", "z", "DECIMAL(p,0), p <= 18", "long"),
    ("decimals", "s", "DECIMAL(p,s), other", "keyword"),
    ("decimals", "u", "DECIMAL(p,s), other", "keyword"),
    ("floats", "f", "FLOAT / DOUBLE", "float"),
    ("floats", "d", "FLOAT / DOUBLE", "double"),
    ("bits", "b1", "BIT(1)", "boolean"),
    ("bits", "b33", "BIT(n>1)", "unsigned_long"),
    ("temporal", "t3", "TIME(n)", "long"),
    ("temporal", "d", "DATE", "date"),
    ("temporal", "dt6", "DATETIME(n)", "date"),
    ("temporal", "ts4", "TIMESTAMP(n)", "date"),
    ("temporal", "y", "TINYINT..BIGINT", "long"),
    ("texts", "c", "CHAR, VARCHAR, TEXT", "text"),
    ("texts", "m", "CHAR, VARCHAR, TEXT", "text"),
    // MariaDB's JSON is LONGTEXT: a string column unless named in `json_columns`.
    ("texts", "j", "CHAR, VARCHAR, TEXT", "text"),
    ("binaries", "vb", "BINARY, VARBINARY, BLOB", "binary"),
    ("binaries", "lb", "BINARY, VARBINARY, BLOB", "binary"),
    ("labels", "e", "ENUM, SET", "keyword"),
    ("labels", "s", "ENUM, SET", "keyword"),
    ("shapes", "p", "GEOMETRY", "object"),
];

/// The cells of the docs/mapping.md table row whose first cell starts with `row`.
fn documented(row: &str) -> Vec<String> {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/mapping.md")).unwrap();
    doc.lines()
        .filter_map(|l| l.strip_prefix("| "))
        .map(|l| l.split(" | ").map(str::to_string).collect::<Vec<_>>())
        .find(|cells| cells[0].starts_with(row))
        .unwrap_or_else(|| panic!("docs/mapping.md has no row for {row}"))
}
