//! Incremental snapshots while streaming: Netflix DBLog's watermark method.
//!
//! A [`Worker`] copies a table in windows, on its own connection: it writes a low watermark
//! to the signal table, selects the next chunk by key, and writes a high watermark. The
//! stream, which never pauses, meets both watermarks in the binlog ([`Windows`]): between
//! them it notes every key of the table that a change touched, and at the high watermark it
//! emits the chunk's other rows (`op = r`) with the high watermark's version. A key changed
//! inside the window is left to the binlog, whose change is newer than the select or already
//! in it; every other row is as it was at the high watermark, so its version orders it
//! correctly against every change before and after.
//!
//! Requests: an `execute-snapshot` row in the signal table (what `sluice snapshot` writes,
//! or any SQL client; Debezium's format), and tables added to the config of a setup that has
//! already streamed.

mod signal;
#[cfg(test)]
mod tests;
mod windows;
mod worker;

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::model::{Row, TableId, TableSchema, WindowProgress};

pub use signal::{
    Condition, EXECUTE, ExecuteSnapshot, request, setup, setup_statements, signal_schema,
};
pub use windows::{Windows, added_table_request};
pub use worker::{Worker, WorkerConfig};

/// From the worker to the stream.
#[derive(Debug)]
pub(super) enum ToStream {
    /// A window is about to open: its watermarks carry `window`.
    Announce { window: String, table: TableId },
    /// The chunk selected inside `window`.
    Chunk { window: String, chunk: Chunk },
}

/// A window's selected rows.
#[derive(Debug)]
pub(super) struct Chunk {
    schema: Arc<TableSchema>,
    /// `None` if the table's definition changed during the select (the worker selects it
    /// again in a new window).
    rows: Option<Vec<Row>>,
    /// The progress once these rows are published.
    progress: WindowProgress,
    /// Whether this is the table's last window.
    last: bool,
}

/// From the stream to the worker.
#[derive(Debug)]
pub(super) enum ToWorker {
    /// Copy this table.
    Copy(TableId, WindowProgress),
    /// The stream passed `window`'s high watermark and emitted its rows.
    Closed(String),
}

/// Connects a [`Windows`] (stream side) and a [`Worker`] (database side).
pub fn pair(
    signal: Arc<TableSchema>,
    captured: HashSet<TableId>,
    worker: WorkerConfig,
    queued: Vec<(TableId, WindowProgress)>,
) -> (Windows, Worker) {
    let (to_stream, from_worker) = mpsc::unbounded_channel();
    let (to_worker, from_stream) = mpsc::unbounded_channel();
    let active = queued
        .iter()
        .map(|(t, p)| (t.clone(), (p.id.clone(), p.filter.clone())))
        .collect();
    let windows = Windows::new(signal.clone(), captured, active, to_worker, from_worker);
    let worker = Worker::new(
        worker,
        signal.id.clone(),
        queued.into(),
        to_stream,
        from_stream,
    );
    (windows, worker)
}
