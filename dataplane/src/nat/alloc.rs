//! NAT bindings: from an original tuple and the ruleset's [`NatAction`]s to the reply tuple
//! conntrack tracks the connection under, with the port chosen so that the reply comes back
//! to the allocating worker (`docs/nat.md`).
//!
//! Source ports come from the worker's [`PortPools`] (owned by its connection table, which
//! releases a port when its entry dies): a port of an address and protocol is either held
//! by one live connection of this worker or free, and the search reads the pool's bitmap 64
//! candidates at a time, masked by the ports whose reply hashes to this worker
//! ([`MineMasks`], from the linearity of Toeplitz). It never asks the connection table.
//! Because an accepted port's reply hashes to this worker, and a tuple that hashes here can
//! only be created here, two workers never pick the same reply tuple.
//!
//! Destination ports (DNAT ranges) and address-only translations still ask the table
//! whether the one tuple they would create is in use ([`NatTable::taken`]): those are
//! per client by nature, and rare.

use super::node::{NodeSlice, split as slice};
use super::pool::{PoolKey, PortPools, Slot};
use super::rss::Owner;
use super::{NatAction, NatError, NatKind, Tuple};
use crate::wire::{Addr, proto};

/// Per-packet facts the NAT statements need beyond the tuple.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatEnv {
    /// Primary address of the egress interface, of the packet's family (masquerade).
    pub egress_addr: Option<Addr>,
    /// Primary address of the ingress interface, of the packet's family (redirect).
    pub ingress_addr: Option<Addr>,
}

/// What a binding needs from the worker's connection table.
pub trait NatTable {
    /// Whether `reply` is already a tuple of a live connection (either direction): asked
    /// once per DNAT port candidate and once for an address-only translation.
    fn taken(&self, reply: &Tuple) -> bool;
    /// The worker's source-port pools.
    fn ports(&mut self) -> &mut PortPools;
}

/// A [`NatTable`] without a connection table: the tuples in use and a slab of port pools
/// (tests, benches and tools; the daemon binds against its table through
/// [`crate::nat::CtNat`]).
#[derive(Debug)]
pub struct TupleSet {
    /// Tuples of live connections (both directions).
    pub tuples: rustc_hash::FxHashSet<Tuple>,
    /// Source ports held by them.
    pub pools: PortPools,
}

impl Default for TupleSet {
    fn default() -> Self {
        TupleSet {
            tuples: Default::default(),
            pools: PortPools::new(64),
        }
    }
}

impl TupleSet {
    /// Records a bound connection (both tuples); `false` when one was there already.
    pub fn insert(&mut self, b: &Binding) -> bool {
        let o = self.tuples.insert(b.orig);
        let r = self.tuples.insert(b.reply);
        o && r
    }

    /// Holds `port` of `key` as a live connection would; `false` if it was held (or no
    /// pool slot is left).
    pub fn hold(&mut self, key: PoolKey, port: u16) -> bool {
        self.pools
            .slot(key)
            .is_some_and(|s| self.pools.take(s, port))
    }

    /// Forgets a connection and releases its port (what conntrack does when it dies).
    pub fn remove(&mut self, b: &Binding) {
        self.tuples.remove(&b.orig);
        self.tuples.remove(&b.reply);
        b.release(&mut self.pools);
    }
}

impl NatTable for TupleSet {
    fn taken(&self, reply: &Tuple) -> bool {
        self.tuples.contains(reply)
    }

    fn ports(&mut self) -> &mut PortPools {
        &mut self.pools
    }
}

/// A DNAT (or address-only SNAT) reply that hashes to another worker: that worker must hand
/// packets of `reply` to `owner` (see "Flow ownership" in `docs/architecture.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Steering {
    /// The reply tuple as it arrives on the wire.
    pub reply: Tuple,
    /// The worker that receives the replies (`owner(reply)`).
    pub reply_worker: u16,
    /// The worker that owns the connection (the allocating one).
    pub owner: u16,
}

