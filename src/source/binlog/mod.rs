//! Sluice's binlog decoder: pure functions over event bodies, and [`BinlogReader`], the state
//! machine that turns a stream of events into row changes and commit checkpoints.
//!
//! mysql_async carries the bytes (connection, auth, COM_BINLOG_DUMP); every value is decoded
//! here, because both Rust decoders at hand corrupt or drop values on MariaDB (docs/design.md,
//! "Why a decoder of our own").

pub mod compressed;
pub mod cursor;
mod decimal;
pub mod event;
pub mod file;
mod header;
pub mod json;
pub mod json_diff;
pub mod payload;
mod row_events;
pub mod rows;
mod savepoint;
mod stream_position;
pub mod table_map;
pub mod xa;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use cursor::{Cursor, DecodeError};
use event::{Flavor, FormatDescription, QueryKind, kind};
use rows::RowsKind;
use stream_position::{PendingGtid, StreamPosition};
use table_map::{TableDecoder, TableMapError};

use crate::model::{
    Change, DomainGtids, GtidState, Op, Position, SourceInfo, TableId, TableSchema, Version,
    format_uuid,
};
use crate::source::charset::Collations;
use header::{HEADER_LEN, event_ms, event_start};
use row_events::{Packed, TableEntry};

pub use header::EventHeader;

/// What an event amounts to.
#[derive(Debug)]
pub enum Decoded {
    /// Nothing for the pipeline (control events, other tables).
    Nothing,
    /// Row changes of captured tables.
    Changes(Vec<Change>),
    /// A transaction committed; resuming at this position loses nothing.
    Commit(Position),
    /// A whole transaction in one event: its changes, then the position after its commit
    /// (TRUNCATE TABLE of a captured table; a MySQL compressed transaction).
    Transaction(Vec<Change>, Position),
}

/// Why the stream cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum BinlogError {
    /// An event is malformed or unsupported.
    #[error("binlog {position}: {message}")]
    Event {
        /// Where.
        position: Position,
        /// What.
        message: String,
    },
    /// A captured table's map cannot be used.
    #[error("binlog {position}: table {table}: {source}")]
    Table {
        /// Where.
        position: Position,
        /// Which table.
        table: TableId,
        /// Why (boxed: keeps every `Result` of the decoder small).
        source: Box<TableMapError>,
    },
}

/// Turns binlog events into [`Decoded`] items. Holds no I/O: feed it headers and bodies.
pub struct BinlogReader {
    include: HashSet<TableId>,
    collations: Collations,
    /// Whether the server appends CRC32s; before the first FORMAT_DESCRIPTION the transport
    /// cannot know, so the artificial ROTATE that opens a dump still carries its checksum.
    checksums: bool,
    fde: Option<FormatDescription>,
    /// Where the stream is: file, GTID state and the open transaction.
    at: StreamPosition,
    tables: HashMap<u64, TableEntry>,
    /// Latest schema per table, so an unchanged definition under a new table id keeps the
    /// same `Arc` and downstream caches hit.
    schemas: HashMap<TableId, Arc<TableSchema>>,
    zero_dates: u64,
    /// Configured key columns of tables, replacing their primary keys.
    keys: HashMap<TableId, Vec<String>>,
    /// Control events skipped because they carry no row data.
    skipped: u64,
    /// Set while the events of a MySQL transaction payload are read.
    packed: Option<Packed>,
    /// Whether changes carry the statement that made them.
    include_query: bool,
    /// XA transactions prepared and not yet committed or rolled back.
    xa: xa::XaTransactions,
    /// Savepoints of the transaction being read, and the changes held since the first.
    savepoints: savepoint::Savepoints,
    /// Events of types unknown to Sluice that the server flagged ignorable.
    ignored: u64,
    /// Rows events of tables not captured, skipped without decoding.
    filtered: u64,
    /// Statements outside transactions (DDL and the like).
    ddl: u64,
    /// Captured tables an ALTER TABLE gave a column since the last [`take_added_columns`].
    ///
    /// [`take_added_columns`]: BinlogReader::take_added_columns
    added_columns: Vec<TableId>,
    /// Captured names dropped, renamed away or given to another table since the last
    /// [`take_tables_gone`].
    ///
    /// [`take_tables_gone`]: BinlogReader::take_tables_gone
    tables_gone: Vec<NameChange>,
}

/// What a DDL statement did to a captured table's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameChange {
    /// The table was dropped (or its database).
    Dropped(TableId),
    /// The table was renamed to a name that is not captured.
    RenamedAway { table: TableId, to: TableId },
    /// Another table was renamed to the captured name (the cut-over of an online schema
    /// change swaps tables this way): changes under the name go on, from that table.
    Replaced { table: TableId, by: TableId },
}

impl BinlogReader {
    /// A reader that starts at `start` and keeps changes of `include`; `checksums` is whether
    /// the server's events end in a CRC32.
    pub fn new(
        start: &Position,
        include: impl IntoIterator<Item = TableId>,
        collations: Collations,
        checksums: bool,
    ) -> Result<Self, BinlogError> {
        Ok(BinlogReader {
            include: include.into_iter().collect(),
            collations,
            checksums,
            fde: None,
            at: StreamPosition::new(start)?,
            tables: HashMap::new(),
            schemas: HashMap::new(),
            zero_dates: 0,
            keys: HashMap::new(),
            skipped: 0,
            packed: None,
            include_query: false,
            xa: xa::XaTransactions::default(),
            savepoints: savepoint::Savepoints::default(),
            ignored: 0,
            filtered: 0,
            ddl: 0,
            added_columns: Vec::new(),
            tables_gone: Vec::new(),
        })
    }

    /// Keys tables by the given columns instead of their primary keys.
    pub fn with_keys(mut self, keys: HashMap<TableId, Vec<String>>) -> Self {
        self.keys = keys;
        self
    }

