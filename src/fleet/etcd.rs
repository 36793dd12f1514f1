//! A node's side of etcd: its activity's live config, watched and applied, and its entry in
//! the node registry; and the operator's side: `shake fleet push` and `shake fleet status`.
//!
//! The control plane ([`run`]) is one async task per node. It holds one etcd session at a
//! time: connect, grant a lease, read the live key, register, then watch the key from the
//! revision just read and refresh the registration (and the lease) every [`STATUS_PERIOD`].
//! Any error ends the session; the task says so in the node's counters and starts a new one
//! after a short back-off, reading the key again, so a node that lost etcd catches up with
//! every push it missed as soon as etcd is back. Meanwhile the workers keep the snapshot they
//! have: etcd being away never stops serving.
//!
//! What to do with a revision is the [`Applier`]'s business (the node's lifecycle hands it to
//! the workers; the control-plane simulation only builds the snapshot), so the same session
//! code runs in every node and in the 640-node simulation. Revisions are applied in order
//! and only upwards: the node's `config_version` is the key's `mod_revision`, the same on
//! every node of the fleet, and never goes backwards.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, Txn, TxnOp,
    WatchOptions,
};
use serde::{Deserialize, Serialize};

use super::Names;
use crate::control::ControlCounters;
use crate::time::unix_ms;

/// How often a node refreshes its registration and its lease.
pub const STATUS_PERIOD: Duration = Duration::from_secs(1);

/// The registration lease: a node that stops refreshing disappears from the registry this
/// long after its last refresh.
pub const LEASE_TTL_S: i64 = 4;

/// Longest wait for any one etcd call: past it the session is over and a new one starts.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Back-off between sessions, doubling up to the maximum.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("etcd {endpoints}: {source}")]
    Etcd {
        endpoints: String,
        source: etcd_client::Error,
    },
    #[error("etcd {endpoints}: no answer within {CALL_TIMEOUT:?}")]
    Timeout { endpoints: String },
    #[error("{0}")]
    Refused(String),
}

/// Which etcd, which event, which activity, and (for a node) which node.
#[derive(Debug, Clone)]
pub struct EtcdTarget {
    pub endpoints: Vec<String>,
    pub names: Names,
    pub activity: u32,
}

impl EtcdTarget {
    fn live_key(&self) -> String {
        self.names.live_key(self.activity)
    }

    /// Where `shake fleet push` records when it pushed (beside the live key, written in the
    /// same transaction), so that lag can be measured from the push.
    fn pushed_key(&self) -> String {
        format!("{}/pushed_ms", self.live_key())
    }

    fn error(&self, source: etcd_client::Error) -> FleetError {
        FleetError::Etcd {
            endpoints: self.endpoints.join(","),
            source,
        }
    }

    /// One etcd call with the call timeout, its error naming the endpoints.
    async fn call<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, FleetError> {
        match tokio::time::timeout(CALL_TIMEOUT, f).await {
            Ok(r) => r.map_err(|e| self.error(e)),
            Err(_) => Err(FleetError::Timeout {
                endpoints: self.endpoints.join(","),
            }),
        }
    }

    async fn connect(&self) -> Result<Client, FleetError> {
        let opts = ConnectOptions::new()
            .with_connect_timeout(CALL_TIMEOUT)
            .with_timeout(CALL_TIMEOUT)
            .with_keep_alive(Duration::from_secs(1), CALL_TIMEOUT);
        self.call(Client::connect(&self.endpoints, Some(opts)))
            .await
    }
}

/// What a node says about itself in the registry (JSON under [`Names::node_key`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    pub node: u32,
    pub count: u32,
    /// The address phones use (`[fleet] advertise`, else `node.ipv4:node.port`).
    pub addr: String,
    /// What the node serves on, as its start line says (`udp 127.0.0.1:7000 with 2 ...`).
    pub serving: String,
    /// Its metrics endpoint, if it has one.
    pub metrics: Option<String>,
    /// Its claim shipper's metrics endpoint (`[fleet] ship_metrics`), if it has one.
    #[serde(default)]
    pub ship_metrics: Option<String>,
    /// The live config revision in force (its config_version).
    pub revision: i64,
    /// When that revision was applied (unix ms).
    pub applied_ms: u64,
    /// The newest revision of the live key this node has seen.
    pub seen: i64,
    /// The last revision it refused, and why (an invalid document never stops a node).
    pub refused: Option<String>,
    /// Answers since the node started, and per second over the last period.
    pub answers: u64,
    pub answer_rate: f64,
    pub red_packets: u64,
    pub pid: u32,
    pub updated_ms: u64,
}

