//! `sluice status`: one screen on a pipeline. A running process is asked over its metrics
//! endpoint (two scrapes a second apart give the rates); when nothing answers, the position
//! store is read instead (the running process holds its lock, a stopped one does not).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::config::Config;
use crate::model::TableId;
use crate::positions::{PositionStore, PositionStoreError};

/// Why the status could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The position store could not be read.
    #[error(transparent)]
    Positions(#[from] PositionStoreError),
    /// Nothing runs and there is no position store to read.
    #[error(
        "nothing answers at the metrics address {addr} and there is no state directory at {dir}: \
         is Sluice running with this config, and has it ever run?"
    )]
    Nothing {
        /// The metrics address asked.
        addr: String,
        /// The state directory looked for.
        dir: String,
    },
}

/// What `sluice status` reports.
#[derive(Debug, Serialize)]
pub struct Status {
    /// Whether a process answered on the metrics address.
    pub running: bool,
    /// Where it was asked.
    pub metrics: Option<String>,
    /// `ready`, or why not (a running process only).
    pub ready: Option<String>,
    /// The binlog connection (a running process only).
    pub connected: Option<bool>,
    /// The stored resume position, `file:offset`.
    pub position: Option<String>,
    /// The GTID state stored with it.
    pub gtid: Option<String>,
    /// Seconds behind the source (a running process only).
    pub seconds_behind: Option<f64>,
    /// Per table.
    pub tables: Vec<TableStatus>,
    /// Records the loader's group has still to read (a running loader only).
    pub consumer_lag: Option<f64>,
    /// Documents applied per second (a running loader only).
    pub documents_per_sec: Option<f64>,
    /// Records sent to the dead-letter topic (a running loader only).
    pub dead_letters: Option<f64>,
}

/// One table in [`Status`].
#[derive(Debug, Serialize)]
pub struct TableStatus {
    /// `db.table`.
    pub table: String,
    /// `done`, `copying` (with the rows copied), `in windows` or `not started`.
    pub snapshot: String,
    /// Rows copied by snapshots (stored progress, or the running process's count).
    pub rows_copied: Option<f64>,
    /// The server's row estimate (a running process only).
    pub rows_estimate: Option<f64>,
    /// Row changes read since the process started (a running process only).
    pub row_changes: Option<f64>,
    /// Row changes read per second (a running process only).
    pub changes_per_sec: Option<f64>,
}

/// The status of the pipeline `config` describes.
pub async fn status(config: &Config) -> Result<Status, StatusError> {
    if let Some(addr) = config.metrics.listen
        && let Some(first) = scrape(addr).await
    {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let second = scrape(addr).await.unwrap_or_else(|| first.clone());
        return Ok(running(addr, &first, &second).await);
    }
    let Some(source) = &config.source else {
        return Err(StatusError::Nothing {
            addr: addr_text(config),
            dir: "(no [source] in the config)".into(),
        });
    };
    if !source.state_dir.exists() {
        return Err(StatusError::Nothing {
            addr: addr_text(config),
            dir: source.state_dir.display().to_string(),
        });
    }
    stopped(config, &source.state_dir)
}

fn addr_text(config: &Config) -> String {
    config
        .metrics
        .listen
        .map_or_else(|| "(metrics off)".into(), |a| a.to_string())
}

/// One scrape of `/metrics`: every sample by name and labels.
pub(super) type Samples = BTreeMap<(String, BTreeMap<String, String>), f64>;

pub(super) async fn scrape(addr: SocketAddr) -> Option<Samples> {
    let text = get(addr, "/metrics").await?.1;
    Some(parse(&text))
}

async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .ok()?;
    let response = client
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

/// Parses the Prometheus text exposition (the subset Sluice writes).
fn parse(text: &str) -> Samples {
    let mut samples = Samples::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let labels = rest
                    .trim_end_matches('}')
                    .split("\",")
                    .filter_map(|pair| {
                        let (k, v) = pair.split_once("=\"")?;
                        Some((k.to_string(), v.trim_end_matches('"').to_string()))
                    })
                    .collect();
                (name, labels)
            }
            None => (series, BTreeMap::new()),
        };
        samples.insert((name.to_string(), labels), value);
    }
    samples
}

