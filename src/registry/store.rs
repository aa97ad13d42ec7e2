//! Durable registry state in sled: schemas by id, subjects' versions (soft-deletable), the id
//! counter, and compatibility levels and modes, global and per subject.
//!
//! Ids are global, as in Confluent's registry: the same schema (text and references) gets the
//! same id under every subject, a new schema gets a new id, and an id is never handed out
//! twice: registrations are serialised and the counter is flushed before the id is returned.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::compat::{self, Level, Parsed};

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
                "The specified version '{version}' is not a valid version id. Allowed values are \
                 between [1, 2^31-1] and the string \"latest\""
            ),
        )
    }

    /// 42203.
    pub fn invalid_level(level: &str) -> Self {
        Self::new(
            42203,
            format!(
                "Invalid compatibility level '{level}'. Valid values are none, backward, \
                 forward, full, backward_transitive, forward_transitive, and full_transitive"
            ),
        )
    }

    /// 42204.
    pub fn invalid_mode(mode: &str) -> Self {
        Self::new(
            42204,
            format!("Invalid mode '{mode}'. Valid values are READWRITE, READONLY and IMPORT"),
        )
    }

    /// 42205.
    pub fn not_permitted(why: impl Into<String>) -> Self {
        Self::new(42205, why)
    }

    /// 50001.
    fn store(e: impl std::fmt::Display) -> Self {
        Self::new(50001, format!("Error in the backend data store: {e}"))
    }

    fn damaged(what: &str) -> Self {
        Self::store(format!(
            "{what}; the data dir is damaged: restore it from a backup, or start with an empty \
             one and let producers register their schemas again"
        ))
    }
}

/// A reference from a schema to another subject's version, whose named types it uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    /// The name the referencing schema uses (for Avro, the referenced type's full name).
    pub name: String,
    /// Subject of the referenced schema.
    pub subject: String,
    /// Its version.
    pub version: u32,
}

/// A registered schema as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSchema {
    /// The schema text, normalised to compact JSON.
    pub schema: String,
    /// The schemas it references.
    #[serde(default)]
    pub references: Vec<Reference>,
}

/// A schema as a request supplies it.
#[derive(Debug, Clone, Default)]
pub struct SchemaInput {
    /// The schema text.
    pub schema: String,
    /// Its references.
    pub references: Vec<Reference>,
    /// IMPORT mode: the id to store it under.
    pub id: Option<u32>,
    /// IMPORT mode: the version to store it as.
    pub version: Option<u32>,
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
    pub schema: StoredSchema,
}

/// Which version a request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSel {
    /// The highest live version (`latest` or `-1`).
    Latest,
    /// A version number.
    Number(u32),
}

impl VersionSel {
    /// Parses `latest`, `-1` or a number in `[1, 2^31-1]`.
    pub fn parse(s: &str) -> Result<Self, RegistryError> {
        match s {
            "latest" | "-1" => Ok(VersionSel::Latest),
            _ => match s.parse::<u32>() {
                Ok(v) if (1..=i32::MAX as u32).contains(&v) => Ok(VersionSel::Number(v)),
                _ => Err(RegistryError::invalid_version(s)),
            },
        }
    }
}

/// A subject's mode: whether it takes registrations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Normal operation.
    ReadWrite,
    /// Registrations and deletions refused.
    ReadOnly,
    /// Registrations carry their id and version (migrating from another registry); no
    /// compatibility checks.
    Import,
}

impl Mode {
    /// Parses a mode, ignoring case.
    pub fn parse(s: &str) -> Result<Mode, RegistryError> {
        match s.to_ascii_uppercase().as_str() {
            "READWRITE" => Ok(Mode::ReadWrite),
            "READONLY" => Ok(Mode::ReadOnly),
            "IMPORT" => Ok(Mode::Import),
            _ => Err(RegistryError::invalid_mode(s)),
        }
    }

    /// The registry's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::ReadWrite => "READWRITE",
            Mode::ReadOnly => "READONLY",
            Mode::Import => "IMPORT",
        }
    }
}

