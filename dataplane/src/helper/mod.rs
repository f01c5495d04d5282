//! Connection-tracking helpers (Linux `nf_conntrack_helper`): the FTP and TFTP helpers,
//! the expectations they make, and the per-connection helper state of a worker. The
//! design note is `docs/helpers.md`.
//!
//! - [`ftp`]: the PORT / EPRT / 227 / 229 parser.
//! - [`tftp`]: the read/write request check.
//! - [`expect`]: the expectation table shared by every worker.

pub mod expect;
pub mod ftp;
pub mod tftp;

pub use expect::{ExpectError, ExpectStats, ExpectTable, Expectation};

/// The helpers the appliance has (`ct helper NAME { type "ftp" protocol tcp; }`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum HelperKind {
    Ftp = 1,
    Tftp = 2,
}

/// How long an expectation lives, seconds (Linux: `.timeout = 5 * 60` for both helpers).
pub const EXPECT_TIMEOUT_S: u64 = 300;

impl HelperKind {
    /// The helper by its kernel name and layer-4 protocol (`type "ftp" protocol tcp`).
    pub fn by_name(name: &str, proto: u8) -> Option<Self> {
        match (name, proto) {
            ("ftp", crate::wire::proto::TCP) => Some(HelperKind::Ftp),
            ("tftp", crate::wire::proto::UDP) => Some(HelperKind::Tftp),
            _ => None,
        }
    }

    /// The kernel's name of the helper.
    pub fn name(self) -> &'static str {
        match self {
            HelperKind::Ftp => "ftp",
            HelperKind::Tftp => "tftp",
        }
    }

    /// The layer-4 protocol the helper runs on.
    pub fn proto(self) -> u8 {
        match self {
            HelperKind::Ftp => crate::wire::proto::TCP,
            HelperKind::Tftp => crate::wire::proto::UDP,
        }
    }

    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(HelperKind::Ftp),
            2 => Some(HelperKind::Tftp),
            _ => None,
        }
    }
}
