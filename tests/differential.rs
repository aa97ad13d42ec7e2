//! Differential test of the binlog decoder against MariaDB's own `mariadb-binlog -v`: the type
//! matrix and a random workload of more than 20,000 row changes across tables of mixed types
//! are written to a fresh binlog file, which both decoders then read; every value of every row
//! image must agree.
//!
//! How the reference's printed values are read is in tests/common/reference.rs.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::families::FAMILIES;
use common::private::{PrivateServer, ROW_CDC};
use common::reference;
use common::workload::{Workload, create_tables};
use common::*;
use mysql_async::Conn;
use mysql_async::prelude::*;
use sluice::model::{Change, Position, TableId, Value};
use sluice::source::binlog::{BinlogReader, Decoded, file};
use sluice::source::charset::{Charset, Codec};

const MIX_DDL: &str = "CREATE TABLE mix (id INT PRIMARY KEY, f FLOAT, d DOUBLE, b BIT(13), \
    t TIME(4), e ENUM('a','b','c'), s SET('x','y','z'), vb VARBINARY(40), \
    l VARCHAR(30) CHARACTER SET latin1, g POINT, dt DATETIME(3), n DECIMAL(9,3), \
    u BIGINT UNSIGNED, c CHAR(4), y YEAR, ts TIMESTAMP(2) NULL, w DECIMAL(65,38)) \
    DEFAULT CHARSET utf8mb4";

const LATIN1: &[&str] = &["café", "ÀÿŒ‰€", "plain", "", "a'b", "tab\there", "Ünïcödé"];

/// `n` random decimal digits.
fn digits(rng: &mut fastrand::Rng, n: usize) -> String {
    (0..n).map(|_| char::from(b'0' + rng.u8(0..10))).collect()
}

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
    let (int_digits, negative) = (rng.usize(1..=27), rng.bool());
    let widest = format!(
        "{}{}.{}",
        if negative { "-" } else { "" },
        digits(rng, int_digits),
        digits(rng, 38)
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
        // MariaDB's widest scale: 27 integer digits at most, 38 after the point.
        widest,
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

/// Transactions that also change a non-transactional table and roll back to savepoints: the
/// server logs the undone rows, then `ROLLBACK TO`, and the transaction goes on. Seeded
/// random transactions on an InnoDB table with a MyISAM write among them; the rows that
/// Sluice's changes leave must be what `SELECT` returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolled_back_savepoints_leave_no_changes() {
    // A server of its own: another test's FLUSH BINARY LOGS would rotate the file mid-test.
    let server = tokio::task::spawn_blocking(|| PrivateServer::start(&ROW_CDC))
        .await
        .unwrap();
    let opts = mysql_async::OptsBuilder::default()
        .socket(Some(server.socket.to_str().unwrap()))
        .user(Some("root"));
    let mut conn = Conn::new(opts).await.unwrap();
    exec(
        &mut conn,
        &[
            "CREATE DATABASE sp",
            "USE sp",
            "CREATE TABLE tt (id INT PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB",
            "CREATE TABLE nt (id INT PRIMARY KEY AUTO_INCREMENT, v INT) ENGINE=MyISAM",
        ],
    )
    .await;
    let (file, _) = master_status(&mut conn).await;
    let mut rng = fastrand::Rng::with_seed(11);
    let mut rollbacks_to = 0;
    // Inserted keys are never reused, so a change that never happened cannot be hidden by a
    // later one: an insert leaves an extra row, an update a wrong value.
    let mut next = 0;
    for t in 0..300 {
        let mut sql = vec!["START TRANSACTION".to_string()];
        for _ in 0..rng.usize(2..14) {
            let id = rng.i32(0..next.max(1));
            sql.push(match rng.u8(0..10) {
                0..=3 => {
                    next += 1;
                    format!("INSERT INTO tt VALUES ({next}, {t})")
                }
                4 => format!("DELETE FROM tt WHERE id = {id}"),
                5 => format!("UPDATE tt SET v = v + 7 WHERE id = {id}"),
                6 => "INSERT INTO nt (v) VALUES (1)".into(),
                7 | 8 => format!("SAVEPOINT `s{}`", rng.u8(0..3)),
                _ => format!("ROLLBACK TO SAVEPOINT `s{}`", rng.u8(0..3)),
            });
        }
        sql.push(
            if rng.u8(0..10) == 0 {
                "ROLLBACK"
            } else {
                "COMMIT"
            }
            .into(),
        );
        for s in &sql {
            // A rollback to a savepoint not set (or gone) is an error that leaves the
            // transaction as it was.
            match conn.query_drop(s).await {
                Ok(()) => rollbacks_to += usize::from(s.starts_with("ROLLBACK TO")),
                Err(e) if s.starts_with("ROLLBACK TO") => drop(e),
                Err(e) => panic!("{s}: {e}"),
            }
        }
    }
    let (end_file, end) = master_status(&mut conn).await;
    assert_eq!(file, end_file, "the binlog rotated during the test");
    let datadir: String = conn.query_first("SELECT @@datadir").await.unwrap().unwrap();
    let bytes = std::fs::read(Path::new(&datadir).join(&file)).unwrap();
    let collations = sluice::source::mysql::collations(&mut conn).await.unwrap();
    let table = TableId::new("sp", "tt");
    let mut reader =
        BinlogReader::new(&Position::new(file.clone(), 4), [table], collations, true).unwrap();
    let mut rows: HashMap<i64, i64> = HashMap::new();
    let mut apply = |changes: Vec<Change>| {
        for c in changes {
            let int = |v: &Value| match v {
                Value::Int(i) => *i,
                other => panic!("{other:?}"),
            };
            match (c.before, c.after) {
                (_, Some(after)) => rows.insert(int(&after[0]), int(&after[1])),
                (Some(before), None) => rows.remove(&int(&before[0])),
                (None, None) => panic!("a change without images"),
            };
        }
    };
    for event in file::events(&bytes[..end as usize], true).unwrap() {
        let (header, body) = event.unwrap();
        match reader.on_event(&header, body).unwrap() {
            Decoded::Changes(c) | Decoded::Transaction(c, _) => apply(c),
            Decoded::Commit(_) | Decoded::Nothing => {}
        }
    }
    let want: HashMap<i64, i64> = conn
        .query::<(i64, i64), _>("SELECT id, v FROM tt")
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert!(
        rollbacks_to > 30,
        "only {rollbacks_to} rollbacks to a savepoint"
    );
    assert_eq!(
        rows, want,
        "the rows Sluice's changes leave, against SELECT"
    );
}

