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

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use futures_util::StreamExt;
use mysql_async::Conn;
use mysql_async::prelude::*;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::mysql::{self, connect, estimated_rows, query_error, quote};
use super::progress::Progress;
use super::snapshot::{chunk_query, convert, keyset_able};
use super::throttle::Throttle;
use super::{SourceError, SourceEvent};
use crate::config::SourceConfig;
use crate::model::{
    Change, Checkpoint, Op, Position, Row, SourceInfo, TableId, TableSchema, Value, WindowProgress,
};
use crate::retry::Backoff;
use crate::state::State;

/// Signal type of a low watermark.
const OPEN: &str = "snapshot-window-open";
/// Signal type of a high watermark.
const CLOSE: &str = "snapshot-window-close";
/// Signal type of a snapshot request.
pub const EXECUTE: &str = "execute-snapshot";

/// The statements that create the signal table `table` (`migrations/003_sluice_signal.sql`
/// holds them for the default name).
pub fn setup_statements(table: &TableId) -> [String; 2] {
    [
        format!("CREATE DATABASE IF NOT EXISTS {}", quote(&table.db)),
        format!(
            "CREATE TABLE IF NOT EXISTS {}.{} (\n  id   VARCHAR(64) NOT NULL PRIMARY KEY,\n  \
             type VARCHAR(32) NOT NULL,\n  data TEXT        NULL\n) ENGINE = InnoDB",
            quote(&table.db),
            quote(&table.table)
        ),
    ]
}

/// The `data` of an `execute-snapshot` signal, as Debezium writes it:
/// `{"data-collections": ["db.t"], "additional-conditions": [{"data-collection": "db.t",
/// "filter": "id > 5"}]}`.
#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ExecuteSnapshot {
    /// Tables to snapshot, `db.table`.
    pub data_collections: Vec<String>,
    /// Debezium's snapshot type; only `incremental` (the default) is done here.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Per-table SQL conditions: only matching rows are copied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_conditions: Vec<Condition>,
}

/// A condition of an [`ExecuteSnapshot`].
#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Condition {
    /// The table, `db.table`.
    pub data_collection: String,
    /// The SQL condition.
    pub filter: String,
}

impl ExecuteSnapshot {
    /// The tables asked for, each with its condition.
    fn tables(&self) -> Result<Vec<(TableId, Option<String>)>, String> {
        if let Some(kind) = &self.kind
            && !kind.eq_ignore_ascii_case("incremental")
        {
            return Err(format!(
                "snapshot type {kind:?}: only \"incremental\" snapshots run while streaming"
            ));
        }
        self.data_collections
            .iter()
            .map(|name| {
                let table = TableId::parse(name)
                    .ok_or_else(|| format!("{name:?} is not of the form db.table"))?;
                let filter = self
                    .additional_conditions
                    .iter()
                    .find(|c| TableId::parse(&c.data_collection).as_ref() == Some(&table))
                    .map(|c| c.filter.clone());
                Ok((table, filter))
            })
            .collect()
    }
}

/// A row of the signal table, as the stream reads it.
#[derive(Debug, PartialEq)]
enum Signal {
    Open(String),
    Close(String),
    Execute { id: String, data: Option<String> },
    Other { id: String, kind: String },
}

impl Signal {
    /// Reads an inserted or updated signal row.
    fn of(schema: &TableSchema, row: &[Value]) -> Option<Signal> {
        let text = |name: &str| {
            let i = schema.columns.iter().position(|c| c.name == name)?;
            match &row[i] {
                Value::String(s) => Some(s.clone()),
                _ => None,
            }
        };
        let (id, kind, data) = (text("id")?, text("type")?, text("data"));
        Some(match kind.as_str() {
            OPEN => Signal::Open(data.unwrap_or_default()),
            CLOSE => Signal::Close(data.unwrap_or_default()),
            EXECUTE => Signal::Execute { id, data },
            _ => Signal::Other { id, kind },
        })
    }
}

/// From the worker to the stream.
#[derive(Debug)]
enum ToStream {
    /// A window is about to open: its watermarks carry `window`.
    Announce { window: String, table: TableId },
    /// The chunk selected inside `window`.
    Chunk { window: String, chunk: Chunk },
}

