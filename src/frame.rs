//! The frame layer: a burst of Ethernet frames, each rewritten in place into its answer or
//! dropped with a counted reason.
//!
//! Every I/O layer that sees whole frames (DPDK ports, pcap replays, tests) calls
//! [`process_burst`]. A frame is parsed once, layer by layer, through the zero-copy views;
//! answers reuse the request's buffer: MAC, IP and port swap, the IPv4 checksum updated
//! incrementally (the address swap leaves it unchanged, only the TTL moves) or left to the
//! NIC, and the UDP checksum set over the new payload or left to the NIC ([`TxOffload`]).
//! Nothing here allocates, locks, logs or makes a system call.
//!
//! Answers never grow: IPv4 options of a request are not echoed (they are source routes and
//! timestamps meant for the forward path), so an answer with options stripped is shorter;
//! nor are IPv6 extension headers, and a Neighbor Advertisement carries our link-layer
//! address only where the solicitation had room for it.
//!
//! IPv6 (with `FrameConfig::ipv6`) follows the same shape: the common request (untagged, UDP
//! right after the fixed header) is decided at fixed offsets in the burst loop beside
//! IPv4's, with its source check on the address words already loaded; anything else goes
//! through `answer_ipv6`, which walks extension headers and answers Neighbor Solicitations
//! (RFC 4861) and ICMPv6 echo. IPv6 has no header checksum, but its UDP checksum is
//! mandatory and covers four address words where IPv4's covers one: the IPv6 request costs
//! about 7% more instructions (bench/results/ipv6.txt).
//!
//! A burst is decided in chunks of [`TOKEN_BATCH`] frames. Before a chunk, one pass reads
//! each common request's user id and token expiry at fixed offsets and computes all their
//! token MACs at once in AVX2 lanes ([`TokenBatch`]): SipHash-2-4 is a chain of dependent
//! steps, about 120 instructions a token alone, 42 in lanes. The decision takes a MAC from
//! the batch only if it was computed for that request's own user id and expiry, so the
//! pass needs no validation of its own. On a CPU without AVX2 there is no pass and each
//! token is hashed in its decision. The DPDK worker loop's bursts skip that pass: the loop
//! stages each burst one pass ahead ([`Staged`]), and the stage, which reads every user id
//! to prefetch its table bucket, keeps the token inputs and the bucket for the decision.
//!
//! Counting: every drop is counted once, where it is decided (here, or in the engine for the
//! payload checks), by [`Counters::count_drop`], the only maker of the [`Dropped`] that a
//! [`Verdict::Drop`] is made from here: no drop reaches a verdict uncounted, and none is
//! counted twice. An answer is only a [`Verdict`] that says what it answers ([`Reply`]),
//! and the I/O layer counts it when TX takes it, as it counts `rx` when it receives.
//!
//! Sources that must never get an answer (SPEC 2) are dropped as [`DropReason::Source`]: a
//! group Ethernet source, a source address no host sends from or loopback (RFC 1122
//! 3.2.1.3), our own address, UDP source port 0. On the common frame that is one
//! branch-free test of bytes already loaded. ARP follows RFC 5227: a probe (sender address
//! 0.0.0.0) for our address is answered like any request, which is how the prober learns the
//! address is taken; a station giving our address as its own is a conflict
//! ([`DropReason::ArpConflict`]), counted, never answered.

use crate::counters::{Counters, DropReason, Dropped, Reply};
use crate::engine::users::Home;
use crate::engine::Worker;
use crate::journal::ClaimSink;
use crate::mac::{TokenBatch, TokenMac, TOKEN_BATCH};
use crate::seed::SeedSource;
use crate::wire::arp::{self, ArpPacket};
use crate::wire::checksum::{self, NativeSum};
use crate::wire::ethernet::{self, EthernetFrame};
use crate::wire::icmp::{self, IcmpPacket};
use crate::wire::icmpv6::{self, Icmpv6Packet};
use crate::wire::ipv4::{self, Ipv4Packet};
use crate::wire::ipv6::{self, Ipv6Packet};
use crate::wire::shake::{self, PAYLOAD_LEN};
use crate::wire::udp::{self, UdpPacket};

/// TTL of every answer.
pub const ANSWER_TTL: u8 = 64;

/// What the frame layer answers for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameConfig {
    pub ipv4: [u8; 4],
    /// The node's IPv6 addresses; `None`: IPv6 is not served, and IPv6 frames are dropped as
    /// [`DropReason::Ethertype`], as before the node spoke IPv6.
    pub ipv6: Option<Ipv6Addrs>,
    /// Our MAC, for ARP replies (the port's MAC under DPDK).
    pub mac: [u8; 6],
    pub udp_port: u16,
    /// Leave the UDP checksum to the NIC: the field gets the pseudo-header sum, as DPDK's
    /// `RTE_MBUF_F_TX_UDP_CKSUM` expects.
    pub tx_udp_offload: bool,
    /// Leave the IPv4 header checksum of UDP answers to the NIC: the field gets zero, as
    /// DPDK's `RTE_MBUF_F_TX_IP_CKSUM` expects. ICMP echo replies are summed here as always
    /// (rare, and their verdict stays a plain [`Verdict::Answer`]).
    pub tx_ipv4_offload: bool,
}

bitflags::bitflags! {
    /// What an answer leaves to the NIC: DPDK's TX mbuf flags, which the I/O layer sets from
    /// these (and refuses to send an answer that asks for one its port lacks).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct TxOffload: u8 {
        /// An IPv6 answer, else IPv4: where the NIC finds the pseudo-header's addresses.
        const IPV6 = 1;
        /// The IPv4 header checksum; the field holds zero.
        const IPV4_CKSUM = 2;
        /// The UDP checksum; the field holds the pseudo-header sum.
        const UDP_CKSUM = 4;
    }
}

bitflags::bitflags! {
    /// What the NIC verified of a received frame: DPDK's `RTE_MBUF_F_RX_IP_CKSUM_GOOD` and
    /// `RTE_MBUF_F_RX_L4_CKSUM_GOOD`. The common request's checks skip a sum the device has
    /// done (smoltcp's `ChecksumCapabilities` are the model). Only a GOOD verdict is used:
    /// a frame the device calls bad, or did not check, is summed here as always, so a
    /// device's view of an edge case (a zero UDP checksum over IPv4 means none, over IPv6 it
    /// is wrong) never decides a drop; an IPv6 request with a zero checksum is dropped even
    /// when the device calls it good. Frames that leave the common path (VLAN tags, IPv4
    /// options, IPv6 extension headers) are always summed here: they are rare.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct RxChecked: u8 {
        /// The IPv4 header checksum is right.
        const IPV4 = 1;
        /// The UDP checksum is right (over IPv4 or IPv6).
        const L4 = 2;
    }
}

/// The node's IPv6 addresses on one port: it answers Neighbor Solicitations, echo requests
/// and SHAKE/1 on both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Addrs {
    pub global: [u8; 16],
    /// fe80::/10; by default derived from the port's MAC
    /// ([`link_local_from_mac`](crate::wire::ipv6::link_local_from_mac)).
    pub link_local: [u8; 16],
}

impl Ipv6Addrs {
    /// The addresses of a port with this MAC: the global one, and the given link-local one or
    /// the one derived from the MAC.
    pub fn new(global: [u8; 16], link_local: Option<[u8; 16]>, mac: [u8; 6]) -> Ipv6Addrs {
        Ipv6Addrs {
            global,
            link_local: link_local.unwrap_or_else(|| crate::wire::ipv6::link_local_from_mac(mac)),
        }
    }

    /// Whether `a` is one of them.
    #[inline]
    pub fn is_ours(&self, a: &[u8; 16]) -> bool {
        *a == self.global || *a == self.link_local
    }
}

/// What became of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Transmit the first `len` bytes of the buffer, which answer `reply`.
    Answer { len: usize, reply: Reply },
    /// Transmit `len` bytes with checksums offloaded to the NIC, never with
    /// [`TxOffload::empty`] (that is an [`Answer`](Verdict::Answer)).
    AnswerOffload {
        len: usize,
        l2_len: u16,
        l3_len: u16,
        offload: TxOffload,
        reply: Reply,
    },
    /// Dropped and counted.
    Drop(DropReason),
}

/// The verdict on a frame a layer dropped: made only from a [`Dropped`], so only from a
/// counted drop.
impl From<Dropped> for Verdict {
    #[inline(always)]
    fn from(d: Dropped) -> Verdict {
        Verdict::Drop(d.reason())
    }
}

impl Verdict {
    /// An answer of `len` bytes, with layer 3 at `l2_len` and layer 4 `l3_len` after it,
    /// whose checksums `offload` leaves to the NIC: a plain [`Answer`](Verdict::Answer) when
    /// it leaves none.
    #[inline(always)]
    fn answer(
        len: usize,
        (l2_len, l3_len): (usize, usize),
        offload: TxOffload,
        reply: Reply,
    ) -> Verdict {
        if offload.intersects(TxOffload::IPV4_CKSUM | TxOffload::UDP_CKSUM) {
            Verdict::AnswerOffload {
                len,
                l2_len: l2_len as u16,
                l3_len: l3_len as u16,
                offload,
                reply,
            }
        } else {
            Verdict::Answer { len, reply }
        }
    }

    /// Bytes to transmit, if any.
    pub fn tx_len(&self) -> Option<usize> {
        match *self {
            Verdict::Answer { len, .. } | Verdict::AnswerOffload { len, .. } => Some(len),
            Verdict::Drop(_) => None,
        }
    }

    /// What the frame answers, if it is transmitted.
    pub fn reply(&self) -> Option<Reply> {
        match *self {
            Verdict::Answer { reply, .. } | Verdict::AnswerOffload { reply, .. } => Some(reply),
            Verdict::Drop(_) => None,
        }
    }
}

/// Decides a burst. Call [`Worker::begin_burst`] first. `verdicts` must be at least as long
/// as `frames`. Counts every drop; `rx` and the replies are the I/O layer's to count, as it
/// receives and transmits.
///
/// The checksums are all summed here; [`process_burst_checked`], which this calls, is told
/// which the NIC verified.
#[inline]
pub fn process_burst<S: SeedSource, J: ClaimSink>(
    worker: &mut Worker<S, J>,
    cfg: &FrameConfig,
    frames: &mut [&mut [u8]],
    verdicts: &mut [Verdict],
) {
    process_burst_checked(worker, cfg, frames, &[], verdicts);
}

/// Calls `$f::<_, _, TX>(args)` with `TX` the bits of the [`TxOffload`] checksums `$cfg`
/// leaves to the NIC, a constant: the burst loop is compiled once for each of the four
/// combinations, so no answer branches on them (the branches, the flags built per answer and
/// a spilled register cost 12 of the 15 instructions that leaving the IPv4 header checksum
/// to the NIC saves).
macro_rules! with_tx_offload {
    ($cfg:expr, $f:ident($($arg:expr),* $(,)?)) => {{
        const IP: u8 = TxOffload::IPV4_CKSUM.bits();
        const UDP: u8 = TxOffload::UDP_CKSUM.bits();
        match ($cfg.tx_ipv4_offload, $cfg.tx_udp_offload) {
            (false, false) => $f::<_, _, 0>($($arg),*),
            (true, false) => $f::<_, _, IP>($($arg),*),
            (false, true) => $f::<_, _, UDP>($($arg),*),
            (true, true) => $f::<_, _, { IP | UDP }>($($arg),*),
        }
    }};
}

/// [`process_burst`] for frames some of whose checksums the NIC verified: `checked[i]` says
/// what of `frames[i]` (frames past its end: nothing). The DPDK worker calls this with each
/// mbuf's receive flags.
///
/// Not inlined into callers: one call per burst costs nothing, and it keeps the datapath one
/// symbol that profilers (callgrind) can count instructions for.
#[inline(never)]
pub fn process_burst_checked<S: SeedSource, J: ClaimSink>(
    worker: &mut Worker<S, J>,
    cfg: &FrameConfig,
    frames: &mut [&mut [u8]],
    checked: &[RxChecked],
    verdicts: &mut [Verdict],
) {
    with_tx_offload!(
        cfg,
        decide_burst(worker, cfg, frames, checked, verdicts, None)
    );
}

/// [`process_burst_checked`] for a burst that [`Staged::stage`] staged on an earlier pass
/// (the DPDK worker loop's staged bursts): what that pass read is used, not read again (see
/// [`Staged`]). Leaves `staged` empty. A `staged` that does not hold as many frames as the
/// burst is not used: the burst is decided as by [`process_burst_checked`].
#[inline(never)]
pub fn process_burst_checked_staged<S: SeedSource, J: ClaimSink>(
    worker: &mut Worker<S, J>,
    cfg: &FrameConfig,
    frames: &mut [&mut [u8]],
    checked: &[RxChecked],
    staged: &mut Staged,
    verdicts: &mut [Verdict],
) {
    with_tx_offload!(
        cfg,
        decide_burst(worker, cfg, frames, checked, verdicts, Some(staged))
    );
}

/// What the pass that receives a burst reads of its frames for their decision one pass
/// later (the DPDK worker loop's software pipeline): each frame's user's table bucket,
/// whose load [`stage`](Self::stage) starts, and each common request's user id and token
/// expiry, the inputs of the burst's token MACs.
///
/// Why a stage: [`process_burst`] prefetches only `PREFETCH_AHEAD` frames ahead, which leaves
/// the first frames of a burst too little time when the table is far larger than the caches.
/// The stage does not replace the prefetch inside the burst: without that one the benchmark
/// measured slower than with neither (2.37 against 2.07 us a burst at 10M users), with both
/// 1.6-1.8 us. The second prefetch, of the frames from `PREFETCH_AHEAD` on, uses the bucket
/// the stage found; dropping it saved 25 instructions and cost ~10% at 10M users.
///
/// Every frame is staged, not only the first `PREFETCH_AHEAD`: staging only those (0812099)
/// saved 20 instructions a request and doubled the time at 100 million users (the datapath
/// benchmark, 2.5 GB table: 6.0-6.2 us a burst against 2.6-3.4 us with the whole burst
/// staged, interleaved runs on one host). In a VM the miss on a random bucket of a table that
/// large includes a page walk under nested paging, and `PREFETCH_AHEAD` frames (~0.5 us) do
/// not cover it; one pass does.
///
/// Before the stage kept what it read, the burst's decision read each frame's user id twice
/// more (for the token batch, and for the second prefetch, which hashed it again): the
/// stage saves 30 instructions a request (bench/results/cost_curve.txt).
///
/// All of it is a hint. The decision hashes the user id of the request itself for its
/// lookup, and takes a MAC only if it was computed for the request's own user id and expiry
/// ([`TokenMac::mac_for`]), so a `Staged` of other frames, or of none, costs time and never
/// changes a verdict.
pub struct Staged {
    tokens: TokenBatch,
    homes: [Home; TOKEN_BATCH],
    len: usize,
}

impl Default for Staged {
    fn default() -> Self {
        Staged {
            tokens: TokenBatch::default(),
            homes: [Home::NONE; TOKEN_BATCH],
            len: 0,
        }
    }
}

impl Staged {
    /// Frames staged.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no frame is staged.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets what was staged.
    #[inline]
    pub fn clear(&mut self) {
        self.tokens.clear();
        self.len = 0;
    }

    /// Stages a burst: starts loading the table bucket of each frame's user and keeps the
    /// token inputs of each, forgetting what was staged before. Of a burst of more than
    /// [`TOKEN_BATCH`] frames only the buckets are loaded: it is decided unstaged. Nothing is
    /// validated.
    #[inline]
    pub fn stage<'a, S: SeedSource, J: ClaimSink>(
        &mut self,
        worker: &Worker<S, J>,
        frames: impl IntoIterator<Item = &'a [u8]>,
    ) {
        // The count in a local: kept in `self`, every store reloaded it. One plain loop: the
        // iterator adapters of a batch filled from a map over the frames cost the DPDK
        // worker's stage 14 instructions a frame (bench/worker_ir.sh).
        let mut n = 0;
        let mut tokens = self.tokens.refill();
        for f in frames {
            let (home, user, expiry) = stage_frame(worker, f);
            if let Some(h) = self.homes.get_mut(n) {
                *h = home;
            }
            tokens.put(n, user, expiry);
            n += 1;
        }
        tokens.finish(n);
        self.len = n;
    }
}

#[inline(always)]
fn decide_burst<S: SeedSource, J: ClaimSink, const TX: u8>(
    worker: &mut Worker<S, J>,
    cfg: &FrameConfig,
    frames: &mut [&mut [u8]],
    checked: &[RxChecked],
    verdicts: &mut [Verdict],
    staged: Option<&mut Staged>,
) {
    // Prefetch each user's table bucket PREFETCH_AHEAD frames before deciding it, as DPDK's
    // l3fwd does: enough ahead to hide a miss, few enough in flight that the core's miss
    // buffers do not overflow (prefetching all 32 first measured slower). A staged burst's
    // buckets were all prefetched a pass before; those from PREFETCH_AHEAD on get this second
    // one too, from the stage's hint (see Staged).
    let n = frames.len().min(verdicts.len());
    if let Some(s) = staged {
        let used = s.len == n && n <= TOKEN_BATCH;
        if used {
            decide_staged::<S, J, TX>(worker, cfg, frames, checked, verdicts, s);
        }
        s.clear();
        if used {
            return;
        }
    }
    for f in frames.iter().take(PREFETCH_AHEAD) {
        prefetch_user_of(worker, f);
    }
    let mut batch = TokenBatch::default();
    let mut start = 0;
    while start < n {
        // The token MACs of the next TOKEN_BATCH frames, together (see `batch_tokens`).
        let end = n.min(start + TOKEN_BATCH);
        batch_tokens(worker, &frames[start..end], &mut batch);
        for i in start..end {
            if let Some(f) = frames.get(i + PREFETCH_AHEAD) {
                prefetch_user_of(worker, f);
            }
            let rx = checked.get(i).copied().unwrap_or_default();
            let mac = batch.get(i - start);
            decide_into::<S, J, TX>(worker, cfg, frames[i], rx, mac, &mut verdicts[i]);
        }
        start = end;
    }
}

