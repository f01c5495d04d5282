//! EAL scenario 4: a `net_null` port, the one virtual device here with RSS (128-entry RETA,
//! 40-byte key, though it reports no key size). Configures four queues with the symmetric key, checks what was applied
//! and reported as unsupported, round-trips the RETA and the hash configuration, and moves
//! packets through the null device's RX (which allocates from our pool) and TX (which
//! frees).

mod common;

use arrayvec::ArrayVec;
use dpdk_bindings::{
    Eal, Error, Mbuf, Mempool, Port, PortConfig, RssConfig, RssHf, RssKey, RxOffloads,
    SYMMETRIC_RSS_KEY, TxOffloads, diag,
};

#[test]
fn net_null_rss_reta_and_offloads() {
    common::require_root();
    let extra = vec!["--vdev=net_null0".to_owned()];
    let eal = Eal::init(common::eal_args("nullrss", "0", &extra)).expect("EAL init");
    let ids = diag::check_ports(&eal, &["net_null0"]).expect("null port");
    let pool = Mempool::pktmbuf(&eal, "bindings_null_pool", 2047, 64, 2176, eal.socket_id())
        .expect("pool");
    let mut port = Port::open(&eal, ids[0]).unwrap();
    let info = port.info().unwrap();
    assert_eq!(info.driver_name, "net_null");
    // net_null does not report a key size; the layer then uses the standard 40 bytes.
    assert_eq!((info.reta_size, info.hash_key_size), (128, 0), "{info:?}");
    assert!(!info.flow_type_rss_offloads.is_empty());

    let cfg = PortConfig {
        rx_queues: 4,
        tx_queues: 4,
        rx_desc: 256,
        tx_desc: 256,
        mtu: Some(1500),
        rss: Some(RssConfig {
            symmetric_hash_function: true,
            ..RssConfig::symmetric()
        }),
        rx_offloads: RxOffloads::CHECKSUM | RxOffloads::RSS_HASH,
        tx_offloads: TxOffloads::IPV4_CKSUM | TxOffloads::MBUF_FAST_FREE,
    };
    let applied = port.configure(&cfg, &pool).expect("configure");
    eprintln!("{applied:#?}");
    assert!(applied.rss);
    let want_hf = RssHf::IP | RssHf::TCP | RssHf::UDP;
    assert_eq!(
        applied.rss_hf,
        want_hf.intersection(info.flow_type_rss_offloads)
    );
    assert_eq!(
        applied.rss_hf_unsupported,
        want_hf.difference(info.flow_type_rss_offloads)
    );
    assert_eq!(applied.rss_key.as_deref(), Some(&SYMMETRIC_RSS_KEY[..]));
    assert_eq!(
        applied.rx_offloads,
        cfg.rx_offloads.intersection(info.rx_offload_capa)
    );
    assert_eq!(
        applied.rx_offloads_unsupported,
        cfg.rx_offloads.difference(info.rx_offload_capa)
    );
    assert_eq!(
        applied.tx_offloads_unsupported,
        cfg.tx_offloads.difference(info.tx_offload_capa)
    );
    if !cfg!(dpdk_ge_2311) {
        assert!(!applied.symmetric_hash_function);
        assert!(
            applied
                .notes
                .iter()
                .any(|n| n.contains("SYMMETRIC_TOEPLITZ"))
        );
    }

    let (key, hf) = port.rss_hash_conf().unwrap();
    assert_eq!(key, SYMMETRIC_RSS_KEY);
    assert_eq!(hf, applied.rss_hf);

    // RETA: round-trip a pattern; reject wrong sizes and queues beyond the configured 4.
    let reta: Vec<u16> = (0..128u16).map(|i| (i * 3) % 4).collect();
    port.reta_update(&reta).unwrap();
    assert_eq!(port.reta_query().unwrap(), reta);
    assert!(matches!(
        port.reta_update(&reta[..64]),
        Err(Error::InvalidArgument { .. })
    ));
    let mut bad = reta.clone();
    bad[5] = 4;
    assert!(matches!(
        port.reta_update(&bad),
        Err(Error::InvalidArgument { .. })
    ));

    // Change the key at run time.
    let key2: Vec<u8> = (0..40u8).collect();
    port.rss_hash_update(Some(&key2), RssHf::IPV4).unwrap();
    let (k, hf) = port.rss_hash_conf().unwrap();
    assert_eq!((k, hf), (key2, RssHf::IPV4));
    // A configured key of the wrong length is refused before reaching DPDK.
    let short = PortConfig {
        rss: Some(RssConfig {
            key: RssKey::Bytes(vec![1; 16]),
            ..RssConfig::symmetric()
        }),
        ..cfg.clone()
    };
    assert!(matches!(
        port.configure(&short, &pool),
        Err(Error::InvalidArgument { .. })
    ));

    let mac = [0x02, 0x42, 0xc0, 0x00, 0x02, 0x01];
    port.set_mac(mac).unwrap();
    assert_eq!(port.mac().unwrap(), mac);
    assert_eq!(port.mtu().unwrap(), 1500);

    let (mut rxq, mut txq) = port.take_queues().unwrap();
    assert_eq!((rxq.len(), txq.len()), (4, 4));
    port.start().unwrap();

    // net_null's RX hands out `burst` fresh mbufs from our pool on every call.
    let mut total_rx = 0u64;
    for (i, q) in rxq.iter_mut().enumerate() {
        let mut v: ArrayVec<Mbuf, 32> = ArrayVec::new();
        let n = q.rx_burst(&mut v);
        assert_eq!(n, 32, "queue {i}");
        assert!(
            v.iter()
                .all(|m| m.port() == Some(port.id()) && m.len() == 64)
        );
        assert_eq!(pool.in_use(), 32);
        total_rx += n as u64;
        // TX on the matching queue: null frees what it "sends".
        let sent = txq[i].tx_burst(&mut v);
        assert_eq!((sent, v.len()), (32, 0));
        assert_eq!(pool.in_use(), 0);
    }
    let s = port.stats().unwrap();
    assert_eq!((s.ipackets, s.opackets), (total_rx, total_rx), "{s:?}");
    // (net_null and net_ring count packets only; byte counters are checked on memif.)

    drop((rxq, txq));
    port.close().unwrap();
    drop(pool);
    eal.cleanup().expect("clean shutdown");
}
