//! What verify reads from (and, repairing, deletes in) the index: documents by id with their
//! versions, every id of an index, and versioned deletes.

use std::collections::HashMap;

use elasticsearch::Elasticsearch;
use elasticsearch::http::Method;
use elasticsearch::http::headers::{CONTENT_TYPE, HeaderMap, HeaderValue};
use serde_json::{Value as Json, json};

use super::VerifyError;
use crate::config::ElasticsearchConfig;
use crate::load::index::client;
use crate::retry::{Attempt, Backoff};

/// How long a scroll context lives between two pages.
const SCROLL_KEEP: &str = "5m";
/// Ids per page of the scan over an index.
const SCROLL_PAGE: usize = 5000;
/// Deletes per bulk request.
const DELETE_BATCH: usize = 1000;
/// Attempts at a request that is safe to repeat (a read, a versioned delete) before verify
/// reports the index server as failing: a busy server (a timeout, a refused connection,
/// HTTP 429 or 5xx) gets a few chances rather than leaving a table unchecked.
const ATTEMPTS: u32 = 4;

/// A document as the index holds it.
#[derive(Debug)]
pub struct Found {
    /// The document's version: the change version Sluice wrote it with (external versions).
    pub version: u64,
    /// Its `_source`.
    pub source: Json,
}

/// The index server, read by verify.
#[derive(Clone)]
pub struct Index {
    client: Elasticsearch,
    url: String,
}

impl Index {
    /// The configured index server.
    pub fn new(cfg: &ElasticsearchConfig) -> Result<Index, VerifyError> {
        Ok(Index {
            client: client(cfg).map_err(|e| VerifyError::Index(e.to_string()))?,
            url: cfg.urls_text(),
        })
    }

    /// [`Index::send`] with a JSON body.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: &Json,
        what: &str,
        attempts: u32,
    ) -> Result<(u16, Json), VerifyError> {
        let body = body.to_string().into_bytes();
        self.send(method, path, "application/json", &body, what, attempts)
            .await
    }

    /// Sends a request, up to `attempts` times while the server is busy or unreachable; more
    /// than once only if a repeat is harmless (a read, a versioned delete; not the next page
    /// of a scroll, which a lost first attempt may have moved past). A 404 is returned to the
    /// caller, other failures are errors.
    async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: &'static str,
        body: &[u8],
        what: &str,
        attempts: u32,
    ) -> Result<(u16, Json), VerifyError> {
        let mut backoff = Backoff::default();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.send_once(method, path, content_type, body, what).await {
                Ok(answer) => return Ok(answer),
                Err(Attempt::Permanent(e)) => return Err(e),
                Err(Attempt::Transient(reason)) if attempt < attempts => {
                    let wait = backoff.next_wait();
                    tracing::warn!(%reason, attempt, retry_in_ms = wait.as_millis() as u64,
                        "verify: the index server failed a request; trying it again");
                    tokio::time::sleep(wait).await;
                }
                Err(Attempt::Transient(reason)) => {
                    return Err(VerifyError::Index(format!(
                        "{reason} (attempts: {attempt}; run verify again once the index \
                         server answers: it continues where it stopped)"
                    )));
                }
            }
        }
    }

    /// One attempt of [`Index::send`]: failures the server may get over (no answer, HTTP 429
    /// or 5xx) are transient.
    async fn send_once(
        &self,
        method: Method,
        path: &str,
        content_type: &'static str,
        body: &[u8],
        what: &str,
    ) -> Result<(u16, Json), Attempt<VerifyError>> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        let reason = |e: &dyn std::fmt::Display| format!("{what} at {}: {e}", self.url);
        let response = self
            .client
            .send(method, path, headers, None::<&()>, Some(body), None)
            .await
            .map_err(|e| Attempt::Transient(reason(&crate::with_causes(&e))))?;
        let status = response.status_code().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| Attempt::Transient(reason(&e)))?;
        let json = serde_json::from_str(&text).unwrap_or(Json::String(text));
        match status {
            429 | 500..=599 => Err(Attempt::Transient(reason(&format!("HTTP {status} {json}")))),
            400.. if status != 404 => Err(Attempt::Permanent(VerifyError::Index(reason(
                &format!("HTTP {status} {json}"),
            )))),
            _ => Ok((status, json)),
        }
    }

    /// The documents of `index` among `ids` (absent ids are not found; so is everything in an
    /// index that does not exist).
    pub async fn get(
        &self,
        index: &str,
        ids: &[&str],
    ) -> Result<HashMap<String, Found>, VerifyError> {
        let mut found = HashMap::with_capacity(ids.len());
        if ids.is_empty() {
            return Ok(found);
        }
        let path = format!("/{index}/_mget");
        let (status, mut response) = self
            .call(
                Method::Post,
                &path,
                &json!({ "ids": ids }),
                "reading documents",
                ATTEMPTS,
            )
            .await?;
        if status == 404 {
            return Ok(found);
        }
        for doc in response["docs"].as_array_mut().into_iter().flatten() {
            if let Some(error) = doc.get("error")
                && error["type"] != "index_not_found_exception"
            {
                // A shard that does not answer is no proof that a document is missing.
                return Err(VerifyError::Index(format!(
                    "{}: reading a document of {index} failed: {error}",
                    self.url
                )));
            }
            if doc["found"] != Json::Bool(true) {
                continue;
            }
            let (Json::String(id), Some(version)) = (doc["_id"].take(), doc["_version"].as_u64())
            else {
                return Err(VerifyError::Index(format!(
                    "{}: a document of {index} came back without _id or _version: {doc}",
                    self.url
                )));
            };
            let source = doc["_source"].take();
            found.insert(id, Found { version, source });
        }
        Ok(found)
    }

    /// Starts a scan over every document id of `index` with its version, in no particular
    /// order (a scroll: Elasticsearch 8 cannot sort on `_id`).
    pub async fn scan(&self, index: &str) -> Result<Scroll, VerifyError> {
        let path = format!("/{index}/_search?scroll={SCROLL_KEEP}");
        let query =
            json!({"size": SCROLL_PAGE, "_source": false, "version": true, "sort": ["_doc"]});
        let client = self.clone();
        Ok(Scroll {
            next: Some(tokio::spawn(async move {
                client
                    .call(Method::Post, &path, &query, "scanning an index", ATTEMPTS)
                    .await
            })),
            index: index.to_string(),
            started: false,
        })
    }

    /// Deletes documents of `index`, each only if its version is still the one given: the
    /// delete carries the next version, so any change the stream writes meanwhile (always a
    /// higher version) wins. Returns how many were deleted.
    pub async fn delete(&self, index: &str, docs: &[(String, u64)]) -> Result<u64, VerifyError> {
        let mut deleted = 0;
        for batch in docs.chunks(DELETE_BATCH) {
            let mut body = String::new();
            for (id, version) in batch {
                let action = json!({"delete": {"_index": index, "_id": id, "version": version + 1, "version_type": "external"}});
                body.push_str(&action.to_string());
                body.push('\n');
            }
            let what = "deleting documents without rows";
            let (_, report) = self
                .send(
                    Method::Post,
                    "/_bulk?refresh=true",
                    "application/x-ndjson",
                    body.as_bytes(),
                    what,
                    ATTEMPTS,
                )
                .await?;
            for item in report["items"].as_array().into_iter().flatten() {
                let outcome = &item["delete"];
                match (outcome["result"].as_str(), outcome["status"].as_u64()) {
                    (Some("deleted"), _) => deleted += 1,
                    // Gone already, or changed meanwhile (a newer version): nothing to do.
                    (_, Some(404 | 409)) => {}
                    _ => {
                        return Err(VerifyError::Index(format!(
                            "{what} at {}: {outcome}",
                            self.url
                        )));
                    }
                }
            }
        }
        Ok(deleted)
    }
}

