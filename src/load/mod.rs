//! Stage 4, the loader: Kafka -> Elasticsearch.
//!
//! A consumer group over the table topics; records are decoded through the registry into
//! batches (count, body size or linger time), one lane of partitions per bulk in flight
//! (`lanes`), written with external versions, and their offsets committed only after every
//! item of the bulk settled (docs/design.md, invariant 3). A record that can never be applied
//! (undecodable, unknown schema, refused by the index's mapping) goes to the dead-letter topic
//! with headers saying where it came from and why, and the partition goes on.

mod apply;
pub mod batch;
pub mod bulk;
pub mod dead_letter;
pub mod document;
mod error;
pub mod index;
pub mod lanes;
pub mod mapping;
pub mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use rdkafka::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ElasticsearchConfig, KafkaConfig, LoaderConfig, VectorMapping};
use crate::kafka::{self, KafkaSetupError};
use crate::metrics::metrics;
use crate::wire::registry;
use crate::wire::topic;
use apply::{BulkContext, Committed, server_vector_mapping, settle};
use batch::Registry;
use dead_letter::DeadLetters;
use index::IndexWriter;
use lanes::{InFlight, Lane, Lanes, Partition, Rebalances, offset_list};

pub use error::LoadError;

/// The longest a full read-ahead goes unchecked (librdkafka's `fetch.queue.backoff.ms`).
const READ_AHEAD_RECHECK: Duration = Duration::from_millis(10);

