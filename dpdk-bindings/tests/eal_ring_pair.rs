//! EAL scenario 1: a `net_ring` port pair (`rte_eth_from_rings`), PMDs autoloaded from the
//! plugin directory without `-d`. Moves thousands of packets A -> B and B -> A, compares
//! bytes and counters, exercises the port API and the start-up diagnostics, and ends with
//! a clean `rte_eal_cleanup` (which proves every mbuf came back).

mod common;

use arrayvec::ArrayVec;
use dpdk_bindings::{
    Eal, Error, Mbuf, Mempool, Port, PortConfig, RxOffloads, RxQueue, TxBuffer, TxQueue, diag, ffi,
};

const PACKETS: u32 = 8192;
const BURST: usize = 32;

fn fill(pool: &Mempool, seq: u32) -> Mbuf {
    let f = common::frame(seq);
    let mut m = pool.alloc().expect("pool has free mbufs");
    m.append(f.len())
        .expect("frame fits the data room")
        .copy_from_slice(&f);
    m
}

/// Send `count` frames starting at `first` from `tx` and receive them on `rx`, checking
/// order, bytes and input port. Bounded: gives up after a fixed number of polls.
fn transfer(pool: &Mempool, tx: &mut TxQueue, rx: &mut RxQueue, first: u32, count: u32) -> u64 {
    let mut next_tx = first;
    let mut next_rx = first;
    let mut bytes = 0u64;
    let mut out: ArrayVec<Mbuf, BURST> = ArrayVec::new();
    let mut inb: ArrayVec<Mbuf, BURST> = ArrayVec::new();
    let mut polls = 0u32;
    while next_rx < first + count {
        polls += 1;
        assert!(
            polls < count * 100,
            "stuck: sent {next_tx}, received {next_rx}"
        );
        while !out.is_full() && next_tx < first + count {
            out.push(fill(pool, next_tx));
            next_tx += 1;
        }
        tx.tx_burst(&mut out);
        rx.rx_burst(&mut inb);
        for m in inb.drain(..) {
            let want = common::frame(next_rx);
            assert_eq!(m.data(), &want[..], "frame {next_rx} differs");
            // net_ring passes mbufs through untouched, so `port` stays as allocated.
            assert_eq!(m.port(), None);
            assert_eq!(m.nb_segs(), 1);
            bytes += want.len() as u64;
            next_rx += 1;
        }
    }
    assert!(out.is_empty());
    bytes
}

