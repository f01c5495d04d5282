//! Parse-level tests: real captures, one malformed case per drop reason, and properties.

use super::testdata::{capture, captures, source_routed};
use super::*;
use crate::DropReason;
use proptest::prelude::*;

fn ip_of(p: Parsed) -> IpInfo {
    match p {
        Parsed::Ip(_, ip) => ip,
        Parsed::Arp(..) => panic!("expected IP, got {p:?}"),
    }
}

#[test]
fn every_capture_parses_with_full_verification() {
    let all = captures();
    assert!(all.len() >= 40);
    for (desc, frame) in &all {
        let p = parse(frame, &VERIFY_ALL).unwrap_or_else(|e| panic!("{desc}: {e:?}"));
        check_invariants(&p, frame.len()).unwrap_or_else(|e| panic!("{desc}: {e}"));
    }
}

#[test]
fn tcp_syn_v4() {
    let f = capture("198.18.0.1.44370 > 198.18.0.2.5001: Flags [S]");
    let ip = ip_of(parse(&f, &VERIFY_ALL).unwrap());
    assert_eq!(ip.family, Family::V4);
    assert_eq!(ip.src, Addr::from_v4([198, 18, 0, 1]));
    assert_eq!(
        (ip.proto, ip.ttl, ip.l3_off, ip.l4_off, ip.ip_len),
        (6, 64, 14, 34, 60)
    );
    let Some(L4Info::Tcp(t)) = ip.l4 else {
        panic!("{ip:?}")
    };
    assert_eq!((t.sport, t.dport, t.flags.0), (44370, 5001, TcpFlags::SYN));
    assert_eq!((t.mss, t.wscale, t.sack_perm), (Some(1460), Some(10), true));
}

#[test]
fn tcp_data_v6() {
    let f = capture("2001:db8::1.40076 > 2001:db8::2.5002: Flags [P.]");
    let ip = ip_of(parse(&f, &VERIFY_ALL).unwrap());
    assert_eq!(
        (ip.family, ip.l4_off, ip.ip_len),
        (Family::V6, 54, 40 + 32 + 7)
    );
    let Some(L4Info::Tcp(t)) = ip.l4 else {
        panic!("{ip:?}")
    };
    assert_eq!((t.dport, t.payload_len), (5002, 7));
}

#[test]
fn udp_and_echo() {
    let ip = ip_of(
        parse(
            &capture("2001:db8::1.39467 > 2001:db8::2.5004: UDP"),
            &VERIFY_ALL,
        )
        .unwrap(),
    );
    assert_eq!(
        ip.l4,
        Some(L4Info::Udp {
            sport: 39467,
            dport: 5004
        })
    );
    let ip = ip_of(parse(&capture("ICMP6, echo reply, id 14508"), &VERIFY_ALL).unwrap());
    assert_eq!(
        ip.l4,
        Some(L4Info::IcmpEcho {
            request: false,
            id: 14508,
            seq: 1
        })
    );
}

#[test]
fn icmp_errors_carry_the_inner_tuple() {
    let f = capture("udp port 5003 unreachable");
    let ip = ip_of(parse(&f, &VERIFY_ALL).unwrap());
    let Some(L4Info::IcmpError {
        icmp_type: 3,
        code: 3,
        inner,
    }) = ip.l4
    else {
        panic!("{ip:?}")
    };
    assert_eq!(inner.src, Addr::from_v4([198, 18, 0, 1]));
    assert_eq!(inner.dst, Addr::from_v4([198, 18, 0, 2]));
    assert_eq!((inner.proto, inner.sport, inner.dport), (17, 46217, 5003));
    assert_eq!((inner.l3_off, inner.l4_off), (42, 62));

    let f = capture("unreachable port, 2001:db8::2 udp port 5004");
    let ip = ip_of(parse(&f, &VERIFY_ALL).unwrap());
    let Some(L4Info::IcmpError {
        icmp_type: 1,
        code: 4,
        inner,
    }) = ip.l4
    else {
        panic!("{ip:?}")
    };
    assert_eq!((inner.proto, inner.sport, inner.dport), (17, 39467, 5004));
    assert_eq!((inner.l3_off, inner.l4_off), (62, 102));
}

#[test]
fn nd_mld_and_arp() {
    let ip = ip_of(parse(&capture("neighbor solicitation"), &VERIFY_ALL).unwrap());
    assert_eq!(
        ip.l4,
        Some(L4Info::IcmpOther {
            icmp_type: 135,
            code: 0
        })
    );
    let ip = ip_of(
        parse(
            &capture("HBH ICMP6, multicast listener report"),
            &VERIFY_ALL,
        )
        .unwrap(),
    );
    assert_eq!((ip.proto, ip.l4_off), (58, 14 + 40 + 8));
    assert_eq!(
        ip.l4,
        Some(L4Info::IcmpOther {
            icmp_type: 143,
            code: 0
        })
    );
    let Parsed::Arp(l2, arp) = parse(&capture("ARP, Request"), &VERIFY_ALL).unwrap() else {
        panic!()
    };
    assert_eq!(
        (l2.ethertype, arp.operation, arp.target_ip),
        (0x0806, 1, [198, 18, 0, 2])
    );
}

