//! The table-map parser on tables described from the fuzzer's bytes: a random list of 1 to 40
//! columns of every type family (signedness, character sets, ENUM/SET labels, geometry kinds,
//! vectors, nullability, a key), written as MariaDB, MySQL 8.0.20, MySQL 8.0 or MySQL 9 write
//! it, with the optional metadata fields in a random order, in either charset form, with
//! unknown fields mixed in. An intact table map must parse to exactly the table described; a
//! damaged one (some bytes changed, or cut short) must give an error, never a panic.
//!
//!     cd fuzz && cargo +nightly fuzz run table_map -- -runs=1000000
//!
//! The writer below follows the servers' rules for which columns each metadata field counts
//! (docs/design.md, "Table map"), written independently of the parser's `subset` module.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use sluice::model::ColumnType;
use sluice::source::binlog::event::Flavor;
use sluice::source::binlog::table_map::{ColumnDecoder, parse_columns, parse_head};
use sluice::source::charset::{CharTable, Collations};

/// Collations the described tables use: (id, character set).
const COLLATIONS: &[(u64, &str)] = &[
    (45, "utf8mb4"),
    (33, "utf8mb3"),
    (8, "latin1"),
    (63, "binary"),
];

/// A column as the test describes it.
#[derive(Debug, Clone)]
enum Kind {
    Int {
        ty: u8,
        unsigned: bool,
    },
    Year,
    Float,
    Double,
    Decimal {
        precision: u8,
        scale: u8,
    },
    Bit {
        bits: u8,
    },
    Char {
        len: u16,
        collation: u64,
    },
    Varchar {
        len: u16,
        collation: u64,
    },
    Blob {
        pack: u8,
        collation: u64,
    },
    Enum {
        labels: Vec<String>,
        collation: u64,
        bytes: u8,
    },
    Set {
        labels: Vec<String>,
        collation: u64,
        bytes: u8,
    },
    Json,
    Geometry {
        kind: u8,
    },
    Vector {
        dims: u32,
    },
    Date,
    Temporal {
        ty: u8,
        fsp: u8,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Server {
    MariaDb,
    MySql8020,
    MySql8,
    MySql9,
}

impl Server {
    fn flavor(self) -> Flavor {
        match self {
            Server::MariaDb => Flavor::MariaDb,
            Server::MySql8020 => Flavor::MySql {
                version: (8, 0, 20),
            },
            Server::MySql8 => Flavor::MySql {
                version: (8, 0, 36),
            },
            Server::MySql9 => Flavor::MySql { version: (9, 1, 0) },
        }
    }
}

const TINY: u8 = 1;
const SHORT: u8 = 2;
const LONG: u8 = 3;
const FLOAT: u8 = 4;
const DOUBLE: u8 = 5;
const LONGLONG: u8 = 8;
const INT24: u8 = 9;
const DATE: u8 = 10;
const YEAR: u8 = 13;
const VARCHAR: u8 = 15;
const BIT: u8 = 16;
const TIMESTAMP2: u8 = 17;
const DATETIME2: u8 = 18;
const TIME2: u8 = 19;
const VECTOR: u8 = 242;
const JSON: u8 = 245;
const NEWDECIMAL: u8 = 246;
const ENUM: u8 = 247;
const SET: u8 = 248;
const BLOB: u8 = 252;
const STRING: u8 = 254;
const GEOMETRY: u8 = 255;

const LABEL_CHARS: &[char] = &[
    'a', 'b', 'Z', '0', ' ', '\'', ',', 'é', 'ß', 'ÿ', '€', '中', '😀',
];

fn collation(u: &mut Unstructured<'_>) -> Result<u64> {
    Ok(u.choose(COLLATIONS)?.0)
}

fn charset_of(collation: u64) -> &'static str {
    COLLATIONS.iter().find(|c| c.0 == collation).unwrap().1
}

/// Labels that the collation's character set can spell, distinct and non-empty.
fn labels(u: &mut Unstructured<'_>, collation: u64, most: usize) -> Result<Vec<String>> {
    let n = u.int_in_range(1..=most)?;
    let mut out: Vec<String> = Vec::with_capacity(n);
    for i in 0..n {
        let len = u.int_in_range(0..=4)?;
        let mut s = String::new();
        for _ in 0..len {
            let c = *u.choose(LABEL_CHARS)?;
            let fits = match charset_of(collation) {
                "latin1" => (c as u32) < 256,
                "utf8mb3" => c.len_utf8() < 4,
                "binary" => c.is_ascii(),
                _ => true,
            };
            if fits {
                s.push(c);
            }
        }
        s.push_str(&i.to_string());
        out.push(s);
    }
    Ok(out)
}

fn kind(u: &mut Unstructured<'_>, server: Server) -> Result<Kind> {
    let mysql9 = server == Server::MySql9;
    Ok(match u.int_in_range(0..=15)? {
        0 => Kind::Int {
            ty: *u.choose(&[TINY, SHORT, INT24, LONG, LONGLONG])?,
            unsigned: u.arbitrary()?,
        },
        1 => Kind::Year,
        2 => Kind::Float,
        3 => Kind::Double,
        4 => {
            let precision = u.int_in_range(1..=65)?;
            Kind::Decimal {
                precision,
                scale: u.int_in_range(0..=precision.min(30))?,
            }
        }
        5 => Kind::Bit {
            bits: u.int_in_range(1..=64)?,
        },
        6 => Kind::Char {
            len: u.int_in_range(0..=1020)?,
            collation: collation(u)?,
        },
        7 => Kind::Varchar {
            len: u.int_in_range(0..=65_532)?,
            collation: collation(u)?,
        },
        8 => Kind::Blob {
            pack: u.int_in_range(1..=4)?,
            collation: collation(u)?,
        },
        9 => {
            let collation = collation(u)?;
            let labels = labels(u, collation, 300)?;
            let bytes = if labels.len() > 255 { 2 } else { 1 };
            Kind::Enum {
                labels,
                collation,
                bytes,
            }
        }
        10 => {
            let collation = collation(u)?;
            let labels = labels(u, collation, 64)?;
            Kind::Set {
                bytes: labels.len().div_ceil(8) as u8,
                labels,
                collation,
            }
        }
        // MariaDB's JSON is LONGTEXT: a BLOB in the table map.
        11 if server == Server::MariaDb => Kind::Blob {
            pack: 4,
            collation: 45,
        },
        11 => Kind::Json,
        12 => Kind::Geometry {
            kind: u.int_in_range(0..=7)?,
        },
        13 if mysql9 => Kind::Vector {
            dims: u.int_in_range(1..=16_383)?,
        },
        13 => Kind::Date,
        14 => Kind::Date,
        _ => Kind::Temporal {
            ty: *u.choose(&[TIME2, DATETIME2, TIMESTAMP2])?,
            fsp: u.int_in_range(0..=6)?,
        },
    })
}

fn packed(out: &mut Vec<u8>, n: u64) {
    match n {
        0..=250 => out.push(n as u8),
        251..=0xffff => {
            out.push(0xfc);
            out.extend_from_slice(&(n as u16).to_le_bytes());
        }
        0x1_0000..=0xff_ffff => {
            out.push(0xfd);
            out.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
        }
        _ => {
            out.push(0xfe);
            out.extend_from_slice(&n.to_le_bytes());
        }
    }
}

fn packed_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    packed(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A label in its column's character set.
fn encode(label: &str, collation: u64) -> Vec<u8> {
    match charset_of(collation) {
        "latin1" => label.chars().map(|c| c as u32 as u8).collect(),
        _ => label.as_bytes().to_vec(),
    }
}

/// Type byte and metadata bytes of a column.
fn type_and_meta(k: &Kind) -> (u8, Vec<u8>) {
    match k {
        Kind::Int { ty, .. } => (*ty, vec![]),
        Kind::Year => (YEAR, vec![]),
        Kind::Float => (FLOAT, vec![4]),
        Kind::Double => (DOUBLE, vec![8]),
        Kind::Decimal { precision, scale } => (NEWDECIMAL, vec![*precision, *scale]),
        Kind::Bit { bits } => (BIT, vec![bits % 8, bits / 8]),
        Kind::Char { len, .. } => (
            STRING,
            vec![STRING ^ ((len >> 4) as u8 & 0x30), (len & 0xff) as u8],
        ),
        Kind::Varchar { len, .. } => (VARCHAR, len.to_le_bytes().to_vec()),
        Kind::Blob { pack, .. } => (BLOB, vec![*pack]),
        Kind::Enum { bytes, .. } => (STRING, vec![ENUM, *bytes]),
        Kind::Set { bytes, .. } => (STRING, vec![SET, *bytes]),
        Kind::Json => (JSON, vec![4]),
        Kind::Geometry { .. } => (GEOMETRY, vec![4]),
        Kind::Vector { .. } => (VECTOR, vec![4]),
        Kind::Date => (DATE, vec![]),
        Kind::Temporal { ty, fsp } => (*ty, vec![*fsp]),
    }
}

/// What the parser must make of a column.
fn expected(k: &Kind) -> ColumnType {
    let text_or_bytes = |collation: u64| {
        if collation == 63 {
            ColumnType::Bytes
        } else {
            ColumnType::Text
        }
    };
    match k {
        Kind::Int { ty, unsigned } => ColumnType::Integer {
            bytes: match *ty {
                TINY => 1,
                SHORT => 2,
                INT24 => 3,
                LONG => 4,
                _ => 8,
            },
            unsigned: *unsigned,
        },
        Kind::Year => ColumnType::Year,
        Kind::Float => ColumnType::Float,
        Kind::Double => ColumnType::Double,
        Kind::Decimal { precision, scale } => ColumnType::Decimal {
            precision: *precision,
            scale: *scale,
        },
        Kind::Bit { bits } => ColumnType::Bit { bits: *bits },
        Kind::Char { collation, .. }
        | Kind::Varchar { collation, .. }
        | Kind::Blob { collation, .. } => text_or_bytes(*collation),
        Kind::Enum { labels, .. } => ColumnType::Enum(Arc::from(labels.as_slice())),
        Kind::Set { labels, .. } => ColumnType::Set(Arc::from(labels.as_slice())),
        Kind::Json => ColumnType::Json,
        Kind::Geometry { .. } => ColumnType::Geometry,
        Kind::Vector { dims } => ColumnType::Vector { dims: *dims },
        Kind::Date => ColumnType::Date,
        Kind::Temporal { ty, fsp } => match *ty {
            TIME2 => ColumnType::Time { fsp: *fsp },
            DATETIME2 => ColumnType::DateTime { fsp: *fsp },
            _ => ColumnType::Timestamp { fsp: *fsp },
        },
    }
}

/// Whether SIGNEDNESS has a bit for the column, on this server.
fn takes_sign_bit(k: &Kind, server: Server) -> bool {
    match k {
        Kind::Int { .. } | Kind::Float | Kind::Double | Kind::Decimal { .. } => true,
        Kind::Year => server != Server::MySql8020,
        _ => false,
    }
}

/// The column's entry in DEFAULT/COLUMN_CHARSET, if it takes one on this server.
fn text_collation(k: &Kind, server: Server) -> Option<u64> {
    match k {
        Kind::Char { collation, .. }
        | Kind::Varchar { collation, .. }
        | Kind::Blob { collation, .. } => Some(*collation),
        Kind::Geometry { .. } if server == Server::MariaDb => Some(63),
        Kind::Vector { .. } => Some(63),
        _ => None,
    }
}

fn enum_set_collation(k: &Kind) -> Option<u64> {
    match k {
        Kind::Enum { collation, .. } | Kind::Set { collation, .. } => Some(*collation),
        _ => None,
    }
}

/// A charset field in the form the servers pick, or the other one when `flip`.
fn charset_field(collations: &[u64], default_kind: u8, flip: bool) -> Option<(u8, Vec<u8>)> {
    if collations.is_empty() {
        return None;
    }
    let mut counts: Vec<(u64, usize)> = Vec::new();
    for &c in collations {
        match counts.iter_mut().find(|(id, _)| *id == c) {
            Some(e) => e.1 += 1,
            None => counts.push((c, 1)),
        }
    }
    let (most, most_n) = *counts.iter().max_by_key(|e| e.1).unwrap();
    let per_column = collations.len() < 1 + (collations.len() - most_n) * 2;
    let mut v = Vec::new();
    if per_column != flip {
        for &c in collations {
            packed(&mut v, c);
        }
        Some((default_kind + 1, v))
    } else {
        packed(&mut v, most);
        for (i, &c) in collations.iter().enumerate() {
            if c != most {
                packed(&mut v, i as u64);
                packed(&mut v, c);
            }
        }
        Some((default_kind, v))
    }
}

fn bits_msb_first(flags: impl Iterator<Item = bool>) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, f) in flags.enumerate() {
        if i % 8 == 0 {
            out.push(0);
        }
        if f {
            *out.last_mut().unwrap() |= 0x80 >> (i % 8);
        }
    }
    out
}