/// The node's half of applying live config.
pub trait Applier: Send + 'static {
    /// The revision in force (0 before the first).
    fn applied(&self) -> i64;
    /// Applies revision `revision` of the live document `text`, or says why it cannot.
    fn apply(&mut self, revision: i64, text: &str) -> Result<(), String>;
    /// Fills in the figures of a registration (revision, counters, rates).
    fn report(&mut self, reg: &mut Registration);
}

/// Runs the control plane until `stop` turns true: sessions, one after another, with a
/// back-off between them. On a stop it revokes its lease, so the node leaves the registry at
/// once rather than when the lease runs out.
pub async fn run<A: Applier>(
    target: EtcdTarget,
    node: u32,
    mut applier: A,
    counters: Arc<ControlCounters>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut retry = RETRY_MIN;
    let mut said = None::<String>;
    while !*stop.borrow() {
        let started = Instant::now();
        let r = session(&target, node, &mut applier, &counters, &mut stop).await;
        counters.fleet_connected.store(0, Relaxed);
        counters.fleet_out_of_sync_ms.store(unix_ms(), Relaxed);
        match r {
            Ok(()) => break,
            Err(e) => {
                counters.fleet_errors.fetch_add(1, Relaxed);
                let msg = e.to_string();
                if said.as_ref() != Some(&msg) {
                    eprintln!(
                        "shake: fleet: {msg}; serving on config_version {} and retrying",
                        applier.applied()
                    );
                    said = Some(msg);
                }
            }
        }
        if started.elapsed() > RETRY_MAX * 4 {
            retry = RETRY_MIN;
        }
        tokio::select! {
            _ = tokio::time::sleep(retry) => {}
            _ = stop.changed() => {}
        }
        retry = (retry * 2).min(RETRY_MAX);
    }
}

/// Offers a revision of the live key to the applier: applied if it is newer than the one in
/// force, refused (and said once) if it is invalid or older.
fn offer<A: Applier>(
    applier: &mut A,
    counters: &ControlCounters,
    reg: &mut Registration,
    revision: i64,
    text: Result<&str, etcd_client::Error>,
) {
    counters
        .fleet_seen
        .fetch_max(revision.max(0) as u64, Relaxed);
    reg.seen = reg.seen.max(revision);
    let current = applier.applied();
    if revision <= current {
        if revision < current && reg.refused.is_none() {
            let why = format!(
                "revision {revision} is below this node's config_version {current}, which never goes backwards"
            );
            eprintln!("shake: fleet: {why}");
            reg.refused = Some(why);
            counters.reloads_refused.fetch_add(1, Relaxed);
        }
        return;
    }
    let r = match text {
        Ok(t) => applier.apply(revision, t),
        Err(e) => Err(format!("the value is not UTF-8 text: {e}")),
    };
    match r {
        Ok(()) => {
            reg.refused = None;
        }
        Err(why) => {
            counters.reloads_refused.fetch_add(1, Relaxed);
            eprintln!(
                "shake: fleet revision {revision} refused, still serving config_version {current}: {why}"
            );
            reg.refused = Some(format!("revision {revision}: {why}"));
        }
    }
}

