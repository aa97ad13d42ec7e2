//! `[loader]` and `[loader.mapping]`: the consumer group, batching, and how rows become
//! documents and index fields.

use std::num::NonZeroUsize;
use std::time::Duration;

use serde::Deserialize;

use super::Problems;
use super::patterns::{ColumnPattern, column_patterns};
use crate::wire::topic;

/// `[loader]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LoaderFile {
    group_id: Option<String>,
    instance_id: Option<String>,
    #[serde(default = "default_batch_size")]
    batch_size: usize,
    #[serde(default = "default_batch_bytes")]
    batch_bytes: usize,
    #[serde(default = "default_linger_ms")]
    linger_ms: u64,
    #[serde(default = "default_fetch_wait_ms")]
    fetch_wait_ms: u64,
    #[serde(default = "default_max_in_flight")]
    max_in_flight: usize,
    dead_letter_topic: Option<String>,
    #[serde(default = "default_index_template")]
    index: String,
    alias: Option<String>,
    #[serde(default)]
    mapping: MappingFile,
    #[serde(default)]
    metadata_fields: bool,
}

impl Default for LoaderFile {
    /// An absent `[loader]`: every field at its default.
    fn default() -> Self {
        LoaderFile {
            group_id: None,
            instance_id: None,
            batch_size: default_batch_size(),
            batch_bytes: default_batch_bytes(),
            linger_ms: default_linger_ms(),
            fetch_wait_ms: default_fetch_wait_ms(),
            max_in_flight: default_max_in_flight(),
            dead_letter_topic: None,
            index: default_index_template(),
            alias: None,
            mapping: MappingFile::default(),
            metadata_fields: false,
        }
    }
}

/// Records per bulk request unless configured.
const BATCH_SIZE: NonZeroUsize = NonZeroUsize::new(1000).unwrap();
/// Bulk body size unless configured: Elasticsearch's guidance is a few megabytes.
const BATCH_BYTES: NonZeroUsize = NonZeroUsize::new(5 << 20).unwrap();
/// Bulks in flight unless configured. One: the reader keeps filling the next batch while a
/// bulk is applied, so a second bulk in flight gained no rate on osmem-server (which applies
/// one write at a time), and at 500 commits/s its small concurrent bulks roughly doubled the
/// median latency (docs/benchmarks.md). A cluster with many data nodes may want more.
const MAX_IN_FLIGHT: NonZeroUsize = NonZeroUsize::new(1).unwrap();

fn default_batch_size() -> usize {
    BATCH_SIZE.get()
}

fn default_batch_bytes() -> usize {
    BATCH_BYTES.get()
}

fn default_linger_ms() -> u64 {
    // Batches come from load, not from a timer: a batch goes out as soon as its lane has no
    // bulk in flight, and fills while one is (docs/benchmarks.md, latency).
    0
}

fn default_fetch_wait_ms() -> u64 {
    // tansu answers a waiting fetch only when the wait is over (a record waits 1.5 times
    // this on average); Kafka answers as soon as data arrives, so there a longer wait costs
    // no latency and saves requests (docs/benchmarks.md, latency).
    5
}

fn default_max_in_flight() -> usize {
    MAX_IN_FLIGHT.get()
}

fn default_index_template() -> String {
    "{db}.{table}".into()
}

/// `[loader.mapping]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingFile {
    #[serde(default)]
    strings: StringMapping,
    #[serde(default)]
    decimals: DecimalMapping,
    #[serde(default)]
    json: JsonMapping,
    #[serde(default)]
    json_columns: Vec<String>,
    #[serde(default)]
    booleans: Vec<String>,
    #[serde(default)]
    vectors: VectorMapping,
}

