//! The node's lifecycle (`shake::node::Lifecycle`) on the DPDK backend, with the node's real
//! processor (engine worker behind the frame layer) on a net_pcap port: a pcap of valid shakes and one junk frame goes in, SIGTERM
//! stops the node cleanly, and every answer in the output pcap verifies as the answer to its
//! request (echoes, outcome rules, claim MACs).
//!
//! One EAL per process, so this file has one test. `--no-pci`, `--no-huge`, its own
//! `--file-prefix`, no device but net_pcap on files in a temporary directory; bounded in
//! time (the stopper thread sends SIGTERM after at most 20 s).
#![cfg(feature = "dpdk")]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::appliance::{
    file_prefix, flow_to_node, read_pcap, request_frame, write_pcap, RuntimeDir,
};
use common::{NodeDir, NodeToml, CLAIM_KEY, TOKEN_KEY};
use shake::client::{check_answer, request};
use shake::dpdk::{self, DpdkBackend, Eal};
use shake::node::{unix_ms, Lifecycle, Node};
use shake::wire::shake::Outcome;

const USERS: u64 = 300;
const ANSWER_LEN: usize = 14 + 20 + 8 + 64;

#[test]
fn serve_answers_a_pcap_and_stops_on_sigterm() {
    let node = NodeDir::with_activity(
        r#"
[activity]
id = 9
name = "dpdk pcap test"
epoch = 0

[[sponsor]]
id = 101
budget_cents = 5000000
packets = 10000
greeting_resources = [1]

[[round]]
id = 1
start_s = 0
duration_s = 600
win_probability = 0.3
greeting_probability = 0.3
"#,
    );
    let p = node.path();
    let prefix = file_prefix("pcap");
    let _runtime_dir = RuntimeDir::new(&prefix);
    let config = NodeToml::new("10.99.0.1", 10_000)
        .activity(r#"epoch = "now""#)
        .interval_s(1)
        .extra(&format!(
            r#"
[dpdk]
lcores = "0-1"
memory_mb = 256
huge = false
file_prefix = "{prefix}"
vdevs = ["net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap"]
log_level = "error"
idle_sleep_us = 50

[[port]]
name = "net_pcap0"
rx_desc = 256
tx_desc = 256
"#
        ))
        .write(p);

    let flow = flow_to_node(
        ([2, 0, 0, 0, 0, 9], [10, 99, 0, 9], 40000),
        ([2, 0, 0, 0, 0, 1], [10, 99, 0, 1]),
    );
    let expiry = (unix_ms() / 1000 + 3600) as u32;
    let requests: HashMap<u64, _> = (1..=USERS)
        .map(|u| (u, request(&TOKEN_KEY, u, u as u32, expiry, u * 1000)))
        .collect();
    let mut frames: Vec<Vec<u8>> = (1..=USERS)
        .map(|u| request_frame(&flow, &requests[&u], u as u16))
        .collect();
    frames.push(vec![0u8; 60]);
    write_pcap(&p.join("in.pcap"), &frames);

    // Stops the node by signal once every answer is out (or after the deadline).
    let out = p.join("out.pcap");
    let out_seen = out.clone();
    let stopper = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && read_pcap(&out_seen).len() < USERS as usize {
            std::thread::sleep(Duration::from_millis(50));
        }
        // SIGTERM to this test process, whose handler (installed by the lifecycle) only sets the
        // stop flag; kill(1), so the tests need no unsafe.
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status();
        assert!(
            sent.as_ref().is_ok_and(|s| s.success()),
            "kill -TERM: {sent:?}"
        );
    });

    let lifecycle = Lifecycle::prepare(Node::load(&config).expect("node config")).unwrap();
    let node_config = lifecycle.node().config.clone();
    let args = dpdk::node_eal_args(&node_config, &["--no-shconf".to_owned()]).unwrap();
    let eal = Eal::init(&args).expect("EAL init");
    let backend = DpdkBackend::open(&eal, &node_config).expect("ports open");
    let total = lifecycle
        .run(backend)
        .expect("the node stops cleanly on SIGTERM");
    stopper.join().unwrap();
    drop(eal);

    assert_eq!(total.rx, USERS + 1);
    assert_eq!(total.tx, USERS);
    assert_eq!(total.answered(), USERS);
    assert_eq!(total.dropped_total(), 1, "{}", total.line());

    let answers = read_pcap(&out);
    assert_eq!(answers.len(), USERS as usize);
    let mut outcomes: HashMap<Outcome, u64> = HashMap::new();
    for a in &answers {
        assert_eq!(a.len(), ANSWER_LEN);
        assert_eq!(a[..6], flow.src_mac, "answer goes back to the client");
        let user = u64::from_be_bytes(a[42 + 8..42 + 16].try_into().unwrap());
        let checked = check_answer(&requests[&user], &a[42..], &CLAIM_KEY)
            .unwrap_or_else(|e| panic!("user {user}: {e}"));
        *outcomes.entry(checked.outcome).or_insert(0) += 1;
    }
    // Red packets are paced over the round's ten minutes, so a burst at its start mostly
    // gets greetings and nothing; every answer verified above either way.
    assert_eq!(outcomes.values().sum::<u64>(), USERS, "{outcomes:?}");
    assert!(outcomes.contains_key(&Outcome::Greeting), "{outcomes:?}");
}
