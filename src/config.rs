//! Configuration: a TOML file, overridden by `SLUICE_<SECTION>__<KEY>` environment variables,
//! validated as a whole before anything connects. `sluice.example.toml` documents every field.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use url::Url;

use crate::model::TableId;

/// Everything `sluice run` needs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Tables to capture, `database.table`; `*` and `?` match within a part (`shop.*`).
    pub tables: Vec<String>,
    /// Tables the `tables` patterns match that are not to be captured (same syntax).
    #[serde(default)]
    pub exclude_tables: Vec<String>,
    /// Columns to leave out or mask before anything leaves the source.
    #[serde(default)]
    pub columns: ColumnsConfig,
    /// `"database.table" = ["column", ...]`: the columns that key a table's records, for
    /// tables without a primary key (or to replace it).
    #[serde(default)]
    pub keys: BTreeMap<String, Vec<String>>,
    /// The MySQL/MariaDB server to read; needed by the source role.
    pub source: Option<SourceConfig>,
    /// The Kafka cluster between source and loader.
    pub kafka: KafkaConfig,
    /// The Confluent-compatible schema registry.
    pub registry: RegistryConfig,
    /// The index server; needed by the loader role.
    pub elasticsearch: Option<ElasticsearchConfig>,
    /// Loader tuning.
    #[serde(default)]
    pub loader: LoaderConfig,
}

/// `[source]`: the database server and where the source keeps its positions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    #[serde(default = "default_mysql_port")]
    pub port: u16,
    /// User with SELECT, REPLICATION SLAVE and REPLICATION CLIENT.
    pub user: String,
    /// That user's password.
    #[serde(default)]
    pub password: Secret,
    /// Replica server id Sluice registers with; unique among the server's replicas.
    pub server_id: u32,
    /// Directory of the position store (sled).
    pub state_dir: PathBuf,
    /// How a restart finds its place in the binlog.
    #[serde(default)]
    pub resume_by: ResumeBy,
    /// Encryption of the connection to the server.
    #[serde(default)]
    pub tls: TlsMode,
    /// PEM file of the CA that signed the server's certificate (`verify_ca`,
    /// `verify_identity`); the system's roots are used when unset.
    pub tls_ca_file: Option<PathBuf>,
    /// Rows per snapshot chunk: the unit a restart continues after.
    #[serde(default = "default_chunk_rows")]
    pub snapshot_chunk_rows: u64,
    /// Upper bound on the rows per second both snapshot kinds read, to spare a busy primary;
    /// 0 (the default) reads as fast as the pipeline takes them.
    #[serde(default)]
    pub snapshot_max_rows_per_sec: u64,
    /// Put the SQL statement behind each row into `source.query` (off by default: statements
    /// can hold data the column rules would mask). Needs MariaDB's
    /// `binlog_annotate_row_events` (on by default) or MySQL's `binlog_rows_query_log_events`.
    #[serde(default)]
    pub include_query: bool,
    /// `database.table` of the signal table (created by `sluice setup`): incremental
    /// snapshots write their watermarks to it, and rows inserted into it request snapshots.
    /// Without it, a table added to the config is snapshotted with the stream paused.
    #[serde(default = "default_signal_table")]
    pub signal_table: String,
    /// How the first run copies the tables.
    #[serde(default)]
    pub initial_snapshot: InitialSnapshot,
}

/// How the first run copies the tables before (or while) streaming.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InitialSnapshot {
    /// One consistent read at the binlog position the server reports for it (MariaDB's
    /// `binlog_snapshot_file/position`), then streaming from there. The fastest copy; the
    /// read is one long transaction.
    #[default]
    Consistent,
    /// In watermarked windows while streaming from the current position (DBLog): no long
    /// transaction, needs the signal table. Always used on MySQL, which reports no position
    /// for a consistent read.
    Incremental,
}

/// Whether and how the source connection is encrypted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// Plain TCP.
    #[default]
    Disabled,
    /// Encrypted, the server's certificate not checked (protects against eavesdropping only).
    Required,
    /// Encrypted, the certificate chain checked against the CA.
    VerifyCa,
    /// Encrypted, chain and host name checked.
    VerifyIdentity,
}

