//! Binlog decoding: 1,000,000 row changes of a 9-column table (600 k inserts, 200 k updates,
//! 200 k deletes), decoded to typed values from the same bytes by Sluice, mysql_cdc 0.2.1 and
//! mysql_common 0.37 (mysql_async's decoder), in one criterion group. Before timing, every
//! inserted value each decoder returns is checked against the formula that generated it, and
//! the wrong values are counted.
//!
//! Needs the stack's MariaDB once, to write the fixture (`scripts/stack.sh up`):
//! `cargo bench --bench decode`; figures in docs/benchmarks.md.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice::model::{Op, Position, TableId, Value, time};
use sluice::source::binlog::{BinlogReader, Decoded, file};
use sluice::source::charset::Collations;

/// The allocator the `sluice` binary runs with, so the figures are the binary's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const INSERTS: u64 = 600_000;
const CHANGES: u64 = 1_000_000;

/// Writes the fixture binlog (once) and returns its bytes and the server's collations.
fn fixture() -> (PathBuf, Vec<u8>, Collations) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-fixtures");
    let binlog = dir.join("decode-1m.binlog");
    let collations = dir.join("decode-1m.collations");
    if !binlog.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        generate(&binlog, &collations);
    }
    let pairs = std::fs::read_to_string(&collations)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (id, cs) = l.split_once('\t')?;
            Some((id.parse().ok()?, cs.to_string()))
        })
        .collect::<Vec<(u64, String)>>();
    (
        binlog.clone(),
        std::fs::read(&binlog).unwrap(),
        Collations::new(pairs),
    )
}

