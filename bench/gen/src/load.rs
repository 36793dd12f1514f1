//! The generator's bookkeeping, shared by every I/O mode: which user shakes next, what is in
//! flight, and what each answer (or returned frame) means. Time is nanoseconds since the run
//! started, supplied by the caller (a monotonic clock or the TSC), and goes into client_ts so
//! the round trip is read back from the answer itself.
//!
//! Against a fleet ([`Spec::fleet`](crate::Spec)) every request says which node it goes to
//! ([`Request::node`]): each phone's own, or wherever its last REDIRECT sent it. A phone
//! follows a REDIRECT as a phone would: its next shake goes to the node the answer names
//! (after the answer's retry_after_ms, when obeying). An answer is legal or not for the node
//! the request went to, and must come from that node.
//!
//! A phone shakes over IPv4 or IPv6 ([`Request::ipv6`], its population's family); an answer
//! is validated alike over both, must come back over the family its request went over (when
//! the I/O mode says which it came over), and is counted by family as well.

use std::collections::BTreeMap;

use serde::Serialize;

use shake::client::{check_answer, AnswerError, Flow, Flow6};
use shake::mac::MacKey;
use shake::wire::shake::{Outcome, ShakeRequestRepr, KIND_SHAKE, MAGIC, PAYLOAD_LEN};
use shake::wire::{Datagram, Datagram6};

use crate::histogram::{Histogram, Summary};
use crate::population::{legal, Population, Schedule};
use crate::seconds::{self, ConfigChange, RoundMark, Seconds};

/// Requests tracked in flight: an answer is matched to its request by `seq mod WINDOW`.
const WINDOW: usize = 1 << 20;
/// The least backlog a paced generator may catch up at once (see `budget`).
const BACKLOG_MIN: u64 = 64;
/// Users looked at for one free to shake, when clients obey retry_after_ms.
const SCAN: usize = 64;
/// Invalid answers kept word for word in the report.
const EXAMPLES: usize = 8;

/// How a run is shaped.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Requests per second; `None` floods.
    pub rate: Option<f64>,
    /// Stop sending after this long.
    pub duration_ns: Option<u64>,
    /// Stop sending after this many requests.
    pub count: Option<u64>,
    /// Clients wait retry_after_ms before shaking again, as phones do.
    pub obey_retry: bool,
    /// A client that obeys waits this long for an answer before it shakes again.
    pub answer_timeout_ms: u32,
    /// How long to wait for the last answers once sending stops.
    pub drain_ns: u64,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    /// `u32::MAX`: empty.
    user: u32,
    seq: u32,
    config_version: u32,
    /// The node the request went to.
    node: u32,
    /// Sent over IPv6.
    ipv6: bool,
    client_ts: u64,
}

const EMPTY: Slot = Slot {
    user: u32::MAX,
    seq: 0,
    config_version: 0,
    node: 0,
    ipv6: false,
    client_ts: 0,
};

/// One request to send: the user's index in the population, the node it goes to (the node
/// under test, or in a fleet the index into the node list), its family, and the payload
/// fields.
#[derive(Debug, Clone, Copy)]
pub struct Request {
    pub user: usize,
    pub node: u32,
    /// Goes over IPv6 (else IPv4).
    pub ipv6: bool,
    pub repr: ShakeRequestRepr,
}

/// Running totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub sent: u64,
    /// Valid answers.
    pub answered: u64,
    /// Answers to a request in flight that failed validation.
    pub invalid: u64,
    /// SHAKE/1 answers matching no request in flight (late past the window, duplicated).
    pub unmatched: u64,
    /// Our own requests come back unchanged but for addresses (a forwarder such as
    /// testpmd macswap instead of a node).
    pub echoed: u64,
    /// Frames received in DPDK mode.
    pub rx_frames: u64,
    /// Received frames that were neither (ARP, junk, wrong addresses).
    pub rx_other: u64,
    /// Received frames whose IPv4 or UDP checksum is wrong.
    pub rx_bad_checksum: u64,
    /// REDIRECT answers a phone followed: its next shakes go to the node named.
    pub redirects_followed: u64,
    pub outcomes: [u64; 7],
    /// Money in the valid RED_PACKET answers, in cents.
    pub cents: u64,
    /// Of `sent`, `answered` and `invalid`: those over IPv6 (the rest went over IPv4).
    pub sent_ipv6: u64,
    pub answered_ipv6: u64,
    pub invalid_ipv6: u64,
}

impl Tally {
    /// Requests that got some response back.
    pub fn responses(&self) -> u64 {
        self.answered + self.invalid + self.echoed
    }
}

/// One second of the run, for the live line and the throughput plot.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Second {
    pub t_s: f64,
    pub sent: u64,
    pub answered: u64,
    pub echoed: u64,
    pub invalid: u64,
}

impl Second {
    /// The point at `now_ns` for what happened since the tally `before`.
    fn between(now_ns: u64, before: &Tally, t: &Tally) -> Second {
        Second {
            t_s: now_ns as f64 / 1e9,
            sent: t.sent - before.sent,
            answered: t.answered - before.answered,
            echoed: t.echoed - before.echoed,
            invalid: t.invalid - before.invalid,
        }
    }
}

pub struct Generator {
    pop: Population,
    plan: Plan,
    claim_key: MacKey,
    token_expiry: u32,
    schedule: Option<Schedule>,
    cursor: usize,
    seq: u32,
    config_version: u32,
    slots: Vec<Slot>,
    pub tally: Tally,
    rtt: Histogram,
    examples: Vec<String>,
    seconds: Vec<Second>,
    last_tick: (u64, Tally),
    send_end_ns: Option<u64>,
    /// Requests the rate allowed but nobody sent (every client waiting, or TX refusing) and
    /// that were written off rather than sent later in a burst.
    forgiven: u64,
    /// A fleet: the node each user shakes at next (empty otherwise).
    route: Vec<u32>,
    /// A fleet: requests sent to each node.
    sent_by_node: Vec<u64>,
    /// A fleet: the highest config_version each node's answers carried.
    version_by_node: Vec<u32>,
    /// When the round opens (unix ns), if the caller said: time is counted from it.
    opening_unix_ns: Option<u64>,
    /// Answers and money per whole second from the opening (or from the start).
    by_second: Seconds,
}

