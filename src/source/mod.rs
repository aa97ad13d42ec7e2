//! Stage 1, the source: MySQL/MariaDB -> typed row changes.
//!
//! On start it checks the server, snapshots the configured tables that have no snapshot yet,
//! then streams the binlog from the stored position (or from the snapshot's point on the first
//! run). Its only output is [`SourceEvent`]s on a channel: row changes in binlog order and
//! checkpoints that are safe to resume from once everything before them is acknowledged.

pub mod binlog;
pub mod charset;
pub mod filter;
pub mod incremental;
pub mod mysql;
pub mod progress;
pub mod snapshot;
pub mod stream;
pub mod throttle;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{InitialSnapshot, SourceConfig, TablePattern};
use crate::model::{Change, Checkpoint, Position, TableId, WindowProgress};
use crate::state::{State, StateError};
use binlog::BinlogError;
use filter::{ColumnFilter, KeyFilterError};

/// What the source hands to the publisher.
#[derive(Debug)]
pub enum SourceEvent {
    /// Row changes, in binlog order.
    Changes(Vec<Change>),
    /// Everything sent before this is a complete prefix of the binlog up to the checkpoint.
    Checkpoint(Checkpoint),
}

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
    tx: mpsc::Sender<SourceEvent>,
    columns: ColumnFilter,
}

impl Emitter {
    /// Sends changes, filtered.
    pub async fn changes(&mut self, mut changes: Vec<Change>) -> Result<(), SourceError> {
        self.columns.apply(&mut changes)?;
        self.send(SourceEvent::Changes(changes)).await
    }

    /// Sends a checkpoint.
    pub async fn checkpoint(&self, checkpoint: Checkpoint) -> Result<(), SourceError> {
        self.send(SourceEvent::Checkpoint(checkpoint)).await
    }

    async fn send(&self, event: SourceEvent) -> Result<(), SourceError> {
        self.tx
            .send(event)
            .await
            .map_err(|_| SourceError::Downstream)
    }
}

