//! The server side of the source: connecting, checking that the server can feed a CDC reader,
//! and reading table definitions from `information_schema` for the snapshot.

use mysql_async::prelude::*;
use mysql_async::{Conn, Opts, OptsBuilder, SslOpts};

use std::collections::HashMap;
use std::io::ErrorKind;

use tokio_util::sync::CancellationToken;

use super::SourceError;
use super::charset::{self, CharTable, Collations};
use crate::config::{SourceConfig, TablePattern, TlsMode};
use crate::model::{Column, ColumnType, Position, TableId, TableSchema, column_indices};
use crate::retry::Backoff;

/// Connection options from the config; TCP_NODELAY because the binlog stream and snapshot are
/// many small round trips at start.
pub fn opts(cfg: &SourceConfig) -> Opts {
    let ssl = match cfg.tls {
        TlsMode::Disabled => None,
        mode => {
            let roots = cfg.tls_ca_file.iter().map(|p| p.clone().into()).collect();
            Some(
                SslOpts::default()
                    .with_root_certs(roots)
                    .with_danger_accept_invalid_certs(mode == TlsMode::Required)
                    .with_danger_skip_domain_validation(mode != TlsMode::VerifyIdentity),
            )
        }
    };
    OptsBuilder::default()
        .ip_or_hostname(cfg.host.clone())
        .tcp_port(cfg.port.get())
        .user(Some(cfg.user.clone()))
        .pass((!cfg.password.is_empty()).then(|| cfg.password.expose().to_string()))
        .prefer_socket(false)
        .tcp_nodelay(true)
        .ssl_opts(ssl)
        .into()
}

/// Connects, waiting with backoff while nothing answers at the server's address (not started
/// yet, restarting): services start in any order. A refusal (credentials, TLS, grants) still
/// stops at once. `None` if `shutdown` came first.
pub async fn connect_waiting(
    cfg: &SourceConfig,
    shutdown: &CancellationToken,
) -> Result<Option<Conn>, SourceError> {
    let mut backoff = Backoff::default();
    loop {
        let e = match connect(cfg).await {
            Ok(conn) => return Ok(Some(conn)),
            Err(e) => e,
        };
        let unreachable = matches!(
            &e,
            SourceError::Connect { source: mysql_async::Error::Io(mysql_async::IoError::Io(io)), .. }
                if matches!(
                    io.kind(),
                    ErrorKind::ConnectionRefused
                        | ErrorKind::ConnectionReset
                        | ErrorKind::ConnectionAborted
                        | ErrorKind::NotConnected
                        | ErrorKind::TimedOut
                        | ErrorKind::HostUnreachable
                        | ErrorKind::NetworkUnreachable
                )
        );
        if !unreachable {
            return Err(e);
        }
        let next = "the database is not reachable; waiting for it";
        if !backoff.wait_out(e, next, shutdown).await {
            return Ok(None);
        }
    }
}

/// Opens a connection, naming the server and user (never the password) if it fails.
pub async fn connect(cfg: &SourceConfig) -> Result<Conn, SourceError> {
    Conn::new(opts(cfg))
        .await
        .map_err(|source| SourceError::Connect {
            addr: format!("{}:{}", cfg.host, cfg.port),
            user: cfg.user.clone(),
            source,
        })
}

/// Wraps a server error with what Sluice was doing and, for privilege errors, the grant.
pub fn query_error(what: &'static str, e: mysql_async::Error) -> SourceError {
    if let mysql_async::Error::Server(s) = &e
        && matches!(s.code, 1142 | 1143 | 1227 | 1044)
    {
        return SourceError::Privilege {
            what,
            message: s.message.clone(),
        };
    }
    SourceError::Query { what, source: e }
}

/// Facts about the server the source needs.
pub struct ServerInfo {
    /// `@@server_id`, reported in the source block of snapshot rows.
    pub server_id: u32,
    /// Whether events carry a CRC32 (`binlog_checksum=CRC32`).
    pub checksums: bool,
}

