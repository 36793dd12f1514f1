//! `shake-gen` in socket mode against `shake serve --io socket` on loopback: bounded in
//! count and time, every answer validated, outcomes counted, and the JSON report says so.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use common::{json_u64 as n, run_ok, unix_s, NodeDir, Server};
use shake::wire::shake::Outcome;

fn gen(
    node: &NodeDir,
    name: &str,
    server: std::net::SocketAddr,
    extra: &[&str],
) -> serde_json::Value {
    let report = node.path().join(format!("{name}.json"));
    let stdout = run_ok(
        Command::new(env!("CARGO_BIN_EXE_shake-gen"))
            .args(["--io", "socket", "--quiet"])
            .arg("--server")
            .arg(server.to_string())
            .arg("--node-config")
            .arg(node.config())
            .arg("--report")
            .arg(&report)
            .args(extra),
    );
    assert!(stdout.contains("gen: done"), "{stdout}");
    serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap()
}

#[test]
fn gen_socket_mode_validates_and_counts_every_answer() {
    // Two nodes: users of node 1 get REDIRECT; bad tokens get DENIED.
    let node = NodeDir::new(
        unix_s(),
        "[[round]]\nid = 1\nstart_s = 0\nduration_s = 3600\nwin_probability = 0.3\ngreeting_probability = 0.3\n",
        2,
        "",
    );
    let server = Server::start_socket(&node.config(), 2);
    let pcap = node.path().join("requests.pcap");

    // Paced well below loopback's capacity, bounded by count and time.
    let r = gen(
        &node,
        "paced",
        server.udp,
        &[
            "--users",
            "3000",
            "--bad-share",
            "0.05",
            "--foreign-share",
            "0.1",
            // Half of what a debug build of the server answers on a busy 2-vCPU machine.
            "--rate",
            "10000",
            "--count",
            "20000",
            "--duration",
            "10",
            "--pcap-out",
            pcap.to_str().unwrap(),
        ],
    );
    assert_eq!(n(&r, &["tally", "sent"]), 20_000);
    assert_eq!(n(&r, &["tally", "invalid"]), 0, "{r}");
    assert_eq!(n(&r, &["tally", "unmatched"]), 0);
    let answered = n(&r, &["tally", "answered"]);
    assert!(answered >= 19_000, "answered {answered} of 20000: {r}");
    let o = |k: &str| n(&r, &["outcomes", k]);
    let sum: u64 = Outcome::ALL.iter().map(|k| o(k.name())).sum();
    assert_eq!(sum, answered, "every answer is counted by outcome");
    assert!(o("denied") > 0 && o("redirect") > 0, "{r}");
    assert!(o("red_packet") + o("greeting") + o("nothing") > 0, "{r}");
    assert!(n(&r, &["latency_ns", "count"]) == answered);
    assert!(n(&r, &["latency_ns", "p99"]) >= n(&r, &["latency_ns", "p50"]));
    assert!(r["users_bad_token"].as_u64().unwrap() > 0);
    // The request stream as a pcap: 24 bytes of header, then 16 + 106 per request.
    let len = std::fs::metadata(&pcap).unwrap().len();
    assert_eq!(len, 24 + 20_000 * (16 + 14 + 20 + 8 + 64));

    // Phones that obey retry_after_ms: each user shakes once, then waits (the node's
    // floor is seconds), so nearly nothing is THROTTLED.
    let r = gen(
        &node,
        "obey",
        server.udp,
        &[
            "--users",
            "2000",
            "--user-offset",
            "100000",
            "--obey-retry",
            "--rate",
            "50000",
            "--duration",
            "1.5",
        ],
    );
    assert_eq!(n(&r, &["tally", "invalid"]), 0, "{r}");
    let sent = n(&r, &["tally", "sent"]);
    assert!((1_900..=2_000).contains(&sent), "each user once: {sent}");
    assert!(n(&r, &["outcomes", "throttled"]) * 10 < sent, "{r}");

    let (status, _) = server.stop();
    assert!(status.success());
}

