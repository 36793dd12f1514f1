//! Shard files: one worker's packets, memory-mapped, issue state marked in place.
//!
//! Layout (all integers little-endian; see `seeds/FORMAT.md`): a 4096-byte header, then
//! `record_count` records of 24 bytes starting at offset 4096, so records are page aligned
//! and the worker can map exactly the records while the flusher owns the header.
//!
//! The immutable part (header identity fields, round ends, and the first 16 bytes of every
//! record) is covered by one CRC-32C; the mutable part of the header (lease, clean flag, boot
//! id) by its own CRC-32C. A record's state byte is the only byte the worker writes.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::SeedRecord;
use crate::le::{le_u32, le_u64};

pub const MAGIC: [u8; 8] = *b"SHKSHARD";
pub const VERSION: u32 = 1;
pub const HEADER_LEN: usize = 4096;
pub const RECORD_LEN: usize = 24;
/// Round-end table entries that fit in the header.
pub const MAX_ROUNDS: usize = (HEADER_LEN - field::ROUND_ENDS) / 8;

/// Issue state of a record (its byte at offset 16).
pub const UNISSUED: u8 = 0;
pub const ISSUED: u8 = 1;
pub const FORFEITED: u8 = 2;

/// Byte offsets in the header and in a record.
pub mod field {
    use std::ops::Range;
    pub const MAGIC: Range<usize> = 0..8;
    pub const VERSION: Range<usize> = 8..12;
    pub const RECORD_LEN: Range<usize> = 12..16;
    pub const ACTIVITY: Range<usize> = 16..20;
    pub const NODE: Range<usize> = 20..24;
    pub const WORKER: Range<usize> = 24..28;
    pub const ROUNDS: Range<usize> = 28..32;
    pub const RECORDS: Range<usize> = 32..40;
    pub const SEED: Range<usize> = 40..48;
    /// CRC-32C of bytes 0..48, the round-end table and bytes 0..16 of every record.
    pub const CHECKSUM: Range<usize> = 48..52;
    /// Bytes 52..64 are zero.
    pub const IMMUTABLE_END: usize = 48;

    /// The mutable block, written only by the flusher (one `pwrite` of 64..100).
    pub const MUTABLE: Range<usize> = 64..100;
    pub const LEASE: Range<usize> = 64..72;
    pub const CLEAN: Range<usize> = 72..76;
    pub const BOOT_ID: Range<usize> = 80..96;
    /// CRC-32C of bytes 64..96.
    pub const MUTABLE_CRC: Range<usize> = 96..100;

    /// `rounds` u64 entries: index one past the last record of each round.
    pub const ROUND_ENDS: usize = 128;

    pub mod record {
        use std::ops::Range;
        pub const PACKET_ID: Range<usize> = 0..8;
        pub const AMOUNT: Range<usize> = 8..12;
        pub const SPONSOR: Range<usize> = 12..14;
        pub const ROUND: Range<usize> = 14..16;
        pub const IMMUTABLE_END: usize = 16;
        pub const STATE: usize = 16;
        /// Bytes 17..24 are zero.
        pub const PAD: Range<usize> = 17..24;
    }
}

/// Everything that can be wrong with a shard file; every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: locked by another process (is a node already using this shard?)")]
    Locked { path: PathBuf },
    #[error("{path}: truncated or padded: {len} bytes, expected {expected}")]
    Length {
        path: PathBuf,
        len: u64,
        expected: u64,
    },
    #[error("{path}: not a shard file (bad magic)")]
    Magic { path: PathBuf },
    #[error("{path}: shard format version {found}, this build reads version {VERSION}")]
    Version { path: PathBuf, found: u32 },
    #[error("{path}: bad header: {what}")]
    Header { path: PathBuf, what: String },
    #[error("{path}: shard is for {field} {found}, expected {expected}")]
    Mismatch {
        path: PathBuf,
        field: &'static str,
        expected: u64,
        found: u64,
    },
    #[error("{path}: checksum mismatch: header says {stored:#010x}, content gives {computed:#010x} (corrupted or modified)")]
    Checksum {
        path: PathBuf,
        stored: u32,
        computed: u32,
    },
    #[error("{path}: lease block checksum mismatch (corrupted header bytes 64..100)")]
    MutableChecksum { path: PathBuf },
    #[error("{path}: record {index}: {what}")]
    Record {
        path: PathBuf,
        index: u64,
        what: String,
    },
}

