//! Seeded jitter for retry delays.

use std::time::Duration;

/// A deterministic generator for retry jitter. The seed comes from the driver, so the core
/// never touches OS randomness and simulations replay exactly.
#[derive(Debug, Clone)]
pub(crate) struct JitterRng(fastrand::Rng);

impl JitterRng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(fastrand::Rng::with_seed(seed))
    }

    /// `base ± jitter`, uniformly, never below zero.
    pub(crate) fn jittered(&mut self, base: Duration, jitter: Duration) -> Duration {
        let jitter_nanos = u64::try_from(jitter.as_nanos()).unwrap_or(u64::MAX);
        if jitter_nanos == 0 {
            return base;
        }
        let offset = Duration::from_nanos(self.0.u64(0..=jitter_nanos.saturating_mul(2)));
        let jitter = Duration::from_nanos(jitter_nanos);
        // base - jitter + offset, computed without going below zero or overflowing.
        base.saturating_add(offset).saturating_sub(jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_bounds_and_replays_from_the_seed() {
        let base = Duration::from_millis(100);
        let jitter = Duration::from_millis(30);
        let mut a = JitterRng::new(7);
        let mut b = JitterRng::new(7);
        let mut seen_below = false;
        let mut seen_above = false;
        for _ in 0..1000 {
            let d = a.jittered(base, jitter);
            assert_eq!(d, b.jittered(base, jitter));
            assert!(d >= Duration::from_millis(70) && d <= Duration::from_millis(130));
            seen_below |= d < base;
            seen_above |= d > base;
        }
        assert!(seen_below && seen_above, "jitter must spread both ways");
    }

    #[test]
    fn jitter_larger_than_base_saturates_at_zero() {
        let mut rng = JitterRng::new(1);
        for _ in 0..100 {
            let d = rng.jittered(Duration::from_millis(1), Duration::from_millis(50));
            assert!(d <= Duration::from_millis(51));
        }
    }
}
