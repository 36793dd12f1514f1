//! Start-up recovery: rebuild the limits from the journals, reconcile shard marks with them,
//! and forfeit what an unclean stop may have issued without a durable record.
//!
//! Per worker, the journal is a log of its shard's records in index order (the worker issues
//! strictly in order, appends before it marks, and recovery appends its forfeits in order too),
//! so journal record `i` must be shard record `i`; recovery checks that and sets the mark the
//! journal implies. What happens past the journal's end depends on how the node stopped:
//!
//! - clean (flag set at close): nothing; marks and journal agree.
//! - unclean, same boot (a process crash: the page cache survived): the journal may hold a
//!   record whose mark is missing (killed between append and mark); recovery marks it.
//! - unclean, different boot (a power cut): the journal's tail and marks past the last sync
//!   may be lost; every record below the durable lease that the journal does not have is
//!   forfeited (a forfeit record in the journal first, durably, then the mark). The lease is
//!   what bounds the loss: the worker never issued at or beyond it.

use std::path::PathBuf;

use crate::activity::Activity;
use crate::engine::winners::WinnerTable;
use crate::journal::{
    open_journal, Claim, JournalConfig, JournalError, JournalFlusher, JournalId, JournalWriter,
    Kind, SinkError, TailPolicy,
};
use crate::seed::shard::{current_boot_id, ShardError, ShardExpect, ShardFile, FORFEITED, ISSUED};
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

struct Partial {
    state: (ShardSource, ShardFlusher, JournalWriter, JournalFlusher),
    report: WorkerRecovery,
    /// (user_id, sponsor_index) of this worker's claims, by owning worker.
    winners_by_owner: Vec<Vec<(u64, u16)>>,
    /// Packets the shard has left to issue.
    remaining: usize,
}

/// Recovers every worker of the node (in parallel, one thread per worker) and builds each
/// worker's winner table from all journals, routing each claim to `owner(user_id)` (a worker
/// index below `cfg.workers`; out-of-range owners are taken modulo the worker count).
pub fn recover<F>(cfg: &RecoveryConfig<'_>, owner: F) -> Result<Recovered, RecoveryError>
where
    F: Fn(u64) -> usize + Sync,
{
    let workers = cfg.workers.max(1) as usize;
    let boot = cfg.boot_id.unwrap_or_else(current_boot_id);
    let owner = &owner;
    let results: Vec<Result<Partial, RecoveryError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers as u32)
            .map(|w| s.spawn(move || recover_worker(cfg, w, boot, workers, owner)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(Err(RecoveryError::Panicked)))
            .collect()
    });
    let mut partials = Vec::with_capacity(workers);
    for r in results {
        partials.push(r?);
    }

    // Size each table for its worst case: every winner so far routed to it, plus one new
    // winner per packet its own shard has left.
    let mut per_owner: Vec<Vec<&[(u64, u16)]>> = vec![Vec::new(); workers];
    for p in &partials {
        for (o, v) in p.winners_by_owner.iter().enumerate() {
            per_owner[o].push(v);
        }
    }
    let sizes: Vec<usize> = (0..workers)
        .map(|o| {
            let routed: usize = per_owner[o].iter().map(|v| v.len()).sum();
            routed + partials[o].remaining
        })
        .collect();
    let built: Vec<(WinnerTable, u64)> = std::thread::scope(|s| {
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
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| (WinnerTable::with_capacity(0), u64::MAX))
            })
            .collect()
    });
    drop(per_owner);

    let mut summary = RecoverySummary::default();
    let mut out = Vec::with_capacity(workers);
    for (p, (winners, refused)) in partials.into_iter().zip(built) {
        if refused == u64::MAX {
            return Err(RecoveryError::Panicked);
        }
        summary.limit_violations += refused;
        summary.claims += p.report.claims;
        summary.forfeited_now += p.report.forfeited_now;
        summary.forfeited_cents += p.report.forfeited_cents;
        let (seeds, seed_flusher, journal, journal_flusher) = p.state;
        out.push(WorkerState {
            worker: p.report.worker,
            seeds,
            seed_flusher,
            journal,
            journal_flusher,
            winners,
        });
        summary.workers.push(p.report);
    }
    Ok(Recovered {
        workers: out,
        summary,
    })
}

