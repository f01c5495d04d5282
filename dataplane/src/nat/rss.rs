//! Toeplitz (RSS) hash in pure Rust, bit-exact with DPDK's `rte_softrss`, and the owner
//! function `owner(tuple) = worker_of_queue[reta[hash % reta_size]]` of
//! `docs/architecture.md` ("Flow ownership").
//!
//! # Input layout
//!
//! The hash input is the byte string a NIC hashes: source address, destination address,
//! then (TCP/UDP only) source port and destination port, all in network order. IPv4 gives
//! 12 bytes (8 without ports), IPv6 36 (32). `rte_softrss` takes the same bytes as
//! host-order 32-bit words (`rte_ipv4_tuple`: `[src, dst, sport << 16 | dport]`);
//! [`Toeplitz::hash_words`] accepts that form too.
//!
//! # Table-driven and linear
//!
//! Toeplitz is linear over GF(2): the hash of an input is the XOR, over its set bits, of the
//! 32-bit key window starting at that bit. [`Toeplitz`] precomputes, for every byte position
//! and byte value, the XOR of the windows of that byte's set bits, so a hash is one table
//! load and XOR per input byte. The same tables give the NAT port search its cheap
//! candidates: `hash(tuple with port p) = hash(tuple with port 0) ^ port_term(p)`.

use super::Tuple;
use crate::wire::proto;

/// Longest hash input: IPv6 addresses plus ports (16 + 16 + 2 + 2 bytes).
pub const MAX_INPUT_LEN: usize = 36;

/// Shortest key [`Toeplitz::new`] accepts: the hash of input byte `i` reads key bytes
/// `i ..= i + 4`, so 36 input bytes need 40 key bytes (the standard RSS key length).
pub const MIN_KEY_LEN: usize = MAX_INPUT_LEN + 4;

/// The symmetric Toeplitz key: 0x6d5a repeated (Woo & Park 2012), a copy of
/// `dpdk_bindings::SYMMETRIC_RSS_KEY` (this crate builds without DPDK). The key repeats
/// every 16 bits, so the key window at bit `b` equals the one at `b + 16`: swapping source
/// and destination (addresses start 32 or 128 bits apart, ports 16) leaves the hash
/// unchanged.
pub const SYMMETRIC_RSS_KEY: [u8; MIN_KEY_LEN] = {
    let mut k = [0u8; MIN_KEY_LEN];
    let mut i = 0;
    while i < MIN_KEY_LEN {
        k[i] = if i % 2 == 0 { 0x6d } else { 0x5a };
        i += 1;
    }
    k
};

/// A bad RSS configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RssError {
    #[error("RSS key is {0} bytes; at least {MIN_KEY_LEN} are needed")]
    KeyTooShort(usize),
    #[error("RETA size {0} is not a power of two between 1 and 65536")]
    BadRetaSize(usize),
    #[error("RETA entry {entry} names queue {queue}, but only {queues} queues map to workers")]
    BadQueue {
        entry: usize,
        queue: u16,
        queues: usize,
    },
    #[error("no workers")]
    NoWorkers,
}

/// Byte offsets of the ports in the hash input.
const V4_SPORT: usize = 8;
const V4_DPORT: usize = 10;
const V6_SPORT: usize = 32;
const V6_DPORT: usize = 34;

/// A Toeplitz hash for one key, table-driven (36 x 256 x 4 bytes = 36 KiB).
#[derive(Clone)]
pub struct Toeplitz {
    /// `table[i][v]`: the hash contribution of byte value `v` at input position `i`.
    table: Box<[[u32; 256]; MAX_INPUT_LEN]>,
}

impl std::fmt::Debug for Toeplitz {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Toeplitz").finish_non_exhaustive()
    }
}

