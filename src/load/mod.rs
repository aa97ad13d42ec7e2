//! Stage 4, the loader: Kafka -> Elasticsearch.
//!
//! A consumer group over the table topics; records are decoded through the registry, batched
//! (count or linger time), written with external versions, and their offsets committed only
//! after every item of the bulk settled (design.md, invariant 3). A record that can never be
//! applied (undecodable, unknown schema, refused by the index's mapping) goes to the
//! dead-letter topic with headers saying where it came from and why, and the partition goes
//! on.

pub mod dead_letter;

pub mod bulk;
pub mod document;
pub mod index;
pub mod mapping;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use schema_registry_converter::async_impl::avro::AvroDecoder;
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::avro_common::DecodeResultWithSchema;
use schema_registry_converter::error::SRCError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::encode::Encoder;
use crate::kafka::{self, KafkaSetupError};
use crate::registry::client::{self, ClientError};
use crate::retry::Backoff;
use bulk::Outcome;
use dead_letter::{DeadLetter, DeadLetters, ErrorClass, Origin};
use document::{Action, Record};
use index::{Failure, IndexWriter, Target};

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

/// A batch's records and the offsets to commit once it is applied.
#[derive(Default)]
struct Batch {
    actions: Vec<Action>,
    /// The record behind each action, for the dead-letter topic if the index refuses it.
    origins: Vec<Origin>,
    /// Records that cannot be applied.
    dead: Vec<DeadLetter>,
    /// A truncate (index, version, topic), applied after `actions`; it always ends its batch.
    truncate: Option<(String, u64, String)>,
    /// Indexes that cannot take their table's new schema, with the topics held back for them.
    held: Vec<(LoadError, BTreeSet<String>)>,
    /// Indexes whose mapping must first take a writer schema: created, or given the fields
    /// they lack.
    mappings: BTreeMap<String, Target>,
    next_offsets: BTreeMap<(String, i32), i64>,
    records: usize,
    /// How records become documents.
    options: Arc<document::Options>,
}

impl Batch {
    /// Takes the records of the index a mapping conflict names out of the batch, and their
    /// topics' offsets with them: the table waits (until a reindex and restart), the others
    /// go on.
    fn hold(&mut self, conflict: LoadError) {
        let LoadError::MappingConflict { index, .. } = &conflict else {
            return;
        };
        self.mappings.remove(index);
        let mut topics = BTreeSet::new();
        let mut kept = (Vec::new(), Vec::new());
        for (action, origin) in self.actions.drain(..).zip(self.origins.drain(..)) {
            let (Action::Index { index: i, .. } | Action::Delete { index: i, .. }) = &action;
            if i == index {
                topics.insert(origin.topic().to_string());
            } else {
                kept.0.push(action);
                kept.1.push(origin);
            }
        }
        (self.actions, self.origins) = kept;
        if let Some((i, _, topic)) = &self.truncate
            && i == index
        {
            topics.insert(topic.clone());
            self.truncate = None;
        }
        self.next_offsets
            .retain(|(topic, _), _| !topics.contains(topic));
        self.held.push((conflict, topics));
    }
}

/// Logs the partitions this loader gains and loses as the group rebalances. A batch that
/// held records of a lost partition may still be applied (its commit is refused): the new
/// owner applies them again, which external versions make harmless.
struct Rebalances;

impl ClientContext for Rebalances {}

