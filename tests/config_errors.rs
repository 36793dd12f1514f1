//! Operator errors in the node config, its `[dpdk]` section, the activity and the key files:
//! every message names the file, the line and the key, says each thing once, and never
//! says line 0.
//!
//! Errors are rendered as the binary prints them (`shake: {:#}` of an `anyhow::Error`, which
//! appends every `source()` in the chain), so a message that repeats its cause shows here.

use std::path::{Path, PathBuf};

use shake::activity::Activity;
use shake::node::Node;
use shake::node_config::NodeConfig;

const NODE: &str = r#"# A test node. The index below is 0, the count 1.
[node]
index = 0
count = 1
ipv4 = "127.0.0.1"

[activity]
file = "act.toml"
epoch = "now"

[keys]
token_key = "token.key"
claim_key = "claim.key"

[blacklist]
users = [5]
file = "black.txt"
"#;

const DPDK: &str = r#"
[dpdk]
lcores = "0-1"
huge = false
file_prefix = "cfg-errors"
handoff_ring = 1024

[[port]]
name = "net_null0"
mtu = 1500

[[port]]
name = "net_null1"
rx_desc = 512
"#;

const ACT: &str = r#"[activity]
id = 7
name = "test"

[limits]
per_user = 3
per_sponsor = 1

[[sponsor]]
id = 11
budget_cents = 1000
packets = 10
rounds = [1]

[[sponsor]]
id = 12
budget_cents = 500
packets = 5

[[round]]
id = 1
start_s = 0
duration_s = 60
win_probability = 0.5

[[round]]
id = 2
start_s = 100
duration_s = 60
win_probability = 0.5
"#;

const TOKEN_HEX: &str = "00112233445566778899aabbccddeeff";

/// A node directory: node.toml, act.toml, both keys and a blacklist file.
struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new(node: &str, act: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = Dir { dir };
        d.write("node.toml", node);
        d.write("act.toml", act);
        d.write("token.key", &format!("{TOKEN_HEX}\n"));
        d.write("claim.key", "ffeeddccbbaa99887766554433221100\n");
        d.write("black.txt", "# banned\n17\n18\n");
        d
    }

    fn good() -> Self {
        Self::new(NODE, ACT)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).unwrap();
    }

    fn remove(&self, name: &str) {
        std::fs::remove_file(self.path(name)).unwrap();
    }

    /// Everything a node reads at start, as the binary reports the first error.
    fn load(&self) -> Result<(), String> {
        load(&self.path("node.toml"))
    }
}

fn load(config: &Path) -> Result<(), String> {
    let run = || -> anyhow::Result<()> {
        let c = NodeConfig::load(config)?;
        c.activity()?;
        c.identity()?;
        c.blacklist()?;
        Ok(())
    };
    run().map_err(|e| format!("{e:#}"))
}

/// The 1-based line where `needle` first starts in `text`.
fn line_of(text: &str, needle: &str) -> usize {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in the text"));
    text[..at].matches('\n').count() + 1
}

/// The message names `file` at `line`, and `key`; it never says line 0 and never repeats
/// itself (no part between ": " separators appears twice).
#[track_caller]
fn assert_names(message: &str, file: &Path, line: usize, key: &str) {
    let at = format!("{}:{line}:", file.display());
    assert!(message.contains(&at), "{message:?} does not name {at}");
    assert!(
        message.contains(&format!(" {key}")),
        "{message:?} does not name the key {key}"
    );
    assert!(!message.contains(":0:"), "{message:?} says line 0");
    let parts: Vec<&str> = message.split(": ").collect();
    for (i, p) in parts.iter().enumerate() {
        assert!(!parts[i + 1..].contains(p), "{message:?} repeats {p:?}");
    }
}

/// The node config's error at the line of `needle` in `node`.
#[track_caller]
fn node_error(node: &str, needle: &str, key: &str) {
    let d = Dir::new(node, ACT);
    let e = d.load().expect_err("the config is wrong");
    assert_names(&e, &d.path("node.toml"), line_of(node, needle), key);
}

