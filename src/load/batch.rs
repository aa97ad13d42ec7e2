//! The reading side of the loader: consumed records decoded through the registry into a
//! batch (its bulk body, dead letters, truncate, mappings to make, offsets to commit).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use rdkafka::message::{Message, OwnedMessage};
use schema_registry_converter::async_impl::avro::AvroDecoder;
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::avro_common::DecodeResultWithSchema;
use schema_registry_converter::error::SRCError;
use tokio_util::sync::CancellationToken;

use super::bulk::Body;
use super::dead_letter::{DeadLetter, ErrorClass, Origin};
use super::document::{self, Action, Options, Record};
use super::error::LoadError;
use super::index::{IndexWriter, Target};
use super::mapping;
use crate::config::LoaderConfig;
use crate::metrics::metrics;
use crate::model::{TableId, time};
use crate::retry::{Attempt, Backoff};

/// A TRUNCATE read from one partition.
pub struct Truncate {
    /// The table's index.
    pub index: String,
    /// Version of the TRUNCATE.
    pub version: u64,
    /// Where it was read.
    pub topic: String,
    /// Where it was read.
    pub partition: i32,
}

/// One action of a batch's bulk body.
pub struct Item {
    /// The index it writes to.
    pub index: String,
    /// The record it came from.
    pub origin: Origin,
    /// Whether it deletes (else it indexes) a document.
    pub delete: bool,
    /// Its table and when Sluice read its change, for commit-to-indexed latency.
    pub read_at: Option<(TableId, i64)>,
    /// When the loader read its record (for the latency stages).
    pub fetched: Instant,
}

/// A batch's records and the offsets to commit once it is applied.
#[derive(Default)]
pub struct Batch {
    /// The documents to write, as one bulk body.
    pub body: Body,
    /// The index and record behind each action of `body`: a conflict holds an index's
    /// records, a refused action becomes a dead letter.
    pub items: Vec<Item>,
    /// Records that cannot be applied.
    pub dead: Vec<DeadLetter>,
    /// A truncate, applied after `body`; it always ends its batch.
    pub truncate: Option<Truncate>,
    /// Indexes that cannot take their table's new schema, with the topics held back for them.
    pub held: Vec<(LoadError, BTreeSet<String>)>,
    /// Indexes whose mapping must first take writer schemas: created, or given the fields
    /// they lack. Every distinct schema counts: partitions interleave in a batch, so the last
    /// schema read need not be the newest.
    pub mappings: BTreeMap<String, Vec<Target>>,
    /// Per partition, the offset after the batch's last record.
    pub next_offsets: BTreeMap<(String, i32), i64>,
    /// Records read into the batch, tombstones and dead letters included.
    pub records: usize,
}

impl Batch {
    /// Whether the batch must be sent: by count, by body size, or because a truncate (which
    /// applies after everything read before it) ends it.
    pub fn is_full(&self, cfg: &LoaderConfig) -> bool {
        self.records >= cfg.batch_size.get()
            || self.body.bytes().len() >= cfg.batch_bytes.get()
            || self.truncate.is_some()
    }

    /// Takes the records of the index a mapping conflict names out of the batch, and their
    /// topics' offsets with them: the table waits (until a reindex and restart), the others
    /// go on.
    pub fn hold(&mut self, conflict: LoadError) {
        let LoadError::MappingConflict { index, .. } = &conflict else {
            return;
        };
        self.mappings.remove(index);
        let topics: BTreeSet<String> = self
            .items
            .iter()
            .filter(|item| &item.index == index)
            .map(|item| item.origin.topic().to_string())
            .chain(
                self.truncate
                    .as_ref()
                    .filter(|t| &t.index == index)
                    .map(|t| t.topic.clone()),
            )
            .collect();
        self.forget(|topic, _| topics.contains(topic));
        self.held.push((conflict, topics));
    }

