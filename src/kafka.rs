//! Kafka client settings and topic creation, shared by the publisher and the loader.

use std::collections::HashSet;
use std::ffi::{CString, c_void};
use std::ops::Deref;
use std::ptr::{self, NonNull};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr, RDKafkaTopic};
use rdkafka::{ClientConfig, IntoOpaque, bindings};

use tokio_util::sync::CancellationToken;

use crate::config::{KafkaConfig, canonical_property, is_secret};
use crate::retry::Backoff;

/// A Kafka client or topic operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    /// librdkafka refused the configuration; see [`KafkaSetupError::client`].
    #[error(
        "cannot create a Kafka client: {0}; check `kafka.brokers` and the keys under \
         `[kafka.properties]`, `[kafka.producer_properties]` and `[kafka.consumer_properties]`"
    )]
    Client(String),
    /// Topics could not be created.
    #[error(
        "cannot create topic {topics}: {message}; check that the brokers at {brokers} are \
         reachable and allow topic creation, or create the topics yourself ({partitions} \
         partitions, replication factor {replication_factor}: `kafka.partitions`, \
         `kafka.replication_factor`)"
    )]
    CreateTopic {
        /// The refused topics, comma-separated.
        topics: String,
        /// Brokers.
        brokers: String,
        /// Broker's answer.
        message: String,
        /// Partitions Sluice asked for.
        partitions: i32,
        /// Replication factor Sluice asked for.
        replication_factor: i32,
    },
    /// The producer's queue cannot hold a record of the largest size allowed.
    #[error(
        "`[kafka.properties]` or `[kafka.producer_properties]`: records may be up to {record} \
         bytes (`message.max.bytes`), but the producer's queue holds {queue_kib} KiB \
         (`queue.buffering.max.kbytes`), so such a record could never be queued; set \
         `queue.buffering.max.kbytes` to at least {} or lower `message.max.bytes`",
        record.div_ceil(1024)
    )]
    QueueBelowRecord {
        /// `message.max.bytes`.
        record: u64,
        /// `queue.buffering.max.kbytes`.
        queue_kib: u64,
    },
    /// The cluster's topics could not be listed.
    #[error(
        "cannot list the topics of the cluster at {brokers}: {message}; check `kafka.brokers` \
         and the security settings under `[kafka.properties]` (the Sluice principal needs to \
         describe topics)"
    )]
    ListTopics {
        /// Brokers.
        brokers: String,
        /// Client's or broker's answer.
        message: String,
    },
}

impl KafkaSetupError {
    /// librdkafka refused to create a client. rdkafka prints a refused property with its
    /// value, and librdkafka's own reason often quotes the value too; a credential's value is
    /// replaced by `***` in both, and the property is named.
    pub fn client(e: KafkaError) -> Self {
        KafkaSetupError::Client(match e {
            KafkaError::ClientConfig(_, reason, key, value) => {
                let reason = if is_secret(&key) && !value.is_empty() {
                    reason.replace(&value, "***")
                } else {
                    reason
                };
                if reason.contains(&key) {
                    reason
                } else {
                    format!("{reason} (property \"{key}\")")
                }
            }
            e => e.to_string(),
        })
    }
}

/// A producer whose delivery reports are served by a thread of its own, in rounds of a
/// second.
///
/// rdkafka's `ThreadedProducer` polls in rounds of 100 ms, and as a round's deadline nears it
/// asks librdkafka with a timeout rounded down to 0 ms until the deadline passes: up to a
/// millisecond of spinning per round, which was most of an idle pipeline's CPU. Reports are
/// still handled as they arrive: a round serves each one as librdkafka queues it.
pub struct PolledProducer<C: ProducerContext + 'static> {
    producer: Arc<BaseProducer<C>>,
    stop: Arc<AtomicBool>,
}

