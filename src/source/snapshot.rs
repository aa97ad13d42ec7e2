//! The initial snapshot: every row of the tables that have none yet, read in one consistent
//! transaction whose binlog position the server reports, so streaming can start exactly there.

use std::sync::Arc;

use futures_util::StreamExt;
use mysql_async::Conn;
use mysql_async::prelude::*;
use tokio_util::sync::CancellationToken;

use super::mysql::{gtid_at, query_error, quote};
use super::{Emitter, SourceError};
use crate::model::{
    Change, ColumnType, Op, Position, SourceInfo, TableSchema, Value, Version,
    binlog_file_sequence, time,
};

/// Rows per message to the publisher.
const BATCH: usize = 512;

/// Copies `tables` and returns the position the copy is consistent with, or `None` if
/// `shutdown` interrupted it (nothing is checkpointed then; the next start copies again).
pub async fn run(
    conn: &mut Conn,
    tables: &[Arc<TableSchema>],
    server_id: u32,
    out: &mut Emitter,
    shutdown: &CancellationToken,
) -> Result<Option<Position>, SourceError> {
    // TIMESTAMP values come back in the session zone; UTC makes them instants.
    for sql in [
        "SET SESSION time_zone = '+00:00'",
        "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
        "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
    ] {
        conn.query_drop(sql)
            .await
            .map_err(|e| query_error("starting the snapshot transaction", e))?;
    }
    let status: Vec<(String, String)> = conn
        .query("SHOW STATUS LIKE 'binlog_snapshot_%'")
        .await
        .map_err(|e| query_error("reading binlog_snapshot_file/position", e))?;
    let get = |name: &str| {
        status
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let (Some(file), Some(pos)) = (get("binlog_snapshot_file"), get("binlog_snapshot_position"))
    else {
        return Err(SourceError::Precondition(
            "the server reports no binlog_snapshot_file/position (MariaDB does); consistent \
             snapshots of MySQL servers are not supported yet"
                .into(),
        ));
    };
    let pos: u32 = pos.parse().map_err(|_| {
        SourceError::Precondition(format!("binlog_snapshot_position {pos:?} is not a number"))
    })?;
    let seq = binlog_file_sequence(&file).ok_or_else(|| {
        SourceError::Precondition(format!(
            "binlog file {file:?} has no numeric sequence suffix"
        ))
    })?;
    // Every later change sits past `pos`, so this version orders snapshot rows before them.
    let version = Version::at(seq, pos);
    // The GTID state at the same point, so the stream can also resume by GTID.
    let gtid = gtid_at(conn, &file, u64::from(pos)).await;
    let position = Position {
        file,
        pos: u64::from(pos),
        gtid,
    };
    let source = SourceInfo {
        file: Arc::from(position.file.as_str()),
        pos: position.pos,
        row: 0,
        server_id,
        ts_ms: time::now_ms(),
        gtid: None,
        snapshot: true,
        thread: None,
        query: None,
        transaction: None,
    };
    let mut zero_dates = 0u64;
    for table in tables {
        let columns: Vec<String> = table.columns.iter().map(|c| quote(&c.name)).collect();
        let sql = format!(
            "SELECT {} FROM {}.{}",
            columns.join(", "),
            quote(&table.id.db),
            quote(&table.id.table)
        );
        tracing::info!(table = %table.id, %position, "snapshot: copying table");
        // A prepared statement, so values arrive typed (binary protocol), row by row.
        let mut result = conn
            .exec_iter(sql, ())
            .await
            .map_err(|e| query_error("reading a table for the snapshot", e))?;
        let mut rows = result
            .stream::<mysql_async::Row>()
            .await
            .map_err(|e| query_error("reading a table for the snapshot", e))?
            .ok_or_else(|| {
                SourceError::Precondition("snapshot query returned no result set".into())
            })?;
        let mut batch = Vec::with_capacity(BATCH);
        let mut count = 0u64;
        while let Some(row) = rows.next().await {
            let row = row.map_err(|e| query_error("reading a table for the snapshot", e))?;
            let values = convert(table, row.unwrap(), &mut zero_dates)?;
            batch.push(Change {
                table: table.clone(),
                op: Op::Read,
                before: None,
                after: Some(values),
                version,
                source: source.clone(),
            });
            count += 1;
            if batch.len() == BATCH {
                if shutdown.is_cancelled() {
                    return Ok(None);
                }
                out.changes(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
                    .await?;
            }
        }
        if !batch.is_empty() {
            out.changes(batch).await?;
        }
        tracing::info!(table = %table.id, rows = count, "snapshot: table copied");
    }
    if zero_dates > 0 {
        tracing::warn!(
            count = zero_dates,
            "snapshot: zero or impossible dates became null"
        );
    }
    conn.query_drop("COMMIT")
        .await
        .map_err(|e| query_error("ending the snapshot transaction", e))?;
    Ok(Some(position))
}

/// Turns one result row into typed values with the same meaning the binlog decoder gives them.
pub fn convert(
    table: &TableSchema,
    values: Vec<mysql_async::Value>,
    zero_dates: &mut u64,
) -> Result<Vec<Value>, SourceError> {
    use mysql_async::Value as V;
    table
        .columns
        .iter()
        .zip(values)
        .map(|(col, v)| {
            let bad = |what: &str| SourceError::SnapshotValue {
                table: table.id.clone(),
                column: col.name.clone(),
                message: what.to_string(),
            };
            Ok(match (&col.ty, v) {
                (_, V::NULL) => Value::Null,
                (
                    ColumnType::Integer {
                        bytes: 8,
                        unsigned: true,
                    },
                    V::UInt(u),
                ) => Value::UInt(u),
                (
                    ColumnType::Integer {
                        bytes: 8,
                        unsigned: true,
                    },
                    V::Int(i),
                ) => Value::UInt(u64::try_from(i).map_err(|_| bad("negative BIGINT UNSIGNED"))?),
                (ColumnType::Integer { .. }, V::Int(i)) => Value::Int(i),
                (ColumnType::Integer { .. }, V::UInt(u)) => {
                    Value::Int(i64::try_from(u).map_err(|_| bad("integer out of range"))?)
                }
                (ColumnType::Decimal { scale, .. }, V::Bytes(b)) => {
                    let s = String::from_utf8(b).map_err(|_| bad("decimal is not text"))?;
                    Value::Decimal(
                        canonical_decimal(&s, *scale).ok_or_else(|| bad("malformed decimal"))?,
                    )
                }
                (
                    ColumnType::Text | ColumnType::Enum(_) | ColumnType::Set(_) | ColumnType::Json,
                    V::Bytes(b),
                ) => {
                    Value::String(String::from_utf8(b).map_err(|_| bad("text is not valid UTF-8"))?)
                }
                (ColumnType::Float, V::Float(f)) => Value::Float(f),
                (ColumnType::Double, V::Double(d)) => Value::Double(d),
                (ColumnType::Bit { .. }, V::Bytes(b)) if b.len() <= 8 => {
                    Value::Bits(b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
                }
                (ColumnType::Bytes, V::Bytes(b)) => Value::Bytes(b),
                (ColumnType::Geometry, V::Bytes(b)) if b.len() >= 4 => Value::Geometry {
                    srid: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                    wkb: b[4..].to_vec(),
                },
                (ColumnType::Time { .. }, V::Time(negative, days, h, m, s, us)) => {
                    let secs = i64::from(days) * 86_400
                        + i64::from(h) * 3600
                        + i64::from(m) * 60
                        + i64::from(s);
                    let micros = secs * 1_000_000 + i64::from(us);
                    Value::Time(if negative { -micros } else { micros })
                }
                (ColumnType::Year, V::Int(y)) => Value::Int(y),
                (ColumnType::Year, V::UInt(y)) => Value::Int(y as i64),
                (ColumnType::Date, V::Date(y, m, d, ..)) => {
                    let (y, m, d) = (u32::from(y), u32::from(m), u32::from(d));
                    if time::is_valid_date(y, m, d) {
                        Value::Date(time::days_from_civil(y, m, d))
                    } else {
                        *zero_dates += 1;
                        Value::Null
                    }
                }
                (
                    ColumnType::DateTime { .. } | ColumnType::Timestamp { .. },
                    V::Date(y, m, d, h, i, s, us),
                ) => {
                    let (y, m, d) = (u32::from(y), u32::from(m), u32::from(d));
                    if !time::is_valid_date(y, m, d) {
                        *zero_dates += 1;
                        Value::Null
                    } else {
                        let micros =
                            time::micros_from_civil(y, m, d, h.into(), i.into(), s.into(), us);
                        match col.ty {
                            ColumnType::DateTime { .. } => Value::DateTime(micros),
                            _ => Value::Timestamp(micros),
                        }
                    }
                }
                (ty, other) => {
                    return Err(bad(&format!("unexpected {other:?} for {}", ty.sql_name())));
                }
            })
        })
        .collect()
}

/// Checks MySQL's decimal text and normalises it to exactly `scale` fraction digits with no
/// negative zero, the form the binlog decoder produces.
fn canonical_decimal(s: &str, scale: u8) -> Option<String> {
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !all_digits(int) || !all_digits(frac) || frac.len() > usize::from(scale) {
        return None;
    }
    let int = match int.trim_start_matches('0') {
        "" => "0",
        i => i,
    };
    let mut out = String::with_capacity(s.len() + usize::from(scale));
    if negative && (int != "0" || frac.bytes().any(|b| b != b'0')) {
        out.push('-');
    }
    out.push_str(int);
    if scale > 0 {
        out.push('.');
        out.push_str(frac);
        out.extend(std::iter::repeat_n('0', usize::from(scale) - frac.len()));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::canonical_decimal;

    #[test]
    fn decimals_take_the_binlog_decoders_form() {
        assert_eq!(
            canonical_decimal("-123.4500", 4).as_deref(),
            Some("-123.4500")
        );
        assert_eq!(canonical_decimal("5", 2).as_deref(), Some("5.00"));
        assert_eq!(canonical_decimal("-0.00", 2).as_deref(), Some("0.00"));
        assert_eq!(canonical_decimal("007", 0).as_deref(), Some("7"));
        assert_eq!(canonical_decimal("1.234", 2), None);
        assert_eq!(canonical_decimal("1e5", 2), None);
        assert_eq!(canonical_decimal("", 0), None);
    }
}
