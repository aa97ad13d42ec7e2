//! The metrics endpoint and probes of a running pipeline on the real stack: the counters
//! follow a known workload, the connection gauge and reconnect counter follow a killed
//! binlog connection, `/ready` waits for the loader's partitions, and a taken port is a
//! named error.

mod common;

use common::*;
use mysql_async::prelude::*;

/// The value of the sample `name` (with its labels, as exposed) in `/metrics`.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The consumer lag summed over every partition.
fn consumer_lag(text: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with("sluice_loader_consumer_lag_records{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The address the process's metrics endpoint took (its log names it).
fn endpoint(sluice: &mut Sluice) -> String {
    sluice.wait_for_log("metrics at /metrics", PATIENCE);
    let out = sluice.output();
    let line = out
        .lines()
        .find(|l| l.contains("metrics at /metrics"))
        .unwrap_or_default();
    line.split("listen=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no listen address in {line:?}"))
        .to_string()
}

/// Waits until every `(sample, value)` pair is exposed with exactly that value.
async fn metrics_reach(addr: &str, want: &[(String, f64)]) -> String {
    eventually("the metrics", async || {
        let (status, text) = http_get(addr, "/metrics")?;
        if status != 200 {
            return Err(format!("HTTP {status}"));
        }
        for (name, value) in want {
            if sample(&text, name) != Some(*value) {
                return Err(format!("{name} = {:?} in\n{text}", sample(&text, name)));
            }
        }
        Ok(text)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_follow_a_known_workload_and_a_lost_connection() {
    let (mut conn, setup) = fresh("it_metrics", &["t"]).await;
    // A user of its own, so the test kills only this sluice's binlog connection.
    let user = cdc_user(&mut conn, "").await;
    exec(
        &mut conn,
        &[
            "CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)",
            "INSERT INTO t SELECT seq, seq FROM seq_1_to_50",
        ],
    )
    .await;
    setup.write_config_as(&user, "pw", "");
    let mut sluice = setup.start("all");
    let addr = endpoint(&mut sluice);
    // Not ready until the loader holds partitions (the group's join takes seconds on tansu).
    let (status, body) = http_get(&addr, "/ready").unwrap();
    let early = format!("{status} {body}");
    assert_eq!(http_get(&addr, "/health").unwrap().0, 200);
    sluice.wait_for_log("streaming the binlog", PATIENCE);
    let table = format!("{}.t", setup.db);
    // 30 inserts, 10 updates and 5 deletes, one transaction each.
    for i in 51..=80 {
        exec(&mut conn, &[&format!("INSERT INTO t VALUES ({i}, {i})")]).await;
    }
    for i in 1..=10 {
        exec(&mut conn, &[&format!("UPDATE t SET v = -v WHERE id = {i}")]).await;
    }
    for i in 11..=15 {
        exec(&mut conn, &[&format!("DELETE FROM t WHERE id = {i}")]).await;
    }
    let rows =
        |op: &str| format!("sluice_source_row_changes_total{{op=\"{op}\",table=\"{table}\"}}");
    metrics_reach(
        &addr,
        &[
            (rows("c"), 30.0),
            (rows("u"), 10.0),
            (rows("d"), 5.0),
            (
                format!("sluice_snapshot_rows_total{{kind=\"initial\",table=\"{table}\"}}"),
                50.0,
            ),
            (
                "sluice_snapshot_completed_total{kind=\"initial\"}".into(),
                1.0,
            ),
            ("sluice_source_connected".into(), 1.0),
            ("sluice_loader_partitions_assigned".into(), 3.0),
        ],
    )
    .await;
    setup.assert_index_matches(&mut conn, "t", CATCH_UP).await;
    // 50 snapshot rows + 30 inserts + 10 updates indexed, 5 deletes; at least, as a
    // rebalance may apply a batch twice (harmless with external versions).
    let text = eventually("the loader's document counts", async || {
        let (_, text) = http_get(&addr, "/metrics")?;
        let docs = |op: &str| {
            sample(
                &text,
                &format!("sluice_loader_documents_total{{op=\"{op}\"}}"),
            )
            .unwrap_or(0.0)
        };
        if docs("index") >= 90.0 && docs("delete") >= 5.0 {
            Ok(text)
        } else {
            Err(text)
        }
    })
    .await;
    // Each delete is a record and its tombstone: 50 + 30 + 10 + 2 x 5 records, all
    // acknowledged; every change committed in a transaction of its own.
    assert_eq!(
        sample(&text, "sluice_publish_records_produced_total"),
        Some(100.0)
    );
    assert_eq!(
        sample(&text, "sluice_publish_records_acknowledged_total"),
        Some(100.0)
    );
    assert!(
        sample(&text, "sluice_source_transactions_total").unwrap() >= 45.0,
        "{text}"
    );
    assert!(sample(&text, "sluice_publish_checkpoints_stored_total").unwrap() >= 1.0);
    assert!(sample(&text, "sluice_loader_bulk_requests_total").unwrap() >= 1.0);
    assert!(
        sample(
            &text,
            &format!("sluice_commit_to_indexed_seconds_count{{table=\"{table}\"}}")
        )
        .unwrap()
            >= 45.0,
        "{text}"
    );
    assert!(sample(&text, "sluice_process_resident_memory_bytes").unwrap() > 1e6);
    // Every stage timed each streamed change (the loader's stages also the snapshot rows).
    for stage in [
        "read_to_produced",
        "produced_to_acked",
        "produced_to_fetched",
        "fetched_to_sent",
        "sent_to_acked",
    ] {
        let name = format!("sluice_stage_seconds_count{{stage=\"{stage}\"}}");
        let n = sample(&text, &name).unwrap_or(0.0);
        assert!(n >= 45.0, "{name} = {n}:\n{text}");
    }
    let (status, body) = http_get(&addr, "/ready").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        early.starts_with("503") && early.contains("no partitions")
            || early.starts_with("503") && early.contains("not streaming"),
        "/ready before the loader's assignment answered {early}"
    );
    // A killed binlog connection: counted, and connected again.
    let dump = format!(
        "SELECT ID FROM information_schema.PROCESSLIST \
         WHERE USER = '{user}' AND COMMAND LIKE 'Binlog Dump%'"
    );
    let ids: Vec<u64> = conn.query(&dump).await.unwrap();
    assert!(!ids.is_empty(), "{}", sluice.output());
    for id in ids {
        conn.query_drop(format!("KILL CONNECTION {id}"))
            .await
            .unwrap();
    }
    sluice.wait_for_logs("streaming the binlog", 2, PATIENCE);
    exec(&mut conn, &["INSERT INTO t VALUES (81, 81)"]).await;
    metrics_reach(
        &addr,
        &[
            ("sluice_source_reconnects_total".into(), 1.0),
            ("sluice_source_connected".into(), 1.0),
            (rows("c"), 31.0),
        ],
    )
    .await;
    assert!(sluice.terminate(PATIENCE).success());
    conn.query_drop(format!("DROP USER '{user}'@'%'"))
        .await
        .unwrap();
}

/// Batches come from load: with the default (no linger) a change committed alone goes out in
/// a bulk of its own, and a burst goes out in few bulks that grow while one is in flight, not
/// one bulk per change. (How soon is measured by scripts/latency_bench.sh, not asserted.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickle_goes_out_alone_and_a_burst_in_few_bulks() {
    let (mut conn, setup) = fresh("it_batching", &["t"]).await;
    exec(
        &mut conn,
        &["CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)"],
    )
    .await;
    setup.write_config("");
    let mut sluice = setup.start("all");
    let addr = endpoint(&mut sluice);
    sluice.wait_for_log("streaming the binlog", PATIENCE);
    let bulks = |text: &str| sample(text, "sluice_loader_bulk_requests_total").unwrap_or(0.0);
    let indexed = async |n: f64| {
        eventually("the loader's documents", async || {
            let (_, text) = http_get(&addr, "/metrics")?;
            let docs = sample(&text, "sluice_loader_documents_total{op=\"index\"}");
            if docs.unwrap_or(0.0) >= n {
                Ok(text)
            } else {
                Err(text)
            }
        })
        .await
    };
    exec(&mut conn, &["INSERT INTO t VALUES (0, 0)"]).await;
    let before = bulks(&indexed(1.0).await);
    // Each change waits for the one before it to be indexed: nothing to batch with.
    for i in 1..=5 {
        exec(&mut conn, &[&format!("INSERT INTO t VALUES ({i}, {i})")]).await;
        indexed(1.0 + f64::from(i)).await;
    }
    let text = indexed(6.0).await;
    // A retried bulk counts twice.
    let trickle = bulks(&text) - before;
    assert!(
        (5.0..=6.0).contains(&trickle),
        "five lone changes took {trickle} bulks"
    );

    // 3,000 changes in one transaction: at most 500 to a bulk (the tests' batch_size).
    exec(
        &mut conn,
        &["INSERT INTO t SELECT seq, seq FROM seq_1000_to_3999"],
    )
    .await;
    let burst = bulks(&indexed(3006.0).await) - before - trickle;
    assert!(
        (6.0..=60.0).contains(&burst),
        "3,000 changes took {burst} bulks"
    );
    setup.assert_index_matches(&mut conn, "t", CATCH_UP).await;
    assert!(sluice.terminate(PATIENCE).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_metrics_port_is_a_named_error() {
    let (mut conn, setup) = fresh("it_metrics_port", &["t"]).await;
    exec(&mut conn, &["CREATE TABLE t (id INT PRIMARY KEY)"]).await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let config = setup.write_config("");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("listen = \"127.0.0.1:0\"", &format!("listen = \"{addr}\""));
    std::fs::write(&config, text).unwrap();
    let out = run_failing_as(&config, "source");
    assert!(
        out.contains(&format!("cannot serve metrics on {addr}")) && out.contains("metrics.listen"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line() {
    let (mut conn, setup) = fresh("it_json_logs", &["t"]).await;
    exec(&mut conn, &["CREATE TABLE t (id INT PRIMARY KEY)"]).await;
    let config = setup.write_config("");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("log_format = \"json\"\n{text}")).unwrap();
    let mut sluice = setup.start("source");
    sluice.wait_for_log("streaming the binlog", PATIENCE);
    assert!(sluice.terminate(PATIENCE).success());
    let out = sluice.output();
    let mut streaming = false;
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}\n{out}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
        streaming |= v["fields"]["message"] == "streaming the binlog";
    }
    assert!(streaming, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stored_position_advances_while_captured_tables_are_idle() {
    let (mut conn, setup) = fresh("it_idle_position", &["t"]).await;
    exec(
        &mut conn,
        &[
            "CREATE TABLE t (id INT PRIMARY KEY)",
            "CREATE TABLE other (id INT PRIMARY KEY)",
        ],
    )
    .await;
    let mut sluice = setup.start("source");
    let addr = endpoint(&mut sluice);
    sluice.wait_for_log("streaming the binlog", PATIENCE);
    // The server is busy, the captured table is not.
    for i in 1..=20 {
        exec(&mut conn, &[&format!("INSERT INTO other VALUES ({i})")]).await;
    }
    let (file, pos): (String, u64) = conn
        .query_first("SHOW MASTER STATUS")
        .await
        .unwrap()
        .map(|row: mysql_async::Row| (row.get(0).unwrap(), row.get(1).unwrap()))
        .unwrap();
    let seq = |f: &str| f.rsplit('.').next().unwrap().parse::<u64>().unwrap();
    eventually(
        "a stored position past the other table's writes",
        async || {
            let (_, text) = http_get(&addr, "/metrics")?;
            let stored_file = text
                .lines()
                .find(|l| l.starts_with("sluice_source_checkpoint_info{"))
                .and_then(|l| l.split("file=\"").nth(1)?.split('"').next())
                .map(str::to_string)
                .ok_or_else(|| text.clone())?;
            let stored_pos =
                sample(&text, "sluice_source_checkpoint_position_bytes").unwrap_or(0.0);
            if (seq(&stored_file), stored_pos as u64) >= (seq(&file), pos) {
                Ok(())
            } else {
                Err(format!(
                    "stored {stored_file}:{stored_pos}, server at {file}:{pos}"
                ))
            }
        },
    )
    .await;
    assert!(sluice.terminate(PATIENCE).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_a_running_and_a_stopped_pipeline() {
    let (mut conn, setup) = fresh("it_status", &["t"]).await;
    exec(
        &mut conn,
        &[
            "CREATE TABLE t (id INT PRIMARY KEY)",
            "INSERT INTO t SELECT seq FROM seq_1_to_20",
        ],
    )
    .await;
    let config = setup.write_config("");
    fixed_metrics_port(&config);
    let config = config.to_str().unwrap().to_string();
    let table = format!("{}.t", setup.db);
    let mut sluice = setup.start("all");
    sluice.wait_for_log("streaming the binlog", PATIENCE);
    exec(&mut conn, &["INSERT INTO t VALUES (21)"]).await;
    let out = eventually("status of the running pipeline", async || {
        let (status, out) = run_to_exit(&["status", "--config", &config], PATIENCE);
        let ok = status.success()
            && out.contains("running, ready")
            && out.contains("source: connected")
            && out.contains(&table)
            && out.contains("streaming");
        if ok { Ok(out) } else { Err(out) }
    })
    .await;
    assert!(out.contains("position: "), "{out}");
    let (status, out) = run_to_exit(&["status", "--config", &config, "--json"], PATIENCE);
    assert!(status.success(), "{out}");
    let json: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(json["running"], true, "{out}");
    let row = json["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == table.as_str())
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(row["rows_copied"], 20.0, "{out}");
    assert!(sluice.terminate(PATIENCE).success());
    // Stopped: read from the state directory.
    let (status, out) = run_to_exit(&["status", "--config", &config], PATIENCE);
    assert!(status.success(), "{out}");
    assert!(out.contains("not running"), "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with(&table))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("done"), "{out}");
    assert!(!out.contains("position: none stored"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_rises_and_ready_fails_while_the_index_server_is_stopped() {
    let (mut conn, mut setup) = fresh("it_metrics_outage", &["t"]).await;
    exec(
        &mut conn,
        &[
            "CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)",
            "INSERT INTO t SELECT seq, seq FROM seq_1_to_10",
        ],
    )
    .await;
    // Its own index server, so stopping it stalls no other test.
    let es = PrivateOsmem::start();
    setup.es_url = es.url.clone();
    let text = setup
        .config_text("")
        .replace("[loader]", "timeout_ms = 2000\n[loader]")
        .replace(
            "listen = \"127.0.0.1:0\"",
            "listen = \"127.0.0.1:0\"\nready_retry_secs = 1",
        );
    std::fs::write(setup.dir.path().join("sluice.toml"), text).unwrap();
    let mut sluice = setup.start("all");
    let addr = endpoint(&mut sluice);
    sluice.wait_for_log("streaming the binlog", PATIENCE);
    setup.assert_index_matches(&mut conn, "t", CATCH_UP).await;
    eventually("ready before the outage", async || {
        match http_get(&addr, "/ready")? {
            (200, _) => Ok(()),
            (status, body) => Err(format!("{status} {body}")),
        }
    })
    .await;
    es.signal(libc::SIGSTOP);
    for i in 11..=60 {
        exec(&mut conn, &[&format!("INSERT INTO t VALUES ({i}, {i})")]).await;
    }
    sluice.wait_for_log("index server unavailable; retrying the batch", PATIENCE);
    eventually("lag and a failing /ready during the outage", async || {
        let (_, text) = http_get(&addr, "/metrics")?;
        let lag = consumer_lag(&text);
        let retries = sample(&text, "sluice_loader_retries_total").unwrap_or(0.0);
        let (status, body) = http_get(&addr, "/ready")?;
        if lag > 0.0 && retries >= 1.0 && status == 503 && body.contains("unreachable") {
            Ok(())
        } else {
            Err(format!(
                "lag {lag}, retries {retries}, /ready {status} {body}"
            ))
        }
    })
    .await;
    es.signal(libc::SIGCONT);
    setup.assert_index_matches(&mut conn, "t", CATCH_UP).await;
    eventually("no lag and ready after the outage", async || {
        let (_, text) = http_get(&addr, "/metrics")?;
        let lag = consumer_lag(&text);
        let (status, body) = http_get(&addr, "/ready")?;
        if lag == 0.0 && status == 200 {
            Ok(())
        } else {
            Err(format!("lag {lag}, /ready {status} {body}"))
        }
    })
    .await;
    assert!(sluice.terminate(PATIENCE).success());
}
