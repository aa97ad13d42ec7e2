//! The reading side of the loader: consumed records decoded through the registry into a
//! batch (its bulk body, dead letters, truncate, mappings to make, offsets to commit).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use apache_avro::Schema;
use rdkafka::message::{Message, OwnedMessage};
use schema_registry_converter::async_impl::schema_registry::{SrSettings, get_schema_by_id};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::SchemaType;
use tokio_util::sync::CancellationToken;

use super::bulk::{Action, Body};
use super::dead_letter::{DeadLetter, ErrorClass, Origin};
use super::document::Options;
use super::error::LoadError;
use super::index::{IndexWriter, Target};
use super::mapping;
use super::plan::{Effect, KeyPlan, Route, ValuePlan};
use crate::config::LoaderConfig;
use crate::metrics::metrics;
use crate::model::time;
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
    /// Its table and the index it writes to.
    pub route: Arc<Route>,
    /// The record it came from.
    pub origin: Origin,
    /// Whether it deletes (else it indexes) a document.
    pub delete: bool,
    /// When Sluice read its change, for commit-to-indexed latency.
    pub read_ms: Option<i64>,
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
            .filter(|item| *item.route.index == **index)
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

/// The registry side of decoding: writer schemas fetched by id and compiled into plans once.
pub struct Registry {
    settings: SrSettings,
    /// How documents are shaped (the plans resolve their tables' routes from it).
    options: Options,
    keys: HashMap<u32, KeyPlan>,
    values: HashMap<u32, ValuePlan>,
    /// Schema ids that can never be read (unknown to the registry, not Avro), with why: a
    /// run of poison records asks the registry once, not once per record.
    refused: HashMap<u32, String>,
    /// The document being written, reused across records.
    doc: Vec<u8>,
}

impl Registry {
    /// A registry client asking where `settings` say, for documents shaped by `options`.
    pub fn new(settings: SrSettings, options: Options) -> Registry {
        Registry {
            settings,
            options,
            keys: HashMap::new(),
            values: HashMap::new(),
            refused: HashMap::new(),
            doc: Vec::new(),
        }
    }

    /// Checks the wire header of `bytes` and makes sure its schema id has a plan of `kind`,
    /// waiting out registry outages. `Ok(None)` on shutdown; an inner error makes the record
    /// a dead letter.
    async fn prepare<'b>(
        &mut self,
        bytes: &'b [u8],
        kind: Kind,
        shutdown: &CancellationToken,
    ) -> Result<Option<Result<(u32, &'b [u8]), String>>, LoadError> {
        let (id, body) = match frame(bytes) {
            Ok(framed) => framed,
            Err(e) => return Ok(Some(Err(e))),
        };
        let known = match kind {
            Kind::Key => self.keys.contains_key(&id),
            Kind::Value => self.values.contains_key(&id),
        };
        if !known {
            if let Some(e) = self.refused.get(&id) {
                return Ok(Some(Err(e.clone())));
            }
            let schema = match fetch(id, &self.settings, shutdown).await? {
                None => return Ok(None),
                Some(Err(e)) => {
                    self.refused.insert(id, e.clone());
                    return Ok(Some(Err(e)));
                }
                Some(Ok(schema)) => schema,
            };
            match kind {
                Kind::Key => {
                    self.keys.insert(id, KeyPlan::new(&schema));
                }
                Kind::Value => {
                    self.values
                        .insert(id, ValuePlan::new(&schema, &self.options));
                }
            }
        }
        Ok(Some(Ok((id, body))))
    }
}

/// Which side of a record a schema describes.
#[derive(Clone, Copy)]
enum Kind {
    Key,
    Value,
}

/// The schema id and Avro body of Confluent's wire format: magic byte 0, the id big-endian.
fn frame(bytes: &[u8]) -> Result<(u32, &[u8]), String> {
    match bytes {
        [0, a, b, c, d, body @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), body)),
        [first, ..] if bytes.len() >= 5 => Err(format!(
            "first byte is {first:#04x}, not the magic byte 0x00 of Confluent's wire format: \
             the record was not written with a schema registry serializer"
        )),
        _ => Err(format!(
            "{} bytes, too short for Confluent's wire format (magic byte 0x00 and a 4-byte schema id)",
            bytes.len()
        )),
    }
}

/// Reads one record into the batch; a record that cannot be read becomes a dead letter.
/// Returns false, leaving the batch as it was, if `shutdown` interrupted waiting for the
/// registry.
pub async fn add(
    batch: &mut Batch,
    m: OwnedMessage,
    registry: &mut Registry,
    writer: &IndexWriter,
    shutdown: &CancellationToken,
) -> Result<bool, LoadError> {
    let fetched = Instant::now();
    if let Some(produced) = m.timestamp().to_millis() {
        let ms = (time::now_ms() - produced).max(0);
        let stage = &metrics().stages.produced_to_fetched;
        stage.observe(ms as f64 / 1000.0);
    }
    let mut kept = Kept::Nothing; // a tombstone: the delete before it carried the version
    if let Some(payload) = m.payload() {
        // Only truncates have no key; the envelope says whether that is what this is.
        let key = match m.key() {
            None => None,
            Some(key) => match registry.prepare(key, Kind::Key, shutdown).await? {
                None => return Ok(false),
                some => some,
            },
        };
        let Some(value) = registry.prepare(payload, Kind::Value, shutdown).await? else {
            return Ok(false);
        };
        kept = read(batch, registry, key, value, writer).unwrap_or_else(Kept::Dead);
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
        Kept::Action(route, delete, read_ms) => batch.items.push(Item {
            route,
            origin: Origin::of(m),
            delete,
            read_ms,
            fetched,
        }),
        Kept::Truncate(index, version) => {
            batch.truncate = Some(Truncate {
                index,
                version,
                topic: m.topic().to_string(),
                partition: m.partition(),
            })
        }
        Kept::Dead(reason) => batch.dead.push(DeadLetter {
            origin: Origin::of(m),
            class: ErrorClass::Decode,
            reason,
        }),
        Kept::Nothing => {}
    }
    Ok(true)
}

