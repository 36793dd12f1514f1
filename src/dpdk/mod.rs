//! The DPDK appliance: EAL, ports, mempools, hand-off rings and one poll-mode worker per
//! lcore. A thin layer: every decision about a frame is the processor's (the frame layer);
//! this module only moves mbufs.
//!
//! - [`eal`]: EAL arguments from the `[dpdk]` section (a pure function), and the EAL itself.
//! - [`port`]: port setup in l2fwd order, with its mempool.
//! - [`mbuf`], [`mempool`], [`ring`]: owned mbufs, bursts in stack arrays, pools, SPSC rings.
//! - [`worker`]: the poll loop of one lcore, and [`backlog`]: its TX backlog per port, where
//!   answers TX did not take wait for the next poll.
//! - [`telemetry`]: `/shake/stats` on the DPDK telemetry socket.
//! - [`processor`]: what the loop calls per burst, and the engine worker behind the frame
//!   layer that `shake serve` runs.
//!
//! Users are steered, not shared: RSS spreads frames over the workers' queues by address, so
//! a worker that receives a shake of a user another worker owns
//! ([`owner_worker`](crate::engine::config::owner_worker)) passes the mbuf over a
//! single-producer single-consumer ring (one per ordered pair of workers); the owner decides
//! it and answers on its own TX queue of that port. Per-user limits stay exact with no
//! shared state and no locks.
//!
//! `unsafe` is confined to this module; each block says why it holds.
#![allow(unsafe_code)]

pub mod backlog;
pub mod clock;
pub mod eal;
pub mod error;
pub mod mbuf;
pub mod mempool;
pub mod port;
pub mod processor;
pub mod ring;
pub mod telemetry;
pub mod worker;

use std::os::raw::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use clock::TscClock;
pub use eal::{eal_args, Eal};
pub use error::DpdkError;
pub use mbuf::{Burst, Mbuf, BURST};
pub use mempool::Mempool;
pub use port::{Port, PortInfo};
pub use processor::{frame_configs, peek_user, BurstProcessor, FrameProcessor, Verdict};
pub use ring::{ring_port, Consumer, Producer, Ring};
pub use worker::{WorkerLoop, WorkerPort};

use crate::control::{Signals, Stats, Ticker};
use crate::node_config::{DpdkSection, NodeConfig};

/// How long `launch` waits for each port's link.
const LINK_WAIT: Duration = Duration::from_secs(3);

/// The `[dpdk]` section, or an error saying it is missing.
pub fn section(config: &NodeConfig) -> Result<&DpdkSection, DpdkError> {
    config
        .dpdk
        .as_ref()
        .ok_or_else(|| DpdkError::Config(format!("{}: no [dpdk] section", config.path.display())))
}

/// The EAL arguments for a node config plus command-line extras.
pub fn node_eal_args(config: &NodeConfig, extra: &[String]) -> Result<Vec<String>, DpdkError> {
    let base = config.path.parent().unwrap_or(Path::new("."));
    Ok(eal_args(section(config)?, base, extra))
}

/// One worker lcore's task: its loop, and what went wrong if it did.
struct Task<P> {
    lcore: u32,
    worker: WorkerLoop<P>,
    failure: Option<String>,
}

/// Ports started and workers running on their lcores. [`Appliance::join`] stops them and
/// gives the processors back; dropping it does the same and discards them.
pub struct Appliance<P: BurstProcessor + Send + 'static> {
    /// Boxed tasks, owned by their lcores while they run.
    tasks: Vec<*mut Task<P>>,
    stop: Arc<AtomicBool>,
    stats: Stats,
    ports: Vec<Port>,
}

