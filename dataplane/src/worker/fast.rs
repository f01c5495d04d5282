//! The vector fast path for established flows, in front of the per-packet pipeline
//! (docs/pipeline.md, "Fast path"). A child module of `pipeline.rs`: it reads the
//! pipeline's state.
//!
//! Per vector (an RX burst or a handoff burst), in the stages VPP's acl and nat44-ed
//! nodes use:
//!
//! 1. [`Pipeline::prepare_vector`], every frame: shape check and key (`peek_fast`), the
//!    key's hash (kept for stage 3: each key is hashed once), prefetch of both candidate
//!    index buckets.
//! 2. Still in `prepare_vector`, every frame: the buckets are read with the stage-1 hash,
//!    the first reference whose signature matches is kept and its recipe line prefetched
//!    (for TCP also the window state); frames of other shapes get the entry lines the
//!    slow path will read (as before).
//! 3. [`Pipeline::fast_path`], frame by frame in order: full check of the narrow shape
//!    (`parse_fast`: checksums as the full parser), the kept reference's recipe checked,
//!    TTL and MTU, the conntrack update the recipe allows (`Table::recipe_commit`), then
//!    the rewrite: tuple, checksums by the precomputed sums, TTL, MACs from the adjacency.
//!    `None` hands the frame, untouched, to the full pipeline, which the caller runs at
//!    once, so the two paths see the frames of a vector in order.
//! 4. [`Pipeline::finish_vector`]: the rule counters of the vector's packets, per path.
//!
//! Recipes are built by the full pipeline ([`Pipeline::build_recipe`], called by `run`
//! after a forwarded established packet). The fast path's counters equal the full path's
//! for the same packets (`rx`, `forwarded`, `verdict_cache_hits`, conntrack's `found`,
//! accounting, rule counters), plus `fast_path`.

use super::fast_state::{MAX_VECTOR, Sent};
use super::{Action, Pipeline};
use crate::conntrack::{FastKey, FlowKey, NO_PATH, Probe, RecipeArgs};
use crate::route::Adjacency;
use crate::rules::ct_state;
use crate::wire::fastparse::{check_fast, peek_fast};
use crate::wire::{Addr, Family, ParseOptions, proto};
use arrayvec::ArrayVec;

/// The conntrack key of a fast-shape tuple (IPv4, zone 0), as `FlowKey::from_info`.
fn key_of(t: &[u8; 12], proto: u8) -> FlowKey {
    FlowKey {
        src: Addr::from_v4([t[0], t[1], t[2], t[3]]),
        dst: Addr::from_v4([t[4], t[5], t[6], t[7]]),
        sport: u16::from_be_bytes([t[8], t[9]]),
        dport: u16::from_be_bytes([t[10], t[11]]),
        zone: 0,
        proto,
        family: Family::V4,
    }
}

impl Pipeline {
    /// Stages 1 and 2 for a vector of frames (before any of them is processed): hash
    /// every key once, prefetch its buckets, then the recipe lines they name. `hint`
    /// issues a prefetch (the edge's; nothing is read through the addresses). Frames
    /// beyond [`MAX_VECTOR`] are left to the full path.
    pub fn prepare_vector(&mut self, frames: &[&[u8]], mut hint: impl FnMut(*const u8)) {
        let v = &mut self.vector;
        v.probes.clear();
        let mut slow_probes: ArrayVec<Probe, 64> = ArrayVec::new();
        for f in frames.iter().take(MAX_VECTOR) {
            let p = match peek_fast(f) {
                Some((t, proto)) => Some((self.ct.probe_v4(&t, proto, &mut hint), 0)),
                None => {
                    // Other shapes: the slow path's lookup still gains from the prefetch.
                    if let Some(k) = FlowKey::peek(f) {
                        let _ = slow_probes.try_push(self.ct.probe(&k, &mut hint));
                    }
                    None
                }
            };
            v.probes.push(p);
        }
        for (f, p) in frames.iter().zip(v.probes.iter_mut()) {
            if let Some((probe, cand)) = p {
                let tcp = f.get(23) == Some(&proto::TCP);
                *cand = self.ct.recipe_candidate(probe, tcp, &mut hint);
            }
        }
        for p in &slow_probes {
            self.ct.probe_entries(p, &mut hint);
        }
    }

