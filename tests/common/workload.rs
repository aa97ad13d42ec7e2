//! A random but reproducible write workload over two tables that cover every supported type at
//! its extremes: `items` (single BIGINT key, every type, NULLs, zero dates, 70 KB texts) and
//! `links` (composite key with a string part, primary-key updates).

use mysql_async::prelude::*;
use mysql_async::{Conn, Value};

pub const ITEMS_DDL: &str = "CREATE TABLE items (
  id BIGINT NOT NULL PRIMARY KEY,
  t_tiny TINYINT NULL, t_utiny TINYINT UNSIGNED NULL,
  t_small SMALLINT NULL, t_usmall SMALLINT UNSIGNED NULL,
  t_medium MEDIUMINT NULL, t_umedium MEDIUMINT UNSIGNED NULL,
  t_int INT NULL, t_uint INT UNSIGNED NOT NULL,
  t_big BIGINT NULL, t_ubig BIGINT UNSIGNED NULL,
  price DECIMAL(12,4) NULL, wide DECIMAL(65,30) NULL, frac DECIMAL(4,4) NOT NULL,
  name VARCHAR(64) NULL, code CHAR(8) NULL, big_name VARCHAR(300) NULL,
  body TEXT NULL, long_body MEDIUMTEXT NULL,
  d DATE NULL, dt DATETIME(6) NULL, dt0 DATETIME NOT NULL, ts TIMESTAMP(6) NULL, ts3 TIMESTAMP(3) NULL
) CHARACTER SET utf8mb4";

pub const LINKS_DDL: &str = "CREATE TABLE links (
  owner_id INT UNSIGNED NOT NULL,
  label VARCHAR(32) NOT NULL,
  weight DECIMAL(5,2) NOT NULL,
  note VARCHAR(255) CHARACTER SET utf8mb3 NULL,
  created DATETIME(3) NOT NULL,
  PRIMARY KEY (owner_id, label)
) CHARACTER SET utf8mb4";

const ITEM_COLUMNS: &str = "id, t_tiny, t_utiny, t_small, t_usmall, t_medium, t_umedium, t_int, t_uint, \
    t_big, t_ubig, price, wide, frac, name, code, big_name, body, long_body, d, dt, dt0, ts, ts3";

const STRINGS: &[&str] = &[
    "",
    "plain",
    "quote ' double \" back \\ slash",
    "emoji 🌊🚀 four-byte",
    "ünïcödé ñ",
    "日本語のテキスト",
    "tab\tand\nnewline",
    "trailing spaces   ",
    "{\"looks\": \"like json\"}",
    "2024-01-01",
    "12345",
];

/// Generates rows and statements from a seed.
pub struct Workload {
    seed: u64,
    rng: fastrand::Rng,
    next_id: i64,
    items: Vec<i64>,
    links: Vec<(u32, String)>,
    next_label: u32,
}

impl Workload {
    pub fn new(seed: u64) -> Self {
        Workload {
            seed,
            rng: fastrand::Rng::with_seed(seed),
            next_id: 1,
            items: Vec::new(),
            links: Vec::new(),
            next_label: 0,
        }
    }

    fn pick<T: Copy>(&mut self, choices: &[T]) -> T {
        choices[self.rng.usize(..choices.len())]
    }

    /// NULL one time in ten, else `f`'s value.
    fn opt(&mut self, f: impl FnOnce(&mut Self) -> Value) -> Value {
        if self.rng.u8(..10) == 0 {
            Value::NULL
        } else {
            f(self)
        }
    }

    fn int(&mut self, extremes: &[i64], lo: i64, hi: i64) -> Value {
        let v = if self.rng.bool() {
            self.pick(extremes)
        } else {
            self.rng.i64(lo..=hi)
        };
        self.opt(|_| Value::Int(v))
    }

    fn text(&mut self, max_chars: usize) -> String {
        let mut s = self.pick(STRINGS).to_string();
        if self.rng.bool() {
            s.push_str(&format!(" #{}", self.rng.u32(..)));
        }
        s.chars().take(max_chars).collect()
    }

    fn decimal(&mut self, int_digits: usize, frac_digits: usize) -> String {
        let digits = |rng: &mut fastrand::Rng, n: usize| {
            (0..n)
                .map(|_| char::from(b'0' + rng.u8(..10)))
                .collect::<String>()
        };
        let n = self.rng.usize(1..=int_digits.max(1));
        let int = digits(&mut self.rng, n);
        let frac = digits(&mut self.rng, frac_digits);
        let sign = if self.rng.bool() { "-" } else { "" };
        if frac_digits == 0 {
            format!("{sign}{int}")
        } else {
            format!("{sign}{int}.{frac}")
        }
    }

