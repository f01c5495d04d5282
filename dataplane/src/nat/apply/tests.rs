//! Rewrite tests: frames built by hand with checksums filled from scratch, NATed with
//! `apply`, then checked three ways: the parser's own checksum verification, equality with
//! a from-scratch recomputation, and the expected header fields.

use super::*;
use crate::conntrack::InsertHints;
use crate::nat::rss::SYMMETRIC_RSS_KEY;
use crate::nat::{
    CtNat, NatAction, NatEnv, NatFlags, NatKind, NatRange, Owner, PoolKey, PortAllocator, TupleSet,
};
use crate::wire::{Addr, Parsed, TRUST_ALL, VERIFY_ALL, checksum, parse};

const INSIDE: [u8; 4] = [198, 18, 0, 10];
const REMOTE: [u8; 4] = [203, 0, 113, 9];
const PUBLIC: [u8; 4] = [198, 51, 100, 1];
const TARGET: [u8; 4] = [192, 0, 2, 10];
const ROUTER: [u8; 4] = [203, 0, 113, 254];

fn a4(o: [u8; 4]) -> Addr {
    Addr::from_v4(o)
}

fn ip_info(frame: &[u8], opts: &crate::wire::ParseOptions) -> IpInfo {
    match parse(frame, opts).expect("parses") {
        Parsed::Ip(_, ip) => ip,
        p @ Parsed::Arp(..) => panic!("{p:?}"),
    }
}

/// IPv4 packet bytes (no Ethernet) with `l4` as payload; checksums zero.
fn ipv4(src: [u8; 4], dst: [u8; 4], proto_: u8, l4: &[u8]) -> Vec<u8> {
    let total = u16::try_from(20 + l4.len()).unwrap();
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, proto_, 0, 0]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(l4);
    p
}

/// An Ethernet frame around `ip`, with every checksum filled from scratch.
fn frame(ip: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
    f.extend_from_slice(ip);
    let info = ip_info(&f, &TRUST_ALL);
    rewrite::fill_checksums(&mut f, &info).unwrap();
    f
}

fn udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut l4 = Vec::new();
    l4.extend_from_slice(&sport.to_be_bytes());
    l4.extend_from_slice(&dport.to_be_bytes());
    l4.extend_from_slice(&12u16.to_be_bytes());
    l4.extend_from_slice(&[0, 0, b'p', b'i', b'n', b'g']);
    // fill_checksums keeps a zero UDP/IPv4 checksum ("none"): set a real one first.
    let len = u16::try_from(l4.len()).unwrap();
    let c = checksum::finish(checksum::add(
        checksum::pseudo_v4(src, dst, proto::UDP, len),
        checksum::sum(&l4),
    ));
    let c = if c == 0 { 0xffff } else { c };
    l4[6..8].copy_from_slice(&c.to_be_bytes());
    frame(&ipv4(src, dst, proto::UDP, &l4))
}

fn tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut l4 = Vec::new();
    l4.extend_from_slice(&sport.to_be_bytes());
    l4.extend_from_slice(&dport.to_be_bytes());
    l4.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    frame(&ipv4(src, dst, proto::TCP, &l4))
}

fn echo(src: [u8; 4], dst: [u8; 4], request: bool, id: u16) -> Vec<u8> {
    let mut l4 = vec![if request { 8 } else { 0 }, 0, 0, 0];
    l4.extend_from_slice(&id.to_be_bytes());
    l4.extend_from_slice(&[0, 1, 0xde, 0xad]);
    frame(&ipv4(src, dst, proto::ICMP, &l4))
}

/// ICMP port unreachable from `src` to `dst` quoting the whole of `quoted` (a frame).
fn unreachable(src: [u8; 4], dst: [u8; 4], quoted: &[u8]) -> Vec<u8> {
    let mut l4 = vec![3, 3, 0, 0, 0, 0, 0, 0];
    l4.extend_from_slice(&quoted[14..]);
    frame(&ipv4(src, dst, proto::ICMP, &l4))
}

/// Checks every checksum of a rewritten frame: the parser verifies IP and L4, a
/// from-scratch recomputation leaves it unchanged, and for ICMP errors the quoted IPv4
/// header and UDP datagram verify too.
fn assert_checksums(f: &[u8]) -> IpInfo {
    let info = ip_info(f, &VERIFY_ALL);
    let mut again = f.to_vec();
    rewrite::fill_checksums(&mut again, &info).unwrap();
    assert_eq!(again, f, "incremental and from-scratch checksums differ");
    if let Some(L4Info::IcmpError { inner, .. }) = info.l4 {
        let il3 = usize::from(inner.l3_off);
        let il4 = usize::from(inner.l4_off);
        assert!(
            checksum::verify(checksum::sum(&f[il3..il4])),
            "inner IPv4 header checksum"
        );
        if inner.proto == proto::UDP {
            assert_ne!(&f[il4 + 6..il4 + 8], &[0, 0], "quoted UDP has a checksum");
            let (s, d) = (inner.src.to_v4().unwrap(), inner.dst.to_v4().unwrap());
            let len = u16::try_from(f.len() - il4).unwrap();
            let sum = checksum::add(
                checksum::pseudo_v4(s, d, proto::UDP, len),
                checksum::sum(&f[il4..]),
            );
            assert!(checksum::verify(sum), "inner UDP checksum");
        }
    }
    info
}

