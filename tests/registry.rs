//! `sluice registry` over HTTP, each test on a private registry process with its own data
//! dir: the compatibility matrix (every level against the verdicts of the Avro
//! specification's resolution rules), basic auth, and its answers to bad requests.

mod common;

use std::process::Command;

use common::registry::Registry;
use serde_json::{Value as Json, json};

/// One client for the whole test binary: building one loads the TLS roots (~100 ms).
fn client() -> reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(reqwest::Client::new).clone()
}

async fn call(method: reqwest::Method, url: String, body: Option<Json>) -> (u16, Json) {
    let mut req = client().request(method, url);
    if let Some(b) = body {
        req = req
            .header("content-type", "application/vnd.schemaregistry.v1+json")
            .body(b.to_string());
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Json::String(text)),
    )
}

fn schema_body(schema: &Json) -> Json {
    json!({"schema": schema.to_string()})
}

/// A record `R` with these fields.
fn rec(fields: Json) -> Json {
    json!({"type": "record", "name": "R", "namespace": "ns", "fields": fields})
}

/// A record `R` with one field `f` of type `ty`.
fn field(ty: Json) -> Json {
    rec(json!([{"name": "f", "type": ty}]))
}

fn enum_(symbols: &[&str], default: Option<&str>) -> Json {
    let mut e = json!({"type": "enum", "name": "E", "symbols": symbols});
    if let Some(d) = default {
        e["default"] = json!(d);
    }
    e
}

