//! Turns Kafka acknowledgements into stored checkpoints: a checkpoint is saved only after
//! every record queued before it was acknowledged (design.md, invariant 1).

use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::DeliveryFuture;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::PublishError;
use crate::model::Checkpoint;
use crate::state::State;

/// How often gathered checkpoints are written; each write is an fsync.
const SAVE_EVERY: Duration = Duration::from_millis(100);

/// What the publisher queues, in production order.
pub enum Pending {
    /// A produced record; resolves when the broker acknowledged it.
    Delivery {
        /// Topic, for error messages.
        topic: Arc<str>,
        /// librdkafka's delivery report.
        delivery: DeliveryFuture,
    },
    /// Safe to store once everything before it is acknowledged.
    Checkpoint(Checkpoint),
}

/// Awaits deliveries in order and stores checkpoints, until the queue closes. Checkpoints
/// are gathered for up to [`SAVE_EVERY`] and stored in one write (one fsync): a later
/// stream position supersedes an earlier one, a table's later chunk its earlier chunk; a
/// finished snapshot is stored at once.
pub async fn run(mut rx: mpsc::Receiver<Pending>, state: &State) -> Result<(), PublishError> {
    let mut unsaved: Vec<Checkpoint> = Vec::new();
    let mut last_save = Instant::now();
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
        match next {
            None => {
                save(state, &mut unsaved, &mut last_save).await?;
                return Ok(());
            }
            Some(Pending::Delivery { topic, delivery }) => match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((error, _))) => {
                    let topic = topic.to_string();
                    return Err(PublishError::Delivery { topic, error });
                }
                Err(_) => return Err(PublishError::ProducerGone),
            },
            Some(Pending::Checkpoint(cp @ Checkpoint::Snapshot { .. })) => {
                unsaved.push(cp);
                save(state, &mut unsaved, &mut last_save).await?;
                tracing::info!("snapshot stored: every row acknowledged, streaming takes over");
            }
            Some(Pending::Checkpoint(cp)) => {
                unsaved.retain(|old| !superseded(old, &cp));
                unsaved.push(cp);
                if last_save.elapsed() >= SAVE_EVERY {
                    save(state, &mut unsaved, &mut last_save).await?;
                }
            }
        }
    }
}

/// Whether storing `new` makes storing `old` pointless.
fn superseded(old: &Checkpoint, new: &Checkpoint) -> bool {
    match (old, new) {
        (Checkpoint::Stream(_), Checkpoint::Stream(_)) => true,
        (Checkpoint::Chunk { table: a, .. }, Checkpoint::Chunk { table: b, .. }) => a == b,
        _ => false,
    }
}

async fn save(
    state: &State,
    unsaved: &mut Vec<Checkpoint>,
    last_save: &mut Instant,
) -> Result<(), PublishError> {
    if !unsaved.is_empty() {
        state.save(unsaved).await?;
        for cp in unsaved.drain(..) {
            match cp {
                Checkpoint::Chunk { table, progress } => {
                    tracing::info!(%table, rows = progress.rows, "snapshot progress stored");
                }
                cp => tracing::debug!(?cp, "checkpoint stored"),
            }
        }
    }
    *last_save = Instant::now();
    Ok(())
}