/// `[loader]`.
#[derive(Debug, Clone)]
pub struct LoaderConfig {
    /// Consumer group (`<topic_prefix>-loader` unless configured).
    pub group_id: String,
    /// This loader's static member id in the group (Kafka's `group.instance.id`; the host name
    /// unless configured). A restarted loader with the same id takes its partitions back at
    /// once, instead of waiting for the broker to expire its previous, dead membership.
    /// Loaders of one group on one host need distinct ids. `None` (`""` in the file): no
    /// static membership (several loaders on tansu, whose groups of static members never
    /// settle).
    pub instance_id: Option<String>,
    /// Most records in one bulk request.
    pub batch_size: NonZeroUsize,
    /// Largest bulk request body in bytes (before compression); a batch reaching it is sent.
    pub batch_bytes: NonZeroUsize,
    /// How long a batch waits for more records before it is sent while its lane is idle
    /// (0: at once; it fills while the lane's previous bulk is in flight).
    pub linger: Duration,
    /// The consumer's `fetch.wait.max.ms`: the longest a fetch waits at the broker for
    /// records (the only way to set it: the read-ahead recheck is derived from it).
    pub fetch_wait: Duration,
    /// Most bulk requests in flight at once. Each partition belongs to one lane, a lane has
    /// one bulk in flight at a time (so a partition's records apply in order), and a lane that
    /// is retrying pauses only its own partitions.
    pub max_in_flight: NonZeroUsize,
    /// Topic of the records the loader can never apply (`<topic_prefix>.dlq` unless
    /// configured).
    pub dead_letter_topic: String,
    /// Index name template over `{db}` and `{table}` (default `{db}.{table}`), lower-cased.
    pub index: String,
    /// Alias every index Sluice creates gets, a template like `index` (e.g. `index =
    /// "{db}.{table}-v1"`, `alias = "{db}.{table}"`: readers use the alias, a rebuilt index
    /// takes it over).
    pub alias: Option<String>,
    /// How column types become index field types.
    pub mapping: MappingConfig,
    /// Show `_sluice.version`, `_sluice.ts_ms` and `_sluice.op` in documents (for debugging;
    /// off by default, so `_source` is exactly the row). Applies to indexes created after.
    pub metadata_fields: bool,
}

impl Default for LoaderConfig {
    /// The defaults, for topic prefix `sluice` and static membership off.
    fn default() -> Self {
        LoaderConfig {
            group_id: "sluice-loader".into(),
            instance_id: None,
            batch_size: BATCH_SIZE,
            batch_bytes: BATCH_BYTES,
            linger: Duration::from_millis(default_linger_ms()),
            fetch_wait: Duration::from_millis(default_fetch_wait_ms()),
            max_in_flight: MAX_IN_FLIGHT,
            dead_letter_topic: topic::default_dead_letter("sluice"),
            index: default_index_template(),
            alias: None,
            mapping: MappingConfig::default(),
            metadata_fields: false,
        }
    }
}

/// `[loader.mapping]`: index field types where more than one fits.
#[derive(Debug, Clone, Default)]
pub struct MappingConfig {
    /// CHAR, VARCHAR and TEXT columns.
    pub strings: StringMapping,
    /// DECIMAL columns with a fraction.
    pub decimals: DecimalMapping,
    /// JSON columns.
    pub json: JsonMapping,
    /// Text columns that hold JSON, mapped like JSON columns: MariaDB's JSON is LONGTEXT with
    /// a `json_valid` check, which the binlog shows as text.
    pub json_columns: Vec<ColumnPattern>,
    /// Integer or BIT(1) columns indexed as booleans (0 is false, anything else true), e.g.
    /// MySQL's TINYINT(1) flags, which the binlog does not tell from other TINYINTs.
    pub booleans: Vec<ColumnPattern>,
    /// VECTOR columns (MySQL 9).
    pub vectors: VectorMapping,
}

/// Index type of VECTOR columns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VectorMapping {
    /// The server's vector type: `knn_vector` on OpenSearch, `dense_vector` elsewhere (the
    /// loader asks the server at start).
    #[default]
    Auto,
    /// Elasticsearch's `dense_vector` (up to 4,096 dimensions).
    DenseVector,
    /// OpenSearch's `knn_vector` (up to 16,000 dimensions).
    KnnVector,
    /// An array of `float`: stored and searchable by value, no similarity search.
    Float,
}

