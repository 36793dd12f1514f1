use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use shake::control::{serve_prometheus, Signals, Stats, Ticker};
use shake::engine::Worker;
use shake::io::socket;
use shake::journal::{ClaimSink, JournalWriter};
use shake::node::{unix_ms, DurableWorker, Flushers, Node};
use shake::seed::{SeedSource, ShardSource};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Io {
    /// Kernel UDP sockets (recvmmsg/sendmmsg): where DPDK is absent, and the baseline.
    Socket,
    /// DPDK poll-mode workers on the ports of the config's [dpdk] section.
    Dpdk,
}

#[derive(clap::Args)]
pub struct Args {
    /// Node config file (TOML).
    #[arg(long)]
    pub config: PathBuf,
    #[arg(long, value_enum, default_value_t = Io::Dpdk)]
    pub io: Io,
    /// Socket backend: worker threads (overrides [socket] workers).
    #[arg(long)]
    pub workers: Option<u32>,
    /// Socket backend: address to bind (overrides [socket] bind), e.g. 127.0.0.1:0.
    #[arg(long)]
    pub bind: Option<std::net::SocketAddr>,
    /// Extra EAL arguments, after `--`.
    #[arg(last = true)]
    pub eal: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let node = Node::load(&args.config)?;
    match args.io {
        Io::Socket => serve_socket(&mut { node }, &args),
        #[cfg(feature = "dpdk")]
        Io::Dpdk => serve_dpdk(node, &args),
        #[cfg(not(feature = "dpdk"))]
        Io::Dpdk => anyhow::bail!(
            "{}: this build has no DPDK backend (built without the `dpdk` feature); use --io socket",
            args.config.display()
        ),
    }
}

fn serve_socket(node: &mut Node, args: &Args) -> anyhow::Result<ExitCode> {
    let signals = Signals::register().context("installing signal handlers")?;
    let now = unix_ms();
    if node.seeds_dir().is_some() {
        // Every check before any file changes: the manifest, the shards, the journals, and
        // the worker count asked for.
        let plan = node.check_durable(now, false)?;
        if args.workers.is_some_and(|n| n as usize != plan.workers()) {
            anyhow::bail!(
                "--workers must match the node's shards in the seeds manifest ({}): each worker owns one",
                plan.workers()
            );
        }
        let (workers, flushers, summary) = node.durable_workers_from(plan, now)?;
        print_recovered(&summary, workers.len());
        node.persist_version()?;
        run_socket(node, args, &signals, workers, Durable(flushers))
    } else {
        let n = args.workers.unwrap_or(node.config.socket.workers).max(1);
        let workers = node.memory_workers(n, now)?;
        node.persist_version()?;
        run_socket(node, args, &signals, workers, NotDurable)
    }
}

fn print_recovered(summary: &shake::recovery::RecoverySummary, workers: usize) {
    println!(
        "shake: recovered {} claims from the journals, {} packets forfeited now ({} cents), {} worker(s) from shards",
        summary.claims, summary.forfeited_now, summary.forfeited_cents, workers
    );
}

/// What the control loop does for the workers' seeds and journals.
trait Durability<S: SeedSource, J: ClaimSink> {
    fn flush(&mut self) -> anyhow::Result<()>;
    fn close(self, workers: Vec<Worker<S, J>>) -> anyhow::Result<()>;
}

/// In-memory seeds: nothing to make durable.
struct NotDurable;

