//! A worker's TX backlog on one queue: answers `rte_eth_tx_burst` did not take wait here for
//! the next poll instead of being freed.
//!
//! An answer is decided, and a RED_PACKET answer journaled (paid), before it is handed to
//! TX. l2fwd frees what TX refuses; here that lost answers whenever a TX ring filled for a
//! moment (1,040 paid RED_PACKET answers in an 8-minute soak, issue 9). So what TX leaves
//! waits, in order, and goes out first on the next poll, ahead of newer answers.
//!
//! The backlog is bounded ([`CAPACITY`], a few bursts, preallocated: no allocation per
//! packet) so that a port that stops taking frames cannot hold the pool's mbufs forever.
//! When it is full, non-RED_PACKET answers give way: a new one is dropped (`tx_full`), and
//! a new RED_PACKET answer takes the place of the oldest waiting non-RED_PACKET one. Only a
//! backlog full of RED_PACKET answers, or a port that never takes them before the node
//! stops, loses one; that is counted as its own reason, `red_packet_tx_lost`.
//!
//! Counting: a frame is counted as sent (its [`Reply`]) when TX takes it, as `tx_deferred`
//! when it starts to wait, and as a drop when it is given up.

use std::ptr::NonNull;

use dpdk_sys::rte_mbuf;

use super::mbuf::{Burst, Mbuf, BURST};
use super::port::TxQueue;
use crate::counters::{Counters, DropReason, Event, Reply};

/// Answers that can wait on one TX queue: four bursts.
pub const CAPACITY: usize = 4 * BURST;

/// The backlog of one (worker, port), in front of the worker's own TX queue of that port.
pub(super) struct TxBacklog<'eal> {
    queue: TxQueue<'eal>,
    /// `mbufs[..len]` are owned, oldest first; `replies[i]` is what `mbufs[i]` answers.
    mbufs: [*mut rte_mbuf; CAPACITY],
    replies: [Reply; CAPACITY],
    len: usize,
}

// SAFETY: the backlog owns its mbufs exclusively, like a `Burst`; it moves to its worker's
// lcore once and is used there only.
unsafe impl Send for TxBacklog<'_> {}

impl<'eal> TxBacklog<'eal> {
    pub(super) fn new(queue: TxQueue<'eal>) -> TxBacklog<'eal> {
        TxBacklog {
            queue,
            mbufs: [std::ptr::null_mut(); CAPACITY],
            replies: [Reply::ARP; CAPACITY],
            len: 0,
        }
    }

    #[inline]
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Transmits `burst`, whose frame `i` answers `replies[i]`, behind whatever waits; what
    /// TX does not take waits (or gives way, see the module doc). Leaves `burst` empty.
    /// Returns how many frames TX took, old and new. Every mbuf in `burst` was received on
    /// this backlog's port (the answers are written over their requests).
    #[inline]
    pub(super) fn send(
        &mut self,
        burst: &mut Burst,
        replies: &[Reply],
        counters: &Counters,
    ) -> usize {
        let mut sent = self.flush(counters);
        let n = burst.len();
        if n == 0 {
            return sent;
        }
        // Older answers still wait: the new ones queue behind them, in order.
        let took = if self.is_empty() {
            // SAFETY: the worker answers frames in the mbufs they arrived in, on the port
            // they arrived on (see `send`).
            unsafe { self.queue.tx_received(burst) }
        } else {
            0
        };
        for &r in &replies[..took] {
            counters.sent(r);
        }
        sent += took;
        if took < n {
            self.defer_rest(burst, &replies[took..n], counters);
        }
        sent
    }

    /// Offers what waits to TX again; returns how many frames it took.
    #[inline]
    pub(super) fn flush(&mut self, counters: &Counters) -> usize {
        if self.is_empty() {
            return 0;
        }
        // SAFETY: mbufs[..len] are owned mbufs; the driver takes ownership of the first
        // `sent`, the rest stay ours.
        let sent = unsafe { self.queue.tx_raw(&mut self.mbufs[..self.len]) };
        for &r in &self.replies[..sent] {
            counters.sent(r);
        }
        self.mbufs.copy_within(sent..self.len, 0);
        self.replies.copy_within(sent..self.len, 0);
        self.len -= sent;
        sent
    }

    /// Offers what waits to TX until it is all taken or `give_up()` says so, then drops the
    /// rest, counted (at the stop: the port is about to stop).
    pub(super) fn drain(&mut self, counters: &Counters, mut give_up: impl FnMut() -> bool) {
        while !self.is_empty() && !give_up() {
            if self.flush(counters) == 0 {
                std::hint::spin_loop();
            }
        }
        for i in 0..self.len {
            counters.dropped(lost_as(self.replies[i]));
            free(self.mbufs[i]);
        }
        self.len = 0;
    }

    /// The rare path: TX refused part of a burst.
    #[cold]
    #[inline(never)]
    fn defer_rest(&mut self, burst: &mut Burst, replies: &[Reply], counters: &Counters) {
        for (m, &r) in burst.take().zip(replies) {
            self.defer(m, r, counters);
        }
    }

    /// Keeps `m` for the next poll, or gives it (or a waiting answer) up if there is no room.
    fn defer(&mut self, m: Mbuf, r: Reply, counters: &Counters) {
        if self.len == CAPACITY {
            let victim = if r.is_red_packet() {
                self.replies[..self.len]
                    .iter()
                    .position(|w| !w.is_red_packet())
            } else {
                None
            };
            match victim {
                Some(i) => {
                    // The oldest waiting non-RED_PACKET answer gives way.
                    counters.dropped(DropReason::TxFull);
                    free(self.mbufs[i]);
                    self.mbufs.copy_within(i + 1..self.len, i);
                    self.replies.copy_within(i + 1..self.len, i);
                    self.len -= 1;
                }
                None => {
                    counters.dropped(lost_as(r));
                    drop(m);
                    return;
                }
            }
        }
        self.mbufs[self.len] = m.into_raw().as_ptr();
        self.replies[self.len] = r;
        self.len += 1;
        counters.event(Event::TxDeferred);
    }
}

impl Drop for TxBacklog<'_> {
    fn drop(&mut self) {
        // The worker drains (and counts) before it returns; this only keeps mbufs from
        // leaking if it did not.
        for &m in &self.mbufs[..self.len] {
            free(m);
        }
        self.len = 0;
    }
}

/// The reason an answer that never left is dropped under.
fn lost_as(r: Reply) -> DropReason {
    if r.is_red_packet() {
        DropReason::RedPacketTxLost
    } else {
        DropReason::TxFull
    }
}

/// Frees one owned mbuf.
fn free(m: *mut rte_mbuf) {
    if let Some(m) = NonNull::new(m) {
        // SAFETY: the caller gives up its owned mbuf, listed once.
        drop(unsafe { Mbuf::from_raw(m) });
    }
}
