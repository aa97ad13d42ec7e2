//! Character sets of text columns. The binlog names a column's collation by number; the
//! connected server says which character set each number is, and how it reads every byte
//! sequence of that character set: Sluice transcodes with tables taken from the server
//! itself, never with a table compiled in, because the standard tables of the same names
//! differ from MySQL's and MariaDB's in places (`latin5` and `tis620` keep C1 controls, `sjis`
//! is not `cp932`, `big5` and EUC-JP have their own extensions).
//! UTF-8, UTF-16 and UTF-32 are algorithmic and need no table.

use std::collections::HashMap;

use encoding_rs::Encoding;

/// The collation id of the `binary` character set (BINARY, VARBINARY, BLOB).
pub const BINARY_COLLATION: u64 = 63;

/// How Sluice reads the bytes of a character column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Charset {
    /// Raw bytes (BINARY, VARBINARY, BLOB).
    Binary,
    /// Text, transcoded to UTF-8 by this codec.
    Text(Codec),
    /// A character set Sluice has no codec for (its name, for the message).
    Other(String),
}

/// Turns a character set's bytes into UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Already UTF-8: utf8mb4, utf8mb3, ascii.
    Utf8,
    /// UTF-16 (ucs2, utf16, utf16le) and GB 18030's four-byte forms: algorithmic, as WHATWG
    /// specifies them.
    Standard(&'static Encoding),
    /// UTF-32, big-endian.
    Utf32,
    /// Every other character set: the server's own reading of each byte sequence.
    Table(&'static CharTable),
}

impl Codec {
    /// The text `bytes` hold; `None` when they are not valid in this character set.
    pub fn decode(self, bytes: &[u8]) -> Option<String> {
        match self {
            Codec::Utf8 => crate::model::utf8(bytes).map(str::to_string),
            Codec::Standard(e) => e
                .decode_without_bom_handling_and_without_replacement(bytes)
                .map(|s| s.into_owned()),
            Codec::Utf32 => {
                if !bytes.len().is_multiple_of(4) {
                    return None;
                }
                bytes
                    .chunks_exact(4)
                    .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                    .collect()
            }
            Codec::Table(t) => t.decode(bytes),
        }
    }

    /// The character set's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Utf8 => "UTF-8",
            Codec::Standard(e) => e.name(),
            Codec::Utf32 => "UTF-32",
            Codec::Table(t) => t.name,
        }
    }
}

impl Charset {
    /// The algorithmic character sets by name; every other one needs the server's table
    /// (`Other` here).
    pub fn algorithmic(name: &str) -> Charset {
        match name.to_ascii_lowercase().as_str() {
            "utf8mb4" | "utf8mb3" | "utf8" | "ascii" => Charset::Text(Codec::Utf8),
            "binary" => Charset::Binary,
            "ucs2" | "utf16" => Charset::Text(Codec::Standard(encoding_rs::UTF_16BE)),
            "utf16le" => Charset::Text(Codec::Standard(encoding_rs::UTF_16LE)),
            "utf32" => Charset::Text(Codec::Utf32),
            // Four-byte sequences make GB 18030 too large to ask about code by code.
            "gb18030" => Charset::Text(Codec::Standard(encoding_rs::GB18030)),
            _ => Charset::Other(name.to_string()),
        }
    }

    /// Whether the server must describe this character set for Sluice to read it.
    pub fn needs_table(name: &str) -> bool {
        matches!(Charset::algorithmic(name), Charset::Other(_))
    }
}

/// What the first byte of a sequence is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lead {
    /// A character on its own.
    Char(char),
    /// The first of two bytes.
    Two,
    /// The first of three bytes (EUC-JP's JIS X 0212 prefix 0x8F).
    Three,
    /// No sequence starts with it.
    Invalid,
}

