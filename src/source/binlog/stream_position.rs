//! Where a binlog stream is, apart from what its events mean (as Debezium's offset context):
//! the file and its sequence (versions are built from it), the GTID state reached, and the
//! open transaction's bookkeeping (its id, statement, thread and change counts).

use std::collections::HashMap;
use std::sync::Arc;

use super::BinlogError;
use crate::model::{
    Change, DomainGtids, GtidState, Origin, Position, TableId, TxPosition, binlog_file_sequence,
};

/// The stream's place and the transaction it is in.
pub(super) struct StreamPosition {
    file: Arc<str>,
    pub(super) file_seq: u32,
    pub(super) in_transaction: bool,
    gtid: Option<Arc<str>>,
    /// GTID state after the last transaction read, when known.
    pub(super) gtid_state: Option<GtidState>,
    /// The statement of the rows that follow (ANNOTATE_ROWS / ROWS_QUERY).
    pub(super) annotation: Option<Arc<str>>,
    /// Connection id of the transaction (MySQL's BEGIN names it).
    thread: Option<u32>,
    /// When the server committed the transaction, in microseconds (MySQL's GTID event).
    commit_us: Option<i64>,
    /// The transaction's id, once known (GTID, else the position of its first change).
    tx: Option<Arc<str>>,
    /// What the transaction's changes share, made at its first change from the fields above
    /// (which are set only through methods that drop it).
    origin: Option<Arc<Origin>>,
    /// Changes of the transaction so far, overall and per table.
    pub(super) tx_total: u64,
    pub(super) tx_tables: HashMap<TableId, u64>,
    /// Where the current transaction's group starts (its GTID event).
    pub(super) group_start: u32,
    /// The current transaction's GTID, added to the GTID state when it ends: a resume point
    /// taken inside it (an XA transaction's) must not count it.
    pub(super) pending_gtid: Option<PendingGtid>,
}

/// A GTID not yet part of the GTID state.
#[derive(Debug, Clone)]
pub(super) enum PendingGtid {
    MariaDb {
        domain: u32,
        server: u32,
        seq: u64,
    },
    MySql {
        uuid: [u8; 16],
        tag: String,
        gno: u64,
    },
}

impl StreamPosition {
    /// The place `start` names, with its GTID state.
    pub(super) fn new(start: &Position) -> Result<Self, BinlogError> {
        let mut at = StreamPosition {
            file: Arc::from(""),
            file_seq: 0,
            in_transaction: false,
            gtid: None,
            gtid_state: start.gtid.as_deref().and_then(GtidState::parse),
            annotation: None,
            thread: None,
            commit_us: None,
            tx: None,
            origin: None,
            tx_total: 0,
            tx_tables: HashMap::new(),
            group_start: 0,
            pending_gtid: None,
        };
        at.set_file(&start.file, start.pos)?;
        Ok(at)
    }

    pub(super) fn set_file(&mut self, file: &str, pos: u64) -> Result<(), BinlogError> {
        self.file_seq = binlog_file_sequence(file).ok_or_else(|| BinlogError::Event {
            position: Position::new(file, pos),
            message: format!(
                "binlog file name {file:?} does not end in a sequence number below 2^31, \
                 which change versions are built from"
            ),
        })?;
        self.file = Arc::from(file);
        self.origin = None;
        Ok(())
    }

    /// A transaction group starts (its GTID event): `gtid` names it, when the server sends
    /// GTIDs.
    pub(super) fn start_group(&mut self, gtid: Option<Arc<str>>, commit_us: Option<i64>) {
        self.tx = gtid.clone();
        self.gtid = gtid;
        self.commit_us = commit_us;
        self.origin = None;
    }

    /// The transaction's connection id is known (MySQL's BEGIN).
    pub(super) fn set_thread(&mut self, thread: u32) {
        self.thread = Some(thread);
        self.origin = None;
    }

    /// What the changes of the current transaction share; `event_start` names the
    /// transaction when no GTID does.
    pub(super) fn origin(&mut self, event_start: u32) -> Arc<Origin> {
        let origin = self.origin.get_or_insert_with(|| {
            let file = &self.file;
            let tx = self
                .tx
                .get_or_insert_with(|| Arc::from(format!("{file}:{event_start}")));
            Arc::new(Origin {
                file: file.clone(),
                gtid: self.gtid.clone(),
                thread: self.thread,
                commit_us: self.commit_us,
                transaction: Some(tx.clone()),
            })
        });
        origin.clone()
    }

    /// The binlog file being read.
    pub(super) fn file(&self) -> &Arc<str> {
        &self.file
    }

    /// The GTID of the transaction being read, or of the last one.
    #[cfg(test)]
    pub(super) fn gtid(&self) -> Option<&str> {
        self.gtid.as_deref()
    }

    /// When the transaction being read was committed, where the binlog says.
    pub(super) fn commit_us(&self) -> Option<i64> {
        self.commit_us
    }

    pub(super) fn position(&self, pos: u32) -> Position {
        Position::new(self.file.to_string(), u64::from(pos))
    }

    /// A resumable position: `pos` in the current file, with the GTID state reached.
    pub(super) fn checkpoint(&self, file: String, pos: u64) -> Position {
        Position {
            file,
            pos,
            gtid: self
                .gtid_state
                .as_ref()
                .filter(|s| !s.is_empty())
                .map(ToString::to_string),
        }
    }

    /// The transaction's group ends: its GTID joins the state, its bookkeeping resets.
    pub(super) fn end_group(&mut self) {
        match self.pending_gtid.take() {
            Some(PendingGtid::MariaDb {
                domain,
                server,
                seq,
            }) => match &mut self.gtid_state {
                Some(GtidState::MariaDb(d)) => d.set(domain, server, seq),
                state => {
                    let mut d = DomainGtids::default();
                    d.set(domain, server, seq);
                    *state = Some(GtidState::MariaDb(d));
                }
            },
            // Only a set known to be whole grows: a partial one would make a resume by GTID
            // ask the server for transactions long applied.
            Some(PendingGtid::MySql { uuid, tag, gno }) => {
                if let Some(GtidState::MySql(set)) = &mut self.gtid_state {
                    set.add(uuid, &tag, gno);
                }
            }
            None => {}
        }
        self.in_transaction = false;
        self.thread = None;
        self.annotation = None;
        self.tx = None;
        self.origin = None;
        self.tx_total = 0;
        self.tx_tables.clear();
    }

    /// Numbers `changes` within their transaction (Debezium's transaction block): overall
    /// and per table. Their origin names the transaction.
    pub(super) fn place_in_transaction(&mut self, changes: &mut [Change]) {
        let Some(first) = changes.first() else {
            return;
        };
        let table = &first.table.id;
        let per_table = match self.tx_tables.get_mut(table) {
            Some(n) => n,
            None => self.tx_tables.entry(table.clone()).or_default(),
        };
        for c in changes {
            self.tx_total += 1;
            *per_table += 1;
            c.source.transaction = Some(TxPosition {
                total_order: self.tx_total,
                collection_order: *per_table,
            });
        }
    }
}