#[test]
fn gen_socket_mode_plays_ipv6_phones_beside_ipv4_ones() {
    // The node's IPv6 address is a documentation one; it serves on [::1] (and bind6 says
    // so, so nothing defaults to an address off this host).
    let node = NodeDir::new(
        unix_s(),
        "[[round]]\nid = 1\nstart_s = 0\nduration_s = 3600\nwin_probability = 0.3\ngreeting_probability = 0.3\n",
        2,
        "\n[socket]\nbind6 = \"[::1]:0\"\n",
    );
    let text = std::fs::read_to_string(node.config()).unwrap();
    let ipv4 = "ipv4 = \"127.0.0.1\"";
    assert!(text.contains(ipv4));
    std::fs::write(
        node.config(),
        text.replacen(ipv4, &format!("{ipv4}\nipv6 = \"2001:db8::1\""), 1),
    )
    .unwrap();
    let server = Server::start_socket6(&node.config(), 2);
    let udp6 = server.udp6.unwrap().to_string();
    let pcap = node.path().join("requests.pcap");

    // Half the phones over IPv6, paced and bounded; both workers (handoffs), REDIRECT and
    // DENIED over both families.
    let r = gen(
        &node,
        "mixed",
        server.udp,
        &[
            "--server6",
            &udp6,
            "--ipv6-share",
            "0.5",
            "--users",
            "2000",
            "--bad-share",
            "0.05",
            "--foreign-share",
            "0.1",
            "--rate",
            "10000",
            "--count",
            "8000",
            "--duration",
            "10",
            "--pcap-out",
            pcap.to_str().unwrap(),
        ],
    );
    assert_eq!(n(&r, &["tally", "sent"]), 8_000);
    assert_eq!(n(&r, &["tally", "invalid"]), 0, "{r}");
    assert_eq!(n(&r, &["tally", "unmatched"]), 0, "{r}");
    let f = |family: &str, k: &str| n(&r, &["families", family, k]);
    assert_eq!(f("ipv4", "sent") + f("ipv6", "sent"), 8_000);
    assert_eq!(
        f("ipv4", "answered") + f("ipv6", "answered"),
        n(&r, &["tally", "answered"])
    );
    let users6 = n(&r, &["users_ipv6"]);
    assert!((800..1_200).contains(&users6), "{users6} of 2000 users");
    for family in ["ipv4", "ipv6"] {
        let (sent, answered) = (f(family, "sent"), f(family, "answered"));
        assert!(sent > 3_000, "{family}: {sent} sent: {r}");
        assert!(
            answered * 100 >= sent * 95,
            "{family}: {answered} of {sent}: {r}"
        );
        assert_eq!(f(family, "invalid"), 0);
    }
    let o = |k: &str| n(&r, &["outcomes", k]);
    assert!(o("denied") > 0 && o("redirect") > 0, "{r}");
    assert!(o("red_packet") + o("greeting") + o("nothing") > 0, "{r}");
    assert!(
        r["meta"]["target"].as_str().unwrap().contains("udp6"),
        "{r}"
    );
    // The request stream: each family's frames, to the address its requests went to.
    let (v4, v6) = pcap_families(&pcap, server.udp, server.udp6.unwrap());
    assert_eq!((v4, v6), (f("ipv4", "sent"), f("ipv6", "sent")));

    // Every phone over IPv6.
    let r = gen(
        &node,
        "all6",
        server.udp,
        &[
            "--server6",
            &udp6,
            "--ipv6-share",
            "1",
            "--users",
            "500",
            "--user-offset",
            "100000",
            "--rate",
            "10000",
            "--count",
            "1000",
        ],
    );
    assert_eq!(n(&r, &["families", "ipv6", "sent"]), 1_000, "{r}");
    assert_eq!(n(&r, &["families", "ipv4", "sent"]), 0, "{r}");
    assert_eq!(n(&r, &["tally", "invalid"]), 0, "{r}");
    assert!(n(&r, &["families", "ipv6", "answered"]) >= 950, "{r}");

    let (status, _) = server.stop();
    assert!(status.success());
}

