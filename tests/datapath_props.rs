//! Properties of the datapath over random input: no panics, answers never grow, every answer
//! decodes with an independent parser (etherparse), and across a million random shakes no
//! packet is issued twice and no user passes a limit.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::OnceLock;

use proptest::prelude::*;
use shake::activity::Activity;
use shake::client::{self, Flow, Flow6};
use shake::engine::users::UserTable;
use shake::engine::winners::WinnerTable;
use shake::engine::{Identity, Live, Throttle, Worker};
use shake::frame::{process_burst, FrameConfig, Ipv6Addrs, Verdict};
use shake::journal::MemoryJournal;
use shake::mac::MacKey;
use shake::seed::{plan, MemorySource, SeedRecord};
use shake::wire::shake::Outcome;

const TOKEN: MacKey = MacKey::from_bytes([3; 16]);
const CLAIM: MacKey = MacKey::from_bytes([4; 16]);
const IP: [u8; 4] = [192, 0, 2, 1];
const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const START_MS: u64 = 1_000_000;

fn activity(per_user: u8, per_sponsor: u8) -> Activity {
    Activity::parse(
        Path::new("props.toml"),
        &format!(
            r#"
[activity]
id = 77
name = "props"
epoch = 1000
[limits]
per_user = {per_user}
per_sponsor = {per_sponsor}
[[sponsor]]
id = 1
budget_cents = 2000000
packets = 20000
greeting_resources = [1]
[[sponsor]]
id = 2
budget_cents = 2000000
packets = 20000
[[sponsor]]
id = 3
budget_cents = 2000000
packets = 20000
[[sponsor]]
id = 4
budget_cents = 2000000
packets = 20000
[[round]]
id = 1
start_s = 0
duration_s = 100
win_probability = 0.5
greeting_probability = 0.2
"#
        ),
    )
    .unwrap()
}

/// The activity every test here serves (limits 3 per user, 1 per sponsor) and its one shard's
/// records, planned once: planning its 80,000 packets was most of a property case's time, and
/// the plan is the same every time (same activity, same seed). Every case still gets a fresh
/// worker with a copy of them.
fn fixture() -> &'static (Activity, Vec<SeedRecord>) {
    static FIXTURE: OnceLock<(Activity, Vec<SeedRecord>)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let a = activity(3, 1);
        let planned = plan::plan(&a, 1, 1, 5);
        let records = plan::shard_records(&planned, 0);
        (a, records)
    })
}

/// The user table of a worker that sees one frame: one entry is all it needs, and zeroing a
/// table for a million users per property case was most of the case's time.
const ONE_FRAME_USERS: usize = 1 << 10;

fn worker() -> Worker<MemorySource, MemoryJournal> {
    worker_with_users(1 << 20)
}

fn worker_with_users(users: usize) -> Worker<MemorySource, MemoryJournal> {
    let (a, records) = fixture();
    let live = Live::new(
        a,
        Identity {
            node_index: 0,
            node_count: 1,
            token_key: TOKEN,
            claim_key: CLAIM,
        },
        Throttle {
            floor_ms: 1,
            ceiling_ms: 1,
            ..Throttle::default()
        },
        None,
        0,
        Default::default(),
        1,
    );
    let n = records.len();
    Worker::new(
        live,
        UserTable::new(users, 0),
        WinnerTable::with_capacity(n),
        MemorySource::new(records.clone(), a.rounds.len()),
        MemoryJournal::with_capacity(n),
        9,
    )
}

fn cfg() -> FrameConfig {
    FrameConfig {
        ipv4: IP,
        ipv6: None,
        mac: MAC,
        udp_port: 7000,
        tx_udp_offload: false,
        tx_ipv4_offload: false,
    }
}

const IP6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

fn cfg6() -> FrameConfig {
    FrameConfig {
        ipv6: Some(Ipv6Addrs::new(IP6, None, MAC)),
        ..cfg()
    }
}

fn flow6(src_ip: [u8; 16], src_port: u16, vlan: Option<u16>) -> Flow6 {
    Flow6 {
        src_mac: [2, 0, 0, 0, 0, 9],
        dst_mac: MAC,
        vlan,
        src_ip,
        dst_ip: IP6,
        src_port,
        dst_port: 7000,
    }
}

/// Runs one frame through a fresh worker with IPv6.
fn decide6(f: &mut [u8]) -> Verdict {
    let mut w = worker_with_users(ONE_FRAME_USERS);
    w.begin_burst(START_MS + 50_000);
    let mut frames = [f];
    let mut v = [Verdict::Drop(shake::counters::DropReason::Truncated)];
    process_burst(&mut w, &cfg6(), &mut frames, &mut v);
    v[0]
}

