//! The state-sync decoders: any bytes give an error or a datagram, never a panic; a
//! decoded DATA datagram encodes back to the bytes it came from. The same bytes as a
//! batch of records (`ha_apply_records`, the binary event stream): an error or records
//! that encode back to them, split at the same boundaries.
#![no_main]

use dataplane::ha::wire::{
    Kind, decode, decode_records, encode_data, put_record, split_records,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = decode(data) {
        if d.kind == Kind::Data {
            let len = usize::from(u16::from_be_bytes([data[4], data[5]]));
            assert_eq!(encode_data(d.session, d.seq, &d.records), &data[..len]);
        }
    }
    let split = split_records(data);
    if let Ok(recs) = decode_records(data) {
        let mut body = Vec::new();
        for r in &recs {
            put_record(&mut body, r);
        }
        assert_eq!(body, data);
        assert_eq!(split.map(|p| p.len()), Ok(recs.len()));
    }
});
