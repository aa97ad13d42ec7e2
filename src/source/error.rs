//! Why the source stopped, and which of those a reconnect cures.

use super::binlog::BinlogError;
use super::filter::KeyFilterError;
use crate::model::{Position, TableId};
use crate::positions::PositionStoreError;

/// Why the source stopped.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The server could not be reached or refused the login.
    #[error(
        "cannot connect to MySQL/MariaDB at {addr} as {user}: {source}; check source.host, \
         source.port, source.user and the password, source.tls and source.tls_ca_file (a user \
         created with REQUIRE SSL needs TLS), and that the server is running"
    )]
    Connect {
        /// host:port.
        addr: String,
        /// User name.
        user: String,
        /// Driver error.
        source: mysql_async::Error,
    },
    /// The server is not configured for row-based CDC.
    #[error("{0}")]
    Precondition(String),
    /// The user lacks a privilege.
    #[error(
        "{what}: {message}; grant the Sluice user SELECT, REPLICATION SLAVE and REPLICATION \
         CLIENT (BINLOG MONITOR on MariaDB), e.g. GRANT SELECT, REPLICATION SLAVE, REPLICATION \
         CLIENT ON *.* TO 'sluice'@'%'"
    )]
    Privilege {
        /// What Sluice tried.
        what: &'static str,
        /// The server's message.
        message: String,
    },
    /// A query failed.
    #[error("{what}: {source}")]
    Query {
        /// What Sluice tried.
        what: &'static str,
        /// Driver error.
        source: mysql_async::Error,
    },
    /// A configured table does not exist.
    #[error(
        "table {0} does not exist, or the Sluice user cannot see it; create it, grant SELECT \
         on it, or remove it from `tables`"
    )]
    TableMissing(TableId),
    /// A configured table has a column type Sluice does not decode.
    #[error(
        "table {table}: column `{column}` has type {type_name}, which Sluice cannot decode; \
         remove the table from `tables` or change the column's type"
    )]
    Unsupported {
        /// Table.
        table: TableId,
        /// Column.
        column: String,
        /// SQL type.
        type_name: String,
    },
    /// A configured table has no primary key.
    #[error(
        "table {0} has no primary key and no unique key over NOT NULL columns, and records are \
         keyed by one; add one, name its key columns under [keys] in the config (e.g. \"{0}\" \
         = [\"col\"]), or remove the table from `tables`"
    )]
    NoPrimaryKey(TableId),
    /// A configured key names a column the table does not have.
    #[error("`keys`: table {table} has no column `{column}`; fix the key under [keys]")]
    KeyColumnMissing {
        /// Table.
        table: TableId,
        /// The missing column.
        column: String,
    },
    /// A column rule would remove a table's key.
    #[error(transparent)]
    Filter(#[from] KeyFilterError),
    /// No table matches the configured patterns.
    #[error(
        "no table matches `tables` {patterns} (minus `exclude_tables`); check the patterns and \
         that the Sluice user can see the tables"
    )]
    NothingToCapture {
        /// The patterns, as configured.
        patterns: String,
    },
    /// A snapshot row holds a value the column type does not allow.
    #[error("snapshot of {table}: column `{column}`: {message}")]
    SnapshotValue {
        /// Table.
        table: TableId,
        /// Column.
        column: String,
        /// What is wrong.
        message: String,
    },
    /// The binlog could not be decoded.
    #[error(transparent)]
    Binlog(#[from] BinlogError),
    /// An event failed its CRC32.
    #[error(
        "binlog event ending at {log_pos} failed its CRC32 check (stored {stored:#010x}, \
         computed {computed:#010x}); the stream is corrupt, nothing after the last commit was \
         used; restart to read it again"
    )]
    Checksum {
        /// End position of the event.
        log_pos: u32,
        /// Checksum in the event.
        stored: u32,
        /// Checksum of the bytes received.
        computed: u32,
    },
    /// The binlog needed to resume is gone.
    #[error(
        "the server no longer has the binlog needed to resume at {position} ({message}); \
         changes since then are lost to Sluice: stop it, delete `source.state_dir` and the \
         target indexes, and start again to re-snapshot"
    )]
    Purged {
        /// The stored position.
        position: Position,
        /// The server's message.
        message: String,
    },
    /// The server closed the stream.
    #[error("the server ended the binlog stream")]
    StreamEnded,
    /// Neither an event nor a heartbeat arrived for this many seconds.
    #[error("no binlog event or heartbeat for {0} s; the connection is presumed dead")]
    Silent(u64),
    /// The position store failed.
    #[error(transparent)]
    Positions(#[from] PositionStoreError),
    /// The publisher stopped first; its error is the one to read.
    #[error("the publisher stopped")]
    Downstream,
}

impl SourceError {
    /// Whether this is a lost connection that reconnecting can cure, as opposed to a refusal
    /// (credentials, privileges, purged binlog) or bad data, which reconnecting would repeat.
    pub fn is_connection_loss(&self) -> bool {
        match self {
            SourceError::StreamEnded | SourceError::Silent(_) => true,
            SourceError::Connect { source, .. } | SourceError::Query { source, .. } => {
                is_transient(source)
            }
            _ => false,
        }
    }
}

fn is_transient(e: &mysql_async::Error) -> bool {
    use mysql_async::{DriverError, Error};
    match e {
        Error::Io(_) => true,
        Error::Driver(d) => matches!(
            d,
            DriverError::ConnectionClosed | DriverError::PacketOutOfOrder
        ),
        // Server shutdown, network read/write failures, connection killed, gone away, lost.
        Error::Server(s) => matches!(s.code, 1053 | 1077 | 1158..=1161 | 1927 | 2006 | 2013),
        _ => false,
    }
}
