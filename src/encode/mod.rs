//! Stage 2, the encoder: typed changes -> Confluent wire-format Avro key and value.
//!
//! Each table version's schemas are registered once (subjects named by the configured
//! strategy: `<topic>-key`/`<topic>-value` by default) through schema_registry_converter and
//! cached; encoding a row afterwards is a pure function with no HTTP call and no schema work.

pub mod avro;
pub mod schema;

use std::collections::HashMap;
use std::sync::Arc;

use schema_registry_converter::async_impl::schema_registry::{SrSettings, post_schema};
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};

use crate::config::RegistryConfig;
use crate::model::{Change, TableId, TableSchema};
use tokio_util::sync::CancellationToken;

use crate::retry::{Attempt, Backoff};
use crate::wire::envelope::frame;
use crate::wire::registry::{self, ClientError};
use crate::wire::subject::{Part, SubjectStrategy, subject};
use crate::wire::topic;

/// Why a change could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The registry client cannot be set up.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The registry refused or could not be reached.
    #[error(
        "schema registry at {url}: registering subject {subject} failed: {message}; check \
         `registry.url`, the credentials (`registry.username`, `registry.password`), the CA of \
         an https registry (`registry.ca_file`), and that the registry is running"
    )]
    Registry {
        /// Registry URL.
        url: String,
        /// Subject.
        subject: String,
        /// What the client reported.
        message: String,
    },
    /// The registry refused a table's new schema under the subject's compatibility level.
    #[error(
        "the registry refused the new schema of subject {subject} as incompatible: {message}; \
         consumers could not read records written with it. Make the change compatible, or \
         relax the subject's level (PUT /config/{subject}), then restart Sluice"
    )]
    Incompatible {
        /// Subject.
        subject: String,
        /// The registry's reason (names the level and the difference).
        message: String,
    },
    /// The table's names cannot become Avro names.
    #[error(transparent)]
    Names(#[from] schema::NameClash),
    /// A value does not fit its column.
    #[error("table {table}: {source}")]
    Value {
        /// Table.
        table: TableId,
        /// Which column and why.
        source: avro::ValueError,
    },
}

/// A table version whose schemas are registered.
#[derive(Debug)]
pub struct Registered {
    /// The table version.
    pub schema: Arc<TableSchema>,
    /// Kafka topic of the table; shared by every record's delivery report.
    pub topic: Arc<str>,
    key_id: u32,
    value_id: u32,
    envelope: avro::EnvelopeConstants,
}

/// Registers schemas and encodes changes.
pub struct Encoder {
    registry: SrSettings,
    registry_url: String,
    strategy: SubjectStrategy,
    prefix: String,
    tables: HashMap<TableId, Arc<Registered>>,
    /// The registration returned last: a run of changes to one table skips the map's hashing.
    last: Option<Arc<Registered>>,
}

impl Encoder {
    /// An encoder for topics `<prefix>.<db>.<table>`, registering in the configured registry.
    pub fn new(config: &RegistryConfig, prefix: &str) -> Result<Self, EncodeError> {
        Ok(Encoder {
            registry: registry::settings(config.endpoint())?,
            registry_url: config.url.to_string(),
            strategy: config.subject_strategy,
            prefix: prefix.to_string(),
            tables: HashMap::new(),
            last: None,
        })
    }

    /// The registration of `table`'s current version, registering it if it is new. The second
    /// value is true on a table's first registration in this process. While the registry is
    /// unreachable (not started yet, restarting) it waits with backoff; `None` if `shutdown`
    /// came first.
    pub async fn registered(
        &mut self,
        table: &Arc<TableSchema>,
        shutdown: &CancellationToken,
    ) -> Result<Option<(Arc<Registered>, bool)>, EncodeError> {
        if let Some(r) = &self.last
            && Arc::ptr_eq(&r.schema, table)
        {
            return Ok(Some((r.clone(), false)));
        }
        if let Some(r) = self.tables.get(&table.id)
            && (Arc::ptr_eq(&r.schema, table) || r.schema == *table)
        {
            self.last = Some(r.clone());
            return Ok(Some((r.clone(), false)));
        }
        let topic = topic::table_topic(&self.prefix, &table.id);
        let avro = schema::table_avro(&self.prefix, table)?;
        let key_subject = subject(self.strategy, &topic, Part::Key, &avro.key);
        let Some(key_id) = self.register(key_subject, &avro.key, shutdown).await? else {
            return Ok(None);
        };
        let value_subject = subject(self.strategy, &topic, Part::Value, &avro.value);
        let Some(value_id) = self.register(value_subject, &avro.value, shutdown).await? else {
            return Ok(None);
        };
        tracing::info!(table = %table.id, key_id, value_id, "registered schemas");
        let r = Arc::new(Registered {
            schema: table.clone(),
            topic: topic.into(),
            key_id,
            value_id,
            envelope: avro::EnvelopeConstants::new(&self.prefix, &table.id),
        });
        let first = self.tables.insert(table.id.clone(), r.clone()).is_none();
        self.last = Some(r.clone());
        Ok(Some((r, first)))
    }

    /// Registers `schema` under `subject`, waiting while the registry is unreachable.
    async fn register(
        &self,
        subject: String,
        schema: &serde_json::Value,
        shutdown: &CancellationToken,
    ) -> Result<Option<u32>, EncodeError> {
        let mut backoff = Backoff::default();
        loop {
            match self.try_register(&subject, schema).await {
                Ok(id) => return Ok(Some(id)),
                Err(Attempt::Permanent(e)) => return Err(e),
                Err(Attempt::Transient(reason)) => {
                    let reason = format!("subject {subject} at {}: {reason}", self.registry_url);
                    let next = "the schema registry is not reachable; waiting for it";
                    if !backoff.wait_out(reason, next, shutdown).await {
                        return Ok(None);
                    }
                }
            }
        }
    }

    async fn try_register(
        &self,
        subject: &str,
        schema: &serde_json::Value,
    ) -> Result<u32, Attempt<EncodeError>> {
        let subject = subject.to_string();
        let supplied = SuppliedSchema::new(None, SchemaType::Avro, schema.to_string());
        post_schema(&self.registry, subject.clone(), supplied)
            .await
            .map(|r| r.id)
            .map_err(|e| {
                if registry::is_unreachable(&e) {
                    Attempt::Transient(crate::with_causes(&e))
                } else if e.error.contains("status 409") {
                    Attempt::Permanent(EncodeError::Incompatible {
                        subject,
                        message: e.cause.unwrap_or(e.error),
                    })
                } else {
                    Attempt::Permanent(EncodeError::Registry {
                        url: self.registry_url.clone(),
                        subject,
                        message: crate::with_causes(&e),
                    })
                }
            })
    }

    /// Writes the Confluent-framed key and value of `change` into the (cleared) buffers. A
    /// truncate has no row, so no key: `key` is left empty.
    pub fn encode(
        &self,
        r: &Registered,
        change: &Change,
        now_ms: i64,
        key: &mut Vec<u8>,
        value: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        let wrap = |source| EncodeError::Value {
            table: r.schema.id.clone(),
            source,
        };
        key.clear();
        if let Some(row) = change.after.as_ref().or(change.before.as_ref()) {
            frame(key, r.key_id);
            avro::write_key(key, &r.schema, row).map_err(wrap)?;
        }
        frame(value, r.value_id);
        avro::write_envelope(value, change, &r.envelope, now_ms).map_err(wrap)
    }
}
