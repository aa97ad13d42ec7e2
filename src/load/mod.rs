//! Stage 4, the loader: Kafka -> Elasticsearch.
//!
//! A consumer group over the table topics; records are decoded through the registry into
//! batches (count, body size or linger time), one lane of partitions per bulk in flight
//! (`lanes`), written with external versions, and their offsets committed only after every
//! item of the bulk settled (docs/design.md, invariant 3). A record that can never be applied
//! (undecodable, unknown schema, refused by the index's mapping) goes to the dead-letter topic
//! with headers saying where it came from and why, and the partition goes on.

pub mod batch;
pub mod bulk;
pub mod dead_letter;
pub mod document;
pub mod index;
pub mod lanes;
pub mod mapping;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, VectorMapping};
use crate::encode::Encoder;
use crate::kafka::{self, KafkaSetupError};
use crate::registry::client::{self, ClientError};
use crate::retry::Backoff;
use batch::{Batch, Registry};
use bulk::Outcome;
use dead_letter::{DeadLetter, DeadLetters, ErrorClass};
use index::{Failure, IndexWriter};
use lanes::{InFlight, Lane, Lanes, Partition, Rebalances, offset_list};

/// Why the loader stopped.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Client or topic setup failed.
    #[error(transparent)]
    Setup(#[from] KafkaSetupError),
    /// The registry client cannot be set up.
    #[error(transparent)]
    Registry(#[from] ClientError),
    /// The consumer failed.
    #[error("Kafka consumer: {0}")]
    Consumer(rdkafka::error::KafkaError),
    /// The index server refused something for good.
    #[error("Elasticsearch: {0}")]
    Elasticsearch(String),
    /// An index cannot take a table's new schema.
    #[error(
        "index {index} cannot take its table's new schema ({reason}); the table's records are \
         held (offsets not committed) while other tables go on: reindex (delete the index, \
         restart the loader and run `sluice snapshot --table`, or create a new index and \
         reindex into it), then restart the loader"
    )]
    MappingConflict {
        /// The index.
        index: String,
        /// The server's reason.
        reason: String,
    },
    /// The registry refused the loader itself (not one record's schema).
    #[error(
        "the schema registry refused the loader: {0}; check registry.url, registry.username \
         and registry.password; no offset was committed"
    )]
    RegistryRefused(String),
    /// A record could not be sent to the dead-letter topic.
    #[error(
        "cannot write to the dead-letter topic {topic}: {error}; the batch's offsets are not \
         committed, so its records are read again after a restart"
    )]
    DeadLetter {
        /// The dead-letter topic.
        topic: String,
        /// Why.
        error: rdkafka::error::KafkaError,
    },
}

