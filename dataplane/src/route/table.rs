//! The route table: connected routes from port addresses, static routes, longest-prefix
//! match, and the set of the appliance's own addresses.
//!
//! Lookup is by prefix length, longest first: one hash probe per distinct prefix length
//! present in the table (a router with connected /24s and a default route does two probes).
//! That is simpler than a DIR-24-8 or poptrie and fast enough for the table sizes an edge
//! firewall carries; the table is immutable once built and shared by workers as a snapshot.
//! IPv4 and IPv6 have separate tables, so an IPv6 `::/0` never matches an IPv4-mapped
//! address.

use std::fmt;

use rustc_hash::FxHashMap;

use crate::wire::{Addr, Family};

/// Index of a port in the appliance's configuration (not a DPDK port id).
pub type PortIndex = u16;

/// An address prefix of one family.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix {
    pub family: Family,
    pub addr: Addr,
    /// Prefix length within the family: 0..=32 for IPv4, 0..=128 for IPv6.
    pub len: u8,
}

/// Why a prefix or route could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("invalid prefix {0:?}: expected ADDRESS/LENGTH, e.g. 198.18.1.0/24")]
    BadPrefix(String),
    #[error("prefix length {len} is too long for {family:?} (max {max})")]
    PrefixTooLong { family: Family, len: u8, max: u8 },
    #[error("gateway {0} is not on a connected network of any port")]
    GatewayUnreachable(Addr),
    #[error("gateway {gateway} is a different address family than prefix {prefix}")]
    FamilyMismatch { prefix: Prefix, gateway: Addr },
    #[error("duplicate route for {0}")]
    Duplicate(Prefix),
}

impl Prefix {
    /// Builds a prefix, clearing host bits.
    pub fn new(addr: Addr, len: u8) -> Result<Self, RouteError> {
        let family = if addr.to_v4().is_some() {
            Family::V4
        } else {
            Family::V6
        };
        let max = max_len(family);
        if len > max {
            return Err(RouteError::PrefixTooLong { family, len, max });
        }
        let masked = Addr(u128::to_be_bytes(
            addr_to_u128(addr) & prefix_mask(family, len),
        ));
        Ok(Prefix {
            family,
            addr: masked,
            len,
        })
    }

    /// Whether `addr` falls inside this prefix.
    pub fn contains(&self, addr: Addr) -> bool {
        let fam = if addr.to_v4().is_some() {
            Family::V4
        } else {
            Family::V6
        };
        fam == self.family
            && addr_to_u128(addr) & prefix_mask(self.family, self.len) == addr_to_u128(self.addr)
    }
}

impl std::str::FromStr for Prefix {
    type Err = RouteError;

    /// Parses `ADDRESS/LENGTH`; a bare address is a host prefix (/32 or /128).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || RouteError::BadPrefix(s.to_string());
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let ip: std::net::IpAddr = a.trim().parse().map_err(|_| bad())?;
        let addr = Addr::from(ip);
        let len = match l {
            Some(l) => l.trim().parse::<u8>().map_err(|_| bad())?,
            None if ip.is_ipv4() => 32,
            None => 128,
        };
        Prefix::new(addr, len)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl fmt::Debug for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

const fn max_len(family: Family) -> u8 {
    match family {
        Family::V4 => 32,
        Family::V6 => 128,
    }
}

/// An address as one 128-bit number (IPv4 as mapped, as [`Addr`] stores it): what
/// prefixes, route lookups, rule ranges and the classifier compare.
pub fn addr_to_u128(a: Addr) -> u128 {
    u128::from_be_bytes(a.0)
}

/// The mask of a family-relative prefix length in the 128-bit (IPv4-mapped) space: the
/// one prefix arithmetic of [`Prefix`], the route lookup and the rule language.
pub fn prefix_mask(family: Family, len: u8) -> u128 {
    let bits = match family {
        Family::V4 => 96 + u32::from(len),
        Family::V6 => u32::from(len),
    };
    if bits == 0 {
        0
    } else {
        u128::MAX << (128 - bits)
    }
}

/// Where a route sends packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// Directly connected: the destination itself is the neighbour.
    Connected,
    /// Through a gateway on a connected network.
    Gateway(Addr),
    /// Silently dropped (`ip route add blackhole`).
    Blackhole,
}

/// One route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub prefix: Prefix,
    pub via: Via,
    /// Egress port (meaningless for a blackhole route).
    pub port: PortIndex,
}

/// The result of a lookup: the egress port and the neighbour to resolve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextHop {
    /// Send on `port` to the link-layer address of `neighbor`.
    Forward { port: PortIndex, neighbor: Addr },
    /// A blackhole route matched.
    Blackhole,
}

/// Longest-prefix match over one family.
#[derive(Clone, Debug, Default)]
struct Lpm {
    /// Distinct prefix lengths present, longest first, each with its map from the masked
    /// address to a route index.
    levels: Vec<(u8, FxHashMap<u128, u32>)>,
}

