//! A node's one lifecycle, whatever its backend: check, open, recover, serve, stop.
//!
//! Every backend ([`crate::backend::Backend`]: DPDK lcores, kernel sockets) runs the same steps
//! in the same order, here and nowhere else:
//!
//! 1. [`Lifecycle::prepare`]: signal handlers, then the read-only half of recovery (manifest,
//!    shards, journals, locks). A refusal here changes no file.
//! 2. The caller opens its backend (DPDK: the EAL and the ports; sockets: nothing yet).
//! 3. [`Lifecycle::run`]: the worker count is checked against the backend's (each worker
//!    owns one shard), recovery is applied, the config version is recorded, and the
//!    workers start on the backend.
//! 4. While they serve, the flush thread makes claims and leases durable every
//!    [`FLUSH_PERIOD`], and the control loop (this thread) answers SIGHUP with a reload,
//!    prints the counter line, and watches for a stop: SIGINT/SIGTERM, a worker that
//!    failed, or a flush that failed.
//! 5. Stop: the backend gives the workers back, the flush thread stops, and every journal and
//!    shard is closed cleanly (the shard's clean flag last).
//!
//! Flushing has its own thread, not the control loop, so that its cadence never waits on a
//! reload (which reads and checks files) or a metrics scrape. The fleet's control plane (a
//! config watch, claim shipping) plugs in here, beside reload and flushing.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam::channel::Sender;

use super::{DurableWorker, Flushers, Node, NodeError};
use crate::backend::{Backend, NotStarted, Running, Stopped};
use crate::control::{serve_metrics, MetricsListener, Signals, Stats, Ticker};
use crate::counters::Snapshot;
use crate::engine::config::Live;
use crate::engine::Worker;
use crate::journal::{ClaimSink, JournalWriter};
use crate::recovery::{RecoveryPlan, RecoverySummary};
use crate::seed::{SeedSource, ShardSource};
use crate::time::unix_ms;

/// How often the flush thread makes every worker's claims and lease durable.
pub const FLUSH_PERIOD: Duration = Duration::from_millis(2);

/// How often the control loop looks at signals, failures and the counter line.
const CONTROL_PERIOD: Duration = Duration::from_millis(10);

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("installing signal handlers: {0}")]
    Signals(std::io::Error),
    /// The backend runs another number of workers than the seeds have shards.
    #[error(
        "the seeds manifest gives this node {manifest} worker(s) but {setting} gives {backend}: each worker owns one shard; nothing was changed"
    )]
    Workers {
        manifest: usize,
        backend: usize,
        setting: &'static str,
    },
    #[error("stats.prometheus {addr}: {source}")]
    Prometheus {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("starting the flush thread: {0}")]
    Flusher(std::io::Error),
    #[error("the flush thread panicked")]
    FlusherPanicked,
    /// Flushing failed while serving: the node stopped rather than serve without durability.
    #[error("making claims durable failed, the node stopped: {0}")]
    Durability(NodeError),
    #[error(transparent)]
    Backend(Box<dyn std::error::Error + Send + Sync>),
}

fn backend_error<E: std::error::Error + Send + Sync + 'static>(e: E) -> LifecycleError {
    LifecycleError::Backend(Box::new(e))
}

/// A node that passed its start-up checks and waits for its backend.
pub struct Lifecycle {
    node: Node,
    signals: Signals,
    plan: Option<RecoveryPlan>,
    metrics: Option<MetricsListener>,
}

