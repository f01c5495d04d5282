//! Rings: the handoff ring of every worker pair, the steering ring of every worker pair,
//! and per worker its rings to the slow path, for commands, replies and returned
//! neighbour snapshots; then each worker's I/O (its RX queues by the queue plan, its TX
//! queue on every port) and the slow path's TX queues.

use std::sync::Arc;

use dpdk_bindings::{Consumer, Eal, Mbuf, Mempool, Producer, Ring, RxQueue, TxBuffer, TxQueue};

use super::DaemonError;
use crate::config::{Config, RxAssignment};
use crate::route::NeighborSnapshot;
use crate::worker::counters::CounterBlock;
use crate::worker::io::{BURST, NeighShare, NeighWorker, WorkerIo};
use crate::worker::process::SteerMsg;
use crate::worker::{WorkerCommand, WorkerReply};

/// Slots of each worker-pair steering ring (messages are made per new DNAT connection
/// whose reply belongs to another worker, and per death of one).
const STEER_RING: u32 = 4096;

/// What the rings connect: each worker's I/O, and the other ends for the slow path and
/// the control thread.
pub(super) struct Rings {
    pub(super) ios: Vec<WorkerIo>,
    pub(super) slow_in: Vec<Consumer<Mbuf>>,
    pub(super) slow_tx: Vec<Option<TxBuffer<BURST>>>,
    // A ring carries one pointer per slot: the `Arc` travels boxed (`worker::io`).
    #[allow(clippy::redundant_allocation)]
    pub(super) neigh_back: Vec<Consumer<Box<Arc<NeighborSnapshot>>>>,
    pub(super) commands: Vec<Producer<Box<WorkerCommand>>>,
    pub(super) replies: Vec<Consumer<Box<WorkerReply>>>,
    pub(super) counters: Vec<Arc<CounterBlock>>,
}

/// Makes the rings and hands out the queues; RX queues no worker polls are dropped.
#[allow(clippy::too_many_arguments)]
pub(super) fn build(
    eal: &Eal,
    cfg: &Config,
    nworkers: usize,
    plan: &[RxAssignment],
    mut rx_queues: Vec<Vec<Option<RxQueue>>>,
    mut tx_queues: Vec<Vec<Option<TxQueue>>>,
    share: &Arc<NeighShare>,
    pool: &Mempool,
) -> Result<Rings, DaemonError> {
    let socket = eal.socket_id();
    let ring_err = DaemonError::Ring;
    let mut handoff_out: Vec<Vec<Option<Producer<Mbuf>>>> = (0..nworkers)
        .map(|_| (0..nworkers).map(|_| None).collect())
        .collect();
    let mut handoff_in: Vec<Vec<Consumer<Mbuf>>> = (0..nworkers).map(|_| Vec::new()).collect();
    for (from, outs) in handoff_out.iter_mut().enumerate() {
        for (to, out) in outs.iter_mut().enumerate() {
            if from != to {
                let (p, c) = Ring::<Mbuf>::spsc(
                    eal,
                    &format!("fwd_ho_{from}_{to}"),
                    cfg.workers.handoff_ring,
                    socket,
                )
                .map_err(ring_err)?;
                *out = Some(p);
                handoff_in[to].push(c);
            }
        }
    }
    // Steering messages (DNAT reply tuples owned elsewhere), one ring per worker pair.
    let mut steer_out: Vec<Vec<Option<Producer<Box<SteerMsg>>>>> = (0..nworkers)
        .map(|_| (0..nworkers).map(|_| None).collect())
        .collect();
    let mut steer_in: Vec<Vec<Consumer<Box<SteerMsg>>>> =
        (0..nworkers).map(|_| Vec::new()).collect();
    for (from, outs) in steer_out.iter_mut().enumerate() {
        for (to, out) in outs.iter_mut().enumerate() {
            if from != to {
                let (p, c) = Ring::<Box<SteerMsg>>::spsc(
                    eal,
                    &format!("fwd_st_{from}_{to}"),
                    STEER_RING,
                    socket,
                )
                .map_err(ring_err)?;
                *out = Some(p);
                steer_in[to].push(c);
            }
        }
    }
    let mut steer = steer_out.into_iter().zip(steer_in);
    let mut slow_in = Vec::new();
    let mut neigh_back = Vec::new();
    let mut commands = Vec::new();
    let mut replies = Vec::new();
    let mut counters = Vec::new();
    let mut ios = Vec::new();
    for (w, (outs, ins)) in handoff_out.into_iter().zip(handoff_in).enumerate() {
        let (sp, sc) =
            Ring::<Mbuf>::spsc(eal, &format!("fwd_sp_{w}"), 1024, socket).map_err(ring_err)?;
        slow_in.push(sc);
        let (cp, cc) = Ring::<Box<WorkerCommand>>::spsc(eal, &format!("fwd_cmd_{w}"), 64, socket)
            .map_err(ring_err)?;
        let (rp, rc) = Ring::<Box<WorkerReply>>::spsc(eal, &format!("fwd_rep_{w}"), 64, socket)
            .map_err(ring_err)?;
        commands.push(cp);
        replies.push(rc);
        let (np, nc) =
            Ring::<Box<Arc<NeighborSnapshot>>>::spsc(eal, &format!("fwd_nb_{w}"), 16, socket)
                .map_err(ring_err)?;
        neigh_back.push(nc);
        let block = Arc::new(CounterBlock::default());
        counters.push(block.clone());
        let w16 = u16::try_from(w).map_err(|_| DaemonError::TooManyWorkers)?;
        let rx = plan
            .iter()
            .filter(|a| a.worker == w16)
            .filter_map(|a| {
                let q = rx_queues[usize::from(a.port)][usize::from(a.queue)].take()?;
                Some((a.port, q))
            })
            .collect();
        let tx = tx_queues
            .iter_mut()
            .map(|qs| qs[w].take().map(TxBuffer::<BURST>::new))
            .collect::<Vec<_>>();
        let (steer_out, steer_in) = steer.next().unwrap_or_default();
        ios.push(WorkerIo {
            index: w16,
            rx,
            tx,
            handoff_out: outs,
            handoff_in: ins,
            steer_out,
            steer_in,
            slow: sp,
            commands: cc,
            replies: rp,
            published: block,
            neigh: Some(NeighWorker {
                share: share.clone(),
                seen: 0,
                back: np,
            }),
            tsc_hz: eal.tsc_hz(),
            pool: Some(pool.clone()),
        });
    }
    let slow_tx = tx_queues
        .iter_mut()
        .map(|qs| qs[nworkers].take().map(TxBuffer::<BURST>::new))
        .collect::<Vec<_>>();
    // Unpolled RX queues are dropped now (their handles are not needed).
    drop(rx_queues);
    drop(tx_queues);
    Ok(Rings {
        ios,
        slow_in,
        slow_tx,
        neigh_back,
        commands,
        replies,
        counters,
    })
}
