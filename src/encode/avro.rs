//! Avro binary encoding of keys and envelopes, written straight from typed values into a
//! reused buffer: no intermediate value tree and no schema lookups per row. The layout is
//! fixed by [`super::schema::table_avro`]; tests decode the output with apache-avro against
//! that schema.

use num_bigint::BigInt;

use super::schema::is_optional;
use crate::model::{Change, Column, ColumnType, Row, TableId, TableSchema, Value};

/// A value that does not fit its column's Avro type.
#[derive(Debug, thiserror::Error)]
#[error("column `{column}`: {message}")]
pub struct ValueError {
    column: String,
    message: String,
}

/// Avro `long`/`int`: zig-zag, then base-128 varint.
pub fn write_long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Avro `bytes`/`string`: length, then the bytes.
pub fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
    write_long(out, b.len() as i64);
    out.extend_from_slice(b);
}

/// Writes the unscaled value of decimal text as Avro's `decimal` logical type: minimal
/// big-endian two's complement bytes. False if the text is not a decimal.
pub fn write_decimal(out: &mut Vec<u8>, text: &str) -> bool {
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    // Digits straight into an i128 (every DECIMAL up to 38 digits): this runs for every
    // decimal of every row, so no digit string and no byte vector on the way.
    let mut v: i128 = 0;
    let mut any = false;
    for b in digits.bytes() {
        match b {
            b'.' => {}
            b'0'..=b'9' => {
                any = true;
                match v
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(i128::from(b - b'0')))
                {
                    Some(next) => v = next,
                    None => return write_wide_decimal(out, negative, digits),
                }
            }
            _ => return false,
        }
    }
    if any {
        let be = (if negative { -v } else { v }).to_be_bytes();
        write_bytes(out, minimal_twos_complement(&be));
    }
    any
}

/// [`write_decimal`] for values beyond 128 bits (DECIMAL(65) has 216).
fn write_wide_decimal(out: &mut Vec<u8>, negative: bool, digits: &str) -> bool {
    if !digits.bytes().all(|b| b == b'.' || b.is_ascii_digit()) {
        return false;
    }
    let digits: Vec<u8> = digits.bytes().filter(|&b| b != b'.').collect();
    match BigInt::parse_bytes(&digits, 10) {
        Some(v) => {
            write_bytes(out, &(if negative { -v } else { v }).to_signed_bytes_be());
            true
        }
        None => false,
    }
}

