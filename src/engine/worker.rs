//! One worker: its tables, its seeds, its journal, and the decision for one shake.
//!
//! The I/O layer calls [`Worker::begin_burst`] once per burst with the time, then
//! [`Worker::shake`] for each SHAKE/1 payload, which it rewrites in place into the answer.
//! Time is an argument, never read here, so tests drive the clock and the datapath makes one
//! clock read per burst rather than per packet.
//!
//! Order of checks, cheapest refusal first: shedding (no hashing at all), token (one SipHash),
//! owner node, user throttle (one table probe), round, blacklist, then the draw. Only a drawn
//! win touches the seeds, the winner table and the journal. The frame layer computes a
//! burst's token MACs together in vector lanes before deciding it
//! ([`TokenBatch`](crate::mac::TokenBatch)) and hands each request its own: the check is the
//! same, its SipHash is just done earlier, and never for a burst the worker sheds.

use std::sync::Arc;

use crate::counters::{Counters, DropReason, Dropped, Event};
use crate::engine::config::{Live, RoundAt};
use crate::engine::users::{Admit, Home, TableClock, UserTable};
use crate::engine::winners::{WinCheck, WinnerTable};
use crate::journal::{Claim, ClaimSink};
use crate::mac::{Lanes, TokenMac};
use crate::rng::Rng;
use crate::seed::SeedSource;
use crate::wire::shake::{self, Outcome, ShakeAnswerRepr, ShakeRequest};

/// Pacing within the current round: no more than the share due by elapsed time.
#[derive(Debug, Clone, Copy, Default)]
struct Pacing {
    round_id: u32,
    /// When this worker entered the round (its start, or later after a restart).
    from_ms: u64,
    to_ms: u64,
    /// Packets available when the worker entered the round (carry-over included).
    pool: u64,
    issued: u64,
}

impl Pacing {
    #[inline]
    fn due(&self, now_ms: u64) -> u64 {
        let span = self.to_ms.saturating_sub(self.from_ms).max(1);
        let t = now_ms.saturating_sub(self.from_ms).min(span);
        ((self.pool as u128 * t as u128) / span as u128) as u64
    }
}

/// Per-tick load accounting for shedding and the adaptive retry_after.
#[derive(Debug, Clone, Copy, Default)]
struct Load {
    tick_start_ms: u64,
    /// Full decisions left in this tick before shedding.
    budget: u32,
    /// `budget` when the tick began: the decisions made in it are the difference (counting
    /// them too was one more store per request).
    tick_budget: u32,
    /// retry_after_ms currently told to clients.
    interval_ms: u32,
}

/// Length of a load tick.
pub const TICK_MS: u64 = 100;

/// The state a worker owns. Generic over its seed source and journal so the per-packet calls
/// are static.
pub struct Worker<S: SeedSource, J: ClaimSink> {
    live: Arc<Live>,
    users: UserTable,
    winners: WinnerTable,
    rng: Rng,
    seeds: S,
    journal: J,
    counters: Arc<Counters>,
    now_ms: u64,
    round: RoundAt,
    pacing: Pacing,
    load: Load,
    /// Per-burst values of `now_ms` and the load interval, for the per-shake checks.
    clock: BurstClock,
    /// The active round's id, 0 between rounds: what every answer says (SPEC section 2;
    /// CLOSED says the next round's instead).
    active_round_id: u32,
    /// The vector unit the frame layer computes a burst's token MACs in, if any.
    lanes: Lanes,
}

/// What the checks of a shake need of the time, derived once per burst.
#[derive(Debug, Clone, Copy, Default)]
struct BurstClock {
    /// A token is expired when its expiry (unix seconds) is below this: `expiry * 1000 <
    /// now_ms` exactly when `expiry < ceil(now_ms / 1000)`.
    expired_below_s: u64,
    /// Now and the next allowed shake on the user table's clock.
    table: TableClock,
}