impl Generator {
    pub fn new(pop: Population, plan: Plan, claim_key: MacKey) -> Generator {
        let token_expiry = pop.spec().token_expiry;
        let schedule = plan.obey_retry.then(|| Schedule::new(pop.len()));
        let (route, sent_by_node) = if pop.spec().fleet {
            let nodes = pop.spec().node_count.max(1) as usize;
            (
                (0..pop.len()).map(|k| pop.first_node(k)).collect(),
                vec![0; nodes],
            )
        } else {
            (Vec::new(), Vec::new())
        };
        Generator {
            pop,
            plan,
            claim_key,
            token_expiry,
            schedule,
            cursor: 0,
            seq: 1,
            config_version: 0,
            slots: vec![EMPTY; WINDOW],
            tally: Tally::default(),
            rtt: Histogram::default(),
            examples: Vec::new(),
            seconds: Vec::new(),
            last_tick: (0, Tally::default()),
            send_end_ns: None,
            forgiven: 0,
            route,
            version_by_node: vec![0; sent_by_node.len()],
            sent_by_node,
            opening_unix_ns: None,
            by_second: Seconds::default(),
        }
    }

    /// Counts time from when the round opens (unix ms): the live line says "T-5s" during
    /// the countdown, and the per-second report and its charts start from it. Before
    /// [`clock_started`](Self::clock_started).
    pub fn count_from_opening(&mut self, opening_unix_ms: u64) {
        self.opening_unix_ns = Some(opening_unix_ms.saturating_mul(1_000_000));
    }

    /// The I/O loop's clock (the `now_ns` of every call) reads 0 at `unix_ns` on the wall
    /// clock: anchors the per-second report to the opening. Called once, before the first
    /// request; without it the seconds count from the clock's start.
    pub fn clock_started(&mut self, unix_ns: u64) {
        let shift = match self.opening_unix_ns {
            Some(t0) => (i128::from(unix_ns) - i128::from(t0))
                .clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64,
            None => 0,
        };
        self.by_second = Seconds::new(shift);
    }

