//! The poll loop of one worker lcore, as in DPDK's l2fwd: RX a burst into a stack array,
//! prefetch, hand frames of other workers' users to their owners, process the rest, TX the
//! answers on the same port and queue; then the frames other workers handed over; a TSC
//! tick for periodic work. Unlike l2fwd, what TX did not take is not freed: it waits in the
//! worker's TX backlog of that port ([`super::backlog`]) and goes first on the next poll (a
//! RED_PACKET answer is paid before it is sent).
//!
//! Counting (see [`crate::counters`]): the loop counts `rx` as it receives (a frame it hands
//! over is not counted again by its owner), every frame TX takes by what it answers, and
//! every frame it drops itself: a full hand-off ring (`handoff_full`), a jumbo frame
//! (`multi_segment`), an answer that could not wait (`tx_full`, `red_packet_tx_lost`).
//!
//! At the stop nothing received is left uncounted: the loop decides what it staged, drops
//! its ends of the hand-off rings (so the owners know nothing more is coming), decides
//! what the other workers hand over until every one of them has done the same, and gives
//! its TX backlogs a bounded time to leave before it counts what is left as lost.
//!
//! A received burst is decided one pass later, a software pipeline of two stages: the pass
//! that receives it starts loading the table buckets of the users of all its frames, and
//! keeps what it read of them for the decision (a [`Staged`], which swaps with the burst),
//! then decides the burst the previous pass staged. With 10 million users the table is far
//! larger than the caches, and prefetching only a few frames ahead inside a burst left the
//! first frames of every burst waiting on memory (the datapath benchmark: 61-65 ns a request
//! without the stage, 50 with it; 45 when the table is in cache). Staging only the first few
//! frames saved instructions and doubled the time at 100 million users (see [`Staged`]). A
//! burst waits for one more poll at most, about 50 ns when the queue is idle; at the stop the
//! loop decides what it staged.
//!
//! The one TSC read a pass also splits the loop's cycles into passes that moved frames and
//! passes that found every queue empty. A polling lcore is always 100% CPU, so that split
//! (`busy=` on the counter line) is the only measure of how loaded a worker is: a worker near
//! 100% busy is the limit of its setup, one well below has room.

use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::backlog::TxBacklog;
use super::clock::TscClock;
use super::mbuf::{Burst, BURST};
use super::port::{RxQueue, TxQueue};
use super::processor::{peek_user, BurstProcessor, RxChecked, Staged, TxOffload, Verdict};
use super::ring::{Consumer, Producer};
use crate::counters::{bump, Counters, DropReason, Reply};
use crate::engine::config::owner_worker;

/// Milliseconds between calls of [`BurstProcessor::tick`] (the engine's load tick).
pub const TICK_MS: u64 = 100;

/// At the stop: how long a worker waits for the others to stop handing frames over (they
/// stop within one pass of seeing the flag; this only bounds a worker that died).
const HANDOFF_DRAIN_MS: u64 = 1000;

/// At the stop: how long answers that still wait in a TX backlog get to leave.
const TX_DRAIN_MS: u64 = 100;

/// Which of the loop's bursts [`WorkerLoop::stage`] takes its frames from.
#[derive(Clone, Copy)]
enum Incoming {
    /// As received (one worker: nothing is handed over).
    Rx,
    /// The frames of this worker's users.
    Local,
}

/// A port as one worker sees it.
#[derive(Debug, Clone, Copy)]
pub struct WorkerPort {
    /// DPDK port id.
    pub id: u16,
    /// The checksums the port fills on TX ([`TxOffload::IPV4_CKSUM`],
    /// [`TxOffload::UDP_CKSUM`]).
    pub tx_cksum: TxOffload,
    /// The port verifies IPv4 and UDP checksums on RX (the offload is enabled): its mbufs'
    /// flags are read. Without it they are not, and every sum is checked in software, whatever
    /// a driver may have set.
    pub rx_cksum: bool,
}

impl WorkerPort {
    /// Whether the port can send an answer that leaves `offload` to it: every checksum it
    /// asks for, and no IPv4 header checksum on an IPv6 answer.
    #[inline]
    fn can_offload(&self, offload: TxOffload) -> bool {
        self.tx_cksum.contains(offload - TxOffload::IPV6)
            && !offload.contains(TxOffload::IPV6 | TxOffload::IPV4_CKSUM)
    }
}

