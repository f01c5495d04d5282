//! The control thread's view of the running daemon: the [`Backend`] over the workers'
//! command rings, their counter blocks and the started ports.

use std::sync::Arc;

use dpdk_bindings::{Consumer, Eal, Port, Producer};

use crate::control::proto::{PortStats, WorkerStats};
use crate::control::server::Backend;
use crate::helper::ExpectTable;
use crate::worker::counters::CounterBlock;
use crate::worker::{WorkerCommand, WorkerReply};

/// One started port, owned by the control thread while running.
#[derive(Debug)]
pub(super) struct RunPort {
    pub(super) name: String,
    pub(super) port: Port,
    pub(super) driver: String,
    pub(super) rx_queues: u16,
    pub(super) tx_queues: u16,
}

/// The control thread's view of the daemon.
#[derive(Debug)]
pub(super) struct DpdkBackend {
    pub(super) commands: Vec<Producer<Box<WorkerCommand>>>,
    pub(super) replies: Vec<Consumer<Box<WorkerReply>>>,
    pub(super) counters: Vec<Arc<CounterBlock>>,
    pub(super) lcores: Vec<u32>,
    pub(super) ports: Vec<RunPort>,
    /// The expectation table the pipelines share (the same `Arc`).
    pub(super) expect: Option<Arc<ExpectTable>>,
}

pub(super) fn mac_string(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl Backend for DpdkBackend {
    fn workers(&self) -> usize {
        self.commands.len()
    }

    fn now_ns(&self) -> u64 {
        crate::worker::io::tsc_now_ns()
    }

    fn expectations(&self) -> Option<&Arc<ExpectTable>> {
        self.expect.as_ref()
    }

    fn send(&mut self, w: usize, cmd: Box<WorkerCommand>) -> Result<(), Box<WorkerCommand>> {
        self.commands[w].enqueue(cmd)
    }

    fn try_recv(&mut self, w: usize) -> Option<WorkerReply> {
        self.replies[w].dequeue().map(|b| *b)
    }

    fn port_stats(&mut self) -> Vec<PortStats> {
        self.ports
            .iter()
            .map(|p| {
                let s = p.port.stats().unwrap_or_default();
                let link = p.port.link().ok();
                PortStats {
                    name: p.name.clone(),
                    port_id: p.port.id().0,
                    driver: p.driver.clone(),
                    mac: p.port.mac().map(mac_string).unwrap_or_default(),
                    link_up: link.is_some_and(|l| l.up),
                    speed_mbps: link.map_or(0, |l| l.speed_mbps),
                    rx_queues: p.rx_queues,
                    tx_queues: p.tx_queues,
                    ipackets: s.ipackets,
                    opackets: s.opackets,
                    ibytes: s.ibytes,
                    obytes: s.obytes,
                    imissed: s.imissed,
                    ierrors: s.ierrors,
                    oerrors: s.oerrors,
                    rx_nombuf: s.rx_nombuf,
                }
            })
            .collect()
    }

    fn worker_stats(&self) -> Vec<WorkerStats> {
        self.counters
            .iter()
            .enumerate()
            .map(|(w, block)| {
                block.read().worker_stats(
                    u16::try_from(w).unwrap_or(u16::MAX),
                    self.lcores.get(w).copied().unwrap_or(0),
                )
            })
            .collect()
    }

    fn dpdk_version(&self) -> String {
        Eal::version()
    }
}
