//! SIGTERM under load: the DPDK appliance (`shake serve --io dpdk`) over memory-mapped
//! shards from `shake seedgen` and a claim journal, on a net_pcap port that replays a pcap of
//! shakes from 3000 users forever (`infinite_rx=1`) and writes every answer to a pcap. Once
//! the appliance has issued a hundred red packets it gets SIGTERM while its RX queue is still
//! full. It must exit 0; afterwards every answer it wrote verifies against its request, every
//! RED_PACKET answer is in the journal with the same user, amount and sponsor, no packet is
//! journaled twice, the per-user and per-sponsor limits hold, and `shake reconcile` is exact.
//!
//! Why net_pcap and not a memif client in this process: net_memif unmaps its shared regions
//! from the EAL interrupt thread when the peer goes away, with no lock against a burst in
//! progress. A client still polling when the appliance exits can be preempted inside a burst
//! and fault (it did, once, in CI). A pcap has no peer, so the load at the stop never ends
//! before the appliance does.
//!
//! `--no-pci --no-huge --no-shconf`, its own `--file-prefix`; the replay stops with the
//! appliance, which gets SIGTERM once the metrics show the red packets (or after 30 s).
#![cfg(feature = "dpdk")]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::appliance::{
    dpdk_sections, file_prefix, final_counters, flow_to_node, read_pcap, request_frame, sum_metric,
    write_pcap, Appliance,
};
use common::{reconcile, seedgen, unix_s, NodeDir, NodeToml, CLAIM_KEY, TOKEN_KEY};
use shake::client::{check_answer, request};
use shake::wire::shake::{Outcome, ShakeRequestRepr};

const USERS: u64 = 3_000;
/// Shakes per user in the replayed pcap, each with its own sequence number.
const SHAKES: u64 = 4;
/// Red packets issued before SIGTERM.
const PAID_BEFORE_STOP: u64 = 100;

#[test]
fn sigterm_under_load_loses_nothing_from_the_journal() {
    let node = NodeDir::with_activity(&format!(
        r#"
[activity]
id = 41
name = "sigterm"
epoch = {}
[limits]
per_user = 3
per_sponsor = 1
[[sponsor]]
id = 1
budget_cents = 400000
packets = 2000
min_cents = 10
max_cents = 500
[[sponsor]]
id = 2
budget_cents = 200000
packets = 2000
min_cents = 5
max_cents = 200
[[sponsor]]
id = 3
budget_cents = 100000
packets = 2000
min_cents = 1
max_cents = 100
greeting_resources = [9]
[[round]]
id = 1
start_s = 0
duration_s = 30
win_probability = 0.5
greeting_probability = 0.2
"#,
        unix_s()
    ));
    let p = node.path();
    seedgen(p, 1, 3);
    let prefix = file_prefix("sigterm-node");
    let config = NodeToml::new("10.99.4.1", 20_000)
        .activity(r#"seeds = "seeds""#)
        .activity(r#"journal = "journal""#)
        .prometheus()
        .extra("[throttle]\nfloor_ms = 1\nceiling_ms = 2\n")
        .extra(&dpdk_sections(
            &prefix,
            &format!(
                "net_pcap0,rx_pcap={},tx_pcap={},infinite_rx=1",
                p.join("in.pcap").display(),
                p.join("out.pcap").display()
            ),
            1024,
            64,
            0,
        ))
        // The port's mbufs: infinite_rx keeps the whole pcap in mbufs, besides the RX and
        // TX rings.
        .extra("mbufs = 16383\n")
        .write(p);

    let flow = flow_to_node(
        ([2, 0, 0, 0, 4, 9], [10, 99, 4, 9], 30_000),
        ([2, 0, 0, 0, 4, 1], [10, 99, 4, 1]),
    );
    let expiry = (unix_s() + 3600) as u32;
    // Users interleaved, so a user comes back only after every other user shook.
    let mut requests: HashMap<(u64, u32), ShakeRequestRepr> = HashMap::new();
    let mut frames = Vec::new();
    for round in 0..SHAKES {
        for user in 1..=USERS {
            let seq = (round * USERS + user) as u32;
            let r = request(&TOKEN_KEY, user, seq, expiry, u64::from(seq));
            frames.push(request_frame(&flow, &r, seq as u16));
            requests.insert((user, seq), r);
        }
    }
    write_pcap(&p.join("in.pcap"), &frames);

    let app = Appliance::start(&config, &prefix, None, true);
    let (text, done) = app.wait_metrics(Duration::from_secs(30), |t| {
        sum_metric(t, "shake_answers_total", "outcome=\"red_packet\"") >= PAID_BEFORE_STOP
    });
    assert!(
        done,
        "fewer than {PAID_BEFORE_STOP} red packets in 30 s:\n{text}\nstderr:\n{}",
        app.stderr()
    );
    let rx_before_stop = sum_metric(&text, "shake_rx_frames_total", "");
    let (status, lines) = app.stop(Duration::from_secs(15));
    assert!(status.success(), "exit {status} after SIGTERM under load");
    let c = final_counters(&lines);
    let get = |k: &str| c.get(k).copied().unwrap_or(0);
    assert!(
        get("rx") > rx_before_stop,
        "frames kept coming until the stop: {rx_before_stop} then {c:?}"
    );

    // Every answer the appliance sent is in out.pcap, and verifies against its request.
    let answers = read_pcap(&p.join("out.pcap"));
    assert_eq!(answers.len() as u64, get("tx"), "{c:?}");
    // packet_id -> (user, amount, sponsor), as answered.
    let mut paid: HashMap<u64, (u64, u32, u32)> = HashMap::new();
    for a in &answers {
        let user = u64::from_be_bytes(a[50..58].try_into().unwrap());
        let sq = u32::from_be_bytes(a[58..62].try_into().unwrap());
        let r = requests
            .get(&(user, sq))
            .unwrap_or_else(|| panic!("answer to no request: user {user} seq {sq}"));
        check_answer(r, &a[42..], &CLAIM_KEY).unwrap_or_else(|e| panic!("user {user}: {e}"));
        if a[42 + 4] == Outcome::RedPacket as u8 {
            let pid = u64::from_be_bytes(a[42 + 32..42 + 40].try_into().unwrap());
            let amount = u32::from_be_bytes(a[42 + 40..42 + 44].try_into().unwrap());
            let sponsor = u32::from_be_bytes(a[42 + 44..42 + 48].try_into().unwrap());
            assert!(
                paid.insert(pid, (user, amount, sponsor)).is_none(),
                "packet {pid} answered twice"
            );
        }
    }
    assert_eq!(paid.len() as u64, get("red_packet"), "{c:?}");

    // Every journal record: no packet twice, limits hold.
    let journaled = common::audit_journals(&p.join("journal"), 1);
    journaled.assert_journaled(&paid);
    let claims = &journaled.claims;
    assert_eq!(
        get("red_packet"),
        claims.len() as u64,
        "every issued packet is journaled: {c:?}"
    );
    assert_eq!(journaled.forfeits, 0, "a clean stop forfeits nothing");

    let out = reconcile(p);
    assert!(out.contains("reconcile: exact"), "{out}");
    eprintln!(
        "SIGTERM at rx={rx_before_stop}; {} answers, {} red packets, {} journaled, {c:?}",
        answers.len(),
        paid.len(),
        claims.len()
    );
}
