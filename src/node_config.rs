//! The node's config file (TOML), as an operator of a bare-metal node edits it.
//!
//! One file per node: identity, the activity and its seeds, keys, throttling, blacklist,
//! stats, and the I/O backends (`[socket]`, `[dpdk]` with its `[[port]]`s). Relative paths
//! are relative to the config file, so a node's directory can be moved as a whole. Errors name
//! the file, the line and the key (`keys.token_key`, `port[1].rx_desc`), also those found
//! after parsing, in the files the config names: the config keeps its text for that.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hashbrown::HashSet;
use serde::Deserialize;

use crate::activity::locate::Places;
use crate::activity::{Activity, MAX_TIME_S};
use crate::engine::config::{next_config_version, Identity, Live, Throttle};
use crate::mac::MacKey;

mod dpdk_section;
pub use dpdk_section::{af_xdp_arg, capture_conflict, is_af_xdp, DpdkSection, PortSection, AF_XDP};

/// An error in a node's configuration. Every message says everything itself, once: none
/// has a `source()` that a chained report would print a second time.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Something at a key of the config, or of a file a key names (the key file, the
    /// blacklist): that file, its line, and the config's key.
    #[error("{file}:{line}: {key}: {message}")]
    At {
        file: String,
        line: usize,
        key: String,
        message: String,
    },
    /// The config file itself cannot be read.
    #[error("{file}: cannot read: {error}")]
    Read { file: String, error: std::io::Error },
    /// An error in the activity file, which names its own file, line and key.
    #[error(transparent)]
    Activity(#[from] crate::activity::ActivityError),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// This node's index, 0-based; users with `user_id mod count == index` are ours.
    pub index: u32,
    pub count: u32,
    /// The IPv4 address the node answers for (ARP, ICMP, SHAKE/1).
    pub ipv4: Ipv4Addr,
    /// The node's global IPv6 address (SHAKE/1, Neighbor Solicitations, ICMPv6 echo); absent:
    /// the node serves IPv4 only and drops IPv6 frames as not for it.
    #[serde(default)]
    pub ipv6: Option<Ipv6Addr>,
    /// The node's link-local address (fe80::/10), answered for NDP and echo; by default each
    /// DPDK port's own, derived from its MAC (modified EUI-64, RFC 4291 appendix A).
    #[serde(default)]
    pub link_local: Option<Ipv6Addr>,
    /// The node's MAC address for ARP replies; DPDK ports use their own.
    #[serde(default)]
    pub mac: Option<String>,
    #[serde(default = "default_port")]
    pub port: u16,
    /// Planned users of the whole node; each worker's table gets its share.
    #[serde(default = "default_users")]
    pub planned_users: u64,
}

fn default_port() -> u16 {
    7000
}
fn default_users() -> u64 {
    1_000_000
}

pub use crate::activity::MAX_CALIBRATION_MS;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivitySection {
    pub file: PathBuf,
    /// Overrides the activity's epoch: unix seconds, or "now" (the node's start).
    #[serde(default)]
    pub epoch: Option<Epoch>,
    #[serde(default)]
    pub calibration_ms: i64,
    /// Directory of this node's shards from `shake seedgen`; absent: seeds are planned in
    /// memory from the activity (nothing survives a restart).
    #[serde(default)]
    pub seeds: Option<PathBuf>,
    /// Directory of this node's claim journals.
    #[serde(default)]
    pub journal: Option<PathBuf>,
    /// Seed of seed planning (in-memory seeds) and of the draw generators.
    #[serde(default = "default_random_seed")]
    pub random_seed: u64,
}

