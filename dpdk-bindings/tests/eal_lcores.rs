//! EAL scenario 3: two lcores. A function launched on the worker lcore exchanges mbufs and
//! boxed commands/replies with the main lcore over typed SPSC rings; also covers mempool
//! accounting, the mbuf API, panics on a worker, and cleanup refusing to run while
//! handles are alive.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use arrayvec::ArrayVec;
use dpdk_bindings::{
    CksumStatus, Eal, Error, LcoreId, Mbuf, Mempool, Ring, TxFlags, TxOffload, current_lcore,
    rdtsc, tsc_hz,
};

const PACKETS: u32 = 5000;
const MARK_OFFSET: usize = 46;

#[derive(Debug)]
enum Command {
    Report,
    Stop,
}

#[derive(Debug, PartialEq)]
struct Reply {
    lcore: Option<LcoreId>,
    processed: u32,
}

fn check_mbuf_api(pool: &Mempool) {
    let mut m = pool.alloc().expect("mbuf");
    assert!(m.is_empty());
    assert_eq!((m.len(), m.pkt_len(), m.nb_segs()), (0, 0, 1));
    assert_eq!(m.headroom(), 128);
    let room = m.tailroom();
    assert_eq!(room, 2048);
    assert!(m.append(room + 1).is_none(), "append beyond tailroom");
    m.append(100).unwrap().copy_from_slice(&[7u8; 100]);
    m.prepend(14).unwrap().copy_from_slice(&[1u8; 14]);
    assert_eq!(m.len(), 114);
    assert_eq!(m.headroom(), 128 - 14);
    assert_eq!(
        &m.data()[..15],
        &[1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 7]
    );
    assert!(m.prepend(200).is_none(), "prepend beyond headroom");
    assert!(m.adj(14));
    assert_eq!(m.data(), &[7u8; 100][..]);
    assert!(m.trim(40));
    assert_eq!(m.len(), 60);
    assert!(!m.trim(61));
    assert!(!m.adj(61));
    m.data_mut()[0] = 9;
    assert_eq!(m.as_ref()[0], 9);
    assert_eq!(m.pkt_len(), 60);
    m.linearize().unwrap();
    assert_eq!(m.rss_hash(), None);
    assert_eq!(m.ip_cksum(), CksumStatus::Unknown);
    assert_eq!(m.l4_cksum(), CksumStatus::Unknown);
    let o = TxOffload {
        l2_len: 14,
        l3_len: 20,
        l4_len: 8,
        flags: TxFlags::IPV4 | TxFlags::IP_CKSUM | TxFlags::UDP_CKSUM,
    };
    m.set_tx_offload(o).unwrap();
    assert_eq!(m.tx_offload(), o);
    assert!(m.set_tx_offload(TxOffload { l2_len: 200, ..o }).is_err());
    m.prefetch_data();
    let raw = m.into_raw();
    // SAFETY: `raw` came from into_raw just above and is still exclusively ours.
    let m = unsafe { Mbuf::from_raw(raw) };
    assert_eq!(m.len(), 60);
}