impl Lifecycle {
    /// Installs the signal handlers, binds the metrics endpoint and, for a node on durable
    /// seeds, reads and checks every shard and journal (changing nothing): everything that
    /// can refuse a start before the backend is opened.
    pub fn prepare(node: Node) -> Result<Lifecycle, LifecycleError> {
        let signals = Signals::register().map_err(LifecycleError::Signals)?;
        let metrics = match node.config.stats.prometheus {
            Some(addr) => Some(
                MetricsListener::bind(addr)
                    .map_err(|source| LifecycleError::Prometheus { addr, source })?,
            ),
            None => None,
        };
        let plan = match node.seeds_dir() {
            Some(_) => Some(node.check_durable(unix_ms(), false)?),
            None => None,
        };
        Ok(Lifecycle {
            node,
            signals,
            plan,
            metrics,
        })
    }

    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Recovers, starts the workers on `backend`, serves until stopped, and closes every
    /// journal and shard. Returns the counter totals at the stop.
    pub fn run<B: Backend>(self, backend: B) -> Result<Snapshot, LifecycleError> {
        let Lifecycle {
            mut node,
            signals,
            plan,
            metrics,
        } = self;
        let now = unix_ms();
        let control = Control {
            node: &mut node,
            signals: &signals,
            metrics,
        };
        match plan {
            Some(plan) => {
                if let Some(n) = backend.workers() {
                    if n != plan.workers() {
                        return Err(LifecycleError::Workers {
                            manifest: plan.workers(),
                            backend: n,
                            setting: backend.workers_setting(),
                        });
                    }
                }
                let (workers, flushers, summary) = control.node.durable_workers_from(plan, now)?;
                print_recovered(&summary, workers.len());
                let durable = Durable::new(flushers);
                if let Err(e) = control.node.persist_version() {
                    // Recovery changed the files: close them as recovered.
                    let _ = close_unstarted(durable, workers);
                    return Err(e.into());
                }
                control.serve(backend, workers, durable)
            }
            None => {
                let n = backend
                    .workers()
                    .unwrap_or(control.node.config.socket.workers as usize)
                    .max(1);
                let workers = control.node.memory_workers(n as u32, now)?;
                control.node.persist_version()?;
                control.serve(backend, workers, NotDurable)
            }
        }
    }
}

fn print_recovered(summary: &RecoverySummary, workers: usize) {
    println!(
        "shake: recovered {} claims from the journals, {} packets forfeited now ({} cents), {} worker(s) from shards",
        summary.claims, summary.forfeited_now, summary.forfeited_cents, workers
    );
}

/// Closes workers that never served, saying so if that fails (the caller reports why they
/// did not start).
fn close_unstarted<S: SeedSource, J: ClaimSink, D: Durability<S, J>>(
    durability: D,
    workers: Vec<Worker<S, J>>,
) -> Result<(), LifecycleError> {
    let closed = durability.close(workers.into_iter().map(Some).collect());
    if let Err(e) = &closed {
        eprintln!("shake: closing the journals: {e}");
    }
    closed
}

/// The control side while the workers serve.
struct Control<'a> {
    node: &'a mut Node,
    signals: &'a Signals,
    metrics: Option<MetricsListener>,
}