/// Checks that the server writes a binlog a row-level reader can use, and that the user may
/// read it. Each failure names the setting or grant that fixes it.
pub async fn check_server(conn: &mut Conn) -> Result<ServerInfo, SourceError> {
    type Settings = (u32, Option<String>, Option<String>, Option<String>);
    let row: Option<Settings> = conn
        .query_first("SELECT @@server_id, @@log_bin, @@binlog_format, @@binlog_row_image")
        .await
        .map_err(|e| query_error("reading server settings", e))?;
    let (server_id, log_bin, format, image) = row.unwrap_or_default();
    let precondition = |m: String| Err(SourceError::Precondition(m));
    if log_bin.as_deref() != Some("1") {
        return precondition(
            "the server does not write a binary log; start it with log_bin (e.g. --log-bin=binlog)"
                .into(),
        );
    }
    if format.as_deref() != Some("ROW") {
        return precondition(format!(
            "binlog_format is {}; set binlog_format=ROW on the server (statements cannot be turned into row changes)",
            format.unwrap_or_default()
        ));
    }
    if image.as_deref() != Some("FULL") {
        let image = image.unwrap_or_default();
        let left_out = match image.as_str() {
            "MINIMAL" => "an update logs only the key and the changed columns",
            "NOBLOB" => "unchanged BLOB and TEXT columns are left out",
            "FULL_NODUP" => {
                "MariaDB's FULL_NODUP leaves an update's unchanged columns out of its after image"
            }
            _ => "images that leave out columns cannot become whole documents",
        };
        return precondition(format!(
            "binlog_row_image is {image}; set binlog_row_image=FULL on the server ({left_out}), and keep clients from setting it otherwise for their sessions"
        ));
    }
    let metadata: Option<String> = match conn.query_first("SELECT @@binlog_row_metadata").await {
        Ok(v) => v,
        Err(mysql_async::Error::Server(e)) if e.code == 1193 => {
            return precondition(
                "the server has no binlog_row_metadata setting; Sluice needs MariaDB >= 10.5 or MySQL >= 8.0.1".into(),
            );
        }
        Err(e) => return Err(query_error("reading binlog_row_metadata", e)),
    };
    if metadata.as_deref() != Some("FULL") {
        return precondition(format!(
            "binlog_row_metadata is {}; set binlog_row_metadata=FULL on the server (MariaDB >= 10.5, MySQL >= 8.0.1; MySQL's default is MINIMAL, MariaDB's NO_LOG) so the binlog names columns and keys",
            metadata.unwrap_or_default()
        ));
    }
    // MySQL's partial JSON updates are read whole from the before image (FULL, checked above).
    if let Ok(Some(options)) = conn
        .query_first::<String, _>("SELECT @@binlog_row_value_options")
        .await
        && options.contains("PARTIAL_JSON")
    {
        tracing::info!(
            "binlog_row_value_options = PARTIAL_JSON: JSON updates are logged as changes, which Sluice applies to the before image"
        );
    }
    conn.query_drop("SHOW MASTER STATUS").await.map_err(|e| {
        query_error(
            "SHOW MASTER STATUS (needs REPLICATION CLIENT, or BINLOG MONITOR on MariaDB)",
            e,
        )
    })?;
    let checksum: Option<String> = conn
        .query_first("SELECT @@global.binlog_checksum")
        .await
        .map_err(|e| query_error("reading binlog_checksum", e))?;
    Ok(ServerInfo {
        server_id,
        checksums: checksum.is_some_and(|c| !c.eq_ignore_ascii_case("NONE")),
    })
}

/// The server's GTID state at a binlog position (MariaDB's `BINLOG_GTID_POS`); `None` where the
/// server cannot tell (MySQL, or a position it no longer has).
pub async fn gtid_at(conn: &mut Conn, file: &str, pos: u64) -> Option<String> {
    conn.exec_first("SELECT BINLOG_GTID_POS(?, ?)", (file, pos))
        .await
        .ok()
        .flatten()
        .filter(|g: &String| !g.is_empty())
}

