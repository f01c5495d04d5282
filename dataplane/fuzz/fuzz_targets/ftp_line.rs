//! The FTP helper's parser and FTP NAT: any payload, from either side, on either family,
//! never panics; a recognised line's span lies inside the payload, and the text FTP NAT
//! writes over it reads back as the same kind of line naming the address and port it was
//! given. The sequence adjustment of a segment made of the same bytes never panics and
//! keeps a valid checksum valid.
#![no_main]

use dataplane::helper::ftp::{FtpKind, parse};
use dataplane::helper::ftp_nat::{MAX_TEXT, format};
use dataplane::helper::seqadj::SeqAdj;
use dataplane::wire::{Addr, Family, checksum};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, payload)) = data.split_first() else {
        return;
    };
    let family = if sel & 1 == 0 { Family::V4 } else { Family::V6 };
    let from_client = sel & 2 == 0;
    if let Ok(Some(l)) = parse(payload, from_client, family) {
        assert!(l.start <= l.end && l.end <= payload.len());
        let text = &payload[l.start..l.end];
        assert!(!text.is_empty());
        assert_eq!(l.addr.is_none(), l.kind == FtpKind::Epsv);
        if l.kind != FtpKind::Epsv {
            assert!(l.port != 0 || matches!(l.kind, FtpKind::Port | FtpKind::Pasv));
        }
        // Rewritten to another address and port, the line reads back as such (short
        // payloads: the rewritten text stays within what the parser reads).
        let addr = match family {
            Family::V4 => Addr::from_v4([198, 51, 100, sel]),
            Family::V6 => Addr::from_v6([0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, sel]),
        };
        let port = u16::from(sel).max(1) * 251;
        let mut buf = [0u8; MAX_TEXT];
        if payload.len() < 64
            && let Some(n) = format(l.kind, family, addr, port, &mut buf)
        {
            let mut new = payload[..l.start].to_vec();
            new.extend_from_slice(&buf[..n]);
            new.extend_from_slice(&payload[l.end..]);
            let r = parse(&new, from_client, family).ok().flatten();
            let r = r.expect("the rewritten line parses");
            assert_eq!(r.kind, l.kind);
            assert_eq!(r.port, port);
            assert_eq!(r.addr, l.addr.map(|_| addr));
            assert_eq!(&new[r.start..r.end], &buf[..n]);
        }
    }
    // The payload as a TCP segment (header first) through the sequence adjustment.
    if payload.len() >= 24 {
        let mut seg = payload.to_vec();
        seg[16] = 0;
        seg[17] = 0;
        let c = checksum::checksum(&seg);
        seg[16..18].copy_from_slice(&c.to_be_bytes());
        let mut adj = SeqAdj::default();
        let w = |i: usize| u32::from_be_bytes([payload[i], payload[i + 1], payload[i + 2], payload[i + 3]]);
        adj.set(0, w(4), i32::from(sel as i8));
        adj.set(1, w(8), i32::from(payload[20] as i8));
        adj.set(0, w(4).wrapping_add(w(20)), i32::from(payload[21] as i8));
        // A segment whose bytes sum to one's-complement zero (no real one: the
        // pseudo-header has the protocol) has two checksum forms: not compared.
        let zero = |s: &[u8]| {
            let mut t = s.to_vec();
            t[16] = 0;
            t[17] = 0;
            matches!(checksum::fold(checksum::sum(&t)), 0 | 0xffff)
        };
        if !zero(&seg) && adj.adjust(usize::from(sel >> 7), &mut seg).is_ok() && !zero(&seg) {
            assert!(checksum::verify(checksum::sum(&seg)));
        }
    }
});
