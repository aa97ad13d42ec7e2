//! The queue between source and publisher, bounded in batches and in bytes: batches of
//! narrow rows are few bytes and many of them keep the publisher busy, but a batch can hold
//! a single row of a megabyte, and a queue counted in batches alone would then hold tens of
//! megabytes.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::change::SourceEvent;

/// A queue of at most `batches` events holding at most `bytes` of row changes (a batch larger
/// than that waits until the queue is empty).
pub fn handoff(batches: usize, bytes: u32) -> (EventSender, EventReceiver) {
    let (tx, rx) = mpsc::channel(batches);
    let budget = Arc::new(Semaphore::new(bytes as usize));
    (EventSender { tx, budget, bytes }, EventReceiver { rx })
}

/// The source's end of the queue.
pub struct EventSender {
    tx: mpsc::Sender<(SourceEvent, OwnedSemaphorePermit)>,
    budget: Arc<Semaphore>,
    bytes: u32,
}

/// The publisher went away: nothing more can be sent.
#[derive(Debug)]
pub struct Closed;

impl EventSender {
    /// Queues `event`, whose changes hold `bytes` ([`Change::bytes`](super::Change::bytes)
    /// summed; 0 for a checkpoint), waiting while the queue is full in batches or in bytes.
    pub async fn send(&self, event: SourceEvent, bytes: usize) -> Result<(), Closed> {
        let size = u32::try_from(bytes).unwrap_or(u32::MAX).min(self.bytes);
        let permit = self.budget.clone().acquire_many_owned(size).await;
        let held = permit.map_err(|_| Closed)?;
        self.tx.send((event, held)).await.map_err(|_| Closed)
    }
}

/// The publisher's end of the queue.
pub struct EventReceiver {
    rx: mpsc::Receiver<(SourceEvent, OwnedSemaphorePermit)>,
}

impl EventReceiver {
    /// The next event; its bytes leave the queue's count as it is taken. None once the
    /// source is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<SourceEvent> {
        self.rx.recv().await.map(|(event, _held)| event)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::{
        Change, Column, ColumnType, Op, SourceInfo, TableId, TableSchema, Value, Version,
    };

    fn batch(text_bytes: usize) -> (SourceEvent, usize) {
        let table = Arc::new(TableSchema {
            id: TableId::new("db", "t"),
            columns: vec![Column::new("body", ColumnType::Text, false)],
            key: vec![0],
        });
        let change = Change {
            table,
            op: Op::Read,
            before: None,
            after: Some(vec![Value::String("x".repeat(text_bytes).into())]),
            version: Version::at(1, 4),
            source: SourceInfo::snapshot_read("binlog.000001", 4, 1, 0),
        };
        let bytes = change.bytes();
        let changes = vec![change];
        (
            SourceEvent::Changes {
                changes,
                read: None,
            },
            bytes,
        )
    }

    async fn send(tx: &EventSender, text_bytes: usize) -> Result<(), Closed> {
        let (event, bytes) = batch(text_bytes);
        tx.send(event, bytes).await
    }

    #[tokio::test]
    async fn a_full_queue_in_bytes_holds_the_sender_until_the_publisher_takes_a_batch() {
        let (tx, mut rx) = handoff(64, 100_000);
        send(&tx, 60_000).await.unwrap();
        // Room in batches, none in bytes.
        let second = tokio::time::timeout(Duration::from_millis(200), send(&tx, 60_000));
        assert!(second.await.is_err(), "sent past the byte bound");
        assert!(rx.recv().await.is_some());
        send(&tx, 60_000).await.unwrap();
        // Larger than the whole bound: waits for an empty queue, then goes.
        let huge = tokio::spawn(async move { send(&tx, 500_000).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!huge.is_finished());
        assert!(rx.recv().await.is_some());
        huge.await.unwrap().unwrap();
        assert!(rx.recv().await.is_some());
    }
}
