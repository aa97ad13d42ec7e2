//! Seeded random tables, values and workloads, so the decoder and the pipeline are checked
//! against inputs nobody picked: 1 to 40 columns drawn from every type family and modifier in
//! random order, random (composite, collated) keys, each type's edge values, and transactions
//! of every shape (multi-statement, savepoint rollbacks, rollbacks, XA, non-transactional
//! engines) with ALTERs between them. Everything follows from one seed, which every failure
//! message prints with the table's definition.

use std::fmt::Write as _;

use fastrand::Rng;
use sluice::model::ColumnType;

/// What the generator may use of the server: the character sets Sluice can transcode, each
/// with its collations and the characters of the pool it holds, and the engines.
#[derive(Clone, Debug)]
pub struct Catalog {
    /// `(character set, collations)`, binary excluded.
    pub charsets: Vec<(String, Vec<String>)>,
    /// Per character set, the characters of [`POOL`] the server stores and gives back.
    pub alphabets: std::collections::HashMap<String, Vec<char>>,
    /// Whether the server has the Aria engine.
    pub aria: bool,
}

impl Catalog {
    /// The characters text of `charset` is drawn from.
    pub fn alphabet(&self, charset: &str) -> &[char] {
        &self.alphabets[charset]
    }
}

/// A column family and its modifiers.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// TINYINT .. BIGINT.
    Int { bytes: u8, unsigned: bool },
    /// DECIMAL(p,s) [UNSIGNED].
    Decimal {
        precision: u8,
        scale: u8,
        unsigned: bool,
    },
    /// FLOAT [UNSIGNED].
    Float { unsigned: bool },
    /// DOUBLE [UNSIGNED].
    Double { unsigned: bool },
    /// BIT(n).
    Bit(u8),
    /// YEAR.
    Year,
    /// DATE.
    Date,
    /// TIME(fsp).
    Time(u8),
    /// DATETIME(fsp).
    DateTime(u8),
    /// TIMESTAMP(fsp).
    Timestamp(u8),
    /// CHAR(n) in a character set, with a collation.
    Char {
        len: u16,
        charset: String,
        collation: String,
    },
    /// VARCHAR(n).
    VarChar {
        len: u16,
        charset: String,
        collation: String,
    },
    /// TINYTEXT .. LONGTEXT (`size` 0..=3).
    Text {
        size: u8,
        charset: String,
        collation: String,
    },
    /// BINARY(n).
    Binary(u16),
    /// VARBINARY(n).
    VarBinary(u16),
    /// TINYBLOB .. LONGBLOB.
    Blob(u8),
    /// ENUM with labels in a character set.
    Enum {
        labels: Vec<String>,
        charset: String,
    },
    /// SET with labels in a character set.
    Set {
        labels: Vec<String>,
        charset: String,
    },
    /// JSON (MariaDB: LONGTEXT with a JSON_VALID check).
    Json,
    /// A geometry type: 0 GEOMETRY, 1 POINT, 2 LINESTRING, 3 POLYGON, 4 MULTIPOINT,
    /// 5 GEOMETRYCOLLECTION.
    Geometry(u8),
}

const GEOMETRIES: [&str; 6] = [
    "GEOMETRY",
    "POINT",
    "LINESTRING",
    "POLYGON",
    "MULTIPOINT",
    "GEOMETRYCOLLECTION",
];
const TEXTS: [&str; 4] = ["TINYTEXT", "TEXT", "MEDIUMTEXT", "LONGTEXT"];
const BLOBS: [&str; 4] = ["TINYBLOB", "BLOB", "MEDIUMBLOB", "LONGBLOB"];

