//! Helpers for tests that run the DPDK appliance (`shake serve --io dpdk`) as a child
//! process: pcap files, the EAL runtime directory, the Prometheus endpoint and the final
//! counter line, and a stop by SIGTERM to the child's own PID with a bounded wait; and the
//! request frames that go into the pcaps and memif ports.
//!
//! Every appliance gets `--no-shconf` on top of its config (which must say `huge = false`,
//! no `allow`, so `--no-huge --no-pci`) and its own `--file-prefix`; one that a capture
//! attaches to ([`Appliance::start_with`]) keeps its shared config and uses hugepages.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shake::client::{payload, Flow};
use shake::wire::shake::ShakeRequestRepr;

/// An untagged flow from a client, `(MAC, IPv4, UDP port)`, to a node, `(MAC, IPv4)`, at
/// the node's UDP port 7000.
pub fn flow_to_node(client: ([u8; 6], [u8; 4], u16), node: ([u8; 6], [u8; 4])) -> Flow {
    let ((src_mac, src_ip, src_port), (dst_mac, dst_ip)) = (client, node);
    Flow {
        src_mac,
        dst_mac,
        vlan: None,
        src_ip,
        dst_ip,
        src_port,
        dst_port: 7000,
    }
}

/// The whole Ethernet frame of request `r` on `flow`, with IPv4 identification `ip_ident`.
pub fn request_frame(flow: &Flow, r: &ShakeRequestRepr, ip_ident: u16) -> Vec<u8> {
    let mut f = vec![0u8; flow.frame_len()];
    let n = flow.emit(&mut f, &payload(r), ip_ident);
    f.truncate(n);
    f
}

// Where the DPDK tests have always found them; a test that only needs pcaps uses
// `common::pcap`.
#[allow(unused_imports)]
pub use super::pcap::{read_pcap, write_pcap};

/// A file prefix unique to this process and `what`.
pub fn file_prefix(what: &str) -> String {
    format!("shake-test-{what}-{}", std::process::id())
}

/// The `[dpdk]` and `[[port]]` sections of a test node: lcores 0-1 (one worker), 256 MB of
/// ordinary memory (`--no-huge`), no telemetry, EAL prefix `prefix`, one port on virtual
/// device `vdev` (named by the vdev's driver name), with `rx_desc`/`tx_desc` descriptors and
/// a mempool cache of `cache`; `idle_sleep_us` 0 leaves the default.
pub fn dpdk_sections(
    prefix: &str,
    vdev: &str,
    desc: u16,
    cache: u16,
    idle_sleep_us: u32,
) -> String {
    let name = vdev.split(',').next().unwrap_or(vdev);
    let idle = if idle_sleep_us > 0 {
        format!("idle_sleep_us = {idle_sleep_us}\n")
    } else {
        String::new()
    };
    format!(
        r#"
[dpdk]
lcores = "0-1"
memory_mb = 256
huge = false
telemetry = false
file_prefix = "{prefix}"
vdevs = ["{vdev}"]
log_level = "error"
{idle}
[[port]]
name = "{name}"
rx_desc = {desc}
tx_desc = {desc}
mempool_cache = {cache}
"#
    )
}

/// [`dpdk_sections`] for a node whose port is a net_memif server on `socket` (a memif client
/// connects there): 1024 descriptors, a mempool cache of 64, idle sleep 20 µs.
pub fn memif_server_sections(prefix: &str, socket: &Path) -> String {
    dpdk_sections(
        prefix,
        &format!("net_memif0,role=server,id=0,socket={}", socket.display()),
        1024,
        64,
        20,
    )
}

