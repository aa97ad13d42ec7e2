//! The database half of an incremental snapshot: copies queued tables window by window on a
//! connection of its own, between a low and a high watermark.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use mysql_async::Conn;
use mysql_async::prelude::*;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::signal::{CLOSE, OPEN, new_window_id};
use super::{Chunk, ToStream, ToWorker};
use crate::config::SourceConfig;
use crate::model::{TableId, WindowProgress};
use crate::retry::Backoff;
use crate::source::SourceError;
use crate::source::mysql::{self, connect, estimated_rows, query_error, quote};
use crate::source::progress::Progress;
use crate::source::select;
use crate::source::throttle::Throttle;

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
    /// A new request for the table being copied: the copy starts over with it.
    restart: Option<WindowProgress>,
    to_stream: mpsc::UnboundedSender<ToStream>,
    pub(super) from_stream: mpsc::UnboundedReceiver<ToWorker>,
}

impl Worker {
    pub(super) fn new(
        config: WorkerConfig,
        signal: TableId,
        queue: VecDeque<(TableId, WindowProgress)>,
        to_stream: mpsc::UnboundedSender<ToStream>,
        from_stream: mpsc::UnboundedReceiver<ToWorker>,
    ) -> Self {
        Worker {
            config,
            signal,
            queue,
            restart: None,
            to_stream,
            from_stream,
        }
    }

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
                    let reason = format!("{table}: {e}");
                    conn = None;
                    self.queue.push_front((table, progress));
                    let next =
                        "incremental snapshot: connection lost; continuing at the last window";
                    if !backoff.wait_out(reason, next, &shutdown).await {
                        return Ok(());
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
        let chunk_rows = self.config.source.snapshot_chunk_rows.get();
        let estimate = estimated_rows(conn, table).await;
        tracing::info!(%table, id = %progress.id, filter = progress.filter.as_deref().unwrap_or(""), estimated_rows = estimate, resuming_after_rows = progress.rows, "incremental snapshot: copying table while streaming");
        let mut report = Progress::start("incremental snapshot", table, estimate, progress.rows);
        let mut throttle = Throttle::new(self.config.source.snapshot_max_rows_per_sec);
        let mut limit = chunk_rows;
        loop {
            let key = self.config.keys.get(table).map(Vec::as_slice);
            let schema = Arc::new(mysql::table_schema(conn, table, key).await?);
            let chunked = select::keyset_able(&schema);
            if !chunked && progress.windows == 0 {
                tracing::warn!(%table, "incremental snapshot: the key has a type that cannot be paged in key order (ENUM, SET, FLOAT, DOUBLE, BIT, JSON, GEOMETRY); the whole table is one window, held in memory");
            }
            let window = new_window_id();
            self.send(ToStream::Announce {
                window: window.clone(),
                table: table.clone(),
            })?;
            self.watermark(conn, OPEN, &window).await?;
            let (rows, cut) =
                select::select_chunk(conn, &schema, progress, chunked.then_some(limit)).await?;
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
                let last = !chunked || (n < limit && !cut);
                limit = next_limit(limit, n, cut, chunk_rows);
                (Some(rows), last)
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
            if !self.closed(table, &window, shutdown).await {
                return Ok(false);
            }
            if let Some(again) = self.restart.take() {
                tracing::info!(%table, id = %again.id, filter = again.filter.as_deref().unwrap_or(""), "incremental snapshot: starting over at the first key");
                *progress = again;
                report = Progress::start("incremental snapshot", table, estimate, 0);
                continue;
            }
            report.update(progress.rows);
            if last {
                report.finish(true);
                return Ok(true);
            }
            // Paced between windows: a window's select stays short, so its read view does.
            if !throttle.admit(rows_read, shutdown).await {
                return Ok(false);
            }
        }
    }

    pub(super) fn send(&self, msg: ToStream) -> Result<(), SourceError> {
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

    /// Waits until the stream passed `window`'s high watermark, queueing requests meanwhile
    /// (one for `table`, being copied, restarts its copy); false on shutdown.
    async fn closed(
        &mut self,
        table: &TableId,
        window: &str,
        shutdown: &CancellationToken,
    ) -> bool {
        loop {
            tokio::select! {
                msg = self.from_stream.recv() => match msg {
                    Some(ToWorker::Closed(w)) if w == window => return true,
                    Some(ToWorker::Closed(_)) => {}
                    Some(ToWorker::Copy(t, p)) if t == *table => self.restart = Some(p),
                    Some(ToWorker::Copy(t, p)) => self.queue.push_back((t, p)),
                    None => return false,
                },
                () = shutdown.cancelled() => return false,
            }
        }
    }
}

/// Rows the next window selects after one that selected `selected` of `limit`: after a window
/// ended at its byte bound, as many as fitted, so the server does not send wide rows only for
/// them to be dropped; doubled, up to `most` (`snapshot_chunk_rows`), after a window that
/// filled its limit without reaching the bound; otherwise unchanged.
fn next_limit(limit: u64, selected: u64, cut: bool, most: u64) -> u64 {
    if cut {
        selected.max(1)
    } else if selected == limit {
        limit.saturating_mul(2).min(most)
    } else {
        limit
    }
}

#[cfg(test)]
mod tests {
    use super::next_limit;

    #[test]
    fn the_window_limit_shrinks_to_what_fitted_and_grows_back_to_the_chunk_size() {
        // Wide rows: the window ended at its byte bound after 300 of 1,024 rows.
        assert_eq!(next_limit(1_024, 300, true, 1_024), 300);
        // One row over the bound: the next window still selects one.
        assert_eq!(next_limit(300, 1, true, 1_024), 1);
        assert_eq!(next_limit(1, 1, true, 1_024), 1);
        // Narrow rows again: doubled after each full window, never past the chunk size.
        assert_eq!(next_limit(300, 300, false, 1_024), 600);
        assert_eq!(next_limit(600, 600, false, 1_024), 1_024);
        assert_eq!(next_limit(1_024, 1_024, false, 1_024), 1_024);
        // A window that selected fewer rows than its limit is the table's last.
        assert_eq!(next_limit(600, 17, false, 1_024), 600);
        assert_eq!(next_limit(u64::MAX, u64::MAX, false, u64::MAX), u64::MAX);
    }
}
