//! File journals: the worker appends into a preallocated, `MAP_SHARED` segment; a flusher makes
//! it durable on a cadence and prepares the next segment ahead of time.
//!
//! An append is a 64-byte copy into the mapping plus one atomic store: the record is in the
//! kernel's page cache before the answer is transmitted, so a `kill -9` right after it loses
//! nothing, and no syscall sits on the per-packet path. `fdatasync` (the power-cut line)
//! happens in [`JournalFlusher::flush`], which the control loop or a flush thread calls every
//! few milliseconds. When a segment fills, the worker switches to the segment the flusher has
//! already created, allocated and mapped; if there is none yet, `append` says `Full` and the
//! worker does not issue.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam::queue::ArrayQueue;
use crossbeam::utils::CachePadded;
use memmap2::MmapMut;

use super::format::{
    encode, segment_name, JournalError, JournalId, JournalRecord, Kind, SegmentHeader,
    DEFAULT_SEGMENT_RECORDS, HEADER_LEN, RECORD_LEN,
};
use super::reader::{list_segments, JournalEnd, JournalReader, SegmentInfo, TailPolicy};
use super::{Claim, ClaimSink, SinkError};
use crate::mmap;

/// How a journal is laid out on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalConfig {
    /// Records per segment file (each 4 KiB + 64 B per record).
    pub segment_records: u64,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            segment_records: DEFAULT_SEGMENT_RECORDS,
        }
    }
}

/// A mapped segment.
#[derive(Debug)]
struct Segment {
    header: SegmentHeader,
    map: MmapMut,
}

#[derive(Debug)]
struct Shared {
    /// Records appended: the next sequence number. Written by the worker only.
    appended: CachePadded<AtomicU64>,
    /// Records known to be on disk. Written by the flusher only.
    durable: CachePadded<AtomicU64>,
    /// Set by the flusher when a sync fails; the worker then refuses to append.
    failed: AtomicBool,
    /// The next segment, created and mapped by the flusher.
    ready: ArrayQueue<Segment>,
    /// Full segments handed back so that unmapping them is not on the worker's path.
    retired: ArrayQueue<Segment>,
}

/// The worker's side of a journal: implements [`ClaimSink`].
#[derive(Debug)]
pub struct JournalWriter {
    seg: Segment,
    /// Next slot in `seg`.
    pos: u64,
    seq: u64,
    shared: Arc<Shared>,
}

/// The flusher's side of a journal.
#[derive(Debug)]
pub struct JournalFlusher {
    dir: PathBuf,
    id: JournalId,
    config: JournalConfig,
    /// Holds the directory's `flock` for as long as the journal is open.
    _lock: File,
    shared: Arc<Shared>,
    /// Segments that may hold records not yet durable, oldest first.
    files: Vec<(SegmentHeader, File)>,
    /// Header of the segment to create next.
    next: SegmentHeader,
    durable: u64,
}

/// What opening a journal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalOpen {
    /// Where the existing records ended.
    pub end: JournalEnd,
    /// Non-empty slots after the end that were wiped (torn record and power-cut debris).
    pub wiped: u64,
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(segment_name(number))
}

fn lock_err(path: &Path, e: io::Error) -> JournalError {
    if e.kind() == io::ErrorKind::WouldBlock {
        JournalError::Locked {
            path: path.to_path_buf(),
        }
    } else {
        JournalError::io(path, e)
    }
}

/// Creates a segment atomically (temporary name, allocate, header, sync, rename, sync the
/// directory) and maps it. Runs on the flusher, never on the worker.
fn create_segment(dir: &Path, header: SegmentHeader) -> Result<(Segment, File), JournalError> {
    let path = segment_path(dir, header.segment);
    let tmp = path.with_extension("jnl.tmp");
    let err = |e| JournalError::io(&path, e);
    {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(err)?;
        mmap::allocate(&f, header.file_len()).map_err(err)?;
        f.write_all_at(&header.to_bytes(), 0).map_err(err)?;
        f.sync_all().map_err(err)?;
    }
    std::fs::rename(&tmp, &path).map_err(err)?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| JournalError::io(dir, e))?;
    map_segment(&path, header)
}

fn map_segment(path: &Path, header: SegmentHeader) -> Result<(Segment, File), JournalError> {
    let err = |e| JournalError::io(path, e);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(err)?;
    let map = mmap::map_shared(&f, 0, header.file_len() as usize).map_err(err)?;
    Ok((Segment { header, map }, f))
}

/// Zeroes every non-empty slot from `from` on; returns how many there were.
fn wipe(seg: &mut Segment, from: u64) -> u64 {
    let mut n = 0;
    for slot in from..seg.header.capacity {
        let at = HEADER_LEN + slot as usize * RECORD_LEN;
        let b = &mut seg.map[at..at + RECORD_LEN];
        if b.iter().any(|&x| x != 0) {
            b.fill(0);
            n += 1;
        }
    }
    n
}

