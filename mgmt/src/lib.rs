//! The management process. (Being written: see issue 6.)
#![forbid(unsafe_code)]