    /// Stage 3 for frame `i` of the vector given to [`Pipeline::prepare_vector`]
    /// (`frame` must be that frame): the fast path's action, or `None` (nothing changed)
    /// when the full pipeline must process it; the caller then does so before the next
    /// frame. `opts`: the NIC's checksum verdicts for the frame.
    pub fn fast_path(
        &mut self,
        i: usize,
        in_port: u16,
        frame: &mut [u8],
        opts: &ParseOptions,
        now_ns: u64,
    ) -> Option<Action> {
        let (probe, cand) = (*self.vector.probes.get(i)?)?;
        let action = self.fast_apply(cand, in_port, frame, opts, now_ns);
        if action.is_none() {
            // The full path takes the frame next: it may look the key up with this hash.
            self.vector.handed = peek_fast(frame).map(|(t, p)| (key_of(&t, p), probe));
        }
        action
    }

    /// [`Pipeline::fast_path`] with the frame's stage-2 candidate reference.
    #[inline(always)]
    fn fast_apply(
        &mut self,
        cand: u32,
        in_port: u16,
        frame: &mut [u8],
        opts: &ParseOptions,
        now_ns: u64,
    ) -> Option<Action> {
        let port = self.ports.get(usize::from(in_port))?;
        if frame.get(..6)? != port.mac {
            return None;
        }
        let opts = self.parse_options(opts);
        // Stage 1 recognised the frame's shape (it has a probe): not checked again.
        let pkt = check_fast(frame, &opts)?;
        let key = FastKey {
            tuple: pkt.tuple,
            proto: pkt.proto,
            in_port: u8::try_from(in_port).ok()?,
        };
        let plan = self.ct.recipe_match(cand, &key, self.recipe_epoch)?;
        let adj = self.adj.get(plan.adj)?;
        if pkt.ttl <= 1 || pkt.ip_len > adj.mtu {
            return None;
        }
        self.now_ns = self.now_ns.max(now_ns);
        if !self
            .ct
            .recipe_commit(&plan, self.now_ns, pkt.ip_len, pkt.tcp.as_ref())
        {
            return None;
        }
        // From here on the packet is the fast path's: nothing below can fail (the
        // offsets are inside the frame `parse_fast` accepted).
        self.ct
            .recipe_rewrite(&plan, frame, pkt.proto == proto::UDP);
        frame[0..6].copy_from_slice(&adj.dst);
        frame[6..12].copy_from_slice(&adj.src);
        let port = adj.port;
        self.vector.forwarded += 1;
        if plan.path != NO_PATH {
            self.credit_later(plan.path, pkt.ip_len);
        }
        Some(Action::Forward {
            port,
            len: u16::try_from(frame.len()).unwrap_or(u16::MAX),
        })
    }

    /// The full path's conntrack lookup of `key`: with the stage-1 hash when the fast path
    /// just handed this frame over (the key hashed once), else hashing it.
    pub(super) fn lookup(
        &self,
        key: &FlowKey,
    ) -> Option<(crate::conntrack::EntryId, crate::conntrack::Direction)> {
        match &self.vector.handed {
            Some((k, p)) if k == key => self.ct.lookup_probe(key, p),
            _ => self.ct.lookup(key),
        }
    }

    /// [`Pipeline::lookup`] that keeps a miss for the insert (`Table::lookup_or_miss`).
    pub(super) fn lookup_or_miss(
        &self,
        key: &FlowKey,
    ) -> Result<(crate::conntrack::EntryId, crate::conntrack::Direction), crate::conntrack::Miss>
    {
        match &self.vector.handed {
            Some((k, p)) if k == key => self.ct.lookup_probe_or_miss(key, p),
            _ => self.ct.lookup_or_miss(key),
        }
    }

    /// Stage 4: credits the rules of the vector's fast-path packets (one call per path
    /// instead of one per packet). Call it after the vector, before `tick`.
    pub fn finish_vector(&mut self) {
        // The worker counters of the vector's fast-path frames, as the full path counts
        // each: received, forwarded, and a verdict-cache hit when a ruleset is loaded.
        let n = std::mem::take(&mut self.vector.forwarded);
        let c = &mut self.counters;
        c.rx += n;
        c.proc.forwarded += n;
        c.proc.fast_path += n;
        if self.rules.is_some() {
            c.proc.verdict_cache_hits += n;
        }
        for i in 0..self.vector.credits.len() {
            let (path, packets, bytes) = self.vector.credits[i];
            self.credit_path_n(usize::from(path), packets, bytes);
        }
        self.vector.credits.clear();
    }

