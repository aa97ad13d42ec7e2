//! The vocabulary every stage shares and none of them owns: tables, typed values, row changes,
//! binlog positions, versions and checkpoints.

pub mod time;

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A table, `database.table`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TableId {
    /// Database (schema) name.
    pub db: String,
    /// Table name.
    pub table: String,
}

impl TableId {
    /// Builds a table id from its two parts.
    pub fn new(db: impl Into<String>, table: impl Into<String>) -> Self {
        Self {
            db: db.into(),
            table: table.into(),
        }
    }

    /// Parses `db.table`; `None` unless there are exactly two non-empty parts.
    pub fn parse(s: &str) -> Option<Self> {
        let (db, table) = s.split_once('.')?;
        let valid = |p: &str| !p.is_empty() && !p.contains('.') && !p.contains(char::is_whitespace);
        (valid(db) && valid(table)).then(|| Self::new(db, table))
    }
}

impl fmt::Display for TableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.db, self.table)
    }
}

/// The column types Sluice decodes. Anything else stops the table with an error naming it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ColumnType {
    /// TINYINT (1 byte), SMALLINT (2), MEDIUMINT (3), INT (4), BIGINT (8).
    Integer {
        /// Storage width in bytes.
        bytes: u8,
        /// `UNSIGNED`.
        unsigned: bool,
    },
    /// DECIMAL(precision, scale).
    Decimal {
        /// Total digits.
        precision: u8,
        /// Digits after the point.
        scale: u8,
    },
    /// FLOAT: IEEE single precision.
    Float,
    /// DOUBLE: IEEE double precision.
    Double,
    /// BIT(bits), 1..=64.
    Bit {
        /// Declared width.
        bits: u8,
    },
    /// CHAR, VARCHAR and the TEXT family in any character set Sluice can transcode to UTF-8
    /// (MariaDB's JSON is LONGTEXT and arrives here too).
    Text,
    /// BINARY, VARBINARY and the BLOB family: raw bytes.
    Bytes,
    /// ENUM, with its labels in declaration order (index 1 is the first label).
    Enum(Arc<[String]>),
    /// SET, with its labels in bit order.
    Set(Arc<[String]>),
    /// MySQL's binary JSON, decoded to JSON text.
    Json,
    /// GEOMETRY and its subtypes: SRID plus well-known binary.
    Geometry,
    /// DATE.
    Date,
    /// YEAR: 1901..=2155, or 0 for the zero year `0000`.
    Year,
    /// TIME(fsp): a signed duration up to 838:59:59.
    Time {
        /// Fractional second digits, 0..=6.
        fsp: u8,
    },
    /// DATETIME(fsp): wall-clock time without a zone.
    DateTime {
        /// Fractional second digits, 0..=6.
        fsp: u8,
    },
    /// TIMESTAMP(fsp): an instant, stored in UTC.
    Timestamp {
        /// Fractional second digits, 0..=6.
        fsp: u8,
    },
    /// MySQL 9's VECTOR(dims): up to `dims` IEEE single-precision numbers.
    Vector {
        /// Declared dimensions (0 when the binlog does not say: binlog_row_metadata=MINIMAL).
        dims: u32,
    },
}

impl ColumnType {
    /// The SQL spelling, for messages and schema documentation.
    pub fn sql_name(&self) -> String {
        match self {
            ColumnType::Integer { bytes, unsigned } => {
                let name = match bytes {
                    1 => "TINYINT",
                    2 => "SMALLINT",
                    3 => "MEDIUMINT",
                    4 => "INT",
                    _ => "BIGINT",
                };
                if *unsigned {
                    format!("{name} UNSIGNED")
                } else {
                    name.to_string()
                }
            }
            ColumnType::Decimal { precision, scale } => format!("DECIMAL({precision},{scale})"),
            ColumnType::Float => "FLOAT".to_string(),
            ColumnType::Double => "DOUBLE".to_string(),
            ColumnType::Bit { bits } => format!("BIT({bits})"),
            ColumnType::Text => "TEXT".to_string(),
            ColumnType::Bytes => "BLOB".to_string(),
            ColumnType::Enum(_) => "ENUM".to_string(),
            ColumnType::Set(_) => "SET".to_string(),
            ColumnType::Json => "JSON".to_string(),
            ColumnType::Geometry => "GEOMETRY".to_string(),
            ColumnType::Date => "DATE".to_string(),
            ColumnType::Year => "YEAR".to_string(),
            ColumnType::Time { fsp } => format!("TIME({fsp})"),
            ColumnType::DateTime { fsp } => format!("DATETIME({fsp})"),
            ColumnType::Timestamp { fsp } => format!("TIMESTAMP({fsp})"),
            ColumnType::Vector { dims } => format!("VECTOR({dims})"),
        }
    }
}

