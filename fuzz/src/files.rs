//! The file targets: arbitrary bytes written to a scratch directory and read back by the
//! shard, manifest and journal readers, which must answer with a value or an error naming the
//! file, never a panic, a hang or an allocation the file's size does not justify.
//!
//! A CRC over the content stops almost every mutation at the first check, so byte 0 of a
//! shard or journal input holds flags that repair what the harness can compute: the CRCs
//! (bit 0), a compact header (bit 1: the input gives the header's first bytes and the rest of
//! the 4096 is zeros) and, for journals, the segment layout (bit 2: capacity from the length,
//! numbers and first records in sequence). Unrepaired inputs still reach every check before
//! the CRC.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use shake::journal::format::{self as jf, JournalError, HEADER_LEN as JHEADER, RECORD_LEN as JREC};
use shake::journal::{JournalReader, TailPolicy};
use shake::seed::manifest::{self, Manifest};
use shake::seed::shard::{self, field, ShardExpect, ShardFile, ShardImage, HEADER_LEN, RECORD_LEN};

/// A directory of this process's own, emptied per input by the targets that need it.
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("shake-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("scratch directory");
        d
    })
}

/// How many bytes of a compact input form the header's start (the rest is zeros).
pub const SHARD_COMPACT_HEADER: usize = 256;
pub const JOURNAL_COMPACT_HEADER: usize = 64;

fn expand(body: &[u8], compact: bool, given: usize, header_len: usize) -> Vec<u8> {
    if !compact {
        return body.to_vec();
    }
    let n = given.min(body.len());
    let mut out = vec![0u8; header_len];
    out[..n].copy_from_slice(&body[..n]);
    out.extend_from_slice(&body[n..]);
    out
}

/// Sets both shard CRCs to what the content gives, where the header says where they are.
fn repair_shard(b: &mut [u8]) {
    if b.len() < HEADER_LEN {
        return;
    }
    let m = field::MUTABLE;
    let crc = crc32c::crc32c(&b[m.start..field::MUTABLE_CRC.start]);
    b[field::MUTABLE_CRC].copy_from_slice(&crc.to_le_bytes());
    let rounds = u32::from_le_bytes(b[field::ROUNDS].try_into().unwrap()) as usize;
    if rounds > shard::MAX_ROUNDS {
        return;
    }
    let mut c = shard::ContentCrc::new(&b[..HEADER_LEN], rounds);
    c.records(&b[HEADER_LEN..]);
    b[field::CHECKSUM].copy_from_slice(&c.value().to_le_bytes());
}

/// The shard target: the header parser, the record checks, the tools' reader and the node's
/// mapped reader must agree, and what they accept must be what the format says.
pub fn shard(data: &[u8]) {
    let flags = data.first().copied().unwrap_or(0);
    let body = data.get(1..).unwrap_or(&[]);
    let mut bytes = expand(body, flags & 2 != 0, SHARD_COMPACT_HEADER, HEADER_LEN);
    if flags & 1 != 0 {
        repair_shard(&mut bytes);
    }
    let path = scratch().join("fuzz.shard");
    std::fs::write(&path, &bytes).expect("write scratch shard");
    let len = bytes.len() as u64;
    let sponsors = (flags >> 4) as usize;

    let parsed = shard::parse_header(&path, &bytes, len);
    if let Ok(h) = &parsed {
        assert_eq!(
            h.file_len(),
            len,
            "accepted header disagrees with the length"
        );
        assert_eq!(h.round_ends.last().copied(), Some(h.record_count));
        assert!(h.round_ends.windows(2).all(|w| w[0] <= w[1]));
        assert!(h.reserved_through <= h.record_count);
        let records = &bytes[HEADER_LEN..];
        let checked = shard::check_records(&path, h, &bytes[..HEADER_LEN], records, Some(sponsors));
        if checked.is_ok() {
            let mut round = 0usize;
            for (i, r) in records.chunks_exact(RECORD_LEN).enumerate() {
                while h.round_ends[round] <= i as u64 {
                    round += 1;
                }
                let d = shard::decode_record(r);
                assert_eq!(d.round_index as usize, round);
                assert!((d.sponsor_index as usize) < sponsors);
                assert!(r[field::record::STATE] <= shard::FORFEITED);
            }
        }
    }
    let image = ShardImage::load(&path, &ShardExpect::default());
    let file = ShardFile::open(&path, &ShardExpect::default());
    match (&image, &file) {
        (Ok(i), Ok(f)) => {
            assert_eq!(i.header, f.header);
            assert_eq!(i.len(), f.len());
            for k in 0..i.len() {
                assert_eq!(i.record(k), f.record(k));
                assert_eq!(i.state(k), f.state(k));
            }
            let end = f.marked_end();
            assert!(end <= f.len());
            assert!((end..f.len()).all(|k| f.state(k) == shard::UNISSUED));
        }
        (Err(a), Err(b)) => {
            let (a, b) = (a.to_string(), b.to_string());
            assert_eq!(a, b, "the two readers reject differently");
            assert!(a.starts_with(&path.display().to_string()), "{a}");
        }
        (a, b) => panic!("readers disagree: image {a:?}, mapped {b:?}"),
    }
    if parsed.is_err() {
        assert!(
            image.is_err(),
            "the reader accepted a header the parser refused"
        );
    }
}

