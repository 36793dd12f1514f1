//! What a node's workers run on: the interface between the node's lifecycle and its I/O
//! backends.
//!
//! A backend is what [`crate::node::lifecycle`] plugs workers into: the lifecycle does
//! everything else a node does (recovery, seeds, journals, flushing, reload, stats, stop)
//! once, for every backend. So a backend has three moments, the trait's three methods:
//! - before the workers exist, it says how many it will run if it decides that (DPDK: one
//!   per worker lcore), so that recovery can check the seeds against it before any file
//!   changes;
//! - [`Backend::start`] takes the workers, their reload channels and the stop flag, and runs
//!   them (threads, lcores);
//! - [`Running::join`], once the flag is set, gives the workers back, in order, for their
//!   journals to be closed.
//!
//! The DPDK appliance ([`crate::dpdk::backend`], feature `dpdk`) and the kernel sockets
//! ([`crate::io::socket`]) implement it. The trait sits below both, so neither backend
//! depends on the other, and the node depends on neither.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crossbeam::channel::Receiver;

use crate::counters::Counters;
use crate::engine::config::Live;
use crate::engine::Worker;
use crate::journal::ClaimSink;
use crate::seed::SeedSource;

/// Where a node's workers run.
pub trait Backend {
    /// What went wrong starting or stopping.
    type Error: std::error::Error + Send + Sync + 'static;
    /// The workers running.
    type Running<S: SeedSource + Send + 'static, J: ClaimSink + Send + 'static>: Running<
        S,
        J,
        Error = Self::Error,
    >;

    /// How many workers this backend runs, when it decides (one per worker lcore); `None`
    /// when the node does (from the seeds manifest or its config).
    fn workers(&self) -> Option<usize>;

    /// The setting that decides [`Backend::workers`], for an error that names it.
    fn workers_setting(&self) -> &'static str;

    /// Runs `workers` until `stop` is set; worker `i` takes new snapshots from `reloads[i]`
    /// between bursts. If it cannot start them, it gives them back untouched, so that their
    /// journals still close cleanly.
    fn start<S: SeedSource + Send + 'static, J: ClaimSink + Send + 'static>(
        self,
        workers: Vec<Worker<S, J>>,
        reloads: Vec<Receiver<Arc<Live>>>,
        stop: Arc<AtomicBool>,
    ) -> Started<Self::Running<S, J>, S, J, Self::Error>;
}

/// What [`Backend::start`] gives: its workers running, or back with the reason.
pub type Started<R, S, J, E> = Result<R, NotStarted<S, J, E>>;

/// Workers a backend could not start, given back with the reason.
pub struct NotStarted<S: SeedSource, J: ClaimSink, E> {
    pub error: E,
    pub workers: Vec<Worker<S, J>>,
}

/// What a backend gives back at the stop.
pub struct Stopped<S: SeedSource, J: ClaimSink, E> {
    /// Worker `i`, or `None` where it failed (a panic in the middle of a decision): its
    /// state is not closed cleanly but left to recovery, as after a crash.
    pub workers: Vec<Option<Worker<S, J>>>,
    /// Why a worker failed.
    pub error: Option<E>,
}

/// Workers running on a backend.
pub trait Running<S: SeedSource, J: ClaimSink> {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Where it serves, for the start-up line: "udp 127.0.0.1:9000 with 2 socket worker(s)".
    fn describe(&self) -> String;

    /// Every worker's counters, in worker order.
    fn counters(&self) -> Vec<Arc<Counters>>;

    /// True when the workers stopped by themselves (one failed): the node then stops.
    fn finished(&self) -> bool;

    /// Waits for the workers to return (the stop flag is set) and gives them back in order.
    fn join(self) -> Stopped<S, J, Self::Error>;
}