fn recover_worker<F>(
    cfg: &RecoveryConfig<'_>,
    worker: u32,
    boot: [u8; 16],
    workers: usize,
    owner: &F,
) -> Result<Partial, RecoveryError>
where
    F: Fn(u64) -> usize + Sync,
{
    let a = cfg.activity;
    let shard_path = cfg.shard_path(worker);
    let journal_dir = cfg.worker_journal_dir(worker);
    let mut shard = ShardFile::open(
        &shard_path,
        &ShardExpect {
            activity_id: Some(a.header.id),
            node: Some(cfg.node),
            worker: Some(worker),
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
    let mut mismatch: Option<RecoveryError> = None;
    let sponsor_ids: Vec<u32> = a.sponsors.iter().map(|s| s.id).collect();
    let round_ids: Vec<u32> = a.rounds.iter().map(|r| r.id).collect();
    let (mut journal, mut jflush, opened) = open_journal(
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
            let round = round_ids.get(s.round_index as usize).copied();
            if c.packet_id != s.packet_id
                || c.amount_cents != s.amount_cents
                || Some(c.sponsor_id) != sponsor
                || Some(c.round_id) != round
            {
                mismatch = Some(RecoveryError::Mismatch {
                    journal: journal_dir.clone(),
                    shard: shard_path.clone(),
                    index: r.seq,
                    what: format!(
                        "journal has packet {} ({} cents, sponsor {}, round {}), shard has packet {} ({} cents, sponsor {:?}, round {:?})",
                        c.packet_id, c.amount_cents, c.sponsor_id, c.round_id,
                        s.packet_id, s.amount_cents, sponsor, round
                    ),
                });
                return;
            }
            match r.kind {
                Kind::Claim => {
                    report.claims += 1;
                    if shard.state(i) != ISSUED {
                        shard.set_state(i, ISSUED);
                        report.marks_fixed += 1;
                    }
                    let o = owner(c.user_id) % workers;
                    by_owner[o].push((c.user_id, s.sponsor_index));
                }
                Kind::Forfeit => {
                    report.forfeits += 1;
                    if shard.state(i) != FORFEITED {
                        shard.set_state(i, FORFEITED);
                        report.marks_fixed += 1;
                    }
                }
            }
        },
    )?;
    if let Some(e) = mismatch {
        return Err(e);
    }
    report.torn = opened.end.torn;
    report.wiped = opened.wiped;

    // Past the journal's end: marks with no record, and (after a power cut) the lease.
    let journaled = opened.end.records as usize;
    let marked = shard.marked_end();
    report.unjournaled_marks = (journaled..marked).filter(|&i| shard.state(i) != 0).count() as u64;
    let mut forfeit_end = journaled.max(marked);
    if power_cut {
        forfeit_end = forfeit_end.max(shard.header.reserved_through as usize);
    }
    if forfeit_end > journaled {
        for i in journaled..forfeit_end {
            let s = shard.record(i);
            let claim = Claim {
                packet_id: s.packet_id,
                user_id: 0,
                amount_cents: s.amount_cents,
                sponsor_id: sponsor_ids[s.sponsor_index as usize],
                round_id: round_ids[s.round_index as usize],
                time_ms: cfg.now_ms,
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
            report.forfeited_now += 1;
            report.forfeited_cents += s.amount_cents as u64;
        }
        // The forfeit records are durable before any mark says forfeited.
        jflush.flush()?;
        for i in journaled..forfeit_end {
            shard.set_state(i, FORFEITED);
        }
    }
    let (seeds, sflush) = shard.into_source_with_boot(cfg.lease_window, boot)?;
    let remaining = seeds.len() - seeds.cursor();
    report.cursor = seeds.cursor() as u64;
    report.lease = sflush.lease();
    Ok(Partial {
        state: (seeds, sflush, journal, jflush),
        report,
        winners_by_owner: by_owner,
        remaining,
    })
}