/// [`decide_burst`] for a burst of at most [`TOKEN_BATCH`] frames that `s` staged, in order.
#[inline(always)]
fn decide_staged<S: SeedSource, J: ClaimSink, const TX: u8>(
    worker: &mut Worker<S, J>,
    cfg: &FrameConfig,
    frames: &mut [&mut [u8]],
    checked: &[RxChecked],
    verdicts: &mut [Verdict],
    s: &mut Staged,
) {
    let n = s.len;
    if worker.lanes().is_vector() && worker.decides_all(n) {
        s.tokens
            .compute(&worker.live().identity.token_key, worker.lanes());
    }
    let homes = &s.homes[..n];
    let macs = s.tokens.computed();
    for (i, (f, v)) in frames.iter_mut().zip(verdicts.iter_mut()).enumerate() {
        if let Some(&h) = homes.get(i + PREFETCH_AHEAD) {
            worker.prefetch_home(h);
        }
        let rx = checked.get(i).copied().unwrap_or_default();
        decide_into::<S, J, TX>(worker, cfg, f, rx, macs.get(i), v);
    }
}

/// Computes the token MACs of the first [`TOKEN_BATCH`] of `frames` together, in vector
/// lanes ([`TokenBatch`]), from the user id and expiry of each common IPv4 or IPv6 request
/// read at fixed offsets; leaves `batch` empty if the CPU has no lanes or the worker would
/// shed some of them (a shed request is never hashed).
///
/// What is read here is not validated: a request's decision uses a MAC from the batch only
/// if it was computed for that request's own user id and expiry, so a frame that is not a
/// request, or one read at the wrong offsets, costs at most a SipHash of its own later.
#[inline(always)]
fn batch_tokens<S: SeedSource, J: ClaimSink>(
    worker: &Worker<S, J>,
    frames: &[&mut [u8]],
    batch: &mut TokenBatch,
) {
    batch.clear();
    if !worker.lanes().is_vector() || !worker.decides_all(frames.len()) {
        return;
    }
    batch.fill(frames.iter().map(|f| token_inputs(f)));
    batch.compute(&worker.live().identity.token_key, worker.lanes());
}

/// The user id and token expiry of a common IPv4 or IPv6 request, by fixed offsets (the
/// layouts `common_request` and `common_request_v6` accept); zeros for any other frame.
#[inline(always)]
fn token_inputs(f: &[u8]) -> (u64, u32) {
    const USER: usize = shake::req::USER_ID.start;
    const EXPIRY: usize = shake::req::TOKEN_EXPIRY.start;
    let at = match f.get(12..14) {
        Some(t) if t == ethernet::ETHERTYPE_IPV4.to_be_bytes() => common::PAYLOAD,
        Some(t) if t == ethernet::ETHERTYPE_IPV6.to_be_bytes() => common6::PAYLOAD,
        _ => return (0, 0),
    };
    match f.get(at..at + PAYLOAD_LEN) {
        Some(p) => (
            u64::from_be_bytes(p[USER..USER + 8].try_into().expect("fixed layout")),
            u32::from_be_bytes(p[EXPIRY..EXPIRY + 4].try_into().expect("fixed layout")),
        ),
        None => (0, 0),
    }
}

/// [`process_frame`] into the burst's verdict slot. The common request's verdict is stored
/// here; any other frame's by [`answer_other`], out of line: its verdict arrives in memory,
/// and merging the two stores made the common path store every field of the widest
/// variant through the stack.
#[inline(always)]
fn decide_into<S: SeedSource, J: ClaimSink, const TX: u8>(
    worker: &mut Worker<S, J>,
    cfg: &FrameConfig,
    frame: &mut [u8],
    rx: RxChecked,
    mac: Option<&TokenMac>,
    out: &mut Verdict,
) {
    match common_request(frame) {
        Some(f) => *out = answer_common::<S, J, TX>(worker, cfg, f, rx, mac),
        None => match (cfg.ipv6.as_ref(), common_request_v6(frame)) {
            // The common IPv6 request too, inline: out of line it measured 20% more
            // instructions than IPv4 (the call, the verdict through memory).
            (Some(v6), Some(f)) => *out = answer_common_v6::<S, J, TX>(worker, cfg, v6, f, rx, mac),
            _ => answer_other(worker, cfg, frame, out),
        },
    }
}

#[inline(never)]
fn answer_other<S: SeedSource, J: ClaimSink>(
    worker: &mut Worker<S, J>,
    cfg: &FrameConfig,
    frame: &mut [u8],
    out: &mut Verdict,
) {
    *out = answer_any(worker, cfg, frame).unwrap_or_else(Verdict::from);
}

/// Prefetches the table bucket of the frame's user, if it is a SHAKE/1 frame, and returns
/// it, with the user id and token expiry of a common IPv4 or IPv6 request (zeros for any
/// other frame, as [`token_inputs`] reads them). The common requests (untagged, IPv4 without
/// options or IPv6 with UDP right after the fixed header) are read by fixed offsets; anything
/// else goes through [`peek_user`], out of line. Nothing is validated.
#[inline(always)]
fn stage_frame<S: SeedSource, J: ClaimSink>(worker: &Worker<S, J>, f: &[u8]) -> (Home, u64, u32) {
    const USER: usize = shake::req::USER_ID.start;
    const EXPIRY: usize = shake::req::TOKEN_EXPIRY.start;
    /// Ethertype IPv4 and version 4 with IHL 5, as one word (byte 15, the TOS, masked off).
    const MASK: u32 = u32::from_ne_bytes([0xff, 0xff, 0xff, 0]);
    const WANT: u32 = u32::from_ne_bytes([0x08, 0x00, 0x45, 0]);
    /// The user id and expiry of a payload at `at`, and the user's bucket, touched.
    #[inline(always)]
    fn request<S: SeedSource, J: ClaimSink, const N: usize>(
        worker: &Worker<S, J>,
        h: &[u8; N],
        at: usize,
    ) -> (Home, u64, u32) {
        let user = u64::from_be_bytes(
            h[at + USER..at + USER + 8]
                .try_into()
                .expect("fixed layout"),
        );
        let expiry = u32::from_be_bytes(
            h[at + EXPIRY..at + EXPIRY + 4]
                .try_into()
                .expect("fixed layout"),
        );
        (worker.prefetch_user(user), user, expiry)
    }
    if let Some(h) = f.get(..COMMON_LEN) {
        let h: &[u8; COMMON_LEN] = h.try_into().expect("sliced to length");
        let head = u32::from_ne_bytes(h[12..16].try_into().expect("fixed layout"));
        if head & MASK == WANT && h[23] == ipv4::PROTOCOL_UDP {
            return request(worker, h, common::PAYLOAD);
        }
    }
    if let Some(h) = f.get(..COMMON6_LEN) {
        let h: &[u8; COMMON6_LEN] = h.try_into().expect("sliced to length");
        if h[12..14] == ethernet::ETHERTYPE_IPV6.to_be_bytes()
            && h[common6::IP + 6] == ipv6::NEXT_UDP
        {
            return request(worker, h, common6::PAYLOAD);
        }
    }
    (stage_other(worker, f), 0, 0)
}

/// [`stage_frame`] for the frames it does not read by fixed offsets; out of line, and cold
/// so that the common request's staging falls through (two jumps a frame less).
#[cold]
#[inline(never)]
fn stage_other<S: SeedSource, J: ClaimSink>(worker: &Worker<S, J>, f: &[u8]) -> Home {
    peek_user(f).map_or(Home::NONE, |user| worker.prefetch_user(user))
}

/// Frames between a bucket's prefetch and its use.
const PREFETCH_AHEAD: usize = 8;

/// Where a frame's SHAKE/1 payload starts, if it looks like one (no checksum checks): for
/// prefetching and for steering a frame to the worker that owns its user.
#[inline]
pub fn shake_payload(frame: &[u8]) -> Option<usize> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let l3 = eth.header_len();
    if eth.ethertype() == ethernet::ETHERTYPE_IPV6 {
        let ip = Ipv6Packet::new_checked(&frame[l3..]).ok()?;
        let up = ip.upper_layer().ok()?;
        if up.protocol != ipv6::NEXT_UDP {
            return None;
        }
        let l4 = l3 + ipv6::HEADER_LEN + up.offset;
        let end = l3 + ipv6::HEADER_LEN + usize::from(ip.payload_len());
        let u = UdpPacket::new_checked(&frame[l4..end]).ok()?;
        return (u.len() as usize == udp::HEADER_LEN + PAYLOAD_LEN).then_some(l4 + udp::HEADER_LEN);
    }
    if eth.ethertype() != ethernet::ETHERTYPE_IPV4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(&frame[l3..]).ok()?;
    if ip.protocol() != ipv4::PROTOCOL_UDP {
        return None;
    }
    let l4 = l3 + ip.header_len();
    let u = UdpPacket::new_checked(&frame[l4..l3 + ip.total_len() as usize]).ok()?;
    (u.len() as usize == udp::HEADER_LEN + PAYLOAD_LEN).then_some(l4 + udp::HEADER_LEN)
}

/// Prefetches the table bucket of the frame's user, if it is a SHAKE/1 frame: what
/// [`stage_frame`] does, its other results unused. Only a hint: nothing is validated.
#[inline(always)]
fn prefetch_user_of<S: SeedSource, J: ClaimSink>(worker: &Worker<S, J>, f: &[u8]) {
    let _ = stage_frame(worker, f);
}

/// The user id of a SHAKE/1 frame, for steering.
#[inline]
pub fn peek_user(frame: &[u8]) -> Option<u64> {
    let off = shake_payload(frame)?;
    Some(u64::from_be_bytes(
        frame[off + 8..off + 16].try_into().ok()?,
    ))
}

/// Decides one frame (its drop, if any, is counted).
pub fn process_frame<S: SeedSource, J: ClaimSink>(
    worker: &mut Worker<S, J>,
    cfg: &FrameConfig,
    frame: &mut [u8],
) -> Verdict {
    answer(worker, cfg, frame)
}

/// Whether a frame from this source must get no answer (SPEC 2): a group Ethernet source
/// (the answer would go to the whole group), an IPv4 source no host sends from or loopback
/// (RFC 1122 3.2.1.3, looked up by first octet), or our own address (a loop). `ours` is
/// `src == our address`. Or-ed, not short-circuited: no branch until the caller's test.
#[inline(always)]
fn never_answered(eth_src0: u8, ip_src0: u8, ours: bool) -> bool {
    (eth_src0 & 1 != 0) | NEVER_ANSWERED_OCTET[usize::from(ip_src0)] | ours
}

/// IPv4 sources never answered, by first octet: 0/8, 127/8, 224/4, 240/4 (with broadcast).
const NEVER_ANSWERED_OCTET: [bool; 256] = {
    let mut t = [false; 256];
    let mut a = 0;
    while a < 256 {
        t[a] = ipv4::never_a_source(a as u8) || ipv4::is_loopback(a as u8);
        a += 1;
    }
    t
};

fn answer<S: SeedSource, J: ClaimSink>(
    worker: &mut Worker<S, J>,
    cfg: &FrameConfig,
    frame: &mut [u8],
) -> Verdict {
    let mut v = Verdict::Drop(DropReason::Internal);
    with_tx_offload!(
        cfg,
        decide_into(worker, cfg, frame, RxChecked::empty(), None, &mut v)
    );
    v
}

/// Length of the common request frame: untagged Ethernet, IPv4 without options, UDP, SHAKE/1.
const COMMON_LEN: usize = ethernet::HEADER_LEN + ipv4::HEADER_LEN + udp::HEADER_LEN + PAYLOAD_LEN;

/// Fixed offsets in the common frame.
mod common {
    use super::*;
    pub const IP: usize = ethernet::HEADER_LEN;
    pub const UDP: usize = IP + ipv4::HEADER_LEN;
    pub const PAYLOAD: usize = UDP + udp::HEADER_LEN;
    pub const UDP_LEN: u16 = (udp::HEADER_LEN + PAYLOAD_LEN) as u16;
    pub const IP_TOTAL_LEN: u16 = ipv4::HEADER_LEN as u16 + UDP_LEN;
}

/// The frame as a fixed-size array if its layout is the common one: untagged IPv4, IHL 5,
/// total length and UDP length those of a 64-byte payload. Such a frame passes every length
/// check of [`answer_any`], so [`answer_common`] can decide it with fixed offsets and no
/// bounds checks, in the same order of checks and with the same result.
#[inline]
fn common_request(frame: &mut [u8]) -> Option<&mut [u8; COMMON_LEN]> {
    let f: &mut [u8; COMMON_LEN] = frame.get_mut(..COMMON_LEN)?.try_into().ok()?;
    let ip = common::IP;
    let u = common::UDP;
    let ok = u16::from_be_bytes([f[12], f[13]]) == ethernet::ETHERTYPE_IPV4
        && f[ip] == 0x45
        && u16::from_be_bytes([f[ip + 2], f[ip + 3]]) == common::IP_TOTAL_LEN
        && f[ip + 9] == ipv4::PROTOCOL_UDP
        && u16::from_be_bytes([f[u + 4], f[u + 5]]) == common::UDP_LEN;
    ok.then_some(f)
}

#[inline]
fn payload(f: &[u8; COMMON_LEN]) -> &[u8; PAYLOAD_LEN] {
    f[common::PAYLOAD..].try_into().expect("fixed layout")
}

#[inline]
fn payload_mut(f: &mut [u8; COMMON_LEN]) -> &mut [u8; PAYLOAD_LEN] {
    (&mut f[common::PAYLOAD..])
        .try_into()
        .expect("fixed layout")
}

/// Native-endian words of the common frame at fixed offsets: one load each, no bounds check.
/// Checksums are summed in native order (see [`NativeSum`]), so nothing is byte-swapped.
#[inline(always)]
fn ne64<const AT: usize>(f: &[u8; COMMON_LEN]) -> u64 {
    u64::from_ne_bytes(f[AT..AT + 8].try_into().expect("fixed layout"))
}

#[inline(always)]
fn ne32<const AT: usize>(f: &[u8; COMMON_LEN]) -> u32 {
    u32::from_ne_bytes(f[AT..AT + 4].try_into().expect("fixed layout"))
}

#[inline(always)]
fn ne16<const AT: usize>(f: &[u8; COMMON_LEN]) -> u16 {
    u16::from_ne_bytes([f[AT], f[AT + 1]])
}

/// The native-endian word of a big-endian field value.
#[inline(always)]
const fn be16(v: u16) -> u16 {
    u16::from_ne_bytes(v.to_be_bytes())
}

/// [`answer_any`] for a frame [`common_request`] accepted.
///
/// The frame is read as a few native-endian words: `head` is IPv4 bytes 0..8 (version to
/// fragment field), `ttl_word` bytes 8..12 (TTL, protocol, checksum), `addrs` the two
/// addresses and `udp` the whole UDP header. The UDP checksum covers the addresses (pseudo
/// header), the UDP header and the payload; the answer swaps addresses and ports, which leaves
/// their part of the sum as it was.
#[inline(always)]
fn answer_common<S: SeedSource, J: ClaimSink, const TX: u8>(
    worker: &mut Worker<S, J>,
    cfg: &FrameConfig,
    f: &mut [u8; COMMON_LEN],
    rx: RxChecked,
    mac: Option<&TokenMac>,
) -> Verdict {
    use common::{IP, PAYLOAD, UDP, UDP_LEN};
    /// Pseudo-header protocol and UDP length, as one native word.
    const PSEUDO_REST: u64 = {
        let p = (ipv4::PROTOCOL_UDP as u16).to_be_bytes();
        let l = UDP_LEN.to_be_bytes();
        u64::from_ne_bytes([p[0], p[1], l[0], l[1], 0, 0, 0, 0])
    };
    /// The checksum field (bytes 6..8) within the UDP header word.
    const UDP_CK: u64 = u64::from_ne_bytes([0, 0, 0, 0, 0, 0, 0xff, 0xff]);
    /// The source port (bytes 0..2) within the UDP header word.
    const UDP_SRC_PORT: u64 = u64::from_ne_bytes([0xff, 0xff, 0, 0, 0, 0, 0, 0]);
    /// The flags-and-offset field (bytes 6..8) within `head`, MF and offset bits only.
    const FRAGMENT: u64 = {
        let m = (ipv4::FLAG_MF | ipv4::OFFSET_MASK).to_be_bytes();
        u64::from_ne_bytes([0, 0, 0, 0, 0, 0, m[0], m[1]])
    };
    let head = ne64::<IP>(f);
    let ttl_word = ne32::<{ IP + 8 }>(f);
    let addrs = ne64::<{ IP + 12 }>(f);
    let ip_sum = || {
        NativeSum::default()
            .add_word(head)
            .add_word(u64::from(ttl_word))
            .add_word(addrs)
    };
    if !rx.contains(RxChecked::IPV4) && ip_sum().fold() != 0xffff {
        return worker
            .counters()
            .count_drop(DropReason::Ipv4Checksum)
            .into();
    }
    let ours = u32::from_ne_bytes(cfg.ipv4);
    if ne32::<{ IP + 16 }>(f) != ours {
        return worker.counters().count_drop(DropReason::NotForUs).into();
    }
    if head & FRAGMENT != 0 {
        return worker.counters().count_drop(DropReason::Fragment).into();
    }
    if ne16::<{ UDP + 2 }>(f) != be16(cfg.udp_port) {
        return worker.counters().count_drop(DropReason::Port).into();
    }
    // The source is our own address when the two halves of `addrs` are equal (the
    // destination is ours), its port is 0 when the first two bytes of the UDP header are.
    let udp = ne64::<UDP>(f);
    let from_us = addrs as u32 == (addrs >> 32) as u32;
    if never_answered(f[6], f[IP + 12], from_us) | (udp & UDP_SRC_PORT == 0) {
        return worker.counters().count_drop(DropReason::Source).into();
    }
    if udp & UDP_CK != 0 && !rx.contains(RxChecked::L4) {
        let sum = NativeSum::default()
            .add_word(addrs)
            .add_word(PSEUDO_REST)
            .add_word(udp)
            .add_bytes(payload(f));
        if sum.fold() != 0xffff {
            return worker.counters().count_drop(DropReason::UdpChecksum).into();
        }
    }
    // The answer to a valid request, or a drop the engine counted.
    let reply = match worker.shake_payload_with(payload_mut(f), mac) {
        Ok(o) => Reply::shake(o),
        Err(d) => return d.into(),
    };
    // Ethernet and IP addresses and ports swap; only the TTL word of the IP header changes
    // its checksum (updated in native order, which RFC 1071 2.B allows as for the sums).
    answer_macs(&mut f[..IP], cfg.mac);
    f[IP + 12..UDP].copy_from_slice(&addrs.rotate_left(32).to_ne_bytes());
    // The checksums left to the NIC: `cfg`'s, as a constant (see `with_tx_offload`).
    let offload = TxOffload::from_bits_retain(TX);
    let ck = if offload.contains(TxOffload::IPV4_CKSUM) {
        0
    } else {
        checksum::update(
            ne16::<{ IP + 10 }>(f),
            ne16::<{ IP + 8 }>(f),
            u16::from_ne_bytes([ANSWER_TTL, ipv4::PROTOCOL_UDP]),
        )
    };
    f[IP + 8] = ANSWER_TTL;
    f[IP + 10..IP + 12].copy_from_slice(&ck.to_ne_bytes());
    let ports = ne32::<UDP>(f).rotate_left(16);
    f[UDP..UDP + 4].copy_from_slice(&ports.to_ne_bytes());
    let ck = if offload.contains(TxOffload::UDP_CKSUM) {
        // The answer's pseudo-header sum: its destination, the request's source, and the
        // rest, which is the port's own (its address, UDP, the length) and hoisted out of the
        // burst loop. 15 instructions summed whole, 8 so.
        let [a, b, c, d, ..] = addrs.to_ne_bytes();
        let port_part = NativeSum::default()
            .add_word(u64::from(ours))
            .add_word(PSEUDO_REST)
            .fold();
        checksum::add16(
            checksum::fold32(u32::from_ne_bytes([a, b, c, d])),
            port_part,
        )
    } else {
        let pseudo = NativeSum::default().add_word(addrs).add_word(PSEUDO_REST);
        let ck = !pseudo.add_word(udp & !UDP_CK).add_bytes(payload(f)).fold();
        // Zero on the wire means "no checksum" (and reads zero in either byte order).
        if ck == 0 {
            0xffff
        } else {
            ck
        }
    };
    f[UDP + 6..PAYLOAD].copy_from_slice(&ck.to_ne_bytes());
    Verdict::answer(COMMON_LEN, (IP, ipv4::HEADER_LEN), offload, reply)
}

