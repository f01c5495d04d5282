//! Typed bit sets over DPDK's flag words: RX/TX offloads, RSS hash functions and mbuf TX
//! offload flags. The raw constants come from bindgen with mixed widths (`u32` for bits
//! below 32, `u64` above, `i64` for bit 63: the `RTE_BIT64` macros resolved through
//! `clang_macro_fallback`), so each is widened to `u64` here once.

macro_rules! flag_set {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$fmeta:meta])* $flag:ident = $value:expr, )* }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub struct $name(pub u64);

        #[allow(
            clippy::unnecessary_cast,
            reason = "bindgen gives these constants different widths; `as u64` unifies them"
        )]
        impl $name {
            $( $(#[$fmeta])* pub const $flag: $name = $name($value as u64); )*

            /// No flag set.
            pub const fn empty() -> Self {
                $name(0)
            }
            /// The raw DPDK bit word.
            pub const fn bits(self) -> u64 {
                self.0
            }
            /// Whether every flag of `other` is set in `self`.
            pub const fn contains(self, other: Self) -> bool {
                self.0 & other.0 == other.0
            }
            /// Whether no flag is set.
            pub const fn is_empty(self) -> bool {
                self.0 == 0
            }
            /// Flags of `self` that are not in `other`.
            pub const fn difference(self, other: Self) -> Self {
                $name(self.0 & !other.0)
            }
            /// Flags set in both.
            pub const fn intersection(self, other: Self) -> Self {
                $name(self.0 & other.0)
            }
        }

        impl std::ops::BitOr for $name {
            type Output = Self;
            fn bitor(self, rhs: Self) -> Self {
                $name(self.0 | rhs.0)
            }
        }

        impl std::ops::BitOrAssign for $name {
            fn bitor_assign(&mut self, rhs: Self) {
                self.0 |= rhs.0;
            }
        }

        impl std::ops::BitAnd for $name {
            type Output = Self;
            fn bitand(self, rhs: Self) -> Self {
                $name(self.0 & rhs.0)
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let mut rest = self.0;
                let mut first = true;
                write!(f, "{}(", stringify!($name))?;
                $(
                    #[allow(clippy::unnecessary_cast, reason = "mixed-width bindgen constants")]
                    let v = $value as u64;
                    if v != 0 && v.count_ones() == 1 && rest & v == v {
                        if !first { f.write_str(" | ")?; }
                        f.write_str(stringify!($flag))?;
                        first = false;
                        rest &= !v;
                    }
                )*
                if rest != 0 {
                    if !first { f.write_str(" | ")?; }
                    write!(f, "{rest:#x}")?;
                }
                f.write_str(")")
            }
        }
    };
}

use crate::ffi;

flag_set! {
    /// Port RX offloads (`RTE_ETH_RX_OFFLOAD_*`), as in `rte_eth_rxmode.offloads` and
    /// `rte_eth_dev_info.rx_offload_capa`.
    RxOffloads {
        /// Strip the VLAN tag.
        VLAN_STRIP = ffi::RTE_ETH_RX_OFFLOAD_VLAN_STRIP,
        /// Verify IPv4 header checksums (result in mbuf `ol_flags`).
        IPV4_CKSUM = ffi::RTE_ETH_RX_OFFLOAD_IPV4_CKSUM,
        /// Verify UDP checksums.
        UDP_CKSUM = ffi::RTE_ETH_RX_OFFLOAD_UDP_CKSUM,
        /// Verify TCP checksums.
        TCP_CKSUM = ffi::RTE_ETH_RX_OFFLOAD_TCP_CKSUM,
        /// Verify outer IPv4 checksums of tunnels.
        OUTER_IPV4_CKSUM = ffi::RTE_ETH_RX_OFFLOAD_OUTER_IPV4_CKSUM,
        /// Receive packets larger than one mbuf as chains.
        SCATTER = ffi::RTE_ETH_RX_OFFLOAD_SCATTER,
        /// Deliver the RSS hash in `mbuf.hash.rss` (RTE_MBUF_F_RX_RSS_HASH).
        RSS_HASH = ffi::RTE_ETH_RX_OFFLOAD_RSS_HASH,
    }
}

impl RxOffloads {
    /// IPv4, UDP and TCP checksum verification (`RTE_ETH_RX_OFFLOAD_CHECKSUM`).
    pub const CHECKSUM: RxOffloads = RxOffloads(ffi::RTE_ETH_RX_OFFLOAD_CHECKSUM as u64);
}

flag_set! {
    /// Port TX offloads (`RTE_ETH_TX_OFFLOAD_*`).
    TxOffloads {
        /// Insert a VLAN tag.
        VLAN_INSERT = ffi::RTE_ETH_TX_OFFLOAD_VLAN_INSERT,
        /// Compute IPv4 header checksums (per mbuf: [`TxFlags::IP_CKSUM`]).
        IPV4_CKSUM = ffi::RTE_ETH_TX_OFFLOAD_IPV4_CKSUM,
        /// Compute UDP checksums (per mbuf: [`TxFlags::UDP_CKSUM`]).
        UDP_CKSUM = ffi::RTE_ETH_TX_OFFLOAD_UDP_CKSUM,
        /// Compute TCP checksums (per mbuf: [`TxFlags::TCP_CKSUM`]).
        TCP_CKSUM = ffi::RTE_ETH_TX_OFFLOAD_TCP_CKSUM,
        /// Send mbuf chains.
        MULTI_SEGS = ffi::RTE_ETH_TX_OFFLOAD_MULTI_SEGS,
        /// All mbufs of a queue come from one pool and have refcnt 1.
        MBUF_FAST_FREE = ffi::RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE,
    }
}

