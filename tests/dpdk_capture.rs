//! Live capture (`[dpdk] capture = true`): `dpdk-dumpcap` attaches to a running node under
//! load and writes N frames to a pcapng file, and those frames are the requests the node
//! received (byte for byte a run of what the generator sent, in its order) and the answers
//! it sent (each the valid answer to a request the generator sent, claim MACs checked, and
//! once the capture has requests, only answers to those); dumpcap dropped nothing, and the
//! SHAKE/1 dissector reads every field of them as the node's parser does.
//!
//! Two DPDK processes besides this test, and dumpcap, a secondary of the node's:
//! - the node: hugepages (a capture maps the node's memory; the test reserves what it needs
//!   if it can and removes the node's hugepage files after it), `--no-pci`, its own
//!   `--file-prefix`, one net_memif client port on a socket in the test's directory;
//! - the generator, `shake-gen --io dpdk`, the memif server: `--no-pci --no-huge
//!   --no-shconf`, its own `--file-prefix`, bounded in count and time, interrupted (SIGINT)
//!   once the capture is done;
//! - `dpdk-dumpcap` takes no EAL arguments but the node's `--file-prefix`; it runs with
//!   `SYSFS_PCI_DEVICES` naming an empty directory, so its PCI bus scan finds no device and
//!   it probes nothing on the machine's PCI bus. So does `dpdk-proc-info` (which also gets
//!   `--no-pci`), run once to check that a secondary started as dumpcap is (no `LD_PRELOAD`)
//!   agrees with the node on mempool ops (see README "Capturing a live node").
#![cfg(feature = "dpdk")]

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::appliance::{dpdk_sections, file_prefix, final_counters, Appliance, RuntimeDir};
use common::pcap::read_pcap;
use common::tshark::{self, answer_row, request_row, udp_of, ANSWER_FIELDS, REQUEST_FIELDS};
use common::{gen_bin, json_u64, run_ok, NodeDir, NodeToml, CLAIM_KEY};
use shake::client::check_answer;
use shake::wire::shake::{ShakeRequest, ShakeRequestRepr};

/// Frames dumpcap captures.
const CAPTURED: u64 = 1200;
/// Requests a second the generator sends until the capture is done.
const RATE: u64 = 4000;
/// 2 MB hugepages the node and the capture's ring and pool take, with room.
const HUGEPAGES: u64 = 64;
const HUGEPAGES_2M: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages";

/// A program of Debian's dpdk-dev package (`make deps` installs it).
fn dpdk_tool(name: &str) -> PathBuf {
    let path = Path::new("/usr/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: apt-get install dpdk-dev (`make deps`)",
        path.display()
    );
    path
}

fn meminfo(key: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(key)?.trim().split(' ').next()?.parse().ok())
        .unwrap_or(0)
}

/// The mount points of hugetlbfs.
fn hugetlbfs_mounts() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.get(2) == Some(&"hugetlbfs")).then(|| PathBuf::from(f[1]))
        })
        .collect()
}

/// At least `pages` free 2 MB hugepages and a hugetlbfs mount: adds the missing pages to
/// those reserved (never takes any away: other processes on the machine may use them) and
/// mounts /dev/hugepages if nothing is mounted. Panics, saying what to do, where it cannot.
fn ensure_hugepages(pages: u64) {
    assert_eq!(
        meminfo("Hugepagesize:"),
        2048,
        "the test expects 2 MB default hugepages"
    );
    let free = meminfo("HugePages_Free:");
    if free < pages {
        let reserved: u64 = std::fs::read_to_string(HUGEPAGES_2M)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let _ = std::fs::write(HUGEPAGES_2M, (reserved + pages - free).to_string());
    }
    if hugetlbfs_mounts().is_empty() {
        let _ = std::fs::create_dir_all("/dev/hugepages");
        let _ = Command::new("mount")
            .args(["-t", "hugetlbfs", "nodev", "/dev/hugepages"])
            .status();
    }
    let free = meminfo("HugePages_Free:");
    assert!(
        free >= pages && !hugetlbfs_mounts().is_empty(),
        "live capture needs {pages} free 2 MB hugepages and hugetlbfs mounted (a capture \
         process maps the node's hugepage memory); {free} free, mounts {:?}: run as root, \
         or `make hugepages`",
        hugetlbfs_mounts()
    );
}

