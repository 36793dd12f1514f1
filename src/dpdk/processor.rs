//! What a worker lcore runs on its frames: the [`BurstProcessor`] interface of the poll
//! loop, and [`FrameProcessor`], the node's engine worker behind the frame layer.

use std::sync::Arc;

use crossbeam::channel::Receiver;

use crate::counters::Counters;
use crate::engine::config::Live;
use crate::engine::Worker;
pub use crate::frame::{peek_user, RxChecked, Staged, TxOffload, Verdict};
use crate::frame::{
    process_burst, process_burst_checked, process_burst_checked_staged, FrameConfig, Ipv6Addrs,
};
use crate::journal::ClaimSink;
use crate::node_config::NodeSection;
use crate::seed::SeedSource;

/// One worker's datapath, as the poll loop drives it. Everything here runs on the worker's
/// own lcore: no locks, no allocation, no system calls.
pub trait BurstProcessor {
    /// The time for the frames that follow (unix ms, one clock read per burst).
    fn begin(&mut self, now_ms: u64);
    /// Decides a burst received on (or handed over for) port number `port` of the config:
    /// rewrites answers in place and sets one verdict per frame (`verdicts` is as long as
    /// `frames`), saying for an answer what it answers. Counts the drops it decides, and
    /// nothing else: the loop counts `rx`, and each answer when TX takes it.
    fn process(&mut self, port: usize, frames: &mut [&mut [u8]], verdicts: &mut [Verdict]);
    /// [`process`](Self::process), told what the NIC verified of each frame (`checked` is as
    /// long as `frames`). By default the NIC's verdicts are not used.
    #[inline]
    fn process_checked(
        &mut self,
        port: usize,
        frames: &mut [&mut [u8]],
        _checked: &[RxChecked],
        verdicts: &mut [Verdict],
    ) {
        self.process(port, frames, verdicts);
    }
    /// [`process_checked`](Self::process_checked) for a burst whose frames were all given, in
    /// order, to [`stage`](Self::stage) with `staged` on an earlier pass. Leaves `staged`
    /// empty.
    #[inline]
    fn process_staged(
        &mut self,
        port: usize,
        frames: &mut [&mut [u8]],
        checked: &[RxChecked],
        staged: &mut Staged,
        verdicts: &mut [Verdict],
    ) {
        staged.clear();
        self.process_checked(port, frames, checked, verdicts);
    }
    /// Stages a burst into `staged`: it is decided on a later pass (the worker loop stages
    /// each burst for one pass), so start loading what deciding it will touch, and keep what
    /// is read for it. Nothing by default.
    #[inline]
    fn stage<'a>(&self, _frames: impl Iterator<Item = &'a [u8]>, _staged: &mut Staged) {}
    /// Periodic work off the per-packet path, about every 100 ms (config reload).
    fn tick(&mut self, now_ms: u64);
    /// The worker's counters; the poll loop adds `rx`, the answers TX takes, and its own
    /// drops (hand-offs, TX) to them.
    fn counters(&self) -> &Arc<Counters>;
}

/// An engine worker behind the frame layer: the processor `shake serve` runs on DPDK.
pub struct FrameProcessor<S: SeedSource, J: ClaimSink> {
    pub worker: Worker<S, J>,
    /// Per port (config order): our address, the port's MAC, the UDP port, offloads.
    pub frame: Vec<FrameConfig>,
    /// New snapshots from the control loop (SIGHUP), picked up on a tick.
    pub reload: Option<Receiver<Arc<Live>>>,
}

/// The frame configs, per port, of a node answering on its addresses and UDP port: each
/// port's own MAC for ARP and NDP replies (and its link-local address, derived from the MAC
/// unless the config gives one), and its UDP and IPv4 header checksum offloads where the device has them.
pub fn frame_configs(node: &NodeSection, ports: &[super::PortInfo]) -> Vec<FrameConfig> {
    let (ipv4, udp_port) = (node.ipv4, node.port);
    ports
        .iter()
        .map(|p| FrameConfig {
            ipv4: ipv4.octets(),
            ipv6: port_ipv6(node, p.mac),
            mac: p.mac,
            udp_port,
            tx_udp_offload: p.tx_udp_cksum,
            tx_ipv4_offload: p.tx_ipv4_cksum,
        })
        .collect()
}

/// The node's IPv6 addresses on a port with this MAC, if it has any: what the frame layer
/// answers on, and whose solicited-node groups the port lets in.
pub fn port_ipv6(node: &NodeSection, mac: [u8; 6]) -> Option<Ipv6Addrs> {
    node.ipv6
        .map(|g| Ipv6Addrs::new(g.octets(), node.link_local.map(|l| l.octets()), mac))
}

impl<S: SeedSource, J: ClaimSink> BurstProcessor for FrameProcessor<S, J> {
    #[inline]
    fn begin(&mut self, now_ms: u64) {
        self.worker.begin_burst(now_ms);
    }

    #[inline]
    fn process(&mut self, port: usize, frames: &mut [&mut [u8]], verdicts: &mut [Verdict]) {
        process_burst(&mut self.worker, &self.frame[port], frames, verdicts);
    }

    #[inline]
    fn process_checked(
        &mut self,
        port: usize,
        frames: &mut [&mut [u8]],
        checked: &[RxChecked],
        verdicts: &mut [Verdict],
    ) {
        process_burst_checked(
            &mut self.worker,
            &self.frame[port],
            frames,
            checked,
            verdicts,
        );
    }

    #[inline]
    fn process_staged(
        &mut self,
        port: usize,
        frames: &mut [&mut [u8]],
        checked: &[RxChecked],
        staged: &mut Staged,
        verdicts: &mut [Verdict],
    ) {
        process_burst_checked_staged(
            &mut self.worker,
            &self.frame[port],
            frames,
            checked,
            staged,
            verdicts,
        );
    }

    #[inline]
    fn stage<'a>(&self, frames: impl Iterator<Item = &'a [u8]>, staged: &mut Staged) {
        staged.stage(&self.worker, frames);
    }

    fn tick(&mut self, _now_ms: u64) {
        if let Some(live) = self.reload.as_ref().and_then(|r| r.try_recv().ok()) {
            self.worker.reload(live);
        }
    }

    fn counters(&self) -> &Arc<Counters> {
        self.worker.counters()
    }
}