/// What a subject version key holds.
#[derive(Debug, Clone, Copy)]
struct VersionRecord {
    id: u32,
    deleted: bool,
}

/// The registry's sled database.
pub struct Store {
    db: sled::Db,
    schemas: sled::Tree,
    ids_by_text: sled::Tree,
    versions: sled::Tree,
    config: sled::Tree,
    modes: sled::Tree,
    write_lock: Mutex<()>,
}

const NEXT_ID: &str = "next_id";
/// The key of global settings in `config` and `modes` (subjects are never empty).
const GLOBAL: &str = "";
/// The level when none is configured, as in Confluent's registry.
const DEFAULT_LEVEL: Level = Level::Backward;

impl Store {
    /// Opens or creates the store in `dir`.
    pub fn open(dir: &Path) -> Result<Store, String> {
        let db = crate::state::open_sled(dir).map_err(|e| {
            format!(
                "cannot open the registry data dir {}: {e}; if another `sluice registry` uses \
                 it, stop that one or pass a different --data; if it is damaged, restore it \
                 from a backup or start with an empty one",
                dir.display()
            )
        })?;
        let tree = |name: &str| {
            db.open_tree(name)
                .map_err(|e| format!("registry data dir {}: {e}", dir.display()))
        };
        let store = Store {
            schemas: tree("schemas")?,
            ids_by_text: tree("ids_by_text")?,
            versions: tree("versions")?,
            config: tree("config")?,
            modes: tree("modes")?,
            db,
            write_lock: Mutex::new(()),
        };
        // Read every record once, so a damaged store fails at start, not on a request.
        for item in store.versions.iter() {
            let (k, v) = item.map_err(|e| format!("registry data dir {}: {e}", dir.display()))?;
            if k.len() < 5 || decode_version(&v).is_err() {
                return Err(format!(
                    "registry data dir {} holds an unreadable subject version; it is damaged: \
                     restore it from a backup or start with an empty one",
                    dir.display()
                ));
            }
        }
        Ok(store)
    }

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
        crate::state::flush(&self.db)
            .await
            .map_err(RegistryError::store)?;
        Ok(id)
    }

    /// The id of a schema text: the one it has, `wanted` (IMPORT), or a new one.
    fn id_for(
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

    fn next_id(&self) -> Result<u32, RegistryError> {
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

    fn find(
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
    fn live(&self, subject: &str) -> Result<Vec<(u32, Parsed)>, RegistryError> {
        self.versions(subject, false)?
            .into_iter()
            .map(|n| {
                let v = self.version(subject, VersionSel::Number(n), false)?;
                Ok((n, self.parse(&v.schema.schema, &v.schema.references)?))
            })
            .collect()
    }

    /// Parses a schema with the schemas its references name, transitively.
    fn parse(&self, text: &str, references: &[Reference]) -> Result<Parsed, RegistryError> {
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

    fn reference_texts(
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
        crate::state::flush(&self.db)
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
        crate::state::flush(&self.db)
            .await
            .map_err(RegistryError::store)?;
        Ok(v.version)
    }

    fn writable(&self, subject: &str) -> Result<(), RegistryError> {
        if self.mode(subject)? == Mode::ReadOnly {
            return Err(RegistryError::not_permitted(format!(
                "Subject {subject} is in read-only mode"
            )));
        }
        Ok(())
    }

    /// Refuses to delete a version another live schema references.
    fn unreferenced(&self, subject: &str, version: u32) -> Result<(), RegistryError> {
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

    fn mark_deleted(&self, subject: &str, version: u32) -> Result<(), RegistryError> {
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
    fn remove_version(&self, subject: &str, version: u32) -> Result<(), RegistryError> {
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

    /// The compatibility level of `subject` (`None`: the global one). Without a level of its
    /// own a subject has the global level if `default_to_global`, else 40408.
    pub fn level(&self, subject: &str, default_to_global: bool) -> Result<Level, RegistryError> {
        if let Some(level) = self.setting(&self.config, subject)? {
            return Level::parse(&level)
                .ok_or_else(|| RegistryError::damaged("a stored level is unknown"));
        }
        if subject != GLOBAL && !default_to_global {
            return Err(RegistryError::new(
                40408,
                format!("Subject '{subject}' does not have subject-level compatibility configured"),
            ));
        }
        Ok(match self.setting(&self.config, GLOBAL)? {
            Some(level) => Level::parse(&level)
                .ok_or_else(|| RegistryError::damaged("a stored level is unknown"))?,
            None => DEFAULT_LEVEL,
        })
    }

    /// Sets the level of `subject` (`""`: the global one).
    pub async fn set_level(&self, subject: &str, level: Level) -> Result<(), RegistryError> {
        self.put(&self.config, subject, level.as_str()).await
    }

    /// Removes `subject`'s own level; it follows the global one again. Returns the old one.
    pub async fn delete_level(&self, subject: &str) -> Result<Level, RegistryError> {
        let old = self.level(subject, false)?;
        self.config.remove(subject).map_err(RegistryError::store)?;
        crate::state::flush(&self.db)
            .await
            .map_err(RegistryError::store)?;
        Ok(old)
    }

    /// The mode of `subject` (`""`: the global one); subjects without one follow the global.
    pub fn mode(&self, subject: &str) -> Result<Mode, RegistryError> {
        for key in [subject, GLOBAL] {
            if let Some(m) = self.setting(&self.modes, key)? {
                return Mode::parse(&m)
                    .map_err(|_| RegistryError::damaged("a stored mode is unknown"));
            }
        }
        Ok(Mode::ReadWrite)
    }

    /// Sets the mode of `subject` (`""`: the global one).
    pub async fn set_mode(&self, subject: &str, mode: Mode) -> Result<(), RegistryError> {
        self.put(&self.modes, subject, mode.as_str()).await
    }

    fn setting(&self, tree: &sled::Tree, key: &str) -> Result<Option<String>, RegistryError> {
        tree.get(key)
            .map_err(RegistryError::store)?
            .map(|v| {
                String::from_utf8(v.to_vec())
                    .map_err(|_| RegistryError::damaged("a stored setting is not text"))
            })
            .transpose()
    }

    async fn put(&self, tree: &sled::Tree, key: &str, value: &str) -> Result<(), RegistryError> {
        tree.insert(key, value.as_bytes())
            .map_err(RegistryError::store)?;
        crate::state::flush(&self.db)
            .await
            .map_err(RegistryError::store)?;
        Ok(())
    }
}

/// The 409 of a registration the subject's level refuses, naming every failure.
fn incompatible(subject: &str, level: Level, failures: &[compat::Failure]) -> RegistryError {
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

fn subject_prefix(subject: &str) -> Vec<u8> {
    let mut k = subject.as_bytes().to_vec();
    k.push(0);
    k
}

/// Subject names cannot hold NUL, so `subject NUL version` keys sort by subject, then version.
fn version_key(subject: &str, version: u32) -> Vec<u8> {
    let mut k = subject_prefix(subject);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

fn split_version_key(k: &[u8]) -> Result<(String, u32), RegistryError> {
    let (subject, version) = k
        .split_at_checked(k.len().saturating_sub(5))
        .ok_or_else(|| RegistryError::damaged("a subject version key is too short"))?;
    let subject = String::from_utf8(subject.to_vec())
        .map_err(|_| RegistryError::damaged("a subject name is not UTF-8"))?;
    Ok((subject, decode_u32(&version[1..])?))
}

/// Key of a schema's id: its text and its references.
fn text_key(text: &str, references: &[Reference]) -> Vec<u8> {
    if references.is_empty() {
        return text.as_bytes().to_vec();
    }
    let refs = serde_json::to_string(references).expect("references serialize");
    format!("{text}\0{refs}").into_bytes()
}

fn encode_version(r: VersionRecord) -> Vec<u8> {
    let mut v = r.id.to_be_bytes().to_vec();
    v.push(u8::from(r.deleted));
    v
}

/// A version record: the id, then a deleted flag (stores written before soft deletes have
/// only the id).
fn decode_version(b: &[u8]) -> Result<VersionRecord, RegistryError> {
    let (id, deleted) = match b.len() {
        4 => (decode_u32(b)?, false),
        5 => (decode_u32(&b[..4])?, b[4] == 1),
        _ => {
            return Err(RegistryError::damaged(
                "a subject version record has the wrong size",
            ));
        }
    };
    Ok(VersionRecord { id, deleted })
}

fn decode_u32(b: &[u8]) -> Result<u32, RegistryError> {
    <[u8; 4]>::try_from(b)
        .map(u32::from_be_bytes)
        .map_err(|_| RegistryError::damaged("a stored id is not 4 bytes"))
}

/// Checks that `schema` is JSON and returns its compact text, so that the same schema written
/// with different whitespace gets the same id. (It is parsed as Avro with its references.)
fn normalise(schema: &str) -> Result<String, RegistryError> {
    let json: serde_json::Value =
        serde_json::from_str(schema).map_err(RegistryError::invalid_schema)?;
    Ok(json.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = r#"{"type":"record","name":"A","fields":[{"name":"x","type":"int"}]}"#;
    const B: &str = r#"{"type":"record","name":"A","fields":[{"name":"x","type":"long"}]}"#;
    /// Not readable as A's successor under BACKWARD: a new field without a default.
    const C: &str = r#"{"type":"record","name":"A","fields":[{"name":"x","type":"long"},{"name":"y","type":"string"}]}"#;

    fn input(schema: &str) -> SchemaInput {
        SchemaInput {
            schema: schema.into(),
            ..SchemaInput::default()
        }
    }

    #[tokio::test]
    async fn ids_are_stable_global_and_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            assert_eq!(s.register("t-value", &input(A)).await.unwrap(), 1);
            let spaced = A.replace(',', " , ");
            assert_eq!(s.register("t-value", &input(&spaced)).await.unwrap(), 1);
            assert_eq!(
                s.register("u-value", &input(A)).await.unwrap(),
                1,
                "ids are global"
            );
            assert_eq!(s.register("t-value", &input(B)).await.unwrap(), 2);
            assert_eq!(s.versions("t-value", false).unwrap(), vec![1, 2]);
            assert_eq!(s.lookup("t-value", &input(B), false).unwrap().version, 2);
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(
            s.version("t-value", VersionSel::Number(2), false)
                .unwrap()
                .id,
            2
        );
        assert_eq!(s.subjects(false).unwrap(), vec!["t-value", "u-value"]);
        let c = B.replace("long", "string");
        assert_eq!(
            s.register("v-value", &input(&c)).await.unwrap(),
            3,
            "the counter survived"
        );
        assert_eq!(
            s.uses_of(1, false).unwrap(),
            vec![("t-value".to_string(), 1), ("u-value".to_string(), 1)]
        );
    }

    #[tokio::test]
    async fn confluent_error_codes() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.register("x", &input("{")).await.unwrap_err().code, 42201);
        let bad = input(r#"{"type":"nope"}"#);
        assert_eq!(s.register("x", &bad).await.unwrap_err().code, 42201);
        assert_eq!(s.lookup("x", &input(A), false).unwrap_err().code, 40401);
        s.register("x", &input(A)).await.unwrap();
        assert_eq!(s.lookup("x", &input(B), false).unwrap_err().code, 40403);
        assert_eq!(
            s.version("x", VersionSel::Number(9), false)
                .unwrap_err()
                .code,
            40402
        );
        assert_eq!(
            s.version("y", VersionSel::Number(1), false)
                .unwrap_err()
                .code,
            40401
        );
        assert_eq!(s.schema(99).unwrap_err().code, 40403);
        assert_eq!(VersionSel::parse("0").unwrap_err().code, 42202);
        assert_eq!(Mode::parse("WRITEONLY").unwrap_err().code, 42204);
        assert_eq!(s.level("x", false).unwrap_err().code, 40408);
    }

    #[tokio::test]
    async fn incompatible_schemas_are_refused_with_the_level_and_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.register("t", &input(A)).await.unwrap();
        let e = s.register("t", &input(C)).await.unwrap_err();
        assert_eq!(e.code, 409);
        assert!(e.message.contains("BACKWARD"), "{e}");
        assert!(
            e.message.contains("READER_FIELD_MISSING_DEFAULT_VALUE"),
            "{e}"
        );
        assert_eq!(
            s.versions("t", true).unwrap(),
            vec![1],
            "nothing registered"
        );
        s.set_level("t", Level::None).await.unwrap();
        assert_eq!(s.register("t", &input(C)).await.unwrap(), 2);
        assert_eq!(s.delete_level("t").await.unwrap(), Level::None);
        assert_eq!(s.level("t", true).unwrap(), Level::Backward);
        s.set_mode("t", Mode::ReadOnly).await.unwrap();
        assert_eq!(s.register("t", &input(B)).await.unwrap_err().code, 42205);
    }

    #[tokio::test]
    async fn deletes_are_soft_then_permanent() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.set_level(GLOBAL, Level::None).await.unwrap();
        for schema in [A, B, C] {
            s.register("t", &input(schema)).await.unwrap();
        }
        let v = VersionSel::Number(2);
        assert_eq!(
            s.delete_version("t", v, true).await.unwrap_err().code,
            40407
        );
        assert_eq!(s.delete_version("t", v, false).await.unwrap(), 2);
        assert_eq!(
            s.delete_version("t", v, false).await.unwrap_err().code,
            40406
        );
        assert_eq!(s.versions("t", false).unwrap(), vec![1, 3]);
        assert_eq!(s.versions("t", true).unwrap(), vec![1, 2, 3]);
        assert_eq!(s.version("t", v, false).unwrap_err().code, 40402);
        assert_eq!(s.version("t", v, true).unwrap().id, 2);
        assert_eq!(s.delete_version("t", v, true).await.unwrap(), 2);
        assert_eq!(
            s.schema(2).unwrap_err().code,
            40403,
            "no version holds it any more"
        );
        assert_eq!(s.delete_subject("t", true).await.unwrap_err().code, 40405);
        assert_eq!(s.delete_subject("t", false).await.unwrap(), vec![1, 3]);
        assert_eq!(s.delete_subject("t", false).await.unwrap_err().code, 40404);
        assert!(s.subjects(false).unwrap().is_empty());
        assert_eq!(s.subjects(true).unwrap(), vec!["t"]);
        assert_eq!(s.delete_subject("t", true).await.unwrap(), vec![1, 3]);
        assert!(s.subjects(true).unwrap().is_empty());
        // A new id, never a reused one.
        assert_eq!(s.register("t", &input(B)).await.unwrap(), 4);
    }

    #[tokio::test]
    async fn references_resolve_and_protect_what_they_name() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let money = r#"{"type":"record","name":"Money","namespace":"m","fields":[{"name":"cents","type":"long"}]}"#;
        let order =
            r#"{"type":"record","name":"Order","fields":[{"name":"total","type":"m.Money"}]}"#;
        s.register("money", &input(money)).await.unwrap();
        assert_eq!(
            s.register("order", &input(order)).await.unwrap_err().code,
            42201
        );
        let with_ref = SchemaInput {
            references: vec![Reference {
                name: "m.Money".into(),
                subject: "money".into(),
                version: 1,
            }],
            ..input(order)
        };
        let id = s.register("order", &with_ref).await.unwrap();
        assert_eq!(s.schema(id).unwrap().references, with_ref.references);
        assert_eq!(s.referenced_by("money", 1).unwrap(), vec![id]);
        assert_eq!(
            s.delete_subject("money", false).await.unwrap_err().code,
            42206
        );
        assert_eq!(s.lookup("order", &with_ref, false).unwrap().id, id);
    }

    #[tokio::test]
    async fn a_damaged_data_dir_fails_at_open_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            s.register("t", &input(A)).await.unwrap();
            s.versions.insert(b"t\0\0\0\0\x09", b"xx".to_vec()).unwrap();
            s.db.flush().unwrap();
        }
        let e = Store::open(dir.path()).err().unwrap();
        assert!(e.contains("damaged") && e.contains("backup"), "{e}");
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let e = Store::open(&file).err().unwrap();
        assert!(e.contains("cannot open the registry data dir"), "{e}");
    }
}
