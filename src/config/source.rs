//! `[source]`: the database server and where the source keeps its positions.

use std::num::{NonZeroU16, NonZeroU32, NonZeroU64, NonZeroUsize};
use std::path::PathBuf;

use serde::Deserialize;

use super::{Problems, Secret};
use crate::model::TableId;

/// `[source]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SourceFile {
    host: String,
    #[serde(default = "default_mysql_port")]
    port: u16,
    user: String,
    #[serde(default)]
    password: Secret,
    server_id: u32,
    state_dir: PathBuf,
    #[serde(default)]
    resume_by: ResumeBy,
    #[serde(default)]
    tls: TlsMode,
    tls_ca_file: Option<PathBuf>,
    #[serde(default = "default_chunk_rows")]
    snapshot_chunk_rows: u64,
    #[serde(default)]
    snapshot_max_rows_per_sec: u64,
    #[serde(default = "default_snapshot_parallelism")]
    snapshot_parallelism: usize,
    #[serde(default)]
    include_query: bool,
    #[serde(default = "default_signal_table")]
    signal_table: String,
    #[serde(default)]
    initial_snapshot: InitialSnapshot,
    #[serde(default)]
    resnapshot_on_add_column: bool,
}

fn default_mysql_port() -> u16 {
    3306
}

fn default_chunk_rows() -> u64 {
    10_000
}

/// Half the cores, at most 4: each copying connection keeps about a core busy reading and
/// converting rows, and the publisher, librdkafka and often the database server need the rest.
fn default_snapshot_parallelism() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / 2).clamp(1, 4)
}

fn default_signal_table() -> String {
    "sluice.sluice_signal".into()
}

/// `[source]`: the database server and where the source keeps its positions.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: NonZeroU16,
    /// User with SELECT, REPLICATION SLAVE and REPLICATION CLIENT.
    pub user: String,
    /// That user's password.
    pub password: Secret,
    /// Replica server id Sluice registers with; unique among the server's replicas.
    pub server_id: NonZeroU32,
    /// Directory of the position store (sled).
    pub state_dir: PathBuf,
    /// How a restart finds its place in the binlog.
    pub resume_by: ResumeBy,
    /// Encryption of the connection to the server.
    pub tls: TlsMode,
    /// PEM file of the CA that signed the server's certificate (`verify_ca`,
    /// `verify_identity`); the system's roots are used when unset.
    pub tls_ca_file: Option<PathBuf>,
    /// Rows per snapshot chunk: the unit a restart continues after.
    pub snapshot_chunk_rows: NonZeroU64,
    /// Upper bound on the rows per second both snapshot kinds read, to spare a busy primary;
    /// `None` (0 in the file, the default) reads as fast as the pipeline takes them.
    pub snapshot_max_rows_per_sec: Option<NonZeroU64>,
    /// Tables the initial snapshot copies at once, each over a connection of its own.
    pub snapshot_parallelism: NonZeroUsize,
    /// Put the SQL statement behind each row into `source.query` (off by default: statements
    /// can hold data the column rules would mask). Needs MariaDB's
    /// `binlog_annotate_row_events` (on by default) or MySQL's `binlog_rows_query_log_events`.
    pub include_query: bool,
    /// The signal table (created by `sluice setup`): incremental snapshots write their
    /// watermarks to it, and rows inserted into it request snapshots. Without it, a table
    /// added to the config is snapshotted with the stream paused.
    pub signal_table: TableId,
    /// How the first run copies the tables.
    pub initial_snapshot: InitialSnapshot,
    /// After an `ALTER TABLE ... ADD` column of a captured table, copy the table again in
    /// windows (needs the signal table), so every document gets the new column, not only the
    /// rows that change afterwards.
    pub resnapshot_on_add_column: bool,
}

/// How the first run copies the tables before (or while) streaming.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InitialSnapshot {
    /// One consistent read at the binlog position the server reports for it (MariaDB's
    /// `binlog_snapshot_file/position`), then streaming from there. The fastest copy; the
    /// read is one long transaction.
    #[default]
    Consistent,
    /// In watermarked windows while streaming from the current position (DBLog): no long
    /// transaction, needs the signal table. Always used on MySQL, which reports no position
    /// for a consistent read.
    Incremental,
}

/// Whether and how the source connection is encrypted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// Plain TCP.
    #[default]
    Disabled,
    /// Encrypted, the server's certificate not checked (protects against eavesdropping only).
    Required,
    /// Encrypted, the certificate chain checked against the CA.
    VerifyCa,
    /// Encrypted, chain and host name checked.
    VerifyIdentity,
}

/// How the stream resumes from a stored checkpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResumeBy {
    /// Binlog file and offset: exact on the server that wrote them.
    #[default]
    Position,
    /// MariaDB GTID state (`@slave_connect_state`): survives purged or renumbered files of
    /// the same server lineage.
    Gtid,
}

impl SourceFile {
    /// The typed section. The connection settings are checked only when this process runs
    /// the source (`runs`); the snapshot and signal settings whenever the section is there.
    pub(super) fn build(self, runs: bool, p: &mut Problems) -> Option<SourceConfig> {
        if runs {
            if self.host.trim().is_empty() {
                p.push("`source.host` is empty");
            }
            if self.port == 0 {
                p.push("`source.port` must be 1..=65535");
            }
            if self.user.trim().is_empty() {
                p.push("`source.user` is empty");
            }
            if self.server_id == 0 {
                p.push("`source.server_id` must not be 0 (a replica needs a unique non-zero id)");
            }
            if self.state_dir.as_os_str().is_empty() {
                p.push("`source.state_dir` is empty");
            }
            if let Some(ca) = &self.tls_ca_file {
                if matches!(self.tls, TlsMode::Disabled | TlsMode::Required) {
                    p.push(
                        "`source.tls_ca_file` is set but `source.tls` does not verify \
                         certificates; set tls = \"verify_ca\" or \"verify_identity\"",
                    );
                } else if !ca.is_file() {
                    p.push(format!(
                        "`source.tls_ca_file`: {} is not a readable file",
                        ca.display()
                    ));
                }
            }
        }
        let chunk_rows = NonZeroU64::new(self.snapshot_chunk_rows);
        if chunk_rows.is_none() {
            p.push("`source.snapshot_chunk_rows` must be at least 1");
        }
        let snapshot_parallelism = NonZeroUsize::new(self.snapshot_parallelism);
        if snapshot_parallelism.is_none() {
            p.push("`source.snapshot_parallelism` must be at least 1");
        }
        let signal_table = TableId::parse(&self.signal_table);
        if signal_table.is_none() {
            p.push(format!(
                "`source.signal_table` {:?} is not of the form database.table",
                self.signal_table
            ));
        }
        Some(SourceConfig {
            host: self.host,
            port: NonZeroU16::new(self.port)?,
            user: self.user,
            password: self.password,
            server_id: NonZeroU32::new(self.server_id)?,
            state_dir: self.state_dir,
            resume_by: self.resume_by,
            tls: self.tls,
            tls_ca_file: self.tls_ca_file,
            snapshot_chunk_rows: chunk_rows?,
            snapshot_max_rows_per_sec: NonZeroU64::new(self.snapshot_max_rows_per_sec),
            snapshot_parallelism: snapshot_parallelism?,
            include_query: self.include_query,
            signal_table: signal_table?,
            initial_snapshot: self.initial_snapshot,
            resnapshot_on_add_column: self.resnapshot_on_add_column,
        })
    }
}