impl<C: ProducerContext + 'static> PolledProducer<C> {
    /// Creates the producer and its polling thread.
    pub fn new(config: &ClientConfig, context: C) -> KafkaResult<Self> {
        let producer = Arc::new(config.create_with_context::<C, BaseProducer<C>>(context)?);
        let stop = Arc::new(AtomicBool::new(false));
        let (polled, stopped) = (producer.clone(), stop.clone());
        std::thread::Builder::new()
            .name("sluice-kafka-reports".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    polled.poll(POLL_ROUND);
                }
            })
            .map_err(|e| KafkaError::ClientCreation(format!("polling thread: {e}")))?;
        Ok(PolledProducer { producer, stop })
    }

    /// A handle of `topic` to produce through.
    pub fn topic(&self, topic: &Arc<str>) -> KafkaResult<ProducerTopic<C>> {
        let name = CString::new(topic.as_bytes()).map_err(|_| {
            KafkaError::ClientCreation(format!("topic name {topic:?} contains a NUL byte"))
        })?;
        // SAFETY: the client is alive (`self.producer`), and `name` outlives the call, which
        // copies it. A null configuration means the client's defaults, as for records
        // produced by name.
        let rkt = unsafe {
            bindings::rd_kafka_topic_new(
                self.producer.client().native_ptr(),
                name.as_ptr(),
                ptr::null_mut(),
            )
        };
        match NonNull::new(rkt) {
            Some(rkt) => Ok(ProducerTopic {
                rkt,
                name: topic.clone(),
                _client: self.producer.clone(),
            }),
            // SAFETY: reads this thread's last librdkafka error, just set.
            None => Err(KafkaError::MessageProduction(
                unsafe { bindings::rd_kafka_last_error() }.into(),
            )),
        }
    }
}

/// A topic of a [`PolledProducer`], looked up once.
///
/// Producing by name, rdkafka's only way, copies the name into a C string and looks the topic
/// up under a lock for every record: about a tenth of a snapshot row's instructions
/// (docs/benchmarks.md). Records produced through a handle go through the same partitioner,
/// queue and delivery reports.
pub struct ProducerTopic<C: ProducerContext + 'static> {
    rkt: NonNull<RDKafkaTopic>,
    name: Arc<str>,
    // Held, not used: librdkafka wants every topic handle destroyed before its client.
    _client: Arc<BaseProducer<C>>,
}

// SAFETY: librdkafka's topic handles are reference-counted and locked inside; its API may
// be called on one from any thread.
unsafe impl<C: ProducerContext + 'static> Send for ProducerTopic<C> {}
// SAFETY: as above; `send` takes `&self` and librdkafka serialises what it shares.
unsafe impl<C: ProducerContext + 'static> Sync for ProducerTopic<C> {}

/// librdkafka's "no partition yet": the configured partitioner picks one from the key.
const UNASSIGNED_PARTITION: i32 = -1;

impl<C: ProducerContext + 'static> ProducerTopic<C> {
    /// The topic's name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Queues one record: to `partition`, or where the partitioner puts `key`. A `None`
    /// payload is a tombstone. `opaque` comes back in the record's delivery report.
    pub fn send(
        &self,
        partition: Option<i32>,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        opaque: C::DeliveryOpaque,
    ) -> Result<(), RDKafkaErrorCode> {
        let (payload_ptr, payload_len) =
            payload.map_or((ptr::null(), 0), |p| (p.as_ptr(), p.len()));
        let (key_ptr, key_len) = key.map_or((ptr::null(), 0), |k| (k.as_ptr(), k.len()));
        let opaque = opaque.into_ptr();
        // SAFETY: the handle and its client are alive (`self`). With `RD_KAFKA_MSG_F_COPY`
        // librdkafka copies key and payload before it returns, and never writes through the
        // payload pointer.
        let failed = unsafe {
            bindings::rd_kafka_produce(
                self.rkt.as_ptr(),
                partition.unwrap_or(UNASSIGNED_PARTITION),
                bindings::RD_KAFKA_MSG_F_COPY,
                payload_ptr.cast_mut().cast::<c_void>(),
                payload_len,
                key_ptr.cast::<c_void>(),
                key_len,
                opaque,
            )
        } != 0;
        if !failed {
            return Ok(());
        }
        // SAFETY: a record that was not queued has no delivery report, so the opaque is
        // still ours to take back; the error is this thread's, just set.
        unsafe {
            drop(C::DeliveryOpaque::from_ptr(opaque));
            Err(bindings::rd_kafka_last_error().into())
        }
    }
}

impl<C: ProducerContext + 'static> Drop for ProducerTopic<C> {
    fn drop(&mut self) {
        // SAFETY: the handle came from `rd_kafka_topic_new` and is released once; queued
        // records keep their own reference to the topic.
        unsafe { bindings::rd_kafka_topic_destroy(self.rkt.as_ptr()) }
    }
}

/// How long one poll of the delivery reports waits for the next.
const POLL_ROUND: Duration = Duration::from_secs(1);

impl<C: ProducerContext + 'static> Deref for PolledProducer<C> {
    type Target = BaseProducer<C>;

    fn deref(&self) -> &BaseProducer<C> {
        &self.producer
    }
}

