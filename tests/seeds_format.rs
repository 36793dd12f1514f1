//! Shard files and manifests: round trips, every corruption a clear error (never a panic),
//! issuing under the lease.

mod seeds_util;

use proptest::prelude::*;
use seeds_util::{demo, TempDir};
use shake::seed::manifest::{generate, verify, Manifest, MANIFEST_FILE};
use shake::seed::plan::{plan, shard_records};
use shake::seed::shard::{
    self, field, ShardError, ShardExpect, ShardFile, ShardIdentity, ShardImage, HEADER_LEN, ISSUED,
    RECORD_LEN,
};
use shake::seed::{SeedRecord, SeedSource};

fn records() -> Vec<SeedRecord> {
    let a = demo();
    shard_records(&plan(&a, 1, 3, 5), 1)
}

fn write(dir: &TempDir) -> (std::path::PathBuf, Vec<SeedRecord>) {
    let recs = records();
    let path = dir.path().join("w.shard");
    shard::write_shard(
        &path,
        ShardIdentity {
            activity_id: 1,
            node: 0,
            worker: 1,
            random_seed: 5,
        },
        3,
        &recs,
    )
    .unwrap();
    (path, recs)
}

fn expect() -> ShardExpect {
    ShardExpect {
        activity_id: Some(1),
        node: Some(0),
        worker: Some(1),
        ..ShardExpect::default()
    }
}

#[test]
fn shard_round_trip() {
    let dir = TempDir::new("shard-rt");
    let (path, recs) = write(&dir);
    let img = ShardImage::load(&path, &expect()).unwrap();
    assert_eq!(img.len(), recs.len());
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        (HEADER_LEN + RECORD_LEN * recs.len()) as u64
    );
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(img.record(i), *r);
        assert_eq!(img.state(i), 0);
    }
    assert!(img.header.clean);
    assert_eq!(img.header.reserved_through, 0);
    assert_eq!(*img.header.round_ends.last().unwrap(), recs.len() as u64);
    // The read-write open agrees.
    let f = ShardFile::open(&path, &expect()).unwrap();
    assert_eq!(f.header, img.header);
    assert_eq!(f.record(7), recs[7]);
}

#[test]
fn shard_is_locked_while_open() {
    let dir = TempDir::new("shard-lock");
    let (path, _) = write(&dir);
    let _f = ShardFile::open(&path, &expect()).unwrap();
    let e = ShardFile::open(&path, &expect()).unwrap_err();
    assert!(matches!(e, ShardError::Locked { .. }), "{e}");
}

fn err_of(path: &std::path::Path, e: &ShardExpect) -> String {
    let a = ShardImage::load(path, e).unwrap_err().to_string();
    // The mapped open must agree that it is broken.
    let b = ShardFile::open(path, e).unwrap_err().to_string();
    assert_eq!(a, b);
    assert!(a.contains(&path.display().to_string()), "{a}");
    a
}

