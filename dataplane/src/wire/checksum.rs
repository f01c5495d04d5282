//! The Internet checksum (RFC 1071), pseudo-header sums for TCP/UDP/ICMPv6 over IPv4
//! (RFC 793 §3.1, RFC 768) and IPv6 (RFC 8200 §8.1), and incremental updates (RFC 1624).
//!
//! Sums are carried as `u32` partial sums of big-endian 16-bit words, folded only at the
//! end, so a caller can add a pseudo-header sum to a data sum. All functions are total:
//! none panics on any input.

/// Partial ones'-complement sum of `data` as big-endian 16-bit words; an odd trailing byte
/// is padded with zero (RFC 1071 §4.1). Not folded; add sums with [`add`].
#[inline]
pub fn sum(data: &[u8]) -> u32 {
    u32::from(fold(sum_native(data)).swap_bytes())
}

/// [`sum`] in native (little-endian) byte order: the same sum with the bytes of each
/// 16-bit word swapped (RFC 1071 §2(B): the sum does not depend on the byte order), so
/// `fold(..).swap_bytes()` is the big-endian sum, and [`verify`] works on it as it is
/// (0xFFFF reads the same both ways). Partial sums of this kind add with [`add`]; a
/// big-endian 16-bit word `w` joins them as `w.swap_bytes()`.
///
/// Regions of [`WIDE_MIN`] bytes and more (a full-size segment's L4 checksum) go to a
/// vector loop (`dpdk_bindings::cpu::ones_sum`: AVX2 where the CPU has it, SSE2
/// otherwise; without the `dpdk` feature the scalar loop); short ones (headers, small
/// segments) to the scalar loop, inlined into the caller.
#[inline]
pub fn sum_native(data: &[u8]) -> u32 {
    if data.len() < WIDE_MIN {
        return sum_scalar(data);
    }
    sum_long(data)
}

/// Shortest region [`sum_native`] gives to the vector loop: below it the loop's set-up and
/// final reduction cost more than they save (checksum bench).
pub const WIDE_MIN: usize = 128;

/// [`sum_native`] of a long region: its whole 64-byte steps by the vector loop, the rest
/// by [`sum_scalar`].
#[cfg(feature = "dpdk")]
#[inline(never)]
fn sum_long(data: &[u8]) -> u32 {
    use dpdk_bindings::cpu::{ONES_STEP, ones_sum};
    let (steps, rest) = data.as_chunks::<ONES_STEP>();
    add(fold64(ones_sum(steps)), sum_scalar(rest))
}

#[cfg(not(feature = "dpdk"))]
fn sum_long(data: &[u8]) -> u32 {
    sum_scalar(data)
}

/// [`sum_native`] by 64-bit words with add-with-carry, for any length (what `sum_native`
/// uses below [`WIDE_MIN`] bytes and for the tail of a long region; public for the
/// benchmark that compares it with the vector loop).
#[inline]
pub fn sum_scalar(data: &[u8]) -> u32 {
    // 64-bit words summed in `u128`s (one add and one add-with-carry per word; the
    // high halves count the carries, at most 2^61 in all), then the carries added back
    // (end-around): 2^16 ≡ 1 modulo 0xFFFF, so a 64-bit word adds its four 16-bit words
    // (RFC 1071 §2(A)). A little-endian load of the big-endian words [a b] gives
    // b·2^8 + a; an odd trailing byte `a` (a·2^8 big-endian) is `a` here.
    // Blocks of 32 bytes first, in two independent sums (fewer loop steps per byte,
    // and the two add-with-carry chains run side by side), then single words.
    let rd = |w: &[u8], i: usize| {
        u128::from(u64::from_le_bytes([
            w[i],
            w[i + 1],
            w[i + 2],
            w[i + 3],
            w[i + 4],
            w[i + 5],
            w[i + 6],
            w[i + 7],
        ]))
    };
    let (mut acc, mut acc2): (u128, u128) = (0, 0);
    let mut blocks = data.chunks_exact(32);
    for b in &mut blocks {
        acc += rd(b, 0) + rd(b, 8);
        acc2 += rd(b, 16) + rd(b, 24);
    }
    acc += acc2;
    let mut words = blocks.remainder().chunks_exact(8);
    for w in &mut words {
        acc += rd(w, 0);
    }
    let mut rest = words.remainder();
    let mut tail: u64 = 0;
    if rest.len() >= 4 {
        tail += u64::from(u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]));
        rest = &rest[4..];
    }
    if rest.len() >= 2 {
        tail += u64::from(u16::from_le_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
    }
    if let [last] = rest {
        tail += u64::from(*last);
    }
    acc += u128::from(tail);
    #[allow(clippy::cast_possible_truncation)] // the two halves of the sum, on purpose
    let (lo, carries) = (acc as u64, (acc >> 64) as u64);
    let (s, c) = lo.overflowing_add(carries);
    // After a wrap `s` is below the carries: adding the end-around 1 cannot overflow.
    fold64(s + u64::from(c))
}

