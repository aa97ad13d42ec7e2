//! Whether the pipeline has passed a binlog position: the source has stored a checkpoint at or
//! after it (so every change before it is in Kafka), and then the loader's group has committed
//! every record of the table's topic (so the index holds them). Only then does a difference
//! between a row and its document mean something.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::topic_partition_list::Offset;

use super::VerifyError;
use crate::config::{Config, KafkaConfig};
use crate::kafka::{ClientRole, KafkaSetupError, client_config};
use crate::model::{Position, Version, binlog_file_sequence};
use crate::positions::PositionStore;
use crate::tools::status;

/// How long one Kafka metadata or offsets request may take.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);
/// Between two looks at the pipeline.
const POLL: Duration = Duration::from_millis(200);

/// How far the source got.
enum SourceAt {
    /// It answered on its metrics endpoint with its last checkpoint.
    Checkpoint(Position),
    /// Nothing runs: its position store can be opened, so nothing more will be read.
    Stopped,
    /// It runs (its store is locked, or not on this host) but does not say where it is.
    Unknown,
}

/// The running pipeline, as verify sees it.
pub struct Pipeline {
    metrics: Option<SocketAddr>,
    state_dir: PathBuf,
    kafka: KafkaConfig,
    /// Made when first needed: a table without differences never asks Kafka.
    consumer: OnceLock<Arc<BaseConsumer>>,
    group: String,
}

impl Pipeline {
    /// The pipeline `config` describes.
    pub fn new(config: &Config, state_dir: PathBuf) -> Pipeline {
        Pipeline {
            metrics: config.metrics.listen,
            state_dir,
            kafka: config.kafka.clone(),
            consumer: OnceLock::new(),
            group: config.loader.group_id.clone(),
        }
    }

    fn consumer(&self) -> Result<Arc<BaseConsumer>, VerifyError> {
        if let Some(c) = self.consumer.get() {
            return Ok(c.clone());
        }
        let consumer: BaseConsumer = client_config(&self.kafka, ClientRole::Consumer, &[])
            .set("group.id", &self.group)
            .create()
            .map_err(|e| VerifyError::Kafka(KafkaSetupError::client(e).to_string()))?;
        Ok(self.consumer.get_or_init(|| Arc::new(consumer)).clone())
    }

    async fn source_at(&self) -> SourceAt {
        if let Some(addr) = self.metrics
            && let Some(samples) = status::scrape(addr).await
            && let Some((labels, _)) =
                status::series(&samples, "sluice_source_checkpoint_info").next()
            && let Some(file) = labels.get("file")
            && let Some(pos) = status::total(&samples, "sluice_source_checkpoint_position_bytes")
        {
            return SourceAt::Checkpoint(Position::new(file.clone(), pos as u64));
        }
        // Nothing answers: a source that does not run leaves its store unlocked. A store this
        // host does not have says nothing (the source may run elsewhere).
        if !self.state_dir.exists() {
            return SourceAt::Unknown;
        }
        let dir = self.state_dir.clone();
        match tokio::task::spawn_blocking(move || PositionStore::open(&dir)).await {
            Ok(Ok(_)) => SourceAt::Stopped,
            _ => SourceAt::Unknown,
        }
    }

    /// The end offsets of `topic`'s partitions, or whether the loader's group has committed
    /// up to `ends` (with `Some`).
    async fn offsets(
        &self,
        topic: &str,
        ends: Option<Arc<Vec<(i32, i64)>>>,
    ) -> Result<(Vec<(i32, i64)>, bool), VerifyError> {
        let (consumer, topic) = (self.consumer()?, topic.to_string());
        let group = self.group.clone();
        tokio::task::spawn_blocking(move || {
            let kafka = |e: rdkafka::error::KafkaError| {
                VerifyError::Kafka(format!(
                    "reading the offsets of group {group} on {topic}: {e}"
                ))
            };
            let Some(ends) = ends else {
                let metadata = consumer
                    .fetch_metadata(Some(&topic), KAFKA_TIMEOUT)
                    .map_err(kafka)?;
                // A topic that does not exist holds no records; any other error is no answer.
                if let Some(e) = metadata.topics().iter().find_map(|t| t.error())
                    && RDKafkaErrorCode::from(e) != RDKafkaErrorCode::UnknownTopicOrPartition
                {
                    return Err(VerifyError::Kafka(format!(
                        "describing topic {topic} (group {group}): {}; verify needs Describe on \
                         it and Describe on the group",
                        RDKafkaErrorCode::from(e)
                    )));
                }
                let mut out = Vec::new();
                for p in metadata.topics().iter().flat_map(|t| t.partitions()) {
                    let (_, high) = consumer
                        .fetch_watermarks(&topic, p.id(), KAFKA_TIMEOUT)
                        .map_err(kafka)?;
                    out.push((p.id(), high));
                }
                return Ok((out, false));
            };
            let mut partitions = TopicPartitionList::new();
            for (p, _) in ends.iter() {
                partitions.add_partition(&topic, *p);
            }
            let committed = consumer
                .committed_offsets(partitions, KAFKA_TIMEOUT)
                .map_err(kafka)?;
            let done = ends.iter().all(|&(p, end)| {
                let at = committed
                    .find_partition(&topic, p)
                    .map_or(Offset::Invalid, |e| e.offset());
                match at {
                    Offset::Offset(n) => n >= end,
                    _ => end == 0,
                }
            });
            Ok((Vec::new(), done))
        })
        .await
        .map_err(|e| VerifyError::Kafka(format!("reading consumer offsets: {e}")))?
    }

    /// Waits until the pipeline has passed `position` for `topic`; false if `patience` ran out
    /// first.
    pub async fn wait_passed(
        &self,
        position: &Position,
        topic: &str,
        patience: Duration,
    ) -> Result<bool, VerifyError> {
        let deadline = Instant::now() + patience;
        // First the source: once its checkpoint passed the position, every record of a change
        // before it is in Kafka, below the topic's end offsets read then.
        loop {
            let done = match self.source_at().await {
                SourceAt::Checkpoint(at) => order(&at) >= order(position),
                SourceAt::Stopped => true,
                // A scrape that failed once (a timeout, a moment between two updates) is
                // asked again until the patience runs out.
                SourceAt::Unknown if Instant::now() < deadline => false,
                SourceAt::Unknown => {
                    return Err(VerifyError::Pipeline(format!(
                        "cannot tell how far the source got: its metrics endpoint does not \
                         answer with a checkpoint, and its state directory {} is locked or not \
                         on this host; verify needs `[metrics] listen` of the running source in \
                         this config to tell a difference from a change still on its way",
                        self.state_dir.display()
                    )));
                }
            };
            if done {
                break;
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(POLL).await;
        }
        // Then the loader, up to those offsets (later records may keep coming).
        let ends = Arc::new(self.offsets(topic, None).await?.0);
        loop {
            if self.offsets(topic, Some(ends.clone())).await?.1 {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// A position's place in binlog order.
fn order(p: &Position) -> (u32, u64) {
    (binlog_file_sequence(&p.file).unwrap_or(0), p.pos)
}

/// The version a change at `position` gets: documents written by changes before it have
/// lower versions.
pub fn version_at(position: &Position) -> u64 {
    Version::at(
        binlog_file_sequence(&position.file).unwrap_or(0),
        u32::try_from(position.pos).unwrap_or(u32::MAX),
    )
    .get()
}