#[test]
fn gen_ipv6_phones_need_the_nodes_ipv6_address() {
    let node = NodeDir::new(
        unix_s(),
        "[[round]]\nid = 1\nstart_s = 0\nduration_s = 3600\nwin_probability = 0.3\n",
        1,
        "",
    );
    // No node.ipv6 in the config and no --server6: refused before anything is sent.
    let out = Command::new(env!("CARGO_BIN_EXE_shake-gen"))
        .args(["--io", "socket", "--quiet", "--server", "127.0.0.1:9"])
        .args(["--ipv6-share", "0.5", "--count", "10", "--node-config"])
        .arg(node.config())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--server6") && err.contains("node.ipv6"),
        "{err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_shake-gen"))
        .args(["--io", "socket", "--quiet", "--server", "127.0.0.1:9"])
        .args(["--ipv6-share", "1.5", "--count", "10", "--node-config"])
        .arg(node.config())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ipv6-share 1.5"));
}

/// Counts the IPv4 and IPv6 request frames of a pcap the generator wrote, each checked (its
/// checksums, the SHAKE/1 payload, and its destination: `to4` or `to6`).
fn pcap_families(path: &Path, to4: SocketAddr, to6: SocketAddr) -> (u64, u64) {
    use shake::wire::{Datagram, Datagram6};
    let data = std::fs::read(path).unwrap();
    let (mut v4, mut v6, mut at) = (0, 0, 24);
    while at + 16 <= data.len() {
        let len = u32::from_le_bytes(data[at + 8..at + 12].try_into().unwrap()) as usize;
        let frame = &data[at + 16..at + 16 + len];
        at += 16 + len;
        if let Ok(d) = Datagram::parse_verified(frame) {
            assert_eq!(SocketAddr::from((d.dst_ip, d.dst_port)), to4);
            assert_eq!(d.payload().len(), 64);
            v4 += 1;
        } else {
            let d = Datagram6::parse_verified(frame).expect("an IPv4 or IPv6 request");
            assert_eq!(SocketAddr::from((d.dst_ip, d.dst_port)), to6);
            assert_eq!(d.payload().len(), 64);
            v6 += 1;
        }
    }
    assert_eq!(at, data.len(), "whole records");
    (v4, v6)
}

#[test]
fn gen_pcap_mode_writes_ipv6_frames_beside_ipv4_ones() {
    let node = NodeDir::new(
        unix_s(),
        "[[round]]\nid = 1\nstart_s = 0\nduration_s = 3600\nwin_probability = 0.3\n",
        1,
        "",
    );
    let pcap = node.path().join("requests.pcap");
    let stdout = run_ok(
        Command::new(env!("CARGO_BIN_EXE_shake-gen"))
            .args([
                "--io", "none", "--quiet", "--count", "1000", "--users", "500",
            ])
            .args(["--ipv6-share", "0.3", "--node-addr", "10.99.0.1:7000"])
            .args(["--node-addr6", "[2001:db8::1]:7000", "--pcap-out"])
            .arg(&pcap)
            .arg("--node-config")
            .arg(node.config()),
    );
    assert!(stdout.contains("gen: done"), "{stdout}");
    let (v4, v6) = pcap_families(
        &pcap,
        "10.99.0.1:7000".parse().unwrap(),
        "[2001:db8::1]:7000".parse().unwrap(),
    );
    assert_eq!(v4 + v6, 1000);
    assert!((200..400).contains(&v6), "{v6} of 1000 over IPv6");
    // Without the node's IPv6 address (none in the config), refused.
    let out = Command::new(env!("CARGO_BIN_EXE_shake-gen"))
        .args([
            "--io",
            "none",
            "--quiet",
            "--count",
            "10",
            "--ipv6-share",
            "0.3",
        ])
        .arg("--pcap-out")
        .arg(&pcap)
        .arg("--node-config")
        .arg(node.config())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--node-addr6"));
}