/// One column of a table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// Column name as the database spells it.
    pub name: String,
    /// Decoded type.
    pub ty: ColumnType,
    /// Whether the column accepts NULL.
    pub nullable: bool,
    /// The column's comment, from information_schema (the binlog does not carry comments;
    /// schemas read from it keep the last comment known for the column's name).
    #[serde(default)]
    pub comment: Option<String>,
}

impl Column {
    /// A column named `name` of type `ty`, without a comment.
    pub fn new(name: impl Into<String>, ty: ColumnType, nullable: bool) -> Self {
        Column {
            name: name.into(),
            ty,
            nullable,
            comment: None,
        }
    }
}

/// The indexes of the columns named `names`, in that order; `Err` names the first missing one.
pub fn column_indices<'n>(columns: &[Column], names: &'n [String]) -> Result<Vec<usize>, &'n str> {
    names
        .iter()
        .map(|n| columns.iter().position(|c| &c.name == n).ok_or(n.as_str()))
        .collect()
}

/// A table's shape at one point of the binlog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSchema {
    /// Which table.
    pub id: TableId,
    /// Columns in table order.
    pub columns: Vec<Column>,
    /// Indexes into `columns` of the primary key, in key order. Never empty.
    pub key: Vec<usize>,
}

impl TableSchema {
    /// The primary-key values of a row, in key order.
    pub fn key_values<'r>(
        &self,
        row: &'r [Value],
    ) -> impl Iterator<Item = &'r Value> + use<'_, 'r> {
        self.key.iter().map(move |&i| &row[i])
    }
}

/// `db.table (col TYPE [NULL], ...) KEY (col, ...)`, for operators.
impl fmt::Display for TableSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (", self.id)?;
        for (i, c) in self.columns.iter().enumerate() {
            let sep = if i > 0 { ", " } else { "" };
            let null = if c.nullable { " NULL" } else { "" };
            write!(f, "{sep}{} {}{null}", c.name, c.ty.sql_name())?;
        }
        let key: Vec<&str> = self
            .key
            .iter()
            .map(|&i| self.columns[i].name.as_str())
            .collect();
        write!(f, ") KEY ({})", key.join(", "))
    }
}

/// A typed column value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// SQL NULL, and zero or impossible dates (counted as warnings where they are read).
    Null,
    /// Every integer column except BIGINT UNSIGNED.
    Int(i64),
    /// BIGINT UNSIGNED.
    UInt(u64),
    /// Exact decimal text, `-?digits[.digits]` with exactly the column's scale digits after
    /// the point and no leading zeros: it is what MySQL itself prints.
    Decimal(String),
    /// FLOAT.
    Float(f32),
    /// DOUBLE.
    Double(f64),
    /// BIT(n), right-aligned.
    Bits(u64),
    /// Text, valid UTF-8: character columns, ENUM and SET labels, JSON.
    String(String),
    /// BINARY, VARBINARY, BLOB.
    Bytes(Vec<u8>),
    /// GEOMETRY: the SRID and the well-known binary of the shape.
    Geometry {
        /// Spatial reference id (0 when none was given).
        srid: u32,
        /// OGC well-known binary.
        wkb: Vec<u8>,
    },
    /// TIME: signed microseconds.
    Time(i64),
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since 1970-01-01T00:00:00 on the wall clock (DATETIME).
    DateTime(i64),
    /// Microseconds since 1970-01-01T00:00:00Z (TIMESTAMP).
    Timestamp(i64),
    /// VECTOR.
    Vector(Vec<f32>),
}

