//! [`RetryPolicy`]: the one retry policy of the crate's background work
//! (the cloud uploader, the readable root copy): exponential backoff with
//! jitter, retrying only *transient* errors
//! ([`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable)) and only
//! within a bounded budget of attempts and time.
//!
//! A permanent error (a 403, a missing bucket, an invalid request) is
//! returned at once: retrying it cannot succeed, and a caller waiting on it
//! (a `Durability::Cloud` commit) should fail with it instead of hanging.
//! Every retry is counted in the `protobase_retries_total` metric (labels
//! `op` and `kind`).

use std::future::Future;
use std::time::Duration;

use crate::clock::SeededRng;
use crate::error::Result;

/// Backoff and budget of retried operations.
///
/// ```
/// use std::time::Duration;
/// use protobase::retry::RetryPolicy;
///
/// let policy = RetryPolicy::default()
///     .max_attempts(5)
///     .max_elapsed(Duration::from_secs(10));
/// assert_eq!(policy.attempts(), 5);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    initial: Duration,
    max_backoff: Duration,
    max_attempts: u32,
    max_elapsed: Duration,
}

impl Default for RetryPolicy {
    /// 20 ms doubling up to 5 s (with 50–150 % jitter), at most 10 attempts
    /// and 60 s.
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_millis(20),
            max_backoff: Duration::from_secs(5),
            max_attempts: 10,
            max_elapsed: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// First pause (default 20 ms); each next one doubles.
    pub fn initial_backoff(mut self, d: Duration) -> Self {
        self.initial = d;
        self
    }

    /// Longest pause (default 5 s).
    pub fn max_backoff(mut self, d: Duration) -> Self {
        self.max_backoff = d;
        self
    }

    /// Attempts in all, the first one included (default 10; at least 1).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// No retry starts after this much time since the first attempt
    /// (default 60 s).
    pub fn max_elapsed(mut self, d: Duration) -> Self {
        self.max_elapsed = d;
        self
    }

    /// Attempts in all.
    pub fn attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Runs `attempt` until it succeeds, fails with a permanent error, or
    /// the budget is spent (the last error is returned). `op` names the
    /// operation in logs and in the `protobase_retries_total` metric.
    pub async fn run<T, F, Fut>(
        &self,
        op: &'static str,
        rng: &SeededRng,
        mut attempt: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let started = tokio::time::Instant::now();
        let mut backoff = self.initial;
        let mut n = 0u32;
        loop {
            n += 1;
            let e = match attempt().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let kind = e.kind();
            if !kind.is_transient() {
                tracing::warn!(op, error = %e, kind = %kind, "permanent failure: not retried");
                return Err(e);
            }
            // Jitter: 50%..150% of the current backoff.
            let wait = backoff.mul_f64(0.5 + rng.f64());
            if n >= self.max_attempts || started.elapsed() + wait > self.max_elapsed {
                tracing::warn!(op, error = %e, attempts = n, "retry budget spent");
                return Err(e);
            }
            crate::metrics::retry(op, kind);
            tracing::warn!(op, error = %e, attempt = n, "transient failure, retrying in {wait:?}");
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(self.max_backoff);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Error, ErrorKind};
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_within_the_budget() {
        let calls = AtomicU32::new(0);
        let rng = SeededRng::new(1);
        let policy = RetryPolicy::default().max_attempts(4);
        let r: Result<()> = policy
            .run("test", &rng, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(Error::backend("store", "503"))
            })
            .await;
        assert_eq!(r.unwrap_err().kind(), ErrorKind::Unavailable);
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        // Success after two failures.
        let calls = AtomicU32::new(0);
        let v = policy
            .run("test", &rng, || async {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(Error::backend("store", "503"))
                } else {
                    Ok(7)
                }
            })
            .await
            .unwrap();
        assert_eq!(v, 7);
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_errors_are_not_retried() {
        let calls = AtomicU32::new(0);
        let rng = SeededRng::new(1);
        let r: Result<()> = RetryPolicy::default()
            .run("test", &rng, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(Error::backend_with(
                    "store",
                    "403",
                    ErrorKind::Permission,
                    std::io::Error::other("forbidden"),
                ))
            })
            .await;
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Permission);
        assert!(std::error::Error::source(&e).is_some(), "source kept");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_time_budget_bounds_retries() {
        let calls = AtomicU32::new(0);
        let rng = SeededRng::new(3);
        let policy = RetryPolicy::default()
            .max_attempts(1000)
            .initial_backoff(Duration::from_secs(1))
            .max_backoff(Duration::from_secs(1))
            .max_elapsed(Duration::from_secs(5));
        let started = tokio::time::Instant::now();
        let _ = policy
            .run::<(), _, _>("test", &rng, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(Error::backend("store", "timeout"))
            })
            .await;
        assert!(started.elapsed() <= Duration::from_secs(5));
        let n = calls.load(Ordering::SeqCst);
        assert!((3..=11).contains(&n), "{n} attempts");
    }
}
