//! The frame target: a burst of arbitrary frames through `shake::frame::process_burst`, each
//! answer checked by code that shares nothing with the datapath: etherparse for the layers
//! and their checksums, `siphasher` for the token and the claim MAC, and the SPEC's payload
//! rules written out here.
//!
//! Input: byte 0 holds flags, bytes 1..3 the clock, then frames as a little-endian u16
//! length and that many bytes (at most [`MAX_FRAMES`] frames of [`MAX_FRAME`] bytes). Flag
//! bit 1 repairs each frame before it is sent (IPv4, UDP and ICMP checksums and the SHAKE/1
//! token, all computed here), so mutations of the decision's inputs are not all lost to a
//! checksum drop.

use std::collections::{HashMap, HashSet};
use std::hash::Hasher;
use std::path::Path;
use std::sync::OnceLock;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use hashbrown::HashSet as FastSet;
use shake::activity::Activity;
use shake::counters::DropReason;
use shake::engine::users::UserTable;
use shake::engine::winners::WinnerTable;
use shake::engine::{Identity, Live, Throttle, Worker};
use shake::frame::{process_burst, FrameConfig, Verdict};
use shake::journal::MemoryJournal;
use shake::mac::MacKey;
use shake::seed::{plan, MemorySource, SeedRecord};
use siphasher::sip::SipHasher24;

pub const MAX_FRAMES: usize = 32;
pub const MAX_FRAME: usize = 2048;

pub const TOKEN_KEY: [u8; 16] = [7; 16];
pub const CLAIM_KEY: [u8; 16] = [9; 16];
pub const OUR_IP: [u8; 4] = [10, 0, 0, 2];
pub const OUR_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
pub const OUR_PORT: u16 = 7000;
/// The round runs from 1_100_000 to 1_200_000 ms; the clock starts 50 s before it and
/// reaches 6.5 s past it.
pub const CLOCK_BASE_MS: u64 = 1_050_000;
pub const CONFIG_VERSION: u32 = 100;
pub const BURST_SPACING_MS: u64 = 11_000;

/// The activity of every run: one round, two sponsors with few packets, so that limits and
/// an exhausted pool are reached within a burst.
pub const ACTIVITY: &str = r#"
[activity]
id = 5
name = "fuzz"
epoch = 1000
[limits]
per_user = 3
per_sponsor = 1
[[sponsor]]
id = 11
budget_cents = 1000
packets = 20
resource = 3
greeting_resources = [21, 22]
[[sponsor]]
id = 12
budget_cents = 600
packets = 12
[[round]]
id = 1
start_s = 100
duration_s = 100
win_probability = 0.5
greeting_probability = 0.25
"#;

/// A decoded input.
#[derive(Debug, Clone)]
pub struct Burst {
    pub udp_offload: bool,
    pub repair: bool,
    /// 1 or 2: with 2, half the users belong to the other node (REDIRECT).
    pub node_count: u32,
    /// Bursts sent one after another: the same frames, [`BURST_SPACING_MS`] apart (past the
    /// throttle ceiling, so later bursts are decided again, and packets paced in since).
    pub bursts: u32,
    pub now_ms: u64,
    pub frames: Vec<Vec<u8>>,
}

impl Burst {
    pub fn from_bytes(data: &[u8]) -> Burst {
        let flags = data.first().copied().unwrap_or(0);
        let clock = match data.get(1..3) {
            Some(b) => u16::from_le_bytes([b[0], b[1]]) as u64,
            None => 500,
        };
        let mut frames = Vec::new();
        let mut rest = data.get(3..).unwrap_or(&[]);
        while frames.len() < MAX_FRAMES && rest.len() >= 2 {
            let len = (u16::from_le_bytes([rest[0], rest[1]]) as usize).min(MAX_FRAME);
            let body = &rest[2..];
            let len = len.min(body.len());
            let mut f = body[..len].to_vec();
            if flags & 2 != 0 {
                repair(&mut f);
            }
            frames.push(f);
            rest = &body[len..];
        }
        Burst {
            udp_offload: flags & 1 != 0,
            repair: flags & 2 != 0,
            node_count: 1 + ((flags >> 2) & 1) as u32,
            bursts: 1 + ((flags >> 3) & 3) as u32,
            now_ms: CLOCK_BASE_MS + clock * 100,
            frames,
        }
    }

