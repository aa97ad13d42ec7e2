//! Everything a chaos run breaks, all private to it: a MariaDB server, a tansu broker, a
//! `sluice registry`, an osmem-server, a fault proxy in front of each, and Sluice's source and
//! loader as separate processes.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::common::private::{PrivateServer, ROW_CDC};
use crate::common::proxy::FaultProxy;
use crate::common::registry::{Broker, Registry};
use crate::common::{PrivateOsmem, Sluice, free_port, http_get, run_to_exit, stack};

/// The captured database.
pub const DB: &str = "chaos";
/// The captured tables (`beat` carries the recovery marker).
pub const TABLES: [&str; 4] = ["t1", "t2", "t3", "beat"];

/// A proxied component's name, as the report shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Link {
    Mysql,
    Kafka,
    Registry,
    Index,
}

pub const LINKS: [Link; 4] = [Link::Mysql, Link::Kafka, Link::Registry, Link::Index];

pub struct World {
    pub dir: tempfile::TempDir,
    pub mysql: PrivateServer,
    pub broker: Broker,
    pub registry: Registry,
    pub index: PrivateOsmem,
    proxies: [FaultProxy; 4],
    pub source_config: PathBuf,
    loader_config: PathBuf,
    metrics: String,
    pub source: Sluice,
    pub loader: Sluice,
    incarnations: u32,
    beats: u64,
    /// Asks the broker for the marker's offsets, with the loader's group id (it never joins).
    kafka: rdkafka::consumer::BaseConsumer,
}

