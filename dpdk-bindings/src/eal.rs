//! EAL lifetime: one [`Eal`] per process, created by [`Eal::init`] and cleaned up by
//! [`Eal::cleanup`] or `Drop`.
//!
//! Soundness of cleanup: after `rte_eal_cleanup` no DPDK function may be called and the
//! hugepage memory holding mempools, rings and mbufs is unmapped. Every handle that can call
//! into DPDK later ([`Mempool`](crate::Mempool), [`Port`](crate::Port), the queue handles,
//! [`Ring`](crate::Ring) ends, [`LaunchHandle`](crate::LaunchHandle)) holds an `EalToken`,
//! and cleanup only runs when none is left and every mempool created through this crate has
//! all its mbufs back (so no [`Mbuf`](crate::Mbuf) can still be dropped). Otherwise
//! `cleanup` returns [`Error::Busy`] and the EAL stays up until the process exits, which is
//! what most DPDK applications do anyway.

use std::ffi::{CString, c_char};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use crate::error::{Error, Result, check};
use crate::ffi;
use crate::lcore::LcoreId;
use crate::port::PortId;

const UNINIT: u8 = 0;
const RUNNING: u8 = 1;
const DONE: u8 = 2;
const FAILED: u8 = 3;

/// Process-wide EAL state: DPDK allows `rte_eal_init` once per process.
static STATE: AtomicU8 = AtomicU8::new(UNINIT);

/// A NUMA socket id (`SOCKET_ID_ANY` = [`SocketId::ANY`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SocketId(pub i32);

impl SocketId {
    /// Any socket (`SOCKET_ID_ANY`).
    pub const ANY: SocketId = SocketId(ffi::SOCKET_ID_ANY);
}

/// A mempool registered for the cleanup check. Only its address is used, and only by
/// `Eal::cleanup` (through `rte_mempool_in_use_count`, which is thread-safe).
struct PoolPtr(NonNull<ffi::rte_mempool>);

// SAFETY: the pointer is only passed to rte_mempool_in_use_count, which reads the pool's
// ring and per-lcore cache counters and may be called from any thread; pools created by
// this crate are never freed before rte_eal_cleanup, so the pointer stays valid.
unsafe impl Send for PoolPtr {}

#[derive(Debug, Default)]
pub(crate) struct EalShared {
    pools: Mutex<Vec<PoolPtr>>,
}

impl std::fmt::Debug for PoolPtr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:p}", self.0)
    }
}

/// Proof that the EAL is initialised, held by every handle that calls into DPDK, and
/// counted by [`Eal::cleanup`].
#[derive(Debug, Clone)]
pub(crate) struct EalToken(Arc<EalShared>);

impl EalToken {
    /// A reference that does not keep EAL up ([`EalToken::upgrade`] gives a token back
    /// while it runs).
    pub(crate) fn downgrade(&self) -> Weak<EalShared> {
        Arc::downgrade(&self.0)
    }

    /// A token again, if every token was not dropped yet (EAL may still be up).
    pub(crate) fn upgrade(w: &Weak<EalShared>) -> Option<EalToken> {
        w.upgrade().map(EalToken)
    }

    pub(crate) fn register_pool(&self, pool: NonNull<ffi::rte_mempool>) {
        self.0
            .pools
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(PoolPtr(pool));
    }
}

/// The initialised Environment Abstraction Layer. Resources (mempools, ports, rings, lcore
/// launches) are created through it, so holding `&Eal` is the proof that DPDK is up.
#[derive(Debug)]
pub struct Eal {
    token: EalToken,
    main: LcoreId,
    cleaned: bool,
}

