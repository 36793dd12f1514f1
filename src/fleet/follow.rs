//! Following a live claim journal from another process, as the shipper does.
//!
//! The node appends through a `MAP_SHARED` mapping, so a record is in the page cache (and
//! visible to `pread`) the moment the worker has copied it; but the copy is not atomic: a
//! slot may be read half-written. The follower therefore reads slot by slot and stops at the
//! first slot that is not a valid record with the expected sequence number (empty, torn, or
//! not yet written) and tries again later from there: it never takes a record it has not seen
//! whole, and it never skips one. The reader's tail policies are not used here: on a live
//! journal a torn last record is the normal case, not a fault.
//!
//! Before it hands records out, the follower makes them durable (`fdatasync` on the segment:
//! it syncs the file's dirty pages whoever wrote them, and works on a read-only descriptor),
//! so nothing reaches the stream that a power cut could still take from the journal.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::journal::format::{
    decode, field, segment_name, JournalError, JournalId, SegmentHeader, Slot, HEADER_LEN,
    RECORD_LEN,
};
use crate::journal::reader::{list_segments, read_header};
use crate::le::le_u64;

/// Records read per `pread`.
const CHUNK_RECORDS: u64 = 4096;

#[derive(Debug)]
struct OpenSegment {
    header: SegmentHeader,
    path: PathBuf,
    file: File,
}

/// One worker's journal, followed from a sequence number on.
#[derive(Debug)]
pub struct Follower {
    dir: PathBuf,
    id: Option<JournalId>,
    seg: Option<OpenSegment>,
    /// Valid records read ahead, not yet consumed: sequence numbers `start..next`.
    buf: Vec<u8>,
    start: u64,
    next: u64,
    /// Most records kept read ahead.
    max_buffer: usize,
    chunk: Vec<u8>,
}

impl Follower {
    /// Follows the journal in `dir` (which may not exist yet) from record 0.
    pub fn new(dir: &Path, max_buffer: usize) -> Follower {
        Follower {
            dir: dir.to_path_buf(),
            id: None,
            seg: None,
            buf: Vec::new(),
            start: 0,
            next: 0,
            max_buffer: max_buffer.max(1),
            chunk: vec![0u8; CHUNK_RECORDS as usize * RECORD_LEN],
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The journal's identity, once a segment has been seen.
    pub fn id(&self) -> Option<JournalId> {
        self.id
    }

    /// Restarts from record `seq`, dropping whatever was read ahead.
    pub fn seek(&mut self, seq: u64) {
        self.buf.clear();
        self.start = seq;
        self.next = seq;
        if self.seg.as_ref().is_some_and(|s| {
            seq < s.header.first_seq || seq > s.header.first_seq + s.header.capacity
        }) {
            self.seg = None;
        }
    }

    /// The sequence number of the first record read ahead (the next to consume).
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Records read ahead and durable, not yet consumed.
    pub fn buffered(&self) -> usize {
        self.buf.len() / RECORD_LEN
    }

    /// The first `n` (at most [`Follower::buffered`]) records read ahead, raw.
    pub fn peek(&self, n: usize) -> &[u8] {
        &self.buf[..n.min(self.buffered()) * RECORD_LEN]
    }

    /// `time_ms` of the oldest record read ahead.
    pub fn oldest_time_ms(&self) -> Option<u64> {
        (self.buffered() > 0).then(|| le_u64(&self.buf, field::record::TIME_MS))
    }

    /// Drops the first `n` records read ahead (they have been shipped).
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.buffered());
        self.buf.drain(..n * RECORD_LEN);
        self.start += n as u64;
    }