/// The activity's error at the line of `needle` in `act`.
#[track_caller]
fn activity_error(act: &str, needle: &str, key: &str) {
    let d = Dir::new(NODE, act);
    let e = d.load().expect_err("the activity is wrong");
    assert_names(&e, &d.path("act.toml"), line_of(act, needle), key);
}

#[test]
fn the_fixture_loads() {
    Dir::good().load().unwrap();
    Dir::new(&format!("{NODE}{DPDK}"), ACT).load().unwrap();
}

// --- Key files: the node config's file, line and key, and the key file, each once. ---

#[test]
fn missing_key_file_names_the_config_the_key_and_the_file_once() {
    let d = Dir::good();
    d.remove("token.key");
    let e = d.load().unwrap_err();
    assert_names(
        &e,
        &d.path("node.toml"),
        line_of(NODE, "token_key"),
        "keys.token_key",
    );
    let key_file = d.path("token.key").display().to_string();
    assert_eq!(e.matches(&key_file).count(), 1, "{e:?}");
    assert_eq!(e.matches("No such file").count(), 1, "{e:?}");
}

#[test]
fn short_key_file_says_so_once() {
    let d = Dir::good();
    d.write("claim.key", "0011\n");
    let e = d.load().unwrap_err();
    assert_names(
        &e,
        &d.path("node.toml"),
        line_of(NODE, "claim_key"),
        "keys.claim_key",
    );
    assert_eq!(e.matches("claim.key").count(), 1, "{e:?}");
    assert!(e.contains("32 hex digits"), "{e:?}");
}

#[test]
fn bad_hex_key_file_does_not_echo_the_key() {
    let d = Dir::good();
    let bad = format!("zz{}", &TOKEN_HEX[2..]);
    d.write("token.key", &bad);
    let e = d.load().unwrap_err();
    assert_names(
        &e,
        &d.path("node.toml"),
        line_of(NODE, "token_key"),
        "keys.token_key",
    );
    // A nearly right key is nearly the secret: it never reaches a log.
    assert!(
        !e.contains(&bad[2..]),
        "{e:?} shows the key file's contents"
    );
}

// --- Files that cannot be read: never line 0. ---

#[test]
fn missing_node_config_says_no_line_0() {
    let d = Dir::good();
    d.remove("node.toml");
    let e = d.load().unwrap_err();
    assert!(
        e.contains(&d.path("node.toml").display().to_string()),
        "{e}"
    );
    assert!(!e.contains(":0:"), "{e:?} says line 0");
    assert_eq!(e.matches("No such file").count(), 1, "{e:?}");
}

#[test]
fn missing_activity_file_names_the_config_line_and_key() {
    let d = Dir::good();
    d.remove("act.toml");
    let e = d.load().unwrap_err();
    assert_names(
        &e,
        &d.path("node.toml"),
        line_of(NODE, "act.toml"),
        "activity.file",
    );
    let act = d.path("act.toml").display().to_string();
    assert_eq!(e.matches(&act).count(), 1, "{e:?}");
    assert_eq!(e.matches("No such file").count(), 1, "{e:?}");
}

#[test]
fn missing_activity_file_on_its_own_says_no_line_0() {
    let e = Activity::load(Path::new("/nonexistent/a.toml")).unwrap_err();
    let e = format!("{:#}", anyhow::Error::from(e));
    assert!(e.starts_with("/nonexistent/a.toml"), "{e}");
    assert!(!e.contains(":0:"), "{e:?} says line 0");
}

#[test]
fn blacklist_files() {
    let d = Dir::good();
    d.remove("black.txt");
    let e = d.load().unwrap_err();
    assert_names(
        &e,
        &d.path("node.toml"),
        line_of(NODE, "black.txt"),
        "blacklist.file",
    );
    d.write("black.txt", "# banned\n17\nseventeen\n");
    let e = d.load().unwrap_err();
    assert_names(&e, &d.path("black.txt"), 3, "blacklist.file");
}

