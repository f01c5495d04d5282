//! FTP NAT and expected connections that follow their master's NAT, through the whole
//! pipeline (docs/helpers.md, "NAT"): the announcement text rewritten to the masquerade
//! (or DNAT) address, the TCP sequence numbers adjusted in both directions for the length
//! change across several corrections and a retransmission, the expectation made for the
//! translated tuple, and the data connection DNATed back to the client (FTP active,
//! EPRT over IPv6, TFTP) or to the real server (passive behind DNAT).

use super::Action;
use super::helper_tests::{pipeline_with, udp};
use super::pipe_tests::{Pkt, assert_checksums};
use super::pipeline::Pipeline;
use crate::helper::{ExpectNat, ExpectTable, Expectation, HelperKind};
use crate::wire::{self, Addr, Family, IpInfo, L4Info, Parsed, proto};
use std::sync::Arc;

const MASQ_RULES: &str = "table ip f {
	ct helper ftp-standard {
		type \"ftp\" protocol tcp
	}
	ct helper tftp-x {
		type \"tftp\" protocol udp
	}
	chain fwd {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		tcp dport 21 ct state new ct helper set \"ftp-standard\" accept
		udp dport 69 ct state new ct helper set \"tftp-x\" accept
	}
	chain post {
		type nat hook postrouting priority srcnat;
		oifname \"wan\" masquerade
	}
}
table ip6 f6 {
	ct helper ftp-standard {
		type \"ftp\" protocol tcp
	}
	chain fwd {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		tcp dport 21 ct state new ct helper set \"ftp-standard\" accept
	}
	chain post {
		type nat hook postrouting priority srcnat;
		oifname \"wan\" masquerade
	}
}
";

const CLIENT: [u8; 4] = [198, 18, 0, 10];
const SERVER: [u8; 4] = [203, 0, 113, 5];
/// fwd's wan address: the masquerade address.
const MASQ: [u8; 4] = [198, 19, 0, 1];

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH_ACK: u8 = 0x18;

use super::helper_tests::go_out as run;

fn leaves(a: Action, port: u16) -> bool {
    matches!(a, Action::Forward { port: p, .. } | Action::Reply { port: p, .. } if p == port)
}

/// The IP summary of a frame that left (checksums verified, as a receiver would).
fn info(f: &[u8]) -> IpInfo {
    assert_checksums(f, 14);
    match wire::parse(f, &wire::VERIFY_ALL) {
        Ok(Parsed::Ip(_, ip)) => ip,
        other => panic!("not an IP frame: {other:?}"),
    }
}

/// (src, dst, sport, dport, seq, ack, payload) of a TCP frame that left.
fn tcp(f: &[u8]) -> (Addr, Addr, u16, u16, u32, u32, Vec<u8>) {
    let ip = info(f);
    let Some(L4Info::Tcp(t)) = ip.l4 else {
        panic!("not TCP")
    };
    let end = usize::from(ip.l3_off) + usize::from(ip.ip_len);
    let payload = f[end - usize::from(t.payload_len)..end].to_vec();
    (ip.src, ip.dst, t.sport, t.dport, t.seq, t.ack, payload)
}

/// The control connection's handshake (client 40000 → server 21) through masquerade;
/// returns the masqueraded source port.
fn control(p: &mut Pipeline, c: &Pkt, s_of: impl Fn(u16) -> Vec<u8>) -> u16 {
    let (a, out) = run(p, 0, c.tcp(40000, 21, SYN, 100, 0));
    assert!(leaves(a, 1), "{a:?}");
    let (_, _, mport, ..) = tcp(&out);
    let (a, _) = run(p, 1, s_of(mport));
    assert!(leaves(a, 0), "{a:?}");
    let (a, _) = run(p, 0, c.tcp(40000, 21, ACK, 101, 501));
    assert!(leaves(a, 1), "{a:?}");
    mport
}

