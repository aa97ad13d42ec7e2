//! Typed column values and row images.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use super::Decimal;

/// `bytes` as UTF-8 text, if they are. Most column values are short ASCII, which a word-wise
/// check clears in a fraction of the instructions of `std::str::from_utf8` (byte by byte
/// unless two aligned words are left); simdutf8 checks the rest (SIMD from 64 bytes).
#[inline]
pub fn utf8(bytes: &[u8]) -> Option<&str> {
    if bytes.is_ascii() {
        // SAFETY: ASCII is valid UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        simdutf8::basic::from_utf8(bytes).ok()
    }
}

/// Text a `SELECT` read into a buffer of its own, if it is UTF-8: short text moves inline
/// (the buffer is freed), longer text keeps the buffer, with no copy.
pub fn text_from_vec(bytes: Vec<u8>) -> Option<CompactString> {
    utf8(&bytes)?;
    // SAFETY: checked just above.
    Some(CompactString::from(unsafe {
        String::from_utf8_unchecked(bytes)
    }))
}

/// Writes `value` into a slot of a row being built that still holds its placeholder NULL,
/// which owns nothing: no drop call (rows are filled with NULL, then each value is written
/// in its place, so the value is never copied out of a temporary).
#[inline(always)]
pub fn fill(slot: &mut Value, value: Value) {
    debug_assert!(matches!(slot, Value::Null));
    std::mem::forget(std::mem::replace(slot, value));
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
    /// DECIMAL, exact.
    Decimal(Decimal),
    /// FLOAT.
    Float(f32),
    /// DOUBLE.
    Double(f64),
    /// BIT(n), right-aligned.
    Bits(u64),
    /// Text, valid UTF-8: character columns, ENUM and SET labels, JSON. Up to 24 bytes (on
    /// 64-bit targets) are held inline, so most values cost no allocation.
    String(CompactString),
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
    /// Bytes the value holds outside itself: strings longer than the inline 24, binary
    /// values, vectors (their lengths; decimals beyond 18 digits, rare, are not counted).
    fn heap_bytes(&self) -> usize {
        match self {
            Value::String(s) if s.is_heap_allocated() => s.len(),
            Value::Bytes(b) | Value::Geometry { wkb: b, .. } => b.len(),
            Value::Vector(v) => std::mem::size_of_val(v.as_slice()),
            _ => 0,
        }
    }

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

/// The memory a row image takes, its values and what they hold outside themselves: what
/// bounds in bytes rather than rows count.
pub fn row_bytes(row: &[Value]) -> usize {
    std::mem::size_of_val(row) + row.iter().map(Value::heap_bytes).sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_vec_keeps_utf8_short_inline_and_refuses_the_rest() {
        let short = text_from_vec(b"short".to_vec()).unwrap();
        assert_eq!(short, "short");
        assert!(!short.is_heap_allocated());
        let long = "\u{fc}".repeat(40);
        let kept = text_from_vec(long.clone().into_bytes()).unwrap();
        assert_eq!(kept, long);
        assert!(kept.is_heap_allocated());
        assert_eq!(text_from_vec(vec![b'a', 0xff]), None);
        assert_eq!(text_from_vec(vec![0xc3]), None);
    }

    #[test]
    fn row_bytes_count_what_is_not_inline() {
        assert_eq!(Value::Int(7).heap_bytes(), 0);
        assert_eq!(Value::String("short".into()).heap_bytes(), 0);
        let long = "x".repeat(100);
        assert_eq!(Value::String(long.as_str().into()).heap_bytes(), 100);
        assert_eq!(Value::Bytes(vec![0; 10]).heap_bytes(), 10);
        assert_eq!(Value::Vector(vec![0.0; 3]).heap_bytes(), 12);
        let row = [Value::Int(1), Value::Bytes(vec![0; 10])];
        assert_eq!(row_bytes(&row), 2 * std::mem::size_of::<Value>() + 10);
    }

    #[test]
    fn text_values_are_stored_as_plain_strings() {
        // Window keys stored while text was a `String` must read back as the same value.
        let stored = r#"[{"String":"abc"},{"String":"a longer text than twenty-four bytes"}]"#;
        let values: Vec<Value> = serde_json::from_str(stored).unwrap();
        assert_eq!(
            values,
            [
                Value::String("abc".into()),
                Value::String("a longer text than twenty-four bytes".into())
            ]
        );
        assert_eq!(serde_json::to_string(&values).unwrap(), stored);
    }
}
