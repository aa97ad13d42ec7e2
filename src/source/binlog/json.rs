//! MySQL's binary JSON (the JSON column type of MySQL 5.7+) decoded to JSON text. MariaDB
//! stores JSON as LONGTEXT, which arrives as plain text and never comes here.
//!
//! Layout: a type byte, then the value. Objects and arrays carry an element count and a byte
//! size (2 bytes each in the small form, 4 in the large), then key entries (offset, length),
//! then value entries (type, and an offset or, for small scalars, the value itself). Offsets
//! count from the start of the object or array.

use std::fmt::Write;

use super::cursor::{Cursor, DecodeError};
use super::decimal::decode_decimal;

mod ty {
    pub const SMALL_OBJECT: u8 = 0x00;
    pub const LARGE_OBJECT: u8 = 0x01;
    pub const SMALL_ARRAY: u8 = 0x02;
    pub const LARGE_ARRAY: u8 = 0x03;
    pub const LITERAL: u8 = 0x04;
    pub const INT16: u8 = 0x05;
    pub const UINT16: u8 = 0x06;
    pub const INT32: u8 = 0x07;
    pub const UINT32: u8 = 0x08;
    pub const INT64: u8 = 0x09;
    pub const UINT64: u8 = 0x0a;
    pub const DOUBLE: u8 = 0x0b;
    pub const STRING: u8 = 0x0c;
    pub const OPAQUE: u8 = 0x0f;
}

/// Column type codes that opaque values carry.
mod opaque {
    pub const NEWDECIMAL: u8 = 246;
    pub const DATE: u8 = 10;
    pub const TIME: u8 = 11;
    pub const DATETIME: u8 = 12;
    pub const TIMESTAMP: u8 = 7;
}

/// Nesting deeper than MySQL allows (100) is corrupt input, not a document.
const MAX_DEPTH: usize = 100;

/// The JSON text of a binary JSON value; an empty value is JSON `null`, as MySQL prints it.
pub fn to_text(bytes: &[u8]) -> Result<String, DecodeError> {
    let mut out = String::with_capacity(bytes.len() * 2);
    if bytes.is_empty() {
        out.push_str("null");
        return Ok(out);
    }
    let mut c = Cursor::new(bytes);
    let t = c.u8("json type")?;
    value(t, c.rest(), &mut out, 0)?;
    Ok(out)
}

fn bad(what: impl Into<String>) -> DecodeError {
    DecodeError::Invalid(format!("binary JSON: {}", what.into()))
}

/// Writes the value of type `t` whose bytes start at `data`.
fn value(t: u8, data: &[u8], out: &mut String, depth: usize) -> Result<(), DecodeError> {
    if depth > MAX_DEPTH {
        return Err(bad("nested too deep"));
    }
    let mut c = Cursor::new(data);
    match t {
        ty::SMALL_OBJECT | ty::LARGE_OBJECT => {
            container(data, t == ty::LARGE_OBJECT, true, out, depth)?
        }
        ty::SMALL_ARRAY | ty::LARGE_ARRAY => {
            container(data, t == ty::LARGE_ARRAY, false, out, depth)?
        }
        ty::LITERAL => out.push_str(match c.u8("json literal")? {
            0 => "null",
            1 => "true",
            2 => "false",
            other => return Err(bad(format!("literal {other}"))),
        }),
        ty::INT16 => push_display(out, c.uint_le(2, "json int16")? as u16 as i16),
        ty::UINT16 => push_display(out, c.uint_le(2, "json uint16")?),
        ty::INT32 => push_display(out, c.uint_le(4, "json int32")? as u32 as i32),
        ty::UINT32 => push_display(out, c.uint_le(4, "json uint32")?),
        ty::INT64 => push_display(out, c.uint_le(8, "json int64")? as i64),
        ty::UINT64 => push_display(out, c.uint_le(8, "json uint64")?),
        ty::DOUBLE => {
            let d = f64::from_bits(c.uint_le(8, "json double")?);
            let n = serde_json::Number::from_f64(d).ok_or_else(|| bad("non-finite double"))?;
            push_display(out, n);
        }
        ty::STRING => {
            let len = var_len(&mut c)?;
            let s = crate::model::utf8(c.take(len, "json string")?)
                .ok_or_else(|| bad("string is not UTF-8"))?;
            push_string(out, s);
        }
        ty::OPAQUE => {
            let field_type = c.u8("json opaque type")?;
            let len = var_len(&mut c)?;
            opaque_value(field_type, c.take(len, "json opaque value")?, out)?;
        }
        other => return Err(bad(format!("value type {other:#x}"))),
    }
    Ok(())
}

