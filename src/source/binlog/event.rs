//! Event types and the small control events: format description, rotate, query, MariaDB GTID.
//! Bodies are the bytes after the 19-byte common header, without the checksum.

use super::cursor::{Cursor, DecodeError};
use crate::model::{GtidSet, TableId};

/// Binlog event type codes (MySQL and MariaDB).
pub mod kind {
    /// Statement text: BEGIN, COMMIT, DDL.
    pub const QUERY: u8 = 2;
    /// Server stopped; the next file follows.
    pub const STOP: u8 = 3;
    /// Next binlog file.
    pub const ROTATE: u8 = 4;
    /// Statement-based auto-increment value.
    pub const INTVAR: u8 = 5;
    /// Statement-based RAND() seed.
    pub const RAND: u8 = 13;
    /// Statement-based user variable.
    pub const USER_VAR: u8 = 14;
    /// Format description.
    pub const FORMAT_DESCRIPTION: u8 = 15;
    /// Transaction commit (InnoDB).
    pub const XID: u8 = 16;
    /// Table id -> table definition.
    pub const TABLE_MAP: u8 = 19;
    /// Rows events, version 1 (MariaDB's default).
    pub const WRITE_ROWS_V1: u8 = 23;
    /// See [`WRITE_ROWS_V1`].
    pub const UPDATE_ROWS_V1: u8 = 24;
    /// See [`WRITE_ROWS_V1`].
    pub const DELETE_ROWS_V1: u8 = 25;
    /// Keep-alive on an idle stream.
    pub const HEARTBEAT: u8 = 27;
    /// Event the server marks as safe to ignore.
    pub const IGNORABLE: u8 = 28;
    /// Original statement of a rows event (MySQL).
    pub const ROWS_QUERY: u8 = 29;
    /// Rows events, version 2 (MySQL's default).
    pub const WRITE_ROWS_V2: u8 = 30;
    /// See [`WRITE_ROWS_V2`].
    pub const UPDATE_ROWS_V2: u8 = 31;
    /// See [`WRITE_ROWS_V2`].
    pub const DELETE_ROWS_V2: u8 = 32;
    /// MySQL GTID.
    pub const MYSQL_GTID: u8 = 33;
    /// MySQL anonymous GTID.
    pub const MYSQL_ANONYMOUS_GTID: u8 = 34;
    /// MySQL previous GTIDs.
    pub const MYSQL_PREVIOUS_GTIDS: u8 = 35;
    /// MySQL 8.3+: GTID with a tag.
    pub const MYSQL_GTID_TAGGED: u8 = 42;
    /// MariaDB: original statement of a rows event.
    pub const ANNOTATE_ROWS: u8 = 160;
    /// MariaDB: binlog checkpoint.
    pub const BINLOG_CHECKPOINT: u8 = 161;
    /// MariaDB: transaction start with its GTID.
    pub const MARIADB_GTID: u8 = 162;
    /// MariaDB: GTID state at the start of a file.
    pub const GTID_LIST: u8 = 163;
    /// MariaDB: the rest of the file is encrypted.
    pub const START_ENCRYPTION: u8 = 164;
    /// MariaDB: query event with compressed text (`log_bin_compress=ON`).
    pub const QUERY_COMPRESSED: u8 = 165;
    /// MariaDB: v1 rows events with compressed row images.
    pub const WRITE_ROWS_COMPRESSED_V1: u8 = 166;
    /// See [`WRITE_ROWS_COMPRESSED_V1`].
    pub const UPDATE_ROWS_COMPRESSED_V1: u8 = 167;
    /// See [`WRITE_ROWS_COMPRESSED_V1`].
    pub const DELETE_ROWS_COMPRESSED_V1: u8 = 168;
    /// MariaDB: v2 rows events with compressed row images.
    pub const WRITE_ROWS_COMPRESSED_V2: u8 = 169;
    /// See [`WRITE_ROWS_COMPRESSED_V2`].
    pub const UPDATE_ROWS_COMPRESSED_V2: u8 = 170;
    /// See [`WRITE_ROWS_COMPRESSED_V2`].
    pub const DELETE_ROWS_COMPRESSED_V2: u8 = 171;
    /// MySQL: zstd-compressed transaction (`binlog_transaction_compression=ON`).
    pub const TRANSACTION_PAYLOAD: u8 = 40;
    /// MySQL: partial JSON update rows event.
    pub const PARTIAL_UPDATE_ROWS: u8 = 39;
    /// The end of an XA transaction's prepared part (XA PREPARE; MySQL's XA COMMIT ... ONE
    /// PHASE).
    pub const XA_PREPARE: u8 = 38;
}

/// The events of a statement-based LOAD DATA: a server writes them when it is not on
/// `binlog_format=ROW`, and their changes are statements Sluice cannot read.
pub fn load_data_event(event_type: u8) -> Option<&'static str> {
    Some(match event_type {
        8 => "CREATE_FILE",
        9 => "APPEND_BLOCK",
        10 => "EXEC_LOAD",
        11 => "DELETE_FILE",
        12 => "NEW_LOAD",
        17 => "BEGIN_LOAD_QUERY",
        18 => "EXECUTE_LOAD_QUERY",
        _ => return None,
    })
}

/// Event flag: a reader that does not know the event's type may skip it.
pub const LOG_EVENT_IGNORABLE_F: u16 = 0x80;

/// Whether an event type carries nothing a row-level CDC reader needs.
pub fn is_harmless(event_type: u8) -> bool {
    use kind::*;
    matches!(
        event_type,
        STOP | INTVAR
            | RAND
            | USER_VAR
            | HEARTBEAT
            | IGNORABLE
            | ROWS_QUERY
            | ANNOTATE_ROWS
            | BINLOG_CHECKPOINT
    )
}

/// Which server wrote a binlog, where the two servers' formats part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// MariaDB.
    MariaDb,
    /// MySQL (or Percona, Aurora), with its version.
    MySql {
        /// Major, minor and patch release.
        version: (u16, u16, u16),
    },
}

