//! Publish-to-write latency: a histogram of fixed buckets, one atomic each,
//! so that recording a delivery takes no lock and allocates nothing.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the buckets in microseconds (0.5 ms to 10 s); one more
/// bucket holds everything above (a catch-up from old history, a slow poller).
pub const BOUNDS_MICROS: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
    10_000_000,
];

/// One transport's latency histogram.
#[derive(Debug, Default)]
pub struct Latency {
    /// Per bucket, not cumulative: the last one is above every bound.
    buckets: [AtomicU64; BOUNDS_MICROS.len() + 1],
    sum_micros: AtomicU64,
}

/// A histogram as Prometheus shows it: cumulative counts per upper bound.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencySnapshot {
    /// `(le in seconds, observations <= le)` for each bound, in order.
    pub buckets: Vec<(f64, u64)>,
    /// All observations: the `+Inf` bucket and `_count`.
    pub count: u64,
    pub sum_secs: f64,
}

impl Latency {
    pub fn record(&self, micros: u64) {
        let bucket = BOUNDS_MICROS.partition_point(|&bound| bound < micros);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The count is the sum of the buckets read, so that `+Inf` and `_count`
    /// agree even while deliveries are being recorded.
    pub fn snapshot(&self) -> LatencySnapshot {
        let mut count = 0;
        let mut buckets = Vec::with_capacity(BOUNDS_MICROS.len());
        for (i, bucket) in self.buckets.iter().enumerate() {
            count += bucket.load(Ordering::Relaxed);
            if let Some(&bound) = BOUNDS_MICROS.get(i) {
                buckets.push((bound as f64 / 1e6, count));
            }
        }
        LatencySnapshot { buckets, count, sum_secs: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_bounds_inclusive() {
        let latency = Latency::default();
        for micros in [0, 500, 501, 10_000, 20_000_000] {
            latency.record(micros);
        }
        let snapshot = latency.snapshot();
        assert_eq!(snapshot.count, 5);
        assert_eq!(snapshot.buckets[0], (0.0005, 2), "0 and exactly 500 µs are <= 0.0005 s");
        assert_eq!(snapshot.buckets[1], (0.001, 3));
        assert_eq!(snapshot.buckets[4], (0.01, 4));
        assert_eq!(snapshot.buckets.last(), Some(&(10.0, 4)), "20 s is above every bound");
        assert!(snapshot.buckets.windows(2).all(|w| w[0].1 <= w[1].1 && w[0].0 < w[1].0));
        assert!((snapshot.sum_secs - 20.011001).abs() < 1e-9, "{}", snapshot.sum_secs);
    }
}
