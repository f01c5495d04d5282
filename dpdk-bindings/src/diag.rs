//! Start-up checks with actionable errors: are the ports the daemon was given there, and
//! can a mempool be created? When not, say which Debian package or EAL flag is missing.
//!
//! Debian ships each driver as `librte-<class>-<name>NN` (e.g. `librte-net-memif23`,
//! `librte-net-e1000-23` when the name ends in a digit) holding
//! `librte_<class>_<name>.so.NN`, symlinked into the EAL plugin directory that shared
//! builds autoload (verified with `dpkg -S`, see docs/dpdk-bindings.md). Whether a driver
//! registered is told by whether its shared object is loaded (`dlopen(RTLD_NOLOAD)`).

use std::ffi::{CStr, CString};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::eal::Eal;
use crate::error::{Error, Result};
use crate::ffi;
use crate::port::PortId;

/// ABI major version of the DPDK libraries (the `NN` in `librte_eal.so.NN`).
pub const DPDK_ABI: &str = env!("DPDK_ABI");

/// The EAL plugin directory of this DPDK build (from `librte_eal`'s configuration), where
/// shared builds autoload drivers from.
pub const PMD_DIR: &str = env!("DPDK_PMD_DIR");

/// A driver as Debian packages it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverPackage {
    /// Driver name as EAL registers it, e.g. "net_memif", "ring_mp_mc" for mempool ops.
    pub driver: String,
    /// Shared object, e.g. "librte_net_memif.so.23".
    pub soname: String,
    /// Debian package, e.g. "librte-net-memif23".
    pub package: String,
}

impl DriverPackage {
    /// Package of a `<class>_<name>` driver such as "net_memif" or "mempool_ring".
    pub fn for_library(lib: &str) -> DriverPackage {
        let dashed = lib.replace('_', "-");
        let sep = if dashed.ends_with(|c: char| c.is_ascii_digit()) {
            "-"
        } else {
            ""
        };
        DriverPackage {
            driver: lib.to_owned(),
            soname: format!("librte_{lib}.so.{DPDK_ABI}"),
            package: format!("librte-{dashed}{sep}{DPDK_ABI}"),
        }
    }

    /// Whether the driver's shared object is loaded in this process (linked, autoloaded
    /// from the plugin directory, or loaded with `-d`).
    pub fn is_loaded(&self) -> bool {
        let Ok(c) = CString::new(self.soname.as_str()) else {
            return false;
        };
        // SAFETY: c is a valid C string; dlopen with RTLD_NOLOAD never loads anything.
        unsafe { ffi::shim_dso_loaded(c.as_ptr()) != 0 }
    }
}

/// The driver that creates a port of this name: vdev names are the driver name plus an
/// instance suffix (`net_memif0`, `net_ring_a`, `eth_null1` is an alias of `net_null`).
/// `None` for PCI addresses and other bus names.
pub fn driver_for_port_name(name: &str) -> Option<DriverPackage> {
    let base = name.split(',').next().unwrap_or(name);
    let rest = base
        .strip_prefix("net_")
        .or_else(|| base.strip_prefix("eth_"))?;
    // Known multi-word drivers first, then "name" up to the trailing instance suffix.
    const KNOWN: &[&str] = &["af_packet", "af_xdp", "vdev_netvsc"];
    let drv = KNOWN
        .iter()
        .find(|k| rest.starts_with(**k))
        .map(|k| (*k).to_owned())
        .unwrap_or_else(|| {
            // "memif0": the instance number is appended; "e1000_0", "ring_a": it follows
            // a separator and the digits belong to the driver name.
            match rest.find(|c: char| !c.is_ascii_alphanumeric()) {
                Some(end) => rest[..end].to_owned(),
                None => rest
                    .trim_end_matches(|c: char| c.is_ascii_digit())
                    .to_owned(),
            }
        });
    if drv.is_empty() {
        return None;
    }
    Some(DriverPackage::for_library(&format!("net_{drv}")))
}