impl<S: SeedSource, J: ClaimSink> Worker<S, J> {
    /// `users` is the planned user count (the table never grows); `winners` comes from
    /// recovery (or empty); `seed` seeds the draw generator.
    pub fn new(
        live: Arc<Live>,
        users: UserTable,
        winners: WinnerTable,
        seeds: S,
        journal: J,
        seed: u64,
    ) -> Self {
        // The money table is sized here, once, for the activity's sponsors and rounds.
        let sponsors: Vec<u32> = live.sponsors.iter().map(|s| s.id).collect();
        let rounds: Vec<u32> = live.rounds.iter().map(|r| r.id).collect();
        let counters = Arc::new(Counters::with_issued(&sponsors, &rounds));
        let mut w = Worker {
            live,
            users,
            winners,
            rng: Rng::new(seed),
            seeds,
            journal,
            counters,
            now_ms: 0,
            round: RoundAt::Over,
            pacing: Pacing::default(),
            load: Load::default(),
            clock: BurstClock::default(),
            active_round_id: 0,
            lanes: Lanes::detect(),
        };
        w.load.interval_ms = w.live.throttle.floor_ms;
        w.set_clock();
        w
    }

    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    pub fn live(&self) -> &Arc<Live> {
        &self.live
    }

    pub fn journal(&self) -> &J {
        &self.journal
    }

    /// Takes the worker apart at a clean stop, so the seeds and journal can be closed.
    pub fn into_parts(self) -> (S, J, WinnerTable) {
        (self.seeds, self.journal, self.winners)
    }

    /// Takes a new config snapshot (between bursts).
    pub fn reload(&mut self, live: Arc<Live>) {
        self.live = live;
        // Pacing restarts if the round's timing changed; same round id keeps its count.
        let now = self.now_ms;
        self.now_ms = 0;
        self.begin_burst(now);
    }

    /// Called once per burst: advances the clock, the round and the load tick.
    pub fn begin_burst(&mut self, now_ms: u64) {
        if now_ms != self.now_ms {
            self.now_ms = now_ms;
            self.round = self.live.round_at(now_ms);
            if let RoundAt::Active(i) = self.round {
                let r = &self.live.rounds[i];
                // Entering a round, or its end moved on reload: plan what is left over the
                // rest of it. After a restart mid-round this spreads the remaining packets
                // over the remaining time, so the money still lasts the whole round.
                if self.pacing.round_id != r.id || self.pacing.to_ms != r.end_ms {
                    self.pacing = Pacing {
                        round_id: r.id,
                        from_ms: now_ms.max(r.start_ms),
                        to_ms: r.end_ms,
                        pool: self.seeds.available(r.seed_round),
                        issued: 0,
                    };
                }
            }
        }
        if now_ms >= self.load.tick_start_ms + TICK_MS || now_ms < self.load.tick_start_ms {
            self.new_tick(now_ms);
        }
        self.set_clock();
    }

    /// Derives the burst clock from `now_ms`, the round and the load interval; after any of
    /// them changes.
    ///
    /// The throttle stamp a shake leaves never outlasts the retry_after_ms its answer gives
    /// (SPEC section 2, retry rule): outside a round the answer is CLOSED with the time to the
    /// next start (capped), so the stamp is cut to that. Otherwise a phone told "1.6 s to the
    /// start" would come back on time and be THROTTLED for the rest of the floor: at a
    /// broadcast's countdown, the whole audience at the start.
    fn set_clock(&mut self) {
        let live = &*self.live;
        let cap = live.throttle.closed_cap_ms;
        let stamp_ms = match self.round {
            RoundAt::Active(_) => self.load.interval_ms,
            RoundAt::Before(i) => {
                let wait = live.rounds[i].start_ms.saturating_sub(self.now_ms);
                self.load.interval_ms.min(wait.min(cap as u64) as u32)
            }
            RoundAt::Over => self.load.interval_ms.min(cap),
        };
        self.active_round_id = match self.round {
            RoundAt::Active(i) => live.rounds[i].id,
            _ => 0,
        };
        self.clock = BurstClock {
            expired_below_s: self.now_ms.div_ceil(1000),
            table: self.users.clock(self.now_ms, stamp_ms),
        };
    }

