//! ICMP / ICMPv6 view: no panics in any accessor, including ND options.
#![no_main]

use dataplane::wire::icmp::{IcmpPacket, v6};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = IcmpPacket::new_checked(data) {
        let _ = (
            m.msg_type(),
            m.msg_code(),
            m.checksum(),
            m.echo_ident(),
            m.echo_seq(),
        );
        let _ = (m.rest_of_header(), m.na_flags(), m.nd_target());
        assert_eq!(m.data().len(), data.len() - 8);
        let n: usize = m.nd_options().map(|(_, d)| d.len() + 2).sum();
        assert!(n <= data.len().saturating_sub(24));
        let _ = m.nd_lladdr(v6::OPT_SOURCE_LLADDR);
    }
});
