//! Helpers for tests that run the `shake` binary: a node directory with an activity, keys and
//! a config, and a server process that is stopped by its PID when the test ends. The
//! generator's tests (bench/gen/tests) use them too, from another package: see [`shake_bin`].
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

use shake::mac::MacKey;

pub const TOKEN_KEY: MacKey = MacKey::from_bytes([0x11; 16]);
pub const CLAIM_KEY: MacKey = MacKey::from_bytes([0x22; 16]);

/// Writes `token.key` and `claim.key` (TOKEN_KEY and CLAIM_KEY in hex) into `dir`, where a
/// [`NodeToml`] config names them.
pub fn write_keys(dir: &Path) {
    std::fs::write(dir.join("token.key"), TOKEN_KEY.to_hex()).unwrap();
    std::fs::write(dir.join("claim.key"), CLAIM_KEY.to_hex()).unwrap();
}

/// A test node's `node.toml`: node `index` (0 unless set) of `count` (1 unless set), answering on `ipv4` at UDP
/// port 7000 (unless set), sized for `planned_users`, with the activity in `activity.toml`,
/// the keys of [`write_keys`], `[stats] interval_s = 0` (unless set) and no Prometheus
/// endpoint unless asked for. The `extra` text comes last, as is.
pub struct NodeToml {
    ipv4: String,
    planned_users: u64,
    index: u32,
    count: u32,
    port: u16,
    activity: String,
    interval_s: u64,
    prometheus: bool,
    extra: String,
}

impl NodeToml {
    pub fn new(ipv4: &str, planned_users: u64) -> NodeToml {
        NodeToml {
            ipv4: ipv4.to_owned(),
            planned_users,
            index: 0,
            count: 1,
            port: 7000,
            activity: String::new(),
            interval_s: 0,
            prometheus: false,
            extra: String::new(),
        }
    }

    /// The node count (this node is index 0 unless set).
    pub fn count(mut self, count: u32) -> NodeToml {
        self.count = count;
        self
    }

    /// This node's index.
    pub fn index(mut self, index: u32) -> NodeToml {
        self.index = index;
        self
    }

    /// The UDP port; 0 lets a socket node pick one.
    pub fn port(mut self, port: u16) -> NodeToml {
        self.port = port;
        self
    }

    /// More lines of `[activity]`, after `file = "activity.toml"`: e.g. `epoch = "now"`, or
    /// `seeds` and `journal` directories.
    pub fn activity(mut self, lines: &str) -> NodeToml {
        self.activity += lines;
        self.activity += "\n";
        self
    }

    /// `[stats] interval_s`.
    pub fn interval_s(mut self, interval_s: u64) -> NodeToml {
        self.interval_s = interval_s;
        self
    }

    /// `[stats] prometheus = "127.0.0.1:0"`: an endpoint on a port the node picks.
    pub fn prometheus(mut self) -> NodeToml {
        self.prometheus = true;
        self
    }

    /// TOML appended after `[stats]`: more tables (`[throttle]`, `[dpdk]`, ...), and keys of
    /// the last table appended before.
    pub fn extra(mut self, toml: &str) -> NodeToml {
        self.extra += toml;
        self
    }

    pub fn text(&self) -> String {
        let NodeToml {
            ipv4,
            planned_users,
            index,
            count,
            port,
            activity,
            interval_s,
            prometheus,
            extra,
        } = self;
        let prometheus = if *prometheus {
            "prometheus = \"127.0.0.1:0\"\n"
        } else {
            ""
        };
        format!(
            r#"
[node]
index = {index}
count = {count}
ipv4 = "{ipv4}"
port = {port}
planned_users = {planned_users}

[activity]
file = "activity.toml"
{activity}
[keys]
token_key = "token.key"
claim_key = "claim.key"

[stats]
interval_s = {interval_s}
{prometheus}{extra}"#
        )
    }

    /// Writes `dir/node.toml`; returns its path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join("node.toml");
        std::fs::write(&path, self.text()).unwrap();
        path
    }
}

/// A node's temporary directory: the test keys, `activity.toml` and (once written)
/// `node.toml`.
pub struct NodeDir {
    pub dir: tempfile::TempDir,
}

impl NodeDir {
    /// A socket node on 127.0.0.1 (node 0 of `node_count`, metrics on) with two sponsors.
    /// `rounds` is TOML for the [[round]] tables; `extra` is appended to the node config.
    pub fn new(epoch: u64, rounds: &str, node_count: u32, extra: &str) -> NodeDir {
        let node = NodeDir::with_activity(&format!(
            r#"
[activity]
id = 9
name = "socket test"
epoch = {epoch}

[[sponsor]]
id = 101
budget_cents = 5000000
packets = 10000
greeting_resources = [1]

[[sponsor]]
id = 102
budget_cents = 5000000
packets = 10000
greeting_resources = [2]

{rounds}
"#
        ));
        NodeToml::new("127.0.0.1", 100_000)
            .count(node_count)
            .port(0)
            .prometheus()
            .extra(extra)
            .write(node.path());
        node
    }

