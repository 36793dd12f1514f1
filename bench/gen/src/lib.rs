//! shake-gen: the bundled load generator, a population of phones shaking at a node.
//!
//! A crate of its own, beside the appliance rather than inside it: the charts (plotters) and
//! the JSON report (serde_json) it needs are no part of what a node runs. It sees the node
//! only as a phone would: through the wire views and the client-side checks of
//! [`shake::client`], the MACs of [`shake::mac`], the node config (for keys and addresses),
//! the socket batches of [`shake::io::mmsg`] and, in DPDK mode, the node's DPDK layer.
//!
//! - [`population`]: users, their tokens (good and bad), the node that owns them, and when
//!   each may shake again.
//! - [`load`]: what is in flight, pacing, and the validation and counting of every answer.
//! - [`histogram`]: round-trip times (from client_ts) in a log-linear histogram.
//! - [`seconds`]: answers by outcome and money per whole second from a round's opening, and
//!   the config changes the answers showed: the night's story, for the charts.
//! - [`pcap`]: the request stream as a classic pcap file, for replay.
//! - [`svg`]: throughput over time, the latency distribution, answers by outcome per second
//!   (stacked) and red packets and money over time, as pictures.
//! - [`socket`]: kernel UDP sockets (sendmmsg/recvmmsg) to a node's address.
//! - [`template`]: request frames from a per-flow template, byte for byte those of
//!   [`Flow::emit`](shake::client::Flow::emit) at a fraction of the cost.
//! - `dpdk` (feature `dpdk`): its own EAL and one port (net_memif, net_pcap, a NIC), whole
//!   frames written from a template.
//!
//! Errors are [`GenError`]; the binary (`src/main.rs`) parses arguments and reports.
#![deny(unsafe_code)]

#[cfg(feature = "dpdk")]
pub mod dpdk;
mod error;
pub mod histogram;
pub mod load;
pub mod pcap;
pub mod population;
pub mod seconds;
pub mod socket;
pub mod svg;
pub mod template;

pub use error::GenError;
pub use histogram::Histogram;
pub use load::{Generator, Meta, Plan, Report, Request};
pub use population::{Population, Spec};
