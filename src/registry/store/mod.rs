//! Durable registry state in sled: schemas by id, subjects' versions (soft-deletable), the id
//! counter, and compatibility levels and modes, global and per subject.
//!
//! Ids are global, as in Confluent's registry: the same schema (text and references) gets the
//! same id under every subject, a new schema gets a new id, and an id is never handed out
//! twice: registrations are serialised and the counter is flushed before the id is returned.

mod delete;
mod keys;
mod read;
mod register;
mod settings;
#[cfg(test)]
mod tests;
mod types;

use std::path::Path;

use tokio::sync::Mutex;

use super::compat::Level;
use keys::decode_version;

pub use types::{
    Mode, Reference, RegistryError, SchemaInput, StoredSchema, SubjectVersion, VersionSel,
};

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

pub(super) const NEXT_ID: &str = "next_id";
/// The key of global settings in `config` and `modes` (subjects are never empty).
pub(super) const GLOBAL: &str = "";
/// The level when none is configured, as in Confluent's registry.
pub(super) const DEFAULT_LEVEL: Level = Level::Backward;

impl Store {
    /// Opens or creates the store in `dir`.
    pub fn open(dir: &Path) -> Result<Store, String> {
        let db = crate::storage::open_sled(dir).map_err(|e| {
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
}
