//! What a running pipeline tells its operators: Prometheus metrics (`sluice_*`, listed in
//! docs/metrics.md), and the health and readiness a Kubernetes probe asks for.
//!
//! The metrics are process-wide, like the process they describe: each stage updates its own
//! (mostly once per batch, not per row, so the hot paths pay a few atomic adds), and
//! [`serve`] answers `/metrics`, `/health` and `/ready` on `metrics.listen`.

mod serve;

use std::cell::RefCell;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

pub use serve::{MetricsError, serve};

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    /// Every metric family's name, exposed or not yet (a vector without samples is not).
    names: Vec<String>,
    /// The source's metrics.
    pub source: SourceMetrics,
    /// Both snapshot kinds'.
    pub snapshot: SnapshotMetrics,
    /// The publisher's.
    pub publish: PublishMetrics,
    /// The loader's.
    pub load: LoadMetrics,
    /// Where a streamed change's time goes, stage by stage.
    pub stages: StageMetrics,
    /// What `/ready` answers from.
    pub readiness: Readiness,
}

/// The source: connection, position, what the binlog brought.
pub struct SourceMetrics {
    /// 1 while the binlog connection streams.
    pub connected: IntGauge,
    /// Byte offset of the last stored checkpoint in its binlog file.
    pub checkpoint_position: IntGauge,
    /// The last stored checkpoint's binlog file and GTID state, as labels of a constant 1.
    pub checkpoint_info: IntGaugeVec,
    /// Now minus the timestamp of the last event read; 0 once a heartbeat shows the server
    /// has nothing newer.
    pub seconds_behind: IntGauge,
    /// Binlog events read.
    pub events: IntCounter,
    /// Row changes read, by table and op.
    pub row_changes: IntCounterVec,
    /// Transactions committed.
    pub transactions: IntCounter,
    /// Binlog bytes read.
    pub bytes: IntCounter,
    /// Binlog connections re-established.
    pub reconnects: IntCounter,
    /// Control events without row data skipped.
    pub skipped_events: IntCounter,
    /// Rows events of tables not captured, skipped without decoding.
    pub filtered_events: IntCounter,
    /// Zero or impossible dates turned into null.
    pub zero_dates: IntCounter,
    /// DDL statements read.
    pub ddl_statements: IntCounter,
}

/// Initial and incremental snapshots.
pub struct SnapshotMetrics {
    /// Tables a snapshot is to copy, by kind (`initial`, `incremental`).
    pub tables: IntGaugeVec,
    /// Tables not yet copied, by kind.
    pub tables_remaining: IntGaugeVec,
    /// Rows copied, by table and kind.
    pub rows: IntCounterVec,
    /// The server's row estimate, by table.
    pub rows_estimate: IntGaugeVec,
    /// 1 while a snapshot of the kind runs.
    pub running: IntGaugeVec,
    /// Snapshots completed, by kind.
    pub completed: IntCounterVec,
    /// Incremental snapshot windows closed, by table.
    pub windows: IntCounterVec,
}

/// The publisher: records to Kafka, checkpoints stored.
pub struct PublishMetrics {
    /// Records handed to the producer.
    pub produced: IntCounter,
    /// Records Kafka acknowledged.
    pub acknowledged: IntCounter,
    /// Records Kafka refused.
    pub failed: IntCounter,
    /// Checkpoints stored.
    pub checkpoints: IntCounter,
    /// Tables held back by an incompatible schema.
    pub tables_held: IntGauge,
}

/// The loader: documents to the index.
pub struct LoadMetrics {
    /// High watermark minus committed offset, by topic and partition.
    pub consumer_lag: IntGaugeVec,
    /// Documents applied, by op (`index`, `delete`, `truncate`).
    pub documents: IntCounterVec,
    /// Bulk requests sent.
    pub bulk_requests: IntCounter,
    /// Bulk request durations.
    pub bulk_duration: Histogram,
    /// Batches retried because the index server was unavailable.
    pub retries: IntCounter,
    /// Records sent to the dead-letter topic.
    pub dead_letters: IntCounter,
    /// Tables held because their index cannot take a new schema.
    pub tables_held: IntGauge,
    /// Partitions assigned to this loader.
    pub partitions_assigned: IntGauge,
    /// From the change's commit (as the publisher read it) to its bulk's acknowledgement.
    pub commit_to_indexed: HistogramVec,
}

