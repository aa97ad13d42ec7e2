//! What to capture: `tables` and `exclude_tables` patterns, `[keys]`, and the `[columns]`
//! rules, parsed once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use serde::Deserialize;

use super::{Problems, Secret};
use crate::model::TableId;
use crate::wire::topic;

/// A `database.table` pattern; `*` matches any run of characters, `?` one character.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TablePattern {
    /// Database part.
    pub db: String,
    /// Table part.
    pub table: String,
}

impl TablePattern {
    /// Parses `db.table`; `None` unless there are exactly two non-empty parts.
    pub fn parse(s: &str) -> Option<Self> {
        let (db, table) = s.split_once('.')?;
        let valid = |p: &str| !p.is_empty() && !p.contains('.') && !p.contains(char::is_whitespace);
        (valid(db) && valid(table)).then(|| TablePattern {
            db: db.into(),
            table: table.into(),
        })
    }

    /// The one table this names, when it has no wildcard.
    pub fn exact(&self) -> Option<TableId> {
        let plain = |p: &str| !p.contains(['*', '?']);
        (plain(&self.db) && plain(&self.table)).then(|| TableId::new(&self.db, &self.table))
    }

    /// Whether `t` matches.
    pub fn matches(&self, t: &TableId) -> bool {
        glob(&self.db, &t.db) && glob(&self.table, &t.table)
    }
}

impl fmt::Display for TablePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.db, self.table)
    }
}

/// A `database.table.column` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnPattern {
    /// The table part.
    pub table: TablePattern,
    /// The column part.
    pub column: String,
}

impl ColumnPattern {
    /// Parses `db.table.column`.
    pub fn parse(s: &str) -> Option<Self> {
        let (table, column) = s.rsplit_once('.')?;
        (!column.is_empty()).then_some(())?;
        Some(ColumnPattern {
            table: TablePattern::parse(table)?,
            column: column.into(),
        })
    }

    /// Whether column `column` of table `t` matches.
    pub fn matches(&self, t: &TableId, column: &str) -> bool {
        self.table.matches(t) && glob(&self.column, column)
    }
}

/// Shell-style matching of `text` against `pattern` with `*` and `?`.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// `[columns]` as written: `database.table.column` patterns (`*` and `?` match within a
/// part).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ColumnsFile {
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    hash: Vec<String>,
    #[serde(default)]
    hash_salt: Secret,
    #[serde(default)]
    mask: Vec<String>,
    #[serde(default = "default_mask")]
    mask_with: String,
}

fn default_mask() -> String {
    "****".into()
}

/// `[columns]`: what happens to columns before anything leaves the source.
#[derive(Debug, Clone, Default)]
pub struct ColumnsConfig {
    /// Columns dropped from every record.
    pub exclude: Vec<ColumnPattern>,
    /// Columns replaced by the hex SHA-256 of `hash_salt` followed by the value: joins still
    /// work, the value does not leave.
    pub hash: Vec<ColumnPattern>,
    /// Salt of `hash`; keep it secret, or the hashes of guessable values can be reversed.
    pub hash_salt: Secret,
    /// Columns whose non-null values are replaced by `mask_with`.
    pub mask: Vec<ColumnPattern>,
    /// The constant masked columns carry.
    pub mask_with: String,
}

impl ColumnsFile {
    pub(super) fn build(self, p: &mut Problems) -> ColumnsConfig {
        let columns = ColumnsConfig {
            exclude: column_patterns("columns.exclude", &self.exclude, p),
            hash: column_patterns("columns.hash", &self.hash, p),
            mask: column_patterns("columns.mask", &self.mask, p),
            hash_salt: self.hash_salt,
            mask_with: self.mask_with,
        };
        if !self.hash.is_empty() && columns.hash_salt.is_empty() {
            p.push(
                "`columns.hash` is set without `columns.hash_salt`: unsalted hashes of \
                 guessable values can be reversed; set a secret salt",
            );
        }
        columns
    }
}

/// The patterns of the list under `key`, each one that does not parse a problem.
pub(super) fn column_patterns(key: &str, list: &[String], p: &mut Problems) -> Vec<ColumnPattern> {
    list.iter()
        .filter_map(|col| {
            let parsed = ColumnPattern::parse(col);
            if parsed.is_none() {
                p.push(format!(
                    "`{key}`: {col:?} is not of the form \"database.table.column\""
                ));
            }
            parsed
        })
        .collect()
}

/// `tables`: the captured patterns, each giving a valid topic name, none twice.
pub(super) fn captured(tables: &[String], prefix: &str, p: &mut Problems) -> Vec<TablePattern> {
    if tables.is_empty() {
        p.push("`tables` is empty: list the tables to capture, e.g. tables = [\"shop.orders\"]");
    }
    let mut seen = HashSet::new();
    let mut patterns = Vec::new();
    for t in tables {
        let Some(pattern) = TablePattern::parse(t) else {
            p.push(format!(
                "`tables`: {t:?} is not of the form \"database.table\""
            ));
            continue;
        };
        if !seen.insert(pattern.clone()) {
            p.push(format!("`tables`: {t:?} is listed twice"));
        }
        let topic = format!("{prefix}.{pattern}").replace(['*', '?'], "x");
        if !topic::is_valid(&topic) {
            p.push(format!(
                "`tables`: {t:?} gives topic {topic:?}, which Kafka does not accept (only \
                 ASCII letters, digits, '.', '_', '-', at most 249 characters)"
            ));
        }
        patterns.push(pattern);
    }
    patterns
}

/// `exclude_tables`.
pub(super) fn excluded(tables: &[String], p: &mut Problems) -> Vec<TablePattern> {
    tables
        .iter()
        .filter_map(|t| {
            let parsed = TablePattern::parse(t);
            if parsed.is_none() {
                p.push(format!(
                    "`exclude_tables`: {t:?} is not of the form \"database.table\""
                ));
            }
            parsed
        })
        .collect()
}

/// `[keys]`: the columns that key each named table's records.
pub(super) fn keys(
    keys: BTreeMap<String, Vec<String>>,
    p: &mut Problems,
) -> HashMap<TableId, Vec<String>> {
    let mut parsed = HashMap::new();
    for (table, columns) in keys {
        if columns.is_empty() {
            p.push(format!("`keys`: {table:?} names no columns"));
        }
        match TableId::parse(&table) {
            Some(id) => {
                parsed.insert(id, columns);
            }
            None => p.push(format!(
                "`keys`: {table:?} is not of the form \"database.table\""
            )),
        }
    }
    parsed
}
