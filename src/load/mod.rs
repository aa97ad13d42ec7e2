//! Stage 4, the loader: Kafka -> Elasticsearch.
//!
//! A consumer group over the table topics; records are decoded through the registry, batched
//! (count or linger time), written with external versions, and their offsets committed only
//! after every item of the bulk settled (design.md, invariant 3).

pub mod bulk;
pub mod document;
pub mod index;
pub mod mapping;

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use schema_registry_converter::async_impl::avro::AvroDecoder;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::encode::Encoder;
use crate::kafka::{self, KafkaSetupError};
use crate::registry::client::{self, ClientError};
use crate::retry::Backoff;
use bulk::Outcome;
use document::{Action, Record};
use index::{Failure, IndexWriter};

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
    /// A record could not be decoded.
    #[error(
        "record {topic}/{partition}@{offset} cannot be decoded: {message}; the loader stops \
         rather than skip it, and its offset is not committed"
    )]
    Decode {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Offset.
        offset: i64,
        /// Why.
        message: String,
    },
    /// The index server refused something for good.
    #[error("Elasticsearch: {0}")]
    Elasticsearch(String),
    /// A document was refused for good.
    #[error(
        "Elasticsearch rejected document {id:?} of index {index}: {reason}; the loader stops \
         rather than skip it, and the batch's offsets are not committed"
    )]
    Rejected {
        /// Index.
        index: String,
        /// Document id.
        id: String,
        /// The server's reason.
        reason: String,
    },
}

/// A batch's records and the offsets to commit once it is applied.
#[derive(Default)]
struct Batch {
    actions: Vec<Action>,
    /// A truncate (index, version), applied after `actions`; it always ends its batch.
    truncate: Option<(String, u64)>,
    /// Indexes to create first, with mappings from their writer schema.
    new_indexes: BTreeMap<String, serde_json::Value>,
    next_offsets: BTreeMap<(String, i32), i64>,
    records: usize,
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
    let consumer: StreamConsumer =
        kafka::client_config(&cfg.kafka, &[("fetch.wait.max.ms", "100")])
            .set("group.id", cfg.group_id())
            // Static membership: after a crash the restarted loader takes its old member id
            // back. Without it tansu hands a dead leader's partitions to nobody (issue 2 note).
            .set("group.instance.id", cfg.instance_id())
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            // New topics matching a table pattern are found at the next metadata refresh.
            .set("topic.metadata.refresh.interval.ms", "5000")
            .create()
            .map_err(|e| LoadError::Setup(KafkaSetupError::Client(e)))?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&names).map_err(LoadError::Consumer)?;
    let decoder = AvroDecoder::new(client::settings(&cfg.registry)?);
    let mut writer = IndexWriter::new(es_cfg)?;
    let linger = Duration::from_millis(cfg.loader.linger_ms);
    tracing::info!(group = %cfg.group_id(), instance = %cfg.instance_id(), topics = ?topics, "loader consuming");

    loop {
        let mut batch = Batch::default();
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
            add(&mut batch, &message, &decoder, &writer).await?;
            deadline.get_or_insert_with(|| Instant::now() + linger);
            // A truncate ends its batch: it applies after everything read before it.
            if batch.records >= cfg.loader.batch_size || batch.truncate.is_some() {
                break false;
            }
        };
        let collected = started.elapsed();
        if batch.records > 0 && !apply(&mut writer, &batch, &shutdown).await? {
            return Ok(()); // interrupted while retrying: nothing committed, replayed later
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

/// Decodes one record into the batch.
async fn add(
    batch: &mut Batch,
    m: &OwnedMessage,
    decoder: &AvroDecoder,
    writer: &IndexWriter,
) -> Result<(), LoadError> {
    let fail = |message: String| LoadError::Decode {
        topic: m.topic().to_string(),
        partition: m.partition(),
        offset: m.offset(),
        message,
    };
    batch.records += 1;
    batch
        .next_offsets
        .insert((m.topic().to_string(), m.partition()), m.offset() + 1);
    if m.payload().is_none() {
        return Ok(()); // tombstone: the delete before it carried the version
    }
    // Only truncates have no key; the envelope says whether that is what this is.
    let key = decoder
        .decode_with_schema(m.key())
        .await
        .map_err(|e| fail(format!("key: {e}")))?;
    let value = decoder
        .decode_with_schema(m.payload())
        .await
        .map_err(|e| fail(format!("value: {e}")))?
        .ok_or_else(|| fail("empty value".into()))?;
    let record = document::record(
        key.as_ref().map(|k| (&k.value, &k.schema.parsed)),
        &value.value,
        &value.schema.parsed,
    )
    .map_err(|e| fail(e.to_string()))?;
    let index = record.index();
    if !writer.is_ready(index) && !batch.new_indexes.contains_key(index) {
        let apache_avro::Schema::Record(envelope) = &value.schema.parsed else {
            return Err(fail("the value schema is not a record".into()));
        };
        let row = document::row_schema(envelope).map_err(|e| fail(e.to_string()))?;
        batch
            .new_indexes
            .insert(index.to_string(), mapping::mappings(row));
    }
    match record {
        Record::Document(action) => batch.actions.push(action),
        Record::Truncate { index, version } => batch.truncate = Some((index, version)),
    }
    Ok(())
}

/// Writes a batch until every item settled. Returns false if `shutdown` interrupted retries.
async fn apply(
    writer: &mut IndexWriter,
    batch: &Batch,
    shutdown: &CancellationToken,
) -> Result<bool, LoadError> {
    let mut backoff = Backoff::default();
    loop {
        match try_apply(writer, batch).await {
            Ok(()) => return Ok(true),
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

/// Applies a batch: its documents in one bulk request, then its truncate.
async fn try_apply(writer: &mut IndexWriter, batch: &Batch) -> Result<(), Failure> {
    for (index, mappings) in &batch.new_indexes {
        writer.ensure_index(index, mappings).await?;
    }
    if !batch.actions.is_empty() {
        write_documents(writer, &batch.actions).await?;
    }
    if let Some((index, version)) = &batch.truncate {
        writer.delete_older(index, *version).await?;
    }
    Ok(())
}

async fn write_documents(writer: &IndexWriter, actions: &[Action]) -> Result<(), Failure> {
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
    let mut retry = None;
    for (outcome, action) in outcomes.into_iter().zip(actions) {
        match outcome {
            Outcome::Settled => {}
            // Resending the whole batch is harmless: settled items come back as 409.
            Outcome::Retry(reason) => retry = Some(reason),
            Outcome::Rejected(reason) => {
                let (Action::Index { index, id, .. } | Action::Delete { index, id, .. }) = action;
                return Err(Failure::Final(LoadError::Rejected {
                    index: index.clone(),
                    id: id.clone(),
                    reason,
                }));
            }
        }
    }
    match retry {
        Some(reason) => Err(Failure::Transient(reason)),
        None => Ok(()),
    }
}
