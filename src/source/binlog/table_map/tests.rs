//! TABLE_MAP bodies built as the servers write them, parsed back.

use super::columns::string_meta;
use super::*;

/// Builds a TABLE_MAP body the way MariaDB writes it with binlog_row_metadata=FULL.
pub(crate) struct TableMapBuilder {
    columns: Vec<(u8, Vec<u8>, bool, &'static str)>,
    key: Vec<u8>,
    unsigned: Vec<bool>,
    charsets: Vec<u8>,
    minimal: bool,
}

impl TableMapBuilder {
    pub(crate) fn new() -> Self {
        TableMapBuilder {
            columns: vec![],
            key: vec![],
            unsigned: vec![],
            charsets: vec![],
            minimal: false,
        }
    }

    /// As with binlog_row_metadata=MINIMAL: no optional metadata at all.
    pub(crate) fn minimal(mut self) -> Self {
        self.minimal = true;
        self
    }

    pub(crate) fn int(mut self, ty: u8, unsigned: bool, name: &'static str) -> Self {
        self.unsigned.push(unsigned);
        self.columns.push((ty, vec![], false, name));
        self
    }

    pub(crate) fn column(
        mut self,
        ty: u8,
        meta: &[u8],
        nullable: bool,
        name: &'static str,
    ) -> Self {
        // MariaDB writes a signedness bit for every Field_num (YEAR included) and a
        // charset for every column with one (GEOMETRY: binary).
        if matches!(ty, col::NEWDECIMAL | col::FLOAT | col::DOUBLE | col::YEAR) {
            self.unsigned.push(ty == col::YEAR);
        }
        if matches!(
            ty,
            col::VARCHAR | col::STRING | col::BLOB | col::VARCHAR_COMPRESSED | col::BLOB_COMPRESSED
        ) {
            self.charsets.push(45); // utf8mb4_general_ci
        }
        if ty == col::GEOMETRY {
            self.charsets.push(63);
        }
        self.columns.push((ty, meta.to_vec(), nullable, name));
        self
    }

    /// A text column in the character set of `collation`.
    pub(crate) fn text(mut self, ty: u8, meta: &[u8], collation: u8, name: &'static str) -> Self {
        self.charsets.push(collation);
        self.columns.push((ty, meta.to_vec(), true, name));
        self
    }

    pub(crate) fn key(mut self, cols: &[u8]) -> Self {
        self.key = cols.to_vec();
        self
    }