/// Runs the loader, writing to the index server `es_cfg`, until `shutdown` (after finishing the batch at hand) or an error.
pub async fn run(
    cfg: &Config,
    es_cfg: &ElasticsearchConfig,
    shutdown: CancellationToken,
) -> Result<(), LoadError> {
    // Exact tables are subscribed by name (created here if the source has not yet); table
    // patterns by regular expression, so their topics join as the source creates them.
    let prefix = &cfg.kafka.topic_prefix;
    let patterns = &cfg.tables;
    let exact: Vec<String> = patterns
        .iter()
        .filter_map(|p| p.exact())
        .map(|t| topic::table_topic(prefix, &t))
        .collect();
    if !kafka::ensure_topics(&cfg.kafka, &exact, &shutdown).await? {
        return Ok(());
    }
    let topics: Vec<String> = patterns
        .iter()
        .map(|p| match p.exact() {
            Some(t) => topic::table_topic(prefix, &t),
            None => topic::subscription(prefix, &p.db, &p.table),
        })
        .collect();
    let client = consumer_config(&cfg.kafka, &cfg.loader);
    let in_flight = Arc::new(InFlight::default());
    let consumer: Arc<StreamConsumer<Rebalances>> = Arc::new(
        client
            .create_with_context(Rebalances::new(in_flight.clone()))
            .map_err(|e| LoadError::Setup(KafkaSetupError::client(e)))?,
    );
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&names).map_err(LoadError::Consumer)?;
    let registry_settings = registry::settings(cfg.registry.endpoint())?;
    let Some(dead) =
        DeadLetters::new(&cfg.kafka, cfg.loader.dead_letter_topic.clone(), &shutdown).await?
    else {
        return Ok(());
    };
    let shared = Arc::new(BulkContext {
        writer: IndexWriter::new(es_cfg)?,
        dead,
        consumer: consumer.clone(),
        held: Mutex::default(),
        retry_started: Notify::new(),
        shutdown: shutdown.clone(),
    });
    let mut options = document::Options::new(&cfg.loader);
    if options.mapping.vectors == VectorMapping::Auto {
        let Some(vectors) = server_vector_mapping(&shared.writer, &shutdown).await? else {
            return Ok(());
        };
        options.mapping.vectors = vectors;
    }
    let mut registry = Registry::new(registry_settings, options);
    tokio::spawn(watch_lag(consumer.clone(), shutdown.clone()));
    let linger = cfg.loader.linger;
    let instance = client.get("group.instance.id").unwrap_or("");
    tracing::info!(group = %cfg.loader.group_id, %instance, topics = ?topics, max_in_flight = cfg.loader.max_in_flight, "loader consuming");

    let mut lanes = Lanes::new(cfg.loader.max_in_flight);
    let mut bulks: JoinSet<(usize, Result<Option<Committed>, LoadError>)> = JoinSet::new();
    // What settled bulks committed, committed once more synchronously on the way out.
    let mut committed: BTreeMap<Partition, i64> = BTreeMap::new();
    let mut stopping = false;
    loop {
        forget_revoked(&consumer, &mut lanes, &mut committed);
        // Stopping sends whatever was read: a graceful stop leaves nothing to apply again.
        let now = Instant::now();
        for (i, lane) in lanes.iter_mut() {
            if lane.busy {
                continue;
            }
            // Its bulk settled: a failing lane's partitions read again (a held table's stay
            // paused).
            lane.retrying.store(false, Ordering::Relaxed);
            if !lane.paused.is_empty() {
                let held = shared.held();
                let resume: Vec<Partition> = std::mem::take(&mut lane.paused)
                    .into_iter()
                    .filter(|(topic, _)| !held.contains(topic))
                    .collect();
                drop(held);
                consumer
                    .resume(&offset_list(resume.iter().map(|p| (p, &0))))
                    .map_err(LoadError::Consumer)?;
            }
            let due = stopping
                || lane.batch.is_full(&cfg.loader)
                || lane.deadline.is_some_and(|d| d <= now);
            if lane.batch.records == 0 || !due {
                continue;
            }
            let mut batch = std::mem::take(&mut lane.batch);
            lane.deadline = None;
            let held = shared.held();
            if !held.is_empty() {
                // Read before its table was held; it waits with the table.
                batch.forget(|topic, _| held.contains(topic));
            }
            drop(held);
            if batch.records == 0 {
                continue;
            }
            lane.busy = true;
            let flight = in_flight.start(batch.next_offsets.keys().cloned().collect());
            let (shared, retrying) = (shared.clone(), lane.retrying.clone());
            bulks.spawn(async move {
                let settled = settle(&shared, batch, &retrying).await;
                drop(flight);
                (i, settled)
            });
        }
        if stopping && bulks.is_empty() {
            break;
        }
        let wake = lanes.next_deadline();
        tokio::select! {
            biased;
            done = bulks.join_next(), if !bulks.is_empty() => {
                let (lane, settled) = match done.expect("a non-empty set yields a result") {
                    Ok(done) => done,
                    Err(e) => std::panic::resume_unwind(e.into_panic()),
                };
                lanes.get(lane).busy = false;
                match settled? {
                    Some(offsets) => committed.extend(offsets),
                    None => stopping = true, // interrupted while retrying: replayed later
                }
            }
            () = shutdown.cancelled(), if !stopping => stopping = true,
            () = sleep_until(wake) => {}
            () = shared.retry_started.notified() => {
                // The failing lanes' partitions wait; the other lanes go on.
                for i in 0..cfg.loader.max_in_flight.get() {
                    let all = lanes.partitions_of(i);
                    let lane = lanes.get(i);
                    if !(lane.busy && lane.retrying.load(Ordering::Relaxed)) {
                        continue;
                    }
                    pause(&consumer, lane, all)?;
                }
            }
            () = tokio::time::sleep(RECOMMIT), if consumer.context().commit_failed() => {
                consumer.context().take_commit_failed();
                let again = offset_list(owned_offsets(&consumer, &committed)?);
                if again.count() > 0 {
                    consumer.commit(&again, CommitMode::Async).map_err(LoadError::Consumer)?;
                }
            }
            message = consumer.recv(), if !stopping && !lanes.blocked(&cfg.loader) => {
                // What the consumer already holds joins this record's batch before the loop
                // sends it: without a linger a batch goes out once nothing more is ready, so
                // a trickle goes one record at a time and batches grow with the load. At most a
                // batch's worth is taken at once, so the other arms (shutdown, settled bulks)
                // wait for no more than that.
                let mut next = Some(message);
                let mut taken = 0;
                while let Some(message) = next.take() {
                    taken += 1;
                    // A rebalance runs inside recv(): what was read before it for a partition
                    // revoked (and maybe assigned again) must go before this message, read
                    // after.
                    forget_revoked(&consumer, &mut lanes, &mut committed);
                    let message = match message {
                        // Read again after the restart that follows a reindex.
                        Ok(m) if shared.held().contains(m.topic()) => None,
                        Ok(m) => Some(m.detach()),
                        Err(e) => {
                            // Transient broker and metadata errors; librdkafka keeps retrying.
                            tracing::warn!(error = %e, "Kafka consumer error");
                            break;
                        }
                    };
                    if let Some(message) = message {
                        let i = lanes.lane_of(message.topic(), message.partition());
                        let lane = lanes.get(i);
                        // A partition of a failing lane maybe not seen before it failed.
                        let pause_too = lane
                            .retrying
                            .load(Ordering::Relaxed)
                            .then(|| (message.topic().to_string(), message.partition()));
                        if !batch::add(&mut lane.batch, message, &mut registry, &shared.writer, &shutdown).await? {
                            stopping = true; // interrupted while the registry was away
                            break;
                        }
                        lane.deadline.get_or_insert_with(|| Instant::now() + linger);
                        if let Some(p) = pause_too {
                            pause(&consumer, lane, vec![p])?;
                        }
                        if lane.batch.is_full(&cfg.loader) {
                            break;
                        }
                    }
                    if taken < cfg.loader.batch_size.get()
                        && !lanes.blocked(&cfg.loader)
                        && !shutdown.is_cancelled()
                    {
                        next = consumer.recv().now_or_never();
                    }
                }
            }
        }
    }
    let last = offset_list(owned_offsets(&consumer, &committed)?);
    if last.count() > 0 {
        consumer
            .commit(&last, CommitMode::Sync)
            .map_err(LoadError::Consumer)?;
    }
    Ok(())
}

