//! Per-worker counters: written by one worker, read by the control loop.
//!
//! Each worker owns one [`Counters`] (cache-line aligned, so two workers never share a line).
//! The worker bumps with a relaxed load and store, which compiles to a plain add: no locked
//! instruction, since nobody else writes. Readers see each counter atomically, possibly a
//! little stale, which is all a counter line or a Prometheus scrape needs.
//!
//! Every frame received is counted once, and ends in exactly one of two places, so that
//! `rx = tx + dropped` (`= answered + ARP replies + ICMP echo replies + dropped`) once nothing
//! is in flight (SPEC 4):
//! - `rx` is counted by the I/O layer of the worker that received the frame, when it
//!   receives it (a frame handed to the worker that owns its user is not counted again);
//! - a frame becomes a [`Reply`] only when TX takes its answer (`answered` never includes
//!   an answer that did not leave: the decision alone is counted apart, as
//!   [`Snapshot::decided`]), or a drop under exactly one [`DropReason`], counted by whoever
//!   drops it (the frame layer, the engine, the I/O layer). [`DropReason`] is the one list.
//!
//! A layer that hands a drop up (the engine's payload checks to the frame layer, the frame
//! layer's to its verdict) hands up a [`Dropped`], which only [`Counters::count_drop`]
//! makes: a drop that reaches a verdict has been counted, once, by the layer that decided
//! it, and no layer keeps a list of the reasons another one counts.
//!
//! Per worker the sum need not hold (a worker counts `rx` for what it hands over, its owner
//! the answers); over the node it does.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::wire::shake::Outcome;

macro_rules! reasons {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $label:literal,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $variant,)* }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];
            pub const COUNT: usize = Self::ALL.len();
            /// Stable lower_snake name, used in logs, telemetry and Prometheus labels.
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $label,)* }
            }
        }
    };
}

reasons! {
    /// Why a frame was dropped without an answer (SPEC section 2), one counter each.
    DropReason {
        /// Frame too short for the headers it claims.
        Truncated = "truncated",
        /// Neither IPv4 nor ARP, nor IPv6 on a node that serves it (LLDP, a second VLAN tag,
        /// IPv6 on a node without `node.ipv6`, ...).
        Ethertype = "ethertype",
        /// ARP that is not an Ethernet/IPv4 request for our address.
        ArpNotForUs = "arp_not_for_us",
        /// ARP from another station that gives our address as its own (RFC 5227 2.4: an
        /// address conflict; counted so an operator sees it, never answered).
        ArpConflict = "arp_conflict",
        /// IPv4 header malformed (version, IHL, total length).
        Ipv4Malformed = "ipv4_malformed",
        Ipv4Checksum = "ipv4_checksum",
        /// IPv6 header malformed: version, a payload length past the frame, or extension
        /// headers that run past it, come in the wrong order, route onwards (segments left) or
        /// are more than the walk takes.
        Ipv6Malformed = "ipv6_malformed",
        /// A Neighbor Solicitation for our address that fails RFC 4861 7.1.1's checks: hop
        /// limit not 255, code not 0, bad checksum, a multicast target, a malformed option,
        /// or from the unspecified address to anything but the solicited-node group or with
        /// a source link-layer option.
        Ndp = "ndp",
        /// IPv4 or IPv6 to another address (an NS for another target).
        NotForUs = "not_for_us",
        /// An IPv4 fragment, or an IPv6 packet with a fragment header.
        Fragment = "fragment",
        /// Neither UDP nor ICMP (ICMPv6 over IPv6).
        Protocol = "protocol",
        /// ICMP other than an echo request, or with a bad checksum; ICMPv6 other than an echo
        /// request or a Neighbor Solicitation.
        Icmp = "icmp",
        /// UDP to another port.
        Port = "port",
        /// A source that must never get an answer (SPEC 2, RFC 1122 3.2.1.3): 0.0.0.0/8,
        /// loopback, multicast, reserved 240/4 and broadcast, the node's own address, UDP
        /// source port 0, or a group (multicast) Ethernet source; over IPv6 `::`, `::1`,
        /// multicast and IPv4-mapped sources, and the node's own addresses.
        Source = "source",
        UdpMalformed = "udp_malformed",
        UdpChecksum = "udp_checksum",
        PayloadLength = "payload_length",
        Magic = "magic",
        Version = "version",
        Kind = "kind",
        /// `shakes` of 0: the SPEC says at least 1.
        ZeroShakes = "zero_shakes",
        /// A frame in more than one mbuf segment (a jumbo frame): never a request, and
        /// answers are written in the first segment only.
        MultiSegment = "multi_segment",
        /// The hand-off ring (DPDK) or inbox (sockets) of the worker that owns the user was
        /// full; counted by the worker that received the frame.
        HandoffFull = "handoff_full",
        /// An answer that could not be sent: TX did not take it and the worker's TX backlog
        /// had no room for it (non-RED_PACKET answers give way first), or the kernel refused
        /// it; counted by the I/O layer.
        TxFull = "tx_full",
        /// A RED_PACKET answer (journaled: paid) that never left the node: the TX backlog
        /// was full of other RED_PACKET answers, the port stopped with it still waiting, or
        /// the kernel refused it. Its own reason, as no other loss costs a user money.
        RedPacketTxLost = "red_packet_tx_lost",
        /// A frame the I/O layer could not place (an answer longer than its buffer, an
        /// offload the port lacks, a hand-off for an unknown port): a bug, counted rather
        /// than lost.
        Internal = "internal",
    }
}

