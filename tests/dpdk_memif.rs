//! Two DPDK processes over net_memif: the appliance (`shake serve --io dpdk`, memif server)
//! and this test process as the client (its own EAL, a memif client port on the same
//! socket), with thousands of users. Every request frame is built with `client::Flow::emit`
//! and every answer validated with `client::check_answer` against the request it answers
//! (echoes, outcome rules, claim MACs); frames must come back with addresses and ports
//! swapped. Each user shakes twice in a row: the first shake is decided (red packets are due
//! by then: a first shake started the worker's pacing and some round time passed since),
//! the second is THROTTLED. A few users carry a
//! bad token and must be DENIED. The client's tally must equal the appliance's counters,
//! which must account for every frame, after a clean SIGTERM stop.
//!
//! Safe on a shared machine: `--no-pci --no-huge --no-shconf`, one `--file-prefix` per
//! process, an abstract memif socket named after this process, bounded in count and time.
#![cfg(feature = "dpdk")]

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::appliance::{
    file_prefix, final_counters, flow_to_node, memif_server_sections, request_frame, Appliance,
};
use common::memif::MemifClient;
use common::{unix_s, NodeDir, NodeToml, CLAIM_KEY, TOKEN_KEY};
use shake::client::{check_answer, request};
use shake::wire::shake::{Outcome, ShakeRequestRepr};

const USERS: u64 = 4_000;
/// Every 97th user sends a wrong token.
const BAD_TOKEN_EVERY: u64 = 97;
const NODE_IP: [u8; 4] = [10, 99, 2, 1];
/// Round time that passes between the first shake and the users' (see the test).
const PACED: Duration = Duration::from_millis(300);