impl Flavor {
    /// The flavor a server version string (`10.11.14-MariaDB-log`, `8.0.36`) names.
    pub fn of(version: &str) -> Flavor {
        if version.contains("MariaDB") {
            return Flavor::MariaDb;
        }
        let mut parts = version
            .split(|c: char| !c.is_ascii_digit())
            .map(|p| p.parse::<u16>().unwrap_or(0));
        let mut next = || parts.next().unwrap_or(0);
        Flavor::MySql {
            version: (next(), next(), next()),
        }
    }
}

/// What the format description tells a reader: the server that wrote the binlog and each
/// event type's post-header length.
#[derive(Clone, Debug)]
pub struct FormatDescription {
    /// The writing server.
    pub flavor: Flavor,
    post_header_lengths: Vec<u8>,
}

impl FormatDescription {
    /// Parses a FORMAT_DESCRIPTION body (without the trailing checksum algorithm byte).
    pub fn parse(body: &[u8]) -> Result<Self, DecodeError> {
        let mut c = Cursor::new(body);
        c.take(2, "binlog format version")?;
        let version = c.take(50, "server version")?;
        let version = String::from_utf8_lossy(version.split(|&b| b == 0).next().unwrap_or(&[]));
        c.take(4, "format description timestamp")?;
        let header_len = c.u8("common header length")?;
        if header_len != 19 {
            return Err(DecodeError::Invalid(format!(
                "common header length {header_len}, expected 19 (binlog version 4)"
            )));
        }
        Ok(FormatDescription {
            flavor: Flavor::of(&version),
            post_header_lengths: c.rest().to_vec(),
        })
    }

    /// Post-header length of `event_type`, or `default` for types the server did not list.
    pub fn post_header_len(&self, event_type: u8, default: usize) -> usize {
        usize::from(event_type)
            .checked_sub(1)
            .and_then(|i| self.post_header_lengths.get(i))
            .map_or(default, |&l| usize::from(l))
    }
}

/// A ROTATE body: the next file and the position in it.
pub fn parse_rotate(body: &[u8]) -> Result<(String, u64), DecodeError> {
    let mut c = Cursor::new(body);
    let pos = c.uint_le(8, "rotate position")?;
    let name = std::str::from_utf8(c.rest())
        .map_err(|_| DecodeError::Invalid("rotate file name is not UTF-8".into()))?;
    Ok((name.to_string(), pos))
}

/// A QUERY event's thread id and statement text.
pub fn parse_query(body: &[u8], post_header_len: usize) -> Result<Query<'_>, DecodeError> {
    let mut c = Cursor::new(body);
    let thread = c.uint_le(4, "query thread id")? as u32;
    c.take(4, "query exec time")?;
    let db_len = usize::from(c.u8("query db length")?);
    c.take(2, "query error code")?;
    let status_len = if post_header_len >= 13 {
        c.uint_le(2, "query status length")? as usize
    } else {
        0
    };
    c.take(post_header_len.saturating_sub(13), "query post-header")?;
    c.take(status_len, "query status variables")?;
    let db = &c.take(db_len + 1, "query database")?[..db_len];
    Ok(Query {
        thread,
        db,
        text: c.rest(),
    })
}

/// A QUERY event's statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query<'a> {
    /// Connection that ran it.
    pub thread: u32,
    /// Default database of the statement (may be empty).
    pub db: &'a [u8],
    /// Statement text.
    pub text: &'a [u8],
}

/// The table a `TRUNCATE [TABLE] [db.]name` statement empties, resolved against the
/// statement's default database; `None` for any other statement.
pub fn truncated_table(q: &Query<'_>) -> Option<TableId> {
    let text = std::str::from_utf8(q.text).ok()?.trim_start();
    let mut words = text.split_whitespace();
    if !words.next()?.eq_ignore_ascii_case("TRUNCATE") {
        return None;
    }
    let mut name = words.next()?;
    if name.eq_ignore_ascii_case("TABLE") {
        name = words.next()?;
    }
    table_named(q, name)
}

/// The table `name` (`t`, `db.t`, back-quoted or not) names, against `q`'s default database.
fn table_named(q: &Query<'_>, name: &str) -> Option<TableId> {
    let name = name.trim_end_matches(';');
    let parts: Vec<String> = name
        .split('.')
        .map(|p| p.trim_matches('`').to_string())
        .collect();
    match parts.as_slice() {
        [table] => Some(TableId::new(
            std::str::from_utf8(q.db).ok()?,
            table.as_str(),
        )),
        [db, table] => Some(TableId::new(db.as_str(), table.as_str())),
        _ => None,
    }
}

/// The table an `ALTER TABLE ... ADD [COLUMN] ...` statement adds a column to; `None` for any
/// other statement (an ALTER that adds only indexes, keys, constraints or partitions).
pub fn column_added_table(q: &Query<'_>) -> Option<TableId> {
    let text = std::str::from_utf8(q.text).ok()?;
    let words: Vec<&str> = text.split_whitespace().collect();
    let at = |i: usize, w: &str| words.get(i).is_some_and(|x| x.eq_ignore_ascii_case(w));
    if !at(0, "ALTER") {
        return None;
    }
    let mut i = 1;
    while at(i, "ONLINE") || at(i, "IGNORE") {
        i += 1;
    }
    if !at(i, "TABLE") {
        return None;
    }
    let table = words.get(i + 1)?;
    let not_a_column = [
        "INDEX",
        "KEY",
        "CONSTRAINT",
        "PRIMARY",
        "UNIQUE",
        "FOREIGN",
        "FULLTEXT",
        "SPATIAL",
        "PARTITION",
        "CHECK",
        "PERIOD",
        "SYSTEM",
    ];
    let adds_column = words.windows(2).skip(i + 2).any(|w| {
        w[0].trim_start_matches(',').eq_ignore_ascii_case("ADD")
            && !not_a_column
                .iter()
                .any(|k| w[1].trim_start_matches('(').eq_ignore_ascii_case(k))
    });
    adds_column.then(|| table_named(q, table)).flatten()
}

/// What a DDL statement did to tables by name: dropped them or gave them other names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableGone {
    /// `DROP TABLE` (or the database holding it was dropped).
    Dropped(TableId),
    /// `RENAME TABLE` or `ALTER TABLE ... RENAME`: the table now has the second name.
    Renamed(TableId, TableId),
}