/// How the stream resumes from a stored checkpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResumeBy {
    /// Binlog file and offset: exact on the server that wrote them.
    #[default]
    Position,
    /// MariaDB GTID state (`@slave_connect_state`): survives purged or renumbered files of
    /// the same server lineage.
    Gtid,
}

fn default_mysql_port() -> u16 {
    3306
}

/// `[columns]`: `database.table.column` patterns (`*` and `?` match within a part).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnsConfig {
    /// Columns dropped from every record.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Columns replaced by the hex SHA-256 of `hash_salt` followed by the value: joins still
    /// work, the value does not leave.
    #[serde(default)]
    pub hash: Vec<String>,
    /// Salt of `hash`; keep it secret, or the hashes of guessable values can be reversed.
    #[serde(default)]
    pub hash_salt: Secret,
    /// Columns whose non-null values are replaced by `mask_with`.
    #[serde(default)]
    pub mask: Vec<String>,
    /// The constant masked columns carry.
    #[serde(default = "default_mask")]
    pub mask_with: String,
}

fn default_mask() -> String {
    "****".into()
}

/// A `database.table` pattern; `*` matches any run of characters, `?` one character.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TablePattern {
    /// Database part.
    pub db: String,
    /// Table part.
    pub table: String,
}

impl TablePattern {
    /// Parses `db.table`; `None` unless there are exactly two non-empty parts.
    pub fn parse(s: &str) -> Option<Self> {
        let (db, table) = s.split_once('.')?;
        let valid = |p: &str| !p.is_empty() && !p.contains('.') && !p.contains(char::is_whitespace);
        (valid(db) && valid(table)).then(|| TablePattern {
            db: db.into(),
            table: table.into(),
        })
    }

    /// The one table this names, when it has no wildcard.
    pub fn exact(&self) -> Option<TableId> {
        let plain = |p: &str| !p.contains(['*', '?']);
        (plain(&self.db) && plain(&self.table)).then(|| TableId::new(&self.db, &self.table))
    }

    /// Whether `t` matches.
    pub fn matches(&self, t: &TableId) -> bool {
        glob(&self.db, &t.db) && glob(&self.table, &t.table)
    }
}

impl fmt::Display for TablePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.db, self.table)
    }
}

/// A `database.table.column` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnPattern {
    /// The table part.
    pub table: TablePattern,
    /// The column part.
    pub column: String,
}

impl ColumnPattern {
    /// Parses `db.table.column`.
    pub fn parse(s: &str) -> Option<Self> {
        let (table, column) = s.rsplit_once('.')?;
        (!column.is_empty()).then_some(())?;
        Some(ColumnPattern {
            table: TablePattern::parse(table)?,
            column: column.into(),
        })
    }

    /// Whether column `column` of table `t` matches.
    pub fn matches(&self, t: &TableId, column: &str) -> bool {
        self.table.matches(t) && glob(&self.column, column)
    }
}

/// Shell-style matching of `text` against `pattern` with `*` and `?`.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// `[kafka]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// Topics are `<topic_prefix>.<db>.<table>`; also the `source.name` of every record.
    pub topic_prefix: String,
    /// Partitions of topics Sluice creates.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// Replication factor of topics Sluice creates.
    #[serde(default = "default_replication_factor")]
    pub replication_factor: i32,
    /// Extra librdkafka properties for every client, e.g. `"compression.type" = "zstd"`.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

fn default_partitions() -> i32 {
    3
}

fn default_replication_factor() -> i32 {
    1
}

/// `[registry]`: the Confluent-compatible registry Sluice registers and reads schemas in.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Base URL, e.g. `http://127.0.0.1:8081`; defaults to the embedded registry's address
    /// when `serve` is set.
    #[serde(default)]
    pub url: String,
    /// Basic-auth user (Confluent Cloud: the API key).
    pub username: Option<String>,
    /// Basic-auth password (Confluent Cloud: the API secret).
    #[serde(default)]
    pub password: Secret,
    /// PEM file of the CA that signed an `https` registry's certificate; the system's roots
    /// are used when unset.
    pub ca_file: Option<PathBuf>,
    /// How subjects are named.
    #[serde(default)]
    pub subject_strategy: SubjectStrategy,
    /// Serve `sluice registry` inside `sluice run` on this address (one line instead of a
    /// separate service); its data lives in `serve_data`.
    pub serve: Option<std::net::SocketAddr>,
    /// Data directory of the embedded registry.
    #[serde(default = "default_serve_data")]
    pub serve_data: PathBuf,
}