/// The samples of `name`, with their labels.
pub(super) fn series<'s>(
    samples: &'s Samples,
    name: &'s str,
) -> impl Iterator<Item = (&'s BTreeMap<String, String>, f64)> + 's {
    samples
        .iter()
        .filter(move |((n, _), _)| n == name)
        .map(|((_, labels), v)| (labels, *v))
}

/// The sum of the samples of `name`, if there is one.
pub(super) fn total(samples: &Samples, name: &str) -> Option<f64> {
    let mut values = series(samples, name).map(|(_, v)| v).peekable();
    values.peek()?;
    Some(values.sum())
}

/// The sum of the samples of `name` whose label `key` is `value`.
fn labelled(samples: &Samples, name: &str, key: &str, value: &str) -> Option<f64> {
    let mut values = series(samples, name)
        .filter(|(l, _)| l.get(key).map(String::as_str) == Some(value))
        .map(|(_, v)| v)
        .peekable();
    values.peek()?;
    Some(values.sum())
}

async fn running(addr: SocketAddr, first: &Samples, second: &Samples) -> Status {
    let ready = get(addr, "/ready")
        .await
        .map(|(_, body)| body.trim().to_string());
    let position = series(second, "sluice_source_checkpoint_info")
        .next()
        .map(|(labels, _)| labels.clone());
    let offset = total(second, "sluice_source_checkpoint_position_bytes");
    let mut tables: BTreeMap<String, TableStatus> = BTreeMap::new();
    for name in [
        "sluice_source_row_changes_total",
        "sluice_snapshot_rows_total",
        "sluice_snapshot_rows_estimate",
    ] {
        for (labels, _) in series(second, name) {
            if let Some(t) = labels.get("table") {
                tables.entry(t.clone()).or_insert_with(|| TableStatus {
                    table: t.clone(),
                    snapshot: String::new(),
                    rows_copied: None,
                    rows_estimate: None,
                    row_changes: None,
                    changes_per_sec: None,
                });
            }
        }
    }
    for (t, s) in &mut tables {
        let changes = |samples| labelled(samples, "sluice_source_row_changes_total", "table", t);
        s.row_changes = changes(second);
        s.changes_per_sec = s.row_changes.map(|now| now - changes(first).unwrap_or(0.0));
        s.rows_copied = labelled(second, "sluice_snapshot_rows_total", "table", t);
        s.rows_estimate = labelled(second, "sluice_snapshot_rows_estimate", "table", t);
        s.snapshot = match (s.rows_copied, s.row_changes) {
            (_, Some(_)) => "streaming".into(),
            (Some(_), None) => "copying".into(),
            (None, None) => "waiting".into(),
        };
    }
    let documents = |samples| total(samples, "sluice_loader_documents_total");
    Status {
        running: true,
        metrics: Some(addr.to_string()),
        ready,
        connected: total(second, "sluice_source_connected").map(|c| c > 0.0),
        position: position
            .as_ref()
            .zip(offset)
            .map(|(l, o)| format!("{}:{o}", l.get("file").cloned().unwrap_or_default())),
        gtid: position
            .and_then(|l| l.get("gtid").cloned())
            .filter(|g| !g.is_empty()),
        seconds_behind: total(second, "sluice_source_seconds_behind"),
        tables: tables.into_values().collect(),
        consumer_lag: total(second, "sluice_loader_consumer_lag_records"),
        documents_per_sec: documents(second).map(|d| d - documents(first).unwrap_or(0.0)),
        dead_letters: total(second, "sluice_loader_dead_letters_total"),
    }
}

fn stopped(config: &Config, dir: &Path) -> Result<Status, StatusError> {
    let store = PositionStore::open(dir)?;
    let position = store.position()?;
    let mut tables: BTreeMap<TableId, TableStatus> = BTreeMap::new();
    let mut entry = |t: &TableId, snapshot: &str, rows: Option<u64>| {
        tables.insert(
            t.clone(),
            TableStatus {
                table: t.to_string(),
                snapshot: snapshot.into(),
                rows_copied: rows.map(|r| r as f64),
                rows_estimate: None,
                row_changes: None,
                changes_per_sec: None,
            },
        );
    };
    for t in config.tables.iter().filter_map(|p| p.exact()) {
        entry(&t, "not started", None);
    }
    for t in store.snapshotted()? {
        entry(&t, "done", None);
    }
    for (t, p) in store.snapshots_begun()? {
        entry(&t, "copying", Some(p.rows));
    }
    for (t, p) in store.windows()? {
        entry(&t, "in windows", Some(p.rows));
    }
    Ok(Status {
        running: false,
        metrics: config.metrics.listen.map(|a| a.to_string()),
        ready: None,
        connected: None,
        position: position.as_ref().map(|p| format!("{}:{}", p.file, p.pos)),
        gtid: position.and_then(|p| p.gtid),
        seconds_behind: None,
        tables: tables.into_values().collect(),
        consumer_lag: None,
        documents_per_sec: None,
        dead_letters: None,
    })
}

impl Status {
    /// The screen `sluice status` prints.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let opt = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.0}"));
        if self.running {
            out += &format!(
                "sluice at {}: running, {}\n",
                self.metrics.as_deref().unwrap_or("?"),
                self.ready.as_deref().unwrap_or("readiness unknown")
            );
            if let Some(c) = self.connected {
                out += &format!(
                    "source: {}, {} s behind\n",
                    if c { "connected" } else { "not connected" },
                    opt(self.seconds_behind)
                );
            }
        } else {
            out += "sluice: not running (nothing answers on its metrics address); from the \
                    state directory:\n";
        }
        out += &format!(
            "position: {}{}\n",
            self.position.as_deref().unwrap_or("none stored"),
            self.gtid
                .as_ref()
                .map(|g| format!(" (GTID {g})"))
                .unwrap_or_default()
        );
        out += &format!(
            "{:<40} {:<12} {:>12} {:>12} {:>12}\n",
            "table", "snapshot", "rows copied", "row changes", "changes/s"
        );
        for t in &self.tables {
            out += &format!(
                "{:<40} {:<12} {:>12} {:>12} {:>12}\n",
                t.table,
                t.snapshot,
                opt(t.rows_copied),
                opt(t.row_changes),
                opt(t.changes_per_sec)
            );
        }
        if self.documents_per_sec.is_some() || self.consumer_lag.is_some() {
            out += &format!(
                "loader: lag {} records, {} documents/s, {} dead letters\n",
                opt(self.consumer_lag),
                opt(self.documents_per_sec),
                opt(self.dead_letters)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_parses_into_samples() {
        let samples = parse(
            "# HELP x y\n# TYPE a counter\na 3\nb{table=\"d.t\",op=\"c\"} 7\nb{table=\"d.u\",op=\"c\"} 1\n",
        );
        assert_eq!(total(&samples, "a"), Some(3.0));
        assert_eq!(total(&samples, "b"), Some(8.0));
        assert_eq!(labelled(&samples, "b", "table", "d.t"), Some(7.0));
        assert_eq!(total(&samples, "none"), None);
    }
}
