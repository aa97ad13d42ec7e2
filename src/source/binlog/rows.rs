//! WRITE/UPDATE/DELETE_ROWS events (v1 and v2) and the binary encoding of each column value.

use compact_str::CompactString;

use super::cursor::{Cursor, DecodeError};
use super::decimal::{decode_decimal, decode_narrow};
use super::event::kind;
use super::table_map::{ColumnDecoder, TableDecoder};
use super::{json, json_diff};
use crate::model::{ColumnType, Row, Value, fill, time};
use crate::source::charset::Codec;

/// Which rows event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowsKind {
    /// Inserted rows: one after-image each.
    Write,
    /// Updated rows: a before- and an after-image each.
    Update,
    /// Deleted rows: one before-image each.
    Delete,
}

impl RowsKind {
    /// The kind of a rows event type, if it is one.
    pub fn of(event_type: u8) -> Option<RowsKind> {
        use kind::*;
        match event_type {
            WRITE_ROWS_V1 | WRITE_ROWS_V2 | WRITE_ROWS_COMPRESSED_V1 | WRITE_ROWS_COMPRESSED_V2 => {
                Some(RowsKind::Write)
            }
            UPDATE_ROWS_V1
            | UPDATE_ROWS_V2
            | PARTIAL_UPDATE_ROWS
            | UPDATE_ROWS_COMPRESSED_V1
            | UPDATE_ROWS_COMPRESSED_V2 => Some(RowsKind::Update),
            DELETE_ROWS_V1
            | DELETE_ROWS_V2
            | DELETE_ROWS_COMPRESSED_V1
            | DELETE_ROWS_COMPRESSED_V2 => Some(RowsKind::Delete),
            _ => None,
        }
    }
}

/// Whether a rows event type has the v2 extra-data header.
fn is_v2(event_type: u8) -> bool {
    use kind::*;
    (WRITE_ROWS_V2..=DELETE_ROWS_V2).contains(&event_type)
        || event_type == PARTIAL_UPDATE_ROWS
        || (WRITE_ROWS_COMPRESSED_V2..=DELETE_ROWS_COMPRESSED_V2).contains(&event_type)
}

/// The header of a rows event and a cursor at its first row image.
pub struct RowsEvent<'a> {
    /// Table id of the preceding TABLE_MAP.
    pub table_id: u64,
    /// Write, update or delete.
    pub kind: RowsKind,
    /// Cursor over the whole body, positioned at the first row image; its position is the
    /// image's offset in the body, which versions are built from.
    pub rows: Cursor<'a>,
    /// The rest of the body is one compressed block holding the row images.
    pub compressed: bool,
    /// After images may hold partial JSON updates (MySQL's PARTIAL_UPDATE_ROWS_EVENT).
    pub partial: bool,
}

/// Parses the header of a rows event. Images that leave out columns (a `binlog_row_image`
/// other than FULL) are refused: a partial image cannot be turned into a whole document.
/// `expected` is the table map's column count and the columns images leave out (hidden
/// functional-index columns), when known.
pub fn parse_rows<'a>(
    event_type: u8,
    body: &'a [u8],
    table_id_len: usize,
    expected: Option<(usize, &[usize])>,
) -> Result<RowsEvent<'a>, DecodeError> {
    let kind = RowsKind::of(event_type).ok_or_else(|| {
        DecodeError::Invalid(format!("event type {event_type} is not a rows event"))
    })?;
    let mut c = Cursor::new(body);
    let table_id = c.uint_le(table_id_len, "rows table id")?;
    c.take(2, "rows flags")?;
    if is_v2(event_type) {
        let extra = c.uint_le(2, "rows extra data length")? as usize;
        c.take(extra.saturating_sub(2), "rows extra data")?;
    }
    let n = c.lenenc_usize("rows column count")?;
    let images = if kind == RowsKind::Update { 2 } else { 1 };
    let (width, hidden) = expected.unwrap_or((n, &[]));
    for _ in 0..images {
        let present = c.take(n.div_ceil(8), "columns-present bitmap")?;
        let whole = (0..n).all(|i| (present[i / 8] & (1 << (i % 8)) != 0) != hidden.contains(&i));
        if !whole || width != n {
            return Err(DecodeError::Invalid(
                "the row image leaves out columns; set binlog_row_image=FULL on the server (and \
                 in every session: a client can change it for its own)"
                    .into(),
            ));
        }
    }
    Ok(RowsEvent {
        table_id,
        kind,
        rows: c,
        compressed: event_type >= kind::WRITE_ROWS_COMPRESSED_V1,
        partial: event_type == kind::PARTIAL_UPDATE_ROWS,
    })
}

