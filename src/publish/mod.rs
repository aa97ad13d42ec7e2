//! Stage 3, the publisher: encoded changes -> Kafka, keyed by primary key.
//!
//! One idempotent producer with `acks=all` and Java-compatible murmur2 partitioning, so every
//! client agrees on a key's partition; a delete is followed by a tombstone so compacted topics
//! forget the key, and a truncate (no key) goes to every partition, after each partition's
//! earlier changes. Records are numbered as they are produced; each checkpoint goes to the
//! [`acker`] with the number of records before it.

pub mod acker;
mod error;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::Producer;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::KafkaConfig;
use crate::encode::{EncodeError, Encoder};
use crate::kafka::{self, KafkaSetupError, PolledProducer, ProducerTopic};
use crate::metrics::metrics;
use crate::model::{EventReceiver, Op, SourceEvent, TableId, time};

use acker::{Deliveries, DeliveryContext, Pending};

pub use error::PublishError;

/// The producer: delivery reports go to the acker's [`Deliveries`].
pub type KafkaProducer = PolledProducer<DeliveryContext>;

/// Records produced but not yet acknowledged, at most (librdkafka's queue): bounds memory.
const IN_FLIGHT: &str = "20000";

/// The idempotent, ordered producer, reporting deliveries to `deliveries`.
pub fn producer(
    cfg: &KafkaConfig,
    deliveries: Arc<Deliveries>,
) -> Result<KafkaProducer, PublishError> {
    let mut c = kafka::client_config(
        cfg,
        kafka::ClientRole::Producer,
        &[
            // A record goes out at once when nothing is in flight; while requests are, the
            // next batch fills (librdkafka sends what queued meanwhile), so batches grow with
            // load without a timer delaying a trickle.
            ("linger.ms", "0"),
            ("queue.buffering.max.messages", IN_FLIGHT),
            // A broker outage of any length is waited out: records stay queued (and produce
            // waits once the queue is full) instead of failing after librdkafka's default
            // 5 minutes, which would stop the source. Nothing is checkpointed meanwhile.
            ("message.timeout.ms", "0"),
        ],
    );
    // Not overridable (idempotence is the role's): key placement depends on it.
    c.set("partitioner", "murmur2_random");
    kafka::bound_producer_queue(&mut c)?;
    PolledProducer::new(&c, DeliveryContext::new(deliveries))
        .map_err(|e| PublishError::Setup(KafkaSetupError::client(e)))
}

