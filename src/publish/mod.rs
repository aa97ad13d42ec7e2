//! Stage 3, the publisher: encoded changes -> Kafka, keyed by primary key.
//!
//! One idempotent producer with `acks=all` and Java-compatible murmur2 partitioning, so every
//! client agrees on a key's partition; a delete is followed by a tombstone so compacted topics
//! forget the key, and a truncate (no key) goes to every partition, after each partition's
//! earlier changes. Deliveries and checkpoints go, in order, to the [`acker`].

pub mod acker;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio::sync::mpsc;

use crate::config::KafkaConfig;
use crate::encode::{EncodeError, Encoder};
use crate::kafka::{self, KafkaSetupError};
use crate::model::{Op, TableId, time};
use crate::source::SourceEvent;
use crate::state::StateError;
use acker::Pending;

/// Why publishing stopped.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Client or topic setup failed.
    #[error(transparent)]
    Setup(#[from] KafkaSetupError),
    /// A change could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// librdkafka refused a record before sending it.
    #[error("cannot queue a record for topic {topic}: {error}")]
    Produce {
        /// Topic.
        topic: String,
        /// Why.
        error: KafkaError,
    },
    /// The broker did not acknowledge a record.
    #[error(
        "Kafka did not acknowledge a record for topic {topic}: {error}; no checkpoint after it \
         was stored, so a restart sends it again"
    )]
    Delivery {
        /// Topic.
        topic: String,
        /// Why.
        error: KafkaError,
    },
    /// The producer was dropped with records in flight.
    #[error("the Kafka producer shut down with records in flight")]
    ProducerGone,
    /// Storing a checkpoint failed.
    #[error(transparent)]
    State(#[from] StateError),
}

/// The idempotent, ordered producer.
pub fn producer(cfg: &KafkaConfig) -> Result<FutureProducer, PublishError> {
    let mut c = kafka::client_config(cfg, &[("linger.ms", "5")]);
    // Not overridable: ordering, no duplicates from retries, and key placement depend on them.
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random");
    c.create()
        .map_err(|e| PublishError::Setup(KafkaSetupError::Client(e)))
}

/// Encodes and produces every change from `rx`, queueing deliveries and checkpoints on `acks`
/// in the same order. Returns when `rx` closes, after librdkafka flushed its queue.
pub async fn run(
    cfg: &KafkaConfig,
    mut encoder: Encoder,
    producer: FutureProducer,
    mut rx: mpsc::Receiver<SourceEvent>,
    acks: mpsc::Sender<Pending>,
) -> Result<(), PublishError> {
    let (mut key, mut value) = (Vec::new(), Vec::new());
    // Tables whose new schema the registry refused, with the changes held back since.
    let mut halted: HashMap<TableId, u64> = HashMap::new();
    while let Some(event) = rx.recv().await {
        let changes = match event {
            // While a table is halted no position is stored: a restart (after the schema is
            // fixed) reads its held-back changes again, and the other tables' once more.
            SourceEvent::Checkpoint(_) if !halted.is_empty() => continue,
            SourceEvent::Checkpoint(cp) => {
                queue(&acks, Pending::Checkpoint(cp)).await?;
                continue;
            }
            SourceEvent::Changes(changes) => changes,
        };
        let now_ms = time::now_ms();
        for change in &changes {
            if let Some(held) = halted.get_mut(&change.table.id) {
                *held += 1;
                continue;
            }
            let (registered, first) = match encoder.registered(&change.table).await {
                Ok(r) => r,
                Err(e @ EncodeError::Incompatible { .. }) => {
                    tracing::error!(
                        table = %change.table.id,
                        error = %e,
                        "table halted: none of its changes are published until the schema is \
                         accepted; other tables keep flowing; positions are no longer stored"
                    );
                    halted.insert(change.table.id.clone(), 1);
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if first {
                kafka::ensure_topics(cfg, &[registered.topic.to_string()]).await?;
            }
            encoder.encode(&registered, change, now_ms, &mut key, &mut value)?;
            let topic = &registered.topic;
            match change.op {
                Op::Truncate => {
                    // Asked each time (truncates are rare): partitions may have been added.
                    for p in 0..partition_count(&producer, topic).await? {
                        produce(&producer, &acks, topic, Place::Partition(p), Some(&value)).await?;
                    }
                }
                Op::Delete => {
                    produce(&producer, &acks, topic, Place::Key(&key), Some(&value)).await?;
                    // The tombstone lets log compaction drop the key once its delete is
                    // consumed.
                    produce(&producer, &acks, topic, Place::Key(&key), None).await?;
                }
                Op::Create | Op::Update | Op::Read => {
                    produce(&producer, &acks, topic, Place::Key(&key), Some(&value)).await?;
                }
            }
        }
    }
    for (table, held) in &halted {
        tracing::error!(%table, held, "stopping with a halted table: its changes were held back and will be read again on restart");
    }
    // Deliveries resolve as librdkafka drains; the acker awaits each one.
    let flush = tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(30)));
    match flush.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(PublishError::Produce {
            topic: "(flush)".into(),
            error,
        }),
        Err(_) => Err(PublishError::ProducerGone),
    }
}

/// Where a record goes: by key, or (keyless) to one partition.
#[derive(Clone, Copy)]
enum Place<'k> {
    Key(&'k [u8]),
    Partition(i32),
}

/// The number of partitions of `topic`, from the broker's metadata.
async fn partition_count(producer: &FutureProducer, topic: &Arc<str>) -> Result<i32, PublishError> {
    let (p, t) = (producer.clone(), topic.clone());
    let metadata = tokio::task::spawn_blocking(move || {
        p.client().fetch_metadata(Some(&t), Duration::from_secs(30))
    })
    .await
    .map_err(|_| PublishError::ProducerGone)?;
    let error = |error| PublishError::Produce {
        topic: topic.to_string(),
        error,
    };
    let metadata = metadata.map_err(error)?;
    match metadata.topics().first().map(|t| t.partitions().len()) {
        Some(n) if n > 0 => Ok(i32::try_from(n).unwrap_or(i32::MAX)),
        _ => Err(error(KafkaError::MetadataFetch(
            RDKafkaErrorCode::UnknownTopicOrPartition,
        ))),
    }
}

/// Hands one record to librdkafka and queues its delivery for the acker, waiting while
/// librdkafka's queue is full.
async fn produce(
    producer: &FutureProducer,
    acks: &mpsc::Sender<Pending>,
    topic: &Arc<str>,
    place: Place<'_>,
    value: Option<&[u8]>,
) -> Result<(), PublishError> {
    loop {
        let mut record = FutureRecord::<[u8], [u8]>::to(topic);
        record = match place {
            Place::Key(key) => record.key(key),
            Place::Partition(p) => record.partition(p),
        };
        if let Some(v) = value {
            record = record.payload(v);
        }
        match producer.send_result(record) {
            Ok(delivery) => {
                let topic = topic.clone();
                return queue(acks, Pending::Delivery { topic, delivery }).await;
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((error, _)) => {
                return Err(PublishError::Produce {
                    topic: topic.to_string(),
                    error,
                });
            }
        }
    }
}

async fn queue(acks: &mpsc::Sender<Pending>, p: Pending) -> Result<(), PublishError> {
    // The acker only stops early on an error, which it returns itself.
    acks.send(p).await.map_err(|_| PublishError::ProducerGone)
}