#[test]
fn active_ftp_behind_masquerade_rewrites_port_and_adjusts_sequence_numbers() {
    let t = Arc::new(ExpectTable::new(64));
    let (mut p, _publisher) = pipeline_with(MASQ_RULES, 0, 1, &t);
    let c = Pkt::v4(CLIENT, SERVER);
    let s = Pkt::v4(SERVER, MASQ);
    let mport = control(&mut p, &c, |m| s.tcp(21, m, SYN | ACK, 500, 101));
    // PORT names the client's own address; it leaves naming the masquerade address,
    // one byte shorter.
    let line = b"PORT 198,18,0,10,195,80\r\n";
    let (a, out) = run(&mut p, 0, c.tcp_data(40000, 21, PSH_ACK, 101, 501, line));
    assert!(leaves(a, 1), "{a:?}");
    let (src, _, _, _, seq, ack, payload) = tcp(&out);
    assert_eq!(src, Addr::from_v4(MASQ));
    assert_eq!(payload, b"PORT 198,19,0,1,195,80\r\n");
    assert_eq!(
        (seq, ack),
        (101, 501),
        "the rewritten segment keeps its seq"
    );
    // The expectation is for the server's connection to the masquerade address, and
    // carries where to translate it.
    let l = t.list(1_000);
    assert_eq!(l.len(), 1);
    let e = l[0].0;
    assert_eq!(
        (e.src, e.dst, e.dport),
        (Addr::from_v4(SERVER), Addr::from_v4(MASQ), 50_000)
    );
    assert_eq!(
        e.nat,
        Some(ExpectNat {
            src: Addr::from_v4(SERVER),
            dst: Addr::from_v4(CLIENT),
            dport: 50_000,
        })
    );
    // The server acks the 24 bytes it got: the client sees its own 25 acknowledged.
    let (a, out) = run(&mut p, 1, s.tcp(21, mport, ACK, 501, 101 + 24));
    assert!(leaves(a, 0), "an adjusted ack is in the window: {a:?}");
    assert_eq!(tcp(&out).5, 101 + 25);
    // A retransmission of the PORT segment is rewritten the same way and changes no
    // offset.
    let (a, out) = run(&mut p, 0, c.tcp_data(40000, 21, PSH_ACK, 101, 501, line));
    assert!(leaves(a, 1), "{a:?}");
    let (_, _, _, _, seq, _, payload) = tcp(&out);
    assert_eq!(
        (seq, &payload[..]),
        (101, &b"PORT 198,19,0,1,195,80\r\n"[..])
    );
    // The client's next command sits one byte earlier for the server.
    let (a, out) = run(
        &mut p,
        0,
        c.tcp_data(40000, 21, PSH_ACK, 126, 501, b"LIST\r\n"),
    );
    assert!(leaves(a, 1), "{a:?}");
    assert_eq!(tcp(&out).4, 125);
    // A second PORT (another port: the older expectation goes) shrinks by one more.
    let line2 = b"PORT 198,18,0,10,195,81\r\n";
    let (a, out) = run(&mut p, 0, c.tcp_data(40000, 21, PSH_ACK, 132, 501, line2));
    assert!(leaves(a, 1), "{a:?}");
    let (_, _, _, _, seq, _, payload) = tcp(&out);
    assert_eq!(
        (seq, &payload[..]),
        (131, &b"PORT 198,19,0,1,195,81\r\n"[..])
    );
    assert_eq!(t.len(), 1);
    let (a, out) = run(
        &mut p,
        0,
        c.tcp_data(40000, 21, PSH_ACK, 157, 501, b"NOOP\r\n"),
    );
    assert!(leaves(a, 1), "{a:?}");
    assert_eq!(tcp(&out).4, 155, "two corrections: -2");
    // Acks before the second correction map with -1, after it with -2.
    let (a, out) = run(&mut p, 1, s.tcp(21, mport, ACK, 501, 131));
    assert!(leaves(a, 0), "{a:?}");
    assert_eq!(tcp(&out).5, 132);
    let (a, out) = run(&mut p, 1, s.tcp(21, mport, ACK, 501, 161));
    assert!(leaves(a, 0), "{a:?}");
    assert_eq!(tcp(&out).5, 163);
    // The server's reply data: its own direction has no offset.
    let (a, out) = run(
        &mut p,
        1,
        s.tcp_data(21, mport, PSH_ACK, 501, 161, b"200 PORT ok\r\n"),
    );
    assert!(leaves(a, 0), "{a:?}");
    assert_eq!((tcp(&out).4, tcp(&out).5), (501, 163));
    // The server's data connection to the masquerade address and the announced port is
    // related, and DNATed to the client's real address and port.
    let (a, out) = run(
        &mut p,
        1,
        Pkt::v4(SERVER, MASQ).tcp(20, 195 * 256 + 81, SYN, 7000, 0),
    );
    assert!(leaves(a, 0), "{a:?}");
    let (src, dst, sport, dport, ..) = tcp(&out);
    assert_eq!(
        (src, dst, sport, dport),
        (
            Addr::from_v4(SERVER),
            Addr::from_v4(CLIENT),
            20,
            195 * 256 + 81
        )
    );
    assert_eq!(p.helper_counters().related, 1);
    // The client's answer leaves from the masquerade address and port.
    let (a, out) = run(
        &mut p,
        0,
        Pkt::v4(CLIENT, SERVER).tcp(195 * 256 + 81, 20, SYN | ACK, 9000, 7001),
    );
    assert!(leaves(a, 1), "{a:?}");
    let (src, dst, sport, dport, ..) = tcp(&out);
    assert_eq!(
        (src, dst, sport, dport),
        (
            Addr::from_v4(MASQ),
            Addr::from_v4(SERVER),
            195 * 256 + 81,
            20
        )
    );
}

