//! `make bench-datapath`: the burst function on one core, no I/O.
//!
//! 32-frame bursts drawn at random from 10 million users (a user table of 250 MB, far larger
//! than the caches), with a clock that moves 1 ms per burst so returning users are mostly past
//! their throttle and get full decisions. Each iteration copies 32 request frames from a
//! 1M-frame pool into the burst buffers (the datapath rewrites them in place) and decides
//! them; the copy is part of the measured time, so the figure slightly overstates the
//! datapath. As the DPDK worker loop does, the next burst is staged (its users' buckets
//! prefetched, its token inputs kept: `Staged`) before the current one is decided (the
//! loop stages every burst for one pass).
//! Report: time per burst / 32 = ns per request.
//!
//! Every request is a full decision (token, user table, round, draw), the load of the real
//! event, where phones wait the retry_after_ms they are given: the throttle floor is 1 ms
//! and the clock moves 1 ms a burst, so a user is THROTTLED only when it comes back within
//! the same burst (1.6% of answers at 1,000 users, none at 10M).
//!
//! Four benchmarks, side by side, each with its own worker and pool:
//! - `burst32_<U>_users`: IPv4 requests (106-byte frames), every checksum summed in software;
//! - `burst32_<U>_users_nic_checked`: the same frames from a NIC that verified the IPv4 and
//!   UDP checksums on receive ([`RxChecked`]) and fills the answer's UDP checksum on transmit,
//!   as most server NICs do;
//! - `burst32_<U>_users_ipv6`: the same users over IPv6 (126-byte frames), in software;
//! - `burst32_<U>_users_nic_checked_scalar_tokens`: the NIC-checked run with each token
//!   checked on its own, as on a CPU without AVX2, beside the burst's tokens computed in
//!   vector lanes (`TokenBatch`) of the others.
//!
//! `<U>` is the population: 10M by default, `SHAKE_BENCH_USERS` sets it (the cost curve,
//! bench/cost_curve.sh); `SHAKE_BENCH_POOL` sets the frames in the pool ([`POOL_DEFAULT`]).
//! `SHAKE_BENCH_FAMILY=ipv4|ipv6`, `SHAKE_BENCH_CHECKSUMS=software|nic` and
//! `SHAKE_BENCH_TOKENS=lanes|scalar` set up only the benchmarks they name, so that
//! callgrind's instructions per frame are those of one. The staged prefetch of the next burst
//! runs in [`stage_next_burst`], which the callgrind recipe counts with
//! `process_burst_checked_staged` (its pattern, `*process_burst_checked*`, matches both).

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shake::activity::Activity;
use shake::client::{self, Flow, Flow6};
use shake::engine::users::UserTable;
use shake::engine::winners::WinnerTable;
use shake::engine::{Identity, Live, Throttle, Worker};
use shake::frame::{
    process_burst_checked_staged, FrameConfig, Ipv6Addrs, RxChecked, Staged, Verdict,
};
use shake::journal::MemoryJournal;
use shake::mac::MacKey;
use shake::seed::{plan, MemorySource};

const USERS_DEFAULT: u64 = 10_000_000;
/// Request frames in the pool the bursts are copied from (128 MiB of them): larger than the
/// caches, so each burst's frames come from memory (a NIC's DMA may leave them in the
/// last-level cache instead). `SHAKE_BENCH_POOL` sets it (a power of two, at least a burst),
/// e.g. 16384 frames (2 MiB) for a pool the caches hold.
const POOL_DEFAULT: usize = 1 << 20;
const BURST: usize = 32;
/// Room for either family's request frame (106 bytes over IPv4, 126 over IPv6).
const FRAME: usize = 128;

#[derive(Clone, Copy, PartialEq)]
enum Family {
    V4,
    V6,
}

