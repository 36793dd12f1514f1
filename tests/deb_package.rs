//! The Debian package (`make deb`, nic-config/debian/) on this machine, from the debug binary
//! `cargo test` built (uncompressed, so the build takes seconds):
//! - its contents, modes and owners (`dpkg-deb -c`), conffiles, and Depends: every library
//!   the binary links is there by its package (found with `dpkg -S`, independently of the
//!   build's dpkg-shlibdeps), with the DPDK plugins the EAL loads, and no -dev package;
//! - installed with `dpkg -i`: the system user, the keys and seeds its postinst made, the
//!   stripped binary, the unit (`systemd-analyze verify` where there is one), the hugetlbfs
//!   directory of the unit's start, and the dissector as tshark loads it;
//! - the shipped socket node started from the installed files as the package's user, asked
//!   SHAKE/1 requests (answers checked with the installed keys, red packets journaled), and
//!   stopped by its PID;
//! - an operator's edit of /etc/shake/node.toml kept by an upgrade to a newer version;
//! - `dpkg --purge`: every file, the user and the group gone, but the claim journals (money)
//!   and their keys, kept and handed to root, as the purge says.
//!
//! It needs root and dpkg, and passes with SKIPPED where either is missing or where this
//! machine has a `shake` package, user or directory the test did not make (never touched).
//! One test binary at a time runs it (a lock), and dpkg's own lock is waited for.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{ask, audit_journals, shake_bin, unix_s, Server};
use shake::client::{payload, request, Flow};
use shake::mac::MacKey;
use shake::wire::shake::Outcome;

const STATE: &str = "/var/lib/shake";
const ETC: &str = "/etc/shake";
const KEYS: &str = "/etc/shake/keys";
/// The copy of the installed node.toml the test runs (its metrics on a free port).
const TEST_CONFIG: &str = "/etc/shake/deb-test-node.toml";

/// What the package must hold, besides the Lua plugin (whose directory is tshark's).
const FILES: &[(&str, &str)] = &[
    ("./usr/bin/shake", "-rwxr-xr-x"),
    ("./lib/systemd/system/shake.service", "-rw-r--r--"),
    ("./usr/lib/shake/hugepages.sh", "-rwxr-xr-x"),
    ("./usr/lib/shake/prestart", "-rwxr-xr-x"),
    ("./etc/shake/node.toml", "-rw-r--r--"),
    ("./etc/shake/activity.toml", "-rw-r--r--"),
    ("./etc/shake/bare-metal.toml", "-rw-r--r--"),
    ("./etc/default/shake", "-rw-r--r--"),
    ("./usr/share/shake/shake.lua", "-rw-r--r--"),
    ("./usr/share/doc/shake/README.md", "-rw-r--r--"),
    ("./usr/share/doc/shake/copyright", "-rw-r--r--"),
];
const CONFFILES: &[&str] = &[
    "/etc/shake/node.toml",
    "/etc/shake/activity.toml",
    "/etc/shake/bare-metal.toml",
    "/etc/default/shake",
];
/// Plugins the EAL loads at run time, which no linker records: Depends must name them.
const PLUGINS: &[&str] = &[
    "librte-mempool-ring23",
    "librte-bus-vdev23",
    "librte-bus-pci23",
    "librte-net-memif23",
    "librte-net-pcap23",
    "librte-net-af-xdp23",
    "librte-net-af-packet23",
    "librte-net-ring23",
];

