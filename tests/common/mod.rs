//! Shared harness for tests against the real stack (MariaDB, tansu, osmem-server,
//! `sluice registry`): each test gets its own database, topic prefix, consumer group, state
//! directory and replica server id, so tests can run side by side.
#![allow(dead_code)] // each test binary uses its own subset

pub mod families;
pub mod generate;
pub mod private;
pub mod proxy;
pub mod reference;
pub mod registry;
pub mod topic_gate;
pub mod workload;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use mysql_async::{Conn, OptsBuilder, Pool};
use serde_json::{Value as Json, json};

/// How long a test waits for anything it synchronises on (a process to start or stop, a log
/// line, a document, an offset, a writer's progress). Generous on purpose: a slow or loaded
/// machine makes a test slower, never red. Nothing is synchronised by sleeping.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// How long an index may take to catch up with its table after the writes stopped.
pub const CATCH_UP: Duration = Duration::from_secs(240);

/// Polls `probe` until it gives `Ok`, for at most [`PATIENCE`]; then panics with `what` and
/// what the probe saw last (its `Err`).
pub async fn eventually<T>(what: &str, mut probe: impl AsyncFnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match probe().await {
            Ok(t) => return t,
            Err(seen) if Instant::now() > deadline => {
                panic!("{what}: not after {PATIENCE:?}; last seen: {seen}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// What a background writer and its test share: a stop flag and the count of writes
/// committed, so the test waits for writes to have happened instead of sleeping.
#[derive(Clone, Default)]
pub struct Writes {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
}

impl Writes {
    /// Whether the writer is to go on (checked by the writer before each write).
    pub fn go_on(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
    }

    /// Counts a committed write (called by the writer).
    pub fn count(&self) {
        self.done.fetch_add(1, Ordering::Relaxed);
    }
}

/// A writer task changing rows in the background until stopped.
pub struct Writer {
    writes: Writes,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    /// Spawns `task`, the writer's loop, which writes while [`Writes::go_on`] and counts each
    /// committed write.
    pub fn spawn<F>(task: impl FnOnce(Writes) -> F) -> Writer
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let writes = Writes::default();
        let task = tokio::spawn(task(writes.clone()));
        Writer { writes, task }
    }

    /// Writes committed so far.
    pub fn done(&self) -> u64 {
        self.writes.done.load(Ordering::Relaxed)
    }

    /// Waits until `more` writes beyond those committed now are committed.
    pub async fn wait_more(&self, more: u64) {
        let want = self.done() + more;
        eventually("the writer's progress", async || {
            let done = self.done();
            assert!(
                !self.task.is_finished(),
                "the writer ended after {done} writes"
            );
            if done >= want {
                Ok(())
            } else {
                Err(format!("{done} of {want} writes committed"))
            }
        })
        .await
    }

    /// Stops the writer after its current write; returns how many writes it committed (its
    /// panic, if it failed).
    pub async fn stop(self) -> u64 {
        self.writes.stop.store(true, Ordering::Relaxed);
        let done = self.writes.done.clone();
        self.task.await.unwrap();
        done.load(Ordering::Relaxed)
    }
}

/// Where the stack's components listen.
#[derive(Debug, Clone)]
pub struct Stack {
    pub mysql_host: String,
    pub mysql_port: u16,
    pub cdc_user: String,
    pub cdc_password: String,
    pub admin_user: String,
    pub admin_password: String,
    pub brokers: String,
    pub registry_url: String,
    pub es_url: String,
}

/// Starts the stack (or finds it running) once per test binary.
pub fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let script = root.join("scripts/stack.sh");
        let up = Command::new(&script)
            .arg("up")
            .env("SLUICE_BIN", env!("CARGO_BIN_EXE_sluice"))
            .status()
            .expect("run scripts/stack.sh up");
        assert!(up.success(), "scripts/stack.sh up failed");
        let out = Command::new(&script)
            .arg("env")
            .output()
            .expect("run scripts/stack.sh env");
        let vars: BTreeMap<String, String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("export ")?.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let v = |k: &str| {
            vars.get(&format!("SLUICE_STACK_{k}"))
                .cloned()
                .unwrap_or_else(|| panic!("stack.sh env lacks {k}"))
        };
        Stack {
            mysql_host: v("MYSQL_HOST"),
            mysql_port: v("MYSQL_PORT").parse().unwrap(),
            cdc_user: v("MYSQL_USER"),
            cdc_password: v("MYSQL_PASSWORD"),
            admin_user: v("MYSQL_ADMIN_USER"),
            admin_password: v("MYSQL_ADMIN_PASSWORD"),
            brokers: v("KAFKA_BROKERS"),
            registry_url: v("REGISTRY_URL"),
            es_url: v("ELASTICSEARCH_URL"),
        }
    })
}

