//! The node's one lifecycle (`shake::node::Lifecycle`) driving a backend of the test's own:
//! what the fleet's control plane and any new backend plug into. The backend here decides
//! shakes in process on a thread of its own, as the real ones do on lcores and sockets.
//!
//! - A backend whose workers stop by themselves (a failed worker, a closed socket) stops the
//!   node, which still closes every journal and shard cleanly: the next start finds them
//!   closed, and reconcile is exact.
//! - A backend that runs another number of workers than the seeds have shards is refused
//!   before anything opens or changes.
//! - A backend that cannot start its workers gives them back, and they close cleanly.
//! - A worker that fails (a panic in the middle of a decision) is left to recovery, as after
//!   a crash, while the others close cleanly.

mod common;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;

use common::{file_bytes, reconcile, seedgen, NodeDir, NodeToml, TOKEN_KEY};
use crossbeam::channel::Receiver;
use shake::backend::{Backend, NotStarted, Running, Stopped};
use shake::client;
use shake::counters::Counters;
use shake::engine::config::{owner_worker, Live};
use shake::engine::Worker;
use shake::journal::ClaimSink;
use shake::node::{unix_ms, Lifecycle, LifecycleError, Node};
use shake::seed::SeedSource;
use shake::wire::shake::Outcome;

const USERS: u64 = 400;

/// Every worker decides one shake from each of the users it owns, then the backend stops.
struct InProcess {
    workers: Option<usize>,
    fail: Fail,
}

#[derive(Clone, Copy, PartialEq)]
enum Fail {
    Nothing,
    /// The backend cannot start (a port in use, an lcore that does not launch).
    Start,
    /// Worker 0 fails while serving.
    Worker0,
}

struct InProcessRunning<S: SeedSource, J: ClaimSink> {
    fail: Fail,
    counters: Vec<Arc<Counters>>,
    thread: JoinHandle<Vec<Worker<S, J>>>,
}

impl Backend for InProcess {
    type Error = std::io::Error;
    type Running<S: SeedSource + Send + 'static, J: ClaimSink + Send + 'static> =
        InProcessRunning<S, J>;

    fn workers(&self) -> Option<usize> {
        self.workers
    }

    fn workers_setting(&self) -> &'static str {
        "the test backend"
    }

    fn start<S: SeedSource + Send + 'static, J: ClaimSink + Send + 'static>(
        self,
        mut workers: Vec<Worker<S, J>>,
        _reloads: Vec<Receiver<Arc<Live>>>,
        _stop: Arc<AtomicBool>,
    ) -> Result<InProcessRunning<S, J>, NotStarted<S, J, std::io::Error>> {
        if self.fail == Fail::Start {
            let error = std::io::Error::other("the test backend does not start");
            return Err(NotStarted { error, workers });
        }
        let counters = workers.iter().map(|w| w.counters().clone()).collect();
        let thread = std::thread::Builder::new().spawn(move || {
            let n = workers.len() as u32;
            let now = unix_ms();
            let expiry = (now / 1000 + 3600) as u32;
            for user in 1..=USERS {
                let w = &mut workers[owner_worker(user, 1, n) as usize];
                // A second apart: pacing spreads the round's packets over its duration.
                w.begin_burst(now + user * 1000);
                let mut p = client::payload(&client::request(&TOKEN_KEY, user, 1, expiry, 0));
                // Counted by the worker; the outcome is the worker's business here.
                let _ = w.shake(&mut p);
            }
            workers
        });
        let thread = match thread {
            Ok(t) => t,
            Err(error) => {
                return Err(NotStarted {
                    error,
                    workers: Vec::new(),
                })
            }
        };
        Ok(InProcessRunning {
            fail: self.fail,
            counters,
            thread,
        })
    }
}

impl<S: SeedSource, J: ClaimSink> Running<S, J> for InProcessRunning<S, J> {
    type Error = std::io::Error;

    fn describe(&self) -> String {
        format!("the test backend with {} worker(s)", self.counters.len())
    }

    fn counters(&self) -> Vec<Arc<Counters>> {
        self.counters.clone()
    }

    fn finished(&self) -> bool {
        self.thread.is_finished()
    }

