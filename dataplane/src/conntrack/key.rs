//! Flow keys: the tuple an entry is found by, in one direction.

use crate::wire::{Addr, Family, IpInfo, L4Info, proto};

/// Which tuple of an entry a packet matched: the one of the packet that created the entry
/// (`Original`) or the (possibly NATed) reply tuple (`Reply`), as Linux's
/// `IP_CT_DIR_ORIGINAL` / `IP_CT_DIR_REPLY`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Direction {
    Original = 0,
    Reply = 1,
}

impl Direction {
    /// 0 for original, 1 for reply (index into per-direction arrays).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The other direction.
    pub const fn flip(self) -> Self {
        match self {
            Direction::Original => Direction::Reply,
            Direction::Reply => Direction::Original,
        }
    }

    pub(crate) const fn from_bit(bit: u32) -> Self {
        if bit & 1 == 0 {
            Direction::Original
        } else {
            Direction::Reply
        }
    }
}

/// One direction of a flow: 40 bytes, no padding.
///
/// - TCP / UDP: `sport`, `dport` are the ports.
/// - ICMP / ICMPv6 echo: `sport` is the identifier and `dport` the ICMP type of the
///   message travelling in this direction (8 / 0, or 128 / 129), so [`FlowKey::inverse`]
///   of an echo request key is the key of its reply, as Linux's ICMP tuple (id, type,
///   code) inverts.
/// - Other protocols (generic tracker): both zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(C)]
pub struct FlowKey {
    pub src: Addr,
    pub dst: Addr,
    pub sport: u16,
    pub dport: u16,
    /// Conntrack zone (`ct zone`), 0 by default.
    pub zone: u16,
    pub proto: u8,
    pub family: Family,
}

const _: () = assert!(size_of::<FlowKey>() == 40);

/// ICMP echo request/reply types and their inverses.
const ICMP_ECHO_REQUEST: u8 = 8;
const ICMP_ECHO_REPLY: u8 = 0;
const ICMPV6_ECHO_REQUEST: u8 = 128;
const ICMPV6_ECHO_REPLY: u8 = 129;

/// The echo type of the other direction (`nf_conntrack_proto_icmp.c` `invmap`), or the
/// type itself when it has no inverse.
fn icmp_inverse_type(t: u8) -> u8 {
    match t {
        ICMP_ECHO_REQUEST => ICMP_ECHO_REPLY,
        ICMP_ECHO_REPLY => ICMP_ECHO_REQUEST,
        ICMPV6_ECHO_REQUEST => ICMPV6_ECHO_REPLY,
        ICMPV6_ECHO_REPLY => ICMPV6_ECHO_REQUEST,
        other => other,
    }
}

/// Whether `proto` is ICMP for the family (ICMP for IPv4, ICMPv6 for IPv6).
pub(crate) fn is_icmp(family: Family, p: u8) -> bool {
    matches!(
        (family, p),
        (Family::V4, proto::ICMP) | (Family::V6, proto::ICMPV6)
    )
}

impl FlowKey {
    /// A guess at the key of a raw Ethernet frame without parsing or validating it:
    /// untagged IPv4 (not a fragment) or IPv6 (no extension header) carrying TCP or UDP,
    /// zone 0; `None` for anything else. Equal to [`FlowKey::from_info`] of the parsed
    /// frame for those packets. Only for prefetching ([`Table::probe`](super::Table::probe)):
    /// a wrong guess costs a wasted prefetch, never a decision.
    #[inline]
    pub fn peek(frame: &[u8]) -> Option<FlowKey> {
        let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
        let (family, src, dst, proto, l4) = match ethertype {
            0x0800 => {
                let ip = frame.get(14..34)?;
                let frag = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff;
                if frag != 0 {
                    return None;
                }
                let ihl = usize::from(ip[0] & 0x0f) * 4;
                let a = |o: usize| Addr::from_v4([ip[o], ip[o + 1], ip[o + 2], ip[o + 3]]);
                (Family::V4, a(12), a(16), ip[9], 14 + ihl)
            }
            0x86dd => {
                let ip = frame.get(14..54)?;
                let a = |o: usize| {
                    let mut b = [0u8; 16];
                    b.copy_from_slice(&ip[o..o + 16]);
                    Addr(b)
                };
                (Family::V6, a(8), a(24), ip[6], 54)
            }
            _ => return None,
        };
        if proto != proto::TCP && proto != proto::UDP {
            return None;
        }
        let ports = frame.get(l4..l4 + 4)?;
        Some(FlowKey {
            src,
            dst,
            sport: u16::from_be_bytes([ports[0], ports[1]]),
            dport: u16::from_be_bytes([ports[2], ports[3]]),
            zone: 0,
            proto,
            family,
        })
    }

