//! `mariadb-binlog -v`, MariaDB's own decoder, as the reference Sluice's decoder is compared
//! with: its output parsed into row images, and the rule for reading each of its printed
//! values.
//!
//! The reference prints some types lossily or differently, so each comparison states how its
//! text is read: FLOAT with 6 significant digits (`%g`), ENUM as the label's index, SET as a
//! bitmap, TIMESTAMP as epoch seconds, text as the column's raw bytes, YEAR 0 as `1900` (a
//! reference bug: `SELECT` says `0000`, as Sluice does), integers as signed with the unsigned
//! reading in parentheses.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use sluice::model::{Change, Column, ColumnType, Op, Value, time};
use sluice::source::charset::Codec;

/// One row event as `mariadb-binlog -v` prints it.
#[derive(Debug, Clone)]
pub struct Reference {
    /// Table name.
    pub table: String,
    /// INSERT, UPDATE or DELETE.
    pub op: &'static str,
    /// The before image's printed values (UPDATE, DELETE).
    pub before: Vec<Vec<u8>>,
    /// The after image's printed values (INSERT, UPDATE).
    pub after: Vec<Vec<u8>>,
    /// The GTID of the transaction the row is in, from its group's GTID event.
    pub gtid: Option<String>,
}

/// Runs `mariadb-binlog -v` over `file` up to `end` and parses the row images of tables of
/// `db`. Rows of XA transactions that were prepared and then rolled back are left out: they
/// are in the binlog, but never happened.
pub fn reference(file: &Path, end: u64, db: &str) -> Vec<Reference> {
    let out = std::process::Command::new("mariadb-binlog")
        .args(["--no-defaults", "-v", "--base64-output=DECODE-ROWS"])
        .arg(format!("--stop-position={end}"))
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse(&out.stdout, db)
}

/// Parses the `###` lines of `mariadb-binlog -v` for tables of `db`.
fn parse(out: &[u8], db: &str) -> Vec<Reference> {
    let mut rows: Vec<(Reference, Option<String>)> = vec![];
    let mut in_db = false;
    let mut section_after = false;
    let (mut xa, mut rolled_back): (Option<String>, HashSet<String>) = (None, HashSet::new());
    let mut gtid = None;
    let prefix = format!("`{db}`.`");
    for line in out.split(|&b| b == b'\n') {
        let Some(line) = line.strip_prefix(b"### ") else {
            // XA START opens a prepared transaction's rows, XA PREPARE closes them; XA
            // ROLLBACK later undoes them.
            let text = String::from_utf8_lossy(line);
            let xid = |rest: &str| rest.split("/*").next().unwrap_or("").trim().to_string();
            if text.starts_with('#')
                && let Some((_, rest)) = text.split_once("\tGTID ")
            {
                gtid = rest.split_whitespace().next().map(str::to_string);
            } else if let Some(rest) = text.strip_prefix("XA START ") {
                xa = Some(xid(rest));
            } else if let Some(rest) = text.strip_prefix("XA ROLLBACK ") {
                rolled_back.insert(xid(rest));
            } else if ["XA PREPARE ", "XA COMMIT ", "COMMIT"]
                .iter()
                .any(|p| text.starts_with(p))
            {
                xa = None;
            }
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
                let row = Reference {
                    table,
                    op,
                    before: vec![],
                    after: vec![],
                    gtid: gtid.clone(),
                };
                rows.push((row, xa.clone()));
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
                let row = &mut rows.last_mut().unwrap().0;
                if section_after {
                    row.after.push(value);
                } else {
                    row.before.push(value);
                }
            }
        }
    }
    rows.into_iter()
        .filter(|(_, xa)| xa.as_ref().is_none_or(|x| !rolled_back.contains(x)))
        .map(|(r, _)| r)
        .collect()
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

