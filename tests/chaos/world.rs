//! Everything a chaos run breaks, all private to it: a MariaDB server, a tansu broker, a
//! `sluice registry`, an osmem-server, a fault proxy in front of each, and Sluice's source and
//! loader as separate processes.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::common::private::{PrivateServer, ROW_CDC};
use crate::common::proxy::FaultProxy;
use crate::common::registry::{Broker, Registry};
use crate::common::{
    PrivateOsmem, Sluice, free_port, http_get, request_snapshot, run_to_exit, stack,
};

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

/// Fields drop in order: Sluice's processes first, then the servers, the directory last.
pub struct World {
    pub source: Sluice,
    pub loader: Sluice,
    pub mysql: PrivateServer,
    pub broker: Broker,
    pub registry: Registry,
    pub index: PrivateOsmem,
    proxies: [FaultProxy; 4],
    pub source_config: PathBuf,
    loader_config: PathBuf,
    metrics: String,
    incarnations: u32,
    beats: u64,
    /// Asks the broker for offsets, with the loader's group id (it never joins).
    kafka: rdkafka::consumer::BaseConsumer,
    pub dir: tempfile::TempDir,
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
group_id = "chaos-loader"
instance_id = "chaos-loader"
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
        self.source = self.spawn("source");
    }

    /// Starts a new loader process (the old one must be gone).
    pub fn restart_loader(&mut self) {
        self.loader = self.spawn("loader");
    }

    /// A process of `role` with its own log file.
    fn spawn(&mut self, role: &str) -> Sluice {
        self.incarnations += 1;
        let log = format!("{role}-{}.log", self.incarnations);
        let config = match role {
            "source" => &self.source_config,
            _ => &self.loader_config,
        };
        Sluice::start(config, role, &self.dir.path().join(log))
    }

    /// What the source is doing, from its metrics: "initial snapshot", "incremental
    /// snapshot" (one running or queued) or "streaming" (None while it does not answer).
    pub fn phase(&self) -> Option<&'static str> {
        let (_, text) = http_get(&self.metrics, "/metrics").ok()?;
        let busy = |metric: &str, kind: &str| {
            let series = format!("{metric}{{kind=\"{kind}\"}} ");
            text.lines()
                .filter_map(|l| l.strip_prefix(&series)?.parse::<f64>().ok())
                .any(|v| v > 0.0)
        };
        let pending = |kind| {
            busy("sluice_snapshot_running", kind) || busy("sluice_snapshot_tables_remaining", kind)
        };
        Some(if pending("initial") {
            "initial snapshot"
        } else if pending("incremental") {
            "incremental snapshot"
        } else {
            "streaming"
        })
    }

    /// Panics with the logs if the source or the loader exited on its own.
    pub fn assert_alive(&mut self) {
        let (source, loader) = (self.source.is_running(), self.loader.is_running());
        assert!(
            source && loader,
            "a process exited on its own (source running: {source}, loader running: \
             {loader}){}",
            self.log_tails()
        );
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

    /// Commits a new marker and waits until everything committed before it is in the index:
    /// the source's stored checkpoint passed the server's binlog position read after the
    /// marker (so Kafka acknowledged every record up to it), then the loader's group committed
    /// every partition of every table's topic up to the end offsets read at that moment (it
    /// commits only what the index accepted). Returns how long that took; panics with the
    /// processes' logs after `timeout`. (The index itself is not asked: a realtime GET makes
    /// osmem-server refresh every index with pending writes, which under load takes seconds.)
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
        let wait = || std::thread::sleep(Duration::from_millis(20));
        let target = loop {
            let marked = self.mysql.sql(&format!(
                "UPDATE {DB}.beat SET n = {n} WHERE id = 1; SHOW MASTER STATUS"
            ));
            let at = marked
                .status
                .success()
                .then(|| binlog_position(&String::from_utf8_lossy(&marked.stdout)))
                .flatten();
            if let Some(at) = at {
                break at;
            }
            if started.elapsed() > timeout {
                late("the marker could not be written");
            }
            wait();
        };
        while self.source_checkpoint().is_none_or(|at| at < target) {
            if started.elapsed() > timeout {
                late(&format!(
                    "the source's checkpoint {:?} did not pass {target:?}",
                    self.source_checkpoint()
                ));
            }
            wait();
        }
        let ends = loop {
            match self.offsets(false) {
                Some(ends) => break ends,
                None if started.elapsed() > timeout => late("Kafka did not answer"),
                None => wait(),
            }
        };
        loop {
            match self.offsets(true) {
                Some(done) if done.iter().zip(&ends).all(|(d, e)| d >= e) => {
                    return started.elapsed();
                }
                seen if started.elapsed() > timeout => late(&format!(
                    "the loader committed {seen:?} of the end offsets {ends:?}"
                )),
                _ => wait(),
            }
        }
    }

    /// The source's stored checkpoint, (binlog file number, offset), from its metrics.
    fn source_checkpoint(&self) -> Option<(u64, u64)> {
        let (_, text) = http_get(&self.metrics, "/metrics").ok()?;
        let file = text
            .lines()
            .find_map(|l| l.strip_prefix("sluice_source_checkpoint_info{file=\""))?;
        let number = file.split('"').next()?.rsplit('.').next()?.parse().ok()?;
        let offset = text
            .lines()
            .find_map(|l| l.strip_prefix("sluice_source_checkpoint_position_bytes "))?
            .trim()
            .parse::<f64>()
            .ok()?;
        Some((number, offset as u64))
    }

    /// End offsets of every partition of every captured table's topic, or the loader group's
    /// committed ones, in one order.
    fn offsets(&self, committed: bool) -> Option<Vec<i64>> {
        use rdkafka::consumer::Consumer;
        let wait = Duration::from_secs(5);
        let partitions: Vec<(String, i32)> = TABLES
            .iter()
            .flat_map(|t| (0..3).map(move |p| (format!("chaos.{DB}.{t}"), p)))
            .collect();
        if committed {
            let mut tpl = rdkafka::TopicPartitionList::new();
            for (topic, p) in &partitions {
                tpl.add_partition(topic, *p);
            }
            let got = self.kafka.committed_offsets(tpl, wait).ok()?;
            partitions
                .iter()
                .map(|(topic, p)| {
                    let offset = got.find_partition(topic, *p)?.offset();
                    Some(offset.to_raw().unwrap_or(0).max(0))
                })
                .collect()
        } else {
            partitions
                .iter()
                .map(|(topic, p)| Some(self.kafka.fetch_watermarks(topic, *p, wait).ok()?.1))
                .collect()
        }
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
    /// index lost its data).
    pub fn resnapshot_all(&self) {
        for t in TABLES {
            request_snapshot(&self.source_config, &format!("{DB}.{t}"));
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

/// The (file number, offset) of `SHOW MASTER STATUS` in the mariadb client's tab-separated
/// output.
fn binlog_position(out: &str) -> Option<(u64, u64)> {
    let row = out.lines().nth(1)?;
    let mut cols = row.split('\t');
    let number = cols.next()?.rsplit('.').next()?.parse().ok()?;
    let offset = cols.next()?.trim().parse().ok()?;
    Some((number, offset))
}
