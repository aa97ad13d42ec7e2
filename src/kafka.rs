//! Kafka client settings and topic creation, shared by the publisher and the loader.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::KafkaConfig;

/// A Kafka client or topic operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    /// librdkafka refused the configuration.
    #[error(
        "cannot create a Kafka client: {0}; check `kafka.brokers` and the keys under \
         `[kafka.properties]`"
    )]
    Client(KafkaError),
    /// A topic could not be created.
    #[error(
        "cannot create topic {topic}: {message}; check that the brokers at {brokers} are \
         reachable and allow topic creation, or create the topic yourself"
    )]
    CreateTopic {
        /// Topic.
        topic: String,
        /// Brokers.
        brokers: String,
        /// Broker's answer.
        message: String,
    },
}

/// Base settings for every client: brokers, Sluice's `defaults` for this client, then the
/// user's extra properties, which override the defaults.
pub fn client_config(cfg: &KafkaConfig, defaults: &[(&str, &str)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers);
    for (k, v) in defaults {
        c.set(*k, *v);
    }
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    c
}

/// Creates the topics that do not exist yet. Brokers without auto-creation (tansu) need this
/// before the first produce or subscribe.
pub async fn ensure_topics(cfg: &KafkaConfig, topics: &[String]) -> Result<(), KafkaSetupError> {
    if topics.is_empty() {
        return Ok(()); // an empty CreateTopics request is an error to the admin client
    }
    let admin: AdminClient<DefaultClientContext> = client_config(cfg, &[])
        .create()
        .map_err(KafkaSetupError::Client)?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            NewTopic::new(
                t,
                cfg.partitions,
                TopicReplication::Fixed(cfg.replication_factor),
            )
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results =
        admin
            .create_topics(&new, &opts)
            .await
            .map_err(|e| KafkaSetupError::CreateTopic {
                topic: topics.join(", "),
                brokers: cfg.brokers.clone(),
                message: e.to_string(),
            })?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(KafkaSetupError::CreateTopic {
                    topic,
                    brokers: cfg.brokers.clone(),
                    message: code.to_string(),
                });
            }
        }
    }
    Ok(())
}