/// The stages of a streamed change on its way to the index, each a child of
/// `sluice_stage_seconds{stage}` (finer buckets than the other histograms: stages take
/// fractions of a millisecond to tens of milliseconds). Source and loader each fill theirs;
/// a stage spanning the two processes is timed from the Kafka record's timestamp.
pub struct StageMetrics {
    /// Binlog event read -> its records handed to the producer (decoding, encoding, queues).
    pub read_to_produced: Histogram,
    /// A transaction's records handed to the producer -> Kafka acknowledged the last of them.
    pub produced_to_acked: Histogram,
    /// The record's Kafka timestamp (set when produced) -> the loader read it (millisecond
    /// resolution: two clocks' milliseconds).
    pub produced_to_fetched: Histogram,
    /// The loader read the record -> its bulk was sent (batching, lane waits).
    pub fetched_to_sent: Histogram,
    /// The bulk sent (index mappings made first where a schema is new) -> the index server
    /// answered it.
    pub sent_to_acked: Histogram,
}

/// What `/ready` checks: each role that runs says whether it is working.
#[derive(Default)]
pub struct Readiness {
    /// A source runs in this process.
    pub source_runs: AtomicBool,
    /// A loader runs in this process.
    pub loader_runs: AtomicBool,
    /// The source streams the binlog.
    pub streaming: AtomicBool,
    /// The loader holds partitions of its group.
    pub assigned: AtomicBool,
    /// Outages being waited out (binlog, database, registry, Kafka, index server).
    waits: AtomicU32,
    /// Since when (ms since the epoch) some outage has been waited out; 0 when none is.
    waiting_since_ms: AtomicI64,
}

impl Readiness {
    /// Why the process is not ready, if it is not; `retry_ms` is how long an outage may be
    /// waited out before it counts.
    pub fn not_ready(&self, now_ms: i64, retry_ms: i64) -> Option<&'static str> {
        let load = |b: &AtomicBool| b.load(Ordering::Relaxed);
        if load(&self.source_runs) && !load(&self.streaming) {
            return Some("the source is not streaming the binlog");
        }
        if load(&self.loader_runs) && !load(&self.assigned) {
            return Some("the loader has no partitions assigned");
        }
        let since = self.waiting_since_ms.load(Ordering::Relaxed);
        if since > 0 && now_ms - since > retry_ms {
            return Some(
                "a component has been unreachable for longer than metrics.ready_retry_secs (the \
                 log says which)",
            );
        }
        None
    }

    /// An outage began to be waited out.
    pub fn wait_begins(&self, now_ms: i64) {
        if self.waits.fetch_add(1, Ordering::Relaxed) == 0 {
            self.waiting_since_ms.store(now_ms, Ordering::Relaxed);
        }
    }

    /// An outage that was waited out is over (or its wait given up).
    pub fn wait_ends(&self) {
        if self.waits.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.waiting_since_ms.store(0, Ordering::Relaxed);
        }
    }
}

/// The metrics of this process.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// Seconds buckets from 1 ms to ~33 s, doubling: commit-to-indexed and bulk latencies.
fn latency_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.001, 2.0, 16).unwrap_or_default()
}

