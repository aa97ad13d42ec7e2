//! Registration: ids, versions, lookups and the compatibility check.

use super::super::compat::{self, Level, Parsed};
use super::keys::*;
use super::{Mode, NEXT_ID, Reference, SchemaInput, StoredSchema, SubjectVersion, VersionSel};
use super::{RegistryError, Store};

impl Store {
    /// Registers `input` under `subject`: the existing id if a live version has it, else a
    /// new version, after the subject's compatibility check.
    pub async fn register(&self, subject: &str, input: &SchemaInput) -> Result<u32, RegistryError> {
        let text = normalise(&input.schema)?;
        let guard = self.write_lock.lock().await;
        let mode = self.mode(subject)?;
        if mode == Mode::ReadOnly {
            return Err(RegistryError::not_permitted(format!(
                "Subject {subject} is in read-only mode"
            )));
        }
        let new = self.parse(&text, &input.references)?;
        if mode != Mode::Import
            && let Some(v) = self.find(subject, &text, &input.references, false)?
        {
            return Ok(v.id);
        }
        let versions = self.versions(subject, true)?;
        let version = match (mode, input.version) {
            (Mode::Import, Some(v)) if versions.contains(&v) => {
                return Err(RegistryError::not_permitted(format!(
                    "Subject {subject} already has version {v}"
                )));
            }
            (Mode::Import, Some(v)) => v,
            _ => versions.last().map_or(1, |v| v + 1),
        };
        if mode == Mode::Import {
            if input.id.is_none() {
                return Err(RegistryError::not_permitted(
                    "the registry is in IMPORT mode: registrations must give the schema's id",
                ));
            }
        } else {
            let level = self.level(subject, true)?;
            let live = self.live(subject)?;
            let failures = compat::check(level, &new, &live);
            if !failures.is_empty() {
                return Err(incompatible(subject, level, &failures));
            }
        }
        let id = self.id_for(&text, &input.references, input.id)?;
        self.versions
            .insert(
                version_key(subject, version),
                encode_version(VersionRecord { id, deleted: false }),
            )
            .map_err(RegistryError::store)?;
        // Durable before the id is handed out; registrations that follow see this one in
        // memory already, so the fsync need not hold the lock (concurrent ones share it).
        drop(guard);
        crate::storage::flush(&self.db)
            .await
            .map_err(RegistryError::store)?;
        Ok(id)
    }

    /// The id of a schema text: the one it has, `wanted` (IMPORT), or a new one.
    pub(super) fn id_for(
        &self,
        text: &str,
        references: &[Reference],
        wanted: Option<u32>,
    ) -> Result<u32, RegistryError> {
        let key = text_key(text, references);
        let existing = self
            .ids_by_text
            .get(&key)
            .map_err(RegistryError::store)?
            .map(|id| decode_u32(&id))
            .transpose()?;
        if let Some(id) = existing {
            return match wanted {
                Some(w) if w != id => Err(RegistryError::not_permitted(format!(
                    "the schema is already registered with id {id}, not {w}"
                ))),
                _ => Ok(id),
            };
        }
        let id = match wanted {
            Some(w) => {
                if self.schema(w).is_ok() {
                    return Err(RegistryError::not_permitted(format!(
                        "Overwrite new schema with id {w} is not permitted: id {w} holds \
                         another schema"
                    )));
                }
                w
            }
            None => self.next_id()?,
        };
        // The counter stays above every id handed out, imported ones included.
        if self.next_id()? <= id {
            self.db
                .insert(NEXT_ID, &(id + 1).to_be_bytes())
                .map_err(RegistryError::store)?;
        }
        let stored = StoredSchema {
            schema: text.to_string(),
            references: references.to_vec(),
        };
        let json = serde_json::to_vec(&stored).map_err(RegistryError::store)?;
        self.schemas
            .insert(id.to_be_bytes(), json)
            .map_err(RegistryError::store)?;
        self.ids_by_text
            .insert(key, &id.to_be_bytes())
            .map_err(RegistryError::store)?;
        Ok(id)
    }

    pub(super) fn next_id(&self) -> Result<u32, RegistryError> {
        match self.db.get(NEXT_ID).map_err(RegistryError::store)? {
            Some(n) => decode_u32(&n),
            None => Ok(1),
        }
    }

