//! `shake-gen --nodes` against a fleet of three socket nodes on loopback (nodes 0, 1 and 2 of
//! 3): each phone shakes at its own node; phones that first shake at the wrong node follow
//! the REDIRECT to their owner; every answer validated (legal for the node it came from),
//! bounded in count and time.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::process::Command;

use common::{json_u64 as n, run_ok, unix_s, NodeDir, Server};

/// Node `index` of three, one worker, on a port of its own.
fn node(index: u32) -> (NodeDir, Server) {
    let d = NodeDir::new(
        unix_s() - 1800,
        "[[round]]\nid = 1\nstart_s = 0\nduration_s = 3600\nwin_probability = 0.3\ngreeting_probability = 0.3\n",
        3,
        "",
    );
    let config = std::fs::read_to_string(d.config()).unwrap();
    assert!(config.contains("index = 0\n"));
    std::fs::write(
        d.config(),
        config.replacen("index = 0\n", &format!("index = {index}\n"), 1),
    )
    .unwrap();
    let s = Server::start_socket(&d.config(), 1);
    (d, s)
}

fn fleet_gen(fleet: &[(NodeDir, Server)], name: &str, extra: &[&str]) -> serde_json::Value {
    let nodes: Vec<String> = fleet.iter().map(|(_, s)| s.udp.to_string()).collect();
    let report = fleet[0].0.path().join(format!("{name}.json"));
    let stdout = run_ok(
        Command::new(env!("CARGO_BIN_EXE_shake-gen"))
            .args(["--io", "socket", "--quiet"])
            .arg("--nodes")
            .arg(nodes.join(","))
            .arg("--node-config")
            .arg(fleet[0].0.config())
            .arg("--report")
            .arg(&report)
            .args(extra),
    );
    assert!(
        stdout.contains("gen: done") && stdout.contains("nodes=3"),
        "{stdout}"
    );
    serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap()
}

/// What each node answered, by outcome, from its own counters (SHAKE/1 answers TX took).
fn answered(s: &Server, outcome: &str) -> u64 {
    s.metric("shake_answers_total", &format!("outcome=\"{outcome}\""))
}

#[test]
fn phones_shake_at_their_own_node_and_follow_redirects() {
    let fleet: Vec<(NodeDir, Server)> = (0..3).map(node).collect();

    // (i) Every phone at its owner: no REDIRECT anywhere, every node serves its third.
    let r = fleet_gen(
        &fleet,
        "owners",
        &[
            "--users",
            "600",
            "--bad-share",
            "0.05",
            "--rate",
            "5000",
            "--count",
            "1800",
            "--duration",
            "10",
        ],
    );
    assert_eq!(n(&r, &["tally", "sent"]), 1_800);
    assert_eq!(n(&r, &["tally", "invalid"]), 0, "{r}");
    assert_eq!(n(&r, &["tally", "unmatched"]), 0, "{r}");
    assert!(n(&r, &["tally", "answered"]) >= 1_700, "{r}");
    assert_eq!(n(&r, &["outcomes", "redirect"]), 0, "{r}");
    assert_eq!(n(&r, &["tally", "redirects_followed"]), 0);
    assert!(
        n(&r, &["outcomes", "denied"]) > 0,
        "bad tokens are denied too: {r}"
    );
    let by_node: Vec<u64> = r["sent_by_node"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(
        by_node,
        [600, 600, 600],
        "users belong to every node in turn"
    );
    // Every node answered with its config_version (nodes on their own: from the clock).
    let versions = r["config_version_by_node"].as_array().unwrap();
    assert_eq!(versions.len(), 3, "{r}");
    assert!(versions.iter().all(|v| v.as_u64().unwrap() > 0), "{r}");
    let served = |s: &Server| {
        ["nothing", "greeting", "red_packet", "throttled"]
            .iter()
            .map(|o| answered(s, o))
            .sum::<u64>()
    };
    let served_before: Vec<u64> = fleet.iter().map(|(_, s)| served(s)).collect();
    for (i, (_, s)) in fleet.iter().enumerate() {
        assert_eq!(answered(s, "redirect"), 0, "node {i} redirected a phone");
        assert!(served_before[i] > 0, "node {i} served nobody");
    }

    // (ii) Every phone first at a node that is not its own: each follows the REDIRECT it
    // gets there once, and its later shakes are served by its owner. Other users (offset),
    // so nobody is still throttled from (i).
    let r = fleet_gen(
        &fleet,
        "redirected",
        &[
            "--users",
            "600",
            "--user-offset",
            "10000",
            "--foreign-share",
            "1.0",
            "--rate",
            "5000",
            "--count",
            "1800",
            "--duration",
            "10",
        ],
    );
    assert_eq!(n(&r, &["tally", "invalid"]), 0, "{r}");
    assert_eq!(n(&r, &["tally", "unmatched"]), 0, "{r}");
    assert_eq!(n(&r, &["users_foreign"]), 600);
    // Each phone moved once, to its owner (it moves only on a legal REDIRECT, which names
    // the owner, and only when that is not where it already shakes).
    assert_eq!(n(&r, &["tally", "redirects_followed"]), 600, "{r}");
    let redirects = n(&r, &["outcomes", "redirect"]);
    assert!(redirects >= 600, "{r}");
    let served_at_owners = n(&r, &["tally", "answered"]) - redirects;
    assert!(
        served_at_owners >= 1_100,
        "the later shakes are served at the owners: {r}"
    );
    // The nodes saw the same: every REDIRECT the generator got, one was sent (ones lost on
    // loopback aside), and each node served phones after redirecting others.
    let node_redirects: u64 = fleet.iter().map(|(_, s)| answered(s, "redirect")).sum();
    assert!(
        node_redirects >= redirects,
        "{node_redirects} < {redirects}"
    );
    for (i, (_, s)) in fleet.iter().enumerate() {
        assert!(answered(s, "redirect") > 0, "node {i}");
        assert!(
            served(s) > served_before[i],
            "node {i} served no redirected phone"
        );
    }

    for (_, s) in fleet {
        let (status, _) = s.stop();
        assert!(status.success());
    }
}
