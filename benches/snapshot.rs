//! Snapshot throughput, end to end (not criterion: one run takes minutes): a 2,000,000-row,
//! 9-column table in the stack's MariaDB, read by a raw `SELECT *` with mysql_async (binary
//! protocol, every value typed, nothing else done), then snapshotted by `sluice run --role
//! source` until every row is acknowledged, into tansu `null://` (the fastest honest sink:
//! the stage is measured against its own limit, not the broker's) and into a private SQLite
//! tansu like the stack's (reported beside it); peak RSS and CPU by thread of the sluice
//! process from /proc.
//! Then two such tables into `null://`, copied one at a time and two at once
//! (`source.snapshot_parallelism`). Then tables of 50,000 rows of 8 KiB and of 300 rows of
//! 900 kB into the SQLite tansu, slower than the source, so the queues in front of it fill
//! (peak RSS for wide rows). `SLUICE_BENCH_KAFKA` sets producer properties. The targets: >= 80 % of the raw
//! rate (or, where the cores cannot give that, <= 1.5 us of Sluice's own CPU per row),
//! <= 100 MB.
//!
//! `scripts/stack.sh up && cargo bench --bench snapshot`; figures in docs/benchmarks.md.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use mysql_async::prelude::*;

const ROWS: u64 = 2_000_000;
/// The tables of wide rows: name, rows, bytes of text in each row (the second close to
/// Kafka's default record limit of 1 MB).
const WIDE: [(&str, u64, u64); 2] = [
    ("bench_snapshot.wide", 50_000, 8192),
    ("bench_snapshot.huge", 300, 900_000),
];