/// Any frame: Ethernet with or without a VLAN tag, ARP, IPv4 with or without options, ICMP
/// echo, UDP.
fn answer_any<S: SeedSource, J: ClaimSink>(
    worker: &mut Worker<S, J>,
    cfg: &FrameConfig,
    frame: &mut [u8],
) -> Result<Verdict, Dropped> {
    let c = worker.counters();
    let eth =
        EthernetFrame::new_checked(&*frame).map_err(|_| c.count_drop(DropReason::Truncated))?;
    let l3 = eth.header_len();
    match (eth.ethertype(), cfg.ipv6) {
        (ethernet::ETHERTYPE_IPV4, _) => {}
        (ethernet::ETHERTYPE_ARP, _) => return arp_reply(c, cfg, frame, l3),
        (ethernet::ETHERTYPE_IPV6, Some(v6)) => return answer_ipv6(worker, cfg, &v6, frame, l3),
        _ => return Err(c.count_drop(DropReason::Ethertype)),
    }
    let ip = Ipv4Packet::new_checked(&frame[l3..])
        .map_err(|_| c.count_drop(DropReason::Ipv4Malformed))?;
    if !ip.verify_checksum() {
        return Err(c.count_drop(DropReason::Ipv4Checksum));
    }
    if ip.dst_addr() != cfg.ipv4 {
        return Err(c.count_drop(DropReason::NotForUs));
    }
    if ip.is_fragment() {
        return Err(c.count_drop(DropReason::Fragment));
    }
    // Ethernet's source address, byte 0 (its group bit); the header is at least 14 bytes.
    let eth_src0 = frame[6];
    let ihl = ip.header_len();
    let l4 = l3 + ihl;
    let end = l3 + ip.total_len() as usize;
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let not_to_answer = never_answered(eth_src0, src[0], src == cfg.ipv4);
    match ip.protocol() {
        ipv4::PROTOCOL_UDP => {
            let u = UdpPacket::new_checked(&frame[l4..end])
                .map_err(|_| c.count_drop(DropReason::UdpMalformed))?;
            if u.dst_port() != cfg.udp_port {
                return Err(c.count_drop(DropReason::Port));
            }
            if not_to_answer | (u.src_port() == 0) {
                return Err(c.count_drop(DropReason::Source));
            }
            if u.checksum() != 0 && !u.verify_checksum(src, dst) {
                return Err(c.count_drop(DropReason::UdpChecksum));
            }
            let udp_len = u.len() as usize;
            if udp_len != udp::HEADER_LEN + PAYLOAD_LEN {
                return Err(c.count_drop(DropReason::PayloadLength));
            }
            let p = l4 + udp::HEADER_LEN;
            let reply = Reply::shake(worker.shake(&mut frame[p..p + PAYLOAD_LEN])?);
            let l4 = finish_ip(frame, l3, ihl, udp_len, cfg.mac);
            // The sum finish_ip left is replaced: rare frames (options, VLAN tags) only.
            let offload = if cfg.tx_ipv4_offload {
                Ipv4Packet::new_unchecked(&mut frame[l3..l4]).set_checksum(0);
                TxOffload::IPV4_CKSUM
            } else {
                TxOffload::empty()
            };
            // src/dst are the request's; the answer goes the other way.
            let pseudo = checksum::pseudo_header_v4(dst, src, ipv4::PROTOCOL_UDP, udp_len as u16);
            Ok(udp_answer(
                cfg,
                frame,
                (l3, l4, udp_len),
                pseudo,
                offload,
                reply,
            ))
        }
        ipv4::PROTOCOL_ICMP => {
            // An echo to a broadcast or spoofed source is the Smurf reflection.
            if not_to_answer {
                return Err(c.count_drop(DropReason::Source));
            }
            let mut m = IcmpPacket::new_checked(&mut frame[l4..end])
                .map_err(|_| c.count_drop(DropReason::Icmp))?;
            if m.msg_type() != icmp::ECHO_REQUEST || m.code() != 0 || !m.verify_checksum() {
                return Err(c.count_drop(DropReason::Icmp));
            }
            m.make_echo_reply();
            let icmp_len = end - l4;
            let l4 = finish_ip(frame, l3, ihl, icmp_len, cfg.mac);
            Ok(Verdict::Answer {
                len: l4 + icmp_len,
                reply: Reply::ICMP_ECHO,
            })
        }
        _ => Err(c.count_drop(DropReason::Protocol)),
    }
}

/// Length of the common IPv6 request frame: untagged Ethernet, IPv6 with UDP right after the
/// fixed header, SHAKE/1.
const COMMON6_LEN: usize = ethernet::HEADER_LEN + ipv6::HEADER_LEN + udp::HEADER_LEN + PAYLOAD_LEN;

/// Fixed offsets in the common IPv6 frame.
mod common6 {
    use super::*;
    pub const IP: usize = ethernet::HEADER_LEN;
    pub const SRC: usize = IP + 8;
    pub const DST: usize = IP + 24;
    pub const UDP: usize = IP + ipv6::HEADER_LEN;
    pub const PAYLOAD: usize = UDP + udp::HEADER_LEN;
    pub const UDP_LEN: u16 = (udp::HEADER_LEN + PAYLOAD_LEN) as u16;
}

/// The frame as a fixed-size array if its layout is the common IPv6 one: untagged, version 6,
/// no extension header, payload length and UDP length those of a 64-byte payload. Such a
/// frame passes every length check of [`answer_ipv6`], so [`answer_common_v6`] decides it
/// with fixed offsets, in the same order of checks and with the same result.
#[inline]
fn common_request_v6(frame: &mut [u8]) -> Option<&mut [u8; COMMON6_LEN]> {
    let f: &mut [u8; COMMON6_LEN] = frame.get_mut(..COMMON6_LEN)?.try_into().ok()?;
    let ip = common6::IP;
    let u = common6::UDP;
    let ok = u16::from_be_bytes([f[12], f[13]]) == ethernet::ETHERTYPE_IPV6
        && f[ip] >> 4 == 6
        && u16::from_be_bytes([f[ip + 4], f[ip + 5]]) == common6::UDP_LEN
        && f[ip + 6] == ipv6::NEXT_UDP
        && u16::from_be_bytes([f[u + 4], f[u + 5]]) == common6::UDP_LEN;
    ok.then_some(f)
}

/// A native-endian 128-bit word of a frame at a fixed offset (an IPv6 address).
#[inline(always)]
fn ne128<const AT: usize, const N: usize>(f: &[u8; N]) -> u128 {
    u128::from_ne_bytes(f[AT..AT + 16].try_into().expect("fixed layout"))
}

/// Whether an IPv6 source must never get an answer: [`ipv6::never_a_source`], or one of our
/// own addresses, or a group Ethernet source. Or-ed: no branch until the caller's test.
#[inline(always)]
fn never_answered_v6(eth_src0: u8, src: [u8; 16], v6: &Ipv6Addrs) -> bool {
    (eth_src0 & 1 != 0) | ipv6::never_a_source(src) | v6.is_ours(&src)
}

/// [`never_answered_v6`] on the source as a native-endian word, as the common path has it
/// loaded: the same answer in a few compares (the byte-array form measured 33 instructions).
#[inline(always)]
fn never_answered_v6_ne(eth_src0: u8, src: u128, v6: &Ipv6Addrs) -> bool {
    /// The first byte of an address (0xff: multicast), within the word of bytes 0..8.
    const FIRST: u64 = u64::from_ne_bytes([0xff, 0, 0, 0, 0, 0, 0, 0]);
    /// `::1`'s bytes 8..16.
    const ONE: u64 = u64::from_ne_bytes([0, 0, 0, 0, 0, 0, 0, 1]);
    /// Bytes 8..12 of an IPv4-mapped address (::ffff:a.b.c.d).
    const MAPPED: u32 = u32::from_ne_bytes([0, 0, 0xff, 0xff]);
    let b = src.to_ne_bytes();
    let hi = u64::from_ne_bytes(b[..8].try_into().expect("fixed layout"));
    let lo = u64::from_ne_bytes(b[8..].try_into().expect("fixed layout"));
    let low_special = (lo == 0) | (lo == ONE) | (lo as u32 == MAPPED);
    (eth_src0 & 1 != 0)
        | (hi & FIRST == FIRST)
        | ((hi == 0) & low_special)
        | (src == u128::from_ne_bytes(v6.global))
        | (src == u128::from_ne_bytes(v6.link_local))
}

/// [`answer_ipv6`] for a frame [`common_request_v6`] accepted: the IPv6 twin of
/// [`answer_common`]. There is no IP header checksum; the UDP checksum is mandatory (zero is
/// wrong) and covers the two addresses (four words here against one for IPv4), the
/// pseudo-header length and next header, the UDP header and the payload. The answer swaps
/// addresses and ports, which leaves their part of the sum as it was.
#[inline]
fn answer_common_v6<S: SeedSource, J: ClaimSink, const TX: u8>(
    worker: &mut Worker<S, J>,
    cfg: &FrameConfig,
    v6: &Ipv6Addrs,
    f: &mut [u8; COMMON6_LEN],
    rx: RxChecked,
    mac: Option<&TokenMac>,
) -> Verdict {
    use common6::{DST, PAYLOAD, SRC, UDP, UDP_LEN};
    /// Pseudo-header upper-layer length (32 bits) and next header (after 3 zero bytes), as
    /// one native word.
    const PSEUDO_REST: u64 = {
        let l = (UDP_LEN as u32).to_be_bytes();
        u64::from_ne_bytes([l[0], l[1], l[2], l[3], 0, 0, 0, ipv6::NEXT_UDP])
    };
    const UDP_CK: u64 = u64::from_ne_bytes([0, 0, 0, 0, 0, 0, 0xff, 0xff]);
    const UDP_SRC_PORT: u64 = u64::from_ne_bytes([0xff, 0xff, 0, 0, 0, 0, 0, 0]);
    let (src, dst) = (ne128::<SRC, COMMON6_LEN>(f), ne128::<DST, COMMON6_LEN>(f));
    if (dst != u128::from_ne_bytes(v6.global)) & (dst != u128::from_ne_bytes(v6.link_local)) {
        return worker.counters().count_drop(DropReason::NotForUs).into();
    }
    if u16::from_ne_bytes([f[UDP + 2], f[UDP + 3]]) != be16(cfg.udp_port) {
        return worker.counters().count_drop(DropReason::Port).into();
    }
    let udp = u64::from_ne_bytes(f[UDP..UDP + 8].try_into().expect("fixed layout"));
    if never_answered_v6_ne(f[6], src, v6) | (udp & UDP_SRC_PORT == 0) {
        return worker.counters().count_drop(DropReason::Source).into();
    }
    let addrs = NativeSum::default()
        .add_word(src as u64)
        .add_word((src >> 64) as u64)
        .add_word(dst as u64)
        .add_word((dst >> 64) as u64);
    // Zero is wrong over IPv6 whatever the device says.
    let wrong = || {
        let sum = addrs
            .add_word(PSEUDO_REST)
            .add_word(udp)
            .add_bytes(payload6(f));
        sum.fold() != 0xffff
    };
    if (udp & UDP_CK == 0) || (!rx.contains(RxChecked::L4) && wrong()) {
        return worker.counters().count_drop(DropReason::UdpChecksum).into();
    }
    let reply = match worker.shake_payload_with(payload6_mut(f), mac) {
        Ok(o) => Reply::shake(o),
        Err(d) => return d.into(),
    };
    answer_macs(&mut f[..common6::IP], cfg.mac);
    f[SRC..DST].copy_from_slice(&dst.to_ne_bytes());
    f[DST..UDP].copy_from_slice(&src.to_ne_bytes());
    f[common6::IP + 7] = ipv6::ANSWER_HOP_LIMIT;
    let ports = u32::from_ne_bytes(f[UDP..UDP + 4].try_into().expect("fixed layout"));
    f[UDP..UDP + 4].copy_from_slice(&ports.rotate_left(16).to_ne_bytes());
    let pseudo = addrs.add_word(PSEUDO_REST);
    // The UDP checksum left to the NIC as `cfg` says, a constant (see `with_tx_offload`).
    let offload = TxOffload::IPV6 | (TxOffload::from_bits_retain(TX) & TxOffload::UDP_CKSUM);
    let ck = if offload.contains(TxOffload::UDP_CKSUM) {
        pseudo.fold()
    } else {
        let ck = !pseudo.add_word(udp & !UDP_CK).add_bytes(payload6(f)).fold();
        if ck == 0 {
            0xffff
        } else {
            ck
        }
    };
    f[UDP + 6..PAYLOAD].copy_from_slice(&ck.to_ne_bytes());
    Verdict::answer(COMMON6_LEN, (common6::IP, ipv6::HEADER_LEN), offload, reply)
}

#[inline]
fn payload6(f: &[u8; COMMON6_LEN]) -> &[u8; PAYLOAD_LEN] {
    f[common6::PAYLOAD..].try_into().expect("fixed layout")
}

#[inline]
fn payload6_mut(f: &mut [u8; COMMON6_LEN]) -> &mut [u8; PAYLOAD_LEN] {
    (&mut f[common6::PAYLOAD..])
        .try_into()
        .expect("fixed layout")
}

/// Any IPv6 frame (its Ethernet header ends at `l3`): extension headers, UDP, ICMPv6 echo
/// and Neighbor Solicitation. The checks run in the same order as for IPv4: the header, the
/// destination, fragments, then the upper layer's own.
///
/// The destination must be one of our addresses; a Neighbor Solicitation may also go to the
/// solicited-node group of one (that is how a neighbour resolves us). Answers carry no
/// extension headers (like IPv4 options, they were meant for the forward path), so they are
/// never longer than the request.
fn answer_ipv6<S: SeedSource, J: ClaimSink>(
    worker: &mut Worker<S, J>,
    cfg: &FrameConfig,
    v6: &Ipv6Addrs,
    frame: &mut [u8],
    l3: usize,
) -> Result<Verdict, Dropped> {
    let c = worker.counters();
    let ip = Ipv6Packet::new_checked(&frame[l3..])
        .map_err(|_| c.count_drop(DropReason::Ipv6Malformed))?;
    let up = ip
        .upper_layer()
        .map_err(|_| c.count_drop(DropReason::Ipv6Malformed))?;
    let (src, dst, hop_limit) = (ip.src_addr(), ip.dst_addr(), ip.hop_limit());
    let l4 = l3 + ipv6::HEADER_LEN + up.offset;
    let end = l3 + ipv6::HEADER_LEN + usize::from(ip.payload_len());
    let solicited_group =
        (dst == ipv6::solicited_node(v6.global)) | (dst == ipv6::solicited_node(v6.link_local));
    let to_group_ns = solicited_group
        && up.protocol == ipv6::NEXT_ICMPV6
        && frame.get(l4) == Some(&icmpv6::NEIGHBOR_SOLICIT);
    if !v6.is_ours(&dst) && !to_group_ns {
        return Err(c.count_drop(DropReason::NotForUs));
    }
    if up.fragment {
        return Err(c.count_drop(DropReason::Fragment));
    }
    let not_to_answer = never_answered_v6(frame[6], src, v6);
    match up.protocol {
        ipv6::NEXT_UDP => {
            let u = UdpPacket::new_checked(&frame[l4..end])
                .map_err(|_| c.count_drop(DropReason::UdpMalformed))?;
            if u.dst_port() != cfg.udp_port {
                return Err(c.count_drop(DropReason::Port));
            }
            if not_to_answer | (u.src_port() == 0) {
                return Err(c.count_drop(DropReason::Source));
            }
            if !u.verify_checksum_v6(src, dst) {
                return Err(c.count_drop(DropReason::UdpChecksum));
            }
            let udp_len = u.len() as usize;
            if udp_len != udp::HEADER_LEN + PAYLOAD_LEN {
                return Err(c.count_drop(DropReason::PayloadLength));
            }
            let p = l4 + udp::HEADER_LEN;
            let reply = Reply::shake(worker.shake(&mut frame[p..p + PAYLOAD_LEN])?);
            let l4 = finish_ipv6(frame, l3, l4, udp_len, ipv6::NEXT_UDP, cfg.mac);
            let pseudo = checksum::pseudo_header_v6(dst, src, ipv6::NEXT_UDP, udp_len as u32);
            Ok(udp_answer(
                cfg,
                frame,
                (l3, l4, udp_len),
                pseudo,
                TxOffload::IPV6,
                reply,
            ))
        }
        ipv6::NEXT_ICMPV6 => {
            let m = Icmpv6Packet::new_checked(&frame[l4..end]);
            match m.as_ref().map(|m| m.msg_type()) {
                Ok(icmpv6::NEIGHBOR_SOLICIT) => {
                    neighbor_advert(c, cfg, v6, frame, (l3, l4, end), (src, dst, hop_limit))
                }
                Ok(icmpv6::ECHO_REQUEST) => {
                    if not_to_answer {
                        return Err(c.count_drop(DropReason::Source));
                    }
                    let m = m.expect("matched Ok");
                    if m.code() != 0 || !m.verify_checksum(src, dst) {
                        return Err(c.count_drop(DropReason::Icmp));
                    }
                    let icmp_len = end - l4;
                    let l4 = finish_ipv6(frame, l3, l4, icmp_len, ipv6::NEXT_ICMPV6, cfg.mac);
                    Icmpv6Packet::new_unchecked(&mut frame[l4..l4 + icmp_len]).make_echo_reply();
                    Ok(Verdict::Answer {
                        len: l4 + icmp_len,
                        reply: Reply::ICMPV6_ECHO,
                    })
                }
                // A solicitation too short to hold its target fails RFC 4861's length check.
                Err(_) if frame.get(l4) == Some(&icmpv6::NEIGHBOR_SOLICIT) => {
                    Err(c.count_drop(DropReason::Ndp))
                }
                _ => Err(c.count_drop(DropReason::Icmp)),
            }
        }
        _ => Err(c.count_drop(DropReason::Protocol)),
    }
}

