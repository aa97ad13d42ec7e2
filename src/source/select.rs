//! The SELECT side of both snapshot kinds: keyset pages in the database's own key order, and
//! result rows turned into the same typed values the binlog decoder gives.

use futures_util::StreamExt;
use mysql_async::Conn;
use mysql_async::prelude::*;

use super::SourceError;
use super::mysql::{query_error, quote};
use crate::model::{
    Column, ColumnType, Decimal, Row, TableSchema, Value, WindowProgress, fill, row_bytes,
    text_from_vec, time, utf8,
};

/// Whether the key's order in the database can be paged through with typed bounds: types
/// whose comparison with a parameter is the order the index sorts them in.
pub fn keyset_able(table: &TableSchema) -> bool {
    table.key.iter().all(|&i| {
        matches!(
            table.columns[i].ty,
            ColumnType::Integer { .. }
                | ColumnType::Decimal { .. }
                | ColumnType::Text
                | ColumnType::Bytes
                | ColumnType::Date
                | ColumnType::DateTime { .. }
                | ColumnType::Timestamp { .. }
                | ColumnType::Year
                | ColumnType::Time { .. }
        )
    })
}

/// The next chunk's query: rows after `last` in key order (the database's own order and
/// collation) that match `filter`, `limit` of them; all of them when `limit` is `None`.
pub fn chunk_query(
    table: &TableSchema,
    last: &[Value],
    filter: Option<&str>,
    limit: Option<u64>,
) -> (String, Vec<mysql_async::Value>) {
    let columns: Vec<String> = table.columns.iter().map(|c| quote(&c.name)).collect();
    let key = key_names(table);
    let mut sql = format!(
        "SELECT {} FROM {}.{}",
        columns.join(", "),
        quote(&table.id.db),
        quote(&table.id.table)
    );
    let mut params = Vec::new();
    let mut conditions = Vec::new();
    if let Some(f) = filter {
        conditions.push(format!("({f})"));
    }
    let Some(limit) = limit else {
        if !conditions.is_empty() {
            sql.push_str(&format!(" WHERE {}", conditions.join(" AND ")));
        }
        return (sql, params);
    };
    if !last.is_empty() {
        // (k1, k2) > (a, b) spelled out, so the index serves it: k1 > a OR (k1 = a AND k2 > b).
        let mut alternatives = Vec::new();
        for n in 0..key.len() {
            let mut terms: Vec<String> = key[..n].iter().map(|k| format!("{k} = ?")).collect();
            terms.push(format!("{} > ?", key[n]));
            params.extend(last[..=n].iter().map(param));
            alternatives.push(format!("({})", terms.join(" AND ")));
        }
        conditions.push(format!("({})", alternatives.join(" OR ")));
    }
    if !conditions.is_empty() {
        sql.push_str(&format!(" WHERE {}", conditions.join(" AND ")));
    }
    sql.push_str(&format!(" ORDER BY {} LIMIT {limit}", key.join(", ")));
    (sql, params)
}

/// The query of the rows with these keys (each in key order), values as parameters.
pub fn keys_query(table: &TableSchema, keys: &[Vec<Value>]) -> (String, Vec<mysql_async::Value>) {
    let names = key_names(table);
    let one: Vec<String> = names.iter().map(|n| format!("{n} = ?")).collect();
    let one = format!("({})", one.join(" AND "));
    let condition = vec![one; keys.len()].join(" OR ");
    let (sql, _) = chunk_query(table, &[], Some(&condition), None);
    (sql, keys.iter().flatten().map(param).collect())
}

