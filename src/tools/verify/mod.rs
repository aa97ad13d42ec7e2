//! `sluice verify`: compares each captured table with its index while streaming goes on.
//!
//! The table is read chunk by chunk in key order; each chunk's documents are made by the
//! pipeline's own steps ([`expect`]) and fetched by id. Documents whose rows no longer exist
//! are found by a pass over the index, checked against fingerprints of the ids compared. A
//! difference is only reported once the pipeline has passed the binlog position where it was
//! seen and the document's version shows no newer change ([`settle`]), so a table under
//! continuous writes shows none. `--repair` re-reads differing rows as incremental-snapshot
//! windows and deletes documents without rows with versioned deletes.

mod compare;
mod expect;
mod index;
mod settle;
mod state;

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use mysql_async::Conn;
use mysql_async::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::load::document::Options;
use crate::model::{Position, Row, TableId, TableSchema, Value};
use crate::source::SourceError;
use crate::source::filter::ColumnFilter;
use crate::source::incremental;
use crate::source::mysql::{self, query_error};
use crate::source::progress::Progress as Bar;
use crate::source::select::{chunk_query, convert, keys_query, keyset_able};
use crate::source::throttle::Throttle;
use crate::wire::topic;
use expect::{Expected, Expecter};
use index::Index;
use settle::{Pipeline, version_at};
use state::TableState;

/// Rounds of re-reading a differing row before it counts as still changing.
const ROUNDS: usize = 5;
/// Extra documents checked in one request.
const BATCH: usize = 1000;

/// Why verify could not check.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The config lacks what verify needs.
    #[error("{0}")]
    Config(String),
    /// The database refused or failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The index server refused or failed.
    #[error("index server: {0}")]
    Index(String),
    /// Kafka could not tell the loader's progress.
    #[error("{0}; check `kafka.brokers` and that the broker runs")]
    Kafka(String),
    /// How far the pipeline got cannot be told.
    #[error("{0}")]
    Pipeline(String),
    /// A table cannot be compared.
    #[error("{0}")]
    Table(String),
    /// The progress files could not be written or read.
    #[error("verify state: {0}; check that the state directory is writable")]
    State(String),
    /// Another verify of the table runs (it holds the table's lock file).
    #[error("{0}")]
    Busy(String),
}

impl VerifyError {
    fn table(e: impl std::fmt::Display) -> VerifyError {
        VerifyError::Table(e.to_string())
    }
}

/// What `sluice verify` is asked.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Only this table (it must be captured).
    pub table: Option<TableId>,
    /// Only rows matching this SQL condition; documents without rows are then not looked for.
    pub filter: Option<String>,
    /// Re-read differing rows through the pipeline and delete documents without rows.
    pub repair: bool,
    /// At most this many rows read per second.
    pub max_rows_per_sec: Option<NonZeroU64>,
    /// Rows compared per chunk.
    pub chunk_rows: u64,
    /// How long to wait for the pipeline to pass a position before a row counts as unsettled.
    pub patience: Duration,
    /// Differences listed per table (all are counted).
    pub max_listed: usize,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            table: None,
            filter: None,
            repair: false,
            max_rows_per_sec: None,
            chunk_rows: 1000,
            patience: Duration::from_secs(120),
            max_listed: 100,
        }
    }
}

/// A kind of difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A row without its document.
    Missing,
    /// A document that differs from its row.
    Different,
    /// A document without its row.
    Extra,
    /// A row that kept changing, or a pipeline that did not catch up: not judged.
    Unsettled,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Missing => "missing",
            Kind::Different => "different",
            Kind::Extra => "extra",
            Kind::Unsettled => "unsettled",
        })
    }
}

/// One difference.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Difference {
    /// What differs.
    pub kind: Kind,
    /// The document id.
    pub id: String,
    /// The differing columns (`different` only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
}