/// A character set as the server reads it: each one-byte code, each two-byte code, and the
/// three-byte codes of EUC-JP's 0x8F prefix.
#[derive(Debug, PartialEq, Eq)]
pub struct CharTable {
    name: &'static str,
    first: [Lead; 256],
    /// Indexed by `(first - 0x80) << 8 | second`.
    two: Vec<Option<char>>,
    /// Indexed by `(second - 0xA1) * 94 + (third - 0xA1)`.
    three: Vec<Option<char>>,
}

/// The byte sequences to ask the server about for a character set of up to `maxlen` bytes
/// per character: every byte, every two-byte sequence that starts above ASCII, and EUC-JP's
/// three-byte codes.
pub fn probes(maxlen: u8) -> Vec<Vec<u8>> {
    let mut codes: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    if maxlen >= 2 {
        for lead in 0x80..=0xffu8 {
            for second in 0x21..=0xffu8 {
                codes.push(vec![lead, second]);
            }
        }
    }
    if maxlen >= 3 {
        for a in 0xa1..=0xfeu8 {
            for b in 0xa1..=0xfeu8 {
                codes.push(vec![0x8f, a, b]);
            }
        }
    }
    codes
}

impl CharTable {
    /// Builds the table from the server's answers: for each probe (see [`probes`]), the text
    /// the server reads it as, or `None`/`'?'` where it cannot read it.
    pub fn from_answers<'a>(
        name: &str,
        answers: impl IntoIterator<Item = (&'a [u8], Option<&'a str>)>,
    ) -> CharTable {
        let mut t = CharTable {
            // Tables live as long as the process (codecs refer to them); one per character set.
            name: Box::leak(name.to_string().into_boxed_str()),
            first: [Lead::Invalid; 256],
            two: Vec::new(),
            three: Vec::new(),
        };
        let single = |text: Option<&str>, code: &[u8]| -> Option<char> {
            let mut chars = text?.chars();
            let c = chars.next()?;
            // The server reads what it cannot map as '?'.
            (chars.next().is_none() && (c != '?' || code == b"?")).then_some(c)
        };
        for (code, text) in answers {
            let Some(c) = single(text, code) else {
                continue;
            };
            match *code {
                [b] => t.first[usize::from(b)] = Lead::Char(c),
                [lead, second] if lead >= 0x80 => {
                    if t.two.is_empty() {
                        t.two = vec![None; 0x8000];
                    }
                    t.two[usize::from(lead - 0x80) << 8 | usize::from(second)] = Some(c);
                }
                [0x8f, a, b] if (0xa1..=0xfe).contains(&a) && (0xa1..=0xfe).contains(&b) => {
                    if t.three.is_empty() {
                        t.three = vec![None; 94 * 94];
                    }
                    t.three[usize::from(a - 0xa1) * 94 + usize::from(b - 0xa1)] = Some(c);
                }
                _ => {}
            }
        }
        // A byte that is not a character alone starts longer sequences, if any are known.
        for lead in 0x80..=0xffu8 {
            let i = usize::from(lead);
            if matches!(t.first[i], Lead::Char(_)) {
                continue;
            }
            if lead == 0x8f && !t.three.is_empty() {
                t.first[i] = Lead::Three;
            } else if !t.two.is_empty() {
                let row = usize::from(lead - 0x80) << 8;
                if t.two[row..row + 0x100].iter().any(Option::is_some) {
                    t.first[i] = Lead::Two;
                }
            }
        }
        t
    }

    /// The text of `bytes`; `None` if a sequence is not one the server reads.
    pub fn decode(&self, bytes: &[u8]) -> Option<String> {
        let mut out = String::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            match self.first[usize::from(b)] {
                Lead::Char(c) => {
                    out.push(c);
                    i += 1;
                }
                Lead::Two => {
                    let second = *bytes.get(i + 1)?;
                    out.push(self.two[usize::from(b - 0x80) << 8 | usize::from(second)]?);
                    i += 2;
                }
                Lead::Three => {
                    let (a, c) = (*bytes.get(i + 1)?, *bytes.get(i + 2)?);
                    if !(0xa1..=0xfe).contains(&a) || !(0xa1..=0xfe).contains(&c) {
                        return None;
                    }
                    out.push(self.three[usize::from(a - 0xa1) * 94 + usize::from(c - 0xa1)]?);
                    i += 3;
                }
                Lead::Invalid => return None,
            }
        }
        Some(out)
    }

    /// The character set's name.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// Collation id -> how to read its character set, as the connected server reports it.