/// `s` with regular-expression metacharacters escaped.
fn regex_literal(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let escape = "\\.+*?()|[]{}^$".contains(c);
            escape.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

/// A table-name glob as a regular expression over one topic-name part.
fn glob_regex(glob: &str) -> String {
    glob.split('*')
        .map(|run| {
            run.split('?')
                .map(regex_literal)
                .collect::<Vec<_>>()
                .join("[^.]")
        })
        .collect::<Vec<_>>()
        .join("[^.]*")
}

/// Runs the loader until `shutdown` (after finishing the batch at hand) or an error.
pub async fn run(cfg: &Config, shutdown: CancellationToken) -> Result<(), LoadError> {
    let es_cfg = cfg
        .elasticsearch
        .as_ref()
        .expect("validated: the loader role has [elasticsearch]");
    // Exact tables are subscribed by name (created here if the source has not yet); table
    // patterns by regular expression, so their topics join as the source creates them.
    let prefix = &cfg.kafka.topic_prefix;
    let patterns = cfg.table_patterns();
    let exact: Vec<String> = patterns
        .iter()
        .filter_map(|p| p.exact())
        .map(|t| Encoder::topic(prefix, &t))
        .collect();
    kafka::ensure_topics(&cfg.kafka, &exact).await?;
    let topics: Vec<String> = patterns
        .iter()
        .map(|p| match p.exact() {
            Some(t) => Encoder::topic(prefix, &t),
            None => format!(
                "^{}\\.{}\\.{}$",
                regex_literal(prefix),
                glob_regex(&p.db),
                glob_regex(&p.table)
            ),
        })
        .collect();
    // Brokers that poll their storage instead of waking fetches on new data (tansu halves the
    // remaining wait between polls) add up to fetch.wait.max.ms of latency; Kafka does not.
    let mut client = kafka::client_config(&cfg.kafka, &[("fetch.wait.max.ms", "100")]);
    // Static membership: after a crash the restarted loader takes its old member id back.
    // Without it tansu hands a dead leader's partitions to nobody (issue 2 note); with two
    // static members tansu rebalances forever (issue 6 note), so several loaders on tansu
    // turn it off with `instance_id = ""`.
    let instance = cfg.instance_id();
    if !instance.is_empty() {
        client.set("group.instance.id", &instance);
    }
    let in_flight = Arc::new(InFlight::default());
    let consumer: Arc<StreamConsumer<Rebalances>> = Arc::new(
        client
            .set("group.id", cfg.group_id())
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            // New topics matching a table pattern are found at the next metadata refresh.
            .set("topic.metadata.refresh.interval.ms", "5000")
            .create_with_context(Rebalances::new(in_flight.clone()))
            .map_err(|e| LoadError::Setup(KafkaSetupError::Client(e)))?,
    );
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&names).map_err(LoadError::Consumer)?;
    let mut registry = Registry::new(client::settings(&cfg.registry)?);
    let shared = Arc::new(Shared {
        writer: IndexWriter::new(es_cfg)?,
        dead: DeadLetters::new(&cfg.kafka, cfg.dead_letter_topic()).await?,
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
    let linger = Duration::from_millis(cfg.loader.linger_ms);
    tracing::info!(group = %cfg.group_id(), %instance, topics = ?topics, max_in_flight = cfg.loader.max_in_flight, "loader consuming");

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
                for i in 0..cfg.loader.max_in_flight {
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
                let again = offset_list(mine(&consumer, &committed)?);
                if again.count() > 0 {
                    consumer.commit(&again, CommitMode::Async).map_err(LoadError::Consumer)?;
                }
            }
            message = consumer.recv(), if !stopping && !lanes.blocked(&cfg.loader) => {
                // A rebalance runs inside recv(): what was read before it for a partition
                // revoked (and maybe assigned again) must go before this message, read after.
                forget_revoked(&consumer, &mut lanes, &mut committed);
                let message = match message {
                    Ok(m) => m.detach(),
                    Err(e) => {
                        // Transient broker and metadata errors; librdkafka keeps retrying.
                        tracing::warn!(error = %e, "Kafka consumer error");
                        continue;
                    }
                };
                if shared.held().contains(message.topic()) {
                    continue; // read again after the restart that follows a reindex
                }
                let i = lanes.lane_of(message.topic(), message.partition());
                let lane = lanes.get(i);
                if !batch::add(&mut lane.batch, &message, &mut registry, &shared.writer, &options, &shutdown).await? {
                    stopping = true; // interrupted while the registry was away
                    continue;
                }
                lane.deadline.get_or_insert_with(|| Instant::now() + linger);
                if lane.retrying.load(Ordering::Relaxed) {
                    // A partition of a failing lane maybe not seen before it failed.
                    let p = (message.topic().to_string(), message.partition());
                    pause(&consumer, lane, vec![p])?;
                }
            }
        }
    }
    let last = offset_list(mine(&consumer, &committed)?);
    if last.count() > 0 {
        consumer
            .commit(&last, CommitMode::Sync)
            .map_err(LoadError::Consumer)?;
    }
    Ok(())
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
fn mine<'a>(
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

/// The offsets a settled bulk committed.
type Committed = Vec<(Partition, i64)>;

/// What the bulks in flight share with the loop that reads.
struct Shared {
    writer: IndexWriter,
    dead: DeadLetters,
    consumer: Arc<StreamConsumer<Rebalances>>,
    /// Topics of tables whose index cannot take their new schema.
    held: Mutex<BTreeSet<String>>,
    /// A bulk began retrying.
    retry_started: Notify,
    shutdown: CancellationToken,
}

impl Shared {
    fn held(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Applies a batch, stores its dead letters, holds the tables it must, and commits its
/// offsets; returns them, or `None` if `shutdown` interrupted retries (nothing committed).
async fn settle(
    shared: &Shared,
    mut batch: Batch,
    retrying: &AtomicBool,
) -> Result<Option<Committed>, LoadError> {
    let started = Instant::now();
    let on_retry = || {
        if !retrying.swap(true, Ordering::Relaxed) {
            shared.retry_started.notify_one();
        }
    };
    if !apply(&shared.writer, &mut batch, &shared.shutdown, on_retry).await? {
        return Ok(None);
    }
    // Stored in Kafka before the offsets past them are committed.
    shared.dead.send(std::mem::take(&mut batch.dead)).await?;
    for (conflict, topics) in std::mem::take(&mut batch.held) {
        tracing::error!(error = %conflict, topics = ?topics, "table held");
        let assigned = shared.consumer.assignment().map_err(LoadError::Consumer)?;
        let paused: Vec<Partition> = assigned
            .elements()
            .iter()
            .filter(|e| topics.contains(e.topic()))
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        shared
            .consumer
            .pause(&offset_list(paused.iter().map(|p| (p, &0))))
            .map_err(LoadError::Consumer)?;
        shared.held().extend(topics);
    }
    tracing::debug!(
        records = batch.records,
        apply_ms = started.elapsed().as_millis() as u64,
        "batch applied"
    );
    if !batch.next_offsets.is_empty() {
        // A refused commit (the partition was taken away meanwhile) only means the next owner
        // applies these records again, which external versions make harmless.
        if let Err(e) = shared
            .consumer
            .commit(&offset_list(&batch.next_offsets), CommitMode::Async)
        {
            tracing::warn!(error = %e, "committing offsets failed; their records will be applied again");
        }
    }
    Ok(Some(batch.next_offsets.into_iter().collect()))
}

/// The index server's vector type, asked until it answers; `None` if `shutdown` came first.
async fn server_vector_mapping(
    writer: &IndexWriter,
    shutdown: &CancellationToken,
) -> Result<Option<VectorMapping>, LoadError> {
    let mut backoff = Backoff::default();
    loop {
        match writer.vector_mapping().await {
            Ok(v) => return Ok(Some(v)),
            Err(Failure::Final(e)) => return Err(e),
            Err(Failure::Transient(reason)) => {
                let wait = backoff.next_wait();
                tracing::warn!(%reason, retry_in_ms = wait.as_millis() as u64, "index server unavailable; asking again");
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = shutdown.cancelled() => return Ok(None),
                }
            }
        }
    }
}

/// Writes a batch until every item settled or was refused for good (those become dead
/// letters). Returns false if `shutdown` interrupted retries.
async fn apply(
    writer: &IndexWriter,
    batch: &mut Batch,
    shutdown: &CancellationToken,
    on_retry: impl Fn(),
) -> Result<bool, LoadError> {
    let mut backoff = Backoff::default();
    loop {
        match try_apply(writer, batch).await {
            Ok(refused) => {
                for (i, reason) in refused {
                    batch.dead.push(DeadLetter {
                        origin: batch.items[i].1.clone(),
                        class: ErrorClass::Rejected,
                        reason,
                    });
                }
                return Ok(true);
            }
            Err(Failure::Final(e @ LoadError::MappingConflict { .. })) => batch.hold(e),
            Err(Failure::Final(e)) => return Err(e),
            Err(Failure::Transient(reason)) => {
                on_retry();
                let wait = backoff.next_wait();
                tracing::warn!(%reason, retry_in_ms = wait.as_millis() as u64, "index server unavailable; retrying the batch");
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = shutdown.cancelled() => return Ok(false),
                }
            }
        }
    }
}

/// Applies a batch: its documents in one bulk request, then its truncate. Returns the
/// actions the index refused for good, by position.
async fn try_apply(writer: &IndexWriter, batch: &Batch) -> Result<Vec<(usize, String)>, Failure> {
    for (index, targets) in &batch.mappings {
        for target in targets {
            writer.ensure_mapping(index, target).await?;
        }
    }
    let mut refused = Vec::new();
    if !batch.body.is_empty() {
        refused = write_documents(writer, &batch.body).await?;
    }
    if let Some(t) = &batch.truncate {
        writer.delete_older(&t.index, t.version).await?;
    }
    Ok(refused)
}

/// Writes `body` in one bulk request; the refused actions are returned by position.
async fn write_documents(
    writer: &IndexWriter,
    body: &bulk::Body,
) -> Result<Vec<(usize, String)>, Failure> {
    let response = writer.bulk(body.bytes()).await?;
    let outcomes =
        bulk::outcomes(&response).map_err(|m| Failure::Final(LoadError::Elasticsearch(m)))?;
    if outcomes.len() != body.len() {
        return Err(Failure::Final(LoadError::Elasticsearch(format!(
            "bulk response has {} items for {} actions",
            outcomes.len(),
            body.len()
        ))));
    }
    let (mut retry, mut refused) = (None, Vec::new());
    for (i, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Outcome::Settled => {}
            // Resending the whole batch is harmless: settled items come back as 409.
            Outcome::Retry(reason) => retry = Some(reason),
            Outcome::Rejected(reason) => refused.push((i, reason)),
        }
    }
    match retry {
        Some(reason) => Err(Failure::Transient(reason)),
        None => Ok(refused),
    }
}
