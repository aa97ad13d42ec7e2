//! Differential test of the binlog decoder against MariaDB's own `mariadb-binlog -v`: the type
//! matrix and a random workload of more than 20,000 row changes across tables of mixed types
//! are written to a fresh binlog file, which both decoders then read; every value of every row
//! image must agree.
//!
//! The reference prints some types lossily or differently, so each comparison states how the
//! reference's text is read: FLOAT with 6 significant digits (`%g`), ENUM as the label's index,
//! SET as a bitmap, TIMESTAMP as epoch seconds, text as the column's raw bytes, YEAR 0 as
//! `1900` (a reference bug: `SELECT` says `0000`, as Sluice does).

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::families::FAMILIES;
use common::private::{PrivateServer, ROW_CDC};
use common::workload::{Workload, create_tables};
use common::*;
use mysql_async::Conn;
use mysql_async::prelude::*;
use sluice::model::{Change, ColumnType, Op, Position, TableId, Value, time};
use sluice::source::binlog::{BinlogReader, Decoded, file};
use sluice::source::charset::{Charset, Collations};

const MIX_DDL: &str = "CREATE TABLE mix (id INT PRIMARY KEY, f FLOAT, d DOUBLE, b BIT(13), \
    t TIME(4), e ENUM('a','b','c'), s SET('x','y','z'), vb VARBINARY(40), \
    l VARCHAR(30) CHARACTER SET latin1, g POINT, dt DATETIME(3), n DECIMAL(9,3), \
    u BIGINT UNSIGNED, c CHAR(4), y YEAR, ts TIMESTAMP(2) NULL) DEFAULT CHARSET utf8mb4";

const LATIN1: &[&str] = &["café", "ÀÿŒ‰€", "plain", "", "a'b", "tab\there", "Ünïcödé"];

/// A random SQL literal for each column of `mix` after `id`.
fn mix_values(rng: &mut fastrand::Rng) -> Vec<String> {
    let maybe = |rng: &mut fastrand::Rng, v: String| {
        if rng.u8(0..10) == 0 {
            "NULL".to_string()
        } else {
            v
        }
    };
    let double = loop {
        let d = f64::from_bits(rng.u64(..));
        if d.is_finite() {
            break d;
        }
    };
    let micros = rng.i64(-3_020_399_000_000..=3_020_399_000_000) / 100 * 100;
    let (sign, m) = (if micros < 0 { "-" } else { "" }, micros.unsigned_abs());
    let secs = m / 1_000_000;
    let time = format!(
        "'{sign}{}:{:02}:{:02}.{:04}'",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        m % 1_000_000 / 100
    );
    let set: Vec<&str> = ["x", "y", "z"].into_iter().filter(|_| rng.bool()).collect();
    // No backslash: the reference prints it raw, which a following `xNN` would make ambiguous.
    let bytes: Vec<u8> = (0..rng.usize(0..40))
        .map(|_| rng.u8(..))
        .map(|b| if b == b'\\' { 0 } else { b })
        .collect();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let values = [
        format!("{:e}", rng.f32() * 2e6 - 1e6),
        format!("{double:e}"),
        rng.u16(0..8192).to_string(),
        time,
        format!("'{}'", ["a", "b", "c"][rng.usize(0..3)]),
        format!("'{}'", set.join(",")),
        format!("X'{hex}'"),
        format!(
            "'{}'",
            LATIN1[rng.usize(0..LATIN1.len())].replace('\'', "''")
        ),
        // Quarter units: the coordinates' bytes hold no backslash (see `unquote`).
        format!(
            "POINT({}, {})",
            f64::from(rng.i32(-720..720)) / 4.0,
            rng.i16(..)
        ),
        format!(
            "'{}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}'",
            rng.u32(1000..10000),
            rng.u32(1..13),
            rng.u32(1..29),
            rng.u32(0..24),
            rng.u32(0..60),
            rng.u32(0..60),
            rng.u32(0..1000)
        ),
        format!("{}.{:03}", rng.i32(-999_999..1_000_000), rng.u32(0..1000)),
        rng.u64(..).to_string(),
        format!("'{}'", ["", "ab", "ab ", "wxyz", " a"][rng.usize(0..5)]),
        [0, 1901, 2155, 1999][rng.usize(0..4)].to_string(),
        format!(
            "FROM_UNIXTIME({}.{:02})",
            rng.u32(1..2_000_000_000),
            rng.u32(0..100)
        ),
    ];
    values.into_iter().map(|v| maybe(rng, v)).collect()
}

