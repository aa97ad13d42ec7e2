//! A bounds-checked reader over an event body. Every read names what it was reading, so a
//! truncated or malformed event reports where it broke instead of panicking.

/// A malformed event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The event ended before a field did.
    #[error("event ends early while reading {0}")]
    Truncated(&'static str),
    /// A field holds a value the format does not allow.
    #[error("{0}")]
    Invalid(String),
}

/// Reads little- and big-endian fields from a byte slice.
#[derive(Clone)]
pub struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Whether every byte was consumed.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// The next `n` bytes.
    #[inline]
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let end = self.end(n, what)?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// Where `n` more bytes end, if the buffer holds them.
    #[inline]
    fn end(&self, n: usize, what: &'static str) -> Result<usize, DecodeError> {
        self.pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(DecodeError::Truncated(what))
    }

    /// The next `n` bytes, left unconsumed.
    pub fn peek(&self, n: usize) -> Option<&'a [u8]> {
        self.buf.get(self.pos..self.pos.checked_add(n)?)
    }

    /// Everything not consumed yet.
    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos.min(self.buf.len())..];
        self.pos = self.buf.len();
        s
    }

    /// One byte.
    #[inline]
    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    /// An unsigned little-endian integer of `n` <= 8 bytes.
    #[inline]
    pub fn uint_le(&mut self, n: usize, what: &'static str) -> Result<u64, DecodeError> {
        let end = self.end(Self::width(n, what)?, what)?;
        // Every column of every row image is read here: one 8-byte load where the buffer
        // has eight bytes left, rather than a copy of `n` bytes (a memmove call).
        let v = match self.buf.get(self.pos..self.pos + 8) {
            Some(b) => u64::from_le_bytes(b.try_into().expect("8 bytes")) & low_bytes(n),
            None => {
                let mut buf = [0u8; 8];
                buf[..n].copy_from_slice(&self.buf[self.pos..end]);
                u64::from_le_bytes(buf)
            }
        };
        self.pos = end;
        Ok(v)
    }

    /// An unsigned big-endian integer of `n` <= 8 bytes.
    #[inline]
    pub fn uint_be(&mut self, n: usize, what: &'static str) -> Result<u64, DecodeError> {
        let end = self.end(Self::width(n, what)?, what)?;
        let v = match self.buf.get(self.pos..self.pos + 8) {
            Some(b) => u64::from_be_bytes(b.try_into().expect("8 bytes"))
                .checked_shr(64 - 8 * n as u32)
                .unwrap_or(0),
            None => {
                let mut buf = [0u8; 8];
                buf[8 - n..].copy_from_slice(&self.buf[self.pos..end]);
                u64::from_be_bytes(buf)
            }
        };
        self.pos = end;
        Ok(v)
    }

    #[inline]
    fn width(n: usize, what: &'static str) -> Result<usize, DecodeError> {
        if n <= 8 {
            Ok(n)
        } else {
            Err(too_wide(n, what))
        }
    }

    /// A length-encoded integer of the client/server protocol.
    pub fn lenenc(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        match self.u8(what)? {
            n @ 0..=0xfa => Ok(u64::from(n)),
            0xfc => self.uint_le(2, what),
            0xfd => self.uint_le(3, what),
            0xfe => self.uint_le(8, what),
            b => Err(DecodeError::Invalid(format!(
                "byte {b:#04x} does not start a length-encoded integer ({what})"
            ))),
        }
    }

    /// A length-encoded count that must fit in memory.
    pub fn lenenc_usize(&mut self, what: &'static str) -> Result<usize, DecodeError> {
        let n = self.lenenc(what)?;
        usize::try_from(n).map_err(|_| DecodeError::Invalid(format!("{what} of {n} is impossible")))
    }

    /// A length-encoded byte string.
    pub fn lenenc_bytes(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let n = self.lenenc_usize(what)?;
        self.take(n, what)
    }
}

/// A mask of the low `n` <= 8 bytes of a `u64`.
#[inline]
fn low_bytes(n: usize) -> u64 {
    u64::MAX.checked_shr(64 - 8 * n as u32).unwrap_or(0)
}

#[cold]
fn too_wide(n: usize, what: &'static str) -> DecodeError {
    DecodeError::Invalid(format!("{what}: a {n}-byte integer does not fit 64 bits"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_endians_and_length_encoded_ints() {
        let mut c = Cursor::new(&[0x01, 0x02, 0x03, 0x01, 0x02, 0xfc, 0x34, 0x12, 0xfa]);
        assert_eq!(c.uint_le(3, "a").unwrap(), 0x030201);
        assert_eq!(c.uint_be(2, "b").unwrap(), 0x0102);
        assert_eq!(c.lenenc("c").unwrap(), 0x1234);
        assert_eq!(c.lenenc("d").unwrap(), 0xfa);
        assert!(c.is_empty());
        assert_eq!(c.u8("e"), Err(DecodeError::Truncated("e")));
    }

    #[test]
    fn integers_near_the_buffer_end_read_as_byte_by_byte() {
        // Every width at every offset of a buffer, the last reads without eight bytes left.
        let buf: Vec<u8> = (0..24u32)
            .map(|i| (i.wrapping_mul(0x9e37_79b9) >> 7) as u8)
            .collect();
        for n in 0..=8 {
            for at in 0..=buf.len() {
                let mut c = Cursor::new(&buf);
                c.take(at, "skip").unwrap();
                let (mut le, mut be) = (c.clone(), c.clone());
                let Some(bytes) = buf.get(at..at + n) else {
                    assert_eq!(le.uint_le(n, "x"), Err(DecodeError::Truncated("x")));
                    assert_eq!(be.uint_be(n, "x"), Err(DecodeError::Truncated("x")));
                    continue;
                };
                let want_le = bytes.iter().rev().fold(0u64, |v, &b| v << 8 | u64::from(b));
                let want_be = bytes.iter().fold(0u64, |v, &b| v << 8 | u64::from(b));
                assert_eq!(le.uint_le(n, "x"), Ok(want_le), "le {n} at {at}");
                assert_eq!(be.uint_be(n, "x"), Ok(want_be), "be {n} at {at}");
                assert_eq!((le.pos(), be.pos()), (at + n, at + n));
            }
        }
        assert!(matches!(
            Cursor::new(&buf).uint_le(9, "x"),
            Err(DecodeError::Invalid(_))
        ));
    }

    #[test]
    fn rejects_the_null_marker_as_a_length() {
        assert!(matches!(
            Cursor::new(&[0xfb]).lenenc("x"),
            Err(DecodeError::Invalid(_))
        ));
    }
}