    fn new_tick(&mut self, now_ms: u64) {
        let t = self.live.throttle;
        let per_tick = (t.worker_capacity_rps as u64 * TICK_MS / 1000) as u32;
        let span = t.ceiling_ms.saturating_sub(t.floor_ms) as u64;
        // retry_after rises linearly with the last tick's utilisation: clients slow down
        // before the worker has to shed.
        self.load.interval_ms = if per_tick == 0 {
            t.floor_ms
        } else {
            let decided = self.load.tick_budget - self.load.budget;
            let used = u64::from(decided).min(per_tick as u64);
            t.floor_ms + (span * used / per_tick as u64) as u32
        };
        self.load.budget = if per_tick == 0 { u32::MAX } else { per_tick };
        self.load.tick_budget = self.load.budget;
        self.load.tick_start_ms = now_ms;
    }

    /// The vector unit for a burst's token MACs ([`crate::mac::TokenBatch`]).
    pub fn lanes(&self) -> Lanes {
        self.lanes
    }

    /// Checks tokens one at a time from now on, as on a CPU without AVX2 (tests compare the
    /// two ways).
    pub fn without_lanes(mut self) -> Self {
        self.lanes = Lanes::scalar();
        self
    }

    /// Whether the next `requests` shakes are all fully decided, none shed: then computing
    /// their token MACs ahead, together, wastes none. A shedding worker hashes nothing.
    #[inline]
    pub fn decides_all(&self, requests: usize) -> bool {
        self.load.budget as usize >= requests
    }

    /// Hints that a shake of `user_id` is about to be decided: touches its table bucket, and
    /// returns it for [`prefetch_home`](Self::prefetch_home).
    #[inline]
    pub fn prefetch_user(&self, user_id: u64) -> Home {
        self.users.touch(user_id)
    }

    /// Touches a bucket [`prefetch_user`](Self::prefetch_user) returned again, without
    /// hashing the user id: only a hint (see [`UserTable::touch_home`]).
    #[inline]
    pub fn prefetch_home(&self, home: Home) {
        self.users.touch_home(home);
    }

    /// Decides one SHAKE/1 request and rewrites `payload` into its answer, or says why it is
    /// dropped. Counts either way: a [`Dropped`] is already counted.
    #[inline]
    pub fn shake(&mut self, payload: &mut [u8]) -> Result<Outcome, Dropped> {
        match <&mut [u8; shake::PAYLOAD_LEN]>::try_from(payload) {
            Ok(p) => self.shake_payload(p),
            Err(_) => Err(self.counters.count_drop(DropReason::PayloadLength)),
        }
    }

    /// [`shake`](Self::shake) for a payload of the right length.
    #[inline]
    pub fn shake_payload(
        &mut self,
        payload: &mut [u8; shake::PAYLOAD_LEN],
    ) -> Result<Outcome, Dropped> {
        self.shake_payload_with(payload, None)
    }