impl ConsumerContext for Rebalances {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let list = |tpl: &TopicPartitionList| {
            tpl.elements()
                .iter()
                .map(|e| format!("{}/{}", e.topic(), e.partition()))
                .collect::<Vec<_>>()
        };
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = ?list(tpl), "partitions assigned");
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = ?list(tpl), "partitions revoked");
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance failed"),
        }
    }
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
    let consumer: StreamConsumer<Rebalances> = client
        .set("group.id", cfg.group_id())
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        // New topics matching a table pattern are found at the next metadata refresh.
        .set("topic.metadata.refresh.interval.ms", "5000")
        .create_with_context(Rebalances)
        .map_err(|e| LoadError::Setup(KafkaSetupError::Client(e)))?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&names).map_err(LoadError::Consumer)?;
    let settings = client::settings(&cfg.registry)?;
    let mut registry = Registry {
        decoder: AvroDecoder::new(settings.clone()),
        settings,
    };
    let mut writer = IndexWriter::new(es_cfg)?;
    let mut dead = DeadLetters::new(&cfg.kafka, cfg.dead_letter_topic()).await?;
    let linger = Duration::from_millis(cfg.loader.linger_ms);
    tracing::info!(group = %cfg.group_id(), %instance, topics = ?topics, "loader consuming");
    // Topics of tables whose index cannot take their new schema.
    let mut held: BTreeSet<String> = BTreeSet::new();
    let options = Arc::new(document::Options::new(&cfg.loader));

    loop {
        let mut batch = Batch {
            options: options.clone(),
            ..Batch::default()
        };
        let mut deadline: Option<Instant> = None;
        let started = Instant::now();
        let stopping = loop {
            let message = tokio::select! {
                biased;
                () = shutdown.cancelled() => break true,
                () = sleep_until(deadline) => break false,
                m = consumer.recv() => m,
            };
            let message = match message {
                Ok(m) => m.detach(),
                Err(e) => {
                    // Transient broker and metadata errors; librdkafka keeps retrying.
                    tracing::warn!(error = %e, "Kafka consumer error");
                    continue;
                }
            };
            if held.contains(message.topic()) {
                continue; // read again after the restart that follows a reindex
            }
            if !add(&mut batch, &message, &mut registry, &writer, &shutdown).await? {
                return Ok(()); // interrupted while the registry was away: nothing committed
            }
            deadline.get_or_insert_with(|| Instant::now() + linger);
            // A truncate ends its batch: it applies after everything read before it.
            if batch.records >= cfg.loader.batch_size || batch.truncate.is_some() {
                break false;
            }
        };
        let collected = started.elapsed();
        if batch.records > 0 && !apply(&mut writer, &mut batch, &shutdown).await? {
            return Ok(()); // interrupted while retrying: nothing committed, replayed later
        }
        // Stored in Kafka before the offsets past them are committed.
        dead.send(std::mem::take(&mut batch.dead)).await?;
        for (conflict, topics) in std::mem::take(&mut batch.held) {
            tracing::error!(error = %conflict, topics = ?topics, "table held");
            let mut paused = TopicPartitionList::new();
            let assigned = consumer.assignment().map_err(LoadError::Consumer)?;
            for e in assigned.elements() {
                if topics.contains(e.topic()) {
                    paused.add_partition(e.topic(), e.partition());
                }
            }
            consumer.pause(&paused).map_err(LoadError::Consumer)?;
            held.extend(topics);
        }
        if batch.records > 0 {
            tracing::debug!(
                records = batch.records,
                collect_ms = collected.as_millis() as u64,
                apply_ms = (started.elapsed() - collected).as_millis() as u64,
                "batch applied"
            );
        }
        if !batch.next_offsets.is_empty() {
            let mut tpl = TopicPartitionList::new();
            for ((topic, partition), next) in &batch.next_offsets {
                tpl.add_partition_offset(topic, *partition, Offset::Offset(*next))
                    .map_err(LoadError::Consumer)?;
            }
            let mode = if stopping {
                CommitMode::Sync
            } else {
                CommitMode::Async
            };
            consumer.commit(&tpl, mode).map_err(LoadError::Consumer)?;
        }
        if stopping {
            return Ok(());
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Decodes one record into the batch; a record that cannot be decoded becomes a dead letter.
/// Returns false if `shutdown` interrupted waiting for the registry.
async fn add(
    batch: &mut Batch,
    m: &OwnedMessage,
    registry: &mut Registry,
    writer: &IndexWriter,
    shutdown: &CancellationToken,
) -> Result<bool, LoadError> {
    batch.records += 1;
    batch
        .next_offsets
        .insert((m.topic().to_string(), m.partition()), m.offset() + 1);
    if m.payload().is_none() {
        return Ok(true); // tombstone: the delete before it carried the version
    }
    let origin = Origin::of(m);
    match decode(batch, m, registry, writer, shutdown).await? {
        Some(Ok(Record::Document(action))) => {
            batch.actions.push(action);
            batch.origins.push(origin);
        }
        Some(Ok(Record::Truncate { index, version })) => {
            batch.truncate = Some((index, version, m.topic().to_string()));
        }
        Some(Err(reason)) => batch.dead.push(DeadLetter {
            origin,
            class: ErrorClass::Decode,
            reason,
        }),
        None => return Ok(false),
    }
    Ok(true)
}

/// The record a message asks for (`Ok(None)` on shutdown), or why it cannot be read.
async fn decode(
    batch: &mut Batch,
    m: &OwnedMessage,
    registry: &mut Registry,
    writer: &IndexWriter,
    shutdown: &CancellationToken,
) -> Result<Option<Result<Record, String>>, LoadError> {
    // Only truncates have no key; the envelope says whether that is what this is.
    let Some(key) = with_registry(registry, m.key(), shutdown).await? else {
        return Ok(None);
    };
    let Some(value) = with_registry(registry, m.payload(), shutdown).await? else {
        return Ok(None);
    };
    Ok(Some(shape(batch, key, value, writer)))
}

/// The record decoded key and value describe, noting the index to create for it.
fn shape(
    batch: &mut Batch,
    key: Result<Option<DecodeResultWithSchema>, String>,
    value: Result<Option<DecodeResultWithSchema>, String>,
    writer: &IndexWriter,
) -> Result<Record, String> {
    let key = key.map_err(|e| format!("key: {e}"))?;
    let value = value
        .map_err(|e| format!("value: {e}"))?
        .ok_or("empty value")?;
    let document::Shaped {
        record,
        table,
        alias,
    } = document::record(
        key.as_ref().map(|k| (&k.value, &k.schema.parsed)),
        &value.value,
        &value.schema.parsed,
        &batch.options,
    )
    .map_err(|e| e.to_string())?;
    let (index, id) = (record.index(), value.schema.id);
    // The batch's latest schema of an index wins: columns are added, so it maps them all.
    let known = match batch.mappings.get(index) {
        Some(pending) => pending.schema_id == id,
        None => writer.is_mapped(index, id),
    };
    if !known {
        let apache_avro::Schema::Record(envelope) = &value.schema.parsed else {
            return Err("the value schema is not a record".into());
        };
        let row = document::row_schema(envelope).map_err(|e| e.to_string())?;
        let mappings = mapping::mappings(row, &table, &batch.options);
        let target = Target {
            schema_id: id,
            mappings,
            alias,
        };
        batch.mappings.insert(index.to_string(), target);
    }
    Ok(record)
}

/// The registry side of decoding.
struct Registry {
    decoder: AvroDecoder,
    settings: SrSettings,
}

/// What a failed decode means.
enum DecodeFailure {
    /// The record itself is bad: not Sluice's Avro, a schema id the registry does not know.
    Poison(String),
    /// The registry is away or failing: try again.
    Retry(String),
    /// The registry refuses the loader (credentials): stop.
    Fatal(String),
}

/// Sorts a decoder error by the registry's HTTP status, when there was one.
fn classify(e: &SRCError) -> DecodeFailure {
    let status = e
        .error
        .split("with status ")
        .nth(1)
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse::<u16>().ok());
    match status {
        Some(404) => DecodeFailure::Poison(e.to_string()),
        Some(408 | 429 | 500..=599) => DecodeFailure::Retry(e.to_string()),
        Some(_) => DecodeFailure::Fatal(e.to_string()),
        None if e.retriable => DecodeFailure::Retry(e.to_string()),
        None => DecodeFailure::Poison(e.to_string()),
    }
}

/// Decodes `bytes`, waiting out registry outages (a record is a dead letter only for what
/// the registry or the bytes say about the record itself); `Ok(None)` on shutdown.
async fn with_registry(
    registry: &mut Registry,
    bytes: Option<&[u8]>,
    shutdown: &CancellationToken,
) -> Result<Option<Result<Option<DecodeResultWithSchema>, String>>, LoadError> {
    let mut backoff = Backoff::default();
    loop {
        let e = match registry.decoder.decode_with_schema(bytes).await {
            Ok(v) => return Ok(Some(Ok(v))),
            Err(e) => e,
        };
        match classify(&e) {
            DecodeFailure::Poison(reason) => return Ok(Some(Err(reason))),
            DecodeFailure::Fatal(reason) => {
                return Err(LoadError::RegistryRefused(reason));
            }
            DecodeFailure::Retry(reason) => {
                // The decoder keeps failed lookups; a fresh one asks the registry again.
                registry.decoder = AvroDecoder::new(registry.settings.clone());
                let wait = backoff.next_wait();
                tracing::warn!(error = %reason, retry_in_ms = wait.as_millis() as u64, "schema registry unavailable; retrying");
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
    writer: &mut IndexWriter,
    batch: &mut Batch,
    shutdown: &CancellationToken,
) -> Result<bool, LoadError> {
    let mut backoff = Backoff::default();
    loop {
        match try_apply(writer, batch).await {
            Ok(refused) => {
                for (i, reason) in refused {
                    batch.dead.push(DeadLetter {
                        origin: batch.origins[i].clone(),
                        class: ErrorClass::Rejected,
                        reason,
                    });
                }
                return Ok(true);
            }
            Err(Failure::Final(e @ LoadError::MappingConflict { .. })) => batch.hold(e),
            Err(Failure::Final(e)) => return Err(e),
            Err(Failure::Transient(reason)) => {
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
/// actions the index refused for good, with the reason.
async fn try_apply(
    writer: &mut IndexWriter,
    batch: &Batch,
) -> Result<Vec<(usize, String)>, Failure> {
    for (index, target) in &batch.mappings {
        writer.ensure_mapping(index, target).await?;
    }
    let mut refused = Vec::new();
    if !batch.actions.is_empty() {
        refused = write_documents(writer, &batch.actions).await?;
    }
    if let Some((index, version, _)) = &batch.truncate {
        writer.delete_older(index, *version).await?;
    }
    Ok(refused)
}

/// Writes `actions` in one bulk request; the refused ones are returned by position.
async fn write_documents(
    writer: &IndexWriter,
    actions: &[Action],
) -> Result<Vec<(usize, String)>, Failure> {
    let response = writer.bulk(bulk::body(actions)).await?;
    let outcomes =
        bulk::outcomes(&response).map_err(|m| Failure::Final(LoadError::Elasticsearch(m)))?;
    if outcomes.len() != actions.len() {
        return Err(Failure::Final(LoadError::Elasticsearch(format!(
            "bulk response has {} items for {} actions",
            outcomes.len(),
            actions.len()
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