    fn date(&mut self) -> String {
        if self.rng.u8(..40) == 0 {
            return "0000-00-00".into();
        }
        let y = self.pick(&[1000, 1969, 1970, 2024, 9999, 0]);
        let y = if y == 0 { self.rng.u32(1000..=9999) } else { y };
        format!(
            "{y:04}-{:02}-{:02}",
            self.rng.u32(1..=12),
            self.rng.u32(1..=28)
        )
    }

    fn time(&mut self) -> String {
        format!(
            "{:02}:{:02}:{:02}",
            self.rng.u32(..24),
            self.rng.u32(..60),
            self.rng.u32(..60)
        )
    }

    fn item_row(&mut self, id: i64) -> Vec<Value> {
        let dt = format!(
            "{} {}.{:06}",
            self.date(),
            self.time(),
            self.rng.u32(..1_000_000)
        );
        let ts_secs = self.pick(&[1i64, 2_147_483_647, 0]);
        let ts_secs = if ts_secs == 0 {
            self.rng.i64(1..2_147_483_647)
        } else {
            ts_secs
        };
        let ts = format!("FROM_UNIXTIME({ts_secs}.{:06})", self.rng.u32(..1_000_000));
        let long_body = if self.rng.u8(..20) == 0 {
            "x".repeat(70_000) + "🌊"
        } else {
            self.text(64)
        };
        vec![
            Value::Int(id),
            self.int(&[-128, 127, -1, 0], -128, 127),
            self.int(&[0, 255], 0, 255),
            self.int(&[-32768, 32767, -1], -32768, 32767),
            self.int(&[0, 65535], 0, 65535),
            self.int(&[-8_388_608, 8_388_607, -1], -8_388_608, 8_388_607),
            self.int(&[0, 16_777_215], 0, 16_777_215),
            self.int(
                &[i32::MIN.into(), i32::MAX.into(), -1],
                i32::MIN.into(),
                i32::MAX.into(),
            ),
            Value::UInt(match self.rng.u8(..3) {
                0 => 0,
                1 => u32::MAX.into(),
                _ => self.rng.u64(..=u64::from(u32::MAX)),
            }),
            self.int(&[i64::MIN, i64::MAX, -1], i64::MIN, i64::MAX),
            self.opt(|s| {
                Value::UInt(match s.rng.u8(..4) {
                    0 => 0,
                    1 => u64::MAX,
                    2 => 1 << 63,
                    _ => s.rng.u64(..),
                })
            }),
            self.opt(|s| Value::from(s.decimal(8, 4))),
            self.opt(|s| Value::from(s.decimal(35, 30))),
            Value::from(format!("0.{:04}", self.rng.u32(..10_000))),
            self.opt(|s| Value::from(s.text(64))),
            self.opt(|s| Value::from(s.text(8))),
            self.opt(|s| Value::from(s.text(300))),
            self.opt(|s| Value::from(s.text(200))),
            self.opt(|_| Value::from(long_body)),
            self.opt(|s| Value::from(s.date())),
            self.opt(|_| Value::from(dt)),
            Value::from(format!("{} {}", self.date(), self.time())),
            self.opt(|_| Value::from(ts.clone())),
            self.opt(|_| Value::from(ts)),
        ]
    }