    /// The key of the packet as it travels, or `None` when it has no trackable tuple (a
    /// later fragment without an L4 header, or an ICMP message that is neither an echo
    /// nor an error).
    ///
    /// For an ICMP/ICMPv6 error the key is the **inverse of the embedded tuple**: the
    /// embedded datagram travelled opposite to the error, so its inverse is the tuple in
    /// the error's own direction (what Linux's `nf_conntrack_inet_error` looks up). A hit
    /// therefore gives the direction the error travels in, like any other packet.
    pub fn from_info(info: &IpInfo, zone: u16) -> Option<FlowKey> {
        let mut key = FlowKey {
            src: info.src,
            dst: info.dst,
            sport: 0,
            dport: 0,
            zone,
            proto: info.proto,
            family: info.family,
        };
        match info.l4? {
            L4Info::Tcp(t) => {
                key.sport = t.sport;
                key.dport = t.dport;
            }
            L4Info::Udp { sport, dport } => {
                key.sport = sport;
                key.dport = dport;
            }
            L4Info::IcmpEcho { request, id, .. } => {
                key.sport = id;
                key.dport = match (info.family, request) {
                    (Family::V4, true) => ICMP_ECHO_REQUEST,
                    (Family::V4, false) => ICMP_ECHO_REPLY,
                    (Family::V6, true) => ICMPV6_ECHO_REQUEST,
                    (Family::V6, false) => ICMPV6_ECHO_REPLY,
                }
                .into();
            }
            L4Info::IcmpError { inner, .. } => {
                let embedded = FlowKey {
                    src: inner.src,
                    dst: inner.dst,
                    sport: inner.sport,
                    dport: inner.dport,
                    zone,
                    proto: inner.proto,
                    family: info.family,
                };
                let embedded = if is_icmp(info.family, inner.proto) {
                    FlowKey {
                        dport: inner.icmp_type.into(),
                        ..embedded
                    }
                } else if matches!(inner.proto, proto::TCP | proto::UDP) {
                    embedded
                } else {
                    FlowKey {
                        sport: 0,
                        dport: 0,
                        ..embedded
                    }
                };
                return Some(embedded.inverse());
            }
            L4Info::IcmpOther { .. } => return None,
            L4Info::Other => {}
        }
        Some(key)
    }

    /// The key of the other direction without NAT: addresses and ports swapped; for ICMP
    /// echo the identifier kept and the type mapped request <-> reply.
    pub fn inverse(&self) -> FlowKey {
        if is_icmp(self.family, self.proto) {
            let t = u8::try_from(self.dport).map_or(u8::MAX, icmp_inverse_type);
            FlowKey {
                src: self.dst,
                dst: self.src,
                sport: self.sport,
                dport: t.into(),
                ..*self
            }
        } else {
            FlowKey {
                src: self.dst,
                dst: self.src,
                sport: self.dport,
                dport: self.sport,
                ..*self
            }
        }
    }

