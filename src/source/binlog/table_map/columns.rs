//! A captured table's columns from its TABLE_MAP: types, metadata and how to decode each.

use super::metadata::*;
use super::*;

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
                // DECIMAL UNSIGNED only forbids negatives; values decode the same. MariaDB
                // allows scales up to 38 (MySQL up to 30).
                if precision == 0 || precision > 65 || scale > 38 || scale > precision {
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
pub(super) fn character_column(
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
pub(super) fn string_meta(byte0: u8, byte1: u8) -> (u8, u16) {
    let (mut real_type, mut len) = (byte0, u16::from(byte1));
    if real_type & 0x30 != 0x30 {
        len |= u16::from((real_type & 0x30) ^ 0x30) << 4;
        real_type |= 0x30;
    }
    (real_type, len)
}

pub(super) fn type_name(ty: u8) -> &'static str {
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
