//! Reconnect pacing: exponential backoff with jitter, capped.

use std::time::Duration;

use crate::prng::SplitMix64;

/// Exponential backoff: 200 ms doubling per failure, capped at 10 s, each delay
/// jittered to between half and all of its nominal value so that many senders that
/// failed together do not retry together.
#[derive(Debug, Clone)]
pub struct Backoff {
    failures: u32,
    base: Duration,
    cap: Duration,
    rng: SplitMix64,
}

impl Backoff {
    /// Backoff with the default base (200 ms) and cap (10 s).
    pub fn new(seed: u64) -> Self {
        Backoff::with(Duration::from_millis(200), Duration::from_secs(10), seed)
    }

    /// Backoff with an explicit base and cap.
    pub fn with(base: Duration, cap: Duration, seed: u64) -> Self {
        Backoff {
            failures: 0,
            base,
            cap,
            rng: SplitMix64::new(seed),
        }
    }

    /// The delay before the next attempt, after one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let nominal = self
            .base
            .saturating_mul(1u32 << self.failures.min(16))
            .min(self.cap);
        self.failures = self.failures.saturating_add(1);
        nominal.mul_f64(0.5 + 0.5 * self.rng.next_f64())
    }

    /// Forgets past failures (call after a success).
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_jitters_and_caps() {
        let mut b = Backoff::new(1);
        let d: Vec<Duration> = (0..12).map(|_| b.next_delay()).collect();
        assert!(d[0] >= Duration::from_millis(100) && d[0] <= Duration::from_millis(200));
        assert!(d[3] >= Duration::from_millis(800) && d[3] <= Duration::from_millis(1600));
        assert!(d.iter().all(|x| *x <= Duration::from_secs(10)));
        assert!(d[11] >= Duration::from_secs(5));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(200));
    }
}