/// Why the source stopped.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The server could not be reached or refused the login.
    #[error(
        "cannot connect to MySQL/MariaDB at {addr} as {user}: {source}; check source.host, \
         source.port, source.user and the password, source.tls and source.tls_ca_file (a user \
         created with REQUIRE SSL needs TLS), and that the server is running"
    )]
    Connect {
        /// host:port.
        addr: String,
        /// User name.
        user: String,
        /// Driver error.
        source: mysql_async::Error,
    },
    /// The server is not configured for row-based CDC.
    #[error("{0}")]
    Precondition(String),
    /// The user lacks a privilege.
    #[error(
        "{what}: {message}; grant the Sluice user SELECT, REPLICATION SLAVE and REPLICATION \
         CLIENT (BINLOG MONITOR on MariaDB), e.g. GRANT SELECT, REPLICATION SLAVE, REPLICATION \
         CLIENT ON *.* TO 'sluice'@'%'"
    )]
    Privilege {
        /// What Sluice tried.
        what: &'static str,
        /// The server's message.
        message: String,
    },
    /// A query failed.
    #[error("{what}: {source}")]
    Query {
        /// What Sluice tried.
        what: &'static str,
        /// Driver error.
        source: mysql_async::Error,
    },
    /// A configured table does not exist.
    #[error(
        "table {0} does not exist, or the Sluice user cannot see it; create it, grant SELECT \
         on it, or remove it from `tables`"
    )]
    TableMissing(TableId),
    /// A configured table has a column type Sluice does not decode.
    #[error(
        "table {table}: column `{column}` has type {type_name}, which Sluice cannot decode; \
         remove the table from `tables` or change the column's type"
    )]
    Unsupported {
        /// Table.
        table: TableId,
        /// Column.
        column: String,
        /// SQL type.
        type_name: String,
    },
    /// A configured table has no primary key.
    #[error(
        "table {0} has no primary key and no unique key over NOT NULL columns, and records are \
         keyed by one; add one, name its key columns under [keys] in the config (e.g. \"{0}\" \
         = [\"col\"]), or remove the table from `tables`"
    )]
    NoPrimaryKey(TableId),
    /// A configured key names a column the table does not have.
    #[error("`keys`: table {table} has no column `{column}`; fix the key under [keys]")]
    KeyColumnMissing {
        /// Table.
        table: TableId,
        /// The missing column.
        column: String,
    },
    /// A column rule would remove a table's key.
    #[error(transparent)]
    Filter(#[from] KeyFilterError),
    /// No table matches the configured patterns.
    #[error(
        "no table matches `tables` {patterns} (minus `exclude_tables`); check the patterns and \
         that the Sluice user can see the tables"
    )]
    NothingToCapture {
        /// The patterns, as configured.
        patterns: String,
    },
    /// A snapshot row holds a value the column type does not allow.
    #[error("snapshot of {table}: column `{column}`: {message}")]
    SnapshotValue {
        /// Table.
        table: TableId,
        /// Column.
        column: String,
        /// What is wrong.
        message: String,
    },
    /// The binlog could not be decoded.
    #[error(transparent)]
    Binlog(#[from] BinlogError),
    /// An event failed its CRC32.
    #[error(
        "binlog event ending at {log_pos} failed its CRC32 check (stored {stored:#010x}, \
         computed {computed:#010x}); the stream is corrupt, nothing after the last commit was \
         used; restart to read it again"
    )]
    Checksum {
        /// End position of the event.
        log_pos: u32,
        /// Checksum in the event.
        stored: u32,
        /// Checksum of the bytes received.
        computed: u32,
    },
    /// The binlog needed to resume is gone.
    #[error(
        "the server no longer has the binlog needed to resume at {position} ({message}); \
         changes since then are lost to Sluice: stop it, delete `source.state_dir` and the \
         target indexes, and start again to re-snapshot"
    )]
    Purged {
        /// The stored position.
        position: Position,
        /// The server's message.
        message: String,
    },
    /// The server closed the stream.
    #[error("the server ended the binlog stream")]
    StreamEnded,
    /// Neither an event nor a heartbeat arrived for this many seconds.
    #[error("no binlog event or heartbeat for {0} s; the connection is presumed dead")]
    Silent(u64),
    /// The position store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The publisher stopped first; its error is the one to read.
    #[error("the publisher stopped")]
    Downstream,
}

impl SourceError {
    /// Whether this is a lost connection that reconnecting can cure, as opposed to a refusal
    /// (credentials, privileges, purged binlog) or bad data, which reconnecting would repeat.
    pub fn is_connection_loss(&self) -> bool {
        match self {
            SourceError::StreamEnded | SourceError::Silent(_) => true,
            SourceError::Connect { source, .. } | SourceError::Query { source, .. } => {
                is_transient(source)
            }
            _ => false,
        }
    }
}

fn is_transient(e: &mysql_async::Error) -> bool {
    use mysql_async::{DriverError, Error};
    match e {
        Error::Io(_) => true,
        Error::Driver(d) => matches!(
            d,
            DriverError::ConnectionClosed | DriverError::PacketOutOfOrder
        ),
        // Server shutdown, network read/write failures, connection killed, gone away, lost.
        Error::Server(s) => matches!(s.code, 1053 | 1077 | 1158..=1161 | 1927 | 2006 | 2013),
        _ => false,
    }
}

