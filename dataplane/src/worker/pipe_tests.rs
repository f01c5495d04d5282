//! Tests of the pipeline (routing, local replies) and the slow path (ARP / ND, queued
//! packets), on frames built by `wire::build` (`Pkt` is a thin wrapper: no padding, the
//! router's IP header fields) and checksums verified by an independent naive
//! implementation.

#![allow(clippy::cast_possible_truncation)] // test data generators

use std::sync::Arc;

use super::pipeline::{Pipeline, PipelineConfig, PortInfo};
use super::slowpath::{SlowOut, SlowPath};
use super::{Action, SCRATCH_LEN};
use crate::DropReason;
use crate::conntrack::Tunables;
use crate::route::{
    Mac, NeighConfig, NeighborCache, NeighborSnapshot, Prefix, RouteTable, RouteTableBuilder,
};
use crate::wire::build::{EthSpec, Frame, IcmpErrorKind, IpSpec, L4Spec, TcpSpec};
use crate::wire::eth::HEADER_LEN as ETH_LEN;
use crate::wire::{Addr, Family, TcpFlags, proto};

pub(super) const LAN_MAC: Mac = [2, 0, 0, 0, 0, 1];
pub(super) const WAN_MAC: Mac = [2, 0, 0, 0, 0, 2];
pub(super) const HOST_MAC: Mac = [2, 0, 0, 0, 1, 10];
pub(super) const GW1_MAC: Mac = [2, 0, 0, 0, 2, 254];
pub(super) const GW2_MAC: Mac = [2, 0, 0, 0, 2, 253];

pub(super) fn v4(a: [u8; 4]) -> Addr {
    Addr::from_v4(a)
}

fn v6(s: &str) -> Addr {
    Addr::from(s.parse::<std::net::IpAddr>().unwrap())
}

pub(super) fn routes() -> Arc<RouteTable> {
    let mut b = RouteTableBuilder::new();
    b.port_address(0, v4([198, 18, 0, 1]), 24).unwrap();
    b.port_address(1, v4([198, 19, 0, 1]), 24).unwrap();
    b.port_address(0, v6("2001:db8:1::1"), 64).unwrap();
    b.port_address(1, v6("2001:db8:2::1"), 64).unwrap();
    let p: Prefix = "203.0.113.0/24".parse().unwrap();
    b.static_route(p, v4([198, 19, 0, 254]), None).unwrap();
    let p: Prefix = "203.0.113.128/25".parse().unwrap();
    b.static_route(p, v4([198, 19, 0, 253]), None).unwrap();
    let p: Prefix = "2001:db8:99::/48".parse().unwrap();
    b.static_route(p, v6("2001:db8:2::fe"), None).unwrap();
    Arc::new(b.build())
}

pub(super) fn ports() -> Vec<PortInfo> {
    vec![
        PortInfo {
            mac: LAN_MAC,
            mtu: 1500,
            hw_rss: true,
        },
        PortInfo {
            mac: WAN_MAC,
            mtu: 1500,
            hw_rss: true,
        },
    ]
}

pub(super) fn config() -> PipelineConfig {
    PipelineConfig {
        ports: ports(),
        ct_capacity: 1024,
        tunables: Tunables::default(),
        owner: None,
        ct_seed: Some(0x5eed),
        expect: None,
        nat_node: Default::default(),
    }
}

pub(super) fn neighbors() -> Arc<NeighborSnapshot> {
    let mut c: NeighborCache<()> = NeighborCache::new(NeighConfig::default());
    c.add_static(0, v4([198, 18, 0, 10]), HOST_MAC);
    c.add_static(1, v4([198, 19, 0, 254]), GW1_MAC);
    c.add_static(1, v4([198, 19, 0, 253]), GW2_MAC);
    c.add_static(1, v6("2001:db8:2::fe"), GW1_MAC);
    Arc::new(c.snapshot_if_changed().unwrap())
}

fn pipeline() -> Pipeline {
    Pipeline::new(0, 1, &config(), routes(), neighbors(), None)
}