// --- The node config: unknown key, wrong type, missing key, bad values. ---

#[test]
fn node_unknown_key() {
    node_error(
        &NODE.replace("count = 1", "count = 1\nbogus = 3"),
        "bogus",
        "node.bogus",
    );
}

#[test]
fn node_wrong_type_names_the_key() {
    node_error(
        &NODE.replace("count = 1", "count = \"one\""),
        "count =",
        "node.count",
    );
    node_error(
        &NODE.replace("epoch = \"now\"", "epoch = \"soon\""),
        "soon",
        "activity.epoch",
    );
    node_error(
        &NODE.replace("users = [5]", "users = [\n  5,\n  \"six\",\n]"),
        "six",
        "blacklist.users",
    );
}

#[test]
fn node_missing_key() {
    let node = NODE.replace("ipv4 = \"127.0.0.1\"\n", "");
    node_error(&node, "[node]", "node.ipv4");
    let node = NODE.replace("claim_key = \"claim.key\"\n", "");
    node_error(&node, "[keys]", "keys.claim_key");
}

#[test]
fn node_bad_values_name_their_own_line() {
    // The comment on line 1 mentions "index": the error is at the key, not the first match.
    node_error(
        &NODE.replace("index = 0", "index = 1"),
        "index = 1",
        "node.index",
    );
    node_error(
        &format!("{NODE}\n[throttle]\n# floor_ms and ceiling_ms in ms\nfloor_ms = 0\n"),
        "floor_ms = 0",
        "throttle.floor_ms",
    );
    node_error(
        &NODE.replace(
            "ipv4 = \"127.0.0.1\"",
            "ipv4 = \"127.0.0.1\"\nmac = \"02:00\"",
        ),
        "mac =",
        "node.mac",
    );
    node_error(
        &format!("{NODE}\n[socket]\nworkers = 1\nbatch = 4096\n"),
        "batch",
        "socket.batch",
    );
}

#[test]
fn ipv6_addresses_name_their_key_and_line() {
    let with = |lines: &str| {
        NODE.replace(
            "ipv4 = \"127.0.0.1\"",
            &format!("ipv4 = \"127.0.0.1\"\n{lines}"),
        )
    };
    // Not an address at all: the parser's error, at the key.
    node_error(&with("ipv6 = \"2001:db8::g\""), "ipv6 =", "node.ipv6");
    node_error(&with("ipv6 = 7"), "ipv6 =", "node.ipv6");
    // Addresses that cannot be the node's global one.
    for bad in ["::", "::1", "ff02::1", "fe80::1", "::ffff:10.0.0.1"] {
        node_error(&with(&format!("ipv6 = \"{bad}\"")), "ipv6 =", "node.ipv6");
    }
    // A link-local address that is not one, or without a global address.
    let ipv6 = "ipv6 = \"2001:db8::1\"\n";
    for bad in ["2001:db8::2", "fe80::", "fe80::zz", "ff02::1"] {
        node_error(
            &with(&format!("{ipv6}link_local = \"{bad}\"")),
            "link_local =",
            "node.link_local",
        );
    }
    node_error(
        &with("link_local = \"fe80::1\""),
        "link_local =",
        "node.link_local",
    );
    // [socket] bind6: IPv6 only, and only with node.ipv6.
    let socket = |node: String, bind6: &str| format!("{node}\n[socket]\nbind6 = \"{bind6}\"\n");
    node_error(
        &socket(with(ipv6), "127.0.0.1:0"),
        "bind6 =",
        "socket.bind6",
    );
    node_error(&socket(with(ipv6), "[::1]"), "bind6 =", "socket.bind6");
    node_error(
        &socket(NODE.to_owned(), "[::1]:0"),
        "bind6 =",
        "socket.bind6",
    );
    // And the good ones load.
    let d = Dir::new(
        &socket(with(&format!("{ipv6}link_local = \"fe80::2\"")), "[::1]:0"),
        ACT,
    );
    assert_eq!(d.load(), Ok(()));
}

