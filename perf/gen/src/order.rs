//! The order in which flows are sent. Round robin (flow 0, 1, 2, ...) lets the device's
//! hardware prefetcher walk its connection table in step with the traffic (entries are
//! often laid out in insertion order), which hides the table misses a real mix of flows
//! would cost. So the default is a random permutation of the flows, repeated; Zipf gives
//! a skewed mix (a few heavy flows, a long tail).
//!
//! The sequence is computed before sending (a table of flow numbers, 4 bytes each, read
//! in order): the generator pays a sequential read per frame, the device sees the
//! random order. Each lane (queue) takes every `lanes`-th entry.

use std::sync::Arc;

/// The largest sequence table: 16 Mi entries (64 MiB). More flows need `--order seq`.
pub const MAX_TABLE: u64 = 1 << 24;

/// How flows follow each other.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Flow 0, 1, 2, ..., N-1, 0, ...
    Seq,
    /// A random permutation of the N flows, repeated: each flow once per N frames.
    Random,
    /// Zipf with exponent `s`: flow of rank r gets a share proportional to 1/r^s. The
    /// ranks are scattered over the flow numbers, and the sequence holds each flow
    /// exactly its expected number of times (rounded), shuffled.
    Zipf(f64),
}

impl Order {
    /// Parses `seq`, `random`, `zipf` (exponent 1) or `zipf:S`.
    pub fn parse(s: &str) -> Result<Order, String> {
        match s {
            "seq" => Ok(Order::Seq),
            "random" => Ok(Order::Random),
            "zipf" => Ok(Order::Zipf(1.0)),
            _ => match s.strip_prefix("zipf:").map(str::parse::<f64>) {
                Some(Ok(e)) if e > 0.0 && e <= 10.0 => Ok(Order::Zipf(e)),
                _ => Err(format!(
                    "'{s}' is not seq, random, zipf or zipf:S with 0 < S <= 10"
                )),
            },
        }
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): a small, fast, well-mixed 64-bit generator;
/// plenty for shuffling, and reproducible from its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`), by multiply-high (Lemire): no division, and a bias
    /// below n / 2^64, far under anything a benchmark could notice.
    pub fn below(&mut self, n: u64) -> u64 {
        u64::try_from((u128::from(self.next_u64()) * u128::from(n)) >> 64).unwrap_or(0)
    }
}

/// Fisher-Yates shuffle.
fn shuffle(v: &mut [u32], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        let j = usize::try_from(rng.below(i as u64 + 1)).unwrap_or(0);
        v.swap(i, j);
    }
}

/// The sequence of flow numbers one run sends.
#[derive(Debug, Clone)]
pub struct Sequence {
    flows: u64,
    /// `None`: sequential; else the flow number of each position.
    table: Option<Arc<[u32]>>,
}

/// Entries of a Zipf sequence over `flows` flows: 4 per flow, at least 64 Ki and at most
/// [`MAX_TABLE`], so the heaviest flows repeat often and the tail still shows up.
pub fn zipf_len(flows: u64) -> u64 {
    (flows.saturating_mul(4)).clamp(1 << 16, MAX_TABLE)
}

/// How many times each rank (0-based) appears in a Zipf sequence of `len` entries over
/// `n` ranks: `len * p(r)` rounded down, the remainder given to the ranks with the largest
/// fractions (largest remainder), so the counts add up to `len` exactly.
#[allow(
    clippy::cast_possible_truncation,
    reason = "floor of a share of len (<= 2^24) fits u32"
)]
pub fn zipf_counts(n: u64, exponent: f64, len: u64) -> Vec<u32> {
    let n_us = usize::try_from(n).unwrap_or(0);
    let weight = |r: usize| ((r + 1) as f64).powf(-exponent);
    let total: f64 = (0..n_us).map(weight).sum();
    let mut counts = Vec::with_capacity(n_us);
    let mut frac: Vec<(f64, usize)> = Vec::with_capacity(n_us);
    let mut given = 0u64;
    for r in 0..n_us {
        let want = len as f64 * weight(r) / total;
        let c = want.floor();
        counts.push(c as u32);
        given += c as u64;
        frac.push((want - c, r));
    }
    // Largest fractions first; ties to the lower (heavier) rank.
    frac.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, r) in frac.iter().take(usize::try_from(len - given).unwrap_or(0)) {
        counts[r] += 1;
    }
    counts
}

