//! The dead-letter topic: records the loader can never apply, exactly as they were read, with
//! headers naming where they came from and why (Kafka Connect's `__connect.errors.*`
//! convention, as `sluice.errors.*`). They are counted and logged, and the partition goes on.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::error::LoadError;
use tokio_util::sync::CancellationToken;

use crate::config::KafkaConfig;
use crate::kafka::{self, KafkaSetupError};

/// Why a record is a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Not Sluice's Avro, an unknown schema id, or not an envelope.
    Decode,
    /// The index refused the document for good (mapping or document errors).
    Rejected,
}

impl ErrorClass {
    /// The `sluice.errors.class` header value.
    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::Decode => "decode",
            ErrorClass::Rejected => "rejected",
        }
    }
}

/// Where a record came from, and its bytes: the consumed message itself, kept (not copied)
/// until its batch settled, in case the index refuses it.
#[derive(Debug, Clone)]
pub struct Origin(OwnedMessage);

impl Origin {
    /// The origin of a consumed message.
    pub fn of(m: OwnedMessage) -> Origin {
        Origin(m)
    }

    /// The topic the record was read from.
    pub fn topic(&self) -> &str {
        self.0.topic()
    }

    /// The partition the record was read from.
    pub fn partition(&self) -> i32 {
        self.0.partition()
    }
}

/// A record the loader cannot apply.
#[derive(Debug)]
pub struct DeadLetter {
    /// The record.
    pub origin: Origin,
    /// Why, broadly.
    pub class: ErrorClass,
    /// Why, exactly.
    pub reason: String,
}

/// Writes dead letters to their topic.
pub struct DeadLetters {
    /// Its settings; the producer is made at the first dead letter, so a loader without any
    /// runs no second Kafka client (its threads and their wake-ups).
    config: ClientConfig,
    producer: Mutex<Option<FutureProducer>>,
    topic: String,
    total: AtomicU64,
}

impl DeadLetters {
    /// A writer to `topic`, created if missing; `None` if `shutdown` came while waiting for
    /// the cluster.
    pub async fn new(
        cfg: &KafkaConfig,
        topic: String,
        shutdown: &CancellationToken,
    ) -> Result<Option<DeadLetters>, LoadError> {
        if !kafka::ensure_topics(cfg, std::slice::from_ref(&topic), shutdown).await? {
            return Ok(None);
        }
        // As the publisher: a broker outage is waited out, however long.
        let mut config = kafka::client_config(
            cfg,
            kafka::ClientRole::Producer,
            &[("message.timeout.ms", "0")],
        );
        kafka::bound_producer_queue(&mut config)?;
        // Checked now (librdkafka parses it without starting a client), not at the first
        // dead letter, maybe days later.
        config
            .create_native_config()
            .map_err(|e| LoadError::Setup(KafkaSetupError::client(e)))?;
        Ok(Some(DeadLetters {
            config,
            producer: Mutex::default(),
            topic,
            total: AtomicU64::new(0),
        }))
    }

    /// The producer, made on first use.
    fn producer(&self) -> Result<FutureProducer, LoadError> {
        let mut made = self.producer.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = &*made {
            return Ok(p.clone());
        }
        let p: FutureProducer = self
            .config
            .create()
            .map_err(|e| LoadError::Setup(KafkaSetupError::client(e)))?;
        *made = Some(p.clone());
        Ok(p)
    }

    /// Sends `letters` and waits until Kafka has them all.
    pub async fn send(&self, letters: Vec<DeadLetter>) -> Result<(), LoadError> {
        for letter in letters {
            let o = &letter.origin.0;
            let (partition, offset) = (o.partition().to_string(), o.offset().to_string());
            let headers = [
                ("sluice.errors.topic", o.topic()),
                ("sluice.errors.partition", partition.as_str()),
                ("sluice.errors.offset", offset.as_str()),
                ("sluice.errors.class", letter.class.name()),
                ("sluice.errors.message", letter.reason.as_str()),
            ]
            .into_iter()
            .fold(OwnedHeaders::new(), |h, (key, value)| {
                h.insert(Header {
                    key,
                    value: Some(value),
                })
            });
            let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic).headers(headers);
            if let Some(k) = o.key() {
                record = record.key(k);
            }
            if let Some(p) = o.payload() {
                record = record.payload(p);
            }
            self.producer()?
                .send(record, Duration::from_secs(30))
                .await
                .map_err(|(error, _)| LoadError::DeadLetter {
                    topic: self.topic.clone(),
                    error,
                })?;
            let total = self.total.fetch_add(1, Ordering::Relaxed) + 1;
            // The record's bytes stay out of the log: they may hold what the column rules
            // would mask.
            tracing::error!(
                topic = %o.topic(),
                partition = o.partition(),
                offset = o.offset(),
                class = letter.class.name(),
                reason = %letter.reason,
                dead_letter_topic = %self.topic,
                dead_letters_total = total,
                "record sent to the dead-letter topic"
            );
        }
        Ok(())
    }
}