#[test]
fn fragments_first_has_l4_later_has_none() {
    let ip = ip_of(parse(&capture("ICMP echo request, id 14555"), &VERIFY_ALL).unwrap());
    assert_eq!(ip.frag, Fragment::First);
    assert!(matches!(
        ip.l4,
        Some(L4Info::IcmpEcho {
            request: true,
            id: 14555,
            ..
        })
    ));
    let ip = ip_of(parse(&capture("198.18.0.1 > 198.18.0.2: ip-proto-1"), &VERIFY_ALL).unwrap());
    assert_eq!((ip.frag, ip.l4), (Fragment::Later, None));
}

#[test]
fn vlan_tag_is_stripped_and_qinq_refused() {
    let f = capture("ICMP echo request, id 14507");
    let mut t = f[..12].to_vec();
    t.extend_from_slice(&[0x81, 0x00, 0x20, 0x2a]);
    t.extend_from_slice(&f[12..]);
    let p = parse(&t, &VERIFY_ALL).unwrap();
    check_invariants(&p, t.len()).unwrap();
    let Parsed::Ip(l2, ip) = p else { panic!() };
    assert_eq!((l2.vlan, l2.l3_off, ip.l4_off), (Some(42), 18, 38));
    let mut q = t.clone();
    q[16..18].copy_from_slice(&[0x81, 0x00]);
    assert_eq!(parse(&q, &VERIFY_ALL), Err(DropReason::BadVlan));
    let mut q = f.clone();
    q[12..14].copy_from_slice(&[0x88, 0xa8]);
    assert_eq!(parse(&q, &VERIFY_ALL), Err(DropReason::BadVlan));
}

/// One malformed frame per parse-stage drop reason.
#[test]
fn each_drop_reason() {
    let echo = capture("ICMP echo request, id 14507");
    let syn = capture("198.18.0.1.44370 > 198.18.0.2.5001: Flags [S]");
    let udp = capture("198.18.0.1.46217 > 198.18.0.2.5003: UDP");
    let unreach = capture("udp port 5003 unreachable");
    let arp = capture("ARP, Request");
    let mutate = |f: &[u8], i: usize, v: u8| {
        let mut f = f.to_vec();
        f[i] = v;
        f
    };
    let cases: Vec<(Vec<u8>, DropReason)> = vec![
        (echo[..13].to_vec(), DropReason::Truncated),
        (echo[..30].to_vec(), DropReason::Truncated),
        (mutate(&echo, 12, 0x88), DropReason::UnsupportedEthertype),
        (mutate(&echo, 14, 0x55), DropReason::BadIpVersion),
        (mutate(&echo, 14, 0x43), DropReason::BadIhl),
        (echo[..90].to_vec(), DropReason::BadIpLength),
        (mutate(&echo, 24, 0xff), DropReason::BadIpChecksum),
        (mutate(&syn, 46, 0x40), DropReason::BadTcpHeader),
        (mutate(&syn, 40, 0xff), DropReason::BadL4Checksum),
        (mutate(&echo, 60, 0xff), DropReason::BadL4Checksum),
        (mutate(&udp, 39, 7), DropReason::BadUdpLength),
        (unreach[..34 + 8 + 19].to_vec(), DropReason::BadIpLength),
        (mutate(&arp, 19, 16), DropReason::BadArp),
    ];
    for (i, (f, want)) in cases.iter().enumerate() {
        assert_eq!(parse(f, &VERIFY_ALL), Err(*want), "case {i}");
    }
    // BadSourceAddress (the edit breaks the header checksum, so trust checksums).
    assert_eq!(
        parse(&mutate(&echo, 26, 224), &TRUST_ALL),
        Err(DropReason::BadSourceAddress)
    );
    // Checksum cases pass when checksums are trusted.
    assert!(parse(&mutate(&echo, 24, 0xff), &TRUST_ALL).is_ok());
    assert!(parse(&mutate(&syn, 40, 0xff), &TRUST_ALL).is_ok());
    // BadIcmp: an error whose quote is cut inside the embedded IP header (lengths fixed).
    let mut f = unreach[..34 + 8 + 12].to_vec();
    f[16..18].copy_from_slice(&(20u16 + 8 + 12).to_be_bytes());
    assert_eq!(parse(&f, &TRUST_ALL), Err(DropReason::BadIcmp));
    // BadIpOptions: IPv6 hop-by-hop header in second place.
    let mld = capture("HBH ICMP6, multicast listener report");
    let mut f = mld.clone();
    f[20] = 60; // fixed header says dest-opts, whose next header (byte 54) is hop-by-hop
    f[54] = 0;
    assert_eq!(parse(&f, &TRUST_ALL), Err(DropReason::BadIpOptions));
}