/// The node's hugepage files (`<prefix>map_<n>` in hugetlbfs), removed when the test ends:
/// without `--huge-unlink` they outlive the node, and only a node started again with the
/// same prefix would remove them.
struct HugepageFiles(String);

impl Drop for HugepageFiles {
    fn drop(&mut self) {
        for dir in hugetlbfs_mounts() {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{}map_", self.0))
                {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

/// A child process killed (by its PID) if the test ends while it runs.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Polls `done` every 20 ms until it holds or `limit` passes.
fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

/// One Enhanced Packet Block of a pcapng file.
#[derive(Debug)]
struct Epb {
    interface: u32,
    /// epb_flags' direction: 1 inbound, 2 outbound, 0 not given.
    direction: u32,
    data: Vec<u8>,
}

/// The link types of the interfaces (IDBs) and the packets (EPBs) of a little-endian
/// pcapng file, as DPDK's pcapng writer makes it on x86.
fn read_pcapng(bytes: &[u8]) -> (Vec<u16>, Vec<Epb>) {
    let u16_at = |at: usize| u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap());
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    assert_eq!(u32_at(0), 0x0a0d_0d0a, "a pcapng section header first");
    assert_eq!(u32_at(8), 0x1a2b_3c4d, "little-endian pcapng");
    let (mut interfaces, mut packets) = (Vec::new(), Vec::new());
    let mut at = 0;
    while at + 12 <= bytes.len() {
        let (kind, len) = (u32_at(at), u32_at(at + 4) as usize);
        assert!(
            len >= 12 && len % 4 == 0 && at + len <= bytes.len(),
            "block at {at}"
        );
        assert_eq!(
            u32_at(at + len - 4) as usize,
            len,
            "trailing length at {at}"
        );
        let body = at + 8;
        match kind {
            1 => interfaces.push(u16_at(body)),
            6 => {
                let caplen = u32_at(body + 12) as usize;
                let data = bytes[body + 20..body + 20 + caplen].to_vec();
                // Options after the data (padded to 4): code, length, value (padded).
                let mut opt = body + 20 + caplen.div_ceil(4) * 4;
                let mut direction = 0;
                while opt + 4 <= at + len - 4 {
                    let (code, olen) = (u16_at(opt), usize::from(u16_at(opt + 2)));
                    if code == 0 {
                        break;
                    }
                    if code == 2 && olen == 4 {
                        direction = u32_at(opt + 4) & 3;
                    }
                    opt += 4 + olen.div_ceil(4) * 4;
                }
                packets.push(Epb {
                    interface: u32_at(body),
                    direction,
                    data,
                });
            }
            _ => {}
        }
        at += len;
    }
    (interfaces, packets)
}

/// The node's `[dpdk]` and `[[port]]` with capture on, on hugepages, its port `vdev`.
fn capture_sections(prefix: &str, vdev: &str) -> String {
    let sections = dpdk_sections(prefix, vdev, 1024, 64, 20);
    for line in ["memory_mb = 256\n", "huge = false\n"] {
        assert!(sections.contains(line), "{sections}");
    }
    sections
        .replace("memory_mb = 256\n", "")
        .replace("huge = false\n", "huge = true\ncapture = true\n")
}

/// The generator's EAL (`--no-pci --no-huge --no-shconf`, its own prefix) with a net_memif
/// port in `role` on `socket`, a file (not the abstract socket namespace) that shows when the
/// server listens.
fn gen_eal(prefix: &str, role: &str, socket: &Path) -> Vec<String> {
    let mut a: Vec<String> = ["--no-pci", "--no-huge", "-m", "256", "--no-shconf"]
        .map(String::from)
        .into();
    a.extend(
        [
            "--file-prefix",
            prefix,
            "--lcores",
            "0@0",
            "--log-level",
            "error",
        ]
        .map(String::from),
    );
    a.push(format!(
        "--vdev=net_memif0,role={role},id=0,socket={},socket-abstract=no",
        socket.display()
    ));
    a
}

#[test]
fn dumpcap_captures_the_requests_and_answers_of_a_node_under_load() {
    let dumpcap = dpdk_tool("dpdk-dumpcap");
    let proc_info = dpdk_tool("dpdk-proc-info");
    ensure_hugepages(HUGEPAGES);
    let node = NodeDir::with_activity(
        r#"
[activity]
id = 14
name = "capture"
epoch = 0

[[sponsor]]
id = 101
budget_cents = 3000000
packets = 30000
greeting_resources = [1]

[[round]]
id = 1
start_s = 0
duration_s = 30
win_probability = 0.5
greeting_probability = 0.3
"#,
    );
    // Red packets are paced over the round from the node's first shake: 1000 a second
    // come due, so the capture's tenths of a second hold some.
    let p = node.path();
    let prefix = file_prefix("capture-node");
    let _hugepage_files = HugepageFiles(prefix.clone());
    let socket = p.join("gen.memif");
    // The node is the memif client: net_memif's server side leaves its listening socket's
    // interrupt source registered after it frees it (DPDK 22.11), which the EAL's interrupt
    // thread can touch at exit once a capture has run (README "Capturing a live node").
    NodeToml::new("10.99.6.1", 100_000)
        .port(7000)
        .activity(r#"epoch = "now""#)
        .extra(&capture_sections(
            &prefix,
            &format!(
                "net_memif0,role=client,id=0,socket={},socket-abstract=no",
                socket.display()
            ),
        ))
        .write(p);

    // The load first, as the memif server, so the node's port connects when it starts: the
    // generator plays its phones from then until this test interrupts it (SIGINT) or its
    // time is up, recording every frame it sends. Enough phones that each shakes once in
    // that time (the capture sees decisions, red packets among them, not only THROTTLED).
    let gen_prefix = file_prefix("capture-gen");
    let _gen_runtime = RuntimeDir::new(&gen_prefix);
    let sent_pcap = p.join("sent.pcap");
    let report = p.join("gen.json");
    let gen_log = p.join("gen.log");
    let mut generator = Running(
        Command::new(gen_bin())
            .args(["--io", "dpdk", "--quiet", "--node-config"])
            .arg(node.config())
            .args(["--users", "40000", "--bad-share", "0.05"])
            .args(["--count", "100000", "--rate", &RATE.to_string()])
            // Naps between paced sends: a spinning generator starves dumpcap's start.
            .args(["--idle-sleep-us", "100", "--link-wait", "30"])
            .args(["--duration", "20", "--report"])
            .arg(&report)
            .arg("--pcap-out")
            .arg(&sent_pcap)
            .arg("--")
            .args(gen_eal(&gen_prefix, "server", &socket))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&gen_log).unwrap())
            .spawn()
            .expect("start shake-gen"),
    );
    assert!(
        wait_for(Duration::from_secs(20), || socket.exists()),
        "the generator's memif socket: {}",
        std::fs::read_to_string(&gen_log).unwrap_or_default()
    );
    let app = Appliance::start_with(&node.config(), &prefix, None, false, &[]);
    let start = app.stdout().join("\n");
    assert!(
        start.contains(&format!(
            "packet capture on (dpdk-dumpcap --file-prefix {prefix})"
        )),
        "the start line says capture is on:\n{start}"
    );

    // Secondary processes see no PCI device at all.
    let no_pci = tempfile::tempdir().unwrap();
    // A secondary started as dumpcap is agrees with the node on mempool ops: it names the
    // node's pool's ops as the node created it (the capture's pool, which dumpcap creates
    // and the node fills, relies on the same agreement).
    let pools = run_ok(
        Command::new(&proc_info)
            .env("SYSFS_PCI_DEVICES", no_pci.path())
            .args(["--file-prefix", &prefix, "--no-pci", "--log-level=error"])
            .args(["--", "--show-mempool"]),
    );
    let ours = pools
        .split("mempool <")
        .find(|s| s.starts_with("shake_mp_p0>"))
        .unwrap_or_else(|| panic!("no shake_mp_p0 in:\n{pools}"));
    assert!(ours.contains("ops_name: <ring_mp_mc>"), "{ours}");

    // dumpcap on the node under load, until it has its frames.
    let pcapng = p.join("live.pcapng");
    let dumpcap_err = p.join("dumpcap.stderr");
    let mut capture = Running(
        Command::new(&dumpcap)
            .env("SYSFS_PCI_DEVICES", no_pci.path())
            .args(["--file-prefix", &prefix, "-i", "net_memif0", "-p"])
            .args(["-c", &CAPTURED.to_string(), "-a", "duration:20", "-w"])
            .arg(&pcapng)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&dumpcap_err).unwrap())
            .spawn()
            .expect("start dpdk-dumpcap"),
    );
    let stderr = || std::fs::read_to_string(&dumpcap_err).unwrap_or_default();
    let done = wait_for(Duration::from_secs(30), || {
        !matches!(capture.0.try_wait(), Ok(None))
    });
    assert!(done, "dpdk-dumpcap did not finish:\n{}", stderr());
    let status = capture.0.wait().unwrap();
    assert!(status.success(), "dpdk-dumpcap: {status}\n{}", stderr());