impl Kind {
    /// The SQL type.
    pub fn sql(&self) -> String {
        let unsigned = |u: bool| if u { " UNSIGNED" } else { "" };
        match self {
            Kind::Int { bytes, unsigned: u } => {
                let name = match bytes {
                    1 => "TINYINT",
                    2 => "SMALLINT",
                    3 => "MEDIUMINT",
                    4 => "INT",
                    _ => "BIGINT",
                };
                format!("{name}{}", unsigned(*u))
            }
            Kind::Decimal {
                precision,
                scale,
                unsigned: u,
            } => format!("DECIMAL({precision},{scale}){}", unsigned(*u)),
            Kind::Float { unsigned: u } => format!("FLOAT{}", unsigned(*u)),
            Kind::Double { unsigned: u } => format!("DOUBLE{}", unsigned(*u)),
            Kind::Bit(n) => format!("BIT({n})"),
            Kind::Year => "YEAR".into(),
            Kind::Date => "DATE".into(),
            Kind::Time(f) => format!("TIME({f})"),
            Kind::DateTime(f) => format!("DATETIME({f})"),
            Kind::Timestamp(f) => format!("TIMESTAMP({f})"),
            Kind::Char {
                len,
                charset,
                collation,
            } => format!("CHAR({len}) CHARACTER SET {charset} COLLATE {collation}"),
            Kind::VarChar {
                len,
                charset,
                collation,
            } => format!("VARCHAR({len}) CHARACTER SET {charset} COLLATE {collation}"),
            Kind::Text {
                size,
                charset,
                collation,
            } => format!(
                "{} CHARACTER SET {charset} COLLATE {collation}",
                TEXTS[usize::from(*size)]
            ),
            Kind::Binary(n) => format!("BINARY({n})"),
            Kind::VarBinary(n) => format!("VARBINARY({n})"),
            Kind::Blob(size) => BLOBS[usize::from(*size)].into(),
            Kind::Enum { labels, charset } => {
                format!("ENUM({}) CHARACTER SET {charset}", quoted_list(labels))
            }
            Kind::Set { labels, charset } => {
                format!("SET({}) CHARACTER SET {charset}", quoted_list(labels))
            }
            Kind::Json => "JSON".into(),
            Kind::Geometry(g) => GEOMETRIES[usize::from(*g)].into(),
        }
    }

    /// The type Sluice's decoder must give the column.
    pub fn decoded(&self) -> ColumnType {
        match self {
            Kind::Int { bytes, unsigned } => ColumnType::Integer {
                bytes: *bytes,
                unsigned: *unsigned,
            },
            Kind::Decimal {
                precision, scale, ..
            } => ColumnType::Decimal {
                precision: *precision,
                scale: *scale,
            },
            Kind::Float { .. } => ColumnType::Float,
            Kind::Double { .. } => ColumnType::Double,
            Kind::Bit(n) => ColumnType::Bit { bits: *n },
            Kind::Year => ColumnType::Year,
            Kind::Date => ColumnType::Date,
            Kind::Time(fsp) => ColumnType::Time { fsp: *fsp },
            Kind::DateTime(fsp) => ColumnType::DateTime { fsp: *fsp },
            Kind::Timestamp(fsp) => ColumnType::Timestamp { fsp: *fsp },
            // MariaDB's JSON is LONGTEXT.
            Kind::Char { .. } | Kind::VarChar { .. } | Kind::Text { .. } | Kind::Json => {
                ColumnType::Text
            }
            Kind::Binary(_) | Kind::VarBinary(_) | Kind::Blob(_) => ColumnType::Bytes,
            Kind::Enum { labels, .. } => ColumnType::Enum(labels.clone().into()),
            Kind::Set { labels, .. } => ColumnType::Set(labels.clone().into()),
            Kind::Geometry(_) => ColumnType::Geometry,
        }
    }

    /// The character set of a text column, `None` for other columns and JSON (utf8mb4).
    pub fn charset(&self) -> Option<&str> {
        match self {
            Kind::Char { charset, .. }
            | Kind::VarChar { charset, .. }
            | Kind::Text { charset, .. }
            | Kind::Enum { charset, .. }
            | Kind::Set { charset, .. } => Some(charset),
            _ => None,
        }
    }

    /// Upper bound of a value's bytes inside the row (not off-page), for the row size budget.
    fn row_bytes(&self) -> usize {
        let per_char = |cs: &str| match cs {
            "utf8mb4" | "utf16" | "utf16le" | "utf32" => 4,
            "utf8mb3" | "ujis" | "eucjpms" => 3,
            "latin1" | "latin2" | "latin5" | "latin7" | "ascii" | "greek" | "hebrew" | "cp1250"
            | "cp1251" | "cp1256" | "cp1257" | "cp866" | "koi8r" | "koi8u" | "macroman"
            | "tis620" => 1,
            _ => 2,
        };
        match self {
            Kind::Char { len, charset, .. } | Kind::VarChar { len, charset, .. } => {
                usize::from(*len) * per_char(charset) + 2
            }
            Kind::Binary(n) | Kind::VarBinary(n) => usize::from(*n) + 2,
            _ => 20,
        }
    }
}

fn quoted_list(labels: &[String]) -> String {
    let quoted: Vec<String> = labels.iter().map(|l| sql_string(l)).collect();
    quoted.join(", ")
}

