//! Durable registry state in sled: schemas by id, subjects' versions, the id counter.
//!
//! Ids are global, as in Confluent's registry: the same schema text gets the same id under
//! every subject, a new schema gets a new id, and an id is never handed out twice, because the
//! counter is flushed to disk before the id is returned.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

/// A registry error, with Confluent's error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RegistryError {
    /// Confluent error code; the HTTP status is its first three digits.
    pub code: u32,
    /// Human-readable message.
    pub message: String,
}

impl RegistryError {
    fn new(code: u32, message: impl Into<String>) -> Self {
        RegistryError {
            code,
            message: message.into(),
        }
    }

    /// 40401.
    pub fn subject_not_found(subject: &str) -> Self {
        Self::new(40401, format!("Subject '{subject}' not found."))
    }

    /// 40402.
    pub fn version_not_found(version: &str) -> Self {
        Self::new(40402, format!("Version {version} not found."))
    }

    /// 40403.
    pub fn schema_not_found() -> Self {
        Self::new(40403, "Schema not found")
    }

    /// 42201.
    pub fn invalid_schema(why: impl std::fmt::Display) -> Self {
        Self::new(42201, format!("Invalid schema: {why}"))
    }

    /// 42202.
    pub fn invalid_version(version: &str) -> Self {
        Self::new(
            42202,
            format!(
                "The specified version '{version}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""
            ),
        )
    }

    fn store(e: impl std::fmt::Display) -> Self {
        Self::new(50001, format!("Error in the backend data store: {e}"))
    }
}

/// A registered schema as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSchema {
    /// The schema text, normalised to compact JSON.
    pub schema: String,
}

/// One version of a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectVersion {
    /// Subject.
    pub subject: String,
    /// Version, from 1.
    pub version: u32,
    /// Global schema id.
    pub id: u32,
    /// The schema.
    pub schema: String,
}

/// The registry's sled database.
pub struct Store {
    db: sled::Db,
    schemas: sled::Tree,
    ids_by_text: sled::Tree,
    versions: sled::Tree,
    register_lock: Mutex<()>,
}

const NEXT_ID: &str = "next_id";

impl Store {
    /// Opens or creates the store in `dir`.
    pub fn open(dir: &Path) -> Result<Store, String> {
        let db = sled::open(dir).map_err(|e| {
            format!(
                "cannot open the registry data dir {}: {e}; if another `sluice registry` uses \
                 it, stop that one or pass a different --data",
                dir.display()
            )
        })?;
        let tree = |name: &str| {
            db.open_tree(name)
                .map_err(|e| format!("registry data dir {}: {e}", dir.display()))
        };
        Ok(Store {
            schemas: tree("schemas")?,
            ids_by_text: tree("ids_by_text")?,
            versions: tree("versions")?,
            db,
            register_lock: Mutex::new(()),
        })
    }

