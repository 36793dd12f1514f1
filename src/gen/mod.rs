//! The bundled load generator (`shake gen`): a population of phones shaking at a node.
//!
//! - [`population`]: users, their tokens (good and bad), the node that owns them, and when
//!   each may shake again.
//! - [`load`]: what is in flight, pacing, and the validation and counting of every answer.
//! - [`histogram`]: round-trip times (from client_ts) in a log-linear histogram.
//! - [`pcap`]: the request stream as a classic pcap file, for replay.
//! - [`svg`]: throughput over time and the latency distribution as pictures.
//! - [`socket`]: kernel UDP sockets (sendmmsg/recvmmsg) to a node's address.
//! - [`template`]: request frames from a per-flow template, byte for byte those of
//!   [`Flow::emit`](crate::client::Flow::emit) at a fraction of the cost.
//! - `dpdk` (feature `dpdk`): its own EAL and one port (net_memif, net_pcap, a NIC), whole
//!   frames written from a template.

#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod histogram;
pub mod load;
pub mod pcap;
pub mod population;
pub mod socket;
pub mod svg;
pub mod template;

pub use histogram::Histogram;
pub use load::{Generator, Meta, Plan, Report, Request};
pub use population::{Population, Spec};
