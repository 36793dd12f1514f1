//! The DPDK appliance's counters add up, and sources that must never get an answer get none
//! (SPEC 2 and 4, issue 9 items 5 and 7). `shake serve --io dpdk` with two workers reads
//! one pcap per RX queue (net_pcap, two queues) and writes one per TX queue. The pcaps hold
//! a mix: valid shakes of users of both workers (so frames are handed over both ways),
//! ARP requests for the node (one an RFC 5227 probe from 0.0.0.0), ICMP echo requests,
//! invalid frames, and shakes, echoes and ARP requests from every kind of source the node
//! must not answer. Afterwards: rx = the frames in the pcaps, rx = answered + ARP replies +
//! ICMP echo replies + dropped exactly, every drop under its reason, and the output pcaps
//! hold exactly the answers, none to a bad source.
//!
//! `--no-pci --no-huge --no-shconf`, its own `--file-prefix`, net_pcap on files in a
//! temporary directory; bounded waits.
#![cfg(feature = "dpdk")]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::appliance::{
    arp_request, file_prefix, final_counters, read_pcap, sum_metric, write_pcap, Appliance,
};
use common::{unix_s, NodeDir, NodeToml, CLAIM_KEY, TOKEN_KEY};
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use shake::client::{check_answer, payload, request};
use shake::engine::config::owner_worker;
use shake::wire::shake::ShakeRequestRepr;

const NODE_IP: [u8; 4] = [10, 99, 7, 1];
const CLIENT_IP: [u8; 4] = [10, 99, 7, 9];
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 7, 9];
const TO_NODE_MAC: [u8; 6] = [2, 0, 0, 0, 7, 1];
const PORT: u16 = 7000;
const USERS: u64 = 200;

fn req(user: u64) -> ShakeRequestRepr {
    request(
        &TOKEN_KEY,
        user,
        user as u32,
        (unix_s() + 3600) as u32,
        user << 8,
    )
}

/// A shake frame of `r` from `(mac, ip, port)` to the node.
fn shake_from(mac: [u8; 6], ip: [u8; 4], port: u16, r: &ShakeRequestRepr) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(mac, TO_NODE_MAC)
        .ipv4(ip, NODE_IP, 64)
        .udp(port, PORT);
    let p = payload(r);
    let mut f = Vec::with_capacity(b.size(p.len()));
    b.write(&mut f, &p).unwrap();
    f
}

fn echo_from(mac: [u8; 6], ip: [u8; 4], id: u16) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(mac, TO_NODE_MAC)
        .ipv4(ip, NODE_IP, 64)
        .icmpv4_echo_request(id, 1);
    let mut f = Vec::new();
    b.write(&mut f, &[0x5a; 24]).unwrap();
    f
}

/// What the frames should become.
#[derive(Default)]
struct Expected {
    answers: u64,
    arp: u64,
    icmp: u64,
    drops: HashMap<&'static str, u64>,
}