impl Value {
    /// A VECTOR from its stored form, little-endian IEEE floats; `None` if the length is not a
    /// whole number of them.
    pub fn vector_from_le(bytes: &[u8]) -> Option<Value> {
        bytes.len().is_multiple_of(4).then(|| {
            Value::Vector(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            )
        })
    }
}

/// A row image: one value per column of its [`TableSchema`], in column order.
pub type Row = Vec<Value>;

/// What happened to a row, with Debezium's one-letter codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Inserted (`c`).
    Create,
    /// Updated in place (`u`).
    Update,
    /// Deleted (`d`).
    Delete,
    /// Read by a snapshot (`r`).
    Read,
    /// Every row removed by TRUNCATE TABLE (`t`): a change without row images or key.
    Truncate,
}

impl Op {
    /// Debezium's code for the operation.
    pub fn code(self) -> &'static str {
        match self {
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Read => "r",
            Op::Truncate => "t",
        }
    }
}

/// A place in the binlog: the position of the next event to read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Binlog file name, e.g. `binlog.000042`.
    pub file: String,
    /// Byte offset in that file.
    pub pos: u64,
    /// The server's GTID state at this point, when known (MariaDB `domain-server-seq[,...]`,
    /// MySQL `uuid:1-5[,...]`): resuming by GTID needs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid: Option<String>,
}

impl Position {
    /// A position without a known GTID state.
    pub fn new(file: impl Into<String>, pos: u64) -> Self {
        Position {
            file: file.into(),
            pos,
            gtid: None,
        }
    }
}

/// The server's GTID state at a position, in its own dialect: resuming by GTID needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GtidState {
    /// MariaDB: the last sequence number per replication domain, `domain-server-seq,...`.
    MariaDb(DomainGtids),
    /// MySQL: the executed GTID set, `uuid:1-5:7,...`.
    MySql(GtidSet),
}

impl GtidState {
    /// Parses either dialect (MySQL's has `:`); empty text is an empty MariaDB state.
    pub fn parse(s: &str) -> Option<Self> {
        if s.contains(':') {
            GtidSet::parse(s).map(GtidState::MySql)
        } else {
            DomainGtids::parse(s).map(GtidState::MariaDb)
        }
    }

    /// Whether no transaction is known.
    pub fn is_empty(&self) -> bool {
        match self {
            GtidState::MariaDb(d) => d.0.is_empty(),
            GtidState::MySql(s) => s.0.is_empty(),
        }
    }
}

impl fmt::Display for GtidState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GtidState::MariaDb(d) => d.fmt(f),
            GtidState::MySql(s) => s.fmt(f),
        }
    }
}

/// MariaDB's GTID state: the last sequence number per replication domain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DomainGtids(std::collections::BTreeMap<u32, (u32, u64)>);

impl DomainGtids {
    /// Parses `domain-server-seq[,domain-server-seq...]` (empty text is the empty state).
    pub fn parse(s: &str) -> Option<Self> {
        let mut state = DomainGtids::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut it = part.split('-');
            let (d, srv, seq) = (it.next()?, it.next()?, it.next()?);
            if it.next().is_some() {
                return None;
            }
            state.set(d.parse().ok()?, srv.parse().ok()?, seq.parse().ok()?);
        }
        Some(state)
    }

    /// Records the GTID of a transaction.
    pub fn set(&mut self, domain: u32, server: u32, seq: u64) {
        self.0.insert(domain, (server, seq));
    }
}

impl fmt::Display for DomainGtids {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (d, (srv, seq))) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}-{srv}-{seq}")?;
        }
        Ok(())
    }
}

