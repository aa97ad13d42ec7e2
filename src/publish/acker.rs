//! Turns Kafka acknowledgements into stored checkpoints: a checkpoint is saved only after
//! every record produced before it was acknowledged (docs/design.md, invariant 1).
//!
//! Records are numbered in production order; librdkafka reports each delivery to
//! [`DeliveryContext`], which keeps the lowest number not yet acknowledged. A checkpoint
//! carries the number of records produced before it, and is stored once all of them are in.
//! One counter instead of a future per record: the per-record cost is a short lock.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::ProducerContext;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::error::PublishError;
use crate::metrics::metrics;
use crate::model::{Checkpoint, Position, time};
use crate::positions::PositionStore;

/// How often gathered checkpoints are written; each write is an fsync.
const SAVE_EVERY: Duration = Duration::from_millis(100);

/// A checkpoint, safe to store once every record numbered below `after` is acknowledged.
pub struct Pending {
    /// The checkpoint.
    pub checkpoint: Checkpoint,
    /// How many records were produced before it.
    pub after: u64,
    /// When it was queued, its records handed to the producer (for the latency stages).
    pub queued: std::time::Instant,
}

/// Delivery reports of the records produced so far.
#[derive(Default)]
pub struct Deliveries {
    window: Mutex<Window>,
    changed: Notify,
}

#[derive(Default)]
struct Window {
    /// Every record numbered below is acknowledged.
    base: u64,
    /// Acknowledged or not, for the records from `base` on that were reported out of order.
    acked: VecDeque<bool>,
    /// The first failed delivery.
    failed: Option<(String, KafkaError)>,
}

impl Deliveries {
    fn delivered(&self, seq: u64) {
        let mut w = self.window.lock().expect("no panics while locked");
        let Some(i) = seq.checked_sub(w.base).map(|i| i as usize) else {
            return;
        };
        if w.acked.len() <= i {
            w.acked.resize(i + 1, false);
        }
        w.acked[i] = true;
        let before = w.base;
        while w.acked.front() == Some(&true) {
            w.acked.pop_front();
            w.base += 1;
        }
        if w.base != before {
            drop(w);
            self.changed.notify_waiters();
        }
    }

    fn failed(&self, topic: &str, error: KafkaError) {
        let mut w = self.window.lock().expect("no panics while locked");
        w.failed.get_or_insert((topic.to_string(), error));
        drop(w);
        self.changed.notify_waiters();
    }

    /// Waits until every record numbered below `seq` is acknowledged.
    async fn all_before(&self, seq: u64) -> Result<(), PublishError> {
        loop {
            // Registered before the check, so a report in between still wakes it.
            let notified = self.changed.notified();
            {
                let w = self.window.lock().expect("no panics while locked");
                if let Some((topic, error)) = &w.failed {
                    return Err(PublishError::Delivery {
                        topic: topic.clone(),
                        error: error.clone(),
                    });
                }
                if w.base >= seq {
                    return Ok(());
                }
            }
            notified.await;
        }
    }
}

/// The producer's context: every delivery report goes to [`Deliveries`]; a record's opaque
/// value is its number. It also notices the brokers going away and coming back.
pub struct DeliveryContext {
    deliveries: Arc<Deliveries>,
    /// Whether librdkafka reported every broker down since the last delivery.
    brokers_down: AtomicBool,
}

impl DeliveryContext {
    /// A context reporting to `deliveries`.
    pub fn new(deliveries: Arc<Deliveries>) -> Self {
        DeliveryContext {
            deliveries,
            brokers_down: AtomicBool::new(false),
        }
    }
}

impl ClientContext for DeliveryContext {
    /// A broker outage is waited out (records stay queued, nothing is checkpointed), logged
    /// once and shown by `/ready` while it lasts.
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            if !self.brokers_down.swap(true, Ordering::Relaxed) {
                tracing::warn!(%reason, "Kafka is not reachable; waiting for it (changes stay queued, no position is stored meanwhile)");
                metrics().readiness.wait_begins(time::now_ms());
            }
        } else {
            tracing::warn!(%error, %reason, "Kafka client error");
        }
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        let publish = &metrics().publish;
        match result {
            Ok(_) => {
                publish.acknowledged.inc();
                if self.brokers_down.load(Ordering::Relaxed)
                    && self.brokers_down.swap(false, Ordering::Relaxed)
                {
                    tracing::info!("Kafka is reachable again");
                    metrics().readiness.wait_ends();
                }
                self.deliveries.delivered(seq as u64)
            }
            Err((error, message)) => {
                publish.failed.inc();
                self.deliveries.failed(message.topic(), error.clone())
            }
        }
    }
}

