//! In-process DPDK tests over a ring port (`dpdk::RingPort`): the node config of a two-worker
//! appliance on one ring port, and feeding frames to its RX rings.

use std::path::Path;
use std::time::Instant;

use shake::dpdk::{Burst, Mempool, Producer};
use shake::node_config::NodeConfig;

/// A node (10.0.0.2) on one port `net_ring_<port>` with two worker lcores floating over the
/// machine's first two CPUs (main, worker 0, worker 1), no huge pages, its own file prefix.
pub fn two_worker_config(
    prefix: &str,
    port: &str,
    handoff_ring: u32,
    telemetry: bool,
) -> NodeConfig {
    let text = format!(
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
lcores = "(0-2)@(0-1)"
main_lcore = 0
memory_mb = 256
huge = false
telemetry = {telemetry}
file_prefix = "{prefix}"
log_level = "error"
handoff_ring = {handoff_ring}
idle_sleep_us = 20

[[port]]
name = "net_ring_{port}"
rx_desc = 256
tx_desc = 256
mempool_cache = 32
"#
    );
    NodeConfig::parse(Path::new("/nonexistent/node.toml"), &text).expect("test config parses")
}

/// Puts `frames` on an RX ring, one mbuf each from `pool`, retrying while the ring is full;
/// panics at `deadline`.
pub fn feed(
    pool: &Mempool,
    ring: &mut Producer,
    frames: impl IntoIterator<Item = Vec<u8>>,
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
            burst.push(m).expect("room checked");
        }
        ring.enqueue(&mut burst);
        if !burst.is_empty() {
            std::thread::yield_now();
        }
    }
}