fn decimal(precision: u32, scale: u32) -> Json {
    json!({"type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale})
}

fn nested(fields: Json) -> Json {
    field(json!({"type": "record", "name": "Inner", "fields": fields}))
}

/// `(what, old schema, new schema, new reads old data, old reads new data)`: each verdict
/// from the specification's resolution rules.
fn pairs() -> Vec<(&'static str, Json, Json, bool, bool)> {
    let a = json!({"name": "a", "type": "int"});
    let b_nullable = json!({"name": "b", "type": ["null", "string"], "default": null});
    let b_required = json!({"name": "b", "type": "string"});
    let b_defaulted = json!({"name": "b", "type": "string", "default": "x"});
    vec![
        (
            "added nullable column with default",
            rec(json!([a])),
            rec(json!([a, b_nullable])),
            true,
            true,
        ),
        (
            "added column without default",
            rec(json!([a])),
            rec(json!([a, b_required])),
            false,
            true,
        ),
        (
            "dropped column without default",
            rec(json!([a, b_required])),
            rec(json!([a])),
            true,
            false,
        ),
        (
            "dropped column with default",
            rec(json!([a, b_defaulted])),
            rec(json!([a])),
            true,
            true,
        ),
        (
            "int -> long",
            field(json!("int")),
            field(json!("long")),
            true,
            false,
        ),
        (
            "long -> int",
            field(json!("long")),
            field(json!("int")),
            false,
            true,
        ),
        (
            "int -> float",
            field(json!("int")),
            field(json!("float")),
            true,
            false,
        ),
        (
            "long -> double",
            field(json!("long")),
            field(json!("double")),
            true,
            false,
        ),
        (
            "float -> double",
            field(json!("float")),
            field(json!("double")),
            true,
            false,
        ),
        (
            "string -> bytes",
            field(json!("string")),
            field(json!("bytes")),
            true,
            true,
        ),
        (
            "bytes -> string",
            field(json!("bytes")),
            field(json!("string")),
            true,
            true,
        ),
        (
            "int -> string",
            field(json!("int")),
            field(json!("string")),
            false,
            false,
        ),
        (
            "boolean -> int",
            field(json!("boolean")),
            field(json!("int")),
            false,
            false,
        ),
        (
            "enum symbol added",
            field(enum_(&["A", "B"], None)),
            field(enum_(&["A", "B", "C"], None)),
            true,
            false,
        ),
        (
            "enum symbol added, defaults",
            field(enum_(&["A", "B"], Some("A"))),
            field(enum_(&["A", "B", "C"], Some("A"))),
            true,
            true,
        ),
        (
            "enum symbol removed",
            field(enum_(&["A", "B", "C"], None)),
            field(enum_(&["A", "B"], None)),
            false,
            true,
        ),
        (
            "enum renamed",
            field(enum_(&["A"], None)),
            field(json!({"type": "enum", "name": "F", "symbols": ["A"]})),
            false,
            false,
        ),
        (
            "decimal precision change",
            field(decimal(10, 2)),
            field(decimal(12, 2)),
            false,
            false,
        ),
        (
            "decimal scale change",
            field(decimal(10, 2)),
            field(decimal(10, 3)),
            false,
            false,
        ),
        (
            "decimal unchanged, doc added",
            field(decimal(10, 2)),
            rec(json!([{"name": "f", "type": decimal(10, 2), "doc": "money"}])),
            true,
            true,
        ),
        (
            "nested record: added field without default",
            nested(json!([{"name": "x", "type": "int"}])),
            nested(json!([{"name": "x", "type": "int"}, {"name": "y", "type": "int"}])),
            false,
            true,
        ),
        (
            "nested record: added nullable field",
            nested(json!([{"name": "x", "type": "int"}])),
            nested(
                json!([{"name": "x", "type": "int"}, {"name": "y", "type": ["null", "int"], "default": null}]),
            ),
            true,
            true,
        ),
        (
            "nested record renamed",
            nested(json!([{"name": "x", "type": "int"}])),
            field(
                json!({"type": "record", "name": "Other", "fields": [{"name": "x", "type": "int"}]}),
            ),
            false,
            false,
        ),
        (
            "union widened",
            field(json!(["null", "int"])),
            field(json!(["null", "int", "string"])),
            true,
            false,
        ),
        (
            "union narrowed",
            field(json!(["null", "int", "string"])),
            field(json!(["null", "int"])),
            false,
            true,
        ),
        (
            "plain -> nullable union",
            field(json!("int")),
            field(json!(["null", "int"])),
            true,
            false,
        ),
        (
            "nullable union -> plain",
            field(json!(["null", "int"])),
            field(json!("int")),
            false,
            true,
        ),
        (
            "int -> union with long",
            field(json!("int")),
            field(json!(["null", "long"])),
            true,
            false,
        ),
        (
            "array items int -> long",
            field(json!({"type": "array", "items": "int"})),
            field(json!({"type": "array", "items": "long"})),
            true,
            false,
        ),
        (
            "map values string -> bytes",
            field(json!({"type": "map", "values": "string"})),
            field(json!({"type": "map", "values": "bytes"})),
            true,
            true,
        ),
        (
            "fixed size change",
            field(json!({"type": "fixed", "name": "X", "size": 16})),
            field(json!({"type": "fixed", "name": "X", "size": 8})),
            false,
            false,
        ),
        (
            "top-level record renamed",
            rec(json!([{"name": "a", "type": "int"}])),
            json!({"type": "record", "name": "S", "namespace": "ns", "fields": [{"name": "a", "type": "int"}]}),
            false,
            false,
        ),
        (
            "namespace changed",
            rec(json!([{"name": "a", "type": "int"}])),
            json!({"type": "record", "name": "R", "namespace": "other", "fields": [{"name": "a", "type": "int"}]}),
            true,
            true,
        ),
        (
            "column renamed with an alias",
            rec(json!([{"name": "a", "type": "int"}])),
            rec(json!([{"name": "b", "type": "int", "aliases": ["a"]}])),
            true,
            false,
        ),
        (
            "timestamp-micros -> long",
            field(json!({"type": "long", "logicalType": "timestamp-micros"})),
            field(json!("long")),
            true,
            true,
        ),
        (
            "date -> timestamp-millis",
            field(json!({"type": "int", "logicalType": "date"})),
            field(json!({"type": "long", "logicalType": "timestamp-millis"})),
            true,
            false,
        ),
        (
            "recursive list gains a defaulted field",
            field(
                json!({"type": "record", "name": "Node", "fields": [{"name": "next", "type": ["null", "Node"], "default": null}]}),
            ),
            field(
                json!({"type": "record", "name": "Node", "fields": [{"name": "next", "type": ["null", "Node"], "default": null}, {"name": "v", "type": "int", "default": 0}]}),
            ),
            true,
            true,
        ),
    ]
}

const LEVELS: [&str; 7] = [
    "NONE",
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
];

fn verdict(level: &str, backward: bool, forward: bool) -> bool {
    match level {
        "NONE" => true,
        "BACKWARD" | "BACKWARD_TRANSITIVE" => backward,
        "FORWARD" | "FORWARD_TRANSITIVE" => forward,
        _ => backward && forward,
    }
}

/// Every pair at `level`: what the check and the registration answered that the
/// specification does not.
async fn level_verdicts(url: &str, level: &'static str) -> Vec<String> {
    use reqwest::Method;
    let mut wrong = Vec::new();
    for (i, (what, old, new, backward, forward)) in pairs().iter().enumerate() {
        let subject = format!("m-{level}-{i}");
        let (s, _) = call(
            Method::PUT,
            format!("{url}/config/{subject}"),
            Some(json!({"compatibility": level})),
        )
        .await;
        assert_eq!(s, 200);
        let (s, body) = call(
            Method::POST,
            format!("{url}/subjects/{subject}/versions"),
            Some(schema_body(old)),
        )
        .await;
        assert_eq!(s, 200, "{what}: {body}");
        let want = verdict(level, *backward, *forward);
        let (s, body) = call(
            Method::POST,
            format!("{url}/compatibility/subjects/{subject}/versions/latest?verbose=true"),
            Some(schema_body(new)),
        )
        .await;
        assert_eq!(s, 200, "{what}: {body}");
        if body["is_compatible"] != json!(want) {
            wrong.push(format!("{level} {what}: expected {want}, got {body}"));
        }
        // Registration agrees with the check: 409 exactly when incompatible.
        let (s, body) = call(
            Method::POST,
            format!("{url}/subjects/{subject}/versions"),
            Some(schema_body(new)),
        )
        .await;
        let expected = if want { 200 } else { 409 };
        if s != expected {
            wrong.push(format!("{level} {what}: register answered {s} {body}"));
        }
        if s == 409 {
            assert_eq!(body["error_code"], 409);
            assert!(body["message"].as_str().unwrap().contains(level), "{body}");
        }
    }
    wrong
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compatibility_matrix_follows_the_avro_specification_at_every_level() {
    let r = Registry::start(None);
    assert!(pairs().len() >= 25);
    // Levels run side by side: each registration waits for its fsync, and sled commits
    // concurrent ones together.
    let runs = LEVELS.map(|level| {
        let url = r.url.clone();
        tokio::spawn(async move { level_verdicts(&url, level).await })
    });
    let mut wrong = Vec::new();
    for run in runs {
        wrong.extend(run.await.unwrap());
    }
    assert!(
        wrong.is_empty(),
        "{} wrong verdicts:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transitive_levels_check_every_version_and_the_others_only_the_latest() {
    use reqwest::Method;
    let r = Registry::start(None);
    let a = json!({"name": "a", "type": "int"});
    // v3 reads v2 (b present) but not v1 (b missing, no default).
    let backward_chain = [
        rec(json!([a])),
        rec(json!([a, {"name": "b", "type": "string", "default": "x"}])),
        rec(json!([a, {"name": "b", "type": "string"}])),
    ];
    // v2 reads v3 (b defaulted) but v1 does not (b required).
    let forward_chain = [
        rec(json!([a, {"name": "b", "type": "string"}])),
        rec(json!([a, {"name": "b", "type": "string", "default": "x"}])),
        rec(json!([a])),
    ];
    for (level, chain, ok) in [
        ("BACKWARD", &backward_chain, true),
        ("BACKWARD_TRANSITIVE", &backward_chain, false),
        ("FULL_TRANSITIVE", &backward_chain, false),
        ("FORWARD", &forward_chain, true),
        ("FORWARD_TRANSITIVE", &forward_chain, false),
    ] {
        let subject = format!("chain-{level}");
        call(
            Method::PUT,
            format!("{}/config/{subject}", r.url),
            Some(json!({"compatibility": "NONE"})),
        )
        .await;
        for s in &chain[..2] {
            let (st, _) = call(
                Method::POST,
                format!("{}/subjects/{subject}/versions", r.url),
                Some(schema_body(s)),
            )
            .await;
            assert_eq!(st, 200);
        }
        call(
            Method::PUT,
            format!("{}/config/{subject}", r.url),
            Some(json!({"compatibility": level})),
        )
        .await;
        let (_, body) = call(
            Method::POST,
            format!("{}/compatibility/subjects/{subject}/versions", r.url),
            Some(schema_body(&chain[2])),
        )
        .await;
        assert_eq!(body["is_compatible"], json!(ok), "{level}: {body}");
        // Against version 1 alone, as the explicit-version endpoint asks.
        let (_, body) = call(
            Method::POST,
            format!("{}/compatibility/subjects/{subject}/versions/1", r.url),
            Some(schema_body(&chain[2])),
        )
        .await;
        assert_eq!(
            body["is_compatible"],
            json!(false),
            "{level} against v1: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_and_confluent_error_bodies() {
    use reqwest::Method;
    let r = Registry::start(Some("alice:s3cret,bob:pw"));
    let (s, body) = call(Method::GET, format!("{}/subjects", r.url), None).await;
    assert_eq!(s, 401, "{body}");
    assert_eq!(body["error_code"], 40101);
    let wrong = client()
        .get(format!("{}/subjects", r.url))
        .basic_auth("alice", Some("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().contains_key("www-authenticate"));
    let ok = client()
        .get(format!("{}/subjects", r.url))
        .basic_auth("bob", Some("pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);

    let open = Registry::start(None);
    let cases = [
        (Method::GET, "/subjects/none/versions", None, 404, 40401),
        (Method::GET, "/schemas/ids/77", None, 404, 40403),
        (Method::GET, "/subjects/none/versions/0", None, 422, 42202),
        (
            Method::POST,
            "/subjects/x/versions",
            Some(json!({"schema": "{"})),
            422,
            42201,
        ),
        (
            Method::POST,
            "/subjects/x/versions",
            Some(json!({"schema": "{}", "schemaType": "PROTOBUF"})),
            422,
            42201,
        ),
        (
            Method::PUT,
            "/config",
            Some(json!({"compatibility": "SIDEWAYS"})),
            422,
            42203,
        ),
        (
            Method::PUT,
            "/mode",
            Some(json!({"mode": "SIDEWAYS"})),
            422,
            42204,
        ),
        (Method::GET, "/config/none", None, 404, 40408),
    ];
    for (method, path, body, status, code) in cases {
        let (s, b) = call(method, format!("{}{path}", open.url), body).await;
        assert_eq!(
            (s, b["error_code"].as_u64()),
            (status, Some(code)),
            "{path}: {b}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_registrations_never_share_an_id() {
    use reqwest::Method;
    let r = Registry::start(None);
    let level = Some(json!({"compatibility": "NONE"}));
    assert_eq!(
        call(Method::PUT, format!("{}/config", r.url), level)
            .await
            .0,
        200
    );
    // 40 different schemas, each registered twice at once, under 8 subjects, all in flight
    // together.
    let calls = (0..80).map(|i| {
        let url = r.url.clone();
        tokio::spawn(async move {
            let schema = field(json!({"type": "fixed", "name": "F", "size": i / 2 + 1}));
            let subject = format!("c{}", i % 8);
            let (s, body) = call(
                Method::POST,
                format!("{url}/subjects/{subject}/versions"),
                Some(schema_body(&schema)),
            )
            .await;
            assert_eq!(s, 200, "{body}");
            (i / 2, body["id"].as_u64().unwrap())
        })
    });
    let mut ids = std::collections::BTreeMap::new();
    for c in calls {
        let (schema, id) = c.await.unwrap();
        if let Some(other) = ids.insert(schema, id) {
            assert_eq!(other, id, "one schema, one id");
        }
    }
    let distinct: std::collections::BTreeSet<u64> = ids.values().copied().collect();
    assert_eq!(distinct.len(), 40, "40 schemas, 40 ids: {ids:?}");
}

#[test]
fn a_damaged_data_dir_stops_the_registry_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data");
    std::fs::write(&file, b"not a directory").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["registry", "--listen", "127.0.0.1:0", "--data"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot open the registry data dir"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