/// Decodes one full row image. Zero and impossible dates become NULL and are counted in
/// `zero_dates`.
pub fn decode_row(
    table: &TableDecoder,
    c: &mut Cursor<'_>,
    zero_dates: &mut u64,
) -> Result<Row, DecodeError> {
    decode_image(table, c, zero_dates, None)
}

/// Decodes the after image of a partial JSON update: `value_options`, the bitmap of JSON
/// columns that hold changes instead of a document, then the image, each such column's new
/// document made from `before`'s (json_diff.rs).
pub fn decode_partial_after(
    table: &TableDecoder,
    c: &mut Cursor<'_>,
    before: &Row,
    zero_dates: &mut u64,
) -> Result<Row, DecodeError> {
    let options = c.lenenc("partial update value options")?;
    if options > 1 {
        return Err(DecodeError::Invalid(format!(
            "partial update value options {options} (only PARTIAL_JSON, 1, exists)"
        )));
    }
    if options == 0 {
        return decode_image(table, c, zero_dates, None);
    }
    let json_columns = table
        .columns
        .iter()
        .filter(|d| matches!(d, ColumnDecoder::Json { .. }))
        .count();
    let partial = c.take(json_columns.div_ceil(8), "partial JSON bitmap")?;
    decode_image(table, c, zero_dates, Some((partial, before)))
}

/// Decodes one row image; `partial` is the bitmap of JSON columns (LSB first, counted over
/// JSON columns) that hold changes to the `before` image's document.
fn decode_image(
    table: &TableDecoder,
    c: &mut Cursor<'_>,
    zero_dates: &mut u64,
    partial: Option<(&[u8], &Row)>,
) -> Result<Row, DecodeError> {
    let n = table.columns.len();
    let nulls = c.take(n.div_ceil(8), "row null bitmap")?;
    // Values are decoded into their place in the row: built in a temporary and moved, each
    // one stalled the copy on the temporary's just-written bytes (measured: a sixth of the
    // decoder's time).
    let mut row = Vec::with_capacity(n);
    row.resize_with(n, || Value::Null);
    let mut json_index = 0;
    let columns = table.columns.iter().zip(&table.schema.columns);
    for (i, ((col, column), slot)) in columns.zip(row.iter_mut()).enumerate() {
        let changes = match (col, partial) {
            (ColumnDecoder::Json { .. }, Some((bits, before))) => {
                let j = json_index;
                json_index += 1;
                (bits[j / 8] & (1 << (j % 8)) != 0).then_some(before)
            }
            _ => None,
        };
        if nulls[i / 8] & (1 << (i % 8)) != 0 {
            continue;
        }
        match (changes, col) {
            (Some(before), ColumnDecoder::Json { len_bytes }) => {
                let len = c.uint_le(usize::from(*len_bytes), "partial JSON length")? as usize;
                let diffs = c.take(len, "partial JSON changes")?;
                let Some(Value::String(old)) = before.get(i) else {
                    return Err(DecodeError::Invalid(format!(
                        "column `{}`: a partial JSON update of a document the before image \
                         does not hold; set binlog_row_image=FULL on the server",
                        column.name
                    )));
                };
                json_diff::apply(old, diffs).map(|new| *slot = Value::String(new.into()))
            }
            _ => decode_value(*col, &column.ty, c, zero_dates, slot),
        }
        .map_err(|e| DecodeError::Invalid(format!("column `{}`: {e}", column.name)))?;
    }
    Ok(row)
}

