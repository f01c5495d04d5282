//! The fast-path recipe's data (`recipe.rs`): the one-line record, its keys, plan and
//! build arguments, and the RFC 1624 checksum deltas. A leaf below `table.rs` and
//! `recipe.rs`: it imports neither.

use crate::conntrack::key::Direction;
use crate::wire::checksum;

/// One direction of a connection as the fast path applies it (64 bytes, one line).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, align(64))]
pub(crate) struct Recipe {
    /// Source, destination, source port, destination port as the frame carries them.
    pub(super) key: [u8; 12],
    pub(super) proto: u8,
    /// The input port the verdict was cached for.
    pub(super) in_port: u8,
    /// The worker's adjacency (output port, MACs, MTU).
    pub(super) adj: u16,
    /// The translated source, destination and ports (the key when not NATed).
    pub(super) out: [u8; 12],
    /// RFC 1624 sums to add to the IPv4 header checksum (address changes and the TTL
    /// decrement) and to the L4 checksum (address and port changes).
    pub(super) ip_delta: u16,
    pub(super) l4_delta: u16,
    /// The worker's epoch at build time; 0 = no recipe.
    pub(super) epoch: u64,
    /// The timeout every packet of the direction refreshes the entry to.
    pub(super) secs: u32,
    /// The last deadline seen written (the entry's is never earlier).
    pub(super) deadline: u32,
    /// Packets and bytes not yet added to the entry's accounting.
    pub(super) bytes: u64,
    pub(super) packets: u32,
    /// The verdict-cache path whose rules each packet credits ([`NO_PATH`]: none).
    pub(super) path: u16,
    pub(super) flags: u8,
    pub(super) _pad: u8,
}

const _: () = assert!(size_of::<Recipe>() == 64);

/// `Recipe::flags`: the addresses or ports change (the frame gets `out`).
pub(super) const REWRITE: u8 = 1;
/// `Recipe::flags`: the L4 checksum changes (`l4_delta`).
pub(super) const L4_UPDATE: u8 = 2;

/// `path` of a recipe with no rules to credit (no ruleset loaded).
pub const NO_PATH: u16 = u16::MAX;

/// The packet fields a recipe is matched on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FastKey {
    /// Source, destination, source port, destination port as in the frame.
    pub tuple: [u8; 12],
    /// TCP or UDP.
    pub proto: u8,
    /// The port the frame arrived on.
    pub in_port: u8,
}

/// A packet whose recipe matched ([`Table::recipe_match`]): which line, and the two
/// fields the worker needs before the rewrite. The rewrite reads the rest from the line
/// itself ([`Table::recipe_rewrite`]), nothing is copied out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FastPlan {
    /// The entry slot and direction (for [`Table::recipe_commit`]).
    pub slot: u32,
    pub dir: Direction,
    /// The worker's adjacency index.
    pub adj: u16,
    /// The verdict-cache path to credit ([`NO_PATH`]: none).
    pub path: u16,
}

/// What [`Table::build_recipe`] needs from the worker.
#[derive(Clone, Copy, Debug)]
pub struct RecipeArgs {
    /// The input port of the packet the verdict was cached for.
    pub in_port: u8,
    /// The worker's epoch (never 0).
    pub epoch: u64,
    /// The adjacency the packet left by.
    pub adj: u16,
    /// The verdict-cache path ([`NO_PATH`]: none).
    pub path: u16,
}

/// The ones'-complement sum `Σ (~old + new)` over the 16-bit words of two equal-length
/// fields (RFC 1624 eqn. 3 without the final complement), unfolded.
pub(super) fn word_delta(old: &[u8], new: &[u8]) -> u32 {
    old.chunks_exact(2)
        .zip(new.chunks_exact(2))
        .map(|(o, n)| {
            u32::from(!u16::from_be_bytes([o[0], o[1]]))
                + u32::from(u16::from_be_bytes([n[0], n[1]]))
        })
        .fold(0, checksum::add)
}

/// The IPv4 header's word holding the TTL loses 0x0100: `~w + (w - 0x100)` = 0xFEFF for
/// every TTL above 0.
pub(super) const TTL_DELTA: u32 = 0xfeff;

/// Checksum sums of rewriting `key` to `out` (each 12 bytes: src, dst, sport, dport):
/// the IPv4 header's (changed addresses and the TTL) and, when anything the L4
/// checksum covers changes (addresses through the pseudo-header, ports), the L4's. Only
/// fields that differ count, as the slow path only patches those; the sum of the
/// per-field RFC 1624 updates equals one update by the summed delta (ones'-complement
/// addition is associative), so the bytes are the slow path's.
pub(super) fn deltas(key: &[u8; 12], out: &[u8; 12]) -> (u16, Option<u16>) {
    let mut ip = TTL_DELTA;
    let mut l4 = 0u32;
    let mut l4_changes = false;
    for (lo, hi) in [(0, 4), (4, 8)] {
        if key[lo..hi] != out[lo..hi] {
            let d = word_delta(&key[lo..hi], &out[lo..hi]);
            ip = checksum::add(ip, d);
            l4 = checksum::add(l4, d);
            l4_changes = true;
        }
    }
    for (lo, hi) in [(8, 10), (10, 12)] {
        if key[lo..hi] != out[lo..hi] {
            l4 = checksum::add(l4, word_delta(&key[lo..hi], &out[lo..hi]));
            l4_changes = true;
        }
    }
    (checksum::fold(ip), l4_changes.then(|| checksum::fold(l4)))
}

/// Applies a sum from [`deltas`] to a checksum field value (RFC 1624 eqn. 3).
#[inline]
pub fn apply_delta(csum: u16, delta: u16) -> u16 {
    !checksum::fold(u32::from(!csum) + u32::from(delta))
}

pub(super) fn tuple_bytes(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[0..4].copy_from_slice(&src);
    b[4..8].copy_from_slice(&dst);
    b[8..10].copy_from_slice(&sport.to_be_bytes());
    b[10..12].copy_from_slice(&dport.to_be_bytes());
    b
}
