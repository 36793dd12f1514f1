//! Answers that TX does not take wait for the next poll instead of being dropped (issue 9
//! item 11). The appliance (`shake serve --io dpdk`, memif server) answers a memif client
//! (this process) whose rings hold 32 frames and which reads nothing until the appliance
//! has decided every request: the appliance's TX ring to the client fills after 32 answers,
//! and the rest, most of them RED_PACKET (paid: journaled before they are sent), must wait
//! in the worker's TX backlog and all arrive once the client reads. Counted: `tx_deferred`,
//! no drop, and rx = tx + dropped.
//!
//! Two DPDK processes: `--no-pci --no-huge --no-shconf`, one `--file-prefix` each, a memif
//! socket in the test's directory; bounded in count and time.
#![cfg(feature = "dpdk")]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::appliance::{
    file_prefix, final_counters, flow_to_node, memif_server_sections, request_frame, sum_metric,
    Appliance,
};
use common::memif::MemifClient;
use common::{unix_s, NodeDir, NodeToml, CLAIM_KEY, TOKEN_KEY};
use shake::client::{check_answer, request};
use shake::wire::shake::{Outcome, ShakeRequestRepr};

/// The client's memif rings: 2^5 slots.
const RING: u64 = 32;
/// Requests sent while the client reads nothing: more than the ring, fewer than the ring
/// and the backlog (4 bursts, 128).
const REQUESTS: u64 = 150;
/// Every 4th user's token is wrong (DENIED); the others win (win probability 1).
const BAD_EVERY: u64 = 4;

#[test]
fn answers_tx_refuses_wait_and_none_is_lost() {
    let node = NodeDir::with_activity(
        r#"
[activity]
id = 23
name = "tx backlog"
epoch = 0

[[sponsor]]
id = 301
budget_cents = 2000000
packets = 20000

[[sponsor]]
id = 302
budget_cents = 2000000
packets = 20000

[[round]]
id = 1
start_s = 0
duration_s = 20
win_probability = 1.0
greeting_probability = 0.0
"#,
    );
    let p = node.path();
    let prefix = file_prefix("backlog-node");
    let socket = p.join(format!("shake-backlog-{}.memif", std::process::id()));
    let config = NodeToml::new("10.99.6.1", 10_000)
        .activity(r#"epoch = "now""#)
        .prometheus()
        .extra(&memif_server_sections(&prefix, &socket))
        .write(p);
    let app = Appliance::start(&config, &prefix, None, true);
    let mut client = MemifClient::connect_with(
        &file_prefix("backlog-client"),
        &socket,
        Duration::from_secs(10),
        ",rsize=5",
    );
    let flow = |user: u64| {
        flow_to_node(
            (
                [2, 0, 0, 0, 6, user as u8],
                [10, 99, 6, 9],
                20_000 + user as u16,
            ),
            ([2, 0, 0, 0, 6, 1], [10, 99, 6, 1]),
        )
    };
    let expiry = (unix_s() + 3600) as u32;

    // Pacing starts with the worker's first shake; 300 ms of the 20 s round then make 600
    // packets due, more than the users below can win.
    let warm = request(&TOKEN_KEY, 0, 1, expiry, 0);
    client.exchange_one(request_frame(&flow(0), &warm, 0));
    // Not a wait for something to happen: round time the test needs to pass.
    std::thread::sleep(Duration::from_millis(300));

    let mut requests: HashMap<u64, ShakeRequestRepr> = HashMap::new();
    let frames: Vec<Vec<u8>> = (1..=REQUESTS)
        .map(|user| {
            let mut r = request(&TOKEN_KEY, user, 1, expiry, user);
            if user % BAD_EVERY == 0 {
                r.token ^= 1;
            }
            requests.insert(user, r);
            request_frame(&flow(user), &r, user as u16)
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    assert_eq!(client.send_only(&frames, deadline), REQUESTS);
    // The appliance has received and decided every request; the client has read nothing.
    let (text, done) = app.wait_metrics(Duration::from_secs(15), |t| {
        sum_metric(t, "shake_rx_frames_total", "") == REQUESTS + 1
            && sum_metric(t, "shake_decisions_total", "") == REQUESTS + 1
    });
    let deferred = sum_metric(&text, "shake_events_total", "event=\"tx_deferred\"");

    let mut outcomes: HashMap<Outcome, u64> = HashMap::new();
    let mut seen = HashMap::new();
    let got = client.receive(REQUESTS, Duration::from_secs(3), deadline, |a| {
        assert_eq!(a.len(), 14 + 20 + 8 + 64);
        let user = u64::from_be_bytes(a[50..58].try_into().unwrap());
        let ans = check_answer(&requests[&user], &a[42..], &CLAIM_KEY).unwrap();
        *outcomes.entry(ans.outcome).or_insert(0) += 1;
        assert!(
            seen.insert(user, ans.outcome).is_none(),
            "user {user} twice"
        );
    });
    let (status, lines) = app.stop(Duration::from_secs(15));
    assert!(status.success(), "exit {status}");
    let c = final_counters(&lines);
    let get = |k: &str| c.get(k).copied().unwrap_or(0);
    assert_eq!(got, REQUESTS, "every answer arrives, none dropped: {c:?}");
    assert!(done, "the appliance decided every request:\n{text}");
    let denied = REQUESTS / BAD_EVERY;
    assert_eq!(
        outcomes.get(&Outcome::Denied),
        Some(&denied),
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.get(&Outcome::RedPacket),
        Some(&(REQUESTS - denied)),
        "every good user won: {outcomes:?}"
    );
    assert!(
        deferred >= REQUESTS - RING,
        "answers waited in the backlog: {deferred} of {REQUESTS}"
    );
    assert_eq!(get("tx_deferred"), deferred, "{c:?}");
    // The warm-up shake found nothing due yet; every other RED_PACKET decided was sent.
    assert_eq!(get("red_packet"), REQUESTS - denied, "{c:?}");
    assert_eq!(get("dropped"), 0, "{c:?}");
    assert_eq!(get("rx"), REQUESTS + 1, "{c:?}");
    assert_eq!(get("rx"), get("tx") + get("dropped"), "{c:?}");
}