impl<C: ProducerContext + 'static> Drop for PolledProducer<C> {
    /// The thread ends within a round and drops its share of the producer; not waited for.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What a client is for, which decides the user's properties it gets and what is forced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientRole {
    /// Produces records: `[kafka.producer_properties]` apply; always idempotent with
    /// `acks=all` (no duplicates or reordering from retries).
    Producer,
    /// Reads records: `[kafka.consumer_properties]` apply; never commits offsets by itself.
    Consumer,
    /// Lists or creates topics: only `[kafka.properties]` apply.
    Admin,
}

/// Base settings for a client: brokers, Sluice's `defaults` for this client, the user's
/// `[kafka.properties]`, then the user's properties for the client's `role`, each overriding
/// the ones before; last what the role forces (the config check refuses those keys from the
/// user).
pub fn client_config(
    cfg: &KafkaConfig,
    role: ClientRole,
    defaults: &[(&str, &str)],
) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers);
    let for_role = match role {
        ClientRole::Producer => Some(&cfg.producer_properties),
        ClientRole::Consumer => Some(&cfg.consumer_properties),
        ClientRole::Admin => None,
    };
    let user = cfg.properties.iter().chain(for_role.into_iter().flatten());
    // By librdkafka's own names, so a user's `linger.ms` replaces Sluice's default instead of
    // racing it as `queue.buffering.max.ms`.
    for (k, v) in defaults
        .iter()
        .copied()
        .chain(user.map(|(k, v)| (k.as_str(), v.as_str())))
    {
        c.set(canonical_property(k), v);
    }
    let forced: &[(&str, &str)] = match role {
        ClientRole::Producer => &[("enable.idempotence", "true"), ("acks", "all")],
        ClientRole::Consumer => &[("enable.auto.commit", "false")],
        ClientRole::Admin => &[],
    };
    for (k, v) in forced {
        c.set(canonical_property(k), *v);
    }
    c
}

/// librdkafka's default `message.max.bytes`.
const MESSAGE_MAX_BYTES: u64 = 1_000_000;

/// Bytes of record values in librdkafka's queue, at most (KiB), unless set: bounds memory
/// when rows are wide (20,000 records of 8 KiB would be 160 MiB; librdkafka's own default is
/// 1 GiB). Records of narrow rows never reach it. Raised to fit `message.max.bytes`.
const QUEUE_KIB: u64 = 8 * 1024;

/// Bounds a producer's queue in bytes ([`QUEUE_KIB`], or the largest record if larger), and
/// refuses a queue set smaller than the largest record: librdkafka would answer "queue full"
/// to such a record forever, even with nothing else queued.
pub fn bound_producer_queue(c: &mut ClientConfig) -> Result<(), KafkaSetupError> {
    // A value that is not a number is librdkafka's to refuse, with its own message.
    let number = |v: &str| v.trim().parse::<u64>().ok();
    let record = c
        .get("message.max.bytes")
        .map_or(Some(MESSAGE_MAX_BYTES), number);
    let Some(queue) = c.get("queue.buffering.max.kbytes") else {
        let fits = record.map_or(0, |r| r.div_ceil(1024));
        c.set(
            "queue.buffering.max.kbytes",
            QUEUE_KIB.max(fits).to_string(),
        );
        return Ok(());
    };
    match (record, number(queue)) {
        (Some(record), Some(queue_kib)) if record > queue_kib.saturating_mul(1024) => {
            Err(KafkaSetupError::QueueBelowRecord { record, queue_kib })
        }
        _ => Ok(()),
    }
}

/// Creates the topics that do not exist yet. Brokers without auto-creation (tansu) need this
/// before the first produce or subscribe. While no broker answers (not started yet,
/// restarting) it waits with backoff; false if `shutdown` came first.
pub async fn ensure_topics(
    cfg: &KafkaConfig,
    topics: &[String],
    shutdown: &CancellationToken,
) -> Result<bool, KafkaSetupError> {
    if topics.is_empty() {
        return Ok(true); // an empty CreateTopics request is an error to the admin client
    }
    let mut backoff = Backoff::default();
    loop {
        match create_topics(cfg, topics).await? {
            Ok(()) => return Ok(true),
            Err(reason) => {
                let reason = format!("brokers {}: {reason}", cfg.brokers);
                let next = "Kafka is not reachable; waiting for it";
                if !backoff.wait_out(reason, next, shutdown).await {
                    return Ok(false);
                }
            }
        }
    }
}

