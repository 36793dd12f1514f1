//! Reading a worker's journal: every segment in order, sequentially, stopping at the end.
//!
//! The end is the first slot that is not a valid record. What may follow it depends on how the
//! writer stopped, which the caller says with a [`TailPolicy`]:
//! - after a clean stop or a process crash (page cache intact), only zeros may follow; one torn
//!   record (a `kill -9` in the middle of a 64-byte copy) is allowed as the last slot;
//! - after a power cut, pages past the last `fdatasync` may have reached the disk in any order,
//!   so records after a hole are possible: they are counted as discarded (recovery forfeits
//!   their packets and the writer wipes them).

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::format::{
    decode, segment_number, JournalError, JournalId, JournalRecord, SegmentHeader, Slot,
    HEADER_LEN, RECORD_LEN,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TailPolicy {
    /// Anything but zeros (and one torn last record) after the end is an error.
    Strict,
    /// Non-empty slots after the end are counted and ignored (recovery after a power cut).
    Lenient,
}

/// One segment file.
#[derive(Debug, Clone)]
pub struct SegmentInfo {
    pub path: PathBuf,
    pub header: SegmentHeader,
}

/// Where the journal ends, once the reader has returned `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JournalEnd {
    /// Index in [`JournalReader::segments`] of the segment holding the end (0 if none).
    pub segment: usize,
    /// Slot of the end in that segment (its capacity when the segment is full).
    pub slot: u64,
    /// Valid records read: the next record's sequence number.
    pub records: u64,
    /// The end is a torn (invalid) record followed only by zeros.
    pub torn: bool,
    /// Non-empty slots after the end (only with [`TailPolicy::Lenient`]).
    pub discarded: u64,
}

/// Sequential reader over one worker's segments.
#[derive(Debug)]
pub struct JournalReader {
    segments: Vec<SegmentInfo>,
    policy: TailPolicy,
    cur: usize,
    file: Option<File>,
    buf: Vec<u8>,
    pos: usize,
    filled: usize,
    slot: u64,
    seq: u64,
    end: Option<JournalEnd>,
}

const CHUNK: usize = 1 << 20;

/// Lists and validates the segments in `dir` (files named `seg-<n>.jnl`), in order.
pub fn list_segments(
    dir: &Path,
    expect: Option<&JournalId>,
) -> Result<Vec<SegmentInfo>, JournalError> {
    let mut numbered = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(JournalError::io(dir, e)),
    };
    for entry in rd {
        let entry = entry.map_err(|e| JournalError::io(dir, e))?;
        let name = entry.file_name();
        if let Some(n) = name.to_str().and_then(segment_number) {
            numbered.push((n, entry.path()));
        }
    }
    numbered.sort();
    let mut out: Vec<SegmentInfo> = Vec::with_capacity(numbered.len());
    for (n, path) in numbered {
        let header = read_header(&path)?;
        if header.segment != n {
            return Err(JournalError::Layout {
                path,
                what: format!("file name says segment {n}, header says {}", header.segment),
            });
        }
        let expect = expect.copied().or(out.first().map(|s| s.header.id));
        if let Some(want) = expect {
            header.check_id(&path, &want)?;
        }
        let (want_n, want_seq) = match out.last() {
            Some(p) => (p.header.segment + 1, p.header.first_seq + p.header.capacity),
            None => (0, 0),
        };
        if header.segment != want_n || header.first_seq != want_seq {
            return Err(JournalError::Layout {
                path,
                what: format!(
                    "segment {} starts at record {}, expected segment {want_n} at record {want_seq} (missing or extra segment)",
                    header.segment, header.first_seq
                ),
            });
        }
        out.push(SegmentInfo { path, header });
    }
    Ok(out)
}

/// Reads and checks one segment's header.
pub fn read_header(path: &Path) -> Result<SegmentHeader, JournalError> {
    let mut f = File::open(path).map_err(|e| JournalError::io(path, e))?;
    let len = f.metadata().map_err(|e| JournalError::io(path, e))?.len();
    let mut h = vec![0u8; HEADER_LEN.min(len as usize)];
    f.read_exact(&mut h)
        .map_err(|e| JournalError::io(path, e))?;
    SegmentHeader::parse(path, &h, len)
}

impl JournalReader {
    /// All segments of one worker's journal directory (an absent directory is an empty
    /// journal). `expect` checks the segments' activity, node and worker.
    pub fn open_dir(
        dir: &Path,
        expect: Option<&JournalId>,
        policy: TailPolicy,
    ) -> Result<Self, JournalError> {
        Ok(Self::new(list_segments(dir, expect)?, policy))
    }