impl Eal {
    /// `rte_eal_init` with `args` (EAL arguments only, without the program name, e.g.
    /// `["-l", "0-1", "--in-memory", "--vdev=net_null0"]`). Only once per process: a second
    /// call, even after a failed one or after cleanup, returns
    /// [`Error::EalAlreadyInitialised`]. Must be called on the thread that is to become the
    /// main lcore; EAL pins it to the main lcore's CPU.
    pub fn init<I, S>(args: I) -> Result<Eal>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let program = std::env::args()
            .next()
            .and_then(|p| CString::new(p).ok())
            .unwrap_or_else(|| c"dpdk-bindings".to_owned());
        let mut owned = vec![program];
        for arg in args {
            let arg = arg.as_ref();
            owned.push(CString::new(arg).map_err(|_| {
                Error::invalid(
                    "rte_eal_init",
                    format!("argument {arg:?} contains a NUL byte"),
                )
            })?);
        }
        let argc = i32::try_from(owned.len())
            .map_err(|_| Error::invalid("rte_eal_init", "too many arguments"))?;
        if STATE
            .compare_exchange(UNINIT, RUNNING, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return Err(Error::EalAlreadyInitialised);
        }
        // EAL keeps pointers into argv (it permutes it with getopt and may keep option
        // values), so argv and its strings live for the rest of the process: a few hundred
        // bytes, once.
        let mut argv: Vec<*mut c_char> = owned.into_iter().map(CString::into_raw).collect();
        argv.push(std::ptr::null_mut());
        let argv: &'static mut [*mut c_char] = argv.leak();
        // SAFETY: argv holds argc valid NUL-terminated strings followed by NULL, all leaked
        // so they outlive EAL; STATE guarantees this is the only rte_eal_init call in the
        // process.
        let ret = unsafe { ffi::rte_eal_init(argc, argv.as_mut_ptr()) };
        if ret < 0 {
            let err = Error::last("rte_eal_init");
            // DPDK does not support a second rte_eal_init, even after a failed one.
            STATE.store(FAILED, Ordering::SeqCst);
            return Err(err);
        }
        // SAFETY: EAL is initialised; rte_get_main_lcore reads its immutable configuration.
        let main = LcoreId(unsafe { ffi::rte_get_main_lcore() });
        Ok(Eal {
            token: EalToken(Arc::new(EalShared::default())),
            main,
            cleaned: false,
        })
    }

    pub(crate) fn token(&self) -> EalToken {
        self.token.clone()
    }

    /// Whether an EAL is currently running in this process.
    pub fn is_running() -> bool {
        STATE.load(Ordering::SeqCst) == RUNNING
    }

    /// The main lcore (the thread that called [`Eal::init`]).
    pub fn main_lcore(&self) -> LcoreId {
        self.main
    }

    /// The enabled worker lcores (all enabled lcores but the main one), in id order
    /// (`rte_get_next_lcore(i, skip_main = 1, wrap = 0)`).
    pub fn worker_lcores(&self) -> WorkerLcores {
        WorkerLcores { next: u32::MAX }
    }

    /// Number of enabled lcores, main included (`rte_lcore_count`).
    pub fn lcore_count(&self) -> u32 {
        // SAFETY: EAL is initialised; reads immutable configuration.
        unsafe { ffi::rte_lcore_count() }
    }

    /// TSC frequency in Hz as measured by EAL.
    pub fn tsc_hz(&self) -> u64 {
        crate::time::tsc_hz()
    }

    /// NUMA socket of the calling thread (`rte_socket_id`).
    pub fn socket_id(&self) -> SocketId {
        // SAFETY: EAL is initialised; reads the calling thread's per-lcore variable.
        let id = unsafe { ffi::rte_socket_id() };
        SocketId(i32::try_from(id).unwrap_or(ffi::SOCKET_ID_ANY))
    }

    /// NUMA socket of `lcore` (`rte_lcore_to_socket_id`).
    pub fn lcore_socket_id(&self, lcore: LcoreId) -> SocketId {
        if lcore.0 >= ffi::RTE_MAX_LCORE {
            return SocketId::ANY;
        }
        // SAFETY: EAL is initialised and lcore.0 < RTE_MAX_LCORE, the bound of the
        // lcore_config array the function indexes.
        let id = unsafe { ffi::rte_lcore_to_socket_id(lcore.0) };
        SocketId(i32::try_from(id).unwrap_or(ffi::SOCKET_ID_ANY))
    }

    /// Whether EAL runs on hugepages (false with `--no-huge`).
    pub fn has_hugepages(&self) -> bool {
        // SAFETY: EAL is initialised; reads its configuration.
        unsafe { ffi::rte_eal_has_hugepages() != 0 }
    }

    /// The DPDK version string (`rte_version()`, e.g. "DPDK 22.11.11"). Works without EAL.
    pub fn version() -> String {
        // SAFETY: rte_version returns a pointer to a static NUL-terminated string.
        let ptr = unsafe { ffi::rte_version() };
        if ptr.is_null() {
            return String::new();
        }
        // SAFETY: non-null pointer to a static NUL-terminated string.
        unsafe { std::ffi::CStr::from_ptr(ptr) }
            .to_string_lossy()
            .into_owned()
    }

    /// The ethdev ports (`RTE_ETH_FOREACH_DEV`).
    pub fn ports(&self) -> Ports {
        Ports { next: 0 }
    }

    /// The port named `name` (`rte_eth_dev_get_port_by_name`): a vdev name such as
    /// `net_memif0` or a PCI address. See [`crate::diag::check_ports`] for an error that
    /// says which driver package is missing.
    pub fn port_by_name(&self, name: &str) -> Result<PortId> {
        let c = CString::new(name).map_err(|_| {
            Error::invalid("rte_eth_dev_get_port_by_name", "name contains a NUL byte")
        })?;
        let mut id = 0u16;
        // SAFETY: c is a valid NUL-terminated string and id a valid out-pointer.
        let ret = unsafe { ffi::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut id) };
        check("rte_eth_dev_get_port_by_name", ret)?;
        Ok(PortId(id))
    }

    /// Handles (pools, ports, queues, rings, launches) still alive.
    fn live_handles(&self) -> usize {
        Arc::strong_count(&self.token.0) - 1
    }

    /// Mbufs not returned to the pools created through this crate.
    fn mbufs_out(&self) -> u64 {
        let pools = self
            .token
            .0
            .pools
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        pools
            .iter()
            .map(|p| {
                // SAFETY: the pool is valid (never freed before cleanup, which has not run);
                // rte_mempool_in_use_count is thread-safe.
                u64::from(unsafe { ffi::rte_mempool_in_use_count(p.0.as_ptr()) })
            })
            .sum()
    }

    /// `rte_eal_cleanup`, if nothing can call into DPDK afterwards: returns
    /// [`Error::Busy`] (and leaves EAL running until exit) while handles or mbufs are out.
    pub fn cleanup(mut self) -> Result<()> {
        self.cleanup_inner()
    }

    fn cleanup_inner(&mut self) -> Result<()> {
        if self.cleaned {
            return Ok(());
        }
        self.cleaned = true;
        let handles = self.live_handles();
        let mbufs = self.mbufs_out();
        if handles > 0 || mbufs > 0 {
            return Err(Error::Busy {
                what: "EAL".to_owned(),
                reason: format!(
                    "{handles} handle(s) (mempools, ports, queues, rings, launches) and \
                     {mbufs} mbuf(s) still alive; EAL left running until process exit"
                ),
            });
        }
        STATE.store(DONE, Ordering::SeqCst);
        // SAFETY: no handle holding an EalToken is left and all mbufs are back in their
        // pools, so nothing in this process calls DPDK after this point; STATE prevents a
        // new Eal.
        let ret = unsafe { ffi::rte_eal_cleanup() };
        check("rte_eal_cleanup", ret).map(|_| ())
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        if let Err(e) = self.cleanup_inner() {
            eprintln!("dpdk-bindings: EAL cleanup skipped: {e}");
        }
    }
}