/// Differences by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Rows without documents.
    pub missing: u64,
    /// Documents that differ from their rows.
    pub different: u64,
    /// Documents without rows.
    pub extra: u64,
    /// Not judged.
    pub unsettled: u64,
}

impl Counts {
    fn add(&mut self, kind: Kind) {
        match kind {
            Kind::Missing => self.missing += 1,
            Kind::Different => self.different += 1,
            Kind::Extra => self.extra += 1,
            Kind::Unsettled => self.unsettled += 1,
        }
    }

    /// Differences found (unsettled rows are not differences).
    pub fn differences(&self) -> u64 {
        self.missing + self.different + self.extra
    }
}

/// What `--repair` did to a table.
#[derive(Debug, Default, Serialize)]
pub struct Repair {
    /// Rows asked to be read again through the pipeline.
    pub rows_requested: u64,
    /// The snapshot signals written for them.
    pub signals: Vec<String>,
    /// Documents without rows deleted.
    pub deleted: u64,
}

/// One table's result.
#[derive(Debug, Serialize)]
pub struct TableReport {
    /// `db.table`.
    pub table: String,
    /// Its index.
    pub index: String,
    /// Rows compared.
    pub rows: u64,
    /// Documents looked at by the pass over the index (`None` under `--where`).
    pub documents_scanned: Option<u64>,
    /// Differences by kind.
    #[serde(flatten)]
    pub counts: Counts,
    /// The first differences.
    pub differences: Vec<Difference>,
    /// Whether it continued an interrupted run.
    pub resumed: bool,
    /// What `--repair` did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repair: Option<Repair>,
    /// Seconds taken.
    pub seconds: f64,
    /// Why the table could not be checked, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why the index was not scanned for documents without rows, if it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_scanned: Option<String>,
}

impl TableReport {
    fn failed(table: &TableId, error: String) -> TableReport {
        TableReport {
            table: table.to_string(),
            index: String::new(),
            rows: 0,
            documents_scanned: None,
            counts: Counts::default(),
            differences: Vec::new(),
            resumed: false,
            repair: None,
            seconds: 0.0,
            error: Some(error),
            not_scanned: None,
        }
    }

    /// The summary line.
    pub fn summary(&self) -> String {
        if let Some(e) = &self.error {
            return format!("{}: not checked: {e}", self.table);
        }
        let c = &self.counts;
        let scanned = match (self.documents_scanned, &self.not_scanned) {
            (Some(n), _) => format!("{n} documents scanned"),
            (None, Some(why)) => format!("index not scanned ({why})"),
            (None, None) => "index not scanned".into(),
        };
        let mut line = format!(
            "{}: {} rows compared, {scanned}; {} missing, {} different, {} extra, {} unsettled ({:.1} s{})",
            self.table,
            self.rows,
            c.missing,
            c.different,
            c.extra,
            c.unsettled,
            self.seconds,
            if self.resumed { ", resumed" } else { "" }
        );
        if let Some(r) = &self.repair {
            line.push_str(&format!(
                "; repair: {} rows re-read through the pipeline, {} documents deleted",
                r.rows_requested, r.deleted
            ));
        }
        line
    }
}

/// The whole result.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Per table.
    pub tables: Vec<TableReport>,
}

impl Report {
    /// 0 = equal, 1 = differences, 2 = some rows or tables could not be judged.
    pub fn exit_code(&self) -> i32 {
        if self.tables.iter().any(|t| t.counts.differences() > 0) {
            1
        } else if self
            .tables
            .iter()
            .any(|t| t.counts.unsettled > 0 || t.error.is_some())
        {
            2
        } else {
            0
        }
    }
}

