//! Snapshots on the real stack: the chunked initial snapshot (keyset chunks in the database's
//! own key order, progress stored per chunk, a SIGKILLed snapshot continued, not restarted),
//! and incremental snapshots in watermarked windows while the stream goes on.

mod common;

use std::time::Duration;

use common::*;
use mysql_async::Conn;
use mysql_async::prelude::*;
use sluice::model::TableId;
use sluice::positions::PositionStore;

/// The setup's config with `source.snapshot_chunk_rows = rows`; returns its path.
fn chunked(setup: &Setup, rows: u64) -> std::path::PathBuf {
    paced(setup, rows, 0)
}

/// The setup's config with `source.snapshot_chunk_rows = rows` and
/// `source.snapshot_max_rows_per_sec = per_sec`; returns its path. A test that must act while
/// a snapshot runs paces it, so the snapshot outlasts the test's reaction on any machine.
fn paced(setup: &Setup, rows: u64, per_sec: u64) -> std::path::PathBuf {
    setup.write_config_with_source(&format!(
        "snapshot_chunk_rows = {rows}\nsnapshot_max_rows_per_sec = {per_sec}"
    ))
}

/// Tables `(id INT PRIMARY KEY, v INT NOT NULL, s VARCHAR(30))` with ids 1..=rows.
async fn numbered(conn: &mut Conn, tables: &[(&str, u32)]) {
    for (t, rows) in tables {
        exec(
            conn,
            &[
                &format!("CREATE TABLE {t} (id INT PRIMARY KEY, v INT NOT NULL, s VARCHAR(30))"),
                &format!(
                    "INSERT INTO {t} SELECT seq, seq % 10, CONCAT('row ', seq) FROM seq_1_to_{rows}"
                ),
            ],
        )
        .await;
    }
}

