//! The appliance: ports and hand-off rings set up for one worker per lcore
//! ([`open`]), then a worker loop launched on every worker lcore
//! ([`Opened::start`]), stopped and joined by [`Appliance::join`].
//!
//! Two steps because the node checks its seeds against the number of worker lcores between
//! them: the ports and the lcores are known once DPDK has accepted the config, and only then
//! may recovery change a file.
//!
//! Everything here borrows the [`Eal`], and a worker lcore's task owns its queue handles,
//! rings and processor, so nothing a worker uses can go while it runs: joining waits for
//! the lcores before anything is dropped, and the ports close when their last queue handle
//! goes.

use std::os::raw::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::clock::TscClock;
use super::eal::Eal;
use super::error::DpdkError;
use super::multicast::{ndp_groups, Multicast};
use super::port::{Port, PortInfo, RxQueue, TxQueue};
use super::processor::TxOffload;
use super::processor::{port_ipv6, BurstProcessor};
use super::ring::{Consumer, Producer, Ring};
use super::worker::{WorkerLoop, WorkerPort};
use crate::control::Stats;
use crate::node_config::{DpdkSection, NodeConfig};

/// How long opening waits for each port's link.
const LINK_WAIT: Duration = Duration::from_secs(3);

/// The `[dpdk]` section, or an error saying it is missing.
pub fn section(config: &NodeConfig) -> Result<&DpdkSection, DpdkError> {
    config
        .dpdk
        .as_ref()
        .ok_or_else(|| DpdkError::Config(format!("{}: no [dpdk] section", config.path.display())))
}

/// One worker lcore's task: its loop, and what went wrong if it did.
struct Task<'eal, P> {
    lcore: u32,
    worker: WorkerLoop<'eal, P>,
    failure: Option<String>,
}

/// Ports started with one queue pair per worker lcore and the hand-off rings made: what
/// [`Opened::start`] launches the workers on.
pub struct Opened<'eal> {
    /// Keeps `Opened` on the main lcore (`&Eal` is not `Send`): launching and joining
    /// lcores is the main lcore's job.
    _eal: &'eal Eal,
    lcores: Vec<u32>,
    node_count: u32,
    idle_sleep: Duration,
    clock: TscClock,
    ports: Vec<Port<'eal>>,
    infos: Vec<PortInfo>,
    /// Per worker: its RX and TX queue of every port.
    queues: Vec<(Vec<RxQueue<'eal>>, Vec<TxQueue<'eal>>)>,
    /// to[from][to] and from[to]: one SPSC ring per ordered pair of workers.
    to: Vec<Vec<Option<Producer<'eal>>>>,
    from: Vec<Vec<Consumer<'eal>>>,
}

/// Workers running on their lcores. [`Appliance::join`] stops them and gives the processors
/// back; dropping it does the same and discards them.
pub struct Appliance<'eal, P: BurstProcessor + Send + 'static> {
    /// Boxed tasks, owned by their lcores while they run.
    tasks: Vec<*mut Task<'eal, P>>,
    stop: Arc<AtomicBool>,
    stats: Stats,
    ports: Vec<Port<'eal>>,
}

impl<'eal> Opened<'eal> {
    /// The worker count: one per worker lcore.
    pub fn workers(&self) -> usize {
        self.lcores.len()
    }

    /// The started ports, in config order.
    pub fn ports(&self) -> &[PortInfo] {
        &self.infos
    }

    /// The worker lcores, in worker order.
    pub fn lcores(&self) -> &[u32] {
        &self.lcores
    }

