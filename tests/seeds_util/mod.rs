//! Helpers shared by the seeds and journal tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use shake::activity::Activity;
use shake::engine::winners::WinCheck;
use shake::journal::{Claim, ClaimSink, JournalConfig};
use shake::recovery::{RecoveryConfig, WorkerState};
use shake::seed::SeedSource;

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "shake-test-{}-{}-{}",
            name,
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn demo() -> Activity {
    Activity::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds/demo.toml")).unwrap()
}

pub fn config<'a>(
    a: &'a Activity,
    seeds: &Path,
    journals: &Path,
    node: u32,
    workers: u32,
    boot: [u8; 16],
) -> RecoveryConfig<'a> {
    RecoveryConfig {
        activity: a,
        node,
        workers,
        shard_dir: seeds.join(format!("node-{node}")),
        journal_dir: journals.join(format!("node-{node}")),
        journal: JournalConfig {
            segment_records: 64,
        },
        lease_window: 32,
        boot_id: Some(boot),
        forfeit_unjournaled: false,
        manifest: None,
        now_ms: 1_000,
    }
}

/// Owner of a user among `workers` workers.
pub fn owner(workers: u32) -> impl Fn(u64) -> usize + Sync {
    move |u| (u % workers as u64) as usize
}

/// What the engine does for a winning shake on the user's own worker: limits, journal, mark.
/// Returns the claim the answer would carry.
pub fn issue(a: &Activity, w: &mut WorkerState, round: u16, user: u64) -> Option<Claim> {
    let r = w.seeds.peek(round)?;
    let table = &mut w.winners;
    if table.check(
        user,
        r.sponsor_index,
        a.limits.per_user,
        a.limits.per_sponsor,
    ) != WinCheck::Allowed
    {
        return None;
    }
    let claim = Claim {
        packet_id: r.packet_id,
        user_id: user,
        amount_cents: r.amount_cents,
        sponsor_id: a.sponsors[r.sponsor_index as usize].id,
        round_id: a.rounds[r.round_index as usize].id,
        time_ms: 42,
    };
    w.journal.append(&claim).ok()?;
    w.seeds.commit(round);
    table.record(user, r.sponsor_index);
    Some(claim)
}

/// Flushes a worker's journal and shard as the control loop would.
pub fn flush(w: &mut WorkerState) {
    w.journal_flusher.flush().unwrap();
    w.seed_flusher.flush().unwrap();
}

/// Clean stop of every worker.
pub fn close(workers: Vec<WorkerState>) {
    for w in workers {
        w.journal_flusher.close(w.journal).unwrap();
        w.seed_flusher.close(w.seeds).unwrap();
    }
}