fn minimal_twos_complement(be: &[u8]) -> &[u8] {
    let mut start = 0;
    // Drop leading bytes that only repeat the sign of the next one.
    while start + 1 < be.len() {
        let (b, next) = (be[start], be[start + 1]);
        if (b == 0x00 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    &be[start..]
}

/// A [`ValueError`] for `col`. Out of line: no valid row comes here, and keeping the
/// formatting out of [`write_value`] keeps the function every value goes through small.
#[cold]
#[inline(never)]
fn value_error(col: &Column, message: std::fmt::Arguments<'_>) -> ValueError {
    ValueError {
        column: col.name.clone(),
        message: message.to_string(),
    }
}

// Inlined into the loops over a row's columns: as a call, saving and restoring registers
// took about 15 instructions per value, a sixth of the function's.
#[inline(always)]
fn write_value(out: &mut Vec<u8>, col: &Column, v: &Value) -> Result<(), ValueError> {
    if is_optional(col) {
        if matches!(v, Value::Null) {
            write_long(out, 0);
            return Ok(());
        }
        write_long(out, 1);
    }
    match (&col.ty, v) {
        (
            ColumnType::Integer {
                bytes: 8,
                unsigned: true,
            },
            Value::UInt(u),
        ) => {
            write_bytes(out, minimal_twos_complement(&i128::from(*u).to_be_bytes()));
        }
        (ColumnType::Integer { .. }, Value::Int(i)) => write_long(out, *i),
        (ColumnType::Decimal { .. }, Value::Decimal(d)) => match d.unscaled() {
            Some(u) => write_bytes(out, minimal_twos_complement(&u.to_be_bytes())),
            None => {
                let text = d.to_string();
                if !write_decimal(out, &text) {
                    return Err(value_error(col, format_args!("{text:?} is not a decimal")));
                }
            }
        },
        (ColumnType::Float, Value::Float(f)) => out.extend_from_slice(&f.to_le_bytes()),
        (ColumnType::Double, Value::Double(d)) => out.extend_from_slice(&d.to_le_bytes()),
        (ColumnType::Bit { bits: 1 }, Value::Bits(b)) => out.push(u8::from(*b != 0)),
        (ColumnType::Bit { bits }, Value::Bits(b)) => {
            write_bytes(out, &b.to_be_bytes()[8 - usize::from(bits.div_ceil(8))..])
        }
        (
            ColumnType::Text | ColumnType::Enum(_) | ColumnType::Set(_) | ColumnType::Json,
            Value::String(s),
        ) => write_bytes(out, s.as_bytes()),
        (ColumnType::Bytes, Value::Bytes(b)) => write_bytes(out, b),
        (ColumnType::Geometry, Value::Geometry { srid, wkb }) => {
            let srid = i32::try_from(*srid).map_err(|_| {
                value_error(col, format_args!("SRID {srid} does not fit an Avro int"))
            })?;
            write_bytes(out, wkb);
            write_long(out, 1);
            write_long(out, i64::from(srid));
        }
        (ColumnType::Time { .. }, Value::Time(us)) => write_long(out, *us),
        (ColumnType::Date, Value::Date(d)) => write_long(out, i64::from(*d)),
        (ColumnType::Year, Value::Int(y)) => write_long(out, *y),
        (ColumnType::DateTime { .. }, Value::DateTime(us)) => write_long(out, *us),
        (ColumnType::Timestamp { .. }, Value::Timestamp(us)) => write_long(out, *us),
        (ColumnType::Vector { .. }, Value::Vector(v)) => {
            // One block of all items, then the empty block that ends an Avro array.
            if !v.is_empty() {
                write_long(out, v.len() as i64);
                for f in v {
                    out.extend_from_slice(&f.to_le_bytes());
                }
            }
            write_long(out, 0);
        }
        (_, Value::Null) => {
            return Err(value_error(col, format_args!("NULL in a NOT NULL column")));
        }
        (ty, v) => {
            return Err(value_error(
                col,
                format_args!("{v:?} does not fit {}", ty.sql_name()),
            ));
        }
    }
    Ok(())
}

/// The key record: primary-key columns in key order.
pub fn write_key(out: &mut Vec<u8>, table: &TableSchema, row: &Row) -> Result<(), ValueError> {
    for &i in &table.key {
        write_value(out, &table.columns[i], &row[i])?;
    }
    Ok(())
}

fn write_row(out: &mut Vec<u8>, table: &TableSchema, row: Option<&Row>) -> Result<(), ValueError> {
    let Some(row) = row else {
        write_long(out, 0);
        return Ok(());
    };
    write_long(out, 1);
    for (col, v) in table.columns.iter().zip(row) {
        write_value(out, col, v)?;
    }
    Ok(())
}

/// The parts of an envelope that are the same for every change of one table: written once
/// per table instead of field by field for every row.
#[derive(Debug)]
pub struct EnvelopeConstants {
    /// `source.version`, `source.connector`, `source.name`.
    head: Vec<u8>,
    /// `source.db` and `source.table` (a `["null", "string"]` union, always set).
    table: Vec<u8>,
}

impl EnvelopeConstants {
    /// The constant parts for `table`'s changes from the source named `source_name` (the
    /// topic prefix).
    pub fn new(source_name: &str, table: &TableId) -> Self {
        let mut head = Vec::new();
        write_bytes(&mut head, env!("CARGO_PKG_VERSION").as_bytes());
        write_bytes(&mut head, b"mysql");
        write_bytes(&mut head, source_name.as_bytes());
        let mut block = Vec::new();
        write_bytes(&mut block, table.db.as_bytes());
        write_long(&mut block, 1);
        write_bytes(&mut block, table.table.as_bytes());
        EnvelopeConstants { head, table: block }
    }
}

/// The envelope record of a change; `constants` are its table's.
pub fn write_envelope(
    out: &mut Vec<u8>,
    change: &Change,
    constants: &EnvelopeConstants,
    now_ms: i64,
) -> Result<(), ValueError> {
    let table = &change.table;
    write_row(out, table, change.before.as_ref())?;
    write_row(out, table, change.after.as_ref())?;
    let s = &change.source;
    out.extend_from_slice(&constants.head);
    write_long(out, s.ts_ms);
    write_bytes(out, if s.snapshot { b"true" } else { b"false" });
    out.extend_from_slice(&constants.table);
    write_long(out, i64::from(s.server_id));
    let origin = &*s.origin;
    write_optional(out, origin.gtid.as_deref(), |out, g| {
        write_bytes(out, g.as_bytes())
    });
    write_bytes(out, origin.file.as_bytes());
    write_long(out, s.pos as i64);
    write_long(out, i64::from(s.row));
    write_optional(out, origin.thread, |out, t| write_long(out, i64::from(t)));
    write_optional(out, s.query.as_deref(), |out, q| {
        write_bytes(out, q.as_bytes())
    });
    write_long(out, change.version.get() as i64);
    write_bytes(out, change.op.code().as_bytes());
    write_long(out, 1);
    write_long(out, now_ms);
    write_optional(out, s.transaction(), |out, (id, tx)| {
        write_bytes(out, id.as_bytes());
        write_long(out, tx.total_order as i64);
        write_long(out, tx.collection_order as i64);
    });
    Ok(())
}

/// A `["null", T]` union: branch 0 for none, else branch 1 and the value.
fn write_optional<T>(out: &mut Vec<u8>, v: Option<T>, write: impl FnOnce(&mut Vec<u8>, T)) {
    match v {
        None => write_long(out, 0),
        Some(v) => {
            write_long(out, 1);
            write(out, v);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use apache_avro::types::Value as Avro;

    use super::*;
    use crate::encode::schema::table_avro;
    use crate::model::{Decimal, Op, SourceInfo, TableId, Version, time};

    /// The envelope of `change` from a source named `sluice`.
    pub(crate) fn envelope(change: &Change, now_ms: i64) -> Vec<u8> {
        let constants = EnvelopeConstants::new("sluice", &change.table.id);
        let mut value = vec![];
        write_envelope(&mut value, change, &constants, now_ms).unwrap();
        value
    }

    pub(crate) fn sample_table() -> TableSchema {
        TableSchema {
            id: TableId::new("shop", "orders"),
            columns: vec![
                Column::new(
                    "id",
                    ColumnType::Integer {
                        bytes: 8,
                        unsigned: false,
                    },
                    false,
                ),
                Column::new(
                    "u64",
                    ColumnType::Integer {
                        bytes: 8,
                        unsigned: true,
                    },
                    false,
                ),
                Column::new(
                    "m",
                    ColumnType::Integer {
                        bytes: 3,
                        unsigned: false,
                    },
                    false,
                ),
                Column::new(
                    "price",
                    ColumnType::Decimal {
                        precision: 65,
                        scale: 30,
                    },
                    true,
                ),
                Column::new(
                    "small",
                    ColumnType::Decimal {
                        precision: 5,
                        scale: 2,
                    },
                    false,
                ),
                Column::new("name", ColumnType::Text, true),
                Column::new("d", ColumnType::Date, false),
                Column::new("at", ColumnType::DateTime { fsp: 6 }, true),
                Column::new("ts", ColumnType::Timestamp { fsp: 3 }, true),
            ],
            key: vec![0, 2],
        }
    }

    fn decode(schema: &serde_json::Value, bytes: &[u8]) -> Avro {
        let schema = apache_avro::Schema::parse(schema).unwrap();
        #[allow(deprecated)]
        let v = apache_avro::from_avro_datum(&schema, &mut &bytes[..], None).unwrap();
        v
    }

    #[test]
    fn zigzag_matches_the_spec() {
        let enc = |v| {
            let mut b = vec![];
            write_long(&mut b, v);
            b
        };
        assert_eq!(enc(0), [0]);
        assert_eq!(enc(-1), [1]);
        assert_eq!(enc(1), [2]);
        assert_eq!(enc(-64), [0x7f]);
        assert_eq!(enc(64), [0x80, 1]);
        assert_eq!(enc(i64::MIN).len(), 10);
    }

    /// The bytes [`write_decimal`] writes, without their length.
    fn decimal_bytes(text: &str) -> Option<Vec<u8>> {
        let mut out = vec![];
        if !write_decimal(&mut out, text) {
            return None;
        }
        // A zig-zag length under 64 is one byte, twice the length.
        assert_eq!(usize::from(out[0]), 2 * (out.len() - 1));
        Some(out[1..].to_vec())
    }

    #[test]
    fn random_decimals_are_their_big_integers_bytes() {
        let mut rng = fastrand::Rng::with_seed(20261130);
        for _ in 0..20_000 {
            let int = rng.usize(1..=40);
            let frac = rng.usize(0..=38);
            let digit = |rng: &mut fastrand::Rng| char::from(b'0' + rng.u8(0..10));
            let mut text = String::new();
            if rng.bool() {
                text.push('-');
            }
            (0..int).for_each(|_| text.push(digit(&mut rng)));
            if frac > 0 {
                text.push('.');
                (0..frac).for_each(|_| text.push(digit(&mut rng)));
            }
            let unscaled = BigInt::parse_bytes(text.replace('.', "").as_bytes(), 10).unwrap();
            assert_eq!(
                decimal_bytes(&text).unwrap(),
                unscaled.to_signed_bytes_be(),
                "{text}"
            );
        }
        for bad in ["", "-", ".", "1e5", "12a", "--1", "1_0"] {
            assert_eq!(decimal_bytes(bad), None, "{bad:?}");
        }
        let wide_with_separator = format!("{}_1", "9".repeat(40));
        assert_eq!(decimal_bytes(&wide_with_separator), None);
        assert_eq!(decimal_bytes("+5"), Some(vec![5]));
    }

    #[test]
    fn decimals_are_minimal_twos_complement() {
        assert_eq!(decimal_bytes("0.00").unwrap(), [0]);
        assert_eq!(decimal_bytes("1.27").unwrap(), [0x7f]);
        assert_eq!(decimal_bytes("1.28").unwrap(), [0x00, 0x80]);
        assert_eq!(decimal_bytes("-1.28").unwrap(), [0x80]);
        assert_eq!(decimal_bytes("-1.29").unwrap(), [0xff, 0x7f]);
        let big = format!("-{}.{}", "9".repeat(35), "9".repeat(30));
        let b = decimal_bytes(&big).unwrap();
        assert_eq!(
            BigInt::from_signed_bytes_be(&b).to_string(),
            big.replace('.', "")
        );
    }

    #[test]
    fn every_other_type_round_trips_through_apache_avro() {
        let labels: Arc<[String]> = ["a", "b"].map(String::from).into();
        let columns = vec![
            Column::new("id", ColumnType::Float, false),
            Column::new("d", ColumnType::Double, true),
            Column::new("flag", ColumnType::Bit { bits: 1 }, false),
            Column::new("bits", ColumnType::Bit { bits: 12 }, false),
            Column::new("raw", ColumnType::Bytes, false),
            Column::new("e", ColumnType::Enum(labels.clone()), false),
            Column::new("s", ColumnType::Set(labels), true),
            Column::new("j", ColumnType::Json, false),
            Column::new("g1", ColumnType::Geometry, false),
            Column::new("g2", ColumnType::Geometry, true),
            Column::new("t", ColumnType::Time { fsp: 6 }, false),
            Column::new("v", ColumnType::Vector { dims: 3 }, false),
            Column::new("v0", ColumnType::Vector { dims: 2 }, true),
        ];
        let table = Arc::new(TableSchema {
            id: TableId::new("db", "all"),
            columns,
            key: vec![8, 0],
        });
        let avro = table_avro("sluice", &table).unwrap();
        let row = vec![
            Value::Float(-0.1),
            Value::Double(f64::MIN_POSITIVE),
            Value::Bits(1),
            Value::Bits(0xabc),
            Value::Bytes(vec![0, 0xff]),
            Value::String("b".into()),
            Value::String("a,b".into()),
            Value::String("{}".into()),
            Value::Geometry {
                srid: 4326,
                wkb: vec![1, 2, 3],
            },
            Value::Null,
            Value::Time(-3_020_399_000_000),
            Value::Vector(vec![1.5, -0.1, 3.4e38]),
            Value::Vector(vec![]),
        ];
        let mut out = vec![];
        write_row(&mut out, &table, Some(&row)).unwrap();
        let Avro::Union(1, decoded) = decode(&avro.value["fields"][0]["type"], &out) else {
            panic!()
        };
        let Avro::Record(f) = *decoded else { panic!() };
        let values: Vec<Avro> = f.into_iter().map(|(_, v)| v).collect();
        let geometry = Avro::Record(vec![
            ("wkb".into(), Avro::Bytes(vec![1, 2, 3])),
            ("srid".into(), Avro::Union(1, Box::new(Avro::Int(4326)))),
        ]);
        assert_eq!(
            values,
            vec![
                Avro::Float(-0.1),
                Avro::Union(1, Box::new(Avro::Double(f64::MIN_POSITIVE))),
                Avro::Boolean(true),
                Avro::Bytes(vec![0x0a, 0xbc]),
                Avro::Bytes(vec![0, 0xff]),
                Avro::String("b".into()),
                Avro::Union(1, Box::new(Avro::String("a,b".into()))),
                Avro::String("{}".into()),
                geometry.clone(),
                Avro::Union(0, Box::new(Avro::Null)),
                Avro::Long(-3_020_399_000_000),
                Avro::Array(vec![
                    Avro::Float(1.5),
                    Avro::Float(-0.1),
                    Avro::Float(3.4e38)
                ]),
                Avro::Union(1, Box::new(Avro::Array(vec![]))),
            ]
        );
        let mut key = vec![];
        write_key(&mut key, &table, &row).unwrap();
        assert_eq!(
            decode(&avro.key, &key),
            Avro::Record(vec![
                ("g1".into(), geometry),
                ("id".into(), Avro::Float(-0.1))
            ])
        );
    }

    #[test]
    fn apache_avro_reads_what_the_writer_writes() {
        let table = Arc::new(sample_table());
        let avro = table_avro("sluice", &table).unwrap();
        let row = vec![
            Value::Int(-7),
            Value::UInt(u64::MAX),
            Value::Int(-8_388_608),
            Value::Decimal(
                Decimal::parse(&format!("-{}.{}", "1".repeat(35), "2".repeat(30)), 30).unwrap(),
            ),
            Value::Decimal(Decimal::from_unscaled(-50, 2)),
            Value::String("héllo 🌊".into()),
            Value::Null,
            Value::DateTime(time::micros_from_civil(2024, 2, 29, 23, 59, 58, 123_456)),
            Value::Timestamp(1_704_067_200_500_000),
        ];
        let change = Change {
            table: table.clone(),
            op: Op::Update,
            before: Some(row.clone()),
            after: Some(row.clone()),
            version: Version::at(3, 1234),
            source: SourceInfo {
                origin: Arc::new(crate::model::Origin {
                    file: Arc::from("binlog.000003"),
                    gtid: Some(Arc::from("0-1-9")),
                    thread: Some(77),
                    commit_us: None,
                    transaction: Some(Arc::from("0-1-9")),
                }),
                pos: 1200,
                row: 2,
                server_id: 1,
                ts_ms: 1_700_000_000_000,
                snapshot: false,
                query: Some(Arc::from("UPDATE t SET x = 1")),
                transaction: Some(crate::model::TxPosition {
                    total_order: 3,
                    collection_order: 2,
                }),
            },
        };
        let value = envelope(&change, 42);
        let Avro::Record(fields) = decode(&avro.value, &value) else {
            panic!()
        };
        let get = |n: &str| fields.iter().find(|(k, _)| k == n).unwrap().1.clone();
        assert_eq!(get("op"), Avro::String("u".into()));
        assert_eq!(get("ts_ms"), Avro::Union(1, Box::new(Avro::Long(42))));
        let Avro::Record(source) = get("source") else {
            panic!()
        };
        assert_eq!(
            source.last().unwrap(),
            &("change_version".to_string(), Avro::Long((3 << 32) | 1234))
        );
        let field = |fields: &[(String, Avro)], n: &str| {
            fields.iter().find(|(k, _)| k == n).unwrap().1.clone()
        };
        assert_eq!(
            field(&source, "thread"),
            Avro::Union(1, Box::new(Avro::Long(77)))
        );
        assert_eq!(
            field(&source, "query"),
            Avro::Union(1, Box::new(Avro::String("UPDATE t SET x = 1".into())))
        );
        let Avro::Union(1, tx) = get("transaction") else {
            panic!()
        };
        assert_eq!(
            *tx,
            Avro::Record(vec![
                ("id".into(), Avro::String("0-1-9".into())),
                ("total_order".into(), Avro::Long(3)),
                ("data_collection_order".into(), Avro::Long(2)),
            ])
        );
        let Avro::Union(1, after) = get("after") else {
            panic!()
        };
        let Avro::Record(after) = *after else {
            panic!()
        };
        assert_eq!(after[0].1, Avro::Long(-7));
        assert_eq!(after[2].1, Avro::Int(-8_388_608));
        assert_eq!(
            after[5].1,
            Avro::Union(1, Box::new(Avro::String("héllo 🌊".into())))
        );
        assert_eq!(after[6].1, Avro::Union(0, Box::new(Avro::Null)));
        let Avro::Decimal(u) = &after[1].1 else {
            panic!("{:?}", after[1].1)
        };
        assert_eq!(BigInt::from(u.clone()).to_string(), u64::MAX.to_string());

        let mut key = vec![];
        write_key(&mut key, &table, &row).unwrap();
        assert_eq!(
            decode(&avro.key, &key),
            Avro::Record(vec![
                ("id".into(), Avro::Long(-7)),
                ("m".into(), Avro::Int(-8_388_608))
            ])
        );
    }

    #[test]
    fn mismatched_values_are_errors() {
        let table = sample_table();
        let mut row = vec![Value::Null; 9];
        let e = write_key(&mut vec![], &table, &row)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "column `id`: NULL in a NOT NULL column");
        row[0] = Value::String("x".into());
        assert!(write_key(&mut vec![], &table, &row).is_err());
    }
}
