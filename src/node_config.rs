//! The node's config file (TOML), as an operator of a bare-metal node edits it.
//!
//! One file per node: identity, the activity and its seeds, keys, throttling, blacklist,
//! stats, and the I/O backends (`[socket]`, `[dpdk]` with its `[[port]]`s). Relative paths
//! are relative to the config file, so a node's directory can be moved as a whole. Errors name
//! the file, the line and the key.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hashbrown::HashSet;
use serde::Deserialize;

use crate::activity::{line_of, Activity};
use crate::engine::config::{next_config_version, Identity, Live, Throttle};
use crate::mac::MacKey;

mod dpdk_section;
pub use dpdk_section::{DpdkSection, PortSection};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}:{line}: {message}")]
    At {
        file: String,
        line: usize,
        message: String,
    },
    #[error("{0}")]
    Activity(#[from] crate::activity::ActivityError),
    #[error("{0}")]
    Key(#[from] crate::mac::KeyError),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// This node's index, 0-based; users with `user_id mod count == index` are ours.
    pub index: u32,
    pub count: u32,
    /// The IPv4 address the node answers for (ARP, ICMP, SHAKE/1).
    pub ipv4: Ipv4Addr,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Epoch {
    Unix(u64),
    Named(EpochName),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EpochName {
    Now,
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
            workers: 1,
            batch: batch(),
        }
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
    /// Where the file was read from.
    #[serde(skip)]
    pub path: PathBuf,
}

impl NodeConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::At {
            file: file.clone(),
            line: 0,
            message: e.to_string(),
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let at = |offset: usize, message: String| ConfigError::At {
            file: file.clone(),
            line: line_of(text, offset),
            message,
        };
        let mut c: NodeConfig = toml::from_str(text).map_err(|e| {
            at(
                e.span().map(|s| s.start).unwrap_or(0),
                e.message().to_string(),
            )
        })?;
        c.path = path.to_path_buf();
        let find = |key: &str| text.find(key).unwrap_or(0);
        if c.node.count == 0 || c.node.index >= c.node.count {
            return Err(at(
                find("index"),
                format!(
                    "node.index {} must be below node.count {}",
                    c.node.index, c.node.count
                ),
            ));
        }
        let t = &c.throttle;
        if t.floor_ms == 0 || t.floor_ms > t.ceiling_ms {
            return Err(at(
                find("floor_ms"),
                "throttle: need 0 < floor_ms <= ceiling_ms".into(),
            ));
        }
        if c.socket.workers == 0 || c.socket.batch == 0 || c.socket.batch > 1024 {
            return Err(at(
                find("[socket]"),
                "socket: workers >= 1 and batch 1..=1024".into(),
            ));
        }
        if let Some(m) = &c.node.mac {
            if parse_mac(m).is_none() {
                return Err(at(
                    find("mac"),
                    format!("node.mac {m:?} is not six hex bytes like 02:00:00:00:00:01"),
                ));
            }
        }
        if let Some(d) = &c.dpdk {
            d.validate(&c.port).map_err(|m| at(find("[dpdk]"), m))?;
        }
        Ok(c)
    }

    /// A path from the file, resolved against the file's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.path.parent().unwrap_or(Path::new(".")).join(p)
        }
    }

    pub fn activity(&self) -> Result<Activity, ConfigError> {
        Ok(Activity::load(&self.resolve(&self.activity.file))?)
    }

    pub fn identity(&self) -> Result<Identity, ConfigError> {
        Ok(Identity {
            node_index: self.node.index,
            node_count: self.node.count,
            token_key: MacKey::load(&self.resolve(&self.keys.token_key))?,
            claim_key: MacKey::load(&self.resolve(&self.keys.claim_key))?,
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
            let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::At {
                file: file.clone(),
                line: 0,
                message: e.to_string(),
            })?;
            for (i, line) in text.lines().enumerate() {
                let line = line.split('#').next().unwrap_or("").trim();
                if line.is_empty() {
                    continue;
                }
                let id = line.parse::<u64>().map_err(|_| ConfigError::At {
                    file: file.clone(),
                    line: i + 1,
                    message: format!("blacklist: {line:?} is not a user id"),
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

    /// Builds the workers' snapshot.
    pub fn live(
        &self,
        activity: &Activity,
        start_s: u64,
        previous_version: u32,
        now_s: u64,
    ) -> Result<Arc<Live>, ConfigError> {
        Ok(Live::new(
            activity,
            self.identity()?,
            self.throttle(),
            self.epoch_s(start_s),
            self.activity.calibration_ms,
            self.blacklist()?,
            next_config_version(previous_version, now_s),
        ))
    }

    pub fn socket_bind(&self) -> SocketAddr {
        self.socket
            .bind
            .unwrap_or(SocketAddr::from((self.node.ipv4, self.node.port)))
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
    fn errors_name_file_and_line() {
        let e = NodeConfig::parse(Path::new("n.toml"), &GOOD.replace("index = 1", "index = 4"))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "n.toml:3: node.index 4 must be below node.count 4"
        );
        let e = NodeConfig::parse(
            Path::new("n.toml"),
            &GOOD.replace("ipv4 = \"10.0.0.2\"", "ipv4 = \"10.0.0\""),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("n.toml:5:"), "{e}");
        let e = NodeConfig::parse(
            Path::new("n.toml"),
            &GOOD.replace("epoch = \"now\"", "epoch = \"soon\""),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("n.toml:9:"), "{e}");
    }

    #[test]
    fn mac_parsing() {
        assert_eq!(parse_mac("02:00:00:00:00:0a"), Some([2, 0, 0, 0, 0, 10]));
        assert_eq!(parse_mac("02:00:00:00:00"), None);
        assert_eq!(parse_mac("02:00:00:00:00:00:01"), None);
    }
}
