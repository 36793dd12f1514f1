//! Claim journals: round trip across segment rotation, Full without a ready segment, torn
//! tails, holes, and every corruption a clear error naming the file (never a panic).

mod seeds_util;

use proptest::prelude::*;
use seeds_util::TempDir;
use shake::journal::format::{field, segment_name, HEADER_LEN, RECORD_LEN};
use shake::journal::{
    open_journal, Claim, ClaimSink, JournalConfig, JournalError, JournalId, JournalReader, Kind,
    SinkError, TailPolicy,
};

const ID: JournalId = JournalId {
    activity_id: 1,
    node: 2,
    worker: 3,
};

fn claim(i: u64) -> Claim {
    Claim {
        packet_id: 1000 + i,
        user_id: 7 * i + 1,
        amount_cents: (i % 500) as u32 + 1,
        sponsor_id: 101 + (i % 3) as u32,
        round_id: 1 + (i % 3) as u32,
        time_ms: 1_700_000_000_000 + i,
    }
}

fn cfg() -> JournalConfig {
    JournalConfig {
        segment_records: 16,
    }
}

/// Writes `n` claims with a flush every 5, closes cleanly.
fn write(dir: &std::path::Path, n: u64) {
    let (mut w, mut f, open) = open_journal(dir, ID, cfg(), TailPolicy::Strict, |_| {}).unwrap();
    assert_eq!(open.end.records, 0);
    for i in 0..n {
        w.append(&claim(i)).unwrap();
        if i % 5 == 4 {
            f.flush().unwrap();
        }
    }
    f.close(w).unwrap();
}

fn read_all(dir: &std::path::Path, policy: TailPolicy) -> Result<Vec<Claim>, JournalError> {
    JournalReader::open_dir(dir, Some(&ID), policy)?
        .map(|r| r.map(|r| r.claim))
        .collect()
}

fn seg(dir: &std::path::Path, n: u64) -> std::path::PathBuf {
    dir.join(segment_name(n))
}

fn slot_at(n: u64) -> usize {
    HEADER_LEN + n as usize * RECORD_LEN
}

#[test]
fn journal_round_trip_with_rotation_and_reopen() {
    let d = TempDir::new("j-rt");
    write(d.path(), 40);
    let got = read_all(d.path(), TailPolicy::Strict).unwrap();
    assert_eq!(got, (0..40).map(claim).collect::<Vec<_>>());
    // 40 records of 16 per segment: 3 used, plus the one prepared ahead.
    assert!(seg(d.path(), 3).exists());
    // Reopen, see everything again, append more, and everything is in order.
    let mut seen = Vec::new();
    let (mut w, f, open) = open_journal(d.path(), ID, cfg(), TailPolicy::Strict, |r| {
        seen.push(r.claim)
    })
    .unwrap();
    assert_eq!(seen.len(), 40);
    assert_eq!(
        (open.end.records, open.wiped, open.end.torn),
        (40, 0, false)
    );
    // Segment 2 has 8 slots left and segment 3 is ready: 21 appends fit without a flush.
    for i in 40..61 {
        w.append(&claim(i)).unwrap();
    }
    f.close(w).unwrap();
    let got = read_all(d.path(), TailPolicy::Strict).unwrap();
    assert_eq!(got, (0..61).map(claim).collect::<Vec<_>>());
    let rec = JournalReader::open_dir(d.path(), None, TailPolicy::Strict)
        .unwrap()
        .map(|r| r.unwrap())
        .nth(5)
        .unwrap();
    assert_eq!((rec.seq, rec.kind), (5, Kind::Claim));
}

#[test]
fn append_is_full_when_the_flusher_has_not_prepared_a_segment() {
    let d = TempDir::new("j-full");
    let (mut w, mut f, _) = open_journal(d.path(), ID, cfg(), TailPolicy::Strict, |_| {}).unwrap();
    // Segment 0 (16) plus the ready segment 1 (16), then Full until the flusher runs.
    for i in 0..32 {
        w.append(&claim(i)).unwrap();
    }
    assert_eq!(w.append(&claim(32)), Err(SinkError::Full));
    assert_eq!(w.durable(), 0);
    f.flush().unwrap();
    assert_eq!(w.durable(), 32);
    w.append(&claim(32)).unwrap();
    f.close(w).unwrap();
    assert_eq!(read_all(d.path(), TailPolicy::Strict).unwrap().len(), 33);
}

#[test]
fn journal_is_locked_while_open() {
    let d = TempDir::new("j-lock");
    let (_w, _f, _) = open_journal(d.path(), ID, cfg(), TailPolicy::Strict, |_| {}).unwrap();
    let e = open_journal(d.path(), ID, cfg(), TailPolicy::Strict, |_| {}).unwrap_err();
    assert!(matches!(e, JournalError::Locked { .. }), "{e}");
}

#[test]
fn kill_9_mid_append_leaves_a_torn_tail_that_reads_cleanly_and_is_wiped() {
    let d = TempDir::new("j-torn");
    {
        let (mut w, _f, _) = open_journal(d.path(), ID, cfg(), TailPolicy::Strict, |_| {}).unwrap();
        for i in 0..20 {
            w.append(&claim(i)).unwrap();
        }
        // Dropped without close or flush: a process kill; the page cache has it all.
    }
    assert_eq!(read_all(d.path(), TailPolicy::Strict).unwrap().len(), 20);
    // Half a record at slot 4 of segment 1 (record 20): a copy cut short.
    let p = seg(d.path(), 1);
    let mut b = std::fs::read(&p).unwrap();
    b[slot_at(4)..slot_at(4) + 20].fill(0xab);
    std::fs::write(&p, &b).unwrap();
    let mut r = JournalReader::open_dir(d.path(), Some(&ID), TailPolicy::Strict).unwrap();
    let n = r.by_ref().filter(|x| x.is_ok()).count();
    assert_eq!(n, 20);
    assert!(r.end().unwrap().torn);
    // Reopening wipes it and appends in its place.
    let (mut w, f, open) = open_journal(d.path(), ID, cfg(), TailPolicy::Strict, |_| {}).unwrap();
    assert!(open.end.torn);
    assert_eq!(open.wiped, 1);
    w.append(&claim(20)).unwrap();
    f.close(w).unwrap();
    assert_eq!(
        read_all(d.path(), TailPolicy::Strict).unwrap(),
        (0..21).map(claim).collect::<Vec<_>>()
    );
}