impl Toeplitz {
    /// Tables for `key` (bytes in the order NICs and `rte_softrss` take them). Bytes past
    /// [`MIN_KEY_LEN`] are never read (inputs are at most [`MAX_INPUT_LEN`] bytes).
    pub fn new(key: &[u8]) -> Result<Self, RssError> {
        if key.len() < MIN_KEY_LEN {
            return Err(RssError::KeyTooShort(key.len()));
        }
        // The 32-bit key window starting at bit `b` (bit 0 = MSB of key byte 0).
        let window = |b: usize| -> u32 {
            let byte = b / 8;
            let mut w = 0u64;
            for k in 0..5 {
                w = (w << 8) | u64::from(key[byte + k]);
            }
            // 40 bits loaded; keep the 32 starting `b % 8` bits in.
            let shifted = w >> (8 - b % 8);
            (shifted & 0xffff_ffff) as u32
        };
        let mut table = Box::new([[0u32; 256]; MAX_INPUT_LEN]);
        for (pos, row) in table.iter_mut().enumerate() {
            let bits: [u32; 8] = std::array::from_fn(|i| window(pos * 8 + i));
            for (v, slot) in row.iter_mut().enumerate() {
                *slot = (0..8)
                    .filter(|i| v & (0x80 >> i) != 0)
                    .fold(0, |acc, i| acc ^ bits[i]);
            }
        }
        Ok(Self { table })
    }

    /// The hash of `input` (network-order bytes). Bytes past [`MAX_INPUT_LEN`] are ignored.
    #[inline]
    pub fn hash_bytes(&self, input: &[u8]) -> u32 {
        input
            .iter()
            .zip(self.table.iter())
            .fold(0, |acc, (&b, row)| acc ^ row[usize::from(b)])
    }

    /// The hash of host-order 32-bit words, as `rte_softrss(input, len, key)` computes it.
    /// Words past `MAX_INPUT_LEN / 4` are ignored.
    pub fn hash_words(&self, words: &[u32]) -> u32 {
        let mut bytes = [0u8; MAX_INPUT_LEN];
        let n = words.len().min(MAX_INPUT_LEN / 4);
        for (chunk, w) in bytes.chunks_exact_mut(4).zip(&words[..n]) {
            chunk.copy_from_slice(&w.to_be_bytes());
        }
        self.hash_bytes(&bytes[..n * 4])
    }

    /// The hash of a tuple, with or without its ports (see the module doc for the layout).
    #[inline]
    pub fn hash_tuple(&self, t: &Tuple, with_ports: bool) -> u32 {
        let mut buf = [0u8; MAX_INPUT_LEN];
        let len = tuple_input(t, with_ports, &mut buf);
        self.hash_bytes(&buf[..len])
    }

    /// The contribution of a 16-bit value at byte offset `off` (`off + 1 < MAX_INPUT_LEN`).
    #[inline]
    fn term16(&self, off: usize, v: u16) -> u32 {
        let [hi, lo] = v.to_be_bytes();
        self.table[off][usize::from(hi)] ^ self.table[off + 1][usize::from(lo)]
    }

    /// The contribution of destination port `port` to the hash of a tuple of `t`'s family
    /// with ports: `hash_tuple(t) == hash_tuple(t with dport 0) ^ dport_term(t, t.dport)`.
    #[inline]
    pub fn dport_term(&self, t: &Tuple, port: u16) -> u32 {
        self.term16(if t.is_v4() { V4_DPORT } else { V6_DPORT }, port)
    }

    /// [`Self::dport_term`] for a tuple of the given family (IPv4 when `v4`).
    #[inline]
    pub fn dport_term_of(&self, v4: bool, port: u16) -> u32 {
        self.term16(if v4 { V4_DPORT } else { V6_DPORT }, port)
    }

    /// As [`Self::dport_term`], for the source port.
    #[inline]
    pub fn sport_term(&self, t: &Tuple, port: u16) -> u32 {
        self.term16(if t.is_v4() { V4_SPORT } else { V6_SPORT }, port)
    }
}

/// Write the hash input of `t` into `buf`; returns its length.
fn tuple_input(t: &Tuple, with_ports: bool, buf: &mut [u8; MAX_INPUT_LEN]) -> usize {
    let mut len = match (t.src.to_v4(), t.dst.to_v4()) {
        (Some(s), Some(d)) => {
            buf[..4].copy_from_slice(&s);
            buf[4..8].copy_from_slice(&d);
            8
        }
        _ => {
            buf[..16].copy_from_slice(&t.src.0);
            buf[16..32].copy_from_slice(&t.dst.0);
            32
        }
    };
    if with_ports {
        buf[len..len + 2].copy_from_slice(&t.sport.to_be_bytes());
        buf[len + 2..len + 4].copy_from_slice(&t.dport.to_be_bytes());
        len += 4;
    }
    len
}

