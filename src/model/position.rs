//! Places in the binlog and the version a change's place gives it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A place in the binlog: the position of the next event to read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Binlog file name, e.g. `binlog.000042`.
    pub file: String,
    /// Byte offset in that file.
    pub pos: u64,
    /// The server's GTID state at this point, when known (MariaDB `domain-server-seq[,...]`,
    /// MySQL `uuid:1-5[,...]`): resuming by GTID needs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid: Option<String>,
}

impl Position {
    /// A position without a known GTID state.
    pub fn new(file: impl Into<String>, pos: u64) -> Self {
        Position {
            file: file.into(),
            pos,
            gtid: None,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)
    }
}

/// The order of a change in the binlog, used as Elasticsearch's external version.
///
/// `file sequence << 32 | byte offset of the row image in that file`: every row image starts at
/// its own offset, so versions grow strictly in binlog order, across files too, and stay
/// positive as a signed 64-bit `long` while the file sequence is below 2^31.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(u64);

impl Version {
    /// The version of whatever sits at `offset` in the binlog file with sequence `file_seq`.
    pub fn at(file_seq: u32, offset: u32) -> Self {
        Version((u64::from(file_seq) << 32) | u64::from(offset))
    }

    /// The raw number.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// The numeric sequence of a binlog file name (`binlog.000042` -> 42), if it fits a version.
pub fn binlog_file_sequence(file: &str) -> Option<u32> {
    let digits = file.rsplit('.').next()?;
    let seq: u32 = digits.parse().ok()?;
    (seq < 1 << 31).then_some(seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_grow_across_files_and_stay_positive_longs() {
        assert!(Version::at(1, u32::MAX) < Version::at(2, 4));
        assert!(Version::at(7, 100) < Version::at(7, 101));
        let last = Version::at(binlog_file_sequence("binlog.2147483647").unwrap(), u32::MAX);
        assert!(i64::try_from(last.get()).is_ok());
        assert_eq!(binlog_file_sequence("binlog.2147483648"), None);
        assert_eq!(binlog_file_sequence("mysql-bin.000042"), Some(42));
        assert_eq!(binlog_file_sequence("nonsense"), None);
    }
}