/// Index type of text columns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StringMapping {
    /// Full-text `text` with a `keyword` sub-field for sorting and exact match.
    #[default]
    TextAndKeyword,
    /// Full-text only.
    Text,
    /// Exact values only.
    Keyword,
}

/// Index type of DECIMAL columns with a fraction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecimalMapping {
    /// The exact text (no arithmetic in queries, nothing lost).
    #[default]
    Keyword,
    /// A long scaled by 10^scale: exact to the column's scale while it fits 2^53.
    ScaledFloat,
    /// A double: range queries and aggregations, about 15 significant digits.
    Double,
}

/// Index type of JSON columns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JsonMapping {
    /// The JSON text, as Debezium sends it.
    #[default]
    Text,
    /// Parsed; fields mapped as the index server sees them (an object index grows a field per
    /// key; a value of another type than before is refused and goes to the dead-letter topic).
    Object,
    /// Parsed into one Elasticsearch `flattened` field: every leaf a keyword, no mapping
    /// growth.
    Flattened,
    /// The same for OpenSearch (`flat_object`).
    FlatObject,
}

/// The host name, the default static member id.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "sluice".into())
}

impl LoaderFile {
    /// The typed section for topics under `prefix`.
    pub(super) fn build(self, prefix: &str, p: &mut Problems) -> Option<LoaderConfig> {
        let booleans = column_patterns("loader.mapping.booleans", &self.mapping.booleans, p);
        let json_columns =
            column_patterns("loader.mapping.json_columns", &self.mapping.json_columns, p);
        let dead_letter_topic = self
            .dead_letter_topic
            .unwrap_or_else(|| topic::default_dead_letter(prefix));
        if !topic::is_valid(&dead_letter_topic) {
            p.push(format!(
                "`loader.dead_letter_topic` {dead_letter_topic:?} is not a valid Kafka topic name"
            ));
        }
        for (name, template) in [("index", Some(&self.index)), ("alias", self.alias.as_ref())] {
            let Some(t) = template else { continue };
            let rest = t.replace("{db}", "").replace("{table}", "");
            if !t.contains("{table}") || rest.contains('{') || rest.contains('}') {
                p.push(format!(
                    "`loader.{name}` {t:?} must name `{{table}}` (and may name `{{db}}`), and no \
                     other placeholder"
                ));
            }
        }
        let positive = |key: &str, n: usize, p: &mut Problems| {
            let n = NonZeroUsize::new(n);
            if n.is_none() {
                p.push(format!("`loader.{key}` must be at least 1"));
            }
            n
        };
        let batch_size = positive("batch_size", self.batch_size, p);
        let batch_bytes = positive("batch_bytes", self.batch_bytes, p);
        if self.fetch_wait_ms == 0 {
            p.push(
                "`loader.fetch_wait_ms` must be at least 1: with 0 the consumer asks the broker \
                 again without pause while a topic is idle",
            );
        }
        let max_in_flight = positive("max_in_flight", self.max_in_flight, p);
        let instance_id = self.instance_id.unwrap_or_else(host_name);
        Some(LoaderConfig {
            group_id: self.group_id.unwrap_or_else(|| format!("{prefix}-loader")),
            instance_id: (!instance_id.is_empty()).then_some(instance_id),
            batch_size: batch_size?,
            batch_bytes: batch_bytes?,
            linger: Duration::from_millis(self.linger_ms),
            fetch_wait: Duration::from_millis(self.fetch_wait_ms),
            max_in_flight: max_in_flight?,
            dead_letter_topic,
            index: self.index,
            alias: self.alias,
            mapping: MappingConfig {
                strings: self.mapping.strings,
                decimals: self.mapping.decimals,
                json: self.mapping.json,
                json_columns,
                booleans,
                vectors: self.mapping.vectors,
            },
            metadata_fields: self.metadata_fields,
        })
    }
}
