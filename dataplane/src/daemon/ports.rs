//! Ports: the packet pool's size, and each configured port configured (queues, symmetric
//! RSS and its RETA, checksum offloads), its queues taken and started.

use dpdk_bindings::{
    Eal, Mempool, Port, PortConfig as DevPortConfig, PortId, RssConfig, RxOffloads, RxQueue,
    TxQueue,
};

use super::DaemonError;
use super::backend::{RunPort, mac_string};
use crate::config::{Config, parse_mac};
use crate::worker::PortInfo;

/// Mbufs for every descriptor, ring slot and per-lcore cache, plus headroom; 2^k - 1.
pub(super) fn pool_size(cfg: &Config) -> u32 {
    if let Some(n) = cfg.eal.mbufs {
        return n;
    }
    let w = cfg.workers.cores.len() as u64;
    let mut n: u64 = 4096;
    for (i, p) in cfg.ports.iter().enumerate() {
        n += u64::from(cfg.rx_queues(i)) * u64::from(p.rx_descriptors);
        n += u64::from(cfg.tx_queues()) * u64::from(p.tx_descriptors);
    }
    n += w * w * u64::from(cfg.workers.handoff_ring) + w * 1024 + (w + 1) * 512;
    let pow = n.next_power_of_two();
    u32::try_from(pow - 1).unwrap_or(u32::MAX)
}

/// The started ports: what the control thread keeps, what the pipelines are told, and
/// every queue (per port, by queue number) for the workers and the slow path to take.
pub(super) struct Started {
    pub(super) run_ports: Vec<RunPort>,
    pub(super) port_infos: Vec<PortInfo>,
    pub(super) rx_queues: Vec<Vec<Option<RxQueue>>>,
    pub(super) tx_queues: Vec<Vec<Option<TxQueue>>>,
}

/// Ports: configure, take queues, start.
pub(super) fn start(
    cfg: &Config,
    eal: &Eal,
    ids: &[PortId],
    pool: &Mempool,
) -> Result<Started, DaemonError> {
    let mut run_ports = Vec::new();
    let mut port_infos = Vec::new();
    let mut rx_queues = Vec::new(); // per port: Vec<Option<RxQueue>>
    let mut tx_queues = Vec::new(); // per port: Vec<Option<TxQueue>>
    for (i, (pc, id)) in cfg.ports.iter().zip(ids).enumerate() {
        let port_err = |source| DaemonError::Port { index: i, source };
        let step_err = |step| {
            move |source| DaemonError::PortStep {
                index: i,
                name: pc.name.clone(),
                step,
                source,
            }
        };
        let mut port = Port::open(eal, *id).map_err(port_err)?;
        let info = port.info().map_err(port_err)?;
        let nrx = cfg.rx_queues(i);
        let ntx = cfg.tx_queues();
        let dev = DevPortConfig {
            rx_queues: nrx,
            tx_queues: ntx,
            rx_desc: pc.rx_descriptors,
            tx_desc: pc.tx_descriptors,
            mtu: Some(pc.mtu),
            rss: (nrx > 1).then(RssConfig::symmetric),
            // The NIC's checksum verdicts where it has them (the workers read them from
            // `ol_flags`; software verifies the rest).
            rx_offloads: RxOffloads::CHECKSUM.intersection(info.rx_offload_capa),
            ..DevPortConfig::default()
        };
        let applied = port.configure(&dev, pool).map_err(step_err("configure"))?;
        for n in &applied.notes {
            eprintln!("fwd: port {}: {n}", pc.name);
        }
        // The RETA the owner function assumes (`nat::rss::RssOwner::spread`): bucket i to
        // queue i % queues. Programmed explicitly rather than trusting the PMD's default.
        if applied.rss && info.reta_size > 0 {
            let reta: Vec<u16> = (0..nrx).cycle().take(usize::from(info.reta_size)).collect();
            match port.reta_update(&reta) {
                Ok(()) => eprintln!(
                    "fwd: port {}: RETA {} entries round-robin over {nrx} queues",
                    pc.name, info.reta_size
                ),
                Err(e) => eprintln!("fwd: port {}: RETA not programmed: {e}", pc.name),
            }
        }
        if let Some(mac) = pc.mac.as_deref().and_then(parse_mac) {
            port.set_mac(mac)
                .map_err(|source| DaemonError::PortMac { index: i, source })?;
        }
        if let Err(e) = port.set_promiscuous(pc.promiscuous) {
            eprintln!("fwd: port {}: promiscuous: {e}", pc.name);
        }
        let (rx, tx) = port.take_queues().map_err(port_err)?;
        port.start().map_err(step_err("start"))?;
        eprintln!(
            "fwd: port {} = {} ({}), mac {}, {nrx} rx / {ntx} tx queues{}",
            pc.name,
            id,
            info.driver_name,
            port.mac().map(mac_string).unwrap_or_default(),
            if applied.rss { ", symmetric RSS" } else { "" }
        );
        port_infos.push(PortInfo {
            mac: port.mac().map_err(port_err)?,
            mtu: pc.mtu,
            hw_rss: applied.rss,
        });
        rx_queues.push(rx.into_iter().map(Some).collect::<Vec<_>>());
        tx_queues.push(tx.into_iter().map(Some).collect::<Vec<_>>());
        run_ports.push(RunPort {
            name: pc.name.clone(),
            port,
            driver: info.driver_name.clone(),
            rx_queues: nrx,
            tx_queues: ntx,
        });
    }
    Ok(Started {
        run_ports,
        port_infos,
        rx_queues,
        tx_queues,
    })
}
