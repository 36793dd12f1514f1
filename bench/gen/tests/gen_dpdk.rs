//! `shake-gen --io dpdk` against `shake serve --io dpdk` over net_memif: two DPDK processes
//! besides this test, the generator the memif client. Every answer the generator validated
//! must be one the appliance sent, outcome by outcome, and its report must say so: nothing
//! invalid, nothing unmatched, every request sent either answered or counted lost.
//!
//! Safe on a shared machine: `--no-pci --no-huge --no-shconf`, a `--file-prefix` per
//! process, a memif socket in the test's directory, bounded in count and time.
#![cfg(feature = "dpdk")]

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use common::appliance::{
    file_prefix, final_counters, memif_server_sections, Appliance, RuntimeDir,
};
use common::{json_u64 as n, run_ok, unix_s, NodeDir, NodeToml};
use shake::wire::shake::Outcome;

const SENT: u64 = 60_000;

/// A node on DPDK (a memif server port, one worker lcore; with `ipv6`, dual stack) and
/// `shake-gen --io dpdk` against it with `gen_args`, `count` requests at most, 20 s at most;
/// returns the generator's report and the appliance's final counters after a clean stop.
fn run_against_the_appliance(
    name: &str,
    ipv6: Option<&str>,
    gen_args: &[&str],
    count: u64,
) -> (serde_json::Value, HashMap<String, u64>) {
    let node = NodeDir::new(
        unix_s(),
        "[[round]]\nid = 1\nstart_s = 0\nduration_s = 3600\nwin_probability = 0.3\ngreeting_probability = 0.3\n",
        1,
        "",
    );
    let p = node.path();
    let prefix = file_prefix(&format!("{name}-node"));
    let socket = p.join("node.memif");
    let text = NodeToml::new("10.99.4.1", 100_000)
        .port(7000)
        .extra(&memif_server_sections(&prefix, &socket))
        .text();
    let ipv4 = "ipv4 = \"10.99.4.1\"";
    assert!(text.contains(ipv4));
    let with_v6 = ipv6.map(|a| format!("{ipv4}\nipv6 = \"{a}\""));
    std::fs::write(
        node.config(),
        text.replacen(ipv4, with_v6.as_deref().unwrap_or(ipv4), 1),
    )
    .unwrap();
    let app = Appliance::start(&node.config(), &prefix, None, false);

    let gen_prefix = file_prefix(&format!("{name}-gen"));
    let _gen_runtime = RuntimeDir::new(&gen_prefix);
    let report = p.join("gen.json");
    run_ok(
        Command::new(env!("CARGO_BIN_EXE_shake-gen"))
            .args(["--io", "dpdk", "--quiet", "--node-config"])
            .arg(node.config())
            .args(gen_args)
            .args([
                "--count",
                &count.to_string(),
                "--duration",
                "20",
                "--report",
            ])
            .arg(&report)
            .args(["--", "--no-pci", "--no-huge", "-m", "256", "--no-shconf"])
            .args([
                "--file-prefix",
                &gen_prefix,
                "--lcores",
                "0@0",
                "--log-level",
                "error",
            ])
            .arg(format!(
                "--vdev=net_memif0,role=client,id=0,socket={}",
                socket.display()
            )),
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let (status, lines) = app.stop(Duration::from_secs(15));
    assert!(status.success(), "appliance exit {status}");
    (r, final_counters(&lines))
}

#[test]
fn gen_dpdk_mode_over_memif_agrees_with_the_appliance() {
    let (r, c) = run_against_the_appliance(
        "gen-dpdk",
        None,
        &["--users", "5000", "--bad-share", "0.02", "--rate", "200000"],
        SENT,
    );
    let get = |k: &str| c.get(k).copied().unwrap_or(0);

    // The generator's tally.
    let sent = n(&r, &["tally", "sent"]);
    let answered = n(&r, &["tally", "answered"]);
    assert_eq!(sent, SENT, "{r}");
    assert_eq!(n(&r, &["tally", "invalid"]), 0, "{r}");
    assert_eq!(n(&r, &["tally", "unmatched"]), 0, "{r}");
    assert_eq!(n(&r, &["tally", "rx_bad_checksum"]), 0, "{r}");
    assert_eq!(answered + n(&r, &["lost"]), sent, "{r}");
    assert_eq!(n(&r, &["latency_ns", "count"]), answered);
    let timeline: u64 = r["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| n(s, &["answered"]))
        .sum();
    assert_eq!(timeline, answered, "the timeline adds up: {r}");
    // So does the report per whole second (from the start: no opening was given), outcome
    // by outcome, and the money in it to the cent.
    let seconds = r["seconds"].as_array().unwrap();
    assert_eq!(n(&seconds[0], &["t_s"]), 0, "{r}");
    for (i, o) in Outcome::ALL.iter().enumerate() {
        let by_second: u64 = seconds
            .iter()
            .map(|s| s["outcomes"][i].as_u64().unwrap())
            .sum();
        assert_eq!(by_second, n(&r, &["outcomes", o.name()]), "{o:?}: {r}");
    }
    let cents: u64 = seconds.iter().map(|s| n(s, &["cents"])).sum();
    assert_eq!(cents, n(&r, &["tally", "cents"]), "{r}");
    assert_eq!(cents > 0, n(&r, &["outcomes", "red_packet"]) > 0, "{r}");

    // ...against the appliance's counters: it received every request sent, and the
    // generator validated every answer the appliance transmitted, outcome by outcome.
    assert_eq!(get("rx"), sent, "{c:?}");
    assert_eq!(get("tx"), answered, "{c:?}");
    let mut gen_total = 0;
    for o in Outcome::ALL.map(|o| o.name()) {
        let g = n(&r, &["outcomes", o]);
        assert!(g <= get(o), "{o}: generator {g}, appliance {}", get(o));
        gen_total += g;
    }
    assert_eq!(gen_total, answered);
    // `answered` counts what left (an answer TX did not take is a drop, not an answer), and
    // every frame received is accounted for once.
    assert_eq!(get("answered"), gen_total, "{c:?}");
    assert_eq!(get("rx"), get("tx") + get("dropped"), "{c:?}");
    assert!(n(&r, &["outcomes", "denied"]) > 0, "bad tokens: {r}");
    assert!(
        n(&r, &["outcomes", "red_packet"]) + n(&r, &["outcomes", "greeting"]) > 0,
        "{r}"
    );
}

#[test]
fn gen_dpdk_mode_plays_ipv6_phones_beside_ipv4_ones() {
    // The node serves IPv6 at a documentation address; the generator takes it from the
    // config and sends those frames to the node's MAC, as it does IPv4 ones.
    const SENT6: u64 = 20_000;
    let (r, c) = run_against_the_appliance(
        "gen-dpdk6",
        Some("2001:db8:4::1"),
        &[
            "--users",
            "3000",
            "--bad-share",
            "0.02",
            "--ipv6-share",
            "0.5",
            "--rate",
            "100000",
        ],
        SENT6,
    );
    let get = |k: &str| c.get(k).copied().unwrap_or(0);

    let sent = n(&r, &["tally", "sent"]);
    let answered = n(&r, &["tally", "answered"]);
    assert_eq!(sent, SENT6, "{r}");
    for k in ["invalid", "unmatched", "rx_bad_checksum", "rx_other"] {
        assert_eq!(n(&r, &["tally", k]), 0, "{k}: {r}");
    }
    assert_eq!(answered + n(&r, &["lost"]), sent, "{r}");
    let f = |family: &str, k: &str| n(&r, &["families", family, k]);
    assert_eq!(f("ipv4", "sent") + f("ipv6", "sent"), sent);
    assert_eq!(f("ipv4", "answered") + f("ipv6", "answered"), answered);
    for family in ["ipv4", "ipv6"] {
        let (s, a) = (f(family, "sent"), f(family, "answered"));
        assert!(s > SENT6 / 3, "{family}: {s} sent: {r}");
        assert!(a * 100 >= s * 95, "{family}: {a} of {s} answered: {r}");
    }
    assert!(r["meta"]["target"]
        .as_str()
        .unwrap()
        .contains("[2001:db8:4::1]:7000"));
    // Every request reached the node, and every answer it sent was validated.
    assert_eq!(get("rx"), sent, "{c:?}");
    assert_eq!(get("tx"), answered, "{c:?}");
    assert_eq!(get("rx"), get("tx") + get("dropped"), "{c:?}");
}