const MIX_COLUMNS: [&str; 15] = [
    "f", "d", "b", "t", "e", "s", "vb", "l", "g", "dt", "n", "u", "c", "y", "ts",
];

/// One random transaction on `mix`: inserts, updates (some of the key), deletes. Returns the
/// rows changed.
async fn mix_transaction(conn: &mut Conn, rng: &mut fastrand::Rng, next_id: &mut i32) -> usize {
    let mut changed = 0;
    let run = async |conn: &mut Conn, sql: String| {
        conn.query_drop(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        conn.affected_rows() as usize
    };
    changed += run(conn, "BEGIN".into()).await;
    let rows: Vec<String> = (0..20)
        .map(|_| {
            *next_id += 1;
            format!("({next_id}, {})", mix_values(rng).join(", "))
        })
        .collect();
    changed += run(conn, format!("INSERT INTO mix VALUES {}", rows.join(", "))).await;
    for _ in 0..6 {
        let index = rng.usize(0..MIX_COLUMNS.len());
        let column = MIX_COLUMNS[index];
        let literal = &mix_values(rng)[index];
        let low = rng.i32(1..=*next_id);
        changed += run(
            conn,
            format!(
                "UPDATE mix SET {column} = {literal} WHERE id BETWEEN {low} AND {}",
                low + 3
            ),
        )
        .await;
    }
    let moved = rng.i32(1..=*next_id);
    *next_id += 1;
    changed += run(
        conn,
        format!("UPDATE mix SET id = {next_id} WHERE id = {moved}"),
    )
    .await;
    let low = rng.i32(1..=*next_id);
    changed += run(
        conn,
        format!("DELETE FROM mix WHERE id BETWEEN {low} AND {}", low + 4),
    )
    .await;
    run(conn, "COMMIT".into()).await;
    changed
}

/// One row event as `mariadb-binlog -v` prints it.
#[derive(Debug)]
struct Reference {
    table: String,
    op: &'static str,
    before: Vec<Vec<u8>>,
    after: Vec<Vec<u8>>,
}

/// Parses the `###` lines of `mariadb-binlog -v` for tables of `db`.
fn parse_reference(out: &[u8], db: &str) -> Vec<Reference> {
    let mut rows: Vec<Reference> = vec![];
    let mut in_db = false;
    let mut section_after = false;
    let prefix = format!("`{db}`.`");
    for line in out.split(|&b| b == b'\n') {
        let Some(line) = line.strip_prefix(b"### ") else {
            continue;
        };
        let text = String::from_utf8_lossy(line);
        let head = [
            ("INSERT INTO ", "INSERT"),
            ("UPDATE ", "UPDATE"),
            ("DELETE FROM ", "DELETE"),
        ]
        .into_iter()
        .find_map(|(p, op)| text.strip_prefix(p).map(|rest| (op, rest.to_string())));
        if let Some((op, target)) = head {
            in_db = target.starts_with(&prefix);
            if in_db {
                let table = target[prefix.len()..].trim_end_matches('`').to_string();
                rows.push(Reference {
                    table,
                    op,
                    before: vec![],
                    after: vec![],
                });
                section_after = op == "INSERT";
            }
            continue;
        }
        if !in_db {
            continue;
        }
        match line {
            b"WHERE" => section_after = false,
            b"SET" => section_after = true,
            _ => {
                let value = line
                    .strip_prefix(b"  @")
                    .and_then(|l| {
                        l.iter()
                            .position(|&b| b == b'=')
                            .map(|i| l[i + 1..].to_vec())
                    })
                    .unwrap_or_else(|| panic!("unexpected line {text:?}"));
                let row = rows.last_mut().unwrap();
                if section_after {
                    row.after.push(value);
                } else {
                    row.before.push(value);
                }
            }
        }
    }
    rows
}

/// A quoted value's bytes: `\xNN` escapes control bytes, everything else is raw (so a raw
/// backslash followed by `x` and two hex digits is ambiguous: the generated data avoids it).
fn unquote(v: &[u8]) -> Option<Vec<u8>> {
    let inner = v.strip_prefix(b"'")?.strip_suffix(b"'")?;
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        let hex = (inner[i] == b'\\' && inner.get(i + 1) == Some(&b'x'))
            .then(|| inner.get(i + 2..i + 4))
            .flatten()
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        if let Some(byte) = hex {
            out.push(byte);
            i += 4;
        } else {
            out.push(inner[i]);
            i += 1;
        }
    }
    Some(out)
}

