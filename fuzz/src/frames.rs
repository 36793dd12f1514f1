//! The frame target: a burst of arbitrary frames through `shake::frame::process_burst`, each
//! answer checked by code that shares nothing with the datapath: etherparse for the layers
//! and their checksums, `siphasher` for the token and the claim MAC, and the SPEC's payload
//! rules written out here.
//!
//! Input: byte 0 holds flags, bytes 1..3 the clock, then frames as a little-endian u16
//! length and that many bytes (at most [`MAX_FRAMES`] frames of [`MAX_FRAME`] bytes). Flag
//! bit 1 repairs each frame before it is sent (IPv4, UDP, ICMP and ICMPv6 checksums and the
//! SHAKE/1 token, all computed here), so mutations of the decision's inputs are not all lost
//! to a checksum drop.
//!
//! The node is dual stack ([`OUR_IPV6`], and the link-local address derived from
//! [`OUR_MAC`], written out here as [`OUR_LINK_LOCAL`]): IPv6 frames reach SHAKE/1, Neighbor
//! Solicitations (duplicate address detection probes too) and ICMPv6 echo.

use std::collections::{HashMap, HashSet};
use std::hash::Hasher;
use std::path::Path;
use std::sync::OnceLock;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use hashbrown::HashSet as FastSet;
use shake::activity::Activity;
use shake::counters::{DropReason, Reply};
use shake::engine::users::UserTable;
use shake::engine::winners::WinnerTable;
use shake::engine::{Identity, Live, Throttle, Worker};
use shake::frame::{process_burst, FrameConfig, Ipv6Addrs, TxOffload, Verdict};
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
/// 2001:db8::2.
pub const OUR_IPV6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
/// fe80::ff:fe00:2, [`OUR_MAC`]'s modified EUI-64 (RFC 4291 appendix A), written out rather
/// than derived with the datapath's function, so the node's derivation is checked too.
pub const OUR_LINK_LOCAL: [u8; 16] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xfe, 0, 0, 2];
/// ff02::1, where advertisements answering duplicate address detection probes go.
pub const ALL_NODES: [u8; 16] = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
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
    /// The IPv4 header checksum left to the NIC (flags bit 5).
    pub ipv4_offload: bool,
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
            ipv4_offload: flags & 0x20 != 0,
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
            | (self.ipv4_offload as u8) << 5
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

/// Where the layers of an Ethernet (one optional 802.1Q tag) / IPv6 frame are, its
/// extension headers walked (RFC 8200 4: hop-by-hop, routing and destination options by their
/// length field, the fragment header 8 bytes).
#[derive(Debug, Clone, Copy)]
pub struct Layers6 {
    pub l3: usize,
    /// Where the upper layer starts.
    pub l4: usize,
    /// The end of the IPv6 payload.
    pub end: usize,
    /// The upper layer's protocol.
    pub proto: u8,
    pub ext_headers: usize,
    pub fragment: bool,
    pub hop_limit: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
}

pub fn layers6(f: &[u8]) -> Option<Layers6> {
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
    if ethertype != 0x86dd || f.len() < l3 + 40 || f[l3] >> 4 != 6 {
        return None;
    }
    let end = l3 + 40 + be16(&f[l3 + 4..]) as usize;
    if end > f.len() {
        return None;
    }
    let (mut proto, mut l4, mut ext_headers, mut fragment) = (f[l3 + 6], l3 + 40, 0, false);
    loop {
        let len = match proto {
            0 | 43 | 60 if l4 + 2 <= end => (f[l4 + 1] as usize + 1) * 8,
            44 => 8,
            0 | 43 | 60 => return None,
            _ => break,
        };
        if l4 + len > end {
            return None;
        }
        fragment |= proto == 44;
        proto = f[l4];
        l4 += len;
        ext_headers += 1;
    }
    Some(Layers6 {
        l3,
        l4,
        end,
        proto,
        ext_headers,
        fragment,
        hop_limit: f[l3 + 7],
        src: f[l3 + 8..l3 + 24].try_into().unwrap(),
        dst: f[l3 + 24..l3 + 40].try_into().unwrap(),
    })
}