/// Decodes one value into `out`, which holds NULL: it is overwritten, not dropped.
fn decode_value(
    col: ColumnDecoder,
    ty: &ColumnType,
    c: &mut Cursor<'_>,
    zero_dates: &mut u64,
    out: &mut Value,
) -> Result<(), DecodeError> {
    let value = match col {
        ColumnDecoder::Int { bytes, unsigned } => {
            let raw = c.uint_le(usize::from(bytes), "integer")?;
            if unsigned && bytes == 8 {
                Value::UInt(raw)
            } else if unsigned {
                Value::Int(raw as i64)
            } else {
                let shift = 64 - 8 * u32::from(bytes);
                Value::Int(((raw << shift) as i64) >> shift)
            }
        }
        ColumnDecoder::Decimal { precision, scale } if precision <= 18 => {
            Value::Decimal(decode_narrow(c, precision, scale)?)
        }
        ColumnDecoder::Decimal { precision, scale } => {
            // Straight into the slot: merged with the narrow decimals' value, this one's
            // memory would stall theirs.
            fill(out, Value::Decimal(decode_decimal(c, precision, scale)?));
            return Ok(());
        }
        ColumnDecoder::Float => Value::Float(f32::from_bits(c.uint_le(4, "float")? as u32)),
        ColumnDecoder::Double => Value::Double(f64::from_bits(c.uint_le(8, "double")?)),
        ColumnDecoder::Bit { bytes } => Value::Bits(c.uint_be(usize::from(bytes), "bit")?),
        ColumnDecoder::Text {
            len_bytes,
            codec,
            trim_spaces,
        } => {
            let len = c.uint_le(usize::from(len_bytes), "text length")? as usize;
            let bytes = c.take(len, "text")?;
            let invalid = || DecodeError::Invalid(format!("text is not valid {}", codec.name()));
            // UTF-8, by far the most common, is checked and trimmed in place and copied once,
            // here: a string returned from a call is stored in pieces and read back in one
            // wider load, which stalls (measured: 14 % of the row decoder's samples).
            if let Codec::Utf8 = codec {
                let text = crate::model::utf8(bytes).ok_or_else(invalid)?;
                let text = if trim_spaces {
                    text.trim_end_matches(' ')
                } else {
                    text
                };
                Value::String(CompactString::from(text))
            } else {
                let mut s = codec.decode(bytes).ok_or_else(invalid)?;
                if trim_spaces {
                    s.truncate(s.trim_end_matches(' ').len());
                }
                Value::String(s.into())
            }
        }
        ColumnDecoder::Vector { len_bytes } => {
            let len = c.uint_le(usize::from(len_bytes), "vector length")? as usize;
            Value::vector_from_le(c.take(len, "vector")?).ok_or_else(|| {
                DecodeError::Invalid(format!("a vector of {len} bytes, not whole floats"))
            })?
        }
        ColumnDecoder::Bytes { len_bytes, pad_to } => {
            let len = c.uint_le(usize::from(len_bytes), "byte string length")? as usize;
            let mut bytes = c.take(len, "byte string")?.to_vec();
            if bytes.len() < usize::from(pad_to) {
                bytes.resize(usize::from(pad_to), 0);
            }
            Value::Bytes(bytes)
        }
        ColumnDecoder::Enum { bytes } => {
            let index = c.uint_le(usize::from(bytes), "enum index")? as usize;
            let ColumnType::Enum(labels) = ty else {
                return Err(DecodeError::Invalid("ENUM decoder without labels".into()));
            };
            match index {
                // MySQL's error value, '' in SELECT too.
                0 => Value::String(CompactString::default()),
                i => Value::String(
                    labels
                        .get(i - 1)
                        .ok_or_else(|| {
                            DecodeError::Invalid(format!(
                                "enum index {i} of {} labels",
                                labels.len()
                            ))
                        })?
                        .as_str()
                        .into(),
                ),
            }
        }
        ColumnDecoder::Set { bytes } => {
            let bits = c.uint_le(usize::from(bytes), "set bitmap")?;
            let ColumnType::Set(labels) = ty else {
                return Err(DecodeError::Invalid("SET decoder without labels".into()));
            };
            if labels.len() < 64 && bits >> labels.len() != 0 {
                return Err(DecodeError::Invalid(format!(
                    "set bitmap {bits:#x} names more than {} labels",
                    labels.len()
                )));
            }
            let mut out = CompactString::default();
            for (i, label) in labels.iter().enumerate() {
                if bits & (1 << i) != 0 {
                    if !out.is_empty() {
                        out.push(',');
                    }
                    out.push_str(label);
                }
            }
            Value::String(out)
        }
        ColumnDecoder::Json { len_bytes } => {
            let len = c.uint_le(usize::from(len_bytes), "json length")? as usize;
            Value::String(json::to_text(c.take(len, "json")?)?.into())
        }
        ColumnDecoder::Geometry { len_bytes } => {
            let len = c.uint_le(usize::from(len_bytes), "geometry length")? as usize;
            let mut g = Cursor::new(c.take(len, "geometry")?);
            let srid = g.uint_le(4, "geometry srid")? as u32;
            Value::Geometry {
                srid,
                wkb: g.rest().to_vec(),
            }
        }
        ColumnDecoder::Year => match c.u8("year")? {
            0 => Value::Int(0),
            y => Value::Int(1900 + i64::from(y)),
        },
        ColumnDecoder::Date => {
            let v = c.uint_le(3, "date")? as u32;
            let (y, m, d) = (v >> 9, (v >> 5) & 15, v & 31);
            if time::is_valid_date(y, m, d) {
                Value::Date(time::days_from_civil(y, m, d))
            } else {
                *zero_dates += 1;
                Value::Null
            }
        }
        ColumnDecoder::Time2 { fsp } => Value::Time(decode_time2(c, fsp)?),
        ColumnDecoder::DateTime2 { fsp } => {
            let packed = c.uint_be(5, "datetime")? as i64 - 0x80_0000_0000;
            let micros = fraction(c, fsp)?;
            let ymd = (packed >> 17) as u32;
            let hms = (packed & 0x1ffff) as u32;
            let (ym, d) = (ymd >> 5, ymd & 31);
            let (y, m) = (ym / 13, ym % 13);
            let (h, mi, s) = (hms >> 12, (hms >> 6) & 63, hms & 63);
            if packed >= 0 && time::is_valid_date(y, m, d) && h < 24 && mi < 60 && s < 60 {
                Value::DateTime(time::micros_from_civil(y, m, d, h, mi, s, micros))
            } else {
                *zero_dates += 1;
                Value::Null
            }
        }
        ColumnDecoder::Timestamp2 { fsp } => {
            let secs = c.uint_be(4, "timestamp")? as i64;
            let micros = fraction(c, fsp)?;
            if secs == 0 && micros == 0 {
                *zero_dates += 1;
                Value::Null
            } else {
                Value::Timestamp(secs * 1_000_000 + i64::from(micros))
            }
        }
    };
    fill(out, value);
    Ok(())
}