    /// The inverse of [`Burst::from_bytes`] (frames already repaired are kept as they are):
    /// for writing seeds.
    pub fn to_bytes(&self) -> Vec<u8> {
        let flags = self.udp_offload as u8
            | (self.repair as u8) << 1
            | ((self.node_count == 2) as u8) << 2
            | ((self.bursts.clamp(1, 4) - 1) as u8) << 3;
        let clock = ((self.now_ms.saturating_sub(CLOCK_BASE_MS)) / 100).min(u16::MAX as u64);
        let mut out = vec![flags];
        out.extend_from_slice(&(clock as u16).to_le_bytes());
        for f in &self.frames {
            out.extend_from_slice(&(f.len() as u16).to_le_bytes());
            out.extend_from_slice(f);
        }
        out
    }
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().unwrap())
}

fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[..8].try_into().unwrap())
}

/// RFC 1071 sum of big-endian 16-bit words, not folded.
fn sum16(data: &[u8]) -> u64 {
    data.chunks(2)
        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u64)
        .sum()
}

fn fold(mut s: u64) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// SipHash-2-4 with a key as SPEC section 2 uses it.
pub fn sip(key: &[u8; 16], message: &[u8]) -> u64 {
    let mut h = SipHasher24::new_with_key(key);
    h.write(message);
    h.finish()
}

/// Where the layers of an Ethernet (one optional 802.1Q tag) / IPv4 frame start.
fn layers(f: &[u8]) -> Option<(usize, usize, usize)> {
    if f.len() < 14 {
        return None;
    }
    let (mut l3, mut ethertype) = (14, be16(&f[12..]));
    if ethertype == 0x8100 {
        if f.len() < 18 {
            return None;
        }
        l3 = 18;
        ethertype = be16(&f[16..]);
    }
    if ethertype != 0x0800 || f.len() < l3 + 20 || f[l3] >> 4 != 4 {
        return None;
    }
    let ihl = (f[l3] & 0x0f) as usize * 4;
    let total = be16(&f[l3 + 2..]) as usize;
    if ihl < 20 || total < ihl || l3 + total > f.len() {
        return None;
    }
    Some((l3, ihl, total))
}

/// Makes a frame's checksums and SHAKE/1 token right, as a client would send them.
pub fn repair(f: &mut [u8]) {
    let Some((l3, ihl, total)) = layers(f) else {
        return;
    };
    let l4 = l3 + ihl;
    let end = l3 + total;
    match f[l3 + 9] {
        17 if end - l4 >= 8 => {
            let ulen = be16(&f[l4 + 4..]) as usize;
            if ulen == 8 + 64 && l4 + ulen <= end {
                let p = l4 + 8;
                let mut m = [0u8; 12];
                m[..8].copy_from_slice(&f[p + 8..p + 16]);
                m[8..].copy_from_slice(&f[p + 32..p + 36]);
                let token = sip(&TOKEN_KEY, &m);
                f[p + 40..p + 48].copy_from_slice(&token.to_be_bytes());
            }
            if ulen >= 8 && l4 + ulen <= end && be16(&f[l4 + 6..]) != 0 {
                f[l4 + 6..l4 + 8].fill(0);
                let s = sum16(&f[l3 + 12..l3 + 20]) + 17 + ulen as u64 + sum16(&f[l4..l4 + ulen]);
                let ck = !fold(s);
                let ck = if ck == 0 { 0xffff } else { ck };
                f[l4 + 6..l4 + 8].copy_from_slice(&ck.to_be_bytes());
            }
        }
        1 if end - l4 >= 4 => {
            f[l4 + 2..l4 + 4].fill(0);
            let ck = !fold(sum16(&f[l4..end]));
            f[l4 + 2..l4 + 4].copy_from_slice(&ck.to_be_bytes());
        }
        _ => {}
    }
    f[l3 + 10..l3 + 12].fill(0);
    let ck = !fold(sum16(&f[l3..l4]));
    f[l3 + 10..l3 + 12].copy_from_slice(&ck.to_be_bytes());
}