/// The tables a `DROP TABLE`, `DROP DATABASE`, `RENAME TABLE` or `ALTER TABLE ... RENAME
/// [TO|AS]` statement drops or renames; a dropped database is `db.*` (table name `*`).
/// Chained renames (`a TO b, b TO c`) give each table its final name.
pub fn tables_gone(q: &Query<'_>) -> Vec<TableGone> {
    let Ok(text) = std::str::from_utf8(q.text) else {
        return Vec::new();
    };
    let Some(db) = std::str::from_utf8(q.db).ok() else {
        return Vec::new();
    };
    let tokens = sql::tokens(text);
    let mut p = sql::Parser::new(&tokens, db);
    if p.keyword("DROP") {
        if p.keyword("TEMPORARY") {
            return Vec::new();
        }
        if p.keyword("DATABASE") || p.keyword("SCHEMA") {
            p.if_exists();
            return p
                .ident()
                .map(|d| TableGone::Dropped(TableId::new(d, "*")))
                .into_iter()
                .collect();
        }
        if !(p.keyword("TABLE") || p.keyword("TABLES")) {
            return Vec::new();
        }
        p.if_exists();
        let mut out = Vec::new();
        while let Some(t) = p.name() {
            out.push(TableGone::Dropped(t));
            if !p.punct(',') {
                break;
            }
        }
        return out;
    }
    if p.keyword("RENAME") {
        if !(p.keyword("TABLE") || p.keyword("TABLES")) {
            return Vec::new();
        }
        p.if_exists();
        let mut pairs: Vec<(TableId, TableId)> = Vec::new();
        while let Some(from) = p.name() {
            p.wait();
            let Some(to) = p.keyword("TO").then(|| p.name()).flatten() else {
                break;
            };
            pairs.push((from, to));
            if !p.punct(',') {
                break;
            }
        }
        // A pair renaming what an earlier pair just named is a step of that one's chain.
        let chained = |i: usize| pairs[..i].iter().any(|(_, to)| *to == pairs[i].0);
        let finals = (0..pairs.len()).filter(|&i| !chained(i)).map(|i| {
            let mut to = pairs[i].1.clone();
            for (from, next) in &pairs[i + 1..] {
                if *from == to {
                    to = next.clone();
                }
            }
            TableGone::Renamed(pairs[i].0.clone(), to)
        });
        return finals.collect();
    }
    if p.keyword("ALTER") {
        while p.keyword("ONLINE") || p.keyword("IGNORE") {}
        if !p.keyword("TABLE") {
            return Vec::new();
        }
        p.if_exists();
        let Some(from) = p.name() else {
            return Vec::new();
        };
        p.wait();
        // Each alter specification starts the statement or follows a top-level comma.
        let mut spec_start = true;
        while !p.done() {
            if spec_start && p.keyword("RENAME") {
                let not_the_table = ["COLUMN", "INDEX", "KEY", "CONSTRAINT"];
                if not_the_table.iter().any(|k| p.peek_keyword(k)) {
                    spec_start = false;
                    continue;
                }
                let _ = p.keyword("TO") || p.keyword("AS") || p.punct('=');
                return p
                    .name()
                    .map(|to| TableGone::Renamed(from, to))
                    .into_iter()
                    .collect();
            }
            spec_start = p.skip_to_top_level_comma();
        }
    }
    Vec::new()
}

/// Just enough of MySQL's lexical rules to read the names in DDL statements: identifiers
/// (quoted with backquotes or not), strings, punctuation; comments are dropped, and the body
/// of a versioned comment (`/*!50100 ... */`, `/*M!100100 ... */`) is read as text.
mod sql {
    use crate::model::TableId;

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Token {
        /// A name or keyword; `quoted` when written in backquotes (never a keyword then).
        Ident { text: String, quoted: bool },
        /// A string or number literal (its value is not needed).
        Literal,
        /// One character of punctuation.
        Punct(char),
    }

    pub fn tokens(text: &str) -> Vec<Token> {
        let mut out = Vec::new();
        lex(text, &mut out);
        out
    }

