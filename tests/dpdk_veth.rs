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
//! failure ([`common::netns`]). If namespaces cannot be created here the test fails and says
//! so.
//!
//! The client is this test binary again, run with `ip netns exec` and
//! [`common::netns::CLIENT_ENV`] set. The appliance gets `--no-pci --no-huge --no-shconf` and
//! its own `--file-prefix`.
#![cfg(feature = "dpdk")]

mod common;

use std::collections::HashMap;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::appliance::{dpdk_sections, file_prefix, final_counters, Appliance};
use common::netns::{client_mode, ip, mac_text, run_client_in, sysctl, Namespace, Netns};
use common::{run_ok, udp_client, NodeDir, NodeToml};
use shake::wire::ipv6::link_local_from_mac;

const NODE_IP: &str = "10.99.5.1";
const CLIENT_IP: &str = "10.99.5.2";
const USERS: u64 = 200;
const NODE_IP6: &str = "fd00:5a::2";
const CLIENT_IP6: &str = "fd00:5a::1";
/// The IPv4 address of the IPv6 test's node (it answers nothing on it in that test).
const NODE_IP_OF_V6: &str = "10.99.6.1";

#[test]
fn kernel_udp_client_in_a_netns_resolves_and_is_answered() {
    const TEST: &str = "kernel_udp_client_in_a_netns_resolves_and_is_answered";
    if client_mode(USERS) {
        return;
    }
    let ns = Netns::builder("shk").client_ipv4(CLIENT_IP).create();
    let iface = ns.node_if();

    let node = NodeDir::with_activity(udp_client::ACTIVITY);
    let p = node.path();
    let prefix = file_prefix("veth-node");
    let config = node_toml(NODE_IP, &prefix, &format!("net_af_packet0,iface={iface}")).write(p);
    // Dropped before `ns`: the appliance is gone before its namespace.
    let app = Appliance::start(&config, &prefix, Some(ns.node()), false);
    let mac = app.port_mac("net_af_packet0");

    let summary = ns.run_client(TEST, &format!("{NODE_IP}:7000"), &app);

    // The client's kernel learned the appliance's MAC by ARP.
    let neigh = ns.neighbour(NODE_IP);
    let want = mac_text(mac);
    assert!(
        neigh.contains(&format!("lladdr {want}"))
            && !neigh.contains("FAILED")
            && !neigh.contains("INCOMPLETE"),
        "neighbour entry for {NODE_IP}: {neigh:?}, want {want}"
    );

    let c = stop_having_answered(app);
    let get = |k: &str| count(&c, k);
    assert!(get("arp_reply") >= 1, "{c:?}");
    assert!(get("throttled") >= 1, "{c:?}");
    eprintln!("veth: {summary} {c:?}");
}