fn datapath(c: &mut Criterion) {
    let family = std::env::var("SHAKE_BENCH_FAMILY").ok();
    let checksums = std::env::var("SHAKE_BENCH_CHECKSUMS").ok();
    let tokens = std::env::var("SHAKE_BENCH_TOKENS").ok();
    let wanted = |f: &str, k: &str, t: &str| {
        family.as_deref().map_or(true, |o| o == f)
            && checksums.as_deref().map_or(true, |o| o == k)
            && tokens.as_deref().map_or(true, |o| o == t)
    };
    for (fam, f, nic, k, lanes, t) in [
        (Family::V4, "ipv4", false, "software", true, "lanes"),
        (Family::V4, "ipv4", true, "nic", true, "lanes"),
        (Family::V4, "ipv4", true, "nic", false, "scalar"),
        (Family::V6, "ipv6", false, "software", true, "lanes"),
    ] {
        if wanted(f, k, t) {
            datapath_of(c, fam, nic, lanes);
        }
    }
}

/// The pool's length: [`POOL_DEFAULT`], or `SHAKE_BENCH_POOL`'s if that is a power of two of
/// at least a burst (the index wraps by a mask, and a staged burst never straddles the end).
fn pool_len() -> usize {
    let Ok(v) = std::env::var("SHAKE_BENCH_POOL") else {
        return POOL_DEFAULT;
    };
    match v.parse::<usize>() {
        Ok(n) if n.is_power_of_two() && n >= BURST => n,
        _ => {
            eprintln!("SHAKE_BENCH_POOL={v}: want a power of two of at least {BURST} frames");
            std::process::exit(2);
        }
    }
}

/// 1000 -> "1K", 10_000_000 -> "10M".
fn population(users: u64) -> String {
    match users {
        u if u >= 1_000_000 && u % 1_000_000 == 0 => format!("{}M", u / 1_000_000),
        u if u >= 1_000 && u % 1_000 == 0 => format!("{}K", u / 1_000),
        u => u.to_string(),
    }
}

/// Stages the next burst as the DPDK worker loop does: starts loading its users' table
/// buckets and keeps its token inputs. Its own symbol, for callgrind.
#[inline(never)]
fn stage_next_burst(
    worker: &Worker<MemorySource, MemoryJournal>,
    next: &[[u8; FRAME]],
    staged: &mut Staged,
) {
    staged.stage(worker, next.iter().map(|f| &f[..]));
}