impl ShardError {
    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        ShardError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Who a shard belongs to, and what it may refer to. Fields left `None` are not checked.
///
/// A node opens its shards with every field set from its activity: a record's sponsor and
/// round indices index the activity's tables on the per-packet path, so a shard from an
/// edited activity (same id, fewer sponsors or rounds) must be refused at open, not met by a
/// worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardExpect {
    pub activity_id: Option<u32>,
    pub node: Option<u32>,
    pub worker: Option<u32>,
    /// The activity's sponsor count: every record's sponsor index must be below it.
    pub sponsors: Option<usize>,
    /// The activity's round count: the shard's round table must have exactly this many.
    pub rounds: Option<usize>,
    /// The content checksum its manifest lists: the file must be that generation of seeds.
    pub checksum: Option<u32>,
}

/// The header, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardHeader {
    pub activity_id: u32,
    pub node: u32,
    pub worker: u32,
    pub record_count: u64,
    pub random_seed: u64,
    pub checksum: u32,
    /// `round_ends[r]`: index one past the last record of round index r.
    pub round_ends: Vec<u64>,
    /// Records below this index may have been issued (the durable lease).
    pub reserved_through: u64,
    /// Set at a clean close, cleared while a node has the shard open.
    pub clean: bool,
    /// `/proc/sys/kernel/random/boot_id` of the boot that last opened the shard.
    pub boot_id: [u8; 16],
}

impl ShardHeader {
    pub fn file_len(&self) -> u64 {
        HEADER_LEN as u64 + self.record_count * RECORD_LEN as u64
    }