/// Naive Internet checksum (RFC 1071), written independently of `pipe_build`.
fn naive_sum(parts: &[&[u8]]) -> u16 {
    let mut bytes = Vec::new();
    for p in parts {
        bytes.extend_from_slice(p);
        if bytes.len() % 2 == 1 && !std::ptr::eq(*p, *parts.last().unwrap()) {
            bytes.push(0);
        }
    }
    let mut s: u64 = 0;
    for (i, b) in bytes.iter().enumerate() {
        s += if i % 2 == 0 {
            u64::from(*b) << 8
        } else {
            u64::from(*b)
        };
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// Asserts the IP header checksum (IPv4) and the L4 checksum of the IP packet at `l3`.
pub(super) fn assert_checksums(f: &[u8], l3: usize) {
    let (family, hl, p, src, dst) = if f[l3] >> 4 == 4 {
        let hl = usize::from(f[l3] & 15) * 4;
        assert_eq!(
            naive_sum(&[&f[l3..l3 + hl]]),
            0xffff,
            "ipv4 header checksum"
        );
        (
            Family::V4,
            hl,
            f[l3 + 9],
            &f[l3 + 12..l3 + 16],
            &f[l3 + 16..l3 + 20],
        )
    } else {
        (
            Family::V6,
            40,
            f[l3 + 6],
            &f[l3 + 8..l3 + 24],
            &f[l3 + 24..l3 + 40],
        )
    };
    let total = match family {
        Family::V4 => usize::from(u16::from_be_bytes([f[l3 + 2], f[l3 + 3]])),
        Family::V6 => 40 + usize::from(u16::from_be_bytes([f[l3 + 4], f[l3 + 5]])),
    };
    let seg = &f[l3 + hl..l3 + total];
    let sum = if p == proto::ICMP {
        naive_sum(&[seg])
    } else {
        let len = u32::try_from(seg.len()).unwrap().to_be_bytes();
        let pseudo = [0, p];
        naive_sum(&[src, dst, &len, &pseudo, seg])
    };
    assert_eq!(sum, 0xffff, "l4 checksum of proto {p}");
}

pub(super) struct Pkt {
    pub(super) family: Family,
    pub(super) src: Addr,
    pub(super) dst: Addr,
    pub(super) ttl: u8,
    pub(super) dst_mac: Mac,
    pub(super) src_mac: Mac,
}

impl Pkt {
    pub(super) fn v4(src: [u8; 4], dst: [u8; 4]) -> Self {
        Pkt {
            family: Family::V4,
            src: v4(src),
            dst: v4(dst),
            ttl: 64,
            dst_mac: LAN_MAC,
            src_mac: HOST_MAC,
        }
    }
    pub(super) fn v6(src: &str, dst: &str) -> Self {
        Pkt {
            family: Family::V6,
            src: v6(src),
            dst: v6(dst),
            ttl: 64,
            dst_mac: LAN_MAC,
            src_mac: HOST_MAC,
        }
    }
    pub(super) fn ttl(mut self, t: u8) -> Self {
        self.ttl = t;
        self
    }
    pub(super) fn dst_mac(mut self, m: Mac) -> Self {
        self.dst_mac = m;
        self
    }

    /// The frame carrying `l4`, built by `wire::build` as the router builds its own: id 0,
    /// no DF, TOS 0, not padded.
    pub(super) fn frame(&self, l4: L4Spec<'_>) -> Vec<u8> {
        let ip = IpSpec {
            ttl: self.ttl,
            dont_frag: false,
            family: Some(self.family),
            ..IpSpec::new(self.src, self.dst)
        };
        let eth = EthSpec {
            src: self.src_mac,
            dst: self.dst_mac,
            vlan: None,
        };
        Frame::ip(eth, ip, l4)
            .padded(false)
            .to_vec()
            .expect("test frame")
    }

    /// A datagram with `payload` bytes 0, 1, 2, ...
    pub(super) fn udp(&self, sport: u16, dport: u16, payload: usize) -> Vec<u8> {
        let data: Vec<u8> = (0..payload).map(|i| i as u8).collect();
        self.frame(L4Spec::Udp {
            sport,
            dport,
            payload: &data,
        })
    }

    pub(super) fn tcp(&self, sport: u16, dport: u16, flags: u8, seq: u32, ack: u32) -> Vec<u8> {
        self.tcp_data(sport, dport, flags, seq, ack, &[])
    }

    /// A TCP segment carrying `payload` (window 65535, no options).
    pub(super) fn tcp_data(
        &self,
        sport: u16,
        dport: u16,
        flags: u8,
        seq: u32,
        ack: u32,
        payload: &[u8],
    ) -> Vec<u8> {
        self.frame(L4Spec::Tcp(TcpSpec {
            sport,
            dport,
            seq,
            ack,
            flags: TcpFlags(flags),
            window: 65535,
            payload,
            ..TcpSpec::default()
        }))
    }

    /// An echo request with 24 bytes of 0xab.
    fn echo(&self, id: u16, seq: u16) -> Vec<u8> {
        self.frame(L4Spec::IcmpEcho {
            request: true,
            id,
            seq,
            payload: &[0xab; 24],
        })
    }
}

/// What two twin pipelines (same traffic, one variation) must agree on beyond their worker
/// counters: `conntrack -S`, `conntrack -L` and the rule counters of their publishers
/// (`pubs[0]` feeds `a`, `pubs[1]` feeds `b`).
pub(super) fn assert_same_tables(
    a: &mut Pipeline,
    b: &mut Pipeline,
    pubs: &[crate::rules::Publisher; 2],
) {
    assert_eq!(a.conntrack().stats(), b.conntrack().stats(), "conntrack -S");
    let list = |p: &mut Pipeline| match p.command(super::WorkerCommand::CtList {
        filter: crate::conntrack::CtMatcher::default(),
        cursor: 0,
        limit: 100_000,
    }) {
        super::WorkerReply::CtPage {
            entries,
            next_cursor,
        } => (
            entries.iter().map(|s| s.to_ct_entry(0)).collect::<Vec<_>>(),
            next_cursor,
        ),
        other => panic!("{other:?}"),
    };
    assert_eq!(list(a), list(b), "conntrack -L");
    assert_eq!(
        pubs[0].current().counters(),
        pubs[1].current().counters(),
        "rule counters"
    );
}

pub(super) fn run(p: &mut Pipeline, port: u16, frame: &mut [u8], scratch: &mut [u8]) -> Action {
    p.process(port, frame, 1_000, scratch)
}

#[test]
fn lpm_picks_longest_prefix_and_rewrites_l2_and_ttl() {
    let mut p = pipeline();
    let mut s = vec![0u8; SCRATCH_LEN];
    for (dst, gw) in [([203, 0, 113, 5], GW1_MAC), ([203, 0, 113, 200], GW2_MAC)] {
        let mut f = Pkt::v4([198, 18, 0, 10], dst).udp(1000, 53, 10);
        let orig = f.clone();
        let a = run(&mut p, 0, &mut f, &mut s);
        assert_eq!(
            a,
            Action::Forward {
                port: 1,
                len: u16::try_from(f.len()).unwrap()
            }
        );
        assert_eq!(
            &f[0..6],
            &gw,
            "destination MAC from the next hop of the longest prefix"
        );
        assert_eq!(&f[6..12], &WAN_MAC);
        assert_eq!(f[ETH_LEN + 8], 63, "ttl decremented");
        assert_checksums(&f, ETH_LEN);
        assert_eq!(f[ETH_LEN + 20..], orig[ETH_LEN + 20..], "payload untouched");
    }
    // IPv6 through a static route: hop limit decremented, no IP checksum to fix.
    let mut f = Pkt::v6("2001:db8:1::10", "2001:db8:99::5").udp(1000, 53, 3);
    assert_eq!(
        run(&mut p, 0, &mut f, &mut s),
        Action::Forward {
            port: 1,
            len: u16::try_from(f.len()).unwrap()
        }
    );
    assert_eq!(f[ETH_LEN + 7], 63);
    assert_eq!(&f[0..6], &GW1_MAC);
    assert_checksums(&f, ETH_LEN);
    assert_eq!(p.counters().proc.forwarded, 3);
}

#[test]
fn ttl_expiry_sends_time_exceeded_quoting_the_packet() {
    let mut p = pipeline();
    let mut s = vec![0u8; SCRATCH_LEN];
    let mut f = Pkt::v4([198, 18, 0, 10], [203, 0, 113, 5])
        .ttl(1)
        .udp(1000, 53, 600);
    let orig = f.clone();
    let Action::Reply { port, len } = run(&mut p, 0, &mut f, &mut s) else {
        panic!("no reply")
    };
    assert_eq!(port, 0);
    let r = &s[..usize::from(len)];
    assert_eq!(&r[0..6], &HOST_MAC, "back to the hop that delivered it");
    assert_eq!(&r[6..12], &LAN_MAC);
    assert_eq!(
        &r[ETH_LEN + 12..ETH_LEN + 16],
        &[198, 18, 0, 1],
        "from the lan address"
    );
    assert_eq!(&r[ETH_LEN + 16..ETH_LEN + 20], &[198, 18, 0, 10]);
    assert_eq!(r[ETH_LEN + 9], proto::ICMP);
    assert_eq!((r[ETH_LEN + 20], r[ETH_LEN + 21]), (11, 0));
    // 576-byte limit: 20 + 8 + 548 quoted bytes of the original IP packet.
    assert_eq!(usize::from(len), ETH_LEN + 576);
    assert_eq!(&r[ETH_LEN + 28..], &orig[ETH_LEN..ETH_LEN + 548]);
    assert_checksums(r, ETH_LEN);
    assert_eq!(p.counters().drop_count(DropReason::TtlExceeded), 1);
    assert_eq!(p.counters().proc.icmp_errors, 1);

    // IPv6: hop limit 1 → ICMPv6 time exceeded (3/0), whole packet quoted (< 1280).
    let mut f = Pkt::v6("2001:db8:1::10", "2001:db8:99::5")
        .ttl(1)
        .udp(1000, 53, 20);
    let orig = f.clone();
    let Action::Reply { len, .. } = run(&mut p, 0, &mut f, &mut s) else {
        panic!("no reply")
    };
    let r = &s[..usize::from(len)];
    assert_eq!((r[ETH_LEN + 40], r[ETH_LEN + 41]), (3, 0));
    assert_eq!(&r[ETH_LEN + 48..], &orig[ETH_LEN..]);
    assert_eq!(&r[ETH_LEN + 8..ETH_LEN + 24], &v6("2001:db8:1::1").0);
    assert_checksums(r, ETH_LEN);
}

#[test]
fn no_route_answers_net_unreachable_but_never_about_an_icmp_error() {
    let mut p = pipeline();
    let mut s = vec![0u8; SCRATCH_LEN];
    let mut f = Pkt::v4([198, 18, 0, 10], [192, 0, 2, 1]).tcp(4000, 80, 0x02, 1, 0);
    let Action::Reply { port: 0, len } = run(&mut p, 0, &mut f, &mut s) else {
        panic!("no reply")
    };
    let r = s[..usize::from(len)].to_vec();
    assert_eq!((r[ETH_LEN + 20], r[ETH_LEN + 21]), (3, 0));
    assert_checksums(&r, ETH_LEN);
    let mut f6 = Pkt::v6("2001:db8:1::10", "2001:db8:77::1").udp(1, 2, 0);
    let Action::Reply { len, .. } = run(&mut p, 0, &mut f6, &mut s) else {
        panic!("no reply")
    };
    assert_eq!((s[ETH_LEN + 40], s[ETH_LEN + 41]), (1, 0));
    assert_checksums(&s[..usize::from(len)], ETH_LEN);
    // The ICMP error we just built, sent to an unroutable place, is not answered.
    let mut err = r.clone();
    err[0..6].copy_from_slice(&LAN_MAC);
    err[ETH_LEN + 16..ETH_LEN + 20].copy_from_slice(&[192, 0, 2, 9]);
    err[ETH_LEN + 12..ETH_LEN + 16].copy_from_slice(&[198, 18, 0, 10]);
    err[ETH_LEN + 10..ETH_LEN + 12].fill(0);
    let c = super::pipe_build::checksum(&err[ETH_LEN..ETH_LEN + 20], 0);
    err[ETH_LEN + 10..ETH_LEN + 12].copy_from_slice(&c.to_be_bytes());
    assert_eq!(
        run(&mut p, 0, &mut err, &mut s),
        Action::Drop(DropReason::NoRoute)
    );
    assert_eq!(p.counters().drop_count(DropReason::NoRoute), 3);
    assert_eq!(p.counters().proc.icmp_errors, 2);
}

#[test]
fn echo_requests_to_own_addresses_are_answered_in_place() {
    let mut p = pipeline();
    let mut s = vec![0u8; SCRATCH_LEN];
    let mut f = Pkt::v4([198, 18, 0, 10], [198, 18, 0, 1]).echo(7, 1);
    let a = run(&mut p, 0, &mut f, &mut s);
    assert_eq!(
        a,
        Action::Forward {
            port: 0,
            len: u16::try_from(f.len()).unwrap()
        }
    );
    assert_eq!(&f[0..6], &HOST_MAC);
    assert_eq!(&f[6..12], &LAN_MAC);
    assert_eq!(&f[ETH_LEN + 12..ETH_LEN + 16], &[198, 18, 0, 1]);
    assert_eq!(&f[ETH_LEN + 16..ETH_LEN + 20], &[198, 18, 0, 10]);
    assert_eq!(f[ETH_LEN + 20], 0, "echo reply");
    assert_eq!(
        &f[ETH_LEN + 24..ETH_LEN + 28],
        &[0, 7, 0, 1],
        "id and sequence kept"
    );
    assert_checksums(&f, ETH_LEN);
    // The wan address answers from the lan side too (it is ours), out of the lan port.
    let mut f = Pkt::v4([198, 18, 0, 10], [198, 19, 0, 1]).echo(7, 2);
    assert!(matches!(
        run(&mut p, 0, &mut f, &mut s),
        Action::Forward { port: 0, .. }
    ));
    let mut f = Pkt::v6("2001:db8:1::10", "2001:db8:1::1").echo(9, 3);
    assert!(matches!(
        run(&mut p, 0, &mut f, &mut s),
        Action::Forward { port: 0, .. }
    ));
    assert_eq!(f[ETH_LEN + 40], 129);
    assert_eq!(&f[ETH_LEN + 24..ETH_LEN + 40], &v6("2001:db8:1::10").0);
    assert_checksums(&f, ETH_LEN);
    assert_eq!(p.counters().proc.echo_replies, 3);
}

#[test]
fn other_local_traffic_is_a_counted_drop() {
    let mut p = pipeline();
    let mut s = vec![0u8; SCRATCH_LEN];
    let mut f = Pkt::v4([198, 18, 0, 10], [198, 18, 0, 1]).udp(5000, 9999, 4);
    assert_eq!(
        run(&mut p, 0, &mut f, &mut s),
        Action::Drop(DropReason::LocalNoSocket)
    );
    let mut f = Pkt::v4([198, 18, 0, 10], [198, 18, 0, 1]).tcp(5000, 22, 0x02, 1, 0);
    assert_eq!(
        run(&mut p, 0, &mut f, &mut s),
        Action::Drop(DropReason::LocalNoSocket)
    );
    assert_eq!(p.counters().drop_count(DropReason::LocalNoSocket), 2);
}

#[test]
fn unresolved_next_hop_goes_to_the_slow_path_ready_to_send() {
    let mut p = pipeline();
    let mut s = vec![0u8; SCRATCH_LEN];
    let mut f = Pkt::v4([198, 18, 0, 10], [198, 19, 0, 77]).udp(1, 2, 0);
    assert_eq!(run(&mut p, 0, &mut f, &mut s), Action::SlowPath);
    assert_eq!(f[ETH_LEN + 8], 63, "already routed: ttl decremented");
    assert_eq!(&f[6..12], &WAN_MAC);
    assert_checksums(&f, ETH_LEN);
    assert_eq!(p.counters().proc.slow_path, 1);
}

#[test]
fn l2_checks_and_bad_frames_are_counted_drops() {
    let mut p = pipeline();
    let mut s = vec![0u8; SCRATCH_LEN];
    let mut f = Pkt::v4([198, 18, 0, 10], [203, 0, 113, 5])
        .dst_mac([2, 9, 9, 9, 9, 9])
        .udp(1, 2, 0);
    assert_eq!(
        run(&mut p, 0, &mut f, &mut s),
        Action::Drop(DropReason::OtherHost)
    );
    let mut f = Pkt::v4([198, 18, 0, 10], [224, 0, 0, 5])
        .dst_mac([1, 0, 0x5e, 0, 0, 5])
        .udp(1, 2, 0);
    assert_eq!(
        run(&mut p, 0, &mut f, &mut s),
        Action::Drop(DropReason::Multicast)
    );
    let mut f = Pkt::v4([198, 18, 0, 10], [203, 0, 113, 5]).udp(1, 2, 0);
    f[ETH_LEN + 10] ^= 0xff;
    assert_eq!(
        run(&mut p, 0, &mut f, &mut s),
        Action::Drop(DropReason::BadIpChecksum)
    );
    for n in 0..f.len() {
        let mut t = f[..n].to_vec();
        assert!(
            matches!(run(&mut p, 0, &mut t, &mut s), Action::Drop(_)),
            "truncated to {n}"
        );
    }
    let mut f = Pkt::v4([198, 18, 0, 10], [203, 0, 113, 5]).udp(1, 2, 1500);
    f[ETH_LEN + 6] = 0x40; // DF
    f[ETH_LEN + 10..ETH_LEN + 12].fill(0);
    let c = super::pipe_build::checksum(&f[ETH_LEN..ETH_LEN + 20], 0);
    f[ETH_LEN + 10..ETH_LEN + 12].copy_from_slice(&c.to_be_bytes());
    let Action::Reply { len, .. } = run(&mut p, 0, &mut f, &mut s) else {
        panic!("no reply")
    };
    assert_eq!(
        (s[ETH_LEN + 20], s[ETH_LEN + 21]),
        (3, 4),
        "fragmentation needed"
    );
    assert_eq!(
        &s[ETH_LEN + 26..ETH_LEN + 28],
        &1500u16.to_be_bytes(),
        "next-hop mtu"
    );
    assert_checksums(&s[..usize::from(len)], ETH_LEN);
}

fn arp_frame(
    op: u16,
    sender_mac: Mac,
    sender_ip: [u8; 4],
    target_ip: [u8; 4],
    eth_dst: Mac,
) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    let a = crate::wire::ArpInfo {
        operation: op,
        sender_mac,
        sender_ip,
        target_mac: [0; 6],
        target_ip,
    };
    super::pipe_build::arp(&mut f, eth_dst, &a).unwrap();
    f
}

/// A slow path with the same static neighbours as [`neighbors`].
fn slow() -> SlowPath<Vec<u8>> {
    let mut sp = SlowPath::new(ports(), routes(), NeighConfig::default());
    sp.add_static(0, v4([198, 18, 0, 10]), HOST_MAC);
    sp.add_static(1, v4([198, 19, 0, 254]), GW1_MAC);
    sp.add_static(1, v4([198, 19, 0, 253]), GW2_MAC);
    sp.add_static(1, v6("2001:db8:2::fe"), GW1_MAC);
    sp
}

#[test]
fn arp_requests_for_own_addresses_are_answered_and_learned() {
    let mut p = pipeline();
    let mut s = vec![0u8; SCRATCH_LEN];
    let mut req = arp_frame(1, HOST_MAC, [198, 18, 0, 10], [198, 18, 0, 1], [0xff; 6]);
    assert_eq!(run(&mut p, 0, &mut req, &mut s), Action::SlowPath);
    let mut sp = slow();
    let mut out = Vec::new();
    sp.handle(0, req, 0, &mut out);
    let [SlowOut::Transmit { port: 0, frame }] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert_eq!(&frame[0..6], &HOST_MAC);
    assert_eq!(&frame[6..12], &LAN_MAC);
    assert_eq!(&frame[12..14], &[8, 6]);
    let a = &frame[ETH_LEN..];
    assert_eq!(&a[0..8], &[0, 1, 8, 0, 6, 4, 0, 2], "ethernet/ipv4 reply");
    assert_eq!(&a[8..14], &LAN_MAC);
    assert_eq!(&a[14..18], &[198, 18, 0, 1]);
    assert_eq!(&a[18..24], &HOST_MAC);
    assert_eq!(&a[24..28], &[198, 18, 0, 10]);
    assert_eq!(sp.counters().arp_replies, 1);
    let snap = sp.snapshot_if_changed().unwrap();
    assert_eq!(snap.lookup(0, v4([198, 18, 0, 10])), Some(HOST_MAC));

    // A request for someone else's address (or ours on the wrong port) is not answered.
    let mut out = Vec::new();
    sp.handle(
        0,
        arp_frame(1, HOST_MAC, [198, 18, 0, 10], [198, 18, 0, 99], [0xff; 6]),
        0,
        &mut out,
    );
    sp.handle(
        0,
        arp_frame(1, HOST_MAC, [198, 18, 0, 10], [198, 19, 0, 1], [0xff; 6]),
        0,
        &mut out,
    );
    assert!(
        out.iter().all(|o| matches!(o, SlowOut::Consumed(_))),
        "{out:?}"
    );
    assert_eq!(sp.counters().arp_replies, 1);
}

#[test]
fn queued_packets_are_released_when_the_neighbour_answers() {
    let mut sp = slow();
    let first = Arc::new(sp.snapshot_if_changed().unwrap());
    let mut p = Pipeline::new(0, 1, &config(), routes(), first, None);
    let mut s = vec![0u8; SCRATCH_LEN];
    let mut out = Vec::new();
    for i in 0..4u16 {
        let mut f = Pkt::v4([198, 18, 0, 10], [198, 19, 0, 77]).udp(1000 + i, 53, 0);
        assert_eq!(run(&mut p, 0, &mut f, &mut s), Action::SlowPath);
        sp.handle(0, f, 10, &mut out);
    }
    // One broadcast ARP request from the wan address; 3 queued; the 4th dropped.
    let probes: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            SlowOut::Send { port, frame } => Some((*port, frame.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(probes.len(), 1);
    let (port, probe) = &probes[0];
    assert_eq!(*port, 1);
    assert_eq!(&probe[0..6], &[0xff; 6]);
    assert_eq!(&probe[ETH_LEN + 6..ETH_LEN + 8], &[0, 1]);
    assert_eq!(&probe[ETH_LEN + 8..ETH_LEN + 14], &WAN_MAC);
    assert_eq!(&probe[ETH_LEN + 14..ETH_LEN + 18], &[198, 19, 0, 1]);
    assert_eq!(&probe[ETH_LEN + 24..ETH_LEN + 28], &[198, 19, 0, 77]);
    // Linux drops the oldest queued packet on overflow: the first one (port 1000).
    let Some(SlowOut::Drop {
        reason: DropReason::NeighborUnresolved,
        frame,
    }) = out.last()
    else {
        panic!("{out:?}")
    };
    assert_eq!(&frame[ETH_LEN + 20..ETH_LEN + 22], &1000u16.to_be_bytes());
    assert_eq!(out.len(), 2);

    // The reply releases the three queued frames, with the learned MAC.
    let host2: Mac = [2, 0, 0, 0, 2, 77];
    let mut out = Vec::new();
    sp.handle(
        1,
        arp_frame(2, host2, [198, 19, 0, 77], [198, 19, 0, 1], WAN_MAC),
        20,
        &mut out,
    );
    let released: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            SlowOut::Transmit { port, frame } => Some((*port, frame)),
            _ => None,
        })
        .collect();
    assert_eq!(released.len(), 3);
    for (i, (port, f)) in released.iter().enumerate() {
        assert_eq!(*port, 1);
        assert_eq!(&f[0..6], &host2);
        assert_eq!(&f[6..12], &WAN_MAC);
        assert_eq!(
            &f[ETH_LEN + 20..ETH_LEN + 22],
            &(1001 + i as u16).to_be_bytes(),
            "order kept"
        );
        assert_checksums(f, ETH_LEN);
    }
    // The worker adopts the new snapshot and forwards directly from then on.
    let old = p.adopt_neighbors(Arc::new(sp.snapshot_if_changed().unwrap()));
    assert!(old.lookup(1, v4([198, 19, 0, 77])).is_none());
    let mut f = Pkt::v4([198, 18, 0, 10], [198, 19, 0, 77]).udp(2000, 53, 0);
    assert!(matches!(
        run(&mut p, 0, &mut f, &mut s),
        Action::Forward { port: 1, .. }
    ));
    assert_eq!(&f[0..6], &host2);
}

#[test]
fn failed_resolution_drops_the_queue_after_the_probes() {
    let mut sp = slow();
    let mut out = Vec::new();
    let mut p = pipeline();
    let mut s = vec![0u8; SCRATCH_LEN];
    let mut f = Pkt::v4([198, 18, 0, 10], [198, 19, 0, 88]).udp(1, 2, 0);
    assert_eq!(run(&mut p, 0, &mut f, &mut s), Action::SlowPath);
    sp.handle(0, f, 0, &mut out);
    let mut probes = 1;
    let mut drops = 0;
    for t in 1..=5u64 {
        let mut o = Vec::new();
        sp.tick(t * 1000, &mut o);
        probes += o
            .iter()
            .filter(|x| matches!(x, SlowOut::Send { port: 1, .. }))
            .count();
        drops += o
            .iter()
            .filter(|x| {
                matches!(
                    x,
                    SlowOut::Drop {
                        reason: DropReason::NeighborUnresolved,
                        ..
                    }
                )
            })
            .count();
    }
    assert_eq!(probes, 3, "mcast_solicit probes");
    assert_eq!(drops, 1);
    assert_eq!(
        sp.counters().drops[DropReason::NeighborUnresolved as usize],
        1
    );
}

fn ns_frame(src: Addr, target: Addr, slla: Option<Mac>) -> Vec<u8> {
    let (dst, eth) = super::pipe_build::solicited_node(target);
    let pk = Pkt {
        family: Family::V6,
        src,
        dst,
        ttl: 255,
        dst_mac: eth,
        src_mac: HOST_MAC,
    };
    pk.frame(L4Spec::NeighborSolicit {
        target: target.0,
        src_lladdr: slla,
    })
}

#[test]
fn neighbour_solicitations_for_own_addresses_get_an_advertisement() {
    let mut p = pipeline();
    let mut s = vec![0u8; SCRATCH_LEN];
    let host = v6("2001:db8:1::10");
    let mut ns = ns_frame(host, v6("2001:db8:1::1"), Some(HOST_MAC));
    assert_eq!(run(&mut p, 0, &mut ns, &mut s), Action::SlowPath);
    let mut sp = slow();
    let mut out = Vec::new();
    sp.handle(0, ns, 0, &mut out);
    let Some(SlowOut::Send { port: 0, frame: na }) = out.first() else {
        panic!("{out:?}")
    };
    assert!(matches!(out.last(), Some(SlowOut::Consumed(_))));
    assert_eq!(&na[0..6], &HOST_MAC);
    assert_eq!(na[ETH_LEN + 7], 255, "hop limit 255");
    assert_eq!(&na[ETH_LEN + 24..ETH_LEN + 40], &host.0);
    let m = &na[ETH_LEN + 40..];
    assert_eq!(m[0], 136);
    assert_eq!(m[4], 0xe0, "router, solicited, override");
    assert_eq!(&m[8..24], &v6("2001:db8:1::1").0);
    assert_eq!(&m[24..26], &[2, 1], "target link-layer address option");
    assert_eq!(&m[26..32], &LAN_MAC);
    assert_checksums(na, ETH_LEN);
    assert_eq!(
        sp.snapshot_if_changed().unwrap().lookup(0, host),
        Some(HOST_MAC)
    );

    // Unresolved IPv6 next hop: a solicitation to the solicited-node group.
    let mut out = Vec::new();
    let mut f = Pkt::v6("2001:db8:1::10", "2001:db8:2::77").udp(1, 2, 0);
    assert_eq!(run(&mut p, 0, &mut f, &mut s), Action::SlowPath);
    sp.handle(0, f, 0, &mut out);
    let [
        SlowOut::Send {
            port: 1,
            frame: probe,
        },
    ] = out.as_slice()
    else {
        panic!("{out:?}")
    };
    assert_eq!(&probe[0..6], &[0x33, 0x33, 0xff, 0, 0, 0x77]);
    assert_eq!(&probe[ETH_LEN + 24..ETH_LEN + 40], &v6("ff02::1:ff00:77").0);
    assert_eq!(probe[ETH_LEN + 40], 135);
    assert_eq!(&probe[ETH_LEN + 48..ETH_LEN + 64], &v6("2001:db8:2::77").0);
    assert_checksums(probe, ETH_LEN);
}

const RULESET: &str = r#"
table inet filter {
    chain input {
        type filter hook input priority 0; policy drop;
        ct state established,related accept
        ct state invalid drop
        ip protocol icmp accept
        ip6 nexthdr icmpv6 accept
        tcp dport 22 reject with tcp reset
        udp dport 9 reject
    }
    chain forward {
        type filter hook forward priority 0; policy drop;
        ct state established,related accept
        ct state invalid drop
        iifname "lan" accept
    }
}
"#;

fn with_rules() -> Pipeline {
    let names: crate::rules::PortsByName = [("lan".to_string(), 0u16), ("wan".to_string(), 1u16)]
        .into_iter()
        .collect();
    let compiled = crate::rules::load_text(RULESET, &names, 1).unwrap();
    let publisher = crate::rules::Publisher::new(compiled);
    let worker = publisher.worker();
    // The publisher only coordinates generations; the worker handle keeps its own.
    drop(publisher);
    Pipeline::new(0, 1, &config(), routes(), neighbors(), Some(worker))
}

/// A pipeline (worker 0 of 1, ports lan/wan) running ruleset `src`, and the publisher of
/// its generations (its counters are the rules' counters).
pub(super) fn with_ruleset(src: &str) -> (Pipeline, crate::rules::Publisher) {
    let names: crate::rules::PortsByName = [("lan".to_string(), 0u16), ("wan".to_string(), 1u16)]
        .into_iter()
        .collect();
    let publisher = crate::rules::Publisher::new(crate::rules::load_text(src, &names, 1).unwrap());
    let p = Pipeline::new(
        0,
        1,
        &config(),
        routes(),
        neighbors(),
        Some(publisher.worker()),
    );
    (p, publisher)
}

pub(super) fn from_wan(mut f: Vec<u8>) -> Vec<u8> {
    f[0..6].copy_from_slice(&WAN_MAC);
    f[6..12].copy_from_slice(&GW1_MAC);
    f
}

#[test]
fn stateful_forwarding_accepts_replies_and_blocks_new_inbound() {
    let mut p = with_rules();
    let mut s = vec![0u8; SCRATCH_LEN];
    let mut out = Pkt::v4([198, 18, 0, 10], [203, 0, 113, 5]).udp(40000, 53, 8);
    assert!(matches!(
        run(&mut p, 0, &mut out, &mut s),
        Action::Forward { port: 1, .. }
    ));
    assert_eq!(p.conntrack().len(), 1, "the lan→wan flow is tracked");
    let mut reply = from_wan(Pkt::v4([203, 0, 113, 5], [198, 18, 0, 10]).udp(53, 40000, 8));
    assert!(
        matches!(
            run(&mut p, 1, &mut reply, &mut s),
            Action::Forward { port: 0, .. }
        ),
        "reply is established"
    );
    assert_eq!(&reply[0..6], &HOST_MAC);
    assert_eq!(p.conntrack().len(), 1, "the reply is not a second entry");
    let mut inbound = from_wan(Pkt::v4([203, 0, 113, 9], [198, 18, 0, 10]).udp(53, 40000, 8));
    assert_eq!(
        run(&mut p, 1, &mut inbound, &mut s),
        Action::Drop(DropReason::FilterDrop)
    );
    // SYN|FIN is invalid (Linux `tcp_valid_flags`): dropped by `ct state invalid drop`.
    let mut bad = Pkt::v4([198, 18, 0, 10], [203, 0, 113, 5]).tcp(40001, 80, 0x03, 1, 0);
    assert_eq!(
        run(&mut p, 0, &mut bad, &mut s),
        Action::Drop(DropReason::FilterDrop)
    );
    assert_eq!(p.conntrack().len(), 1);
    assert_eq!(p.counters().drop_count(DropReason::FilterDrop), 2);
    // Expiry between bursts: the UDP entry times out (30 s unreplied... replied: 120 s).
    p.tick(1_000 + 200 * 1_000_000_000);
    assert_eq!(p.conntrack().len(), 0);
    assert_eq!(
        p.command(super::WorkerCommand::CtCount {
            filter: Default::default(),
            cursor: 0,
            budget: 64,
        }),
        super::WorkerReply::Count {
            count: 0,
            next_cursor: None
        }
    );
}

#[test]
fn input_chain_rejects_with_reset_or_port_unreachable() {
    let mut p = with_rules();
    let mut s = vec![0u8; SCRATCH_LEN];
    let mut syn = Pkt::v4([198, 18, 0, 10], [198, 18, 0, 1]).tcp(40000, 22, 0x02, 1000, 0);
    let Action::Reply { port: 0, len } = run(&mut p, 0, &mut syn, &mut s) else {
        panic!("no reset")
    };
    let r = &s[..usize::from(len)];
    assert_eq!(&r[0..6], &HOST_MAC);
    assert_eq!(&r[ETH_LEN + 12..ETH_LEN + 16], &[198, 18, 0, 1]);
    let t = &r[ETH_LEN + 20..];
    assert_eq!(&t[0..4], &[0, 22, 0x9c, 0x40], "ports swapped");
    assert_eq!(&t[4..8], &[0; 4], "seq 0 for a segment without ACK");
    assert_eq!(&t[8..12], &1001u32.to_be_bytes(), "ack = seq + 1 (SYN)");
    assert_eq!(t[13], 0x14, "RST|ACK");
    assert_checksums(r, ETH_LEN);
    assert_eq!(p.counters().proc.tcp_resets, 1);
    let mut udp = Pkt::v4([198, 18, 0, 10], [198, 18, 0, 1]).udp(40000, 9, 4);
    let Action::Reply { len, .. } = run(&mut p, 0, &mut udp, &mut s) else {
        panic!("no icmp")
    };
    assert_eq!(
        (s[ETH_LEN + 20], s[ETH_LEN + 21]),
        (3, 3),
        "port unreachable"
    );
    assert_checksums(&s[..usize::from(len)], ETH_LEN);
    let mut other = Pkt::v4([198, 18, 0, 10], [198, 18, 0, 1]).udp(40000, 5353, 4);
    assert_eq!(
        run(&mut p, 0, &mut other, &mut s),
        Action::Drop(DropReason::FilterDrop),
        "policy drop"
    );
    let mut ping = Pkt::v4([198, 18, 0, 10], [198, 18, 0, 1]).echo(1, 1);
    assert!(matches!(
        run(&mut p, 0, &mut ping, &mut s),
        Action::Forward { port: 0, .. }
    ));
    assert_eq!(p.counters().drop_count(DropReason::Rejected), 2);
    // Both were answered (reset, port unreachable): the edge saw replies, not drops.
    assert_eq!(p.proc_counters().replied(DropReason::Rejected), 2);
    assert_eq!(p.conntrack().len(), 1, "only the accepted ping is tracked");
    let super::WorkerReply::Stats(st) = p.command(super::WorkerCommand::CtStats) else {
        panic!()
    };
    assert_eq!(st.stats.insert, 1);
    let bad = p.command(super::WorkerCommand::SetTunables(vec![(
        "no_such".into(),
        1,
    )]));
    assert!(matches!(bad, super::WorkerReply::Error(e) if e.field.as_deref() == Some("no_such")));
}

// ------------------------------------------------------------------ multi-worker proof

const NAT_RULESET: &str = r#"
table inet filter {
    chain forward {
        type filter hook forward priority 0; policy drop;
        ct state established,related accept
        ct state invalid drop
        iifname "lan" accept
        ct state new tcp dport 80 accept
    }
}
table ip nat {
    chain prerouting {
        type nat hook prerouting priority -100;
        tcp dport 8080 dnat to 198.18.0.20:80
    }
    chain postrouting {
        type nat hook postrouting priority 100;
        oifname "wan" masquerade
    }
}
"#;

const N_WORKERS: u16 = 4;

/// `N_WORKERS` pipelines sharing one ruleset and the symmetric-key owner function, on
/// ports without hardware RSS (so ownership is computed in software and handed off).
struct Cluster {
    workers: Vec<Pipeline>,
    rng: u64,
    /// The edge gives handed-off frames to `process_handoff` (else to `process`).
    edge_marks_handoffs: bool,
}

impl Cluster {
    fn new() -> Self {
        let names: crate::rules::PortsByName =
            [("lan".to_string(), 0u16), ("wan".to_string(), 1u16)]
                .into_iter()
                .collect();
        let compiled =
            crate::rules::load_text(NAT_RULESET, &names, usize::from(N_WORKERS)).unwrap();
        let publisher = crate::rules::Publisher::new(compiled);
        let mut cfg = config();
        for p in &mut cfg.ports {
            p.hw_rss = false;
        }
        let mut neigh: NeighborCache<()> = NeighborCache::new(NeighConfig::default());
        for i in 1..=254u8 {
            neigh.add_static(0, v4([198, 18, 0, i]), [2, 0, 0, 0, 1, i]);
            neigh.add_static(1, v4([198, 19, 0, i]), [2, 0, 0, 0, 2, i]);
        }
        let snap = Arc::new(neigh.snapshot_if_changed().unwrap());
        let workers = (0..N_WORKERS)
            .map(|w| {
                Pipeline::new(
                    w,
                    N_WORKERS,
                    &cfg,
                    routes(),
                    snap.clone(),
                    Some(publisher.worker()),
                )
            })
            .collect();
        Cluster {
            workers,
            rng: 0x1234_5678_9abc_def1,
            edge_marks_handoffs: true,
        }
    }

    fn random_worker(&mut self) -> usize {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        usize::try_from(self.rng % u64::from(N_WORKERS)).unwrap()
    }

    /// Delivers `frame` on `port` to a random worker's queue and follows handoffs; steering
    /// records are delivered to their worker at once (the edge drains message rings before
    /// a conntrack miss is final). Returns the final action and the number of hops.
    fn deliver(&mut self, port: u16, frame: &mut [u8]) -> (Action, u32) {
        let mut s = vec![0u8; SCRATCH_LEN];
        let mut w = self.random_worker();
        let mut handed = false;
        for hops in 0..4 {
            let a = if handed && self.edge_marks_handoffs {
                self.workers[w].process_handoff(port, frame, 1_000, &mut s)
            } else {
                self.workers[w].process(port, frame, 1_000, &mut s)
            };
            let records: Vec<_> = self.workers[w].take_steering().collect();
            for st in records {
                self.workers[usize::from(st.reply_worker)].add_steering(st);
            }
            match a {
                Action::Handoff { worker } => {
                    assert_ne!(usize::from(worker), w, "handoff to itself");
                    w = usize::from(worker);
                    handed = true;
                }
                other => return (other, hops),
            }
        }
        panic!("handoff loop");
    }

    fn entries(&self) -> u32 {
        self.workers.iter().map(|p| p.conntrack().len()).sum()
    }
}

pub(super) fn tuple_of(f: &[u8]) -> ([u8; 4], [u8; 4], u16, u16) {
    let ip = &f[ETH_LEN..];
    let l4 = &ip[20..];
    (
        ip[12..16].try_into().unwrap(),
        ip[16..20].try_into().unwrap(),
        u16::from_be_bytes([l4[0], l4[1]]),
        u16::from_be_bytes([l4[2], l4[3]]),
    )
}

/// The answer a host would send to `f`: addresses and ports swapped.
fn answer(f: &[u8], tcp_flags: Option<u8>, to_mac: Mac, from_mac: Mac) -> Vec<u8> {
    let (src, dst, sport, dport) = tuple_of(f);
    let pk = Pkt {
        family: Family::V4,
        src: v4(dst),
        dst: v4(src),
        ttl: 64,
        dst_mac: to_mac,
        src_mac: from_mac,
    };
    match tcp_flags {
        Some(fl) => {
            let seq = u32::from_be_bytes(f[ETH_LEN + 24..ETH_LEN + 28].try_into().unwrap());
            pk.tcp(dport, sport, fl, 5000, seq.wrapping_add(1))
        }
        None => pk.udp(dport, sport, 12),
    }
}

#[test]
fn multi_worker_nat_tracks_each_flow_once_and_reverses_replies() {
    for marks in [true, false] {
        multi_worker_run(marks);
    }
}

fn multi_worker_run(edge_marks_handoffs: bool) {
    let mut c = Cluster::new();
    c.edge_marks_handoffs = edge_marks_handoffs;
    let wan_addr = [198, 19, 0, 1];
    let mut flows = 0u32;
    // lan → wan through masquerade: TCP (SYN, SYN-ACK, ACK) and UDP (request, answer).
    for i in 0..40u16 {
        let client = [198, 18, 0, u8::try_from(10 + i % 20).unwrap()];
        let server = [203, 0, 113, u8::try_from(1 + i % 7).unwrap()];
        let tcp = i % 2 == 0;
        let sport = 30_000 + i;
        let pk = Pkt::v4(client, server);
        let mut f = if tcp {
            pk.tcp(sport, 443, 0x02, 100, 0)
        } else {
            pk.udp(sport, 53, 12)
        };
        let (a, _) = c.deliver(0, &mut f);
        assert!(
            matches!(a, Action::Forward { port: 1, .. }),
            "flow {i}: {a:?}"
        );
        flows += 1;
        let (src, dst, _, dport) = tuple_of(&f);
        assert_eq!(src, wan_addr, "masqueraded to the wan address");
        assert_eq!((dst, dport), (server, if tcp { 443 } else { 53 }));
        assert_checksums(&f, ETH_LEN);
        // The server answers the translated tuple, arriving on any wan queue.
        let mut r = answer(&f, tcp.then_some(0x12), WAN_MAC, GW1_MAC);
        let (a, _) = c.deliver(1, &mut r);
        assert!(
            matches!(a, Action::Forward { port: 0, .. }),
            "reply of flow {i}: {a:?}"
        );
        let (rsrc, rdst, rsport, rdport) = tuple_of(&r);
        assert_eq!(
            (rsrc, rdst, rsport, rdport),
            (server, client, if tcp { 443 } else { 53 }, sport),
            "inverse rewrite"
        );
        assert_checksums(&r, ETH_LEN);
        if tcp {
            let mut ack = Pkt::v4(client, server).tcp(sport, 443, 0x10, 101, 5001);
            let (a, _) = c.deliver(0, &mut ack);
            assert!(
                matches!(a, Action::Forward { port: 1, .. }),
                "ack of flow {i}: {a:?}"
            );
        }
    }
    // wan → lan port forward (DNAT 8080 → 198.18.0.20:80), with SNAT not applying (lan).
    for i in 0..20u16 {
        let remote = [203, 0, 113, u8::try_from(100 + i).unwrap()];
        let mut syn = from_wan(Pkt::v4(remote, wan_addr).tcp(40_000 + i, 8080, 0x02, 7, 0));
        let (a, _) = c.deliver(1, &mut syn);
        assert!(
            matches!(a, Action::Forward { port: 0, .. }),
            "dnat flow {i}: {a:?}"
        );
        flows += 1;
        assert_eq!(
            tuple_of(&syn),
            (remote, [198, 18, 0, 20], 40_000 + i, 80),
            "destination translated"
        );
        assert_checksums(&syn, ETH_LEN);
        let mut synack = answer(&syn, Some(0x12), LAN_MAC, [2, 0, 0, 0, 1, 20]);
        let (a, _) = c.deliver(0, &mut synack);
        assert!(
            matches!(a, Action::Forward { port: 1, .. }),
            "dnat reply {i}: {a:?}"
        );
        assert_eq!(
            tuple_of(&synack),
            (wan_addr, remote, 8080, 40_000 + i),
            "source translated back"
        );
        assert_checksums(&synack, ETH_LEN);
    }
    assert_eq!(
        c.entries(),
        flows,
        "every flow tracked exactly once across the workers"
    );
    let handoffs: u64 = c.workers.iter().map(|p| p.counters().proc.handoffs).sum();
    assert!(handoffs > 0, "random queues made some handoffs");
    for (w, p) in c.workers.iter_mut().enumerate() {
        let d = &p.counters().drops;
        assert_eq!(
            d.iter().sum::<u64>(),
            0,
            "worker {w} dropped: {:?}",
            DropReason::ALL
                .iter()
                .zip(d)
                .filter(|(_, n)| **n > 0)
                .collect::<Vec<_>>()
        );
        let super::WorkerReply::Stats(st) = p.command(super::WorkerCommand::CtStats) else {
            panic!()
        };
        assert_eq!(
            st.stats.invalid, 0,
            "worker {w}: a packet was judged invalid"
        );
    }
}

#[test]
fn icmp_error_about_a_masqueraded_flow_is_related_and_translated_back() {
    let mut c = Cluster::new();
    let client = [198, 18, 0, 10];
    let server = [203, 0, 113, 9];
    let mut f = Pkt::v4(client, server).udp(33_333, 9999, 12);
    let orig_len = f.len();
    assert!(matches!(
        c.deliver(0, &mut f).0,
        Action::Forward { port: 1, .. }
    ));
    let (_, _, nat_port, _) = tuple_of(&f);
    // The server's port is closed: ICMP port unreachable quoting the translated datagram.
    let pk = Pkt {
        family: Family::V4,
        src: v4(server),
        dst: v4([198, 19, 0, 1]),
        ttl: 64,
        dst_mac: WAN_MAC,
        src_mac: GW1_MAC,
    };
    let mut err = pk.frame(L4Spec::IcmpError {
        kind: IcmpErrorKind::DestUnreachable(3),
        quoted: &f[ETH_LEN..orig_len],
    });
    let (a, _) = c.deliver(1, &mut err);
    assert!(matches!(a, Action::Forward { port: 0, .. }), "{a:?}");
    let ip = &err[ETH_LEN..];
    assert_eq!(&ip[16..20], &client, "outer destination translated back");
    let inner = &ip[28..];
    assert_eq!(&inner[12..16], &client, "embedded source translated back");
    assert_eq!(
        &inner[20..22],
        &33_333u16.to_be_bytes(),
        "embedded source port translated back"
    );
    assert_ne!(nat_port, 0);
    assert_checksums(&err, ETH_LEN);
    assert_eq!(c.entries(), 1);
}

#[test]
fn conntrack_listing_count_delete_and_events_use_the_filters() {
    use super::{WorkerCommand, WorkerReply};
    use crate::conntrack::CtMatcher;
    use crate::control::filter::MatcherFromFilter;
    use crate::control::proto::{CtFilter, EventType};
    let mut p = pipeline();
    let mut s = vec![0u8; SCRATCH_LEN];
    for dport in [53u16, 80, 443] {
        let mut f = Pkt::v4([198, 18, 0, 10], [203, 0, 113, 5]).udp(40000, dport, 8);
        assert!(matches!(
            run(&mut p, 0, &mut f, &mut s),
            Action::Forward { port: 1, .. }
        ));
    }
    // The control side compiles the protocol's filter; the worker gets the matcher.
    let dns = CtMatcher::new(&CtFilter {
        dport: Some(53),
        ..Default::default()
    })
    .unwrap();
    // A filtered count covers at most `budget` slots per command and says where to go on.
    let slice = |p: &mut Pipeline, cursor, budget| {
        p.command(WorkerCommand::CtCount {
            filter: dns.clone(),
            cursor,
            budget,
        })
    };
    let WorkerReply::Count {
        count: a,
        next_cursor: Some(512),
    } = slice(&mut p, 0, 512)
    else {
        panic!("no cursor after a partial slice")
    };
    let WorkerReply::Count {
        count: b,
        next_cursor: None,
    } = slice(&mut p, 512, 4096)
    else {
        panic!("the second slice should end the table")
    };
    assert_eq!(a + b, 1);
    let WorkerReply::CtPage {
        entries,
        next_cursor,
    } = p.command(WorkerCommand::CtList {
        filter: dns.clone(),
        cursor: 0,
        limit: 10,
    })
    else {
        panic!("no page")
    };
    assert_eq!(next_cursor, None);
    let entries: Vec<_> = entries.iter().map(|s| s.to_ct_entry(0)).collect();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].orig.dport, Some(53));
    assert_eq!(entries[0].proto, "udp");
    let bad = CtFilter {
        src: Some("not an address".into()),
        ..Default::default()
    };
    // Refused where it is compiled, before any worker sees it.
    assert!(CtMatcher::new(&bad).is_err());
    assert_eq!(
        p.command(WorkerCommand::CtDelete {
            filter: dns,
            budget: 4096
        }),
        WorkerReply::Deleted {
            count: 1,
            more: false
        }
    );
    assert_eq!(p.conntrack().len(), 2);
    let WorkerReply::Events { events, lost, .. } =
        p.command(WorkerCommand::TakeEvents { max: 100 })
    else {
        panic!("no events")
    };
    assert_eq!(lost, 0);
    let events: Vec<_> = events.iter().map(|e| e.to_line(0, 0, lost)).collect();
    let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == EventType::New).count(),
        3,
        "{kinds:?}"
    );
    let destroyed: Vec<_> = events
        .iter()
        .filter(|e| e.kind == EventType::Destroy)
        .collect();
    assert_eq!(destroyed.len(), 1);
    assert_eq!(destroyed[0].entry.orig.dport, Some(53));
}

