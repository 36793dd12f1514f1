//! The DPDK appliance on an AF_XDP socket (`net_af_xdp`) on one end of a veth pair whose
//! kernel keeps the interface, as on a cloud machine; an ordinary UDP socket in a network
//! namespace on the other end shakes at it and checks every answer.
//!
//! - With DPDK's default XDP program (libxdp's `xsk_def_prog`), every frame of the bound
//!   queue goes to the socket: the node answers ARP for its own address, and the kernel's
//!   own address on the interface goes deaf (its ARP request reaches the node, which drops
//!   it) until the node stops and the program is gone.
//! - With the filter program of `nic-config/afxdp-filter.c` (`xdp_prog=`), only UDP to the
//!   node's port goes to the socket: the node's address is the kernel's, the kernel answers
//!   ARP and ping for it, the node answers SHAKE/1 from the same MAC.
//! - Without CAP_IPC_LOCK and with a small RLIMIT_MEMLOCK, the node refuses to start and
//!   says why (DPDK's own report was EINVAL from queue setup).
//!
//! Two namespaces (node side and client side) and the veth pair between them are created for
//! each test and deleted when it ends, also on failure ([`common::netns`]): XDP only ever
//! attaches to the test's own veth. The client is this test binary again, run with
//! `ip netns exec` and [`common::netns::CLIENT_ENV`] set. Each test skips, saying why, where
//! AF_XDP cannot run: no AF_XDP sockets in the kernel, no privilege for them or for XDP
//! programs, no net_af_xdp PMD; the filter test also without clang and libbpf's headers to
//! build its program.
#![cfg(feature = "dpdk")]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::appliance::{dpdk_sections, file_prefix, final_counters, Appliance};
use common::netns::{client_mode, mac_text, Netns};
use common::{run_ok, shake_bin, udp_client, NodeDir, NodeToml};

const USERS: u64 = 100;

