//! TABLE_MAP events: the table's schema at this point of the binlog, taken from the event
//! itself. With `binlog_row_metadata=FULL` it carries column names, signedness, character sets
//! and the primary key, so no query against today's `information_schema` is needed.

use std::sync::Arc;

use super::cursor::{Cursor, DecodeError};
use crate::model::{Column, ColumnType, TableId, TableSchema};
use crate::source::charset::{Charset, Collations};

/// MySQL column type codes as they appear in TABLE_MAP events.
mod col {
    pub const DECIMAL: u8 = 0;
    pub const TINY: u8 = 1;
    pub const SHORT: u8 = 2;
    pub const LONG: u8 = 3;
    pub const FLOAT: u8 = 4;
    pub const DOUBLE: u8 = 5;
    pub const NULL: u8 = 6;
    pub const TIMESTAMP: u8 = 7;
    pub const LONGLONG: u8 = 8;
    pub const INT24: u8 = 9;
    pub const DATE: u8 = 10;
    pub const TIME: u8 = 11;
    pub const DATETIME: u8 = 12;
    pub const YEAR: u8 = 13;
    pub const NEWDATE: u8 = 14;
    pub const VARCHAR: u8 = 15;
    pub const BIT: u8 = 16;
    pub const TIMESTAMP2: u8 = 17;
    pub const DATETIME2: u8 = 18;
    pub const TIME2: u8 = 19;
    pub const VARCHAR_COMPRESSED: u8 = 140;
    pub const BLOB_COMPRESSED: u8 = 141;
    pub const JSON: u8 = 245;
    pub const NEWDECIMAL: u8 = 246;
    pub const ENUM: u8 = 247;
    pub const SET: u8 = 248;
    pub const BLOB: u8 = 252;
    pub const VAR_STRING: u8 = 253;
    pub const STRING: u8 = 254;
    pub const GEOMETRY: u8 = 255;
}

/// Optional metadata field types (MySQL 8.0.1+, MariaDB 10.5+).
mod meta {
    pub const SIGNEDNESS: u8 = 1;
    pub const DEFAULT_CHARSET: u8 = 2;
    pub const COLUMN_CHARSET: u8 = 3;
    pub const COLUMN_NAME: u8 = 4;
    pub const SIMPLE_PRIMARY_KEY: u8 = 8;
    pub const PRIMARY_KEY_WITH_PREFIX: u8 = 9;
}

/// How to read one column's value from a row image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnDecoder {
    /// Little-endian integer of `bytes` bytes.
    Int {
        /// Width.
        bytes: u8,
        /// Unsigned.
        unsigned: bool,
    },
    /// MySQL's packed binary decimal.
    Decimal {
        /// Total digits.
        precision: u8,
        /// Fraction digits.
        scale: u8,
    },
    /// Length-prefixed UTF-8 text; the prefix has `len_bytes` bytes.
    Text {
        /// Width of the length prefix.
        len_bytes: u8,
    },
    /// 3-byte packed date.
    Date,
    /// One byte, years since 1900 (0 is the zero year).
    Year,
    /// 5-byte big-endian packed DATETIME plus fraction.
    DateTime2 {
        /// Fractional digits.
        fsp: u8,
    },
    /// 4-byte big-endian seconds plus fraction.
    Timestamp2 {
        /// Fractional digits.
        fsp: u8,
    },
}

/// A parsed TABLE_MAP: the schema and how to decode each column.
#[derive(Debug, Clone, PartialEq)]
pub struct TableDecoder {
    /// The table's schema at this point of the binlog.
    pub schema: Arc<TableSchema>,
    /// One decoder per column, in column order.
    pub columns: Vec<ColumnDecoder>,
}

/// Why a TABLE_MAP could not become a [`TableDecoder`].
#[derive(Debug, thiserror::Error)]
pub enum TableMapError {
    /// The event is malformed.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A column has a type Sluice does not decode.
    #[error("column `{column}` has type {type_name}, which Sluice cannot decode")]
    Unsupported {
        /// Column name.
        column: String,
        /// SQL type as far as the binlog tells it.
        type_name: String,
    },
    /// `binlog_row_metadata` is not FULL.
    #[error(
        "the table map carries no {0}; set binlog_row_metadata=FULL on the server \
         (MariaDB >= 10.5, MySQL >= 8.0.1)"
    )]
    MissingMetadata(&'static str),
    /// The table has no primary key.
    #[error(
        "the table has no primary key, and records are keyed by primary key; add one or \
         remove the table from `tables`"
    )]
    NoPrimaryKey,
}

