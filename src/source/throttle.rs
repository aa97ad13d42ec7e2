//! `source.snapshot_max_rows_per_sec`: paces both snapshot kinds so that copying a large table
//! does not take all of a busy primary's I/O.
//!
//! Rows are paid for as they are read: each row moves the moment the next one may be read by
//! `1 / rate`, starting from now whenever reading fell behind, so an idle spell (a slow SELECT,
//! a wait for the stream) earns no burst afterwards.

use std::num::NonZeroU64;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Sleeps shorter than this are deferred until the debt grows, so a high rate costs a timer
/// per few milliseconds of rows, not one per row.
const SLACK: Duration = Duration::from_millis(10);

/// Paces rows to at most a configured rate.
#[derive(Debug)]
pub struct Throttle {
    /// Rows per second; `None` when unpaced.
    rate: Option<NonZeroU64>,
    /// When the next row may be read.
    next: Instant,
}

impl Throttle {
    /// At most `rows_per_sec` rows per second; `None` means unpaced.
    pub fn new(rows_per_sec: Option<NonZeroU64>) -> Throttle {
        Throttle {
            rate: rows_per_sec,
            next: Instant::now(),
        }
    }

    /// Whether a rate is set (callers skip [`Throttle::admit`] on hot paths otherwise).
    pub fn is_paced(&self) -> bool {
        self.rate.is_some()
    }

    /// Counts `rows` more rows read and waits until they fit the rate; false if `shutdown`
    /// came first.
    pub async fn admit(&mut self, rows: u64, shutdown: &CancellationToken) -> bool {
        let Some(rate) = self.rate else {
            return true;
        };
        let now = Instant::now();
        self.next = self.next.max(now) + Duration::from_secs_f64(rows as f64 / rate.get() as f64);
        if self.next <= now + SLACK {
            return true;
        }
        tokio::select! {
            () = tokio::time::sleep_until(self.next) => true,
            () = shutdown.cancelled() => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn holds_the_rate_and_earns_no_burst_while_idle() {
        let shutdown = CancellationToken::new();
        let mut t = Throttle::new(NonZeroU64::new(1000));
        let start = Instant::now();
        for _ in 0..2000 {
            assert!(t.admit(1, &shutdown).await);
        }
        // 2,000 rows at 1,000/s: two seconds, give or take the deferred slack.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(1990) && took <= Duration::from_millis(2000));
        // Idle for a minute: the next rows are paced as before, not let through at once.
        tokio::time::sleep(Duration::from_secs(60)).await;
        let again = Instant::now();
        assert!(t.admit(500, &shutdown).await);
        assert_eq!(again.elapsed(), Duration::from_millis(500));
    }

    #[tokio::test(start_paused = true)]
    async fn unpaced_never_waits_and_shutdown_ends_a_wait() {
        let shutdown = CancellationToken::new();
        let mut off = Throttle::new(None);
        let start = Instant::now();
        assert!(off.admit(u64::MAX, &shutdown).await);
        assert_eq!(start.elapsed(), Duration::ZERO);
        let mut slow = Throttle::new(NonZeroU64::new(1));
        shutdown.cancel();
        assert!(!slow.admit(10, &shutdown).await);
    }
}
