//! Red-packet activities as the operator writes them (TOML in `seeds/`).
//!
//! An activity has sponsors (who pays, how much, in how many packets) and rounds (when packets
//! may be won, with which probabilities), plus the per-user limits. `seedgen` turns it into
//! shards; the node reads it for the round schedule, which may be reloaded while serving.
//!
//! Round starts are offsets from the activity's `epoch` (unix seconds), so a whole schedule can
//! be moved by one number: the broadcast's countdown calibration, or a demo that starts "now".
//! Every error names the file, the line and the key, because operators edit these by hand
//! under time pressure: keys are dotted paths with 0-based indices, `sponsor[1].packets`
//! (see `activity/locate.rs`).

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub(crate) mod locate;
use locate::Places;

/// Most packets a user can be allowed per activity; the winner table stores this many sponsors.
pub const MAX_PER_USER: u8 = 8;

/// Largest activity id: packet ids carry it in their top 24 bits (`seed::plan::packet_id`), so
/// a larger one would issue another activity's ids.
pub const MAX_ACTIVITY_ID: u32 = 0xff_ffff;

/// Most packets an activity can have: packet numbers are a packet id's low 40 bits.
pub const MAX_PACKETS: u64 = (1 << 40) - 1;

/// Latest second an epoch, and a round's end after it, may name (2^33: the year 2242), so that
/// the schedule in milliseconds fits every integer the node computes it in.
pub const MAX_TIME_S: u64 = 1 << 33;

/// An error in an activity file, with where it is.
#[derive(Debug, thiserror::Error)]
pub enum ActivityError {
    /// Something at a key: the file, the line and the key.
    #[error("{file}:{line}: {key}: {message}")]
    At {
        file: String,
        line: usize,
        key: String,
        message: String,
    },
    /// The file cannot be read at all.
    #[error("{file}: cannot read: {error}")]
    Read { file: String, error: std::io::Error },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActivityFile {
    activity: Header,
    #[serde(default)]
    limits: Option<Limits>,
    #[serde(default)]
    sponsor: Vec<Sponsor>,
    #[serde(default)]
    round: Vec<Round>,
    #[serde(default)]
    live: Option<LiveOverrides>,
}

/// The optional `[live]` table: what an activity document pushed to a fleet (or reloaded by
/// SIGHUP) may change besides its rounds, probabilities and limits, over the node config's
/// own settings. Every key is optional; an absent one leaves the node's setting.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveOverrides {
    /// Moves every round by this much (the broadcast's countdown cue), in place of the node
    /// config's `[activity] calibration_ms`.
    #[serde(default)]
    pub calibration_ms: Option<i64>,
    /// Throttle settings in place of the node config's `[throttle]`, key by key.
    #[serde(default)]
    pub throttle: LiveThrottle,
    /// Users refused on every node, besides each node's own `[blacklist]`.
    #[serde(default)]
    pub blacklist: Vec<u64>,
}

/// `[live.throttle]`: the node config's `[throttle]` keys, each optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveThrottle {
    pub floor_ms: Option<u32>,
    pub ceiling_ms: Option<u32>,
    pub closed_cap_ms: Option<u32>,
    pub worker_capacity_rps: Option<u32>,
}

/// Largest `calibration_ms` either way: a broadcast's countdown cue moves rounds by seconds;
/// more than a day is a mistake, and would move them before the epoch.
pub const MAX_CALIBRATION_MS: u64 = 86_400_000;

/// The `[activity]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Activity id, written into every shard so shards of two activities never mix.
    pub id: u32,
    pub name: String,
    /// Unix seconds that round starts count from.
    #[serde(default)]
    pub epoch: u64,
}

/// The `[limits]` table: exact across a node's workers and restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Red packets one user may win in this activity.
    #[serde(default = "default_per_user")]
    pub per_user: u8,
    /// Red packets one user may win from one sponsor.
    #[serde(default = "default_per_sponsor")]
    pub per_sponsor: u8,
}