fn default_chunk_rows() -> u64 {
    10_000
}

fn default_signal_table() -> String {
    "sluice.sluice_signal".into()
}

impl SourceConfig {
    /// The signal table's id (validated at load).
    pub fn signal_table(&self) -> TableId {
        TableId::parse(&self.signal_table).expect("validated: source.signal_table is db.table")
    }
}

fn default_serve_data() -> PathBuf {
    PathBuf::from("sluice-registry")
}

/// Confluent's subject name strategies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectStrategy {
    /// `<topic>-key`, `<topic>-value` (TopicNameStrategy).
    #[default]
    Topic,
    /// The record's full name (RecordNameStrategy).
    Record,
    /// `<topic>-<record full name>` (TopicRecordNameStrategy).
    TopicRecord,
}

/// `[elasticsearch]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchConfig {
    /// Base URL, e.g. `http://127.0.0.1:9200`, or a list of the cluster's nodes: requests go
    /// round robin, and a failed one is retried on the next.
    #[serde(deserialize_with = "one_or_many")]
    pub url: Vec<String>,
    /// Basic-auth user, if the server wants one.
    pub username: Option<String>,
    /// Basic-auth password.
    #[serde(default)]
    pub password: Secret,
    /// API key as Elasticsearch hands it out, encoded (`base64(id:api_key)`), instead of a
    /// user and password.
    #[serde(default)]
    pub api_key: Secret,
    /// PEM file of the CA that signed the servers' certificates (https with a private CA);
    /// the system's roots are used when unset.
    pub ca_file: Option<PathBuf>,
    /// How long one request may take, in milliseconds (default 30000): a server that hangs
    /// counts as unavailable, and the batch is retried.
    #[serde(default = "default_es_timeout_ms")]
    pub timeout_ms: u64,
    /// Bulk bodies of at least this many bytes are sent gzip-compressed (default 65536; 0
    /// turns compression off).
    #[serde(default = "default_gzip_min_bytes")]
    pub gzip_min_bytes: usize,
    /// `index.gc_deletes` of indexes Sluice creates: how long a delete's version is remembered,
    /// so a replayed older write cannot resurrect the document.
    #[serde(default = "default_gc_deletes")]
    pub gc_deletes: String,
}

fn default_es_timeout_ms() -> u64 {
    30_000
}

fn default_gzip_min_bytes() -> usize {
    64 * 1024
}

/// A string or a list of strings.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

fn default_gc_deletes() -> String {
    "24h".to_string()
}

/// `[loader]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoaderConfig {
    /// Consumer group; default `<topic_prefix>-loader`.
    pub group_id: Option<String>,
    /// This loader's static member id in the group (Kafka's `group.instance.id`); default the
    /// host name. A restarted loader with the same id takes its partitions back at once,
    /// instead of waiting for the broker to expire its previous, dead membership. Loaders of
    /// one group on one host need distinct ids. `""` turns static membership off (several
    /// loaders on tansu, whose groups of static members never settle).
    pub instance_id: Option<String>,
    /// Most records in one bulk request.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Largest bulk request body in bytes (before compression); a batch reaching it is sent.
    #[serde(default = "default_batch_bytes")]
    pub batch_bytes: usize,
    /// How long a batch waits for more records before it is sent, in milliseconds.
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
    /// Most bulk requests in flight at once. Each partition belongs to one lane, a lane has
    /// one bulk in flight at a time (so a partition's records apply in order), and a lane that
    /// is retrying pauses only its own partitions.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Topic of the records the loader can never apply; default `<topic_prefix>.dlq`.
    pub dead_letter_topic: Option<String>,
    /// Index name template over `{db}` and `{table}` (default `{db}.{table}`), lower-cased.
    #[serde(default = "default_index_template")]
    pub index: String,
    /// Alias every index Sluice creates gets, a template like `index` (e.g. `index =
    /// "{db}.{table}-v1"`, `alias = "{db}.{table}"`: readers use the alias, a rebuilt index
    /// takes it over).
    pub alias: Option<String>,
    /// How column types become index field types.
    #[serde(default)]
    pub mapping: MappingConfig,
    /// Show `_sluice.version`, `_sluice.ts_ms` and `_sluice.op` in documents (for debugging;
    /// off by default, so `_source` is exactly the row). Applies to indexes created after.
    #[serde(default)]
    pub metadata_fields: bool,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self {
            group_id: None,
            instance_id: None,
            batch_size: default_batch_size(),
            batch_bytes: default_batch_bytes(),
            linger_ms: default_linger_ms(),
            max_in_flight: default_max_in_flight(),
            dead_letter_topic: None,
            index: default_index_template(),
            alias: None,
            mapping: MappingConfig::default(),
            metadata_fields: false,
        }
    }
}