#[test]
fn debian_package_installs_serves_upgrades_and_purges() {
    let Some(_lock) = preconditions() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let version = env!("CARGO_PKG_VERSION");
    let deb = make_deb(&work.path().join("v1"), None);
    let arch = output_ok(Command::new("dpkg").arg("--print-architecture"));
    assert_eq!(
        deb.file_name().unwrap().to_str().unwrap(),
        format!("shake_{version}_{}.deb", arch.trim()),
        "make deb names the package by Cargo.toml's version"
    );
    check_contents(&deb);
    check_fields(&deb, version);

    // Everything this test installs or makes goes at the end, whatever happens.
    let _installed = Installed;
    dpkg(&["-i"], &deb);
    check_installed();
    check_unit();
    check_prestart();
    check_tshark(work.path());

    // The shipped socket node, from the installed files, as the package's user.
    let keys = installed_keys();
    let paid = serve_and_ask(&keys);
    let journal = Path::new(STATE).join("journal");
    audit_journals(&journal, 1).assert_journaled(&paid);
    let uid = user_id("shake").expect("user shake");
    assert_eq!(
        std::fs::metadata(journal.join("worker-0")).unwrap().uid(),
        uid,
        "the node ran as shake and wrote its journal as shake"
    );

    #[cfg(feature = "dpdk")]
    check_dpdk_as_shake();

    // An operator's edit survives an upgrade.
    let node_toml = Path::new(ETC).join("node.toml");
    let edited = std::fs::read_to_string(&node_toml).unwrap().replace(
        "planned_users = 1000000",
        "planned_users = 2000000          # edited by the operator",
    );
    assert!(edited.contains("edited by the operator"), "{edited}");
    std::fs::write(&node_toml, &edited).unwrap();
    // dpkg --verify exits 1 where it finds a change: that is the point here.
    let verify = Command::new("dpkg")
        .args(["--verify", "shake"])
        .output()
        .unwrap();
    let verify = String::from_utf8_lossy(&verify.stdout);
    assert!(
        verify.contains(" c /etc/shake/node.toml"),
        "dpkg sees the edited conffile: {verify}"
    );
    let manifest = std::fs::read(Path::new(STATE).join("seeds/manifest.toml")).unwrap();
    let newer = format!("{version}+1");
    let deb2 = make_deb(&work.path().join("v2"), Some(&newer));
    dpkg(&["-i", "--force-confold"], &deb2);
    assert_eq!(
        output_ok(Command::new("dpkg-query").args(["-W", "-f=${Version}", "shake"])),
        newer
    );
    assert_eq!(
        std::fs::read_to_string(&node_toml).unwrap(),
        edited,
        "the upgrade kept the operator's node.toml"
    );
    assert!(installed_keys() == keys, "the upgrade kept the keys");
    assert_eq!(
        std::fs::read(Path::new(STATE).join("seeds/manifest.toml")).unwrap(),
        manifest,
        "the upgrade kept the seeds"
    );
    assert_eq!(user_id("shake"), Some(uid), "the upgrade kept the user");

    // Purge: all of it, but the money.
    let out = dpkg(&["--purge"], Path::new("shake"));
    check_purged(&out);
}

/// Root, dpkg, the lock, and a machine with no shake of anyone else's; None (and SKIPPED
/// said) otherwise.
fn preconditions() -> Option<Lock> {
    let skip = |why: &str| {
        eprintln!("debian_package_installs_serves_upgrades_and_purges: SKIPPED, {why}");
        None
    };
    if output_ok(Command::new("id").arg("-u")).trim() != "0" {
        return skip("not root (dpkg -i needs it; `make test` runs as root)");
    }
    if Command::new("dpkg-deb").arg("--version").output().is_err() {
        return skip("no dpkg-deb: not a Debian machine");
    }
    let lock = Lock::take();
    let status = Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Abbrev}", "shake"])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    if !status.trim().is_empty() && !status.starts_with("un") {
        return skip(&format!(
            "a shake package this test did not install is on this machine (dpkg status {:?}); \
             not touching it",
            status.trim()
        ));
    }
    for path in [STATE, ETC] {
        if Path::new(path).exists() {
            return skip(&format!(
                "{path} exists and is not this test's (a purge keeps journals there); not touching it"
            ));
        }
    }
    if user_id("shake").is_some() {
        return skip("a user shake exists that this test did not make");
    }
    Some(lock)
}

/// One run of this test on the machine at a time: `flock` holds the lock for as long as
/// its `cat` runs, which is until the test closes its stdin (or dies).
struct Lock(Child);