/// Encodes and produces every change from `rx`, numbering the records, and queues each
/// checkpoint on `acks` with the number of records before it. Returns when `rx` closes, after
/// librdkafka flushed its queue.
pub async fn run(
    cfg: &KafkaConfig,
    mut encoder: Encoder,
    producer: KafkaProducer,
    mut rx: EventReceiver,
    acks: mpsc::Sender<Pending>,
    stop: CancellationToken,
) -> Result<(), PublishError> {
    let (mut key, mut value) = (Vec::new(), Vec::new());
    let mut out = NumberedProducer {
        producer: &producer,
        topics: HashMap::new(),
        last: None,
        produced: 0,
    };
    // Tables whose new schema the registry refused, with the changes held back since.
    let mut halted: HashMap<TableId, u64> = HashMap::new();
    'events: while let Some(event) = rx.recv().await {
        let (changes, read) = match event {
            // While a table is halted no position is stored: a restart (after the schema is
            // fixed) reads its held-back changes again, and the other tables' once more.
            SourceEvent::Checkpoint(_) if !halted.is_empty() => continue,
            SourceEvent::Checkpoint(checkpoint) => {
                let pending = Pending {
                    checkpoint,
                    after: out.produced,
                    queued: std::time::Instant::now(),
                };
                // The acker only stops early on an error, which it returns itself.
                acks.send(pending)
                    .await
                    .map_err(|_| PublishError::ProducerGone)?;
                continue;
            }
            SourceEvent::Changes { changes, read } => (changes, read),
        };
        let now_ms = time::now_ms();
        for change in &changes {
            if let Some(held) = halted.get_mut(&change.table.id) {
                *held += 1;
                continue;
            }
            let (registered, first) = match encoder.registered(&change.table, &stop).await {
                Ok(Some(r)) => r,
                // Stopped while waiting for the registry: nothing after this is published,
                // so no checkpoint after it is stored.
                Ok(None) => break 'events,
                Err(e @ EncodeError::Incompatible { .. }) => {
                    tracing::error!(
                        table = %change.table.id,
                        error = %e,
                        "table halted: none of its changes are published until the schema is \
                         accepted; other tables keep flowing; positions are no longer stored"
                    );
                    halted.insert(change.table.id.clone(), 1);
                    metrics()
                        .publish
                        .tables_held
                        .set(i64::try_from(halted.len()).unwrap_or(i64::MAX));
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if first && !kafka::ensure_topics(cfg, &[registered.topic.to_string()], &stop).await? {
                break 'events;
            }
            encoder.encode(&registered, change, now_ms, &mut key, &mut value)?;
            let topic = out.topic(&registered.topic)?;
            match change.op {
                Op::Truncate => {
                    // Asked each time (truncates are rare): partitions may have been added.
                    for p in 0..partition_count(&producer, topic.name()).await? {
                        out.produce(&topic, Place::Partition(p), Some(&value))
                            .await?;
                    }
                }
                Op::Delete => {
                    out.produce(&topic, Place::Key(&key), Some(&value)).await?;
                    // The tombstone lets log compaction drop the key once its delete is
                    // consumed.
                    out.produce(&topic, Place::Key(&key), None).await?;
                }
                Op::Create | Op::Update | Op::Read => {
                    out.produce(&topic, Place::Key(&key), Some(&value)).await?;
                }
            }
        }
        if let Some(read) = read {
            metrics()
                .stages
                .read_to_produced
                .observe(read.elapsed().as_secs_f64());
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
async fn partition_count(producer: &KafkaProducer, topic: &Arc<str>) -> Result<i32, PublishError> {
    // Blocks for a round trip; truncates are rare enough not to need a thread of their own.
    let metadata = tokio::task::block_in_place(|| {
        producer
            .client()
            .fetch_metadata(Some(topic), Duration::from_secs(30))
    });
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

/// The producer's handle of a topic.
type Topic = ProducerTopic<DeliveryContext>;

/// The producer, its topic handles, and the number of records handed to it so far.
struct NumberedProducer<'p> {
    producer: &'p KafkaProducer,
    topics: HashMap<Arc<str>, Arc<Topic>>,
    // The topic of the last change: a run of changes to one table skips the hashing.
    last: Option<Arc<Topic>>,
    produced: u64,
}

impl NumberedProducer<'_> {
    /// The handle of `name`, made on its first record.
    fn topic(&mut self, name: &Arc<str>) -> Result<Arc<Topic>, PublishError> {
        if let Some(last) = self.last.as_ref().filter(|t| Arc::ptr_eq(t.name(), name)) {
            return Ok(last.clone());
        }
        let topic =
            match self.topics.get(name) {
                Some(topic) => topic.clone(),
                None => {
                    let topic = Arc::new(self.producer.topic(name).map_err(|error| {
                        PublishError::Produce {
                            topic: name.to_string(),
                            error,
                        }
                    })?);
                    self.topics.insert(name.clone(), topic.clone());
                    topic
                }
            };
        self.last = Some(topic.clone());
        Ok(topic)
    }

    /// Hands one record to librdkafka under the next number, waiting while its queue is full.
    async fn produce(
        &mut self,
        topic: &Topic,
        place: Place<'_>,
        value: Option<&[u8]>,
    ) -> Result<(), PublishError> {
        let seq = usize::try_from(self.produced).expect("64-bit");
        let (partition, key) = match place {
            Place::Key(key) => (None, Some(key)),
            Place::Partition(p) => (Some(p), None),
        };
        loop {
            match topic.send(partition, key, value, seq) {
                Ok(()) => {
                    self.produced += 1;
                    metrics().publish.produced.inc();
                    return Ok(());
                }
                Err(RDKafkaErrorCode::QueueFull) => {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err(code) => {
                    return Err(PublishError::Produce {
                        topic: topic.name().to_string(),
                        error: KafkaError::MessageProduction(code),
                    });
                }
            }
        }
    }
}
