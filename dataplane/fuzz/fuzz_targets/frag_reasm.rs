//! Reassembly table and refragmentation: a stream of arbitrary packets (length-prefixed)
//! never panics, never holds more than the budget, and every completed datagram
//! refragments into buffers of the planned sizes.
#![no_main]

use dataplane::frag::{DatagramBuf, FragLimits, ReasmTable, plan, write_fragment};
use dataplane::wire::Family;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, mut rest)) = data.split_first() else {
        return;
    };
    let family = if sel & 1 == 0 { Family::V4 } else { Family::V6 };
    let limits = FragLimits {
        high_thresh: 16 * 1024,
        low_thresh: 8 * 1024,
        time_ns: 1000,
    };
    let mut t = ReasmTable::new(family, limits).unwrap();
    let mut out = DatagramBuf::new();
    let mut buf = vec![0u8; 2048];
    let mut now = 0u64;
    while rest.len() >= 2 {
        let n = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let packet = &rest[2..2 + n];
        rest = &rest[2 + n..];
        now += 100;
        if let Ok(dataplane::frag::Outcome::Complete(r)) = t.push(now, packet, &mut out) {
            let mtu = 68 + usize::from(sel >> 1) * 8;
            if let Ok(p) = plan(&r, mtu) {
                for piece in p {
                    let len = piece.wire_len(&r);
                    assert_eq!(write_fragment(out.bytes(), &r, piece, &mut buf), (len <= buf.len()).then_some(len));
                }
            }
        }
        assert!(t.mem() <= limits.high_thresh);
    }
});
