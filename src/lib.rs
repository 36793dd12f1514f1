//! shake: a SHAKE/1 access node.
//!
//! The crate is split so that everything that decides what a packet means is pure Rust with no
//! I/O in it, and every I/O layer (DPDK ports, kernel sockets, the generator in `bench/gen`,
//! the crash tests) calls the same code. Layers, bottom up; a module uses only layers below
//! its own, never one beside it, so a helper two layers share lives below both:
//!
//! - [`wire`]: zero-copy views over frame bytes (Ethernet, ARP, IPv4, ICMP, UDP, SHAKE/1).
//! - Small shared pieces: [`mac`] (the SipHash-2-4 token and claim MACs of SPEC section 2),
//!   [`counters`] (per-worker counters, written by one core, read by the control loop),
//!   [`hugemem`] (tables in huge-page memory), [`rng`] (the generator behind draws and seed
//!   plans), [`time`] (unix milliseconds), [`activity`] (sponsors, rounds and limits as the
//!   operator writes them), and for the files `mmap` (shared mappings and locks) and `le`
//!   (little-endian fields).
//! - The money files: [`seed`] (red packets issued once) and [`journal`] (claims recorded).
//! - [`engine`]: one worker's state and the decision for one shake; [`frame`] above it: a
//!   burst of frames rewritten in place into their answers. [`client`]: the phone's side of
//!   SHAKE/1 (requests, answer checks) for the generator and the tests.
//! - [`recovery`] and [`reconcile`] (recovered after a crash and reconciled to the cent),
//!   [`node_config`], [`control`] (signals, counter line, metrics endpoint).
//! - [`fleet`]: the fleet's control side on etcd and NATS JetStream (live config, node
//!   registry, claim shipping), used by the node's lifecycle and the fleet commands.
//! - The backends, behind one interface ([`backend::Backend`]): [`io::socket`] (kernel sockets)
//!   and `dpdk` (feature `dpdk`, default: poll-mode workers per lcore).
//! - [`node`]: a node assembled from its config, and its one lifecycle
//!   ([`node::lifecycle`]: recovery, flushing, reload, stats, stop) that drives any backend.
//!   The binary's `cli` on top only parses arguments and picks the backend.
#![deny(unsafe_code)]

pub mod activity;
pub mod backend;
pub mod client;
pub mod control;
pub mod counters;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod engine;
pub mod fleet;
pub mod frame;
pub mod hugemem;
pub mod io;
pub mod journal;
pub(crate) mod le;
pub mod mac;
pub(crate) mod mmap;
pub mod node;
pub mod node_config;
pub mod reconcile;
pub mod recovery;
pub mod rng;
pub mod seed;
pub mod time;
pub mod wire;