/// A scan over an index, a page at a time; the next page is asked for while the caller
/// looks at the current one.
pub struct Scroll {
    /// The response holding the next page; `None` once done.
    next: Option<Pending>,
    index: String,
    /// Whether the first page came: a 404 after it is a lost scroll, not a missing index.
    started: bool,
}

/// A scroll response on its way.
type Pending = tokio::task::JoinHandle<Result<(u16, Json), VerifyError>>;

impl Scroll {
    /// The next page of `(id, version)`s; `None` at the end.
    pub async fn next(&mut self, index: &Index) -> Result<Option<Vec<(String, u64)>>, VerifyError> {
        let Some(pending) = self.next.take() else {
            return Ok(None);
        };
        let (status, mut response) = pending
            .await
            .map_err(|e| VerifyError::Index(format!("scanning {}: {e}", self.index)))??;
        let incomplete = |why: String| {
            VerifyError::Index(format!(
                "{}: the scan of {} is incomplete: {why}",
                index.url, self.index
            ))
        };
        match (status, self.started) {
            // The index does not exist: nothing to scan.
            (404, false) => return Ok(None),
            // The scroll context is gone (expired, or the index replaced meanwhile).
            (404, true) => return Err(incomplete(response.to_string())),
            _ => {}
        }
        self.started = true;
        if response["_shards"]["failed"].as_u64().unwrap_or(0) > 0 {
            return Err(incomplete(format!(
                "shards failed: {}",
                response["_shards"]
            )));
        }
        let hits = match response["hits"]["hits"].take() {
            Json::Array(hits) => hits,
            _ => Vec::new(),
        };
        let scroll_id = response["_scroll_id"].as_str().map(str::to_string);
        if hits.is_empty() {
            if let Some(id) = scroll_id {
                // Frees the context now; it would expire anyway.
                let _ = index
                    .call(
                        Method::Delete,
                        "/_search/scroll",
                        &json!({ "scroll_id": [id] }),
                        "closing a scan",
                        1,
                    )
                    .await;
            }
            return Ok(None);
        }
        let Some(id) = scroll_id else {
            return Err(VerifyError::Index(format!(
                "{}: a scan of {} returned no scroll id",
                index.url, self.index
            )));
        };
        let body = json!({"scroll": SCROLL_KEEP, "scroll_id": id});
        let client = index.clone();
        self.next = Some(tokio::spawn(async move {
            client
                .call(
                    Method::Post,
                    "/_search/scroll",
                    &body,
                    "scanning an index",
                    1,
                )
                .await
        }));
        Ok(Some(
            hits.into_iter()
                .filter_map(|mut h| {
                    let version = h["_version"].as_u64()?;
                    match h["_id"].take() {
                        Json::String(id) => Some((id, version)),
                        _ => None,
                    }
                })
                .collect(),
        ))
    }
}