    /// Keyed 64-bit hash: for IPv4 keys [`hash_v4`] of the tuple as the frame carries
    /// it (so the fast path hashes the frame's 12 bytes without building a key), for
    /// IPv6 keys folded multiplies over the five 8-byte words of the key.
    #[inline]
    pub(crate) fn hash(&self, k: &[u64; 4]) -> u64 {
        if self.family == Family::V4 {
            let v4 = |a: &Addr| u32::from_le_bytes([a.0[12], a.0[13], a.0[14], a.0[15]]);
            let addrs = u64::from(v4(&self.src)) | (u64::from(v4(&self.dst)) << 32);
            let [s0, s1] = self.sport.to_be_bytes();
            let [d0, d1] = self.dport.to_be_bytes();
            let ports = u32::from_le_bytes([s0, s1, d0, d1]);
            return hash_v4(addrs, ports, self.zone, self.proto, k);
        }
        let w = |a: &Addr, i: usize| {
            let b = &a.0;
            u64::from_le_bytes([
                b[i],
                b[i + 1],
                b[i + 2],
                b[i + 3],
                b[i + 4],
                b[i + 5],
                b[i + 6],
                b[i + 7],
            ])
        };
        let tail = u64::from(self.sport)
            | (u64::from(self.dport) << 16)
            | (u64::from(self.zone) << 32)
            | (u64::from(self.proto) << 48)
            | ((self.family as u64) << 56);
        let a = fold(w(&self.src, 0) ^ k[0], w(&self.src, 8) ^ k[1]);
        let b = fold(w(&self.dst, 0) ^ k[2], w(&self.dst, 8) ^ k[3]);
        let c = fold(tail ^ a ^ k[1], b ^ k[0]);
        fold(c ^ k[2], 0x9e37_79b9_7f4a_7c15 ^ k[3])
    }
}

/// The keyed hash of an IPv4 key ([`FlowKey::hash`] of every key of family V4):
/// `addrs` = the source and destination addresses' 8 bytes as the IPv4 header carries
/// them, read little-endian, `ports` = the source and destination ports' 4 bytes as the
/// L4 header carries them, read little-endian (the frame's bytes 26..34 and 34..38 for
/// an untagged frame without IP options). Two folded multiplies: the first mixes the 12
/// bytes of the tuple with zone and protocol under two keys, the second the result under
/// the other two.
#[inline(always)]
pub(crate) fn hash_v4(addrs: u64, ports: u32, zone: u16, proto: u8, k: &[u64; 4]) -> u64 {
    let tail = u64::from(ports) | (u64::from(zone) << 32) | (u64::from(proto) << 48);
    let a = fold(addrs ^ k[0], tail ^ k[1]);
    fold(a ^ k[2], 0x9e37_79b9_7f4a_7c15 ^ k[3])
}

/// [`hash_v4`] of a tuple as the frame carries it (source, destination, source port,
/// destination port: 12 bytes), zone 0: equal to [`FlowKey::hash`] of its key.
#[inline(always)]
pub(crate) fn hash_tuple_v4(t: &[u8; 12], proto: u8, k: &[u64; 4]) -> u64 {
    let addrs = u64::from_le_bytes([t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7]]);
    let ports = u32::from_le_bytes([t[8], t[9], t[10], t[11]]);
    hash_v4(addrs, ports, 0, proto, k)
}

/// Full 64x64 -> 128 multiply, high half XOR low half (the foldhash / wyhash mixer).
#[inline]
#[allow(clippy::cast_possible_truncation)] // taking the two halves of the product on purpose
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// A seed for [`crate::conntrack::Table::new`] that differs at every start of the
/// process (and every call): from the standard library's randomly keyed `RandomState`,
/// seeded by the operating system. The index hash is then not predictable offline, so
/// nobody can compute a set of tuples that all land in one bucket.
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x5eed);
    h.finish()
}