// --- The [dpdk] section and its [[port]]s. ---

#[test]
fn dpdk_wrong_type_and_unknown_key() {
    let node = format!("{NODE}{DPDK}");
    node_error(
        &node.replace("huge = false", "huge = \"no\""),
        "huge",
        "dpdk.huge",
    );
    node_error(
        &node.replace("rx_desc = 512", "rx_desc = 512\nrx_ring = 3"),
        "rx_ring",
        "port[1].rx_ring",
    );
    node_error(
        &node.replace("mtu = 1500", "mtu = \"big\""),
        "mtu",
        "port[0].mtu",
    );
}

#[test]
fn dpdk_bad_values_name_their_key() {
    let node = format!("{NODE}{DPDK}");
    node_error(
        &node.replace("handoff_ring = 1024", "handoff_ring = 100"),
        "handoff_ring",
        "dpdk.handoff_ring",
    );
    node_error(
        &node.replace("file_prefix = \"cfg-errors\"", "file_prefix = \"a/b\""),
        "file_prefix",
        "dpdk.file_prefix",
    );
    node_error(
        &node.replace("rx_desc = 512", "rx_desc = 0"),
        "rx_desc",
        "port[1].rx_desc",
    );
    node_error(
        &node.replace("name = \"net_null1\"", "name = \"net_null1\"\nid = 1"),
        "id = 1",
        "port[1].id",
    );
}

/// net_af_xdp's arguments and ring sizes are checked at load, each error at its key: DPDK
/// would report them as EINVAL from queue setup, or "Invalid kvargs" in its log.
#[test]
fn af_xdp_vdev_arguments_and_ring_size_name_their_key() {
    let afxdp = format!("{NODE}{DPDK}")
        .replace(
            "huge = false",
            "huge = false\nvdevs = [\"net_af_xdp0,iface=eth1\"]",
        )
        .replace("net_null0", "net_af_xdp0");
    let vdevs = |v: &str| afxdp.replace("\"net_af_xdp0,iface=eth1\"", v);
    Dir::new(&afxdp, ACT).load().unwrap();
    // The XSK rings take powers of two only.
    node_error(
        &afxdp.replace("mtu = 1500", "mtu = 1500\nrx_desc = 1000"),
        "rx_desc = 1000",
        "port[0].rx_desc",
    );
    for bad in [
        "\"net_af_xdp0\"",
        "\"net_af_xdp0,iface=\"",
        "\"net_af_xdp0,iface=an-interface-name-too-long\"",
        "\"net_af_xdp0,iface=eth1,queues=2\"",
        "\"net_af_xdp0,iface=eth1,queue_count=0\"",
        "\"net_af_xdp0,iface=eth1,start_queue=-1\"",
        "\"net_af_xdp0,iface=eth1,busy_budget=70000\"",
        "\"net_af_xdp0,iface=eth1,copy\"",
    ] {
        node_error(&vdevs(bad), "vdevs", "dpdk.vdevs[0]");
    }
    // Two sockets on one queue: the second is pointed at.
    node_error(
        &vdevs(
            "\"net_af_xdp0,iface=eth1,queue_count=2\",\n  \"net_af_xdp1,iface=eth1,start_queue=1\"",
        ),
        "net_af_xdp1",
        "dpdk.vdevs[1]",
    );
    let d = Dir::new(
        &vdevs(
            "\"net_af_xdp0,iface=eth1,queue_count=2,busy_budget=0,force_copy=1,xdp_prog=f.o\",\n  \"net_af_xdp1,iface=eth1,start_queue=2\"",
        ),
        ACT,
    );
    assert_eq!(d.load(), Ok(()));
}

