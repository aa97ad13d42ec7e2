//! The decisions a start makes before streaming, from what is stored and what the server
//! offers; the I/O around them stays in [`super::run`].

use super::SourceError;
use crate::model::{TableId, WindowProgress};

/// What a start does with one captured table.
#[derive(Debug, PartialEq, Eq)]
pub enum TableStart {
    /// Snapshotted before, or already queued for windows: nothing to copy.
    Copied,
    /// Copied in windows while streaming goes on (an incremental snapshot).
    InWindows,
    /// Copied by a blocking snapshot before streaming (continuing stored progress if any).
    Snapshot {
        /// A table added to a setup that has streamed, without a signal table: streaming
        /// waits for its copy, which users are told.
        pauses_streaming: bool,
    },
}

/// The start of a table: `copied` (snapshotted or queued for windows), whether a position is
/// stored (the setup has streamed, or streams from now on), whether a signal table exists
/// (windows need it), whether a blocking snapshot of it stored progress (which it continues).
pub fn table_start(copied: bool, streamed: bool, signal: bool, progress: bool) -> TableStart {
    if copied {
        TableStart::Copied
    } else if streamed && signal && !progress {
        TableStart::InWindows
    } else {
        TableStart::Snapshot {
            pauses_streaming: streamed && !progress,
        }
    }
}

/// Unfinished incremental snapshots, by table.
pub type StoredWindows = Vec<(TableId, WindowProgress)>;

/// Splits stored unfinished incremental snapshots into those of captured tables, which
/// resume, and the others, which are left as they are.
pub fn resumable_windows(
    stored: StoredWindows,
    captured: &[TableId],
) -> (StoredWindows, StoredWindows) {
    stored.into_iter().partition(|(t, _)| captured.contains(t))
}

/// A first run that copies in windows (asked for, or a server that reports no position for a
/// consistent read) needs the signal table for its watermarks.
pub fn check_windowed_first_run(signal: bool, signal_table: &TableId) -> Result<(), SourceError> {
    if signal {
        return Ok(());
    }
    Err(SourceError::Precondition(format!(
        "the first snapshot is to run in windows while streaming (source.initial_snapshot = \
         \"incremental\", or a MySQL server, which reports no position for a consistent read), \
         and that needs the signal table {signal_table}: create it with `sluice setup`"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_start_follows_from_what_is_stored() {
        use TableStart::*;
        // (copied, streamed, signal, progress) -> start
        let cases = [
            ((true, true, true, true), Copied),
            ((true, false, false, false), Copied),
            // First run, nothing stored: a blocking snapshot, which pauses nothing.
            (
                (false, false, true, false),
                Snapshot {
                    pauses_streaming: false,
                },
            ),
            (
                (false, false, false, false),
                Snapshot {
                    pauses_streaming: false,
                },
            ),
            // A blocking snapshot cut short continues as one, signal table or not.
            (
                (false, false, true, true),
                Snapshot {
                    pauses_streaming: false,
                },
            ),
            (
                (false, true, true, true),
                Snapshot {
                    pauses_streaming: false,
                },
            ),
            // A table added to a setup that has streamed: windows with a signal table...
            ((false, true, true, false), InWindows),
            // ...else a blocking snapshot that holds the stream up.
            (
                (false, true, false, false),
                Snapshot {
                    pauses_streaming: true,
                },
            ),
            (
                (false, true, false, true),
                Snapshot {
                    pauses_streaming: false,
                },
            ),
        ];
        for ((copied, streamed, signal, progress), want) in cases {
            assert_eq!(
                table_start(copied, streamed, signal, progress),
                want,
                "copied {copied} streamed {streamed} signal {signal} progress {progress}"
            );
        }
    }

    #[test]
    fn windows_of_tables_no_longer_captured_are_left() {
        let progress = |id: &str| WindowProgress {
            id: id.into(),
            filter: None,
            last_key: vec![],
            rows: 0,
            windows: 0,
        };
        let (a, b) = (TableId::new("d", "a"), TableId::new("d", "b"));
        let (resume, left) = resumable_windows(
            vec![(a.clone(), progress("1")), (b.clone(), progress("2"))],
            std::slice::from_ref(&a),
        );
        assert_eq!(resume, [(a, progress("1"))]);
        assert_eq!(left, [(b, progress("2"))]);
    }

    #[test]
    fn a_windowed_first_run_needs_the_signal_table() {
        let signal = TableId::new("sluice", "sluice_signal");
        assert!(check_windowed_first_run(true, &signal).is_ok());
        let e = check_windowed_first_run(false, &signal).unwrap_err();
        assert!(e.to_string().contains("sluice setup"), "{e}");
    }
}