/// The loader's consumer: Sluice's defaults, the user's properties, then what lossless loading
/// rests on (its group, offsets committed by the loader alone, a new group from the start).
fn consumer_config(kafka_cfg: &KafkaConfig, loader: &LoaderConfig) -> ClientConfig {
    let fetch_wait = loader.fetch_wait.as_millis().to_string();
    // librdkafka reads ahead up to 100,000 records by default, so a backlog is soon all
    // prefetched and the consumer then asks the broker for more every `fetch_wait` while the
    // index works through it: on a broker that answers a waiting fetch only when the wait is
    // over (tansu) that costs most of a core the index server needs. Read ahead only what
    // keeps every bulk in flight busy twice over (within librdkafka's range), in records and
    // in bytes: records of wide rows would otherwise fill librdkafka's default 64 MiB.
    let twice_in_flight = |per_bulk: usize| {
        2usize
            .saturating_mul(per_bulk)
            .saturating_mul(loader.max_in_flight.get())
    };
    let read_ahead = twice_in_flight(loader.batch_size.get())
        .clamp(1, 10_000_000)
        .to_string();
    // librdkafka counts this setting's "kbytes" in thousands of bytes.
    let read_ahead_kb = (twice_in_flight(loader.batch_bytes.get()) / 1000)
        .clamp(1, 2_097_151)
        .to_string();
    // How soon librdkafka looks again at a full read-ahead: a local check, no request, and
    // nothing else wakes it when the queue drains, so short whatever the fetch wait.
    let recheck = loader
        .fetch_wait
        .min(READ_AHEAD_RECHECK)
        .as_millis()
        .to_string();
    let mut client = kafka::client_config(
        kafka_cfg,
        kafka::ClientRole::Consumer,
        &[
            ("fetch.wait.max.ms", &fetch_wait),
            ("queued.min.messages", &read_ahead),
            ("queued.max.messages.kbytes", &read_ahead_kb),
            ("fetch.queue.backoff.ms", &recheck),
            // New topics matching a table pattern are found at the next metadata refresh.
            ("topic.metadata.refresh.interval.ms", "5000"),
        ],
    );
    // Static membership: after a crash the restarted loader takes its old member id back.
    // Without it tansu hands a dead leader's partitions to nobody; with two
    // static members tansu rebalances forever, so several loaders on tansu
    // turn it off with `instance_id = ""`.
    let instance = loader.instance_id.as_deref().unwrap_or("");
    if !instance.is_empty() {
        client.set("group.instance.id", instance);
    }
    client
        .set("group.id", &loader.group_id)
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false");
    client
}

/// Pauses those of `partitions` the lane has not paused yet: its bulk is failing.
fn pause(
    consumer: &StreamConsumer<Rebalances>,
    lane: &mut Lane,
    partitions: Vec<Partition>,
) -> Result<(), LoadError> {
    let new: Vec<Partition> = partitions
        .into_iter()
        .filter(|p| !lane.paused.contains(p))
        .collect();
    if !new.is_empty() {
        consumer
            .pause(&offset_list(new.iter().map(|p| (p, &0))))
            .map_err(LoadError::Consumer)?;
        lane.paused.extend(new);
    }
    Ok(())
}