    /// Reads whatever valid records follow (up to the read-ahead limit), makes them durable,
    /// and returns how many were added.
    pub fn fill(&mut self) -> Result<usize, JournalError> {
        let before = self.next;
        let mut unsynced = false;
        while self.buffered() < self.max_buffer {
            if self.seg.is_none() {
                match self.open_containing(self.next)? {
                    Some(s) => self.seg = Some(s),
                    None => break,
                }
            }
            let seg = self.seg.as_ref().expect("opened above");
            let slot = self.next - seg.header.first_seq;
            if slot >= seg.header.capacity {
                // Full: the node moves on to the next segment once the flusher created it.
                match self.open_after(&seg.header)? {
                    Some(next) => {
                        if unsynced {
                            sync(seg)?;
                            unsynced = false;
                        }
                        self.seg = Some(next);
                        continue;
                    }
                    None => break,
                }
            }
            let want = (seg.header.capacity - slot)
                .min(CHUNK_RECORDS)
                .min((self.max_buffer - self.buffered()) as u64) as usize;
            let bytes = &mut self.chunk[..want * RECORD_LEN];
            seg.file
                .read_exact_at(bytes, (HEADER_LEN + slot as usize * RECORD_LEN) as u64)
                .map_err(|e| JournalError::io(&seg.path, e))?;
            let mut valid = 0;
            for r in bytes.chunks_exact(RECORD_LEN) {
                match decode(r, self.next + valid as u64) {
                    Slot::Record(_) => valid += 1,
                    // Not written yet, or being written: stop here, read it again later.
                    Slot::Empty | Slot::Invalid(_) => break,
                }
            }
            self.buf.extend_from_slice(&bytes[..valid * RECORD_LEN]);
            self.next += valid as u64;
            unsynced |= valid > 0;
            if valid < want {
                break;
            }
        }
        if unsynced {
            if let Some(seg) = &self.seg {
                sync(seg)?;
            }
        }
        Ok((self.next - before) as usize)
    }

    /// The raw record `seq` if the journal holds it whole now (for checking the stream's last
    /// record against the journal).
    pub fn record_at(&mut self, seq: u64) -> Result<Option<[u8; RECORD_LEN]>, JournalError> {
        let Some(seg) = self.open_containing(seq)? else {
            return Ok(None);
        };
        let slot = seq - seg.header.first_seq;
        if slot >= seg.header.capacity {
            return Ok(None);
        }
        let mut b = [0u8; RECORD_LEN];
        seg.file
            .read_exact_at(&mut b, (HEADER_LEN + slot as usize * RECORD_LEN) as u64)
            .map_err(|e| JournalError::io(&seg.path, e))?;
        Ok(matches!(decode(&b, seq), Slot::Record(_)).then_some(b))
    }

    /// The segment holding record `seq` (or the last one, full, when `seq` is just past it);
    /// `None` when the journal has no segment yet.
    fn open_containing(&mut self, seq: u64) -> Result<Option<OpenSegment>, JournalError> {
        let segs = list_segments(&self.dir, self.id.as_ref())?;
        let Some(first) = segs.first() else {
            return Ok(None);
        };
        self.id = Some(first.header.id);
        let found = segs
            .iter()
            .find(|s| seq >= s.header.first_seq && seq < s.header.first_seq + s.header.capacity)
            .or_else(|| {
                segs.last()
                    .filter(|s| seq == s.header.first_seq + s.header.capacity)
            });
        let Some(s) = found else {
            return Err(JournalError::Layout {
                path: self.dir.clone(),
                what: format!(
                    "record {seq} is in no segment (segments start at {})",
                    first.header.first_seq
                ),
            });
        };
        let file = File::open(&s.path).map_err(|e| JournalError::io(&s.path, e))?;
        Ok(Some(OpenSegment {
            header: s.header,
            path: s.path.clone(),
            file,
        }))
    }

    /// The segment after `h`, once the node has created it (atomically: a segment file that
    /// exists is whole).
    fn open_after(&self, h: &SegmentHeader) -> Result<Option<OpenSegment>, JournalError> {
        let path = self.dir.join(segment_name(h.segment + 1));
        if !path.exists() {
            return Ok(None);
        }
        let header = read_header(&path)?;
        header.check_id(&path, &h.id)?;
        if header.first_seq != h.first_seq + h.capacity {
            return Err(JournalError::Layout {
                path,
                what: format!(
                    "starts at record {}, expected {}",
                    header.first_seq,
                    h.first_seq + h.capacity
                ),
            });
        }
        let file = File::open(&path).map_err(|e| JournalError::io(&path, e))?;
        Ok(Some(OpenSegment { header, path, file }))
    }
}

