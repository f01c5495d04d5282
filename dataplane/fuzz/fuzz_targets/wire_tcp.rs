//! TCP view and option iterator: no panics; option data stays inside the header.
#![no_main]

use dataplane::wire::tcp::{TcpOption, TcpPacket};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = TcpPacket::new_checked(data) {
        let hl = t.header_len();
        assert!(hl >= 20 && hl <= data.len());
        let mut opt_bytes = 0;
        for o in t.options() {
            if let TcpOption::Sack(d) | TcpOption::Unknown { data: d, .. } = o {
                opt_bytes += d.len() + 2;
            }
        }
        assert!(opt_bytes <= hl - 20);
        let info = t.info();
        assert_eq!(usize::from(info.payload_len), data.len() - hl);
        assert!(info.wscale.is_none_or(|w| w <= 14));
    }
});
