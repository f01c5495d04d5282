//! Flow numbering. Flow `i` is `src_base + (i mod 65536)`, source port `1024 + i / 65536`,
//! to one fixed destination address and port: up to 65536 x 64512 (4.2 G) distinct
//! 5-tuples from a /16. The mapping is invertible, so a reply names its flow.

use std::net::Ipv4Addr;

/// Source addresses per source port.
pub const HOSTS: u32 = 65536;
/// First source port.
pub const FIRST_PORT: u32 = 1024;
/// Largest flow count the numbering can address.
pub const MAX_FLOWS: u64 = HOSTS as u64 * (65536 - FIRST_PORT as u64);

/// The ranges this generator may send from and to: the benchmarking range 198.18.0.0/15
/// (RFC 2544) and the three documentation ranges (RFC 5737).
const ALLOWED: [(u32, u32); 4] = [
    (0xC612_0000, 15), // 198.18.0.0/15
    (0xC000_0200, 24), // 192.0.2.0/24
    (0xC633_6400, 24), // 198.51.100.0/24
    (0xCB00_7100, 24), // 203.0.113.0/24
];

/// Whether `a` is inside one of the ranges the generator may use.
pub fn allowed(a: Ipv4Addr) -> bool {
    let a = u32::from(a);
    ALLOWED
        .iter()
        .any(|&(net, len)| (a ^ net) >> (32 - len) == 0)
}

/// The addresses of flow number `i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuple {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
}

/// Flow numbering for one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flows {
    /// First source address (the /16 it starts is used).
    pub src_base: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub dport: u16,
    /// Number of flows; indexes wrap modulo this.
    pub count: u64,
}

impl Flows {
    /// Checks that every address the run can use is allowed: the /16 starting at
    /// `src_base` (only the first `count` hosts of it are used) and `dst`.
    pub fn new(src_base: Ipv4Addr, dst: Ipv4Addr, dport: u16, count: u64) -> Result<Self, String> {
        if count == 0 || count > MAX_FLOWS {
            return Err(format!("flows: {count} is outside 1..={MAX_FLOWS}"));
        }
        let hosts = u32::try_from(count.min(u64::from(HOSTS))).unwrap_or(HOSTS);
        let last = Ipv4Addr::from(u32::from(src_base).wrapping_add(hosts - 1));
        if u32::from(src_base).checked_add(hosts - 1).is_none()
            || !allowed(src_base)
            || !allowed(last)
        {
            return Err(format!(
                "source addresses {src_base}..{last} leave 198.18.0.0/15 and the documentation ranges"
            ));
        }
        if !allowed(dst) {
            return Err(format!(
                "destination {dst} is outside 198.18.0.0/15 and the documentation ranges"
            ));
        }
        Ok(Flows {
            src_base,
            dst,
            dport,
            count,
        })
    }

    /// The tuple of flow `i mod count`.
    pub fn tuple(&self, i: u64) -> Tuple {
        let (src, sport) = self.source(i % self.count);
        Tuple {
            src: Ipv4Addr::from(src),
            dst: self.dst,
            sport,
            dport: self.dport,
        }
    }

    /// The source address and port of flow `i`, which must be below `count` (what an
    /// [`order::Cursor`](crate::order::Cursor) yields): shifts, no division, per frame.
    #[inline]
    pub fn source(&self, i: u64) -> (u32, u16) {
        const _: () = assert!(HOSTS == 1 << 16);
        let host = u32::try_from(i & 0xffff).unwrap_or(0);
        let port = u32::try_from(i >> 16).unwrap_or(0) + FIRST_PORT;
        (
            u32::from(self.src_base).wrapping_add(host),
            u16::try_from(port).unwrap_or(u16::MAX),
        )
    }

    /// The flow number of a client address and port, if it is one of this run's flows.
    pub fn index(&self, src: Ipv4Addr, sport: u16) -> Option<u64> {
        let host = u32::from(src).wrapping_sub(u32::from(self.src_base));
        let port = u32::from(sport).checked_sub(FIRST_PORT)?;
        if host >= HOSTS {
            return None;
        }
        let i = u64::from(port) * u64::from(HOSTS) + u64::from(host);
        (i < self.count).then_some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flows(n: u64) -> Flows {
        Flows::new(
            Ipv4Addr::new(198, 18, 0, 0),
            Ipv4Addr::new(198, 19, 0, 1),
            9,
            n,
        )
        .unwrap()
    }

    #[test]
    fn tuples_are_distinct_and_invert() {
        let f = flows(200_000);
        let mut seen = std::collections::HashSet::new();
        for i in (0..200_000)
            .step_by(7)
            .chain([65535, 65536, 131_072, 199_999])
        {
            let t = f.tuple(i);
            assert!(seen.insert((t.src, t.sport)), "flow {i} repeats {t:?}");
            assert_eq!(f.index(t.src, t.sport), Some(i));
            assert!(allowed(t.src));
        }
        assert_eq!(f.tuple(65536).sport, 1025);
        assert_eq!(f.tuple(65536).src, Ipv4Addr::new(198, 18, 0, 0));
        assert_eq!(f.tuple(200_000), f.tuple(0), "indexes wrap");
    }

    #[test]
    fn foreign_addresses_have_no_index() {
        let f = flows(10);
        assert_eq!(
            f.index(Ipv4Addr::new(198, 18, 0, 10), 1024),
            None,
            "beyond count"
        );
        assert_eq!(
            f.index(Ipv4Addr::new(198, 18, 0, 1), 80),
            None,
            "port below range"
        );
        assert_eq!(f.index(Ipv4Addr::new(10, 0, 0, 1), 1024), None);
    }

    #[test]
    fn refuses_addresses_outside_the_allowed_ranges() {
        let d = Ipv4Addr::new(198, 19, 0, 1);
        assert!(Flows::new(Ipv4Addr::new(10, 254, 0, 0), d, 9, 1).is_err());
        assert!(
            Flows::new(
                Ipv4Addr::new(198, 18, 0, 0),
                Ipv4Addr::new(10, 253, 0, 1),
                9,
                1
            )
            .is_err()
        );
        // 198.19.255.0 + 65536 hosts runs past 198.19.255.255.
        assert!(Flows::new(Ipv4Addr::new(198, 19, 255, 0), d, 9, 100_000).is_err());
        assert!(Flows::new(Ipv4Addr::new(192, 0, 2, 0), d, 9, 256).is_ok());
        assert!(Flows::new(Ipv4Addr::new(192, 0, 2, 0), d, 9, 257).is_err());
        assert!(Flows::new(Ipv4Addr::new(198, 18, 0, 0), d, 9, 0).is_err());
    }
}
