//! The cost of steering (issue 13 item 6): a frame received by a worker that does not own
//! its user is handed over a ring to the owner, which decides and answers it. This runs the
//! real two-worker poll loop (`dpdk::launch`, the same `WorkerLoop` as `shake serve`) on an
//! in-process ring port with a processor that decides nothing (it answers every frame as it
//! is), so that what differs between two runs is the loop's own work per frame:
//!
//! - `local`: every frame arrives on queue 0 and belongs to worker 0;
//! - `steered`: every frame arrives on queue 0 and belongs to worker 1: worker 0 peeks its
//!   user, finds the owner, hands it over its ring; worker 1 takes it off the ring, finds its
//!   port and answers it on its own TX queue.
//!
//! RX queue 0 is filled with all the frames before the workers start, so neither waits on a
//! feeder; the run ends when every answer is on a TX ring. It prints frames per second of
//! the run (wall time, both workers on this machine's CPUs); under callgrind with
//! `--toggle-collect='*run_task*'` (both worker lcores, nothing of the set-up) the
//! instructions of two runs of different sizes give the instructions per frame of each mode
//! without the fixed costs. `bench/steering.sh` does both; results in
//! bench/results/steering.txt.
//!
//!   SHAKE_STEER=local|steered SHAKE_STEER_FRAMES=N cargo bench --bench steering
//!
//! Safe on a shared machine: `--no-pci --no-huge`, its own `--file-prefix`, no device but
//! its rings; bounded in time.

#[path = "../tests/common/ring_wire.rs"]
#[allow(dead_code)]
mod ring_wire;

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shake::client::{payload, request, Flow};
use shake::counters::Counters;
use shake::dpdk::{self, Burst, BurstProcessor, Eal, Mempool, RingPort, Verdict};
use shake::engine::config::owner_worker;
use shake::mac::MacKey;
use shake::node_config::NodeConfig;

const DEADLINE: Duration = Duration::from_secs(600);

/// Answers every frame as it came (the loop's cost only; no decision).
struct Mirror {
    counters: Arc<Counters>,
}

impl BurstProcessor for Mirror {
    fn begin(&mut self, _now_ms: u64) {}

    fn tick(&mut self, _now_ms: u64) {}

    fn process(&mut self, _port: usize, frames: &mut [&mut [u8]], verdicts: &mut [Verdict]) {
        for (f, v) in frames.iter().zip(verdicts.iter_mut()) {
            *v = Verdict::Answer {
                len: f.len(),
                reply: shake::counters::Reply::ARP,
            };
        }
    }

    fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }
}

/// A SHAKE/1 request frame of `user` (IPv4, UDP to the node's port 7000): what the loop
/// peeks the user of.
fn shake_frame(user: u64) -> Vec<u8> {
    let flow = Flow {
        src_mac: [2, 0, 0, 0, 0, 1],
        dst_mac: [2, 0, 0, 0, 0, 2],
        vlan: None,
        src_ip: [10, 0, 0, 1],
        dst_ip: [10, 0, 0, 2],
        src_port: 40000,
        dst_port: 7000,
    };
    let r = request(&MacKey::from_bytes([0x11; 16]), user, 1, u32::MAX, user);
    let mut f = vec![0u8; flow.frame_len()];
    let n = flow.emit(&mut f, &payload(&r), 1);
    f.truncate(n);
    f
}

