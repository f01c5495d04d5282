//! The per-worker packet pipeline: pure Rust on byte slices, no EAL.
//!
//! [`Pipeline::process`] takes one received Ethernet frame and decides an [`Action`]:
//! parse → (ARP / neighbour discovery → slow path) → L2 checks → owner check →
//! conntrack → rules → NAT → local delivery (echo reply, reject, `local_no_socket`) or
//! forwarding (LPM route, TTL / hop limit with ICMP time exceeded, MTU, neighbour MAC from
//! the snapshot; unresolved → slow path). See `docs/pipeline.md` for the stage-by-stage
//! decisions and the known gaps.
//!
//! Counting contract: the pipeline counts every drop it decides in
//! [`Counters::drops`], including the received packet of an [`Action::Reply`] (an ICMP
//! error answers a dropped packet: `no_route`, `ttl_exceeded`, …), those answered in
//! `Counters::proc.replied_drops` as well. The I/O edge counts each [`Action::Drop`] by its
//! reason and what happens after the action (TX ring full, handoff ring full); the
//! published drop counts are the edge's plus `replied_drops` (`ProcCounters`), so each
//! dropped packet is counted once whether or not it was answered.

use std::sync::Arc;

use super::counters::ProcCounters;
use super::held::{Held, HeldTable};
use super::pipe_build::{self as build, L2Out};
use super::{Action, WorkerCommand, WorkerReply};
use crate::DropReason;
use crate::conntrack::table::DST_NAT;
use crate::conntrack::{
    CtState, Direction, EntryId, FlowKey, InsertHints, Miss, NewFlow, Outcome, Probe,
    RefusedTunable, Table, Tunables, random_seed,
};
use crate::nat::alloc::{NatEnv, PortAllocator, Steering};
use crate::nat::rss::{Owner, SYMMETRIC_RSS_KEY};
use crate::nat::{CtNat, NatAction, NatKind, Tuple};
use crate::route::{AdjTable, Mac, NeighborSnapshot, NextHop, RouteTable};
use crate::rules::ast::Reject;
use crate::rules::compile::MAX_CT_TOKENS;
use crate::rules::{CtCountToken, Decision, FirstCache, Hook, PacketCtx, WorkerRuleset, ct_state};
use crate::wire::{self, Addr, Family, Fragment, IpInfo, L2Info, L4Info, ParseOptions, Parsed};
use arrayvec::ArrayVec;
use rustc_hash::FxHashMap;

#[path = "facts.rs"]
mod facts;
#[path = "fast.rs"]
mod fast;
#[path = "fast_state.rs"]
mod fast_state;
pub use fast_state::MAX_VECTOR;
#[path = "frag.rs"]
mod frag;
#[path = "frag_state.rs"]
mod frag_state;
#[path = "helper.rs"]
mod helper;
#[path = "helper_state.rs"]
mod helper_state;
pub use super::counters::HelperCounters;
pub use frag_state::{FRAG_COUNTERS, FragState};

/// What the pipeline needs to know about one port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortInfo {
    /// The port's MAC address (source of everything sent there).
    pub mac: Mac,
    /// L3 MTU in bytes.
    pub mtu: u16,
    /// The NIC spreads flows over the worker queues by RSS with the shared symmetric key:
    /// a packet arriving on a worker's queue is owned by it. `false` for `net_memif`,
    /// `net_af_packet`, `net_tap`, `net_ring`: ownership is computed in software.
    pub hw_rss: bool,
}

/// Static configuration of every worker's pipeline.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// Indexed by port index (the order of the configuration file).
    pub ports: Vec<PortInfo>,
    /// Entries of this worker's connection table (its share of `nf_conntrack_max`).
    pub ct_capacity: u32,
    /// Conntrack tunables (timeouts, loose, liberal).
    pub tunables: Tunables,
    /// The flow-ownership function (RSS key, RETA, queue → worker), the same for every
    /// port. `None`: the symmetric key spread over `n_workers` (`Owner::spread`).
    pub owner: Option<Arc<Owner>>,
    /// Seed of the connection table's hash and of NAT's port choices. `None` (the
    /// daemon): a random one at every start (`conntrack::random_seed`); tests fix it.
    pub ct_seed: Option<u64>,
    /// The expectation table every worker shares (`crate::helper`). `None`: this pipeline
    /// makes its own (tests with one worker).
    pub expect: Option<Arc<crate::helper::ExpectTable>>,
    /// This box's slice of every SNAT / masquerade port range (HA active/active,
    /// `nat/node.rs`); the default is the whole range.
    pub nat_node: crate::nat::NodeSlice,
}

/// Per-worker counters (plain `u64`s; the I/O edge publishes copies).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counters {
    /// Drops by reason, indexed by `DropReason as usize`.
    pub drops: [u64; DropReason::COUNT],
    /// Frames given to [`Pipeline::process`].
    pub rx: u64,
    /// The counters the I/O edge publishes ([`Pipeline::proc_counters`]): forwarded,
    /// local, sent (echo replies, ICMP errors, resets), rate-limited ICMP errors,
    /// verdict-cache hits, slow path, handoffs, snapshots, and of `drops` those answered
    /// by an [`Action::Reply`] (`replied_drops`: the edge sees a reply there, not a drop,
    /// and adds these to its own drop counts). `events_dropped` is conntrack's, filled
    /// when they are read.
    pub proc: ProcCounters,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            drops: [0; DropReason::COUNT],
            rx: 0,
            proc: ProcCounters::default(),
        }
    }
}

impl Counters {
    /// Drops counted under `reason`.
    pub fn drop_count(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }
}

/// ICMP errors per second the whole appliance sends at most: Linux's
/// `net.ipv4.icmp_msgs_per_sec` default (one global bucket for ICMP and ICMPv6,
/// `icmp_global_allow`). Split evenly over the workers. Not tunable.
pub const ICMP_MSGS_PER_SEC: u64 = 1000;
/// ICMP errors the appliance may send at once after a quiet period: Linux's
/// `net.ipv4.icmp_msgs_burst` default. Split over the workers (at least 1 each).
pub const ICMP_MSGS_BURST: u64 = 50;

/// One worker's share of the appliance's ICMP error budget: a token bucket of
/// `burst` tokens refilled at `rate` per second from the packets' `now` (Linux's
/// `icmp_global_allow`, without the per-destination `icmp_ratelimit`). Echo replies and
/// TCP resets do not take tokens. Integer arithmetic in nano-tokens: no drift.
#[derive(Clone, Debug)]
pub struct IcmpLimiter {
    /// Tokens added per second.
    rate: u64,
    /// Most tokens kept, in nano-tokens.
    cap: u64,
    /// Tokens available, in nano-tokens (one token = 10^9).
    nano_tokens: u64,
    /// When the bucket was last refilled.
    last_ns: u64,
}

impl IcmpLimiter {
    const NANO: u64 = 1_000_000_000;

    /// A full bucket of `burst` tokens refilled at `rate` per second.
    pub fn new(rate: u64, burst: u64) -> Self {
        let cap = burst.saturating_mul(Self::NANO);
        IcmpLimiter {
            rate,
            cap,
            nano_tokens: cap,
            last_ns: 0,
        }
    }

    /// Worker `1/n_workers`'s share of the appliance budget ([`ICMP_MSGS_PER_SEC`],
    /// [`ICMP_MSGS_BURST`]): rate / n, burst max(1, burst / n).
    pub fn worker_share(n_workers: u16) -> Self {
        let n = u64::from(n_workers.max(1));
        IcmpLimiter::new(ICMP_MSGS_PER_SEC / n, (ICMP_MSGS_BURST / n).max(1))
    }

    /// Takes one token at `now_ns` if there is one (refilling first). `now_ns` going
    /// backwards adds nothing.
    pub fn allow(&mut self, now_ns: u64) -> bool {
        let elapsed = now_ns.saturating_sub(self.last_ns);
        self.last_ns = self.last_ns.max(now_ns);
        // ns × tokens/s = nano-tokens.
        self.nano_tokens = self
            .nano_tokens
            .saturating_add(elapsed.saturating_mul(self.rate))
            .min(self.cap);
        if self.nano_tokens >= Self::NANO {
            self.nano_tokens -= Self::NANO;
            true
        } else {
            false
        }
    }
}

/// Conntrack's view of the packet being processed.
#[derive(Clone, Copy, Debug)]
struct CtInfo {
    /// One `ct state` bit (`rules::ct_state`).
    bit: u8,
    /// The entry the packet belongs to (ESTABLISHED / NEW of a known entry / RELATED) and
    /// the direction the packet travels in.
    entry: Option<(EntryId, Direction)>,
    /// The key to insert when the packet starts a connection the rules accept.
    new_key: Option<FlowKey>,
    /// The lookup of `new_key` that missed (the insert reuses its hash).
    miss: Option<Miss>,
}

