//! Power cuts, hundreds of them: serve, lose what a power cut loses, recover under a new boot
//! id, serve on; then check that no packet was ever answered twice, that the limits held over
//! what the journals pay, that every forfeit is recorded and each cut forfeited at most one
//! lease window per worker, and that the money reconciles: after every recovery on the records
//! it touched, every [`RECONCILE_EVERY`] cycles and at the end with `reconcile` over all files.
//!
//! The test keeps its own model of the disk: for every shard and journal segment, the bytes
//! the disk holds. The model takes the files' bytes only where the code makes them durable:
//! - a journal flush: `fdatasync` of the segments holding the records appended since the last
//!   one (and the next segment, which `create_segment` writes and syncs whole);
//! - a shard flush that extends the lease: `pwrite` of the header and `fdatasync`, which also
//!   writes the marks the worker made through the map (a flush that extends nothing syncs
//!   nothing, so its marks stay volatile);
//! - recovery, which has synced everything it wrote by the time it returns.
//!
//! The flushers are called as the control loop calls them (`node::Flushers::flush`: per
//! worker the journal, then the shard), and a cut may fall between any two calls. A cut drops
//! the node without closing anything and writes the model back over the files.
//!
//! What survives of the unsynced writes, by variant:
//! - `Variant::Strict`: nothing.
//! - `Variant::Pages`: whatever the kernel wrote back. Now and then between operations one
//!   random dirty 4 KiB page (journal tail or shard marks, of either worker) reaches the disk in
//!   the state it has then, so pages land in any order and may change again afterwards; at the
//!   cut each dirty page lands whole, or not at all, or (a write in flight) only some of its
//!   512-byte sectors do; and a cut may fall inside a flush's `fdatasync`, so the shard header
//!   with the new lease may or may not land. A journal record (64 bytes) never spans two
//!   sectors, and a shard record's state is one byte.
//! - `Variant::Pages` with cuts during recovery: after a recovery, sometimes the power goes
//!   again before it finished: either while its forfeit records were being synced (journal:
//!   the wipe of the old tail, then any subset of the forfeit pages; shard untouched) or after
//!   that, while the shard's marks were being synced (journal complete; any subset of the mark
//!   pages; the header not yet rewritten). Recovery then runs again under another boot id.
//!
//! The files live on tmpfs when there is one: the model, not the kernel, decides what is
//! durable, so real `fdatasync`s (milliseconds each on a shared disk) would only cost time.

mod seeds_util;

use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use seeds_util::{close, issue, owner};
use shake::activity::Activity;
use shake::journal::format::{
    decode, segment_name, segment_number, Slot, HEADER_LEN as JH, RECORD_LEN as JR,
};
use shake::journal::{JournalConfig, JournalReader, Kind, TailPolicy};
use shake::reconcile::reconcile;
use shake::recovery::{recover, Recovered, RecoveryConfig, WorkerRecovery};
use shake::rng::Rng;
use shake::seed::manifest::{generate, MANIFEST_FILE};
use shake::seed::shard::{FORFEITED, HEADER_LEN as SH, ISSUED, RECORD_LEN as SR, UNISSUED};

const PAGE: usize = 4096;
/// What a disk writes atomically: a write in flight at the cut may leave some sectors of a
/// page old and others new.
const SECTOR: usize = 512;
const WORKERS: u32 = 2;
/// Lease window (records) and journal segment size (records): small, so that the unsynced
/// tail spans several pages and the journal rotates between syncs.
const WINDOW: u64 = 256;
const SEGMENT: u64 = 1024;
/// Users drawn from: small enough that the limits bind often.
const USERS: u64 = 25_000;
/// Per test, whichever comes first (`POWER_CUT_CYCLES` overrides the count).
const CYCLES: usize = 300;
const DEADLINE: Duration = Duration::from_secs(120);
/// A full reconcile (every shard and journal record) every this many cycles, and at the end.
const RECONCILE_EVERY: usize = 10;

const ACTIVITY: &str = r#"
[activity]
id = 77
name = "power cut"
epoch = 0

[limits]
per_user = 3
per_sponsor = 1

[[sponsor]]
id = 301
name = "one"
budget_cents = 12000000
packets = 80000
min_cents = 1
max_cents = 300
resource = 1
greeting_resources = [2]