struct Fixture {
    activity: Activity,
    records: Vec<SeedRecord>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let activity = Activity::parse(Path::new("fuzz.toml"), ACTIVITY).expect("activity");
        let planned = plan::plan(&activity, 1, 1, 3);
        let records = plan::shard_records(&planned, 0);
        Fixture { activity, records }
    })
}

/// The activity every run uses, parsed once.
pub fn activity() -> &'static Activity {
    &fixture().activity
}

type W = Worker<MemorySource, MemoryJournal>;

fn worker(node_count: u32) -> W {
    let f = fixture();
    let live = Live::new(
        &f.activity,
        Identity {
            node_index: 0,
            node_count,
            token_key: MacKey::from_bytes(TOKEN_KEY),
            claim_key: MacKey::from_bytes(CLAIM_KEY),
        },
        Throttle::default(),
        None,
        0,
        FastSet::new(),
        CONFIG_VERSION,
    );
    let n = f.records.len();
    Worker::new(
        live,
        UserTable::new(256, 0),
        WinnerTable::with_capacity(n),
        MemorySource::new(f.records.clone(), f.activity.rounds.len()),
        MemoryJournal::with_capacity(n),
        42,
    )
}

/// What the whole input has paid, for the money rules across answers.
#[derive(Default)]
struct Paid {
    packets: HashSet<u64>,
    per_user: HashMap<u64, u32>,
    per_user_sponsor: HashSet<(u64, u32)>,
}

/// What a run answered: SHAKE/1 answers by outcome byte, ARP replies, ICMP echo replies.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub outcomes: [u32; 7],
    pub arp: u32,
    pub icmp: u32,
    pub dropped: u32,
}

/// Runs the input's bursts and checks every answer.
pub fn run_and_check(b: &Burst) -> Summary {
    let mut summary = Summary::default();
    let cfg = FrameConfig {
        ipv4: OUR_IP,
        ipv6: None,
        mac: OUR_MAC,
        udp_port: OUR_PORT,
        tx_udp_offload: b.udp_offload,
    };
    let mut w = worker(b.node_count);
    let mut paid = Paid::default();
    for k in 0..b.bursts {
        let mut bufs: Vec<Vec<u8>> = b.frames.clone();
        let mut frames: Vec<&mut [u8]> = bufs.iter_mut().map(|f| &mut f[..]).collect();
        // Overwritten for every frame; the placeholder is never read.
        let mut verdicts = vec![Verdict::Drop(DropReason::Internal); frames.len()];
        let drops_before = w.counters().snapshot().dropped_total();
        w.begin_burst(b.now_ms + BURST_SPACING_MS * k as u64);
        process_burst(&mut w, &cfg, &mut frames, &mut verdicts);
        // The I/O layer counts rx and what TX takes; the frame layer counts every drop once.
        let drops = verdicts.iter().filter(|v| v.tx_len().is_none()).count() as u64;
        assert_eq!(
            w.counters().snapshot().dropped_total() - drops_before,
            drops,
            "every dropped frame is counted once, under one reason"
        );
        for (i, v) in verdicts.iter().enumerate() {
            match v.tx_len() {
                Some(len) => check_answer(&b.frames[i], &bufs[i], len, v, &mut paid, &mut summary),
                None => summary.dropped += 1,
            }
        }
    }
    summary
}

