//! The FTP helper's parser: any payload, from either side, on either family, never
//! panics, and a recognised line's span lies inside the payload and reads back as the
//! address and port it gave.
#![no_main]

use dataplane::helper::ftp::{FtpKind, parse};
use dataplane::wire::Family;
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
    }
});