    pub fn population(&self) -> &Population {
        &self.pop
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Whether sending is over (duration or count reached); remembers when it ended.
    pub fn sending_done(&mut self, now_ns: u64) -> bool {
        if self.send_end_ns.is_some() {
            return true;
        }
        let done = self.plan.duration_ns.is_some_and(|d| now_ns >= d)
            || self.plan.count.is_some_and(|c| self.tally.sent >= c)
            || self.pop.is_empty();
        if done {
            self.send_end_ns = Some(now_ns);
        }
        done
    }

    /// Stops sending now (a signal).
    pub fn stop_sending(&mut self, now_ns: u64) {
        self.send_end_ns.get_or_insert(now_ns);
    }

    /// Whether the run is over: sending done, and every answer in or the drain time gone.
    pub fn finished(&mut self, now_ns: u64) -> bool {
        if !self.sending_done(now_ns) {
            return false;
        }
        let end = self.send_end_ns.unwrap_or(now_ns);
        self.outstanding() == 0 || now_ns >= end + self.plan.drain_ns
    }

    /// Requests sent and not yet answered.
    pub fn outstanding(&self) -> u64 {
        self.tally.sent.saturating_sub(self.tally.responses())
    }

    /// How many requests may go now, at most `max`: the rate's due share, the count's rest.
    ///
    /// A target rate is kept over any millisecond: what the rate allowed while nobody could
    /// send (phones waiting out retry_after_ms, a full TX queue) is written off beyond 1 ms
    /// worth, instead of going out later as a burst far above the rate.
    pub fn budget(&mut self, now_ns: u64, max: usize) -> usize {
        if self.sending_done(now_ns) {
            return 0;
        }
        let mut n = max as u64;
        if let Some(rate) = self.plan.rate {
            let allowed = ((rate * now_ns as f64 / 1e9) as u64).saturating_sub(self.forgiven);
            let backlog_cap = ((rate / 1e3) as u64).max(BACKLOG_MIN);
            let backlog = allowed.saturating_sub(self.tally.sent);
            if backlog > backlog_cap {
                self.forgiven += backlog - backlog_cap;
            }
            n = n.min(backlog.min(backlog_cap));
        }
        if let Some(c) = self.plan.count {
            n = n.min(c.saturating_sub(self.tally.sent));
        }
        n as usize
    }

    /// The next request, registered as in flight; `None` when every client is waiting
    /// (obeying retry_after_ms).
    #[inline]
    pub fn next(&mut self, now_ns: u64) -> Option<Request> {
        let user = match &mut self.schedule {
            Some(s) => {
                let now_ms = (now_ns / 1_000_000) as u32;
                let k = s.next_ready(now_ms, SCAN)?;
                s.hold(k, now_ms.saturating_add(self.plan.answer_timeout_ms));
                k
            }
            None => {
                let k = self.cursor;
                self.cursor += 1;
                if self.cursor == self.pop.len() {
                    self.cursor = 0;
                }
                k
            }
        };
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        let node = match self.route.get(user) {
            Some(&n) => {
                self.sent_by_node[n as usize] += 1;
                n
            }
            None => self.pop.spec().node_index,
        };
        let ipv6 = self.pop.ipv6(user);
        let repr = ShakeRequestRepr {
            shakes: 1,
            user_id: self.pop.id(user),
            seq,
            config_version: self.config_version,
            client_ts: now_ns,
            token_expiry: self.token_expiry,
            token: self.pop.token(user),
        };
        self.slots[seq as usize % WINDOW] = Slot {
            user: user as u32,
            seq,
            config_version: self.config_version,
            node,
            ipv6,
            client_ts: now_ns,
        };
        self.tally.sent += 1;
        self.tally.sent_ipv6 += u64::from(ipv6);
        Some(Request {
            user,
            node,
            ipv6,
            repr,
        })
    }

    /// Requests of a burst that TX refused (queue full), in the order they were built: the
    /// burst's tail, or with two families (each sent on its own socket) the tail of each:
    /// forget those requests and, in flood mode, move the round-robin cursor back to the
    /// first of them, so those users shake on the next pass instead of being skipped.
    ///
    /// The newest of them whose sequence numbers run up to the last one handed out (all of
    /// them, for a burst's tail straight after the burst was built) never left: their numbers
    /// are handed out again. Otherwise a queue that refuses everything for a while (a server
    /// not yet polling) would run the sequence numbers a whole window past requests still in
    /// flight, and their answers would find their slots taken. A number below one that went
    /// out is not reused: its slot stays empty.
    pub fn cancel_tail(&mut self, refused: &[Request]) {
        for r in refused {
            self.cancel(r);
        }
        for r in refused.iter().rev() {
            if r.repr.seq.wrapping_add(1) != self.seq {
                break;
            }
            self.seq = r.repr.seq;
        }
        if let Some(first) = refused.first() {
            if self.schedule.is_none() {
                self.cursor = first.user;
            }
        }
    }

    /// A request that was built but never left (TX queue full): forget it.
    fn cancel(&mut self, r: &Request) {
        let slot = &mut self.slots[r.repr.seq as usize % WINDOW];
        if slot.seq == r.repr.seq && slot.user == r.user as u32 {
            if let Some(n) = self.sent_by_node.get_mut(slot.node as usize) {
                *n -= 1;
            }
            *slot = EMPTY;
            self.tally.sent -= 1;
            self.tally.sent_ipv6 -= u64::from(r.ipv6);
            if let Some(s) = &mut self.schedule {
                s.hold(r.user, 0);
            }
        }
    }

    /// A SHAKE/1 payload received (socket mode, or inside a frame).
    pub fn on_payload(&mut self, payload: &[u8], now_ns: u64) {
        self.on_payload_from(payload, None, now_ns)
    }

    /// [`on_payload`](Self::on_payload) from a known node (a fleet): an answer from another
    /// node than the one its request went to is invalid.
    pub fn on_payload_from(&mut self, payload: &[u8], from: Option<u32>, now_ns: u64) {
        self.on_answer(payload, from, None, now_ns)
    }

    /// A SHAKE/1 payload received from node `from` (if known) over IPv6 or IPv4 (if known):
    /// an answer from another node or over another family than its request went is invalid.
    pub fn on_answer(
        &mut self,
        payload: &[u8],
        from: Option<u32>,
        over_ipv6: Option<bool>,
        now_ns: u64,
    ) {
        if payload.len() != PAYLOAD_LEN || payload[0..2] != MAGIC {
            self.tally.rx_other += 1;
            return;
        }
        let seq = u32::from_be_bytes(payload[16..20].try_into().unwrap_or_default());
        let at = seq as usize % WINDOW;
        let slot = self.slots[at];
        if slot.user == u32::MAX || slot.seq != seq {
            self.tally.unmatched += 1;
            if self.examples.len() < EXAMPLES {
                let user_id = u64::from_be_bytes(payload[8..16].try_into().unwrap_or_default());
                self.examples.push(format!(
                    "user {user_id} seq {seq}: no such request in flight"
                ));
            }
            return;
        }
        let user = slot.user as usize;
        let request = ShakeRequestRepr {
            shakes: 1,
            user_id: self.pop.id(user),
            seq,
            config_version: slot.config_version,
            client_ts: slot.client_ts,
            token_expiry: self.token_expiry,
            token: self.pop.token(user),
        };
        if payload[3] == KIND_SHAKE {
            // A forwarder sent our request back: it must be the very bytes we sent.
            if payload == shake::client::payload(&request) {
                self.slots[at] = EMPTY;
                self.tally.echoed += 1;
                self.rtt.record(now_ns.saturating_sub(slot.client_ts));
                if let Some(s) = &mut self.schedule {
                    s.answered(user, (now_ns / 1_000_000) as u32, 0);
                }
            } else {
                self.tally.unmatched += 1;
            }
            return;
        }
        self.slots[at] = EMPTY;
        let class = self.pop.class(user);
        let node_count = self.pop.spec().node_count;
        let checked = check_answer(&request, payload, &self.claim_key).and_then(|a| {
            if from.is_some_and(|n| n != slot.node) {
                return Err(AnswerError::Rule("an answer from another node than asked"));
            }
            if over_ipv6.is_some_and(|v6| v6 != slot.ipv6) {
                return Err(AnswerError::Rule(
                    "an answer over another IP version than its request",
                ));
            }
            legal(
                class,
                a.user_id,
                node_count,
                slot.node,
                a.outcome,
                a.resource_id,
            )
            .map_err(AnswerError::Rule)
            .map(|()| a)
        });
        match checked {
            Ok(a) => {
                // A phone goes where REDIRECT sends it (legal: the user's owner).
                if a.outcome == Outcome::Redirect {
                    if let Some(r) = self.route.get_mut(user) {
                        if *r != u32::from(a.resource_id) {
                            *r = u32::from(a.resource_id);
                            self.tally.redirects_followed += 1;
                        }
                    }
                }
                self.tally.answered += 1;
                self.tally.answered_ipv6 += u64::from(slot.ipv6);
                self.tally.outcomes[a.outcome as usize] += 1;
                self.tally.cents += u64::from(a.amount_cents);
                self.by_second
                    .answer(now_ns, a.outcome, a.amount_cents, a.round_id);
                self.rtt.record(now_ns.saturating_sub(slot.client_ts));
                // The first answer says which config the run starts on; a higher version
                // later is a change made while the phones shook.
                if a.config_version > self.config_version && self.config_version != 0 {
                    self.by_second
                        .config_changed(now_ns, self.config_version, a.config_version);
                }
                self.config_version = self.config_version.max(a.config_version);
                if let Some(v) = self.version_by_node.get_mut(slot.node as usize) {
                    *v = (*v).max(a.config_version);
                }
                if let Some(s) = &mut self.schedule {
                    // Rounded up: the node measures the wait from its own (truncated) ms,
                    // so a phone counting from a truncated ms of its own could come back up
                    // to 1 ms early and be THROTTLED while obeying.
                    s.answered(user, now_ns.div_ceil(1_000_000) as u32, a.retry_after_ms);
                }
            }
            Err(e) => {
                self.tally.invalid += 1;
                self.tally.invalid_ipv6 += u64::from(slot.ipv6);
                if self.examples.len() < EXAMPLES {
                    let ip = if slot.ipv6 { "IPv6" } else { "IPv4" };
                    self.examples
                        .push(format!("user {} seq {seq} ({ip}): {e}", request.user_id));
                }
            }
        }
    }

    /// A whole frame received on `flow` or, over IPv6, `flow6` (whose requests we sent):
    /// read through the node's [`Datagram`] or [`Datagram6`]; a frame of our flow then has
    /// its checksums checked before its payload, which must answer a request sent over the
    /// same IP version.
    pub fn on_frame(&mut self, frame: &[u8], flow: &Flow, flow6: Option<&Flow6>, now_ns: u64) {
        self.tally.rx_frames += 1;
        if let Ok(d) = Datagram::parse(frame) {
            match on_flow(&d, flow) {
                true => match d.verify_checksums() {
                    Ok(()) => self.on_answer(d.payload(), None, Some(false), now_ns),
                    Err(_) => self.tally.rx_bad_checksum += 1,
                },
                false => self.tally.rx_other += 1,
            }
            return;
        }
        match (flow6, Datagram6::parse(frame)) {
            (Some(flow6), Ok(d)) if on_flow6(&d, flow6) => match d.verify_checksum() {
                Ok(()) => self.on_answer(d.payload(), None, Some(true), now_ns),
                Err(_) => self.tally.rx_bad_checksum += 1,
            },
            _ => self.tally.rx_other += 1,
        }
    }

    /// A line for the terminal about once a second, and a point of the timeline.
    pub fn tick(&mut self, now_ns: u64) -> Option<String> {
        let (then, before) = self.last_tick;
        if now_ns < then + 1_000_000_000 {
            return None;
        }
        let t = self.tally;
        self.last_tick = (now_ns, t);
        let dt = (now_ns - then) as f64 / 1e9;
        self.seconds.push(Second::between(now_ns, &before, &t));
        let back = t.responses() - before.responses();
        let when = match self.opening_unix_ns {
            Some(_) => {
                let s = (self.by_second.from_t0_ns(now_ns) as f64 / 1e9).round() as i64;
                format!("T{s:+}s")
            }
            None => format!("t={:.0}s", now_ns as f64 / 1e9),
        };
        let mut line = format!(
            "gen: {when} sent={} answered={} rate={:.0}/s",
            t.sent,
            t.answered,
            back as f64 / dt
        );
        for o in Outcome::ALL {
            let v = t.outcomes[o as usize];
            if v > 0 {
                line += &format!(" {}={v}", o.name());
            }
        }
        if t.cents > 0 {
            line += &format!(" money={}", yuan(t.cents));
        }
        if t.echoed > 0 {
            line += &format!(" echoed={}", t.echoed);
        }
        line += &format!(
            " invalid={} loss={:.2}% p99={:.0}us",
            t.invalid,
            loss(t.sent, t.responses()) * 100.0,
            self.rtt.quantile(0.99) as f64 / 1e3
        );
        Some(line)
    }

    pub fn latency(&self) -> &Histogram {
        &self.rtt
    }

    pub fn timeline(&self) -> &[Second] {
        &self.seconds
    }

    /// The final report. Its timeline ends with the time since the last whole second, so
    /// the timeline adds up to the tally.
    pub fn report(&self, meta: Meta, elapsed_ns: u64) -> Report {
        let t = self.tally;
        let (then, before) = self.last_tick;
        let mut timeline = self.seconds.clone();
        if t != before {
            timeline.push(Second::between(elapsed_ns.max(then), &before, &t));
        }
        let send_s = self.send_end_ns.unwrap_or(elapsed_ns) as f64 / 1e9;
        let (own, foreign, bad) = self.pop.census();
        let spec = *self.pop.spec();
        Report {
            meta,
            users: spec.users,
            users_own: own,
            users_foreign: foreign,
            users_bad_token: bad,
            node_count: spec.node_count,
            node_index: spec.node_index,
            fleet: spec.fleet,
            sent_by_node: self.sent_by_node.clone(),
            config_version_by_node: self.version_by_node.clone(),
            bad_share: spec.bad_share,
            foreign_share: spec.foreign_share,
            ipv6_share: spec.ipv6_share,
            users_ipv6: self.pop.ipv6_users(),
            families: Families::of(&t),
            obey_retry: self.plan.obey_retry,
            rate_target: self.plan.rate,
            sending_s: send_s,
            elapsed_s: elapsed_ns as f64 / 1e9,
            sent_per_s: t.sent as f64 / send_s.max(1e-9),
            answered_per_s: t.answered as f64 / send_s.max(1e-9),
            responses_per_s: t.responses() as f64 / send_s.max(1e-9),
            lost: t.sent.saturating_sub(t.responses()),
            loss_ratio: loss(t.sent, t.responses()),
            outcomes: Outcome::ALL
                .iter()
                .map(|&o| (o.name().to_owned(), t.outcomes[o as usize]))
                .collect(),
            tally: t,
            latency_ns: self.rtt.summary(),
            latency_buckets_ns: self.rtt.buckets(),
            invalid_examples: self.examples.clone(),
            config_version: self.config_version,
            timeline,
            opening_unix_ms: self.opening_unix_ns.map(|t| t / 1_000_000),
            timeline_shift_s: self.by_second.shift_s(),
            seconds: self.by_second.seconds().to_vec(),
            config_changes: self.by_second.changes().to_vec(),
            round_marks: self.by_second.rounds().to_vec(),
        }
    }
}

/// Cents as an amount of money, to the cent: `¥1234.56`. The activities count in cents of a
/// yuan (fen): the 2015 Spring Festival evening's currency.
pub fn yuan(cents: u64) -> String {
    format!("¥{}.{:02}", cents / 100, cents % 100)
}

/// Share of requests without a response (those still in flight count as lost until they
/// come back).
fn loss(sent: u64, back: u64) -> f64 {
    if sent == 0 {
        0.0
    } else {
        sent.saturating_sub(back) as f64 / sent as f64
    }
}

/// Whether a datagram is an answer on `flow`: to our MAC, from the server to us; or our own
/// request with only its MACs swapped (a forwarder such as testpmd macswap), which the
/// payload check then counts as echoed.
fn on_flow(d: &Datagram, flow: &Flow) -> bool {
    let answer = d.src_ip == flow.dst_ip && d.dst_ip == flow.src_ip;
    let echo = d.src_ip == flow.src_ip && d.dst_ip == flow.dst_ip;
    let server_port = if answer { d.src_port } else { d.dst_port };
    d.dst_mac == flow.src_mac && (answer || echo) && server_port == flow.dst_port
}

/// Requests sent, valid answers and invalid ones over one IP version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FamilyTally {
    pub sent: u64,
    pub answered: u64,
    pub invalid: u64,
}