/// A quoted SQL string literal (quotes doubled, backslashes escaped).
pub fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// One column of a generated table.
#[derive(Clone, Debug)]
pub struct GenColumn {
    /// Name.
    pub name: String,
    /// Type.
    pub kind: Kind,
    /// Accepts NULL.
    pub nullable: bool,
    /// MariaDB's INVISIBLE: left out of `SELECT *`, still a column of every row image.
    pub invisible: bool,
    /// A generated column: `CRC32(<column>)`, STORED (true) or VIRTUAL.
    pub generated: Option<(String, bool)>,
}

impl GenColumn {
    fn definition(&self) -> String {
        let mut d = format!("`{}` {}", self.name, self.kind.sql());
        if let Some((from, stored)) = &self.generated {
            let how = if *stored { "STORED" } else { "VIRTUAL" };
            write!(d, " AS (CRC32(`{from}`)) {how}").unwrap();
        } else {
            d.push_str(if self.nullable { " NULL" } else { " NOT NULL" });
        }
        if self.invisible {
            d.push_str(" INVISIBLE");
        }
        d
    }
}

/// A generated table.
#[derive(Clone, Debug)]
pub struct GenTable {
    /// Name.
    pub name: String,
    /// InnoDB, MyISAM or Aria.
    pub engine: &'static str,
    /// Columns in table order.
    pub columns: Vec<GenColumn>,
    /// Names of the primary key's columns, in key order.
    pub key: Vec<String>,
}

impl GenTable {
    /// The CREATE TABLE statement.
    pub fn create(&self) -> String {
        let defs: Vec<String> = self.columns.iter().map(GenColumn::definition).collect();
        let key: Vec<String> = self.key.iter().map(|k| format!("`{k}`")).collect();
        format!(
            "CREATE TABLE `{}` ({}, PRIMARY KEY ({})) ENGINE={} DEFAULT CHARSET=utf8mb4",
            self.name,
            defs.join(", "),
            key.join(", "),
            self.engine
        )
    }

    /// The column named `name`.
    pub fn column(&self, name: &str) -> &GenColumn {
        self.columns.iter().find(|c| c.name == name).unwrap()
    }

    /// Whether the engine rolls back.
    pub fn transactional(&self) -> bool {
        self.engine == "InnoDB"
    }

    fn writable(&self) -> impl Iterator<Item = &GenColumn> {
        self.columns.iter().filter(|c| c.generated.is_none())
    }
}

/// Characters text values and labels are drawn from: ASCII with SQL's special characters,
/// Latin, Greek, Cyrillic, Hebrew, Arabic, Thai, CJK, kana, Hangul, symbols and emoji. Each
/// column uses those its character set can hold.
const POOL: &[char] = &[
    'a', 'b', 'k', 'z', 'A', 'Q', 'Z', '0', '7', '9', ' ', '\'', '"', '\\', '%', '_', ',', '-',
    '.', '\t', '\n', '~', 'é', 'è', 'ü', 'ñ', 'ß', 'Ä', 'Ö', 'ø', 'Œ', '€', '‰', '™', '©', '¿',
    '¡', '\u{a0}', 'ą', 'ł', 'ő', 'ž', 'č', 'Ω', 'λ', 'Ж', 'я', 'ї', 'ґ', 'א', 'ש', 'ع', 'ب', 'ก',
    'ไ', '日', '本', '語', '中', '文', '漢', '字', '한', '글', 'あ', 'カ', 'ｶ', '・', '😀', '🌊',
    '𝄞',
];

/// The query that tells which characters of the pool `charset` holds: one column per
/// character, 1 where converting it there and back gives it unchanged.
pub fn alphabet_query(charset: &str) -> String {
    let columns: Vec<String> = POOL
        .iter()
        .map(|c| {
            let lit = utf8_literal(&c.to_string());
            format!(
                "CONVERT(CONVERT({lit} USING {charset}) USING utf8mb4) = {lit} COLLATE utf8mb4_bin"
            )
        })
        .collect();
    format!("SELECT {}", columns.join(", "))
}

/// The pool characters whose flags (from [`alphabet_query`]) are set.
pub fn alphabet_of(flags: &[Option<i64>]) -> Vec<char> {
    POOL.iter()
        .zip(flags)
        .filter(|(_, f)| **f == Some(1))
        .map(|(c, _)| *c)
        .collect()
}

/// Builds random tables from a catalog.
pub struct Generator<'c> {
    catalog: &'c Catalog,
    rng: Rng,
}

impl<'c> Generator<'c> {
    /// A generator for one table seed.
    pub fn new(catalog: &'c Catalog, seed: u64) -> Self {
        Generator {
            catalog,
            rng: Rng::with_seed(seed),
        }
    }

