//! Large arrays in DPDK hugepage memory (root; needs 64 MiB of free hugepages, else it
//! checks the `--no-huge` behaviour only): an array that fits DPDK's memory limit is
//! taken from the hugepages, one that does not falls back to the heap and says so, and
//! under `--no-huge` there is no hugepage placement at all.

mod common;

use dpdk_bindings::{Eal, HugeArray, HugeMem, SocketId};

#[test]
fn arrays_go_to_hugepages_and_fall_back_to_the_heap_when_short() {
    common::require_root();
    // `--socket-limit` caps DPDK's dynamic memory at 64 MiB (hugepage mode only).
    let args = common::eal_args("huge", "0", &["--socket-limit".into(), "64".into()]);
    let no_huge = args.iter().any(|a| a == "--no-huge");
    let args: Vec<String> = if no_huge {
        args.into_iter()
            .take_while(|a| a != "--socket-limit")
            .collect()
    } else {
        args
    };
    let eal = Eal::init(&args).expect("EAL init");
    let Some(mem) = HugeMem::new(&eal, SocketId::ANY) else {
        assert!(
            no_huge,
            "EAL runs with hugepages, yet no hugepage placement"
        );
        eprintln!("note: --no-huge: hugepage placement checked only for its absence");
        return;
    };
    let small = HugeArray::filled(1 << 20, [7u8; 8], Some(&mem));
    assert!(small.on_hugepages(), "8 MiB fit in 64 MiB");
    assert!(small.iter().all(|x| *x == [7; 8]));
    let big = HugeArray::filled(16 << 20, 1u64, Some(&mem));
    assert!(!big.on_hugepages(), "128 MiB do not: the heap");
    assert_eq!(big[(16 << 20) - 1], 1);
    drop((small, big));
    eal.cleanup().expect("no array holds EAL up once dropped");
}
