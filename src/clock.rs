//! [`Clock`]: the time leases and deadlines are measured on, and the seeded
//! randomness of the protocol ([`SeededRng`]).
//!
//! Library code never reads the wall clock or a global random generator
//! directly: both come from the builder, so a simulation can give every node
//! its own skewed clock and replay a run from one seed. The default clock is
//! tokio's (a paused test clock moves it like every timer); the default
//! generator is seeded from the operating system once, at build time.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// A monotonic clock.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// Tokio's clock (`tokio::time::Instant::now()`), the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
}

/// A clock that runs ahead of or behind another one and at another rate:
/// `base + offset + (base - start) * (rate - 1)`. For simulations of clock
/// skew and drift.
#[derive(Debug)]
pub struct SkewedClock {
    base: Arc<dyn Clock>,
    start: Instant,
    offset: Duration,
    behind: bool,
    rate: f64,
}

impl SkewedClock {
    /// `base` shifted by `offset` (behind it when `behind`), running at
    /// `rate` times its speed (clamped to `[0.5, 2]`).
    pub fn new(base: Arc<dyn Clock>, offset: Duration, behind: bool, rate: f64) -> Self {
        let rate = if rate.is_finite() {
            rate.clamp(0.5, 2.0)
        } else {
            1.0
        };
        SkewedClock {
            start: base.now(),
            base,
            offset,
            behind,
            rate,
        }
    }
}

impl Clock for SkewedClock {
    fn now(&self) -> Instant {
        let now = self.base.now();
        let elapsed = now.saturating_duration_since(self.start);
        let scaled = self.start + elapsed.mul_f64(self.rate);
        if self.behind {
            scaled.checked_sub(self.offset).unwrap_or(scaled)
        } else {
            scaled + self.offset
        }
    }
}

/// A random generator shared by a node's components, seeded once.
#[derive(Debug, Clone)]
pub struct SeededRng(Arc<Mutex<fastrand::Rng>>);

impl SeededRng {
    /// A generator replaying `seed`.
    pub fn new(seed: u64) -> Self {
        SeededRng(Arc::new(Mutex::new(fastrand::Rng::with_seed(seed))))
    }

    /// A generator seeded from the operating system.
    pub fn from_entropy() -> Self {
        SeededRng(Arc::new(Mutex::new(fastrand::Rng::new())))
    }

    /// A uniform value in `[0, 1)`.
    pub fn f64(&self) -> f64 {
        self.0.lock().f64()
    }

    /// A uniform 64-bit value.
    pub fn u64(&self) -> u64 {
        self.0.lock().u64(..)
    }

    /// A uniform duration in `[0, max]`.
    pub fn duration_upto(&self, max: Duration) -> Duration {
        max.mul_f64(self.f64())
    }

    /// A new generator for a sub-component, seeded from this one.
    pub fn fork(&self) -> SeededRng {
        SeededRng::new(self.0.lock().u64(..))
    }
}

impl Default for SeededRng {
    fn default() -> Self {
        Self::from_entropy()
    }
}
