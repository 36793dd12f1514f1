//! The claim journal's on-disk format: segment header and 64-byte records.
//!
//! All integers little-endian. A segment is a 4096-byte header followed by `capacity` records
//! of 64 bytes; 64 divides the page size, so a record never straddles a page (a power cut
//! cannot tear one across two pages) nor a cache line. See `seeds/FORMAT.md`.

use crate::le::{le_u32, le_u64};
use std::path::{Path, PathBuf};

use super::Claim;

pub const MAGIC: [u8; 8] = *b"SHKJOURN";
pub const VERSION: u32 = 1;
pub const HEADER_LEN: usize = 4096;
pub const RECORD_LEN: usize = 64;
/// Records per segment unless configured otherwise: 64 MiB files.
pub const DEFAULT_SEGMENT_RECORDS: u64 = 1 << 20;

pub mod field {
    use std::ops::Range;
    pub const MAGIC: Range<usize> = 0..8;
    pub const VERSION: Range<usize> = 8..12;
    pub const RECORD_LEN: Range<usize> = 12..16;
    pub const ACTIVITY: Range<usize> = 16..20;
    pub const NODE: Range<usize> = 20..24;
    pub const WORKER: Range<usize> = 24..28;
    pub const SEGMENT: Range<usize> = 32..40;
    pub const FIRST_SEQ: Range<usize> = 40..48;
    pub const CAPACITY: Range<usize> = 48..56;
    /// CRC-32C of bytes 0..56.
    pub const HEADER_CRC: Range<usize> = 56..60;

    pub mod record {
        use std::ops::Range;
        pub const PACKET_ID: Range<usize> = 0..8;
        pub const USER_ID: Range<usize> = 8..16;
        pub const TIME_MS: Range<usize> = 16..24;
        /// Record number in the worker's journal, from 0, across segments.
        pub const SEQ: Range<usize> = 24..32;
        pub const AMOUNT: Range<usize> = 32..36;
        pub const SPONSOR: Range<usize> = 36..40;
        pub const ROUND: Range<usize> = 40..44;
        pub const KIND: usize = 44;
        /// Bytes 45..60 are zero.
        pub const PAD: Range<usize> = 45..60;
        /// CRC-32C of bytes 0..60.
        pub const CRC: Range<usize> = 60..64;
    }
}

/// What a record says happened to its packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Issued to `user_id`: the payment system pays it.
    Claim = 1,
    /// Never issued, never to be: forfeited by recovery after an unclean stop (user_id 0).
    Forfeit = 2,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Claim => "claim",
            Kind::Forfeit => "forfeit",
        }
    }
}

/// One journal record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JournalRecord {
    pub seq: u64,
    pub kind: Kind,
    pub claim: Claim,
}

/// Which worker's journal a segment belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct JournalId {
    pub activity_id: u32,
    pub node: u32,
    pub worker: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub id: JournalId,
    pub segment: u64,
    pub first_seq: u64,
    pub capacity: u64,
}

/// Errors reading or writing journals; each names the file, and the record where one is at
/// fault.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: locked by another process (is a node already writing this journal?)")]
    Locked { path: PathBuf },
    #[error("{path}: not a journal segment (bad magic)")]
    Magic { path: PathBuf },
    #[error("{path}: journal format version {found}, this build reads version {VERSION}")]
    Version { path: PathBuf, found: u32 },
    #[error("{path}: bad segment header: {what}")]
    Header { path: PathBuf, what: String },
    #[error("{path}: truncated or padded: {len} bytes, expected {expected}")]
    Length {
        path: PathBuf,
        len: u64,
        expected: u64,
    },
    #[error("{path}: segment is for {field} {found}, expected {expected}")]
    Mismatch {
        path: PathBuf,
        field: &'static str,
        expected: u64,
        found: u64,
    },
    #[error("{path}: record {index}: {what}")]
    Corrupt {
        path: PathBuf,
        index: u64,
        what: String,
    },
    #[error("{path}: record {index}: empty slot, but {later} holds a record: the journal has a hole (an unclean stop not yet recovered, or corruption)")]
    Gap {
        path: PathBuf,
        index: u64,
        later: String,
    },
    #[error("{path}: {what}")]
    Layout { path: PathBuf, what: String },
}

