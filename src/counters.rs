//! Per-worker counters: written by one worker, read by the control loop.
//!
//! Each worker owns one [`Counters`] (cache-line aligned, so two workers never share a line).
//! The worker bumps with a relaxed load and store, which compiles to a plain add: no locked
//! instruction, since nobody else writes. Readers see each counter atomically, possibly a
//! little stale, which is all a counter line or a Prometheus scrape needs.

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
        /// Neither IPv4 nor ARP (IPv6, LLDP, a second VLAN tag, ...).
        Ethertype = "ethertype",
        /// ARP that is not an Ethernet/IPv4 request for our address.
        ArpNotForUs = "arp_not_for_us",
        /// IPv4 header malformed (version, IHL, total length).
        Ipv4Malformed = "ipv4_malformed",
        Ipv4Checksum = "ipv4_checksum",
        /// IPv4 to another address.
        NotForUs = "not_for_us",
        Fragment = "fragment",
        /// Neither UDP nor ICMP.
        Protocol = "protocol",
        /// ICMP other than an echo request, or with a bad checksum.
        Icmp = "icmp",
        /// UDP to another port.
        Port = "port",
        UdpMalformed = "udp_malformed",
        UdpChecksum = "udp_checksum",
        PayloadLength = "payload_length",
        Magic = "magic",
        Version = "version",
        Kind = "kind",
        /// `shakes` of 0: the SPEC says at least 1.
        ZeroShakes = "zero_shakes",
        /// The answer could not be sent (TX ring full); counted by the I/O layer.
        TxFull = "tx_full",
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
        ArpReply = "arp_reply",
        IcmpEchoReply = "icmp_echo_reply",
    }
}

/// One worker's counters.
#[derive(Debug)]
#[repr(align(128))]
pub struct Counters {
    pub rx: AtomicU64,
    pub tx: AtomicU64,
    /// Poll-mode workers only: TSC cycles of the poll loop, and of the passes in it that
    /// moved frames (the rest found every queue empty). busy / cycles is how loaded the lcore
    /// is, which a spinning lcore's CPU time cannot tell (it is always 100%).
    pub cycles: AtomicU64,
    pub busy_cycles: AtomicU64,
    outcomes: [AtomicU64; Outcome::ALL.len()],
    drops: [AtomicU64; DropReason::COUNT],
    events: [AtomicU64; Event::COUNT],
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            rx: AtomicU64::new(0),
            tx: AtomicU64::new(0),
            cycles: AtomicU64::new(0),
            busy_cycles: AtomicU64::new(0),
            outcomes: std::array::from_fn(|_| AtomicU64::new(0)),
            drops: std::array::from_fn(|_| AtomicU64::new(0)),
            events: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// Single-writer increment: a plain add, no locked instruction.
#[inline]
pub fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

impl Counters {
    #[inline]
    pub fn outcome(&self, o: Outcome) {
        bump(&self.outcomes[o as usize], 1);
    }
    #[inline]
    pub fn dropped(&self, d: DropReason) {
        bump(&self.drops[d as usize], 1);
    }
    #[inline]
    pub fn event(&self, e: Event) {
        bump(&self.events[e as usize], 1);
    }

    /// A consistent-enough copy for reporting.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            rx: self.rx.load(Relaxed),
            tx: self.tx.load(Relaxed),
            cycles: self.cycles.load(Relaxed),
            busy_cycles: self.busy_cycles.load(Relaxed),
            outcomes: std::array::from_fn(|i| self.outcomes[i].load(Relaxed)),
            drops: std::array::from_fn(|i| self.drops[i].load(Relaxed)),
            events: std::array::from_fn(|i| self.events[i].load(Relaxed)),
        }
    }
}

/// Plain values of a [`Counters`], summable over workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub rx: u64,
    pub tx: u64,
    pub cycles: u64,
    pub busy_cycles: u64,
    pub outcomes: [u64; Outcome::ALL.len()],
    pub drops: [u64; DropReason::COUNT],
    pub events: [u64; Event::COUNT],
}

impl Snapshot {
    pub fn outcome(&self, o: Outcome) -> u64 {
        self.outcomes[o as usize]
    }
    pub fn dropped(&self, d: DropReason) -> u64 {
        self.drops[d as usize]
    }
    pub fn event(&self, e: Event) -> u64 {
        self.events[e as usize]
    }
    pub fn answered(&self) -> u64 {
        self.outcomes.iter().sum()
    }
    pub fn dropped_total(&self) -> u64 {
        self.drops.iter().sum()
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
        for (a, b) in self.outcomes.iter_mut().zip(o.outcomes) {
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
        c.dropped(DropReason::Magic);
        c.event(Event::Shed);
        bump(&c.rx, 3);
        let s = c.snapshot();
        assert_eq!(s.outcome(Outcome::RedPacket), 2);
        assert_eq!(s.dropped(DropReason::Magic), 1);
        assert_eq!(s.answered(), 2);
        let t = Snapshot::total([&s, &s]);
        assert_eq!(t.rx, 6);
        assert_eq!(t.event(Event::Shed), 2);
        let line = t.line();
        assert!(
            line.contains("red_packet=4") && line.contains("drop.magic=2"),
            "{line}"
        );
        let mut p = String::new();
        s.prometheus(0, &mut p);
        assert!(
            p.contains("shake_drops_total{worker=\"0\",reason=\"magic\"} 1"),
            "{p}"
        );
        assert!(std::mem::align_of::<Counters>() >= 64);
        // No poll loop, no busy figure and no cycle metrics.
        assert_eq!(s.busy_percent_since(&Snapshot::default()), None);
        assert!(!p.contains("cycles"), "{p}");
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
