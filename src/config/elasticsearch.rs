//! `[elasticsearch]`: the index server the loader writes to.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{HttpUrl, Problems, Secret};

/// `[elasticsearch]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ElasticsearchFile {
    #[serde(deserialize_with = "one_or_many")]
    url: Vec<String>,
    username: Option<String>,
    #[serde(default)]
    password: Secret,
    #[serde(default)]
    api_key: Secret,
    ca_file: Option<PathBuf>,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
    #[serde(default = "default_gzip_min_bytes")]
    gzip_min_bytes: usize,
    #[serde(default = "default_gc_deletes")]
    gc_deletes: String,
}

fn default_timeout_ms() -> u64 {
    30_000
}

fn default_gzip_min_bytes() -> usize {
    64 * 1024
}

fn default_gc_deletes() -> String {
    "24h".to_string()
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

/// How the loader authenticates to the index server.
#[derive(Debug, Clone)]
pub enum EsAuth {
    /// No credentials.
    None,
    /// HTTP basic auth.
    Basic {
        /// User.
        username: String,
        /// Password (may be empty).
        password: Secret,
    },
    /// An API key as Elasticsearch hands it out, encoded (`base64(id:api_key)`).
    ApiKey(Secret),
}

/// `[elasticsearch]`.
#[derive(Debug, Clone)]
pub struct ElasticsearchConfig {
    /// The cluster's nodes (at least one): requests go round robin, and a failed one is
    /// retried on the next.
    pub url: Vec<HttpUrl>,
    /// Credentials.
    pub auth: EsAuth,
    /// PEM file of the CA that signed the servers' certificates (https with a private CA);
    /// the system's roots are used when unset.
    pub ca_file: Option<PathBuf>,
    /// How long one request may take: a server that hangs counts as unavailable, and the
    /// batch is retried.
    pub timeout: Duration,
    /// Bulk bodies of at least this many bytes are sent gzip-compressed; `None` never.
    pub gzip_min_bytes: Option<NonZeroUsize>,
    /// `index.gc_deletes` of indexes Sluice creates: how long a delete's version is remembered,
    /// so a replayed older write cannot resurrect the document.
    pub gc_deletes: String,
}

impl ElasticsearchConfig {
    /// The nodes' URLs as written, for messages.
    pub fn urls_text(&self) -> String {
        self.url
            .iter()
            .map(HttpUrl::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl ElasticsearchFile {
    pub(super) fn build(self, p: &mut Problems) -> Option<ElasticsearchConfig> {
        if self.url.is_empty() {
            p.push("`elasticsearch.url` is an empty list; name at least one node");
        }
        let url: Vec<HttpUrl> = self
            .url
            .iter()
            .filter_map(|u| {
                HttpUrl::parse(u)
                    .map_err(|m| p.push(format!("`elasticsearch.url`: {m}")))
                    .ok()
            })
            .collect();
        if self.username.is_none() && !self.password.is_empty() {
            p.push("`elasticsearch.password` is set without `elasticsearch.username`");
        }
        if self.username.is_some() && !self.api_key.is_empty() {
            p.push("`elasticsearch.username` and `elasticsearch.api_key` are both set; use one");
        }
        if let Some(ca) = self.ca_file.as_ref().filter(|ca| !ca.is_file()) {
            p.push(format!(
                "`elasticsearch.ca_file` {} is not a readable file",
                ca.display()
            ));
        }
        let auth = match self.username {
            Some(username) => EsAuth::Basic {
                username,
                password: self.password,
            },
            None if !self.api_key.is_empty() => EsAuth::ApiKey(self.api_key),
            None => EsAuth::None,
        };
        (url.len() == self.url.len() && !url.is_empty()).then(|| ElasticsearchConfig {
            url,
            auth,
            ca_file: self.ca_file,
            timeout: Duration::from_millis(self.timeout_ms),
            gzip_min_bytes: NonZeroUsize::new(self.gzip_min_bytes),
            gc_deletes: self.gc_deletes,
        })
    }
}