/// Starts the ports of `config` with one queue pair per worker lcore, the hand-off rings,
/// and a worker on every lcore but the main one. `make_processors(workers, ports)` builds
/// the workers' processors here, on the main lcore, one per worker in worker order (so
/// seeds can be planned for that many shards). Workers run until `stop` is set (by a signal,
/// the caller, or a worker that failed).
pub fn launch<P, F>(
    eal: &Eal,
    config: &NodeConfig,
    stop: Arc<AtomicBool>,
    make_processors: F,
) -> Result<Appliance<P>, DpdkError>
where
    P: BurstProcessor + Send + 'static,
    F: FnOnce(usize, &[PortInfo]) -> Vec<P>,
{
    let dpdk = section(config)?;
    let lcores = eal.worker_lcores();
    if lcores.is_empty() {
        return Err(DpdkError::Config(format!(
            "dpdk.lcores {:?} leaves no worker lcore besides the main one",
            dpdk.lcores
        )));
    }
    let workers = lcores.len();
    let queues = u16::try_from(workers)
        .map_err(|_| DpdkError::Config(format!("{workers} workers is too many")))?;
    let ports = config
        .port
        .iter()
        .enumerate()
        .map(|(i, s)| Port::open(i, s, queues, dpdk.handoff_ring))
        .collect::<Result<Vec<_>, _>>()?;
    let infos: Vec<PortInfo> = ports.iter().map(|p| p.info().clone()).collect();
    for (port, info) in ports.iter().zip(&infos) {
        let m = info.mac;
        eprintln!(
            "shake: port {} (id {}): {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}, {} queue pairs{}{}, {}",
            info.name,
            info.id,
            m[0], m[1], m[2], m[3], m[4], m[5],
            info.queues,
            if info.rss { ", RSS" } else { "" },
            if info.tx_udp_cksum { ", UDP checksum offload" } else { "" },
            port.wait_link(LINK_WAIT)
        );
    }

    // Hand-off rings: to[from][to] and from[to], one SPSC ring per ordered pair, on the
    // consumer's socket.
    let mut to: Vec<Vec<Option<Producer>>> = (0..workers)
        .map(|_| (0..workers).map(|_| None).collect())
        .collect();
    let mut from: Vec<Vec<Consumer>> = (0..workers).map(|_| Vec::new()).collect();
    for (src, to_src) in to.iter_mut().enumerate() {
        for dst in (0..workers).filter(|&d| d != src) {
            // SAFETY: a lookup in the EAL's lcore table.
            let socket = unsafe { dpdk_sys::rte_lcore_to_socket_id(lcores[dst]) } as i32;
            let ring = Ring::new(
                &format!("shake_h{src}_{dst}"),
                dpdk.handoff_ring,
                socket,
                true,
            )?;
            let (p, c) = ring.split();
            to_src[dst] = Some(p);
            from[dst].push(c);
        }
    }

    let clock = TscClock::anchor_now();
    let ports_of_worker: Vec<WorkerPort> = infos
        .iter()
        .map(|i| WorkerPort {
            id: i.id,
            tx_udp_cksum: i.tx_udp_cksum,
        })
        .collect();
    let processors = make_processors(workers, &infos);
    if processors.len() != workers {
        return Err(DpdkError::Config(format!(
            "{} processors for {workers} worker lcores",
            processors.len()
        )));
    }
    let mut tasks = Vec::with_capacity(workers);
    let mut counters = Vec::with_capacity(workers);
    for (index, ((to, from), processor)) in to.into_iter().zip(from).zip(processors).enumerate() {
        counters.push(processor.counters().clone());
        tasks.push(Box::new(Task {
            lcore: lcores[index],
            worker: WorkerLoop {
                index,
                workers,
                node_count: config.node.count,
                ports: ports_of_worker.clone(),
                to,
                from,
                stop: stop.clone(),
                clock,
                idle_sleep: Duration::from_micros(u64::from(dpdk.idle_sleep_us)),
                processor,
            },
            failure: None,
        }));
    }

    let mut app = Appliance {
        tasks: Vec::with_capacity(workers),
        stop,
        stats: Stats {
            workers: counters,
            ..Stats::default()
        },
        ports,
    };
    for task in tasks {
        let lcore = task.lcore;
        let raw = Box::into_raw(task);
        // Owned by `app` from here: join (or drop) reclaims it after the lcore returns.
        app.tasks.push(raw);
        // SAFETY: `run_task::<P>` expects a `*mut Task<P>`, which raw is; the task stays
        // allocated until the lcore has returned (join waits for it before reclaiming) and
        // nothing else touches it meanwhile. The lcore is a worker lcore in WAIT state.
        let ret = unsafe {
            dpdk_sys::rte_eal_remote_launch(Some(run_task::<P>), raw.cast::<c_void>(), lcore)
        };
        if ret < 0 {
            // Never launched: take it back now so join does not wait for it.
            app.tasks.pop();
            // SAFETY: raw came from Box::into_raw above and no lcore received it.
            drop(unsafe { Box::from_raw(raw) });
            let e = DpdkError::errno(format!("rte_eal_remote_launch on lcore {lcore}"), -ret);
            drop(app.join_inner());
            return Err(e);
        }
    }
    Ok(app)
}

/// The lcore entry point: runs a worker loop, catching a panic so it cannot unwind into C.
unsafe extern "C" fn run_task<P: BurstProcessor>(arg: *mut c_void) -> c_int {
    // SAFETY: `launch` passes a live `*mut Task<P>` that only this lcore uses until it
    // returns.
    let task = unsafe { &mut *arg.cast::<Task<P>>() };
    match catch_unwind(AssertUnwindSafe(|| task.worker.run())) {
        Ok(()) => 0,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panicked".to_owned());
            task.failure = Some(message);
            // Stop the node: a worker's users have nowhere else to go.
            task.worker.stop.store(true, Ordering::Relaxed);
            -1
        }
    }
}