/// A step coprime with `n` near `n * 0.618` (the golden ratio spreads neighbours apart):
/// `rank * step mod n` is then a bijection scattering ranks over the flow numbers.
#[allow(clippy::cast_possible_truncation, reason = "0.618 n is below n, a u64")]
fn scatter_step(n: u64) -> u64 {
    let mut s = ((n as f64 * 0.618_033_988_75) as u64).max(1);
    while gcd(s, n) != 1 {
        s += 1;
    }
    s
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Sequence {
    /// The sequence for `flows` flows (at least 1) in `order`, shuffled with `seed`.
    pub fn new(order: Order, flows: u64, seed: u64) -> Result<Sequence, String> {
        if flows == 0 {
            return Err("no flows".into());
        }
        if order != Order::Seq && flows > MAX_TABLE {
            return Err(format!(
                "--order {order:?}: at most {MAX_TABLE} flows (the sequence table); use --order seq"
            ));
        }
        let mut rng = Rng::new(seed);
        let table: Vec<u32> = match order {
            Order::Seq => return Ok(Sequence { flows, table: None }),
            Order::Random => {
                // flows <= MAX_TABLE (checked above), so every number fits u32.
                let n = u32::try_from(flows).unwrap_or(u32::MAX);
                let mut v: Vec<u32> = (0..n).collect();
                shuffle(&mut v, &mut rng);
                v
            }
            Order::Zipf(e) => {
                let len = zipf_len(flows);
                let step = scatter_step(flows);
                let mut v = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
                for (rank, &c) in zipf_counts(flows, e, len).iter().enumerate() {
                    let flow = (rank as u128) * u128::from(step) % u128::from(flows);
                    let flow = u32::try_from(flow).unwrap_or(0);
                    v.extend(std::iter::repeat_n(flow, c as usize));
                }
                shuffle(&mut v, &mut rng);
                v
            }
        };
        Ok(Sequence {
            flows,
            table: Some(table.into()),
        })
    }

    /// Positions before the sequence repeats.
    pub fn len(&self) -> u64 {
        self.table.as_ref().map_or(self.flows, |t| t.len() as u64)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The flow at position `i` (wrapping).
    pub fn flow(&self, i: u64) -> u64 {
        let i = i % self.len();
        match &self.table {
            None => i,
            Some(t) => u64::from(t[usize::try_from(i).unwrap_or(0)]),
        }
    }

    /// Lane `lane` of `lanes`: positions lane, lane + lanes, ... without a division per
    /// frame.
    pub fn cursor(&self, lane: u64, lanes: u64) -> Cursor {
        let len = self.len();
        Cursor {
            table: self.table.clone(),
            pos: lane % len,
            step: lanes % len,
            len,
        }
    }
}

/// One lane's walk over a [`Sequence`].
#[derive(Debug, Clone)]
pub struct Cursor {
    table: Option<Arc<[u32]>>,
    pos: u64,
    step: u64,
    len: u64,
}

impl Cursor {
    /// The next flow number (always below the flow count).
    #[inline]
    pub fn next_flow(&mut self) -> u64 {
        let f = match &self.table {
            None => self.pos,
            Some(t) => u64::from(t[usize::try_from(self.pos).unwrap_or(0)]),
        };
        self.pos += self.step;
        if self.pos >= self.len {
            self.pos -= self.len;
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ix(x: u64) -> usize {
        usize::try_from(x).unwrap()
    }

    fn visits(seq: &Sequence, flows: u64, n: u64) -> Vec<u64> {
        let mut v = vec![0u64; ix(flows)];
        let mut c = seq.cursor(0, 1);
        for _ in 0..n {
            v[ix(c.next_flow())] += 1;
        }
        v
    }

    #[test]
    fn random_order_visits_every_flow_once_per_period() {
        for flows in [1u64, 2, 7, 1000, 65_537] {
            let s = Sequence::new(Order::Random, flows, 42).unwrap();
            assert_eq!(s.len(), flows);
            // Three periods: every flow exactly three times.
            assert!(
                visits(&s, flows, 3 * flows).iter().all(|&c| c == 3),
                "{flows}"
            );
        }
        // Not round robin: most neighbours in the sequence are not consecutive flows.
        let s = Sequence::new(Order::Random, 10_000, 1).unwrap();
        let mut c = s.cursor(0, 1);
        let mut prev = c.next_flow();
        let mut adjacent = 0;
        for _ in 1..10_000 {
            let f = c.next_flow();
            adjacent += u32::from(f == prev + 1);
            prev = f;
        }
        assert!(
            adjacent < 100,
            "{adjacent} of 10 000 steps went to the next flow"
        );
        // Reproducible from the seed, different for another seed.
        let again = Sequence::new(Order::Random, 10_000, 1).unwrap();
        let other = Sequence::new(Order::Random, 10_000, 2).unwrap();
        assert!((0..100).all(|i| s.flow(i) == again.flow(i)));
        assert!((0..100).any(|i| s.flow(i) != other.flow(i)));
    }

    #[test]
    fn lanes_split_the_sequence_between_them() {
        let s = Sequence::new(Order::Random, 1000, 3).unwrap();
        let mut seen = vec![0u32; 1000];
        for lane in 0..3 {
            let mut c = s.cursor(lane, 3);
            for k in 0..1000 {
                let f = c.next_flow();
                assert_eq!(f, s.flow(lane + 3 * k), "lane {lane} position {k}");
                seen[ix(f)] += 1;
            }
        }
        // 3 lanes x 1000 frames cover 3 periods: every flow three times.
        assert!(seen.iter().all(|&c| c == 3));
        let seq = Sequence::new(Order::Seq, 5, 0).unwrap();
        let mut c = seq.cursor(1, 2);
        let got: Vec<u64> = (0..5).map(|_| c.next_flow()).collect();
        assert_eq!(got, [1, 3, 0, 2, 4], "wraps modulo the flow count");
    }

    #[test]
    fn zipf_order_visits_each_flow_its_expected_number_of_times() {
        let flows = 1000u64;
        let s = Sequence::new(Order::Zipf(1.0), flows, 7).unwrap();
        let len = zipf_len(flows);
        assert_eq!(s.len(), len);
        let v = visits(&s, flows, len);
        assert_eq!(v.iter().sum::<u64>(), len);
        let h: f64 = (1..=flows).map(|r| 1.0 / r as f64).sum();
        let step = scatter_step(flows);
        for rank in 0..flows {
            let flow = ix(rank * step % flows);
            let want = len as f64 / ((rank + 1) as f64 * h);
            assert!(
                (v[flow] as f64 - want).abs() < 1.0,
                "rank {rank} (flow {flow}): {} visits, expected {want:.2}",
                v[flow]
            );
        }
        // The heaviest rank is not flow 0's neighbourhood only: ranks are scattered.
        assert_ne!(step, 1);
        // A steeper exponent concentrates more on the head.
        let steep = zipf_counts(flows, 2.0, len);
        assert!(steep[0] > zipf_counts(flows, 1.0, len)[0]);
        assert_eq!(steep.iter().map(|&c| u64::from(c)).sum::<u64>(), len);
    }

    #[test]
    fn order_parses_and_refuses() {
        assert_eq!(Order::parse("seq"), Ok(Order::Seq));
        assert_eq!(Order::parse("random"), Ok(Order::Random));
        assert_eq!(Order::parse("zipf"), Ok(Order::Zipf(1.0)));
        assert_eq!(Order::parse("zipf:0.9"), Ok(Order::Zipf(0.9)));
        for bad in ["rr", "zipf:0", "zipf:-1", "zipf:x", "zipf:11"] {
            assert!(Order::parse(bad).is_err(), "{bad}");
        }
        assert!(Sequence::new(Order::Random, MAX_TABLE + 1, 0).is_err());
        assert!(Sequence::new(Order::Seq, MAX_TABLE + 1, 0).is_ok());
        assert!(Sequence::new(Order::Seq, 0, 0).is_err());
    }

    #[test]
    fn rng_below_stays_in_range_and_spreads() {
        let mut r = Rng::new(9);
        let mut hist = [0u32; 10];
        for _ in 0..100_000 {
            let x = r.below(10);
            hist[ix(x)] += 1;
        }
        assert!(
            hist.iter().all(|&c| (9_000..11_000).contains(&c)),
            "{hist:?}"
        );
        assert_eq!(r.below(1), 0);
    }
}