/// [`sum_native`] of an IPv4 header without options (20 bytes): the scalar loop forced
/// inline, where the constant length unrolls it to three loads and an add-with-carry
/// chain. The fast path verifies every packet's header with it (out of line, the call
/// cost about as much as the sum).
#[inline(always)]
pub fn sum_ipv4_header(h: &[u8; 20]) -> u32 {
    sum_scalar(h)
}

/// Folds 64 bits to 32 with end-around carries: two steps always suffice (after the
/// first the value is at most 2^33 - 2, after the second below 2^32), and a value already
/// below 2^32 is unchanged, as with a loop.
#[inline]
fn fold64(acc: u64) -> u32 {
    let acc = (acc & 0xffff_ffff) + (acc >> 32);
    let acc = (acc & 0xffff_ffff) + (acc >> 32);
    #[allow(clippy::cast_possible_truncation)] // lossless: below 2^32 after two steps
    let folded = acc as u32;
    folded
}

/// Adds two partial sums (ones'-complement, end-around carry).
#[inline]
pub fn add(a: u32, b: u32) -> u32 {
    let (s, carry) = a.overflowing_add(b);
    s + u32::from(carry)
}

/// Folds a partial sum to 16 bits (not complemented). Two steps always suffice (below
/// 2^17, then below 2^16), and a value already below 2^16 is unchanged.
#[inline]
pub fn fold(s: u32) -> u16 {
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    // Lossless after two steps.
    u16::try_from(s).unwrap_or(u16::MAX)
}

/// The checksum field value for a region whose partial sum (checksum field taken as zero)
/// is `s`: the ones' complement of the folded sum.
pub fn finish(s: u32) -> u16 {
    !fold(s)
}

/// The checksum of `data` (with its checksum field zeroed by the caller).
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum(data))
}

/// Whether a region whose partial sum *including* its checksum field is `s` verifies.
pub fn verify(s: u32) -> bool {
    fold(s) == 0xffff
}

/// Pseudo-header sum for IPv4 (source, destination, zero, protocol, L4 length).
pub fn pseudo_v4(src: [u8; 4], dst: [u8; 4], proto: u8, l4_len: u16) -> u32 {
    let mut s = sum(&src);
    s = add(s, sum(&dst));
    add(s, u32::from(proto) + u32::from(l4_len))
}

/// Pseudo-header sum for IPv6 (source, destination, upper-layer length, next header).
pub fn pseudo_v6(src: &[u8; 16], dst: &[u8; 16], proto: u8, l4_len: u32) -> u32 {
    let mut s = add(sum(src), sum(dst));
    s = add(s, (l4_len >> 16) + (l4_len & 0xffff));
    add(s, u32::from(proto))
}

/// RFC 1624 eqn. 3: the new checksum after the covered 16-bit word `old` became `new`.
/// `HC' = ~(~HC + ~m + m')`.
pub fn update16(csum: u16, old: u16, new: u16) -> u16 {
    let s = u32::from(!csum) + u32::from(!old) + u32::from(new);
    !fold(s)
}

/// RFC 1624 update for a covered 32-bit field (two words).
pub fn update32(csum: u16, old: u32, new: u32) -> u16 {
    update_bytes(csum, &old.to_be_bytes(), &new.to_be_bytes())
}

/// RFC 1624 update for a covered 16-byte field (an IPv6 address).
pub fn update_addr16(csum: u16, old: &[u8; 16], new: &[u8; 16]) -> u16 {
    update_bytes(csum, old, new)
}