fn default_random_seed() -> u64 {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Epoch {
    Unix(u64),
    Named(EpochName),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochName {
    Now,
}

/// By hand rather than `#[serde(untagged)]`, whose error ("data did not match any variant")
/// does not say what would.
impl<'de> Deserialize<'de> for Epoch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        const EXPECTED: &str = "unix seconds or \"now\"";
        impl serde::de::Visitor<'_> for V {
            type Value = Epoch;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(EXPECTED)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Epoch, E> {
                u64::try_from(v)
                    .map(Epoch::Unix)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &EXPECTED))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Epoch, E> {
                Ok(Epoch::Unix(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Epoch, E> {
                match v {
                    "now" => Ok(Epoch::Named(EpochName::Now)),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &EXPECTED)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysSection {
    /// Files of 32 hex digits.
    pub token_key: PathBuf,
    pub claim_key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleSection {
    #[serde(default = "floor")]
    pub floor_ms: u32,
    #[serde(default = "ceiling")]
    pub ceiling_ms: u32,
    #[serde(default = "closed_cap")]
    pub closed_cap_ms: u32,
    #[serde(default)]
    pub worker_capacity_rps: u32,
}

fn floor() -> u32 {
    Throttle::default().floor_ms
}
fn ceiling() -> u32 {
    Throttle::default().ceiling_ms
}
fn closed_cap() -> u32 {
    Throttle::default().closed_cap_ms
}

impl Default for ThrottleSection {
    fn default() -> Self {
        ThrottleSection {
            floor_ms: floor(),
            ceiling_ms: ceiling(),
            closed_cap_ms: closed_cap(),
            worker_capacity_rps: 0,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlacklistSection {
    #[serde(default)]
    pub users: Vec<u64>,
    /// One user id per line; `#` starts a comment.
    #[serde(default)]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsSection {
    /// Seconds between counter lines; 0 for none.
    #[serde(default = "one")]
    pub interval_s: u64,
    /// Address of the Prometheus text endpoint, e.g. "127.0.0.1:9100".
    #[serde(default)]
    pub prometheus: Option<SocketAddr>,
}

fn one() -> u64 {
    1
}

impl Default for StatsSection {
    fn default() -> Self {
        StatsSection {
            interval_s: 1,
            prometheus: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SocketSection {
    /// Address to bind; defaults to node.ipv4:node.port.
    #[serde(default)]
    pub bind: Option<SocketAddr>,
    /// IPv6 address to bind, with `node.ipv6` only; defaults to [node.ipv6]:node.port. Set
    /// it where the node's IPv6 traffic reaches the host at another address (a test on
    /// `[::1]:0`).
    #[serde(default)]
    pub bind6: Option<SocketAddr>,
    /// Worker threads, each with its own SO_REUSEPORT socket.
    #[serde(default = "one_u32")]
    pub workers: u32,
    /// Datagrams per recvmmsg/sendmmsg.
    #[serde(default = "batch")]
    pub batch: u32,
}

fn one_u32() -> u32 {
    1
}
fn batch() -> u32 {
    32
}

impl Default for SocketSection {
    fn default() -> Self {
        SocketSection {
            bind: None,
            bind6: None,
            workers: 1,
            batch: batch(),
        }
    }
}

/// `[fleet]`: the engines a node of a fleet uses. Absent: a node on its own, configured by
/// its files and SIGHUP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSection {
    /// The event's name: every etcd key is under `/shake/<name>/` and every NATS subject
    /// under `shake.<name>.`, so two events (or a rehearsal) can share the engines.
    pub name: String,
    /// etcd client URLs (`http://host:2379`); the live config and the node registry.
    #[serde(default)]
    pub etcd: Vec<String>,
    /// NATS server URL (`nats://host:4222`) of the JetStream fund flow.
    #[serde(default)]
    pub nats: Option<String>,
    /// The address phones use for this node, as registered; defaults to `node.ipv4:node.port`.
    #[serde(default)]
    pub advertise: Option<SocketAddr>,
    /// The claim shipper's metrics endpoint (`shake ship`), e.g. "127.0.0.1:9101".
    #[serde(default)]
    pub ship_metrics: Option<SocketAddr>,
}

/// Largest event name: it is a NATS subject token and an etcd path segment.
pub const MAX_FLEET_NAME: usize = 64;

impl FleetSection {
    /// `None` when the name can be a NATS subject token and an etcd key segment.
    fn name_problem(&self) -> Option<String> {
        let ok = !self.name.is_empty()
            && self.name.len() <= MAX_FLEET_NAME
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        (!ok).then(|| {
            format!(
                "{:?}: 1 to {MAX_FLEET_NAME} letters, digits, '-' or '_' (it names NATS subjects and etcd keys)",
                self.name
            )
        })
    }
}

/// A whole node config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub node: NodeSection,
    pub activity: ActivitySection,
    pub keys: KeysSection,
    #[serde(default)]
    pub throttle: ThrottleSection,
    #[serde(default)]
    pub blacklist: BlacklistSection,
    #[serde(default)]
    pub stats: StatsSection,
    #[serde(default)]
    pub socket: SocketSection,
    /// DPDK settings (EAL arguments, workers), read by the DPDK layer.
    #[serde(default)]
    pub dpdk: Option<DpdkSection>,
    /// The DPDK ports, `[[port]]` tables.
    #[serde(default)]
    pub port: Vec<PortSection>,
    /// The fleet's engines; absent for a node on its own.
    #[serde(default)]
    pub fleet: Option<FleetSection>,
    /// Where the file was read from.
    #[serde(skip)]
    pub path: PathBuf,
    /// The file's text, to name the line of a key in errors found after parsing.
    #[serde(skip)]
    text: String,
}

impl NodeConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            file: path.display().to_string(),
            error,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let places = Places::new(text);
        let mut c: NodeConfig = toml::from_str(text).map_err(|e| {
            let (line, key, message) = places.toml_error(&e);
            ConfigError::At {
                file: file.clone(),
                line,
                key,
                message,
            }
        })?;
        c.path = path.to_path_buf();
        c.text = text.to_string();
        let at = |key: &str, message: String| c.at(key, message);
        if c.node.count == 0 {
            return Err(at("node.count", "must be at least 1".into()));
        }
        if c.node.index >= c.node.count {
            return Err(at(
                "node.index",
                format!("{} must be below node.count {}", c.node.index, c.node.count),
            ));
        }
        let t = &c.throttle;
        if t.floor_ms == 0 {
            return Err(at("throttle.floor_ms", "must be at least 1".into()));
        }
        if t.floor_ms > t.ceiling_ms {
            return Err(at(
                "throttle.floor_ms",
                format!("{} is above ceiling_ms {}", t.floor_ms, t.ceiling_ms),
            ));
        }
        if c.socket.workers == 0 {
            return Err(at("socket.workers", "must be at least 1".into()));
        }
        if c.socket.batch == 0 || c.socket.batch > 1024 {
            return Err(at(
                "socket.batch",
                format!("must be 1..=1024, found {}", c.socket.batch),
            ));
        }
        if let Some(Epoch::Unix(s)) = c.activity.epoch {
            if s > MAX_TIME_S {
                return Err(at(
                    "activity.epoch",
                    format!("must be at most {MAX_TIME_S} (unix seconds), found {s}"),
                ));
            }
        }
        if c.activity.calibration_ms.unsigned_abs() > MAX_CALIBRATION_MS {
            return Err(at(
                "activity.calibration_ms",
                format!(
                    "must be within ±{MAX_CALIBRATION_MS} (a day), found {}",
                    c.activity.calibration_ms
                ),
            ));
        }
        if let Some(m) = &c.node.mac {
            if parse_mac(m).is_none() {
                return Err(at(
                    "node.mac",
                    format!("{m:?} is not six hex bytes like 02:00:00:00:00:01"),
                ));
            }
        }
        if let Some(a) = c.node.ipv6 {
            if let Some(why) = crate::wire::ipv6::not_a_node_address(a.octets()) {
                return Err(at(
                    "node.ipv6",
                    format!("{a} is {why}, not a global address"),
                ));
            }
        }
        if let Some(a) = c.node.link_local {
            if c.node.ipv6.is_none() {
                return Err(at(
                    "node.link_local",
                    "needs node.ipv6: the node serves IPv6 only with a global address".into(),
                ));
            }
            if !crate::wire::ipv6::is_link_local(a.octets()) || a.octets()[8..] == [0; 8] {
                return Err(at(
                    "node.link_local",
                    format!("{a} is not a link-local unicast address (fe80::/10)"),
                ));
            }
        }
        if let Some(a) = c.socket.bind6 {
            if !a.is_ipv6() {
                return Err(at(
                    "socket.bind6",
                    format!("{a} is not an IPv6 address like \"[2001:db8::1]:7000\""),
                ));
            }
            if c.node.ipv6.is_none() {
                return Err(at(
                    "socket.bind6",
                    "needs node.ipv6: the node serves IPv6 only with a global address".into(),
                ));
            }
        }
        if let Some(d) = &c.dpdk {
            d.validate(&c.port).map_err(|e| at(&e.key, e.message))?;
        }
        if let Some(f) = &c.fleet {
            if let Some(m) = f.name_problem() {
                return Err(at("fleet.name", m));
            }
            if let Some(u) = f.etcd.iter().find(|u| !u.starts_with("http://")) {
                return Err(at(
                    "fleet.etcd",
                    format!("{u:?}: etcd client URLs look like \"http://127.0.0.1:2379\""),
                ));
            }
            if let Some(u) = f.nats.as_ref().filter(|u| !u.starts_with("nats://")) {
                return Err(at(
                    "fleet.nats",
                    format!("{u:?}: a NATS URL looks like \"nats://127.0.0.1:4222\""),
                ));
            }
        }
        Ok(c)
    }

    /// An error at a key of this file: at its line, or where it belongs if it is absent.
    pub(crate) fn at(&self, key: &str, message: String) -> ConfigError {
        ConfigError::At {
            file: self.path.display().to_string(),
            line: Places::new(&self.text).line_of_key(key),
            key: key.to_string(),
            message,
        }
    }

    /// A path from the file, resolved against the file's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.path.parent().unwrap_or(Path::new(".")).join(p)
        }
    }

    /// Reads the activity. A file that cannot be read is named with the key that names it;
    /// errors inside it name the activity file.
    pub fn activity(&self) -> Result<Activity, ConfigError> {
        let path = self.resolve(&self.activity.file);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            self.at(
                "activity.file",
                format!("{}: cannot read: {e}", path.display()),
            )
        })?;
        Ok(Activity::parse(&path, &text)?)
    }

    /// The node's identity with both keys read; a key file's error names the key too.
    pub fn identity(&self) -> Result<Identity, ConfigError> {
        let key = |name: &str, file: &Path| {
            MacKey::load(&self.resolve(file))
                .map_err(|e| self.at(&format!("keys.{name}"), e.to_string()))
        };
        Ok(Identity {
            node_index: self.node.index,
            node_count: self.node.count,
            token_key: key("token_key", &self.keys.token_key)?,
            claim_key: key("claim_key", &self.keys.claim_key)?,
        })
    }

    pub fn throttle(&self) -> Throttle {
        let t = &self.throttle;
        Throttle {
            floor_ms: t.floor_ms,
            ceiling_ms: t.ceiling_ms,
            closed_cap_ms: t.closed_cap_ms,
            worker_capacity_rps: t.worker_capacity_rps,
        }
    }

    pub fn blacklist(&self) -> Result<HashSet<u64>, ConfigError> {
        let mut set: HashSet<u64> = self.blacklist.users.iter().copied().collect();
        if let Some(f) = &self.blacklist.file {
            let path = self.resolve(f);
            let file = path.display().to_string();
            let text = std::fs::read_to_string(&path)
                .map_err(|e| self.at("blacklist.file", format!("{file}: cannot read: {e}")))?;
            for (i, line) in text.lines().enumerate() {
                let line = line.split('#').next().unwrap_or("").trim();
                if line.is_empty() {
                    continue;
                }
                // The blacklist file's own line; the key is the config's that names it.
                let id = line.parse::<u64>().map_err(|_| ConfigError::At {
                    file: file.clone(),
                    line: i + 1,
                    key: "blacklist.file".into(),
                    message: format!("{line:?} is not a user id"),
                })?;
                set.insert(id);
            }
        }
        Ok(set)
    }

    /// The activity epoch in unix seconds, given the node's start time.
    pub fn epoch_s(&self, start_s: u64) -> Option<u64> {
        match self.activity.epoch {
            None => None,
            Some(Epoch::Unix(s)) => Some(s),
            Some(Epoch::Named(EpochName::Now)) => Some(start_s),
        }
    }

    /// Builds the workers' snapshot, with a version above `previous_version` (from the clock).
    pub fn live(
        &self,
        activity: &Activity,
        start_s: u64,
        previous_version: u32,
        now_s: u64,
    ) -> Result<Arc<Live>, ConfigError> {
        let version = next_config_version(previous_version, now_s);
        self.live_versioned(activity, start_s, version)
    }

    /// Builds the workers' snapshot with the given version (a fleet's etcd revision). The
    /// activity's `[live]` table takes precedence over this config's calibration and
    /// throttle; its blacklist adds to this config's.
    pub fn live_versioned(
        &self,
        activity: &Activity,
        start_s: u64,
        version: u32,
    ) -> Result<Arc<Live>, ConfigError> {
        let over = &activity.live;
        let mut blacklist = self.blacklist()?;
        blacklist.extend(over.blacklist.iter().copied());
        Ok(Live::new(
            activity,
            self.identity()?,
            self.throttle_with(activity)?,
            self.epoch_s(start_s),
            over.calibration_ms.unwrap_or(self.activity.calibration_ms),
            blacklist,
            version,
        ))
    }

    /// This config's throttle with the activity's `[live.throttle]` keys over it, checked as
    /// `[throttle]` is (an error names the activity's key).
    fn throttle_with(&self, activity: &Activity) -> Result<Throttle, ConfigError> {
        let o = activity.live.throttle;
        let mut t = self.throttle();
        t.floor_ms = o.floor_ms.unwrap_or(t.floor_ms);
        t.ceiling_ms = o.ceiling_ms.unwrap_or(t.ceiling_ms);
        t.closed_cap_ms = o.closed_cap_ms.unwrap_or(t.closed_cap_ms);
        t.worker_capacity_rps = o.worker_capacity_rps.unwrap_or(t.worker_capacity_rps);
        if o == Default::default() {
            return Ok(t);
        }
        if t.floor_ms == 0 {
            return Err(activity
                .live_floor_error("must be at least 1".into())
                .into());
        }
        if t.floor_ms > t.ceiling_ms {
            return Err(activity
                .live_floor_error(format!(
                    "{} is above ceiling_ms {} (with the node's [throttle])",
                    t.floor_ms, t.ceiling_ms
                ))
                .into());
        }
        Ok(t)
    }

    pub fn socket_bind(&self) -> SocketAddr {
        self.socket
            .bind
            .unwrap_or(SocketAddr::from((self.node.ipv4, self.node.port)))
    }

    /// Where the socket backend binds its IPv6 sockets: `None` without `node.ipv6`.
    pub fn socket_bind6(&self) -> Option<SocketAddr> {
        let ipv6 = self.node.ipv6?;
        Some(
            self.socket
                .bind6
                .unwrap_or(SocketAddr::from((ipv6, self.node.port))),
        )
    }
}

/// "02:00:00:00:00:01" to bytes.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split([':', '-']);
    for b in out.iter_mut() {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

#[cfg(test)]
mod test {
    use super::*;

    const GOOD: &str = r#"
[node]
index = 1
count = 4
ipv4 = "10.0.0.2"

[activity]
file = "../seeds/demo.toml"
epoch = "now"

[keys]
token_key = "token.key"
claim_key = "claim.key"

[blacklist]
users = [5, 6]
"#;

    #[test]
    fn parses_with_defaults_and_resolves_paths() {
        let c = NodeConfig::parse(Path::new("/etc/shake/node.toml"), GOOD).unwrap();
        assert_eq!(c.node.port, 7000);
        assert_eq!(c.throttle().floor_ms, 5000);
        assert_eq!(c.epoch_s(123), Some(123));
        assert_eq!(
            c.resolve(&c.keys.token_key),
            PathBuf::from("/etc/shake/token.key")
        );
        assert_eq!(c.socket_bind().to_string(), "10.0.0.2:7000");
        assert_eq!(c.blacklist().unwrap().len(), 2);
    }

    #[test]
    fn ipv6_sockets_bind_at_node_ipv6_unless_bind6_says() {
        let c = NodeConfig::parse(Path::new("n.toml"), GOOD).unwrap();
        assert_eq!(c.socket_bind6(), None, "no node.ipv6: IPv4 only");
        let v6 = GOOD.replace(
            "ipv4 = \"10.0.0.2\"",
            "ipv4 = \"10.0.0.2\"\nipv6 = \"2001:db8::2\"",
        );
        let c = NodeConfig::parse(Path::new("n.toml"), &v6).unwrap();
        assert_eq!(c.socket_bind6().unwrap().to_string(), "[2001:db8::2]:7000");
        assert_eq!(c.socket_bind().to_string(), "10.0.0.2:7000");
        let c = NodeConfig::parse(
            Path::new("n.toml"),
            &format!("{v6}\n[socket]\nbind6 = \"[::1]:0\"\n"),
        )
        .unwrap();
        assert_eq!(c.socket_bind6().unwrap().to_string(), "[::1]:0");
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = NodeConfig::parse(Path::new("n.toml"), &GOOD.replace("index = 1", "index = 4"))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "n.toml:3: node.index: 4 must be below node.count 4"
        );
        let e = NodeConfig::parse(
            Path::new("n.toml"),
            &GOOD.replace("ipv4 = \"10.0.0.2\"", "ipv4 = \"10.0.0\""),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("n.toml:5: node.ipv4: "), "{e}");
        let e = NodeConfig::parse(
            Path::new("n.toml"),
            &GOOD.replace("epoch = \"now\"", "epoch = \"soon\""),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "n.toml:9: activity.epoch: invalid value: string \"soon\", expected unix seconds or \"now\""
        );
        let e =
            NodeConfig::parse(Path::new("n.toml"), "[node]\nindex = 0\ncount = \"1\n").unwrap_err();
        assert!(e.to_string().starts_with("n.toml:3: node.count: "), "{e}");
        let e =
            NodeConfig::parse(Path::new("n.toml"), &GOOD.replace("[keys]", "[keyz]")).unwrap_err();
        assert!(
            e.to_string().starts_with("n.toml:11: keyz: unknown field"),
            "{e}"
        );
        let e = NodeConfig::parse(Path::new("n.toml"), &GOOD[..GOOD.find("[keys]").unwrap()])
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "n.toml:1: keys: missing: the key is required"
        );
        // The same when the file starts with a table: the key is not the table's.
        let e = NodeConfig::parse(Path::new("n.toml"), &GOOD[1..GOOD.find("[keys]").unwrap()])
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "n.toml:1: keys: missing: the key is required"
        );
    }

    /// A node config in a directory with its keys and an activity with a `[live]` table.
    fn with_live(live: &str) -> (tempfile::TempDir, NodeConfig, Result<Activity, ConfigError>) {
        let d = tempfile::tempdir().unwrap();
        for k in ["token.key", "claim.key"] {
            std::fs::write(d.path().join(k), MacKey::from_bytes([7; 16]).to_hex()).unwrap();
        }
        let demo =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds/demo.toml"))
                .unwrap();
        std::fs::write(d.path().join("a.toml"), format!("{demo}\n{live}")).unwrap();
        let text = GOOD
            .replace("../seeds/demo.toml", "a.toml")
            .replace("epoch = \"now\"", "epoch = \"now\"\ncalibration_ms = 100")
            + "\n[throttle]\nfloor_ms = 1000\nceiling_ms = 2000\n";
        let c = NodeConfig::parse(&d.path().join("n.toml"), &text).unwrap();
        let a = c.activity();
        (d, c, a)
    }

    #[test]
    fn an_activity_live_table_overrides_calibration_and_throttle_and_adds_to_the_blacklist() {
        let (_d, c, a) = with_live("");
        let plain = c.live_versioned(&a.unwrap(), 1000, 7).unwrap();
        assert_eq!(plain.config_version, 7);
        assert_eq!(plain.throttle.floor_ms, 1000);
        let (_d, c, a) = with_live(
            "[live]\ncalibration_ms = -400\nblacklist = [9]\n[live.throttle]\nfloor_ms = 1500\n",
        );
        let live = c.live_versioned(&a.unwrap(), 1000, 8).unwrap();
        // Rounds move by the activity's calibration, not the config's (100 ms).
        assert_eq!(
            live.rounds[0].start_ms + 500,
            plain.rounds[0].start_ms,
            "calibration -400 in place of +100"
        );
        assert_eq!(live.throttle.floor_ms, 1500);
        assert_eq!(live.throttle.ceiling_ms, 2000, "the config's key stays");
        assert!(live.blacklist.contains(&9) && live.blacklist.contains(&5));
    }

    #[test]
    fn a_live_table_error_names_the_activity_file_line_and_key() {
        let (_d, c, a) = with_live("[live]\ncalibration_ms = 90000000\n");
        let e = a.unwrap_err().to_string();
        assert!(
            e.contains("a.toml:") && e.contains(": live.calibration_ms: must be within"),
            "{e}"
        );
        let (_d, c2, a) = with_live("[live.throttle]\nfloor_ms = 3000\n");
        let e = c2
            .live_versioned(&a.unwrap(), 0, 1)
            .unwrap_err()
            .to_string();
        let line = e.split(':').nth(1).unwrap().parse::<usize>().unwrap();
        let text = std::fs::read_to_string(c2.resolve(Path::new("a.toml"))).unwrap();
        assert_eq!(text.lines().nth(line - 1), Some("floor_ms = 3000"), "{e}");
        assert!(
            e.contains("live.throttle.floor_ms: 3000 is above ceiling_ms 2000"),
            "{e}"
        );
        let (_d, _, a) = with_live("[live]\nfloor = 1\n");
        assert!(a
            .unwrap_err()
            .to_string()
            .contains("live.floor: unknown field"));
        drop(c);
    }

    #[test]
    fn epochs() {
        for (text, epoch) in [("1700000000", Some(1_700_000_000)), ("\"now\"", Some(77))] {
            let c = NodeConfig::parse(
                Path::new("n.toml"),
                &GOOD.replace("epoch = \"now\"", &format!("epoch = {text}")),
            )
            .unwrap();
            assert_eq!(c.epoch_s(77), epoch);
        }
        let e = NodeConfig::parse(Path::new("n.toml"), &GOOD.replace("\"now\"", "-1")).unwrap_err();
        assert!(e.to_string().contains("expected unix seconds"), "{e}");
    }

    #[test]
    fn mac_parsing() {
        assert_eq!(parse_mac("02:00:00:00:00:0a"), Some([2, 0, 0, 0, 0, 10]));
        assert_eq!(parse_mac("02:00:00:00:00"), None);
        assert_eq!(parse_mac("02:00:00:00:00:00:01"), None);
    }
}
