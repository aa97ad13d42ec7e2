//! The source's durable state in sled: the binlog position to resume from and which tables
//! have been snapshotted. Written only from acknowledged checkpoints (see `publish::acker`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::{Checkpoint, Position, TableId};

/// Why the state store failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The directory could not be opened, usually because another process holds it.
    #[error(
        "cannot open the state store at {path}: {source}; if another sluice process uses this \
         `source.state_dir`, stop it or give this one its own directory"
    )]
    Open {
        /// The directory.
        path: PathBuf,
        /// sled's reason.
        source: sled::Error,
    },
    /// A read or write failed.
    #[error("state store at {path}: {source}; check the disk, then restart")]
    Io {
        /// The directory.
        path: PathBuf,
        /// sled's reason.
        source: sled::Error,
    },
    /// A stored value is not what this version of Sluice writes.
    #[error(
        "state store at {path}: key {key:?} holds an unreadable value ({message}); it was not written by this version of Sluice"
    )]
    Corrupt {
        /// The directory.
        path: PathBuf,
        /// The key.
        key: String,
        /// The parse error.
        message: String,
    },
}

/// Key of the resume position.
const POSITION: &str = "position";
/// Prefix of per-table snapshot records.
const SNAPSHOT: &str = "snapshot/";

/// A table's finished snapshot.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotRecord {
    position: Position,
}

/// The source's positions, in a sled database of its own.
pub struct State {
    db: sled::Db,
    path: PathBuf,
}

impl State {
    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: &Path) -> Result<State, StateError> {
        let db = sled::open(dir).map_err(|source| StateError::Open {
            path: dir.to_owned(),
            source,
        })?;
        Ok(State {
            db,
            path: dir.to_owned(),
        })
    }

    /// The position streaming resumes from, if any was stored.
    pub fn position(&self) -> Result<Option<Position>, StateError> {
        self.get(POSITION)
    }

    /// Whether `table` has a finished snapshot.
    pub fn is_snapshotted(&self, table: &TableId) -> Result<bool, StateError> {
        Ok(self
            .get::<SnapshotRecord>(&format!("{SNAPSHOT}{table}"))?
            .is_some())
    }

    /// Stores a checkpoint durably (fsync) before returning.
    pub async fn save(&self, checkpoint: &Checkpoint) -> Result<(), StateError> {
        let mut batch = sled::Batch::default();
        match checkpoint {
            Checkpoint::Stream(position) => batch.insert(POSITION, to_json(position)),
            Checkpoint::Snapshot { tables, position } => {
                for t in tables {
                    let record = SnapshotRecord {
                        position: position.clone(),
                    };
                    batch.insert(format!("{SNAPSHOT}{t}").as_bytes(), to_json(&record));
                }
                // Tables added to a running setup are snapshotted later than the stored
                // position; streaming must still resume from the older position.
                if self.position()?.is_none() {
                    batch.insert(POSITION, to_json(position));
                }
            }
        }
        self.db.apply_batch(batch).map_err(|e| self.io(e))?;
        self.db.flush_async().await.map_err(|e| self.io(e))?;
        Ok(())
    }

    fn get<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StateError> {
        let Some(bytes) = self.db.get(key).map_err(|e| self.io(e))? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StateError::Corrupt {
                path: self.path.clone(),
                key: key.to_string(),
                message: e.to_string(),
            })
    }

    fn io(&self, source: sled::Error) -> StateError {
        StateError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("state records serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(file: &str, pos: u64) -> Position {
        Position::new(file, pos)
    }

    #[tokio::test]
    async fn snapshots_of_added_tables_keep_the_stream_position() {
        let dir = tempfile::tempdir().unwrap();
        let orders = TableId::new("shop", "orders");
        let items = TableId::new("shop", "items");
        {
            let state = State::open(dir.path()).unwrap();
            assert_eq!(state.position().unwrap(), None);
            state
                .save(&Checkpoint::Snapshot {
                    tables: vec![orders.clone()],
                    position: pos("binlog.000001", 400),
                })
                .await
                .unwrap();
            state
                .save(&Checkpoint::Stream(pos("binlog.000002", 900)))
                .await
                .unwrap();
            state
                .save(&Checkpoint::Snapshot {
                    tables: vec![items.clone()],
                    position: pos("binlog.000003", 100),
                })
                .await
                .unwrap();
        }
        let state = State::open(dir.path()).unwrap();
        assert_eq!(state.position().unwrap(), Some(pos("binlog.000002", 900)));
        assert!(state.is_snapshotted(&orders).unwrap());
        assert!(state.is_snapshotted(&items).unwrap());
        assert!(!state.is_snapshotted(&TableId::new("shop", "x")).unwrap());
    }

    #[test]
    fn a_second_process_gets_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let _first = State::open(dir.path()).unwrap();
        // sled locks the directory per process; within one process the lock is re-entrant, so
        // this only checks the message shape of an open failure on an unusable path.
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let e = State::open(&file).err().unwrap();
        assert!(e.to_string().contains("state_dir"), "{e}");
    }
}