/// What a record leaves in the batch besides its offset; it moves there last.
enum Kept {
    /// An action in the body: its table, whether it deletes, when Sluice read its change.
    Action(Arc<Route>, bool, Option<i64>),
    Truncate(String, u64),
    Dead(String),
    Nothing,
}

/// Reads a prepared record into the batch's body, noting the index mapping its writer
/// schema needs.
fn read(
    batch: &mut Batch,
    registry: &mut Registry,
    key: Option<Result<(u32, &[u8]), String>>,
    value: Result<(u32, &[u8]), String>,
    writer: &IndexWriter,
) -> Result<Kept, String> {
    let key = key.transpose().map_err(|e| format!("key: {e}"))?;
    let (schema_id, body) = value.map_err(|e| format!("value: {e}"))?;
    let plan = registry
        .values
        .get_mut(&schema_id)
        .expect("prepared before reading");
    let doc = &mut registry.doc;
    doc.clear();
    let (effect, version, read_ms, route) = {
        let read = plan.read(body, doc).map_err(|e| format!("value: {e}"))?;
        (read.effect, read.version, read.read_ms, read.route.clone())
    };
    // The id first: a record refused for its key asks for no index or mapping.
    let id = match (effect, key) {
        (Effect::Truncate, _) => String::new(),
        (_, None) => return Err("a row change without a key".into()),
        (_, Some((key_id, key_body))) => registry.keys[&key_id]
            .id(key_body)
            .map_err(|e| format!("key: {e}"))?,
    };
    let index = &*route.index;
    let pending = batch.mappings.get(index);
    let known = pending.is_some_and(|p| p.iter().any(|t| t.schema_id == schema_id))
        || writer.is_mapped(index, schema_id);
    if !known {
        let row = plan.row().ok_or("the value schema is not an envelope")?;
        let target = Target {
            schema_id,
            mappings: mapping::mappings(row, &route.table, &registry.options),
            alias: route.alias.clone(),
        };
        batch
            .mappings
            .entry(index.to_string())
            .or_default()
            .push(target);
    }
    if effect == Effect::Truncate {
        return Ok(Kept::Truncate(index.to_string(), version));
    }
    let action = match effect {
        Effect::Delete => Action::Delete {
            index,
            id: &id,
            version,
        },
        _ => Action::Index {
            index,
            id: &id,
            version,
            doc,
        },
    };
    batch.body.push(action);
    Ok(Kept::Action(route, effect == Effect::Delete, read_ms))
}

/// The schema `id` names, parsed; `Ok(None)` on shutdown, an inner error for a schema the
/// registry does not have or Sluice cannot read.
async fn fetch(
    id: u32,
    settings: &SrSettings,
    shutdown: &CancellationToken,
) -> Result<Option<Result<Schema, String>>, LoadError> {
    let mut backoff = Backoff::default();
    loop {
        let e = match get_schema_by_id(id, settings).await {
            Ok(registered) if registered.schema_type != SchemaType::Avro => {
                let kind = registered.schema_type;
                return Ok(Some(Err(format!(
                    "schema id {id} is a {kind:?} schema, not Avro"
                ))));
            }
            Ok(registered) if !registered.references.is_empty() => {
                return Ok(Some(Err(format!(
                    "schema id {id} refers to other schemas, which Sluice's schemas never do"
                ))));
            }
            Ok(registered) => {
                return Ok(Some(
                    Schema::parse_str(&registered.schema)
                        .map_err(|e| format!("schema id {id} does not parse: {e}")),
                ));
            }
            Err(e) => e,
        };
        match classify(&e) {
            Attempt::Permanent(DecodeRefusal::Poison(reason)) => return Ok(Some(Err(reason))),
            Attempt::Permanent(DecodeRefusal::Fatal(reason)) => {
                return Err(LoadError::RegistryRefused(reason));
            }
            Attempt::Transient(reason) => {
                let next = "schema registry unavailable; retrying";
                if !backoff.wait_out(reason, next, shutdown).await {
                    return Ok(None);
                }
            }
        }
    }
}

/// What a failed decode leads to when another attempt would fail the same way.
enum DecodeRefusal {
    /// The record itself is bad: a schema id the registry does not know.
    Poison(String),
    /// The registry refuses the loader (credentials): stop.
    Fatal(String),
}

/// Sorts a failed schema lookup by the registry's HTTP status, when there was one.
fn classify(e: &SRCError) -> Attempt<DecodeRefusal> {
    match crate::wire::registry::status(e) {
        Some(404) => Attempt::Permanent(DecodeRefusal::Poison(e.to_string())),
        Some(408 | 429 | 500..=599) => Attempt::Transient(e.to_string()),
        Some(_) => Attempt::Permanent(DecodeRefusal::Fatal(e.to_string())),
        None if e.retriable => Attempt::Transient(e.to_string()),
        None => Attempt::Permanent(DecodeRefusal::Poison(e.to_string())),
    }
}