/// A MySQL GTID set: per source UUID and tag (MySQL 8.3+; `""` untagged), the transaction
/// numbers executed, as sorted, disjoint, non-adjacent `[start, end)` intervals (the form
/// COM_BINLOG_DUMP_GTID sends).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GtidSet(std::collections::BTreeMap<Tsid, Vec<(u64, u64)>>);

/// A GTID source: server UUID and tag (`""` untagged).
type Tsid = ([u8; 16], String);

impl GtidSet {
    /// Parses `uuid:1-5:7[:tag:1-3][,uuid:...]` as `@@gtid_executed` prints it (newlines
    /// allowed).
    pub fn parse(s: &str) -> Option<Self> {
        let mut set = GtidSet::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut it = part.split(':');
            let uuid = parse_uuid(it.next()?)?;
            // A tag applies to the intervals after it, and must have some.
            let (mut tag, mut bare_tag) = (String::new(), false);
            for item in it {
                if item.starts_with(|c: char| c.is_ascii_lowercase() || c == '_') {
                    (tag, bare_tag) = (item.to_string(), true);
                    continue;
                }
                let (a, b) = item.split_once('-').unwrap_or((item, item));
                let (a, b): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
                if a == 0 || b < a || b == u64::MAX {
                    return None;
                }
                set.insert(uuid, &tag, a, b + 1);
                bare_tag = false;
            }
            if bare_tag {
                return None;
            }
        }
        Some(set)
    }

    /// Adds transaction `gno` of source `uuid` and `tag`.
    pub fn add(&mut self, uuid: [u8; 16], tag: &str, gno: u64) {
        self.insert(uuid, tag, gno, gno.saturating_add(1));
    }

    /// Adds the transactions `[start, end)` of source `uuid` and `tag`, merging intervals.
    pub fn insert(&mut self, uuid: [u8; 16], tag: &str, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let intervals = self.0.entry((uuid, tag.to_string())).or_default();
        intervals.push((start, end));
        intervals.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(intervals.len());
        for &(a, b) in intervals.iter() {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        *intervals = merged;
    }

    /// Each source UUID and tag (`""` untagged) with its `[start, end)` intervals.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8; 16], &str, &[(u64, u64)])> {
        self.0
            .iter()
            .map(|((u, t), i)| (u, t.as_str(), i.as_slice()))
    }
}

/// The 16 bytes of a textual UUID (hyphens optional).
fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A source UUID as MySQL prints it: `8-4-4-4-12` lower-case hex digits.
pub fn format_uuid(uuid: &[u8; 16]) -> String {
    let hex: String = uuid.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

impl fmt::Display for GtidSet {
    /// MySQL's form: a UUID once, its untagged intervals, then each tag and its intervals.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut last: Option<&[u8; 16]> = None;
        for ((uuid, tag), intervals) in &self.0 {
            if last != Some(uuid) {
                if last.is_some() {
                    f.write_str(",")?;
                }
                f.write_str(&format_uuid(uuid))?;
                last = Some(uuid);
            }
            if !tag.is_empty() {
                write!(f, ":{tag}")?;
            }
            for &(a, b) in intervals {
                if b - a == 1 {
                    write!(f, ":{a}")?;
                } else {
                    write!(f, ":{a}-{}", b - 1)?;
                }
            }
        }
        Ok(())
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)
    }
}

/// The order of a change in the binlog, used as Elasticsearch's external version.
///
/// `file sequence << 32 | byte offset of the row image in that file`: every row image starts at
/// its own offset, so versions grow strictly in binlog order, across files too, and stay
/// positive as a signed 64-bit `long` while the file sequence is below 2^31.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(u64);

impl Version {
    /// The version of whatever sits at `offset` in the binlog file with sequence `file_seq`.
    pub fn at(file_seq: u32, offset: u32) -> Self {
        Version((u64::from(file_seq) << 32) | u64::from(offset))
    }