async fn session<A: Applier>(
    t: &EtcdTarget,
    node: u32,
    applier: &mut A,
    counters: &ControlCounters,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<(), FleetError> {
    let mut client = t.connect().await?;
    let lease = t.call(client.lease_grant(LEASE_TTL_S, None)).await?.id();
    let (mut keeper, mut alive) = t.call(client.lease_keep_alive(lease)).await?;
    let mut reg = Registration {
        node,
        pid: std::process::id(),
        ..Default::default()
    };
    let key = t.live_key();
    let got = t.call(client.get(key.as_str(), None)).await?;
    let at = got.header().map(|h| h.revision()).unwrap_or(0);
    if let Some(kv) = got.kvs().first() {
        offer(
            applier,
            counters,
            &mut reg,
            kv.mod_revision(),
            kv.value_str(),
        );
    }
    let (_watcher, mut watch) = t
        .call(client.watch(
            key.as_str(),
            Some(WatchOptions::new().with_start_revision(at + 1)),
        ))
        .await?;
    register(t, &mut client, node, lease, applier, &mut reg).await?;
    counters.fleet_connected.store(1, Relaxed);
    let mut tick = tokio::time::interval(STATUS_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if reg.seen <= applier.applied() {
            counters.fleet_out_of_sync_ms.store(0, Relaxed);
        } else if counters.fleet_out_of_sync_ms.load(Relaxed) == 0 {
            counters.fleet_out_of_sync_ms.store(unix_ms(), Relaxed);
        }
        tokio::select! {
            _ = stop.changed() => {
                let _ = t.call(client.lease_revoke(lease)).await;
                return Ok(());
            }
            msg = watch.message() => {
                let resp = msg
                    .map_err(|e| t.error(e))?
                    .ok_or_else(|| FleetError::Refused("etcd closed the watch".into()))?;
                if resp.canceled() {
                    return Err(FleetError::Refused(format!(
                        "etcd cancelled the watch: {}",
                        resp.cancel_reason()
                    )));
                }
                for ev in resp.events() {
                    if let (EventType::Put, Some(kv)) = (ev.event_type(), ev.kv()) {
                        offer(applier, counters, &mut reg, kv.mod_revision(), kv.value_str());
                    }
                }
                // Registered at once, so that `shake fleet status` sees the push applied.
                register(t, &mut client, node, lease, applier, &mut reg).await?;
            }
            _ = tick.tick() => {
                t.call(keeper.keep_alive()).await?;
                match t.call(alive.message()).await? {
                    Some(r) if r.ttl() > 0 => {}
                    _ => return Err(FleetError::Refused(format!("lease {lease:x} expired"))),
                }
                register(t, &mut client, node, lease, applier, &mut reg).await?;
            }
        }
    }
}

async fn register<A: Applier>(
    t: &EtcdTarget,
    client: &mut Client,
    node: u32,
    lease: i64,
    applier: &mut A,
    reg: &mut Registration,
) -> Result<(), FleetError> {
    applier.report(reg);
    reg.updated_ms = unix_ms();
    let value = serde_json::to_string(reg).expect("a registration serialises");
    t.call(client.put(
        t.names.node_key(node),
        value,
        Some(PutOptions::new().with_lease(lease)),
    ))
    .await?;
    Ok(())
}

/// What `shake fleet push` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The new revision: every node's config_version once applied.
    pub revision: i64,
    /// The revision it replaced (0 if the key was new).
    pub previous: i64,
    pub pushed_ms: u64,
}

/// The live key as it is now: its revision (0 if absent) and text.
pub async fn current(t: &EtcdTarget) -> Result<(i64, Option<String>), FleetError> {
    let mut client = t.connect().await?;
    let got = t.call(client.get(t.live_key(), None)).await?;
    Ok(match got.kvs().first() {
        Some(kv) => (
            kv.mod_revision(),
            Some(kv.value_str().map_err(|e| t.error(e))?.to_string()),
        ),
        None => (0, None),
    })
}

/// Publishes `text` (already validated by the caller) as the live config, only if the key is
/// still at revision `expect` (0: absent): a push based on a config someone else has since
/// replaced is refused, never silently overwritten.
pub async fn push(t: &EtcdTarget, text: &str, expect: i64) -> Result<Pushed, FleetError> {
    let mut client = t.connect().await?;
    let key = t.live_key();
    let pushed_ms = unix_ms();
    let txn = Txn::new()
        .when([Compare::mod_revision(
            key.as_str(),
            CompareOp::Equal,
            expect,
        )])
        .and_then([
            TxnOp::put(key.as_str(), text, None),
            TxnOp::put(t.pushed_key(), pushed_ms.to_string(), None),
        ]);
    let r = t.call(client.txn(txn)).await?;
    if !r.succeeded() {
        let (now, _) = current(t).await?;
        return Err(FleetError::Refused(format!(
            "{key} is at revision {now}, not {expect}: someone pushed since; read it again \
             (`shake fleet status`) and push on top of it"
        )));
    }
    let revision = r.header().map(|h| h.revision()).unwrap_or(0);
    Ok(Pushed {
        revision,
        previous: expect,
        pushed_ms,
    })
}

/// The fleet as etcd sees it.
#[derive(Debug, Clone, Default)]
pub struct FleetStatus {
    /// The live key's revision (0 if nothing was pushed) and when it was pushed.
    pub revision: i64,
    pub pushed_ms: Option<u64>,
    /// Registered nodes, by node index.
    pub nodes: Vec<Registration>,
    /// Entries that are not registrations (named by key), e.g. a value another tool wrote.
    pub unreadable: Vec<String>,
}