    /// The mutable block (header bytes 64..100) with its checksum.
    pub(crate) fn mutable_bytes(&self) -> [u8; 36] {
        let mut b = [0u8; 36];
        let o = field::MUTABLE.start;
        b[field::LEASE.start - o..field::LEASE.end - o]
            .copy_from_slice(&self.reserved_through.to_le_bytes());
        b[field::CLEAN.start - o..field::CLEAN.end - o]
            .copy_from_slice(&(self.clean as u32).to_le_bytes());
        b[field::BOOT_ID.start - o..field::BOOT_ID.end - o].copy_from_slice(&self.boot_id);
        let crc = crc32c::crc32c(&b[..field::MUTABLE_CRC.start - o]);
        b[field::MUTABLE_CRC.start - o..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut h = vec![0u8; HEADER_LEN];
        h[field::MAGIC].copy_from_slice(&MAGIC);
        h[field::VERSION].copy_from_slice(&VERSION.to_le_bytes());
        h[field::RECORD_LEN].copy_from_slice(&(RECORD_LEN as u32).to_le_bytes());
        h[field::ACTIVITY].copy_from_slice(&self.activity_id.to_le_bytes());
        h[field::NODE].copy_from_slice(&self.node.to_le_bytes());
        h[field::WORKER].copy_from_slice(&self.worker.to_le_bytes());
        h[field::ROUNDS].copy_from_slice(&(self.round_ends.len() as u32).to_le_bytes());
        h[field::RECORDS].copy_from_slice(&self.record_count.to_le_bytes());
        h[field::SEED].copy_from_slice(&self.random_seed.to_le_bytes());
        h[field::CHECKSUM].copy_from_slice(&self.checksum.to_le_bytes());
        h[field::MUTABLE].copy_from_slice(&self.mutable_bytes());
        for (i, e) in self.round_ends.iter().enumerate() {
            let at = field::ROUND_ENDS + 8 * i;
            h[at..at + 8].copy_from_slice(&e.to_le_bytes());
        }
        h
    }
}

/// Parses and checks a header (everything that does not need the records). `file_len` is the
/// file's length, checked against the record count.
pub fn parse_header(path: &Path, h: &[u8], file_len: u64) -> Result<ShardHeader, ShardError> {
    let p = || path.to_path_buf();
    if h.len() < HEADER_LEN {
        return Err(ShardError::Length {
            path: p(),
            len: file_len,
            expected: HEADER_LEN as u64,
        });
    }
    if h[field::MAGIC] != MAGIC {
        return Err(ShardError::Magic { path: p() });
    }
    let version = le_u32(h, field::VERSION);
    if version != VERSION {
        return Err(ShardError::Version {
            path: p(),
            found: version,
        });
    }
    let record_len = le_u32(h, field::RECORD_LEN);
    if record_len as usize != RECORD_LEN {
        return Err(ShardError::Header {
            path: p(),
            what: format!("record length {record_len}, expected {RECORD_LEN}"),
        });
    }
    let rounds = le_u32(h, field::ROUNDS) as usize;
    if rounds == 0 || rounds > MAX_ROUNDS {
        return Err(ShardError::Header {
            path: p(),
            what: format!("round count {rounds} outside 1..={MAX_ROUNDS}"),
        });
    }
    let record_count = le_u64(h, field::RECORDS);
    let expected = record_count
        .checked_mul(RECORD_LEN as u64)
        .and_then(|n| n.checked_add(HEADER_LEN as u64));
    if expected != Some(file_len) {
        return Err(ShardError::Length {
            path: p(),
            len: file_len,
            expected: expected.unwrap_or(u64::MAX),
        });
    }
    let mut round_ends = Vec::with_capacity(rounds);
    let mut prev = 0;
    for i in 0..rounds {
        let at = field::ROUND_ENDS + 8 * i;
        let e = le_u64(h, at..at + 8);
        if e < prev || e > record_count {
            return Err(ShardError::Header {
                path: p(),
                what: format!("round {i} ends at record {e}, outside {prev}..={record_count}"),
            });
        }
        prev = e;
        round_ends.push(e);
    }
    if prev != record_count {
        return Err(ShardError::Header {
            path: p(),
            what: format!("last round ends at {prev}, but the shard has {record_count} records"),
        });
    }
    let m = &h[field::MUTABLE];
    let o = field::MUTABLE.start;
    let crc = crc32c::crc32c(&m[..field::MUTABLE_CRC.start - o]);
    if crc != le_u32(h, field::MUTABLE_CRC) {
        return Err(ShardError::MutableChecksum { path: p() });
    }
    let clean = match le_u32(h, field::CLEAN) {
        0 => false,
        1 => true,
        x => {
            return Err(ShardError::Header {
                path: p(),
                what: format!("clean flag {x}, expected 0 or 1"),
            })
        }
    };
    let reserved_through = le_u64(h, field::LEASE);
    if reserved_through > record_count {
        return Err(ShardError::Header {
            path: p(),
            what: format!("lease {reserved_through} beyond the {record_count} records"),
        });
    }
    let mut boot_id = [0u8; 16];
    boot_id.copy_from_slice(&h[field::BOOT_ID]);
    if h[52..64]
        .iter()
        .chain(&h[100..field::ROUND_ENDS])
        .any(|&b| b != 0)
        || h[field::ROUND_ENDS + 8 * rounds..HEADER_LEN]
            .iter()
            .any(|&b| b != 0)
    {
        return Err(ShardError::Header {
            path: p(),
            what: "reserved header bytes are not zero".into(),
        });
    }
    Ok(ShardHeader {
        activity_id: le_u32(h, field::ACTIVITY),
        node: le_u32(h, field::NODE),
        worker: le_u32(h, field::WORKER),
        record_count,
        random_seed: le_u64(h, field::SEED),
        checksum: le_u32(h, field::CHECKSUM),
        round_ends,
        reserved_through,
        clean,
        boot_id,
    })
}

/// Checks a header against what the caller expects.
pub fn check_expect(path: &Path, h: &ShardHeader, e: &ShardExpect) -> Result<(), ShardError> {
    for (field, expected, found) in [
        ("activity", e.activity_id, h.activity_id),
        ("node", e.node, h.node),
        ("worker", e.worker, h.worker),
    ] {
        if let Some(expected) = expected {
            if expected != found {
                return Err(ShardError::Mismatch {
                    path: path.to_path_buf(),
                    field,
                    expected: expected as u64,
                    found: found as u64,
                });
            }
        }
    }
    if let Some(sum) = e.checksum {
        if h.checksum != sum {
            return Err(ShardError::Mismatch {
                path: path.to_path_buf(),
                field: "checksum (another generation of seeds than the manifest's)",
                expected: sum as u64,
                found: h.checksum as u64,
            });
        }
    }
    if let Some(rounds) = e.rounds {
        if h.round_ends.len() != rounds {
            return Err(ShardError::Mismatch {
                path: path.to_path_buf(),
                field: "round count",
                expected: rounds as u64,
                found: h.round_ends.len() as u64,
            });
        }
    }
    Ok(())
}

/// CRC-32C of the immutable part, computed incrementally by `seedgen` and by validation.
#[derive(Debug, Clone, Copy)]
pub struct ContentCrc(u32);

impl ContentCrc {
    /// Starts with the header's immutable bytes and round-end table.
    pub fn new(header: &[u8], rounds: usize) -> Self {
        let c = crc32c::crc32c(&header[..field::IMMUTABLE_END]);
        ContentCrc(crc32c::crc32c_append(
            c,
            &header[field::ROUND_ENDS..field::ROUND_ENDS + 8 * rounds],
        ))
    }

