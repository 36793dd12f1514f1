//! Claim journals: every issued red packet, recorded before its answer leaves the node.
//!
//! The worker appends through [`ClaimSink`], which must not block or make a syscall: file
//! journals copy the record into a `MAP_SHARED` segment (so it is in the page cache at once)
//! that a flusher makes durable on a cadence.
//!
//! - [`format`](mod@format): segment header and 64-byte records, checksums.
//! - [`file`](mod@file): the worker's [`file::JournalWriter`] and the control loop's
//!   [`file::JournalFlusher`].
//! - [`reader`]: reading a worker's segments back in order.

pub mod file;
pub mod format;
pub mod reader;

pub use file::{
    open_journal, scan_journal, JournalConfig, JournalFlusher, JournalOpen, JournalScan,
    JournalWriter,
};
pub use format::{JournalError, JournalId, JournalRecord, Kind};
pub use reader::{JournalEnd, JournalReader, TailPolicy};

/// One issued packet, as the payment system ("fund flow") reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Claim {
    pub packet_id: u64,
    pub user_id: u64,
    pub amount_cents: u32,
    pub sponsor_id: u32,
    pub round_id: u32,
    /// Unix milliseconds when it was issued.
    pub time_ms: u64,
}

/// Why a claim could not be recorded; the worker then does not issue the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    #[error("journal buffer full: the flusher is behind")]
    Full,
    #[error("journal failed and is closed")]
    Failed,
}

/// Where a worker records claims.
pub trait ClaimSink {
    fn append(&mut self, claim: &Claim) -> Result<(), SinkError>;
}

/// Claims kept in a preallocated vector: tests and benchmarks.
#[derive(Debug, Default, Clone)]
pub struct MemoryJournal {
    pub claims: Vec<Claim>,
    /// Appends beyond this many fail with `Full`, so tests can exercise that path.
    pub capacity: Option<usize>,
}

impl MemoryJournal {
    pub fn with_capacity(n: usize) -> Self {
        MemoryJournal {
            claims: Vec::with_capacity(n),
            capacity: None,
        }
    }
}

impl ClaimSink for MemoryJournal {
    #[inline]
    fn append(&mut self, claim: &Claim) -> Result<(), SinkError> {
        if self.capacity.is_some_and(|c| self.claims.len() >= c) {
            return Err(SinkError::Full);
        }
        self.claims.push(*claim);
        Ok(())
    }
}