#[test]
fn net_ring_pair_moves_packets() {
    common::require_root();
    let eal = Eal::init(common::eal_args("ringpair", "0", &[])).expect("EAL init");
    assert_eq!(
        Eal::init(["-l", "0"]).unwrap_err(),
        Error::EalAlreadyInitialised
    );
    assert!(Eal::version().starts_with("DPDK "), "{}", Eal::version());

    // Without -d, the shared EAL autoloaded the drivers from its plugin directory.
    // (librte_net_ring is also DT_NEEDED here, for ring_port_pair; the others are not.)
    for so in [
        "librte_net_memif.so",
        "librte_net_null.so",
        "librte_net_af_packet.so",
        "librte_net_tap.so",
        "librte_mempool_ring.so",
        "librte_bus_vdev.so",
    ] {
        assert!(common::dso_mapped(so), "{so} not loaded by EAL");
    }
    assert!(diag::mempool_ops_names().iter().any(|n| n == "ring_mp_mc"));
    diag::check_mempool(&eal).expect("mempool creation works");
    let err = diag::check_mempool_ops("bindings_no_such_ops").unwrap_err();
    assert!(
        err.to_string()
            .contains("mempool driver bindings_no_such_ops not registered"),
        "{err}"
    );

    let pool = Mempool::pktmbuf(
        &eal,
        "bindings_rp_pool",
        2047,
        64,
        u16::try_from(ffi::RTE_MBUF_DEFAULT_BUF_SIZE).unwrap(),
        eal.socket_id(),
    )
    .expect("pool");
    assert_eq!(pool.capacity(), 2047);
    assert_eq!(pool.in_use(), 0);
    assert_eq!(pool.ops_name(), "ring_mp_mc");
    assert!(Mempool::pktmbuf(&eal, "x".repeat(40).as_str(), 63, 0, 2176, eal.socket_id()).is_err());

    let (a, b) = eal.ring_port_pair("bindings_rp", 1024).expect("ring pair");
    let ports: Vec<_> = eal.ports().collect();
    assert!(ports.contains(&a) && ports.contains(&b), "{ports:?}");
    assert_eq!(
        diag::check_ports(&eal, &["net_ring_bindings_rp_a", "net_ring_bindings_rp_b"]).unwrap(),
        vec![a, b]
    );
    // A driver that is loaded but was given no --vdev, and one that is not installed.
    let err = diag::check_ports(&eal, &["net_memif0"])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("driver net_memif is registered but created no port net_memif0"),
        "{err}"
    );
    let err = diag::check_ports(&eal, &["net_bindingsfake0"])
        .unwrap_err()
        .to_string();
    let want = format!(
        "driver net_bindingsfake not registered: install librte-net-bindingsfake{} or pass -d",
        diag::DPDK_ABI
    );
    assert!(err.contains(&want), "{err}");

    let mut pa = Port::open(&eal, a).expect("open A");
    assert!(matches!(Port::open(&eal, a), Err(Error::Busy { .. })));
    let mut pb = Port::open(&eal, b).expect("open B");
    assert_eq!(pa.name().unwrap(), "net_ring_bindings_rp_a");
    let info = pa.info().unwrap();
    assert_eq!(info.driver_name, "net_ring");

    let cfg = PortConfig {
        rx_desc: 512,
        tx_desc: 512,
        rx_offloads: RxOffloads::CHECKSUM | RxOffloads::RSS_HASH,
        ..PortConfig::default()
    };
    let applied = pa.configure(&cfg, &pool).expect("configure A");
    assert_eq!(
        applied.rx_offloads,
        cfg.rx_offloads.intersection(info.rx_offload_capa)
    );
    assert_eq!(
        applied.rx_offloads_unsupported,
        cfg.rx_offloads.difference(info.rx_offload_capa)
    );
    assert!(!applied.rss);
    pb.configure(&cfg, &pool).expect("configure B");

    let (mut arx, mut atx) = pa.take_queues().unwrap();
    assert_eq!((arx.len(), atx.len()), (1, 1));
    assert!(matches!(pa.take_queues(), Err(Error::Busy { .. })));
    assert!(matches!(pa.configure(&cfg, &pool), Err(Error::Busy { .. })));
    let (mut brx, mut btx) = pb.take_queues().unwrap();
    pa.start().unwrap();
    pb.start().unwrap();
    assert!(
        pa.wait_link_up(std::time::Duration::from_secs(5))
            .unwrap()
            .up
    );
    assert!(
        matches!(pa.stop(), Err(Error::Busy { .. })),
        "stop with live queues"
    );

    // net_ring cannot change its MAC: the error carries the call, errno and DPDK's text.
    let mac = pa.mac().unwrap();
    let err = pa.set_mac([0x02, 0x42, 0, 0, 0, 0x0a]).unwrap_err();
    assert_eq!(err.errno(), Some(95), "{err}");
    assert_eq!(
        err.to_string(),
        "rte_eth_dev_default_mac_addr_set failed: Operation not supported (errno 95)"
    );
    assert_eq!(pa.mac().unwrap(), mac);
    pa.set_promiscuous(true).unwrap();
    assert!(pa.promiscuous().unwrap());

    let (ta, rb) = (atx.first_mut().unwrap(), brx.first_mut().unwrap());
    let bytes_ab = transfer(&pool, ta, rb, 0, PACKETS);
    let (tb, ra) = (btx.first_mut().unwrap(), arx.first_mut().unwrap());
    let bytes_ba = transfer(&pool, tb, ra, PACKETS, PACKETS / 2);

    // TxBuffer: flushes itself every BURST packets, then on demand.
    let mut buf: TxBuffer<BURST> = TxBuffer::new(btx.pop().unwrap());
    let mut sent = 0;
    for seq in 0..100 {
        sent += buf.push(fill(&pool, seq));
    }
    assert_eq!(sent, 96);
    assert_eq!(buf.len(), 4);
    assert_eq!(buf.flush(), 4);
    assert_eq!((buf.sent(), buf.dropped()), (100, 0));
    let mut got: ArrayVec<Mbuf, 128> = ArrayVec::new();
    for _ in 0..100 {
        if got.len() == 100 {
            break;
        }
        ra.rx_burst(&mut got);
    }
    assert_eq!(got.len(), 100);
    assert!(
        got.iter()
            .zip(0u32..)
            .all(|(m, i)| common::frame_seq(m.data()) == Some(i))
    );
    drop(got);

    let sa = pa.stats().unwrap();
    let sb = pb.stats().unwrap();
    assert_eq!(sa.opackets, u64::from(PACKETS), "{sa:?}");
    assert_eq!(sb.ipackets, u64::from(PACKETS), "{sb:?}");
    assert_eq!(sb.opackets, u64::from(PACKETS / 2) + 100, "{sb:?}");
    assert_eq!(sa.ipackets, u64::from(PACKETS / 2) + 100, "{sa:?}");
    assert_eq!((sa.oerrors, sb.ierrors, sb.imissed), (0, 0, 0));
    eprintln!("bytes A->B {bytes_ab}, B->A {bytes_ba}; stats A {sa:?} B {sb:?}");
    let xb = pb.xstats().unwrap();
    let rx_good = xb
        .iter()
        .find(|(n, _)| n == "rx_good_packets")
        .map(|(_, v)| *v);
    assert_eq!(rx_good, Some(u64::from(PACKETS)), "{xb:?}");
    pb.reset_stats().unwrap();
    assert_eq!(pb.stats().unwrap().ipackets, 0);

    // What the device refuses is freed by the buffer (in one bulk free): B's ring to A
    // holds 1 023 frames while nobody receives; the 77 beyond are dropped, counted, and
    // back in the pool at once, each exactly once.
    let (sent0, dropped0) = (buf.sent(), buf.dropped());
    let mut sent = 0;
    for seq in 0..1100 {
        sent += buf.push(fill(&pool, seq));
    }
    sent += buf.flush();
    assert_eq!(sent, 1023);
    assert_eq!((buf.sent() - sent0, buf.dropped() - dropped0), (1023, 77));
    assert_eq!(pool.in_use(), 1023, "only the frames in the ring are out");
    let mut got: ArrayVec<Mbuf, BURST> = ArrayVec::new();
    let mut seen = 0u32;
    for _ in 0..1000 {
        got.clear();
        if ra.rx_burst(&mut got) == 0 {
            break;
        }
        for m in &got {
            assert_eq!(common::frame_seq(m.data()), Some(seen));
            seen += 1;
        }
    }
    drop(got);
    assert_eq!(seen, 1023);

    // All mbufs are back: the ring PMD holds none.
    assert_eq!(pool.in_use(), 0);

    drop((arx, atx, brx, buf));
    drop(btx);
    pa.stop().unwrap();
    pa.close().unwrap();
    pb.close().unwrap();
    drop(pool);
    eal.cleanup()
        .expect("EAL cleanup with no handle or mbuf left");
}