flag_set! {
    /// RSS hash functions (`RTE_ETH_RSS_*`), as in `rte_eth_rss_conf.rss_hf` and
    /// `rte_eth_dev_info.flow_type_rss_offloads`.
    RssHf {
        /// IPv4 addresses, any packet.
        IPV4 = ffi::RTE_ETH_RSS_IPV4,
        /// Fragmented IPv4.
        FRAG_IPV4 = ffi::RTE_ETH_RSS_FRAG_IPV4,
        /// IPv4 TCP (addresses and ports).
        NONFRAG_IPV4_TCP = ffi::RTE_ETH_RSS_NONFRAG_IPV4_TCP,
        /// IPv4 UDP (addresses and ports).
        NONFRAG_IPV4_UDP = ffi::RTE_ETH_RSS_NONFRAG_IPV4_UDP,
        /// IPv4 SCTP.
        NONFRAG_IPV4_SCTP = ffi::RTE_ETH_RSS_NONFRAG_IPV4_SCTP,
        /// Other IPv4.
        NONFRAG_IPV4_OTHER = ffi::RTE_ETH_RSS_NONFRAG_IPV4_OTHER,
        /// IPv6 addresses, any packet.
        IPV6 = ffi::RTE_ETH_RSS_IPV6,
        /// Fragmented IPv6.
        FRAG_IPV6 = ffi::RTE_ETH_RSS_FRAG_IPV6,
        /// IPv6 TCP.
        NONFRAG_IPV6_TCP = ffi::RTE_ETH_RSS_NONFRAG_IPV6_TCP,
        /// IPv6 UDP.
        NONFRAG_IPV6_UDP = ffi::RTE_ETH_RSS_NONFRAG_IPV6_UDP,
        /// IPv6 SCTP.
        NONFRAG_IPV6_SCTP = ffi::RTE_ETH_RSS_NONFRAG_IPV6_SCTP,
        /// Other IPv6.
        NONFRAG_IPV6_OTHER = ffi::RTE_ETH_RSS_NONFRAG_IPV6_OTHER,
        /// IPv6 with extension headers.
        IPV6_EX = ffi::RTE_ETH_RSS_IPV6_EX,
        /// IPv6 TCP with extension headers.
        IPV6_TCP_EX = ffi::RTE_ETH_RSS_IPV6_TCP_EX,
        /// IPv6 UDP with extension headers.
        IPV6_UDP_EX = ffi::RTE_ETH_RSS_IPV6_UDP_EX,
        /// Hash on source address only (bit 63, an `i64` in the bindings).
        L3_SRC_ONLY = ffi::RTE_ETH_RSS_L3_SRC_ONLY,
        /// Hash on destination address only.
        L3_DST_ONLY = ffi::RTE_ETH_RSS_L3_DST_ONLY,
    }
}

impl RssHf {
    /// All IP flow types (`RTE_ETH_RSS_IP`).
    pub const IP: RssHf = RssHf(ffi::RTE_ETH_RSS_IP as u64);
    /// All TCP flow types (`RTE_ETH_RSS_TCP`).
    pub const TCP: RssHf = RssHf(ffi::RTE_ETH_RSS_TCP as u64);
    /// All UDP flow types (`RTE_ETH_RSS_UDP`).
    pub const UDP: RssHf = RssHf(ffi::RTE_ETH_RSS_UDP as u64);
}

flag_set! {
    /// Per-mbuf TX offload requests (`RTE_MBUF_F_TX_*` in `ol_flags`), set with
    /// [`Mbuf::set_tx_offload`](crate::Mbuf::set_tx_offload).
    TxFlags {
        /// The packet is IPv4 (required with `IP_CKSUM` and the L4 checksums).
        IPV4 = ffi::RTE_MBUF_F_TX_IPV4,
        /// The packet is IPv6.
        IPV6 = ffi::RTE_MBUF_F_TX_IPV6,
        /// Compute the IPv4 header checksum (the header's checksum field must be 0).
        IP_CKSUM = ffi::RTE_MBUF_F_TX_IP_CKSUM,
        /// Compute the TCP checksum (the field must hold the pseudo-header checksum).
        TCP_CKSUM = ffi::RTE_MBUF_F_TX_TCP_CKSUM,
        /// Compute the UDP checksum (the field must hold the pseudo-header checksum).
        UDP_CKSUM = ffi::RTE_MBUF_F_TX_UDP_CKSUM,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_are_unified() {
        assert_eq!(RssHf::L3_SRC_ONLY.bits(), 1 << 63);
        assert_eq!(RssHf::IPV4.bits(), 1 << 2);
        assert!(RssHf::IP.contains(RssHf::IPV4 | RssHf::IPV6));
        assert!(RssHf::TCP.contains(RssHf::NONFRAG_IPV4_TCP));
        assert_eq!(RxOffloads::RSS_HASH.bits(), 1 << 19);
        assert!(RxOffloads::CHECKSUM.contains(RxOffloads::TCP_CKSUM));
        assert_eq!(TxFlags::IPV4.bits(), 1 << 55);
    }

    #[test]
    fn set_operations_and_debug() {
        let want = RxOffloads::CHECKSUM | RxOffloads::RSS_HASH;
        let capa = RxOffloads::IPV4_CKSUM;
        assert_eq!(want.intersection(capa), RxOffloads::IPV4_CKSUM);
        assert_eq!(
            want.difference(capa),
            RxOffloads::UDP_CKSUM | RxOffloads::TCP_CKSUM | RxOffloads::RSS_HASH
        );
        assert_eq!(
            format!("{:?}", RxOffloads::IPV4_CKSUM | RxOffloads(1 << 40)),
            "RxOffloads(IPV4_CKSUM | 0x10000000000)"
        );
        assert_eq!(format!("{:?}", RxOffloads::empty()), "RxOffloads()");
    }
}