    /// The raw number.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// The numeric sequence of a binlog file name (`binlog.000042` -> 42), if it fits a version.
pub fn binlog_file_sequence(file: &str) -> Option<u32> {
    let digits = file.rsplit('.').next()?;
    let seq: u32 = digits.parse().ok()?;
    (seq < 1 << 31).then_some(seq)
}

/// Where a change came from: Debezium's `source` block.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceInfo {
    /// Binlog file of the event, or of the snapshot's consistent point.
    pub file: Arc<str>,
    /// Offset of the event (or of the snapshot point) in `file`.
    pub pos: u64,
    /// Index of the row inside its rows event (0 for snapshot rows).
    pub row: u32,
    /// Server id that wrote the event.
    pub server_id: u32,
    /// Event time (commit time for snapshot reads), milliseconds since the epoch.
    pub ts_ms: i64,
    /// GTID of the transaction, `domain-server-sequence`, when the server sends GTIDs.
    pub gtid: Option<Arc<str>>,
    /// Whether the row was read by a snapshot.
    pub snapshot: bool,
    /// Connection id of the session that made the change, when the binlog names it (MySQL's
    /// BEGIN carries it; MariaDB's GTID-framed transactions do not).
    pub thread: Option<u32>,
    /// The SQL statement behind the row, with `source.include_query` on and the server
    /// logging statements (MariaDB `binlog_annotate_row_events`, MySQL
    /// `binlog_rows_query_log_events`).
    pub query: Option<Arc<str>>,
    /// The change's transaction and place in it; `None` for snapshot reads.
    pub transaction: Option<TxPosition>,
}

#[cfg(test)]
impl SourceInfo {
    /// A streamed change's origin at `file:pos`, the other fields empty (tests).
    pub(crate) fn at(file: &str, pos: u64) -> Self {
        SourceInfo {
            file: Arc::from(file),
            pos,
            row: 0,
            server_id: 1,
            ts_ms: 0,
            gtid: None,
            snapshot: false,
            thread: None,
            query: None,
            transaction: None,
        }
    }
}

/// Debezium's transaction block: which transaction, and the change's place in it.
#[derive(Clone, Debug, PartialEq)]
pub struct TxPosition {
    /// The transaction's GTID, or `file:pos` of its start without GTIDs.
    pub id: Arc<str>,
    /// 1-based index of the change among all of the transaction's changes.
    pub total_order: u64,
    /// 1-based index of the change among the transaction's changes of the same table.
    pub collection_order: u64,
}

/// One row change, the unit that travels through the pipeline.
#[derive(Clone, Debug)]
pub struct Change {
    /// Schema of the table at the change's position.
    pub table: Arc<TableSchema>,
    /// What happened.
    pub op: Op,
    /// Row image before the change (update, delete).
    pub before: Option<Row>,
    /// Row image after the change (create, update, read).
    pub after: Option<Row>,
    /// Binlog order of the change.
    pub version: Version,
    /// Origin of the change.
    pub source: SourceInfo,
}

/// How far a table's snapshot got: what a restart continues from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotProgress {
    /// The binlog position the snapshot began at, where streaming starts once it is done.
    pub position: Position,
    /// Key of the last row copied, in key order; empty before the first chunk.
    pub last_key: Vec<Value>,
    /// Rows copied so far.
    pub rows: u64,
    /// Chunks copied so far.
    pub chunks: u64,
}

/// How far an incremental snapshot (a re-snapshot while streaming, in watermarked windows)
/// got: what a restart continues from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowProgress {
    /// The request's id: the signal row's, or `added-<db.table>` for a table added to the
    /// config.
    pub id: String,
    /// Only rows matching this SQL condition are copied.
    pub filter: Option<String>,
    /// Key of the last row selected, in key order; empty before the first window.
    pub last_key: Vec<Value>,
    /// Rows selected so far (some were dropped because the binlog changed them meanwhile).
    pub rows: u64,
    /// Windows closed so far.
    pub windows: u64,
}