impl Control<'_> {
    fn serve<B, S, J, D>(
        self,
        backend: B,
        workers: Vec<Worker<S, J>>,
        mut durability: D,
    ) -> Result<Snapshot, LifecycleError>
    where
        B: Backend,
        S: SeedSource + Send + 'static,
        J: ClaimSink + Send + 'static,
        D: Durability<S, J>,
    {
        let config = &self.node.config;
        let (reload_tx, reload_rx): (Vec<_>, Vec<_>) = (0..workers.len())
            .map(|_| crossbeam::channel::bounded(4))
            .unzip();
        let stop = self.signals.stop.clone();
        let running = match backend.start(workers, reload_rx, stop.clone()) {
            Ok(r) => r,
            Err(NotStarted { error, workers }) => {
                // They never served: close them as recovery left them.
                let _ = close_unstarted(durability, workers);
                return Err(backend_error(error));
            }
        };
        // From here the workers serve: every way out goes through the stop below, so that
        // the journals close.
        let mut failed = durability.start().err();
        let stats = Stats {
            workers: running.counters(),
            ..Stats::default()
        };
        stats
            .control
            .config_version
            .store(self.node.live.config_version as u64, Relaxed);
        let prometheus = match self.metrics.filter(|_| failed.is_none()) {
            Some(listener) => {
                let addr = listener.addr();
                match serve_metrics(listener, stats.clone(), stop.clone()) {
                    Ok(p) => Some(p),
                    Err(source) => {
                        failed = Some(LifecycleError::Prometheus { addr, source });
                        None
                    }
                }
            }
            None => None,
        };
        let metrics_addr = prometheus.as_ref().map(|(a, _)| *a);
        let mut fleet = None;
        if failed.is_none() {
            match super::fleet::start(
                self.node,
                &reload_tx,
                &stats,
                running.describe(),
                metrics_addr,
            ) {
                Ok(f) => fleet = f,
                Err(e) => failed = Some(e.into()),
            }
        }
        if failed.is_none() {
            println!(
                "shake: serving SHAKE/1 on {}, node {}/{}, config_version {}{}{}",
                running.describe(),
                config.node.index,
                config.node.count,
                self.node.live.config_version,
                metrics_addr
                    .map(|a| format!(", metrics on http://{a}/metrics"))
                    .unwrap_or_default(),
                match (&fleet, &config.fleet) {
                    (Some(_), Some(f)) => format!(", fleet {} on etcd", f.name),
                    _ => String::new(),
                }
            );
        }
        let mut ticker = Ticker::new(Duration::from_secs(config.stats.interval_s));
        while failed.is_none() && !self.signals.stopping() && !running.finished() {
            if self.signals.take_reload() {
                reload_workers(self.node, &reload_tx, &stats);
            }
            if let Some(e) = durability.failure() {
                // Workers stop issuing at their lease and get `Full` from their journals,
                // so money stays safe; the node stops rather than serve without durability.
                eprintln!("shake: making claims durable failed, stopping: {e}");
                failed = Some(LifecycleError::Durability(e));
                break;
            }
            if let Some(line) = ticker.poll(&stats) {
                println!("{line}");
            }
            std::thread::sleep(CONTROL_PERIOD);
        }
        stop.store(true, Relaxed);
        // Out of the registry first: the node is going.
        if let Some(f) = fleet {
            f.stop();
        }
        let Stopped { workers, error } = running.join();
        if let Some(e) = error {
            eprintln!("shake: a worker failed: {e}");
            failed.get_or_insert(backend_error(e));
        }
        if let Some((_, h)) = prometheus {
            let _ = h.join();
        }
        let closed = durability.close(workers);
        if let (Err(e), Some(_)) = (&closed, &failed) {
            eprintln!("shake: closing the journals: {e}");
        }
        let total = stats.total();
        let busy = total
            .busy_percent_since(&Default::default())
            .map(|b| {
                format!(
                    "busy={b:.1}% cycles={} busy_cycles={} ",
                    total.cycles, total.busy_cycles
                )
            })
            .unwrap_or_default();
        println!("shake: stopped. totals {busy}{}", total.line());
        match failed {
            Some(e) => Err(e),
            None => closed.map(|()| total),
        }
    }
}

/// SIGHUP: re-reads the config and the activity and hands every worker the new snapshot (each
/// takes it between bursts). A refused reload leaves the node serving the previous one. Both
/// are counted (`shake_reloads_total`) and the version in force is published.
fn reload_workers(node: &mut Node, workers: &[Sender<Arc<Live>>], stats: &Stats) {
    match node.reload() {
        Ok(live) => {
            for (i, tx) in workers.iter().enumerate() {
                // Workers take a snapshot between bursts, so the small queue never fills
                // unless a worker is stuck; say so rather than block the control loop.
                if tx.try_send(live.clone()).is_err() {
                    eprintln!(
                        "shake: worker {i} has not taken earlier reloads; it keeps its config"
                    );
                }
            }
            stats.control.reloads.fetch_add(1, Relaxed);
            stats
                .control
                .config_version
                .store(live.config_version as u64, Relaxed);
            println!("shake: reloaded, config_version {}", live.config_version);
        }
        Err(e) => {
            stats.control.reloads_refused.fetch_add(1, Relaxed);
            eprintln!("shake: reload refused, still serving the previous config: {e}");
        }
    }
}

/// What the lifecycle does for the workers' seeds and journals.
trait Durability<S: SeedSource, J: ClaimSink> {
    /// Starts making claims durable in the background.
    fn start(&mut self) -> Result<(), LifecycleError>;
    /// The error that stopped the background flushing, if it did.
    fn failure(&mut self) -> Option<NodeError>;
    /// After the workers stopped: the last flush, and every journal and shard closed; a
    /// worker that failed (`None`) is left to recovery.
    fn close(self, workers: Vec<Option<Worker<S, J>>>) -> Result<(), LifecycleError>;
}

/// In-memory seeds: nothing to make durable.
struct NotDurable;

impl<S: SeedSource, J: ClaimSink> Durability<S, J> for NotDurable {
    fn start(&mut self) -> Result<(), LifecycleError> {
        Ok(())
    }
    fn failure(&mut self) -> Option<NodeError> {
        None
    }
    fn close(self, _: Vec<Option<Worker<S, J>>>) -> Result<(), LifecycleError> {
        Ok(())
    }
}

