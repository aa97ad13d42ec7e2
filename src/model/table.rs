//! Tables and their columns as the source read them.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Value;

/// A table, `database.table`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TableId {
    /// Database (schema) name.
    pub db: String,
    /// Table name.
    pub table: String,
}

impl TableId {
    /// Builds a table id from its two parts.
    pub fn new(db: impl Into<String>, table: impl Into<String>) -> Self {
        Self {
            db: db.into(),
            table: table.into(),
        }
    }

    /// Parses `db.table`; `None` unless there are exactly two non-empty parts.
    pub fn parse(s: &str) -> Option<Self> {
        let (db, table) = s.split_once('.')?;
        let valid = |p: &str| !p.is_empty() && !p.contains('.') && !p.contains(char::is_whitespace);
        (valid(db) && valid(table)).then(|| Self::new(db, table))
    }
}

impl fmt::Display for TableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.db, self.table)
    }
}

/// The column types Sluice decodes. Anything else stops the table with an error naming it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ColumnType {
    /// TINYINT (1 byte), SMALLINT (2), MEDIUMINT (3), INT (4), BIGINT (8).
    Integer {
        /// Storage width in bytes.
        bytes: u8,
        /// `UNSIGNED`.
        unsigned: bool,
    },
    /// DECIMAL(precision, scale).
    Decimal {
        /// Total digits.
        precision: u8,
        /// Digits after the point.
        scale: u8,
    },
    /// FLOAT: IEEE single precision.
    Float,
    /// DOUBLE: IEEE double precision.
    Double,
    /// BIT(bits), 1..=64.
    Bit {
        /// Declared width.
        bits: u8,
    },
    /// CHAR, VARCHAR and the TEXT family in any character set Sluice can transcode to UTF-8
    /// (MariaDB's JSON is LONGTEXT and arrives here too).
    Text,
    /// BINARY, VARBINARY and the BLOB family: raw bytes.
    Bytes,
    /// ENUM, with its labels in declaration order (index 1 is the first label).
    Enum(Arc<[String]>),
    /// SET, with its labels in bit order.
    Set(Arc<[String]>),
    /// MySQL's binary JSON, decoded to JSON text.
    Json,
    /// GEOMETRY and its subtypes: SRID plus well-known binary.
    Geometry,
    /// DATE.
    Date,
    /// YEAR: 1901..=2155, or 0 for the zero year `0000`.
    Year,
    /// TIME(fsp): a signed duration up to 838:59:59.
    Time {
        /// Fractional second digits, 0..=6.
        fsp: u8,
    },
    /// DATETIME(fsp): wall-clock time without a zone.
    DateTime {
        /// Fractional second digits, 0..=6.
        fsp: u8,
    },
    /// TIMESTAMP(fsp): an instant, stored in UTC.
    Timestamp {
        /// Fractional second digits, 0..=6.
        fsp: u8,
    },
    /// MySQL 9's VECTOR(dims): up to `dims` IEEE single-precision numbers.
    Vector {
        /// Declared dimensions (0 when the binlog does not say: binlog_row_metadata=MINIMAL).
        dims: u32,
    },
}

impl ColumnType {
    /// The SQL spelling, for messages and schema documentation.
    pub fn sql_name(&self) -> String {
        match self {
            ColumnType::Integer { bytes, unsigned } => {
                let name = match bytes {
                    1 => "TINYINT",
                    2 => "SMALLINT",
                    3 => "MEDIUMINT",
                    4 => "INT",
                    _ => "BIGINT",
                };
                if *unsigned {
                    format!("{name} UNSIGNED")
                } else {
                    name.to_string()
                }
            }
            ColumnType::Decimal { precision, scale } => format!("DECIMAL({precision},{scale})"),
            ColumnType::Float => "FLOAT".to_string(),
            ColumnType::Double => "DOUBLE".to_string(),
            ColumnType::Bit { bits } => format!("BIT({bits})"),
            ColumnType::Text => "TEXT".to_string(),
            ColumnType::Bytes => "BLOB".to_string(),
            ColumnType::Enum(_) => "ENUM".to_string(),
            ColumnType::Set(_) => "SET".to_string(),
            ColumnType::Json => "JSON".to_string(),
            ColumnType::Geometry => "GEOMETRY".to_string(),
            ColumnType::Date => "DATE".to_string(),
            ColumnType::Year => "YEAR".to_string(),
            ColumnType::Time { fsp } => format!("TIME({fsp})"),
            ColumnType::DateTime { fsp } => format!("DATETIME({fsp})"),
            ColumnType::Timestamp { fsp } => format!("TIMESTAMP({fsp})"),
            ColumnType::Vector { dims } => format!("VECTOR({dims})"),
        }
    }
}

/// One column of a table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// Column name as the database spells it.
    pub name: String,
    /// Decoded type.
    pub ty: ColumnType,
    /// Whether the column accepts NULL.
    pub nullable: bool,
    /// The column's comment, from information_schema (the binlog does not carry comments;
    /// schemas read from it keep the last comment known for the column's name).
    #[serde(default)]
    pub comment: Option<String>,
}

impl Column {
    /// A column named `name` of type `ty`, without a comment.
    pub fn new(name: impl Into<String>, ty: ColumnType, nullable: bool) -> Self {
        Column {
            name: name.into(),
            ty,
            nullable,
            comment: None,
        }
    }
}

/// The indexes of the columns named `names`, in that order; `Err` names the first missing one.
pub fn column_indices<'n>(columns: &[Column], names: &'n [String]) -> Result<Vec<usize>, &'n str> {
    names
        .iter()
        .map(|n| columns.iter().position(|c| &c.name == n).ok_or(n.as_str()))
        .collect()
}

/// A table's shape at one point of the binlog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSchema {
    /// Which table.
    pub id: TableId,
    /// Columns in table order.
    pub columns: Vec<Column>,
    /// Indexes into `columns` of the primary key, in key order. Never empty.
    pub key: Vec<usize>,
}

impl TableSchema {
    /// The primary-key values of a row, in key order.
    pub fn key_values<'r>(
        &self,
        row: &'r [Value],
    ) -> impl Iterator<Item = &'r Value> + use<'_, 'r> {
        self.key.iter().map(move |&i| &row[i])
    }
}

/// `db.table (col TYPE [NULL], ...) KEY (col, ...)`, for operators.
impl fmt::Display for TableSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (", self.id)?;
        for (i, c) in self.columns.iter().enumerate() {
            let sep = if i > 0 { ", " } else { "" };
            let null = if c.nullable { " NULL" } else { "" };
            write!(f, "{sep}{} {}{null}", c.name, c.ty.sql_name())?;
        }
        let key: Vec<&str> = self
            .key
            .iter()
            .map(|&i| self.columns[i].name.as_str())
            .collect();
        write!(f, ") KEY ({})", key.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_table_ids() {
        assert_eq!(
            TableId::parse("shop.orders"),
            Some(TableId::new("shop", "orders"))
        );
        for bad in ["shop", "shop.", ".orders", "a.b.c", "a b.c", ""] {
            assert_eq!(TableId::parse(bad), None, "{bad}");
        }
    }
}
