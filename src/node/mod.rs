//! Assembling a node from its config: the activity, the workers' snapshot, and one worker per
//! core with its own seeds, journal and tables; and the node's [`lifecycle`], which runs
//! those workers on any backend. Shared by every I/O backend, so the socket backend and the
//! DPDK appliance serve exactly the same decisions and recover, flush, reload and stop the
//! same way.

pub mod fleet;
pub mod lifecycle;

pub use crate::time::unix_ms;
pub use lifecycle::{Lifecycle, LifecycleError};

use std::path::Path;
use std::sync::Arc;

use crate::activity::Activity;
use crate::engine::config::{owner_worker, Live};
use crate::engine::users::UserTable;
use crate::engine::winners::WinnerTable;
use crate::engine::Worker;
use crate::journal::{JournalConfig, JournalError, JournalFlusher, JournalWriter, MemoryJournal};
use crate::node_config::{ConfigError, NodeConfig};
use crate::recovery::{self, RecoveryConfig, RecoveryError, RecoveryPlan, RecoverySummary};
use crate::seed::lease::DEFAULT_WINDOW;
use crate::seed::manifest::{node_workers, Manifest, ManifestError, MANIFEST_FILE};
use crate::seed::shard::ShardError;
use crate::seed::{plan, MemorySource, ShardFlusher, ShardSource};

/// A node's config, activity and current snapshot.
pub struct Node {
    pub config: NodeConfig,
    pub activity: Activity,
    pub live: Arc<Live>,
    /// When the node started (unix seconds): `epoch = "now"` means this.
    pub start_s: u64,
}

/// A worker with in-memory seeds and journal.
pub type MemoryWorker = Worker<MemorySource, MemoryJournal>;

/// A worker with memory-mapped shards and a claim journal: what production nodes run.
pub type DurableWorker = Worker<ShardSource, JournalWriter>;

/// The control loop's half of a durable worker: it makes the worker's writes durable.
pub struct Flushers {
    pub seed: ShardFlusher,
    pub journal: JournalFlusher,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Recovery(#[from] RecoveryError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Shard(#[from] ShardError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{0}")]
    Layout(String),
    /// The node's own state file (its highest config_version) could not be read or written.
    #[error("{0}")]
    State(String),
}

impl Flushers {
    /// Makes everything appended so far durable and extends the lease. Called every few
    /// milliseconds by the control loop; never by a worker.
    pub fn flush(&mut self) -> Result<(), NodeError> {
        self.journal.flush()?;
        self.seed.flush()?;
        Ok(())
    }

    /// Clean close: final sync, then the shard's clean flag.
    pub fn close(self, worker: DurableWorker) -> Result<(), NodeError> {
        let (seeds, journal, _) = worker.into_parts();
        self.journal.close(journal)?;
        self.seed.close(seeds)?;
        Ok(())
    }
}

impl Node {
    /// Loads the config and the activity, and the highest config_version this node served
    /// before (see [`Node::persist_version`]): the new version is above it.
    pub fn load(path: &Path) -> Result<Node, NodeError> {
        let config = NodeConfig::load(path)?;
        fleet::refuse_without_engines(&config, cfg!(feature = "fleet"))?;
        let activity = config.activity()?;
        let start_s = unix_ms() / 1000;
        let previous = match version_path(&config) {
            Some(p) => read_version(&p)?,
            None => 0,
        };
        // In a fleet the version is etcd's revision, never the clock: the node starts on
        // what it applied last and etcd's current revision follows.
        let live = if fleet::in_fleet(&config) {
            fleet::starting_live(&config, &activity, start_s, previous)?
        } else {
            config.live(&activity, start_s, previous, start_s)?
        };
        Ok(Node {
            config,
            activity,
            live,
            start_s,
        })
    }

