//! Two network namespaces, the node's and the client's, and a veth pair between them: a
//! DPDK node on one end (net_af_packet, net_af_xdp), an ordinary kernel UDP client on the
//! other. The veth ends are created directly inside the namespaces, so the host's own stack
//! never sees the traffic and nothing can be routed off the machine. Everything is named
//! after the test process and a tag, and deleted on drop, also when the test fails: deleting
//! a namespace removes the veth end inside it, and with it the pair. Nothing here starts a
//! process that outlives a call; the node (an [`Appliance`]) is stopped by its PID and must
//! be dropped before its namespace.
//!
//! The client is the test binary itself, run again in the client namespace with
//! [`CLIENT_ENV`] set: [`Netns::run_client`] starts it, [`client_mode`] is what it runs.

use std::process::Command;
use std::time::{Duration, Instant};

use super::appliance::Appliance;
use super::{run_ok, udp_client};

/// Set, to the node's `ADDR:PORT`, in the test binary run as the client.
pub const CLIENT_ENV: &str = "SHAKE_NETNS_CLIENT";

/// `ip ARGS`, or a panic that says this machine cannot set the test up.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "this machine cannot set up the test's network namespaces and veth pair: \
             `ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("cannot run ip(8) to create network namespaces: {e}"),
    }
}

/// `sysctl -q -w SETTINGS` in namespace `ns`.
pub fn sysctl(ns: &str, settings: &[&str]) {
    run_ok(
        Command::new("ip")
            .args(["netns", "exec", ns, "sysctl", "-q", "-w"])
            .args(settings),
    );
}

/// A MAC address as ip(8) shows it (`lladdr 02:00:...`).
pub fn mac_text(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

/// A network namespace, deleted on drop.
pub struct Namespace(String);

impl Namespace {
    /// `ip netns add NAME`. Owned (and so deleted) only once it exists: a failed add deletes
    /// nothing, not even a namespace of that name that was there before.
    pub fn add(name: String) -> Namespace {
        ip(&["netns", "add", &name]);
        Namespace(name)
    }

    pub fn name(&self) -> &str {
        &self.0
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// The node's and the client's namespaces and the veth pair between them.
pub struct Netns {
    client: Namespace,
    node: Namespace,
    node_if: String,
    client_if: String,
}

/// What a [`Netns`] gets besides its namespaces and veth pair: see [`Netns::builder`].
pub struct NetnsBuilder {
    tag: String,
    node_ipv4: Option<String>,
    client_ipv4: Option<String>,
    client_ipv6: Option<String>,
}

impl NetnsBuilder {
    /// The node side's kernel gets `addr`/24 on its veth end (by default it has no address).
    pub fn node_ipv4(mut self, addr: &str) -> NetnsBuilder {
        self.node_ipv4 = Some(addr.to_owned());
        self
    }

    /// The client side gets `addr`/24.
    pub fn client_ipv4(mut self, addr: &str) -> NetnsBuilder {
        self.client_ipv4 = Some(addr.to_owned());
        self
    }

    /// The client side gets `addr`/64, with no duplicate address detection (so nothing waits
    /// for it) and no router solicitations, and [`NetnsBuilder::create`] returns once its
    /// link-local address is usable. The node side's kernel has IPv6 off: it must not answer
    /// for the link-local address it would derive from the same MAC as the node, so that
    /// every IPv6 answer is the node's.
    pub fn client_ipv6(mut self, addr: &str) -> NetnsBuilder {
        self.client_ipv6 = Some(addr.to_owned());
        self
    }

    /// Creates the namespaces and the veth pair; panics, saying why, where this machine
    /// cannot (whatever was created by then is deleted).
    pub fn create(self) -> Netns {
        let (tag, pid) = (&self.tag, std::process::id());
        let (node_if, client_if) = (format!("{tag}n{pid}"), format!("{tag}c{pid}"));
        // IFNAMSIZ: 15 characters and the NUL.
        assert!(node_if.len() <= 15, "interface name {node_if} is too long");
        let node = Namespace::add(format!("{tag}N{pid}"));
        let client = Namespace::add(format!("{tag}C{pid}"));
        let n = Netns {
            client,
            node,
            node_if,
            client_if,
        };
        let (nn, cn) = (n.node.name(), n.client.name());
        let (a, c) = (n.node_if.as_str(), n.client_if.as_str());
        if self.client_ipv6.is_some() {
            // Before the veth ends exist, so that they are born with these settings.
            sysctl(
                nn,
                &[
                    "net.ipv6.conf.all.disable_ipv6=1",
                    "net.ipv6.conf.default.disable_ipv6=1",
                ],
            );
            sysctl(
                cn,
                &[
                    "net.ipv6.conf.all.accept_dad=0",
                    "net.ipv6.conf.default.accept_dad=0",
                    "net.ipv6.conf.default.router_solicitations=0",
                ],
            );
        }
        // Created directly inside the namespaces: the host never has either end.
        ip(&[
            "link", "add", a, "netns", nn, "type", "veth", "peer", "name", c, "netns", cn,
        ]);
        if let Some(addr) = &self.node_ipv4 {
            ip(&["-n", nn, "addr", "add", &format!("{addr}/24"), "dev", a]);
        }
        ip(&["-n", nn, "link", "set", a, "up"]);
        ip(&["-n", cn, "link", "set", "lo", "up"]);
        if let Some(addr) = &self.client_ipv4 {
            ip(&["-n", cn, "addr", "add", &format!("{addr}/24"), "dev", c]);
        }
        if let Some(addr) = &self.client_ipv6 {
            ip(&[
                "-n",
                cn,
                "addr",
                "add",
                &format!("{addr}/64"),
                "dev",
                c,
                "nodad",
            ]);
        }
        ip(&["-n", cn, "link", "set", c, "up"]);
        // veth leaves UDP checksums to a NIC that does not exist: have the kernel fill them.
        run_ok(Command::new("ip").args(["netns", "exec", cn, "ethtool", "-K", c, "tx", "off"]));
        if self.client_ipv6.is_some() {
            n.wait_client_link_local();
        }
        n
    }
}

impl Netns {
    /// Namespaces `<tag>N<pid>` (node) and `<tag>C<pid>` (client), and the veth pair
    /// `<tag>n<pid>` / `<tag>c<pid>` between them, where `tag` tells the tests of one binary
    /// apart. Nothing has an address unless the builder gives it one.
    pub fn builder(tag: &str) -> NetnsBuilder {
        NetnsBuilder {
            tag: tag.to_owned(),
            node_ipv4: None,
            client_ipv4: None,
            client_ipv6: None,
        }
    }

    /// The node's namespace.
    pub fn node(&self) -> &str {
        self.node.name()
    }

    /// The client's namespace.
    pub fn client(&self) -> &str {
        self.client.name()
    }

    /// The node's veth end.
    pub fn node_if(&self) -> &str {
        &self.node_if
    }

    /// The client's veth end.
    pub fn client_if(&self) -> &str {
        &self.client_if
    }

    /// Waits (at most 5 s) for the client's kernel to give its veth end a usable link-local
    /// address: it does so only once the carrier is up, which the kernel reports up to a
    /// second late, and until then it has no source address to ping a link-local one from.
    fn wait_client_link_local(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let addrs = run_ok(Command::new("ip").args([
                "-n",
                self.client(),
                "-6",
                "addr",
                "show",
                "dev",
                self.client_if(),
                "scope",
                "link",
            ]));
            if addrs.contains("inet6 fe80:") && !addrs.contains("tentative") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the client's veth end has no usable link-local address: {addrs}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs test `test` of this binary again in the client namespace, as the client of
    /// `server` (`ADDR:PORT`, see [`client_mode`]); panics with its output and the node's
    /// stderr unless it succeeds and says CLIENT OK. Returns its CLIENT OK line.
    pub fn run_client(&self, test: &str, server: &str, app: &Appliance) -> String {
        run_client_in(self.client(), test, server, app)
    }

    /// The client namespace's neighbour entry for `addr`.
    pub fn neighbour(&self, addr: &str) -> String {
        run_ok(Command::new("ip").args(["-n", self.client(), "neigh", "show", addr]))
    }
}

/// [`Netns::run_client`] in namespace `ns`.
pub fn run_client_in(ns: &str, test: &str, server: &str, app: &Appliance) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CLIENT_ENV, server)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.contains("CLIENT OK"),
        "the client of {server} in {ns} failed:\n{stdout}\n{}\nnode stderr:\n{}",
        String::from_utf8_lossy(&out.stderr),
        app.stderr()
    );
    stdout
        .lines()
        .find(|l| l.contains("CLIENT OK"))
        .unwrap_or_default()
        .to_owned()
}

/// In the test binary run as the client ([`CLIENT_ENV`] set): every one of `users` shakes
/// once from an ordinary UDP socket, then user 1 again (THROTTLED), each answer checked; one
/// summary line (CLIENT OK and the outcomes) for the parent; true. In the test itself, false.
pub fn client_mode(users: u64) -> bool {
    let Ok(server) = std::env::var(CLIENT_ENV) else {
        return false;
    };
    let server = server
        .parse()
        .unwrap_or_else(|e| panic!("{CLIENT_ENV}={server}: {e}"));
    let outcomes = udp_client::shake_every_user_then_repeat(server, users);
    println!("CLIENT OK {outcomes:?}");
    true
}
