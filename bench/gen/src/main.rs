//! `shake-gen`: the bundled load generator's command line. See the `shake_gen` library; this
//! file only turns arguments into a run and the run into a report (anyhow lives here only).

use std::net::{Ipv4Addr, SocketAddrV4, SocketAddrV6};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use shake::client::{Flow, Flow6};
use shake::control::Signals;
use shake::mac::MacKey;
use shake::node::unix_ms;
use shake::node_config::{parse_mac, NodeConfig};
use shake_gen::pcap::PcapWriter;
use shake_gen::{socket, Generator, Meta, Plan, Population, Spec};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Io {
    /// Kernel UDP sockets to --server.
    Socket,
    /// Its own DPDK EAL and port (EAL arguments after `--`).
    Dpdk,
    /// No I/O: only write the request stream (--pcap-out), e.g. for a net_pcap replay.
    None,
}

/// The bundled load generator: phones shaking at a node over sockets or DPDK.
#[derive(Parser)]
#[command(name = "shake-gen", version)]
pub struct Args {
    #[arg(long, value_enum, default_value_t = Io::Socket)]
    pub io: Io,
    /// A node config to take keys, node index/count and the node's address from.
    #[arg(long)]
    pub node_config: Option<PathBuf>,
    /// Token key file (32 hex digits); default: the node config's.
    #[arg(long)]
    pub token_key: Option<PathBuf>,
    /// Claim key file, to verify claim_mac; default: the node config's.
    #[arg(long)]
    pub claim_key: Option<PathBuf>,
    /// Socket mode: the node's UDP address; default: the node config's address and port.
    #[arg(long, conflicts_with = "nodes")]
    pub server: Option<SocketAddrV4>,
    /// Socket mode, a fleet: every node's UDP address, in node index order (repeat the flag
    /// or separate with commas). Users belong to every node in turn; each phone shakes at its
    /// own node and follows REDIRECT (with --foreign-share, that share starts at another one).
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub nodes: Vec<SocketAddrV4>,
    /// Socket mode: the node's IPv6 UDP address, where the --ipv6-share phones shake;
    /// default: the node config's ([socket] bind6, else [node.ipv6]:node.port).
    #[arg(long, conflicts_with = "nodes")]
    pub server6: Option<SocketAddrV6>,
    /// Share of phones that shake over IPv6, 0..=1 (1: all); each phone keeps its family.
    #[arg(long, default_value_t = 0.0)]
    pub ipv6_share: f64,
    /// Frame modes: the node's IPv4 address and UDP port; default: the node config's, or
    /// 10.99.0.1:7000.
    #[arg(long)]
    pub node_addr: Option<SocketAddrV4>,
    /// Frame modes: the phones' IPv4 address and first UDP source port.
    #[arg(long, default_value = "10.99.0.2:40000")]
    pub src: SocketAddrV4,
    /// Frame modes: the node's global IPv6 address and UDP port, where the --ipv6-share
    /// phones' frames go (to the same --dst-mac); default: the node config's node.ipv6 at
    /// its port.
    #[arg(long)]
    pub node_addr6: Option<SocketAddrV6>,
    /// Frame modes: the IPv6 phones' address and first UDP source port.
    #[arg(long, default_value = "[fd99::2]:40000")]
    pub src6: SocketAddrV6,
    /// Frame modes: source ports used, from --src's port on (spreads RSS).
    #[arg(long, default_value_t = 64)]
    pub src_ports: u16,
    /// Frame modes: destination MAC of requests.
    #[arg(long, default_value = "02:53:4b:00:00:01")]
    pub dst_mac: String,
    /// Frame modes: source MAC; default the port's own (DPDK) or 02:53:4b:00:00:02.
    #[arg(long)]
    pub src_mac: Option<String>,
    /// DPDK mode: the port's device name.
    #[arg(long, default_value = "net_memif0")]
    pub port: String,
    /// DPDK mode: seconds to wait for the link (a memif client waits for its server).
    #[arg(long, default_value_t = 10.0)]
    pub link_wait: f64,
    /// DPDK mode: nap in microseconds in a pass that moved nothing while paced (0: spin).
    #[arg(long, default_value_t = 0)]
    pub idle_sleep_us: u64,
    /// Distinct users.
    #[arg(long, default_value_t = 100_000)]
    pub users: u64,
    /// Number users from here (generators with disjoint ranges are different people).
    #[arg(long, default_value_t = 0)]
    pub user_offset: u64,
    /// Share of users with a bad token (DENIED), e.g. 0.01.
    #[arg(long, default_value_t = 0.0)]
    pub bad_share: f64,
    /// Share of users owned by other nodes (REDIRECT).
    #[arg(long, default_value_t = 0.0)]
    pub foreign_share: f64,
    /// Nodes in the cluster; default the node config's, or 1.
    #[arg(long)]
    pub node_count: Option<u32>,
    /// The node under test; default the node config's, or 0.
    #[arg(long)]
    pub node_index: Option<u32>,
    /// Seed of the population (which users are bad or foreign).
    #[arg(long, default_value_t = 2015)]
    pub seed: u64,
    /// Tokens expire this many seconds from now.
    #[arg(long, default_value_t = 86_400)]
    pub token_ttl_s: u64,
    /// Requests per second; without it, flood.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Clients wait retry_after_ms before shaking again, as phones do (default: ignore it,
    /// as a stress test does).
    #[arg(long)]
    pub obey_retry: bool,
    /// Obeying clients shake again after this long without an answer.
    #[arg(long, default_value_t = 1000)]
    pub answer_timeout_ms: u32,
    /// Seconds to send for (default 10 without --count).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Requests to send.
    #[arg(long)]
    pub count: Option<u64>,
    /// Milliseconds to wait for the last answers.
    #[arg(long, default_value_t = 500)]
    pub drain_ms: u64,
    /// Socket mode: sockets (source ports).
    #[arg(long, default_value_t = 4)]
    pub sockets: usize,
    /// Socket mode: datagrams per sendmmsg/recvmmsg.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Write the final report as JSON here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write the charts into this directory: throughput.svg, latency.svg, answers.svg
    /// (answers by outcome per second, stacked) and money.svg (red packets per second and
    /// the money issued).
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// When the round opens (unix ms): the live line and the charts count time from it (the
    /// countdown is negative) and the charts mark it. Default: time from the start.
    #[arg(long)]
    pub opening_unix_ms: Option<u64>,
    /// Write the request stream as a classic pcap file.
    #[arg(long)]
    pub pcap_out: Option<PathBuf>,
    /// No live line every second.
    #[arg(long)]
    pub quiet: bool,
    /// DPDK mode: EAL arguments, after `--` (--vdev, --lcores, --file-prefix, ...).
    #[arg(last = true)]
    pub eal: Vec<String>,
}