[[sponsor]]
id = 302
name = "two"
budget_cents = 16000000
packets = 80000
min_cents = 100
max_cents = 300
resource = 3
greeting_resources = [4]

[[sponsor]]
id = 303
name = "three"
budget_cents = 4000000
packets = 80000
min_cents = 1
max_cents = 100
resource = 5
greeting_resources = [6]
rounds = [2]

[[round]]
id = 1
start_s = 0
duration_s = 60
win_probability = 0.1
greeting_probability = 0.3

[[round]]
id = 2
start_s = 60
duration_s = 60
win_probability = 0.1
greeting_probability = 0.3
"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Strict,
    Pages,
}

/// A directory on tmpfs (or the temp dir), removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let p = base.join(format!("shake-power-cut-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn read_at(path: &Path, at: usize, len: usize) -> Vec<u8> {
    let f = std::fs::File::open(path).unwrap();
    let mut b = vec![0u8; len];
    f.read_exact_at(&mut b, at as u64).unwrap();
    b
}

/// The bytes the disk holds, per file.
#[derive(Default, Clone)]
struct Disk {
    files: HashMap<PathBuf, Vec<u8>>,
}

impl Disk {
    /// The whole file is durable (created synced, or everything synced).
    fn sync_file(&mut self, path: &Path) {
        self.files
            .insert(path.to_path_buf(), std::fs::read(path).unwrap());
    }

    /// Pages `pages` of the file are durable as they are now.
    fn sync_pages(&mut self, path: &Path, pages: std::ops::Range<usize>) {
        let img = self.files.get_mut(path).expect("file in the model");
        let end = (pages.end * PAGE).min(img.len());
        let at = pages.start * PAGE;
        if at < end {
            img[at..end].copy_from_slice(&read_at(path, at, end - at));
        }
    }

    /// One 512-byte sector of the file is durable as it is now.
    fn sync_sector(&mut self, path: &Path, sector: usize) {
        let img = self.files.get_mut(path).expect("file in the model");
        let at = sector * SECTOR;
        let end = (at + SECTOR).min(img.len());
        if at < end {
            img[at..end].copy_from_slice(&read_at(path, at, end - at));
        }
    }

    /// Pages among `pages` whose file bytes differ from the disk's.
    fn dirty(&self, path: &Path, pages: std::ops::Range<usize>, out: &mut Vec<(PathBuf, usize)>) {
        let img = &self.files[path];
        let end = (pages.end * PAGE).min(img.len());
        let at = pages.start * PAGE;
        if at >= end {
            return;
        }
        let now = read_at(path, at, end - at);
        for (i, chunk) in now.chunks(PAGE).enumerate() {
            let p = at + i * PAGE;
            if chunk != &img[p..p + chunk.len()] {
                out.push((path.to_path_buf(), pages.start + i));
            }
        }
    }

    /// Writes the model back over the file.
    fn restore(&self, path: &Path) {
        let f = OpenOptions::new().write(true).open(path).unwrap();
        let img = &self.files[path];
        assert_eq!(f.metadata().unwrap().len(), img.len() as u64, "{path:?}");
        f.write_all_at(img, 0).unwrap();
    }
}

/// Pages holding bytes `bytes` of a file.
fn pages(bytes: std::ops::Range<usize>) -> std::ops::Range<usize> {
    if bytes.is_empty() {
        return 0..0;
    }
    bytes.start / PAGE..bytes.end.div_ceil(PAGE)
}

/// A RED_PACKET answer a phone received.
#[derive(Debug, Clone, Copy)]
struct Answer {
    worker: u32,
    seq: u64,
    user: u64,
    amount: u32,
    sponsor: u32,
}

/// What the worker had done when the power went.
#[derive(Debug, Clone, Copy)]
struct AtCut {
    /// Records the journal had made durable, and the worker's cursor.
    synced: u64,
    cursor: u64,
    /// Lease in the shard header the disk holds.
    lease: u64,
}