impl Lock {
    fn take() -> Lock {
        let mut child = Command::new("flock")
            .args(["-w", "600", "/tmp/shake-deb-test.lock", "sh", "-c"])
            .arg("echo locked; exec cat >/dev/null")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("flock (util-linux)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            "locked",
            "no lock on /tmp/shake-deb-test.lock in 600 s"
        );
        Lock(child)
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

/// Purges the package and removes what it kept, on the way out of the test, passed or not:
/// the preconditions made sure none of it was there before.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(TEST_CONFIG);
        let _ = Command::new("dpkg").args(["--purge", "shake"]).output();
        let _ = std::fs::remove_dir_all(STATE);
        let _ = std::fs::remove_dir_all(ETC);
    }
}

/// `make deb` of the binary `cargo test` built, into `out`; returns the package's path.
fn make_deb(out: &Path, version: Option<&str>) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new("make");
    cmd.current_dir(root)
        .args(["--no-print-directory", "deb", "DEB_COMPRESS=none"])
        .arg(format!("DEB_BIN={}", shake_bin().display()))
        .arg(format!("BUILD={}", out.display()));
    if let Some(v) = version {
        cmd.arg(format!("DEB_VERSION={v}"));
    }
    let stdout = output_ok(&mut cmd);
    let deb = PathBuf::from(stdout.lines().last().unwrap_or_default());
    assert!(deb.is_file(), "make deb printed {stdout:?}, not a package");
    deb
}

/// `dpkg-deb -c`: the files, their modes, all root's; the conffiles.
fn check_contents(deb: &Path) {
    let listing = output_ok(Command::new("dpkg-deb").arg("-c").arg(deb));
    // "-rwxr-xr-x root/root 12345 2026-12-01 02:00 ./usr/bin/shake"
    let entries: HashMap<String, (String, String)> = listing
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[5].to_owned(), (f[0].to_owned(), f[1].to_owned()))
        })
        .collect();
    for (path, mode) in FILES {
        let (m, _) = entries
            .get(*path)
            .unwrap_or_else(|| panic!("{path} not in the package:\n{listing}"));
        assert_eq!(m, mode, "{path}'s mode");
    }
    for (path, (_, owner)) in &entries {
        assert_eq!(owner, "root/root", "{path}'s owner");
    }
    // Wireshark's global Lua plugin directory, as tshark reports it where it is installed.
    let plugins = tshark_folder("Global Lua Plugins").unwrap_or_else(|| {
        let multiarch = output_ok(Command::new("dpkg-architecture").arg("-qDEB_HOST_MULTIARCH"));
        format!("/usr/lib/{}/wireshark/plugins", multiarch.trim())
    });
    let plugin = format!(".{plugins}/shake.lua");
    assert!(
        entries.contains_key(&plugin),
        "{plugin} not in the package:\n{listing}"
    );
    let conffiles = output_ok(Command::new("dpkg-deb").arg("-I").arg(deb).arg("conffiles"));
    assert_eq!(conffiles.lines().collect::<Vec<_>>(), CONFFILES);
}

/// `dpkg-deb -f`: the name, version, and dependencies: the package of every library the
/// binary links (found here with `dpkg -S`), the EAL's plugins, no -dev package.
fn check_fields(deb: &Path, version: &str) {
    let field = |name: &str| {
        output_ok(Command::new("dpkg-deb").arg("-f").arg(deb).arg(name))
            .trim()
            .to_owned()
    };
    assert_eq!(field("Package"), "shake");
    assert_eq!(field("Version"), version);
    let depends = field("Depends");
    let names = |list: &str| -> Vec<String> {
        list.split([',', '|'])
            .filter_map(|d| d.split_whitespace().next())
            .map(str::to_owned)
            .collect()
    };
    let depended = names(&depends);
    for f in ["Depends", "Pre-Depends", "Recommends"] {
        for name in names(&field(f)) {
            assert!(!name.ends_with("-dev"), "{f} has a -dev package: {name}");
        }
    }
    let needed = output_ok(Command::new("readelf").arg("-d").arg(shake_bin()));
    let libs: Vec<&str> = needed
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next())
        .collect();
    assert!(
        libs.iter().any(|l| l.starts_with("librte_eal.so")),
        "{needed}"
    );
    for lib in libs {
        let package = package_of(lib);
        assert!(
            depended.contains(&package),
            "the binary links {lib} of {package}, which Depends lacks: {depends}"
        );
    }
    for p in PLUGINS {
        assert!(
            depended.iter().any(|d| d == p),
            "Depends lacks {p}: {depends}"
        );
    }
}

