//! Stage 1, the source: MySQL/MariaDB -> typed row changes.
//!
//! On start it checks the server, snapshots the configured tables that have no snapshot yet,
//! then streams the binlog from the stored position (or from the snapshot's point on the first
//! run). Its only output is [`crate::model::SourceEvent`]s on a channel: row changes in binlog order and
//! checkpoints that are safe to resume from once everything before them is acknowledged.

pub mod binlog;
pub mod charset;
mod error;
pub mod filter;
pub mod incremental;
pub mod mysql;
mod output;
pub mod progress;
mod run;
pub mod select;
pub mod snapshot;
mod startup;
pub mod stream;
pub mod throttle;

pub use error::SourceError;
pub use output::{Capture, Emitter};
pub use run::run;
