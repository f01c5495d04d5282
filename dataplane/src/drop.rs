//! Why a packet was dropped: one enum, declared once, with a stable counter name per
//! variant (the VPP `foreach_*_error` idea). Per-worker counters are a
//! `[u64; DropReason::COUNT]` indexed by `reason as usize`; the control socket and the
//! Prometheus exporter use [`DropReason::name`] as the label value.

macro_rules! drop_reasons {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, )*) => {
        /// A reason to drop a packet. `#[repr(u8)]` so it indexes counter arrays.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum DropReason {
            $( $(#[$doc])* $variant, )*
        }

        impl DropReason {
            /// Every reason, in declaration order (`ALL[r as usize] == r`).
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];
            /// Number of reasons: the length of a per-worker counter array.
            pub const COUNT: usize = Self::ALL.len();

            /// The stable counter name (snake case), used in stats and metric labels.
            pub const fn name(self) -> &'static str {
                match self { $(DropReason::$variant => $name,)* }
            }

            /// Looks a reason up by its counter name.
            pub fn from_name(name: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|r| r.name() == name)
            }
        }
    };
}

// Parse-stage reasons come first; later stages append theirs. Never reorder or rename:
// names are part of the metrics and API contract.
drop_reasons! {
    /// Frame shorter than the header it claims to carry (any layer).
    Truncated = "truncated",
    /// EtherType the appliance does not handle (not IPv4, IPv6, ARP or 802.1Q).
    UnsupportedEthertype = "unsupported_ethertype",
    /// More than one VLAN tag (QinQ) or a tag on a port that does not expect one.
    BadVlan = "bad_vlan",
    /// IPv4 version field is not 4, or IPv6 version field is not 6.
    BadIpVersion = "bad_ip_version",
    /// IPv4 IHL below 5 or beyond the packet.
    BadIhl = "bad_ihl",
    /// IP total/payload length disagrees with the frame.
    BadIpLength = "bad_ip_length",
    /// IPv4 header checksum wrong.
    BadIpChecksum = "bad_ip_checksum",
    /// Malformed IPv4 options or IPv6 extension header chain.
    BadIpOptions = "bad_ip_options",
    /// Source address that can never be a source (multicast, broadcast, loopback on the
    /// wire, unspecified where not allowed).
    BadSourceAddress = "bad_source_address",
    /// IP fragment: reassembly is not done, non-first fragments have no L4 header.
    Fragment = "fragment",
    /// TCP data offset below 5 or beyond the packet, or malformed options.
    BadTcpHeader = "bad_tcp_header",
    /// L4 checksum wrong (TCP, UDP, ICMP, ICMPv6), where verified.
    BadL4Checksum = "bad_l4_checksum",
    /// UDP length field disagrees with the IP payload.
    BadUdpLength = "bad_udp_length",
    /// ICMP/ICMPv6 header malformed (e.g. an error without an embedded header).
    BadIcmp = "bad_icmp",
    /// ARP packet that is not Ethernet/IPv4 or is malformed.
    BadArp = "bad_arp",
    /// NAT found no free port (or tuple) for a new connection whose reply hashes back to
    /// the allocating worker; the connection is refused.
    NatPortExhausted = "nat_port_exhausted",
    /// NAT had no usable address: masquerade/redirect on an interface without one, or a
    /// NAT range of the other address family.
    NatNoAddress = "nat_no_address",
    // Pipeline (routing and local delivery) reasons.
    /// No route to the destination (an ICMP net unreachable is sent where allowed).
    NoRoute = "no_route",
    /// TTL / hop limit would reach 0 (an ICMP time exceeded is sent where allowed).
    TtlExceeded = "ttl_exceeded",
    /// Addressed to the appliance, accepted by `input`, but nothing listens there.
    LocalNoSocket = "local_no_socket",
    /// A blackhole route matched.
    Blackhole = "blackhole",
    /// Larger than the egress MTU with DF set / IPv6 (ICMP packet too big is sent).
    PacketTooBig = "packet_too_big",
    /// Unicast frame for another MAC address (promiscuous port).
    OtherHost = "other_host",
    /// Multicast or broadcast IP destination the appliance does not handle.
    Multicast = "multicast",
    /// Next hop could not be resolved (ARP/ND failed, queue full or cache full).
    NeighborUnresolved = "neighbor_unresolved",
    /// A filter chain (`input`, `forward`) decided `drop` (or its policy did).
    FilterDrop = "filter_drop",
    /// A filter chain decided `reject` (a TCP reset or ICMP error is sent where allowed).
    Rejected = "rejected",
    /// A new connection could not be tracked (table full, tuple clash, tracker refused).
    CtInsertFailed = "ct_insert_failed",
    /// The port's TX queue refused the frame (`tx_burst` took fewer; the mbuf is freed).
    TxRefused = "tx_refused",
    /// IPv4 loose or strict source route option (LSRR, SSRR): dropped whatever its
    /// destination, as Linux does with `accept_source_route = 0` (its default).
    SourceRoute = "source_route",
    // IP reassembly (`frag`): the finer reason of each is a `frag::FragDrop` counter.
    /// A fragment refused for what it is: overlapping, duplicate, malformed, oversize, or
    /// beyond what a reassembly queue holds (and held fragments of a datagram such a
    /// fragment killed).
    FragInvalid = "frag_invalid",
    /// A fragment dropped for lack of resources: the memory budget, or held by a datagram
    /// that timed out (`ipfrag_time`) or was evicted.
    FragDiscarded = "frag_discarded",
    // Connection helpers (`helper`, docs/helpers.md).
    /// A helper's announcement line did not end inside its segment (Linux's FTP helper
    /// drops such a "partial" line: the sender retransmits it whole).
    HelperPartial = "helper_partial",
    /// A helper could not add its expectation: `nf_conntrack_expect_max` reached (Linux's
    /// helpers drop the announcing packet).
    HelperExpectFull = "helper_expect_full",
    /// FTP NAT could not rewrite an announcement (Linux: "cannot mangle packet"): the
    /// rewritten segment does not fit the buffer or the output MTU, its datagram was
    /// reassembled from fragments and would change length, every sequence-adjustment
    /// record is in use, a grown segment waits for its next hop's address, or its TCP
    /// options are malformed for the sequence adjustment.
    HelperMangle = "helper_mangle",
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_round_trip() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
            assert_eq!(DropReason::from_name(r.name()), Some(*r));
        }
        assert_eq!(DropReason::from_name("no_such_reason"), None);
    }
}
