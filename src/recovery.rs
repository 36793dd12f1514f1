//! Start-up recovery: rebuild the limits from the journals, reconcile shard marks with them,
//! and forfeit what an unclean stop may have issued without a durable record.
//!
//! Per worker, the journal is a log of its shard's records in index order (the worker issues
//! strictly in order, appends before it marks, and recovery appends its forfeits in order too),
//! so journal record `i` must be shard record `i`; recovery checks that and sets the mark the
//! journal implies. A claim may carry a later round than its record was planned for: packets a
//! round leaves unissued carry over into the next (SPEC section 3). What happens past the
//! journal's end depends on how the node stopped:
//!
//! - clean (flag set at close): nothing; marks and journal agree exactly.
//! - unclean, same boot (a process crash: the page cache survived): the journal may hold a
//!   record whose mark is missing (killed between append and mark); recovery marks it. No mark
//!   can lie past the journal's end.
//! - unclean, different boot (a power cut): the journal's tail and marks past the last sync
//!   may be lost; every record below the durable lease that the journal does not have is
//!   forfeited (a forfeit record in the journal first, durably, then the mark). The lease is
//!   what bounds the loss: the worker never issued at or beyond it.
//!
//! Anything else is not what a crash or a power cut leaves, but an operator's mistake (the
//! wrong or an emptied journal directory, seeds generated again): forfeiting the marks the
//! journal does not explain would forget paid packets and reset their winners' limits. So
//! recovery runs in two steps. [`check`] opens and locks every worker's shard and journal,
//! reads them, and refuses ([`RecoveryError::Unexplained`], naming both paths and the counts)
//! before any file is changed; [`RecoveryPlan::apply`] then makes the changes. The rare
//! deliberate case (a journal really lost) is the operator's explicit
//! `shake recover --forfeit-unjournaled` ([`RecoveryConfig::forfeit_unjournaled`]).

use std::path::PathBuf;

use crate::activity::Activity;
use crate::engine::winners::WinnerTable;
use crate::journal::{
    scan_journal, Claim, JournalConfig, JournalError, JournalFlusher, JournalId, JournalScan,
    JournalWriter, Kind, SinkError, TailPolicy,
};
use crate::seed::manifest::Manifest;
use crate::seed::shard::{
    current_boot_id, ShardError, ShardExpect, ShardFile, FORFEITED, ISSUED, UNISSUED,
};
use crate::seed::{ShardFlusher, ShardSource};

/// Where one node's files are and how to open them.
#[derive(Debug, Clone)]
pub struct RecoveryConfig<'a> {
    pub activity: &'a Activity,
    pub node: u32,
    pub workers: u32,
    /// Directory holding `worker-<w>.shard` (seedgen's `DIR/node-<n>`).
    pub shard_dir: PathBuf,
    /// Root of the node's journals: worker w's segments are in `journal_dir/worker-<w>/`.
    pub journal_dir: PathBuf,
    pub journal: JournalConfig,
    /// Lease window in records (see [`crate::seed::lease`]).
    pub lease_window: u64,
    /// This boot's id; `None` reads it from the kernel. Tests pass another to simulate a reboot.
    pub boot_id: Option<[u8; 16]>,
    /// Time written into forfeit records (unix ms).
    pub now_ms: u64,
    /// The operator's deliberate override: forfeit every mark the journal cannot explain
    /// instead of refusing to start. Paid packets whose claims are lost become forfeits, and
    /// their winners' limits are forgotten; only `shake recover --forfeit-unjournaled` sets it.
    pub forfeit_unjournaled: bool,
    /// seedgen's manifest of these shards: each shard must have the checksum it lists.
    pub manifest: Option<&'a Manifest>,
}

impl RecoveryConfig<'_> {
    pub fn shard_path(&self, worker: u32) -> PathBuf {
        self.shard_dir.join(format!("worker-{worker}.shard"))
    }

    pub fn worker_journal_dir(&self, worker: u32) -> PathBuf {
        crate::journal::format::worker_dir(&self.journal_dir, worker)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error(transparent)]
    Shard(#[from] ShardError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("{journal}: record {index} does not match shard {shard} record {index}: {what}")]
    Mismatch {
        journal: PathBuf,
        shard: PathBuf,
        index: u64,
        what: String,
    },
    #[error(
        "shard {shard} and journal {journal} disagree beyond what a crash or a power cut leaves: {what}. \
         Nothing was changed. Check that [activity] journal and seeds in the node config are this node's; \
         if the journal is really lost, `shake recover --config <node.toml> --forfeit-unjournaled` forfeits \
         what it cannot explain (paid packets become forfeits, their winners' limits are forgotten)"
    )]
    Unexplained {
        shard: PathBuf,
        journal: PathBuf,
        what: String,
    },
    #[error("{journal}: cannot record forfeits: {source}")]
    Forfeit {
        journal: PathBuf,
        #[source]
        source: SinkError,
    },
    #[error("a recovery thread panicked")]
    Panicked,
}

