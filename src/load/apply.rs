//! Applying a batch: mappings, the bulk request and truncates, retried while the index server
//! is unavailable; then dead letters stored, held tables paused and offsets committed.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::batch::Batch;
use super::bulk::{self, Outcome};
use super::dead_letter::{DeadLetter, DeadLetters, ErrorClass};
use super::error::LoadError;
use super::index::IndexWriter;
use super::lanes::{Partition, Rebalances, offset_list};
use crate::config::VectorMapping;
use crate::metrics::metrics;
use crate::model::{TableId, time};
use crate::retry::{Attempt, Backoff};

/// The offsets a settled bulk committed.
pub(super) type Committed = Vec<(Partition, i64)>;

/// What the bulks in flight share with the loop that reads.
pub(super) struct BulkContext {
    pub(super) writer: IndexWriter,
    pub(super) dead: DeadLetters,
    pub(super) consumer: Arc<StreamConsumer<Rebalances>>,
    /// Topics of tables whose index cannot take their new schema.
    pub(super) held: Mutex<BTreeSet<String>>,
    /// A bulk began retrying.
    pub(super) retry_started: Notify,
    pub(super) shutdown: CancellationToken,
}

impl BulkContext {
    pub(super) fn held(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Applies a batch, stores its dead letters, holds the tables it must, and commits its
/// offsets; returns them, or `None` if `shutdown` interrupted retries (nothing committed).
pub(super) async fn settle(
    shared: &BulkContext,
    mut batch: Batch,
    retrying: &AtomicBool,
) -> Result<Option<Committed>, LoadError> {
    let started = Instant::now();
    // How long batching held the batch's first (oldest) record (latency, at debug).
    let waited_ms = batch.items.first().map_or(0, |i| {
        started.into_std().duration_since(i.fetched).as_millis() as u64
    });
    let on_retry = || {
        if !retrying.swap(true, Ordering::Relaxed) {
            shared.retry_started.notify_one();
        }
    };
    if !apply(&shared.writer, &mut batch, &shared.shutdown, on_retry).await? {
        return Ok(None);
    }
    // Stored in Kafka before the offsets past them are committed.
    metrics().load.dead_letters.inc_by(batch.dead.len() as u64);
    shared.dead.send(std::mem::take(&mut batch.dead)).await?;
    for (conflict, topics) in std::mem::take(&mut batch.held) {
        tracing::error!(error = %conflict, topics = ?topics, "table held");
        let assigned = shared.consumer.assignment().map_err(LoadError::Consumer)?;
        let paused: Vec<Partition> = assigned
            .elements()
            .iter()
            .filter(|e| topics.contains(e.topic()))
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        shared
            .consumer
            .pause(&offset_list(paused.iter().map(|p| (p, &0))))
            .map_err(LoadError::Consumer)?;
        let mut held = shared.held();
        held.extend(topics);
        metrics()
            .load
            .tables_held
            .set(i64::try_from(held.len()).unwrap_or(i64::MAX));
    }
    tracing::debug!(
        records = batch.records,
        waited_ms,
        apply_ms = started.elapsed().as_millis() as u64,
        "batch applied"
    );
    if !batch.next_offsets.is_empty() {
        // A refused commit (the partition was taken away meanwhile) only means the next owner
        // applies these records again, which external versions make harmless.
        if let Err(e) = shared
            .consumer
            .commit(&offset_list(&batch.next_offsets), CommitMode::Async)
        {
            tracing::warn!(error = %e, "committing offsets failed; their records will be applied again");
        }
    }
    Ok(Some(batch.next_offsets.into_iter().collect()))
}

/// The index server's vector type, asked until it answers; `None` if `shutdown` came first.
pub(super) async fn server_vector_mapping(
    writer: &IndexWriter,
    shutdown: &CancellationToken,
) -> Result<Option<VectorMapping>, LoadError> {
    let mut backoff = Backoff::default();
    loop {
        match writer.vector_mapping().await {
            Ok(v) => return Ok(Some(v)),
            Err(Attempt::Permanent(e)) => return Err(e),
            Err(Attempt::Transient(reason)) => {
                let next = "index server unavailable; asking again";
                if !backoff.wait_out(reason, next, shutdown).await {
                    return Ok(None);
                }
            }
        }
    }
}

/// Writes a batch until every item settled or was refused for good (those become dead
/// letters). Returns false if `shutdown` interrupted retries.
async fn apply(
    writer: &IndexWriter,
    batch: &mut Batch,
    shutdown: &CancellationToken,
    on_retry: impl Fn(),
) -> Result<bool, LoadError> {
    let mut backoff = Backoff::default();
    let stages = &metrics().stages;
    let sent = std::time::Instant::now();
    for item in &batch.items {
        let waited = sent.duration_since(item.fetched);
        stages.fetched_to_sent.observe(waited.as_secs_f64());
    }
    loop {
        match try_apply(writer, batch).await {
            Ok(refused) => {
                // Per record, like the other stages; retries count in.
                let took = sent.elapsed().as_secs_f64();
                for _ in &batch.items {
                    stages.sent_to_acked.observe(took);
                }
                count_applied(batch, &refused);
                for (i, reason) in refused {
                    batch.dead.push(DeadLetter {
                        origin: batch.items[i].origin.clone(),
                        class: ErrorClass::Rejected,
                        reason,
                    });
                }
                return Ok(true);
            }
            Err(Attempt::Permanent(e @ LoadError::MappingConflict { .. })) => batch.hold(e),
            Err(Attempt::Permanent(e)) => return Err(e),
            Err(Attempt::Transient(reason)) => {
                on_retry();
                let m = metrics();
                m.load.retries.inc();
                let next = "index server unavailable; retrying the batch";
                if !backoff.wait_out(reason, next, shutdown).await {
                    return Ok(false);
                }
            }
        }
    }
}

/// Applies a batch: its documents in one bulk request, then its truncate. Returns the
/// actions the index refused for good, by position.
async fn try_apply(
    writer: &IndexWriter,
    batch: &Batch,
) -> Result<Vec<(usize, String)>, Attempt<LoadError>> {
    for (index, targets) in &batch.mappings {
        for target in targets {
            writer.ensure_mapping(index, target).await?;
        }
    }
    let mut refused = Vec::new();
    if !batch.body.is_empty() {
        refused = write_documents(writer, &batch.body).await?;
    }
    if let Some(t) = &batch.truncate {
        writer.delete_older(&t.index, t.version).await?;
    }
    Ok(refused)
}

/// Writes `body` in one bulk request; the refused actions are returned by position.
async fn write_documents(
    writer: &IndexWriter,
    body: &bulk::Body,
) -> Result<Vec<(usize, String)>, Attempt<LoadError>> {
    let started = std::time::Instant::now();
    let response = writer.bulk(body.bytes()).await;
    let load = &metrics().load;
    load.bulk_requests.inc();
    load.bulk_duration.observe(started.elapsed().as_secs_f64());
    let response = response?;
    let outcomes =
        bulk::outcomes(&response).map_err(|m| Attempt::Permanent(LoadError::Elasticsearch(m)))?;
    if outcomes.len() != body.len() {
        return Err(Attempt::Permanent(LoadError::Elasticsearch(format!(
            "bulk response has {} items for {} actions",
            outcomes.len(),
            body.len()
        ))));
    }
    let (mut retry, mut refused) = (None, Vec::new());
    for (i, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Outcome::Settled => {}
            // Resending the whole batch is harmless: settled items come back as 409.
            Outcome::Retry(reason) => retry = Some(reason),
            Outcome::Rejected(reason) => refused.push((i, reason)),
        }
    }
    match retry {
        Some(reason) => Err(Attempt::Transient(reason)),
        None => Ok(refused),
    }
}

/// Counts what an applied batch did, by op, and each document's commit-to-indexed latency;
/// `refused` actions (dead letters) did nothing.
fn count_applied(batch: &Batch, refused: &[(usize, String)]) {
    let load = &metrics().load;
    let now = time::now_ms();
    let (mut indexed, mut deleted) = (0, 0);
    let mut refused = refused.iter().map(|(i, _)| *i).peekable();
    let mut latency: Option<(&TableId, prometheus::Histogram)> = None;
    for (i, item) in batch.items.iter().enumerate() {
        if refused.next_if_eq(&i).is_some() {
            continue;
        }
        if item.delete {
            deleted += 1;
        } else {
            indexed += 1;
        }
        let (Some(read_ms), table) = (item.read_ms, &item.route.table) else {
            continue;
        };
        let seconds = (now - read_ms).max(0) as f64 / 1000.0;
        match &latency {
            Some((t, h)) if *t == table => h.observe(seconds),
            _ => {
                let h = load
                    .commit_to_indexed
                    .with_label_values(&[&table.to_string()]);
                h.observe(seconds);
                latency = Some((table, h));
            }
        }
    }
    load.documents.with_label_values(&["index"]).inc_by(indexed);
    load.documents
        .with_label_values(&["delete"])
        .inc_by(deleted);
    if batch.truncate.is_some() {
        load.documents.with_label_values(&["truncate"]).inc();
    }
}
