//! The Elasticsearch side of the loader: index creation and bulk requests, classifying every
//! failure as worth retrying or final.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::Mutex;

use std::io::Write;

use elasticsearch::auth::Credentials;
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::Method;
use elasticsearch::http::headers::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderValue};
use elasticsearch::http::transport::{
    MultiNodeConnectionPool, SingleNodeConnectionPool, TransportBuilder,
};
use elasticsearch::indices::{IndicesCreateParts, IndicesPutMappingParts};
use elasticsearch::{DeleteByQueryParts, Elasticsearch};
use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Value as Json, json};
use url::Url;

use super::document::META_FIELD;
use super::error::LoadError;
use crate::config::{ElasticsearchConfig, EsAuth, VectorMapping};
use crate::retry::Attempt;

/// What an index must map: the rows of one writer schema.
#[derive(Debug)]
pub struct Target {
    /// The writer (value) schema's registry id.
    pub schema_id: u32,
    /// Mappings for its rows.
    pub mappings: Json,
    /// The alias a new index gets.
    pub alias: Option<String>,
}

/// A client for the configured servers. Credentials go to the transport, never to logs.
pub fn client(cfg: &ElasticsearchConfig) -> Result<Elasticsearch, LoadError> {
    let bad = |what: String| LoadError::Elasticsearch(what);
    let urls: Vec<Url> = cfg.url.iter().map(|u| u.url().clone()).collect();
    let mut transport = match urls.as_slice() {
        [one] => TransportBuilder::new(SingleNodeConnectionPool::new(one.clone())),
        _ => TransportBuilder::new(MultiNodeConnectionPool::round_robin(urls, None)),
    }
    .timeout(cfg.timeout);
    match &cfg.auth {
        EsAuth::None => {}
        EsAuth::Basic { username, password } => {
            transport = transport.auth(Credentials::Basic(
                username.clone(),
                password.expose().to_string(),
            ));
        }
        EsAuth::ApiKey(key) => {
            transport = transport.auth(Credentials::EncodedApiKey(key.expose().to_string()));
        }
    }
    if let Some(ca) = &cfg.ca_file {
        let pem = std::fs::read(ca)
            .map_err(|e| bad(format!("`elasticsearch.ca_file` {}: {e}", ca.display())))?;
        let cert = Certificate::from_pem(&pem).map_err(|e| {
            bad(format!(
                "`elasticsearch.ca_file` {} is not a PEM certificate: {e}",
                ca.display()
            ))
        })?;
        transport = transport.cert_validation(CertificateValidation::Full(cert));
    }
    let transport = transport
        .build()
        .map_err(|e| bad(format!("cannot build the HTTP client: {e}")))?;
    Ok(Elasticsearch::new(transport))
}

/// Writes to one Elasticsearch/OpenSearch cluster.
pub struct IndexWriter {
    client: Elasticsearch,
    url: String,
    gc_deletes: String,
    gzip_min_bytes: Option<NonZeroUsize>,
    /// Indexes this process created or found, with the writer schema ids they map. Bulks in
    /// flight share the writer; two mapping the same index at once only repeat a no-op, and
    /// an older schema mapped after a newer one adds nothing (its fields are there already).
    mapped: Mutex<HashMap<String, HashSet<u32>>>,
}

impl IndexWriter {
    /// A writer for the configured servers.
    pub fn new(cfg: &ElasticsearchConfig) -> Result<IndexWriter, LoadError> {
        Ok(IndexWriter {
            client: client(cfg)?,
            url: cfg.urls_text(),
            gc_deletes: cfg.gc_deletes.clone(),
            gzip_min_bytes: cfg.gzip_min_bytes,
            mapped: Mutex::default(),
        })
    }

    /// Whether `index` is known to map the rows of writer schema `schema_id`.
    pub fn is_mapped(&self, index: &str, schema_id: u32) -> bool {
        self.mapped()
            .get(index)
            .is_some_and(|ids| ids.contains(&schema_id))
    }

