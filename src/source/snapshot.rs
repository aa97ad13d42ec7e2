//! The initial snapshot: the rows of the tables that have none yet, read in one consistent
//! transaction whose binlog position the server reports, in chunks by key (keyset
//! pagination), each chunk's end stored once Kafka has it, so a restart continues after the
//! last stored chunk instead of starting over.
//!
//! A continued snapshot reads at a newer point than the one streaming starts from (the first
//! run's); its rows carry the newer point's version, so the changes streamed again from the
//! older point, which are older still, lose to them in the index, and everything after
//! follows as usual.

use std::sync::Arc;

use futures_util::StreamExt;
use mysql_async::Conn;
use mysql_async::prelude::*;
use tokio_util::sync::CancellationToken;

use super::mysql::{estimated_rows, gtid_at, query_error};
use super::progress::Progress;
use super::select::{chunk_query, convert, keyset_able};
use super::throttle::Throttle;
use super::{Emitter, SourceError};
use crate::metrics::metrics;
use crate::model::{
    Change, Checkpoint, Op, Position, SnapshotProgress, SourceInfo, TableSchema, Value, Version,
    binlog_file_sequence, time,
};

/// Rows per message to the publisher.
const BATCH: usize = 512;

/// A table to copy, and how far an earlier run got.
pub struct Pending {
    /// The table.
    pub table: Arc<TableSchema>,
    /// Progress stored by an interrupted run.
    pub progress: Option<SnapshotProgress>,
}

/// Copies `tables` and returns the position streaming starts from for them (the first run's
/// point when continuing), or `None` if `shutdown` interrupted it.
pub async fn run(
    conn: &mut Conn,
    tables: &[Pending],
    server_id: u32,
    chunk_rows: u64,
    throttle: Throttle,
    out: &mut Emitter,
    shutdown: &CancellationToken,
) -> Result<Option<Position>, SourceError> {
    let position = consistent_point(conn).await?;
    let seq = binlog_file_sequence(&position.file).ok_or_else(|| {
        SourceError::Precondition(format!(
            "binlog file {:?} has no numeric sequence suffix",
            position.file
        ))
    })?;
    // Every later change sits past this point, so its version orders the rows read here
    // before them.
    let version = Version::at(seq, position.pos as u32);
    let origin = tables
        .iter()
        .find_map(|p| p.progress.as_ref().map(|p| p.position.clone()))
        .unwrap_or_else(|| position.clone());
    let source = SourceInfo::snapshot_read(&position.file, position.pos, server_id, time::now_ms());
    let mut copier = Copier {
        conn,
        out,
        shutdown,
        version,
        source,
        origin: origin.clone(),
        chunk_rows,
        throttle,
        zero_dates: 0,
    };
    let s = &metrics().snapshot;
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    s.tables
        .with_label_values(&["initial"])
        .set(count(tables.len()));
    for (i, pending) in tables.iter().enumerate() {
        s.tables_remaining
            .with_label_values(&["initial"])
            .set(count(tables.len() - i));
        if !copier.table(pending, &position).await? {
            return Ok(None);
        }
    }
    s.tables_remaining.with_label_values(&["initial"]).set(0);
    if copier.zero_dates > 0 {
        tracing::warn!(
            count = copier.zero_dates,
            "snapshot: zero or impossible dates became null"
        );
    }
    conn.query_drop("COMMIT")
        .await
        .map_err(|e| query_error("ending the snapshot transaction", e))?;
    Ok(Some(origin))
}

/// Opens the consistent read and returns the binlog position it sees.
async fn consistent_point(conn: &mut Conn) -> Result<Position, SourceError> {
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
    let gtid = gtid_at(conn, &file, u64::from(pos)).await;
    Ok(Position {
        file,
        pos: u64::from(pos),
        gtid,
    })
}

/// One snapshot transaction's copying.
struct Copier<'a> {
    conn: &'a mut Conn,
    out: &'a mut Emitter,
    shutdown: &'a CancellationToken,
    version: Version,
    source: SourceInfo,
    origin: Position,
    chunk_rows: u64,
    throttle: Throttle,
    zero_dates: u64,
}

impl Copier<'_> {
    /// Copies one table chunk by chunk; false if `shutdown` interrupted it.
    async fn table(&mut self, pending: &Pending, at: &Position) -> Result<bool, SourceError> {
        let table = &pending.table;
        let mut progress = pending.progress.clone().unwrap_or(SnapshotProgress {
            position: self.origin.clone(),
            last_key: Vec::new(),
            rows: 0,
            chunks: 0,
        });
        let chunked = keyset_able(table);
        if !chunked {
            tracing::warn!(table = %table.id, "snapshot: the key has a type that cannot be paged in key order (ENUM, SET, FLOAT, DOUBLE, BIT, JSON, GEOMETRY); copying the table in one piece, which a restart repeats");
        }
        let estimate = estimated_rows(self.conn, &table.id).await;
        tracing::info!(table = %table.id, position = %at, estimated_rows = estimate, resuming_after_rows = progress.rows, "snapshot: copying table");
        let rows_before = progress.rows;
        let mut report = Progress::start("snapshot", &table.id, estimate, rows_before);
        let mut chunks_here = 0u64;
        let paced = self.throttle.is_paced();
        loop {
            let (sql, params) = chunk_query(
                table,
                &progress.last_key,
                None,
                chunked.then_some(self.chunk_rows),
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
            let mut in_chunk = 0u64;
            while let Some(row) = rows.next().await {
                let row = row.map_err(|e| query_error("reading a table for the snapshot", e))?;
                if paced && !self.throttle.admit(1, self.shutdown).await {
                    return Ok(false);
                }
                let values = convert(table, row.unwrap(), &mut self.zero_dates)?;
                batch.push(Change {
                    table: table.clone(),
                    op: Op::Read,
                    before: None,
                    after: Some(values),
                    version: self.version,
                    source: self.source.clone(),
                });
                in_chunk += 1;
                if batch.len() == BATCH {
                    if self.shutdown.is_cancelled() {
                        return Ok(false);
                    }
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    progress.last_key = last_key(table, &full);
                    self.out.changes(full, None).await?;
                }
            }
            drop(rows);
            drop(result);
            if !batch.is_empty() {
                progress.last_key = last_key(table, &batch);
                self.out.changes(batch, None).await?;
            }
            if in_chunk > 0 && chunked {
                progress.rows += in_chunk;
                progress.chunks += 1;
                chunks_here += 1;
                self.out
                    .checkpoint(Checkpoint::Chunk {
                        table: table.id.clone(),
                        progress: progress.clone(),
                    })
                    .await?;
            } else {
                progress.rows += in_chunk;
            }
            report.update(progress.rows);
            if !chunked || in_chunk < self.chunk_rows {
                break;
            }
            if self.shutdown.is_cancelled() {
                return Ok(false);
            }
        }
        report.finish(true);
        tracing::info!(table = %table.id, rows = progress.rows, rows_this_run = progress.rows - rows_before, chunks_this_run = chunks_here, "snapshot: table copied");
        Ok(true)
    }
}

/// The key of the last row of `batch`.
fn last_key(table: &TableSchema, batch: &[Change]) -> Vec<Value> {
    let row = batch.last().and_then(|c| c.after.as_ref());
    row.map(|r| table.key_values(r).cloned().collect())
        .unwrap_or_default()
}