#[test]
fn edge_dispatch_gives_handed_off_frames_to_process_handoff() {
    use super::process::dispatch;
    let mut c = Cluster::new();
    let mut s = vec![0u8; SCRATCH_LEN];
    let mut checked = 0;
    for sport in 30_000..30_064u16 {
        let f = Pkt::v4([198, 18, 0, 10], [203, 0, 113, 5]).udp(sport, 53, 8);
        let mut probe = f.clone();
        let a = dispatch(&mut c.workers[0], false, 0, &mut probe, 1_000, &mut s);
        if !matches!(a, Action::Handoff { .. }) {
            continue;
        }
        // The same frame, as it arrives on worker 0's handoff ring: processed here.
        let mut handed = f.clone();
        let a = dispatch(&mut c.workers[0], true, 0, &mut handed, 1_000, &mut s);
        assert!(matches!(a, Action::Forward { port: 1, .. }), "{a:?}");
        checked += 1;
    }
    assert!(checked > 0, "no flow owned by another worker");
}

#[test]
fn established_packets_take_the_cached_verdict_of_the_running_generation() {
    let names: crate::rules::PortsByName = [("lan".to_string(), 0u16), ("wan".to_string(), 1u16)]
        .into_iter()
        .collect();
    let mut publisher =
        crate::rules::Publisher::new(crate::rules::load_text(RULESET, &names, 1).unwrap());
    let mut p = Pipeline::new(
        0,
        1,
        &config(),
        routes(),
        neighbors(),
        Some(publisher.worker()),
    );
    let mut s = vec![0u8; SCRATCH_LEN];
    let out = || Pkt::v4([198, 18, 0, 10], [203, 0, 113, 5]).udp(40000, 53, 8);
    let back = || from_wan(Pkt::v4([203, 0, 113, 5], [198, 18, 0, 10]).udp(53, 40000, 8));
    let fwd = |a: Action| matches!(a, Action::Forward { .. });
    assert!(fwd(run(&mut p, 0, &mut out(), &mut s)), "new, from lan");
    assert!(
        fwd(run(&mut p, 1, &mut back(), &mut s)),
        "reply: evaluated, cached"
    );
    assert_eq!(p.counters().proc.verdict_cache_hits, 0);
    assert!(fwd(run(&mut p, 1, &mut back(), &mut s)));
    assert!(
        fwd(run(&mut p, 0, &mut out(), &mut s)),
        "original: evaluated"
    );
    assert!(fwd(run(&mut p, 0, &mut out(), &mut s)));
    assert_eq!(
        p.counters().proc.verdict_cache_hits,
        2,
        "one hit per direction"
    );
    // A new generation that drops the flow: the cached accept is not used.
    let dropping = RULESET.replace(
        "        ct state established,related accept\n        ct state invalid drop\n        iifname",
        "        udp sport 53 drop\n        ct state established,related accept\n        iifname",
    );
    assert_ne!(dropping, RULESET);
    publisher.publish(crate::rules::load_text(&dropping, &names, 1).unwrap());
    p.tick(2_000);
    assert_eq!(
        run(&mut p, 1, &mut back(), &mut s),
        Action::Drop(DropReason::FilterDrop)
    );
    assert_eq!(
        run(&mut p, 1, &mut back(), &mut s),
        Action::Drop(DropReason::FilterDrop),
        "the cached drop"
    );
    assert_eq!(p.counters().proc.verdict_cache_hits, 3);
    assert!(fwd(run(&mut p, 0, &mut out(), &mut s)), "other direction");
    assert_eq!(p.counters().drop_count(DropReason::FilterDrop), 2);
}

