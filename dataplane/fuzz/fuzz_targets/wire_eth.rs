//! Ethernet + VLAN views: after `check_len` no accessor panics.
#![no_main]

use dataplane::wire::eth::{EthernetFrame, VlanTag, ethertype};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = EthernetFrame::new_checked(data) {
        let _ = (e.dst_addr(), e.src_addr());
        assert_eq!(e.payload().len() + 14, data.len());
        if e.ethertype() == ethertype::VLAN {
            if let Ok(v) = VlanTag::new_checked(e.payload()) {
                assert!(v.vid() < 4096 && v.pcp() < 8);
                let _ = (v.inner_ethertype(), v.payload().len());
            }
        }
    }
});