struct Table {
    server: Server,
    columns: Vec<(String, Kind, bool)>,
    /// Functional-index columns MySQL 8.0.20 names in the table map (always last).
    hidden: usize,
    key: Vec<usize>,
}

fn table(u: &mut Unstructured<'_>) -> Result<Table> {
    let server = *u.choose(&[
        Server::MariaDb,
        Server::MySql8020,
        Server::MySql8,
        Server::MySql9,
    ])?;
    let n = u.int_in_range(1..=40)?;
    let mut columns = Vec::with_capacity(n);
    for i in 0..n {
        columns.push((format!("c{i}"), kind(u, server)?, u.arbitrary()?));
    }
    let hidden = if server == Server::MySql8020 {
        u.int_in_range(0..=2)?
    } else {
        0
    };
    let mut key: Vec<usize> = Vec::new();
    for _ in 0..u.int_in_range(1..=3)? {
        let k = u.int_in_range(0..=n - 1)?;
        if !key.contains(&k) {
            key.push(k);
        }
    }
    Ok(Table {
        server,
        columns,
        hidden,
        key,
    })
}

/// The TABLE_MAP body of `t`, optional fields in the order `u` picks.
fn table_map(u: &mut Unstructured<'_>, t: &Table) -> Result<Vec<u8>> {
    let mut all: Vec<(String, Kind, bool)> = t.columns.clone();
    for h in 0..t.hidden {
        all.push((
            format!("!hidden!i{h}!0!0"),
            Kind::Int {
                ty: LONGLONG,
                unsigned: false,
            },
            true,
        ));
    }
    let mut body = vec![0x2a, 0, 0, 0, 0, 0, 1, 0];
    for name in ["d", "t"] {
        body.push(1);
        body.extend_from_slice(name.as_bytes());
        body.push(0);
    }
    packed(&mut body, all.len() as u64);
    let mut meta = Vec::new();
    for (_, k, _) in &all {
        let (ty, m) = type_and_meta(k);
        body.push(ty);
        meta.extend_from_slice(&m);
    }
    packed_bytes(&mut body, &meta);
    body.extend(
        bits_msb_first(all.iter().map(|c| c.2))
            .iter()
            .map(|b| b.reverse_bits()),
    );

    let mut fields: Vec<(u8, Vec<u8>)> = Vec::new();
    let signs: Vec<bool> = all
        .iter()
        .filter(|c| takes_sign_bit(&c.1, t.server))
        .map(|c| match &c.1 {
            Kind::Int { unsigned, .. } => *unsigned,
            // MariaDB marks YEAR unsigned; the bit means nothing to a reader.
            Kind::Year => t.server == Server::MariaDb,
            _ => u.arbitrary().unwrap_or(false),
        })
        .collect();
    if !signs.is_empty() {
        fields.push((1, bits_msb_first(signs.into_iter())));
    }
    let texts: Vec<u64> = all
        .iter()
        .filter_map(|c| text_collation(&c.1, t.server))
        .collect();
    fields.extend(charset_field(&texts, 2, u.arbitrary()?));
    let mut names = Vec::new();
    for (name, _, _) in &all {
        packed_bytes(&mut names, name.as_bytes());
    }
    fields.push((4, names));
    for (field, want_enum) in [(5u8, false), (6u8, true)] {
        let mut v = Vec::new();
        for (_, k, _) in &all {
            match (k, want_enum) {
                (
                    Kind::Set {
                        labels, collation, ..
                    },
                    false,
                )
                | (
                    Kind::Enum {
                        labels, collation, ..
                    },
                    true,
                ) => {
                    packed(&mut v, labels.len() as u64);
                    for l in labels {
                        packed_bytes(&mut v, &encode(l, *collation));
                    }
                }
                _ => {}
            }
        }
        if !v.is_empty() {
            fields.push((field, v));
        }
    }
    let mut geometry = Vec::new();
    for (_, k, _) in &all {
        if let Kind::Geometry { kind } = k {
            packed(&mut geometry, u64::from(*kind));
        }
    }
    if !geometry.is_empty() {
        fields.push((7, geometry));
    }
    let mut key = Vec::new();
    if u.arbitrary()? {
        for &k in &t.key {
            packed(&mut key, k as u64);
        }
        fields.push((8, key));
    } else {
        for &k in &t.key {
            packed(&mut key, k as u64);
            packed(&mut key, u.int_in_range(0..=300)?);
        }
        fields.push((9, key));
    }
    let enum_sets: Vec<u64> = all
        .iter()
        .filter_map(|c| enum_set_collation(&c.1))
        .collect();
    fields.extend(charset_field(&enum_sets, 10, u.arbitrary()?));
    if t.server != Server::MariaDb {
        let visible = all.iter().map(|c| !c.0.starts_with("!hidden!"));
        fields.push((12, bits_msb_first(visible)));
    }
    let mut dims = Vec::new();
    for (_, k, _) in &all {
        if let Kind::Vector { dims: d } = k {
            packed(&mut dims, u64::from(*d));
        }
    }
    if !dims.is_empty() {
        fields.push((13, dims));
    }
    // Fields of later servers, which a reader skips by their length.
    for _ in 0..u.int_in_range(0..=2)? {
        let kind = *u.choose(&[14u8, 15, 99, 128])?;
        let len = u.int_in_range(0..=20)?;
        fields.push((kind, u.bytes(len)?.to_vec()));
    }
    // The servers write the fields in one order; a reader must not depend on it.
    for i in (1..fields.len()).rev() {
        let j = u.int_in_range(0..=i)?;
        fields.swap(i, j);
    }
    for (kind, value) in fields {
        body.push(kind);
        packed_bytes(&mut body, &value);
    }
    Ok(body)
}

