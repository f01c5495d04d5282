//! Parse, make the checksums valid, rewrite, re-parse: every checksum still verifies and
//! the rewritten fields read back. Input: 8 control bytes, then the frame.
#![no_main]

use dataplane::wire::rewrite::{self, RewriteError};
use dataplane::wire::{Addr, Family, L4Info, Parsed, TRUST_ALL, VERIFY_ALL, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((ctl, frame)) = data.split_first_chunk::<8>() else {
        return;
    };
    let mut f = frame.to_vec();
    let Ok(Parsed::Ip(_, ip)) = parse(&f, &TRUST_ALL) else {
        return;
    };
    rewrite::fill_checksums(&mut f, &ip).expect("offsets from parse are in bounds");
    if let Err(e) = parse(&f, &VERIFY_ALL) {
        panic!("fill_checksums left a bad checksum: {e:?}");
    }
    let addr = match ip.family {
        Family::V4 => Addr::from_v4([198, 18, ctl[1], ctl[2]]),
        Family::V6 => Addr::from_v6([
            0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, ctl[1], ctl[2], 0, 1,
        ]),
    };
    let port = u16::from_be_bytes([ctl[3], ctl[4]]);
    for op in ctl[5..].iter().map(|b| b % 8) {
        let r = match op {
            0 => rewrite::set_src_addr(&mut f, &ip, addr),
            1 => rewrite::set_dst_addr(&mut f, &ip, addr),
            2 => rewrite::set_src_port(&mut f, &ip, port),
            3 => rewrite::set_dst_port(&mut f, &ip, port),
            4 => rewrite::decrement_ttl(&mut f, &ip).map(|_| ()),
            _ => match ip.l4 {
                Some(L4Info::IcmpError { inner, .. }) => match op {
                    5 => rewrite::set_inner_src_addr(&mut f, &ip, &inner, addr),
                    6 => rewrite::set_inner_dst_addr(&mut f, &ip, &inner, addr),
                    _ => rewrite::set_inner_sport(&mut f, &ip, &inner, port),
                },
                _ => Ok(()),
            },
        };
        if let Err(e) = r {
            assert!(
                matches!(e, RewriteError::NoSuchField | RewriteError::TtlExpired),
                "{e:?}"
            );
        }
        let after = parse(&f, &VERIFY_ALL);
        let Ok(Parsed::Ip(_, now)) = after else {
            panic!("op {op} broke the frame: {after:?}")
        };
        match op {
            0 => assert_eq!(now.src, addr),
            1 => assert_eq!(now.dst, addr),
            _ => {}
        }
    }
});
