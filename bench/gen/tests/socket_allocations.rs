//! Socket mode allocates nothing per batch: its send and receive buffers are allocated once
//! (`shake::io::mmsg`), so a run of many more batches makes no more allocations than a short
//! one, but for the once-a-second live line. Against an echo server on loopback (the echoed
//! requests count as `echoed`), bounded in count and time.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shake::mac::MacKey;
use shake_gen::socket::{run, Options};
use shake_gen::{Generator, Plan, Population, Spec};

const BATCH: usize = 32;

/// Echoes every datagram back to its sender until `stop`; allocates nothing itself (and is
/// another thread: the counts below are the generator thread's only).
fn echo_server(stop: Arc<AtomicBool>, at: &str) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let s = UdpSocket::bind(at).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let addr = s.local_addr().unwrap();
    let h = std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((n, from)) = s.recv_from(&mut buf) {
                let _ = s.send_to(&buf[..n], from);
            }
        }
    });
    (addr, h)
}

/// Allocations made on this thread by a socket-mode run of `count` requests, `ipv6_share` of
/// the phones at `server6`, and how many came back.
fn allocations_of_a_run(
    server: SocketAddr,
    server6: Option<SocketAddr>,
    ipv6_share: f64,
    count: u64,
) -> (u64, u64) {
    let v4 = |a: SocketAddr| match a {
        SocketAddr::V4(a) => a,
        a => panic!("{a}"),
    };
    let v6 = |a: SocketAddr| match a {
        SocketAddr::V6(a) => a,
        a => panic!("{a}"),
    };
    let pop = Population::new(
        Spec {
            users: 1000,
            user_offset: 0,
            node_count: 1,
            node_index: 0,
            bad_share: 0.0,
            foreign_share: 0.0,
            seed: 1,
            token_expiry: 2_000_000_000,
            fleet: false,
            ipv6_share,
        },
        &MacKey::from_bytes([1; 16]),
    );
    // Paced at what the echo server keeps up with, so most requests come back.
    let plan = Plan {
        rate: Some(50_000.0),
        duration_ns: Some(30_000_000_000),
        count: Some(count),
        obey_retry: false,
        answer_timeout_ms: 1000,
        drain_ns: 2_000_000_000,
    };
    let mut gen = Generator::new(pop, plan, MacKey::from_bytes([2; 16]));
    let o = Options {
        server: v4(server),
        server6: server6.map(v6),
        nodes: Vec::new(),
        sockets: 2,
        batch: BATCH,
    };
    let stop = AtomicBool::new(false);
    let info = allocation_counter::measure(|| {
        run(&mut gen, &o, &stop, None, &mut |_| {}).unwrap();
    });
    assert_eq!(gen.tally.sent, count);
    (info.count_total, gen.tally.echoed)
}

#[test]
fn socket_mode_allocates_nothing_per_batch() {
    let stop = Arc::new(AtomicBool::new(false));
    let (server, h) = echo_server(stop.clone(), "127.0.0.1:0");
    let (few, back_few) = allocations_of_a_run(server, None, 0.0, 1_000);
    let (many, back_many) = allocations_of_a_run(server, None, 0.0, 61_000);
    stop.store(true, Ordering::Relaxed);
    h.join().unwrap();
    assert_few_allocations((few, back_few), (many, back_many));
}

#[test]
fn socket_mode_with_ipv6_phones_allocates_nothing_per_batch() {
    let stop = Arc::new(AtomicBool::new(false));
    let (server, h) = echo_server(stop.clone(), "127.0.0.1:0");
    let (server6, h6) = echo_server(stop.clone(), "[::1]:0");
    let (few, back_few) = allocations_of_a_run(server, Some(server6), 0.5, 1_000);
    let (many, back_many) = allocations_of_a_run(server, Some(server6), 0.5, 61_000);
    stop.store(true, Ordering::Relaxed);
    h.join().unwrap();
    h6.join().unwrap();
    assert_few_allocations((few, back_few), (many, back_many));
}

/// Runs of 1 000 and 61 000 requests: (allocations, requests back) of each.
#[track_caller]
fn assert_few_allocations((few, back_few): (u64, u64), (many, back_many): (u64, u64)) {
    // Loopback drops what the echo thread has no time for on a busy machine; enough must
    // come back to exercise receiving.
    assert!(
        back_few >= 100 && back_many >= 6_000,
        "{back_few} {back_many}"
    );
    // 60 000 more requests are at least 1 875 more batches (and more receive calls): not
    // one allocation per ten of them. What remains is the live line, once a second.
    let batches = 60_000 / BATCH as u64;
    assert!(
        many.saturating_sub(few) < batches / 10,
        "{few} allocations for 1 000 requests, {many} for 61 000"
    );
}
