//! Packets a round leaves unissued carry over into the next (SPEC section 3): they are
//! journaled with the round that issued them, a later one than their shard planned. Recovery
//! and reconcile accept that; and reconcile reports a systematic fault as one kind with its
//! count and a few examples, not one line per record.

mod seeds_util;

use std::path::Path;

use seeds_util::{close, config, owner, TempDir};
use shake::activity::Activity;
use shake::engine::winners::WinCheck;
use shake::journal::{Claim, ClaimSink};
use shake::reconcile::{reconcile, MAX_LISTED};
use shake::recovery::{recover, WorkerState};
use shake::seed::manifest::{generate, MANIFEST_FILE};
use shake::seed::shard::{HEADER_LEN, RECORD_LEN, UNISSUED};
use shake::seed::SeedSource;

const BOOT: [u8; 16] = [7; 16];

fn activity() -> Activity {
    Activity::parse(
        Path::new("carry.toml"),
        r#"
[activity]
id = 61
name = "carry"
epoch = 1000
[[sponsor]]
id = 1
budget_cents = 100000
packets = 300
[[sponsor]]
id = 2
budget_cents = 50000
packets = 300
[[round]]
id = 1
start_s = 0
duration_s = 60
win_probability = 0.5
[[round]]
id = 2
start_s = 60
duration_s = 60
win_probability = 0.5
[[round]]
id = 3
start_s = 120
duration_s = 60
win_probability = 0.5
"#,
    )
    .unwrap()
}

/// What the engine does in round index `round` for a win: the next packet due (carried over
/// from an earlier round when one is left), journaled with the issuing round's id.
fn issue_in(a: &Activity, w: &mut WorkerState, round: u16, user: u64) -> Option<Claim> {
    let r = w.seeds.peek(round)?;
    if w.winners.check(user, r.sponsor_index, 3, 1) != WinCheck::Allowed {
        return None;
    }
    let claim = Claim {
        packet_id: r.packet_id,
        user_id: user,
        amount_cents: r.amount_cents,
        sponsor_id: a.sponsors[r.sponsor_index as usize].id,
        round_id: a.rounds[round as usize].id,
        time_ms: 1,
    };
    w.journal.append(&claim).ok()?;
    w.seeds.commit(round);
    w.winners.record(user, r.sponsor_index);
    Some(claim)
}

#[test]
fn carried_over_packets_recover_and_reconcile() {
    let a = activity();
    let seeds = TempDir::new("carry-seeds");
    let journals = TempDir::new("carry-journals");
    generate(&a, 1, 1, 3, seeds.path()).unwrap();
    let cfg = config(&a, seeds.path(), journals.path(), 0, 1, BOOT);
    // Round 1 issues a few; round 3 issues everything left of rounds 1 and 2 first.
    let mut r = recover(&cfg, owner(1)).unwrap();
    let mut carried = 0;
    for user in 0..20 {
        issue_in(&a, &mut r.workers[0], 0, user);
    }
    for user in 100..400 {
        if let Some(c) = issue_in(&a, &mut r.workers[0], 2, user) {
            carried += (c.round_id == 3) as u32;
        }
        if user % 16 == 0 {
            r.workers[0].journal_flusher.flush().unwrap();
            r.workers[0].seed_flusher.flush().unwrap();
        }
    }
    assert!(carried > 100, "only {carried} claims in round 3");
    close(r.workers);

    // A restart reads them back (round 3 claims of round 1 and 2 packets).
    let r = recover(&cfg, owner(1)).expect("recovery accepts carried-over claims");
    assert!(r.summary.claims > 100);
    close(r.workers);

    let rep = reconcile(
        &seeds.path().join(MANIFEST_FILE),
        &[seeds.path().to_path_buf()],
        &[journals.path().to_path_buf()],
    )
    .unwrap();
    assert!(rep.is_exact(), "{:#?}", rep.problems);

    // A systematic fault: every mark wiped. One kind, its count, a few examples.
    let shard = seeds.path().join("node-0/worker-0.shard");
    let mut b = std::fs::read(&shard).unwrap();
    let n = (b.len() - HEADER_LEN) / RECORD_LEN;
    for i in 0..n {
        b[HEADER_LEN + i * RECORD_LEN + 16] = UNISSUED;
    }
    std::fs::write(&shard, &b).unwrap();
    let rep = reconcile(
        &seeds.path().join(MANIFEST_FILE),
        &[seeds.path().to_path_buf()],
        &[journals.path().to_path_buf()],
    )
    .unwrap();
    let k = &rep.problems["mark_disagrees"];
    assert_eq!(k.count, r_claims(journals.path()));
    assert_eq!(k.examples.len(), MAX_LISTED);
    // The tool prints a bounded report.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shake"))
        .arg("reconcile")
        .arg("--manifest")
        .arg(seeds.path().join(MANIFEST_FILE))
        .arg("--seeds")
        .arg(seeds.path())
        .arg("--journals")
        .arg(journals.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines().count() < 40,
        "{} lines for one kind of problem",
        err.lines().count()
    );
    assert!(err.contains(&format!("MISMATCH mark_disagrees: {} occurrences", k.count)));
}

/// Claim records in the journals.
fn r_claims(journals: &Path) -> u64 {
    let mut n = 0;
    for d in shake::reconcile::journal_dirs(journals).unwrap() {
        for r in
            shake::journal::JournalReader::open_dir(&d, None, shake::journal::TailPolicy::Strict)
                .unwrap()
        {
            n += (r.unwrap().kind == shake::journal::Kind::Claim) as u64;
        }
    }
    n
}
