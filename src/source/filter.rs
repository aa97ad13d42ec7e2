//! Column filters applied before a change leaves the source: excluded columns are dropped,
//! hashed columns become the hex SHA-256 of a secret salt and the value, masked columns a
//! constant. The encoder, Kafka and the index only ever see the filtered table.

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::config::{ColumnPattern, ColumnsConfig, Secret};
use crate::model::{Change, Column, ColumnType, Row, TableId, TableSchema, Value, time};

/// A filter that would leave a table without a usable key.
#[derive(Debug, thiserror::Error)]
#[error(
    "table {table}: column `{column}` is part of the primary key and cannot be {what}; records \
     are keyed by it (hashing keeps keys distinct and is allowed)"
)]
pub struct KeyFilterError {
    table: TableId,
    column: String,
    what: &'static str,
}

/// What happens to one column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Keep,
    Hash,
    Mask,
}

/// A table's filtered shape: the schema consumers see and where each column comes from.
#[derive(Debug)]
struct Projection {
    schema: Arc<TableSchema>,
    columns: Vec<(usize, Action)>,
}

/// The `[columns]` rules, and the projections of the tables seen so far.
pub struct ColumnFilter {
    exclude: Vec<ColumnPattern>,
    hash: Vec<ColumnPattern>,
    mask: Vec<ColumnPattern>,
    salt: Secret,
    mask_with: String,
    /// Per table: the unfiltered schema the projection was made for, and the projection
    /// (`None` when no rule touches the table).
    cache: HashMap<TableId, (Arc<TableSchema>, Option<Arc<Projection>>)>,
}

impl ColumnFilter {
    /// The filter of a `[columns]` section.
    pub fn new(cfg: &ColumnsConfig) -> Self {
        ColumnFilter {
            exclude: cfg.exclude.clone(),
            hash: cfg.hash.clone(),
            mask: cfg.mask.clone(),
            salt: cfg.hash_salt.clone(),
            mask_with: cfg.mask_with.clone(),
            cache: HashMap::new(),
        }
    }

    /// Checks that the rules leave `table` a key; run at startup for every captured table so
    /// a bad rule fails before anything is read.
    pub fn check(&mut self, table: &Arc<TableSchema>) -> Result<(), KeyFilterError> {
        self.projection(table).map(|_| ())
    }

    /// The schema `table` has once filtered: what the encoder, Kafka and the index see.
    pub fn schema(&mut self, table: &Arc<TableSchema>) -> Result<Arc<TableSchema>, KeyFilterError> {
        Ok(self
            .projection(table)?
            .map_or_else(|| table.clone(), |p| p.schema.clone()))
    }

    /// Filters `changes` in place.
    pub fn apply(&mut self, changes: &mut [Change]) -> Result<(), KeyFilterError> {
        if self.exclude.is_empty() && self.hash.is_empty() && self.mask.is_empty() {
            return Ok(());
        }
        for change in changes {
            let Some(p) = self.projection(&change.table)? else {
                continue;
            };
            change.table = p.schema.clone();
            for row in [&mut change.before, &mut change.after]
                .into_iter()
                .flatten()
            {
                *row = self.project(&p, row);
            }
        }
        Ok(())
    }