/// One worker's pipeline state.
#[derive(Debug)]
pub struct Pipeline {
    worker_id: u16,
    n_workers: u16,
    ports: Vec<PortInfo>,
    /// Connection helpers: expectations, helper state of entries (`helper.rs`).
    helpers: helper_state::HelperState,
    routes: Arc<RouteTable>,
    neigh: Arc<NeighborSnapshot>,
    counters: Counters,
    now_ns: u64,
    /// This worker's share of the ICMP error rate limit.
    icmp_limit: IcmpLimiter,
    ct: Table,
    rules: Option<WorkerRuleset>,
    owner: Arc<Owner>,
    nat: PortAllocator,
    /// Steering records received from other workers: reply tuple → owning worker.
    steering: FxHashMap<Tuple, u16>,
    /// Steering records this worker created, for the I/O edge to send.
    steering_out: Vec<Steering>,
    /// conntrack's `events_dropped` when events were last taken (the `lost` of the next
    /// `TakeEvents`).
    events_lost_seen: u64,
    /// Bumped whenever a cached verdict may no longer hold: a ruleset generation is
    /// adopted, or a route table (`oif` may change). Its low [`CACHE_EPOCH_BITS`] bits
    /// are part of every verdict-cache key; when they wrap, every slot is cleared
    /// ([`Pipeline::bump_verdict_epoch`]), so a slot never matches a later epoch.
    verdict_epoch: u64,
    /// The packet being processed: its verdict-cache entry and key (an established
    /// packet of a ruleset), whether its verdict came from the cache, and whether every
    /// hook evaluated so far was cacheable.
    cache: Option<(EntryId, Direction, u64)>,
    cache_hit: bool,
    path_cacheable: bool,
    /// Rules the hooks counted so far for the packet being processed (with a cache key).
    path: ArrayVec<(Hook, u32), MAX_PATH>,
    /// The counted-rule lists of cached verdicts of ruleset generation `paths_gen`,
    /// indexed by the path id in the slot (`path_ids` interns them): a hit credits them.
    paths: Vec<Box<[(Hook, u32)]>>,
    path_ids: FxHashMap<Box<[(Hook, u32)]>, u16>,
    paths_gen: u64,
    /// The path id of the packet's cache hit.
    hit_path: usize,
    /// `ct count` tokens the rules gave the packet being processed; kept by `confirm`
    /// for the connection's lifetime, dropped (released) otherwise.
    pending_tokens: ArrayVec<CtCountToken, MAX_CT_TOKENS>,
    /// Conntrack status bits the packet being processed has gained before its entry
    /// exists: `DST_NAT` once prerouting bound a DNAT for a first packet, so `ct status
    /// dnat` matches in forward/postrouting as in Linux (which sets the bit at binding).
    pending_status: u8,
    /// Tokens and steering records of live connections, released when they die.
    held: HeldTable,
    /// Steering records of dead connections, for the I/O edge to withdraw.
    unsteer_out: Vec<Steering>,
    /// The fast path (`fast.rs`): the vector being processed, the adjacencies of the
    /// current epoch, the epoch recipes are valid for (bumped whenever a ruleset
    /// generation, route table, neighbour snapshot or tunables are adopted), and the
    /// forwarded established packet that may leave a recipe.
    vector: fast_state::VectorState,
    adj: AdjTable,
    recipe_epoch: u64,
    sent: Option<fast_state::Sent>,
    /// The verdicts of first-packet classes (`rules::first`): a first packet whose class
    /// was evaluated under the current generation takes the class's outcome per hook.
    first: FirstCache,
    first_on: bool,
    /// A forwarded NEW packet is rewritten between its NAT binding and its insert
    /// (`send_new`); off, in the order of `confirm` (tests compare both).
    staged_new: bool,
    /// IP reassembly and refragmentation (`frag.rs`).
    frag: FragState,
    /// The packet's facts beyond its summary that the ruleset reads (`facts.rs`), and
    /// the MSS its hooks lowered the option to (written before it leaves).
    facts: crate::rules::compile::Facts,
    mss_to: Option<u16>,
    /// The DSCP its hooks set (`ip|ip6 dscp set`), written before it leaves.
    dscp_to: Option<u8>,
}

/// Slots of a worker's first-packet cache (direct-mapped).
const FIRST_CACHE_SLOTS: usize = 1024;

/// Adjacencies (output port, next-hop MAC) a worker's fast path holds per epoch.
const MAX_ADJACENCIES: usize = 4096;

/// Connections of the held table examined per [`Pipeline::tick`].
const SWEEP_BUDGET: usize = 256;

/// Verdict-cache slot layout (the entry's opaque `u64`): valid (bit 63), drop (62),
/// direction (61), ct state bit (54..61), input port (46..54), path id (30..46: the rules
/// to credit), verdict epoch (0..30, [`Pipeline::verdict_epoch`]).
const CACHE_VALID: u64 = 1 << 63;
const CACHE_DROP: u64 = 1 << 62;
const CACHE_PATH_SHIFT: u32 = 30;
const CACHE_PATH: u64 = 0xffff << CACHE_PATH_SHIFT;
const CACHE_EPOCH_BITS: u32 = 30;
const CACHE_EPOCH: u64 = (1 << CACHE_EPOCH_BITS) - 1;

/// Most counter bumps on one cached path (a longer path is not cached).
const MAX_PATH: usize = 32;
/// Most distinct counted-rule paths per worker and generation (more are not cached).
const MAX_PATHS: usize = 4096;

/// Minimum frame length of an ICMP error to build (Ethernet + IPv6 + ICMPv6 + 8).
const MIN_FRAME: usize = 14;

fn is_multicast_or_broadcast(a: Addr) -> bool {
    match a.to_v4() {
        Some(v4) => v4[0] >= 224 || v4 == [255, 255, 255, 255],
        None => a.0[0] == 0xff,
    }
}

/// A source an ICMP error may be sent to (RFC 1812 §4.3.2.7): not multicast, broadcast,
/// unspecified or loopback.
fn is_valid_error_target(a: Addr) -> bool {
    if is_multicast_or_broadcast(a) {
        return false;
    }
    match a.to_v4() {
        Some(v4) => v4[0] != 0 && v4[0] != 127,
        None => a.0 != [0; 16] && a.0 != Addr::from_v6(std::net::Ipv6Addr::LOCALHOST.octets()).0,
    }
}

impl Pipeline {
    /// A pipeline for worker `worker_id` of `n_workers`, starting from the given route
    /// table and neighbour snapshot, with this worker's handle on the published ruleset
    /// (`None`: no ruleset, every hook accepts, as an empty nftables ruleset). Allocates
    /// the connection table: call it on the worker's own lcore.
    pub fn new(
        worker_id: u16,
        n_workers: u16,
        config: &PipelineConfig,
        routes: Arc<RouteTable>,
        neigh: Arc<NeighborSnapshot>,
        rules: Option<WorkerRuleset>,
    ) -> Self {
        let seed = config.ct_seed.unwrap_or_else(random_seed) ^ u64::from(worker_id);
        let n_workers = n_workers.max(1);
        let owner = config.owner.clone().unwrap_or_else(|| {
            Arc::new(
                Owner::spread(&SYMMETRIC_RSS_KEY, 128, n_workers)
                    .expect("the symmetric key and a 128-entry RETA are valid"),
            )
        });
        let nat = PortAllocator::with_seed(worker_id, seed)
            .with_node_slice(config.nat_node)
            .prepared(&owner);
        Pipeline {
            worker_id,
            n_workers,
            ports: config.ports.clone(),
            helpers: helper_state::HelperState::new(
                config.expect.clone().unwrap_or_else(|| {
                    Arc::new(crate::helper::ExpectTable::new(config.tunables.expect_max))
                }),
                config.ct_capacity,
            ),
            routes,
            neigh,
            counters: Counters::default(),
            now_ns: 0,
            icmp_limit: IcmpLimiter::worker_share(n_workers),
            ct: Table::new(config.ct_capacity, config.tunables.clone(), seed),
            rules,
            owner,
            nat,
            steering: FxHashMap::default(),
            steering_out: Vec::new(),
            events_lost_seen: 0,
            verdict_epoch: 1,
            cache: None,
            cache_hit: false,
            path_cacheable: false,
            path: ArrayVec::new(),
            paths: Vec::new(),
            path_ids: FxHashMap::default(),
            paths_gen: 0,
            hit_path: 0,
            pending_tokens: ArrayVec::new(),
            pending_status: 0,
            held: HeldTable::with_capacity((config.ct_capacity as usize).min(4096)),
            unsteer_out: Vec::new(),
            vector: fast_state::VectorState::default(),
            adj: AdjTable::with_capacity(MAX_ADJACENCIES),
            recipe_epoch: 1,
            sent: None,
            first: FirstCache::new(FIRST_CACHE_SLOTS),
            first_on: true,
            staged_new: true,
            frag: FragState::new(&config.tunables),
            facts: Default::default(),
            mss_to: None,
            dscp_to: None,
        }
    }

