//! fwmgmt and fwctl must not link DPDK (mgmt depends on dataplane without its `dpdk`
//! feature).

#[test]
fn binaries_do_not_link_dpdk() {
    for bin in [env!("CARGO_BIN_EXE_fwmgmt"), env!("CARGO_BIN_EXE_fwctl")] {
        let out = std::process::Command::new("ldd")
            .arg(bin)
            .output()
            .expect("ldd runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "ldd {bin}: {text}");
        assert!(
            text.contains("libc.so"),
            "ldd output looks wrong for {bin}: {text}"
        );
        assert!(
            !text.contains("librte_") && !text.contains("dpdk"),
            "{bin} links DPDK:\n{text}"
        );
    }
}
