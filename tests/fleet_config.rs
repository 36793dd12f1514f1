//! A fleet's live config on a real etcd (Debian's `etcd`, started by the test on loopback):
//! a push reaches and is applied by every node; serving never stops while etcd is away and
//! every node catches up when it is back; invalid and stale pushes are refused; a node that
//! dies leaves the registry; and a push under load loses no answer and never moves an
//! answer's config_version backwards.
#![cfg(feature = "fleet")]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::engines::Engine;
use common::{run_ok, shake_bin, unix_s, NodeDir, NodeToml, Server, CLAIM_KEY, TOKEN_KEY};
use shake::client;
use shake::wire::shake::{Outcome, ShakeAnswerRepr, ShakeRequestRepr};

/// Longest wait for anything the fleet does (a push applied, a lease run out).
const WITHIN: Duration = Duration::from_secs(20);

fn activity(epoch: u64) -> String {
    format!(
        r#"
[activity]
id = 21
name = "fleet test"
epoch = {epoch}

[[sponsor]]
id = 101
budget_cents = 5000000
packets = 10000
greeting_resources = [1]

[[round]]
id = 1
start_s = 0
duration_s = 600
win_probability = 0.2
greeting_probability = 0.3
"#
    )
}

/// A live document: the activity with a countdown calibration.
fn document(dir: &Path, name: &str, epoch: u64, calibration_ms: i64) -> PathBuf {
    let path = dir.join(name);
    let text = activity(epoch) + &format!("\n[live]\ncalibration_ms = {calibration_ms}\n");
    std::fs::write(&path, text).unwrap();
    path
}