/// The table id and name of a TABLE_MAP, and a cursor at the column count.
pub struct TableMapHead<'a> {
    /// Server-assigned id the following rows events refer to.
    pub table_id: u64,
    /// Database and table.
    pub table: TableId,
    rest: Cursor<'a>,
}

/// Reads the id and name, enough to decide whether the table is captured at all.
pub fn parse_head(body: &[u8], table_id_len: usize) -> Result<TableMapHead<'_>, DecodeError> {
    let mut c = Cursor::new(body);
    let table_id = c.uint_le(table_id_len, "table id")?;
    c.take(2, "table map flags")?;
    let db = name(&mut c, "database name")?;
    let table = name(&mut c, "table name")?;
    Ok(TableMapHead {
        table_id,
        table: TableId::new(db, table),
        rest: c,
    })
}

fn name(c: &mut Cursor<'_>, what: &'static str) -> Result<String, DecodeError> {
    let len = usize::from(c.u8(what)?);
    let bytes = c.take(len, what)?;
    c.take(1, what)?; // NUL terminator
    String::from_utf8(bytes.to_vec())
        .map_err(|_| DecodeError::Invalid(format!("{what} is not UTF-8")))
}

/// Optional metadata this decoder uses.
#[derive(Default)]
struct OptionalMetadata<'a> {
    signedness: Option<&'a [u8]>,
    default_charset: Option<(u64, Vec<(usize, u64)>)>,
    column_charsets: Option<Vec<u64>>,
    names: Option<Vec<String>>,
    primary_key: Option<Vec<usize>>,
}