/// Turns the IPv6 and Ethernet headers around for an answer carrying `l4_len` bytes of
/// `next_header` that start at `l4`: the upper layer moves up to the fixed header if there
/// were extension headers, addresses swap, the hop limit is ours. Returns where the upper
/// layer now starts.
fn finish_ipv6(
    frame: &mut [u8],
    l3: usize,
    l4: usize,
    l4_len: usize,
    next_header: u8,
    our_mac: [u8; 6],
) -> usize {
    answer_macs(&mut frame[..l3], our_mac);
    let to = l3 + ipv6::HEADER_LEN;
    if l4 != to {
        frame.copy_within(l4..l4 + l4_len, to);
    }
    let mut ip = Ipv6Packet::new_unchecked(&mut frame[l3..to]);
    ip.set_payload_len(l4_len as u16);
    ip.set_next_header(next_header);
    ip.swap_addrs();
    ip.set_hop_limit(ipv6::ANSWER_HOP_LIMIT);
    to
}

/// Answers a Neighbor Solicitation for one of our addresses with a Neighbor Advertisement,
/// in place (RFC 4861 7.2.3 and 7.2.4).
///
/// The solicitation must pass RFC 4861 7.1.1 (hop limit 255, code 0, valid checksum, a
/// unicast target, well-formed options; from the unspecified address only to a
/// solicited-node group and without a source link-layer option), else it is dropped as
/// [`DropReason::Ndp`]; a target that is not ours is [`DropReason::NotForUs`].
///
/// The advertisement comes from the target address with hop limit 255 and the Override flag.
/// To a unicast source it goes to that source, Solicited set, to the link-layer address the
/// solicitation gave (or its Ethernet source). To a duplicate address detection probe (source
/// `::`) it goes to all-nodes with Solicited clear: that is how the prober learns the address
/// is taken. It carries our target link-layer address when the solicitation had room for it
/// (an answer is never longer than its request): every solicitation with a source
/// link-layer option or a nonce (Linux's probes) has. A probe with no option at all gets the
/// advertisement without it; the prober needs only the target (RFC 4862 5.4.4).
fn neighbor_advert(
    c: &Counters,
    cfg: &FrameConfig,
    v6: &Ipv6Addrs,
    frame: &mut [u8],
    (l3, l4, end): (usize, usize, usize),
    (src, dst, hop_limit): ([u8; 16], [u8; 16], u8),
) -> Result<Verdict, Dropped> {
    let m = Icmpv6Packet::new_unchecked(&frame[l4..end]);
    let probe = ipv6::is_unspecified(src);
    let opts = icmpv6::link_layer_options(m.ndp_options());
    let target = m.target_addr();
    let valid = hop_limit == 255
        && m.code() == 0
        && m.verify_checksum(src, dst)
        && !ipv6::is_multicast(target)
        && match opts {
            Ok(o) => !probe || (ipv6::is_multicast(dst) && o.source.is_none()),
            Err(_) => false,
        };
    if !valid {
        return Err(c.count_drop(DropReason::Ndp));
    }
    if !v6.is_ours(&target) {
        return Err(c.count_drop(DropReason::NotForUs));
    }
    // A probe's source is `::` (allowed); any other source is checked as for every answer.
    let eth_src: [u8; 6] = frame[6..12].try_into().expect("ethernet header");
    if (eth_src[0] & 1 != 0) || (!probe && (ipv6::never_a_source(src) || v6.is_ours(&src))) {
        return Err(c.count_drop(DropReason::Source));
    }
    let (to_ip, to_mac, flags) = if probe {
        (
            ipv6::ALL_NODES,
            ipv6::multicast_mac(ipv6::ALL_NODES),
            icmpv6::flags::OVERRIDE,
        )
    } else {
        let mac = opts.ok().and_then(|o| o.source).unwrap_or(eth_src);
        (src, mac, icmpv6::flags::SOLICITED | icmpv6::flags::OVERRIDE)
    };
    let room = end - (l3 + ipv6::HEADER_LEN);
    let with_ll = room >= icmpv6::NEIGHBOR_LEN + icmpv6::LL_OPTION_LEN;
    let na_len = icmpv6::NEIGHBOR_LEN + if with_ll { icmpv6::LL_OPTION_LEN } else { 0 };
    let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
    eth.set_dst_addr(to_mac);
    eth.set_src_addr(cfg.mac);
    let to = l3 + ipv6::HEADER_LEN;
    let mut ip = Ipv6Packet::new_unchecked(&mut frame[l3..to]);
    ip.set_version_tc_flow(0, 0);
    ip.set_payload_len(na_len as u16);
    ip.set_next_header(ipv6::NEXT_ICMPV6);
    ip.set_hop_limit(255);
    ip.set_src_addr(target);
    ip.set_dst_addr(to_ip);
    icmpv6::NdpRepr::Advert {
        flags,
        target,
        target_ll: with_ll.then_some(cfg.mac),
    }
    .emit(
        &mut Icmpv6Packet::new_unchecked(&mut frame[to..to + na_len]),
        target,
        to_ip,
    );
    Ok(Verdict::Answer {
        len: to + na_len,
        reply: Reply::NDP,
    })
}

/// Finishes the UDP header of an answer whose IP header is already turned around (ports
/// swapped; `l3`, `l4` and `udp_len` as it now lies in `frame`), with `pseudo` the answer's
/// pseudo-header sum: the checksum computed, or that sum left for the NIC to complete.
fn udp_answer(
    cfg: &FrameConfig,
    frame: &mut [u8],
    (l3, l4, udp_len): (usize, usize, usize),
    pseudo: u32,
    mut offload: TxOffload,
    reply: Reply,
) -> Verdict {
    let mut u = UdpPacket::new_unchecked(&mut frame[l4..l4 + udp_len]);
    u.swap_ports();
    if cfg.tx_udp_offload {
        u.set_checksum(checksum::fold(pseudo));
        offload |= TxOffload::UDP_CKSUM;
    } else {
        u.fill_checksum_with(pseudo);
    }
    Verdict::answer(l4 + udp_len, (l3, l4 - l3), offload, reply)
}

/// Swaps the Ethernet addresses of an answer: it goes back to the request's source, from the
/// request's destination (SPEC 2) unless that was a broadcast or multicast address, which is
/// never a valid source: then from our own MAC.
#[inline]
fn answer_macs(eth: &mut [u8], our_mac: [u8; 6]) {
    let (dst, src) = eth.split_at_mut(6);
    dst.swap_with_slice(&mut src[..6]);
    if src[0] & 1 != 0 {
        src[..6].copy_from_slice(&our_mac);
    }
}

/// Turns the IPv4 and Ethernet headers around for an answer carrying `l4_len` bytes after
/// the IP header; strips options if there were any. Returns where the L4 header now starts.
fn finish_ip(frame: &mut [u8], l3: usize, ihl: usize, l4_len: usize, our_mac: [u8; 6]) -> usize {
    answer_macs(&mut frame[..l3], our_mac);
    if ihl > ipv4::HEADER_LEN {
        let from = l3 + ihl;
        frame.copy_within(from..from + l4_len, l3 + ipv4::HEADER_LEN);
        let mut ip = Ipv4Packet::new_unchecked(&mut frame[l3..l3 + ipv4::HEADER_LEN + l4_len]);
        ip.set_header_len(ipv4::HEADER_LEN);
        ip.set_total_len((ipv4::HEADER_LEN + l4_len) as u16);
        ip.swap_addrs();
        ip.set_ttl(ANSWER_TTL);
        ip.fill_checksum();
    } else {
        let mut ip = Ipv4Packet::new_unchecked(&mut frame[l3..l3 + ihl + l4_len]);
        ip.swap_addrs();
        // The swap leaves the checksum as it was; only the TTL word changes, and the total
        // length where the request's IP payload ran past its UDP datagram (not echoed).
        let old = u16::from_be_bytes([ip.ttl(), ip.protocol()]);
        ip.set_ttl(ANSWER_TTL);
        let new = u16::from_be_bytes([ANSWER_TTL, ip.protocol()]);
        let mut ck = checksum::update(ip.checksum(), old, new);
        let (old_len, new_len) = (ip.total_len(), (ihl + l4_len) as u16);
        if old_len != new_len {
            ip.set_total_len(new_len);
            ck = checksum::update(ck, old_len, new_len);
        }
        ip.set_checksum(ck);
    }
    l3 + ipv4::HEADER_LEN
}

