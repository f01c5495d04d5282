//! Takeover announcements from the slow path (docs/ha.md): gratuitous ARP and unsolicited
//! neighbour advertisements, byte by byte.

use std::sync::Arc;
use std::time::Duration;

use super::pipe_tests::{LAN_MAC, WAN_MAC, assert_checksums, ports, routes, v4};
use super::slowpath::{SlowOut, SlowPath};
use crate::ha::announce::Announcer;
use crate::route::NeighConfig;
use crate::wire::Addr;

fn v6(s: &str) -> Addr {
    Addr::from(s.parse::<std::net::IpAddr>().unwrap())
}

fn sent(out: &[SlowOut<Vec<u8>>]) -> Vec<(u16, &[u8])> {
    out.iter()
        .map(|o| match o {
            SlowOut::Send { port, frame } => (*port, frame.as_slice()),
            other => panic!("not a built frame: {other:?}"),
        })
        .collect()
}

/// A gratuitous ARP as `arping -U` sends it: broadcast, request, sender = target.
fn assert_garp(f: &[u8], mac: [u8; 6], ip: [u8; 4]) {
    assert_eq!(f.len(), 60);
    assert_eq!(&f[0..6], &[0xff; 6], "broadcast");
    assert_eq!(&f[6..12], &mac);
    assert_eq!(&f[12..14], &[0x08, 0x06], "ARP");
    assert_eq!(&f[14..20], &[0, 1, 8, 0, 6, 4], "Ethernet / IPv4");
    assert_eq!(&f[20..22], &[0, 1], "operation 1 (request)");
    assert_eq!(&f[22..28], &mac, "sender MAC");
    assert_eq!(&f[28..32], &ip, "sender IP");
    assert_eq!(&f[32..38], &[0; 6], "target MAC");
    assert_eq!(&f[38..42], &ip, "target IP = sender IP");
}

/// An unsolicited NA (RFC 4861 §7.2.6): all-nodes, O set, S clear, target LLA.
fn assert_unsolicited_na(f: &[u8], mac: [u8; 6], addr: Addr) {
    assert_eq!(&f[0..6], &[0x33, 0x33, 0, 0, 0, 1], "all-nodes MAC");
    assert_eq!(&f[6..12], &mac);
    assert_eq!(&f[12..14], &[0x86, 0xdd]);
    let ip = &f[14..];
    assert_eq!(ip[6], 58, "ICMPv6");
    assert_eq!(ip[7], 255, "hop limit");
    assert_eq!(&ip[8..24], &addr.0, "source = the address");
    assert_eq!(&ip[24..40], &v6("ff02::1").0, "all-nodes");
    let m = &ip[40..];
    assert_eq!((m[0], m[1]), (136, 0), "neighbour advertisement");
    assert_eq!(m[4], 0x80 | 0x20, "R and O set, S clear");
    assert_eq!(&m[8..24], &addr.0, "target");
    assert_eq!(&m[24..26], &[2, 1], "target link-layer address option");
    assert_eq!(&m[26..32], &mac);
    assert_checksums(f, 14);
}

#[test]
fn announce_sends_garp_and_unsolicited_na_for_each_own_address_on_its_port() {
    let mut sp = SlowPath::<Vec<u8>>::new(ports(), routes(), NeighConfig::default());
    let mut out = Vec::new();
    let r = sp.announce(&[], &mut out);
    assert_eq!((r.garp, r.na), (2, 2));
    assert!(r.not_local.is_empty());
    let frames = sent(&out);
    // Sorted by address: v4 before v6.
    assert_eq!(frames.len(), 4);
    assert_eq!(frames[0].0, 0);
    assert_garp(frames[0].1, LAN_MAC, [198, 18, 0, 1]);
    assert_eq!(frames[1].0, 1);
    assert_garp(frames[1].1, WAN_MAC, [198, 19, 0, 1]);
    assert_eq!(frames[2].0, 0);
    assert_unsolicited_na(frames[2].1, LAN_MAC, v6("2001:db8:1::1"));
    assert_eq!(frames[3].0, 1);
    assert_unsolicited_na(frames[3].1, WAN_MAC, v6("2001:db8:2::1"));
    assert_eq!(sp.counters().garp_sent, 2);
    assert_eq!(sp.counters().unsolicited_na_sent, 2);
}

#[test]
fn announce_of_listed_addresses_skips_foreign_ones_and_repeats() {
    let mut sp = SlowPath::<Vec<u8>>::new(ports(), routes(), NeighConfig::default());
    let foreign = v4([198, 19, 0, 99]);
    for round in 1..=2u64 {
        let mut out = Vec::new();
        let r = sp.announce(&[v4([198, 19, 0, 1]), foreign], &mut out);
        assert_eq!((r.garp, r.na), (1, 0));
        assert_eq!(r.not_local, vec![foreign]);
        let frames = sent(&out);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].0, 1, "the port owning the address");
        assert_garp(frames[0].1, WAN_MAC, [198, 19, 0, 1]);
        assert_eq!(sp.counters().garp_sent, round);
    }
}