    fn join(self) -> Stopped<S, J, std::io::Error> {
        let mut workers: Vec<_> = self.thread.join().unwrap().into_iter().map(Some).collect();
        let mut error = None;
        if self.fail == Fail::Worker0 {
            // As a panic would: the worker's state is not trusted, nothing closes it.
            workers[0] = None;
            error = Some(std::io::Error::other("worker 0 panicked"));
        }
        Stopped { workers, error }
    }
}

/// A node on durable seeds: `workers` shards, a journal directory, a 600 s round open now.
fn durable_node(workers: u32) -> NodeDir {
    let node = NodeDir::with_activity(&format!(
        r#"
[activity]
id = 12
name = "lifecycle"
epoch = {}

[[sponsor]]
id = 1
budget_cents = 100000
packets = 1000
min_cents = 1
max_cents = 200

[[round]]
id = 1
start_s = 0
duration_s = 600
win_probability = 0.5
greeting_probability = 0.2
"#,
        unix_ms() / 1000
    ));
    seedgen(node.path(), workers, 7);
    NodeToml::new("127.0.0.1", 10_000)
        .port(0)
        .activity(r#"seeds = "seeds""#)
        .activity(r#"journal = "journal""#)
        .write(node.path());
    node
}

#[test]
fn a_backend_that_stops_by_itself_stops_the_node_and_every_journal_closes() {
    let node = durable_node(2);
    let lifecycle = Lifecycle::prepare(Node::load(&node.config()).unwrap()).unwrap();
    let total = lifecycle
        .run(InProcess {
            workers: None,
            fail: Fail::Nothing,
        })
        .expect("the node stops cleanly when its backend does");
    let decided: u64 = total.decided.iter().sum();
    assert_eq!(decided, USERS, "{}", total.line());
    let red = total.decided(Outcome::RedPacket);
    assert!(red > 0, "the test needs red packets: {}", total.line());

    // The next start finds every shard closed cleanly, with every claim in its journal.
    let next = Node::load(&node.config()).unwrap();
    let plan = next.check_durable(unix_ms(), false).unwrap();
    let summary = plan.summary();
    assert_eq!(summary.workers.len(), 2);
    for w in &summary.workers {
        assert!(!w.unclean, "worker {} left unclean: {w:?}", w.worker);
    }
    assert_eq!(summary.claims, red);
    drop(plan);
    let report = reconcile(node.path());
    assert!(report.contains("exact"), "{report}");
}

#[test]
fn a_backend_with_another_worker_count_is_refused_before_anything_changes() {
    let node = durable_node(1);
    let before = file_bytes(node.path());
    let lifecycle = Lifecycle::prepare(Node::load(&node.config()).unwrap()).unwrap();
    let e = lifecycle
        .run(InProcess {
            workers: Some(2),
            fail: Fail::Nothing,
        })
        .unwrap_err();
    assert!(
        matches!(
            e,
            LifecycleError::Workers {
                manifest: 1,
                backend: 2,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("the test backend"), "{e}");
    assert_eq!(file_bytes(node.path()), before, "nothing changed");
}

/// Which shards the next start finds unclean, by worker.
fn unclean(node: &NodeDir) -> Vec<bool> {
    let next = Node::load(&node.config()).unwrap();
    let plan = next.check_durable(unix_ms(), false).unwrap();
    plan.summary().workers.iter().map(|w| w.unclean).collect()
}

#[test]
fn workers_a_backend_cannot_start_come_back_and_close_cleanly() {
    let node = durable_node(2);
    let lifecycle = Lifecycle::prepare(Node::load(&node.config()).unwrap()).unwrap();
    let e = lifecycle
        .run(InProcess {
            workers: None,
            fail: Fail::Start,
        })
        .unwrap_err();
    assert!(e.to_string().contains("does not start"), "{e}");
    assert_eq!(unclean(&node), [false, false]);
}

#[test]
fn a_failed_worker_is_left_to_recovery_and_the_others_close_cleanly() {
    let node = durable_node(2);
    let lifecycle = Lifecycle::prepare(Node::load(&node.config()).unwrap()).unwrap();
    let e = lifecycle
        .run(InProcess {
            workers: None,
            fail: Fail::Worker0,
        })
        .unwrap_err();
    assert!(e.to_string().contains("worker 0 panicked"), "{e}");
    assert_eq!(unclean(&node), [true, false]);
    // Recovery takes the failed worker's claims from its journal: reconcile is exact.
    let report = reconcile(node.path());
    assert!(report.contains("exact"), "{report}");
}
