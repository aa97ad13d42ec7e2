//! Bad input gets a clear error and a non-zero exit, never a panic or a silent skip.

mod common;

use std::time::Duration;

use common::private::{PrivateServer, ROW_CDC, private_config};
use common::registry::Broker;
use common::topic_gate::TopicGate;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_and_renamed_tables_are_named_and_a_swapped_in_table_goes_on() {
    let (mut conn, setup) = fresh("it_err_gone", &["a", "b", "c"]).await;
    let db = setup.db.clone();
    exec(
        &mut conn,
        &[
            "CREATE TABLE a (id INT PRIMARY KEY)",
            "CREATE TABLE b (id INT PRIMARY KEY)",
            "CREATE TABLE c (id INT PRIMARY KEY, v INT)",
            "INSERT INTO a VALUES (1)",
            "INSERT INTO b VALUES (1)",
            "INSERT INTO c VALUES (1, 1)",
        ],
    )
    .await;
    let config = setup.write_config_with_source("resnapshot_on_add_column = true");
    setup.signal_table(&mut conn, &config).await;
    let mut sluice = setup.start("all");
    sluice.wait_for_log("streaming the binlog", PATIENCE);
    // An online schema change's cut-over: a copy with a new column takes c's name.
    exec(
        &mut conn,
        &[
            "DROP TABLE a",
            "RENAME TABLE b TO b_old",
            "CREATE TABLE c_new (id INT PRIMARY KEY, v INT, w INT NULL)",
            "INSERT INTO c_new SELECT id, v, NULL FROM c",
            "RENAME TABLE c TO c_old, c_new TO c",
            "INSERT INTO c VALUES (2, 2, 2)",
        ],
    )
    .await;
    sluice.wait_for_log("another table took a captured table's name", PATIENCE);
    let out = sluice.output();
    let line = |needle: &str| {
        out.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in:\n{out}"))
            .to_string()
    };
    let dropped = line("a captured table was dropped");
    assert!(dropped.contains(&format!("table={db}.a")), "{dropped}");
    assert!(
        dropped.contains("a restart fails until the table exists again or leaves `tables`"),
        "{dropped}"
    );
    let renamed = line("a captured table was renamed");
    assert!(
        renamed.contains(&format!("table={db}.b renamed_to={db}.b_old")),
        "{renamed}"
    );
    let swapped = line("another table took a captured table's name");
    assert!(
        swapped.contains(&format!("table={db}.c renamed_from={db}.c_new")),
        "{swapped}"
    );
    assert!(swapped.contains("the table is copied again"), "{swapped}");
    // Changes under the swapped-in name go on, and its rows are copied (with the new column);
    // nothing of the dropped or renamed tables is invented.
    setup.assert_index_matches(&mut conn, "c", PATIENCE).await;
    assert!(sluice.terminate(PATIENCE).success(), "{}", sluice.output());
    // A restart names the dropped table.
    let out = run_failing_as(&config, "all");
    assert!(
        out.contains(&format!("table {db}.a does not exist")),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_one_state_directory_is_refused() {
    let (mut conn, setup) = fresh("it_err_two", &["t"]).await;
    exec(&mut conn, &["CREATE TABLE t (id INT PRIMARY KEY)"]).await;
    let mut first = setup.start("source");
    first.wait_for_log("streaming the binlog", PATIENCE);
    let out = run_failing_as(&setup.write_config(""), "source");
    let state = setup.dir.path().join("state");
    assert!(
        out.contains(&format!(
            "cannot open the state store at {}",
            state.display()
        )),
        "{out}"
    );
    assert!(
        out.contains("if another sluice process uses this `source.state_dir`, stop it or give this one its own directory"),
        "{out}"
    );
    assert!(first.is_running(), "the first process was disturbed");
    assert!(first.terminate(PATIENCE).success(), "{}", first.output());
}

/// A tmpfs mounted for one test (the tests run as root, where permissions do not stop writes:
/// a read-only or full file system does); unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &std::path::Path, options: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(at)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a tmpfs at {} (this test needs root): {}",
            at.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_or_full_state_directory_is_named_and_nothing_is_lost() {
    let (mut conn, setup) = fresh("it_err_disk", &["t"]).await;
    exec(
        &mut conn,
        &[
            "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(64))",
            "INSERT INTO t VALUES (1, 'a')",
        ],
    )
    .await;
    let config = setup.write_config("");
    let text = std::fs::read_to_string(&config).unwrap();
    let state = setup.dir.path().join("state").display().to_string();
    let with_state = |dir: &std::path::Path| {
        let path = setup.dir.path().join("moved.toml");
        std::fs::write(&path, text.replace(&state, &dir.display().to_string())).unwrap();
        path
    };

    // Read-only: refused at start, with what to do.
    let ro = Tmpfs::mount(&setup.dir.path().join("ro"), "ro,size=1m");
    let out = run_failing_as(&with_state(&ro.0.join("state")), "source");
    assert!(
        out.contains(&format!(
            "cannot open the state store at {}",
            ro.0.join("state").display()
        )),
        "{out}"
    );
    assert!(
        out.contains("the directory is not writable: give the Sluice user write access to it, or set `source.state_dir` to a writable directory"),
        "{out}"
    );

    // Full: the source stops once a checkpoint cannot be stored; after space is freed a
    // restart goes on from the last stored position, and the index gets every row.
    let disk = Tmpfs::mount(&setup.dir.path().join("disk"), "size=8m");
    let config = with_state(&disk.0.join("state"));
    let log = setup.dir.path().join("full.log");
    let mut source = Sluice::start(&config, "source", &log);
    source.wait_for_log("streaming the binlog", PATIENCE);
    let filler = disk.0.join("filler");
    // Whatever space is left, taken by another file (dd stops at "No space left").
    let _ = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", filler.display()))
        .output()
        .unwrap();
    let mut n = 1;
    while source.is_running() {
        n += 1;
        assert!(
            n < 100_000,
            "the source never noticed the full disk:\n{}",
            source.output()
        );
        conn.exec_drop("INSERT INTO t VALUES (?, REPEAT('x', 64))", (n,))
            .await
            .unwrap();
    }
    let out = source.output();
    assert!(!out.contains("panicked"), "{out}");
    assert!(
        out.contains("the disk is full: free space there (no position was stored past what Kafka acknowledged), then restart"),
        "{out}"
    );
    std::fs::remove_file(&filler).unwrap();
    let mut source = Sluice::start(&config, "source", &setup.dir.path().join("full-2.log"));
    source.wait_for_log("streaming the binlog", PATIENCE);
    exec(&mut conn, &["INSERT INTO t VALUES (0, 'after')"]).await;
    let mut loader = setup.start("loader");
    setup.assert_index_matches(&mut conn, "t", CATCH_UP).await;
    assert!(loader.terminate(PATIENCE).success(), "{}", loader.output());
    assert!(source.terminate(PATIENCE).success(), "{}", source.output());
}

/// A cluster whose ACLs deny topic creation (it refuses CreateTopics even for topics that
/// exist): Sluice stops, naming the topic, the brokers and what to do; once someone allowed
/// to has created the topics, it runs without asking for any.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_refuses_topic_creation_is_named_and_topics_created_for_sluice_are_used() {
    let broker_port = free_port();
    let gate = TopicGate::start(broker_port);
    let _broker = Broker::start_advertising(broker_port, gate.port);
    let (mut conn, setup) = fresh("it_err_topics", &["t"]).await;
    exec(
        &mut conn,
        &[
            "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))",
            "INSERT INTO t VALUES (1, 'a'), (2, 'b')",
        ],
    )
    .await;
    let brokers = format!("127.0.0.1:{}", gate.port);
    let text = setup.config_text("").replace(
        &format!("brokers = \"{}\"", stack().brokers),
        &format!("brokers = \"{brokers}\""),
    );
    std::fs::write(setup.dir.path().join("sluice.toml"), text).unwrap();

    let mut refused = setup.start("all");
    let status = refused.wait_exit(PATIENCE);
    let out = refused.output();
    assert!(!status.success(), "{out}");
    let topic = setup.topic("t");
    assert!(
        out.contains(&format!(
            "cannot create topic {topic}: TopicAuthorizationFailed (Broker: Topic authorization \
             failed); check that the brokers at {brokers} are reachable and allow topic \
             creation, or create the topics yourself (3 partitions, replication factor 1: \
             `kafka.partitions`, `kafka.replication_factor`)"
        )),
        "{out}"
    );
    assert!(!out.contains("panicked"), "{out}");

    gate.refuse(false);
    let dead_letters = format!("{}.dlq", setup.prefix);
    create_topics(&brokers, &[&topic, &dead_letters]).await;
    gate.refuse(true);
    let mut sluice = setup.start("all");
    setup.assert_index_matches(&mut conn, "t", PATIENCE).await;
    // Streamed changes reach the index through the topics created for Sluice.
    let changes = [
        "UPDATE t SET v = 'changed' WHERE id = 2",
        "INSERT INTO t VALUES (3, 'c'), (4, 'd')",
    ];
    exec(&mut conn, &changes).await;
    setup.assert_index_matches(&mut conn, "t", PATIENCE).await;
    assert!(sluice.terminate(PATIENCE).success(), "{}", sluice.output());
}

/// Creates `topics` with three partitions, as an administrator would.
async fn create_topics(brokers: &str, topics: &[&str]) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, 3, TopicReplication::Fixed(1)))
        .collect();
    for result in admin
        .create_topics(&new, &AdminOptions::new())
        .await
        .unwrap()
    {
        result.unwrap();
    }
}
