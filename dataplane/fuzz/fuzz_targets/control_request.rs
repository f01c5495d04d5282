//! The control socket reads one JSON line per request from any local root client: a
//! malformed line must be an error, never a panic, and what parses must re-serialise to
//! something that parses to the same value.
#![no_main]

use dataplane::control::proto::RequestEnvelope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = serde_json::from_slice::<RequestEnvelope>(data) {
        let text = serde_json::to_string(&req).expect("a parsed request serialises");
        let again: RequestEnvelope = serde_json::from_str(&text).expect("round trip parses");
        assert_eq!(
            serde_json::to_value(&again).unwrap(),
            serde_json::to_value(&req).unwrap()
        );
    }
});