#[test]
fn shard_corruptions_are_clear_errors() {
    let dir = TempDir::new("shard-bad");
    let (path, recs) = write(&dir);
    let good = std::fs::read(&path).unwrap();
    let put = |b: &[u8]| std::fs::write(&path, b).unwrap();

    // Truncated: in the header, and mid-records.
    put(&good[..100]);
    assert!(err_of(&path, &expect()).contains("truncated"));
    put(&good[..good.len() - 5]);
    assert!(err_of(&path, &expect()).contains("truncated"));
    put(&[]);
    assert!(err_of(&path, &expect()).contains("truncated"));

    // Wrong version.
    let mut b = good.clone();
    b[field::VERSION].copy_from_slice(&2u32.to_le_bytes());
    put(&b);
    assert!(err_of(&path, &expect()).contains("version 2"));

    // Wrong magic.
    let mut b = good.clone();
    b[0] = b'X';
    put(&b);
    assert!(err_of(&path, &expect()).contains("bad magic"));

    // Flipped byte in a record's amount.
    let mut b = good.clone();
    b[HEADER_LEN + 10 * RECORD_LEN + 9] ^= 0x40;
    put(&b);
    assert!(err_of(&path, &expect()).contains("checksum mismatch"));

    // Flipped byte in the lease.
    let mut b = good.clone();
    b[field::LEASE.start] ^= 1;
    put(&b);
    assert!(err_of(&path, &expect()).contains("lease block checksum"));

    // A state byte that is no state.
    let mut b = good.clone();
    b[HEADER_LEN + 3 * RECORD_LEN + field::record::STATE] = 9;
    put(&b);
    let e = err_of(&path, &expect());
    assert!(e.contains("record 3") && e.contains("state byte 9"), "{e}");

    // Wrong node, worker, activity.
    put(&good);
    for (e, want) in [
        (
            ShardExpect {
                node: Some(3),
                ..expect()
            },
            "node 0, expected 3",
        ),
        (
            ShardExpect {
                worker: Some(0),
                ..expect()
            },
            "worker 1, expected 0",
        ),
        (
            ShardExpect {
                activity_id: Some(9),
                ..expect()
            },
            "activity 1, expected 9",
        ),
        // An edited activity with the same id: fewer sponsors or other rounds than the shard
        // refers to. Its records would index past the node's tables.
        (
            ShardExpect {
                sponsors: Some(1),
                ..expect()
            },
            "but the activity has 1 sponsors",
        ),
        (
            ShardExpect {
                rounds: Some(2),
                ..expect()
            },
            "round count 3, expected 2",
        ),
        (
            ShardExpect {
                checksum: Some(0x1234),
                ..expect()
            },
            "another generation of seeds",
        ),
    ] {
        let m = err_of(&path, &e);
        assert!(m.contains(want), "{m}");
    }
    assert_eq!(
        ShardImage::load(&path, &expect()).unwrap().len(),
        recs.len()
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Any single changed byte is an error, except a state byte changed to another valid state
    /// (states are the mutable part: recovery and reconcile judge them against the journal).
    #[test]
    fn shard_any_flip_or_truncation_is_an_error(pos in any::<prop::sample::Index>(), xor in 1u8..=255, cut in any::<prop::sample::Index>()) {
        let dir = TempDir::new("shard-prop");
        let (path, _) = write(&dir);
        let good = std::fs::read(&path).unwrap();
        let at = pos.index(good.len());
        let mut b = good.clone();
        b[at] ^= xor;
        std::fs::write(&path, &b).unwrap();
        let r = ShardImage::load(&path, &expect());
        let is_state = at >= HEADER_LEN && (at - HEADER_LEN) % RECORD_LEN == field::record::STATE;
        if !(is_state && b[at] <= 2) {
            prop_assert!(r.is_err(), "flip at {} went unnoticed", at);
        }
        let keep = cut.index(good.len());
        std::fs::write(&path, &good[..keep]).unwrap();
        prop_assert!(ShardImage::load(&path, &expect()).is_err());
    }
}

#[test]
fn issuing_stops_at_the_lease_and_the_flusher_extends_it() {
    let dir = TempDir::new("shard-lease");
    let (path, recs) = write(&dir);
    let f = ShardFile::open(&path, &expect()).unwrap();
    let (mut src, mut fl) = f.into_source_with_boot(8, [7; 16]).unwrap();
    assert_eq!(src.lease(), 8);
    let last_round = 2;
    let mut got = Vec::new();
    while let Some(r) = src.peek(last_round) {
        got.push(r);
        src.commit(last_round);
    }
    assert_eq!(got, recs[..8]);
    assert!(src.lease_stalls() >= 1);
    // Money left is not hidden by the lease.
    assert_eq!(src.available(last_round), (recs.len() - 8) as u64);
    // The header holds the lease durably before the worker sees it.
    assert_eq!(fl.flush().unwrap(), 16);
    assert_eq!(src.lease(), 16);
    let mut bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes[field::LEASE][0], 16);
    assert_eq!(bytes[field::CLEAN][0], 0);
    assert_eq!(bytes[HEADER_LEN + 7 * RECORD_LEN + 16], ISSUED);
    assert_eq!(bytes[HEADER_LEN + 8 * RECORD_LEN + 16], 0);
    src.commit(last_round);
    fl.close(src).unwrap();
    bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes[field::LEASE][0], 9);
    assert_eq!(bytes[field::CLEAN][0], 1);
    // Reopening continues where it stopped.
    let (src, _fl) = ShardFile::open(&path, &expect())
        .unwrap()
        .into_source_with_boot(8, [7; 16])
        .unwrap();
    assert_eq!(src.cursor(), 9);
    assert_eq!(src.peek(last_round), Some(recs[9]));
}

#[test]
fn seedgen_is_deterministic_and_verifies() {
    let a = demo();
    let d1 = TempDir::new("sg1");
    let d2 = TempDir::new("sg2");
    let m1 = generate(&a, 2, 3, 77, d1.path()).unwrap();
    let m2 = generate(&a, 2, 3, 77, d2.path()).unwrap();
    assert_eq!(m1, m2);
    for e in &m1.shard {
        assert_eq!(
            std::fs::read(d1.path().join(&e.file)).unwrap(),
            std::fs::read(d2.path().join(&e.file)).unwrap()
        );
    }
    let loaded = Manifest::load(&d1.path().join(MANIFEST_FILE)).unwrap();
    assert_eq!(loaded, m1);
    assert!(verify(d1.path(), &loaded).is_empty());
    for (i, s) in a.sponsors.iter().enumerate() {
        let cents: u64 = m1.shard.iter().map(|e| e.sponsor_cents[i]).sum();
        assert_eq!(cents, s.budget_cents);
    }
    // A shard from another seed: checksum differs from the manifest.
    let d3 = TempDir::new("sg3");
    generate(&a, 2, 3, 78, d3.path()).unwrap();
    std::fs::copy(
        d3.path().join("node-1/worker-2.shard"),
        d1.path().join("node-1/worker-2.shard"),
    )
    .unwrap();
    let p = verify(d1.path(), &loaded);
    assert!(
        p.iter().any(|p| p.contains("node-1/worker-2.shard")),
        "{p:?}"
    );
    // A shard swapped into another worker's place names the mismatch.
    std::fs::copy(
        d1.path().join("node-0/worker-0.shard"),
        d1.path().join("node-0/worker-1.shard"),
    )
    .unwrap();
    let p = verify(d1.path(), &loaded);
    assert!(
        p.iter()
            .any(|p| p.contains("node-0/worker-1.shard") && p.contains("worker 0, expected 1")),
        "{p:?}"
    );
    // A manifest entry naming a file outside the set is refused, not read.
    let mut odd = loaded.clone();
    odd.shard[0].file = "/dev/zero".into();
    let p = verify(d1.path(), &odd);
    assert!(
        p.iter()
            .any(|p| p.contains("/dev/zero") && p.contains("node-0/worker-0.shard")),
        "{p:?}"
    );
}