    /// Takes every record of the partitions `gone` names out of the batch, with their
    /// offsets: they are read again by whoever consumes those partitions next.
    pub fn forget(&mut self, gone: impl Fn(&str, i32) -> bool) {
        let drop: Vec<bool> = self
            .items
            .iter()
            .map(|item| gone(item.origin.topic(), item.origin.partition()))
            .collect();
        self.body.retain(|i| !drop[i]);
        let mut i = 0;
        self.items.retain(|_| {
            i += 1;
            !drop[i - 1]
        });
        self.dead
            .retain(|d| !gone(d.origin.topic(), d.origin.partition()));
        if self
            .truncate
            .as_ref()
            .is_some_and(|t| gone(&t.topic, t.partition))
        {
            self.truncate = None;
        }
        self.next_offsets.retain(|(topic, p), _| !gone(topic, *p));
        self.records = self.items.len() + self.dead.len() + usize::from(self.truncate.is_some());
    }
}

/// The registry side of decoding.
pub struct Registry {
    decoder: AvroDecoder,
    settings: SrSettings,
}

impl Registry {
    /// A decoder asking the registry `settings` describe.
    pub fn new(settings: SrSettings) -> Registry {
        Registry {
            decoder: AvroDecoder::new(settings.clone()),
            settings,
        }
    }
}

/// Decodes one record into the batch; a record that cannot be decoded becomes a dead letter.
/// Returns false, leaving the batch as it was, if `shutdown` interrupted waiting for the
/// registry.
pub async fn add(
    batch: &mut Batch,
    m: OwnedMessage,
    registry: &mut Registry,
    writer: &IndexWriter,
    options: &Options,
    shutdown: &CancellationToken,
) -> Result<bool, LoadError> {
    let fetched = Instant::now();
    if let Some(produced) = m.timestamp().to_millis() {
        let ms = (time::now_ms() - produced).max(0);
        let stage = &metrics().stages.produced_to_fetched;
        stage.observe(ms as f64 / 1000.0);
    }
    // What the record leaves in the batch besides its offset; it moves there last.
    enum Kept {
        Action(String, bool, Option<(TableId, i64)>),
        Dead(String),
        Nothing,
    }
    let mut kept = Kept::Nothing; // a tombstone: the delete before it carried the version
    if m.payload().is_some() {
        // Only truncates have no key; the envelope says whether that is what this is.
        let Some(key) = with_registry(registry, m.key(), shutdown).await? else {
            return Ok(false);
        };
        let Some(value) = with_registry(registry, m.payload(), shutdown).await? else {
            return Ok(false);
        };
        kept = match shape(batch, key, value, writer, options) {
            Ok((Record::Document(action), table, read_ms)) => {
                batch.body.push(&action);
                let (index, delete) = match action {
                    Action::Index { index, .. } => (index, false),
                    Action::Delete { index, .. } => (index, true),
                };
                Kept::Action(index, delete, read_ms.map(|ms| (table, ms)))
            }
            Ok((Record::Truncate { index, version }, _, _)) => {
                batch.truncate = Some(Truncate {
                    index,
                    version,
                    topic: m.topic().to_string(),
                    partition: m.partition(),
                });
                Kept::Nothing
            }
            Err(reason) => Kept::Dead(reason),
        };
    }
    batch.records += 1;
    // Looked up first: a topic name is allocated once per partition, not per record.
    let key = (m.topic(), m.partition());
    match batch
        .next_offsets
        .iter_mut()
        .find(|((t, p), _)| (t.as_str(), *p) == key)
    {
        Some((_, next)) => *next = m.offset() + 1,
        None => {
            let key = (m.topic().to_string(), m.partition());
            batch.next_offsets.insert(key, m.offset() + 1);
        }
    }
    match kept {
        Kept::Action(index, delete, read_at) => batch.items.push(Item {
            index,
            origin: Origin::of(m),
            delete,
            read_at,
            fetched,
        }),
        Kept::Dead(reason) => batch.dead.push(DeadLetter {
            origin: Origin::of(m),
            class: ErrorClass::Decode,
            reason,
        }),
        Kept::Nothing => {}
    }
    Ok(true)
}