/// A point that is safe to resume from, once Kafka acknowledged everything before it.
#[derive(Clone, Debug, PartialEq)]
pub enum Checkpoint {
    /// Streaming reached a transaction commit; resume after it.
    Stream(Position),
    /// A snapshot of `tables` consistent with `position` is complete. Streaming starts at
    /// `position` unless a stored position already exists.
    Snapshot {
        /// Tables copied by the snapshot.
        tables: Vec<TableId>,
        /// The binlog position streaming starts at for these tables.
        position: Position,
    },
    /// A chunk of a table's snapshot is published: a restart continues after it.
    Chunk {
        /// The table.
        table: TableId,
        /// Where its snapshot stands.
        progress: SnapshotProgress,
    },
    /// An incremental snapshot was requested, or one of its windows is published.
    Window {
        /// The table.
        table: TableId,
        /// Where its incremental snapshot stands.
        progress: WindowProgress,
    },
    /// An incremental snapshot is complete: the table counts as snapshotted.
    WindowsDone {
        /// The table.
        table: TableId,
        /// The request's id.
        id: String,
        /// The binlog position of its last window.
        position: Position,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gtid_states_round_trip() {
        let mut s = DomainGtids::parse("1-2-30, 0-1-5").unwrap();
        assert_eq!(s.to_string(), "0-1-5,1-2-30");
        s.set(0, 3, 6);
        assert_eq!(s.to_string(), "0-3-6,1-2-30");
        assert_eq!(DomainGtids::parse("").unwrap(), DomainGtids::default());
        assert_eq!(DomainGtids::parse("0-1"), None);
        assert_eq!(DomainGtids::parse("0-1-x"), None);
        assert!(matches!(
            GtidState::parse("0-1-5"),
            Some(GtidState::MariaDb(_))
        ));
        assert!(GtidState::parse("").unwrap().is_empty());
    }

    #[test]
    fn mysql_gtid_sets_merge_and_print_like_gtid_executed() {
        let a = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let b = "00000000-0000-0000-0000-000000000001";
        let text = format!("{a}:1-5:7,\n{b}:3");
        let Some(GtidState::MySql(mut set)) = GtidState::parse(&text) else {
            panic!()
        };
        assert_eq!(set.to_string(), format!("{b}:3,{a}:1-5:7"));
        let uuid = *set.iter().nth(1).unwrap().0;
        set.add(uuid, "", 6); // bridges 1-5 and 7
        set.add(uuid, "", 9);
        set.add(uuid, "", 3); // already in
        assert_eq!(set.to_string(), format!("{b}:3,{a}:1-7:9"));
        assert_eq!(set.iter().nth(1).unwrap().2, [(1, 8), (9, 10)]);
        assert_eq!(GtidSet::parse(&set.to_string()), Some(set.clone()));
        // Tags (MySQL 8.3+) follow the UUID's untagged intervals.
        set.add(uuid, "mytag", 2);
        set.add(uuid, "mytag", 1);
        set.add(uuid, "a_tag", 4);
        assert_eq!(
            set.to_string(),
            format!("{b}:3,{a}:1-7:9:a_tag:4:mytag:1-2")
        );
        assert_eq!(GtidSet::parse(&set.to_string()), Some(set));
        for bad in [
            format!("{a}:0"),
            format!("{a}:5-3"),
            "xyz:1".into(),
            format!("{a}:x"),
        ] {
            assert_eq!(GtidSet::parse(&bad), None, "{bad}");
        }
    }

    #[test]
    fn parses_table_ids() {
        assert_eq!(
            TableId::parse("shop.orders"),
            Some(TableId::new("shop", "orders"))
        );
        for bad in ["shop", "shop.", ".orders", "a.b.c", "a b.c", ""] {
            assert_eq!(TableId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn versions_grow_across_files_and_stay_positive_longs() {
        assert!(Version::at(1, u32::MAX) < Version::at(2, 4));
        assert!(Version::at(7, 100) < Version::at(7, 101));
        let last = Version::at(binlog_file_sequence("binlog.2147483647").unwrap(), u32::MAX);
        assert!(i64::try_from(last.get()).is_ok());
        assert_eq!(binlog_file_sequence("binlog.2147483648"), None);
        assert_eq!(binlog_file_sequence("mysql-bin.000042"), Some(42));
        assert_eq!(binlog_file_sequence("nonsense"), None);
    }
}
