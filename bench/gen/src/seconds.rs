//! The run second by second, for the charts of an event's night (`svg`): valid answers by
//! outcome, and the money the RED_PACKET answers carried, in whole seconds counted from an
//! instant the caller picks (t0: a round's opening, so the countdown's seconds are negative),
//! and what the phones saw happen: a round open (its first answer that could win) and close
//! (the first CLOSED after it that no longer names it), and the node's config change (the
//! first answer carrying a higher config_version than any before).
//!
//! A round is told open and closed by the round_id of the answers, not by their order
//! alone: answers of one moment can be read out of order (from several sockets), and a
//! CLOSED of the countdown (naming the round to come) read just after the round's first
//! answer must not close it again.
//!
//! Buckets are whole seconds of t0's clock, not the live line's ticks (about a second each,
//! wherever the loop happened to be when one came due): the bars of a stacked chart must have
//! equal widths, and the second that starts at the opening must hold the opening alone, not
//! the end of the countdown with it.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use shake::wire::shake::Outcome;

const NS_PER_S: i64 = 1_000_000_000;

/// Unix nanoseconds now (0 if the clock is before 1970): the generator's clock is anchored
/// to the wall clock with this, once, when it starts.
pub fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// One whole second of the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Second {
    /// When the second starts, in seconds from t0.
    pub t_s: i64,
    /// Valid answers by outcome, by wire value ([`Outcome::ALL`]'s order).
    pub outcomes: [u64; 7],
    /// Money in this second's RED_PACKET answers, in cents.
    pub cents: u64,
}

impl Second {
    /// Valid answers in this second, of every outcome.
    pub fn answered(&self) -> u64 {
        self.outcomes.iter().sum()
    }

    pub fn count(&self, o: Outcome) -> u64 {
        self.outcomes[o as usize]
    }
}

/// An answer that carried a newer config than any answer before it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ConfigChange {
    /// When it arrived, in seconds from t0.
    pub t_s: f64,
    pub from_version: u32,
    pub to_version: u32,
}

/// A round opening or closing, as the answers showed it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RoundMark {
    /// When, in seconds from t0.
    pub t_s: f64,
    pub round_id: u32,
    /// Opens (else closes).
    pub opens: bool,
}

/// The seconds of a run, from its first answer to its last.
#[derive(Debug, Clone, Default)]
pub struct Seconds {
    /// Added to the generator's clock (ns since it started) to count from t0.
    shift_ns: i64,
    /// The second (from t0) of `seconds[0]`: the one the clock started in.
    first: i64,
    seconds: Vec<Second>,
    changes: Vec<ConfigChange>,
    rounds: Vec<RoundMark>,
    /// The round whose answers are coming, if one is.
    open: Option<u32>,
}

impl Seconds {
    /// Seconds counted from t0, for a clock that started `shift_ns` after t0 (negative:
    /// before it, as during a countdown).
    pub fn new(shift_ns: i64) -> Seconds {
        Seconds {
            shift_ns,
            first: shift_ns.div_euclid(NS_PER_S),
            seconds: Vec::new(),
            changes: Vec::new(),
            rounds: Vec::new(),
            open: None,
        }
    }

    /// Nanoseconds from t0 at `now_ns` of the generator's clock.
    pub fn from_t0_ns(&self, now_ns: u64) -> i64 {
        (now_ns.min(i64::MAX as u64) as i64).saturating_add(self.shift_ns)
    }

    /// The whole second holding `now_ns`, created (with any before it) when first needed.
    fn at(&mut self, now_ns: u64) -> &mut Second {
        let s = self.from_t0_ns(now_ns).div_euclid(NS_PER_S);
        let i = (s - self.first).max(0) as usize;
        if i >= self.seconds.len() {
            let first = self.first;
            let from = self.seconds.len();
            self.seconds.extend((from..=i).map(|k| Second {
                t_s: first + k as i64,
                ..Second::default()
            }));
        }
        &mut self.seconds[i]
    }

    /// A valid answer at `now_ns` naming `round_id`; `cents` is a RED_PACKET's amount (0 for
    /// the others).
    pub fn answer(&mut self, now_ns: u64, outcome: Outcome, cents: u32, round_id: u32) {
        let s = self.at(now_ns);
        s.outcomes[outcome as usize] += 1;
        s.cents += u64::from(cents);
        self.round_seen(now_ns, outcome, round_id);
    }

    /// A round opens with its first answer that could win (NOTHING, GREETING or RED_PACKET
    /// name the active round), once: a late answer of a round already closed does not open
    /// it again. It closes with the first CLOSED that names another round (the next one, or
    /// none), or with the first answer of another round.
    fn round_seen(&mut self, now_ns: u64, outcome: Outcome, round_id: u32) {
        let t_s = self.from_t0_ns(now_ns) as f64 / 1e9;
        let mark = |round_id, opens| RoundMark {
            t_s,
            round_id,
            opens,
        };
        match outcome {
            Outcome::Nothing | Outcome::Greeting | Outcome::RedPacket => {
                if self.open == Some(round_id) || self.rounds.iter().any(|m| m.round_id == round_id)
                {
                    return;
                }
                if let Some(r) = self.open {
                    self.rounds.push(mark(r, false));
                }
                self.rounds.push(mark(round_id, true));
                self.open = Some(round_id);
            }
            Outcome::Closed => {
                if let Some(r) = self.open.filter(|&r| r != round_id) {
                    self.rounds.push(mark(r, false));
                    self.open = None;
                }
            }
            _ => {}
        }
    }