/// Whether the NIC's RSS hashes the ports of `proto`: TCP and UDP (the `RTE_ETH_RSS_*_TCP`
/// / `_UDP` types), when the port hashes L4 at all. Everything else (ICMP, GRE, SCTP,
/// ESP, ...) hashes the addresses only.
#[inline]
pub const fn proto_hashes_ports(proto: u8) -> bool {
    matches!(proto, proto::TCP | proto::UDP)
}

/// Ids of owner functions (tables derived from one are rebuilt for another).
static OWNER_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The owner function: which worker a tuple belongs to.
#[derive(Clone, Debug)]
pub struct Owner {
    /// Unique per constructed function (clones keep it): names it for derived tables.
    id: u64,
    toeplitz: Toeplitz,
    /// Worker per RETA entry (RETA queue composed with the queue → worker map).
    reta: Box<[u16]>,
    mask: u32,
    workers: u16,
    /// Whether TCP/UDP ports are part of the hash input (L4 RSS).
    l4: bool,
}

impl Owner {
    /// An owner function over an explicit RETA (`reta[i]` = queue) and queue → worker map.
    /// `l4`: whether TCP/UDP ports are hashed (false for ports that hash addresses only).
    pub fn new(
        key: &[u8],
        reta: &[u16],
        worker_of_queue: &[u16],
        l4: bool,
    ) -> Result<Self, RssError> {
        let toeplitz = Toeplitz::new(key)?;
        if !reta.len().is_power_of_two() || reta.len() > 65536 {
            return Err(RssError::BadRetaSize(reta.len()));
        }
        let workers = worker_of_queue
            .iter()
            .copied()
            .max()
            .map(|w| w + 1)
            .ok_or(RssError::NoWorkers)?;
        let reta = reta
            .iter()
            .enumerate()
            .map(|(entry, &queue)| {
                worker_of_queue
                    .get(usize::from(queue))
                    .copied()
                    .ok_or(RssError::BadQueue {
                        entry,
                        queue,
                        queues: worker_of_queue.len(),
                    })
            })
            .collect::<Result<Box<[u16]>, _>>()?;
        let mask = u32::try_from(reta.len() - 1).map_err(|_| RssError::BadRetaSize(reta.len()))?;
        Ok(Self {
            id: OWNER_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            toeplitz,
            reta,
            mask,
            workers,
            l4,
        })
    }

    /// The usual set-up: `workers` workers with one queue each (queue *i* → worker *i*), the
    /// RETA filled round-robin (`reta[i] = i % workers`, DPDK's default), L4 hashing on.
    pub fn spread(key: &[u8], reta_size: usize, workers: u16) -> Result<Self, RssError> {
        if workers == 0 {
            return Err(RssError::NoWorkers);
        }
        if !reta_size.is_power_of_two() || reta_size > 65536 {
            return Err(RssError::BadRetaSize(reta_size));
        }
        let reta: Vec<u16> = (0..workers).cycle().take(reta_size).collect();
        let queues: Vec<u16> = (0..workers).collect();
        Self::new(key, &reta, &queues, true)
    }

    /// The Toeplitz tables (for incremental hashing).
    pub fn toeplitz(&self) -> &Toeplitz {
        &self.toeplitz
    }

    /// This function's id: equal ids, equal functions (a clone keeps its original's id).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The RETA index mask (RETA size - 1): the hash bits that choose the worker.
    pub fn reta_mask(&self) -> u32 {
        self.mask
    }

    /// Number of workers the map names (highest worker id + 1).
    pub fn workers(&self) -> u16 {
        self.workers
    }

    /// Whether the owner of a `proto` tuple depends on its ports.
    #[inline]
    pub fn hashes_ports(&self, proto: u8) -> bool {
        self.l4 && proto_hashes_ports(proto)
    }

