//! EAL scenario 2: a `net_memif` server/client pair in one process, with the memif driver
//! also given explicitly with `-d` (next to the plugin-directory autoload). Moves thousands
//! of packets each way, compares bytes, and checks the port counters.

mod common;

use std::time::Duration;

use arrayvec::ArrayVec;
use dpdk_bindings::{Eal, Mbuf, Mempool, Port, PortConfig, RxQueue, TxQueue, diag, ffi};

const PACKETS: u32 = 6000;
const BURST: usize = 32;

/// Send frames `first..first + count` on `tx`, receive them on `rx`, compare. Returns the
/// bytes moved. Bounded by a poll budget.
fn transfer(pool: &Mempool, tx: &mut TxQueue, rx: &mut RxQueue, first: u32, count: u32) -> u64 {
    let (mut next_tx, mut next_rx, mut bytes) = (first, first, 0u64);
    let mut out: ArrayVec<Mbuf, BURST> = ArrayVec::new();
    let mut inb: ArrayVec<Mbuf, BURST> = ArrayVec::new();
    let mut polls = 0u32;
    while next_rx < first + count {
        polls += 1;
        assert!(
            polls < count * 1000,
            "stuck: sent {next_tx}, received {next_rx}"
        );
        while !out.is_full() && next_tx < first + count {
            let f = common::frame(next_tx);
            let mut m = pool.alloc().expect("free mbuf");
            m.append(f.len()).expect("fits").copy_from_slice(&f);
            out.push(m);
            next_tx += 1;
        }
        tx.tx_burst(&mut out);
        rx.rx_burst(&mut inb);
        for m in inb.drain(..) {
            let want = common::frame(next_rx);
            assert_eq!(m.nb_segs(), 1, "frame {next_rx} chained");
            assert_eq!(m.data(), &want[..], "frame {next_rx} differs");
            assert_eq!(m.port(), Some(rx.port()), "memif sets the input port");
            bytes += want.len() as u64;
            next_rx += 1;
        }
    }
    bytes
}

#[test]
fn net_memif_pair_moves_packets() {
    common::require_root();
    let sock = common::TempSocket::new("memif");
    let memif = diag::DriverPackage::for_library("net_memif");
    let dso = format!("{}/{}", diag::PMD_DIR, memif.soname);
    assert!(std::path::Path::new(&dso).exists(), "{dso} missing");
    let extra = vec![
        "-d".to_owned(),
        dso,
        format!("--vdev=net_memif0,role=server,id=0,socket={}", sock.0),
        format!("--vdev=net_memif1,role=client,id=0,socket={}", sock.0),
    ];
    let eal = Eal::init(common::eal_args("memif", "0", &extra)).expect("EAL init");
    assert!(memif.is_loaded());

    let ids = diag::check_ports(&eal, &["net_memif0", "net_memif1"]).expect("memif ports");
    let pool = Mempool::pktmbuf(
        &eal,
        "bindings_memif_pool",
        4095,
        128,
        u16::try_from(ffi::RTE_MBUF_DEFAULT_BUF_SIZE).unwrap(),
        eal.socket_id(),
    )
    .expect("pool");

    let mut server = Port::open(&eal, ids[0]).unwrap();
    let mut client = Port::open(&eal, ids[1]).unwrap();
    assert_eq!(server.info().unwrap().driver_name, "net_memif");
    let cfg = PortConfig {
        rx_desc: 1024,
        tx_desc: 1024,
        ..PortConfig::default()
    };
    server.configure(&cfg, &pool).expect("configure server");
    client.configure(&cfg, &pool).expect("configure client");
    let (mut srx, mut stx) = server.take_queues().unwrap();
    let (mut crx, mut ctx) = client.take_queues().unwrap();
    server.start().unwrap();
    client.start().unwrap();
    // The client connects over the control socket; only then is the link up.
    let link = server
        .wait_link_up(Duration::from_secs(10))
        .expect("server link");
    assert!(link.up);
    assert!(client.wait_link_up(Duration::from_secs(10)).unwrap().up);

    let to_client = transfer(&pool, &mut stx[0], &mut crx[0], 0, PACKETS);
    let to_server = transfer(&pool, &mut ctx[0], &mut srx[0], PACKETS, PACKETS);

    let ss = server.stats().unwrap();
    let cs = client.stats().unwrap();
    eprintln!("server {ss:?}\nclient {cs:?}");
    assert_eq!((ss.opackets, ss.obytes), (u64::from(PACKETS), to_client));
    assert_eq!((cs.ipackets, cs.ibytes), (u64::from(PACKETS), to_client));
    assert_eq!((cs.opackets, cs.obytes), (u64::from(PACKETS), to_server));
    assert_eq!((ss.ipackets, ss.ibytes), (u64::from(PACKETS), to_server));
    assert_eq!(ss.oerrors + cs.oerrors, 0);

    drop((srx, stx, crx, ctx));
    // Both ends in one process: stop one end and let EAL's interrupt thread finish the
    // disconnect on the other before touching it. DPDK 22.11's memif sets the link down
    // first and frees the regions after, from that thread; stopping the other end or
    // cleaning up EAL meanwhile races with it ("EAL: Error: Invalid memory", a crash
    // under --no-huge). See docs/dpdk-bindings.md.
    let settle = Duration::from_millis(200);
    client.stop().unwrap();
    assert!(!server.wait_link_down(Duration::from_secs(10)).unwrap().up);
    std::thread::sleep(settle);
    server.stop().unwrap();
    std::thread::sleep(settle);
    client.close().unwrap();
    server.close().unwrap();
    // memif's RX queues gave their mbufs back on close.
    assert_eq!(pool.in_use(), 0);
    drop(pool);
    eal.cleanup().expect("clean EAL shutdown");
}
