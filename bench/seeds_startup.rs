//! Benchmarks (not tests): seedgen rate, and node start-up with 10 million claims in the
//! journals. `cargo bench --bench seeds_startup [-- PACKETS]`; files go under $TMPDIR.
use std::path::Path;
use std::time::Instant;

use shake::activity::Activity;
use shake::journal::{Claim, ClaimSink, JournalConfig};
use shake::recovery::{recover, RecoveryConfig};
use shake::seed::manifest::generate;
use shake::seed::SeedSource;

fn main() {
    let packets: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    let root = std::env::temp_dir().join(format!("shake-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let large = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds/large.toml");
    let mut a = Activity::load(&large).unwrap();
    if packets != 10_000_000 {
        let scale = packets as f64 / 10_000_000.0;
        for s in &mut a.sponsors {
            s.packets = ((s.packets as f64 * scale) as u32).max(1);
            s.budget_cents = s.packets as u64 * s.min_cents as u64 + s.packets as u64;
            s.max_cents = Some(s.min_cents + 2);
        }
    }
    let total = a.totals().0;

    // seedgen, 8 nodes x 4 workers.
    let t = Instant::now();
    generate(&a, 8, 4, 1, &root.join("seeds-8x4")).unwrap();
    let dt = t.elapsed().as_secs_f64();
    println!(
        "seedgen: {total} packets into 32 shards in {dt:.2} s: {:.1} M packets/s",
        total as f64 / dt / 1e6
    );

    // One node holding every packet (4 workers), every packet claimed.
    let seeds = root.join("seeds-1x4");
    generate(&a, 1, 4, 1, &seeds).unwrap();
    let cfg = RecoveryConfig {
        activity: &a,
        node: 0,
        workers: 4,
        shard_dir: seeds.join("node-0"),
        journal_dir: root.join("journals"),
        journal: JournalConfig::default(),
        lease_window: 1 << 20,
        boot_id: None,
        forfeit_unjournaled: false,
        manifest: None,
        now_ms: 0,
    };
    let owner = |u: u64| (u % 4) as usize;
    let mut r = recover(&cfg, owner).unwrap();
    let last = (a.rounds.len() - 1) as u16;
    let t = Instant::now();
    let mut user = 0u64;
    for w in r.workers.iter_mut() {
        loop {
            match w.seeds.peek(last) {
                Some(rec) => {
                    // Users spread so that each wins about 3 packets.
                    let c = Claim {
                        packet_id: rec.packet_id,
                        user_id: (user / 3) * 4 + w.worker as u64,
                        amount_cents: rec.amount_cents,
                        sponsor_id: a.sponsors[rec.sponsor_index as usize].id,
                        round_id: a.rounds[rec.round_index as usize].id,
                        time_ms: user,
                    };
                    user += 1;
                    if w.journal.append(&c).is_err() {
                        w.journal_flusher.flush().unwrap();
                        continue;
                    }
                    w.seeds.commit(last);
                }
                None if w.seeds.cursor() < w.seeds.len() => {
                    w.seed_flusher.flush().unwrap();
                    w.journal_flusher.flush().unwrap();
                }
                None => break,
            }
        }
    }
    let dt = t.elapsed().as_secs_f64();
    println!(
        "issue: {user} claims (journal append + mark, flushes inline) in {dt:.2} s: {:.0} ns/claim",
        dt * 1e9 / user as f64
    );
    for w in r.workers {
        w.journal_flusher.close(w.journal).unwrap();
        w.seed_flusher.close(w.seeds).unwrap();
    }

    for attempt in 0..2 {
        let t = Instant::now();
        let r = recover(&cfg, owner).unwrap();
        let dt = t.elapsed().as_secs_f64();
        let winners: usize = r.workers.iter().map(|w| w.winners.len()).sum();
        println!(
            "start-up #{attempt}: {} claims in the journals, {winners} winners rebuilt, in {dt:.2} s",
            r.summary.claims
        );
        for w in r.workers {
            w.journal_flusher.close(w.journal).unwrap();
            w.seed_flusher.close(w.seeds).unwrap();
        }
    }
    let _ = std::fs::remove_dir_all(&root);
}
