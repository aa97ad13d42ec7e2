//! The chunked initial snapshot on the real stack: keyset chunks in the database's own key
//! order, progress stored per chunk, and a SIGKILLed snapshot continued, not restarted.

mod common;

use std::time::Duration;

use common::*;
use sluice::model::TableId;
use sluice::state::State;

const START: Duration = Duration::from_secs(60);
const CATCH_UP: Duration = Duration::from_secs(240);

/// The setup's config with `source.snapshot_chunk_rows = rows`.
fn chunked(setup: &Setup, rows: u64) {
    let text = setup
        .config_text("")
        .replace("[kafka]", &format!("snapshot_chunk_rows = {rows}\n[kafka]"));
    std::fs::write(setup.dir.path().join("sluice.toml"), text).unwrap();
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
    chunked(&setup, 50);
    let mut first = setup.start("all");
    first.wait_for_log("snapshot progress stored", START);
    first.kill9();
    let state_dir = setup.dir.path().join("state");
    let table = TableId::new(&setup.db, "t");
    let stored = {
        let state = State::open(&state_dir).unwrap();
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
    let mut second = setup.start("all");
    second.wait_for_log("snapshot: table copied", START);
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
    assert!(second.terminate(Duration::from_secs(30)).success());
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
    // Chunks of 3: every boundary falls inside a key prefix somewhere.
    chunked(&setup, 3);
    let mut sluice = setup.start("all");
    sluice.wait_for_log("streaming the binlog", START);
    for t in ["c", "s", "d"] {
        setup.assert_index_matches(&mut conn, t, CATCH_UP).await;
    }
    assert!(index_docs(&format!("{}.e", setup.db)).await.is_empty());
    let out = sluice.output();
    assert!(out.contains("rows_this_run=0"), "the empty table: {out}");
    assert!(sluice.terminate(Duration::from_secs(30)).success());
}
