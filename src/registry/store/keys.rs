//! How records are laid out in the trees: keys and encoded values.

use super::{Reference, RegistryError};

/// What a subject version key holds.
#[derive(Debug, Clone, Copy)]
pub(super) struct VersionRecord {
    pub(super) id: u32,
    pub(super) deleted: bool,
}

pub(super) fn subject_prefix(subject: &str) -> Vec<u8> {
    let mut k = subject.as_bytes().to_vec();
    k.push(0);
    k
}

/// Subject names cannot hold NUL, so `subject NUL version` keys sort by subject, then version.
pub(super) fn version_key(subject: &str, version: u32) -> Vec<u8> {
    let mut k = subject_prefix(subject);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

pub(super) fn split_version_key(k: &[u8]) -> Result<(String, u32), RegistryError> {
    let (subject, version) = k
        .split_at_checked(k.len().saturating_sub(5))
        .ok_or_else(|| RegistryError::damaged("a subject version key is too short"))?;
    let subject = String::from_utf8(subject.to_vec())
        .map_err(|_| RegistryError::damaged("a subject name is not UTF-8"))?;
    Ok((subject, decode_u32(&version[1..])?))
}

/// Key of a schema's id: its text and its references.
pub(super) fn text_key(text: &str, references: &[Reference]) -> Vec<u8> {
    if references.is_empty() {
        return text.as_bytes().to_vec();
    }
    let refs = serde_json::to_string(references).expect("references serialize");
    format!("{text}\0{refs}").into_bytes()
}

pub(super) fn encode_version(r: VersionRecord) -> Vec<u8> {
    let mut v = r.id.to_be_bytes().to_vec();
    v.push(u8::from(r.deleted));
    v
}

/// A version record: the id, then a deleted flag (stores written before soft deletes have
/// only the id).
pub(super) fn decode_version(b: &[u8]) -> Result<VersionRecord, RegistryError> {
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

pub(super) fn decode_u32(b: &[u8]) -> Result<u32, RegistryError> {
    <[u8; 4]>::try_from(b)
        .map(u32::from_be_bytes)
        .map_err(|_| RegistryError::damaged("a stored id is not 4 bytes"))
}

/// Checks that `schema` is JSON and returns its compact text, so that the same schema written
/// with different whitespace gets the same id. (It is parsed as Avro with its references.)
pub(super) fn normalise(schema: &str) -> Result<String, RegistryError> {
    let json: serde_json::Value =
        serde_json::from_str(schema).map_err(RegistryError::invalid_schema)?;
    Ok(json.to_string())
}
