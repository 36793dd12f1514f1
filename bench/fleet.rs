//! Live config across a fleet on one local etcd (Debian's), two figures in one run:
//!
//! 1. **8 real nodes** (`shake serve --io socket`, this build): push after push, the time from
//!    `shake fleet push` to each node's apply, as the nodes report it in the registry.
//! 2. **640 simulated control planes** (the seed's 638 access servers, rounded): the watch,
//!    apply and registration code of a node ([`shake::fleet::etcd::run`]) without its
//!    datapath, 640 of them in this process, each with its own etcd client, lease and watch;
//!    applying builds the workers' snapshot exactly as a node does. Push-to-applied p50/p99
//!    over all 640, and etcd's load meanwhile (CPU, puts, watchers), from etcd's own metrics.
//!
//! `make bench-fleet`; results in bench/results/fleet.txt.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::engines::Engine;
use common::run_ok;
use shake::activity::Activity;
use shake::control::ControlCounters;
use shake::fleet::etcd::{self, Applier, EtcdTarget, Registration};
use shake::fleet::Names;
use shake::mac::MacKey;
use shake::node_config::NodeConfig;
use shake::time::unix_ms;

const PUSHES: usize = 10;
const REAL_NODES: u32 = 8;
const SIM_NODES: u32 = 640;
const WITHIN: Duration = Duration::from_secs(60);

fn activity(epoch: u64, calibration_ms: i64) -> String {
    format!(
        "[activity]\nid = 3\nname = \"bench\"\nepoch = {epoch}\n\n[[sponsor]]\nid = 1\n\
         budget_cents = 100000\npackets = 1000\n\n[[round]]\nid = 1\nstart_s = 60\n\
         duration_s = 600\nwin_probability = 0.1\n\n[live]\ncalibration_ms = {calibration_ms}\n"
    )
}

/// A node directory: keys, the activity, and `node.toml` for node `index` of `count`.
fn node_dir(dir: &Path, etcd: &str, epoch: u64, index: u32, count: u32) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for (f, b) in [("token.key", 1u8), ("claim.key", 2)] {
        std::fs::write(dir.join(f), MacKey::from_bytes([b; 16]).to_hex()).unwrap();
    }
    std::fs::write(dir.join("activity.toml"), activity(epoch, 0)).unwrap();
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nindex = {index}\ncount = {count}\nipv4 = \"127.0.0.1\"\nport = 0\n\
             planned_users = 1000\n[activity]\nfile = \"activity.toml\"\njournal = \"journal\"\n\
             [keys]\ntoken_key = \"token.key\"\nclaim_key = \"claim.key\"\n[stats]\ninterval_s = 0\n\
             [fleet]\nname = \"bench\"\netcd = [\"{etcd}\"]\n"
        ),
    )
    .unwrap();
    config
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn shake() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shake"))
}

/// Pushes a document; returns the revision.
fn push(config: &Path, doc: &Path) -> i64 {
    let out = run_ok(
        shake()
            .args(["fleet", "push", "--config"])
            .arg(config)
            .arg(doc),
    );
    out.split("as revision ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{out}"))
}