    /// Adds one packet of `len` bytes to the vector's credits of `path`.
    #[inline(always)]
    fn credit_later(&mut self, path: u16, len: u16) {
        let credits = &mut self.vector.credits;
        if let Some(c) = credits.last_mut()
            && c.0 == path
        {
            c.1 += 1;
            c.2 += u64::from(len);
            return;
        }
        if let Some(c) = credits.iter_mut().find(|c| c.0 == path) {
            c.1 += 1;
            c.2 += u64::from(len);
            return;
        }
        if credits.is_full() {
            self.finish_vector();
        }
        self.vector.credits.push((path, 1, u64::from(len)));
    }

    /// The parse options in force for a frame with the NIC's verdicts `opts`:
    /// `nf_conntrack_checksum = 0` turns the software L4 verification off (as Linux's
    /// conntrack stops verifying; a NIC's "bad" verdict still drops).
    pub(super) fn parse_options(&self, opts: &ParseOptions) -> ParseOptions {
        ParseOptions {
            verify_l4: opts.verify_l4 && self.ct.tunables().checksum,
            ..*opts
        }
    }

    /// After the full pipeline forwarded a packet of an established connection
    /// (`sent`, noted by `send_out`): builds the recipe of its direction when the
    /// verdict came from, or went into, the verdict cache (no ruleset: every hook
    /// accepts) and the connection qualifies (`Table::build_recipe`).
    pub(super) fn build_recipe(&mut self, in_port: u16, sent: Sent) {
        let (id, dir) = sent.entry;
        let Ok(in_port) = u8::try_from(in_port) else {
            return;
        };
        let path = if self.rules.is_some() {
            let Some((cid, cdir, key)) = self.cache else {
                return;
            };
            let Some(v) = self.ct.verdict_slot(cid, cdir) else {
                return;
            };
            if (cid, cdir) != (id, dir) || v & !super::CACHE_PATH != key {
                return;
            }
            let Some(pid) = self.cached_path(v).and_then(|p| u16::try_from(p).ok()) else {
                return;
            };
            pid
        } else {
            NO_PATH
        };
        let Some(p) = self.ports.get(usize::from(sent.port)) else {
            return;
        };
        self.adj.sync(self.recipe_epoch);
        let Some(adj) = self.adj.intern(Adjacency {
            dst: sent.dst_mac,
            src: p.mac,
            port: sent.port,
            mtu: p.mtu,
        }) else {
            return;
        };
        let args = RecipeArgs {
            in_port,
            epoch: self.recipe_epoch,
            adj,
            path,
        };
        if self.ct.build_recipe(id, dir, &args) {
            self.counters.proc.recipes_built += 1;
        }
    }

    /// Whether a forwarded packet with conntrack view `ct` may leave a recipe.
    pub(super) fn recipe_candidate(
        bit: u8,
        new_key: bool,
        entry: Option<(crate::conntrack::EntryId, crate::conntrack::Direction)>,
    ) -> Option<(crate::conntrack::EntryId, crate::conntrack::Direction)> {
        (bit == ct_state::ESTABLISHED && !new_key).then_some(entry?)
    }

    /// A new recipe epoch: every recipe is stale from now on (a ruleset generation,
    /// route table, neighbour snapshot or tunables were adopted).
    pub(super) fn bump_recipe_epoch(&mut self) {
        self.recipe_epoch += 1;
    }

    /// The recipe epoch (tests).
    pub fn recipe_epoch(&self) -> u64 {
        self.recipe_epoch
    }

    /// Runs a vector the way the I/O edge does: stages 1–2 for all, then each frame
    /// through the fast path or, failing that, the full pipeline, in order, then the
    /// credits. `actions[i]` answers `frames[i]`; replies go to `scratch[i]`.
    pub fn process_vector(
        &mut self,
        in_port: u16,
        frames: &mut [&mut [u8]],
        now_ns: u64,
        scratch: &mut [&mut [u8]],
        actions: &mut [Action],
    ) {
        let opts = crate::wire::VERIFY_ALL;
        {
            let view: ArrayVec<&[u8], MAX_VECTOR> =
                frames.iter().take(MAX_VECTOR).map(|f| &**f).collect();
            self.prepare_vector(&view, |_| {});
        }
        for (i, ((frame, s), a)) in frames
            .iter_mut()
            .zip(scratch.iter_mut())
            .zip(actions)
            .enumerate()
        {
            *a = match self.fast_path(i, in_port, frame, &opts, now_ns) {
                Some(x) => x,
                None => self.process_offload(in_port, frame, &opts, now_ns, s),
            };
        }
        self.finish_vector();
    }
}
