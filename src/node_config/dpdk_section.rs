//! The `[dpdk]` and `[[port]]` sections: EAL settings and the ports a node serves on.
//!
//! Plain data, parsed with the rest of the file and usable without DPDK installed; the DPDK
//! layer (`crate::dpdk`, feature `dpdk`) turns them into EAL arguments and port setup.

use serde::Deserialize;

/// `[dpdk]`: what the EAL gets and how the workers run.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpdkSection {
    /// EAL `--lcores`: "0-8", "0,2,4", or "0@0,(1,2)@1" to place several lcores on one CPU.
    /// The main lcore does control; every other lcore is a worker with its own queue pair.
    #[serde(default = "default_lcores")]
    pub lcores: String,
    /// EAL `--main-lcore`; absent: the first lcore.
    #[serde(default)]
    pub main_lcore: Option<u32>,
    /// EAL `-m`: megabytes of memory to take at start-up; absent: what the EAL decides
    /// (all reserved hugepages).
    #[serde(default)]
    pub memory_mb: Option<u32>,
    /// Use hugepages; `false` is EAL `--no-huge` (anonymous memory: demos and tests).
    #[serde(default = "yes")]
    pub huge: bool,
    /// EAL `--file-prefix`: unique per DPDK process on a machine.
    #[serde(default = "default_prefix")]
    pub file_prefix: String,
    /// PCI devices to probe (EAL `-a`), e.g. "0000:03:00.0". Empty: `--no-pci`, so only
    /// virtual devices are used and no NIC is ever touched.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Virtual devices (EAL `--vdev`), e.g. "net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap", or
    /// "net_af_xdp0,iface=eth1" (an AF_XDP port on a kernel interface; its arguments are
    /// checked here). Relative paths in `rx_pcap`, `tx_pcap`, `socket`, `path` and
    /// `xdp_prog` are relative to this file.
    #[serde(default)]
    pub vdevs: Vec<String>,
    /// EAL `--log-level`, e.g. "notice" or "pmd.net.*:debug".
    #[serde(default)]
    pub log_level: Option<String>,
    /// DPDK telemetry socket (`/shake/stats` is registered on it); `false` is `--no-telemetry`.
    #[serde(default = "yes")]
    pub telemetry: bool,
    /// Appended to the EAL arguments as they are, before those given on the command line.
    #[serde(default)]
    pub extra_args: Vec<String>,
    /// Slots of each single-producer single-consumer ring that hands a frame to the worker
    /// owning its user (a power of two).
    #[serde(default = "default_handoff_ring")]
    pub handoff_ring: u32,
    /// Microseconds a worker sleeps after a pass that found nothing at all; 0 (the default)
    /// polls without pause as a dedicated core should. For demos on shared machines.
    #[serde(default)]
    pub idle_sleep_us: u32,
    /// Live packet capture: initialise DPDK's packet-capture framework (`rte_pdump_init`) so
    /// that `dpdk-dumpcap --file-prefix <file_prefix>` can attach to the running node and
    /// copy what its ports receive and send into a pcapng file. Off by default: a capture
    /// costs a copy per captured frame on the worker that moves it, and the node must keep
    /// its DPDK memory shareable (hugepage files, the multi-process socket), which rules
    /// out `huge = false` and the EAL arguments in [`capture_conflict`].
    #[serde(default)]
    pub capture: bool,
}

/// Why EAL argument `arg` keeps a capture process (`dpdk-dumpcap`, a DPDK secondary
/// process) from attaching to the node, if it does. A secondary maps the primary's
/// hugepage files by name and talks to it over the multi-process socket in the EAL's
/// runtime directory; each of these arguments takes one of them away.
pub fn capture_conflict(arg: &str) -> Option<&'static str> {
    match arg {
        // Bare `--huge-unlink` means `always`; `existing` (the EAL's default) and `never`
        // keep the files while the node runs.
        "--huge-unlink" | "--huge-unlink=always" => {
            Some("unlinks the hugepage files a capture process maps")
        }
        "--no-huge" => Some("puts DPDK memory in private memory no other process can map"),
        "--no-shconf" => Some("keeps no shared config and no multi-process socket"),
        "--in-memory" => Some("keeps no hugepage files and no shared config"),
        _ => None,
    }
}

