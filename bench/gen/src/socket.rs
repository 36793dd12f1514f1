//! Socket mode: shakes over kernel UDP sockets to a node's address, in batches of
//! `sendmmsg`/`recvmmsg` (the node's own [`shake::io::mmsg`] batches, allocated once). One
//! thread drives every socket; each socket is connected to the server from its own source
//! port, so a node with several `SO_REUSEPORT` workers sees the load spread over them.
//!
//! Against a fleet ([`Options::nodes`]) the sockets are not connected: each datagram of a
//! batch goes to the node its request names, and each answer's source says which node it
//! came from (looked up in a map built once), so the generator can check that the node it
//! asked is the one that answered.
//!
//! IPv6 phones (the population's IPv6 share) shake at the node's IPv6 address from sockets
//! of their own, as many as the IPv4 ones: each batch is split by family and each part goes
//! on the next socket of its family. An answer is then known to have come over the family
//! of the socket that received it, which must be its request's.

use std::collections::HashMap;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, SockaddrIn, SockaddrIn6};
use shake::client::{payload, Flow, Flow6};
pub use shake::io::mmsg::MAX_BATCH;
use shake::io::mmsg::{RecvBatch, SendBatch};
use shake::wire::shake::PAYLOAD_LEN;

use crate::load::{Generator, Request};
use crate::pcap::PcapWriter;
use crate::GenError;

/// Longest answer read; a longer datagram is cut here, and then is not a SHAKE/1 answer.
const RX_BUF: usize = 256;

#[derive(Debug, Clone)]
pub struct Options {
    /// The node (not a fleet).
    pub server: SocketAddrV4,
    /// The node's IPv6 address, where the IPv6 share's requests go (`None`: no phone may
    /// shake over IPv6). Not with a fleet.
    pub server6: Option<SocketAddrV6>,
    /// A fleet's nodes by index (empty: `server` alone). Requests go to the node they name.
    pub nodes: Vec<SocketAddrV4>,
    /// Sockets (source ports), of each family used.
    pub sockets: usize,
    /// Datagrams per system call, at most [`MAX_BATCH`].
    pub batch: usize,
}