    /// A single segment file, read on its own (its records start at its first sequence number).
    pub fn open_file(path: &Path, policy: TailPolicy) -> Result<Self, JournalError> {
        let header = read_header(path)?;
        let mut r = Self::new(
            vec![SegmentInfo {
                path: path.to_path_buf(),
                header,
            }],
            policy,
        );
        r.seq = header.first_seq;
        Ok(r)
    }

    fn new(segments: Vec<SegmentInfo>, policy: TailPolicy) -> Self {
        JournalReader {
            segments,
            policy,
            cur: 0,
            file: None,
            buf: vec![0u8; CHUNK],
            pos: 0,
            filled: 0,
            slot: 0,
            seq: 0,
            end: None,
        }
    }

    pub fn segments(&self) -> &[SegmentInfo] {
        &self.segments
    }

    /// Where the journal ended; `None` until [`JournalReader::next_record`] returned `None`.
    pub fn end(&self) -> Option<JournalEnd> {
        self.end
    }

    /// The next slot's bytes, moving across segments; `None` past the last segment.
    fn next_slot(&mut self) -> Result<Option<(usize, u64)>, JournalError> {
        loop {
            let Some(seg) = self.segments.get(self.cur) else {
                return Ok(None);
            };
            if self.slot >= seg.header.capacity {
                self.cur += 1;
                self.slot = 0;
                self.file = None;
                continue;
            }
            if self.file.is_none() {
                let mut f = File::open(&seg.path).map_err(|e| JournalError::io(&seg.path, e))?;
                let mut skip = [0u8; HEADER_LEN];
                f.read_exact(&mut skip)
                    .map_err(|e| JournalError::io(&seg.path, e))?;
                self.file = Some(f);
                self.pos = 0;
                self.filled = 0;
            }
            if self.pos >= self.filled {
                let left = (seg.header.capacity - self.slot) as usize * RECORD_LEN;
                let want = left.min(CHUNK);
                let f = self.file.as_mut().expect("opened above");
                f.read_exact(&mut self.buf[..want])
                    .map_err(|e| JournalError::io(&seg.path, e))?;
                self.pos = 0;
                self.filled = want;
            }
            let at = self.pos;
            self.pos += RECORD_LEN;
            let slot = self.slot;
            self.slot += 1;
            return Ok(Some((at, slot)));
        }
    }

    /// The next valid record, `None` at the end of the journal.
    pub fn next_record(&mut self) -> Result<Option<JournalRecord>, JournalError> {
        if self.end.is_some() {
            return Ok(None);
        }
        let Some((at, slot)) = self.next_slot()? else {
            let (segment, slot) = match self.segments.len() {
                0 => (0, 0),
                n => (n - 1, self.segments[n - 1].header.capacity),
            };
            self.end = Some(JournalEnd {
                segment,
                slot,
                records: self.seq,
                torn: false,
                discarded: 0,
            });
            return Ok(None);
        };
        let seg = self.cur;
        match decode(&self.buf[at..at + RECORD_LEN], self.seq) {
            Slot::Record(r) => {
                self.seq += 1;
                Ok(Some(r))
            }
            Slot::Empty => {
                self.finish(seg, slot, None)?;
                Ok(None)
            }
            Slot::Invalid(why) => {
                self.finish(seg, slot, Some(why))?;
                Ok(None)
            }
        }
    }

    /// Scans what follows the end and decides whether it is a clean end.
    fn finish(
        &mut self,
        seg: usize,
        slot: u64,
        invalid: Option<&'static str>,
    ) -> Result<(), JournalError> {
        let mut discarded = 0u64;
        let mut first_after: Option<(usize, u64)> = None;
        while let Some((at, s)) = self.next_slot()? {
            if self.buf[at..at + RECORD_LEN].iter().any(|&b| b != 0) {
                discarded += 1;
                first_after.get_or_insert((self.cur, s));
            }
        }
        let path = self.segments[seg].path.clone();
        if let (TailPolicy::Strict, Some((fs, fslot))) = (self.policy, first_after) {
            let later = if fs == seg {
                format!("slot {fslot}")
            } else {
                format!("{} slot {fslot}", self.segments[fs].path.display())
            };
            return Err(match invalid {
                Some(why) => JournalError::Corrupt {
                    path,
                    index: slot,
                    what: format!("{why}, and {later} holds a record after it"),
                },
                None => JournalError::Gap {
                    path,
                    index: slot,
                    later,
                },
            });
        }
        self.end = Some(JournalEnd {
            segment: seg,
            slot,
            records: self.seq,
            torn: invalid.is_some(),
            discarded,
        });
        Ok(())
    }
}

impl Iterator for JournalReader {
    type Item = Result<JournalRecord, JournalError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_record() {
            Ok(Some(r)) => Some(Ok(r)),
            Ok(None) => None,
            Err(e) => {
                // Stop after an error.
                self.end = Some(JournalEnd::default());
                Some(Err(e))
            }
        }
    }
}
