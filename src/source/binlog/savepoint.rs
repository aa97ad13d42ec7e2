//! Rollbacks the binlog holds. When a transaction that also changed a non-transactional table
//! rolls back to a savepoint, the server cannot drop the undone changes from the binlog: it
//! logs them, then `ROLLBACK TO name`, and the transaction goes on; rolled back to a savepoint
//! set before anything was logged, it logs the changes then `ROLLBACK`, and the rest of the
//! transaction as a group of its own. (With row-based logging the non-transactional table's
//! own changes go out as groups of their own, ending in COMMIT.) So changes are held until
//! their group ends: after a SAVEPOINT, and, on MariaDB, from the start of a group whose GTID
//! event does not flag it transactional. A ROLLBACK TO drops the ones held since its
//! savepoint, a ROLLBACK all the held ones: they never happened.

use std::collections::HashMap;

use crate::model::Change;

/// Changes a group not flagged transactional holds before it streams them (without a
/// savepoint): about 3 MB of typical rows.
const GROUP_HOLD_LIMIT: usize = 10_000;

/// The savepoints of the transaction being read and the changes held since the first one.
#[derive(Debug, Default)]
pub struct Savepoints {
    /// Savepoints, oldest first: name and the number of held changes when it was set; `None`
    /// for one set again later. RELEASE SAVEPOINT is not logged and ORMs name every savepoint
    /// anew, so this only grows within a transaction: lookups go through `by_name`.
    marks: Vec<(Option<String>, usize)>,
    /// Index in `marks` of each live savepoint.
    by_name: HashMap<String, usize>,
    /// The group's changes are held from its start.
    whole_group: bool,
    held: Vec<Change>,
}

impl Savepoints {
    /// SAVEPOINT `name`: a savepoint of the same name moves here.
    pub fn set(&mut self, name: String) {
        if let Some(old) = self.by_name.insert(name.clone(), self.marks.len()) {
            self.marks[old].0 = None;
        }
        self.marks.push((Some(name), self.held.len()));
    }

    /// A group that may end in ROLLBACK starts: its changes are held from here.
    pub fn hold_group(&mut self) {
        self.whole_group = true;
    }

    /// Holds `changes` while the group's are held; gives them back if they are not.
    pub fn hold(&mut self, mut changes: Vec<Change>) -> Option<Vec<Change>> {
        if self.marks.is_empty() && !self.whole_group {
            return Some(changes);
        }
        if self.marks.is_empty() && self.held.len() + changes.len() > GROUP_HOLD_LIMIT {
            // Most such groups are one statement on a non-transactional table, whose bulk
            // writes must not be held whole; the rollback that holding serves comes with
            // small transactions. Past the limit the group streams as before.
            self.whole_group = false;
            self.held.append(&mut changes);
            return Some(std::mem::take(&mut self.held));
        }
        self.held.extend(changes);
        None
    }

    /// ROLLBACK TO `name`: drops the changes held since that savepoint and the savepoints set
    /// after it; the savepoint itself stays. An error names a savepoint this transaction did
    /// not set in the binlog read.
    pub fn rollback_to(&mut self, name: &str) -> Result<(), String> {
        let Some(&i) = self.by_name.get(name) else {
            return Err(format!(
                "ROLLBACK TO SAVEPOINT {name} names no savepoint of its transaction in the \
                 binlog, so the changes it undid cannot be told apart: this is a bug in Sluice's \
                 reading of savepoint names; report it with this position"
            ));
        };
        self.held.truncate(self.marks[i].1);
        for (gone, _) in self.marks.drain(i + 1..) {
            if let Some(gone) = gone {
                self.by_name.remove(&gone);
            }
        }
        Ok(())
    }

    /// The group ends in a commit: the changes held, in binlog order; nothing is held after.
    pub fn take(&mut self) -> Vec<Change> {
        self.marks.clear();
        self.by_name.clear();
        self.whole_group = false;
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Op, SourceInfo, TableId, TableSchema, Version};
    use std::sync::Arc;

    fn change(pos: u32) -> Change {
        Change {
            table: Arc::new(TableSchema {
                id: TableId::new("d", "t"),
                columns: vec![],
                key: vec![],
            }),
            op: Op::Create,
            before: None,
            after: Some(vec![]),
            version: Version::at(1, pos),
            source: SourceInfo::at("binlog.000001", u64::from(pos)),
        }
    }

    fn positions(changes: &[Change]) -> Vec<u64> {
        changes.iter().map(|c| c.source.pos).collect()
    }

    #[test]
    fn rolled_back_changes_are_dropped_and_the_rest_kept_in_order() {
        let mut s = Savepoints::default();
        assert_eq!(
            s.hold(vec![change(1)]).map(|c| positions(&c)),
            Some(vec![1])
        );
        s.set("a".into());
        assert!(s.hold(vec![change(2)]).is_none());
        s.set("b".into());
        assert!(s.hold(vec![change(3), change(4)]).is_none());
        s.rollback_to("b").unwrap();
        assert!(s.hold(vec![change(5)]).is_none());
        s.rollback_to("a").unwrap();
        assert!(s.rollback_to("b").is_err(), "b went with the rollback to a");
        assert!(s.hold(vec![change(6)]).is_none());
        // `a` set again moves to here: a rollback to it keeps 6.
        s.set("a".into());
        assert!(s.hold(vec![change(7)]).is_none());
        s.rollback_to("a").unwrap();
        assert_eq!(positions(&s.take()), [6]);
        assert_eq!(
            s.hold(vec![change(8)]).map(|c| positions(&c)),
            Some(vec![8])
        );
        // A group held from its start: a ROLLBACK (take, dropped) leaves nothing held after.
        s.hold_group();
        assert!(s.hold(vec![change(9)]).is_none());
        assert_eq!(positions(&s.take()), [9]);
        assert!(s.hold(vec![change(10)]).is_some());
        // Past the limit, a group held from its start streams what it held, in order.
        s.hold_group();
        let many = |from: u32| (from..from + 6_000).map(change).collect::<Vec<_>>();
        assert!(s.hold(many(100)).is_none());
        let out = s.hold(many(6_100)).expect("released past the limit");
        assert_eq!(positions(&out), (100..12_100).collect::<Vec<u64>>());
        assert!(s.hold(vec![change(1)]).is_some());
    }
}