/// Everything one worker lcore owns. Built by the appliance only: the queues it polls are
/// its own.
pub(super) struct WorkerLoop<'eal, P> {
    /// This worker's index; also its queue on every port.
    pub(super) index: usize,
    pub(super) workers: usize,
    /// `node.count`, for `owner_worker`.
    pub(super) node_count: u32,
    /// Ports by config index.
    pub(super) ports: Vec<WorkerPort>,
    /// This worker's RX queue of each port, by config index.
    pub(super) rx: Vec<RxQueue<'eal>>,
    /// Its TX queue of each port; [`run`](Self::run) puts each behind a backlog.
    pub(super) tx: Vec<TxQueue<'eal>>,
    /// To worker `w`: `Some` for every other worker. [`run`](Self::run) takes them, and
    /// drops them when it stops handing frames over.
    pub(super) to: Vec<Option<Producer<'eal>>>,
    /// From every other worker.
    pub(super) from: Vec<Consumer<'eal>>,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) clock: TscClock,
    /// Pause after a pass that found nothing (0: pure polling).
    pub(super) idle_sleep: Duration,
    pub(super) processor: P,
}

/// Staging bursts and TX backlogs, allocated once before the loop.
struct Scratch<'eal> {
    rx: Burst,
    local: Burst,
    /// Per destination worker.
    outbound: Vec<Burst>,
    /// Handed-over frames per port.
    by_port: Vec<Burst>,
    /// Per port: received on the last pass, decided on this one.
    staged: Vec<Burst>,
    /// What staging read of the frames being received, and per port of `staged`'s. Boxed:
    /// they swap with the bursts every pass, a pointer each instead of 1 KB.
    staging: Box<Staged>,
    #[allow(clippy::vec_box)]
    stage: Vec<Box<Staged>>,
    /// Per port: answers TX did not take yet, on this worker's queue.
    backlog: Vec<TxBacklog<'eal>>,
}

impl<'eal, P: BurstProcessor> WorkerLoop<'eal, P> {
    /// Runs until the stop flag is set.
    pub fn run(&mut self) {
        let counters = self.processor.counters().clone();
        // The loop owns its producers: dropped when it stops handing over, on return or
        // on unwinding, which tells their consumers that nothing more is coming.
        let mut to = std::mem::take(&mut self.to);
        let mut s = Scratch {
            rx: Burst::new(),
            local: Burst::new(),
            outbound: (0..self.workers).map(|_| Burst::new()).collect(),
            by_port: (0..self.ports.len()).map(|_| Burst::new()).collect(),
            staged: (0..self.ports.len()).map(|_| Burst::new()).collect(),
            staging: Box::default(),
            stage: (0..self.ports.len()).map(|_| Box::default()).collect(),
            backlog: std::mem::take(&mut self.tx)
                .into_iter()
                .map(TxBacklog::new)
                .collect(),
        };
        let tick_cycles = self.clock.cycles_in_ms(TICK_MS).max(1);
        let mut last_tick = TscClock::tsc();
        // Loop cycles, and those of passes that moved frames, from the one TSC read a pass;
        // published to the counters at each tick.
        let (mut pass_start, mut pass_busy) = (last_tick, false);
        let (mut cycles, mut busy_cycles) = (0u64, 0u64);
        while !self.stop.load(Ordering::Relaxed) {
            let tsc = TscClock::tsc();
            let pass = tsc.wrapping_sub(pass_start);
            cycles += pass;
            if pass_busy {
                busy_cycles += pass;
            }
            pass_start = tsc;
            let now_ms = self.clock.ms_at(tsc);
            let mut busy = false;
            for p in 0..self.ports.len() {
                busy |= self.poll_port(p, now_ms, &mut s, &mut to, &counters);
            }
            for f in 0..self.from.len() {
                busy |= self.poll_inbound(f, now_ms, &mut s, &counters);
            }
            pass_busy = busy;
            if tsc.wrapping_sub(last_tick) >= tick_cycles {
                last_tick = tsc;
                self.processor.tick(now_ms);
                bump(&counters.cycles, std::mem::take(&mut cycles));
                bump(&counters.busy_cycles, std::mem::take(&mut busy_cycles));
            }
            if !busy && !self.idle_sleep.is_zero() {
                std::thread::sleep(self.idle_sleep);
            }
        }
        // Every frame received is decided: answer what the last pass staged.
        let now_ms = self.clock.ms_at(TscClock::tsc());
        for p in 0..self.ports.len() {
            if !s.staged[p].is_empty() {
                self.answer_staged(p, now_ms, &mut s, &counters);
            }
        }
        drop(to);
        self.drain_inbound(&mut s, &counters);
        let deadline = TscClock::tsc().wrapping_add(self.clock.cycles_in_ms(TX_DRAIN_MS));
        for b in &mut s.backlog {
            b.drain(&counters, || TscClock::tsc() >= deadline);
        }
        bump(&counters.cycles, cycles);
        bump(&counters.busy_cycles, busy_cycles);
    }

