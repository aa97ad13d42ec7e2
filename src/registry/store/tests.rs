//! The store against a real sled directory.

use super::*;

const A: &str = r#"{"type":"record","name":"A","fields":[{"name":"x","type":"int"}]}"#;
const B: &str = r#"{"type":"record","name":"A","fields":[{"name":"x","type":"long"}]}"#;
/// Not readable as A's successor under BACKWARD: a new field without a default.
const C: &str = r#"{"type":"record","name":"A","fields":[{"name":"x","type":"long"},{"name":"y","type":"string"}]}"#;

fn input(schema: &str) -> SchemaInput {
    SchemaInput {
        schema: schema.into(),
        ..SchemaInput::default()
    }
}

#[tokio::test]
async fn ids_are_stable_global_and_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.register("t-value", &input(A)).await.unwrap(), 1);
        let spaced = A.replace(',', " , ");
        assert_eq!(s.register("t-value", &input(&spaced)).await.unwrap(), 1);
        assert_eq!(
            s.register("u-value", &input(A)).await.unwrap(),
            1,
            "ids are global"
        );
        assert_eq!(s.register("t-value", &input(B)).await.unwrap(), 2);
        assert_eq!(s.versions("t-value", false).unwrap(), vec![1, 2]);
        assert_eq!(s.lookup("t-value", &input(B), false).unwrap().version, 2);
    }
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(
        s.version("t-value", VersionSel::Number(2), false)
            .unwrap()
            .id,
        2
    );
    assert_eq!(s.subjects(false).unwrap(), vec!["t-value", "u-value"]);
    let c = B.replace("long", "string");
    assert_eq!(
        s.register("v-value", &input(&c)).await.unwrap(),
        3,
        "the counter survived"
    );
    assert_eq!(
        s.uses_of(1, false).unwrap(),
        vec![("t-value".to_string(), 1), ("u-value".to_string(), 1)]
    );
}

#[tokio::test]
async fn confluent_error_codes() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.register("x", &input("{")).await.unwrap_err().code, 42201);
    let bad = input(r#"{"type":"nope"}"#);
    assert_eq!(s.register("x", &bad).await.unwrap_err().code, 42201);
    assert_eq!(s.lookup("x", &input(A), false).unwrap_err().code, 40401);
    s.register("x", &input(A)).await.unwrap();
    assert_eq!(s.lookup("x", &input(B), false).unwrap_err().code, 40403);
    assert_eq!(
        s.version("x", VersionSel::Number(9), false)
            .unwrap_err()
            .code,
        40402
    );
    assert_eq!(
        s.version("y", VersionSel::Number(1), false)
            .unwrap_err()
            .code,
        40401
    );
    assert_eq!(s.schema(99).unwrap_err().code, 40403);
    assert_eq!(VersionSel::parse("0").unwrap_err().code, 42202);
    assert_eq!(Mode::parse("WRITEONLY").unwrap_err().code, 42204);
    assert_eq!(s.level("x", false).unwrap_err().code, 40408);
}

#[tokio::test]
async fn incompatible_schemas_are_refused_with_the_level_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    s.register("t", &input(A)).await.unwrap();
    let e = s.register("t", &input(C)).await.unwrap_err();
    assert_eq!(e.code, 409);
    assert!(e.message.contains("BACKWARD"), "{e}");
    assert!(
        e.message.contains("READER_FIELD_MISSING_DEFAULT_VALUE"),
        "{e}"
    );
    assert_eq!(
        s.versions("t", true).unwrap(),
        vec![1],
        "nothing registered"
    );
    s.set_level("t", Level::None).await.unwrap();
    assert_eq!(s.register("t", &input(C)).await.unwrap(), 2);
    assert_eq!(s.delete_level("t").await.unwrap(), Level::None);
    assert_eq!(s.level("t", true).unwrap(), Level::Backward);
    s.set_mode("t", Mode::ReadOnly).await.unwrap();
    assert_eq!(s.register("t", &input(B)).await.unwrap_err().code, 42205);
}

#[tokio::test]
async fn deletes_are_soft_then_permanent() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    s.set_level(GLOBAL, Level::None).await.unwrap();
    for schema in [A, B, C] {
        s.register("t", &input(schema)).await.unwrap();
    }
    let v = VersionSel::Number(2);
    assert_eq!(
        s.delete_version("t", v, true).await.unwrap_err().code,
        40407
    );
    assert_eq!(s.delete_version("t", v, false).await.unwrap(), 2);
    assert_eq!(
        s.delete_version("t", v, false).await.unwrap_err().code,
        40406
    );
    assert_eq!(s.versions("t", false).unwrap(), vec![1, 3]);
    assert_eq!(s.versions("t", true).unwrap(), vec![1, 2, 3]);
    assert_eq!(s.version("t", v, false).unwrap_err().code, 40402);
    assert_eq!(s.version("t", v, true).unwrap().id, 2);
    assert_eq!(s.delete_version("t", v, true).await.unwrap(), 2);
    assert_eq!(
        s.schema(2).unwrap_err().code,
        40403,
        "no version holds it any more"
    );
    assert_eq!(s.delete_subject("t", true).await.unwrap_err().code, 40405);
    assert_eq!(s.delete_subject("t", false).await.unwrap(), vec![1, 3]);
    assert_eq!(s.delete_subject("t", false).await.unwrap_err().code, 40404);
    assert!(s.subjects(false).unwrap().is_empty());
    assert_eq!(s.subjects(true).unwrap(), vec!["t"]);
    assert_eq!(s.delete_subject("t", true).await.unwrap(), vec![1, 3]);
    assert!(s.subjects(true).unwrap().is_empty());
    // A new id, never a reused one.
    assert_eq!(s.register("t", &input(B)).await.unwrap(), 4);
}

#[tokio::test]
async fn references_resolve_and_protect_what_they_name() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path()).unwrap();
    let money = r#"{"type":"record","name":"Money","namespace":"m","fields":[{"name":"cents","type":"long"}]}"#;
    let order = r#"{"type":"record","name":"Order","fields":[{"name":"total","type":"m.Money"}]}"#;
    s.register("money", &input(money)).await.unwrap();
    assert_eq!(
        s.register("order", &input(order)).await.unwrap_err().code,
        42201
    );
    let with_ref = SchemaInput {
        references: vec![Reference {
            name: "m.Money".into(),
            subject: "money".into(),
            version: 1,
        }],
        ..input(order)
    };
    let id = s.register("order", &with_ref).await.unwrap();
    assert_eq!(s.schema(id).unwrap().references, with_ref.references);
    assert_eq!(s.referenced_by("money", 1).unwrap(), vec![id]);
    assert_eq!(
        s.delete_subject("money", false).await.unwrap_err().code,
        42206
    );
    assert_eq!(s.lookup("order", &with_ref, false).unwrap().id, id);
}

#[tokio::test]
async fn a_damaged_data_dir_fails_at_open_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Store::open(dir.path()).unwrap();
        s.register("t", &input(A)).await.unwrap();
        s.versions.insert(b"t\0\0\0\0\x09", b"xx".to_vec()).unwrap();
        s.db.flush().unwrap();
    }
    let e = Store::open(dir.path()).err().unwrap();
    assert!(e.contains("damaged") && e.contains("backup"), "{e}");
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let e = Store::open(&file).err().unwrap();
    assert!(e.contains("cannot open the registry data dir"), "{e}");
}
