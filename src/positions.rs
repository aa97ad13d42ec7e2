//! The source's durable state in sled: the binlog position to resume from, which tables have
//! been snapshotted, and each table's schema history. Positions and snapshots are written only
//! from acknowledged checkpoints (see `publish::acker`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::{
    Checkpoint, Position, SnapshotProgress, TableId, TableSchema, Version, WindowProgress,
};
use crate::storage::{flush, open_sled};

/// Why the state store failed.
#[derive(Debug, thiserror::Error)]
pub enum PositionStoreError {
    /// The directory could not be opened: another process holds it, or it cannot be written.
    #[error("cannot open the state store at {path}: {source}; {}", open_hint(.source))]
    Open {
        /// The directory.
        path: PathBuf,
        /// sled's reason.
        source: sled::Error,
    },
    /// A read or write failed.
    #[error("state store at {path}: {source}; {}", disk_hint(.source))]
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

/// What to do about a state directory that cannot be opened.
fn open_hint(e: &sled::Error) -> &'static str {
    match e {
        sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
            "if another sluice process uses this `source.state_dir`, stop it or give this one its own directory"
        }
        _ => disk_hint(e),
    }
}

/// What to do about a state directory that cannot be written.
fn disk_hint(e: &sled::Error) -> &'static str {
    use std::io::ErrorKind;
    match e {
        sled::Error::Io(io) if io.kind() == ErrorKind::StorageFull => {
            "the disk is full: free space there (no position was stored past what Kafka acknowledged), then restart"
        }
        sled::Error::Io(io)
            if matches!(
                io.kind(),
                ErrorKind::ReadOnlyFilesystem | ErrorKind::PermissionDenied
            ) =>
        {
            "the directory is not writable: give the Sluice user write access to it, or set `source.state_dir` to a writable directory"
        }
        _ => "check the disk and the directory's permissions, then restart",
    }
}

/// Key of the resume position.
const POSITION: &str = "position";
/// Prefix of per-table snapshot records.
const SNAPSHOT: &str = "snapshot/";
/// Prefix of per-table progress of unfinished snapshots.
const PROGRESS: &str = "progress/";

/// Prefix of per-table progress of incremental snapshots.
const WINDOWS: &str = "windows/";
/// Prefix of the ids of finished incremental snapshots, so a signal read again after a
/// restart does not copy the table again.
const SIGNAL_DONE: &str = "signal-done/";

/// Prefix of schema-history records: `schema/<db.table>\0<version, big-endian>`. Identifiers
/// cannot hold NUL, so one table's records never interleave with another's.
const SCHEMA: &str = "schema/";

/// One entry of a table's schema history.
#[derive(Debug, Serialize, Deserialize)]
struct SchemaRecord {
    /// The binlog event of the first change with this schema.
    position: Position,
    schema: TableSchema,
}

/// A table's finished snapshot.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotRecord {
    position: Position,
}

/// The source's positions, in a sled database of its own.
pub struct PositionStore {
    db: sled::Db,
    path: PathBuf,
}