/// How one worker's files were found and left.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerRecovery {
    pub worker: u32,
    /// The shard was not closed cleanly.
    pub unclean: bool,
    /// ...and by another boot (or an unknown one): treated as a power cut.
    pub power_cut: bool,
    pub claims: u64,
    /// Forfeit records already in the journal before this start.
    pub forfeits: u64,
    /// Packets forfeited by this recovery, and their cents.
    pub forfeited_now: u64,
    pub forfeited_cents: u64,
    /// Marks the journal implied that were missing (a kill between append and mark).
    pub marks_fixed: u64,
    /// Marks past the journal's end (lost journal tail after a power cut); forfeited.
    pub unjournaled_marks: u64,
    /// The journal ended in a torn record; non-empty slots wiped after the end.
    pub torn: bool,
    pub wiped: u64,
    pub records: u64,
    /// First record the worker will issue, and the lease it starts with.
    pub cursor: u64,
    pub lease: u64,
}

/// What recovery did, over the node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoverySummary {
    pub claims: u64,
    pub forfeited_now: u64,
    pub forfeited_cents: u64,
    /// Claims the winner tables refused (a user past the hard cap): a journal from another
    /// activity or a bug; the node still starts.
    pub limit_violations: u64,
    pub workers: Vec<WorkerRecovery>,
}

/// One worker, ready to serve.
#[derive(Debug)]
pub struct WorkerState {
    pub worker: u32,
    pub seeds: ShardSource,
    pub seed_flusher: ShardFlusher,
    pub journal: JournalWriter,
    pub journal_flusher: JournalFlusher,
    /// Winners among the users this worker owns, from every worker's journal.
    pub winners: WinnerTable,
}

#[derive(Debug)]
pub struct Recovered {
    pub workers: Vec<WorkerState>,
    pub summary: RecoverySummary,
}

/// One worker's files, read and checked, and what applying the plan will change.
#[derive(Debug)]
struct WorkerPlan {
    shard: ShardFile,
    journal: JournalScan,
    journal_dir: PathBuf,
    report: WorkerRecovery,
    /// Journal records whose shard mark is missing: (record index, the mark to set).
    fix: Vec<(usize, u8)>,
    /// Records `forfeit.0..forfeit.1` are forfeited (a record in the journal, then the mark).
    forfeit: (usize, usize),
    winners: WinnerTable,
}

/// Every worker of a node read and checked, nothing changed yet: [`check`]'s result.
#[derive(Debug)]
pub struct RecoveryPlan {
    workers: Vec<WorkerPlan>,
    boot: [u8; 16],
    lease_window: u64,
    now_ms: u64,
    sponsor_ids: Vec<u32>,
    round_ids: Vec<u32>,
    limit_violations: u64,
}

