//! TABLE_MAP events: the table's schema at this point of the binlog, taken from the event
//! itself. With `binlog_row_metadata=FULL` it carries column names, signedness, character sets
//! and the primary key, so no query against today's `information_schema` is needed.

use std::sync::Arc;

use super::cursor::{Cursor, DecodeError};
use super::event::Flavor;
use crate::model::{Column, ColumnType, TableId, TableSchema, column_indices};
use crate::source::charset::{Charset, Codec, Collations};

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

/// Optional metadata this decoder uses.
#[derive(Default)]
struct OptionalMetadata<'a> {
    signedness: Option<&'a [u8]>,
    text_charsets: Option<Charsets>,
    enum_set_charsets: Option<Charsets>,
    names: Option<Vec<String>>,
    primary_key: Option<Vec<usize>>,
    set_labels: Vec<Vec<&'a [u8]>>,
    enum_labels: Vec<Vec<&'a [u8]>>,
    /// Declared dimensions of the VECTOR columns, in column order.
    vector_dims: Vec<u64>,
}

/// Collations of the character (or ENUM/SET) columns, counted among those columns only.
enum Charsets {
    /// A default with exceptions by index.
    Default(u64, Vec<(usize, u64)>),
    /// One per column.
    PerColumn(Vec<u64>),
}

impl Charsets {
    fn parse_default(mut v: Cursor<'_>) -> Result<Self, DecodeError> {
        let default = v.lenenc("default charset")?;
        let mut exceptions = Vec::new();
        while !v.is_empty() {
            let idx = v.lenenc_usize("charset column index")?;
            exceptions.push((idx, v.lenenc("charset collation")?));
        }
        Ok(Charsets::Default(default, exceptions))
    }

    fn parse_columns(mut v: Cursor<'_>) -> Result<Self, DecodeError> {
        let mut ids = Vec::new();
        while !v.is_empty() {
            ids.push(v.lenenc("column charset")?);
        }
        Ok(Charsets::PerColumn(ids))
    }

    /// The collation of the `nth` column of the kind.
    fn nth(&self, nth: usize) -> Result<u64, DecodeError> {
        match self {
            Charsets::PerColumn(ids) => ids.get(nth).copied().ok_or(DecodeError::Invalid(
                "fewer column charsets than character columns".into(),
            )),
            Charsets::Default(default, exceptions) => Ok(exceptions
                .iter()
                .find(|(i, _)| *i == nth)
                .map_or(*default, |(_, c)| *c)),
        }
    }
}

fn parse_labels<'a>(mut v: Cursor<'a>) -> Result<Vec<Vec<&'a [u8]>>, DecodeError> {
    let mut columns = Vec::new();
    while !v.is_empty() {
        let n = v.lenenc_usize("label count")?;
        let mut labels = Vec::with_capacity(n.min(65_535));
        for _ in 0..n {
            labels.push(v.lenenc_bytes("label")?);
        }
        columns.push(labels);
    }
    Ok(columns)
}

