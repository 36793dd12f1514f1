//! What a worker decides by: an immutable snapshot, swapped whole on reload.
//!
//! The control loop builds a new [`Live`] from the node config and the activity, bumps the
//! config version and hands each worker an `Arc` of it over a channel; a worker picks it up
//! between bursts. Nothing here is written after construction, so workers read it without
//! locks and a reload never stalls the datapath.

use std::sync::Arc;

use hashbrown::HashSet;

use crate::activity::{Activity, Limits};
use crate::mac::MacKey;
use crate::rng::threshold;

/// A round on the node's clock.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundPlan {
    pub id: u32,
    /// Index of the round in the activity (start order): the shards' round index.
    pub seed_round: u16,
    pub start_ms: u64,
    pub end_ms: u64,
    /// Draw below this: try a red packet.
    pub win: u64,
    /// Draw below this (and not a red packet): a greeting.
    pub greet: u64,
}

/// What answers say about a sponsor.
#[derive(Debug, Clone, PartialEq)]
pub struct SponsorPlan {
    pub id: u32,
    pub resource: u16,
    pub greeting_resources: Vec<u16>,
}

/// Client and server throttling (SPEC section 4).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throttle {
    /// retry_after_ms when the worker is idle.
    pub floor_ms: u32,
    /// retry_after_ms at or past capacity, and for shed requests.
    pub ceiling_ms: u32,
    /// Cap on retry_after_ms of CLOSED answers.
    pub closed_cap_ms: u32,
    /// Full decisions per second one worker takes before it sheds; 0 for no limit.
    pub worker_capacity_rps: u32,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle {
            floor_ms: 5_000,
            ceiling_ms: 10_000,
            closed_cap_ms: 60_000,
            worker_capacity_rps: 0,
        }
    }
}

/// Node-wide identity and keys.
#[derive(Debug, Clone)]
pub struct Identity {
    pub node_index: u32,
    pub node_count: u32,
    pub token_key: MacKey,
    pub claim_key: MacKey,
}

/// Everything a worker decides by.
#[derive(Debug, Clone)]
pub struct Live {
    pub config_version: u32,
    pub identity: Identity,
    pub limits: Limits,
    pub throttle: Throttle,
    pub rounds: Vec<RoundPlan>,
    pub sponsors: Vec<SponsorPlan>,
    /// Sponsors with greeting resources, by index: greetings pick among these.
    pub greeters: Vec<u16>,
    pub blacklist: HashSet<u64>,
    /// `node_count - 1` when the node count is a power of two (the owner is a mask of the
    /// user id), else [`OWNER_BY_MODULO`].
    owner_mask: u64,
}

/// [`Live::owner_node`] divides: the node count is not a power of two.
const OWNER_BY_MODULO: u64 = u64::MAX;

impl Live {
    /// Builds the snapshot. `epoch_s` overrides the activity's epoch (a demo starting "now");
    /// `calibration_ms` moves every round (the broadcast's countdown cue).
    pub fn new(
        activity: &Activity,
        identity: Identity,
        throttle: Throttle,
        epoch_s: Option<u64>,
        calibration_ms: i64,
        blacklist: HashSet<u64>,
        config_version: u32,
    ) -> Arc<Live> {
        let epoch_ms = epoch_s.unwrap_or(activity.header.epoch) as i64 * 1000 + calibration_ms;
        let rounds = activity
            .rounds
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let start = (epoch_ms + r.start_s as i64 * 1000).max(0) as u64;
                RoundPlan {
                    id: r.id,
                    seed_round: i as u16,
                    start_ms: start,
                    end_ms: start + r.duration_s as u64 * 1000,
                    win: threshold(r.win_probability),
                    greet: threshold(r.win_probability + r.greeting_probability),
                }
            })
            .collect();
        let sponsors: Vec<SponsorPlan> = activity
            .sponsors
            .iter()
            .map(|s| SponsorPlan {
                id: s.id,
                resource: s.resource,
                greeting_resources: s.greeting_resources.clone(),
            })
            .collect();
        let greeters = sponsors
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.greeting_resources.is_empty())
            .map(|(i, _)| i as u16)
            .collect();
        let nodes = identity.node_count.max(1) as u64;
        let owner_mask = if nodes.is_power_of_two() {
            nodes - 1
        } else {
            OWNER_BY_MODULO
        };
        Arc::new(Live {
            owner_mask,
            config_version,
            identity,
            limits: activity.limits,
            throttle,
            rounds,
            sponsors,
            greeters,
            blacklist,
        })
    }

    /// The round active at `now_ms`, else the next one to start.
    pub fn round_at(&self, now_ms: u64) -> RoundAt {
        for (i, r) in self.rounds.iter().enumerate() {
            if now_ms < r.start_ms {
                return RoundAt::Before(i);
            }
            if now_ms < r.end_ms {
                return RoundAt::Active(i);
            }
        }
        RoundAt::Over
    }

    /// The node that owns a user (SPEC: user_id mod node_count).
    #[inline]
    pub fn owner_node(&self, user_id: u64) -> u32 {
        // A 64-bit division per packet is slow; node counts are usually powers of two.
        if self.owner_mask != OWNER_BY_MODULO {
            (user_id & self.owner_mask) as u32
        } else {
            (user_id % self.identity.node_count.max(1) as u64) as u32
        }
    }
}

/// Where the schedule stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoundAt {
    Active(usize),
    Before(usize),
    Over,
}

/// The worker within a node that owns a user: users are steered to one worker so the limits
/// need no shared state. Uses the bits above the node partition.
#[inline]
pub fn owner_worker(user_id: u64, node_count: u32, workers: u32) -> u32 {
    let rest = user_id / node_count.max(1) as u64;
    let h = rest.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (((h >> 32) * workers.max(1) as u64) >> 32) as u32
}

/// A config version that only ever grows, across reloads and restarts: unix seconds at load,
/// or one more than the previous if that is not larger.
pub fn next_config_version(previous: u32, now_s: u64) -> u32 {
    (now_s.min(u32::MAX as u64) as u32).max(previous.saturating_add(1))
}
