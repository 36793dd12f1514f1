//! The SHAKE/1 dissector (`bench/shake.lua`) in Debian's tshark, checked field by field
//! against the node's own wire parser:
//! - over the requests the generator wrote (`shake-gen --io none --pcap-out`, IPv4 and IPv6),
//! - over crafted frames: every request the node drops (SPEC 2: source, payload length,
//!   magic, version, kind, shakes = 0) gets the node's drop reason and expert info, and
//!   nothing else does;
//! - (DPDK) over the node's answers to both: the generator's requests and the crafted frames
//!   go through `shake serve --io dpdk` on net_pcap; every answer's fields are the ones our
//!   parser reads, requests and answers are matched, and the node's drop counters are, reason
//!   by reason, the dissector's drop reasons.
//!
//! The live capture of a running node is dissected in `dpdk_capture.rs`. Each test says
//! SKIPPED and passes where tshark is not installed (`make deps` installs it).

mod common;

use std::process::Command;

use common::tshark::{self, fields, request_row, udp_of, verbose, REQUEST_FIELDS};
use common::{gen_bin, run_ok, unix_s, NodeDir, NodeToml, TOKEN_KEY};
use shake::client::{payload, request, Flow, Flow6};

const NODE_IP: [u8; 4] = [10, 99, 5, 1];
const NODE_IP6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const NODE_MAC: [u8; 6] = [2, 0x53, 0x4b, 0, 0, 1];
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 9];

/// A node directory (node 0 of 2, so some users are REDIRECTed; IPv4 and IPv6) whose one
/// round starts when the node does, and `count` requests from `shake-gen --io none` for it:
/// a quarter of the users with bad tokens, a fifth owned by the other node, half of them
/// over IPv6, every user shaking twice (so the second is THROTTLED).
fn generator_requests(count: u64) -> (NodeDir, Vec<Vec<u8>>) {
    let node = NodeDir::with_activity(
        r#"
[activity]
id = 9
name = "dissector test"
epoch = 0

[[sponsor]]
id = 101
budget_cents = 6000000
packets = 60000
greeting_resources = [7]

[[round]]
id = 3
start_s = 0
duration_s = 60
win_probability = 0.5
greeting_probability = 0.3
"#,
    );
    let text = NodeToml::new("10.99.5.1", 10_000)
        .count(2)
        .port(7000)
        .activity(r#"epoch = "now""#)
        .text();
    let v4 = "ipv4 = \"10.99.5.1\"";
    assert!(text.contains(v4));
    let text = text.replacen(v4, &format!("{v4}\nipv6 = \"2001:db8:5::1\""), 1);
    std::fs::write(node.config(), text).unwrap();
    let pcap = node.path().join("requests.pcap");
    run_ok(
        Command::new(gen_bin())
            .args(["--io", "none", "--quiet", "--node-config"])
            .arg(node.config())
            .args([
                "--users",
                &(count / 2).to_string(),
                "--count",
                &count.to_string(),
            ])
            .args(["--bad-share", "0.25", "--foreign-share", "0.2"])
            .args(["--ipv6-share", "0.5", "--dst-mac", "02:53:4b:00:00:01"])
            .arg("--pcap-out")
            .arg(&pcap),
    );
    let frames = common::pcap::read_pcap(&pcap);
    assert_eq!(frames.len() as u64, count);
    (node, frames)
}

#[test]
fn dissects_the_generators_requests_field_by_field() {
    let Some(tshark) = tshark::tshark("dissects_the_generators_requests_field_by_field") else {
        return;
    };
    let (node, frames) = generator_requests(60);
    let pcap = node.path().join("requests.pcap");
    let rows = fields(&tshark, &pcap, false, REQUEST_FIELDS);
    assert_eq!(rows.len(), frames.len());
    let mut families = [0; 2];
    for (i, (frame, row)) in frames.iter().zip(&rows).enumerate() {
        let (_, dst_port, p) = udp_of(frame).expect("a UDP frame");
        assert_eq!(dst_port, 7000);
        families[usize::from(frame[12..14] == [0x86, 0xdd])] += 1;
        assert_eq!(row, &request_row(p), "frame {}", i + 1);
    }
    assert!(
        families[0] > 0 && families[1] > 0,
        "IPv4 and IPv6: {families:?}"
    );
    let v = verbose(&tshark, &pcap, "frame.number == 1");
    for line in [
        "SHAKE/1 request",
        "Kind: SHAKE (0x01)",
        "Shakes: 1",
        "Token: 0x",
    ] {
        assert!(v.contains(line), "no {line:?} in:\n{v}");
    }
}

/// A crafted frame and what the node does with it: answer it, or drop it for a reason.
struct Case {
    what: &'static str,
    frame: Vec<u8>,
    /// The dissector's `shake.drop_reason` (None: no drop, or not to the node's port).
    reason: Option<&'static str>,
    /// Parts of its expert messages (all of them, in order).
    experts: &'static [&'static str],
    /// What `shake.direction` says ("" where the dissector leaves the datagram alone).
    direction: &'static str,
}