/// A run's counts by IP version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Families {
    pub ipv4: FamilyTally,
    pub ipv6: FamilyTally,
}

impl Families {
    fn of(t: &Tally) -> Families {
        Families {
            ipv4: FamilyTally {
                sent: t.sent - t.sent_ipv6,
                answered: t.answered - t.answered_ipv6,
                invalid: t.invalid - t.invalid_ipv6,
            },
            ipv6: FamilyTally {
                sent: t.sent_ipv6,
                answered: t.answered_ipv6,
                invalid: t.invalid_ipv6,
            },
        }
    }
}

/// [`on_flow`] over IPv6.
fn on_flow6(d: &Datagram6, flow: &Flow6) -> bool {
    let answer = d.src_ip == flow.dst_ip && d.dst_ip == flow.src_ip;
    let echo = d.src_ip == flow.src_ip && d.dst_ip == flow.dst_ip;
    let server_port = if answer { d.src_port } else { d.dst_port };
    d.dst_mac == flow.src_mac && (answer || echo) && server_port == flow.dst_port
}

/// What the run was: filled in by the command line.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Meta {
    pub mode: String,
    pub target: String,
    pub started_unix_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub meta: Meta,
    pub users: u64,
    pub users_own: u64,
    pub users_foreign: u64,
    pub users_bad_token: u64,
    pub node_count: u32,
    /// The node under test (not a fleet).
    pub node_index: u32,
    /// Phones shook at every node of the fleet, each at its own (or where REDIRECT sent it).
    pub fleet: bool,
    /// A fleet: requests sent to each node, by index.
    pub sent_by_node: Vec<u64>,
    /// A fleet: the highest config_version each node's answers carried, by index.
    pub config_version_by_node: Vec<u32>,
    pub bad_share: f64,
    pub foreign_share: f64,
    /// Share of phones that shook over IPv6, and how many users that is.
    pub ipv6_share: f64,
    pub users_ipv6: u64,
    /// Requests and answers by IP version.
    pub families: Families,
    pub obey_retry: bool,
    pub rate_target: Option<f64>,
    /// Seconds spent sending.
    pub sending_s: f64,
    /// Seconds in all, with the drain.
    pub elapsed_s: f64,
    pub sent_per_s: f64,
    pub answered_per_s: f64,
    /// Valid answers plus echoed requests per second: what a forwarder run is measured by.
    pub responses_per_s: f64,
    pub lost: u64,
    pub loss_ratio: f64,
    pub outcomes: BTreeMap<String, u64>,
    pub tally: Tally,
    pub latency_ns: Summary,
    /// (lowest ns, highest ns, count) of every non-empty histogram bucket.
    pub latency_buckets_ns: Vec<(u64, u64, u64)>,
    pub invalid_examples: Vec<String>,
    /// The highest config_version answers carried.
    pub config_version: u32,
    pub timeline: Vec<Second>,
    /// When the round opened (unix ms), if given: `seconds` and `config_changes` count from
    /// it, else from the start of the run.
    pub opening_unix_ms: Option<u64>,
    /// Seconds to add to `timeline`'s times (from the start of the run) to count as
    /// `seconds` do.
    pub timeline_shift_s: f64,
    /// Valid answers by outcome and money, per whole second.
    pub seconds: Vec<seconds::Second>,
    /// Answers that carried a newer config than any before: a change made during the run.
    pub config_changes: Vec<ConfigChange>,
    /// Rounds opening and closing, as the answers showed.
    pub round_marks: Vec<RoundMark>,
}