/// Runs the source until `shutdown` or an error.
pub async fn run(
    cfg: &SourceConfig,
    capture: Capture,
    state: &State,
    tx: mpsc::Sender<SourceEvent>,
    shutdown: CancellationToken,
) -> Result<(), SourceError> {
    let mut conn = mysql::connect(cfg).await?;
    let server = mysql::check_server(&mut conn).await?;
    let collations = mysql::collations(&mut conn).await?;
    let mut tables = mysql::resolve_tables(&mut conn, &capture.include, &capture.exclude).await?;
    // Its rows are Sluice's own signals, read from the binlog but never published.
    tables.retain(|t| *t != cfg.signal_table());
    if tables.is_empty() {
        let patterns: Vec<String> = capture.include.iter().map(|p| p.to_string()).collect();
        return Err(SourceError::NothingToCapture {
            patterns: patterns.join(", "),
        });
    }
    tracing::info!(tables = ?tables.iter().map(|t| t.to_string()).collect::<Vec<_>>(), "capturing");
    let mut out = Emitter {
        tx,
        columns: capture.columns,
    };
    let signal = incremental::signal_schema(&mut conn, cfg).await?;
    let mut stored = state.position()?;
    // A first run copies in windows when asked to, or on servers that report no position
    // for a consistent read (MySQL): streaming starts now, and the windows run alongside.
    let windowed = stored.is_none()
        && (cfg.initial_snapshot == InitialSnapshot::Incremental
            || !mysql::reports_snapshot_position(&mut conn).await?);
    if windowed {
        if signal.is_none() {
            return Err(SourceError::Precondition(format!(
                "the first snapshot is to run in windows while streaming (source.initial_snapshot \
                 = \"incremental\", or a MySQL server, which reports no position for a \
                 consistent read), and that needs the signal table {}: create it with `sluice \
                 setup`",
                cfg.signal_table
            )));
        }
        let now = mysql::current_position(&mut conn).await?;
        tracing::info!(position = %now, "first run: streaming from the current position, tables copied in windows alongside");
        // Stored at once (nothing precedes it), so a restart never starts later than this.
        out.checkpoint(Checkpoint::Stream(now.clone())).await?;
        stored = Some(now);
    }
    // Incremental snapshots left unfinished, then tables added to a setup that has streamed:
    // with a signal table they are copied in windows while streaming goes on.
    let mut queued: Vec<(TableId, WindowProgress)> = Vec::new();
    for (table, progress) in state.windows()? {
        if tables.contains(&table) {
            queued.push((table, progress));
        } else {
            tracing::warn!(%table, id = %progress.id, "an unfinished incremental snapshot of a table no longer captured is left as it is");
        }
    }
    let (mut schemas, mut pending) = (Vec::new(), Vec::new());
    let mut keys = capture.keys;
    for t in &tables {
        let schema = match mysql::table_schema(&mut conn, t, keys.get(t).map(Vec::as_slice)).await {
            Err(SourceError::NoPrimaryKey(_)) if !keys.contains_key(t) => {
                let Some(unique) = mysql::unique_key(&mut conn, t).await? else {
                    return Err(SourceError::NoPrimaryKey(t.clone()));
                };
                tracing::info!(table = %t, key = ?unique, "no primary key: records are keyed by a unique key over NOT NULL columns");
                let schema = mysql::table_schema(&mut conn, t, Some(&unique)).await?;
                keys.insert(t.clone(), unique);
                schema
            }
            other => other?,
        };
        let schema = Arc::new(schema);
        out.columns.check(&schema)?;
        let progress = state.progress(t)?;
        let copied = state.is_snapshotted(t)? || queued.iter().any(|(q, _)| q == t);
        if !copied && stored.is_some() && signal.is_some() && progress.is_none() {
            tracing::info!(table = %t, first_run = windowed, "snapshotting the table in windows while streaming");
            queued.push((t.clone(), incremental::added_table_request(t)));
        } else if !copied {
            if stored.is_some() && progress.is_none() {
                tracing::warn!(table = %t, signal_table = %cfg.signal_table, "table added to the config, and no signal table: streaming pauses while it is snapshotted; `sluice setup` creates the signal table");
            }
            pending.push(snapshot::Pending {
                table: schema.clone(),
                progress,
            });
        }
        schemas.push(schema);
    }
    let mut start = stored;
    if !pending.is_empty() {
        let Some(position) = snapshot::run(
            &mut conn,
            &pending,
            server.server_id,
            cfg.snapshot_chunk_rows,
            throttle::Throttle::new(cfg.snapshot_max_rows_per_sec),
            &mut out,
            &shutdown,
        )
        .await?
        else {
            return Ok(());
        };
        let tables = pending.iter().map(|p| p.table.id.clone()).collect();
        out.checkpoint(Checkpoint::Snapshot {
            tables,
            position: position.clone(),
        })
        .await?;
        // Tables added later stream from the older stored position; the snapshot's versions
        // order its rows correctly against the changes read again from there.
        start.get_or_insert(position);
    }
    drop(conn);
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
    let sink = stream::Sink {
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