    pub(crate) fn build(&self, table_id: u64) -> Vec<u8> {
        let mut b = table_id.to_le_bytes()[..6].to_vec();
        b.extend_from_slice(&[1, 0]);
        for part in ["shop", "t"] {
            b.push(part.len() as u8);
            b.extend_from_slice(part.as_bytes());
            b.push(0);
        }
        b.push(self.columns.len() as u8);
        b.extend(self.columns.iter().map(|c| c.0));
        let meta: Vec<u8> = self.columns.iter().flat_map(|c| c.1.clone()).collect();
        b.push(meta.len() as u8);
        b.extend_from_slice(&meta);
        let mut nulls = vec![0u8; self.columns.len().div_ceil(8)];
        for (i, c) in self.columns.iter().enumerate() {
            if c.2 {
                nulls[i / 8] |= 1 << (i % 8);
            }
        }
        b.extend_from_slice(&nulls);
        if self.minimal {
            return b;
        }
        let mut sign = vec![0u8; self.unsigned.len().div_ceil(8)];
        for (i, &u) in self.unsigned.iter().enumerate() {
            if u {
                sign[i / 8] |= 0x80 >> (i % 8);
            }
        }
        field(&mut b, meta::SIGNEDNESS, &sign);
        field(&mut b, meta::COLUMN_CHARSET, &self.charsets);
        let mut names = vec![];
        for c in &self.columns {
            names.push(c.3.len() as u8);
            names.extend_from_slice(c.3.as_bytes());
        }
        field(&mut b, meta::COLUMN_NAME, &names);
        if !self.key.is_empty() {
            field(&mut b, meta::SIMPLE_PRIMARY_KEY, &self.key);
        }
        b
    }
}

fn field(b: &mut Vec<u8>, kind: u8, v: &[u8]) {
    b.push(kind);
    b.push(v.len() as u8);
    b.extend_from_slice(v);
}

pub(crate) fn collations() -> Collations {
    let mut c = Collations::new([(45, "utf8mb4".to_string()), (8, "latin1".to_string())]);
    c.add_table(crate::source::charset::test_tables::latin1());
    c
}

fn parse(body: &[u8]) -> Result<TableDecoder, TableMapError> {
    parse_columns(
        parse_head(body, 6).unwrap(),
        &collations(),
        None,
        Flavor::MariaDb,
    )
}

#[test]
fn reads_names_types_signedness_nullability_and_key() {
    let body = TableMapBuilder::new()
        .int(col::LONGLONG, true, "id")
        .int(col::INT24, false, "m")
        .column(col::NEWDECIMAL, &[12, 4], true, "price")
        .column(col::VARCHAR, &[0x00, 0x04], true, "name") // 1024 bytes
        .column(col::STRING, &[0xfe, 40], false, "code")
        .column(col::BLOB, &[2], true, "note")
        .column(col::DATETIME2, &[6], true, "at")
        .key(&[0])
        .build(7);
    let head = parse_head(&body, 6).unwrap();
    assert_eq!(
        (head.table_id, head.table.to_string().as_str()),
        (7, "shop.t")
    );
    let d = parse(&body).unwrap();
    assert_eq!(
        d.columns,
        vec![
            ColumnDecoder::Int {
                bytes: 8,
                unsigned: true
            },
            ColumnDecoder::Int {
                bytes: 3,
                unsigned: false
            },
            ColumnDecoder::Decimal {
                precision: 12,
                scale: 4
            },
            ColumnDecoder::Text {
                len_bytes: 2,
                codec: Codec::Utf8,
                trim_spaces: false
            },
            ColumnDecoder::Text {
                len_bytes: 1,
                codec: Codec::Utf8,
                trim_spaces: true
            },
            ColumnDecoder::Text {
                len_bytes: 2,
                codec: Codec::Utf8,
                trim_spaces: false
            },
            ColumnDecoder::DateTime2 { fsp: 6 },
        ]
    );
    let names: Vec<_> = d
        .schema
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.nullable))
        .collect();
    assert_eq!(names[0], ("id", false));
    assert_eq!(names[2], ("price", true));
    assert_eq!(d.schema.key, vec![0]);
}

#[test]
fn char_lengths_above_255_hide_in_the_type_byte() {
    // CHAR(255) in utf8mb4 is 1020 bytes: 0x3fc, high bits 0x3 stored as (0x30 ^ 0x30).
    assert_eq!(string_meta(0xce, 0xfc), (0xfe, 0x3fc));
    assert_eq!(string_meta(0xfe, 40), (0xfe, 40));
    assert_eq!(string_meta(0xf7, 1), (col::ENUM, 1));
}

/// `(id INT PRIMARY KEY, y YEAR, a INT, b INT UNSIGNED, c TINYINT)`: YEAR has a
/// signedness bit, so `a` is signed and `b` unsigned.
#[test]
fn numeric_columns_after_a_year_keep_their_own_signedness() {
    let body = TableMapBuilder::new()
        .int(col::LONG, false, "id")
        .column(col::YEAR, &[], true, "y")
        .int(col::LONG, false, "a")
        .int(col::LONG, true, "b")
        .int(col::TINY, false, "c")
        .key(&[0])
        .build(1);
    let d = parse(&body).unwrap();
    let types: Vec<&ColumnType> = d.schema.columns.iter().map(|c| &c.ty).collect();
    let int = |bytes, unsigned| ColumnType::Integer { bytes, unsigned };
    assert_eq!(
        types,
        [
            &int(4, false),
            &ColumnType::Year,
            &int(4, false),
            &int(4, true),
            &int(1, false)
        ]
    );
}