/// The NAT binding of a connection: stored in its conntrack entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Binding {
    /// The tuple of the first packet as it arrived.
    pub orig: Tuple,
    /// The tuple replies arrive with (the inverse of the translated original).
    pub reply: Tuple,
    /// Set where replies hash to another worker.
    pub steering: Option<Steering>,
    /// The translated source port (ICMP: identifier) is held in the table's port pools
    /// for this binding: insert the entry saying so (conntrack `InsertHints::nat_port`),
    /// and the entry releases it when it dies; a binding not inserted must
    /// [`release`](Binding::release) it.
    pub port_held: bool,
}

impl Binding {
    /// The original-direction tuple after translation, as the packet leaves.
    pub const fn translated(&self) -> Tuple {
        self.reply.inverse()
    }

    /// Whether the source (address or port) is rewritten in the original direction.
    pub fn is_snat(&self) -> bool {
        self.reply.dst != self.orig.src || self.reply.dport != self.orig.sport
    }

    /// Whether the destination (address or port) is rewritten in the original direction.
    pub fn is_dnat(&self) -> bool {
        self.reply.src != self.orig.dst || self.reply.sport != self.orig.dport
    }

    /// The pool and port a held source port is recorded under.
    pub fn held_port(&self) -> Option<(PoolKey, u16)> {
        self.port_held
            .then(|| pool_port(&self.reply.dst, self.reply.proto, self.reply.dport))
    }

    /// Gives the held source port back (a binding whose connection was not created).
    pub fn release(&self, pools: &mut PortPools) {
        if let Some((key, port)) = self.held_port() {
            pools.release(&key, port);
        }
    }
}

/// The pool key and port of a translated source `addr` and `port` of `proto`.
pub fn pool_port(addr: &Addr, proto: u8, port: u16) -> (PoolKey, u16) {
    (PoolKey { addr: *addr, proto }, port)
}

/// Per-worker NAT counters (summed by the control thread for metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NatStats {
    /// Bindings made.
    pub allocations: u64,
    /// Source-NAT bindings that kept the original source port (or ICMP id).
    pub ports_kept: u64,
    /// Bindings that searched their port range (SNAT, or DNAT with a busy port range).
    pub ports_searched: u64,
    /// Candidate ports examined one by one (DNAT port ranges).
    pub hash_probes: u64,
    /// Calls of [`NatTable::taken`] (DNAT ports, address-only translations).
    pub taken_checks: u64,
    /// Connections refused: no free port/tuple ([`NatError::PortExhausted`]).
    pub exhausted: u64,
    /// Connections refused: no usable address or a misplaced action.
    pub no_address: u64,
    /// Bindings whose replies hash to another worker (a steering record was produced).
    pub steering_records: u64,
}

impl NatStats {
    /// Add another worker's counters (for totals).
    pub fn add(&mut self, o: &NatStats) {
        self.allocations += o.allocations;
        self.ports_kept += o.ports_kept;
        self.ports_searched += o.ports_searched;
        self.hash_probes += o.hash_probes;
        self.taken_checks += o.taken_checks;
        self.exhausted += o.exhausted;
        self.no_address += o.no_address;
        self.steering_records += o.steering_records;
    }
}

/// Linux's default source-port range for a port with no `:PORT-PORT` in the statement
/// (`nf_nat_l4proto_unique_tuple`): below 512 → 1–511, 512–1023 → 600–1023, else
/// 1024–65535.
pub const fn default_port_range(port: u16) -> (u16, u16) {
    if port < 512 {
        (1, 511)
    } else if port < 1024 {
        (600, 1023)
    } else {
        (1024, 65535)
    }
}

/// Whether `proto` has 16-bit ports NAT can choose (TCP, UDP).
const fn has_ports(p: u8) -> bool {
    matches!(p, proto::TCP | proto::UDP)
}

