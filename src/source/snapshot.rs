//! The initial snapshot: the rows of the tables that have none yet, read in consistent
//! transactions whose binlog position the server reports, in chunks by key (keyset
//! pagination), each chunk's end stored once Kafka has it, so a restart continues after the
//! last stored chunk instead of starting over.
//!
//! With `source.snapshot_parallelism` above 1, several connections copy a table each at once.
//! Each opens its own consistent read, one after the other; streaming starts from the first
//! (the earliest), and the rows a later read sees carry its later point's version.
//!
//! A continued snapshot, or a table read at a later point than the first, reads at a newer
//! point than the one streaming starts from; its rows carry the newer point's version, so the
//! changes streamed again from the older point, which are older still, lose to them in the
//! index, and everything after follows as usual.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use mysql_async::Conn;
use mysql_async::prelude::*;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::mysql::{self, estimated_rows, gtid_at, query_error};
use super::progress::Progress;
use super::select::{chunk_query, convert, keyset_able};
use super::throttle::Throttle;
use super::{Emitter, SourceError};
use crate::config::SourceConfig;
use crate::metrics::metrics;
use crate::model::{
    Change, Checkpoint, Op, Position, SnapshotProgress, SourceInfo, TableSchema, Value, Version,
    binlog_file_sequence, time,
};

/// Rows per message to the publisher, at most...
const BATCH: usize = 512;

/// ...and bytes of rows as held in memory, at most: the copiers' queue counts messages, and
/// the queue to the publisher is bounded in bytes only as finely as its batches are.
const BATCH_BYTES: usize = 256 << 10;

/// Messages waiting for the publisher, per copier (the copiers share them): enough to keep
/// it busy while a copier reads, few enough to bound memory.
const QUEUED_PER_COPIER: usize = 4;

/// A table to copy, and how far an earlier run got.
pub struct Pending {
    /// The table.
    pub table: Arc<TableSchema>,
    /// Progress stored by an interrupted run.
    pub progress: Option<SnapshotProgress>,
}

/// What a copier hands to the snapshot's coordinator, in its order.
enum Copied {
    /// Rows read, and the memory they hold ([`Change::bytes`] summed).
    Changes(Vec<Change>, usize),
    /// A chunk's end, stored once every row before it is acknowledged.
    Chunk(Checkpoint),
    /// A table copied.
    Table,
    /// The copier ran out of tables (`Some(zero dates made null)`), was stopped (`None`), or
    /// failed.
    Ended(Result<Option<u64>, SourceError>),
}

/// Copies `tables` over `conn` and, with `source.snapshot_parallelism`, more connections of
/// its own, and returns the position streaming starts from for them (the first run's point
/// when continuing), or `None` if `shutdown` interrupted it.
pub async fn run(
    mut conn: Conn,
    cfg: &SourceConfig,
    tables: Vec<Pending>,
    server_id: u32,
    out: &mut Emitter,
    shutdown: &CancellationToken,
) -> Result<Option<Position>, SourceError> {
    let wanted = cfg.snapshot_parallelism.get().min(tables.len()).max(1);
    // The first point is taken before the other connections are opened: it is the earliest,
    // and the only one whose GTID state streaming may need.
    let first = consistent_point(&mut conn, true).await?;
    let origin = tables
        .iter()
        .find_map(|p| p.progress.as_ref().map(|p| p.position.clone()))
        .unwrap_or_else(|| first.clone());
    let mut readers = vec![(conn, first)];
    while readers.len() < wanted {
        // A server at its connection limit (or the user at `max_user_connections`) still
        // gets its snapshot, over the connections it gave.
        let mut conn = match mysql::connect(cfg).await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, copying_at_once = readers.len(), "snapshot: no further connection for copying tables at once; going on with those open (lower `source.snapshot_parallelism` to avoid this)");
                break;
            }
        };
        let at = consistent_point(&mut conn, false).await?;
        readers.push((conn, at));
    }
    let copiers = readers.len();
    let s = &metrics().snapshot;
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let total = tables.len();
    s.tables.with_label_values(&["initial"]).set(count(total));
    s.tables_remaining
        .with_label_values(&["initial"])
        .set(count(total));
    let queue = Arc::new(Mutex::new(VecDeque::from(tables)));
    let (tx, mut rx) = mpsc::channel(QUEUED_PER_COPIER * copiers);
    let throttle = Throttle::new(cfg.snapshot_max_rows_per_sec);
    let shared = Shared {
        out: tx,
        shutdown: shutdown.clone(),
        origin: origin.clone(),
        server_id,
        chunk_rows: cfg.snapshot_chunk_rows.get(),
        paced: throttle.is_paced(),
        throttle: Arc::new(tokio::sync::Mutex::new(throttle)),
    };
    // Dropped on every return: an early one (an error, a stop) aborts the other copiers.
    let mut workers = JoinSet::new();
    for (conn, at) in readers {
        let copier = Copier::new(conn, at, shared.clone())?;
        let queue = queue.clone();
        workers.spawn(async move {
            let tx = copier.shared.out.clone();
            let ended = copier.run(&queue).await;
            let _ = tx.send(Copied::Ended(ended)).await;
        });
    }
    drop(shared);
    let (mut copied, mut ended, mut zero_dates) = (0, 0, 0);
    while ended < copiers {
        // A copier's panic is raised at once, not after the others have copied everything.
        let item = tokio::select! {
            item = rx.recv() => item,
            Some(Err(e)) = workers.join_next() => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(_) => return Ok(None), // cancelled: the runtime is shutting down
            },
        };
        let Some(item) = item else {
            break; // every copier is gone, one by a panic: joined below
        };
        match item {
            Copied::Changes(changes, bytes) => out.counted_changes(changes, None, bytes).await?,
            Copied::Chunk(checkpoint) => out.checkpoint(checkpoint).await?,
            Copied::Table => {
                copied += 1;
                s.tables_remaining
                    .with_label_values(&["initial"])
                    .set(count(total - copied));
            }
            Copied::Ended(Ok(Some(zero))) => {
                ended += 1;
                zero_dates += zero;
            }
            Copied::Ended(Ok(None)) => return Ok(None),
            Copied::Ended(Err(e)) => return Err(e),
        }
    }
    while let Some(joined) = workers.join_next().await {
        joined.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    }
    if zero_dates > 0 {
        tracing::warn!(
            count = zero_dates,
            "snapshot: zero or impossible dates became null"
        );
    }
    Ok(Some(origin))
}

