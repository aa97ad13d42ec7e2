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

/// How often a streaming checkpoint is written; each write is an fsync.
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

/// Awaits deliveries in order and stores checkpoints, until the queue closes.
pub async fn run(mut rx: mpsc::Receiver<Pending>, state: &State) -> Result<(), PublishError> {
    let mut unsaved: Option<Checkpoint> = None;
    let mut last_save = Instant::now();
    loop {
        let next = match &unsaved {
            Some(_) => tokio::select! {
                next = rx.recv() => next,
                () = tokio::time::sleep_until(last_save + SAVE_EVERY) => {
                    save(state, &mut unsaved, &mut last_save).await?;
                    continue;
                }
            },
            None => rx.recv().await,
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
            Some(Pending::Checkpoint(
                cp @ (Checkpoint::Snapshot { .. } | Checkpoint::Chunk { .. }),
            )) => {
                // Not superseded by later checkpoints (a chunk of one table by one of
                // another), and at most one per chunk of rows: store at once.
                save(state, &mut unsaved, &mut last_save).await?;
                let chunk = match &cp {
                    Checkpoint::Chunk { table, progress } => Some((table.clone(), progress.rows)),
                    _ => None,
                };
                unsaved = Some(cp);
                save(state, &mut unsaved, &mut last_save).await?;
                if let Some((table, rows)) = chunk {
                    tracing::info!(%table, rows, "snapshot progress stored");
                }
            }
            Some(Pending::Checkpoint(cp)) => {
                unsaved = Some(cp);
                if last_save.elapsed() >= SAVE_EVERY {
                    save(state, &mut unsaved, &mut last_save).await?;
                }
            }
        }
    }
}

async fn save(
    state: &State,
    unsaved: &mut Option<Checkpoint>,
    last_save: &mut Instant,
) -> Result<(), PublishError> {
    if let Some(cp) = unsaved.take() {
        state.save(&cp).await?;
        tracing::debug!(?cp, "checkpoint stored");
    }
    *last_save = Instant::now();
    Ok(())
}
