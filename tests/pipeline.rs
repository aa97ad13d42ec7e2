//! The whole pipeline on the real stack: MariaDB -> sluice -> tansu -> sluice -> osmem-server,
//! with `sluice registry` in between. Every test ends by comparing every field of every row
//! with the index.

mod common;

use std::collections::BTreeMap;

use common::registry::Broker;
use common::workload::{Workload, create_tables};
use common::*;
use mysql_async::prelude::*;
use mysql_async::{Conn, Pool};

/// Writes random transactions from its own connection until stopped; each transaction
/// counts as one write.
fn spawn_writer(pool: Pool, db: String, mut w: Workload) -> Writer {
    Writer::spawn(|writes| async move {
        let mut conn = pool.get_conn().await.unwrap();
        conn.query_drop(format!("USE `{db}`")).await.unwrap();
        while writes.go_on() {
            w.transaction(&mut conn, 5).await;
            writes.count();
        }
    })
}

/// A fresh database with the workload's `items` and `links` tables and a setup for both.
async fn two_tables(name: &str) -> (Pool, Conn, String, Setup) {
    let (mut conn, setup) = fresh(name, &["items", "links"]).await;
    let db = setup.db.clone();
    create_tables(&mut conn, &db).await;
    (admin_pool(), conn, db, setup)
}