/// The installed package of shared library `lib` (a NEEDED name) as the loader finds it
/// for the binary (`ldd`): by that path, or its other spelling under merged /usr.
fn package_of(lib: &str) -> String {
    let ldd = output_ok(Command::new("ldd").arg(shake_bin()));
    // "libm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
    let path = ldd
        .lines()
        .find_map(|l| {
            let l = l.trim();
            let path = match l.split_once(" => ") {
                Some((name, rest)) if name == lib => rest,
                Some(_) => return None,
                None => l,
            };
            let path = path.split_whitespace().next()?;
            (Path::new(path).file_name()? == lib).then(|| path.to_owned())
        })
        .unwrap_or_else(|| panic!("ldd does not resolve {lib}:\n{ldd}"));
    let other = match path.strip_prefix("/usr") {
        Some(rest) => rest.to_owned(),
        None => format!("/usr{path}"),
    };
    for p in [&path, &other] {
        let out = Command::new("dpkg").args(["-S", p]).output().unwrap();
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout);
            // "libc6:amd64: /lib/x86_64-linux-gnu/libm.so.6"
            return text.split(':').next().unwrap().trim().to_owned();
        }
    }
    panic!("no package has {path} (or {other})")
}

/// The user, its keys and seeds, the stripped binary.
fn check_installed() {
    let passwd = output_ok(Command::new("getent").args(["passwd", "shake"]));
    let f: Vec<&str> = passwd.trim().split(':').collect();
    let uid: u32 = f[2].parse().unwrap();
    assert!(uid < 1000, "shake is a system user: {passwd}");
    assert_eq!(f[5], STATE, "{passwd}");
    assert!(
        f[6].ends_with("nologin") || f[6].ends_with("false"),
        "{passwd}"
    );
    output_ok(Command::new("getent").args(["group", "shake"]));
    for k in ["token.key", "claim.key"] {
        let meta = std::fs::metadata(Path::new(KEYS).join(k)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o440, "{k}'s mode");
        assert_eq!(
            (meta.uid(), meta.gid()),
            (0, group_id("shake")),
            "{k}'s owner"
        );
    }
    let manifest = Path::new(STATE).join("seeds/manifest.toml");
    assert_eq!(
        std::fs::metadata(&manifest).unwrap().uid(),
        uid,
        "{manifest:?}"
    );
    let sections = output_ok(Command::new("readelf").args(["-S", "-W", "/usr/bin/shake"]));
    assert!(
        !sections.contains(".symtab") && !sections.contains(".debug_info"),
        "/usr/bin/shake is stripped:\n{sections}"
    );
    assert!(
        std::fs::metadata(shake_bin()).unwrap().len()
            > std::fs::metadata("/usr/bin/shake").unwrap().len()
    );
}

/// `systemd-analyze verify` on the installed unit, where systemd's tools are installed.
fn check_unit() {
    let Ok(out) = Command::new("systemd-analyze")
        .args(["verify", "/lib/systemd/system/shake.service"])
        .output()
    else {
        eprintln!("systemd-analyze is not installed: the unit is not verified");
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("shake.service"),
        "systemd-analyze verify shake.service ({}):\n{stderr}",
        out.status
    );
}

