//! Reconciling money: manifests, shards and journals of any number of nodes, to the cent.
//!
//! Checks, and reports every failure by file and record:
//! - every shard the manifest lists is present once, with the manifest's checksum;
//! - journal record `i` of (node, worker) is shard record `i` of (node, worker): same packet,
//!   amount and sponsor, a round at or after the one the packet was planned for (unissued
//!   packets carry over into later rounds, SPEC section 3), and the shard's mark agrees
//!   (claim = issued, forfeit = forfeited); marks past a journal's end are unissued;
//! - no packet_id appears twice across all journals;
//! - per sponsor: issued + unissued + forfeited = budget, and the journals' claims and
//!   forfeits add up to the shards' issued and forfeited money.
//!
//! With the claims stream given ([`reconcile_with_stream`]), the stream is the paid side:
//! per (node, worker) it holds exactly the journal's records (same sequence numbers, same
//! bytes), none twice, none missing, none beyond the journal's end; and per sponsor its claims
//! and forfeits are the journals'.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::fleet::message::StreamMessage;
use crate::journal::format::{encode, RECORD_LEN};
use crate::journal::reader::list_segments;
use crate::journal::{JournalReader, Kind, TailPolicy};
use crate::seed::manifest::{Manifest, ManifestError};
use crate::seed::shard::{ShardExpect, ShardImage, FORFEITED, ISSUED, UNISSUED};

/// Examples listed per kind of problem; past this many only the kind's count grows. An event
/// has millions of records: one systematic fault must not bury the report (or the terminal)
/// under millions of lines.
pub const MAX_LISTED: usize = 5;

/// Packets and cents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Money {
    pub packets: u64,
    pub cents: u64,
}

impl Money {
    fn add(&mut self, cents: u32) {
        self.packets += 1;
        self.cents += cents as u64;
    }
}

/// Issue states of a set of records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateTally {
    pub issued: Money,
    pub unissued: Money,
    pub forfeited: Money,
}

impl StateTally {
    fn add(&mut self, state: u8, cents: u32) {
        match state {
            ISSUED => self.issued.add(cents),
            FORFEITED => self.forfeited.add(cents),
            _ => self.unissued.add(cents),
        }
    }

    pub fn total(&self) -> Money {
        Money {
            packets: self.issued.packets + self.unissued.packets + self.forfeited.packets,
            cents: self.issued.cents + self.unissued.cents + self.forfeited.cents,
        }
    }
}

/// State tallies of one shard, by sponsor index and by round index.
pub fn tally_shard(
    img: &ShardImage,
    sponsors: usize,
    rounds: usize,
) -> (Vec<StateTally>, Vec<StateTally>) {
    let mut by_sponsor = vec![StateTally::default(); sponsors];
    let mut by_round = vec![StateTally::default(); rounds];
    for i in 0..img.len() {
        let r = img.record(i);
        let st = img.state(i);
        if let Some(t) = by_sponsor.get_mut(r.sponsor_index as usize) {
            t.add(st, r.amount_cents);
        }
        if let Some(t) = by_round.get_mut(r.round_index as usize) {
            t.add(st, r.amount_cents);
        }
    }
    (by_sponsor, by_round)
}

/// One sponsor's money, from the shards and from the journals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SponsorMoney {
    pub id: u32,
    pub budget_cents: u64,
    pub shards: StateTally,
    pub journal_claims: Money,
    pub journal_forfeits: Money,
    /// What the claims stream holds (only with a stream given).
    pub stream_claims: Money,
    pub stream_forfeits: Money,
}

/// One kind of problem: how often it occurred, and the first few occurrences.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProblemKind {
    pub count: u64,
    /// The first [`MAX_LISTED`], each naming its file and record.
    pub examples: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ReconcileReport {
    pub sponsors: Vec<SponsorMoney>,
    pub shards: usize,
    pub journals: usize,
    pub journal_records: u64,
    /// Messages and records read from the claims stream, when one was given.
    pub stream: Option<StreamTally>,
    /// Problems by kind (a short stable name such as `record_mismatch`).
    pub problems: BTreeMap<&'static str, ProblemKind>,
    pub problem_count: u64,
}

