//! The parse summary types: the contract between the parser and its consumers
//! (conntrack, rules, NAT, routing). A leaf of `wire`: the protocol files and the parser
//! import these, never the facade. See `docs/wire.md` for the decisions behind them.

/// An IP address in a fixed 16-byte form: IPv6 as is, IPv4 as an IPv4-mapped IPv6 address
/// (`::ffff:a.b.c.d`, RFC 4291 §2.5.5.2). One representation keeps flow keys a single
/// fixed-size type for both families; [`Family`] says which one a key holds.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Addr(pub [u8; 16]);

impl Addr {
    /// The IPv4-mapped form of `a.b.c.d`.
    pub const fn from_v4(octets: [u8; 4]) -> Self {
        let [a, b, c, d] = octets;
        Addr([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d])
    }

    /// An IPv6 address.
    pub const fn from_v6(octets: [u8; 16]) -> Self {
        Addr(octets)
    }

    /// The IPv4 octets if this is an IPv4-mapped address.
    pub fn to_v4(self) -> Option<[u8; 4]> {
        let o = self.0;
        if o[..10].iter().all(|&b| b == 0) && o[10] == 0xff && o[11] == 0xff {
            Some([o[12], o[13], o[14], o[15]])
        } else {
            None
        }
    }

    /// The address as a `std::net::IpAddr` (IPv4 when mapped).
    pub fn to_ip(self) -> std::net::IpAddr {
        match self.to_v4() {
            Some(v4) => std::net::IpAddr::from(v4),
            None => std::net::IpAddr::from(self.0),
        }
    }
}

impl From<std::net::IpAddr> for Addr {
    fn from(ip: std::net::IpAddr) -> Self {
        match ip {
            std::net::IpAddr::V4(v4) => Addr::from_v4(v4.octets()),
            std::net::IpAddr::V6(v6) => Addr::from_v6(v6.octets()),
        }
    }
}

impl std::fmt::Debug for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.to_ip(), f)
    }
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.to_ip(), f)
    }
}

/// Address family of a packet or flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Family {
    /// IPv4 (`nfproto` 2, `ip` tables).
    V4 = 4,
    /// IPv6 (`nfproto` 10, `ip6` tables).
    V6 = 6,
}

/// IP protocol numbers the appliance knows by name (IANA "Assigned Internet Protocol
/// Numbers").
pub mod proto {
    /// ICMP (IPv4).
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// GRE (tracked by the generic tracker).
    pub const GRE: u8 = 47;
    /// SCTP (tracked by the generic tracker).
    pub const SCTP: u8 = 132;
}

/// TCP flags as they appear in byte 13 of the TCP header (FIN = 0x01 … CWR = 0x80).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;

    /// Whether every flag in `mask` is set.
    pub const fn contains(self, mask: u8) -> bool {
        self.0 & mask == mask
    }
}

impl std::fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const NAMES: [&str; 8] = ["fin", "syn", "rst", "psh", "ack", "urg", "ecn", "cwr"];
        let mut first = true;
        for (bit, name) in NAMES.iter().enumerate() {
            if self.0 & (1 << bit) != 0 {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

/// What conntrack and the rules need from a TCP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpInfo {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    /// Raw (unscaled) window field.
    pub window: u16,
    /// Bytes of TCP payload (IP payload minus the TCP header with options).
    pub payload_len: u16,
    /// Window-scale option (RFC 7323), if present (only meaningful on SYN).
    pub wscale: Option<u8>,
    /// SACK-permitted option present (RFC 2018).
    pub sack_perm: bool,
    /// MSS option, if present.
    pub mss: Option<u16>,
}

/// The transport-layer tuple of the original datagram embedded in an ICMP/ICMPv6 error
/// (RFC 792 / RFC 4443: the IP header plus at least the first 8 bytes of its payload).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InnerTuple {
    pub src: Addr,
    pub dst: Addr,
    /// Final protocol of the embedded packet (after IPv6 extension headers).
    pub proto: u8,
    /// Ports for TCP/UDP; for embedded ICMP echo, `sport` = `dport` = identifier.
    pub sport: u16,
    pub dport: u16,
    /// For an embedded ICMP/ICMPv6 message: its type (0 otherwise).
    pub icmp_type: u8,
    /// Offset of the embedded IP header from the start of the frame (for NAT rewrite).
    pub l3_off: u16,
    /// Offset of the embedded L4 header from the start of the frame.
    pub l4_off: u16,
}

/// The layer-4 part of the summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4Info {
    Tcp(TcpInfo),
    Udp {
        sport: u16,
        dport: u16,
    },
    /// ICMP echo request/reply (type 8/0) or ICMPv6 echo request/reply (128/129).
    IcmpEcho {
        request: bool,
        id: u16,
        seq: u16,
    },
    /// ICMP/ICMPv6 error carrying an embedded datagram (destination unreachable, time
    /// exceeded, parameter problem, packet too big; ICMP source quench/redirect too).
    IcmpError {
        icmp_type: u8,
        code: u8,
        inner: InnerTuple,
    },
    /// Any other ICMP/ICMPv6 message (neighbour discovery, router advertisements, …).
    IcmpOther {
        icmp_type: u8,
        code: u8,
    },
    /// A protocol without ports (GRE, SCTP, ESP, …), tracked by the generic tracker.
    Other,
}

/// Fragmentation state of an IP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Fragment {
    /// Not a fragment.
    #[default]
    None,
    /// First fragment (offset 0, more-fragments set): the L4 header is present.
    First,
    /// A later fragment: there is no L4 header.
    Later,
}

/// Summary of an IPv4 or IPv6 packet. All offsets are from the start of the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpInfo {
    pub family: Family,
    pub src: Addr,
    pub dst: Addr,
    /// Final protocol (IPv6: after the extension-header chain).
    pub proto: u8,
    /// TTL or hop limit.
    pub ttl: u8,
    /// Offset of the IP header.
    pub l3_off: u16,
    /// Offset of the L4 header (after IPv4 options / IPv6 extension headers).
    pub l4_off: u16,
    /// Bytes from `l3_off` to the end of the IP packet (total length; excludes L2 padding).
    pub ip_len: u16,
    pub frag: Fragment,
    /// `None` for a later fragment (no L4 header to read).
    pub l4: Option<L4Info>,
}

/// Summary of an Ethernet/IPv4 ARP packet (RFC 826).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpInfo {
    /// 1 = request, 2 = reply.
    pub operation: u16,
    pub sender_mac: [u8; 6],
    pub sender_ip: [u8; 4],
    pub target_mac: [u8; 6],
    pub target_ip: [u8; 4],
}

/// Layer 2 facts every parsed frame has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L2Info {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    /// VLAN ID of the 802.1Q tag, if the frame had one.
    pub vlan: Option<u16>,
    /// EtherType after any VLAN tag.
    pub ethertype: u16,
    /// Offset of the L3 header (14, or 18 with a VLAN tag).
    pub l3_off: u16,
}

/// A parsed frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    Ip(L2Info, IpInfo),
    Arp(L2Info, ArpInfo),
}