impl World {
    /// Starts the components, fills the tables with `rows` rows each, prepares the signal
    /// table, and starts the source (snapshot paced at `snapshot_rows_per_sec`) and the loader.
    pub fn start(rows: u64, snapshot_rows_per_sec: u64) -> World {
        stack(); // everything installed
        let mut mysql_args = ROW_CDC.to_vec();
        mysql_args.push("--innodb-buffer-pool-size=256M");
        let mysql = PrivateServer::start(&mysql_args);
        let mysql_proxy = FaultProxy::start(mysql.port);
        let broker_port = free_port();
        let kafka_proxy = FaultProxy::start(broker_port);
        let broker = Broker::start_advertising(broker_port, kafka_proxy.port);
        let registry = Registry::start(None);
        let registry_port: u16 = registry.url.rsplit(':').next().unwrap().parse().unwrap();
        let registry_proxy = FaultProxy::start(registry_port);
        let index = PrivateOsmem::start();
        let index_port: u16 = index.url.rsplit(':').next().unwrap().parse().unwrap();
        let index_proxy = FaultProxy::start(index_port);

        let s = stack();
        let mut setup = vec![
            format!("CREATE USER chaos@'%' IDENTIFIED BY 'chaos'"),
            "GRANT ALL ON *.* TO chaos@'%'".into(),
            format!("CREATE DATABASE {DB}"),
            format!(
                "GRANT CREATE, INSERT, UPDATE ON {DB}.* TO '{}'@'%'",
                s.cdc_user
            ),
            format!("USE {DB}"),
        ];
        setup.extend(crate::writer::TABLES.iter().map(|t| t.to_string()));
        setup.extend(crate::writer::fill(rows));
        let out = mysql.sql(&setup.join(";\n"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        // Kept when the run fails: the processes' logs are the evidence.
        let mut dir = tempfile::Builder::new()
            .prefix("sluice-chaos-")
            .tempdir()
            .unwrap();
        dir.disable_cleanup(true);
        println!("chaos: state and logs in {}", dir.path().display());
        let metrics_port = free_port();
        let config = |metrics: &str| {
            format!(
                r#"tables = {tables:?}
[source]
host = "127.0.0.1"
port = {mysql}
user = "{user}"
password = "{password}"
server_id = 4711
state_dir = "{state}"
signal_table = "{DB}.sluice_signal"
resnapshot_on_add_column = true
snapshot_chunk_rows = 2000
snapshot_max_rows_per_sec = {snapshot_rows_per_sec}
[kafka]
brokers = "127.0.0.1:{kafka}"
topic_prefix = "chaos"
partitions = 3
[registry]
url = "http://127.0.0.1:{registry}"
[metrics]
listen = "{metrics}"
[elasticsearch]
url = "http://127.0.0.1:{index}"
[loader]
instance_id = "chaos-loader"
batch_size = 500
"#,
                tables = TABLES.map(|t| format!("{DB}.{t}")),
                mysql = mysql_proxy.port,
                user = s.cdc_user,
                password = s.cdc_password,
                state = dir.path().join("state").display(),
                kafka = kafka_proxy.port,
                registry = registry_proxy.port,
                index = index_proxy.port,
            )
        };
        let metrics = format!("127.0.0.1:{metrics_port}");
        let source_config = dir.path().join("source.toml");
        std::fs::write(&source_config, config(&metrics)).unwrap();
        let loader_config = dir.path().join("loader.toml");
        std::fs::write(&loader_config, config("127.0.0.1:0")).unwrap();
        let (status, out) = run_to_exit(
            &["setup", "--config", source_config.to_str().unwrap()],
            crate::common::PATIENCE,
        );
        assert!(status.success(), "{out}");

        let kafka_port = kafka_proxy.port;
        let log = |role: &str| dir.path().join(format!("{role}-0.log"));
        let source = Sluice::start(&source_config, "source", &log("source"));
        let loader = Sluice::start(&loader_config, "loader", &log("loader"));
        World {
            dir,
            mysql,
            broker,
            registry,
            index,
            proxies: [mysql_proxy, kafka_proxy, registry_proxy, index_proxy],
            source_config,
            loader_config,
            metrics,
            source,
            loader,
            incarnations: 0,
            beats: 0,
            kafka: rdkafka::ClientConfig::new()
                .set("bootstrap.servers", format!("127.0.0.1:{kafka_port}"))
                .set("group.id", "chaos-loader")
                .set("enable.auto.commit", "false")
                .create()
                .unwrap(),
        }
    }

    /// The proxy in front of a component.
    pub fn proxy(&self, link: Link) -> &FaultProxy {
        &self.proxies[link as usize]
    }

    /// Starts a new source process (the old one must be gone).
    pub fn restart_source(&mut self) {
        self.incarnations += 1;
        let log = self
            .dir
            .path()
            .join(format!("source-{}.log", self.incarnations));
        self.source = Sluice::start(&self.source_config, "source", &log);
    }

    /// Starts a new loader process (the old one must be gone).
    pub fn restart_loader(&mut self) {
        self.incarnations += 1;
        let log = self
            .dir
            .path()
            .join(format!("loader-{}.log", self.incarnations));
        self.loader = Sluice::start(&self.loader_config, "loader", &log);
    }

    /// What the source is doing, from its metrics: "initial snapshot", "incremental
    /// snapshot" or "streaming" (None while it does not answer).
    pub fn phase(&self) -> Option<&'static str> {
        let (_, text) = http_get(&self.metrics, "/metrics").ok()?;
        let running = |kind: &str| {
            text.lines()
                .filter(|l| l.starts_with(&format!("sluice_snapshot_running{{kind=\"{kind}\"}}")))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .any(|v| v > 0.0)
        };
        Some(if running("initial") {
            "initial snapshot"
        } else if running("incremental") {
            "incremental snapshot"
        } else {
            "streaming"
        })
    }

    /// Waits until the source reports `phase` (false after `timeout`).
    pub fn wait_phase(&self, phase: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.phase() == Some(phase) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Commits a new marker value and waits until the loader has committed its record, which
    /// it does only after the index accepted it: every change committed before the marker has
    /// then gone through (one binlog, in order). Returns how long that took; panics with the
    /// processes' logs after `timeout`.
    ///
    /// The index itself is not asked: a realtime GET makes osmem-server refresh every index
    /// with pending writes, which under load takes seconds and stalls the loader's bulks.
    pub fn beat(&mut self, timeout: Duration) -> Duration {
        self.beats += 1;
        let n = self.beats;
        let started = Instant::now();
        let late = |what: &str| -> ! {
            panic!(
                "the pipeline did not recover within {timeout:?}: {what}{}",
                self.log_tails()
            )
        };
        let before = loop {
            match self.offsets(false) {
                Some(o) => break o,
                None if started.elapsed() > timeout => late("Kafka did not answer"),
                None => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        while !self
            .mysql
            .sql(&format!("UPDATE {DB}.beat SET n = {n} WHERE id = 1"))
            .status
            .success()
        {
            if started.elapsed() > timeout {
                late("the marker could not be written");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Published: the topic grew; applied: the loader committed up to its end.
        let published = loop {
            match self.offsets(false) {
                Some(end) if end.iter().sum::<i64>() > before.iter().sum::<i64>() => break end,
                _ if started.elapsed() > timeout => late("the marker was not published"),
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        loop {
            match self.offsets(true) {
                Some(done) if done.iter().zip(&published).all(|(d, p)| d >= p) => {
                    return started.elapsed();
                }
                _ if started.elapsed() > timeout => late("the marker was not indexed"),
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// The marker topic's end offsets, or the loader group's committed ones, per partition.
    fn offsets(&self, committed: bool) -> Option<Vec<i64>> {
        use rdkafka::consumer::Consumer;
        let topic = format!("chaos.{DB}.beat");
        let wait = Duration::from_secs(5);
        let mut out = Vec::new();
        if committed {
            let mut tpl = rdkafka::TopicPartitionList::new();
            for p in 0..3 {
                tpl.add_partition(&topic, p);
            }
            let got = self.kafka.committed_offsets(tpl, wait).ok()?;
            for e in got.elements() {
                out.push(e.offset().to_raw().unwrap_or(0).max(0));
            }
        } else {
            for p in 0..3 {
                out.push(self.kafka.fetch_watermarks(&topic, p, wait).ok()?.1);
            }
        }
        Some(out)
    }

    /// How many lines of the running source's log contain `needle`.
    pub fn source_logged(&self, needle: &str) -> usize {
        self.source.output().matches(needle).count()
    }

    /// The last lines of the running processes' logs.
    pub fn log_tails(&self) -> String {
        let tail = |name: &str, text: String| {
            let lines: Vec<&str> = text.lines().rev().take(40).collect();
            let lines: Vec<&str> = lines.into_iter().rev().collect();
            format!("\n--- {name} (last lines) ---\n{}", lines.join("\n"))
        };
        tail("source", self.source.output()) + &tail("loader", self.loader.output())
    }

    /// Requests an incremental snapshot of every captured table (what a user does after the
    /// index lost its data), once none is running.
    pub fn resnapshot_all(&self) {
        for t in TABLES {
            let table = format!("{DB}.{t}");
            let (status, out) = run_to_exit(
                &[
                    "snapshot",
                    "--config",
                    self.source_config.to_str().unwrap(),
                    "--table",
                    &table,
                ],
                crate::common::PATIENCE,
            );
            assert!(status.success(), "{out}");
        }
    }

    /// Removes the run's directory (once it passed).
    pub fn clean_up(&mut self) {
        self.dir.disable_cleanup(false);
    }

    /// `sluice verify` of every table: (exit code, output).
    pub fn verify(&self) -> (i32, String) {
        let (status, out) = run_to_exit(
            &["verify", "--config", self.source_config.to_str().unwrap()],
            Duration::from_secs(1800),
        );
        (status.code().unwrap_or(-1), out)
    }
}