#[test]
fn a_port_another_master_expects_is_skipped_and_the_segment_grows() {
    // SNAT to an address whose text is longer than the client's.
    const SNAT: [u8; 4] = [198, 19, 0, 100];
    let rules = MASQ_RULES.replacen("masquerade", "snat to 198.19.0.100", 1);
    let t = Arc::new(ExpectTable::new(64));
    let (mut p, _publisher) = pipeline_with(&rules, 0, 1, &t);
    // Another control connection (worker 7) already expects the server at port 9 of the
    // SNAT address.
    let stranger = Expectation {
        family: Family::V4,
        proto: proto::TCP,
        src: Addr::from_v4(SERVER),
        dst: Addr::from_v4(SNAT),
        dport: 9,
        helper: HelperKind::Ftp,
        master: crate::conntrack::FlowKey {
            src: Addr::from_v4([198, 18, 0, 11]),
            dst: Addr::from_v4(SERVER),
            sport: 1,
            dport: 21,
            zone: 0,
            proto: proto::TCP,
            family: Family::V4,
        },
        master_worker: 7,
        master_id: 1,
        nat: None,
    };
    t.insert(&stranger, u64::MAX - 1, 0).unwrap();
    let c = Pkt::v4(CLIENT, SERVER);
    let s = Pkt::v4(SERVER, SNAT);
    let sport = control(&mut p, &c, |m| s.tcp(21, m, SYN | ACK, 500, 101));
    // 22 bytes leave as 24: the address gains a byte, the port (9 is taken: 10) one.
    let line = b"PORT 198,18,0,10,0,9\r\n";
    let (a, out) = run(&mut p, 0, c.tcp_data(40000, 21, PSH_ACK, 101, 501, line));
    assert!(
        matches!(a, Action::Reply { port: 1, .. }),
        "a grown frame leaves from the scratch buffer: {a:?}"
    );
    let (src, _, _, _, seq, _, payload) = tcp(&out);
    assert_eq!(src, Addr::from_v4(SNAT));
    assert_eq!(payload, b"PORT 198,19,0,100,0,10\r\n");
    assert_eq!(seq, 101);
    assert_eq!(t.len(), 2);
    // The server acks 24 bytes: the client sees its 22 acknowledged; the client's next
    // bytes sit two later for the server.
    let (a, out) = run(&mut p, 1, s.tcp(21, sport, ACK, 501, 101 + 24));
    assert!(leaves(a, 0), "{a:?}");
    assert_eq!(tcp(&out).5, 101 + 22);
    let (a, out) = run(
        &mut p,
        0,
        c.tcp_data(40000, 21, PSH_ACK, 123, 501, b"RETR f\r\n"),
    );
    assert!(leaves(a, 1), "{a:?}");
    assert_eq!(tcp(&out).4, 125);
    // The data connection to port 10 reaches the client at the port it announced.
    let (a, out) = run(&mut p, 1, Pkt::v4(SERVER, SNAT).tcp(20, 10, SYN, 7000, 0));
    assert!(leaves(a, 0), "{a:?}");
    let (_, dst, _, dport, ..) = tcp(&out);
    assert_eq!((dst, dport), (Addr::from_v4(CLIENT), 9));
    // The stranger's expectation is still there.
    assert_eq!(t.list(1_000)[0].0.master_id, 1);
}