/// Stores checkpoints as the records before them are acknowledged, until the queue closes.
/// Checkpoints are gathered for up to [`SAVE_EVERY`] and stored in one write (one fsync): a
/// later stream position supersedes an earlier one, a table's later chunk or window its
/// earlier one; a finished snapshot is stored at once.
pub async fn run(
    mut rx: mpsc::Receiver<Pending>,
    deliveries: &Deliveries,
    state: &PositionStore,
) -> Result<(), PublishError> {
    let mut unsaved: Vec<Checkpoint> = Vec::new();
    let mut last_save = Instant::now();
    // Records produced before the last timed checkpoint: a transaction that produced nothing
    // (no captured table) is not timed.
    let mut timed = 0;
    loop {
        let next = if unsaved.is_empty() {
            rx.recv().await
        } else {
            tokio::select! {
                next = rx.recv() => next,
                () = tokio::time::sleep_until(last_save + SAVE_EVERY) => {
                    save(state, &mut unsaved, &mut last_save).await?;
                    continue;
                }
            }
        };
        let Some(Pending {
            checkpoint,
            after,
            queued,
        }) = next
        else {
            save(state, &mut unsaved, &mut last_save).await?;
            return Ok(());
        };
        deliveries.all_before(after).await?;
        if let Checkpoint::Stream(_) = checkpoint
            && after > timed
        {
            timed = after;
            let stage = &metrics().stages.produced_to_acked;
            stage.observe(queued.elapsed().as_secs_f64());
        }
        if let cp @ Checkpoint::Snapshot { .. } = checkpoint {
            unsaved.push(cp);
            save(state, &mut unsaved, &mut last_save).await?;
            tracing::info!("snapshot stored: every row acknowledged, streaming takes over");
            continue;
        }
        unsaved.retain(|old| !superseded(old, &checkpoint));
        unsaved.push(checkpoint);
        if last_save.elapsed() >= SAVE_EVERY {
            save(state, &mut unsaved, &mut last_save).await?;
        }
    }
}

/// Whether storing `new` makes storing `old` pointless.
fn superseded(old: &Checkpoint, new: &Checkpoint) -> bool {
    match (old, new) {
        (Checkpoint::Stream(_), Checkpoint::Stream(_)) => true,
        (Checkpoint::Chunk { table: a, .. }, Checkpoint::Chunk { table: b, .. })
        | (Checkpoint::Window { table: a, .. }, Checkpoint::Window { table: b, .. })
        | (Checkpoint::Window { table: a, .. }, Checkpoint::WindowsDone { table: b, .. }) => a == b,
        _ => false,
    }
}

async fn save(
    state: &PositionStore,
    unsaved: &mut Vec<Checkpoint>,
    last_save: &mut Instant,
) -> Result<(), PublishError> {
    if !unsaved.is_empty() {
        state.save(unsaved).await?;
        let m = metrics();
        for cp in unsaved.drain(..) {
            m.publish.checkpoints.inc();
            match cp {
                Checkpoint::Stream(position) => {
                    show_position(&position);
                    tracing::debug!(%position, "checkpoint stored");
                }
                Checkpoint::Snapshot { .. } => {
                    // The snapshot's point is the resume position until streaming stores one.
                    if let Ok(Some(position)) = state.position() {
                        show_position(&position);
                    }
                }
                Checkpoint::Chunk { table, progress } => {
                    tracing::info!(%table, rows = progress.rows, "snapshot progress stored");
                }
                Checkpoint::Window { table, progress } => {
                    tracing::info!(%table, rows = progress.rows, "incremental snapshot progress stored");
                }
                Checkpoint::WindowsDone { table, id, .. } => {
                    tracing::info!(%table, %id, "incremental snapshot stored as done");
                }
            }
        }
    }
    *last_save = Instant::now();
    Ok(())
}

/// Exposes the stored resume position in the metrics.
fn show_position(position: &Position) {
    let m = &metrics().source;
    m.checkpoint_position
        .set(i64::try_from(position.pos).unwrap_or(i64::MAX));
    m.checkpoint_info.reset();
    m.checkpoint_info
        .with_label_values(&[&position.file, position.gtid.as_deref().unwrap_or("")])
        .set(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn checkpoints_wait_for_every_earlier_record_whatever_the_report_order() {
        let d = Arc::new(Deliveries::default());
        d.all_before(0).await.unwrap();
        // Partitions report out of order: 2 and 1 before 0.
        d.delivered(2);
        d.delivered(1);
        let waiting = tokio::spawn({
            let d = d.clone();
            async move { d.all_before(2).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !waiting.is_finished(),
            "stored before record 0 was acknowledged"
        );
        d.delivered(0);
        waiting.await.unwrap().unwrap();
        d.all_before(3).await.unwrap();
        let failing = tokio::spawn({
            let d = d.clone();
            async move { d.all_before(5).await }
        });
        d.delivered(4);
        d.failed("t", KafkaError::Canceled);
        let e = failing.await.unwrap().unwrap_err();
        assert!(e.to_string().contains("topic t"), "{e}");
    }
}