/// An IPv6 answer as etherparse reads it, its checksum checked by etherparse: it must come
/// from one of our addresses and MAC, to the request's source (or to all-nodes, for a
/// duplicate address detection probe).
fn check_ipv6_answer(answer: &[u8], request_src: [u8; 16]) -> Result<(), TestCaseError> {
    let p = etherparse::SlicedPacket::from_ethernet(answer)
        .map_err(|e| TestCaseError::fail(format!("etherparse: {e}")))?;
    let Some(etherparse::LinkSlice::Ethernet2(e)) = &p.link else {
        panic!("no ethernet")
    };
    prop_assert_eq!(e.source(), MAC);
    let Some(etherparse::NetSlice::Ipv6(ip)) = &p.net else {
        panic!("no ipv6")
    };
    let (src, dst) = (ip.header().source(), ip.header().destination());
    let ours = src == IP6 || src == shake::wire::ipv6::link_local_from_mac(MAC);
    prop_assert!(ours, "from {:?}", src);
    let all_nodes = shake::wire::ipv6::ALL_NODES;
    prop_assert!(dst == request_src || (request_src == [0; 16] && dst == all_nodes));
    match &p.transport {
        Some(etherparse::TransportSlice::Udp(u)) => {
            let h = u.to_header();
            prop_assert_eq!(
                h.checksum,
                h.calc_checksum_ipv6_raw(src, dst, u.payload()).unwrap()
            );
            prop_assert_eq!(h.source_port, 7000);
        }
        Some(etherparse::TransportSlice::Icmpv6(m)) => {
            let h = m.header();
            prop_assert_eq!(
                h.checksum,
                h.icmp_type.calc_checksum(src, dst, m.payload()).unwrap()
            );
        }
        t => panic!("answer carries {t:?}"),
    }
    Ok(())
}

