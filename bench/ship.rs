//! Shipping figures (`make bench-ship`): what one shipper sustains into a local nats-server,
//! and how far behind the journal it runs at a given win rate.
//!
//! 1. Throughput: a journal of 1M records written beforehand, shipped from scratch by one
//!    shipper (the library's, in this process, as `shake ship` runs it): records per second
//!    until the stream holds all of them.
//! 2. Lag: a writer appends claims at a fixed rate (as a worker does, with the node's flush
//!    every 2 ms) while the shipper follows; a plain NATS subscriber on the subject sees each
//!    message as the stream stores it; lag = when the record's message arrived - when the
//!    record was appended. p50/p99/max per rate.
//!
//! Results are printed and written to bench/results/ship.txt.

#[path = "../tests/common/engines.rs"]
#[allow(dead_code)]
mod engines;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use shake::fleet::ship::{self, ShipConfig, ShipMetrics};
use shake::fleet::stream::Batch;
use shake::fleet::Names;
use shake::journal::format::worker_dir;
use shake::journal::{open_journal, Claim, ClaimSink, JournalConfig, JournalId, TailPolicy};

fn claim(i: u64) -> Claim {
    Claim {
        packet_id: i,
        user_id: i * 13,
        amount_cents: 100,
        sponsor_id: 1,
        round_id: 1,
        time_ms: 0,
    }
}

fn id() -> JournalId {
    JournalId {
        activity_id: 1,
        node: 0,
        worker: 0,
    }
}

fn shipper(
    rt: &tokio::runtime::Runtime,
    names: &Names,
    root: &std::path::Path,
    url: &str,
) -> (
    Arc<AtomicBool>,
    Arc<ShipMetrics>,
    tokio::task::JoinHandle<()>,
) {
    let cfg = ShipConfig::new(names.clone(), root.to_path_buf(), url.to_string());
    let stop = Arc::new(AtomicBool::new(false));
    let metrics = Arc::new(ShipMetrics::default());
    let h = rt.spawn(ship::run(cfg, metrics.clone(), stop.clone()));
    (stop, metrics, h)
}

fn shipped(m: &ShipMetrics) -> u64 {
    m.workers.lock().unwrap().values().map(|g| g.records).sum()
}

fn throughput(rt: &tokio::runtime::Runtime, url: &str, n: u64) -> String {
    let root = tempfile::tempdir().unwrap();
    let (mut w, fl, _) = open_journal(
        &worker_dir(root.path(), 0),
        id(),
        JournalConfig::default(),
        TailPolicy::Strict,
        |_| {},
    )
    .unwrap();
    for i in 0..n {
        w.append(&claim(i)).unwrap();
    }
    fl.close(w).unwrap();
    let names = Names::new("bench-tput");
    let t0 = Instant::now();
    let (stop, m, h) = shipper(rt, &names, root.path(), url);
    let deadline = t0 + Duration::from_secs(300);
    while shipped(&m) < n {
        assert!(Instant::now() < deadline, "shipper did not finish");
        std::thread::sleep(Duration::from_millis(2));
    }
    let secs = t0.elapsed().as_secs_f64();
    let msgs = m.messages.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    rt.block_on(h).unwrap();
    format!(
        "throughput: {n} records (pre-written journal, 1 worker, batch 512) shipped in {secs:.2} s: {:.0} records/s, {:.0} messages/s (including connect and stream creation)",
        n as f64 / secs,
        msgs as f64 / secs
    )
}

fn lag(rt: &tokio::runtime::Runtime, url: &str, rate: u64, secs: u64) -> String {
    // The NATS client is dropped at the end: in the runtime's context.
    let _in_runtime = rt.enter();
    let root = tempfile::tempdir().unwrap();
    let names = Names::new(&format!("bench-lag-{rate}"));
    let n = rate * secs;
    // When each record was appended, in ns since t0.
    let appended: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let t0 = Instant::now();
    let subject = names.claims_subject(1, 0, 0);
    let client = rt.block_on(shake::fleet::stream::connect(url)).unwrap();
    let mut sub = rt.block_on(client.subscribe(subject)).unwrap();
    let dir = worker_dir(root.path(), 0);
    let (mut w, mut fl, _) = open_journal(
        &dir,
        id(),
        JournalConfig::default(),
        TailPolicy::Strict,
        |_| {},
    )
    .unwrap();
    let (stop, _m, h) = shipper(rt, &names, root.path(), url);
    let app = appended.clone();
    let writer = std::thread::spawn(move || {
        let start = Instant::now();
        let mut last_flush = Instant::now();
        for i in 0..n {
            // Paced: record i is due at i / rate seconds.
            let due = Duration::from_nanos(i * 1_000_000_000 / rate);
            while start.elapsed() < due {
                if last_flush.elapsed() >= Duration::from_millis(2) {
                    fl.flush().unwrap();
                    last_flush = Instant::now();
                }
                std::hint::spin_loop();
            }
            w.append(&claim(i)).unwrap();
            app[i as usize].store(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }
        fl.close(w).unwrap();
    });
    let mut lags: Vec<u64> = Vec::with_capacity(n as usize);
    rt.block_on(async {
        while (lags.len() as u64) < n {
            let m = tokio::time::timeout(Duration::from_secs(30), sub.next())
                .await
                .expect("messages keep coming")
                .expect("subscription open");
            let at = t0.elapsed().as_nanos() as u64;
            let b = Batch::decode(m.payload.to_vec()).unwrap();
            for (r, _) in b.records() {
                let a = appended[r.seq as usize].load(Ordering::Relaxed);
                lags.push(at.saturating_sub(a));
            }
        }
    });
    writer.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    rt.block_on(h).unwrap();
    lags.sort_unstable();
    let q = |p: f64| lags[((lags.len() as f64 * p) as usize).min(lags.len() - 1)] as f64 / 1e6;
    format!(
        "lag at {rate} claims/s for {secs} s ({n} records): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        q(0.5),
        q(0.99),
        *lags.last().unwrap() as f64 / 1e6
    )
}

fn main() {
    // `cargo bench` passes --bench; nothing to filter.
    let nats = engines::Engine::nats();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut out = vec![format!(
        "# shake ship, one shipper into a local nats-server 2.9 (JetStream, file storage): {}",
        std::env::var("SHIP_BENCH_NOTE")
            .unwrap_or_else(|_| "cargo bench --bench ship (release profile)".into())
    )];
    let n: u64 = std::env::var("SHIP_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let line = throughput(&rt, &nats.url(), n);
    println!("{line}");
    out.push(line);
    for rate in [10_000u64, 50_000] {
        let line = lag(&rt, &nats.url(), rate, 10);
        println!("{line}");
        out.push(line);
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/results/ship.txt");
    std::fs::write(&path, out.join("\n") + "\n").unwrap();
    println!("written to {}", path.display());
}
