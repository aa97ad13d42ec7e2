//! The binlog stream: mysql_async carries COM_BINLOG_DUMP; every event is checksummed and
//! handed to the pure [`BinlogReader`].

use futures_util::StreamExt;
use mysql_async::prelude::*;
use mysql_async::{BinlogStreamRequest, GnoInterval, Sid};
use mysql_common::packets::Tag;
use tokio_util::sync::CancellationToken;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::binlog::{BinlogReader, Decoded, EventHeader, NameChange};
use super::charset::Collations;
use super::incremental::Windows;
use super::mysql::{connect, gtid_at, query_error};
use super::{Emitter, SourceError};
use crate::config::{ResumeBy, SourceConfig};
use crate::metrics::metrics;
use crate::model::time;
use crate::model::{
    Change, Checkpoint, GtidState, Op, Position, SourceEvent, TableId, TableSchema, Version,
    binlog_file_sequence,
};
use crate::positions::PositionStore;
use crate::retry::Backoff;

/// The server sends a heartbeat after this much silence, so a dead connection shows.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// No event and no heartbeat for this long: the connection is presumed dead.
const SILENCE: Duration = Duration::from_secs(20);

/// What the stream decodes with; a fresh [`BinlogReader`] is built from it on every
/// (re)connection, since a reconnect replays the transaction that was cut off.
pub struct Decoding {
    /// Tables to capture, with their schemas in information_schema when Sluice started: a
    /// table's schema at the resume point when the schema history has none.
    pub current: Vec<Arc<TableSchema>>,
    /// Configured key columns, replacing primary keys.
    pub keys: HashMap<TableId, Vec<String>>,
    /// The server's collations.
    pub collations: Collations,
    /// Whether events carry a CRC32.
    pub checksums: bool,
}

/// Where the stream's changes go: through the incremental snapshots' windows, if any, to the
/// emitter.
pub struct StreamOutput<'a> {
    /// The source's output.
    pub out: &'a mut Emitter,
    /// The stream's half of incremental snapshots; `None` without a signal table.
    pub windows: Option<&'a mut Windows>,
}

impl StreamOutput<'_> {
    /// An `ALTER TABLE` (the event ending at `at`) gave captured `table` a column: with
    /// `source.resnapshot_on_add_column` the table is copied again in windows, so every
    /// document gets the column; the request is stored with the ALTER's position, so a restart
    /// that reads the ALTER again does not repeat a finished copy.
    async fn column_added(
        &mut self,
        cfg: &SourceConfig,
        table: TableId,
        at: &str,
        state: &PositionStore,
    ) -> Result<(), SourceError> {
        if !cfg.resnapshot_on_add_column {
            tracing::info!(%table, "a column was added: rows that do not change keep documents without it (source.resnapshot_on_add_column copies the table again)");
            return Ok(());
        }
        self.copy_again(cfg, table, &format!("add-column@{at}"), state)
            .await
    }

    /// A DROP or RENAME (the event ending at `at`) changed captured names. Another table
    /// taking a captured name may have other columns and rows than the index holds: with
    /// `source.resnapshot_on_add_column` it is copied, as after an added column.
    async fn names_changed(
        &mut self,
        cfg: &SourceConfig,
        changes: Vec<NameChange>,
        at: &str,
        state: &PositionStore,
    ) -> Result<(), SourceError> {
        for change in changes {
            match change {
                NameChange::Dropped(table) => {
                    tracing::warn!(%table, "a captured table was dropped: no changes come from it any more; its topic and index keep what they hold (delete them if it is gone for good); a restart fails until the table exists again or leaves `tables`")
                }
                NameChange::RenamedAway { table, to } => {
                    tracing::warn!(%table, renamed_to = %to, "a captured table was renamed: its changes under the new name are captured only if `tables` matches it, from the next start; its topic and index keep what they hold")
                }
                NameChange::Replaced { table, by } if cfg.resnapshot_on_add_column => {
                    tracing::info!(%table, renamed_from = %by, "another table took a captured table's name (as an online schema change's cut-over does): changes under the name go on, and the table is copied again (source.resnapshot_on_add_column); documents of rows only the old table had stay until `sluice verify --repair` deletes them");
                    self.copy_again(cfg, table, &format!("rename@{at}"), state)
                        .await?;
                }
                NameChange::Replaced { table, by } => {
                    tracing::info!(%table, renamed_from = %by, "another table took a captured table's name (as an online schema change's cut-over does): changes under the name go on; if its rows differ from the index, run `sluice snapshot --table` (or set source.resnapshot_on_add_column) to copy it again")
                }
            }
        }
        Ok(())
    }

    /// Requests an incremental snapshot of `table` as `id`, stored so that reading the
    /// statement again after a restart does not repeat a finished copy.
    async fn copy_again(
        &mut self,
        cfg: &SourceConfig,
        table: TableId,
        id: &str,
        state: &PositionStore,
    ) -> Result<(), SourceError> {
        let Some(windows) = self.windows.as_deref_mut() else {
            tracing::warn!(%table, signal_table = %cfg.signal_table, "source.resnapshot_on_add_column needs the signal table to copy the table again; `sluice setup` creates it");
            return Ok(());
        };
        let mut out = Vec::new();
        windows.request(id, table, None, state, &mut out)?;
        for event in out {
            if let SourceEvent::Checkpoint(cp) = event {
                self.out.checkpoint(cp).await?;
            }
        }
        Ok(())
    }

    /// Sends one decoded batch on, recording new schemas in the history first.
    async fn send(
        &mut self,
        changes: Vec<Change>,
        read: Instant,
        history: &mut SchemaHistory<'_>,
        state: &PositionStore,
    ) -> Result<(), SourceError> {
        let events = match self.windows.as_deref_mut() {
            Some(w) => w.absorb(changes, read, state)?,
            None => vec![SourceEvent::Changes {
                changes,
                read: Some(read),
            }],
        };
        for event in events {
            match event {
                SourceEvent::Changes { changes, read } => {
                    history.record(&changes)?;
                    self.out.changes(changes, read).await?;
                }
                SourceEvent::Checkpoint(cp) => self.out.checkpoint(cp).await?,
            }
        }
        Ok(())
    }
}

