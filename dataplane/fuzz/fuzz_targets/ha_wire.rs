//! The state-sync datagram decoder: any bytes give an error or a datagram, never a
//! panic; a decoded DATA datagram encodes back to the bytes it came from.
#![no_main]

use dataplane::ha::wire::{Kind, decode, encode_data};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = decode(data) {
        if d.kind == Kind::Data {
            let len = usize::from(u16::from_be_bytes([data[4], data[5]]));
            assert_eq!(encode_data(d.session, d.seq, &d.records), &data[..len]);
        }
    }
});
