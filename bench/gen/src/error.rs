//! What can go wrong in a run, as one enum: the library says what failed and on what; the
//! binary (`main.rs`) only adds which run it was.

use std::net::{SocketAddr, SocketAddrV6};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum GenError {
    /// A socket could not be set up (bind, connect, options).
    #[error("{what}: {source}")]
    Socket {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// `sendmmsg` or `recvmmsg` failed with something other than full buffers or a signal.
    #[error("{call} with {peer}: {source}")]
    Mmsg {
        call: &'static str,
        peer: SocketAddr,
        #[source]
        source: nix::errno::Errno,
    },
    /// Phones of the IPv6 share, and no IPv6 address to shake at.
    #[error("phones shake over IPv6 (--ipv6-share) but the node's IPv6 address is unknown: give --server6 (socket mode) or --node-addr6 (frame modes), or a node config with node.ipv6")]
    NoServer6,
    /// IPv6 against a fleet, which its node list gives by IPv4 address.
    #[error("IPv6 phones ({0}) against a fleet: --nodes lists IPv4 addresses only")]
    Ipv6Fleet(SocketAddrV6),
    /// Writing the request stream (`--pcap-out`).
    #[error("writing the request pcap: {0}")]
    Pcap(#[source] std::io::Error),
    /// Writing a chart (`--svg`): the file or directory, and what failed.
    #[error("svg {path}: {message}")]
    Svg { path: PathBuf, message: String },
    #[cfg(feature = "dpdk")]
    #[error(transparent)]
    Dpdk(#[from] shake::dpdk::DpdkError),
    /// DPDK mode: the port's link never came up.
    #[error("port {port}: link still down after {wait:?} (is the node's memif server running?)")]
    LinkDown { port: String, wait: Duration },
    /// DPDK mode: the mempool's buffers cannot hold one request frame.
    #[error("mbuf too small for a {0} byte frame")]
    MbufTooSmall(usize),
}
