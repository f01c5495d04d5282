//! Teardown after a stop signal, in reverse order of the start: workers joined, the slow
//! path's queues and rings dropped, the control thread joined (it hands the backend
//! back), the rings to the workers dropped, the ports closed, the packet pool dropped,
//! the control socket removed, EAL cleaned up.

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use dpdk_bindings::{Consumer, Eal, LaunchHandle, Mbuf, Mempool};

use super::DaemonError;
use super::backend::DpdkBackend;
use crate::route::NeighborSnapshot;
use crate::worker::SlowPath;
use crate::worker::io::SlowPathIo;

/// Everything the teardown releases, in its order.
pub(super) struct Running {
    pub(super) workers: Vec<LaunchHandle>,
    pub(super) slow_io: SlowPathIo,
    pub(super) slow: SlowPath<Mbuf>,
    // A ring carries one pointer per slot: the `Arc` travels boxed (`worker::io`).
    #[allow(clippy::redundant_allocation)]
    pub(super) neigh_back: Vec<Consumer<Box<Arc<NeighborSnapshot>>>>,
    pub(super) control: JoinHandle<DpdkBackend>,
    pub(super) pool: Mempool,
    pub(super) eal: Eal,
}

/// Stops everything (the stop flag is already set) and cleans EAL up.
pub(super) fn stop(running: Running, control_socket: &Path) -> Result<(), DaemonError> {
    eprintln!("fwd: stopping");
    for h in running.workers {
        h.join();
    }
    drop(running.slow_io);
    drop(running.slow);
    drop(running.neigh_back);
    let Ok(backend) = running.control.join() else {
        // The pool goes before EAL, as everywhere else.
        drop(running.pool);
        drop(running.eal);
        return Err(DaemonError::ControlPanicked);
    };
    let DpdkBackend {
        commands,
        replies,
        ports,
        ..
    } = backend;
    drop((commands, replies));
    for p in ports {
        if let Err(e) = p.port.close() {
            eprintln!("fwd: port {}: close: {e}", p.name);
        }
    }
    drop(running.pool);
    let _ = std::fs::remove_file(control_socket);
    running.eal.cleanup().map_err(DaemonError::EalCleanup)?;
    eprintln!("fwd: stopped");
    Ok(())
}