fn default_batch_size() -> usize {
    1000
}

fn default_batch_bytes() -> usize {
    // Elasticsearch's guidance: bulk requests of a few megabytes.
    5 << 20
}

fn default_max_in_flight() -> usize {
    // One bulk applied while the next is built and sent; osmem-server gains nothing from more
    // (docs/benchmarks.md), a cluster with many data nodes may.
    2
}

/// `[loader.mapping]`: index field types where more than one fits.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingConfig {
    /// CHAR, VARCHAR and TEXT columns.
    #[serde(default)]
    pub strings: StringMapping,
    /// DECIMAL columns with a fraction.
    #[serde(default)]
    pub decimals: DecimalMapping,
    /// JSON columns.
    #[serde(default)]
    pub json: JsonMapping,
    /// `database.table.column` patterns of text columns that hold JSON, mapped like JSON
    /// columns: MariaDB's JSON is LONGTEXT with a `json_valid` check, which the binlog shows
    /// as text.
    #[serde(default)]
    pub json_columns: Vec<String>,
    /// `database.table.column` patterns of integer or BIT(1) columns indexed as booleans
    /// (0 is false, anything else true), e.g. MySQL's TINYINT(1) flags, which the binlog
    /// does not tell from other TINYINTs.
    #[serde(default)]
    pub booleans: Vec<String>,
    /// VECTOR columns (MySQL 9).
    #[serde(default)]
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

fn default_index_template() -> String {
    "{db}.{table}".into()
}

fn default_linger_ms() -> u64 {
    // Records a busy topic already prefetched fill a batch within a few milliseconds; the
    // linger only delays a trickle, so it is short (commit-to-searchable, docs/benchmarks.md).
    20
}

/// A password or other secret: readable by the code that needs it, printed as `***`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself, for the one call that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether no secret was given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl<'de> Deserialize<'de> for Secret {
    // Any scalar is accepted, so a numeric password in an environment variable works and a type
    // error can never echo the value back into a log.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Scalar {
            S(String),
            I(i64),
            F(f64),
            B(bool),
        }
        let s = match Scalar::deserialize(d)
            .map_err(|_| serde::de::Error::custom("expected a string"))?
        {
            Scalar::S(s) => s,
            Scalar::I(i) => i.to_string(),
            Scalar::F(f) => f.to_string(),
            Scalar::B(b) => b.to_string(),
        };
        Ok(Secret(s))
    }
}

/// Which half of the pipeline a process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Source and loader in one process.
    All,
    /// Binlog -> Kafka only.
    Source,
    /// Kafka -> Elasticsearch only.
    Loader,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not TOML, or a key has the wrong shape.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong and where.
        message: String,
    },
    /// One or more values are unusable.
    #[error("invalid configuration ({}):\n  - {}", path.display(), problems.join("\n  - "))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// One line per problem, each naming its key.
        problems: Vec<String>,
    },
}

/// Prefix of environment variables that override config keys.
const ENV_PREFIX: &str = "SLUICE_";