/// Iterator over worker lcores, see [`Eal::worker_lcores`].
#[derive(Debug)]
pub struct WorkerLcores {
    next: u32,
}

impl Iterator for WorkerLcores {
    type Item = LcoreId;

    fn next(&mut self) -> Option<LcoreId> {
        if self.next != u32::MAX && self.next >= ffi::RTE_MAX_LCORE {
            return None;
        }
        // SAFETY: EAL is initialised (a WorkerLcores only comes from &Eal); the function
        // only reads lcore configuration; `u32::MAX` is DPDK's documented "start" value (-1).
        let id = unsafe { ffi::rte_get_next_lcore(self.next, 1, 0) };
        self.next = id;
        (id < ffi::RTE_MAX_LCORE).then_some(LcoreId(id))
    }
}

/// Iterator over valid ports, see [`Eal::ports`].
#[derive(Debug)]
pub struct Ports {
    next: u64,
}

impl Iterator for Ports {
    type Item = PortId;

    fn next(&mut self) -> Option<PortId> {
        let from = u16::try_from(self.next).ok()?;
        // SAFETY: EAL is initialised (Ports only comes from &Eal); the function scans the
        // port table for the next port >= `from` with no owner.
        let id = unsafe { ffi::rte_eth_find_next_owned_by(from, ffi::RTE_ETH_DEV_NO_OWNER.into()) };
        if id >= u64::from(ffi::RTE_MAX_ETHPORTS) {
            self.next = u64::MAX;
            return None;
        }
        self.next = id + 1;
        u16::try_from(id).ok().map(PortId)
    }
}
