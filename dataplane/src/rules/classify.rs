//! Tuple-space search over (source, destination, protocol, source port, destination port).
//!
//! Each rule of a chain is indexed by the prefixes its leading matches require on those
//! five dimensions: a port or address range becomes a few prefixes, a set one entry per
//! element, and a dimension the rule does not constrain (or constrains in a way that is not
//! a plain "value in intervals" test: `!=`, a mask) has length 0. Entries with the same
//! five prefix lengths share a *tuple*: one hash table keyed by the masked values. A
//! packet is looked up once per tuple (masking its key with the tuple's lengths); the hits
//! are sorted lists of rule positions, merged in order by the chain walk. The classifier
//! only narrows the candidates: every candidate is still checked by the full matcher, so a
//! coarser index (a wildcarded dimension) costs speed, never correctness.
//!
//! Only matches before the first non-match statement are indexed (a `counter` before a
//! match counts packets the match would reject).

use super::ast::Field;
use super::ast::{addr_to_u128, prefixes};
use super::compile::CStmt;
use crate::wire::{IpInfo, L4Info};
use arrayvec::ArrayVec;
use rustc_hash::FxHashMap;

/// Most tuples per chain; rules that would need more are indexed as wildcards.
pub const MAX_TUPLES: usize = 32;
/// Most index entries one rule may add (product of its dimension entries).
const MAX_ENTRIES_PER_RULE: usize = 256;

/// The five classified fields of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PacketKey {
    pub src: u128,
    pub dst: u128,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
}

impl PacketKey {
    pub fn of(ip: &IpInfo) -> Self {
        let (sport, dport) = match ip.l4 {
            Some(L4Info::Tcp(t)) => (t.sport, t.dport),
            Some(L4Info::Udp { sport, dport }) => (sport, dport),
            _ => (0, 0),
        };
        PacketKey {
            src: addr_to_u128(ip.src),
            dst: addr_to_u128(ip.dst),
            proto: ip.proto,
            sport,
            dport,
        }
    }
}

/// Prefix lengths: src (0..=128), dst, proto (0 or 8), sport (0..=16), dport.
type Sig = [u8; 5];

#[derive(Debug)]
struct Tuple {
    sig: Sig,
    map: FxHashMap<PacketKey, Vec<u32>>,
}

fn mask128(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    }
}

fn mask_w(len: u8, width: u32) -> u128 {
    // The top `len` bits of a `width`-bit field.
    if len == 0 {
        0
    } else {
        ((1u128 << width) - 1) & !((1u128 << (width - u32::from(len))) - 1)
    }
}

fn apply(sig: &Sig, k: &PacketKey) -> PacketKey {
    // Widths are 8 and 16 bits: the masks fit their types.
    PacketKey {
        src: k.src & mask128(sig[0]),
        dst: k.dst & mask128(sig[1]),
        proto: u8::try_from(u128::from(k.proto) & mask_w(sig[2], 8)).unwrap_or(0),
        sport: u16::try_from(u128::from(k.sport) & mask_w(sig[3], 16)).unwrap_or(0),
        dport: u16::try_from(u128::from(k.dport) & mask_w(sig[4], 16)).unwrap_or(0),
    }
}

/// Per-chain classifier.
#[derive(Debug, Default)]
pub struct Classifier {
    tuples: Vec<Tuple>,
}

impl Classifier {
    /// Indexes the rules of one chain (their compiled statements, in order). `charge` is
    /// asked before each rule's entries are inserted (their number); `None` when it
    /// refuses (the compile budget is spent).
    pub(crate) fn build(
        rules: &[Box<[CStmt]>],
        charge: &mut dyn FnMut(usize) -> bool,
    ) -> Option<Self> {
        let mut c = Classifier::default();
        for (pos, stmts) in rules.iter().enumerate() {
            let pos = u32::try_from(pos).unwrap_or(u32::MAX);
            if !c.add(pos, stmts, charge) {
                return None;
            }
        }
        Some(c)
    }