    /// Launches worker `i` with `processors[i]` on the `i`-th worker lcore. Workers run
    /// until `stop` is set (by a signal, the caller, or a worker that failed).
    /// If the workers cannot all start, none runs, and the processors come back with the
    /// error.
    pub fn start<P: BurstProcessor + Send + 'static>(
        self,
        stop: Arc<AtomicBool>,
        processors: Vec<P>,
    ) -> Result<Appliance<'eal, P>, (DpdkError, Vec<P>)> {
        let workers = self.lcores.len();
        if processors.len() != workers {
            let e = DpdkError::Config(format!(
                "{} processors for {workers} worker lcores",
                processors.len()
            ));
            return Err((e, processors));
        }
        let ports_of_worker: Vec<WorkerPort> = self
            .infos
            .iter()
            .map(|i| {
                let mut tx_cksum = TxOffload::empty();
                tx_cksum.set(TxOffload::IPV4_CKSUM, i.tx_ipv4_cksum);
                tx_cksum.set(TxOffload::UDP_CKSUM, i.tx_udp_cksum);
                WorkerPort {
                    id: i.id,
                    tx_cksum,
                    rx_cksum: i.rx_cksum,
                }
            })
            .collect();
        let mut app = Appliance {
            tasks: Vec::with_capacity(workers),
            stop: stop.clone(),
            stats: Stats {
                workers: processors.iter().map(|p| p.counters().clone()).collect(),
                ..Stats::default()
            },
            ports: self.ports,
        };
        let mut parts = self
            .to
            .into_iter()
            .zip(self.from)
            .zip(self.queues)
            .zip(processors)
            .enumerate();
        while let Some((index, (((to, from), (rx, tx)), processor))) = parts.next() {
            let lcore = self.lcores[index];
            let raw = Box::into_raw(Box::new(Task {
                lcore,
                worker: WorkerLoop {
                    index,
                    workers,
                    node_count: self.node_count,
                    ports: ports_of_worker.clone(),
                    rx,
                    tx,
                    to,
                    from,
                    stop: stop.clone(),
                    clock: self.clock,
                    idle_sleep: self.idle_sleep,
                    processor,
                },
                failure: None,
            }));
            // Owned by `app` from here: join (or drop) reclaims it after the lcore returns.
            app.tasks.push(raw);
            // SAFETY: `run_task::<P>` expects a `*mut Task<P>`, which raw is; the task stays
            // allocated until the lcore has returned (join waits for it before reclaiming,
            // and so does the Eal's drop if the appliance was leaked) and nothing else
            // touches it meanwhile. Its queue handles are not Send: they are lent to this
            // one lcore while it runs, and come back to this (main lcore) thread, where
            // join drops them. The lcore is a worker lcore in WAIT state, and this is the
            // main lcore (`Opened` holds the `&Eal`, which cannot leave it).
            let ret = unsafe {
                dpdk_sys::rte_eal_remote_launch(Some(run_task::<P>), raw.cast::<c_void>(), lcore)
            };
            if ret < 0 {
                // Never launched: take it back now so join does not wait for it.
                app.tasks.pop();
                // SAFETY: raw came from Box::into_raw above and no lcore received it.
                let task = unsafe { Box::from_raw(raw) };
                let e = DpdkError::errno(format!("rte_eal_remote_launch on lcore {lcore}"), -ret);
                // Stop those launched and give every processor back, in order.
                let (mut back, _) = app.join_inner();
                back.push(Some(task.worker.processor));
                back.extend(parts.map(|(_, (_, processor))| Some(processor)));
                return Err((e, back.into_iter().flatten().collect()));
            }
        }
        Ok(app)
    }
}

