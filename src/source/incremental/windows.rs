//! The stream's half of an incremental snapshot: the open window's bookkeeping (keys the
//! binlog changed between the watermarks) and the chunk's release at the high watermark.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::signal::{ExecuteSnapshot, Signal};
use super::{Chunk, ToStream, ToWorker};
use crate::metrics::metrics;
use crate::model::{
    Change, Checkpoint, Op, Origin, Position, SourceEvent, SourceInfo, TableId, TableSchema, Value,
    WindowProgress,
};
use crate::positions::PositionStore;
use crate::source::SourceError;

/// A window as the stream sees it.
struct Window {
    id: String,
    table: TableId,
    /// The low watermark was read: changes of `table` are noted from here on.
    opened: bool,
    /// Keys (canonical text) the binlog changed inside the window.
    changed: HashSet<String>,
    /// The table was truncated inside the window: none of the chunk is current.
    truncated: bool,
    /// The rows, once the worker selected them.
    chunk: Option<Chunk>,
}

/// The stream's half: reads signal rows, notes the keys changed inside the open window and
/// emits each chunk at its high watermark.
pub struct Windows {
    signal: Arc<TableSchema>,
    captured: HashSet<TableId>,
    /// Tables with an incremental snapshot queued or running, with the request's id and
    /// row filter.
    pub(super) active: HashMap<TableId, (String, Option<String>)>,
    to_worker: mpsc::UnboundedSender<ToWorker>,
    from_worker: mpsc::UnboundedReceiver<ToStream>,
    window: Option<Window>,
    /// Per table, rows selected but left to the binlog because it changed them in a window.
    left_to_binlog: HashMap<TableId, u64>,
}

impl Windows {
    pub(super) fn new(
        signal: Arc<TableSchema>,
        captured: HashSet<TableId>,
        active: HashMap<TableId, (String, Option<String>)>,
        to_worker: mpsc::UnboundedSender<ToWorker>,
        from_worker: mpsc::UnboundedReceiver<ToStream>,
    ) -> Self {
        // Copies resumed after a restart are remaining as much as new ones.
        let remaining = &metrics().snapshot.tables_remaining;
        remaining
            .with_label_values(&["incremental"])
            .set(i64::try_from(active.len()).unwrap_or(i64::MAX));
        Windows {
            signal,
            captured,
            active,
            to_worker,
            from_worker,
            window: None,
            left_to_binlog: HashMap::new(),
        }
    }

    /// The signal table, which the stream must decode but never publishes.
    pub fn signal_table(&self) -> &Arc<TableSchema> {
        &self.signal
    }

    /// Takes one decoded batch of changes and returns what to send on, in order: the
    /// captured tables' changes, and at a high watermark the window's rows and progress.
    /// `read` is when the batch's binlog event was read.
    pub fn absorb(
        &mut self,
        changes: Vec<Change>,
        read: Instant,
        state: &PositionStore,
    ) -> Result<Vec<SourceEvent>, SourceError> {
        // The common case, on the stream's hot path: no signal and no open window, so the
        // batch passes as it is.
        let watching = self.window.as_ref().is_some_and(|w| w.opened);
        if !watching && changes.iter().all(|c| c.table.id != self.signal.id) {
            return Ok(vec![SourceEvent::Changes {
                changes,
                read: Some(read),
            }]);
        }
        let mut out = Vec::new();
        let mut pending = Vec::with_capacity(changes.len());
        for change in changes {
            if change.table.id != self.signal.id {
                self.note(&change);
                pending.push(change);
                continue;
            }
            let Some(signal) = change
                .after
                .as_ref()
                .and_then(|r| Signal::of(&self.signal, r))
            else {
                continue;
            };
            match signal {
                Signal::Open(window) => self.open(&window),
                Signal::Close(window) => {
                    if !pending.is_empty() {
                        out.push(SourceEvent::Changes {
                            changes: std::mem::take(&mut pending),
                            read: Some(read),
                        });
                    }
                    self.close(&window, &change, &mut out)?;
                }
                Signal::Execute { id, data } => {
                    self.execute(&id, data.as_deref(), state, &mut out)?;
                }
                Signal::Other { id, kind } => tracing::warn!(
                    %id, %kind,
                    "signal of unknown type ignored; Sluice acts on execute-snapshot rows"
                ),
            }
        }
        if !pending.is_empty() {
            out.push(SourceEvent::Changes {
                changes: pending,
                read: Some(read),
            });
        }
        Ok(out)
    }

