//! Sluice: change data capture from the MySQL/MariaDB binlog, through Avro and a
//! Confluent-compatible schema registry, into Kafka and on into Elasticsearch.
//!
//! The modules follow one row change down the pipeline:
//!
//! 1. [`source`]: binlog (and the initial snapshot) -> typed [`model::Change`]s;
//! 2. [`encode`]: changes -> registered Avro schemas and Confluent-framed bytes;
//! 3. [`publish`]: bytes -> Kafka, checkpoints stored in [`positions`] once acknowledged;
//! 4. [`load`]: Kafka -> Elasticsearch bulk writes with external versions.
//!
//! [`model`] is the shared vocabulary, [`wire`] the contract between the two halves (topic and
//! subject names, the envelope, the registry client), [`config`] the configuration, [`kafka`]
//! client setup both Kafka stages use, [`storage`] how durable stores open sled, [`metrics`]
//! what operators watch, [`pipeline`] runs the stages, [`registry`] is Sluice's own schema
//! registry server, and [`tools`] look at a pipeline from outside (`sluice status`).

// Each module imports only from those above it (one per group, so formatting keeps the order).
pub mod model;

pub mod metrics;

pub mod retry;

pub mod storage;

pub mod wire;

pub mod config;

pub mod kafka;

pub mod positions;

pub mod source;

pub mod encode;

pub mod publish;

pub mod load;

pub mod registry;

pub mod pipeline;

pub mod tools;

#[cfg(test)]
mod contract_tests;

/// An error and its causes, leaving out causes its message already quotes: a TLS failure
/// sits several sources deep in an HTTP client's error, and the reason is what users need.
pub fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let t = c.to_string();
        if !text.contains(&t) {
            text = format!("{text}: {t}");
        }
        cause = c.source();
    }
    text
}