    /// An answer at `now_ns` carried config_version `to`, above every version before
    /// (`from`, not 0: the first answer's version is where the run starts, not a change).
    pub fn config_changed(&mut self, now_ns: u64, from: u32, to: u32) {
        self.changes.push(ConfigChange {
            t_s: self.from_t0_ns(now_ns) as f64 / 1e9,
            from_version: from,
            to_version: to,
        });
    }

    /// Every second from the one the clock started in to the last answer's. Seconds before
    /// the first answer are there too (all zero): the chart shows the wait.
    pub fn seconds(&self) -> &[Second] {
        &self.seconds
    }

    pub fn changes(&self) -> &[ConfigChange] {
        &self.changes
    }

    pub fn rounds(&self) -> &[RoundMark] {
        &self.rounds
    }

    /// Seconds to add to a time on the generator's clock to count from t0.
    pub fn shift_s(&self) -> f64 {
        self.shift_ns as f64 / 1e9
    }
}

#[cfg(test)]
mod test {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn answers_fall_in_whole_seconds_from_t0() {
        // The clock started 2.5 s before t0: its time 0 is in second -3, t0 is at 2.5 s.
        let mut b = Seconds::new(-2_500_000_000);
        b.answer(0, Outcome::Closed, 0, 1);
        b.answer(S / 2 - 1, Outcome::Closed, 0, 1); // -2.000000001 s: still second -3
        b.answer(S / 2, Outcome::Closed, 0, 1); // -2.0 s exactly: second -2
        b.answer(5 * S / 2 - 1, Outcome::Closed, 0, 1); // just before t0
        b.answer(5 * S / 2, Outcome::RedPacket, 888, 1); // t0 itself: second 0
        b.answer(5 * S / 2 + 1, Outcome::Nothing, 0, 1);
        b.answer(4 * S, Outcome::RedPacket, 12, 1); // 1.5 s after t0
        let s = b.seconds();
        assert_eq!(
            s.iter().map(|s| s.t_s).collect::<Vec<_>>(),
            vec![-3, -2, -1, 0, 1]
        );
        assert_eq!(
            s.iter().map(Second::answered).collect::<Vec<_>>(),
            vec![2, 1, 1, 2, 1]
        );
        assert_eq!(s[2].count(Outcome::Closed), 1);
        assert_eq!(s[3].count(Outcome::RedPacket), 1);
        assert_eq!(s[3].count(Outcome::Nothing), 1);
        assert_eq!((s[3].cents, s[4].cents), (888, 12));
        assert!(s[..3]
            .iter()
            .all(|s| s.answered() == s.count(Outcome::Closed)));
        assert_eq!(
            b.rounds(),
            &[RoundMark {
                t_s: 0.0,
                round_id: 1,
                opens: true
            }]
        );
    }

    #[test]
    fn rounds_open_and_close_as_their_answers_say() {
        let mut b = Seconds::new(0);
        let t = |m: &RoundMark| (m.t_s, m.round_id, m.opens);
        // The countdown names round 1; its first answer opens it, and a CLOSED of the
        // countdown read after that (out of order) does not close it.
        b.answer(S, Outcome::Closed, 0, 1);
        b.answer(2 * S, Outcome::Nothing, 0, 1);
        b.answer(2 * S + 1, Outcome::Closed, 0, 1);
        b.answer(3 * S, Outcome::Denied, 0, 1);
        b.answer(3 * S, Outcome::Greeting, 0, 1);
        // The end: CLOSED naming the next round (2); a late answer of round 1 does not open
        // it again.
        b.answer(4 * S, Outcome::Closed, 0, 2);
        b.answer(4 * S + 1, Outcome::RedPacket, 5, 1);
        b.answer(5 * S, Outcome::Closed, 0, 2);
        // Round 2 opens, then round 3 follows it without a CLOSED between, then all is over.
        b.answer(6 * S, Outcome::Nothing, 0, 2);
        b.answer(7 * S, Outcome::Nothing, 0, 3);
        b.answer(8 * S, Outcome::Throttled, 0, 3);
        b.answer(9 * S, Outcome::Closed, 0, 0);
        b.answer(10 * S, Outcome::Closed, 0, 0);
        assert_eq!(
            b.rounds().iter().map(t).collect::<Vec<_>>(),
            vec![
                (2.0, 1, true),
                (4.0, 1, false),
                (6.0, 2, true),
                (7.0, 2, false),
                (7.0, 3, true),
                (9.0, 3, false)
            ]
        );
    }

    #[test]
    fn seconds_without_answers_are_kept_as_zeros() {
        let mut b = Seconds::new(0);
        b.answer(3 * S + 7, Outcome::Greeting, 0, 1);
        let s = b.seconds();
        assert_eq!(s.len(), 4);
        assert_eq!(s[3], {
            let mut x = Second {
                t_s: 3,
                ..Second::default()
            };
            x.outcomes[Outcome::Greeting as usize] = 1;
            x
        });
        assert!(s[..3].iter().all(|s| s.answered() == 0 && s.cents == 0));
    }

    #[test]
    fn a_clock_started_after_t0_counts_on_from_there() {
        // Started 10.2 s after t0 (a generator that came late to the round).
        let mut b = Seconds::new(10_200_000_000);
        b.answer(0, Outcome::Nothing, 0, 4);
        b.answer(900_000_000, Outcome::Nothing, 0, 4);
        assert_eq!(b.seconds()[0].t_s, 10);
        assert_eq!(b.seconds()[1].t_s, 11);
        b.config_changed(300_000_000, 5, 6);
        assert_eq!(
            b.changes(),
            &[ConfigChange {
                t_s: 10.5,
                from_version: 5,
                to_version: 6
            }]
        );
        assert!((b.shift_s() - 10.2).abs() < 1e-9);
    }
}