/// Waits until both indexes equal their tables.
async fn both_match(setup: &Setup, conn: &mut Conn) {
    for table in ["items", "links"] {
        setup.assert_index_matches(conn, table, CATCH_UP).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_transactions_on_two_tables_reach_the_index_exactly() {
    let (_pool, mut conn, _, setup) = two_tables("it_mixed").await;
    let mut w = Workload::new(1);
    for _ in 0..5 {
        w.transaction(&mut conn, 10).await; // rows the snapshot copies
    }
    // Records travel zstd-compressed: librdkafka is built with it.
    setup.write_config("[kafka.producer_properties]\n\"compression.type\" = \"zstd\"");
    let mut sluice = setup.start("all");
    sluice.wait_for_log("streaming the binlog", PATIENCE);
    let mut changed = 0;
    for _ in 0..60 {
        changed += w.transaction(&mut conn, 20).await;
    }
    assert!(changed >= 1000, "only {changed} row changes");
    both_match(&setup, &mut conn).await;
    // The snapshot's schema (information_schema) and the stream's (TABLE_MAP) are the same
    // table version, so each subject has exactly one.
    for t in ["items", "links"] {
        let subject = format!("{}-value", setup.topic(t));
        assert_eq!(subject_versions(&subject).await, vec![1], "{subject}");
    }
    let status = sluice.terminate(PATIENCE);
    assert!(status.success(), "exit {status}:\n{}", sluice.output());
    assert!(sluice.output().contains("stopped cleanly"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_under_concurrent_writes_then_stream_has_no_gap() {
    let (pool, mut conn, db, setup) = two_tables("it_snap").await;
    let mut w = Workload::new(2);
    for _ in 0..20 {
        w.insert_items(&mut conn, 100).await;
    }
    w.transaction(&mut conn, 50).await;
    // The snapshot is paced (1,000 rows/s: at least 2 s for 2,000+ rows) so the writer,
    // started first, commits all through it.
    setup.write_config_with_source("snapshot_max_rows_per_sec = 1000");
    let writer = spawn_writer(pool.clone(), db.clone(), w);
    writer.wait_more(5).await;
    // Source and loader as separate processes.
    let mut source = setup.start("source");
    let mut loader = setup.start("loader");
    source.wait_for_log("snapshot: copying table", PATIENCE);
    let at_start = writer.done();
    source.wait_for_log("streaming the binlog", PATIENCE);
    assert!(writer.done() > at_start, "no write while the snapshot ran");
    writer.wait_more(20).await;
    writer.stop().await;
    both_match(&setup, &mut conn).await;
    for p in [&mut source, &mut loader] {
        let status = p.terminate(PATIENCE);
        assert!(status.success(), "exit {status}:\n{}", p.output());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_then_restart_loses_nothing() {
    let (pool, mut conn, db, setup) = two_tables("it_kill").await;
    let mut w = Workload::new(3);
    w.insert_items(&mut conn, 200).await;
    let mut first = setup.start("all");
    first.wait_for_log("streaming the binlog", PATIENCE);
    let writer = spawn_writer(pool.clone(), db.clone(), w);
    // Killed while the writer's transactions stream through it, and more while it is down.
    writer.wait_more(30).await;
    first.kill9();
    writer.wait_more(10).await;
    let mut second = setup.start("all");
    second.wait_for_log("streaming the binlog", PATIENCE);
    writer.wait_more(30).await;
    writer.stop().await;
    both_match(&setup, &mut conn).await;
    // It resumed from the stored position instead of starting over.
    assert!(
        !second.output().contains("snapshot: copying"),
        "the restart snapshotted again:\n{}",
        second.output()
    );
    let status = second.terminate(PATIENCE);
    assert!(status.success(), "exit {status}:\n{}", second.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_binlog_connections_are_reestablished_without_loss() {
    let (pool, mut conn, db, setup) = two_tables("it_reconnect").await;
    // A user of its own, so the test kills only this sluice's binlog connection.
    let user = cdc_user(&mut conn, "").await;
    setup.write_config_as(&user, "pw", "");
    let mut w = Workload::new(5);
    w.insert_items(&mut conn, 100).await;
    let mut sluice = setup.start("all");
    sluice.wait_for_log("streaming the binlog", PATIENCE);
    let writer = spawn_writer(pool.clone(), db.clone(), w);
    for round in 1..=3 {
        // Kill the connection once it streams again and transactions went through it.
        sluice.wait_for_logs("streaming the binlog", round, PATIENCE);
        writer.wait_more(10).await;
        let dump = format!(
            "SELECT ID FROM information_schema.PROCESSLIST \
             WHERE USER = '{user}' AND COMMAND LIKE 'Binlog Dump%'"
        );
        let ids: Vec<u64> = eventually("a binlog connection to kill", async || {
            let ids: Vec<u64> = conn.query(&dump).await.unwrap();
            if ids.is_empty() {
                Err(format!("none; sluice's log:\n{}", sluice.output()))
            } else {
                Ok(ids)
            }
        })
        .await;
        for id in ids {
            // A connection killed in an earlier round may still be listed, then gone.
            if let Err(e) = conn.query_drop(format!("KILL CONNECTION {id}")).await {
                assert!(e.to_string().contains("Unknown thread id"), "{e}");
            }
        }
    }
    sluice.wait_for_logs("streaming the binlog", 4, PATIENCE);
    writer.wait_more(10).await;
    writer.stop().await;
    both_match(&setup, &mut conn).await;
    let out = sluice.output();
    assert!(out.contains("reconnecting from the last commit"), "{out}");
    let status = sluice.terminate(PATIENCE);
    assert!(status.success(), "exit {status}:\n{}", sluice.output());
    conn.query_drop(format!("DROP USER '{user}'@'%'"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn year_columns_snapshot_and_stream_exactly() {
    let (mut conn, setup) = fresh("it_year", &["y"]).await;
    exec(
        &mut conn,
        &[
            "CREATE TABLE y (id INT PRIMARY KEY, a YEAR NULL, b YEAR NOT NULL)",
            "INSERT INTO y VALUES (1, 1901, 2155), (2, NULL, 0), (3, 2024, 1970)",
        ],
    )
    .await;
    let mut sluice = setup.start("all");
    sluice.wait_for_log("streaming the binlog", PATIENCE);
    exec(
        &mut conn,
        &[
            "INSERT INTO y VALUES (4, 2155, 1901), (5, 0, 2000)",
            "UPDATE y SET a = NULL, b = 1999 WHERE id = 1",
            "DELETE FROM y WHERE id = 3",
        ],
    )
    .await;
    setup.assert_index_matches(&mut conn, "y", CATCH_UP).await;
    assert!(sluice.terminate(PATIENCE).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alter_table_mid_stream_decodes_rows_on_both_sides_with_their_schema() {
    let (mut conn, setup) = fresh("it_alter", &["t"]).await;
    exec(
        &mut conn,
        &[
            "CREATE TABLE t (id INT PRIMARY KEY, a INT NOT NULL, b VARCHAR(10))",
            "INSERT INTO t VALUES (1, 10, 'one'), (2, 20, 'two')",
        ],
    )
    .await;
    let mut sluice = setup.start("all");
    sluice.wait_for_log("streaming the binlog", PATIENCE);
    exec(
        &mut conn,
        &[
            "INSERT INTO t VALUES (3, 30, 'three')",
            "ALTER TABLE t ADD COLUMN c DATE NULL AFTER id",
            "INSERT INTO t VALUES (4, '2024-02-29', 40, 'four')",
            "UPDATE t SET c = '2000-01-01' WHERE id = 1",
            "ALTER TABLE t MODIFY COLUMN a BIGINT NOT NULL",
            "INSERT INTO t VALUES (5, NULL, 5000000000, 'five')",
            "ALTER TABLE t DROP COLUMN b",
            "INSERT INTO t VALUES (6, NULL, -6)",
            "DELETE FROM t WHERE id = 2",
            // Documents hold what their last change wrote; rewrite all under the final schema.
            "UPDATE t SET a = a + 1",
        ],
    )
    .await;
    setup.assert_index_matches(&mut conn, "t", CATCH_UP).await;
    // One value schema per table version the stream saw.
    let subject = format!("{}-value", setup.topic("t"));
    assert_eq!(subject_versions(&subject).await, vec![1, 2, 3, 4]);
    assert!(sluice.terminate(PATIENCE).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncates_empty_the_index_and_rows_written_after_them_stay() {
    let (mut conn, setup) = fresh("it_truncate", &["t"]).await;
    let values = |from: i32, to: i32| {
        let rows: Vec<String> = (from..=to).map(|i| format!("({i}, {i})")).collect();
        format!("INSERT INTO t VALUES {}", rows.join(", "))
    };
    exec(
        &mut conn,
        &["CREATE TABLE t (id INT PRIMARY KEY, n INT)", &values(1, 30)],
    )
    .await;
    let mut sluice = setup.start("all");
    sluice.wait_for_log("streaming the binlog", PATIENCE);
    exec(
        &mut conn,
        &[
            &values(31, 40),
            "UPDATE t SET n = n + 100 WHERE id <= 20",
            "TRUNCATE TABLE t",
            // Keys the truncate removed come back, with lower ids in other partitions.
            &values(5, 12),
            "UPDATE t SET n = -n WHERE id = 7",
        ],
    )
    .await;
    setup.assert_index_matches(&mut conn, "t", CATCH_UP).await;
    let status = sluice.terminate(PATIENCE);
    assert!(
        status.success(),
        "exit {status}:
{}",
        sluice.output()
    );
    // One truncate record per partition (the setup has 3), each applied by the loader.
    let out = sluice.output();
    assert_eq!(
        out.matches("streamed as a truncate event").count(),
        1,
        "{out}"
    );
    assert_eq!(out.matches("applied a TRUNCATE").count(), 3, "{out}");

    // A TRUNCATE while Sluice is down is the first event of its table after the restart: no
    // table map precedes it, so its schema comes from the schema history.
    exec(&mut conn, &["TRUNCATE TABLE t", &values(1, 3)]).await;
    let mut again = setup.start("all");
    again.wait_for_log("streaming the binlog", PATIENCE);
    setup.assert_index_matches(&mut conn, "t", CATCH_UP).await;
    let status = again.terminate(PATIENCE);
    assert!(
        status.success(),
        "exit {status}:
{}",
        again.output()
    );
    let config = setup.dir.path().join("sluice.toml");
    let (status, history) = run_to_exit(
        &[
            "schemas",
            "--config",
            config.to_str().unwrap(),
            &format!("{}.t", setup.db),
        ],
        PATIENCE,
    );
    assert!(status.success(), "{history}");
    let line = format!("{}.t (id INT, n INT NULL) KEY (id)", setup.db);
    assert_eq!(history.matches(&line).count(), 1, "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incompatible_schema_halts_its_table_while_others_flow_and_a_restart_resumes_it() {
    let (mut conn, setup) = fresh("it_halt", &["a", "b"]).await;
    exec(
        &mut conn,
        &[
            "CREATE TABLE a (id INT PRIMARY KEY, x INT)",
            "CREATE TABLE b (id INT PRIMARY KEY, x INT)",
            "INSERT INTO a VALUES (1, 1)",
            "INSERT INTO b VALUES (1, 1)",
        ],
    )
    .await;
    let mut sluice = setup.start("all");
    sluice.wait_for_log("streaming the binlog", PATIENCE);
    // A NOT NULL column has no Avro default: the registry's BACKWARD level refuses it.
    exec(
        &mut conn,
        &[
            "ALTER TABLE a ADD COLUMN c INT NOT NULL DEFAULT 7",
            "INSERT INTO a VALUES (2, 2, 2)",
            // Documents hold what their last change wrote: rewrite row 1 under the new schema.
            "UPDATE a SET x = x + 100",
            "INSERT INTO b VALUES (2, 2), (3, 3)",
            "UPDATE b SET x = 10",
        ],
    )
    .await;
    setup.assert_index_matches(&mut conn, "b", CATCH_UP).await;
    sluice.wait_for_log("table halted", PATIENCE);
    let out = sluice.output();
    assert!(
        out.contains(&format!("{}.a", setup.db)) && out.contains("BACKWARD"),
        "{out}"
    );
    // a's index holds its snapshot row once the loader applied it, and nothing of the
    // refused schema.
    let want: BTreeMap<String, serde_json::Value> =
        [("1".to_string(), serde_json::json!({"id": 1, "x": 1}))].into();
    setup
        .assert_index_holds("a", PATIENCE, async || want.clone())
        .await;
    assert!(sluice.terminate(PATIENCE).success());

    // The operator accepts the change for this subject; the restart publishes what was held.
    let subject = format!("{}-value", setup.topic("a"));
    let r = reqwest::Client::new()
        .put(format!("{}/config/{subject}", stack().registry_url))
        .json(&serde_json::json!({"compatibility": "NONE"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    exec(&mut conn, &["INSERT INTO b VALUES (4, 4)"]).await;
    let mut again = setup.start("all");
    again.wait_for_log("streaming the binlog", PATIENCE);
    for t in ["a", "b"] {
        setup.assert_index_matches(&mut conn, t, CATCH_UP).await;
    }
    assert!(
        !again.output().contains("table halted"),
        "{}",
        again.output()
    );
    assert!(again.terminate(PATIENCE).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_patterns_and_column_rules_shape_what_leaves_the_source() {
    let (mut conn, setup) = fresh("it_filter", &["f_*"]).await;
    let ddl = |t: &str| {
        format!(
            "CREATE TABLE {t} (id INT PRIMARY KEY, ssn CHAR(11), email VARCHAR(64), \
             phone VARCHAR(20), age INT)"
        )
    };
    let rows = "(1, '123-45-6789', 'a@example.com', '555-0100', 30), \
                (2, NULL, NULL, NULL, NULL), (3, '987-65-4321', 'b@example.com', '', 41)";
    for t in ["f_keep", "f_skip", "other"] {
        exec(
            &mut conn,
            &[&ddl(t), &format!("INSERT INTO {t} VALUES {rows}")],
        )
        .await;
    }
    let config = setup
        .config_text(
            "[columns]\nexclude = [\"*.f_*.ssn\"]\nhash = [\"*.*.email\"]\n\
             hash_salt = \"pepper\"\nmask = [\"*.*.phone\"]\nmask_with = \"***\"\n",
        )
        .replacen(
            "\n[source]",
            &format!("\nexclude_tables = [\"{}.f_skip\"]\n[source]", setup.db),
            1,
        );
    std::fs::write(setup.dir.path().join("sluice.toml"), config).unwrap();
    let mut sluice = setup.start("all");
    sluice.wait_for_log("streaming the binlog", PATIENCE);
    exec(
        &mut conn,
        &[
            "INSERT INTO f_keep VALUES (4, '000-00-0000', 'c@example.com', '555-0199', 7)",
            "UPDATE f_keep SET email = 'new@example.com', phone = NULL WHERE id = 1",
            "INSERT INTO f_skip VALUES (4, NULL, NULL, NULL, NULL)",
        ],
    )
    .await;

    // What the index must hold: the table's rows with the rules applied, computed apart.
    let expected = |mut docs: std::collections::BTreeMap<String, serde_json::Value>| {
        use sha2::Digest;
        for doc in docs.values_mut() {
            let doc = doc.as_object_mut().unwrap();
            doc.remove("ssn");
            if let Some(email) = doc["email"].as_str() {
                let hash = sha2::Sha256::digest(format!("pepper{email}"));
                let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
                doc["email"] = hex.into();
            }
            if !doc["phone"].is_null() {
                doc["phone"] = "***".into();
            }
        }
        docs
    };
    let db = setup.db.clone();
    setup
        .assert_index_holds("f_keep", CATCH_UP, async || {
            expected(expected_docs(&mut conn, &db, "f_keep").await)
        })
        .await;
    for excluded in ["f_skip", "other"] {
        assert_eq!(topic_records(&setup.topic(excluded)), 0, "{excluded}");
    }
    assert!(sluice.output().contains("capturing"));
    assert!(
        !sluice.output().contains("pepper"),
        "the salt reached the log"
    );
    assert!(sluice.terminate(PATIENCE).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_without_primary_key_are_keyed_by_a_unique_not_null_key() {
    let (mut conn, setup) = fresh("it_unique", &["u"]).await;
    exec(
        &mut conn,
        &[
            // uq_n is unique but nullable (NULLs repeat): uq_xy keys the records.
            "CREATE TABLE u (x INT NOT NULL, y VARCHAR(10) NOT NULL, n INT NULL, v INT, \
             UNIQUE KEY uq_n (n), UNIQUE KEY uq_xy (x, y))",
            "INSERT INTO u VALUES (1, 'a', NULL, 10), (1, 'b', NULL, 11), (2, 'a', 5, 20)",
        ],
    )
    .await;
    let mut sluice = setup.start("all");
    sluice.wait_for_log("streaming the binlog", PATIENCE);
    exec(
        &mut conn,
        &[
            "INSERT INTO u VALUES (3, 'c', NULL, 30)",
            "UPDATE u SET v = v + 1 WHERE x = 1",
            "UPDATE u SET y = 'z' WHERE x = 2",
            "DELETE FROM u WHERE x = 3",
        ],
    )
    .await;
    let db = setup.db.clone();
    setup
        .assert_index_holds("u", CATCH_UP, async || {
            expected_docs_keyed(&mut conn, &db, "u", Some(&["x", "y"])).await
        })
        .await;
    assert!(
        sluice
            .output()
            .contains("keyed by a unique key over NOT NULL columns")
    );
    assert!(sluice.terminate(PATIENCE).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_without_primary_key_need_and_use_a_configured_key() {
    let (mut conn, setup) = fresh("it_keys", &["events"]).await;
    exec(
        &mut conn,
        &[
            "CREATE TABLE events (k1 INT NOT NULL, k2 VARCHAR(10) NOT NULL, v INT)",
            "INSERT INTO events VALUES (1, 'a', 10), (1, 'b', 11), (2, 'a', 20)",
        ],
    )
    .await;
    let out = run_failing_as(&setup.write_config(""), "source");
    assert!(
        out.contains("has no primary key and no unique key over NOT NULL columns")
            && out.contains("[keys]"),
        "{out}"
    );

    setup.write_config(&format!(
        "[keys]\n\"{}.events\" = [\"k1\", \"k2\"]\n",
        setup.db
    ));
    let mut sluice = setup.start("all");
    sluice.wait_for_log("streaming the binlog", PATIENCE);
    exec(
        &mut conn,
        &[
            "INSERT INTO events VALUES (3, 'c', 30)",
            "UPDATE events SET v = v + 1 WHERE k1 = 1",
            "UPDATE events SET k2 = 'z' WHERE k1 = 2",
            "DELETE FROM events WHERE k1 = 3",
        ],
    )
    .await;
    let db = setup.db.clone();
    setup
        .assert_index_holds("events", CATCH_UP, async || {
            expected_docs_keyed(&mut conn, &db, "events", Some(&["k1", "k2"])).await
        })
        .await;
    assert!(sluice.terminate(PATIENCE).success());
}

/// A Kafka cluster reached over TLS with a private CA (`security.protocol = "SSL"`,
/// `ssl.ca.location`): librdkafka is built with TLS, and source and loader both connect
/// through it. Without the CA the source waits for Kafka, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_cluster_behind_tls_with_a_private_ca() {
    let (_pool, mut conn, _, setup) = two_tables("it_kafka_tls").await;
    let mut w = Workload::new(16);
    for _ in 0..3 {
        w.transaction(&mut conn, 10).await;
    }
    let broker_port = free_port();
    let backend = format!("tcp://127.0.0.1:{broker_port}");
    let proxy = TlsProxy::start(setup.dir.path(), &backend, None);
    let _broker = Broker::start_advertising(broker_port, proxy.port);
    let write_config = |properties: &str| {
        let text = setup
            .config_text(&format!(
                "[kafka.properties]\n\"security.protocol\" = \"SSL\"\n{properties}"
            ))
            .replace(
                &format!("brokers = \"{}\"", stack().brokers),
                &format!("brokers = \"127.0.0.1:{}\"", proxy.port),
            );
        std::fs::write(setup.dir.path().join("sluice.toml"), text).unwrap();
    };

    write_config("");
    let mut untrusted = setup.start("source");
    untrusted.wait_for_log("Kafka is not reachable; waiting for it", PATIENCE);
    let out = untrusted.output();
    assert!(out.contains("certificate verify failed"), "{out}");
    assert!(untrusted.terminate(PATIENCE).success(), "{out}");

    write_config(&format!(
        "\"ssl.ca.location\" = \"{}\"",
        proxy.cert.display()
    ));
    let mut sluice = setup.start("all");
    sluice.wait_for_log("streaming the binlog", PATIENCE);
    for _ in 0..10 {
        w.transaction(&mut conn, 20).await;
    }
    both_match(&setup, &mut conn).await;
    let status = sluice.terminate(PATIENCE);
    assert!(status.success(), "exit {status}:\n{}", sluice.output());
}