    /// Starts from these table schemas (the schema history at the start position), so a
    /// TRUNCATE read before any table map of its table still has a schema to carry.
    pub fn with_schemas(mut self, schemas: impl IntoIterator<Item = Arc<TableSchema>>) -> Self {
        self.schemas
            .extend(schemas.into_iter().map(|s| (s.id.clone(), s)));
        self
    }

    /// Makes changes carry the SQL statement behind them, where the server logs it.
    pub fn with_queries(mut self, include: bool) -> Self {
        self.include_query = include;
        self
    }

    /// Control events without row data skipped so far (heartbeats not counted).
    pub fn skipped_events(&self) -> u64 {
        self.skipped
    }

    /// Zero or impossible dates turned into NULL so far.
    pub fn zero_dates(&self) -> u64 {
        self.zero_dates
    }

    fn error(&self, h: &EventHeader, message: impl Into<String>) -> BinlogError {
        BinlogError::Event {
            position: self.at.position(h.log_pos.saturating_sub(h.event_size)),
            message: message.into(),
        }
    }

    /// Consumes one event: `body` is everything after the common header, checksum excluded.
    pub fn on_event(&mut self, h: &EventHeader, body: &[u8]) -> Result<Decoded, BinlogError> {
        let decode = |e: DecodeError| self.error(h, format!("event type {}: {e}", h.event_type));
        match h.event_type {
            kind::FORMAT_DESCRIPTION => {
                self.fde = Some(FormatDescription::parse(body).map_err(decode)?);
                Ok(Decoded::Nothing)
            }
            kind::ROTATE => {
                let body = match body.len().checked_sub(4) {
                    Some(end) if self.fde.is_none() && self.checksums => &body[..end],
                    _ => body,
                };
                let (file, pos) = event::parse_rotate(body).map_err(decode)?;
                self.at.set_file(&file, pos)?;
                // Table ids are only meaningful within a file's transactions.
                self.tables.clear();
                // A real rotate (not the artificial one a dump starts with) closes a file
                // between transactions: a safe place to resume.
                if h.log_pos != 0 && !self.at.in_transaction {
                    let at = self.at.checkpoint(file, pos);
                    return Ok(Decoded::Commit(self.resume_point(at)));
                }
                Ok(Decoded::Nothing)
            }
            kind::MARIADB_GTID => {
                let g = event::parse_mariadb_gtid(body).map_err(decode)?;
                let gtid = format!("{}-{}-{}", g.domain, h.server_id, g.seq);
                self.at.start_group(Some(Arc::from(gtid)), None);
                // A group that also wrote a non-transactional table may end in ROLLBACK.
                if !g.standalone && !g.transactional {
                    self.savepoints.hold_group();
                }
                self.at.group_start = event_start(h);
                self.at.pending_gtid = Some(PendingGtid::MariaDb {
                    domain: g.domain,
                    server: h.server_id,
                    seq: g.seq,
                });
                self.at.in_transaction = !g.standalone;
                if let Some(xid) = g.prepares {
                    let hold = self
                        .at
                        .checkpoint(self.at.file().to_string(), u64::from(self.at.group_start));
                    self.xa.start(xid, hold);
                }
                Ok(Decoded::Nothing)
            }
            kind::QUERY | kind::QUERY_COMPRESSED => {
                let post = self.post_header_len(h.event_type, 13);
                let mut query = event::parse_query(body, post).map_err(decode)?;
                let inflated;
                if h.event_type == kind::QUERY_COMPRESSED {
                    inflated = compressed::uncompress(query.text).map_err(decode)?;
                    query.text = &inflated;
                }
                if let Some(table) = event::truncated_table(&query)
                    && self.include.contains(&table)
                {
                    return self.on_truncate(h, &table);
                }
                match event::classify_query(query.text) {
                    QueryKind::Begin => {
                        self.at.in_transaction = true;
                        self.at.set_thread(query.thread);
                        Ok(Decoded::Nothing)
                    }
                    // MySQL opens an XA transaction's prepared part with a statement.
                    QueryKind::XaStart(xid) => {
                        self.at.in_transaction = true;
                        self.at.set_thread(query.thread);
                        let hold = self
                            .at
                            .checkpoint(self.at.file().to_string(), u64::from(self.at.group_start));
                        self.xa.start(xid, hold);
                        Ok(Decoded::Nothing)
                    }
                    QueryKind::XaCommit(_, true) if self.xa.is_open() => {
                        let mut changes = self.savepoints_into_xa();
                        changes.extend(self.xa.commit_open());
                        Ok(Decoded::Transaction(changes, self.commit_position(h)))
                    }
                    QueryKind::XaCommit(xid, _) => self.xa_commit(h, &xid),
                    // What the XA transaction held, and any savepoint hold of its group,
                    // never happened.
                    QueryKind::XaRollback(xid) => {
                        self.xa.rollback(&xid);
                        drop(self.savepoints.take());
                        self.commit(h)
                    }
                    QueryKind::Savepoint(name) => {
                        if self.at.in_transaction {
                            self.savepoints.set(name);
                        }
                        Ok(Decoded::Nothing)
                    }
                    QueryKind::RollbackToSavepoint(name) => {
                        self.savepoints
                            .rollback_to(&name)
                            .map_err(|e| self.error(h, e))?;
                        Ok(Decoded::Nothing)
                    }
                    // What the group held never happened. On MariaDB a group that can end
                    // here is held whole; on MySQL only what followed a SAVEPOINT is
                    // (docs/design.md, "Transactions").
                    QueryKind::Rollback => {
                        drop(self.savepoints.take());
                        self.commit(h)
                    }
                    QueryKind::Other if self.at.in_transaction => Ok(Decoded::Nothing),
                    // Statements outside a transaction (DDL) end one, as COMMIT and ROLLBACK
                    // (non-transactional changes before it stand) do.
                    QueryKind::Other => {
                        self.ddl += 1;
                        let gone = event::tables_gone(&query);
                        // `ALTER TABLE t RENAME TO u, ADD c ...`: t is gone, nothing to copy.
                        let renamed = |t: &TableId| {
                            gone.iter()
                                .any(|g| matches!(g, event::TableGone::Renamed(f, _) if f == t))
                        };
                        if let Some(table) = event::column_added_table(&query)
                            && self.include.contains(&table)
                            && !renamed(&table)
                        {
                            self.added_columns.push(table);
                        }
                        self.renamed_or_dropped(&gone);
                        self.commit(h)
                    }
                    _ => self.commit(h),
                }
            }
            kind::XID => self.commit(h),
            kind::XA_PREPARE => {
                let (one_phase, _) = event::parse_xa_prepare(body).map_err(decode)?;
                let mut unheld = self.savepoints_into_xa();
                if one_phase {
                    unheld.extend(self.xa.commit_open());
                    return Ok(Decoded::Transaction(unheld, self.commit_position(h)));
                }
                // The prepared part is complete: held until its outcome, its GTID executed.
                self.xa.prepared();
                self.at.end_group();
                Ok(if unheld.is_empty() {
                    Decoded::Nothing
                } else {
                    Decoded::Changes(unheld)
                })
            }
            kind::MYSQL_GTID | kind::MYSQL_GTID_TAGGED => {
                let (uuid, tag, gno) = if h.event_type == kind::MYSQL_GTID {
                    let (uuid, gno) = event::parse_mysql_gtid(body).map_err(decode)?;
                    (uuid, String::new(), gno)
                } else {
                    event::parse_tagged_gtid(body).map_err(decode)?
                };
                let text = if tag.is_empty() {
                    format!("{}:{gno}", format_uuid(&uuid))
                } else {
                    format!("{}:{tag}:{gno}", format_uuid(&uuid))
                };
                self.at
                    .start_group(Some(Arc::from(text)), event::mysql_commit_micros(body));
                self.at.group_start = event_start(h);
                self.at.pending_gtid = Some(PendingGtid::MySql { uuid, tag, gno });
                Ok(Decoded::Nothing)
            }
            kind::MYSQL_PREVIOUS_GTIDS => {
                // The server's whole executed set where this file starts.
                let set = event::parse_previous_gtids(body).map_err(decode)?;
                self.at.gtid_state = Some(GtidState::MySql(set));
                Ok(Decoded::Nothing)
            }
            kind::MYSQL_ANONYMOUS_GTID => {
                self.at.start_group(None, event::mysql_commit_micros(body));
                self.at.group_start = event_start(h);
                Ok(Decoded::Nothing)
            }
            kind::GTID_LIST => {
                // The server's whole GTID state where this file starts.
                let mut state = DomainGtids::default();
                for (domain, server, seq) in event::parse_gtid_list(body).map_err(decode)? {
                    state.set(domain, server, seq);
                }
                self.at.gtid_state = Some(GtidState::MariaDb(state));
                Ok(Decoded::Nothing)
            }
            kind::TABLE_MAP => self.on_table_map(h, body),
            t if RowsKind::of(t).is_some() => self.on_rows(h, body),
            kind::TRANSACTION_PAYLOAD => self.on_payload(h, body),
            kind::HEARTBEAT => Ok(Decoded::Nothing),
            kind::ANNOTATE_ROWS | kind::ROWS_QUERY if self.include_query => {
                // MySQL's ROWS_QUERY starts with a (truncated) length byte; MariaDB's
                // ANNOTATE_ROWS is the text alone. Statement text is informational: bytes
                // that are not UTF-8 are replaced rather than stopping the stream.
                let text = match h.event_type {
                    kind::ROWS_QUERY => body.get(1..).unwrap_or_default(),
                    _ => body,
                };
                self.at.annotation = Some(Arc::from(String::from_utf8_lossy(text)));
                Ok(Decoded::Nothing)
            }
            t if event::is_harmless(t) => {
                self.skipped += 1;
                Ok(Decoded::Nothing)
            }
            t if let Some(name) = event::load_data_event(t) => Err(self.error(
                h,
                format!(
                    "event type {t} ({name}) is a LOAD DATA logged as a statement, whose \
                     changes Sluice cannot read: the server was not on binlog_format=ROW; set \
                     binlog_format=ROW (globally, and keep sessions from changing it) and \
                     re-snapshot the tables the statement loaded"
                ),
            )),
            // A replica skips an event it does not know when the server marks it ignorable
            // (Aurora's padding events, for one).
            _ if h.flags & event::LOG_EVENT_IGNORABLE_F != 0 => {
                self.ignored += 1;
                Ok(Decoded::Nothing)
            }
            t => Err(self.error(
                h,
                format!(
                    "event type {t} is unknown to Sluice and may carry row changes; stopping \
                     rather than skipping it"
                ),
            )),
        }
    }

