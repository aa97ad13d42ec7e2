//! What an interrupted verify continues from: per table a JSON file of its progress and a file
//! of fingerprints of the document ids it has compared, under `<state_dir>/verify/`. The
//! fingerprints let the pass over the index find documents without rows with memory that
//! does not grow with the table (they are read back a slice at a time).

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Difference, VerifyError};
use crate::model::{Position, TableId, TableSchema, Value};
use crate::source::select::key_range_condition;

/// Fingerprints held in memory at once while the index is scanned (8 bytes each); a table
/// with more is scanned once per slice of this many.
const SLICE: u64 = 2_000_000;

/// A table's verify progress.
#[derive(Debug, Serialize, Deserialize)]
pub struct Progress {
    /// The `--where` condition it runs under (a different one starts over).
    pub filter: Option<String>,
    /// The key's columns it pages by (a table keyed differently since starts over).
    #[serde(default)]
    pub key: Vec<String>,
    /// The binlog position when the table's verify began: documents written by later changes
    /// reflect rows that existed after it.
    pub start: Position,
    /// The key of the last row compared.
    pub last_key: Vec<Value>,
    /// Rows compared.
    pub rows: u64,
    /// Differences by kind, and the first ones listed.
    pub counts: super::Counts,
    /// The differences listed so far.
    pub listed: Vec<Difference>,
    /// Bytes of the fingerprint file that belong to the compared rows.
    pub seen_bytes: u64,
    /// What `--repair` is to re-read.
    #[serde(default)]
    pub reread: Reread,
}

/// Key ranges (inclusive, in key order) holding the rows found missing or different.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Reread {
    ranges: Vec<(Vec<Value>, Vec<Value>)>,
    /// Whether the last range ends at the last row compared, so the next chunk's range may
    /// continue it.
    open: bool,
    /// Rows found missing or different.
    pub rows: u64,
}

/// Ranges named in one condition, and its largest size (the signal table's `data` is a
/// TEXT of 64 KiB, JSON around it included); past either, the ranges are merged into one over
/// them all (rows in between are re-read needlessly, but the signal stays small).
const MAX_RANGES: usize = 100;
const MAX_CONDITION_BYTES: usize = 32 * 1024;

impl Reread {
    /// Adds the rows of a chunk of `len` rows found missing or different: `(place in the
    /// chunk, key)`.
    pub fn add(&mut self, mut rows: Vec<(usize, Vec<Value>)>, len: usize) {
        rows.sort_unstable_by_key(|(at, _)| *at);
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
            self.open = false;
            return;
        };
        self.rows += rows.len() as u64;
        let ends_at_last = last.0 + 1 == len;
        match self.ranges.last_mut() {
            Some(range) if self.open && first.0 == 0 => range.1 = last.1.clone(),
            _ => self.ranges.push((first.1.clone(), last.1.clone())),
        }
        self.open = ends_at_last;
    }

    /// The SQL condition matching every range, its literals escaped for a server with
    /// `no_backslash_escapes`; `None` when there is none.
    pub fn condition(&self, table: &TableSchema, no_backslash_escapes: bool) -> Option<String> {
        let (first, last) = (self.ranges.first()?, self.ranges.last()?);
        let all = key_range_condition(table, &self.ranges, no_backslash_escapes);
        if self.ranges.len() <= MAX_RANGES && all.len() <= MAX_CONDITION_BYTES {
            return Some(all);
        }
        let one = [(first.0.clone(), last.1.clone())];
        Some(key_range_condition(table, &one, no_backslash_escapes))
    }
}

/// The files of one table's verify.
pub struct TableState {
    progress_path: PathBuf,
    seen_path: PathBuf,
    seen: File,
    /// Held (locked) while this verify runs: a second one of the same table would share the
    /// files.
    _lock: File,
}