/// One node of an `n`-node fleet: its directory and config (a journal directory keeps its
/// last applied document).
fn node_dir(etcd: &str, epoch: u64, index: u32, n: u32) -> NodeDir {
    let d = NodeDir::with_activity(&activity(epoch));
    NodeToml::new("127.0.0.1", 100_000)
        .index(index)
        .count(n)
        .port(0)
        .prometheus()
        .activity(r#"journal = "journal""#)
        .extra(&format!("\n[fleet]\nname = \"t\"\netcd = [\"{etcd}\"]\n"))
        .write(d.path());
    d
}

struct Fleet {
    etcd: Engine,
    epoch: u64,
    dirs: Vec<NodeDir>,
    nodes: Vec<Server>,
}

impl Fleet {
    fn start(n: u32) -> Fleet {
        let etcd = Engine::etcd();
        let epoch = unix_s();
        let dirs: Vec<NodeDir> = (0..n).map(|i| node_dir(&etcd.url(), epoch, i, n)).collect();
        let nodes = dirs
            .iter()
            .map(|d| Server::start_socket_with(&d.config(), Some(1)))
            .collect();
        Fleet {
            etcd,
            epoch,
            dirs,
            nodes,
        }
    }

    fn shake(&self) -> Command {
        let mut c = Command::new(shake_bin());
        c.arg("fleet");
        c
    }

    /// `shake fleet push` of a document with this calibration; returns the revision.
    fn push(&self, calibration_ms: i64) -> u32 {
        let doc = document(
            self.dirs[0].path(),
            &format!("push{calibration_ms}.toml"),
            self.epoch,
            calibration_ms,
        );
        let out = run_ok(
            self.shake()
                .arg("push")
                .arg("--config")
                .arg(self.dirs[0].config())
                .arg(&doc),
        );
        // "shake: pushed F as revision R of KEY ..."
        out.split("as revision ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no revision in {out:?}"))
    }

    fn status(&self) -> serde_json::Value {
        let out = Command::new(shake_bin())
            .args(["fleet", "status", "--json", "--config"])
            .arg(self.dirs[0].config())
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// Waits until every running node's metrics say `version`.
    fn wait_applied(&self, version: u32) {
        let deadline = Instant::now() + WITHIN;
        for (i, n) in self.nodes.iter().enumerate() {
            while metric(n, "shake_config_version ") != version as f64 {
                assert!(
                    Instant::now() < deadline,
                    "node {i} has not applied revision {version}: {}",
                    n.metrics()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// A gauge or counter without labels.
fn metric(n: &Server, name: &str) -> f64 {
    n.metrics()
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(-1.0)
}

fn expiry() -> u32 {
    (unix_s() + 3600) as u32
}

/// One request and its checked answer.
fn ask(s: &UdpSocket, server: SocketAddr, r: &ShakeRequestRepr) -> ShakeAnswerRepr {
    s.send_to(&client::payload(r), server).unwrap();
    let mut buf = [0u8; 128];
    let (n, _) = s.recv_from(&mut buf).expect("an answer");
    client::check_answer(r, &buf[..n], &CLAIM_KEY).unwrap()
}

fn client_socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

#[test]
fn a_push_reaches_and_is_applied_by_every_node_of_an_eight_node_fleet() {
    let f = Fleet::start(8);
    let r1 = f.push(0);
    f.wait_applied(r1);
    let r2 = f.push(-1500);
    assert!(r2 > r1, "revisions grow: {r1} then {r2}");
    f.wait_applied(r2);
    // The registry agrees, with the time from the push to each node's apply.
    let st = f.status();
    assert_eq!(st["revision"].as_u64(), Some(r2 as u64), "{st}");
    assert_eq!(st["missing"].as_array().unwrap().len(), 0, "{st}");
    let nodes = st["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 8);
    for n in nodes {
        assert_eq!(n["registration"]["revision"].as_u64(), Some(r2 as u64));
        assert!(n["push_to_applied_ms"].as_u64().is_some(), "{n}");
    }
    // Prometheus file-SD targets from the registry: every node's metrics endpoint, by index.
    let sd = f.dirs[0].path().join("targets");
    run_ok(
        f.shake()
            .args(["status", "--config"])
            .arg(f.dirs[0].config())
            .arg("--prometheus-sd")
            .arg(&sd),
    );
    let groups: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sd.join("nodes/t.json")).unwrap()).unwrap();
    let groups = groups.as_array().unwrap();
    assert_eq!(groups.len(), 8);
    for (i, g) in groups.iter().enumerate() {
        assert_eq!(g["labels"]["node"], i.to_string());
        assert_eq!(
            g["targets"][0].as_str().unwrap(),
            f.nodes[i].metrics.unwrap().to_string()
        );
    }
    // Every node answers with the new version; a phone on another node's user is
    // redirected, also under the new version.
    let s = client_socket();
    for (i, n) in f.nodes.iter().enumerate() {
        // User 1024 + i is node i's (user_id mod 8).
        let user = 1024 + i as u64;
        let a = ask(
            &s,
            n.udp,
            &client::request(&TOKEN_KEY, user, 1, expiry(), 0),
        );
        assert_eq!(a.config_version, r2, "node {i}");
        let a = ask(
            &s,
            n.udp,
            &client::request(&TOKEN_KEY, user + 1, 1, expiry(), 0),
        );
        assert_eq!(a.outcome, Outcome::Redirect, "node {i}");
        assert_eq!(a.config_version, r2, "node {i}");
    }
}

#[test]
fn serving_never_stops_while_etcd_is_away_and_every_node_catches_up() {
    let mut f = Fleet::start(2);
    let r1 = f.push(0);
    f.wait_applied(r1);
    f.etcd.kill();
    let s = client_socket();
    let deadline = Instant::now() + WITHIN;
    for n in &f.nodes {
        while metric(n, "shake_fleet_etcd_connected ") != 0.0 {
            assert!(Instant::now() < deadline, "{}", n.metrics());
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // etcd is away: both nodes answer, on the last revision.
    for (i, n) in f.nodes.iter().enumerate() {
        let a = ask(
            &s,
            n.udp,
            &client::request(&TOKEN_KEY, 2000 + i as u64, 1, expiry(), 0),
        );
        assert_eq!(a.config_version, r1, "node {i}");
        assert!(metric(n, "shake_fleet_config_lag_seconds ") >= 0.0);
    }
    // A node restarted meanwhile starts on what it applied last, without etcd.
    let restarted = f.nodes.pop().unwrap();
    assert!(restarted.stop().0.success());
    let n1 = Server::start_socket_with(&f.dirs[1].config(), Some(1));
    assert_eq!(metric(&n1, "shake_config_version "), r1 as f64);
    f.nodes.push(n1);
    // etcd back: a push reaches both, the restarted one included.
    f.etcd.start_again();
    let r2 = f.push(700);
    f.wait_applied(r2);
    for n in &f.nodes {
        assert_eq!(metric(n, "shake_fleet_etcd_connected "), 1.0);
        assert!(metric(n, "shake_fleet_etcd_errors_total ") >= 1.0);
    }
}

#[test]
fn invalid_and_stale_pushes_are_refused_and_nodes_keep_their_config() {
    let f = Fleet::start(1);
    let r1 = f.push(0);
    f.wait_applied(r1);
    let dir = f.dirs[0].path();
    let push = |doc: &Path, extra: &[&str]| {
        f.shake()
            .arg("push")
            .arg("--config")
            .arg(f.dirs[0].config())
            .args(extra)
            .arg(doc)
            .output()
            .unwrap()
    };
    // An invalid document: the error names its file, line and key; nothing is published.
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        activity(f.epoch).replace("win_probability = 0.2", "win_probability = 2.0"),
    )
    .unwrap();
    let out = push(&bad, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("bad.toml:") && err.contains("round[0].win_probability"),
        "{err}"
    );
    // Another sponsor than the seeds were made for.
    let other = dir.join("other.toml");
    std::fs::write(&other, activity(f.epoch).replace("id = 101", "id = 105")).unwrap();
    let out = push(&other, &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("sponsor[0].id"));
    // A push based on a revision someone has since replaced.
    let doc = document(dir, "late.toml", f.epoch, 300);
    let out = push(&doc, &["--if-revision", &(r1 - 1).to_string()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&format!("is at revision {r1}")), "{err}");
    assert_eq!(f.status()["revision"].as_u64(), Some(r1 as u64));
    // The same push on the right revision goes through.
    let out = push(&doc, &["--if-revision", &r1.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_document_a_node_cannot_apply_is_refused_there_and_counted() {
    // Written straight into etcd (not through `shake fleet push`, which would refuse it).
    let f = Fleet::start(1);
    let r1 = f.push(0);
    f.wait_applied(r1);
    let refused = |n: &Server| {
        n.metrics()
            .lines()
            .find(|l| l.starts_with("shake_reloads_total{result=\"refused\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap()
    };
    let before = refused(&f.nodes[0]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let t = shake::fleet::etcd::EtcdTarget {
        endpoints: vec![f.etcd.url()],
        names: shake::fleet::Names::new("t"),
        activity: 21,
    };
    let bad = activity(f.epoch).replace(
        "packets = 10000",
        "packets = 10000\n[[sponsor]]\nid = 7\nbudget_cents = 1\npackets = 1\n",
    );
    let p = rt
        .block_on(shake::fleet::etcd::push(&t, &bad, r1 as i64))
        .unwrap();
    let deadline = Instant::now() + WITHIN;
    while refused(&f.nodes[0]) == before {
        assert!(Instant::now() < deadline, "{}", f.nodes[0].metrics());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(metric(&f.nodes[0], "shake_config_version "), r1 as f64);
    let st = f.status();
    let reg = &st["nodes"][0]["registration"];
    assert_eq!(reg["revision"].as_u64(), Some(r1 as u64), "{st}");
    assert!(
        reg["refused"]
            .as_str()
            .is_some_and(|r| r.contains(&format!("revision {}", p.revision))
                && r.contains("sponsor 7 is new")),
        "{st}"
    );
}

#[test]
fn a_node_leaves_the_registry_at_its_stop_and_when_its_lease_runs_out() {
    let mut f = Fleet::start(3);
    let r1 = f.push(0);
    f.wait_applied(r1);
    let registered = |f: &Fleet| f.status()["nodes"].as_array().unwrap().len();
    assert_eq!(registered(&f), 3);
    // A clean stop revokes the lease: gone at once.
    let n2 = f.nodes.pop().unwrap();
    assert!(n2.stop().0.success());
    assert_eq!(f.status()["missing"], serde_json::json!([2]));
    // SIGKILL: gone when the lease runs out.
    let mut n1 = f.nodes.pop().unwrap();
    n1.child.kill().unwrap();
    n1.child.wait().unwrap();
    let deadline = Instant::now() + WITHIN;
    while registered(&f) != 1 {
        assert!(Instant::now() < deadline, "{}", f.status());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(f.status()["missing"], serde_json::json!([1, 2]));
    // `status` says so in its exit code too.
    let out = Command::new(shake_bin())
        .args(["fleet", "status", "--config"])
        .arg(f.dirs[0].config())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("missing: 1, 2"));
}

#[test]
fn pushes_under_load_lose_no_answer_and_never_move_a_version_backwards() {
    let f = Fleet::start(1);
    let r0 = f.push(0);
    f.wait_applied(r0);
    let server = f.nodes[0].udp;
    // The gauge says r0 is applied once the control plane has handed it to the worker, which
    // takes it at its next turn (its receive waits up to 5 ms): probe until an answer carries
    // r0, so that the load starts on it (users 1.., apart from the load's).
    let mut probes = 0u64;
    {
        let s = client_socket();
        let mut buf = [0u8; 128];
        let deadline = Instant::now() + WITHIN;
        loop {
            let r = client::request(&TOKEN_KEY, 1 + probes, 1, expiry(), probes);
            s.send_to(&client::payload(&r), server).unwrap();
            let (n, _) = s.recv_from(&mut buf).expect("the probe answered");
            probes += 1;
            let a = client::check_answer(&r, &buf[..n], &CLAIM_KEY).unwrap();
            if a.config_version == r0 {
                break;
            }
            assert!(Instant::now() < deadline, "the worker still answers {a:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    const WINDOW: usize = 32;
    const REQUESTS: usize = 40_000;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let s = client_socket();
            let mut versions = Vec::new();
            let mut sent = 0usize;
            let mut buf = [0u8; 128];
            while sent < REQUESTS && !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let reqs: Vec<ShakeRequestRepr> = (0..WINDOW)
                    .map(|i| {
                        let n = (sent + i) as u64;
                        client::request(
                            &TOKEN_KEY,
                            10_000 + n % 5000,
                            1 + (n / 5000) as u32,
                            expiry(),
                            n,
                        )
                    })
                    .collect();
                for r in &reqs {
                    s.send_to(&client::payload(r), server).unwrap();
                }
                for _ in 0..WINDOW {
                    let (n, _) = s.recv_from(&mut buf).expect("every request answered");
                    // Answers come back in order from one worker.
                    let r = &reqs[versions.len() % WINDOW];
                    let a = client::check_answer(r, &buf[..n], &CLAIM_KEY).unwrap();
                    versions.push(a.config_version);
                }
                sent += WINDOW;
            }
            versions
        })
    };
    let mut last = r0;
    for c in 1..=5 {
        last = f.push(c * 100);
        f.wait_applied(last);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let versions = load.join().expect("no answer lost");
    assert!(versions.len() >= WINDOW, "the load ran");
    assert!(
        versions.windows(2).all(|w| w[0] <= w[1]),
        "an answer's config_version went backwards"
    );
    assert_eq!(versions[0], r0);
    let n = &f.nodes[0];
    let answered = n.metric("shake_answers_total", "");
    assert_eq!(
        answered,
        probes + versions.len() as u64,
        "every answer the node sent arrived"
    );
    assert!(
        versions.iter().any(|&v| v > r0),
        "pushes landed while the load ran: {last}"
    );
}