/// A window's selected rows.
#[derive(Debug)]
struct Chunk {
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
enum ToWorker {
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
        .map(|(t, p)| (t.clone(), p.id.clone()))
        .collect();
    let windows = Windows {
        signal: signal.clone(),
        captured,
        active,
        to_worker,
        from_worker,
        window: None,
        left_to_binlog: HashMap::new(),
    };
    let worker = Worker {
        config: worker,
        signal: signal.id.clone(),
        queue: queued.into(),
        to_stream,
        from_stream,
    };
    (windows, worker)
}

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
    /// Tables with an incremental snapshot queued or running, with the request's id.
    active: HashMap<TableId, String>,
    to_worker: mpsc::UnboundedSender<ToWorker>,
    from_worker: mpsc::UnboundedReceiver<ToStream>,
    window: Option<Window>,
    /// Per table, rows selected but left to the binlog because it changed them in a window.
    left_to_binlog: HashMap<TableId, u64>,
}

impl Windows {
    /// The signal table, which the stream must decode but never publishes.
    pub fn signal_table(&self) -> &Arc<TableSchema> {
        &self.signal
    }

    /// Takes one decoded batch of changes and returns what to send on, in order: the
    /// captured tables' changes, and at a high watermark the window's rows and progress.
    pub fn absorb(
        &mut self,
        changes: Vec<Change>,
        state: &State,
    ) -> Result<Vec<SourceEvent>, SourceError> {
        // The common case, on the stream's hot path: no signal and no open window, so the
        // batch passes as it is.
        let watching = self.window.as_ref().is_some_and(|w| w.opened);
        if !watching && changes.iter().all(|c| c.table.id != self.signal.id) {
            return Ok(vec![SourceEvent::Changes(changes)]);
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
                        out.push(SourceEvent::Changes(std::mem::take(&mut pending)));
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
            out.push(SourceEvent::Changes(pending));
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
            let source = SourceInfo {
                snapshot: true,
                thread: None,
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
                out.push(SourceEvent::Changes(kept));
            }
            let checkpoint = if last {
                self.active.remove(&w.table);
                let left = self.left_to_binlog.remove(&w.table).unwrap_or(0);
                tracing::info!(table = %w.table, id = %progress.id, rows = progress.rows, windows = progress.windows, left_to_binlog = left, "incremental snapshot done");
                Checkpoint::WindowsDone {
                    table: w.table.clone(),
                    id: progress.id,
                    position: Position::new(at.source.file.to_string(), at.source.pos),
                }
            } else {
                Checkpoint::Window {
                    table: w.table.clone(),
                    progress,
                }
            };
            out.push(SourceEvent::Checkpoint(checkpoint));
        }
        // A worker that stopped has nothing to resume; the stream goes on.
        let _ = self.to_worker.send(ToWorker::Closed(w.id));
        Ok(())
    }

