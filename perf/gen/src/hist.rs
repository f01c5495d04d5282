//! Latency histogram: log-linear buckets (8 sub-buckets per power of two, about 12%
//! resolution) over nanoseconds, fixed size, no allocation per sample.

use serde::Serialize;

const SUB: u32 = 8;
const SUB_BITS: u32 = 3;
const BUCKETS: usize = (64 * SUB) as usize;

/// Counts of samples by bucket.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    n: u64,
    min: u64,
    max: u64,
    sum: u128,
}

/// Percentiles of a histogram, in nanoseconds (upper bucket bounds, exact min/max).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub samples: u64,
    pub min_ns: u64,
    pub mean_ns: u64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
}

fn bucket(v: u64) -> usize {
    if v < u64::from(SUB) {
        return usize::try_from(v).unwrap_or(0);
    }
    let exp = 63 - v.leading_zeros(); // >= SUB_BITS
    let sub = (v >> (exp - SUB_BITS)) & u64::from(SUB - 1);
    usize::try_from(u64::from((exp - SUB_BITS + 1) * SUB) + sub).unwrap_or(BUCKETS - 1)
}

/// Largest value that falls in bucket `b`.
fn upper(b: usize) -> u64 {
    let b = u32::try_from(b).unwrap_or(u32::MAX);
    if b < SUB {
        return u64::from(b);
    }
    let exp = b / SUB - 1 + SUB_BITS;
    let sub = u64::from(b % SUB);
    let lo = (u64::from(SUB) + sub) << (exp - SUB_BITS);
    lo + (1u64 << (exp - SUB_BITS)) - 1
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            n: 0,
            min: u64::MAX,
            max: 0,
            sum: 0,
        }
    }
}

impl Histogram {
    pub fn record(&mut self, ns: u64) {
        self.counts[bucket(ns).min(BUCKETS - 1)] += 1;
        self.n += 1;
        self.min = self.min.min(ns);
        self.max = self.max.max(ns);
        self.sum += u128::from(ns);
    }

    /// Adds the samples of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.n += other.n;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    pub fn len(&self) -> u64 {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The value at quantile `q` (0..=1): the upper bound of its bucket, capped by the
    /// largest sample.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.n == 0 {
            return 0;
        }
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "rank of a sample count"
        )]
        let rank = ((q * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut seen = 0;
        for (b, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return upper(b).min(self.max).max(self.min);
            }
        }
        self.max
    }

    pub fn summary(&self) -> Summary {
        Summary {
            samples: self.n,
            min_ns: if self.n == 0 { 0 } else { self.min },
            mean_ns: if self.n == 0 {
                0
            } else {
                u64::try_from(self.sum / u128::from(self.n)).unwrap_or(u64::MAX)
            },
            p50_ns: self.quantile(0.5),
            p90_ns: self.quantile(0.9),
            p99_ns: self.quantile(0.99),
            p999_ns: self.quantile(0.999),
            max_ns: self.max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_values_in_order_with_bounded_error() {
        let mut last = 0;
        for v in (0..100_000u64).chain([1 << 40, u64::MAX / 2]) {
            let b = bucket(v);
            assert!(b >= last, "bucket order at {v}");
            last = b;
            assert!(upper(b) >= v, "{v} above its bucket's bound {}", upper(b));
            assert!(
                upper(b) - v <= v / 8 + 1,
                "{v}: bound {} too loose",
                upper(b)
            );
        }
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = Histogram::default();
        for v in 1..=1000u64 {
            h.record(v * 1000); // 1 us .. 1 ms, uniform
        }
        let s = h.summary();
        assert_eq!(s.samples, 1000);
        assert_eq!((s.min_ns, s.max_ns), (1000, 1_000_000));
        assert_eq!(s.mean_ns, 500_500);
        for (got, want) in [
            (s.p50_ns, 500_000),
            (s.p90_ns, 900_000),
            (s.p99_ns, 990_000),
        ] {
            assert!(got >= want && got <= want + want / 8, "{got} vs {want}");
        }
    }

    #[test]
    fn merge_equals_recording_everything_in_one() {
        let (mut a, mut b, mut all) = (
            Histogram::default(),
            Histogram::default(),
            Histogram::default(),
        );
        for v in 0..5000u64 {
            let x = v * v % 100_003;
            if v % 3 == 0 {
                a.record(x)
            } else {
                b.record(x)
            }
            all.record(x);
        }
        a.merge(&b);
        assert_eq!(a.summary(), all.summary());
        a.merge(&Histogram::default());
        assert_eq!(
            a.summary(),
            all.summary(),
            "merging an empty one changes nothing"
        );
    }

    #[test]
    fn empty_histogram_reports_zeros() {
        let s = Histogram::default().summary();
        assert_eq!((s.samples, s.p99_ns, s.min_ns), (0, 0, 0));
    }
}
