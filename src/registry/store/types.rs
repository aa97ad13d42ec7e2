//! What the store's callers pass and get back, and its errors in Confluent's codes.

use serde::{Deserialize, Serialize};

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
    pub(super) fn new(code: u32, message: impl Into<String>) -> Self {
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
    pub(super) fn store(e: impl std::fmt::Display) -> Self {
        Self::new(50001, format!("Error in the backend data store: {e}"))
    }

    pub(super) fn damaged(what: &str) -> Self {
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