fn text(v: &[u8]) -> String {
    String::from_utf8_lossy(v)
        .trim()
        .trim_matches('\'')
        .to_string()
}

/// Microseconds of `[-]H:MM:SS[.frac]`.
fn time_micros(s: &str) -> i64 {
    let (negative, s) = s.strip_prefix('-').map_or((false, s), |r| (true, r));
    let (hms, frac) = s.split_once('.').unwrap_or((s, ""));
    let parts: Vec<i64> = hms.split(':').map(|p| p.parse().unwrap()).collect();
    let micros = (parts[0] * 3600 + parts[1] * 60 + parts[2]) * 1_000_000 + frac_micros(frac);
    if negative { -micros } else { micros }
}

fn frac_micros(frac: &str) -> i64 {
    if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}").parse().unwrap()
    }
}

/// Whether Sluice's `ours` and the reference's text `theirs` are the same value.
fn same(
    ours: &Value,
    ty: &ColumnType,
    encoding: Option<&'static encoding_rs::Encoding>,
    theirs: &[u8],
) -> bool {
    let t = text(theirs);
    if t == "NULL" {
        return *ours == Value::Null;
    }
    match (ty, ours) {
        // Zero dates: null in Sluice, printed by the reference.
        (
            ColumnType::Date | ColumnType::DateTime { .. } | ColumnType::Timestamp { .. },
            Value::Null,
        ) => t.starts_with("0000") || t == "0",
        (ColumnType::Integer { unsigned, .. }, _) => {
            let (signed, paren) = t.split_once(" (").map_or((t.as_str(), None), |(a, b)| {
                (a, Some(b.trim_end_matches(')')))
            });
            let expected: i128 = if *unsigned {
                paren.unwrap_or(signed)
            } else {
                signed
            }
            .parse()
            .unwrap();
            match ours {
                Value::Int(i) => i128::from(*i) == expected,
                Value::UInt(u) => i128::from(*u) == expected,
                _ => false,
            }
        }
        (ColumnType::Decimal { .. }, Value::Decimal(d)) => *d == t,
        (ColumnType::Float, Value::Float(f)) => {
            format!("{:.5e}", f64::from(*f)).parse::<f64>().unwrap() == t.parse::<f64>().unwrap()
        }
        (ColumnType::Double, Value::Double(d)) => *d == t.parse::<f64>().unwrap(),
        (ColumnType::Bit { .. }, Value::Bits(b)) => {
            u64::from_str_radix(t.trim_start_matches("b'"), 2).unwrap() == *b
        }
        (ColumnType::Enum(labels), Value::String(s)) => {
            let i: usize = t.parse().unwrap();
            if i == 0 {
                s.is_empty()
            } else {
                labels[i - 1] == *s
            }
        }
        (ColumnType::Set(labels), Value::String(s)) => {
            // The stored bytes, little-endian, each printed as 8 bits.
            let digits = t.trim_start_matches("b'");
            let bits = (0..digits.len() / 8).fold(0u64, |acc, i| {
                acc | u64::from_str_radix(&digits[8 * i..8 * i + 8], 2).unwrap() << (8 * i)
            });
            let joined: Vec<&str> = labels
                .iter()
                .enumerate()
                .filter(|(i, _)| bits & (1 << i) != 0)
                .map(|(_, l)| l.as_str())
                .collect();
            joined.join(",") == *s
        }
        (ColumnType::Text | ColumnType::Json, Value::String(s)) => {
            let raw = unquote(theirs).unwrap();
            let decoded = match encoding {
                Some(e) => e.decode_without_bom_handling(&raw).0.into_owned(),
                None => String::from_utf8(raw).unwrap(),
            };
            decoded.trim_end_matches(' ') == s.trim_end_matches(' ')
        }
        (ColumnType::Bytes, Value::Bytes(b)) => {
            let raw = unquote(theirs).unwrap();
            // BINARY(n): the binlog drops the NUL padding SELECT returns.
            b.starts_with(&raw) && b[raw.len()..].iter().all(|&x| x == 0)
        }
        (ColumnType::Geometry, Value::Geometry { srid, wkb }) => {
            let mut expected = srid.to_le_bytes().to_vec();
            expected.extend_from_slice(wkb);
            unquote(theirs).unwrap() == expected
        }
        (ColumnType::Year, Value::Int(y)) => {
            let theirs: i64 = t.parse().unwrap();
            theirs == *y || (*y == 0 && theirs == 1900)
        }
        (ColumnType::Date, Value::Date(days)) => {
            let p: Vec<u32> = t.split(':').map(|x| x.parse().unwrap()).collect();
            time::days_from_civil(p[0], p[1], p[2]) == *days
        }
        (ColumnType::Time { .. }, Value::Time(us)) => time_micros(&t) == *us,
        (ColumnType::DateTime { .. }, Value::DateTime(us)) => {
            let (date, clock) = t.split_once(' ').unwrap();
            let d: Vec<u32> = date.split('-').map(|x| x.parse().unwrap()).collect();
            let days = i64::from(time::days_from_civil(d[0], d[1], d[2]));
            days * 86_400_000_000 + time_micros(clock) == *us
        }
        (ColumnType::Timestamp { .. }, Value::Timestamp(us)) => {
            let (secs, frac) = t.split_once('.').unwrap_or((&t, ""));
            secs.parse::<i64>().unwrap() * 1_000_000 + frac_micros(frac) == *us
        }
        _ => false,
    }
}