impl Lpm {
    fn insert(&mut self, family: Family, prefix: Prefix, index: u32) -> bool {
        let pos = match self.levels.binary_search_by(|(l, _)| prefix.len.cmp(l)) {
            Ok(p) => p,
            Err(p) => {
                self.levels.insert(p, (prefix.len, FxHashMap::default()));
                p
            }
        };
        let key = addr_to_u128(prefix.addr) & prefix_mask(family, prefix.len);
        self.levels[pos].1.insert(key, index).is_none()
    }

    fn lookup(&self, family: Family, addr: Addr) -> Option<u32> {
        let a = addr_to_u128(addr);
        self.levels
            .iter()
            .find_map(|(len, map)| map.get(&(a & prefix_mask(family, *len))).copied())
    }
}

/// An immutable route table built from the configuration.
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
    v4: Lpm,
    v6: Lpm,
    /// The appliance's own addresses and the port each belongs to.
    local: FxHashMap<Addr, PortIndex>,
}

/// Builds a [`RouteTable`]: add port addresses first (they make connected routes), then
/// static routes (their gateway is resolved against the connected routes).
#[derive(Debug, Default)]
pub struct RouteTableBuilder {
    table: RouteTable,
}

impl RouteTableBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an address of `port` with its prefix length: a local address and a connected
    /// route. Two ports on one network are refused as a duplicate route.
    pub fn port_address(
        &mut self,
        port: PortIndex,
        addr: Addr,
        len: u8,
    ) -> Result<&mut Self, RouteError> {
        let prefix = Prefix::new(addr, len)?;
        self.table.local.insert(addr, port);
        self.push(Route {
            prefix,
            via: Via::Connected,
            port,
        })?;
        Ok(self)
    }

    /// Adds a static route through `gateway`. Without an explicit `port`, the port is the
    /// one whose connected network holds the gateway.
    pub fn static_route(
        &mut self,
        prefix: Prefix,
        gateway: Addr,
        port: Option<PortIndex>,
    ) -> Result<&mut Self, RouteError> {
        let gw_family = if gateway.to_v4().is_some() {
            Family::V4
        } else {
            Family::V6
        };
        if gw_family != prefix.family {
            return Err(RouteError::FamilyMismatch { prefix, gateway });
        }
        let port = match port {
            Some(p) => p,
            None => self
                .table
                .routes
                .iter()
                .find(|r| r.via == Via::Connected && r.prefix.contains(gateway))
                .map(|r| r.port)
                .ok_or(RouteError::GatewayUnreachable(gateway))?,
        };
        self.push(Route {
            prefix,
            via: Via::Gateway(gateway),
            port,
        })?;
        Ok(self)
    }

    /// Adds a blackhole route.
    pub fn blackhole(&mut self, prefix: Prefix) -> Result<&mut Self, RouteError> {
        self.push(Route {
            prefix,
            via: Via::Blackhole,
            port: 0,
        })?;
        Ok(self)
    }

    fn push(&mut self, route: Route) -> Result<(), RouteError> {
        let index = u32::try_from(self.table.routes.len())
            .map_err(|_| RouteError::Duplicate(route.prefix))?;
        let lpm = match route.prefix.family {
            Family::V4 => &mut self.table.v4,
            Family::V6 => &mut self.table.v6,
        };
        if !lpm.insert(route.prefix.family, route.prefix, index) {
            return Err(RouteError::Duplicate(route.prefix));
        }
        self.table.routes.push(route);
        Ok(())
    }

    pub fn build(self) -> RouteTable {
        self.table
    }
}

