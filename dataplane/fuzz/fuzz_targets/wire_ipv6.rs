//! IPv6 view and extension-header walk: no panics; the chain ends inside the payload.
#![no_main]

use dataplane::wire::ipv6::{Ipv6Packet, walk_ext};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Ipv6Packet::new_checked(data) {
        let _ = (
            p.traffic_class(),
            p.flow_label(),
            p.hop_limit(),
            p.src_addr(),
            p.dst_addr(),
        );
        let payload = p.payload();
        assert_eq!(payload.len(), usize::from(p.payload_len()));
        if let Ok(chain) = walk_ext(payload, p.next_header()) {
            assert!(chain.l4_off <= payload.len());
            assert_eq!(chain.l4_off % 4, 0);
        }
    }
});