    fn execute(
        &mut self,
        id: &str,
        data: Option<&str>,
        state: &State,
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
            let request = signal_key(id, &table);
            if !self.captured.contains(&table) {
                tracing::error!(%id, %table, "snapshot signal ignored for a table Sluice does not capture; add it to `tables`");
            } else if let Some(running) = self.active.get(&table) {
                tracing::warn!(%id, %table, %running, "snapshot signal ignored: an incremental snapshot of this table is already running");
            } else if state.signal_done(&request)? {
                tracing::info!(%id, %table, "snapshot signal read again after a restart; its snapshot is already done");
            } else {
                tracing::info!(%id, %table, filter = filter.as_deref().unwrap_or(""), "incremental snapshot requested");
                let progress = WindowProgress {
                    id: request,
                    filter,
                    last_key: Vec::new(),
                    rows: 0,
                    windows: 0,
                };
                self.active.insert(table.clone(), progress.id.clone());
                // Stored before the signal's commit, so a restart past it still copies.
                out.push(SourceEvent::Checkpoint(Checkpoint::Window {
                    table: table.clone(),
                    progress: progress.clone(),
                }));
                let _ = self.to_worker.send(ToWorker::Copy(table, progress));
            }
        }
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

/// What the worker needs from the config.
pub struct WorkerConfig {
    /// The source connection settings.
    pub source: Arc<SourceConfig>,
    /// Configured key columns, replacing primary keys.
    pub keys: HashMap<TableId, Vec<String>>,
}

/// The database half: copies queued tables window by window, one window at a time.
pub struct Worker {
    config: WorkerConfig,
    signal: TableId,
    queue: VecDeque<(TableId, WindowProgress)>,
    to_stream: mpsc::UnboundedSender<ToStream>,
    from_stream: mpsc::UnboundedReceiver<ToWorker>,
}

impl Worker {
    /// Copies tables as they are requested, until `shutdown`. A lost connection is
    /// re-established with backoff and the table continues at its last window.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), SourceError> {
        let mut conn: Option<Conn> = None;
        let mut backoff = Backoff::default();
        loop {
            let (table, mut progress) = match self.queue.pop_front() {
                Some(next) => next,
                None => {
                    drop(conn.take());
                    tokio::select! {
                        msg = self.from_stream.recv() => match msg {
                            Some(ToWorker::Copy(t, p)) => (t, p),
                            Some(ToWorker::Closed(_)) => continue,
                            None => return Ok(()),
                        },
                        () = shutdown.cancelled() => return Ok(()),
                    }
                }
            };
            let copied = match conn.as_mut() {
                Some(c) => self.copy(c, &table, &mut progress, &shutdown).await,
                None => match self.connect().await {
                    Ok(c) => {
                        let c = conn.insert(c);
                        self.copy(c, &table, &mut progress, &shutdown).await
                    }
                    Err(e) => Err(e),
                },
            };
            match copied {
                Ok(true) => backoff.reset(),
                Ok(false) => return Ok(()),
                Err(e) if e.is_connection_loss() => {
                    let wait = backoff.next_wait();
                    tracing::warn!(%table, error = %e, retry_in_ms = wait.as_millis() as u64, "incremental snapshot: connection lost; continuing at the last window");
                    conn = None;
                    self.queue.push_front((table, progress));
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = shutdown.cancelled() => return Ok(()),
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn connect(&self) -> Result<Conn, SourceError> {
        let mut conn = connect(&self.config.source).await?;
        // TIMESTAMP values come back in the session zone; UTC makes them instants.
        conn.query_drop("SET SESSION time_zone = '+00:00'")
            .await
            .map_err(|e| query_error("setting the snapshot session's time zone", e))?;
        Ok(conn)
    }

    /// Copies one table; false if `shutdown` interrupted it.
    async fn copy(
        &mut self,
        conn: &mut Conn,
        table: &TableId,
        progress: &mut WindowProgress,
        shutdown: &CancellationToken,
    ) -> Result<bool, SourceError> {
        let chunk_rows = self.config.source.snapshot_chunk_rows;
        let estimate = estimated_rows(conn, table).await;
        tracing::info!(%table, id = %progress.id, filter = progress.filter.as_deref().unwrap_or(""), estimated_rows = estimate, resuming_after_rows = progress.rows, "incremental snapshot: copying table while streaming");
        let mut report = Progress::start("incremental snapshot", table, estimate, progress.rows);
        let mut throttle = Throttle::new(self.config.source.snapshot_max_rows_per_sec);
        loop {
            let key = self.config.keys.get(table).map(Vec::as_slice);
            let schema = Arc::new(mysql::table_schema(conn, table, key).await?);
            let chunked = keyset_able(&schema);
            if !chunked && progress.windows == 0 {
                tracing::warn!(%table, "incremental snapshot: the key has a type that cannot be paged in key order (ENUM, SET, FLOAT, DOUBLE, BIT, JSON, GEOMETRY); the whole table is one window, held in memory");
            }
            let window = new_window_id();
            self.send(ToStream::Announce {
                window: window.clone(),
                table: table.clone(),
            })?;
            self.watermark(conn, OPEN, &window).await?;
            let rows = select(conn, &schema, progress, chunked.then_some(chunk_rows)).await?;
            // DDL cannot run during the select (it waits for the metadata lock), so an
            // unchanged definition afterwards means the rows have this schema.
            let now = mysql::table_schema(conn, table, key).await?;
            let mut next = progress.clone();
            let (rows, last) = if now == *schema {
                let n = rows.len() as u64;
                if let Some(k) = rows.last() {
                    next.last_key = schema.key_values(k).cloned().collect();
                }
                next.rows += n;
                next.windows += 1;
                (Some(rows), !chunked || n < chunk_rows)
            } else {
                tracing::info!(%table, "table definition changed during a window's select; selecting again");
                (None, false)
            };
            self.send(ToStream::Chunk {
                window: window.clone(),
                chunk: Chunk {
                    schema,
                    rows,
                    progress: next.clone(),
                    last,
                },
            })?;
            self.watermark(conn, CLOSE, &window).await?;
            // A connection lost before this point repeats the window; after it, the stream
            // emits the rows.
            let rows_read = next.rows - progress.rows;
            *progress = next;
            if !self.closed(&window, shutdown).await {
                report.finish();
                return Ok(false);
            }
            report.update(progress.rows);
            if last {
                report.finish();
                return Ok(true);
            }
            // Paced between windows: a window's select stays short, so its read view does.
            if !throttle.admit(rows_read, shutdown).await {
                report.finish();
                return Ok(false);
            }
        }
    }

    fn send(&self, msg: ToStream) -> Result<(), SourceError> {
        self.to_stream
            .send(msg)
            .map_err(|_| SourceError::Downstream)
    }

    /// Writes a watermark: one row per Sluice instance, updated, so the table stays small.
    async fn watermark(
        &self,
        conn: &mut Conn,
        kind: &str,
        window: &str,
    ) -> Result<(), SourceError> {
        let sql = format!(
            "INSERT INTO {}.{} (id, type, data) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE \
             type = VALUES(type), data = VALUES(data)",
            quote(&self.signal.db),
            quote(&self.signal.table)
        );
        let id = format!("watermark-{}", self.config.source.server_id);
        conn.exec_drop(sql, (id, kind, window)).await.map_err(|e| {
            query_error(
                "writing a snapshot watermark to the signal table (grant the Sluice user \
                 INSERT, UPDATE on it)",
                e,
            )
        })
    }

    /// Waits until the stream passed `window`'s high watermark, queueing requests meanwhile;
    /// false on shutdown.
    async fn closed(&mut self, window: &str, shutdown: &CancellationToken) -> bool {
        loop {
            tokio::select! {
                msg = self.from_stream.recv() => match msg {
                    Some(ToWorker::Closed(w)) if w == window => return true,
                    Some(ToWorker::Closed(_)) => {}
                    Some(ToWorker::Copy(t, p)) => self.queue.push_back((t, p)),
                    None => return false,
                },
                () = shutdown.cancelled() => return false,
            }
        }
    }
}

/// Selects the window's chunk: rows after the last key that match the filter.
async fn select(
    conn: &mut Conn,
    schema: &TableSchema,
    progress: &WindowProgress,
    limit: Option<u64>,
) -> Result<Vec<Row>, SourceError> {
    let what = "selecting an incremental snapshot chunk";
    let (sql, params) = chunk_query(
        schema,
        &progress.last_key,
        progress.filter.as_deref(),
        limit,
    );
    let mut result = conn
        .exec_iter(sql, params)
        .await
        .map_err(|e| query_error(what, e))?;
    let mut stream = result
        .stream::<mysql_async::Row>()
        .await
        .map_err(|e| query_error(what, e))?
        .ok_or_else(|| SourceError::Precondition("snapshot query returned no result set".into()))?;
    let mut rows = Vec::new();
    let mut zero_dates = 0;
    while let Some(row) = stream.next().await {
        let row = row.map_err(|e| query_error(what, e))?;
        rows.push(convert(schema, row.unwrap(), &mut zero_dates)?);
    }
    if zero_dates > 0 {
        tracing::warn!(table = %schema.id, count = zero_dates, "incremental snapshot: zero or impossible dates became null");
    }
    Ok(rows)
}

/// A window id no earlier window had: time and randomness.
fn new_window_id() -> String {
    format!(
        "{:x}-{:016x}",
        crate::model::time::now_ms(),
        fastrand::u64(..)
    )
}

/// Writes an `execute-snapshot` signal for `table` and returns its id (`sluice snapshot`).
pub async fn request(
    cfg: &SourceConfig,
    table: &TableId,
    filter: Option<&str>,
) -> Result<String, SourceError> {
    let signal = cfg.signal_table();
    let mut conn = connect(cfg).await?;
    let data = ExecuteSnapshot {
        data_collections: vec![table.to_string()],
        kind: Some("incremental".into()),
        additional_conditions: filter
            .map(|f| Condition {
                data_collection: table.to_string(),
                filter: f.to_string(),
            })
            .into_iter()
            .collect(),
    };
    let id = format!("sluice-snapshot-{}", new_window_id());
    let sql = format!(
        "INSERT INTO {}.{} (id, type, data) VALUES (?, ?, ?)",
        quote(&signal.db),
        quote(&signal.table)
    );
    let data = serde_json::to_string(&data).expect("the signal serializes");
    conn.exec_drop(sql, (&id, EXECUTE, data))
        .await
        .map_err(|e| match &e {
            mysql_async::Error::Server(s) if s.code == 1146 => SourceError::Precondition(format!(
                "the signal table {signal} does not exist; create it with `sluice setup` (or \
                 migrations/003_sluice_signal.sql)"
            )),
            _ => query_error(
                "writing the snapshot signal (grant INSERT on the signal table)",
                e,
            ),
        })?;
    Ok(id)
}

/// Creates the signal table (`sluice setup`).
pub async fn setup(cfg: &SourceConfig) -> Result<TableId, SourceError> {
    let signal = cfg.signal_table();
    let mut conn = connect(cfg).await?;
    for sql in setup_statements(&signal) {
        conn.query_drop(sql).await.map_err(|e| {
            query_error(
                "creating the signal table (run migrations/003_sluice_signal.sql as an \
                 administrator instead, or grant CREATE on its database)",
                e,
            )
        })?;
    }
    Ok(signal)
}

/// The signal table's schema, if it exists.
pub async fn signal_schema(
    conn: &mut Conn,
    cfg: &SourceConfig,
) -> Result<Option<TableSchema>, SourceError> {
    let signal = cfg.signal_table();
    let exists: Option<u8> = conn
        .exec_first(
            "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (&signal.db, &signal.table),
        )
        .await
        .map_err(|e| query_error("looking for the signal table", e))?;
    if exists.is_none() {
        return Ok(None);
    }
    Ok(Some(mysql::table_schema(conn, &signal, None).await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Column, ColumnType, Version};

    fn signal_schema() -> Arc<TableSchema> {
        let text = |n: &str, null| Column::new(n, ColumnType::Text, null);
        Arc::new(TableSchema {
            id: TableId::new("sluice", "sluice_signal"),
            columns: vec![text("id", false), text("type", false), text("data", true)],
            key: vec![0],
        })
    }

    fn table() -> Arc<TableSchema> {
        Arc::new(TableSchema {
            id: TableId::new("shop", "t"),
            columns: vec![
                Column::new(
                    "id",
                    ColumnType::Integer {
                        bytes: 4,
                        unsigned: false,
                    },
                    false,
                ),
                Column::new("v", ColumnType::Text, true),
            ],
            key: vec![0],
        })
    }

    fn change(
        table: &Arc<TableSchema>,
        op: Op,
        before: Option<Row>,
        after: Option<Row>,
        v: u32,
    ) -> Change {
        Change {
            table: table.clone(),
            op,
            before,
            after,
            version: Version::at(1, v),
            source: SourceInfo::at("binlog.000001", u64::from(v)),
        }
    }

    /// A state store and both halves, capturing `t`.
    fn capturing(t: &TableSchema) -> (tempfile::TempDir, State, Windows, Worker) {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(dir.path()).unwrap();
        let cfg: SourceConfig =
            toml::from_str("host = \"h\"\nuser = \"u\"\nserver_id = 1\nstate_dir = \"/x\"")
                .unwrap();
        let worker = WorkerConfig {
            source: Arc::new(cfg),
            keys: HashMap::new(),
        };
        let (windows, w) = pair(signal_schema(), [t.id.clone()].into(), worker, Vec::new());
        (dir, state, windows, w)
    }

    fn row(id: i64, v: &str) -> Row {
        vec![Value::Int(id), Value::String(v.into())]
    }

    fn signal(kind: &str, data: &str, v: u32) -> Change {
        let s = signal_schema();
        let r = vec![
            Value::String("watermark-1".into()),
            Value::String(kind.into()),
            Value::String(data.into()),
        ];
        change(&s, Op::Update, None, Some(r), v)
    }

    fn changes_of(events: &[SourceEvent]) -> Vec<(Op, i64, u64)> {
        events
            .iter()
            .filter_map(|e| match e {
                SourceEvent::Changes(c) => Some(c),
                _ => None,
            })
            .flatten()
            .map(|c| {
                let r = c.after.as_ref().or(c.before.as_ref()).unwrap();
                let Value::Int(id) = r[0] else { panic!() };
                (c.op, id, c.version.get())
            })
            .collect()
    }

    #[tokio::test]
    async fn keys_changed_inside_a_window_are_left_to_the_binlog() {
        let (_dir, state, mut windows, mut worker) = capturing(&table());
        let t = table();
        // A change before the window is passed on and not noted.
        worker
            .send(ToStream::Announce {
                window: "w1".into(),
                table: t.id.clone(),
            })
            .unwrap();
        let before = windows
            .absorb(
                vec![change(
                    &t,
                    Op::Update,
                    Some(row(1, "a")),
                    Some(row(1, "b")),
                    10,
                )],
                &state,
            )
            .unwrap();
        assert_eq!(
            changes_of(&before),
            [(Op::Update, 1, Version::at(1, 10).get())]
        );
        windows
            .absorb(vec![signal(OPEN, "w1", 20)], &state)
            .unwrap();
        // Inside: 2 updated, 3 deleted, 4 re-keyed to 9, 5 inserted.
        windows
            .absorb(
                vec![
                    change(&t, Op::Update, Some(row(2, "a")), Some(row(2, "b")), 30),
                    change(&t, Op::Delete, Some(row(3, "a")), None, 31),
                    change(&t, Op::Update, Some(row(4, "a")), Some(row(9, "a")), 32),
                    change(&t, Op::Create, None, Some(row(5, "n")), 33),
                ],
                &state,
            )
            .unwrap();
        let chunk: Vec<Row> = [1, 2, 3, 4, 5, 6].iter().map(|&i| row(i, "s")).collect();
        let progress = WindowProgress {
            id: "req".into(),
            filter: None,
            last_key: vec![Value::Int(6)],
            rows: 6,
            windows: 1,
        };
        worker
            .send(ToStream::Chunk {
                window: "w1".into(),
                chunk: Chunk {
                    schema: t.clone(),
                    rows: Some(chunk),
                    progress: progress.clone(),
                    last: false,
                },
            })
            .unwrap();
        let at_close = windows
            .absorb(vec![signal(CLOSE, "w1", 40)], &state)
            .unwrap();
        let h = Version::at(1, 40).get();
        assert_eq!(changes_of(&at_close), [(Op::Read, 1, h), (Op::Read, 6, h)]);
        assert!(matches!(
            at_close.last(),
            Some(SourceEvent::Checkpoint(Checkpoint::Window { progress: p, .. })) if *p == progress
        ));
        assert!(matches!(
            worker.from_stream.try_recv(),
            Ok(ToWorker::Closed(w)) if w == "w1"
        ));
        // After the window, nothing is noted and stale watermarks are ignored.
        let after = windows
            .absorb(
                vec![
                    signal(OPEN, "old", 50),
                    change(&t, Op::Delete, Some(row(1, "s")), None, 51),
                    signal(CLOSE, "old", 52),
                ],
                &state,
            )
            .unwrap();
        assert_eq!(
            changes_of(&after),
            [(Op::Delete, 1, Version::at(1, 51).get())]
        );
    }

    #[tokio::test]
    async fn signals_request_captured_tables_once() {
        let (_dir, state, mut windows, mut worker) = capturing(&table());
        let t = table();
        let execute = |id: &str, data: &str| {
            let r = vec![
                Value::String(id.into()),
                Value::String(EXECUTE.into()),
                Value::String(data.into()),
            ];
            change(&signal_schema(), Op::Create, None, Some(r), 5)
        };
        let data = r#"{"data-collections": ["shop.t", "shop.other"], "type": "incremental",
            "additional-conditions": [{"data-collection": "shop.t", "filter": "id > 5"}]}"#;
        let out = windows
            .absorb(
                vec![
                    execute("s1", data),
                    execute("s2", data),
                    execute("bad", "{not json"),
                    execute(
                        "blocking",
                        r#"{"data-collections": ["shop.t"], "type": "blocking"}"#,
                    ),
                ],
                &state,
            )
            .unwrap();
        // One request: shop.other is not captured, s2 finds s1 running, the others are bad.
        assert_eq!(out.len(), 1);
        let Ok(ToWorker::Copy(table, p)) = worker.from_stream.try_recv() else {
            panic!()
        };
        assert_eq!(table, t.id);
        assert_eq!(p.id, "s1/shop.t");
        assert_eq!(p.filter.as_deref(), Some("id > 5"));
        assert!(worker.from_stream.try_recv().is_err());
        // Done and read again after a restart: not copied again.
        state
            .save(&[Checkpoint::WindowsDone {
                table: t.id.clone(),
                id: "s1/shop.t".into(),
                position: Position::new("binlog.000001", 4),
            }])
            .await
            .unwrap();
        windows.active.clear();
        let out = windows.absorb(vec![execute("s1", data)], &state).unwrap();
        assert!(out.is_empty());
        assert!(state.is_snapshotted(&t.id).unwrap());
    }

    #[test]
    fn the_migration_creates_the_default_signal_table() {
        let migration = include_str!("../../migrations/003_sluice_signal.sql");
        let normal = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        for statement in setup_statements(&TableId::new("sluice", "sluice_signal")) {
            assert!(
                normal(migration).contains(&normal(&statement)),
                "{statement}"
            );
        }
    }
}
