//! IPv4 view: after `check_len` no accessor panics and the lengths are consistent.
#![no_main]

use dataplane::wire::ipv4::Ipv4Packet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Ipv4Packet::new_checked(data) {
        let hl = p.header_len();
        assert!(
            hl >= 20
                && hl <= usize::from(p.total_len())
                && usize::from(p.total_len()) <= data.len()
        );
        assert_eq!(p.options().len(), hl - 20);
        assert_eq!(p.payload().len(), usize::from(p.total_len()) - hl);
        let _ = (
            p.version(),
            p.tos(),
            p.ident(),
            p.dont_frag(),
            p.more_frags(),
            p.frag_offset(),
        );
        let _ = (
            p.ttl(),
            p.protocol(),
            p.checksum(),
            p.src_addr(),
            p.dst_addr(),
            p.verify_checksum(),
        );
    }
});