    // The load stops (SIGINT: the generator drains and reports), then the node.
    let _ = Command::new("kill")
        .args(["-INT", &generator.0.id().to_string()])
        .status();
    let stopped = wait_for(Duration::from_secs(20), || {
        !matches!(generator.0.try_wait(), Ok(None))
    });
    let gen_status = generator.0.wait().unwrap();
    assert!(
        stopped && gen_status.success(),
        "shake-gen: {gen_status}\n{}",
        std::fs::read_to_string(&gen_log).unwrap_or_default()
    );
    let (status, lines) = app.stop(Duration::from_secs(15));
    assert!(status.success(), "appliance exit {status}");
    let counters = final_counters(&lines);
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json_u64(&r, &["tally", "invalid"]), 0, "{r}");
    assert_eq!(json_u64(&r, &["tally", "unmatched"]), 0, "{r}");
    assert_eq!(counters["dropped"], 0, "{counters:?}");

    // dumpcap lost nothing: "Packets received/dropped on interface 'net_memif0': R/0 (..)".
    let stats = stderr();
    let tally = stats
        .split("on interface 'net_memif0': ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .unwrap_or_else(|| panic!("no capture statistics in:\n{stats}"));
    let (received, dropped) = tally.split_once('/').unwrap();
    assert_eq!(dropped, "0", "{stats}");
    assert!(received.parse::<u64>().unwrap() >= CAPTURED, "{stats}");

    let (interfaces, packets) = read_pcapng(&std::fs::read(&pcapng).unwrap());
    assert_eq!(interfaces, [1], "one Ethernet interface");
    // dumpcap writes what it dequeues in bursts of up to 32 and checks -c after each.
    let n = packets.len() as u64;
    assert!(
        (CAPTURED..CAPTURED + 32).contains(&n),
        "{n} frames for -c {CAPTURED}"
    );
    assert!(packets.iter().all(|e| e.interface == 0));
    assert!(
        packets.iter().all(|e| e.direction == 1 || e.direction == 2),
        "every frame says its direction"
    );

    // Requests: byte for byte a run of what the generator sent, in its order. (A frame
    // the generator wrote but its TX refused never left, hence a subsequence.)
    let sent = read_pcap(&sent_pcap);
    let key = |f: &[u8]| {
        let (_, _, payload) = udp_of(f).expect("UDP");
        (payload[8..16].to_vec(), payload[16..20].to_vec())
    };
    let sent_at: HashMap<_, usize> = sent.iter().enumerate().map(|(i, f)| (key(f), i)).collect();
    let inbound: Vec<&Epb> = packets.iter().filter(|e| e.direction == 1).collect();
    let first = *sent_at
        .get(&key(&inbound[0].data))
        .expect("the first captured request was sent");
    let mut unsent = sent[first..].iter();
    for (i, e) in inbound.iter().enumerate() {
        assert!(
            unsent.any(|s| *s == e.data),
            "captured request {i} is not the generator's next frame"
        );
    }

    // Answers: each the node's valid answer (echoes, outcome rules, claim MAC; addresses
    // swapped) to a request the generator sent; once the first answer to a captured
    // request is out, only answers to captured requests follow (the others answer requests
    // received before the capture began). An answer sent twice (TX refused it once) is
    // the same bytes both times.
    let captured: HashMap<_, usize> = inbound
        .iter()
        .enumerate()
        .map(|(i, e)| (key(&e.data), i))
        .collect();
    let mut answered: HashMap<_, &[u8]> = HashMap::new();
    let mut in_capture = false;
    let mut outcomes: HashMap<_, u64> = HashMap::new();
    for (at, e) in packets.iter().enumerate().filter(|(_, e)| e.direction == 2) {
        let k = key(&e.data);
        let request = &sent[*sent_at
            .get(&k)
            .unwrap_or_else(|| panic!("answer {at} to no request the generator sent"))];
        let (_, _, rp) = udp_of(request).unwrap();
        let r = ShakeRequestRepr::parse(&ShakeRequest::new_checked(rp).unwrap()).unwrap();
        let (_, _, payload) = udp_of(&e.data).unwrap();
        let a = check_answer(&r, payload, &CLAIM_KEY)
            .unwrap_or_else(|err| panic!("answer {at}: {err}"));
        *outcomes.entry(a.outcome).or_default() += 1;
        let swapped = [&request[6..12], &request[0..6]].concat();
        assert_eq!(e.data[0..12], swapped[..], "answer {at}: MACs swapped");
        assert_eq!(e.data[26..30], request[30..34], "answer {at}: IPs swapped");
        assert_eq!(e.data[30..34], request[26..30], "answer {at}: IPs swapped");
        match captured.contains_key(&k) {
            true => in_capture = true,
            false => assert!(!in_capture, "answer {at} to a request before the capture"),
        }
        if let Some(before) = answered.insert(k, &e.data) {
            assert_eq!(before, &e.data[..], "answer {at} sent twice, differently");
        }
    }
    assert!(in_capture, "answers to captured requests");
    assert!(
        outcomes.contains_key(&shake::wire::shake::Outcome::RedPacket),
        "red packets in the capture: {outcomes:?}; node {counters:?}"
    );
    // The worker answers a burst in the pass that received it: only the last bursts'
    // requests can miss their answers when the capture stops.
    let settled = inbound.len().saturating_sub(64);
    let unanswered = inbound[..settled]
        .iter()
        .filter(|e| !answered.contains_key(&key(&e.data)))
        .count();
    assert_eq!(unanswered, 0, "captured requests without their answer");

    // The dissector reads the live capture as the node's parser does.
    let Some(tshark) =
        tshark::tshark("dumpcap_captures_the_requests_and_answers_of_a_node_under_load")
    else {
        return;
    };
    // One run per direction: tshark prints a field named twice in one run only once.
    let requests = tshark::fields(&tshark, &pcapng, false, REQUEST_FIELDS);
    let answers = tshark::fields(&tshark, &pcapng, false, ANSWER_FIELDS);
    assert_eq!(
        (requests.len(), answers.len()),
        (packets.len(), packets.len())
    );
    for (i, e) in packets.iter().enumerate() {
        let (_, _, payload) = udp_of(&e.data).unwrap();
        if e.direction == 1 {
            assert_eq!(requests[i], request_row(payload), "frame {}", i + 1);
        } else {
            assert_eq!(answers[i], answer_row(payload), "frame {}", i + 1);
        }
    }
}