#[test]
fn cached_verdicts_credit_every_rule_the_evaluation_would_count() {
    let src = "table ip t {\n chain f {\n  type filter hook forward priority 0; policy drop;\n  counter\n  ct state new accept\n  udp sport 7 drop\n  ct state established counter accept\n }\n chain p {\n  type filter hook postrouting priority 0; policy accept;\n  udp dport 53 counter\n }\n}\n";
    let (mut p, publisher) = with_ruleset(src);
    let mut s = vec![0u8; SCRATCH_LEN];
    let fwd = |a: Action| matches!(a, Action::Forward { .. });
    // Flow A (accepted both ways): the first packet, 3 replies, 3 more originals (the
    // first packet of each direction with an entry is evaluated, the rest hit).
    let out = || Pkt::v4([198, 18, 0, 10], [203, 0, 113, 5]).udp(40000, 53, 8);
    assert!(fwd(run(&mut p, 0, &mut out(), &mut s)));
    for _ in 0..3 {
        let mut back = from_wan(Pkt::v4([203, 0, 113, 5], [198, 18, 0, 10]).udp(53, 40000, 8));
        assert!(fwd(run(&mut p, 1, &mut back, &mut s)));
    }
    for _ in 0..3 {
        assert!(fwd(run(&mut p, 0, &mut out(), &mut s)));
    }
    // Flow B: its replies (from port 7) are dropped, the drop is cached.
    let mut out = Pkt::v4([198, 18, 0, 10], [203, 0, 113, 5]).udp(40001, 7, 8);
    assert!(fwd(run(&mut p, 0, &mut out, &mut s)));
    for _ in 0..3 {
        let mut back = from_wan(Pkt::v4([203, 0, 113, 5], [198, 18, 0, 10]).udp(7, 40001, 8));
        assert_eq!(
            run(&mut p, 1, &mut back, &mut s),
            Action::Drop(DropReason::FilterDrop)
        );
    }
    // A: 2 hits per direction (the first of each run is evaluated); B: 2 cached drops.
    assert_eq!(p.counters().proc.verdict_cache_hits, 6);
    let rs = publisher.current();
    let counts = rs.counters();
    let count = |chain: usize, rule: usize| counts[rs.rule_id(0, chain, rule).unwrap() as usize];
    let (new_packets, new_bytes) = count(0, 1);
    assert_eq!(new_packets, 2, "the two first packets");
    let len = new_bytes / 2; // every packet here has the same length
    // Every packet passed the leading `counter`; the established rule counted every
    // packet of A after the first, cache hits included.
    assert_eq!(count(0, 0), (11, 11 * len));
    assert_eq!(count(0, 3), (6, 6 * len));
    assert_eq!(
        count(0, 2),
        (3, 3 * len),
        "every reply of B, cached drops included"
    );
    // Postrouting: only A's original direction (dport 53), never B's dropped replies.
    assert_eq!(count(1, 0), (4, 4 * len), "A's 4 originals");
}