/// The two pcaps' frames and what must become of them.
fn frames() -> ([Vec<Vec<u8>>; 2], Expected) {
    let mut q: [Vec<Vec<u8>>; 2] = [vec![], vec![]];
    let mut e = Expected::default();
    let mut at = 0usize;
    let mut put = |f: Vec<u8>| {
        q[at % 2].push(f);
        at += 1;
    };
    for user in 1..=USERS {
        put(shake_from(
            CLIENT_MAC,
            CLIENT_IP,
            30_000 + user as u16,
            &req(user),
        ));
        e.answers += 1;
    }
    put(arp_request(CLIENT_MAC, CLIENT_IP, NODE_IP));
    put(arp_request([2, 0, 0, 0, 7, 10], [10, 99, 7, 10], NODE_IP));
    // RFC 5227 probe for our address: answered, so the prober sees it is taken.
    put(arp_request([2, 0, 0, 0, 7, 11], [0; 4], NODE_IP));
    e.arp += 3;
    put(echo_from(CLIENT_MAC, CLIENT_IP, 1));
    put(echo_from(CLIENT_MAC, [10, 99, 8, 8], 2));
    e.icmp += 2;

    let mut dropped = |f: Vec<u8>, reason: &'static str, put: &mut dyn FnMut(Vec<u8>)| {
        put(f);
        *e.drops.entry(reason).or_insert(0) += 1;
    };
    let user = 10_000;
    let good = shake_from(CLIENT_MAC, CLIENT_IP, 30_000, &req(user));
    let mut f = good.clone();
    f[42] = b'X';
    // The UDP checksum no longer matches: fix it by zeroing (no checksum).
    f[40..42].fill(0);
    dropped(f, "magic", &mut put);
    let mut f = good.clone();
    f[24] ^= 0x55;
    dropped(f, "ipv4_checksum", &mut put);
    dropped(good[..10].to_vec(), "truncated", &mut put);
    dropped(
        shake_from(CLIENT_MAC, CLIENT_IP, 30_000, &req(user))
            .into_iter()
            .enumerate()
            .map(|(i, b)| if i == 37 { b ^ 1 } else { b })
            .collect(),
        "port",
        &mut put,
    );
    // Sources that must never get an answer: shakes (valid otherwise) from each.
    let mac = CLIENT_MAC;
    for (i, (m, ip, port)) in [
        (mac, [0, 0, 0, 0], 4000),
        (mac, [0, 1, 2, 3], 4000),
        (mac, [255, 255, 255, 255], 4000),
        (mac, [224, 0, 0, 1], 4000),
        (mac, [239, 1, 1, 1], 4000),
        (mac, [240, 0, 0, 1], 4000),
        (mac, [127, 0, 0, 1], 4000),
        (mac, NODE_IP, 4000),
        (mac, CLIENT_IP, 0),
        ([0xff; 6], CLIENT_IP, 4000),
        ([1, 0, 0x5e, 0, 0, 1], CLIENT_IP, 4000),
    ]
    .into_iter()
    .enumerate()
    {
        dropped(
            shake_from(m, ip, port, &req(20_000 + i as u64)),
            "source",
            &mut put,
        );
    }
    // Echoes: the Smurf reflection, and a loop to ourselves.
    dropped(echo_from(mac, [255, 255, 255, 255], 3), "source", &mut put);
    dropped(echo_from(mac, [224, 0, 0, 5], 4), "source", &mut put);
    dropped(echo_from(mac, NODE_IP, 5), "source", &mut put);
    // ARP from senders no host has, or to a group hardware address.
    dropped(
        arp_request(mac, [127, 0, 0, 1], NODE_IP),
        "source",
        &mut put,
    );
    dropped(arp_request(mac, [255; 4], NODE_IP), "source", &mut put);
    dropped(
        arp_request([0xff; 6], CLIENT_IP, NODE_IP),
        "source",
        &mut put,
    );
    // Another station claims our address.
    dropped(
        arp_request([2, 0, 0, 0, 7, 66], NODE_IP, NODE_IP),
        "arp_conflict",
        &mut put,
    );
    dropped(
        arp_request(mac, CLIENT_IP, [10, 99, 7, 2]),
        "arp_not_for_us",
        &mut put,
    );
    (q, e)
}