/// Streams from `start` until `shutdown`, sending changes and commit checkpoints to `sink`.
///
/// A lost connection is re-established with jittered backoff, resuming at the last commit
/// read: rows of the transaction that was cut off are sent again with the same versions, so
/// downstream they are harmless repeats; nothing is skipped.
pub async fn run(
    cfg: &SourceConfig,
    start: Position,
    decoding: Decoding,
    state: &PositionStore,
    mut sink: StreamOutput<'_>,
    shutdown: &CancellationToken,
) -> Result<(), SourceError> {
    let mut resume = start;
    let mut backoff = Backoff::default();
    loop {
        let mut progressed = false;
        let error = match stream_from(
            cfg,
            &mut resume,
            &decoding,
            state,
            &mut sink,
            shutdown,
            &mut progressed,
        )
        .await
        {
            Ok(()) => return Ok(()),
            Err(e) if e.is_connection_loss() => e,
            Err(e) => return Err(e),
        };
        let m = metrics();
        m.source.connected.set(0);
        m.readiness.streaming.store(false, Ordering::Relaxed);
        m.source.reconnects.inc();
        if progressed {
            backoff.reset();
        }
        let reason = format!("{error} (resuming at {resume})");
        let next = "binlog connection lost; reconnecting from the last commit";
        if !backoff.wait_out(reason, next, shutdown).await {
            return Ok(());
        }
    }
}

