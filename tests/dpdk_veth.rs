//! A real kernel client: the DPDK appliance on net_af_packet on one end of a veth pair, an
//! ordinary UDP socket in a network namespace on the other. The client's kernel resolves the
//! appliance's IPv4 address by ARP (answered by the appliance) and the client gets SHAKE/1
//! answers whose outcome and echoed fields it checks.
//!
//! The test creates two network namespaces (appliance side and client side, so the host's
//! own stack never sees the traffic and nothing can be routed off the machine) and the veth
//! pair between them, all named after this process, and deletes them when it ends, also on
//! failure. If namespaces cannot be created here the test fails and says so.
//!
//! The client is this test binary again, run with `ip netns exec` and SHAKE_VETH_CLIENT set.
//! The appliance gets `--no-pci --no-huge --no-shconf` and its own `--file-prefix`.
#![cfg(feature = "dpdk")]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use common::appliance::{dpdk_sections, file_prefix, final_counters, Appliance};
use common::{run_ok, unix_s, NodeDir, NodeToml, CLAIM_KEY, TOKEN_KEY};
use shake::client::{check_answer, payload, request};
use shake::wire::shake::Outcome;

const CLIENT_ENV: &str = "SHAKE_VETH_CLIENT";
const NODE_IP: &str = "10.99.5.1";
const CLIENT_IP: &str = "10.99.5.2";
const USERS: u64 = 200;

/// The namespaces and veth pair of this test; deleted on drop (deleting a namespace removes
/// the veth end inside it, and with it the pair).
struct Netns {
    app: String,
    client: String,
}

impl Netns {
    fn create(pid: u32) -> Netns {
        let n = Netns {
            app: format!("shkA{pid}"),
            client: format!("shkC{pid}"),
        };
        let (a, c) = (format!("shka{pid}"), format!("shkc{pid}"));
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output();
            match out {
                Ok(o) if o.status.success() => {}
                Ok(o) => panic!(
                    "this machine cannot set up the test's network namespaces and veth pair: \
                     `ip {}` failed: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&o.stderr)
                ),
                Err(e) => panic!("cannot run ip(8) to create network namespaces: {e}"),
            }
        };
        ip(&["netns", "add", &n.app]);
        ip(&["netns", "add", &n.client]);
        // Created directly inside the namespaces: the host never has either end.
        ip(&[
            "link", "add", &a, "netns", &n.app, "type", "veth", "peer", "name", &c, "netns",
            &n.client,
        ]);
        ip(&["-n", &n.app, "link", "set", &a, "up"]);
        ip(&["-n", &n.client, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            &n.client,
            "addr",
            "add",
            &format!("{CLIENT_IP}/24"),
            "dev",
            &c,
        ]);
        ip(&["-n", &n.client, "link", "set", &c, "up"]);
        // veth leaves UDP checksums to a NIC that does not exist: have the kernel fill them.
        run_ok(
            Command::new("ip").args(["netns", "exec", &n.client, "ethtool", "-K", &c, "tx", "off"]),
        );
        n
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in [&self.client, &self.app] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Client mode: shakes for every user from an ordinary UDP socket, each answer checked;
/// prints one summary line for the parent.
fn client(server: SocketAddr) {
    let s = UdpSocket::bind("0.0.0.0:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let expiry = (unix_s() + 3600) as u32;
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut outcomes = std::collections::BTreeMap::new();
    // Every user once, then user 1 again at once (THROTTLED).
    let shakes: Vec<(u64, u32)> = (1..=USERS).map(|u| (u, 1)).chain([(1, 2)]).collect();
    for (user, seq) in shakes {
        let r = request(&TOKEN_KEY, user, seq, expiry, user * 1000 + u64::from(seq));
        let mut buf = [0u8; 256];
        // The first datagram waits for ARP; one lost on the way is sent again (its answer
        // may then be THROTTLED), and late answers to earlier users are skipped.
        let mut sends = 0;
        let n = 'answer: loop {
            assert!(
                Instant::now() < deadline,
                "client: no answer for user {user}"
            );
            s.send_to(&payload(&r), server).unwrap();
            sends += 1;
            loop {
                match s.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        assert_eq!(from, server, "answer from the appliance's address and port");
                        if n >= 20
                            && buf[8..16] == user.to_be_bytes()
                            && buf[16..20] == seq.to_be_bytes()
                        {
                            break 'answer n;
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        continue 'answer
                    }
                    Err(e) => panic!("client: recv: {e}"),
                }
            }
        };
        assert_eq!(n, 64, "answer payload length");
        assert_eq!(&buf[..4], b"SK\x01\x81");
        assert_eq!(buf[8..16], user.to_be_bytes(), "echoed user_id");
        let a = check_answer(&r, &buf[..n], &CLAIM_KEY).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.outcome as u8, buf[4]);
        let want_throttled = seq == 2;
        if sends == 1 {
            assert_eq!(
                a.outcome == Outcome::Throttled,
                want_throttled,
                "user {user} seq {seq}: {a:?}"
            );
        }
        if !want_throttled && a.outcome != Outcome::Throttled {
            assert!(
                matches!(a.outcome, Outcome::Greeting | Outcome::Nothing),
                "{a:?}"
            );
        }
        *outcomes.entry(a.outcome.name()).or_insert(0u64) += 1;
    }
    println!("CLIENT OK {outcomes:?}");
}

