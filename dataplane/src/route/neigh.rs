//! Neighbour resolution (ARP for IPv4, neighbour discovery for IPv6).
//!
//! Two halves:
//!
//! - [`NeighborCache`] is the state machine, owned by the slow-path thread: it holds
//!   packets waiting for a link-layer address, decides when to send probes, learns from
//!   ARP/NA packets and gives up after a few probes. It may allocate: it runs off the
//!   per-packet path.
//! - [`NeighborSnapshot`] is what workers read: an immutable map from `(port, address)` to
//!   a MAC, republished by the slow path whenever a MAC appears, changes or goes away.
//!
//! Behaviour follows Linux's defaults (`net.ipv4.neigh.default.*`): probes one second
//! apart (`retrans_time_ms` 1000), three multicast/broadcast probes before failure
//! (`mcast_solicit` 3), a reachable entry is confirmed for 30 s (`base_reachable_time_ms`)
//! and then re-probed with a unicast request while it keeps being used (`ucast_solicit`),
//! and learning from unsolicited ARP follows `arp_accept = 0`: an ARP request addressed to
//! us creates or refreshes the sender's entry, a gratuitous or unsolicited reply only
//! updates an entry that already exists. The queue of packets waiting for resolution is
//! short (`unres_qlen`-like, default 3 per neighbour here, Linux counts bytes); overflow and
//! failed resolution are counted drops, never leaks.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use super::table::PortIndex;
use crate::wire::Addr;

/// A link-layer address.
pub type Mac = [u8; 6];

/// Time in milliseconds from an arbitrary monotonic origin (the slow path converts the
/// TSC; tests pass plain numbers).
pub type Millis = u64;

/// Tunables of the neighbour cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighConfig {
    /// Time between probes while resolving.
    pub retrans_time_ms: Millis,
    /// Probes before giving up.
    pub max_probes: u8,
    /// How long a confirmation keeps an entry reachable.
    pub reachable_time_ms: Millis,
    /// Packets held per unresolved neighbour.
    pub max_pending: usize,
    /// Entries (all ports, both families) before new resolutions are refused.
    pub capacity: usize,
    /// A failed entry is remembered this long, so a burst of packets to a dead host does not
    /// restart resolution for every packet.
    pub failed_hold_ms: Millis,
}

impl Default for NeighConfig {
    fn default() -> Self {
        NeighConfig {
            retrans_time_ms: 1000,
            max_probes: 3,
            reachable_time_ms: 30_000,
            max_pending: 3,
            capacity: 16_384,
            failed_hold_ms: 3_000,
        }
    }
}

#[derive(Debug)]
enum State<P> {
    /// Resolving: probes sent so far, when the next one is due, packets waiting.
    Incomplete {
        probes: u8,
        next_probe: Millis,
        pending: VecDeque<P>,
    },
    /// Known; `confirmed` is when it was last confirmed. After `reachable_time_ms` it is
    /// still used but re-probed (unicast) on the next use, Linux's STALE -> PROBE.
    Reachable {
        mac: Mac,
        confirmed: Millis,
        probing: Option<(u8, Millis)>,
    },
    /// Configured statically; never probed, never expires.
    Permanent { mac: Mac },
    /// Resolution failed at the given time; packets are dropped until `failed_hold_ms`
    /// has passed.
    Failed { since: Millis },
}

/// What the slow path must do after a call.
#[derive(Debug, PartialEq, Eq)]
pub enum Action<P> {
    /// Nothing to send.
    None,
    /// Send a probe for `addr` on `port`: broadcast ARP / multicast NS when `unicast` is
    /// `None`, unicast to that MAC otherwise.
    Probe {
        port: PortIndex,
        addr: Addr,
        unicast: Option<Mac>,
    },
    /// The MAC is known: send the packet now.
    Send { mac: Mac, packet: P },
    /// The packet was dropped (queue full, table full, neighbour failed).
    Dropped(P),
}

/// Counters of the neighbour cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NeighStats {
    pub probes_sent: u64,
    pub resolved: u64,
    pub failed: u64,
    /// Packets dropped because the per-neighbour queue was full.
    pub queue_overflow: u64,
    /// Packets dropped because resolution failed or the neighbour is marked failed.
    pub unresolved_drop: u64,
    /// Resolutions refused because the cache was full.
    pub table_full: u64,
}

/// The slow path's neighbour state machine. `P` is the held packet type (an mbuf in `fwd`).
#[derive(Debug)]
pub struct NeighborCache<P> {
    config: NeighConfig,
    entries: FxHashMap<(PortIndex, Addr), State<P>>,
    stats: NeighStats,
    /// Set when a MAC was added, changed or removed since the last snapshot.
    dirty: bool,
    generation: u64,
}

