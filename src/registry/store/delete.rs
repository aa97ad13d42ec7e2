//! Soft and permanent deletes of subjects and versions, guarded by references and modes.

use super::keys::*;
use super::{Mode, VersionSel};
use super::{RegistryError, Store};

impl Store {
    /// Deletes every version of `subject`: soft first, then (`permanent`) for good, with its
    /// settings. Returns the versions deleted.
    pub async fn delete_subject(
        &self,
        subject: &str,
        permanent: bool,
    ) -> Result<Vec<u32>, RegistryError> {
        let _guard = self.write_lock.lock().await;
        self.writable(subject)?;
        let all = self.versions(subject, true)?;
        if all.is_empty() {
            return Err(RegistryError::subject_not_found(subject));
        }
        let live = self.versions(subject, false)?;
        for &v in &all {
            self.unreferenced(subject, v)?;
        }
        if permanent {
            if !live.is_empty() {
                return Err(RegistryError::new(
                    40405,
                    format!(
                        "Subject '{subject}' was not deleted first before being deleted \
                         permanently"
                    ),
                ));
            }
            for &v in &all {
                self.remove_version(subject, v)?;
            }
            for tree in [&self.config, &self.modes] {
                tree.remove(subject).map_err(RegistryError::store)?;
            }
        } else {
            if live.is_empty() {
                return Err(RegistryError::new(
                    40404,
                    format!(
                        "Subject '{subject}' was soft deleted. Set permanent=true to delete \
                         permanently"
                    ),
                ));
            }
            for &v in &live {
                self.mark_deleted(subject, v)?;
            }
        }
        crate::storage::flush(&self.db)
            .await
            .map_err(RegistryError::store)?;
        Ok(if permanent { all } else { live })
    }

    /// Deletes one version: soft first, then (`permanent`) for good.
    pub async fn delete_version(
        &self,
        subject: &str,
        sel: VersionSel,
        permanent: bool,
    ) -> Result<u32, RegistryError> {
        let _guard = self.write_lock.lock().await;
        self.writable(subject)?;
        // A number names soft-deleted versions too; `latest` is the latest live one, unless
        // the deletion is permanent (of a version soft-deleted before).
        let v = self.version(subject, sel, permanent || sel != VersionSel::Latest)?;
        let deleted = !self.versions(subject, false)?.contains(&v.version);
        self.unreferenced(subject, v.version)?;
        match (permanent, deleted) {
            (true, false) => {
                return Err(RegistryError::new(
                    40407,
                    format!(
                        "Subject '{subject}' Version {} was not deleted first before being \
                         deleted permanently",
                        v.version
                    ),
                ));
            }
            (true, true) => self.remove_version(subject, v.version)?,
            (false, true) => {
                return Err(RegistryError::new(
                    40406,
                    format!(
                        "Subject '{subject}' Version {} was soft deleted. Set permanent=true to \
                         delete permanently",
                        v.version
                    ),
                ));
            }
            (false, false) => self.mark_deleted(subject, v.version)?,
        }
        crate::storage::flush(&self.db)
            .await
            .map_err(RegistryError::store)?;
        Ok(v.version)
    }

    pub(super) fn writable(&self, subject: &str) -> Result<(), RegistryError> {
        if self.mode(subject)? == Mode::ReadOnly {
            return Err(RegistryError::not_permitted(format!(
                "Subject {subject} is in read-only mode"
            )));
        }
        Ok(())
    }

    /// Refuses to delete a version another live schema references.
    pub(super) fn unreferenced(&self, subject: &str, version: u32) -> Result<(), RegistryError> {
        let by = self.referenced_by(subject, version)?;
        if by.is_empty() {
            return Ok(());
        }
        Err(RegistryError::new(
            42206,
            format!(
                "One or more references exist to the schema {{subject={subject}, \
                 version={version}}}: schema ids {by:?}; delete those first"
            ),
        ))
    }

    pub(super) fn mark_deleted(&self, subject: &str, version: u32) -> Result<(), RegistryError> {
        let key = version_key(subject, version);
        let Some(v) = self.versions.get(&key).map_err(RegistryError::store)? else {
            return Ok(());
        };
        let record = VersionRecord {
            deleted: true,
            ..decode_version(&v)?
        };
        self.versions
            .insert(key, encode_version(record))
            .map_err(RegistryError::store)?;
        Ok(())
    }

    /// Removes a version for good, and its schema once no version holds it.
    pub(super) fn remove_version(&self, subject: &str, version: u32) -> Result<(), RegistryError> {
        let Some(v) = self
            .versions
            .remove(version_key(subject, version))
            .map_err(RegistryError::store)?
        else {
            return Ok(());
        };
        let id = decode_version(&v)?.id;
        if self.uses_of(id, true)?.is_empty() {
            let stored = self.schema(id)?;
            self.ids_by_text
                .remove(text_key(&stored.schema, &stored.references))
                .map_err(RegistryError::store)?;
            self.schemas
                .remove(id.to_be_bytes())
                .map_err(RegistryError::store)?;
        }
        Ok(())
    }
}