    /// Runs one random statement: an insert, update or delete of either table.
    pub async fn statement(&mut self, conn: &mut Conn) -> usize {
        match self.rng.u8(..100) {
            0..=39 => self.insert_item(conn).await,
            40..=54 if !self.items.is_empty() => {
                let i = self.rng.usize(..self.items.len());
                let id = self.items[i];
                let row = self.item_row(id);
                let sets = set_clause(ITEM_COLUMNS);
                let mut params = row[1..].to_vec();
                params.push(Value::Int(id));
                exec_item(
                    conn,
                    &format!("UPDATE items SET {sets} WHERE id = ?"),
                    params,
                )
                .await;
                1
            }
            55..=62 if !self.items.is_empty() => {
                let id = self.items.swap_remove(self.rng.usize(..self.items.len()));
                conn.exec_drop("DELETE FROM items WHERE id = ?", (id,))
                    .await
                    .unwrap();
                1
            }
            63..=64 if !self.items.is_empty() => {
                // One statement, many rows.
                let lo = self.items[self.rng.usize(..self.items.len())];
                conn.exec_drop(
                    "UPDATE items SET frac = 0.5, t_small = NULL WHERE id BETWEEN ? AND ?",
                    (lo, lo + 25),
                )
                .await
                .unwrap();
                self.items
                    .iter()
                    .filter(|&&i| (lo..=lo + 25).contains(&i))
                    .count()
            }
            65..=79 => {
                let owner = self.rng.u32(1..=50);
                self.next_label += 1;
                let label = format!(
                    "{}-{}-{}",
                    self.text(12).replace(' ', "_"),
                    self.seed,
                    self.next_label
                );
                let label: String = label
                    .chars()
                    .rev()
                    .take(32)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                let weight = self.decimal(3, 2);
                // utf8mb3 holds no four-byte characters.
                let note = self.opt(|s| {
                    Value::from(
                        s.text(100)
                            .chars()
                            .filter(|c| c.len_utf8() < 4)
                            .collect::<String>(),
                    )
                });
                let created = format!(
                    "{} {}.{:03}",
                    self.date().replace("0000-00-00", "2000-01-01"),
                    self.time(),
                    self.rng.u32(..1000)
                );
                conn.exec_drop(
                    "INSERT INTO links (owner_id, label, weight, note, created) VALUES (?, ?, ?, ?, ?)",
                    (owner, &label, weight, note, created),
                )
                .await
                .unwrap();
                self.links.push((owner, label));
                1
            }
            80..=89 if !self.links.is_empty() => {
                let i = self.rng.usize(..self.links.len());
                let (owner, label) = self.links[i].clone();
                if self.rng.bool() {
                    let weight = self.decimal(3, 2);
                    conn.exec_drop(
                        "UPDATE links SET weight = ?, note = NULL WHERE owner_id = ? AND label = ?",
                        (weight, owner, &label),
                    )
                    .await
                    .unwrap();
                } else {
                    // A primary-key update: the old document must disappear.
                    self.next_label += 1;
                    let new_label = format!("moved-{}-{}", self.seed, self.next_label);
                    conn.exec_drop(
                        "UPDATE links SET label = ? WHERE owner_id = ? AND label = ?",
                        (&new_label, owner, &label),
                    )
                    .await
                    .unwrap();
                    self.links[i].1 = new_label;
                }
                1
            }
            90..=99 if !self.links.is_empty() => {
                let (owner, label) = self.links.swap_remove(self.rng.usize(..self.links.len()));
                conn.exec_drop(
                    "DELETE FROM links WHERE owner_id = ? AND label = ?",
                    (owner, label),
                )
                .await
                .unwrap();
                1
            }
            _ => self.insert_item(conn).await,
        }
    }

    async fn insert_item(&mut self, conn: &mut Conn) -> usize {
        // Mostly ascending ids, sometimes negative ones.
        let id = if self.rng.u8(..10) == 0 {
            -self.next_id
        } else {
            self.next_id
        };
        self.next_id += 1;
        let row = self.item_row(id);
        let placeholders = vec!["?"; 24].join(", ");
        exec_item(
            conn,
            &format!("INSERT INTO items ({ITEM_COLUMNS}) VALUES ({placeholders})"),
            row,
        )
        .await;
        self.items.push(id);
        1
    }

    /// Inserts `n` items in one transaction.
    pub async fn insert_items(&mut self, conn: &mut Conn, n: usize) {
        conn.query_drop("BEGIN").await.unwrap();
        for _ in 0..n {
            self.insert_item(conn).await;
        }
        conn.query_drop("COMMIT").await.unwrap();
    }

    /// One multi-statement transaction of `statements` statements; returns rows changed.
    pub async fn transaction(&mut self, conn: &mut Conn, statements: usize) -> usize {
        conn.query_drop("BEGIN").await.unwrap();
        let mut changed = 0;
        for _ in 0..statements {
            changed += self.statement(conn).await;
        }
        conn.query_drop("COMMIT").await.unwrap();
        changed
    }
}

/// `a = ?, b = ?` for every column but the first.
fn set_clause(columns: &str) -> String {
    columns
        .split(", ")
        .skip(1)
        .map(|c| format!("{c} = ?"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs an items statement; TIMESTAMP values written as `FROM_UNIXTIME(...)` text are inlined
/// as SQL so they are instants, not strings parsed in some zone.
async fn exec_item(conn: &mut Conn, sql: &str, params: Vec<Value>) {
    let mut sql_out = String::new();
    let mut bound = Vec::new();
    let mut it = params.into_iter();
    for (i, part) in sql.split('?').enumerate() {
        if i > 0 {
            match it.next().unwrap() {
                Value::Bytes(b) if b.starts_with(b"FROM_UNIXTIME(") => {
                    sql_out.push_str(std::str::from_utf8(&b).unwrap())
                }
                v => {
                    sql_out.push('?');
                    bound.push(v);
                }
            }
        }
        sql_out.push_str(part);
    }
    conn.exec_drop(sql_out, bound)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Creates both tables in `db` and makes it the connection's default database.
pub async fn create_tables(conn: &mut Conn, db: &str) {
    conn.query_drop(format!("USE `{db}`")).await.unwrap();
    conn.query_drop(ITEMS_DDL).await.unwrap();
    conn.query_drop(LINKS_DDL).await.unwrap();
}