/// `[[port]]`: one DPDK port, served by every worker on its own queue pair.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSection {
    /// The device name: a PCI address ("0000:03:00.0") or a virtual device ("net_pcap0").
    #[serde(default)]
    pub name: Option<String>,
    /// Or the DPDK port id.
    #[serde(default)]
    pub id: Option<u16>,
    #[serde(default = "default_desc")]
    pub rx_desc: u16,
    #[serde(default = "default_desc")]
    pub tx_desc: u16,
    /// Mbufs in the port's pool; absent: enough for every queue, ring and cache, at least
    /// 8191.
    #[serde(default)]
    pub mbufs: Option<u32>,
    /// Per-lcore mempool cache.
    #[serde(default = "default_cache")]
    pub mempool_cache: u32,
    #[serde(default = "default_mtu")]
    pub mtu: u16,
    #[serde(default)]
    pub promiscuous: bool,
    /// Enable what the device offers: mbuf fast free, IPv4/UDP checksum offloads.
    #[serde(default = "yes")]
    pub offloads: bool,
    /// Spread frames over the workers' RX queues by an IP/UDP hash, when the device can.
    #[serde(default = "yes")]
    pub rss: bool,
}

fn yes() -> bool {
    true
}
fn default_lcores() -> String {
    "0-1".into()
}
fn default_prefix() -> String {
    "shake".into()
}
fn default_handoff_ring() -> u32 {
    1024
}
fn default_desc() -> u16 {
    1024
}
fn default_cache() -> u32 {
    256
}
fn default_mtu() -> u16 {
    1500
}

/// A value of `[dpdk]` or `[[port]]` that cannot work, and its key (`dpdk.handoff_ring`,
/// `port[1].rx_desc`), for the error that names its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub key: String,
    pub message: String,
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        key: key.into(),
        message: message.into(),
    }
}