/// Compares one reference image with one of Sluice's, naming the first difference.
fn compare_image(
    change: &Change,
    ours: &[Value],
    theirs: &[Vec<u8>],
    charsets: &HashMap<(String, String), Option<&'static encoding_rs::Encoding>>,
    what: &str,
) {
    let table = &change.table;
    assert_eq!(
        ours.len(),
        theirs.len(),
        "{what}: column count of {}",
        table.id
    );
    for ((column, v), t) in table.columns.iter().zip(ours).zip(theirs) {
        let encoding = charsets
            .get(&(table.id.table.clone(), column.name.clone()))
            .copied()
            .flatten();
        assert!(
            same(v, &column.ty, encoding, t),
            "{what}: {}.{} ({}): Sluice decoded {v:?}, mariadb-binlog printed {:?} (at {}:{} row {})",
            table.id,
            column.name,
            column.ty.sql_name(),
            String::from_utf8_lossy(t),
            change.source.file,
            change.source.pos,
            change.source.row,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decoder_agrees_with_mariadb_binlog_on_every_value() {
    let (mut conn, setup) = fresh("it_diff", &[]).await;
    agrees_with_reference(&mut conn, &setup.db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_binlog_events_decode_the_same() {
    let mut args = ROW_CDC.to_vec();
    args.extend(["--log-bin-compress=ON", "--log-bin-compress-min-len=10"]);
    let server = tokio::task::spawn_blocking(move || PrivateServer::start(&args))
        .await
        .unwrap();
    let opts = mysql_async::OptsBuilder::default()
        .socket(Some(server.socket.to_str().unwrap()))
        .user(Some("root"))
        .init(vec!["SET NAMES utf8mb4"]);
    let mut conn = Conn::new(opts).await.unwrap();
    exec(&mut conn, &["CREATE DATABASE diff", "USE diff"]).await;
    let (compressed, rows_events) = agrees_with_reference(&mut conn, "diff").await;
    assert!(
        compressed * 2 > rows_events,
        "only {compressed} of {rows_events} rows events were compressed"
    );
}

/// Runs the type matrix and a random workload in `db` (the connection's current database) on
/// a fresh binlog file, decodes the file with Sluice and with `mariadb-binlog`, and compares
/// every value. Returns how many rows events were compressed, of how many.
async fn agrees_with_reference(conn: &mut Conn, db: &str) -> (usize, usize) {
    let db = db.to_string();
    exec(conn, &["SET SESSION sql_mode = ''", "FLUSH BINARY LOGS"]).await;
    let (file, _): (String, u64) = conn
        .query_first("SHOW MASTER STATUS")
        .await
        .unwrap()
        .map(|r: mysql_async::Row| (r.get(0).unwrap(), r.get(1).unwrap()))
        .unwrap();

    // The type matrix, then random work on three tables of mixed types.
    for (table, definition, rows, changes) in FAMILIES {
        exec(
            conn,
            &[
                &format!("CREATE TABLE {table} ({definition}) DEFAULT CHARSET utf8mb4"),
                &format!("INSERT INTO {table} VALUES {rows}"),
            ],
        )
        .await;
        exec(conn, changes).await;
    }
    create_tables(conn, &db).await;
    exec(conn, &[MIX_DDL]).await;
    let mut rng = fastrand::Rng::with_seed(7);
    let mut workload = Workload::new(7);
    let (mut next_id, mut changed) = (0, 0);
    while changed < 21_000 {
        changed += mix_transaction(conn, &mut rng, &mut next_id).await;
        changed += workload.transaction(conn, 10).await;
    }
    let (end_file, end): (String, u64) = conn
        .query_first("SHOW MASTER STATUS")
        .await
        .unwrap()
        .map(|r: mysql_async::Row| (r.get(0).unwrap(), r.get(1).unwrap()))
        .unwrap();
    assert_eq!(file, end_file, "the binlog rotated during the test");
    let datadir: String = conn.query_first("SELECT @@datadir").await.unwrap().unwrap();
    let path = Path::new(&datadir).join(&file);

    // Sluice's decoder over the file's bytes up to the end of this test's events.
    let collations: Vec<(u64, String)> = conn
        .query(
            "SELECT ID, CHARACTER_SET_NAME FROM information_schema.COLLATIONS WHERE ID IS NOT NULL",
        )
        .await
        .unwrap();
    let charset_rows: Vec<(String, String, Option<String>)> = conn
        .exec(
            "SELECT TABLE_NAME, COLUMN_NAME, CHARACTER_SET_NAME FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ?",
            (&db,),
        )
        .await
        .unwrap();
    let charsets: HashMap<_, _> = charset_rows
        .into_iter()
        .map(|(t, c, cs)| ((t, c), cs.and_then(|cs| Charset::from_name(&cs).encoding())))
        .collect();
    let tables: Vec<TableId> = charsets
        .keys()
        .map(|(t, _)| TableId::new(db.clone(), t.clone()))
        .collect();
    let bytes = std::fs::read(&path).unwrap();
    let start = Position::new(file.clone(), 4);
    let mut reader = BinlogReader::new(&start, tables, Collations::new(collations), true).unwrap();
    let mut ours: Vec<Change> = vec![];
    let (mut compressed, mut rows_events) = (0, 0);
    for event in file::events(&bytes[..end as usize], true).unwrap() {
        let (header, body) = event.unwrap();
        match header.event_type {
            23..=25 | 30..=32 => rows_events += 1,
            166..=171 => (compressed, rows_events) = (compressed + 1, rows_events + 1),
            _ => {}
        }
        if let Decoded::Changes(changes) = reader.on_event(&header, body).unwrap() {
            ours.extend(changes);
        }
    }

    // The reference over the same file and range.
    let out = std::process::Command::new("mariadb-binlog")
        .args(["--no-defaults", "-v", "--base64-output=DECODE-ROWS"])
        .arg(format!("--stop-position={end}"))
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference = parse_reference(&out.stdout, &db);

    let mut it = ours.iter();
    let mut images = 0;
    for r in &reference {
        let c = it
            .next()
            .unwrap_or_else(|| panic!("Sluice has no change for {r:?}"));
        assert_eq!(c.table.id.table, r.table);
        match r.op {
            "INSERT" => {
                assert_eq!(c.op, Op::Create);
                compare_image(c, c.after.as_ref().unwrap(), &r.after, &charsets, "insert");
            }
            "DELETE" => {
                assert_eq!(c.op, Op::Delete);
                compare_image(
                    c,
                    c.before.as_ref().unwrap(),
                    &r.before,
                    &charsets,
                    "delete",
                );
            }
            _ => {
                compare_image(
                    c,
                    c.before.as_ref().unwrap(),
                    &r.before,
                    &charsets,
                    "update before",
                );
                let after = if c.op == Op::Delete {
                    // A new primary key: Sluice deletes the old document and creates the new.
                    let created = it.next().unwrap();
                    assert_eq!(created.op, Op::Create);
                    created
                } else {
                    assert_eq!(c.op, Op::Update);
                    c
                };
                compare_image(
                    after,
                    after.after.as_ref().unwrap(),
                    &r.after,
                    &charsets,
                    "update after",
                );
            }
        }
        images += 1;
    }
    assert!(
        it.next().is_none(),
        "Sluice decoded more changes than the reference"
    );
    assert!(images >= 20_000, "only {images} row changes compared");
    (compressed, rows_events)
}
