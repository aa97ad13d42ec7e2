//! Services start in any order: a source started before its database, its schema registry or
//! its Kafka cluster waits for each (logging that it does) and then snapshots and streams as
//! usual; a broker lost while streaming is waited for too. Each component here is a private
//! one on a port nothing listens on until the test starts it.

mod common;

use common::private::{PrivateServer, ROW_CDC, private_config};
use common::registry::{Broker, Registry};
use common::*;
use std::time::{Duration, Instant};

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

#[test]
fn a_broker_killed_while_streaming_is_waited_for_and_nothing_is_lost() {
    let server = PrivateServer::start(&ROW_CDC);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let brokers = format!("127.0.0.1:{port}");
    let mut broker = Broker::start_at(port);
    let config = config(dir.path(), server.port, &stack().brokers, &brokers);
    let metrics = format!("127.0.0.1:{}", free_port());
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"{metrics}\"\nready_retry_secs = 1"),
    );
    std::fs::write(&config, text).unwrap();
    let topic = format!("{}.d.t", config_prefix(&config));
    let ready = |want: u16, says: &str| {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let got = http_get(&metrics, "/ready");
            if got
                .as_ref()
                .is_ok_and(|(code, body)| *code == want && body.contains(says))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "/ready: {got:?}, not {want} {says:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let mut sluice = Sluice::start(&config, "source", &dir.path().join("source.log"));
    sluice.wait_for_log("streaming the binlog", PATIENCE);
    let insert = |from: u32, to: u32| {
        let sql = format!("INSERT INTO d.t SELECT seq FROM d.seq_{from}_to_{to}");
        assert!(server.sql(&sql).status.success());
    };
    let records = |want: i64| {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let n = topic_records_at(&brokers, &topic);
            if n == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{n} records in {topic}, not {want}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    insert(1, 100);
    records(100);
    ready(200, "ready");
    broker.kill();
    insert(101, 300);
    // The outage lasts; the source keeps the changes queued, without checkpointing them, and
    // is not ready once it lasted `ready_retry_secs`.
    sluice.wait_for_log("Kafka is not reachable; waiting for it", PATIENCE);
    ready(503, "unreachable");
    std::thread::sleep(Duration::from_secs(15));
    assert!(sluice.is_running(), "{}", sluice.output());
    broker.restart();
    records(300);
    ready(200, "ready");
    insert(301, 310);
    records(310);
    assert!(sluice.terminate(PATIENCE).success());
}
