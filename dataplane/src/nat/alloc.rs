//! NAT bindings: from an original tuple and the ruleset's [`NatAction`]s to the reply tuple
//! conntrack tracks the connection under, with the port chosen so that the reply comes back
//! to the allocating worker (`docs/nat.md`).
//!
//! The allocator keeps no port pool: a port is in use exactly while a conntrack entry holds
//! its reply tuple, which the caller's `taken` predicate answers. Because a candidate port
//! is accepted only if its reply tuple hashes to this worker, and a tuple that hashes to
//! this worker can only live in this worker's table, `taken` needs to consult only the
//! local table, and two workers never pick the same reply tuple.

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
    /// Candidate ports examined during searches (for SNAT: reply hashes computed).
    pub hash_probes: u64,
    /// Calls of the `taken` predicate.
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

/// One worker's NAT allocator.
#[derive(Clone, Debug)]
pub struct PortAllocator {
    worker: u16,
    stats: NatStats,
    /// xorshift32 state for search offsets (never 0).
    rng: u32,
    /// Most `taken` checks one search makes before refusing (Linux stops after 128 + 64 +
    /// 32 + 16); `u32::MAX` searches the whole range.
    max_taken_checks: u32,
}

impl PortAllocator {
    /// The allocator of worker `worker`, searching whole ranges.
    pub fn new(worker: u16) -> Self {
        Self {
            worker,
            stats: NatStats::default(),
            rng: 0x9e37_79b9 ^ (u32::from(worker) << 16) | 1,
            max_taken_checks: u32::MAX,
        }
    }

    /// Bound the `taken` checks per search (a busy range then fails fast, as in Linux).
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