#[test]
fn ct_count_tokens_are_held_for_the_connection_lifetime() {
    use super::{WorkerCommand, WorkerReply};
    use crate::conntrack::CtMatcher;
    use crate::control::filter::MatcherFromFilter;
    use crate::control::proto::CtFilter;
    let names: crate::rules::PortsByName = [("lan".to_string(), 0u16), ("wan".to_string(), 1u16)]
        .into_iter()
        .collect();
    let src = "table ip t {\n chain f {\n  type filter hook forward priority 0; policy accept;\n  ct state new ct count over 2 drop\n }\n}\n";
    let publisher = crate::rules::Publisher::new(crate::rules::load_text(src, &names, 1).unwrap());
    let mut p = Pipeline::new(
        0,
        1,
        &config(),
        routes(),
        neighbors(),
        Some(publisher.worker()),
    );
    let mut s = vec![0u8; SCRATCH_LEN];
    let mut flow = |p: &mut Pipeline, sport: u16, now: u64| {
        let mut f = Pkt::v4([198, 18, 0, 10], [203, 0, 113, 5]).udp(sport, 53, 8);
        p.process(0, &mut f, now, &mut s)
    };
    let fwd = |a: Action| matches!(a, Action::Forward { .. });
    assert!(fwd(flow(&mut p, 1001, 1_000)));
    assert!(fwd(flow(&mut p, 1002, 1_000)));
    assert_eq!(
        flow(&mut p, 1003, 1_000),
        Action::Drop(DropReason::FilterDrop),
        "two live connections hold the count"
    );
    assert!(fwd(flow(&mut p, 1001, 1_000)), "an established one passes");
    assert_eq!(p.held_len(), 2);
    // `conntrack -D` of one connection releases its token.
    let one = CtMatcher::new(&CtFilter {
        sport: Some(1001),
        ..Default::default()
    })
    .unwrap();
    assert!(matches!(
        p.command(WorkerCommand::CtDelete {
            filter: one,
            budget: 4096
        }),
        WorkerReply::Deleted { count: 1, .. }
    ));
    assert_eq!(p.held_len(), 1);
    assert!(fwd(flow(&mut p, 1003, 1_000)));
    assert_eq!(
        flow(&mut p, 1004, 1_000),
        Action::Drop(DropReason::FilterDrop)
    );
    // Expiry (UDP unreplied: 30 s) releases both.
    let later = 200 * 1_000_000_000;
    for i in 0..4 {
        p.tick(later + i);
    }
    assert_eq!(p.conntrack().len(), 0);
    assert_eq!(p.held_len(), 0);
    assert!(fwd(flow(&mut p, 1005, later)));
    assert!(fwd(flow(&mut p, 1006, later)));
    assert_eq!(
        flow(&mut p, 1007, later),
        Action::Drop(DropReason::FilterDrop)
    );
}