/// Whether `t` is an ICMP/ICMPv6 echo tuple (its identifier is translated like a port).
const fn is_echo(t: &Tuple) -> bool {
    matches!(t.proto, proto::ICMP | proto::ICMPV6)
}

/// Which ports of a 64-port word have a reply that hashes to one worker, for any remote
/// endpoint: the RSS-aligned candidate generator of the port search.
///
/// The reply of an SNAT connection is (remote, pool address, remote port, NAT port *p*).
/// Toeplitz is linear, so `hash(reply) = base ^ term(p)` with `base` the hash of the reply
/// with port 0, and, for *p* = 64 *j* + *b*, `term(p) = term(64 j) ^ term(b)`. The worker
/// is `reta[hash & mask]`, so bit *b* of word *j* is ours exactly when
/// `reta[(base ^ term(64 j) ^ term(b)) & mask] == worker`: a function of
/// `x = (base ^ term(64 j)) & mask` alone. `mine[x]` holds that 64-bit mask for each of the
/// RETA's `mask + 1` values of `x`, and `word_term[j] = term(64 j) & mask`: a word's
/// candidates cost two loads, for any remote endpoint.
#[derive(Clone, Debug)]
pub struct MineMasks {
    owner_id: u64,
    worker: u16,
    mask: u32,
    /// Per family (IPv4, IPv6): `word_term` then `mine`.
    word_term: [Box<[u32]>; 2],
    mine: [Box<[u64]>; 2],
}

impl MineMasks {
    /// The tables of `worker` under `owner` (2 x (1 024 + RETA size) words).
    pub fn new(owner: &Owner, worker: u16) -> Self {
        let t = owner.toeplitz();
        let mask = owner.reta_mask();
        let build = |v4: bool| {
            let word_term: Box<[u32]> = (0..1024u16)
                .map(|j| t.dport_term_of(v4, j << 6) & mask)
                .collect();
            let mine: Box<[u64]> = (0..=mask)
                .map(|x| {
                    (0..64u16).fold(0u64, |m, b| {
                        let idx = x ^ (t.dport_term_of(v4, b) & mask);
                        if owner.worker_of_hash(idx) == worker {
                            m | 1 << b
                        } else {
                            m
                        }
                    })
                })
                .collect();
            (word_term, mine)
        };
        let (w4, m4) = build(true);
        let (w6, m6) = build(false);
        MineMasks {
            owner_id: owner.id(),
            worker,
            mask,
            word_term: [w4, w6],
            mine: [m4, m6],
        }
    }

    /// Ports `64 j ..= 64 j + 63` whose reply hashes to the worker, for a reply whose hash
    /// with port 0 is `base` (family: IPv4 when `v4`).
    #[inline]
    pub fn word(&self, v4: bool, base: u32, j: usize) -> u64 {
        let f = usize::from(!v4);
        self.mine[f][((base ^ self.word_term[f][j]) & self.mask) as usize]
    }
}

/// One worker's NAT allocator.
#[derive(Clone, Debug)]
pub struct PortAllocator {
    worker: u16,
    stats: NatStats,
    /// xorshift32 state for search offsets (never 0).
    rng: u32,
    /// Most `taken` checks one DNAT port search makes before refusing (Linux stops after
    /// 128 + 64 + 32 + 16); `u32::MAX` searches the whole range.
    max_taken_checks: u32,
    /// Candidate masks for the owner function last used (built on first use).
    masks: Option<MineMasks>,
    /// The last destination an address choice hashed, with its hash ([`dst_seed`]): the
    /// clients of one server reuse it.
    last_dst: (Addr, u64),
    /// This box's slice of every source port range (HA active/active, `nat/node.rs`).
    node: NodeSlice,
}

impl PortAllocator {
    /// The allocator of worker `worker`, searching whole ranges, with a fixed
    /// per-worker start of its pseudo-random sequence (tests; the daemon seeds it).
    pub fn new(worker: u16) -> Self {
        Self::with_seed(worker, 0x9e37_79b9)
    }