/// A node with capture on refuses, at start, command-line EAL arguments that would keep
/// a capture from attaching, and says which and why.
#[test]
fn capture_refuses_conflicting_command_line_args() {
    let node = NodeDir::with_activity(
        "[activity]\nid = 1\nname = \"c\"\nepoch = 0\n\n[[sponsor]]\nid = 1\nbudget_cents = 100\npackets = 1\n\n[[round]]\nid = 1\nstart_s = 0\nduration_s = 60\nwin_probability = 0.5\n",
    );
    let prefix = file_prefix("capture-refused");
    let _runtime = RuntimeDir::new(&prefix);
    NodeToml::new("10.99.6.1", 100)
        .extra(&capture_sections(
            &prefix,
            &format!(
                "net_memif0,role=server,id=0,socket={}",
                node.path().join("n.memif").display()
            ),
        ))
        .write(node.path());
    for arg in ["--no-shconf", "--huge-unlink", "--in-memory"] {
        let out = Command::new(common::shake_bin())
            .args(["serve", "--io", "dpdk", "--config"])
            .arg(node.config())
            .args(["--", arg])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{arg}: {stderr}");
        assert!(
            stderr.contains(&format!("{arg} on the command line"))
                && stderr.contains("capture = true"),
            "{arg}: {stderr}"
        );
    }
}
