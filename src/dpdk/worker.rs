//! The poll loop of one worker lcore, as in DPDK's l2fwd: RX a burst into a stack array,
//! prefetch, hand frames of other workers' users to their owners, process the rest, TX the
//! answers on the same port and queue, free what TX did not take; then the frames other
//! workers handed over; a TSC tick for periodic work.
//!
//! A received burst is decided one pass later, a software pipeline of two stages: the pass
//! that receives it starts loading its users' table buckets, then decides the burst the
//! previous pass staged. With 10 million users the table is far larger than the caches, and
//! prefetching only a few frames ahead inside a burst left the first frames of every burst
//! waiting on memory (the datapath benchmark: 61-65 ns a request without the stage, 50
//! with it; 45 when the table is in cache). A burst waits for one more poll at most,
//! about 50 ns when the queue is idle; at the stop the loop decides what it staged.
//!
//! The one TSC read a pass also splits the loop's cycles into passes that moved frames and
//! passes that found every queue empty. A polling lcore is always 100% CPU, so that split
//! (`busy=` on the counter line) is the only measure of how loaded a worker is: a worker near
//! 100% busy is the limit of its setup, one well below has room.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::clock::TscClock;
use super::mbuf::{Burst, BURST};
use super::processor::{peek_user, BurstProcessor, Verdict};
use super::ring::{Consumer, Producer};
use crate::counters::{bump, Counters, DropReason};
use crate::engine::config::owner_worker;

/// Milliseconds between calls of [`BurstProcessor::tick`] (the engine's load tick).
pub const TICK_MS: u64 = 100;

/// A port as one worker sees it.
#[derive(Debug, Clone, Copy)]
pub struct WorkerPort {
    /// DPDK port id.
    pub id: u16,
    /// The port can checksum UDP on TX.
    pub tx_udp_cksum: bool,
}

/// Everything one worker lcore owns.
pub struct WorkerLoop<P> {
    /// This worker's index; also its queue on every port.
    pub index: usize,
    pub workers: usize,
    /// `node.count`, for `owner_worker`.
    pub node_count: u32,
    /// Ports by config index.
    pub ports: Vec<WorkerPort>,
    /// To worker `w`: `Some` for every other worker.
    pub to: Vec<Option<Producer>>,
    /// From every other worker.
    pub from: Vec<Consumer>,
    pub stop: Arc<AtomicBool>,
    pub clock: TscClock,
    /// Pause after a pass that found nothing (0: pure polling).
    pub idle_sleep: Duration,
    pub processor: P,
}

/// Staging bursts, allocated once before the loop.
struct Scratch {
    rx: Burst,
    local: Burst,
    /// Per destination worker.
    outbound: Vec<Burst>,
    /// Handed-over frames per port.
    by_port: Vec<Burst>,
    /// Per port: received on the last pass, decided on this one.
    staged: Vec<Burst>,
}

