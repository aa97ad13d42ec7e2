//! Row changes, where they came from, and what the source hands on.

use std::sync::Arc;
use std::time::Instant;

use super::{Checkpoint, Row, TableSchema, Version, row_bytes};

/// What happened to a row, with Debezium's one-letter codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Inserted (`c`).
    Create,
    /// Updated in place (`u`).
    Update,
    /// Deleted (`d`).
    Delete,
    /// Read by a snapshot (`r`).
    Read,
    /// Every row removed by TRUNCATE TABLE (`t`): a change without row images or key.
    Truncate,
}

impl Op {
    /// Debezium's code for the operation.
    pub fn code(self) -> &'static str {
        match self {
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Read => "r",
            Op::Truncate => "t",
        }
    }
}

/// Where a change came from: Debezium's `source` block.
///
/// What every change of one transaction (or one snapshot) has in common sits behind one
/// reference count in [`Origin`]: a change then costs one reference count, not one per name.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceInfo {
    /// What the change shares with the rest of its transaction or snapshot.
    pub origin: Arc<Origin>,
    /// Offset of the event (or of the snapshot point) in the origin's file.
    pub pos: u64,
    /// Index of the row inside its rows event (0 for snapshot rows).
    pub row: u32,
    /// Server id that wrote the event.
    pub server_id: u32,
    /// Event time, milliseconds since the epoch: the commit time where the binlog has it
    /// (MySQL 8's `immediate_commit_timestamp`), else the event's start in whole seconds (the
    /// snapshot's start for snapshot reads).
    pub ts_ms: i64,
    /// Whether the row was read by a snapshot.
    pub snapshot: bool,
    /// The SQL statement behind the row, with `source.include_query` on and the server
    /// logging statements (MariaDB `binlog_annotate_row_events`, MySQL
    /// `binlog_rows_query_log_events`).
    pub query: Option<Arc<str>>,
    /// The change's place in its transaction; `None` for snapshot reads, and whenever the
    /// origin names no transaction.
    pub transaction: Option<TxPosition>,
}

/// What the changes of one transaction, or of one snapshot, share in their `source` block.
#[derive(Clone, Debug, PartialEq)]
pub struct Origin {
    /// Binlog file of the events, or of the snapshot's consistent point.
    pub file: Arc<str>,
    /// GTID of the transaction, `domain-server-sequence`, when the server sends GTIDs.
    pub gtid: Option<Arc<str>>,
    /// Connection id of the session that made the changes, when the binlog names it (MySQL's
    /// BEGIN carries it; MariaDB's GTID-framed transactions do not).
    pub thread: Option<u32>,
    /// When the server committed the transaction, in microseconds since the epoch, where the
    /// binlog says (MySQL's `immediate_commit_timestamp`; MariaDB writes whole seconds only).
    pub commit_us: Option<i64>,
    /// Debezium's transaction id: the GTID, or `file:pos` of the transaction's first change
    /// without GTIDs; `None` for snapshot reads.
    pub transaction: Option<Arc<str>>,
}

impl Origin {
    /// The origin of rows read by a snapshot whose consistent point is in `file`.
    pub fn snapshot(file: &str) -> Self {
        Origin {
            file: Arc::from(file),
            gtid: None,
            thread: None,
            commit_us: None,
            transaction: None,
        }
    }
}

impl SourceInfo {
    /// The origin of rows a snapshot reads at `file:pos` (its consistent point).
    pub fn snapshot_read(file: &str, pos: u64, server_id: u32, ts_ms: i64) -> Self {
        SourceInfo {
            origin: Arc::new(Origin::snapshot(file)),
            pos,
            row: 0,
            server_id,
            ts_ms,
            snapshot: true,
            query: None,
            transaction: None,
        }
    }

    /// The transaction's id and the change's place in it, when it has both.
    pub fn transaction(&self) -> Option<(&str, &TxPosition)> {
        Some((
            self.origin.transaction.as_deref()?,
            self.transaction.as_ref()?,
        ))
    }
}

#[cfg(test)]
impl SourceInfo {
    /// A streamed change's origin at `file:pos`, the other fields empty (tests).
    pub(crate) fn at(file: &str, pos: u64) -> Self {
        SourceInfo {
            snapshot: false,
            server_id: 1,
            ..SourceInfo::snapshot_read(file, pos, 1, 0)
        }
    }
}

/// Debezium's transaction block without the id (the [`Origin`] holds it): the change's place
/// in its transaction.
#[derive(Clone, Debug, PartialEq)]
pub struct TxPosition {
    /// 1-based index of the change among all of the transaction's changes.
    pub total_order: u64,
    /// 1-based index of the change among the transaction's changes of the same table.
    pub collection_order: u64,
}

/// One row change, the unit that travels through the pipeline.
#[derive(Clone, Debug)]
pub struct Change {
    /// Schema of the table at the change's position.
    pub table: Arc<TableSchema>,
    /// What happened.
    pub op: Op,
    /// Row image before the change (update, delete).
    pub before: Option<Row>,
    /// Row image after the change (create, update, read).
    pub after: Option<Row>,
    /// Binlog order of the change.
    pub version: Version,
    /// Origin of the change.
    pub source: SourceInfo,
}

impl Change {
    /// The memory the change takes with its row images: what bounds in bytes count.
    pub fn bytes(&self) -> usize {
        let image = |row: &Option<Row>| row.as_deref().map_or(0, row_bytes);
        size_of::<Change>() + image(&self.before) + image(&self.after)
    }
}

/// What the source hands to the publisher.
#[derive(Debug)]
pub enum SourceEvent {
    /// Row changes, in binlog order.
    Changes {
        /// The changes.
        changes: Vec<Change>,
        /// When their binlog event was read; none for snapshot rows (for the latency stages).
        read: Option<Instant>,
    },
    /// Everything sent before this is a complete prefix of the binlog up to the checkpoint.
    Checkpoint(Checkpoint),
}