fn push_display(out: &mut String, v: impl std::fmt::Display) {
    let _ = write!(out, "{v}");
}

fn push_string(out: &mut String, s: &str) {
    out.push_str(&serde_json::Value::from(s).to_string());
}

/// A length of 7 bits per byte, low groups first, high bit set on all but the last byte.
fn var_len(c: &mut Cursor<'_>) -> Result<usize, DecodeError> {
    let mut len = 0usize;
    for i in 0..5 {
        let b = c.u8("json length")?;
        len |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(len);
        }
    }
    Err(bad("length longer than 5 bytes"))
}

fn container(
    data: &[u8],
    large: bool,
    object: bool,
    out: &mut String,
    depth: usize,
) -> Result<(), DecodeError> {
    let w = if large { 4 } else { 2 };
    let mut c = Cursor::new(data);
    let count = c.uint_le(w, "json element count")? as usize;
    let size = c.uint_le(w, "json size")? as usize;
    if size > data.len() {
        return Err(bad(format!("size {size} beyond the {} bytes", data.len())));
    }
    let data = &data[..size];
    count
        .checked_mul(if object { (w + 2) + (1 + w) } else { 1 + w })
        .and_then(|h| h.checked_add(2 * w))
        .filter(|&h| h <= size)
        .ok_or_else(|| bad(format!("{count} elements do not fit {size} bytes")))?;
    let keys_at = 2 * w;
    let values_at = if object {
        keys_at + count * (w + 2)
    } else {
        keys_at
    };
    out.push(if object { '{' } else { '[' });
    for i in 0..count {
        if i > 0 {
            out.push_str(", ");
        }
        if object {
            let mut k = Cursor::new(&data[keys_at + i * (w + 2)..]);
            let offset = k.uint_le(w, "json key offset")? as usize;
            let len = k.uint_le(2, "json key length")? as usize;
            let key = data
                .get(offset..offset + len)
                .ok_or_else(|| bad("key outside the object"))?;
            let key = std::str::from_utf8(key).map_err(|_| bad("key is not UTF-8"))?;
            push_string(out, key);
            out.push_str(": ");
        }
        let mut v = Cursor::new(&data[values_at + i * (1 + w)..]);
        let t = v.u8("json value type")?;
        let inlined = matches!(t, ty::LITERAL | ty::INT16 | ty::UINT16)
            || (large && matches!(t, ty::INT32 | ty::UINT32));
        if inlined {
            value(t, v.take(w, "json inlined value")?, out, depth + 1)?;
        } else {
            let offset = v.uint_le(w, "json value offset")? as usize;
            let rest = data
                .get(offset..)
                .ok_or_else(|| bad("value outside its container"))?;
            value(t, rest, out, depth + 1)?;
        }
    }
    out.push(if object { '}' } else { ']' });
    Ok(())
}

/// Opaque scalars MySQL stores with their SQL type: decimals print as numbers, temporal values
/// as the quoted strings MySQL itself prints.
fn opaque_value(field_type: u8, data: &[u8], out: &mut String) -> Result<(), DecodeError> {
    let mut c = Cursor::new(data);
    match field_type {
        opaque::NEWDECIMAL => {
            let precision = c.u8("json decimal precision")?;
            let scale = c.u8("json decimal scale")?;
            if precision == 0 || precision > 65 || scale > precision {
                return Err(bad(format!("DECIMAL({precision},{scale})")));
            }
            let _ = write!(out, "{}", decode_decimal(&mut c, precision, scale)?);
        }
        opaque::DATE | opaque::TIME | opaque::DATETIME | opaque::TIMESTAMP => {
            let packed = c.uint_le(8, "json temporal value")? as i64;
            let text = packed_temporal(field_type, packed)?;
            push_string(out, &text);
        }
        // Other opaque values (BLOB, BIT, GEOMETRY inside JSON) print as MySQL does: base64
        // with the type.
        other => {
            use base64::Engine;
            let b64 = base64::engine::general_purpose::STANDARD.encode(data);
            push_string(out, &format!("base64:type{other}:{b64}"));
        }
    }
    Ok(())
}

