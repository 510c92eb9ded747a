//! A latency histogram in the manner of HDR histograms: a fixed array of
//! log-linear buckets, so that a run of any length costs the same memory
//! (about 30 KiB per operation kind and thread) while every percentile is
//! within 1/64 (1.6%) of the true value. The maximum is kept exactly.

/// Sub-buckets per power of two: the precision.
const SUB: u64 = 64;
const SUB_BITS: u32 = 6;
/// Values below `2 * SUB` have a bucket each; above, each power of two is
/// cut into `SUB` buckets. 58 powers of two above 127 reach `u64::MAX`.
const BUCKETS: usize = (2 * SUB + 57 * SUB) as usize;

#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64]>,
    total: u64,
    max: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
            max: 0,
            sum: 0,
        }
    }
}

fn index(value: u64) -> usize {
    if value < 2 * SUB {
        return value as usize;
    }
    let msb = 63 - value.leading_zeros();
    let shift = msb - SUB_BITS;
    // (value >> shift) is in [SUB, 2 * SUB).
    ((shift as u64 + 1) * SUB + (value >> shift) - SUB) as usize
}

/// The smallest and the largest value bucket `i` holds.
fn bounds(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < 2 * SUB {
        return (i, i);
    }
    let shift = i / SUB - 1;
    let low = (i % SUB + SUB) << shift;
    (low, low + ((1u64 << shift) - 1))
}

impl Histogram {
    pub fn record(&mut self, value: u64) {
        self.counts[index(value)] += 1;
        self.total += 1;
        self.max = self.max.max(value);
        self.sum += value as u128;
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine += theirs;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn mean(&self) -> u64 {
        match self.total {
            0 => 0,
            n => (self.sum / n as u128) as u64,
        }
    }

    /// The value below which `q` (0..=1) of the recorded values lie: the
    /// middle of the bucket holding that rank, never above the maximum.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let (low, high) = bounds(i);
                return (low + (high - low) / 2).min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_cover_every_value() {
        let mut expected_low = 0;
        for i in 0..BUCKETS {
            let (low, high) = bounds(i);
            assert_eq!(low, expected_low, "bucket {i}");
            assert_eq!(index(low), i);
            assert_eq!(index(high), i);
            expected_low = high.wrapping_add(1);
        }
        assert_eq!(expected_low, 0, "the last bucket ends at u64::MAX");
    }

    #[test]
    fn quantiles_are_within_the_precision() {
        let mut h = Histogram::default();
        for v in 1..=100_000u64 {
            h.record(v * 1000);
        }
        for (q, exact) in [
            (0.5, 50_000_000.0),
            (0.9, 90_000_000.0),
            (0.99, 99_000_000.0),
        ] {
            let got = h.quantile(q) as f64;
            assert!((got - exact).abs() / exact < 1.0 / 64.0, "q {q}: {got}");
        }
        assert_eq!(h.max(), 100_000_000);
        assert_eq!(h.count(), 100_000);
        let mut other = Histogram::default();
        other.record(7);
        h.merge(&other);
        assert_eq!(h.count(), 100_001);
        assert_eq!(h.quantile(0.0), 7);
    }
}