reasons! {
    /// Things a decision ran into, besides its outcome.
    Event {
        /// Blacklisted user answered NOTHING.
        Blacklisted = "blacklisted",
        /// Shed by the per-worker capacity budget.
        Shed = "shed",
        /// The user table had no room in the user's probe window.
        UserTableFull = "user_table_full",
        /// A win was drawn but pacing had nothing due yet.
        PacingWait = "pacing_wait",
        /// A win was drawn but the shard had no packet left (or none below its lease).
        NoPacket = "no_packet",
        UserLimit = "user_limit",
        SponsorLimit = "sponsor_limit",
        /// The winner table was at its planned capacity; the win was refused (a bug).
        WinnerTableFull = "winner_table_full",
        /// The claim journal refused the record; no packet was issued.
        JournalError = "journal_error",
        /// Requests that carried an older config version than ours (CONFIG_STALE set).
        ConfigStale = "config_stale",
        /// An answer TX did not take at once, kept in the worker's TX backlog for the next
        /// poll (DPDK); whatever it became is counted again when it leaves or is dropped.
        TxDeferred = "tx_deferred",
    }
}

/// A drop that has been counted. Only [`Counters::count_drop`] makes one, so a function
/// that returns it (the engine's payload checks, the frame layer's header checks) cannot
/// have forgotten to count it, nor can its caller count it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[must_use]
pub struct Dropped(DropReason);

impl Dropped {
    /// Why the frame was dropped.
    #[inline]
    pub const fn reason(self) -> DropReason {
        self.0
    }
}

/// What a transmitted frame answers: a SHAKE/1 request (by the outcome of its answer), an
/// ARP request or an ICMP echo request. The frame layer says it in its verdict and the I/O
/// layer counts it when TX takes the frame. One byte: it travels with every answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Reply(u8);

impl Reply {
    pub const ARP: Reply = Reply(Outcome::ALL.len() as u8);
    pub const ICMP_ECHO: Reply = Reply(Outcome::ALL.len() as u8 + 1);
    /// A Neighbor Advertisement answering a Neighbor Solicitation.
    pub const NDP: Reply = Reply(Outcome::ALL.len() as u8 + 2);
    pub const ICMPV6_ECHO: Reply = Reply(Outcome::ALL.len() as u8 + 3);
    /// Kinds of reply: the outcomes, ARP, ICMP echo, NDP, ICMPv6 echo.
    pub const COUNT: usize = Outcome::ALL.len() + 4;
    /// The replies that are not SHAKE/1 answers, in counter order.
    pub const OTHERS: [Reply; 4] = [Reply::ARP, Reply::ICMP_ECHO, Reply::NDP, Reply::ICMPV6_ECHO];

