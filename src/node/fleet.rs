//! A node in a fleet: live config from etcd, applied as SIGHUP's reload is.
//!
//! The control plane ([`crate::fleet::etcd`]) runs on its own thread and calls the
//! [`NodeApplier`] with each new revision of the activity's live document. The applier
//! checks it exactly as a reload is checked (the same sponsors and rounds as the seeds, the
//! throttle, the keys), builds the snapshot with `config_version` = the etcd revision, makes
//! it durable beside the journals (the document in [`CACHE_FILE`], then the version), and
//! only then hands it to every worker, which takes it between bursts. A restarted node, even
//! with etcd away, serves the last revision it applied, under the same version.
//!
//! Without the `fleet` feature there is no etcd client: `refuse_without_engines` turns a
//! config that names etcd away when the node loads, before anything starts, rather than let
//! it serve on its own file while its operator thinks it follows the fleet.

use std::path::PathBuf;
use std::sync::Arc;

use crossbeam::channel::Sender;

use super::{version_path, Node, NodeError};
use crate::activity::Activity;
use crate::control::Stats;
use crate::engine::config::Live;
use crate::node_config::NodeConfig;
#[cfg(feature = "fleet")]
use {
    super::{write_durably, write_version},
    crate::fleet::etcd::{Applier, EtcdTarget, Registration},
    crate::fleet::Names,
    crate::time::unix_ms,
    std::sync::atomic::Ordering::Relaxed,
    std::time::Instant,
};

#[cfg(feature = "fleet")]
pub(super) use crate::fleet::etcd::ControlPlane;

/// Without the `fleet` feature no node has a control plane ([`Node::load`] refused every
/// config that would start one): the type is empty.
#[cfg(not(feature = "fleet"))]
pub(super) enum ControlPlane {}

#[cfg(not(feature = "fleet"))]
impl ControlPlane {
    pub(super) fn stop(self) {
        match self {}
    }
}

/// The last live document a node applied, beside its journals and `config_version`.
pub const CACHE_FILE: &str = "fleet-live.toml";

/// Where a node keeps the live document it applied last (with a journal directory).
pub(super) fn cache_path(config: &NodeConfig) -> Option<PathBuf> {
    Some(version_path(config)?.with_file_name(CACHE_FILE))
}

/// The node's config names etcd endpoints.
pub(super) fn in_fleet(config: &NodeConfig) -> bool {
    config.fleet.as_ref().is_some_and(|f| !f.etcd.is_empty())
}

/// A fleet node needs the engines' clients: a build without them (`built_with_engines`,
/// `cfg!(feature = "fleet")` but for the tests) refuses a config that names etcd, at its
/// `fleet.etcd` line. A `[fleet]` without etcd (a node on its own whose journals `shake ship`
/// ships, from a build with the feature) is no fleet node and is served.
pub(super) fn refuse_without_engines(
    config: &NodeConfig,
    built_with_engines: bool,
) -> Result<(), NodeError> {
    if built_with_engines || !in_fleet(config) {
        return Ok(());
    }
    Err(config
        .at(
            "fleet.etcd",
            "this node takes its live config from etcd, but this shake was built without the \
             `fleet` feature (no etcd client): build it with the default features"
                .into(),
        )
        .into())
}

/// Applies revisions to a running node's workers.
#[cfg(feature = "fleet")]
pub struct NodeApplier {
    config: NodeConfig,
    /// The activity the seeds were made for: every revision must have its sponsors and rounds.
    seeds_activity: Activity,
    start_s: u64,
    key: String,
    version: u32,
    applied_ms: u64,
    workers: Vec<Sender<Arc<Live>>>,
    stats: Stats,
    addr: String,
    serving: String,
    metrics: Option<String>,
    last: (Instant, u64),
}

#[cfg(feature = "fleet")]
impl NodeApplier {
    fn apply_checked(&mut self, revision: i64, text: &str) -> Result<(), String> {
        let version = u32::try_from(revision).map_err(|_| {
            format!("revision {revision} does not fit config_version (32 bits): compact etcd's history into a new cluster")
        })?;
        let source = PathBuf::from(format!("etcd {}@{revision}", self.key));
        let activity = Activity::parse(&source, text).map_err(|e| e.to_string())?;
        activity
            .check_same_ids(&self.seeds_activity)
            .map_err(|e| e.to_string())?;
        let live = self
            .config
            .live_versioned(&activity, self.start_s, version)
            .map_err(|e| e.to_string())?;
        // Durable before any worker answers with the new version.
        if let Some(cache) = cache_path(&self.config) {
            write_durably(&cache, text.as_bytes())
                .map_err(|e| format!("{}: {e}", cache.display()))?;
            write_version(&cache.with_file_name(super::VERSION_FILE), version)
                .map_err(|e| e.to_string())?;
        }
        for (i, tx) in self.workers.iter().enumerate() {
            if tx.try_send(live.clone()).is_err() {
                eprintln!("shake: worker {i} has not taken earlier reloads; it keeps its config");
            }
        }
        self.version = version;
        self.applied_ms = unix_ms();
        let c = &self.stats.control;
        c.reloads.fetch_add(1, Relaxed);
        c.config_version.store(version as u64, Relaxed);
        println!("shake: applied fleet revision {revision}, config_version {version}");
        Ok(())
    }
}

#[cfg(feature = "fleet")]
impl Applier for NodeApplier {
    fn applied(&self) -> i64 {
        self.version as i64
    }

    fn apply(&mut self, revision: i64, text: &str) -> Result<(), String> {
        self.apply_checked(revision, text)
    }