    /// The allocator of worker `worker` whose search offsets (and `random` /
    /// `fully-random` choices) come from `seed`.
    pub fn with_seed(worker: u16, seed: u64) -> Self {
        #[allow(clippy::cast_possible_truncation)] // folding the seed into 32 bits
        let folded = (seed ^ (seed >> 32)) as u32;
        Self {
            worker,
            stats: NatStats::default(),
            rng: (folded ^ (u32::from(worker) << 16)) | 1,
            max_taken_checks: u32::MAX,
            masks: None,
            last_dst: (Addr::default(), dst_seed(Addr::default())),
            node: NodeSlice::default(),
        }
    }

    /// Builds the candidate masks for `owner` now (the daemon does, so that no packet
    /// pays for it; otherwise the first search under an owner builds them).
    pub fn prepared(mut self, owner: &Owner) -> Self {
        self.masks_for(owner);
        self
    }

    /// Choose source ports only from this box's slice of each range (HA active/active).
    pub fn with_node_slice(mut self, node: NodeSlice) -> Self {
        self.node = node;
        self
    }

    /// Bound the `taken` checks per DNAT port search (a busy range then fails fast, as in
    /// Linux).
    pub fn with_max_taken_checks(mut self, n: u32) -> Self {
        self.max_taken_checks = n.max(1);
        self
    }

    pub fn worker(&self) -> u16 {
        self.worker
    }

    pub fn stats(&self) -> &NatStats {
        &self.stats
    }

    /// [`pick_addr`] of `r` for `t`, the destination's seed remembered from the last call.
    fn choose_addr(
        &mut self,
        r: (Addr, Addr),
        t: &Tuple,
        persistent: bool,
    ) -> Result<Addr, NatError> {
        let seed = if persistent {
            0
        } else {
            if self.last_dst.0 != t.dst {
                self.last_dst = (t.dst, dst_seed(t.dst));
            }
            self.last_dst.1
        };
        pick_addr(r, t, seed)
    }

    fn next_rand(&mut self) -> u32 {
        self.rng = xorshift(self.rng);
        self.rng
    }

    fn masks_for(&mut self, owner: &Owner) -> &MineMasks {
        if self
            .masks
            .as_ref()
            .is_none_or(|m| m.owner_id != owner.id() || m.worker != self.worker)
        {
            self.masks = Some(MineMasks::new(owner, self.worker));
        }
        self.masks
            .as_ref()
            .expect("the masks were built just above")
    }

    /// Bind a new connection whose first packet has tuple `orig`. `dnat` is the decision
    /// of the prerouting/output NAT chains (DNAT or redirect), `snat` that of postrouting
    /// (SNAT or masquerade); either may be absent. `ct` is the worker's connection table:
    /// its port pools give source ports (a held port is marked in the binding), its
    /// `taken` answers for DNAT ports and address-only translations.
    ///
    /// Errors are counted in [`Self::stats`]; the caller drops the packet with
    /// [`NatError::drop_reason`].
    pub fn bind(
        &mut self,
        orig: &Tuple,
        dnat: Option<&NatAction>,
        snat: Option<&NatAction>,
        env: &NatEnv,
        owner: &Owner,
        ct: &mut impl NatTable,
    ) -> Result<Binding, NatError> {
        let r = self.bind_inner(orig, dnat, snat, env, owner, ct);
        match r {
            Ok(b) => {
                self.stats.allocations += 1;
                if b.steering.is_some() {
                    self.stats.steering_records += 1;
                }
            }
            Err(NatError::PortExhausted) => self.stats.exhausted += 1,
            Err(NatError::NoAddress | NatError::WrongKind) => self.stats.no_address += 1,
        }
        r
    }

