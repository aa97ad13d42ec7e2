//! `[kafka]`: the cluster between source and loader.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use super::Problems;
use super::secret::properties;

/// `[kafka]`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// Topics are `<topic_prefix>.<db>.<table>`; also the `source.name` of every record.
    pub topic_prefix: String,
    /// Partitions of topics Sluice creates.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// Replication factor of topics Sluice creates.
    #[serde(default = "default_replication_factor")]
    pub replication_factor: i32,
    /// Extra librdkafka properties for every client, e.g. security settings.
    #[serde(default, deserialize_with = "properties")]
    pub properties: BTreeMap<String, String>,
    /// Extra librdkafka properties for the producers only (the source's, the loader's
    /// dead-letter one), e.g. `"compression.type" = "zstd"`; they override `properties`.
    /// Kept apart because librdkafka warns about a producer property given to a consumer.
    #[serde(default, deserialize_with = "properties")]
    pub producer_properties: BTreeMap<String, String>,
    /// Extra librdkafka properties for the consumers only (the loader's, `sluice verify`'s);
    /// they override `properties`.
    #[serde(default, deserialize_with = "properties")]
    pub consumer_properties: BTreeMap<String, String>,
}

impl fmt::Debug for KafkaConfig {
    /// As derived, but the values of properties that hold credentials print as `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |properties: &BTreeMap<String, String>| -> BTreeMap<String, String> {
            properties
                .iter()
                .map(|(k, v)| {
                    let v = if is_secret(k) { "***" } else { v.as_str() };
                    (k.clone(), v.to_string())
                })
                .collect()
        };
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("topic_prefix", &self.topic_prefix)
            .field("partitions", &self.partitions)
            .field("replication_factor", &self.replication_factor)
            .field("properties", &redacted(&self.properties))
            .field("producer_properties", &redacted(&self.producer_properties))
            .field("consumer_properties", &redacted(&self.consumer_properties))
            .finish()
    }
}

/// Whether a librdkafka property holds a credential: `sasl.password`,
/// `ssl.key.password`, `ssl.keystore.password`, `sasl.oauthbearer.client.secret`,
/// `ssl.key.pem`, `sasl.oauthbearer.config` (which may embed a secret),
/// `sasl.oauthbearer.assertion.private.key.passphrase`.
pub(crate) fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "key.pem",
        "oauthbearer.config",
        "passphrase",
    ]
    .iter()
    .any(|s| key.contains(s))
}

fn default_partitions() -> i32 {
    3
}

fn default_replication_factor() -> i32 {
    1
}

impl KafkaConfig {
    pub(super) fn check(&self, p: &mut Problems) {
        if let Err(m) = check_brokers(&self.brokers) {
            p.push(format!("`kafka.brokers`: {m}"));
        }
        if self.topic_prefix.is_empty() {
            p.push("`kafka.topic_prefix` is empty");
        }
        if self.partitions < 1 {
            p.push("`kafka.partitions` must be at least 1");
        }
        if self.replication_factor < 1 {
            p.push("`kafka.replication_factor` must be at least 1");
        }
        let tables = [
            ("properties", &self.properties),
            ("producer_properties", &self.producer_properties),
            ("consumer_properties", &self.consumer_properties),
        ];
        for (table, properties) in tables {
            let mut seen = BTreeMap::new();
            for key in properties.keys() {
                if let Some(first) = seen.insert(canonical_property(key), key) {
                    p.push(format!(
                        "`[kafka.{table}]`: \"{first}\" and \"{key}\" name the same librdkafka \
                         property; keep one"
                    ));
                }
                if let Some(why) = owned(key) {
                    p.push(format!("`kafka.{table}.\"{key}\"`: {why}"));
                } else if table != "properties" && is_connection(key) {
                    p.push(format!(
                        "`kafka.{table}.\"{key}\"`: move it to `[kafka.properties]`: the \
                         clients that list and create topics connect with it too"
                    ));
                }
            }
        }
    }
}