/// Verifies the tables `config` captures (or `options.table`), calling `found` for each
/// difference as it is confirmed. `None` if `shutdown` interrupted it (progress is kept).
pub async fn verify(
    config: &Config,
    options: &VerifyOptions,
    shutdown: &CancellationToken,
    found: &mut dyn FnMut(&TableId, &Difference),
) -> Result<Option<Report>, VerifyError> {
    let need = |what: &str| {
        VerifyError::Config(format!(
            "verify compares the database with the index: the config needs `[{what}]`"
        ))
    };
    let source = config.source.as_ref().ok_or_else(|| need("source"))?;
    let es = config
        .elasticsearch
        .as_ref()
        .ok_or_else(|| need("elasticsearch"))?;
    let mut conn = mysql::connect(source).await?;
    conn.query_drop("SET SESSION time_zone = '+00:00'")
        .await
        .map_err(|e| query_error("setting the session time zone", e))?;
    // The source's sessions read a repair signal's literals under the server's sql_mode.
    let sql_mode: Option<String> = conn
        .query_first("SELECT @@GLOBAL.sql_mode")
        .await
        .map_err(|e| query_error("reading the server's sql_mode", e))?;
    let no_backslash_escapes = sql_mode.is_some_and(|m| m.contains("NO_BACKSLASH_ESCAPES"));
    let captured = mysql::resolve_tables(&mut conn, &config.tables, &config.exclude_tables).await?;
    let tables = match &options.table {
        Some(t) if !captured.contains(t) => {
            return Err(VerifyError::Config(format!(
                "{t} is not captured by this config (`tables`, `exclude_tables`)"
            )));
        }
        Some(t) => vec![t.clone()],
        None => captured.clone(),
    };
    // Indexes several captured tables write to (`loader.index` without `{db}`): a document of
    // one table is no extra of another.
    let document_options = Options::new(&config.loader);
    let mut per_index: HashMap<String, usize> = HashMap::new();
    for t in &captured {
        *per_index.entry(document_options.index_name(t)).or_default() += 1;
    }
    let mut run = Run {
        conn,
        no_backslash_escapes,
        index: Index::new(es)?,
        pipeline: Pipeline::new(config, source.state_dir.clone()),
        config,
        options,
        throttle: Throttle::new(options.max_rows_per_sec),
        shutdown,
        found,
    };
    let mut keys = config.keys.clone();
    let mut reports = Vec::new();
    for t in &tables {
        let shared = per_index[&document_options.index_name(t)] > 1;
        // A table that cannot be checked is reported as such; the others still are.
        let result = match mysql::captured_schema(&mut run.conn, t, &mut keys).await {
            Ok(schema) => run.table(Arc::new(schema), shared).await,
            Err(e) => Err(e.into()),
        };
        match result {
            Ok(Some(r)) => reports.push(r),
            Ok(None) => return Ok(None),
            Err(e) => {
                let error = crate::with_causes(&e);
                tracing::error!(table = %t, %error, "verify: the table could not be checked");
                reports.push(TableReport::failed(t, error));
            }
        }
    }
    Ok(Some(Report { tables: reports }))
}

/// A row compared and found different, to be compared again.
struct Suspect {
    /// Its place in the chunk.
    at: usize,
    key: Vec<Value>,
    id: String,
    /// The document at the previous look: `None` if missing, else its version.
    last: Option<u64>,
    /// The row's document as read at the previous round (`Some(None)`: no row), `None` before
    /// the first round. A verdict needs the same row twice: a transaction is in the binlog
    /// (and may be indexed) a moment before other sessions see it committed, so one read
    /// can be older than the document.
    last_row: Option<Option<Json>>,
}

struct Run<'a> {
    conn: Conn,
    /// The server reads backslashes in literals as characters (its `sql_mode`).
    no_backslash_escapes: bool,
    index: Index,
    pipeline: Pipeline,
    config: &'a Config,
    options: &'a VerifyOptions,
    throttle: Throttle,
    shutdown: &'a CancellationToken,
    found: &'a mut dyn FnMut(&TableId, &Difference),
}

