//! An in-memory seed source: the shard's records in a `Vec`, issued state in RAM.
//!
//! Serves tests, benchmarks and nodes started straight from an activity file; nothing it
//! issues survives a restart, so production nodes use the memory-mapped shards instead.

use super::{SeedRecord, SeedSource};

#[derive(Debug, Clone)]
pub struct MemorySource {
    records: Vec<SeedRecord>,
    /// round_end[r]: index one past the last record of round r.
    round_end: Vec<usize>,
    cursor: usize,
}

impl MemorySource {
    /// `records` must be sorted by round index; `rounds` is the activity's round count.
    pub fn new(records: Vec<SeedRecord>, rounds: usize) -> Self {
        debug_assert!(records
            .windows(2)
            .all(|w| w[0].round_index <= w[1].round_index));
        let round_end = (0..rounds)
            .map(|r| records.partition_point(|x| x.round_index as usize <= r))
            .collect();
        MemorySource {
            records,
            round_end,
            cursor: 0,
        }
    }

    /// Packets issued so far.
    pub fn issued(&self) -> usize {
        self.cursor
    }

    pub fn records(&self) -> &[SeedRecord] {
        &self.records
    }

    #[inline]
    fn end(&self, round: u16) -> usize {
        self.round_end
            .get(round as usize)
            .copied()
            .unwrap_or(self.records.len())
    }
}

impl SeedSource for MemorySource {
    #[inline]
    fn available(&self, round: u16) -> u64 {
        self.end(round).saturating_sub(self.cursor) as u64
    }

    #[inline]
    fn peek(&self, round: u16) -> Option<SeedRecord> {
        if self.cursor < self.end(round) {
            self.records.get(self.cursor).copied()
        } else {
            None
        }
    }

    #[inline]
    fn commit(&mut self, round: u16) {
        if self.cursor < self.end(round) {
            self.cursor += 1;
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn rec(id: u64, round: u16) -> SeedRecord {
        SeedRecord {
            packet_id: id,
            amount_cents: 1,
            sponsor_index: 0,
            round_index: round,
        }
    }

    #[test]
    fn carry_over_and_round_bounds() {
        let mut s = MemorySource::new(vec![rec(1, 0), rec(2, 0), rec(3, 1)], 2);
        assert_eq!(s.available(0), 2);
        assert_eq!(s.available(1), 3);
        assert_eq!(s.peek(0), Some(rec(1, 0)));
        s.commit(0);
        // Round 1 starts with one packet of round 0 left over: it carries over.
        assert_eq!(s.available(1), 2);
        assert_eq!(s.peek(1), Some(rec(2, 0)));
        s.commit(1);
        s.commit(1);
        assert_eq!(s.peek(1), None);
        s.commit(1);
        assert_eq!(s.issued(), 3);
        assert_eq!(s.available(1), 0);
    }
}