/// Codes of an unreachable or not yet ready cluster: worth waiting for.
fn is_unreachable(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::OperationTimedOut
            | C::RequestTimedOut
            | C::BrokerTransportFailure
            | C::AllBrokersDown
            | C::BrokerNotAvailable
            | C::NetworkException
            | C::NotController
            | C::LeaderNotAvailable
    )
}

/// One attempt at creating those of `topics` the cluster lacks: `Ok(Err(reason))` when no
/// broker answered in time.
async fn create_topics(
    cfg: &KafkaConfig,
    topics: &[String],
) -> Result<Result<(), String>, KafkaSetupError> {
    let failed = |topics: Vec<&str>, message: String| KafkaSetupError::CreateTopic {
        topics: topics.join(", "),
        brokers: cfg.brokers.clone(),
        message,
        partitions: cfg.partitions,
        replication_factor: cfg.replication_factor,
    };
    // Topics that exist are not asked for: a cluster whose ACLs deny topic creation refuses
    // CreateTopics even for them, and there the topics are created by whoever may.
    let existing = match existing_topics(cfg).await? {
        Ok(existing) => existing,
        Err(KafkaError::MetadataFetch(code)) if is_unreachable(code) => {
            return Ok(Err(code.to_string()));
        }
        Err(e) => {
            return Err(KafkaSetupError::ListTopics {
                brokers: cfg.brokers.clone(),
                message: e.to_string(),
            });
        }
    };
    let missing: Vec<&String> = topics.iter().filter(|t| !existing.contains(*t)).collect();
    if missing.is_empty() {
        return Ok(Ok(()));
    }
    let admin: AdminClient<DefaultClientContext> = client_config(cfg, ClientRole::Admin, &[])
        .create()
        .map_err(KafkaSetupError::client)?;
    let new: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|t| {
            NewTopic::new(
                t,
                cfg.partitions,
                TopicReplication::Fixed(cfg.replication_factor),
            )
        })
        .collect();
    // Short per attempt, so an unreachable cluster is reported, and retried, every few seconds.
    let opts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(30)))
        .request_timeout(Some(Duration::from_secs(10)));
    let results = match admin.create_topics(&new, &opts).await {
        Ok(results) => results,
        Err(KafkaError::AdminOp(code)) if is_unreachable(code) => return Ok(Err(code.to_string())),
        Err(e) => {
            let names = missing.iter().map(|t| t.as_str()).collect();
            return Err(failed(names, e.to_string()));
        }
    };
    // Every refusal at once, so whoever creates the topics by hand learns all their names.
    let mut refused: Vec<(String, RDKafkaErrorCode)> = Vec::new();
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) if is_unreachable(code) => return Ok(Err(code.to_string())),
            Err(topic_code) => refused.push(topic_code),
        }
    }
    let Some((_, code)) = refused.first() else {
        return Ok(Ok(()));
    };
    let names = refused.iter().map(|(t, _)| t.as_str()).collect();
    Err(failed(names, code.to_string()))
}

