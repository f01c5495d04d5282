//! Code built for the CPU the program runs on (runtime dispatch): the default build
//! targets the x86-64 baseline (SSE2) and must start on any x86-64 box; the loops here
//! are compiled twice, once more inside a `#[target_feature(enable = "avx2")]` wrapper,
//! and `is_x86_feature_detected!` picks one per call (the standard library caches the
//! CPUID answer: a load and a branch).

/// Bytes per step of [`ones_sum`].
pub const ONES_STEP: usize = 64;

/// Steps [`ones_sum`] takes before emptying its 32-bit lanes into the 64-bit total: a step
/// adds at most 2 · 0xFFFF to a lane, so 32 768 steps stay below 2^32.
const ONES_RUN: usize = 32_768;

/// The ones'-complement sum (RFC 1071) of whole 64-byte steps, as the 16-bit words of
/// the bytes read little-endian (native order on x86), not folded: the total of all those
/// words. Equal modulo 0xFFFF to any other way of summing them; the caller folds. Runs the
/// AVX2 build of the loop when the CPU has AVX2.
#[inline]
pub fn ones_sum(steps: &[[u8; ONES_STEP]]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (detected just above), the one requirement of calling
        // a function compiled with `target_feature(enable = "avx2")`.
        return unsafe { ones_sum_avx2(steps) };
    }
    ones_sum_loop(steps)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn ones_sum_avx2(steps: &[[u8; ONES_STEP]]) -> u64 {
    ones_sum_loop(steps)
}

/// [`ones_sum`]'s loop, in a form the compiler vectorizes: each 32-bit little-endian word
/// `w` adds its two 16-bit words (`w & 0xFFFF`, `w >> 16`) to one of sixteen 32-bit
/// lanes (no carries to track: a lane cannot overflow within [`ONES_RUN`] steps), the
/// lanes emptied into the total after each run. SSE2: four 128-bit accumulators; AVX2:
/// two 256-bit ones, a 64-byte step in about eight vector operations.
#[inline(always)]
fn ones_sum_loop(steps: &[[u8; ONES_STEP]]) -> u64 {
    let mut total = 0u64;
    for run in steps.chunks(ONES_RUN) {
        let mut lanes = [0u32; ONES_STEP / 4];
        for step in run {
            for (i, lane) in lanes.iter_mut().enumerate() {
                let w = u32::from_le_bytes([
                    step[4 * i],
                    step[4 * i + 1],
                    step[4 * i + 2],
                    step[4 * i + 3],
                ]);
                *lane += (w & 0xffff) + (w >> 16);
            }
        }
        total += lanes.iter().map(|&l| u64::from(l)).sum::<u64>();
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 16-bit little-endian words, one by one.
    fn reference(steps: &[[u8; ONES_STEP]]) -> u64 {
        steps
            .iter()
            .flat_map(|s| s.chunks_exact(2))
            .map(|w| u64::from(u16::from_le_bytes([w[0], w[1]])))
            .sum()
    }

    #[test]
    fn the_sum_is_the_word_sum_in_both_builds() {
        let steps: Vec<[u8; ONES_STEP]> = (0..100usize)
            .map(|i| std::array::from_fn(|j| ((i * 151 + j * 7) % 256).to_le_bytes()[0]))
            .collect();
        assert_eq!(ones_sum(&steps), reference(&steps));
        assert_eq!(ones_sum_loop(&steps), reference(&steps));
        assert_eq!(ones_sum(&[]), 0);
    }

    /// Past one run (its lanes emptied into the total) with every word at its maximum.
    #[test]
    fn lanes_are_emptied_before_they_overflow() {
        let steps = vec![[0xffu8; ONES_STEP]; 2 * ONES_RUN + 3];
        assert_eq!(ones_sum(&steps), reference(&steps));
        let words = u64::try_from((2 * ONES_RUN + 3) * 32).unwrap();
        assert_eq!(ones_sum(&steps), words * 0xffff);
    }
}
