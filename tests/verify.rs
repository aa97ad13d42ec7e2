//! `sluice verify` on the real stack: a table equal to its index passes, differences made
//! behind Sluice's back (direct index writes, row changes kept out of the binlog) are found
//! with their ids and columns, `--repair` fixes them, a verify under a running writer finds
//! none, a column added with a default shows on unchanged rows, a few refused reads are
//! waited out, and an interrupted verify continues where it stopped.

mod common;

use std::process::{Command, Stdio};

use common::*;
use mysql_async::prelude::*;
use serde_json::{Value as Json, json};

/// A table of 400 rows streamed into its index by a running pipeline whose metrics endpoint
/// verify can ask; the signal table exists for repairs.
async fn streamed(name: &str) -> (mysql_async::Conn, Setup, String, Sluice) {
    let (mut conn, setup) = fresh(name, &["t"]).await;
    exec(
        &mut conn,
        &[
            "CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(40), qty INT, price DECIMAL(10,2), \
             at DATETIME(3), score DOUBLE)",
            "INSERT INTO t SELECT seq, CONCAT('n', seq), seq % 7, seq / 3, \
             '2026-01-02 03:04:05.678' + INTERVAL seq MINUTE, seq / 7 FROM seq_1_to_400",
        ],
    )
    .await;
    let config = setup.write_config("");
    fixed_metrics_port(&config);
    setup.signal_table(&mut conn, &config).await;
    let mut sluice = setup.start("all");
    sluice.wait_for_log("partitions assigned", PATIENCE);
    setup.assert_index_matches(&mut conn, "t", PATIENCE).await;
    let config = config.to_str().unwrap().to_string();
    (conn, setup, config, sluice)
}

/// `sluice verify` with `args`: exit code and output.
fn verify(config: &str, args: &[&str]) -> (i32, String) {
    let mut all = vec!["verify", "--config", config];
    all.extend_from_slice(args);
    let (status, out) = run_to_exit(&all, CATCH_UP);
    (status.code().unwrap_or(-1), out)
}

/// The difference lines of a verify output, as `kind id`.
fn differences(out: &str) -> Vec<String> {
    let mut lines: Vec<String> = out
        .lines()
        .filter(|l| l.contains("\tid="))
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            format!("{} {}", f[0], f[2].trim_start_matches("id="))
        })
        .collect();
    lines.sort();
    lines
}