fn v4(src_mac: [u8; 6], src_ip: [u8; 4], ports: (u16, u16), payload: &[u8]) -> Vec<u8> {
    let flow = Flow {
        src_mac,
        dst_mac: NODE_MAC,
        vlan: None,
        src_ip,
        dst_ip: NODE_IP,
        src_port: ports.0,
        dst_port: ports.1,
    };
    let mut f = vec![0u8; flow.frame_len() + 8];
    let n = flow.emit(&mut f, payload, 7);
    f.truncate(n);
    f
}

fn v6(src_ip: [u8; 16], payload: &[u8]) -> Vec<u8> {
    let flow = Flow6 {
        src_mac: CLIENT_MAC,
        dst_mac: NODE_MAC,
        vlan: None,
        src_ip,
        dst_ip: NODE_IP6,
        src_port: 40001,
        dst_port: 7000,
    };
    let mut f = vec![0u8; flow.frame_len() + 8];
    let n = flow.emit(&mut f, payload);
    f.truncate(n);
    f
}

fn ip6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>().unwrap().octets()
}

/// Valid, wrong in each way the node checks, from each kind of source it never answers,
/// and off the node's port.
fn crafted() -> Vec<Case> {
    let expiry = (unix_s() + 3600) as u32;
    let good = |user: u64| payload(&request(&TOKEN_KEY, user, 1, expiry, 77));
    let with = |user: u64, edit: &dyn Fn(&mut Vec<u8>)| {
        let mut p = good(user).to_vec();
        edit(&mut p);
        p
    };
    let client = (CLIENT_MAC, [10, 99, 5, 9]);
    let to_node = |p: &[u8]| v4(client.0, client.1, (40000, 7000), p);
    let from = |ip: [u8; 4], p: &[u8]| v4(client.0, ip, (40000, 7000), p);
    let case = |what, frame, reason, experts, direction| Case {
        what,
        frame,
        reason,
        experts,
        direction,
    };
    let mut unknown_outcome = good(1_000_020).to_vec();
    unknown_outcome[3] = 0x81;
    unknown_outcome[4] = 9;
    vec![
        case("valid", to_node(&good(1_000_000)), None, &[], "to the node"),
        case(
            "valid over IPv6",
            v6(ip6("2001:db8:9::9"), &good(1_000_002)),
            None,
            &[],
            "to the node",
        ),
        case(
            "63 bytes",
            to_node(&good(1_000_004)[..63]),
            Some("payload_length"),
            &["Payload is 63 bytes, not 64: the node drops it (payload_length)"],
            "to the node",
        ),
        case(
            "65 bytes",
            to_node(&with(1_000_006, &|p| p.push(0))),
            Some("payload_length"),
            &["Payload is 65 bytes, not 64: the node drops it (payload_length)"],
            "to the node",
        ),
        case(
            "magic",
            to_node(&with(1_000_008, &|p| p[1] = b'X')),
            Some("magic"),
            &["Magic is 0x5358, not \"SK\": the node drops it (magic)"],
            "to the node",
        ),
        case(
            "version",
            to_node(&with(1_000_010, &|p| p[2] = 2)),
            Some("version"),
            &["Version 2, not 1: the node drops it (version)"],
            "to the node",
        ),
        case(
            "an answer sent to the node",
            to_node(&with(1_000_012, &|p| p[3] = 0x81)),
            Some("kind"),
            &["Kind 0x81 sent to the node, not SHAKE (0x01): the node drops it (kind)"],
            "to the node",
        ),
        case(
            "kind 2",
            to_node(&with(1_000_014, &|p| p[3] = 2)),
            Some("kind"),
            &["Kind 0x02 sent to the node, not SHAKE (0x01): the node drops it (kind)"],
            "to the node",
        ),
        case(
            "shakes = 0",
            to_node(&with(1_000_016, &|p| p[4..6].fill(0))),
            Some("zero_shakes"),
            &["shakes = 0, at least 1: the node drops it (zero_shakes)"],
            "to the node",
        ),
        case(
            "version and shakes",
            to_node(&with(1_000_018, &|p| {
                p[2] = 0;
                p[4..6].fill(0)
            })),
            Some("version"),
            &[
                "Version 0, not 1: the node drops it (version)",
                "shakes = 0, at least 1 (also wrong; the node counts the drop as version)",
            ],
            "to the node",
        ),
        case(
            "reserved and padding not zero",
            to_node(&with(1_000_022, &|p| {
                p[7] = 1;
                p[63] = 1
            })),
            None,
            &[
                "Not zero (the node ignores it",
                "Not zero (the node ignores it",
            ],
            "to the node",
        ),
        case(
            "UDP source port 0",
            v4(client.0, client.1, (0, 7000), &good(1_000_024)),
            Some("source"),
            &["From UDP source port 0, which never gets an answer: the node drops it (source)"],
            "to the node",
        ),
        case(
            "loopback",
            from([127, 0, 0, 1], &good(1_000_026)),
            Some("source"),
            &["From a loopback source"],
            "to the node",
        ),
        case(
            "broadcast",
            from([255, 255, 255, 255], &good(1_000_028)),
            Some("source"),
            &["From a reserved or broadcast source"],
            "to the node",
        ),
        case(
            "0.0.0.0",
            from([0, 0, 0, 0], &good(1_000_030)),
            Some("source"),
            &["From a 0.0.0.0/8 source"],
            "to the node",
        ),
        case(
            "multicast",
            from([224, 1, 2, 3], &good(1_000_032)),
            Some("source"),
            &["From a multicast source"],
            "to the node",
        ),
        case(
            "group Ethernet source",
            v4(
                [3, 0, 0, 0, 0, 9],
                client.1,
                (40000, 7000),
                &good(1_000_034),
            ),
            Some("source"),
            // Wireshark's Ethernet dissector says so too.
            &[
                "Source MAC must not be a group address",
                "From a group (multicast) Ethernet source",
            ],
            "to the node",
        ),
        case(
            "::1",
            v6(ip6("::1"), &good(1_000_036)),
            Some("source"),
            &["From the loopback source ::1"],
            "to the node",
        ),
        case(
            "IPv4-mapped",
            v6(ip6("::ffff:10.99.5.9"), &good(1_000_038)),
            Some("source"),
            &["From an IPv4-mapped source"],
            "to the node",
        ),
        case(
            "IPv6 multicast",
            v6(ip6("ff02::1"), &good(1_000_040)),
            Some("source"),
            &["From a multicast source"],
            "to the node",
        ),
        case(
            "a request on another port (the heuristic)",
            v4(client.0, client.1, (5000, 5001), &good(1_000_042)),
            None,
            &[],
            "to the node",
        ),
        case(
            "not SHAKE/1 on another port",
            v4(client.0, client.1, (5000, 5001), &[0x5a; 64]),
            None,
            &[],
            "",
        ),
        case(
            "an answer with outcome 9",
            v4(client.0, client.1, (7000, 40000), &unknown_outcome),
            None,
            &["Unknown outcome 9"],
            "from the node",
        ),
    ]
}