fn real_nodes(etcd: &Engine, root: &Path) -> Vec<u64> {
    let epoch = unix_ms() / 1000;
    let configs: Vec<_> = (0..REAL_NODES)
        .map(|i| {
            node_dir(
                &root.join(format!("n{i}")),
                &etcd.url(),
                epoch,
                i,
                REAL_NODES,
            )
        })
        .collect();
    let mut children: Vec<Child> = configs
        .iter()
        .map(|c| {
            shake()
                .args(["serve", "--io", "socket", "--workers", "1", "--config"])
                .arg(c)
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut latencies = Vec::new();
    for p in 0..PUSHES {
        let doc = root.join(format!("push{p}.toml"));
        std::fs::write(&doc, activity(epoch, p as i64 * 100 + 100)).unwrap();
        let rev = push(&configs[0], &doc);
        let out = run_ok(
            shake()
                .args(["fleet", "status", "--json", "--timeout-s", "60", "--config"])
                .arg(&configs[0])
                .args(["--wait-revision", &rev.to_string()]),
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        for n in v["nodes"].as_array().unwrap() {
            latencies.push(n["push_to_applied_ms"].as_u64().expect("applied"));
        }
    }
    for c in &mut children {
        let _ = Command::new("kill").arg(c.id().to_string()).status();
        let _ = c.wait();
    }
    latencies
}

/// A control plane's apply without a datapath: the document checked and the snapshot built
/// exactly as a node does, and the time noted.
struct SimApplier {
    node: u32,
    config: Arc<NodeConfig>,
    seeds_activity: Arc<Activity>,
    version: i64,
    applied: Arc<Mutex<Vec<(u32, i64, u64)>>>,
}

impl Applier for SimApplier {
    fn applied(&self) -> i64 {
        self.version
    }
    fn apply(&mut self, revision: i64, text: &str) -> Result<(), String> {
        let a = Activity::parse(Path::new("etcd"), text).map_err(|e| e.to_string())?;
        a.check_same_ids(&self.seeds_activity)
            .map_err(|e| e.to_string())?;
        let live = self
            .config
            .live_versioned(&a, 0, revision as u32)
            .map_err(|e| e.to_string())?;
        std::hint::black_box(live);
        self.version = revision;
        self.applied
            .lock()
            .unwrap()
            .push((self.node, revision, unix_ms()));
        Ok(())
    }
    fn report(&mut self, reg: &mut Registration) {
        reg.revision = self.version;
        reg.count = SIM_NODES;
    }
}

/// etcd's own counters: (process CPU seconds, puts, watchers).
fn etcd_load(etcd: &Engine) -> (f64, f64, f64) {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(etcd.addr()).unwrap();
    c.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut s = String::new();
    c.read_to_string(&mut s).unwrap();
    let get = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (
        get("process_cpu_seconds_total "),
        get("etcd_mvcc_put_total "),
        get("etcd_debugging_mvcc_watcher_total "),
    )
}

fn simulated(etcd: &Engine, root: &Path) -> (Vec<u64>, String) {
    let epoch = unix_ms() / 1000;
    let config = node_dir(&root.join("sim"), &etcd.url(), epoch, 0, SIM_NODES);
    let node_config = Arc::new(NodeConfig::load(&config).unwrap());
    let seeds_activity = Arc::new(node_config.activity().unwrap());
    let applied = Arc::new(Mutex::new(Vec::new()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let target = EtcdTarget {
        endpoints: vec![etcd.url()],
        names: Names::new("bench"),
        activity: 3,
    };
    let tasks: Vec<_> = (0..SIM_NODES)
        .map(|node| {
            let applier = SimApplier {
                node,
                config: node_config.clone(),
                seeds_activity: seeds_activity.clone(),
                version: 0,
                applied: applied.clone(),
            };
            rt.spawn(etcd::run(
                target.clone(),
                node,
                applier,
                Arc::new(ControlCounters::default()),
                stop_rx.clone(),
            ))
        })
        .collect();
    let deadline = Instant::now() + WITHIN;
    loop {
        let st = rt.block_on(etcd::status(&target)).unwrap();
        if st.nodes.len() == SIM_NODES as usize {
            break;
        }
        assert!(Instant::now() < deadline, "{} registered", st.nodes.len());
        std::thread::sleep(Duration::from_millis(100));
    }
    let (cpu0, puts0, _) = etcd_load(etcd);
    let t0 = Instant::now();
    let mut latencies = Vec::new();
    for p in 0..PUSHES {
        let doc = root.join(format!("sim{p}.toml"));
        std::fs::write(&doc, activity(epoch, p as i64 * 100 + 100)).unwrap();
        let pushed = unix_ms();
        let rev = push(&config, &doc);
        let deadline = Instant::now() + WITHIN;
        loop {
            let got: Vec<u64> = applied
                .lock()
                .unwrap()
                .iter()
                .filter(|(_, r, _)| *r == rev)
                .map(|(_, _, ms)| ms.saturating_sub(pushed))
                .collect();
            if got.len() == SIM_NODES as usize {
                latencies.extend(got);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {SIM_NODES} applied",
                got.len()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let (cpu1, puts1, watchers) = etcd_load(etcd);
    let load = format!(
        "etcd during the pushes ({secs:.1} s): {:.0}% of one core, {:.0} puts/s (registrations and pushes), {watchers} watchers",
        (cpu1 - cpu0) / secs * 100.0,
        (puts1 - puts0) / secs
    );
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = rt.block_on(t);
    }
    (latencies, load)
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` lists benches; nothing to list here.
    }
    let root = tempfile::tempdir().unwrap();
    let etcd = Engine::etcd();
    let mut out = String::new();
    let mut report = |what: &str, mut lat: Vec<u64>, extra: &str| {
        lat.sort_unstable();
        let line = format!(
            "{what}: push to applied over {} applies: p50 {} ms, p99 {} ms, max {} ms{extra}\n",
            lat.len(),
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            lat.last().copied().unwrap_or(0)
        );
        print!("{line}");
        out += &line;
    };
    let real = real_nodes(&etcd, root.path());
    report(
        &format!("{REAL_NODES} socket nodes, {PUSHES} pushes"),
        real,
        "",
    );
    let (sim, load) = simulated(&etcd, root.path());
    report(
        &format!("{SIM_NODES} simulated control planes, {PUSHES} pushes"),
        sim,
        &format!("\n  {load}"),
    );
    let header = format!(
        "# make bench-fleet ({}): one local etcd ({}), the 2-core build machine\n",
        chrono_free_date(),
        String::from_utf8_lossy(
            &Command::new("etcd")
                .arg("--version")
                .output()
                .map(|o| o.stdout)
                .unwrap_or_default()
        )
        .lines()
        .next()
        .unwrap_or("")
    );
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/results/fleet.txt");
    std::fs::write(&path, header + &out).unwrap();
    println!("written to {}", path.display());
}

/// Today's date from `date`, for the results file's header.
fn chrono_free_date() -> String {
    Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