/// Check that every named port exists; return their ids in order. When one is missing,
/// the error names the driver package to install (`driver net_memif not registered:
/// install librte-net-memif23 or pass -d <path>`), or says the driver is loaded but did not
/// create the port (bad `--vdev` arguments, device not bound).
pub fn check_ports<S: AsRef<str>>(eal: &Eal, names: &[S]) -> Result<Vec<PortId>> {
    names
        .iter()
        .map(|n| {
            let name = n.as_ref();
            eal.port_by_name(name).map_err(|_| missing_port_error(name))
        })
        .collect()
}

fn missing_port_error(name: &str) -> Error {
    let problem = format!("port {name} not found");
    let hint = match driver_for_port_name(name) {
        Some(d) if !d.is_loaded() => format!(
            "driver {} not registered: install {} or pass -d <path to {}> to EAL \
             (shared DPDK autoloads drivers from {PMD_DIR})",
            d.driver, d.package, d.soname
        ),
        Some(d) => format!(
            "driver {} is registered but created no port {name}: check the --vdev={name},... \
             argument and the EAL log",
            d.driver
        ),
        None => "not a virtual device name: for a PCI device, bind it to vfio-pci \
                 (dpdk-devbind.py) and allow it with -a <PCI address>"
            .to_owned(),
    };
    Error::Setup { problem, hint }
}

/// Names of the registered mempool drivers (ops), in registration order.
pub fn mempool_ops_names() -> Vec<String> {
    let table = &raw const ffi::rte_mempool_ops_table;
    // SAFETY: rte_mempool_ops_table is a global filled by driver constructors (at load
    // time, i.e. before or during rte_eal_init) and never shrunk; num_ops is bounded by
    // RTE_MEMPOOL_MAX_OPS_IDX and each registered entry has a NUL-terminated name.
    let table = unsafe { &*table };
    let n = usize::try_from(table.num_ops)
        .unwrap_or(0)
        .min(table.ops.len());
    table
        .ops
        .iter()
        .take(n)
        .map(|o| crate::mempool::c_array_str(&o.name))
        .collect()
}

/// The mempool ops `rte_pktmbuf_pool_create` uses (`rte_mbuf_best_mempool_ops`, normally
/// "ring_mp_mc").
pub fn best_mempool_ops() -> String {
    // SAFETY: returns a pointer to a static or EAL-configured NUL-terminated string.
    let p = unsafe { ffi::rte_mbuf_best_mempool_ops() };
    if p.is_null() {
        return String::new();
    }
    // SAFETY: non-null NUL-terminated string (above).
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// The driver library providing a mempool ops name.
fn mempool_ops_library(ops: &str) -> Option<&'static str> {
    match ops {
        "ring_mp_mc" | "ring_sp_sc" | "ring_mp_sc" | "ring_sp_mc" | "ring_mt_rts"
        | "ring_mt_hts" => Some("mempool_ring"),
        "stack" | "lf_stack" => Some("mempool_stack"),
        "bucket" => Some("mempool_bucket"),
        _ => None,
    }
}

/// Check that the mempool driver `ops` is registered.
pub fn check_mempool_ops(ops: &str) -> Result<()> {
    if mempool_ops_names().iter().any(|n| n == ops) {
        return Ok(());
    }
    let hint = match mempool_ops_library(ops) {
        Some(lib) => {
            let d = DriverPackage::for_library(lib);
            format!(
                "install {} or pass -d <path to {}> to EAL",
                d.package, d.soname
            )
        }
        None => format!(
            "no known driver provides it; registered: {:?}",
            mempool_ops_names()
        ),
    };
    Err(Error::Setup {
        problem: format!("mempool driver {ops} not registered"),
        hint,
    })
}