fn ports(info: &IpInfo) -> (u16, u16) {
    match info.l4 {
        Some(L4Info::Tcp(t)) => (t.sport, t.dport),
        Some(L4Info::Udp { sport, dport }) => (sport, dport),
        Some(L4Info::IcmpEcho { id, .. }) => (id, id),
        l4 => panic!("{l4:?}"),
    }
}

fn action(kind: NatKind, addr: Option<[u8; 4]>, ports: Option<(u16, u16)>) -> NatAction {
    NatAction {
        kind,
        range: NatRange {
            addr: addr.map(|a| (a4(a), a4(a))),
            ports,
        },
        flags: NatFlags::default(),
    }
}

fn env() -> NatEnv {
    NatEnv {
        egress_addr: Some(a4(PUBLIC)),
        ingress_addr: None,
    }
}

/// A table whose pools hold `busy` ports of `addr` for `proto`.
fn busy_table(addr: Addr, proto: u8, busy: &[u16]) -> TupleSet {
    let mut t = TupleSet::default();
    for &p in busy {
        assert!(t.hold(PoolKey { addr, proto }, p));
    }
    t
}

/// Bind the connection of `first` with one worker; the `busy` ports of the masquerade
/// address are held by other connections.
fn bind(first: &[u8], dnat: Option<NatAction>, snat: Option<NatAction>, busy: &[u16]) -> Binding {
    let info = ip_info(first, &VERIFY_ALL);
    let key = FlowKey::from_info(&info, 0).unwrap();
    let owner = Owner::spread(&SYMMETRIC_RSS_KEY, 128, 1).unwrap();
    let mut al = PortAllocator::new(0);
    al.bind(
        &Tuple::from_key(&key),
        dnat.as_ref(),
        snat.as_ref(),
        &env(),
        &owner,
        &mut busy_table(a4(PUBLIC), key.proto, busy),
    )
    .unwrap()
}

#[test]
fn masquerade_udp_both_directions() {
    let mut out = udp(INSIDE, 5353, REMOTE, 53);
    let b = bind(
        &out,
        None,
        Some(action(NatKind::Masquerade, None, None)),
        &[5353],
    );
    let port = b.reply.dport;
    assert_ne!(port, 5353);
    let info = ip_info(&out, &VERIFY_ALL);
    apply(&mut out, &info, &b, Direction::Original).unwrap();
    let o = assert_checksums(&out);
    assert_eq!(
        (o.src, o.dst, ports(&o)),
        (a4(PUBLIC), a4(REMOTE), (port, 53))
    );

    let mut back = udp(REMOTE, 53, PUBLIC, port);
    let info = ip_info(&back, &VERIFY_ALL);
    apply(&mut back, &info, &b, Direction::Reply).unwrap();
    let r = assert_checksums(&back);
    assert_eq!(
        (r.src, r.dst, ports(&r)),
        (a4(REMOTE), a4(INSIDE), (53, 5353))
    );
}

#[test]
fn dnat_tcp_both_directions() {
    let mut syn = tcp(REMOTE, 40000, PUBLIC, 8080);
    let b = bind(
        &syn,
        Some(action(NatKind::Dnat, Some(TARGET), Some((80, 80)))),
        None,
        &[],
    );
    let info = ip_info(&syn, &VERIFY_ALL);
    apply(&mut syn, &info, &b, Direction::Original).unwrap();
    let o = assert_checksums(&syn);
    assert_eq!(
        (o.src, o.dst, ports(&o)),
        (a4(REMOTE), a4(TARGET), (40000, 80))
    );

    let mut synack = tcp(TARGET, 80, REMOTE, 40000);
    let info = ip_info(&synack, &VERIFY_ALL);
    apply(&mut synack, &info, &b, Direction::Reply).unwrap();
    let r = assert_checksums(&synack);
    assert_eq!(
        (r.src, r.dst, ports(&r)),
        (a4(PUBLIC), a4(REMOTE), (8080, 40000))
    );
}