/// Runs the type matrix and a random workload in `db` (the connection's current database) on
/// a fresh binlog file, decodes the file with Sluice and with `mariadb-binlog`, and compares
/// every value. Returns how many rows events were compressed, of how many.
async fn agrees_with_reference(conn: &mut Conn, db: &str) -> (usize, usize) {
    let db = db.to_string();
    exec(conn, &["SET SESSION sql_mode = ''", "FLUSH BINARY LOGS"]).await;
    let (file, _) = master_status(conn).await;

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
    let (end_file, end) = master_status(conn).await;
    assert_eq!(file, end_file, "the binlog rotated during the test");
    let datadir: String = conn.query_first("SELECT @@datadir").await.unwrap().unwrap();
    let path = Path::new(&datadir).join(&file);

    // Sluice's decoder over the file's bytes up to the end of this test's events, with the
    // server's collations as the source reads them.
    let collations = sluice::source::mysql::collations(conn).await.unwrap();
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
        .map(|(t, c, cs)| {
            let codec = match cs.map(|cs| collations.named(&cs)) {
                Some(Charset::Text(codec)) => codec,
                _ => Codec::Utf8,
            };
            ((t, c), codec)
        })
        .collect();
    let tables: Vec<TableId> = charsets
        .keys()
        .map(|(t, _)| TableId::new(db.clone(), t.clone()))
        .collect();
    let bytes = std::fs::read(&path).unwrap();
    let start = Position::new(file.clone(), 4);
    let mut reader = BinlogReader::new(&start, tables, collations, true).unwrap();
    let mut ours: Vec<Change> = vec![];
    let (mut compressed, mut rows_events) = (0, 0);
    for event in file::events(&bytes[..end as usize], true).unwrap() {
        let (header, body) = event.unwrap();
        match header.event_type {
            23..=25 | 30..=32 => rows_events += 1,
            166..=171 => (compressed, rows_events) = (compressed + 1, rows_events + 1),
            _ => {}
        }
        if let Decoded::Changes(changes) | Decoded::Transaction(changes, _) =
            reader.on_event(&header, body).unwrap()
        {
            ours.extend(changes);
        }
    }

    // The reference over the same file and range; the decoded types are checked apart (type
    // matrix), the charsets come from information_schema.
    let reference = reference::reference(&path, end, &db);
    let expect = |change: &Change, column: &sluice::model::Column| {
        let codec = charsets
            .get(&(change.table.id.table.clone(), column.name.clone()))
            .copied()
            .unwrap_or(Codec::Utf8);
        (column.ty.clone(), codec)
    };
    let images = reference::compare(&ours, &reference, &expect).unwrap_or_else(|e| panic!("{e}"));
    assert!(images >= 20_000, "only {images} row changes compared");
    (compressed, rows_events)
}