/// From 0.1 ms to about 5.7 s, each bucket 1.5 times the one before.
fn stage_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.000_1, 1.5, 28).unwrap_or_default()
}

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new();
        let r = Registrar {
            registry: &registry,
            names: RefCell::default(),
        };
        let source = SourceMetrics {
            connected: r.gauge(
                "sluice_source_connected",
                "1 while the binlog connection streams",
            ),
            checkpoint_position: r.gauge(
                "sluice_source_checkpoint_position_bytes",
                "Byte offset of the last stored checkpoint in its binlog file",
            ),
            checkpoint_info: r.gauge_vec(
                "sluice_source_checkpoint_info",
                "The last stored checkpoint's binlog file and GTID state (value 1)",
                &["file", "gtid"],
            ),
            seconds_behind: r.gauge(
                "sluice_source_seconds_behind",
                "Now minus the timestamp of the last binlog event read (0 after a heartbeat)",
            ),
            events: r.counter("sluice_source_events_total", "Binlog events read"),
            row_changes: r.counter_vec(
                "sluice_source_row_changes_total",
                "Row changes read from the binlog",
                &["table", "op"],
            ),
            transactions: r.counter(
                "sluice_source_transactions_total",
                "Transactions committed in the binlog",
            ),
            bytes: r.counter("sluice_source_bytes_total", "Binlog bytes read"),
            reconnects: r.counter(
                "sluice_source_reconnects_total",
                "Binlog connections re-established",
            ),
            skipped_events: r.counter(
                "sluice_source_skipped_events_total",
                "Control events without row data skipped",
            ),
            filtered_events: r.counter(
                "sluice_source_filtered_events_total",
                "Rows events of tables not captured, skipped without decoding",
            ),
            zero_dates: r.counter(
                "sluice_source_zero_dates_total",
                "Zero or impossible dates turned into null",
            ),
            ddl_statements: r.counter(
                "sluice_source_ddl_statements_total",
                "DDL statements read from the binlog",
            ),
        };
        let snapshot = SnapshotMetrics {
            tables: r.gauge_vec(
                "sluice_snapshot_tables",
                "Tables a snapshot is to copy",
                &["kind"],
            ),
            tables_remaining: r.gauge_vec(
                "sluice_snapshot_tables_remaining",
                "Tables not yet copied",
                &["kind"],
            ),
            rows: r.counter_vec(
                "sluice_snapshot_rows_total",
                "Rows copied by snapshots",
                &["table", "kind"],
            ),
            rows_estimate: r.gauge_vec(
                "sluice_snapshot_rows_estimate",
                "The server's estimate of a table's rows",
                &["table"],
            ),
            running: r.gauge_vec(
                "sluice_snapshot_running",
                "1 while a snapshot of the kind runs",
                &["kind"],
            ),
            completed: r.counter_vec(
                "sluice_snapshot_completed_total",
                "Table snapshots completed",
                &["kind"],
            ),
            windows: r.counter_vec(
                "sluice_snapshot_windows_total",
                "Incremental snapshot windows closed",
                &["table"],
            ),
        };
        let publish = PublishMetrics {
            produced: r.counter(
                "sluice_publish_records_produced_total",
                "Records handed to the Kafka producer",
            ),
            acknowledged: r.counter(
                "sluice_publish_records_acknowledged_total",
                "Records Kafka acknowledged",
            ),
            failed: r.counter(
                "sluice_publish_records_failed_total",
                "Records Kafka refused",
            ),
            checkpoints: r.counter(
                "sluice_publish_checkpoints_stored_total",
                "Checkpoints stored after Kafka acknowledged everything before them",
            ),
            tables_held: r.gauge(
                "sluice_publish_tables_held",
                "Tables held back by a schema the registry refused",
            ),
        };
        let load = LoadMetrics {
            consumer_lag: r.gauge_vec(
                "sluice_loader_consumer_lag_records",
                "High watermark minus the group's committed offset",
                &["topic", "partition"],
            ),
            documents: r.counter_vec(
                "sluice_loader_documents_total",
                "Documents applied to the index",
                &["op"],
            ),
            bulk_requests: r.counter("sluice_loader_bulk_requests_total", "Bulk requests sent"),
            bulk_duration: r.histogram(
                "sluice_loader_bulk_duration_seconds",
                "Duration of bulk requests",
            ),
            retries: r.counter(
                "sluice_loader_retries_total",
                "Batches retried while the index server was unavailable",
            ),
            dead_letters: r.counter(
                "sluice_loader_dead_letters_total",
                "Records sent to the dead-letter topic",
            ),
            tables_held: r.gauge(
                "sluice_loader_tables_held",
                "Tables held because their index cannot take a new schema",
            ),
            partitions_assigned: r.gauge(
                "sluice_loader_partitions_assigned",
                "Partitions assigned to this loader",
            ),
            commit_to_indexed: r.histogram_vec(
                "sluice_commit_to_indexed_seconds",
                "From a change's commit, as Sluice read it, to its bulk's acknowledgement",
                &["table"],
            ),
        };
        let stage = r.register(HistogramVec::new(
            HistogramOpts::new(
                "sluice_stage_seconds",
                "Time a streamed change spends in each stage on its way to the index",
            )
            .buckets(stage_buckets()),
            &["stage"],
        ));
        let child = |name: &str| stage.with_label_values(&[name]);
        let stages = StageMetrics {
            read_to_produced: child("read_to_produced"),
            produced_to_acked: child("produced_to_acked"),
            produced_to_fetched: child("produced_to_fetched"),
            fetched_to_sent: child("fetched_to_sent"),
            sent_to_acked: child("sent_to_acked"),
        };
        let info = r.gauge_vec(
            "sluice_build_info",
            "Sluice's version (value 1)",
            &["version"],
        );
        info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let mut names = r.names.into_inner();
        names.push(RESIDENT.into());
        Metrics {
            registry,
            names,
            source,
            snapshot,
            publish,
            load,
            stages,
            readiness: Readiness::default(),
        }
    }

    /// Every metric family's name.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The Prometheus text exposition of every metric, with the process's resident memory.
    pub fn text(&self) -> String {
        let mut families = self.registry.gather();
        let rss = IntGauge::new(RESIDENT, "Resident memory of the process");
        if let Ok(rss) = rss {
            rss.set(resident_bytes());
            families.extend(prometheus::core::Collector::collect(&rss));
        }
        prometheus::TextEncoder::new()
            .encode_to_string(&families)
            .unwrap_or_default()
    }
}

