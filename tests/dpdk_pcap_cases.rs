//! Every case of SPEC section 2 through the DPDK appliance on net_pcap: `shake serve --io
//! dpdk` (the binary) reads a pcap of crafted frames and writes its answers to another.
//! Frames are built, and answers decoded, with `etherparse`, a parser independent of the
//! node's own wire code; SHAKE/1 payload fields are read at the SPEC's offsets.
//!
//! Two nodes run side by side, each its own DPDK process with its own `--file-prefix`,
//! `--no-pci --no-huge --no-shconf`, net_pcap on files in a temporary directory:
//! - node A (node 0 of 2, a round active, win 0, greeting 1, user 6 blacklisted): GREETING,
//!   THROTTLED (same user twice), NOTHING (blacklisted), DENIED (bad and expired tokens),
//!   REDIRECT, CONFIG_STALE on and off, a VLAN-tagged shake, IPv4 options, a UDP checksum
//!   of 0, an Ethernet trailer, ARP for us, ICMP echo, and one frame per drop reason;
//! - node B (its only round starts in 30 s): CLOSED, with the next round and the wait.
//!
//! Each node is stopped by SIGTERM once its Prometheus counters show every frame received
//! and every answer sent (bounded wait); it must exit 0. Then the output pcap is checked frame
//! by frame (answers leave in request order: one worker) and every drop must be counted
//! under its reason in the final counter line.
//!
//! RED_PACKET needs time to pass within a round (pacing); tests/dpdk_memif.rs and
//! tests/dpdk_sigterm.rs check it.
#![cfg(feature = "dpdk")]

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use common::appliance::{
    arp_request, dpdk_sections, file_prefix, final_counters, read_pcap, sum_metric, write_pcap,
    Appliance,
};
use common::{unix_s, NodeDir, NodeToml, CLAIM_KEY, TOKEN_KEY};
use etherparse::{
    IpHeaders, IpNumber, Ipv4Header, Ipv4Options, NetSlice, PacketBuilder, SlicedPacket,
    TransportSlice, VlanSlice,
};
use shake::client::{check_answer, payload, request};
use shake::wire::shake::{Outcome, ShakeRequestRepr, FLAG_CONFIG_STALE};

const NODE_IP: [u8; 4] = [10, 99, 1, 1];
const CLIENT_IP: [u8; 4] = [10, 99, 1, 9];
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 9];
/// The node's MAC is the port's (net_pcap makes one up); requests need not know it.
const TO_NODE_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const PORT: u16 = 7000;
const BLACKLISTED: u64 = 6;

/// What must become of a frame.
#[derive(Debug, Clone)]
enum Expect {
    /// A SHAKE/1 answer with this outcome to this request; `vlan` must be kept.
    Answer {
        request: ShakeRequestRepr,
        outcome: Outcome,
        vlan: Option<u16>,
        src_port: u16,
    },
    ArpReply,
    EchoReply {
        id: u16,
        seq: u16,
        data: Vec<u8>,
    },
    /// Dropped and counted under this reason (the counter's name).
    Drop(&'static str),
}

struct Case {
    what: &'static str,
    frame: Vec<u8>,
    expect: Expect,
}

fn expiry() -> u32 {
    (unix_s() + 3600) as u32
}

/// A valid request of `user`.
fn req(user: u64) -> ShakeRequestRepr {
    request(
        &TOKEN_KEY,
        user,
        user as u32 * 3,
        expiry(),
        0xc0ffee00 + user,
    )
}

/// An Ethernet/IPv4/UDP frame to the node, built by etherparse.
fn udp_frame(src_port: u16, dst_port: u16, data: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(CLIENT_MAC, TO_NODE_MAC)
        .ipv4(CLIENT_IP, NODE_IP, 64)
        .udp(src_port, dst_port);
    let mut f = Vec::with_capacity(b.size(data.len()));
    b.write(&mut f, data).unwrap();
    f
}

fn shake_frame(r: &ShakeRequestRepr, src_port: u16) -> Vec<u8> {
    udp_frame(src_port, PORT, &payload(r))
}

/// A frame with a custom IPv4 header (flags, options), UDP inside.
fn udp_frame_with(ip: Ipv4Header, vlan: Option<u16>, src_port: u16, data: &[u8]) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(CLIENT_MAC, TO_NODE_MAC);
    let b = match vlan {
        Some(v) => eth
            .single_vlan(v.try_into().unwrap())
            .ip(IpHeaders::Ipv4(ip, Default::default()))
            .udp(src_port, PORT),
        None => eth
            .ip(IpHeaders::Ipv4(ip, Default::default()))
            .udp(src_port, PORT),
    };
    let mut f = Vec::with_capacity(b.size(data.len()));
    b.write(&mut f, data).unwrap();
    f
}