/// The lcore entry point: runs a worker loop. A panic (a bug) is caught so that it cannot
/// unwind into C: the worker records it and stops the node, whose journals then close
/// cleanly (the release profile unwinds for this; see Cargo.toml).
unsafe extern "C" fn run_task<P: BurstProcessor>(arg: *mut c_void) -> c_int {
    // SAFETY: `start` passes a live `*mut Task<P>` that only this lcore uses until it
    // returns; the lifetime is erased here and the task is only used during this call.
    let task = unsafe { &mut *arg.cast::<Task<'static, P>>() };
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

impl<'eal, P: BurstProcessor + Send + 'static> Appliance<'eal, P> {
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
    pub fn join(self) -> Result<Vec<P>, DpdkError> {
        match self.join_each() {
            (processors, None) => Ok(processors.into_iter().flatten().collect()),
            (_, Some(e)) => Err(e),
        }
    }

    /// [`join`](Self::join), giving back every processor whose worker did not fail (`None`
    /// for one that panicked: its state is not trusted) and the first failure.
    pub fn join_each(mut self) -> (Vec<Option<P>>, Option<DpdkError>) {
        let result = self.join_inner();
        // Ports stop and close (and their pools go) when self drops, after the rings.
        drop(self);
        result
    }

    fn join_inner(&mut self) -> (Vec<Option<P>>, Option<DpdkError>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut processors = Vec::with_capacity(self.tasks.len());
        let mut failure = None;
        for (index, raw) in self.tasks.drain(..).enumerate() {
            // SAFETY: raw is a launched task; its lcore id is read-only after launch.
            let lcore = unsafe { (*raw).lcore };
            // SAFETY: waits for the lcore running `raw` to return; called on the main lcore.
            unsafe { dpdk_sys::rte_eal_wait_lcore(lcore) };
            // SAFETY: the lcore has returned, so nothing else references the task; it came
            // from Box::into_raw in `start`.
            let task = unsafe { Box::from_raw(raw) };
            let Task {
                worker, failure: f, ..
            } = *task;
            // Rings and queue handles go as the loops drop (draining any mbufs left in the
            // rings), before the ports and pools.
            match f {
                None => processors.push(Some(worker.processor)),
                Some(message) => {
                    processors.push(None);
                    failure.get_or_insert(DpdkError::Worker {
                        worker: index,
                        lcore,
                        message,
                    });
                }
            }
        }
        (processors, failure)
    }
}

impl<P: BurstProcessor + Send + 'static> Drop for Appliance<'_, P> {
    fn drop(&mut self) {
        if !self.tasks.is_empty() {
            drop(self.join_inner());
        }
        // `ports` drop next: stop, close, free pools (once their queue handles are gone).
    }
}

/// Starts the ports of `config` with one queue pair per worker lcore and the hand-off rings;
/// the workers start with [`Opened::start`].
pub fn open<'eal>(eal: &'eal Eal, config: &NodeConfig) -> Result<Opened<'eal>, DpdkError> {
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
    let mut ports = config
        .port
        .iter()
        .enumerate()
        .map(|(i, s)| Port::open(eal, i, s, queues, dpdk.handoff_ring))
        .collect::<Result<Vec<_>, _>>()?;
    for port in &mut ports {
        // The groups of the addresses the frame layer answers on (`frame_configs`).
        let groups = port_ipv6(&config.node, port.info().mac)
            .map_or_else(Vec::new, |addrs| ndp_groups(&addrs));
        port.accept_multicast(&groups)?;
    }
    let infos: Vec<PortInfo> = ports.iter().map(|p| p.info().clone()).collect();
    for (port, info) in ports.iter().zip(&infos) {
        eprintln!("{}", describe(info, &port.wait_link(LINK_WAIT)));
        if let Some(warning) = info.multicast.warning(&info.name) {
            eprintln!("{warning}");
        }
    }
    // Queue i of every port is worker i's.
    let mut queues: Vec<(Vec<RxQueue>, Vec<TxQueue>)> =
        (0..workers).map(|_| (Vec::new(), Vec::new())).collect();
    for port in &mut ports {
        let taken = port.take_queues().unwrap_or_default();
        for (w, (rx, tx)) in taken.into_iter().enumerate() {
            queues[w].0.push(rx);
            queues[w].1.push(tx);
        }
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
                eal,
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
    Ok(Opened {
        _eal: eal,
        lcores,
        node_count: config.node.count,
        idle_sleep: Duration::from_micros(u64::from(dpdk.idle_sleep_us)),
        clock: TscClock::anchor_now(eal),
        ports,
        infos,
        queues,
        to,
        from,
    })
}

