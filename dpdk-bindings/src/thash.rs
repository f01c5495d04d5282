//! Toeplitz (RSS) hash in software: DPDK's `rte_softrss` / `rte_softrss_be` and
//! `rte_convert_rss_key`, through the C shim. Used to cross-check the pure-Rust Toeplitz in
//! the NAT module and to pick NAT ports whose reply hashes to a given queue. Needs no EAL.

use crate::ffi;

/// Standard RSS key length (40 bytes, as on Intel NICs and in DPDK's default).
pub const RSS_KEY_LEN: usize = 40;

/// Longest key accepted by [`softrss`] (Intel i40e/ice use 52 bytes).
pub const MAX_RSS_KEY_LEN: usize = 64;

/// The symmetric Toeplitz key: 0x6d5a repeated (Woo & Park, "Scalable TCP Session
/// Monitoring with Symmetric Receive-side Scaling", 2012). With it the hash of
/// (src, dst, sport, dport) equals the hash of (dst, src, dport, sport), so both
/// directions of a flow land on one queue.
pub const SYMMETRIC_RSS_KEY: [u8; RSS_KEY_LEN] = {
    let mut k = [0u8; RSS_KEY_LEN];
    let mut i = 0;
    while i < RSS_KEY_LEN {
        k[i] = if i % 2 == 0 { 0x6d } else { 0x5a };
        i += 1;
    }
    k
};

/// The symmetric key at `len` bytes (devices differ: 40, 52, ...).
pub fn symmetric_rss_key(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| if i % 2 == 0 { 0x6d } else { 0x5a })
        .collect()
}

/// Toeplitz hash of `input` (host-order 32-bit words, e.g. `[src_ip, dst_ip, sport << 16 |
/// dport]` as in `rte_ipv4_tuple`) with `key` in the byte order NICs use
/// (`rte_softrss`). `None` if the key is shorter than `4 * (input.len() + 1)` bytes (the
/// hash reads one key word past the input) or longer than [`MAX_RSS_KEY_LEN`].
pub fn softrss(input: &[u32], key: &[u8]) -> Option<u32> {
    with_aligned_key(input, key, |tuple, len, k| {
        // SAFETY: tuple points to `len` u32 words; k to an aligned key of at least
        // 4 * (len + 1) bytes, which is what rte_softrss reads.
        unsafe { ffi::shim_rte_softrss(tuple, len, k) }
    })
}

/// As [`softrss`], with a key converted by [`convert_rss_key`] (`rte_softrss_be`, faster).
pub fn softrss_be(input: &[u32], converted_key: &[u8]) -> Option<u32> {
    with_aligned_key(input, converted_key, |tuple, len, k| {
        // SAFETY: as in `softrss`.
        unsafe { ffi::shim_rte_softrss_be(tuple, len, k) }
    })
}

/// Convert a key for [`softrss_be`] (`rte_convert_rss_key`: byte-swap each 32-bit word).
/// `None` if the length is not a multiple of 4 or exceeds [`MAX_RSS_KEY_LEN`].
pub fn convert_rss_key(key: &[u8]) -> Option<Vec<u8>> {
    if !key.len().is_multiple_of(4) || key.len() > MAX_RSS_KEY_LEN {
        return None;
    }
    let words = key.len() / 4;
    let mut orig = [0u32; MAX_RSS_KEY_LEN / 4];
    for (w, c) in orig.iter_mut().zip(key.chunks_exact(4)) {
        *w = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]);
    }
    let mut targ = [0u32; MAX_RSS_KEY_LEN / 4];
    let len = i32::try_from(key.len()).ok()?;
    // SAFETY: orig and targ hold MAX_RSS_KEY_LEN bytes >= len, as the function reads and
    // writes `len` bytes.
    unsafe { ffi::shim_rte_convert_rss_key(orig.as_ptr(), targ.as_mut_ptr(), len) };
    Some(
        targ.iter()
            .take(words)
            .flat_map(|w| w.to_ne_bytes())
            .collect(),
    )
}