    /// Adds records (whole 24-byte records; only their immutable bytes count).
    pub fn records(&mut self, bytes: &[u8]) {
        for r in bytes.chunks_exact(RECORD_LEN) {
            self.0 = crc32c::crc32c_append(self.0, &r[..field::record::IMMUTABLE_END]);
        }
    }

    pub fn value(self) -> u32 {
        self.0
    }
}

/// Encodes a record with the given state.
#[inline]
pub fn encode_record(r: &SeedRecord, state: u8) -> [u8; RECORD_LEN] {
    use field::record as f;
    let mut b = [0u8; RECORD_LEN];
    b[f::PACKET_ID].copy_from_slice(&r.packet_id.to_le_bytes());
    b[f::AMOUNT].copy_from_slice(&r.amount_cents.to_le_bytes());
    b[f::SPONSOR].copy_from_slice(&r.sponsor_index.to_le_bytes());
    b[f::ROUND].copy_from_slice(&r.round_index.to_le_bytes());
    b[f::STATE] = state;
    b
}

/// Decodes a record's immutable fields from its 24 bytes.
#[inline]
pub fn decode_record(b: &[u8]) -> SeedRecord {
    use field::record as f;
    SeedRecord {
        packet_id: le_u64(b, f::PACKET_ID),
        amount_cents: le_u32(b, f::AMOUNT),
        sponsor_index: u16::from_le_bytes([b[f::SPONSOR.start], b[f::SPONSOR.start + 1]]),
        round_index: u16::from_le_bytes([b[f::ROUND.start], b[f::ROUND.start + 1]]),
    }
}

/// Checks the records against the header: content checksum, round order, padding and state
/// values. `rounds` bounds round indices; `sponsors` bounds sponsor indices when given.
pub fn check_records(
    path: &Path,
    h: &ShardHeader,
    header_bytes: &[u8],
    records: &[u8],
    sponsors: Option<usize>,
) -> Result<(), ShardError> {
    let mut crc = ContentCrc::new(header_bytes, h.round_ends.len());
    crc.records(records);
    if crc.value() != h.checksum {
        return Err(ShardError::Checksum {
            path: path.to_path_buf(),
            stored: h.checksum,
            computed: crc.value(),
        });
    }
    let mut round = 0usize;
    for (i, b) in records.chunks_exact(RECORD_LEN).enumerate() {
        let bad = |what: String| ShardError::Record {
            path: path.to_path_buf(),
            index: i as u64,
            what,
        };
        while round < h.round_ends.len() && h.round_ends[round] <= i as u64 {
            round += 1;
        }
        let r = decode_record(b);
        if r.round_index as usize != round {
            return Err(bad(format!(
                "round index {} but the round-end table puts it in round {round}",
                r.round_index
            )));
        }
        if let Some(n) = sponsors {
            if r.sponsor_index as usize >= n {
                return Err(bad(format!(
                    "sponsor index {} but the activity has {n} sponsors",
                    r.sponsor_index
                )));
            }
        }
        let s = b[field::record::STATE];
        if s > FORFEITED {
            return Err(bad(format!("state byte {s} is not 0, 1 or 2")));
        }
        if b[field::record::PAD].iter().any(|&x| x != 0) {
            return Err(bad("padding bytes 17..24 are not zero".into()));
        }
    }
    Ok(())
}

/// What `write_shard` needs besides the records.
#[derive(Debug, Clone, Copy)]
pub struct ShardIdentity {
    pub activity_id: u32,
    pub node: u32,
    pub worker: u32,
    pub random_seed: u64,
}

/// Writes a new shard (all records unissued, lease 0, clean) and returns its content checksum.
/// `records` must be sorted by round index; `rounds` is the activity's round count. The file is
/// written to `path.tmp`, synced and renamed, so a crash never leaves a half shard under its
/// real name.
pub fn write_shard(
    path: &Path,
    id: ShardIdentity,
    rounds: usize,
    records: &[SeedRecord],
) -> Result<u32, ShardError> {
    let err = |e| ShardError::io(path, e);
    if rounds == 0 || rounds > MAX_ROUNDS {
        return Err(ShardError::Header {
            path: path.to_path_buf(),
            what: format!("round count {rounds} outside 1..={MAX_ROUNDS}"),
        });
    }
    let round_ends: Vec<u64> = (0..rounds)
        .map(|r| records.partition_point(|x| x.round_index as usize <= r) as u64)
        .collect();
    let mut header = ShardHeader {
        activity_id: id.activity_id,
        node: id.node,
        worker: id.worker,
        record_count: records.len() as u64,
        random_seed: id.random_seed,
        checksum: 0,
        round_ends,
        reserved_through: 0,
        clean: true,
        boot_id: [0; 16],
    };
    let mut crc = ContentCrc::new(&header.to_bytes(), rounds);
    let tmp = path.with_extension("shard.tmp");
    let file = File::create(&tmp).map_err(err)?;
    let mut w = BufWriter::with_capacity(1 << 20, &file);
    w.write_all(&[0u8; HEADER_LEN]).map_err(err)?;
    for r in records {
        let b = encode_record(r, UNISSUED);
        crc.records(&b);
        w.write_all(&b).map_err(err)?;
    }
    w.flush().map_err(err)?;
    drop(w);
    header.checksum = crc.value();
    file.write_all_at(&header.to_bytes(), 0).map_err(err)?;
    file.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)?;
    Ok(header.checksum)
}