/// Bytes as the reference prints them: quoted, control bytes as `\xNN`, the rest raw.
fn printed(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![b'\''];
    for &b in bytes {
        if b < 0x20 {
            out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
    out
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
fn same(ours: &Value, ty: &ColumnType, codec: Codec, theirs: &[u8]) -> bool {
    let t = text(theirs);
    if t == "NULL" {
        return *ours == Value::Null;
    }
    match (ty, ours) {
        // Zero and impossible dates (a zero month or day): null in Sluice, printed by the
        // reference as `YYYY:MM:DD`, `YYYY-MM-DD hh:mm:ss` or epoch seconds.
        (
            ColumnType::Date | ColumnType::DateTime { .. } | ColumnType::Timestamp { .. },
            Value::Null,
        ) => {
            let date: Vec<&str> = t.split([' ', '-', ':']).take(3).collect();
            t.parse::<f64>() == Ok(0.0) || (date.len() == 3 && (date[1] == "00" || date[2] == "00"))
        }
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
        (ColumnType::Decimal { .. }, Value::Decimal(d)) => d.to_string() == t,
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
            let Some(decoded) = codec.decode(&raw) else {
                return false;
            };
            decoded.trim_end_matches(' ') == s.trim_end_matches(' ')
        }
        // Raw bytes are compared as the reference would print them, which is unambiguous.
        (ColumnType::Bytes, Value::Bytes(b)) => {
            // BINARY(n): the binlog drops the NUL padding SELECT returns.
            (0..=b.len())
                .rev()
                .take_while(|&n| b[n..].iter().all(|&x| x == 0))
                .any(|n| printed(&b[..n]) == theirs)
        }
        (ColumnType::Geometry, Value::Geometry { srid, wkb }) => {
            let mut expected = srid.to_le_bytes().to_vec();
            expected.extend_from_slice(wkb);
            printed(&expected) == theirs
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

/// What a column must decode as: its type and how its text reads.
pub type Expect<'a> = &'a dyn Fn(&Change, &Column) -> (ColumnType, Codec);

/// Compares one reference image with one of Sluice's; `Err` names the first difference.
fn compare_image(
    change: &Change,
    ours: &[Value],
    theirs: &[Vec<u8>],
    expect: Expect<'_>,
    what: &str,
) -> Result<(), String> {
    let table = &change.table;
    if ours.len() != theirs.len() {
        return Err(format!(
            "{what}: {} has {} columns in Sluice's image, {} in the reference's",
            table.id,
            ours.len(),
            theirs.len()
        ));
    }
    for ((column, v), t) in table.columns.iter().zip(ours).zip(theirs) {
        let (ty, codec) = expect(change, column);
        if !same(v, &ty, codec, t) {
            return Err(format!(
                "{what}: {}.{} ({}): Sluice decoded {v:?}, mariadb-binlog printed {:?} (at {}:{} row {})",
                table.id,
                column.name,
                ty.sql_name(),
                String::from_utf8_lossy(t),
                change.source.origin.file,
                change.source.pos,
                change.source.row,
            ));
        }
    }
    Ok(())
}

/// The transaction blocks expected of consecutive changes: each names its transaction by the
/// GTID the reference printed for the row's group, and counts from 1, overall and per table.
#[derive(Default)]
struct Places {
    tx: Option<String>,
    total: u64,
    per_table: HashMap<String, u64>,
}

impl Places {
    fn check(&mut self, change: &Change, r: &Reference) -> Result<(), String> {
        let origin = &change.source.origin;
        let place = change.source.transaction();
        if origin.gtid.as_deref() != r.gtid.as_deref()
            || place.map(|(id, _)| id) != r.gtid.as_deref()
        {
            return Err(format!(
                "{} change at {}:{}: GTID {:?} and transaction {place:?}, the reference's GTID {:?}",
                change.table.id, origin.file, change.source.pos, origin.gtid, r.gtid
            ));
        }
        let Some((id, place)) = place else {
            return Ok(());
        };
        if self.tx.as_deref() != Some(id) {
            *self = Places {
                tx: Some(id.to_string()),
                ..Places::default()
            };
        }
        self.total += 1;
        let per_table = self.per_table.entry(r.table.clone()).or_default();
        *per_table += 1;
        if (place.total_order, place.collection_order) != (self.total, *per_table) {
            return Err(format!(
                "{} change at {}:{} in {id}: total_order {} and collection_order {}, expected {} \
                 and {}",
                change.table.id,
                origin.file,
                change.source.pos,
                place.total_order,
                place.collection_order,
                self.total,
                per_table
            ));
        }
        Ok(())
    }
}

/// Compares Sluice's changes with the reference's row events, in order; returns how many row
/// images were compared, or the first difference. A key-changing update is one reference
/// event and two changes (delete, create).
pub fn compare(
    ours: &[Change],
    reference: &[Reference],
    expect: Expect<'_>,
) -> Result<usize, String> {
    let mut it = ours.iter();
    let mut images = 0;
    let mut places = Places::default();
    for r in reference {
        let c = it
            .next()
            .ok_or_else(|| format!("Sluice has no change for {r:?}"))?;
        places.check(c, r)?;
        if c.table.id.table != r.table {
            return Err(format!(
                "Sluice's next change is of {}, the reference's of {}",
                c.table.id, r.table
            ));
        }
        let image = |row: &Option<Vec<Value>>| row.clone().unwrap_or_default();
        match r.op {
            "INSERT" if c.op == Op::Create => {
                compare_image(c, &image(&c.after), &r.after, expect, "insert")?
            }
            "DELETE" if c.op == Op::Delete => {
                compare_image(c, &image(&c.before), &r.before, expect, "delete")?
            }
            "UPDATE" if matches!(c.op, Op::Update | Op::Delete) => {
                compare_image(c, &image(&c.before), &r.before, expect, "update before")?;
                let after = if c.op == Op::Delete {
                    // A new primary key: Sluice deletes the old document and creates the new.
                    let create = it
                        .next()
                        .filter(|n| n.op == Op::Create)
                        .ok_or("a key change without its create")?;
                    places.check(create, r)?;
                    create
                } else {
                    c
                };
                compare_image(
                    after,
                    &image(&after.after),
                    &r.after,
                    expect,
                    "update after",
                )?;
            }
            _ => {
                return Err(format!(
                    "Sluice's {:?} of {} against the reference's {}",
                    c.op, c.table.id, r.op
                ));
            }
        }
        images += 1;
    }
    match it.next() {
        Some(extra) => Err(format!(
            "Sluice decoded a change the reference does not have: {extra:?}"
        )),
        None => Ok(images),
    }
}