    /// Registers `schema` under `subject`: the existing id and version if the subject already
    /// has it, else a new version (and a new id if no subject has the schema).
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let text = normalise(schema)?;
        let _guard = self.register_lock.lock().await;
        if let Some(v) = self.find(subject, &text)? {
            return Ok(v.id);
        }
        let id = match self.ids_by_text.get(&text).map_err(RegistryError::store)? {
            Some(id) => decode_u32(&id)?,
            None => {
                let id = match self.db.get(NEXT_ID).map_err(RegistryError::store)? {
                    Some(n) => decode_u32(&n)?,
                    None => 1,
                };
                self.db
                    .insert(NEXT_ID, &(id + 1).to_be_bytes())
                    .map_err(RegistryError::store)?;
                let stored = serde_json::to_vec(&StoredSchema {
                    schema: text.clone(),
                })
                .map_err(RegistryError::store)?;
                self.schemas
                    .insert(id.to_be_bytes(), stored)
                    .map_err(RegistryError::store)?;
                self.ids_by_text
                    .insert(&text, &id.to_be_bytes())
                    .map_err(RegistryError::store)?;
                id
            }
        };
        let version = self.versions(subject)?.last().map_or(1, |v| v + 1);
        self.versions
            .insert(version_key(subject, version), &id.to_be_bytes())
            .map_err(RegistryError::store)?;
        self.db.flush_async().await.map_err(RegistryError::store)?;
        Ok(id)
    }

    /// The version of `subject` holding `schema`.
    pub fn lookup(&self, subject: &str, schema: &str) -> Result<SubjectVersion, RegistryError> {
        let text = normalise(schema)?;
        if self.versions(subject)?.is_empty() {
            return Err(RegistryError::subject_not_found(subject));
        }
        self.find(subject, &text)?
            .ok_or_else(RegistryError::schema_not_found)
    }

    fn find(&self, subject: &str, text: &str) -> Result<Option<SubjectVersion>, RegistryError> {
        for version in self.versions(subject)? {
            let v = self.version(subject, version)?;
            if v.schema == text {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    /// The schema with `id`.
    pub fn schema(&self, id: u32) -> Result<StoredSchema, RegistryError> {
        let bytes = self
            .schemas
            .get(id.to_be_bytes())
            .map_err(RegistryError::store)?
            .ok_or_else(RegistryError::schema_not_found)?;
        serde_json::from_slice(&bytes).map_err(RegistryError::store)
    }

    /// Every subject with at least one version, sorted.
    pub fn subjects(&self) -> Result<Vec<String>, RegistryError> {
        let mut out: Vec<String> = Vec::new();
        for kv in self.versions.iter() {
            let (k, _) = kv.map_err(RegistryError::store)?;
            let subject = String::from_utf8_lossy(&k[..k.len() - 5]).into_owned();
            if out.last() != Some(&subject) {
                out.push(subject);
            }
        }
        Ok(out)
    }

    /// The versions of `subject`, ascending; empty if it has none.
    pub fn versions(&self, subject: &str) -> Result<Vec<u32>, RegistryError> {
        let mut prefix = subject.as_bytes().to_vec();
        prefix.push(0);
        self.versions
            .scan_prefix(&prefix)
            .map(|kv| {
                let (k, _) = kv.map_err(RegistryError::store)?;
                decode_u32(&k[k.len() - 4..])
            })
            .collect()
    }

    /// One version of `subject`.
    pub fn version(&self, subject: &str, version: u32) -> Result<SubjectVersion, RegistryError> {
        let id = self
            .versions
            .get(version_key(subject, version))
            .map_err(RegistryError::store)?
            .ok_or_else(|| {
                if self.versions(subject).is_ok_and(|v| v.is_empty()) {
                    RegistryError::subject_not_found(subject)
                } else {
                    RegistryError::version_not_found(&version.to_string())
                }
            })?;
        let id = decode_u32(&id)?;
        Ok(SubjectVersion {
            subject: subject.to_string(),
            version,
            id,
            schema: self.schema(id)?.schema,
        })
    }
}

/// Subject names cannot hold NUL, so `subject NUL version` keys sort by subject, then version.
fn version_key(subject: &str, version: u32) -> Vec<u8> {
    let mut k = subject.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

fn decode_u32(b: &[u8]) -> Result<u32, RegistryError> {
    <[u8; 4]>::try_from(b)
        .map(u32::from_be_bytes)
        .map_err(|_| RegistryError::store("a stored id is not 4 bytes; the data dir is damaged"))
}

/// Checks that `schema` is a valid Avro schema and returns its compact JSON text, so that the
/// same schema written with different whitespace gets the same id.
fn normalise(schema: &str) -> Result<String, RegistryError> {
    let json: serde_json::Value =
        serde_json::from_str(schema).map_err(RegistryError::invalid_schema)?;
    apache_avro::Schema::parse(&json).map_err(RegistryError::invalid_schema)?;
    Ok(json.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = r#"{"type":"record","name":"A","fields":[{"name":"x","type":"int"}]}"#;
    const B: &str = r#"{"type":"record","name":"A","fields":[{"name":"x","type":"long"}]}"#;

    #[tokio::test]
    async fn ids_are_stable_global_and_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            assert_eq!(s.register("t-value", A).await.unwrap(), 1);
            let spaced = A.replace(',', " , ");
            assert_eq!(
                s.register("t-value", &spaced).await.unwrap(),
                1,
                "same schema, same id"
            );
            assert_eq!(s.register("u-value", A).await.unwrap(), 1, "ids are global");
            assert_eq!(s.register("t-value", B).await.unwrap(), 2);
            assert_eq!(s.versions("t-value").unwrap(), vec![1, 2]);
            assert_eq!(s.lookup("t-value", B).unwrap().version, 2);
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.version("t-value", 2).unwrap().id, 2);
        assert_eq!(s.subjects().unwrap(), vec!["t-value", "u-value"]);
        let c = B.replace("long", "string");
        assert_eq!(
            s.register("v-value", &c).await.unwrap(),
            3,
            "the counter survived the restart"
        );
    }

    #[tokio::test]
    async fn confluent_error_codes() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.register("x", "{").await.unwrap_err().code, 42201);
        assert_eq!(
            s.register("x", r#"{"type":"nope"}"#)
                .await
                .unwrap_err()
                .code,
            42201
        );
        assert_eq!(s.lookup("x", A).unwrap_err().code, 40401);
        s.register("x", A).await.unwrap();
        assert_eq!(s.lookup("x", B).unwrap_err().code, 40403);
        assert_eq!(s.version("x", 9).unwrap_err().code, 40402);
        assert_eq!(s.version("y", 1).unwrap_err().code, 40401);
        assert_eq!(s.schema(99).unwrap_err().code, 40403);
    }
}
