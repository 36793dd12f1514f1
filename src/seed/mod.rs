//! Red-packet seeds: which packets a worker may issue, in which order.
//!
//! An activity is planned once into packets (globally unique ids, amounts that add up to each
//! sponsor's budget exactly, a round each) and dealt into one shard per (node, worker). A
//! worker issues its shard's packets strictly in order: records are sorted by round, so the
//! packets of rounds up to `r` that are still unissued are exactly the records from the cursor
//! to the end of round `r`. That makes carry-over and pacing O(1) and lets a shard be a flat
//! array of fixed-size records, memory-mapped and marked in place.

pub mod lease;
pub mod manifest;
pub mod memory;
pub mod plan;
pub mod shard;

pub use lease::{ShardFlusher, ShardSource};
pub use memory::MemorySource;
pub use plan::{plan, PlannedPacket};
pub use shard::{ShardError, ShardExpect, ShardFile, ShardImage};

/// One packet as a worker issues it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeedRecord {
    pub packet_id: u64,
    pub amount_cents: u32,
    /// Index into the activity's sponsors (file order).
    pub sponsor_index: u16,
    /// Index into the activity's rounds (start order).
    pub round_index: u16,
}

/// Where a worker's red packets come from. Implemented by the in-memory source and by the
/// memory-mapped shards; the worker is generic over it, so the call is static.
pub trait SeedSource {
    /// Unissued packets whose round index is at most `round`: what round `round` may still pay
    /// out, carry-over from earlier rounds included.
    fn available(&self, round: u16) -> u64;

    /// The next packet round `round` would issue, without issuing it.
    fn peek(&self, round: u16) -> Option<SeedRecord>;

    /// Marks the packet `peek(round)` returned as issued. Called only after the claim is in the
    /// journal, so a crash between the two leaves a journal record that recovery reconciles.
    fn commit(&mut self, round: u16);
}