#[test]
fn steering_records_are_withdrawn_when_their_connection_dies() {
    use super::{WorkerCommand, WorkerReply};
    let mut c = Cluster::new();
    let wan_addr = [198, 19, 0, 1];
    for i in 0..40u16 {
        let remote = [203, 0, 113, u8::try_from(100 + i).unwrap()];
        let mut syn = from_wan(Pkt::v4(remote, wan_addr).tcp(40_000 + i, 8080, 0x02, 7, 0));
        let (a, _) = c.deliver(1, &mut syn);
        assert!(matches!(a, Action::Forward { port: 0, .. }), "{a:?}");
    }
    let steered: usize = c.workers.iter().map(Pipeline::steering_len).sum();
    assert!(steered > 0, "some DNAT replies hash to another worker");
    for w in 0..c.workers.len() {
        assert!(matches!(
            c.workers[w].command(WorkerCommand::CtDelete {
                filter: Default::default(),
                budget: 1 << 20
            }),
            WorkerReply::Deleted { more: false, .. }
        ));
        let gone: Vec<_> = c.workers[w].take_unsteering().collect();
        for st in &gone {
            assert_eq!(usize::from(st.owner), w);
            c.workers[usize::from(st.reply_worker)].remove_steering(st);
        }
    }
    assert_eq!(c.entries(), 0);
    let left: usize = c.workers.iter().map(Pipeline::steering_len).sum();
    assert_eq!(left, 0, "every record withdrawn ({steered} before)");
    assert!(c.workers.iter().all(|p| p.held_len() == 0));
}