/// The config of a node at `ipv4` on DPDK virtual device `vdev` (one worker), serving the
/// client's activity from now.
fn node_toml(ipv4: &str, prefix: &str, vdev: &str) -> NodeToml {
    NodeToml::new(ipv4, 10_000)
        .activity(r#"epoch = "now""#)
        .extra(&dpdk_sections(prefix, vdev, 256, 32, 50))
}

/// Writes the config of a node on DPDK virtual device `vdev` (one worker) with IPv6 address
/// `ipv6`, if any; returns its path.
fn node_config(dir: &Path, prefix: &str, vdev: &str, ipv6: Option<&str>) -> PathBuf {
    let toml = node_toml(NODE_IP_OF_V6, prefix, vdev).text();
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
    let want = mac_text(mac);
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
    const TEST: &str = "kernel_ipv6_client_in_a_netns_resolves_by_ndp_pings_and_is_answered";
    if client_mode(USERS) {
        return;
    }
    let ns = Netns::builder("shk6").client_ipv6(CLIENT_IP6).create();
    let node = NodeDir::with_activity(udp_client::ACTIVITY);
    let prefix = file_prefix("veth6-node");
    let vdev = format!("net_af_packet0,iface={}", ns.node_if());
    let config = node_config(node.path(), &prefix, &vdev, Some(NODE_IP6));
    // Dropped before `ns`: the appliance is gone before its namespace.
    let app = Appliance::start(&config, &prefix, Some(ns.node()), false);
    let mac = app.port_mac("net_af_packet0");
    let stderr = app.stderr();
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("port net_af_packet0 (id ") && l.contains(", NDP ")),
        "the port's start-up line says how it lets NDP's multicast in:\n{stderr}"
    );
    // Nothing on the node's side but the node answers over IPv6.
    let own = run_ok(Command::new("ip").args([
        "-n",
        ns.node(),
        "-6",
        "addr",
        "show",
        "dev",
        ns.node_if(),
    ]));
    assert!(
        own.trim().is_empty(),
        "the node side's kernel has IPv6 addresses: {own}"
    );

    let summary = ns.run_client(TEST, &format!("[{NODE_IP6}]:7000"), &app);
    // The client's kernel learned the node's MAC by NDP.
    assert_neighbour(ns.client(), ns.client_if(), NODE_IP6, mac);

    ping6(ns.client(), NODE_IP6);
    let link_local = Ipv6Addr::from(link_local_from_mac(mac)).to_string();
    ping6(ns.client(), &format!("{link_local}%{}", ns.client_if()));
    assert_neighbour(ns.client(), ns.client_if(), &link_local, mac);

    // Duplicate address detection: the client's kernel probes for the node's address before
    // taking it, and the node's answer makes it give up.
    sysctl(
        ns.client(),
        &[&format!("net.ipv6.conf.{}.accept_dad=1", ns.client_if())],
    );
    ip(&[
        "-n",
        ns.client(),
        "addr",
        "add",
        &format!("{NODE_IP6}/64"),
        "dev",
        ns.client_if(),
    ]);
    // The probe leaves within a second (a random delay), the answer at once.
    let deadline = Instant::now() + Duration::from_secs(5);
    let addrs = loop {
        let addrs = run_ok(Command::new("ip").args([
            "-n",
            ns.client(),
            "-6",
            "addr",
            "show",
            "dev",
            ns.client_if(),
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

    let c = stop_having_answered(app);
    let get = |k: &str| count(&c, k);
    assert_eq!(get("arp_reply"), 0, "{c:?}");
    assert!(get("throttled") >= 1, "{c:?}");
    // The global and the link-local address resolved, and the DAD probe refused.
    assert!(get("neighbor_advert") >= 3, "{c:?}");
    // Three pings to each address.
    assert!(get("icmpv6_echo_reply") >= 6, "{c:?}");
    eprintln!("veth6: {summary} {c:?}");
}

/// Stops the node, which must exit cleanly having answered more shakes than the client has
/// users; returns its final counters.
fn stop_having_answered(app: Appliance) -> HashMap<String, u64> {
    let (status, lines) = app.stop(Duration::from_secs(15));
    assert!(status.success(), "exit {status}");
    let c = final_counters(&lines);
    assert!(count(&c, "answered") > USERS, "{c:?}");
    c
}

/// Counter `k` of final counters `c` (0 when the node did not print it).
fn count(c: &HashMap<String, u64>, k: &str) -> u64 {
    c.get(k).copied().unwrap_or(0)
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
    let ns = Namespace::add(format!("shkT{pid}"));
    let vdev = format!("net_tap0,iface=shkt{pid}");
    for ipv6 in [Some(NODE_IP6), None] {
        let node = NodeDir::with_activity(udp_client::ACTIVITY);
        let prefix = file_prefix(if ipv6.is_some() {
            "tap6-node"
        } else {
            "tap4-node"
        });
        let config = node_config(node.path(), &prefix, &vdev, ipv6);
        let app = Appliance::start(&config, &prefix, Some(ns.name()), false);
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

/// net_tap fills IPv4 header and UDP checksums on TX (in software, as a NIC does in
/// hardware), and says so: a node on it leaves both to the port (issue 13), and a kernel UDP
/// client on the tap interface, whose stack drops a datagram with either checksum wrong, is
/// answered. net_tap computes both sums whole, so this checks what the DPDK layer asks of
/// the port (the mbuf flags and lengths: without `RTE_MBUF_F_TX_IP_CKSUM` every answer is
/// dropped), not the fields the frame layer leaves (zero, the pseudo-header sum), which its
/// tests check. The node and the client share a namespace of their own; the tap interface is
/// the client's link to the node.
#[test]
fn kernel_udp_client_over_tap_is_answered_with_checksums_the_port_filled() {
    const TEST: &str = "kernel_udp_client_over_tap_is_answered_with_checksums_the_port_filled";
    const NODE: &str = "10.99.7.1";
    if client_mode(USERS) {
        return;
    }
    let pid = std::process::id();
    let ns = Namespace::add(format!("shkO{pid}"));
    let tap = format!("shko{pid}");
    let node = NodeDir::with_activity(udp_client::ACTIVITY);
    let prefix = file_prefix("tap-offload-node");
    let config = node_toml(NODE, &prefix, &format!("net_tap0,iface={tap}")).write(node.path());
    let app = Appliance::start(&config, &prefix, Some(ns.name()), false);
    let line = port_line(&app, "net_tap0");
    assert!(
        line.contains(", IPv4 header checksum offload, UDP checksum offload,"),
        "{line}"
    );
    ip(&["-n", ns.name(), "addr", "add", "10.99.7.2/24", "dev", &tap]);
    ip(&["-n", ns.name(), "link", "set", &tap, "up"]);
    let summary = run_client_in(ns.name(), TEST, &format!("{NODE}:7000"), &app);
    let c = stop_having_answered(app);
    assert!(count(&c, "arp_reply") >= 1, "{c:?}");
    eprintln!("tap: {summary} {c:?}");
}