    /// A SHAKE/1 answer with this outcome.
    #[inline]
    pub const fn shake(o: Outcome) -> Reply {
        Reply(o as u8)
    }

    /// The outcome, for a SHAKE/1 answer.
    pub const fn outcome(self) -> Option<Outcome> {
        Outcome::from_u8(self.0)
    }

    #[inline]
    pub const fn is_red_packet(self) -> bool {
        self.0 == Outcome::RedPacket as u8
    }

    /// The counter's name: the outcome's, `arp_reply`, `icmp_echo_reply`,
    /// `neighbor_advert` or `icmpv6_echo_reply`.
    pub const fn name(self) -> &'static str {
        match self.outcome() {
            Some(o) => o.name(),
            None if self.0 == Self::ARP.0 => "arp_reply",
            None if self.0 == Self::ICMP_ECHO.0 => "icmp_echo_reply",
            None if self.0 == Self::NDP.0 => "neighbor_advert",
            None => "icmpv6_echo_reply",
        }
    }

    #[inline]
    const fn index(self) -> usize {
        self.0 as usize
    }
}

/// Red packets and cents one worker issued, per sponsor and round: what the fleet's
/// dashboards show of the money (`shake_red_packets_total`, `shake_red_packet_cents_total`).
///
/// Sized once, at worker construction, for the activity's sponsors x rounds (a reload may not
/// change either, see [`Activity`](crate::activity::Activity)); a packet issued is then two
/// plain adds into its cell, with no allocation, lock or system call. The ids are kept for the
/// labels only. Issuing is rare next to deciding, so the cells need no padding of their own.
#[derive(Debug, Default)]
pub struct IssuedTable {
    sponsors: Box<[u32]>,
    rounds: Box<[u32]>,
    /// `sponsors.len() * rounds.len()` cells, sponsor-major.
    cells: Box<[IssuedCell]>,
}

#[derive(Debug, Default)]
struct IssuedCell {
    packets: AtomicU64,
    cents: AtomicU64,
}

impl IssuedTable {
    /// A table for these sponsor ids and round ids (in the activity's order).
    pub fn new(sponsors: &[u32], rounds: &[u32]) -> IssuedTable {
        IssuedTable {
            sponsors: sponsors.into(),
            rounds: rounds.into(),
            cells: (0..sponsors.len() * rounds.len())
                .map(|_| IssuedCell::default())
                .collect(),
        }
    }

    /// One packet of `cents` issued by the sponsor and round at these indexes (the
    /// activity's order). Single writer: the worker that owns the table.
    #[inline]
    pub fn issued(&self, sponsor: usize, round: usize, cents: u32) {
        // Both indexes come from the activity the table was sized for; out of range is a
        // bug, and the packet (already journaled) is still paid, so it is not counted
        // rather than a panic on a worker.
        debug_assert!(sponsor < self.sponsors.len() && round < self.rounds.len());
        if round < self.rounds.len() {
            if let Some(c) = self.cells.get(sponsor * self.rounds.len() + round) {
                bump(&c.packets, 1);
                bump(&c.cents, u64::from(cents));
            }
        }
    }

    /// `(sponsor id, round id) -> (packets, cents)`, every cell, zero or not (a counter
    /// that exists from the start gives a rate from the start).
    pub fn snapshot(&self) -> IssuedSnapshot {
        let mut out = IssuedSnapshot::default();
        self.add_to(&mut out);
        out
    }

    /// Adds this table's cells into `into` (the sum over a node's workers).
    pub fn add_to(&self, into: &mut IssuedSnapshot) {
        let rounds = self.rounds.len();
        for (i, c) in self.cells.iter().enumerate() {
            let key = (self.sponsors[i / rounds], self.rounds[i % rounds]);
            let e = into.cells.entry(key).or_default();
            e.0 += c.packets.load(Relaxed);
            e.1 += c.cents.load(Relaxed);
        }
    }
}

/// Packets and cents issued per (sponsor id, round id), summed over whatever was added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IssuedSnapshot {
    pub cells: std::collections::BTreeMap<(u32, u32), (u64, u64)>,
}