impl Report {
    /// The closing summary for the terminal.
    pub fn summary_line(&self) -> String {
        let mut s = format!(
            "gen: done in {:.1}s: sent={} answered={} invalid={} unmatched={} echoed={} lost={} ({:.2}%), {:.0} answers/s",
            self.elapsed_s,
            self.tally.sent,
            self.tally.answered,
            self.tally.invalid,
            self.tally.unmatched,
            self.tally.echoed,
            self.lost,
            self.loss_ratio * 100.0,
            self.responses_per_s
        );
        for (name, v) in &self.outcomes {
            if *v > 0 {
                s += &format!(" {name}={v}");
            }
        }
        if self.tally.cents > 0 {
            s += &format!(" money={}", yuan(self.tally.cents));
        }
        if self.families.ipv6.sent > 0 {
            let f = &self.families;
            s += &format!(
                " ipv4: sent={} answered={} ipv6: sent={} answered={}",
                f.ipv4.sent, f.ipv4.answered, f.ipv6.sent, f.ipv6.answered
            );
        }
        if self.fleet {
            s += &format!(
                " nodes={} redirects_followed={}",
                self.node_count, self.tally.redirects_followed
            );
        }
        let l = &self.latency_ns;
        s += &format!(
            "; rtt p50={:.1}us p99={:.1}us p99.9={:.1}us max={:.1}us",
            l.p50 as f64 / 1e3,
            l.p99 as f64 / 1e3,
            l.p999 as f64 / 1e3,
            l.max as f64 / 1e3
        );
        s
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::population::Spec;
    use shake::wire::shake::{ShakeAnswer, ShakeAnswerRepr};

    const TOKEN: MacKey = MacKey::from_bytes([1; 16]);
    const CLAIM: MacKey = MacKey::from_bytes([2; 16]);

    fn generator(obey: bool) -> Generator {
        let pop = Population::new(
            Spec {
                users: 10,
                user_offset: 0,
                node_count: 1,
                node_index: 0,
                bad_share: 0.0,
                foreign_share: 0.0,
                seed: 1,
                token_expiry: 2_000_000_000,
                fleet: false,
                ipv6_share: 0.0,
            },
            &TOKEN,
        );
        Generator::new(
            pop,
            Plan {
                rate: Some(1000.0),
                duration_ns: None,
                count: Some(100),
                obey_retry: obey,
                answer_timeout_ms: 1000,
                drain_ns: 0,
            },
            CLAIM,
        )
    }

    fn answer(r: &ShakeRequestRepr, outcome: Outcome, retry: u32) -> Vec<u8> {
        let mut a = ShakeAnswerRepr {
            outcome,
            flags: 0,
            resource_id: 0,
            user_id: r.user_id,
            seq: r.seq,
            retry_after_ms: retry,
            client_ts: r.client_ts,
            packet_id: 0,
            amount_cents: 0,
            sponsor_id: 0,
            claim_mac: 0,
            config_version: 0,
            round_id: 1,
        };
        if outcome == Outcome::RedPacket {
            (a.packet_id, a.amount_cents, a.sponsor_id) = (77, 888, 5);
            a.claim_mac = CLAIM.claim(77, r.user_id, 888, 5);
        }
        let mut b = vec![0u8; PAYLOAD_LEN];
        a.emit(&mut ShakeAnswer::new_unchecked(&mut b[..]));
        b
    }

    #[test]
    fn rate_and_count_budget() {
        let mut g = generator(false);
        assert_eq!(g.budget(0, 32), 0);
        assert_eq!(g.budget(10_000_000, 32), 10, "1000/s for 10 ms");
        for _ in 0..10 {
            g.next(10_000_000).unwrap();
        }
        assert_eq!(g.budget(10_000_000, 32), 0);
        assert_eq!(g.budget(1_000_000_000, 32), 32);
        assert_eq!(
            g.budget(10_000_000_000, 1000),
            BACKLOG_MIN as usize,
            "a backlog is capped"
        );
        g.plan.count = Some(40);
        assert_eq!(g.budget(10_000_000_000, 1000), 30, "the count caps it");
    }

    #[test]
    fn answers_are_validated_and_counted() {
        let mut g = generator(false);
        let r1 = g.next(1_000).unwrap();
        let r2 = g.next(2_000).unwrap();
        let r3 = g.next(3_000).unwrap();
        let r4 = g.next(4_000).unwrap();
        g.on_payload(&answer(&r1.repr, Outcome::RedPacket, 5000), 11_000);
        assert_eq!((g.tally.answered, g.tally.outcomes[2]), (1, 1));
        assert_eq!(g.latency().max(), 10_000);
        // The same answer again matches nothing in flight.
        g.on_payload(&answer(&r1.repr, Outcome::RedPacket, 5000), 12_000);
        assert_eq!(g.tally.unmatched, 1);
        // A forged claim MAC.
        let mut bad = answer(&r2.repr, Outcome::RedPacket, 5000);
        bad[55] ^= 1;
        g.on_payload(&bad, 12_000);
        assert_eq!(g.tally.invalid, 1);
        // DENIED for a good token is not legal.
        g.on_payload(&answer(&r3.repr, Outcome::Denied, 0), 12_000);
        assert_eq!(g.tally.invalid, 2);
        // Our own request echoed back (a forwarder).
        g.on_payload(&shake::client::payload(&r4.repr), 12_000);
        assert_eq!(g.tally.echoed, 1);
        assert_eq!(g.outstanding(), 0);
        let rep = g.report(Meta::default(), 1_000_000_000);
        assert_eq!(rep.outcomes["red_packet"], 1);
        // The two invalid answers and the unmatched one, each with what was wrong.
        assert_eq!(rep.invalid_examples.len(), 3);
        assert!(rep.invalid_examples[0].contains("no such request in flight"));
        assert!(serde_json::to_string(&rep)
            .unwrap()
            .contains("\"answered\":1"));
    }

    /// An answer carrying the node's config `version` (CONFIG_STALE as the request's own
    /// version says).
    fn answer_v(r: &ShakeRequestRepr, outcome: Outcome, version: u32) -> Vec<u8> {
        let mut b = answer(r, outcome, 500);
        b[56..60].copy_from_slice(&version.to_be_bytes());
        if outcome == Outcome::Greeting {
            b[44..48].copy_from_slice(&5u32.to_be_bytes()); // its sponsor
        }
        if version > r.config_version {
            b[5] |= shake::wire::shake::FLAG_CONFIG_STALE;
        }
        b
    }

    #[test]
    fn answers_count_by_outcome_and_money_per_second_from_the_opening() {
        const MS: u64 = 1_000_000;
        let mut g = generator(false);
        // The round opens at unix 1 000 000 s; the generator's clock started 2.5 s before.
        g.count_from_opening(1_000_000_000);
        g.clock_started(1_000_000_000 * MS - 2_500 * MS);
        let r: Vec<Request> = (0..6).map(|i| g.next(i).unwrap()).collect();
        // The countdown: CLOSED at -2.4 s and -0.5 s, on config 7.
        g.on_payload(&answer_v(&r[0].repr, Outcome::Closed, 7), 100 * MS);
        g.on_payload(&answer_v(&r[1].repr, Outcome::Closed, 7), 2_000 * MS);
        assert_eq!(g.tick(1_200 * MS).unwrap().split(' ').nth(1), Some("T-1s"));
        // The opening: a red packet at +0.1 s; then config 9 arrives at +1.5 s.
        g.on_payload(&answer_v(&r[2].repr, Outcome::RedPacket, 7), 2_600 * MS);
        g.on_payload(&answer_v(&r[3].repr, Outcome::Nothing, 7), 3_000 * MS);
        g.on_payload(&answer_v(&r[4].repr, Outcome::Greeting, 9), 4_000 * MS);
        // An answer of a request sent on config 9 is not another change.
        let again = g.next(4_100 * MS).unwrap();
        g.on_payload(&answer_v(&again.repr, Outcome::RedPacket, 9), 4_200 * MS);
        assert_eq!(g.tick(4_300 * MS).unwrap().split(' ').nth(1), Some("T+2s"));
        let rep = g.report(Meta::default(), 5_000 * MS);
        assert_eq!(rep.opening_unix_ms, Some(1_000_000_000));
        let count = |t: i64, o: Outcome| {
            rep.seconds
                .iter()
                .find(|s| s.t_s == t)
                .map_or(0, |s| s.count(o))
        };
        assert_eq!(
            rep.seconds.iter().map(|s| s.t_s).collect::<Vec<_>>(),
            vec![-3, -2, -1, 0, 1]
        );
        assert_eq!(
            (count(-3, Outcome::Closed), count(-1, Outcome::Closed)),
            (1, 1)
        );
        assert_eq!(count(0, Outcome::RedPacket), 1);
        assert_eq!(count(0, Outcome::Nothing), 1);
        assert_eq!(count(1, Outcome::Greeting), 1);
        assert_eq!(count(1, Outcome::RedPacket), 1);
        // Every valid answer is in exactly one second, and so is every cent.
        let by_second: u64 = rep.seconds.iter().map(|s| s.answered()).sum();
        assert_eq!(by_second, rep.tally.answered);
        assert_eq!(rep.seconds.iter().map(|s| s.cents).sum::<u64>(), 2 * 888);
        assert_eq!(rep.tally.cents, 2 * 888);
        assert_eq!(rep.config_changes.len(), 1, "{:?}", rep.config_changes);
        let c = rep.config_changes[0];
        assert_eq!((c.from_version, c.to_version), (7, 9));
        assert!((c.t_s - 1.5).abs() < 1e-9, "{c:?}");
        assert!((rep.timeline_shift_s + 2.5).abs() < 1e-9);
        // The round opened with its first answer that could win; it has not closed.
        assert_eq!(rep.round_marks.len(), 1, "{:?}", rep.round_marks);
        let m = rep.round_marks[0];
        assert!(
            m.opens && m.round_id == 1 && (m.t_s - 0.1).abs() < 1e-9,
            "{m:?}"
        );
        assert!(
            rep.summary_line().contains(" money=¥17.76"),
            "{}",
            rep.summary_line()
        );
        let json = serde_json::to_value(&rep).unwrap();
        assert_eq!(json["seconds"][3]["t_s"], 0);
        assert_eq!(json["config_changes"][0]["to_version"], 9);
    }

    #[test]
    fn frames_are_checked_before_their_payload() {
        let flow = Flow {
            src_mac: [2, 0, 0, 0, 0, 2],
            dst_mac: [2, 0, 0, 0, 0, 1],
            vlan: None,
            src_ip: [10, 0, 0, 2],
            dst_ip: [10, 0, 0, 1],
            src_port: 40_000,
            dst_port: 7000,
        };
        // The server's side of the same flow.
        let back = Flow {
            src_mac: flow.dst_mac,
            dst_mac: flow.src_mac,
            src_ip: flow.dst_ip,
            dst_ip: flow.src_ip,
            src_port: flow.dst_port,
            dst_port: flow.src_port,
            ..flow
        };
        let mut g = generator(false);
        let frame = |r: &Request| {
            let mut f = vec![0u8; back.frame_len()];
            back.emit(&mut f, &answer(&r.repr, Outcome::Nothing, 5000), 1);
            f
        };
        let (l3, l4) = (14, 14 + 20);
        let r = g.next(1_000).unwrap();
        let mut f = frame(&r);
        // A flipped bit in the IPv4 header, then in the payload: checksum drops, not answers.
        f[l3 + 8] ^= 1;
        g.on_frame(&f, &flow, None, 2_000);
        f[l3 + 8] ^= 1;
        let last = f.len() - 1;
        f[last] ^= 0x10;
        g.on_frame(&f, &flow, None, 2_000);
        assert_eq!(g.tally.rx_bad_checksum, 2);
        assert_eq!(g.tally.answered, 0);
        // A UDP checksum of zero means "none" (RFC 768): the payload is then checked alone.
        f[last] ^= 0x10;
        f[l4 + 6..l4 + 8].copy_from_slice(&[0, 0]);
        g.on_frame(&f, &flow, None, 3_000);
        assert_eq!((g.tally.answered, g.tally.rx_frames), (1, 3));
        // Another server port, or a frame for another MAC: not ours at all.
        let r = g.next(4_000).unwrap();
        let mut f = frame(&r);
        f[l4..l4 + 2].copy_from_slice(&7001u16.to_be_bytes());
        g.on_frame(&f, &flow, None, 5_000);
        let mut f = frame(&r);
        f[0] ^= 0x80;
        g.on_frame(&f, &flow, None, 5_000);
        assert_eq!(g.tally.rx_other, 2);
        g.on_frame(&frame(&r), &flow, None, 6_000);
        assert_eq!(g.tally.answered, 2);
    }

    #[test]
    fn ipv6_frames_are_checked_and_must_answer_ipv6_requests() {
        let flow = Flow {
            src_mac: [2, 0, 0, 0, 0, 2],
            dst_mac: [2, 0, 0, 0, 0, 1],
            vlan: None,
            src_ip: [10, 0, 0, 2],
            dst_ip: [10, 0, 0, 1],
            src_port: 40_000,
            dst_port: 7000,
        };
        let ip = |last| {
            let mut a = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            a[15] = last;
            a
        };
        let flow6 = Flow6 {
            src_mac: flow.src_mac,
            dst_mac: flow.dst_mac,
            vlan: Some(9),
            src_ip: ip(2),
            dst_ip: ip(1),
            src_port: 40_000,
            dst_port: 7000,
        };
        let back = Flow6 {
            src_mac: flow6.dst_mac,
            dst_mac: flow6.src_mac,
            src_ip: flow6.dst_ip,
            dst_ip: flow6.src_ip,
            src_port: flow6.dst_port,
            dst_port: flow6.src_port,
            ..flow6
        };
        let frame = |r: &Request| {
            let mut f = vec![0u8; back.frame_len()];
            back.emit(&mut f, &answer(&r.repr, Outcome::Nothing, 5000));
            f
        };
        let mut g = mixed();
        let reqs: Vec<Request> = (0..40).map(|i| g.next(i).unwrap()).collect();
        let r6: Vec<&Request> = reqs.iter().filter(|r| r.ipv6).collect();
        let r4 = reqs.iter().find(|r| !r.ipv6).unwrap();
        // A flipped payload bit: a checksum drop, not an answer.
        let mut f = frame(r6[0]);
        *f.last_mut().unwrap() ^= 0x10;
        g.on_frame(&f, &flow, Some(&flow6), 100);
        assert_eq!((g.tally.rx_bad_checksum, g.tally.answered), (1, 0));
        // Without IPv6 phones an IPv6 frame is not ours; from another address neither.
        g.on_frame(&frame(r6[0]), &flow, None, 100);
        let other = Flow6 {
            src_ip: ip(3),
            ..back
        };
        let mut f = vec![0u8; other.frame_len()];
        other.emit(&mut f, &answer(&r6[0].repr, Outcome::Nothing, 5000));
        g.on_frame(&f, &flow, Some(&flow6), 100);
        assert_eq!(g.tally.rx_other, 2);
        // The answer over IPv6 to an IPv6 request: valid; to an IPv4 one: invalid.
        g.on_frame(&frame(r6[0]), &flow, Some(&flow6), 200);
        g.on_frame(&frame(r4), &flow, Some(&flow6), 200);
        assert_eq!((g.tally.answered, g.tally.answered_ipv6), (1, 1));
        assert_eq!((g.tally.invalid, g.tally.invalid_ipv6), (1, 0));
        assert_eq!(g.tally.rx_frames, 5);
    }

    #[test]
    fn obeying_clients_wait() {
        let mut g = generator(true);
        let mut firsts = Vec::new();
        for _ in 0..10 {
            firsts.push(g.next(0).unwrap());
        }
        assert!(g.next(0).is_none(), "all ten wait for their answers");
        g.on_payload(&answer(&firsts[3].repr, Outcome::Nothing, 5000), 1_000_000);
        assert!(g.next(1_000_000).is_none());
        // After the answer timeout everyone else shakes again; user 3 waits 5 s.
        let again: Vec<usize> = (0..9)
            .filter_map(|_| g.next(1_000_000_000))
            .map(|r| r.user)
            .collect();
        assert_eq!(again.len(), 9);
        assert!(!again.contains(&3));
        assert!(g.next(1_000_000_000).is_none());
        let later: Vec<usize> = (0..10)
            .filter_map(|_| g.next(6_000_000_000))
            .map(|r| r.user)
            .collect();
        assert!(later.contains(&3), "{later:?}");
    }

    #[test]
    fn a_fleet_phone_follows_its_redirect() {
        // Three nodes; every phone first shakes at a node that is not its own.
        let pop = Population::new(
            Spec {
                users: 6,
                user_offset: 0,
                node_count: 3,
                node_index: 0,
                bad_share: 0.0,
                foreign_share: 1.0,
                seed: 1,
                token_expiry: 2_000_000_000,
                fleet: true,
                ipv6_share: 0.0,
            },
            &TOKEN,
        );
        let mut g = Generator::new(pop, generator(false).plan.clone(), CLAIM);
        let first: Vec<Request> = (0..6).map(|i| g.next(i).unwrap()).collect();
        let redirect = |r: &Request, to: u64| {
            let mut a = answer(&r.repr, Outcome::Redirect, 5000);
            a[6..8].copy_from_slice(&(to as u16).to_be_bytes());
            a
        };
        for r in &first {
            let owner = r.repr.user_id % 3;
            assert_ne!(u64::from(r.node), owner, "first at another node");
        }
        // A REDIRECT from another node than asked, and one to a node that is not the owner:
        // both invalid, and neither moves the phone.
        let (r0, r1) = (&first[0], &first[1]);
        g.on_payload_from(
            &redirect(r0, r0.repr.user_id % 3),
            Some((r0.node + 1) % 3),
            10,
        );
        g.on_payload_from(&redirect(r1, (r1.repr.user_id + 1) % 3), Some(r1.node), 10);
        assert_eq!((g.tally.invalid, g.tally.redirects_followed), (2, 0));
        // The right REDIRECTs from the right nodes: followed.
        for r in &first[2..] {
            g.on_payload_from(&redirect(r, r.repr.user_id % 3), Some(r.node), 20);
        }
        assert_eq!((g.tally.answered, g.tally.redirects_followed), (4, 4));
        let again: Vec<Request> = (0..6).map(|i| g.next(100 + i).unwrap()).collect();
        for r in &again {
            let owner = u32::try_from(r.repr.user_id % 3).unwrap();
            assert_eq!(r.node == owner, r.user >= 2, "user {}", r.user);
        }
        // At its owner a phone gets a real answer; a REDIRECT there would be a wrong node.
        let r = &again[2];
        g.on_payload_from(&answer(&r.repr, Outcome::Nothing, 5000), Some(r.node), 200);
        g.on_payload_from(&redirect(&again[3], 0), Some(again[3].node), 200);
        assert_eq!((g.tally.answered, g.tally.invalid), (5, 3));
        let rep = g.report(Meta::default(), 1_000_000_000);
        assert_eq!(rep.sent_by_node.iter().sum::<u64>(), 12);
        assert!(rep.summary_line().contains("redirects_followed=4"));
    }

    /// A generator of 40 users, about half of them over IPv6.
    fn mixed() -> Generator {
        let g = generator(false);
        let pop = Population::new(
            Spec {
                users: 40,
                ipv6_share: 0.5,
                ..*g.population().spec()
            },
            &TOKEN,
        );
        Generator::new(pop, g.plan.clone(), CLAIM)
    }

    #[test]
    fn answers_are_counted_by_family_and_must_come_back_over_their_own() {
        let mut g = mixed();
        let reqs: Vec<Request> = (0..40).map(|i| g.next(i).unwrap()).collect();
        let v6 = reqs.iter().filter(|r| r.ipv6).count() as u64;
        assert!((10..30).contains(&v6), "{v6} of 40 over IPv6");
        assert_eq!(g.tally.sent_ipv6, v6);
        assert!(reqs.iter().all(|r| r.ipv6 == g.population().ipv6(r.user)));
        // Every answer over its own family but the first two, which come over the other.
        for (i, r) in reqs.iter().enumerate() {
            let over = if i < 2 { !r.ipv6 } else { r.ipv6 };
            g.on_answer(
                &answer(&r.repr, Outcome::Nothing, 5000),
                None,
                Some(over),
                100,
            );
        }
        assert_eq!((g.tally.answered, g.tally.invalid), (38, 2));
        let wrong6 = reqs[..2].iter().filter(|r| r.ipv6).count() as u64;
        let rep = g.report(Meta::default(), 1_000_000_000);
        let f = rep.families;
        assert_eq!((f.ipv6.sent, f.ipv4.sent), (v6, 40 - v6));
        assert_eq!(f.ipv6.invalid, wrong6);
        assert_eq!(f.ipv6.answered, v6 - wrong6);
        assert_eq!(f.ipv4.answered + f.ipv6.answered, 38);
        assert!(
            rep.invalid_examples[0].contains("another IP version"),
            "{rep:?}"
        );
        assert!(rep.summary_line().contains(&format!("ipv6: sent={v6}")));
        let json = serde_json::to_value(&rep).unwrap();
        assert_eq!(json["families"]["ipv6"]["sent"], v6);
        assert_eq!(json["users_ipv6"], rep.users_ipv6);
    }

    #[test]
    fn refused_requests_of_two_families_are_forgotten_and_no_number_in_flight_is_reused() {
        let mut g = mixed();
        g.plan.count = None;
        let burst: Vec<Request> = (0..8).map(|i| g.next(i).unwrap()).collect();
        // Sent over two sockets: requests 0, 1, 3, 4 and 6 went, 2, 5 and 7 were refused.
        let refused: Vec<Request> = [2, 5, 7].iter().map(|&k| burst[k]).collect();
        let sent_v6 = g.tally.sent_ipv6 - refused.iter().filter(|r| r.ipv6).count() as u64;
        g.cancel_tail(&refused);
        assert_eq!((g.tally.sent, g.tally.sent_ipv6), (5, sent_v6));
        // Only the newest refused number is handed out again: 6 went, so 5 stays unused.
        let next = g.next(10).unwrap();
        assert_eq!(next.repr.seq, burst[7].repr.seq);
        assert_eq!(
            next.user, burst[2].user,
            "the first refused user shakes next"
        );
        // The requests that went are still in flight and are answered.
        for k in [0, 1, 3, 4, 6] {
            let r = &burst[k];
            g.on_answer(
                &answer(&r.repr, Outcome::Nothing, 5000),
                None,
                Some(r.ipv6),
                20,
            );
        }
        assert_eq!((g.tally.answered, g.tally.unmatched), (5, 0));
    }

    #[test]
    fn refused_requests_are_resent_not_skipped() {
        let mut g = generator(false);
        let burst: Vec<Request> = (0..6).map(|i| g.next(i).unwrap()).collect();
        assert_eq!(g.tally.sent, 6);
        // TX took the first two; the other four users must come next.
        g.cancel_tail(&burst[2..]);
        assert_eq!(g.tally.sent, 2);
        let next: Vec<usize> = (0..4).map(|i| g.next(10 + i).unwrap().user).collect();
        assert_eq!(next, burst[2..].iter().map(|r| r.user).collect::<Vec<_>>());
    }

    #[test]
    fn a_paced_generator_does_not_burst_after_a_pause() {
        let mut g = generator(false);
        g.plan.rate = Some(100_000.0);
        g.plan.count = None;
        // Nothing sent for 5 s (every phone waiting): 500 000 were allowed, at most 1 ms
        // worth (100) may go now.
        assert_eq!(g.budget(5_000_000_000, 1_000_000), 100);
        for _ in 0..100 {
            g.next(5_000_000_000).unwrap();
        }
        assert_eq!(g.budget(5_000_000_000, 1_000_000), 0);
        // 10 ms later the rate allows 1 000 more, but a backlog is capped at 1 ms worth.
        assert_eq!(g.budget(5_010_000_000, 1_000_000), 100);
        for _ in 0..50 {
            g.next(5_010_000_000).unwrap();
        }
        assert_eq!(g.budget(5_010_000_000, 1_000_000), 50);
        // A low rate may still catch up a burst's worth.
        let mut g = generator(false);
        g.plan.rate = Some(10.0);
        assert_eq!(g.budget(60_000_000_000, 1_000), BACKLOG_MIN as usize);
    }

    #[test]
    fn a_queue_refusing_for_long_does_not_strand_requests_in_flight() {
        let mut g = generator(false);
        g.plan.count = None;
        let sent: Vec<Request> = (0..4).map(|_| g.next(0).unwrap()).collect();
        // More refused bursts than the window holds, as when a server starts polling late.
        for _ in 0..(WINDOW / 8 + 10) {
            let burst: Vec<Request> = (0..8).map(|_| g.next(0).unwrap()).collect();
            g.cancel_tail(&burst);
        }
        assert_eq!(g.tally.sent, 4);
        for r in &sent {
            g.on_payload(&answer(&r.repr, Outcome::Nothing, 5000), 1_000);
        }
        assert_eq!((g.tally.answered, g.tally.unmatched), (4, 0));
        // Numbers that never left are reused; the next request follows the last one sent.
        assert_eq!(g.next(2_000).unwrap().repr.seq, sent[3].repr.seq + 1);
    }
}
