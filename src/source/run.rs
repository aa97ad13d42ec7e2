//! The source's start: check the server, resolve tables, snapshot what needs it, then stream.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::startup::{self, TableStart};
use super::{Capture, Emitter, SourceError, incremental, mysql, snapshot, stream};
use crate::config::{InitialSnapshot, SourceConfig};
use crate::model::{Checkpoint, EventSender};
use crate::positions::PositionStore;

/// Runs the source until `shutdown` or an error.
pub async fn run(
    cfg: &SourceConfig,
    capture: Capture,
    state: &PositionStore,
    tx: EventSender,
    shutdown: CancellationToken,
) -> Result<(), SourceError> {
    let Some(mut conn) = mysql::connect_waiting(cfg, &shutdown).await? else {
        return Ok(());
    };
    let server = mysql::check_server(&mut conn).await?;
    let collations = mysql::collations(&mut conn).await?;
    let mut tables = mysql::resolve_tables(&mut conn, &capture.include, &capture.exclude).await?;
    // Its rows are Sluice's own signals, read from the binlog but never published.
    tables.retain(|t| *t != cfg.signal_table);
    if tables.is_empty() {
        let patterns: Vec<String> = capture.include.iter().map(|p| p.to_string()).collect();
        return Err(SourceError::NothingToCapture {
            patterns: patterns.join(", "),
        });
    }
    tracing::info!(tables = ?tables.iter().map(|t| t.to_string()).collect::<Vec<_>>(), "capturing");
    let mut out = Emitter::new(tx, capture.columns);
    let signal = incremental::signal_schema(&mut conn, cfg).await?;
    let mut stored = state.position()?;
    // A first run copies in windows when asked to, or on servers that report no position
    // for a consistent read (MySQL): streaming starts now, and the windows run alongside.
    let windowed = stored.is_none()
        && (cfg.initial_snapshot == InitialSnapshot::Incremental
            || !mysql::reports_snapshot_position(&mut conn).await?);
    if windowed {
        startup::check_windowed_first_run(signal.is_some(), &cfg.signal_table)?;
        let now = mysql::current_position(&mut conn).await?;
        tracing::info!(position = %now, "first run: streaming from the current position, tables copied in windows alongside");
        // Stored at once (nothing precedes it), so a restart never starts later than this.
        out.checkpoint(Checkpoint::Stream(now.clone())).await?;
        stored = Some(now);
    }
    // Incremental snapshots left unfinished, then tables added to a setup that has streamed:
    // with a signal table they are copied in windows while streaming goes on.
    let (mut queued, left) = startup::resumable_windows(state.windows()?, &tables);
    for (table, progress) in left {
        tracing::warn!(%table, id = %progress.id, "an unfinished incremental snapshot of a table no longer captured is left as it is");
    }
    let (mut schemas, mut pending) = (Vec::new(), Vec::new());
    let mut keys = capture.keys;
    for t in &tables {
        let schema = Arc::new(mysql::captured_schema(&mut conn, t, &mut keys).await?);
        out.check_columns(&schema)?;
        let progress = state.progress(t)?;
        let copied = state.is_snapshotted(t)? || queued.iter().any(|(q, _)| q == t);
        match startup::table_start(
            copied,
            stored.is_some(),
            signal.is_some(),
            progress.is_some(),
        ) {
            TableStart::Copied => {}
            TableStart::InWindows => {
                tracing::info!(table = %t, first_run = windowed, "snapshotting the table in windows while streaming");
                queued.push((t.clone(), incremental::added_table_request(t)));
            }
            TableStart::Snapshot { pauses_streaming } => {
                if pauses_streaming {
                    tracing::warn!(table = %t, signal_table = %cfg.signal_table, "table added to the config, and no signal table: streaming pauses while it is snapshotted; `sluice setup` creates the signal table");
                }
                pending.push(snapshot::Pending {
                    table: schema.clone(),
                    progress,
                });
            }
        }
        schemas.push(schema);
    }
    let mut start = stored;
    // The connection is the snapshot's first; streaming needs none of its own.
    if pending.is_empty() {
        drop(conn);
    } else {
        let tables = pending.iter().map(|p| p.table.id.clone()).collect();
        let Some(position) =
            snapshot::run(conn, cfg, pending, server.server_id, &mut out, &shutdown).await?
        else {
            return Ok(());
        };
        out.checkpoint(Checkpoint::Snapshot {
            tables,
            position: position.clone(),
        })
        .await?;
        // Tables added later stream from the older stored position; the snapshot's versions
        // order its rows correctly against the changes read again from there.
        start.get_or_insert(position);
    }
    let start = start.ok_or_else(|| {
        SourceError::Precondition(format!(
            "the state store at {} marks every table snapshotted but holds no position; it is \
             damaged: delete it to re-snapshot",
            cfg.state_dir.display()
        ))
    })?;
    let (mut windows, worker) = match signal {
        Some(signal) => {
            let signal = Arc::new(signal);
            schemas.push(signal.clone());
            let worker = incremental::WorkerConfig {
                source: Arc::new(cfg.clone()),
                keys: keys.clone(),
            };
            let (w, worker) =
                incremental::pair(signal, tables.into_iter().collect(), worker, queued);
            (Some(w), Some(worker))
        }
        None => {
            tracing::info!(signal_table = %cfg.signal_table, "no signal table: incremental snapshots are off (`sluice setup` creates it)");
            (None, None)
        }
    };
    let decoding = stream::Decoding {
        current: schemas,
        keys,
        collations,
        checksums: server.checksums,
    };
    let sink = stream::StreamOutput {
        out: &mut out,
        windows: windows.as_mut(),
    };
    let streaming = stream::run(cfg, start, decoding, state, sink, &shutdown);
    match worker {
        Some(worker) => futures_util::future::try_join(streaming, worker.run(shutdown.clone()))
            .await
            .map(|_| ()),
        None => streaming.await,
    }
}