fn parse_optional(mut c: Cursor<'_>) -> Result<OptionalMetadata<'_>, DecodeError> {
    let mut m = OptionalMetadata::default();
    while !c.is_empty() {
        let kind = c.u8("optional metadata type")?;
        let mut v = Cursor::new(c.lenenc_bytes("optional metadata field")?);
        match kind {
            meta::SIGNEDNESS => m.signedness = Some(v.rest()),
            meta::DEFAULT_CHARSET => {
                let default = v.lenenc("default charset")?;
                let mut exceptions = Vec::new();
                while !v.is_empty() {
                    let idx = v.lenenc_usize("charset column index")?;
                    exceptions.push((idx, v.lenenc("charset collation")?));
                }
                m.default_charset = Some((default, exceptions));
            }
            meta::COLUMN_CHARSET => {
                let mut ids = Vec::new();
                while !v.is_empty() {
                    ids.push(v.lenenc("column charset")?);
                }
                m.column_charsets = Some(ids);
            }
            meta::COLUMN_NAME => {
                let mut names = Vec::new();
                while !v.is_empty() {
                    let n = v.lenenc_bytes("column name")?;
                    names
                        .push(String::from_utf8(n.to_vec()).map_err(|_| {
                            DecodeError::Invalid("column name is not UTF-8".into())
                        })?);
                }
                m.names = Some(names);
            }
            meta::SIMPLE_PRIMARY_KEY => {
                let mut key = Vec::new();
                while !v.is_empty() {
                    key.push(v.lenenc_usize("primary key column")?);
                }
                m.primary_key = Some(key);
            }
            meta::PRIMARY_KEY_WITH_PREFIX => {
                // A prefix key still identifies the row by the whole column value.
                let mut key = Vec::new();
                while !v.is_empty() {
                    key.push(v.lenenc_usize("primary key column")?);
                    v.lenenc("primary key prefix")?;
                }
                m.primary_key = Some(key);
            }
            _ => {} // enum/set labels, geometry types, visibility: not needed by these types
        }
    }
    Ok(m)
}

/// The collation of the `nth` character column.
fn collation_of(m: &OptionalMetadata<'_>, nth: usize) -> Result<u64, TableMapError> {
    if let Some(ids) = &m.column_charsets {
        return ids
            .get(nth)
            .copied()
            .ok_or(DecodeError::Invalid("fewer column charsets than text columns".into()).into());
    }
    if let Some((default, exceptions)) = &m.default_charset {
        return Ok(exceptions
            .iter()
            .find(|(i, _)| *i == nth)
            .map_or(*default, |(_, c)| *c));
    }
    Err(TableMapError::MissingMetadata("column character sets"))
}

/// Parses the columns of a TABLE_MAP whose table is captured.
pub fn parse_columns(
    head: TableMapHead<'_>,
    collations: &Collations,
) -> Result<TableDecoder, TableMapError> {
    let mut c = head.rest;
    let n = c.lenenc_usize("column count")?;
    let types = c.take(n, "column types")?;
    let mut metadata = Cursor::new(c.lenenc_bytes("column metadata")?);
    let null_bits = c.take(n.div_ceil(8), "null bitmap")?;
    let opt = parse_optional(c)?;

    let names = opt
        .names
        .as_ref()
        .ok_or(TableMapError::MissingMetadata("column names"))?;
    if names.len() != n {
        return Err(
            DecodeError::Invalid(format!("{} column names for {n} columns", names.len())).into(),
        );
    }
    let mut numeric = 0usize;
    let mut textual = 0usize;
    let mut columns = Vec::with_capacity(n);
    let mut decoders = Vec::with_capacity(n);
    for (i, &ty) in types.iter().enumerate() {
        let unsupported = |type_name: &str| TableMapError::Unsupported {
            column: names[i].clone(),
            type_name: type_name.to_string(),
        };
        let mut unsigned = || -> Result<bool, TableMapError> {
            let bits = opt
                .signedness
                .ok_or(TableMapError::MissingMetadata("column signedness"))?;
            let byte = bits.get(numeric / 8).ok_or(DecodeError::Invalid(
                "signedness bitmap shorter than the numeric columns".into(),
            ))?;
            let flag = byte & (0x80 >> (numeric % 8)) != 0;
            numeric += 1;
            Ok(flag)
        };
        let (decoder, column_type) = match ty {
            col::TINY | col::SHORT | col::INT24 | col::LONG | col::LONGLONG => {
                let bytes = match ty {
                    col::TINY => 1,
                    col::SHORT => 2,
                    col::INT24 => 3,
                    col::LONG => 4,
                    _ => 8,
                };
                let unsigned = unsigned()?;
                (
                    ColumnDecoder::Int { bytes, unsigned },
                    ColumnType::Integer { bytes, unsigned },
                )
            }
            col::NEWDECIMAL => {
                let precision = metadata.u8("decimal precision")?;
                let scale = metadata.u8("decimal scale")?;
                unsigned()?; // DECIMAL UNSIGNED only forbids negatives; values decode the same
                if precision == 0 || precision > 65 || scale > 30 || scale > precision {
                    return Err(DecodeError::Invalid(format!(
                        "column `{}`: DECIMAL({precision},{scale}) is out of range",
                        names[i]
                    ))
                    .into());
                }
                (
                    ColumnDecoder::Decimal { precision, scale },
                    ColumnType::Decimal { precision, scale },
                )
            }
            col::VARCHAR | col::VAR_STRING | col::STRING | col::BLOB => {
                let (len_bytes, sql) = match ty {
                    col::BLOB => {
                        let len_bytes = metadata.u8("blob length size")?;
                        if !(1..=4).contains(&len_bytes) {
                            return Err(DecodeError::Invalid(format!(
                                "column `{}`: blob length size {len_bytes}",
                                names[i]
                            ))
                            .into());
                        }
                        (
                            len_bytes,
                            ["", "TINYTEXT", "TEXT", "MEDIUMTEXT", "LONGTEXT"]
                                [usize::from(len_bytes)],
                        )
                    }
                    col::STRING => {
                        let (real_type, max_len) =
                            string_meta(metadata.u8("char type")?, metadata.u8("char length")?);
                        match real_type {
                            col::ENUM => return Err(unsupported("ENUM")),
                            col::SET => return Err(unsupported("SET")),
                            _ => (if max_len < 256 { 1 } else { 2 }, "CHAR"),
                        }
                    }
                    _ => {
                        let max_len = metadata.uint_le(2, "varchar length")?;
                        (if max_len < 256 { 1 } else { 2 }, "VARCHAR")
                    }
                };
                let collation = collation_of(&opt, textual)?;
                textual += 1;
                match collations.charset(collation) {
                    Charset::Utf8 => {}
                    Charset::Binary => {
                        return Err(unsupported(match sql {
                            "CHAR" => "BINARY",
                            "VARCHAR" => "VARBINARY",
                            _ => "BLOB",
                        }));
                    }
                    Charset::Other(cs) => {
                        return Err(unsupported(&format!("{sql} CHARACTER SET {cs}")));
                    }
                }
                (ColumnDecoder::Text { len_bytes }, ColumnType::Text)
            }
            col::DATE => (ColumnDecoder::Date, ColumnType::Date),
            col::YEAR => (ColumnDecoder::Year, ColumnType::Year),
            col::DATETIME2 | col::TIMESTAMP2 => {
                let fsp = metadata.u8("fractional seconds precision")?;
                if fsp > 6 {
                    return Err(DecodeError::Invalid(format!(
                        "column `{}`: fractional precision {fsp}",
                        names[i]
                    ))
                    .into());
                }
                if ty == col::DATETIME2 {
                    (
                        ColumnDecoder::DateTime2 { fsp },
                        ColumnType::DateTime { fsp },
                    )
                } else {
                    (
                        ColumnDecoder::Timestamp2 { fsp },
                        ColumnType::Timestamp { fsp },
                    )
                }
            }
            other => return Err(unsupported(type_name(other))),
        };
        decoders.push(decoder);
        let nullable = null_bits[i / 8] & (1 << (i % 8)) != 0;
        columns.push(Column::new(names[i].clone(), column_type, nullable));
    }
    let key = match opt.primary_key {
        Some(k) if !k.is_empty() => k,
        _ => return Err(TableMapError::NoPrimaryKey),
    };
    if let Some(&bad) = key.iter().find(|&&k| k >= n) {
        return Err(DecodeError::Invalid(format!("primary key column {bad} of {n}")).into());
    }
    Ok(TableDecoder {
        schema: Arc::new(TableSchema {
            id: head.table,
            columns,
            key,
        }),
        columns: decoders,
    })
}

/// Decodes MYSQL_TYPE_STRING metadata: the real type (CHAR, ENUM, SET) and the maximum byte
/// length, whose two high bits hide in the type byte for lengths above 255.
fn string_meta(byte0: u8, byte1: u8) -> (u8, u16) {
    let (mut real_type, mut len) = (byte0, u16::from(byte1));
    if real_type & 0x30 != 0x30 {
        len |= u16::from((real_type & 0x30) ^ 0x30) << 4;
        real_type |= 0x30;
    }
    (real_type, len)
}

fn type_name(ty: u8) -> &'static str {
    match ty {
        col::DECIMAL => "DECIMAL (pre-5.0 format)",
        col::FLOAT => "FLOAT",
        col::DOUBLE => "DOUBLE",
        col::NULL => "NULL",
        col::TIMESTAMP => "TIMESTAMP (pre-5.6 format)",
        col::TIME | col::TIME2 => "TIME",
        col::DATETIME => "DATETIME (pre-5.6 format)",
        col::YEAR => "YEAR",
        col::NEWDATE => "NEWDATE",
        col::BIT => "BIT",
        col::VARCHAR_COMPRESSED | col::BLOB_COMPRESSED => "COMPRESSED column",
        col::JSON => "JSON",
        col::ENUM => "ENUM",
        col::SET => "SET",
        col::GEOMETRY => "GEOMETRY",
        _ => "an unknown type",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a TABLE_MAP body the way MariaDB writes it with binlog_row_metadata=FULL.
    pub(crate) struct TableMapBuilder {
        columns: Vec<(u8, Vec<u8>, bool, &'static str)>,
        key: Vec<u8>,
        unsigned: Vec<bool>,
        charsets: Vec<u8>,
        minimal: bool,
    }

    impl TableMapBuilder {
        pub(crate) fn new() -> Self {
            TableMapBuilder {
                columns: vec![],
                key: vec![],
                unsigned: vec![],
                charsets: vec![],
                minimal: false,
            }
        }

        /// As with binlog_row_metadata=MINIMAL: no optional metadata at all.
        pub(crate) fn minimal(mut self) -> Self {
            self.minimal = true;
            self
        }

        pub(crate) fn int(mut self, ty: u8, unsigned: bool, name: &'static str) -> Self {
            self.unsigned.push(unsigned);
            self.columns.push((ty, vec![], false, name));
            self
        }

        pub(crate) fn column(
            mut self,
            ty: u8,
            meta: &[u8],
            nullable: bool,
            name: &'static str,
        ) -> Self {
            if ty == col::NEWDECIMAL {
                self.unsigned.push(false);
            }
            if matches!(ty, col::VARCHAR | col::STRING | col::BLOB) {
                self.charsets.push(45); // utf8mb4_general_ci
            }
            self.columns.push((ty, meta.to_vec(), nullable, name));
            self
        }

        pub(crate) fn key(mut self, cols: &[u8]) -> Self {
            self.key = cols.to_vec();
            self
        }

        pub(crate) fn build(&self, table_id: u64) -> Vec<u8> {
            let mut b = table_id.to_le_bytes()[..6].to_vec();
            b.extend_from_slice(&[1, 0]);
            for part in ["shop", "t"] {
                b.push(part.len() as u8);
                b.extend_from_slice(part.as_bytes());
                b.push(0);
            }
            b.push(self.columns.len() as u8);
            b.extend(self.columns.iter().map(|c| c.0));
            let meta: Vec<u8> = self.columns.iter().flat_map(|c| c.1.clone()).collect();
            b.push(meta.len() as u8);
            b.extend_from_slice(&meta);
            let mut nulls = vec![0u8; self.columns.len().div_ceil(8)];
            for (i, c) in self.columns.iter().enumerate() {
                if c.2 {
                    nulls[i / 8] |= 1 << (i % 8);
                }
            }
            b.extend_from_slice(&nulls);
            if self.minimal {
                return b;
            }
            let mut sign = vec![0u8; self.unsigned.len().div_ceil(8)];
            for (i, &u) in self.unsigned.iter().enumerate() {
                if u {
                    sign[i / 8] |= 0x80 >> (i % 8);
                }
            }
            field(&mut b, meta::SIGNEDNESS, &sign);
            field(&mut b, meta::COLUMN_CHARSET, &self.charsets);
            let mut names = vec![];
            for c in &self.columns {
                names.push(c.3.len() as u8);
                names.extend_from_slice(c.3.as_bytes());
            }
            field(&mut b, meta::COLUMN_NAME, &names);
            if !self.key.is_empty() {
                field(&mut b, meta::SIMPLE_PRIMARY_KEY, &self.key);
            }
            b
        }
    }

    fn field(b: &mut Vec<u8>, kind: u8, v: &[u8]) {
        b.push(kind);
        b.push(v.len() as u8);
        b.extend_from_slice(v);
    }

    pub(crate) fn collations() -> Collations {
        Collations::new([(45, "utf8mb4".to_string()), (8, "latin1".to_string())])
    }

    fn parse(body: &[u8]) -> Result<TableDecoder, TableMapError> {
        parse_columns(parse_head(body, 6).unwrap(), &collations())
    }

    #[test]
    fn reads_names_types_signedness_nullability_and_key() {
        let body = TableMapBuilder::new()
            .int(col::LONGLONG, true, "id")
            .int(col::INT24, false, "m")
            .column(col::NEWDECIMAL, &[12, 4], true, "price")
            .column(col::VARCHAR, &[0x00, 0x04], true, "name") // 1024 bytes
            .column(col::STRING, &[0xfe, 40], false, "code")
            .column(col::BLOB, &[2], true, "note")
            .column(col::DATETIME2, &[6], true, "at")
            .key(&[0])
            .build(7);
        let head = parse_head(&body, 6).unwrap();
        assert_eq!(
            (head.table_id, head.table.to_string().as_str()),
            (7, "shop.t")
        );
        let d = parse(&body).unwrap();
        assert_eq!(
            d.columns,
            vec![
                ColumnDecoder::Int {
                    bytes: 8,
                    unsigned: true
                },
                ColumnDecoder::Int {
                    bytes: 3,
                    unsigned: false
                },
                ColumnDecoder::Decimal {
                    precision: 12,
                    scale: 4
                },
                ColumnDecoder::Text { len_bytes: 2 },
                ColumnDecoder::Text { len_bytes: 1 },
                ColumnDecoder::Text { len_bytes: 2 },
                ColumnDecoder::DateTime2 { fsp: 6 },
            ]
        );
        let names: Vec<_> = d
            .schema
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.nullable))
            .collect();
        assert_eq!(names[0], ("id", false));
        assert_eq!(names[2], ("price", true));
        assert_eq!(d.schema.key, vec![0]);
    }

    #[test]
    fn char_lengths_above_255_hide_in_the_type_byte() {
        // CHAR(255) in utf8mb4 is 1020 bytes: 0x3fc, high bits 0x3 stored as (0x30 ^ 0x30).
        assert_eq!(string_meta(0xce, 0xfc), (0xfe, 0x3fc));
        assert_eq!(string_meta(0xfe, 40), (0xfe, 40));
        assert_eq!(string_meta(0xf7, 1), (col::ENUM, 1));
    }

    #[test]
    fn unsupported_types_are_named_with_their_column() {
        let body = TableMapBuilder::new()
            .int(col::LONG, false, "id")
            .column(col::FLOAT, &[4], false, "f")
            .key(&[0])
            .build(1);
        let e = parse(&body).unwrap_err().to_string();
        assert_eq!(e, "column `f` has type FLOAT, which Sluice cannot decode");
    }

    #[test]
    fn tables_without_full_metadata_or_key_are_refused() {
        let body = TableMapBuilder::new().int(col::LONG, false, "id").build(1);
        assert!(matches!(parse(&body), Err(TableMapError::NoPrimaryKey)));
        let minimal = TableMapBuilder::new()
            .int(col::LONG, false, "id")
            .key(&[0])
            .minimal()
            .build(1);
        let e = parse(&minimal).unwrap_err().to_string();
        assert!(e.contains("binlog_row_metadata=FULL"), "{e}");
    }
}