/// An immutable view for workers.
#[derive(Clone, Debug, Default)]
pub struct NeighborSnapshot {
    map: FxHashMap<(PortIndex, Addr), Mac>,
    generation: u64,
}

impl NeighborSnapshot {
    /// The MAC of `addr` on `port`, if resolved.
    pub fn lookup(&self, port: PortIndex, addr: Addr) -> Option<Mac> {
        self.map.get(&(port, addr)).copied()
    }

    /// Increases by one with every published change.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl<P> NeighborCache<P> {
    pub fn new(config: NeighConfig) -> Self {
        NeighborCache {
            config,
            entries: FxHashMap::default(),
            stats: NeighStats::default(),
            dirty: true,
            generation: 0,
        }
    }

    /// Adds a static entry (from the configuration).
    pub fn add_static(&mut self, port: PortIndex, addr: Addr, mac: Mac) {
        self.entries.insert((port, addr), State::Permanent { mac });
        self.dirty = true;
    }

    pub fn stats(&self) -> NeighStats {
        self.stats
    }

    /// `packet` must go to `addr` on `port`, whose MAC a worker did not have.
    pub fn resolve(&mut self, port: PortIndex, addr: Addr, packet: P, now: Millis) -> Action<P> {
        let full = self.entries.len() >= self.config.capacity;
        let cfg = self.config;
        let key = (port, addr);
        let Some(state) = self.entries.get_mut(&key) else {
            if full {
                self.stats.table_full += 1;
                self.stats.unresolved_drop += 1;
                return Action::Dropped(packet);
            }
            let mut pending = VecDeque::with_capacity(cfg.max_pending);
            pending.push_back(packet);
            self.entries.insert(
                key,
                State::Incomplete {
                    probes: 1,
                    next_probe: now + cfg.retrans_time_ms,
                    pending,
                },
            );
            self.stats.probes_sent += 1;
            return Action::Probe {
                port,
                addr,
                unicast: None,
            };
        };
        match state {
            State::Incomplete { pending, .. } => {
                if pending.len() >= cfg.max_pending {
                    // Linux drops the oldest queued packet (neigh __neigh_event_send);
                    // keep the newest, which is more likely to still matter.
                    self.stats.queue_overflow += 1;
                    let old = pending.pop_front();
                    pending.push_back(packet);
                    match old {
                        Some(p) => Action::Dropped(p),
                        None => Action::None,
                    }
                } else {
                    pending.push_back(packet);
                    Action::None
                }
            }
            State::Reachable { mac, .. } | State::Permanent { mac } => {
                // A worker raced with a snapshot update: the MAC is known.
                Action::Send { mac: *mac, packet }
            }
            State::Failed { since } => {
                if now.saturating_sub(*since) < cfg.failed_hold_ms {
                    self.stats.unresolved_drop += 1;
                    Action::Dropped(packet)
                } else {
                    let mut pending = VecDeque::with_capacity(cfg.max_pending);
                    pending.push_back(packet);
                    *state = State::Incomplete {
                        probes: 1,
                        next_probe: now + cfg.retrans_time_ms,
                        pending,
                    };
                    self.stats.probes_sent += 1;
                    Action::Probe {
                        port,
                        addr,
                        unicast: None,
                    }
                }
            }
        }
    }

    /// A worker used a stale entry (confirmed longer than `reachable_time_ms` ago): probe it
    /// with a unicast request while it stays usable. Returns the probe to send, if any.
    pub fn touch(&mut self, port: PortIndex, addr: Addr, now: Millis) -> Option<Action<P>> {
        let cfg = self.config;
        match self.entries.get_mut(&(port, addr))? {
            State::Reachable {
                mac,
                confirmed,
                probing,
            } if probing.is_none() && now.saturating_sub(*confirmed) >= cfg.reachable_time_ms => {
                *probing = Some((1, now + cfg.retrans_time_ms));
                self.stats.probes_sent += 1;
                Some(Action::Probe {
                    port,
                    addr,
                    unicast: Some(*mac),
                })
            }
            _ => None,
        }
    }