#[test]
fn dpdk_capture_conflicts_name_their_key() {
    let node = format!("{NODE}{DPDK}");
    // Capture needs hugepage memory a second process can map.
    node_error(
        &node.replace("huge = false", "huge = false\ncapture = true"),
        "capture = true",
        "dpdk.capture",
    );
    node_error(
        &node.replace("huge = false", "capture = \"on\""),
        "capture =",
        "dpdk.capture",
    );
    // And EAL arguments that take the shared memory or the multi-process socket away.
    let capture = node.replace("huge = false", "capture = true");
    for arg in [
        "--huge-unlink",
        "--huge-unlink=always",
        "--no-shconf",
        "--in-memory",
        "--no-huge",
    ] {
        let text = capture.replace(
            "handoff_ring = 1024",
            &format!("handoff_ring = 1024\nextra_args = [\"-m\", \"64\", \"{arg}\"]"),
        );
        let d = Dir::new(&text, ACT);
        let e = d.load().expect_err(arg);
        assert_names(
            &e,
            &d.path("node.toml"),
            line_of(&text, "extra_args"),
            "dpdk.extra_args",
        );
        assert!(e.contains(arg), "{e:?} does not name {arg}");
    }
    // The EAL's default unlinking (existing files at start) leaves them to attach to.
    let ok = capture.replace(
        "handoff_ring = 1024",
        "handoff_ring = 1024\nextra_args = [\"--huge-unlink=existing\"]",
    );
    assert_eq!(Dir::new(&ok, ACT).load(), Ok(()));
}

// --- The activity: unknown key, wrong type, missing key, bad values. ---

#[test]
fn activity_unknown_key() {
    activity_error(
        &ACT.replace("per_sponsor = 1", "per_sponsor = 1\nper_round = 2"),
        "per_round",
        "limits.per_round",
    );
}

#[test]
fn activity_wrong_type_names_the_key() {
    activity_error(
        &ACT.replace("packets = 5", "packets = \"five\""),
        "five",
        "sponsor[1].packets",
    );
}

#[test]
fn activity_missing_key() {
    let act = ACT.replace("start_s = 100\nduration_s = 60\n", "start_s = 100\n");
    let d = Dir::new(NODE, &act);
    let e = d.load().unwrap_err();
    // The second [[round]] is where the key is missing.
    let line = act
        .lines()
        .enumerate()
        .filter(|(_, l)| *l == "[[round]]")
        .nth(1)
        .unwrap()
        .0
        + 1;
    assert_names(&e, &d.path("act.toml"), line, "round[1].duration_s");
}

#[test]
fn activity_bad_values_name_their_key_and_line() {
    activity_error(
        &ACT.replace("packets = 5", "packets = 0"),
        "packets = 0",
        "sponsor[1].packets",
    );
    activity_error(
        &ACT.replace("budget_cents = 1000", "budget_cents = 1"),
        "budget_cents = 1",
        "sponsor[0].budget_cents",
    );
    activity_error(
        &ACT.replace("rounds = [1]", "rounds = [9]"),
        "rounds = [9]",
        "sponsor[0].rounds",
    );
    activity_error(
        &ACT.replace("id = 12", "id = 11"),
        "id = 11\nbudget_cents = 500",
        "sponsor[1].id",
    );
    activity_error(
        &ACT.replacen("win_probability = 0.5", "win_probability = 1.5", 1),
        "win_probability = 1.5",
        "round[0].win_probability",
    );
    activity_error(
        &ACT.replace("start_s = 100", "start_s = 30"),
        "start_s = 30",
        "round[1].start_s",
    );
    activity_error(
        &ACT.replace("per_sponsor = 1", "per_sponsor = 4"),
        "per_sponsor",
        "limits.per_sponsor",
    );
    activity_error(&ACT.replace("id = 7", "id = 0"), "id = 0", "activity.id");
}

