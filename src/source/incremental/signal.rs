//! The signal table: Debezium's `execute-snapshot` requests, the watermark rows, and the
//! SQL that creates, writes and finds the table.

use mysql_async::Conn;
use mysql_async::prelude::*;
use serde::Deserialize;

use crate::config::SourceConfig;
use crate::model::{TableId, TableSchema, Value};
use crate::source::SourceError;
use crate::source::mysql::{self, connect, query_error, quote};

/// Signal type of a low watermark.
pub(super) const OPEN: &str = "snapshot-window-open";
/// Signal type of a high watermark.
pub(super) const CLOSE: &str = "snapshot-window-close";
/// Signal type of a snapshot request.
pub const EXECUTE: &str = "execute-snapshot";

/// The statements that create the signal table `table` (`migrations/003_sluice_signal.sql`
/// holds them for the default name).
pub fn setup_statements(table: &TableId) -> [String; 2] {
    [
        format!("CREATE DATABASE IF NOT EXISTS {}", quote(&table.db)),
        format!(
            "CREATE TABLE IF NOT EXISTS {}.{} (\n  id   VARCHAR(64) NOT NULL PRIMARY KEY,\n  \
             type VARCHAR(32) NOT NULL,\n  data TEXT        NULL\n) ENGINE = InnoDB",
            quote(&table.db),
            quote(&table.table)
        ),
    ]
}

/// The `data` of an `execute-snapshot` signal, as Debezium writes it:
/// `{"data-collections": ["db.t"], "additional-conditions": [{"data-collection": "db.t",
/// "filter": "id > 5"}]}`.
#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ExecuteSnapshot {
    /// Tables to snapshot, `db.table`.
    pub data_collections: Vec<String>,
    /// Debezium's snapshot type; only `incremental` (the default) is done here.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Per-table SQL conditions: only matching rows are copied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_conditions: Vec<Condition>,
}

/// A condition of an [`ExecuteSnapshot`].
#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Condition {
    /// The table, `db.table`.
    pub data_collection: String,
    /// The SQL condition.
    pub filter: String,
}

impl ExecuteSnapshot {
    /// The tables asked for, each with its condition.
    pub(super) fn tables(&self) -> Result<Vec<(TableId, Option<String>)>, String> {
        if let Some(kind) = &self.kind
            && !kind.eq_ignore_ascii_case("incremental")
        {
            return Err(format!(
                "snapshot type {kind:?}: only \"incremental\" snapshots run while streaming"
            ));
        }
        self.data_collections
            .iter()
            .map(|name| {
                let table = TableId::parse(name)
                    .ok_or_else(|| format!("{name:?} is not of the form db.table"))?;
                let filter = self
                    .additional_conditions
                    .iter()
                    .find(|c| TableId::parse(&c.data_collection).as_ref() == Some(&table))
                    .map(|c| c.filter.clone());
                Ok((table, filter))
            })
            .collect()
    }
}

/// A row of the signal table, as the stream reads it.
#[derive(Debug, PartialEq)]
pub(super) enum Signal {
    Open(String),
    Close(String),
    Execute { id: String, data: Option<String> },
    Other { id: String, kind: String },
}

impl Signal {
    /// Reads an inserted or updated signal row.
    pub(super) fn of(schema: &TableSchema, row: &[Value]) -> Option<Signal> {
        let text = |name: &str| {
            let i = schema.columns.iter().position(|c| c.name == name)?;
            match &row[i] {
                Value::String(s) => Some(s.to_string()),
                _ => None,
            }
        };
        let (id, kind, data) = (text("id")?, text("type")?, text("data"));
        Some(match kind.as_str() {
            OPEN => Signal::Open(data.unwrap_or_default()),
            CLOSE => Signal::Close(data.unwrap_or_default()),
            EXECUTE => Signal::Execute { id, data },
            _ => Signal::Other { id, kind },
        })
    }
}

/// A window id no earlier window had: time and randomness.
pub(super) fn new_window_id() -> String {
    format!(
        "{:x}-{:016x}",
        crate::model::time::now_ms(),
        fastrand::u64(..)
    )
}

/// Writes an `execute-snapshot` signal for `table` and returns its id (`sluice snapshot`).
pub async fn request(
    cfg: &SourceConfig,
    table: &TableId,
    filter: Option<&str>,
) -> Result<String, SourceError> {
    let signal = cfg.signal_table.clone();
    let mut conn = connect(cfg).await?;
    let data = ExecuteSnapshot {
        data_collections: vec![table.to_string()],
        kind: Some("incremental".into()),
        additional_conditions: filter
            .map(|f| Condition {
                data_collection: table.to_string(),
                filter: f.to_string(),
            })
            .into_iter()
            .collect(),
    };
    let id = format!("sluice-snapshot-{}", new_window_id());
    let sql = format!(
        "INSERT INTO {}.{} (id, type, data) VALUES (?, ?, ?)",
        quote(&signal.db),
        quote(&signal.table)
    );
    let data = serde_json::to_string(&data).expect("the signal serializes");
    conn.exec_drop(sql, (&id, EXECUTE, data))
        .await
        .map_err(|e| match &e {
            mysql_async::Error::Server(s) if s.code == 1146 => SourceError::Precondition(format!(
                "the signal table {signal} does not exist; create it with `sluice setup` (or \
                 migrations/003_sluice_signal.sql)"
            )),
            _ => query_error(
                "writing the snapshot signal (grant INSERT on the signal table)",
                e,
            ),
        })?;
    Ok(id)
}

/// Creates the signal table (`sluice setup`).
pub async fn setup(cfg: &SourceConfig) -> Result<TableId, SourceError> {
    let signal = cfg.signal_table.clone();
    let mut conn = connect(cfg).await?;
    for sql in setup_statements(&signal) {
        conn.query_drop(sql).await.map_err(|e| {
            query_error(
                "creating the signal table (run migrations/003_sluice_signal.sql as an \
                 administrator instead, or grant CREATE on its database)",
                e,
            )
        })?;
    }
    Ok(signal)
}

/// The signal table's schema, if it exists.
pub async fn signal_schema(
    conn: &mut Conn,
    cfg: &SourceConfig,
) -> Result<Option<TableSchema>, SourceError> {
    let signal = cfg.signal_table.clone();
    let exists: Option<u8> = conn
        .exec_first(
            "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (&signal.db, &signal.table),
        )
        .await
        .map_err(|e| query_error("looking for the signal table", e))?;
    if exists.is_none() {
        return Ok(None);
    }
    Ok(Some(mysql::table_schema(conn, &signal, None).await?))
}