/// Answers an ARP request for our address in place.
///
/// Sources, by RFC 5227 and RFC 1122 3.2.1.3: a probe (sender address 0.0.0.0) is answered
/// like any request, to the prober's hardware address with target address 0.0.0.0 (as Linux
/// does): that reply is how another station's duplicate address detection learns the
/// address is ours, and not answering would let it take the address. Any other sender
/// address that is never a source, or loopback, or a group sender hardware address (the
/// reply would go to the whole group) is dropped as [`DropReason::Source`]. A sender that
/// gives our own address is another station claiming it (we send no requests): an address
/// conflict (RFC 5227 2.4), counted as [`DropReason::ArpConflict`] for the operator; the
/// node keeps its address and does not answer it.
fn arp_reply(
    c: &Counters,
    cfg: &FrameConfig,
    frame: &mut [u8],
    l3: usize,
) -> Result<Verdict, Dropped> {
    let len = frame.len();
    let mut a = ArpPacket::new_checked(&mut frame[l3..])
        .map_err(|_| c.count_drop(DropReason::ArpNotForUs))?;
    if a.operation() != arp::ARP_REQUEST || a.target_ip() != cfg.ipv4 {
        return Err(c.count_drop(DropReason::ArpNotForUs));
    }
    let (sha, spa) = (a.sender_hw(), a.sender_ip());
    let probe = spa == [0; 4];
    if sha[0] & 1 != 0 || (!probe && (ipv4::never_a_source(spa[0]) || ipv4::is_loopback(spa[0]))) {
        return Err(c.count_drop(DropReason::Source));
    }
    if spa == cfg.ipv4 {
        return Err(c.count_drop(DropReason::ArpConflict));
    }
    a.set_operation(arp::ARP_REPLY);
    a.set_target_hw(sha);
    a.set_target_ip(spa);
    a.set_sender_hw(cfg.mac);
    a.set_sender_ip(cfg.ipv4);
    let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
    eth.set_dst_addr(sha);
    eth.set_src_addr(cfg.mac);
    Ok(Verdict::Answer {
        len,
        reply: Reply::ARP,
    })
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::activity::Activity;
    use crate::client::{self, Flow};
    use crate::counters::Event;
    use crate::engine::users::UserTable;
    use crate::engine::winners::WinnerTable;
    use crate::engine::{Identity, Live, Throttle};
    use crate::journal::MemoryJournal;
    use crate::mac::MacKey;
    use crate::seed::{plan, MemorySource};
    use crate::wire::shake::{Outcome, ShakeAnswer, ShakeAnswerRepr, ShakeRequest};
    use hashbrown::HashSet;
    use std::path::Path;

    const TOKEN: MacKey = MacKey::from_bytes([7; 16]);
    const CLAIM: MacKey = MacKey::from_bytes([9; 16]);
    const OUR_IP: [u8; 4] = [10, 0, 0, 2];
    const OUR_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
    /// Round 1 runs from 1_100_000 to 1_200_000 ms; MID is halfway.
    const MID: u64 = 1_150_000;

    fn cfg() -> FrameConfig {
        FrameConfig {
            ipv4: OUR_IP,
            ipv6: None,
            mac: OUR_MAC,
            udp_port: 7000,
            tx_udp_offload: false,
            tx_ipv4_offload: false,
        }
    }

    fn flow() -> Flow {
        Flow {
            src_mac: [2, 0, 0, 0, 0, 9],
            dst_mac: OUR_MAC,
            vlan: None,
            src_ip: [10, 0, 0, 9],
            dst_ip: OUR_IP,
            src_port: 40000,
            dst_port: 7000,
        }
    }

    fn activity(win: f64, greet: f64, per_user: u8) -> Activity {
        Activity::parse(
            Path::new("t.toml"),
            &format!(
                r#"
[activity]
id = 5
name = "t"
epoch = 1000
[limits]
per_user = {per_user}
per_sponsor = 1
[[sponsor]]
id = 11
budget_cents = 100000
packets = 1000
resource = 3
greeting_resources = [21, 22]
[[sponsor]]
id = 12
budget_cents = 100000
packets = 1000
[[round]]
id = 1
start_s = 100
duration_s = 100
win_probability = {win}
greeting_probability = {greet}
"#
            ),
        )
        .unwrap()
    }

    struct Setup {
        win: f64,
        greet: f64,
        per_user: u8,
        node_count: u32,
        blacklist: Vec<u64>,
        capacity: u32,
    }

    impl Default for Setup {
        fn default() -> Self {
            Setup {
                win: 0.0,
                greet: 0.0,
                per_user: 3,
                node_count: 1,
                blacklist: vec![],
                capacity: 0,
            }
        }
    }

    type W = Worker<MemorySource, MemoryJournal>;

    fn worker(s: Setup) -> W {
        let a = activity(s.win, s.greet, s.per_user);
        let live = Live::new(
            &a,
            Identity {
                node_index: 0,
                node_count: s.node_count,
                token_key: TOKEN,
                claim_key: CLAIM,
            },
            Throttle {
                worker_capacity_rps: s.capacity,
                ..Throttle::default()
            },
            None,
            0,
            s.blacklist.into_iter().collect::<HashSet<u64>>(),
            100,
        );
        let planned = plan::plan(&a, 1, 1, 3);
        let records = plan::shard_records(&planned, 0);
        let n = records.len();
        Worker::new(
            live,
            UserTable::new(10_000, 0),
            WinnerTable::with_capacity(n),
            MemorySource::new(records, 1),
            MemoryJournal::with_capacity(n),
            42,
        )
    }

    fn frame_for(user: u64, expiry_s: u32) -> Vec<u8> {
        let r = client::request(&TOKEN, user, 77, expiry_s, 0xfeed);
        let mut buf = vec![0u8; 256];
        let len = flow().emit(&mut buf, &client::payload(&r), 1);
        buf.truncate(len);
        buf
    }

    fn run(w: &mut W, now: u64, frame: &mut [u8]) -> Verdict {
        w.begin_burst(now);
        let mut frames = [frame];
        let mut v = [Verdict::Drop(DropReason::Truncated)];
        process_burst(w, &cfg(), &mut frames, &mut v);
        v[0]
    }

    /// Sends a valid shake and returns the decoded answer.
    fn shake(w: &mut W, now: u64, user: u64) -> ShakeAnswerRepr {
        let mut f = frame_for(user, 2_000_000_000);
        let v = run(w, now, &mut f);
        let len = v.tx_len().expect("answered");
        let r = client::request(&TOKEN, user, 77, 2_000_000_000, 0xfeed);
        let p = &f[len - PAYLOAD_LEN..len];
        client::check_answer(&r, p, &CLAIM).unwrap()
    }

    #[test]
    fn red_packet_is_paid_journaled_and_verifiable() {
        let mut w = worker(Setup {
            win: 1.0,
            ..Setup::default()
        });
        // The worker enters the round at its start; by MID half its packets are due.
        w.begin_burst(1_100_000);
        let a = shake(&mut w, MID, 1);
        assert_eq!(a.outcome, Outcome::RedPacket);
        assert_eq!(a.round_id, 1);
        assert_eq!(a.config_version, 100);
        assert_eq!(a.retry_after_ms, 5_000);
        let j = &w.journal().claims;
        assert_eq!(j.len(), 1);
        assert_eq!(
            (j[0].packet_id, j[0].user_id, j[0].amount_cents),
            (a.packet_id, 1, a.amount_cents)
        );
        assert_eq!(j[0].sponsor_id, a.sponsor_id);
        let sponsor_resource = if a.sponsor_id == 11 { 3 } else { 0 };
        assert_eq!(a.resource_id, sponsor_resource);
    }

    #[test]
    fn greeting_and_nothing() {
        let mut w = worker(Setup {
            greet: 1.0,
            ..Setup::default()
        });
        let a = shake(&mut w, MID, 1);
        assert_eq!(a.outcome, Outcome::Greeting);
        assert_eq!(a.sponsor_id, 11);
        assert!([21, 22].contains(&a.resource_id));
        let mut w = worker(Setup::default());
        assert_eq!(shake(&mut w, MID, 1).outcome, Outcome::Nothing);
    }

    #[test]
    fn throttled_until_retry_after() {
        let mut w = worker(Setup::default());
        assert_eq!(shake(&mut w, MID, 1).outcome, Outcome::Nothing);
        let a = shake(&mut w, MID + 1_000, 1);
        assert_eq!(a.outcome, Outcome::Throttled);
        assert_eq!(a.retry_after_ms, 4_000);
        assert_eq!(shake(&mut w, MID + 5_000, 1).outcome, Outcome::Nothing);
    }

    #[test]
    fn closed_before_and_after_rounds() {
        let mut w = worker(Setup::default());
        let a = shake(&mut w, 1_090_000, 1);
        assert_eq!(a.outcome, Outcome::Closed);
        assert_eq!(a.round_id, 1);
        assert_eq!(a.retry_after_ms, 10_000);
        let a = shake(&mut w, 1_300_000, 2);
        assert_eq!(a.outcome, Outcome::Closed);
        assert_eq!(a.round_id, 0);
        assert_eq!(a.retry_after_ms, 60_000);
    }

    #[test]
    fn denied_for_bad_or_expired_token() {
        let mut w = worker(Setup::default());
        let mut f = frame_for(1, 1_000);
        let v = run(&mut w, MID, &mut f);
        let len = v.tx_len().unwrap();
        assert_eq!(f[len - PAYLOAD_LEN + 4], Outcome::Denied as u8);
        // A token for another user.
        let mut r = client::request(&TOKEN, 1, 1, 2_000_000_000, 0);
        r.token ^= 1;
        let mut buf = vec![0u8; 256];
        let len = flow().emit(&mut buf, &client::payload(&r), 1);
        let v = run(&mut w, MID, &mut buf[..len]);
        let a =
            client::check_answer(&r, &buf[v.tx_len().unwrap() - PAYLOAD_LEN..len], &CLAIM).unwrap();
        assert_eq!(a.outcome, Outcome::Denied);
    }

    #[test]
    fn token_expires_after_its_second_to_the_millisecond() {
        // Expired means expiry * 1000 < now: valid through the expiry second's first ms.
        let mut w = worker(Setup::default());
        let outcome = |w: &mut W, now: u64, user: u64, expiry: u32| {
            let mut f = frame_for(user, expiry);
            let len = run(w, now, &mut f).tx_len().unwrap();
            f[len - PAYLOAD_LEN + 4]
        };
        let denied = Outcome::Denied as u8;
        assert_ne!(outcome(&mut w, MID, 1, 1_150), denied);
        assert_eq!(outcome(&mut w, MID, 2, 1_149), denied);
        assert_eq!(outcome(&mut w, MID + 1, 3, 1_150), denied);
        assert_ne!(outcome(&mut w, MID + 1, 4, 1_151), denied);
        assert_ne!(outcome(&mut w, MID + 999, 5, 1_151), denied);
        assert_eq!(outcome(&mut w, MID + 1_001, 6, 1_151), denied);
    }

    #[test]
    fn redirect_names_the_owner() {
        let mut w = worker(Setup {
            node_count: 4,
            ..Setup::default()
        });
        let a = shake(&mut w, MID, 4 * 1000 + 3);
        assert_eq!(a.outcome, Outcome::Redirect);
        assert_eq!(a.resource_id, 3);
        assert_eq!(shake(&mut w, MID, 4 * 1000).outcome, Outcome::Nothing);
    }

    #[test]
    fn blacklisted_get_nothing_and_are_counted() {
        let mut w = worker(Setup {
            win: 1.0,
            blacklist: vec![9],
            ..Setup::default()
        });
        assert_eq!(shake(&mut w, MID, 9).outcome, Outcome::Nothing);
        assert_eq!(w.counters().snapshot().event(Event::Blacklisted), 1);
        assert!(w.journal().claims.is_empty());
    }

    #[test]
    fn config_stale_flag() {
        let mut w = worker(Setup::default());
        let a = shake(&mut w, MID, 1);
        assert_ne!(a.flags & crate::wire::shake::FLAG_CONFIG_STALE, 0);
        let mut r = client::request(&TOKEN, 2, 1, 2_000_000_000, 0);
        r.config_version = 100;
        let mut buf = vec![0u8; 256];
        let len = flow().emit(&mut buf, &client::payload(&r), 1);
        run(&mut w, MID, &mut buf[..len]);
        let a = client::check_answer(&r, &buf[len - PAYLOAD_LEN..len], &CLAIM).unwrap();
        assert_eq!(a.flags, 0);
    }

    #[test]
    fn limits_per_user_and_sponsor_hold() {
        let mut w = worker(Setup {
            win: 1.0,
            per_user: 2,
            ..Setup::default()
        });
        let mut t = MID;
        let mut won = vec![];
        for _ in 0..20 {
            let a = shake(&mut w, t, 1);
            if a.outcome == Outcome::RedPacket {
                won.push(a.sponsor_id);
            }
            t += 5_000;
        }
        won.sort();
        // Two sponsors, one packet each at most, two in all.
        assert_eq!(won, vec![11, 12]);
        let s = w.counters().snapshot();
        assert!(s.event(Event::UserLimit) > 0);
    }

    #[test]
    fn pacing_releases_packets_over_the_round() {
        let mut w = worker(Setup {
            win: 1.0,
            per_user: 8,
            ..Setup::default()
        });
        // At the very start nothing is due yet.
        assert_ne!(shake(&mut w, 1_100_000, 1).outcome, Outcome::RedPacket);
        assert!(w.counters().snapshot().event(Event::PacingWait) > 0);
        // At 1% of the round, 1% of the 2000 packets (20) is due: the 21st waiting user gets
        // a greeting or nothing.
        let mut paid = 0;
        for u in 0..100 {
            if shake(&mut w, 1_101_000, 1000 + u).outcome == Outcome::RedPacket {
                paid += 1;
            }
        }
        assert_eq!(paid, 20);
    }

    #[test]
    fn sheds_beyond_capacity_with_cheap_throttles() {
        // 10 decisions per second: 1 per 100 ms tick.
        let mut w = worker(Setup {
            capacity: 10,
            ..Setup::default()
        });
        assert_eq!(shake(&mut w, MID, 1).outcome, Outcome::Nothing);
        let a = shake(&mut w, MID, 2);
        assert_eq!(a.outcome, Outcome::Throttled);
        assert_eq!(a.retry_after_ms, 10_000);
        assert_eq!(w.counters().snapshot().event(Event::Shed), 1);
        // Next tick: budget again, and retry_after has risen to the ceiling (full tick).
        let a = shake(&mut w, MID + 100, 3);
        assert_eq!(a.outcome, Outcome::Nothing);
        assert_eq!(a.retry_after_ms, 10_000);
    }

    fn drop_of(w: &mut W, f: &mut [u8]) -> DropReason {
        match run(w, MID, f) {
            Verdict::Drop(d) => d,
            v => panic!("expected a drop, got {v:?}"),
        }
    }

    /// Recomputes IPv4 and UDP checksums after a test edits a frame.
    fn fix(f: &mut [u8]) {
        let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
        ip.fill_checksum();
        let (s, d) = (ip.src_addr(), ip.dst_addr());
        let hl = ip.header_len();
        let tl = ip.total_len() as usize;
        UdpPacket::new_unchecked(&mut f[14 + hl..14 + tl]).fill_checksum(s, d);
    }

    /// The engine tests the request header (magic, version, kind, shakes) with one compare
    /// and names the fault out of line: with any set of faults, the reason is the first in
    /// that order, counted once, on the common path and with the frame's IP options (the
    /// general path) alike.
    #[test]
    fn a_bad_request_header_is_dropped_under_its_first_fault() {
        let mut w = worker(Setup::default());
        let faults = [
            (DropReason::Magic, 0, b'X'),
            (DropReason::Version, 2, 2),
            (DropReason::Kind, 3, 0x81),
            (DropReason::ZeroShakes, 4, 0),
        ];
        for set in 1u8..16 {
            for vlan in [None, Some(7)] {
                let r = client::request(&TOKEN, 1, 77, 2_000_000_000, 0xfeed);
                let mut buf = vec![0u8; 256];
                let len = Flow { vlan, ..flow() }.emit(&mut buf, &client::payload(&r), 1);
                buf.truncate(len);
                let p = len - PAYLOAD_LEN;
                for (bit, &(_, at, value)) in faults.iter().enumerate() {
                    if set & (1 << bit) != 0 {
                        buf[p + at] = value;
                        if at == 4 {
                            buf[p + 5] = 0;
                        }
                    }
                }
                let l3 = len - PAYLOAD_LEN - udp::HEADER_LEN - ipv4::HEADER_LEN;
                let mut ip = Ipv4Packet::new_unchecked(&mut buf[l3..]);
                let (s, d) = (ip.src_addr(), ip.dst_addr());
                ip.fill_checksum();
                UdpPacket::new_unchecked(&mut buf[l3 + ipv4::HEADER_LEN..]).fill_checksum(s, d);
                let want = faults[set.trailing_zeros() as usize].0;
                let before = w.counters().snapshot();
                assert_eq!(
                    drop_of(&mut w, &mut buf),
                    want,
                    "faults {set:04b}, vlan {vlan:?}"
                );
                let after = w.counters().snapshot();
                assert_eq!(after.dropped_total(), before.dropped_total() + 1);
                assert_eq!(after.dropped(want), before.dropped(want) + 1);
            }
        }
    }

    #[test]
    fn every_drop_reason_is_counted() {
        let mut w = worker(Setup::default());
        let base = frame_for(1, 2_000_000_000);
        let mut cases: Vec<(DropReason, Vec<u8>)> = vec![];
        cases.push((DropReason::Truncated, base[..10].to_vec()));
        let mut f = base.clone();
        f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
        cases.push((DropReason::Ethertype, f));
        let mut f = base.clone();
        f[14] = 0x46; // IHL 6 but no option bytes reserved in total length: header > total
        f[16..18].copy_from_slice(&22u16.to_be_bytes());
        cases.push((DropReason::Ipv4Malformed, f));
        let mut f = base.clone();
        f[24] ^= 0xff;
        cases.push((DropReason::Ipv4Checksum, f));
        let mut f = base.clone();
        f[33] = 3;
        fix(&mut f);
        cases.push((DropReason::NotForUs, f));
        let mut f = base.clone();
        f[20] = 0x20; // MF
        fix(&mut f);
        cases.push((DropReason::Fragment, f));
        let mut f = base.clone();
        f[23] = 6; // TCP
        Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
        cases.push((DropReason::Protocol, f));
        let mut f = base.clone();
        f[36..38].copy_from_slice(&7001u16.to_be_bytes());
        fix(&mut f);
        cases.push((DropReason::Port, f));
        let mut f = base.clone();
        f[38..40].copy_from_slice(&4u16.to_be_bytes());
        cases.push((DropReason::UdpMalformed, f));
        let mut f = base.clone();
        f[50] ^= 1;
        cases.push((DropReason::UdpChecksum, f));
        let mut f = base.clone();
        f.truncate(f.len() - 1);
        f[16..18].copy_from_slice(&(20 + 8 + 63u16).to_be_bytes());
        f[38..40].copy_from_slice(&(8 + 63u16).to_be_bytes());
        fix(&mut f);
        cases.push((DropReason::PayloadLength, f));
        for (reason, at, value) in [
            (DropReason::Magic, 0, b'X'),
            (DropReason::Version, 2, 2),
            (DropReason::Kind, 3, 0x81),
            (DropReason::ZeroShakes, 5, 0),
        ] {
            let mut f = base.clone();
            f[42 + at] = value;
            if reason == DropReason::ZeroShakes {
                f[42 + 4] = 0;
            }
            fix(&mut f);
            cases.push((reason, f));
        }
        let mut f = base.clone();
        f[40..42].copy_from_slice(&[0, 0]); // no UDP checksum: accepted
        f[42] = b'X';
        cases.push((DropReason::Magic, f));
        for (want, mut f) in cases {
            let before = w.counters().snapshot().dropped(want);
            assert_eq!(drop_of(&mut w, &mut f), want);
            assert_eq!(
                w.counters().snapshot().dropped(want),
                before + 1,
                "{want:?} counted once"
            );
        }
        assert_eq!(w.counters().snapshot().answered(), 0);
    }

    /// An IPv4 payload longer than its UDP datagram (found by the frame fuzz target): the
    /// answer's IP total length is the answer's, not the request's, and its checksum holds.
    #[test]
    fn answer_to_ip_payload_longer_than_udp_has_its_own_length() {
        for extra in [2usize, 7] {
            let mut w = worker(Setup::default());
            let mut f = frame_for(1, 2_000_000_000);
            f.extend(std::iter::repeat_n(0xab, extra));
            let total = (ipv4::HEADER_LEN + udp::HEADER_LEN + PAYLOAD_LEN + extra) as u16;
            f[16..18].copy_from_slice(&total.to_be_bytes());
            fix(&mut f);
            let len = run(&mut w, MID, &mut f).tx_len().expect("answered");
            assert_eq!(len, COMMON_LEN);
            let ip = Ipv4Packet::new_checked(&f[14..len]).unwrap();
            assert_eq!(ip.total_len() as usize, len - 14, "extra {extra}");
            assert!(ip.verify_checksum());
            let u = UdpPacket::new_checked(&f[34..len]).unwrap();
            assert!(u.verify_checksum(ip.src_addr(), ip.dst_addr()));
        }
    }

    #[test]
    fn answers_vlan_tagged_requests_with_options_stripped() {
        use crate::wire::ipv4::Ipv4Repr;
        let mut w = worker(Setup::default());
        let r = client::request(&TOKEN, 1, 5, 2_000_000_000, 9);
        let p = client::payload(&r);
        // VLAN 42, IPv4 with 4 bytes of options (Router Alert).
        let mut f = vec![0u8; 18 + 24 + 8 + 64];
        let eth = ethernet::EthernetRepr {
            dst: OUR_MAC,
            src: [2, 0, 0, 0, 0, 9],
            vlan: Some(42),
            ethertype: ethernet::ETHERTYPE_IPV4,
        };
        eth.emit(&mut EthernetFrame::new_unchecked(&mut f[..]));
        Ipv4Repr {
            src: [10, 0, 0, 9],
            dst: OUR_IP,
            protocol: ipv4::PROTOCOL_UDP,
            ttl: 3,
            payload_len: 72,
            ident: 1,
            dont_frag: false,
        }
        .emit(&mut Ipv4Packet::new_unchecked(&mut f[18..38]));
        // Re-lay the header with options: shift nothing (payload is written after).
        let mut ip = Ipv4Packet::new_unchecked(&mut f[18..]);
        ip.set_header_len(24);
        ip.set_total_len(24 + 72);
        f[38..42].copy_from_slice(&[0x94, 0x04, 0, 0]);
        Ipv4Packet::new_unchecked(&mut f[18..]).fill_checksum();
        udp::UdpRepr {
            src_port: 40000,
            dst_port: 7000,
            payload_len: 64,
        }
        .emit(
            &mut UdpPacket::new_unchecked(&mut f[42..]),
            [10, 0, 0, 9],
            OUR_IP,
            |b| b.copy_from_slice(&p),
        );
        let len = run(&mut w, MID, &mut f).tx_len().unwrap();
        assert_eq!(len, 18 + 20 + 8 + 64);
        let out = etherparse::SlicedPacket::from_ethernet(&f[..len]).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = &out.net else {
            panic!("not ipv4")
        };
        assert_eq!(ip.header().destination(), [10, 0, 0, 9]);
        assert_eq!(ip.header().ttl(), ANSWER_TTL);
        assert_eq!(ip.header().options().len(), 0);
        assert!(
            matches!(&out.vlan, Some(etherparse::VlanSlice::SingleVlan(v)) if v.vlan_identifier().value() == 42)
        );
        let a = client::check_answer(&r, &f[len - 64..len], &CLAIM).unwrap();
        assert_eq!(a.outcome, Outcome::Nothing);
        let v = Ipv4Packet::new_checked(&f[18..len]).unwrap();
        assert!(v.verify_checksum());
        assert!(UdpPacket::new_checked(&f[38..len])
            .unwrap()
            .verify_checksum(OUR_IP, [10, 0, 0, 9]));
    }

    #[test]
    fn arp_for_us_is_answered_and_others_dropped() {
        use crate::wire::arp::ArpRepr;
        let mut w = worker(Setup::default());
        let mk = |target: [u8; 4]| {
            let mut f = vec![0u8; 60];
            ethernet::EthernetRepr {
                dst: [0xff; 6],
                src: [2, 0, 0, 0, 0, 9],
                vlan: None,
                ethertype: ethernet::ETHERTYPE_ARP,
            }
            .emit(&mut EthernetFrame::new_unchecked(&mut f[..]));
            ArpRepr {
                operation: arp::ARP_REQUEST,
                sender_hw: [2, 0, 0, 0, 0, 9],
                sender_ip: [10, 0, 0, 9],
                target_hw: [0; 6],
                target_ip: target,
            }
            .emit(&mut ArpPacket::new_unchecked(&mut f[14..]));
            f
        };
        let mut f = mk(OUR_IP);
        assert_eq!(
            run(&mut w, MID, &mut f),
            Verdict::Answer {
                len: 60,
                reply: Reply::ARP
            }
        );
        let a = ArpPacket::new_checked(&f[14..]).unwrap();
        assert_eq!(a.operation(), arp::ARP_REPLY);
        assert_eq!((a.sender_hw(), a.sender_ip()), (OUR_MAC, OUR_IP));
        assert_eq!(
            (a.target_hw(), a.target_ip()),
            ([2, 0, 0, 0, 0, 9], [10, 0, 0, 9])
        );
        assert_eq!(&f[0..6], &[2, 0, 0, 0, 0, 9]);
        assert_eq!(&f[6..12], &OUR_MAC);
        let mut f = mk([10, 0, 0, 3]);
        assert_eq!(drop_of(&mut w, &mut f), DropReason::ArpNotForUs);
    }

    #[test]
    fn icmp_echo_is_answered_other_icmp_dropped() {
        use crate::wire::icmp::IcmpEchoRepr;
        use crate::wire::ipv4::Ipv4Repr;
        let mut w = worker(Setup::default());
        let mk = |t: u8| {
            let data = [0xabu8; 32];
            let mut f = vec![0u8; 14 + 20 + 8 + 32];
            ethernet::EthernetRepr {
                dst: OUR_MAC,
                src: [2, 0, 0, 0, 0, 9],
                vlan: None,
                ethertype: ethernet::ETHERTYPE_IPV4,
            }
            .emit(&mut EthernetFrame::new_unchecked(&mut f[..]));
            Ipv4Repr {
                src: [10, 0, 0, 9],
                dst: OUR_IP,
                protocol: ipv4::PROTOCOL_ICMP,
                ttl: 64,
                payload_len: 40,
                ident: 1,
                dont_frag: true,
            }
            .emit(&mut Ipv4Packet::new_unchecked(&mut f[14..]));
            IcmpEchoRepr {
                msg_type: t,
                ident: 7,
                seq_no: 1,
                data: &data,
            }
            .emit(&mut IcmpPacket::new_unchecked(&mut f[34..]));
            f
        };
        let mut f = mk(icmp::ECHO_REQUEST);
        let v = run(&mut w, MID, &mut f);
        assert_eq!(v.reply(), Some(Reply::ICMP_ECHO));
        let len = v.tx_len().unwrap();
        let out = etherparse::SlicedPacket::from_ethernet(&f[..len]).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = &out.net else {
            panic!()
        };
        assert_eq!(ip.header().destination(), [10, 0, 0, 9]);
        let m = IcmpPacket::new_checked(&f[34..len]).unwrap();
        assert_eq!(m.msg_type(), icmp::ECHO_REPLY);
        assert!(m.verify_checksum());
        assert!(Ipv4Packet::new_checked(&f[14..len])
            .unwrap()
            .verify_checksum());
        let mut f = mk(icmp::ECHO_REPLY);
        assert_eq!(drop_of(&mut w, &mut f), DropReason::Icmp);
    }

    #[test]
    fn udp_offload_leaves_the_pseudo_header_sum() {
        let mut w = worker(Setup::default());
        let mut f = frame_for(1, 2_000_000_000);
        w.begin_burst(MID);
        let c = FrameConfig {
            tx_udp_offload: true,
            ..cfg()
        };
        let v = process_frame(&mut w, &c, &mut f);
        assert_eq!(
            v,
            Verdict::AnswerOffload {
                len: f.len(),
                l2_len: 14,
                l3_len: 20,
                offload: TxOffload::UDP_CKSUM,
                reply: Reply::shake(Outcome::Nothing),
            }
        );
        let u = UdpPacket::new_checked(&f[34..]).unwrap();
        let ph = checksum::fold(checksum::pseudo_header_v4(OUR_IP, [10, 0, 0, 9], 17, 72));
        assert_eq!(u.checksum(), ph);
        let _ = ShakeAnswer::new_checked(&f[42..]).unwrap();
        let _ = ShakeRequest::new_unchecked(&f[42..]);
    }

    /// With the IPv4 header checksum offloaded, a UDP answer leaves the field zero and asks
    /// the NIC for it; filling it in as the NIC does gives the bytes of the answer summed
    /// here. On the common path and on the general one (a VLAN tag), with and without the
    /// UDP checksum offloaded too.
    #[test]
    fn ipv4_offload_leaves_the_header_checksum_to_the_nic() {
        for (vlan, udp_offload) in [
            (None, false),
            (None, true),
            (Some(7), false),
            (Some(7), true),
        ] {
            let r = client::request(&TOKEN, 1, 77, 2_000_000_000, 0xfeed);
            let mut f = vec![0u8; 256];
            let len = Flow { vlan, ..flow() }.emit(&mut f, &client::payload(&r), 1);
            f.truncate(len);
            let l2 = len - 20 - 8 - PAYLOAD_LEN;
            let summed = FrameConfig {
                tx_udp_offload: udp_offload,
                ..cfg()
            };
            let offloaded = FrameConfig {
                tx_ipv4_offload: true,
                ..summed
            };
            let (mut w1, mut w2) = (worker(Setup::default()), worker(Setup::default()));
            let (mut f1, mut f2) = (f.clone(), f);
            w1.begin_burst(MID);
            w2.begin_burst(MID);
            let v1 = process_frame(&mut w1, &offloaded, &mut f1);
            let v2 = process_frame(&mut w2, &summed, &mut f2);
            let mut want = TxOffload::IPV4_CKSUM;
            want.set(TxOffload::UDP_CKSUM, udp_offload);
            assert_eq!(
                v1,
                Verdict::AnswerOffload {
                    len,
                    l2_len: l2 as u16,
                    l3_len: 20,
                    offload: want,
                    reply: v2.reply().expect("answered"),
                },
                "vlan {vlan:?}"
            );
            assert_eq!(v1.tx_len(), v2.tx_len());
            assert_eq!(f1[l2 + 10..l2 + 12], [0, 0], "the field the NIC fills");
            assert_ne!(f1, f2);
            Ipv4Packet::new_unchecked(&mut f1[l2..]).fill_checksum();
            assert_eq!(f1, f2, "vlan {vlan:?}, udp offload {udp_offload}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        /// The fixed-offset path for the common frame decides exactly like the general one:
        /// same verdict, same bytes, same counters, on valid frames and on frames with a few
        /// bytes changed (with or without checksums fixed up afterwards).
        #[test]
        fn common_path_equals_general_path(
            user in 0u64..50,
            edits in proptest::collection::vec((0usize..106, 1u8..=255), 0..3),
            refix in proptest::prelude::any::<bool>(),
            no_udp_ck in proptest::prelude::any::<bool>(),
            offload in proptest::prelude::any::<bool>(),
            ip_offload in proptest::prelude::any::<bool>(),
        ) {
            let c = FrameConfig { tx_udp_offload: offload, tx_ipv4_offload: ip_offload, ..cfg() };
            let mut f = frame_for(user, 2_000_000_000);
            for (at, x) in edits {
                f[at] ^= x;
            }
            let udp_len = u16::from_be_bytes([f[38], f[39]]);
            if refix && f[14] == 0x45 && f[16..18] == [0, 92] && (8..=72).contains(&udp_len) {
                fix(&mut f);
            }
            if no_udp_ck {
                f[40..42].copy_from_slice(&[0, 0]);
            }
            let (mut w1, mut w2) = (worker(Setup::default()), worker(Setup::default()));
            let (mut f1, mut f2) = (f.clone(), f);
            w1.begin_burst(MID);
            w2.begin_burst(MID);
            let v1 = answer(&mut w1, &c, &mut f1);
            let v2 = answer_any(&mut w2, &c, &mut f2).unwrap_or_else(Verdict::from);
            proptest::prop_assert_eq!(v1, v2);
            proptest::prop_assert_eq!(f1, f2);
            proptest::prop_assert_eq!(w1.counters().snapshot(), w2.counters().snapshot());
        }
    }

    #[test]
    fn answers_to_a_broadcast_destination_come_from_our_mac() {
        let mut w = worker(Setup::default());
        let mut f = frame_for(1, 2_000_000_000);
        f[..6].copy_from_slice(&[0xff; 6]);
        let len = run(&mut w, MID, &mut f).tx_len().unwrap();
        assert_eq!(&f[..6], &[2, 0, 0, 0, 0, 9], "back to the client");
        assert_eq!(&f[6..12], &OUR_MAC, "never from a group address");
        // A unicast destination is echoed as the source, as SPEC 2 says.
        let mut f = frame_for(2, 2_000_000_000);
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 0x77]);
        run(&mut w, MID, &mut f);
        assert_eq!(&f[6..12], &[2, 0, 0, 0, 0, 0x77]);
        assert!(len > 0);
    }

    /// An ARP request for `target` from `(sender_hw, sender_ip)`.
    fn arp_from(sender_hw: [u8; 6], sender_ip: [u8; 4], target: [u8; 4]) -> Vec<u8> {
        use crate::wire::arp::ArpRepr;
        let mut f = vec![0u8; 60];
        ethernet::EthernetRepr {
            dst: [0xff; 6],
            src: sender_hw,
            vlan: None,
            ethertype: ethernet::ETHERTYPE_ARP,
        }
        .emit(&mut EthernetFrame::new_unchecked(&mut f[..]));
        ArpRepr {
            operation: arp::ARP_REQUEST,
            sender_hw,
            sender_ip,
            target_hw: [0; 6],
            target_ip: target,
        }
        .emit(&mut ArpPacket::new_unchecked(&mut f[14..]));
        f
    }

    /// The frame of a valid request of `user` from `flow` (checksums right).
    fn frame_from(flow: &Flow, user: u64) -> Vec<u8> {
        let r = client::request(&TOKEN, user, 77, 2_000_000_000, 0xfeed);
        let mut buf = vec![0u8; 256];
        let len = flow.emit(&mut buf, &client::payload(&r), 1);
        buf.truncate(len);
        buf
    }

    /// The sources SPEC 2 never answers, as (what, source MAC, source IP, source port).
    fn bad_sources() -> Vec<(&'static str, [u8; 6], [u8; 4], u16)> {
        let mac = [2, 0, 0, 0, 0, 9];
        vec![
            ("unspecified 0.0.0.0", mac, [0, 0, 0, 0], 40000),
            ("this network 0.1.2.3", mac, [0, 1, 2, 3], 40000),
            ("limited broadcast", mac, [255; 4], 40000),
            ("multicast 224.0.0.1", mac, [224, 0, 0, 1], 40000),
            (
                "multicast 239.255.255.250",
                mac,
                [239, 255, 255, 250],
                40000,
            ),
            ("reserved 240.0.0.1", mac, [240, 0, 0, 1], 40000),
            ("loopback 127.0.0.1", mac, [127, 0, 0, 1], 40000),
            ("loopback 127.255.0.9", mac, [127, 255, 0, 9], 40000),
            ("the node's own address", mac, OUR_IP, 40000),
            ("UDP source port 0", mac, [10, 0, 0, 9], 0),
            ("broadcast Ethernet source", [0xff; 6], [10, 0, 0, 9], 40000),
            (
                "multicast Ethernet source",
                [1, 0, 0x5e, 0, 0, 1],
                [10, 0, 0, 9],
                40000,
            ),
        ]
    }

    #[test]
    fn sources_that_must_never_get_an_answer_are_dropped_and_counted() {
        let mut w = worker(Setup::default());
        for (what, mac, ip, port) in bad_sources() {
            let flow = Flow {
                src_mac: mac,
                src_ip: ip,
                src_port: port,
                ..flow()
            };
            for tagged in [false, true] {
                let flow = Flow {
                    vlan: tagged.then_some(7),
                    ..flow
                };
                let mut f = frame_from(&flow, 1);
                let before = w.counters().snapshot();
                assert_eq!(drop_of(&mut w, &mut f), DropReason::Source, "{what}");
                let after = w.counters().snapshot();
                assert_eq!(
                    after.dropped(DropReason::Source),
                    before.dropped(DropReason::Source) + 1
                );
                assert_eq!(after.dropped_total(), before.dropped_total() + 1, "{what}");
                // Dropped before the decision: no throttle stamp, no outcome.
                assert_eq!(after.decided, before.decided, "{what}");
            }
        }
        // Sources next to the bad ones are answered.
        for (ip, port) in [
            ([1, 0, 0, 1], 1),
            ([126, 255, 255, 255], 40000),
            ([128, 0, 0, 1], 40000),
            ([223, 255, 255, 254], 40000),
            ([10, 0, 0, 3], 65535),
        ] {
            let flow = Flow {
                src_ip: ip,
                src_port: port,
                ..flow()
            };
            let mut f = frame_from(&flow, u64::from(ip[0]) + 100);
            assert!(run(&mut w, MID, &mut f).tx_len().is_some(), "{ip:?}:{port}");
        }
    }

    #[test]
    fn icmp_echo_from_a_bad_source_gets_no_reply() {
        use crate::wire::icmp::IcmpEchoRepr;
        use crate::wire::ipv4::Ipv4Repr;
        let mut w = worker(Setup::default());
        for (what, mac, ip, _) in bad_sources().into_iter().filter(|s| s.3 != 0) {
            let data = [0x5au8; 16];
            let mut f = vec![0u8; 14 + 20 + 8 + 16];
            ethernet::EthernetRepr {
                dst: OUR_MAC,
                src: mac,
                vlan: None,
                ethertype: ethernet::ETHERTYPE_IPV4,
            }
            .emit(&mut EthernetFrame::new_unchecked(&mut f[..]));
            Ipv4Repr {
                src: ip,
                dst: OUR_IP,
                protocol: ipv4::PROTOCOL_ICMP,
                ttl: 64,
                payload_len: 24,
                ident: 1,
                dont_frag: true,
            }
            .emit(&mut Ipv4Packet::new_unchecked(&mut f[14..]));
            IcmpEchoRepr {
                msg_type: icmp::ECHO_REQUEST,
                ident: 1,
                seq_no: 1,
                data: &data,
            }
            .emit(&mut IcmpPacket::new_unchecked(&mut f[34..]));
            assert_eq!(drop_of(&mut w, &mut f), DropReason::Source, "{what}");
        }
        let s = w.counters().snapshot();
        assert_eq!(s.dropped(DropReason::Source), 11);
    }

    #[test]
    fn arp_probes_are_answered_bad_senders_and_conflicts_are_not() {
        let mut w = worker(Setup::default());
        let peer = [2, 0, 0, 0, 0, 9];
        // RFC 5227 probe for our address: answered to the prober, target address 0.0.0.0.
        let mut f = arp_from(peer, [0; 4], OUR_IP);
        assert_eq!(run(&mut w, MID, &mut f).reply(), Some(Reply::ARP));
        let a = ArpPacket::new_checked(&f[14..]).unwrap();
        assert_eq!(a.operation(), arp::ARP_REPLY);
        assert_eq!((a.sender_hw(), a.sender_ip()), (OUR_MAC, OUR_IP));
        assert_eq!((a.target_hw(), a.target_ip()), (peer, [0; 4]));
        assert_eq!(&f[..6], &peer, "unicast to the prober");
        for (what, hw, ip) in [
            ("this network 0.0.0.1", peer, [0, 0, 0, 1]),
            ("loopback", peer, [127, 0, 0, 1]),
            ("multicast", peer, [224, 0, 0, 9]),
            ("broadcast", peer, [255; 4]),
            ("reserved", peer, [250, 1, 1, 1]),
            ("group sender hardware address", [0xff; 6], [10, 0, 0, 9]),
            (
                "group sender hardware address, probe",
                [3, 0, 0, 0, 0, 1],
                [0; 4],
            ),
        ] {
            let mut f = arp_from(hw, ip, OUR_IP);
            assert_eq!(drop_of(&mut w, &mut f), DropReason::Source, "{what}");
        }
        // Another station announcing (or probing back with) our address: a conflict.
        let mut f = arp_from(peer, OUR_IP, OUR_IP);
        assert_eq!(drop_of(&mut w, &mut f), DropReason::ArpConflict);
        let s = w.counters().snapshot();
        assert_eq!(s.dropped(DropReason::Source), 7);
        assert_eq!(s.dropped(DropReason::ArpConflict), 1);
    }

    #[test]
    fn peek_user_finds_shakes_only() {
        let f = frame_for(0x1234, 1);
        assert_eq!(peek_user(&f), Some(0x1234));
        assert_eq!(peek_user(&f[..40]), None);
    }

    /// IPv6: SHAKE/1, Neighbor Solicitations and echo, checked against an independent parser
    /// (etherparse).
    /// The NIC's receive verdicts ([`RxChecked`]): a GOOD one spares the sum, and nothing
    /// else changes.
    mod rx_checked {
        use super::ipv6_frames::{cfg6, flow6};
        use super::*;

        fn frame6_for(user: u64) -> Vec<u8> {
            let r = client::request(&TOKEN, user, 77, 2_000_000_000, 0xfeed);
            let mut buf = vec![0u8; 256];
            let len = flow6().emit(&mut buf, &client::payload(&r));
            buf.truncate(len);
            buf
        }

        fn run_checked(w: &mut W, cfg: &FrameConfig, f: &mut [u8], rx: RxChecked) -> Verdict {
            w.begin_burst(MID);
            let mut frames = [f];
            let mut v = [Verdict::Drop(DropReason::Truncated)];
            process_burst_checked(w, cfg, &mut frames, &[rx], &mut v);
            v[0]
        }

        const IP_CK: usize = 14 + 10;
        const UDP_CK: usize = 14 + 20 + 6;

        #[test]
        fn a_header_the_nic_verified_is_not_summed_again() {
            // A wrong IPv4 checksum the NIC called good is answered: its verdict was used.
            let mut f = frame_for(1, 2_000_000_000);
            f[IP_CK] ^= 0x55;
            let mut w = worker(Setup::default());
            let v = run_checked(&mut w, &cfg(), &mut f.clone(), RxChecked::IPV4);
            assert!(v.tx_len().is_some(), "{v:?}");
            let v = run_checked(&mut w, &cfg(), &mut f, RxChecked::L4);
            assert_eq!(v, Verdict::Drop(DropReason::Ipv4Checksum));
        }

        #[test]
        fn a_udp_checksum_the_nic_verified_is_not_summed_again() {
            let mut f = frame_for(1, 2_000_000_000);
            f[UDP_CK] ^= 0x55;
            let mut w = worker(Setup::default());
            let v = run_checked(&mut w, &cfg(), &mut f.clone(), RxChecked::L4);
            assert!(v.tx_len().is_some(), "{v:?}");
            let v = run_checked(&mut w, &cfg(), &mut f, RxChecked::IPV4);
            assert_eq!(v, Verdict::Drop(DropReason::UdpChecksum));
        }

        #[test]
        fn ipv6_udp_checksum_the_nic_verified_but_zero_is_still_dropped() {
            let mut w = worker(Setup::default());
            let mut f = frame6_for(1);
            let ck = f.len() - PAYLOAD_LEN - 2;
            f[ck] ^= 0x55;
            let v = run_checked(&mut w, &cfg6(), &mut f.clone(), RxChecked::L4);
            assert!(v.tx_len().is_some(), "{v:?}");
            let v = run_checked(&mut w, &cfg6(), &mut f.clone(), RxChecked::empty());
            assert_eq!(v, Verdict::Drop(DropReason::UdpChecksum));
            f[ck..ck + 2].copy_from_slice(&[0, 0]);
            let v = run_checked(&mut w, &cfg6(), &mut f, RxChecked::all());
            assert_eq!(v, Verdict::Drop(DropReason::UdpChecksum));
        }

        #[test]
        fn right_frames_get_the_same_answer_whatever_the_nic_checked() {
            // Two workers in step, one told every checksum was verified: the same verdicts
            // and the same bytes, over IPv4 and IPv6, for a spread of users and times.
            let (mut a, mut b) = (worker(Setup::default()), worker(Setup::default()));
            for user in 1..200u64 {
                let now = MID + user * 37;
                for (cfg, frame) in [
                    (cfg(), frame_for(user, 2_000_000_000)),
                    (cfg6(), frame6_for(user)),
                ] {
                    let (mut x, mut y) = (frame.clone(), frame);
                    a.begin_burst(now);
                    b.begin_burst(now);
                    let mut va = [Verdict::Drop(DropReason::Truncated)];
                    let mut vb = va;
                    process_burst(&mut a, &cfg, &mut [&mut x[..]], &mut va);
                    // The staged variant differs only in what it prefetches and where the
                    // token inputs come from.
                    if user % 2 == 0 {
                        process_burst_checked(
                            &mut b,
                            &cfg,
                            &mut [&mut y[..]],
                            &[RxChecked::all()],
                            &mut vb,
                        );
                    } else {
                        let mut staged = Staged::default();
                        staged.stage(&b, [&y[..]]);
                        process_burst_checked_staged(
                            &mut b,
                            &cfg,
                            &mut [&mut y[..]],
                            &[RxChecked::all()],
                            &mut staged,
                            &mut vb,
                        );
                        assert!(staged.is_empty());
                    }
                    assert_eq!(va, vb);
                    assert!(va[0].tx_len().is_some(), "{va:?}");
                    assert_eq!(x, y);
                }
            }
        }
    }

    mod ipv6_frames {
        use super::*;
        use crate::client::Flow6;
        use crate::wire::icmpv6::{self, NdpRepr};
        use crate::wire::ipv6::{self, Ipv6Repr};
        use etherparse::{NetSlice, SlicedPacket, TransportSlice};

        const G: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        const PEER: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
        const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 9];

        fn ll() -> [u8; 16] {
            ipv6::link_local_from_mac(OUR_MAC)
        }

        pub(super) fn cfg6() -> FrameConfig {
            FrameConfig {
                ipv6: Some(Ipv6Addrs::new(G, None, OUR_MAC)),
                ..cfg()
            }
        }

        pub(super) fn flow6() -> Flow6 {
            Flow6 {
                src_mac: PEER_MAC,
                dst_mac: OUR_MAC,
                vlan: None,
                src_ip: PEER,
                dst_ip: G,
                src_port: 40000,
                dst_port: 7000,
            }
        }

        fn request() -> crate::wire::ShakeRequestRepr {
            client::request(&TOKEN, 1, 77, 2_000_000_000, 0xfeed)
        }

        fn frame6_from(flow: &Flow6) -> Vec<u8> {
            let mut buf = vec![0u8; 256];
            let len = flow.emit(&mut buf, &client::payload(&request()));
            buf.truncate(len);
            buf
        }

        fn run6(w: &mut W, f: &mut [u8]) -> Verdict {
            w.begin_burst(MID);
            let mut frames = [f];
            let mut v = [Verdict::Drop(DropReason::Truncated)];
            process_burst(w, &cfg6(), &mut frames, &mut v);
            v[0]
        }

        fn drop6(w: &mut W, f: &mut [u8]) -> DropReason {
            match run6(w, f) {
                Verdict::Drop(d) => d,
                v => panic!("expected a drop, got {v:?}"),
            }
        }

        /// Inserts `n` destination-options headers (8 bytes each) after the fixed header of
        /// an untagged frame, first a hop-by-hop one if `hbh`.
        fn with_extensions(f: &[u8], hbh: bool, n: usize) -> Vec<u8> {
            let mut kinds = vec![];
            if hbh {
                kinds.push(ipv6::NEXT_HOP_BY_HOP);
            }
            kinds.extend(std::iter::repeat(ipv6::NEXT_DEST_OPTIONS).take(n));
            let upper = f[14 + 6];
            let mut out = f[..54].to_vec();
            for (i, _) in kinds.iter().enumerate() {
                let next = kinds.get(i + 1).copied().unwrap_or(upper);
                // PadN of 4 bytes after next-header and length: a well-formed option area.
                out.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
            }
            out.extend_from_slice(&f[54..]);
            if let Some(&k) = kinds.first() {
                out[14 + 6] = k;
            }
            let pl = (out.len() - 54) as u16;
            out[18..20].copy_from_slice(&pl.to_be_bytes());
            out
        }

        /// An answer read by etherparse: Ethernet addresses, IPv6 source, destination and hop
        /// limit, and the transport bytes, with its checksum verified by etherparse.
        struct Decoded {
            eth_dst: [u8; 6],
            eth_src: [u8; 6],
            src: [u8; 16],
            dst: [u8; 16],
            hop_limit: u8,
            transport: Vec<u8>,
            udp: bool,
        }

        fn decode(f: &[u8]) -> Decoded {
            let p = SlicedPacket::from_ethernet(f).expect("etherparse reads the answer");
            let (eth_dst, eth_src) = match &p.link {
                Some(etherparse::LinkSlice::Ethernet2(e)) => (e.destination(), e.source()),
                l => panic!("{l:?}"),
            };
            let ip = match &p.net {
                Some(NetSlice::Ipv6(ip)) => ip.header(),
                n => panic!("not IPv6: {n:?}"),
            };
            let (src, dst) = (ip.source(), ip.destination());
            let (transport, udp) = match &p.transport {
                Some(TransportSlice::Udp(u)) => {
                    let h = u.to_header();
                    let want = h.calc_checksum_ipv6_raw(src, dst, u.payload()).unwrap();
                    assert_eq!(h.checksum, want, "UDP checksum");
                    assert_ne!(h.checksum, 0, "UDP checksum is mandatory over IPv6");
                    (u.slice().to_vec(), true)
                }
                Some(TransportSlice::Icmpv6(m)) => {
                    let h = m.header();
                    let want = h.icmp_type.calc_checksum(src, dst, m.payload()).unwrap();
                    assert_eq!(h.checksum, want, "ICMPv6 checksum");
                    (m.slice().to_vec(), false)
                }
                t => panic!("{t:?}"),
            };
            Decoded {
                eth_dst,
                eth_src,
                src,
                dst,
                hop_limit: ip.hop_limit(),
                transport,
                udp,
            }
        }

        #[test]
        fn shake_over_ipv6_is_answered_with_swapped_addresses_and_a_checksum() {
            for (what, hbh, n, vlan) in [
                ("common frame", false, 0, None),
                ("VLAN tag", false, 0, Some(5)),
                ("hop-by-hop and destination options", true, 2, None),
            ] {
                let mut w = worker(Setup::default());
                let base = frame6_from(&Flow6 { vlan, ..flow6() });
                let mut f = if vlan.is_none() {
                    with_extensions(&base, hbh, n)
                } else {
                    base
                };
                let req_len = f.len();
                let v = run6(&mut w, &mut f);
                let len = v.tx_len().unwrap_or_else(|| panic!("{what}: {v:?}"));
                assert!(len <= req_len, "{what}: an answer never grows");
                assert_eq!(len, req_len - 8 * (n + usize::from(hbh)), "{what}");
                let d = decode(&f[..len]);
                assert!(d.udp);
                assert_eq!((d.eth_dst, d.eth_src), (PEER_MAC, OUR_MAC), "{what}");
                assert_eq!((d.src, d.dst), (G, PEER), "{what}");
                assert_eq!(d.hop_limit, ipv6::ANSWER_HOP_LIMIT);
                assert_eq!(
                    &d.transport[..4],
                    &[0x1b, 0x58, 0x9c, 0x40],
                    "{what}: ports"
                );
                client::check_answer(&request(), &d.transport[8..], &CLAIM).unwrap();
                assert_eq!(v.reply().and_then(|r| r.outcome()), Some(Outcome::Nothing));
            }
        }

        #[test]
        fn shake_to_the_link_local_address_is_answered_from_it() {
            let mut w = worker(Setup::default());
            let mut f = frame6_from(&Flow6 {
                dst_ip: ll(),
                src_ip: ipv6::link_local_from_mac(PEER_MAC),
                ..flow6()
            });
            let len = run6(&mut w, &mut f).tx_len().unwrap();
            assert_eq!(decode(&f[..len]).src, ll());
        }

        #[test]
        fn udp_offload_over_ipv6_leaves_the_pseudo_header_sum() {
            let mut w = worker(Setup::default());
            let c = FrameConfig {
                tx_udp_offload: true,
                ..cfg6()
            };
            for hbh in [false, true] {
                let mut f = with_extensions(&frame6_from(&flow6()), hbh, 0);
                w.begin_burst(MID);
                let v = process_frame(&mut w, &c, &mut f);
                let Verdict::AnswerOffload {
                    len,
                    l2_len,
                    l3_len,
                    offload,
                    ..
                } = v
                else {
                    panic!("{v:?}")
                };
                assert_eq!(
                    (len, l2_len, l3_len, offload),
                    (126, 14, 40, TxOffload::IPV6 | TxOffload::UDP_CKSUM)
                );
                let ph = checksum::fold(checksum::pseudo_header_v6(G, PEER, 17, 72));
                assert_eq!(u16::from_be_bytes([f[60], f[61]]), ph);
            }
        }

        #[test]
        fn bad_ipv6_requests_are_dropped_under_their_reason() {
            let mut w = worker(Setup::default());
            let good = frame6_from(&flow6());
            let cases: Vec<(&str, Vec<u8>, DropReason)> = vec![
                (
                    "zero UDP checksum",
                    {
                        let mut f = good.clone();
                        f[60..62].copy_from_slice(&[0, 0]);
                        f
                    },
                    DropReason::UdpChecksum,
                ),
                (
                    "wrong UDP checksum",
                    {
                        let mut f = good.clone();
                        f[100] ^= 1;
                        f
                    },
                    DropReason::UdpChecksum,
                ),
                (
                    "another address",
                    frame6_from(&Flow6 {
                        dst_ip: PEER,
                        ..flow6()
                    }),
                    DropReason::NotForUs,
                ),
                (
                    "another port",
                    frame6_from(&Flow6 {
                        dst_port: 7001,
                        ..flow6()
                    }),
                    DropReason::Port,
                ),
                (
                    "version 4 in an IPv6 ethertype",
                    {
                        let mut f = good.clone();
                        f[14] = 0x40;
                        f
                    },
                    DropReason::Ipv6Malformed,
                ),
                (
                    "payload length past the frame",
                    {
                        let mut f = good.clone();
                        f[18..20].copy_from_slice(&200u16.to_be_bytes());
                        f
                    },
                    DropReason::Ipv6Malformed,
                ),
                (
                    "too many extension headers",
                    with_extensions(&good, false, ipv6::MAX_EXTENSION_HEADERS + 1),
                    DropReason::Ipv6Malformed,
                ),
                (
                    "fragment header",
                    {
                        let mut f = with_extensions(&good, false, 1);
                        f[20] = ipv6::NEXT_FRAGMENT;
                        f
                    },
                    DropReason::Fragment,
                ),
                (
                    "TCP",
                    {
                        let mut f = good.clone();
                        f[20] = 6;
                        f
                    },
                    DropReason::Protocol,
                ),
                (
                    "payload of 63 bytes",
                    {
                        let mut buf = vec![0u8; 256];
                        let len = flow6().emit(&mut buf, &client::payload(&request())[..63]);
                        buf.truncate(len);
                        buf
                    },
                    DropReason::PayloadLength,
                ),
            ];
            for (what, mut f, want) in cases {
                assert_eq!(drop6(&mut w, &mut f), want, "{what}");
            }
            // A node without IPv6 drops IPv6 as before.
            let mut f = good.clone();
            assert_eq!(drop_of(&mut w, &mut f), DropReason::Ethertype);
        }

        /// Sources that never get an answer, over IPv6: for SHAKE/1 and echo alike.
        #[test]
        fn ipv6_sources_that_must_never_get_an_answer() {
            let v6 = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap().octets();
            let mut w = worker(Setup::default());
            let mut n = 0;
            for (what, mac, src, port) in [
                ("unspecified", PEER_MAC, [0; 16], 40000),
                ("loopback", PEER_MAC, v6("::1"), 40000),
                ("multicast", PEER_MAC, v6("ff02::1"), 40000),
                ("IPv4-mapped", PEER_MAC, v6("::ffff:10.0.0.9"), 40000),
                ("our own address", PEER_MAC, G, 40000),
                ("our link-local address", PEER_MAC, ll(), 40000),
                ("group Ethernet source", [3, 0, 0, 0, 0, 1], PEER, 40000),
                ("source port 0", PEER_MAC, PEER, 0),
            ] {
                let fl = Flow6 {
                    src_mac: mac,
                    src_ip: src,
                    src_port: port,
                    ..flow6()
                };
                let mut f = frame6_from(&fl);
                assert_eq!(drop6(&mut w, &mut f), DropReason::Source, "{what}");
                n += 1;
                if port != 0 {
                    let mut e = echo(mac, src, G, 64);
                    assert_eq!(drop6(&mut w, &mut e), DropReason::Source, "echo, {what}");
                    n += 1;
                }
            }
            assert_eq!(w.counters().snapshot().dropped(DropReason::Source), n);
        }

        fn icmp_frame(
            eth_dst: [u8; 6],
            eth_src: [u8; 6],
            src: [u8; 16],
            dst: [u8; 16],
            hop: u8,
            icmp: &[u8],
        ) -> Vec<u8> {
            let mut f = vec![0u8; 54 + icmp.len()];
            crate::wire::EthernetRepr {
                dst: eth_dst,
                src: eth_src,
                vlan: None,
                ethertype: ethernet::ETHERTYPE_IPV6,
            }
            .emit(&mut EthernetFrame::new_unchecked(&mut f[..]));
            Ipv6Repr {
                src,
                dst,
                next_header: ipv6::NEXT_ICMPV6,
                hop_limit: hop,
                payload_len: icmp.len(),
            }
            .emit(&mut Ipv6Packet::new_unchecked(&mut f[14..]));
            f[54..].copy_from_slice(icmp);
            f
        }

        fn echo(eth_src: [u8; 6], src: [u8; 16], dst: [u8; 16], hop: u8) -> Vec<u8> {
            let r = crate::wire::Icmpv6EchoRepr {
                msg_type: icmpv6::ECHO_REQUEST,
                ident: 9,
                seq_no: 3,
                data: b"ping -6",
            };
            let mut m = vec![0u8; r.buffer_len()];
            r.emit(&mut Icmpv6Packet::new_unchecked(&mut m[..]), src, dst);
            icmp_frame(OUR_MAC, eth_src, src, dst, hop, &m)
        }

        /// A Neighbor Solicitation; `opts` are raw option bytes after the target.
        fn ns(src: [u8; 16], dst: [u8; 16], target: [u8; 16], hop: u8, opts: &[u8]) -> Vec<u8> {
            let mut m = vec![icmpv6::NEIGHBOR_SOLICIT, 0, 0, 0, 0, 0, 0, 0];
            m.extend_from_slice(&target);
            m.extend_from_slice(opts);
            Icmpv6Packet::new_unchecked(&mut m[..]).fill_checksum(src, dst);
            let eth_dst = if ipv6::is_multicast(dst) {
                ipv6::multicast_mac(dst)
            } else {
                OUR_MAC
            };
            icmp_frame(eth_dst, PEER_MAC, src, dst, hop, &m)
        }

        const SLLA: [u8; 8] = [1, 1, 2, 0, 0, 0, 0, 9];
        /// RFC 7527's nonce option, as Linux puts in its duplicate address detection probes.
        const NONCE: [u8; 8] = [14, 1, 1, 2, 3, 4, 5, 6];

        /// The advertisement an answer carries, after etherparse checked its checksum.
        fn advert(f: &[u8], len: usize) -> (Decoded, NdpRepr) {
            let d = decode(&f[..len]);
            assert!(!d.udp);
            let m = Icmpv6Packet::new_checked(&d.transport[..]).unwrap();
            let r = NdpRepr::parse(&m, d.src, d.dst).unwrap();
            (d, r)
        }

        #[test]
        fn neighbor_solicitations_for_our_addresses_are_advertised() {
            let mut w = worker(Setup::default());
            for (what, target, dst) in [
                (
                    "global, to its solicited-node group",
                    G,
                    ipv6::solicited_node(G),
                ),
                ("global, unicast (reachability)", G, G),
                ("link-local, to its group", ll(), ipv6::solicited_node(ll())),
            ] {
                let mut f = ns(PEER, dst, target, 255, &SLLA);
                let req_len = f.len();
                let v = run6(&mut w, &mut f);
                assert_eq!(v.reply(), Some(Reply::NDP), "{what}");
                let len = v.tx_len().unwrap();
                assert!(len <= req_len);
                let (d, r) = advert(&f, len);
                assert_eq!((d.eth_dst, d.eth_src), (PEER_MAC, OUR_MAC), "{what}");
                assert_eq!((d.src, d.dst, d.hop_limit), (target, PEER, 255), "{what}");
                assert_eq!(
                    r,
                    NdpRepr::Advert {
                        flags: icmpv6::flags::SOLICITED | icmpv6::flags::OVERRIDE,
                        target,
                        target_ll: Some(OUR_MAC),
                    },
                    "{what}"
                );
            }
            // Without a source link-layer option, to the Ethernet source; no room for ours.
            let mut f = ns(PEER, G, G, 255, &[]);
            let len = run6(&mut w, &mut f).tx_len().unwrap();
            let (d, r) = advert(&f, len);
            assert_eq!(d.eth_dst, PEER_MAC);
            assert!(matches!(
                r,
                NdpRepr::Advert {
                    target_ll: None,
                    ..
                }
            ));
        }

        #[test]
        fn duplicate_address_detection_probes_are_answered_to_all_nodes() {
            let mut w = worker(Setup::default());
            for (what, opts, with_ll) in
                [("nonce", &NONCE[..], true), ("no option", &[][..], false)]
            {
                let mut f = ns([0; 16], ipv6::solicited_node(G), G, 255, opts);
                let req_len = f.len();
                let len = run6(&mut w, &mut f)
                    .tx_len()
                    .unwrap_or_else(|| panic!("{what}"));
                assert!(len <= req_len, "{what}");
                let (d, r) = advert(&f, len);
                assert_eq!(d.eth_dst, [0x33, 0x33, 0, 0, 0, 1], "{what}");
                assert_eq!((d.src, d.dst, d.hop_limit), (G, ipv6::ALL_NODES, 255));
                assert_eq!(
                    r,
                    NdpRepr::Advert {
                        flags: icmpv6::flags::OVERRIDE,
                        target: G,
                        target_ll: with_ll.then_some(OUR_MAC),
                    },
                    "{what}: not solicited"
                );
            }
        }

        #[test]
        fn invalid_solicitations_are_dropped_as_ndp() {
            let mut w = worker(Setup::default());
            let group = ipv6::solicited_node(G);
            let mut cases = vec![
                ("hop limit 254 (routed)", ns(PEER, group, G, 254, &SLLA)),
                (
                    "multicast target",
                    ns(PEER, group, ipv6::ALL_NODES, 255, &SLLA),
                ),
                (
                    "option of length 0",
                    ns(PEER, group, G, 255, &[1, 0, 0, 0, 0, 0, 0, 0]),
                ),
                (
                    "option past the message",
                    ns(PEER, group, G, 255, &[1, 2, 0, 0, 0, 0, 0, 0]),
                ),
                (
                    "probe with a source link-layer option",
                    ns([0; 16], group, G, 255, &SLLA),
                ),
                ("probe to a unicast address", ns([0; 16], G, G, 255, &NONCE)),
                ("truncated below 24 bytes", {
                    let mut f = ns(PEER, group, G, 255, &[]);
                    f.truncate(f.len() - 4);
                    let pl = (f.len() - 54) as u16;
                    f[18..20].copy_from_slice(&pl.to_be_bytes());
                    f
                }),
            ];
            let mut code = ns(PEER, group, G, 255, &SLLA);
            code[55] = 1;
            Icmpv6Packet::new_unchecked(&mut code[54..]).fill_checksum(PEER, group);
            cases.push(("code 1", code));
            let mut ck = ns(PEER, group, G, 255, &SLLA);
            ck[56] ^= 1;
            cases.push(("bad checksum", ck));
            let n = cases.len() as u64;
            for (what, mut f) in cases {
                assert_eq!(drop6(&mut w, &mut f), DropReason::Ndp, "{what}");
            }
            assert_eq!(w.counters().snapshot().dropped(DropReason::Ndp), n);
            // Another target, to its own group or ours: not for us.
            let other = PEER;
            let mut f = ns(PEER, ipv6::solicited_node(other), other, 255, &SLLA);
            assert_eq!(drop6(&mut w, &mut f), DropReason::NotForUs);
            let mut f = ns(PEER, group, other, 255, &SLLA);
            assert_eq!(drop6(&mut w, &mut f), DropReason::NotForUs);
            // From a source that never gets an answer, or our own address (a conflict).
            for src in [G, [0xff; 16]] {
                let mut f = ns(src, group, G, 255, &SLLA);
                assert_eq!(drop6(&mut w, &mut f), DropReason::Source);
            }
        }

        #[test]
        fn echo_requests_to_our_addresses_are_answered() {
            let mut w = worker(Setup::default());
            for dst in [G, ll()] {
                let mut f = echo(PEER_MAC, PEER, dst, 3);
                let v = run6(&mut w, &mut f);
                assert_eq!(v.reply(), Some(Reply::ICMPV6_ECHO));
                let len = v.tx_len().unwrap();
                let d = decode(&f[..len]);
                assert_eq!((d.src, d.dst, d.hop_limit), (dst, PEER, 64));
                assert_eq!(d.transport[0], icmpv6::ECHO_REPLY);
                assert_eq!(&d.transport[8..], b"ping -6");
            }
            // Echo with extension headers: answered without them.
            let mut f = with_extensions(&echo(PEER_MAC, PEER, G, 3), true, 1);
            let len = run6(&mut w, &mut f).tx_len().unwrap();
            assert_eq!(len, echo(PEER_MAC, PEER, G, 3).len());
            assert_eq!(decode(&f[..len]).transport[0], icmpv6::ECHO_REPLY);
            // Other ICMPv6 (a Router Advertisement), a bad echo checksum: dropped as ICMP.
            let mut ra = echo(PEER_MAC, PEER, G, 255);
            ra[54] = icmpv6::ROUTER_ADVERT;
            assert_eq!(drop6(&mut w, &mut ra), DropReason::Icmp);
            let mut bad = echo(PEER_MAC, PEER, G, 3);
            bad[60] ^= 1;
            assert_eq!(drop6(&mut w, &mut bad), DropReason::Icmp);
            // An echo to the solicited-node group is not to us.
            let mut g = echo(PEER_MAC, PEER, ipv6::solicited_node(G), 3);
            assert_eq!(drop6(&mut w, &mut g), DropReason::NotForUs);
        }

        proptest::proptest! {
            /// The common path's word form of the source check agrees with the byte form,
            /// on random sources and on every special one with random low bytes.
            #[test]
            fn never_answered_word_form_agrees(
                a in proptest::prelude::any::<[u8; 16]>(),
                kind in 0usize..6,
                eth in proptest::prelude::any::<u8>(),
            ) {
                let mut src = a;
                match kind {
                    0 => src[..15].fill(0),
                    1 => src[..10].fill(0),
                    2 => { src[..10].fill(0); src[10..12].copy_from_slice(&[0xff, 0xff]); }
                    3 => src[0] = 0xff,
                    4 => src = G,
                    _ => {}
                }
                let v6 = cfg6().ipv6.unwrap();
                proptest::prop_assert_eq!(
                    never_answered_v6_ne(eth, u128::from_ne_bytes(src), &v6),
                    never_answered_v6(eth, src, &v6)
                );
            }
        }

        #[test]
        fn peek_user_reads_ipv6_shakes() {
            let f = frame6_from(&flow6());
            assert_eq!(peek_user(&f), Some(1));
            assert_eq!(peek_user(&with_extensions(&f, true, 1)), Some(1));
            assert_eq!(peek_user(&f[..60]), None);
        }

        proptest::proptest! {
            #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
            /// The fixed-offset IPv6 path decides exactly like the general one.
            #[test]
            fn common_v6_path_equals_general_path(
                user in 0u64..50,
                edits in proptest::collection::vec((0usize..126, 1u8..=255), 0..3),
                offload in proptest::prelude::any::<bool>(),
                ip_offload in proptest::prelude::any::<bool>(),
            ) {
                let c = FrameConfig {
                    tx_udp_offload: offload,
                    tx_ipv4_offload: ip_offload,
                    ..cfg6()
                };
                let r = client::request(&TOKEN, user, 77, 2_000_000_000, 0xfeed);
                let mut f = vec![0u8; 126];
                flow6().emit(&mut f, &client::payload(&r));
                for (at, x) in edits {
                    f[at] ^= x;
                }
                let (mut w1, mut w2) = (worker(Setup::default()), worker(Setup::default()));
                let (mut f1, mut f2) = (f.clone(), f);
                w1.begin_burst(MID);
                w2.begin_burst(MID);
                let v1 = answer(&mut w1, &c, &mut f1);
                let v2 = answer_any(&mut w2, &c, &mut f2).unwrap_or_else(Verdict::from);
                proptest::prop_assert_eq!(v1, v2);
                proptest::prop_assert_eq!(f1, f2);
                proptest::prop_assert_eq!(w1.counters().snapshot(), w2.counters().snapshot());
            }
        }
    }

    /// A burst's token MACs computed together in vector lanes ([`TokenBatch`]) decide
    /// exactly as one at a time: same verdicts, same bytes, same counters.
    mod token_batches {
        use super::ipv6_frames::{cfg6, flow6};
        use super::*;

        /// What a frame of the burst is.
        #[derive(Debug, Clone, Copy)]
        enum Kind {
            Valid,
            /// Another user's valid token (one the burst may also carry, in its own request).
            TokenOf(u64),
            Expired,
            /// The expiry moved after the token was made.
            LaterExpiry,
            Ipv6,
            /// A byte flipped anywhere, checksums left as they are.
            Edited(usize, u8),
            Arp,
        }

        fn kind() -> impl proptest::strategy::Strategy<Value = Kind> {
            use proptest::prelude::*;
            prop_oneof![
                4 => Just(Kind::Valid),
                1 => (0u64..40).prop_map(Kind::TokenOf),
                1 => Just(Kind::Expired),
                1 => Just(Kind::LaterExpiry),
                1 => Just(Kind::Ipv6),
                1 => (0usize..106, 1u8..=255).prop_map(|(at, x)| Kind::Edited(at, x)),
                1 => Just(Kind::Arp),
            ]
        }

        const LATER: u32 = 2_000_000_000;

        fn frame(user: u64, k: Kind) -> Vec<u8> {
            let request = |user, expiry, token_user| {
                let mut r = client::request(&TOKEN, user, 77, expiry, 0xfeed);
                r.token = TOKEN.token(token_user, expiry);
                r
            };
            let emit4 = |r| {
                let mut buf = vec![0u8; 256];
                let len = flow().emit(&mut buf, &client::payload(&r), 1);
                buf.truncate(len);
                buf
            };
            match k {
                Kind::Valid => emit4(request(user, LATER, user)),
                Kind::TokenOf(other) => emit4(request(user, LATER, other)),
                // Expired at MID (1_150 s).
                Kind::Expired => emit4(request(user, 1_000, user)),
                Kind::LaterExpiry => {
                    let mut r = request(user, LATER, user);
                    r.token_expiry += 1;
                    emit4(r)
                }
                Kind::Ipv6 => {
                    let mut buf = vec![0u8; 256];
                    let len = flow6().emit(&mut buf, &client::payload(&request(user, LATER, user)));
                    buf.truncate(len);
                    buf
                }
                Kind::Edited(at, x) => {
                    let mut f = emit4(request(user, LATER, user));
                    f[at] ^= x;
                    f
                }
                Kind::Arp => arp_from([2, 0, 0, 0, 0, 9], [10, 0, 0, 9], OUR_IP),
            }
        }

        fn run_burst(w: &mut W, frames: &[Vec<u8>]) -> (Vec<Verdict>, Vec<Vec<u8>>) {
            run_burst_with(w, &cfg6(), frames)
        }

        /// [`run_burst`] under `cfg` (its offloads).
        fn run_burst_with(
            w: &mut W,
            cfg: &FrameConfig,
            frames: &[Vec<u8>],
        ) -> (Vec<Verdict>, Vec<Vec<u8>>) {
            let mut bufs = frames.to_vec();
            let mut refs: Vec<&mut [u8]> = bufs.iter_mut().map(|b| b.as_mut_slice()).collect();
            let mut v = vec![Verdict::Drop(DropReason::Internal); refs.len()];
            w.begin_burst(MID);
            process_burst(w, cfg, &mut refs, &mut v);
            (v, bufs)
        }

        /// [`run_burst`] as the DPDK worker loop decides a staged burst: `stage_of` is staged
        /// a pass before (the burst itself, or other frames).
        fn run_staged(
            w: &mut W,
            cfg: &FrameConfig,
            frames: &[Vec<u8>],
            stage_of: &[Vec<u8>],
        ) -> (Vec<Verdict>, Vec<Vec<u8>>) {
            let mut staged = Staged::default();
            staged.stage(w, stage_of.iter().map(|f| &f[..]));
            assert_eq!(staged.len(), stage_of.len());
            let mut bufs = frames.to_vec();
            let mut refs: Vec<&mut [u8]> = bufs.iter_mut().map(|b| b.as_mut_slice()).collect();
            let mut v = vec![Verdict::Drop(DropReason::Internal); refs.len()];
            w.begin_burst(MID);
            process_burst_checked_staged(w, cfg, &mut refs, &[], &mut staged, &mut v);
            assert!(staged.is_empty(), "the decision leaves the stage empty");
            (v, bufs)
        }

        #[test]
        fn a_staged_burst_computes_the_macs_of_its_requests() {
            let w = worker(setup());
            let kinds = [
                Kind::Valid,
                Kind::Ipv6,
                Kind::Arp,
                Kind::Expired,
                Kind::Valid,
            ];
            let frames: Vec<Vec<u8>> = kinds
                .iter()
                .enumerate()
                .map(|(i, &k)| frame(i as u64 + 1, k))
                .collect();
            let mut staged = Staged::default();
            staged.stage(&w, frames.iter().map(|f| &f[..]));
            let mut w = w;
            w.begin_burst(MID);
            let mut bufs = frames.clone();
            let mut refs: Vec<&mut [u8]> = bufs.iter_mut().map(|b| b.as_mut_slice()).collect();
            let mut v = vec![Verdict::Drop(DropReason::Internal); refs.len()];
            with_tx_offload!(
                cfg6(),
                decide_staged(&mut w, &cfg6(), &mut refs, &[], &mut v, &mut staged)
            );
            if !w.lanes().is_vector() {
                return;
            }
            // Every request's MAC was computed from what the stage read, the frame that is
            // not a request has none it could use.
            for (i, k) in kinds.iter().enumerate() {
                let user = i as u64 + 1;
                let expiry = if matches!(k, Kind::Expired) {
                    1_000
                } else {
                    LATER
                };
                let mac = staged.tokens.get(i).and_then(|m| m.mac_for(user, expiry));
                if matches!(k, Kind::Arp) {
                    assert_eq!(mac, None, "frame {i}");
                } else {
                    assert_eq!(mac, Some(TOKEN.token(user, expiry)), "frame {i}");
                }
            }
        }

        #[test]
        fn a_stage_of_another_burst_size_is_not_used() {
            // Three frames staged, two decided: decided unstaged, the stage emptied.
            let frames: Vec<Vec<u8>> = (1..=3).map(|u| frame(u, Kind::Valid)).collect();
            let mut w = worker(setup());
            let mut staged = Staged::default();
            staged.stage(&w, frames.iter().map(|f| &f[..]));
            let mut bufs = frames[..2].to_vec();
            let mut refs: Vec<&mut [u8]> = bufs.iter_mut().map(|b| b.as_mut_slice()).collect();
            let mut v = vec![Verdict::Drop(DropReason::Internal); 2];
            w.begin_burst(MID);
            process_burst_checked_staged(&mut w, &cfg6(), &mut refs, &[], &mut staged, &mut v);
            assert!(staged.is_empty());
            let (expected, _) = run_burst(&mut worker(setup()), &frames[..2]);
            assert_eq!(v, expected);
        }

        fn setup() -> Setup {
            Setup {
                win: 0.2,
                greet: 0.3,
                ..Setup::default()
            }
        }

        #[test]
        fn a_token_in_the_batch_passes_only_for_its_own_request() {
            let mut w = worker(setup());
            // User 1's request, then user 2's carrying user 1's token, in one batch.
            let (v, _) = run_burst(&mut w, &[frame(1, Kind::Valid), frame(2, Kind::TokenOf(1))]);
            #[cfg(target_arch = "x86_64")]
            assert_eq!(
                w.lanes().is_vector(),
                std::arch::is_x86_feature_detected!("avx2")
            );
            let outcome = |v: Verdict| v.reply().and_then(|r| r.outcome());
            assert_ne!(outcome(v[0]), Some(Outcome::Denied));
            assert!(outcome(v[0]).is_some(), "{:?}", v[0]);
            assert_eq!(outcome(v[1]), Some(Outcome::Denied));
        }

        proptest::proptest! {
            #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
            #[test]
            fn batched_equals_one_at_a_time(
                burst in proptest::collection::vec((0u64..40, kind()), 0..80),
                capacity in proptest::prop_oneof![proptest::strategy::Just(0u32), 0u32..400],
            ) {
                let frames: Vec<Vec<u8>> = burst.iter().map(|&(u, k)| frame(u, k)).collect();
                let s = || Setup { capacity, ..setup() };
                let mut batched = worker(s());
                let mut single = worker(s()).without_lanes();
                #[cfg(target_arch = "x86_64")]
                proptest::prop_assert_eq!(
                    batched.lanes().is_vector(),
                    std::arch::is_x86_feature_detected!("avx2")
                );
                proptest::prop_assert!(!single.lanes().is_vector());
                // Twice: the second burst finds the users throttled.
                for _ in 0..2 {
                    let (v1, f1) = run_burst(&mut batched, &frames);
                    let (v2, f2) = run_burst(&mut single, &frames);
                    proptest::prop_assert_eq!(v1, v2);
                    proptest::prop_assert_eq!(f1, f2);
                }
                proptest::prop_assert_eq!(
                    batched.counters().snapshot(),
                    single.counters().snapshot()
                );
            }

            /// A staged burst decides as an unstaged one, whatever was staged: the burst
            /// itself, or other frames (the stage is only hints); under each combination
            /// of the transmit offloads (the burst loop is compiled once for each).
            #[test]
            fn staged_equals_unstaged(
                burst in proptest::collection::vec((0u64..40, kind()), 0..40),
                other in proptest::collection::vec((0u64..40, kind()), 0..40),
                capacity in proptest::prop_oneof![proptest::strategy::Just(0u32), 0u32..400],
                same_size in proptest::bool::ANY,
                (ip_offload, udp_offload) in (proptest::bool::ANY, proptest::bool::ANY),
            ) {
                let c = FrameConfig {
                    tx_ipv4_offload: ip_offload,
                    tx_udp_offload: udp_offload,
                    ..cfg6()
                };
                let frames: Vec<Vec<u8>> = burst.iter().map(|&(u, k)| frame(u, k)).collect();
                let mut others: Vec<Vec<u8>> = other.iter().map(|&(u, k)| frame(u, k)).collect();
                if same_size {
                    others.resize(frames.len(), frame(1, Kind::Valid));
                }
                let s = || Setup { capacity, ..setup() };
                let (mut plain, mut own, mut foreign) = (worker(s()), worker(s()), worker(s()));
                // Twice: the second burst finds the users throttled.
                for _ in 0..2 {
                    let (v1, f1) = run_burst_with(&mut plain, &c, &frames);
                    let (v2, f2) = run_staged(&mut own, &c, &frames, &frames);
                    let (v3, f3) = run_staged(&mut foreign, &c, &frames, &others);
                    proptest::prop_assert_eq!(&v1, &v2);
                    proptest::prop_assert_eq!(&f1, &f2);
                    proptest::prop_assert_eq!(&v1, &v3);
                    proptest::prop_assert_eq!(&f1, &f3);
                }
                proptest::prop_assert_eq!(plain.counters().snapshot(), own.counters().snapshot());
                proptest::prop_assert_eq!(
                    plain.counters().snapshot(),
                    foreign.counters().snapshot()
                );
            }
        }
    }
}