    /// Notes a change's keys if it falls inside the open window of its table.
    fn note(&mut self, change: &Change) {
        let Some(w) = self
            .window
            .as_mut()
            .filter(|w| w.opened && w.table == change.table.id)
        else {
            return;
        };
        if change.op == Op::Truncate {
            w.truncated = true;
        }
        for row in [&change.before, &change.after].into_iter().flatten() {
            w.changed.insert(key_text(&change.table, row));
        }
    }

    /// Takes the worker's messages: the window to expect, then its rows.
    fn receive(&mut self) {
        while let Ok(msg) = self.from_worker.try_recv() {
            match msg {
                ToStream::Announce { window, table } => {
                    self.window = Some(Window {
                        id: window,
                        table,
                        opened: false,
                        changed: HashSet::new(),
                        truncated: false,
                        chunk: None,
                    });
                }
                ToStream::Chunk { window, chunk } => match self.window.as_mut() {
                    Some(w) if w.id == window => w.chunk = Some(chunk),
                    _ => tracing::debug!(window, "chunk of no current window"),
                },
            }
        }
    }

    fn open(&mut self, window: &str) {
        self.receive();
        match self.window.as_mut() {
            Some(w) if w.id == window => w.opened = true,
            // An earlier run's window, read again after a restart.
            _ => tracing::debug!(window, "low watermark of no current window"),
        }
    }

    fn close(
        &mut self,
        window: &str,
        at: &Change,
        out: &mut Vec<SourceEvent>,
    ) -> Result<(), SourceError> {
        self.receive();
        if self.window.as_ref().is_none_or(|w| w.id != window) {
            tracing::debug!(window, "high watermark of no current window");
            return Ok(());
        }
        let w = self.window.take().expect("checked above");
        // The worker hands the chunk over before it writes the high watermark.
        let Some(Chunk {
            schema,
            rows,
            progress,
            last,
        }) = w.chunk
        else {
            return Err(SourceError::Precondition(format!(
                "internal error: window {window}'s high watermark arrived before its chunk; \
                 this is a bug in Sluice, restart to continue the snapshot"
            )));
        };
        if !w.opened {
            return Err(SourceError::Precondition(format!(
                "window {window}'s high watermark arrived without its low watermark: the \
                 binlog skipped part of the signal table's changes (is it excluded by \
                 binlog_do_db/binlog_ignore_db or replicate filters?)"
            )));
        }
        if let Some(rows) = rows {
            let selected = rows.len();
            // Read rows keep the watermark's place, not its transaction.
            let source = SourceInfo {
                origin: Arc::new(Origin {
                    gtid: at.source.origin.gtid.clone(),
                    ..Origin::snapshot(&at.source.origin.file)
                }),
                snapshot: true,
                query: None,
                transaction: None,
                ..at.source.clone()
            };
            let kept: Vec<Change> = rows
                .into_iter()
                .filter(|row| !w.truncated && !w.changed.contains(&key_text(&schema, row)))
                .map(|row| Change {
                    table: schema.clone(),
                    op: Op::Read,
                    before: None,
                    after: Some(row),
                    version: at.version,
                    source: source.clone(),
                })
                .collect();
            tracing::debug!(table = %w.table, window, selected, emitted = kept.len(), changed_in_window = w.changed.len(), "window closed");
            *self.left_to_binlog.entry(w.table.clone()).or_default() +=
                (selected - kept.len()) as u64;
            if !kept.is_empty() {
                // Window rows were read by a query, not from the binlog: not timed.
                out.push(SourceEvent::Changes {
                    changes: kept,
                    read: None,
                });
            }
            // A window of a copy that a newer request restarted: its rows stand, its
            // progress is not the table's any more.
            let current = self.active.get(&w.table).map(|(id, _)| id);
            if current == Some(&progress.id) {
                let checkpoint = if last {
                    self.active.remove(&w.table);
                    let left = self.left_to_binlog.remove(&w.table).unwrap_or(0);
                    tracing::info!(table = %w.table, id = %progress.id, rows = progress.rows, windows = progress.windows, left_to_binlog = left, "incremental snapshot done");
                    Checkpoint::WindowsDone {
                        table: w.table.clone(),
                        id: progress.id,
                        position: Position::new(at.source.origin.file.to_string(), at.source.pos),
                    }
                } else {
                    Checkpoint::Window {
                        table: w.table.clone(),
                        progress,
                    }
                };
                out.push(SourceEvent::Checkpoint(checkpoint));
            }
            let m = &metrics().snapshot;
            m.windows.with_label_values(&[&w.table.to_string()]).inc();
            m.tables_remaining
                .with_label_values(&["incremental"])
                .set(i64::try_from(self.active.len()).unwrap_or(i64::MAX));
        }
        // A worker that stopped has nothing to resume; the stream goes on.
        let _ = self.to_worker.send(ToWorker::Closed(w.id));
        Ok(())
    }