impl IssuedSnapshot {
    /// Prometheus text of the node's totals (no worker label: sponsors x rounds x workers
    /// series on every node of a fleet would be many, and the dashboards sum them anyway).
    pub fn prometheus(&self, out: &mut String) {
        use std::fmt::Write;
        for (&(s, r), &(packets, _)) in &self.cells {
            let _ = writeln!(
                out,
                "shake_red_packets_total{{sponsor=\"{s}\",round=\"{r}\"}} {packets}"
            );
        }
        for (&(s, r), &(_, cents)) in &self.cells {
            let _ = writeln!(
                out,
                "shake_red_packet_cents_total{{sponsor=\"{s}\",round=\"{r}\"}} {cents}"
            );
        }
    }
}

/// One worker's counters.
#[derive(Debug)]
#[repr(align(128))]
pub struct Counters {
    /// Frames received on this worker's queues (sockets: datagrams), counted on receipt.
    pub rx: AtomicU64,
    /// Poll-mode workers only: TSC cycles of the poll loop, and of the passes in it that
    /// moved frames (the rest found every queue empty). busy / cycles is how loaded the lcore
    /// is, which a spinning lcore's CPU time cannot tell (it is always 100%).
    pub cycles: AtomicU64,
    pub busy_cycles: AtomicU64,
    /// Decisions by outcome (the engine), whether or not the answer left.
    decided: [AtomicU64; Outcome::ALL.len()],
    /// Frames TX took, by what they answer.
    sent: [AtomicU64; Reply::COUNT],
    drops: [AtomicU64; DropReason::COUNT],
    events: [AtomicU64; Event::COUNT],
    /// Red packets issued per sponsor and round (empty unless the worker sized it).
    pub issued: IssuedTable,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            rx: AtomicU64::new(0),
            cycles: AtomicU64::new(0),
            busy_cycles: AtomicU64::new(0),
            decided: std::array::from_fn(|_| AtomicU64::new(0)),
            sent: std::array::from_fn(|_| AtomicU64::new(0)),
            drops: std::array::from_fn(|_| AtomicU64::new(0)),
            events: std::array::from_fn(|_| AtomicU64::new(0)),
            issued: IssuedTable::default(),
        }
    }
}

/// Single-writer increment: a plain add, no locked instruction.
#[inline]
pub fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

impl Counters {
    /// Counters with a red packet table for these sponsor and round ids.
    pub fn with_issued(sponsors: &[u32], rounds: &[u32]) -> Counters {
        Counters {
            issued: IssuedTable::new(sponsors, rounds),
            ..Counters::default()
        }
    }

    /// A shake decided and rewritten into its answer; it is `answered` once TX takes it
    /// ([`sent`](Self::sent)).
    #[inline]
    pub fn outcome(&self, o: Outcome) {
        bump(&self.decided[o as usize], 1);
    }
    /// A frame TX took, answering `r`.
    #[inline]
    pub fn sent(&self, r: Reply) {
        bump(&self.sent[r.index()], 1);
    }
    /// A drop the caller does not hand on (the I/O layer's own).
    #[inline]
    pub fn dropped(&self, d: DropReason) {
        bump(&self.drops[d as usize], 1);
    }
    /// Counts a drop that is handed on, as the [`Dropped`] that says it was counted. Out of
    /// line: drops are the rare path.
    #[cold]
    #[inline(never)]
    pub fn count_drop(&self, d: DropReason) -> Dropped {
        self.dropped(d);
        Dropped(d)
    }
    #[inline]
    pub fn event(&self, e: Event) {
        bump(&self.events[e as usize], 1);
    }

    /// A consistent-enough copy for reporting.
    pub fn snapshot(&self) -> Snapshot {
        let sent: [u64; Reply::COUNT] = std::array::from_fn(|i| self.sent[i].load(Relaxed));
        Snapshot {
            rx: self.rx.load(Relaxed),
            tx: sent.iter().sum(),
            cycles: self.cycles.load(Relaxed),
            busy_cycles: self.busy_cycles.load(Relaxed),
            decided: std::array::from_fn(|i| self.decided[i].load(Relaxed)),
            sent,
            drops: std::array::from_fn(|i| self.drops[i].load(Relaxed)),
            events: std::array::from_fn(|i| self.events[i].load(Relaxed)),
        }
    }
}