impl RouteTable {
    /// The route for `dst`, longest prefix first.
    pub fn route(&self, family: Family, dst: Addr) -> Option<&Route> {
        let lpm = match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        };
        let i = lpm.lookup(family, dst)?;
        self.routes.get(usize::try_from(i).ok()?)
    }

    /// Where to send a packet for `dst`, or `None` when no route matches.
    pub fn next_hop(&self, family: Family, dst: Addr) -> Option<NextHop> {
        let r = self.route(family, dst)?;
        Some(match r.via {
            Via::Connected => NextHop::Forward {
                port: r.port,
                neighbor: dst,
            },
            Via::Gateway(gw) => NextHop::Forward {
                port: r.port,
                neighbor: gw,
            },
            Via::Blackhole => NextHop::Blackhole,
        })
    }

    /// The port owning `addr` if it is one of the appliance's own addresses.
    pub fn local_port(&self, addr: Addr) -> Option<PortIndex> {
        self.local.get(&addr).copied()
    }

    /// Every one of the appliance's own addresses with its port, sorted by address.
    pub fn local_addresses(&self) -> Vec<(Addr, PortIndex)> {
        let mut v: Vec<(Addr, PortIndex)> = self.local.iter().map(|(a, p)| (*a, *p)).collect();
        v.sort_unstable();
        v
    }

    /// The first address of `family` configured on `port` (the source of packets the
    /// appliance originates there, and the `masquerade` address).
    pub fn port_address(&self, port: PortIndex, family: Family) -> Option<Addr> {
        self.routes
            .iter()
            .filter(|r| r.port == port && r.via == Via::Connected && r.prefix.family == family)
            .find_map(|r| {
                self.local
                    .iter()
                    .filter(|(a, p)| **p == port && r.prefix.contains(**a))
                    .map(|(a, _)| *a)
                    .min()
            })
    }

    /// Every route, in the order added.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Addr {
        Addr::from(s.parse::<std::net::IpAddr>().unwrap())
    }

    fn table() -> RouteTable {
        let mut b = RouteTableBuilder::new();
        b.port_address(0, a("198.18.1.1"), 24).unwrap();
        b.port_address(1, a("198.19.1.1"), 24).unwrap();
        b.port_address(1, a("2001:db8:1::1"), 64).unwrap();
        b.static_route("0.0.0.0/0".parse().unwrap(), a("198.19.1.254"), None)
            .unwrap();
        b.static_route("198.18.128.0/17".parse().unwrap(), a("198.18.1.254"), None)
            .unwrap();
        b.static_route("::/0".parse().unwrap(), a("2001:db8:1::fe"), None)
            .unwrap();
        b.blackhole("203.0.113.0/24".parse().unwrap()).unwrap();
        b.build()
    }

    #[test]
    fn longest_prefix_wins() {
        let t = table();
        let v4 = Family::V4;
        assert_eq!(
            t.next_hop(v4, a("198.18.1.7")),
            Some(NextHop::Forward {
                port: 0,
                neighbor: a("198.18.1.7")
            })
        );
        assert_eq!(
            t.next_hop(v4, a("198.18.200.1")),
            Some(NextHop::Forward {
                port: 0,
                neighbor: a("198.18.1.254")
            })
        );
        assert_eq!(
            t.next_hop(v4, a("192.0.2.1")),
            Some(NextHop::Forward {
                port: 1,
                neighbor: a("198.19.1.254")
            })
        );
        assert_eq!(t.next_hop(v4, a("203.0.113.9")), Some(NextHop::Blackhole));
    }

    #[test]
    fn families_do_not_mix() {
        let t = table();
        // The IPv6 default route must not catch IPv4 destinations and vice versa.
        assert_eq!(
            t.next_hop(Family::V6, a("2001:db8:99::1")),
            Some(NextHop::Forward {
                port: 1,
                neighbor: a("2001:db8:1::fe")
            })
        );
        let mut b = RouteTableBuilder::new();
        b.port_address(0, a("2001:db8:1::1"), 64).unwrap();
        b.static_route("::/0".parse().unwrap(), a("2001:db8:1::fe"), None)
            .unwrap();
        let only6 = b.build();
        assert_eq!(only6.next_hop(Family::V4, a("198.18.1.1")), None);
    }

    #[test]
    fn local_addresses_and_port_address() {
        let t = table();
        assert_eq!(t.local_port(a("198.19.1.1")), Some(1));
        assert_eq!(t.local_port(a("198.19.1.2")), None);
        assert_eq!(t.port_address(1, Family::V4), Some(a("198.19.1.1")));
        assert_eq!(t.port_address(1, Family::V6), Some(a("2001:db8:1::1")));
        assert_eq!(t.port_address(0, Family::V6), None);
    }

    #[test]
    fn bad_routes_are_refused() {
        let mut b = RouteTableBuilder::new();
        b.port_address(0, a("198.18.1.1"), 24).unwrap();
        assert_eq!(
            b.static_route("0.0.0.0/0".parse().unwrap(), a("198.19.9.9"), None)
                .unwrap_err(),
            RouteError::GatewayUnreachable(a("198.19.9.9"))
        );
        assert!(matches!(
            b.static_route("::/0".parse().unwrap(), a("198.18.1.9"), None),
            Err(RouteError::FamilyMismatch { .. })
        ));
        assert!(matches!(
            b.port_address(1, a("198.18.1.2"), 24),
            Err(RouteError::Duplicate(_))
        ));
        assert!(matches!(
            "198.18.1.0/33".parse::<Prefix>(),
            Err(RouteError::PrefixTooLong { .. })
        ));
        assert!(matches!(
            "198.18.1.0/x".parse::<Prefix>(),
            Err(RouteError::BadPrefix(_))
        ));
        assert!(matches!(
            "nonsense".parse::<Prefix>(),
            Err(RouteError::BadPrefix(_))
        ));
    }

    #[test]
    fn prefix_parsing_clears_host_bits() {
        let p: Prefix = "198.18.1.77/24".parse().unwrap();
        assert_eq!(p.to_string(), "198.18.1.0/24");
        assert!(p.contains(a("198.18.1.200")));
        assert!(!p.contains(a("198.18.2.1")));
        assert!(!p.contains(a("2001:db8::1")));
        let h: Prefix = "2001:db8::5".parse().unwrap();
        assert_eq!(h.len, 128);
        let z: Prefix = "0.0.0.0/0".parse().unwrap();
        assert!(z.contains(a("203.0.113.1")));
        assert!(!z.contains(a("2001:db8::1")));
    }
}