#[derive(Debug, Default)]
struct Stats {
    cycles: usize,
    cuts: usize,
    recovery_cuts: usize,
    issued: u64,
    forfeited: u64,
    max_forfeited: u64,
    /// Answers whose journal record did not survive.
    lost_answers: u64,
    /// Cuts where journal records past the last sync survived (kernel writeback).
    tails_kept: u64,
    /// Recoveries that wiped journal records found after a hole.
    holes: u64,
    /// Shard marks found past the journal's end (their pages landed, the journal's did not).
    unjournaled_marks: u64,
    /// Cuts inside a flush's `fdatasync`.
    torn_flushes: u64,
    /// Dirty pages of which only some sectors landed at the cut.
    torn_pages: u64,
}

struct Harness {
    a: Activity,
    _dir: Scratch,
    seeds: PathBuf,
    journals: PathBuf,
    disk: Disk,
    rng: Rng,
    variant: Variant,
    boots: u128,
    /// Per worker: journal records and shard records whose bytes the model holds as they are.
    journal_synced: Vec<u64>,
    shard_synced: Vec<u64>,
    answered: HashMap<u64, Answer>,
    /// Per worker: forfeit records in the journal after the last recovery.
    forfeit_records: Vec<u64>,
    /// Answers of the current cycle.
    recent: Vec<Answer>,
    stats: Stats,
}

impl Harness {
    fn new(name: &str, variant: Variant, seed: u64) -> Self {
        let dir = Scratch::new(name);
        let a = Activity::parse(Path::new("power-cut.toml"), ACTIVITY).unwrap();
        let seeds = dir.0.join("seeds");
        let journals = dir.0.join("journals");
        generate(&a, 1, WORKERS, seed, &seeds).unwrap();
        Harness {
            a,
            _dir: dir,
            seeds,
            journals,
            disk: Disk::default(),
            rng: Rng::new(seed),
            variant,
            boots: 0,
            journal_synced: vec![0; WORKERS as usize],
            shard_synced: vec![0; WORKERS as usize],
            answered: HashMap::new(),
            forfeit_records: vec![0; WORKERS as usize],
            recent: Vec::new(),
            stats: Stats::default(),
        }
    }