/// A broadcast ARP request (60 bytes) from `sha`/`spa` for `tpa`.
pub fn arp_request(sha: [u8; 6], spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend([0xff; 6]);
    f.extend(sha);
    f.extend([0x08, 0x06]);
    f.extend([0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend(sha);
    f.extend(spa);
    f.extend([0; 6]);
    f.extend(tpa);
    f.resize(60, 0);
    f
}

/// Removes an EAL runtime directory (`/var/run/dpdk/<prefix>`), also when a test fails.
pub struct RuntimeDir(pub PathBuf);

impl RuntimeDir {
    pub fn new(prefix: &str) -> RuntimeDir {
        RuntimeDir(Path::new("/var/run/dpdk").join(prefix))
    }
}

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `shake serve --io dpdk`. Dropping it kills the child (by PID) if it still runs.
pub struct Appliance {
    pub child: Child,
    /// Where Prometheus answers, if the config sets `[stats] prometheus`.
    pub metrics: Option<SocketAddr>,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
    stderr: PathBuf,
    _runtime: RuntimeDir,
}

impl Appliance {
    /// Starts the appliance on `config` with EAL file prefix `prefix` (which the config must
    /// name too, for the runtime directory to be cleaned up), optionally inside network
    /// namespace `netns`, and waits (at most 30 s) until its workers run: until it says
    /// where its metrics endpoint is (after ports and workers started), or, when
    /// `metrics` is false, until it says it is serving.
    pub fn start(config: &Path, prefix: &str, netns: Option<&str>, metrics: bool) -> Appliance {
        Self::start_with(config, prefix, netns, metrics, &["--no-shconf"])
    }

    /// [`start`](Self::start) with `eal` as the command line's EAL arguments instead of
    /// `--no-shconf`: a node that another DPDK process attaches to (`[dpdk] capture`) keeps
    /// its shared config.
    pub fn start_with(
        config: &Path,
        prefix: &str,
        netns: Option<&str>,
        metrics: bool,
        eal: &[&str],
    ) -> Appliance {
        let runtime = RuntimeDir::new(prefix);
        let stderr = config.with_file_name(format!("{prefix}.stderr"));
        let bin = super::shake_bin();
        let mut cmd = match netns {
            // `ip netns exec` execs the command in place: the child's PID is shake's.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        let mut child = cmd
            .args(["serve", "--io", "dpdk", "--config"])
            .arg(config)
            .arg("--")
            .args(eal)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("start shake serve --io dpdk");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = channel();
        let stdout = child.stdout.take().unwrap();
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let mut app = Appliance {
            child,
            metrics: None,
            lines,
            reader: Some(reader),
            stderr,
            _runtime: runtime,
        };
        app.metrics = app.wait_ready(&rx, metrics, Duration::from_secs(30));
        app
    }

    fn wait_ready(
        &mut self,
        rx: &Receiver<String>,
        metrics: bool,
        limit: Duration,
    ) -> Option<SocketAddr> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(Duration::from_millis(50))) {
                // "shake: serving SHAKE/1 on dpdk ..., metrics on http://ADDR/metrics"
                Ok(line) if line.starts_with("shake: serving SHAKE/1") => {
                    if !metrics {
                        return None;
                    }
                    let at = line.split("metrics on http://").nth(1);
                    let at = at.unwrap_or_else(|| panic!("no metrics address in {line:?}"));
                    let at = at.split("/metrics").next().unwrap_or(at);
                    return Some(at.parse().unwrap());
                }
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(e) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!(
                        "the appliance did not come up ({e:?}); stdout:\n{}\nstderr:\n{}",
                        self.stdout().join("\n"),
                        self.stderr()
                    );
                }
            }
        }
    }

    /// Everything the appliance wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Every stdout line so far.
    pub fn stdout(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The port's MAC as the appliance reports it at start-up ("port NAME (id N): MAC, ...").
    pub fn port_mac(&self, name: &str) -> [u8; 6] {
        let text = self.stderr();
        let needle = format!("port {name} (id ");
        let line = text
            .lines()
            .find(|l| l.contains(&needle))
            .unwrap_or_else(|| panic!("no port line for {name} in:\n{text}"));
        let mac = line
            .split("): ")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .unwrap();
        let mut out = [0u8; 6];
        for (b, part) in out.iter_mut().zip(mac.split(':')) {
            *b = u8::from_str_radix(part, 16).unwrap();
        }
        out
    }

    /// The Prometheus text, or None if the endpoint does not answer.
    pub fn metrics_text(&self) -> Option<String> {
        let addr = self.metrics.expect("the config sets [stats] prometheus");
        let mut c = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
        c.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        c.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
        let mut s = String::new();
        c.read_to_string(&mut s).ok()?;
        Some(s)
    }

    /// Sum over workers of a metric whose line contains `label`.
    pub fn metric(&self, name: &str, label: &str) -> u64 {
        sum_metric(&self.metrics_text().unwrap_or_default(), name, label)
    }

    /// Polls the endpoint until `done(text)` or `limit` passes; returns the last text and
    /// whether it was done.
    pub fn wait_metrics(&self, limit: Duration, done: impl Fn(&str) -> bool) -> (String, bool) {
        let deadline = Instant::now() + limit;
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Some(t) = self.metrics_text() {
                if done(&t) {
                    return (t, true);
                }
                last = t;
            }
            if self.child_exited() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        (last, false)
    }

    fn child_exited(&self) -> bool {
        // try_wait needs &mut; /proc tells without reaping.
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()));
        match stat {
            Ok(s) => s.split(") ").nth(1).is_some_and(|r| r.starts_with('Z')),
            Err(_) => true,
        }
    }

    /// Sends `sig` to the appliance's PID (kill(1), so the tests need no unsafe).
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status();
    }

    /// SIGTERM, then waits at most `limit` for the exit (SIGKILL and panic after that).
    /// Returns the exit status and every stdout line.
    pub fn stop(mut self, limit: Duration) -> (ExitStatus, Vec<String>) {
        self.signal("TERM");
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "the appliance did not stop within {limit:?} of SIGTERM; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        (status, self.stdout())
    }
}

impl Drop for Appliance {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sum over workers of a Prometheus metric whose line contains `label`.
pub fn sum_metric(text: &str, name: &str, label: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The final counter line, "shake: stopped. totals rx=.. tx=.. drop.magic=1 ...", as a map;
/// zero counters are absent from it.
pub fn final_counters(lines: &[String]) -> HashMap<String, u64> {
    let line = lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("shake: stopped. totals "))
        .unwrap_or_else(|| panic!("no final counter line in:\n{}", lines.join("\n")));
    line.split_whitespace()
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}
