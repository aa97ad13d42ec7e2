//! How every stage waits out an outage (binlog connection, schema registry, index server):
//! failures sorted into transient and permanent, and one backoff between attempts.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::metrics::metrics;

/// What a failed attempt means for the loop that made it.
#[derive(Debug)]
pub enum Attempt<E> {
    /// The other side is unreachable, overloaded or failing: another attempt may succeed. The
    /// reason is for the log.
    Transient(String),
    /// Another attempt would fail the same way: `E` says what the caller does instead.
    Permanent(E),
}

/// Exponential backoff from 100 ms to 10 s, jittered over the upper half so that restarted
/// clients do not retry in lockstep. From its first wait until a success (or until it is
/// dropped) it counts as an outage being waited out, which `/ready` reports once it lasts.
#[derive(Debug, Default)]
pub struct Backoff {
    attempt: u32,
    waiting: bool,
}

impl Backoff {
    /// How long to wait before the next attempt.
    pub fn next_wait(&mut self) -> Duration {
        let cap = 100u64.saturating_mul(1 << self.attempt.min(7)).min(10_000);
        self.attempt += 1;
        Duration::from_millis(fastrand::u64(cap / 2..=cap))
    }

    /// Logs that an attempt failed for `reason` (`next` says what happens now, e.g. "the
    /// database is not reachable; waiting for it") and sleeps the next interval; false if
    /// `shutdown` came first. Every outage loop waits through this one place.
    pub async fn wait_out(
        &mut self,
        reason: impl std::fmt::Display,
        next: &str,
        shutdown: &CancellationToken,
    ) -> bool {
        if !self.waiting {
            self.waiting = true;
            metrics()
                .readiness
                .wait_begins(crate::model::time::now_ms());
        }
        let wait = self.next_wait();
        tracing::warn!(%reason, retry_in_ms = wait.as_millis() as u64, "{next}");
        tokio::select! {
            () = tokio::time::sleep(wait) => true,
            () = shutdown.cancelled() => false,
        }
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
        self.end_wait();
    }

    fn end_wait(&mut self) {
        if std::mem::take(&mut self.waiting) {
            metrics().readiness.wait_ends();
        }
    }
}

impl Drop for Backoff {
    /// A loop that ends (done, given up, shut down) no longer waits.
    fn drop(&mut self) {
        self.end_wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_and_restarts_after_reset() {
        let mut b = Backoff::default();
        let first = b.next_wait();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        for _ in 0..20 {
            assert!(b.next_wait() <= Duration::from_secs(10));
        }
        assert!(b.next_wait() >= Duration::from_secs(5));
        b.reset();
        assert!(b.next_wait() <= Duration::from_millis(100));
    }
}
