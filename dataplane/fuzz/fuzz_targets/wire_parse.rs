//! Full-frame parse: never panics, and whatever parses satisfies `check_invariants`
//! (with and without checksum verification).
#![no_main]

use dataplane::wire::{TRUST_ALL, VERIFY_ALL, check_invariants, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for opts in [TRUST_ALL, VERIFY_ALL] {
        if let Ok(p) = parse(data, &opts) {
            if let Err(e) = check_invariants(&p, data.len()) {
                panic!("{e}: {p:?}");
            }
        }
    }
});