#[derive(Debug, Clone, Default)]
pub struct Collations {
    ids: HashMap<u64, String>,
    tables: HashMap<String, &'static CharTable>,
}

impl Collations {
    /// Builds the map from `(id, character set name)` pairs; character sets that need a
    /// table are unknown until [`Collations::with_table`] adds it.
    pub fn new(pairs: impl IntoIterator<Item = (u64, String)>) -> Self {
        Collations {
            ids: pairs.into_iter().collect(),
            tables: HashMap::new(),
        }
    }

    /// Adds a character set's table (kept for the life of the process: collations are read
    /// once per start, and every decoder of the process shares them).
    pub fn with_table(mut self, table: CharTable) -> Self {
        self.add_table(Box::leak(Box::new(table)));
        self
    }

    /// Adds a character set's table.
    pub fn add_table(&mut self, table: &'static CharTable) {
        self.tables.insert(table.name.to_string(), table);
    }

    /// The character sets named by collation ids that need a table.
    pub fn needing_tables(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .ids
            .values()
            .filter(|n| Charset::needs_table(n))
            .cloned()
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// How to read the character set named `name`.
    pub fn named(&self, name: &str) -> Charset {
        match self.tables.get(name) {
            Some(t) => Charset::Text(Codec::Table(t)),
            None => Charset::algorithmic(name),
        }
    }

    /// How to read the character set of a collation id.
    pub fn charset(&self, collation: u64) -> Charset {
        if collation == BINARY_COLLATION {
            return Charset::Binary;
        }
        match self.ids.get(&collation) {
            Some(name) => self.named(name),
            None => Charset::Other(format!("of unknown collation id {collation}")),
        }
    }
}

/// Tables for unit tests, made the way the server's are (see `tests/charsets.rs` for the real
/// ones).
#[cfg(test)]
pub(crate) mod test_tables {
    use super::*;

    /// MySQL's latin1: Windows-1252, every byte a character.
    pub fn latin1() -> &'static CharTable {
        let answers: Vec<(Vec<u8>, String)> = (0..=255u8)
            .map(|b| {
                let byte = [b];
                let text = encoding_rs::WINDOWS_1252
                    .decode_without_bom_handling(&byte)
                    .0;
                (vec![b], text.into_owned())
            })
            .collect();
        let t = CharTable::from_answers(
            "latin1",
            answers
                .iter()
                .map(|(c, t)| (c.as_slice(), Some(t.as_str()))),
        );
        Box::leak(Box::new(t))
    }