    fn bind_inner(
        &mut self,
        orig: &Tuple,
        dnat: Option<&NatAction>,
        snat: Option<&NatAction>,
        env: &NatEnv,
        owner: &Owner,
        ct: &mut impl NatTable,
    ) -> Result<Binding, NatError> {
        // `t` is the original-direction tuple as translated so far.
        let mut t = *orig;
        if let Some(a) = dnat {
            t = self.destination(t, a, env, &*ct)?;
        }
        let (mut aligned, mut port_held) = (false, false);
        if let Some(a) = snat {
            let s = self.source(orig, t, a, env, owner, ct)?;
            (t, aligned, port_held) = (s.tuple, s.aligned, s.held);
        } else if dnat.is_some() {
            self.stats.taken_checks += 1;
            if ct.taken(&t.inverse()) {
                // A single DNAT target port already in use by the same client endpoint.
                return Err(NatError::PortExhausted);
            }
        }
        let reply = t.inverse();
        // A port chosen by the RSS-aligned search hashes here by construction; with one
        // worker everything does.
        let reply_worker = if aligned || owner.workers() == 1 {
            self.worker
        } else {
            owner.owner(&reply)
        };
        let steering = (reply_worker != self.worker).then_some(Steering {
            reply,
            reply_worker,
            owner: self.worker,
        });
        Ok(Binding {
            orig: *orig,
            reply,
            steering,
            port_held,
        })
    }

    /// DNAT / redirect: rewrite the destination of `t`.
    fn destination(
        &mut self,
        mut t: Tuple,
        a: &NatAction,
        env: &NatEnv,
        ct: &impl NatTable,
    ) -> Result<Tuple, NatError> {
        let v4 = t.is_v4();
        t.dst = match (a.kind, a.range.addr) {
            (NatKind::Redirect, _) => env.ingress_addr.ok_or(NatError::NoAddress)?,
            (NatKind::Dnat, Some(r)) => self.choose_addr(r, &t, a.flags.persistent)?,
            (NatKind::Dnat, None) => t.dst,
            (NatKind::Snat | NatKind::Masquerade, _) => return Err(NatError::WrongKind),
        };
        check_family(v4, t.dst)?;
        let Some((lo, hi)) = a.range.ports.filter(|_| has_ports(t.proto)) else {
            return Ok(t);
        };
        if lo > hi {
            return Err(NatError::PortExhausted);
        }
        // Linux keeps an in-range port if it is the only one or still unused.
        if (lo..=hi).contains(&t.dport) && lo == hi {
            return Ok(t);
        }
        if (lo..=hi).contains(&t.dport) {
            self.stats.taken_checks += 1;
            if !ct.taken(&t.inverse()) {
                return Ok(t);
            }
        }
        let off = if a.flags.random || a.flags.fully_random {
            self.next_rand()
        } else {
            0
        };
        self.search((lo, hi), off, |p| Tuple { dport: p, ..t }, ct)
    }