/// One table's verify in progress.
struct TableRun {
    exp: Expecter,
    index: String,
    topic: String,
    progress: state::Progress,
    repair: Option<Repair>,
    extras_to_delete: Vec<(String, u64)>,
}

impl Run<'_> {
    async fn table(
        &mut self,
        schema: Arc<TableSchema>,
        shared_index: bool,
    ) -> Result<Option<TableReport>, VerifyError> {
        let started = Instant::now();
        let id = schema.id.clone();
        if !keyset_able(&schema) {
            return Err(VerifyError::Table(format!(
                "{id}: its key has a type that cannot be paged in key order (ENUM, SET, FLOAT, \
                 DOUBLE, BIT, JSON, GEOMETRY), so it cannot be compared chunk by chunk"
            )));
        }
        let source = self.config.source.as_ref().expect("checked by verify");
        let prefix = &self.config.kafka.topic_prefix;
        let exp = Expecter::new(
            schema.clone(),
            ColumnFilter::new(&self.config.columns),
            prefix,
            Options::new(&self.config.loader),
        )?;
        let filter = self.options.filter.as_deref();
        let key: Vec<String> = schema
            .key
            .iter()
            .map(|&i| schema.columns[i].name.clone())
            .collect();
        let (mut state, resumed) = TableState::open(&source.state_dir, &id, filter, &key)?;
        let was_resumed = resumed.is_some();
        let progress = match resumed {
            Some(p) => p,
            None => state::Progress {
                filter: filter.map(str::to_string),
                key,
                start: mysql::current_position(&mut self.conn).await?,
                last_key: Vec::new(),
                rows: 0,
                counts: Counts::default(),
                listed: Vec::new(),
                seen_bytes: 0,
                reread: state::Reread::default(),
            },
        };
        let estimate = mysql::estimated_rows(&mut self.conn, &id).await;
        let mut bar = Bar::start("verify", &id, estimate, progress.rows);
        let mut t = TableRun {
            index: exp.index(),
            topic: topic::table_topic(prefix, &id),
            exp,
            progress,
            repair: self.options.repair.then(Repair::default),
            extras_to_delete: Vec::new(),
        };
        tracing::info!(table = %id, index = %t.index, resumed_after_rows = t.progress.rows, "verify: comparing table");
        // Two chunks at a time: the next one is read, its documents made and asked for, while
        // this one's documents are on their way and then compared.
        let chunk_rows = self.options.chunk_rows;
        let first = read_chunk(
            &mut self.conn,
            &mut t.exp,
            &t.progress.last_key,
            filter,
            chunk_rows,
        )
        .await?;
        let mut next = first.map(|c| self.fetch(&t.index, c));
        while let Some((chunk, fetching)) = next.take() {
            if self.shutdown.is_cancelled() {
                return Ok(None);
            }
            let n = chunk.expected.len() as u64;
            if !self.throttle.admit(n, self.shutdown).await {
                return Ok(None);
            }
            t.progress.seen_bytes = state.add_seen(chunk.expected.iter().map(|e| e.id.as_str()))?;
            if n == chunk_rows {
                let following = read_chunk(
                    &mut self.conn,
                    &mut t.exp,
                    &chunk.last_key,
                    filter,
                    chunk_rows,
                )
                .await?;
                next = following.map(|c| self.fetch(&t.index, c));
            }
            let docs = fetching
                .await
                .map_err(|e| VerifyError::Index(format!("reading documents: {e}")))??;
            t.progress.last_key = chunk.last_key;
            let suspects = first_look(chunk.expected, &docs);
            let confirmed = if suspects.is_empty() {
                Vec::new()
            } else {
                self.settle_rows(&mut t, suspects).await?
            };
            t.progress.reread.add(confirmed, n as usize);
            t.progress.rows += n;
            self.delete_extras(&mut t).await?;
            state.save(&t.progress)?;
            bar.update(t.progress.rows);
        }
        bar.finish(true);
        tracing::info!(table = %id, rows = t.progress.rows, seconds = started.elapsed().as_secs_f64(), "verify: rows compared");
        let not_scanned = if filter.is_some() {
            Some("--where".to_string())
        } else if shared_index {
            Some(format!(
                "{} holds the documents of other tables too",
                t.index
            ))
        } else {
            None
        };
        let scanned = match not_scanned {
            Some(_) => None,
            None => match self.extras(&mut t, &state).await? {
                Some(n) => Some(n),
                None => return Ok(None),
            },
        };
        self.delete_extras(&mut t).await?;
        self.request_rereads(&mut t).await?;
        state.finish()?;
        let report = TableReport {
            table: id.to_string(),
            index: t.index,
            rows: t.progress.rows,
            documents_scanned: scanned,
            counts: t.progress.counts,
            differences: t.progress.listed,
            resumed: was_resumed,
            repair: t.repair,
            seconds: started.elapsed().as_secs_f64(),
            error: None,
            not_scanned,
        };
        Ok(Some(report))
    }

    /// Compares differing rows again, each time after the pipeline has passed the position
    /// where they were read, until each is equal, confirmed different, or out of rounds.
    /// Returns the place in the chunk and key of each row found missing or different.
    async fn settle_rows(
        &mut self,
        t: &mut TableRun,
        mut pending: Vec<Suspect>,
    ) -> Result<Vec<(usize, Vec<Value>)>, VerifyError> {
        let schema = t.exp.table().clone();
        let mut confirmed = Vec::new();
        for _ in 0..ROUNDS {
            if pending.is_empty() {
                return Ok(confirmed);
            }
            let before = mysql::current_position(&mut self.conn).await?;
            let keys: Vec<Vec<Value>> = pending.iter().map(|s| s.key.clone()).collect();
            let (sql, params) = keys_query(&schema, &keys);
            let rows = read_rows(&mut self.conn, &schema, sql, params).await?;
            let rows: HashMap<String, Expected> = t
                .exp
                .expect(rows)?
                .into_iter()
                .map(|e| (e.id.clone(), e))
                .collect();
            let after = mysql::current_position(&mut self.conn).await?;
            if !self.wait_passed(&after, &t.topic).await? {
                break;
            }
            let ids: Vec<&str> = pending.iter().map(|s| s.id.as_str()).collect();
            let docs = self.index.get(&t.index, &ids).await?;
            let settled_before = version_at(&before);
            let mut next = Vec::new();
            for mut s in pending {
                let row = rows.get(&s.id);
                let doc = docs.get(&s.id);
                let now = doc.map(|d| d.version);
                let image = row.map(|e| e.doc.clone());
                // The row read the same in two rounds, and the document reflects no change
                // after the read: its version is older than the read, or it stayed as it was
                // at the previous look (while the pipeline passed the read in between).
                let repeated = s.last_row.as_ref() == Some(&image);
                let stable =
                    repeated && (doc.is_some_and(|d| d.version <= settled_before) || now == s.last);
                let verdict = match (row, doc) {
                    (None, None) => None,
                    (Some(e), Some(d)) => {
                        let columns = compare::differing_columns(&e.doc, &d.source);
                        if columns.is_empty() {
                            None
                        } else if stable {
                            Some(Difference {
                                kind: Kind::Different,
                                id: s.id.clone(),
                                columns,
                            })
                        } else {
                            s.last = now;
                            s.last_row = Some(image);
                            next.push(s);
                            continue;
                        }
                    }
                    (None, Some(d)) if stable => {
                        t.extras_to_delete.push((s.id.clone(), d.version));
                        Some(Difference {
                            kind: Kind::Extra,
                            id: s.id.clone(),
                            columns: Vec::new(),
                        })
                    }
                    (Some(_), None) if stable => Some(Difference {
                        kind: Kind::Missing,
                        id: s.id.clone(),
                        columns: Vec::new(),
                    }),
                    _ => {
                        s.last = now;
                        s.last_row = Some(image);
                        next.push(s);
                        continue;
                    }
                };
                if let Some(d) = verdict {
                    if matches!(d.kind, Kind::Missing | Kind::Different) {
                        confirmed.push((s.at, s.key.clone()));
                    }
                    self.report(t, d);
                }
            }
            pending = next;
        }
        for s in pending {
            self.report(
                t,
                Difference {
                    kind: Kind::Unsettled,
                    id: s.id,
                    columns: Vec::new(),
                },
            );
        }
        Ok(confirmed)
    }

    /// Starts fetching the documents of `chunk` from `index`.
    fn fetch(&self, index: &str, chunk: Chunk) -> (Chunk, Fetching) {
        let ids: Vec<String> = chunk.expected.iter().map(|e| e.id.clone()).collect();
        let (client, index) = (self.index.clone(), index.to_string());
        let fetching = tokio::spawn(async move {
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            client.get(&index, &ids).await
        });
        (chunk, fetching)
    }

    async fn wait_passed(&self, position: &Position, topic: &str) -> Result<bool, VerifyError> {
        let passed = self
            .pipeline
            .wait_passed(position, topic, self.options.patience)
            .await?;
        if !passed {
            tracing::warn!(%position, topic, patience_s = self.options.patience.as_secs(), "verify: the pipeline did not pass the position in time (is the loader running?); the rows in question count as unsettled");
        }
        Ok(passed)
    }

    fn report(&mut self, t: &mut TableRun, d: Difference) {
        t.progress.counts.add(d.kind);
        (self.found)(&t.exp.table().id, &d);
        if t.progress.listed.len() < self.options.max_listed {
            t.progress.listed.push(d);
        }
    }

    /// The pass over the index: documents whose ids no row had. Returns the documents
    /// scanned; `None` if interrupted.
    async fn extras(
        &mut self,
        t: &mut TableRun,
        state: &TableState,
    ) -> Result<Option<u64>, VerifyError> {
        let slices = state.slices(t.progress.seen_bytes);
        let mut scanned = 0;
        for slice in 0..slices {
            let seen = state.slice(slice, slices)?;
            let mut scan = self.index.scan(&t.index).await?;
            let mut candidates = Vec::new();
            while let Some(page) = scan.next(&self.index).await? {
                if self.shutdown.is_cancelled() {
                    return Ok(None);
                }
                scanned += page.len() as u64;
                candidates.extend(page.into_iter().filter(|(id, _)| {
                    let fp = state::fingerprint(id);
                    fp % slices == slice && seen.binary_search(&fp).is_err()
                }));
                if candidates.len() >= BATCH {
                    self.settle_extras(t, std::mem::take(&mut candidates))
                        .await?;
                }
            }
            self.settle_extras(t, candidates).await?;
        }
        Ok(Some(scanned / slices))
    }

    /// Documents no compared row had: extras unless a change after the verify began wrote
    /// them (the row exists, or the stream will delete the document) or the stream has
    /// removed them meanwhile.
    async fn settle_extras(
        &mut self,
        t: &mut TableRun,
        candidates: Vec<(String, u64)>,
    ) -> Result<(), VerifyError> {
        if candidates.is_empty() {
            return Ok(());
        }
        let now = mysql::current_position(&mut self.conn).await?;
        let passed = self.wait_passed(&now, &t.topic).await?;
        let ids: Vec<&str> = candidates.iter().map(|(id, _)| id.as_str()).collect();
        let docs = self.index.get(&t.index, &ids).await?;
        let started = version_at(&t.progress.start);
        let mut seen_now = HashSet::new();
        for (id, _) in &candidates {
            let Some(doc) = docs.get(id) else { continue };
            if doc.version > started || !seen_now.insert(id.clone()) {
                continue;
            }
            let kind = if passed { Kind::Extra } else { Kind::Unsettled };
            if kind == Kind::Extra {
                t.extras_to_delete.push((id.clone(), doc.version));
            }
            self.report(
                t,
                Difference {
                    kind,
                    id: id.clone(),
                    columns: Vec::new(),
                },
            );
        }
        Ok(())
    }

    /// With `--repair`: deletes the documents found without rows.
    async fn delete_extras(&mut self, t: &mut TableRun) -> Result<(), VerifyError> {
        let extras = std::mem::take(&mut t.extras_to_delete);
        if let Some(repair) = &mut t.repair {
            repair.deleted += self.index.delete(&t.index, &extras).await?;
        }
        Ok(())
    }

    /// With `--repair`: asks the source to re-read the key ranges of the rows found missing
    /// or different, in one incremental snapshot through the signal table (a source runs one
    /// per table at a time).
    async fn request_rereads(&mut self, t: &mut TableRun) -> Result<(), VerifyError> {
        let Some(repair) = &mut t.repair else {
            return Ok(());
        };
        let Some(condition) = t
            .progress
            .reread
            .condition(t.exp.table(), self.no_backslash_escapes)
        else {
            return Ok(());
        };
        let source = self.config.source.as_ref().expect("checked by verify");
        let signal = incremental::request(source, &t.exp.table().id, Some(&condition)).await?;
        repair.rows_requested = t.progress.reread.rows;
        repair.signals.push(signal);
        Ok(())
    }
}