/// The cache-hit fast path (`fast_forward`) must leave exactly the bytes the full
/// evaluation leaves, both directions of a masqueraded connection and a DNAT one, and
/// hand the cases it does not handle (TTL 1) back to the full path.
#[test]
fn cached_packets_leave_the_bytes_the_full_path_leaves() {
    let src = "table ip nat {\n chain pre {\n  type nat hook prerouting priority -100; policy accept;\n  iifname \"wan\" udp dport 8080 dnat to 198.18.0.10:80\n }\n chain post {\n  type nat hook postrouting priority 100; policy accept;\n  oifname \"wan\" masquerade\n }\n}\ntable inet filter {\n chain forward {\n  type filter hook forward priority 0; policy drop;\n  ct state established,related counter accept\n  iifname \"lan\" accept\n  ct status dnat accept\n }\n}\n";
    let (mut p, _publisher) = with_ruleset(src);
    let mut s = vec![0u8; SCRATCH_LEN];
    let out = || Pkt::v4([198, 18, 0, 10], [203, 0, 113, 5]).udp(40000, 53, 8);
    // First packet: translated source, the entry is created.
    let mut f = out();
    assert!(matches!(
        run(&mut p, 0, &mut f, &mut s),
        Action::Forward { port: 1, .. }
    ));
    let (_, _, nat_port, _) = tuple_of(&f);
    let back = || from_wan(Pkt::v4([203, 0, 113, 5], [198, 19, 0, 1]).udp(53, nat_port, 8));
    // Each direction: the first later packet is evaluated (and cached), the next ones
    // take the fast path; all leave the same bytes.
    for (port, make) in [(1u16, &back as &dyn Fn() -> Vec<u8>), (0, &out)] {
        let hits = p.counters().proc.verdict_cache_hits;
        let mut full = make();
        let a = run(&mut p, port, &mut full, &mut s);
        assert!(matches!(a, Action::Forward { .. }), "{a:?}");
        assert_eq!(p.counters().proc.verdict_cache_hits, hits, "evaluated");
        for i in 0..2 {
            let mut fast = make();
            assert_eq!(run(&mut p, port, &mut fast, &mut s), a);
            assert_eq!(fast, full, "packet {i} from port {port}");
            assert_checksums(&fast, ETH_LEN);
        }
        assert_eq!(p.counters().proc.verdict_cache_hits, hits + 2, "cache hits");
    }
    let (_, dst, _, dport) = tuple_of(&{
        let mut f = back();
        run(&mut p, 1, &mut f, &mut s);
        f
    });
    assert_eq!((dst, dport), ([198, 18, 0, 10], 40000), "un-masqueraded");
    // DNAT: wan → 198.19.0.1:8080 reaches 198.18.0.10:80, cached packets alike.
    let dnat = || from_wan(Pkt::v4([203, 0, 113, 7], [198, 19, 0, 1]).udp(5000, 8080, 8));
    let mut first = dnat();
    assert!(matches!(
        run(&mut p, 1, &mut first, &mut s),
        Action::Forward { port: 0, .. }
    ));
    let mut full = dnat();
    let a = run(&mut p, 1, &mut full, &mut s);
    let mut fast = dnat();
    assert_eq!(run(&mut p, 1, &mut fast, &mut s), a);
    assert_eq!(fast, full);
    assert_eq!(tuple_of(&fast).1, [198, 18, 0, 10]);
    assert_eq!(tuple_of(&fast).3, 80);
    // TTL 1 on a cached connection: the full path answers with time exceeded.
    let hits = p.counters().proc.verdict_cache_hits;
    let mut pk = Pkt::v4([198, 18, 0, 10], [203, 0, 113, 5]);
    pk.ttl = 1;
    let mut dying = pk.udp(40000, 53, 8);
    let a = run(&mut p, 0, &mut dying, &mut s);
    assert!(matches!(a, Action::Reply { port: 0, .. }), "{a:?}");
    assert_eq!(p.counters().proc.verdict_cache_hits, hits + 1);
    assert_eq!(p.counters().drop_count(DropReason::TtlExceeded), 1);
}

/// One verdict slot per direction: a request/response exchange (directions alternating
/// packet by packet) hits the cache in both directions after one evaluation each.
#[test]
fn alternating_directions_both_hit_the_cache() {
    let mut p = with_rules();
    let mut s = vec![0u8; SCRATCH_LEN];
    let out = || Pkt::v4([198, 18, 0, 10], [203, 0, 113, 5]).udp(40000, 53, 8);
    let back = || from_wan(Pkt::v4([203, 0, 113, 5], [198, 18, 0, 10]).udp(53, 40000, 8));
    for _ in 0..6 {
        assert!(matches!(
            run(&mut p, 0, &mut out(), &mut s),
            Action::Forward { port: 1, .. }
        ));
        assert!(matches!(
            run(&mut p, 1, &mut back(), &mut s),
            Action::Forward { port: 0, .. }
        ));
    }
    // 12 packets: the first (new) and the first of each direction with an entry are
    // evaluated.
    assert_eq!(p.counters().proc.verdict_cache_hits, 12 - 3);
}