/// TIME2: a 3-byte big-endian offset integer `sign | hour(10) | minute(6) | second(6)` (on 24
/// bits with an extra 0x800000 bias) followed by the fraction; negative values store the
/// fraction as a borrow from the integer part. Returns signed microseconds.
fn decode_time2(c: &mut Cursor<'_>, fsp: u8) -> Result<i64, DecodeError> {
    const INT_OFS: i64 = 0x80_0000;
    let packed: i64 = match fsp {
        0 => (c.uint_be(3, "time")? as i64 - INT_OFS) << 24,
        1..=4 => {
            let mut int = c.uint_be(3, "time")? as i64 - INT_OFS;
            let (bytes, unit) = if fsp <= 2 { (1, 10_000) } else { (2, 100) };
            let raw = c.uint_be(bytes, "time fraction")? as i64;
            let mut frac = raw;
            if int < 0 && frac != 0 {
                int += 1;
                frac -= 1 << (8 * bytes);
            }
            (int << 24) + frac * unit
        }
        _ => c.uint_be(6, "time")? as i64 - 0x8000_0000_0000,
    };
    let negative = packed < 0;
    let magnitude = packed.unsigned_abs();
    let hms = magnitude >> 24;
    let micros = magnitude & 0xff_ffff;
    let (h, m, s) = ((hms >> 12) & 0x3ff, (hms >> 6) & 63, hms & 63);
    if m > 59 || s > 59 || micros > 999_999 {
        return Err(DecodeError::Invalid(format!(
            "time {h}:{m}:{s}.{micros} is out of range"
        )));
    }
    let total = ((h * 3600 + m * 60 + s) * 1_000_000 + micros) as i64;
    Ok(if negative { -total } else { total })
}