    /// Steering records (DNAT replies that hash to another worker) created since the last
    /// call: the I/O edge sends each to `reply_worker` before transmitting the burst.
    pub fn take_steering(&mut self) -> std::vec::Drain<'_, Steering> {
        self.steering_out.drain(..)
    }

    /// A steering record from another worker: packets with tuple `reply` that miss this
    /// worker's table are handed to `owner`.
    pub fn add_steering(&mut self, st: Steering) {
        self.steering.insert(st.reply, st.owner);
    }

    /// Steering records of connections that died since the last call: the I/O edge
    /// sends each to `reply_worker`, which calls [`Pipeline::remove_steering`].
    pub fn take_unsteering(&mut self) -> std::vec::Drain<'_, Steering> {
        self.unsteer_out.drain(..)
    }

    /// Withdraws a steering record (its connection died on `st.owner`). A record for the
    /// same tuple from another owner (a newer connection) is kept.
    pub fn remove_steering(&mut self, st: &Steering) {
        if self.steering.get(&st.reply) == Some(&st.owner) {
            self.steering.remove(&st.reply);
        }
    }

    /// Steering records received and in force (tests, statistics).
    pub fn steering_len(&self) -> usize {
        self.steering.len()
    }

    /// Connections holding `ct count` tokens or a steering record.
    pub fn held_len(&self) -> usize {
        self.held.len()
    }

    /// This worker's connection table (read-only: tests, listings).
    pub fn conntrack(&self) -> &Table {
        &self.ct
    }

    /// This worker's index.
    pub fn worker_id(&self) -> u16 {
        self.worker_id
    }

    /// Number of workers the owner function spreads flows over.
    pub fn n_workers(&self) -> u16 {
        self.n_workers
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The counters the I/O edge publishes besides its own (drops are the edge's, from
    /// the actions), with conntrack's lost events. Cheap copies: called every ~1 ms.
    pub fn proc_counters(&self) -> ProcCounters {
        let ct = self.ct.stats();
        let nat = self.nat.stats();
        let pools = self.ct.port_pools().stats();
        ProcCounters {
            events_dropped: ct.events_dropped,
            first_cache_hits: self.first.hits,
            first_cache_misses: self.first.misses,
            nat_allocations: nat.allocations,
            nat_ports_kept: nat.ports_kept,
            nat_ports_searched: nat.ports_searched,
            nat_pool_words_scanned: pools.words_scanned,
            nat_pools_full: pools.slots_full,
            ct_expired: ct.expired,
            frag: self.frag.counters(),
            ..self.counters.proc
        }
    }

    /// Turns the first-packet cache on (the default) or off: off, every hook of a first
    /// packet is evaluated (tests compare both).
    pub fn set_first_cache(&mut self, on: bool) {
        self.first_on = on;
    }

    /// Turns the split insert of forwarded NEW packets on (the default) or off: off, the
    /// entry is inserted before the packet is rewritten (tests compare both).
    pub fn set_staged_insert(&mut self, on: bool) {
        self.staged_new = on;
    }

    /// A function the connection table calls with each cache line it would prefetch
    /// ahead of its own misses (`Table::set_prefetch`; tests watch the hints with it).
    pub fn set_prefetch(&mut self, hint: fn(*const u8)) {
        self.ct.set_prefetch(hint);
    }

    /// Makes the connection table issue the CPU's prefetch ahead of its own misses
    /// (`Table::use_cpu_prefetch`; the daemon's workers).
    pub fn use_cpu_prefetch(&mut self) {
        self.ct.use_cpu_prefetch();
    }

    /// The neighbour snapshot in use.
    pub fn neighbors(&self) -> &Arc<NeighborSnapshot> {
        &self.neigh
    }

    /// Adopts a newer neighbour snapshot between bursts; returns the old one for the
    /// caller to hand back to the control thread (the worker never runs a large `Drop`).
    /// An older or equal generation is refused and returned as is.
    pub fn adopt_neighbors(&mut self, snap: Arc<NeighborSnapshot>) -> Arc<NeighborSnapshot> {
        if snap.generation() <= self.neigh.generation() {
            return snap;
        }
        self.counters.proc.snapshots_adopted += 1;
        self.bump_recipe_epoch();
        std::mem::replace(&mut self.neigh, snap)
    }

    /// Adopts a new route table between bursts; returns the old one.
    pub fn adopt_routes(&mut self, routes: Arc<RouteTable>) -> Arc<RouteTable> {
        self.counters.proc.snapshots_adopted += 1;
        self.bump_verdict_epoch();
        self.bump_recipe_epoch();
        std::mem::replace(&mut self.routes, routes)
    }

    /// Test hook: the verdict epoch (to reach its wrap without 2^30 route adoptions).
    #[cfg(test)]
    pub(crate) fn set_verdict_epoch(&mut self, e: u64) {
        self.verdict_epoch = e;
    }

    /// A new verdict epoch: every cached verdict misses from now on. When the epoch's
    /// bits in the slot wrap (after 2^30 bumps) every slot of the table is cleared first,
    /// so an old slot can never match again.
    fn bump_verdict_epoch(&mut self) {
        self.verdict_epoch += 1;
        if self.verdict_epoch & CACHE_EPOCH == 0 {
            self.ct.clear_verdict_slots();
            self.verdict_epoch += 1;
        }
    }

    /// Between bursts: expire connections (a budget that follows the inserts since the
    /// last tick, bounded: `Table::expire_tick`), adopt a newer ruleset generation (the
    /// old one goes back to the control thread).
    pub fn tick(&mut self, now_ns: u64) {
        // Credits of a vector go to the generation its packets were forwarded under.
        self.finish_vector();
        self.now_ns = self.now_ns.max(now_ns);
        self.ct.expire_tick(self.now_ns);
        self.frag.expire(self.now_ns);
        self.counters.proc.ct_expire_ticks += 1;
        self.held
            .sweep(&self.ct, SWEEP_BUDGET, &mut self.unsteer_out);
        if let Some(r) = &mut self.rules
            && r.refresh()
        {
            self.counters.proc.snapshots_adopted += 1;
            // Slots of the old generation miss from now on: their paths are garbage.
            self.bump_verdict_epoch();
            self.bump_recipe_epoch();
            self.paths.clear();
            self.path_ids.clear();
        }
    }

    /// A control-thread command, answered between bursts (bounded work: a listing page,
    /// a count slice and a deletion scan are bounded by conntrack's `iter_page`,
    /// `count_matching` and `delete_matching`).
    pub fn command(&mut self, cmd: WorkerCommand) -> WorkerReply {
        match cmd {
            WorkerCommand::CtStats => WorkerReply::Stats(self.ct.counters()),
            WorkerCommand::HelperStats => WorkerReply::HelperStats(self.helper_counters()),
            WorkerCommand::SetTunables(list) => {
                // All or nothing: checked as a set before any is applied.
                if let Err(e) = crate::conntrack::tunables::check_all(
                    self.ct.capacity(),
                    self.ct.tunables(),
                    &list,
                ) {
                    return WorkerReply::Error(e);
                }
                // Recipes hold timeouts: none survives a change of tunables.
                self.bump_recipe_epoch();
                for (name, value) in list {
                    if let Err(e) = self.ct.set_tunable(&name, value) {
                        return WorkerReply::Error(RefusedTunable::new(Some(&name), e.to_string()));
                    }
                }
                if let Err(e) = self.frag.set_limits(self.ct.tunables()) {
                    return WorkerReply::Error(RefusedTunable::new(None, e));
                }
                self.helpers.expect.set_max(self.ct.tunables().expect_max);
                WorkerReply::Done
            }
            WorkerCommand::CtCount {
                filter,
                cursor,
                budget,
            } => {
                let (count, next_cursor) = self.ct.count_matching(&filter, cursor, budget as usize);
                WorkerReply::Count { count, next_cursor }
            }
            WorkerCommand::CtList {
                filter,
                cursor,
                limit,
            } => {
                let (entries, next_cursor) = self.ct.iter_page(cursor, limit, &filter, self.now_ns);
                WorkerReply::CtPage {
                    entries,
                    next_cursor,
                }
            }
            WorkerCommand::CtDelete { filter, budget } => {
                let (count, more) =
                    self.ct
                        .delete_matching(&filter, budget.max(1) as usize, self.now_ns);
                let n = self.held.len();
                self.held.sweep(&self.ct, n, &mut self.unsteer_out);
                WorkerReply::Deleted { count, more }
            }
            WorkerCommand::TakeRawEvents { max } => {
                let lost = self.events_lost_since();
                let events = self.ct.take_events(max as usize).collect();
                WorkerReply::RawEvents { events, lost }
            }
            WorkerCommand::TakeEvents { max } => {
                let lost = self.events_lost_since();
                let events = self.ct.take_events(max as usize).collect();
                WorkerReply::Events { events, lost }
            }
            WorkerCommand::CtSync { records, adopt } => {
                let (applied, failed) =
                    crate::ha::apply_records(&mut self.ct, &records, adopt, self.now_ns);
                WorkerReply::Synced { applied, failed }
            }
        }
    }

    /// Events the table dropped (full ring) since the last take.
    fn events_lost_since(&mut self) -> u64 {
        let dropped = self.ct.stats().events_dropped;
        let lost = dropped - self.events_lost_seen;
        self.events_lost_seen = dropped;
        lost
    }

    fn drop(&mut self, reason: DropReason) -> Action {
        self.counters.drops[reason as usize] += 1;
        Action::Drop(reason)
    }

    /// Runs the pipeline on every frame of a burst; `actions[i]` is the action of
    /// `frames[i]`. Each frame gets its own scratch buffer (`scratch[i]`), so replies
    /// built for several frames of a burst do not overwrite each other.
    pub fn process_burst(
        &mut self,
        in_port: u16,
        frames: &mut [&mut [u8]],
        now_ns: u64,
        scratch: &mut [&mut [u8]],
        actions: &mut [Action],
    ) {
        for ((frame, s), a) in frames.iter_mut().zip(scratch.iter_mut()).zip(actions) {
            *a = self.process(in_port, frame, now_ns, s);
        }
    }

    /// Decides what happens to one received frame. `frame` may be rewritten in place;
    /// `scratch` (at least [`SCRATCH_LEN`](super::SCRATCH_LEN) bytes) receives a built
    /// reply.
    pub fn process(
        &mut self,
        in_port: u16,
        frame: &mut [u8],
        now_ns: u64,
        scratch: &mut [u8],
    ) -> Action {
        self.process_offload(in_port, frame, &wire::VERIFY_ALL, now_ns, scratch)
    }

    /// [`process`](Self::process) with the NIC's checksum verdicts for this frame
    /// (`ParseOptions::with_offload` from the mbuf's offload flags).
    pub fn process_offload(
        &mut self,
        in_port: u16,
        frame: &mut [u8],
        opts: &ParseOptions,
        now_ns: u64,
        scratch: &mut [u8],
    ) -> Action {
        self.run(in_port, frame, opts, now_ns, scratch, false)
    }

    /// [`process_offload`](Self::process_offload), or for a frame another worker handed
    /// over (`handed_off`) [`process_handoff`](Self::process_handoff), with the NIC's
    /// checksum verdicts.
    pub fn process_frame(
        &mut self,
        in_port: u16,
        frame: &mut [u8],
        opts: &ParseOptions,
        handed_off: bool,
        now_ns: u64,
        scratch: &mut [u8],
    ) -> Action {
        self.run(in_port, frame, opts, now_ns, scratch, handed_off)
    }

    /// A frame another worker handed over (its owner check already chose this worker):
    /// processed like a received one minus the owner check.
    pub fn process_handoff(
        &mut self,
        in_port: u16,
        frame: &mut [u8],
        now_ns: u64,
        scratch: &mut [u8],
    ) -> Action {
        self.run(in_port, frame, &wire::VERIFY_ALL, now_ns, scratch, true)
    }

    fn run(
        &mut self,
        in_port: u16,
        frame: &mut [u8],
        opts: &ParseOptions,
        now_ns: u64,
        scratch: &mut [u8],
        handed_off: bool,
    ) -> Action {
        self.sent = None;
        let opts = self.parse_options(opts);
        let a = self.run_packet(in_port, frame, &opts, now_ns, scratch, handed_off);
        self.vector.handed = None;
        // Tokens of a packet that started no connection (dropped, rejected, local):
        // released now.
        self.pending_tokens.clear();
        self.pending_status = 0;
        self.helpers.reset();
        self.mss_to = None;
        self.dscp_to = None;
        if let (Action::Forward { .. }, Some(sent)) = (a, self.sent.take()) {
            self.build_recipe(in_port, sent);
        }
        a
    }

    fn run_packet(
        &mut self,
        in_port: u16,
        frame: &mut [u8],
        opts: &ParseOptions,
        now_ns: u64,
        scratch: &mut [u8],
        handed_off: bool,
    ) -> Action {
        self.counters.rx += 1;
        self.now_ns = self.now_ns.max(now_ns);
        let parsed = match wire::parse(frame, opts) {
            Ok(p) => p,
            Err(r) => return self.drop(r),
        };
        let (l2, ip) = match parsed {
            Parsed::Arp(..) => {
                self.counters.proc.slow_path += 1;
                return Action::SlowPath;
            }
            Parsed::Ip(l2, ip) => (l2, ip),
        };
        let Some(port) = self.ports.get(usize::from(in_port)).copied() else {
            return self.drop(DropReason::OtherHost);
        };
        if l2.vlan.is_some() {
            return self.drop(DropReason::BadVlan);
        }
        if l2.dst_mac != port.mac && l2.dst_mac[0] & 1 == 0 {
            return self.drop(DropReason::OtherHost);
        }
        if ip.family == Family::V6
            && matches!(
                ip.l4,
                Some(L4Info::IcmpOther {
                    icmp_type: 133..=137,
                    ..
                })
            )
        {
            self.counters.proc.slow_path += 1;
            return Action::SlowPath;
        }
        if is_multicast_or_broadcast(ip.dst) {
            return self.drop(DropReason::Multicast);
        }
        if !is_valid_error_target(ip.src) && ip.src.0 != [0; 16] {
            return self.drop(DropReason::BadSourceAddress);
        }
        // Fragments are reassembled before the owner check and conntrack (`frag.rs`).
        if ip.frag != Fragment::None {
            return self.defrag(in_port, frame, &ip, scratch, handed_off);
        }
        let tuple = flow_tuple(&ip);
        // A reassembled datagram is checked on every port: the NIC hashed its fragments
        // by addresses, not as the flow's other packets (`frag.rs`).
        if !handed_off && self.n_workers > 1 && (!port.hw_rss || self.frag.in_datagram()) {
            let w = self.owner.owner(&tuple);
            // A packet of a connection this worker holds stays here whatever its hash (a
            // DNAT reply steered here by the worker its tuple hashes to), so a steered
            // packet is not handed back even by an edge that does not use
            // `process_handoff`.
            if w != self.worker_id
                && FlowKey::from_info(&ip, 0).is_none_or(|k| self.lookup(&k).is_none())
            {
                self.counters.proc.handoffs += 1;
                return Action::Handoff { worker: w };
            }
        }
        // Steering applies to handed-off packets too: the owner check sends a DNAT reply
        // to the worker its tuple hashes to, whose record sends it on to the entry's owner.
        if let Some(&w) = self.steering.get(&tuple)
            && w != self.worker_id
            && FlowKey::from_info(&ip, 0).is_some_and(|k| self.lookup(&k).is_none())
        {
            self.counters.proc.handoffs += 1;
            return Action::Handoff { worker: w };
        }
        self.facts = self.frame_facts(frame, &l2, in_port, &ip);
        let ct = self.track(&ip);
        let ct = self.helper_track(ct, &ip);
        self.cache = self.cache_key(ct, &ip, in_port);
        self.helper_uncached(ct);
        self.cache_hit = false;
        self.path_cacheable = true;
        self.path.clear();
        if let Some((id, dir, key)) = self.cache
            && let Some(v) = self.ct.verdict_slot(id, dir)
            && v & !(CACHE_DROP | CACHE_PATH) == key
            && let Some(pid) = self.cached_path(v)
        {
            self.counters.proc.verdict_cache_hits += 1;
            if v & CACHE_DROP != 0 {
                // Every hook up to the dropping one would have run: credit them all.
                self.credit_path(pid, None, ip.ip_len);
                return self.drop(DropReason::FilterDrop);
            }
            self.cache_hit = true;
            self.hit_path = pid;
            if let Some(a) = self.fast_forward(frame, &l2, &ip, ct) {
                return a;
            }
        }
        let (pre, dnat) = self.eval(Hook::Prerouting, &ip, Some(in_port), None, ct);
        let dnat = self.helper_follow_dnat(dnat, &ip);
        if let Some(a) = self.apply(pre, in_port, frame, &l2, &ip, scratch) {
            return a;
        }
        // Where the packet goes after NAT: the entry's translation, or the DNAT decision
        // of a first packet (the address is chosen here, the binding at confirm time).
        let target = match ct.entry {
            Some((id, dir)) => self.ct.tuple(id, dir.flip()).map(|t| t.inverse()),
            None => None,
        };
        let mut route_dst = target.map_or(ip.dst, |t| t.dst);
        // What the later hooks see: the destination after prerouting NAT (DNAT of the
        // original direction, un-SNAT of replies), the source not yet translated (that is
        // postrouting's), as in Linux.
        let mut view = ip;
        if let Some(t) = target {
            if matches!(ip.l4, Some(L4Info::IcmpError { .. })) {
                view.dst = t.dst;
            } else {
                set_view_dst(&mut view, t.dst, t.dport);
            }
        }
        if let (Some(d), Some(key)) = (dnat.as_ref(), ct.new_key) {
            let env = self.nat_env(&ip, (Some(in_port), Some(d)), (None, None));
            let mut table = CtNat::new(&mut self.ct, &key);
            match self
                .nat
                .bind(&tuple, Some(d), None, &env, &self.owner, &mut table)
            {
                Ok(b) => {
                    let t = b.translated();
                    self.pending_status |= DST_NAT;
                    route_dst = t.dst;
                    set_view_dst(&mut view, t.dst, t.dport);
                }
                Err(e) => return self.drop(e.drop_reason()),
            }
        }
        let nat = NatPlan { dnat, target };
        if self.routes.local_port(route_dst).is_some() {
            let (d, _) = self.eval(Hook::Input, &view, Some(in_port), None, ct);
            if let Some(a) = self.apply(d, in_port, frame, &l2, &ip, scratch) {
                return a;
            }
            self.cache_accept();
            if let Err(a) = self.confirm(ct, &ip, &nat, None, in_port, None) {
                return a;
            }
            self.local_deliver(in_port, frame, &l2, &ip)
        } else {
            self.forward(in_port, frame, &l2, &ip, scratch, ct, &view, &nat)
        }
    }

    /// The forwarding of a packet whose accept verdict came from its entry's verdict
    /// cache (a later packet of a connection forwarded before, same ruleset generation,
    /// state, input port and routes): what the full path would do with every hook
    /// accepting — credit the cached path's rule counters, route to the translated
    /// destination, NAT-rewrite, TTL, MACs — without evaluating the hooks or building
    /// the later hooks' view (nftables' flowtable fast path, with counters kept).
    /// `None` (nothing done yet) leaves the packet to the full path: a local
    /// destination, no route or a blackhole, TTL or MTU to answer with an ICMP error, an
    /// unresolved neighbour.
    fn fast_forward(
        &mut self,
        frame: &mut [u8],
        l2: &L2Info,
        ip: &IpInfo,
        ct: CtInfo,
    ) -> Option<Action> {
        let (id, dir) = ct.entry?;
        // Cached packets are never ICMP errors (`cache_key`): the destination after
        // prerouting NAT is the translated tuple's.
        let target = self.ct.tuple(id, dir.flip()).map(|t| t.inverse());
        let dst = target.map_or(ip.dst, |t| t.dst);
        if ip.ttl <= 1 || self.routes.local_port(dst).is_some() {
            return None;
        }
        let NextHop::Forward { port, neighbor } = self.routes.next_hop(ip.family, dst)? else {
            return None;
        };
        if ip.ip_len > self.ports.get(usize::from(port))?.mtu {
            return None;
        }
        let dst_mac = self.neigh.lookup(port, neighbor)?;
        self.credit_path(self.hit_path, None, ip.ip_len);
        Some(self.send_out(frame, l2, ip, ct, target, port, Some(dst_mac)))
    }

    /// The end of forwarding, once every hook accepted: NAT rewrite to `target` (the
    /// translated tuple, if any), TTL, MACs for `port`, and the packet leaves; without a
    /// resolved `dst_mac` it goes to the slow path complete but for its destination MAC
    /// (the slow path resolves the next hop again on the rewritten destination).
    #[allow(clippy::too_many_arguments)]
    fn send_out(
        &mut self,
        frame: &mut [u8],
        l2: &L2Info,
        ip: &IpInfo,
        ct: CtInfo,
        target: Option<FlowKey>,
        port: u16,
        dst_mac: Option<Mac>,
    ) -> Action {
        if let Some(t) = target
            && let Err(a) = self.nat_rewrite(frame, ip, &t)
        {
            return a;
        }
        if wire::rewrite::decrement_ttl(frame, ip).is_err() {
            // Checked before (ttl > 1) and the header is within the frame after parse.
            return self.drop(DropReason::TtlExceeded);
        }
        let src_mac = self.port_mac(port);
        let Some(dst_mac) = dst_mac else {
            build::write_eth(frame, l2.dst_mac, src_mac, l2.ethertype);
            self.counters.proc.slow_path += 1;
            return Action::SlowPath;
        };
        build::write_eth(frame, dst_mac, src_mac, l2.ethertype);
        self.counters.proc.forwarded += 1;
        if let Some(entry) = Self::recipe_candidate(ct.bit, ct.new_key.is_some(), ct.entry) {
            self.sent = Some(fast_state::Sent {
                entry,
                port,
                dst_mac,
            });
        }
        Action::Forward {
            port,
            len: u16::try_from(frame.len()).unwrap_or(u16::MAX),
        }
    }

    /// The end of forwarding for a NEW packet whose connection `bind_new` bound, no
    /// helper involved: the insert split around the packet's rewrite (docs/conntrack.md,
    /// "Insert"). The reply tuple's buckets and the free slot's counters are prefetched
    /// first; the neighbour lookup, MSS / DSCP and the NAT rewrite run while they arrive;
    /// then the insert, then the rest of `send_out`. None of that work reads the
    /// connection table, so the outcome is the one of inserting first: a refused insert
    /// drops the (already rewritten) packet under `ct_insert_failed`, a rewrite error
    /// drops it under `truncated` after the insert, as before.
    #[allow(clippy::too_many_arguments)]
    fn send_new(
        &mut self,
        mut nc: NewConn,
        frame: &mut [u8],
        l2: &L2Info,
        ip: &IpInfo,
        ct: CtInfo,
        port: u16,
        neighbor: Addr,
    ) -> Action {
        nc.probe = Some(self.ct.prepare_insert(&nc.reply));
        let target = (nc.reply != nc.key.inverse()).then(|| nc.reply.inverse());
        let dst_mac = self.neigh.lookup(port, neighbor);
        self.clamp_mss(frame, ip);
        let rewritten = target.map_or(Ok(()), |t| rewrite_to(frame, ip, &t));
        if let Err(a) = self.insert_new(nc, ip) {
            return a;
        }
        if rewritten.is_err() {
            return self.drop(DropReason::Truncated);
        }
        self.send_out(frame, l2, ip, ct, None, port, dst_mac)
    }

    /// The port addresses NAT may need: the output port's for masquerade, the input
    /// port's for redirect; each looked up only when that action is taken (a scan of the
    /// port's routes, once per new connection otherwise).
    fn nat_env(
        &self,
        ip: &IpInfo,
        (iif, dnat): (Option<u16>, Option<&NatAction>),
        (oif, snat): (Option<u16>, Option<&NatAction>),
    ) -> NatEnv {
        let addr = |port: Option<u16>, a: Option<&NatAction>, kind: NatKind| {
            port.filter(|_| a.is_some_and(|a| a.kind == kind))
                .and_then(|p| self.routes.port_address(p, ip.family))
        };
        NatEnv {
            egress_addr: addr(oif, snat, NatKind::Masquerade),
            ingress_addr: addr(iif, dnat, NatKind::Redirect),
        }
    }

    /// Rewrites the packet to the translated tuple `target` (addresses and ports; for an
    /// ICMP error the embedded datagram and the outer destination) with incremental
    /// checksum updates. No-op where nothing differs.
    fn nat_rewrite(
        &mut self,
        frame: &mut [u8],
        ip: &IpInfo,
        target: &FlowKey,
    ) -> Result<(), Action> {
        rewrite_to(frame, ip, target).map_err(|()| self.drop(DropReason::Truncated))
    }

    /// Conntrack lookup and tracker update, or the classification of a miss.
    fn track(&mut self, ip: &IpInfo) -> CtInfo {
        let now = self.now_ns;
        let invalid = CtInfo {
            bit: ct_state::INVALID,
            entry: None,
            new_key: None,
            miss: None,
        };
        let mut miss = None;
        if let Some(key) = FlowKey::from_info(ip, 0)
            && !matches!(ip.l4, Some(L4Info::IcmpError { .. }))
        {
            match self.lookup_or_miss(&key) {
                Ok((id, dir)) => match self.ct.update(
                    id,
                    dir,
                    self.helper_unadjust(id, dir, ip).as_ref().unwrap_or(ip),
                    now,
                ) {
                    Outcome::Tracked { ct, destroyed, .. } => {
                        return CtInfo {
                            bit: state_bit(ct),
                            entry: (!destroyed).then_some((id, dir)),
                            new_key: None,
                            miss: None,
                        };
                    }
                    Outcome::Invalid(_) => return invalid,
                    Outcome::Gone => {}
                },
                Err(m) => miss = Some(m),
            }
        }
        match self.ct.classify_new(ip, 0, now) {
            NewFlow::New(key) => CtInfo {
                bit: ct_state::NEW,
                entry: None,
                new_key: Some(key),
                miss,
            },
            NewFlow::Related(id, dir) => CtInfo {
                bit: ct_state::RELATED,
                entry: Some((id, dir)),
                new_key: None,
                miss: None,
            },
            NewFlow::Invalid(_) => invalid,
            NewFlow::Untracked => CtInfo {
                bit: ct_state::UNTRACKED,
                entry: None,
                new_key: None,
                miss: None,
            },
        }
    }

    /// Inserts the connection a NEW packet starts, after the last hook accepted it
    /// (Linux confirms at the end of postrouting / input), with the NAT binding of the
    /// prerouting (DNAT) and postrouting (SNAT / masquerade) decisions: the entry's reply
    /// tuple is the translated one. Returns the translated tuple to rewrite the packet to.
    fn confirm(
        &mut self,
        ct: CtInfo,
        ip: &IpInfo,
        nat: &NatPlan,
        snat: Option<NatAction>,
        in_port: u16,
        out_port: Option<u16>,
    ) -> Result<Option<FlowKey>, Action> {
        match self.bind_new(ct, ip, nat, snat, in_port, out_port)? {
            Some(nc) => self.insert_new(nc, ip),
            None => Ok(nat.target),
        }
    }

    /// The first half of [`Pipeline::confirm`]: the NAT binding of a NEW packet's
    /// connection (its reply tuple); `None` for a packet that starts none.
    fn bind_new(
        &mut self,
        ct: CtInfo,
        ip: &IpInfo,
        nat: &NatPlan,
        snat: Option<NatAction>,
        in_port: u16,
        out_port: Option<u16>,
    ) -> Result<Option<NewConn>, Action> {
        let Some(key) = ct.new_key else {
            return Ok(None);
        };
        let mut reply = key.inverse();
        let mut steering = None;
        let mut nat_port = false;
        if nat.dnat.is_some() || snat.is_some() {
            let env = self.nat_env(
                ip,
                (Some(in_port), nat.dnat.as_ref()),
                (out_port, snat.as_ref()),
            );
            let b = self
                .nat
                .bind(
                    &flow_tuple(ip),
                    nat.dnat.as_ref(),
                    snat.as_ref(),
                    &env,
                    &self.owner,
                    &mut CtNat::new(&mut self.ct, &key),
                )
                .map_err(|e| self.drop(e.drop_reason()))?;
            reply = key_of(&b.reply, ip);
            if is_echo(ip) {
                // FlowKey's echo convention: sport = identifier, dport = ICMP type.
                reply.dport = key.inverse().dport;
            }
            steering = b.steering;
            nat_port = b.port_held;
        }
        Ok(Some(NewConn {
            key,
            reply,
            steering,
            hints: InsertHints {
                miss: ct.miss,
                nat_port,
            },
            probe: None,
        }))
    }

    /// The second half of [`Pipeline::confirm`]: the entry of the connection `bind_new`
    /// bound. Returns the translated tuple to rewrite the packet to.
    fn insert_new(&mut self, nc: NewConn, ip: &IpInfo) -> Result<Option<FlowKey>, Action> {
        let NewConn {
            key,
            reply,
            steering,
            hints,
            probe,
        } = nc;
        let r = match probe {
            Some(p) => self
                .ct
                .insert_prepared(key, reply, ip, self.now_ns, hints, p),
            None => self.ct.insert_with(key, reply, ip, self.now_ns, hints),
        };
        match r {
            Ok(id) => {
                self.helpers.confirmed(id, &key);
                if let Some(st) = steering {
                    self.steering_out.push(st);
                }
                let held = Held {
                    tokens: std::mem::take(&mut self.pending_tokens),
                    steering,
                };
                self.held.insert(id, held, &mut self.unsteer_out);
                Ok((reply != key.inverse()).then(|| reply.inverse()))
            }
            Err(_) => Err(self.drop(DropReason::CtInsertFailed)),
        }
    }

    /// The verdict-cache key of the packet being processed: `None` unless it belongs
    /// to a confirmed connection (a later packet: ESTABLISHED, or NEW before the first
    /// reply; the state is part of the key) and a ruleset is loaded. Never for an ICMP
    /// error: its outer header is not the flow's.
    fn cache_key(
        &self,
        ct: CtInfo,
        ip: &IpInfo,
        in_port: u16,
    ) -> Option<(EntryId, Direction, u64)> {
        self.rules.as_ref()?;
        let (id, dir) = ct.entry?;
        if ct.new_key.is_some() || matches!(ip.l4, Some(L4Info::IcmpError { .. })) {
            return None;
        }
        let port = u8::try_from(in_port).ok()?;
        let key = CACHE_VALID
            | u64::from(dir == Direction::Reply) << 61
            | u64::from(ct.bit & 0x7f) << 54
            | u64::from(port) << 46
            | (self.verdict_epoch & CACHE_EPOCH);
        Some((id, dir, key))
    }

    /// The path id of a matching slot `v`, when it names a path of the current
    /// generation's table (`None`: a miss).
    fn cached_path(&self, v: u64) -> Option<usize> {
        let rules = self.rules.as_ref()?;
        let pid = ((v & CACHE_PATH) >> CACHE_PATH_SHIFT) as usize;
        (self.paths_gen == rules.get().generation() && pid < self.paths.len()).then_some(pid)
    }

    /// Credits the counters of the rules of cached path `pid` that `hook` (every hook
    /// for `None`) would have counted, for one packet of `len` bytes.
    fn credit_path(&self, pid: usize, hook: Option<Hook>, len: u16) {
        let (Some(rules), Some(path)) = (&self.rules, self.paths.get(pid)) else {
            return;
        };
        let rs = rules.get();
        for &(h, id) in path.iter() {
            if hook.is_none_or(|k| k == h) {
                rs.credit(usize::from(self.worker_id), &[id], u32::from(len));
            }
        }
    }

    /// [`Pipeline::credit_path`] of every hook for `packets` packets of `bytes` bytes.
    fn credit_path_n(&self, pid: usize, packets: u64, bytes: u64) {
        let (Some(rules), Some(path)) = (&self.rules, self.paths.get(pid)) else {
            return;
        };
        let rs = rules.get();
        for &(_, id) in path.iter() {
            rs.credit_n(usize::from(self.worker_id), &[id], packets, bytes);
        }
    }

    /// The slot value for the packet's verdict (`key` plus the id of its counted-rule
    /// path, interned for the current generation); `None` when the path cannot be
    /// cached (too long, the table full).
    fn cache_value(&mut self, key: u64) -> Option<u64> {
        let generation = self.rules.as_ref()?.get().generation();
        if self.paths_gen != generation {
            self.paths.clear();
            self.path_ids.clear();
            self.paths_gen = generation;
        }
        let pid = match self.path_ids.get(self.path.as_slice()) {
            Some(&pid) => pid,
            None => {
                if self.paths.len() >= MAX_PATHS {
                    return None;
                }
                let pid = u16::try_from(self.paths.len()).ok()?;
                let p: Box<[(Hook, u32)]> = self.path.as_slice().into();
                self.paths.push(p.clone());
                self.path_ids.insert(p, pid);
                pid
            }
        };
        Some(key | u64::from(pid) << CACHE_PATH_SHIFT)
    }

    /// Every hook on the packet's path accepted: remember it in the entry when each
    /// evaluation was cacheable.
    fn cache_accept(&mut self) {
        if !self.cache_hit
            && self.path_cacheable
            && let Some((id, dir, key)) = self.cache
            && let Some(v) = self.cache_value(key)
        {
            self.ct.set_verdict_slot(id, dir, v);
        }
    }

    /// Evaluates the base chains of `hook` (an empty ruleset accepts; a verdict-cache
    /// hit accepts without evaluating; a hook without base chains accepts before any
    /// work: no facts, no first-packet key or cache lookup, as its evaluation would
    /// count nothing and change nothing). A cacheable drop is remembered in the entry.
    fn eval(
        &mut self,
        hook: Hook,
        ip: &IpInfo,
        iif: Option<u16>,
        oif: Option<u16>,
        ct: CtInfo,
    ) -> (Decision, Option<NatAction>) {
        if self.cache_hit {
            self.credit_path(self.hit_path, Some(hook), ip.ip_len);
            return (Decision::Accept, None);
        }
        let Some(rules) = &self.rules else {
            return (Decision::Accept, None);
        };
        if !rules.get().has_base_chains(hook) {
            return (Decision::Accept, None);
        }
        let (ct_status, ct_mark) = match ct.entry {
            Some((id, _)) => (
                u32::from(self.ct.status(id).unwrap_or(0)),
                self.ct.mark(id).unwrap_or(0),
            ),
            None => (0, 0),
        };
        let ct_status = self.helper_status(ct, ct_status) | u32::from(self.pending_status);
        let rs = rules.get();
        let needs = rs.needs();
        let mut ctx = PacketCtx {
            ip,
            iif,
            oif,
            ct_state: ct.bit,
            ct_status,
            ct_mark,
            mark: 0,
            len: u32::from(ip.ip_len),
            first_packet: ct.new_key.is_some(),
            facts: if needs.any() {
                self.hook_facts(needs, ip, (iif, oif), ct)
            } else {
                self.facts
            },
        };
        let worker = usize::from(self.worker_id);
        // A first packet of a class evaluated before under this generation: the class's
        // verdict and NAT decision, its rules credited, no chain walked. Only outcomes
        // without state are cached (`FirstVerdict::of`): no `ct count` token, no limit,
        // log or mark, so nothing else of the evaluation reaches the pipeline.
        let first = (self.first_on && ctx.first_packet && rs.first_cacheable())
            .then(|| self.first.key(rs, &ctx));
        if let Some(k) = &first
            && let Some(v) = self.first.get(rs.generation(), hook, k)
        {
            rs.credit(worker, &v.counted, ctx.len);
            return (v.verdict, v.nat);
        }
        let r = rs.eval(hook, &mut ctx, worker, self.now_ns);
        if let Some(k) = first {
            self.first.put(rs.generation(), hook, k, &r);
        }
        let (verdict, nat) = (r.verdict, r.nat);
        self.mss_to = r.mss.or(self.mss_to);
        self.dscp_to = r.dscp.or(self.dscp_to);
        if r.helper.is_some() {
            self.helpers.pending = r.helper;
        }
        self.path_cacheable &= r.cacheable && !r.counted_overflow;
        if self.cache.is_some() {
            for &id in &r.counted {
                if self.path.try_push((hook, id)).is_err() {
                    self.path_cacheable = false;
                }
            }
        }
        for t in r.ct_count {
            // More than MAX_CT_TOKENS on one path: the extra slot is not held.
            let _ = self.pending_tokens.try_push(t);
        }
        if verdict == Decision::Drop
            && self.path_cacheable
            && let Some((id, dir, key)) = self.cache
            && let Some(v) = self.cache_value(key)
        {
            self.ct.set_verdict_slot(id, dir, v | CACHE_DROP);
        }
        (verdict, nat)
    }

    /// Acts on a hook's decision: `None` to continue, or the final action.
    fn apply(
        &mut self,
        d: Decision,
        in_port: u16,
        frame: &[u8],
        l2: &L2Info,
        ip: &IpInfo,
        scratch: &mut [u8],
    ) -> Option<Action> {
        match d {
            Decision::Accept => None,
            Decision::Drop => Some(self.drop(DropReason::FilterDrop)),
            Decision::Reject(r) => Some(self.reject(in_port, frame, l2, ip, scratch, r)),
        }
    }

    fn local_deliver(
        &mut self,
        in_port: u16,
        frame: &mut [u8],
        l2: &L2Info,
        ip: &IpInfo,
    ) -> Action {
        self.counters.proc.local_in += 1;
        if let Some(L4Info::IcmpEcho { request: true, .. }) = ip.l4 {
            let Some((port, dst_mac)) = self.reply_path(in_port, l2, ip.family, ip.src) else {
                return self.drop(DropReason::NeighborUnresolved);
            };
            if build::echo_reply_in_place(frame, ip).is_none() {
                return self.drop(DropReason::BadIcmp);
            }
            let src = self.port_mac(port);
            build::write_eth(frame, dst_mac, src, l2.ethertype);
            self.counters.proc.echo_replies += 1;
            return Action::Forward {
                port,
                len: u16::try_from(frame.len()).unwrap_or(u16::MAX),
            };
        }
        self.drop(DropReason::LocalNoSocket)
    }

    /// `reject [with …]`: a TCP reset (`with tcp reset`, never for a reset) or an ICMP /
    /// ICMPv6 destination unreachable (port unreachable by default), from the appliance.
    fn reject(
        &mut self,
        in_port: u16,
        frame: &[u8],
        l2: &L2Info,
        ip: &IpInfo,
        scratch: &mut [u8],
        how: Reject,
    ) -> Action {
        let v4 = ip.family == Family::V4;
        let code = match how {
            Reject::TcpReset => {
                let Some(L4Info::Tcp(tcp)) = ip.l4 else {
                    // nft refuses `tcp reset` without a TCP match; be safe anyway.
                    return self.drop(DropReason::Rejected);
                };
                self.counters.drops[DropReason::Rejected as usize] += 1;
                if tcp.flags.contains(wire::TcpFlags::RST) {
                    return Action::Drop(DropReason::Rejected);
                }
                let Some((port, dst)) = self.reply_path(in_port, l2, ip.family, ip.src) else {
                    return Action::Drop(DropReason::Rejected);
                };
                let out = L2Out {
                    dst,
                    src: self.port_mac(port),
                };
                return match build::tcp_reset(scratch, ip, &tcp, out) {
                    Some(len) => {
                        self.counters.proc.tcp_resets += 1;
                        self.counters.proc.replied_drops[DropReason::Rejected as usize] += 1;
                        Action::Reply {
                            port,
                            len: u16::try_from(len).unwrap_or(u16::MAX),
                        }
                    }
                    None => Action::Drop(DropReason::Rejected),
                };
            }
            Reject::Default => {
                if v4 {
                    3
                } else {
                    4
                }
            }
            Reject::Icmp(c) | Reject::Icmpv6(c) => c,
            // icmpx: 0 no-route, 1 port-unreachable, 2 host-unreachable, 3 admin-prohibited.
            Reject::Icmpx(c) => match (c, v4) {
                (0, _) => 0,
                (1, true) => 3,
                (1, false) => 4,
                (2, true) => 1,
                (2, false) => 3,
                (_, true) => 13,
                (_, false) => 1,
            },
        };
        let t = if v4 { 3 } else { 1 };
        self.icmp_error(
            in_port,
            frame,
            l2,
            ip,
            scratch,
            DropReason::Rejected,
            t,
            code,
            0,
        )
    }

    fn port_mac(&self, port: u16) -> Mac {
        self.ports.get(usize::from(port)).map_or([0; 6], |p| p.mac)
    }

    /// Port and destination MAC for a packet the appliance sends to `dst` in answer to a
    /// frame received on `in_port` from `l2.src_mac`: the route back to `dst`; when it
    /// leaves by the ingress port and the neighbour is not in the snapshot, the frame's
    /// source MAC (the hop that delivered it) is used.
    fn reply_path(
        &self,
        in_port: u16,
        l2: &L2Info,
        family: Family,
        dst: Addr,
    ) -> Option<(u16, Mac)> {
        match self.routes.next_hop(family, dst)? {
            NextHop::Forward { port, neighbor } => match self.neigh.lookup(port, neighbor) {
                Some(mac) => Some((port, mac)),
                None if port == in_port => Some((port, l2.src_mac)),
                None => None,
            },
            NextHop::Blackhole => None,
        }
    }

    /// Drops the received packet under `reason` and, where RFC 1812 §4.3.2.7 / RFC 4443
    /// §2.4(e) allow, answers it with an ICMP error built in `scratch`.
    #[allow(clippy::too_many_arguments)]
    fn icmp_error(
        &mut self,
        in_port: u16,
        frame: &[u8],
        l2: &L2Info,
        ip: &IpInfo,
        scratch: &mut [u8],
        reason: DropReason,
        icmp_type: u8,
        code: u8,
        extra: u32,
    ) -> Action {
        self.counters.drops[reason as usize] += 1;
        let about_error = matches!(ip.l4, Some(L4Info::IcmpError { .. }));
        if about_error || ip.frag == Fragment::Later || !is_valid_error_target(ip.src) {
            return Action::Drop(reason);
        }
        let Some((port, dst)) = self.reply_path(in_port, l2, ip.family, ip.src) else {
            return Action::Drop(reason);
        };
        let Some(src) = self
            .routes
            .port_address(port, ip.family)
            .or_else(|| self.routes.port_address(in_port, ip.family))
        else {
            return Action::Drop(reason);
        };
        // Last, as Linux's `icmpv4_xrlim_allow`: only an error that would be sent takes a
        // token.
        if !self.icmp_limit.allow(self.now_ns) {
            self.counters.proc.icmp_ratelimited += 1;
            return Action::Drop(reason);
        }
        let out = L2Out {
            dst,
            src: self.port_mac(port),
        };
        match build::icmp_error(scratch, frame, ip, out, src, icmp_type, code, extra) {
            Some(len) if len >= MIN_FRAME => {
                self.counters.proc.icmp_errors += 1;
                self.counters.proc.replied_drops[reason as usize] += 1;
                Action::Reply {
                    port,
                    len: u16::try_from(len).unwrap_or(u16::MAX),
                }
            }
            _ => Action::Drop(reason),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn forward(
        &mut self,
        in_port: u16,
        frame: &mut [u8],
        l2: &L2Info,
        ip: &IpInfo,
        scratch: &mut [u8],
        ct: CtInfo,
        view: &IpInfo,
        nat: &NatPlan,
    ) -> Action {
        let (port, neighbor) = match self.routes.next_hop(ip.family, view.dst) {
            Some(NextHop::Forward { port, neighbor }) => (port, neighbor),
            Some(NextHop::Blackhole) => return self.drop(DropReason::Blackhole),
            None => {
                // ICMP destination unreachable: net unreachable / no route to destination.
                let (t, c) = match ip.family {
                    Family::V4 => (3, 0),
                    Family::V6 => (1, 0),
                };
                return self.icmp_error(
                    in_port,
                    frame,
                    l2,
                    ip,
                    scratch,
                    DropReason::NoRoute,
                    t,
                    c,
                    0,
                );
            }
        };
        // Linux `ip_forward` / `ip6_forward` check the TTL and the MTU before the forward
        // hook.
        if ip.ttl <= 1 {
            let t = match ip.family {
                Family::V4 => 11,
                Family::V6 => 3,
            };
            return self.icmp_error(
                in_port,
                frame,
                l2,
                ip,
                scratch,
                DropReason::TtlExceeded,
                t,
                0,
                0,
            );
        }
        let mtu = self
            .ports
            .get(usize::from(port))
            .map_or(u16::MAX, |p| p.mtu);
        if ip.ip_len > mtu && self.exceeds_mtu(mtu) {
            let l3 = usize::from(ip.l3_off);
            let df = frame.get(l3 + 6).is_some_and(|b| b & 0x40 != 0);
            let (t, c) = match ip.family {
                Family::V4 if df => (3, 4),
                Family::V4 => return self.drop(DropReason::PacketTooBig),
                Family::V6 => (2, 0),
            };
            return self.icmp_error(
                in_port,
                frame,
                l2,
                ip,
                scratch,
                DropReason::PacketTooBig,
                t,
                c,
                u32::from(mtu),
            );
        }
        let mut snat = None;
        for hook in [Hook::Forward, Hook::Postrouting] {
            let (d, n) = self.eval(hook, view, Some(in_port), Some(port), ct);
            if let Some(a) = self.apply(d, in_port, frame, l2, ip, scratch) {
                return a;
            }
            if hook == Hook::Postrouting {
                snat = n;
            }
        }
        let snat = self.helper_follow_snat(snat, ip);
        self.cache_accept();
        let target = match self.bind_new(ct, ip, nat, snat, in_port, Some(port)) {
            Ok(Some(nc)) if self.staged_new && self.helpers.idle() => {
                return self.send_new(nc, frame, l2, ip, ct, port, neighbor);
            }
            Ok(Some(nc)) => self.insert_new(nc, ip),
            Ok(None) => Ok(nat.target),
            Err(a) => Err(a),
        };
        let target = match target {
            Ok(t) => t,
            Err(a) => return a,
        };
        let dst_mac = self.neigh.lookup(port, neighbor);
        self.helper_send(ct, frame, scratch, (l2, ip), target, port, dst_mac)
    }
}

/// Rewrites the packet to the translated tuple `target` (addresses and ports; for an ICMP
/// error the embedded datagram and the outer destination) with incremental checksum
/// updates. No-op where nothing differs. `Err`: the headers are cut short.
fn rewrite_to(frame: &mut [u8], ip: &IpInfo, target: &FlowKey) -> Result<(), ()> {
    use wire::rewrite as rw;
    let r = (|| {
        match ip.l4 {
            Some(L4Info::IcmpError { inner, .. }) => {
                // The embedded datagram travelled the other way: it becomes the
                // inverse of the target.
                if inner.src != target.dst {
                    rw::set_inner_src_addr(frame, ip, &inner, target.dst)?;
                }
                if inner.dst != target.src {
                    rw::set_inner_dst_addr(frame, ip, &inner, target.src)?;
                }
                if matches!(inner.proto, wire::proto::TCP | wire::proto::UDP) {
                    if inner.sport != target.dport {
                        rw::set_inner_sport(frame, ip, &inner, target.dport)?;
                    }
                    if inner.dport != target.sport {
                        rw::set_inner_dport(frame, ip, &inner, target.sport)?;
                    }
                } else if inner.sport != target.sport {
                    rw::set_inner_sport(frame, ip, &inner, target.sport)?;
                }
                if ip.dst != target.dst {
                    rw::set_dst_addr(frame, ip, target.dst)?;
                }
            }
            _ => {
                if ip.src != target.src {
                    rw::set_src_addr(frame, ip, target.src)?;
                }
                if ip.dst != target.dst {
                    rw::set_dst_addr(frame, ip, target.dst)?;
                }
                match ip.l4 {
                    Some(L4Info::Tcp(t)) => {
                        if t.sport != target.sport {
                            rw::set_src_port(frame, ip, target.sport)?;
                        }
                        if t.dport != target.dport {
                            rw::set_dst_port(frame, ip, target.dport)?;
                        }
                    }
                    Some(L4Info::Udp { sport, dport }) => {
                        if sport != target.sport {
                            rw::set_src_port(frame, ip, target.sport)?;
                        }
                        if dport != target.dport {
                            rw::set_dst_port(frame, ip, target.dport)?;
                        }
                    }
                    Some(L4Info::IcmpEcho { id, .. }) if id != target.sport => {
                        rw::set_src_port(frame, ip, target.sport)?;
                    }
                    _ => {}
                }
            }
        }
        Ok::<(), wire::rewrite::RewriteError>(())
    })();
    r.map_err(|_| ())
}

fn state_bit(ct: CtState) -> u8 {
    match ct {
        CtState::New => ct_state::NEW,
        CtState::Established => ct_state::ESTABLISHED,
        CtState::Related => ct_state::RELATED,
        CtState::Invalid => ct_state::INVALID,
        CtState::Untracked => ct_state::UNTRACKED,
    }
}

/// A NEW packet's connection between its NAT binding and its insert
/// ([`Pipeline::bind_new`], [`Pipeline::insert_new`]).
#[derive(Clone, Copy, Debug)]
struct NewConn {
    key: FlowKey,
    /// The tuple replies carry (the translated one with NAT).
    reply: FlowKey,
    steering: Option<Steering>,
    hints: InsertHints,
    /// The reply's hash once `Table::prepare_insert` prefetched its buckets.
    probe: Option<Probe>,
}

/// NAT facts of the packet being processed.
#[derive(Clone, Copy, Debug)]
struct NatPlan {
    /// The DNAT decision of prerouting (first packet only).
    dnat: Option<NatAction>,
    /// For a packet of a tracked connection: the tuple it leaves with (equal to its own
    /// when the connection is not NATed).
    target: Option<FlowKey>,
}

fn is_echo(ip: &IpInfo) -> bool {
    matches!(ip.l4, Some(L4Info::IcmpEcho { .. }))
}

/// The tuple the owner function and NAT see (for an ICMP error, the embedded datagram's:
/// the key is symmetric, so its owner is the owner of the flow it belongs to).
fn flow_tuple(ip: &IpInfo) -> Tuple {
    match ip.l4 {
        Some(L4Info::Tcp(t)) => Tuple::new(ip.src, ip.dst, ip.proto, t.sport, t.dport),
        Some(L4Info::Udp { sport, dport }) => Tuple::new(ip.src, ip.dst, ip.proto, sport, dport),
        Some(L4Info::IcmpEcho { id, .. }) => Tuple::new(ip.src, ip.dst, ip.proto, id, id),
        Some(L4Info::IcmpError { inner, .. }) => {
            Tuple::new(inner.src, inner.dst, inner.proto, inner.sport, inner.dport)
        }
        _ => Tuple::new(ip.src, ip.dst, ip.proto, 0, 0),
    }
}

/// A conntrack key from a NAT tuple (zone 0; for ICMP echo, `dport` is filled by the
/// caller from the key it derives from).
fn key_of(t: &Tuple, ip: &IpInfo) -> FlowKey {
    FlowKey {
        src: t.src,
        dst: t.dst,
        sport: t.sport,
        dport: t.dport,
        zone: 0,
        proto: t.proto,
        family: ip.family,
    }
}

/// Sets the destination address and port of a packet summary (the view later hooks see).
fn set_view_dst(view: &mut IpInfo, dst: Addr, dport: u16) {
    view.dst = dst;
    match &mut view.l4 {
        Some(L4Info::Tcp(t)) => t.dport = dport,
        Some(L4Info::Udp { dport: d, .. }) => *d = dport,
        _ => {}
    }
}