fn parse_optional(mut c: Cursor<'_>) -> Result<OptionalMetadata<'_>, DecodeError> {
    let mut m = OptionalMetadata::default();
    while !c.is_empty() {
        let kind = c.u8("optional metadata type")?;
        let mut v = Cursor::new(c.lenenc_bytes("optional metadata field")?);
        match kind {
            meta::SIGNEDNESS => m.signedness = Some(v.rest()),
            meta::DEFAULT_CHARSET => m.text_charsets = Some(Charsets::parse_default(v)?),
            meta::COLUMN_CHARSET => m.text_charsets = Some(Charsets::parse_columns(v)?),
            meta::ENUM_AND_SET_DEFAULT_CHARSET => {
                m.enum_set_charsets = Some(Charsets::parse_default(v)?)
            }
            meta::ENUM_AND_SET_COLUMN_CHARSET => {
                m.enum_set_charsets = Some(Charsets::parse_columns(v)?)
            }
            meta::SET_STR_VALUE => m.set_labels = parse_labels(v)?,
            meta::VECTOR_DIMENSIONALITY => {
                while !v.is_empty() {
                    m.vector_dims.push(v.lenenc("vector dimensions")?);
                }
            }
            meta::ENUM_STR_VALUE => m.enum_labels = parse_labels(v)?,
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
            _ => {} // geometry subtypes, column visibility: not needed to decode values
        }
    }
    Ok(m)
}

/// Labels of an ENUM or SET column as UTF-8.
fn labels(
    raw: Option<&Vec<&[u8]>>,
    charset: Charset,
    column: &str,
) -> Result<Arc<[String]>, TableMapError> {
    let raw = raw.ok_or(TableMapError::MissingMetadata("ENUM/SET labels"))?;
    let codec = match charset {
        Charset::Text(codec) => codec,
        // Labels of a binary ENUM are bytes; as text they must be UTF-8.
        Charset::Binary => Codec::Utf8,
        Charset::Other(cs) => {
            return Err(DecodeError::Invalid(format!(
                "column `{column}`: the labels' character set {cs} is unknown to Sluice"
            ))
            .into());
        }
    };
    raw.iter()
        .map(|l| {
            codec.decode(l).ok_or_else(|| {
                DecodeError::Invalid(format!("column `{column}`: a label is not valid text")).into()
            })
        })
        .collect()
}

/// Parses the columns of a TABLE_MAP whose table is captured.
/// `key`, when given, names the columns that key the table's records instead of its primary key
/// (tables without one need it).
pub fn parse_columns(
    head: TableMapHead<'_>,
    collations: &Collations,
    key: Option<&[String]>,
    flavor: Flavor,
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
    let year_signed = subset::year_is_signed(types, opt.signedness, flavor);
    let (mut numeric, mut textual, mut enums, mut sets) = (0usize, 0usize, 0usize, 0usize);
    let mut vectors = 0usize;
    let mut columns = Vec::with_capacity(n);
    let mut decoders = Vec::with_capacity(n);
    for (i, &ty) in types.iter().enumerate() {
        let name = names[i].as_str();
        let unsupported = |type_name: &str| TableMapError::Unsupported {
            column: name.to_string(),
            type_name: type_name.to_string(),
        };
        let invalid = |what: String| -> TableMapError {
            DecodeError::Invalid(format!("column `{name}`: {what}")).into()
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
        let mut text_charset = || -> Result<Charset, TableMapError> {
            let collation = opt
                .text_charsets
                .as_ref()
                .ok_or(TableMapError::MissingMetadata("column character sets"))?
                .nth(textual)?;
            textual += 1;
            Ok(collations.charset(collation))
        };
        let enum_set_charset = |nth: usize| -> Result<Charset, TableMapError> {
            let collation = opt
                .enum_set_charsets
                .as_ref()
                .ok_or(TableMapError::MissingMetadata("ENUM/SET character sets"))?
                .nth(nth)?;
            Ok(collations.charset(collation))
        };
        // The entries of the subset fields this column takes, by the rules in `subset`.
        let real_type = match metadata.peek(2) {
            Some(&[byte0, byte1]) if ty == col::STRING => Some(string_meta(byte0, byte1).0),
            _ => None,
        };
        let signed = if subset::signed(ty, year_signed) {
            Some(unsigned()?)
        } else {
            None
        };
        let charset = if subset::charset(ty, real_type, flavor) {
            Some(text_charset()?)
        } else {
            None
        };
        let charset = || charset.ok_or_else(|| invalid("no character set entry".into()));
        let (decoder, column_type) = match ty {
            col::TINY | col::SHORT | col::INT24 | col::LONG | col::LONGLONG => {
                let bytes = match ty {
                    col::TINY => 1,
                    col::SHORT => 2,
                    col::INT24 => 3,
                    col::LONG => 4,
                    _ => 8,
                };
                let unsigned = signed.unwrap_or_default();
                (
                    ColumnDecoder::Int { bytes, unsigned },
                    ColumnType::Integer { bytes, unsigned },
                )
            }
            col::NEWDECIMAL => {
                let precision = metadata.u8("decimal precision")?;
                let scale = metadata.u8("decimal scale")?;
                // DECIMAL UNSIGNED only forbids negatives; values decode the same.
                if precision == 0 || precision > 65 || scale > 30 || scale > precision {
                    return Err(invalid(format!(
                        "DECIMAL({precision},{scale}) is out of range"
                    )));
                }
                (
                    ColumnDecoder::Decimal { precision, scale },
                    ColumnType::Decimal { precision, scale },
                )
            }
            col::FLOAT | col::DOUBLE => {
                let size = metadata.u8("float size")?;
                // FLOAT UNSIGNED only forbids negatives.
                match (ty, size) {
                    (col::FLOAT, 4) => (ColumnDecoder::Float, ColumnType::Float),
                    (col::DOUBLE, 8) => (ColumnDecoder::Double, ColumnType::Double),
                    _ => return Err(invalid(format!("floating-point size {size}"))),
                }
            }
            col::BIT => {
                let extra_bits = metadata.u8("bit length")?;
                let whole_bytes = metadata.u8("bit length")?;
                let bits = u16::from(whole_bytes) * 8 + u16::from(extra_bits);
                if extra_bits > 7 || !(1..=64).contains(&bits) {
                    return Err(invalid(format!("BIT({bits})")));
                }
                (
                    ColumnDecoder::Bit {
                        bytes: whole_bytes + u8::from(extra_bits > 0),
                    },
                    ColumnType::Bit { bits: bits as u8 },
                )
            }
            col::STRING => {
                let (real_type, max_len) =
                    string_meta(metadata.u8("char type")?, metadata.u8("char length")?);
                match real_type {
                    col::ENUM | col::SET => {
                        let is_enum = real_type == col::ENUM;
                        let (raw, widest) = if is_enum {
                            (opt.enum_labels.get(enums), 2)
                        } else {
                            (opt.set_labels.get(sets), 8)
                        };
                        let labels = labels(raw, enum_set_charset(enums + sets)?, name)?;
                        let bytes = max_len as u8;
                        if !(1..=widest).contains(&bytes) {
                            return Err(invalid(format!("ENUM/SET stored in {bytes} bytes")));
                        }
                        if is_enum {
                            enums += 1;
                            (ColumnDecoder::Enum { bytes }, ColumnType::Enum(labels))
                        } else {
                            sets += 1;
                            (ColumnDecoder::Set { bytes }, ColumnType::Set(labels))
                        }
                    }
                    _ => {
                        let len_bytes = if max_len < 256 { 1 } else { 2 };
                        character_column(charset()?, len_bytes, max_len, "CHAR")
                            .map_err(|cs| unsupported(&cs))?
                    }
                }
            }
            col::VARCHAR | col::VAR_STRING | col::BLOB => {
                let (len_bytes, sql) = if ty == col::BLOB {
                    let len_bytes = metadata.u8("blob length size")?;
                    if !(1..=4).contains(&len_bytes) {
                        return Err(invalid(format!("blob length size {len_bytes}")));
                    }
                    (len_bytes, "TEXT")
                } else {
                    let max_len = metadata.uint_le(2, "varchar length")?;
                    (if max_len < 256 { 1 } else { 2 }, "VARCHAR")
                };
                character_column(charset()?, len_bytes, 0, sql).map_err(|cs| unsupported(&cs))?
            }
            col::JSON | col::GEOMETRY => {
                let len_bytes = metadata.u8("length size")?;
                if !(1..=4).contains(&len_bytes) {
                    return Err(invalid(format!("length size {len_bytes}")));
                }
                if ty == col::JSON {
                    (ColumnDecoder::Json { len_bytes }, ColumnType::Json)
                } else {
                    (ColumnDecoder::Geometry { len_bytes }, ColumnType::Geometry)
                }
            }
            col::VECTOR => {
                let len_bytes = metadata.u8("vector length size")?;
                if !(1..=4).contains(&len_bytes) {
                    return Err(invalid(format!("length size {len_bytes}")));
                }
                let dims = opt.vector_dims.get(vectors).copied().unwrap_or(0);
                vectors += 1;
                let dims = u32::try_from(dims)
                    .map_err(|_| invalid(format!("VECTOR of {dims} dimensions")))?;
                (
                    ColumnDecoder::Vector { len_bytes },
                    ColumnType::Vector { dims },
                )
            }
            col::DATE => (ColumnDecoder::Date, ColumnType::Date),
            col::YEAR => (ColumnDecoder::Year, ColumnType::Year),
            col::TIME2 | col::DATETIME2 | col::TIMESTAMP2 => {
                let fsp = metadata.u8("fractional seconds precision")?;
                if fsp > 6 {
                    return Err(invalid(format!("fractional precision {fsp}")));
                }
                match ty {
                    col::TIME2 => (ColumnDecoder::Time2 { fsp }, ColumnType::Time { fsp }),
                    col::DATETIME2 => (
                        ColumnDecoder::DateTime2 { fsp },
                        ColumnType::DateTime { fsp },
                    ),
                    _ => (
                        ColumnDecoder::Timestamp2 { fsp },
                        ColumnType::Timestamp { fsp },
                    ),
                }
            }
            other => return Err(unsupported(type_name(other))),
        };
        decoders.push(decoder);
        let nullable = null_bits[i / 8] & (1 << (i % 8)) != 0;
        columns.push(Column::new(name, column_type, nullable));
    }
    let hidden: Vec<usize> = (0..n)
        .filter(|&i| names[i].starts_with(HIDDEN_PREFIX))
        .collect();
    for &i in hidden.iter().rev() {
        columns.remove(i);
        decoders.remove(i);
    }
    let key = match (key, opt.primary_key) {
        (Some(names), _) => column_indices(&columns, names)
            .map_err(|missing| TableMapError::KeyColumnMissing(missing.to_string()))?,
        (None, Some(k)) if !k.is_empty() => {
            // Table-map positions, renumbered past the hidden columns left out.
            if let Some(&bad) = k.iter().find(|&&k| k >= n || hidden.contains(&k)) {
                return Err(
                    DecodeError::Invalid(format!("primary key column {bad} of {n}")).into(),
                );
            }
            k.iter()
                .map(|&k| k - hidden.iter().filter(|&&h| h < k).count())
                .collect()
        }
        _ => return Err(TableMapError::NoPrimaryKey),
    };
    Ok(TableDecoder {
        schema: Arc::new(TableSchema {
            id: head.table,
            columns,
            key,
        }),
        columns: decoders,
        hidden,
    })
}

/// A column of a character type, by its character set: raw bytes for `binary` (padded to
/// `fixed_len`, BINARY's width, when non-zero), text otherwise; CHAR (`fixed_len` non-zero)
/// drops the server's space padding. `Err` is the SQL type Sluice cannot transcode.
fn character_column(
    charset: Charset,
    len_bytes: u8,
    fixed_len: u16,
    sql: &str,
) -> Result<(ColumnDecoder, ColumnType), String> {
    match charset {
        Charset::Binary => Ok((
            ColumnDecoder::Bytes {
                len_bytes,
                pad_to: fixed_len,
            },
            ColumnType::Bytes,
        )),
        Charset::Other(cs) => Err(format!("{sql} CHARACTER SET {cs}")),
        Charset::Text(codec) => Ok((
            ColumnDecoder::Text {
                len_bytes,
                codec,
                trim_spaces: fixed_len > 0,
            },
            ColumnType::Text,
        )),
    }
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
        col::NULL => "NULL",
        col::TIMESTAMP => "TIMESTAMP (pre-5.6 format)",
        col::TIME => "TIME (pre-5.6 format)",
        col::DATETIME => "DATETIME (pre-5.6 format)",
        col::NEWDATE => "NEWDATE",
        col::VARCHAR_COMPRESSED => "VARCHAR COMPRESSED",
        col::BLOB_COMPRESSED => "BLOB COMPRESSED",
        col::ENUM => "ENUM (bare type code)",
        col::SET => "SET (bare type code)",
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
            // MariaDB writes a signedness bit for every Field_num (YEAR included) and a
            // charset for every column with one (GEOMETRY: binary).
            if matches!(ty, col::NEWDECIMAL | col::FLOAT | col::DOUBLE | col::YEAR) {
                self.unsigned.push(ty == col::YEAR);
            }
            if matches!(
                ty,
                col::VARCHAR
                    | col::STRING
                    | col::BLOB
                    | col::VARCHAR_COMPRESSED
                    | col::BLOB_COMPRESSED
            ) {
                self.charsets.push(45); // utf8mb4_general_ci
            }
            if ty == col::GEOMETRY {
                self.charsets.push(63);
            }
            self.columns.push((ty, meta.to_vec(), nullable, name));
            self
        }

        /// A text column in the character set of `collation`.
        pub(crate) fn text(
            mut self,
            ty: u8,
            meta: &[u8],
            collation: u8,
            name: &'static str,
        ) -> Self {
            self.charsets.push(collation);
            self.columns.push((ty, meta.to_vec(), true, name));
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
        let mut c = Collations::new([(45, "utf8mb4".to_string()), (8, "latin1".to_string())]);
        c.add_table(crate::source::charset::test_tables::latin1());
        c
    }

    fn parse(body: &[u8]) -> Result<TableDecoder, TableMapError> {
        parse_columns(
            parse_head(body, 6).unwrap(),
            &collations(),
            None,
            Flavor::MariaDb,
        )
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
                ColumnDecoder::Text {
                    len_bytes: 2,
                    codec: Codec::Utf8,
                    trim_spaces: false
                },
                ColumnDecoder::Text {
                    len_bytes: 1,
                    codec: Codec::Utf8,
                    trim_spaces: true
                },
                ColumnDecoder::Text {
                    len_bytes: 2,
                    codec: Codec::Utf8,
                    trim_spaces: false
                },
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

    /// `(id INT PRIMARY KEY, y YEAR, a INT, b INT UNSIGNED, c TINYINT)`: YEAR has a
    /// signedness bit, so `a` is signed and `b` unsigned.
    #[test]
    fn numeric_columns_after_a_year_keep_their_own_signedness() {
        let body = TableMapBuilder::new()
            .int(col::LONG, false, "id")
            .column(col::YEAR, &[], true, "y")
            .int(col::LONG, false, "a")
            .int(col::LONG, true, "b")
            .int(col::TINY, false, "c")
            .key(&[0])
            .build(1);
        let d = parse(&body).unwrap();
        let types: Vec<&ColumnType> = d.schema.columns.iter().map(|c| &c.ty).collect();
        let int = |bytes, unsigned| ColumnType::Integer { bytes, unsigned };
        assert_eq!(
            types,
            [
                &int(4, false),
                &ColumnType::Year,
                &int(4, false),
                &int(4, true),
                &int(1, false)
            ]
        );
    }

    /// `(id INT PRIMARY KEY, g POINT, c VARCHAR(20) latin1, d VARCHAR(20) utf8mb4)` on
    /// MariaDB, which gives GEOMETRY a charset entry; MySQL does not.
    #[test]
    fn character_columns_after_a_geometry_keep_their_own_charset() {
        let (latin1, utf8mb4) = (8, 45);
        let mariadb = TableMapBuilder::new()
            .int(col::LONG, false, "id")
            .column(col::GEOMETRY, &[4], true, "g")
            .text(col::VARCHAR, &[20, 0], latin1, "c")
            .text(col::VARCHAR, &[80, 0], utf8mb4, "d")
            .key(&[0])
            .build(1);
        let d = parse(&mariadb).unwrap();
        let latin1_codec = Codec::Table(crate::source::charset::test_tables::latin1());
        let codecs: Vec<Option<Codec>> = d
            .columns
            .iter()
            .map(|c| match c {
                ColumnDecoder::Text { codec, .. } => Some(*codec),
                _ => None,
            })
            .collect();
        assert_eq!(codecs, [None, None, Some(latin1_codec), Some(Codec::Utf8)]);

        // The same table as MySQL writes it: no entry for the geometry.
        let mut mysql = TableMapBuilder::new()
            .int(col::LONG, false, "id")
            .column(col::GEOMETRY, &[4], true, "g")
            .text(col::VARCHAR, &[20, 0], latin1, "c")
            .text(col::VARCHAR, &[80, 0], utf8mb4, "d")
            .key(&[0]);
        mysql.charsets.remove(0);
        let body = mysql.build(1);
        let head = parse_head(&body, 6).unwrap();
        let flavor = Flavor::MySql {
            version: (8, 0, 36),
        };
        let d = parse_columns(head, &collations(), None, flavor).unwrap();
        assert!(matches!(
            d.columns[2],
            ColumnDecoder::Text { codec, .. } if codec == latin1_codec
        ));
    }

    #[test]
    fn mysql_counts_year_where_the_bitmap_length_or_the_version_says_so() {
        use crate::source::binlog::table_map::subset::year_is_signed;
        let mysql = |version| Flavor::MySql { version };
        // Eight integers and a YEAR: 9 bits take two bytes, 8 bits one.
        let mut types = vec![col::LONG; 8];
        types.push(col::YEAR);
        assert!(year_is_signed(&types, Some(&[0, 0]), mysql((8, 0, 17))));
        assert!(!year_is_signed(&types, Some(&[0]), mysql((9, 1, 0))));
        // Ambiguous lengths follow the version.
        let types = [col::LONG, col::YEAR];
        assert!(!year_is_signed(&types, Some(&[0]), mysql((8, 0, 20))));
        assert!(year_is_signed(&types, Some(&[0]), mysql((8, 4, 0))));
        assert!(year_is_signed(&types, None, Flavor::MariaDb));
    }

    #[test]
    fn unsupported_types_are_named_with_their_column() {
        let body = TableMapBuilder::new()
            .int(col::LONG, false, "id")
            .column(col::VARCHAR_COMPRESSED, &[10, 0], false, "f")
            .key(&[0])
            .build(1);
        let e = parse(&body).unwrap_err().to_string();
        assert_eq!(
            e,
            "column `f` has type VARCHAR COMPRESSED, which Sluice cannot decode"
        );
    }

    #[test]
    fn tables_without_full_metadata_or_key_are_refused() {
        let body = TableMapBuilder::new().int(col::LONG, false, "id").build(1);
        assert!(matches!(parse(&body), Err(TableMapError::NoPrimaryKey)));
        let keyed = |k: &str| {
            parse_columns(
                parse_head(&body, 6).unwrap(),
                &collations(),
                Some(&[k.to_string()]),
                Flavor::MariaDb,
            )
        };
        assert_eq!(keyed("id").unwrap().schema.key, vec![0]);
        assert!(matches!(
            keyed("nope"),
            Err(TableMapError::KeyColumnMissing(_))
        ));
        let minimal = TableMapBuilder::new()
            .int(col::LONG, false, "id")
            .key(&[0])
            .minimal()
            .build(1);
        let e = parse(&minimal).unwrap_err().to_string();
        assert!(e.contains("binlog_row_metadata=FULL"), "{e}");
    }
}