impl PositionStore {
    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: &Path) -> Result<PositionStore, PositionStoreError> {
        let db = open_sled(dir).map_err(|source| PositionStoreError::Open {
            path: dir.to_owned(),
            source,
        })?;
        Ok(PositionStore {
            db,
            path: dir.to_owned(),
        })
    }

    /// The position streaming resumes from, if any was stored.
    pub fn position(&self) -> Result<Option<Position>, PositionStoreError> {
        self.get(POSITION)
    }

    /// Whether `table` has a finished snapshot.
    pub fn is_snapshotted(&self, table: &TableId) -> Result<bool, PositionStoreError> {
        Ok(self
            .get::<SnapshotRecord>(&format!("{SNAPSHOT}{table}"))?
            .is_some())
    }

    /// How far the unfinished snapshot of `table` got, if one was begun.
    pub fn progress(
        &self,
        table: &TableId,
    ) -> Result<Option<SnapshotProgress>, PositionStoreError> {
        self.get(&format!("{PROGRESS}{table}"))
    }

    /// Every unfinished incremental snapshot, by table.
    pub fn windows(&self) -> Result<Vec<(TableId, WindowProgress)>, PositionStoreError> {
        self.by_table(WINDOWS)
    }

    /// Every unfinished snapshot, by table.
    pub fn snapshots_begun(&self) -> Result<Vec<(TableId, SnapshotProgress)>, PositionStoreError> {
        self.by_table(PROGRESS)
    }

    /// Every table with a finished snapshot.
    pub fn snapshotted(&self) -> Result<Vec<TableId>, PositionStoreError> {
        Ok(self
            .by_table::<SnapshotRecord>(SNAPSHOT)?
            .into_iter()
            .map(|(t, _)| t)
            .collect())
    }

    /// The records under `prefix`, keyed `<prefix><db.table>`.
    fn by_table<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Vec<(TableId, T)>, PositionStoreError> {
        self.db
            .scan_prefix(prefix)
            .map(|item| {
                let (key, bytes) = item.map_err(|e| self.io(e))?;
                let key = String::from_utf8_lossy(&key);
                let table = TableId::parse(&key[prefix.len()..])
                    .ok_or_else(|| self.corrupt(&key, "not a table name".into()))?;
                Ok((table, self.parse(&key, &bytes)?))
            })
            .collect()
    }

    /// Whether the incremental snapshot requested with `id` finished.
    pub fn signal_done(&self, id: &str) -> Result<bool, PositionStoreError> {
        self.db
            .contains_key(format!("{SIGNAL_DONE}{id}"))
            .map_err(|e| self.io(e))
    }

    /// Stores checkpoints, in order, in one write, durably (one fsync) before returning.
    pub async fn save(&self, checkpoints: &[Checkpoint]) -> Result<(), PositionStoreError> {
        let mut batch = sled::Batch::default();
        for checkpoint in checkpoints {
            self.add(&mut batch, checkpoint)?;
        }
        self.db.apply_batch(batch).map_err(|e| self.io(e))?;
        flush(&self.db).await.map_err(|e| self.io(e))?;
        Ok(())
    }

    fn add(
        &self,
        batch: &mut sled::Batch,
        checkpoint: &Checkpoint,
    ) -> Result<(), PositionStoreError> {
        match checkpoint {
            Checkpoint::Stream(position) => batch.insert(POSITION, to_json(position)),
            Checkpoint::Snapshot { tables, position } => {
                for t in tables {
                    let record = SnapshotRecord {
                        position: position.clone(),
                    };
                    batch.insert(format!("{SNAPSHOT}{t}").as_bytes(), to_json(&record));
                    batch.remove(format!("{PROGRESS}{t}").as_bytes());
                }
                // Tables added to a running setup are snapshotted later than the stored
                // position; streaming must still resume from the older position.
                if self.position()?.is_none() {
                    batch.insert(POSITION, to_json(position));
                }
            }
            Checkpoint::Chunk { table, progress } => {
                batch.insert(format!("{PROGRESS}{table}").as_bytes(), to_json(progress))
            }
            Checkpoint::Window { table, progress } => {
                batch.insert(format!("{WINDOWS}{table}").as_bytes(), to_json(progress))
            }
            Checkpoint::WindowsDone {
                table,
                id,
                position,
            } => {
                let record = SnapshotRecord {
                    position: position.clone(),
                };
                batch.insert(format!("{SNAPSHOT}{table}").as_bytes(), to_json(&record));
                batch.remove(format!("{WINDOWS}{table}").as_bytes());
                batch.insert(format!("{SIGNAL_DONE}{id}").as_bytes(), &[]);
            }
        }
        Ok(())
    }

    /// Records that `schema` is the table's shape from the change at `version` (read at
    /// `position`) on. Recording it again (a replay after a restart) changes nothing.
    pub fn record_schema(
        &self,
        version: Version,
        position: &Position,
        schema: &TableSchema,
    ) -> Result<(), PositionStoreError> {
        let record = SchemaRecord {
            position: position.clone(),
            schema: schema.clone(),
        };
        self.db
            .insert(schema_key(&schema.id, version), to_json(&record))
            .map_err(|e| self.io(e))?;
        Ok(())
    }

    /// The table's shape at `version`: the last one recorded at or before it.
    pub fn schema_at(
        &self,
        table: &TableId,
        version: Version,
    ) -> Result<Option<TableSchema>, PositionStoreError> {
        let first = schema_key(table, Version::at(0, 0));
        let Some(found) = self
            .db
            .range(first..=schema_key(table, version))
            .next_back()
        else {
            return Ok(None);
        };
        let (key, bytes) = found.map_err(|e| self.io(e))?;
        let record: SchemaRecord = self.parse(&String::from_utf8_lossy(&key), &bytes)?;
        Ok(Some(record.schema))
    }

    /// Every recorded schema of `table` with the binlog position it took effect at, oldest
    /// first.
    pub fn schema_history(
        &self,
        table: &TableId,
    ) -> Result<Vec<(Position, TableSchema)>, PositionStoreError> {
        let prefix = schema_key(table, Version::at(0, 0));
        let prefix = &prefix[..prefix.len() - 8];
        self.db
            .scan_prefix(prefix)
            .map(|item| {
                let (key, bytes) = item.map_err(|e| self.io(e))?;
                let r: SchemaRecord = self.parse(&String::from_utf8_lossy(&key), &bytes)?;
                Ok((r.position, r.schema))
            })
            .collect()
    }

    fn get<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, PositionStoreError> {
        let Some(bytes) = self.db.get(key).map_err(|e| self.io(e))? else {
            return Ok(None);
        };
        self.parse(key, &bytes).map(Some)
    }

    fn parse<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
        bytes: &[u8],
    ) -> Result<T, PositionStoreError> {
        serde_json::from_slice(bytes).map_err(|e| self.corrupt(key, e.to_string()))
    }

    fn corrupt(&self, key: &str, message: String) -> PositionStoreError {
        PositionStoreError::Corrupt {
            path: self.path.clone(),
            key: key.to_string(),
            message,
        }
    }

    fn io(&self, source: sled::Error) -> PositionStoreError {
        PositionStoreError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

fn schema_key(table: &TableId, version: Version) -> Vec<u8> {
    let mut key = format!("{SCHEMA}{table}\0").into_bytes();
    key.extend_from_slice(&version.get().to_be_bytes());
    key
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
            let state = PositionStore::open(dir.path()).unwrap();
            assert_eq!(state.position().unwrap(), None);
            state
                .save(&[Checkpoint::Snapshot {
                    tables: vec![orders.clone()],
                    position: pos("binlog.000001", 400),
                }])
                .await
                .unwrap();
            state
                .save(&[Checkpoint::Stream(pos("binlog.000002", 900))])
                .await
                .unwrap();
            state
                .save(&[Checkpoint::Snapshot {
                    tables: vec![items.clone()],
                    position: pos("binlog.000003", 100),
                }])
                .await
                .unwrap();
        }
        let state = PositionStore::open(dir.path()).unwrap();
        assert_eq!(state.position().unwrap(), Some(pos("binlog.000002", 900)));
        assert!(state.is_snapshotted(&orders).unwrap());
        assert!(state.is_snapshotted(&items).unwrap());
        assert!(!state.is_snapshotted(&TableId::new("shop", "x")).unwrap());
    }

    #[test]
    fn the_schema_history_answers_for_any_version() {
        use crate::model::{Column, ColumnType};
        let dir = tempfile::tempdir().unwrap();
        let state = PositionStore::open(dir.path()).unwrap();
        let t = TableId::new("shop", "orders");
        let schema = |cols: usize| TableSchema {
            id: t.clone(),
            columns: (0..cols)
                .map(|i| Column::new(format!("c{i}"), ColumnType::Set(["a".into()].into()), i > 0))
                .collect(),
            key: vec![0],
        };
        // A table whose name extends this one's must not leak into its history.
        let mut other = schema(5);
        other.id = TableId::new("shop", "orders2");
        state
            .record_schema(Version::at(1, 50), &pos("binlog.000001", 40), &other)
            .unwrap();
        assert_eq!(state.schema_at(&t, Version::at(9, 0)).unwrap(), None);
        state
            .record_schema(Version::at(1, 100), &pos("binlog.000001", 90), &schema(1))
            .unwrap();
        state
            .record_schema(Version::at(2, 7), &pos("binlog.000002", 4), &schema(2))
            .unwrap();
        assert_eq!(state.schema_at(&t, Version::at(1, 99)).unwrap(), None);
        assert_eq!(
            state.schema_at(&t, Version::at(1, 100)).unwrap(),
            Some(schema(1))
        );
        assert_eq!(
            state.schema_at(&t, Version::at(2, 6)).unwrap(),
            Some(schema(1))
        );
        assert_eq!(
            state.schema_at(&t, Version::at(7, 0)).unwrap(),
            Some(schema(2))
        );
        let history = state.schema_history(&t).unwrap();
        assert_eq!(
            history,
            vec![
                (pos("binlog.000001", 90), schema(1)),
                (pos("binlog.000002", 4), schema(2))
            ]
        );
    }

    #[test]
    fn an_unusable_state_path_is_named_with_what_to_check() {
        // A second process on one directory is tested with two processes (tests/errors.rs):
        // sled's lock is re-entrant within one.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let e = PositionStore::open(&file).err().unwrap().to_string();
        let want = format!("cannot open the state store at {}: ", file.display());
        assert!(e.starts_with(&want), "{e}");
        assert!(
            e.ends_with("; check the disk and the directory's permissions, then restart"),
            "{e}"
        );
    }
}