    /// A directory with the test keys ([`write_keys`]) and `activity` as `activity.toml`;
    /// the node config is for the test to write ([`NodeToml::write`]).
    pub fn with_activity(activity: &str) -> NodeDir {
        let dir = tempfile::tempdir().unwrap();
        write_keys(dir.path());
        std::fs::write(dir.path().join("activity.toml"), activity).unwrap();
        NodeDir { dir }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("node.toml")
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// The appliance binary. The shake package's own tests have Cargo's path for it; another
/// package's tests (the generator's) cannot name a binary of this one, so they have Cargo
/// build it (a no-op when `cargo test --workspace` just did) into the target directory their
/// own binary is in, with the same profile, and take it from there: never a stale one.
pub fn shake_bin() -> PathBuf {
    if let Some(bin) = option_env!("CARGO_BIN_EXE_shake") {
        return PathBuf::from(bin);
    }
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| workspace_bin("shake", "shake", &[]))
        .clone()
}

/// The generator binary (`shake-gen`, package bench/gen), for the shake package's tests, as
/// [`shake_bin`] finds the appliance for the generator's: built by Cargo into this test's
/// target directory and profile unless it is newer than its sources.
pub fn gen_bin() -> PathBuf {
    if let Some(bin) = option_env!("CARGO_BIN_EXE_shake-gen") {
        return PathBuf::from(bin);
    }
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| workspace_bin("shake-gen", "shake-gen", &["bench/gen"]))
        .clone()
}

/// Binary `bin` of workspace package `package`, built as the running test was (target
/// directory, profile, the `dpdk` feature) unless it is newer than the shake package's
/// sources and `more_sources`.
fn workspace_bin(package: &str, bin: &str, more_sources: &[&str]) -> PathBuf {
    // target/<profile>/deps/<this test>: the binaries are in target/<profile>.
    let exe = std::env::current_exe().expect("the test's own path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("a test runs from target/<profile>/deps");
    let profile = match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(p) => p,
        None => panic!("no profile directory above {}", exe.display()),
    };
    let target_dir = dir.parent().expect("target directory");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = root
        .ancestors()
        .find(|d| d.join("src/main.rs").exists() && d.join("dpdk-shim").is_dir())
        .expect("the shake workspace above this package");
    let path = dir.join(bin);
    // `cargo test --workspace` has just built it (for its package's own tests) with the
    // workspace's features: take it unless a source is newer. Building it again with `-p`
    // alone would compile every dependency a second time with other features.
    if is_newer_than_sources(&path, workspace, more_sources) {
        return path;
    }
    let mut cmd = Command::new(option_env!("CARGO").unwrap_or("cargo"));
    cmd.current_dir(workspace)
        .args(["build", "--quiet", "-p", package, "--bin", bin])
        .args(["--profile", profile])
        .arg("--target-dir")
        .arg(target_dir);
    if cfg!(not(feature = "dpdk")) {
        cmd.arg("--no-default-features");
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(status.success(), "{cmd:?} failed ({status})");
    assert!(path.exists(), "{} after building it", path.display());
    path
}

/// Every file under `dir` with its bytes: what "nothing was changed" compares.
pub fn file_bytes(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    shake::reconcile::walk_files(dir)
        .unwrap()
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect()
}

/// Runs `cmd` and panics with its output unless it succeeds.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `shake seedgen` for one node of `workers` workers, with `seed`: the shards of
/// `dir/activity.toml` into `dir/seeds`.
pub fn seedgen(dir: &Path, workers: u32, seed: u64) {
    run_ok(
        Command::new(shake_bin())
            .args(["seedgen", "--nodes", "1", "--workers", &workers.to_string()])
            .args(["--seed", &seed.to_string(), "--activity"])
            .arg(dir.join("activity.toml"))
            .arg("--out")
            .arg(dir.join("seeds")),
    );
}

/// `shake reconcile` of the shards in `dir/seeds` against the journals in `dir/journal`;
/// returns its output.
pub fn reconcile(dir: &Path) -> String {
    run_ok(
        Command::new(shake_bin())
            .arg("reconcile")
            .arg("--manifest")
            .arg(dir.join("seeds/manifest.toml"))
            .arg("--seeds")
            .arg(dir.join("seeds"))
            .arg("--journals")
            .arg(dir.join("journal")),
    )
}

/// `bin` exists and is newer than every source it is built from (the shake package's
/// sources, the DPDK shim, the manifests and the lock file, and `more`).
fn is_newer_than_sources(bin: &Path, workspace: &Path, more: &[&str]) -> bool {
    // Files only: a directory's own time moves whenever anything makes and removes an entry
    // in it (`cargo doc` does, in dpdk-shim/), and taking it for a newer source had the tests
    // build their binaries a second time with other features, and the workspace then once more.
    fn newest(p: &Path) -> std::time::SystemTime {
        let Ok(meta) = std::fs::metadata(p) else {
            return std::time::SystemTime::UNIX_EPOCH;
        };
        if !meta.is_dir() {
            return meta.modified().unwrap_or(std::time::SystemTime::UNIX_EPOCH);
        }
        std::fs::read_dir(p)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| newest(&e.path()))
            .fold(std::time::SystemTime::UNIX_EPOCH, std::cmp::max)
    }
    let Ok(built) = std::fs::metadata(bin).and_then(|m| m.modified()) else {
        return false;
    };
    ["src", "dpdk-shim", "Cargo.toml", "Cargo.lock", "build.rs"]
        .iter()
        .chain(more)
        .all(|p| newest(&workspace.join(p)) < built)
}