fn with_aligned_key(
    input: &[u32],
    key: &[u8],
    f: impl FnOnce(*mut u32, u32, *const u8) -> u32,
) -> Option<u32> {
    if key.len() > MAX_RSS_KEY_LEN || key.len() < 4 * (input.len() + 1) {
        return None;
    }
    // rte_softrss reads the key as u32 words: give it an aligned copy.
    let mut k = [0u32; MAX_RSS_KEY_LEN / 4];
    for (w, c) in k.iter_mut().zip(key.chunks(4)) {
        let mut b = [0u8; 4];
        b[..c.len()].copy_from_slice(c);
        *w = u32::from_ne_bytes(b);
    }
    // The C prototype takes a non-const tuple pointer but only reads it.
    let mut tuple = [0u32; MAX_RSS_KEY_LEN / 4];
    tuple[..input.len()].copy_from_slice(input);
    let len = u32::try_from(input.len()).ok()?;
    Some(f(tuple.as_mut_ptr(), len, k.as_ptr().cast::<u8>()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key of Microsoft's RSS verification suite (also DPDK's test_thash.c).
    const MS_KEY: [u8; 40] = [
        0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f,
        0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30,
        0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
    ];

    fn ip(a: u8, b: u8, c: u8, d: u8) -> u32 {
        u32::from_be_bytes([a, b, c, d])
    }

    #[test]
    fn microsoft_verification_vectors() {
        // Destination 161.142.100.80:1766, source 66.9.149.187:2794.
        let t = [
            ip(66, 9, 149, 187),
            ip(161, 142, 100, 80),
            (2794 << 16) | 1766,
        ];
        assert_eq!(softrss(&t[..2], &MS_KEY), Some(0x323e_8fc2));
        assert_eq!(softrss(&t, &MS_KEY), Some(0x51cc_c178));
        // Destination 65.69.140.83:4739, source 199.92.111.2:14230.
        let t = [
            ip(199, 92, 111, 2),
            ip(65, 69, 140, 83),
            (14230 << 16) | 4739,
        ];
        assert_eq!(softrss(&t[..2], &MS_KEY), Some(0xd718_262a));
        assert_eq!(softrss(&t, &MS_KEY), Some(0xc626_b0ea));
    }

    #[test]
    fn converted_key_gives_same_hash() {
        let t = [
            ip(66, 9, 149, 187),
            ip(161, 142, 100, 80),
            (2794 << 16) | 1766,
        ];
        let conv = convert_rss_key(&MS_KEY).unwrap();
        assert_ne!(conv, MS_KEY);
        assert_eq!(softrss_be(&t, &conv), softrss(&t, &MS_KEY));
    }

    #[test]
    fn symmetric_key_hashes_both_directions_alike() {
        assert_eq!(symmetric_rss_key(RSS_KEY_LEN), SYMMETRIC_RSS_KEY);
        let (a, b) = (ip(198, 18, 0, 1), ip(203, 0, 113, 9));
        for (sp, dp) in [(1024u32, 80u32), (40000, 53), (65535, 1)] {
            let fwd = softrss(&[a, b, (sp << 16) | dp], &SYMMETRIC_RSS_KEY).unwrap();
            let rev = softrss(&[b, a, (dp << 16) | sp], &SYMMETRIC_RSS_KEY).unwrap();
            assert_eq!(fwd, rev);
        }
        // The Microsoft key is not symmetric.
        let fwd = softrss(&[a, b, (1024 << 16) | 80], &MS_KEY).unwrap();
        let rev = softrss(&[b, a, (80 << 16) | 1024], &MS_KEY).unwrap();
        assert_ne!(fwd, rev);
    }

    #[test]
    fn short_or_long_keys_are_rejected() {
        assert_eq!(softrss(&[1, 2, 3], &MS_KEY[..15]), None);
        assert!(softrss(&[1, 2, 3], &MS_KEY[..16]).is_some());
        assert_eq!(softrss(&[1], &[0u8; 65]), None);
        assert_eq!(convert_rss_key(&[0u8; 6]), None);
    }
}
