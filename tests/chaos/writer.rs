//! The chaos run's OLTP writer: seeded random inserts, updates, deletes, primary-key updates,
//! range updates and deletes, and multi-statement transactions (some rolled back) on three
//! tables of different key shapes. Every update bumps `rev`, so a document left at an older
//! version of its row differs from the row and `sluice verify` names it.

use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use mysql_async::{Conn, Pool, Value};

use crate::common::Writes;

/// The tables, created before the pipeline starts. `t2`'s key is (`g<n % 50>`, `n`), so a
/// number alone names a row.
pub const TABLES: [&str; 4] = [
    "CREATE TABLE t1 (id BIGINT NOT NULL PRIMARY KEY, rev INT NOT NULL, name VARCHAR(64) NULL, \
     amount DECIMAL(12,2) NULL, at DATETIME(6) NULL, note TEXT NULL) CHARACTER SET utf8mb4",
    "CREATE TABLE t2 (grp VARCHAR(16) NOT NULL, n INT NOT NULL, rev INT NOT NULL, \
     score DOUBLE NULL, flag TINYINT NULL, body VARCHAR(255) NULL, PRIMARY KEY (grp, n)) \
     CHARACTER SET utf8mb4",
    "CREATE TABLE t3 (id INT UNSIGNED NOT NULL PRIMARY KEY, rev INT NOT NULL, doc LONGTEXT NULL, \
     ts TIMESTAMP(3) NULL, bin VARBINARY(32) NULL)",
    "CREATE TABLE beat (id INT NOT NULL PRIMARY KEY, n BIGINT NOT NULL)",
];

/// Statements filling each table with `rows` rows.
pub fn fill(rows: u64) -> Vec<String> {
    let mut out = Vec::new();
    let mut from = 1;
    // Chunks keep each transaction (and the server's undo) small.
    while from <= rows {
        let to = (from + 49_999).min(rows);
        let seq = format!("seq_{from}_to_{to}");
        out.push(format!(
            "INSERT INTO t1 SELECT seq, 0, CONCAT('name ', seq), seq / 100, \
             '2024-01-01' + INTERVAL seq SECOND, REPEAT('x', seq % 200) FROM {seq}"
        ));
        out.push(format!(
            "INSERT INTO t2 SELECT CONCAT('g', seq % 50), seq, 0, seq * 1.5, seq % 2, \
             CONCAT('body ', seq) FROM {seq}"
        ));
        out.push(format!(
            "INSERT INTO t3 SELECT seq, 0, CONCAT('{{\"k\":', seq, '}}'), \
             FROM_UNIXTIME(1700000000 + seq), UNHEX(SHA1(seq)) FROM {seq}"
        ));
        from = to + 1;
    }
    out.push("INSERT INTO beat VALUES (1, 0)".into());
    out
}

/// What the writer did, for the report.
#[derive(Default, Debug, Clone, Copy)]
pub struct Tally {
    pub statements: u64,
    pub changes: u64,
    pub transactions: u64,
    pub rolled_back: u64,
    /// Statements or transactions a fault broke (their outcome is whatever the server kept).
    pub errors: u64,
}

/// Writes until told to stop, at about `per_sec` statements a second; errors (the server
/// killed, a connection cut) are counted and the writer goes on with a new connection.
pub async fn run(pool: Pool, seed: u64, rows: u64, per_sec: u64, writes: Writes) -> Tally {
    let mut workload = Gen {
        rng: fastrand::Rng::with_seed(seed),
        next: [rows + 1; 3],
    };
    let mut tally = Tally::default();
    let pause = Duration::from_micros(1_000_000 / per_sec.max(1));
    let mut conn: Option<Conn> = None;
    while writes.go_on() {
        let started = Instant::now();
        if conn.is_none() {
            conn = pool.get_conn().await.ok();
        }
        // Without a connection (the server is down) the writer just tries again.
        if let Some(c) = conn.as_mut() {
            match workload.step(c, &mut tally).await {
                Ok(()) => writes.count(),
                Err(_) => {
                    tally.errors += 1;
                    conn = None;
                }
            }
        }
        tokio::time::sleep(pause.saturating_sub(started.elapsed())).await;
    }
    tally
}

struct Gen {
    rng: fastrand::Rng,
    /// The next fresh key number of t1, t2, t3.
    next: [u64; 3],
}

impl Gen {
    /// One statement, or one transaction of a few.
    async fn step(&mut self, conn: &mut Conn, tally: &mut Tally) -> mysql_async::Result<()> {
        if self.rng.u8(..100) < 15 {
            conn.query_drop("BEGIN").await?;
            let mut changed = 0;
            for _ in 0..self.rng.u32(2..=6) {
                changed += self.statement(conn).await?;
                tally.statements += 1;
            }
            if self.rng.u8(..5) == 0 {
                conn.query_drop("ROLLBACK").await?;
                tally.rolled_back += 1;
            } else {
                conn.query_drop("COMMIT").await?;
                tally.changes += changed;
                tally.transactions += 1;
            }
        } else {
            tally.changes += self.statement(conn).await?;
            tally.statements += 1;
            tally.transactions += 1;
        }
        Ok(())
    }

    /// A key number of `table` that may exist (or did once): 99 times in 100 one of the
    /// 2,000 newest, as OLTP changes recent rows most. (osmem-server rewrites every segment
    /// a bulk request changes a document in, so changes spread over a large index make each
    /// bulk cost about the whole index: docs/reliability.md.)
    fn some(&mut self, table: usize) -> u64 {
        let next = self.next[table];
        if self.rng.u8(..100) == 0 || next <= 2_000 {
            self.rng.u64(1..next)
        } else {
            self.rng.u64(next - 2_000..next)
        }
    }

