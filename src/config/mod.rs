//! Configuration: a TOML file, overridden by `SLUICE_<SECTION>__<KEY>` environment variables,
//! validated and typed as a whole before anything connects, every problem reported at once.
//! `sluice.example.toml` documents every field.
//!
//! Each section has the form serde reads (private, the file's own strings and numbers) and
//! the typed form the stages use (patterns, table ids, URLs, non-zero counts, durations),
//! built in one step; nothing downstream parses a configured string again.

mod elasticsearch;
mod kafka;
mod loader;
mod metrics;
mod patterns;
mod registry;
mod secret;
mod source;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use url::Url;

use crate::model::TableId;

pub use elasticsearch::{ElasticsearchConfig, EsAuth};
pub use kafka::KafkaConfig;
pub(crate) use kafka::{canonical_property, is_secret};
pub use loader::{
    DecimalMapping, JsonMapping, LoaderConfig, MappingConfig, StringMapping, VectorMapping,
};
pub use metrics::MetricsConfig;
pub use patterns::{ColumnPattern, ColumnsConfig, TablePattern, glob};
pub use registry::RegistryConfig;
pub use secret::Secret;
pub use source::{InitialSnapshot, ResumeBy, SourceConfig, TlsMode};

/// Everything `sluice run` needs, validated for one role.
#[derive(Debug)]
pub struct Config {
    /// Tables to capture; `*` and `?` match within a part (`shop.*`).
    pub tables: Vec<TablePattern>,
    /// Tables the `tables` patterns match that are not to be captured.
    pub exclude_tables: Vec<TablePattern>,
    /// Columns to leave out, hash or mask before anything leaves the source.
    pub columns: ColumnsConfig,
    /// The columns that key a table's records, for tables without a primary key (or to
    /// replace it).
    pub keys: HashMap<TableId, Vec<String>>,
    /// The MySQL/MariaDB server to read: present exactly when this process runs the source.
    pub source: Option<SourceConfig>,
    /// The Kafka cluster between source and loader.
    pub kafka: KafkaConfig,
    /// The Confluent-compatible schema registry.
    pub registry: RegistryConfig,
    /// The index server: present exactly when this process runs the loader.
    pub elasticsearch: Option<ElasticsearchConfig>,
    /// The loader's group, batching and mapping.
    pub loader: LoaderConfig,
    /// The metrics endpoint and health probes.
    pub metrics: MetricsConfig,
    /// How log lines are written.
    pub log_format: LogFormat,
}

/// How log lines are written (`log_format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl LogFormat {
    /// The `log_format` of the config file at `path`, read before logging starts (so before
    /// the file is validated): anything unreadable gives the default, and the validation that
    /// follows reports it.
    pub fn of_file(path: &Path) -> LogFormat {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|text| text.parse::<toml::Table>().ok())
            .and_then(|t| t.get("log_format")?.clone().try_into().ok())
            .unwrap_or_default()
    }
}

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    tables: Vec<String>,
    #[serde(default)]
    exclude_tables: Vec<String>,
    #[serde(default)]
    columns: patterns::ColumnsFile,
    #[serde(default)]
    keys: BTreeMap<String, Vec<String>>,
    source: Option<source::SourceFile>,
    kafka: KafkaConfig,
    registry: registry::RegistryFile,
    elasticsearch: Option<elasticsearch::ElasticsearchFile>,
    #[serde(default)]
    loader: loader::LoaderFile,
    #[serde(default)]
    metrics: metrics::MetricsFile,
    #[serde(default)]
    log_format: LogFormat,
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

/// The problems found while building, one line each, naming its key.
#[derive(Debug, Default)]
struct Problems(Vec<String>);

impl Problems {
    fn push(&mut self, problem: impl Into<String>) {
        self.0.push(problem.into());
    }
}

/// An http(s) URL with a host, kept as written: messages quote it as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    text: String,
    url: Url,
}

impl HttpUrl {
    fn parse(text: &str) -> Result<Self, String> {
        match Url::parse(text) {
            Err(e) => Err(format!("{text:?} is not a URL ({e})")),
            Ok(u) if !matches!(u.scheme(), "http" | "https") => {
                Err(format!("{text:?} must start with http:// or https://"))
            }
            Ok(u) if u.host_str().is_none() => Err(format!("{text:?} has no host")),
            Ok(url) => Ok(HttpUrl {
                text: text.to_string(),
                url,
            }),
        }
    }