    /// [`shake_payload`](Self::shake_payload) with the request's token MAC computed ahead
    /// (in a burst's batch), if it was: used only if it is for this request's user id and
    /// expiry ([`TokenMac::mac_for`]).
    #[inline]
    pub fn shake_payload_with(
        &mut self,
        payload: &mut [u8; shake::PAYLOAD_LEN],
        mac: Option<&TokenMac>,
    ) -> Result<Outcome, Dropped> {
        // Magic, version and kind are the payload's first word: a request that has them
        // right and at least one shake passes on two compares; any other is refused out of
        // line, under the first check it fails.
        const HEAD: u32 = u32::from_ne_bytes([
            shake::MAGIC[0],
            shake::MAGIC[1],
            shake::VERSION,
            shake::KIND_SHAKE,
        ]);
        const _: () = assert!(
            shake::req::MAGIC.start == 0 && shake::req::VERSION == 2 && shake::req::KIND == 3
        );
        let head = u32::from_ne_bytes([payload[0], payload[1], payload[2], payload[3]]);
        let shakes = &payload[shake::req::SHAKES];
        if head != HEAD || (shakes[0] | shakes[1]) == 0 {
            return Err(self.refuse_header(payload));
        }
        let req = ShakeRequest::new_unchecked(&*payload);
        let user_id = req.user_id();
        let expiry = req.token_expiry();
        let token = req.token();
        let mut a = ShakeAnswerRepr {
            outcome: Outcome::Nothing,
            flags: 0,
            resource_id: 0,
            user_id,
            seq: req.seq(),
            retry_after_ms: self.load.interval_ms,
            client_ts: req.client_ts(),
            packet_id: 0,
            amount_cents: 0,
            sponsor_id: 0,
            claim_mac: 0,
            // Set after the decision, like the stale flag: read before it, the version held a
            // register through the whole decision (2 instructions a request).
            config_version: 0,
            round_id: self.active_round_id,
        };
        a.outcome = self.decide(&mut a, expiry, token, mac);
        a.config_version = self.live.config_version;
        // Checked after the decision, which needs every register the token's MAC can get:
        // the request's config version is read again here (nothing has written it yet).
        if a.config_version > req.config_version() {
            a.flags |= shake::FLAG_CONFIG_STALE;
            self.counters.event(Event::ConfigStale);
        }
        shake::write_answer_over_request(payload, &a);
        self.counters.outcome(a.outcome);
        Ok(a.outcome)
    }

    /// The drop for a request whose header [`shake_payload`](Self::shake_payload) refused:
    /// magic, version, kind, then the number of shakes, in that order.
    #[cold]
    #[inline(never)]
    fn refuse_header(&self, payload: &[u8; shake::PAYLOAD_LEN]) -> Dropped {
        let req = ShakeRequest::new_unchecked(&payload[..]);
        let reason = if req.magic() != shake::MAGIC {
            DropReason::Magic
        } else if req.version() != shake::VERSION {
            DropReason::Version
        } else if req.kind() != shake::KIND_SHAKE {
            DropReason::Kind
        } else {
            debug_assert_eq!(req.shakes(), 0);
            DropReason::ZeroShakes
        };
        self.counters.count_drop(reason)
    }