fn default_per_user() -> u8 {
    3
}
fn default_per_sponsor() -> u8 {
    1
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_user: default_per_user(),
            per_sponsor: default_per_sponsor(),
        }
    }
}

/// One `[[sponsor]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sponsor {
    /// Enterprise id, carried in answers and journals.
    pub id: u32,
    #[serde(default)]
    pub name: String,
    /// Total money of this sponsor; its packets add up to it exactly.
    pub budget_cents: u64,
    /// How many red packets the budget is split into.
    pub packets: u32,
    /// Smallest and largest packet.
    #[serde(default = "default_min_cents")]
    pub min_cents: u32,
    #[serde(default)]
    pub max_cents: Option<u32>,
    /// Pre-pushed resource package shown with this sponsor's red packet.
    #[serde(default)]
    pub resource: u16,
    /// Resource packages shown with this sponsor's greetings.
    #[serde(default)]
    pub greeting_resources: Vec<u16>,
    /// Rounds this sponsor's packets are spread over; all rounds when absent.
    #[serde(default)]
    pub rounds: Option<Vec<u32>>,
}

fn default_min_cents() -> u32 {
    1
}

impl Sponsor {
    pub fn max_cents(&self) -> u32 {
        self.max_cents
            .unwrap_or_else(|| self.budget_cents.min(u32::MAX as u64) as u32)
    }
}

/// One `[[round]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Round {
    pub id: u32,
    /// Seconds after the activity's epoch.
    pub start_s: u64,
    pub duration_s: u32,
    /// Chance that a shake in this round draws a red packet (if one is due and the limits allow).
    pub win_probability: f64,
    /// Chance of a greeting instead.
    #[serde(default)]
    pub greeting_probability: f64,
}

/// A validated activity: rounds sorted by start, sponsors in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Activity {
    pub path: PathBuf,
    pub header: Header,
    pub limits: Limits,
    pub sponsors: Vec<Sponsor>,
    pub rounds: Vec<Round>,
    /// The `[live]` table (empty when absent).
    pub live: LiveOverrides,
    /// Where the ids were written, for errors found after parsing (a reload).
    lines: Lines,
}

/// Lines of the ids in the file.
#[derive(Debug, Clone, Default, PartialEq)]
struct Lines {
    id: usize,
    /// By sponsor, in file order.
    sponsors: Vec<usize>,
    /// By round in start order: its index in the file, and the line.
    rounds: Vec<(usize, usize)>,
    /// `live.throttle.floor_ms`, checked against the node's throttle when applied.
    live_floor: usize,
}