    fn lex(text: &str, out: &mut Vec<Token>) {
        let chars: Vec<char> = text.chars().collect();
        let mut i = 0;
        let word = |c: char| c.is_alphanumeric() || c == '_' || c == '$';
        while i < chars.len() {
            let c = chars[i];
            let next = chars.get(i + 1).copied();
            if c.is_whitespace() {
                i += 1;
            } else if c == '/' && next == Some('*') {
                let end = (i + 2..chars.len().saturating_sub(1))
                    .find(|&j| chars[j] == '*' && chars[j + 1] == '/')
                    .unwrap_or(chars.len());
                let body: String = chars[(i + 2).min(end)..end].iter().collect();
                let versioned = body
                    .strip_prefix('!')
                    .or_else(|| body.strip_prefix("M!"))
                    .map(|b| b.trim_start_matches(|c: char| c.is_ascii_digit()));
                if let Some(body) = versioned {
                    lex(body, out);
                }
                i = end + 2;
            } else if c == '#' || (c == '-' && next == Some('-')) {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            } else if c == '`' {
                let mut name = String::new();
                i += 1;
                while i < chars.len() {
                    if chars[i] == '`' {
                        if chars.get(i + 1) == Some(&'`') {
                            name.push('`');
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    name.push(chars[i]);
                    i += 1;
                }
                i += 1;
                out.push(Token::Ident {
                    text: name,
                    quoted: true,
                });
            } else if c == '\'' || c == '"' {
                i += 1;
                while i < chars.len() {
                    // A backslash escape or a doubled quote is two characters of the string.
                    let escaped =
                        chars[i] == '\\' || (chars[i] == c && chars.get(i + 1) == Some(&c));
                    if escaped {
                        i += 2;
                    } else if chars[i] == c {
                        break;
                    } else {
                        i += 1;
                    }
                }
                i += 1;
                out.push(Token::Literal);
            } else if word(c) {
                let start = i;
                while i < chars.len() && word(chars[i]) {
                    i += 1;
                }
                out.push(Token::Ident {
                    text: chars[start..i].iter().collect(),
                    quoted: false,
                });
            } else {
                out.push(Token::Punct(c));
                i += 1;
            }
        }
    }

    /// Reads tokens in order; names default to the statement's database.
    pub struct Parser<'a> {
        tokens: &'a [Token],
        at: usize,
        db: &'a str,
    }

    impl<'a> Parser<'a> {
        pub fn new(tokens: &'a [Token], db: &'a str) -> Self {
            Parser { tokens, at: 0, db }
        }

        pub fn done(&self) -> bool {
            self.at >= self.tokens.len()
        }

        pub fn peek_keyword(&self, word: &str) -> bool {
            matches!(self.tokens.get(self.at), Some(Token::Ident { text, quoted: false }) if text.eq_ignore_ascii_case(word))
        }

        pub fn keyword(&mut self, word: &str) -> bool {
            let yes = self.peek_keyword(word);
            self.at += usize::from(yes);
            yes
        }

        pub fn punct(&mut self, c: char) -> bool {
            let yes = self.tokens.get(self.at) == Some(&Token::Punct(c));
            self.at += usize::from(yes);
            yes
        }

        pub fn if_exists(&mut self) {
            if self.peek_keyword("IF") {
                self.at += 2;
            }
        }

        /// MariaDB's `WAIT n` / `NOWAIT` lock-timeout clause.
        pub fn wait(&mut self) {
            if self.keyword("WAIT") {
                self.at += 1;
            } else {
                self.keyword("NOWAIT");
            }
        }

        pub fn ident(&mut self) -> Option<String> {
            match self.tokens.get(self.at) {
                Some(Token::Ident { text, .. }) => {
                    self.at += 1;
                    Some(text.clone())
                }
                _ => None,
            }
        }

        /// `table` or `db.table`.
        pub fn name(&mut self) -> Option<TableId> {
            let first = self.ident()?;
            if self.punct('.') {
                let table = self.ident()?;
                return Some(TableId::new(first, table));
            }
            Some(TableId::new(self.db, first))
        }

        /// Skips to just after the next comma outside parentheses; false at the end.
        pub fn skip_to_top_level_comma(&mut self) -> bool {
            let mut depth = 0usize;
            while let Some(t) = self.tokens.get(self.at) {
                self.at += 1;
                match t {
                    Token::Punct('(') => depth += 1,
                    Token::Punct(')') => depth = depth.saturating_sub(1),
                    Token::Punct(',') if depth == 0 => return true,
                    _ => {}
                }
            }
            false
        }
    }
}

/// How a QUERY event bears on transaction boundaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryKind {
    /// `BEGIN`: a transaction starts.
    Begin,
    /// `COMMIT` (non-transactional engines write this instead of XID).
    Commit,
    /// `ROLLBACK`: the changes of non-transactional tables before it did happen.
    Rollback,
    /// `SAVEPOINT name` inside a transaction.
    Savepoint(String),
    /// `ROLLBACK [WORK] TO [SAVEPOINT] name`: the transaction's changes since that savepoint
    /// are undone and the transaction goes on. The server logs it (with those changes before
    /// it) when the transaction also changed a non-transactional table; otherwise it drops
    /// the undone changes from the binlog itself.
    RollbackToSavepoint(String),
    /// `XA START xid`: MySQL's first statement of an XA transaction.
    XaStart(Xid),
    /// `XA COMMIT xid`; with `ONE PHASE`, the end of the XA transaction it is written in.
    XaCommit(Xid, bool),
    /// `XA ROLLBACK xid`: a prepared XA transaction is undone.
    XaRollback(Xid),
    /// Anything else: DDL and other statements (XA END too).
    Other,
}

/// An XA transaction's identifier: format id, global transaction id and branch qualifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Xid {
    /// Format id.
    pub format: u32,
    /// Global transaction id.
    pub gtrid: Vec<u8>,
    /// Branch qualifier.
    pub bqual: Vec<u8>,
}

impl std::fmt::Display for Xid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02X}")).collect::<String>();
        write!(
            f,
            "X'{}',X'{}',{}",
            hex(&self.gtrid),
            hex(&self.bqual),
            self.format
        )
    }
}

impl Xid {
    /// Parses the form both servers log XA statements with: `X'hex',X'hex',format`.
    fn parse_logged(text: &str) -> Option<Xid> {
        let hex = |s: &str| -> Option<Vec<u8>> {
            let h = s.trim().strip_prefix("X'")?.strip_suffix('\'')?;
            (0..h.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(h.get(i..i + 2)?, 16).ok())
                .collect()
        };
        let mut parts = text.split(',');
        let (gtrid, bqual, format) = (parts.next()?, parts.next()?, parts.next()?);
        let format = format.split_whitespace().next()?.parse().ok()?;
        Some(Xid {
            format,
            gtrid: hex(gtrid)?,
            bqual: hex(bqual)?,
        })
    }

    /// Reads `format (4 bytes), gtrid length, bqual length, data`, the lengths `len_bytes`
    /// wide.
    fn read(c: &mut Cursor<'_>, len_bytes: usize) -> Result<Xid, DecodeError> {
        let format = c.uint_le(4, "XA format id")? as u32;
        let gtrid = c.uint_le(len_bytes, "XA gtrid length")? as usize;
        let bqual = c.uint_le(len_bytes, "XA bqual length")? as usize;
        if gtrid > 64 || bqual > 64 {
            return Err(DecodeError::Invalid(format!(
                "XA id parts of {gtrid} and {bqual} bytes (at most 64 each)"
            )));
        }
        Ok(Xid {
            format,
            gtrid: c.take(gtrid, "XA gtrid")?.to_vec(),
            bqual: c.take(bqual, "XA bqual")?.to_vec(),
        })
    }
}

/// An XA_PREPARE body: whether it is a one-phase commit, and the transaction.
pub fn parse_xa_prepare(body: &[u8]) -> Result<(bool, Xid), DecodeError> {
    let mut c = Cursor::new(body);
    let one_phase = c.u8("XA one-phase flag")? != 0;
    Ok((one_phase, Xid::read(&mut c, 4)?))
}