    #[inline]
    fn decide(
        &mut self,
        a: &mut ShakeAnswerRepr,
        expiry: u32,
        token: u64,
        mac: Option<&TokenMac>,
    ) -> Outcome {
        let live = &*self.live;
        let user_id = a.user_id;
        if self.load.budget == 0 {
            self.counters.event(Event::Shed);
            a.retry_after_ms = live.throttle.ceiling_ms;
            return Outcome::Throttled;
        }
        self.load.budget -= 1;

        // The MAC from the burst's batch if it is this request's, else computed here.
        if u64::from(expiry) < self.clock.expired_below_s
            || mac
                .and_then(|m| m.mac_for(user_id, expiry))
                .unwrap_or_else(|| live.identity.token_key.token(user_id, expiry))
                != token
        {
            return Outcome::Denied;
        }
        let owner = live.owner_node(user_id);
        if owner != live.identity.node_index {
            a.resource_id = owner as u16;
            return Outcome::Redirect;
        }
        match self.users.admit_at(user_id, self.clock.table) {
            Admit::Ok => {}
            Admit::Throttled(left) => {
                a.retry_after_ms = left;
                return Outcome::Throttled;
            }
            Admit::Full => {
                self.counters.event(Event::UserTableFull);
                a.retry_after_ms = live.throttle.ceiling_ms;
                return Outcome::Throttled;
            }
        }
        let round = match self.round {
            RoundAt::Active(i) => &live.rounds[i],
            RoundAt::Before(i) => {
                let next = &live.rounds[i];
                a.round_id = next.id;
                let wait = next.start_ms.saturating_sub(self.now_ms);
                a.retry_after_ms = wait.min(live.throttle.closed_cap_ms as u64) as u32;
                return Outcome::Closed;
            }
            RoundAt::Over => {
                a.retry_after_ms = live.throttle.closed_cap_ms;
                return Outcome::Closed;
            }
        };
        if !live.blacklist.is_empty() && live.blacklist.contains(&user_id) {
            self.counters.event(Event::Blacklisted);
            return Outcome::Nothing;
        }
        let (seed_round, round_id, win, greet) =
            (round.seed_round, round.id, round.win, round.greet);
        let draw = self.rng.next_u64();
        if draw < win {
            if let Some(p) = self.try_issue(user_id, seed_round, round_id) {
                a.packet_id = p.packet_id;
                a.amount_cents = p.amount_cents;
                a.sponsor_id = p.sponsor_id;
                a.resource_id = p.resource_id;
                a.claim_mac = p.claim_mac;
                return Outcome::RedPacket;
            }
        }
        let live = &*self.live;
        if draw < greet && !live.greeters.is_empty() {
            let s = &live.sponsors
                [live.greeters[self.rng.below(live.greeters.len() as u64) as usize] as usize];
            a.sponsor_id = s.id;
            a.resource_id =
                s.greeting_resources[self.rng.below(s.greeting_resources.len() as u64) as usize];
            return Outcome::Greeting;
        }
        Outcome::Nothing
    }

    /// Issues the next due packet to the user if pacing and the limits allow; the claim is in
    /// the journal before this returns it.
    ///
    /// Out of line: it runs for a drawn win only, and keeps the common decisions small.
    #[inline(never)]
    fn try_issue(&mut self, user_id: u64, seed_round: u16, round_id: u32) -> Option<Issued> {
        let Some(rec) = self.seeds.peek(seed_round) else {
            self.counters.event(Event::NoPacket);
            return None;
        };
        if self.pacing.issued >= self.pacing.due(self.now_ms) {
            self.counters.event(Event::PacingWait);
            return None;
        }
        let live = &*self.live;
        match self.winners.check(
            user_id,
            rec.sponsor_index,
            live.limits.per_user,
            live.limits.per_sponsor,
        ) {
            WinCheck::Allowed => {}
            WinCheck::UserLimit => {
                self.counters.event(Event::UserLimit);
                return None;
            }
            WinCheck::SponsorLimit => {
                self.counters.event(Event::SponsorLimit);
                return None;
            }
            WinCheck::TableFull => {
                // Recovery sizes the table for every packet the shard holds, so this is a
                // bug; refuse the win rather than issue one the limits could not follow.
                self.counters.event(Event::WinnerTableFull);
                return None;
            }
        }
        let sponsor = &live.sponsors[rec.sponsor_index as usize];
        let claim = Claim {
            packet_id: rec.packet_id,
            user_id,
            amount_cents: rec.amount_cents,
            sponsor_id: sponsor.id,
            round_id,
            time_ms: self.now_ms,
        };
        if self.journal.append(&claim).is_err() {
            self.counters.event(Event::JournalError);
            return None;
        }
        self.seeds.commit(seed_round);
        // Journaled: issued (paid), whether or not its answer leaves.
        self.counters.issued.issued(
            rec.sponsor_index as usize,
            seed_round as usize,
            rec.amount_cents,
        );
        // `check` said Allowed, which includes room for the entry: recording cannot fail.
        let recorded = self.winners.record(user_id, rec.sponsor_index);
        debug_assert!(recorded, "winner table refused a win its check allowed");
        self.pacing.issued += 1;
        Some(Issued {
            packet_id: rec.packet_id,
            amount_cents: rec.amount_cents,
            sponsor_id: sponsor.id,
            resource_id: sponsor.resource,
            claim_mac: live.identity.claim_key.claim(
                rec.packet_id,
                user_id,
                rec.amount_cents,
                sponsor.id,
            ),
        })
    }
}

