//! `fwd`: the data-plane daemon. (Being written: see issue 5.)
fn main() {}