/// Opens the consistent read and returns the binlog position it sees, with the GTID state
/// there if `gtid` (it can take the server a scan of the binlog).
async fn consistent_point(conn: &mut Conn, gtid: bool) -> Result<Position, SourceError> {
    // TIMESTAMP values come back in the session zone; UTC makes them instants.
    for sql in [
        "SET SESSION time_zone = '+00:00'",
        "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
        "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
    ] {
        conn.query_drop(sql)
            .await
            .map_err(|e| query_error("starting the snapshot transaction", e))?;
    }
    let status: Vec<(String, String)> = conn
        .query("SHOW STATUS LIKE 'binlog_snapshot_%'")
        .await
        .map_err(|e| query_error("reading binlog_snapshot_file/position", e))?;
    let get = |name: &str| {
        status
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let (Some(file), Some(pos)) = (get("binlog_snapshot_file"), get("binlog_snapshot_position"))
    else {
        return Err(SourceError::Precondition(
            "the server reports no binlog_snapshot_file/position (MariaDB does); consistent \
             snapshots of MySQL servers are not supported yet"
                .into(),
        ));
    };
    let pos: u32 = pos.parse().map_err(|_| {
        SourceError::Precondition(format!("binlog_snapshot_position {pos:?} is not a number"))
    })?;
    // The GTID state at the same point, so the stream can also resume by GTID.
    let gtid = if gtid {
        gtid_at(conn, &file, u64::from(pos)).await
    } else {
        None
    };
    Ok(Position {
        file,
        pos: u64::from(pos),
        gtid,
    })
}

/// What every copier of a snapshot shares.
#[derive(Clone)]
struct Shared {
    out: mpsc::Sender<Copied>,
    shutdown: CancellationToken,
    /// Where streaming starts for the tables; stored in their progress.
    origin: Position,
    server_id: u32,
    chunk_rows: u64,
    paced: bool,
    /// The rate limit is the whole snapshot's.
    throttle: Arc<tokio::sync::Mutex<Throttle>>,
}

/// One consistent read's copying: tables taken from the shared queue one at a time.
struct Copier {
    conn: Conn,
    at: Position,
    version: Version,
    source: SourceInfo,
    shared: Shared,
    zero_dates: u64,
}

impl Copier {
    /// A copier of the transaction open on `conn` at `at`.
    fn new(conn: Conn, at: Position, shared: Shared) -> Result<Copier, SourceError> {
        let seq = binlog_file_sequence(&at.file).ok_or_else(|| {
            SourceError::Precondition(format!(
                "binlog file {:?} has no numeric sequence suffix",
                at.file
            ))
        })?;
        Ok(Copier {
            conn,
            // Every later change sits past this point, so its version orders the rows read
            // here before them.
            version: Version::at(seq, at.pos as u32),
            source: SourceInfo::snapshot_read(&at.file, at.pos, shared.server_id, time::now_ms()),
            at,
            shared,
            zero_dates: 0,
        })
    }

    /// Copies tables from `queue` until it is empty, then ends the transaction; the zero dates
    /// made null, or `None` if `shutdown` interrupted it.
    async fn run(mut self, queue: &Mutex<VecDeque<Pending>>) -> Result<Option<u64>, SourceError> {
        loop {
            let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
            let Some(pending) = next else { break };
            if !self.table(&pending).await? {
                return Ok(None);
            }
            send(&self.shared.out, Copied::Table).await?;
        }
        self.conn
            .query_drop("COMMIT")
            .await
            .map_err(|e| query_error("ending the snapshot transaction", e))?;
        // Closed before the copier reports its end, so a user at its connection limit has
        // this one back when streaming connects.
        self.conn
            .disconnect()
            .await
            .map_err(|e| query_error("closing a snapshot connection", e))?;
        Ok(Some(self.zero_dates))
    }

    /// Copies one table chunk by chunk; false if `shutdown` interrupted it.
    async fn table(&mut self, pending: &Pending) -> Result<bool, SourceError> {
        let table = &pending.table;
        let out = self.shared.out.clone();
        let mut progress = pending.progress.clone().unwrap_or(SnapshotProgress {
            position: self.shared.origin.clone(),
            last_key: Vec::new(),
            rows: 0,
            chunks: 0,
        });
        let chunked = keyset_able(table);
        if !chunked {
            tracing::warn!(table = %table.id, "snapshot: the key has a type that cannot be paged in key order (ENUM, SET, FLOAT, DOUBLE, BIT, JSON, GEOMETRY); copying the table in one piece, which a restart repeats");
        }
        let estimate = estimated_rows(&mut self.conn, &table.id).await;
        tracing::info!(table = %table.id, position = %self.at, estimated_rows = estimate, resuming_after_rows = progress.rows, "snapshot: copying table");
        let rows_before = progress.rows;
        let mut report = Progress::start("snapshot", &table.id, estimate, rows_before);
        let mut chunks_here = 0u64;
        let paced = self.shared.paced;
        loop {
            let (sql, params) = chunk_query(
                table,
                &progress.last_key,
                None,
                chunked.then_some(self.shared.chunk_rows),
            );
            // A prepared statement, so values arrive typed (binary protocol), row by row.
            let mut result = self
                .conn
                .exec_iter(sql, params)
                .await
                .map_err(|e| query_error("reading a table for the snapshot", e))?;
            let mut rows = result
                .stream::<mysql_async::Row>()
                .await
                .map_err(|e| query_error("reading a table for the snapshot", e))?
                .ok_or_else(|| {
                    SourceError::Precondition("snapshot query returned no result set".into())
                })?;
            let mut batch = Vec::with_capacity(BATCH);
            let mut batch_bytes = 0;
            let mut in_chunk = 0u64;
            while let Some(row) = rows.next().await {
                let row = row.map_err(|e| query_error("reading a table for the snapshot", e))?;
                if paced
                    && !self
                        .shared
                        .throttle
                        .lock()
                        .await
                        .admit(1, &self.shared.shutdown)
                        .await
                {
                    return Ok(false);
                }
                let change = Change {
                    table: table.clone(),
                    op: Op::Read,
                    before: None,
                    after: Some(convert(table, row, &mut self.zero_dates)?),
                    version: self.version,
                    source: self.source.clone(),
                };
                batch_bytes += change.bytes();
                batch.push(change);
                in_chunk += 1;
                if batch.len() == BATCH || batch_bytes >= BATCH_BYTES {
                    if self.shared.shutdown.is_cancelled() {
                        return Ok(false);
                    }
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    progress.last_key = last_key(table, &full);
                    send(
                        &out,
                        Copied::Changes(full, std::mem::take(&mut batch_bytes)),
                    )
                    .await?;
                }
            }
            drop(rows);
            drop(result);
            if !batch.is_empty() {
                progress.last_key = last_key(table, &batch);
                send(&out, Copied::Changes(batch, batch_bytes)).await?;
            }
            if in_chunk > 0 && chunked {
                progress.rows += in_chunk;
                progress.chunks += 1;
                chunks_here += 1;
                send(
                    &out,
                    Copied::Chunk(Checkpoint::Chunk {
                        table: table.id.clone(),
                        progress: progress.clone(),
                    }),
                )
                .await?;
            } else {
                progress.rows += in_chunk;
            }
            report.update(progress.rows);
            if !chunked || in_chunk < self.shared.chunk_rows {
                break;
            }
            if self.shared.shutdown.is_cancelled() {
                return Ok(false);
            }
        }
        report.finish(true);
        tracing::info!(table = %table.id, rows = progress.rows, rows_this_run = progress.rows - rows_before, chunks_this_run = chunks_here, "snapshot: table copied");
        Ok(true)
    }
}

/// Hands `item` to the coordinator.
async fn send(out: &mpsc::Sender<Copied>, item: Copied) -> Result<(), SourceError> {
    out.send(item).await.map_err(|_| SourceError::Downstream)
}

/// The key of the last row of `batch`.
fn last_key(table: &TableSchema, batch: &[Change]) -> Vec<Value> {
    let row = batch.last().and_then(|c| c.after.as_ref());
    row.map(|r| table.key_values(r).cloned().collect())
        .unwrap_or_default()
}