impl Activity {
    /// Reads and validates an activity file.
    pub fn load(path: &Path) -> Result<Self, ActivityError> {
        let text = std::fs::read_to_string(path).map_err(|error| ActivityError::Read {
            file: path.display().to_string(),
            error,
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates activity text; `path` is only used to name errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ActivityError> {
        let file = path.display().to_string();
        let places = Places::new(text);
        let at_line = |line: usize, key: String, message: String| ActivityError::At {
            file: file.clone(),
            line,
            key,
            message,
        };
        let err = |key: String, message: String| at_line(places.line_of_key(&key), key, message);
        let raw: ActivityFile = toml::from_str(text).map_err(|e| {
            let (line, key, message) = places.toml_error(&e);
            at_line(line, key, message)
        })?;

        let limits = raw.limits.unwrap_or_default();
        if limits.per_user == 0 || limits.per_user > MAX_PER_USER {
            return Err(err(
                "limits.per_user".into(),
                format!("must be 1..={MAX_PER_USER}, found {}", limits.per_user),
            ));
        }
        if limits.per_sponsor == 0 || limits.per_sponsor > limits.per_user {
            return Err(err(
                "limits.per_sponsor".into(),
                format!(
                    "must be 1..=per_user ({}), found {}",
                    limits.per_user, limits.per_sponsor
                ),
            ));
        }

        let header = raw.activity;
        if header.id == 0 || header.id > MAX_ACTIVITY_ID {
            return Err(err(
                "activity.id".into(),
                format!(
                    "must be 1..={MAX_ACTIVITY_ID} (packet ids carry it in 24 bits), found {}",
                    header.id
                ),
            ));
        }
        if header.epoch > MAX_TIME_S {
            return Err(err(
                "activity.epoch".into(),
                format!(
                    "must be at most {MAX_TIME_S} (unix seconds), found {}",
                    header.epoch
                ),
            ));
        }

        // Rounds with their index in the file, which names them in errors.
        let mut rounds: Vec<(usize, Round)> = Vec::new();
        for (i, r) in raw.round.into_iter().enumerate() {
            let key = |k: &str| format!("round[{i}].{k}");
            if r.id == 0 {
                return Err(err(
                    key("id"),
                    "must not be 0 (0 means \"no round\" on the wire)".into(),
                ));
            }
            if rounds.iter().any(|(_, o)| o.id == r.id) {
                return Err(err(key("id"), format!("round id {} appears twice", r.id)));
            }
            if r.duration_s == 0 {
                return Err(err(
                    key("duration_s"),
                    format!("round {}: must be at least 1", r.id),
                ));
            }
            if r.start_s.saturating_add(r.duration_s as u64) > MAX_TIME_S {
                return Err(err(
                    key("start_s"),
                    format!(
                        "round {}: must end at most {MAX_TIME_S} s after the epoch, \
                         found {} + {}",
                        r.id, r.start_s, r.duration_s
                    ),
                ));
            }
            for (k, p) in [
                ("win_probability", r.win_probability),
                ("greeting_probability", r.greeting_probability),
            ] {
                if !(0.0..=1.0).contains(&p) {
                    return Err(err(
                        key(k),
                        format!("round {}: must be within 0..=1, found {p}", r.id),
                    ));
                }
            }
            if r.win_probability + r.greeting_probability > 1.0 {
                return Err(err(
                    key("greeting_probability"),
                    format!(
                        "round {}: win_probability + greeting_probability exceeds 1",
                        r.id
                    ),
                ));
            }
            rounds.push((i, r));
        }
        if rounds.is_empty() {
            return Err(at_line(
                places.line(text.len()),
                "round".into(),
                "an activity needs at least one [[round]]".into(),
            ));
        }
        rounds.sort_by_key(|(_, r)| r.start_s);
        for pair in rounds.windows(2) {
            let (a, (i, b)) = (&pair[0].1, &pair[1]);
            if a.start_s.saturating_add(a.duration_s as u64) > b.start_s {
                return Err(err(
                    format!("round[{i}].start_s"),
                    format!("round {} starts before round {} ends", b.id, a.id),
                ));
            }
        }

        let mut sponsors: Vec<Sponsor> = Vec::new();
        // Running totals: they must fit the packet numbers and a u64 of cents.
        let (mut packets, mut cents) = (0u64, 0u64);
        for (i, s) in raw.sponsor.into_iter().enumerate() {
            let key = |k: &str| format!("sponsor[{i}].{k}");
            if s.id == 0 {
                return Err(err(key("id"), "must not be 0".into()));
            }
            if sponsors.iter().any(|o| o.id == s.id) {
                return Err(err(key("id"), format!("sponsor id {} appears twice", s.id)));
            }
            if s.packets == 0 {
                return Err(err(
                    key("packets"),
                    format!("sponsor {}: must be at least 1", s.id),
                ));
            }
            if s.min_cents == 0 || s.min_cents > s.max_cents() {
                return Err(err(
                    key("min_cents"),
                    format!(
                        "sponsor {}: need 1 <= min_cents ({}) <= max_cents ({})",
                        s.id,
                        s.min_cents,
                        s.max_cents()
                    ),
                ));
            }
            let lo = s.packets as u64 * s.min_cents as u64;
            let hi = s.packets as u64 * s.max_cents() as u64;
            if s.budget_cents < lo || s.budget_cents > hi {
                return Err(err(
                    key("budget_cents"),
                    format!(
                        "sponsor {}: {} cents cannot be split into {} packets of {}..={} cents",
                        s.id,
                        s.budget_cents,
                        s.packets,
                        s.min_cents,
                        s.max_cents()
                    ),
                ));
            }
            packets += s.packets as u64;
            if packets > MAX_PACKETS {
                return Err(err(
                    key("packets"),
                    format!(
                        "sponsor {}: the activity's packets pass {MAX_PACKETS} \
                         (packet numbers are 40 bits)",
                        s.id
                    ),
                ));
            }
            cents = cents.checked_add(s.budget_cents).ok_or_else(|| {
                err(
                    key("budget_cents"),
                    format!(
                        "sponsor {}: the activity's budgets add up to more than {} cents",
                        s.id,
                        u64::MAX
                    ),
                )
            })?;
            if let Some(ids) = &s.rounds {
                if ids.is_empty() {
                    return Err(err(
                        key("rounds"),
                        format!("sponsor {}: must not be empty", s.id),
                    ));
                }
                if let Some(bad) = ids
                    .iter()
                    .find(|id| !rounds.iter().any(|(_, r)| r.id == **id))
                {
                    return Err(err(
                        key("rounds"),
                        format!("sponsor {}: names unknown round {bad}", s.id),
                    ));
                }
            }
            sponsors.push(s);
        }
        if sponsors.is_empty() {
            return Err(at_line(
                places.line(text.len()),
                "sponsor".into(),
                "an activity needs at least one [[sponsor]]".into(),
            ));
        }
        if sponsors.len() > u16::MAX as usize {
            return Err(err(
                format!("sponsor[{}]", u16::MAX),
                format!("at most {} sponsors per activity", u16::MAX),
            ));
        }

        let live = raw.live.unwrap_or_default();
        if let Some(c) = live.calibration_ms {
            if c.unsigned_abs() > MAX_CALIBRATION_MS {
                return Err(err(
                    "live.calibration_ms".into(),
                    format!("must be within ±{MAX_CALIBRATION_MS} (a day), found {c}"),
                ));
            }
        }

        let lines = Lines {
            id: places.line_of_key("activity.id"),
            sponsors: (0..sponsors.len())
                .map(|i| places.line_of_key(&format!("sponsor[{i}].id")))
                .collect(),
            rounds: rounds
                .iter()
                .map(|(i, _)| (*i, places.line_of_key(&format!("round[{i}].id"))))
                .collect(),
            live_floor: places.line_of_key("live.throttle.floor_ms"),
        };
        Ok(Activity {
            path: path.to_path_buf(),
            header,
            limits,
            sponsors,
            rounds: rounds.into_iter().map(|(_, r)| r).collect(),
            live,
            lines,
        })
    }

    /// An error at `live.throttle.floor_ms` of this activity (found when it is applied over
    /// a node's throttle).
    pub fn live_floor_error(&self, message: String) -> ActivityError {
        ActivityError::At {
            file: self.path.display().to_string(),
            line: self.lines.live_floor,
            key: "live.throttle.floor_ms".into(),
            message,
        }
    }

    /// Checks that this activity, re-read for a live reload, has the running one's id and
    /// the same sponsors and rounds in the same order: seeds are bound to them by position.
    /// The error names the first id that differs, where this file has it.
    pub fn check_same_ids(&self, running: &Activity) -> Result<(), ActivityError> {
        let at = |line: usize, key: String, what: String| ActivityError::At {
            file: self.path.display().to_string(),
            line,
            key,
            message: format!(
                "{what}: a reload may not add, remove or reorder sponsors or rounds \
                 (seeds are bound to them); restart with new seeds"
            ),
        };
        if self.header.id != running.header.id {
            return Err(at(
                self.lines.id,
                "activity.id".into(),
                format!(
                    "activity {} where activity {} is running",
                    self.header.id, running.header.id
                ),
            ));
        }
        /// The first position where two id lists differ, and what each has there.
        fn first_difference(a: &[u32], b: &[u32]) -> Option<(usize, Option<u32>, Option<u32>)> {
            (0..a.len().max(b.len()))
                .map(|i| (i, a.get(i).copied(), b.get(i).copied()))
                .find(|(_, x, y)| x != y)
        }
        let what = |kind: &str, new: Option<u32>, old: Option<u32>| match (new, old) {
            (Some(n), Some(o)) => format!("{kind} {n} where the running activity has {kind} {o}"),
            (Some(n), None) => format!("{kind} {n} is new"),
            (None, Some(o)) => format!("{kind} {o} is missing"),
            (None, None) => unreachable!("ids differ"),
        };
        let ids = |a: &Activity| -> (Vec<u32>, Vec<u32>) {
            (
                a.sponsors.iter().map(|s| s.id).collect(),
                a.rounds.iter().map(|r| r.id).collect(),
            )
        };
        let ((new_s, new_r), (old_s, old_r)) = (ids(self), ids(running));
        if let Some((i, new, old)) = first_difference(&new_s, &old_s) {
            let line = self.lines.sponsors.get(i).or(self.lines.sponsors.last());
            let key = match new {
                Some(_) => format!("sponsor[{i}].id"),
                None => format!("sponsor[{i}]"),
            };
            return Err(at(
                line.copied().unwrap_or(1),
                key,
                what("sponsor", new, old),
            ));
        }
        if let Some((i, new, old)) = first_difference(&new_r, &old_r) {
            // Rounds are compared in start order; the key is the round's place in the file.
            let (file_index, line) = self
                .lines
                .rounds
                .get(i)
                .or(self.lines.rounds.last())
                .copied()
                .unwrap_or((0, 1));
            let key = match new {
                Some(_) => format!("round[{file_index}].id"),
                None => format!("round[{}]", self.rounds.len()),
            };
            return Err(at(line, key, what("round (in start order)", new, old)));
        }
        Ok(())
    }

    /// Index of a round by id, in start order.
    pub fn round_index(&self, round_id: u32) -> Option<usize> {
        self.rounds.iter().position(|r| r.id == round_id)
    }

    /// Index of a sponsor by id, in file order.
    pub fn sponsor_index(&self, sponsor_id: u32) -> Option<usize> {
        self.sponsors.iter().position(|s| s.id == sponsor_id)
    }

    /// Total packets and cents over all sponsors.
    pub fn totals(&self) -> (u64, u64) {
        self.sponsors.iter().fold((0, 0), |(p, c), s| {
            (p + s.packets as u64, c + s.budget_cents)
        })
    }
}

#[cfg(test)]
mod test {
    use super::*;

    const GOOD: &str = r#"
[activity]
id = 7
name = "test"
epoch = 1000

[limits]
per_user = 3
per_sponsor = 1

[[sponsor]]
id = 11
budget_cents = 1000
packets = 10
min_cents = 50
max_cents = 200
resource = 5
greeting_resources = [1, 2]

[[sponsor]]
id = 12
budget_cents = 500
packets = 5
rounds = [2]

[[round]]
id = 2
start_s = 100
duration_s = 60
win_probability = 0.5
greeting_probability = 0.25

[[round]]
id = 1
start_s = 0
duration_s = 60
win_probability = 0.1
"#;

    fn parse(text: &str) -> Result<Activity, ActivityError> {
        Activity::parse(Path::new("seeds/x.toml"), text)
    }

    #[test]
    fn parses_and_sorts_rounds() {
        let a = parse(GOOD).unwrap();
        assert_eq!(a.header.id, 7);
        assert_eq!(
            a.rounds.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(a.sponsors[1].max_cents(), 500);
        assert_eq!(a.totals(), (15, 1500));
        assert_eq!(a.round_index(2), Some(1));
        assert_eq!(a.sponsor_index(12), Some(1));
        assert_eq!(
            a.limits,
            Limits {
                per_user: 3,
                per_sponsor: 1
            }
        );
    }

    fn expect_err(text: &str, line: usize, key: &str, needle: &str) {
        match parse(text).unwrap_err() {
            ActivityError::At {
                file,
                line: l,
                key: k,
                message,
            } => {
                assert_eq!(file, "seeds/x.toml");
                assert!(message.contains(needle), "{message}");
                assert_eq!((l, k.as_str()), (line, key), "{message}");
            }
            e => panic!("{e}"),
        }
    }

    #[test]
    fn errors_name_line_and_key() {
        expect_err(
            &GOOD.replace("budget_cents = 1000", "budget_cents = 100"),
            13,
            "sponsor[0].budget_cents",
            "100 cents",
        );
        expect_err(
            &GOOD.replace("win_probability = 0.5", "win_probability = 1.5"),
            30,
            "round[0].win_probability",
            "within 0..=1",
        );
        expect_err(
            &GOOD.replace("rounds = [2]", "rounds = [9]"),
            24,
            "sponsor[1].rounds",
            "unknown round 9",
        );
        expect_err(
            &GOOD.replace("start_s = 100", "start_s = 30"),
            28,
            "round[0].start_s",
            "starts before",
        );
        expect_err(
            &GOOD.replace("packets = 5", "packets = \"five\""),
            23,
            "sponsor[1].packets",
            "invalid type",
        );
        expect_err(
            &GOOD.replace("per_sponsor = 1", "per_sponsor = 4"),
            9,
            "limits.per_sponsor",
            "1..=per_user",
        );
        expect_err(
            &GOOD.replace("name = \"test\"", "name = \"test\"\nbogus = 1"),
            5,
            "activity.bogus",
            "unknown field",
        );
        expect_err(
            &GOOD.replace("id = 12", "id = 11"),
            21,
            "sponsor[1].id",
            "appears twice",
        );
        expect_err(
            &GOOD.replace(
                "duration_s = 60\nwin_probability = 0.1",
                "win_probability = 0.1",
            ),
            33,
            "round[1].duration_s",
            "required",
        );
        expect_err(
            &GOOD.replace("per_user = 3", "per_user = 300"),
            8,
            "limits.per_user",
            "invalid value",
        );
    }

    #[test]
    fn missing_file_is_an_error_naming_it() {
        let e = Activity::load(Path::new("/nonexistent/a.toml")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/nonexistent/a.toml: cannot read: "),
            "{e}"
        );
    }

    #[test]
    fn reload_ids_are_checked_where_they_are_written() {
        let a = parse(GOOD).unwrap();
        a.check_same_ids(&parse(GOOD).unwrap()).unwrap();
        let check = |text: &str| match parse(text).unwrap().check_same_ids(&a).unwrap_err() {
            ActivityError::At {
                line, key, message, ..
            } => (line, key, message),
            e => panic!("{e}"),
        };
        let (line, key, m) = check(&GOOD.replace("id = 12", "id = 13"));
        assert_eq!((line, key.as_str()), (21, "sponsor[1].id"), "{m}");
        assert!(
            m.starts_with("sponsor 13 where the running activity has sponsor 12"),
            "{m}"
        );
        let (line, key, m) = check(&GOOD.replace("id = 7", "id = 8"));
        assert_eq!((line, key.as_str()), (3, "activity.id"), "{m}");
        // Round 2 moved before round 1: in start order, the first is now round 2.
        let (line, key, m) = check(&GOOD.replace("start_s = 0", "start_s = 300"));
        assert_eq!((line, key.as_str()), (27, "round[0].id"), "{m}");
        let round_2 = "[[round]]\nid = 2\nstart_s = 100\nduration_s = 60\n\
                       win_probability = 0.5\ngreeting_probability = 0.25\n\n";
        let (line, key, m) = check(&GOOD.replace("rounds = [2]\n", "").replace(round_2, ""));
        assert_eq!((line, key.as_str()), (26, "round[1]"), "{m}");
        assert!(m.starts_with("round (in start order) 2 is missing"), "{m}");
    }
}