fn datapath_of(c: &mut Criterion, family: Family, nic: bool, lanes: bool) {
    // SHAKE_BENCH_USERS overrides the population, e.g. to see the cost without cache misses.
    let users: u64 = std::env::var("SHAKE_BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(USERS_DEFAULT);
    let token = MacKey::from_bytes([1; 16]);
    let claim = MacKey::from_bytes([2; 16]);
    let activity = Activity::parse(
        Path::new("bench.toml"),
        r#"
[activity]
id = 1
name = "bench"
epoch = 0
[limits]
per_user = 3
per_sponsor = 1
[[sponsor]]
id = 1
budget_cents = 100000000
packets = 1000000
greeting_resources = [1, 2]
[[round]]
id = 1
start_s = 0
duration_s = 100000
win_probability = 0.05
greeting_probability = 0.3
"#,
    )
    .unwrap();
    let live = Live::new(
        &activity,
        Identity {
            node_index: 0,
            node_count: 1,
            token_key: token,
            claim_key: claim,
        },
        Throttle {
            floor_ms: 1,
            ..Throttle::default()
        },
        None,
        0,
        Default::default(),
        1,
    );
    let planned = plan::plan(&activity, 1, 1, 1);
    let records = plan::shard_records(&planned, 0);
    let n = records.len();
    let worker = Worker::new(
        live,
        UserTable::new(users as usize, 0),
        WinnerTable::with_capacity(n),
        MemorySource::new(records, 1),
        MemoryJournal::with_capacity(n),
        7,
    );
    let mut worker = if lanes {
        worker
    } else {
        worker.without_lanes()
    };
    let flow = Flow {
        src_mac: [2, 0, 0, 0, 0, 2],
        dst_mac: [2, 0, 0, 0, 0, 1],
        vlan: None,
        src_ip: [10, 0, 0, 2],
        dst_ip: [10, 0, 0, 1],
        src_port: 40000,
        dst_port: 7000,
    };
    let ours6 = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let flow6 = Flow6 {
        src_mac: flow.src_mac,
        dst_mac: flow.dst_mac,
        vlan: None,
        src_ip: [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
        dst_ip: ours6,
        src_port: 40000,
        dst_port: 7000,
    };
    let len = match family {
        Family::V4 => flow.frame_len(),
        Family::V6 => flow6.frame_len(),
    };
    let cfg = FrameConfig {
        ipv4: [10, 0, 0, 1],
        ipv6: Some(Ipv6Addrs::new(ours6, None, [2, 0, 0, 0, 0, 1])),
        mac: [2, 0, 0, 0, 0, 1],
        udp_port: 7000,
        tx_udp_offload: nic,
        tx_ipv4_offload: nic,
    };
    let checked = [if nic {
        RxChecked::all()
    } else {
        RxChecked::empty()
    }; BURST];
    let mut rng = shake::rng::Rng::new(99);
    let pool_frames = pool_len();
    let mut pool = vec![[0u8; FRAME]; pool_frames];
    for (i, f) in pool.iter_mut().enumerate() {
        let user = rng.below(users);
        let r = client::request(&token, user, i as u32, u32::MAX, i as u64);
        match family {
            Family::V4 => flow.emit(f, &client::payload(&r), 0),
            Family::V6 => flow6.emit(f, &client::payload(&r)),
        };
    }
    // Warm the table with every user once, as a node mid-broadcast would be.
    let mut now = 10_000_000u64;
    let mut bufs = [[0u8; FRAME]; BURST];
    let mut verdicts = [Verdict::Drop(shake::counters::DropReason::Truncated); BURST];
    let mut at = 0usize;
    // What the previous burst staged of this one, and what this one stages of the next.
    let mut stages = [Staged::default(), Staged::default()];
    let mut odd = false;
    let mut run_burst = |worker: &mut Worker<MemorySource, MemoryJournal>, now: u64| {
        for b in bufs.iter_mut() {
            *b = pool[at];
            at = (at + 1) & (pool_frames - 1);
        }
        // The worker loop has received the next burst by now: its users' buckets start loading
        // (`at` is a multiple of BURST, and so is the pool's length: the next burst is
        // contiguous).
        let [a, b] = &mut stages;
        let (staged, next) = if odd { (b, a) } else { (a, b) };
        odd = !odd;
        stage_next_burst(worker, &pool[at..at + BURST], next);
        worker.begin_burst(now);
        let mut frames: [&mut [u8]; BURST] = {
            let mut it = bufs.iter_mut();
            std::array::from_fn(|_| &mut it.next().unwrap()[..len])
        };
        process_burst_checked_staged(worker, &cfg, &mut frames, &checked, staged, &mut verdicts);
        // The I/O layer counts rx (the callgrind recipe divides by it).
        shake::counters::bump(&worker.counters().rx, BURST as u64);
        std::hint::black_box(&verdicts);
    };
    for _ in 0..pool_frames / BURST {
        now += 1;
        run_burst(&mut worker, now);
    }
    let mut g = c.benchmark_group("datapath");
    g.throughput(Throughput::Elements(BURST as u64));
    let name = format!(
        "burst32_{}_users{}",
        population(users),
        match (family, nic) {
            (Family::V4, false) => "",
            (Family::V4, true) => "_nic_checked",
            (Family::V6, _) => "_ipv6",
        }
    ) + if lanes { "" } else { "_scalar_tokens" };
    g.bench_function(&name, |b| {
        b.iter(|| {
            now += 1;
            run_burst(&mut worker, now)
        })
    });
    g.finish();
    let s = worker.counters().snapshot();
    // No TX here: the decisions, not the answers sent, are what this run made.
    let decided: Vec<String> = shake::wire::shake::Outcome::ALL
        .iter()
        .map(|&o| format!("{}={}", o.name(), s.decided(o)))
        .collect();
    eprintln!(
        "{name}: outcomes over the run: {} decided: {}",
        s.line(),
        decided.join(" ")
    );
}

criterion_group!(benches, datapath);
criterion_main!(benches);