/// The fractional seconds of DATETIME2/TIMESTAMP2, in microseconds: `(fsp + 1) / 2` bytes,
/// big-endian, in units of 10^-(2 * bytes) seconds.
fn fraction(c: &mut Cursor<'_>, fsp: u8) -> Result<u32, DecodeError> {
    Ok(match fsp {
        0 => 0,
        1 | 2 => c.uint_be(1, "fraction")? as u32 * 10_000,
        3 | 4 => c.uint_be(2, "fraction")? as u32 * 100,
        _ => c.uint_be(3, "fraction")? as u32,
    })
    .and_then(|us| {
        if us < 1_000_000 {
            Ok(us)
        } else {
            Err(DecodeError::Invalid(format!(
                "fraction of {us} microseconds"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::source::charset::{Codec, test_tables};

    fn decimal(bytes: &[u8], p: u8, s: u8) -> String {
        let mut c = Cursor::new(bytes);
        let out = decode_decimal(&mut c, p, s).unwrap();
        assert!(c.is_empty(), "consumed exactly the decimal's bytes");
        let text = out.to_string();
        // Decoded and parsed values take the same form, so they compare equal.
        assert_eq!(Some(out), crate::model::Decimal::parse(&text, s), "{text}");
        text
    }

    #[test]
    fn decimals_match_mysqls_own_examples() {
        // From MySQL's decimal.c: 1234567890.1234 as DECIMAL(14,4).
        assert_eq!(
            decimal(&[0x81, 0x0D, 0xFB, 0x38, 0xD2, 0x04, 0xD2], 14, 4),
            "1234567890.1234"
        );
        // -1234567890.1234: every byte inverted.
        assert_eq!(
            decimal(&[0x7E, 0xF2, 0x04, 0xC7, 0x2D, 0xFB, 0x2D], 14, 4),
            "-1234567890.1234"
        );
        assert_eq!(decimal(&[0x80, 0x00, 0x00], 5, 2), "0.00");
        assert_eq!(decimal(&[0x80], 2, 0), "0");
        // -0.5 as DECIMAL(3,1): intg 2 -> 1 byte, frac 1 -> 1 byte.
        assert_eq!(decimal(&[0x7F, 0xFA], 3, 1), "-0.5");
    }

    #[test]
    fn widest_decimal_round_trips() {
        // DECIMAL(65,30): 35 integer digits (8 + 3 groups), 30 fraction digits (3 groups + 3).
        let int_digits = "12345678".to_string() + &"987654321".repeat(3);
        let frac_digits = "111111111".repeat(3) + "999";
        let mut b = vec![];
        b.extend_from_slice(&12345678u32.to_be_bytes());
        for _ in 0..3 {
            b.extend_from_slice(&987654321u32.to_be_bytes());
        }
        for _ in 0..3 {
            b.extend_from_slice(&111111111u32.to_be_bytes());
        }
        b.extend_from_slice(&999u16.to_be_bytes());
        b[0] ^= 0x80;
        assert_eq!(decimal(&b, 65, 30), format!("{int_digits}.{frac_digits}"));
        let neg: Vec<u8> = b.iter().map(|x| !x).collect();
        assert_eq!(
            decimal(&neg, 65, 30),
            format!("-{int_digits}.{frac_digits}")
        );
    }

    #[test]
    fn random_decimals_of_every_precision_and_scale_read_back() {
        // Packed by the format's description (nine digits per four big-endian bytes, the
        // partial groups next to the point, sign bit flipped, negatives inverted).
        let bytes_for = |digits: usize| [0, 1, 1, 2, 2, 3, 3, 4, 4, 4][digits];
        let pack = |digits: &[u8], width: usize, out: &mut Vec<u8>| {
            let v = digits
                .iter()
                .fold(0u64, |v, &d| v * 10 + u64::from(d - b'0'));
            out.extend_from_slice(&v.to_be_bytes()[8 - width..]);
        };
        let mut rng = fastrand::Rng::with_seed(20261130);
        for _ in 0..20_000 {
            let p = rng.u8(1..=65);
            let s = rng.u8(0..=p.min(38));
            let (intg, frac) = (usize::from(p - s), usize::from(s));
            let zeros = rng.usize(0..=intg); // leading zeros, as small values have
            let int: Vec<u8> = (0..intg)
                .map(|i| {
                    if i < zeros {
                        b'0'
                    } else {
                        b'0' + rng.u8(0..10)
                    }
                })
                .collect();
            let fraction: Vec<u8> = (0..frac).map(|_| b'0' + rng.u8(0..10)).collect();
            let negative = rng.bool();
            let mut packed = vec![];
            let (head, body) = int.split_at(intg % 9);
            if !head.is_empty() {
                pack(head, bytes_for(head.len()), &mut packed);
            }
            body.chunks(9).for_each(|g| pack(g, 4, &mut packed));
            for g in fraction.chunks(9) {
                let width = if g.len() == 9 { 4 } else { bytes_for(g.len()) };
                pack(g, width, &mut packed);
            }
            packed[0] ^= 0x80;
            if negative {
                packed.iter_mut().for_each(|b| *b = !*b);
            }
            let int_text = std::str::from_utf8(&int).unwrap().trim_start_matches('0');
            let frac_text = std::str::from_utf8(&fraction).unwrap();
            let zero = int_text.is_empty() && frac_text.bytes().all(|d| d == b'0');
            let want = format!(
                "{}{}{}{frac_text}",
                if negative && !zero { "-" } else { "" },
                if int_text.is_empty() { "0" } else { int_text },
                if frac > 0 { "." } else { "" },
            );
            assert_eq!(decimal(&packed, p, s), want, "DECIMAL({p},{s})");
        }
    }

    #[test]
    fn corrupt_decimals_are_errors_not_values() {
        let mut c = Cursor::new(&[0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
        assert!(decode_decimal(&mut c, 10, 0).is_err());
    }

    fn typed(col: ColumnDecoder, ty: &ColumnType, bytes: &[u8]) -> Result<Value, DecodeError> {
        let mut zero = 0;
        let mut c = Cursor::new(bytes);
        let mut v = Value::Null;
        decode_value(col, ty, &mut c, &mut zero, &mut v)?;
        assert!(c.is_empty());
        Ok(v)
    }

    fn one(col: ColumnDecoder, bytes: &[u8]) -> (Value, u64) {
        let mut zero = 0;
        let mut c = Cursor::new(bytes);
        let mut v = Value::Null;
        decode_value(col, &ColumnType::Text, &mut c, &mut zero, &mut v).unwrap();
        assert!(c.is_empty());
        (v, zero)
    }

    const UTF8: ColumnDecoder = ColumnDecoder::Text {
        len_bytes: 1,
        codec: Codec::Utf8,
        trim_spaces: false,
    };

    #[test]
    fn integers_of_every_width_and_sign() {
        let int = |bytes, unsigned| ColumnDecoder::Int { bytes, unsigned };
        assert_eq!(one(int(1, false), &[0xff]).0, Value::Int(-1));
        assert_eq!(one(int(1, true), &[0xff]).0, Value::Int(255));
        assert_eq!(one(int(3, false), &[0xfb, 0xff, 0xff]).0, Value::Int(-5));
        assert_eq!(
            one(int(3, false), &[0x00, 0x00, 0x80]).0,
            Value::Int(-8_388_608)
        );
        assert_eq!(
            one(int(3, true), &[0xff, 0xff, 0xff]).0,
            Value::Int(16_777_215)
        );
        assert_eq!(
            one(int(4, false), &i32::MIN.to_le_bytes()).0,
            Value::Int(i32::MIN.into())
        );
        assert_eq!(
            one(int(4, true), &u32::MAX.to_le_bytes()).0,
            Value::Int(u32::MAX.into())
        );
        assert_eq!(
            one(int(8, false), &i64::MIN.to_le_bytes()).0,
            Value::Int(i64::MIN)
        );
        assert_eq!(
            one(int(8, true), &u64::MAX.to_le_bytes()).0,
            Value::UInt(u64::MAX)
        );
    }

    #[test]
    fn temporal_values_keep_microseconds() {
        // 2024-02-29 23:59:58.123456 as DATETIME(6).
        let ym = 2024 * 13 + 2;
        let packed: u64 = ((((ym << 5) | 29) << 17) | (23 << 12) | (59 << 6) | 58) + 0x80_0000_0000;
        let mut b = packed.to_be_bytes()[3..].to_vec();
        b.extend_from_slice(&123_456u32.to_be_bytes()[1..]);
        let expected = time::micros_from_civil(2024, 2, 29, 23, 59, 58, 123_456);
        assert_eq!(
            one(ColumnDecoder::DateTime2 { fsp: 6 }, &b).0,
            Value::DateTime(expected)
        );

        // TIMESTAMP(3) 2024-01-01 00:00:00.5 UTC.
        let mut b = 1_704_067_200u32.to_be_bytes().to_vec();
        b.extend_from_slice(&5000u16.to_be_bytes());
        assert_eq!(
            one(ColumnDecoder::Timestamp2 { fsp: 3 }, &b).0,
            Value::Timestamp(1_704_067_200_500_000)
        );
        // TIMESTAMP(1) .5: one byte in hundredths.
        let mut b = 1u32.to_be_bytes().to_vec();
        b.push(50);
        assert_eq!(
            one(ColumnDecoder::Timestamp2 { fsp: 1 }, &b).0,
            Value::Timestamp(1_500_000)
        );
    }

    #[test]
    fn zero_and_impossible_dates_become_counted_nulls() {
        assert_eq!(one(ColumnDecoder::Year, &[0]), (Value::Int(0), 0));
        assert_eq!(one(ColumnDecoder::Year, &[1]), (Value::Int(1901), 0));
        assert_eq!(one(ColumnDecoder::Year, &[255]), (Value::Int(2155), 0));
        assert_eq!(one(ColumnDecoder::Date, &[0, 0, 0]), (Value::Null, 1));
        let feb31 = (2024u32 << 9) | (2 << 5) | 31;
        assert_eq!(
            one(ColumnDecoder::Date, &feb31.to_le_bytes()[..3]),
            (Value::Null, 1)
        );
        let ok = (2024u32 << 9) | (2 << 5) | 29;
        assert_eq!(
            one(ColumnDecoder::Date, &ok.to_le_bytes()[..3]),
            (Value::Date(time::days_from_civil(2024, 2, 29)), 0)
        );
        assert_eq!(
            one(ColumnDecoder::Timestamp2 { fsp: 0 }, &[0, 0, 0, 0]),
            (Value::Null, 1)
        );
        let zero_dt = 0x80_0000_0000u64.to_be_bytes()[3..].to_vec();
        assert_eq!(
            one(ColumnDecoder::DateTime2 { fsp: 0 }, &zero_dt),
            (Value::Null, 1)
        );
    }

    #[test]
    fn text_is_validated_transcoded_and_char_padding_dropped() {
        assert_eq!(
            one(UTF8, b"\x06h\xc3\xa9llo").0,
            Value::String("héllo".into())
        );
        let mut zero = 0;
        let mut c = Cursor::new(b"\x01\xff");
        assert!(
            decode_value(UTF8, &ColumnType::Text, &mut c, &mut zero, &mut Value::Null).is_err()
        );
        let latin1 = ColumnDecoder::Text {
            len_bytes: 1,
            codec: Codec::Table(test_tables::latin1()),
            trim_spaces: true,
        };
        // 0x80 is the euro sign in MySQL's latin1; CHAR padding is not part of the value.
        assert_eq!(
            one(latin1, b"\x07caf\xe9\x80  ").0,
            Value::String("café€".into())
        );
        let sjis = ColumnDecoder::Text {
            len_bytes: 1,
            codec: Codec::Table(test_tables::two_byte()),
            trim_spaces: false,
        };
        let mut c = Cursor::new(b"\x01\x82"); // a lead byte without its trail byte
        assert!(
            decode_value(sjis, &ColumnType::Text, &mut c, &mut zero, &mut Value::Null).is_err()
        );
    }

    #[test]
    fn binary_keeps_every_byte_and_fixed_width_padding() {
        let binary4 = ColumnDecoder::Bytes {
            len_bytes: 1,
            pad_to: 4,
        };
        assert_eq!(one(binary4, b"\x01a").0, Value::Bytes(b"a\0\0\0".to_vec()));
        let blob = ColumnDecoder::Bytes {
            len_bytes: 2,
            pad_to: 0,
        };
        assert_eq!(
            one(blob, b"\x03\x00\x00\xff\x00").0,
            Value::Bytes(vec![0, 0xff, 0])
        );
    }

    #[test]
    fn floats_bits_and_geometry() {
        assert_eq!(
            one(ColumnDecoder::Float, &(-0.1f32).to_le_bytes()).0,
            Value::Float(-0.1)
        );
        assert_eq!(
            one(ColumnDecoder::Double, &f64::MAX.to_le_bytes()).0,
            Value::Double(f64::MAX)
        );
        assert_eq!(
            one(ColumnDecoder::Bit { bytes: 2 }, &[0x02, 0x01]).0,
            Value::Bits(0x201)
        );
        assert_eq!(
            one(ColumnDecoder::Bit { bytes: 8 }, &[0xff; 8]).0,
            Value::Bits(u64::MAX)
        );
        let mut g = vec![25, 0, 0, 0, 0xe6, 0x10, 0, 0]; // length 25, SRID 4326
        g.extend_from_slice(&[1, 1, 0, 0, 0]);
        g.extend_from_slice(&[0; 16]);
        g[0] = (g.len() - 4) as u8;
        let (v, _) = one(ColumnDecoder::Geometry { len_bytes: 4 }, &g);
        let Value::Geometry { srid, wkb } = v else {
            panic!("{v:?}")
        };
        assert_eq!((srid, wkb.len(), wkb[0]), (4326, 21, 1));
    }

    #[test]
    fn enum_and_set_values_become_labels() {
        let labels: Arc<[String]> = ["a", "b", "c"].map(String::from).into();
        let e = ColumnType::Enum(labels.clone());
        let dec = ColumnDecoder::Enum { bytes: 1 };
        assert_eq!(typed(dec, &e, &[2]).unwrap(), Value::String("b".into()));
        assert_eq!(typed(dec, &e, &[0]).unwrap(), Value::String("".into()));
        assert!(typed(dec, &e, &[4]).is_err());
        let s = ColumnType::Set(labels);
        let dec = ColumnDecoder::Set { bytes: 1 };
        assert_eq!(
            typed(dec, &s, &[0b101]).unwrap(),
            Value::String("a,c".into())
        );
        assert_eq!(typed(dec, &s, &[0]).unwrap(), Value::String("".into()));
        assert!(typed(dec, &s, &[0b1000]).is_err());
    }

    #[test]
    fn times_are_signed_microseconds() {
        let time = |fsp, bytes: &[u8]| one(ColumnDecoder::Time2 { fsp }, bytes).0;
        // 838:59:59 and -00:00:01 at fsp 0.
        let max = (838u32 << 12 | 59 << 6 | 59) + 0x80_0000;
        assert_eq!(
            time(0, &max.to_be_bytes()[1..]),
            Value::Time(((838 * 3600 + 59 * 60 + 59) as i64) * 1_000_000)
        );
        assert_eq!(time(0, &[0x7f, 0xff, 0xff]), Value::Time(-1_000_000));
        // -00:00:00.50 at fsp 2: the integer part borrows one, the fraction byte is 0x100 - 50.
        assert_eq!(time(2, &[0x7f, 0xff, 0xff, 0xce]), Value::Time(-500_000));
        // -00:00:00.001 at fsp 3.
        let frac = (0x1_0000u32 - 10).to_be_bytes();
        assert_eq!(
            time(3, &[0x7f, 0xff, 0xff, frac[2], frac[3]]),
            Value::Time(-1_000)
        );
        // -01:02:03.123456 at fsp 6: one 48-bit offset integer.
        let packed: i64 = -((((1i64 << 12) | (2 << 6) | 3) << 24) + 123_456);
        let stored = (packed + 0x8000_0000_0000) as u64;
        assert_eq!(
            time(6, &stored.to_be_bytes()[2..]),
            Value::Time(-3_723_123_456)
        );
    }

    #[test]
    fn partial_row_images_are_refused() {
        // v1 write rows: table id, flags, 2 columns, present bitmap with only column 0.
        let body = [1, 0, 0, 0, 0, 0, 0, 0, 2, 0b01];
        let e = parse_rows(kind::WRITE_ROWS_V1, &body, 6, None)
            .err()
            .unwrap();
        assert!(e.to_string().contains("binlog_row_image=FULL"), "{e}");
        let body = [1, 0, 0, 0, 0, 0, 0, 0, 2, 0b11];
        let ev = parse_rows(kind::WRITE_ROWS_V1, &body, 6, Some((2, &[]))).unwrap();
        assert_eq!(
            (ev.table_id, ev.kind, ev.rows.pos()),
            (1, RowsKind::Write, 10)
        );
    }

    #[test]
    fn partial_json_updates_give_the_whole_new_document() {
        use crate::model::{Column, TableId, TableSchema};
        // (id INT, doc JSON, other JSON): MySQL's JSON columns, 4-byte lengths.
        let table = TableDecoder {
            schema: Arc::new(TableSchema {
                id: TableId::new("shop", "t"),
                columns: vec![
                    Column::new(
                        "id",
                        ColumnType::Integer {
                            bytes: 4,
                            unsigned: false,
                        },
                        false,
                    ),
                    Column::new("doc", ColumnType::Json, true),
                    Column::new("other", ColumnType::Json, true),
                ],
                key: vec![0],
            }),
            columns: vec![
                ColumnDecoder::Int {
                    bytes: 4,
                    unsigned: false,
                },
                ColumnDecoder::Json { len_bytes: 4 },
                ColumnDecoder::Json { len_bytes: 4 },
            ],
            hidden: vec![],
        };
        let before: Row = vec![
            Value::Int(1),
            Value::String(r#"{"a": 1}"#.into()),
            Value::String("[1]".into()),
        ];
        // value_options = 1 (PARTIAL_JSON), doc partial (bit 0), other whole (bit 1 clear),
        // no NULLs, id, doc: `$.a` replaced by 2, other: the whole document `true`.
        let change = [0u8, 3, b'$', b'.', b'a', 3, 0x05, 2, 0];
        let mut image = vec![1, 0b01, 0];
        image.extend(1i32.to_le_bytes());
        image.extend((change.len() as u32).to_le_bytes());
        image.extend(change);
        image.extend(2u32.to_le_bytes());
        image.extend([0x04, 1]);
        let mut zero = 0;
        let mut c = Cursor::new(&image);
        let after = decode_partial_after(&table, &mut c, &before, &mut zero).unwrap();
        assert!(c.is_empty());
        assert_eq!(
            after,
            vec![
                Value::Int(1),
                Value::String(r#"{"a": 2}"#.into()),
                Value::String("true".into())
            ]
        );
        // A row without partial columns (value_options 0) is a plain image.
        let mut plain = vec![0, 0];
        plain.extend(1i32.to_le_bytes());
        for doc in [[0x04u8, 0], [0x04, 2]] {
            plain.extend(2u32.to_le_bytes());
            plain.extend(doc);
        }
        let after =
            decode_partial_after(&table, &mut Cursor::new(&plain), &before, &mut zero).unwrap();
        assert_eq!(after[2], Value::String("false".into()));
    }
}