/// The unit's ExecStartPre, as root, with no hugepages asked: where hugetlbfs is mounted at
/// /dev/hugepages, the shake user gets its directory there, and it can pass through
/// /run/dpdk (whose mode the test puts back).
fn check_prestart() {
    let before = prestart();
    restore_run_dpdk(before);
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let hugetlbfs = mounts.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.get(1) == Some(&"/dev/hugepages") && f.get(2) == Some(&"hugetlbfs")
    });
    if hugetlbfs {
        let meta = std::fs::metadata("/dev/hugepages/shake").unwrap();
        assert_eq!(meta.uid(), user_id("shake").unwrap());
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    }
}

/// Runs the unit's ExecStartPre as root, with no hugepages asked, and checks that others
/// may pass through /run/dpdk then; returns /run/dpdk's permissions from before.
fn prestart() -> Option<std::fs::Permissions> {
    let before = std::fs::metadata("/run/dpdk").ok().map(|m| m.permissions());
    output_ok(
        Command::new("/usr/lib/shake/prestart")
            .env_remove("SHAKE_HUGEPAGES")
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
    );
    if before.is_some() {
        let after = std::fs::metadata("/run/dpdk").unwrap().permissions();
        assert_eq!(after.mode() & 0o001, 0o001, "/run/dpdk: others may pass");
    }
    before
}

/// Puts back the mode /run/dpdk had before [`prestart`] (another DPDK user's directory).
fn restore_run_dpdk(before: Option<std::fs::Permissions>) {
    if let Some(before) = before {
        std::fs::set_permissions("/run/dpdk", before).unwrap();
    }
}

/// tshark, where it is installed, loads the installed dissector from its global plugin
/// directory, and stands it aside for a shake.lua the command line names (the tests' and
/// README's `-X lua_script:`), which it would otherwise refuse as a second "shake".
fn check_tshark(work: &Path) {
    let Some(tshark) = common::tshark::tshark("debian_package (dissector)") else {
        return;
    };
    let flow = Flow {
        src_mac: [2, 0, 0, 0, 0, 9],
        dst_mac: [2, 0x53, 0x4b, 0, 0, 1],
        vlan: None,
        src_ip: [10, 99, 0, 2],
        dst_ip: [10, 99, 0, 1],
        src_port: 40000,
        dst_port: 7000,
    };
    let r = request(&MacKey::from_bytes([7; 16]), 4242, 1, 1, 0);
    let mut frame = vec![0u8; flow.frame_len()];
    let n = flow.emit(&mut frame, &payload(&r), 1);
    frame.truncate(n);
    let pcap = work.join("one.pcap");
    common::pcap::write_pcap(&pcap, &[frame]);
    // Neither this user's preferences nor their own plugins.
    let home = work.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let out = Command::new(&tshark)
        .env("HOME", &home)
        .env("WIRESHARK_CONFIG_DIR", &home)
        .args(["-n", "-T", "fields", "-e", "shake.user_id", "-r"])
        .arg(&pcap)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("Lua"),
        "tshark with the installed dissector:\n{stderr}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "4242");
    // The repository's copy by -X (common::tshark::run asserts no Lua error).
    let rows = common::tshark::fields(&tshark, &pcap, false, &["shake.user_id"]);
    assert_eq!(rows, vec![vec!["4242".to_owned()]]);
}