#[test]
fn flags_every_request_the_node_drops_and_nothing_else() {
    let Some(tshark) = tshark::tshark("flags_every_request_the_node_drops_and_nothing_else") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cases = crafted();
    let pcap = dir.path().join("crafted.pcap");
    common::pcap::write_pcap(
        &pcap,
        &cases.iter().map(|c| c.frame.clone()).collect::<Vec<_>>(),
    );
    let rows = fields(
        &tshark,
        &pcap,
        false,
        &[
            "shake.direction",
            "shake.drop_reason",
            "_ws.expert.message",
            "shake.user_id",
        ],
    );
    assert_eq!(rows.len(), cases.len());
    for (c, row) in cases.iter().zip(&rows) {
        assert_eq!(row[0], c.direction, "{}: {row:?}", c.what);
        assert_eq!(row[1], c.reason.unwrap_or(""), "{}: {row:?}", c.what);
        let messages: Vec<&str> = row[2].split('|').filter(|m| !m.is_empty()).collect();
        assert_eq!(messages.len(), c.experts.len(), "{}: {messages:?}", c.what);
        for (m, want) in messages.iter().zip(c.experts) {
            assert!(m.contains(want), "{}: {m:?} is not {want:?}", c.what);
        }
        // Every field the request has is shown, also on a request the node drops.
        if c.direction == "to the node" && c.frame.len() >= 42 + 16 {
            let (_, _, p) = udp_of(&c.frame).unwrap();
            let user = u64::from_be_bytes(p[8..16].try_into().unwrap());
            assert_eq!(row[3], user.to_string(), "{}", c.what);
        }
    }
}

