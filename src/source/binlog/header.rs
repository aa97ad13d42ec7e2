//! The common header every binlog event starts with.

/// The common header of an event.
#[derive(Debug, Clone, Copy)]
pub struct EventHeader {
    /// Seconds since the epoch when the statement started.
    pub timestamp: u32,
    /// Event type code.
    pub event_type: u8,
    /// Server that wrote the event.
    pub server_id: u32,
    /// Size of the whole event, header and checksum included.
    pub event_size: u32,
    /// Offset of the next event in the file (0 for artificial events).
    pub log_pos: u32,
    /// Event flags (`LOG_EVENT_IGNORABLE_F`, ...).
    pub flags: u16,
}

/// Length of the common event header.
pub(super) const HEADER_LEN: u32 = 19;

/// Where an event starts in its file (0 for artificial events, which have no position).
pub(super) fn event_start(h: &EventHeader) -> u32 {
    h.log_pos.saturating_sub(h.event_size)
}

/// A change's time in milliseconds: the server's commit time where the binlog has it (MySQL's
/// `immediate_commit_timestamp`, microseconds), else the event's start, whole seconds.
pub(super) fn event_ms(timestamp: u32, commit_us: Option<i64>) -> i64 {
    commit_us.map_or(i64::from(timestamp) * 1000, |us| us / 1000)
}