/// A folder of `tshark -G folders`, e.g. "Global Lua Plugins"; None without tshark.
fn tshark_folder(name: &str) -> Option<String> {
    let out = Command::new("tshark")
        .args(["-G", "folders"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| Some(l.strip_prefix(name)?.strip_prefix(':')?.trim().to_owned()))
}

fn installed_keys() -> (MacKey, MacKey) {
    let load = |k: &str| MacKey::load(&Path::new(KEYS).join(k)).unwrap();
    (load("token.key"), load("claim.key"))
}

/// Runs the installed node.toml (a copy beside it with metrics on a port the node picks) as
/// /etc/default/shake says, as the shake user, on a free loopback port; asks it; stops it by
/// its PID. Returns the red packets it paid: packet id -> (user, cents, sponsor).
fn serve_and_ask(keys: &(MacKey, MacKey)) -> HashMap<u64, (u64, u32, u32)> {
    let (token_key, claim_key) = keys;
    write_test_config("");
    let serve_args = default_setting("SHAKE_SERVE_ARGS=");
    assert_eq!(
        serve_args, "--io socket",
        "the shipped node is a socket node"
    );
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=shake", "--regid=shake", "--init-groups", "--"])
        .args(["/usr/bin/shake", "serve", "--config", TEST_CONFIG])
        .args(serve_args.split_whitespace())
        .args(["--bind", "127.0.0.1:0"]);
    let server = Server::spawn(cmd);

    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let expiry = (unix_s() + 3600) as u32;
    let mut paid = HashMap::new();
    let users = 200u64;
    // The demo activity's first round opens when the node starts: every user gets a draw.
    for user in 1..=users {
        let a = ask(
            &s,
            server.udp,
            &request(token_key, user, 1, expiry, user),
            claim_key,
        );
        assert!(
            [Outcome::Nothing, Outcome::Greeting, Outcome::RedPacket].contains(&a.outcome),
            "user {user}: {:?}",
            a.outcome
        );
        if a.outcome == Outcome::RedPacket {
            let before = paid.insert(a.packet_id, (user, a.amount_cents, a.sponsor_id));
            assert!(before.is_none(), "packet {} paid twice", a.packet_id);
        }
    }
    // Signed with another key: denied, so the node checks with the installed one.
    let other = MacKey::from_bytes([0x5a; 16]);
    let a = ask(
        &s,
        server.udp,
        &request(&other, users + 1, 1, expiry, 0),
        claim_key,
    );
    assert_eq!(a.outcome, Outcome::Denied);
    let a = ask(
        &s,
        server.udp,
        &request(token_key, 1, 2, expiry, 0),
        claim_key,
    );
    assert_eq!(a.outcome, Outcome::Throttled, "user 1 again, at once");
    assert_eq!(
        server.metric("shake_answers_total", ""),
        users + 2,
        "every answer counted"
    );

    let (status, rest) = server.stop();
    assert!(
        status.success(),
        "a clean stop on SIGTERM: {status:?}\n{rest}"
    );
    assert!(rest.contains("shake: stopped."), "{rest}");
    std::fs::remove_file(TEST_CONFIG).unwrap();
    paid
}

/// Writes TEST_CONFIG: the installed node.toml with its metrics on a port the node picks,
/// and `extra` appended.
fn write_test_config(extra: &str) {
    let installed = std::fs::read_to_string(Path::new(ETC).join("node.toml")).unwrap();
    let metrics = "prometheus = \"127.0.0.1:9100\"";
    assert!(installed.contains(metrics), "{installed}");
    let text = installed.replace(metrics, "prometheus = \"127.0.0.1:0\"") + extra;
    std::fs::write(TEST_CONFIG, text).unwrap();
}

/// The value of the line of /etc/default/shake that starts with `start` (`SHAKE_SERVE_ARGS=`,
/// or a commented example, `#SHAKE_SERVE_ARGS=`), unquoted.
fn default_setting(start: &str) -> String {
    let default = std::fs::read_to_string("/etc/default/shake").unwrap();
    let line = default
        .lines()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no {start} in /etc/default/shake:\n{default}"));
    line[start.len()..].trim_matches('"').to_owned()
}

/// The value of the installed unit's `key=` line.
#[cfg(feature = "dpdk")]
fn unit_setting(key: &str) -> String {
    let unit = std::fs::read_to_string("/lib/systemd/system/shake.service").unwrap();
    unit.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in shake.service"))
        .to_owned()
}

/// A DPDK node as the unit runs one, outside systemd (which this machine may not run): the
/// shake user with the unit's ambient capabilities and no others, its EAL runtime directory
/// where the unit's XDG_RUNTIME_DIR puts it (made the user's, as RuntimeDirectory= does), the
/// serve arguments of /etc/default/shake's DPDK example, and its hugepage files in
/// /dev/hugepages/shake, the unit's prestart's (`--no-huge` where hugetlbfs is not mounted
/// there). The port is a net_null device: no NIC is touched.
#[cfg(feature = "dpdk")]
fn check_dpdk_as_shake() {
    let caps = unit_setting("AmbientCapabilities");
    assert_eq!(
        unit_setting("CapabilityBoundingSet"),
        caps,
        "no capability beyond the ambient ones"
    );
    let caps = caps
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect::<Vec<_>>()
        .join(",");
    let xdg = unit_setting("Environment")
        .strip_prefix("XDG_RUNTIME_DIR=")
        .expect("Environment=XDG_RUNTIME_DIR=")
        .to_owned();
    let prefix = format!("shake-deb-test-{}", std::process::id());
    let runtime = Path::new(&xdg).join("dpdk").join(&prefix);
    // As systemd starts the unit: ExecStartPre=+, then the user's runtime directory; both
    // undone on the way out.
    let _undo = UndoStart {
        runtime: runtime.clone(),
        run_dpdk: prestart(),
    };
    output_ok(
        Command::new("install")
            .args(["-d", "-o", "shake", "-g", "shake", "-m", "0755"])
            .arg(&runtime),
    );
    let huge = Path::new("/dev/hugepages/shake").is_dir();
    let mut args = default_setting("#SHAKE_SERVE_ARGS=");
    assert_eq!(args, "--io dpdk -- --huge-dir=/dev/hugepages/shake");
    if !huge {
        args = "--io dpdk".to_owned();
    }
    write_test_config(&format!(
        r#"
[dpdk]
lcores = "0-1"
memory_mb = 64
huge = {huge}
file_prefix = "{prefix}"
vdevs = ["net_null0"]
telemetry = false
idle_sleep_us = 100

[[port]]
name = "net_null0"
rx_desc = 256
tx_desc = 256
"#
    ));
    let stderr = std::env::temp_dir().join(format!("{prefix}.stderr"));
    let mut node = Running(
        Command::new("setpriv")
            .args(["--reuid=shake", "--regid=shake", "--init-groups"])
            .arg("--no-new-privs")
            .arg(format!("--inh-caps={caps}"))
            .arg(format!("--ambient-caps={caps}"))
            .arg(format!("--bounding-set=-all,{caps}"))
            .args(["--", "env", "-i", "PATH=/usr/bin:/bin"])
            .arg(format!("XDG_RUNTIME_DIR={xdg}"))
            .args(["/usr/bin/shake", "serve", "--config", TEST_CONFIG])
            .args(args.split_whitespace())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap(),
    );
    let said = || std::fs::read_to_string(&stderr).unwrap_or_default();
    let mut stdout = BufReader::new(node.0.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("serving SHAKE/1") {
        line.clear();
        if stdout.read_line(&mut line).unwrap() == 0 {
            let status = node.0.wait().unwrap();
            panic!(
                "the DPDK node as shake exited before serving ({status}):\n{}",
                said()
            );
        }
    }
    assert!(line.contains("on dpdk port(s) net_null0"), "{line}");
    let config = runtime.join("config");
    assert_eq!(
        std::fs::metadata(&config).map(|m| m.uid()).ok(),
        user_id("shake"),
        "{} is the EAL's, run as shake",
        config.display()
    );
    if huge {
        let files = std::fs::read_dir("/dev/hugepages/shake")
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().starts_with(&prefix)
            })
            .count();
        assert!(
            files > 0,
            "no hugepage file of {prefix} in /dev/hugepages/shake"
        );
    }
    output_ok(Command::new("kill").args(["-TERM", &node.0.id().to_string()]));
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let status = node.0.wait().unwrap();
    assert!(
        status.success() && rest.contains("shake: stopped."),
        "a clean stop ({status}):\n{rest}\n{}",
        said()
    );
    let _ = std::fs::remove_file(&stderr);
    std::fs::remove_file(TEST_CONFIG).unwrap();
}