fn collations() -> &'static Collations {
    static C: std::sync::OnceLock<Collations> = std::sync::OnceLock::new();
    C.get_or_init(|| {
        // latin1 from a table as the server would answer: here ISO-8859-1 byte for byte.
        let answers: Vec<(Vec<u8>, String)> = (0..=255u8)
            .map(|b| (vec![b], char::from(b).to_string()))
            .collect();
        let latin1 = CharTable::from_answers(
            "latin1",
            answers
                .iter()
                .map(|(b, s)| (b.as_slice(), Some(s.as_str()))),
        );
        Collations::new(COLLATIONS.iter().map(|&(id, cs)| (id, cs.to_string()))).with_table(latin1)
    })
}

fn run(data: &[u8]) -> Result<()> {
    let mut u = Unstructured::new(data);
    let t = table(&mut u)?;
    let mut body = table_map(&mut u, &t)?;
    let damage: u8 = u.arbitrary()?;
    let damaged = damage.is_multiple_of(4) && !body.is_empty();
    if damaged {
        if damage & 0x10 != 0 {
            let at = u.int_in_range(0..=body.len() - 1)?;
            body.truncate(at);
        } else {
            for _ in 0..u.int_in_range(1..=4)? {
                let at = u.int_in_range(0..=body.len() - 1)?;
                body[at] = u.arbitrary()?;
            }
        }
    }
    let flavor = t.server.flavor();
    let parsed = parse_head(&body, 6)
        .map_err(|e| e.to_string())
        .and_then(|head| {
            parse_columns(head, collations(), None, flavor).map_err(|e| e.to_string())
        });
    if damaged {
        return Ok(());
    }
    let decoder = parsed.unwrap_or_else(|e| panic!("{e}\n{:?}\n{:?}", t.server, t.columns));
    let schema = &decoder.schema;
    assert_eq!(schema.columns.len(), t.columns.len());
    assert_eq!(decoder.width(), t.columns.len() + t.hidden);
    for (i, ((name, k, nullable), got)) in t.columns.iter().zip(&schema.columns).enumerate() {
        let want = expected(k);
        assert_eq!(
            (&got.name, &got.ty, got.nullable),
            (name, &want, *nullable),
            "column {i} of {:?} {:?}",
            t.server,
            t.columns
        );
        if let (Some(collation), ColumnDecoder::Text { codec, .. }) =
            (text_collation(k, t.server), decoder.columns[i])
        {
            let name = match charset_of(collation) {
                "latin1" => "latin1",
                _ => "UTF-8",
            };
            assert_eq!(
                codec.name(),
                name,
                "column {i} of {:?} {:?}",
                t.server,
                t.columns
            );
        }
    }
    assert_eq!(schema.key, t.key);
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});