    /// SNAT / masquerade: rewrite the source of `t` (already destination-translated).
    fn source(
        &mut self,
        orig: &Tuple,
        mut t: Tuple,
        a: &NatAction,
        env: &NatEnv,
        owner: &Owner,
        ct: &mut impl NatTable,
    ) -> Result<Source, NatError> {
        let v4 = t.is_v4();
        t.src = match (a.kind, a.range.addr) {
            (NatKind::Masquerade, _) => env.egress_addr.ok_or(NatError::NoAddress)?,
            (NatKind::Snat, Some(r)) if in_range(r, t.src) => t.src,
            (NatKind::Snat, Some(r)) => self.choose_addr(r, &t, a.flags.persistent)?,
            (NatKind::Snat, None) => t.src,
            (NatKind::Dnat | NatKind::Redirect, _) => return Err(NatError::WrongKind),
        };
        check_family(v4, t.src)?;
        let echo = is_echo(&t);
        if !has_ports(t.proto) && !echo {
            // Nothing to choose: the address alone must make the tuple unique.
            self.stats.taken_checks += 1;
            return if ct.taken(&t.inverse()) {
                Err(NatError::PortExhausted)
            } else {
                Ok(Source {
                    tuple: t,
                    aligned: false,
                    held: false,
                })
            };
        }
        let (lo, hi) = match a.range.ports {
            Some(r) => r,
            None if echo => (0, 65535),
            None => default_port_range(t.sport),
        };
        if lo > hi {
            return Err(NatError::PortExhausted);
        }
        let (lo, hi) = self.node.apply(lo, hi)?;
        // Where the reply's owner depends on the port (L4 RSS), use only ports whose reply
        // hashes here. Where it does not (ICMP ids, ports hashed on addresses only), use
        // this worker's fixed slice of the range so workers never collide.
        let constrained = owner.hashes_ports(t.proto) && owner.workers() > 1;
        let (lo, hi) = if owner.hashes_ports(t.proto) {
            (lo, hi)
        } else {
            slice(lo, hi, self.worker, owner.workers())?
        };
        let with_port = |p: u16| {
            if echo {
                Tuple {
                    sport: p,
                    dport: p,
                    ..t
                }
            } else {
                Tuple { sport: p, ..t }
            }
        };
        // Toeplitz is linear: hash(reply with port p) = base ^ term(p).
        let reply0 = Tuple {
            dport: 0,
            ..t.inverse()
        };
        let base = if constrained {
            owner.toeplitz().hash_tuple(&reply0, true)
        } else {
            0
        };
        let me = self.worker;
        let mine = |p: u16| {
            !constrained || owner.worker_of_hash(base ^ owner.toeplitz().dport_term_of(v4, p)) == me
        };
        let random = a.flags.random || a.flags.fully_random;
        let Some(slot) = ct.ports().slot(PoolKey {
            addr: t.src,
            proto: t.proto,
        }) else {
            return Err(NatError::PortExhausted);
        };
        // The word a search would start in (the next start of the sequence, not taken
        // yet) is fetched while the kept port's word is read: the two misses overlap
        // instead of following each other when the kept port is in use.
        ct.ports()
            .hint_word(slot, search_start((lo, hi), xorshift(self.rng)));
        if !random
            && (lo..=hi).contains(&orig.sport)
            && mine(orig.sport)
            && ct.ports().take(slot, orig.sport)
        {
            self.stats.ports_kept += 1;
            return Ok(Source {
                tuple: with_port(orig.sport),
                aligned: constrained,
                held: true,
            });
        }
        self.stats.ports_searched += 1;
        let port = self.search_pool(
            ct.ports(),
            slot,
            (lo, hi),
            v4,
            constrained.then_some(base),
            owner,
        )?;
        Ok(Source {
            tuple: with_port(port),
            aligned: constrained,
            held: true,
        })
    }

    /// The pool search: the first free port of `lo ..= hi` from a pseudo-random start
    /// whose reply hashes here (`base`: the reply's hash with port 0, when that matters).
    fn search_pool(
        &mut self,
        pools: &mut PortPools,
        slot: Slot,
        (lo, hi): (u16, u16),
        v4: bool,
        base: Option<u32>,
        owner: &Owner,
    ) -> Result<u16, NatError> {
        let start = search_start((lo, hi), self.next_rand());
        let found = match base {
            None => pools.take_first(slot, (lo, hi), start, ANY_PORT, |_| u64::MAX),
            Some(base) => {
                let m = self.masks_for(owner);
                // The candidate function depends on the family and the RETA bits of base.
                let tag = (base & m.mask) | u32::from(!v4) << 31;
                pools.take_first(slot, (lo, hi), start, tag, |j| m.word(v4, base, j))
            }
        };
        found.ok_or(NatError::PortExhausted)
    }

