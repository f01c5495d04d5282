//! Build script: find the system DPDK with `pkg-config libdpdk`, compile the C shim
//! (`src/shim.c`) with DPDK's own cflags, generate raw bindings with bindgen, and link the
//! few DPDK libraries this crate binds. See docs/dpdk-bindings.md for why the PMDs are not
//! linked (Debian's shared DPDK autoloads them) and how the `link-pmds` feature works.

use std::env;
use std::path::PathBuf;
use std::process::{Command, exit};

/// Oldest DPDK release the bindings are written against.
const MIN_DPDK: &str = "22.11";

/// The DPDK libraries the safe layer calls into. The rest of `pkg-config --libs` (about 50
/// libraries) is dropped; `--as-needed` would discard most of them anyway.
const LINK_LIBS: &[&str] = &[
    "rte_eal",
    "rte_ethdev",
    "rte_mbuf",
    "rte_mempool",
    "rte_ring",
    "rte_kvargs",
    "rte_telemetry",
];

/// With the `link-pmds` feature: drivers linked with `--no-as-needed`, so they are
/// DT_NEEDED by the binary and register through their constructors even where EAL's plugin
/// directory is not scanned.
const PMD_LIBS: &[&str] = &[
    "rte_bus_vdev",
    "rte_mempool_ring",
    "rte_net_null",
    "rte_net_memif",
    "rte_net_af_packet",
    "rte_net_tap",
];

/// Stop the build with `msg`: its first line as a `cargo::error` (shown at the top of
/// cargo's output), the whole message on stderr.
fn fail(msg: &str) -> ! {
    let first = msg.lines().next().unwrap_or(msg);
    println!("cargo::error={first}");
    eprintln!("\nerror: dpdk-bindings: {msg}\n");
    exit(1);
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/wrapper.h");
    println!("cargo:rerun-if-changed=src/shim.h");
    println!("cargo:rerun-if-changed=src/shim.c");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG");
    println!("cargo::rustc-check-cfg=cfg(dpdk_ge_2311)");

    let dpdk = match pkg_config::Config::new()
        .atleast_version(MIN_DPDK)
        .cargo_metadata(false)
        .env_metadata(true)
        .probe("libdpdk")
    {
        Ok(lib) => lib,
        Err(e) => fail(&format!(
            "`pkg-config libdpdk` (>= {MIN_DPDK}) failed: install the DPDK development \
             files with `apt-get install libdpdk-dev pkg-config` (or point PKG_CONFIG_PATH \
             at a DPDK build's lib/pkgconfig)\npkg-config said: {e}"
        )),
    };
    let version = dpdk.version.clone();
    emit_version_cfg(&version);

    let cflags = dpdk_cflags();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let src_dir = manifest_dir.join("src");

    check_libclang();
    generate_bindings(&cflags, &src_dir, &out_dir);
    compile_shim(&cflags, &src_dir);

    for path in &dpdk.link_paths {
        println!("cargo:rustc-link-search=native={}", path.display());
    }
    for lib in LINK_LIBS {
        if !dpdk.libs.iter().any(|l| l == lib) {
            fail(&format!(
                "`pkg-config --libs libdpdk` does not list {lib}; this DPDK build is missing a \
                 library the bindings need"
            ));
        }
        println!("cargo:rustc-link-lib=dylib={lib}");
    }
    // rte_eth_from_rings (Eal::ring_port_pair) lives in the net_ring driver itself; with
    // --as-needed only binaries that call it get the DT_NEEDED entry.
    println!("cargo:rustc-link-lib=dylib=rte_net_ring");
    // Linking the PMDs themselves: they export no symbol (their only job is the
    // constructor that registers the driver), so rustc's `-Wl,--as-needed` drops them, and
    // the `-as-needed` link modifier is nightly-only. Wrap them in --no-as-needed instead.
    // `rustc-link-arg` reaches only this package's own targets (tests, examples); a
    // dependent binary forwards DEP_RTE_EAL_PMD_LINK_ARGS from its own build script.
    let pmd_args: Vec<String> = std::iter::once("-Wl,--push-state,--no-as-needed".to_owned())
        .chain(PMD_LIBS.iter().map(|l| format!("-l{l}")))
        .chain(std::iter::once("-Wl,--pop-state".to_owned()))
        .collect();
    println!("cargo:pmd_link_args={}", pmd_args.join(" "));
    if env::var_os("CARGO_FEATURE_LINK_PMDS").is_some() {
        for arg in &pmd_args {
            println!("cargo:rustc-link-arg={arg}");
        }
    }
    let (abi, pmd_dir) = abi_and_pmd_dir(&dpdk.link_paths);
    println!("cargo:rustc-env=DPDK_ABI={abi}");
    println!("cargo:rustc-env=DPDK_PMD_DIR={pmd_dir}");
    // Dependents can read this as DEP_RTE_EAL_VERSION (the package has `links = "rte_eal"`).
    println!("cargo:version={version}");
}

