//! Character sets of text columns. The binlog names a column's collation by number; the
//! server's own `information_schema.COLLATIONS` says which character set each number is, so
//! the mapping is always the connected server's, never a table compiled into Sluice.

use std::collections::HashMap;

use encoding_rs::Encoding;

/// The collation id of the `binary` character set (BINARY, VARBINARY, BLOB).
pub const BINARY_COLLATION: u64 = 63;

/// How Sluice can read text in a character set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Charset {
    /// Bytes are UTF-8 already: utf8mb4, utf8mb3 and ASCII.
    Utf8,
    /// Raw bytes (BINARY, VARBINARY, BLOB).
    Binary,
    /// A character set transcoded to UTF-8 on the way in.
    Encoded(&'static Encoding),
    /// A character set Sluice cannot transcode, named.
    Other(String),
}

impl Charset {
    /// The encoding to transcode from; `None` for text that is UTF-8 already (or not text).
    pub fn encoding(&self) -> Option<&'static Encoding> {
        match self {
            Charset::Encoded(e) => Some(e),
            _ => None,
        }
    }

    /// Classifies a character set by its name.
    pub fn from_name(name: &str) -> Charset {
        match name.to_ascii_lowercase().as_str() {
            "utf8mb4" | "utf8mb3" | "utf8" | "ascii" => Charset::Utf8,
            "binary" => Charset::Binary,
            other => match encoding_of(other) {
                Some(e) => Charset::Encoded(e),
                None => Charset::Other(other.to_string()),
            },
        }
    }
}

/// The WHATWG encoding with the same byte-to-character table as a MySQL character set. MySQL's
/// `latin1` is really Windows-1252 (including 0x80..0x9F), as WHATWG's `windows-1252` is.
fn encoding_of(mysql_name: &str) -> Option<&'static Encoding> {
    use encoding_rs::*;
    Some(match mysql_name {
        "latin1" => WINDOWS_1252,
        "latin2" => ISO_8859_2,
        "latin5" => WINDOWS_1254,
        "latin7" => ISO_8859_13,
        "greek" => ISO_8859_7,
        "hebrew" => ISO_8859_8,
        "cp1250" => WINDOWS_1250,
        "cp1251" => WINDOWS_1251,
        "cp1256" => WINDOWS_1256,
        "cp1257" => WINDOWS_1257,
        "cp866" => IBM866,
        "koi8r" => KOI8_R,
        "koi8u" => KOI8_U,
        "macroman" => MACINTOSH,
        "tis620" => WINDOWS_874,
        "sjis" | "cp932" => SHIFT_JIS,
        "ujis" | "eucjpms" => EUC_JP,
        "euckr" => EUC_KR,
        "gb2312" | "gbk" => GBK,
        "gb18030" => GB18030,
        "big5" => BIG5,
        "ucs2" | "utf16" => UTF_16BE,
        "utf16le" => UTF_16LE,
        _ => return None,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_character_sets_map_to_encodings() {
        assert_eq!(Charset::from_name("utf8mb4"), Charset::Utf8);
        assert_eq!(Charset::from_name("BINARY"), Charset::Binary);
        assert_eq!(
            Charset::from_name("latin1"),
            Charset::Encoded(encoding_rs::WINDOWS_1252)
        );
        assert_eq!(
            Charset::from_name("armscii8"),
            Charset::Other("armscii8".into())
        );
    }
}