    /// Re-reads the config and the activity for a live reload. Sponsors and rounds are bound
    /// to the seeds by position, so a reload may change timing, probabilities, limits,
    /// throttling and the blacklist, but not which sponsors and rounds exist.
    pub fn reload(&mut self) -> Result<Arc<Live>, NodeError> {
        if fleet::in_fleet(&self.config) {
            return Err(NodeError::State(format!(
                "{}: this node takes its live config from etcd ([fleet] etcd): change it with \
                 `shake fleet push`",
                self.config.path.display()
            )));
        }
        let config = NodeConfig::load(&self.config.path)?;
        let activity = config.activity()?;
        activity
            .check_same_ids(&self.activity)
            .map_err(ConfigError::from)?;
        let now_s = unix_ms() / 1000;
        let live = config.live(&activity, self.start_s, self.live.config_version, now_s)?;
        // Recorded before any worker sees it: after a restart the version is above this one.
        if let Some(p) = version_path(&config) {
            write_version(&p, live.config_version)?;
        }
        self.config = config;
        self.activity = activity;
        self.live = live.clone();
        Ok(live)
    }

    /// Records the config_version in force (in the journal directory's `config_version`), so
    /// that the next start serves a higher one: clients compare versions to learn that their
    /// config is stale, and a version that went backwards across a restart would hide every
    /// change from a client holding the higher number (SPEC section 4). Called once the node
    /// has passed its start-up checks, and by every reload. A node without a journal directory
    /// keeps nothing across restarts, its version included: it starts from the clock.
    pub fn persist_version(&self) -> Result<(), NodeError> {
        match version_path(&self.config) {
            Some(p) => write_version(&p, self.live.config_version),
            None => Ok(()),
        }
    }

    /// Which of `workers` workers owns a user.
    pub fn owner_worker(&self, user_id: u64, workers: u32) -> u32 {
        owner_worker(user_id, self.config.node.count, workers)
    }

    /// This node's shard directory (seedgen's `DIR/node-<index>`), if the config names seeds.
    pub fn shard_dir(&self) -> Option<std::path::PathBuf> {
        let dir = self.config.activity.seeds.as_ref()?;
        Some(
            self.config
                .resolve(dir)
                .join(format!("node-{}", self.config.node.index)),
        )
    }

    /// The seeds directory seedgen wrote (`manifest.toml` and a `node-<n>` per node), if the
    /// config names one.
    pub fn seeds_dir(&self) -> Option<std::path::PathBuf> {
        let dir = self.config.activity.seeds.as_ref()?;
        Some(self.config.resolve(dir))
    }

    /// First half of starting on durable seeds: loads seedgen's manifest (the one authority on
    /// which shards exist and how many workers the node has), then opens, locks, reads and
    /// checks every listed shard and its journal. Changes no file: an error here leaves the
    /// node's files exactly as they were. `forfeit_unjournaled` is the operator's explicit
    /// override for a journal that is really lost (see [`crate::recovery`]).
    pub fn check_durable(
        &self,
        now_ms: u64,
        forfeit_unjournaled: bool,
    ) -> Result<RecoveryPlan, NodeError> {
        let seeds = self
            .seeds_dir()
            .ok_or_else(|| NodeError::Layout("no [activity] seeds directory configured".into()))?;
        let journal_dir = self
            .config
            .activity
            .journal
            .as_ref()
            .map(|j| self.config.resolve(j))
            .ok_or_else(|| {
                NodeError::Layout(format!(
                    "{}: [activity] seeds needs a journal directory too",
                    self.config.path.display()
                ))
            })?;
        let manifest_path = seeds.join(MANIFEST_FILE);
        if !manifest_path.exists() {
            return Err(NodeError::Layout(format!(
                "{}: no seeds manifest: run `shake seedgen --out {}` for this activity first",
                manifest_path.display(),
                seeds.display()
            )));
        }
        let manifest = Manifest::load(&manifest_path)?;
        let (node, node_count) = (self.config.node.index, self.config.node.count);
        let workers = node_workers(&seeds, &manifest, &self.activity, node, node_count)?;
        let rc = RecoveryConfig {
            activity: &self.activity,
            node,
            workers,
            shard_dir: seeds.join(format!("node-{node}")),
            journal_dir,
            journal: JournalConfig::default(),
            lease_window: DEFAULT_WINDOW,
            boot_id: None,
            now_ms,
            forfeit_unjournaled,
            manifest: Some(&manifest),
        };
        Ok(recovery::check(&rc, |user| {
            owner_worker(user, node_count, workers) as usize
        })?)
    }