/// A TCP port on loopback that nothing listens on (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A name no other test (or earlier run) uses: lower-case, so it is a valid index name too.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}_{}_{}",
        nanos % 1_000_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A connection pool as the admin user, in UTC, speaking utf8mb4.
pub fn admin_pool() -> Pool {
    let s = stack();
    let opts = OptsBuilder::default()
        .ip_or_hostname(s.mysql_host.clone())
        .tcp_port(s.mysql_port)
        .user(Some(s.admin_user.clone()))
        .pass(Some(s.admin_password.clone()))
        .init(vec!["SET NAMES utf8mb4", "SET time_zone = '+00:00'"]);
    Pool::new(opts)
}

/// An admin connection using a fresh database named after `name`, and a setup capturing
/// `tables` of it.
pub async fn fresh(name: &str, tables: &[&str]) -> (Conn, Setup) {
    let mut conn = admin_pool().get_conn().await.unwrap();
    let setup = Setup::new(&mut conn, &unique(name), tables).await;
    conn.query_drop(format!("USE `{}`", setup.db))
        .await
        .unwrap();
    (conn, setup)
}

/// The binlog file the server writes and its size (`SHOW MASTER STATUS`).
pub async fn master_status(conn: &mut Conn) -> (String, u64) {
    let row: mysql_async::Row = conn
        .query_first("SHOW MASTER STATUS")
        .await
        .unwrap()
        .unwrap();
    (row.get(0).unwrap(), row.get(1).unwrap())
}

/// Runs statements in order.
pub async fn exec(conn: &mut Conn, sql: &[&str]) {
    for s in sql {
        conn.query_drop(*s)
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"));
    }
}

/// A new user with the source's grants and the password `pw`, `options` (e.g. `WITH
/// MAX_USER_CONNECTIONS 2`) added to its CREATE USER; returns its name. A test that kills
/// connections or limits them has one of its own, so others are not touched.
pub async fn cdc_user(conn: &mut Conn, options: &str) -> String {
    let user = unique("cdc");
    let create = format!("CREATE USER '{user}'@'%' IDENTIFIED BY 'pw' {options}");
    let grant =
        format!("GRANT SELECT, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '{user}'@'%'");
    exec(conn, &[&create, &grant]).await;
    user
}

/// One test's isolated pipeline setup.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub db: String,
    pub prefix: String,
    pub tables: Vec<String>,
    pub server_id: u32,
    /// The index server the config and the index assertions use.
    pub es_url: String,
    logs: std::sync::Mutex<Vec<PathBuf>>,
}

impl Setup {
    /// A fresh database `db` (dropped first if it exists) and a config for `tables` in it.
    pub async fn new(conn: &mut Conn, db: &str, tables: &[&str]) -> Setup {
        exec(
            conn,
            &[
                &format!("DROP DATABASE IF EXISTS `{db}`"),
                &format!("CREATE DATABASE `{db}`"),
            ],
        )
        .await;
        Setup {
            dir: tempfile::tempdir().unwrap(),
            db: db.to_string(),
            prefix: unique("it"),
            tables: tables.iter().map(|t| format!("{db}.{t}")).collect(),
            server_id: 10_000 + fastrand::u32(0..1_000_000),
            es_url: stack().es_url.clone(),
            logs: Default::default(),
        }
    }