/// Plain values of a [`Counters`], summable over workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub rx: u64,
    /// Frames transmitted: the sum of `sent`.
    pub tx: u64,
    pub cycles: u64,
    pub busy_cycles: u64,
    pub decided: [u64; Outcome::ALL.len()],
    pub sent: [u64; Reply::COUNT],
    pub drops: [u64; DropReason::COUNT],
    pub events: [u64; Event::COUNT],
}

impl Snapshot {
    /// Answers with outcome `o` that TX took.
    pub fn outcome(&self, o: Outcome) -> u64 {
        self.replies(Reply::shake(o))
    }
    /// Decisions with outcome `o`, transmitted or not (without an I/O layer, the only count).
    pub fn decided(&self, o: Outcome) -> u64 {
        self.decided[o as usize]
    }
    /// Frames TX took that answer `r`.
    pub fn replies(&self, r: Reply) -> u64 {
        self.sent[r.index()]
    }
    pub fn dropped(&self, d: DropReason) -> u64 {
        self.drops[d as usize]
    }
    pub fn event(&self, e: Event) -> u64 {
        self.events[e as usize]
    }
    /// SHAKE/1 answers transmitted.
    pub fn answered(&self) -> u64 {
        Outcome::ALL.iter().map(|&o| self.outcome(o)).sum()
    }
    pub fn dropped_total(&self) -> u64 {
        self.drops.iter().sum()
    }
    /// Frames whose fate is counted: transmitted or dropped. Equal to `rx` once nothing is
    /// in flight (staged, in a hand-off ring, in a TX backlog).
    pub fn accounted(&self) -> u64 {
        self.tx + self.dropped_total()
    }

    /// Percent of the poll loop's cycles spent in passes that moved frames, between `earlier`
    /// and this snapshot; `None` without poll-mode workers (the socket backend).
    pub fn busy_percent_since(&self, earlier: &Snapshot) -> Option<f64> {
        let cycles = self.cycles.checked_sub(earlier.cycles)?;
        let busy = self.busy_cycles.checked_sub(earlier.busy_cycles)?;
        (cycles > 0).then(|| 100.0 * busy as f64 / cycles as f64)
    }

    pub fn add(&mut self, o: &Snapshot) {
        self.rx += o.rx;
        self.tx += o.tx;
        self.cycles += o.cycles;
        self.busy_cycles += o.busy_cycles;
        for (a, b) in self.decided.iter_mut().zip(o.decided) {
            *a += b;
        }
        for (a, b) in self.sent.iter_mut().zip(o.sent) {
            *a += b;
        }
        for (a, b) in self.drops.iter_mut().zip(o.drops) {
            *a += b;
        }
        for (a, b) in self.events.iter_mut().zip(o.events) {
            *a += b;
        }
    }