    fn report(&mut self, reg: &mut Registration) {
        let total = self.stats.total();
        let answers = total.answered();
        let (at, before) = self.last;
        let secs = at.elapsed().as_secs_f64();
        if secs > 0.0 {
            reg.answer_rate = answers.saturating_sub(before) as f64 / secs;
        }
        self.last = (Instant::now(), answers);
        reg.count = self.config.node.count;
        reg.addr = self.addr.clone();
        reg.serving = self.serving.clone();
        reg.metrics = self.metrics.clone();
        reg.ship_metrics = self
            .config
            .fleet
            .as_ref()
            .and_then(|f| f.ship_metrics)
            .map(|a| a.to_string());
        reg.revision = self.version as i64;
        reg.applied_ms = self.applied_ms;
        reg.answers = answers;
        reg.red_packets = total.outcome(crate::wire::shake::Outcome::RedPacket);
    }
}

/// Starts the node's control plane if its config names etcd; `None` for a node on its own.
#[cfg(feature = "fleet")]
pub(super) fn start(
    node: &Node,
    workers: &[Sender<Arc<Live>>],
    stats: &Stats,
    serving: String,
    metrics: Option<std::net::SocketAddr>,
) -> Result<Option<ControlPlane>, NodeError> {
    let Some(fleet) = node
        .config
        .fleet
        .as_ref()
        .filter(|_| in_fleet(&node.config))
    else {
        return Ok(None);
    };
    let names = Names::of(fleet);
    let target = EtcdTarget {
        endpoints: fleet.etcd.clone(),
        names: names.clone(),
        activity: node.activity.header.id,
    };
    // The advertised address, else the one the node serves on (a socket node may have let
    // the kernel pick its port), else its config's.
    let served = serving
        .strip_prefix("udp ")
        .and_then(|s| s.split_whitespace().next()?.parse().ok());
    let addr = fleet.advertise.or(served).unwrap_or_else(|| {
        std::net::SocketAddr::from((node.config.node.ipv4, node.config.node.port))
    });
    let applier = NodeApplier {
        config: node.config.clone(),
        seeds_activity: node.activity.clone(),
        start_s: node.start_s,
        key: names.live_key(node.activity.header.id),
        version: node.live.config_version,
        applied_ms: 0,
        workers: workers.to_vec(),
        stats: stats.clone(),
        addr: addr.to_string(),
        serving,
        metrics: metrics.map(|m| m.to_string()),
        last: (Instant::now(), 0),
    };
    ControlPlane::start(
        target,
        node.config.node.index,
        applier,
        stats.control.clone(),
    )
    .map(Some)
    .map_err(|e| NodeError::State(format!("starting the fleet control plane: {e}")))
}

/// No control plane without the feature; a fleet node never gets this far (see
/// [`refuse_without_engines`]), but if it did it is refused here too, not served on its own.
#[cfg(not(feature = "fleet"))]
pub(super) fn start(
    node: &Node,
    _workers: &[Sender<Arc<Live>>],
    _stats: &Stats,
    _serving: String,
    _metrics: Option<std::net::SocketAddr>,
) -> Result<Option<ControlPlane>, NodeError> {
    refuse_without_engines(&node.config, false).map(|()| None)
}

/// The live snapshot a fleet node starts on: the document it applied last (if it kept one)
/// at the version it had, else its own activity file at the version it had (0 at the first
/// start): etcd's revision replaces it as soon as the control plane reads the key.
pub(super) fn starting_live(
    config: &NodeConfig,
    activity: &Activity,
    start_s: u64,
    version: u32,
) -> Result<Arc<Live>, NodeError> {
    let cached = match cache_path(config) {
        Some(p) if p.exists() => {
            let text = std::fs::read_to_string(&p)
                .map_err(|e| NodeError::State(format!("{}: {e}", p.display())))?;
            let a = Activity::parse(&p, &text).map_err(crate::node_config::ConfigError::from)?;
            a.check_same_ids(activity)
                .map_err(crate::node_config::ConfigError::from)?;
            Some(a)
        }
        _ => None,
    };
    Ok(config.live_versioned(cached.as_ref().unwrap_or(activity), start_s, version)?)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const NODE: &str = "[node]\nindex = 0\ncount = 1\nipv4 = \"10.0.0.2\"\n\n\
        [activity]\nfile = \"a.toml\"\n\n[keys]\ntoken_key = \"t.key\"\nclaim_key = \"c.key\"\n";

    #[test]
    fn a_build_without_engines_refuses_a_fleet_node_at_its_etcd_line() {
        let path = Path::new("/etc/shake/node.toml");
        let fleet =
            format!("{NODE}\n[fleet]\nname = \"gala\"\netcd = [\"http://127.0.0.1:2379\"]\n");
        let c = NodeConfig::parse(path, &fleet).unwrap();
        assert!(refuse_without_engines(&c, true).is_ok());
        let e = refuse_without_engines(&c, false).unwrap_err().to_string();
        assert!(
            e.starts_with("/etc/shake/node.toml:15: fleet.etcd: ") && e.contains("`fleet` feature"),
            "{e}"
        );
        // No etcd: a node on its own, served by either build.
        for text in [
            NODE.to_string(),
            format!("{NODE}\n[fleet]\nname = \"gala\"\nnats = \"nats://127.0.0.1:4222\"\n"),
        ] {
            let c = NodeConfig::parse(path, &text).unwrap();
            assert!(refuse_without_engines(&c, false).is_ok());
        }
    }
}
