//! Why the loader stopped.

use crate::kafka::KafkaSetupError;
use crate::wire::registry::ClientError;

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
