//! Ethernet ports: ids, device info, configuration (queues, descriptors, MTU, RSS,
//! offloads), start/stop/close, MAC, promiscuous mode, link, stats/xstats and the RSS
//! redirection table.
//!
//! A [`Port`] is the only handle that can reconfigure a port (one per port id, enforced
//! with a per-process table of atomic flags). Its RX/TX queues are handed out once per
//! configuration as [`RxQueue`]/[`TxQueue`]; `configure`, `stop` and `close` refuse to run
//! while any queue handle is alive, so a worker can never poll a queue that is being torn
//! down.
//!
//! Only offloads and RSS hash types the device reports are requested; what was asked for
//! but not supported is returned in [`AppliedConfig`] (virtual devices support almost
//! none: net_ring and net_memif have no RSS, net_null has RSS and a 128-entry RETA).

use std::cell::Cell;
use std::ffi::{CStr, c_char};
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::eal::{Eal, EalToken, SocketId};
use crate::error::{Error, Result, check};
use crate::ffi;
use crate::flags::{RssHf, RxOffloads, TxOffloads};
use crate::mempool::{Mempool, c_array_str};
use crate::queue::{RxQueue, TxQueue};

/// An ethdev port id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortId(pub u16);

impl std::fmt::Display for PortId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "port {}", self.0)
    }
}

/// A queue index on a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueId(pub u16);

impl std::fmt::Display for QueueId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "queue {}", self.0)
    }
}

const MAX_PORTS: usize = ffi::RTE_MAX_ETHPORTS as usize;

/// Which port ids have a live [`Port`] (or queue handles of one).
static PORT_OPEN: [AtomicBool; MAX_PORTS] = [const { AtomicBool::new(false) }; MAX_PORTS];

/// Shared by a [`Port`] and its queue handles; the port id is released for a new `Port`
/// only when all of them are gone.
#[derive(Debug)]
pub(crate) struct PortShared {
    id: PortId,
    _eal: EalToken,
}

impl Drop for PortShared {
    fn drop(&mut self) {
        if let Some(flag) = PORT_OPEN.get(usize::from(self.id.0)) {
            flag.store(false, Ordering::Release);
        }
    }
}

/// Device capabilities (`rte_eth_dev_info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevInfo {
    /// PMD name, e.g. "net_memif".
    pub driver_name: String,
    /// Kernel interface index, 0 if none.
    pub if_index: u32,
    /// Smallest MTU.
    pub min_mtu: u16,
    /// Largest MTU.
    pub max_mtu: u16,
    /// Most RX queues.
    pub max_rx_queues: u16,
    /// Most TX queues.
    pub max_tx_queues: u16,
    /// RSS redirection table size (0: no RETA).
    pub reta_size: u16,
    /// RSS key size in bytes (0: not reported).
    pub hash_key_size: u8,
    /// RSS hash types the device supports (empty: no RSS).
    pub flow_type_rss_offloads: RssHf,
    /// Supported RX offloads.
    pub rx_offload_capa: RxOffloads,
    /// Supported TX offloads.
    pub tx_offload_capa: TxOffloads,
    /// RX descriptor count limits (min, max, alignment).
    pub rx_desc_lim: (u16, u16, u16),
    /// TX descriptor count limits (min, max, alignment).
    pub tx_desc_lim: (u16, u16, u16),
}

/// The RSS key to program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RssKey {
    /// Leave the device's default key.
    DeviceDefault,
    /// The symmetric Toeplitz key (0x6d5a repeated, [`crate::thash::symmetric_rss_key`])
    /// at the device's key size: both directions of a flow hash alike.
    Symmetric,
    /// These bytes: the device's `hash_key_size`, or 40 when it reports none.
    Bytes(Vec<u8>),
}

/// RSS request for [`PortConfig`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RssConfig {
    /// Key to program.
    pub key: RssKey,
    /// Hash types wanted (masked with the device's `flow_type_rss_offloads`).
    pub hash_functions: RssHf,
    /// Also ask for `RTE_ETH_HASH_FUNCTION_SYMMETRIC_TOEPLITZ` through
    /// `rte_eth_rss_conf.algorithm`. That field exists from DPDK 23.11 (`cfg(dpdk_ge_2311)`);
    /// on 22.11 this is reported as not applied and the symmetric key does the job.
    pub symmetric_hash_function: bool,
}

impl RssConfig {
    /// Symmetric Toeplitz over IPv4/IPv6 addresses and TCP/UDP ports.
    pub fn symmetric() -> Self {
        RssConfig {
            key: RssKey::Symmetric,
            hash_functions: RssHf::IP | RssHf::TCP | RssHf::UDP,
            symmetric_hash_function: false,
        }
    }
}