    fn add(&mut self, pos: u32, stmts: &[CStmt], charge: &mut dyn FnMut(usize) -> bool) -> bool {
        // Entries per dimension; `None` = wildcard.
        let mut dims: [Option<Vec<(u128, u8)>>; 5] = Default::default();
        let widths = [128u32, 128, 8, 16, 16];
        for s in stmts {
            let CStmt::Match(m) = s else { break };
            if let Some(p) = m.field.l4proto()
                && dims[2].is_none()
            {
                dims[2] = Some(vec![(u128::from(p), 8)]);
            }
            let dim = match m.field {
                Field::IpSaddr | Field::Ip6Saddr => 0,
                Field::IpDaddr | Field::Ip6Daddr => 1,
                Field::IpProtocol | Field::Ip6Nexthdr | Field::MetaL4proto => 2,
                Field::TcpSport | Field::UdpSport | Field::ThSport => 3,
                Field::TcpDport | Field::UdpDport | Field::ThDport => 4,
                _ => continue,
            };
            if dims[dim].is_some() {
                continue;
            }
            let Some(iv) = m.intervals() else { continue };
            let mut out = Vec::new();
            let ok = iv
                .iter()
                .all(|&(lo, hi)| prefixes(lo, hi, widths[dim], &mut out));
            if ok && !out.iter().any(|&(_, l)| l == 0) {
                dims[dim] = Some(out);
            }
        }
        // Bound the cross product by wildcarding the widest dimensions.
        loop {
            let product: usize = dims
                .iter()
                .map(|d| d.as_ref().map_or(1, Vec::len))
                .fold(1usize, usize::saturating_mul);
            if product <= MAX_ENTRIES_PER_RULE {
                break;
            }
            let widest = (0..5)
                .max_by_key(|&i| dims[i].as_ref().map_or(0, Vec::len))
                .unwrap_or(0);
            dims[widest] = None;
        }
        let entries: usize = dims
            .iter()
            .map(|d| d.as_ref().map_or(1, Vec::len))
            .product();
        if !charge(entries) {
            return false;
        }
        let wild = [(0u128, 0u8)];
        let d = |i: usize| -> &[(u128, u8)] { dims[i].as_deref().unwrap_or(&wild) };
        for &(s, sl) in d(0) {
            for &(t, tl) in d(1) {
                for &(p, pl) in d(2) {
                    for &(sp, spl) in d(3) {
                        for &(dp, dpl) in d(4) {
                            let key = PacketKey {
                                src: s,
                                dst: t,
                                proto: u8::try_from(p).unwrap_or(0),
                                sport: u16::try_from(sp).unwrap_or(0),
                                dport: u16::try_from(dp).unwrap_or(0),
                            };
                            self.insert([sl, tl, pl, spl, dpl], key, pos);
                        }
                    }
                }
            }
        }
        true
    }

    fn insert(&mut self, sig: Sig, key: PacketKey, pos: u32) {
        let ti = match self.tuples.iter().position(|t| t.sig == sig) {
            Some(i) => i,
            None if self.tuples.len() < MAX_TUPLES
                || (self.tuples.len() == MAX_TUPLES && sig == [0; 5]) =>
            {
                self.tuples.push(Tuple {
                    sig,
                    map: FxHashMap::default(),
                });
                self.tuples.len() - 1
            }
            // Out of tuples: index as a wildcard (always a candidate).
            None => return self.insert([0; 5], PacketKey::default(), pos),
        };
        let t = &mut self.tuples[ti];
        let key = apply(&t.sig, &key);
        let list = t.map.entry(key).or_default();
        if list.last() != Some(&pos) {
            list.push(pos);
        }
    }

    /// Pushes the candidate lists (sorted rule positions) for a packet.
    pub fn candidates<'a, const N: usize>(
        &'a self,
        key: &PacketKey,
        out: &mut ArrayVec<&'a [u32], N>,
    ) {
        for t in &self.tuples {
            if let Some(l) = t.map.get(&apply(&t.sig, key))
                && out.try_push(&l[..]).is_err()
            {
                return;
            }
        }
    }

    /// Number of tuples (for tests and docs).
    pub fn tuple_count(&self) -> usize {
        self.tuples.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_split_covers_range_exactly() {
        for (lo, hi) in [
            (0u128, 65535u128),
            (1000, 2000),
            (22, 22),
            (1, 65534),
            (80, 81),
        ] {
            let mut out = Vec::new();
            assert!(prefixes(lo, hi, 16, &mut out));
            let mut covered = 0u128;
            for &(v, l) in &out {
                let size = 1u128 << (16 - u32::from(l));
                assert_eq!(v % size, 0, "aligned");
                assert!(v >= lo && v + size - 1 <= hi, "inside");
                covered += size;
            }
            assert_eq!(covered, hi - lo + 1);
        }
    }
}