impl JournalError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        JournalError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl SegmentHeader {
    pub fn file_len(&self) -> u64 {
        HEADER_LEN as u64 + self.capacity * RECORD_LEN as u64
    }

    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[field::MAGIC].copy_from_slice(&MAGIC);
        h[field::VERSION].copy_from_slice(&VERSION.to_le_bytes());
        h[field::RECORD_LEN].copy_from_slice(&(RECORD_LEN as u32).to_le_bytes());
        h[field::ACTIVITY].copy_from_slice(&self.id.activity_id.to_le_bytes());
        h[field::NODE].copy_from_slice(&self.id.node.to_le_bytes());
        h[field::WORKER].copy_from_slice(&self.id.worker.to_le_bytes());
        h[field::SEGMENT].copy_from_slice(&self.segment.to_le_bytes());
        h[field::FIRST_SEQ].copy_from_slice(&self.first_seq.to_le_bytes());
        h[field::CAPACITY].copy_from_slice(&self.capacity.to_le_bytes());
        let crc = crc32c::crc32c(&h[..field::HEADER_CRC.start]);
        h[field::HEADER_CRC].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Parses and checks a header; `file_len` is checked against the capacity.
    pub fn parse(path: &Path, h: &[u8], file_len: u64) -> Result<Self, JournalError> {
        let p = || path.to_path_buf();
        if h.len() < HEADER_LEN {
            return Err(JournalError::Length {
                path: p(),
                len: file_len,
                expected: HEADER_LEN as u64,
            });
        }
        if h[field::MAGIC] != MAGIC {
            return Err(JournalError::Magic { path: p() });
        }
        let version = le_u32(h, field::VERSION);
        if version != VERSION {
            return Err(JournalError::Version {
                path: p(),
                found: version,
            });
        }
        let crc = crc32c::crc32c(&h[..field::HEADER_CRC.start]);
        if crc != le_u32(h, field::HEADER_CRC) {
            return Err(JournalError::Header {
                path: p(),
                what: "header checksum mismatch".into(),
            });
        }
        if le_u32(h, field::RECORD_LEN) as usize != RECORD_LEN
            || h[28..32].iter().chain(&h[60..]).any(|&b| b != 0)
        {
            return Err(JournalError::Header {
                path: p(),
                what: "record length or reserved bytes wrong".into(),
            });
        }
        let s = SegmentHeader {
            id: JournalId {
                activity_id: le_u32(h, field::ACTIVITY),
                node: le_u32(h, field::NODE),
                worker: le_u32(h, field::WORKER),
            },
            segment: le_u64(h, field::SEGMENT),
            first_seq: le_u64(h, field::FIRST_SEQ),
            capacity: le_u64(h, field::CAPACITY),
        };
        let expected = s
            .capacity
            .checked_mul(RECORD_LEN as u64)
            .and_then(|n| n.checked_add(HEADER_LEN as u64));
        if s.capacity == 0 || expected != Some(file_len) {
            return Err(JournalError::Length {
                path: p(),
                len: file_len,
                expected: expected.unwrap_or(u64::MAX),
            });
        }
        Ok(s)
    }

    pub fn check_id(&self, path: &Path, want: &JournalId) -> Result<(), JournalError> {
        for (field, e, f) in [
            ("activity", want.activity_id, self.id.activity_id),
            ("node", want.node, self.id.node),
            ("worker", want.worker, self.id.worker),
        ] {
            if e != f {
                return Err(JournalError::Mismatch {
                    path: path.to_path_buf(),
                    field,
                    expected: e as u64,
                    found: f as u64,
                });
            }
        }
        Ok(())
    }
}

/// Encodes a record, checksum included.
#[inline]
pub fn encode(seq: u64, kind: Kind, c: &Claim) -> [u8; RECORD_LEN] {
    use field::record as f;
    let mut b = [0u8; RECORD_LEN];
    b[f::PACKET_ID].copy_from_slice(&c.packet_id.to_le_bytes());
    b[f::USER_ID].copy_from_slice(&c.user_id.to_le_bytes());
    b[f::TIME_MS].copy_from_slice(&c.time_ms.to_le_bytes());
    b[f::SEQ].copy_from_slice(&seq.to_le_bytes());
    b[f::AMOUNT].copy_from_slice(&c.amount_cents.to_le_bytes());
    b[f::SPONSOR].copy_from_slice(&c.sponsor_id.to_le_bytes());
    b[f::ROUND].copy_from_slice(&c.round_id.to_le_bytes());
    b[f::KIND] = kind as u8;
    let crc = crc32c::crc32c(&b[..f::CRC.start]);
    b[f::CRC].copy_from_slice(&crc.to_le_bytes());
    b
}

/// What a 64-byte slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// All zero: never written.
    Empty,
    Record(JournalRecord),
    /// Written but not valid (torn or corrupted); the reason.
    Invalid(&'static str),
}

/// Decodes a slot; `seq` is the record number this slot must carry.
#[inline]
pub fn decode(b: &[u8], seq: u64) -> Slot {
    use field::record as f;
    if b.iter().all(|&x| x == 0) {
        return Slot::Empty;
    }
    if crc32c::crc32c(&b[..f::CRC.start]) != le_u32(b, f::CRC) {
        return Slot::Invalid("checksum mismatch");
    }
    let kind = match b[f::KIND] {
        1 => Kind::Claim,
        2 => Kind::Forfeit,
        _ => return Slot::Invalid("unknown record kind"),
    };
    if b[f::PAD].iter().any(|&x| x != 0) {
        return Slot::Invalid("padding not zero");
    }
    if le_u64(b, f::SEQ) != seq {
        return Slot::Invalid("sequence number out of place");
    }
    Slot::Record(JournalRecord {
        seq,
        kind,
        claim: Claim {
            packet_id: le_u64(b, f::PACKET_ID),
            user_id: le_u64(b, f::USER_ID),
            amount_cents: le_u32(b, f::AMOUNT),
            sponsor_id: le_u32(b, f::SPONSOR),
            round_id: le_u32(b, f::ROUND),
            time_ms: le_u64(b, f::TIME_MS),
        },
    })
}

/// `seg-<number>.jnl`, zero-padded so names sort by number.
pub fn segment_name(number: u64) -> String {
    format!("seg-{number:08}.jnl")
}

/// Parses a segment file name.
pub fn segment_number(name: &str) -> Option<u64> {
    name.strip_prefix("seg-")?
        .strip_suffix(".jnl")?
        .parse()
        .ok()
}

/// Conventional journal directory of one worker under a node's journal root.
pub fn worker_dir(root: &Path, worker: u32) -> PathBuf {
    root.join(format!("worker-{worker}"))
}