    /// The random number source, for the workload that follows the table.
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.rng.usize(..items.len())]
    }

    fn charset(&mut self) -> (String, String) {
        let (name, collations) = self.pick(&self.catalog.charsets).clone();
        let collation = self.pick(&collations).clone();
        (name, collation)
    }

    /// Distinct labels for an ENUM or SET in `charset`: no trailing spaces (the server drops
    /// them), no commas (SET's separator), unique whatever the collation (the digits after
    /// the last `-` are the label's number).
    fn labels(&mut self, charset: &str, n: usize) -> Vec<String> {
        let chars: Vec<char> = self
            .catalog
            .alphabet(charset)
            .iter()
            .copied()
            .filter(|c| !matches!(c, ',' | ' ' | '\\' | '\t' | '\n'))
            .collect();
        (0..n)
            .map(|i| {
                let len = self.rng.usize(0..4);
                let mut l: String = (0..len).map(|_| *self.pick(&chars)).collect();
                write!(l, "-{i}").unwrap();
                l
            })
            .collect()
    }

    /// A random column kind; `key` restricts it to types a primary key can hold here.
    pub fn kind(&mut self, key: bool) -> Kind {
        if key {
            return match self.rng.u8(..6) {
                0 | 1 => Kind::Int {
                    bytes: *self.pick(&[1, 2, 3, 4, 8]),
                    unsigned: self.rng.bool(),
                },
                2 => {
                    let precision = self.rng.u8(4..=18);
                    Kind::Decimal {
                        precision,
                        scale: self.rng.u8(0..=precision - 4),
                        unsigned: self.rng.bool(),
                    }
                }
                3 if self.rng.bool() => Kind::Date,
                3 => Kind::DateTime(self.rng.u8(0..=6)),
                4 => {
                    let (charset, collation) = self.charset();
                    Kind::VarChar {
                        len: self.rng.u16(8..=40),
                        charset,
                        collation,
                    }
                }
                _ => Kind::VarBinary(self.rng.u16(4..=40)),
            };
        }
        match self.rng.u8(..22) {
            0..=2 => Kind::Int {
                bytes: *self.pick(&[1, 2, 3, 4, 8]),
                unsigned: self.rng.bool(),
            },
            3 => {
                let precision = self.rng.u8(1..=65);
                Kind::Decimal {
                    precision,
                    scale: self.rng.u8(0..=precision.min(38)),
                    unsigned: self.rng.u8(..4) == 0,
                }
            }
            4 => Kind::Float {
                unsigned: self.rng.u8(..4) == 0,
            },
            5 => Kind::Double {
                unsigned: self.rng.u8(..4) == 0,
            },
            6 => {
                let any = self.rng.u8(1..=64);
                Kind::Bit(*self.pick(&[1, 1, 7, 8, 9, 16, 33, 63, 64, any]))
            }
            7 => Kind::Year,
            8 => Kind::Date,
            9 => Kind::Time(self.rng.u8(0..=6)),
            10 => Kind::DateTime(self.rng.u8(0..=6)),
            11 => Kind::Timestamp(self.rng.u8(0..=6)),
            12 => {
                let (charset, collation) = self.charset();
                Kind::Char {
                    len: self.rng.u16(1..=20),
                    charset,
                    collation,
                }
            }
            13 | 14 => {
                let (charset, collation) = self.charset();
                Kind::VarChar {
                    len: self.rng.u16(1..=64),
                    charset,
                    collation,
                }
            }
            15 => {
                let (charset, collation) = self.charset();
                Kind::Text {
                    size: self.rng.u8(0..4),
                    charset,
                    collation,
                }
            }
            16 => match self.rng.u8(..3) {
                0 => Kind::Binary(self.rng.u16(1..=16)),
                1 => Kind::VarBinary(self.rng.u16(1..=64)),
                _ => Kind::Blob(self.rng.u8(0..4)),
            },
            17 => {
                let (charset, _) = self.charset();
                let most = *self.pick(&[3, 10, 300]);
                let n = self.rng.usize(1..=most);
                Kind::Enum {
                    labels: self.labels(&charset, n),
                    charset,
                }
            }
            18 => {
                let (charset, _) = self.charset();
                let most = *self.pick(&[3, 8, 9, 64]);
                let n = self.rng.usize(1..=most);
                Kind::Set {
                    labels: self.labels(&charset, n),
                    charset,
                }
            }
            19 => Kind::Json,
            _ => Kind::Geometry(self.rng.u8(0..6)),
        }
    }

    /// A random table named `name`.
    pub fn table(&mut self, name: &str) -> GenTable {
        let most = *self.pick(&[4, 12, 40]);
        let n = self.rng.usize(1..=most);
        let key_len = self.rng.usize(1..=n.min(3));
        let mut columns: Vec<GenColumn> = Vec::new();
        let mut budget = 6000usize;
        for i in 0..n {
            let is_key = i < key_len;
            let mut kind = self.kind(is_key);
            if kind.row_bytes() > budget {
                kind = Kind::Int {
                    bytes: 4,
                    unsigned: false,
                };
            }
            budget = budget.saturating_sub(kind.row_bytes());
            let nullable = !is_key && self.rng.u8(..3) != 0;
            columns.push(GenColumn {
                name: format!("c{i}"),
                kind,
                nullable,
                invisible: !is_key && nullable && self.rng.u8(..12) == 0,
                generated: None,
            });
        }
        // Generated columns over a random other column: not a TIMESTAMP, whose text depends
        // on the session's time zone, nor a CHAR or BINARY, whose padding depends on the SQL
        // mode (MariaDB refuses both).
        for g in 0..self.rng.usize(0..=2).min(n) {
            let from = &columns[self.rng.usize(..n)];
            if matches!(
                from.kind,
                Kind::Timestamp(_) | Kind::Char { .. } | Kind::Binary(_)
            ) {
                continue;
            }
            let from = from.name.clone();
            columns.push(GenColumn {
                name: format!("g{g}"),
                kind: Kind::Int {
                    bytes: 8,
                    unsigned: true,
                },
                nullable: true,
                invisible: false,
                generated: Some((from, self.rng.bool())),
            });
        }
        let key = columns[..key_len].iter().map(|c| c.name.clone()).collect();
        // Key columns first, then the order is shuffled.
        self.rng.shuffle(&mut columns);
        let engine = match self.rng.u8(..14) {
            0 => "MyISAM",
            1 if self.catalog.aria => "Aria",
            _ => "InnoDB",
        };
        GenTable {
            name: name.to_string(),
            engine,
            columns,
            key,
        }
    }
}