/// The ABI major version (`NN` of `librte_eal.so.NN`, 23 for DPDK 22.11) and the plugin
/// directory EAL autoloads drivers from. `pkg-config --variable=pmdsdir` is empty on Debian,
/// so the directory is read from librte_eal itself (the `DPDK_PLUGIN_PATH=` string EAL
/// uses).
fn abi_and_pmd_dir(link_paths: &[PathBuf]) -> (String, String) {
    let mut dirs: Vec<PathBuf> = link_paths.to_vec();
    dirs.push(PathBuf::from("/usr/lib/x86_64-linux-gnu"));
    dirs.push(PathBuf::from("/usr/local/lib/x86_64-linux-gnu"));
    dirs.push(PathBuf::from("/usr/local/lib64"));
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(abi) = name.strip_prefix("librte_eal.so.") else {
                continue;
            };
            if abi.is_empty() || !abi.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let pmd_dir = std::fs::read(e.path())
                .ok()
                .and_then(|bytes| plugin_path(&bytes))
                .unwrap_or_default();
            return (abi.to_owned(), pmd_dir);
        }
    }
    fail(
        "cannot find librte_eal.so.<ABI> in the pkg-config link paths; apt-get install libdpdk-dev",
    )
}

fn plugin_path(bytes: &[u8]) -> Option<String> {
    let key = b"DPDK_PLUGIN_PATH=";
    let start = bytes.windows(key.len()).position(|w| w == key)? + key.len();
    let end = bytes[start..].iter().position(|&b| b == 0)? + start;
    String::from_utf8(bytes[start..end].to_vec()).ok()
}

/// `dpdk_ge_2311` when the system DPDK is 23.11 or newer (rte_eth_rss_conf gained the
/// `algorithm` field there), the way retina gates on DPDK versions.
fn emit_version_cfg(version: &str) {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let year = parts.next().unwrap_or(0);
    let month = parts.next().unwrap_or(0);
    if (year, month) >= (23, 11) {
        println!("cargo:rustc-cfg=dpdk_ge_2311");
    }
}

