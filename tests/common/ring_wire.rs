//! In-process DPDK tests over a ring port (`dpdk::RingPort`): the node config of an appliance
//! on one ring port (the tests' two-worker one, and bench/steering.rs's), and feeding frames
//! to its RX rings.

use std::path::Path;
use std::time::Instant;

use shake::dpdk::{Burst, Mempool, Producer};
use shake::frame::RxChecked;
use shake::node_config::NodeConfig;

/// A node (10.0.0.2) on one ring port `net_ring_<port>`, no huge pages, its own file prefix;
/// the lcore layout, memory, hand-off rings and idle naps as set. bench/steering.rs runs its
/// nodes from it too.
pub struct RingNode<'a> {
    pub prefix: &'a str,
    pub port: &'a str,
    /// The EAL's `--lcores`: the main lcore, then one per worker.
    pub lcores: &'a str,
    pub memory_mb: u32,
    pub handoff_ring: u32,
    pub idle_sleep_us: u64,
    pub telemetry: bool,
}

impl RingNode<'_> {
    /// The node's `node.toml`.
    pub fn text(&self) -> String {
        let RingNode {
            prefix,
            port,
            lcores,
            memory_mb,
            handoff_ring,
            idle_sleep_us,
            telemetry,
        } = self;
        format!(
            r#"
[node]
index = 0
count = 1
ipv4 = "10.0.0.2"

[activity]
file = "unused.toml"

[keys]
token_key = "unused.key"
claim_key = "unused.key"

[dpdk]
lcores = "{lcores}"
main_lcore = 0
memory_mb = {memory_mb}
huge = false
telemetry = {telemetry}
file_prefix = "{prefix}"
log_level = "error"
handoff_ring = {handoff_ring}
idle_sleep_us = {idle_sleep_us}

[[port]]
name = "net_ring_{port}"
rx_desc = 256
tx_desc = 256
mempool_cache = 32
"#
        )
    }

    pub fn config(&self) -> NodeConfig {
        NodeConfig::parse(Path::new("/nonexistent/node.toml"), &self.text())
            .expect("ring node config parses")
    }
}

/// A [`RingNode`] with two worker lcores floating over the machine's first two CPUs (main,
/// worker 0, worker 1), 256 MB, idle naps of 20 us.
pub fn two_worker_config(
    prefix: &str,
    port: &str,
    handoff_ring: u32,
    telemetry: bool,
) -> NodeConfig {
    RingNode {
        prefix,
        port,
        lcores: "(0-2)@(0-1)",
        memory_mb: 256,
        handoff_ring,
        idle_sleep_us: 20,
        telemetry,
    }
    .config()
}

/// Puts `frames` on an RX ring, one mbuf each from `pool`, retrying while the ring is full;
/// panics at `deadline`.
pub fn feed(
    pool: &Mempool,
    ring: &mut Producer,
    frames: impl IntoIterator<Item = Vec<u8>>,
    deadline: Instant,
) {
    feed_flagged(pool, ring, frames, RxChecked::empty(), deadline);
}

/// [`feed`], each mbuf flagged as a NIC that verified `checked` of its frame would flag it.
pub fn feed_flagged(
    pool: &Mempool,
    ring: &mut Producer,
    frames: impl IntoIterator<Item = Vec<u8>>,
    checked: RxChecked,
    deadline: Instant,
) {
    let mut burst = Burst::new();
    let mut frames = frames.into_iter().peekable();
    while frames.peek().is_some() || !burst.is_empty() {
        assert!(Instant::now() < deadline, "could not feed the port in time");
        while !burst.is_full() {
            let Some(frame) = frames.next() else { break };
            let mut m = pool.alloc().expect("test pool has room");
            assert!(m.set_len(frame.len()));
            m.data_mut().copy_from_slice(&frame);
            m.set_rx_checked(checked);
            burst.push(m).expect("room checked");
        }
        ring.enqueue(&mut burst);
        if !burst.is_empty() {
            std::thread::yield_now();
        }
    }
}