#[test]
fn source_routed_frames_are_dropped_like_linux() {
    let frames = source_routed();
    assert_eq!(frames.len(), 2);
    for (desc, frame) in &frames {
        // Linux's own frames: well formed, checksums complete.
        let ip = ipv4::Ipv4Packet::new_checked(&frame[14..]).unwrap();
        assert!(ip.verify_checksum(), "{desc}");
        assert!(ip.has_source_route(), "{desc}");
        assert_eq!(
            parse(frame, &VERIFY_ALL),
            Err(DropReason::SourceRoute),
            "{desc}"
        );
        // The same option turned into record route (type 7, same framing) is forwarded:
        // only a source route is refused, not every option.
        let mut f = frame.clone();
        f[34] = 7;
        let mut ip = ipv4::Ipv4Packet::new_unchecked(&mut f[14..]);
        ip.fill_checksum();
        let p = parse(&f, &VERIFY_ALL).unwrap_or_else(|e| panic!("{desc}: {e:?}"));
        assert!(
            matches!(ip_of(p).l4, Some(L4Info::Udp { dport: 5005, .. })),
            "{desc}"
        );
    }
    // A source route behind a NOP and another option is found too.
    let (_, lsrr) = &frames[0];
    let mut f = lsrr[..14].to_vec();
    f.extend_from_slice(&[0x48, 0, 0, 0, 0, 0, 0x40, 0, 0x40, 0x11, 0, 0]);
    f.extend_from_slice(&[198, 18, 0, 1, 198, 18, 0, 2]);
    f.extend_from_slice(&[1, 7, 3, 4, 0x83, 3, 4, 0, 0, 0, 0, 0]);
    f.extend_from_slice(&[0x9c, 0x40, 0x13, 0x8d, 0, 8, 0, 0]);
    let len = u16::try_from(f.len() - 14).unwrap();
    f[16..18].copy_from_slice(&len.to_be_bytes());
    ipv4::Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
    assert_eq!(parse(&f, &TRUST_ALL), Err(DropReason::SourceRoute));
    // Without the source route (NOPs in its place) the same header parses.
    f[38..41].copy_from_slice(&[1, 1, 1]);
    ipv4::Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
    assert!(parse(&f, &TRUST_ALL).is_ok());
}

#[test]
fn offload_flags() {
    let echo = capture("ICMP echo request, id 14507");
    let mut bad = echo.clone();
    bad[24] ^= 0xff;
    let nic_good = ParseOptions::with_offload(HwCsum::Good, HwCsum::Good);
    assert!(parse(&bad, &nic_good).is_ok());
    let nic_bad_ip = ParseOptions::with_offload(HwCsum::Bad, HwCsum::Unknown);
    assert_eq!(parse(&echo, &nic_bad_ip), Err(DropReason::BadIpChecksum));
    let nic_bad_l4 = ParseOptions {
        hw_l4: HwCsum::Bad,
        ..TRUST_ALL
    };
    assert_eq!(parse(&echo, &nic_bad_l4), Err(DropReason::BadL4Checksum));
    let nic_unknown = ParseOptions::with_offload(HwCsum::Unknown, HwCsum::Unknown);
    assert_eq!(parse(&bad, &nic_unknown), Err(DropReason::BadIpChecksum));
}

#[test]
fn udp_zero_checksum_rule() {
    let mut v4 = capture("198.18.0.1.46217 > 198.18.0.2.5003: UDP");
    v4[40..42].copy_from_slice(&[0, 0]);
    assert!(parse(&v4, &VERIFY_ALL).is_ok());
    let mut v6 = capture("2001:db8::1.39467 > 2001:db8::2.5004: UDP");
    v6[60..62].copy_from_slice(&[0, 0]);
    assert_eq!(parse(&v6, &VERIFY_ALL), Err(DropReason::BadL4Checksum));
}

