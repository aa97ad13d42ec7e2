//! The document a row must have in the index, made by the pipeline's own steps: the column
//! rules of the source, the Avro encoding, and the loader's record -> document conversion. A
//! second implementation of the mapping could agree with itself and still differ from what
//! the pipeline writes.

use std::sync::Arc;

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value as Avro;
use serde_json::Value as Json;

use super::VerifyError;
use crate::encode::{avro, schema};
use crate::load::document::{self, Action, META_FIELD, Options, Record};
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
    key_schema: Schema,
    value_schema: Schema,
    options: Options,
    prefix: String,
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
            key_schema: parse(&avro.key)?,
            value_schema: parse(&avro.value)?,
            table,
            columns,
            options,
            prefix: prefix.to_string(),
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
        let key_reader = GenericDatumReader::builder(&self.key_schema)
            .build()
            .map_err(|e| bad(&e))?;
        let value_reader = GenericDatumReader::builder(&self.value_schema)
            .build()
            .map_err(|e| bad(&e))?;
        let (key_buf, value_buf) = (&mut self.key_buf, &mut self.value_buf);
        changes
            .iter()
            .zip(keys)
            .map(|(change, key_values)| {
                key_buf.clear();
                value_buf.clear();
                let row = change.after.as_ref().expect("read changes carry a row");
                avro::write_key(key_buf, &change.table, row).map_err(|e| bad(&e))?;
                avro::write_envelope(value_buf, change, &self.prefix, 0).map_err(|e| bad(&e))?;
                let key = key_reader
                    .read_value(&mut &key_buf[..])
                    .map_err(|e| bad(&e))?;
                let value = value_reader
                    .read_value(&mut &value_buf[..])
                    .map_err(|e| bad(&e))?;
                let (id, doc) = document_of(
                    &key,
                    &self.key_schema,
                    &value,
                    &self.value_schema,
                    &self.options,
                )
                .map_err(|e| bad(&e))?;
                Ok(Expected {
                    key: key_values,
                    id,
                    doc,
                })
            })
            .collect()
    }
}

/// The id and `_source` the loader makes of a read's key and value.
fn document_of(
    key: &Avro,
    key_schema: &Schema,
    value: &Avro,
    value_schema: &Schema,
    options: &Options,
) -> Result<(String, Json), String> {
    let routed = document::record(Some((key, key_schema)), value, value_schema, options)
        .map_err(|e| e.to_string())?;
    match routed.record {
        Record::Document(Action::Index { id, mut doc, .. }) => {
            if let Json::Object(fields) = &mut doc {
                fields.remove(META_FIELD);
            }
            Ok((id, doc))
        }
        other => Err(format!("a read became {other:?}")),
    }
}