impl<P: BurstProcessor> WorkerLoop<P> {
    /// Runs until the stop flag is set.
    pub fn run(&mut self) {
        let counters = self.processor.counters().clone();
        let mut s = Scratch {
            rx: Burst::new(),
            local: Burst::new(),
            outbound: (0..self.workers).map(|_| Burst::new()).collect(),
            by_port: (0..self.ports.len()).map(|_| Burst::new()).collect(),
            staged: (0..self.ports.len()).map(|_| Burst::new()).collect(),
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
                busy |= self.poll_port(p, now_ms, &mut s, &counters);
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
                self.answer(p, now_ms, &mut s.staged[p], &counters);
            }
        }
        bump(&counters.cycles, cycles);
        bump(&counters.busy_cycles, busy_cycles);
    }

    /// RX one burst on port `p`, steer, process and answer. True if anything came.
    fn poll_port(&mut self, p: usize, now_ms: u64, s: &mut Scratch, counters: &Counters) -> bool {
        let port = self.ports[p];
        if s.rx.rx(port.id, self.index as u16) == 0 {
            // Nothing new: decide what the last pass staged.
            if s.staged[p].is_empty() {
                return false;
            }
            self.answer(p, now_ms, &mut s.staged[p], counters);
            return true;
        }
        for m in s.rx.iter() {
            m.prefetch();
        }
        if self.workers == 1 {
            self.stage(p, now_ms, &mut s.rx, &mut s.staged[p], counters);
            return true;
        }
        for mut m in s.rx.take() {
            let owner = peek_user(m.data())
                .map(|user| owner_worker(user, self.node_count, self.workers as u32) as usize);
            match owner {
                Some(o) if o != self.index => {
                    // Not every driver records the port on RX; the owner needs it.
                    m.set_port(port.id);
                    if let Err(m) = s.outbound[o].push(m) {
                        // Cannot happen: at most one RX burst is staged per destination.
                        drop(m);
                        counters.dropped(DropReason::TxFull);
                    }
                }
                // Ours, or not a shake (ARP, ICMP, junk): decided here.
                _ => {
                    let _ = s.local.push(m);
                }
            }
        }
        for (o, out) in s.outbound.iter_mut().enumerate() {
            if out.is_empty() {
                continue;
            }
            if let Some(ring) = self.to[o].as_mut() {
                ring.enqueue(out);
            }
            // The owner is too far behind: drop rather than decide for its users here.
            if !out.is_empty() {
                count_lost(counters, out.len());
                out.clear();
            }
        }
        if !s.local.is_empty() {
            self.stage(p, now_ms, &mut s.local, &mut s.staged[p], counters);
        } else if !s.staged[p].is_empty() {
            self.answer(p, now_ms, &mut s.staged[p], counters);
        }
        true
    }

    /// Starts loading what deciding `incoming` will touch, decides and answers the burst
    /// staged on the last pass, and stages `incoming` in its place. Leaves `incoming` empty.
    fn stage(
        &mut self,
        p: usize,
        now_ms: u64,
        incoming: &mut Burst,
        staged: &mut Burst,
        counters: &Counters,
    ) {
        for m in incoming.iter() {
            self.processor.prefetch(m.data());
        }
        if !staged.is_empty() {
            self.answer(p, now_ms, staged, counters);
        }
        std::mem::swap(incoming, staged);
    }

    /// Frames another worker handed over: decide and answer them on their ports.
    fn poll_inbound(
        &mut self,
        f: usize,
        now_ms: u64,
        s: &mut Scratch,
        counters: &Counters,
    ) -> bool {
        if self.from[f].dequeue(&mut s.rx) == 0 {
            return false;
        }
        for m in s.rx.take() {
            let port = m.port();
            match self.ports.iter().position(|wp| wp.id == port) {
                Some(p) => {
                    let _ = s.by_port[p].push(m);
                }
                None => counters.dropped(DropReason::Truncated),
            }
        }
        for p in 0..self.ports.len() {
            if !s.by_port[p].is_empty() {
                self.answer(p, now_ms, &mut s.by_port[p], counters);
            }
        }
        true
    }

    /// Decides `burst` (frames of port `p`), transmits the answers on this worker's queue of
    /// that port, frees the rest. Leaves `burst` empty.
    fn answer(&mut self, p: usize, now_ms: u64, burst: &mut Burst, counters: &Counters) {
        let n = burst.len();
        let mut verdicts = [Verdict::Drop(DropReason::Truncated); BURST];
        {
            let mut frames: [&mut [u8]; BURST] = Default::default();
            for (f, m) in frames.iter_mut().zip(burst.as_mut_slice()) {
                // A chained mbuf (jumbo frame) shows as empty and is dropped as truncated:
                // answers are written in the first segment only.
                if m.pkt_len() == m.data_len() {
                    *f = m.data_mut();
                }
            }
            self.processor.begin(now_ms);
            self.processor
                .process(p, &mut frames[..n], &mut verdicts[..n]);
        }
        let port = self.ports[p];
        let mut tx = Burst::new();
        for (mut m, v) in burst.take().zip(verdicts) {
            let ok = match v {
                Verdict::Answer { len } => {
                    m.set_tx_offload(0, 0, 0);
                    m.set_len(len)
                }
                Verdict::AnswerUdpOffload {
                    len,
                    l2_len,
                    l3_len,
                } if port.tx_udp_cksum => {
                    m.set_tx_offload(
                        dpdk_sys::RTE_MBUF_F_TX_IPV4 | dpdk_sys::RTE_MBUF_F_TX_UDP_CKSUM,
                        l2_len,
                        l3_len,
                    );
                    m.set_len(len)
                }
                // The processor asked for an offload this port lacks: a bug, never sent
                // with a wrong checksum.
                Verdict::AnswerUdpOffload { .. } => false,
                Verdict::Drop(_) => continue,
            };
            if !ok {
                counters.dropped(DropReason::Truncated);
                continue;
            }
            let _ = tx.push(m);
        }
        let sent = tx.tx(port.id, self.index as u16);
        bump(&counters.tx, sent as u64);
        if !tx.is_empty() {
            count_lost(counters, tx.len());
            tx.clear();
        }
    }
}

/// Frames lost to a full TX queue or hand-off ring (rare: a loop, not a hot path).
#[cold]
fn count_lost(c: &Counters, n: usize) {
    for _ in 0..n {
        c.dropped(DropReason::TxFull);
    }
}
