//! Generated tables instead of hand-picked ones: every table, value and workload follows from a
//! seed (tests/common/generate.rs), so bugs that depend on column order and combination show
//! up. Each generated table is written on a private server's fresh binlog and checked three
//! ways: the column types Sluice decodes against the table's definition, every row image
//! against `mariadb-binlog -v`, and the rows the decoded changes leave against what `SELECT`
//! returns at every point between ALTERs.
//!
//! A sample of generated tables also goes the whole way on the stack: snapshot, streaming with
//! ALTERs, an incremental snapshot, then the index and the topic (read by Confluent's own
//! Avro deserializer) must both equal the table.
//!
//! `SLUICE_GEN_TABLES` sets how many tables (default 200), `SLUICE_GEN_PIPELINE_TABLES` how
//! many go through the pipeline (default 10), `SLUICE_GEN_SEED` the first seed (table `i` uses
//! seed + i). A failure prints the seed, the table's definition and its first difference.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use common::generate::{self, Catalog, GenColumn, GenTable, Generator, Kind, Values, hex};
use common::private::{PrivateServer, ROW_CDC};
use common::reference;
use common::*;
use mysql_async::prelude::*;
use mysql_async::{Conn, Value as Sql};
use sluice::model::{Change, ColumnType, Op, Position, TableId, TableSchema, Value, time};
use sluice::source::binlog::{BinlogReader, Decoded, file};
use sluice::source::charset::{Charset, Codec, Collations};

const DB: &str = "gen";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
        })
        .unwrap_or(default)
}

/// How the generator's connections talk: in UTC, utf8mb4, strict, with read-committed
/// isolation (fewer gap locks between the two it uses).
const SESSION: [&str; 4] = [
    "SET NAMES utf8mb4",
    "SET time_zone = '+00:00'",
    "SET sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'",
    "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
];

/// A connection to the private server as root.
async fn connect(server: &PrivateServer) -> Conn {
    let opts = mysql_async::OptsBuilder::default()
        .socket(Some(server.socket.to_str().unwrap()))
        .user(Some("root"))
        .init(SESSION.to_vec());
    Conn::new(opts).await.unwrap()
}

/// A connection to the stack's server as its admin, in database `db`.
async fn connect_stack(db: &str) -> Conn {
    let s = stack();
    let mut init: Vec<String> = SESSION.iter().map(|s| s.to_string()).collect();
    init.push(format!("USE `{db}`"));
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(s.mysql_host.clone())
        .tcp_port(s.mysql_port)
        .user(Some(s.admin_user.clone()))
        .pass(Some(s.admin_password.clone()))
        .init(init);
    Conn::new(opts).await.unwrap()
}

/// The server's character sets (all of which Sluice reads), their collations and the pool
/// characters each holds.
async fn catalog(conn: &mut Conn) -> Catalog {
    // MariaDB 10.10+ lists its UCA 14 collations per character set only here.
    let rows: Vec<(String, String)> = conn
        .query(
            "SELECT CHARACTER_SET_NAME, FULL_COLLATION_NAME \
             FROM information_schema.COLLATION_CHARACTER_SET_APPLICABILITY",
        )
        .await
        .unwrap();
    let mut by_charset: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (cs, collation) in rows {
        if cs != "binary" {
            by_charset.entry(cs).or_default().push(collation);
        }
    }
    let mut alphabets = HashMap::new();
    for cs in by_charset.keys() {
        let flags: mysql_async::Row = conn
            .query_first(generate::alphabet_query(cs))
            .await
            .unwrap()
            .unwrap();
        let flags: Vec<Option<i64>> = flags
            .unwrap()
            .into_iter()
            .map(mysql_async::from_value)
            .collect();
        alphabets.insert(cs.clone(), generate::alphabet_of(&flags));
    }
    let engines: Vec<String> = conn
        .query("SELECT ENGINE FROM information_schema.ENGINES WHERE SUPPORT IN ('YES', 'DEFAULT')")
        .await
        .unwrap();
    Catalog {
        charsets: by_charset.into_iter().collect(),
        alphabets,
        aria: engines.iter().any(|e| e == "Aria"),
    }
}

/// A table's rows as `SELECT` returns them at the end of an epoch (the time between two
/// ALTERs): canonical text per column, keyed by the key's canonical text.
struct Epoch {
    /// The table's shape during the epoch.
    table: GenTable,
    /// Binlog offset after the epoch's last statement.
    end: u64,
    rows: BTreeMap<String, BTreeMap<String, String>>,
}

