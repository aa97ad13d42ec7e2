//! Reads: schemas by id, subjects, versions and who uses what.

use super::keys::*;
use super::{RegistryError, Store};
use super::{StoredSchema, SubjectVersion, VersionSel};

impl Store {
    /// The schema with `id`.
    pub fn schema(&self, id: u32) -> Result<StoredSchema, RegistryError> {
        let bytes = self
            .schemas
            .get(id.to_be_bytes())
            .map_err(RegistryError::store)?
            .ok_or_else(RegistryError::schema_not_found)?;
        serde_json::from_slice(&bytes)
            .map_err(|_| RegistryError::damaged("a stored schema is not JSON"))
    }

    /// Every `(subject, version)` holding schema `id`.
    pub fn uses_of(&self, id: u32, deleted: bool) -> Result<Vec<(String, u32)>, RegistryError> {
        self.schema(id)?;
        let mut out = Vec::new();
        for item in self.versions.iter() {
            let (k, v) = item.map_err(RegistryError::store)?;
            let record = decode_version(&v)?;
            if record.id == id && (deleted || !record.deleted) {
                let (subject, version) = split_version_key(&k)?;
                out.push((subject, version));
            }
        }
        Ok(out)
    }

    /// Ids of the schemas that reference `subject` version `version`.
    pub fn referenced_by(&self, subject: &str, version: u32) -> Result<Vec<u32>, RegistryError> {
        let mut ids = Vec::new();
        for item in self.schemas.iter() {
            let (k, v) = item.map_err(RegistryError::store)?;
            let stored: StoredSchema = serde_json::from_slice(&v)
                .map_err(|_| RegistryError::damaged("a stored schema is not JSON"))?;
            if stored
                .references
                .iter()
                .any(|r| r.subject == subject && r.version == version)
                && !self.uses_of(decode_u32(&k)?, false)?.is_empty()
            {
                ids.push(decode_u32(&k)?);
            }
        }
        Ok(ids)
    }

    /// Subjects with at least one version (live ones only unless `deleted`), sorted.
    pub fn subjects(&self, deleted: bool) -> Result<Vec<String>, RegistryError> {
        let mut out: Vec<String> = Vec::new();
        for item in self.versions.iter() {
            let (k, v) = item.map_err(RegistryError::store)?;
            if !deleted && decode_version(&v)?.deleted {
                continue;
            }
            let (subject, _) = split_version_key(&k)?;
            if out.last() != Some(&subject) {
                out.push(subject);
            }
        }
        Ok(out)
    }

    /// The versions of `subject`, ascending (live ones only unless `deleted`).
    pub fn versions(&self, subject: &str, deleted: bool) -> Result<Vec<u32>, RegistryError> {
        let mut out = Vec::new();
        for item in self.versions.scan_prefix(subject_prefix(subject)) {
            let (k, v) = item.map_err(RegistryError::store)?;
            if deleted || !decode_version(&v)?.deleted {
                out.push(split_version_key(&k)?.1);
            }
        }
        Ok(out)
    }

    /// One version of `subject`; soft-deleted ones only if `deleted`.
    pub fn version(
        &self,
        subject: &str,
        sel: VersionSel,
        deleted: bool,
    ) -> Result<SubjectVersion, RegistryError> {
        let number = match sel {
            VersionSel::Number(n) => n,
            VersionSel::Latest => *self
                .versions(subject, deleted)?
                .last()
                .ok_or_else(|| RegistryError::subject_not_found(subject))?,
        };
        let record = self
            .versions
            .get(version_key(subject, number))
            .map_err(RegistryError::store)?
            .map(|v| decode_version(&v))
            .transpose()?
            .filter(|r| deleted || !r.deleted);
        let Some(record) = record else {
            return Err(if self.versions(subject, deleted)?.is_empty() {
                RegistryError::subject_not_found(subject)
            } else {
                RegistryError::version_not_found(&number.to_string())
            });
        };
        Ok(SubjectVersion {
            subject: subject.to_string(),
            version: number,
            id: record.id,
            schema: self.schema(record.id)?,
        })
    }
}