/// Where a node config says the node serves IPv6: `[socket] bind6`, else `node.ipv6`, at
/// that port, else `node.port` (7000 for a port the node picks: 0).
fn server6_of(c: &NodeConfig) -> Option<SocketAddrV6> {
    let std::net::SocketAddr::V6(a) = c.socket_bind6()? else {
        return None;
    };
    let port = [a.port(), c.node.port]
        .into_iter()
        .find(|&p| p != 0)
        .unwrap_or(7000);
    Some(SocketAddrV6::new(*a.ip(), port, 0, a.scope_id()))
}

fn mac(s: &str) -> anyhow::Result<[u8; 6]> {
    parse_mac(s).ok_or_else(|| anyhow::anyhow!("{s:?} is not a MAC address"))
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("shake-gen: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(a: Args) -> anyhow::Result<ExitCode> {
    let config = a.node_config.as_deref().map(NodeConfig::load).transpose()?;
    let key = |given: &Option<PathBuf>, from: fn(&NodeConfig) -> PathBuf, what: &str| {
        let path = given
            .clone()
            .or_else(|| config.as_ref().map(from))
            .ok_or_else(|| anyhow::anyhow!("--{what} (or --node-config) is required"))?;
        MacKey::load(&path).map_err(anyhow::Error::from)
    };
    let token_key = key(&a.token_key, |c| c.resolve(&c.keys.token_key), "token-key")?;
    let claim_key = key(&a.claim_key, |c| c.resolve(&c.keys.claim_key), "claim-key")?;
    let node_addr = a.node_addr.unwrap_or_else(|| match &config {
        Some(c) => SocketAddrV4::new(
            c.node.ipv4,
            if c.node.port == 0 { 7000 } else { c.node.port },
        ),
        None => SocketAddrV4::new(Ipv4Addr::new(10, 99, 0, 1), 7000),
    });
    let fleet = !a.nodes.is_empty();
    let node_count = if fleet {
        // The list is the fleet: a count that says otherwise means a node is missing.
        let n = u32::try_from(a.nodes.len()).context("--nodes: too many")?;
        let given = a.node_count.or(config.as_ref().map(|c| c.node.count));
        if let Some(c) = given.filter(|&c| c != n) {
            anyhow::bail!("--nodes lists {n} nodes but the node count is {c} (--node-count or the node config)");
        }
        if a.io != Io::Socket {
            anyhow::bail!("--nodes is for socket mode; DPDK and pcap modes send to one node");
        }
        n
    } else {
        a.node_count
            .or(config.as_ref().map(|c| c.node.count))
            .unwrap_or(1)
            .max(1)
    };
    let node_index = if fleet {
        if a.node_index.is_some() {
            anyhow::bail!(
                "--node-index is for one node under test; with --nodes every node is one"
            );
        }
        0
    } else {
        a.node_index
            .or(config.as_ref().map(|c| c.node.index))
            .unwrap_or(0)
    };
    if node_index >= node_count {
        anyhow::bail!("--node-index {node_index} is not below --node-count {node_count}");
    }
    for (name, v) in [
        ("bad-share", a.bad_share),
        ("foreign-share", a.foreign_share),
        ("ipv6-share", a.ipv6_share),
    ] {
        if !(0.0..=1.0).contains(&v) {
            anyhow::bail!("--{name} {v} is not within 0..1");
        }
    }
    if a.ipv6_share > 0.0 && fleet {
        anyhow::bail!(
            "--ipv6-share is not for --nodes: a fleet's nodes are listed by IPv4 address"
        );
    }
    if a.users == 0
        || a.users > u64::from(u32::MAX - 1)
        || (a.users + a.user_offset + 1)
            .checked_mul(u64::from(node_count))
            .is_none()
    {
        anyhow::bail!("--users must be within 1..{}", u32::MAX - 1);
    }
    if a.rate.is_some_and(|r| r <= 0.0 || !r.is_finite()) {
        anyhow::bail!("--rate must be positive");
    }
    let duration = match (a.duration, a.count) {
        (None, None) => Some(10.0),
        (d, _) => d,
    };
    let expiry = unix_ms() / 1000 + a.token_ttl_s;
    let spec = Spec {
        users: a.users,
        user_offset: a.user_offset,
        node_count,
        node_index,
        bad_share: a.bad_share,
        foreign_share: a.foreign_share,
        seed: a.seed,
        token_expiry: u32::try_from(expiry).context("token expiry past 2106")?,
        fleet,
        ipv6_share: a.ipv6_share,
    };
    let built = std::time::Instant::now();
    let pop = Population::new(spec, &token_key);
    let (own, foreign, bad) = pop.census();
    if fleet {
        eprintln!(
            "gen: {} users over {node_count} nodes ({own} first at their own node, {foreign} first at another, {bad} with bad tokens) in {:.2}s",
            a.users,
            built.elapsed().as_secs_f64()
        );
    } else {
        eprintln!(
            "gen: {} users ({own} of node {node_index}/{node_count}, {foreign} of other nodes, {bad} with bad tokens) in {:.2}s",
            a.users,
            built.elapsed().as_secs_f64()
        );
    }
    let plan = Plan {
        rate: a.rate,
        duration_ns: duration.map(|d| (d * 1e9) as u64),
        count: a.count,
        obey_retry: a.obey_retry,
        answer_timeout_ms: a.answer_timeout_ms,
        drain_ns: a.drain_ms * 1_000_000,
    };
    let mut gen = Generator::new(pop, plan, claim_key);
    if let Some(t0) = a.opening_unix_ms {
        gen.count_from_opening(t0);
    }
    let mut pcap = a
        .pcap_out
        .as_deref()
        .map(|p| PcapWriter::create(p).with_context(|| format!("creating {}", p.display())))
        .transpose()?;
    let signals = Signals::register().context("installing signal handlers")?;
    let quiet = a.quiet;
    let mut live = |line: String| {
        if !quiet {
            println!("{line}");
        }
    };
    let flow = Flow {
        src_mac: mac(a.src_mac.as_deref().unwrap_or("02:53:4b:00:00:02"))?,
        dst_mac: mac(&a.dst_mac)?,
        vlan: None,
        src_ip: a.src.ip().octets(),
        dst_ip: node_addr.ip().octets(),
        src_port: a.src.port(),
        dst_port: node_addr.port(),
    };
    // The IPv6 phones' frames: the node's global address (its link-local one is for
    // neighbours, not for phones behind a router).
    let node_addr6 = a.node_addr6.or_else(|| {
        let c = config.as_ref()?;
        Some(SocketAddrV6::new(c.node.ipv6?, node_addr.port(), 0, 0))
    });
    let flow6 = match node_addr6 {
        Some(n) if a.ipv6_share > 0.0 => Some(Flow6 {
            src_mac: flow.src_mac,
            dst_mac: flow.dst_mac,
            vlan: None,
            src_ip: a.src6.ip().octets(),
            dst_ip: n.ip().octets(),
            src_port: a.src6.port(),
            dst_port: n.port(),
        }),
        _ => None,
    };
    if a.ipv6_share > 0.0 && a.io != Io::Socket && flow6.is_none() {
        anyhow::bail!("--ipv6-share needs the node's IPv6 address: --node-addr6, or a node config with node.ipv6");
    }
    let started_unix_ms = unix_ms();
    let (target, elapsed) = match a.io {
        Io::Socket => {
            let server = a.server.unwrap_or(node_addr);
            let server6 = a.server6.or(config.as_ref().and_then(server6_of));
            let o = socket::Options {
                server,
                server6: server6.filter(|_| a.ipv6_share > 0.0),
                nodes: a.nodes.clone(),
                sockets: a.sockets,
                batch: a.batch,
            };
            let e = socket::run(&mut gen, &o, &signals.stop, pcap.as_mut(), &mut live)?;
            let target = match server6.filter(|_| a.ipv6_share > 0.0) {
                _ if fleet => {
                    let list: Vec<String> = a.nodes.iter().map(|n| n.to_string()).collect();
                    format!("udp {}", list.join(","))
                }
                Some(v6) => format!("udp {server} and udp6 {v6}"),
                None => format!("udp {server}"),
            };
            (target, e)
        }
        #[cfg(feature = "dpdk")]
        Io::Dpdk => {
            let o = shake_gen::dpdk::Options {
                port: a.port.clone(),
                rx_desc: 1024,
                tx_desc: 1024,
                flow,
                flow6,
                src_mac_from_port: a.src_mac.is_none(),
                src_ports: a.src_ports,
                link_wait: Duration::from_secs_f64(a.link_wait),
                idle_sleep: Duration::from_micros(a.idle_sleep_us),
            };
            let mut eal = vec!["shake-gen".to_owned()];
            eal.extend(a.eal.iter().cloned());
            let e =
                shake_gen::dpdk::run(&mut gen, &eal, &o, &signals.stop, pcap.as_mut(), &mut live)?;
            let to6 = match node_addr6.filter(|_| flow6.is_some()) {
                Some(n) => format!(" and {n}"),
                None => String::new(),
            };
            (format!("dpdk {} to {node_addr}{to6}", a.port), e)
        }
        #[cfg(not(feature = "dpdk"))]
        Io::Dpdk => anyhow::bail!("this build has no DPDK (built without the `dpdk` feature)"),
        Io::None => {
            let Some(w) = pcap.as_mut() else {
                anyhow::bail!("--io none only writes --pcap-out FILE");
            };
            let Some(count) = a.count else {
                anyhow::bail!("--io none needs --count");
            };
            // Timestamps as if sent at --rate (or 1 Mpps), for replays that honour them.
            let step = 1e9 / a.rate.unwrap_or(1e6);
            let mut frame = [0u8; 160];
            for i in 0..count {
                let t = (i as f64 * step) as u64;
                let Some(r) = gen.next(t) else { break };
                let port = (r.user % usize::from(a.src_ports.max(1))) as u16;
                let payload = shake::client::payload(&r.repr);
                let len = match flow6 {
                    Some(f6) if r.ipv6 => Flow6 {
                        src_port: f6.src_port.wrapping_add(port),
                        ..f6
                    }
                    .emit(&mut frame, &payload),
                    _ => Flow {
                        src_port: flow.src_port.wrapping_add(port),
                        ..flow
                    }
                    .emit(&mut frame, &payload, r.repr.seq as u16),
                };
                w.write(t, &frame[..len])
                    .context("writing the --pcap-out file")?;
            }
            gen.stop_sending(0);
            ("pcap".to_owned(), 0)
        }
    };
    if let Some(w) = pcap {
        let n = w.frames();
        w.finish()?;
        if let Some(p) = &a.pcap_out {
            eprintln!("gen: wrote {n} requests to {}", p.display());
        }
    }
    let mode = format!("{:?}", a.io).to_lowercase();
    let report = gen.report(
        Meta {
            mode,
            target,
            started_unix_ms,
        },
        elapsed,
    );
    println!("{}", report.summary_line());
    if let Some(path) = &a.report {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(dir) = &a.svg {
        for p in shake_gen::svg::write(&report, dir)? {
            eprintln!("gen: wrote {}", p.display());
        }
    }
    Ok(if report.tally.invalid > 0 {
        eprintln!("gen: {} invalid answers", report.tally.invalid);
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
