//! Connection-tracking helpers (Linux `nf_conntrack_helper`): the FTP and TFTP helpers,
//! the expectations they make, and the per-connection helper state of a worker. The
//! design note is `docs/helpers.md`.
//!
//! - [`ftp`]: the PORT / EPRT / 227 / 229 parser.
//! - [`tftp`]: the read/write request check.
//! - [`expect`]: the expectation table shared by every worker.
//! - [`ftp_nat`]: FTP NAT's rewrite of the announcement text; [`seqadj`]: the TCP
//!   sequence adjustment that follows a change of length.

pub mod expect;
pub mod ftp;
pub mod ftp_nat;
mod kind;
pub mod seqadj;
pub mod tftp;

pub use expect::{ExpectError, ExpectNat, ExpectStats, ExpectTable, Expectation};
pub use kind::HelperKind;

/// How long an expectation lives, seconds (Linux: `.timeout = 5 * 60` for both helpers).
pub const EXPECT_TIMEOUT_S: u64 = 300;
