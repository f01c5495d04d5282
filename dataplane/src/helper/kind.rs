//! The helpers the appliance has, by kind: a leaf of `helper` (the expectation table and
//! the helpers import it; `mod.rs` re-exports it).

/// The helpers the appliance has (`ct helper NAME { type "ftp" protocol tcp; }`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum HelperKind {
    Ftp = 1,
    Tftp = 2,
}

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
