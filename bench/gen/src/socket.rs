//! Socket mode: shakes over kernel UDP sockets to a node's address, in batches of
//! `sendmmsg`/`recvmmsg` (the node's own [`shake::io::mmsg`] batches, allocated once). One
//! thread drives every socket; each socket is connected to the server from its own source
//! port, so a node with several `SO_REUSEPORT` workers sees the load spread over them.
//!
//! Against a fleet ([`Options::nodes`]) the sockets are not connected: each datagram of a
//! batch goes to the node its request names, and each answer's source says which node it
//! came from (looked up in a map built once), so the generator can check that the node it
//! asked is the one that answered.

use std::collections::HashMap;
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, SockaddrIn};
use shake::client::{payload, Flow};
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
    /// A fleet's nodes by index (empty: `server` alone). Requests go to the node they name.
    pub nodes: Vec<SocketAddrV4>,
    /// Sockets (source ports).
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
    let peer = o.nodes.first().copied().unwrap_or(o.server);
    let mut socks = Vec::with_capacity(o.sockets.max(1));
    let socket_err = |what: String| move |source: std::io::Error| GenError::Socket { what, source };
    for _ in 0..o.sockets.max(1) {
        let s = UdpSocket::bind("0.0.0.0:0").map_err(socket_err("binding a UDP socket".into()))?;
        if !fleet {
            s.connect(o.server)
                .map_err(socket_err(format!("connecting to {}", o.server)))?;
        }
        s.set_nonblocking(true)
            .map_err(socket_err("making a socket non-blocking".into()))?;
        let s2 = socket2::SockRef::from(&s);
        let _ = s2.set_recv_buffer_size(4 << 20);
        let _ = s2.set_send_buffer_size(4 << 20);
        socks.push(s);
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

    let start = Instant::now();
    let now = || start.elapsed().as_nanos() as u64;
    // Every buffer of the loop, allocated once here.
    let mut out = [[0u8; PAYLOAD_LEN]; MAX_BATCH];
    let mut reqs: Vec<Request> = Vec::with_capacity(MAX_BATCH);
    let mut rx = RecvBatch::<RX_BUF>::new();
    let mut tx = SendBatch::new();
    let mut to: [Option<SockaddrIn>; MAX_BATCH] = [None; MAX_BATCH];
    let mut frame = [0u8; 128];
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

        // Send a batch on the next socket.
        let n = gen.budget(t, batch);
        if n > 0 {
            let si = turn % socks.len();
            turn += 1;
            reqs.clear();
            for (slot, dest) in out.iter_mut().zip(to.iter_mut()).take(n) {
                let Some(r) = gen.next(t) else { break };
                *slot = payload(&r.repr);
                if fleet {
                    *dest = dests.get(r.node as usize).copied();
                }
                reqs.push(r);
            }
            if !reqs.is_empty() {
                busy = true;
                let fd = socks[si].as_raw_fd();
                let datagrams: [&[u8]; MAX_BATCH] = std::array::from_fn(|k| &out[k][..]);
                let sending = if fleet {
                    tx.send(fd, &datagrams[..reqs.len()], &to)
                } else {
                    tx.send_connected(fd, &datagrams[..reqs.len()])
                };
                let sent = match sending {
                    Ok(n) => n,
                    Err(Errno::EAGAIN | Errno::ENOBUFS | Errno::ECONNREFUSED | Errno::EINTR) => 0,
                    Err(source) => {
                        return Err(GenError::Mmsg {
                            call: "sendmmsg",
                            peer,
                            source,
                        })
                    }
                };
                gen.cancel_tail(&reqs[sent..]);
                if let Some(w) = pcap.as_deref_mut() {
                    for (r, p) in reqs[..sent].iter().zip(&out) {
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
                        gen.on_payload(rx.datagram(k), t);
                        continue;
                    }
                    let from = rx
                        .source(k)
                        .map(|a| SocketAddrV4::new(a.ip(), a.port()))
                        .and_then(|a| node_of.get(&a).copied());
                    match from {
                        Some(node) => gen.on_payload_from(rx.datagram(k), Some(node), t),
                        // Not from any node of the fleet: not an answer.
                        None => gen.tally.rx_other += 1,
                    }
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