/// The names of the topics the cluster has. Listing all topics, rather than asking for ours,
/// keeps a broker with auto-creation from creating them with its own defaults. A topic listed
/// with an error (no leader during an election, say) exists all the same: asking to create it
/// would fail on a cluster that denies creation, where waiting for the leader would not.
async fn existing_topics(
    cfg: &KafkaConfig,
) -> Result<KafkaResult<HashSet<String>>, KafkaSetupError> {
    let client: BaseConsumer = client_config(cfg, ClientRole::Admin, &[])
        .create()
        .map_err(KafkaSetupError::client)?;
    let listed = tokio::task::spawn_blocking(move || {
        let metadata = client.fetch_metadata(None, Duration::from_secs(10))?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| t.error() != Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART))
            .map(|t| t.name().to_string())
            .collect())
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    Ok(listed)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn map(properties: &[(&str, &str)]) -> BTreeMap<String, String> {
        properties
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn kafka_config(properties: &[(&str, &str)]) -> KafkaConfig {
        KafkaConfig {
            brokers: "127.0.0.1:9".into(),
            topic_prefix: "t".into(),
            partitions: 1,
            replication_factor: 1,
            properties: map(properties),
            producer_properties: BTreeMap::new(),
            consumer_properties: BTreeMap::new(),
        }
    }

    #[test]
    fn each_client_gets_the_common_properties_and_those_of_its_role() {
        let cfg = KafkaConfig {
            producer_properties: map(&[("linger.ms", "5"), ("client.id", "producer")]),
            consumer_properties: map(&[("fetch.min.bytes", "10"), ("client.id", "consumer")]),
            ..kafka_config(&[("client.id", "common"), ("socket.timeout.ms", "9000")])
        };
        let defaults = [("linger.ms", "0"), ("socket.timeout.ms", "1000")];
        let producer = client_config(&cfg, ClientRole::Producer, &defaults);
        // By librdkafka's own name: `linger.ms` is an alias of `queue.buffering.max.ms`.
        assert_eq!(producer.get("queue.buffering.max.ms"), Some("5"));
        assert_eq!(producer.get("linger.ms"), None);
        assert_eq!(producer.get("client.id"), Some("producer"));
        assert_eq!(producer.get("socket.timeout.ms"), Some("9000"));
        assert_eq!(producer.get("fetch.min.bytes"), None);
        assert_eq!(producer.get("enable.idempotence"), Some("true"));
        assert_eq!(producer.get("request.required.acks"), Some("all"));
        let consumer = client_config(&cfg, ClientRole::Consumer, &[]);
        assert_eq!(consumer.get("client.id"), Some("consumer"));
        assert_eq!(consumer.get("fetch.min.bytes"), Some("10"));
        assert_eq!(consumer.get("queue.buffering.max.ms"), None);
        assert_eq!(consumer.get("enable.auto.commit"), Some("false"));
        let admin = client_config(&cfg, ClientRole::Admin, &[]);
        assert_eq!(admin.get("client.id"), Some("common"));
        assert_eq!(admin.get("queue.buffering.max.ms"), None);
        assert_eq!(admin.get("fetch.min.bytes"), None);
        assert_eq!(admin.get("bootstrap.servers"), Some("127.0.0.1:9"));
    }

    #[test]
    fn an_alias_replaces_the_default_of_its_property() {
        let cfg = kafka_config(&[("delivery.timeout.ms", "30000")]);
        let c = client_config(&cfg, ClientRole::Producer, &[("message.timeout.ms", "0")]);
        assert_eq!(c.get("message.timeout.ms"), Some("30000"));
        assert_eq!(c.get("delivery.timeout.ms"), None);
    }

    #[test]
    fn a_refused_credential_is_named_but_not_printed() {
        // librdkafka refuses the value of a key it knows and quotes it in its reason; rdkafka
        // adds key and value. Neither reaches the message.
        let refused = |properties: &[(&str, &str)]| match client_config(
            &kafka_config(properties),
            ClientRole::Producer,
            &[],
        )
        .create_native_config()
        {
            Ok(_) => panic!("librdkafka took {properties:?}"),
            Err(e) => KafkaSetupError::client(e).to_string(),
        };
        let m = refused(&[("sasl.password", "hunter8"), ("socket.timeout.ms", "x1")]);
        assert!(m.contains("\"socket.timeout.ms\""), "{m}");
        let m = refused(&[("sasl.pasword", "hunter8")]);
        assert!(
            m.contains("\"sasl.pasword\"") && !m.contains("hunter8"),
            "{m}"
        );
        let reason = "Invalid value \"hunter8\" for configuration property \"ssl.key.password\"";
        let e = KafkaError::ClientConfig(
            rdkafka::types::RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
            reason.into(),
            "ssl.key.password".into(),
            "hunter8".into(),
        );
        let m = KafkaSetupError::client(e).to_string();
        assert!(
            m.contains("Invalid value \"***\"") && !m.contains("hunter8"),
            "{m}"
        );
    }

    #[test]
    fn the_queue_is_bounded_in_bytes_and_never_below_the_largest_record() {
        let queue = |properties: &[(&str, &str)]| {
            let mut c = client_config(&kafka_config(properties), ClientRole::Producer, &[]);
            bound_producer_queue(&mut c)
                .map(|()| c.get("queue.buffering.max.kbytes").unwrap().to_string())
        };
        assert_eq!(queue(&[]).unwrap(), "8192");
        // Raised to fit a larger record, unless set.
        assert_eq!(
            queue(&[("message.max.bytes", "20000000")]).unwrap(),
            "19532"
        );
        let set = [("queue.buffering.max.kbytes", "65536")];
        assert_eq!(queue(&set).unwrap(), "65536");
        let small = [
            ("message.max.bytes", "20000000"),
            ("queue.buffering.max.kbytes", "16384"),
        ];
        let text = queue(&small).expect_err("refused").to_string();
        assert!(text.contains("20000000"), "{text}");
        assert!(text.contains("at least 19532"), "{text}");
        let raised = [
            ("message.max.bytes", "20000000"),
            ("queue.buffering.max.kbytes", "19532"),
        ];
        assert_eq!(queue(&raised).unwrap(), "19532");
    }
}