/// An SQL condition that matches the rows whose keys fall in one of the inclusive `ranges`
/// (each `(lowest, highest)` in key order), as literals for a snapshot signal's filter,
/// escaped as a server with `no_backslash_escapes` (its `sql_mode`) reads them.
pub fn key_range_condition(
    table: &TableSchema,
    ranges: &[(Vec<Value>, Vec<Value>)],
    no_backslash_escapes: bool,
) -> String {
    let names = key_names(table);
    let tuple = |key: &Vec<Value>| {
        let values: Vec<String> = key
            .iter()
            .map(|v| param(v).as_sql(no_backslash_escapes))
            .collect();
        format!("({})", values.join(", "))
    };
    let columns = format!("({})", names.join(", "));
    ranges
        .iter()
        .map(|(lo, hi)| {
            format!(
                "({columns} >= {} AND {columns} <= {})",
                tuple(lo),
                tuple(hi)
            )
        })
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// The key's column names, quoted, in key order.
fn key_names(table: &TableSchema) -> Vec<String> {
    table
        .key
        .iter()
        .map(|&i| quote(&table.columns[i].name))
        .collect()
}

/// A key value as a statement parameter the server compares like the column.
fn param(v: &Value) -> mysql_async::Value {
    use mysql_async::Value as V;
    match v {
        Value::Null => V::NULL,
        Value::Int(i) => V::Int(*i),
        Value::UInt(u) | Value::Bits(u) => V::UInt(*u),
        Value::Float(f) => V::Float(*f),
        Value::Double(d) => V::Double(*d),
        Value::Decimal(d) => V::Bytes(d.to_string().into_bytes()),
        Value::String(s) => V::Bytes(s.as_bytes().to_vec()),
        Value::Bytes(b) => V::Bytes(b.clone()),
        Value::Geometry { wkb, .. } => V::Bytes(wkb.clone()),
        // Vectors cannot be indexed, so never key a table.
        Value::Vector(v) => V::Bytes(v.iter().flat_map(|f| f.to_le_bytes()).collect()),
        Value::Time(us) => {
            let (negative, us) = (*us < 0, us.unsigned_abs());
            let secs = us / 1_000_000;
            V::Time(
                negative,
                (secs / 86_400) as u32,
                (secs / 3600 % 24) as u8,
                (secs / 60 % 60) as u8,
                (secs % 60) as u8,
                (us % 1_000_000) as u32,
            )
        }
        Value::Date(days) => V::Bytes(time::format_date(i64::from(*days)).into_bytes()),
        // The session is in UTC, so a TIMESTAMP's instant and a DATETIME's wall clock both
        // compare as this text.
        Value::DateTime(us) | Value::Timestamp(us) => {
            V::Bytes(time::format_datetime_micros(*us).into_bytes())
        }
    }
}

/// Turns one result row into typed values with the same meaning the binlog decoder gives them.
pub fn convert(
    table: &TableSchema,
    mut values: mysql_async::Row,
    zero_dates: &mut u64,
) -> Result<Vec<Value>, SourceError> {
    // Each value is written into its place in the row: collected through an iterator, each
    // one was returned in a temporary and copied, and the copy stalled on the temporary's
    // just-written bytes (measured: two thirds of the collecting loop's samples). Values are
    // taken out of the result row one by one: `Row::unwrap` would first rebuild its vector.
    let mut row = Vec::with_capacity(values.len());
    row.resize_with(values.len().min(table.columns.len()), || Value::Null);
    for (i, (col, slot)) in table.columns.iter().zip(row.iter_mut()).enumerate() {
        // Each index is taken once, so a value is always there.
        let v = values.take(i).unwrap_or(mysql_async::Value::NULL);
        convert_value(table, col, v, zero_dates, slot)?;
    }
    Ok(row)
}

/// One value of [`convert`], written into `slot`, which holds the row's placeholder NULL.
#[inline(always)]
fn convert_value(
    table: &TableSchema,
    col: &Column,
    v: mysql_async::Value,
    zero_dates: &mut u64,
    slot: &mut Value,
) -> Result<(), SourceError> {
    use mysql_async::Value as V;
    let bad = |what: &str| SourceError::SnapshotValue {
        table: table.id.clone(),
        column: col.name.clone(),
        message: what.to_string(),
    };
    let value = match (&col.ty, v) {
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
        (ColumnType::Decimal { scale, .. }, V::Bytes(b)) => Value::Decimal(
            utf8(&b)
                .and_then(|text| Decimal::parse(text, *scale))
                .ok_or_else(|| bad("malformed decimal"))?,
        ),
        (
            ColumnType::Text | ColumnType::Enum(_) | ColumnType::Set(_) | ColumnType::Json,
            V::Bytes(b),
        ) => Value::String(text_from_vec(b).ok_or_else(|| bad("text is not valid UTF-8"))?),
        (ColumnType::Float, V::Float(f)) => Value::Float(f),
        (ColumnType::Double, V::Double(d)) => Value::Double(d),
        (ColumnType::Bit { .. }, V::Bytes(b)) if b.len() <= 8 => {
            Value::Bits(b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
        }
        (ColumnType::Bytes, V::Bytes(b)) => Value::Bytes(b),
        (ColumnType::Vector { .. }, V::Bytes(b)) => Value::vector_from_le(&b)
            .ok_or_else(|| bad("a VECTOR whose length is not a multiple of 4"))?,
        (ColumnType::Geometry, V::Bytes(b)) if b.len() >= 4 => Value::Geometry {
            srid: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            wkb: b[4..].to_vec(),
        },
        (ColumnType::Time { .. }, V::Time(negative, days, h, m, s, us)) => {
            let secs =
                i64::from(days) * 86_400 + i64::from(h) * 3600 + i64::from(m) * 60 + i64::from(s);
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
                let micros = time::micros_from_civil(y, m, d, h.into(), i.into(), s.into(), us);
                match col.ty {
                    ColumnType::DateTime { .. } => Value::DateTime(micros),
                    _ => Value::Timestamp(micros),
                }
            }
        }
        (ty, other) => {
            return Err(bad(&format!("unexpected {other:?} for {}", ty.sql_name())));
        }
    };
    fill(slot, value);
    Ok(())
}

/// Bytes of rows, as held in memory, after which a window's chunk ends early whatever its row
/// limit: the window holds its rows until its high watermark arrives.
const CHUNK_BYTES: usize = 16 << 20;

/// Selects the window's chunk: rows after the last key that match the filter, at most `limit`
/// and, with a limit, ending early at [`CHUNK_BYTES`]; true if it ended there.
pub(super) async fn select_chunk(
    conn: &mut Conn,
    schema: &TableSchema,
    progress: &WindowProgress,
    limit: Option<u64>,
) -> Result<(Vec<Row>, bool), SourceError> {
    let what = "selecting an incremental snapshot chunk";
    let (sql, params) = chunk_query(
        schema,
        &progress.last_key,
        progress.filter.as_deref(),
        limit,
    );
    let mut result = conn
        .exec_iter(sql, params)
        .await
        .map_err(|e| query_error(what, e))?;
    let mut stream = result
        .stream::<mysql_async::Row>()
        .await
        .map_err(|e| query_error(what, e))?
        .ok_or_else(|| SourceError::Precondition("snapshot query returned no result set".into()))?;
    let mut rows = Vec::new();
    let (mut bytes, mut cut) = (0, false);
    let mut zero_dates = 0;
    while let Some(row) = stream.next().await {
        let row = row.map_err(|e| query_error(what, e))?;
        let row = convert(schema, row, &mut zero_dates)?;
        bytes += row_bytes(&row);
        rows.push(row);
        // The next window starts after the last key kept.
        if limit.is_some() && bytes >= CHUNK_BYTES {
            cut = true;
            break;
        }
    }
    drop(stream);
    if cut {
        // Read and dropped here, where an error names the select, rather than by whichever
        // query comes next.
        result
            .drop_result()
            .await
            .map_err(|e| query_error(what, e))?;
    }
    if zero_dates > 0 {
        tracing::warn!(table = %schema.id, count = zero_dates, "incremental snapshot: zero or impossible dates became null");
    }
    Ok((rows, cut))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Column, TableId};

    #[test]
    fn chunks_page_through_composite_keys_in_key_order() {
        let table = TableSchema {
            id: TableId::new("db", "t"),
            columns: vec![
                Column::new("v", ColumnType::Double, true),
                Column::new(
                    "a",
                    ColumnType::Integer {
                        bytes: 4,
                        unsigned: false,
                    },
                    false,
                ),
                Column::new("b", ColumnType::Text, false),
            ],
            key: vec![1, 2],
        };
        let (sql, params) = chunk_query(&table, &[], None, Some(10));
        assert_eq!(
            sql,
            "SELECT `v`, `a`, `b` FROM `db`.`t` ORDER BY `a`, `b` LIMIT 10"
        );
        assert!(params.is_empty());
        let last = [Value::Int(7), Value::String("x".into())];
        let (sql, params) = chunk_query(&table, &last, Some("v > 1"), Some(10));
        assert!(
            sql.ends_with(
                "WHERE (v > 1) AND ((`a` > ?) OR (`a` = ? AND `b` > ?)) ORDER BY `a`, `b` LIMIT 10"
            ),
            "{sql}"
        );
        assert_eq!(
            params,
            [
                mysql_async::Value::Int(7),
                mysql_async::Value::Int(7),
                mysql_async::Value::Bytes(b"x".to_vec())
            ]
        );
        assert!(keyset_able(&table));
        let mut by_double = table.clone();
        by_double.key = vec![0];
        assert!(!keyset_able(&by_double));
        assert_eq!(
            chunk_query(&by_double, &[], None, None).0,
            "SELECT `v`, `a`, `b` FROM `db`.`t`"
        );
        assert_eq!(
            chunk_query(&by_double, &[], Some("a = 2"), None).0,
            "SELECT `v`, `a`, `b` FROM `db`.`t` WHERE (a = 2)"
        );
    }
}