    fn fresh(&mut self, table: usize) -> u64 {
        self.next[table] += 1;
        self.next[table] - 1
    }

    fn text(&mut self) -> String {
        const WORDS: [&str; 6] = [
            "plain",
            "quote ' \" \\",
            "🌊 four-byte",
            "ünï",
            "日本",
            "tab\t",
        ];
        format!(
            "{} {}",
            WORDS[self.rng.usize(..WORDS.len())],
            self.rng.u32(..)
        )
    }

    async fn statement(&mut self, conn: &mut Conn) -> mysql_async::Result<u64> {
        let (sql, params): (&str, Vec<Value>) = match self.rng.u8(..100) {
            0..=24 => {
                let id = self.fresh(0);
                let v = vec![
                    id.into(),
                    self.text().into(),
                    format!("{}.{:02}", self.rng.i32(-99999..99999), self.rng.u8(..100)).into(),
                    format!(
                        "2025-0{}-1{} 10:00:00.{:06}",
                        self.rng.u8(1..10),
                        self.rng.u8(..10),
                        self.rng.u32(..1_000_000)
                    )
                    .into(),
                ];
                (
                    "INSERT INTO t1 (id, rev, name, amount, at, note) VALUES (?, 0, ?, ?, ?, 'new')",
                    v,
                )
            }
            25..=34 => {
                let n = self.fresh(1);
                let v = vec![
                    format!("g{}", n % 50).into(),
                    n.into(),
                    (self.rng.f64() * 1e6).into(),
                    self.rng.u8(..2).into(),
                    self.text().into(),
                ];
                (
                    "INSERT INTO t2 (grp, n, rev, score, flag, body) VALUES (?, ?, 0, ?, ?, ?)",
                    v,
                )
            }
            35..=44 => {
                let id = self.fresh(2);
                let v = vec![
                    id.into(),
                    format!("{{\"k\":{id},\"s\":\"{}\"}}", self.rng.u32(..)).into(),
                    (1_700_000_000 + self.rng.u32(..100_000_000)).into(),
                ];
                (
                    "INSERT INTO t3 (id, rev, doc, ts, bin) VALUES (?, 0, ?, FROM_UNIXTIME(?), UNHEX(SHA1(RAND())))",
                    v,
                )
            }
            45..=54 => {
                let v = vec![
                    self.text().into(),
                    self.rng.i32(..).into(),
                    self.some(0).into(),
                ];
                (
                    "UPDATE t1 SET rev = rev + 1, name = ?, amount = ? / 100 WHERE id = ?",
                    v,
                )
            }
            55..=62 => {
                let n = self.some(1);
                let v = vec![
                    self.rng.f64().into(),
                    format!("g{}", n % 50).into(),
                    n.into(),
                ];
                (
                    "UPDATE t2 SET rev = rev + 1, score = ?, flag = 1 - flag WHERE grp = ? AND n = ?",
                    v,
                )
            }
            63..=69 => {
                let v = vec![self.rng.u32(..).into(), self.some(2).into()];
                (
                    "UPDATE t3 SET rev = rev + 1, doc = JSON_OBJECT('r', ?), ts = NOW(3) WHERE id = ?",
                    v,
                )
            }
            70..=73 => ("DELETE FROM t1 WHERE id = ?", vec![self.some(0).into()]),
            74..=76 => {
                let n = self.some(1);
                (
                    "DELETE FROM t2 WHERE grp = ? AND n = ?",
                    vec![format!("g{}", n % 50).into(), n.into()],
                )
            }
            77..=79 => ("DELETE FROM t3 WHERE id = ?", vec![self.some(2).into()]),
            // Primary-key updates: the old document must go, the new one appear.
            80..=83 => {
                let (to, from) = (self.fresh(0), self.some(0));
                (
                    "UPDATE t1 SET id = ?, rev = rev + 1 WHERE id = ?",
                    vec![to.into(), from.into()],
                )
            }
            84..=87 => {
                let (from, to) = (self.some(1), self.fresh(1));
                let v = vec![
                    format!("g{}", to % 50).into(),
                    to.into(),
                    format!("g{}", from % 50).into(),
                    from.into(),
                ];
                (
                    "UPDATE t2 SET grp = ?, n = ?, rev = rev + 1 WHERE grp = ? AND n = ?",
                    v,
                )
            }
            // Range statements: many rows in one event.
            88..=93 => {
                let lo = self.some(0);
                let v = vec![lo.into(), (lo + self.rng.u64(5..40)).into()];
                (
                    "UPDATE t1 SET rev = rev + 1, note = CONCAT('r', rev) WHERE id BETWEEN ? AND ?",
                    v,
                )
            }
            94..=96 => {
                let lo = self.some(2);
                let v = vec![lo.into(), (lo + self.rng.u64(5..30)).into()];
                (
                    "UPDATE t3 SET rev = rev + 1, bin = NULL WHERE id BETWEEN ? AND ?",
                    v,
                )
            }
            _ => {
                let lo = self.some(2);
                (
                    "DELETE FROM t3 WHERE id BETWEEN ? AND ?",
                    vec![lo.into(), (lo + self.rng.u64(1..10)).into()],
                )
            }
        };
        conn.exec_drop(sql, params).await?;
        Ok(conn.affected_rows())
    }
}