impl DpdkSection {
    /// Checks what the EAL would only report obscurely, or not at all.
    pub fn validate(&self, ports: &[PortSection]) -> Result<(), Invalid> {
        if self.file_prefix.is_empty() || self.file_prefix.contains('/') {
            return Err(invalid(
                "dpdk.file_prefix",
                "must be a non-empty name without '/'",
            ));
        }
        if !self.handoff_ring.is_power_of_two() || self.handoff_ring < 64 {
            return Err(invalid(
                "dpdk.handoff_ring",
                format!(
                    "must be a power of two, at least 64; found {}",
                    self.handoff_ring
                ),
            ));
        }
        if self.capture {
            if !self.huge {
                return Err(invalid(
                    "dpdk.capture",
                    "needs huge = true: a capture process maps the node's hugepage memory, \
                     and huge = false (--no-huge) has none to share",
                ));
            }
            if let Some((arg, why)) = self
                .extra_args
                .iter()
                .find_map(|a| capture_conflict(a).map(|why| (a, why)))
            {
                return Err(invalid(
                    "dpdk.extra_args",
                    format!("{arg} {why}: remove it, or set capture = false"),
                ));
            }
        }
        if ports.is_empty() {
            return Err(invalid("dpdk", "needs at least one [[port]]"));
        }
        for (k, vdev) in self.vdevs.iter().enumerate() {
            if is_af_xdp(vdev) {
                check_af_xdp_vdev(vdev).map_err(|m| invalid(format!("dpdk.vdevs[{k}]"), m))?;
            }
        }
        self.check_af_xdp_queues()?;
        for (i, p) in ports.iter().enumerate() {
            if p.name.is_some() == p.id.is_some() {
                // Point at the id when both are given, else at the port's table.
                let key = match p.id {
                    Some(_) => format!("port[{i}].id"),
                    None => format!("port[{i}]"),
                };
                return Err(invalid(key, "give exactly one of name and id"));
            }
            for (k, v) in [("rx_desc", p.rx_desc), ("tx_desc", p.tx_desc)] {
                if v == 0 {
                    return Err(invalid(format!("port[{i}].{k}"), "must be positive"));
                }
            }
            if p.name.as_deref().is_some_and(is_af_xdp) && !p.rx_desc.is_power_of_two() {
                return Err(invalid(
                    format!("port[{i}].rx_desc"),
                    format!(
                        "must be a power of two on {AF_XDP}, found {}: it sizes the AF_XDP \
                         socket's RX and TX rings, which the kernel takes only in powers of two",
                        p.rx_desc
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Two `net_af_xdp` devices on one interface must not bind the same queue: the second
    /// socket's bind would fail with a bare EBUSY deep in port setup.
    fn check_af_xdp_queues(&self) -> Result<(), Invalid> {
        let mut bound: Vec<(usize, String, u32, u32)> = Vec::new();
        for (k, vdev) in self.vdevs.iter().enumerate() {
            if !is_af_xdp(vdev) {
                continue;
            }
            let arg = |key: &str| af_xdp_arg(vdev, key);
            let iface = arg("iface").unwrap_or_default().to_owned();
            let number =
                |key: &str, default: u32| arg(key).and_then(|v| v.parse().ok()).unwrap_or(default);
            let (start, count) = (number("start_queue", 0), number("queue_count", 1));
            let end = start.saturating_add(count);
            if let Some((other, ..)) = bound
                .iter()
                .find(|(_, i, s, e)| *i == iface && start < *e && *s < end)
            {
                return Err(invalid(
                    format!("dpdk.vdevs[{k}]"),
                    format!(
                        "queues {start}..{end} of {iface} are already bound by dpdk.vdevs[{other}]: \
                         one AF_XDP socket per queue"
                    ),
                ));
            }
            bound.push((k, iface, start, end));
        }
        Ok(())
    }
}

/// DPDK's driver of Linux AF_XDP sockets: a port on an interface the kernel keeps.
pub const AF_XDP: &str = "net_af_xdp";

/// The arguments DPDK 22.11's net_af_xdp takes, and whether each is a number.
const AF_XDP_ARGS: &[(&str, bool)] = &[
    ("iface", false),
    ("start_queue", true),
    ("queue_count", true),
    ("shared_umem", true),
    ("xdp_prog", false),
    ("busy_budget", true),
    ("force_copy", true),
];

/// A vdev string ("net_af_xdp0,iface=eth1") or device name ("net_af_xdp0") of net_af_xdp.
pub fn is_af_xdp(vdev: &str) -> bool {
    vdev.starts_with(AF_XDP)
}

/// The value of argument `key` of a vdev string.
pub fn af_xdp_arg<'a>(vdev: &'a str, key: &str) -> Option<&'a str> {
    vdev.split(',')
        .skip(1)
        .filter_map(|kv| kv.split_once('='))
        .find_map(|(k, v)| (k.trim() == key).then_some(v.trim()))
}

/// What DPDK's probe would reject with a log line only ("Invalid kvargs value"), said with
/// the argument; and an interface name the kernel can have.
fn check_af_xdp_vdev(vdev: &str) -> Result<(), String> {
    let names: Vec<&str> = AF_XDP_ARGS.iter().map(|(k, _)| *k).collect();
    for part in vdev.split(',').skip(1) {
        let Some((key, value)) = part.split_once('=') else {
            return Err(format!(
                "{part:?}: {AF_XDP} arguments are key=value ({})",
                names.join(", ")
            ));
        };
        let Some(&(_, number)) = AF_XDP_ARGS.iter().find(|(k, _)| *k == key.trim()) else {
            return Err(format!(
                "unknown {AF_XDP} argument {key:?}: DPDK 22.11 takes {}",
                names.join(", ")
            ));
        };
        if number {
            let n: u32 = value
                .trim()
                .parse()
                .map_err(|_| format!("{key}={value}: a whole number is expected"))?;
            match key.trim() {
                "queue_count" if n == 0 => return Err("queue_count must be at least 1".into()),
                "busy_budget" if n > u32::from(u16::MAX) => {
                    return Err(format!("busy_budget {n} is above 65535"))
                }
                _ => {}
            }
        }
    }
    match af_xdp_arg(vdev, "iface") {
        None | Some("") => Err(format!(
            "{AF_XDP} needs iface=NAME, the kernel interface whose queues it binds"
        )),
        // IFNAMSIZ less its NUL.
        Some(i) if i.len() > 15 => Err(format!(
            "iface {i:?} is longer than the kernel's 15 bytes for an interface name"
        )),
        Some(_) => Ok(()),
    }
}

impl PortSection {
    /// How errors name the port: its device name, or `port <id>`.
    pub fn label(&self) -> String {
        match (&self.name, self.id) {
            (Some(n), _) => n.clone(),
            (None, Some(id)) => format!("port {id}"),
            (None, None) => "port ?".into(),
        }
    }
}
