//! `shake serve`: parses the arguments, picks the backend and hands both to the node's
//! lifecycle ([`shake::node::lifecycle`]), which does the rest.

use std::path::PathBuf;
use std::process::ExitCode;

use shake::io::socket::SocketBackend;
use shake::node::{Lifecycle, Node};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Io {
    /// Kernel UDP sockets (recvmmsg/sendmmsg): where DPDK is absent, and the baseline.
    Socket,
    /// DPDK poll-mode workers on the ports of the config's [dpdk] section.
    Dpdk,
}

#[derive(clap::Args)]
pub struct Args {
    /// Node config file (TOML).
    #[arg(long)]
    pub config: PathBuf,
    #[arg(long, value_enum, default_value_t = Io::Dpdk)]
    pub io: Io,
    /// Socket backend: worker threads (overrides [socket] workers).
    #[arg(long)]
    pub workers: Option<u32>,
    /// Socket backend: address to bind (overrides [socket] bind), e.g. 127.0.0.1:0.
    #[arg(long)]
    pub bind: Option<std::net::SocketAddr>,
    /// Socket backend: IPv6 address to bind (overrides [socket] bind6), e.g. [::1]:0; needs
    /// node.ipv6 in the config.
    #[arg(long)]
    pub bind6: Option<std::net::SocketAddr>,
    /// Extra EAL arguments, after `--`.
    #[arg(last = true)]
    pub eal: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Every check that can refuse the start, before the backend opens anything.
    let node = Node::load(&args.config)?;
    let addr6 = match (args.bind6, node.config.socket_bind6()) {
        (Some(_), None) => anyhow::bail!(
            "--bind6: {} has no node.ipv6: the node serves IPv6 only with a global address",
            args.config.display()
        ),
        (given, from_config) => given.or(from_config),
    };
    let lifecycle = Lifecycle::prepare(node)?;
    let config = &lifecycle.node().config;
    match args.io {
        Io::Socket => {
            let backend = SocketBackend {
                addr: args.bind.unwrap_or_else(|| config.socket_bind()),
                addr6,
                workers: args.workers.map(|n| n as usize),
                batch: config.socket.batch as usize,
                node_count: config.node.count,
            };
            lifecycle.run(backend)?;
        }
        #[cfg(feature = "dpdk")]
        Io::Dpdk => {
            use shake::dpdk::{node_eal_args, DpdkBackend, Eal};
            let eal = Eal::init(&node_eal_args(config, &args.eal)?)?;
            let backend = DpdkBackend::open(&eal, config)?;
            lifecycle.run(backend)?;
        }
        #[cfg(not(feature = "dpdk"))]
        Io::Dpdk => anyhow::bail!(
            "{}: this build has no DPDK backend (built without the `dpdk` feature); use --io socket",
            args.config.display()
        ),
    }
    Ok(ExitCode::SUCCESS)
}