impl Config {
    /// Reads `path`, applies environment overrides and validates the result for `role`.
    pub fn load(path: &Path, role: Role) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, std::env::vars(), path, role)
    }

    /// [`Config::load`] on text and an explicit environment, for tests.
    pub fn from_toml(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
        path: &Path,
        role: Role,
    ) -> Result<Config, ConfigError> {
        let parse_err = |message: String| ConfigError::Parse {
            path: path.to_owned(),
            message,
        };
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            parse_err(format!("not valid TOML: {}", e.message().trim()))
        })?;
        let mut from_env = BTreeMap::new();
        for (var, raw) in env {
            let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            // Only `SECTION__KEY` names are overrides; other SLUICE_* variables belong to the
            // scripts around Sluice.
            if !rest.contains("__") {
                continue;
            }
            let keys: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
            set_path(&mut table, &keys, env_value(&raw))
                .map_err(|m| parse_err(format!("{var}: {m}")))?;
            from_env.insert(keys.join("."), var);
        }
        let mut config: Config = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| {
                let key = e.path().to_string();
                let origin = from_env
                    .get(&key)
                    .map(|var| format!(" (set by environment variable {var})"))
                    .unwrap_or_default();
                parse_err(format!("`{key}`{origin}: {}", e.inner().message()))
            })?;
        if config.registry.url.is_empty()
            && let Some(addr) = config.registry.serve
        {
            config.registry.url = format!("http://{addr}");
        }
        let problems = config.problems(role);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: path.to_owned(),
                problems,
            })
        }
    }

    /// The `tables` patterns, parsed. Valid after [`Config::load`].
    pub fn table_patterns(&self) -> Vec<TablePattern> {
        self.tables
            .iter()
            .filter_map(|t| TablePattern::parse(t))
            .collect()
    }

    /// The `[keys]` section, parsed.
    pub fn key_columns(&self) -> std::collections::HashMap<TableId, Vec<String>> {
        self.keys
            .iter()
            .filter_map(|(t, cols)| Some((TableId::parse(t)?, cols.clone())))
            .collect()
    }

    /// The `exclude_tables` patterns, parsed.
    pub fn exclude_patterns(&self) -> Vec<TablePattern> {
        self.exclude_tables
            .iter()
            .filter_map(|t| TablePattern::parse(t))
            .collect()
    }

    /// The consumer group of the loader.
    pub fn group_id(&self) -> String {
        self.loader
            .group_id
            .clone()
            .unwrap_or_else(|| format!("{}-loader", self.kafka.topic_prefix))
    }

    /// The loader's dead-letter topic.
    pub fn dead_letter_topic(&self) -> String {
        self.loader
            .dead_letter_topic
            .clone()
            .unwrap_or_else(|| format!("{}.dlq", self.kafka.topic_prefix))
    }

    /// The loader's static group member id.
    pub fn instance_id(&self) -> String {
        self.loader.instance_id.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .or_else(|| std::env::var("HOSTNAME").ok())
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "sluice".into())
        })
    }

    fn problems(&self, role: Role) -> Vec<String> {
        let mut p = Vec::new();
        if self.tables.is_empty() {
            p.push(
                "`tables` is empty: list the tables to capture, e.g. tables = [\"shop.orders\"]"
                    .into(),
            );
        }
        let mut seen = std::collections::HashSet::new();
        for t in &self.exclude_tables {
            if TablePattern::parse(t).is_none() {
                p.push(format!(
                    "`exclude_tables`: {t:?} is not of the form \"database.table\""
                ));
            }
        }
        for (table, columns) in &self.keys {
            if TableId::parse(table).is_none() {
                p.push(format!(
                    "`keys`: {table:?} is not of the form \"database.table\""
                ));
            }
            if columns.is_empty() {
                p.push(format!("`keys`: {table:?} names no columns"));
            }
        }
        let c = &self.columns;
        for (key, list) in [
            ("columns.exclude", &c.exclude),
            ("columns.hash", &c.hash),
            ("columns.mask", &c.mask),
            ("loader.mapping.booleans", &self.loader.mapping.booleans),
            (
                "loader.mapping.json_columns",
                &self.loader.mapping.json_columns,
            ),
        ] {
            for col in list {
                if ColumnPattern::parse(col).is_none() {
                    p.push(format!(
                        "`{key}`: {col:?} is not of the form \"database.table.column\""
                    ));
                }
            }
        }
        if !c.hash.is_empty() && c.hash_salt.is_empty() {
            p.push(
                "`columns.hash` is set without `columns.hash_salt`: unsalted hashes of \
                 guessable values can be reversed; set a secret salt"
                    .into(),
            );
        }
        for t in &self.tables {
            match TablePattern::parse(t) {
                None => p.push(format!(
                    "`tables`: {t:?} is not of the form \"database.table\""
                )),
                Some(pattern) => {
                    if !seen.insert(pattern.clone()) {
                        p.push(format!("`tables`: {t:?} is listed twice"));
                    }
                    let topic =
                        format!("{}.{}", self.kafka.topic_prefix, pattern).replace(['*', '?'], "x");
                    if !is_valid_topic(&topic) {
                        p.push(format!(
                            "`tables`: {t:?} gives topic {topic:?}, which Kafka does not accept \
                             (only ASCII letters, digits, '.', '_', '-', at most 249 characters)"
                        ));
                    }
                }
            }
        }
        if role != Role::Loader {
            match &self.source {
                None => p.push("`[source]` is missing; the source role needs it".into()),
                Some(s) => {
                    if s.host.trim().is_empty() {
                        p.push("`source.host` is empty".into());
                    }
                    if s.port == 0 {
                        p.push("`source.port` must be 1..=65535".into());
                    }
                    if s.user.trim().is_empty() {
                        p.push("`source.user` is empty".into());
                    }
                    if s.server_id == 0 {
                        p.push("`source.server_id` must not be 0 (a replica needs a unique non-zero id)".into());
                    }
                    if s.state_dir.as_os_str().is_empty() {
                        p.push("`source.state_dir` is empty".into());
                    }
                    if let Some(ca) = &s.tls_ca_file {
                        if s.tls == TlsMode::Disabled || s.tls == TlsMode::Required {
                            p.push(
                                "`source.tls_ca_file` is set but `source.tls` does not verify \
                                 certificates; set tls = \"verify_ca\" or \"verify_identity\""
                                    .into(),
                            );
                        } else if !ca.is_file() {
                            p.push(format!(
                                "`source.tls_ca_file`: {} is not a readable file",
                                ca.display()
                            ));
                        }
                    }
                }
            }
        }
        if role != Role::Source && self.elasticsearch.is_none() {
            p.push("`[elasticsearch]` is missing; the loader role needs it".into());
        }
        if let Err(m) = check_brokers(&self.kafka.brokers) {
            p.push(format!("`kafka.brokers`: {m}"));
        }
        if self.kafka.topic_prefix.is_empty() {
            p.push("`kafka.topic_prefix` is empty".into());
        }
        if self.kafka.partitions < 1 {
            p.push("`kafka.partitions` must be at least 1".into());
        }
        if self.kafka.replication_factor < 1 {
            p.push("`kafka.replication_factor` must be at least 1".into());
        }
        if let Err(m) = check_http_url(&self.registry.url) {
            p.push(format!("`registry.url`: {m}"));
        }
        if self.registry.username.is_none() && !self.registry.password.is_empty() {
            p.push("`registry.password` is set without `registry.username`".into());
        }
        if let Some(ca) = &self.registry.ca_file
            && !ca.is_file()
        {
            p.push(format!(
                "`registry.ca_file`: {} is not a readable file",
                ca.display()
            ));
        }
        if let Some(es) = &self.elasticsearch {
            if es.url.is_empty() {
                p.push("`elasticsearch.url` is an empty list; name at least one node".into());
            }
            for url in &es.url {
                if let Err(m) = check_http_url(url) {
                    p.push(format!("`elasticsearch.url`: {m}"));
                }
            }
            if es.username.is_none() && !es.password.is_empty() {
                p.push("`elasticsearch.password` is set without `elasticsearch.username`".into());
            }
            if es.username.is_some() && !es.api_key.is_empty() {
                p.push(
                    "`elasticsearch.username` and `elasticsearch.api_key` are both set; use one"
                        .into(),
                );
            }
            if let Some(ca) = es.ca_file.as_ref().filter(|ca| !ca.is_file()) {
                p.push(format!(
                    "`elasticsearch.ca_file` {} is not a readable file",
                    ca.display()
                ));
            }
        }
        if self
            .source
            .as_ref()
            .is_some_and(|s| s.snapshot_chunk_rows == 0)
        {
            p.push("`source.snapshot_chunk_rows` must be at least 1".into());
        }
        if let Some(s) = &self.source
            && TableId::parse(&s.signal_table).is_none()
        {
            p.push(format!(
                "`source.signal_table` {:?} is not of the form database.table",
                s.signal_table
            ));
        }
        if !is_valid_topic(&self.dead_letter_topic()) {
            p.push(format!(
                "`loader.dead_letter_topic` {:?} is not a valid Kafka topic name",
                self.dead_letter_topic()
            ));
        }
        for (name, template) in [
            ("index", Some(&self.loader.index)),
            ("alias", self.loader.alias.as_ref()),
        ] {
            let Some(t) = template else { continue };
            let rest = t.replace("{db}", "").replace("{table}", "");
            if !t.contains("{table}") || rest.contains('{') || rest.contains('}') {
                p.push(format!(
                    "`loader.{name}` {t:?} must name `{{table}}` (and may name `{{db}}`), and no other placeholder"
                ));
            }
        }
        if self.loader.batch_size == 0 {
            p.push("`loader.batch_size` must be at least 1".into());
        }
        if self.loader.batch_bytes == 0 {
            p.push("`loader.batch_bytes` must be at least 1".into());
        }
        if self.loader.max_in_flight == 0 {
            p.push("`loader.max_in_flight` must be at least 1".into());
        }
        p
    }
}