    fn next_rand(&mut self) -> u32 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng = x;
        x
    }

    /// Bind a new connection whose first packet has tuple `orig`. `dnat` is the decision
    /// of the prerouting/output NAT chains (DNAT or redirect), `snat` that of postrouting
    /// (SNAT or masquerade); either may be absent. `taken(reply)` says whether a reply
    /// tuple is already in use (as either key of a live conntrack entry).
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
        taken: impl Fn(&Tuple) -> bool,
    ) -> Result<Binding, NatError> {
        let r = self.bind_inner(orig, dnat, snat, env, owner, &taken);
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
        taken: &dyn Fn(&Tuple) -> bool,
    ) -> Result<Binding, NatError> {
        // `t` is the original-direction tuple as translated so far.
        let mut t = *orig;
        if let Some(a) = dnat {
            t = self.destination(t, a, env, taken)?;
        }
        if let Some(a) = snat {
            t = self.source(orig, t, a, env, owner, taken)?;
        } else if dnat.is_some() && taken(&t.inverse()) {
            // A single DNAT target port already in use by the same client endpoint.
            return Err(NatError::PortExhausted);
        }
        let reply = t.inverse();
        let reply_worker = owner.owner(&reply);
        let steering = (reply_worker != self.worker).then_some(Steering {
            reply,
            reply_worker,
            owner: self.worker,
        });
        Ok(Binding {
            orig: *orig,
            reply,
            steering,
        })
    }

    /// DNAT / redirect: rewrite the destination of `t`.
    fn destination(
        &mut self,
        mut t: Tuple,
        a: &NatAction,
        env: &NatEnv,
        taken: &dyn Fn(&Tuple) -> bool,
    ) -> Result<Tuple, NatError> {
        let v4 = t.is_v4();
        t.dst = match (a.kind, a.range.addr) {
            (NatKind::Redirect, _) => env.ingress_addr.ok_or(NatError::NoAddress)?,
            (NatKind::Dnat, Some(r)) => pick_addr(r, &t, a.flags.persistent)?,
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
        if (lo..=hi).contains(&t.dport) && (lo == hi || !taken(&t.inverse())) {
            return Ok(t);
        }
        let off = if a.flags.random || a.flags.fully_random {
            self.next_rand()
        } else {
            0
        };
        self.search((lo, hi), off, |_| true, |p| Tuple { dport: p, ..t }, taken)
    }

    /// SNAT / masquerade: rewrite the source of `t` (already destination-translated).
    fn source(
        &mut self,
        orig: &Tuple,
        mut t: Tuple,
        a: &NatAction,
        env: &NatEnv,
        owner: &Owner,
        taken: &dyn Fn(&Tuple) -> bool,
    ) -> Result<Tuple, NatError> {
        let v4 = t.is_v4();
        t.src = match (a.kind, a.range.addr) {
            (NatKind::Masquerade, _) => env.egress_addr.ok_or(NatError::NoAddress)?,
            (NatKind::Snat, Some(r)) if in_range(r, t.src) => t.src,
            (NatKind::Snat, Some(r)) => pick_addr(r, &t, a.flags.persistent)?,
            (NatKind::Snat, None) => t.src,
            (NatKind::Dnat | NatKind::Redirect, _) => return Err(NatError::WrongKind),
        };
        check_family(v4, t.src)?;
        let echo = is_echo(&t);
        if !has_ports(t.proto) && !echo {
            // Nothing to choose: the address alone must make the tuple unique.
            self.stats.taken_checks += 1;
            return if taken(&t.inverse()) {
                Err(NatError::PortExhausted)
            } else {
                Ok(t)
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
        // Where the reply's owner depends on the port (L4 RSS), accept only ports whose
        // reply hashes here. Where it does not (ICMP ids, ports hashed on addresses only),
        // use this worker's fixed slice of the range so workers never collide.
        let constrained = owner.hashes_ports(t.proto);
        let (lo, hi) = if constrained {
            (lo, hi)
        } else {
            slice(lo, hi, self.worker, owner.workers())?
        };
        let me = self.worker;
        let off = self.next_rand();
        let reply0 = Tuple {
            dport: 0,
            ..t.inverse()
        };
        // Toeplitz is linear: hash(reply with port p) = base ^ term(p).
        let base = if constrained {
            owner.toeplitz().hash_tuple(&reply0, true)
        } else {
            0
        };
        let mine = |p: u16| {
            !constrained
                || owner.worker_of_hash(base ^ owner.toeplitz().dport_term(&reply0, p)) == me
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

        let random = a.flags.random || a.flags.fully_random;
        if !random && (lo..=hi).contains(&orig.sport) && mine(orig.sport) {
            let c = with_port(orig.sport);
            self.stats.taken_checks += 1;
            if !taken(&c.inverse()) {
                self.stats.ports_kept += 1;
                return Ok(c);
            }
        }
        self.search((lo, hi), off, mine, with_port, taken)
    }

    /// Walk `lo ..= hi` from offset `off`; the first candidate port `p` that is `mine` and
    /// whose tuple `cand(p)` has an unused reply wins. At most `max_taken_checks` calls of
    /// `taken`.
    fn search(
        &mut self,
        (lo, hi): (u16, u16),
        off: u32,
        mine: impl Fn(u16) -> bool,
        cand: impl Fn(u16) -> Tuple,
        taken: &dyn Fn(&Tuple) -> bool,
    ) -> Result<Tuple, NatError> {
        self.stats.ports_searched += 1;
        let size = u32::from(hi - lo) + 1;
        let mut checks = 0u32;
        for i in 0..size {
            let p = port_at(lo, size, off, i);
            self.stats.hash_probes += 1;
            if !mine(p) {
                continue;
            }
            let c = cand(p);
            self.stats.taken_checks += 1;
            if !taken(&c.inverse()) {
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

/// The `i`-th candidate of a search over `lo .. lo + size` starting at offset `off`.
#[inline]
fn port_at(lo: u16, size: u32, off: u32, i: u32) -> u16 {
    // lo + (x % size) <= hi <= 65535, so the fallback is never taken.
    u16::try_from(u32::from(lo) + (off.wrapping_add(i) % size)).unwrap_or(u16::MAX)
}

/// Worker `w`'s share of `lo ..= hi` when it is split evenly among `n` workers.
fn slice(lo: u16, hi: u16, w: u16, n: u16) -> Result<(u16, u16), NatError> {
    let size = u32::from(hi - lo) + 1;
    let n = u32::from(n.max(1));
    let w = u32::from(w);
    let a = u32::from(lo) + size * w / n;
    let b = u32::from(lo) + size * (w + 1) / n;
    if w >= n || b <= a {
        return Err(NatError::PortExhausted);
    }
    let a = u16::try_from(a).map_err(|_| NatError::PortExhausted)?;
    let b = u16::try_from(b - 1).map_err(|_| NatError::PortExhausted)?;
    Ok((a, b))
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

fn hash_addr(a: Addr, seed: u64) -> u64 {
    let (hi, lo) = a.0.split_at(8);
    let word = |b: &[u8]| b.iter().fold(0u64, |acc, &x| acc << 8 | u64::from(x));
    mix64(mix64(seed ^ word(hi)) ^ word(lo))
}

/// Pick an address of `r` for the connection `t`, as Linux's `find_best_ips_proto`: by a
/// hash of the source address, mixed with the destination unless `persistent`, so one
/// client keeps one address (for all destinations when persistent).
fn pick_addr(r: (Addr, Addr), t: &Tuple, persistent: bool) -> Result<Addr, NatError> {
    let (lo, hi) = (u128::from_be_bytes(r.0.0), u128::from_be_bytes(r.1.0));
    if hi < lo || r.0.to_v4().is_some() != r.1.to_v4().is_some() {
        return Err(NatError::NoAddress);
    }
    let seed = if persistent {
        0
    } else {
        hash_addr(t.dst, 0x5eed)
    };
    let h = u128::from(hash_addr(t.src, seed));
    let v = match (hi - lo).checked_add(1) {
        Some(size) => lo + h % size,
        None => h,
    };
    Ok(Addr(v.to_be_bytes()))
}

#[cfg(test)]
mod tests;