fn mariadb(sql: &str) -> String {
    let env = |k: &str, d: &str| std::env::var(format!("SLUICE_STACK_{k}")).unwrap_or(d.into());
    let out = Command::new("mariadb")
        .args(["--no-defaults", "-N", "-B"])
        .arg(format!("-h{}", env("MYSQL_HOST", "127.0.0.1")))
        .arg(format!("-P{}", env("MYSQL_PORT", "13306")))
        .arg(format!("-u{}", env("MYSQL_ADMIN_USER", "admin")))
        .arg(format!("-p{}", env("MYSQL_ADMIN_PASSWORD", "admin")))
        .args(["-e", sql])
        .output()
        .expect("the mariadb client (scripts/stack.sh install)");
    assert!(
        out.status.success(),
        "{sql}: {} (is the stack up? scripts/stack.sh up)",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn generate(binlog: &PathBuf, collations: &PathBuf) {
    eprintln!("writing the fixture binlog (1 M row changes) into the stack's MariaDB...");
    mariadb(
        "DROP DATABASE IF EXISTS bench_decode; CREATE DATABASE bench_decode; \
         CREATE TABLE bench_decode.t (id BIGINT PRIMARY KEY, a INT, b INT UNSIGNED, \
         qty MEDIUMINT, price DECIMAL(12,2), name VARCHAR(64), note VARCHAR(255), \
         created DATETIME(6), flag TINYINT) DEFAULT CHARSET utf8mb4",
    );
    let start = mariadb("FLUSH BINARY LOGS; SHOW MASTER STATUS");
    let file = start.split('\t').next().unwrap().to_string();
    mariadb(&format!(
        "USE bench_decode; \
         INSERT INTO t SELECT seq, CAST(seq AS SIGNED) - 500000, \
         (seq * 2654435761) % 4294967296, CAST(seq % 16777216 AS SIGNED) - 8388608, \
         CAST((seq * 37) % 100000000 AS SIGNED) / 100 - 500000, \
         CONCAT('name-', seq), REPEAT('n', seq % 50), \
         TIMESTAMPADD(MICROSECOND, seq * 1234567, '2024-01-01 00:00:00'), seq % 2 \
         FROM seq_1_to_{INSERTS}; \
         UPDATE t SET a = -a, price = -price WHERE id % 3 = 0; \
         DELETE FROM t WHERE id % 3 = 1; FLUSH BINARY LOGS"
    ));
    let datadir = mariadb("SELECT @@datadir").trim().to_string();
    std::fs::copy(PathBuf::from(datadir).join(&file), binlog).unwrap();
    std::fs::write(
        collations,
        mariadb(
            "SELECT ID, CHARACTER_SET_NAME FROM information_schema.COLLATIONS WHERE ID IS NOT NULL",
        ),
    )
    .unwrap();
}

/// A value as the generator wrote it, in a form every decoder's output converts to.
#[derive(Debug, PartialEq)]
enum V {
    I(i64),
    S(String),
    Micros(i64),
}

fn expected(i: u64) -> [V; 9] {
    let i64 = i as i64;
    let cents = ((i64 * 37) % 100_000_000) - 50_000_000;
    let price = format!(
        "{}{}.{:02}",
        if cents < 0 { "-" } else { "" },
        cents.abs() / 100,
        cents.abs() % 100
    );
    let epoch = time::micros_from_civil(2024, 1, 1, 0, 0, 0, 0);
    [
        V::I(i64),
        V::I(i64 - 500_000),
        V::I(((i * 2_654_435_761) % 4_294_967_296) as i64),
        V::I((i64 % 16_777_216) - 8_388_608),
        V::S(price),
        V::S(format!("name-{i}")),
        V::S("n".repeat((i % 50) as usize)),
        V::Micros(epoch + i64 * 1_234_567),
        V::I(i64 % 2),
    ]
}

/// Row changes and wrong insert values of one decoder.
struct Outcome {
    rows: u64,
    wrong: u64,
}

fn check(outcome: &mut Outcome, row: &[V]) {
    let V::I(id) = row[0] else {
        outcome.wrong += 9;
        return;
    };
    let want = expected(id as u64);
    outcome.wrong += want.iter().zip(row).filter(|(w, g)| w != g).count() as u64;
    outcome.wrong += 9u64.saturating_sub(row.len() as u64);
}

fn sluice(bytes: &[u8], collations: &Collations, mut visit: impl FnMut(Op, &[Value])) -> u64 {
    let start = Position::new("decode.000001", 4);
    let mut reader = BinlogReader::new(
        &start,
        [TableId::new("bench_decode", "t")],
        collations.clone(),
        true,
    )
    .unwrap();
    let mut rows = 0;
    for event in file::events(bytes, true).unwrap() {
        let (header, body) = event.unwrap();
        if let Decoded::Changes(changes) | Decoded::Transaction(changes, _) =
            reader.on_event(&header, body).unwrap()
        {
            for c in &changes {
                rows += 1;
                visit(c.op, c.after.as_deref().or(c.before.as_deref()).unwrap());
            }
        }
    }
    rows
}

fn sluice_values(row: &[Value]) -> Vec<V> {
    row.iter()
        .map(|v| match v {
            Value::Int(i) => V::I(*i),
            Value::UInt(u) => V::I(*u as i64),
            Value::Decimal(d) => V::S(d.to_string()),
            Value::String(s) => V::S(s.to_string()),
            Value::DateTime(us) => V::Micros(*us),
            other => V::S(format!("{other:?}")),
        })
        .collect()
}

fn mysql_common(bytes: &[u8], mut visit: impl FnMut(bool, Vec<V>)) -> u64 {
    use mysql_common::binlog::BinlogFile;
    use mysql_common::binlog::consts::BinlogVersion;
    use mysql_common::binlog::events::{EventData, RowsEventData};
    use mysql_common::binlog::value::BinlogValue;
    let mut f = BinlogFile::new(BinlogVersion::Version4, bytes).unwrap();
    let mut rows = 0;
    while let Some(event) = f.next() {
        let event = event.unwrap();
        let Ok(Some(EventData::RowsEvent(data))) = event.read_data() else {
            continue;
        };
        let insert = matches!(data, RowsEventData::WriteRowsEventV1(_));
        let Some(tme) = f.reader().get_tme(data.table_id()) else {
            continue;
        };
        for row in data.rows(tme) {
            let (before, after) = row.unwrap();
            rows += 1;
            let row = after.or(before).unwrap();
            let values = row
                .unwrap()
                .into_iter()
                .map(|v| match v {
                    BinlogValue::Value(mysql_common::Value::Int(i)) => V::I(i),
                    BinlogValue::Value(mysql_common::Value::UInt(u)) => V::I(u as i64),
                    BinlogValue::Value(mysql_common::Value::Bytes(b)) => {
                        V::S(String::from_utf8_lossy(&b).into_owned())
                    }
                    BinlogValue::Value(mysql_common::Value::Date(y, mo, d, h, mi, s, us)) => {
                        V::Micros(time::micros_from_civil(
                            y.into(),
                            mo.into(),
                            d.into(),
                            h.into(),
                            mi.into(),
                            s.into(),
                            us,
                        ))
                    }
                    other => V::S(format!("{other:?}")),
                })
                .collect();
            visit(insert, values);
        }
    }
    rows
}

fn mysql_cdc(path: &PathBuf, mut visit: impl FnMut(bool, Vec<V>)) -> u64 {
    use mysql_cdc::binlog_reader::BinlogReader;
    use mysql_cdc::events::binlog_event::BinlogEvent;
    use mysql_cdc::events::row_events::mysql_value::MySqlValue;
    let convert = |cells: &[Option<MySqlValue>]| -> Vec<V> {
        cells
            .iter()
            .map(|c| match c {
                Some(MySqlValue::TinyInt(x)) => V::I(i64::from(*x)),
                Some(MySqlValue::MediumInt(x) | MySqlValue::Int(x)) => V::I(i64::from(*x)),
                Some(MySqlValue::BigInt(x)) => V::I(*x as i64),
                Some(MySqlValue::Decimal(s) | MySqlValue::String(s)) => V::S(s.clone()),
                Some(MySqlValue::DateTime(d)) => V::Micros(time::micros_from_civil(
                    d.year.into(),
                    d.month.into(),
                    d.day.into(),
                    d.hour.into(),
                    d.minute.into(),
                    d.second.into(),
                    d.millis * 1000,
                )),
                other => V::S(format!("{other:?}")),
            })
            .collect()
    };
    let reader = BinlogReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut rows = 0;
    // mysql_cdc stops at the first error; what it returned until then is what a user gets.
    for event in reader {
        let Ok((_, event)) = event else { break };
        match event {
            BinlogEvent::WriteRowsEvent(e) => {
                for r in &e.rows {
                    rows += 1;
                    visit(true, convert(&r.cells));
                }
            }
            BinlogEvent::UpdateRowsEvent(e) => {
                for r in &e.rows {
                    rows += 1;
                    visit(false, convert(&r.after_update.cells));
                }
            }
            BinlogEvent::DeleteRowsEvent(e) => {
                for r in &e.rows {
                    rows += 1;
                    visit(false, convert(&r.cells));
                }
            }
            _ => {}
        }
    }
    rows
}

fn decode(c: &mut Criterion) {
    let (path, bytes, collations) = fixture();
    // Correctness first: every value of every insert against the generator's formula.
    let mut outcomes: HashMap<&str, Outcome> = HashMap::new();
    let mut o = Outcome { rows: 0, wrong: 0 };
    o.rows = sluice(&bytes, &collations, |op, row| {
        if op == Op::Create {
            check(&mut o, &sluice_values(row));
        }
    });
    outcomes.insert("sluice", o);
    let mut o = Outcome { rows: 0, wrong: 0 };
    o.rows = mysql_common(&bytes, |insert, row| {
        if insert {
            check(&mut o, &row)
        }
    });
    outcomes.insert("mysql_common", o);
    let mut o = Outcome { rows: 0, wrong: 0 };
    o.rows = mysql_cdc(&path, |insert, row| {
        if insert {
            check(&mut o, &row)
        }
    });
    outcomes.insert("mysql_cdc", o);
    for (name, o) in &outcomes {
        eprintln!(
            "{name}: {} of {CHANGES} row changes, {} wrong values among the {} inserted",
            o.rows,
            o.wrong,
            INSERTS * 9
        );
    }
    assert_eq!(outcomes["sluice"].rows, CHANGES);
    assert_eq!(outcomes["sluice"].wrong, 0);

    let mut g = c.benchmark_group("decode_1m_row_changes");
    g.throughput(Throughput::Elements(CHANGES));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.bench_function("sluice", |b| {
        b.iter(|| {
            sluice(black_box(&bytes), &collations, |_, row| {
                black_box(row);
            })
        })
    });
    g.bench_function("mysql_cdc", |b| {
        b.iter(|| {
            mysql_cdc(black_box(&path), |_, row| {
                black_box(row);
            })
        })
    });
    g.bench_function("mysql_common", |b| {
        b.iter(|| {
            mysql_common(black_box(&bytes), |_, row| {
                black_box(row);
            })
        })
    });
    g.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