impl<P: BurstProcessor + Send + 'static> Appliance<P> {
    /// Every worker's counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn ports(&self) -> Vec<PortInfo> {
        self.ports.iter().map(|p| p.info().clone()).collect()
    }

    pub fn workers(&self) -> usize {
        self.tasks.len()
    }

    /// Set to stop the workers.
    pub fn stop_flag(&self) -> &Arc<AtomicBool> {
        &self.stop
    }

    /// Stops the workers, waits for their lcores, frees the hand-off rings, stops and closes
    /// the ports, and returns the processors (worker order) so their journals can be flushed.
    pub fn join(mut self) -> Result<Vec<P>, DpdkError> {
        let result = self.join_inner();
        // Ports stop and close (and their pools go) when self drops, after the rings.
        drop(self);
        result
    }

    fn join_inner(&mut self) -> Result<Vec<P>, DpdkError> {
        self.stop.store(true, Ordering::Relaxed);
        let mut processors = Vec::with_capacity(self.tasks.len());
        let mut failure = None;
        for (index, raw) in self.tasks.drain(..).enumerate() {
            // SAFETY: raw is a launched task; its lcore id is read-only after launch.
            let lcore = unsafe { (*raw).lcore };
            // SAFETY: waits for the lcore running `raw` to return; called on the main lcore.
            unsafe { dpdk_sys::rte_eal_wait_lcore(lcore) };
            // SAFETY: the lcore has returned, so nothing else references the task; it came
            // from Box::into_raw in `launch`.
            let task = unsafe { Box::from_raw(raw) };
            let Task {
                worker, failure: f, ..
            } = *task;
            if let (Some(message), None) = (f, &failure) {
                failure = Some(DpdkError::Worker {
                    worker: index,
                    lcore,
                    message,
                });
            }
            // Rings are freed as the loops drop (draining any mbufs left in them), before
            // the ports and pools.
            processors.push(worker.processor);
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(processors),
        }
    }
}

impl<P: BurstProcessor + Send + 'static> Drop for Appliance<P> {
    fn drop(&mut self) {
        if !self.tasks.is_empty() {
            drop(self.join_inner());
        }
        // `ports` drop next: stop, close, free pools.
    }
}

/// `shake serve` on DPDK: EAL init, ports, workers on every lcore but the main one; the main
/// lcore prints a counter line every `stats.interval_s`, serves `/shake/stats` on the
/// telemetry socket (and Prometheus if configured), and calls `control` about every 100 ms
/// (config reload goes there). SIGINT or SIGTERM stops it cleanly: workers return, ports are
/// stopped and closed, and the processors come back for their journals to be flushed.
pub fn serve<P, F, C>(
    config: &NodeConfig,
    extra_eal_args: &[String],
    make_processors: F,
    mut control: C,
) -> Result<Vec<P>, DpdkError>
where
    P: BurstProcessor + Send + 'static,
    F: FnOnce(usize, &[PortInfo]) -> Vec<P>,
    C: FnMut(&Signals, &Stats),
{
    let dpdk = section(config)?;
    let signals = Signals::register().map_err(DpdkError::Signals)?;
    let eal = Eal::init(&node_eal_args(config, extra_eal_args)?)?;
    let app = launch(&eal, config, signals.stop.clone(), make_processors)?;
    eprintln!(
        "shake: serving with {} workers on lcores {:?} (main lcore {})",
        app.workers(),
        eal.worker_lcores(),
        eal.main_lcore()
    );
    if dpdk.telemetry {
        telemetry::publish(app.stats().clone())?;
    }
    let prometheus = match config.stats.prometheus {
        Some(addr) => Some(
            crate::control::serve_prometheus(addr, app.stats().clone(), signals.stop.clone())
                .map_err(|e| DpdkError::Config(format!("stats.prometheus {addr}: {e}")))?,
        ),
        None => None,
    };
    if let Some((addr, _)) = &prometheus {
        // The bound address: `prometheus = "127.0.0.1:0"` picks a free port, and this line is
        // the only place that says which.
        println!("shake: metrics on http://{addr}/metrics");
    }
    let mut ticker = Ticker::new(Duration::from_secs(config.stats.interval_s));
    while !signals.stopping() {
        if let Some(line) = ticker.poll(app.stats()) {
            println!("{line}");
        }
        control(&signals, app.stats());
        std::thread::sleep(Duration::from_millis(100));
    }
    let stats = app.stats().clone();
    telemetry::withdraw();
    let processors = app.join();
    if let Some((_, handle)) = prometheus {
        let _ = handle.join();
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
    println!("stopped {busy}{}", total.line());
    drop(eal);
    processors
}