#[test]
fn worker_lcore_exchanges_mbufs_and_commands_over_rings() {
    common::require_root();
    let eal = Eal::init(common::eal_args("lcores", "0-1", &[])).expect("EAL init");
    let main = eal.main_lcore();
    assert_eq!(current_lcore(), Some(main));
    let workers: Vec<LcoreId> = eal.worker_lcores().collect();
    assert_eq!(workers, vec![LcoreId(1)]);
    assert_eq!(eal.lcore_count(), 2);
    assert!(tsc_hz() > 1_000_000, "tsc_hz {}", tsc_hz());
    assert_eq!(eal.tsc_hz(), tsc_hz());
    let t0 = rdtsc();
    assert!(rdtsc() >= t0);
    assert!(
        eal.launch_on(main, || 0).is_err(),
        "main lcore is not a worker"
    );
    assert!(
        eal.launch_on(LcoreId(7), || 0).is_err(),
        "lcore 7 is not enabled"
    );

    let pool =
        Mempool::pktmbuf(&eal, "bindings_lc_pool", 8191, 256, 2176, eal.socket_id()).expect("pool");
    check_mbuf_api(&pool);
    assert_eq!(pool.in_use(), 0);

    // Bulk allocation is all-or-nothing and respects the vector's capacity.
    let mut bulk: ArrayVec<Mbuf, 64> = ArrayVec::new();
    assert!(pool.alloc_bulk(&mut bulk, 48));
    assert!(
        !pool.alloc_bulk(&mut bulk, 17),
        "more than the free capacity"
    );
    assert!(pool.alloc_bulk(&mut bulk, 16));
    assert_eq!((bulk.len(), pool.in_use()), (64, 64));
    drop(bulk);
    assert_eq!(pool.in_use(), 0);

    // A small pool runs dry and recovers.
    let small = Mempool::pktmbuf(&eal, "bindings_lc_small", 63, 0, 256, eal.socket_id()).unwrap();
    let all: Vec<Mbuf> = (0..63).map_while(|_| small.alloc()).collect();
    assert_eq!(all.len(), 63);
    assert!(small.alloc().is_none());
    assert_eq!(small.available(), 0);
    drop(all);
    assert_eq!(small.available(), 63);

    // Ring semantics: full ring hands the item back; leftovers are freed on drop.
    {
        let (mut p, c) =
            Ring::<Mbuf>::spsc(&eal, "bindings_lc_tiny", 4, eal.socket_id()).expect("ring");
        assert_eq!(p.capacity(), 4);
        for _ in 0..4 {
            p.enqueue(pool.alloc().unwrap()).unwrap();
        }
        let back = p.enqueue(pool.alloc().unwrap()).unwrap_err();
        assert_eq!(back.len(), 0);
        drop(back);
        assert_eq!((p.len(), c.len(), pool.in_use()), (4, 4, 4));
        drop(p);
        drop(c);
        assert_eq!(pool.in_use(), 0, "ring drop freed its mbufs");
    }
    assert!(
        Ring::<Mbuf>::spsc(&eal, "bindings_lc_bad", 1 << 30, eal.socket_id()).is_err(),
        "ring too large"
    );

    let (mut to_w, mut w_in) =
        Ring::<Mbuf>::spsc(&eal, "bindings_lc_to", 1024, eal.socket_id()).expect("ring");
    let (mut w_out, mut from_w) =
        Ring::<Mbuf>::spsc(&eal, "bindings_lc_from", 1024, eal.socket_id()).expect("ring");
    let (mut cmd_p, mut cmd_c) =
        Ring::<Box<Command>>::spsc(&eal, "bindings_lc_cmd", 16, eal.socket_id()).unwrap();
    let (mut rep_p, mut rep_c) =
        Ring::<Box<Reply>>::spsc(&eal, "bindings_lc_rep", 16, eal.socket_id()).unwrap();

    let handle = eal
        .launch_on(workers[0], move || {
            let me = current_lcore();
            let mut processed = 0u32;
            let mut burst: ArrayVec<Mbuf, 32> = ArrayVec::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                w_in.dequeue_burst(&mut burst);
                for m in &mut burst {
                    m.data_mut()[MARK_OFFSET] ^= 0xff;
                }
                processed += u32::try_from(burst.len()).unwrap();
                let mut tries = 0;
                while !burst.is_empty() && tries < 1_000_000 {
                    w_out.enqueue_burst(&mut burst);
                    tries += 1;
                }
                if let Some(cmd) = cmd_c.dequeue() {
                    let reply = Box::new(Reply {
                        lcore: me,
                        processed,
                    });
                    if rep_p.enqueue(reply).is_err() {
                        return -2;
                    }
                    if matches!(*cmd, Command::Stop) {
                        return i32::try_from(processed).unwrap_or(-3);
                    }
                }
            }
            -1
        })
        .expect("launch on worker");
    assert_eq!(handle.lcore(), workers[0]);

    let mut sent = 0u32;
    let mut received = 0u32;
    let mut out: ArrayVec<Mbuf, 32> = ArrayVec::new();
    let mut back: ArrayVec<Mbuf, 32> = ArrayVec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while received < PACKETS {
        assert!(
            Instant::now() < deadline,
            "timeout: sent {sent}, received {received}"
        );
        while !out.is_full() && sent < PACKETS {
            let f = common::frame(sent);
            let mut m = pool.alloc().expect("mbuf");
            m.append(f.len()).unwrap().copy_from_slice(&f);
            out.push(m);
            sent += 1;
        }
        to_w.enqueue_burst(&mut out);
        from_w.dequeue_burst(&mut back);
        for m in back.drain(..) {
            let mut want = common::frame(received);
            want[MARK_OFFSET] ^= 0xff;
            assert_eq!(
                m.data(),
                &want[..],
                "frame {received} not as the worker left it"
            );
            received += 1;
        }
    }

    cmd_p.enqueue(Box::new(Command::Report)).unwrap();
    let wait_reply = |rep_c: &mut dpdk_bindings::Consumer<Box<Reply>>| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(r) = rep_c.dequeue() {
                return *r;
            }
            assert!(Instant::now() < deadline, "no reply from worker");
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    let r = wait_reply(&mut rep_c);
    assert_eq!(
        r,
        Reply {
            lcore: Some(workers[0]),
            processed: PACKETS
        }
    );
    cmd_p.enqueue(Box::new(Command::Stop)).unwrap();
    assert_eq!(wait_reply(&mut rep_c).processed, PACKETS);
    assert_eq!(handle.join(), i32::try_from(PACKETS).unwrap());
    assert_eq!(pool.in_use(), 0);

    // A panic on the worker is resumed by join on the main lcore.
    let h = eal
        .launch_on(workers[0], || panic!("worker says no"))
        .expect("launch");
    let res = catch_unwind(AssertUnwindSafe(|| h.join()));
    let msg = res.unwrap_err();
    assert_eq!(msg.downcast_ref::<&str>(), Some(&"worker says no"));
    // The lcore is usable again.
    assert_eq!(eal.launch_on(workers[0], || 7).unwrap().join(), 7);

    // Cleanup refuses while a handle (the pool) is alive, leaving EAL up until exit.
    drop((to_w, from_w, cmd_p, rep_c));
    let err = eal.cleanup().unwrap_err();
    assert!(matches!(err, Error::Busy { .. }), "{err}");
    assert!(Eal::is_running());
    drop((pool, small));
}