/// Runs the load until the generator is finished or `stop` is set; `live` gets a line a
/// second. Returns nanoseconds elapsed.
pub fn run(
    gen: &mut Generator,
    o: &Options,
    stop: &AtomicBool,
    mut pcap: Option<&mut PcapWriter<std::fs::File>>,
    live: &mut dyn FnMut(String),
) -> Result<u64, GenError> {
    let batch = o.batch.clamp(1, MAX_BATCH);
    let fleet = !o.nodes.is_empty();
    // Where each node's datagrams go, and which node an answer's source is.
    let dests: Vec<SockaddrIn> = o.nodes.iter().map(|&a| SockaddrIn::from(a)).collect();
    let node_of: HashMap<SocketAddrV4, u32> = o
        .nodes
        .iter()
        .enumerate()
        .map(|(i, &a)| (a, i as u32))
        .collect();
    let peer = SocketAddr::V4(o.nodes.first().copied().unwrap_or(o.server));
    let ipv6_users = gen.population().ipv6_users() > 0;
    let server6 = match o.server6 {
        Some(a) if fleet => return Err(GenError::Ipv6Fleet(a)),
        Some(a) => Some(SocketAddr::V6(a)),
        None if ipv6_users => return Err(GenError::NoServer6),
        None => None,
    };
    let socket_err = |what: String| move |source: std::io::Error| GenError::Socket { what, source };
    let open = |local: &str, server: Option<SocketAddr>| -> Result<UdpSocket, GenError> {
        let s = UdpSocket::bind(local).map_err(socket_err(format!("binding {local}")))?;
        if let Some(server) = server {
            s.connect(server)
                .map_err(socket_err(format!("connecting to {server}")))?;
        }
        s.set_nonblocking(true)
            .map_err(socket_err("making a socket non-blocking".into()))?;
        let s2 = socket2::SockRef::from(&s);
        let _ = s2.set_recv_buffer_size(4 << 20);
        let _ = s2.set_send_buffer_size(4 << 20);
        Ok(s)
    };
    let mut socks = Vec::with_capacity(o.sockets.max(1));
    for _ in 0..o.sockets.max(1) {
        socks.push(open(
            "0.0.0.0:0",
            (!fleet).then_some(SocketAddr::V4(o.server)),
        )?);
    }
    // IPv6 sockets only when some phone uses them.
    let mut socks6 = Vec::new();
    if let Some(server6) = server6.filter(|_| ipv6_users) {
        for _ in 0..o.sockets.max(1) {
            socks6.push(open("[::]:0", Some(server6))?);
        }
    }
    // The frames a pcap replay needs: loopback-style addresses, each socket's own port.
    let flows: Vec<Flow> = socks
        .iter()
        .map(|s| {
            let local = match s.local_addr() {
                Ok(std::net::SocketAddr::V4(a)) => a,
                _ => SocketAddrV4::new([127, 0, 0, 1].into(), 0),
            };
            let src_ip = if local.ip().is_unspecified() {
                [127, 0, 0, 1]
            } else {
                local.ip().octets()
            };
            Flow {
                src_mac: [2, 0, 0, 0, 0, 2],
                dst_mac: [2, 0, 0, 0, 0, 1],
                vlan: None,
                src_ip,
                dst_ip: o.server.ip().octets(),
                src_port: local.port(),
                dst_port: o.server.port(),
            }
        })
        .collect();
    let flows6: Vec<Flow6> = socks6
        .iter()
        .map(|s| {
            let local = match s.local_addr() {
                Ok(SocketAddr::V6(a)) => a,
                _ => SocketAddrV6::new(std::net::Ipv6Addr::LOCALHOST, 0, 0, 0),
            };
            let src_ip = if local.ip().is_unspecified() {
                std::net::Ipv6Addr::LOCALHOST.octets()
            } else {
                local.ip().octets()
            };
            let (dst_ip, dst_port) = match server6 {
                Some(SocketAddr::V6(a)) => (a.ip().octets(), a.port()),
                _ => ([0; 16], 0),
            };
            Flow6 {
                src_mac: [2, 0, 0, 0, 0, 2],
                dst_mac: [2, 0, 0, 0, 0, 1],
                vlan: None,
                src_ip,
                dst_ip,
                src_port: local.port(),
                dst_port,
            }
        })
        .collect();

    let start = Instant::now();
    gen.clock_started(crate::seconds::unix_ns());
    let now = || start.elapsed().as_nanos() as u64;
    // Every buffer of the loop, allocated once here.
    let mut out = [[0u8; PAYLOAD_LEN]; MAX_BATCH];
    let mut reqs: Vec<Request> = Vec::with_capacity(MAX_BATCH);
    let mut rx = RecvBatch::<RX_BUF>::new();
    let mut rx6 = RecvBatch::<RX_BUF, SockaddrIn6>::new();
    let mut tx: SendBatch = SendBatch::new();
    let mut tx6 = SendBatch::<SockaddrIn6>::new();
    let mut to: [Option<SockaddrIn>; MAX_BATCH] = [None; MAX_BATCH];
    // A batch split by family: which requests (by index) go on the IPv4 socket and which on
    // the IPv6 one, which of them went, and those refused, in the order they were built.
    let mut by4 = [0usize; MAX_BATCH];
    let mut by6 = [0usize; MAX_BATCH];
    let mut went = [false; MAX_BATCH];
    let mut refused: Vec<Request> = Vec::with_capacity(MAX_BATCH);
    let mut frame = [0u8; 160];
    let mut turn = 0usize;
    let mut stopped = false;
    loop {
        let t = now();
        if !stopped && stop.load(Ordering::Relaxed) {
            gen.stop_sending(t);
            stopped = true;
        }
        if gen.finished(t) {
            break;
        }
        let mut busy = false;

        // Send a batch: each family's part on the next socket of that family.
        let n = gen.budget(t, batch);
        if n > 0 {
            let si = turn % socks.len();
            let si6 = turn % socks6.len().max(1);
            turn += 1;
            reqs.clear();
            let (mut m4, mut m6) = (0, 0);
            for (k, slot) in out.iter_mut().enumerate().take(n) {
                let Some(r) = gen.next(t) else { break };
                *slot = payload(&r.repr);
                if r.ipv6 {
                    by6[m6] = k;
                    m6 += 1;
                } else {
                    if fleet {
                        to[m4] = dests.get(r.node as usize).copied();
                    }
                    by4[m4] = k;
                    m4 += 1;
                }
                reqs.push(r);
            }
            if !reqs.is_empty() {
                busy = true;
                let datagrams: [&[u8]; MAX_BATCH] = std::array::from_fn(|j| &out[by4[j]][..]);
                let sent4 = if m4 == 0 {
                    0
                } else {
                    let fd = socks[si].as_raw_fd();
                    let sending = if fleet {
                        tx.send(fd, &datagrams[..m4], &to)
                    } else {
                        tx.send_connected(fd, &datagrams[..m4])
                    };
                    sent_or(sending, peer)?
                };
                let sent6 = match socks6.get(si6) {
                    Some(s6) if m6 > 0 => {
                        let datagrams: [&[u8]; MAX_BATCH] =
                            std::array::from_fn(|j| &out[by6[j]][..]);
                        let sending = tx6.send_connected(s6.as_raw_fd(), &datagrams[..m6]);
                        sent_or(sending, server6.unwrap_or(peer))?
                    }
                    _ => 0,
                };
                went[..reqs.len()].fill(false);
                for &k in by4[..sent4].iter().chain(&by6[..sent6]) {
                    went[k] = true;
                }
                refused.clear();
                refused.extend(
                    reqs.iter()
                        .zip(&went)
                        .filter(|(_, &went)| !went)
                        .map(|(r, _)| *r),
                );
                gen.cancel_tail(&refused);
                if let Some(w) = pcap.as_deref_mut() {
                    for ((r, p), _) in reqs.iter().zip(&out).zip(&went).filter(|(_, &w)| w) {
                        if let Some(flow6) = flows6.get(si6).filter(|_| r.ipv6) {
                            let len = flow6.emit(&mut frame, p);
                            w.write(r.repr.client_ts, &frame[..len])
                                .map_err(GenError::Pcap)?;
                            continue;
                        }
                        let flow = match o.nodes.get(r.node as usize) {
                            Some(n) if fleet => Flow {
                                dst_ip: n.ip().octets(),
                                dst_port: n.port(),
                                ..flows[si]
                            },
                            _ => flows[si],
                        };
                        let len = flow.emit(&mut frame, p, r.repr.seq as u16);
                        w.write(r.repr.client_ts, &frame[..len])
                            .map_err(GenError::Pcap)?;
                    }
                }
            }
        }

        // Receive whatever is there on every socket.
        for s in &socks {
            let got = match rx.recv(s.as_raw_fd(), MAX_BATCH, MsgFlags::MSG_DONTWAIT) {
                Ok(n) => n,
                Err(Errno::EAGAIN | Errno::EINTR | Errno::ECONNREFUSED) => 0,
                Err(source) => {
                    return Err(GenError::Mmsg {
                        call: "recvmmsg",
                        peer,
                        source,
                    })
                }
            };
            if got > 0 {
                busy = true;
                let t = now();
                for k in 0..got {
                    if !fleet {
                        gen.on_answer(rx.datagram(k), None, Some(false), t);
                        continue;
                    }
                    let from = rx
                        .source(k)
                        .map(|a| SocketAddrV4::new(a.ip(), a.port()))
                        .and_then(|a| node_of.get(&a).copied());
                    match from {
                        Some(node) => gen.on_answer(rx.datagram(k), Some(node), Some(false), t),
                        // Not from any node of the fleet: not an answer.
                        None => gen.tally.rx_other += 1,
                    }
                }
            }
        }
        for s in &socks6 {
            let got = match rx6.recv(s.as_raw_fd(), MAX_BATCH, MsgFlags::MSG_DONTWAIT) {
                Ok(n) => n,
                Err(Errno::EAGAIN | Errno::EINTR | Errno::ECONNREFUSED) => 0,
                Err(source) => {
                    return Err(GenError::Mmsg {
                        call: "recvmmsg",
                        peer: server6.unwrap_or(peer),
                        source,
                    })
                }
            };
            if got > 0 {
                busy = true;
                let t = now();
                for k in 0..got {
                    gen.on_answer(rx6.datagram(k), None, Some(true), t);
                }
            }
        }

        if let Some(line) = gen.tick(now()) {
            live(line);
        }
        if !busy {
            // Paced below the machine's capacity, or waiting for answers: nap briefly.
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    Ok(now())
}

/// How many datagrams a `sendmmsg` took: none when the kernel's buffers are full (or the
/// node is not there yet); another error ends the run.
fn sent_or(sending: nix::Result<usize>, peer: SocketAddr) -> Result<usize, GenError> {
    match sending {
        Ok(n) => Ok(n),
        Err(Errno::EAGAIN | Errno::ENOBUFS | Errno::ECONNREFUSED | Errno::EINTR) => Ok(0),
        Err(source) => Err(GenError::Mmsg {
            call: "sendmmsg",
            peer,
            source,
        }),
    }
}