    /// Learn `addr` -> `mac` on `port` from an ARP packet or neighbour advertisement.
    /// `create` says whether an unknown neighbour may be created (an ARP request addressed to
    /// us, a solicited advertisement) or only updated (gratuitous ARP, `arp_accept = 0`).
    /// Returns the packets that were waiting, to be sent to `mac`.
    pub fn learn(
        &mut self,
        port: PortIndex,
        addr: Addr,
        mac: Mac,
        create: bool,
        now: Millis,
    ) -> Vec<P> {
        let key = (port, addr);
        let Some(state) = self.entries.get_mut(&key) else {
            if create && self.entries.len() < self.config.capacity {
                self.entries.insert(
                    key,
                    State::Reachable {
                        mac,
                        confirmed: now,
                        probing: None,
                    },
                );
                self.dirty = true;
            }
            return Vec::new();
        };
        match state {
            State::Permanent { .. } => Vec::new(),
            State::Incomplete { pending, .. } => {
                let waiting: Vec<P> = pending.drain(..).collect();
                *state = State::Reachable {
                    mac,
                    confirmed: now,
                    probing: None,
                };
                self.stats.resolved += 1;
                self.dirty = true;
                waiting
            }
            State::Reachable {
                mac: old,
                confirmed,
                probing,
            } => {
                if *old != mac {
                    *old = mac;
                    self.dirty = true;
                }
                *confirmed = now;
                *probing = None;
                Vec::new()
            }
            State::Failed { .. } => {
                *state = State::Reachable {
                    mac,
                    confirmed: now,
                    probing: None,
                };
                self.stats.resolved += 1;
                self.dirty = true;
                Vec::new()
            }
        }
    }

    /// Timers: resend due probes, fail neighbours that did not answer. Returns the probes to
    /// send and the packets dropped because resolution failed.
    pub fn tick(&mut self, now: Millis) -> (Vec<Action<P>>, Vec<P>) {
        let cfg = self.config;
        let mut probes = Vec::new();
        let mut dropped = Vec::new();
        let mut changed = false;
        for (&(port, addr), state) in self.entries.iter_mut() {
            match state {
                State::Incomplete {
                    probes: n,
                    next_probe,
                    pending,
                } if now >= *next_probe => {
                    if *n >= cfg.max_probes {
                        self.stats.failed += 1;
                        self.stats.unresolved_drop += pending.len() as u64;
                        dropped.extend(pending.drain(..));
                        *state = State::Failed { since: now };
                    } else {
                        *n += 1;
                        *next_probe = now + cfg.retrans_time_ms;
                        self.stats.probes_sent += 1;
                        probes.push(Action::Probe {
                            port,
                            addr,
                            unicast: None,
                        });
                    }
                }
                State::Reachable {
                    mac,
                    probing: Some((n, next)),
                    ..
                } if now >= *next => {
                    if *n >= cfg.max_probes {
                        // Unicast probes unanswered: the neighbour is gone.
                        self.stats.failed += 1;
                        *state = State::Failed { since: now };
                        changed = true;
                    } else {
                        *n += 1;
                        *next = now + cfg.retrans_time_ms;
                        self.stats.probes_sent += 1;
                        probes.push(Action::Probe {
                            port,
                            addr,
                            unicast: Some(*mac),
                        });
                    }
                }
                _ => {}
            }
        }
        // Forget failed entries after the hold time so the table does not fill with them.
        self.entries.retain(|_, s| match s {
            State::Failed { since } => now.saturating_sub(*since) < cfg.failed_hold_ms,
            _ => true,
        });
        self.dirty |= changed;
        (probes, dropped)
    }

    /// A new snapshot if anything a worker can see changed since the last call.
    pub fn snapshot_if_changed(&mut self) -> Option<NeighborSnapshot> {
        if !self.dirty {
            return None;
        }
        self.dirty = false;
        self.generation += 1;
        let map = self
            .entries
            .iter()
            .filter_map(|(k, s)| match s {
                State::Reachable { mac, .. } | State::Permanent { mac } => Some((*k, *mac)),
                _ => None,
            })
            .collect();
        Some(NeighborSnapshot {
            map,
            generation: self.generation,
        })
    }

    /// Number of entries in every state.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M1: Mac = [2, 0, 0, 0, 0, 1];
    const M2: Mac = [2, 0, 0, 0, 0, 2];

    fn a(s: &str) -> Addr {
        Addr::from(s.parse::<std::net::IpAddr>().unwrap())
    }

    #[test]
    fn resolves_and_releases_waiting_packets() {
        let mut c = NeighborCache::new(NeighConfig::default());
        let gw = a("198.19.1.254");
        assert_eq!(
            c.resolve(1, gw, "p1", 0),
            Action::Probe {
                port: 1,
                addr: gw,
                unicast: None
            }
        );
        assert_eq!(c.resolve(1, gw, "p2", 10), Action::None);
        assert!(
            c.snapshot_if_changed()
                .is_some_and(|s| s.lookup(1, gw).is_none())
        );
        let released = c.learn(1, gw, M1, false, 20);
        assert_eq!(released, vec!["p1", "p2"]);
        let snap = c
            .snapshot_if_changed()
            .expect("resolution publishes a snapshot");
        assert_eq!(snap.lookup(1, gw), Some(M1));
        assert_eq!(snap.lookup(0, gw), None);
        assert!(c.snapshot_if_changed().is_none(), "nothing changed since");
        assert_eq!(c.stats().resolved, 1);
    }

