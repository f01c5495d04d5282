//! Packet pacing on the TSC. A rate of 0 means "as fast as the port takes them".

/// Releases packets at `rate` per second, measured in TSC cycles. Credit does not build
/// up across stalls beyond one burst, so a stall is not followed by a burst far above the
/// rate.
#[derive(Debug, Clone)]
pub struct Pacer {
    /// TSC cycles per packet, in 1/65536 (fixed point, so high rates keep precision).
    step: u128,
    /// Next release time, TSC in 1/65536.
    next: u128,
    max_burst: usize,
}

impl Pacer {
    /// `rate` packets per second (0: unlimited), `hz` TSC cycles per second, starting at
    /// `now`, releasing at most `max_burst` at once.
    pub fn new(rate: u64, hz: u64, now: u64, max_burst: usize) -> Self {
        let step = if rate == 0 {
            0
        } else {
            (u128::from(hz) << 16) / u128::from(rate)
        };
        Pacer {
            step,
            next: u128::from(now) << 16,
            max_burst,
        }
    }

    /// How many packets may go at TSC `now` (at most the burst size); the caller reports
    /// how many it sent with [`sent`](Self::sent).
    pub fn due(&mut self, now: u64) -> usize {
        if self.step == 0 {
            return self.max_burst;
        }
        let now = u128::from(now) << 16;
        if now < self.next {
            return 0;
        }
        let late = (now - self.next) / self.step + 1;
        let burst = self.max_burst as u128;
        if late > burst {
            // Behind by more than a burst (a stall): forget the missed slots.
            self.next = now - (burst - 1) * self.step;
        }
        usize::try_from(late.min(burst)).unwrap_or(self.max_burst)
    }

    /// Records `n` packets sent.
    pub fn sent(&mut self, n: usize) {
        self.next += self.step * n as u128;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Simulated clock: poll every 100 cycles for 1 s at 1 GHz and count what is released.
    fn released(rate: u64, burst: usize, poll: u64) -> u64 {
        let hz = 1_000_000_000;
        let mut p = Pacer::new(rate, hz, 0, burst);
        let mut total = 0u64;
        let mut now = 0;
        while now < hz {
            let n = p.due(now);
            p.sent(n);
            total += n as u64;
            now += poll;
        }
        total
    }

    #[test]
    fn releases_the_rate_it_is_given() {
        for rate in [1_000, 1_000_000, 3_333_333] {
            let got = released(rate, 32, 100);
            assert!(got.abs_diff(rate) <= 32, "rate {rate}: released {got}");
        }
    }

    #[test]
    fn a_slow_poller_gets_bursts_but_no_more_than_the_rate() {
        // Polling every 50 us at 1 Mpps: 50 packets due each time, burst caps at 32, and
        // missed slots are not made up later. The poll at t = 0 finds only the first slot.
        let got = released(1_000_000, 32, 50_000);
        assert_eq!(got, 1 + 32 * 19_999);
    }

    #[test]
    fn unlimited_releases_full_bursts() {
        let mut p = Pacer::new(0, 1_000, 5, 32);
        assert_eq!(p.due(5), 32);
        p.sent(32);
        assert_eq!(p.due(5), 32);
    }

    #[test]
    fn nothing_before_the_first_slot() {
        let mut p = Pacer::new(1_000, 1_000_000, 0, 32);
        assert_eq!(p.due(0), 1);
        p.sent(1);
        assert_eq!(p.due(999), 0);
        assert_eq!(p.due(1_000), 1);
    }
}
