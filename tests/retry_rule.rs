//! The decision's promises to a phone (SPEC section 2): a client that waits every
//! retry_after_ms it was given is never THROTTLED, at a round's countdown above all; every
//! answer names the active round; and a full winner table refuses wins instead of losing the
//! limits.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use proptest::prelude::*;
use shake::activity::Activity;
use shake::client;
use shake::counters::Event;
use shake::engine::users::UserTable;
use shake::engine::winners::WinnerTable;
use shake::engine::{Identity, Live, Throttle, Worker};
use shake::journal::MemoryJournal;
use shake::mac::MacKey;
use shake::seed::{plan, MemorySource};
use shake::wire::shake::{Outcome, ShakeAnswer};

const TOKEN: MacKey = MacKey::from_bytes([5; 16]);
const CLAIM: MacKey = MacKey::from_bytes([6; 16]);
/// The activity's epoch, unix seconds; times below are unix ms.
const EPOCH_S: u64 = 2_000_000;
const EPOCH_MS: u64 = EPOCH_S * 1000;

/// An activity with `rounds` as (start_s, duration_s) from the epoch, win probability `win`.
fn activity(rounds: &[(u64, u64)], win: f64) -> Activity {
    let mut text = format!(
        r#"
[activity]
id = 5
name = "retry"
epoch = {EPOCH_S}
[limits]
per_user = 3
per_sponsor = 1
[[sponsor]]
id = 1
budget_cents = 1000000
packets = 5000
greeting_resources = [1]
[[sponsor]]
id = 2
budget_cents = 1000000
packets = 5000
"#
    );
    let greet = (1.0 - win).min(0.1);
    for (i, (start, dur)) in rounds.iter().enumerate() {
        text += &format!(
            "[[round]]\nid = {}\nstart_s = {start}\nduration_s = {dur}\nwin_probability = {win}\ngreeting_probability = {greet}\n",
            10 + i
        );
    }
    Activity::parse(Path::new("retry.toml"), &text).unwrap()
}

fn worker(
    a: &Activity,
    throttle: Throttle,
    nodes: u32,
    winners: Option<WinnerTable>,
) -> Worker<MemorySource, MemoryJournal> {
    let live = Live::new(
        a,
        Identity {
            node_index: 0,
            node_count: nodes,
            token_key: TOKEN,
            claim_key: CLAIM,
        },
        throttle,
        None,
        0,
        Default::default(),
        1,
    );
    let planned = plan::plan(a, nodes, 1, 5);
    let records = plan::shard_records(&planned, 0);
    let n = records.len();
    Worker::new(
        live,
        UserTable::new(1 << 16, EPOCH_MS - 1_000_000),
        winners.unwrap_or_else(|| WinnerTable::with_capacity(n)),
        MemorySource::new(records, a.rounds.len()),
        MemoryJournal::with_capacity(n),
        9,
    )
}

/// One shake of `user` at `now_ms` with a valid token (or a forged one); the answer.
fn shake_at(
    w: &mut Worker<MemorySource, MemoryJournal>,
    user: u64,
    seq: u32,
    now_ms: u64,
    forged: bool,
) -> (Outcome, u32, u32) {
    w.begin_burst(now_ms);
    let mut r = client::request(&TOKEN, user, seq, (now_ms / 1000 + 3600) as u32, 0);
    if forged {
        r.token ^= 1;
    }
    let mut p = client::payload(&r);
    let outcome = w.shake(&mut p).expect("a valid request is answered");
    let a = ShakeAnswer::new_unchecked(&p[..]);
    (outcome, a.retry_after_ms(), a.round_id())
}

#[test]
fn a_phone_told_the_countdown_is_not_throttled_at_the_start() {
    let a = activity(&[(10, 60)], 0.5);
    let mut w = worker(
        &a,
        Throttle {
            floor_ms: 5_000,
            ceiling_ms: 10_000,
            ..Throttle::default()
        },
        1,
        None,
    );
    let start = EPOCH_MS + 10_000;
    // 1.6 s before round 1: CLOSED, come back at the start.
    let (o, retry, round) = shake_at(&mut w, 77, 1, start - 1_623, false);
    assert_eq!(o, Outcome::Closed);
    assert_eq!(retry, 1_623);
    assert_eq!(round, 10, "CLOSED names the next round");
    // Back exactly on time.
    let (o, retry, round) = shake_at(&mut w, 77, 2, start, false);
    assert_ne!(o, Outcome::Throttled, "told to wait {retry} ms more");
    assert_eq!(round, 10);
}

