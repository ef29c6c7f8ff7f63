//! Collecting durations and reading percentiles off them.

use std::time::Duration;

use crate::protocol::Percentiles;

/// Durations in nanoseconds, kept whole so percentiles are exact.
#[derive(Debug, Default, Clone)]
pub struct Samples(Vec<u64>);

impl Samples {
    /// Room for `capacity` samples, so recording never reallocates in a measured loop.
    pub fn with_capacity(capacity: usize) -> Self {
        Self(Vec::with_capacity(capacity))
    }

    /// Adds one duration.
    pub fn record(&mut self, duration: Duration) {
        self.0
            .push(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Takes in another task's samples.
    pub fn merge(&mut self, other: Samples) {
        self.0.extend(other.0);
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Median and 99th percentile (nearest rank).
    pub fn percentiles(mut self) -> Percentiles {
        if self.0.is_empty() {
            return Percentiles::default();
        }
        self.0.sort_unstable();
        Percentiles {
            count: self.0.len() as u64,
            p50_us: micros(nearest_rank(&self.0, 0.50)),
            p99_us: micros(nearest_rank(&self.0, 0.99)),
        }
    }
}

fn nearest_rank(sorted: &[u64], quantile: f64) -> u64 {
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn micros(nanos: u64) -> f64 {
    nanos as f64 / 1_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut samples = Samples::default();
        for micros in 1..=100 {
            samples.record(Duration::from_micros(micros));
        }
        let p = samples.percentiles();
        assert_eq!(p.count, 100);
        assert_eq!(p.p50_us, 50.0);
        assert_eq!(p.p99_us, 99.0);
    }

    #[test]
    fn no_samples_no_percentiles() {
        assert_eq!(Samples::default().percentiles(), Percentiles::default());
    }
}