    /// The config text; `extra` is appended verbatim.
    pub fn config_text(&self, extra: &str) -> String {
        let s = stack();
        format!(
            r#"tables = {tables:?}
[source]
host = "{host}"
port = {port}
user = "{user}"
password = "{password}"
server_id = {server_id}
state_dir = "{state}"
signal_table = "{db}.sluice_signal"
[kafka]
brokers = "{brokers}"
topic_prefix = "{prefix}"
partitions = 3
[registry]
url = "{registry}"
[metrics]
listen = "127.0.0.1:0"
[elasticsearch]
url = "{es}"
[loader]
batch_size = 500
{extra}"#,
            tables = self.tables,
            host = s.mysql_host,
            port = s.mysql_port,
            user = s.cdc_user,
            password = s.cdc_password,
            server_id = self.server_id,
            state = self.dir.path().join("state").display(),
            db = self.db,
            brokers = s.brokers,
            prefix = self.prefix,
            registry = s.registry_url,
            es = self.es_url,
        )
    }

    /// Writes the config and returns its path.
    pub fn write_config(&self, extra: &str) -> PathBuf {
        let path = self.dir.path().join("sluice.toml");
        std::fs::write(&path, self.config_text(extra)).unwrap();
        path
    }

    /// Writes the config with `source` (lines of `key = value`) added to its `[source]`
    /// section, and returns its path.
    pub fn write_config_with_source(&self, source: &str) -> PathBuf {
        let text = self
            .config_text("")
            .replace("[kafka]", &format!("{}\n[kafka]", source.trim_end()));
        let path = self.dir.path().join("sluice.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Writes the config with the index server reached through `proxy` (https, its CA),
    /// `es_extra` lines added to `[elasticsearch]` and `extra` after `[loader]`.
    pub fn write_config_via(&self, proxy: &TlsProxy, es_extra: &str, extra: &str) -> PathBuf {
        let path = self.dir.path().join("sluice.toml");
        std::fs::write(&path, es_via(&self.config_text(extra), proxy, es_extra)).unwrap();
        path
    }

    /// Writes the config with another source user, and returns its path.
    pub fn write_config_as(&self, user: &str, password: &str, extra: &str) -> PathBuf {
        let s = stack();
        let text = self.config_text(extra).replace(
            &format!(
                "user = \"{}\"\npassword = \"{}\"",
                s.cdc_user, s.cdc_password
            ),
            &format!("user = \"{user}\"\npassword = \"{password}\""),
        );
        let path = self.dir.path().join("sluice.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Starts `sluice run` with this setup's config.
    pub fn start(&self, role: &str) -> Sluice {
        let config = self.dir.path().join("sluice.toml");
        if !config.exists() {
            self.write_config("");
        }
        let log = self.dir.path().join(format!("sluice-{}.log", unique(role)));
        self.logs.lock().unwrap().push(log.clone());
        Sluice::start(&config, role, &log)
    }

    /// Waits until the index of `table` holds exactly its rows; on failure the panic shows
    /// the difference and the end of every sluice log of this setup.
    pub async fn assert_index_matches(&self, conn: &mut Conn, table: &str, timeout: Duration) {
        let (db, t) = (self.db.clone(), table.to_string());
        self.assert_index_holds(table, timeout, async || expected_docs(conn, &db, &t).await)
            .await;
    }

    /// Waits until the index of `table` holds exactly the documents `want` computes (asked
    /// again on every poll, as the table may still change).
    pub async fn assert_index_holds(
        &self,
        table: &str,
        timeout: Duration,
        mut want: impl AsyncFnMut() -> BTreeMap<String, Json>,
    ) {
        let index = format!("{}.{table}", self.db).to_lowercase();
        let deadline = Instant::now() + timeout;
        loop {
            let expected = want().await;
            let late = Instant::now() > deadline;
            // Reading every document of a large index competes with the loader's writes: read
            // them only once the count is right (or to report the difference).
            if late || index_count_at(&self.es_url, &index).await == expected.len() {
                let actual = index_docs_at(&self.es_url, &index).await;
                if expected == actual {
                    return;
                }
                if late {
                    let diff = describe_difference(&format!("index {index}"), &expected, &actual);
                    panic!("after {timeout:?}: {diff}{}", self.log_tails());
                }
            }
            let pause = 500 + expected.len() as u64 / 50;
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    }

    fn log_tails(&self) -> String {
        let mut logs = String::new();
        for log in self.logs.lock().unwrap().iter() {
            let text = strip_ansi(&std::fs::read_to_string(log).unwrap_or_default());
            let tail: Vec<&str> = text.lines().rev().take(25).collect();
            logs.push_str(&format!("\n--- {} (last lines) ---\n", log.display()));
            logs.push_str(&tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }
        logs
    }

    /// Creates the setup's signal table with `sluice setup` on `config`, run as the Sluice
    /// user (granted what it needs in the setup's database).
    pub async fn signal_table(&self, conn: &mut Conn, config: &Path) {
        let grant = format!(
            "GRANT CREATE, INSERT, UPDATE ON `{}`.* TO '{}'@'%'",
            self.db,
            stack().cdc_user
        );
        exec(conn, &[&grant]).await;
        let config = config.to_str().unwrap();
        let (status, out) = run_to_exit(&["setup", "--config", config], PATIENCE);
        assert!(status.success(), "{out}");
        assert!(out.contains("sluice_signal is ready"), "{out}");
    }

    /// The Kafka topic of a table of this setup.
    pub fn topic(&self, table: &str) -> String {
        format!("{}.{}.{}", self.prefix, self.db, table)
    }
}

/// A running `sluice` process, its output going to a log file.
pub struct Sluice {
    child: Option<Child>,
    pub log: PathBuf,
    /// Whether the process runs the loader (role `all` or `loader`).
    loader: bool,
}

impl Sluice {
    /// Spawns `sluice run --config <config> --role <role>`.
    pub fn start(config: &Path, role: &str, log: &Path) -> Sluice {
        let file = std::fs::File::create(log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["run", "--config"])
            .arg(config)
            .args(["--role", role])
            .env(
                "RUST_LOG",
                std::env::var("SLUICE_TEST_LOG")
                    .unwrap_or("info,librdkafka=warn,rdkafka=warn".into()),
            )
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn sluice");
        Sluice {
            child: Some(child),
            log: log.to_owned(),
            loader: matches!(role, "all" | "loader"),
        }
    }

    /// Whether the process has not exited.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// The process's output so far, without colour codes.
    pub fn output(&self) -> String {
        let raw = std::fs::read_to_string(&self.log).unwrap_or_default();
        strip_ansi(&raw)
    }

    /// Waits until the output contains `needle`; panics with the output after `timeout`.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) {
        self.wait_for_logs(needle, 1, timeout);
    }

    /// Waits until the output contains `needle` `times` times.
    pub fn wait_for_logs(&mut self, needle: &str, times: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.output().matches(needle).count() < times {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "sluice exited ({status}) before logging {needle:?}:\n{}",
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in sluice's log after {timeout:?}:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A loader stopped before its group assigned it partitions can leave tansu's coordinator
    /// holding a stale assignment for its static member id: two such stops in a row, with the
    /// subscribed topics changed in between, and the next loader of that id is given the old
    /// topics only. Kafka does not do this; a test stops a loader once it has its partitions
    /// (or has exited), so that no test depends on how fast the group forms.
    fn wait_assigned(&mut self) {
        if !self.loader {
            return;
        }
        let deadline = Instant::now() + PATIENCE;
        while !self.output().contains("partitions assigned") {
            if self.child.as_mut().unwrap().try_wait().unwrap().is_some() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the loader had no partitions assigned after {PATIENCE:?}:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL: no draining, no final checkpoint. A loader is killed once it has partitions.
    pub fn kill9(&mut self) {
        self.wait_assigned();
        self.kill9_now();
    }

    /// SIGKILL at once, whatever the process is doing (a loader joining its group, say).
    pub fn kill9_now(&mut self) {
        let mut c = self.child.take().unwrap();
        c.kill().unwrap();
        c.wait().unwrap();
    }

    /// SIGTERM, then waits for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        self.wait_assigned();
        let pid = self.child.as_ref().unwrap().id() as i32;
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        self.wait_exit(timeout)
    }

    /// Waits for the process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().unwrap();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            if Instant::now() > deadline {
                panic!("sluice did not exit within {timeout:?}:\n{}", self.output());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A failed test keeps the full logs of the sluice processes it ran (the panic message shows
/// only their last lines): they are copied under the target directory, which is printed.
impl Drop for Setup {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let kept = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("failed")
            .join(&self.prefix);
        if std::fs::create_dir_all(&kept).is_err() {
            return;
        }
        for log in self.logs.lock().unwrap().iter() {
            if let Some(name) = log.file_name() {
                let _ = std::fs::copy(log, kept.join(name));
            }
        }
        eprintln!("sluice logs kept in {}", kept.display());
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Gives the config at `path` a fixed free metrics port (tests use port 0 otherwise), for the
/// commands that ask the running pipeline over it (`status`, `verify`).
pub fn fixed_metrics_port(path: &Path) -> u16 {
    let port = free_port();
    let text = std::fs::read_to_string(path).unwrap().replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    std::fs::write(path, text).unwrap();
    port
}

/// `GET path` on `addr`: status code and body.
pub fn http_get(addr: &str, path: &str) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let addr_parsed: std::net::SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let wait = Duration::from_secs(10);
    let mut s =
        std::net::TcpStream::connect_timeout(&addr_parsed, wait).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(wait)).map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| e.to_string())?;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line in {text:?}"))?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, body.to_string()))
}

/// `sluice snapshot --config <config> --table <table>`: requests an incremental snapshot of
/// `table` from the running source; panics with the output if the request fails.
pub fn request_snapshot(config: &Path, table: &str) {
    let config = config.to_str().unwrap();
    let (status, out) = run_to_exit(
        &["snapshot", "--config", config, "--table", table],
        PATIENCE,
    );
    assert!(status.success(), "{out}");
}

/// Runs a sluice command to completion and returns (exit status, stdout and stderr).
pub fn run_to_exit(args: &[&str], timeout: Duration) -> (ExitStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("out.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, strip_ansi(&std::fs::read_to_string(&log).unwrap()));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "sluice {args:?} did not exit within {timeout:?}:\n{}",
                std::fs::read_to_string(&log).unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The documents a table should produce, computed by SQL from the table itself (binary
/// protocol, so floats arrive exact): integers as numbers, decimals with a fraction as their
/// exact text, dates and times as ISO-8601 with microseconds (`Z` for TIMESTAMP, read in UTC),
/// zero dates as null, TIME as signed microseconds, bytes as base64, BIT(1) as a boolean and
/// BIT(n) as a number, FLOAT as its shortest round-trip decimal, GEOMETRY as `{wkb, srid}`.
/// Keyed by document id.
pub async fn expected_docs(conn: &mut Conn, db: &str, table: &str) -> BTreeMap<String, Json> {
    expected_docs_keyed(conn, db, table, None).await
}

/// [`expected_docs`] for a table keyed by `key` instead of its primary key.
pub async fn expected_docs_keyed(
    conn: &mut Conn,
    db: &str,
    table: &str,
    key: Option<&[&str]>,
) -> BTreeMap<String, Json> {
    let cols: Vec<(String, String, String)> = conn
        .exec(
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (db, table),
        )
        .await
        .unwrap();
    let key: Vec<String> = match key {
        Some(k) => k.iter().map(|c| c.to_string()).collect(),
        None => conn
            .exec(
                "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE \
                 TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' \
                 ORDER BY ORDINAL_POSITION",
                (db, table),
            )
            .await
            .unwrap(),
    };
    let exprs: Vec<String> = cols
        .iter()
        .map(|(name, ty, _)| {
            let c = format!("`{name}`");
            match ty.as_str() {
                "decimal" => format!("CAST({c} AS CHAR)"),
                // The zero year prints as `0000`.
                "year" | "bit" => format!("{c} + 0"),
                // A zero month or day (zero dates, `0000-00-00 12:00:00`) has no place on the
                // timeline: null.
                "date" => format!("IF(MONTH({c}) = 0 OR DAYOFMONTH({c}) = 0, NULL, DATE_FORMAT({c}, '%Y-%m-%d'))"),
                "datetime" => format!("IF(MONTH({c}) = 0 OR DAYOFMONTH({c}) = 0, NULL, DATE_FORMAT({c}, '%Y-%m-%dT%H:%i:%s.%f'))"),
                "timestamp" => format!("IF(UNIX_TIMESTAMP({c}) = 0, NULL, DATE_FORMAT({c}, '%Y-%m-%dT%H:%i:%s.%fZ'))"),
                _ => c,
            }
        })
        .collect();
    conn.query_drop("SET time_zone = '+00:00'").await.unwrap();
    let rows: Vec<mysql_async::Row> = conn
        .exec(
            format!("SELECT {} FROM `{db}`.`{table}`", exprs.join(", ")),
            (),
        )
        .await
        .unwrap();
    let mut docs = BTreeMap::new();
    for row in rows {
        let values = row.unwrap();
        let mut doc = serde_json::Map::new();
        for ((name, ty, column_type), v) in cols.iter().zip(values) {
            doc.insert(name.clone(), sql_json(ty, column_type, v));
        }
        let parts: Vec<Json> = key.iter().map(|k| doc[k].clone()).collect();
        let id = match parts.as_slice() {
            [Json::String(s)] => s.clone(),
            [single] => single.to_string(),
            _ => Json::Array(parts).to_string(),
        };
        docs.insert(id, Json::Object(doc));
    }
    docs
}

/// A binary-protocol value of a column of `data_type` as the index should hold it.
fn sql_json(data_type: &str, column_type: &str, v: mysql_async::Value) -> Json {
    use base64::Engine;
    use mysql_async::Value as V;
    let b64 = |b: &[u8]| Json::String(base64::engine::general_purpose::STANDARD.encode(b));
    match (data_type, v) {
        (_, V::NULL) => Json::Null,
        ("bit", V::Int(i)) if column_type == "bit(1)" => Json::Bool(i != 0),
        ("bit", V::UInt(u)) if column_type == "bit(1)" => Json::Bool(u != 0),
        (_, V::Int(i)) => Json::from(i),
        (_, V::UInt(u)) => Json::from(u),
        (_, V::Float(f)) => Json::from(f.to_string().parse::<f64>().unwrap()),
        (_, V::Double(d)) => Json::from(d),
        (_, V::Time(negative, days, h, m, s, us)) => {
            let secs = i64::from(days) * 86_400 + i64::from(h) * 3600 + i64::from(m) * 60;
            let micros = (secs + i64::from(s)) * 1_000_000 + i64::from(us);
            Json::from(if negative { -micros } else { micros })
        }
        ("binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob", V::Bytes(b)) => {
            b64(&b)
        }
        (
            "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring"
            | "multipolygon" | "geometrycollection",
            V::Bytes(b),
        ) => json!({
            "wkb": b64(&b[4..]),
            "srid": u32::from_le_bytes(b[..4].try_into().unwrap()),
        }),
        (_, V::Bytes(b)) => {
            let s = String::from_utf8(b).unwrap();
            // Scale-0 decimals are numbers where they fit 64 bits, exact text otherwise.
            if data_type != "decimal" || s.contains('.') {
                Json::String(s)
            } else if let Ok(i) = s.parse::<i64>() {
                Json::from(i)
            } else if let Ok(u) = s.parse::<u64>() {
                Json::from(u)
            } else {
                Json::String(s)
            }
        }
        (_, other) => panic!("unexpected SQL value {other:?} for {column_type}"),
    }
}

/// How many documents an index holds (0 if it does not exist).
pub async fn index_count(index: &str) -> usize {
    index_count_at(&stack().es_url, index).await
}

/// The number of documents in an index of the server at `es` (0 if it does not exist).
pub async fn index_count_at(es: &str, index: &str) -> usize {
    let url = format!("{es}/{index}/_count");
    let response = reqwest::get(&url).await.unwrap();
    if response.status() == 404 {
        return 0;
    }
    let r: Json = response.json().await.unwrap();
    r["count"].as_u64().unwrap_or(0) as usize
}

/// `config` (a config file's text) with the stack's index server reached through `proxy`,
/// `es_extra` added to its `[elasticsearch]` table.
pub fn es_via(config: &str, proxy: &TlsProxy, es_extra: &str) -> String {
    let plain = format!("url = \"{}\"", stack().es_url);
    let https = format!(
        "url = \"https://localhost:{}\"\nca_file = \"{}\"\n{es_extra}",
        proxy.port,
        proxy.cert.display()
    );
    config.replace(&plain, &https)
}

/// `tests/interop/tls_proxy.py` in front of a plain-HTTP server (or, for a `tcp://` backend,
/// a Kafka broker), with a fresh self-signed certificate for localhost and 127.0.0.1; killed
/// on drop.
pub struct TlsProxy {
    child: Child,
    /// Port on 127.0.0.1.
    pub port: u16,
    /// The certificate (its own CA), PEM.
    pub cert: PathBuf,
}

impl TlsProxy {
    /// Starts a proxy to `backend`, its files in `dir`; with `require_auth`, requests need
    /// exactly that Authorization header.
    pub fn start(dir: &Path, backend: &str, require_auth: Option<&str>) -> TlsProxy {
        Self::start_with(dir, backend, require_auth, None)
    }

    /// [`TlsProxy::start`], and while `refuse_file` exists, bulk writes to the index it
    /// names and reads of it (`_mget`) get 429; "INDEX N" in the file refuses only the first
    /// N of them.
    pub fn start_with(
        dir: &Path,
        backend: &str,
        require_auth: Option<&str>,
        refuse_file: Option<&Path>,
    ) -> TlsProxy {
        use std::io::BufRead;
        let (cert, key) = (dir.join("proxy-ca.pem"), dir.join("proxy-key.pem"));
        let made = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=localhost",
            ])
            .args([
                "-addext",
                "subjectAltName=DNS:localhost,IP:127.0.0.1",
                "-days",
                "1",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .unwrap();
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
        let port = free_port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/tls_proxy.py");
        let mut command = Command::new("python3");
        command
            .arg(script)
            .arg(port.to_string())
            .args([&cert, &key])
            .arg(backend)
            .stdout(Stdio::piped());
        if let Some(auth) = require_auth {
            command.env("TLS_PROXY_REQUIRE_AUTH", auth);
        }
        if let Some(file) = refuse_file {
            command.env("TLS_PROXY_REFUSE_FILE", file);
        }
        let mut child = command.spawn().unwrap();
        let mut ready = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        assert_eq!(ready.trim(), "ready");
        TlsProxy { child, port, cert }
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private osmem-server, for tests that stop it; killed on drop.
pub struct PrivateOsmem {
    child: Child,
    /// Its base URL.
    pub url: String,
    port: u16,
}

impl PrivateOsmem {
    /// Starts one on a free port and waits until it answers.
    pub fn start() -> PrivateOsmem {
        Self::start_at(free_port())
    }

    /// Starts one on loopback port `port` and waits until it answers.
    pub fn start_at(port: u16) -> PrivateOsmem {
        PrivateOsmem {
            child: Self::spawn(port),
            url: format!("http://127.0.0.1:{port}"),
            port,
        }
    }

    /// Kills the server and starts a new one on its port: every index is gone (osmem keeps
    /// them in memory), as after losing an index server's data.
    pub fn restart_empty(&mut self) {
        self.signal(libc::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Self::spawn(self.port);
    }

    fn spawn(port: u16) -> Child {
        stack(); // osmem-server is installed
        let bin = Command::new("python3")
            .args([
                "-c",
                "import osmem_server; print(osmem_server.resolve_binary())",
            ])
            .output()
            .unwrap();
        let bin = String::from_utf8(bin.stdout).unwrap();
        let child = Command::new(bin.trim())
            .args(["-addr", &format!("127.0.0.1:{port}"), "-no-stdin-watch"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "private osmem-server did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        child
    }

    /// Sends it a signal (SIGSTOP, SIGCONT).
    pub fn signal(&self, signal: i32) {
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }
}

impl Drop for PrivateOsmem {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Deletes an index: osmem holds every index in memory, and a large one left behind slows
/// the server for the tests after it.
pub async fn delete_index(index: &str) {
    let url = format!("{}/{index}", stack().es_url);
    let response = reqwest::Client::new().delete(&url).send().await.unwrap();
    assert!(
        response.status().is_success() || response.status() == 404,
        "deleting {index}: {}",
        response.status()
    );
}

/// The mapping of `index` on the stack's index server.
pub async fn index_mapping(index: &str) -> Json {
    reqwest::get(format!("{}/{index}/_mapping", stack().es_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Every document of an index, keyed by id, read in pages in `_id` order (`search_after`).
pub async fn index_docs(index: &str) -> BTreeMap<String, Json> {
    index_docs_at(&stack().es_url, index).await
}

/// Every document of an index of the server at `es`.
pub async fn index_docs_at(es: &str, index: &str) -> BTreeMap<String, Json> {
    let url = format!("{es}/{index}/_search");
    let http = reqwest::Client::new();
    let mut docs = BTreeMap::new();
    let mut after: Option<Json> = None;
    loop {
        let mut body =
            json!({"size": 10_000, "sort": [{"_id": "asc"}], "query": {"match_all": {}}});
        if let Some(a) = &after {
            body["search_after"] = a.clone();
        }
        let response = http.post(&url).json(&body).send().await.unwrap();
        if response.status() == 404 {
            return docs;
        }
        let r: Json = response.json().await.unwrap();
        let hits = r["hits"]["hits"].as_array().unwrap();
        for h in hits {
            docs.insert(h["_id"].as_str().unwrap().to_string(), h["_source"].clone());
        }
        match hits.last() {
            Some(last) if hits.len() == 10_000 => after = Some(last["sort"].clone()),
            _ => return docs,
        }
    }
}

/// What differs between the documents expected and those in the index.
/// What differs between the documents expected and those `place` holds.
pub fn describe_difference(
    place: &str,
    expected: &BTreeMap<String, Json>,
    actual: &BTreeMap<String, Json>,
) -> String {
    let missing: Vec<_> = expected
        .keys()
        .filter(|k| !actual.contains_key(*k))
        .take(5)
        .collect();
    let extra: Vec<_> = actual
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .take(5)
        .collect();
    let differing: Vec<_> = expected
        .iter()
        .filter(|(k, v)| actual.get(*k).is_some_and(|a| a != *v))
        .take(3)
        .map(|(k, v)| format!("{k}: expected {v}, found {}", actual[k]))
        .collect();
    format!(
        "{place}: {} rows expected, {} found; missing {missing:?}; extra {extra:?}; \
         differing {differing:#?}",
        expected.len(),
        actual.len()
    )
}

/// The versions the registry holds for a subject.
pub async fn subject_versions(subject: &str) -> Vec<u32> {
    let url = format!("{}/subjects/{subject}/versions", stack().registry_url);
    let r = reqwest::get(&url).await.unwrap();
    if r.status() == 404 {
        return vec![];
    }
    r.json().await.unwrap()
}

/// How many records all partitions of `topic` hold (0 if it does not exist).
pub fn topic_records(topic: &str) -> i64 {
    topic_records_at(&stack().brokers, topic)
}

/// [`topic_records`] on the cluster at `brokers`.
pub fn topic_records_at(brokers: &str, topic: &str) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let timeout = Duration::from_secs(10);
    let Ok(metadata) = consumer.fetch_metadata(Some(topic), timeout) else {
        return 0;
    };
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    partitions
        .into_iter()
        .map(|p| {
            let (low, high) = consumer
                .fetch_watermarks(topic, p, timeout)
                .unwrap_or((0, 0));
            high - low
        })
        .sum()
}

/// Runs `sluice run --role <role>` on `config` to its exit; returns its output, asserting a
/// failed exit without a panic.
pub fn run_failing_as(config: &Path, role: &str) -> String {
    let config = config.to_str().unwrap();
    let (status, out) = run_to_exit(&["run", "--role", role, "--config", config], PATIENCE);
    assert!(!status.success(), "sluice exited 0:\n{out}");
    assert!(!out.contains("panicked"), "sluice panicked:\n{out}");
    out
}

/// Runs the source role on `config` until it streams, then stops it cleanly.
pub fn run_once(config: &Path, log: &Path) {
    let mut sluice = Sluice::start(config, "source", log);
    sluice.wait_for_log("streaming the binlog", PATIENCE);
    let status = sluice.terminate(PATIENCE);
    assert!(status.success(), "{}", sluice.output());
}

/// The `topic_prefix` of a config file.
pub fn config_prefix(config: &Path) -> String {
    let text = std::fs::read_to_string(config).unwrap();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("topic_prefix = "))
        .unwrap();
    line.trim_matches('"').to_string()
}
