//! `[kafka]`: the cluster between source and loader.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::Problems;

/// `[kafka]`.
#[derive(Debug, Clone, Deserialize)]
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
    /// Extra librdkafka properties for every client, e.g. `"compression.type" = "zstd"`.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
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
    }
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