/// The columns of the table's first unique index (by name) whose columns are all NOT NULL:
/// it identifies rows as a primary key would, so it keys a table that has none.
pub async fn unique_key(
    conn: &mut Conn,
    table: &TableId,
) -> Result<Option<Vec<String>>, SourceError> {
    let rows: Vec<(String, String, String)> = conn
        .exec(
            "SELECT s.INDEX_NAME, s.COLUMN_NAME, c.IS_NULLABLE \
             FROM information_schema.STATISTICS s JOIN information_schema.COLUMNS c \
             ON c.TABLE_SCHEMA = s.TABLE_SCHEMA AND c.TABLE_NAME = s.TABLE_NAME \
             AND c.COLUMN_NAME = s.COLUMN_NAME \
             WHERE s.TABLE_SCHEMA = ? AND s.TABLE_NAME = ? AND s.NON_UNIQUE = 0 \
             ORDER BY s.INDEX_NAME, s.SEQ_IN_INDEX",
            (&table.db, &table.table),
        )
        .await
        .map_err(|e| query_error("reading information_schema.STATISTICS", e))?;
    let mut indexes: Vec<(String, Vec<String>, bool)> = Vec::new();
    for (index, column, nullable) in rows {
        if indexes.last().is_none_or(|(name, ..)| *name != index) {
            indexes.push((index.clone(), Vec::new(), true));
        }
        let last = indexes.last_mut().expect("pushed above");
        last.1.push(column);
        last.2 &= nullable == "NO";
    }
    Ok(indexes
        .into_iter()
        .find(|(_, _, not_null)| *not_null)
        .map(|(_, columns, _)| columns))
}

/// Whether the server reports the binlog position of a consistent read
/// (`binlog_snapshot_file`: MariaDB, and MySQL before 8.0 with some forks; not MySQL 8).
pub async fn reports_snapshot_position(conn: &mut Conn) -> Result<bool, SourceError> {
    let rows: Vec<(String, String)> = conn
        .query("SHOW STATUS LIKE 'binlog_snapshot_file'")
        .await
        .map_err(|e| query_error("reading binlog_snapshot_file", e))?;
    Ok(!rows.is_empty())
}

/// The binlog position now, with the GTID state there. MySQL (>= 8.0.14) answers from
/// `performance_schema.log_status`, whose file, position and executed GTID set are taken
/// together; elsewhere SHOW MASTER STATUS (SHOW BINARY LOG STATUS from MySQL 8.4).
pub async fn current_position(conn: &mut Conn) -> Result<Position, SourceError> {
    if let Ok(Some(local)) = conn
        .query_first::<String, _>("SELECT LOCAL FROM performance_schema.log_status")
        .await
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(&local)
        && let (Some(file), Some(pos)) = (
            v["binary_log_file"].as_str(),
            v["binary_log_position"].as_u64(),
        )
    {
        let gtid = v["gtid_executed"]
            .as_str()
            .map(|g| g.replace('\n', ""))
            .filter(|g| !g.is_empty());
        return Ok(Position {
            file: file.to_string(),
            pos,
            gtid,
        });
    }
    let mut status: Option<mysql_async::Row> = None;
    for sql in ["SHOW MASTER STATUS", "SHOW BINARY LOG STATUS"] {
        if let Ok(row) = conn.query_first(sql).await {
            status = row;
            break;
        }
    }
    let (file, pos) = status
        .and_then(|r| Some((r.get::<String, _>(0)?, r.get::<u64, _>(1)?)))
        .ok_or_else(|| {
            SourceError::Precondition(
                "the server reports no binlog position (SHOW MASTER STATUS is empty); is \
                 log_bin on, and does the Sluice user have REPLICATION CLIENT?"
                    .into(),
            )
        })?;
    let gtid = gtid_at(conn, &file, pos).await;
    Ok(Position { file, pos, gtid })
}