fn check_answer(
    req: &[u8],
    buf: &[u8],
    len: usize,
    v: &Verdict,
    paid: &mut Paid,
    summary: &mut Summary,
) {
    assert!(
        len <= req.len(),
        "answer of {len} bytes to a request of {}",
        req.len()
    );
    let ans = &buf[..len];
    assert!(len >= 14, "answer shorter than an Ethernet header");
    let tagged = be16(&req[12..]) == 0x8100;
    let l2 = if tagged { 18 } else { 14 };
    assert_eq!(&ans[12..l2], &req[12..l2], "ethertype and VLAN tag kept");
    if be16(&req[l2 - 2..]) == 0x0806 {
        summary.arp += 1;
        return check_arp(req, ans, l2);
    }
    // Ethernet: back to the sender, from the address it was sent to unless that was a
    // group address.
    assert_eq!(
        ans[..6],
        req[6..12],
        "answer goes back to the request's source MAC"
    );
    let from = if req[0] & 1 == 0 {
        &req[..6]
    } else {
        &OUR_MAC[..]
    };
    assert_eq!(&ans[6..12], from, "answer source MAC");

    let sliced = SlicedPacket::from_ethernet(ans)
        .unwrap_or_else(|e| panic!("etherparse rejects the answer: {e}"));
    let Some(NetSlice::Ipv4(ip)) = &sliced.net else {
        panic!("answer is not IPv4: {:?}", sliced.net)
    };
    let h = ip.header();
    let (rl3, rihl, _) = layers(req).expect("an answered IPv4 request parses");
    assert_eq!(h.ihl(), 5, "options are never echoed");
    // Verified over the header's bytes (RFC 1071: the sum with the checksum is all ones):
    // etherparse's own header type has no field for the reserved flag bit, so recomputing
    // from it would not cover every header the datapath may echo.
    assert_eq!(
        fold(sum16(h.slice())),
        0xffff,
        "IPv4 header checksum {:#06x}",
        h.header_checksum()
    );
    assert_eq!(
        h.source(),
        req[rl3 + 16..rl3 + 20],
        "source is the request's destination"
    );
    assert_eq!(h.source(), OUR_IP, "answers come from our address");
    assert_eq!(
        h.destination(),
        req[rl3 + 12..rl3 + 16],
        "back to the request's source"
    );
    assert_eq!(h.ttl(), 64);
    assert!(!h.more_fragments() && h.fragments_offset().value() == 0);
    assert_eq!(
        h.total_len() as usize,
        len - l2,
        "IP length is the answer's"
    );
    let rl4 = rl3 + rihl;
    match &sliced.transport {
        Some(TransportSlice::Udp(u)) => {
            assert!(matches!(
                v,
                Verdict::Answer { .. } | Verdict::AnswerUdpOffload { .. }
            ));
            assert_eq!(
                (u.source_port(), u.destination_port()),
                (be16(&req[rl4 + 2..]), be16(&req[rl4..])),
                "ports swapped"
            );
            assert_eq!(u.source_port(), OUR_PORT);
            assert_eq!(u.length() as usize, 8 + 64, "UDP length");
            let src = h.source();
            let dst = h.destination();
            match v {
                Verdict::AnswerUdpOffload { l2_len, l3_len, .. } => {
                    assert_eq!((*l2_len as usize, *l3_len), (l2, 20));
                    let pseudo = sum16(&src) + sum16(&dst) + 17 + u.length() as u64;
                    assert_eq!(u.checksum(), fold(pseudo), "pseudo-header sum for the NIC");
                }
                _ => {
                    let want = u
                        .to_header()
                        .calc_checksum_ipv4_raw(src, dst, u.payload())
                        .expect("checksum");
                    assert_ne!(u.checksum(), 0, "answers carry a UDP checksum");
                    assert_eq!(u.checksum(), want, "UDP checksum");
                }
            }
            check_payload(&req[rl4 + 8..rl4 + 8 + 64], u.payload(), paid);
            summary.outcomes[u.payload()[4] as usize] += 1;
        }
        Some(TransportSlice::Icmpv4(m)) => {
            assert!(matches!(v, Verdict::Answer { .. }));
            assert_eq!((m.type_u8(), m.code_u8()), (0, 0), "echo reply");
            assert_eq!(
                fold(sum16(m.slice())),
                0xffff,
                "ICMP checksum {:#06x}, etherparse computes {:#06x}",
                m.checksum(),
                m.icmp_type().calc_checksum(m.payload())
            );
            let r = &req[rl4..rl3 + be16(&req[rl3 + 2..]) as usize];
            assert_eq!(
                m.slice()[4..],
                r[4..],
                "identifier, sequence and data echoed"
            );
            summary.icmp += 1;
        }
        other => panic!("answer transport {other:?}"),
    }
}