impl TableState {
    /// The state of `table` under `state_dir`, and the progress of an interrupted run with the
    /// same `filter` and `key` columns, if there is one.
    pub fn open(
        state_dir: &Path,
        table: &TableId,
        filter: Option<&str>,
        key: &[String],
    ) -> Result<(TableState, Option<Progress>), VerifyError> {
        let dir = state_dir.join("verify");
        let io = |what: &str, e: std::io::Error| {
            VerifyError::State(format!("{what} {}: {e}", dir.display()))
        };
        fs::create_dir_all(&dir).map_err(|e| io("creating", e))?;
        let lock_path = dir.join(format!("{table}.lock"));
        let lock = File::create(&lock_path).map_err(|e| io("creating a file in", e))?;
        if lock.try_lock().is_err() {
            return Err(VerifyError::Busy(format!(
                "another `sluice verify` of {table} is running (it holds {}); wait for it to end",
                lock_path.display()
            )));
        }
        let progress_path = dir.join(format!("{table}.json"));
        let seen_path = dir.join(format!("{table}.seen"));
        let progress = fs::read(&progress_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Progress>(&b).ok())
            .filter(|p| p.filter.as_deref() == filter && p.key == key);
        let seen = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&seen_path)
            .map_err(|e| io("opening a file in", e))?;
        // Fingerprints written after the last saved progress belong to rows compared again.
        seen.set_len(progress.as_ref().map_or(0, |p| p.seen_bytes))
            .map_err(|e| io("truncating a file in", e))?;
        Ok((
            TableState {
                progress_path,
                seen_path,
                seen,
                _lock: lock,
            },
            progress,
        ))
    }

    /// Adds the fingerprints of compared document ids; returns the file's new length.
    pub fn add_seen<'a>(&mut self, ids: impl Iterator<Item = &'a str>) -> Result<u64, VerifyError> {
        let bytes: Vec<u8> = ids.flat_map(|id| fingerprint(id).to_le_bytes()).collect();
        self.seen
            .write_all(&bytes)
            .and_then(|()| self.seen.metadata())
            .map(|m| m.len())
            .map_err(|e| VerifyError::State(format!("writing {}: {e}", self.seen_path.display())))
    }

    /// Stores `progress` (replacing the file whole, so an interruption leaves the old or the
    /// new one).
    pub fn save(&self, progress: &Progress) -> Result<(), VerifyError> {
        let tmp = self.progress_path.with_extension("json.tmp");
        let text = serde_json::to_vec(progress).expect("progress serializes");
        fs::write(&tmp, text)
            .and_then(|()| fs::rename(&tmp, &self.progress_path))
            .map_err(|e| {
                VerifyError::State(format!("writing {}: {e}", self.progress_path.display()))
            })
    }

    /// How many slices the fingerprints are read in.
    pub fn slices(&self, seen_bytes: u64) -> u64 {
        (seen_bytes / 8).div_ceil(SLICE).max(1)
    }

    /// The sorted fingerprints of slice `slice` of `slices`.
    pub fn slice(&self, slice: u64, slices: u64) -> Result<Vec<u64>, VerifyError> {
        let err = |e: std::io::Error| {
            VerifyError::State(format!("reading {}: {e}", self.seen_path.display()))
        };
        let mut reader = BufReader::new(File::open(&self.seen_path).map_err(err)?);
        let mut out = Vec::new();
        let mut buf = [0u8; 8];
        loop {
            match reader.read_exact(&mut buf) {
                Ok(()) => {
                    let fp = u64::from_le_bytes(buf);
                    if fp % slices == slice {
                        out.push(fp);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(err(e)),
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Removes the table's files once its verify is complete.
    pub fn finish(self) -> Result<(), VerifyError> {
        for path in [&self.progress_path, &self.seen_path] {
            fs::remove_file(path).or_else(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Ok(()),
                _ => Err(VerifyError::State(format!(
                    "removing {}: {e}",
                    path.display()
                ))),
            })?;
        }
        Ok(())
    }
}

/// A document id's 64-bit FNV-1a hash: stable across builds, so a resumed run reads the
/// fingerprints an earlier binary wrote.
pub fn fingerprint(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_read_back_in_slices_that_cover_all() {
        let dir = tempfile::tempdir().unwrap();
        let table = TableId::new("d", "t");
        let (mut state, progress) = TableState::open(dir.path(), &table, None, &[]).unwrap();
        assert!(progress.is_none());
        let ids: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
        let len = state.add_seen(ids.iter().map(String::as_str)).unwrap();
        assert_eq!(len, 8000);
        let mut all: Vec<u64> = (0..3).flat_map(|s| state.slice(s, 3).unwrap()).collect();
        all.sort_unstable();
        let mut expected: Vec<u64> = ids.iter().map(|i| fingerprint(i)).collect();
        expected.sort_unstable();
        assert_eq!(all, expected);
    }

    #[test]
    fn rows_to_reread_become_ranges_that_continue_across_chunks() {
        let key = |i| vec![Value::Int(i)];
        let mut r = Reread::default();
        r.add(vec![(9, key(10)), (3, key(4))], 10); // ends at the chunk's last row
        r.add(vec![(0, key(11)), (2, key(13))], 10); // continues it
        r.add(vec![], 10);
        r.add(vec![(0, key(31))], 10); // after a chunk without: a new range
        assert_eq!(r.rows, 5);
        assert_eq!(
            r.ranges,
            [(key(4), key(13)), (key(31), key(31))],
            "{:?}",
            r.ranges
        );
    }

    #[test]
    fn an_interrupted_run_continues_with_its_own_filter_and_key_only() {
        let dir = tempfile::tempdir().unwrap();
        let table = TableId::new("d", "t");
        let key = vec!["id".to_string()];
        let (mut state, _) = TableState::open(dir.path(), &table, Some("id > 5"), &key).unwrap();
        let second = TableState::open(dir.path(), &table, Some("id > 5"), &key);
        assert!(
            matches!(&second, Err(VerifyError::Busy(m)) if m.contains("another")),
            "two verifies of one table at once"
        );
        let seen_bytes = state.add_seen(["1", "2"].into_iter()).unwrap();
        state.add_seen(["3"].into_iter()).unwrap(); // compared, progress not saved yet
        let progress = Progress {
            filter: Some("id > 5".into()),
            key: key.clone(),
            start: Position::new("binlog.000001", 4),
            last_key: vec![Value::Int(2)],
            rows: 2,
            counts: super::super::Counts::default(),
            listed: Vec::new(),
            seen_bytes,
            reread: Reread::default(),
        };
        state.save(&progress).unwrap();
        drop(state);
        let (state, resumed) = TableState::open(dir.path(), &table, Some("id > 5"), &key).unwrap();
        assert_eq!(resumed.unwrap().last_key, vec![Value::Int(2)]);
        let fingerprints = state.slice(0, 1).unwrap().len();
        assert_eq!(fingerprints, 2, "the unsaved fingerprint is dropped");
        drop(state);
        let rekeyed = ["a".to_string(), "b".to_string()];
        let (state, other) =
            TableState::open(dir.path(), &table, Some("id > 5"), &rekeyed).unwrap();
        assert!(other.is_none(), "another key starts over");
        drop(state);
        let (_, other) = TableState::open(dir.path(), &table, None, &key).unwrap();
        assert!(other.is_none(), "another filter starts over");
    }
}