#[test]
fn bad_sources() {
    let echo = capture("ICMP echo request, id 14507");
    for src in [[127, 0, 0, 1], [255, 255, 255, 255], [239, 1, 2, 3]] {
        let mut f = echo.clone();
        f[26..30].copy_from_slice(&src);
        assert_eq!(
            parse(&f, &TRUST_ALL),
            Err(DropReason::BadSourceAddress),
            "{src:?}"
        );
    }
    let mut f = echo.clone();
    f[26..30].copy_from_slice(&[0, 0, 0, 0]);
    assert!(parse(&f, &TRUST_ALL).is_ok());
    let e6 = capture("ICMP6, echo request");
    let mut loopback = [0u8; 16];
    loopback[15] = 1;
    let mapped = Addr::from_v4([192, 0, 2, 1]).0;
    let mut mcast = [0u8; 16];
    mcast[0] = 0xff;
    for src in [loopback, mapped, mcast] {
        let mut f = e6.clone();
        f[22..38].copy_from_slice(&src);
        assert_eq!(parse(&f, &TRUST_ALL), Err(DropReason::BadSourceAddress));
    }
}

proptest! {
    #[test]
    fn parse_never_panics_on_arbitrary_bytes(
        frame in proptest::collection::vec(any::<u8>(), 0..200),
        tagged in any::<bool>(),
        etype in prop::sample::select(vec![0x0800u16, 0x86dd, 0x0806]),
    ) {
        let mut f = frame;
        if f.len() >= 14 {
            f[12..14].copy_from_slice(&etype.to_be_bytes());
            if tagged && f.len() >= 18 {
                f[12..14].copy_from_slice(&[0x81, 0]);
                f[16..18].copy_from_slice(&etype.to_be_bytes());
            }
        }
        for opts in [VERIFY_ALL, TRUST_ALL] {
            if let Ok(p) = parse(&f, &opts) {
                prop_assert_eq!(check_invariants(&p, f.len()), Ok(()));
            }
        }
    }

    #[test]
    fn mutated_captures_never_panic(
        pick in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let all = captures();
        let mut f = all[pick.index(all.len())].1.clone();
        for (at, v) in edits {
            let i = at.index(f.len());
            f[i] = v;
        }
        let len = cut.index(f.len() + 1);
        f.truncate(len);
        if let Ok(p) = parse(&f, &TRUST_ALL) {
            prop_assert_eq!(check_invariants(&p, f.len()), Ok(()));
        }
    }
}

/// Fuzz finding (wire_rewrite, 2026-12-01): parse with TRUST_ALL, fill the checksums,
/// then rewrite the echo identifier of an ICMP echo reply behind a 48-byte IPv4 header.
#[test]
fn fuzz_wire_rewrite_echo_id_keeps_a_valid_checksum() {
    let data: &[u8] = &[
        0, 255, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 254, 255, 46, 0, 8, 0, 76, 76, 0, 90,
        90, 90, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 5, 5, 5, 5, 5, 0, 44, 1, 0, 0, 1, 0, 255, 0, 0, 0, 0, 32,
        0, 0, 0, 0, 0, 0, 4, 0, 10, 0, 240, 46, 0, 8, 0, 76, 76, 0, 90, 90, 90, 90, 90, 90, 90, 90,
        63, 90, 90, 90, 90, 90, 90, 17, 90, 0, 0, 0, 0, 0, 0, 0, 0, 5, 5, 5, 5, 5, 5, 5, 5, 5, 255,
        90, 90, 35, 90, 1, 0, 0, 0, 90, 5, 5, 5, 5, 5, 0, 0, 90, 90, 255, 255, 255, 255, 143, 0,
        255, 255, 255, 245, 0, 255, 5, 5, 5, 5, 255, 90, 90, 90, 90, 1, 0, 0, 0, 90, 0, 5, 0, 5, 5,
        5, 5, 90, 90, 255, 255, 255, 255, 143, 0, 255, 255, 255, 245, 0, 90, 90, 0, 5, 90, 0, 0, 0,
        0, 0, 0, 32, 0, 0, 0, 0, 0, 5, 5, 5, 5, 5, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 90, 90, 90, 90,
        90, 90, 90, 90, 90, 90, 90, 90, 90, 90, 90, 0, 0, 0, 0, 0, 0, 0, 246, 0, 0, 0, 6, 0, 0, 0,
        0, 249, 0, 0, 0, 0, 0, 5, 0, 0, 5, 76, 176, 179, 255, 255, 255, 245, 0, 255, 61,
    ];
    let (ctl, frame) = data.split_at(8);
    let mut f = frame.to_vec();
    let Ok(Parsed::Ip(_, ip)) = parse(&f, &TRUST_ALL) else {
        panic!("does not parse");
    };
    rewrite::fill_checksums(&mut f, &ip).unwrap();
    assert!(parse(&f, &VERIFY_ALL).is_ok(), "filled");
    let port = u16::from_be_bytes([ctl[3], ctl[4]]);
    rewrite::set_src_port(&mut f, &ip, port).unwrap();
    let r = parse(&f, &VERIFY_ALL);
    assert!(r.is_ok(), "{r:?} {:?}", ip);
}