/// Check that packet mempools can be created: the mempool driver is registered and a
/// small pool fits in memory (the pool is freed again).
pub fn check_mempool(eal: &Eal) -> Result<()> {
    static PROBE: AtomicU32 = AtomicU32::new(0);
    check_mempool_ops(&best_mempool_ops())?;
    let name = CString::new(format!(
        "diag_probe_{}",
        PROBE.fetch_add(1, Ordering::Relaxed)
    ))
    .map_err(|_| Error::invalid("check_mempool", "probe pool name"))?;
    // SAFETY: EAL is initialised (&Eal); valid C string; small valid sizes.
    let mp = unsafe {
        ffi::rte_pktmbuf_pool_create(
            name.as_ptr(),
            63,
            0,
            0,
            u16::try_from(ffi::RTE_MBUF_DEFAULT_BUF_SIZE).unwrap_or(2176),
            ffi::SOCKET_ID_ANY,
        )
    };
    if mp.is_null() {
        return Err(explain_mempool_error(
            eal,
            Error::last("rte_pktmbuf_pool_create"),
        ));
    }
    // SAFETY: the probe pool was just created, no mbuf was taken from it and nobody else
    // knows it.
    unsafe { ffi::rte_mempool_free(mp) };
    Ok(())
}

/// Turn a failed pool creation into an [`Error::Setup`] that says what is missing
/// (hugepage memory, the mempool driver); other errors pass through.
pub(crate) fn explain_mempool_error(eal: &Eal, err: Error) -> Error {
    const ENOMEM: i32 = 12;
    const EINVAL: i32 = 22;
    const ENOENT: i32 = 2;
    match err.errno() {
        Some(ENOMEM) => {
            let hint = if eal.has_hugepages() {
                format!(
                    "not enough free hugepage memory (HugePages_Free {} of 2 MiB pages in \
                     /proc/meminfo): reserve more (echo N > /proc/sys/vm/nr_hugepages), \
                     raise -m/--socket-mem, or run with --no-huge for tests",
                    hugepages_free().map_or_else(|| "unknown".to_owned(), |n| n.to_string())
                )
            } else {
                "EAL runs with --no-huge: raise -m (MiB of memory)".to_owned()
            };
            Error::Setup {
                problem: format!("{err}"),
                hint,
            }
        }
        Some(EINVAL | ENOENT) => match check_mempool_ops(&best_mempool_ops()) {
            Err(e) => e,
            Ok(()) => err,
        },
        _ => err,
    }
}

fn hugepages_free() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("HugePages_Free:"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_follow_debian() {
        let d = DriverPackage::for_library("net_memif");
        assert_eq!(d.soname, format!("librte_net_memif.so.{DPDK_ABI}"));
        assert_eq!(d.package, format!("librte-net-memif{DPDK_ABI}"));
        assert_eq!(
            DriverPackage::for_library("net_af_packet").package,
            format!("librte-net-af-packet{DPDK_ABI}")
        );
        assert_eq!(
            DriverPackage::for_library("net_e1000").package,
            format!("librte-net-e1000-{DPDK_ABI}")
        );
        assert_eq!(
            DriverPackage::for_library("mempool_ring").package,
            format!("librte-mempool-ring{DPDK_ABI}")
        );
    }

    #[test]
    fn port_names_map_to_drivers() {
        let drv = |n: &str| driver_for_port_name(n).map(|d| d.driver);
        assert_eq!(drv("net_memif0").as_deref(), Some("net_memif"));
        assert_eq!(drv("net_memif12").as_deref(), Some("net_memif"));
        assert_eq!(drv("net_ring_a").as_deref(), Some("net_ring"));
        assert_eq!(drv("net_af_packet1").as_deref(), Some("net_af_packet"));
        assert_eq!(drv("eth_null0").as_deref(), Some("net_null"));
        assert_eq!(drv("net_tap0,iface=x").as_deref(), Some("net_tap"));
        assert_eq!(drv("net_e1000_0").as_deref(), Some("net_e1000"));
        assert_eq!(drv("0000:01:00.0"), None);
        assert_eq!(drv("net_"), None);
    }

    #[test]
    fn mempool_ops_map_to_packages() {
        assert_eq!(mempool_ops_library("ring_mp_mc"), Some("mempool_ring"));
        assert_eq!(mempool_ops_library("nonsense"), None);
    }
}
