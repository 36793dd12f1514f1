//! What the DPDK poll loop does when a hand-off ring or a TX queue is full, and how it
//! counts it (issue 9 items 5 and 11), on a ring-backed port with two workers whose
//! processor marks answers RED_PACKET or not and can be held:
//! - worker 1 is held inside a burst while worker 0 receives 200 frames of worker 1's users:
//!   the hand-off ring takes 63 and the rest are dropped as `handoff_full` (not `tx_full`),
//!   counted in `rx` once, by worker 0;
//! - worker 0's TX ring (15 frames) is never read: its answers wait in its TX backlog (128),
//!   and when that is full non-RED_PACKET answers give way to RED_PACKET ones (`tx_full`);
//!   only a RED_PACKET with no non-RED_PACKET answer left to displace is lost, as
//!   `red_packet_tx_lost`, as are those still waiting when the node stops;
//! - once the TX ring is read, every answer that waited arrives, in order;
//! - a frame in two segments (a jumbo frame's shape) is `multi_segment`, not `truncated`;
//! - at the end rx = tx + dropped exactly, and every mbuf is back in the pool.
//!
//! One EAL per process, so this file has one test. `--no-pci --no-huge`, its own
//! `--file-prefix`, no device but the rings it creates; every wait is bounded.
#![cfg(feature = "dpdk")]

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::appliance::{file_prefix, RuntimeDir};
use common::ring_wire::{feed, two_worker_config};
use shake::counters::{Counters, DropReason, Event, Reply, Snapshot};
use shake::dpdk::{
    self, Burst, BurstProcessor, Consumer, Eal, Mbuf, Mempool, Producer, RingPort, Verdict,
};
use shake::engine::config::owner_worker;
use shake::wire::shake::Outcome;

const FRAME: usize = 14 + 20 + 8 + 64;
/// Payload byte 48 (padding) of a test frame: what its answer is to be.
const MARK: usize = 42 + 48;
const RED: u8 = 1;
const OTHER: u8 = 0;
/// The processor holds its worker inside the burst until released.
const HOLD: u8 = 2;
/// Worker 0's TX ring: 16 slots, 15 usable.
const TX_RING: usize = 15;
const BACKLOG: usize = shake::dpdk::backlog::CAPACITY;
const WAIT: Duration = Duration::from_secs(20);

#[derive(Default)]
struct Gate {
    held: AtomicBool,
    release: AtomicBool,
}

/// Answers every frame with itself, as a RED_PACKET answer or not by its mark.
struct Marked {
    counters: Arc<Counters>,
    gate: Arc<Gate>,
}

impl BurstProcessor for Marked {
    fn begin(&mut self, _now_ms: u64) {}

    fn process(&mut self, _port: usize, frames: &mut [&mut [u8]], verdicts: &mut [Verdict]) {
        for (f, v) in frames.iter_mut().zip(verdicts.iter_mut()) {
            if f[MARK] == HOLD {
                self.gate.held.store(true, Ordering::SeqCst);
                let deadline = Instant::now() + WAIT;
                while !self.gate.release.load(Ordering::SeqCst) {
                    assert!(Instant::now() < deadline, "never released");
                    std::thread::yield_now();
                }
            }
            let o = if f[MARK] == RED {
                Outcome::RedPacket
            } else {
                Outcome::Nothing
            };
            *v = Verdict::Answer {
                len: FRAME,
                reply: Reply::shake(o),
            };
        }
    }

    fn tick(&mut self, _now_ms: u64) {}

    fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }
}

/// A SHAKE/1-shaped frame of `user` (enough for the loop to steer it), marked.
fn frame(user: u64, mark: u8) -> Vec<u8> {
    let mut f = vec![0u8; FRAME];
    f[..12].copy_from_slice(&[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    f[16..18].copy_from_slice(&92u16.to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    f[26..30].copy_from_slice(&[10, 0, 0, 1]);
    f[30..34].copy_from_slice(&[10, 0, 0, 2]);
    f[34..36].copy_from_slice(&40000u16.to_be_bytes());
    f[36..38].copy_from_slice(&7000u16.to_be_bytes());
    f[38..40].copy_from_slice(&72u16.to_be_bytes());
    f[42..46].copy_from_slice(b"SK\x01\x01");
    f[50..58].copy_from_slice(&user.to_be_bytes());
    f[MARK] = mark;
    f
}

fn user_of(f: &[u8]) -> u64 {
    u64::from_be_bytes(f[50..58].try_into().unwrap())
}

/// Puts frames on an RX ring within [`WAIT`].
fn send(pool: &Mempool, ring: &mut Producer, frames: impl IntoIterator<Item = Vec<u8>>) {
    feed(pool, ring, frames, Instant::now() + WAIT);
}

/// `frame` in one mbuf followed by a second segment of 100 bytes, chained as
/// rte_pktmbuf_chain does.
fn chained(pool: &Mempool, frame: &[u8]) -> Mbuf {
    let mut head = pool.alloc().expect("test pool has room");
    assert!(head.set_len(frame.len()));
    head.data_mut().copy_from_slice(frame);
    let mut tail = pool.alloc().expect("test pool has room");
    assert!(tail.set_len(100));
    let tail = tail.into_raw();
    // SAFETY: both mbufs are fresh and owned here; the head takes the tail over (freeing
    // the head frees both), as rte_pktmbuf_chain would.
    unsafe {
        let h = &mut *head.as_ptr();
        h.next = tail.as_ptr();
        h.nb_segs = 2;
        h.pkt_len += 100;
    }
    head
}

/// Reads `n` answers off a TX ring; returns their users in order.
fn receive(ring: &mut Consumer, n: usize) -> Vec<u64> {
    let deadline = Instant::now() + WAIT;
    let mut burst = Burst::new();
    let mut users = Vec::new();
    while users.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} answers",
            users.len()
        );
        if ring.dequeue(&mut burst) == 0 {
            std::thread::yield_now();
        }
        users.extend(burst.take().map(|m| user_of(m.data())));
    }
    users
}

