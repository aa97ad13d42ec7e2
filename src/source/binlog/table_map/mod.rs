//! TABLE_MAP events: the table's schema at this point of the binlog, taken from the event
//! itself. With `binlog_row_metadata=FULL` it carries column names, signedness, character sets
//! and the primary key, so no query against today's `information_schema` is needed.

use std::sync::Arc;

use super::cursor::{Cursor, DecodeError};
use super::event::Flavor;
use crate::model::{Column, ColumnType, TableId, TableSchema, column_indices};
use crate::source::charset::{Charset, Codec, Collations};

mod columns;
mod metadata;
#[cfg(test)]
pub(crate) mod tests;

pub use columns::parse_columns;

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
    pub const BLOB_COMPRESSED: u8 = 140;
    pub const VARCHAR_COMPRESSED: u8 = 141;
    pub const VECTOR: u8 = 242;
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
    pub const SET_STR_VALUE: u8 = 5;
    pub const ENUM_STR_VALUE: u8 = 6;
    pub const PRIMARY_KEY_WITH_PREFIX: u8 = 9;
    pub const ENUM_AND_SET_DEFAULT_CHARSET: u8 = 10;
    pub const ENUM_AND_SET_COLUMN_CHARSET: u8 = 11;
    pub const VECTOR_DIMENSIONALITY: u8 = 13;
}

/// Which columns an optional-metadata field counts, for the fields counted over a subset of
/// the columns. docs/design.md states each rule and where it comes from; the generated-table
/// and peer-binlog tests check them.
mod subset {
    use super::{Flavor, col};

    /// SIGNEDNESS: a bit per numeric column. Both servers count YEAR (its bit means nothing);
    /// MySQL releases before 8.0.23 did not.
    pub fn signed(ty: u8, year: bool) -> bool {
        matches!(
            ty,
            col::TINY
                | col::SHORT
                | col::INT24
                | col::LONG
                | col::LONGLONG
                | col::FLOAT
                | col::DOUBLE
                | col::DECIMAL
                | col::NEWDECIMAL
        ) || (year && ty == col::YEAR)
    }

    /// DEFAULT_CHARSET / COLUMN_CHARSET: character columns. ENUM and SET (type STRING with
    /// that real type) have their own field; MariaDB counts GEOMETRY too (with the binary
    /// collation), MySQL 9 counts VECTOR.
    pub fn charset(ty: u8, real_type: Option<u8>, flavor: Flavor) -> bool {
        match ty {
            col::STRING => !matches!(real_type, Some(col::ENUM | col::SET)),
            col::VARCHAR
            | col::VAR_STRING
            | col::BLOB
            | col::VARCHAR_COMPRESSED
            | col::BLOB_COMPRESSED => true,
            col::GEOMETRY => flavor == Flavor::MariaDb,
            col::VECTOR => flavor != Flavor::MariaDb,
            _ => false,
        }
    }

    /// Whether a MySQL binlog counts YEAR among the signed columns: the bitmap's length decides
    /// where it can, the server's version elsewhere.
    pub fn year_is_signed(types: &[u8], bitmap: Option<&[u8]>, flavor: Flavor) -> bool {
        let version = match flavor {
            Flavor::MariaDb => return true,
            Flavor::MySql { version } => version,
        };
        let with = types
            .iter()
            .filter(|&&t| signed(t, true))
            .count()
            .div_ceil(8);
        let without = types
            .iter()
            .filter(|&&t| signed(t, false))
            .count()
            .div_ceil(8);
        match bitmap.map(<[u8]>::len) {
            Some(len) if len == with && len != without => true,
            Some(len) if len == without && len != with => false,
            _ => version >= (8, 0, 23),
        }
    }
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
    /// 4-byte little-endian IEEE float.
    Float,
    /// 8-byte little-endian IEEE double.
    Double,
    /// BIT(n): `ceil(n / 8)` big-endian bytes.
    Bit {
        /// Stored bytes.
        bytes: u8,
    },
    /// Length-prefixed text; the prefix has `len_bytes` bytes.
    Text {
        /// Width of the length prefix.
        len_bytes: u8,
        /// How the column's character set reads.
        codec: Codec,
        /// CHAR: the server pads with spaces that `SELECT` does not return.
        trim_spaces: bool,
    },
    /// Length-prefixed raw bytes.
    Bytes {
        /// Width of the length prefix.
        len_bytes: u8,
        /// BINARY(n): the byte length the value is padded to with NULs, as `SELECT` returns it.
        pad_to: u16,
    },
    /// ENUM: a 1- or 2-byte index into the labels, 0 for the empty error value.
    Enum {
        /// Stored bytes.
        bytes: u8,
    },
    /// SET: a bitmap of 1 to 8 bytes.
    Set {
        /// Stored bytes.
        bytes: u8,
    },
    /// MySQL binary JSON behind a length prefix.
    Json {
        /// Width of the length prefix.
        len_bytes: u8,
    },
    /// SRID and WKB behind a length prefix.
    Geometry {
        /// Width of the length prefix.
        len_bytes: u8,
    },
    /// Little-endian IEEE floats behind a length prefix (MySQL 9's VECTOR).
    Vector {
        /// Width of the length prefix.
        len_bytes: u8,
    },
    /// 3-byte packed date.
    Date,
    /// One byte, years since 1900 (0 is the zero year).
    Year,
    /// 3-byte big-endian packed TIME plus fraction.
    Time2 {
        /// Fractional digits.
        fsp: u8,
    },
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
    /// The table's schema at this point of the binlog (hidden columns left out).
    pub schema: Arc<TableSchema>,
    /// One decoder per column of the schema, in column order.
    pub columns: Vec<ColumnDecoder>,
    /// Table-map columns that row images leave out: the hidden generated columns of MySQL
    /// functional indexes (`!hidden!...`), which MySQL 8.0.13 to 8.0.22 name in table maps
    /// but never log; later releases leave them out of table maps too.
    pub hidden: Vec<usize>,
}

impl TableDecoder {
    /// How many columns the table map, and so every row image's bitmaps, has.
    pub fn width(&self) -> usize {
        self.columns.len() + self.hidden.len()
    }
}

/// The name MySQL gives the hidden generated column of a functional index.
const HIDDEN_PREFIX: &str = "!hidden!";

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
        "the table has no primary key, and records are keyed by primary key; add one, name \
         its key columns under [keys] in the config, or remove the table from `tables`"
    )]
    NoPrimaryKey,
    /// A configured key column is not in the table.
    #[error("the key configured under [keys] names column `{0}`, which the table does not have")]
    KeyColumnMissing(String),
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