/// Shards and journals, flushed by their own thread every [`FLUSH_PERIOD`].
struct Durable {
    /// The flushers while no thread has them.
    flushers: Option<Vec<Flushers>>,
    stop: Arc<AtomicBool>,
    failed: Arc<AtomicBool>,
    thread: Option<JoinHandle<(Vec<Flushers>, Option<NodeError>)>>,
}

impl Durable {
    fn new(flushers: Vec<Flushers>) -> Durable {
        Durable {
            flushers: Some(flushers),
            stop: Arc::new(AtomicBool::new(false)),
            failed: Arc::new(AtomicBool::new(false)),
            thread: None,
        }
    }

    /// Stops the thread and takes the flushers back, with the error that stopped it.
    fn stop_thread(&mut self) -> Result<Option<NodeError>, LifecycleError> {
        self.stop.store(true, Relaxed);
        let Some(h) = self.thread.take() else {
            return Ok(None);
        };
        let (flushers, error) = h.join().map_err(|_| LifecycleError::FlusherPanicked)?;
        self.flushers = Some(flushers);
        Ok(error)
    }
}

impl Drop for Durable {
    fn drop(&mut self) {
        // Never leave the thread flushing behind a lifecycle that is gone.
        let _ = self.stop_thread();
    }
}

impl Durability<ShardSource, JournalWriter> for Durable {
    fn start(&mut self) -> Result<(), LifecycleError> {
        // The flushers travel to the thread through this slot, so that they stay here if
        // the thread cannot start.
        let slot = Arc::new(std::sync::Mutex::new(self.flushers.take()));
        let h = spawn_flusher(
            slot.clone(),
            self.stop.clone(),
            self.failed.clone(),
            FLUSH_PERIOD,
        );
        match h {
            Ok(h) => {
                self.thread = Some(h);
                Ok(())
            }
            Err(e) => {
                self.flushers = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
                Err(LifecycleError::Flusher(e))
            }
        }
    }

    fn failure(&mut self) -> Option<NodeError> {
        let ended = self.thread.as_ref().is_some_and(|h| h.is_finished());
        if !self.failed.load(Relaxed) && !ended {
            return None;
        }
        match self.stop_thread() {
            Ok(Some(e)) => Some(e),
            Ok(None) => Some(NodeError::State("the flush thread stopped".into())),
            Err(e) => Some(NodeError::State(e.to_string())),
        }
    }

    fn close(mut self, workers: Vec<Option<DurableWorker>>) -> Result<(), LifecycleError> {
        let stopped = self.stop_thread();
        let flushers = self.flushers.take().unwrap_or_default();
        let mut first = None;
        for (f, w) in flushers.into_iter().zip(workers) {
            // A worker that failed keeps its shard unclean: recovery checks it next time.
            if let Some(w) = w {
                if let Err(e) = f.close(w) {
                    first.get_or_insert(LifecycleError::Node(e));
                }
            }
        }
        match (stopped, first) {
            (Err(e), _) | (Ok(_), Some(e)) => Err(e),
            (Ok(Some(e)), None) => Err(LifecycleError::Durability(e)),
            (Ok(None), None) => Ok(()),
        }
    }
}

/// Runs the flushers (taken from `slot` on the thread) every `period` until `stop` is set;
/// then hands them back for the clean close. A flush error sets `failed` and ends the thread:
/// workers then stop issuing at their lease, and the control loop stops the node.
fn spawn_flusher(
    slot: Arc<std::sync::Mutex<Option<Vec<Flushers>>>>,
    stop: Arc<AtomicBool>,
    failed: Arc<AtomicBool>,
    period: Duration,
) -> std::io::Result<JoinHandle<(Vec<Flushers>, Option<NodeError>)>> {
    std::thread::Builder::new()
        .name("shake-flush".into())
        .spawn(move || {
            let taken = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
            let mut flushers = taken.unwrap_or_default();
            while !stop.load(Relaxed) {
                for f in &mut flushers {
                    if let Err(e) = f.flush() {
                        failed.store(true, Relaxed);
                        return (flushers, Some(e));
                    }
                }
                std::thread::sleep(period);
            }
            (flushers, None)
        })
}