/// The prefetch guess (`FlowKey::peek`) is the parser's key for IPv4/IPv6 TCP/UDP and
/// nothing for the rest; a burst prefetch names the entry lines a lookup then reads.
#[test]
fn peeked_keys_equal_parsed_keys_and_prefetch_names_the_entry() {
    use crate::conntrack::FlowKey;
    let frames = [
        Pkt::v4([198, 18, 0, 10], [203, 0, 113, 5]).udp(40000, 53, 8),
        Pkt::v4([198, 18, 0, 10], [203, 0, 113, 5]).tcp(40001, 80, 0x02, 1, 0),
        Pkt::v6("2001:db8:1::10", "2001:db8:99::5").udp(5353, 53, 20),
        Pkt::v6("2001:db8:1::10", "2001:db8:99::5").tcp(40002, 443, 0x02, 7, 0),
    ];
    for f in &frames {
        let Ok(crate::wire::Parsed::Ip(_, ip)) = crate::wire::parse(f, &crate::wire::VERIFY_ALL)
        else {
            panic!("test frame does not parse");
        };
        assert_eq!(FlowKey::peek(f), FlowKey::from_info(&ip, 0));
        assert!(FlowKey::peek(f).is_some());
    }
    let ping = Pkt::v4([198, 18, 0, 10], [203, 0, 113, 5]).echo(1, 1);
    assert_eq!(FlowKey::peek(&ping), None, "not TCP/UDP");
    assert_eq!(FlowKey::peek(&frames[0][..30]), None, "truncated");
    // After one packet of the first flow the burst prefetch names its entry's lines
    // (two per matching entry) besides the two buckets per frame.
    let mut p = pipeline();
    let mut s = vec![0u8; SCRATCH_LEN];
    let mut f = frames[0].clone();
    assert!(matches!(
        run(&mut p, 0, &mut f, &mut s),
        Action::Forward { .. }
    ));
    let mut n = 0;
    p.prepare_vector(&[&frames[0], &frames[1]], |_| n += 1);
    assert_eq!(
        n,
        2 + 2 + 1,
        "2 frames x 2 buckets + the entry's recipe line"
    );
    let mut n = 0;
    p.prepare_vector(&[&frames[2], &frames[3]], |_| n += 1);
    assert_eq!(
        n,
        2 + 2,
        "IPv6 (the full path's): 2 frames x 2 buckets, no entry"
    );
    let mut ping = ping;
    let mut f6 = frames[2].clone();
    assert!(matches!(
        run(&mut p, 0, &mut f6, &mut s),
        Action::Forward { .. }
    ));
    let mut n = 0;
    p.prepare_vector(&[&frames[2], &ping], |_| n += 1);
    assert_eq!(n, 2 + 2, "the IPv6 entry's two lines; nothing for the ping");
    assert!(matches!(
        run(&mut p, 0, &mut ping, &mut s),
        Action::Forward { .. }
    ));
}

/// Sends `n` TTL-expiring packets to `p` at `now`; returns how many were answered.
fn expire_ttl(p: &mut Pipeline, n: usize, now: u64) -> usize {
    let mut s = vec![0u8; SCRATCH_LEN];
    let mut replies = 0;
    for i in 0..n {
        let mut f = Pkt::v4([198, 18, 0, 10], [203, 0, 113, 5])
            .ttl(1)
            .udp(1000 + i as u16, 53, 10);
        match p.process(0, &mut f, now, &mut s) {
            Action::Reply { .. } => replies += 1,
            a => assert_eq!(a, Action::Drop(DropReason::TtlExceeded)),
        }
    }
    replies
}

#[test]
fn icmp_errors_are_rate_limited_like_icmp_msgs_per_sec() {
    use super::pipeline::{ICMP_MSGS_BURST, ICMP_MSGS_PER_SEC};
    assert_eq!((ICMP_MSGS_PER_SEC, ICMP_MSGS_BURST), (1000, 50));
    let mut p = pipeline();
    let t0 = 5_000_000_000;
    assert_eq!(expire_ttl(&mut p, 100, t0), 50, "the burst");
    let c = p.counters();
    assert_eq!(c.proc.icmp_errors, 50);
    assert_eq!(c.proc.icmp_ratelimited, 50);
    assert_eq!(
        c.drop_count(DropReason::TtlExceeded),
        100,
        "all still dropped"
    );
    // 1 ms later: one token back (1000/s).
    assert_eq!(expire_ttl(&mut p, 10, t0 + 1_000_000), 1);
    // 1 s later: the bucket is full again, no more than the burst.
    assert_eq!(expire_ttl(&mut p, 100, t0 + 1_001_000_000), 50);
    assert_eq!(p.counters().proc.icmp_errors, 101);
    assert_eq!(p.counters().proc.icmp_ratelimited, 109);
    // Echo replies take no token.
    let mut s = vec![0u8; SCRATCH_LEN];
    let mut f = Pkt::v4([198, 18, 0, 10], [198, 18, 0, 1]).echo(7, 1);
    assert!(matches!(
        p.process(0, &mut f, t0 + 1_001_000_000, &mut s),
        Action::Forward { port: 0, .. }
    ));
    assert_eq!(p.counters().proc.echo_replies, 1);
    // The published view carries both counters.
    let pc = p.proc_counters();
    assert_eq!((pc.icmp_errors, pc.icmp_ratelimited), (101, 109));
    assert_eq!(pc.echo_replies, 1);
    // The edge counts the 109 `Action::Drop`s; the 101 answered drops come from here.
    assert_eq!(pc.replied(DropReason::TtlExceeded), 101);
    assert_eq!(p.counters().drop_count(DropReason::TtlExceeded), 210);
}

#[test]
fn each_worker_gets_its_share_of_the_icmp_error_budget() {
    let now = 1_000_000_000;
    let mut total = 0;
    for w in 0..2 {
        let mut p = Pipeline::new(w, 2, &config(), routes(), neighbors(), None);
        let sent = expire_ttl(&mut p, 100, now);
        assert_eq!(sent, 25, "worker {w}: half the burst");
        assert_eq!(p.counters().proc.icmp_ratelimited, 75);
        // Half the rate: 40 ms bring 20 tokens back (not 40).
        assert_eq!(expire_ttl(&mut p, 100, now + 40_000_000), 20);
        total += sent;
    }
    assert_eq!(total, 50);
    // More workers than the burst: each keeps one token.
    let mut p = Pipeline::new(0, 64, &config(), routes(), neighbors(), None);
    assert_eq!(expire_ttl(&mut p, 10, now), 1);
}

#[test]
fn icmp_limiter_ignores_time_going_back_and_saturates_long_gaps() {
    use super::pipeline::IcmpLimiter;
    let mut l = IcmpLimiter::new(1000, 2);
    assert!(l.allow(10_000_000_000));
    assert!(l.allow(10_000_000_000));
    assert!(!l.allow(10_000_000_000), "burst spent");
    // Earlier `now` (another clock reading): no refill, and no underflow.
    assert!(!l.allow(5_000_000_000));
    // Half a token's time later: still nothing; the other half: one.
    assert!(!l.allow(10_000_500_000));
    assert!(l.allow(10_001_000_000));
    // A gap of ~585 years: capped at the burst, no overflow.
    assert!(l.allow(u64::MAX));
    assert!(l.allow(u64::MAX));
    assert!(!l.allow(u64::MAX));
}

/// Issue 15: the verdict cache kept 16 bits of the ruleset generation, so a verdict
/// cached under generation g was taken again under g + 65 536. The slot's epoch is exact
/// now: a flow cached under the first generation is evaluated afresh (and dropped) by a
/// generation 65 536 publishes later, even when another flow's path of the new
/// generation has the same path id.
#[test]
fn a_cached_verdict_never_outlives_its_generation_even_after_65536_publishes() {
    let accept = "table ip t {\n chain f {\n  type filter hook forward priority 0; policy accept;\n  udp dport 53 counter accept\n }\n}\n";
    let drop_53 = "table ip t {\n chain f {\n  type filter hook forward priority 0; policy accept;\n  udp dport 53 drop\n }\n}\n";
    let names: crate::rules::PortsByName = [("lan".to_string(), 0u16), ("wan".to_string(), 1u16)]
        .into_iter()
        .collect();
    let (mut p, mut publisher) = with_ruleset(accept);
    let mut s = vec![0u8; SCRATCH_LEN];
    let a = || Pkt::v4([198, 18, 0, 10], [203, 0, 113, 5]).udp(40000, 53, 8);
    let b = || Pkt::v4([198, 18, 0, 10], [203, 0, 113, 5]).udp(40000, 54, 8);
    let fwd = |x: Action| matches!(x, Action::Forward { .. });
    assert!(fwd(run(&mut p, 0, &mut a(), &mut s)), "A: new");
    assert!(
        fwd(run(&mut p, 0, &mut a(), &mut s)),
        "A: evaluated, cached"
    );
    assert!(fwd(run(&mut p, 0, &mut a(), &mut s)), "A: cache hit");
    assert_eq!(p.counters().proc.verdict_cache_hits, 1);
    // 65 536 publishes later the generation's low 16 bits are those of the first.
    let compiled = crate::rules::load_text(drop_53, &names, 1).unwrap();
    let mut last = publisher.publish(compiled);
    for _ in 1..65_536 {
        last = publisher.publish(crate::rules::load_text(drop_53, &names, 1).unwrap());
    }
    assert_eq!(last & 0xffff, 1);
    p.tick(2_000);
    // B is cached under the new generation with the first path id of its table.
    assert!(fwd(run(&mut p, 0, &mut b(), &mut s)), "B: new");
    assert!(
        fwd(run(&mut p, 0, &mut b(), &mut s)),
        "B: evaluated, cached"
    );
    assert_eq!(
        run(&mut p, 0, &mut a(), &mut s),
        Action::Drop(DropReason::FilterDrop),
        "A is evaluated by the running generation"
    );
}

/// When the verdict epoch's bits in the slot wrap, every slot is cleared: a verdict
/// cached just before the wrap is not taken after it.
#[test]
fn the_verdict_epoch_wrap_clears_every_slot() {
    let mut p = with_rules();
    let mut s = vec![0u8; SCRATCH_LEN];
    let out = || Pkt::v4([198, 18, 0, 10], [203, 0, 113, 5]).udp(40000, 53, 8);
    p.set_verdict_epoch((1 << 30) - 1);
    for _ in 0..3 {
        run(&mut p, 0, &mut out(), &mut s);
    }
    assert_eq!(p.counters().proc.verdict_cache_hits, 1);
    // The bump wraps the 30 bits to 0 (then 1): the slot holding epoch 2^30 - 1 would
    // not match anyway; 2^30 bumps later it would, were it not cleared now.
    drop(p.adopt_routes(routes()));
    p.set_verdict_epoch((1 << 30) - 1);
    run(&mut p, 0, &mut out(), &mut s);
    assert_eq!(
        p.counters().proc.verdict_cache_hits,
        1,
        "evaluated: the slot was cleared by the wrap"
    );
}