#[test]
fn icmp_echo_id_is_translated() {
    let mut req = echo(INSIDE, REMOTE, true, 7);
    let b = bind(
        &req,
        None,
        Some(action(NatKind::Masquerade, None, None)),
        &[7],
    );
    let id = b.reply.sport;
    assert_ne!(id, 7);
    let info = ip_info(&req, &VERIFY_ALL);
    apply(&mut req, &info, &b, Direction::Original).unwrap();
    let o = assert_checksums(&req);
    assert_eq!((o.src, ports(&o)), (a4(PUBLIC), (id, id)));

    let mut rep = echo(REMOTE, PUBLIC, false, id);
    let info = ip_info(&rep, &VERIFY_ALL);
    // The reply's conntrack key is the binding's reply key.
    let orig_key =
        FlowKey::from_info(&ip_info(&echo(INSIDE, REMOTE, true, 7), &VERIFY_ALL), 0).unwrap();
    assert_eq!(
        FlowKey::from_info(&info, 0).unwrap(),
        b.reply_key(&orig_key)
    );
    apply(&mut rep, &info, &b, Direction::Reply).unwrap();
    let r = assert_checksums(&rep);
    assert_eq!((r.src, r.dst, ports(&r)), (a4(REMOTE), a4(INSIDE), (7, 7)));
}

/// An ICMP error from a router beyond the NAT about a masqueraded UDP datagram: the outer
/// destination and the quoted source (address and port) go back to the inside host.
#[test]
fn icmp_error_for_a_masqueraded_flow() {
    let first = udp(INSIDE, 5353, REMOTE, 53);
    let b = bind(
        &first,
        None,
        Some(action(NatKind::Masquerade, None, None)),
        &[5353],
    );
    let port = b.reply.dport;
    let sent = udp(PUBLIC, port, REMOTE, 53);
    let mut err = unreachable(ROUTER, PUBLIC, &sent);
    let info = ip_info(&err, &VERIFY_ALL);
    // Conntrack finds it in the reply direction via the inverse of the quoted tuple.
    assert_eq!(
        FlowKey::from_info(&info, 0).unwrap(),
        b.reply_key(&FlowKey::from_info(&ip_info(&first, &VERIFY_ALL), 0).unwrap())
    );
    apply(&mut err, &info, &b, Direction::Reply).unwrap();
    let e = assert_checksums(&err);
    assert_eq!((e.src, e.dst), (a4(ROUTER), a4(INSIDE)));
    let Some(L4Info::IcmpError { inner, .. }) = e.l4 else {
        panic!("{e:?}")
    };
    assert_eq!(
        (inner.src, inner.sport, inner.dst, inner.dport),
        (a4(INSIDE), 5353, a4(REMOTE), 53)
    );
    // The quoted datagram is now byte for byte the one the inside host sent.
    assert_eq!(&err[usize::from(inner.l3_off)..], &first[14..]);
}

/// An ICMP error from the DNAT target about a reply it could not deliver... the other way:
/// the target answers a DNATed datagram with port unreachable; the client must see it come
/// from the public address, quoting what the client sent.
#[test]
fn icmp_error_for_a_dnat_flow() {
    let first = udp(REMOTE, 40000, PUBLIC, 5300);
    let b = bind(
        &first,
        Some(action(NatKind::Dnat, Some(TARGET), Some((53, 53)))),
        None,
        &[],
    );
    let delivered = udp(REMOTE, 40000, TARGET, 53);
    let mut err = unreachable(TARGET, REMOTE, &delivered);
    let info = ip_info(&err, &VERIFY_ALL);
    apply(&mut err, &info, &b, Direction::Reply).unwrap();
    let e = assert_checksums(&err);
    assert_eq!((e.src, e.dst), (a4(PUBLIC), a4(REMOTE)));
    assert_eq!(&err[42..], &first[14..]);
}

#[test]
fn unnated_binding_changes_nothing() {
    let mut f = tcp(INSIDE, 1234, REMOTE, 80);
    let b = bind(&f, None, None, &[]);
    let before = f.clone();
    let info = ip_info(&f, &VERIFY_ALL);
    apply(&mut f, &info, &b, Direction::Original).unwrap();
    assert_eq!(f, before);
}

#[test]
fn truncated_summary_is_an_error_not_a_panic() {
    let mut f = udp(INSIDE, 5353, REMOTE, 53);
    let b = bind(
        &f,
        None,
        Some(action(NatKind::Masquerade, None, None)),
        &[5353],
    );
    let info = ip_info(&f, &VERIFY_ALL);
    f.truncate(30);
    assert_eq!(
        apply(&mut f, &info, &b, Direction::Original),
        Err(RewriteError::OutOfBounds)
    );
}