/// A randomly keyed hasher for maps of [`FlowKey`]s outside the workers' tables (the
/// backup's external cache of synced entries): one folded multiply per field the key's
/// `Hash` writes, under a key drawn from [`random_seed`] per map. Several times cheaper
/// than the standard library's SipHash for a 40-byte key, and as unpredictable offline as
/// the tables' own index hash (the peer's records cannot be chosen to collide).
#[derive(Clone, Copy, Debug)]
pub struct KeyedState {
    k: [u64; 2],
}

impl Default for KeyedState {
    fn default() -> Self {
        let mut s = random_seed();
        KeyedState {
            k: [splitmix(&mut s), splitmix(&mut s) | 1],
        }
    }
}

impl std::hash::BuildHasher for KeyedState {
    type Hasher = KeyedHasher;
    fn build_hasher(&self) -> KeyedHasher {
        KeyedHasher {
            h: self.k[0],
            k: self.k[1],
        }
    }
}

/// The hasher of [`KeyedState`].
#[derive(Clone, Copy, Debug)]
pub struct KeyedHasher {
    h: u64,
    k: u64,
}

impl std::hash::Hasher for KeyedHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            self.h = fold(self.h ^ w, self.k);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            // The length in the top byte: "ab" + "" and "a" + "b" differ.
            w[7] ^= u8::try_from(rest.len()).unwrap_or(0) << 4;
            self.h = fold(self.h ^ u64::from_le_bytes(w), self.k);
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.write_u64(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.h = fold(self.h ^ i, self.k);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        fold(self.h ^ 0x9e37_79b9_7f4a_7c15, self.k.rotate_left(32))
    }
}