/// A valid shard beside the manifest, so a fuzzed manifest can point at something real.
fn manifest_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = scratch().join("seeds");
        let a = crate::frames::activity();
        manifest::generate(a, 1, 1, 3, &d).expect("seedgen into scratch");
        d
    })
}

/// The manifest target: `Manifest::load`, then `verify` against a real shard directory.
pub fn manifest(data: &[u8]) {
    let dir = manifest_dir();
    let path = scratch().join("manifest.toml");
    std::fs::write(&path, data).expect("write scratch manifest");
    let Ok(m) = Manifest::load(&path) else {
        return;
    };
    // A manifest names files relative to its directory; one that names an absolute path or
    // climbs out of it would read whatever it names (a device, a FIFO), which says nothing
    // about the reader.
    if m.shard.iter().any(|e| {
        Path::new(&e.file)
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    }) {
        return;
    }
    let _ = manifest::verify(dir, &m);
    let _ = (m.sponsor_id(0), m.round_id(0));
}

/// Splits a journal input into segments and repairs them as the flags say.
fn journal_segments(data: &[u8]) -> Vec<Vec<u8>> {
    let flags = data.first().copied().unwrap_or(0);
    let count = 1 + ((flags >> 3) & 3) as usize;
    let body = data.get(1..).unwrap_or(&[]);
    let per = body.len().div_ceil(count).max(1);
    let mut first_seq = 0u64;
    body.chunks(per)
        .take(count)
        .enumerate()
        .map(|(n, part)| {
            let mut b = expand(part, flags & 2 != 0, JOURNAL_COMPACT_HEADER, JHEADER);
            if b.len() >= JHEADER {
                if flags & 4 != 0 {
                    let records = ((b.len() - JHEADER) / JREC).max(1);
                    b.resize(JHEADER + records * JREC, 0);
                    b[jf::field::SEGMENT].copy_from_slice(&(n as u64).to_le_bytes());
                    b[jf::field::FIRST_SEQ].copy_from_slice(&first_seq.to_le_bytes());
                    b[jf::field::CAPACITY].copy_from_slice(&(records as u64).to_le_bytes());
                    first_seq += records as u64;
                }
                if flags & 1 != 0 {
                    let crc = crc32c::crc32c(&b[..jf::field::HEADER_CRC.start]);
                    b[jf::field::HEADER_CRC].copy_from_slice(&crc.to_le_bytes());
                    for r in b[JHEADER..].chunks_exact_mut(JREC) {
                        if r.iter().any(|&x| x != 0) {
                            let c = crc32c::crc32c(&r[..jf::field::record::CRC.start]);
                            r[jf::field::record::CRC].copy_from_slice(&c.to_le_bytes());
                        }
                    }
                }
            }
            b
        })
        .collect()
}

/// Reads a whole journal whose first record is `first`; each record's sequence number
/// follows the last. Returns the records read and the end.
fn read_all(
    mut r: JournalReader,
    first: u64,
) -> Result<(u64, shake::journal::JournalEnd), JournalError> {
    let mut n = 0u64;
    while let Some(rec) = r.next_record()? {
        assert_eq!(rec.seq, first + n, "records come in sequence");
        n += 1;
    }
    let end = r.end().expect("an end once the reader returned None");
    assert_eq!(end.records, first + n);
    Ok((n, end))
}

/// The journal target: the segment lister and the reader under both tail policies.
pub fn journal(data: &[u8]) {
    let dir = scratch().join("journal");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("journal scratch");
    let segments = journal_segments(data);
    for (n, b) in segments.iter().enumerate() {
        std::fs::write(dir.join(jf::segment_name(n as u64)), b).expect("write segment");
    }
    let listed = shake::journal::reader::list_segments(&dir, None);
    let strict =
        JournalReader::open_dir(&dir, None, TailPolicy::Strict).and_then(|r| read_all(r, 0));
    let lenient =
        JournalReader::open_dir(&dir, None, TailPolicy::Lenient).and_then(|r| read_all(r, 0));
    match (&strict, &lenient) {
        (Ok(s), Ok(l)) => {
            assert_eq!(s.0, l.0, "the policies differ only after the end");
            assert_eq!(l.1.discarded, 0, "strict accepted what lenient discards");
        }
        (Err(_), Ok(l)) => {
            // Strict refuses only records after the end, which lenient discards.
            assert!(l.1.discarded > 0, "strict refused a clean journal");
        }
        (Ok(_), Err(e)) => panic!("lenient refused what strict read: {e}"),
        (Err(_), Err(_)) => {}
    }
    if let Ok(list) = &listed {
        assert_eq!(
            list.len(),
            segments.len(),
            "every segment named seg-N.jnl is listed"
        );
        for (i, s) in list.iter().enumerate() {
            assert_eq!(s.header.segment, i as u64);
            let one = JournalReader::open_file(&s.path, TailPolicy::Lenient)
                .and_then(|r| read_all(r, s.header.first_seq));
            if let (Ok(one), Ok(all)) = (&one, &lenient) {
                // A segment on its own holds at most what it adds to the whole.
                assert!(one.0 <= s.header.capacity);
                if i == 0 {
                    assert!(one.0 >= all.0.min(s.header.capacity));
                }
            }
        }
    } else {
        assert!(strict.is_err() && lenient.is_err());
    }
}