    /// Sum over workers.
    pub fn total<'a>(all: impl IntoIterator<Item = &'a Snapshot>) -> Snapshot {
        let mut t = Snapshot::default();
        for s in all {
            t.add(s);
        }
        t
    }

    /// The periodic log line: totals and the non-zero reasons.
    pub fn line(&self) -> String {
        let mut s = format!(
            "rx={} tx={} answered={} dropped={}",
            self.rx,
            self.tx,
            self.answered(),
            self.dropped_total()
        );
        for o in Outcome::ALL {
            let v = self.outcome(o);
            if v > 0 {
                s += &format!(" {}={v}", o.name());
            }
        }
        for &d in DropReason::ALL {
            let v = self.dropped(d);
            if v > 0 {
                s += &format!(" drop.{}={v}", d.name());
            }
        }
        for r in Reply::OTHERS {
            let v = self.replies(r);
            if v > 0 {
                s += &format!(" {}={v}", r.name());
            }
        }
        for &e in Event::ALL {
            let v = self.event(e);
            if v > 0 {
                s += &format!(" {}={v}", e.name());
            }
        }
        s
    }

    /// Prometheus text exposition of one worker's counters.
    pub fn prometheus(&self, worker: usize, out: &mut String) {
        use std::fmt::Write;
        let _ = writeln!(
            out,
            "shake_rx_frames_total{{worker=\"{worker}\"}} {}",
            self.rx
        );
        let _ = writeln!(
            out,
            "shake_tx_frames_total{{worker=\"{worker}\"}} {}",
            self.tx
        );
        if self.cycles > 0 {
            let _ = writeln!(
                out,
                "shake_worker_cycles_total{{worker=\"{worker}\"}} {}",
                self.cycles
            );
            let _ = writeln!(
                out,
                "shake_worker_busy_cycles_total{{worker=\"{worker}\"}} {}",
                self.busy_cycles
            );
        }
        for o in Outcome::ALL {
            let _ = writeln!(
                out,
                "shake_answers_total{{worker=\"{worker}\",outcome=\"{}\"}} {}",
                o.name(),
                self.outcome(o)
            );
        }
        for o in Outcome::ALL {
            let _ = writeln!(
                out,
                "shake_decisions_total{{worker=\"{worker}\",outcome=\"{}\"}} {}",
                o.name(),
                self.decided(o)
            );
        }
        for r in Reply::OTHERS {
            let _ = writeln!(
                out,
                "shake_replies_total{{worker=\"{worker}\",kind=\"{}\"}} {}",
                r.name(),
                self.replies(r)
            );
        }
        for &d in DropReason::ALL {
            let _ = writeln!(
                out,
                "shake_drops_total{{worker=\"{worker}\",reason=\"{}\"}} {}",
                d.name(),
                self.dropped(d)
            );
        }
        for &e in Event::ALL {
            let _ = writeln!(
                out,
                "shake_events_total{{worker=\"{worker}\",event=\"{}\"}} {}",
                e.name(),
                self.event(e)
            );
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn counts_and_sums() {
        let c = Counters::default();
        c.outcome(Outcome::RedPacket);
        c.outcome(Outcome::RedPacket);
        c.outcome(Outcome::Nothing);
        c.sent(Reply::shake(Outcome::RedPacket));
        c.sent(Reply::shake(Outcome::RedPacket));
        c.sent(Reply::ARP);
        assert_eq!(c.count_drop(DropReason::Magic).reason(), DropReason::Magic);
        c.dropped(DropReason::TxFull);
        c.event(Event::Shed);
        bump(&c.rx, 5);
        let s = c.snapshot();
        // Decided is not answered: the NOTHING answer never left.
        assert_eq!(s.decided(Outcome::Nothing), 1);
        assert_eq!(s.outcome(Outcome::Nothing), 0);
        assert_eq!(s.outcome(Outcome::RedPacket), 2);
        assert_eq!(s.dropped(DropReason::Magic), 1);
        assert_eq!(s.answered(), 2);
        assert_eq!(s.replies(Reply::ARP), 1);
        assert_eq!(s.tx, 3);
        assert_eq!(s.accounted(), s.rx);
        let t = Snapshot::total([&s, &s]);
        assert_eq!(t.rx, 10);
        assert_eq!(t.tx, 6);
        assert_eq!(t.event(Event::Shed), 2);
        let line = t.line();
        assert!(
            line.contains("red_packet=4")
                && line.contains("drop.magic=2")
                && line.contains("arp_reply=2")
                && !line.contains("nothing="),
            "{line}"
        );
        let mut p = String::new();
        s.prometheus(0, &mut p);
        assert!(
            p.contains("shake_drops_total{worker=\"0\",reason=\"magic\"} 1"),
            "{p}"
        );
        assert!(
            p.contains("shake_decisions_total{worker=\"0\",outcome=\"nothing\"} 1")
                && p.contains("shake_answers_total{worker=\"0\",outcome=\"nothing\"} 0")
                && p.contains("shake_replies_total{worker=\"0\",kind=\"arp_reply\"} 1"),
            "{p}"
        );
        assert!(std::mem::align_of::<Counters>() >= 64);
        // No poll loop, no busy figure and no cycle metrics.
        assert_eq!(s.busy_percent_since(&Snapshot::default()), None);
        assert!(!p.contains("cycles"), "{p}");
    }

    #[test]
    fn replies_are_the_outcomes_then_arp_and_icmp() {
        for o in Outcome::ALL {
            let r = Reply::shake(o);
            assert_eq!((r.outcome(), r.name()), (Some(o), o.name()));
            assert_eq!(r.is_red_packet(), o == Outcome::RedPacket);
        }
        assert_eq!(
            (Reply::ARP.outcome(), Reply::ARP.name()),
            (None, "arp_reply")
        );
        assert_eq!(Reply::ICMP_ECHO.name(), "icmp_echo_reply");
        assert_eq!(Reply::NDP.name(), "neighbor_advert");
        assert_eq!(Reply::ICMPV6_ECHO.name(), "icmpv6_echo_reply");
        assert_eq!(Reply::ICMPV6_ECHO.index() + 1, Reply::COUNT);
        assert_eq!(Reply::OTHERS.len() + Outcome::ALL.len(), Reply::COUNT);
        // Every name is distinct, so the counter line and the telemetry keys are too.
        let mut names: Vec<&str> = DropReason::ALL.iter().map(|d| d.name()).collect();
        names.extend(Event::ALL.iter().map(|e| e.name()));
        names.extend((0..Reply::COUNT as u8).map(|i| Reply(i).name()));
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n);
    }

    #[test]
    fn red_packets_are_counted_per_sponsor_and_round_and_summed_over_workers() {
        let (sponsors, rounds) = ([101, 102, 103], [7, 8]);
        let a = Counters::with_issued(&sponsors, &rounds);
        let b = Counters::with_issued(&sponsors, &rounds);
        a.issued.issued(0, 0, 500);
        a.issued.issued(0, 0, 250);
        a.issued.issued(2, 1, 99);
        b.issued.issued(2, 1, 1);
        b.issued.issued(1, 0, 10);
        let mut t = a.issued.snapshot();
        b.issued.add_to(&mut t);
        // Every cell, zero or not, under the ids (not the indexes).
        assert_eq!(t.cells.len(), 6);
        assert_eq!(t.cells[&(101, 7)], (2, 750));
        assert_eq!(t.cells[&(103, 8)], (2, 100));
        assert_eq!(t.cells[&(102, 7)], (1, 10));
        assert_eq!(t.cells[&(102, 8)], (0, 0));
        let mut p = String::new();
        t.prometheus(&mut p);
        for line in [
            "shake_red_packets_total{sponsor=\"101\",round=\"7\"} 2",
            "shake_red_packet_cents_total{sponsor=\"101\",round=\"7\"} 750",
            "shake_red_packets_total{sponsor=\"103\",round=\"8\"} 2",
            "shake_red_packet_cents_total{sponsor=\"103\",round=\"8\"} 100",
            "shake_red_packets_total{sponsor=\"102\",round=\"8\"} 0",
        ] {
            assert!(p.lines().any(|l| l == line), "{line} not in\n{p}");
        }
        // A worker without a table (its counters made by default) renders nothing.
        let mut empty = String::new();
        Counters::default().issued.snapshot().prometheus(&mut empty);
        assert_eq!(empty, "");
    }

    #[test]
    fn busy_share_is_a_ratio_of_deltas() {
        let c = Counters::default();
        bump(&c.cycles, 1000);
        bump(&c.busy_cycles, 900);
        let before = c.snapshot();
        bump(&c.cycles, 4000);
        bump(&c.busy_cycles, 1000);
        let after = c.snapshot();
        assert_eq!(after.busy_percent_since(&before), Some(25.0));
        assert_eq!(after.busy_percent_since(&Snapshot::default()), Some(38.0));
        // Counters never run backwards; a snapshot older than `earlier` gives nothing.
        assert_eq!(before.busy_percent_since(&after), None);
        let mut p = String::new();
        after.prometheus(3, &mut p);
        assert!(
            p.contains("shake_worker_busy_cycles_total{worker=\"3\"} 1900"),
            "{p}"
        );
    }
}