/// The night in miniature, as `make demo` tells it (bench/demo.sh): phones that obey
/// retry_after_ms get CLOSED before the opening and come back at it, and a live change
/// (SIGHUP) shows in the answers. Bounded: the node's waits have deadlines, and the
/// generator stops on SIGINT once the change has been answered (or after 30 s at most).
#[test]
fn gen_socket_mode_tells_the_countdown_the_opening_and_a_live_change() {
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    // The round opens at a whole second 3 to 4 s after the node binary is there (it may have
    // to be built first); nothing is won, nobody greeted (the change below greets
    // everyone). CLOSED says to come back in at most 500 ms; in the round, every 200 ms.
    common::shake_bin();
    let open_s = unix_s() + 4;
    let node = NodeDir::new(
        open_s,
        "[[round]]\nid = 1\nstart_s = 0\nduration_s = 3600\nwin_probability = 0.0\ngreeting_probability = 0.0\n",
        1,
        "\n[throttle]\nfloor_ms = 200\nclosed_cap_ms = 500\n",
    );
    let server = Server::start_socket(&node.config(), 1);
    let report = node.path().join("night.json");
    let gen = Command::new(env!("CARGO_BIN_EXE_shake-gen"))
        .args(["--io", "socket", "--quiet", "--server"])
        .arg(server.udp.to_string())
        .arg("--node-config")
        .arg(node.config())
        .args(["--users", "500", "--obey-retry", "--rate", "20000"])
        .args(["--duration", "30", "--opening-unix-ms"])
        .arg((open_s * 1000).to_string())
        .arg("--report")
        .arg(&report)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let wait = |what: &str, limit: Duration, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + limit;
        while !done() {
            assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let answers = |o: &str| server.metric("shake_answers_total", &format!("outcome=\"{o}\""));
    wait("the opening", Duration::from_secs(15), &|| {
        answers("nothing") > 0
    });
    let activity = node.path().join("activity.toml");
    let text = std::fs::read_to_string(&activity).unwrap();
    let greet = text.replace("greeting_probability = 0.0", "greeting_probability = 1.0");
    assert_ne!(text, greet);
    std::fs::write(&activity, greet).unwrap();
    server.signal(1);
    wait("the reload", Duration::from_secs(10), &|| {
        server.metric("shake_reloads_total", "result=\"applied\"") == 1
    });
    wait(
        "the phones on the new config",
        Duration::from_secs(10),
        &|| answers("greeting") > 100,
    );
    let _ = Command::new("kill")
        .args(["-INT", &gen.id().to_string()])
        .status();
    let out = gen.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let (status, _) = server.stop();
    assert!(status.success());

    assert_eq!(n(&r, &["tally", "invalid"]), 0, "{r}");
    assert_eq!(n(&r, &["opening_unix_ms"]), open_s * 1000);
    // Per second from the opening: before it only CLOSED, and some; from it, the round.
    let at = |s: &serde_json::Value, o: Outcome| s["outcomes"][o as usize].as_u64().unwrap();
    let seconds = r["seconds"].as_array().unwrap();
    let t = |s: &serde_json::Value| s["t_s"].as_i64().unwrap();
    let answered = |s: &serde_json::Value| Outcome::ALL.iter().map(|&o| at(s, o)).sum::<u64>();
    let (before, after): (Vec<_>, Vec<_>) = seconds.iter().partition(|s| t(s) < 0);
    assert!(
        before.iter().map(|s| at(s, Outcome::Closed)).sum::<u64>() >= 500,
        "{r}"
    );
    for s in &before {
        assert_eq!(
            at(s, Outcome::Closed),
            answered(s),
            "only CLOSED before the opening: {s}"
        );
    }
    // Told the time to the opening, the phones came back at it: all of them within its
    // first second, and none too soon (the retry rule: never THROTTLED).
    assert!(after[0]["t_s"] == 0 && answered(after[0]) >= 500, "{r}");
    assert_eq!(n(&r, &["outcomes", "throttled"]), 0, "{r}");
    // The phones saw round 1 open then, and not close.
    let marks = r["round_marks"].as_array().unwrap();
    assert_eq!(marks.len(), 1, "{r}");
    assert!(
        marks[0]["opens"] == true && marks[0]["round_id"] == 1,
        "{r}"
    );
    assert!(
        (0.0..0.5).contains(&marks[0]["t_s"].as_f64().unwrap()),
        "{r}"
    );
    // The change: seen once, after the opening; before it nobody was greeted, after it
    // everybody.
    let changes = r["config_changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{r}");
    let change_s = changes[0]["t_s"].as_f64().unwrap();
    assert!(change_s > 0.0, "{r}");
    for s in &after {
        if (t(s) + 1) as f64 <= change_s {
            assert_eq!(at(s, Outcome::Greeting), 0, "{s}");
        }
        if t(s) as f64 > change_s {
            assert_eq!(at(s, Outcome::Nothing), 0, "{s}");
        }
    }
    assert!(n(&r, &["outcomes", "greeting"]) > 100, "{r}");
}
