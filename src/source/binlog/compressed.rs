//! MariaDB's compressed events (`log_bin_compress=ON`): the statement text of a query event,
//! or the row images of a rows event, stored as `[0x80 | n][n-byte big-endian length][zlib]`.

use std::io::Read;

use super::cursor::{Cursor, DecodeError};

/// Refuse to inflate more than this: an event (a rows event, a MySQL transaction payload) is
/// bounded by `max_allowed_packet` (1 GiB).
const MAX_INFLATED: u64 = 1 << 30;

/// Inflates one compressed block, checking its declared length.
pub fn uncompress(data: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let mut c = Cursor::new(data);
    let head = c.u8("compression header")?;
    let len_bytes = usize::from(head & 0x07);
    let algorithm = (head >> 4) & 0x07;
    if head & 0x80 == 0 || algorithm != 0 || !(1..=4).contains(&len_bytes) {
        return Err(DecodeError::Invalid(format!(
            "compression header {head:#04x} is not MariaDB's zlib format"
        )));
    }
    let len = c.uint_be(len_bytes, "uncompressed length")?;
    let data = c.rest();
    let inflater = flate2::read::ZlibDecoder::new(data);
    read_declared(inflater, len, data.len(), "zlib", "compressed block")
}

/// Reads what `decoder` decompresses, which its header declared to be `declared` bytes, from
/// `compressed` bytes. The declaration is checked, and not trusted for the allocation.
pub fn read_declared(
    decoder: impl Read,
    declared: u64,
    compressed: usize,
    algorithm: &str,
    what: &str,
) -> Result<Vec<u8>, DecodeError> {
    if declared > MAX_INFLATED {
        return Err(DecodeError::Invalid(format!(
            "{what} claims {declared} uncompressed bytes"
        )));
    }
    // zlib and zstd expand by ~1000x at most on real data.
    let mut out = Vec::with_capacity((declared as usize).min(compressed.saturating_mul(1032)));
    decoder
        .take(declared + 1)
        .read_to_end(&mut out)
        .map_err(|e| DecodeError::Invalid(format!("corrupt {algorithm} data in {what}: {e}")))?;
    if out.len() as u64 != declared {
        return Err(DecodeError::Invalid(format!(
            "{what} decompresses to {} bytes, its header says {declared}",
            out.len()
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn compress(data: &[u8]) -> Vec<u8> {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(data).unwrap();
        let mut out = vec![0x82, (data.len() >> 8) as u8, data.len() as u8];
        out.extend(z.finish().unwrap());
        out
    }

    #[test]
    fn inflates_and_checks_the_declared_length() {
        let data = b"INSERT INTO t VALUES (1)".repeat(20);
        assert_eq!(uncompress(&compress(&data)).unwrap(), data);
        let mut wrong = compress(&data);
        wrong[2] ^= 1;
        assert!(uncompress(&wrong).is_err());
        assert!(uncompress(&[0x01, 0x00]).is_err());
        let mut corrupt = compress(&data);
        let n = corrupt.len();
        corrupt[n - 3] ^= 0xff;
        assert!(uncompress(&corrupt).is_err());
    }
}