/// MySQL's in-memory packed temporal integer: `(ymd << 17 | hms) << 24 | micros`, signed.
fn packed_temporal(field_type: u8, packed: i64) -> Result<String, DecodeError> {
    let negative = packed < 0;
    let m = packed.unsigned_abs();
    let micros = m & 0xff_ffff;
    let int = m >> 24;
    // MySQL prints a JSON time or datetime with all six fraction digits, zeros too.
    let frac = |s: &mut String| s.push_str(&format!(".{micros:06}"));
    if field_type == opaque::TIME {
        let (h, mi, s) = ((int >> 12) & 0x3ff, (int >> 6) & 63, int & 63);
        let mut t = format!("{}{h:02}:{mi:02}:{s:02}", if negative { "-" } else { "" });
        frac(&mut t);
        return Ok(t);
    }
    if negative {
        return Err(bad("negative date"));
    }
    let ymd = int >> 17;
    let hms = int & 0x1ffff;
    let (ym, d) = (ymd >> 5, ymd & 31);
    let (y, mo) = (ym / 13, ym % 13);
    let mut t = format!("{y:04}-{mo:02}-{d:02}");
    if field_type != opaque::DATE {
        let (h, mi, s) = (hms >> 12, (hms >> 6) & 63, hms & 63);
        t.push_str(&format!(" {h:02}:{mi:02}:{s:02}"));
        frac(&mut t);
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars() {
        assert_eq!(to_text(&[]).unwrap(), "null");
        assert_eq!(to_text(&[ty::LITERAL, 1]).unwrap(), "true");
        assert_eq!(to_text(&[ty::INT16, 0xff, 0xff]).unwrap(), "-1");
        assert_eq!(
            to_text(&[ty::UINT64, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).unwrap(),
            "18446744073709551615"
        );
        let mut d = vec![ty::DOUBLE];
        d.extend_from_slice(&1.5f64.to_le_bytes());
        assert_eq!(to_text(&d).unwrap(), "1.5");
        assert_eq!(
            to_text(&[ty::STRING, 4, b'a', b'"', b'\\', b'b']).unwrap(),
            r#""a\"\\b""#
        );
    }

    #[test]
    fn long_strings_use_several_length_bytes() {
        let mut b = vec![ty::STRING, 0x80 | 0x2c, 0x02]; // 300 = 0b10_0101100
        b.extend(std::iter::repeat_n(b'x', 300));
        assert_eq!(to_text(&b).unwrap().len(), 302);
    }

    /// `{"a": 1, "bb": [true, "x"]}` as MySQL serialises it (small forms).
    #[test]
    fn nested_object_and_array() {
        // Array [true, "x"]: count 2, size, 2 entries of 3 bytes, then the string.
        let array = [2, 0, 12, 0, ty::LITERAL, 1, 0, ty::STRING, 10, 0, 1, b'x'];
        // Object: count 2, size; key entries (offset, len) x2; value entries x2; keys; array.
        let mut obj = vec![2, 0, 0, 0];
        let keys_start = 4 + 2 * 4 + 2 * 3; // 18
        obj.extend_from_slice(&[keys_start as u8, 0, 1, 0]);
        obj.extend_from_slice(&[keys_start as u8 + 1, 0, 2, 0]);
        obj.extend_from_slice(&[ty::INT16, 1, 0]);
        let array_at = keys_start + 3;
        obj.extend_from_slice(&[ty::SMALL_ARRAY, array_at as u8, 0]);
        obj.extend_from_slice(b"abb");
        obj.extend_from_slice(&array);
        let size = obj.len() as u8;
        obj[2] = size;
        let mut b = vec![ty::SMALL_OBJECT];
        b.extend_from_slice(&obj);
        assert_eq!(to_text(&b).unwrap(), r#"{"a": 1, "bb": [true, "x"]}"#);
    }

    #[test]
    fn opaque_decimals_and_dates() {
        // DECIMAL(3,1) -0.5 as in the rows decoder's tests.
        let b = [ty::OPAQUE, opaque::NEWDECIMAL, 4, 3, 1, 0x7F, 0xFA];
        assert_eq!(to_text(&b).unwrap(), "-0.5");
        let ymd = (2024 * 13 + 2) << 5 | 29;
        let packed: i64 = (((ymd << 17) | (23 << 12) | (59 << 6) | 58) << 24) | 5;
        let mut b = vec![ty::OPAQUE, opaque::DATETIME, 8];
        b.extend_from_slice(&packed.to_le_bytes());
        assert_eq!(to_text(&b).unwrap(), r#""2024-02-29 23:59:58.000005""#);
        let whole = ((ymd << 17) | (23 << 12) | (59 << 6) | 58) << 24;
        let mut b = vec![ty::OPAQUE, opaque::DATETIME, 8];
        b.extend_from_slice(&whole.to_le_bytes());
        assert_eq!(to_text(&b).unwrap(), r#""2024-02-29 23:59:58.000000""#);
    }

    #[test]
    fn corrupt_input_is_an_error() {
        assert!(to_text(&[ty::SMALL_OBJECT, 200, 0, 4, 0]).is_err());
        assert!(to_text(&[0x42]).is_err());
        assert!(to_text(&[ty::STRING, 10, b'a']).is_err());
    }
}
