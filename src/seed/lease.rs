//! Issuing from a mapped shard under a durable lease.
//!
//! The worker ([`ShardSource`]) marks records issued in place, with no syscall. It may only
//! issue records below the lease, an index the flusher ([`ShardFlusher`]) has made durable in
//! the shard header *before* publishing it to the worker through an atomic. After a power cut
//! every packet the worker could have issued is therefore below the durable lease, and
//! recovery forfeits those of them that are not in the durable journal: nothing is issued twice,
//! and at most about one lease window is lost.

use std::cell::Cell;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam::utils::CachePadded;
use memmap2::MmapMut;

use super::shard::{
    current_boot_id, decode_record, field, write_mutable, ShardError, ShardFile, ShardHeader,
    ISSUED, RECORD_LEN, UNISSUED,
};
use super::{SeedRecord, SeedSource};

/// Default lease window: records the flusher reserves ahead of the worker's cursor.
pub const DEFAULT_WINDOW: u64 = 1024;

#[derive(Debug, Default)]
struct Shared {
    /// Durable lease: the worker may issue records with index below it. Written by the flusher.
    lease: CachePadded<AtomicU64>,
    /// The worker's cursor (first unissued). Written by the worker, read by the flusher.
    cursor: CachePadded<AtomicU64>,
}

/// The worker's side: implements [`SeedSource`] over the mapped records.
#[derive(Debug)]
pub struct ShardSource {
    map: MmapMut,
    len: usize,
    round_end: Vec<usize>,
    cursor: usize,
    shared: Arc<Shared>,
    /// peek() calls that found a packet due but beyond the lease.
    lease_stalls: Cell<u64>,
}

/// The control loop's side: extends and persists the lease, and closes the shard cleanly.
#[derive(Debug)]
pub struct ShardFlusher {
    path: PathBuf,
    file: File,
    header: ShardHeader,
    shared: Arc<Shared>,
    window: u64,
}

impl ShardFile {
    /// Starts serving from this shard: clears the clean flag, records this boot, sets the lease
    /// to the first unissued record and makes that durable, then extends the lease by one
    /// window (durably) so the worker can start. Records below [`ShardFile::marked_end`] must
    /// all be issued or forfeited (recovery guarantees it).
    pub fn into_source(self, window: u64) -> Result<(ShardSource, ShardFlusher), ShardError> {
        self.into_source_with_boot(window, current_boot_id())
    }

    /// [`ShardFile::into_source`] with an explicit boot id (tests simulate reboots with it).
    pub fn into_source_with_boot(
        mut self,
        window: u64,
        boot_id: [u8; 16],
    ) -> Result<(ShardSource, ShardFlusher), ShardError> {
        let cursor = self.marked_end();
        if let Some(i) = (0..cursor).find(|&i| self.state(i) == UNISSUED) {
            return Err(ShardError::Record {
                path: self.path.clone(),
                index: i as u64,
                what: format!(
                    "unissued, but records up to {cursor} are marked: run recovery first"
                ),
            });
        }
        // Marks first, then the header that says we are open.
        self.sync()?;
        self.header.clean = false;
        self.header.boot_id = boot_id;
        self.header.reserved_through = self.header.reserved_through.max(cursor as u64);
        self.write_mutable()?;
        let shared = Arc::new(Shared::default());
        shared
            .lease
            .store(self.header.reserved_through, Ordering::Release);
        shared.cursor.store(cursor as u64, Ordering::Release);
        let round_end = self.header.round_ends.iter().map(|&e| e as usize).collect();
        let ShardFile {
            path,
            header,
            file,
            map,
        } = self;
        let mut flusher = ShardFlusher {
            path,
            file,
            header,
            shared: shared.clone(),
            window: window.max(1),
        };
        flusher.flush()?;
        let len = flusher.header.record_count as usize;
        Ok((
            ShardSource {
                map,
                len,
                round_end,
                cursor,
                shared,
                lease_stalls: Cell::new(0),
            },
            flusher,
        ))
    }
}

impl ShardSource {
    /// Index of the next record to issue.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The lease as the worker sees it.
    #[inline]
    pub fn lease(&self) -> usize {
        self.shared.lease.load(Ordering::Acquire) as usize
    }

    /// How often a packet was due but the lease stopped it (the flusher is behind).
    pub fn lease_stalls(&self) -> u64 {
        self.lease_stalls.get()
    }

    /// Index one past the last record of round index `round`.
    #[inline]
    pub fn round_end(&self, round: u16) -> usize {
        self.round_end
            .get(round as usize)
            .copied()
            .unwrap_or(self.len)
    }

    #[inline]
    fn record(&self, i: usize) -> SeedRecord {
        decode_record(&self.map[i * RECORD_LEN..(i + 1) * RECORD_LEN])
    }
}

impl SeedSource for ShardSource {
    /// Unissued packets of rounds up to `round`, whether or not the lease covers them yet:
    /// this is money left, for pacing; [`SeedSource::peek`] applies the lease.
    #[inline]
    fn available(&self, round: u16) -> u64 {
        self.round_end(round).saturating_sub(self.cursor) as u64
    }

    #[inline]
    fn peek(&self, round: u16) -> Option<SeedRecord> {
        let end = self.round_end(round);
        if self.cursor >= end {
            return None;
        }
        if self.cursor >= self.lease() {
            self.lease_stalls.set(self.lease_stalls.get() + 1);
            return None;
        }
        Some(self.record(self.cursor))
    }

    #[inline]
    fn commit(&mut self, round: u16) {
        if self.cursor < self.round_end(round).min(self.lease()) {
            self.map[self.cursor * RECORD_LEN + field::record::STATE] = ISSUED;
            self.cursor += 1;
            self.shared
                .cursor
                .store(self.cursor as u64, Ordering::Release);
        }
    }
}

impl ShardFlusher {
    /// Extends the lease when the worker's cursor is within half a window of it: writes the new
    /// lease into the header, `fdatasync`s the shard (marks included), and only then publishes
    /// it to the worker. Call every few milliseconds from the control loop or a flush thread.
    /// Returns the lease in force.
    pub fn flush(&mut self) -> Result<u64, ShardError> {
        let cursor = self.shared.cursor.load(Ordering::Acquire);
        let lease = self.header.reserved_through;
        let len = self.header.record_count;
        if lease < len && lease < cursor + self.window.div_ceil(2) {
            let new = (cursor + self.window).min(len);
            self.header.reserved_through = new;
            write_mutable(&self.path, &self.file, &self.header)?;
            self.shared.lease.store(new, Ordering::Release);
        }
        Ok(self.header.reserved_through)
    }

    /// The worker's cursor as last published.
    pub fn cursor(&self) -> u64 {
        self.shared.cursor.load(Ordering::Acquire)
    }

    /// The durable lease.
    pub fn lease(&self) -> u64 {
        self.header.reserved_through
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Clean close after the worker stopped: makes the marks durable, shrinks the lease to the
    /// cursor and sets the clean flag (durably). The next open then forfeits nothing.
    pub fn close(mut self, source: ShardSource) -> Result<(), ShardError> {
        source
            .map
            .flush()
            .map_err(|e| ShardError::io(&self.path, e))?;
        self.file
            .sync_data()
            .map_err(|e| ShardError::io(&self.path, e))?;
        self.header.reserved_through = source.cursor as u64;
        self.header.clean = true;
        write_mutable(&self.path, &self.file, &self.header)
    }
}