/// One connection's worth of streaming; `resume` follows every commit read.
async fn stream_from(
    cfg: &SourceConfig,
    resume: &mut Position,
    decoding: &Decoding,
    state: &PositionStore,
    sink: &mut StreamOutput<'_>,
    shutdown: &CancellationToken,
    progressed: &mut bool,
) -> Result<(), SourceError> {
    let mut history = SchemaHistory::at(state, &decoding.current, resume)?;
    let mut conn = connect(cfg).await?;
    if resume.gtid.is_none() {
        // Positions stored before GTIDs were tracked (or a MySQL server: NULL or an error).
        resume.gtid = gtid_at(&mut conn, &resume.file, resume.pos).await;
    }
    let mut reader = BinlogReader::new(
        resume,
        decoding.current.iter().map(|s| s.id.clone()),
        decoding.collations.clone(),
        decoding.checksums,
    )?
    .with_keys(decoding.keys.clone())
    .with_queries(cfg.include_query)
    .with_schemas(history.seeds(&decoding.current));
    // Capability 4 makes MariaDB send its GTID events instead of downgrading them to BEGIN.
    let setup = format!(
        "SET @mariadb_slave_capability = 4, @master_heartbeat_period = {}",
        HEARTBEAT.as_nanos()
    );
    conn.query_drop(setup)
        .await
        .map_err(|e| query_error("announcing replica capabilities", e))?;
    let start = resume.clone();
    let request = BinlogStreamRequest::new(cfg.server_id.get());
    let request = match (cfg.resume_by, &start.gtid) {
        (ResumeBy::Position, _) => request
            .with_filename(start.file.as_bytes())
            .with_pos(start.pos),
        (ResumeBy::Gtid, Some(gtid)) => match GtidState::parse(gtid) {
            Some(GtidState::MariaDb(_)) => {
                // The server finds the place itself and announces it with a ROTATE event.
                conn.exec_drop("SET @slave_connect_state = ?", (gtid,))
                    .await
                    .map_err(|e| query_error("setting @slave_connect_state", e))?;
                request.with_filename(&b""[..]).with_pos(4u64)
            }
            // COM_BINLOG_DUMP_GTID: the server sends every transaction not in the set.
            Some(GtidState::MySql(set)) => request
                .with_gtid()
                .with_filename(&b""[..])
                .with_pos(4u64)
                .with_gtid_set(set.iter().map(|(uuid, tag, intervals)| {
                    let sid = Sid::new(*uuid).with_intervals(
                        intervals
                            .iter()
                            .map(|&(a, b)| GnoInterval::new(a, b))
                            .collect(),
                    );
                    // A tag Sluice read from the server is one the server accepts.
                    match Tag::new(tag.to_string()) {
                        Ok(t) if !tag.is_empty() => sid.with_tag(t),
                        _ => sid,
                    }
                })),
            None => {
                return Err(SourceError::Precondition(format!(
                    "the GTID state {gtid:?} stored with {start} is neither MariaDB's nor \
                     MySQL's form; set source.resume_by = \"position\""
                )));
            }
        },
        (ResumeBy::Gtid, None) => {
            return Err(SourceError::Precondition(format!(
                "source.resume_by = \"gtid\", but no GTID state is known for {start}: MariaDB \
                 answers BINLOG_GTID_POS for any position, while on MySQL Sluice knows the \
                 executed set only from the next binlog file on (its PREVIOUS_GTIDS event); set \
                 resume_by = \"position\" until then"
            )));
        }
    };
    let mut stream = conn
        .get_binlog_stream(request)
        .await
        .map_err(|e| dump_error(e, &start))?;
    tracing::info!(
        position = %start,
        gtid = start.gtid.as_deref().unwrap_or(""),
        resume_by = ?cfg.resume_by,
        "streaming the binlog"
    );
    let mut tally = Tally::default();
    let m = metrics();
    m.source.connected.set(1);
    m.readiness.streaming.store(true, Ordering::Relaxed);
    let mut zero_dates = CounterLog::new(
        "zero or impossible dates were turned into null (docs/design.md, zero dates)",
        tracing::Level::WARN,
    );
    let mut ignored = CounterLog::new(
        "events of unknown types that the server marked ignorable were skipped, as a replica \
         skips them",
        tracing::Level::INFO,
    );
    let mut unseen_xa = 0;
    let mut skipped = CounterLog::new(
        "control events without row data skipped (statement-based context, annotations, \
         checkpoints)",
        tracing::Level::DEBUG,
    );
    loop {
        let next = tokio::select! {
            next = tokio::time::timeout(SILENCE, stream.next()) => next,
            () = shutdown.cancelled() => return Ok(()),
        };
        let event = match next {
            Ok(Some(Ok(event))) => event,
            Ok(Some(Err(e))) => return Err(dump_error(e, &start)),
            Ok(None) => return Err(SourceError::StreamEnded),
            Err(_) => return Err(SourceError::Silent(SILENCE.as_secs())),
        };
        *progressed = true;
        let read = Instant::now();
        let h = event.header();
        m.source.events.inc();
        m.source.bytes.inc_by(u64::from(h.event_size()));
        tally.behind(h.timestamp(), h.event_type_raw());
        let header = EventHeader {
            timestamp: h.timestamp(),
            event_type: h.event_type_raw(),
            server_id: h.server_id(),
            event_size: h.event_size(),
            log_pos: h.log_pos(),
            flags: h.flags().bits(),
        };
        if let (Some(stored), Ok(Some(alg))) = (event.checksum(), event.footer().get_checksum_alg())
        {
            let computed = event.calc_checksum(alg);
            if computed != u32::from_le_bytes(stored) {
                return Err(SourceError::Checksum {
                    log_pos: header.log_pos,
                    stored: u32::from_le_bytes(stored),
                    computed,
                });
            }
        }
        let decoded = reader.on_event(&header, event.data())?;
        for table in reader.take_added_columns() {
            let at = format!("{}:{}", reader.file(), header.log_pos);
            sink.column_added(cfg, table, &at, state).await?;
        }
        let gone = reader.take_tables_gone();
        if !gone.is_empty() {
            let at = format!("{}:{}", reader.file(), header.log_pos);
            sink.names_changed(cfg, gone, &at, state).await?;
        }
        let (changes, commit) = match decoded {
            Decoded::Nothing => continue,
            Decoded::Changes(changes) => (changes, None),
            Decoded::Commit(p) => (Vec::new(), Some(p)),
            Decoded::Transaction(changes, p) => (changes, Some(p)),
        };
        if !changes.is_empty() {
            zero_dates.report(reader.zero_dates());
            count_changes(&changes);
            for c in changes.iter().filter(|c| c.op == Op::Truncate) {
                tracing::info!(table = %c.table.id, version = c.version.get(), "TRUNCATE TABLE streamed as a truncate event");
            }
            sink.send(changes, read, &mut history, state).await?;
        }
        if let Some(p) = commit {
            m.source.transactions.inc();
            tally.reader(&reader);
            skipped.report(reader.skipped_events());
            ignored.report(reader.ignored_events());
            if let (n, Some(xid)) = reader.unseen_xa_commits()
                && n > unseen_xa
            {
                unseen_xa = n;
                tracing::warn!(
                    %xid, total = n, position = %p,
                    "XA COMMIT of a transaction prepared before the stream started: its rows \
                     precede the start and were not read; re-snapshot the tables it changed \
                     (sluice snapshot --table)"
                );
            }
            *resume = p.clone();
            sink.out.checkpoint(Checkpoint::Stream(p)).await?;
        }
    }
}

