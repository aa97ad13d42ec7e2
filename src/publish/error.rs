//! Why publishing stopped.

use rdkafka::error::KafkaError;

use crate::encode::EncodeError;
use crate::kafka::KafkaSetupError;
use crate::positions::PositionStoreError;

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
    Positions(#[from] PositionStoreError),
}
