//! `_bulk` request bodies and the reading of their responses. Every write carries the change's
//! version with `version_type=external`, so a replayed or older write loses (docs/design.md,
//! invariant 2).

use serde_json::Value as Json;

use super::plan::push_str;

/// One write of a `_bulk` body.
#[derive(Debug, Clone, Copy)]
pub enum Action<'a> {
    /// Create or replace the document.
    Index {
        /// Index name.
        index: &'a str,
        /// Document id.
        id: &'a str,
        /// External version.
        version: u64,
        /// The document's JSON object.
        doc: &'a [u8],
    },
    /// Delete the document.
    Delete {
        /// Index name.
        index: &'a str,
        /// Document id.
        id: &'a str,
        /// External version.
        version: u64,
    },
}

/// A `_bulk` body built as records arrive: each action's NDJSON lines, in order. Its size
/// bounds a batch (`loader.batch_bytes`), and actions can be taken out again (a table held
/// for a mapping conflict) without serializing the rest twice.
#[derive(Debug, Default)]
pub struct Body {
    buf: Vec<u8>,
    /// Where each action's lines end in `buf`.
    ends: Vec<usize>,
}

impl Body {
    /// Appends `action`.
    pub fn push(&mut self, action: Action<'_>) {
        let (op, index, id, version, doc) = match action {
            Action::Index {
                index,
                id,
                version,
                doc,
            } => ("{\"index\":{\"_index\":", index, id, version, Some(doc)),
            Action::Delete { index, id, version } => {
                ("{\"delete\":{\"_index\":", index, id, version, None)
            }
        };
        let buf = &mut self.buf;
        buf.extend_from_slice(op.as_bytes());
        push_str(buf, index);
        buf.extend_from_slice(b",\"_id\":");
        push_str(buf, id);
        buf.extend_from_slice(b",\"version\":");
        buf.extend_from_slice(itoa::Buffer::new().format(version).as_bytes());
        buf.extend_from_slice(b",\"version_type\":\"external\"}}\n");
        if let Some(doc) = doc {
            buf.extend_from_slice(doc);
            buf.push(b'\n');
        }
        self.ends.push(buf.len());
    }

    /// How many actions the body holds.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether the body holds no action.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The NDJSON bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Keeps the actions whose position `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(usize) -> bool) {
        let old = std::mem::take(self);
        let mut start = 0;
        for (i, end) in old.ends.into_iter().enumerate() {
            if keep(i) {
                self.buf.extend_from_slice(&old.buf[start..end]);
                self.ends.push(self.buf.len());
            }
            start = end;
        }
    }
}

/// How one bulk item ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Written, or already superseded: a 409 means a newer version is in the index, and a
    /// delete of a missing document still records its version.
    Settled,
    /// Worth sending again (429, 5xx).
    Retry(String),
    /// Refused for good (mapping or document errors).
    Rejected(String),
}

/// The outcome of each item of a `_bulk` response, in request order.
pub fn outcomes(response: &Json) -> Result<Vec<Outcome>, String> {
    let items = response["items"]
        .as_array()
        .ok_or_else(|| format!("bulk response without items: {response}"))?;
    items
        .iter()
        .map(|item| {
            let (op, result) = item
                .as_object()
                .and_then(|o| o.iter().next())
                .ok_or_else(|| format!("malformed bulk item: {item}"))?;
            let status = result["status"].as_u64().unwrap_or(0);
            let reason = || {
                let e = &result["error"];
                format!(
                    "{status} {}: {}",
                    e["type"].as_str().unwrap_or("error"),
                    e["reason"].as_str().unwrap_or("")
                )
            };
            Ok(match status {
                200..=299 | 409 => Outcome::Settled,
                404 if op == "delete" => Outcome::Settled,
                429 | 500..=599 => Outcome::Retry(reason()),
                _ => Outcome::Rejected(reason()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_write_carries_an_external_version_and_actions_can_be_taken_out() {
        let mut body = Body::default();
        body.push(Action::Index {
            index: "shop.orders",
            id: "1\"",
            version: 7,
            doc: br#"{"id":1}"#,
        });
        body.push(Action::Delete {
            index: "shop.orders",
            id: "2",
            version: 8,
        });
        let lines = |body: &Body| -> Vec<Json> {
            let text = std::str::from_utf8(body.bytes()).unwrap();
            assert!(text.ends_with('\n'));
            text.lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        };
        let all = lines(&body);
        assert_eq!(all.len(), 3);
        assert_eq!(all[0]["index"]["version_type"], "external");
        assert_eq!(all[0]["index"]["version"], 7);
        assert_eq!(all[0]["index"]["_id"], "1\"");
        assert_eq!(all[1], json!({"id": 1}));
        assert_eq!(all[2]["delete"]["_id"], "2");
        body.retain(|i| i == 1);
        assert_eq!(body.len(), 1);
        assert_eq!(lines(&body), all[2..]);
    }

    #[test]
    fn conflicts_and_missing_deletes_settle_overload_retries_mapping_errors_reject() {
        let response = json!({"errors": true, "items": [
            {"index": {"status": 201}},
            {"index": {"status": 409, "error": {"type": "version_conflict_engine_exception"}}},
            {"delete": {"status": 404}},
            {"index": {"status": 429, "error": {"type": "es_rejected_execution_exception", "reason": "queue full"}}},
            {"index": {"status": 400, "error": {"type": "mapper_parsing_exception", "reason": "bad"}}},
            {"index": {"status": 404, "error": {"type": "index_not_found_exception", "reason": "gone"}}},
        ]});
        let o = outcomes(&response).unwrap();
        assert_eq!(
            o[..3],
            [Outcome::Settled, Outcome::Settled, Outcome::Settled]
        );
        assert_eq!(
            o[3],
            Outcome::Retry("429 es_rejected_execution_exception: queue full".into())
        );
        assert_eq!(
            o[4],
            Outcome::Rejected("400 mapper_parsing_exception: bad".into())
        );
        assert!(matches!(o[5], Outcome::Rejected(_)));
    }
}