/// Waits until the node's counters satisfy `done`.
fn wait_for(what: &str, stats: &shake::control::Stats, done: impl Fn(&Snapshot) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        let t = stats.total();
        if done(&t) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {}", t.line());
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn full_handoff_rings_and_tx_queues_are_counted_and_red_packets_kept() {
    let prefix = file_prefix("losses");
    let _runtime_dir = RuntimeDir::new(&prefix);
    let config = two_worker_config(&prefix, "losses", 64, false);
    let args = dpdk::node_eal_args(&config, &["--no-shconf".to_owned()]).unwrap();
    let eal = Eal::init(&args).expect("EAL init");
    let mut wire = RingPort::new(&eal, "losses", &[4096, 4096], &[(TX_RING + 1) as u32, 1024])
        .expect("ring port");
    let port = wire.id;
    let pool = Mempool::new(&eal, "l_pool", 4095, 0, 0).unwrap();
    let gate = Arc::new(Gate::default());
    let stop = Arc::new(AtomicBool::new(false));
    let app = dpdk::launch(&eal, &config, stop, |workers, ports| {
        assert_eq!((workers, ports[0].id), (2, port));
        (0..workers)
            .map(|_| Marked {
                counters: Arc::default(),
                gate: gate.clone(),
            })
            .collect()
    })
    .expect("launch");
    let stats = app.stats().clone();
    // Users by owner, each frame its own user.
    let mut next_user = 1u64..;
    let mut users_of = |w: u32, n: usize| -> Vec<u64> {
        (&mut next_user)
            .filter(|&u| owner_worker(u, 1, 2) == w)
            .take(n)
            .collect()
    };

    // A jumbo frame's shape, for worker 0: dropped before it is decided.
    let mut burst = Burst::new();
    burst
        .push(chained(&pool, &frame(users_of(0, 1)[0], RED)))
        .expect("room");
    assert_eq!(wire.rx[0].enqueue(&mut burst), 1);
    wait_for("multi-segment drop", &stats, |t| {
        t.dropped(DropReason::MultiSegment) == 1
    });
    let t = stats.total();
    assert_eq!((t.rx, t.tx, t.dropped_total()), (1, 0, 1), "{}", t.line());

    // A. Worker 1 held in a burst; worker 0 hands it 200 frames: 63 fit its ring.
    let hold = users_of(1, 1);
    send(&pool, &mut wire.rx[1], [frame(hold[0], HOLD)]);
    let deadline = Instant::now() + WAIT;
    while !gate.held.load(Ordering::SeqCst) {
        assert!(
            Instant::now() < deadline,
            "worker 1 never decided its frame"
        );
        std::thread::yield_now();
    }
    let handed: Vec<u64> = users_of(1, 200);
    let frames: Vec<Vec<u8>> = handed.iter().map(|&u| frame(u, OTHER)).collect();
    send(&pool, &mut wire.rx[0], frames);
    wait_for("hand-offs", &stats, |t| {
        t.rx == 1 + 201 && t.dropped(DropReason::HandoffFull) == 200 - 63
    });
    gate.release.store(true, Ordering::SeqCst);
    let answered = receive(&mut wire.tx[1], 64);
    assert_eq!(answered[0], hold[0]);
    assert_eq!(answered[1..], handed[..63], "the ring's frames, in order");
    let t = stats.total();
    assert_eq!(t.dropped(DropReason::TxFull), 0, "{}", t.line());

    // B. Worker 0's TX ring is full and not read: 15 in it, 128 wait.
    let mine = users_of(0, TX_RING + BACKLOG);
    let red = |i: usize| if i % 2 == 0 { RED } else { OTHER };
    let frames: Vec<Vec<u8>> = mine
        .iter()
        .enumerate()
        .map(|(i, &u)| frame(u, red(i)))
        .collect();
    send(&pool, &mut wire.rx[0], frames);
    wait_for("backlog full", &stats, |t| {
        t.event(Event::TxDeferred) == BACKLOG as u64
    });
    let t = stats.total();
    assert_eq!(
        t.dropped_total(),
        1 + 137,
        "nothing dropped yet: {}",
        t.line()
    );
    // 40 more, half RED_PACKET: the RED_PACKET answers displace waiting others.
    let more = users_of(0, 40);
    let frames: Vec<Vec<u8>> = more
        .iter()
        .enumerate()
        .map(|(i, &u)| frame(u, red(i)))
        .collect();
    send(&pool, &mut wire.rx[0], frames);
    wait_for("non-RED_PACKET give way", &stats, |t| {
        t.dropped(DropReason::TxFull) == 40
    });
    // 50 RED_PACKET: 44 displace the last others; 6 find only RED_PACKET answers waiting.
    let reds = users_of(0, 50);
    let frames: Vec<Vec<u8>> = reds.iter().map(|&u| frame(u, RED)).collect();
    send(&pool, &mut wire.rx[0], frames);
    wait_for("backlog of RED_PACKET only", &stats, |t| {
        t.dropped(DropReason::TxFull) == 84 && t.dropped(DropReason::RedPacketTxLost) == 6
    });

    // Reading the TX ring: what was in it, then every answer that waited, in order.
    let got = receive(&mut wire.tx[0], TX_RING + BACKLOG);
    let mut want: Vec<u64> = mine[..TX_RING].to_vec();
    want.extend(
        mine.iter()
            .enumerate()
            .skip(TX_RING)
            .filter(|&(i, _)| red(i) == RED)
            .map(|(_, &u)| u),
    );
    want.extend(more.iter().step_by(2));
    want.extend(&reds[..44]);
    assert_eq!(got, want);
    // Every RED_PACKET answer arrived but the 6 that found no room.
    let kept: BTreeSet<u64> = got.iter().copied().collect();
    let red_sent: Vec<u64> = (mine.iter().enumerate())
        .chain(more.iter().enumerate())
        .filter(|&(i, _)| red(i) == RED)
        .map(|(_, &u)| u)
        .chain(reds.iter().copied())
        .collect();
    let red_lost: Vec<u64> = red_sent
        .iter()
        .filter(|u| !kept.contains(u))
        .copied()
        .collect();
    assert_eq!(red_lost, reds[44..]);

    // C. At the stop: 15 fill the TX ring again, 5 RED_PACKET wait and never leave.
    let last = users_of(0, TX_RING + 5);
    let frames: Vec<Vec<u8>> = last
        .iter()
        .enumerate()
        .map(|(i, &u)| frame(u, if i < TX_RING { OTHER } else { RED }))
        .collect();
    let deferred = stats.total().event(Event::TxDeferred);
    send(&pool, &mut wire.rx[0], frames);
    wait_for("last RED_PACKET answers wait", &stats, |t| {
        t.event(Event::TxDeferred) == deferred + 5
    });
    let processors = app.join().expect("workers stop cleanly");
    let t = Snapshot::total(
        &processors
            .iter()
            .map(|p| p.counters.snapshot())
            .collect::<Vec<_>>(),
    );
    assert_eq!(
        t.dropped(DropReason::RedPacketTxLost),
        6 + 5,
        "{}",
        t.line()
    );
    assert_eq!(t.dropped(DropReason::TxFull), 84, "{}", t.line());
    assert_eq!(t.dropped(DropReason::HandoffFull), 137, "{}", t.line());
    assert_eq!(t.dropped(DropReason::MultiSegment), 1, "{}", t.line());
    assert_eq!(t.dropped(DropReason::Truncated), 0, "{}", t.line());
    assert_eq!(t.rx, 1 + 1 + 200 + 143 + 40 + 50 + 20, "{}", t.line());
    assert_eq!(t.tx, 64 + 143 + 15, "{}", t.line());
    assert_eq!(t.rx, t.tx + t.dropped_total(), "{}", t.line());
    // Answered means sent: the RED_PACKET answers that arrived above, no more.
    let red_answered = (red_sent.len() - red_lost.len()) as u64;
    assert_eq!(t.outcome(Outcome::RedPacket), red_answered, "{}", t.line());
    assert_eq!(
        t.outcome(Outcome::Nothing),
        t.tx - red_answered,
        "{}",
        t.line()
    );

    // The 15 left in the TX ring, then every mbuf is back.
    assert_eq!(receive(&mut wire.tx[0], TX_RING), last[..TX_RING]);
    assert_eq!(pool.available(), pool.size(), "no mbuf leaked");
    drop(pool);
    drop(wire);
    drop(eal);
}