#[test]
fn kernel_udp_client_in_a_netns_resolves_and_is_answered() {
    if let Ok(server) = std::env::var(CLIENT_ENV) {
        client(server.parse().unwrap());
        return;
    }
    let pid = std::process::id();
    let ns = Netns::create(pid);
    let iface = format!("shka{pid}");

    let node = NodeDir::with_activity(
        r#"
[activity]
id = 51
name = "veth"
epoch = 0
[[sponsor]]
id = 7
budget_cents = 100000
packets = 1000
greeting_resources = [3]
[[round]]
id = 1
start_s = 0
duration_s = 600
win_probability = 0.0
greeting_probability = 0.5
"#,
    );
    let p = node.path();
    let prefix = file_prefix("veth-node");
    let config = NodeToml::new(NODE_IP, 10_000)
        .activity(r#"epoch = "now""#)
        .extra(&dpdk_sections(
            &prefix,
            &format!("net_af_packet0,iface={iface}"),
            256,
            32,
            50,
        ))
        .write(p);
    // Dropped before `ns`: the appliance is gone before its namespace.
    let app = Appliance::start(&config, &prefix, Some(&ns.app), false);
    let mac = app.port_mac("net_af_packet0");

    let out = Command::new("ip")
        .args(["netns", "exec", &ns.client])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "kernel_udp_client_in_a_netns_resolves_and_is_answered",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CLIENT_ENV, format!("{NODE_IP}:7000"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("CLIENT OK"),
        "the client in {} failed:\n{stdout}\n{}\nappliance stderr:\n{}",
        ns.client,
        String::from_utf8_lossy(&out.stderr),
        app.stderr()
    );

    // The client's kernel learned the appliance's MAC by ARP.
    let neigh = run_ok(Command::new("ip").args(["-n", &ns.client, "neigh", "show", NODE_IP]));
    let want = mac
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    assert!(
        neigh.contains(&format!("lladdr {want}"))
            && !neigh.contains("FAILED")
            && !neigh.contains("INCOMPLETE"),
        "neighbour entry for {NODE_IP}: {neigh:?}, want {want}"
    );

    let (status, lines) = app.stop(Duration::from_secs(15));
    assert!(status.success(), "exit {status}");
    let c = final_counters(&lines);
    let get = |k: &str| c.get(k).copied().unwrap_or(0);
    assert!(get("arp_reply") >= 1, "{c:?}");
    assert!(get("answered") > USERS, "{c:?}");
    assert!(get("throttled") >= 1, "{c:?}");
    eprintln!("veth: {} {c:?}", stdout.trim());
}
