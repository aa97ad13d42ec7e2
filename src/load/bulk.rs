//! `_bulk` request bodies and the reading of their responses. Every write carries the change's
//! version with `version_type=external`, so a replayed or older write loses (docs/design.md,
//! invariant 2).

use serde_json::{Value as Json, json};

use super::document::Action;

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
    pub fn push(&mut self, action: &Action) {
        let (op, index, id, version, doc) = match action {
            Action::Index {
                index,
                id,
                version,
                doc,
            } => ("index", index, id, version, Some(doc)),
            Action::Delete { index, id, version } => ("delete", index, id, version, None),
        };
        let meta = json!({op: {"_index": index, "_id": id, "version": version, "version_type": "external"}});
        serde_json::to_writer(&mut self.buf, &meta).expect("JSON to a Vec cannot fail");
        self.buf.push(b'\n');
        if let Some(doc) = doc {
            serde_json::to_writer(&mut self.buf, doc).expect("JSON to a Vec cannot fail");
            self.buf.push(b'\n');
        }
        self.ends.push(self.buf.len());
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

    #[test]
    fn every_write_carries_an_external_version_and_actions_can_be_taken_out() {
        let mut body = Body::default();
        body.push(&Action::Index {
            index: "shop.orders".into(),
            id: "1".into(),
            version: 7,
            doc: json!({"id": 1}),
        });
        body.push(&Action::Delete {
            index: "shop.orders".into(),
            id: "2".into(),
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