/// A fresh database with three `numbered` tables `a`, `b`, `c` of `rows` rows each.
async fn three_tables(name: &str, rows: u32) -> ([&'static str; 3], Conn, Setup) {
    let tables = ["a", "b", "c"];
    let (mut conn, setup) = fresh(name, &tables).await;
    numbered(&mut conn, &[("a", rows), ("b", rows), ("c", rows)]).await;
    (tables, conn, setup)
}

/// Changes rows the binlog never shows (`sql_log_bin = 0`): only a snapshot brings them.
async fn behind_the_binlogs_back(conn: &mut Conn, sql: &[&str]) {
    exec(conn, &["SET SESSION sql_log_bin = 0"]).await;
    exec(conn, sql).await;
    exec(conn, &["SET SESSION sql_log_bin = 1"]).await;
}

/// Changes rows `1..max_id` of `tables` (of `numbered` shape, in database `db`) at random
/// until stopped, `pause` between changes: updates, inserts, primary-key updates, deletes and
/// range updates, each its own transaction.
fn writer(db: String, tables: Vec<&'static str>, max_id: u32, pause: Duration) -> Writer {
    Writer::spawn(|writes| async move {
        let mut conn = admin_pool().get_conn().await.unwrap();
        conn.query_drop(format!("USE `{db}`")).await.unwrap();
        let mut next = 1_000_000u32;
        while writes.go_on() {
            let t = tables[fastrand::usize(..tables.len())];
            let id = fastrand::u32(1..max_id);
            next += 1;
            let sql = match fastrand::u8(..10) {
                0..=3 => format!("UPDATE {t} SET v = v + 1, s = 'w{next}' WHERE id = {id}"),
                4 | 5 => format!("INSERT INTO {t} VALUES ({next}, 1, 'new')"),
                6 => format!("UPDATE {t} SET id = {next} WHERE id = {id}"),
                7 => format!("DELETE FROM {t} WHERE id = {id}"),
                _ => format!("UPDATE {t} SET v = v + 1 WHERE id BETWEEN {id} AND {id} + 5"),
            };
            conn.query_drop(&sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            writes.count();
            tokio::time::sleep(pause).await;
        }
    })
}

/// The windows the first finished incremental snapshot in `out` took.
fn windows_done(out: &str) -> u64 {
    out.lines()
        .find(|l| l.contains("incremental snapshot done"))
        .and_then(|l| l.split("windows=").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .unwrap_or_else(|| panic!("no finished incremental snapshot: {out}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_snapshot_continues_after_its_last_stored_chunk_and_ends_exact() {
    let (mut conn, setup) = fresh("it_snap_kill", &["t"]).await;
    exec(
        &mut conn,
        &[
            "CREATE TABLE t (id INT PRIMARY KEY, n INT NOT NULL, s VARCHAR(20))",
            // 9,000 rows (the harness reads indexes of up to 10,000 documents).
            "INSERT INTO t SELECT seq, seq % 7, CONCAT('row ', seq) FROM seq_1_to_9000",
        ],
    )
    .await;
    // Paced to 300 rows/s, the copy takes 30 s: the kill after the first stored chunk (and
    // the loader's assignment, which the harness waits for) lands mid-snapshot however fast
    // the machine (asserted below from the stored state).
    paced(&setup, 50, 300);
    let mut first = setup.start("all");
    first.wait_for_log("snapshot progress stored", PATIENCE);
    first.kill9();
    let state_dir = setup.dir.path().join("state");
    let table = TableId::new(&setup.db, "t");
    let stored = {
        let state = PositionStore::open(&state_dir).unwrap();
        assert!(
            !state.is_snapshotted(&table).unwrap(),
            "the snapshot finished before the kill"
        );
        state.progress(&table).unwrap().expect("progress stored")
    };
    assert!(stored.rows > 0 && stored.rows < 9000, "{stored:?}");
    assert_eq!(stored.rows, stored.chunks * 50);
    // Changes while Sluice is down, inside and outside the part already copied.
    exec(
        &mut conn,
        &[
            "UPDATE t SET n = n + 100 WHERE id % 97 = 0",
            "DELETE FROM t WHERE id % 1000 = 1",
            "INSERT INTO t VALUES (9001, 1, 'new'), (9002, 2, 'new')",
        ],
    )
    .await;
    chunked(&setup, 50);
    let mut second = setup.start("all");
    second.wait_for_log("snapshot: table copied", PATIENCE);
    let out = second.output();
    assert!(
        out.contains(&format!("resuming_after_rows={}", stored.rows)),
        "{out}"
    );
    let total_chunks = 9002 / 50 + 1;
    let line = out
        .lines()
        .find(|l| l.contains("snapshot: table copied"))
        .unwrap();
    let chunks_here: u64 = line
        .split("chunks_this_run=")
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        chunks_here + stored.chunks <= total_chunks && chunks_here < total_chunks,
        "{chunks_here} chunks read again after {} stored: {line}",
        stored.chunks
    );
    exec(&mut conn, &["UPDATE t SET s = 'after' WHERE id % 500 = 0"]).await;
    setup.assert_index_matches(&mut conn, "t", CATCH_UP).await;
    assert!(second.terminate(PATIENCE).success());
}

/// Three tables copied two at a time, each connection at a consistent point of its own,
/// while a writer changes all three; killed once progress is stored, then continued: every
/// index ends equal to its table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_copied_in_parallel_under_writes_and_a_kill_end_exact() {
    let (tables, mut conn, setup) = three_tables("it_snap_par", 3000).await;
    let load = writer(
        setup.db.clone(),
        tables.to_vec(),
        3000,
        Duration::from_millis(20),
    );
    load.wait_more(10).await;
    // 600 rows/s over both connections: the copy takes 15 s, so the kill lands in it.
    setup.write_config_with_source(
        "snapshot_chunk_rows = 100\nsnapshot_max_rows_per_sec = 600\nsnapshot_parallelism = 2",
    );
    let mut first = setup.start("all");
    first.wait_for_logs("snapshot: copying table", 2, PATIENCE);
    first.wait_for_log("snapshot progress stored", PATIENCE);
    first.kill9();
    let out = first.output();
    let second_start = out
        .match_indices("snapshot: copying table")
        .nth(1)
        .unwrap()
        .0;
    let first_end = out.find("snapshot: table copied").unwrap_or(out.len());
    assert!(
        second_start < first_end,
        "the tables were copied one at a time:\n{out}"
    );
    let state = PositionStore::open(&setup.dir.path().join("state")).unwrap();
    let ids: Vec<TableId> = tables.iter().map(|t| TableId::new(&setup.db, *t)).collect();
    let started = ids.iter().filter(|t| state.progress(t).unwrap().is_some());
    assert!(started.count() >= 1, "no progress stored before the kill");
    assert!(
        !ids.iter().all(|t| state.is_snapshotted(t).unwrap()),
        "the snapshot finished before the kill"
    );
    drop(state);

    setup.write_config_with_source("snapshot_chunk_rows = 100\nsnapshot_parallelism = 2");
    let mut second = setup.start("all");
    second.wait_for_log("snapshot stored", PATIENCE);
    load.wait_more(50).await;
    load.stop().await;
    for t in tables {
        setup.assert_index_matches(&mut conn, t, CATCH_UP).await;
    }
    assert!(second.terminate(PATIENCE).success());
}

/// A user the server allows two connections, with three copiers asked for: the snapshot
/// goes on over the two it got, says so, and ends exact; streaming connects afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copiers_beyond_the_users_connection_limit_are_left_out_with_a_warning() {
    let (tables, mut conn, setup) = three_tables("it_snap_limit", 300).await;
    let user = cdc_user(&mut conn, "WITH MAX_USER_CONNECTIONS 2").await;
    let path = setup.write_config_as(&user, "pw", "");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replace("[kafka]", "snapshot_parallelism = 3\n[kafka]");
    std::fs::write(&path, text).unwrap();
    let mut sluice = setup.start("all");
    sluice.wait_for_log("streaming the binlog", PATIENCE);
    exec(&mut conn, &["UPDATE a SET v = v + 1 WHERE id % 7 = 0"]).await;
    for t in tables {
        setup.assert_index_matches(&mut conn, t, CATCH_UP).await;
    }
    let out = sluice.output();
    assert!(
        out.contains("no further connection for copying tables at once")
            && out.contains("copying_at_once=2"),
        "{out}"
    );
    assert!(sluice.terminate(PATIENCE).success(), "{}", sluice.output());
    exec(&mut conn, &[&format!("DROP USER '{user}'@'%'")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100k_row_snapshot_under_concurrent_writes_ends_exact() {
    let (mut conn, setup) = fresh("it_snap_100k", &["t"]).await;
    numbered(&mut conn, &[("t", 100_000)]).await;
    // At most 25,000 rows/s: the copy lasts at least 4 s however fast the machine, so the
    // writer, started first, changes rows all through it.
    paced(&setup, 5000, 25_000);
    // The writer is paced: osmem's updates of existing documents slow down with the index's
    // size (about 50/s in a 100,000-document index), and the index must catch up within the
    // test.
    let load = writer(
        setup.db.clone(),
        vec!["t"],
        100_000,
        Duration::from_millis(10),
    );
    load.wait_more(20).await;
    let mut sluice = setup.start("all");
    sluice.wait_for_log("snapshot: copying table", PATIENCE);
    let at_start = load.done();
    sluice.wait_for_log("snapshot stored", PATIENCE);
    let during = load.done() - at_start;
    assert!(during > 0, "no write while the snapshot ran");
    // And some after it, streamed.
    load.wait_more(100).await;
    load.stop().await;
    setup
        .assert_index_matches(&mut conn, "t", Duration::from_secs(600))
        .await;
    assert!(sluice.terminate(PATIENCE).success());
    delete_index(&format!("{}.t", setup.db)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composite_and_collated_string_keys_and_empty_tables_snapshot_exactly() {
    let (mut conn, setup) = fresh("it_snap_keys", &["c", "s", "e", "d"]).await;
    exec(
        &mut conn,
        &[
            "CREATE TABLE c (a INT, b VARCHAR(10) COLLATE utf8mb4_general_ci, v INT, \
             PRIMARY KEY (a, b))",
            "INSERT INTO c VALUES (1, 'b', 1), (1, 'A', 2), (1, 'C', 3), (2, 'a', 4), \
             (-1, 'z', 5), (2, 'B', 7), (3, '', 8)",
            // Case- and accent-insensitive order differs from byte order.
            "CREATE TABLE s (k VARCHAR(20) COLLATE utf8mb4_unicode_ci PRIMARY KEY, v INT)",
            "INSERT INTO s VALUES ('apple', 1), ('Banana', 2), ('cherry', 3), ('Äpfel', 4), \
             ('zebra', 5), ('Zulu', 6), ('éclair', 7), ('ecl', 8), ('Ecm', 9), ('1', 10)",
            "CREATE TABLE e (id INT PRIMARY KEY)",
            "CREATE TABLE d (day DATE, at DATETIME(6), PRIMARY KEY (day, at))",
            "INSERT INTO d VALUES ('2024-01-01', '2024-01-01 00:00:00.000001'), \
             ('2024-01-01', '2024-01-01 00:00:00'), ('1999-12-31', '2030-01-01 12:00:00.5'), \
             ('2024-02-29', '2024-02-29 23:59:59.999999')",
        ],
    )
    .await;
    // Chunks of 3: every boundary falls inside a key prefix somewhere. Three tables at once.
    setup.write_config_with_source("snapshot_chunk_rows = 3\nsnapshot_parallelism = 3");
    let mut sluice = setup.start("all");
    sluice.wait_for_log("streaming the binlog", PATIENCE);
    for t in ["c", "s", "d"] {
        setup.assert_index_matches(&mut conn, t, CATCH_UP).await;
    }
    assert!(index_docs(&format!("{}.e", setup.db)).await.is_empty());
    let out = sluice.output();
    assert!(out.contains("rows_this_run=0"), "the empty table: {out}");
    assert!(sluice.terminate(PATIENCE).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_snapshot_runs_while_another_table_streams_under_load() {
    let (mut conn, setup) = fresh("it_incr", &["a", "b"]).await;
    numbered(&mut conn, &[("a", 1000), ("b", 3000)]).await;
    let config = paced(&setup, 100, 700);
    setup.signal_table(&mut conn, &config).await;
    let mut sluice = setup.start("all");
    sluice.wait_for_log("snapshot stored", PATIENCE);
    // The index cannot know these until a snapshot reads them.
    behind_the_binlogs_back(
        &mut conn,
        &[
            "INSERT INTO b SELECT seq, 7, 'hidden' FROM seq_3001_to_3500",
            "UPDATE b SET s = 'hidden' WHERE id % 7 = 0",
        ],
    )
    .await;
    let load = writer(setup.db.clone(), vec!["a", "b"], 4000, Duration::ZERO);
    load.wait_more(50).await;
    let (status, out) = run_to_exit(
        &[
            "snapshot",
            "--config",
            config.to_str().unwrap(),
            "--table",
            &format!("{}.b", setup.db),
        ],
        PATIENCE,
    );
    assert!(status.success(), "{out}");
    let at_request = load.done();
    sluice.wait_for_log("incremental snapshot done", CATCH_UP);
    // The windows are paced (700 rows/s: at least 5 s for 3,500 rows), so the writer changed
    // rows while they were read.
    assert!(load.done() > at_request, "no write while the windows ran");
    load.wait_more(50).await;
    load.stop().await;
    setup.assert_index_matches(&mut conn, "a", CATCH_UP).await;
    setup.assert_index_matches(&mut conn, "b", CATCH_UP).await;
    // Watermarks are read from the binlog but never published.
    assert_eq!(topic_records(&setup.topic("sluice_signal")), 0);
    let out = sluice.output();
    assert!(out.contains("incremental snapshot requested"), "{out}");
    // 3,500 rows in windows of 100: at least 35 windows.
    let windows = windows_done(&out);
    assert!(windows >= 35, "{windows} windows");
    assert!(sluice.terminate(PATIENCE).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_added_to_the_config_and_a_sql_signal_snapshot_while_streaming() {
    let (mut conn, mut setup) = fresh("it_incr_added", &["a"]).await;
    numbered(&mut conn, &[("a", 500), ("c", 1500)]).await;
    let config = chunked(&setup, 200);
    setup.signal_table(&mut conn, &config).await;
    let mut first = setup.start("all");
    first.wait_for_log("snapshot stored", PATIENCE);
    assert!(first.terminate(PATIENCE).success());
    // c joins the config while both tables change. Windows of 100 paced to 50 rows/s: the
    // copy takes 30 s and each window is stored on its own (the acker gathers checkpoints for
    // 100 ms), so the kill after the first stored window (and the loader's assignment, which
    // the harness waits for) lands mid-copy on any machine.
    setup.tables.push(format!("{}.c", setup.db));
    paced(&setup, 100, 50);
    let load = writer(setup.db.clone(), vec!["a", "c"], 2000, Duration::ZERO);
    let mut second = setup.start("all");
    second.wait_for_log("incremental snapshot progress stored", CATCH_UP);
    second.kill9();
    let out = second.output();
    assert!(
        out.contains("snapshotting the table in windows while streaming")
            && out.contains("first_run=false"),
        "{out}"
    );
    assert!(
        !out.contains("snapshot: table copied"),
        "streaming paused: {out}"
    );
    let stored = {
        let state = PositionStore::open(&setup.dir.path().join("state")).unwrap();
        let windows = state.windows().unwrap();
        assert_eq!(windows.len(), 1, "{windows:?}");
        windows[0].1.clone()
    };
    assert!(stored.rows > 0, "{stored:?}");
    // The third run continues after the last stored window.
    chunked(&setup, 100);
    let mut second = setup.start("all");
    second.wait_for_log("incremental snapshot done", CATCH_UP);
    load.wait_more(20).await;
    load.stop().await;
    let out = second.output();
    assert!(
        out.contains(&format!("resuming_after_rows={}", stored.rows)),
        "{out}"
    );
    setup.assert_index_matches(&mut conn, "a", CATCH_UP).await;
    setup.assert_index_matches(&mut conn, "c", CATCH_UP).await;
    // A signal row written by any SQL client, with a condition: only matching rows are read.
    behind_the_binlogs_back(&mut conn, &["UPDATE c SET s = 'hidden'"]).await;
    let signal = format!(
        "INSERT INTO sluice_signal (id, type, data) VALUES ('by-sql', 'execute-snapshot', \
         '{{\"data-collections\": [\"{db}.c\"], \"additional-conditions\": \
         [{{\"data-collection\": \"{db}.c\", \"filter\": \"id <= 700\"}}]}}')",
        db = setup.db
    );
    let before = index_docs(&format!("{}.c", setup.db)).await;
    exec(&mut conn, &[&signal]).await;
    second.wait_for_logs("incremental snapshot done", 2, CATCH_UP);
    let fresh_rows = expected_docs(&mut conn, &setup.db, "c").await;
    setup
        .assert_index_holds("c", CATCH_UP, async || {
            // Rows over 700 keep what the index had.
            let mut want = fresh_rows.clone();
            for (id, doc) in want.iter_mut() {
                if id.parse::<u32>().unwrap() > 700 {
                    *doc = before[id].clone();
                }
            }
            want
        })
        .await;
    assert!(second.terminate(PATIENCE).success());
    let state = PositionStore::open(&setup.dir.path().join("state")).unwrap();
    assert!(state.is_snapshotted(&TableId::new(&setup.db, "c")).unwrap());
    assert!(state.windows().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_run_can_copy_in_windows_while_streaming_from_the_current_position() {
    let (mut conn, setup) = fresh("it_incr_first", &["t"]).await;
    numbered(&mut conn, &[("t", 2000)]).await;
    let config = setup
        .write_config_with_source("snapshot_chunk_rows = 150\ninitial_snapshot = \"incremental\"");
    // Without the signal table there are no windows: a clear refusal.
    let out = run_failing_as(&config, "source");
    assert!(
        out.contains("needs the signal table") && out.contains("sluice setup"),
        "{out}"
    );
    setup.signal_table(&mut conn, &config).await;
    let load = writer(setup.db.clone(), vec!["t"], 2000, Duration::ZERO);
    let mut sluice = setup.start("all");
    sluice.wait_for_log("incremental snapshot done", CATCH_UP);
    load.wait_more(20).await;
    load.stop().await;
    setup.assert_index_matches(&mut conn, "t", CATCH_UP).await;
    let out = sluice.output();
    assert!(out.contains("first_run=true"), "{out}");
    assert!(
        !out.contains("snapshot stored: every row"),
        "a consistent snapshot ran: {out}"
    );
    assert!(sluice.terminate(PATIENCE).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_of_wide_rows_ends_at_its_byte_bound_before_its_row_limit() {
    // 40 rows of 600,000 bytes, 24 MB: more than a window holds (16 MiB), though far fewer
    // rows than its limit (10,000).
    let (mut conn, setup) = fresh("it_incr_wide", &["w"]).await;
    exec(
        &mut conn,
        &[
            "CREATE TABLE w (id INT PRIMARY KEY, body MEDIUMTEXT NOT NULL)",
            "INSERT INTO w SELECT seq, REPEAT(CHAR(96 + seq % 26), 600000) FROM seq_1_to_40",
        ],
    )
    .await;
    let config = setup.write_config_with_source("initial_snapshot = \"incremental\"");
    setup.signal_table(&mut conn, &config).await;
    let mut sluice = setup.start("all");
    sluice.wait_for_log("incremental snapshot done", CATCH_UP);
    setup.assert_index_matches(&mut conn, "w", CATCH_UP).await;
    let out = sluice.output();
    let windows = windows_done(&out);
    assert_eq!(windows, 2, "{out}");
    assert!(sluice.terminate(PATIENCE).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_column_reaches_every_document_with_resnapshot_on_add_column() {
    let (mut conn, setup) = fresh("it_add_column", &["t"]).await;
    numbered(&mut conn, &[("t", 300)]).await;
    let config = setup
        .write_config_with_source("snapshot_chunk_rows = 100\nresnapshot_on_add_column = true");
    setup.signal_table(&mut conn, &config).await;
    let mut sluice = setup.start("all");
    sluice.wait_for_log("streaming the binlog", PATIENCE);
    setup.assert_index_matches(&mut conn, "t", CATCH_UP).await;
    // No row changes after the ALTER: only the re-snapshot can give the documents `c`.
    exec(&mut conn, &["ALTER TABLE t ADD COLUMN c INT DEFAULT 7"]).await;
    sluice.wait_for_log("incremental snapshot done", CATCH_UP);
    setup.assert_index_matches(&mut conn, "t", CATCH_UP).await;
    let docs = index_docs(&format!("{}.t", setup.db)).await;
    assert!(docs.values().all(|d| d["c"] == 7), "{docs:?}");
    assert!(sluice.terminate(PATIENCE).success());
}

/// An index that lost documents while a copy of its table runs (here: emptied after the
/// copy's first windows) gets them back from a second request: it restarts the copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_requested_while_one_runs_starts_over_and_restores_what_the_index_lost() {
    let (mut conn, setup) = fresh("it_copy_again", &["t"]).await;
    numbered(&mut conn, &[("t", 400)]).await;
    let config = paced(&setup, 50, 50);
    setup.signal_table(&mut conn, &config).await;
    let mut sluice = setup.start("all");
    sluice.wait_for_log("streaming the binlog", PATIENCE);
    setup.assert_index_matches(&mut conn, "t", CATCH_UP).await;

    let table = format!("{}.t", setup.db);
    request_snapshot(&config, &table);
    sluice.wait_for_logs("incremental snapshot progress stored", 2, CATCH_UP);
    // Documents lost behind Sluice's back while the copy runs: those of rows it already
    // copied come back only from the second request.
    let index = table.to_lowercase();
    let deleted = reqwest::Client::new()
        .post(format!(
            "{}/{index}/_delete_by_query?refresh=true",
            setup.es_url
        ))
        .json(&serde_json::json!({"query": {"match_all": {}}}))
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success());
    request_snapshot(&config, &table);
    sluice.wait_for_log("restarted from the first key", PATIENCE);
    sluice.wait_for_log("starting over at the first key", CATCH_UP);
    sluice.wait_for_log("incremental snapshot done", CATCH_UP);
    setup.assert_index_matches(&mut conn, "t", CATCH_UP).await;
    assert!(sluice.terminate(PATIENCE).success());
}