async fn es(method: reqwest::Method, path: &str, body: Option<Json>) -> Json {
    let url = format!("{}{path}", stack().es_url);
    let mut request = reqwest::Client::new().request(method, url);
    if let Some(b) = body {
        request = request.json(&b);
    }
    request.send().await.unwrap().json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_what_changed_behind_sluices_back_and_repair_fixes_it() {
    let (mut conn, setup, config, mut sluice) = streamed("it_verify").await;
    let index = format!("{}.t", setup.db);

    let (code, out) = verify(&config, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("400 rows compared, 400 documents scanned; 0 missing, 0 different, 0 extra"),
        "{out}"
    );

    // Behind Sluice's back, in the index...
    es(
        reqwest::Method::DELETE,
        &format!("/{index}/_doc/5?refresh=true"),
        None,
    )
    .await;
    let mut six =
        es(reqwest::Method::GET, &format!("/{index}/_doc/6"), None).await["_source"].clone();
    six["name"] = json!("changed in the index");
    es(
        reqwest::Method::PUT,
        &format!("/{index}/_doc/6?refresh=true"),
        Some(six),
    )
    .await;
    es(
        reqwest::Method::PUT,
        &format!("/{index}/_doc/100000?refresh=true"),
        Some(json!({"id": 100000, "name": "no such row"})),
    )
    .await;
    // ...and in the table, outside the binlog.
    exec(
        &mut conn,
        &[
            "SET SESSION sql_log_bin = 0",
            "UPDATE t SET qty = 99, score = 0.5 WHERE id = 7",
            "INSERT INTO t VALUES (5000, 'unlogged', 1, 1.5, NULL, NULL)",
            "DELETE FROM t WHERE id = 8",
            "SET SESSION sql_log_bin = 1",
        ],
    )
    .await;
    let found = [
        "different 6",
        "different 7",
        "extra 100000",
        "extra 8",
        "missing 5",
        "missing 5000",
    ];
    let (code, out) = verify(&config, &[]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(differences(&out), found, "{out}");
    assert!(out.contains("id=7\tcolumns: qty, score"), "{out}");
    assert!(
        out.contains("2 missing, 2 different, 2 extra, 0 unsettled"),
        "{out}"
    );

    let (code, out) = verify(&config, &["--json"]);
    assert_eq!(code, 1, "{out}");
    // The report is stdout; the log lines before it are stderr.
    let json = &out[out.find("\n{").unwrap_or_else(|| panic!("{out}"))..];
    let report: Json = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {out}"));
    let t = &report["tables"][0];
    assert_eq!(
        (
            t["missing"].as_u64(),
            t["different"].as_u64(),
            t["extra"].as_u64()
        ),
        (Some(2), Some(2), Some(2)),
        "{out}"
    );

    // --where limits the rows compared, and does not look for documents without rows.
    let (code, out) = verify(&config, &["--where", "id < 7"]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(differences(&out), ["different 6", "missing 5"], "{out}");
    assert!(out.contains("index not scanned (--where)"), "{out}");

    let (code, out) = verify(&config, &["--repair"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("repair: 4 rows re-read through the pipeline, 2 documents deleted"),
        "{out}"
    );
    eventually(
        "a verify without differences after the repair",
        async || match verify(&config, &[]) {
            (0, _) => Ok(()),
            (_, out) => Err(out),
        },
    )
    .await;
    setup.assert_index_matches(&mut conn, "t", PATIENCE).await;

    // Under continuous writes through the binlog there is no false difference.
    let pool = admin_pool();
    let db = setup.db.clone();
    let writer = Writer::spawn(|writes| async move {
        let mut conn = pool.get_conn().await.unwrap();
        conn.query_drop(format!("USE `{db}`")).await.unwrap();
        let mut next_id = 10_000;
        while writes.go_on() {
            let id = fastrand::i64(1..=400);
            conn.query_drop(format!(
                "UPDATE t SET qty = qty + 1, name = CONCAT(LEFT(name, 30), 'x') WHERE id = {id}"
            ))
            .await
            .unwrap();
            conn.query_drop(format!(
                "INSERT INTO t (id, name) VALUES ({next_id}, 'new')"
            ))
            .await
            .unwrap();
            conn.query_drop(format!("DELETE FROM t WHERE id = {}", next_id - 3))
                .await
                .unwrap();
            next_id += 1;
            writes.count();
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    });
    writer.wait_more(20).await;
    let (code, out) = verify(&config, &[]);
    writer.wait_more(5).await;
    let writes = writer.stop().await;
    assert_eq!(code, 0, "{writes} writes; {out}");

    // A column added with a default is on every row, in no unchanged document: verify names it
    // (resnapshot_on_add_column is off), and a repair brings it.
    exec(
        &mut conn,
        &["ALTER TABLE t ADD COLUMN flag INT NULL DEFAULT 7"],
    )
    .await;
    let (code, out) = verify(&config, &["--repair"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("columns: flag"), "{out}");
    eventually(
        "every document has the added column",
        async || match verify(&config, &[]) {
            (0, _) => Ok(()),
            (_, out) => Err(out),
        },
    )
    .await;
    assert!(sluice.terminate(PATIENCE).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_waits_out_an_index_server_that_refuses_a_few_reads() {
    let (_conn, setup, config, mut sluice) = streamed("it_verify_busy").await;
    // Verify reaches the index server through a proxy that answers its first two reads of
    // the table's documents with 429, as a busy server does.
    let refuse = setup.dir.path().join("refuse");
    std::fs::write(&refuse, format!("{}.t 2", setup.db)).unwrap();
    let proxy = TlsProxy::start_with(setup.dir.path(), &stack().es_url, None, Some(&refuse));
    let via = setup.dir.path().join("verify-via-proxy.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&via, es_via(&text, &proxy, "")).unwrap();
    let (code, out) = verify(via.to_str().unwrap(), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("400 rows compared"), "{out}");
    assert_eq!(
        out.matches("the index server failed a request; trying it again")
            .count(),
        2,
        "{out}"
    );
    assert!(out.contains("HTTP 429"), "{out}");
    assert!(sluice.terminate(PATIENCE).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_verify_continues_where_it_stopped() {
    let (_conn, _setup, config, mut sluice) = streamed("it_verify_resume").await;
    // 400 rows at 100 rows/s in chunks of 50: paced to ~4 s, interrupted during it.
    let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "verify",
            "--config",
            &config,
            "--max-rows-per-sec",
            "100",
            "--chunk-rows",
            "50",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // SAFETY: signalling a child process this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("run the same command again to continue"),
        "{text}"
    );
    let (code, out) = verify(&config, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("400 rows compared") && out.contains(", resumed)"),
        "{out}"
    );
    assert!(sluice.terminate(PATIENCE).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_applies_the_pipelines_column_rules_mapping_options_and_index_names() {
    let (mut conn, setup) = fresh("it_verify_rules", &["r"]).await;
    let db = setup.db.clone();
    exec(
        &mut conn,
        &[
            "CREATE TABLE r (tenant VARCHAR(10), id INT, flag TINYINT, doc LONGTEXT, \
             email VARCHAR(50), phone VARCHAR(20), secret VARCHAR(10), price DECIMAL(8,3), \
             at TIMESTAMP(6) NULL, PRIMARY KEY (tenant, id))",
            "INSERT INTO r SELECT IF(seq % 2, 'a', 'B'), seq, seq % 2, \
             CONCAT('{\"n\": ', seq, ', \"tags\": [\"x\", null]}'), CONCAT('u', seq, '@x.org'), \
             '555-0100', 's', seq / 8, '2026-03-04 05:06:07.123456' FROM seq_1_to_300",
        ],
    )
    .await;
    let config = setup.write_config(&format!(
        r#"index = "v-{{table}}"
alias = "va-{{table}}"
[loader.mapping]
json_columns = ["{db}.r.doc"]
booleans = ["{db}.r.flag"]
decimals = "double"
[columns]
exclude = ["{db}.r.secret"]
hash = ["{db}.r.email"]
hash_salt = "pepper"
mask = ["{db}.r.phone"]
"#
    ));
    fixed_metrics_port(&config);
    let config = config.to_str().unwrap().to_string();
    let mut sluice = setup.start("all");
    sluice.wait_for_log("partitions assigned", PATIENCE);
    exec(
        &mut conn,
        &["UPDATE r SET flag = 1 - flag, price = price + 1 WHERE id <= 20"],
    )
    .await;
    let (code, out) = eventually("the index caught up", async || match verify(&config, &[]) {
        (0, out) => Ok((0, out)),
        other => Err(format!("{other:?}")),
    })
    .await;
    assert_eq!(code, 0);
    assert!(
        out.contains("300 rows compared, 300 documents scanned; 0 missing"),
        "{out}"
    );
    assert!(out.contains(&format!("{db}.r:")), "{out}");
    let doc = es(reqwest::Method::GET, "/v-r/_doc/[\"a\",1]", None).await;
    assert_eq!(doc["_source"]["flag"], json!(false), "{doc}");

    // An excluded column changes nothing; the others show by name.
    exec(
        &mut conn,
        &[
            "SET SESSION sql_log_bin = 0",
            "UPDATE r SET secret = 'changed' WHERE id = 3",
            "UPDATE r SET doc = '{\"n\": 0}', email = 'other@x.org', flag = 1 - flag WHERE id = 4",
            "SET SESSION sql_log_bin = 1",
        ],
    )
    .await;
    let (code, out) = verify(&config, &["--table", &format!("{db}.r")]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(differences(&out), ["different [\"B\",4]"], "{out}");
    assert!(out.contains("columns: doc, email, flag"), "{out}");
    let (code, out) = verify(&config, &["--table", &format!("{db}.nope")]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("is not captured by this config"), "{out}");
    assert!(sluice.terminate(PATIENCE).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_shared_by_two_tables_is_not_scanned_for_extras() {
    let (mut conn, mut setup) = fresh("it_verify_shared", &["a"]).await;
    // The same table name in a second database: `index = "{table}-..."` gives both one index.
    let other = format!("{}_2", setup.db);
    exec(
        &mut conn,
        &[
            &format!("DROP DATABASE IF EXISTS `{other}`"),
            &format!("CREATE DATABASE `{other}`"),
            "CREATE TABLE a (id INT PRIMARY KEY, v INT)",
            "INSERT INTO a SELECT seq, seq FROM seq_1_to_10",
            &format!("CREATE TABLE `{other}`.a (id INT PRIMARY KEY, v INT)"),
            &format!("INSERT INTO `{other}`.a SELECT seq, seq FROM seq_101_to_110"),
        ],
    )
    .await;
    setup.tables.push(format!("{other}.a"));
    let index = format!("{}-shared", setup.prefix).to_lowercase();
    let config = setup.write_config(&format!("index = \"{{table}}-{index}\""));
    fixed_metrics_port(&config);
    let config = config.to_str().unwrap().to_string();
    let index = format!("a-{index}");
    let mut sluice = setup.start("all");
    sluice.wait_for_log("partitions assigned", PATIENCE);
    eventually("both tables indexed", async || {
        match index_count(&index).await {
            20 => Ok(()),
            n => Err(format!("{n} documents")),
        }
    })
    .await;
    let (code, out) = verify(&config, &["--repair"]);
    assert_eq!(code, 0, "{out}");
    let not_scanned =
        format!("index not scanned ({index} holds the documents of other tables too)");
    assert_eq!(out.matches(&not_scanned).count(), 2, "{out}");
    assert_eq!(index_count(&index).await, 20, "repair deleted nothing");
    assert!(sluice.terminate(PATIENCE).success());
    exec(&mut conn, &[&format!("DROP DATABASE `{other}`")]).await;
}
