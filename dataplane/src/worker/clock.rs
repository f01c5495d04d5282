//! TSC readings to nanoseconds for the worker loops, with one multiply and one shift.
//!
//! The loops read the TSC once per iteration (idle or not) and need nanoseconds for
//! conntrack deadlines and ticks. `tsc * 1e9 / hz` in 128 bits is a call to the
//! 128-bit division routine every iteration; [`TscClock`] precomputes
//! `mult = floor(1e9 * 2^shift / hz)` with the largest `shift` that keeps `mult` in 64
//! bits (so `mult >= 2^63`), and converts with `(tsc * mult) >> shift` (a 64x64->128
//! multiply and a shift).
//!
//! Exactness: `mult / 2^shift` undershoots `1e9 / hz` by less than `2^-shift <= 1e9 /
//! (hz * 2^63)`, so the result is at most `exact / 2^63 + 1` below the exact
//! (floored) conversion and never above it: for any uptime below 2^63 ns (292 years)
//! it is the exact value or one nanosecond less, and it never decreases as the TSC
//! grows. Results past `u64::MAX` ns saturate, as the exact conversion's do.

/// A TSC frequency's conversion to nanoseconds (see the module text for the bound).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TscClock {
    mult: u64,
    shift: u32,
}

impl TscClock {
    /// The conversion for a TSC running at `hz` (0 is taken as 1).
    pub fn new(hz: u64) -> Self {
        let hz = u128::from(hz.max(1));
        // 1e9 < 2^29.9, so 1e9 << 98 still fits 128 bits (and gives a multiplier of at
        // least 2^63 even for hz = 2^64 - 1); a shift of 34 already does for hz = 1, so
        // the loop ends there at the latest.
        let mut shift = 98u32;
        loop {
            let mult = (1_000_000_000u128 << shift) / hz;
            match u64::try_from(mult) {
                Ok(mult) => return Self { mult, shift },
                Err(_) => shift -= 1,
            }
        }
    }

    /// Nanoseconds since the TSC started, from a reading.
    #[inline]
    pub fn ns(self, tsc: u64) -> u64 {
        let p = u128::from(tsc) * u128::from(self.mult);
        u64::try_from(p >> self.shift).unwrap_or(u64::MAX)
    }
}

/// The exact conversion (`floor(tsc * 1e9 / hz)`, saturating): the reference the
/// multiply-shift is tested against, and what the loops ran before.
pub fn tsc_to_ns_exact(tsc: u64, hz: u64) -> u64 {
    u64::try_from(u128::from(tsc) * 1_000_000_000 / u128::from(hz.max(1))).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The documented bound: never above the exact value, at most `exact / 2^63 + 1`
    /// below it (saturated values aside).
    fn within_bound(tsc: u64, hz: u64) -> Result<(), TestCaseError> {
        let fast = TscClock::new(hz).ns(tsc);
        let exact = tsc_to_ns_exact(tsc, hz);
        prop_assert!(fast <= exact, "tsc {tsc} hz {hz}: {fast} > exact {exact}");
        prop_assert!(
            exact - fast <= (exact >> 63) + 1,
            "tsc {tsc} hz {hz}: {fast} vs exact {exact}"
        );
        Ok(())
    }

    #[test]
    fn the_multiplier_uses_64_bits() {
        for hz in [1, 2, 999, 1_000_000, 2_100_000_000, 3_000_000_000, u64::MAX] {
            let c = TscClock::new(hz);
            assert!(c.mult >= 1 << 63, "hz {hz}: {c:?}");
        }
    }

    #[test]
    fn a_whole_second_of_ticks_is_one_second() {
        for hz in [1_000_000, 2_100_000_000, 2_494_140_000, 3_000_000_000] {
            let c = TscClock::new(hz);
            assert!((999_999_999..=1_000_000_000).contains(&c.ns(hz)), "hz {hz}");
            assert_eq!(c.ns(0), 0);
        }
    }

    #[test]
    fn the_ends_of_the_range() {
        for hz in [1, 1_000_000, 3_000_000_000, u64::MAX] {
            within_bound(u64::MAX, hz).unwrap();
            within_bound(u64::MAX - 1, hz).unwrap();
            within_bound(1, hz).unwrap();
        }
        // Saturates rather than wrapping: 2^64 ticks at 1 Hz is far past u64::MAX ns.
        assert_eq!(TscClock::new(1).ns(u64::MAX), u64::MAX);
    }

    proptest! {
        /// Any reading, any frequency: within the bound of the exact conversion.
        #[test]
        fn any_reading_is_within_the_bound(tsc in any::<u64>(), hz in 1u64..) {
            within_bound(tsc, hz)?;
        }

        /// What the worker sees: TSCs of 1 MHz to 100 GHz, up to 30 years of uptime
        /// (`exact` below 2^63 ns there): the exact value or 1 ns less, and monotone.
        #[test]
        fn thirty_years_of_uptime_are_exact_to_a_nanosecond(
            hz in 1_000_000u64..100_000_000_000,
            at in 0u64..=1 << 40,
            step in 0u64..1_000_000,
        ) {
            // `at / 2^40` of the way into 30 years.
            let years30 = u128::from(hz) * 30 * 365 * 86_400;
            let tsc = u64::try_from((years30 * u128::from(at)) >> 40).unwrap_or(u64::MAX);
            let c = TscClock::new(hz);
            let exact = tsc_to_ns_exact(tsc, hz);
            prop_assert!(exact < 1 << 63);
            let fast = c.ns(tsc);
            prop_assert!(fast == exact || fast + 1 == exact, "hz {hz} tsc {tsc}: {fast} vs {exact}");
            prop_assert!(c.ns(tsc.saturating_add(step)) >= fast);
        }
    }
}
