//! Points a restart can resume from, and how far snapshots got.

use serde::{Deserialize, Serialize};

use super::{Position, TableId, Value};

/// How far a table's snapshot got: what a restart continues from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotProgress {
    /// The binlog position the snapshot began at, where streaming starts once it is done.
    pub position: Position,
    /// Key of the last row copied, in key order; empty before the first chunk.
    pub last_key: Vec<Value>,
    /// Rows copied so far.
    pub rows: u64,
    /// Chunks copied so far.
    pub chunks: u64,
}

/// How far an incremental snapshot (a re-snapshot while streaming, in watermarked windows)
/// got: what a restart continues from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowProgress {
    /// The request's id: the signal row's, or `added-<db.table>` for a table added to the
    /// config.
    pub id: String,
    /// Only rows matching this SQL condition are copied.
    pub filter: Option<String>,
    /// Key of the last row selected, in key order; empty before the first window.
    pub last_key: Vec<Value>,
    /// Rows selected so far (some were dropped because the binlog changed them meanwhile).
    pub rows: u64,
    /// Windows closed so far.
    pub windows: u64,
}

/// A point that is safe to resume from, once Kafka acknowledged everything before it.
#[derive(Clone, Debug, PartialEq)]
pub enum Checkpoint {
    /// Streaming reached a transaction commit; resume after it.
    Stream(Position),
    /// A snapshot of `tables` consistent with `position` is complete. Streaming starts at
    /// `position` unless a stored position already exists.
    Snapshot {
        /// Tables copied by the snapshot.
        tables: Vec<TableId>,
        /// The binlog position streaming starts at for these tables.
        position: Position,
    },
    /// A chunk of a table's snapshot is published: a restart continues after it.
    Chunk {
        /// The table.
        table: TableId,
        /// Where its snapshot stands.
        progress: SnapshotProgress,
    },
    /// An incremental snapshot was requested, or one of its windows is published.
    Window {
        /// The table.
        table: TableId,
        /// Where its incremental snapshot stands.
        progress: WindowProgress,
    },
    /// An incremental snapshot is complete: the table counts as snapshotted.
    WindowsDone {
        /// The table.
        table: TableId,
        /// The request's id.
        id: String,
        /// The binlog position of its last window.
        position: Position,
    },
}