/// `(id INT PRIMARY KEY, g POINT, c VARCHAR(20) latin1, d VARCHAR(20) utf8mb4)` on
/// MariaDB, which gives GEOMETRY a charset entry; MySQL does not.
#[test]
fn character_columns_after_a_geometry_keep_their_own_charset() {
    let (latin1, utf8mb4) = (8, 45);
    let mariadb = TableMapBuilder::new()
        .int(col::LONG, false, "id")
        .column(col::GEOMETRY, &[4], true, "g")
        .text(col::VARCHAR, &[20, 0], latin1, "c")
        .text(col::VARCHAR, &[80, 0], utf8mb4, "d")
        .key(&[0])
        .build(1);
    let d = parse(&mariadb).unwrap();
    let latin1_codec = Codec::Table(crate::source::charset::test_tables::latin1());
    let codecs: Vec<Option<Codec>> = d
        .columns
        .iter()
        .map(|c| match c {
            ColumnDecoder::Text { codec, .. } => Some(*codec),
            _ => None,
        })
        .collect();
    assert_eq!(codecs, [None, None, Some(latin1_codec), Some(Codec::Utf8)]);

    // The same table as MySQL writes it: no entry for the geometry.
    let mut mysql = TableMapBuilder::new()
        .int(col::LONG, false, "id")
        .column(col::GEOMETRY, &[4], true, "g")
        .text(col::VARCHAR, &[20, 0], latin1, "c")
        .text(col::VARCHAR, &[80, 0], utf8mb4, "d")
        .key(&[0]);
    mysql.charsets.remove(0);
    let body = mysql.build(1);
    let head = parse_head(&body, 6).unwrap();
    let flavor = Flavor::MySql {
        version: (8, 0, 36),
    };
    let d = parse_columns(head, &collations(), None, flavor).unwrap();
    assert!(matches!(
        d.columns[2],
        ColumnDecoder::Text { codec, .. } if codec == latin1_codec
    ));
}

#[test]
fn mysql_counts_year_where_the_bitmap_length_or_the_version_says_so() {
    use crate::source::binlog::table_map::subset::year_is_signed;
    let mysql = |version| Flavor::MySql { version };
    // Eight integers and a YEAR: 9 bits take two bytes, 8 bits one.
    let mut types = vec![col::LONG; 8];
    types.push(col::YEAR);
    assert!(year_is_signed(&types, Some(&[0, 0]), mysql((8, 0, 17))));
    assert!(!year_is_signed(&types, Some(&[0]), mysql((9, 1, 0))));
    // Ambiguous lengths follow the version.
    let types = [col::LONG, col::YEAR];
    assert!(!year_is_signed(&types, Some(&[0]), mysql((8, 0, 20))));
    assert!(year_is_signed(&types, Some(&[0]), mysql((8, 4, 0))));
    assert!(year_is_signed(&types, None, Flavor::MariaDb));
}

#[test]
fn unsupported_types_are_named_with_their_column() {
    let body = TableMapBuilder::new()
        .int(col::LONG, false, "id")
        .column(col::VARCHAR_COMPRESSED, &[10, 0], false, "f")
        .key(&[0])
        .build(1);
    let e = parse(&body).unwrap_err().to_string();
    assert_eq!(
        e,
        "column `f` has type VARCHAR COMPRESSED, which Sluice cannot decode"
    );
}

#[test]
fn tables_without_full_metadata_or_key_are_refused() {
    let body = TableMapBuilder::new().int(col::LONG, false, "id").build(1);
    assert!(matches!(parse(&body), Err(TableMapError::NoPrimaryKey)));
    let keyed = |k: &str| {
        parse_columns(
            parse_head(&body, 6).unwrap(),
            &collations(),
            Some(&[k.to_string()]),
            Flavor::MariaDb,
        )
    };
    assert_eq!(keyed("id").unwrap().schema.key, vec![0]);
    assert!(matches!(
        keyed("nope"),
        Err(TableMapError::KeyColumnMissing(_))
    ));
    let minimal = TableMapBuilder::new()
        .int(col::LONG, false, "id")
        .key(&[0])
        .minimal()
        .build(1);
    let e = parse(&minimal).unwrap_err().to_string();
    assert!(e.contains("binlog_row_metadata=FULL"), "{e}");
}