#[test]
fn activity_error_line_is_first_line_of_multiline_key() {
    // A key whose value spans lines: the line of the key itself.
    let act = ACT.replace("rounds = [1]", "rounds = [\n  1,\n  9,\n]");
    activity_error(&act, "rounds = [", "sponsor[0].rounds");
}

// --- A live reload that changes which sponsors or rounds exist. ---

#[test]
fn reload_that_adds_a_sponsor_names_where() {
    let d = Dir::good();
    let mut node = Node::load(&d.path("node.toml")).unwrap();
    let act = ACT.replace(
        "[[round]]\nid = 1",
        "[[sponsor]]\nid = 13\nbudget_cents = 5\npackets = 5\n\n[[round]]\nid = 1",
    );
    d.write("act.toml", &act);
    let e = format!("{:#}", anyhow::Error::from(node.reload().unwrap_err()));
    assert_names(
        &e,
        &d.path("act.toml"),
        line_of(&act, "id = 13"),
        "sponsor[2].id",
    );
}

// --- Values that parse but break what is built from them (found with the fuzz targets). ---

#[test]
fn activity_id_must_fit_the_packet_ids() {
    // Packet ids carry the activity in 24 bits: 2^24 + 7 would issue activity 7's ids.
    activity_error(
        &ACT.replace("id = 7", "id = 16777223"),
        "id = 16777223",
        "activity.id",
    );
}

#[test]
fn times_must_fit_the_schedule() {
    activity_error(
        &ACT.replace(
            "name = \"test\"",
            "name = \"test\"\nepoch = 9223372036854775807",
        ),
        "epoch =",
        "activity.epoch",
    );
    activity_error(
        &ACT.replace("start_s = 100", "start_s = 9223372036854775000"),
        "start_s = 9223372036854775000",
        "round[1].start_s",
    );
    for (line, key) in [
        ("epoch = 9223372036854775807", "activity.epoch"),
        (
            "calibration_ms = -9223372036854775808",
            "activity.calibration_ms",
        ),
    ] {
        let node = NODE.replace("epoch = \"now\"", line);
        let d = Dir::new(&node, ACT);
        let e = Node::load(&d.path("node.toml"))
            .err()
            .expect("the config is wrong");
        let e = format!("{:#}", anyhow::Error::from(e));
        let at = line.split(' ').next().unwrap();
        assert_names(&e, &d.path("node.toml"), line_of(&node, at), key);
    }
}

#[test]
fn totals_must_not_overflow() {
    // Each budget is within its packets' bounds (and TOML's integers); together they pass
    // 2^64 - 1 cents at the third.
    let big = "budget_cents = 9000000000000000000\npackets = 4294967295\nmax_cents = 4294967295";
    let act = ACT
        .replace("budget_cents = 1000\npackets = 10", big)
        .replace("budget_cents = 500\npackets = 5", big)
        + &format!("\n[[sponsor]]\nid = 13\n{big}\n");
    let d = Dir::new(NODE, &act);
    let e = d.load().unwrap_err();
    let third = act.match_indices("budget_cents").nth(2).unwrap().0;
    let line = act[..third].matches('\n').count() + 1;
    assert_names(&e, &d.path("act.toml"), line, "sponsor[2].budget_cents");
    // Packet numbers are 40 bits: 257 sponsors of 2^32 - 1 packets pass them.
    let mut act = ACT.to_string();
    for i in 0..257 {
        act.push_str(&format!(
            "\n[[sponsor]]\nid = {}\nbudget_cents = 4294967295\npackets = 4294967295\n",
            100 + i
        ));
    }
    let d = Dir::new(NODE, &act);
    let e = d.load().unwrap_err();
    let last = act.rfind("[[sponsor]]").unwrap();
    let line = act[..last].matches('\n').count() + 4;
    assert_names(&e, &d.path("act.toml"), line, "sponsor[258].packets");
}