    /// At the stop: decides what the other workers hand over until every one of them has
    /// dropped its end of the ring (bounded by [`HANDOFF_DRAIN_MS`]).
    fn drain_inbound(&mut self, s: &mut Scratch<'eal>, counters: &Counters) {
        let deadline = TscClock::tsc().wrapping_add(self.clock.cycles_in_ms(HANDOFF_DRAIN_MS));
        loop {
            // Looked at before the rings are read: a producer that is gone by now enqueued
            // its last frames before, and the fence makes them visible to the reads below.
            let gone = self.from.iter().all(Consumer::producer_gone);
            fence(Ordering::Acquire);
            let now_ms = self.clock.ms_at(TscClock::tsc());
            let mut any = false;
            for f in 0..self.from.len() {
                any |= self.poll_inbound(f, now_ms, s, counters);
            }
            if (gone && !any) || TscClock::tsc() >= deadline {
                return;
            }
            if !any {
                std::thread::yield_now();
            }
        }
    }

    /// Offers the port's backlog to TX again, then RX one burst on it, steers, processes
    /// and answers. True if anything moved.
    fn poll_port(
        &mut self,
        p: usize,
        now_ms: u64,
        s: &mut Scratch<'eal>,
        to: &mut [Option<Producer<'eal>>],
        counters: &Counters,
    ) -> bool {
        let port = self.ports[p];
        let resent = s.backlog[p].flush(counters) > 0;
        let n = self.rx[p].rx(&mut s.rx);
        if n == 0 {
            // Nothing new: decide what the last pass staged.
            if s.staged[p].is_empty() {
                return resent;
            }
            self.answer_staged(p, now_ms, s, counters);
            return true;
        }
        bump(&counters.rx, n as u64);
        for m in s.rx.iter() {
            m.prefetch();
        }
        if self.workers == 1 {
            self.stage(p, now_ms, Incoming::Rx, s, counters);
            return true;
        }
        for mut m in s.rx.take() {
            let owner = peek_user(m.data())
                .map(|user| owner_worker(user, self.node_count, self.workers as u32) as usize);
            let pushed = match owner {
                Some(o) if o != self.index => {
                    // Not every driver records the port on RX; the owner needs it.
                    m.set_port(port.id);
                    s.outbound[o].push(m)
                }
                // Ours, or not a shake (ARP, ICMP, junk): decided here.
                _ => s.local.push(m),
            };
            // Cannot happen: one RX burst fits every staging burst.
            if let Err(m) = pushed {
                drop(m);
                counters.dropped(DropReason::Internal);
            }
        }
        for (o, out) in s.outbound.iter_mut().enumerate() {
            if out.is_empty() {
                continue;
            }
            if let Some(ring) = to.get_mut(o).and_then(Option::as_mut) {
                ring.enqueue(out);
            }
            // The owner is too far behind: drop rather than decide for its users here.
            if !out.is_empty() {
                count_n(counters, DropReason::HandoffFull, out.len());
                out.clear();
            }
        }
        if !s.local.is_empty() {
            self.stage(p, now_ms, Incoming::Local, s, counters);
        } else if !s.staged[p].is_empty() {
            self.answer_staged(p, now_ms, s, counters);
        }
        true
    }

    /// Starts loading what deciding `incoming` will touch, decides and answers the burst
    /// staged on the last pass, and stages `incoming` in its place. Leaves `incoming` empty.
    fn stage(
        &mut self,
        p: usize,
        now_ms: u64,
        incoming: Incoming,
        s: &mut Scratch<'eal>,
        counters: &Counters,
    ) {
        let frames = match incoming {
            Incoming::Rx => &s.rx,
            Incoming::Local => &s.local,
        };
        // Every frame: one left out waits on memory at 100M users.
        self.processor
            .stage(frames.iter().map(|m| m.data()), &mut s.staging);
        if !s.staged[p].is_empty() {
            self.answer_staged(p, now_ms, s, counters);
        }
        let incoming = match incoming {
            Incoming::Rx => &mut s.rx,
            Incoming::Local => &mut s.local,
        };
        std::mem::swap(incoming, &mut s.staged[p]);
        std::mem::swap(&mut s.staging, &mut s.stage[p]);
    }

    /// Frames another worker handed over: decide and answer them on their ports.
    fn poll_inbound(
        &mut self,
        f: usize,
        now_ms: u64,
        s: &mut Scratch<'eal>,
        counters: &Counters,
    ) -> bool {
        if self.from[f].dequeue(&mut s.rx) == 0 {
            return false;
        }
        for m in s.rx.take() {
            let port = m.port();
            match self.ports.iter().position(|wp| wp.id == port) {
                Some(p) => {
                    // One dequeue is at most one burst: it fits.
                    if let Err(m) = s.by_port[p].push(m) {
                        drop(m);
                        counters.dropped(DropReason::Internal);
                    }
                }
                None => counters.dropped(DropReason::Internal),
            }
        }
        for p in 0..self.ports.len() {
            if !s.by_port[p].is_empty() {
                self.answer(
                    p,
                    now_ms,
                    &mut s.by_port[p],
                    &mut s.backlog[p],
                    counters,
                    None,
                );
            }
        }
        true
    }

    /// [`answer`](Self::answer) for the burst staged on port `p`.
    fn answer_staged(&mut self, p: usize, now_ms: u64, s: &mut Scratch<'eal>, counters: &Counters) {
        self.answer(
            p,
            now_ms,
            &mut s.staged[p],
            &mut s.backlog[p],
            counters,
            Some(&mut s.stage[p]),
        );
    }

    /// Decides `burst` (frames of port `p`) and transmits the answers on this worker's
    /// queue of that port, behind whatever waits in its backlog. Leaves `burst` empty.
    /// `staged`: what [`stage`](Self::stage) read of the burst's frames on the last pass,
    /// left empty.
    fn answer(
        &mut self,
        p: usize,
        now_ms: u64,
        burst: &mut Burst,
        backlog: &mut TxBacklog<'eal>,
        counters: &Counters,
        staged: Option<&mut Staged>,
    ) {
        let port = self.ports[p];
        let mut verdicts = [Verdict::Drop(DropReason::Internal); BURST];
        let n = burst.len();
        {
            let mut frames: [&mut [u8]; BURST] = Default::default();
            let mut checked = [RxChecked::empty(); BURST];
            // One pass over the mbufs: their frames, what the NIC verified (read only where
            // the port has the offload enabled) and whether any is chained.
            let mut chained = false;
            for ((f, c), m) in frames
                .iter_mut()
                .zip(checked.iter_mut())
                .zip(burst.as_mut_slice())
            {
                chained |= m.pkt_len() != m.data_len();
                if port.rx_cksum {
                    *c = m.rx_checked();
                }
                *f = m.data_mut();
            }
            if chained {
                // A chained mbuf (jumbo frame) is never a request, and answers are written in
                // the first segment only: dropped, counted, and the rest answered (rare; the
                // stage's hints no longer line up, which costs time only, see `Staged`).
                drop_multi_segment(burst, counters);
                return self.answer(p, now_ms, burst, backlog, counters, staged);
            }
            self.processor.begin(now_ms);
            let (frames, checked, verdicts) = (&mut frames[..n], &checked[..n], &mut verdicts[..n]);
            match staged {
                Some(s) => self
                    .processor
                    .process_staged(p, frames, checked, s, verdicts),
                None => self.processor.process_checked(p, frames, checked, verdicts),
            }
        }
        let mut tx = Burst::new();
        let mut replies = [Reply::ARP; BURST];
        for (mut m, v) in burst.take().zip(verdicts) {
            let (ok, reply) = match v {
                Verdict::Answer { len, reply } => {
                    m.set_tx_offload(0, 0, 0);
                    (m.set_len(len), reply)
                }
                Verdict::AnswerOffload {
                    len,
                    l2_len,
                    l3_len,
                    offload,
                    reply,
                } if port.can_offload(offload) => {
                    m.set_tx_offload(offload_flags(offload), l2_len, l3_len);
                    (m.set_len(len), reply)
                }
                // The processor asked for an offload this port lacks: a bug, never sent
                // with a wrong checksum.
                Verdict::AnswerOffload { reply, .. } => (false, reply),
                Verdict::Drop(_) => continue,
            };
            if !ok {
                counters.dropped(DropReason::Internal);
                continue;
            }
            replies[tx.len()] = reply;
            let _ = tx.push(m);
        }
        backlog.send(&mut tx, &replies, counters);
    }
}

/// The mbuf flags that have the NIC fill an answer's checksums: the offloads, and the IP
/// version, which tells the NIC where the pseudo-header's addresses are (an IPv6 answer
/// flagged IPv4 would leave with a wrong checksum).
#[inline]
fn offload_flags(offload: TxOffload) -> u64 {
    let mut flags = if offload.contains(TxOffload::IPV6) {
        dpdk_sys::RTE_MBUF_F_TX_IPV6
    } else {
        dpdk_sys::RTE_MBUF_F_TX_IPV4
    };
    if offload.contains(TxOffload::IPV4_CKSUM) {
        flags |= dpdk_sys::RTE_MBUF_F_TX_IP_CKSUM;
    }
    if offload.contains(TxOffload::UDP_CKSUM) {
        flags |= dpdk_sys::RTE_MBUF_F_TX_UDP_CKSUM;
    }
    flags
}

/// Drops the chained mbufs of `burst`, counted, keeping the others in order (rare).
#[cold]
#[inline(never)]
fn drop_multi_segment(burst: &mut Burst, counters: &Counters) {
    let mut keep = Burst::new();
    for m in burst.take() {
        if m.pkt_len() == m.data_len() {
            let _ = keep.push(m);
        } else {
            counters.dropped(DropReason::MultiSegment);
        }
    }
    std::mem::swap(burst, &mut keep);
}

/// `n` frames dropped for `reason` (rare: a loop, not a hot path).
#[cold]
fn count_n(c: &Counters, reason: DropReason, n: usize) {
    for _ in 0..n {
        c.dropped(reason);
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use dpdk_sys::{
        RTE_MBUF_F_TX_IPV4, RTE_MBUF_F_TX_IPV6, RTE_MBUF_F_TX_IP_CKSUM, RTE_MBUF_F_TX_UDP_CKSUM,
    };

    #[test]
    fn offload_flags_name_the_answers_ip_version_and_its_checksums() {
        let (v4, v6) = (TxOffload::empty(), TxOffload::IPV6);
        let (ip, udp) = (TxOffload::IPV4_CKSUM, TxOffload::UDP_CKSUM);
        let cases = [
            (v4 | udp, RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_UDP_CKSUM),
            (v6 | udp, RTE_MBUF_F_TX_IPV6 | RTE_MBUF_F_TX_UDP_CKSUM),
            (v4 | ip, RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_IP_CKSUM),
            (
                v4 | ip | udp,
                RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_IP_CKSUM | RTE_MBUF_F_TX_UDP_CKSUM,
            ),
        ];
        for (offload, want) in cases {
            assert_eq!(offload_flags(offload), want, "{offload:?}");
        }
    }

    /// An answer is sent with an offload only if its port has every checksum it asks for;
    /// the IPv4 header checksum of an IPv6 answer is never asked of a NIC.
    #[test]
    fn a_port_offloads_only_the_checksums_it_has() {
        let (ip, udp, v6) = (TxOffload::IPV4_CKSUM, TxOffload::UDP_CKSUM, TxOffload::IPV6);
        let port = |tx_cksum| WorkerPort {
            id: 0,
            tx_cksum,
            rx_cksum: false,
        };
        for (has, asks, ok) in [
            (udp, udp, true),
            (udp, v6 | udp, true),
            (udp, ip, false),
            (udp, ip | udp, false),
            (ip, ip, true),
            (ip, ip | udp, false),
            (ip | udp, ip | udp, true),
            (ip | udp, v6 | udp, true),
            (ip | udp, v6 | ip, false),
            (TxOffload::empty(), udp, false),
        ] {
            assert_eq!(port(has).can_offload(asks), ok, "{has:?} asked {asks:?}");
        }
    }
}
