//! Services start in any order: a source started before its database, its schema registry or
//! its Kafka cluster waits for each (logging that it does) and then snapshots and streams as
//! usual. Each component here is a private one on a port nothing listens on until the test
//! starts it.

mod common;

use common::private::{PrivateServer, ROW_CDC, private_config};
use common::registry::{Broker, Registry};
use common::*;

/// A source-role config of table `d.t` on a private server at `port`, with `from` replaced by
/// `to` in its text.
fn config(dir: &std::path::Path, port: u16, from: &str, to: &str) -> std::path::PathBuf {
    let path = private_config(dir, port);
    let text = std::fs::read_to_string(&path).unwrap().replace(from, to);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_source_started_before_its_database_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = private_config(dir.path(), port);
    let mut sluice = Sluice::start(&config, "source", &dir.path().join("source.log"));
    sluice.wait_for_log("the database is not reachable; waiting for it", PATIENCE);
    let _server = PrivateServer::start_at(port, &ROW_CDC);
    sluice.wait_for_log("snapshot stored", PATIENCE);
    assert!(sluice.terminate(PATIENCE).success());
}

/// A source of three rows on a private server whose config points `from` at a port nothing
/// listens on yet; `late` starts the component there once the source says it waits for it.
fn waits_for<T>(from: &str, to: impl Fn(u16) -> String, says: &str, late: impl Fn(u16) -> T) {
    let server = PrivateServer::start(&ROW_CDC);
    // Rows, so the snapshot has records to register and publish.
    assert!(
        server
            .sql("INSERT INTO d.t VALUES (1), (2), (3)")
            .status
            .success()
    );
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = config(dir.path(), server.port, from, &to(port));
    let mut sluice = Sluice::start(&config, "source", &dir.path().join("source.log"));
    sluice.wait_for_log(says, PATIENCE);
    let _component = late(port);
    sluice.wait_for_log("snapshot stored", PATIENCE);
    assert!(sluice.terminate(PATIENCE).success());
}

#[test]
fn a_source_started_before_its_schema_registry_waits_for_it() {
    waits_for(
        &stack().registry_url,
        |port| format!("http://127.0.0.1:{port}"),
        "the schema registry is not reachable; waiting for it",
        |port| Registry::start_at(port, None),
    );
}

#[test]
fn a_source_started_before_its_kafka_cluster_waits_for_it() {
    waits_for(
        &stack().brokers,
        |port| format!("127.0.0.1:{port}"),
        "Kafka is not reachable; waiting for it",
        Broker::start_at,
    );
}