/// A child process, killed by its PID if the test leaves it running.
#[cfg(feature = "dpdk")]
struct Running(Child);

#[cfg(feature = "dpdk")]
impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Removes the runtime directory of [`check_dpdk_as_shake`] and puts back /run/dpdk's mode.
#[cfg(feature = "dpdk")]
struct UndoStart {
    runtime: PathBuf,
    run_dpdk: Option<std::fs::Permissions>,
}

#[cfg(feature = "dpdk")]
impl Drop for UndoStart {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.runtime);
        restore_run_dpdk(self.run_dpdk.take());
    }
}

/// After `dpkg --purge`: the package's files, user and group gone; the journals and keys
/// kept, root's, and the purge said so.
fn check_purged(out: &str) {
    let status = Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Abbrev}", "shake"])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.trim().is_empty() || status.starts_with("un"),
        "dpkg status after the purge: {status:?}"
    );
    for (path, _) in FILES {
        assert!(
            !Path::new(&path[1..]).exists(),
            "{} after the purge",
            &path[1..]
        );
    }
    for path in [
        "/usr/lib/shake",
        "/usr/share/shake",
        "/usr/share/doc/shake",
        "/dev/hugepages/shake",
    ] {
        assert!(!Path::new(path).exists(), "{path} after the purge");
    }
    if let Some(plugins) = tshark_folder("Global Lua Plugins") {
        assert!(!Path::new(&plugins).join("shake.lua").exists());
    }
    assert_eq!(user_id("shake"), None, "the user shake after the purge");
    assert_eq!(
        Command::new("getent")
            .args(["group", "shake"])
            .status()
            .unwrap()
            .code(),
        Some(2),
        "the group shake after the purge"
    );
    assert!(
        std::fs::symlink_metadata("/etc/systemd/system/shake.service").is_err(),
        "the unit's mask (the removal's) is gone with the purge"
    );
    // Kept: the money records, the seeds they reconcile against and the keys of the claims.
    assert!(
        out.contains("purge keeps /var/lib/shake"),
        "the purge says what it kept: {out}"
    );
    for kept in [
        Path::new(STATE).join("journal/worker-0"),
        Path::new(STATE).join("seeds/manifest.toml"),
        Path::new(KEYS).join("claim.key"),
    ] {
        let meta = std::fs::metadata(&kept)
            .unwrap_or_else(|e| panic!("{} after the purge: {e}", kept.display()));
        assert_eq!(
            (meta.uid(), meta.gid()),
            (0, 0),
            "{} is root's",
            kept.display()
        );
    }
    let entries: Vec<_> = std::fs::read_dir(ETC)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, ["keys"], "only the keys are left in /etc/shake");
}

/// dpkg `args` on `target` (a package file, or a package name), retried while another dpkg
/// or apt holds dpkg's lock (up to 2 minutes); returns stdout and stderr.
fn dpkg(args: &[&str], target: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = Command::new("dpkg")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(args)
            .arg(target)
            .output()
            .unwrap();
        let text = both(&out);
        if out.status.success() {
            return text;
        }
        let locked = text.contains("lock") && text.contains("another process");
        assert!(
            locked && Instant::now() < deadline,
            "dpkg {args:?} {} failed ({}):\n{text}",
            target.display(),
            out.status
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn both(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `cmd`; its stdout, or a panic with everything it said.
fn output_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}",
        out.status,
        both(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn user_id(name: &str) -> Option<u32> {
    let out = Command::new("getent")
        .args(["passwd", name])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split(':')
        .nth(2)?
        .parse()
        .ok()
}

fn group_id(name: &str) -> u32 {
    let out = output_ok(Command::new("getent").args(["group", name]));
    out.split(':').nth(2).unwrap().parse().unwrap()
}