/// `scripts/stack.sh env` as key/value pairs.
fn stack_env() -> std::collections::HashMap<String, String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(root.join("scripts/stack.sh"))
        .arg("env")
        .output()
        .expect("scripts/stack.sh env (is the stack up? scripts/stack.sh up)");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("export SLUICE_STACK_")?.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument selects nothing here.
    let env = stack_env();
    let url = format!(
        "mysql://{}:{}@{}:{}/",
        env["MYSQL_ADMIN_USER"], env["MYSQL_ADMIN_PASSWORD"], env["MYSQL_HOST"], env["MYSQL_PORT"]
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let raw = rt.block_on(async {
        let mut conn = mysql_async::Conn::from_url(&url).await.unwrap();
        write_unless_present(
            &mut conn,
            "bench_snapshot.t",
            ROWS,
            &[
                "DROP DATABASE IF EXISTS bench_snapshot".to_string(),
                "CREATE DATABASE bench_snapshot".into(),
                "CREATE TABLE bench_snapshot.t (id BIGINT PRIMARY KEY, a INT, b INT UNSIGNED, \
                 qty MEDIUMINT, price DECIMAL(12,2), name VARCHAR(64), note VARCHAR(255), \
                 created DATETIME(6), flag TINYINT) DEFAULT CHARSET utf8mb4"
                    .into(),
                "USE bench_snapshot".into(),
                format!(
                    "INSERT INTO bench_snapshot.t SELECT seq, CAST(seq AS SIGNED) - 1000000, \
                     (seq * 2654435761) % 4294967296, CAST(seq % 16777216 AS SIGNED) - 8388608, \
                     CAST((seq * 37) % 100000000 AS SIGNED) / 100 - 500000, \
                     CONCAT('name-', seq), REPEAT('n', seq % 50), \
                     TIMESTAMPADD(MICROSECOND, seq * 1234567, '2024-01-01 00:00:00'), seq % 2 \
                     FROM seq_1_to_{ROWS}"
                ),
            ],
        )
        .await;
        // The second table of the parallel runs: the same rows.
        conn.query_drop("CREATE TABLE IF NOT EXISTS bench_snapshot.t2 LIKE bench_snapshot.t")
            .await
            .unwrap();
        let copied: Option<u64> = conn
            .query_first("SELECT COUNT(*) FROM bench_snapshot.t2")
            .await
            .unwrap();
        if copied != Some(ROWS) {
            eprintln!("copying it into bench_snapshot.t2...");
            conn.query_drop("TRUNCATE bench_snapshot.t2").await.unwrap();
            conn.query_drop("INSERT INTO bench_snapshot.t2 SELECT * FROM bench_snapshot.t")
                .await
                .unwrap();
        }
        for (table, rows, bytes) in WIDE {
            write_unless_present(
                &mut conn,
                table,
                rows,
                &[
                    format!("DROP TABLE IF EXISTS {table}"),
                    format!(
                        "CREATE TABLE {table} (id BIGINT PRIMARY KEY, body MEDIUMTEXT) \
                         DEFAULT CHARSET utf8mb4"
                    ),
                    format!(
                        "INSERT INTO {table} SELECT seq, REPEAT(CHAR(97 + seq % 26), {bytes}) \
                         FROM seq_1_to_{rows}"
                    ),
                ],
            )
            .await;
        }
        let start = Instant::now();
        let mut result = conn
            .exec_iter("SELECT * FROM bench_snapshot.t", ())
            .await
            .unwrap();
        let mut rows = result.stream::<mysql_async::Row>().await.unwrap().unwrap();
        let mut n = 0u64;
        while let Some(row) = rows.next().await {
            std::hint::black_box(row.unwrap().unwrap());
            n += 1;
        }
        assert_eq!(n, ROWS);
        start.elapsed()
    });

    let null = Broker::start("null://sink");
    let one = ["bench_snapshot.t"];
    let two = ["bench_snapshot.t", "bench_snapshot.t2"];
    let null_run = snapshot(&env, &null.brokers, &one, 1);
    // SLUICE_BENCH_PARALLEL: the `snapshot_parallelism` values of the two-table runs (default
    // `1,2`; `1` for a build from before the setting; empty for none).
    let parallel: Vec<usize> = std::env::var("SLUICE_BENCH_PARALLEL")
        .unwrap_or_else(|_| "1,2".into())
        .split(',')
        .filter(|n| !n.trim().is_empty())
        .map(|n| {
            n.trim()
                .parse()
                .expect("SLUICE_BENCH_PARALLEL: numbers, e.g. 1,2")
        })
        .collect();
    let two_tables: Vec<_> = parallel
        .iter()
        .map(|&p| (p, snapshot(&env, &null.brokers, &two, p)))
        .collect();
    drop(null);
    // A broker of its own, so the 2,000,000 records do not stay in the stack's (they slow
    // its later users) and are deleted with the directory.
    let sqlite_broker = Broker::start("sqlite://tansu.db");
    let sqlite = snapshot(&env, &sqlite_broker.brokers, &one, 1);
    // Into the slower broker, where the queues in front of it fill.
    let wide: Vec<_> = WIDE
        .iter()
        .map(|&(table, ..)| snapshot(&env, &sqlite_broker.brokers, &[table], 1))
        .collect();
    drop(sqlite_broker);
    println!(
        "raw SELECT *: {:.2} s, {:.0} rows/s",
        raw.as_secs_f64(),
        ROWS as f64 / raw.as_secs_f64()
    );
    let runs = [
        ("tansu null://".to_string(), 1, null_run),
        ("tansu SQLite".to_string(), 1, sqlite),
    ];
    let two_tables = two_tables.into_iter().map(|(p, run)| {
        let sink = format!("tansu null://, two tables, snapshot_parallelism = {p}");
        (sink, 2, run)
    });
    for (sink, tables, (done, peak_kb, cpu)) in runs.into_iter().chain(two_tables) {
        let rows = ROWS * tables;
        let rate = rows as f64 / done.as_secs_f64();
        println!(
            "sluice snapshot into {sink}, every row acknowledged, process start included: \
             {:.2} s, {rate:.0} rows/s, {:.0} % of raw; peak RSS {:.0} MB",
            done.as_secs_f64(),
            100.0 * rate / (ROWS as f64 / raw.as_secs_f64()),
            peak_kb as f64 / 1024.0
        );
        for (kind, t, copying) in cpu {
            println!(
                "  CPU, {kind}: {:.2} s, {:.2} us per row; from the first copy on: {:.2} us per row",
                t.as_secs_f64(),
                t.as_secs_f64() * 1e6 / rows as f64,
                copying.as_secs_f64() * 1e6 / rows as f64
            );
        }
    }
    for ((_, rows, bytes), (done, peak_kb, _)) in WIDE.iter().zip(wide) {
        println!(
            "sluice snapshot of {rows} rows of {bytes} bytes into tansu SQLite: {:.2} s, \
             {:.0} rows/s, {:.0} MB/s; peak RSS {:.0} MB",
            done.as_secs_f64(),
            *rows as f64 / done.as_secs_f64(),
            (rows * bytes) as f64 / 1e6 / done.as_secs_f64(),
            peak_kb as f64 / 1024.0
        );
    }
}

/// Runs `sql` unless `table` already holds `rows` rows (kept from an earlier run).
async fn write_unless_present(
    conn: &mut mysql_async::Conn,
    table: &str,
    rows: u64,
    sql: &[String],
) {
    let have: Option<u64> = conn
        .query_first(format!("SELECT COUNT(*) FROM {table}"))
        .await
        .unwrap_or(None);
    if have != Some(rows) {
        eprintln!("writing the {rows}-row table {table}...");
        for statement in sql {
            conn.query_drop(statement).await.unwrap();
        }
    }
}

/// SLUICE_BENCH_KAFKA: librdkafka properties for the snapshotting producer, e.g.
/// `linger.ms=5,compression.type=lz4`, as `[kafka.producer_properties]` lines.
fn producer_properties() -> String {
    let given = std::env::var("SLUICE_BENCH_KAFKA").unwrap_or_default();
    given
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (k, v) = p
                .split_once('=')
                .expect("SLUICE_BENCH_KAFKA: key=value,...");
            format!("{:?} = {:?}\n", k.trim(), v.trim())
        })
        .collect()
}

