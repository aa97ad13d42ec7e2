//! Binlog files read from disk: the same events COM_BINLOG_DUMP sends, split and checked the
//! same way, so a file (a copy, a backup, a bench fixture) decodes exactly like the stream.

use super::cursor::{Cursor, DecodeError};
use super::header::EventHeader;

/// The four bytes every binlog file starts with.
pub const MAGIC: &[u8] = b"\xfebin";

/// LOG_EVENT_BINLOG_IN_USE_F: set in the first format description while the server writes
/// the file.
const IN_USE: u16 = 0x1;

/// Iterates over the events of a binlog file's bytes.
pub struct FileEvents<'a> {
    bytes: &'a [u8],
    pos: usize,
    checksums: bool,
}

/// The events of `bytes`, a whole binlog file; `checksums` is whether events end in a CRC32
/// (`binlog_checksum=CRC32`, the default), which is then verified.
pub fn events(bytes: &[u8], checksums: bool) -> Result<FileEvents<'_>, DecodeError> {
    if !bytes.starts_with(MAGIC) {
        return Err(DecodeError::Invalid(
            "not a binlog file (no \\xfebin magic)".into(),
        ));
    }
    Ok(FileEvents {
        bytes,
        pos: MAGIC.len(),
        checksums,
    })
}

/// The events of `bytes`, a run of whole events without the file magic (the inside of a
/// MySQL TRANSACTION_PAYLOAD event).
pub fn sequence(bytes: &[u8], checksums: bool) -> FileEvents<'_> {
    FileEvents {
        bytes,
        pos: 0,
        checksums,
    }
}

impl<'a> FileEvents<'a> {
    /// Offset of the next event.
    pub fn position(&self) -> usize {
        self.pos
    }

    fn next_event(&mut self) -> Result<(EventHeader, &'a [u8]), DecodeError> {
        let rest = &self.bytes[self.pos..];
        let mut c = Cursor::new(rest);
        let header = EventHeader {
            timestamp: c.uint_le(4, "event timestamp")? as u32,
            event_type: c.u8("event type")?,
            server_id: c.uint_le(4, "event server id")? as u32,
            event_size: c.uint_le(4, "event size")? as u32,
            log_pos: c.uint_le(4, "event log position")? as u32,
            flags: c.uint_le(2, "event flags")? as u16,
        };
        let flags = header.flags;
        let size = header.event_size as usize;
        let trailer = if self.checksums { 4 } else { 0 };
        if size < 19 + trailer || size > rest.len() {
            return Err(DecodeError::Invalid(format!(
                "event at {} claims {size} bytes, {} remain",
                self.pos,
                rest.len()
            )));
        }
        let event = &rest[..size];
        if self.checksums {
            let (covered, stored) = event.split_at(size - 4);
            let stored = u32::from_le_bytes([stored[0], stored[1], stored[2], stored[3]]);
            let computed = if header.event_type == super::event::kind::FORMAT_DESCRIPTION
                && flags & IN_USE != 0
            {
                // The server checksums the format description with the in-use flag clear and
                // sets it while the file is open.
                let mut h = crc32fast::Hasher::new();
                h.update(&covered[..17]);
                h.update(&(flags & !IN_USE).to_le_bytes());
                h.update(&covered[19..]);
                h.finalize()
            } else {
                crc32fast::hash(covered)
            };
            if stored != computed {
                return Err(DecodeError::Invalid(format!(
                    "event at {} failed its CRC32 check (stored {stored:#010x}, computed \
                     {computed:#010x})",
                    self.pos
                )));
            }
        }
        self.pos += size;
        Ok((header, &event[19..size - trailer]))
    }
}

impl<'a> Iterator for FileEvents<'a> {
    type Item = Result<(EventHeader, &'a [u8]), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.bytes.len() {
            return None;
        }
        let item = self.next_event();
        if item.is_err() {
            self.pos = self.bytes.len(); // a broken frame ends the file: nothing after it is trusted
        }
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event_type: u8, body: &[u8]) -> Vec<u8> {
        let size = (19 + body.len() + 4) as u32;
        let mut e = vec![0, 0, 0, 0, event_type, 1, 0, 0, 0];
        e.extend_from_slice(&size.to_le_bytes());
        e.extend_from_slice(&(4 + size).to_le_bytes());
        e.extend_from_slice(&[0, 0]);
        e.extend_from_slice(body);
        let crc = crc32fast::hash(&e);
        e.extend_from_slice(&crc.to_le_bytes());
        e
    }

    #[test]
    fn splits_events_and_verifies_their_checksums() {
        let mut file = MAGIC.to_vec();
        file.extend(event(16, &[1, 2, 3, 4, 5, 6, 7, 8]));
        file.extend(event(2, b"body"));
        let all: Vec<_> = events(&file, true).unwrap().collect();
        assert_eq!(all.len(), 2);
        let (h, body) = all[1].as_ref().unwrap();
        assert_eq!((h.event_type, *body), (2, &b"body"[..]));

        let last = file.len() - 6;
        file[last] ^= 1;
        let all: Vec<_> = events(&file, true).unwrap().collect();
        let e = all[1].as_ref().unwrap_err().to_string();
        assert!(e.contains("failed its CRC32 check"), "{e}");
        assert!(events(b"nope", true).is_err());
    }
}