/// One generated table's run.
struct Run {
    seed: u64,
    /// CREATE TABLE and every ALTER, for the failure message.
    ddl: Vec<String>,
    start: u64,
    end: u64,
    epochs: Vec<Epoch>,
}

impl Run {
    fn name(&self) -> String {
        self.epochs[0].table.name.clone()
    }

    fn describe(&self) -> String {
        format!("seed {}:\n  {}", self.seed, self.ddl.join(";\n  "))
    }
}

/// The SQL of one generated workload, run on two connections.
struct Work<'a> {
    a: &'a mut Conn,
    b: &'a mut Conn,
    /// Next key number of the table.
    next_key: u32,
    xa: u32,
}

impl Work<'_> {
    async fn run(&mut self, sql: &str) -> Result<(), String> {
        self.a
            .query_drop(sql)
            .await
            .map_err(|e| format!("the server refused {}: {e}", truncate(sql)))
    }

    /// A new row's literals for every writable column, in `table`'s writable order.
    fn row(&mut self, table: &GenTable, values: &mut Values<'_>) -> Vec<String> {
        let n = self.next_key;
        self.next_key += 1;
        let mut lits = Vec::new();
        for c in table.columns.iter().filter(|c| c.generated.is_none()) {
            let lit = if table.key.contains(&c.name) {
                if table.key[0] == c.name {
                    values.key_value(&c.kind, n)
                } else {
                    // Other key parts: any value; the first part makes the key unique.
                    let any = values.rng.u32(2..100);
                    values.key_value(&c.kind, any)
                }
            } else {
                values.literal(c)
            };
            lits.push(lit);
        }
        lits
    }

    /// One random transaction on `table`: autocommit statements, a transaction (part of it
    /// rolled back to a savepoint, or all of it rolled back), or an XA transaction prepared,
    /// with another transaction committed on the second connection in between, then committed
    /// or rolled back. `Err` when the server refused a statement it should have taken.
    async fn transaction(
        &mut self,
        table: &GenTable,
        values: &mut Values<'_>,
        seed: u64,
    ) -> Result<(), String> {
        let keys = first_keys(self.a, table).await;
        let shape = values.rng.u8(..10);
        let statements: Vec<String> = (0..values.rng.usize(1..=4))
            .map(|_| self.statement(table, values, &keys))
            .collect();
        let mut sql: Vec<String> = Vec::new();
        match shape {
            0..=2 => sql.extend(statements),
            3 | 4 if table.transactional() => {
                sql.push("BEGIN".into());
                let (kept, undone) = statements.split_at(statements.len() / 2);
                sql.extend(kept.iter().cloned());
                sql.push("SAVEPOINT s".into());
                sql.extend(undone.iter().cloned());
                sql.push("ROLLBACK TO SAVEPOINT s".into());
                sql.push("COMMIT".into());
            }
            // A non-transactional table keeps its changes through a rollback.
            5 => {
                sql.push("BEGIN".into());
                sql.extend(statements);
                sql.push("ROLLBACK".into());
            }
            6 | 7 if table.transactional() => {
                self.xa += 1;
                let xid = format!("'x{seed}_{}'", self.xa);
                let mut prepare = vec![format!("XA START {xid}")];
                prepare.extend(statements);
                prepare.extend([format!("XA END {xid}"), format!("XA PREPARE {xid}")]);
                for s in &prepare {
                    self.run(s).await?;
                }
                self.b
                    .query_drop("INSERT INTO xa_noise (v) VALUES ('between')")
                    .await
                    .unwrap();
                let end = if shape == 6 { "COMMIT" } else { "ROLLBACK" };
                sql.push(format!("XA {end} {xid}"));
            }
            _ => {
                sql.push("BEGIN".into());
                sql.extend(statements);
                sql.push("COMMIT".into());
            }
        }
        for s in &sql {
            if let Err(e) = self.run(s).await {
                // Duplicate keys are the workload's own making: the statement failed as a
                // whole and changed nothing. A read-only XA transaction ends at its PREPARE.
                if !e.contains("Duplicate entry") && !e.contains("XAER_NOTA") {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn insert(&mut self, table: &GenTable, values: &mut Values<'_>, rows: usize) -> String {
        let columns: Vec<String> = table
            .columns
            .iter()
            .filter(|c| c.generated.is_none())
            .map(|c| format!("`{}`", c.name))
            .collect();
        let tuples: Vec<String> = (0..rows)
            .map(|_| format!("({})", self.row(table, values).join(", ")))
            .collect();
        format!(
            "INSERT INTO `{}` ({}) VALUES {}",
            table.name,
            columns.join(", "),
            tuples.join(", ")
        )
    }

    /// A random statement on existing rows of `table`, whose keys are `keys` (canonical SQL
    /// literals of the first key part).
    fn statement(&mut self, table: &GenTable, values: &mut Values<'_>, keys: &[String]) -> String {
        let first = &table.key[0];
        let Some(target) = (!keys.is_empty()).then(|| keys[values.rng.usize(..keys.len())].clone())
        else {
            return self.insert(table, values, 1);
        };
        let settable: Vec<&GenColumn> = table
            .columns
            .iter()
            .filter(|c| c.generated.is_none() && !table.key.contains(&c.name))
            .collect();
        match values.rng.u8(..10) {
            0..=2 => {
                let n = values.rng.usize(1..4);
                self.insert(table, values, n)
            }
            3..=5 if !settable.is_empty() => {
                let sets: Vec<String> = (0..values.rng.usize(1..=settable.len().min(4)))
                    .map(|_| {
                        let c = settable[values.rng.usize(..settable.len())];
                        format!("`{}` = {}", c.name, values.literal(c))
                    })
                    .collect();
                format!(
                    "UPDATE `{}` SET {} WHERE `{first}` = {target}",
                    table.name,
                    sets.join(", ")
                )
            }
            6 => {
                let n = self.next_key;
                self.next_key += 1;
                let kind = &table.column(first).kind;
                format!(
                    "UPDATE `{}` SET `{first}` = {} WHERE `{first}` = {target}",
                    table.name,
                    values.key_value(kind, n)
                )
            }
            7 => format!("DELETE FROM `{}` WHERE `{first}` = {target}", table.name),
            8 if !settable.is_empty() => {
                let c = settable[values.rng.usize(..settable.len())];
                format!(
                    "UPDATE `{}` SET `{}` = {} WHERE `{first}` >= {target} LIMIT 3",
                    table.name,
                    c.name,
                    values.literal(c)
                )
            }
            _ => format!(
                "DELETE FROM `{}` WHERE `{first}` <= {target} LIMIT 2",
                table.name
            ),
        }
    }
}

fn truncate(sql: &str) -> String {
    if sql.len() > 300 {
        format!("{}...", &sql[..sql.floor_char_boundary(300)])
    } else {
        sql.to_string()
    }
}

/// SQL literals of the first key part of every row of `table`.
async fn first_keys(conn: &mut Conn, table: &GenTable) -> Vec<String> {
    let first = &table.key[0];
    let expr = match table.column(first).kind {
        Kind::VarBinary(_) | Kind::VarChar { .. } => format!("CONCAT('X''', HEX(`{first}`), '''')"),
        Kind::Date | Kind::DateTime(_) => format!("CONCAT('''', `{first}`, '''')"),
        _ => format!("CAST(`{first}` AS CHAR)"),
    };
    let mut keys: Vec<String> = conn
        .query(format!("SELECT {expr} FROM `{}`", table.name))
        .await
        .unwrap();
    // A hex literal of a VARCHAR key is its bytes in the column's character set.
    if let Kind::VarChar { charset, .. } = &table.column(first).kind {
        for k in &mut keys {
            *k = format!("_{charset} {k}");
        }
    }
    keys
}

/// The expression that reads a column for comparison.
fn select_expr(c: &GenColumn) -> String {
    let n = format!("`{}`", c.name);
    match c.kind {
        Kind::Decimal { .. } => format!("CAST({n} AS CHAR)"),
        Kind::Bit(_) | Kind::Year => format!("{n} + 0"),
        Kind::Date => {
            format!("IF(MONTH({n}) = 0 OR DAYOFMONTH({n}) = 0, NULL, DATE_FORMAT({n}, '%Y-%m-%d'))")
        }
        Kind::DateTime(_) => format!(
            "IF(MONTH({n}) = 0 OR DAYOFMONTH({n}) = 0, NULL, DATE_FORMAT({n}, '%Y-%m-%d %H:%i:%s.%f'))"
        ),
        Kind::Timestamp(_) => {
            format!("IF(UNIX_TIMESTAMP({n}) = 0, NULL, DATE_FORMAT({n}, '%Y-%m-%d %H:%i:%s.%f'))")
        }
        _ => n,
    }
}

/// A `SELECT` value in canonical text.
fn canon_sql(kind: &Kind, v: Sql) -> String {
    match v {
        Sql::NULL => "NULL".into(),
        Sql::Int(i) => i.to_string(),
        Sql::UInt(u) => u.to_string(),
        Sql::Float(f) => format!("f:{:08x}", f.to_bits()),
        Sql::Double(d) => format!("d:{:016x}", d.to_bits()),
        Sql::Time(negative, days, h, m, s, us) => {
            let secs = i64::from(days) * 86_400 + i64::from(h) * 3600 + i64::from(m) * 60;
            let micros = (secs + i64::from(s)) * 1_000_000 + i64::from(us);
            (if negative { -micros } else { micros }).to_string()
        }
        Sql::Bytes(b) => match kind {
            Kind::Binary(_) | Kind::VarBinary(_) | Kind::Blob(_) | Kind::Geometry(_) => hex(&b),
            _ => String::from_utf8(b).unwrap(),
        },
        other => panic!("unexpected SQL value {other:?} for {kind:?}"),
    }
}

/// A decoded value in the same canonical text.
fn canon(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Decimal(d) => d.to_string(),
        Value::String(s) => s.to_string(),
        Value::Float(f) => format!("f:{:08x}", f.to_bits()),
        Value::Double(d) => format!("d:{:016x}", d.to_bits()),
        Value::Bits(b) => b.to_string(),
        Value::Bytes(b) => hex(b),
        Value::Geometry { srid, wkb } => {
            let mut b = srid.to_le_bytes().to_vec();
            b.extend_from_slice(wkb);
            hex(&b)
        }
        Value::Time(us) => us.to_string(),
        Value::Date(days) => time::format_date(i64::from(*days)),
        Value::DateTime(us) | Value::Timestamp(us) => {
            time::format_datetime_micros(*us).replace('T', " ")
        }
        Value::Vector(v) => format!("{v:?}"),
    }
}

/// Every row of `table`, canonical, keyed by the canonical key.
async fn select_rows(
    conn: &mut Conn,
    table: &GenTable,
) -> BTreeMap<String, BTreeMap<String, String>> {
    let exprs: Vec<String> = table.columns.iter().map(select_expr).collect();
    let rows: Vec<mysql_async::Row> = conn
        .exec(
            format!("SELECT {} FROM `{}`", exprs.join(", "), table.name),
            (),
        )
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for row in rows {
        let cols: BTreeMap<String, String> = table
            .columns
            .iter()
            .zip(row.unwrap())
            .map(|(c, v)| (c.name.clone(), canon_sql(&c.kind, v)))
            .collect();
        let key: Vec<&str> = table.key.iter().map(|k| cols[k].as_str()).collect();
        out.insert(key.join("\u{1}"), cols);
    }
    out
}

/// An ALTER for `table`, and the table after it; `None` when none applies. `compatible` keeps
/// to the changes a schema registry's BACKWARD level and an index mapping both take: adding a
/// nullable column, widening an integer or a VARCHAR.
fn alter(
    table: &GenTable,
    generator: &mut Generator<'_>,
    n: usize,
    compatible: bool,
) -> Option<(String, GenTable)> {
    let mut next = table.clone();
    let referenced: BTreeSet<String> = table
        .columns
        .iter()
        .filter_map(|c| c.generated.as_ref().map(|(from, _)| from.clone()))
        .collect();
    let plain: Vec<usize> = (0..table.columns.len())
        .filter(|&i| {
            let c = &table.columns[i];
            c.generated.is_none() && !table.key.contains(&c.name) && !referenced.contains(&c.name)
        })
        .collect();
    let name = &table.name;
    match generator.rng().u8(..4) {
        0 if !compatible && !plain.is_empty() && table.columns.len() > table.key.len() + 1 => {
            let i = plain[generator.rng().usize(..plain.len())];
            let c = next.columns.remove(i);
            Some((
                format!("ALTER TABLE `{name}` DROP COLUMN `{}`", c.name),
                next,
            ))
        }
        1 if !plain.is_empty() => {
            // Widen an integer or a VARCHAR; otherwise rename.
            let i = plain[generator.rng().usize(..plain.len())];
            let c = &mut next.columns[i];
            match &mut c.kind {
                // BIGINT UNSIGNED is a decimal to Avro and the index: no widening into it.
                Kind::Int {
                    bytes: 4,
                    unsigned: true,
                } if compatible => return None,
                Kind::Int { bytes, .. } if *bytes < 8 => {
                    *bytes = match bytes {
                        1 => 2,
                        2 => 3,
                        3 => 4,
                        _ => 8,
                    };
                }
                Kind::VarChar { len, .. } => *len += 7,
                _ if compatible => return None,
                _ => {
                    let old = c.name.clone();
                    c.name = format!("r{n}_{old}");
                    let def = c.clone();
                    return Some((
                        format!(
                            "ALTER TABLE `{name}` CHANGE COLUMN `{old}` {}",
                            column_definition(&def)
                        ),
                        next,
                    ));
                }
            }
            let def = next.columns[i].clone();
            Some((
                format!(
                    "ALTER TABLE `{name}` MODIFY COLUMN {}",
                    column_definition(&def)
                ),
                next,
            ))
        }
        _ => {
            let kind = generator.kind(false);
            let column = GenColumn {
                name: format!("a{n}"),
                kind,
                nullable: true,
                invisible: false,
                generated: None,
            };
            let at = generator.rng().usize(0..=next.columns.len());
            let place = if at == 0 {
                " FIRST".to_string()
            } else {
                format!(" AFTER `{}`", next.columns[at - 1].name)
            };
            let sql = format!(
                "ALTER TABLE `{name}` ADD COLUMN {}{place}",
                column_definition(&column)
            );
            next.columns.insert(at, column);
            Some((sql, next))
        }
    }
}

fn column_definition(c: &GenColumn) -> String {
    let mut d = format!("`{}` {}", c.name, c.kind.sql());
    d.push_str(if c.nullable { " NULL" } else { " NOT NULL" });
    if c.invisible {
        d.push_str(" INVISIBLE");
    }
    d
}

/// Creates table `index` of the run from its seed, writes its workload, and records what
/// `SELECT` returns after every epoch. `Err` when the server refused a statement.
async fn run_table(
    catalog: &Catalog,
    a: &mut Conn,
    b: &mut Conn,
    seed: u64,
    index: usize,
) -> Result<Run, (u64, String)> {
    let mut generator = Generator::new(catalog, seed);
    let mut table = generator.table(&format!("t{index}"));
    let (_, start) = master_status(a).await;
    let mut run = Run {
        seed,
        ddl: vec![table.create()],
        start,
        end: 0,
        epochs: Vec::new(),
    };
    let fail = |run: &Run, e: String| (seed, format!("{e}\n{}", run.describe()));
    let mut work = Work {
        a,
        b,
        next_key: 2,
        xa: 0,
    };
    work.run(&table.create()).await.map_err(|e| fail(&run, e))?;
    let epochs = generator.rng().usize(1..=3);
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x5eed);
    for epoch in 0..epochs {
        let transactions = rng.usize(2..=6);
        let mut values = Values {
            rng: &mut rng,
            catalog,
        };
        if epoch == 0 {
            let n = values.rng.usize(1..=12);
            let sql = work.insert(&table, &mut values, n);
            work.run(&sql).await.map_err(|e| fail(&run, e))?;
        }
        for _ in 0..transactions {
            if work.next_key > 120 {
                break;
            }
            work.transaction(&table, &mut values, seed)
                .await
                .map_err(|e| fail(&run, e))?;
        }
        let (_, end) = master_status(work.a).await;
        run.epochs.push(Epoch {
            table: table.clone(),
            end,
            rows: select_rows(work.a, &table).await,
        });
        if epoch + 1 < epochs
            && let Some((sql, next)) = alter(&table, &mut generator, epoch, false)
        {
            work.run(&sql).await.map_err(|e| fail(&run, e))?;
            run.ddl.push(sql);
            table = next;
        }
    }
    run.end = master_status(work.a).await.1;
    Ok(run)
}

/// Decodes `bytes` (a binlog file named `file`) with Sluice's reader, keeping every table of
/// the database. A decoding error is charged to the table whose range holds the event, and
/// decoding starts over at the next table. Returns the changes and the errors by table.
fn decode(
    bytes: &[u8],
    file_name: &str,
    end: u64,
    collations: &Collations,
    tables: &[TableId],
    runs: &[Run],
) -> (Vec<Change>, BTreeMap<String, String>) {
    let mut changes = Vec::new();
    let mut errors = BTreeMap::new();
    let events: Vec<_> = file::events(&bytes[..end as usize], true)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let fde = events[0];
    let new_reader = |at: u64| {
        let mut r = BinlogReader::new(
            &Position::new(file_name, at),
            tables.iter().cloned(),
            collations.clone(),
            true,
        )
        .unwrap();
        r.on_event(&fde.0, fde.1).unwrap();
        r
    };
    let mut reader = new_reader(4);
    let mut skip_before = 0u64;
    for (header, body) in &events[1..] {
        let start = u64::from(header.log_pos - header.event_size);
        if start < skip_before {
            continue;
        }
        match reader.on_event(header, body) {
            Ok(Decoded::Changes(c)) | Ok(Decoded::Transaction(c, _)) => changes.extend(c),
            Ok(_) => {}
            Err(e) => {
                // Charged to the table whose range holds the event; a table the server refused
                // has no range, and its failure is reported already.
                let (name, next) = match runs.iter().find(|r| r.start <= start && start < r.end) {
                    Some(run) => (run.name(), run.end),
                    None => (
                        format!("(at {start}, a refused table)"),
                        runs.iter()
                            .map(|r| r.start)
                            .find(|&s| s > start)
                            .unwrap_or(end),
                    ),
                };
                errors
                    .entry(name)
                    .or_insert(format!("the decoder stopped: {e}"));
                skip_before = next;
                reader = new_reader(next);
            }
        }
    }
    (changes, errors)
}

/// Checks one table's decoded changes against its epochs' `SELECT`s and its definition.
fn check_against_select(run: &Run, changes: &[&Change]) -> Result<(), String> {
    let mut rows: HashMap<String, (Vec<Value>, Arc<TableSchema>)> = HashMap::new();
    let key_of = |schema: &TableSchema, row: &[Value]| -> String {
        let parts: Vec<String> = schema.key_values(row).map(canon).collect();
        parts.join("\u{1}")
    };
    let mut next = changes.iter().peekable();
    for (e, epoch) in run.epochs.iter().enumerate() {
        let mut touched = BTreeSet::new();
        while let Some(c) = next.next_if(|c| c.source.pos < epoch.end) {
            // The decoded types must be the table's.
            let expected: Vec<(String, ColumnType)> = epoch
                .table
                .columns
                .iter()
                .map(|c| (c.name.clone(), c.kind.decoded()))
                .collect();
            let decoded: Vec<(String, ColumnType)> = c
                .table
                .columns
                .iter()
                .map(|c| (c.name.clone(), c.ty.clone()))
                .collect();
            if decoded != expected && c.op != Op::Truncate {
                let first = expected
                    .iter()
                    .zip(&decoded)
                    .find(|(x, d)| x != d)
                    .map(|(x, d)| format!("column {} is {:?}, decoded as {:?}", x.0, x.1, d.1))
                    .unwrap_or_else(|| {
                        format!(
                            "{} columns decoded, {} defined",
                            decoded.len(),
                            expected.len()
                        )
                    });
                return Err(format!("epoch {e}: {first}"));
            }
            if let Some(before) = &c.before {
                let k = key_of(&c.table, before);
                rows.remove(&k);
                touched.insert(k);
            }
            if let Some(after) = &c.after {
                let k = key_of(&c.table, after);
                rows.insert(k.clone(), (after.clone(), c.table.clone()));
                touched.insert(k);
            }
        }
        for k in &touched {
            match (rows.get(k), epoch.rows.get(k)) {
                (None, None) => {}
                (Some(_), None) => {
                    return Err(format!(
                        "epoch {e}: row {k:?} is decoded but not in the table"
                    ));
                }
                (None, Some(_)) => {
                    return Err(format!(
                        "epoch {e}: row {k:?} is in the table but was decoded as deleted"
                    ));
                }
                (Some((row, schema)), Some(selected)) => {
                    for (column, v) in schema.columns.iter().zip(row) {
                        let ours = canon(v);
                        let theirs = &selected[&column.name];
                        if &ours != theirs {
                            return Err(format!(
                                "epoch {e}: row {k:?} column {}: decoded {ours:?}, SELECT {theirs:?}",
                                column.name
                            ));
                        }
                    }
                }
            }
        }
        if rows.len() != epoch.rows.len() {
            return Err(format!(
                "epoch {e}: {} rows decoded, {} in the table",
                rows.len(),
                epoch.rows.len()
            ));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_tables_decode_as_mariadb_binlog_and_select_read_them() {
    let tables = env_or("SLUICE_GEN_TABLES", 200) as usize;
    let first_seed = env_or("SLUICE_GEN_SEED", 20_261_129);
    println!("generated tables: {tables}, seeds {first_seed}..");
    let server = tokio::task::spawn_blocking(|| PrivateServer::start(&ROW_CDC))
        .await
        .unwrap();
    let mut a = connect(&server).await;
    let mut b = connect(&server).await;
    a.query_drop(format!("CREATE DATABASE {DB}")).await.unwrap();
    for c in [&mut a, &mut b] {
        c.query_drop(format!("USE {DB}")).await.unwrap();
    }
    a.query_drop("CREATE TABLE xa_noise (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(10))")
        .await
        .unwrap();
    let catalog = catalog(&mut a).await;
    // The collations and character sets as Sluice's source reads them.
    let collations = sluice::source::mysql::collations(&mut a).await.unwrap();
    let datadir: String = a.query_first("SELECT @@datadir").await.unwrap().unwrap();

    let mut failures: Vec<String> = Vec::new();
    let (mut checked, mut images) = (0usize, 0usize);
    for batch in (0..tables).collect::<Vec<_>>().chunks(50) {
        a.query_drop("FLUSH BINARY LOGS").await.unwrap();
        let (file_name, _) = master_status(&mut a).await;
        let mut runs = Vec::new();
        for &i in batch {
            let seed = first_seed + i as u64;
            match run_table(&catalog, &mut a, &mut b, seed, i).await {
                Ok(run) => runs.push(run),
                Err((seed, e)) => failures.push(format!("table t{i}, seed {seed}: {e}")),
            }
        }
        let (end_file, end) = master_status(&mut a).await;
        assert_eq!(file_name, end_file, "the binlog rotated during a batch");
        let path = Path::new(&datadir).join(&file_name);
        let bytes = std::fs::read(&path).unwrap();
        let ids: Vec<TableId> = runs
            .iter()
            .map(|r| TableId::new(DB, r.name()))
            .chain([TableId::new(DB, "xa_noise")])
            .collect();
        let (changes, errors) = decode(&bytes, &file_name, end, &collations, &ids, &runs);
        let refs = reference::reference(&path, end, DB);
        for run in &runs {
            let name = run.name();
            if let Some(e) = errors.get(&name) {
                failures.push(format!("table {name}, {e}\n{}", run.describe()));
                continue;
            }
            let ours: Vec<Change> = changes
                .iter()
                .filter(|c| c.table.id.table == name)
                .cloned()
                .collect();
            let theirs: Vec<reference::Reference> =
                refs.iter().filter(|r| r.table == name).cloned().collect();
            // The expected type and encoding of a column: the table's own, by column name,
            // as of the epoch the change belongs to.
            let expect = |change: &Change, column: &sluice::model::Column| {
                let epoch = run
                    .epochs
                    .iter()
                    .find(|e| change.source.pos < e.end)
                    .unwrap_or(run.epochs.last().unwrap());
                let c = epoch.table.columns.iter().find(|c| c.name == column.name);
                let codec = |kind: &Kind| match kind.charset().map(|cs| collations.named(cs)) {
                    Some(Charset::Text(codec)) => codec,
                    _ => Codec::Utf8,
                };
                c.map_or((column.ty.clone(), Codec::Utf8), |c| {
                    (c.kind.decoded(), codec(&c.kind))
                })
            };
            let compared = reference::compare(&ours, &theirs, &expect).and_then(|n| {
                let refs: Vec<&Change> = ours.iter().collect();
                check_against_select(run, &refs).map(|()| n)
            });
            match compared {
                Ok(n) => {
                    checked += 1;
                    images += n;
                }
                Err(e) => failures.push(format!("table {name}: {e}\n{}", run.describe())),
            }
        }
    }
    println!("{checked} tables and {images} row images agreed with both references");
    if !failures.is_empty() {
        // One line per table, then the first few in full.
        for f in &failures {
            println!("DIFFERS {}", f.lines().next().unwrap_or_default());
        }
        let mut report = format!("{} of {tables} generated tables differ:\n", failures.len());
        for f in failures.iter().take(8) {
            writeln!(report, "\n{f}").unwrap();
        }
        panic!("{report}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_tables_reach_the_topic_and_the_index_exactly() {
    let count = env_or("SLUICE_GEN_PIPELINE_TABLES", 10) as usize;
    let first_seed = env_or("SLUICE_GEN_SEED", 20_261_129) + 1_000_000;
    println!("pipeline tables: {count}, seeds {first_seed}..");
    let names: Vec<String> = (0..count).map(|i| format!("t{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (mut admin, setup) = fresh("it_gen", &refs).await;
    let mut a = connect_stack(&setup.db).await;
    let mut b = connect_stack(&setup.db).await;
    a.query_drop("CREATE TABLE xa_noise (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(10))")
        .await
        .unwrap();
    let catalog = catalog(&mut a).await;
    let mut tables = Vec::new();
    let mut ddl = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let seed = first_seed + i as u64;
        let mut generator = Generator::new(&catalog, seed);
        let table = generator.table(name);
        a.query_drop(table.create())
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let mut work = Work {
            a: &mut a,
            b: &mut b,
            next_key: 2,
            xa: 0,
        };
        let mut rng = fastrand::Rng::with_seed(seed ^ 0x5eed);
        let mut values = Values {
            rng: &mut rng,
            catalog: &catalog,
        };
        let sql = work.insert(&table, &mut values, 20);
        work.run(&sql)
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        ddl.push(format!("seed {seed}: {}", table.create()));
        tables.push((seed, generator, table, work.next_key, rng));
    }
    // Small chunks, so keyset pages fall inside composite and collated keys; three tables
    // copied at once.
    let config =
        setup.write_config_with_source("snapshot_chunk_rows = 7\nsnapshot_parallelism = 3");
    setup.signal_table(&mut admin, &config).await;
    let mut sluice = setup.start("all");
    sluice.wait_for_log("streaming the binlog", PATIENCE);
    // Streaming: transactions of every shape, a schema change the registry and the index both
    // accept, more transactions; and a change the binlog never shows.
    for (seed, generator, table, next_key, rng) in &mut tables {
        let mut work = Work {
            a: &mut a,
            b: &mut b,
            next_key: *next_key,
            xa: 0,
        };
        let mut values = Values {
            rng,
            catalog: &catalog,
        };
        for round in 0..2 {
            for _ in 0..4 {
                work.transaction(table, &mut values, *seed)
                    .await
                    .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            }
            if round == 0
                && let Some((sql, next)) = alter(table, generator, 0, true)
            {
                work.run(&sql)
                    .await
                    .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
                ddl.push(format!("seed {seed}: {sql}"));
                *table = next;
            }
        }
        let settable: Vec<&GenColumn> = table
            .columns
            .iter()
            .filter(|c| c.generated.is_none() && !table.key.contains(&c.name))
            .collect();
        if let Some(c) = settable.first() {
            let literal = values.literal(c);
            let hidden = format!(
                "UPDATE `{}` SET `{}` = {literal} LIMIT 3",
                table.name, c.name
            );
            exec(
                &mut admin,
                &[
                    "SET SESSION sql_log_bin = 0",
                    &hidden,
                    "SET SESSION sql_log_bin = 1",
                ],
            )
            .await;
        }
    }
    // An incremental snapshot of every table brings what the binlog did not show, and gives
    // every document the columns added since its row last changed.
    for name in &names {
        request_snapshot(&config, &format!("{}.{name}", setup.db));
    }
    sluice.wait_for_logs("incremental snapshot done", count, CATCH_UP);
    let described = ddl.join("\n");
    for name in &names {
        let db = setup.db.clone();
        let expected = expected_docs(&mut admin, &db, name).await;
        setup.assert_index_matches(&mut admin, name, CATCH_UP).await;
        // The topic, read by Confluent's deserializer, holds the same rows.
        let topic = setup.topic(name);
        let out = std::process::Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/consume.py"))
            .args([&stack().brokers, &topic, &stack().registry_url])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}\n{described}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let rows: BTreeMap<String, serde_json::Value> =
            serde_json::from_value(report["rows"].clone()).unwrap();
        if rows != expected {
            let diff = describe_difference(&format!("topic {topic}"), &expected, &rows);
            panic!("{diff}\ntables:\n{described}");
        }
    }
    assert!(sluice.terminate(PATIENCE).success());
}
