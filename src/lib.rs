//! shake: a SHAKE/1 access node.
//!
//! The crate is split so that everything that decides what a packet means is pure Rust with no
//! I/O in it, and every I/O layer (DPDK ports, kernel sockets, the generator in `bench/gen`,
//! the crash tests) calls the same code:
//!
//! - [`wire`]: zero-copy views over frame bytes (Ethernet, ARP, IPv4, ICMP, UDP, SHAKE/1).
//! - [`mac`]: the SipHash-2-4 token and claim MACs of SPEC section 2.
//! - [`activity`]: sponsors, rounds and limits as the operator writes them.
//! - [`engine`]: one worker's state and the decision for one shake.
//! - [`frame`]: a burst of frames rewritten in place into their answers.
//! - [`counters`]: per-worker counters, written by one core, read by the control loop.
//! - [`seed`], [`journal`], [`recovery`], [`reconcile`]: red packets issued once, recorded,
//!   recovered after a crash and reconciled to the cent.
//! - `dpdk` (feature `dpdk`, default): the DPDK appliance, poll-mode workers per lcore.
#![deny(unsafe_code)]

pub mod activity;
pub mod client;
pub mod control;
pub mod counters;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod engine;
pub mod frame;
pub mod hugemem;
pub mod io;
pub mod journal;
pub mod mac;
pub mod node;
pub mod node_config;
pub mod reconcile;
pub mod recovery;
pub mod seed;
pub mod time;
pub mod wire;