/// Opens (or creates) one worker's journal in `dir` for appending: [`scan_journal`], then
/// [`JournalScan::open`].
pub fn open_journal(
    dir: &Path,
    id: JournalId,
    config: JournalConfig,
    policy: TailPolicy,
    visit: impl FnMut(&JournalRecord),
) -> Result<(JournalWriter, JournalFlusher, JournalOpen), JournalError> {
    scan_journal(dir, id, config, policy, visit)?.open()
}

/// A journal that has been read but not changed: the first half of opening it.
///
/// Recovery reads every worker's journal and checks it against the shards before it changes
/// any file (a journal directory that cannot explain the shards' marks must stop the node
/// with nothing touched), so reading and preparing for appends are two steps.
#[derive(Debug)]
pub struct JournalScan {
    dir: PathBuf,
    id: JournalId,
    config: JournalConfig,
    /// The directory's `flock`, if the directory exists (an absent one is created by `open`).
    lock: Option<File>,
    end: JournalEnd,
    segments: Vec<SegmentInfo>,
}

/// Reads one worker's journal in `dir` (an absent directory is an empty journal), passing
/// every record to `visit`, and finds its end under `policy`. Changes nothing on disk; holds
/// the directory's lock so no other node appends meanwhile.
pub fn scan_journal(
    dir: &Path,
    id: JournalId,
    config: JournalConfig,
    policy: TailPolicy,
    mut visit: impl FnMut(&JournalRecord),
) -> Result<JournalScan, JournalError> {
    if config.segment_records == 0 {
        return Err(JournalError::Layout {
            path: dir.to_path_buf(),
            what: "segment_records must be at least 1".into(),
        });
    }
    let lock = match File::open(dir) {
        Ok(f) => {
            mmap::lock_exclusive(&f).map_err(|e| lock_err(dir, e))?;
            Some(f)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(JournalError::io(dir, e)),
    };
    let mut reader = JournalReader::open_dir(dir, Some(&id), policy)?;
    while let Some(r) = reader.next_record()? {
        visit(&r);
    }
    let end = reader.end().unwrap_or_default();
    let segments = reader.segments().to_vec();
    Ok(JournalScan {
        dir: dir.to_path_buf(),
        id,
        config,
        lock,
        end,
        segments,
    })
}

impl JournalScan {
    /// Where the records ended.
    pub fn end(&self) -> JournalEnd {
        self.end
    }

    /// Segment files found (0: no journal at all in the directory).
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Prepares the journal for appending: creates the directory and the first segment if
    /// there are none, wipes whatever follows the end (a torn record, power-cut debris), and
    /// maps the segment to append to. The writer goes to the worker, the flusher to the
    /// control loop.
    pub fn open(self) -> Result<(JournalWriter, JournalFlusher, JournalOpen), JournalError> {
        let JournalScan {
            dir,
            id,
            config,
            lock,
            end,
            segments,
        } = self;
        let dir = dir.as_path();
        let lock = match lock {
            Some(l) => l,
            None => {
                std::fs::create_dir_all(dir).map_err(|e| JournalError::io(dir, e))?;
                let l = File::open(dir).map_err(|e| JournalError::io(dir, e))?;
                mmap::lock_exclusive(&l).map_err(|e| lock_err(dir, e))?;
                if !list_segments(dir, Some(&id))?.is_empty() {
                    // Another process created a journal here after the scan.
                    return Err(JournalError::Locked {
                        path: dir.to_path_buf(),
                    });
                }
                l
            }
        };
        open_scanned(dir, id, config, lock, end, segments)
    }
}

fn open_scanned(
    dir: &Path,
    id: JournalId,
    config: JournalConfig,
    lock: File,
    end: JournalEnd,
    segments: Vec<SegmentInfo>,
) -> Result<(JournalWriter, JournalFlusher, JournalOpen), JournalError> {
    let mut wiped = 0;
    let mut files = Vec::new();
    let mut ready = None;
    let (current, pos) = if segments.is_empty() {
        let header = SegmentHeader {
            id,
            segment: 0,
            first_seq: 0,
            capacity: config.segment_records,
        };
        let (seg, f) = create_segment(dir, header)?;
        files.push((header, f));
        (seg, 0)
    } else {
        let mut current = None;
        for (i, s) in segments.iter().enumerate() {
            if i < end.segment {
                continue;
            }
            if i > end.segment + 1 {
                // Only possible after a power cut: the end moved back by more than a segment.
                std::fs::remove_file(&s.path).map_err(|e| JournalError::io(&s.path, e))?;
                continue;
            }
            let (mut seg, f) = map_segment(&s.path, s.header)?;
            // The reader has checked what follows the end: wipe only when something does
            // (a torn record, or power-cut debris), so a normal start touches no extra pages.
            let n = if end.torn || end.discarded > 0 {
                let from = if i == end.segment { end.slot } else { 0 };
                wipe(&mut seg, from)
            } else {
                0
            };
            if n > 0 {
                f.sync_data().map_err(|e| JournalError::io(&s.path, e))?;
            }
            wiped += n;
            files.push((s.header, f));
            if i == end.segment {
                current = Some(seg);
            } else {
                ready = Some(seg);
            }
        }
        (current.expect("end segment is listed"), end.slot)
    };
    let seq = current.header.first_seq + pos;
    debug_assert_eq!(seq, end.records);
    let last = ready.as_ref().unwrap_or(&current).header;
    let next = SegmentHeader {
        id,
        segment: last.segment + 1,
        first_seq: last.first_seq + last.capacity,
        capacity: config.segment_records,
    };
    let shared = Arc::new(Shared {
        appended: CachePadded::new(AtomicU64::new(seq)),
        durable: CachePadded::new(AtomicU64::new(seq)),
        failed: AtomicBool::new(false),
        ready: ArrayQueue::new(1),
        retired: ArrayQueue::new(4),
    });
    if let Some(r) = ready {
        let _ = shared.ready.push(r);
    }
    let mut flusher = JournalFlusher {
        dir: dir.to_path_buf(),
        id,
        config,
        _lock: lock,
        shared: shared.clone(),
        files,
        next,
        durable: seq,
    };
    flusher.flush()?;
    let writer = JournalWriter {
        seg: current,
        pos,
        seq,
        shared,
    };
    Ok((writer, flusher, JournalOpen { end, wiped }))
}

impl JournalWriter {
    /// Appends one record: a copy into the mapped segment and an atomic store, no syscall.
    #[inline]
    pub fn append_kind(&mut self, kind: Kind, claim: &Claim) -> Result<(), SinkError> {
        if self.shared.failed.load(Ordering::Relaxed) {
            return Err(SinkError::Failed);
        }
        if self.pos == self.seg.header.capacity {
            self.rotate()?;
        }
        let at = HEADER_LEN + self.pos as usize * RECORD_LEN;
        self.seg.map[at..at + RECORD_LEN].copy_from_slice(&encode(self.seq, kind, claim));
        self.pos += 1;
        self.seq += 1;
        self.shared.appended.store(self.seq, Ordering::Release);
        Ok(())
    }

    #[cold]
    fn rotate(&mut self) -> Result<(), SinkError> {
        let next = self.shared.ready.pop().ok_or(SinkError::Full)?;
        debug_assert_eq!(next.header.first_seq, self.seq);
        let old = std::mem::replace(&mut self.seg, next);
        // Unmapping is a syscall: leave it to the flusher when there is room to.
        let _ = self.shared.retired.push(old);
        self.pos = 0;
        Ok(())
    }

    /// Records a forfeited packet (recovery only).
    pub fn forfeit(&mut self, claim: &Claim) -> Result<(), SinkError> {
        self.append_kind(Kind::Forfeit, claim)
    }

    /// Records appended so far (the next sequence number).
    pub fn appended(&self) -> u64 {
        self.seq
    }

    /// Records the flusher has made durable.
    pub fn durable(&self) -> u64 {
        self.shared.durable.load(Ordering::Acquire)
    }
}

impl ClaimSink for JournalWriter {
    #[inline]
    fn append(&mut self, claim: &Claim) -> Result<(), SinkError> {
        self.append_kind(Kind::Claim, claim)
    }
}

impl JournalFlusher {
    /// Makes every appended record durable (`fdatasync` of the segments that hold new
    /// records), prepares the next segment if the worker took the ready one, and unmaps
    /// retired segments. Returns the durable record count. On an I/O error the journal is
    /// marked failed: the worker's appends fail from then on, so nothing is issued unrecorded.
    pub fn flush(&mut self) -> Result<u64, JournalError> {
        match self.flush_inner() {
            Ok(d) => Ok(d),
            Err(e) => {
                self.shared.failed.store(true, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    fn flush_inner(&mut self) -> Result<u64, JournalError> {
        let appended = self.shared.appended.load(Ordering::Acquire);
        if appended > self.durable {
            for (h, f) in &self.files {
                if h.first_seq < appended && h.first_seq + h.capacity > self.durable {
                    f.sync_data()
                        .map_err(|e| JournalError::io(&segment_path(&self.dir, h.segment), e))?;
                }
            }
            self.durable = appended;
            self.shared.durable.store(appended, Ordering::Release);
        }
        // Keep the segment holding the next record and everything after it.
        let durable = self.durable;
        if self.files.len() > 1 {
            self.files
                .retain(|(h, _)| h.first_seq + h.capacity > durable);
        }
        while let Some(old) = self.shared.retired.pop() {
            drop(old);
        }
        if self.shared.ready.is_empty() {
            let (seg, f) = create_segment(&self.dir, self.next)?;
            self.files.push((self.next, f));
            self.next.segment += 1;
            self.next.first_seq += self.next.capacity;
            self.next.capacity = self.config.segment_records;
            let _ = self.shared.ready.push(seg);
        }
        Ok(self.durable)
    }

    pub fn id(&self) -> JournalId {
        self.id
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records known durable.
    pub fn durable(&self) -> u64 {
        self.durable
    }

    /// Records appended (as last published by the worker).
    pub fn appended(&self) -> u64 {
        self.shared.appended.load(Ordering::Acquire)
    }

    /// Clean close after the worker stopped: everything appended is made durable.
    pub fn close(mut self, writer: JournalWriter) -> Result<u64, JournalError> {
        drop(writer);
        self.flush()
    }
}
