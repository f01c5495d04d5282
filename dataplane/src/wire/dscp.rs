//! `ip dscp set` / `ip6 dscp set`: the DSCP (the top six bits of the IPv4 TOS byte or of
//! the IPv6 traffic class) rewritten in place, the ECN bits kept. IPv4's header checksum
//! is updated incrementally (RFC 1624, the word holding version, IHL and TOS); IPv6 has
//! none, and no transport checksum covers either field.

use super::checksum;
use super::{Family, IpInfo};

/// Writes DSCP `d` (0..=63) into the packet at `ip.l3_off`; false when the frame is too
/// short for its IP header (nothing written).
pub fn set_dscp(frame: &mut [u8], ip: &IpInfo, d: u8) -> bool {
    let l3 = usize::from(ip.l3_off);
    let Some(h) = frame.get_mut(l3..l3 + 12) else {
        return false;
    };
    let d = d & 0x3f;
    match ip.family {
        Family::V4 => {
            let old = u16::from_be_bytes([h[0], h[1]]);
            h[1] = (d << 2) | (h[1] & 0x03);
            let new = u16::from_be_bytes([h[0], h[1]]);
            let c = u16::from_be_bytes([h[10], h[11]]);
            h[10..12].copy_from_slice(&checksum::update16(c, old, new).to_be_bytes());
        }
        Family::V6 => {
            // Version (4 bits), traffic class (8: DSCP 6, ECN 2), flow label (20).
            h[0] = (h[0] & 0xf0) | (d >> 2);
            h[1] = ((d & 0x03) << 6) | (h[1] & 0x3f);
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::build::{EthSpec, Frame, IpSpec, L4Spec};
    use crate::wire::{Addr, Parsed, TRUST_ALL, parse};

    fn udp(src: Addr, dst: Addr, tos: u8) -> (Vec<u8>, IpInfo) {
        let ip = IpSpec {
            tos,
            id: 0xabcde,
            ..IpSpec::new(src, dst)
        };
        let l4 = L4Spec::Udp {
            sport: 1000,
            dport: 53,
            payload: b"dscp",
        };
        let f = Frame::ip(EthSpec::default(), ip, l4)
            .to_vec()
            .expect("frame");
        let Ok(Parsed::Ip(_, info)) = parse(&f, &TRUST_ALL) else {
            panic!("not parsed")
        };
        (f, info)
    }

    #[test]
    fn ipv4_keeps_ecn_and_a_valid_header_checksum() {
        for tos in [0x00, 0x03, 0xb8, 0xfd] {
            for d in [0, 1, 0x0a, 0x2e, 0x3f] {
                let (mut f, ip) = udp(
                    Addr::from_v4([198, 18, 1, 2]),
                    Addr::from_v4([198, 18, 2, 2]),
                    tos,
                );
                assert!(set_dscp(&mut f, &ip, d));
                let (want, _) = udp(
                    Addr::from_v4([198, 18, 1, 2]),
                    Addr::from_v4([198, 18, 2, 2]),
                    (d << 2) | (tos & 3),
                );
                // The same bytes as a packet built with that TOS (checksum included).
                assert_eq!(f, want, "tos {tos:#x} dscp {d:#x}");
                assert!(checksum::verify(checksum::sum(&f[14..34])));
            }
        }
    }

    #[test]
    fn ipv6_keeps_version_ecn_and_flow_label() {
        for tc in [0x00, 0x03, 0xb8, 0xfe] {
            for d in [0, 1, 0x0a, 0x2e, 0x3f] {
                let src = Addr(*b"\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01");
                let dst = Addr(*b"\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x02");
                let (mut f, ip) = udp(src, dst, tc);
                assert!(set_dscp(&mut f, &ip, d));
                let (want, _) = udp(src, dst, (d << 2) | (tc & 3));
                assert_eq!(f, want, "tc {tc:#x} dscp {d:#x}");
            }
        }
    }

    #[test]
    fn a_short_frame_is_left_alone() {
        let (f, ip) = udp(
            Addr::from_v4([198, 18, 1, 2]),
            Addr::from_v4([198, 18, 2, 2]),
            0,
        );
        let mut short = f[..20].to_vec();
        assert!(!set_dscp(&mut short, &ip, 0x2e));
        assert_eq!(short, f[..20]);
    }
}
