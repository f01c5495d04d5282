//! The daemon's start-up and shutdown errors. `fwd` prints them as `fwd: {error}`; the
//! messages are the ones `fwd` has always printed (scripts and docs may match them).

use std::path::PathBuf;

use dpdk_bindings::{Error as DpdkError, LcoreId};

use crate::config::ConfigError;
use crate::worker::counters::MAX_PORTS;

/// Why [`super::run`] could not start the appliance or stop it cleanly.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// More ports than the counters have room for.
    #[error("ports: at most {MAX_PORTS} ports")]
    TooManyPorts,
    /// The queue plan or the route table of the configuration is invalid.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The state directory (persisted tunables or ruleset) or the configured ruleset is
    /// invalid (`FILE:LINE:COL: message`).
    #[error("{0}")]
    State(String),
    /// EAL initialisation failed.
    #[error("EAL init: {0}")]
    EalInit(#[source] DpdkError),
    /// A signal handler could not be installed.
    #[error("signal: {0}")]
    Signal(#[source] std::io::Error),
    /// The mempool diagnostics failed (a driver package missing, no hugepages).
    #[error("mempool: {0}")]
    Mempool(#[source] DpdkError),
    /// A configured port does not exist.
    #[error("ports: {0}")]
    Ports(#[source] DpdkError),
    /// EAL enabled fewer worker lcores than the configuration has workers.
    #[error("EAL enabled {lcores} worker lcores, the config has {workers} workers")]
    Lcores { lcores: usize, workers: usize },
    /// The packet mempool could not be created.
    #[error("packet pool: {0}")]
    PacketPool(#[source] DpdkError),
    /// Opening a port, reading its information or taking its queues failed.
    #[error("ports[{index}]: {source}")]
    Port { index: usize, source: DpdkError },
    /// A port step (`configure`, `start`) failed.
    #[error("ports[{index}] ({name}): {step}: {source}")]
    PortStep {
        index: usize,
        name: String,
        step: &'static str,
        source: DpdkError,
    },
    /// Setting a port's configured MAC address failed.
    #[error("ports[{index}].mac: {source}")]
    PortMac { index: usize, source: DpdkError },
    /// A static neighbour's field is invalid.
    #[error("neighbors[{index}].{field}: {message}")]
    Neighbor {
        index: usize,
        field: &'static str,
        message: &'static str,
    },
    /// A ring could not be created.
    #[error("ring: {0}")]
    Ring(#[source] DpdkError),
    /// More workers than a `u16` counts.
    #[error("too many workers")]
    TooManyWorkers,
    /// A worker could not be launched on its lcore.
    #[error("launch worker on {lcore}: {source}")]
    Launch { lcore: LcoreId, source: DpdkError },
    /// Not every worker reported ready in time (or a stop signal came first).
    #[error("workers: {ready} of {workers} ready after {secs} s")]
    NotReady {
        ready: usize,
        workers: usize,
        secs: u32,
    },
    /// The control socket could not be bound.
    #[error("control socket {}: {source}", path.display())]
    ControlSocket {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The control thread could not be spawned.
    #[error("control thread: {0}")]
    ControlThread(#[source] std::io::Error),
    /// The control thread panicked.
    #[error("control thread panicked")]
    ControlPanicked,
    /// EAL cleanup failed.
    #[error("EAL cleanup: {0}")]
    EalCleanup(#[source] DpdkError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dpdk(call: &'static str) -> DpdkError {
        DpdkError::Dpdk {
            call,
            errno: 19,
            text: "No such device".into(),
        }
    }

    /// The messages are the ones `fwd` printed when its errors were strings.
    #[test]
    fn messages_are_the_ones_fwd_always_printed() {
        let cases: Vec<(DaemonError, String)> = vec![
            (
                DaemonError::TooManyPorts,
                format!("ports: at most {MAX_PORTS} ports"),
            ),
            (
                DaemonError::Config(ConfigError::Invalid {
                    field: "workers.queues[0]".into(),
                    message: "no such port".into(),
                }),
                "workers.queues[0]: no such port".into(),
            ),
            (
                DaemonError::EalInit(DpdkError::EalAlreadyInitialised),
                "EAL init: EAL was already initialised in this process (one EAL per process)"
                    .into(),
            ),
            (
                DaemonError::Lcores {
                    lcores: 1,
                    workers: 2,
                },
                "EAL enabled 1 worker lcores, the config has 2 workers".into(),
            ),
            (
                DaemonError::Port {
                    index: 1,
                    source: dpdk("rte_eth_dev_info_get"),
                },
                "ports[1]: rte_eth_dev_info_get failed: No such device (errno 19)".into(),
            ),
            (
                DaemonError::PortStep {
                    index: 0,
                    name: "wan".into(),
                    step: "configure",
                    source: dpdk("rte_eth_dev_configure"),
                },
                "ports[0] (wan): configure: rte_eth_dev_configure failed: No such device \
                 (errno 19)"
                    .into(),
            ),
            (
                DaemonError::PortMac {
                    index: 2,
                    source: dpdk("rte_eth_dev_default_mac_addr_set"),
                },
                "ports[2].mac: rte_eth_dev_default_mac_addr_set failed: No such device \
                 (errno 19)"
                    .into(),
            ),
            (
                DaemonError::Neighbor {
                    index: 3,
                    field: "mac",
                    message: "not a MAC",
                },
                "neighbors[3].mac: not a MAC".into(),
            ),
            (DaemonError::TooManyWorkers, "too many workers".into()),
            (
                DaemonError::Launch {
                    lcore: LcoreId(4),
                    source: dpdk("rte_eal_remote_launch"),
                },
                "launch worker on lcore 4: rte_eal_remote_launch failed: No such device (errno 19)"
                    .into(),
            ),
            (
                DaemonError::NotReady {
                    ready: 1,
                    workers: 2,
                    secs: 120,
                },
                "workers: 1 of 2 ready after 120 s".into(),
            ),
            (
                DaemonError::ControlSocket {
                    path: "/run/fwd/control.sock".into(),
                    source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
                },
                "control socket /run/fwd/control.sock: permission denied".into(),
            ),
            (
                DaemonError::ControlPanicked,
                "control thread panicked".into(),
            ),
        ];
        for (error, message) in cases {
            assert_eq!(error.to_string(), message, "{error:?}");
        }
    }
}