    /// Second half: applies a checked recovery and builds a worker over each shard.
    pub fn durable_workers_from(
        &self,
        plan: RecoveryPlan,
        now_ms: u64,
    ) -> Result<(Vec<DurableWorker>, Vec<Flushers>, RecoverySummary), NodeError> {
        let workers = plan.workers().max(1) as u64;
        let recovered = plan.apply()?;
        let users_each = (self.config.node.planned_users / workers).max(1) as usize;
        let mut out = Vec::with_capacity(recovered.workers.len());
        let mut flushers = Vec::with_capacity(recovered.workers.len());
        for st in recovered.workers {
            out.push(Worker::new(
                self.live.clone(),
                user_table(users_each, now_ms)?,
                st.winners,
                st.seeds,
                st.journal,
                self.config.activity.random_seed ^ ((st.worker as u64 + 1) << 17) ^ now_ms,
            ));
            flushers.push(Flushers {
                seed: st.seed_flusher,
                journal: st.journal_flusher,
            });
        }
        Ok((out, flushers, recovered.summary))
    }

    /// Workers over the node's memory-mapped shards and claim journals, recovered from the
    /// journals: one worker per shard the manifest lists for this node.
    pub fn durable_workers(
        &self,
        now_ms: u64,
    ) -> Result<(Vec<DurableWorker>, Vec<Flushers>, RecoverySummary), NodeError> {
        let plan = self.check_durable(now_ms, false)?;
        self.durable_workers_from(plan, now_ms)
    }

    /// Workers with seeds planned in memory from the activity: shard (node, worker) of a plan
    /// for `node.count` nodes of `workers` workers each.
    pub fn memory_workers(
        &self,
        workers: u32,
        now_ms: u64,
    ) -> Result<Vec<MemoryWorker>, NodeError> {
        let planned = plan::plan(
            &self.activity,
            self.config.node.count,
            workers,
            self.config.activity.random_seed,
        );
        let users_each = (self.config.node.planned_users / workers.max(1) as u64).max(1) as usize;
        (0..workers)
            .map(|w| {
                let shard = self.config.node.index * workers + w;
                let records = plan::shard_records(&planned, shard);
                let n = records.len();
                Ok(Worker::new(
                    self.live.clone(),
                    user_table(users_each, now_ms)?,
                    WinnerTable::with_capacity(n),
                    MemorySource::new(records, self.activity.rounds.len()),
                    MemoryJournal::with_capacity(n),
                    self.config.activity.random_seed ^ ((shard as u64 + 1) << 17),
                ))
            })
            .collect()
    }
}

/// Where a node keeps its highest config_version: beside its journals, the node's durable
/// state.
fn version_path(config: &NodeConfig) -> Option<std::path::PathBuf> {
    let dir = config.activity.journal.as_ref()?;
    Some(config.resolve(dir).join(VERSION_FILE))
}

/// The file holding the highest config_version a node served.
pub const VERSION_FILE: &str = "config_version";

fn read_version(path: &Path) -> Result<u32, NodeError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(NodeError::State(format!("{}: {e}", path.display()))),
    };
    text.trim().parse::<u32>().map_err(|_| {
        NodeError::State(format!(
            "{}:1: config_version {:?} is not a number (written by the node; remove the file only if the journals are new too)",
            path.display(),
            text.trim()
        ))
    })
}

/// Writes the version durably (see [`write_durably`]).
fn write_version(path: &Path, version: u32) -> Result<(), NodeError> {
    write_durably(path, format!("{version}\n").as_bytes())
        .map_err(|e| NodeError::State(format!("{}: {e}", path.display())))
}

/// Replaces a file durably: a temporary file, synced, renamed over the old one, and the
/// directory synced.
fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir).and_then(|d| d.sync_all())
}

/// A worker's user table, or an error that says how much memory it wanted.
fn user_table(users: usize, now_ms: u64) -> Result<UserTable, NodeError> {
    UserTable::try_new(users, now_ms).map_err(|e| {
        NodeError::Layout(format!(
            "user table for {users} users ({} MB): {e}; lower [node] planned_users",
            users.saturating_mul(crate::engine::users::BYTES_PER_USER) >> 20
        ))
    })
}
