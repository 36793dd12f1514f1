//! The DPDK appliance: EAL, ports, mempools, hand-off rings and one poll-mode worker per
//! lcore. A thin layer: every decision about a frame is the processor's (the frame layer);
//! this module only moves mbufs.
//!
//! - [`eal`]: EAL arguments from the `[dpdk]` section (a pure function), and the EAL itself.
//! - [`port`]: port setup in l2fwd order, with its mempool, and its queue handles;
//!   [`multicast`]: the multicast groups a port lets in for NDP; [`af_xdp`]: what a port on
//!   an AF_XDP socket needs, checked before its setup.
//! - [`mbuf`], [`mempool`], [`ring`]: owned mbufs, bursts in stack arrays, pools, SPSC rings
//!   (and in-process ring ports for tests and generators).
//! - [`appliance`]: ports and rings for one worker per lcore, the workers launched on their
//!   lcores and joined; [`backend`]: that appliance as the node's backend
//!   ([`crate::backend::Backend`]), with the engine workers behind the frame layer.
//! - [`worker`]: the poll loop of one lcore, and [`backlog`]: its TX backlog per port, where
//!   answers TX did not take wait for the next poll.
//! - [`telemetry`]: `/shake/stats` on the DPDK telemetry socket; [`capture`]: live packet
//!   capture by `dpdk-dumpcap` (`[dpdk] capture`).
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
//! `unsafe` is confined to this module; each block says why it holds. The safe API cannot
//! be used to break DPDK's rules: everything that needs the EAL borrows the [`Eal`] (so it
//! cannot outlive `rte_eal_cleanup`), a queue is polled through the one handle its port
//! hands out (so one thread uses it, and the port closes only after it), rings are used
//! through their single producer and consumer, and the EAL's drop waits for the worker
//! lcores and keeps its memory while any mbuf may still be out.
#![allow(unsafe_code)]

pub mod af_xdp;
pub mod appliance;
pub mod backend;
pub mod backlog;
pub mod capture;
pub mod clock;
pub mod eal;
pub mod error;
pub mod mbuf;
pub mod mempool;
pub mod multicast;
pub mod port;
pub mod processor;
pub mod ring;
pub mod telemetry;
pub mod worker;

use std::path::Path;

pub use appliance::{launch, open, section, Appliance, Opened};
pub use backend::{DpdkBackend, DpdkRunning};
pub use capture::Capture;
pub use clock::TscClock;
pub use eal::{eal_args, Eal};
pub use error::DpdkError;
pub use mbuf::{Burst, Mbuf, BURST};
pub use mempool::Mempool;
pub use multicast::Multicast;
pub use port::{Port, PortInfo, RxQueue, TxQueue};
pub use processor::{frame_configs, peek_user, BurstProcessor, FrameProcessor, Verdict};
pub use ring::{Consumer, Producer, Ring, RingPort};

use crate::node_config::{capture_conflict, NodeConfig};

/// The EAL arguments for a node config plus command-line extras. With `[dpdk] capture` on,
/// an extra that would keep a capture process from attaching is refused (the config's own
/// `extra_args` were checked when it loaded).
pub fn node_eal_args(config: &NodeConfig, extra: &[String]) -> Result<Vec<String>, DpdkError> {
    let base = config.path.parent().unwrap_or(Path::new("."));
    let dpdk = section(config)?;
    if dpdk.capture {
        if let Some((arg, why)) = extra
            .iter()
            .find_map(|a| capture_conflict(a).map(|why| (a, why)))
        {
            return Err(DpdkError::Config(format!(
                "{arg} on the command line {why}, and {} sets [dpdk] capture = true: \
                 drop {arg}, or set capture = false",
                config.path.display()
            )));
        }
    }
    Ok(eal_args(dpdk, base, extra))
}
