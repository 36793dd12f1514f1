//! Red-packet activities as the operator writes them (TOML in `seeds/`).
//!
//! An activity has sponsors (who pays, how much, in how many packets) and rounds (when packets
//! may be won, with which probabilities), plus the per-user limits. `seedgen` turns it into
//! shards; the node reads it for the round schedule, which may be reloaded while serving.
//!
//! Round starts are offsets from the activity's `epoch` (unix seconds), so a whole schedule can
//! be moved by one number: the broadcast's countdown calibration, or a demo that starts "now".
//! Every error names the file, the line and the key, because operators edit these by hand
//! under time pressure.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

/// Most packets a user can be allowed per activity; the winner table stores this many sponsors.
pub const MAX_PER_USER: u8 = 8;

/// An error in an activity file, with where it is.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ActivityError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActivityFile {
    activity: Spanned<Header>,
    #[serde(default)]
    limits: Option<Spanned<Limits>>,
    #[serde(default)]
    sponsor: Vec<Spanned<Sponsor>>,
    #[serde(default)]
    round: Vec<Spanned<Round>>,
}

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
}

impl Activity {
    /// Reads and validates an activity file.
    pub fn load(path: &Path) -> Result<Self, ActivityError> {
        let text = std::fs::read_to_string(path).map_err(|e| ActivityError {
            file: path.display().to_string(),
            line: 0,
            message: e.to_string(),
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates activity text; `path` is only used to name errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ActivityError> {
        let file = path.display().to_string();
        let err = |offset: usize, message: String| ActivityError {
            file: file.clone(),
            line: line_of(text, offset),
            message,
        };
        let raw: ActivityFile = toml::from_str(text).map_err(|e| {
            let offset = e.span().map(|s| s.start).unwrap_or(0);
            err(offset, e.message().to_string())
        })?;

        let limits_span = raw.limits.as_ref().map(|l| l.span().start).unwrap_or(0);
        let limits = raw.limits.map(|l| l.into_inner()).unwrap_or_default();
        if limits.per_user == 0 || limits.per_user > MAX_PER_USER {
            return Err(err(
                limits_span,
                format!(
                    "limits.per_user must be 1..={MAX_PER_USER}, found {}",
                    limits.per_user
                ),
            ));
        }
        if limits.per_sponsor == 0 || limits.per_sponsor > limits.per_user {
            return Err(err(
                limits_span,
                format!(
                    "limits.per_sponsor must be 1..=per_user ({}), found {}",
                    limits.per_user, limits.per_sponsor
                ),
            ));
        }

        let header_span = raw.activity.span().start;
        let header = raw.activity.into_inner();
        if header.id == 0 {
            return Err(err(header_span, "activity.id must not be 0".into()));
        }

        let mut rounds: Vec<(usize, Round)> = Vec::new();
        for r in raw.round {
            let at = r.span().start;
            let r = r.into_inner();
            if r.id == 0 {
                return Err(err(
                    at,
                    "round.id must not be 0 (0 means \"no round\" on the wire)".into(),
                ));
            }
            if rounds.iter().any(|(_, o)| o.id == r.id) {
                return Err(err(at, format!("round.id {} appears twice", r.id)));
            }
            if r.duration_s == 0 {
                return Err(err(
                    at,
                    format!("round {}: duration_s must be at least 1", r.id),
                ));
            }
            for (key, p) in [
                ("win_probability", r.win_probability),
                ("greeting_probability", r.greeting_probability),
            ] {
                if !(0.0..=1.0).contains(&p) {
                    return Err(err(
                        at,
                        format!("round {}: {key} must be within 0..=1, found {p}", r.id),
                    ));
                }
            }
            if r.win_probability + r.greeting_probability > 1.0 {
                return Err(err(
                    at,
                    format!(
                        "round {}: win_probability + greeting_probability exceeds 1",
                        r.id
                    ),
                ));
            }
            rounds.push((at, r));
        }
        if rounds.is_empty() {
            return Err(err(
                text.len(),
                "an activity needs at least one [[round]]".into(),
            ));
        }
        rounds.sort_by_key(|(_, r)| r.start_s);
        for pair in rounds.windows(2) {
            let (a, b) = (&pair[0].1, &pair[1].1);
            if a.start_s + a.duration_s as u64 > b.start_s {
                return Err(err(
                    pair[1].0,
                    format!("round {} starts before round {} ends", b.id, a.id),
                ));
            }
        }

        let mut sponsors: Vec<Sponsor> = Vec::new();
        for s in raw.sponsor {
            let at = s.span().start;
            let s = s.into_inner();
            if s.id == 0 {
                return Err(err(at, "sponsor.id must not be 0".into()));
            }
            if sponsors.iter().any(|o| o.id == s.id) {
                return Err(err(at, format!("sponsor.id {} appears twice", s.id)));
            }
            if s.packets == 0 {
                return Err(err(
                    at,
                    format!("sponsor {}: packets must be at least 1", s.id),
                ));
            }
            if s.min_cents == 0 || s.min_cents > s.max_cents() {
                return Err(err(
                    at,
                    format!("sponsor {}: need 1 <= min_cents <= max_cents", s.id),
                ));
            }
            let lo = s.packets as u64 * s.min_cents as u64;
            let hi = s.packets as u64 * s.max_cents() as u64;
            if s.budget_cents < lo || s.budget_cents > hi {
                return Err(err(
                    at,
                    format!(
                        "sponsor {}: budget_cents {} cannot be split into {} packets of {}..={} cents",
                        s.id,
                        s.budget_cents,
                        s.packets,
                        s.min_cents,
                        s.max_cents()
                    ),
                ));
            }
            if let Some(ids) = &s.rounds {
                if ids.is_empty() {
                    return Err(err(
                        at,
                        format!("sponsor {}: rounds must not be empty", s.id),
                    ));
                }
                if let Some(bad) = ids
                    .iter()
                    .find(|id| !rounds.iter().any(|(_, r)| r.id == **id))
                {
                    return Err(err(
                        at,
                        format!("sponsor {}: rounds names unknown round {bad}", s.id),
                    ));
                }
            }
            sponsors.push(s);
        }
        if sponsors.is_empty() {
            return Err(err(
                text.len(),
                "an activity needs at least one [[sponsor]]".into(),
            ));
        }
        if sponsors.len() > u16::MAX as usize {
            return Err(err(
                0,
                format!("at most {} sponsors per activity", u16::MAX),
            ));
        }

        Ok(Activity {
            path: path.to_path_buf(),
            header,
            limits,
            sponsors,
            rounds: rounds.into_iter().map(|(_, r)| r).collect(),
        })
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

/// 1-based line of a byte offset, for errors that name the line.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
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

    fn expect_err(text: &str, line: usize, needle: &str) {
        let e = parse(text).unwrap_err();
        assert_eq!(e.file, "seeds/x.toml");
        assert!(e.message.contains(needle), "{e}");
        assert_eq!(e.line, line, "{e}");
    }

    #[test]
    fn errors_name_line_and_key() {
        expect_err(
            &GOOD.replace("budget_cents = 1000", "budget_cents = 100"),
            11,
            "budget_cents 100",
        );
        expect_err(
            &GOOD.replace("win_probability = 0.5", "win_probability = 1.5"),
            26,
            "win_probability",
        );
        expect_err(
            &GOOD.replace("rounds = [2]", "rounds = [9]"),
            20,
            "unknown round 9",
        );
        expect_err(
            &GOOD.replace("start_s = 100", "start_s = 30"),
            26,
            "starts before",
        );
        expect_err(
            &GOOD.replace("packets = 5", "packets = \"five\""),
            23,
            "invalid type",
        );
        expect_err(
            &GOOD.replace("per_sponsor = 1", "per_sponsor = 4"),
            7,
            "per_sponsor",
        );
        expect_err(
            &GOOD.replace("name = \"test\"", "name = \"test\"\nbogus = 1"),
            5,
            "unknown field",
        );
        expect_err(&GOOD.replace("id = 12", "id = 11"), 20, "appears twice");
    }

    #[test]
    fn missing_file_is_an_error_naming_it() {
        let e = Activity::load(Path::new("/nonexistent/a.toml")).unwrap_err();
        assert!(e.to_string().starts_with("/nonexistent/a.toml:0:"), "{e}");
    }
}