#[test]
fn eprt_over_ipv6_behind_masquerade() {
    let t = Arc::new(ExpectTable::new(64));
    let (mut p, _publisher) = pipeline_with(MASQ_RULES, 0, 1, &t);
    let (client, server, masq) = ("2001:db8:1::10", "2001:db8:99::5", "2001:db8:2::1");
    let c = Pkt::v6(client, server);
    let s = Pkt::v6(server, masq);
    let (a, out) = run(&mut p, 0, c.tcp(40000, 21, SYN, 100, 0));
    assert!(leaves(a, 1), "{a:?}");
    let mport = tcp(&out).2;
    // The answers to the lan host wait for neighbour discovery (no static entry): the
    // slow path takes them, tracked.
    let (a, _) = run(&mut p, 1, s.tcp(21, mport, SYN | ACK, 500, 101));
    assert_eq!(a, Action::SlowPath);
    let (a, _) = run(&mut p, 0, c.tcp(40000, 21, ACK, 101, 501));
    assert!(leaves(a, 1), "{a:?}");
    let line = b"EPRT |2|2001:db8:1::10|50001|\r\n";
    let (a, out) = run(&mut p, 0, c.tcp_data(40000, 21, PSH_ACK, 101, 501, line));
    assert!(leaves(a, 1), "{a:?}");
    let (src, _, _, _, seq, _, payload) = tcp(&out);
    assert_eq!(src, s.dst);
    assert_eq!(payload, b"EPRT |2|2001:db8:2::1|50001|\r\n");
    assert_eq!(seq, 101);
    let e = t.list(1_000)[0].0;
    assert_eq!((e.family, e.dport), (Family::V6, 50001));
    assert_eq!(e.dst, s.dst);
    // The next client segment is one byte earlier; the server's data connection is
    // DNATed to the client.
    let (a, out) = run(
        &mut p,
        0,
        c.tcp_data(40000, 21, PSH_ACK, 132, 501, b"LIST\r\n"),
    );
    assert!(leaves(a, 1), "{a:?}");
    assert_eq!(tcp(&out).4, 131);
    let (_, out) = run(&mut p, 1, s.tcp(20, 50001, SYN, 7000, 0));
    let (_, dst, _, dport, ..) = tcp(&out);
    assert_eq!((dst, dport), (c.src, 50001));
    assert_eq!(p.helper_counters().related, 1);
}

#[test]
fn passive_ftp_to_a_dnat_server_rewrites_227_and_the_data_connection_follows() {
    // The server (the lan host) is published on fwd's wan address.
    let rules = "table ip f {
	ct helper ftp-standard {
		type \"ftp\" protocol tcp
	}
	chain pre {
		type nat hook prerouting priority dstnat;
		iifname \"wan\" tcp dport 21 dnat to 198.18.0.10
	}
	chain fwd {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		tcp dport 21 ct state new ct helper set \"ftp-standard\" accept
	}
}
";
    let t = Arc::new(ExpectTable::new(64));
    let (mut p, _publisher) = pipeline_with(rules, 0, 1, &t);
    let remote = [203, 0, 113, 9];
    let c = Pkt::v4(remote, MASQ);
    let srv = Pkt::v4(CLIENT, remote);
    let (a, out) = run(&mut p, 1, c.tcp(40000, 21, SYN, 100, 0));
    assert!(leaves(a, 0), "{a:?}");
    assert_eq!(tcp(&out).1, Addr::from_v4(CLIENT));
    let (a, _) = run(&mut p, 0, srv.tcp(21, 40000, SYN | ACK, 500, 101));
    assert!(leaves(a, 1), "{a:?}");
    let (a, _) = run(&mut p, 1, c.tcp(40000, 21, ACK, 101, 501));
    assert!(leaves(a, 0), "{a:?}");
    let pasv = b"227 Entering Passive Mode (198,18,0,10,39,16).\r\n";
    let (a, out) = run(&mut p, 0, srv.tcp_data(21, 40000, PSH_ACK, 501, 101, pasv));
    assert!(leaves(a, 1), "{a:?}");
    let (src, _, _, _, seq, _, payload) = tcp(&out);
    assert_eq!(src, Addr::from_v4(MASQ));
    assert_eq!(
        payload,
        b"227 Entering Passive Mode (198,19,0,1,39,16).\r\n"
    );
    assert_eq!(seq, 501);
    // The client acks the shorter reply; the server sees its own bytes acknowledged.
    let (a, out) = run(&mut p, 1, c.tcp(40000, 21, ACK, 101, 501 + 47));
    assert!(leaves(a, 0), "{a:?}");
    assert_eq!(tcp(&out).5, 501 + 48);
    // The client's data connection to the published address reaches the server.
    let (a, out) = run(&mut p, 1, c.tcp(40001, 10000, SYN, 9, 0));
    assert!(leaves(a, 0), "{a:?}");
    let (_, dst, _, dport, ..) = tcp(&out);
    assert_eq!((dst, dport), (Addr::from_v4(CLIENT), 10000));
    // EPSV: the port only.
    let epsv = b"229 Entering Extended Passive Mode (|||10001|)\r\n";
    let (a, out) = run(&mut p, 0, srv.tcp_data(21, 40000, PSH_ACK, 549, 101, epsv));
    assert!(leaves(a, 1), "{a:?}");
    let (_, _, _, _, seq, _, payload) = tcp(&out);
    assert_eq!((seq, &payload[..]), (548, &epsv[..]));
    let e = t.list(1_000)[0].0;
    assert_eq!((e.src, e.dst, e.dport), (c.src, c.dst, 10001));
}

