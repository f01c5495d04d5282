//! Logical cores: ids, the calling thread's lcore, and running a closure on a worker lcore
//! (`rte_eal_remote_launch` / `rte_eal_wait_lcore`).

use std::any::Any;
use std::ffi::{c_int, c_void};
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use crate::eal::{Eal, EalToken};
use crate::error::{Error, Result, check};
use crate::ffi;

/// An EAL logical core id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LcoreId(pub u32);

impl std::fmt::Display for LcoreId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "lcore {}", self.0)
    }
}

/// The calling thread's lcore id (`rte_lcore_id()`), `None` on a thread EAL did not create
/// or register (`LCORE_ID_ANY`), and before EAL is initialised.
pub fn current_lcore() -> Option<LcoreId> {
    // SAFETY: reads the calling thread's per-lcore (thread-local) variable, which is
    // LCORE_ID_ANY on threads EAL does not know; no other precondition.
    let id = unsafe { ffi::shim_rte_lcore_id() };
    (id != ffi::LCORE_ID_ANY).then_some(LcoreId(id))
}

type Job = Box<dyn FnOnce() -> i32 + Send + 'static>;

/// What the worker lcore reads and writes; owned by the [`LaunchHandle`] and shared with
/// the worker between `rte_eal_remote_launch` and the return of `rte_eal_wait_lcore`.
struct LaunchState {
    job: Option<Job>,
    panic: Option<Box<dyn Any + Send + 'static>>,
}

extern "C" fn trampoline(arg: *mut c_void) -> c_int {
    let state = arg.cast::<LaunchState>();
    // SAFETY: `arg` is the LaunchState pointer passed to rte_eal_remote_launch by
    // `Eal::launch_on`; the handle that owns it does not touch it until rte_eal_wait_lcore
    // has returned for this lcore, so this thread has exclusive access.
    let state = unsafe { &mut *state };
    let Some(job) = state.job.take() else {
        return -1;
    };
    match catch_unwind(AssertUnwindSafe(job)) {
        Ok(ret) => ret,
        Err(payload) => {
            state.panic = Some(payload);
            -1
        }
    }
}

impl Eal {
    /// Run `f` on the worker lcore `lcore` (`rte_eal_remote_launch`). Call from the main
    /// lcore; the lcore must be a worker and idle. The returned handle joins it.
    pub fn launch_on<F>(&self, lcore: LcoreId, f: F) -> Result<LaunchHandle>
    where
        F: FnOnce() -> i32 + Send + 'static,
    {
        if current_lcore() != Some(self.main_lcore()) {
            return Err(Error::invalid(
                "rte_eal_remote_launch",
                "must be called on the main lcore",
            ));
        }
        if lcore == self.main_lcore() || !self.worker_lcores().any(|l| l == lcore) {
            return Err(Error::invalid(
                "rte_eal_remote_launch",
                format!("{lcore} is not an enabled worker lcore"),
            ));
        }
        let state = Box::into_raw(Box::new(LaunchState {
            job: Some(Box::new(f)),
            panic: None,
        }));
        // SAFETY: `trampoline` matches lcore_function_t; `state` stays valid until the
        // LaunchHandle is joined or dropped, which waits for the lcore first. lcore is an
        // enabled worker and we are on the main lcore, as the function requires.
        let ret = unsafe { ffi::rte_eal_remote_launch(Some(trampoline), state.cast(), lcore.0) };
        if let Err(e) = check("rte_eal_remote_launch", ret) {
            // SAFETY: the launch failed, so no lcore received `state`; we own it again.
            drop(unsafe { Box::from_raw(state) });
            return Err(e);
        }
        Ok(LaunchHandle {
            lcore,
            state,
            joined: false,
            _eal: self.token(),
            _not_send: PhantomData,
        })
    }
}

/// A function running on a worker lcore. [`join`](Self::join) waits for it; dropping the
/// handle also waits (the closure's state must outlive the run). `!Send`: DPDK requires
/// `rte_eal_wait_lcore` on the main lcore, where the handle was created.
#[derive(Debug)]
pub struct LaunchHandle {
    lcore: LcoreId,
    state: *mut LaunchState,
    joined: bool,
    _eal: EalToken,
    _not_send: PhantomData<*const ()>,
}

impl std::fmt::Debug for LaunchState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaunchState")
            .field("pending", &self.job.is_some())
            .field("panicked", &self.panic.is_some())
            .finish()
    }
}

impl LaunchHandle {
    /// The lcore the function runs on.
    pub fn lcore(&self) -> LcoreId {
        self.lcore
    }

    fn wait(&mut self) -> (i32, Option<Box<dyn Any + Send + 'static>>) {
        self.joined = true;
        // SAFETY: called on the main lcore (the handle is !Send and was created there) for
        // a lcore we launched on; it blocks until the function has returned.
        let ret = unsafe { ffi::rte_eal_wait_lcore(self.lcore.0) };
        // SAFETY: the worker has finished (rte_eal_wait_lcore synchronises with its
        // completion through an acquire load of the lcore state), so we own `state` again;
        // it came from Box::into_raw in launch_on and is freed exactly once (joined flag).
        let state = unsafe { Box::from_raw(self.state) };
        (ret, state.panic)
    }

    /// Wait for the function and return its value. If it panicked, the panic is resumed
    /// here (like `std::thread::JoinHandle::join().unwrap()`).
    pub fn join(mut self) -> i32 {
        let (ret, panic) = self.wait();
        if let Some(payload) = panic {
            resume_unwind(payload);
        }
        ret
    }
}

impl Drop for LaunchHandle {
    fn drop(&mut self) {
        if !self.joined {
            let (_, panic) = self.wait();
            if panic.is_some() {
                eprintln!(
                    "dpdk-bindings: function launched on {} panicked",
                    self.lcore
                );
            }
        }
    }
}