/// The schema history: each table's shape is recorded in the state store when the binlog first
/// shows it, so a restart has the schema in force at the resume point (a TRUNCATE carries no
/// table map of its own) and operators can see when a table changed (`sluice schemas`).
struct SchemaHistory<'s> {
    state: &'s PositionStore,
    /// The last schema recorded per table, as of the resume point.
    recorded: HashMap<TableId, Arc<TableSchema>>,
}

impl<'s> SchemaHistory<'s> {
    /// The history as of `resume`.
    fn at(
        state: &'s PositionStore,
        tables: &[Arc<TableSchema>],
        resume: &Position,
    ) -> Result<Self, SourceError> {
        let version = Version::at(
            binlog_file_sequence(&resume.file).unwrap_or(0),
            u32::try_from(resume.pos).unwrap_or(u32::MAX),
        );
        let mut recorded = HashMap::new();
        for t in tables {
            if let Some(old) = state.schema_at(&t.id, version)? {
                recorded.insert(t.id.clone(), Arc::new(old));
            }
        }
        Ok(SchemaHistory { state, recorded })
    }

    /// Each table's schema at the resume point: the recorded one, else `current`'s (a table
    /// the binlog has not shown since Sluice first saw it).
    fn seeds<'a>(
        &'a self,
        current: &'a [Arc<TableSchema>],
    ) -> impl Iterator<Item = Arc<TableSchema>> + 'a {
        current
            .iter()
            .map(|t| self.recorded.get(&t.id).unwrap_or(t).clone())
    }

    /// Records the schemas of `changes` that differ from their table's last recorded one.
    /// A rows event's changes share one schema `Arc`: each is looked up once.
    fn record(&mut self, changes: &[Change]) -> Result<(), SourceError> {
        let mut seen: Option<&Arc<TableSchema>> = None;
        for c in changes {
            if seen.is_some_and(|s| Arc::ptr_eq(s, &c.table)) {
                continue;
            }
            seen = Some(&c.table);
            let known = self.recorded.get(&c.table.id);
            if known.is_some_and(|k| Arc::ptr_eq(k, &c.table) || **k == *c.table) {
                continue;
            }
            let at = Position::new(c.source.origin.file.to_string(), c.source.pos);
            self.state.record_schema(c.version, &at, &c.table)?;
            tracing::info!(
                table = %c.table.id,
                version = c.version.get(),
                columns = c.table.columns.len(),
                "table schema recorded in the schema history"
            );
            self.recorded.insert(c.table.id.clone(), c.table.clone());
        }
        Ok(())
    }
}

