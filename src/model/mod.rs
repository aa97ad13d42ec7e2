//! The vocabulary every stage shares and none of them owns: tables, typed values, row changes,
//! binlog positions, versions and checkpoints.

mod change;
mod checkpoint;
mod decimal;
mod gtid;
mod handoff;
mod position;
mod table;
pub mod time;
mod value;

pub use change::{Change, Op, Origin, SourceEvent, SourceInfo, TxPosition};
pub use checkpoint::{Checkpoint, SnapshotProgress, WindowProgress};
pub use decimal::Decimal;
pub use gtid::{DomainGtids, GtidSet, GtidState, format_uuid};
pub use handoff::{Closed, EventReceiver, EventSender, handoff};
pub use position::{Position, Version, binlog_file_sequence};
pub use table::{Column, ColumnType, TableId, TableSchema, column_indices};
pub use value::{Row, Value, fill, row_bytes, text_from_vec, utf8};