#[test]
fn tick_serves_an_announcer_request_once() {
    let mut sp = SlowPath::<Vec<u8>>::new(ports(), routes(), NeighConfig::default());
    let a = Arc::new(Announcer::default());
    sp.set_announcer(a.clone());
    let mut out = Vec::new();
    sp.tick(0, &mut out);
    assert!(out.is_empty(), "nothing asked");
    let g = a.request(vec![v6("2001:db8:2::1")]);
    sp.tick(1, &mut out);
    assert_eq!(sent(&out).len(), 1);
    assert_unsolicited_na(sent(&out)[0].1, WAN_MAC, v6("2001:db8:2::1"));
    let r = a.wait(g, Duration::ZERO).expect("served");
    assert_eq!((r.garp, r.na), (0, 1));
    out.clear();
    sp.tick(2, &mut out);
    assert!(out.is_empty(), "served once");
}

/// An HA backup (docs/ha.md, "Backup role"): no ARP / NS answers for its standby service
/// addresses and no probes from them, until a takeover's announcement; other own
/// addresses are answered all along.
#[test]
fn a_backup_is_silent_for_its_service_addresses_until_the_takeover_announces_them() {
    use super::pipe_tests::HOST_MAC;
    let mut sp = SlowPath::<Vec<u8>>::new(ports(), routes(), NeighConfig::default());
    let lan = [198, 18, 0, 1];
    let host = [198, 18, 0, 10];
    sp.set_standby(vec![v4(lan), v6("2001:db8:1::1")]);
    let arp_req = |target: [u8; 4]| {
        let mut f = vec![0u8; 60];
        let a = crate::wire::ArpInfo {
            operation: 1,
            sender_mac: HOST_MAC,
            sender_ip: host,
            target_mac: [0; 6],
            target_ip: target,
        };
        super::pipe_build::arp(&mut f, [0xff; 6], &a).unwrap();
        f
    };
    let mut out = Vec::new();
    sp.handle(0, arp_req(lan), 0, &mut out);
    assert!(
        matches!(out.as_slice(), [SlowOut::Consumed(_)]),
        "no answer while standby: {out:?}"
    );
    assert_eq!(sp.counters().arp_replies, 0);
    assert_eq!(sp.counters().standby_silent, 1);
    // The wan address is not a service address: answered.
    out.clear();
    let mut wan_req = arp_req([198, 19, 0, 1]);
    wan_req[28..32].copy_from_slice(&[198, 19, 0, 10]);
    sp.handle(1, wan_req, 0, &mut out);
    assert!(
        matches!(out.as_slice(), [SlowOut::Transmit { port: 1, .. }]),
        "{out:?}"
    );
    // A probe from the lan port is sent from 0.0.0.0 (RFC 5227), not from the address.
    out.clear();
    let f = super::pipe_tests::Pkt::v4([198, 19, 0, 10], [198, 18, 0, 77]).udp(1, 2, 0);
    sp.handle(1, f, 0, &mut out);
    let [SlowOut::Send { port: 0, frame }] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert_eq!(&frame[20..22], &[0, 1], "request");
    assert_eq!(&frame[22..28], &LAN_MAC);
    assert_eq!(&frame[28..32], &[0; 4], "sender IP 0.0.0.0");
    assert_eq!(&frame[38..42], &[198, 18, 0, 77]);
    // IPv6: no solicitation from a standby source at all.
    out.clear();
    let f = super::pipe_tests::Pkt::v6("2001:db8:2::10", "2001:db8:1::77").udp(1, 2, 0);
    sp.handle(1, f, 0, &mut out);
    assert!(
        out.iter().all(|o| !matches!(o, SlowOut::Send { .. })),
        "{out:?}"
    );
    assert_eq!(sp.counters().standby_silent, 2);

    // Takeover of the IPv4 address: announced, then answered; the IPv6 one stays silent.
    out.clear();
    let r = sp.announce(&[v4(lan)], &mut out);
    assert_eq!(r.garp, 1);
    assert_eq!(sp.standby(), &[v6("2001:db8:1::1")]);
    out.clear();
    sp.handle(0, arp_req(lan), 0, &mut out);
    let [SlowOut::Transmit { port: 0, frame }] = out.as_slice() else {
        panic!("answered after takeover: {out:?}")
    };
    assert_eq!(&frame[20..22], &[0, 2], "reply");
    assert_eq!(&frame[22..28], &LAN_MAC);
    assert_eq!(&frame[28..32], &lan);
    assert_eq!(sp.counters().arp_replies, 2);
    // A takeover naming nothing leaves standby for every address.
    out.clear();
    sp.announce(&[], &mut out);
    assert!(sp.standby().is_empty());
}
