//! Third-party Confluent clients against Sluice (Python `confluent-kafka` with its
//! `SchemaRegistryClient`, `AvroSerializer` and `AvroDeserializer`, installed by
//! `scripts/stack.sh install`): they decode Sluice's topics, and they drive `sluice registry`.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::registry::Registry;
use common::*;
use serde_json::Value as Json;

fn script(name: &str) -> String {
    format!("{}/tests/interop/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs a Python script to its end; returns its stdout, asserting success.
fn python(args: &[&str]) -> String {
    let out = Command::new("python3").args(args).output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{args:?} failed:\n{stdout}\n{stderr}");
    stdout.into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_python_consumer_decodes_every_record_of_a_sluice_topic() {
    let (mut conn, setup) = fresh("it_interop", &["t"]).await;
    exec(
        &mut conn,
        &[
            "CREATE TABLE t (id BIGINT PRIMARY KEY, n INT NOT NULL, \
             s VARCHAR(20) NULL COMMENT 'the customer''s note', \
             d DECIMAL(10,2), big DECIMAL(30,0), dt DATETIME(6), ts TIMESTAMP(3) NULL, \
             day DATE, b VARBINARY(8), e ENUM('a','b'), f DOUBLE, u BIGINT UNSIGNED)",
            "INSERT INTO t VALUES \
             (1, -1, 'één', -0.50, 123456789012345678901234567890, '2024-02-29 23:59:58.123456', \
              '2024-01-01 00:00:00.500', '1999-12-31', x'00ff', 'a', 0.1, 18446744073709551615), \
             (2, 2, NULL, 0.00, 0, NULL, NULL, NULL, NULL, NULL, NULL, 0)",
        ],
    )
    .await;
    let mut sluice = setup.start("source");
    sluice.wait_for_log("streaming the binlog", PATIENCE);
    exec(
        &mut conn,
        &[
            "INSERT INTO t (id, n, s, d, f) VALUES (3, 3, 'x', 99999999.99, -1e300), (4, 4, 'y', 1, 2)",
            "UPDATE t SET s = 'changed', e = 'b' WHERE id = 2",
            "DELETE FROM t WHERE id = 4",
            "UPDATE t SET id = 10 WHERE id = 3",
        ],
    )
    .await;
    // 2 snapshot reads, 2 inserts, 1 update, a delete and its tombstone, and the key change
    // as delete, tombstone and insert.
    let topic = setup.topic("t");
    let deadline = Instant::now() + PATIENCE;
    while topic_records(&topic) < 10 {
        assert!(Instant::now() < deadline, "{}", sluice.output());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let out = python(&[
        &script("consume.py"),
        &stack().brokers,
        &topic,
        &stack().registry_url,
    ]);
    let report: Json = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["records"], 10, "{report}");
    let ops = &report["ops"];
    assert_eq!(
        (
            &ops["r"],
            &ops["c"],
            &ops["u"],
            &ops["d"],
            &ops["tombstone"]
        ),
        (
            &Json::from(2),
            &Json::from(3),
            &Json::from(1),
            &Json::from(2),
            &Json::from(2)
        ),
        "{report}"
    );
    let decoded: BTreeMap<String, Json> = serde_json::from_value(report["rows"].clone()).unwrap();
    let expected = expected_docs(&mut conn, &setup.db, "t").await;
    assert_eq!(decoded, expected);
    // Snapshot (information_schema) and stream (binlog) agree on one schema, comment included.
    let subject = format!("{topic}-value");
    assert_eq!(subject_versions(&subject).await, vec![1]);
    let url = format!(
        "{}/subjects/{subject}/versions/1/schema",
        stack().registry_url
    );
    let schema: Json = reqwest::get(&url).await.unwrap().json().await.unwrap();
    let row = &schema["fields"][0]["type"][1]["fields"];
    assert_eq!(row[2]["doc"], "the customer's note", "{row}");
    assert_eq!(row[2]["mysql.type"], "TEXT", "{row}");
    assert!(sluice.terminate(PATIENCE).success());
}

#[test]
fn confluent_python_registry_client_drives_sluice_registry() {
    let registry = Registry::start(Some("sluice:interop"));
    let out = python(&[
        &script("registry_client.py"),
        &registry.url,
        "sluice:interop",
    ]);
    assert!(out.contains("all checks passed"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_registry_with_basic_auth_and_record_subjects_carries_the_pipeline() {
    let (mut conn, setup) = fresh("it_embedded", &["t"]).await;
    exec(
        &mut conn,
        &[
            "CREATE TABLE t (id INT PRIMARY KEY, s VARCHAR(10))",
            "INSERT INTO t VALUES (1, 'a'), (2, 'b')",
        ],
    )
    .await;
    let port = free_port();
    // One line serves the registry inside `sluice run`; its credentials guard it.
    let registry = format!(
        "serve = \"127.0.0.1:{port}\"\nserve_data = \"{}\"\nusername = \"sluice\"\n\
         password = \"embedded\"\nsubject_strategy = \"record\"",
        setup.dir.path().join("registry").display()
    );
    let text = setup
        .config_text("")
        .replace(&format!("url = \"{}\"", stack().registry_url), &registry);
    std::fs::write(setup.dir.path().join("sluice.toml"), text).unwrap();
    let mut sluice = setup.start("all");
    sluice.wait_for_log("streaming the binlog", PATIENCE);
    exec(
        &mut conn,
        &[
            "INSERT INTO t VALUES (3, 'c')",
            "DELETE FROM t WHERE id = 1",
        ],
    )
    .await;
    setup.assert_index_matches(&mut conn, "t", PATIENCE).await;
    let url = format!("http://127.0.0.1:{port}/subjects");
    let http = reqwest::Client::new();
    assert_eq!(http.get(&url).send().await.unwrap().status(), 401);
    let subjects: Vec<String> = http
        .get(&url)
        .basic_auth("sluice", Some("embedded"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(subjects.len(), 2, "{subjects:?}");
    assert!(
        subjects.iter().any(|s| s.ends_with(".t.Key")),
        "{subjects:?}"
    );
    assert!(
        subjects.iter().any(|s| s.ends_with(".t.Envelope")),
        "{subjects:?}"
    );
    let status = sluice.terminate(PATIENCE);
    assert!(status.success(), "exit {status}:\n{}", sluice.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_registry_with_a_private_ca_is_trusted_through_ca_file() {
    let (mut conn, setup) = fresh("it_tls_registry", &["t"]).await;
    exec(
        &mut conn,
        &[
            "CREATE TABLE t (id INT PRIMARY KEY, s VARCHAR(10))",
            "INSERT INTO t VALUES (1, 'a')",
        ],
    )
    .await;
    let backend = Registry::start(None);
    let proxy = TlsProxy::start(setup.dir.path(), &backend.url, None);
    let (port, cert) = (proxy.port, &proxy.cert);
    let https = format!("url = \"https://localhost:{port}\"");
    let plain = format!("url = \"{}\"", stack().registry_url);
    let config = setup.dir.path().join("sluice.toml");

    // A certificate no trusted CA signed: a clear failure naming the registry.
    std::fs::write(&config, setup.config_text("").replace(&plain, &https)).unwrap();
    let out = run_failing_as(&config, "source");
    assert!(
        out.contains(&format!("schema registry at https://localhost:{port}")),
        "{out}"
    );
    assert!(out.contains("certificate verify failed"), "{out}");

    // `ca_file` trusts it: the table's schemas land in the registry behind the proxy.
    let with_ca = format!("{https}\nca_file = \"{}\"", cert.display());
    std::fs::write(&config, setup.config_text("").replace(&plain, &with_ca)).unwrap();
    let mut sluice = setup.start("source");
    sluice.wait_for_log("streaming the binlog", PATIENCE);
    let topic = setup.topic("t");
    let want = vec![format!("{topic}-key"), format!("{topic}-value")];
    let deadline = Instant::now() + PATIENCE;
    loop {
        let subjects: Vec<String> = reqwest::get(format!("{}/subjects", backend.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if subjects == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{subjects:?}\n{}",
            sluice.output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(sluice.terminate(PATIENCE).success());
}