/// RFC 1624 update for any covered field of even length that starts at an even offset
/// from the start of the checksummed region. `old` and `new` must be the same length;
/// extra bytes of the longer one are ignored.
pub fn update_bytes(csum: u16, old: &[u8], new: &[u8]) -> u16 {
    let mut s = u32::from(!csum);
    for (o, n) in old.chunks(2).zip(new.chunks(2)) {
        let o = u16::from_be_bytes([o[0], o.get(1).copied().unwrap_or(0)]);
        let n = u16::from_be_bytes([n[0], n.get(1).copied().unwrap_or(0)]);
        s = add(s, u32::from(!o) + u32::from(n));
    }
    !fold(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2 (folded).
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    /// Every 64-bit word carries out (all ones): the carries added back still give the
    /// 16-bit word sum (odd lengths included), and a run of zeros sums to zero, not to
    /// 0xFFFF.
    #[test]
    fn carries_of_long_runs_are_added_back() {
        for len in [8, 64, 1500, 9000, 65534, 65535] {
            let ones = vec![0xffu8; len];
            if len % 2 == 0 {
                assert_eq!(fold(sum_native(&ones)), 0xffff, "{len}");
            }
            let mut data = ones;
            data[len - 1] = 0xfe;
            let words = fold(data.chunks(2).fold(0, |s, w| {
                add(
                    s,
                    u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])),
                )
            }));
            assert_eq!(fold(sum(&data)), words, "{len}");
        }
        assert_eq!(sum_native(&[0; 1500]), 0);
    }

    /// A region far past the vector loop's run length (its lanes emptied on the way),
    /// every word at its maximum, and an odd tail: the same sum as the scalar loop.
    #[test]
    fn long_all_ones_regions_sum_as_the_scalar_loop() {
        let len = (4 << 20) + 77;
        let ones = vec![0xffu8; len];
        assert_eq!(fold(sum_native(&ones)), fold(sum_scalar(&ones)));
        assert_eq!(fold(sum_native(&ones[..len - 1])), 0xffff);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
    }

    #[test]
    fn ipv4_header_from_capture_verifies() {
        // IPv4 header of a ping from 198.18.0.1 to 198.18.0.2 (captured with tcpdump -xx).
        let hdr = [
            0x45, 0x00, 0x00, 0x54, 0x73, 0x03, 0x40, 0x00, 0x40, 0x01, 0x3b, 0x7e, 0xc6, 0x12,
            0x00, 0x01, 0xc6, 0x12, 0x00, 0x02,
        ];
        assert!(verify(sum(&hdr)));
        let mut zeroed = hdr;
        zeroed[10] = 0;
        zeroed[11] = 0;
        assert_eq!(checksum(&zeroed), 0x3b7e);
    }

    fn normalize(c: u16) -> u16 {
        if c == 0xffff { 0 } else { c }
    }

    proptest! {
        #[test]
        fn incremental_equals_recompute(
            mut data in proptest::collection::vec(any::<u8>(), 2..64),
            at in any::<prop::sample::Index>(),
            new in any::<[u8; 16]>(),
            width in prop::sample::select(vec![2usize, 4, 16]),
        ) {
            if data.len() % 2 == 1 { data.push(0); }
            prop_assume!(data.len() >= width);
            let words = (data.len() - width) / 2 + 1;
            let off = at.index(words) * 2;
            let before = checksum(&data);
            let old = data[off..off + width].to_vec();
            data[off..off + width].copy_from_slice(&new[..width]);
            let after = checksum(&data);
            let inc = match width {
                2 => update16(before, u16::from_be_bytes([old[0], old[1]]),
                              u16::from_be_bytes([new[0], new[1]])),
                4 => update32(before, u32::from_be_bytes([old[0], old[1], old[2], old[3]]),
                              u32::from_be_bytes([new[0], new[1], new[2], new[3]])),
                _ => update_addr16(before, old.as_slice().try_into().unwrap(), &new),
            };
            prop_assert_eq!(normalize(inc), normalize(after));
        }

        #[test]
        fn sum_equals_16_bit_word_sum(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let mut reference: u64 = 0;
            for w in data.chunks(2) {
                reference += u64::from(u16::from_be_bytes([w[0], w.get(1).copied().unwrap_or(0)]));
            }
            while reference > 0xffff {
                reference = (reference & 0xffff) + (reference >> 16);
            }
            prop_assert_eq!(u64::from(fold(sum(&data))), reference);
        }

        /// The fast path's header sum is `sum_native`'s (folded: the two may differ by a
        /// multiple of 0xFFFF before the fold), so verification agrees on every header.
        #[test]
        fn the_header_sum_is_the_native_sum(h in any::<[u8; 20]>()) {
            prop_assert_eq!(fold(sum_ipv4_header(&h)), fold(sum_native(&h)));
            prop_assert_eq!(verify(sum_ipv4_header(&h)), verify(sum_native(&h)));
        }

        /// The vector loop and the scalar loop agree on every length, at every start
        /// offset (the frame's fields are not aligned), around the `WIDE_MIN` switch.
        #[test]
        fn the_vector_sum_equals_the_scalar_sum(
            data in proptest::collection::vec(any::<u8>(), 0..3000),
            skip in 0usize..8,
        ) {
            let d = data.get(skip..).unwrap_or(&[]);
            prop_assert_eq!(fold(sum_native(d)), fold(sum_scalar(d)));
        }

        #[test]
        fn checksum_then_verify(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut d = data.clone();
            if d.len() % 2 == 1 { d.push(0); }
            d.extend_from_slice(&[0, 0]);
            let c = checksum(&d);
            let n = d.len();
            d[n - 2..].copy_from_slice(&c.to_be_bytes());
            prop_assert!(verify(sum(&d)));
        }
    }
}