fn check_arp(req: &[u8], ans: &[u8], l2: usize) {
    assert_eq!(ans.len(), req.len(), "an ARP reply is the request's frame");
    let (r, a) = (&req[l2..], &ans[l2..]);
    assert!(a.len() >= 28);
    assert_eq!(
        &a[..6],
        &r[..6],
        "hardware and protocol types and sizes kept"
    );
    assert_eq!(be16(&a[6..]), 2, "ARP reply");
    assert_eq!(&a[8..14], &OUR_MAC, "sender MAC is ours");
    assert_eq!(&a[14..18], &OUR_IP, "sender IP is ours");
    assert_eq!(&a[18..24], &r[8..14], "target MAC is the asker's");
    assert_eq!(&a[24..28], &r[14..18], "target IP is the asker's");
    assert_eq!(
        &r[24..28],
        &OUR_IP,
        "only requests for our address are answered"
    );
    assert_eq!(be16(&r[6..]), 1, "only requests are answered");
    assert_eq!(&ans[..6], &r[8..14], "to the asker's MAC");
    assert_eq!(&ans[6..12], &OUR_MAC, "from our MAC");
}

/// SPEC section 2's answer rules, from the bytes.
fn check_payload(req: &[u8], ans: &[u8], paid: &mut Paid) {
    assert_eq!(ans.len(), 64, "SHAKE/1 answers are 64 bytes");
    assert_eq!(&req[..3], b"SK\x01", "only SHAKE/1 requests are answered");
    assert_eq!(req[3], 0x01, "only shakes are answered");
    assert_eq!(&ans[..4], b"SK\x01\x81", "magic, version, kind RESULT");
    assert_eq!(&ans[8..20], &req[8..20], "user_id and seq echoed");
    assert_eq!(&ans[24..32], &req[24..32], "client_ts echoed");
    let outcome = ans[4];
    assert!(outcome <= 6, "outcome {outcome}");
    let flags = ans[5];
    assert_eq!(flags & !1, 0, "unknown flag bits");
    let user = be64(&ans[8..]);
    let packet = be64(&ans[32..]);
    let amount = be32(&ans[40..]);
    let sponsor = be32(&ans[44..]);
    let claim_mac = be64(&ans[48..]);
    let config_version = be32(&ans[56..]);
    assert_eq!(config_version, CONFIG_VERSION);
    assert_eq!(
        flags & 1 != 0,
        be32(&req[20..]) < CONFIG_VERSION,
        "CONFIG_STALE exactly when the client's version is older"
    );
    match outcome {
        2 => {
            assert!(packet != 0 && amount != 0 && sponsor != 0 && be32(&ans[60..]) != 0);
            let mut m = [0u8; 24];
            m[..8].copy_from_slice(&packet.to_be_bytes());
            m[8..16].copy_from_slice(&user.to_be_bytes());
            m[16..20].copy_from_slice(&amount.to_be_bytes());
            m[20..].copy_from_slice(&sponsor.to_be_bytes());
            assert_eq!(claim_mac, sip(&CLAIM_KEY, &m), "claim MAC");
            // The token was right: a red packet never goes to a bad token.
            let mut t = [0u8; 12];
            t[..8].copy_from_slice(&req[8..16]);
            t[8..].copy_from_slice(&req[32..36]);
            assert_eq!(be64(&req[40..]), sip(&TOKEN_KEY, &t), "paid on a bad token");
            assert!(paid.packets.insert(packet), "packet {packet} paid twice");
            let n = paid.per_user.entry(user).or_default();
            *n += 1;
            assert!(*n <= 3, "user {user} won more than per_user");
            assert!(
                paid.per_user_sponsor.insert((user, sponsor)),
                "user {user} won twice from sponsor {sponsor}"
            );
        }
        1 => {
            assert!(packet == 0 && amount == 0 && claim_mac == 0 && sponsor != 0);
        }
        _ => {
            assert!(
                packet == 0 && amount == 0 && claim_mac == 0 && sponsor == 0,
                "outcome {outcome} carries packet or sponsor fields"
            );
        }
    }
}