/// Requests and the node's answers, each answer right after its request, in one pcap for
/// tshark. Returns the frames and, per frame, the index of the request it answers (None for
/// a request).
#[cfg(feature = "dpdk")]
fn interleave(requests: &[Vec<u8>], answers: &[Vec<u8>]) -> (Vec<Vec<u8>>, Vec<Option<usize>>) {
    use std::collections::HashMap;
    let key = |p: &[u8]| (p[8..16].to_vec(), p[16..20].to_vec(), p[24..32].to_vec());
    let mut by_key: HashMap<_, &Vec<u8>> = HashMap::new();
    for a in answers {
        let (_, _, p) = udp_of(a).expect("an answer is UDP");
        assert!(by_key.insert(key(p), a).is_none(), "one answer per request");
    }
    let mut frames = Vec::new();
    let mut answers_to = Vec::new();
    for r in requests {
        frames.push(r.clone());
        answers_to.push(None);
        let answered = udp_of(r)
            .filter(|(_, port, p)| *port == 7000 && p.len() == 64)
            .and_then(|(_, _, p)| by_key.remove(&key(p)));
        if let Some(a) = answered {
            answers_to.push(Some(frames.len() - 1));
            frames.push(a.clone());
        }
    }
    assert!(
        by_key.is_empty(),
        "answers without a request: {}",
        by_key.len()
    );
    (frames, answers_to)
}

/// Round time that passes between the node's first shake and the rest, so that red packets
/// (paced from the moment a worker first sees the round) are due: 30000 packets * 0.3 s /
/// 60 s = 150.
#[cfg(feature = "dpdk")]
const PACED: std::time::Duration = std::time::Duration::from_millis(300);