    /// DNAT port search: walk `lo ..= hi` from offset `off`; the first candidate port `p`
    /// whose tuple `cand(p)` has an unused reply wins. At most `max_taken_checks` calls of
    /// `taken`.
    fn search(
        &mut self,
        (lo, hi): (u16, u16),
        off: u32,
        cand: impl Fn(u16) -> Tuple,
        ct: &impl NatTable,
    ) -> Result<Tuple, NatError> {
        self.stats.ports_searched += 1;
        let size = u32::from(hi - lo) + 1;
        let mut checks = 0u32;
        for i in 0..size {
            let p = port_at(lo, size, off, i);
            self.stats.hash_probes += 1;
            let c = cand(p);
            self.stats.taken_checks += 1;
            if !ct.taken(&c.inverse()) {
                return Ok(c);
            }
            checks += 1;
            if checks >= self.max_taken_checks {
                break;
            }
        }
        Err(NatError::PortExhausted)
    }
}

/// The memory tag of searches whose every port is a candidate.
const ANY_PORT: u32 = u32::MAX >> 1;

/// What the source translation chose.
struct Source {
    tuple: Tuple,
    /// The port was chosen so that the reply hashes to this worker.
    aligned: bool,
    /// The port is held in the pools.
    held: bool,
}

/// The next value of the xorshift32 sequence after `x`.
fn xorshift(mut x: u32) -> u32 {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    x
}

/// Where a pool search over `lo ..= hi` starts for the random value `r`.
fn search_start((lo, hi): (u16, u16), r: u32) -> u16 {
    let size = u64::from(hi - lo) + 1;
    // lo + r * size / 2^32 < lo + size: in range.
    u16::try_from(u64::from(lo) + ((u64::from(r) * size) >> 32)).unwrap_or(hi)
}

/// The `i`-th candidate of a search over `lo .. lo + size` starting at offset `off`.
#[inline]
fn port_at(lo: u16, size: u32, off: u32, i: u32) -> u16 {
    // lo + (x % size) <= hi <= 65535, so the fallback is never taken.
    u16::try_from(u32::from(lo) + (off.wrapping_add(i) % size)).unwrap_or(u16::MAX)
}

fn check_family(v4: bool, a: Addr) -> Result<(), NatError> {
    if v4 == a.to_v4().is_some() {
        Ok(())
    } else {
        Err(NatError::NoAddress)
    }
}

fn in_range(r: (Addr, Addr), a: Addr) -> bool {
    r.0 <= a && a <= r.1
}

/// splitmix64 finaliser.
fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The address's two big-endian 8-byte halves, mixed with `seed`.
#[allow(clippy::cast_possible_truncation)] // the address's halves, on purpose
fn hash_addr(a: Addr, seed: u64) -> u64 {
    let v = u128::from_be_bytes(a.0);
    mix64(mix64(seed ^ (v >> 64) as u64) ^ v as u64)
}

/// The seed a destination gives the address choice ([`pick_addr`]) of a connection that
/// is not `persistent`.
fn dst_seed(dst: Addr) -> u64 {
    hash_addr(dst, 0x5eed)
}

/// Pick an address of `r` for the connection `t`, as Linux's `find_best_ips_proto`: by a
/// hash of the source address, mixed with the destination's ([`dst_seed`]) unless
/// `persistent` (`seed` 0), so one client keeps one address (for all destinations when
/// persistent).
fn pick_addr(r: (Addr, Addr), t: &Tuple, seed: u64) -> Result<Addr, NatError> {
    let (lo, hi) = (u128::from_be_bytes(r.0.0), u128::from_be_bytes(r.1.0));
    if hi < lo || r.0.to_v4().is_some() != r.1.to_v4().is_some() {
        return Err(NatError::NoAddress);
    }
    let h = hash_addr(t.src, seed);
    // `h * size / 2^64` (one 64 x 64 multiply) picks uniformly in a range of up to 2^64
    // addresses; a wider (IPv6) range takes `h` itself, which is below its size.
    let span = hi - lo;
    let off = match u64::try_from(span) {
        Ok(s) if s < u64::MAX => (u128::from(h) * u128::from(s + 1)) >> 64,
        _ => u128::from(h),
    };
    Ok(Addr((lo + off).to_be_bytes()))
}

#[cfg(test)]
mod tests;