fn flow(src_ip: [u8; 4], src_port: u16, vlan: Option<u16>) -> Flow {
    Flow {
        src_mac: [2, 0, 0, 0, 0, 9],
        dst_mac: MAC,
        vlan,
        src_ip,
        dst_ip: IP,
        src_port,
        dst_port: 7000,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic_and_never_grow(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut w = worker_with_users(ONE_FRAME_USERS);
        w.begin_burst(START_MS + 50_000);
        let mut f = bytes.clone();
        let mut frames = [&mut f[..]];
        let mut v = [Verdict::Drop(shake::counters::DropReason::Truncated)];
        process_burst(&mut w, &cfg(), &mut frames, &mut v);
        if let Some(len) = v[0].tx_len() {
            prop_assert!(len <= bytes.len());
        }
    }

    #[test]
    fn mutated_valid_frames_never_panic(user: u64, flips in proptest::collection::vec((0usize..106, any::<u8>()), 1..4)) {
        let mut w = worker_with_users(ONE_FRAME_USERS);
        w.begin_burst(START_MS + 50_000);
        let r = client::request(&TOKEN, user, 1, u32::MAX, 0);
        let mut f = vec![0u8; 106];
        flow([10, 1, 1, 1], 5555, None).emit(&mut f, &client::payload(&r), 0);
        for (at, x) in flips { f[at] ^= x; }
        let mut frames = [&mut f[..]];
        let mut v = [Verdict::Drop(shake::counters::DropReason::Truncated)];
        process_burst(&mut w, &cfg(), &mut frames, &mut v);
        if let Some(len) = v[0].tx_len() { prop_assert!(len <= 106); }
    }

    #[test]
    fn answers_decode_with_etherparse(
        user: u64, seq: u32, ts: u64,
        src_ip in any::<[u8; 4]>(), src_port in 1u16.., vlan in proptest::option::of(0u16..4095),
    ) {
        let mut w = worker_with_users(ONE_FRAME_USERS);
        w.begin_burst(START_MS + 50_000);
        let r = client::request(&TOKEN, user, seq, u32::MAX, ts);
        let fl = flow(src_ip, src_port, vlan);
        let mut f = vec![0u8; fl.frame_len()];
        let n = fl.emit(&mut f, &client::payload(&r), 0);
        let mut frames = [&mut f[..n]];
        let mut v = [Verdict::Drop(shake::counters::DropReason::Truncated)];
        process_burst(&mut w, &cfg(), &mut frames, &mut v);
        // SPEC 2: 0.0.0.0/8, loopback, multicast, 240/4 (broadcast too) and the node's own
        // address are never answered; every other source is.
        let first = src_ip[0];
        if first == 0 || first == 127 || first >= 224 || src_ip == IP {
            prop_assert_eq!(v[0], Verdict::Drop(shake::counters::DropReason::Source));
            return Ok(());
        }
        let len = v[0].tx_len().expect("a valid shake is answered");
        prop_assert_eq!(len, n);
        let p = etherparse::SlicedPacket::from_ethernet(&f[..len]).expect("etherparse decodes the answer");
        let link = match &p.link { Some(etherparse::LinkSlice::Ethernet2(e)) => e.clone(), _ => panic!("no ethernet") };
        prop_assert_eq!(link.destination(), [2, 0, 0, 0, 0, 9]);
        prop_assert_eq!(link.source(), MAC);
        let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else { panic!("no ipv4") };
        let h = ip.header().to_header();
        prop_assert_eq!(h.source, IP);
        prop_assert_eq!(h.destination, src_ip);
        prop_assert_eq!(h.header_checksum, h.calc_header_checksum());
        let Some(etherparse::TransportSlice::Udp(u)) = &p.transport else { panic!("no udp") };
        prop_assert_eq!(u.source_port(), 7000);
        prop_assert_eq!(u.destination_port(), src_port);
        let uh = u.to_header();
        prop_assert_eq!(uh.checksum, uh.calc_checksum_ipv4(&h, u.payload()).unwrap());
        let ans = client::check_answer(&r, u.payload(), &CLAIM);
        prop_assert!(ans.is_ok(), "{:?}", ans);
    }
}

/// One IPv6 frame built from parts the datapath must tell apart: an extension header chain
/// of random kinds and lengths, an upper layer of random kind (UDP, ICMPv6 as echo or
/// Neighbor Solicitation, others), random source, destination among ours and our groups,
/// and random bytes after.
fn ipv6_frame() -> impl Strategy<Value = Vec<u8>> {
    let dst = prop_oneof![
        Just(IP6),
        Just(shake::wire::ipv6::link_local_from_mac(MAC)),
        Just(shake::wire::ipv6::solicited_node(IP6)),
        any::<[u8; 16]>(),
    ];
    let src = prop_oneof![Just([0u8; 16]), any::<[u8; 16]>()];
    let exts = proptest::collection::vec(
        (prop_oneof![Just(0u8), Just(43), Just(44), Just(60)], 0u8..3),
        0..4,
    );
    let upper = prop_oneof![Just(17u8), Just(58), any::<u8>()];
    let icmp_type = prop_oneof![Just(128u8), Just(135), any::<u8>()];
    (
        src,
        dst,
        exts,
        upper,
        icmp_type,
        any::<u8>(),
        proptest::collection::vec(any::<u8>(), 0..120),
    )
        .prop_map(|(src, dst, exts, upper, icmp_type, hop, tail)| {
            let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 9, 0x86, 0xdd];
            f.extend_from_slice(&[0x60, 0, 0, 0, 0, 0, 0, hop]);
            f.extend_from_slice(&src);
            f.extend_from_slice(&dst);
            let kinds: Vec<u8> = exts.iter().map(|e| e.0).collect();
            f[20] = kinds.first().copied().unwrap_or(upper);
            for (i, (_, len)) in exts.iter().enumerate() {
                let next = kinds.get(i + 1).copied().unwrap_or(upper);
                f.extend_from_slice(&[next, *len, 0, 0, 0, 0, 0, 0]);
                f.extend(std::iter::repeat(0).take(8 * usize::from(*len)));
            }
            if upper == 58 {
                f.extend_from_slice(&[icmp_type, 0]);
            }
            f.extend_from_slice(&tail);
            let pl = (f.len() - 54).min(usize::from(u16::MAX)) as u16;
            f[18..20].copy_from_slice(&pl.to_be_bytes());
            f
        })
}