/// Whether Kafka accepts `name` as a topic name.
fn is_valid_topic(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn check_brokers(brokers: &str) -> Result<(), String> {
    if brokers.trim().is_empty() {
        return Err("empty; expected host:port[,host:port...]".into());
    }
    for b in brokers.split(',') {
        let b = b.trim();
        let ok = b.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !ok {
            return Err(format!("{b:?} is not host:port"));
        }
    }
    Ok(())
}

fn check_http_url(url: &str) -> Result<(), String> {
    match Url::parse(url) {
        Err(e) => Err(format!("{url:?} is not a URL ({e})")),
        Ok(u) if !matches!(u.scheme(), "http" | "https") => {
            Err(format!("{url:?} must start with http:// or https://"))
        }
        Ok(u) if u.host_str().is_none() => Err(format!("{url:?} has no host")),
        Ok(_) => Ok(()),
    }
}

/// An environment value as TOML would read it (number, bool, array), else as a plain string.
fn env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .filter(|v| !v.is_table())
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

fn set_path(table: &mut toml::Table, keys: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = keys.split_last().ok_or("empty key")?;
    if keys.iter().any(String::is_empty) {
        return Err("malformed name; expected SLUICE_<SECTION>__<KEY>".into());
    }
    let mut t = table;
    for k in parents {
        let entry = t
            .entry(k.clone())
            .or_insert_with(|| toml::Value::Table(Default::default()));
        t = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{k}` is not a section"))?;
    }
    t.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        tables = ["shop.orders"]
        [source]
        host = "127.0.0.1"
        user = "sluice"
        password = "hunter2"
        server_id = 5401
        state_dir = "/tmp/state"
        [kafka]
        brokers = "127.0.0.1:9092"
        topic_prefix = "sluice"
        [registry]
        url = "http://127.0.0.1:8081"
        [elasticsearch]
        url = "http://127.0.0.1:9200"
    "#;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::from_toml(text, env, Path::new("sluice.toml"), Role::All)
    }

    #[test]
    fn the_example_file_is_valid() {
        let text = include_str!("../sluice.example.toml");
        let c = load(text, &[]).unwrap();
        assert_eq!(c.table_patterns().len(), 2);
        assert_eq!(c.exclude_patterns().len(), 1);
        assert_eq!(c.columns.hash_salt.expose(), "change-me");
    }

    #[test]
    fn an_embedded_registry_is_one_line_and_registry_auth_is_checked() {
        let base = include_str!("../sluice.example.toml").replace(
            "url = \"http://127.0.0.1:8081\"",
            "serve = \"127.0.0.1:18555\"\nsubject_strategy = \"topic_record\"",
        );
        let base = base.replace("subject_strategy = \"topic\"\n", "");
        let c = load(&base, &[]).unwrap();
        assert_eq!(c.registry.url, "http://127.0.0.1:18555");
        assert_eq!(c.registry.subject_strategy, SubjectStrategy::TopicRecord);
        let m = load(&base, &[("SLUICE_REGISTRY__PASSWORD", "pw")])
            .unwrap_err()
            .to_string();
        assert!(
            m.contains("`registry.password` is set without `registry.username`"),
            "{m}"
        );
        let m = load(&base, &[("SLUICE_REGISTRY__CA_FILE", "/nonexistent.pem")])
            .unwrap_err()
            .to_string();
        assert!(m.contains("`registry.ca_file`"), "{m}");
    }

    #[test]
    fn table_and_column_patterns() {
        let p = TablePattern::parse("shop.ord?r*").unwrap();
        assert!(p.matches(&TableId::new("shop", "orders")));
        assert!(p.matches(&TableId::new("shop", "ordxr")));
        assert!(!p.matches(&TableId::new("shop", "customers")));
        assert!(!p.matches(&TableId::new("shopx", "orders")));
        assert_eq!(p.exact(), None);
        assert_eq!(
            TablePattern::parse("a.b").unwrap().exact(),
            Some(TableId::new("a", "b"))
        );
        assert!(glob("*a*b*", "xxaxxbxx") && !glob("*a*b", "xxaxxbxx"));
        let c = ColumnPattern::parse("*.*.phone").unwrap();
        assert!(c.matches(&TableId::new("a", "b"), "phone"));
        assert!(!c.matches(&TableId::new("a", "b"), "phones"));
        assert!(ColumnPattern::parse("a.b").is_none());
        let e = load(
            &MINIMAL.replace(
                "[source]",
                "exclude_tables = [\"x\"]\n[columns]\nhash = [\"a.b.c\"]\nmask = [\"a.b\"]\n[source]",
            ),
            &[],
        )
        .unwrap_err()
        .to_string();
        for needle in [
            "`exclude_tables`: \"x\"",
            "columns.hash_salt",
            "`columns.mask`: \"a.b\"",
        ] {
            assert!(e.contains(needle), "{needle}: {e}");
        }
    }

    #[test]
    fn environment_overrides_file_values() {
        let c = load(
            MINIMAL,
            &[
                ("SLUICE_SOURCE__PASSWORD", "123456"),
                ("SLUICE_SOURCE__PORT", "13306"),
                ("SLUICE_LOADER__BATCH_SIZE", "7"),
                ("SLUICE_STACK_DIR", "/ignored"),
            ],
        )
        .unwrap();
        let s = c.source.unwrap();
        assert_eq!(s.password.expose(), "123456");
        assert_eq!(s.port, 13306);
        assert_eq!(c.loader.batch_size, 7);
    }

    #[test]
    fn unknown_keys_are_named_with_their_origin() {
        let e = load(&MINIMAL.replace("server_id", "serverid"), &[]).unwrap_err();
        assert!(e.to_string().contains("`source.serverid`"), "{e}");
        let e = load(MINIMAL, &[("SLUICE_SOURCE__PASWORD", "x")]).unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("source.pasword") && m.contains("SLUICE_SOURCE__PASWORD"),
            "{m}"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = MINIMAL
            .replace("http://127.0.0.1:8081", "127.0.0.1:8081")
            .replace("127.0.0.1:9092", "localhost")
            .replace(r#"["shop.orders"]"#, r#"["orders", "a.b"]"#);
        let m = load(&text, &[]).unwrap_err().to_string();
        assert!(m.contains("`registry.url`"), "{m}");
        assert!(m.contains("`kafka.brokers`"), "{m}");
        assert!(m.contains("\"orders\" is not of the form"), "{m}");
    }

    #[test]
    fn secrets_never_print() {
        let c = load(MINIMAL, &[]).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn roles_need_their_sections() {
        let no_es = MINIMAL.split("[elasticsearch]").next().unwrap();
        let env = std::iter::empty();
        assert!(Config::from_toml(no_es, env, Path::new("x"), Role::Source).is_ok());
        let m = load(no_es, &[]).unwrap_err().to_string();
        assert!(m.contains("`[elasticsearch]` is missing"), "{m}");
    }
}