    /// The version of `subject` holding `input` (soft-deleted ones too if `deleted`).
    pub fn lookup(
        &self,
        subject: &str,
        input: &SchemaInput,
        deleted: bool,
    ) -> Result<SubjectVersion, RegistryError> {
        let text = normalise(&input.schema)?;
        if self.versions(subject, deleted)?.is_empty() {
            return Err(RegistryError::subject_not_found(subject));
        }
        self.find(subject, &text, &input.references, deleted)?
            .ok_or_else(RegistryError::schema_not_found)
    }

    pub(super) fn find(
        &self,
        subject: &str,
        text: &str,
        references: &[Reference],
        deleted: bool,
    ) -> Result<Option<SubjectVersion>, RegistryError> {
        for version in self.versions(subject, deleted)? {
            let v = self.version(subject, VersionSel::Number(version), deleted)?;
            if v.schema.schema == text && v.schema.references == references {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    /// Checks `input` against `subject` at its level: against `version` only, or, for
    /// `None`, as a registration would. Every failure's message; empty if compatible.
    pub fn check(
        &self,
        subject: &str,
        version: Option<VersionSel>,
        input: &SchemaInput,
    ) -> Result<Vec<String>, RegistryError> {
        let new = self.parse(&normalise(&input.schema)?, &input.references)?;
        let level = self.level(subject, true)?;
        let against = match version {
            None => self.live(subject)?,
            Some(sel) => {
                let v = self.version(subject, sel, false)?;
                let parsed = self.parse(&v.schema.schema, &v.schema.references)?;
                vec![(v.version, parsed)]
            }
        };
        Ok(compat::check(level, &new, &against)
            .iter()
            .map(ToString::to_string)
            .collect())
    }

    /// The live versions of `subject`, parsed, oldest first.
    pub(super) fn live(&self, subject: &str) -> Result<Vec<(u32, Parsed)>, RegistryError> {
        self.versions(subject, false)?
            .into_iter()
            .map(|n| {
                let v = self.version(subject, VersionSel::Number(n), false)?;
                Ok((n, self.parse(&v.schema.schema, &v.schema.references)?))
            })
            .collect()
    }

    /// Parses a schema with the schemas its references name, transitively.
    pub(super) fn parse(
        &self,
        text: &str,
        references: &[Reference],
    ) -> Result<Parsed, RegistryError> {
        let mut texts = Vec::new();
        self.reference_texts(references, &mut texts, 0)?;
        let (schema, references) = if texts.is_empty() {
            let schema =
                apache_avro::Schema::parse_str(text).map_err(RegistryError::invalid_schema)?;
            (schema, Vec::new())
        } else {
            apache_avro::Schema::parse_str_with_list(text, &texts)
                .map_err(RegistryError::invalid_schema)?
        };
        Ok(Parsed { schema, references })
    }

    pub(super) fn reference_texts(
        &self,
        references: &[Reference],
        out: &mut Vec<String>,
        depth: usize,
    ) -> Result<(), RegistryError> {
        if depth > 32 {
            return Err(RegistryError::invalid_schema(
                "references nest more than 32 deep (a cycle?)",
            ));
        }
        for r in references {
            let v = self
                .version(&r.subject, VersionSel::Number(r.version), true)
                .map_err(|_| {
                    RegistryError::invalid_schema(format!(
                        "reference {} to subject {} version {} does not exist",
                        r.name, r.subject, r.version
                    ))
                })?;
            self.reference_texts(&v.schema.references, out, depth + 1)?;
            if !out.contains(&v.schema.schema) {
                out.push(v.schema.schema);
            }
        }
        Ok(())
    }
}

/// The 409 of a registration the subject's level refuses, naming every failure.
pub(super) fn incompatible(
    subject: &str,
    level: Level,
    failures: &[compat::Failure],
) -> RegistryError {
    let details: Vec<String> = failures.iter().map(ToString::to_string).collect();
    RegistryError::new(
        409,
        format!(
            "Schema being registered is incompatible with an earlier schema for subject \
             \"{subject}\" (compatibility {}): {}",
            level.as_str(),
            details.join("; ")
        ),
    )
}