/// The SHAKE/1 token of the 64-byte request payload `p`, made right.
fn repair_token(p: &mut [u8]) {
    let mut m = [0u8; 12];
    m[..8].copy_from_slice(&p[8..16]);
    m[8..].copy_from_slice(&p[32..36]);
    let token = sip(&TOKEN_KEY, &m);
    p[40..48].copy_from_slice(&token.to_be_bytes());
}

/// Makes a frame's checksums and SHAKE/1 token right, as a client would send them.
pub fn repair(f: &mut [u8]) {
    if let Some(l) = layers6(f) {
        return repair6(f, &l);
    }
    let Some((l3, ihl, total)) = layers(f) else {
        return;
    };
    let l4 = l3 + ihl;
    let end = l3 + total;
    match f[l3 + 9] {
        17 if end - l4 >= 8 => {
            let ulen = be16(&f[l4 + 4..]) as usize;
            if ulen == 8 + 64 && l4 + ulen <= end {
                repair_token(&mut f[l4 + 8..l4 + ulen]);
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

/// [`repair`] over IPv6: the UDP checksum (always set: zero is wrong over IPv6) and the
/// ICMPv6 checksum, both over the pseudo-header of RFC 8200 8.1 with the fixed header's
/// addresses.
fn repair6(f: &mut [u8], l: &Layers6) {
    let (l4, end) = (l.l4, l.end);
    let pseudo = |len: usize, proto: u8| sum16(&l.src) + sum16(&l.dst) + len as u64 + proto as u64;
    match l.proto {
        17 if end - l4 >= 8 => {
            let ulen = be16(&f[l4 + 4..]) as usize;
            if ulen == 8 + 64 && l4 + ulen <= end {
                repair_token(&mut f[l4 + 8..l4 + ulen]);
            }
            if ulen >= 8 && l4 + ulen <= end {
                f[l4 + 6..l4 + 8].fill(0);
                let ck = !fold(pseudo(ulen, 17) + sum16(&f[l4..l4 + ulen]));
                let ck = if ck == 0 { 0xffff } else { ck };
                f[l4 + 6..l4 + 8].copy_from_slice(&ck.to_be_bytes());
            }
        }
        58 if end - l4 >= 4 => {
            f[l4 + 2..l4 + 4].fill(0);
            let ck = !fold(pseudo(end - l4, 58) + sum16(&f[l4..end]));
            f[l4 + 2..l4 + 4].copy_from_slice(&ck.to_be_bytes());
        }
        _ => {}
    }
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

/// What a run answered: SHAKE/1 answers by outcome byte (both families), ARP replies, ICMP
/// echo replies; over IPv6, SHAKE/1 answers, ICMPv6 echo replies and Neighbor
/// Advertisements (those to duplicate address detection probes also in `ndp_dad`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub outcomes: [u32; 7],
    pub arp: u32,
    pub icmp: u32,
    pub dropped: u32,
    pub shake6: u32,
    pub icmp6: u32,
    pub ndp: u32,
    pub ndp_dad: u32,
}

/// Runs the input's bursts and checks every answer.
pub fn run_and_check(b: &Burst) -> Summary {
    let mut summary = Summary::default();
    let cfg = FrameConfig {
        ipv4: OUR_IP,
        // The link-local address is left to the node to derive from the MAC.
        ipv6: Some(Ipv6Addrs::new(OUR_IPV6, None, OUR_MAC)),
        mac: OUR_MAC,
        udp_port: OUR_PORT,
        tx_udp_offload: b.udp_offload,
        tx_ipv4_offload: b.ipv4_offload,
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
        // The checksums the port leaves to the NIC: a UDP answer asks for exactly these.
        let mut enabled = TxOffload::empty();
        enabled.set(TxOffload::IPV4_CKSUM, b.ipv4_offload);
        enabled.set(TxOffload::UDP_CKSUM, b.udp_offload);
        for (i, v) in verdicts.iter().enumerate() {
            match v.tx_len() {
                Some(len) => check_answer(
                    &b.frames[i],
                    &bufs[i],
                    len,
                    (v, enabled),
                    &mut paid,
                    &mut summary,
                ),
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
    (v, enabled): (&Verdict, TxOffload),
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
    if be16(&req[l2 - 2..]) == 0x86dd {
        return check_ipv6(req, ans, l2, (v, enabled), paid, summary);
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
    // from it would not cover every header the datapath may echo. Left to the NIC, the
    // field is zero.
    match v {
        Verdict::AnswerOffload { offload, .. } if offload.contains(TxOffload::IPV4_CKSUM) => {
            assert_eq!(
                h.header_checksum(),
                0,
                "the IPv4 header checksum for the NIC"
            )
        }
        _ => assert_eq!(
            fold(sum16(h.slice())),
            0xffff,
            "IPv4 header checksum {:#06x}",
            h.header_checksum()
        ),
    }
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
            let offload = udp_offloads(v, (l2, 20), enabled);
            assert_eq!(
                (u.source_port(), u.destination_port()),
                (be16(&req[rl4 + 2..]), be16(&req[rl4..])),
                "ports swapped"
            );
            assert_eq!(u.source_port(), OUR_PORT);
            assert_eq!(u.length() as usize, 8 + 64, "UDP length");
            let (src, dst) = (h.source(), h.destination());
            check_udp_checksum(u, offload, (&src, &dst), || {
                u.to_header().calc_checksum_ipv4_raw(src, dst, u.payload())
            });
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

/// Whether an IPv6 address is one of ours.
fn ours6(a: &[u8; 16]) -> bool {
    *a == OUR_IPV6 || *a == OUR_LINK_LOCAL
}

/// SPEC section 2's IPv6 sources that never get an answer: unspecified, multicast, loopback,
/// ours.
fn never_a_source6(a: &[u8; 16]) -> bool {
    let unspecified = *a == [0; 16];
    let loopback = a[..15] == [0; 15] && a[15] == 1;
    unspecified || loopback || a[0] == 0xff || ours6(a)
}

/// The MACs of the source link-layer options (type 1, one 8-byte unit) among the NDP
/// options `opts`.
fn source_ll_options(mut opts: &[u8]) -> Vec<[u8; 6]> {
    let mut macs = Vec::new();
    while opts.len() >= 8 && opts[1] != 0 {
        let len = opts[1] as usize * 8;
        if len > opts.len() {
            break;
        }
        if opts[0] == 1 && len == 8 {
            macs.push(opts[2..8].try_into().unwrap());
        }
        opts = &opts[len..];
    }
    macs
}

/// The checksums a UDP answer's verdict `v` leaves to the NIC, checked: the layer lengths
/// (`l2`, `l3`) it gives the NIC, and exactly `want`, the port's offloads for the answer's IP
/// version (a plain answer leaves none).
fn udp_offloads(v: &Verdict, (l2, l3): (usize, u16), want: TxOffload) -> TxOffload {
    let offload = match v {
        Verdict::AnswerOffload {
            l2_len,
            l3_len,
            offload,
            ..
        } => {
            assert_eq!((*l2_len as usize, *l3_len), (l2, l3));
            *offload
        }
        Verdict::Answer { .. } => want & TxOffload::IPV6,
        _ => panic!("{v:?} for a transmitted answer"),
    };
    assert_eq!(offload, want, "the port's offloads, no more, no fewer");
    offload
}

/// A UDP answer's checksum: the pseudo-header sum of `addrs` (source, destination) where
/// `offload` leaves it to the NIC, else the whole checksum, `whole`, never zero (over IPv4
/// zero would mean none; over IPv6 it is wrong).
fn check_udp_checksum(
    u: &etherparse::UdpSlice,
    offload: TxOffload,
    (src, dst): (&[u8], &[u8]),
    whole: impl FnOnce() -> Result<u16, etherparse::err::ValueTooBigError<usize>>,
) {
    if offload.contains(TxOffload::UDP_CKSUM) {
        let pseudo = sum16(src) + sum16(dst) + 17 + u.length() as u64;
        assert_eq!(u.checksum(), fold(pseudo), "pseudo-header sum for the NIC");
    } else {
        assert_ne!(u.checksum(), 0, "answers carry a UDP checksum");
        assert_eq!(u.checksum(), whole().expect("checksum"), "UDP checksum");
    }
}

/// An answer to an IPv6 request: SHAKE/1 over UDP, an ICMPv6 echo reply or a Neighbor
/// Advertisement, decoded by etherparse.
fn check_ipv6(
    req: &[u8],
    ans: &[u8],
    l2: usize,
    (v, enabled): (&Verdict, TxOffload),
    paid: &mut Paid,
    summary: &mut Summary,
) {
    let r = layers6(req).expect("an answered IPv6 request parses");
    assert!(!r.fragment, "fragments are never answered");
    assert!(req[6] & 1 == 0, "a group Ethernet source is never answered");
    let sliced = SlicedPacket::from_ethernet(ans)
        .unwrap_or_else(|e| panic!("etherparse rejects the answer: {e}"));
    let Some(NetSlice::Ipv6(ip)) = &sliced.net else {
        panic!("answer to IPv6 is not IPv6: {:?}", sliced.net)
    };
    assert!(
        ip.extensions().is_empty(),
        "answers carry no extension headers"
    );
    let h = ip.header();
    assert_eq!(
        h.payload_length() as usize,
        ans.len() - l2 - 40,
        "IPv6 payload length is the answer's"
    );
    let (src, dst) = (h.source(), h.destination());
    assert!(ours6(&src), "answers come from one of our addresses");
    let probe = r.src == [0; 16];
    let to = if probe { ALL_NODES } else { r.src };
    assert_eq!(
        dst, to,
        "back to the request's source (all-nodes for a probe)"
    );
    match &sliced.transport {
        Some(TransportSlice::Udp(u)) => {
            assert!(!never_a_source6(&r.src), "answered a source it must not");
            check_swapped6(req, ans, &r, src, h.hop_limit());
            // Only the UDP checksum is ever left to the NIC over IPv6.
            let want = TxOffload::IPV6 | (enabled & TxOffload::UDP_CKSUM);
            let offload = udp_offloads(v, (l2, 40), want);
            let rl4 = r.l4;
            assert_eq!(r.proto, 17, "UDP answers UDP");
            assert_eq!(
                (u.source_port(), u.destination_port()),
                (be16(&req[rl4 + 2..]), be16(&req[rl4..])),
                "ports swapped"
            );
            assert_eq!(u.source_port(), OUR_PORT);
            assert_ne!(u.destination_port(), 0, "source port 0 is never answered");
            assert_eq!(u.length() as usize, 8 + 64, "UDP length");
            check_udp_checksum(u, offload, (&src, &dst), || {
                u.to_header().calc_checksum_ipv6_raw(src, dst, u.payload())
            });
            check_payload(&req[rl4 + 8..rl4 + 8 + 64], u.payload(), paid);
            summary.outcomes[u.payload()[4] as usize] += 1;
            summary.shake6 += 1;
        }
        Some(TransportSlice::Icmpv6(m)) if m.type_u8() == 129 => {
            assert!(!never_a_source6(&r.src), "answered a source it must not");
            check_swapped6(req, ans, &r, src, h.hop_limit());
            assert_eq!(v.reply(), Some(Reply::ICMPV6_ECHO));
            assert!(matches!(v, Verdict::Answer { .. }));
            assert_eq!(m.code_u8(), 0, "echo reply code");
            assert!(
                m.is_checksum_valid(src, dst),
                "ICMPv6 checksum {:#06x}",
                m.checksum()
            );
            assert_eq!(
                (r.proto, req[r.l4], req[r.l4 + 1]),
                (58, 128, 0),
                "only echo requests get echo replies"
            );
            assert_eq!(
                m.slice()[4..],
                req[r.l4 + 4..r.end],
                "identifier, sequence and data echoed"
            );
            summary.icmp6 += 1;
        }
        Some(TransportSlice::Icmpv6(m)) => {
            assert_eq!(m.type_u8(), 136, "ICMPv6 answers are echo replies or NAs");
            check_neighbor_advert(req, ans, &r, m.slice(), src, h.hop_limit());
            assert_eq!(v.reply(), Some(Reply::NDP));
            assert!(matches!(v, Verdict::Answer { .. }));
            assert!(
                m.is_checksum_valid(src, dst),
                "ICMPv6 checksum {:#06x}",
                m.checksum()
            );
            summary.ndp += 1;
            summary.ndp_dad += probe as u32;
        }
        other => panic!("answer transport {other:?}"),
    }
}

/// A UDP or echo answer: Ethernet and IPv6 addresses swapped (from our MAC if the request
/// went to a group address), our answer hop limit.
fn check_swapped6(req: &[u8], ans: &[u8], r: &Layers6, src: [u8; 16], hop_limit: u8) {
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
    assert_eq!(src, r.dst, "source is the request's destination");
    assert_eq!(hop_limit, 64, "answer hop limit");
}

/// A Neighbor Advertisement (RFC 4861 4.4) answering a Neighbor Solicitation that passed RFC
/// 4861 7.1.1's checks.
fn check_neighbor_advert(
    req: &[u8],
    ans: &[u8],
    r: &Layers6,
    na: &[u8],
    src: [u8; 16],
    hop_limit: u8,
) {
    let probe = r.src == [0; 16];
    // The solicitation.
    assert_eq!(r.proto, 58, "an NA answers ICMPv6");
    let ns = &req[r.l4..r.end];
    assert!(ns.len() >= 24, "a solicitation holds its target");
    assert_eq!((ns[0], ns[1]), (135, 0), "only solicitations get an NA");
    assert_eq!(r.hop_limit, 255, "a solicitation's hop limit is 255");
    let ns_target: [u8; 16] = ns[8..24].try_into().unwrap();
    assert!(ours6(&ns_target), "solicitation for one of our addresses");
    let solicited = |a: &[u8; 16]| {
        a[..13] == [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff] && a[13..] == ns_target[13..]
    };
    assert!(
        ours6(&r.dst) || solicited(&r.dst),
        "a solicitation to us or our solicited-node group"
    );
    let ns_sources = source_ll_options(&ns[24..]);
    if probe {
        assert!(
            solicited(&r.dst),
            "a probe goes to the solicited-node group"
        );
        assert!(
            ns_sources.is_empty(),
            "a probe has no source link-layer option"
        );
    } else {
        assert!(!never_a_source6(&r.src), "answered a source it must not");
    }
    // The advertisement.
    assert_eq!(hop_limit, 255, "an NA's hop limit is 255");
    assert_eq!(&ans[6..12], &OUR_MAC, "an NA comes from our MAC");
    if probe {
        assert_eq!(ans[..6], [0x33, 0x33, 0, 0, 0, 1], "to all-nodes' MAC");
    } else {
        let to: [u8; 6] = ans[..6].try_into().unwrap();
        assert!(
            to == req[6..12] || ns_sources.contains(&to),
            "to the solicitation's source MAC or its source link-layer option"
        );
    }
    assert!(na.len() >= 24, "an NA holds its target");
    assert_eq!(na[1], 0, "NA code");
    let flags = na[4];
    assert_eq!(flags & 0x80, 0, "Router clear");
    assert_eq!(flags & 0x40 != 0, !probe, "Solicited iff not a probe");
    assert_ne!(flags & 0x20, 0, "Override set");
    assert_eq!(
        (flags & 0x1f, &na[5..8]),
        (0, &[0u8; 3][..]),
        "reserved bits"
    );
    let target: [u8; 16] = na[8..24].try_into().unwrap();
    assert_eq!(target, ns_target, "the solicited target");
    assert_eq!(src, target, "an NA comes from its target");
    let mut opts = &na[24..];
    while !opts.is_empty() {
        assert!(
            opts.len() >= 8 && opts[1] != 0,
            "NA options well formed: {opts:?}"
        );
        let len = opts[1] as usize * 8;
        assert!(len <= opts.len(), "NA option within the message");
        if opts[0] == 2 {
            assert_eq!(len, 8, "target link-layer option length");
            assert_eq!(&opts[2..8], &OUR_MAC, "target link-layer address is ours");
        }
        opts = &opts[len..];
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