/// NAT on top of the conntrack engine, 4 workers: 40 inside hosts masquerade UDP from the
/// same source port to one server. Each worker binds against its own table only (its
/// port pools, through `CtNat`); every insert succeeds (no clash), every reply hashes to
/// its worker, is found there in the reply direction, and is rewritten back to the right
/// inside host with valid checksums. Deleting the entries gives every port back.
#[test]
fn masquerade_through_conntrack_tables_on_four_workers() {
    use crate::conntrack::{Table, tunables::Tunables};
    let owner = Owner::spread(&SYMMETRIC_RSS_KEY, 128, 4).unwrap();
    let mut tables: Vec<Table> = (0..4)
        .map(|w| Table::new(256, Tunables::default(), w))
        .collect();
    let mut als: Vec<PortAllocator> = (0..4).map(PortAllocator::new).collect();
    let masq = action(NatKind::Masquerade, None, None);
    let mut replies = Vec::new();
    for h in 0..40u8 {
        let inside = [198, 18, 0, 100 + h];
        let mut f = udp(inside, 5353, REMOTE, 53);
        let info = ip_info(&f, &VERIFY_ALL);
        let key = FlowKey::from_info(&info, 0).unwrap();
        let w = usize::from(owner.owner(&Tuple::from_key(&key)));
        let b = als[w]
            .bind(
                &Tuple::from_key(&key),
                None,
                Some(&masq),
                &env(),
                &owner,
                &mut CtNat::new(&mut tables[w], &key),
            )
            .unwrap();
        assert_eq!(usize::from(owner.owner(&b.reply)), w);
        let hints = InsertHints {
            miss: None,
            nat_port: b.port_held,
        };
        tables[w]
            .insert_with(key, b.reply_key(&key), &info, 1_000, hints)
            .unwrap();
        apply(&mut f, &info, &b, Direction::Original).unwrap();
        assert_checksums(&f);
        replies.push((inside, w, b));
    }
    for (inside, w, b) in replies {
        let mut back = udp(REMOTE, 53, PUBLIC, b.reply.dport);
        let info = ip_info(&back, &VERIFY_ALL);
        let key = FlowKey::from_info(&info, 0).unwrap();
        assert_eq!(usize::from(owner.owner(&Tuple::from_key(&key))), w);
        let (_, dir) = tables[w]
            .lookup(&key)
            .expect("reply found in its worker's table");
        assert_eq!(dir, Direction::Reply);
        apply(&mut back, &info, &b, dir).unwrap();
        let r = assert_checksums(&back);
        assert_eq!((r.dst, ports(&r)), (a4(inside), (53, 5353)));
        let held = PoolKey {
            addr: a4(PUBLIC),
            proto: proto::UDP,
        };
        assert!(tables[w].port_pools().is_held(&held, b.reply.dport));
        let (id, _) = tables[w].lookup(&key).unwrap();
        assert!(tables[w].remove(id, 2_000));
        assert!(!tables[w].port_pools().is_held(&held, b.reply.dport));
    }
    for t in &tables {
        assert_eq!(t.port_pools().stats().bad_releases, 0);
    }
}

fn a6(last: u8) -> Addr {
    Addr::from_v6([
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, last,
    ])
}

/// UDP over IPv6 (checksums from scratch).
fn udp6(src: Addr, sport: u16, dst: Addr, dport: u16) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x86, 0xdd];
    f.extend_from_slice(&[0x60, 0, 0, 0, 0, 12, proto::UDP, 64]);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&[0, 12, 0, 0, b'p', b'o', b'n', b'g']);
    let info = ip_info(&f, &TRUST_ALL);
    rewrite::fill_checksums(&mut f, &info).unwrap();
    f
}

#[test]
fn snat66_udp_both_directions() {
    let mut out = udp6(a6(1), 5353, a6(0xee), 53);
    let info = ip_info(&out, &VERIFY_ALL);
    let key = FlowKey::from_info(&info, 0).unwrap();
    let owner = Owner::spread(&SYMMETRIC_RSS_KEY, 128, 1).unwrap();
    let snat = NatAction {
        kind: NatKind::Snat,
        range: NatRange {
            addr: Some((a6(0x10), a6(0x10))),
            ports: None,
        },
        flags: NatFlags::default(),
    };
    let b = PortAllocator::new(0)
        .bind(
            &Tuple::from_key(&key),
            None,
            Some(&snat),
            &env(),
            &owner,
            &mut busy_table(a6(0x10), proto::UDP, &[5353]),
        )
        .unwrap();
    let port = b.reply.dport;
    apply(&mut out, &info, &b, Direction::Original).unwrap();
    let o = assert_checksums(&out);
    assert_eq!((o.src, o.dst, ports(&o)), (a6(0x10), a6(0xee), (port, 53)));
    let mut back = udp6(a6(0xee), 53, a6(0x10), port);
    let info = ip_info(&back, &VERIFY_ALL);
    apply(&mut back, &info, &b, Direction::Reply).unwrap();
    let r = assert_checksums(&back);
    assert_eq!((r.src, r.dst, ports(&r)), (a6(0xee), a6(1), (53, 5353)));
}
