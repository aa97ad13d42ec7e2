//! The document a row must have in the index, made by the pipeline's own steps: the column
//! rules of the source, the Avro encoding, and the loader's record -> document conversion. A
//! second implementation of the mapping could agree with itself and still differ from what
//! the pipeline writes.

use std::sync::Arc;

use apache_avro::Schema;
use serde_json::Value as Json;

use super::VerifyError;
use crate::encode::{avro, schema};
use crate::load::document::{META_FIELD, Options};
use crate::load::plan::{Effect, KeyPlan, ValuePlan};
use crate::model::{Change, Op, Row, SourceInfo, TableSchema, Value, Version};
use crate::source::filter::ColumnFilter;

/// A row's key and the document it must have.
#[derive(Debug)]
pub struct Expected {
    /// The row's key values, in key order (unfiltered: what the database compares).
    pub key: Vec<Value>,
    /// The document id.
    pub id: String,
    /// The document's `_source`, without Sluice's metadata.
    pub doc: Json,
}

/// Turns rows of one table into their documents.
pub struct Expecter {
    table: Arc<TableSchema>,
    columns: ColumnFilter,
    key_plan: KeyPlan,
    value_plan: ValuePlan,
    options: Options,
    envelope: avro::EnvelopeConstants,
    key_buf: Vec<u8>,
    value_buf: Vec<u8>,
}

impl Expecter {
    /// An expecter for `table` as captured, with the source's column rules and topic prefix and
    /// the loader's document options.
    pub fn new(
        table: Arc<TableSchema>,
        mut columns: ColumnFilter,
        prefix: &str,
        options: Options,
    ) -> Result<Expecter, VerifyError> {
        let filtered = columns.schema(&table).map_err(VerifyError::table)?;
        let avro = schema::table_avro(prefix, &filtered).map_err(VerifyError::table)?;
        let parse = |json: &Json| {
            Schema::parse(json).map_err(|e| VerifyError::Table(format!("{}: {e}", table.id)))
        };
        Ok(Expecter {
            envelope: avro::EnvelopeConstants::new(prefix, &table.id),
            key_plan: KeyPlan::new(&parse(&avro.key)?),
            value_plan: ValuePlan::new(&parse(&avro.value)?, &options),
            table,
            columns,
            options,
            key_buf: Vec::new(),
            value_buf: Vec::new(),
        })
    }

    /// The table as captured (unfiltered).
    pub fn table(&self) -> &Arc<TableSchema> {
        &self.table
    }

    /// The index the table's documents are in.
    pub fn index(&self) -> String {
        self.options.index_name(&self.table.id)
    }

    /// The documents of `rows`.
    pub fn expect(&mut self, rows: Vec<Row>) -> Result<Vec<Expected>, VerifyError> {
        let keys: Vec<Vec<Value>> = rows
            .iter()
            .map(|r| self.table.key_values(r).cloned().collect())
            .collect();
        // Only the row's document is compared, so where it came from does not matter.
        let source = SourceInfo::snapshot_read("verify", 0, 0, 0);
        let mut changes: Vec<Change> = rows
            .into_iter()
            .map(|row| Change {
                table: self.table.clone(),
                op: Op::Read,
                before: None,
                after: Some(row),
                version: Version::at(1, 0),
                source: source.clone(),
            })
            .collect();
        self.columns
            .apply(&mut changes)
            .map_err(VerifyError::table)?;
        let table = self.table.id.clone();
        let bad = |e: &dyn std::fmt::Display| {
            VerifyError::Table(format!(
                "{table}: a row does not encode as the pipeline encodes it: {e}"
            ))
        };
        let (key_buf, value_buf) = (&mut self.key_buf, &mut self.value_buf);
        let (key_plan, value_plan) = (&self.key_plan, &mut self.value_plan);
        let mut doc = Vec::new();
        changes
            .iter()
            .zip(keys)
            .map(|(change, key_values)| {
                key_buf.clear();
                value_buf.clear();
                let row = change.after.as_ref().expect("read changes carry a row");
                avro::write_key(key_buf, &change.table, row).map_err(|e| bad(&e))?;
                avro::write_envelope(value_buf, change, &self.envelope, 0).map_err(|e| bad(&e))?;
                let id = key_plan.id(key_buf).map_err(|e| bad(&e))?;
                doc.clear();
                let read = value_plan.read(value_buf, &mut doc).map_err(|e| bad(&e))?;
                if read.effect != Effect::Write {
                    return Err(bad(&format!("a read became {:?}", read.effect)));
                }
                let mut doc: Json = serde_json::from_slice(&doc).map_err(|e| bad(&e))?;
                if let Json::Object(fields) = &mut doc {
                    fields.remove(META_FIELD);
                }
                Ok(Expected {
                    key: key_values,
                    id,
                    doc,
                })
            })
            .collect()
    }
}