#[test]
fn two_workers_count_every_frame_once_and_answer_no_bad_source() {
    let node = NodeDir::with_activity(
        r#"
[activity]
id = 17
name = "dpdk counters"
epoch = 0

[[sponsor]]
id = 101
budget_cents = 100000
packets = 1000
greeting_resources = [7]

[[round]]
id = 1
start_s = 0
duration_s = 600
win_probability = 0.0
greeting_probability = 0.5
"#,
    );
    let p = node.path();
    let prefix = file_prefix("counters");
    let config = NodeToml::new("10.99.7.1", 10_000)
        .port(PORT)
        .activity(r#"epoch = "now""#)
        .prometheus()
        .extra(&format!(
            r#"
[dpdk]
# Three lcores on the machine's first two CPUs: main, worker 0, worker 1.
lcores = "(0-2)@(0-1)"
main_lcore = 0
memory_mb = 256
huge = false
telemetry = false
file_prefix = "{prefix}"
vdevs = ["net_pcap0,rx_pcap=in0.pcap,rx_pcap=in1.pcap,tx_pcap=out0.pcap,tx_pcap=out1.pcap"]
log_level = "error"
idle_sleep_us = 50

[[port]]
name = "net_pcap0"
rx_desc = 256
tx_desc = 256
mempool_cache = 32
"#
        ))
        .write(p);
    let (queues, e) = frames();
    // Both workers own users, and each queue carries users of both: frames cross over.
    for q in &queues {
        let owners: Vec<u32> = q
            .iter()
            .filter_map(|f| shake::frame::peek_user(f))
            .map(|u| owner_worker(u, 1, 2))
            .collect();
        assert!(owners.contains(&0) && owners.contains(&1));
    }
    write_pcap(&p.join("in0.pcap"), &queues[0]);
    write_pcap(&p.join("in1.pcap"), &queues[1]);
    let total = (queues[0].len() + queues[1].len()) as u64;
    let dropped: u64 = e.drops.values().sum();
    let sent = e.answers + e.arp + e.icmp;
    assert_eq!(total, sent + dropped);

    let app = Appliance::start(&config, &prefix, None, true);
    let (text, done) = app.wait_metrics(Duration::from_secs(20), |t| {
        sum_metric(t, "shake_rx_frames_total", "") == total
            && sum_metric(t, "shake_tx_frames_total", "") + sum_metric(t, "shake_drops_total", "")
                == total
    });
    assert!(done, "not every frame accounted for in time:\n{text}");
    let (status, lines) = app.stop(Duration::from_secs(15));
    assert!(status.success(), "exit {status}");
    let c = final_counters(&lines);
    let get = |k: &str| c.get(k).copied().unwrap_or(0);
    assert_eq!(get("rx"), total, "each frame counted once: {c:?}");
    assert_eq!(get("answered"), e.answers, "{c:?}");
    assert_eq!(get("arp_reply"), e.arp, "{c:?}");
    assert_eq!(get("icmp_echo_reply"), e.icmp, "{c:?}");
    assert_eq!(get("tx"), sent, "{c:?}");
    assert_eq!(get("dropped"), dropped, "{c:?}");
    assert_eq!(
        get("rx"),
        get("answered") + get("arp_reply") + get("icmp_echo_reply") + get("dropped"),
        "rx = answered + ARP + ICMP + dropped: {c:?}"
    );
    for (reason, n) in &e.drops {
        assert_eq!(get(&format!("drop.{reason}")), *n, "{reason}: {c:?}");
    }

    // The answers on the wire: exactly `sent`, and every one to a good source.
    let out: Vec<Vec<u8>> = ["out0.pcap", "out1.pcap"]
        .iter()
        .flat_map(|f| read_pcap(&p.join(f)))
        .collect();
    assert_eq!(out.len() as u64, sent, "frames written");
    let requests: HashMap<u64, ShakeRequestRepr> = (1..=USERS).map(|u| (u, req(u))).collect();
    let (mut shakes, mut arps, mut echoes, mut probe_replies) = (0, 0, 0, 0);
    for f in &out {
        let good_mac = [CLIENT_MAC, [2, 0, 0, 0, 7, 10], [2, 0, 0, 0, 7, 11]];
        assert!(
            good_mac.contains(&f[..6].try_into().unwrap()),
            "to {:02x?}",
            &f[..6]
        );
        if f[12..14] == [0x08, 0x06] {
            arps += 1;
            if f[38..42] == [0; 4] {
                probe_replies += 1;
            }
            continue;
        }
        let s = SlicedPacket::from_ethernet(f).unwrap();
        let Some(NetSlice::Ipv4(ip)) = &s.net else {
            panic!("not IPv4: {f:02x?}")
        };
        let dst = ip.header().destination();
        assert!(dst == CLIENT_IP || dst == [10, 99, 8, 8], "to {dst:?}");
        match &s.transport {
            Some(TransportSlice::Udp(u)) => {
                let a = u.payload();
                let user = u64::from_be_bytes(a[8..16].try_into().unwrap());
                check_answer(&requests[&user], a, &CLAIM_KEY).unwrap();
                shakes += 1;
            }
            Some(TransportSlice::Icmpv4(_)) => echoes += 1,
            t => panic!("{t:?}"),
        }
    }
    assert_eq!((shakes, arps, echoes), (e.answers, e.arp, e.icmp));
    assert_eq!(
        probe_replies, 1,
        "the probe's reply goes back with target 0.0.0.0"
    );
}