/// The resident memory gauge, read at each scrape.
const RESIDENT: &str = "sluice_process_resident_memory_bytes";

/// The process's resident set size from `/proc/self/statm` (0 where there is none).
fn resident_bytes() -> i64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<i64>().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Creates and registers the metrics. Their names and labels are constants: a definition
/// the registry refuses is a programming error, which the unit test that builds them all
/// catches.
struct Registrar<'r> {
    registry: &'r Registry,
    names: RefCell<Vec<String>>,
}

impl Registrar<'_> {
    fn register<C: prometheus::core::Collector + Clone + 'static>(
        &self,
        made: prometheus::Result<C>,
    ) -> C {
        let c = made.unwrap_or_else(|e| panic!("metric definition: {e}"));
        let mut names = self.names.borrow_mut();
        names.extend(
            prometheus::core::Collector::desc(&c)
                .iter()
                .map(|d| d.fq_name.clone()),
        );
        self.registry
            .register(Box::new(c.clone()))
            .unwrap_or_else(|e| panic!("metric registration: {e}"));
        c
    }

    fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.register(IntCounter::with_opts(Opts::new(name, help)))
    }

    fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.register(IntCounterVec::new(Opts::new(name, help), labels))
    }

    fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.register(IntGauge::with_opts(Opts::new(name, help)))
    }

    fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.register(IntGaugeVec::new(Opts::new(name, help), labels))
    }

    fn histogram(&self, name: &str, help: &str) -> Histogram {
        self.register(Histogram::with_opts(
            HistogramOpts::new(name, help).buckets(latency_buckets()),
        ))
    }

    fn histogram_vec(&self, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
        self.register(HistogramVec::new(
            HistogramOpts::new(name, help).buckets(latency_buckets()),
            labels,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_defined_and_exposed_with_its_prefix() {
        let m = metrics();
        m.source.row_changes.with_label_values(&["d.t", "c"]).inc();
        m.load
            .commit_to_indexed
            .with_label_values(&["d.t"])
            .observe(0.01);
        let text = m.text();
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let name = line.split_whitespace().nth(2).unwrap_or_default();
            assert!(name.starts_with("sluice_"), "{line}");
        }
        for name in [
            "sluice_source_row_changes_total{op=\"c\",table=\"d.t\"} 1",
            "sluice_build_info{version=",
            "sluice_process_resident_memory_bytes ",
            "sluice_commit_to_indexed_seconds_bucket{table=\"d.t\",le=\"0.016\"} 1",
        ] {
            assert!(text.contains(name), "{name} in\n{text}");
        }
    }

    #[test]
    fn the_docs_and_the_dashboard_name_exactly_the_metrics_there_are() {
        let families = metrics().names();
        let docs = include_str!("../../docs/metrics.md");
        for f in families {
            assert!(
                docs.contains(&format!("`{f}")),
                "{f} is not in docs/metrics.md"
            );
        }
        let dashboard = include_str!("../../docker/grafana/dashboards/sluice.json");
        let used = dashboard.split("sluice_").skip(1).map(|rest| {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            format!("sluice_{name}")
        });
        for name in used {
            let family = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name);
            assert!(
                families.iter().any(|f| f == family),
                "the dashboard uses {name}, which no metric is"
            );
        }
    }

    #[test]
    fn readiness_names_what_is_missing() {
        let r = Readiness::default();
        assert_eq!(r.not_ready(0, 60_000), None);
        r.source_runs.store(true, Ordering::Relaxed);
        assert!(r.not_ready(0, 60_000).unwrap().contains("not streaming"));
        r.streaming.store(true, Ordering::Relaxed);
        r.loader_runs.store(true, Ordering::Relaxed);
        assert!(r.not_ready(0, 60_000).unwrap().contains("no partitions"));
        r.assigned.store(true, Ordering::Relaxed);
        r.wait_begins(1_000);
        r.wait_begins(20_000);
        assert_eq!(r.not_ready(30_000, 60_000), None);
        assert!(r.not_ready(70_000, 60_000).unwrap().contains("unreachable"));
        r.wait_ends();
        assert!(r.not_ready(70_000, 60_000).is_some(), "one wait goes on");
        r.wait_ends();
        assert_eq!(r.not_ready(70_000, 60_000), None);
    }
}
