//! Bad input gets a clear error and a non-zero exit, never a panic or a silent skip.

mod common;

use std::time::Duration;

use common::private::{PrivateServer, ROW_CDC, private_config};
use common::*;
use mysql_async::prelude::*;

#[test]
fn config_errors_name_the_key_and_list_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");

    std::fs::write(
        &path,
        "tables = [\"shop.orders\"]\n[source]\nhost = \"h\"\nuser = \"u\"\npasword = \"x\"\n",
    )
    .unwrap();
    let out = run_failing_as(&path, "all");
    assert!(
        out.contains("source.pasword") || out.contains("pasword"),
        "{out}"
    );

    std::fs::write(
        &path,
        r#"tables = ["orders"]
[source]
host = "h"
user = "u"
password = "topsecret"
server_id = 77
state_dir = "/tmp/x"
[kafka]
brokers = "b:9092"
topic_prefix = "p"
[registry]
url = "not a url"
[elasticsearch]
url = "http://localhost:9200"
"#,
    )
    .unwrap();
    let out = run_failing_as(&path, "all");
    assert!(
        out.contains("orders"),
        "the table name problem is listed:\n{out}"
    );
    assert!(
        out.contains("registry.url"),
        "the URL problem is listed:\n{out}"
    );
    assert!(
        !out.contains("topsecret"),
        "a secret reached the output:\n{out}"
    );

    let (status, out) = run_to_exit(&["run", "--config", "/nonexistent/sluice.toml"], PATIENCE);
    assert!(!status.success());
    assert!(out.contains("/nonexistent/sluice.toml"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_column_type_at_startup_names_table_column_and_type() {
    let (mut conn, setup) = fresh("it_err_type", &["t"]).await;
    let db = setup.db.clone();
    exec(
        &mut conn,
        &[
            &format!("CREATE TABLE `{db}`.t (id INT PRIMARY KEY, y VARCHAR(10) COMPRESSED)"),
            &format!("INSERT INTO `{db}`.t VALUES (1, 'a')"),
        ],
    )
    .await;
    let out = run_failing_as(&setup.write_config(""), "all");
    assert!(out.contains(&format!("{db}.t")), "{out}");
    assert!(
        out.contains("column `y` has type VARCHAR(10) COMPRESSED"),
        "{out}"
    );
}

/// Streams table `t (id INT PRIMARY KEY, n INT)` of a fresh database, runs `statements` in it,
/// and returns the setup and the output of the sluice process, which must fail cleanly.
async fn stream_then_fail(name: &str, statements: &[&str]) -> (Setup, String) {
    let (mut conn, setup) = fresh(name, &["t"]).await;
    exec(&mut conn, &["CREATE TABLE t (id INT PRIMARY KEY, n INT)"]).await;
    let mut sluice = setup.start("all");
    sluice.wait_for_log("streaming the binlog", PATIENCE);
    exec(&mut conn, statements).await;
    let status = sluice.wait_exit(PATIENCE);
    let out = sluice.output();
    assert!(!status.success(), "{out}");
    assert!(!out.contains("panicked"), "{out}");
    (setup, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_column_type_mid_stream_stops_with_the_column_named() {
    let (setup, out) = stream_then_fail(
        "it_err_alter",
        &[
            "INSERT INTO t VALUES (1, 1)",
            "ALTER TABLE t ADD COLUMN f VARCHAR(10) COMPRESSED",
            "INSERT INTO t VALUES (2, 2, 'a')",
        ],
    )
    .await;
    let db = &setup.db;
    assert!(
        out.contains("column `f` has type VARCHAR COMPRESSED"),
        "{out}"
    );
    assert!(out.contains(&format!("{db}.t")), "{out}");
    // The row before the change reached Kafka (a loader started afterwards indexes it), and
    // the row with the undecodable column was never invented.
    let mut loader = setup.start("loader");
    let index = format!("{db}.t");
    let deadline = std::time::Instant::now() + PATIENCE;
    let docs = loop {
        let docs = index_docs(&index).await;
        if docs.contains_key("1") || std::time::Instant::now() > deadline {
            break docs;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        docs.contains_key("1"),
        "the row before the change was lost: {docs:?}\n{}",
        loader.output()
    );
    assert!(
        !docs.contains_key("2"),
        "a row with an undecodable column was invented: {docs:?}"
    );
    assert!(loader.terminate(PATIENCE).success(), "{}", loader.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_table_and_missing_privileges_are_named() {
    let (mut conn, setup) = fresh("it_err_missing", &["nope"]).await;
    let db = setup.db.clone();
    let out = run_failing_as(&setup.write_config(""), "all");
    assert!(
        out.contains(&format!("table {db}.nope does not exist")),
        "{out}"
    );

    // A user that may only SELECT cannot read the binlog.
    let user = unique("ro");
    exec(
        &mut conn,
        &[
            &format!("CREATE TABLE `{db}`.t (id INT PRIMARY KEY)"),
            &format!("CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'"),
            &format!("GRANT SELECT ON *.* TO '{user}'@'%'"),
        ],
    )
    .await;
    let path = setup.write_config_as(&user, "pw", "");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace(&format!("{db}.nope"), &format!("{db}.t")),
    )
    .unwrap();
    let out = run_failing_as(&path, "all");
    assert!(out.contains("REPLICATION SLAVE"), "{out}");
    assert!(out.contains("REPLICATION CLIENT"), "{out}");
    conn.query_drop(format!("DROP USER '{user}'@'%'"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_says_what_to_check_and_hides_the_password() {
    let (mut conn, setup) = fresh("it_err_auth", &["t"]).await;
    let db = setup.db.clone();
    exec(
        &mut conn,
        &[&format!("CREATE TABLE `{db}`.t (id INT PRIMARY KEY)")],
    )
    .await;
    let path = setup.write_config_as(&stack().cdc_user, "wrong-Secret-42", "");
    let out = run_failing_as(&path, "all");
    assert!(out.contains("cannot connect"), "{out}");
    assert!(
        !out.contains("wrong-Secret-42"),
        "the password reached the output:\n{out}"
    );
}

#[test]
fn server_settings_unfit_for_row_cdc_are_named_with_their_fix() {
    let dir = tempfile::tempdir().unwrap();
    let run = |port: u16| run_failing_as(&private_config(dir.path(), port), "source");

    let no_binlog = PrivateServer::start(&[]);
    let out = run(no_binlog.port);
    assert!(
        out.contains("does not write a binary log; start it with log_bin"),
        "{out}"
    );
    drop(no_binlog);

    let server = PrivateServer::start(&["--log-bin=binlog", "--binlog-format=STATEMENT"]);
    let cases = [
        ("", "binlog_format is STATEMENT; set binlog_format=ROW"),
        (
            "SET GLOBAL binlog_format = 'ROW', GLOBAL binlog_row_image = 'MINIMAL'",
            "binlog_row_image is MINIMAL; set binlog_row_image=FULL",
        ),
        (
            "SET GLOBAL binlog_row_image = 'NOBLOB'",
            "binlog_row_image is NOBLOB; set binlog_row_image=FULL on the server (unchanged BLOB",
        ),
        (
            "SET GLOBAL binlog_row_image = 'FULL', GLOBAL binlog_row_metadata = 'MINIMAL'",
            "binlog_row_metadata is MINIMAL; set binlog_row_metadata=FULL",
        ),
        (
            "SET GLOBAL binlog_row_metadata = 'NO_LOG'",
            "binlog_row_metadata is NO_LOG; set binlog_row_metadata=FULL",
        ),
    ];
    for (setting, expected) in cases {
        if !setting.is_empty() {
            assert!(server.sql(setting).status.success(), "{setting}");
        }
        let out = run(server.port);
        assert!(out.contains(expected), "expected {expected:?}:\n{out}");
    }
}

#[test]
fn purged_binlog_says_to_resnapshot() {
    let server = PrivateServer::start(&ROW_CDC);
    let dir = tempfile::tempdir().unwrap();
    let config = private_config(dir.path(), server.port);
    // A first run snapshots the table and stores a position in binlog.000001.
    run_once(&config, &dir.path().join("first.log"));
    assert!(
        server
            .sql("FLUSH BINARY LOGS; FLUSH BINARY LOGS")
            .status
            .success()
    );
    server.purge_to("binlog.000003");
    let out = run_failing_as(&config, "source");
    assert!(
        out.contains("no longer has the binlog needed to resume at binlog.000001"),
        "{out}"
    );
    assert!(out.contains("re-snapshot"), "{out}");
    assert!(
        !out.contains("reconnecting"),
        "a purged binlog is not a connection loss:\n{out}"
    );
}

#[test]
fn corrupted_binlog_event_fails_its_checksum_and_emits_nothing() {
    let server = PrivateServer::start(&ROW_CDC);
    let dir = tempfile::tempdir().unwrap();
    let config = private_config(dir.path(), server.port);
    run_once(&config, &dir.path().join("first.log"));

    // A row whose id is easy to find in the file; flip one of its bytes on disk.
    let marker: u32 = 0x5a3c_5a3c;
    let insert = server.sql(&format!(
        "INSERT INTO d.t VALUES (1); INSERT INTO d.t VALUES ({marker})"
    ));
    assert!(insert.status.success());
    let path = server.data_file("binlog.000001");
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes
        .windows(4)
        .rposition(|w| w == marker.to_le_bytes())
        .expect("the row image is in the binlog");
    bytes[at] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();

    let out = run_failing_as(&config, "source");
    assert!(out.contains("failed its CRC32 check"), "{out}");
    assert!(
        !out.contains("reconnecting"),
        "a corrupt event is not a connection loss:\n{out}"
    );
    let topic = format!("{}.d.t", config_prefix(&config));
    // The intact transaction before it was published; the corrupt one was not.
    assert_eq!(topic_records(&topic), 1, "{topic}");
}