fn sync(seg: &OpenSegment) -> Result<(), JournalError> {
    seg.file
        .sync_data()
        .map_err(|e| JournalError::io(&seg.path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::format::{encode, Kind};
    use crate::journal::{open_journal, Claim, ClaimSink, JournalConfig, TailPolicy};

    fn claim(i: u64) -> Claim {
        Claim {
            packet_id: 500 + i,
            user_id: i,
            amount_cents: 10,
            sponsor_id: 1,
            round_id: 1,
            time_ms: 1_000 + i,
        }
    }

    fn id() -> JournalId {
        JournalId {
            activity_id: 1,
            node: 2,
            worker: 3,
        }
    }

    #[test]
    fn follows_across_segments_and_never_takes_a_partial_record() {
        let d = tempfile::tempdir().unwrap();
        let cfg = JournalConfig { segment_records: 5 };
        let mut f = Follower::new(d.path(), 1000);
        // No journal yet: nothing, no error.
        assert_eq!(f.fill().unwrap(), 0);
        let (mut w, mut fl, _) =
            open_journal(d.path(), id(), cfg, TailPolicy::Strict, |_| {}).unwrap();
        for i in 0..12 {
            w.append(&claim(i)).unwrap();
            fl.flush().unwrap();
        }
        assert_eq!(f.fill().unwrap(), 12);
        assert_eq!(f.id(), Some(id()));
        assert_eq!(f.buffered(), 12);
        assert_eq!(f.oldest_time_ms(), Some(1_000));
        let want: Vec<u8> = (0..12)
            .flat_map(|i| encode(i, Kind::Claim, &claim(i)))
            .collect();
        assert_eq!(f.peek(100), &want[..]);
        f.consume(7);
        assert_eq!((f.start(), f.buffered()), (7, 5));

        // Record 12 half-written (segment 2, slot 2): the follower stops before it, and takes
        // it once it is whole.
        drop((w, fl));
        let seg = d.path().join(segment_name(2));
        let rec = encode(12, Kind::Claim, &claim(12));
        let at = (HEADER_LEN + 2 * RECORD_LEN) as u64;
        let file = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
        file.write_all_at(&rec[..40], at).unwrap();
        assert_eq!(f.fill().unwrap(), 0);
        // All of it written but one byte in the middle (a copy that wrote its end first).
        let mut torn = rec;
        torn[34] ^= 0xff;
        file.write_all_at(&torn, at).unwrap();
        assert_eq!(f.fill().unwrap(), 0);
        // A valid record with the wrong sequence number is not taken either.
        file.write_all_at(&encode(13, Kind::Claim, &claim(12)), at)
            .unwrap();
        assert_eq!(f.fill().unwrap(), 0);
        file.write_all_at(&rec, at).unwrap();
        assert_eq!(f.fill().unwrap(), 1);
        assert_eq!(f.buffered(), 6);
        assert_eq!(f.record_at(12).unwrap(), Some(rec));
        assert_eq!(f.record_at(13).unwrap(), None);

        // Seeking back re-reads from the journal.
        f.seek(3);
        assert_eq!(f.fill().unwrap(), 10);
        assert_eq!(f.peek(1), &want[3 * RECORD_LEN..4 * RECORD_LEN]);
    }

    #[test]
    fn read_ahead_is_bounded() {
        let d = tempfile::tempdir().unwrap();
        let (mut w, mut fl, _) = open_journal(
            d.path(),
            id(),
            JournalConfig::default(),
            TailPolicy::Strict,
            |_| {},
        )
        .unwrap();
        for i in 0..100 {
            w.append(&claim(i)).unwrap();
        }
        fl.flush().unwrap();
        let mut f = Follower::new(d.path(), 30);
        assert_eq!(f.fill().unwrap(), 30);
        assert_eq!(f.fill().unwrap(), 0);
        f.consume(30);
        assert_eq!(f.fill().unwrap(), 30);
        assert_eq!(f.start(), 30);
    }
}