    fn config(&self, boot: [u8; 16]) -> RecoveryConfig<'_> {
        RecoveryConfig {
            activity: &self.a,
            node: 0,
            workers: WORKERS,
            shard_dir: self.seeds.join("node-0"),
            journal_dir: self.journals.join("node-0"),
            journal: JournalConfig {
                segment_records: SEGMENT,
            },
            lease_window: WINDOW,
            boot_id: Some(boot),
            now_ms: 1_000,
            forfeit_unjournaled: false,
            manifest: None,
        }
    }

    fn shard(&self, w: u32) -> PathBuf {
        self.seeds.join(format!("node-0/worker-{w}.shard"))
    }

    fn journal_dir(&self, w: u32) -> PathBuf {
        self.journals.join(format!("node-0/worker-{w}"))
    }

    fn segment(&self, w: u32, n: u64) -> PathBuf {
        self.journal_dir(w).join(segment_name(n))
    }

    /// Segment files of worker `w` on disk, by number.
    fn segments_on_disk(&self, w: u32) -> Vec<(u64, PathBuf)> {
        let mut v: Vec<_> = std::fs::read_dir(self.journal_dir(w))
            .unwrap()
            .filter_map(|e| {
                let e = e.unwrap();
                let n = segment_number(e.file_name().to_str()?)?;
                Some((n, e.path()))
            })
            .collect();
        v.sort();
        v
    }

    /// Files and pages holding journal records `seqs` of worker `w`.
    fn journal_pages(
        &self,
        w: u32,
        seqs: std::ops::Range<u64>,
    ) -> Vec<(PathBuf, std::ops::Range<usize>)> {
        let mut out = Vec::new();
        let mut s = seqs.start;
        while s < seqs.end {
            let n = s / SEGMENT;
            let end = seqs.end.min((n + 1) * SEGMENT);
            let slot = |x: u64| JH + (x - n * SEGMENT) as usize * JR;
            out.push((self.segment(w, n), pages(slot(s)..slot(end))));
            s = end;
        }
        out
    }

    /// Pages holding the state bytes of shard records `records`.
    fn shard_pages(records: std::ops::Range<u64>) -> std::ops::Range<usize> {
        pages(SH + records.start as usize * SR..SH + records.end as usize * SR)
    }

    fn next_boot(&mut self) -> [u8; 16] {
        self.boots += 1;
        (self
            .boots
            .wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
            | 1)
        .to_le_bytes()
    }

    /// Recovers under a new boot id and takes everything recovery wrote as durable.
    fn recover(&mut self) -> Recovered {
        let boot = self.next_boot();
        let r = recover(&self.config(boot), owner(WORKERS))
            .unwrap_or_else(|e| panic!("cycle {}: recovery failed: {e}", self.stats.cycles));
        assert_eq!(
            r.summary.limit_violations, 0,
            "the journals hold a user past the limits"
        );
        for w in 0..WORKERS {
            let shard = self.shard(w);
            self.disk.sync_file(&shard);
            // Recovery rewrites the journal from its end on; older segments are as they were.
            let from = self.journal_synced[w as usize] / SEGMENT;
            let on_disk = self.segments_on_disk(w);
            let dir = self.journal_dir(w);
            self.disk
                .files
                .retain(|p, _| p.parent() != Some(&dir) || on_disk.iter().any(|(_, q)| q == p));
            for (n, p) in on_disk {
                if n >= from || !self.disk.files.contains_key(&p) {
                    self.disk.sync_file(&p);
                }
            }
            let ws = &r.workers[w as usize];
            assert_eq!(ws.journal.appended(), ws.journal.durable());
            self.journal_synced[w as usize] = ws.journal.appended();
            self.shard_synced[w as usize] = ws.seeds.cursor() as u64;
        }
        r
    }

    /// A journal flush of worker `w`; `torn`: the power goes during its `fdatasync`.
    fn flush_journal(&mut self, r: &mut Recovered, w: u32, torn: bool) {
        let ws = &mut r.workers[w as usize];
        let from = ws.journal_flusher.durable();
        let to = ws.journal_flusher.flush().unwrap();
        if torn {
            return;
        }
        for (p, pg) in self.journal_pages(w, from..to) {
            self.disk.sync_pages(&p, pg);
        }
        // Segments the flusher created (synced whole before it hands them over).
        let mut n = to / SEGMENT;
        loop {
            let p = self.segment(w, n);
            if !p.exists() {
                break;
            }
            if !self.disk.files.contains_key(&p) {
                self.disk.sync_file(&p);
            }
            n += 1;
        }
        self.journal_synced[w as usize] = to;
    }

    /// A shard flush of worker `w`: durable only if it extended the lease. Returns whether it
    /// wrote the header (`torn`: the power goes during its `fdatasync`, so it may not land).
    fn flush_shard(&mut self, r: &mut Recovered, w: u32, torn: bool) -> bool {
        let ws = &mut r.workers[w as usize];
        let before = ws.seed_flusher.lease();
        let wrote = ws.seed_flusher.flush().unwrap() != before;
        if wrote && !torn {
            let cursor = ws.seed_flusher.cursor();
            let p = self.shard(w);
            self.disk.sync_pages(&p, 0..1);
            let synced = self.shard_synced[w as usize];
            self.disk.sync_pages(&p, Self::shard_pages(synced..cursor));
            self.shard_synced[w as usize] = cursor;
        }
        wrote
    }

    /// Pages written since they were last durable (`header`: also the shard header of a
    /// worker whose flush was cut in its `fdatasync`).
    fn dirty_pages(&self, r: &Recovered, header: Option<u32>) -> Vec<(PathBuf, usize)> {
        let mut out = Vec::new();
        for w in 0..WORKERS {
            let ws = &r.workers[w as usize];
            let shard = self.shard(w);
            let from = self.shard_synced[w as usize];
            self.disk.dirty(
                &shard,
                Self::shard_pages(from..ws.seeds.cursor() as u64),
                &mut out,
            );
            if header == Some(w) {
                self.disk.dirty(&shard, 0..1, &mut out);
            }
            let seqs = self.journal_synced[w as usize]..ws.journal.appended();
            for (p, pg) in self.journal_pages(w, seqs) {
                self.disk.dirty(&p, pg, &mut out);
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// The kernel writes one dirty page back.
    fn writeback(&mut self, r: &Recovered) {
        let d = self.dirty_pages(r, None);
        if !d.is_empty() {
            let (p, pg) = &d[self.rng.below(d.len() as u64) as usize];
            self.disk.sync_pages(p, *pg..*pg + 1);
        }
    }

    /// One serving phase; ends in a power cut. Returns what each worker had done.
    fn serve_and_cut(&mut self, mut r: Recovered) -> Vec<AtCut> {
        let ops = self.rng.below(600);
        // Shakes between control-loop ticks, on average: from a tight loop to a stalled one.
        let tick = [2, 8, 32, 128, 1024][self.rng.below(5) as usize];
        let last_round = (self.a.rounds.len() - 1) as u16;
        let mut torn_header = None;
        let mut i = 0;
        while i < ops {
            if self.rng.below(tick) == 0 {
                // A control-loop tick: per worker the journal, then the shard. The power may
                // go after any of the calls, or inside the last one's fdatasync.
                for w in 0..WORKERS {
                    for shard in [false, true] {
                        i += 1;
                        let torn =
                            i >= ops && self.variant == Variant::Pages && self.rng.below(2) == 0;
                        if shard {
                            if self.flush_shard(&mut r, w, torn) && torn {
                                torn_header = Some(w);
                            }
                        } else {
                            self.flush_journal(&mut r, w, torn);
                        }
                        self.stats.torn_flushes += torn as u64;
                        if i >= ops {
                            break;
                        }
                    }
                    if i >= ops {
                        break;
                    }
                }
            } else {
                i += 1;
                let user = 1 + self.rng.below(USERS);
                let w = owner(WORKERS)(user);
                let seq = r.workers[w].journal.appended();
                if let Some(c) = issue(&self.a, &mut r.workers[w], last_round, user) {
                    let ans = Answer {
                        worker: w as u32,
                        seq,
                        user,
                        amount: c.amount_cents,
                        sponsor: c.sponsor_id,
                    };
                    assert!(
                        self.answered.insert(c.packet_id, ans).is_none(),
                        "cycle {}: packet {} answered twice (now to user {user} by worker {w})",
                        self.stats.cycles,
                        c.packet_id
                    );
                    self.recent.push(ans);
                    self.stats.issued += 1;
                }
            }
            if self.variant == Variant::Pages && self.rng.below(6) == 0 {
                self.writeback(&r);
            }
        }
        // The cut: each dirty page lands, or not, or (a write in flight) only some of its
        // sectors do.
        if self.variant == Variant::Pages {
            for (p, pg) in self.dirty_pages(&r, torn_header) {
                match self.rng.below(4) {
                    0 | 1 => {}
                    2 => self.disk.sync_pages(&p, pg..pg + 1),
                    _ => {
                        for s in 0..PAGE / SECTOR {
                            if self.rng.below(2) == 0 {
                                self.disk.sync_sector(&p, pg * PAGE / SECTOR + s);
                            }
                        }
                        self.stats.torn_pages += 1;
                    }
                }
            }
        }
        let at: Vec<AtCut> = (0..WORKERS)
            .map(|w| {
                let ws = &r.workers[w as usize];
                AtCut {
                    synced: self.journal_synced[w as usize],
                    cursor: ws.seeds.cursor() as u64,
                    lease: lease_of(&self.disk.files[&self.shard(w)]),
                }
            })
            .collect();
        drop(r); // no close, no flush
        self.write_back_model();
        self.stats.cuts += 1;
        at
    }

    /// Puts the disk's bytes back into the files, as the machine finds them at the next boot.
    fn write_back_model(&mut self) {
        for w in 0..WORKERS {
            self.disk.restore(&self.shard(w));
            let from = self.journal_synced[w as usize] / SEGMENT;
            for (n, p) in self.segments_on_disk(w) {
                if !self.disk.files.contains_key(&p) {
                    std::fs::remove_file(&p).unwrap();
                } else if n >= from {
                    self.disk.restore(&p);
                }
            }
        }
    }

    /// Checks one worker's recovery against what it had done when the power went. `first`:
    /// the first recovery after that cut (not a second one after a cut during recovery).
    fn check_recovery(&mut self, w: u32, rep: &WorkerRecovery, at: &AtCut, first: bool) {
        let c = self.stats.cycles;
        assert!(rep.unclean && rep.power_cut, "cycle {c}: {rep:?}");
        let journaled = rep.claims + rep.forfeits;
        assert_eq!(
            rep.cursor,
            journaled + rep.forfeited_now,
            "cycle {c} worker {w}: {rep:?}"
        );
        assert!(
            journaled >= at.synced,
            "cycle {c} worker {w}: synced records lost: {journaled} < {} ({rep:?})",
            at.synced
        );
        let old_forfeits = self.forfeit_records[w as usize];
        if first {
            // Forfeits were synced before the last recovery returned; serving appends claims.
            assert_eq!(rep.forfeits, old_forfeits, "cycle {c} worker {w}: {rep:?}");
            if self.variant == Variant::Strict {
                assert_eq!(journaled, at.synced, "cycle {c} worker {w}: {rep:?}");
            }
        } else {
            assert!(
                rep.forfeits >= old_forfeits,
                "cycle {c} worker {w}: {rep:?}"
            );
        }
        assert!(
            journaled <= at.cursor.max(at.lease),
            "cycle {c} worker {w}: more records than issued or forfeited ({rep:?}, {at:?})"
        );
        // The worker never issues a record index twice: it starts past everything it issued.
        assert!(
            rep.cursor >= at.cursor,
            "cycle {c} worker {w}: restarts at record {} but had issued up to {} ({rep:?})",
            rep.cursor,
            at.cursor
        );
        assert_eq!(
            rep.cursor,
            at.lease.max(journaled),
            "cycle {c} worker {w}: forfeits up to the durable lease ({rep:?}, {at:?})"
        );
        self.stats.tails_kept += (first && journaled > at.synced) as u64;
        self.stats.holes += (rep.wiped > 0) as u64;
        self.stats.unjournaled_marks += rep.unjournaled_marks;
        if first {
            for a in self.recent.iter().filter(|a| a.worker == w) {
                if a.seq >= journaled {
                    self.stats.lost_answers += 1;
                }
            }
        }
    }

    /// Checks every worker's recovery and reconciles.
    fn check_recovered(&mut self, r: &Recovered, at: &[AtCut], first: bool) {
        for w in 0..WORKERS {
            let rep = r.summary.workers[w as usize].clone();
            self.check_recovery(w, &rep, &at[w as usize], first);
            self.check_region(w, at[w as usize].synced, rep.cursor);
        }
        if self.stats.cycles % RECONCILE_EVERY == 0 {
            self.reconcile_exact();
        }
    }

    /// What reconcile checks, on the records this cut and recovery touched (a full reconcile
    /// reads every file and runs every [`RECONCILE_EVERY`] cycles): journal record `i` is
    /// shard record `i` with the mark its kind implies, up to the cursor; past it, no
    /// record and no mark.
    fn check_region(&self, w: u32, from: u64, cursor: u64) {
        let c = self.stats.cycles;
        let shard = &self.disk.files[&self.shard(w)];
        let len = ((shard.len() - SH) / SR) as u64;
        let slot = |i: u64| -> Option<&[u8]> {
            let img = self.disk.files.get(&self.segment(w, i / SEGMENT))?;
            let at = JH + (i % SEGMENT) as usize * JR;
            Some(&img[at..at + JR])
        };
        for i in from..(cursor + 2 * WINDOW).min(len) {
            let rec = &shard[SH + i as usize * SR..SH + (i as usize + 1) * SR];
            let (packet, state) = (u64::from_le_bytes(rec[..8].try_into().unwrap()), rec[16]);
            let journal = slot(i).map(|b| decode(b, i));
            if i < cursor {
                let Some(Slot::Record(r)) = journal else {
                    panic!("cycle {c} worker {w}: record {i} below the cursor {cursor} is not in the journal: {journal:?}");
                };
                let want = match r.kind {
                    Kind::Claim => ISSUED,
                    Kind::Forfeit => FORFEITED,
                };
                assert_eq!(
                    (r.claim.packet_id, state),
                    (packet, want),
                    "cycle {c} worker {w} record {i}: journal {r:?}"
                );
            } else {
                assert!(
                    matches!(journal, None | Some(Slot::Empty)),
                    "cycle {c} worker {w}: journal record {i} past the cursor {cursor}: {journal:?}"
                );
                assert_eq!(
                    state, UNISSUED,
                    "cycle {c} worker {w}: record {i} marked past the cursor {cursor}"
                );
            }
        }
    }

    /// After the last recovery of a cut: what it forfeited (net of forfeit records a cut
    /// during recovery lost and the next recovery wrote again) is at most one lease window.
    fn count_forfeits(&mut self, r: &Recovered) {
        for w in 0..WORKERS {
            let rep = &r.summary.workers[w as usize];
            let total = rep.forfeits + rep.forfeited_now;
            let new = total - self.forfeit_records[w as usize];
            assert!(
                new <= WINDOW,
                "cycle {} worker {w}: {new} forfeited, more than the lease window {WINDOW} ({rep:?})",
                self.stats.cycles
            );
            self.stats.forfeited += new;
            self.stats.max_forfeited = self.stats.max_forfeited.max(new);
            self.forfeit_records[w as usize] = total;
        }
    }

    fn reconcile_exact(&self) {
        let rep = reconcile(
            &self.seeds.join(MANIFEST_FILE),
            std::slice::from_ref(&self.seeds),
            std::slice::from_ref(&self.journals),
        )
        .unwrap();
        assert!(
            rep.is_exact(),
            "cycle {}: reconcile: {:#?}",
            self.stats.cycles,
            rep.problems
        );
        for s in &rep.sponsors {
            assert_eq!(s.shards.total().cents, s.budget_cents, "sponsor {}", s.id);
        }
    }

    /// The power goes again while recovery runs: a disk state between the one it started
    /// from (`before`) and the one it left.
    fn cut_during_recovery(&mut self, r: Recovered, before: &Disk) {
        let after = self.disk.clone();
        let journal_stage = self.rng.below(2) == 0;
        for w in 0..WORKERS {
            let rep = &r.summary.workers[w as usize];
            let journaled = rep.cursor - rep.forfeited_now;
            let shard = self.shard(w);
            // The files it rewrote start at the journal's old end.
            self.journal_synced[w as usize] = journaled;
            if journal_stage {
                // Cut while the forfeit records were being synced: the wipe of the old tail
                // (synced first) is on disk, the forfeit pages land or not, the shard is as
                // it was.
                self.disk
                    .files
                    .insert(shard.clone(), before.files[&shard].clone());
                let dir = self.journal_dir(w);
                let paths: Vec<PathBuf> = after
                    .files
                    .keys()
                    .filter(|p| p.parent() == Some(&dir))
                    .cloned()
                    .collect();
                for p in paths {
                    let n = segment_number(p.file_name().unwrap().to_str().unwrap()).unwrap();
                    let new = &after.files[&p];
                    let mut base = before.files.get(&p).cloned().unwrap_or_else(|| {
                        // Created during recovery: synced empty before records went in.
                        let mut b = new.clone();
                        b[JH..].fill(0);
                        b
                    });
                    for slot in 0..SEGMENT {
                        if n * SEGMENT + slot >= journaled {
                            let at = JH + slot as usize * JR;
                            base[at..at + JR].fill(0);
                        }
                    }
                    for pg in 0..new.len() / PAGE {
                        let span = pg * PAGE..(pg + 1) * PAGE;
                        if base[span.clone()] != new[span.clone()] && self.rng.below(2) == 0 {
                            base[span.clone()].copy_from_slice(&new[span]);
                        }
                    }
                    self.disk.files.insert(p, base);
                }
            } else {
                // Cut while the shard's marks were being synced: the journal is complete, the
                // mark pages land or not, the header is the old one.
                let old = &before.files[&shard];
                let mut img = old.clone();
                for pg in 1..img.len().div_ceil(PAGE) {
                    let span = pg * PAGE..((pg + 1) * PAGE).min(img.len());
                    if self.rng.below(2) == 0 {
                        img[span.clone()].copy_from_slice(&after.files[&shard][span]);
                    }
                }
                self.disk.files.insert(shard, img);
            }
        }
        drop(r);
        // Nothing the first recovery wrote below its starting point changed; what it wrote
        // from there on is what the model now says.
        self.write_back_model();
        self.stats.recovery_cuts += 1;
    }
}

/// The lease in a shard image's header.
fn lease_of(img: &[u8]) -> u64 {
    u64::from_le_bytes(img[64..72].try_into().unwrap())
}

fn cycles() -> usize {
    std::env::var("POWER_CUT_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(CYCLES)
}

fn run(name: &str, variant: Variant, cut_recovery: bool, seed: u64) -> Stats {
    let mut h = Harness::new(name, variant, seed);
    let started = Instant::now();
    let mut r = h.recover();
    assert!(r.summary.workers.iter().all(|w| !w.unclean));
    let want = cycles();
    while h.stats.cycles < want && started.elapsed() < DEADLINE {
        h.stats.cycles += 1;
        h.recent.clear();
        let at = h.serve_and_cut(r);
        let before = cut_recovery.then(|| h.disk.clone());
        r = h.recover();
        h.check_recovered(&r, &at, true);
        if let Some(before) = before.filter(|_| h.rng.below(2) == 0) {
            h.cut_during_recovery(r, &before);
            r = h.recover();
            // The second recovery answers for the same serving phase.
            h.check_recovered(&r, &at, false);
        }
        h.count_forfeits(&r);
    }
    close(r.workers);
    final_checks(&h);
    eprintln!(
        "power cut {name}: {:?} in {:.1}s",
        h.stats,
        started.elapsed().as_secs_f64()
    );
    h.stats
}

/// Over the journals of every cycle: each answer is paid (a claim with the same user, amount
/// and sponsor) or recorded forfeited; no packet twice; limits held; forfeits all recorded.
fn final_checks(h: &Harness) {
    let mut seen = HashSet::new();
    let mut paid: HashMap<u64, Vec<u32>> = HashMap::new();
    let mut kinds: HashMap<u64, (Kind, u64, u32, u32)> = HashMap::new();
    let mut forfeits = 0u64;
    for w in 0..WORKERS {
        for rec in JournalReader::open_dir(&h.journal_dir(w), None, TailPolicy::Strict).unwrap() {
            let rec = rec.unwrap();
            let c = rec.claim;
            assert!(
                seen.insert(c.packet_id),
                "packet {} twice in the journals",
                c.packet_id
            );
            match rec.kind {
                Kind::Claim => paid.entry(c.user_id).or_default().push(c.sponsor_id),
                Kind::Forfeit => forfeits += 1,
            }
            kinds.insert(
                c.packet_id,
                (rec.kind, c.user_id, c.amount_cents, c.sponsor_id),
            );
        }
    }
    assert_eq!(forfeits, h.stats.forfeited, "every forfeit is in a journal");
    let mut lost = 0;
    for (id, a) in &h.answered {
        let (kind, user, amount, sponsor) = kinds
            .get(id)
            .unwrap_or_else(|| panic!("answered packet {id} is in no journal: {a:?}"));
        match kind {
            Kind::Claim => {
                assert_eq!(
                    (*user, *amount, *sponsor),
                    (a.user, a.amount, a.sponsor),
                    "{a:?}"
                )
            }
            Kind::Forfeit => lost += 1,
        }
    }
    assert_eq!(lost, h.stats.lost_answers);
    // Every claim in the journals was answered (the test answers each append).
    let claims: usize = paid.values().map(Vec::len).sum();
    assert_eq!(claims as u64, h.stats.issued - lost);
    for (u, s) in &paid {
        assert!(s.len() <= h.a.limits.per_user as usize, "user {u}: {s:?}");
        let distinct: HashSet<_> = s.iter().collect();
        assert_eq!(
            distinct.len(),
            s.len(),
            "user {u} twice from one sponsor: {s:?}"
        );
    }
    h.reconcile_exact();
}

#[test]
fn power_cut_loses_everything_after_the_last_sync() {
    let s = run("strict", Variant::Strict, false, 11);
    assert!(s.cycles >= 1);
    assert!(s.lost_answers > 0 && s.forfeited > 0, "{s:?}");
    assert_eq!(s.tails_kept, 0);
}

#[test]
fn power_cut_keeps_a_random_subset_of_unsynced_pages() {
    let s = run("pages", Variant::Pages, false, 12);
    assert!(s.lost_answers > 0 && s.forfeited > 0, "{s:?}");
    // The variant reached what it is for: journal tails past the sync survived, records after
    // a hole, marks past the journal's end, pages half written.
    if s.cycles >= 100 {
        assert!(
            s.tails_kept > 0 && s.holes > 0 && s.unjournaled_marks > 0 && s.torn_pages > 0,
            "{s:?}"
        );
    }
}

#[test]
fn power_cut_during_recovery() {
    let s = run("recovery", Variant::Pages, true, 13);
    if s.cycles >= 100 {
        assert!(s.recovery_cuts > 0, "{s:?}");
    }
}