/// Why AF_XDP cannot run here, if it cannot.
fn skip_reason() -> Option<String> {
    // AF_XDP = 44. The kernel refuses the socket without CONFIG_XDP_SOCKETS (EAFNOSUPPORT)
    // or without CAP_NET_RAW (EPERM).
    if let Err(e) = socket2::Socket::new(socket2::Domain::from(44), socket2::Type::RAW, None) {
        return Some(format!("no AF_XDP socket here: {e}"));
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let caps = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .unwrap_or(0);
    let has = |bit: u32| caps & (1 << bit) != 0;
    // CAP_NET_ADMIN (12), and CAP_BPF (39) or CAP_SYS_ADMIN (21).
    if !has(12) || !(has(39) || has(21)) {
        return Some(format!(
            "loading an XDP program needs CAP_NET_ADMIN and CAP_BPF (CapEff {caps:x})"
        ));
    }
    let libdir = Command::new("pkg-config")
        .args(["--variable=libdir", "libdpdk"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "/usr/lib/x86_64-linux-gnu".into());
    let pmd = std::fs::read_dir(Path::new(&libdir).join("dpdk"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|d| d.path().join("librte_net_af_xdp.so").exists());
    if !pmd {
        return Some(format!("no net_af_xdp PMD under {libdir}/dpdk"));
    }
    None
}

/// Prints why a test skips; true if it must.
fn skipped(test: &str) -> bool {
    match skip_reason() {
        Some(why) => {
            eprintln!("SKIPPED {test}: {why}");
            true
        }
        None => false,
    }
}

/// The XDP program on the node's veth end, as `ip -d link` shows it: e.g.
/// "xdp prog/xdp id 17 name xsk_def_prog ..." (native mode; "xdpgeneric" would be SKB
/// mode), or "" when there is none.
fn node_xdp(ns: &Netns) -> String {
    let link =
        run_ok(Command::new("ip").args(["-d", "-n", ns.node(), "link", "show", ns.node_if()]));
    let mode = ["xdpgeneric", "xdpoffload", "xdpdrv", "xdp"]
        .into_iter()
        .find(|m| link.split_whitespace().any(|w| w == *m));
    let prog = link
        .lines()
        .find(|l| l.trim_start().starts_with("prog/xdp"))
        .map(str::trim);
    match (mode, prog) {
        (Some(m), Some(p)) => format!("{m} {p}"),
        _ => String::new(),
    }
}

/// `ping -c N` from the client namespace: how many of the echoes were answered.
fn ping(ns: &Netns, target: &str, count: u32) -> u32 {
    let out = Command::new("ip")
        .args(["netns", "exec", ns.client(), "ping", "-n", "-c"])
        .arg(count.to_string())
        .args(["-i", "0.2", "-W", "1", target])
        .output()
        .expect("ping(8)");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split(", ")
        .find_map(|part| part.strip_suffix(" received"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("ping {target}: {text}"))
}

/// The config of a node answering on `node_ip` through AF_XDP port `vdev`.
fn node_config(node: &NodeDir, prefix: &str, node_ip: &str, vdev: &str) -> std::path::PathBuf {
    NodeToml::new(node_ip, 10_000)
        .activity(r#"epoch = "now""#)
        .extra(&dpdk_sections(prefix, vdev, 256, 32, 50))
        .write(node.path())
}

#[test]
fn default_program_takes_the_whole_queue_until_the_node_stops() {
    const TEST: &str = "default_program_takes_the_whole_queue_until_the_node_stops";
    if client_mode(USERS) {
        return;
    }
    if skipped(TEST) {
        return;
    }
    const NODE_IP: &str = "10.99.8.1";
    const KERNEL_IP: &str = "10.99.8.3";
    let ns = Netns::builder("shxd")
        .node_ipv4(KERNEL_IP)
        .client_ipv4("10.99.8.2")
        .create();
    let node = NodeDir::with_activity(udp_client::ACTIVITY);
    let prefix = file_prefix("afxdp-default");
    let vdev = format!("net_af_xdp0,iface={}", ns.node_if());
    let config = node_config(&node, &prefix, NODE_IP, &vdev);

    // The UMEM (the port's pool, ~19 MB) is above a 1 MiB RLIMIT_MEMLOCK: without
    // CAP_IPC_LOCK, the node says so instead of DPDK's EINVAL from queue setup.
    let limited = Command::new("timeout")
        .args(["30", "ip", "netns", "exec", ns.node()])
        .args(["setpriv", "--bounding-set", "-ipc_lock", "--", "sh", "-c"])
        .arg("ulimit -l 1024 && exec \"$0\" serve --io dpdk --config \"$1\" -- --no-shconf")
        .arg(shake_bin())
        .arg(&config)
        .output()
        .unwrap();
    let _runtime = common::appliance::RuntimeDir::new(&prefix);
    let stderr = String::from_utf8_lossy(&limited.stderr);
    assert!(!limited.status.success(), "{stderr}");
    assert!(
        stderr.contains("RLIMIT_MEMLOCK (1024 KiB soft, 1024 KiB hard)")
            && stderr.contains("lacks CAP_IPC_LOCK")
            && stderr.contains("port net_af_xdp0"),
        "{stderr}"
    );
    assert_eq!(
        node_xdp(&ns),
        "",
        "a node that did not start leaves no XDP program"
    );

    let app = Appliance::start(&config, &prefix, Some(ns.node()), false);
    let mac = app.port_mac("net_af_xdp0");
    let xdp = node_xdp(&ns);
    assert!(
        xdp.contains("name xsk_def_prog"),
        "DPDK's default program: {xdp:?}"
    );
    let summary = ns.run_client(TEST, &format!("{NODE_IP}:7000"), &app);
    // The node answered ARP for its address with the interface's MAC...
    let want = mac_text(mac);
    let neigh = ns.neighbour(NODE_IP);
    assert!(
        neigh.contains(&format!("lladdr {want}")),
        "{neigh:?}, want {want}"
    );
    // ...and the kernel's own address is deaf: its ARP request went to the node.
    assert_eq!(
        ping(&ns, KERNEL_IP, 2),
        0,
        "the kernel answered through the default program"
    );
    let (status, lines) = app.stop(Duration::from_secs(15));
    assert!(status.success(), "exit {status}");
    let c = final_counters(&lines);
    let get = |k: &str| c.get(k).copied().unwrap_or(0);
    assert!(get("answered") > USERS, "{c:?}");
    assert!(get("throttled") >= 1, "{c:?}");
    assert!(get("arp_reply") >= 1, "{c:?}");
    assert!(
        get("drop.arp_not_for_us") >= 1,
        "the kernel's ARP request: {c:?}"
    );

    // The node took its program with it: the kernel has the whole interface back.
    assert_eq!(node_xdp(&ns), "");
    assert_eq!(
        ping(&ns, KERNEL_IP, 2),
        2,
        "the kernel answers again once the node is gone"
    );
    eprintln!("afxdp default program ({xdp}): {summary} {c:?}");
}

#[test]
fn filter_program_leaves_the_kernel_its_arp_and_ping() {
    const TEST: &str = "filter_program_leaves_the_kernel_its_arp_and_ping";
    if client_mode(USERS) {
        return;
    }
    if skipped(TEST) {
        return;
    }
    let node = NodeDir::with_activity(udp_client::ACTIVITY);
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("nic-config/afxdp-filter.c");
    let arch = std::env::consts::ARCH;
    let built = Command::new("clang")
        .args(["-O2", "-g", "-target", "bpf", "-DSHAKE_PORT=7000"])
        .arg(format!("-I/usr/include/{arch}-linux-gnu"))
        .arg("-c")
        .arg(&source)
        .arg("-o")
        .arg(node.path().join("afxdp-filter.o"))
        .output();
    match built {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            let why = String::from_utf8_lossy(&o.stderr);
            return eprintln!("SKIPPED {TEST}: clang cannot build the XDP program: {why}");
        }
        Err(e) => return eprintln!("SKIPPED {TEST}: no clang to build the XDP program: {e}"),
    }
    // The node's address is the kernel's own.
    const NODE_IP: &str = "10.99.9.1";
    let ns = Netns::builder("shxf")
        .node_ipv4(NODE_IP)
        .client_ipv4("10.99.9.2")
        .create();
    let prefix = file_prefix("afxdp-filter");
    // A relative program path is found next to the config.
    let vdev = format!("net_af_xdp0,iface={},xdp_prog=afxdp-filter.o", ns.node_if());
    let config = node_config(&node, &prefix, NODE_IP, &vdev);
    let app = Appliance::start(&config, &prefix, Some(ns.node()), false);
    let mac = app.port_mac("net_af_xdp0");
    let xdp = node_xdp(&ns);
    assert!(
        xdp.contains("name shake_filter"),
        "the filter program: {xdp:?}"
    );
    let summary = ns.run_client(TEST, &format!("{NODE_IP}:7000"), &app);
    // The kernel resolved and answers its address, with the MAC the node answers from.
    assert_eq!(ping(&ns, NODE_IP, 3), 3, "ping of the kernel's address");
    let want = mac_text(mac);
    let neigh = ns.neighbour(NODE_IP);
    assert!(
        neigh.contains(&format!("lladdr {want}")),
        "{neigh:?}, want {want}"
    );
    let (status, lines) = app.stop(Duration::from_secs(15));
    assert!(status.success(), "exit {status}");
    let c = final_counters(&lines);
    let get = |k: &str| c.get(k).copied().unwrap_or(0);
    assert!(get("answered") > USERS, "{c:?}");
    assert!(get("throttled") >= 1, "{c:?}");
    // Neither ARP nor ping reached the node, nor anything else but SHAKE/1.
    assert_eq!(
        get("arp_reply") + get("icmp_echo_reply") + get("dropped"),
        0,
        "{c:?}"
    );
    assert_eq!(get("rx"), get("answered"), "{c:?}");
    assert_eq!(
        node_xdp(&ns),
        "",
        "the node removes its program when it stops"
    );
    eprintln!("afxdp filter program ({xdp}): {summary} {c:?}");
}