fn dump_error(e: mysql_async::Error, start: &Position) -> SourceError {
    match &e {
        mysql_async::Error::Server(s) if s.code == 1236 => SourceError::Purged {
            position: start.clone(),
            message: s.message.clone(),
        },
        _ => query_error("reading the binlog", e),
    }
}

/// Reports a growing counter at most once a minute, so a steady trickle does not flood the log.
struct CounterLog {
    what: &'static str,
    level: tracing::Level,
    reported: u64,
    last: Option<std::time::Instant>,
}

impl CounterLog {
    fn new(what: &'static str, level: tracing::Level) -> Self {
        CounterLog {
            what,
            level,
            reported: 0,
            last: None,
        }
    }

    fn report(&mut self, total: u64) {
        let due = self
            .last
            .is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(60));
        if total > self.reported && due {
            match self.level {
                tracing::Level::WARN => tracing::warn!(total, "{}", self.what),
                tracing::Level::INFO => tracing::info!(total, "{}", self.what),
                _ => tracing::debug!(total, "{}", self.what),
            }
            self.reported = total;
            self.last = Some(std::time::Instant::now());
        }
    }
}

/// Counts a decoded batch's row changes by table and op: one labelled counter update per run
/// of changes of one table and op, not one per row.
fn count_changes(changes: &[Change]) {
    let rows = &metrics().source.row_changes;
    let mut run: Option<(&TableId, Op, u64)> = None;
    for c in changes {
        match &mut run {
            Some((t, op, n)) if *t == &c.table.id && *op == c.op => *n += 1,
            _ => {
                if let Some((t, op, n)) = run.take() {
                    rows.with_label_values(&[&t.to_string(), op.code()])
                        .inc_by(n);
                }
                run = Some((&c.table.id, c.op, 1));
            }
        }
    }
    if let Some((t, op, n)) = run {
        rows.with_label_values(&[&t.to_string(), op.code()])
            .inc_by(n);
    }
}

/// What one connection's reader has counted so far, turned into metric increments.
#[derive(Default)]
struct Tally {
    skipped: u64,
    filtered: u64,
    zero_dates: u64,
    ddl: u64,
}

impl Tally {
    /// Adds what `reader` counted since the last call.
    fn reader(&mut self, reader: &BinlogReader) {
        let s = &metrics().source;
        for (seen, now, counter) in [
            (
                &mut self.skipped,
                reader.skipped_events(),
                &s.skipped_events,
            ),
            (
                &mut self.filtered,
                reader.filtered_events(),
                &s.filtered_events,
            ),
            (&mut self.zero_dates, reader.zero_dates(), &s.zero_dates),
            (&mut self.ddl, reader.ddl_statements(), &s.ddl_statements),
        ] {
            counter.inc_by(now.saturating_sub(*seen));
            *seen = now;
        }
    }

    /// How far behind the source the event with header `timestamp` is; a heartbeat means
    /// the server has nothing newer to send.
    fn behind(&self, timestamp: u32, event_type: u8) {
        let behind = &metrics().source.seconds_behind;
        if event_type == super::binlog::event::kind::HEARTBEAT {
            behind.set(0);
        } else if timestamp > 0 {
            behind.set((time::now_ms() / 1000 - i64::from(timestamp)).max(0));
        }
    }
}
