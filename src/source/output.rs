//! What the source hands on: the capture's scope, and the emitter that filters each change's
//! columns before the publisher gets it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::SourceError;
use super::filter::ColumnFilter;
use crate::config::TablePattern;
use crate::model::{Change, Checkpoint, EventSender, SourceEvent, TableId, TableSchema};

/// What to capture: table patterns and column filters.
pub struct Capture {
    /// Tables matching any of these...
    pub include: Vec<TablePattern>,
    /// ...and none of these.
    pub exclude: Vec<TablePattern>,
    /// Column rules applied to every change.
    pub columns: ColumnFilter,
    /// Columns that key a table's records instead of its primary key.
    pub keys: HashMap<TableId, Vec<String>>,
}

/// The source's output: filters each change's columns, then hands it to the publisher.
pub struct Emitter {
    tx: EventSender,
    columns: ColumnFilter,
}

impl Emitter {
    /// An emitter filtering by `columns` into `tx`.
    pub fn new(tx: EventSender, columns: ColumnFilter) -> Self {
        Emitter { tx, columns }
    }

    /// Checks that the column rules leave `table` a key (see [`ColumnFilter::check`]).
    pub fn check_columns(&mut self, table: &Arc<TableSchema>) -> Result<(), SourceError> {
        Ok(self.columns.check(table)?)
    }

    /// Sends changes, filtered; `read` is when their binlog event was read (none for
    /// snapshot rows).
    pub async fn changes(
        &mut self,
        changes: Vec<Change>,
        read: Option<Instant>,
    ) -> Result<(), SourceError> {
        let bytes = changes.iter().map(Change::bytes).sum();
        self.counted_changes(changes, read, bytes).await
    }

    /// As [`Emitter::changes`], for changes whose memory (`bytes`, [`Change::bytes`] summed)
    /// the caller already counted; filtering only makes it less.
    pub async fn counted_changes(
        &mut self,
        mut changes: Vec<Change>,
        read: Option<Instant>,
        bytes: usize,
    ) -> Result<(), SourceError> {
        self.columns.apply(&mut changes)?;
        self.send(SourceEvent::Changes { changes, read }, bytes)
            .await
    }

    /// Sends a checkpoint.
    pub async fn checkpoint(&self, checkpoint: Checkpoint) -> Result<(), SourceError> {
        self.send(SourceEvent::Checkpoint(checkpoint), 0).await
    }

    async fn send(&self, event: SourceEvent, bytes: usize) -> Result<(), SourceError> {
        self.tx
            .send(event, bytes)
            .await
            .map_err(|_| SourceError::Downstream)
    }
}
