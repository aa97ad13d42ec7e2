//! Character sets of text columns. The binlog names a column's collation by number; the
//! server's own `information_schema.COLLATIONS` says which character set each number is, so
//! the mapping is always the connected server's, never a table compiled into Sluice.

use std::collections::HashMap;

/// The collation id of the `binary` character set (BINARY, VARBINARY, BLOB).
pub const BINARY_COLLATION: u64 = 63;

/// How Sluice can read text in a character set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Charset {
    /// Bytes are UTF-8 already: utf8mb4, utf8mb3 and ASCII.
    Utf8,
    /// Raw bytes (BINARY, VARBINARY, BLOB).
    Binary,
    /// Another character set, named.
    Other(String),
}

impl Charset {
    /// Classifies a character set by its name.
    pub fn from_name(name: &str) -> Charset {
        match name.to_ascii_lowercase().as_str() {
            "utf8mb4" | "utf8mb3" | "utf8" | "ascii" => Charset::Utf8,
            "binary" => Charset::Binary,
            other => Charset::Other(other.to_string()),
        }
    }
}

/// Collation id -> character set, as the server reports it.
#[derive(Debug, Clone, Default)]
pub struct Collations(HashMap<u64, String>);

impl Collations {
    /// Builds the map from `(id, character set name)` pairs.
    pub fn new(pairs: impl IntoIterator<Item = (u64, String)>) -> Self {
        Collations(pairs.into_iter().collect())
    }

    /// The character set of a collation id.
    pub fn charset(&self, collation: u64) -> Charset {
        if collation == BINARY_COLLATION {
            return Charset::Binary;
        }
        match self.0.get(&collation) {
            Some(name) => Charset::from_name(name),
            None => Charset::Other(format!("unknown collation id {collation}")),
        }
    }
}