impl ReconcileReport {
    pub fn is_exact(&self) -> bool {
        self.problem_count == 0
    }

    fn problem(&mut self, kind: &'static str, p: String) {
        self.problem_count += 1;
        let k = self.problems.entry(kind).or_default();
        k.count += 1;
        if k.examples.len() < MAX_LISTED {
            k.examples.push(p);
        }
    }
}

/// What was read from the claims stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamTally {
    pub messages: u64,
    pub records: u64,
}

/// Every file under `dir` (recursively), sorted.
pub fn walk_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Directories under `root` (itself included) that hold journal segments.
pub fn journal_dirs(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = walk_files(root)?
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(crate::journal::format::segment_number)
                .is_some()
        })
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .collect();
    dirs.dedup();
    Ok(dirs)
}

/// Reconciles. `Err` only when the manifest cannot be read; everything else is a problem in
/// the report.
pub fn reconcile(
    manifest_path: &Path,
    seed_dirs: &[PathBuf],
    journal_roots: &[PathBuf],
) -> Result<ReconcileReport, ManifestError> {
    reconcile_with_stream(manifest_path, seed_dirs, journal_roots, None)
}

/// [`reconcile`], and the claims stream's messages (as [`crate::fleet::stream::read_all`]
/// reads them) against the journals.
pub fn reconcile_with_stream(
    manifest_path: &Path,
    seed_dirs: &[PathBuf],
    journal_roots: &[PathBuf],
    stream: Option<&[StreamMessage]>,
) -> Result<ReconcileReport, ManifestError> {
    let m = Manifest::load(manifest_path)?;
    let mut rep = ReconcileReport {
        sponsors: m
            .sponsor
            .iter()
            .map(|s| SponsorMoney {
                id: s.id,
                budget_cents: s.budget_cents,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let expect = ShardExpect {
        activity_id: Some(m.manifest.activity_id),
        ..Default::default()
    };

    // Shards, by (node, worker).
    let mut shards: BTreeMap<(u32, u32), ShardImage> = BTreeMap::new();
    for dir in seed_dirs {
        let files = match walk_files(dir) {
            Ok(f) => f,
            Err(e) => {
                rep.problem("unreadable", format!("{}: {e}", dir.display()));
                continue;
            }
        };
        for f in files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "shard"))
        {
            match ShardImage::load(f, &expect) {
                Ok(img) => {
                    let key = (img.header.node, img.header.worker);
                    if let Some(prev) = shards.get(&key) {
                        rep.problem(
                            "shard_twice",
                            format!(
                                "{}: shard node {} worker {} given twice (also {})",
                                f.display(),
                                key.0,
                                key.1,
                                prev.path.display()
                            ),
                        );
                    } else {
                        shards.insert(key, img);
                    }
                }
                Err(e) => rep.problem("shard_invalid", e.to_string()),
            }
        }
    }
    for e in &m.shard {
        match shards.get(&(e.node, e.worker)) {
            None => rep.problem(
                "shard_missing",
                format!(
                    "shard node {} worker {} ({}) is in the manifest but was not given",
                    e.node, e.worker, e.file
                ),
            ),
            Some(img) if img.header.checksum != e.checksum || img.len() as u64 != e.records => rep
                .problem(
                    "shard_checksum",
                    format!(
                        "{}: checksum {:#010x} and {} records, manifest says {:#010x} and {}",
                        img.path.display(),
                        img.header.checksum,
                        img.len(),
                        e.checksum,
                        e.records
                    ),
                ),
            Some(_) => {}
        }
    }
    for (&(n, w), img) in &shards {
        if !m.shard.iter().any(|e| e.node == n && e.worker == w) {
            rep.problem(
                "shard_not_in_manifest",
                format!("{}: not in the manifest", img.path.display()),
            );
        }
    }
    rep.shards = shards.len();

    // Journals, by (node, worker).
    let mut journals: BTreeMap<(u32, u32), PathBuf> = BTreeMap::new();
    for root in journal_roots {
        let dirs = match journal_dirs(root) {
            Ok(d) => d,
            Err(e) => {
                rep.problem("unreadable", format!("{}: {e}", root.display()));
                continue;
            }
        };
        for d in dirs {
            match list_segments(&d, None) {
                Ok(segs) => {
                    let Some(first) = segs.first() else { continue };
                    let id = first.header.id;
                    if id.activity_id != m.manifest.activity_id {
                        rep.problem(
                            "journal_activity",
                            format!(
                                "{}: journal of activity {}, manifest is activity {}",
                                d.display(),
                                id.activity_id,
                                m.manifest.activity_id
                            ),
                        );
                        continue;
                    }
                    if let Some(prev) = journals.insert((id.node, id.worker), d.clone()) {
                        rep.problem(
                            "journal_twice",
                            format!(
                                "{}: journal of node {} worker {} given twice (also {})",
                                d.display(),
                                id.node,
                                id.worker,
                                prev.display()
                            ),
                        );
                    }
                }
                Err(e) => rep.problem("journal_invalid", e.to_string()),
            }
        }
    }
    rep.journals = journals.len();

    // Journal against shard, record by record.
    let mut ids: Vec<(u64, u32, u64)> = Vec::new();
    let journal_list: Vec<((u32, u32), PathBuf)> = journals.into_iter().collect();
    let mut journaled: BTreeMap<(u32, u32), u64> = BTreeMap::new();
    // Each journal's raw records, to compare with the stream's (only with a stream).
    let mut raw: RawJournals = BTreeMap::new();
    for (ji, (key, dir)) in journal_list.iter().enumerate() {
        let Some(img) = shards.get(key) else {
            rep.problem(
                "journal_without_shard",
                format!(
                    "{}: journal of node {} worker {}, whose shard was not given",
                    dir.display(),
                    key.0,
                    key.1
                ),
            );
            continue;
        };
        let mut reader = match JournalReader::open_dir(dir, None, TailPolicy::Strict) {
            Ok(r) => r,
            Err(e) => {
                rep.problem("journal_invalid", e.to_string());
                continue;
            }
        };
        let mut n = 0u64;
        if stream.is_some() {
            raw.insert(*key, (dir.clone(), Vec::new()));
        }
        loop {
            let r = match reader.next_record() {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => {
                    rep.problem("journal_invalid", e.to_string());
                    break;
                }
            };
            n += 1;
            rep.journal_records += 1;
            if let Some((_, v)) = raw.get_mut(key) {
                v.push(encode(r.seq, r.kind, &r.claim));
            }
            ids.push((r.claim.packet_id, ji as u32, r.seq));
            let c = &r.claim;
            let at = format!("{} record {}", dir.display(), r.seq);
            let Some(sponsor) = rep.sponsors.iter().position(|s| s.id == c.sponsor_id) else {
                rep.problem(
                    "unknown_sponsor",
                    format!("{at}: sponsor {} is not in the manifest", c.sponsor_id),
                );
                continue;
            };
            match r.kind {
                Kind::Claim => rep.sponsors[sponsor].journal_claims.add(c.amount_cents),
                Kind::Forfeit => rep.sponsors[sponsor].journal_forfeits.add(c.amount_cents),
            }
            let i = r.seq as usize;
            if i >= img.len() {
                rep.problem(
                    "beyond_shard",
                    format!(
                        "{at}: beyond the end of {} ({} records)",
                        img.path.display(),
                        img.len()
                    ),
                );
                continue;
            }
            let s = img.record(i);
            let (sid, rid) = (m.sponsor_id(s.sponsor_index), m.round_id(s.round_index));
            // Carried over: issued in a later round than planned, never an earlier one.
            let round_ok = rid == Some(c.round_id)
                || m.round
                    .iter()
                    .skip(s.round_index as usize)
                    .any(|r| r.id == c.round_id);
            if s.packet_id != c.packet_id
                || s.amount_cents != c.amount_cents
                || sid != Some(c.sponsor_id)
                || !round_ok
            {
                rep.problem("record_mismatch", format!(
                    "{at}: packet {} of {} cents (sponsor {}, round {}), but {} record {i} is packet {} of {} cents (sponsor {:?}, round {:?} or later)",
                    c.packet_id, c.amount_cents, c.sponsor_id, c.round_id,
                    img.path.display(), s.packet_id, s.amount_cents, sid, rid
                ));
                continue;
            }
            let want = match r.kind {
                Kind::Claim => ISSUED,
                Kind::Forfeit => FORFEITED,
            };
            if img.state(i) != want {
                rep.problem(
                    "mark_disagrees",
                    format!(
                        "{at}: {} of packet {}, but {} record {i} has state {}",
                        r.kind.name(),
                        c.packet_id,
                        img.path.display(),
                        img.state(i)
                    ),
                );
            }
        }
        journaled.insert(*key, n);
    }

    // Shard marks past their journal's end, and money per sponsor.
    for (key, img) in &shards {
        let from = journaled.get(key).copied().unwrap_or(0) as usize;
        if let Some(i) = (from..img.len()).find(|&i| img.state(i) != UNISSUED) {
            rep.problem(
                "mark_without_record",
                format!(
                    "{} record {i}: marked {} but no journal records it (journal ends at {from})",
                    img.path.display(),
                    img.state(i)
                ),
            );
        }
        let (by_sponsor, _) = tally_shard(img, rep.sponsors.len(), 0);
        for (s, t) in rep.sponsors.iter_mut().zip(by_sponsor) {
            s.shards.issued.packets += t.issued.packets;
            s.shards.issued.cents += t.issued.cents;
            s.shards.unissued.packets += t.unissued.packets;
            s.shards.unissued.cents += t.unissued.cents;
            s.shards.forfeited.packets += t.forfeited.packets;
            s.shards.forfeited.cents += t.forfeited.cents;
        }
    }

    // No packet twice.
    ids.sort_unstable();
    for w in ids.windows(2) {
        if w[0].0 == w[1].0 {
            rep.problem(
                "packet_twice",
                format!(
                    "packet_id {} appears twice: {} record {} and {} record {}",
                    w[0].0,
                    journal_list[w[0].1 as usize].1.display(),
                    w[0].2,
                    journal_list[w[1].1 as usize].1.display(),
                    w[1].2
                ),
            );
        }
    }

    if let Some(msgs) = stream {
        check_stream(&mut rep, m.manifest.activity_id, msgs, raw);
    }

    let sponsors = rep.sponsors.clone();
    for s in &sponsors {
        let t = s.shards.total();
        if t.cents != s.budget_cents {
            rep.problem(
                "budget",
                format!(
                    "sponsor {}: issued {} + unissued {} + forfeited {} = {} cents, budget is {}",
                    s.id,
                    s.shards.issued.cents,
                    s.shards.unissued.cents,
                    s.shards.forfeited.cents,
                    t.cents,
                    s.budget_cents
                ),
            );
        }
        if s.journal_claims != s.shards.issued {
            rep.problem("claims_vs_marks", format!(
                "sponsor {}: journals claim {} packets, {} cents; shards mark {} packets, {} cents issued",
                s.id, s.journal_claims.packets, s.journal_claims.cents, s.shards.issued.packets, s.shards.issued.cents
            ));
        }
        if s.journal_forfeits != s.shards.forfeited {
            rep.problem("forfeits_vs_marks", format!(
                "sponsor {}: journals forfeit {} packets, {} cents; shards mark {} packets, {} cents forfeited",
                s.id, s.journal_forfeits.packets, s.journal_forfeits.cents, s.shards.forfeited.packets, s.shards.forfeited.cents
            ));
        }
    }
    Ok(rep)
}

/// Each journal's directory and raw records, by (node, worker).
type RawJournals = BTreeMap<(u32, u32), (PathBuf, Vec<[u8; RECORD_LEN]>)>;
/// A record the stream holds, and the stream sequence of its message.
type Held = ([u8; RECORD_LEN], u64);

/// The stream against the journals' raw records; adds the stream's money per sponsor.
fn check_stream(
    rep: &mut ReconcileReport,
    activity: u32,
    msgs: &[StreamMessage],
    raw: RawJournals,
) {
    let mut tally = StreamTally::default();
    // (node, worker) -> seq -> (record, stream sequence of its message)
    let mut held: BTreeMap<(u32, u32), BTreeMap<u64, Held>> = BTreeMap::new();
    for msg in msgs {
        tally.messages += 1;
        let at = format!("stream message {} on {}", msg.sequence, msg.subject);
        let Some(id) = msg.journal else {
            rep.problem(
                "stream_invalid",
                format!("{at}: not a claims subject of this event"),
            );
            continue;
        };
        if id.activity_id != activity {
            rep.problem(
                "stream_invalid",
                format!(
                    "{at}: records of activity {}, manifest is activity {activity}",
                    id.activity_id
                ),
            );
            continue;
        }
        let batch = match &msg.batch {
            Ok(b) => b,
            Err(e) => {
                rep.problem("stream_invalid", format!("{at}: {e}"));
                continue;
            }
        };
        let key = (id.node, id.worker);
        for (r, bytes) in batch.records() {
            tally.records += 1;
            let mut b = [0u8; RECORD_LEN];
            b.copy_from_slice(bytes);
            match held.entry(key).or_default().entry(r.seq) {
                std::collections::btree_map::Entry::Occupied(o) => {
                    rep.problem(
                        "stream_twice",
                        format!(
                            "node {} worker {} record {}: in stream messages {} and {}",
                            key.0,
                            key.1,
                            r.seq,
                            o.get().1,
                            msg.sequence
                        ),
                    );
                    continue;
                }
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert((b, msg.sequence));
                }
            }
            match rep.sponsors.iter_mut().find(|s| s.id == r.claim.sponsor_id) {
                Some(s) => match r.kind {
                    Kind::Claim => s.stream_claims.add(r.claim.amount_cents),
                    Kind::Forfeit => s.stream_forfeits.add(r.claim.amount_cents),
                },
                None => rep.problem(
                    "unknown_sponsor",
                    format!(
                        "{at} record {}: sponsor {} is not in the manifest",
                        r.seq, r.claim.sponsor_id
                    ),
                ),
            }
        }
    }
    rep.stream = Some(tally);
    for (key, (dir, records)) in raw {
        let h = held.remove(&key).unwrap_or_default();
        for (seq, j) in records.iter().enumerate() {
            match h.get(&(seq as u64)) {
                None => rep.problem(
                    "stream_missing",
                    format!("{} record {seq}: not in the stream", dir.display()),
                ),
                Some((s, ms)) if s != j => rep.problem(
                    "stream_mismatch",
                    format!(
                        "{} record {seq}: stream message {ms} holds other bytes for it",
                        dir.display()
                    ),
                ),
                Some(_) => {}
            }
        }
        for (seq, (_, ms)) in h.range(records.len() as u64..) {
            rep.problem(
                "stream_extra",
                format!(
                    "{} record {seq} (stream message {ms}): beyond the journal's end ({} records)",
                    dir.display(),
                    records.len()
                ),
            );
        }
    }
    for ((node, worker), h) in held {
        rep.problem(
            "stream_extra",
            format!(
                "node {node} worker {worker}: {} records in the stream, but no journal of it was given",
                h.len()
            ),
        );
    }
    let sponsors = rep.sponsors.clone();
    for s in &sponsors {
        if s.stream_claims != s.journal_claims || s.stream_forfeits != s.journal_forfeits {
            rep.problem(
                "stream_vs_journal",
                format!(
                    "sponsor {}: the stream claims {} packets, {} cents and forfeits {} packets; the journals claim {} packets, {} cents and forfeit {} packets",
                    s.id,
                    s.stream_claims.packets,
                    s.stream_claims.cents,
                    s.stream_forfeits.packets,
                    s.journal_claims.packets,
                    s.journal_claims.cents,
                    s.journal_forfeits.packets
                ),
            );
        }
    }
}