/// A whole shard read into memory and validated: what the tools use (no lock, no mapping).
#[derive(Debug, Clone)]
pub struct ShardImage {
    pub path: PathBuf,
    pub header: ShardHeader,
    bytes: Vec<u8>,
}

impl ShardImage {
    pub fn load(path: &Path, expect: &ShardExpect) -> Result<Self, ShardError> {
        let bytes = std::fs::read(path).map_err(|e| ShardError::io(path, e))?;
        let header = parse_header(path, &bytes, bytes.len() as u64)?;
        check_expect(path, &header, expect)?;
        check_records(
            path,
            &header,
            &bytes[..HEADER_LEN],
            &bytes[HEADER_LEN..],
            expect.sponsors,
        )?;
        Ok(ShardImage {
            path: path.to_path_buf(),
            header,
            bytes,
        })
    }

    pub fn len(&self) -> usize {
        self.header.record_count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn raw(&self, i: usize) -> &[u8] {
        let at = HEADER_LEN + i * RECORD_LEN;
        &self.bytes[at..at + RECORD_LEN]
    }

    pub fn record(&self, i: usize) -> SeedRecord {
        decode_record(self.raw(i))
    }

    pub fn state(&self, i: usize) -> u8 {
        self.raw(i)[field::record::STATE]
    }
}

/// A shard opened read-write by the node: locked, validated, records mapped shared.
///
/// Recovery adjusts states through it, then turns it into the worker's [`super::lease::ShardSource`]
/// and the control loop's [`super::lease::ShardFlusher`].
#[derive(Debug)]
pub struct ShardFile {
    pub path: PathBuf,
    pub header: ShardHeader,
    pub(crate) file: File,
    pub(crate) map: memmap2::MmapMut,
}

impl ShardFile {
    pub fn open(path: &Path, expect: &ShardExpect) -> Result<Self, ShardError> {
        let err = |e| ShardError::io(path, e);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(err)?;
        crate::mmap::lock_exclusive(&file).map_err(|e| {
            if e.kind() == io::ErrorKind::WouldBlock {
                ShardError::Locked {
                    path: path.to_path_buf(),
                }
            } else {
                err(e)
            }
        })?;
        let len = file.metadata().map_err(err)?.len();
        let mut hb = vec![0u8; HEADER_LEN.min(len as usize)];
        file.read_exact_at(&mut hb, 0).map_err(err)?;
        let header = parse_header(path, &hb, len)?;
        check_expect(path, &header, expect)?;
        let map_len = len as usize - HEADER_LEN;
        // A zero-length mapping is an error in mmap(2); an empty shard maps one spare page.
        let map = if map_len == 0 {
            memmap2::MmapMut::map_anon(1).map_err(err)?
        } else {
            crate::mmap::map_shared(&file, HEADER_LEN as u64, map_len).map_err(err)?
        };
        let records = if map_len == 0 { &[][..] } else { &map[..] };
        check_records(path, &header, &hb, records, expect.sponsors)?;
        Ok(ShardFile {
            path: path.to_path_buf(),
            header,
            file,
            map,
        })
    }