/// librdkafka's own name of a property given by one of its aliases (`linger.ms` is
/// `queue.buffering.max.ms`, `acks` is `request.required.acks`, `topic.acks` too: librdkafka
/// drops a `topic.` prefix its global properties do not have). librdkafka applies a client's
/// properties in no fixed order, so two names of one property must never both be set: Sluice
/// sets and compares properties by these names.
pub(crate) fn canonical_property(key: &str) -> &str {
    const GLOBAL_TOPIC_PROPERTIES: [&str; 6] = [
        "topic.metadata.refresh.interval.ms",
        "topic.metadata.refresh.fast.interval.ms",
        "topic.metadata.refresh.fast.cnt",
        "topic.metadata.refresh.sparse",
        "topic.metadata.propagation.max.ms",
        "topic.blacklist",
    ];
    let key = match key.strip_prefix("topic.") {
        Some(rest) if !GLOBAL_TOPIC_PROPERTIES.contains(&key) => rest,
        _ => key,
    };
    match key {
        "bootstrap.servers" => "metadata.broker.list",
        "max.in.flight" => "max.in.flight.requests.per.connection",
        "sasl.mechanism" => "sasl.mechanisms",
        "sasl.oauthbearer.client.credentials.client.id" => "sasl.oauthbearer.client.id",
        "sasl.oauthbearer.client.credentials.client.secret" => "sasl.oauthbearer.client.secret",
        "max.partition.fetch.bytes" => "fetch.message.max.bytes",
        "linger.ms" => "queue.buffering.max.ms",
        "retries" => "message.send.max.retries",
        "compression.type" => "compression.codec",
        "acks" => "request.required.acks",
        "delivery.timeout.ms" => "message.timeout.ms",
        // `enable.auto.commit` is a global property of its own; only the topic-level one is
        // an alias of the legacy `auto.commit.enable`. Both are refused.
        other => other,
    }
}

/// Why a librdkafka property may not be set by the user: Sluice sets it itself, from a
/// setting of its own or because lossless delivery depends on its value, or Sluice does not
/// work with it (a user's value would otherwise be overwritten in silence, or break it).
fn owned(key: &str) -> Option<&'static str> {
    Some(match canonical_property(key) {
        "metadata.broker.list" => "remove it and set `kafka.brokers` instead",
        "fetch.wait.max.ms" => "remove it and set `loader.fetch_wait_ms` instead",
        "group.id" => "remove it and set `loader.group_id` instead",
        "group.instance.id" => "remove it and set `loader.instance_id` instead",
        "enable.idempotence" | "request.required.acks" | "partitioner" => {
            "remove it: Sluice sets it, since per-key order, key placement and no duplicates \
             depend on its value"
        }
        "enable.auto.commit"
        | "auto.commit.enable"
        | "auto.offset.reset"
        | "enable.partition.eof" => {
            "remove it: Sluice sets it, since the loader commits offsets only after the index \
             accepted the records, and starts a new group at the earliest offset"
        }
        "partition.assignment.strategy" | "group.protocol" => {
            "remove it: the loader expects eager rebalances (every partition revoked before \
             the next assignment), which librdkafka's default assignors give"
        }
        "transactional.id" => {
            "remove it: Sluice's producer is idempotent, not transactional; its records would \
             be refused outside a transaction"
        }
        _ => return None,
    })
}

/// Whether a librdkafka property says how to reach or authenticate to the brokers, which
/// every client needs.
fn is_connection(key: &str) -> bool {
    [
        "security.protocol",
        "client.dns.lookup",
        "broker.address.family",
    ]
    .contains(&key)
        || ["sasl.", "ssl.", "https.", "enable.ssl.", "enable.sasl."]
            .iter()
            .any(|prefix| key.starts_with(prefix))
}

fn check_brokers(brokers: &str) -> Result<(), String> {
    if brokers.trim().is_empty() {
        return Err("empty; expected host:port[,host:port...]".into());
    }
    for b in brokers.split(',') {
        let b = b.trim();
        let ok = b.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !ok {
            return Err(format!("{b:?} is not host:port"));
        }
    }
    Ok(())
}