/// Documents of a chunk on their way.
type Fetching = tokio::task::JoinHandle<Result<HashMap<String, index::Found>, VerifyError>>;

/// A chunk of rows in key order, as the documents they must have.
struct Chunk {
    /// The key of its last row.
    last_key: Vec<Value>,
    expected: Vec<Expected>,
}

/// The chunk after `last_key` (from the start when empty) of at most `rows` rows matching
/// `filter`; `None` past the end.
async fn read_chunk(
    conn: &mut Conn,
    exp: &mut Expecter,
    last_key: &[Value],
    filter: Option<&str>,
    rows: u64,
) -> Result<Option<Chunk>, VerifyError> {
    let schema = exp.table().clone();
    let (sql, params) = chunk_query(&schema, last_key, filter, Some(rows));
    let rows = read_rows(conn, &schema, sql, params).await?;
    let Some(last) = rows.last() else {
        return Ok(None);
    };
    let last_key = schema.key_values(last).cloned().collect();
    Ok(Some(Chunk {
        last_key,
        expected: exp.expect(rows)?,
    }))
}

/// The rows `sql` selects, as the snapshot types them.
async fn read_rows(
    conn: &mut Conn,
    schema: &TableSchema,
    sql: String,
    params: Vec<mysql_async::Value>,
) -> Result<Vec<Row>, VerifyError> {
    let failed = |e| query_error("reading rows to verify", e);
    let mut result = conn.exec_iter(sql, params).await.map_err(failed)?;
    let mut rows = Vec::new();
    let mut zero_dates = 0;
    if let Some(mut stream) = result.stream::<mysql_async::Row>().await.map_err(failed)? {
        while let Some(row) = stream.next().await {
            rows.push(convert(schema, row.map_err(failed)?, &mut zero_dates)?);
        }
    }
    Ok(rows)
}

/// The rows of a chunk whose documents (`docs`, by id) are missing or differ.
fn first_look(expected: Vec<Expected>, docs: &HashMap<String, index::Found>) -> Vec<Suspect> {
    expected
        .into_iter()
        .enumerate()
        .filter_map(|(at, e)| {
            let doc = docs.get(&e.id);
            let same =
                doc.is_some_and(|d| compare::differing_columns(&e.doc, &d.source).is_empty());
            (!same).then(|| Suspect {
                at,
                last: doc.map(|d| d.version),
                last_row: None,
                key: e.key,
                id: e.id,
            })
        })
        .collect()
}
