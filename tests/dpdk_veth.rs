//! A real kernel client: the DPDK appliance on net_af_packet on one end of a veth pair, an
//! ordinary UDP socket in a network namespace on the other. The client's kernel resolves the
//! appliance's IPv4 address by ARP (answered by the appliance) and the client gets SHAKE/1
//! answers whose outcome and echoed fields it checks.
//!
//! The IPv6 test does the same over IPv6: the client's kernel resolves the node's global
//! address by NDP (a Neighbor Solicitation to its solicited-node multicast group, which the
//! node's port must let in), exchanges SHAKE/1 over UDP/IPv6, pings the global and the
//! link-local address with `ping -6`, and finally tries to take the node's address for
//! itself, which the node's answer to the duplicate address detection probe must refuse.
//! The node side's kernel has IPv6 disabled, so every IPv6 answer is the node's.
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

use std::net::{Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::appliance::{dpdk_sections, file_prefix, final_counters, Appliance};
use common::{run_ok, udp_client, NodeDir, NodeToml};
use shake::wire::ipv6::link_local_from_mac;

const CLIENT_ENV: &str = "SHAKE_VETH_CLIENT";
const NODE_IP: &str = "10.99.5.1";
const CLIENT_IP: &str = "10.99.5.2";
const USERS: u64 = 200;
const NODE_IP6: &str = "fd00:5a::2";
const CLIENT_IP6: &str = "fd00:5a::1";
/// The IPv4 address of the IPv6 test's node (it answers nothing on it in that test).
const NODE_IP_OF_V6: &str = "10.99.6.1";

/// The client side's address family.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

/// The namespaces and veth pair of a test; deleted on drop (deleting a namespace removes
/// the veth end inside it, and with it the pair).
struct Netns {
    app: String,
    client: String,
    /// The veth ends: the appliance's and the client's.
    app_if: String,
    client_if: String,
}

/// `ip ARGS`, or a panic that says this machine cannot set the test up.
fn ip(args: &[&str]) {
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
}

impl Netns {
    /// Over IPv4, the client side gets CLIENT_IP. Over IPv6 it gets CLIENT_IP6 (no duplicate
    /// address detection, so nothing waits for it), and the appliance side's kernel has IPv6
    /// off: it must not answer for the link-local address it would derive from the same MAC
    /// as the node.
    fn create(pid: u32, family: Family) -> Netns {
        let tag = if family == Family::V6 { "6" } else { "" };
        let n = Netns {
            app: format!("shk{tag}A{pid}"),
            client: format!("shk{tag}C{pid}"),
            app_if: format!("shk{tag}a{pid}"),
            client_if: format!("shk{tag}c{pid}"),
        };
        let (a, c) = (n.app_if.as_str(), n.client_if.as_str());
        ip(&["netns", "add", &n.app]);
        ip(&["netns", "add", &n.client]);
        let sysctl = |ns: &str, settings: &[&str]| {
            run_ok(
                Command::new("ip")
                    .args(["netns", "exec", ns, "sysctl", "-q", "-w"])
                    .args(settings),
            );
        };
        if family == Family::V6 {
            // Before the veth ends exist, so that they are born with these settings.
            sysctl(
                &n.app,
                &[
                    "net.ipv6.conf.all.disable_ipv6=1",
                    "net.ipv6.conf.default.disable_ipv6=1",
                ],
            );
            sysctl(
                &n.client,
                &[
                    "net.ipv6.conf.all.accept_dad=0",
                    "net.ipv6.conf.default.accept_dad=0",
                    "net.ipv6.conf.default.router_solicitations=0",
                ],
            );
        }
        // Created directly inside the namespaces: the host never has either end.
        ip(&[
            "link", "add", a, "netns", &n.app, "type", "veth", "peer", "name", c, "netns",
            &n.client,
        ]);
        ip(&["-n", &n.app, "link", "set", a, "up"]);
        ip(&["-n", &n.client, "link", "set", "lo", "up"]);
        match family {
            Family::V4 => ip(&[
                "-n",
                &n.client,
                "addr",
                "add",
                &format!("{CLIENT_IP}/24"),
                "dev",
                c,
            ]),
            Family::V6 => ip(&[
                "-n",
                &n.client,
                "addr",
                "add",
                &format!("{CLIENT_IP6}/64"),
                "dev",
                c,
                "nodad",
            ]),
        }
        ip(&["-n", &n.client, "link", "set", c, "up"]);
        // veth leaves UDP checksums to a NIC that does not exist: have the kernel fill them.
        run_ok(
            Command::new("ip").args(["netns", "exec", &n.client, "ethtool", "-K", c, "tx", "off"]),
        );
        if family == Family::V6 {
            n.wait_client_link_local();
        }
        n
    }

    /// Waits (at most 5 s) for the client's kernel to give its veth end a usable link-local
    /// address: it does so only once the carrier is up, which the kernel reports up to a
    /// second late, and until then it has no source address to ping a link-local one from.
    fn wait_client_link_local(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let addrs = run_ok(Command::new("ip").args([
                "-n",
                &self.client,
                "-6",
                "addr",
                "show",
                "dev",
                &self.client_if,
                "scope",
                "link",
            ]));
            if addrs.contains("inet6 fe80:") && !addrs.contains("tentative") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the client's veth end has no usable link-local address: {addrs}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in [&self.client, &self.app] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Client mode: every user shakes once from an ordinary UDP socket, then user 1 again
/// (THROTTLED), each answer checked; one summary line for the parent.
fn client(server: SocketAddr) {
    let outcomes = udp_client::shake_every_user_then_repeat(server, USERS);
    println!("CLIENT OK {outcomes:?}");
}

#[test]
fn kernel_udp_client_in_a_netns_resolves_and_is_answered() {
    if let Ok(server) = std::env::var(CLIENT_ENV) {
        client(server.parse().unwrap());
        return;
    }
    let pid = std::process::id();
    let ns = Netns::create(pid, Family::V4);
    let iface = ns.app_if.clone();

    let node = NodeDir::with_activity(udp_client::ACTIVITY);
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

/// Writes the config of a node on DPDK virtual device `vdev` (one worker) with IPv6 address
/// `ipv6`, if any; returns its path.
fn node_config(dir: &Path, prefix: &str, vdev: &str, ipv6: Option<&str>) -> PathBuf {
    let toml = NodeToml::new(NODE_IP_OF_V6, 10_000)
        .activity(r#"epoch = "now""#)
        .extra(&dpdk_sections(prefix, vdev, 256, 32, 50))
        .text();
    let ipv4_line = format!("ipv4 = \"{NODE_IP_OF_V6}\"");
    assert!(toml.contains(&ipv4_line));
    let toml = match ipv6 {
        Some(a) => toml.replace(&ipv4_line, &format!("{ipv4_line}\nipv6 = \"{a}\"")),
        None => toml,
    };
    let config = dir.join("node.toml");
    std::fs::write(&config, toml).unwrap();
    config
}

/// `ip netns exec NS ping -6 -c 3 -i 0.2 -W 2 TARGET`: all three answered.
fn ping6(ns: &str, target: &str) {
    let out = run_ok(Command::new("ip").args([
        "netns", "exec", ns, "ping", "-6", "-n", "-c", "3", "-i", "0.2", "-W", "2", target,
    ]));
    assert!(
        out.contains("3 packets transmitted, 3 received"),
        "ping -6 {target}:\n{out}"
    );
}

/// The client namespace's neighbour entry for `addr` has the node's MAC and is usable.
fn assert_neighbour(ns: &str, dev: &str, addr: &str, mac: [u8; 6]) {
    let neigh =
        run_ok(Command::new("ip").args(["-n", ns, "-6", "neigh", "show", addr, "dev", dev]));
    let want = mac
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    assert!(
        neigh.contains(&format!("lladdr {want}"))
            && ["REACHABLE", "STALE", "DELAY", "PROBE"]
                .iter()
                .any(|s| neigh.contains(s)),
        "neighbour entry for {addr}: {neigh:?}, want {want}"
    );
}

#[test]
fn kernel_ipv6_client_in_a_netns_resolves_by_ndp_pings_and_is_answered() {
    if let Ok(server) = std::env::var(CLIENT_ENV) {
        client(server.parse().unwrap());
        return;
    }
    let pid = std::process::id();
    let ns = Netns::create(pid, Family::V6);
    let node = NodeDir::with_activity(udp_client::ACTIVITY);
    let prefix = file_prefix("veth6-node");
    let vdev = format!("net_af_packet0,iface={}", ns.app_if);
    let config = node_config(node.path(), &prefix, &vdev, Some(NODE_IP6));
    // Dropped before `ns`: the appliance is gone before its namespace.
    let app = Appliance::start(&config, &prefix, Some(&ns.app), false);
    let mac = app.port_mac("net_af_packet0");
    let stderr = app.stderr();
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("port net_af_packet0 (id ") && l.contains(", NDP ")),
        "the port's start-up line says how it lets NDP's multicast in:\n{stderr}"
    );
    // Nothing on the node's side but the node answers over IPv6.
    let own =
        run_ok(Command::new("ip").args(["-n", &ns.app, "-6", "addr", "show", "dev", &ns.app_if]));
    assert!(
        own.trim().is_empty(),
        "the node side's kernel has IPv6 addresses: {own}"
    );

    let out = Command::new("ip")
        .args(["netns", "exec", &ns.client])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "kernel_ipv6_client_in_a_netns_resolves_by_ndp_pings_and_is_answered",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CLIENT_ENV, format!("[{NODE_IP6}]:7000"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("CLIENT OK"),
        "the IPv6 client in {} failed:\n{stdout}\n{}\nappliance stderr:\n{}",
        ns.client,
        String::from_utf8_lossy(&out.stderr),
        app.stderr()
    );
    // The client's kernel learned the node's MAC by NDP.
    assert_neighbour(&ns.client, &ns.client_if, NODE_IP6, mac);

    ping6(&ns.client, NODE_IP6);
    let link_local = Ipv6Addr::from(link_local_from_mac(mac)).to_string();
    ping6(&ns.client, &format!("{link_local}%{}", ns.client_if));
    assert_neighbour(&ns.client, &ns.client_if, &link_local, mac);

    // Duplicate address detection: the client's kernel probes for the node's address before
    // taking it, and the node's answer makes it give up.
    run_ok(Command::new("ip").args([
        "netns",
        "exec",
        &ns.client,
        "sysctl",
        "-q",
        "-w",
        &format!("net.ipv6.conf.{}.accept_dad=1", ns.client_if),
    ]));
    ip(&[
        "-n",
        &ns.client,
        "addr",
        "add",
        &format!("{NODE_IP6}/64"),
        "dev",
        &ns.client_if,
    ]);
    // The probe leaves within a second (a random delay), the answer at once.
    let deadline = Instant::now() + Duration::from_secs(5);
    let addrs = loop {
        let addrs = run_ok(Command::new("ip").args([
            "-n",
            &ns.client,
            "-6",
            "addr",
            "show",
            "dev",
            &ns.client_if,
        ]));
        let ours = addrs
            .lines()
            .find(|l| l.contains(&format!("inet6 {NODE_IP6}/64")));
        if ours.is_some_and(|l| l.contains("dadfailed")) || Instant::now() >= deadline {
            break addrs;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        addrs
            .lines()
            .any(|l| l.contains(&format!("inet6 {NODE_IP6}/64")) && l.contains("dadfailed")),
        "the client's kernel took the node's address despite its DAD answer:\n{addrs}"
    );

    let (status, lines) = app.stop(Duration::from_secs(15));
    assert!(status.success(), "exit {status}");
    let c = final_counters(&lines);
    let get = |k: &str| c.get(k).copied().unwrap_or(0);
    assert_eq!(get("arp_reply"), 0, "{c:?}");
    assert!(get("answered") > USERS, "{c:?}");
    assert!(get("throttled") >= 1, "{c:?}");
    // The global and the link-local address resolved, and the DAD probe refused.
    assert!(get("neighbor_advert") >= 3, "{c:?}");
    // Three pings to each address.
    assert!(get("icmpv6_echo_reply") >= 6, "{c:?}");
    eprintln!("veth6: {} {c:?}", stdout.trim());
}

/// A network namespace of its own, deleted on drop.
struct OneNetns(String);

impl Drop for OneNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// The port's start-up line, from the appliance's stderr.
fn port_line(app: &Appliance, name: &str) -> String {
    let stderr = app.stderr();
    let needle = format!("port {name} (id ");
    stderr
        .lines()
        .find(|l| l.contains(&needle))
        .unwrap_or_else(|| panic!("no start-up line for {name}:\n{stderr}"))
        .to_owned()
}

/// net_tap takes a multicast address list (Linux's tap filters nothing, so its driver accepts
/// any): an IPv6 node's port puts exactly its solicited-node groups on it, the global
/// address's and the link-local one's (derived from the port's MAC), and says so; an IPv4
/// node's port line is as it always was. The tap interface lives in a namespace of its own.
#[test]
fn ipv6_port_lists_its_solicited_node_groups_where_the_device_takes_a_list() {
    let pid = std::process::id();
    let ns = OneNetns(format!("shkT{pid}"));
    ip(&["netns", "add", &ns.0]);
    let vdev = format!("net_tap0,iface=shkt{pid}");
    for ipv6 in [Some(NODE_IP6), None] {
        let node = NodeDir::with_activity(udp_client::ACTIVITY);
        let prefix = file_prefix(if ipv6.is_some() {
            "tap6-node"
        } else {
            "tap4-node"
        });
        let config = node_config(node.path(), &prefix, &vdev, ipv6);
        let app = Appliance::start(&config, &prefix, Some(&ns.0), false);
        let mac = app.port_mac("net_tap0");
        let line = port_line(&app, "net_tap0");
        let (status, _) = app.stop(Duration::from_secs(15));
        assert!(status.success(), "exit {status}");
        // Linux's tap checks IPv4 and UDP checksums on receive for the PMD (issue 13): its
        // verdicts reach the frame layer.
        assert!(line.contains(", RX checksums checked by the NIC"), "{line}");
        if ipv6.is_none() {
            assert!(!line.contains("NDP"), "{line}");
            continue;
        }
        // fd00:5a::2 -> ff02::1:ff00:2; fe80::(MAC) -> ff02::1:ffXX:XXXX, the MAC's last
        // three bytes.
        let want = format!(
            ", NDP multicast list 33:33:ff:00:00:02 33:33:ff:{:02x}:{:02x}:{:02x},",
            mac[3], mac[4], mac[5]
        );
        assert!(line.contains(&want), "{line}\nwant {want}");
    }
}