/// Port configuration for [`Port::configure`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    /// Number of RX queues (1 ..= `max_rx_queues`).
    pub rx_queues: u16,
    /// Number of TX queues (1 ..= `max_tx_queues`).
    pub tx_queues: u16,
    /// RX descriptors per queue (adjusted to the device limits).
    pub rx_desc: u16,
    /// TX descriptors per queue (adjusted to the device limits).
    pub tx_desc: u16,
    /// MTU; `None` keeps the device default (1500).
    pub mtu: Option<u16>,
    /// RSS; `None` or a device without RSS: no hashing (all traffic to queue 0 unless
    /// the peer spreads it, as memif does per queue pair).
    pub rss: Option<RssConfig>,
    /// RX offloads wanted (masked with the device's capabilities).
    pub rx_offloads: RxOffloads,
    /// TX offloads wanted (masked with the device's capabilities).
    pub tx_offloads: TxOffloads,
}

impl Default for PortConfig {
    fn default() -> Self {
        PortConfig {
            rx_queues: 1,
            tx_queues: 1,
            rx_desc: 1024,
            tx_desc: 1024,
            mtu: None,
            rss: None,
            rx_offloads: RxOffloads::empty(),
            tx_offloads: TxOffloads::empty(),
        }
    }
}

/// What [`Port::configure`] actually programmed, and what it left out because the device
/// does not support it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AppliedConfig {
    /// RX offloads enabled.
    pub rx_offloads: RxOffloads,
    /// RX offloads requested but not supported.
    pub rx_offloads_unsupported: RxOffloads,
    /// TX offloads enabled.
    pub tx_offloads: TxOffloads,
    /// TX offloads requested but not supported.
    pub tx_offloads_unsupported: TxOffloads,
    /// Whether RSS (mq_mode RSS) is on.
    pub rss: bool,
    /// RSS hash types enabled.
    pub rss_hf: RssHf,
    /// RSS hash types requested but not supported.
    pub rss_hf_unsupported: RssHf,
    /// The key programmed, `None` for the device default.
    pub rss_key: Option<Vec<u8>>,
    /// Whether the symmetric Toeplitz hash function was requested from the device.
    pub symmetric_hash_function: bool,
    /// RX descriptors per queue after adjustment to the device limits.
    pub rx_desc: u16,
    /// TX descriptors per queue after adjustment.
    pub tx_desc: u16,
    /// Human-readable notes on everything not applied as asked.
    pub notes: Vec<String>,
}

/// Link state (`rte_eth_link`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// Link up.
    pub up: bool,
    /// Speed in Mbit/s (0 unknown, `u32::MAX` unknown for virtual devices).
    pub speed_mbps: u32,
    /// Full duplex.
    pub full_duplex: bool,
    /// Autonegotiated.
    pub autoneg: bool,
}

/// Basic port counters (`rte_eth_stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Packets received.
    pub ipackets: u64,
    /// Packets sent.
    pub opackets: u64,
    /// Bytes received.
    pub ibytes: u64,
    /// Bytes sent.
    pub obytes: u64,
    /// RX packets dropped by the device (RX queue full).
    pub imissed: u64,
    /// Erroneous RX packets.
    pub ierrors: u64,
    /// Failed TX packets.
    pub oerrors: u64,
    /// RX mbuf allocation failures.
    pub rx_nombuf: u64,
}

/// An ethdev port, exclusively owned. `Send` (move it to the control thread), not `Sync`:
/// DPDK's control functions are not safe to run concurrently on one port.
#[derive(Debug)]
pub struct Port {
    id: PortId,
    shared: Arc<PortShared>,
    pool: Option<Mempool>,
    nb_rx: u16,
    nb_tx: u16,
    started: bool,
    queues_taken: bool,
    _not_sync: PhantomData<Cell<()>>,
}