/// A packet issued to a user: what its RED_PACKET answer carries.
struct Issued {
    packet_id: u64,
    amount_cents: u32,
    sponsor_id: u32,
    resource_id: u16,
    claim_mac: u64,
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::activity::Activity;
    use crate::client;
    use crate::engine::config::{Identity, Throttle};
    use crate::journal::MemoryJournal;
    use crate::mac::MacKey;
    use crate::seed::{plan, MemorySource};
    use std::collections::BTreeMap;

    const TOKEN: MacKey = MacKey::from_bytes([7; 16]);

    #[test]
    fn issued_money_is_counted_per_sponsor_and_round_as_journaled() {
        // Two sponsors and two back-to-back rounds of 100 s from 1 000 s; every draw a win.
        let a = Activity::parse(
            std::path::Path::new("t.toml"),
            r#"
[activity]
id = 5
name = "t"
epoch = 1000
[limits]
per_user = 3
per_sponsor = 1
[[sponsor]]
id = 11
budget_cents = 100000
packets = 400
[[sponsor]]
id = 12
budget_cents = 30000
packets = 300
[[round]]
id = 1
start_s = 0
duration_s = 100
win_probability = 1.0
[[round]]
id = 2
start_s = 100
duration_s = 100
win_probability = 1.0
"#,
        )
        .unwrap();
        let identity = Identity {
            node_index: 0,
            node_count: 1,
            token_key: TOKEN,
            claim_key: MacKey::from_bytes([9; 16]),
        };
        let live = Live::new(
            &a,
            identity,
            Throttle::default(),
            None,
            0,
            Default::default(),
            1,
        );
        let records = plan::shard_records(&plan::plan(&a, 1, 1, 3), 0);
        let n = records.len();
        let mut w = Worker::new(
            live,
            UserTable::new(10_000, 0),
            WinnerTable::with_capacity(n),
            MemorySource::new(records, 2),
            MemoryJournal::with_capacity(n),
            42,
        );
        // Late in each round, so pacing has most of its packets due; a new user each time.
        let mut user = 0;
        for (start, t) in [(1_000_000, 1_090_000), (1_100_000, 1_190_000)] {
            // Pacing counts from when the worker entered the round.
            w.begin_burst(start);
            w.begin_burst(t);
            for _ in 0..150 {
                user += 1;
                let mut p = client::payload(&client::request(&TOKEN, user, 1, 2_000_000_000, 0));
                w.shake(&mut p).unwrap();
            }
        }
        let mut journaled: BTreeMap<(u32, u32), (u64, u64)> = BTreeMap::new();
        for c in &w.journal().claims {
            let e = journaled.entry((c.sponsor_id, c.round_id)).or_default();
            *e = (e.0 + 1, e.1 + u64::from(c.amount_cents));
        }
        assert!(
            journaled.contains_key(&(11, 1)) && journaled.contains_key(&(12, 2)),
            "both sponsors in both rounds: {journaled:?}"
        );
        let counted = w.counters().issued.snapshot().cells;
        assert_eq!(counted.len(), 4, "a cell per sponsor and round");
        for (key, got) in &counted {
            assert_eq!(Some(got), journaled.get(key).or(Some(&(0, 0))), "{key:?}");
        }
        let packets: u64 = counted.values().map(|v| v.0).sum();
        assert_eq!(packets, w.journal().claims.len() as u64);
        assert_eq!(
            packets,
            w.counters().snapshot().decided(Outcome::RedPacket),
            "every RED_PACKET decision is a counted packet"
        );
    }
}