#[test]
fn memif_client_with_thousands_of_users_gets_valid_answers() {
    let node = NodeDir::with_activity(
        r#"
[activity]
id = 12
name = "memif"
epoch = 0

[[sponsor]]
id = 201
budget_cents = 1000000
packets = 6000
greeting_resources = [5]

[[sponsor]]
id = 202
budget_cents = 500000
packets = 6000

[[round]]
id = 3
start_s = 0
duration_s = 60
win_probability = 0.5
greeting_probability = 0.3
"#,
    );
    let p = node.path();
    let prefix = file_prefix("memif-node");
    let socket = p.join(format!("shake-test-{}.memif", std::process::id()));
    let config = NodeToml::new("10.99.2.1", 20_000)
        .activity(r#"epoch = "now""#)
        .prometheus()
        .extra(&memif_server_sections(&prefix, &socket))
        .write(p);

    // A memif client connects once, when its port starts, and the server only accepts it
    // once its own port has started: the appliance comes up first (its launch gives the
    // link a bounded 3 s), then the client.
    let app = Appliance::start(&config, &prefix, None, true);
    let mut client = MemifClient::connect(
        &file_prefix("memif-client"),
        &socket,
        Duration::from_secs(10),
    );

    let flow = |user: u64| {
        flow_to_node(
            (
                [2, 0, 0, 0, (user >> 8) as u8, user as u8],
                [10, 99, 3, (user % 250) as u8 + 1],
                20_000 + (user % 40_000) as u16,
            ),
            ([2, 0, 0, 0, 0, 1], NODE_IP),
        )
    };
    let expiry = (unix_s() + 3600) as u32;
    // Two requests per user, back to back: (user, seq) -> request.
    let mut pending: HashMap<(u64, u32), ShakeRequestRepr> = HashMap::new();
    let mut order = (0..2 * USERS).map(|i| (i % USERS + 1, (i / USERS) as u32 + 1));
    let mut next = || {
        let (user, seq) = order.next()?;
        let mut r = request(&TOKEN_KEY, user, seq, expiry, user << 20 | u64::from(seq));
        if user % BAD_TOKEN_EVERY == 0 {
            r.token = r.token.wrapping_add(1);
        }
        pending.insert((user, seq), r);
        Some(request_frame(&flow(user), &r, seq as u16))
    };
    // Red packets are paced from when the worker first sees the round: one shake first
    // (user 0's, not counted below), then at least PACED of the round's time passes, which
    // makes at least 12000 * 0.3 s / 60 s = 60 packets due before the users shake.
    let warm = request(&TOKEN_KEY, 0, 1, expiry, 0);
    let warm_answer = client.exchange_one(request_frame(&flow(0), &warm, 0));
    check_answer(&warm, &warm_answer[42..], &CLAIM_KEY).unwrap();
    // Not a wait for something to happen: a span of round time the test needs to elapse.
    std::thread::sleep(PACED);

    let mut answers: Vec<Vec<u8>> = Vec::with_capacity(2 * USERS as usize);
    let driven = client.drive(
        &mut next,
        512,
        Duration::from_secs(5),
        Instant::now() + Duration::from_secs(20),
        |a| answers.push(a.to_vec()),
    );
    assert_eq!(driven.sent, 2 * USERS, "every request sent");
    assert_eq!(driven.received, 2 * USERS, "every request answered");

    let mut tally: HashMap<Outcome, u64> = HashMap::new();
    let mut packets = HashSet::new();
    let mut first: HashMap<u64, Outcome> = HashMap::new();
    for a in &answers {
        assert_eq!(a.len(), 14 + 20 + 8 + 64, "answer length");
        let user = u64::from_be_bytes(a[50..58].try_into().unwrap());
        let seq = u32::from_be_bytes(a[58..62].try_into().unwrap());
        let r = pending
            .remove(&(user, seq))
            .unwrap_or_else(|| panic!("answer to no request: user {user} seq {seq}"));
        let f = flow(user);
        assert_eq!(a[..6], f.src_mac, "to the client's MAC");
        assert_eq!(a[26..30], f.dst_ip, "from the node");
        assert_eq!(a[30..34], f.src_ip, "to the client");
        assert_eq!(a[34..36], 7000u16.to_be_bytes());
        assert_eq!(a[36..38], f.src_port.to_be_bytes());
        let checked =
            check_answer(&r, &a[42..], &CLAIM_KEY).unwrap_or_else(|e| panic!("user {user}: {e}"));
        *tally.entry(checked.outcome).or_insert(0) += 1;
        if user % BAD_TOKEN_EVERY == 0 {
            assert_eq!(checked.outcome, Outcome::Denied, "user {user}");
            continue;
        }
        match seq {
            1 => {
                assert!(
                    matches!(
                        checked.outcome,
                        Outcome::RedPacket | Outcome::Greeting | Outcome::Nothing
                    ),
                    "user {user}'s first shake: {checked:?}"
                );
                first.insert(user, checked.outcome);
            }
            _ => {
                assert_eq!(checked.outcome, Outcome::Throttled, "user {user} again");
                assert!(checked.retry_after_ms > 0 && checked.retry_after_ms <= 5000);
            }
        }
        if checked.outcome == Outcome::RedPacket {
            assert!(
                packets.insert(checked.packet_id),
                "packet {} twice",
                checked.packet_id
            );
        }
    }
    assert!(pending.is_empty(), "{} requests unanswered", pending.len());
    let red = tally.get(&Outcome::RedPacket).copied().unwrap_or(0);
    assert!(red >= 50, "only {red} red packets in {tally:?}");
    assert!(tally.get(&Outcome::Greeting).copied().unwrap_or(0) > 0);
    assert_eq!(first.len() as u64, USERS - USERS / BAD_TOKEN_EVERY);

    let (status, lines) = app.stop(Duration::from_secs(15));
    assert!(status.success(), "exit {status}");
    let c = final_counters(&lines);
    let get = |k: &str| c.get(k).copied().unwrap_or(0);
    assert_eq!(get("rx"), 2 * USERS + 1, "{c:?}");
    assert_eq!(get("tx"), 2 * USERS + 1, "{c:?}");
    assert_eq!(get("dropped"), 0, "{c:?}");
    // The worker's loop cycles: some passes moved frames, most found nothing.
    assert!(
        get("busy_cycles") > 0 && get("busy_cycles") < get("cycles"),
        "{c:?}"
    );
    let warm_outcome = warm_answer[42 + 4];
    for (o, n) in &tally {
        let warm = u64::from(*o as u8 == warm_outcome);
        assert_eq!(get(o.name()), *n + warm, "{o}: {c:?}");
    }
    eprintln!("memif: {} answers, {tally:?}", answers.len());
}