/// Classifies a statement by its first word (two for XA statements).
pub fn classify_query(text: &[u8]) -> QueryKind {
    // The words that decide fit in the start; a DDL statement can be megabytes.
    let text = String::from_utf8_lossy(&text[..text.len().min(400)]);
    let mut words = text.split_whitespace();
    let first = words.next().unwrap_or("").to_ascii_uppercase();
    match first.as_str() {
        "BEGIN" => QueryKind::Begin,
        "COMMIT" => QueryKind::Commit,
        "SAVEPOINT" => QueryKind::Savepoint(savepoint_name(words.collect())),
        "ROLLBACK" => {
            let rest: Vec<&str> = words.collect();
            let rest = match rest.first().map(|w| w.to_ascii_uppercase()) {
                Some(w) if w == "WORK" => &rest[1..],
                _ => &rest[..],
            };
            match rest.split_first() {
                Some((to, name)) if to.eq_ignore_ascii_case("TO") => {
                    let name = match name.split_first() {
                        Some((w, n)) if w.eq_ignore_ascii_case("SAVEPOINT") => n,
                        _ => name,
                    };
                    QueryKind::RollbackToSavepoint(savepoint_name(name.to_vec()))
                }
                _ => QueryKind::Rollback,
            }
        }
        "XA" => {
            let verb = words.next().unwrap_or("").to_ascii_uppercase();
            let rest: Vec<&str> = words.collect();
            let rest = rest.join(" ");
            let one_phase = rest.to_ascii_uppercase().contains("ONE PHASE");
            match (verb.as_str(), Xid::parse_logged(&rest)) {
                ("START" | "BEGIN", Some(x)) => QueryKind::XaStart(x),
                ("COMMIT", Some(x)) => QueryKind::XaCommit(x, one_phase),
                ("ROLLBACK", Some(x)) => QueryKind::XaRollback(x),
                _ => QueryKind::Other,
            }
        }
        _ => QueryKind::Other,
    }
}

/// A savepoint's name as SAVEPOINT and ROLLBACK TO name it: backquotes removed, compared
/// without case as the server does.
fn savepoint_name(words: Vec<&str>) -> String {
    let name = words.join(" ");
    let name = name.trim();
    let name = name
        .strip_prefix('`')
        .and_then(|n| n.strip_suffix('`'))
        .unwrap_or(name);
    name.replace("``", "`").to_lowercase()
}

/// A MariaDB GTID event: the start of a transaction or of a standalone statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MariadbGtid {
    /// Sequence number within the domain.
    pub seq: u64,
    /// Replication domain.
    pub domain: u32,
    /// No BEGIN/COMMIT follow: the next statement is the whole transaction (DDL).
    pub standalone: bool,
    /// Only transactional engines were written by the transaction: its group cannot end in
    /// ROLLBACK or hold a ROLLBACK TO SAVEPOINT.
    pub transactional: bool,
    /// The XA transaction whose prepared part this group is.
    pub prepares: Option<Xid>,
}

/// Parses a MariaDB GTID body.
pub fn parse_mariadb_gtid(body: &[u8]) -> Result<MariadbGtid, DecodeError> {
    const FL_STANDALONE: u8 = 1;
    const FL_GROUP_COMMIT_ID: u8 = 2;
    const FL_TRANSACTIONAL: u8 = 4;
    const FL_PREPARED_XA: u8 = 64;
    const FL_COMPLETED_XA: u8 = 128;
    let mut c = Cursor::new(body);
    let seq = c.uint_le(8, "GTID sequence")?;
    let domain = c.uint_le(4, "GTID domain")? as u32;
    let flags = c.u8("GTID flags")?;
    if flags & FL_GROUP_COMMIT_ID != 0 {
        c.take(8, "GTID commit id")?;
    }
    let prepares = if flags & (FL_PREPARED_XA | FL_COMPLETED_XA) != 0 {
        let xid = Xid::read(&mut c, 1)?;
        (flags & FL_PREPARED_XA != 0).then_some(xid)
    } else {
        None
    };
    Ok(MariadbGtid {
        seq,
        domain,
        standalone: flags & FL_STANDALONE != 0,
        transactional: flags & FL_TRANSACTIONAL != 0,
        prepares,
    })
}

/// A MySQL GTID event's transaction: source UUID and sequence number.
pub fn parse_mysql_gtid(body: &[u8]) -> Result<([u8; 16], u64), DecodeError> {
    let mut c = Cursor::new(body);
    c.u8("GTID flags")?;
    let sid = c.take(16, "GTID source id")?;
    let gno = c.uint_le(8, "GTID sequence")?;
    Ok((sid.try_into().expect("16 bytes taken"), gno))
}

/// The `immediate_commit_timestamp` of a MySQL (anonymous) GTID event, in microseconds since
/// the epoch: when this server committed the transaction. MySQL 8.0.1+ writes it after the
/// logical clock (type 2, `last_committed`, `sequence_number`); its top bit says an
/// `original_commit_timestamp` follows. `None` when the event is older than that.
pub fn mysql_commit_micros(body: &[u8]) -> Option<i64> {
    const LOGICAL_CLOCK: u8 = 2;
    let mut c = Cursor::new(body);
    c.take(1 + 16 + 8, "GTID").ok()?;
    if c.u8("logical clock type").ok()? != LOGICAL_CLOCK {
        return None;
    }
    c.take(16, "logical clock").ok()?;
    let ts = c.uint_le(7, "immediate commit timestamp").ok()?;
    i64::try_from(ts & !(1 << 55)).ok().filter(|&us| us > 0)
}