    fn project(&self, p: &Projection, row: &Row) -> Row {
        p.columns
            .iter()
            .map(|&(i, action)| match (action, &row[i]) {
                (_, Value::Null) | (Action::Keep, _) => row[i].clone(),
                (Action::Mask, _) => Value::String(self.mask_with.as_str().into()),
                (Action::Hash, v) => {
                    let mut h = Sha256::new();
                    h.update(self.salt.expose().as_bytes());
                    h.update(canonical_bytes(v));
                    Value::String(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
                }
            })
            .collect()
    }

    fn projection(
        &mut self,
        table: &Arc<TableSchema>,
    ) -> Result<Option<Arc<Projection>>, KeyFilterError> {
        if let Some((seen, p)) = self.cache.get(&table.id)
            && Arc::ptr_eq(seen, table)
        {
            return Ok(p.clone());
        }
        let p = self.build(table)?.map(Arc::new);
        self.cache
            .insert(table.id.clone(), (table.clone(), p.clone()));
        Ok(p)
    }

    fn build(&self, table: &TableSchema) -> Result<Option<Projection>, KeyFilterError> {
        let any = |rules: &[ColumnPattern], c: &str| rules.iter().any(|r| r.matches(&table.id, c));
        let actions: Vec<Option<Action>> = table
            .columns
            .iter()
            .map(|c| {
                if any(&self.exclude, &c.name) {
                    None
                } else if any(&self.hash, &c.name) {
                    Some(Action::Hash)
                } else if any(&self.mask, &c.name) {
                    Some(Action::Mask)
                } else {
                    Some(Action::Keep)
                }
            })
            .collect();
        if actions.iter().all(|a| *a == Some(Action::Keep)) {
            return Ok(None);
        }
        for &k in &table.key {
            let what = match actions[k] {
                None => "excluded",
                Some(Action::Mask) => "masked with a constant",
                _ => continue,
            };
            return Err(KeyFilterError {
                table: table.id.clone(),
                column: table.columns[k].name.clone(),
                what,
            });
        }
        let mut columns = Vec::new();
        let mut schema_columns = Vec::new();
        let mut new_index = vec![usize::MAX; table.columns.len()];
        for (i, (c, action)) in table.columns.iter().zip(&actions).enumerate() {
            let Some(action) = *action else { continue };
            new_index[i] = columns.len();
            columns.push((i, action));
            let ty = match action {
                Action::Keep => c.ty.clone(),
                Action::Hash | Action::Mask => ColumnType::Text,
            };
            schema_columns.push(Column {
                comment: c.comment.clone(),
                ..Column::new(c.name.clone(), ty, c.nullable)
            });
        }
        Ok(Some(Projection {
            schema: Arc::new(TableSchema {
                id: table.id.clone(),
                columns: schema_columns,
                key: table.key.iter().map(|&k| new_index[k]).collect(),
            }),
            columns,
        }))
    }
}

/// The bytes a hashed value stands for: its text as the index would show it, raw bytes for
/// binary values.
fn canonical_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::Null => vec![],
        Value::Int(i) => i.to_string().into_bytes(),
        Value::UInt(u) => u.to_string().into_bytes(),
        Value::Decimal(d) => d.to_string().into_bytes(),
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Float(f) => f.to_string().into_bytes(),
        Value::Double(d) => d.to_string().into_bytes(),
        Value::Bits(b) => b.to_string().into_bytes(),
        Value::Bytes(b) => b.clone(),
        Value::Geometry { srid, wkb } => {
            let mut out = srid.to_le_bytes().to_vec();
            out.extend_from_slice(wkb);
            out
        }
        Value::Date(d) => time::format_date(i64::from(*d)).into_bytes(),
        Value::DateTime(us) => time::format_datetime_micros(*us).into_bytes(),
        Value::Timestamp(us) => format!("{}Z", time::format_datetime_micros(*us)).into_bytes(),
        Value::Time(us) => us.to_string().into_bytes(),
        Value::Vector(v) => v.iter().flat_map(|f| f.to_le_bytes()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Op, SourceInfo, Version};

    fn table() -> Arc<TableSchema> {
        let int = ColumnType::Integer {
            bytes: 4,
            unsigned: false,
        };
        Arc::new(TableSchema {
            id: TableId::new("shop", "customers"),
            columns: vec![
                Column::new("ssn", ColumnType::Text, true),
                Column::new("id", int.clone(), false),
                Column::new("email", ColumnType::Text, true),
                Column::new("phone", ColumnType::Text, true),
                Column::new("age", int, true),
            ],
            key: vec![1],
        })
    }

    fn filter(exclude: &[&str], hash: &[&str], mask: &[&str]) -> ColumnFilter {
        let list = |l: &[&str]| l.iter().map(|s| ColumnPattern::parse(s).unwrap()).collect();
        ColumnFilter::new(&ColumnsConfig {
            exclude: list(exclude),
            hash: list(hash),
            hash_salt: Secret::new("pepper"),
            mask: list(mask),
            mask_with: "***".into(),
        })
    }

    fn change(table: Arc<TableSchema>, row: Row) -> Change {
        Change {
            table,
            op: Op::Create,
            before: None,
            after: Some(row),
            version: Version::at(1, 4),
            source: SourceInfo::at("binlog.000001", 4),
        }
    }

    #[test]
    fn excludes_hashes_and_masks_before_anything_leaves() {
        let mut f = filter(&["shop.customers.ssn"], &["shop.*.email"], &["*.*.phone"]);
        let t = table();
        let mut changes = vec![change(
            t.clone(),
            vec![
                Value::String("123-45-6789".into()),
                Value::Int(7),
                Value::String("a@b.c".into()),
                Value::String("555-0100".into()),
                Value::Null,
            ],
        )];
        f.apply(&mut changes).unwrap();
        let c = &changes[0];
        let names: Vec<&str> = c.table.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["id", "email", "phone", "age"]);
        assert_eq!(c.table.key, vec![0]);
        let row = c.after.as_ref().unwrap();
        let expected: String = Sha256::digest(b"peppera@b.c")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            row,
            &vec![
                Value::Int(7),
                Value::String(expected.into()),
                Value::String("***".into()),
                Value::Null
            ]
        );
        // The same schema Arc reuses the projection, so downstream schema caches hit.
        let mut again = vec![change(
            t,
            vec![
                Value::Null,
                Value::Int(8),
                Value::Null,
                Value::Null,
                Value::Null,
            ],
        )];
        f.apply(&mut again).unwrap();
        assert!(Arc::ptr_eq(&again[0].table, &changes[0].table));
    }

    #[test]
    fn keys_cannot_be_excluded_or_masked_but_can_be_hashed() {
        let e = filter(&["*.*.id"], &[], &[]).check(&table()).unwrap_err();
        assert!(
            e.to_string().contains("`id` is part of the primary key"),
            "{e}"
        );
        assert!(
            filter(&[], &[], &["shop.customers.id"])
                .check(&table())
                .is_err()
        );
        assert!(
            filter(&[], &["shop.customers.id"], &[])
                .check(&table())
                .is_ok()
        );
        assert!(filter(&["other.*.ssn"], &[], &[]).check(&table()).is_ok());
    }
}