/// Recovers every worker of the node: [`check`], then [`RecoveryPlan::apply`].
pub fn recover<F>(cfg: &RecoveryConfig<'_>, owner: F) -> Result<Recovered, RecoveryError>
where
    F: Fn(u64) -> usize + Sync,
{
    check(cfg, owner)?.apply()
}

/// Reads every worker's shard and journal (in parallel, one thread per worker), checks that
/// they explain each other, and builds each worker's winner table from all journals, routing
/// each claim to `owner(user_id)` (a worker index below `cfg.workers`; out-of-range owners are
/// taken modulo the worker count). Changes no file; holds every shard's and journal's lock.
pub fn check<F>(cfg: &RecoveryConfig<'_>, owner: F) -> Result<RecoveryPlan, RecoveryError>
where
    F: Fn(u64) -> usize + Sync,
{
    let workers = cfg.workers.max(1) as usize;
    let boot = cfg.boot_id.unwrap_or_else(current_boot_id);
    let owner = &owner;
    let results: Vec<Result<Scanned, RecoveryError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers as u32)
            .map(|w| s.spawn(move || check_worker(cfg, w, boot, workers, owner)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(Err(RecoveryError::Panicked)))
            .collect()
    });
    let mut scanned = Vec::with_capacity(workers);
    for r in results {
        scanned.push(r?);
    }

    // Size each table for its worst case: every winner so far routed to it, plus one new
    // winner per packet its own shard has left.
    let mut per_owner: Vec<Vec<&[(u64, u16)]>> = vec![Vec::new(); workers];
    for p in &scanned {
        for (o, v) in p.winners_by_owner.iter().enumerate() {
            per_owner[o].push(v);
        }
    }
    let sizes: Vec<usize> = (0..workers)
        .map(|o| {
            let routed: usize = per_owner[o].iter().map(|v| v.len()).sum();
            routed + scanned[o].remaining
        })
        .collect();
    let built: Vec<Option<(WinnerTable, u64)>> = std::thread::scope(|s| {
        let handles: Vec<_> = per_owner
            .iter()
            .zip(&sizes)
            .map(|(lists, &size)| {
                s.spawn(move || {
                    let mut t = WinnerTable::with_capacity(size);
                    let mut refused = 0u64;
                    for list in lists {
                        for &(user, sponsor) in list.iter() {
                            refused += !t.record(user, sponsor) as u64;
                        }
                    }
                    (t, refused)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().ok()).collect()
    });
    drop(per_owner);

    let mut plan = RecoveryPlan {
        workers: Vec::with_capacity(workers),
        boot,
        lease_window: cfg.lease_window,
        now_ms: cfg.now_ms,
        sponsor_ids: cfg.activity.sponsors.iter().map(|s| s.id).collect(),
        round_ids: cfg.activity.rounds.iter().map(|r| r.id).collect(),
        limit_violations: 0,
    };
    for (p, b) in scanned.into_iter().zip(built) {
        let (winners, refused) = b.ok_or(RecoveryError::Panicked)?;
        plan.limit_violations += refused;
        let mut w = p.plan;
        w.winners = winners;
        plan.workers.push(w);
    }
    Ok(plan)
}

impl RecoveryPlan {
    /// What applying the plan will do (cursor, lease and wiped slots are known only after).
    pub fn summary(&self) -> RecoverySummary {
        let mut s = RecoverySummary {
            limit_violations: self.limit_violations,
            ..Default::default()
        };
        for w in &self.workers {
            s.claims += w.report.claims;
            s.forfeited_now += w.report.forfeited_now;
            s.forfeited_cents += w.report.forfeited_cents;
            s.workers.push(w.report.clone());
        }
        s
    }

    /// Workers in the plan (the node's shard count).
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Makes the changes [`check`] planned, every worker in parallel: prepares each journal
    /// for appending, sets the marks its records imply, records and marks the forfeits, and
    /// opens the shard for serving under a new lease.
    pub fn apply(self) -> Result<Recovered, RecoveryError> {
        let RecoveryPlan {
            workers,
            boot,
            lease_window,
            now_ms,
            sponsor_ids,
            round_ids,
            limit_violations,
        } = self;
        let ids = (&sponsor_ids[..], &round_ids[..]);
        let results: Vec<Result<(WorkerState, WorkerRecovery), RecoveryError>> =
            std::thread::scope(|s| {
                let handles: Vec<_> = workers
                    .into_iter()
                    .map(|w| s.spawn(move || apply_worker(w, boot, lease_window, now_ms, ids)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or(Err(RecoveryError::Panicked)))
                    .collect()
            });
        let mut summary = RecoverySummary {
            limit_violations,
            ..Default::default()
        };
        let mut out = Vec::with_capacity(results.len());
        for r in results {
            let (state, report) = r?;
            summary.claims += report.claims;
            summary.forfeited_now += report.forfeited_now;
            summary.forfeited_cents += report.forfeited_cents;
            summary.workers.push(report);
            out.push(state);
        }
        Ok(Recovered {
            workers: out,
            summary,
        })
    }
}

/// One worker checked: its plan, and its claims' winners by owning worker.
struct Scanned {
    plan: WorkerPlan,
    /// (user_id, sponsor_index) of this worker's claims, by owning worker.
    winners_by_owner: Vec<Vec<(u64, u16)>>,
    /// Packets the shard has left to issue.
    remaining: usize,
}

fn check_worker<F>(
    cfg: &RecoveryConfig<'_>,
    worker: u32,
    boot: [u8; 16],
    workers: usize,
    owner: &F,
) -> Result<Scanned, RecoveryError>
where
    F: Fn(u64) -> usize + Sync,
{
    let a = cfg.activity;
    let shard_path = cfg.shard_path(worker);
    let journal_dir = cfg.worker_journal_dir(worker);
    let shard = ShardFile::open(
        &shard_path,
        &ShardExpect {
            activity_id: Some(a.header.id),
            node: Some(cfg.node),
            worker: Some(worker),
            sponsors: Some(a.sponsors.len()),
            rounds: Some(a.rounds.len()),
            checksum: cfg.manifest.and_then(|m| {
                m.shard
                    .iter()
                    .find(|e| e.node == cfg.node && e.worker == worker)
                    .map(|e| e.checksum)
            }),
        },
    )?;
    let unclean = !shard.header.clean;
    let power_cut = unclean && (shard.header.boot_id != boot || boot == [0; 16]);
    let policy = if power_cut {
        TailPolicy::Lenient
    } else {
        TailPolicy::Strict
    };
    let mut report = WorkerRecovery {
        worker,
        unclean,
        power_cut,
        records: shard.len() as u64,
        ..Default::default()
    };
    let mut by_owner: Vec<Vec<(u64, u16)>> = vec![Vec::new(); workers];
    let mut fix: Vec<(usize, u8)> = Vec::new();
    let mut mismatch: Option<RecoveryError> = None;
    // Journal records whose mark says the other kind: (index, journal kind, mark).
    let mut conflict: Option<(u64, Kind, u8)> = None;
    let mut conflicts = 0u64;
    let sponsor_ids: Vec<u32> = a.sponsors.iter().map(|s| s.id).collect();
    let round_ids: Vec<u32> = a.rounds.iter().map(|r| r.id).collect();
    let journal = scan_journal(
        &journal_dir,
        JournalId {
            activity_id: a.header.id,
            node: cfg.node,
            worker,
        },
        cfg.journal,
        policy,
        |r| {
            if mismatch.is_some() {
                return;
            }
            let i = r.seq as usize;
            if i >= shard.len() {
                mismatch = Some(RecoveryError::Mismatch {
                    journal: journal_dir.clone(),
                    shard: shard_path.clone(),
                    index: r.seq,
                    what: format!("the shard has only {} records", shard.len()),
                });
                return;
            }
            let s = shard.record(i);
            let c = &r.claim;
            let sponsor = sponsor_ids.get(s.sponsor_index as usize).copied();
            let planned = s.round_index as usize;
            // A claim's round is its planned round or, carried over, a later one.
            let round_ok = round_ids.get(planned) == Some(&c.round_id)
                || round_ids[planned.min(round_ids.len())..].contains(&c.round_id);
            if c.packet_id != s.packet_id
                || c.amount_cents != s.amount_cents
                || Some(c.sponsor_id) != sponsor
                || !round_ok
            {
                mismatch = Some(RecoveryError::Mismatch {
                    journal: journal_dir.clone(),
                    shard: shard_path.clone(),
                    index: r.seq,
                    what: format!(
                        "journal has packet {} ({} cents, sponsor {}, round {}), shard has packet {} ({} cents, sponsor {:?}, round {:?} or later)",
                        c.packet_id, c.amount_cents, c.sponsor_id, c.round_id,
                        s.packet_id, s.amount_cents, sponsor, round_ids.get(planned)
                    ),
                });
                return;
            }
            let want = match r.kind {
                Kind::Claim => {
                    report.claims += 1;
                    let o = owner(c.user_id) % workers;
                    by_owner[o].push((c.user_id, s.sponsor_index));
                    ISSUED
                }
                Kind::Forfeit => {
                    report.forfeits += 1;
                    FORFEITED
                }
            };
            match shard.state(i) {
                m if m == want => {}
                UNISSUED => fix.push((i, want)),
                // A forfeit over an issued mark: the claim was lost with the power and the
                // mark was not, and a recovery forfeited the packet but was cut off before
                // its marks reached the disk. Only an unclean stop leaves that.
                ISSUED if r.kind == Kind::Forfeit && unclean => fix.push((i, want)),
                m => {
                    conflicts += 1;
                    conflict.get_or_insert((r.seq, r.kind, m));
                    fix.push((i, want));
                }
            }
        },
    )?;
    if let Some(e) = mismatch {
        return Err(e);
    }
    let end = journal.end();
    report.torn = end.torn;
    report.marks_fixed = fix.len() as u64;

    // Past the journal's end: marks with no record, and (after a power cut) the lease.
    let journaled = end.records as usize;
    let marked = shard.marked_end();
    let lease = shard.header.reserved_through as usize;
    let unjournaled: Vec<usize> = (journaled..marked)
        .filter(|&i| shard.state(i) != UNISSUED)
        .collect();
    report.unjournaled_marks = unjournaled.len() as u64;
    let served = shard.header.boot_id != [0; 16] || lease > 0 || marked > 0;

    if !cfg.forfeit_unjournaled {
        let refuse = |what: String| RecoveryError::Unexplained {
            shard: shard_path.clone(),
            journal: journal_dir.clone(),
            what,
        };
        let state = if !unclean {
            "closed cleanly"
        } else if power_cut {
            "not closed, by another boot (a power cut)"
        } else {
            "not closed, in this boot (a process crash)"
        };
        if let Some((i, kind, m)) = conflict {
            return Err(refuse(format!(
                "{conflicts} journal records disagree with their marks (the first: record {i} is a {}, the shard marks it {})",
                kind.name(),
                state_name(m)
            )));
        }
        if !served && journaled > 0 {
            return Err(refuse(format!(
                "the shard was never served (no lease, no marks), but the journal holds {journaled} records: the journal belongs to earlier seeds (was seedgen run again?)"
            )));
        }
        if journal.segment_count() == 0 && !unjournaled.is_empty() {
            return Err(refuse(format!(
                "the shard has {} packets marked issued or forfeited, but there is no journal at all",
                unjournaled.len()
            )));
        }
        if !unclean && (!unjournaled.is_empty() || !fix.is_empty()) {
            return Err(refuse(format!(
                "the shard was {state}, so every mark is in the journal and every record marked; but {} marks lie past the journal's {journaled} records and {} records are unmarked",
                unjournaled.len(),
                fix.len()
            )));
        }
        if unclean && !power_cut && !unjournaled.is_empty() {
            return Err(refuse(format!(
                "the shard was {state}, which keeps every journal record; but {} marks lie past the journal's {journaled} records (first at record {})",
                unjournaled.len(),
                unjournaled[0]
            )));
        }
        if let Some(&i) = unjournaled.iter().find(|&&i| i >= lease) {
            return Err(refuse(format!(
                "the shard was {state}; a power cut loses only records below the durable lease ({lease}), but record {i} is marked past it ({} marks past the journal's {journaled} records)",
                unjournaled.len()
            )));
        }
    }

    let mut forfeit_end = journaled.max(marked);
    if power_cut {
        forfeit_end = forfeit_end.max(lease);
    }
    for i in journaled..forfeit_end {
        report.forfeited_now += 1;
        report.forfeited_cents += shard.record(i).amount_cents as u64;
    }
    // Packets the worker has left: everything after what is journaled or forfeited.
    let remaining = shard.len() - forfeit_end.min(shard.len());
    Ok(Scanned {
        plan: WorkerPlan {
            shard,
            journal,
            journal_dir,
            report,
            fix,
            forfeit: (journaled, forfeit_end),
            winners: WinnerTable::with_capacity(0),
        },
        winners_by_owner: by_owner,
        remaining,
    })
}

fn state_name(state: u8) -> &'static str {
    match state {
        ISSUED => "issued",
        FORFEITED => "forfeited",
        _ => "unissued",
    }
}

fn apply_worker(
    w: WorkerPlan,
    boot: [u8; 16],
    lease_window: u64,
    now_ms: u64,
    (sponsor_ids, round_ids): (&[u32], &[u32]),
) -> Result<(WorkerState, WorkerRecovery), RecoveryError> {
    let WorkerPlan {
        mut shard,
        journal,
        journal_dir,
        mut report,
        fix,
        forfeit: (from, to),
        winners,
    } = w;
    let (mut journal, mut jflush, opened) = journal.open()?;
    report.wiped = opened.wiped;
    for (i, state) in fix {
        shard.set_state(i, state);
    }
    if to > from {
        for i in from..to {
            let s = shard.record(i);
            let claim = Claim {
                packet_id: s.packet_id,
                user_id: 0,
                amount_cents: s.amount_cents,
                sponsor_id: sponsor_ids[s.sponsor_index as usize],
                round_id: round_ids[s.round_index as usize],
                time_ms: now_ms,
            };
            let mut r = journal.forfeit(&claim);
            if r == Err(SinkError::Full) {
                jflush.flush()?;
                r = journal.forfeit(&claim);
            }
            r.map_err(|source| RecoveryError::Forfeit {
                journal: journal_dir.clone(),
                source,
            })?;
        }
        // The forfeit records are durable before any mark says forfeited.
        jflush.flush()?;
        for i in from..to {
            shard.set_state(i, FORFEITED);
        }
    }
    let (seeds, sflush) = shard.into_source_with_boot(lease_window, boot)?;
    report.cursor = seeds.cursor() as u64;
    report.lease = sflush.lease();
    Ok((
        WorkerState {
            worker: report.worker,
            seeds,
            seed_flusher: sflush,
            journal,
            journal_flusher: jflush,
            winners,
        },
        report,
    ))
}
