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

/// How long a scroll context lives between two pages.
const SCROLL_KEEP: &str = "5m";
/// Ids per page of the scan over an index.
const SCROLL_PAGE: usize = 5000;

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

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: &Json,
        what: &str,
    ) -> Result<(u16, Json), VerifyError> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let fail =
            |e: &dyn std::fmt::Display| VerifyError::Index(format!("{what} at {}: {e}", self.url));
        let response = self
            .client
            .send(
                method,
                path,
                headers,
                None::<&()>,
                Some(body.to_string().into_bytes()),
                None,
            )
            .await
            .map_err(|e| fail(&crate::with_causes(&e)))?;
        let status = response.status_code().as_u16();
        let text = response.text().await.map_err(|e| fail(&e))?;
        let json = serde_json::from_str(&text).unwrap_or(Json::String(text));
        if status >= 400 && status != 404 {
            return Err(fail(&format!("HTTP {status} {json}")));
        }
        Ok((status, json))
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
            )
            .await?;
        if status == 404 {
            return Ok(found);
        }
        for doc in response["docs"].as_array_mut().into_iter().flatten() {
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
                    .call(Method::Post, &path, &query, "scanning an index")
                    .await
            })),
            index: index.to_string(),
        })
    }

    /// Deletes documents of `index`, each only if its version is still the one given: the
    /// delete carries the next version, so any change the stream writes meanwhile (always a
    /// higher version) wins. Returns how many were deleted.
    pub async fn delete(&self, index: &str, docs: &[(String, u64)]) -> Result<u64, VerifyError> {
        if docs.is_empty() {
            return Ok(0);
        }
        let mut body = String::new();
        for (id, version) in docs {
            let action = json!({"delete": {"_index": index, "_id": id, "version": version + 1, "version_type": "external"}});
            body.push_str(&action.to_string());
            body.push('\n');
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        let response = self
            .client
            .send(
                Method::Post,
                "/_bulk?refresh=true",
                headers,
                None::<&()>,
                Some(body.into_bytes()),
                None,
            )
            .await
            .map_err(|e| {
                VerifyError::Index(format!(
                    "deleting documents at {}: {}",
                    self.url,
                    crate::with_causes(&e)
                ))
            })?;
        let report: Json = response
            .json()
            .await
            .map_err(|e| VerifyError::Index(format!("deleting documents at {}: {e}", self.url)))?;
        Ok(report["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|i| i["delete"]["result"] == "deleted")
            .count() as u64)
    }
}

/// A scan over an index, a page at a time; the next page is asked for while the caller
/// looks at the current one.
pub struct Scroll {
    /// The response holding the next page; `None` once done.
    next: Option<Pending>,
    index: String,
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
        if status == 404 {
            return Ok(None);
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
                .call(Method::Post, "/_search/scroll", &body, "scanning an index")
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