/// A tansu broker on a free port with `storage` (relative paths are in its own temporary
/// directory, deleted with it); killed on drop, so a failed run leaves no broker behind.
struct Broker {
    child: std::process::Child,
    brokers: String,
    _dir: tempfile::TempDir,
}

impl Broker {
    fn start(storage: &str) -> Broker {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new("tansu")
            .args(["broker", "--storage-engine", storage])
            .arg("--listener-url")
            .arg(format!("tcp://127.0.0.1:{port}"))
            .arg("--advertised-listener-url")
            .arg(format!("tcp://127.0.0.1:{port}"))
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu in PATH (scripts/stack.sh install puts it in ~/.cargo/bin)");
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                child.try_wait().unwrap().is_none() && Instant::now() < deadline,
                "tansu with {storage} did not listen on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Broker {
            child,
            brokers: format!("127.0.0.1:{port}"),
            _dir: dir,
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Snapshots `tables`, `parallelism` at once, with a fresh state dir into `brokers`: time
/// until every row is acknowledged, the peak RSS in kB, and the process's CPU by thread kind.
fn snapshot(
    env: &std::collections::HashMap<String, String>,
    brokers: &str,
    tables: &[&str],
    parallelism: usize,
) -> (Duration, u64, [(&'static str, Duration, Duration); 3]) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    let prefix = format!("bench{}", std::process::id());
    std::fs::write(
        &config,
        format!(
            r#"tables = {tables:?}
[source]
host = "{host}"
port = {port}
user = "{user}"
password = "{password}"
server_id = {server_id}
state_dir = "{state}"
{parallelism}
[kafka]
brokers = "{brokers}"
topic_prefix = "{prefix}"
partitions = 3
[registry]
url = "{registry}"
[metrics]
listen = "127.0.0.1:0"
[kafka.producer_properties]
{properties}
"#,
            host = env["MYSQL_HOST"],
            port = env["MYSQL_PORT"],
            user = env["MYSQL_USER"],
            password = env["MYSQL_PASSWORD"],
            server_id = 60_000 + std::process::id() % 1000,
            state = dir.path().join("state").display(),
            // Only where it matters, so builds from before the setting can be measured.
            parallelism = if parallelism > 1 {
                format!("snapshot_parallelism = {parallelism}")
            } else {
                String::new()
            },
            brokers = brokers,
            registry = env["REGISTRY_URL"],
            properties = producer_properties(),
        ),
    )
    .unwrap();
    let log = dir.path().join("sluice.log");
    let start = Instant::now();
    // SLUICE_BENCH_SLUICE: another build of sluice to measure (a before/after comparison).
    let sluice = std::env::var("SLUICE_BENCH_SLUICE")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_sluice").to_string());
    let mut child = Command::new(sluice)
        .args(["run", "--role", "source", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info,librdkafka=warn,rdkafka=warn")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let status = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0u64;
    // The CPU taken by the start (connections, the server's character sets, the state
    // store), read when the first table's copy begins, so the copy's own cost per row can be
    // told apart from it.
    let mut at_copy = None;
    let done = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if at_copy.is_none() && text.contains("snapshot: copying table") {
            at_copy = Some(thread_cpu(child.id()));
        }
        if text.contains("snapshot stored: every row") {
            break start.elapsed();
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "sluice exited:\n{text}"
        );
        if let Ok(s) = std::fs::read_to_string(&status)
            && let Some(kb) = s
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        {
            peak_kb = peak_kb.max(kb);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let end = thread_cpu(child.id());
    let at_copy = at_copy.unwrap_or(end);
    let cpu = std::array::from_fn(|i| (end[i].0, end[i].1, end[i].1.saturating_sub(at_copy[i].1)));
    let _ = child.kill();
    let _ = child.wait();
    (done, peak_kb, cpu)
}

/// CPU time of a process's threads so far, by kind: Sluice's own (the tokio workers: reading
/// rows, converting, encoding, handing records to librdkafka), librdkafka's broker threads
/// (batching, compression, the network), and the rest (the delivery-report poller, sled,
/// librdkafka's main thread). From each thread's `schedstat` (nanoseconds on a CPU).
fn thread_cpu(pid: u32) -> [(&'static str, Duration); 3] {
    let mut by_kind = [
        ("Sluice (tokio workers)", Duration::ZERO),
        ("librdkafka broker threads", Duration::ZERO),
        ("other threads", Duration::ZERO),
    ];
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    for task in tasks.flatten() {
        let read = |f: &str| std::fs::read_to_string(task.path().join(f)).unwrap_or_default();
        let comm = read("comm");
        let ns: u64 = read("schedstat")
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let kind = match comm.trim() {
            "tokio-rt-worker" => 0,
            c if c.starts_with("rdk:broker") => 1,
            _ => 2,
        };
        by_kind[kind].1 += Duration::from_nanos(ns);
    }
    by_kind
}