    #[test]
    fn queue_overflow_drops_oldest_and_counts() {
        let mut c = NeighborCache::new(NeighConfig {
            max_pending: 2,
            ..NeighConfig::default()
        });
        let h = a("198.18.1.9");
        c.resolve(0, h, 1, 0);
        c.resolve(0, h, 2, 0);
        assert_eq!(c.resolve(0, h, 3, 0), Action::Dropped(1));
        assert_eq!(c.stats().queue_overflow, 1);
        assert_eq!(c.learn(0, h, M1, false, 1), vec![2, 3]);
    }

    #[test]
    fn unanswered_probes_fail_and_drop_everything() {
        let cfg = NeighConfig::default();
        let mut c = NeighborCache::new(cfg);
        let h = a("2001:db8:1::9");
        c.resolve(0, h, 'a', 0);
        c.resolve(0, h, 'b', 0);
        let (p, d) = c.tick(cfg.retrans_time_ms);
        assert_eq!((p.len(), d.len()), (1, 0), "second probe");
        let (p, d) = c.tick(2 * cfg.retrans_time_ms);
        assert_eq!((p.len(), d.len()), (1, 0), "third probe");
        let (p, d) = c.tick(3 * cfg.retrans_time_ms);
        assert_eq!(p.len(), 0);
        assert_eq!(d, vec!['a', 'b'], "queued packets dropped on failure");
        assert_eq!(c.stats().probes_sent, 3);
        assert_eq!(c.stats().failed, 1);
        // While failed, packets are dropped at once without new probes.
        assert_eq!(
            c.resolve(0, h, 'c', 3 * cfg.retrans_time_ms + 1),
            Action::Dropped('c')
        );
        // After the hold time the entry is forgotten and resolution starts again.
        c.tick(3 * cfg.retrans_time_ms + cfg.failed_hold_ms);
        assert!(c.is_empty());
        assert!(matches!(c.resolve(0, h, 'd', 10_000), Action::Probe { .. }));
    }

    #[test]
    fn gratuitous_arp_only_updates_known_neighbours() {
        let mut c: NeighborCache<()> = NeighborCache::new(NeighConfig::default());
        let h = a("198.18.1.20");
        c.learn(0, h, M1, false, 0);
        assert!(c.is_empty(), "arp_accept=0: unsolicited does not create");
        c.learn(0, h, M1, true, 0);
        assert_eq!(c.snapshot_if_changed().unwrap().lookup(0, h), Some(M1));
        c.learn(0, h, M2, false, 5);
        assert_eq!(
            c.snapshot_if_changed().unwrap().lookup(0, h),
            Some(M2),
            "MAC change"
        );
    }

    #[test]
    fn stale_entries_are_reprobed_by_unicast_and_fail_when_silent() {
        let cfg = NeighConfig::default();
        let mut c: NeighborCache<()> = NeighborCache::new(cfg);
        let h = a("198.18.1.30");
        c.learn(0, h, M1, true, 0);
        assert!(c.touch(0, h, 1000).is_none(), "fresh entry needs no probe");
        let t = cfg.reachable_time_ms;
        assert_eq!(
            c.touch(0, h, t),
            Some(Action::Probe {
                port: 0,
                addr: h,
                unicast: Some(M1)
            })
        );
        assert!(c.touch(0, h, t + 1).is_none(), "one probe cycle at a time");
        c.tick(t + cfg.retrans_time_ms);
        c.tick(t + 2 * cfg.retrans_time_ms);
        c.snapshot_if_changed();
        c.tick(t + 3 * cfg.retrans_time_ms);
        let snap = c.snapshot_if_changed().expect("failure is published");
        assert_eq!(snap.lookup(0, h), None);
    }

    #[test]
    fn static_entries_are_permanent() {
        let mut c: NeighborCache<u8> = NeighborCache::new(NeighConfig::default());
        let gw = a("198.19.1.254");
        c.add_static(1, gw, M1);
        c.learn(1, gw, M2, true, 0);
        assert_eq!(c.snapshot_if_changed().unwrap().lookup(1, gw), Some(M1));
        assert!(c.touch(1, gw, u64::MAX / 2).is_none());
        assert_eq!(c.resolve(1, gw, 7, 0), Action::Send { mac: M1, packet: 7 });
    }

    #[test]
    fn full_table_refuses_new_neighbours() {
        let mut c = NeighborCache::new(NeighConfig {
            capacity: 1,
            ..NeighConfig::default()
        });
        c.resolve(0, a("198.18.1.1"), 1, 0);
        assert_eq!(c.resolve(0, a("198.18.1.2"), 2, 0), Action::Dropped(2));
        assert_eq!(c.stats().table_full, 1);
    }
}
