//! The nftables text parser never panics; whatever parses (and passes the checker) prints
//! back to text that re-parses to the same AST, and survives the JSON round trip.
#![no_main]

use dataplane::rules::{check::check, json, parse::parse, print};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(rs) = parse(src) else { return };
    let _ = check(&rs);
    let text = print::to_text(&rs);
    let again = parse(&text).unwrap_or_else(|e| panic!("printed text does not parse: {e}\n{text}"));
    assert_eq!(rs, again, "{text}");
    let j = json::to_json(&rs);
    let from_json = json::from_json(&j).unwrap_or_else(|e| panic!("own JSON does not read: {e}"));
    assert_eq!(rs, from_json);
});