    fn mapped(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashSet<u32>>> {
        self.mapped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Makes `index` map the rows of the target's writer schema: creates it with the
    /// target's mappings and alias (Sluice's indexes keep deletes for `gc_deletes`), or, if it
    /// exists, adds the fields it lacks. A field whose type would change is refused by the server
    /// ([`LoadError::MappingConflict`]).
    pub async fn ensure_mapping(
        &self,
        index: &str,
        target: &Target,
    ) -> Result<(), Attempt<LoadError>> {
        let (schema_id, mappings) = (target.schema_id, &target.mappings);
        if self.is_mapped(index, schema_id) {
            return Ok(());
        }
        let known = self.mapped().contains_key(index);
        if !known && self.create(index, target).await? {
            self.remember(index, schema_id);
            return Ok(());
        }
        let response = self
            .client
            .indices()
            .put_mapping(IndicesPutMappingParts::Index(&[index]))
            .body(json!({"properties": mappings["properties"]}))
            .send()
            .await;
        let (status, text) = self.status_and_text(response).await?;
        match status {
            200..=299 => {
                tracing::info!(%index, schema_id, "index mapping updated for a new table schema");
                self.remember(index, schema_id);
                Ok(())
            }
            400 => Err(Attempt::Permanent(LoadError::MappingConflict {
                index: index.to_string(),
                reason: text,
            })),
            429 | 500..=599 => Err(Attempt::Transient(format!(
                "updating the mapping of {index}: {status} {text}"
            ))),
            _ => Err(Attempt::Permanent(LoadError::Elasticsearch(format!(
                "{} refused to update the mapping of {index}: {status} {text}",
                self.url
            )))),
        }
    }

    fn remember(&self, index: &str, schema_id: u32) {
        self.mapped()
            .entry(index.to_string())
            .or_default()
            .insert(schema_id);
    }

    /// Creates `index` for `target`; false if it already exists.
    async fn create(&self, index: &str, target: &Target) -> Result<bool, Attempt<LoadError>> {
        let mut body = json!({
            "settings": {"index": {"gc_deletes": self.gc_deletes}},
            "mappings": target.mappings,
        });
        if let Some(alias) = &target.alias {
            body["aliases"] = json!({ alias: {} });
        }
        let response = self
            .client
            .indices()
            .create(IndicesCreateParts::Index(index))
            .body(body)
            .send()
            .await;
        let (status, text) = self.status_and_text(response).await?;
        match status {
            200..=299 => {
                let alias = target.alias.as_deref().unwrap_or("");
                tracing::info!(%index, alias, gc_deletes = %self.gc_deletes, "created index");
                Ok(true)
            }
            400 if text.contains("resource_already_exists_exception") => Ok(false),
            429 | 500..=599 => Err(Attempt::Transient(format!(
                "creating index {index}: {status} {text}"
            ))),
            _ => Err(Attempt::Permanent(LoadError::Elasticsearch(format!(
                "{} refused to create index {index}: {status} {text}",
                self.url
            )))),
        }
    }

    /// Sends one `_bulk` body, gzip-compressed from `gzip_min_bytes` on, and returns the
    /// parsed response.
    pub async fn bulk(&self, body: &[u8]) -> Result<Json, Attempt<LoadError>> {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        let body = if self
            .gzip_min_bytes
            .is_some_and(|min| body.len() >= min.get())
        {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            let mut gz = GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::fast());
            gz.write_all(body)
                .and_then(|()| gz.finish())
                .expect("compressing into memory cannot fail")
        } else {
            body.to_vec()
        };
        let response = self
            .client
            .send(
                Method::Post,
                "/_bulk",
                headers,
                None::<&()>,
                Some(body),
                None,
            )
            .await
            .map_err(|e| self.transient(e))?;
        let status = response.status_code().as_u16();
        match status {
            200..=299 => response.json::<Json>().await.map_err(|e| self.transient(e)),
            429 | 500..=599 => Err(Attempt::Transient(format!("bulk request: HTTP {status}"))),
            _ => {
                let text = response.text().await.unwrap_or_default();
                Err(Attempt::Permanent(LoadError::Elasticsearch(format!(
                    "{} refused a bulk request: HTTP {status} {text}",
                    self.url
                ))))
            }
        }
    }

    /// Deletes the documents of `index` written by changes older than `version` (a TRUNCATE).
    /// Documents rewritten while the query runs are left alone (`conflicts=proceed`): their
    /// writes are newer. An index that does not exist holds nothing to delete.
    pub async fn delete_older(&self, index: &str, version: u64) -> Result<(), Attempt<LoadError>> {
        let field = format!("{META_FIELD}.version");
        let response = self
            .client
            .delete_by_query(DeleteByQueryParts::Index(&[index]))
            .conflicts(elasticsearch::params::Conflicts::Proceed)
            .refresh(true)
            .body(json!({"query": {"range": {field: {"lt": version}}}}))
            .send()
            .await;
        let (status, text) = self.status_and_text(response).await?;
        match status {
            200..=299 => {
                let report: Json = serde_json::from_str(&text).unwrap_or_default();
                if report["failures"].as_array().is_some_and(|f| !f.is_empty()) {
                    // Some deletes failed (shard trouble): the whole query is safe to repeat.
                    return Err(Attempt::Transient(format!(
                        "truncating index {index}: {}",
                        report["failures"]
                    )));
                }
                let deleted = report["deleted"].as_u64();
                tracing::info!(%index, version, ?deleted, "applied a TRUNCATE");
                Ok(())
            }
            404 => Ok(()),
            429 | 500..=599 => Err(Attempt::Transient(format!(
                "truncating index {index}: {status} {text}"
            ))),
            _ => Err(Attempt::Permanent(LoadError::Elasticsearch(format!(
                "{} refused to delete the documents of {index} older than a TRUNCATE: {status} {text}",
                self.url
            )))),
        }
    }

    /// The vector field type the server has: OpenSearch's `knn_vector`, or Elasticsearch's
    /// `dense_vector`, by the distribution `GET /` names.
    pub async fn vector_mapping(&self) -> Result<VectorMapping, Attempt<LoadError>> {
        let response = self.client.info().send().await;
        let (status, text) = self.status_and_text(response).await?;
        match status {
            200..=299 => {
                let info: Json = serde_json::from_str(&text).unwrap_or_default();
                Ok(match info["version"]["distribution"].as_str() {
                    Some("opensearch") => VectorMapping::KnnVector,
                    _ => VectorMapping::DenseVector,
                })
            }
            429 | 500..=599 => Err(Attempt::Transient(format!("GET /: {status} {text}"))),
            _ => Err(Attempt::Permanent(LoadError::Elasticsearch(format!(
                "{} refused GET /: {status} {text}; check elasticsearch.url and the credentials",
                self.url
            )))),
        }
    }

    /// The status and body of a response; failing to get either is worth retrying.
    async fn status_and_text(
        &self,
        response: Result<elasticsearch::http::response::Response, elasticsearch::Error>,
    ) -> Result<(u16, String), Attempt<LoadError>> {
        let response = response.map_err(|e| self.transient(e))?;
        let status = response.status_code().as_u16();
        let text = response.text().await.map_err(|e| self.transient(e))?;
        Ok((status, text))
    }

    fn transient(&self, e: elasticsearch::Error) -> Attempt<LoadError> {
        Attempt::Transient(format!("{}: {e}", self.url))
    }
}