#[test]
fn every_answer_names_the_active_round() {
    let a = activity(&[(0, 100)], 0.0);
    let mut w = worker(&a, Throttle::default(), 2, None);
    let now = EPOCH_MS + 5_000;
    // Owned by node 0 (even): admitted, then THROTTLED.
    let (o, _, round) = shake_at(&mut w, 8, 1, now, false);
    assert!(matches!(o, Outcome::Nothing | Outcome::Greeting), "{o:?}");
    assert_eq!(round, 10);
    let (o, _, round) = shake_at(&mut w, 8, 2, now + 1, false);
    assert_eq!(o, Outcome::Throttled);
    assert_eq!(round, 10, "THROTTLED");
    let (o, _, round) = shake_at(&mut w, 10, 1, now, true);
    assert_eq!(o, Outcome::Denied);
    assert_eq!(round, 10, "DENIED");
    let (o, _, round) = shake_at(&mut w, 9, 1, now, false);
    assert_eq!(o, Outcome::Redirect);
    assert_eq!(round, 10, "REDIRECT");
    // After the last round: none.
    let (o, _, round) = shake_at(&mut w, 12, 1, EPOCH_MS + 200_000, false);
    assert_eq!(o, Outcome::Closed);
    assert_eq!(round, 0);
}

#[test]
fn a_full_winner_table_refuses_wins_and_keeps_the_limits() {
    let a = activity(&[(0, 1000)], 1.0);
    // Room for 8 winners only (the table keeps its load factor at 1/2 of 16 slots).
    let mut w = worker(
        &a,
        Throttle::default(),
        1,
        Some(WinnerTable::with_capacity(1)),
    );
    // Pacing lets packets out as the round goes on: the first pass wins none, later ones do.
    let now = EPOCH_MS + 10_000;
    let mut wins: HashMap<u64, Vec<u32>> = HashMap::new();
    for round in 0..5u32 {
        for user in 1..=40u64 {
            let t = now + round as u64 * 6_000;
            w.begin_burst(t);
            let r = client::request(&TOKEN, user, round, (t / 1000 + 3600) as u32, 0);
            let mut p = client::payload(&r);
            if w.shake(&mut p) == Ok(Outcome::RedPacket) {
                let ans = ShakeAnswer::new_unchecked(&p[..]);
                wins.entry(user).or_default().push(ans.sponsor_id());
            }
        }
    }
    assert!(wins.len() <= 8, "{} winners in a table for 8", wins.len());
    for (user, sponsors) in &wins {
        let distinct: HashSet<_> = sponsors.iter().collect();
        assert_eq!(distinct.len(), sponsors.len(), "user {user}: {sponsors:?}");
    }
    assert!(w.counters().snapshot().event(Event::WinnerTableFull) > 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// A phone that waits every retry_after_ms (plus any delay of its own) is never
    /// THROTTLED, across countdowns, rounds, gaps and the end, for any throttle settings.
    #[test]
    fn a_client_that_obeys_retry_after_is_never_throttled(
        rounds in proptest::collection::vec((1u64..30, 1u64..30), 1..4),
        floor_ms in 1u32..12_000,
        extra_ceiling in 0u32..10_000,
        closed_cap_ms in 1u32..90_000,
        first_ms in 0u64..40_000,
        delays in proptest::collection::vec(0u64..1_500, 64),
        users in 1u64..4,
    ) {
        // Rounds one after another, each (gap before it, duration).
        let mut at = 0;
        let mut spans = Vec::new();
        for (gap, dur) in &rounds {
            at += gap;
            spans.push((at, *dur));
            at += dur;
        }
        let a = activity(&spans, 0.3);
        let mut w = worker(&a, Throttle {
            floor_ms,
            ceiling_ms: floor_ms + extra_ceiling,
            closed_cap_ms,
            worker_capacity_rps: 0,
        }, 1, None);
        let end = EPOCH_MS + (at + 5) * 1000;
        // Each user starts at its own time and keeps obeying.
        let mut next: Vec<u64> = (0..users).map(|u| EPOCH_MS + first_ms + u * 777).collect();
        let mut step = 0usize;
        while step < 400 {
            let (u, &t) = next.iter().enumerate().min_by_key(|(_, t)| **t).unwrap();
            if t > end {
                break;
            }
            let (o, retry, _) = shake_at(&mut w, 100 + u as u64, step as u32, t, false);
            prop_assert_ne!(o, Outcome::Throttled, "user {} at {} ms after the epoch", u, t - EPOCH_MS);
            next[u] = t + retry as u64 + delays[step % delays.len()];
            step += 1;
        }
    }
}