    /// TRUNCATE TABLE: a truncate change at the statement's own offset, and the commit that
    /// DDL implies.
    fn on_truncate(&mut self, h: &EventHeader, table: &TableId) -> Result<Decoded, BinlogError> {
        let schema = self.schemas.get(table).cloned().ok_or_else(|| {
            self.error(
                h,
                format!("TRUNCATE TABLE {table}: no schema of the table is known at this point"),
            )
        })?;
        let start = h.log_pos.checked_sub(h.event_size).ok_or_else(|| {
            self.error(h, "TRUNCATE without a file position (log_pos < event size)")
        })?;
        let change = Change {
            table: schema,
            op: Op::Truncate,
            before: None,
            after: None,
            version: Version::at(self.at.file_seq, start),
            source: SourceInfo {
                origin: self.at.origin(start),
                pos: u64::from(start),
                row: 0,
                server_id: h.server_id,
                ts_ms: event_ms(h.timestamp, self.at.commit_us()),
                snapshot: false,
                query: None,
                transaction: None,
            },
        };
        let mut changes = vec![change];
        self.at.place_in_transaction(&mut changes);
        Ok(Decoded::Transaction(changes, self.commit_position(h)))
    }

    /// What savepoints held belongs to the XA part being read; given back only if none is
    /// open.
    fn savepoints_into_xa(&mut self) -> Vec<Change> {
        let held = self.savepoints.take();
        self.xa.hold(held).unwrap_or_default()
    }

