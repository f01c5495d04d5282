//! Fragment trains Linux sent and forwarded (`testdata/capture.sh`): a 4000-byte UDP
//! datagram per family fragmented by the sender on a 1500-byte MTU (`in:`), and the same
//! datagram after a Linux router reassembled it, masqueraded it and refragmented it
//! (`out:`). Frames start with their Ethernet header.

use super::{Geometry, MAX_FRAGS, Reassembled, plan, write_fragment};
use crate::wire::Family;

const FORWARDED: &str = include_str!("testdata/linux-forwarded.txt");

/// The IP packets (Ethernet header removed) whose description starts with `prefix`
/// (`"in: IP "`, `"out: IP6 "`, ...), in capture order.
pub fn linux(prefix: &str) -> Vec<Vec<u8>> {
    crate::wire::testdata::read(FORWARDED)
        .into_iter()
        .filter(|(d, _)| d.starts_with(prefix))
        .map(|(_, f)| f[14..].to_vec())
        .collect()
}

/// A datagram `dgram` (header `hdr_len` bytes) cut at `ends`, as `write_fragment` emits it.
pub fn fragments(
    family: Family,
    dgram: &[u8],
    hdr_len: usize,
    ends: &[u16],
    ident: u32,
) -> Vec<Vec<u8>> {
    let mut e = [0u16; MAX_FRAGS];
    e[..ends.len()].copy_from_slice(ends);
    let r = Reassembled {
        len: dgram.len(),
        hdr_len,
        geometry: Geometry {
            family,
            ident,
            max_size: u16::MAX,
            df: false,
            nh_off: 6,
            n: u8::try_from(ends.len()).expect("at most MAX_FRAGS"),
            ends: e,
        },
    };
    let mut p = plan(&r, 65535).unwrap();
    assert!(p.keeps_original_boundaries());
    p.by_ref()
        .map(|piece| {
            let mut b = vec![0u8; piece.wire_len(&r)];
            assert_eq!(write_fragment(dgram, &r, piece, &mut b), Some(b.len()));
            b
        })
        .collect()
}