#[cfg(feature = "dpdk")]
#[test]
fn reads_the_nodes_answers_and_agrees_with_its_drops() {
    use std::collections::HashMap;
    use std::time::{Duration, Instant};

    use common::appliance::{file_prefix, final_counters, memif_server_sections, Appliance};
    use common::memif::MemifClient;
    use common::pcap::write_pcap;
    use common::tshark::{answer_row, ANSWER_FIELDS};
    use shake::wire::shake::Outcome;

    let Some(tshark) = tshark::tshark("reads_the_nodes_answers_and_agrees_with_its_drops") else {
        return;
    };
    let (node, generated) = generator_requests(200);
    let cases = crafted();
    let p = node.path();

    // The node on a memif server port; this test is its client.
    let prefix = file_prefix("dissector-node");
    let socket = p.join(format!("shake-test-{}.memif", std::process::id()));
    let config =
        std::fs::read_to_string(node.config()).unwrap() + &memif_server_sections(&prefix, &socket);
    std::fs::write(node.config(), config).unwrap();
    let app = Appliance::start(&node.config(), &prefix, None, false);
    let mut client = MemifClient::connect(
        &file_prefix("dissector-client"),
        &socket,
        Duration::from_secs(10),
    );
    let expiry = (unix_s() + 3600) as u32;
    let warm = v4(
        CLIENT_MAC,
        [10, 99, 5, 9],
        (40000, 7000),
        &payload(&request(&TOKEN_KEY, 999_998, 1, expiry, 0)),
    );
    let warm_answer = client.exchange_one(warm.clone());
    // Not a wait for something to happen: a span of round time the test needs to elapse.
    std::thread::sleep(PACED);

    // Every request goes; the node answers those it owes an answer and drops the rest, so
    // the drive ends once nothing came for a while.
    let mut requests = vec![warm];
    requests.extend(generated.iter().cloned());
    requests.extend(cases.iter().map(|c| c.frame.clone()));
    let mut answers = vec![warm_answer];
    let mut queue = requests[1..].iter().cloned();
    let driven = client.drive(
        || queue.next(),
        64,
        Duration::from_millis(500),
        Instant::now() + Duration::from_secs(20),
        |a| answers.push(a.to_vec()),
    );
    assert_eq!(driven.sent as usize, requests.len() - 1);
    let (status, lines) = app.stop(Duration::from_secs(15));
    assert!(status.success(), "appliance exit {status}");
    let counters = final_counters(&lines);
    assert_eq!(counters["rx"], requests.len() as u64, "{counters:?}");
    assert_eq!(counters["tx"], answers.len() as u64, "{counters:?}");

    // Every answer, field by field, and each matched to its request both ways.
    let (frames, answers_to) = interleave(&requests, &answers);
    assert_eq!(frames.len(), requests.len() + answers.len());
    let pcap = p.join("both.pcap");
    write_pcap(&pcap, &frames);
    let mut names = ANSWER_FIELDS.to_vec();
    names.extend(["shake.request_in", "shake.response_in", "shake.drop_reason"]);
    let rows = fields(&tshark, &pcap, true, &names);
    assert_eq!(rows.len(), frames.len());
    let column = |name: &str| names.iter().position(|n| *n == name).unwrap();
    let (request_in, response_in, drop_reason) = (
        column("shake.request_in"),
        column("shake.response_in"),
        column("shake.drop_reason"),
    );

    // The node's drops, reason by reason, are what the dissector says of the requests it
    // was sent (the frames off its port it drops as `port`, which is not the dissector's
    // business), and a request the dissector says it drops has no answer.
    let mut dissector: HashMap<String, u64> = HashMap::new();
    for (i, (frame, row)) in frames.iter().zip(&rows).enumerate() {
        if answers_to[i].is_some() {
            continue;
        }
        let reason = match udp_of(frame) {
            Some((_, 7000, _)) => &row[drop_reason],
            _ => "port",
        };
        if !reason.is_empty() {
            *dissector.entry(reason.to_owned()).or_default() += 1;
            assert!(row[response_in].is_empty(), "frame {}: answered", i + 1);
        }
    }
    let node_drops: HashMap<String, u64> = counters
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("drop.")?.to_owned(), *v)))
        .collect();
    assert_eq!(node_drops, dissector, "node {counters:?}");
    let mut outcomes: HashMap<u8, u64> = HashMap::new();
    for (i, (frame, row)) in frames.iter().zip(&rows).enumerate() {
        let (request_in, response_in) = (&row[request_in], &row[response_in]);
        match answers_to[i] {
            Some(req) => {
                let (_, _, p) = udp_of(frame).unwrap();
                assert_eq!(
                    &row[..ANSWER_FIELDS.len()],
                    &answer_row(p)[..],
                    "frame {}",
                    i + 1
                );
                assert_eq!(request_in, &(req + 1).to_string(), "frame {}", i + 1);
                *outcomes.entry(p[4]).or_default() += 1;
            }
            None => {
                let answered = answers_to.get(i + 1).copied().flatten() == Some(i);
                let want = if answered {
                    (i + 2).to_string()
                } else {
                    String::new()
                };
                assert_eq!(response_in, &want, "frame {}", i + 1);
            }
        }
    }
    for o in [
        Outcome::RedPacket,
        Outcome::Greeting,
        Outcome::Throttled,
        Outcome::Denied,
        Outcome::Redirect,
    ] {
        assert!(
            outcomes.contains_key(&(o as u8)),
            "no {o:?} among {outcomes:?}; node {counters:?}"
        );
    }
    let red = verbose(&tshark, &pcap, "shake.outcome == 2");
    for line in [
        "Outcome: RED_PACKET (2)",
        "Kind: RESULT (0x81)",
        "Claim MAC: 0x",
        "Round id: 3",
        "[Request in: ",
    ] {
        assert!(red.contains(line), "no {line:?} in:\n{red}");
    }
    let redirect = verbose(&tshark, &pcap, "shake.outcome == 6");
    assert!(redirect.contains("Owner node: 1"), "{redirect}");
}