impl Port {
    /// Take the port `id` (`rte_eth_dev_is_valid_port`). Fails if it does not exist or
    /// another `Port` for it (or queue handles of one) is alive.
    pub fn open(eal: &Eal, id: PortId) -> Result<Port> {
        // SAFETY: EAL is initialised (&Eal); the function range-checks the id.
        if unsafe { ffi::rte_eth_dev_is_valid_port(id.0) } != 1 {
            return Err(Error::from_errno("rte_eth_dev_is_valid_port", ENODEV));
        }
        let flag = PORT_OPEN
            .get(usize::from(id.0))
            .ok_or_else(|| Error::invalid("Port::open", format!("{id} out of range")))?;
        if flag
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(Error::Busy {
                what: id.to_string(),
                reason: "another Port handle or its queues are alive".to_owned(),
            });
        }
        Ok(Port {
            id,
            shared: Arc::new(PortShared {
                id,
                _eal: eal.token(),
            }),
            pool: None,
            nb_rx: 0,
            nb_tx: 0,
            started: false,
            queues_taken: false,
            _not_sync: PhantomData,
        })
    }

    /// [`Eal::port_by_name`] then [`Port::open`].
    pub fn by_name(eal: &Eal, name: &str) -> Result<Port> {
        Port::open(eal, eal.port_by_name(name)?)
    }

    /// The port id.
    pub fn id(&self) -> PortId {
        self.id
    }

    /// The device name (`rte_eth_dev_get_name_by_port`), e.g. "net_memif0".
    pub fn name(&self) -> Result<String> {
        let mut buf: [c_char; ffi::RTE_ETH_NAME_MAX_LEN as usize] =
            [0; ffi::RTE_ETH_NAME_MAX_LEN as usize];
        // SAFETY: buf has RTE_ETH_NAME_MAX_LEN bytes, the size the function writes at most.
        let ret = unsafe { ffi::rte_eth_dev_get_name_by_port(self.id.0, buf.as_mut_ptr()) };
        check("rte_eth_dev_get_name_by_port", ret)?;
        Ok(c_array_str(&buf))
    }

    /// NUMA socket of the device (`SocketId::ANY` when unknown).
    pub fn socket_id(&self) -> SocketId {
        // SAFETY: valid port id; the function reads device data.
        let s = unsafe { ffi::rte_eth_dev_socket_id(self.id.0) };
        if s < 0 { SocketId::ANY } else { SocketId(s) }
    }

    /// Device capabilities (`rte_eth_dev_info_get`).
    pub fn info(&self) -> Result<DevInfo> {
        let mut info = ffi::rte_eth_dev_info::default();
        // SAFETY: valid port id and a valid out-pointer to a zeroed rte_eth_dev_info.
        let ret = unsafe { ffi::rte_eth_dev_info_get(self.id.0, &mut info) };
        check("rte_eth_dev_info_get", ret)?;
        let driver_name = if info.driver_name.is_null() {
            String::new()
        } else {
            // SAFETY: driver_name points to the PMD's static NUL-terminated name.
            unsafe { CStr::from_ptr(info.driver_name) }
                .to_string_lossy()
                .into_owned()
        };
        Ok(DevInfo {
            driver_name,
            if_index: info.if_index,
            min_mtu: info.min_mtu,
            max_mtu: info.max_mtu,
            max_rx_queues: info.max_rx_queues,
            max_tx_queues: info.max_tx_queues,
            reta_size: info.reta_size,
            hash_key_size: info.hash_key_size,
            flow_type_rss_offloads: RssHf(info.flow_type_rss_offloads),
            rx_offload_capa: RxOffloads(info.rx_offload_capa),
            tx_offload_capa: TxOffloads(info.tx_offload_capa),
            rx_desc_lim: (
                info.rx_desc_lim.nb_min,
                info.rx_desc_lim.nb_max,
                info.rx_desc_lim.nb_align,
            ),
            tx_desc_lim: (
                info.tx_desc_lim.nb_min,
                info.tx_desc_lim.nb_max,
                info.tx_desc_lim.nb_align,
            ),
        })
    }

    fn queues_alive(&self) -> bool {
        Arc::strong_count(&self.shared) > 1
    }

    fn require_no_queues(&self, what: &str) -> Result<()> {
        if self.queues_alive() {
            return Err(Error::Busy {
                what: self.id.to_string(),
                reason: format!("{what} needs all its RxQueue/TxQueue handles dropped first"),
            });
        }
        Ok(())
    }

    /// Configure the port and set up its queues with RX buffers from `pool`
    /// (`rte_eth_dev_configure`, `rte_eth_dev_adjust_nb_rx_tx_desc`,
    /// `rte_eth_{rx,tx}_queue_setup`). The port must be stopped and have no queue handles
    /// alive. Offloads and RSS types the device lacks are left out and reported.
    pub fn configure(&mut self, cfg: &PortConfig, pool: &Mempool) -> Result<AppliedConfig> {
        const CALL: &str = "Port::configure";
        self.require_no_queues("configure")?;
        if self.started {
            return Err(Error::Busy {
                what: self.id.to_string(),
                reason: "stop the port before configuring it".to_owned(),
            });
        }
        let info = self.info()?;
        if cfg.rx_queues == 0 || cfg.rx_queues > info.max_rx_queues {
            return Err(Error::invalid(
                CALL,
                format!(
                    "{} RX queues (device allows 1..={})",
                    cfg.rx_queues, info.max_rx_queues
                ),
            ));
        }
        if cfg.tx_queues == 0 || cfg.tx_queues > info.max_tx_queues {
            return Err(Error::invalid(
                CALL,
                format!(
                    "{} TX queues (device allows 1..={})",
                    cfg.tx_queues, info.max_tx_queues
                ),
            ));
        }
        let mut applied = AppliedConfig {
            rx_offloads: cfg.rx_offloads.intersection(info.rx_offload_capa),
            rx_offloads_unsupported: cfg.rx_offloads.difference(info.rx_offload_capa),
            tx_offloads: cfg.tx_offloads.intersection(info.tx_offload_capa),
            tx_offloads_unsupported: cfg.tx_offloads.difference(info.tx_offload_capa),
            ..AppliedConfig::default()
        };
        if !applied.rx_offloads_unsupported.is_empty() {
            applied.notes.push(format!(
                "RX offloads not supported by {}: {:?}",
                info.driver_name, applied.rx_offloads_unsupported
            ));
        }
        if !applied.tx_offloads_unsupported.is_empty() {
            applied.notes.push(format!(
                "TX offloads not supported by {}: {:?}",
                info.driver_name, applied.tx_offloads_unsupported
            ));
        }

        let mut conf = ffi::rte_eth_conf::default();
        conf.rxmode.offloads = applied.rx_offloads.bits();
        conf.txmode.offloads = applied.tx_offloads.bits();
        if let Some(mtu) = cfg.mtu {
            if mtu < info.min_mtu || mtu > info.max_mtu {
                return Err(Error::invalid(
                    CALL,
                    format!(
                        "MTU {mtu} outside the device range {}..={}",
                        info.min_mtu, info.max_mtu
                    ),
                ));
            }
            conf.rxmode.mtu = u32::from(mtu);
        }
        // Kept alive until rte_eth_dev_configure has copied it.
        let mut key_buf: Vec<u8> = Vec::new();
        if let Some(rss) = &cfg.rss {
            applied.rss_hf = rss.hash_functions.intersection(info.flow_type_rss_offloads);
            applied.rss_hf_unsupported = rss.hash_functions.difference(info.flow_type_rss_offloads);
            if applied.rss_hf.is_empty() {
                applied.notes.push(format!(
                    "RSS not supported by {} (flow_type_rss_offloads {:?}); RSS off",
                    info.driver_name, info.flow_type_rss_offloads
                ));
            } else {
                if !applied.rss_hf_unsupported.is_empty() {
                    applied.notes.push(format!(
                        "RSS hash types not supported: {:?}",
                        applied.rss_hf_unsupported
                    ));
                }
                let key_len = if info.hash_key_size == 0 {
                    crate::thash::RSS_KEY_LEN
                } else {
                    usize::from(info.hash_key_size)
                };
                match &rss.key {
                    RssKey::DeviceDefault => {}
                    RssKey::Symmetric => key_buf = crate::thash::symmetric_rss_key(key_len),
                    RssKey::Bytes(k) => {
                        // Devices that report no size take DPDK's documented 40 bytes.
                        if k.len() != key_len {
                            return Err(Error::invalid(
                                CALL,
                                format!("RSS key of {} bytes, device needs {key_len}", k.len()),
                            ));
                        }
                        key_buf.clone_from(k);
                    }
                }
                conf.rxmode.mq_mode = ffi::RTE_ETH_MQ_RX_RSS;
                conf.rx_adv_conf.rss_conf.rss_hf = applied.rss_hf.bits();
                if !key_buf.is_empty() {
                    conf.rx_adv_conf.rss_conf.rss_key_len = u8::try_from(key_buf.len())
                        .map_err(|_| Error::invalid(CALL, "RSS key longer than 255 bytes"))?;
                    conf.rx_adv_conf.rss_conf.rss_key = key_buf.as_mut_ptr();
                    applied.rss_key = Some(key_buf.clone());
                }
                applied.rss = true;
                apply_hash_function(rss, &mut conf, &mut applied);
            }
        }

        // SAFETY: valid port, stopped, with no queue handles alive; conf is a fully
        // initialised rte_eth_conf whose rss_key (if set) points to key_buf, alive until
        // the end of this function.
        let ret =
            unsafe { ffi::rte_eth_dev_configure(self.id.0, cfg.rx_queues, cfg.tx_queues, &conf) };
        check("rte_eth_dev_configure", ret)?;
        let (mut rxd, mut txd) = (cfg.rx_desc, cfg.tx_desc);
        // SAFETY: valid port; both pointers are valid u16 out-parameters.
        let ret = unsafe { ffi::rte_eth_dev_adjust_nb_rx_tx_desc(self.id.0, &mut rxd, &mut txd) };
        check("rte_eth_dev_adjust_nb_rx_tx_desc", ret)?;
        applied.rx_desc = rxd;
        applied.tx_desc = txd;
        let socket = self.socket_id().0.cast_unsigned();
        for q in 0..cfg.rx_queues {
            // SAFETY: configured port, queue index < rx_queues; NULL rx_conf selects the
            // device defaults; the pool is a valid pktmbuf pool that outlives the port's
            // use of it (this Port keeps a handle, and pools are never freed early).
            let ret = unsafe {
                ffi::rte_eth_rx_queue_setup(
                    self.id.0,
                    q,
                    rxd,
                    socket,
                    std::ptr::null(),
                    pool.as_ptr(),
                )
            };
            check("rte_eth_rx_queue_setup", ret)?;
        }
        for q in 0..cfg.tx_queues {
            // SAFETY: configured port, queue index < tx_queues; NULL tx_conf selects the
            // device defaults.
            let ret =
                unsafe { ffi::rte_eth_tx_queue_setup(self.id.0, q, txd, socket, std::ptr::null()) };
            check("rte_eth_tx_queue_setup", ret)?;
        }
        // Some PMDs (net_null among them) ignore the key in rte_eth_conf and only take one
        // through rss_hash_update; others apply it at start. Program it explicitly too.
        if let Some(key) = applied.rss_key.clone() {
            match self.rss_hash_update(Some(&key), applied.rss_hf) {
                Ok(()) => {}
                Err(e) if e.errno() == Some(ENOTSUP) => applied.notes.push(format!(
                    "{} cannot update the RSS key after configure; relying on rte_eth_conf",
                    info.driver_name
                )),
                // net_tap takes the RSS hash types but refuses any key: its queues are
                // filled by the kernel's own flow hash, not the symmetric Toeplitz asked
                // for, so the spreading is not reported as RSS (owners are then computed
                // in software, as on ports without RSS).
                Err(e) if e.errno() == Some(EINVAL) => {
                    applied.notes.push(format!(
                        "{} refuses the RSS key; its queue spreading is not symmetric RSS, \
                         RSS treated as off",
                        info.driver_name
                    ));
                    applied.rss = false;
                    applied.rss_key = None;
                }
                Err(e) => return Err(e),
            }
        }
        self.pool = Some(pool.clone());
        self.nb_rx = cfg.rx_queues;
        self.nb_tx = cfg.tx_queues;
        self.queues_taken = false;
        Ok(applied)
    }

    /// The queue handles, once per [`configure`](Self::configure): `rx[i]` is RX queue
    /// `i`. Each handle is `Send` and meant to be moved to the lcore that polls it.
    pub fn take_queues(&mut self) -> Result<(Vec<RxQueue>, Vec<TxQueue>)> {
        if self.pool.is_none() {
            return Err(Error::invalid("Port::take_queues", "port not configured"));
        }
        if self.queues_taken {
            return Err(Error::Busy {
                what: self.id.to_string(),
                reason: "queues already taken since the last configure".to_owned(),
            });
        }
        self.queues_taken = true;
        let rx = (0..self.nb_rx)
            .map(|q| RxQueue::new(self.id, QueueId(q), self.shared.clone()))
            .collect();
        let tx = (0..self.nb_tx)
            .map(|q| TxQueue::new(self.id, QueueId(q), self.shared.clone()))
            .collect();
        Ok((rx, tx))
    }

    /// Start the port (`rte_eth_dev_start`).
    pub fn start(&mut self) -> Result<()> {
        if self.pool.is_none() {
            return Err(Error::invalid("rte_eth_dev_start", "port not configured"));
        }
        // SAFETY: valid, configured port with all queues set up.
        let ret = unsafe { ffi::rte_eth_dev_start(self.id.0) };
        check("rte_eth_dev_start", ret)?;
        self.started = true;
        Ok(())
    }

    /// Stop the port (`rte_eth_dev_stop`); requires all queue handles dropped.
    pub fn stop(&mut self) -> Result<()> {
        self.require_no_queues("stop")?;
        if !self.started {
            return Ok(());
        }
        // SAFETY: valid port; no queue handle exists, so no thread is in a burst call.
        let ret = unsafe { ffi::rte_eth_dev_stop(self.id.0) };
        check("rte_eth_dev_stop", ret)?;
        self.started = false;
        Ok(())
    }

    /// Stop and close the port (`rte_eth_dev_close`), releasing its queues' mbufs. The
    /// port id is gone afterwards (vdevs are not re-created).
    pub fn close(mut self) -> Result<()> {
        self.stop()?;
        // SAFETY: valid, stopped port with no queue handles; the Port is consumed so no
        // further call uses the id through it.
        let ret = unsafe { ffi::rte_eth_dev_close(self.id.0) };
        check("rte_eth_dev_close", ret).map(|_| ())
    }

    /// Whether the port was started.
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// The MAC address (`rte_eth_macaddr_get`).
    pub fn mac(&self) -> Result<[u8; 6]> {
        let mut addr = ffi::rte_ether_addr::default();
        // SAFETY: valid port and a valid out-pointer.
        let ret = unsafe { ffi::rte_eth_macaddr_get(self.id.0, &mut addr) };
        check("rte_eth_macaddr_get", ret)?;
        Ok(addr.addr_bytes)
    }

    /// Set the MAC address (`rte_eth_dev_default_mac_addr_set`).
    pub fn set_mac(&mut self, mac: [u8; 6]) -> Result<()> {
        let mut addr = ffi::rte_ether_addr { addr_bytes: mac };
        // SAFETY: valid port; the address is read during the call only.
        let ret = unsafe { ffi::rte_eth_dev_default_mac_addr_set(self.id.0, &mut addr) };
        check("rte_eth_dev_default_mac_addr_set", ret).map(|_| ())
    }

    /// Enable or disable promiscuous mode.
    pub fn set_promiscuous(&mut self, on: bool) -> Result<()> {
        let ret = if on {
            // SAFETY: valid port id.
            unsafe { ffi::rte_eth_promiscuous_enable(self.id.0) }
        } else {
            // SAFETY: valid port id.
            unsafe { ffi::rte_eth_promiscuous_disable(self.id.0) }
        };
        check("rte_eth_promiscuous_enable/disable", ret).map(|_| ())
    }

    /// Whether promiscuous mode is on.
    pub fn promiscuous(&self) -> Result<bool> {
        // SAFETY: valid port id.
        let ret = unsafe { ffi::rte_eth_promiscuous_get(self.id.0) };
        check("rte_eth_promiscuous_get", ret).map(|r| r == 1)
    }

    /// Current MTU.
    pub fn mtu(&self) -> Result<u16> {
        let mut mtu = 0u16;
        // SAFETY: valid port and out-pointer.
        let ret = unsafe { ffi::rte_eth_dev_get_mtu(self.id.0, &mut mtu) };
        check("rte_eth_dev_get_mtu", ret)?;
        Ok(mtu)
    }

    /// Set the MTU (`rte_eth_dev_set_mtu`).
    pub fn set_mtu(&mut self, mtu: u16) -> Result<()> {
        // SAFETY: valid port id.
        let ret = unsafe { ffi::rte_eth_dev_set_mtu(self.id.0, mtu) };
        check("rte_eth_dev_set_mtu", ret).map(|_| ())
    }

    /// Link state without waiting (`rte_eth_link_get_nowait`).
    pub fn link(&self) -> Result<Link> {
        let mut link = ffi::rte_eth_link::default();
        // SAFETY: valid port and out-pointer.
        let ret = unsafe { ffi::rte_eth_link_get_nowait(self.id.0, &mut link) };
        check("rte_eth_link_get_nowait", ret)?;
        Ok(Link {
            up: u32::from(link.link_status()) == ffi::RTE_ETH_LINK_UP,
            speed_mbps: link.link_speed,
            full_duplex: u32::from(link.link_duplex()) == ffi::RTE_ETH_LINK_FULL_DUPLEX,
            autoneg: link.link_autoneg() != 0,
        })
    }

    /// Poll the link every 10 ms until it is up or `timeout` passes (memif's link comes
    /// up once both ends have connected over the control socket).
    pub fn wait_link_up(&self, timeout: Duration) -> Result<Link> {
        self.wait_link(true, timeout)
    }

    /// Poll the link every 10 ms until it is down or `timeout` passes (e.g. a memif end
    /// whose peer disconnected).
    pub fn wait_link_down(&self, timeout: Duration) -> Result<Link> {
        self.wait_link(false, timeout)
    }

    fn wait_link(&self, up: bool, timeout: Duration) -> Result<Link> {
        let deadline = Instant::now() + timeout;
        loop {
            let link = self.link()?;
            if link.up == up {
                return Ok(link);
            }
            if Instant::now() >= deadline {
                let state = if up { "down" } else { "up" };
                return Err(Error::Setup {
                    problem: format!("{} link still {state} after {timeout:?}", self.id),
                    hint: "for memif, check that the peer uses the same socket and id".to_owned(),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Basic counters (`rte_eth_stats_get`).
    pub fn stats(&self) -> Result<Stats> {
        let mut s = ffi::rte_eth_stats::default();
        // SAFETY: valid port and out-pointer.
        let ret = unsafe { ffi::rte_eth_stats_get(self.id.0, &mut s) };
        check("rte_eth_stats_get", ret)?;
        Ok(Stats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        })
    }

    /// Reset the basic counters.
    pub fn reset_stats(&mut self) -> Result<()> {
        // SAFETY: valid port id.
        let ret = unsafe { ffi::rte_eth_stats_reset(self.id.0) };
        check("rte_eth_stats_reset", ret).map(|_| ())
    }

    /// Extended counters as (name, value) pairs (`rte_eth_xstats_get_names`,
    /// `rte_eth_xstats_get`).
    pub fn xstats(&self) -> Result<Vec<(String, u64)>> {
        // SAFETY: valid port; NULL with size 0 asks for the count.
        let n = unsafe { ffi::rte_eth_xstats_get_names(self.id.0, std::ptr::null_mut(), 0) };
        let n = check("rte_eth_xstats_get_names", n)?;
        let count = u32::try_from(n).unwrap_or(0);
        let len = usize::try_from(n).unwrap_or(0);
        let mut names = vec![ffi::rte_eth_xstat_name { name: [0; 64] }; len];
        // SAFETY: names has `count` elements.
        let got = unsafe { ffi::rte_eth_xstats_get_names(self.id.0, names.as_mut_ptr(), count) };
        check("rte_eth_xstats_get_names", got)?;
        let mut values = vec![ffi::rte_eth_xstat::default(); len];
        // SAFETY: values has `count` elements.
        let got = unsafe { ffi::rte_eth_xstats_get(self.id.0, values.as_mut_ptr(), count) };
        let got = usize::try_from(check("rte_eth_xstats_get", got)?).unwrap_or(0);
        Ok(values
            .iter()
            .take(got.min(len))
            .filter_map(|x| {
                let name = names.get(usize::try_from(x.id).ok()?)?;
                Some((c_array_str(&name.name), x.value))
            })
            .collect())
    }

    /// Program the RSS redirection table: `reta[i]` is the RX queue for hash bucket `i`;
    /// `reta.len()` must equal the device's `reta_size`.
    pub fn reta_update(&mut self, reta: &[u16]) -> Result<()> {
        const CALL: &str = "rte_eth_dev_rss_reta_update";
        let size = self.reta_size()?;
        if reta.len() != usize::from(size) {
            return Err(Error::invalid(
                CALL,
                format!("{} entries, device RETA has {size}", reta.len()),
            ));
        }
        if let Some(q) = reta.iter().find(|&&q| q >= self.nb_rx) {
            return Err(Error::invalid(
                CALL,
                format!("queue {q} >= {} configured RX queues", self.nb_rx),
            ));
        }
        let mut conf = reta_groups(size);
        for (group, chunk) in conf.iter_mut().zip(reta.chunks(RETA_GROUP)) {
            group.mask = u64::MAX;
            group.reta[..chunk.len()].copy_from_slice(chunk);
        }
        // SAFETY: conf has size / 64 groups, as the function reads for reta_size `size`.
        let ret = unsafe { ffi::rte_eth_dev_rss_reta_update(self.id.0, conf.as_mut_ptr(), size) };
        check(CALL, ret).map(|_| ())
    }

    /// Read the RSS redirection table (`rte_eth_dev_rss_reta_query`).
    pub fn reta_query(&self) -> Result<Vec<u16>> {
        let size = self.reta_size()?;
        let mut conf = reta_groups(size);
        for g in &mut conf {
            g.mask = u64::MAX;
        }
        // SAFETY: conf has size / 64 groups, as the function writes for reta_size `size`.
        let ret = unsafe { ffi::rte_eth_dev_rss_reta_query(self.id.0, conf.as_mut_ptr(), size) };
        check("rte_eth_dev_rss_reta_query", ret)?;
        Ok(conf
            .iter()
            .flat_map(|g| g.reta.iter().copied())
            .take(usize::from(size))
            .collect())
    }

    fn reta_size(&self) -> Result<u16> {
        let size = self.info()?.reta_size;
        if size == 0 || usize::from(size) % RETA_GROUP != 0 {
            return Err(Error::invalid(
                "RETA",
                format!("{} has no usable RETA (reta_size {size})", self.id),
            ));
        }
        Ok(size)
    }

    /// The RSS key and hash types in use (`rte_eth_dev_rss_hash_conf_get`).
    pub fn rss_hash_conf(&self) -> Result<(Vec<u8>, RssHf)> {
        let info = self.info()?;
        let len = usize::from(info.hash_key_size).max(crate::thash::RSS_KEY_LEN);
        let mut key = vec![0u8; len];
        let mut conf = ffi::rte_eth_rss_conf {
            rss_key: key.as_mut_ptr(),
            rss_key_len: u8::try_from(len).unwrap_or(u8::MAX),
            ..Default::default()
        };
        // SAFETY: valid port; rss_key points to rss_key_len writable bytes.
        let ret = unsafe { ffi::rte_eth_dev_rss_hash_conf_get(self.id.0, &mut conf) };
        check("rte_eth_dev_rss_hash_conf_get", ret)?;
        let got = if info.hash_key_size == 0 {
            usize::from(conf.rss_key_len).min(len)
        } else {
            usize::from(info.hash_key_size)
        };
        key.truncate(got);
        Ok((key, RssHf(conf.rss_hf)))
    }

    /// Change the RSS key (if given) and hash types at run time
    /// (`rte_eth_dev_rss_hash_update`).
    pub fn rss_hash_update(&mut self, key: Option<&[u8]>, hf: RssHf) -> Result<()> {
        let mut key_buf = key.map(<[u8]>::to_vec).unwrap_or_default();
        let mut conf = ffi::rte_eth_rss_conf {
            rss_hf: hf.bits(),
            ..Default::default()
        };
        if !key_buf.is_empty() {
            conf.rss_key = key_buf.as_mut_ptr();
            conf.rss_key_len = u8::try_from(key_buf.len()).map_err(|_| {
                Error::invalid("rte_eth_dev_rss_hash_update", "key longer than 255 bytes")
            })?;
        }
        // SAFETY: valid port; rss_key (if set) points to rss_key_len bytes alive for the call.
        let ret = unsafe { ffi::rte_eth_dev_rss_hash_update(self.id.0, &mut conf) };
        check("rte_eth_dev_rss_hash_update", ret).map(|_| ())
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        if self.started && !self.queues_alive() {
            // SAFETY: valid port; no queue handle exists, so no thread is in a burst call.
            let ret = unsafe { ffi::rte_eth_dev_stop(self.id.0) };
            if ret < 0 {
                eprintln!(
                    "dpdk-bindings: stopping {} failed: {}",
                    self.id,
                    Error::from_errno("rte_eth_dev_stop", ret)
                );
            }
        }
    }
}

const RETA_GROUP: usize = ffi::RTE_ETH_RETA_GROUP_SIZE as usize;

fn reta_groups(size: u16) -> Vec<ffi::rte_eth_rss_reta_entry64> {
    vec![ffi::rte_eth_rss_reta_entry64::default(); usize::from(size) / RETA_GROUP]
}

#[cfg(dpdk_ge_2311)]
fn apply_hash_function(rss: &RssConfig, conf: &mut ffi::rte_eth_conf, applied: &mut AppliedConfig) {
    if rss.symmetric_hash_function {
        conf.rx_adv_conf.rss_conf.algorithm = ffi::RTE_ETH_HASH_FUNCTION_SYMMETRIC_TOEPLITZ;
        applied.symmetric_hash_function = true;
    }
}

#[cfg(not(dpdk_ge_2311))]
fn apply_hash_function(
    rss: &RssConfig,
    _conf: &mut ffi::rte_eth_conf,
    applied: &mut AppliedConfig,
) {
    if rss.symmetric_hash_function {
        applied.notes.push(
            "RTE_ETH_HASH_FUNCTION_SYMMETRIC_TOEPLITZ needs rte_eth_rss_conf.algorithm \
             (DPDK >= 23.11); using the key only"
                .to_owned(),
        );
    }
}

/// `ENODEV` on Linux.
const ENODEV: i32 = 19;
/// `ENOTSUP` on Linux.
const ENOTSUP: i32 = 95;
/// `EINVAL` on Linux.
const EINVAL: i32 = 22;

impl Eal {
    /// Two ports joined back to back by two `rte_ring`s (`rte_eth_from_rings`): what port
    /// A sends, port B receives, and the other way round. Named `net_ring_<name>_a` and
    /// `net_ring_<name>_b`; each has one RX and one TX queue of `capacity` packets. For
    /// tests and loopback set-ups without a kernel or peer process. The rings live as long
    /// as the process (the net_ring driver does not free rings it did not create).
    pub fn ring_port_pair(&self, name: &str, capacity: u32) -> Result<(PortId, PortId)> {
        const CALL: &str = "rte_eth_from_rings";
        // The driver names the port "net_ring_<name>" in a 32-byte buffer.
        if name.is_empty() || name.len() > 20 || !name.is_ascii() {
            return Err(Error::invalid(
                CALL,
                format!("name {name:?} must be 1 to 20 ASCII bytes"),
            ));
        }
        let socket = self.socket_id().0.max(0).cast_unsigned();
        let mk_ring = |suffix: &str| -> Result<*mut ffi::rte_ring> {
            let c = std::ffi::CString::new(format!("{name}_{suffix}"))
                .map_err(|_| Error::invalid(CALL, "name contains NUL"))?;
            let flags = ffi::RING_F_SP_ENQ | ffi::RING_F_SC_DEQ;
            // SAFETY: EAL is initialised (&self); valid C string; DPDK validates the size
            // (power of two) and returns NULL with rte_errno on failure.
            let r =
                unsafe { ffi::rte_ring_create(c.as_ptr(), capacity, socket.cast_signed(), flags) };
            if r.is_null() {
                Err(Error::last("rte_ring_create"))
            } else {
                Ok(r)
            }
        };
        let ab = mk_ring("ab")?;
        let ba = mk_ring("ba")?;
        let mk_port = |suffix: &str, rx: *mut ffi::rte_ring, tx: *mut ffi::rte_ring| {
            let c = std::ffi::CString::new(format!("{name}_{suffix}"))
                .map_err(|_| Error::invalid(CALL, "name contains NUL"))?;
            let rx = [rx];
            let tx = [tx];
            // SAFETY: EAL is initialised; rx and tx are one-element arrays of valid rings
            // that are never freed; the driver copies the pointers.
            let ret = unsafe {
                ffi::rte_eth_from_rings(c.as_ptr(), rx.as_ptr(), 1, tx.as_ptr(), 1, socket)
            };
            if ret < 0 {
                return Err(Error::last(CALL));
            }
            u16::try_from(ret)
                .map(PortId)
                .map_err(|_| Error::invalid(CALL, format!("port id {ret} out of range")))
        };
        let a = mk_port("a", ba, ab)?;
        let b = mk_port("b", ab, ba)?;
        Ok((a, b))
    }
}