/// Drops what this loader read but did not send for partitions revoked since the last call,
/// and what it committed for them (another member may have committed further since): the
/// next owner, maybe this loader again, reads on from the group's committed offset.
fn forget_revoked(
    consumer: &StreamConsumer<Rebalances>,
    lanes: &mut Lanes,
    committed: &mut BTreeMap<Partition, i64>,
) {
    let revoked = consumer.context().take_revoked();
    if revoked.is_empty() {
        return;
    }
    lanes.forget(&revoked);
    for p in &revoked {
        committed.remove(p);
    }
}

/// How soon offsets whose commit failed are committed again.
const RECOMMIT: Duration = Duration::from_secs(1);

/// The committed offsets of the partitions this loader still owns.
fn owned_offsets<'a>(
    consumer: &StreamConsumer<Rebalances>,
    committed: &'a BTreeMap<Partition, i64>,
) -> Result<Vec<(&'a Partition, &'a i64)>, LoadError> {
    let assigned = consumer.assignment().map_err(LoadError::Consumer)?;
    let assigned: BTreeSet<Partition> = assigned
        .elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect();
    Ok(committed
        .iter()
        .filter(|(p, _)| assigned.contains(*p))
        .collect())
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// How often the consumer lag is measured.
const LAG_EVERY: Duration = Duration::from_secs(10);

/// Measures, every [`LAG_EVERY`] until `shutdown`, each assigned partition's lag: its high
/// watermark minus the group's committed offset (from the low watermark when nothing is
/// committed yet). The broker calls block, so they run on the blocking pool.
async fn watch_lag(consumer: Arc<StreamConsumer<Rebalances>>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(LAG_EVERY) => {}
            () = shutdown.cancelled() => return,
        }
        let c = consumer.clone();
        let measured = tokio::task::spawn_blocking(move || {
            let committed = c.committed(LAG_EVERY).ok()?;
            let lag: Vec<(String, i32, i64)> = committed
                .elements()
                .iter()
                .filter_map(|e| {
                    let (low, high) = c
                        .fetch_watermarks(e.topic(), e.partition(), LAG_EVERY)
                        .ok()?;
                    let from = e.offset().to_raw().filter(|o| *o >= 0).unwrap_or(low);
                    Some((e.topic().to_string(), e.partition(), (high - from).max(0)))
                })
                .collect();
            Some(lag)
        })
        .await;
        let Ok(Some(lag)) = measured else {
            continue;
        };
        let gauge = &metrics().load.consumer_lag;
        gauge.reset();
        for (topic, partition, n) in lag {
            gauge
                .with_label_values(&[&topic, &partition.to_string()])
                .set(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::sections;

    fn kafka_cfg(consumer_properties: &str) -> KafkaConfig {
        sections::kafka(&format!(
            "brokers = \"127.0.0.1:9\"\ntopic_prefix = \"sluice\"\n\
             [consumer_properties]\n{consumer_properties}"
        ))
    }

    #[test]
    fn the_read_ahead_holds_twice_the_bulks_in_flight_in_records_and_in_bytes() {
        let loader = sections::loader(
            "group_id = \"g\"\nbatch_size = 1000\nbatch_bytes = 5000000\nmax_in_flight = 2\n\
             fetch_wait_ms = 5\ninstance_id = \"\"",
        );
        let c = consumer_config(&kafka_cfg(""), &loader);
        assert_eq!(c.get("queued.min.messages"), Some("4000"));
        // librdkafka's "kbytes" are thousands of bytes: 2 x 5,000,000 x 2.
        assert_eq!(c.get("queued.max.messages.kbytes"), Some("20000"));
        assert_eq!(c.get("fetch.wait.max.ms"), Some("5"));
        assert_eq!(c.get("fetch.queue.backoff.ms"), Some("5"));
        assert_eq!(c.get("group.id"), Some("g"));
        assert_eq!(c.get("group.instance.id"), None);
        assert_eq!(c.get("auto.offset.reset"), Some("earliest"));
        assert_eq!(c.get("enable.auto.commit"), Some("false"));

        // A long fetch wait (Kafka answers a waiting fetch at once) does not slow the check of
        // a full read-ahead; the user's read-ahead wins over Sluice's.
        let loader = sections::loader("fetch_wait_ms = 500\ninstance_id = \"host-1\"");
        let c = consumer_config(&kafka_cfg("\"queued.min.messages\" = \"10\""), &loader);
        assert_eq!(c.get("fetch.queue.backoff.ms"), Some("10"));
        assert_eq!(c.get("queued.min.messages"), Some("10"));
        assert_eq!(c.get("group.instance.id"), Some("host-1"));
    }
}