/// A MySQL PREVIOUS_GTIDS body: the server's executed GTID set where the file starts. MySQL
/// 8.3+ writes the tagged form (format 1 in the count's first and last byte, a tag after each
/// UUID) when any GTID has a tag.
pub fn parse_previous_gtids(body: &[u8]) -> Result<GtidSet, DecodeError> {
    let mut c = Cursor::new(body);
    let head = c.uint_le(8, "previous GTIDs count")?;
    let (tagged, sids) = match head >> 56 {
        0 => (false, head),
        1 if head & 0xff == 1 => (true, (head >> 8) & 0xffff_ffff_ffff),
        format => {
            return Err(DecodeError::Invalid(format!(
                "previous GTIDs in format {format}, which Sluice does not know"
            )));
        }
    };
    let mut set = GtidSet::default();
    for _ in 0..sids {
        let uuid: [u8; 16] = c
            .take(16, "previous GTIDs source id")?
            .try_into()
            .expect("16 bytes taken");
        let tag = if tagged { tag(&mut c)? } else { String::new() };
        let intervals = c.uint_le(8, "previous GTIDs interval count")?;
        for _ in 0..intervals {
            let start = c.uint_le(8, "GTID interval start")?;
            let end = c.uint_le(8, "GTID interval end")?;
            set.insert(uuid, &tag, start, end);
        }
    }
    Ok(set)
}

/// A GTID tag: a variable-length length, then lower-case ASCII.
fn tag(c: &mut Cursor<'_>) -> Result<String, DecodeError> {
    let len = varlen(c, "GTID tag length")? as usize;
    let bytes = c.take(len, "GTID tag")?;
    let valid = len <= 32
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_');
    if !valid {
        return Err(DecodeError::Invalid(
            "a GTID tag that is not [a-z0-9_]{0,32}".into(),
        ));
    }
    Ok(String::from_utf8(bytes.to_vec()).expect("ASCII checked"))
}

/// An unsigned integer in MySQL's serialization format (8.3+): the first byte's trailing ones
/// plus one is the length in bytes; the value's bits follow them, little-endian.
fn varlen(c: &mut Cursor<'_>, what: &'static str) -> Result<u64, DecodeError> {
    let first = c.u8(what)?;
    let len = first.trailing_ones() as usize + 1;
    let low = if len >= 8 { 0 } else { u64::from(first >> len) };
    if len == 1 {
        return Ok(low);
    }
    let mut rest = [0u8; 8];
    rest[..len - 1].copy_from_slice(c.take(len - 1, what)?);
    let shift = 8 + (len + 7) / 16 - len;
    Ok(low | (u64::from_le_bytes(rest) << shift))
}

/// A signed integer in MySQL's serialization format (zigzag over [`varlen`]).
fn varlen_signed(c: &mut Cursor<'_>, what: &'static str) -> Result<i64, DecodeError> {
    let u = varlen(c, what)?;
    Ok((u >> 1) as i64 ^ -((u & 1) as i64))
}

/// A tagged MySQL GTID event (GTID_TAGGED_LOG_EVENT, MySQL 8.3+): source UUID, tag and
/// sequence number, from the event's serialized fields 1, 2 and 3 (fields 0 to 3 lead).
pub fn parse_tagged_gtid(body: &[u8]) -> Result<([u8; 16], String, u64), DecodeError> {
    let mut c = Cursor::new(body);
    let version = varlen(&mut c, "serialization format version")?;
    if version != 1 {
        return Err(DecodeError::Invalid(format!(
            "tagged GTID in serialization format {version}, which Sluice does not know"
        )));
    }
    varlen(&mut c, "tagged GTID size")?;
    varlen(&mut c, "tagged GTID last non-ignorable field")?;
    let (mut uuid, mut gno, mut tag_text) = (None, None, None);
    while uuid.is_none() || gno.is_none() || tag_text.is_none() {
        match varlen(&mut c, "tagged GTID field id")? {
            0 => {
                varlen(&mut c, "GTID flags")?;
            }
            1 => {
                let mut u = [0u8; 16];
                for b in &mut u {
                    *b = u8::try_from(varlen(&mut c, "GTID source id")?).map_err(|_| {
                        DecodeError::Invalid("a GTID source id byte over 255".into())
                    })?;
                }
                uuid = Some(u);
            }
            2 => {
                let n = varlen_signed(&mut c, "GTID sequence")?;
                gno = Some(
                    u64::try_from(n)
                        .map_err(|_| DecodeError::Invalid(format!("GTID sequence number {n}")))?,
                );
            }
            3 => tag_text = Some(tag(&mut c)?),
            field => {
                return Err(DecodeError::Invalid(format!(
                    "tagged GTID field {field} before the UUID, number and tag"
                )));
            }
        }
    }
    Ok((
        uuid.expect("read"),
        tag_text.expect("read"),
        gno.expect("read"),
    ))
}

