//! A log-linear latency histogram: fixed memory, constant-time record, bounded relative
//! error. Values (nanoseconds) below `SUB` are exact; above, each power of two is split into
//! `SUB` equal buckets, so any recorded value is reported within 1/`SUB` (3 %) of itself.

use serde::Serialize;

/// Buckets per power of two (and the exact range below it).
const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
/// Powers of two above the exact range: covers values up to 2^64.
const GROUPS: usize = (64 - SUB_BITS) as usize;
const BUCKETS: usize = SUB as usize * (GROUPS + 1);

#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64; BUCKETS]>,
    total: u64,
    min: u64,
    max: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: Box::new([0; BUCKETS]),
            total: 0,
            min: u64::MAX,
            max: 0,
            sum: 0,
        }
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("total", &self.total)
            .field("min", &self.min)
            .field("max", &self.max)
            .finish()
    }
}

/// The bucket of a value.
#[inline]
fn bucket(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let top = 63 - v.leading_zeros(); // >= SUB_BITS
    let group = (top - SUB_BITS + 1) as usize;
    let within = ((v >> (top - SUB_BITS)) & (SUB - 1)) as usize;
    group * SUB as usize + within
}

/// The smallest and largest value of a bucket.
fn bounds(b: usize) -> (u64, u64) {
    let (group, within) = (b / SUB as usize, (b % SUB as usize) as u64);
    if group == 0 {
        return (within, within);
    }
    let shift = group as u32 - 1;
    let low = (SUB + within) << shift;
    (low, low + ((1u64 << shift) - 1))
}

/// Quantiles and extremes of a histogram, in the histogram's unit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Summary {
    pub count: u64,
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Histogram {
    #[inline]
    pub fn record(&mut self, v: u64) {
        self.counts[bucket(v)] += 1;
        self.total += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += u128::from(v);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.total += other.total;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    /// The value at quantile `q` (0..=1): the upper bound of the bucket holding it, clamped
    /// to the largest value seen, so p100 is the exact max. 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return bounds(b).1.clamp(self.min, self.max);
            }
        }
        self.max
    }

    pub fn summary(&self) -> Summary {
        Summary {
            count: self.total,
            min: if self.total == 0 { 0 } else { self.min },
            mean: if self.total == 0 {
                0.0
            } else {
                self.sum as f64 / self.total as f64
            },
            p50: self.quantile(0.50),
            p90: self.quantile(0.90),
            p99: self.quantile(0.99),
            p999: self.quantile(0.999),
            max: self.max,
        }
    }

    /// Non-empty buckets as (lowest value, highest value, count), in value order: for
    /// plots and the JSON report.
    pub fn buckets(&self) -> Vec<(u64, u64, u64)> {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(b, &c)| {
                let (lo, hi) = bounds(b);
                (lo, hi, c)
            })
            .collect()
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn buckets_partition_the_values() {
        // Every bucket's bounds map back to it, and consecutive buckets are contiguous.
        let mut next = 0u64;
        for b in 0..BUCKETS - 1 {
            let (lo, hi) = bounds(b);
            assert_eq!(lo, next, "bucket {b}");
            assert_eq!(bucket(lo), b);
            assert_eq!(bucket(hi), b);
            next = hi + 1;
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn relative_error_is_bounded() {
        for v in [
            31u64,
            32,
            33,
            100,
            1_000,
            12_345,
            1 << 20,
            987_654_321,
            u64::MAX / 3,
        ] {
            let (lo, hi) = bounds(bucket(v));
            assert!(lo <= v && v <= hi);
            assert!((hi - lo) as f64 <= v as f64 / SUB as f64, "{v}: {lo}..{hi}");
        }
    }

    #[test]
    fn quantiles_of_a_uniform_run() {
        let mut h = Histogram::default();
        for v in 1..=10_000u64 {
            h.record(v * 1000);
        }
        let s = h.summary();
        assert_eq!(s.count, 10_000);
        assert_eq!(s.min, 1000);
        assert_eq!(s.max, 10_000_000);
        let near = |got: u64, want: f64| (got as f64 - want).abs() <= want / SUB as f64;
        assert!(near(s.p50, 5_000_000.0), "{}", s.p50);
        assert!(near(s.p99, 9_900_000.0), "{}", s.p99);
        assert!(near(s.p999, 9_990_000.0), "{}", s.p999);
        assert!((s.mean - 5_000_500.0).abs() < 1.0);
        assert_eq!(h.quantile(1.0), 10_000_000);
    }

    #[test]
    fn small_values_are_exact_and_empty_is_zero() {
        let mut h = Histogram::default();
        assert_eq!(h.summary(), Summary::default());
        for v in [3u64, 3, 3, 7] {
            h.record(v);
        }
        assert_eq!(h.quantile(0.5), 3);
        assert_eq!(h.quantile(0.75), 3);
        assert_eq!(h.quantile(0.99), 7);
        assert_eq!(h.buckets(), vec![(3, 3, 3), (7, 7, 1)]);
    }

    #[test]
    fn merge_adds() {
        let (mut a, mut b) = (Histogram::default(), Histogram::default());
        a.record(10);
        b.record(1_000_000);
        a.merge(&b);
        assert_eq!(a.count(), 2);
        assert_eq!(a.max(), 1_000_000);
        assert_eq!(a.summary().min, 10);
    }
}
