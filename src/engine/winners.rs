//! Who has won what: the per-user and per-sponsor limits, exact across restarts.
//!
//! Winners are few (at most the worker's packet count), so they get their own table instead
//! of widening every entry of the user table: a user entry stays 16 bytes and the limits cost
//! a second lookup only for users who have won before. The table is sized at start from the
//! shard's packet count and never evicts; recovery refills it from the claim journals.

use crate::activity::MAX_PER_USER;

const EMPTY: u16 = u16::MAX;

#[derive(Debug, Clone, Copy)]
struct Entry {
    user_id: u64,
    /// Sponsor indices won, EMPTY past the count.
    sponsors: [u16; MAX_PER_USER as usize],
}

/// Open addressing, linear probing, load factor at most 1/2 by construction.
#[derive(Debug)]
pub struct WinnerTable {
    slots: Vec<Option<Entry>>,
    mask: usize,
    len: usize,
}

/// Why a win cannot be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WinCheck {
    /// Within the limits, and [`WinnerTable::record`] will succeed.
    Allowed,
    UserLimit,
    SponsorLimit,
    /// A new winner, but the table is at its planned capacity: recording would fail, and the
    /// limits could no longer be followed, so the win is refused.
    TableFull,
}

#[inline]
fn hash(user_id: u64) -> u64 {
    // A multiply-xorshift mix: user ids from one node share their low bits modulo node count.
    let h = user_id.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^ (h >> 29)
}

impl WinnerTable {
    /// Room for `max_winners` distinct users (a worker can never have more winners than
    /// packets).
    pub fn with_capacity(max_winners: usize) -> Self {
        let cap = (max_winners.max(8) * 2).next_power_of_two();
        WinnerTable {
            slots: vec![None; cap],
            mask: cap - 1,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn find(&self, user_id: u64) -> (usize, bool) {
        let mut i = hash(user_id) as usize & self.mask;
        loop {
            match &self.slots[i] {
                None => return (i, false),
                Some(e) if e.user_id == user_id => return (i, true),
                Some(_) => i = (i + 1) & self.mask,
            }
        }
    }

    /// Room for one more winner within the load factor of 1/2.
    #[inline]
    fn has_room(&self) -> bool {
        (self.len + 1) * 2 <= self.slots.len()
    }

    /// Packets this user has won.
    pub fn wins(&self, user_id: u64) -> usize {
        match self.find(user_id) {
            (i, true) => self.slots[i].as_ref().map_or(0, |e| {
                e.sponsors.iter().take_while(|&&s| s != EMPTY).count()
            }),
            _ => 0,
        }
    }

    /// Whether the user may win a packet of `sponsor_index` under the limits.
    #[inline]
    pub fn check(
        &self,
        user_id: u64,
        sponsor_index: u16,
        per_user: u8,
        per_sponsor: u8,
    ) -> WinCheck {
        let (i, found) = self.find(user_id);
        if !found {
            return if self.has_room() {
                WinCheck::Allowed
            } else {
                WinCheck::TableFull
            };
        }
        let Some(e) = &self.slots[i] else {
            return WinCheck::Allowed;
        };
        let mut total = 0u8;
        let mut same = 0u8;
        for &s in e.sponsors.iter().take_while(|&&s| s != EMPTY) {
            total += 1;
            same += (s == sponsor_index) as u8;
        }
        if total >= per_user || total as usize >= MAX_PER_USER as usize {
            WinCheck::UserLimit
        } else if same >= per_sponsor {
            WinCheck::SponsorLimit
        } else {
            WinCheck::Allowed
        }
    }

    /// Records a win. Returns false (and records nothing) if the user already holds
    /// `MAX_PER_USER` wins or the table is at its planned capacity: callers check limits
    /// first, so either means a bug or a journal from a different activity.
    pub fn record(&mut self, user_id: u64, sponsor_index: u16) -> bool {
        let (i, found) = self.find(user_id);
        if !found {
            if !self.has_room() {
                return false;
            }
            let mut sponsors = [EMPTY; MAX_PER_USER as usize];
            sponsors[0] = sponsor_index;
            self.slots[i] = Some(Entry { user_id, sponsors });
            self.len += 1;
            return true;
        }
        let Some(e) = self.slots[i].as_mut() else {
            return false;
        };
        match e.sponsors.iter_mut().find(|s| **s == EMPTY) {
            Some(free) => {
                *free = sponsor_index;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn limits_per_user_and_per_sponsor() {
        let mut t = WinnerTable::with_capacity(10);
        assert_eq!(t.check(5, 0, 3, 1), WinCheck::Allowed);
        assert!(t.record(5, 0));
        assert_eq!(t.check(5, 0, 3, 1), WinCheck::SponsorLimit);
        assert_eq!(t.check(5, 1, 3, 1), WinCheck::Allowed);
        assert!(t.record(5, 1));
        assert!(t.record(5, 2));
        assert_eq!(t.check(5, 3, 3, 1), WinCheck::UserLimit);
        assert_eq!(t.wins(5), 3);
        assert_eq!(t.wins(6), 0);
        assert_eq!(t.check(5, 0, 4, 2), WinCheck::Allowed);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn capacity_is_bounded_not_panicking() {
        let mut t = WinnerTable::with_capacity(4);
        let cap = t.slots.len() / 2;
        for u in 0..cap as u64 {
            assert!(t.record(u, 0));
        }
        assert!(!t.record(u64::MAX, 0));
        // The check says so before anything is journaled, so a win is refused, not lost.
        assert_eq!(t.check(u64::MAX, 0, 3, 1), WinCheck::TableFull);
        assert_eq!(
            t.check(0, 1, 3, 1),
            WinCheck::Allowed,
            "known winners still fit"
        );
        for u in 0..cap as u64 {
            assert_eq!(t.wins(u), 1);
        }
    }
}