    /// The transaction ends: what savepoints held goes out with its commit.
    fn commit(&mut self, h: &EventHeader) -> Result<Decoded, BinlogError> {
        let held = self.savepoints.take();
        let at = self.commit_position(h);
        Ok(if held.is_empty() {
            Decoded::Commit(at)
        } else {
            Decoded::Transaction(held, at)
        })
    }

    /// XA COMMIT of a prepared part: its changes, at versions of this commit group.
    fn xa_commit(&mut self, h: &EventHeader, xid: &event::Xid) -> Result<Decoded, BinlogError> {
        let Some(mut changes) = self.xa.commit(xid) else {
            return self.commit(h);
        };
        // The commit group holds no rows; this ends any hold its GTID event started.
        let held = self.savepoints.take();
        debug_assert!(held.is_empty(), "rows in an XA COMMIT group");
        changes.extend(held);
        xa::versions_at_commit(
            &mut changes,
            self.at.file_seq,
            self.at.group_start,
            h.log_pos,
        )
        .map_err(|e| self.error(h, e))?;
        Ok(Decoded::Transaction(changes, self.commit_position(h)))
    }

    fn commit_position(&mut self, h: &EventHeader) -> Position {
        self.at.end_group();
        let at = self
            .at
            .checkpoint(self.at.file().to_string(), u64::from(h.log_pos));
        self.resume_point(at)
    }

    /// `at`, unless a prepared XA transaction is pending: then where it starts, so a restart
    /// reads it again.
    fn resume_point(&self, at: Position) -> Position {
        self.xa.resume_hold().cloned().unwrap_or(at)
    }

    /// Rows events of tables not captured, skipped without decoding so far.
    pub fn filtered_events(&self) -> u64 {
        self.filtered
    }

    /// The binlog file being read.
    pub fn file(&self) -> &str {
        self.at.file()
    }

    /// Captured names dropped, renamed away or given to another table since the last call.
    pub fn take_tables_gone(&mut self) -> Vec<NameChange> {
        std::mem::take(&mut self.tables_gone)
    }

    /// Keeps what a DROP or RENAME statement did to captured names.
    fn renamed_or_dropped(&mut self, gone: &[event::TableGone]) {
        use event::TableGone::{Dropped, Renamed};
        for g in gone {
            match g {
                Dropped(t) if t.table == "*" => {
                    let mut tables: Vec<&TableId> =
                        self.include.iter().filter(|c| c.db == t.db).collect();
                    tables.sort();
                    let dropped = tables.into_iter().cloned().map(NameChange::Dropped);
                    self.tables_gone.extend(dropped);
                }
                Dropped(t) if self.include.contains(t) => {
                    self.tables_gone.push(NameChange::Dropped(t.clone()))
                }
                Renamed(from, to) if self.include.contains(to) => {
                    self.tables_gone.push(NameChange::Replaced {
                        table: to.clone(),
                        by: from.clone(),
                    })
                }
                Renamed(from, to)
                    if self.include.contains(from)
                        && !gone.iter().any(|o| matches!(o, Renamed(_, t) if t == from)) =>
                {
                    self.tables_gone.push(NameChange::RenamedAway {
                        table: from.clone(),
                        to: to.clone(),
                    })
                }
                _ => {}
            }
        }
    }

    /// Captured tables that an `ALTER TABLE ... ADD` gave a column since the last call.
    pub fn take_added_columns(&mut self) -> Vec<TableId> {
        std::mem::take(&mut self.added_columns)
    }

    /// Statements read outside transactions (DDL and the like) so far.
    pub fn ddl_statements(&self) -> u64 {
        self.ddl
    }

    /// Events of unknown types the server marked ignorable, skipped so far.
    pub fn ignored_events(&self) -> u64 {
        self.ignored
    }