impl FleetStatus {
    /// Indices below `count` with no registration.
    pub fn missing(&self, count: u32) -> Vec<u32> {
        (0..count)
            .filter(|i| !self.nodes.iter().any(|n| n.node == *i))
            .collect()
    }
}

/// Reads the live key and every registration.
pub async fn status(t: &EtcdTarget) -> Result<FleetStatus, FleetError> {
    let mut client = t.connect().await?;
    let live = t.call(client.get(t.live_key(), None)).await?;
    let pushed = t.call(client.get(t.pushed_key(), None)).await?;
    let regs = t
        .call(client.get(
            t.names.nodes_prefix(),
            Some(GetOptions::new().with_prefix()),
        ))
        .await?;
    let mut st = FleetStatus {
        revision: live.kvs().first().map(|kv| kv.mod_revision()).unwrap_or(0),
        pushed_ms: pushed
            .kvs()
            .first()
            .and_then(|kv| kv.value_str().ok()?.parse().ok()),
        ..Default::default()
    };
    for kv in regs.kvs() {
        match serde_json::from_slice::<Registration>(kv.value()) {
            Ok(r) => st.nodes.push(r),
            Err(e) => st
                .unreadable
                .push(format!("{}: {e}", String::from_utf8_lossy(kv.key()))),
        }
    }
    st.nodes.sort_by_key(|r| r.node);
    Ok(st)
}

/// A node's control plane on its own thread (a current-thread tokio runtime), beside the
/// node's control loop and never on a worker.
pub struct ControlPlane {
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ControlPlane {
    pub fn start<A: Applier>(
        target: EtcdTarget,
        node: u32,
        applier: A,
        counters: Arc<ControlCounters>,
    ) -> std::io::Result<ControlPlane> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        counters.fleet.store(true, Relaxed);
        counters.fleet_out_of_sync_ms.store(unix_ms(), Relaxed);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("shake-fleet".into())
            .spawn(move || runtime.block_on(run(target, node, applier, counters, stopped)))?;
        Ok(ControlPlane {
            stop,
            thread: Some(thread),
        })
    }

    /// Leaves the registry (the lease is revoked) and ends the thread.
    pub fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applies any text but "bad".
    struct Fake {
        version: i64,
        applied: Vec<i64>,
    }

    impl Applier for Fake {
        fn applied(&self) -> i64 {
            self.version
        }
        fn apply(&mut self, revision: i64, text: &str) -> Result<(), String> {
            if text == "bad" {
                return Err("bad document".into());
            }
            self.version = revision;
            self.applied.push(revision);
            Ok(())
        }
        fn report(&mut self, reg: &mut Registration) {
            reg.revision = self.version;
        }
    }

    #[test]
    fn revisions_apply_in_order_only_upwards_and_refusals_are_counted() {
        let c = ControlCounters::default();
        let mut reg = Registration::default();
        let mut a = Fake {
            version: 10,
            applied: vec![],
        };
        // The revision in force, seen again after a reconnect: nothing happens.
        offer(&mut a, &c, &mut reg, 10, Ok("x"));
        assert!(a.applied.is_empty() && reg.refused.is_none());
        // An older one is refused (said once) and never applied.
        offer(&mut a, &c, &mut reg, 7, Ok("x"));
        offer(&mut a, &c, &mut reg, 8, Ok("x"));
        assert!(a.applied.is_empty());
        assert_eq!(c.reloads_refused.load(Relaxed), 1);
        assert!(reg
            .refused
            .as_deref()
            .unwrap()
            .contains("revision 7 is below"));
        // A newer valid one applies; an invalid one after it is refused, the node keeps 12.
        offer(&mut a, &c, &mut reg, 12, Ok("x"));
        assert_eq!(a.applied, [12]);
        assert!(reg.refused.is_none());
        offer(&mut a, &c, &mut reg, 13, Ok("bad"));
        assert_eq!(a.version, 12);
        assert_eq!(c.reloads_refused.load(Relaxed), 2);
        assert_eq!(reg.refused.as_deref(), Some("revision 13: bad document"));
        assert_eq!((reg.seen, c.fleet_seen.load(Relaxed)), (13, 13));
    }
}