// Fewer cases than the IPv4 properties: the frame layer's own IPv6 properties run 512 more
// per build.
proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Arbitrary IPv6 frames never panic; whatever is answered decodes with etherparse,
    /// checksums valid, from us to the sender, and is never larger than the request.
    #[test]
    fn arbitrary_ipv6_frames_never_panic_and_answers_decode(
        f in ipv6_frame(), fix_icmp in any::<bool>(),
    ) {
        let mut f = f;
        let src: [u8; 16] = f[22..38].try_into().unwrap();
        let dst: [u8; 16] = f[38..54].try_into().unwrap();
        // Half the ICMPv6 messages get a valid checksum, so answers happen, not only drops.
        if fix_icmp {
            if let Ok(ip) = shake::wire::Ipv6Packet::new_checked(&f[14..]) {
                if let Ok(up) = ip.upper_layer() {
                    let (at, end) = (54 + up.offset, 54 + usize::from(ip.payload_len()));
                    if up.protocol == 58 && end - at >= 8 {
                        shake::wire::Icmpv6Packet::new_unchecked(&mut f[at..end]).fill_checksum(src, dst);
                    }
                }
            }
        }
        let n = f.len();
        let v = decide6(&mut f);
        if let Some(len) = v.tx_len() {
            prop_assert!(len <= n);
            check_ipv6_answer(&f[..len], src)?;
        }
    }

    #[test]
    fn ipv6_answers_decode_with_etherparse(
        user: u64, seq: u32, ts: u64,
        src_ip in any::<[u8; 16]>(), src_port in 1u16.., vlan in proptest::option::of(0u16..4095),
    ) {
        let r = client::request(&TOKEN, user, seq, u32::MAX, ts);
        let fl = flow6(src_ip, src_port, vlan);
        let mut f = vec![0u8; fl.frame_len()];
        let n = fl.emit(&mut f, &client::payload(&r));
        let v = decide6(&mut f[..n]);
        // SPEC 2 over IPv6: ::, ::1, multicast, IPv4-mapped and our own address never.
        let w = u128::from_be_bytes(src_ip);
        if w <= 1 || src_ip[0] == 0xff || w >> 32 == 0xffff || src_ip == IP6 {
            prop_assert_eq!(v, Verdict::Drop(shake::counters::DropReason::Source));
            return Ok(());
        }
        let len = v.tx_len().expect("a valid shake is answered");
        prop_assert_eq!(len, n);
        check_ipv6_answer(&f[..len], src_ip)?;
        let p = etherparse::SlicedPacket::from_ethernet(&f[..len]).unwrap();
        let Some(etherparse::TransportSlice::Udp(u)) = &p.transport else { panic!("no udp") };
        prop_assert_eq!(u.destination_port(), src_port);
        let ans = client::check_answer(&r, u.payload(), &CLAIM);
        prop_assert!(ans.is_ok(), "{:?}", ans);
    }
}

/// A million shakes from 50,000 users with per-user limit 3 and per-sponsor limit 1: no
/// packet twice, no user over either limit, and the journal holds exactly what was answered.
#[test]
fn a_million_random_shakes_keep_every_limit() {
    let mut w = worker();
    let mut rng = shake::rng::Rng::new(2024);
    let mut issued: HashSet<u64> = HashSet::new();
    let mut per_user: HashMap<u64, Vec<u32>> = HashMap::new();
    let mut answered_red = 0usize;
    let fl = flow([10, 0, 0, 1], 4000, None);
    let mut bufs = vec![[0u8; 106]; 32];
    let mut reqs = Vec::with_capacity(32);
    let mut now = START_MS;
    for _ in 0..(1_000_000 / 32) {
        now += 3; // 100 s round, ~31k bursts: the clock crosses most of the round
        w.begin_burst(now);
        reqs.clear();
        for b in bufs.iter_mut() {
            let user = rng.below(50_000);
            let r = client::request(&TOKEN, user, 0, u32::MAX, 0);
            fl.emit(b, &client::payload(&r), 0);
            reqs.push(r);
        }
        let mut frames: Vec<&mut [u8]> = bufs.iter_mut().map(|b| &mut b[..]).collect();
        let mut v = [Verdict::Drop(shake::counters::DropReason::Truncated); 32];
        process_burst(&mut w, &cfg(), &mut frames, &mut v);
        for (k, b) in bufs.iter().enumerate() {
            let len = v[k].tx_len().expect("answered");
            let ans = client::check_answer(&reqs[k], &b[len - 64..len], &CLAIM).unwrap();
            if ans.outcome == Outcome::RedPacket {
                answered_red += 1;
                assert!(
                    issued.insert(ans.packet_id),
                    "packet {} twice",
                    ans.packet_id
                );
                per_user
                    .entry(ans.user_id)
                    .or_default()
                    .push(ans.sponsor_id);
            }
        }
    }
    assert!(answered_red > 10_000, "only {answered_red} red packets");
    for (user, sponsors) in &per_user {
        assert!(sponsors.len() <= 3, "user {user} won {}", sponsors.len());
        let distinct: HashSet<_> = sponsors.iter().collect();
        assert_eq!(
            distinct.len(),
            sponsors.len(),
            "user {user} twice from one sponsor"
        );
    }
    let journal = &w.journal().claims;
    assert_eq!(journal.len(), answered_red);
    let jset: HashSet<u64> = journal.iter().map(|c| c.packet_id).collect();
    assert_eq!(jset, issued);
}