fn ip_header() -> Ipv4Header {
    Ipv4Header::new(0, 64, IpNumber::UDP, CLIENT_IP, NODE_IP).unwrap()
}

/// The ones' complement sum of `data` (0xffff when a checksum over it verifies).
fn ones_sum(data: &[u8]) -> u16 {
    let mut s: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// Recomputes the IPv4 header checksum of an untagged frame after an edit.
fn fix_ip(f: &mut [u8]) {
    let ihl = usize::from(f[14] & 0xf) * 4;
    f[24..26].fill(0);
    let ck = !ones_sum(&f[14..14 + ihl]);
    f[24..26].copy_from_slice(&ck.to_be_bytes());
}

/// Recomputes the UDP checksum of an untagged frame with a 20-byte IPv4 header.
fn fix_udp(f: &mut [u8]) {
    let udp_len = u16::from_be_bytes([f[38], f[39]]);
    f[40..42].fill(0);
    let mut pseudo = Vec::new();
    pseudo.extend(&f[26..34]);
    pseudo.extend([0, 17]);
    pseudo.extend(udp_len.to_be_bytes());
    pseudo.extend(&f[34..34 + usize::from(udp_len)]);
    let ck = match !ones_sum(&pseudo) {
        0 => 0xffff,
        c => c,
    };
    f[40..42].copy_from_slice(&ck.to_be_bytes());
}

fn icmp_echo(request: bool, id: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(CLIENT_MAC, TO_NODE_MAC).ipv4(CLIENT_IP, NODE_IP, 64);
    let b = if request {
        eth.icmpv4_echo_request(id, seq)
    } else {
        eth.icmpv4_echo_reply(id, seq)
    };
    let mut f = Vec::new();
    b.write(&mut f, data).unwrap();
    f
}

/// Node A's frames: every answered case, then every drop reason, in one pcap.
fn cases_a() -> Vec<Case> {
    let mut c = Vec::new();
    let answer = |request: ShakeRequestRepr, outcome, src_port| Expect::Answer {
        request,
        outcome,
        vlan: None,
        src_port,
    };
    let r = req(2);
    c.push(Case {
        what: "valid shake in an active round, greeting probability 1",
        frame: shake_frame(&r, 40002),
        expect: answer(r, Outcome::Greeting, 40002),
    });
    let mut r2 = r;
    r2.seq += 1;
    c.push(Case {
        what: "the same user again at once",
        frame: shake_frame(&r2, 40002),
        expect: answer(r2, Outcome::Throttled, 40002),
    });
    let r = req(BLACKLISTED);
    c.push(Case {
        what: "blacklisted user",
        frame: shake_frame(&r, 40006),
        expect: answer(r, Outcome::Nothing, 40006),
    });
    let mut r = req(8);
    r.token ^= 0x0100;
    c.push(Case {
        what: "wrong token",
        frame: shake_frame(&r, 40008),
        expect: answer(r, Outcome::Denied, 40008),
    });
    let old = (unix_s() - 3600) as u32;
    let r = request(&TOKEN_KEY, 10, 1, old, 5);
    c.push(Case {
        what: "expired token (valid MAC)",
        frame: shake_frame(&r, 40010),
        expect: answer(r, Outcome::Denied, 40010),
    });
    let r = req(3);
    c.push(Case {
        what: "user of node 1 of 2",
        frame: shake_frame(&r, 40003),
        expect: answer(r, Outcome::Redirect, 40003),
    });
    let r = req(12);
    let mut ip = ip_header();
    ip.identification = 12;
    c.push(Case {
        what: "802.1Q tag 42",
        frame: udp_frame_with(ip, Some(42), 40012, &payload(&r)),
        expect: Expect::Answer {
            request: r,
            outcome: Outcome::Greeting,
            vlan: Some(42),
            src_port: 40012,
        },
    });
    let r = req(14);
    let mut ip = ip_header();
    // Router Alert, then NOP padding: 8 bytes of options, IHL 7.
    ip.options = Ipv4Options::try_from(&[0x94, 0x04, 0, 0, 1, 1, 1, 0][..]).unwrap();
    c.push(Case {
        what: "IPv4 with 8 bytes of options",
        frame: udp_frame_with(ip, None, 40014, &payload(&r)),
        expect: answer(r, Outcome::Greeting, 40014),
    });
    let r = req(16);
    let mut f = shake_frame(&r, 40016);
    f[40..42].fill(0);
    c.push(Case {
        what: "UDP checksum 0 (none)",
        frame: f,
        expect: answer(r, Outcome::Greeting, 40016),
    });
    let mut r = req(18);
    r.config_version = u32::MAX;
    c.push(Case {
        what: "client config newer than the node's: no CONFIG_STALE",
        frame: shake_frame(&r, 40018),
        expect: answer(r, Outcome::Greeting, 40018),
    });
    let r = req(20);
    let mut f = shake_frame(&r, 40020);
    f.extend([0xa5; 20]);
    c.push(Case {
        what: "Ethernet trailer after the IPv4 packet",
        frame: f,
        expect: answer(r, Outcome::Greeting, 40020),
    });
    c.push(Case {
        what: "ARP request for the node",
        frame: arp_request(CLIENT_MAC, CLIENT_IP, NODE_IP),
        expect: Expect::ArpReply,
    });
    let data: Vec<u8> = (0..48).collect();
    c.push(Case {
        what: "ICMP echo request",
        frame: icmp_echo(true, 0x1234, 7, &data),
        expect: Expect::EchoReply {
            id: 0x1234,
            seq: 7,
            data,
        },
    });

    // Drops, one per reason (some reasons twice, by different routes).
    let base = shake_frame(&req(22), 40022);
    let drop = |what, frame, reason| Case {
        what,
        frame,
        expect: Expect::Drop(reason),
    };
    c.push(drop("10-byte frame", base[..10].to_vec(), "truncated"));
    {
        let b = PacketBuilder::ethernet2(CLIENT_MAC, TO_NODE_MAC)
            .ipv6([0xfe; 16], [0xfd; 16], 64)
            .udp(40022, PORT);
        let mut f = Vec::new();
        b.write(&mut f, &payload(&req(22))).unwrap();
        c.push(drop("IPv6", f, "ethertype"));
    }
    {
        let b = PacketBuilder::ethernet2(CLIENT_MAC, TO_NODE_MAC)
            .double_vlan(5.try_into().unwrap(), 6.try_into().unwrap())
            .ipv4(CLIENT_IP, NODE_IP, 64)
            .udp(40022, PORT);
        let mut f = Vec::new();
        b.write(&mut f, &payload(&req(22))).unwrap();
        c.push(drop("two VLAN tags (QinQ)", f, "ethertype"));
    }
    c.push(drop(
        "ARP request for another address",
        arp_request(CLIENT_MAC, CLIENT_IP, [10, 99, 1, 2]),
        "arp_not_for_us",
    ));
    let mut f = base.clone();
    f[14] = 0x65;
    fix_ip(&mut f);
    c.push(drop("IP version 6 in an IPv4 frame", f, "ipv4_malformed"));
    let mut f = base.clone();
    f[16..18].copy_from_slice(&200u16.to_be_bytes());
    fix_ip(&mut f);
    c.push(drop(
        "IPv4 total length beyond the frame",
        f,
        "ipv4_malformed",
    ));
    let mut f = base.clone();
    f[24] ^= 0x5a;
    c.push(drop("wrong IPv4 header checksum", f, "ipv4_checksum"));
    let mut f = base.clone();
    f[33] = 77;
    fix_ip(&mut f);
    fix_udp(&mut f);
    c.push(drop("IPv4 to another address", f, "not_for_us"));
    let mut ip = ip_header();
    ip.more_fragments = true;
    ip.dont_fragment = false;
    c.push(drop(
        "first fragment (MF)",
        udp_frame_with(ip, None, 40022, &payload(&req(22))),
        "fragment",
    ));
    let mut ip = ip_header();
    ip.dont_fragment = false;
    ip.fragment_offset = 8.try_into().unwrap();
    c.push(drop(
        "last fragment (offset 64)",
        udp_frame_with(ip, None, 40022, &payload(&req(22))),
        "fragment",
    ));
    {
        let b = PacketBuilder::ethernet2(CLIENT_MAC, TO_NODE_MAC)
            .ipv4(CLIENT_IP, NODE_IP, 64)
            .tcp(40022, PORT, 1, 1000);
        let mut f = Vec::new();
        b.write(&mut f, &payload(&req(22))).unwrap();
        c.push(drop("TCP", f, "protocol"));
    }
    c.push(drop(
        "ICMP echo reply",
        icmp_echo(false, 1, 1, &[0; 8]),
        "icmp",
    ));
    let mut f = icmp_echo(true, 1, 1, &[0; 8]);
    let last = f.len() - 1;
    f[last] ^= 1;
    c.push(drop("ICMP echo request, wrong checksum", f, "icmp"));
    c.push(drop(
        "UDP to another port",
        udp_frame(40022, PORT + 1, &payload(&req(22))),
        "port",
    ));
    let mut f = base.clone();
    f[38..40].copy_from_slice(&4u16.to_be_bytes());
    c.push(drop("UDP length 4", f, "udp_malformed"));
    let mut f = base.clone();
    f[60] ^= 0x10;
    c.push(drop("wrong UDP checksum", f, "udp_checksum"));
    c.push(drop(
        "63-byte payload",
        udp_frame(40022, PORT, &payload(&req(22))[..63]),
        "payload_length",
    ));
    let mut long = payload(&req(22)).to_vec();
    long.push(0);
    c.push(drop(
        "65-byte payload",
        udp_frame(40022, PORT, &long),
        "payload_length",
    ));
    for (what, at, value, reason) in [
        ("wrong magic", 0, b'X', "magic"),
        ("version 2", 2, 2, "version"),
        ("kind RESULT sent to the node", 3, 0x81, "kind"),
        ("shakes 0", 5, 0, "zero_shakes"),
    ] {
        let mut p = payload(&req(22));
        p[at] = value;
        c.push(drop(what, udp_frame(40022, PORT, &p), reason));
    }
    c
}

/// Node B's frames: its round has not started.
fn cases_b() -> Vec<Case> {
    [30u64, 32]
        .into_iter()
        .map(|u| {
            let r = req(u);
            Case {
                what: "shake before the round",
                frame: shake_frame(&r, 41000 + u as u16),
                expect: Expect::Answer {
                    request: r,
                    outcome: Outcome::Closed,
                    vlan: None,
                    src_port: 41000 + u as u16,
                },
            }
        })
        .collect()
}

fn write_node(prefix: &str, node_count: u32, round: &str) -> NodeDir {
    let node = NodeDir::with_activity(&format!(
        r#"
[activity]
id = 9
name = "pcap cases"
epoch = 0

[[sponsor]]
id = 101
budget_cents = 100000
packets = 1000
greeting_resources = [77]

{round}
"#
    ));
    NodeToml::new("10.99.1.1", 10_000)
        .count(node_count)
        .port(PORT)
        .activity(r#"epoch = "now""#)
        .prometheus()
        .extra(&format!("[blacklist]\nusers = [{BLACKLISTED}]\n"))
        .extra(&dpdk_sections(
            prefix,
            "net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap",
            256,
            32,
            50,
        ))
        .write(node.path());
    node
}

/// Starts a node on `cases`; returns it with its directory.
fn start(name: &str, cases: &[Case], node_count: u32, round: &str) -> (NodeDir, Appliance) {
    let prefix = file_prefix(name);
    let node = write_node(&prefix, node_count, round);
    let frames: Vec<Vec<u8>> = cases.iter().map(|c| c.frame.clone()).collect();
    write_pcap(&node.path().join("in.pcap"), &frames);
    let app = Appliance::start(&node.config(), &prefix, None, true);
    (node, app)
}

/// Waits until every frame was received and every answer sent, stops the node with SIGTERM,
/// and checks its exit, output and counters.
fn finish(name: &str, dir: &Path, app: Appliance, cases: &[Case]) {
    let frames = cases.len() as u64;
    let answers = cases
        .iter()
        .filter(|c| !matches!(c.expect, Expect::Drop(_)))
        .count() as u64;
    let (text, done) = app.wait_metrics(Duration::from_secs(15), |t| {
        sum_metric(t, "shake_rx_frames_total", "") == frames
            && sum_metric(t, "shake_tx_frames_total", "") == answers
    });
    assert!(
        done,
        "{name}: not every frame was received and answered in time:\n{text}\nstderr:\n{}",
        app.stderr()
    );
    let mac = app.port_mac("net_pcap0");
    let stderr = app.stderr();
    let (status, lines) = app.stop(Duration::from_secs(15));
    assert!(
        status.success(),
        "{name}: exit {status} after SIGTERM; stderr:\n{stderr}"
    );
    let counters = final_counters(&lines);
    let get = |k: &str| counters.get(k).copied().unwrap_or(0);
    assert_eq!(get("rx"), frames, "{name}: {counters:?}");
    assert_eq!(get("tx"), answers, "{name}: {counters:?}");

    let out = read_pcap(&dir.join("out.pcap"));
    assert_eq!(out.len() as u64, answers, "{name}: frames in out.pcap");
    let mut out = out.iter();
    let mut outcomes: HashMap<&'static str, u64> = HashMap::new();
    let mut drops: HashMap<&'static str, u64> = HashMap::new();
    for case in cases {
        match &case.expect {
            Expect::Drop(reason) => *drops.entry(reason).or_insert(0) += 1,
            expect => {
                let frame = out.next().unwrap();
                check_frame(expect, frame, mac)
                    .unwrap_or_else(|e| panic!("{name}: {}: {e}\nframe {frame:02x?}", case.what));
                if let Expect::Answer { outcome, .. } = expect {
                    *outcomes.entry(outcome.name()).or_insert(0) += 1;
                }
            }
        }
    }
    for (reason, n) in &drops {
        assert_eq!(
            get(&format!("drop.{reason}")),
            *n,
            "{name}: drops counted under {reason}: {counters:?}"
        );
    }
    assert_eq!(
        get("dropped"),
        drops.values().sum::<u64>(),
        "{name}: every drop has its reason: {counters:?}"
    );
    for (outcome, n) in &outcomes {
        assert_eq!(get(outcome), *n, "{name}: {outcome}: {counters:?}");
    }
    let count = |f: fn(&Expect) -> bool| cases.iter().filter(|c| f(&c.expect)).count() as u64;
    assert_eq!(
        get("arp_reply"),
        count(|e| matches!(e, Expect::ArpReply)),
        "{name}: {counters:?}"
    );
    assert_eq!(
        get("icmp_echo_reply"),
        count(|e| matches!(e, Expect::EchoReply { .. })),
        "{name}: {counters:?}"
    );
    let blacklisted = count(
        |e| matches!(e, Expect::Answer { request, outcome: Outcome::Nothing, .. } if request.user_id == BLACKLISTED),
    );
    assert_eq!(get("blacklisted"), blacklisted, "{name}: {counters:?}");
}

/// Checks one output frame against what its request case expects.
fn check_frame(expect: &Expect, f: &[u8], mac: [u8; 6]) -> Result<(), String> {
    let p = SlicedPacket::from_ethernet(f).map_err(|e| format!("etherparse: {e}"))?;
    let eth = match &p.link {
        Some(etherparse::LinkSlice::Ethernet2(e)) => e,
        l => return Err(format!("link {l:?}")),
    };
    // Answers go back from the request's destination MAC (MACs swapped, SPEC section 1); an
    // ARP reply comes from the port's own MAC, the one it announces.
    let from = match expect {
        Expect::ArpReply => mac,
        _ => TO_NODE_MAC,
    };
    if eth.destination() != CLIENT_MAC || eth.source() != from {
        return Err(format!(
            "Ethernet {:02x?} -> {:02x?}, want {from:02x?} -> {CLIENT_MAC:02x?}",
            eth.source(),
            eth.destination()
        ));
    }
    if let Expect::ArpReply = expect {
        // etherparse 0.16 has no ARP; the layout is fixed (RFC 826 over Ethernet/IPv4).
        let a = &f[14..];
        let want: Vec<u8> = [0, 1, 8, 0, 6, 4, 0, 2]
            .iter()
            .chain(&mac)
            .chain(&NODE_IP)
            .chain(&CLIENT_MAC)
            .chain(&CLIENT_IP)
            .copied()
            .collect();
        if f[12..14] != [8, 6] || a[..28] != want[..] {
            return Err(format!("not our ARP reply: {a:02x?}"));
        }
        return Ok(());
    }
    let vlan = match &p.vlan {
        None => None,
        Some(VlanSlice::SingleVlan(v)) => Some(v.vlan_identifier().value()),
        Some(v) => return Err(format!("vlan {v:?}")),
    };
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        return Err("not IPv4".into());
    };
    let h = ip.header().to_header();
    if h.source != NODE_IP || h.destination != CLIENT_IP {
        return Err(format!("IPv4 {:?} -> {:?}", h.source, h.destination));
    }
    if h.time_to_live != 64 || !h.options.is_empty() {
        return Err(format!("ttl {} options {:?}", h.time_to_live, h.options));
    }
    if h.calc_header_checksum() != h.header_checksum {
        return Err("IPv4 header checksum wrong".into());
    }
    let ip_end = 14 + if vlan.is_some() { 4 } else { 0 } + usize::from(h.total_len);
    if f.len() != ip_end {
        return Err(format!("{} bytes, IPv4 ends at {ip_end}", f.len()));
    }
    match expect {
        Expect::EchoReply { id, seq, data } => {
            let Some(TransportSlice::Icmpv4(m)) = &p.transport else {
                return Err("not ICMP".into());
            };
            match m.icmp_type() {
                etherparse::Icmpv4Type::EchoReply(e) if e.id == *id && e.seq == *seq => {}
                t => return Err(format!("ICMP {t:?}")),
            }
            if m.payload() != &data[..] || ones_sum(m.slice()) != 0xffff {
                return Err("ICMP data or checksum".into());
            }
        }
        Expect::Answer {
            request,
            outcome,
            vlan: want_vlan,
            src_port,
        } => {
            if vlan != *want_vlan {
                return Err(format!("vlan {vlan:?}, want {want_vlan:?}"));
            }
            let Some(TransportSlice::Udp(u)) = &p.transport else {
                return Err("not UDP".into());
            };
            let uh = u.to_header();
            if uh.source_port != PORT || uh.destination_port != *src_port {
                return Err(format!(
                    "ports {} -> {}",
                    uh.source_port, uh.destination_port
                ));
            }
            let body = u.payload();
            if body.len() != 64 {
                return Err(format!("payload {} bytes", body.len()));
            }
            let ck = uh.calc_checksum_ipv4(&h, body).unwrap();
            if uh.checksum != ck {
                return Err(format!("UDP checksum {:#x}, want {ck:#x}", uh.checksum));
            }
            // SPEC offsets, read directly.
            let be32 = |at: usize| u32::from_be_bytes(body[at..at + 4].try_into().unwrap());
            let be64 = |at: usize| u64::from_be_bytes(body[at..at + 8].try_into().unwrap());
            if &body[..4] != b"SK\x01\x81" || body[4] != *outcome as u8 {
                return Err(format!(
                    "header {:02x?}, want outcome {outcome}",
                    &body[..6]
                ));
            }
            if be64(8) != request.user_id
                || be32(16) != request.seq
                || be64(24) != request.client_ts
            {
                return Err("echoed user_id, seq or client_ts".into());
            }
            let a = check_answer(request, body, &CLAIM_KEY).map_err(|e| e.to_string())?;
            let stale = a.flags & FLAG_CONFIG_STALE != 0;
            if stale != (request.config_version < a.config_version) || a.config_version == 0 {
                return Err(format!(
                    "flags {:#x} config_version {}",
                    a.flags, a.config_version
                ));
            }
            let retry = a.retry_after_ms;
            let ok = match outcome {
                Outcome::Greeting => {
                    a.sponsor_id == 101 && a.resource_id == 77 && a.round_id == 1 && retry == 5000
                }
                Outcome::Nothing => a.round_id == 1 && retry == 5000,
                // Every answer names the active round (node A's round 1), refusals too.
                Outcome::Throttled => retry > 0 && retry <= 5000 && a.round_id == 1,
                Outcome::Denied => a.round_id == 1 && a.resource_id == 0,
                Outcome::Redirect => a.resource_id == 1 && a.round_id == 1,
                Outcome::Closed => a.round_id == 7 && retry > 25_000 && retry <= 30_000,
                Outcome::RedPacket => false,
            };
            if !ok {
                return Err(format!("{outcome} answer fields: {a:?}"));
            }
        }
        Expect::ArpReply | Expect::Drop(_) => unreachable!(),
    }
    Ok(())
}

#[test]
fn pcap_of_every_case_answered_or_dropped_by_reason() {
    let a = cases_a();
    let b = cases_b();
    // Both nodes start at once (each its own DPDK process) and are checked one after the
    // other.
    let (dir_a, app_a) = start(
        "cases-a",
        &a,
        2,
        "[[round]]\nid = 1\nstart_s = 0\nduration_s = 600\nwin_probability = 0.0\ngreeting_probability = 1.0\n",
    );
    let (dir_b, app_b) = start(
        "cases-b",
        &b,
        1,
        "[[round]]\nid = 7\nstart_s = 30\nduration_s = 60\nwin_probability = 1.0\ngreeting_probability = 0.0\n",
    );
    finish("node A", dir_a.path(), app_a, &a);
    finish("node B", dir_b.path(), app_b, &b);
}