/// The server's collation ids and their character sets, each read as the server reads it:
/// for every character set without an algorithmic form, the server is asked how it reads
/// each of its byte sequences (about 40,000 conversions for a multi-byte set, one query per
/// 2,000).
pub async fn collations(conn: &mut Conn) -> Result<Collations, SourceError> {
    let what = "reading the server's collations";
    // MariaDB 10.10+ gives its UCA 14.0 collations an id per character set here only.
    let applicable: Result<Vec<(u64, String)>, _> = conn
        .query(
            "SELECT ID, CHARACTER_SET_NAME FROM \
             information_schema.COLLATION_CHARACTER_SET_APPLICABILITY WHERE ID IS NOT NULL",
        )
        .await;
    let mut rows: Vec<(u64, String)> = conn
        .query(
            "SELECT ID, CHARACTER_SET_NAME FROM information_schema.COLLATIONS WHERE ID IS NOT NULL",
        )
        .await
        .map_err(|e| query_error(what, e))?;
    rows.extend(applicable.unwrap_or_default());
    let mut collations = Collations::new(rows);
    let sets: Vec<(String, u8)> = conn
        .query("SELECT CHARACTER_SET_NAME, MAXLEN FROM information_schema.CHARACTER_SETS")
        .await
        .map_err(|e| query_error(what, e))?;
    let started = std::time::Instant::now();
    let needing = collations.needing_tables();
    for name in &needing {
        let maxlen = sets.iter().find(|(n, _)| n == name).map_or(1, |(_, m)| *m);
        let probes = charset::probes(maxlen);
        let mut answers: Vec<Option<String>> = Vec::with_capacity(probes.len());
        for chunk in probes.chunks(2000) {
            let exprs: Vec<String> = chunk
                .iter()
                .map(|code| {
                    let hex: String = code.iter().map(|b| format!("{b:02X}")).collect();
                    format!("CONVERT(CONVERT(X'{hex}' USING {name}) USING utf8mb4)")
                })
                .collect();
            let row: mysql_async::Row = conn
                .query_first(format!("SELECT {}", exprs.join(", ")))
                .await
                .map_err(|e| query_error("asking the server how a character set reads", e))?
                .ok_or_else(|| SourceError::Precondition("a SELECT returned no row".into()))?;
            answers.extend(row.unwrap().into_iter().map(|v| {
                mysql_async::from_value_opt::<Option<Vec<u8>>>(v)
                    .ok()
                    .flatten()
                    .and_then(|b| String::from_utf8(b).ok())
            }));
        }
        let table = CharTable::from_answers(
            name,
            probes
                .iter()
                .zip(&answers)
                .map(|(code, text)| (code.as_slice(), text.as_deref())),
        );
        collations = collations.with_table(table);
    }
    tracing::debug!(
        character_sets = needing.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "read how the server's character sets read"
    );
    Ok(collations)
}

/// The base tables that match `include` and not `exclude`, sorted. A pattern without wildcards
/// must name an existing table.
pub async fn resolve_tables(
    conn: &mut Conn,
    include: &[TablePattern],
    exclude: &[TablePattern],
) -> Result<Vec<TableId>, SourceError> {
    let rows: Vec<(String, String)> = conn
        .query(
            "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES \
             WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN \
             ('mysql', 'information_schema', 'performance_schema', 'sys') \
             ORDER BY TABLE_SCHEMA, TABLE_NAME",
        )
        .await
        .map_err(|e| query_error("listing tables in information_schema.TABLES", e))?;
    let all: Vec<TableId> = rows.into_iter().map(|(d, t)| TableId::new(d, t)).collect();
    for p in include {
        if let Some(t) = p.exact()
            && !all.contains(&t)
        {
            return Err(SourceError::TableMissing(t));
        }
        if !all.iter().any(|t| p.matches(t)) {
            tracing::warn!(pattern = %p, "no table matches this `tables` pattern");
        }
    }
    Ok(all
        .into_iter()
        .filter(|t| include.iter().any(|p| p.matches(t)) && !exclude.iter().any(|p| p.matches(t)))
        .collect())
}