/// A MariaDB GTID_LIST body: `(domain, server, sequence)` of every domain.
pub fn parse_gtid_list(body: &[u8]) -> Result<Vec<(u32, u32, u64)>, DecodeError> {
    let mut c = Cursor::new(body);
    let count = (c.uint_le(4, "GTID list count")? & 0x0fff_ffff) as usize;
    let mut list = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let domain = c.uint_le(4, "GTID list domain")? as u32;
        let server = c.uint_le(4, "GTID list server")? as u32;
        list.push((domain, server, c.uint_le(8, "GTID list sequence")?));
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_commit_timestamps() {
        let mut b = vec![1u8];
        b.extend([7u8; 16]);
        b.extend(42u64.to_le_bytes());
        assert_eq!(
            mysql_commit_micros(&b),
            None,
            "a 5.7 event has no timestamp"
        );
        b.push(2);
        b.extend([0u8; 16]);
        let us: u64 = 1_764_500_000_123_456;
        b.extend(&us.to_le_bytes()[..7]);
        assert_eq!(mysql_commit_micros(&b), Some(us as i64));
        // The top bit: an original_commit_timestamp follows.
        let with_original = us | (1 << 55);
        let at = b.len() - 7;
        b[at..].copy_from_slice(&with_original.to_le_bytes()[..7]);
        b.extend(&(us - 5).to_le_bytes()[..7]);
        assert_eq!(mysql_commit_micros(&b), Some(us as i64));
    }

    #[test]
    fn mysql_gtids() {
        let mut b = vec![1];
        b.extend((0..16u8).map(|i| i * 17));
        b.extend(42u64.to_le_bytes());
        let (uuid, gno) = parse_mysql_gtid(&b).unwrap();
        assert_eq!(
            (crate::model::format_uuid(&uuid), gno),
            ("00112233-4455-6677-8899-aabbccddeeff".to_string(), 42)
        );
        assert!(parse_mysql_gtid(&b[..10]).is_err());
        // PREVIOUS_GTIDS: one source with intervals [1, 6) and [7, 8).
        let mut p = 1u64.to_le_bytes().to_vec();
        p.extend_from_slice(&uuid);
        p.extend(2u64.to_le_bytes());
        for n in [1u64, 6, 7, 8] {
            p.extend(n.to_le_bytes());
        }
        assert_eq!(
            parse_previous_gtids(&p).unwrap().to_string(),
            "00112233-4455-6677-8899-aabbccddeeff:1-5:7"
        );
        assert!(parse_previous_gtids(&p[..40]).is_err());
        // An unknown format is refused.
        let mut unknown = p.clone();
        unknown[7] = 2;
        assert!(parse_previous_gtids(&unknown).is_err());
    }

    /// MySQL's serialization varlen, written as the format describes it: the byte count as
    /// trailing ones in the first byte, the value's bits after them, little-endian.
    fn varlen_bytes(v: u64) -> Vec<u8> {
        let bits = 64 - v.leading_zeros() as usize;
        let len = (1..=9).find(|&n| n == 9 || bits <= 7 * n).unwrap();
        let mut out = vec![((1u16 << (len - 1)) - 1) as u8 | (v << len) as u8];
        let shift = 8 + (len + 7) / 16 - len;
        out.extend_from_slice(&(v >> shift).to_le_bytes()[..len - 1]);
        out
    }

    #[test]
    fn serialized_integers_of_every_length_round_trip() {
        for v in [
            0u64,
            1,
            127,
            128,
            65535,
            1 << 20,
            u64::from(u32::MAX),
            1 << 55,
            u64::MAX,
        ] {
            let b = varlen_bytes(v);
            let mut c = Cursor::new(&b);
            assert_eq!(varlen(&mut c, "v").unwrap(), v, "{v}: {b:02x?}");
            assert!(c.is_empty());
        }
        // The documented example: 65535 as `fb ff 07`.
        assert_eq!(varlen_bytes(65535), [0xfb, 0xff, 0x07]);
        let zigzag = varlen_bytes(2 * 65535 - 1); // -65535 would be 2 * 65535 - 1
        assert_eq!(
            varlen_signed(&mut Cursor::new(&zigzag), "s").unwrap(),
            -65535
        );
    }

    #[test]
    fn tagged_gtids_and_tagged_previous_gtid_sets() {
        let uuid: Vec<u8> = (0..16u8).map(|i| i * 17).collect();
        // GTID_TAGGED_LOG_EVENT: format 1, size, last non-ignorable field, then fields 0..3
        // (flags, the UUID byte by byte, the signed sequence number, the tag), then more.
        let mut fields = vec![0u8];
        fields.extend(varlen_bytes(1));
        fields.extend(varlen_bytes(1));
        for &b in &uuid {
            fields.extend(varlen_bytes(u64::from(b)));
        }
        fields.extend(varlen_bytes(2));
        fields.extend(varlen_bytes(2 * 3)); // gno 3, zigzag
        fields.extend(varlen_bytes(3));
        fields.extend(varlen_bytes(5));
        fields.extend(b"mytag");
        fields.extend(varlen_bytes(4));
        fields.extend(varlen_bytes(0));
        let mut body = varlen_bytes(1);
        body.extend(varlen_bytes(fields.len() as u64 + 2));
        body.extend(varlen_bytes(0));
        body.extend(fields);
        let (u, tag, gno) = parse_tagged_gtid(&body).unwrap();
        assert_eq!((u.to_vec(), tag.as_str(), gno), (uuid.clone(), "mytag", 3));
        // PREVIOUS_GTIDS in the tagged form: 01 | count << 8 | 01 << 56, a tag after each UUID.
        let mut p = (1u64 | 2 << 8 | 1 << 56).to_le_bytes().to_vec();
        for (tag, start, end) in [("", 1u64, 14u64), ("mytag", 1, 3)] {
            p.extend_from_slice(&uuid);
            p.extend(varlen_bytes(tag.len() as u64));
            p.extend(tag.as_bytes());
            p.extend(1u64.to_le_bytes());
            p.extend(start.to_le_bytes());
            p.extend(end.to_le_bytes());
        }
        assert_eq!(
            parse_previous_gtids(&p).unwrap().to_string(),
            "00112233-4455-6677-8899-aabbccddeeff:1-13:mytag:1-2"
        );
    }

    #[test]
    fn gtid_lists() {
        let mut b = 2u32.to_le_bytes().to_vec();
        for (d, s, q) in [(0u32, 1u32, 5u64), (1, 2, 30)] {
            b.extend(d.to_le_bytes());
            b.extend(s.to_le_bytes());
            b.extend(q.to_le_bytes());
        }
        assert_eq!(parse_gtid_list(&b).unwrap(), vec![(0, 1, 5), (1, 2, 30)]);
        assert!(parse_gtid_list(&b[..20]).is_err());
    }

    #[test]
    fn finds_the_table_a_truncate_empties() {
        let q = |db: &'static str, text: &'static str| Query {
            thread: 1,
            db: db.as_bytes(),
            text: text.as_bytes(),
        };
        let t = |db, table| Some(TableId::new(db, table));
        assert_eq!(
            truncated_table(&q("shop", "TRUNCATE TABLE orders")),
            t("shop", "orders")
        );
        assert_eq!(
            truncated_table(&q("x", "  truncate `shop`.`orders`;")),
            t("shop", "orders")
        );
        assert_eq!(
            truncated_table(&q("", "TRUNCATE shop.orders")),
            t("shop", "orders")
        );
        assert_eq!(truncated_table(&q("shop", "DELETE FROM orders")), None);
        assert_eq!(truncated_table(&q("shop", "TRUNCATE")), None);
    }

    #[test]
    fn classifies_transaction_statements() {
        assert_eq!(classify_query(b"BEGIN"), QueryKind::Begin);
        assert_eq!(classify_query(b"  commit"), QueryKind::Commit);
        assert_eq!(classify_query(b"ROLLBACK"), QueryKind::Rollback);
        assert_eq!(classify_query(b"rollback work"), QueryKind::Rollback);
        let to = |n: &str| QueryKind::RollbackToSavepoint(n.into());
        assert_eq!(classify_query(b"ROLLBACK TO SAVEPOINT x"), to("x"));
        assert_eq!(classify_query(b"ROLLBACK TO `S1`"), to("s1"));
        assert_eq!(
            classify_query(b"rollback work to savepoint `a b`"),
            to("a b")
        );
        assert_eq!(
            classify_query(b"SAVEPOINT `s``1`"),
            QueryKind::Savepoint("s`1".into())
        );
        assert_eq!(classify_query(b"ALTER TABLE t ADD c INT"), QueryKind::Other);
        assert_eq!(classify_query(b"BEGINNING"), QueryKind::Other);
    }

    #[test]
    fn reads_the_statement_after_status_and_database() {
        let mut body = vec![];
        body.extend_from_slice(&7u32.to_le_bytes()); // thread
        body.extend_from_slice(&0u32.to_le_bytes()); // exec time
        body.push(4); // db length
        body.extend_from_slice(&0u16.to_le_bytes()); // error code
        body.extend_from_slice(&3u16.to_le_bytes()); // status length
        body.extend_from_slice(&[1, 2, 3]);
        body.extend_from_slice(b"shop\0");
        body.extend_from_slice(b"COMMIT");
        let q = parse_query(&body, 13).unwrap();
        assert_eq!((q.thread, q.text), (7, &b"COMMIT"[..]));
    }

    #[test]
    fn reads_rotate_and_gtid() {
        let mut body = 4u64.to_le_bytes().to_vec();
        body.extend_from_slice(b"binlog.000002");
        assert_eq!(
            parse_rotate(&body).unwrap(),
            ("binlog.000002".to_string(), 4)
        );

        let mut body = 42u64.to_le_bytes().to_vec();
        body.extend_from_slice(&3u32.to_le_bytes());
        body.push(1);
        let g = parse_mariadb_gtid(&body).unwrap();
        assert_eq!((g.seq, g.domain, g.standalone), (42, 3, true));
    }

    #[test]
    fn alter_table_add_column_names_its_table() {
        let q = |text: &'static str| Query {
            thread: 1,
            db: b"shop",
            text: text.as_bytes(),
        };
        let orders = Some(TableId::new("shop", "orders"));
        for added in [
            "ALTER TABLE orders ADD COLUMN note TEXT",
            "alter table `orders` add note text default 'x'",
            "ALTER ONLINE TABLE orders ADD INDEX i (a), ADD c INT",
            "ALTER TABLE orders ADD (a INT, b INT)",
        ] {
            assert_eq!(column_added_table(&q(added)), orders, "{added}");
        }
        assert_eq!(
            column_added_table(&q("ALTER TABLE other.t ADD COLUMN c INT")),
            Some(TableId::new("other", "t"))
        );
        for not in [
            "ALTER TABLE orders ADD INDEX i (a)",
            "ALTER TABLE orders ADD PRIMARY KEY (id)",
            "ALTER TABLE orders DROP COLUMN note",
            "CREATE TABLE orders (id INT)",
            "ALTER TABLE orders MODIFY note TEXT",
        ] {
            assert_eq!(column_added_table(&q(not)), None, "{not}");
        }
    }

    #[test]
    fn drops_and_renames_name_their_tables() {
        let q = |text: &'static str| Query {
            thread: 1,
            db: b"shop",
            text: text.as_bytes(),
        };
        let t = |db: &str, name: &str| TableId::new(db, name);
        use TableGone::{Dropped, Renamed};
        let cases = [
            (
                "DROP TABLE `orders` /* generated by server */",
                vec![Dropped(t("shop", "orders"))],
            ),
            (
                "drop table if exists orders, other.t RESTRICT",
                vec![Dropped(t("shop", "orders")), Dropped(t("other", "t"))],
            ),
            (
                "DROP DATABASE IF EXISTS `shop`",
                vec![Dropped(t("shop", "*"))],
            ),
            (
                "RENAME TABLE orders TO orders_old, orders_new TO orders",
                vec![
                    Renamed(t("shop", "orders"), t("shop", "orders_old")),
                    Renamed(t("shop", "orders_new"), t("shop", "orders")),
                ],
            ),
            (
                "ALTER TABLE orders RENAME TO archive.orders",
                vec![Renamed(t("shop", "orders"), t("archive", "orders"))],
            ),
            (
                "ALTER TABLE orders ADD x INT, RENAME AS o2",
                vec![Renamed(t("shop", "orders"), t("shop", "o2"))],
            ),
            (
                "rename /* gh-ost */ table `shop`.`orders` to `shop`.`_orders_del`, `shop`.`_orders_gho` to `shop`.`orders`",
                vec![
                    Renamed(t("shop", "orders"), t("shop", "_orders_del")),
                    Renamed(t("shop", "_orders_gho"), t("shop", "orders")),
                ],
            ),
            (
                "DROP TABLE /*!32312 IF EXISTS*/ `order items`, `a.b`",
                vec![Dropped(t("shop", "order items")), Dropped(t("shop", "a.b"))],
            ),
            ("DROP TABLES a -- why\n", vec![Dropped(t("shop", "a"))]),
            (
                "RENAME TABLES a WAIT 3 TO b, b TO c",
                vec![Renamed(t("shop", "a"), t("shop", "c"))],
            ),
            (
                "ALTER TABLE IF EXISTS orders RENAME TO o3",
                vec![Renamed(t("shop", "orders"), t("shop", "o3"))],
            ),
            ("ALTER TABLE orders COMMENT 'please rename this'", vec![]),
            ("ALTER TABLE orders ADD c INT COMMENT 'x, RENAME y'", vec![]),
            ("ALTER TABLE orders RENAME COLUMN a TO b", vec![]),
            ("ALTER TABLE orders RENAME INDEX a TO b", vec![]),
            ("DROP TEMPORARY TABLE orders", vec![]),
            ("DROP INDEX i ON orders", vec![]),
            ("CREATE TABLE orders (id INT)", vec![]),
        ];
        for (text, want) in cases {
            assert_eq!(tables_gone(&q(text)), want, "{text}");
        }
    }
}
