//! Arbitrary bytes as a sequence of binlog events for one captured table: the decoder must
//! return values or errors, never panic, loop or allocate without bound.
//!
//! Input: repeated `[event type: u8][flags: u8][body length: u16 LE][body]` (the flags byte
//! is the header's low flag byte, so the ignorable flag 0x80 comes up too).
//!
//!     cd fuzz && cargo fuzz run decode_events corpus/decode_events seeds -- -max_total_time=300
//!
//! `seeds/` holds real MariaDB events (format description, GTID list, GTIDs, table map,
//! write/update/delete rows, XID) of a 10-column table `d.t` (`seed0`..) and of a 19-column one
//! with the other type families: FLOAT, DOUBLE, BIT, TIME, ENUM, SET, VARBINARY, latin1,
//! POINT, JSON, BLOB, zero dates (`seed_types`, table renamed to `d.t` in its map).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::model::{Position, TableId};
use sluice::source::binlog::{BinlogReader, EventHeader};
use sluice::source::charset::Collations;

fuzz_target!(|data: &[u8]| {
    let start = Position::new("binlog.000001", 4);
    let Ok(mut reader) = BinlogReader::new(
        &start,
        [TableId::new("d", "t")],
        Collations::new(vec![(45, "utf8mb4".to_string()), (8, "latin1".to_string())]),
        data.first().is_some_and(|b| b & 1 == 1),
    ) else {
        return;
    };
    let mut rest = data.get(1..).unwrap_or_default();
    let mut log_pos = 4u32;
    while rest.len() >= 4 {
        let (event_type, flags) = (rest[0], rest[1]);
        let len = usize::from(u16::from_le_bytes([rest[2], rest[3]])).min(rest.len() - 4);
        let body = &rest[4..4 + len];
        rest = &rest[4 + len..];
        let event_size = 19 + len as u32;
        log_pos = log_pos.wrapping_add(event_size);
        let header = EventHeader {
            timestamp: 0,
            event_type,
            server_id: 1,
            event_size,
            log_pos,
            flags: u16::from(flags),
        };
        let _ = reader.on_event(&header, body);
    }
});