    /// The URL as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The parsed URL.
    pub fn url(&self) -> &Url {
        &self.url
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
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

    /// The `[source]` section of `path`, validated as for the source role (the commands that
    /// talk to the database only).
    pub fn load_source(path: &Path) -> Result<SourceConfig, ConfigError> {
        let config = Self::load(path, Role::Source)?;
        config.source.ok_or_else(|| ConfigError::Invalid {
            path: path.to_owned(),
            problems: vec!["`[source]` is missing; the source role needs it".into()],
        })
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
        let file: ConfigFile = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| {
                let key = e.path().to_string();
                let origin = from_env
                    .get(&key)
                    .map(|var| format!(" (set by environment variable {var})"))
                    .unwrap_or_default();
                parse_err(format!("`{key}`{origin}: {}", e.inner().message()))
            })?;
        file.build(role).map_err(|problems| ConfigError::Invalid {
            path: path.to_owned(),
            problems,
        })
    }
}

impl ConfigFile {
    /// Validates every section and builds the typed config for `role`; on failure, every
    /// problem found. Sections the role does not run are checked where present, then left out.
    fn build(self, role: Role) -> Result<Config, Vec<String>> {
        let mut p = Problems::default();
        let prefix = self.kafka.topic_prefix.clone();
        let tables = patterns::captured(&self.tables, &prefix, &mut p);
        let exclude_tables = patterns::excluded(&self.exclude_tables, &mut p);
        let keys = patterns::keys(self.keys, &mut p);
        let columns = self.columns.build(&mut p);
        let runs_source = role != Role::Loader;
        let source = match self.source {
            Some(s) => s.build(runs_source, &mut p).filter(|_| runs_source),
            None if runs_source => {
                p.push("`[source]` is missing; the source role needs it");
                None
            }
            None => None,
        };
        let runs_loader = role != Role::Source;
        let elasticsearch = match self.elasticsearch {
            Some(es) => es.build(&mut p).filter(|_| runs_loader),
            None if runs_loader => {
                p.push("`[elasticsearch]` is missing; the loader role needs it");
                None
            }
            None => None,
        };
        self.kafka.check(&mut p);
        let registry = self.registry.build(&mut p);
        let loader = self.loader.build(&prefix, &mut p);
        let metrics = self.metrics.build(&mut p);
        match (registry, loader, metrics) {
            (Some(registry), Some(loader), Some(metrics)) if p.0.is_empty() => Ok(Config {
                tables,
                exclude_tables,
                columns,
                keys,
                source,
                kafka: self.kafka,
                registry,
                elasticsearch,
                loader,
                metrics,
                log_format: self.log_format,
            }),
            _ => Err(p.0),
        }
    }
}

/// An environment value as TOML would read it (integer, bool, array, quoted string), else as
/// the plain string. An integer or bool is taken only if it is written as TOML would print it:
/// `1e3`, `0x10`, `1.0` or `1_000` stay the strings they are (no setting is a fraction), so a
/// password or a librdkafka property is never rewritten, and a numeric setting given that way
/// is refused by name.
fn env_value(raw: &str) -> toml::Value {
    use toml::Value as V;
    let parsed = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"));
    match parsed {
        Some(v @ (V::Integer(_) | V::Boolean(_))) if v.to_string() == raw.trim() => v,
        Some(v @ (V::String(_) | V::Array(_))) => v,
        _ => V::String(raw.to_string()),
    }
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

/// Typed sections from TOML snippets, for unit tests elsewhere in the crate.
#[cfg(test)]
pub(crate) mod sections {
    use super::*;

    /// `[source]` from the lines of its section.
    pub(crate) fn source(text: &str) -> SourceConfig {
        let file: source::SourceFile = toml::from_str(text).unwrap();
        let mut p = Problems::default();
        let built = file.build(true, &mut p);
        assert!(p.0.is_empty(), "{:?}", p.0);
        built.unwrap()
    }

    /// `[kafka]` from the lines of its section.
    pub(crate) fn kafka(text: &str) -> KafkaConfig {
        let built: KafkaConfig = toml::from_str(text).unwrap();
        let mut p = Problems::default();
        built.check(&mut p);
        assert!(p.0.is_empty(), "{:?}", p.0);
        built
    }

    /// `[loader]` from the lines of its section, for topics under `sluice`.
    pub(crate) fn loader(text: &str) -> LoaderConfig {
        let file: loader::LoaderFile = toml::from_str(text).unwrap();
        let mut p = Problems::default();
        let built = file.build("sluice", &mut p);
        assert!(p.0.is_empty(), "{:?}", p.0);
        built.unwrap()
    }
}