    /// The RSS hash of a tuple as the NIC computes it for its protocol.
    #[inline]
    pub fn hash(&self, t: &Tuple) -> u32 {
        self.toeplitz.hash_tuple(t, self.hashes_ports(t.proto))
    }

    /// The worker a hash value lands on (RETA indexed by the hash's low bits).
    #[inline]
    pub fn worker_of_hash(&self, hash: u32) -> u16 {
        // The mask keeps the index below the RETA length (a power of two).
        self.reta[(hash & self.mask) as usize]
    }

    /// The worker that owns `t`.
    #[inline]
    pub fn owner(&self, t: &Tuple) -> u16 {
        self.worker_of_hash(self.hash(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Addr;

    /// The key of Microsoft's RSS verification suite (also DPDK's test_thash.c).
    const MS_KEY: [u8; 40] = [
        0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f,
        0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30,
        0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
    ];

    fn v4(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Tuple {
        Tuple::new(
            Addr::from_v4(src),
            Addr::from_v4(dst),
            proto::TCP,
            sport,
            dport,
        )
    }

    fn v6(src: &str, sport: u16, dst: &str, dport: u16) -> Tuple {
        let s: std::net::Ipv6Addr = src.parse().unwrap();
        let d: std::net::Ipv6Addr = dst.parse().unwrap();
        Tuple::new(
            Addr::from_v6(s.octets()),
            Addr::from_v6(d.octets()),
            proto::TCP,
            sport,
            dport,
        )
    }

    /// Microsoft "Verifying the RSS Hash Calculation", IPv4 table: (src, sport, dst, dport,
    /// hash over addresses, hash over addresses and ports).
    #[test]
    fn microsoft_ipv4_vectors() {
        let h = Toeplitz::new(&MS_KEY).unwrap();
        let cases = [
            (
                [66, 9, 149, 187],
                2794,
                [161, 142, 100, 80],
                1766,
                0x323e_8fc2,
                0x51cc_c178,
            ),
            (
                [199, 92, 111, 2],
                14230,
                [65, 69, 140, 83],
                4739,
                0xd718_262a,
                0xc626_b0ea,
            ),
            (
                [24, 19, 198, 95],
                12898,
                [12, 22, 207, 184],
                38024,
                0xd2d0_a5de,
                0x5c2b_394a,
            ),
            (
                [38, 27, 205, 30],
                48228,
                [209, 142, 163, 6],
                2217,
                0x8298_9176,
                0xafc7_327f,
            ),
            (
                [153, 39, 163, 191],
                44251,
                [202, 188, 127, 2],
                1303,
                0x5d18_09c5,
                0x10e8_28a2,
            ),
        ];
        for (src, sport, dst, dport, h2, h4) in cases {
            let t = v4(src, sport, dst, dport);
            assert_eq!(h.hash_tuple(&t, false), h2, "{t:?}");
            assert_eq!(h.hash_tuple(&t, true), h4, "{t:?}");
        }
    }

    /// The same suite's IPv6 table.
    #[test]
    fn microsoft_ipv6_vectors() {
        let h = Toeplitz::new(&MS_KEY).unwrap();
        let cases = [
            (
                "3ffe:2501:200:1fff::7",
                2794,
                "3ffe:2501:200:3::1",
                1766,
                0x2cc1_8cd5,
                0x4020_7d3d,
            ),
            (
                "3ffe:501:8::260:97ff:fe40:efab",
                14230,
                "ff02::1",
                4739,
                0x0f0c_461c,
                0xdde5_1bbf,
            ),
            (
                "3ffe:1900:4545:3:200:f8ff:fe21:67cf",
                44251,
                "fe80::200:f8ff:fe21:67cf",
                38024,
                0x4b61_e985,
                0x02d1_feef,
            ),
        ];
        for (src, sport, dst, dport, h2, h4) in cases {
            let t = v6(src, sport, dst, dport);
            assert_eq!(h.hash_tuple(&t, false), h2, "{t:?}");
            assert_eq!(h.hash_tuple(&t, true), h4, "{t:?}");
        }
    }

    #[test]
    fn words_form_matches_bytes_form() {
        let h = Toeplitz::new(&MS_KEY).unwrap();
        let src = u32::from_be_bytes([66, 9, 149, 187]);
        let dst = u32::from_be_bytes([161, 142, 100, 80]);
        assert_eq!(h.hash_words(&[src, dst, (2794 << 16) | 1766]), 0x51cc_c178);
        assert_eq!(h.hash_words(&[src, dst]), 0x323e_8fc2);
    }

    #[test]
    fn port_terms_are_xor_deltas() {
        let h = Toeplitz::new(&MS_KEY).unwrap();
        let t4 = v4([198, 18, 0, 1], 40000, [203, 0, 113, 9], 443);
        let t6 = v6("2001:db8::1", 40000, "2001:db8::2", 443);
        for t in [t4, t6] {
            let zero_d = Tuple { dport: 0, ..t };
            let zero_s = Tuple { sport: 0, ..t };
            assert_eq!(
                h.hash_tuple(&t, true),
                h.hash_tuple(&zero_d, true) ^ h.dport_term(&t, t.dport)
            );
            assert_eq!(
                h.hash_tuple(&t, true),
                h.hash_tuple(&zero_s, true) ^ h.sport_term(&t, t.sport)
            );
        }
    }

    #[test]
    fn symmetric_key_is_symmetric() {
        let h = Toeplitz::new(&SYMMETRIC_RSS_KEY).unwrap();
        let t4 = v4([198, 18, 0, 1], 40000, [203, 0, 113, 9], 443);
        let t6 = v6("2001:db8::1", 1, "2001:db8:ffff::2", 65535);
        for t in [t4, t6] {
            for ports in [false, true] {
                assert_eq!(h.hash_tuple(&t, ports), h.hash_tuple(&t.inverse(), ports));
            }
        }
        // The Microsoft key is not symmetric.
        let m = Toeplitz::new(&MS_KEY).unwrap();
        assert_ne!(m.hash_tuple(&t4, true), m.hash_tuple(&t4.inverse(), true));
    }

    #[test]
    fn bad_configurations_are_errors() {
        assert_eq!(
            Toeplitz::new(&MS_KEY[..39]).err(),
            Some(RssError::KeyTooShort(39))
        );
        assert_eq!(
            Owner::spread(&MS_KEY, 100, 4).err(),
            Some(RssError::BadRetaSize(100))
        );
        assert_eq!(
            Owner::spread(&MS_KEY, 128, 0).err(),
            Some(RssError::NoWorkers)
        );
        assert_eq!(
            Owner::new(&MS_KEY, &[0, 1, 2, 3], &[0, 1], true).err(),
            Some(RssError::BadQueue {
                entry: 2,
                queue: 2,
                queues: 2
            })
        );
    }

    #[test]
    fn owner_follows_reta_and_queue_map() {
        // Two queues per worker: queues 0,1 -> worker 0; 2,3 -> worker 1.
        let reta: Vec<u16> = (0..128).map(|i| i % 4).collect();
        let o = Owner::new(&SYMMETRIC_RSS_KEY, &reta, &[0, 0, 1, 1], true).unwrap();
        assert_eq!(o.workers(), 2);
        let mut seen = [0u32; 2];
        for p in 1024..3072u16 {
            let t = v4([198, 18, 0, 1], p, [203, 0, 113, 9], 443);
            let h = o.hash(&t);
            let expect = if (h & 127) % 4 < 2 { 0 } else { 1 };
            assert_eq!(o.owner(&t), expect);
            assert_eq!(o.owner(&t.inverse()), expect);
            seen[usize::from(expect)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 0), "{seen:?}");
    }

    #[test]
    fn icmp_owner_ignores_ids() {
        let o = Owner::spread(&SYMMETRIC_RSS_KEY, 128, 8).unwrap();
        let a = Tuple::new(
            Addr::from_v4([198, 18, 0, 1]),
            Addr::from_v4([203, 0, 113, 9]),
            proto::ICMP,
            1,
            1,
        );
        let w = o.owner(&a);
        for id in [0u16, 7, 999, 65535] {
            assert_eq!(
                o.owner(&Tuple {
                    sport: id,
                    dport: id,
                    ..a
                }),
                w
            );
        }
    }
}