#[test]
fn corruption_in_the_middle_and_holes_are_errors_naming_file_and_record() {
    let d = TempDir::new("j-mid");
    write(d.path(), 40);
    let p = seg(d.path(), 1);
    let good = std::fs::read(&p).unwrap();

    let mut b = good.clone();
    b[slot_at(3) + field::record::AMOUNT.start] ^= 1;
    std::fs::write(&p, &b).unwrap();
    let e = read_all(d.path(), TailPolicy::Strict)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&p.display().to_string()) && e.contains("record 3") && e.contains("checksum"),
        "{e}"
    );
    // Lenient reading (after a power cut) stops there and counts what follows.
    let mut r = JournalReader::open_dir(d.path(), Some(&ID), TailPolicy::Lenient).unwrap();
    assert_eq!(r.by_ref().count(), 19);
    // Records 20..40 follow the bad record 19.
    assert_eq!(r.end().unwrap().discarded, 20);

    let mut b = good.clone();
    b[slot_at(3)..slot_at(4)].fill(0);
    std::fs::write(&p, &b).unwrap();
    let e = read_all(d.path(), TailPolicy::Strict)
        .unwrap_err()
        .to_string();
    assert!(e.contains("record 3") && e.contains("hole"), "{e}");

    // A record moved to another slot: its sequence number gives it away.
    let mut b = good.clone();
    let rec5: Vec<u8> = b[slot_at(5)..slot_at(6)].to_vec();
    b[slot_at(3)..slot_at(4)].copy_from_slice(&rec5);
    std::fs::write(&p, &b).unwrap();
    let e = read_all(d.path(), TailPolicy::Strict)
        .unwrap_err()
        .to_string();
    assert!(e.contains("sequence number"), "{e}");
    std::fs::write(&p, &good).unwrap();
}

#[test]
fn header_corruptions_are_clear_errors() {
    let d = TempDir::new("j-hdr");
    write(d.path(), 20);
    let p = seg(d.path(), 0);
    let good = std::fs::read(&p).unwrap();
    let check = |b: &[u8], want: &str| {
        std::fs::write(&p, b).unwrap();
        let e = read_all(d.path(), TailPolicy::Strict)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(want) && e.contains(&p.display().to_string()),
            "{want}: {e}"
        );
        let e = JournalReader::open_file(&p, TailPolicy::Strict)
            .and_then(|r| r.collect::<Result<Vec<_>, _>>())
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{want}: {e}");
    };
    check(&good[..good.len() - 64], "truncated");
    check(&good[..10], "truncated");
    let mut b = good.clone();
    b[field::VERSION].copy_from_slice(&9u32.to_le_bytes());
    check(&b, "version 9");
    let mut b = good.clone();
    b[1] = 0;
    check(&b, "bad magic");
    let mut b = good.clone();
    b[field::CAPACITY.start] ^= 2;
    check(&b, "header checksum");
    std::fs::write(&p, &good).unwrap();
    // Another worker's journal.
    for (id, want) in [
        (JournalId { worker: 0, ..ID }, "worker 3, expected 0"),
        (JournalId { node: 5, ..ID }, "node 2, expected 5"),
    ] {
        let e = JournalReader::open_dir(d.path(), Some(&id), TailPolicy::Strict)
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{e}");
        let e = open_journal(d.path(), id, cfg(), TailPolicy::Strict, |_| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{e}");
    }
    // A missing segment in the middle.
    std::fs::remove_file(seg(d.path(), 0)).unwrap();
    let e = read_all(d.path(), TailPolicy::Strict)
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing or extra segment"), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// No flip or truncation panics. A flip in the last written record, or in the empty slot
    /// right after it, is indistinguishable from a copy cut short by a kill: it reads as a torn
    /// tail and costs at most that record. A flip anywhere else is an error.
    #[test]
    fn journal_flips_and_truncations_never_pass_silently(pos in any::<prop::sample::Index>(), xor in 1u8..=255, cut in any::<prop::sample::Index>()) {
        let d = TempDir::new("j-prop");
        write(d.path(), 20);
        let p = seg(d.path(), 1);
        let good = std::fs::read(&p).unwrap();
        let at = pos.index(good.len());
        let mut b = good.clone();
        b[at] ^= xor;
        std::fs::write(&p, &b).unwrap();
        let r = read_all(d.path(), TailPolicy::Strict);
        let last = slot_at(3)..slot_at(4); // record 19 is slot 3 of segment 1
        let next = slot_at(4)..slot_at(5);
        if last.contains(&at) {
            prop_assert_eq!(r.map(|v| v.len()).unwrap_or(0), 19);
        } else if next.contains(&at) {
            prop_assert_eq!(r.map(|v| v.len()).unwrap_or(0), 20);
        } else {
            prop_assert!(r.is_err(), "flip at {} went unnoticed", at);
        }
        let keep = cut.index(good.len());
        std::fs::write(&p, &good[..keep]).unwrap();
        prop_assert!(read_all(d.path(), TailPolicy::Strict).is_err());
    }
}