/// The record decoded key and value describe, noting the index to create for it.
fn shape(
    batch: &mut Batch,
    key: Result<Option<DecodeResultWithSchema>, String>,
    value: Result<Option<DecodeResultWithSchema>, String>,
    writer: &IndexWriter,
    options: &Options,
) -> Result<(Record, TableId, Option<i64>), String> {
    let key = key.map_err(|e| format!("key: {e}"))?;
    let value = value
        .map_err(|e| format!("value: {e}"))?
        .ok_or("empty value")?;
    let document::RoutedRecord {
        record,
        table,
        alias,
        read_ms,
    } = document::record(
        key.as_ref().map(|k| (&k.value, &k.schema.parsed)),
        &value.value,
        &value.schema.parsed,
        options,
    )
    .map_err(|e| e.to_string())?;
    let (index, id) = (record.index(), value.schema.id);
    let pending = batch.mappings.get(index);
    let known =
        pending.is_some_and(|p| p.iter().any(|t| t.schema_id == id)) || writer.is_mapped(index, id);
    if !known {
        let apache_avro::Schema::Record(envelope) = &value.schema.parsed else {
            return Err("the value schema is not a record".into());
        };
        let row = document::row_schema(envelope).map_err(|e| e.to_string())?;
        let mappings = mapping::mappings(row, &table, options);
        let target = Target {
            schema_id: id,
            mappings,
            alias,
        };
        batch
            .mappings
            .entry(index.to_string())
            .or_default()
            .push(target);
    }
    Ok((record, table, read_ms))
}

/// What a failed decode leads to when another attempt would fail the same way.
enum DecodeRefusal {
    /// The record itself is bad: not Sluice's Avro, a schema id the registry does not know.
    Poison(String),
    /// The registry refuses the loader (credentials): stop.
    Fatal(String),
}

/// Sorts a decoder error by the registry's HTTP status, when there was one.
fn classify(e: &SRCError) -> Attempt<DecodeRefusal> {
    match crate::wire::registry::status(e) {
        Some(404) => Attempt::Permanent(DecodeRefusal::Poison(e.to_string())),
        Some(408 | 429 | 500..=599) => Attempt::Transient(e.to_string()),
        Some(_) => Attempt::Permanent(DecodeRefusal::Fatal(e.to_string())),
        None if e.retriable => Attempt::Transient(e.to_string()),
        None => Attempt::Permanent(DecodeRefusal::Poison(e.to_string())),
    }
}

/// Decodes `bytes`, waiting out registry outages (a record is a dead letter only for what
/// the registry or the bytes say about the record itself); `Ok(None)` on shutdown.
async fn with_registry(
    registry: &mut Registry,
    bytes: Option<&[u8]>,
    shutdown: &CancellationToken,
) -> Result<Option<Result<Option<DecodeResultWithSchema>, String>>, LoadError> {
    let mut backoff = Backoff::default();
    loop {
        let e = match registry.decoder.decode_with_schema(bytes).await {
            Ok(v) => return Ok(Some(Ok(v))),
            Err(e) => e,
        };
        match classify(&e) {
            Attempt::Permanent(DecodeRefusal::Poison(reason)) => return Ok(Some(Err(reason))),
            Attempt::Permanent(DecodeRefusal::Fatal(reason)) => {
                return Err(LoadError::RegistryRefused(reason));
            }
            Attempt::Transient(reason) => {
                // The decoder keeps failed lookups; a fresh one asks the registry again.
                registry.decoder = AvroDecoder::new(registry.settings.clone());
                let next = "schema registry unavailable; retrying";
                if !backoff.wait_out(reason, next, shutdown).await {
                    return Ok(None);
                }
            }
        }
    }
}