#[test]
fn tftp_through_masquerade_reaches_the_client() {
    let t = Arc::new(ExpectTable::new(64));
    let (mut p, _publisher) = pipeline_with(MASQ_RULES, 0, 1, &t);
    let c = Pkt::v4(CLIENT, SERVER);
    let (a, out) = run(&mut p, 0, udp(&c, 3000, 69, b"\x00\x01f\x00octet\x00"));
    assert!(leaves(a, 1), "{a:?}");
    let ip = info(&out);
    let Some(L4Info::Udp { sport: mport, .. }) = ip.l4 else {
        panic!("udp")
    };
    assert_eq!(ip.src, Addr::from_v4(MASQ));
    // The server answers from a new port to the masquerade address: DNATed back.
    let s = Pkt::v4(SERVER, MASQ);
    let (a, out) = run(&mut p, 1, udp(&s, 4000, mport, b"\x00\x03\x00\x01x"));
    assert!(leaves(a, 0), "{a:?}");
    let ip = info(&out);
    assert_eq!(ip.dst, Addr::from_v4(CLIENT));
    assert!(matches!(
        ip.l4,
        Some(L4Info::Udp {
            dport: 3000,
            sport: 4000
        })
    ));
    assert_eq!(p.helper_counters().related, 1);
}

#[test]
fn a_data_connection_dnated_on_another_worker_gets_its_replies_steered() {
    use crate::nat::{Owner, SYMMETRIC_RSS_KEY, Tuple};
    let owner = Owner::spread(&SYMMETRIC_RSS_KEY, 128, 2).unwrap();
    // A client port whose data connection's reply (client → server:20) hashes to worker
    // 0, while the server's first packet is taken on worker 1.
    let (client, server) = (Addr::from_v4(CLIENT), Addr::from_v4(SERVER));
    let dport = (50_000..51_000)
        .find(|&p| owner.owner(&Tuple::new(client, server, proto::TCP, p, 20)) == 0)
        .unwrap();
    let t = Arc::new(ExpectTable::new(64));
    let (mut w0, _p0) = pipeline_with(MASQ_RULES, 0, 2, &t);
    let (mut w1, _p1) = pipeline_with(MASQ_RULES, 1, 2, &t);
    let c = Pkt::v4(CLIENT, SERVER);
    let s = Pkt::v4(SERVER, MASQ);
    control(&mut w0, &c, |m| s.tcp(21, m, SYN | ACK, 500, 101));
    let line = format!("PORT 198,18,0,10,{},{}\r\n", dport >> 8, dport & 0xff);
    let (a, _) = run(
        &mut w0,
        0,
        c.tcp_data(40000, 21, PSH_ACK, 101, 501, line.as_bytes()),
    );
    assert!(leaves(a, 1), "{a:?}");
    let (a, out) = run(&mut w1, 1, s.tcp(20, dport, SYN, 7000, 0));
    assert!(leaves(a, 0), "{a:?}");
    assert_eq!(tcp(&out).1, client);
    assert_eq!(w1.helper_counters().related, 1);
    // The binding's steering record sends the client's answer from worker 0 to 1.
    let st: Vec<_> = w1.take_steering().collect();
    assert_eq!(st.len(), 1);
    assert_eq!((st[0].reply_worker, st[0].owner), (0, 1));
    w0.add_steering(st[0]);
    let answer = c.tcp(dport, 20, SYN | ACK, 9000, 7001);
    let (a, _) = run(&mut w0, 0, answer.clone());
    assert_eq!(a, Action::Handoff { worker: 1 });
    let (a, out) = run(&mut w1, 0, answer);
    assert!(leaves(a, 1), "{a:?}");
    let (src, dst, sport, dp, ..) = tcp(&out);
    assert_eq!(
        (src, dst, sport, dp),
        (Addr::from_v4(MASQ), server, dport, 20)
    );
}
