//! The nftables text parser never panics, on rulesets and on nft command scripts; whatever
//! parses (and passes the checker) prints back to text (also with `# handle N`) that
//! re-parses to the same AST (handles aside: commands keep handles that the printed order
//! does not), and survives the JSON round trip. Running the input again as commands on
//! what it produced never panics either.
#![no_main]

use dataplane::rules::{check::check, json, parse, print};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(rs) = parse::parse(src) else { return };
    let _ = check(&rs);
    let _ = parse::apply(&rs, src);
    for text in [
        print::to_text(&rs),
        print::to_text_with_handles(&rs, &|_, _, _| None),
    ] {
        let again =
            parse::parse(&text).unwrap_or_else(|e| panic!("printed text does not parse: {e}\n{text}"));
        assert_eq!(print::first_difference(&rs, &again), None, "{text}");
    }
    let j = json::to_json(&rs);
    let from_json = json::from_json(&j).unwrap_or_else(|e| panic!("own JSON does not read: {e}"));
    assert_eq!(rs, from_json);
});