/// The node config: one ring port, two worker lcores (worker 0 on CPU 0 with the main
/// lcore, worker 1 on CPU 1), or one (on CPU 1), hand-off rings of `handoff` slots, idle
/// passes followed by a nap of `idle_sleep_us`.
fn config(prefix: &str, workers: u64, handoff: u32, idle_sleep_us: u64) -> NodeConfig {
    let lcores = if workers == 1 {
        "0@0,1@1"
    } else {
        "0@0,1@0,2@1"
    };
    ring_wire::RingNode {
        prefix,
        port: "steerb",
        lcores,
        memory_mb: 768,
        handoff_ring: handoff,
        idle_sleep_us,
        telemetry: false,
    }
    .config()
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|n| n.parse().unwrap_or_else(|_| panic!("{name}: a number")))
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes --bench; this harness takes its settings from the environment.
    let steered = match std::env::var("SHAKE_STEER").as_deref() {
        Ok("steered") => true,
        Ok("local") | Err(_) => false,
        Ok(other) => panic!("SHAKE_STEER={other}: local or steered"),
    };
    // Frames in the run; with SHAKE_STEER_SECONDS, frames circulating for that long.
    let frames = env_u64("SHAKE_STEER_FRAMES", 12_000) as u32;
    let seconds = env_u64("SHAKE_STEER_SECONDS", 0);
    // One worker: the baseline without steering (the loop peeks no user).
    let workers = env_u64("SHAKE_STEER_WORKERS", 2);
    assert!(
        workers == 2 || (workers == 1 && !steered),
        "1 or 2 workers; steered needs 2"
    );
    assert!(
        frames <= 16_000,
        "the RX and hand-off rings hold 16384 frames"
    );
    let prefix = format!("shake-bench-steer-{}", std::process::id());
    let _runtime = RuntimeDir(Path::new("/var/run/dpdk").join(&prefix));
    // Hand-off rings that hold every frame: a steered frame is never dropped for a full ring.
    // Under callgrind, long naps keep the idle passes (of a worker waiting for its ring)
    // few: they are not per-frame work.
    let idle_sleep_us = env_u64("SHAKE_STEER_IDLE_US", 20);
    let config = config(&prefix, workers, 16_384, idle_sleep_us);
    let args = dpdk::node_eal_args(&config, &["--no-shconf".to_owned()]).expect("EAL args");
    let eal = Eal::init(&args).expect("EAL init");
    let mut wire =
        RingPort::new(&eal, "steerb", &[16_384, 1024], &[16_384, 16_384]).expect("ring port");
    let pool = Mempool::new(&eal, "steer_pool", 16_383, 0, 0).expect("pool");

    // The port opened (and its rings set up) before the clock starts; then all the frames
    // onto queue 0: users of worker 1 (steered) or of worker 0 (local).
    let opened = dpdk::open(&eal, &config).expect("open");
    let want = usize::from(steered);
    let users = (1u64..)
        .filter(|&u| owner_worker(u, 1, workers as u32) as usize == want)
        .take(frames as usize)
        .map(shake_frame);
    ring_wire::feed(&pool, &mut wire.rx[0], users, Instant::now() + DEADLINE);
    let processors = (0..opened.workers())
        .map(|_| Mirror {
            counters: Arc::default(),
        })
        .collect();
    let start = Instant::now();
    let app = opened
        .start(Arc::new(AtomicBool::new(false)), processors)
        .map_err(|(e, _)| e)
        .expect("start");
    let mut got = [0u64; 2];
    let queues = wire.tx.len();
    let mut burst = Burst::new();
    let circulate = Duration::from_secs(seconds);
    loop {
        assert!(
            start.elapsed() < DEADLINE,
            "only {got:?} answers of {frames}"
        );
        let total = app.stats().total();
        if seconds == 0 && total.rx == u64::from(frames) && total.accounted() == total.rx {
            break;
        }
        if seconds > 0 && start.elapsed() >= circulate {
            break;
        }
        for (q, ring) in wire.tx.iter_mut().enumerate() {
            while ring.dequeue(&mut burst) > 0 {
                got[q] += burst.len() as u64;
                if seconds > 0 {
                    // An answer of the mirror is its request: back onto queue 0.
                    wire.rx[0].enqueue(&mut burst);
                }
                burst.clear();
            }
        }
        std::thread::sleep(Duration::from_micros(50));
    }
    let elapsed = start.elapsed();
    let total = app.stats().total();
    app.join().expect("workers stop cleanly");
    for (q, ring) in wire.tx.iter_mut().enumerate() {
        while ring.dequeue(&mut burst) > 0 {
            got[q] += burst.len() as u64;
            burst.clear();
        }
    }
    // Every frame answered by its owner, on its queue, none dropped.
    assert_eq!(
        got.iter().sum::<u64>(),
        got[want],
        "{got:?} over {queues} queues"
    );
    assert_eq!(total.dropped_total(), 0, "{}", total.line());
    if seconds == 0 {
        assert_eq!(got[want], u64::from(frames), "{got:?}");
    }
    println!(
        "steering: {} ({} frames{}): {:.3} Mpps over {:.3} s from the workers' launch, answers by queue {got:?}; {}",
        if steered { "steered" } else { "local" },
        frames,
        if seconds > 0 { " circulating" } else { "" },
        got[want] as f64 / elapsed.as_secs_f64() / 1e6,
        elapsed.as_secs_f64(),
        total.line()
    );
}

/// Removes an EAL runtime directory, also when the run fails.
struct RuntimeDir(std::path::PathBuf);

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
