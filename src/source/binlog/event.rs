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
}

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

/// What the format description tells a reader: each event type's post-header length.
#[derive(Clone, Debug)]
pub struct FormatDescription {
    post_header_lengths: Vec<u8>,
}

impl FormatDescription {
    /// Parses a FORMAT_DESCRIPTION body (without the trailing checksum algorithm byte).
    pub fn parse(body: &[u8]) -> Result<Self, DecodeError> {
        let mut c = Cursor::new(body);
        c.take(2 + 50 + 4, "format description version")?;
        let header_len = c.u8("common header length")?;
        if header_len != 19 {
            return Err(DecodeError::Invalid(format!(
                "common header length {header_len}, expected 19 (binlog version 4)"
            )));
        }
        Ok(FormatDescription {
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

/// How a QUERY event bears on transaction boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    /// `BEGIN`: a transaction starts.
    Begin,
    /// `COMMIT` (non-transactional engines write this instead of XID).
    Commit,
    /// `ROLLBACK`: the changes of non-transactional tables before it did happen.
    Rollback,
    /// Anything else: DDL and other statements.
    Other,
}

/// Classifies a statement by its first word.
pub fn classify_query(text: &[u8]) -> QueryKind {
    let word: Vec<u8> = text
        .iter()
        .copied()
        .skip_while(u8::is_ascii_whitespace)
        .take_while(|b| b.is_ascii_alphabetic())
        .map(|b| b.to_ascii_uppercase())
        .collect();
    match word.as_slice() {
        b"BEGIN" => QueryKind::Begin,
        b"COMMIT" => QueryKind::Commit,
        b"ROLLBACK" => QueryKind::Rollback,
        _ => QueryKind::Other,
    }
}

/// A MariaDB GTID event: the start of a transaction or of a standalone statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MariadbGtid {
    /// Sequence number within the domain.
    pub seq: u64,
    /// Replication domain.
    pub domain: u32,
    /// No BEGIN/COMMIT follow: the next statement is the whole transaction (DDL).
    pub standalone: bool,
}

/// Parses a MariaDB GTID body.
pub fn parse_mariadb_gtid(body: &[u8]) -> Result<MariadbGtid, DecodeError> {
    const FL_STANDALONE: u8 = 1;
    let mut c = Cursor::new(body);
    let seq = c.uint_le(8, "GTID sequence")?;
    let domain = c.uint_le(4, "GTID domain")? as u32;
    let flags = c.u8("GTID flags")?;
    Ok(MariadbGtid {
        seq,
        domain,
        standalone: flags & FL_STANDALONE != 0,
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

/// A MySQL PREVIOUS_GTIDS body: the server's executed GTID set where the file starts.
pub fn parse_previous_gtids(body: &[u8]) -> Result<GtidSet, DecodeError> {
    let mut c = Cursor::new(body);
    let sids = c.uint_le(8, "previous GTIDs count")?;
    if sids >> 56 != 0 {
        return Err(DecodeError::Invalid(
            "tagged GTIDs (MySQL 8.4's format) are not supported; stream from an untagged server"
                .into(),
        ));
    }
    let mut set = GtidSet::default();
    for _ in 0..sids {
        let uuid: [u8; 16] = c
            .take(16, "previous GTIDs source id")?
            .try_into()
            .expect("16 bytes taken");
        let intervals = c.uint_le(8, "previous GTIDs interval count")?;
        for _ in 0..intervals {
            let start = c.uint_le(8, "GTID interval start")?;
            let end = c.uint_le(8, "GTID interval end")?;
            set.insert(uuid, start, end);
        }
    }
    Ok(set)
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
        let mut tagged = p.clone();
        tagged[7] = 1;
        assert!(parse_previous_gtids(&tagged).is_err());
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
        assert_eq!(
            classify_query(b"ROLLBACK TO SAVEPOINT x"),
            QueryKind::Rollback
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
}
