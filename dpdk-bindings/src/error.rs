//! The crate's error type: every failing DPDK call becomes [`Error::Dpdk`] with the call's
//! name, the errno value and DPDK's own text for it (`rte_strerror`).

use std::ffi::CStr;

use crate::ffi;

/// Errors of the safe layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A DPDK call failed. `errno` is positive (DPDK returns `-errno` or sets `rte_errno`).
    #[error("{call} failed: {text} (errno {errno})")]
    Dpdk {
        /// The DPDK function that failed.
        call: &'static str,
        /// The errno value (positive).
        errno: i32,
        /// `rte_strerror(errno)`.
        text: String,
    },
    /// `Eal::init` was called a second time in this process (DPDK allows one EAL per
    /// process, even after `rte_eal_cleanup` or a failed init).
    #[error("EAL was already initialised in this process (one EAL per process)")]
    EalAlreadyInitialised,
    /// An argument was rejected before reaching DPDK.
    #[error("invalid argument to {call}: {reason}")]
    InvalidArgument {
        /// The operation the argument was for.
        call: &'static str,
        /// What was wrong with it.
        reason: String,
    },
    /// The object is still referenced by handles that must be dropped first (queue
    /// handles for a port, pools/ports/rings/launched lcores for the EAL).
    #[error("{what} is still in use: {reason}")]
    Busy {
        /// The object.
        what: String,
        /// Which handles hold it.
        reason: String,
    },
    /// A start-up check failed: `problem` says what, `hint` how to fix it (the Debian
    /// package to install, the EAL flag to pass).
    #[error("{problem}: {hint}")]
    Setup {
        /// What is missing or broken.
        problem: String,
        /// How to fix it.
        hint: String,
    },
}

/// `rte_strerror` for a positive errno value.
pub fn strerror(errno: i32) -> String {
    // SAFETY: rte_strerror accepts any int and returns a pointer to a NUL-terminated string:
    // a static table entry or a per-thread buffer valid until the next call on this
    // thread; it is copied out before anything else runs on this thread.
    let ptr = unsafe { ffi::rte_strerror(errno) };
    if ptr.is_null() {
        return format!("errno {errno}");
    }
    // SAFETY: non-null pointer to a NUL-terminated string (see above).
    unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned()
}

/// The calling thread's `rte_errno`.
pub(crate) fn rte_errno() -> i32 {
    // SAFETY: reads a thread-local int; no preconditions.
    unsafe { ffi::shim_rte_errno() }
}

impl Error {
    /// Error for `call` with a positive errno value.
    pub fn from_errno(call: &'static str, errno: i32) -> Self {
        let errno = errno.saturating_abs();
        Error::Dpdk {
            call,
            errno,
            text: strerror(errno),
        }
    }

    /// Error for `call` from the calling thread's `rte_errno` (for calls that return NULL
    /// or -1 and set `rte_errno`).
    pub(crate) fn last(call: &'static str) -> Self {
        Self::from_errno(call, rte_errno())
    }

    pub(crate) fn invalid(call: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            call,
            reason: reason.into(),
        }
    }

    /// The errno value of a [`Error::Dpdk`], if it is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Dpdk { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

/// `Ok(ret)` for `ret >= 0`, else the error `-ret` (DPDK's "negative errno" convention).
pub(crate) fn check(call: &'static str, ret: i32) -> Result<i32, Error> {
    if ret < 0 {
        Err(Error::from_errno(call, ret))
    } else {
        Ok(ret)
    }
}

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