    pub fn len(&self) -> usize {
        self.header.record_count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline]
    pub fn record(&self, i: usize) -> SeedRecord {
        decode_record(&self.map[i * RECORD_LEN..(i + 1) * RECORD_LEN])
    }

    #[inline]
    pub fn state(&self, i: usize) -> u8 {
        self.map[i * RECORD_LEN + field::record::STATE]
    }

    #[inline]
    pub fn set_state(&mut self, i: usize, state: u8) {
        self.map[i * RECORD_LEN + field::record::STATE] = state;
    }

    /// Index one past the last record that is not unissued (0 if none).
    pub fn marked_end(&self) -> usize {
        (0..self.len())
            .rev()
            .find(|&i| self.state(i) != UNISSUED)
            .map_or(0, |i| i + 1)
    }

    /// Writes the mutable header block from `self.header` and makes the whole file durable.
    pub fn write_mutable(&mut self) -> Result<(), ShardError> {
        write_mutable(&self.path, &self.file, &self.header)
    }

    /// Makes marks written through the map durable.
    pub fn sync(&self) -> Result<(), ShardError> {
        self.file
            .sync_data()
            .map_err(|e| ShardError::io(&self.path, e))
    }
}

pub(crate) fn write_mutable(path: &Path, file: &File, h: &ShardHeader) -> Result<(), ShardError> {
    let err = |e| ShardError::io(path, e);
    file.write_all_at(&h.mutable_bytes(), field::MUTABLE.start as u64)
        .map_err(err)?;
    file.sync_data().map_err(err)
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`), or zeros when unknown. Shards record it
/// at open: after an unclean stop within the same boot the page cache survived, so nothing
/// written through the maps was lost and no lease window needs forfeiting.
pub fn current_boot_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    if let Ok(s) = std::fs::read_to_string("/proc/sys/kernel/random/boot_id") {
        let hex: Vec<u8> = s.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
        if hex.len() == 32 {
            for (i, pair) in hex.chunks(2).enumerate() {
                let s = std::str::from_utf8(pair).unwrap_or("00");
                id[i] = u8::from_str_radix(s, 16).unwrap_or(0);
            }
        }
    }
    id
}