/// The definition Sluice captures `table` with: keyed by its `[keys]` entry, else its primary
/// key, else a unique key over NOT NULL columns, which is then added to `keys`.
pub async fn captured_schema(
    conn: &mut Conn,
    table: &TableId,
    keys: &mut HashMap<TableId, Vec<String>>,
) -> Result<TableSchema, SourceError> {
    match table_schema(conn, table, keys.get(table).map(Vec::as_slice)).await {
        Err(SourceError::NoPrimaryKey(_)) if !keys.contains_key(table) => {
            let Some(unique) = unique_key(conn, table).await? else {
                return Err(SourceError::NoPrimaryKey(table.clone()));
            };
            tracing::info!(%table, key = ?unique, "no primary key: records are keyed by a unique key over NOT NULL columns");
            let schema = table_schema(conn, table, Some(&unique)).await?;
            keys.insert(table.clone(), unique);
            Ok(schema)
        }
        other => other,
    }
}

/// A table's current definition, as the snapshot reads it. The binlog's TABLE_MAP yields the
/// same [`TableSchema`] for the same definition, so both register the same Avro schema.
/// `key`, when given, replaces the primary key.
pub async fn table_schema(
    conn: &mut Conn,
    table: &TableId,
    key: Option<&[String]>,
) -> Result<TableSchema, SourceError> {
    type ColumnRow = (
        String,
        String,
        String,
        String,
        Option<u64>,
        Option<u64>,
        Option<u64>,
        String,
    );
    let rows: Vec<ColumnRow> = conn
        .exec(
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, NUMERIC_PRECISION, \
             NUMERIC_SCALE, DATETIME_PRECISION, COLUMN_COMMENT \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
             ORDER BY ORDINAL_POSITION",
            (&table.db, &table.table),
        )
        .await
        .map_err(|e| query_error("reading information_schema.COLUMNS", e))?;
    if rows.is_empty() {
        return Err(SourceError::TableMissing(table.clone()));
    }
    let mut columns = Vec::with_capacity(rows.len());
    for (name, data_type, column_type, nullable, precision, scale, fsp, comment) in rows {
        let unsupported = || SourceError::Unsupported {
            table: table.clone(),
            column: name.clone(),
            type_name: column_type.to_uppercase(),
        };
        // MariaDB's column compression: the binlog carries the compressed bytes.
        if column_type.to_uppercase().contains("COMPRESSED") {
            let base = column_type.split(" /*").next().unwrap_or(&column_type);
            return Err(SourceError::Unsupported {
                table: table.clone(),
                column: name.clone(),
                type_name: format!("{} COMPRESSED", base.to_uppercase()),
            });
        }
        let small = |v: Option<u64>| v.and_then(|v| u8::try_from(v).ok()).unwrap_or(0);
        let unsigned = column_type.to_lowercase().contains("unsigned");
        let ty = match data_type.to_lowercase().as_str() {
            "tinyint" => ColumnType::Integer { bytes: 1, unsigned },
            "smallint" => ColumnType::Integer { bytes: 2, unsigned },
            "mediumint" => ColumnType::Integer { bytes: 3, unsigned },
            "int" => ColumnType::Integer { bytes: 4, unsigned },
            "bigint" => ColumnType::Integer { bytes: 8, unsigned },
            "decimal" => ColumnType::Decimal {
                precision: small(precision),
                scale: small(scale),
            },
            "float" => ColumnType::Float,
            "double" => ColumnType::Double,
            "bit" => ColumnType::Bit {
                bits: small(precision),
            },
            "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
                ColumnType::Bytes
            }
            "enum" | "set" => {
                let labels = enum_labels(&column_type).ok_or_else(unsupported)?;
                if data_type.eq_ignore_ascii_case("enum") {
                    ColumnType::Enum(labels.into())
                } else {
                    ColumnType::Set(labels.into())
                }
            }
            "json" => ColumnType::Json,
            "vector" => ColumnType::Vector {
                dims: column_type
                    .split(['(', ')'])
                    .nth(1)
                    .and_then(|d| d.parse().ok())
                    .ok_or_else(unsupported)?,
            },
            "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring"
            | "multipolygon" | "geometrycollection" => ColumnType::Geometry,
            "time" => ColumnType::Time { fsp: small(fsp) },
            // Every character set reads as the server reads it (see `charset`).
            "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" => {
                ColumnType::Text
            }
            "date" => ColumnType::Date,
            "year" => ColumnType::Year,
            "datetime" => ColumnType::DateTime { fsp: small(fsp) },
            "timestamp" => ColumnType::Timestamp { fsp: small(fsp) },
            _ => return Err(unsupported()),
        };
        columns.push(Column {
            comment: (!comment.is_empty()).then_some(comment),
            ..Column::new(name, ty, nullable == "YES")
        });
    }
    let key_names: Vec<String> = conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' \
             ORDER BY ORDINAL_POSITION",
            (&table.db, &table.table),
        )
        .await
        .map_err(|e| query_error("reading information_schema.KEY_COLUMN_USAGE", e))?;
    let key: Vec<usize> = match key {
        Some(names) => {
            column_indices(&columns, names).map_err(|missing| SourceError::KeyColumnMissing {
                table: table.clone(),
                column: missing.to_string(),
            })?
        }
        None => key_names
            .iter()
            .filter_map(|k| columns.iter().position(|c| &c.name == k))
            .collect(),
    };
    if key.is_empty() {
        return Err(SourceError::NoPrimaryKey(table.clone()));
    }
    Ok(TableSchema {
        id: table.clone(),
        columns,
        key,
    })
}