/// Random values for the columns of a table: each type's edges half of the time.
pub struct Values<'r> {
    /// The random source.
    pub rng: &'r mut Rng,
    /// The server's character sets.
    pub catalog: &'r Catalog,
}

impl Values<'_> {
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.rng.usize(..items.len())]
    }

    fn edge(&mut self) -> bool {
        self.rng.bool()
    }

    /// A literal for a value of `column` (NULL sometimes where allowed).
    pub fn literal(&mut self, column: &GenColumn) -> String {
        if column.nullable && self.rng.u8(..8) == 0 {
            return "NULL".into();
        }
        self.value(&column.kind)
    }

    /// A literal of `kind`, never NULL.
    pub fn value(&mut self, kind: &Kind) -> String {
        match kind {
            Kind::Int { bytes, unsigned } => {
                let bits = u32::from(*bytes) * 8;
                let (lo, hi): (i128, i128) = if *unsigned {
                    (0, (1i128 << bits) - 1)
                } else {
                    (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
                };
                if self.edge() {
                    self.pick(&[lo, hi, 0, 1, (-1i128).max(lo), lo + 1, hi - 1])
                        .to_string()
                } else {
                    (lo + i128::from(self.rng.u64(..)) % (hi - lo + 1)).to_string()
                }
            }
            Kind::Decimal {
                precision,
                scale,
                unsigned,
            } => {
                let (int_digits, frac) = (usize::from(precision - scale), usize::from(*scale));
                let digits = |rng: &mut Rng, n: usize, nines: bool| -> String {
                    (0..n)
                        .map(|_| {
                            if nines {
                                '9'
                            } else {
                                char::from(b'0' + rng.u8(..10))
                            }
                        })
                        .collect()
                };
                let nines = self.rng.u8(..5) == 0;
                let n = if nines {
                    int_digits
                } else {
                    self.rng.usize(0..=int_digits)
                };
                let mut s = digits(self.rng, n, nines);
                if s.is_empty() {
                    s.push('0');
                }
                if frac > 0 {
                    s.push('.');
                    s.push_str(&digits(self.rng, frac, nines));
                }
                if !unsigned && self.rng.bool() {
                    s.insert(0, '-');
                }
                s
            }
            Kind::Float { unsigned } => {
                let f = if self.edge() {
                    *self.pick(&[
                        0.0f32,
                        -0.0,
                        3.402_823e38,
                        -3.402_823e38,
                        1.175_494_4e-38,
                        1.0,
                        0.1,
                    ])
                } else {
                    loop {
                        let f = f32::from_bits(self.rng.u32(..));
                        if f.is_finite() {
                            break f;
                        }
                    }
                };
                format!("{:e}", if *unsigned { f.abs() } else { f })
            }
            Kind::Double { unsigned } => {
                let d = if self.edge() {
                    *self.pick(&[
                        0.0f64,
                        -0.0,
                        f64::MAX,
                        f64::MIN,
                        f64::MIN_POSITIVE,
                        5e-324,
                        0.1,
                    ])
                } else {
                    loop {
                        let d = f64::from_bits(self.rng.u64(..));
                        if d.is_finite() {
                            break d;
                        }
                    }
                };
                format!("{:e}", if *unsigned { d.abs() } else { d })
            }
            Kind::Bit(n) => {
                let max = if *n == 64 { u64::MAX } else { (1u64 << n) - 1 };
                let v = if self.edge() {
                    *self.pick(&[0, max, 1, max >> 1])
                } else {
                    self.rng.u64(..) & max
                };
                v.to_string()
            }
            Kind::Year => {
                let y = if self.edge() {
                    *self.pick(&[0u32, 1901, 2155, 5, 69, 70, 99])
                } else {
                    self.rng.u32(1901..=2155)
                };
                y.to_string()
            }
            Kind::Date => format!("'{}'", self.date()),
            Kind::Time(fsp) => {
                let t = if self.edge() {
                    self.pick(&[
                        "-838:59:59",
                        "838:59:59",
                        "00:00:00",
                        "-00:00:01",
                        "24:00:00",
                    ])
                    .to_string()
                } else {
                    let sign = if self.rng.bool() { "-" } else { "" };
                    format!(
                        "{sign}{}:{:02}:{:02}",
                        self.rng.u32(0..838),
                        self.rng.u32(..60),
                        self.rng.u32(..60)
                    )
                };
                let frac = self.fraction(*fsp);
                // 838:59:59 is the largest TIME: no fraction on top of it.
                if t.ends_with("838:59:59") {
                    format!("'{t}'")
                } else {
                    format!("'{t}{frac}'")
                }
            }
            Kind::DateTime(fsp) => {
                if self.rng.u8(..20) == 0 {
                    return "'0000-00-00 00:00:00'".into();
                }
                let clock = if self.edge() {
                    self.pick(&["00:00:00", "23:59:59", "12:00:00"]).to_string()
                } else {
                    self.clock()
                };
                let frac = self.fraction(*fsp);
                format!("'{} {clock}{frac}'", self.date())
            }
            Kind::Timestamp(fsp) => {
                if self.rng.u8(..20) == 0 {
                    return "'0000-00-00 00:00:00'".into();
                }
                let secs = if self.edge() {
                    *self.pick(&[1i64, 2_147_483_647, 946_684_800, 1_709_251_199])
                } else {
                    self.rng.i64(1..2_147_483_647)
                };
                let frac = if secs == 2_147_483_647 {
                    String::new()
                } else {
                    self.fraction(*fsp)
                };
                let micros = secs * 1_000_000;
                let text = sluice::model::time::format_datetime_micros(micros).replace('T', " ");
                format!("'{}{frac}'", &text[..19])
            }
            Kind::Char { len, charset, .. } | Kind::VarChar { len, charset, .. } => {
                let n = self.length(usize::from(*len));
                self.text(charset, n)
            }
            Kind::Text { size, charset, .. } => {
                let n = match self.rng.u16(..60) {
                    0 if *size >= 2 => 70_000,
                    0 if *size == 1 => 16_000,
                    _ => self.length(if *size == 0 { 60 } else { 300 }),
                };
                self.text(charset, n)
            }
            Kind::Binary(n) | Kind::VarBinary(n) => {
                let len = self.length(usize::from(*n));
                self.bytes(len)
            }
            Kind::Blob(size) => {
                let len = match self.rng.u16(..60) {
                    0 if *size >= 2 => 70_000,
                    _ => self.length(if *size == 0 { 255 } else { 600 }),
                };
                self.bytes(len)
            }
            Kind::Enum { labels, .. } => self.rng.usize(1..=labels.len()).to_string(),
            Kind::Set { labels, .. } => {
                let all = if labels.len() == 64 {
                    u64::MAX
                } else {
                    (1u64 << labels.len()) - 1
                };
                let v = if self.edge() {
                    *self.pick(&[0, all, 1])
                } else {
                    self.rng.u64(..) & all
                };
                v.to_string()
            }
            Kind::Json => {
                let mut doc = String::new();
                self.json(&mut doc, 0);
                utf8_literal(&doc)
            }
            Kind::Geometry(g) => {
                let g = if *g == 0 { self.rng.u8(1..6) } else { *g };
                let mut wkb = Vec::new();
                self.wkb(g, &mut wkb);
                let any = self.rng.u32(1..100_000);
                let srid = *self.pick(&[0u32, 4326, 3857, any]);
                format!("ST_GeomFromWKB(X'{}', {srid})", hex(&wkb))
            }
        }
    }

    /// A string length up to `max`: the edges (0 and max) often.
    fn length(&mut self, max: usize) -> usize {
        match self.rng.u8(..6) {
            0 => 0,
            1 => max,
            _ => self.rng.usize(0..=max),
        }
    }

    fn text(&mut self, charset: &str, chars: usize) -> String {
        let alphabet = self.catalog.alphabet(charset);
        let mut s: String = (0..chars)
            .map(|_| alphabet[self.rng.usize(..alphabet.len())])
            .collect();
        // `mariadb-binlog -v` prints a backslash raw and other bytes as `\xNN`: keep the
        // two apart.
        while s.contains("\\x") {
            s = s.replace("\\x", "\\y");
        }
        utf8_literal(&s)
    }

    fn bytes(&mut self, n: usize) -> String {
        let b: Vec<u8> = (0..n).map(|_| self.rng.u8(..)).collect();
        format!("X'{}'", hex(&b))
    }

    fn date(&mut self) -> String {
        match self.rng.u8(..30) {
            0 => return "0000-00-00".into(),
            1 => return format!("{:04}-00-00", self.rng.u32(1000..10000)),
            _ => {}
        }
        let y = if self.edge() {
            *self.pick(&[1000u32, 1969, 1970, 2000, 2024, 9999, 1])
        } else {
            self.rng.u32(1000..10000)
        };
        let m = self.rng.u32(1..=12);
        let days = [
            31,
            if y % 4 == 0 { 29 } else { 28 },
            31,
            30,
            31,
            30,
            31,
            31,
            30,
            31,
            30,
            31,
        ];
        let d = if self.edge() {
            days[m as usize - 1]
        } else {
            self.rng.u32(1..=days[m as usize - 1])
        };
        let d = if m == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)) {
            28
        } else {
            d
        };
        format!("{y:04}-{m:02}-{d:02}")
    }

    fn clock(&mut self) -> String {
        format!(
            "{:02}:{:02}:{:02}",
            self.rng.u32(..24),
            self.rng.u32(..60),
            self.rng.u32(..60)
        )
    }

    /// `.` and exactly `fsp` digits (empty for 0), edges often.
    fn fraction(&mut self, fsp: u8) -> String {
        if fsp == 0 {
            return String::new();
        }
        let n = usize::from(fsp);
        let digits: String = match self.rng.u8(..4) {
            0 => "9".repeat(n),
            1 => "0".repeat(n - 1) + "1",
            _ => (0..n)
                .map(|_| char::from(b'0' + self.rng.u8(..10)))
                .collect(),
        };
        format!(".{digits}")
    }

    fn json(&mut self, out: &mut String, depth: u32) {
        match self.rng.u8(..if depth > 2 { 6 } else { 8 }) {
            0 => out.push_str("null"),
            1 => out.push_str(if self.rng.bool() { "true" } else { "false" }),
            2 => write!(out, "{}", self.rng.i64(..)).unwrap(),
            3 => write!(out, "{}", self.rng.f64() * 1e6 - 5e5).unwrap(),
            4 | 5 => {
                let s: String = (0..self.rng.usize(0..8))
                    .map(|_| *self.pick(POOL))
                    .filter(|c| !matches!(c, '"' | '\\' | '\t' | '\n'))
                    .collect();
                write!(out, "\"{s}\"").unwrap();
            }
            6 => {
                out.push('[');
                for i in 0..self.rng.usize(0..4) {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    self.json(out, depth + 1);
                }
                out.push(']');
            }
            _ => {
                out.push('{');
                for i in 0..self.rng.usize(0..4) {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write!(out, "\"k{i}\": ").unwrap();
                    self.json(out, depth + 1);
                }
                out.push('}');
            }
        }
    }

    fn point(&mut self, out: &mut Vec<u8>) {
        for _ in 0..2 {
            let c = f64::from(self.rng.i32(-100_000..100_000)) / 64.0;
            out.extend_from_slice(&c.to_le_bytes());
        }
    }

    /// Well-known binary (little-endian) of a random shape of type `g`.
    fn wkb(&mut self, g: u8, out: &mut Vec<u8>) {
        out.push(1);
        let wkb_type: u32 = match g {
            1 => 1,
            2 => 2,
            3 => 3,
            4 => 4,
            _ => 7,
        };
        out.extend_from_slice(&wkb_type.to_le_bytes());
        match g {
            1 => self.point(out),
            2 => {
                let n = self.rng.u32(2..5);
                out.extend_from_slice(&n.to_le_bytes());
                for _ in 0..n {
                    self.point(out);
                }
            }
            3 => {
                // One closed ring.
                out.extend_from_slice(&1u32.to_le_bytes());
                out.extend_from_slice(&4u32.to_le_bytes());
                let mut first = Vec::new();
                self.point(&mut first);
                out.extend_from_slice(&first);
                self.point(out);
                self.point(out);
                out.extend_from_slice(&first);
            }
            4 => {
                let n = self.rng.u32(1..4);
                out.extend_from_slice(&n.to_le_bytes());
                for _ in 0..n {
                    self.wkb(1, out);
                }
            }
            _ => {
                let n = self.rng.u32(0..3);
                out.extend_from_slice(&n.to_le_bytes());
                for _ in 0..n {
                    let inner = self.rng.u8(1..3);
                    self.wkb(inner, out);
                }
            }
        }
    }

    /// The literal of a key column's `n`th distinct value: different `n` give values that
    /// differ under any collation.
    pub fn key_value(&mut self, kind: &Kind, n: u32) -> String {
        let n = i64::from(n);
        match kind {
            Kind::Int { bytes, unsigned } => {
                let bits = u32::from(*bytes) * 8;
                let (lo, hi): (i128, i128) = if *unsigned {
                    (0, (1i128 << bits) - 1)
                } else {
                    (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
                };
                match n {
                    0 => lo.to_string(),
                    1 => hi.to_string(),
                    // Up to 125 keys fit TINYINT's range this way.
                    _ => (i128::from(n) - if *unsigned { 0 } else { 60 }).to_string(),
                }
            }
            Kind::Decimal {
                scale, unsigned, ..
            } => {
                let int = if *unsigned { n } else { n - 60 };
                if *scale == 0 {
                    int.to_string()
                } else {
                    format!("{int}.{}", "5".repeat(usize::from(*scale)))
                }
            }
            Kind::Date => {
                let days = 10_957 + n * 37; // from 2000-01-01
                format!("'{}'", sluice::model::time::format_date(days))
            }
            Kind::DateTime(fsp) => {
                let micros = 946_684_800_000_000 + n * 3_601_000_001;
                let text = sluice::model::time::format_datetime_micros(micros).replace('T', " ");
                let cut = if *fsp == 0 {
                    19
                } else {
                    20 + usize::from(*fsp)
                };
                format!("'{}'", &text[..cut])
            }
            Kind::VarChar { len, charset, .. } => {
                let alphabet: Vec<char> = self
                    .catalog
                    .alphabet(charset)
                    .iter()
                    .copied()
                    .filter(|c| !matches!(c, '\\'))
                    .collect();
                let prefix_len = self
                    .rng
                    .usize(0..=usize::from(*len).saturating_sub(4).min(4));
                let mut s: String = (0..prefix_len).map(|_| *self.pick(&alphabet)).collect();
                write!(s, "{}", base36(n as u32)).unwrap();
                utf8_literal(&s)
            }
            Kind::VarBinary(len) => {
                let prefix_len = self
                    .rng
                    .usize(0..=usize::from(*len).saturating_sub(2).min(6));
                let mut b: Vec<u8> = (0..prefix_len).map(|_| self.rng.u8(..)).collect();
                b.extend_from_slice(&(n as u16).to_be_bytes());
                format!("X'{}'", hex(&b))
            }
            other => panic!("{other:?} is not a key kind"),
        }
    }
}

/// Four base-36 digits: distinct for distinct `n` under any collation.
fn base36(mut n: u32) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut s = [b'0'; 4];
    for slot in s.iter_mut().rev() {
        *slot = digits[(n % 36) as usize];
        n /= 36;
    }
    String::from_utf8(s.to_vec()).unwrap()
}

/// Lower-case hex of bytes.
pub fn hex(b: &[u8]) -> String {
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            write!(s, "{x:02x}").unwrap();
            s
        })
}

/// A text literal that reaches the server as exactly these characters, whatever they are.
fn utf8_literal(s: &str) -> String {
    format!("_utf8mb4 X'{}'", hex(s.as_bytes()))
}