/// splitmix64, to derive the hash keys from one seed.
pub(crate) fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::testutil::*;

    #[test]
    fn tcp_key_and_inverse() {
        let p = tcp4([198, 18, 0, 1], 1000, [198, 18, 0, 2], 80, SYN, 0, 0);
        let k = FlowKey::from_info(&p, 3).unwrap();
        assert_eq!(
            (k.sport, k.dport, k.zone, k.proto),
            (1000, 80, 3, proto::TCP)
        );
        let r = k.inverse();
        assert_eq!((r.src, r.dst, r.sport, r.dport), (k.dst, k.src, 80, 1000));
        assert_eq!(r.inverse(), k);
    }

    #[test]
    fn icmp_echo_inverse_maps_type_and_keeps_id() {
        let req = echo4([198, 18, 0, 1], [198, 18, 0, 2], true, 77);
        let rep = echo4([198, 18, 0, 2], [198, 18, 0, 1], false, 77);
        let kq = FlowKey::from_info(&req, 0).unwrap();
        let kr = FlowKey::from_info(&rep, 0).unwrap();
        assert_eq!(kq.inverse(), kr);
        assert_ne!(kq, kr);
    }

    #[test]
    fn icmp_error_key_is_inverse_of_embedded_tuple() {
        let udp = udp4([198, 18, 0, 1], 5000, [198, 18, 0, 2], 53);
        let err = icmp_err4([198, 18, 0, 2], [198, 18, 0, 1], &udp);
        let k = FlowKey::from_info(&err, 0).unwrap();
        assert_eq!(k, FlowKey::from_info(&udp, 0).unwrap().inverse());
    }

    #[test]
    fn later_fragment_has_no_key() {
        let mut p = udp4([198, 18, 0, 1], 1, [198, 18, 0, 2], 2);
        p.l4 = None;
        assert_eq!(FlowKey::from_info(&p, 0), None);
    }

    #[test]
    fn hash_depends_on_every_field_and_seed() {
        let p = tcp4([198, 18, 0, 1], 1000, [198, 18, 0, 2], 80, SYN, 0, 0);
        let k = FlowKey::from_info(&p, 0).unwrap();
        let seed = [1, 2, 3, 4];
        let h = k.hash(&seed);
        assert_ne!(h, k.hash(&[5, 6, 7, 8]));
        assert_ne!(h, FlowKey { zone: 1, ..k }.hash(&seed));
        assert_ne!(h, FlowKey { sport: 1001, ..k }.hash(&seed));
        assert_ne!(h, FlowKey { proto: 17, ..k }.hash(&seed));
        assert_ne!(h, k.inverse().hash(&seed));
        assert_ne!(h, FlowKey { dport: 81, ..k }.hash(&seed));
        let mut src = k.src;
        src.0[15] ^= 1;
        assert_ne!(h, FlowKey { src, ..k }.hash(&seed));
        let mut dst = k.dst;
        dst.0[12] ^= 0x80;
        assert_ne!(h, FlowKey { dst, ..k }.hash(&seed));
        for i in 0..4 {
            let mut other = seed;
            other[i] ^= 1 << 40;
            assert_ne!(h, k.hash(&other), "seed word {i}");
        }
        let v6 = FlowKey {
            src: Addr::from_v6([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
            family: Family::V6,
            ..k
        };
        assert_ne!(v6.hash(&seed), FlowKey { zone: 1, ..v6 }.hash(&seed));
    }

    #[test]
    fn keyed_map_hash_is_per_map_and_tells_keys_apart() {
        use std::hash::BuildHasher;
        let p = tcp4([198, 18, 0, 1], 1000, [198, 18, 0, 2], 80, SYN, 0, 0);
        let k = FlowKey::from_info(&p, 0).unwrap();
        let (a, b) = (KeyedState::default(), KeyedState::default());
        assert_eq!(a.hash_one(k), a.hash_one(k));
        assert_ne!(a.hash_one(k), b.hash_one(k), "two maps, two keys");
        // 2^16 ports x 4 addresses: no two 64-bit hashes alike, and the low bits (the
        // map's bucket index) spread: every 12-bit bucket of 4 096 gets some.
        let mut seen = std::collections::HashSet::new();
        let mut buckets = vec![0u32; 4096];
        for sport in 0..=u16::MAX {
            for last in 1..=4u8 {
                let mut src = k.src;
                src.0[15] = last;
                let h = a.hash_one(FlowKey { src, sport, ..k });
                assert!(seen.insert(h), "collision at {sport} {last}");
                buckets[usize::try_from(h & 4095).unwrap()] += 1;
            }
        }
        let (lo, hi) = (buckets.iter().min().unwrap(), buckets.iter().max().unwrap());
        assert!(
            *lo > 0 && *hi < 3 * 64,
            "buckets from {lo} to {hi} (64 each on average)"
        );
        let mut m: std::collections::HashMap<FlowKey, u32, KeyedState> =
            std::collections::HashMap::default();
        m.insert(k, 1);
        m.insert(k.inverse(), 2);
        assert_eq!(
            (m.get(&k), m.get(&k.inverse()), m.len()),
            (Some(&1), Some(&2), 2)
        );
    }

    proptest::proptest! {
        /// The fast path's hash of a frame's 12-byte tuple is the hash of its key, the one
        /// every insert and lookup uses.
        #[test]
        fn the_tuple_hash_is_the_keys_hash(
            t in proptest::prelude::any::<[u8; 12]>(),
            tcp in proptest::prelude::any::<bool>(),
            seed in proptest::prelude::any::<[u64; 4]>(),
        ) {
            let p = if tcp { proto::TCP } else { proto::UDP };
            let key = FlowKey {
                src: Addr::from_v4([t[0], t[1], t[2], t[3]]),
                dst: Addr::from_v4([t[4], t[5], t[6], t[7]]),
                sport: u16::from_be_bytes([t[8], t[9]]),
                dport: u16::from_be_bytes([t[10], t[11]]),
                zone: 0,
                proto: p,
                family: Family::V4,
            };
            proptest::prop_assert_eq!(hash_tuple_v4(&t, p, &seed), key.hash(&seed));
        }
    }
}