/// The labels of `enum('a','it''s')` or `set(...)` as `COLUMN_TYPE` spells them: quotes
/// doubled, backslashes escaped.
fn enum_labels(column_type: &str) -> Option<Vec<String>> {
    let open = column_type.find('(')?;
    let inner = column_type[open + 1..].strip_suffix(')')?;
    let mut labels = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        if chars.next()? != '\'' {
            return None;
        }
        let mut label = String::new();
        loop {
            match chars.next()? {
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    label.push('\'');
                }
                '\'' => break,
                '\\' => label.push(chars.next()?),
                c => label.push(c),
            }
        }
        labels.push(label);
        match chars.next() {
            None => return Some(labels),
            Some(',') => {}
            Some(_) => return None,
        }
    }
}

/// Quotes an identifier for SQL text.
pub fn quote(ident: &str) -> String {
    format!("`{}`", ident.replace('`', "``"))
}

/// The table's row count as information_schema estimates it (0 when unknown): the total a
/// snapshot's progress is reported against.
pub async fn estimated_rows(conn: &mut Conn, table: &TableId) -> u64 {
    conn.exec_first::<Option<u64>, _, _>(
        "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND \
         TABLE_NAME = ?",
        (&table.db, &table.table),
    )
    .await
    .ok()
    .flatten()
    .flatten()
    .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::enum_labels;

    #[test]
    fn enum_labels_unescape_as_column_type_spells_them() {
        assert_eq!(
            enum_labels(r"enum('x','it''s','back\\slash','é','')").unwrap(),
            vec!["x", "it's", r"back\slash", "é", ""]
        );
        assert_eq!(enum_labels("set('a,b')").unwrap(), vec!["a,b"]);
        assert_eq!(enum_labels("enum('x'"), None);
        assert_eq!(enum_labels("enum(x)"), None);
    }
}