/// Sends request `r` to `server` and returns the answer, checked as a careful client checks
/// it: from the address asked, 64 bytes, its claim MAC under `claim_key`.
pub fn ask(
    s: &std::net::UdpSocket,
    server: SocketAddr,
    r: &shake::wire::shake::ShakeRequestRepr,
    claim_key: &MacKey,
) -> shake::wire::shake::ShakeAnswerRepr {
    s.send_to(&shake::client::payload(r), server).unwrap();
    let mut buf = [0u8; 128];
    let (n, from) = s.recv_from(&mut buf).expect("an answer");
    assert_eq!(from, server, "the answer comes from the address asked");
    assert_eq!(n, 64, "answers are exactly 64 bytes");
    shake::client::check_answer(r, &buf[..n], claim_key).unwrap()
}

/// A running `shake serve`, stopped with SIGTERM (then SIGKILL) by its PID on drop.
pub struct Server {
    pub child: Child,
    pub udp: SocketAddr,
    /// Where it serves IPv6, if it does (`udp6 [ADDR]:PORT` on its start line).
    pub udp6: Option<SocketAddr>,
    pub metrics: Option<SocketAddr>,
    pub stdout: BufReader<ChildStdout>,
}

pub fn unix_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl Server {
    pub fn start_socket(config: &Path, workers: u32) -> Server {
        Self::start_socket_with(config, Some(workers))
    }

    /// `workers: None` leaves the count to the config (or the node's shards).
    pub fn start_socket_with(config: &Path, workers: Option<u32>) -> Server {
        Self::start_socket_args(config, workers, &[])
    }

    /// A socket node that also serves IPv6 on `[::1]` (its config has `node.ipv6`), at a
    /// port of its own.
    pub fn start_socket6(config: &Path, workers: u32) -> Server {
        let s = Self::start_socket_args(config, Some(workers), &["--bind6", "[::1]:0"]);
        assert!(s.udp6.is_some(), "the node says it serves IPv6");
        s
    }

    /// `shake serve --io socket` on 127.0.0.1, with `args` more.
    pub fn start_socket_args(config: &Path, workers: Option<u32>, args: &[&str]) -> Server {
        let mut cmd = Command::new(shake_bin());
        cmd.args(["serve", "--io", "socket", "--bind", "127.0.0.1:0"]);
        cmd.args(args);
        if let Some(w) = workers {
            cmd.arg("--workers").arg(w.to_string());
        }
        cmd.arg("--config").arg(config);
        Self::spawn(cmd)
    }

    /// Starts `cmd`, a socket node's `shake serve` however it is launched (another binary,
    /// another user), and returns once it says where it serves.
    pub fn spawn(mut cmd: Command) -> Server {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start shake serve");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        // Recovery may say what it found first.
        while !line.contains("serving SHAKE/1") {
            line.clear();
            if stdout.read_line(&mut line).unwrap() == 0 {
                panic!("shake serve exited before serving");
            }
        }
        // "shake: serving SHAKE/1 on udp 127.0.0.1:PORT [and udp6 [::1]:PORT] with ...,
        // metrics on http://ADDR/metrics"
        let udp6 = line
            .split("udp6 ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .map(|a| a.parse().unwrap());
        let udp = line
            .split("udp ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        let metrics = line
            .split("http://")
            .nth(1)
            .and_then(|s| s.split('/').next())
            .map(|s| s.parse().unwrap());
        Server {
            child,
            udp,
            udp6,
            metrics,
            stdout,
        }
    }

    pub fn metrics(&self) -> String {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(self.metrics.expect("metrics endpoint")).unwrap();
        c.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut s = String::new();
        c.read_to_string(&mut s).unwrap();
        s
    }

    /// Sum of a metric over workers, e.g. `shake_drops_total` with `reason="magic"`.
    pub fn metric(&self, name: &str, label: &str) -> u64 {
        self.metrics()
            .lines()
            .filter(|l| l.starts_with(name) && l.contains(label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    pub fn signal(&self, sig: i32) {
        // Tests stay free of unsafe: kill(1) with our own child's PID.
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status();
    }

    /// SIGTERM and wait; returns the exit status and the rest of stdout.
    pub fn stop(mut self) -> (std::process::ExitStatus, String) {
        self.signal(15);
        let mut rest = String::new();
        use std::io::Read;
        let _ = self.stdout.read_to_string(&mut rest);
        let status = self.child.wait().unwrap();
        (status, rest)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Running the DPDK appliance (`shake serve --io dpdk`) as a child process.
#[cfg(feature = "dpdk")]
pub mod appliance;

/// The test process as a DPDK net_memif client of the appliance.
#[cfg(feature = "dpdk")]
pub mod memif;

/// The fleet's engines (etcd, nats-server, prometheus) started and stopped by a test.
pub mod engines;

/// Classic pcap files of Ethernet frames.
pub mod pcap;

/// tshark with the SHAKE/1 dissector (bench/shake.lua) over a capture.
pub mod tshark;

/// A phone on a kernel UDP socket (the veth and AF_XDP tests' client).
pub mod udp_client;

/// Two network namespaces and a veth pair: a DPDK node on one end, the test binary again as
/// a kernel UDP client on the other (the veth and AF_XDP tests).
#[cfg(feature = "dpdk")]
pub mod netns;

/// In-process appliances on ring ports.
#[cfg(feature = "dpdk")]
pub mod ring_wire;

/// What a node's claim journals hold, checked as they are read: no packet twice, and every
/// user within the limits (3 packets, 1 per sponsor).
pub struct Journaled {
    /// packet_id -> (user, amount_cents, sponsor)
    pub claims: std::collections::HashMap<u64, (u64, u32, u32)>,
    pub winners: usize,
    pub forfeits: u64,
}

impl Journaled {
    /// Asserts that every red packet answered, `paid` (packet_id -> (user, amount_cents,
    /// sponsor)), is journaled with the same user, amount and sponsor.
    pub fn assert_journaled(&self, paid: &std::collections::HashMap<u64, (u64, u32, u32)>) {
        for (pid, got) in paid {
            assert_eq!(
                self.claims.get(pid),
                Some(got),
                "red packet {pid} answered but not journaled as answered"
            );
        }
    }
}

/// Reads every worker's journal under `root` (`root/worker-<w>`, w in 0..workers) and
/// asserts uniqueness and the limits.
pub fn audit_journals(root: &Path, workers: u32) -> Journaled {
    use shake::journal::{JournalReader, Kind, TailPolicy};
    use std::collections::{HashMap, HashSet};
    let mut claims = HashMap::new();
    let mut per_user: HashMap<u64, Vec<u32>> = HashMap::new();
    let mut forfeits = 0;
    for w in 0..workers {
        let dir = root.join(format!("worker-{w}"));
        let mut r = JournalReader::open_dir(&dir, None, TailPolicy::Strict)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        while let Some(rec) = r
            .next_record()
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        {
            match rec.kind {
                Kind::Claim => {
                    let c = rec.claim;
                    let before =
                        claims.insert(c.packet_id, (c.user_id, c.amount_cents, c.sponsor_id));
                    assert!(before.is_none(), "packet {} journaled twice", c.packet_id);
                    per_user.entry(c.user_id).or_default().push(c.sponsor_id);
                }
                Kind::Forfeit => forfeits += 1,
            }
        }
    }
    for (user, sponsors) in &per_user {
        assert!(
            sponsors.len() <= 3,
            "user {user} has {} packets",
            sponsors.len()
        );
        let distinct: HashSet<_> = sponsors.iter().collect();
        assert_eq!(
            distinct.len(),
            sponsors.len(),
            "user {user} has two from one sponsor: {sponsors:?}"
        );
    }
    Journaled {
        claims,
        winners: per_user.len(),
        forfeits,
    }
}

/// A number in a JSON report (a generator's), by its path of keys; panics naming the path.
pub fn json_u64(v: &serde_json::Value, path: &[&str]) -> u64 {
    path.iter()
        .fold(v, |v, k| &v[*k])
        .as_u64()
        .unwrap_or_else(|| panic!("{path:?} in {v}"))
}