    /// XA COMMITs of transactions prepared before the stream started, whose changes could not
    /// be read, and the last one's id.
    pub fn unseen_xa_commits(&self) -> (u64, Option<String>) {
        let (n, xid) = self.xa.unseen();
        (n, xid.map(ToString::to_string))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Value;
    use table_map::tests::{TableMapBuilder, collations};

    const LONG: u8 = 3;
    const VARCHAR: u8 = 15;

    fn header(event_type: u8, log_pos: u32, size: u32) -> EventHeader {
        EventHeader {
            timestamp: 1_700_000_000,
            event_type,
            server_id: 1,
            event_size: size,
            log_pos,
            flags: 0,
        }
    }

    fn reader() -> BinlogReader {
        let start = Position::new("binlog.000003", 4);
        BinlogReader::new(&start, [TableId::new("shop", "t")], collations(), true).unwrap()
    }

    fn table_map() -> Vec<u8> {
        TableMapBuilder::new()
            .int(LONG, false, "id")
            .column(VARCHAR, &[40, 0], true, "name")
            .key(&[0])
            .build(9)
    }

    fn row(id: i32, name: Option<&str>) -> Vec<u8> {
        let mut b = vec![if name.is_none() { 0b10 } else { 0 }];
        b.extend_from_slice(&id.to_le_bytes());
        if let Some(n) = name {
            b.push(n.len() as u8);
            b.extend_from_slice(n.as_bytes());
        }
        b
    }

    fn rows_event(kind: u8, rows: &[Vec<u8>]) -> Vec<u8> {
        let mut b = vec![9, 0, 0, 0, 0, 0, 0, 0, 2, 0b11];
        if kind == event::kind::UPDATE_ROWS_V1 {
            b.push(0b11);
        }
        for r in rows {
            b.extend_from_slice(r);
        }
        b
    }

    #[test]
    fn decodes_a_transaction_into_changes_and_a_commit() {
        let mut r = reader();
        let tm = table_map();
        assert!(matches!(
            r.on_event(&header(kind::TABLE_MAP, 1000, 19 + tm.len() as u32), &tm)
                .unwrap(),
            Decoded::Nothing
        ));
        let body = rows_event(kind::WRITE_ROWS_V1, &[row(1, Some("a")), row(-2, None)]);
        let h = header(kind::WRITE_ROWS_V1, 1100, 19 + body.len() as u32);
        let Decoded::Changes(c) = r.on_event(&h, &body).unwrap() else {
            panic!()
        };
        assert_eq!(c.len(), 2);
        assert_eq!(
            c[0].after,
            Some(vec![Value::Int(1), Value::String("a".into())])
        );
        assert_eq!(c[1].after, Some(vec![Value::Int(-2), Value::Null]));
        let start = 1100 - h.event_size;
        assert_eq!(c[0].version, Version::at(3, start + 19 + 10));
        assert!(c[0].version < c[1].version);
        assert_eq!((c[1].source.row, c[1].source.pos), (1, u64::from(start)));
        let Decoded::Commit(p) = r.on_event(&header(kind::XID, 1131, 31), &[0; 8]).unwrap() else {
            panic!()
        };
        assert_eq!(p.to_string(), "binlog.000003:1131");
    }

    #[test]
    fn changes_are_numbered_in_their_transaction_and_carry_its_statement() {
        let mut r = reader().with_queries(true);
        let gtid = mariadb_gtid(5, 0);
        r.on_event(&header(kind::MARIADB_GTID, 100, 42), &gtid)
            .unwrap();
        r.on_event(
            &header(kind::ANNOTATE_ROWS, 150, 50),
            b"INSERT INTO t VALUES (1), (2)",
        )
        .unwrap();
        let tm = table_map();
        r.on_event(&header(kind::TABLE_MAP, 1000, 19 + tm.len() as u32), &tm)
            .unwrap();
        let mut orders = Vec::new();
        for (pos, ids) in [(1100, [1, 2]), (1200, [3, 4])] {
            let body = rows_event(kind::WRITE_ROWS_V1, &ids.map(|i| row(i, None)));
            let h = header(kind::WRITE_ROWS_V1, pos, 19 + body.len() as u32);
            let Decoded::Changes(c) = r.on_event(&h, &body).unwrap() else {
                panic!()
            };
            orders.extend(c.into_iter().map(|c| {
                assert_eq!(
                    c.source.query.as_deref(),
                    Some("INSERT INTO t VALUES (1), (2)")
                );
                let (id, tx) = c.source.transaction().unwrap();
                (id.to_string(), tx.total_order, tx.collection_order)
            }));
        }
        let id = "0-1-5".to_string();
        assert_eq!(
            orders,
            [
                (id.clone(), 1, 1),
                (id.clone(), 2, 2),
                (id.clone(), 3, 3),
                (id, 4, 4)
            ]
        );
        r.on_event(&header(kind::XID, 1300, 31), &[0; 8]).unwrap();
        // Without a GTID the transaction is named by its first change's event.
        let body = rows_event(kind::WRITE_ROWS_V1, &[row(9, None)]);
        let h = header(kind::WRITE_ROWS_V1, 1500, 19 + body.len() as u32);
        let Decoded::Changes(c) = r.on_event(&h, &body).unwrap() else {
            panic!()
        };
        let (id, tx) = c[0].source.transaction().unwrap();
        assert_eq!((id, tx.total_order), ("binlog.000003:1466", 1));
        assert_eq!(c[0].source.query, None, "a commit ends the statement");
    }

    #[test]
    fn a_primary_key_update_deletes_the_old_document() {
        let mut r = reader();
        let tm = table_map();
        r.on_event(&header(kind::TABLE_MAP, 1000, 19 + tm.len() as u32), &tm)
            .unwrap();
        let body = rows_event(
            kind::UPDATE_ROWS_V1,
            &[
                row(1, Some("a")),
                row(1, Some("b")),
                row(2, Some("c")),
                row(3, Some("c")),
            ],
        );
        let h = header(kind::UPDATE_ROWS_V1, 2000, 19 + body.len() as u32);
        let Decoded::Changes(c) = r.on_event(&h, &body).unwrap() else {
            panic!()
        };
        let ops: Vec<_> = c.iter().map(|c| c.op).collect();
        assert_eq!(ops, [Op::Update, Op::Delete, Op::Create]);
        assert!(c[1].version < c[2].version);
        assert_eq!(c[2].after.as_ref().unwrap()[0], Value::Int(3));
    }

    #[test]
    fn other_tables_are_skipped_without_decoding() {
        let mut r = BinlogReader::new(
            &Position::new("binlog.000001", 4),
            [TableId::new("shop", "other")],
            collations(),
            true,
        )
        .unwrap();
        let tm = table_map();
        r.on_event(&header(kind::TABLE_MAP, 1000, 19 + tm.len() as u32), &tm)
            .unwrap();
        let garbage = [9, 0, 0, 0, 0, 0, 0, 0, 0xff];
        let d = r
            .on_event(&header(kind::WRITE_ROWS_V1, 1100, 28), &garbage)
            .unwrap();
        assert!(matches!(d, Decoded::Nothing));
    }

    /// A QUERY event body in database `shop`.
    fn query(text: &str) -> Vec<u8> {
        let mut b = vec![0; 8];
        b.push(4);
        b.extend_from_slice(&[0, 0, 0, 0]);
        b.extend_from_slice(b"shop\0");
        b.extend_from_slice(text.as_bytes());
        b
    }

    #[test]
    fn a_truncate_is_a_keyless_change_at_its_statement_and_a_commit() {
        let mut r = reader();
        let e = r
            .on_event(&header(kind::QUERY, 300, 50), &query("TRUNCATE t"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no schema of the table is known"), "{e}");
        let tm = table_map();
        r.on_event(&header(kind::TABLE_MAP, 1000, 19 + tm.len() as u32), &tm)
            .unwrap();
        let d = r
            .on_event(&header(kind::QUERY, 1200, 50), &query("TRUNCATE TABLE t"))
            .unwrap();
        let Decoded::Transaction(mut changes, commit) = d else {
            panic!("{d:?}")
        };
        let change = changes.pop().unwrap();
        assert_eq!(change.op, Op::Truncate);
        assert_eq!((change.before, change.after), (None, None));
        assert_eq!(change.version, Version::at(3, 1150));
        assert_eq!(change.table.id, TableId::new("shop", "t"));
        assert_eq!(commit.to_string(), "binlog.000003:1200");
        // Other tables' truncates are statements like any other.
        let d = r
            .on_event(&header(kind::QUERY, 1300, 50), &query("TRUNCATE other"))
            .unwrap();
        assert!(matches!(d, Decoded::Commit(_)), "{d:?}");
        // A seeded schema serves before any table map.
        let mut seeded = reader().with_schemas([change.table.clone()]);
        let d = seeded
            .on_event(&header(kind::QUERY, 300, 50), &query("TRUNCATE t"))
            .unwrap();
        assert!(matches!(d, Decoded::Transaction(..)), "{d:?}");
    }

    #[test]
    fn mysql_gtid_sets_are_tracked_only_once_known_whole() {
        let uuid = [0xab; 16];
        let gtid = |gno: u64| {
            let mut b = vec![1];
            b.extend_from_slice(&uuid);
            b.extend(gno.to_le_bytes());
            b
        };
        let mut r = reader();
        // Before a PREVIOUS_GTIDS the set is unknown: no partial set is stored.
        r.on_event(&header(kind::MYSQL_GTID, 100, 61), &gtid(9))
            .unwrap();
        let Decoded::Commit(p) = r.on_event(&header(kind::XID, 131, 31), &[0; 8]).unwrap() else {
            panic!()
        };
        assert_eq!(
            (p.gtid, r.at.gtid()),
            (None, Some("abababab-abab-abab-abab-abababababab:9"))
        );
        let mut previous = 1u64.to_le_bytes().to_vec();
        previous.extend_from_slice(&uuid);
        previous.extend(1u64.to_le_bytes());
        previous.extend(1u64.to_le_bytes());
        previous.extend(10u64.to_le_bytes());
        r.on_event(&header(kind::MYSQL_PREVIOUS_GTIDS, 200, 59), &previous)
            .unwrap();
        r.on_event(&header(kind::MYSQL_GTID, 300, 61), &gtid(10))
            .unwrap();
        let Decoded::Commit(p) = r.on_event(&header(kind::XID, 331, 31), &[0; 8]).unwrap() else {
            panic!()
        };
        let state = p.gtid.unwrap();
        assert_eq!(state, "abababab-abab-abab-abab-abababababab:1-10");
        // A restart from that position carries the set on.
        let mut again = BinlogReader::new(
            &Position {
                gtid: Some(state),
                ..Position::new("binlog.000003", 331)
            },
            [TableId::new("shop", "t")],
            collations(),
            true,
        )
        .unwrap();
        again
            .on_event(&header(kind::MYSQL_GTID, 400, 61), &gtid(12))
            .unwrap();
        let Decoded::Commit(p) = again
            .on_event(&header(kind::XID, 431, 31), &[0; 8])
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(
            p.gtid.unwrap(),
            "abababab-abab-abab-abab-abababababab:1-10:12"
        );
    }

    #[test]
    fn transaction_boundaries() {
        let mut r = reader();
        let gtid = |standalone: u8| {
            let mut b = 5u64.to_le_bytes().to_vec();
            b.extend_from_slice(&0u32.to_le_bytes());
            b.push(standalone);
            b
        };
        // Standalone DDL commits after its statement.
        r.on_event(&header(kind::MARIADB_GTID, 100, 42), &gtid(1))
            .unwrap();
        let d = r
            .on_event(
                &header(kind::QUERY, 200, 100),
                &query("ALTER TABLE t ADD c INT"),
            )
            .unwrap();
        assert!(matches!(d, Decoded::Commit(p) if p.pos == 200));
        // Inside a transaction other statements do not commit; COMMIT does.
        r.on_event(&header(kind::MARIADB_GTID, 300, 42), &gtid(0))
            .unwrap();
        let d = r
            .on_event(
                &header(kind::QUERY, 400, 100),
                &query("INSERT INTO x VALUES (1)"),
            )
            .unwrap();
        assert!(matches!(d, Decoded::Nothing));
        let d = r
            .on_event(&header(kind::QUERY, 500, 100), &query("COMMIT"))
            .unwrap();
        assert!(matches!(d, Decoded::Commit(p) if p.pos == 500));
        assert_eq!(r.at.gtid(), Some("0-1-5"));
    }

    #[test]
    fn unknown_events_stop_the_stream_and_harmless_ones_are_skipped() {
        let mut r = reader();
        let e = r
            .on_event(&header(99, 100, 30), &[0; 11])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("event type 99") && e.contains("binlog.000003:70"),
            "{e}"
        );
        assert!(matches!(
            r.on_event(&header(kind::ANNOTATE_ROWS, 100, 30), &[])
                .unwrap(),
            Decoded::Nothing
        ));
    }

    /// A whole event as a file holds it, without a checksum (as inside a payload).
    fn framed(event_type: u8, body: &[u8]) -> Vec<u8> {
        let mut e = 1_700_000_000u32.to_le_bytes().to_vec();
        e.push(event_type);
        e.extend_from_slice(&1u32.to_le_bytes());
        e.extend_from_slice(&(19 + body.len() as u32).to_le_bytes());
        e.extend_from_slice(&0u32.to_le_bytes());
        e.extend_from_slice(&0u16.to_le_bytes());
        e.extend_from_slice(body);
        e
    }

    #[test]
    fn a_mysql_transaction_payload_decodes_like_the_events_it_holds() {
        let rows: Vec<Vec<u8>> = (0..50).map(|i| row(i, Some("same text"))).collect();
        let events = [
            framed(kind::QUERY, &query("BEGIN")),
            framed(kind::TABLE_MAP, &table_map()),
            framed(kind::WRITE_ROWS_V1, &rows_event(kind::WRITE_ROWS_V1, &rows)),
            framed(kind::XID, &[7; 8]),
        ]
        .concat();
        let body = payload::body(&events, Some(3));
        let size = 19 + body.len() as u32;
        let mut r = reader();
        let d = r
            .on_event(&header(kind::TRANSACTION_PAYLOAD, 5000, size), &body)
            .unwrap();
        let Decoded::Transaction(changes, commit) = d else {
            panic!("{d:?}")
        };
        assert_eq!(commit.to_string(), "binlog.000003:5000");
        assert_eq!(changes.len(), 50);
        assert_eq!(changes[49].after.as_ref().unwrap()[0], Value::Int(49));
        let start = 5000 - size;
        // Versions count up inside the payload event, one per row image.
        for (i, c) in changes.iter().enumerate() {
            assert_eq!(c.version, Version::at(3, start + 19 + i as u32));
            assert_eq!(c.source.pos, u64::from(start));
        }
        // A payload squeezing more images than bytes cannot version them: an error, not a
        // collision with the next event's versions.
        let rows: Vec<Vec<u8>> = (0..5000).map(|_| row(1, Some("x"))).collect();
        let events = [
            framed(kind::TABLE_MAP, &table_map()),
            framed(kind::WRITE_ROWS_V1, &rows_event(kind::WRITE_ROWS_V1, &rows)),
        ]
        .concat();
        let body = payload::body(&events, Some(19));
        let size = 19 + body.len() as u32;
        let e = reader()
            .on_event(&header(kind::TRANSACTION_PAYLOAD, 90_000, size), &body)
            .unwrap_err()
            .to_string();
        assert!(e.contains("binlog_transaction_compression=OFF"), "{e}");
        // Garbage is an error naming the event.
        let e = reader()
            .on_event(&header(kind::TRANSACTION_PAYLOAD, 100, 30), &[9; 11])
            .unwrap_err()
            .to_string();
        assert!(e.contains("binlog.000003:70"), "{e}");
    }

    #[test]
    fn the_opening_rotate_keeps_its_checksum_until_a_format_description() {
        let mut r = reader();
        let mut body = 4u64.to_le_bytes().to_vec();
        body.extend_from_slice(b"binlog.000009");
        body.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        r.on_event(&header(kind::ROTATE, 0, 44), &body).unwrap();
        assert_eq!(&**r.at.file(), "binlog.000009");
    }

    #[test]
    fn real_rotates_are_resume_points_and_switch_the_version_file() {
        let mut r = reader();
        let mut fde = vec![0u8; 56];
        fde.push(19);
        r.on_event(&header(kind::FORMAT_DESCRIPTION, 0, 100), &fde)
            .unwrap();
        let mut body = 4u64.to_le_bytes().to_vec();
        body.extend_from_slice(b"binlog.000004");
        let d = r.on_event(&header(kind::ROTATE, 900, 40), &body).unwrap();
        assert!(matches!(d, Decoded::Commit(p) if p.to_string() == "binlog.000004:4"));
        assert_eq!(r.at.file_seq, 4);
        // The artificial rotate at the start of a dump has log_pos 0.
        assert!(matches!(
            r.on_event(&header(kind::ROTATE, 0, 40), &body).unwrap(),
            Decoded::Nothing
        ));
    }

    /// A MariaDB GTID body; `xa` sets the XA flag (64 prepared, 128 completed) with id "x".
    fn mariadb_gtid(seq: u64, xa: u8) -> Vec<u8> {
        let mut b = seq.to_le_bytes().to_vec();
        b.extend_from_slice(&0u32.to_le_bytes());
        // FL_TRANSACTIONAL (4): an InnoDB transaction's group.
        b.push(xa | 4 | u8::from(xa == 128));
        if xa != 0 {
            b.extend_from_slice(&1u32.to_le_bytes());
            b.extend_from_slice(&[1, 0, b'x']);
        }
        b
    }

    fn xa_prepare() -> Vec<u8> {
        let mut b = vec![0];
        for n in [1u32, 1, 0] {
            b.extend_from_slice(&n.to_le_bytes());
        }
        b.push(b'x');
        b
    }

    /// An XA part's row 1 (table map at 300, row at 400, held) and its XA END at 500.
    fn xa_part_row(r: &mut BinlogReader) {
        feed(r, kind::TABLE_MAP, 300, &table_map());
        let write = rows_event(kind::WRITE_ROWS_V1, &[row(1, Some("a"))]);
        assert!(matches!(
            feed(r, kind::WRITE_ROWS_V1, 400, &write),
            Decoded::Nothing
        ));
        feed(r, kind::QUERY, 500, &query("XA END X'78',X'',1"));
    }

    /// Feeds one event ending at `end`.
    fn feed(r: &mut BinlogReader, t: u8, end: u32, body: &[u8]) -> Decoded {
        r.on_event(&header(t, end, 19 + body.len() as u32), body)
            .unwrap()
    }

    #[test]
    fn an_xa_part_rolled_back_before_its_prepare_publishes_nothing_and_holds_nothing_after() {
        let mut r = reader();
        let tm = table_map();
        // MySQL's form, with a savepoint: XA START, rows, XA END, XA ROLLBACK in one group.
        feed(&mut r, kind::QUERY, 200, &query("XA START X'78',X'',1"));
        feed(&mut r, kind::QUERY, 250, &query("SAVEPOINT `s`"));
        xa_part_row(&mut r);
        assert!(matches!(
            feed(&mut r, kind::QUERY, 600, &query("XA ROLLBACK X'78',X'',1")),
            Decoded::Commit(_)
        ));
        // The next transaction is neither held nor lost.
        feed(&mut r, kind::MARIADB_GTID, 700, &mariadb_gtid(6, 0));
        feed(&mut r, kind::TABLE_MAP, 800, &tm);
        let other = rows_event(kind::WRITE_ROWS_V1, &[row(2, Some("b"))]);
        let Decoded::Changes(c) = feed(&mut r, kind::WRITE_ROWS_V1, 900, &other) else {
            panic!("the next transaction's changes were held")
        };
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn xa_changes_wait_for_their_commit_and_a_restart_reads_them_again() {
        let mut r = reader();
        let tm = table_map();
        // The prepared part: held, and the resume point stays before it.
        feed(&mut r, kind::MARIADB_GTID, 150, &mariadb_gtid(5, 64));
        let prepared_at = 150 - 19 - mariadb_gtid(5, 64).len() as u32;
        xa_part_row(&mut r);
        assert!(matches!(
            feed(&mut r, kind::XA_PREPARE, 550, &xa_prepare()),
            Decoded::Nothing
        ));
        // Another transaction commits meanwhile: its resume point is the prepared part's.
        feed(&mut r, kind::MARIADB_GTID, 600, &mariadb_gtid(6, 0));
        feed(&mut r, kind::TABLE_MAP, 700, &tm);
        let other = rows_event(kind::WRITE_ROWS_V1, &[row(2, Some("b"))]);
        let Decoded::Changes(c) = feed(&mut r, kind::WRITE_ROWS_V1, 800, &other) else {
            panic!()
        };
        assert_eq!(c[0].after.as_ref().unwrap()[0], Value::Int(2));
        let Decoded::Commit(p) = feed(&mut r, kind::XID, 831, &[0; 8]) else {
            panic!()
        };
        assert_eq!(p.pos, u64::from(prepared_at));
        // XA COMMIT: the held change, versioned at the commit group.
        feed(&mut r, kind::MARIADB_GTID, 900, &mariadb_gtid(7, 128));
        let commit_group = 900 - 19 - mariadb_gtid(7, 128).len() as u32;
        let Decoded::Transaction(c, p) =
            feed(&mut r, kind::QUERY, 1000, &query("XA COMMIT X'78',X'',1"))
        else {
            panic!()
        };
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].after.as_ref().unwrap()[0], Value::Int(1));
        assert_eq!(c[0].version, Version::at(3, commit_group));
        assert_eq!(p.pos, 1000);
        // A prepared part rolled back never happened.
        feed(&mut r, kind::MARIADB_GTID, 1100, &mariadb_gtid(8, 64));
        feed(&mut r, kind::TABLE_MAP, 1200, &tm);
        let write = rows_event(kind::WRITE_ROWS_V1, &[row(1, Some("a"))]);
        assert!(matches!(
            feed(&mut r, kind::WRITE_ROWS_V1, 1300, &write),
            Decoded::Nothing
        ));
        feed(&mut r, kind::XA_PREPARE, 1350, &xa_prepare());
        feed(&mut r, kind::MARIADB_GTID, 1400, &mariadb_gtid(9, 128));
        let Decoded::Commit(p) = feed(&mut r, kind::QUERY, 1500, &query("XA ROLLBACK X'78',X'',1"))
        else {
            panic!()
        };
        assert_eq!(p.pos, 1500);
        // An XA COMMIT whose prepared part came before the start is counted.
        feed(&mut r, kind::MARIADB_GTID, 1600, &mariadb_gtid(10, 128));
        feed(&mut r, kind::QUERY, 1700, &query("XA COMMIT X'79',X'',1"));
        assert_eq!(r.unseen_xa_commits(), (1, Some("X'79',X'',1".to_string())));
    }

    #[test]
    fn unknown_events_flagged_ignorable_are_skipped_and_counted() {
        let mut r = reader();
        let mut h = header(100, 200, 40);
        assert!(r.on_event(&h, &[0; 21]).is_err());
        h.flags = event::LOG_EVENT_IGNORABLE_F;
        assert!(matches!(
            r.on_event(&h, &[0; 21]).unwrap(),
            Decoded::Nothing
        ));
        assert_eq!(r.ignored_events(), 1);
    }

    #[test]
    fn hidden_functional_index_columns_are_left_out_of_the_rows() {
        let mut r = reader();
        // (id INT, a hidden BIGINT of a functional index, name VARCHAR(40)): the table map
        // names all three, row images hold the first and the last.
        let tm = TableMapBuilder::new()
            .int(LONG, false, "id")
            .int(8, false, "!hidden!idx!0!0")
            .column(VARCHAR, &[40, 0], true, "name")
            .key(&[0])
            .build(9);
        r.on_event(&header(kind::TABLE_MAP, 1000, 19 + tm.len() as u32), &tm)
            .unwrap();
        let mut body = vec![9, 0, 0, 0, 0, 0, 0, 0, 3, 0b101];
        body.extend(row(7, Some("x")));
        let h = header(kind::WRITE_ROWS_V1, 1100, 19 + body.len() as u32);
        let Decoded::Changes(c) = r.on_event(&h, &body).unwrap() else {
            panic!()
        };
        let names: Vec<&str> = c[0].table.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["id", "name"]);
        assert_eq!(
            c[0].after,
            Some(vec![Value::Int(7), Value::String("x".into())])
        );
        // An image that leaves out another column is still refused.
        let mut partial = vec![9, 0, 0, 0, 0, 0, 0, 0, 3, 0b001];
        partial.extend([0, 7, 0, 0, 0]);
        let h = header(kind::WRITE_ROWS_V1, 1200, 19 + partial.len() as u32);
        let e = r.on_event(&h, &partial).unwrap_err().to_string();
        assert!(e.contains("binlog_row_image=FULL"), "{e}");
    }
}