/// A started port's start-up line: "shake: port NAME (id N): MAC, Q queue pairs, RSS, IPv4
/// header checksum offload, UDP checksum offload, RX checksums checked by the NIC, NDP
/// multicast list ..., LINK" (tests read the MAC after "): ").
pub fn describe(info: &PortInfo, link: &str) -> String {
    let m = info.mac;
    let ipv6 = info.multicast != Multicast::Unchanged;
    let rss = match (info.rss, info.rss_ipv6) {
        (false, _) => "",
        // Worth saying only where IPv6 comes in: it all lands on the first queue.
        (true, false) if ipv6 => ", RSS (IPv4 only)",
        (true, _) => ", RSS",
    };
    format!(
        "shake: port {} (id {}): {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}, {} queue pairs{}{}{}{}{}, {}",
        info.name,
        info.id,
        m[0], m[1], m[2], m[3], m[4], m[5],
        info.queues,
        rss,
        if info.tx_ipv4_cksum { ", IPv4 header checksum offload" } else { "" },
        if info.tx_udp_cksum { ", UDP checksum offload" } else { "" },
        if info.rx_cksum { ", RX checksums checked by the NIC" } else { "" },
        info.multicast.describe(),
        link
    )
}

/// Opens the appliance and starts it with `make_processors(workers, ports)`, built on the
/// main lcore, one per worker in worker order.
pub fn launch<'eal, P, F>(
    eal: &'eal Eal,
    config: &NodeConfig,
    stop: Arc<AtomicBool>,
    make_processors: F,
) -> Result<Appliance<'eal, P>, DpdkError>
where
    P: BurstProcessor + Send + 'static,
    F: FnOnce(usize, &[PortInfo]) -> Vec<P>,
{
    let opened = open(eal, config)?;
    let processors = make_processors(opened.workers(), opened.ports());
    opened.start(stop, processors).map_err(|(e, _)| e)
}

#[cfg(test)]
mod test {
    use super::*;

    fn info(rss: bool, rss_ipv6: bool, multicast: Multicast) -> PortInfo {
        PortInfo {
            index: 0,
            id: 3,
            name: "net_af_packet0".into(),
            mac: [0x02, 0, 0x5e, 0x12, 0x34, 0x56],
            socket: 0,
            queues: 2,
            tx_ipv4_cksum: false,
            tx_udp_cksum: true,
            rx_cksum: false,
            rss,
            rss_ipv6,
            multicast,
        }
    }

    #[test]
    fn an_ipv4_only_port_line_is_as_it_was() {
        assert_eq!(
            describe(&info(true, false, Multicast::Unchanged), "Link up"),
            "shake: port net_af_packet0 (id 3): 02:00:5e:12:34:56, 2 queue pairs, RSS, \
             UDP checksum offload, Link up"
        );
    }

    #[test]
    fn a_port_that_fills_ipv4_header_checksums_says_so() {
        let mut i = info(true, false, Multicast::Unchanged);
        i.tx_ipv4_cksum = true;
        assert_eq!(
            describe(&i, "Link up"),
            "shake: port net_af_packet0 (id 3): 02:00:5e:12:34:56, 2 queue pairs, RSS, \
             IPv4 header checksum offload, UDP checksum offload, Link up"
        );
    }

    #[test]
    fn a_port_that_checks_rx_checksums_says_so() {
        let mut i = info(true, false, Multicast::Unchanged);
        i.rx_cksum = true;
        assert_eq!(
            describe(&i, "Link up"),
            "shake: port net_af_packet0 (id 3): 02:00:5e:12:34:56, 2 queue pairs, RSS, \
             UDP checksum offload, RX checksums checked by the NIC, Link up"
        );
    }

    #[test]
    fn an_ipv6_port_line_says_its_multicast_mode_and_rss_coverage() {
        let list = Multicast::List(vec![[0x33, 0x33, 0xff, 0, 0, 2]]);
        assert_eq!(
            describe(&info(true, true, list.clone()), "Link up"),
            "shake: port net_af_packet0 (id 3): 02:00:5e:12:34:56, 2 queue pairs, RSS, \
             UDP checksum offload, NDP multicast list 33:33:ff:00:00:02, Link up"
        );
        let line = describe(&info(true, false, list), "Link up");
        assert!(line.contains(", RSS (IPv4 only),"), "{line}");
        let all = Multicast::All {
            list: "Operation not supported".into(),
        };
        let line = describe(&info(false, false, all), "Link down");
        assert!(
            line.contains(", NDP all-multicast (no multicast list: Operation not supported)"),
            "{line}"
        );
        assert!(!line.contains("RSS"), "{line}");
    }
}