/// The full `pkg-config --cflags libdpdk`: the crate's `Library` keeps only `-I`/`-D`, but
/// DPDK also needs `-include rte_config.h` and its `-march`.
fn dpdk_cflags() -> Vec<String> {
    let pkg_config = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".to_owned());
    let out = Command::new(&pkg_config)
        .args(["--cflags", "libdpdk"])
        .output()
        .unwrap_or_else(|e| {
            fail(&format!(
                "cannot run `{pkg_config}`: {e}; apt-get install pkg-config libdpdk-dev"
            ))
        });
    if !out.status.success() {
        fail(&format!(
            "`{pkg_config} --cflags libdpdk` failed: {}; apt-get install libdpdk-dev",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// bindgen panics with "Unable to find libclang" when libclang is missing; turn that into a
/// message naming the package.
fn check_libclang() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let res = std::panic::catch_unwind(bindgen::clang_version);
    std::panic::set_hook(prev);
    match res {
        Ok(v) if v.parsed.is_some() => {}
        Ok(v) => fail(&format!(
            "libclang loaded but reports an unparseable version `{}`",
            v.full
        )),
        Err(_) => fail(
            "libclang not found (bindgen needs it to read the DPDK headers): install it \
             with `apt-get install libclang-dev clang`, or set LIBCLANG_PATH to the \
             directory holding libclang.so",
        ),
    }
}

fn generate_bindings(cflags: &[String], src_dir: &std::path::Path, out_dir: &std::path::Path) {
    let builder = bindgen::Builder::default()
        .header(src_dir.join("wrapper.h").to_string_lossy())
        .clang_args(cflags)
        .clang_arg(format!("-I{}", src_dir.display()))
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        // RTE_BIT64()-based flags (RTE_ETH_RSS_*, RTE_ETH_{RX,TX}_OFFLOAD_*) are
        // function-like macro expansions that cexpr cannot evaluate; let clang do it.
        .clang_macro_fallback()
        .clang_macro_fallback_build_dir(out_dir)
        .use_core()
        .derive_default(true)
        .derive_debug(true)
        .impl_debug(false)
        .prepend_enum_name(false)
        .default_enum_style(bindgen::EnumVariation::Consts)
        .generate_comments(false)
        // Structs declared both __rte_packed and __rte_aligned; bindgen cannot lay them out
        // ("packed type cannot transitively contain a #[repr(align)] type"). Unused here.
        .opaque_type("rte_l2tpv2_.*")
        .opaque_type("rte_arp_.*")
        .opaque_type("rte_gtp_psc_generic_hdr")
        .opaque_type("rte_gtp_psc_.*")
        // What the safe layer uses, not all of DPDK.
        .allowlist_function("shim_.*")
        .allowlist_function("rte_version")
        .allowlist_function("rte_strerror")
        .allowlist_function("rte_eal_(init|cleanup|has_hugepages|process_type|iova_mode)")
        .allowlist_function("rte_eal_(remote_launch|wait_lcore|get_lcore_state)")
        .allowlist_function("rte_(get_main_lcore|get_next_lcore|lcore_count|lcore_index)")
        .allowlist_function("rte_(lcore_to_socket_id|socket_id|socket_count|lcore_is_enabled)")
        .allowlist_function("rte_get_tsc_hz")
        .allowlist_function("rte_(malloc_socket|free)")
        .allowlist_function("rte_pktmbuf_pool_create(_by_ops)?")
        .allowlist_function("rte_pktmbuf_free_bulk")
        .allowlist_function("rte_mbuf_best_mempool_ops")
        .allowlist_function(
            "rte_mempool_(lookup|free|avail_count|in_use_count|create_empty|set_ops_byname)",
        )
        .allowlist_function("rte_ring_(create|free|lookup)")
        .allowlist_function("rte_eth_dev_(count_avail|get_port_by_name|get_name_by_port)")
        .allowlist_function("rte_eth_dev_(is_valid_port|socket_id|info_get|configure)")
        .allowlist_function("rte_eth_dev_(start|stop|close|set_mtu|get_mtu)")
        .allowlist_function("rte_eth_dev_(adjust_nb_rx_tx_desc|default_mac_addr_set)")
        .allowlist_function("rte_eth_dev_(rss_reta_update|rss_reta_query)")
        .allowlist_function("rte_eth_dev_(rss_hash_update|rss_hash_conf_get)")
        .allowlist_function("rte_eth_find_next_owned_by")
        .allowlist_function("rte_eth_from_rings")
        .allowlist_function("rte_eth_(rx|tx)_queue_setup")
        .allowlist_function("rte_eth_macaddr_get")
        .allowlist_function("rte_eth_promiscuous_(enable|disable|get)")
        .allowlist_function("rte_eth_link_get(_nowait)?")
        .allowlist_function("rte_eth_stats_(get|reset)")
        .allowlist_function("rte_eth_xstats_(get|get_names|reset)")
        .allowlist_type("rte_mbuf")
        .allowlist_type("rte_eth_conf")
        .allowlist_type("rte_eth_dev_info")
        .allowlist_type("rte_eth_stats")
        .allowlist_type("rte_eth_xstat(_name)?")
        .allowlist_type("rte_eth_link")
        .allowlist_type("rte_eth_rss_reta_entry64")
        .allowlist_type("rte_eth_hash_function")
        .allowlist_type("rte_lcore_state_t")
        .allowlist_var("RTE_ETH_RSS_.*")
        .allowlist_var("RTE_ETH_(RX|TX)_OFFLOAD_.*")
        .allowlist_var("RTE_ETH_MQ_.*")
        .allowlist_var("RTE_ETH_LINK_.*")
        .allowlist_var("RTE_ETH_SPEED_NUM_.*")
        .allowlist_var("RTE_ETH_RETA_GROUP_SIZE")
        .allowlist_var("RTE_ETH_DEV_NO_OWNER")
        .allowlist_var("RTE_ETH_NAME_MAX_LEN")
        .allowlist_var("RTE_ETH_XSTATS_NAME_SIZE")
        .allowlist_var("RTE_MBUF_F_.*")
        .allowlist_var("RTE_MAX_ETHPORTS")
        .allowlist_var("RTE_MAX_LCORE")
        .allowlist_var("RTE_MEMPOOL_NAMESIZE")
        .allowlist_var("RTE_MEMPOOL_CACHE_MAX_SIZE")
        .allowlist_var("RTE_RING_NAMESIZE")
        .allowlist_var("RING_F_.*")
        .allowlist_var("RTE_PKTMBUF_HEADROOM")
        .allowlist_var("RTE_MBUF_DEFAULT_BUF_SIZE")
        .allowlist_var("RTE_ETHER_ADDR_LEN")
        .allowlist_var("SOCKET_ID_ANY")
        .allowlist_var("LCORE_ID_ANY")
        .allowlist_var("RTE_VER_(YEAR|MONTH|MINOR)")
        .allowlist_var("rte_mempool_ops_table");

    let bindings = match builder.generate() {
        Ok(b) => b,
        Err(e) => fail(&format!(
            "bindgen could not read the DPDK headers: {e}\n\
             (headers from `pkg-config --cflags libdpdk`: {})",
            cflags.join(" ")
        )),
    };
    if let Err(e) = bindings.write_to_file(out_dir.join("bindings.rs")) {
        fail(&format!("cannot write bindings.rs: {e}"));
    }
}

fn compile_shim(cflags: &[String], src_dir: &std::path::Path) {
    let mut build = cc::Build::new();
    build
        .file(src_dir.join("shim.c"))
        .include(src_dir)
        .opt_level(3);
    // `-include rte_config.h` is two arguments; pass everything through unchanged.
    for flag in cflags {
        build.flag(flag);
    }
    // DPDK headers trip a few warnings under -Wall that are not ours to fix.
    build.flag_if_supported("-Wno-unused-parameter");
    if let Err(e) = build.try_compile("dpdk_shim") {
        fail(&format!("compiling src/shim.c failed: {e}"));
    }
}
