//! Snapshot progress for operators: on a terminal a bar per table (rows done of the
//! information_schema estimate, rate, ETA); otherwise a log line every few seconds with the
//! same numbers.

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::metrics::metrics;
use crate::model::TableId;

/// How often progress is logged when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// The bars on stderr; log lines are printed above them.
fn bars() -> &'static MultiProgress {
    static BARS: OnceLock<MultiProgress> = OnceLock::new();
    BARS.get_or_init(MultiProgress::new)
}

/// A log destination that prints above any progress bar instead of through it; hand
/// [`log_writer`] to the tracing subscriber.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        bars().suspend(|| std::io::stderr().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// The tracing subscriber's writer: stderr, printed above the progress bars.
pub fn log_writer() -> LogWriter {
    LogWriter
}

/// One table's copy in progress.
pub struct Progress {
    what: &'static str,
    table: TableId,
    estimate: u64,
    rows_before: u64,
    /// Rows already counted in the metrics.
    counted: u64,
    started: Instant,
    last_log: Instant,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Starts reporting `what` (e.g. "snapshot") of `table`, which had `rows_before` rows
    /// copied by an earlier run, against `estimate` rows in all.
    pub fn start(what: &'static str, table: &TableId, estimate: u64, rows_before: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = bars().add(ProgressBar::new(estimate.max(rows_before)));
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {human_pos}/{human_len} rows, {per_sec:0}, ETA {eta}",
                )
                .expect("the template is valid")
                .progress_chars("=> "),
            );
            bar.set_prefix(format!("{what} {table}"));
            bar.set_position(rows_before);
            bar.reset_eta();
            bar
        });
        let s = &metrics().snapshot;
        s.rows_estimate
            .with_label_values(&[&table.to_string()])
            .set(i64::try_from(estimate).unwrap_or(i64::MAX));
        s.running.with_label_values(&[kind(what)]).inc();
        Progress {
            what,
            table: table.clone(),
            estimate,
            rows_before,
            counted: rows_before,
            started: Instant::now(),
            last_log: Instant::now(),
            bar,
        }
    }

    /// Reports `rows` copied so far.
    pub fn update(&mut self, rows: u64) {
        metrics()
            .snapshot
            .rows
            .with_label_values(&[&self.table.to_string(), kind(self.what)])
            .inc_by(rows.saturating_sub(self.counted));
        self.counted = self.counted.max(rows);
        if let Some(bar) = &self.bar {
            if rows > bar.length().unwrap_or(0) {
                bar.set_length(rows);
            }
            bar.set_position(rows);
            return;
        }
        if self.last_log.elapsed() < LOG_EVERY {
            return;
        }
        self.last_log = Instant::now();
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = rows.saturating_sub(self.rows_before) as f64 / secs;
        let left = self.estimate.saturating_sub(rows) as f64;
        let eta_s = if rate > 0.0 { (left / rate) as u64 } else { 0 };
        tracing::info!(table = %self.table, rows, estimated_rows = self.estimate, rows_per_s = rate as u64, eta_s, "{}: copying", self.what);
    }

    /// Ends the report; `completed` says whether the table is copied (else the copy stopped
    /// short, to go on later). The caller logs the result.
    pub fn finish(self, completed: bool) {
        if completed {
            metrics()
                .snapshot
                .completed
                .with_label_values(&[kind(self.what)])
                .inc();
        }
    }
}

impl Drop for Progress {
    /// However the copy ends (done, stopped, failed), its bar goes and it no longer runs.
    fn drop(&mut self) {
        metrics()
            .snapshot
            .running
            .with_label_values(&[kind(self.what)])
            .dec();
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            bars().remove(&bar);
        }
    }
}

/// The `kind` label of a copy: `initial` or `incremental`.
fn kind(what: &str) -> &'static str {
    if what.starts_with("incremental") {
        "incremental"
    } else {
        "initial"
    }
}