    /// A two-byte set: ASCII, and 0x82 0xA0 = 'あ'.
    pub fn two_byte() -> &'static CharTable {
        let mut answers: Vec<(Vec<u8>, String)> = (0..0x80u8)
            .map(|b| (vec![b], char::from(b).to_string()))
            .collect();
        answers.push((vec![0x82, 0xa0], "あ".into()));
        let t = CharTable::from_answers(
            "sjis",
            answers
                .iter()
                .map(|(c, t)| (c.as_slice(), Some(t.as_str()))),
        );
        Box::leak(Box::new(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A two-byte character set of the server's making: 'A' alone, 0xB1 0xA1 = 'ア', 0x8F
    /// 0xA2 0xB7 = '˘', 0x80 = '€', and a code the server reads as '?' (unknown).
    fn table() -> CharTable {
        let answers: Vec<(Vec<u8>, Option<String>)> = vec![
            (vec![b'A'], Some("A".into())),
            (vec![b'?'], Some("?".into())),
            (vec![0x80], Some("€".into())),
            (vec![0xb1], Some("?".into())),
            (vec![0xb1, 0xa1], Some("ア".into())),
            (vec![0xb1, 0xa2], Some("?".into())),
            (vec![0x8f, 0xa2, 0xb7], Some("˘".into())),
        ];
        CharTable::from_answers(
            "test",
            answers.iter().map(|(c, t)| (c.as_slice(), t.as_deref())),
        )
    }

    #[test]
    fn decodes_as_the_server_answered() {
        let t = table();
        assert_eq!(
            t.decode(&[b'A', 0x80, 0xb1, 0xa1, 0x8f, 0xa2, 0xb7, b'?'])
                .as_deref(),
            Some("A€ア˘?")
        );
        // A sequence the server did not read, a truncated one, a byte nothing starts with.
        assert_eq!(t.decode(&[0xb1, 0xa2]), None);
        assert_eq!(t.decode(&[0xb1]), None);
        assert_eq!(t.decode(&[0x8f, 0xa2]), None);
        assert_eq!(t.decode(&[0xc0, 0xa1]), None);
    }

    #[test]
    fn probes_cover_one_two_and_three_byte_codes() {
        assert_eq!(probes(1).len(), 256);
        assert_eq!(probes(2).len(), 256 + 128 * 223);
        assert_eq!(probes(3).len(), 256 + 128 * 223 + 94 * 94);
    }

    #[test]
    fn algorithmic_character_sets_need_no_table() {
        assert_eq!(Charset::algorithmic("utf8mb4"), Charset::Text(Codec::Utf8));
        assert_eq!(Charset::algorithmic("BINARY"), Charset::Binary);
        assert!(Charset::needs_table("latin1"));
        assert!(!Charset::needs_table("utf16le"));
        let utf32 = Codec::Utf32.decode(&[0, 1, 0xf3, 0x00, 0, 0, 0, b'a']);
        assert_eq!(utf32.as_deref(), Some("🌀a"));
        let c = Collations::new([(8, "latin1".to_string()), (45, "utf8mb4".to_string())]);
        assert_eq!(c.needing_tables(), ["latin1"]);
        assert!(matches!(c.charset(8), Charset::Other(_)));
        let c = c.with_table(CharTable::from_answers("latin1", [(&b"a"[..], Some("a"))]));
        assert!(matches!(c.charset(8), Charset::Text(Codec::Table(_))));
        assert_eq!(c.charset(63), Charset::Binary);
    }
    #[test]
    fn utf8_text_is_accepted_and_refused_as_std_does() {
        // Seeded byte strings of every length up to 80 (SIMD blocks and their tails): ASCII,
        // valid multi-byte characters, and one byte changed at random, which is often invalid.
        let mut rng = fastrand::Rng::with_seed(0x5eed);
        let chars = [
            'a',
            'Z',
            ' ',
            'é',
            'ア',
            '€',
            '🌀',
            '\u{7f}',
            '\u{80}',
            '\u{10ffff}',
        ];
        let mut invalid = 0;
        for _ in 0..20_000 {
            let len = rng.usize(0..80);
            let mut text = String::new();
            while text.len() < len {
                text.push(if rng.u8(..) < 200 {
                    'x'
                } else {
                    chars[rng.usize(..chars.len())]
                });
            }
            let mut bytes = text.into_bytes();
            if !bytes.is_empty() && rng.bool() {
                let i = rng.usize(..bytes.len());
                bytes[i] = rng.u8(..);
            }
            let want = std::str::from_utf8(&bytes).ok().map(str::to_string);
            invalid += usize::from(want.is_none());
            assert_eq!(Codec::Utf8.decode(&bytes), want, "{bytes:x?}");
        }
        assert!(invalid > 1_000, "only {invalid} invalid strings generated");
    }
}