    fn execute(
        &mut self,
        id: &str,
        data: Option<&str>,
        state: &PositionStore,
        out: &mut Vec<SourceEvent>,
    ) -> Result<(), SourceError> {
        let tables = serde_json::from_str::<ExecuteSnapshot>(data.unwrap_or_default())
            .map_err(|e| e.to_string())
            .and_then(|s| s.tables());
        let tables = match tables {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(%id, error = %e, "execute-snapshot signal ignored: its data is not {{\"data-collections\": [\"db.table\", ...]}}");
                return Ok(());
            }
        };
        for (table, filter) in tables {
            self.request(id, table, filter, state, out)?;
        }
        Ok(())
    }
}

impl Windows {
    /// Queues an incremental snapshot of `table` requested as `id` (only rows matching
    /// `filter`), unless the table is not captured or `id` was done before a restart. A
    /// request for a table being copied restarts its copy from the first key, for the rows
    /// either request wants: rows the running copy already emitted may be the very ones the
    /// new request is about (an index that lost them meanwhile). The request is stored (a
    /// checkpoint in `out`) before the commit that asked.
    pub fn request(
        &mut self,
        id: &str,
        table: TableId,
        filter: Option<String>,
        state: &PositionStore,
        out: &mut Vec<SourceEvent>,
    ) -> Result<(), SourceError> {
        let request = signal_key(id, &table);
        if !self.captured.contains(&table) {
            tracing::error!(%id, %table, "snapshot signal ignored for a table Sluice does not capture; add it to `tables`");
            return Ok(());
        }
        if state.signal_done(&request)? {
            tracing::info!(%id, %table, "snapshot signal read again after a restart; its snapshot is already done");
            return Ok(());
        }
        let filter = match self.active.get(&table) {
            Some((running, _)) if *running == request => return Ok(()),
            Some((running, running_filter)) => {
                let both = match (running_filter, &filter) {
                    (Some(a), Some(b)) => Some(format!("({a}) OR ({b})")),
                    _ => None,
                };
                tracing::info!(%id, %table, %running, filter = both.as_deref().unwrap_or(""), "incremental snapshot restarted from the first key for a new request of the table it copies");
                both
            }
            None => {
                tracing::info!(%id, %table, filter = filter.as_deref().unwrap_or(""), "incremental snapshot requested");
                let m = &metrics().snapshot;
                m.tables.with_label_values(&["incremental"]).inc();
                filter
            }
        };
        let progress = WindowProgress {
            id: request,
            filter,
            last_key: Vec::new(),
            rows: 0,
            windows: 0,
        };
        self.active.insert(
            table.clone(),
            (progress.id.clone(), progress.filter.clone()),
        );
        metrics()
            .snapshot
            .tables_remaining
            .with_label_values(&["incremental"])
            .set(i64::try_from(self.active.len()).unwrap_or(i64::MAX));
        out.push(SourceEvent::Checkpoint(Checkpoint::Window {
            table: table.clone(),
            progress: progress.clone(),
        }));
        let _ = self.to_worker.send(ToWorker::Copy(table, progress));
        Ok(())
    }
}

/// The id a request of `table` by the signal `id` is stored under.
fn signal_key(id: &str, table: &TableId) -> String {
    format!("{id}/{table}")
}

/// The id of the snapshot of a table added to the config.
pub fn added_table_request(table: &TableId) -> WindowProgress {
    WindowProgress {
        id: format!("added/{table}"),
        filter: None,
        last_key: Vec::new(),
        rows: 0,
        windows: 0,
    }
}

/// A key as comparable text: values read by the select and decoded from the binlog are the
/// same [`Value`]s (tests/differential.rs), so equal keys give equal text.
fn key_text(table: &TableSchema, row: &[Value]) -> String {
    let key: Vec<&Value> = table.key_values(row).collect();
    serde_json::to_string(&key).expect("values serialize")
}
