//! XA transactions. Both servers log the prepared part of an XA transaction as a group of its
//! own (its rows, ending in XA_PREPARE) and its outcome, XA COMMIT or XA ROLLBACK, as a later
//! group, with other transactions committed in between. So:
//! - the prepared part's changes are held until XA COMMIT, and dropped at XA ROLLBACK: they
//!   never happened if it rolls back;
//! - while a prepared part is held, the position a restart may resume from stays before it,
//!   so a restart reads it again (the transactions after it are sent again, harmless by
//!   version);
//! - the changes take versions at the commit, where they became visible: a snapshot window
//!   that read the rows before the commit (the prepared rows were locked, the window saw the
//!   old values) must lose to them. Changes of different rows share the commit's offset; a
//!   row changed several times counts up from it, within the commit group's bytes.

use std::collections::HashMap;

use super::event::Xid;
use crate::model::{Change, Position, Version};

/// The prepared part of an XA transaction.
#[derive(Debug)]
struct Prepared {
    xid: Xid,
    /// Where to resume to read it again: its group's start, GTID state before it.
    hold: Position,
    changes: Vec<Change>,
}

/// The XA transactions a reader is in the middle of.
#[derive(Debug, Default)]
pub struct XaTransactions {
    /// The prepared part being read.
    open: Option<Prepared>,
    /// Prepared parts awaiting their outcome, oldest first.
    prepared: Vec<Prepared>,
    /// XA COMMITs of transactions prepared before the stream started (their changes were not
    /// read), and the last one's id.
    unseen: (u64, Option<Xid>),
}

impl XaTransactions {
    /// A prepared part starts; `hold` is where a restart must resume to read it.
    pub fn start(&mut self, xid: Xid, hold: Position) {
        self.open = Some(Prepared {
            xid,
            hold,
            changes: Vec::new(),
        });
    }

    /// Whether a prepared part is being read (its changes are to be held).
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Holds changes of the prepared part being read; gives them back if none is.
    pub fn hold(&mut self, changes: Vec<Change>) -> Option<Vec<Change>> {
        match &mut self.open {
            Some(p) => {
                p.changes.extend(changes);
                None
            }
            None => Some(changes),
        }
    }

    /// XA_PREPARE: the prepared part ends and waits for its outcome.
    pub fn prepared(&mut self) {
        if let Some(p) = self.open.take() {
            self.prepared.push(p);
        }
    }

    /// A one-phase commit ends the part being read: its changes, to commit as they are.
    pub fn commit_open(&mut self) -> Vec<Change> {
        self.open.take().map(|p| p.changes).unwrap_or_default()
    }

    /// XA COMMIT: the prepared part's changes, or `None` (counted) if it was prepared before
    /// the stream started.
    pub fn commit(&mut self, xid: &Xid) -> Option<Vec<Change>> {
        match self.prepared.iter().position(|p| p.xid == *xid) {
            Some(i) => Some(self.prepared.remove(i).changes),
            None => {
                self.unseen = (self.unseen.0 + 1, Some(xid.clone()));
                None
            }
        }
    }

    /// XA ROLLBACK: the prepared part never happened.
    pub fn rollback(&mut self, xid: &Xid) {
        self.prepared.retain(|p| p.xid != *xid);
        // Rolled back before its PREPARE (MySQL logs such a part when it wrote a
        // non-transactional table): the open part goes too, or the next transaction's
        // changes would be held in it.
        if self.open.as_ref().is_some_and(|p| p.xid == *xid) {
            self.open = None;
        }
    }

    /// The earliest position a restart may resume from while prepared parts are pending.
    pub fn resume_hold(&self) -> Option<&Position> {
        self.prepared.first().map(|p| &p.hold)
    }

    /// XA COMMITs whose prepared part came before the stream's start, and the last one's id.
    pub fn unseen(&self) -> (u64, Option<&Xid>) {
        (self.unseen.0, self.unseen.1.as_ref())
    }
}

/// Gives committed XA changes versions at their commit group (`start..end` in the file with
/// sequence `file_seq`): the group's start for each row's first change, counting up for a row
/// changed again. `Err` when a row changes more often than the group has bytes.
pub fn versions_at_commit(
    changes: &mut [Change],
    file_seq: u32,
    start: u32,
    end: u32,
) -> Result<(), String> {
    let mut seen: HashMap<String, u32> = HashMap::new();
    for c in changes.iter_mut() {
        let row = c.after.as_ref().or(c.before.as_ref());
        let key = match row {
            Some(row) => format!(
                "{}\u{1}{:?}",
                c.table.id,
                c.table.key_values(row).collect::<Vec<_>>()
            ),
            None => c.table.id.to_string(),
        };
        let n = seen.entry(key).or_insert(0);
        let offset = start + *n;
        if offset >= end {
            return Err(format!(
                "XA transaction changed one row of {} more than {} times, more than its commit \
                 has bytes to give the changes distinct versions",
                c.table.id,
                end - start
            ));
        }
        *n += 1;
        c.version = Version::at(file_seq, offset);
    }
    Ok(())
}