impl<S: SeedSource, J: ClaimSink> Durability<S, J> for NotDurable {
    fn flush(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
    fn close(self, _: Vec<Worker<S, J>>) -> anyhow::Result<()> {
        Ok(())
    }
}

struct Durable(Vec<Flushers>);

impl Durability<ShardSource, JournalWriter> for Durable {
    fn flush(&mut self) -> anyhow::Result<()> {
        for f in &mut self.0 {
            f.flush()?;
        }
        Ok(())
    }
    fn close(self, workers: Vec<DurableWorker>) -> anyhow::Result<()> {
        for (f, w) in self.0.into_iter().zip(workers) {
            f.close(w)?;
        }
        Ok(())
    }
}

fn run_socket<S, J, D>(
    node: &mut Node,
    args: &Args,
    signals: &Signals,
    workers: Vec<Worker<S, J>>,
    mut durability: D,
) -> anyhow::Result<ExitCode>
where
    S: SeedSource + Send + 'static,
    J: ClaimSink + Send + 'static,
    D: Durability<S, J>,
{
    let n = workers.len();
    let addr = args.bind.unwrap_or_else(|| node.config.socket_bind());
    let stats = Stats {
        workers: workers.iter().map(|w| w.counters().clone()).collect(),
        ..Stats::default()
    };
    stats.control.config_version.store(
        node.live.config_version as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    let sockets = socket::bind(addr, n)?;
    let bound = sockets[0].local_addr()?;
    let prometheus = match node.config.stats.prometheus {
        Some(at) => Some(serve_prometheus(at, stats.clone(), signals.stop.clone())?),
        None => None,
    };
    println!(
        "shake: serving SHAKE/1 on udp {bound} with {n} socket worker(s), node {}/{}, config_version {}{}",
        node.config.node.index,
        node.config.node.count,
        node.live.config_version,
        prometheus
            .as_ref()
            .map(|(a, _)| format!(", metrics on http://{a}/metrics"))
            .unwrap_or_default()
    );
    let (reload_tx, reload_rx) = socket::reload_channels(n);
    let stop = signals.stop.clone();
    let batch = node.config.socket.batch as usize;
    let node_count = node.config.node.count;
    let server = std::thread::spawn(move || {
        socket::serve(sockets, workers, node_count, batch, stop, reload_rx)
    });

    let mut ticker = Ticker::new(Duration::from_secs(node.config.stats.interval_s));
    let mut failed = None;
    while !signals.stopping() && !server.is_finished() {
        if signals.take_reload() {
            reload_workers(node, &reload_tx, &stats);
        }
        if let Err(e) = durability.flush() {
            // Workers stop issuing at their lease and get `Full` from their journals, so
            // money stays safe; the node stops rather than serve without durability.
            eprintln!("shake: making claims durable failed, stopping: {e:#}");
            failed = Some(e);
            break;
        }
        if let Some(line) = ticker.poll(&stats) {
            println!("{line}");
        }
        // The control loop's cadence (flush, reload, stats); workers never wait on it.
        std::thread::sleep(Duration::from_millis(5));
    }
    signals
        .stop
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let workers = server
        .join()
        .map_err(|_| anyhow::anyhow!("socket server thread panicked"))??;
    durability.close(workers)?;
    if let Some((_, h)) = prometheus {
        let _ = h.join();
    }
    println!("shake: stopped. totals {}", stats.total().line());
    match failed {
        Some(e) => Err(e),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// DPDK poll-mode workers: one per worker lcore, each behind the frame layer.
#[cfg(feature = "dpdk")]
fn serve_dpdk(node: Node, args: &Args) -> anyhow::Result<ExitCode> {
    use shake::dpdk::{self, FrameProcessor};
    use shake::node::spawn_flusher;
    use std::cell::RefCell;
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    use std::sync::Arc;

    let ipv4 = node.config.node.ipv4;
    let udp_port = node.config.node.port;
    let config = node.config.clone();
    let node = RefCell::new(node);
    let reloads = RefCell::new(Vec::new());
    let reload = |signals: &Signals, stats: &Stats| {
        stats.control.config_version.store(
            node.borrow().live.config_version as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        if signals.take_reload() {
            reload_workers(&mut node.borrow_mut(), &reloads.borrow(), stats);
        }
    };
    // One per worker, each with its own reload channel; generic over the seed and journal kinds.
    fn processor<S: SeedSource, J: ClaimSink>(
        worker: Worker<S, J>,
        ports: &[dpdk::PortInfo],
        at: (std::net::Ipv4Addr, u16),
        reloads: &RefCell<Vec<crossbeam::channel::Sender<Arc<shake::engine::Live>>>>,
    ) -> FrameProcessor<S, J> {
        let (tx, rx) = crossbeam::channel::bounded(4);
        reloads.borrow_mut().push(tx);
        FrameProcessor {
            worker,
            frame: dpdk::frame_configs(at.0, at.1, ports),
            reload: Some(rx),
        }
    }
    let at = (ipv4, udp_port);

    if node.borrow().seeds_dir().is_some() {
        // Read and check every shard and journal before the EAL starts: a refusal leaves the
        // files as they were. The plan is applied once DPDK has accepted the config and the
        // worker lcores match the shards.
        let plan = RefCell::new(Some(node.borrow().check_durable(unix_ms(), false)?));
        let stop_flush = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(AtomicBool::new(false));
        let flusher = RefCell::new(None);
        let served = dpdk::serve(
            &config,
            &args.eal,
            |n, ports| {
                let Some(plan) = plan.borrow_mut().take() else {
                    return Vec::new();
                };
                if plan.workers() != n {
                    eprintln!(
                        "shake: the seeds manifest gives this node {} workers but [dpdk] lcores gives {n} worker lcores: each worker owns one shard; nothing was changed",
                        plan.workers()
                    );
                    return Vec::new();
                }
                let node = node.borrow();
                let started = node.durable_workers_from(plan, unix_ms()).and_then(|ws| {
                    node.persist_version()?;
                    Ok(ws)
                });
                let (ws, flushers, summary) = match started {
                    Ok(x) => x,
                    // No processors: launch refuses to start.
                    Err(e) => {
                        eprintln!("shake: {e}");
                        return Vec::new();
                    }
                };
                print_recovered(&summary, ws.len());
                match spawn_flusher(
                    flushers,
                    stop_flush.clone(),
                    failed.clone(),
                    Duration::from_millis(2),
                ) {
                    Ok(h) => *flusher.borrow_mut() = Some(h),
                    Err(e) => {
                        eprintln!("shake: starting the flush thread: {e}");
                        return Vec::new();
                    }
                }
                ws.into_iter()
                    .map(|w| processor(w, ports, at, &reloads))
                    .collect()
            },
            |signals, stats| {
                if failed.load(Relaxed) {
                    signals.stop.store(true, Relaxed);
                }
                reload(signals, stats)
            },
        );
        stop_flush.store(true, Relaxed);
        let Some(flusher) = flusher.into_inner() else {
            // The workers never started; nothing was opened for serving.
            served?;
            anyhow::bail!("the appliance did not start its workers");
        };
        let (flushers, flush_error) = flusher
            .join()
            .map_err(|_| anyhow::anyhow!("flush thread panicked"))?;
        let processors = served?;
        for (f, p) in flushers.into_iter().zip(processors) {
            f.close(p.worker)?;
        }
        if let Some(e) = flush_error {
            return Err(anyhow::anyhow!("making claims durable failed: {e}"));
        }
    } else {
        dpdk::serve(
            &config,
            &args.eal,
            |n, ports| match node.borrow().memory_workers(n as u32, unix_ms()) {
                Ok(ws) => ws
                    .into_iter()
                    .map(|w| processor(w, ports, at, &reloads))
                    .collect(),
                // No processors: launch refuses to start and names the mismatch.
                Err(e) => {
                    eprintln!("shake: {e}");
                    Vec::new()
                }
            },
            |signals, stats| reload(signals, stats),
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// SIGHUP: re-reads the config and the activity and hands every worker the new snapshot (each
/// takes it between bursts). A refused reload leaves the node serving the previous one. Both
/// are counted (`shake_reloads_total`) and the version in force is published.
fn reload_workers(
    node: &mut Node,
    workers: &[crossbeam::channel::Sender<std::sync::Arc<shake::engine::Live>>],
    stats: &Stats,
) {
    use std::sync::atomic::Ordering::Relaxed;
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
